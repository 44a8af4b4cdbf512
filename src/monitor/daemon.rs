//! `infra monitor DROPLET`: the running monitor.
//!
//! Built as components that share one cheap handle ([`Monitor`]) and talk over one event bus,
//! rather than one loop:
//! - the **prober** owns the UDP socket and the protocol [`Node`]: datagrams in, ticks every
//!   100 ms, outputs sent, steps handed to the responder, events put on the bus;
//! - the **responder** runs the graduated response's steps (drain, check, recover, restore) as
//!   functions of `playbooks/recovery.rhai`, fenced by the node's epoch, and reports each back;
//! - the **playbook watcher** reloads recovery.rhai when it changes (a broken edit keeps the
//!   previous version and raises an alert);
//! - the **reporter** writes the status file every second (what `infra status` shows);
//! - the **alerts** and **local health** components listen and act on their own.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sha2::Digest;
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc};

use super::keys::{self, OWN_KEY_FILE, PEERS_FILE};
use super::protocol::{
    Event, Keyring, Millis, Node, Output, PersistedState, ProtocolConfig, Step, StepRequest,
};
use super::status::{self, MonitorReport, PlaybookStatus, StepRecord};
use super::{MONITOR_DIR, MONITOR_PORT};
use crate::config::Loaded;
use crate::project::Project;
use crate::state::State;

/// Monitors probe every peer when the fleet is this small; beyond it, the ring the state
/// records (`monitors`).
pub const PROBE_ALL_UP_TO: usize = 20;

/// The playbook whose functions are the recovery steps.
pub const RECOVERY_PLAYBOOK: &str = "playbooks/recovery.rhai";

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{0}")]
    Input(String),
    #[error("{0}")]
    Io(String),
}

/// What travels on the bus.
#[derive(Debug, Clone)]
pub enum BusEvent {
    Protocol(Event),
    StepStarted(StepRequest),
    StepFinished {
        request: StepRequest,
        outcome: Result<(), String>,
    },
    PlaybookReloaded,
    PlaybookRejected(String),
    /// Something to tell the operator (the alerts component sends it).
    Alert(crate::notify::AlertRequest),
}

/// The handle every component holds.
#[derive(Clone)]
pub struct Monitor {
    inner: Arc<Inner>,
}

struct Inner {
    droplet: String,
    project: Project,
    bus: broadcast::Sender<BusEvent>,
    started_at: u64,
    origin: Instant,
    report: Mutex<MonitorReport>,
}

impl Monitor {
    pub fn droplet(&self) -> &str {
        &self.inner.droplet
    }

    pub fn project(&self) -> &Project {
        &self.inner.project
    }

