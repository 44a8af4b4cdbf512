//! The sandbox server as a background process of the project: started by `infra sandbox up`,
//! found again by any later command, stopped and cleaned away by `infra sandbox down`.
//!
//! Files, all under `config/.infra/sandbox/` (the directory is 0700, the files 0600):
//! - `state.json`: the sandbox's records ([`Store`]);
//! - `server.json`: the running server ([`ServerInfo`]: pid, URL, token, faults, spares);
//! - `env`: `DO_API_URL=...` and `DO_TOKEN=...` lines, what a client needs to use the sandbox
//!   (read by [`crate::cloud::SandboxEndpoint`]);
//! - `ca.pem` and `ca-key.pem`: the CA that signs the server's certificate ([`tls`]); kept by
//!   `down`, so a client set up to trust it keeps trusting the next sandbox;
//! - `server.log`: the server's log (requests by method, path and status; never the token).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};

use crate::atomic_file;
use crate::cloud::endpoint::{self, SandboxEndpoint};
use crate::cloud::{Client, Droplet, RetryPolicy, Token};
use crate::project::Project;
use crate::sandbox::backend::Docker;
use crate::sandbox::faults::Faults;
use crate::sandbox::server;
use crate::sandbox::shared::{self, Sandbox};
use crate::sandbox::spares::{self, PoolStatus, Spares};
use crate::sandbox::store::{State, Store};
use crate::sandbox::{image, tls, worker};

/// How long `up` waits for a new server to answer.
const START_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("{0}")]
    Docker(#[from] crate::sandbox::backend::DockerError),
    #[error("{0}")]
    Image(#[from] image::ImageError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("the sandbox server did not start: {0}")]
    Start(String),
    #[error("{0}")]
    Tls(#[from] tls::TlsError),
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> SandboxError {
    let context = context.into();
    move |source| SandboxError::Io { context, source }
}

/// Where a project's sandbox keeps its files.
#[derive(Debug, Clone)]
pub struct Paths {
    pub dir: PathBuf,
}

impl Paths {
    pub fn of(project: &Project) -> Paths {
        Paths {
            dir: endpoint::sandbox_dir(project),
        }
    }

    pub fn state(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    pub fn server(&self) -> PathBuf {
        self.dir.join("server.json")
    }

    /// `DO_API_URL=...` and `DO_TOKEN=...`, one a line.
    pub fn env(&self) -> PathBuf {
        self.dir.join(endpoint::ENV_FILE)
    }

    /// The CA certificate clients trust the server by.
    pub fn ca(&self) -> PathBuf {
        self.dir.join(tls::CA_FILE)
    }

    pub fn log(&self) -> PathBuf {
        self.dir.join("server.log")
    }
}

/// `server.json`: the server that runs (or last ran) for this project.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerInfo {
    pub pid: u32,
    pub url: String,
    pub port: u16,
    pub token: String,
    pub sandbox_id: String,
    pub image: String,
    #[serde(flatten)]
    pub faults: Faults,
    /// How many spare droplets the server keeps booted (`--spares`).
    #[serde(default)]
    pub spares: usize,
    /// `--records-only`: droplets are records, with no container behind them (benchmarks of
    /// large fleets).
    #[serde(default)]
    pub records_only: bool,
    pub started_at: String,
}

impl ServerInfo {
    fn load(paths: &Paths) -> Option<ServerInfo> {
        let text = std::fs::read_to_string(paths.server()).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// `export DO_API_URL=... DO_TOKEN=...`, for a shell to evaluate.
    pub fn exports(&self) -> String {
        format!("export DO_API_URL={} DO_TOKEN={}", self.url, self.token)
    }

    fn endpoint(&self, paths: &Paths) -> Option<SandboxEndpoint> {
        let ca = paths.ca();
        Some(SandboxEndpoint {
            url: self.url.clone(),
            droplet_url: None,
            token: Token::new(self.token.clone()).ok()?,
            ca: ca.is_file().then_some(ca),
        })
    }

    fn client(&self, paths: &Paths) -> Option<Client> {
        self.endpoint(paths)?.client(RetryPolicy::default()).ok()
    }
}

/// The project's sandbox as its `env` file names it; `None` when no sandbox was started here.
pub fn client_env(project: &Project) -> Option<SandboxEndpoint> {
    SandboxEndpoint::find(project)
}

/// A plain HTTP client for the server's own routes, trusting the sandbox's CA only.
fn http(paths: &Paths) -> Option<reqwest::Client> {
    let ca = std::fs::read(paths.ca()).ok()?;
    reqwest::Client::builder()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(&ca).ok()?)
        .timeout(Duration::from_secs(3))
        .build()
        .ok()
}

fn process_alive(pid: u32) -> bool {
    // Signal 0 checks that the process exists; the command line that it is a sandbox server
    // (a recycled pid could belong to anything).
    let exists = unsafe { libc::kill(pid as libc::pid_t, 0) } == 0;
    exists
        && std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            args.windows(2)
                .any(|w| w == [b"sandbox".as_slice(), b"serve".as_slice()])
        })
}

/// The project's server, if it runs and answers.
pub async fn running(paths: &Paths) -> Option<ServerInfo> {
    let info = ServerInfo::load(paths)?;
    if !process_alive(info.pid) {
        return None;
    }
    answers(paths, &info).await.then_some(info)
}

/// Whether the server answers with anything but a refusal of its own token (a 429 or 500 an
/// injected fault makes still means it is up).
async fn answers(paths: &Paths, info: &ServerInfo) -> bool {
    let Some(http) = http(paths) else {
        return false;
    };
    http.get(format!("{}/v2/account", info.url))
        .bearer_auth(&info.token)
        .send()
        .await
        .is_ok_and(|r| r.status() != reqwest::StatusCode::UNAUTHORIZED)
}

fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    OsRng.fill_bytes(&mut buffer);
    buffer.iter().map(|b| format!("{b:02x}")).collect()
}

fn private_dir(dir: &Path) -> Result<(), SandboxError> {
    std::fs::create_dir_all(dir).map_err(io(format!("cannot create {}", dir.display())))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    }
    Ok(())
}

/// Starts the project's sandbox server in the background (building the droplet image first
/// if this machine lacks it), or finds the one already running. `true` when it was running.
pub async fn up(
    project: &Project,
    faults: Faults,
    spares: usize,
    records_only: bool,
    progress: &mut dyn FnMut(&str),
) -> Result<(ServerInfo, bool), SandboxError> {
    let paths = Paths::of(project);
    if let Some(info) = running(&paths).await {
        return Ok((info, true));
    }
    let docker = Docker::default();
    docker.check().await?;
    image::ensure(&docker, progress).await?;
    private_dir(&paths.dir)?;
    // A restarted server keeps its token and, if free, its port, so clients keep working.
    let previous = ServerInfo::load(&paths);
    let token = previous
        .as_ref()
        .map(|p| p.token.clone())
        .unwrap_or_else(|| format!("dop_v1_{}", random_hex(32)));
    let port = previous.as_ref().map_or(0, |p| p.port);
    let _ = std::fs::remove_file(paths.server());

    let exe = std::env::current_exe().map_err(io("cannot find the infra binary"))?;
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let log = options
        .open(paths.log())
        .map_err(io(format!("cannot open {}", paths.log().display())))?;
    let log_err = log.try_clone().map_err(io("cannot open the server log"))?;
    let mut command = Command::new(exe);
    command
        .arg("--config-dir")
        .arg(&project.config_dir)
        .args(["sandbox", "serve", "--port", &port.to_string()])
        .args(["--fail-rate", &faults.fail_rate.to_string()])
        .args(["--latency-ms", &faults.latency_ms.to_string()])
        .args(["--spares", &spares.to_string()])
        .args(if records_only {
            &["--records-only"][..]
        } else {
            &[]
        })
        .current_dir(&project.root)
        .stdin(Stdio::piped())
        .stdout(log)
        .stderr(log_err);
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // Its own session: the terminal's Ctrl-C and hang-up do not reach it.
        unsafe {
            command.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
    }
    let mut child = command
        .spawn()
        .map_err(io("cannot start the sandbox server"))?;
    // The token goes through a pipe, not the command line or the environment, which other
    // processes can read.
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(format!("{token}\n").as_bytes())
            .map_err(io("cannot hand the token to the sandbox server"))?;
    }
    let started = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(SandboxError::Start(format!(
                "it exited ({status}); its log ({}) ends with:\n{}",
                paths.log().display(),
                log_tail(&paths.log(), 15)
            )));
        }
        if let Some(info) = ServerInfo::load(&paths).filter(|i| i.pid == child.id()) {
            if answers(&paths, &info).await {
                return Ok((info, false));
            }
        }
        if started.elapsed() > START_TIMEOUT {
            let _ = child.kill();
            return Err(SandboxError::Start(format!(
                "it did not answer within {} s; its log ({}) ends with:\n{}",
                START_TIMEOUT.as_secs(),
                paths.log().display(),
                log_tail(&paths.log(), 15)
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The hidden `infra sandbox serve`: runs the server in this process until SIGTERM or SIGINT.
/// Reads its token from the first line of stdin.
pub async fn serve(
    project: &Project,
    port: u16,
    faults: Faults,
    spares: usize,
    records_only: bool,
) -> Result<(), SandboxError> {
    let paths = Paths::of(project);
    private_dir(&paths.dir)?;
    let mut token = String::new();
    std::io::stdin()
        .read_to_string(&mut token)
        .map_err(io("cannot read the token from stdin"))?;
    let token = token.trim().to_owned();
    if token.is_empty() {
        return Err(SandboxError::Start(
            "no token on stdin (start the sandbox with `infra sandbox up`)".into(),
        ));
    }
    let docker = Docker::default();
    docker.check().await?;
    let image = image::tag();
    if !docker.image_exists(&image).await? {
        return Err(SandboxError::Start(format!(
            "the droplet image {image} is missing (`infra sandbox up` builds it)"
        )));
    }
    let store = Store::new(paths.state());
    let mut state = store
        .load()
        .map_err(io("cannot read the sandbox state"))?
        .unwrap_or_else(|| State::new(random_hex(4)));
    match &state.network {
        Some(network) => docker.ensure_network(network, &state.sandbox_id).await?,
        None => {
            let name = format!("infra-sbx-{}", state.sandbox_id);
            state.network = Some(docker.create_network(&name, &state.sandbox_id).await?);
        }
    }
    store
        .save(&state)
        .map_err(io("cannot save the sandbox state"))?;
    // Before the first request: the spares' addresses must be known before any is handed out.
    let kept = spares::recover(
        &docker,
        &state,
        &image,
        spares,
        &spares::root(&paths.state()),
    )
    .await;

    let listener = server::bind(port)
        .await
        .map_err(io("cannot listen on 127.0.0.1"))?;
    let port = listener
        .local_addr()
        .map_err(io("cannot read the listening address"))?
        .port();
    // The droplets' monitors call the API too (power cycles, recovery): on the sandbox
    // network's gateway, the host's own address on the droplets' bridge, same port.
    let gateway = state.network.as_ref().map(|n| n.gateway);
    let mut listeners = vec![listener];
    if let Some(gateway) = gateway {
        let on_gateway = tokio::net::TcpListener::bind((gateway, port))
            .await
            .map_err(io(format!("cannot listen on {gateway}:{port}")))?;
        listeners.push(on_gateway);
    }
    let also: Vec<std::net::IpAddr> = gateway.into_iter().map(Into::into).collect();
    let tls = tls::authority(&paths.dir)?.server_config(&also)?;
    let listener =
        tls::TlsListener::on_all(listeners, tls).map_err(io("cannot listen on 127.0.0.1"))?;
    let url = format!("https://127.0.0.1:{port}");
    let droplet_url = gateway.map(|g| format!("https://{g}:{port}"));
    let info = ServerInfo {
        pid: std::process::id(),
        url: url.clone(),
        port,
        token: token.clone(),
        sandbox_id: state.sandbox_id.clone(),
        image: image.clone(),
        faults,
        spares,
        records_only,
        started_at: shared::now(),
    };
    let sandbox = Arc::new(
        Sandbox::new(
            state,
            store,
            docker,
            image,
            token.clone(),
            url.clone(),
            faults,
        )
        .with_spares(Spares::new(spares, kept))
        .records_only(records_only),
    );
    let json = serde_json::to_vec_pretty(&info).expect("server info serializes");
    atomic_file::write_with_mode(&paths.server(), &json, Some(0o600))
        .map_err(io(format!("cannot write {}", paths.server().display())))?;
    let mut env = format!("DO_API_URL={url}\nDO_TOKEN={token}\n");
    if let Some(droplet_url) = &droplet_url {
        env.push_str(&format!(
            "{}={droplet_url}\n",
            endpoint::DROPLET_URL_VARIABLE
        ));
    }
    atomic_file::write_with_mode(&paths.env(), env.as_bytes(), Some(0o600))
        .map_err(io(format!("cannot write {}", paths.env().display())))?;
    tracing::info!(
        "sandbox {} listening on {url} (fail rate {}, latency {} ms, {spares} spare droplets)",
        info.sandbox_id,
        faults.fail_rate,
        faults.latency_ms
    );
    tokio::spawn(worker::resume(sandbox.clone()));
    tokio::spawn(spares::keep_full(sandbox.clone()));
    server::serve(listener, sandbox, shutdown_signal())
        .await
        .map_err(io("the sandbox server failed"))?;
    tracing::info!("sandbox server stopped");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        return std::future::pending().await;
    };
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = int.recv() => return,
            // Nothing to reload; a closing terminal must not stop the server.
            _ = hup.recv() => continue,
        }
    }
}

/// What `down` removed.
#[derive(Debug, Default, Serialize)]
pub struct Removed {
    pub server_stopped: bool,
    pub docker_objects: Vec<String>,
    pub files: bool,
}

/// Stops the server and removes every container, snapshot image and network the sandbox made,
/// then its files, all but its CA.
pub async fn down(project: &Project) -> Result<Removed, SandboxError> {
    let paths = Paths::of(project);
    let mut removed = Removed::default();
    if let Some(info) = ServerInfo::load(&paths) {
        if process_alive(info.pid) {
            stop_process(info.pid).await;
            removed.server_stopped = true;
        }
    }
    let state = Store::new(paths.state())
        .load()
        .map_err(io("cannot read the sandbox state"))?;
    if let Some(state) = state {
        let docker = Docker::default();
        removed.docker_objects = docker.remove_all(&state.sandbox_id).await?;
        // A `docker run` the server started just before it stopped (a spare being booted) may
        // finish after a sweep, and one can take more than a second on a busy machine: sweep
        // again until one finds nothing, at least two seconds after the first.
        let first = Instant::now();
        for pause in [300, 700, 1000, 2000] {
            tokio::time::sleep(Duration::from_millis(pause)).await;
            let more = docker.remove_all(&state.sandbox_id).await?;
            let found = !more.is_empty();
            removed.docker_objects.extend(more);
            if !found && first.elapsed() >= Duration::from_secs(2) {
                break;
            }
        }
    }
    removed.files = remove_files(&paths)?;
    Ok(removed)
}

/// Removes the sandbox's files but its CA; whether there were any.
fn remove_files(paths: &Paths) -> Result<bool, SandboxError> {
    let Ok(entries) = std::fs::read_dir(&paths.dir) else {
        return Ok(false);
    };
    let mut any = false;
    for entry in entries {
        let entry = entry.map_err(io(format!("cannot list {}", paths.dir.display())))?;
        let name = entry.file_name();
        if name == tls::CA_FILE || name == tls::CA_KEY_FILE {
            continue;
        }
        let path = entry.path();
        let removed = if entry.file_type().is_ok_and(|t| t.is_dir()) {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(io(format!("cannot remove {}", path.display())))?;
        any = true;
    }
    Ok(any)
}

async fn stop_process(pid: u32) {
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGTERM);
    }
    let started = Instant::now();
    while process_alive(pid) {
        if started.elapsed() > Duration::from_secs(10) {
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `status`: the server, if it runs, and the droplets (from the server, else from the state).
#[derive(Debug, Serialize)]
pub struct Status {
    pub running: bool,
    pub url: Option<String>,
    pub pid: Option<u32>,
    /// Where the sandbox's env file is, for `source` or `set -a; . FILE`.
    pub env_file: Option<PathBuf>,
    /// The CA its HTTPS certificate is signed by, for other clients to trust.
    pub ca_file: Option<PathBuf>,
    /// How full the server's pool of spare droplets is (not droplets: the API never shows
    /// them).
    pub spares: Option<PoolStatus>,
    pub droplets: Vec<DropletSummary>,
}

#[derive(Debug, Serialize)]
pub struct DropletSummary {
    pub id: u64,
    pub name: String,
    pub status: String,
    pub ip: Option<String>,
    pub tags: Vec<String>,
}

pub async fn status(project: &Project) -> Result<Status, SandboxError> {
    let paths = Paths::of(project);
    let info = running(&paths).await;
    let lowercase = |status: crate::cloud::DropletStatus| {
        serde_json::to_value(status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    };
    let spares = match &info {
        Some(info) => pool_status(&paths, info).await,
        None => None,
    };
    let live: Option<Vec<Droplet>> = match info.as_ref().and_then(|i| i.client(&paths)) {
        Some(client) => client.list_droplets(None).await.ok(),
        None => None,
    };
    let droplets = match live {
        Some(list) => list
            .into_iter()
            .map(|d| DropletSummary {
                id: d.id,
                ip: d.public_ipv4().map(|ip| ip.to_string()),
                status: lowercase(d.status),
                name: d.name,
                tags: d.tags,
            })
            .collect(),
        None => Store::new(paths.state())
            .load()
            .ok()
            .flatten()
            .map(|state| {
                state
                    .droplets
                    .into_iter()
                    .map(|d| DropletSummary {
                        id: d.id,
                        name: d.name,
                        status: lowercase(d.status),
                        ip: Some(d.ip.to_string()),
                        tags: d.tags,
                    })
                    .collect()
            })
            .unwrap_or_default(),
    };
    Ok(Status {
        running: info.is_some(),
        url: info.as_ref().map(|i| i.url.clone()),
        pid: info.as_ref().map(|i| i.pid),
        env_file: info.as_ref().map(|_| paths.env()),
        ca_file: info.as_ref().map(|_| paths.ca()),
        spares,
        droplets,
    })
}

/// `GET /sandbox/spares` on the running server.
pub async fn pool_status(paths: &Paths, info: &ServerInfo) -> Option<PoolStatus> {
    #[derive(Deserialize)]
    struct Answer {
        spares: PoolStatus,
    }
    let http = http(paths)?;
    let response = http
        .get(format!("{}/sandbox/spares", info.url))
        .bearer_auth(&info.token)
        .send()
        .await
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.json::<Answer>().await.ok().map(|a| a.spares)
}

/// Builds the droplet image if this machine lacks it (`infra sandbox image`).
pub async fn build_image(progress: &mut dyn FnMut(&str)) -> Result<String, SandboxError> {
    let docker = Docker::default();
    docker.check().await?;
    Ok(image::ensure(&docker, progress).await?)
}