    pub fn publish(&self, event: BusEvent) {
        // No subscriber yet is not an error.
        let _ = self.inner.bus.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<BusEvent> {
        self.inner.bus.subscribe()
    }

    /// Monotonic milliseconds since the monitor started.
    pub fn now(&self) -> Millis {
        self.inner.origin.elapsed().as_millis() as Millis
    }

    /// Updates the report the reporter writes next.
    pub fn update_report(&self, change: impl FnOnce(&mut MonitorReport)) {
        change(&mut self.inner.report.lock().expect("report"));
    }

    fn report(&self) -> MonitorReport {
        self.inner.report.lock().expect("report").clone()
    }
}

/// The droplet this process monitors, when it is a monitor (natives that act on the fleet
/// leave their own droplet out).
pub fn running_as() -> Option<String> {
    RUNNING_AS.get().cloned()
}

static RUNNING_AS: std::sync::OnceLock<String> = std::sync::OnceLock::new();

pub fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Everything the daemon reads at start.
pub struct Setup {
    pub config: ProtocolConfig,
    pub keys: Keyring,
    /// Where each peer's monitor listens.
    pub addresses: BTreeMap<String, SocketAddr>,
    pub listen: SocketAddr,
}

fn monitor_file(project: &Project, name: &str) -> PathBuf {
    project.infra_dir().join(MONITOR_DIR).join(name)
}

/// Reads the state, the configs and the keys; checks that `droplet` is in the fleet.
pub fn setup(
    project: &Project,
    droplet: &str,
    listen: Option<SocketAddr>,
) -> Result<(Setup, Loaded), DaemonError> {
    let path = project.state_path();
    let state = State::load(&path, &project.display(&path))
        .map_err(|e| DaemonError::Input(e.to_string()))?;
    let loaded =
        crate::config::load(project, state).map_err(|e| DaemonError::Input(e.to_string()))?;
    let runtime = &loaded.runtime;
    let Some(me) = runtime.droplets.get(droplet) else {
        return Err(DaemonError::Input(format!(
            "droplet `{droplet}` is not in the state; monitors run on the fleet's droplets ({})",
            runtime
                .droplets
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )));
    };
    let mut addresses = BTreeMap::new();
    for (name, d) in runtime.droplets.iter() {
        if let Some(ip) = d.ip.as_deref().and_then(|ip| ip.parse().ok()) {
            addresses.insert(name.clone(), SocketAddr::new(ip, MONITOR_PORT));
        }
    }
    let cluster: Vec<String> = addresses.keys().cloned().collect();
    if !cluster.iter().any(|n| n == droplet) {
        return Err(DaemonError::Input(format!(
            "droplet `{droplet}` has no address in the state; run `infra orchestrate` first"
        )));
    }
    let watch: Vec<String> = if cluster.len() <= PROBE_ALL_UP_TO {
        cluster.iter().filter(|n| *n != droplet).cloned().collect()
    } else {
        me.monitors.clone()
    };
    let own = keys::read_secret(&monitor_file(project, OWN_KEY_FILE)).map_err(|e| {
        DaemonError::Input(format!(
            "{e} (installed by `infra orchestrate` or a deploy)"
        ))
    })?;
    let peers = keys::read_peers(&monitor_file(project, PEERS_FILE))
        .map_err(|e| DaemonError::Input(e.to_string()))?;
    if let Some(missing) = cluster.iter().find(|n| !peers.contains_key(*n)) {
        return Err(DaemonError::Input(format!(
            "no public key for `{missing}` in {}; install the monitors again (`infra orchestrate`)",
            monitor_file(project, PEERS_FILE).display()
        )));
    }
    let mut config = ProtocolConfig::new(droplet.to_string(), cluster, watch);
    config.master = runtime
        .droplets
        .iter()
        .find(|(_, d)| d.role == "master")
        .map(|(n, _)| n.clone());
    config.auto_recover_master = loaded.spec.auto_recover_master;
    if let Some(seconds) = loaded.spec.recover_after {
        config.recover_after = seconds * 1000;
    }
    let keys = Keyring::new(droplet.to_string(), own, peers);
    let listen = listen.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], MONITOR_PORT)));
    Ok((
        Setup {
            config,
            keys,
            addresses,
            listen,
        },
        loaded,
    ))
}

/// Runs the monitor until interrupted.
pub async fn run(
    project: Project,
    droplet: String,
    listen: Option<SocketAddr>,
) -> Result<(), DaemonError> {
    let (setup, loaded) = setup(&project, &droplet, listen)?;
    let _ = RUNNING_AS.set(droplet.clone());
    let loaded = Arc::new(loaded);
    let socket = UdpSocket::bind(setup.listen)
        .await
        .map_err(|e| DaemonError::Io(format!("cannot listen on udp {}: {e}", setup.listen)))?;
    let (bus, _) = broadcast::channel(1024);
    let monitor = Monitor {
        inner: Arc::new(Inner {
            droplet: droplet.clone(),
            project: project.clone(),
            bus,
            started_at: status::now_unix(),
            origin: Instant::now(),
            report: Mutex::new(MonitorReport {
                droplet: droplet.clone(),
                version: env!("CARGO_PKG_VERSION").into(),
                started_at: status::now_unix(),
                ..MonitorReport::default()
            }),
        }),
    };
    tracing::info!(
        "monitor of {droplet} listening on udp {} ({} peers watched)",
        setup.listen,
        setup.config.watch.len()
    );
    let persisted_path = monitor_file(&project, "persisted.json");
    let persisted: Option<PersistedState> = std::fs::read(&persisted_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let node = match persisted {
        Some(saved) => Node::restore(setup.config, setup.keys, saved, monitor.now(), wall_ms()),
        None => Node::new(setup.config, setup.keys, monitor.now(), wall_ms()),
    }
    .map_err(|e| DaemonError::Input(e.to_string()))?;
    let (steps_tx, steps_rx) = mpsc::unbounded_channel::<StepRequest>();
    let (done_tx, done_rx) = mpsc::unbounded_channel::<(StepRequest, Result<(), String>)>();
    let playbook = Playbook::start(monitor.clone());
    tokio::spawn(respond(
        monitor.clone(),
        playbook,
        node.fence(),
        steps_rx,
        done_tx,
    ));
    tokio::spawn(write_reports(monitor.clone()));
    tokio::spawn(restart_on_new_state(monitor.clone()));
    tokio::spawn(log_events(monitor.clone()));
    tokio::spawn(super::alerts::run(monitor.clone(), loaded.clone()));
    tokio::spawn(super::local::run(monitor.clone(), loaded.clone()));
    tokio::spawn(alert_rejected_playbooks(monitor.clone()));
    probe(
        monitor,
        node,
        socket,
        setup.addresses,
        steps_tx,
        done_rx,
        persisted_path,
    )
    .await
}

/// The prober: the protocol node behind a real socket and a real clock.
async fn probe(
    monitor: Monitor,
    mut node: Node,
    socket: UdpSocket,
    addresses: BTreeMap<String, SocketAddr>,
    steps: mpsc::UnboundedSender<StepRequest>,
    mut done: mpsc::UnboundedReceiver<(StepRequest, Result<(), String>)>,
    persisted_path: PathBuf,
) -> Result<(), DaemonError> {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut buffer = vec![0u8; 65536];
    let mut last_status = Instant::now();
    let mut last_persisted: Option<String> = None;
    loop {
        let outputs = tokio::select! {
            received = socket.recv_from(&mut buffer) => match received {
                Ok((n, _from)) => node.receive(monitor.now(), wall_ms(), &buffer[..n]),
                Err(e) => {
                    tracing::warn!("receiving a datagram: {e}");
                    Vec::new()
                }
            },
            _ = tick.tick() => node.tick(monitor.now(), wall_ms()),
            Some((request, outcome)) = done.recv() => {
                node.step_finished(monitor.now(), wall_ms(), &request, outcome)
            }
            _ = tokio::signal::ctrl_c() => {
                tracing::info!("monitor of {} stopping", monitor.droplet());
                return Ok(());
            }
        };
        for output in outputs {
            match output {
                Output::Send { to, bytes } => {
                    if let Some(address) = addresses.get(&to) {
                        if let Err(e) = socket.send_to(&bytes, address).await {
                            tracing::debug!("sending to {to} ({address}): {e}");
                        }
                    }
                }
                Output::Step(request) => {
                    let _ = steps.send(request);
                }
                Output::Event(event) => {
                    if let Some(alert) = alert_for(&monitor, &node, &event) {
                        monitor.publish(BusEvent::Alert(alert));
                    }
                    monitor.publish(BusEvent::Protocol(event));
                }
            }
        }
        if last_status.elapsed() >= Duration::from_millis(500) {
            last_status = Instant::now();
            let view = serde_json::to_value(node.status(monitor.now())).unwrap_or_default();
            monitor.update_report(|r| r.protocol = view);
            // Never reuse an incarnation or promise an epoch twice across restarts.
            let persisted =
                serde_json::to_string(&node.crash_restart_safe_state()).unwrap_or_default();
            if last_persisted.as_deref() != Some(persisted.as_str()) {
                if let Err(e) = crate::atomic_file::write(&persisted_path, persisted.as_bytes()) {
                    tracing::warn!("cannot save {}: {e}", persisted_path.display());
                } else {
                    last_persisted = Some(persisted);
                }
            }
        }
    }
}

/// Whether this monitor is the one that tells what no recovery step tells: the lowest-named of
/// itself and the peers it sees alive (every monitor has its own record of alerts sent, so
/// one sender keeps one event to one email).
fn tells(monitor: &Monitor, node: &Node) -> bool {
    let status = node.status(monitor.now());
    !status.abstaining
        && status
            .peers
            .iter()
            .filter(|p| p.state == super::protocol::PeerState::Alive)
            .all(|p| p.name.as_str() > monitor.droplet())
}

/// The alert an event calls for when no recovery step will send one.
fn alert_for(monitor: &Monitor, node: &Node, event: &Event) -> Option<crate::notify::AlertRequest> {
    use super::alerts::failure;
    match event {
        Event::Verdict {
            target,
            voters,
            recoverable: false,
        } if tells(monitor, node) => Some(failure(
            target,
            &format!("verdict-{}", node.status(monitor.now()).epoch),
            "the monitors agree it is down",
            voters.clone(),
            "It is the master, which the monitors only alert about: recover it by hand, or set auto_recover_master to let them rebuild it.",
        )),
        Event::MassFailure { down } if tells(monitor, node) => Some(failure(
            down.first().map(String::as_str).unwrap_or(monitor.droplet()),
            &format!("mass-{}", down.join("+")),
            &format!("half the fleet or more looks down at once ({})", down.join(", ")),
            vec![monitor.droplet().to_string()],
            "The monitors rebuild nothing while that many look down (a network problem is likelier than that many failures); check the fleet.",
        )),
        _ => None,
    }
}

/// A rejected edit of recovery.rhai: told once for the fleet (by the monitor that tells).
async fn alert_rejected_playbooks(monitor: Monitor) {
    let mut events = monitor.subscribe();
    loop {
        match events.recv().await {
            Ok(BusEvent::PlaybookRejected(error)) => {
                let alive_peers_lower = {
                    let mut lower = false;
                    let me = monitor.droplet().to_string();
                    monitor.update_report(|r| {
                        lower = r.protocol["peers"].as_array().is_some_and(|peers| {
                            peers.iter().any(|p| {
                                p["state"] == "alive"
                                    && p["name"].as_str().is_some_and(|n| n < me.as_str())
                            })
                        })
                    });
                    lower
                };
                if !alive_peers_lower {
                    let digest = format!("{:x}", sha2::Sha256::digest(error.as_bytes()));
                    monitor.publish(BusEvent::Alert(super::alerts::failure(
                        monitor.droplet(),
                        &format!("playbook-{}", &digest[..12]),
                        &format!("{RECOVERY_PLAYBOOK} was changed and does not load: {error}"),
                        vec![monitor.droplet().to_string()],
                        "The monitors keep the version they had loaded; fix the playbook and install the monitors again.",
                    )));
                }
            }
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

fn step_name(step: Step) -> &'static str {
    match step {
        Step::Drain => "drain",
        Step::Check => "check",
        Step::Recover => "recover",
        Step::Restore => "restore",
    }
}

/// recovery.rhai, compiled, reloaded when it changes.
#[derive(Clone)]
pub struct Playbook {
    /// Compiles edits; each step runs in a host of its own (a run resets its host's state,
    /// which must not cut into another droplet's step running meanwhile).
    host: Arc<crate::host::Host>,
    compiled: Arc<Mutex<Option<crate::host::Compiled>>>,
    project: Project,
    command: String,
}

/// The monitor's epoch as a recovery fence: a step's side effects go ahead only while this
/// monitor holds the lease for exactly that epoch.
struct EpochFence {
    fence: super::protocol::Fence,
    epoch: u64,
}

impl crate::recovery::Fence for EpochFence {
    fn permits(&self) -> Result<u64, crate::recovery::FenceRefused> {
        if self.fence.permits(self.epoch) {
            Ok(self.epoch)
        } else {
            Err(crate::recovery::FenceRefused::new(format!(
                "epoch {} is no longer this monitor's: another monitor coordinates now, or this one lost its majority",
                self.epoch
            )))
        }
    }
}

fn host_for(project: &Project, command: &str) -> crate::host::Host {
    let ctx = crate::host::Context::new(
        project.clone(),
        crate::host::RunOptions {
            dry_run: false,
            json: false,
            offline: false,
            command: command.to_string(),
            lock_timeout: Duration::from_secs(60),
        },
        Arc::new(AtomicBool::new(false)),
    );
    crate::host::Host::new(Arc::new(ctx))
}

impl Playbook {
    fn start(monitor: Monitor) -> Playbook {
        let command = format!("infra monitor {}", monitor.droplet());
        let playbook = Playbook {
            host: Arc::new(host_for(monitor.project(), &command)),
            compiled: Arc::new(Mutex::new(None)),
            project: monitor.project().clone(),
            command,
        };
        playbook.load(&monitor);
        let watcher = playbook.clone();
        tokio::spawn(async move {
            let path = monitor.project().root.join(RECOVERY_PLAYBOOK);
            let mut seen = modified(&path);
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let now = modified(&path);
                if now != seen {
                    seen = now;
                    watcher.load(&monitor);
                }
            }
        });
        playbook
    }

    /// Compiles recovery.rhai; a broken edit keeps the version already loaded.
    fn load(&self, monitor: &Monitor) {
        let source = match monitor.project().playbook(RECOVERY_PLAYBOOK) {
            Ok(source) => source,
            Err(e) => return self.rejected(monitor, e.to_string()),
        };
        match self.host.compile(&source) {
            Ok(compiled) => {
                *self.compiled.lock().expect("playbook") = Some(compiled);
                monitor.update_report(|r| {
                    r.playbook = PlaybookStatus {
                        path: source.display.clone(),
                        loaded_at: status::now_unix(),
                        rejected: None,
                    }
                });
                monitor.publish(BusEvent::PlaybookReloaded);
                tracing::info!("{} loaded", source.display);
            }
            Err(e) => self.rejected(monitor, e.to_string()),
        }
    }

    fn rejected(&self, monitor: &Monitor, error: String) {
        let kept = self.compiled.lock().expect("playbook").is_some();
        let consequence = if kept {
            "the previous version keeps running"
        } else {
            "no version is loaded, so recovery steps fail until it is fixed"
        };
        tracing::error!("{RECOVERY_PLAYBOOK} was not loaded ({consequence}): {error}");
        monitor.update_report(|r| r.playbook.rejected = Some(format!("{error} ({consequence})")));
        monitor.publish(BusEvent::PlaybookRejected(error));
    }

    /// Runs one step, `<step>(target)` of recovery.rhai, under the node's fence for the
    /// request's epoch, in a host of its own, on a blocking thread (natives block).
    async fn run(
        &self,
        request: &StepRequest,
        fence: super::protocol::Fence,
    ) -> Result<(), String> {
        let compiled = self
            .compiled
            .lock()
            .expect("playbook")
            .clone()
            .ok_or_else(|| format!("{RECOVERY_PLAYBOOK} is not loaded"))?;
        let host = host_for(&self.project, &self.command);
        host.ctx
            .services
            .recovery_fences
            .lock()
            .expect("recovery fences")
            .insert(
                request.target.clone(),
                Arc::new(EpochFence {
                    fence,
                    epoch: request.epoch,
                }),
            );
        let name = step_name(request.step);
        let target = request.target.clone();
        tokio::task::spawn_blocking(move || {
            host.call(&compiled, name, vec![rhai::Dynamic::from(target)])
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| format!("the step stopped: {e}"))?
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The responder: one step at a time per target, each fenced by its epoch.
async fn respond(
    monitor: Monitor,
    playbook: Playbook,
    fence: super::protocol::Fence,
    mut steps: mpsc::UnboundedReceiver<StepRequest>,
    done: mpsc::UnboundedSender<(StepRequest, Result<(), String>)>,
) {
    let running: Arc<Mutex<BTreeMap<String, ()>>> = Arc::default();
    let queued: Arc<Mutex<BTreeMap<String, VecDeque<StepRequest>>>> = Arc::default();
    while let Some(request) = steps.recv().await {
        queued
            .lock()
            .expect("queue")
            .entry(request.target.clone())
            .or_default()
            .push_back(request.clone());
        if running
            .lock()
            .expect("running")
            .insert(request.target.clone(), ())
            .is_some()
        {
            continue;
        }
        let (monitor, playbook, fence, done, running, queued) = (
            monitor.clone(),
            playbook.clone(),
            fence.clone(),
            done.clone(),
            running.clone(),
            queued.clone(),
        );
        let target = request.target.clone();
        tokio::spawn(async move {
            loop {
                let next = queued
                    .lock()
                    .expect("queue")
                    .get_mut(&target)
                    .and_then(VecDeque::pop_front);
                let Some(request) = next else {
                    running.lock().expect("running").remove(&target);
                    return;
                };
                let outcome = if fence.permits(request.epoch) {
                    monitor.publish(BusEvent::StepStarted(request.clone()));
                    record_step(&monitor, &request, None);
                    playbook.run(&request, fence.clone()).await
                } else {
                    Err(format!(
                        "epoch {} is no longer this monitor's to act on; the step was not run",
                        request.epoch
                    ))
                };
                record_step(&monitor, &request, Some(&outcome));
                monitor.publish(BusEvent::StepFinished {
                    request: request.clone(),
                    outcome: outcome.clone(),
                });
                let _ = done.send((request, outcome));
            }
        });
    }
}

fn record_step(monitor: &Monitor, request: &StepRequest, outcome: Option<&Result<(), String>>) {
    let name = step_name(request.step);
    monitor.update_report(|r| {
        let now = status::now_unix();
        match outcome {
            None => r.steps.push(StepRecord {
                target: request.target.clone(),
                step: name.into(),
                epoch: request.epoch,
                started_at: now,
                finished_at: None,
                outcome: "running".into(),
            }),
            Some(result) => {
                let text = match result {
                    Ok(()) => "ok".to_string(),
                    Err(e) => e.clone(),
                };
                match r.steps.iter_mut().rev().find(|s| {
                    s.target == request.target && s.step == name && s.finished_at.is_none()
                }) {
                    Some(s) => {
                        s.finished_at = Some(now);
                        s.outcome = text;
                    }
                    None => r.steps.push(StepRecord {
                        target: request.target.clone(),
                        step: name.into(),
                        epoch: request.epoch,
                        started_at: now,
                        finished_at: Some(now),
                        outcome: text,
                    }),
                }
                let excess = r.steps.len().saturating_sub(50);
                r.steps.drain(..excess);
            }
        }
    });
}

/// The fleet as the state file has it: each droplet's address.
fn fleet_of(project: &Project) -> Option<BTreeMap<String, Option<String>>> {
    let path = project.state_path();
    let state = State::load(&path, &project.display(&path)).ok()?;
    Some(
        state
            .runtime()
            .droplets
            .iter()
            .map(|(n, d)| (n.clone(), d.ip.clone()))
            .collect(),
    )
}

/// A new fleet in the state file (pushed by a coordinator after a recovery, or by an install:
/// a droplet added, gone or at a new address): the monitor stops, and its supervisor starts it
/// again at once with it (its incarnation and the epochs it saw are saved, so nothing is
/// reused). Other edits of the state (a drain recorded by a step) change nothing here.
async fn restart_on_new_state(monitor: Monitor) {
    let path = monitor.project().state_path();
    let mut seen = modified(&path);
    let fleet = fleet_of(monitor.project());
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = modified(&path);
        if now == seen {
            continue;
        }
        let mut stepping = false;
        monitor.update_report(|r| stepping = r.steps.iter().any(|s| s.finished_at.is_none()));
        // A step of this monitor's may be what changed it: it finishes first.
        if stepping {
            continue;
        }
        seen = now;
        let again = fleet_of(monitor.project());
        if again.is_none() || again == fleet {
            continue;
        }
        tracing::info!(
            "{} has a new fleet: restarting with it",
            monitor.project().display(&path)
        );
        // Give the reporter and the persisted state a moment to be written.
        tokio::time::sleep(Duration::from_millis(600)).await;
        std::process::exit(0);
    }
}

/// The reporter: the status file, every second.
async fn write_reports(monitor: Monitor) {
    let path = status::local_path(monitor.project());
    loop {
        let mut report = monitor.report();
        report.written_at = status::now_unix();
        report.started_at = monitor.inner.started_at;
        match serde_json::to_vec_pretty(&report) {
            Ok(bytes) => {
                if let Err(e) = crate::atomic_file::write(&path, &bytes) {
                    tracing::warn!("cannot write {}: {e}", path.display());
                }
            }
            Err(e) => tracing::warn!("cannot serialize the status: {e}"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Every bus event in the monitor's log.
async fn log_events(monitor: Monitor) {
    let mut events = monitor.subscribe();
    loop {
        match events.recv().await {
            Ok(event) => tracing::info!("{event:?}"),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!("the log missed {n} monitor events")
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}
