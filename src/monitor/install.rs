//! Putting a monitor on every droplet: `orchestrate` and the deploy flows call this (native
//! `install_monitors`), so the fleet watches itself with the operator's machine switched off.
//!
//! Each droplet gets, under [`REMOTE_ROOT`], a copy of the project as the monitor needs it
//! (config files, the state, release histories, playbooks, stdlib, templates, the fleet's SSH
//! key, its own Ed25519 key, every peer's public key, and in the sandbox the address the
//! droplets reach its API on), the infra binary at `/usr/local/bin/infra`, the secrets the
//! monitor acts with in `/etc/infra/monitor.env` (0600: the cloud token, the SMTP and SMS
//! credentials, the Redis passwords), and a supervisor: a systemd unit where systemd runs, else
//! a restart loop with backoff started now and by a boot hook (`/etc/infra/boot.d`) after a
//! power cycle or a restore from a snapshot.
//!
//! Everything travels on SSH standard input (one script per droplet), never on a command line;
//! a droplet whose binary and bundle are unchanged is left alone and its monitor keeps running.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::json;
use sha2::{Digest, Sha256};

use super::keys::{self, OWN_KEY_FILE, PEERS_FILE};
use super::{MONITOR_DIR, REMOTE_ROOT};
use crate::config::Loaded;
use crate::project::Project;
use crate::remote::{Host, Pool, RemoteError, Session};
use crate::report::{Change, Reporter};

/// Where the binary goes on a droplet.
pub const REMOTE_BINARY: &str = "/usr/local/bin/infra";
/// The monitor's secrets on a droplet (`export NAME='value'` lines, 0600).
pub const REMOTE_ENV: &str = "/etc/infra/monitor.env";
/// The restart loop where there is no systemd.
pub const SUPERVISOR: &str = "/usr/local/lib/infra/monitor-supervise";
/// The monitor's log on a droplet (the supervisor appends to it).
pub const REMOTE_LOG: &str = "/var/log/infra-monitor.log";
/// The digest of what was last installed, to skip droplets that already have it.
const BUNDLE_DIGEST: &str = "bundle.sha256";

/// The restart loop: runs the monitor, waits (1 s, doubling to 30 s while it keeps failing
/// within a minute of starting) and runs it again. Its pid is in /run/infra-monitor.pid.
const SUPERVISOR_SCRIPT: &str = r#"#!/bin/sh
# infra's monitor supervisor (written by infra; no systemd here): keeps `infra monitor` running.
droplet=$1
echo $$ >/run/infra-monitor.pid
delay=1
while :; do
  started=$(date +%s)
  (
    cd /var/lib/infra/monitor || exit 1
    set -a
    [ -f /etc/infra/monitor.env ] && . /etc/infra/monitor.env
    set +a
    exec /usr/local/bin/infra --config-dir config monitor "$droplet"
  ) >>/var/log/infra-monitor.log 2>&1 </dev/null
  status=$?
  # 0: the monitor restarts on purpose (a new fleet): at once.
  if [ "$status" -eq 0 ] || [ $(( $(date +%s) - started )) -ge 60 ]; then delay=1; fi
  echo "$(date -u '+%Y-%m-%dT%H:%M:%SZ') supervisor: the monitor exited with $status; starting it again in ${delay}s" >>/var/log/infra-monitor.log
  if [ "$status" -eq 0 ]; then sleep 0.2; continue; fi
  sleep "$delay"
  delay=$((delay * 2)); [ "$delay" -gt 30 ] && delay=30
done
"#;

/// The systemd unit, where systemd runs (real droplets).
const UNIT: &str = r#"[Unit]
Description=infra monitor (peer health checks and self-healing)
After=network-online.target

[Service]
WorkingDirectory=/var/lib/infra/monitor
EnvironmentFile=-/etc/infra/monitor.env.systemd
ExecStart=/usr/local/bin/infra --config-dir config monitor %i
Restart=always
RestartSec=2

[Install]
WantedBy=multi-user.target
"#;

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("{0}")]
    Input(String),
    #[error("{0}")]
    Remote(#[from] RemoteError),
    #[error("on {droplet}: {message}")]
    Droplet { droplet: String, message: String },
    #[error("{0}")]
    Local(String),
}

/// One file of the bundle, relative to [`REMOTE_ROOT`].
#[derive(Debug, Clone)]
pub struct BundleFile {
    pub path: String,
    pub contents: Vec<u8>,
    pub mode: u32,
}

/// What one droplet receives besides the binary.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub droplet: String,
    pub files: Vec<BundleFile>,
    /// Secrets for [`REMOTE_ENV`], by variable name.
    pub env: BTreeMap<String, String>,
}

impl Bundle {
    /// A digest of everything in it (the secrets too, so a changed token reinstalls).
    pub fn digest(&self, binary: &str) -> String {
        let mut hash = Sha256::new();
        hash.update(binary.as_bytes());
        for f in &self.files {
            hash.update(f.path.as_bytes());
            hash.update([0]);
            hash.update(&f.contents);
            hash.update(f.mode.to_be_bytes());
        }
        for (k, v) in &self.env {
            hash.update(k.as_bytes());
            hash.update([0]);
            hash.update(v.as_bytes());
        }
        format!("{:x}", hash.finalize())
    }
}

/// The droplets monitors run on: every droplet of the state with an address.
pub fn monitored_droplets(loaded: &Loaded) -> Vec<Host> {
    loaded
        .runtime
        .droplets
        .iter()
        .filter_map(|(name, d)| {
            let ip = d.ip.as_deref()?.parse().ok()?;
            Some(Host::new(name.clone(), ip))
        })
        .collect()
}

/// Reads the files under `dir` (recursively), as bundle paths under `prefix`.
fn files_under(dir: &Path, prefix: &str, out: &mut Vec<BundleFile>) -> Result<(), InstallError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let rel = format!("{prefix}/{name}");
        if path.is_dir() {
            files_under(&path, &rel, out)?;
        } else if path.is_file() {
            let contents = std::fs::read(&path)
                .map_err(|e| InstallError::Local(format!("cannot read {}: {e}", path.display())))?;
            out.push(BundleFile {
                path: rel,
                contents,
                mode: 0o644,
            });
        }
    }
    Ok(())
}

fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, InstallError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(InstallError::Local(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

/// The sandbox's endpoint as the droplets see it: `config/.infra/sandbox/env` with the
/// droplets' URL, and its CA. None outside a sandbox, or when the operator set `DO_TOKEN`.
fn sandbox_files(project: &Project) -> Option<Vec<BundleFile>> {
    use crate::cloud::endpoint::{sandbox_dir, SandboxEndpoint, CA_FILE, ENV_FILE};
    if std::env::var_os("DO_TOKEN").is_some() {
        return None;
    }
    let endpoint = SandboxEndpoint::find(project)?;
    let url = endpoint.droplet_url.clone()?;
    // The token as the sandbox wrote it (the Token type never gives its text back).
    let text = std::fs::read_to_string(sandbox_dir(project).join(ENV_FILE)).ok()?;
    let token = text.lines().find_map(|l| l.strip_prefix("DO_TOKEN="))?;
    let mut files = vec![BundleFile {
        path: format!("config/.infra/sandbox/{ENV_FILE}"),
        contents: format!("DO_API_URL={url}\nDO_TOKEN={token}\n").into_bytes(),
        mode: 0o600,
    }];
    if let Some(ca) = endpoint.ca.as_ref().and_then(|p| std::fs::read(p).ok()) {
        files.push(BundleFile {
            path: format!("config/.infra/sandbox/{CA_FILE}"),
            contents: ca,
            mode: 0o644,
        });
    }
    Some(files)
}

/// Everything `droplet`'s monitor needs, read from the operator's project.
pub fn bundle(
    project: &Project,
    loaded: &Loaded,
    droplet: &str,
    public_keys: &BTreeMap<String, ed25519_dalek::VerifyingKey>,
) -> Result<Bundle, InstallError> {
    let mut files = Vec::new();
    let config = |name: &str| format!("config/{name}");
    for name in [
        "infrastructure.json",
        "deployment_config.json",
        "email_config.json",
        "sms_config.json",
        "known_hosts",
    ] {
        if let Some(contents) = read_optional(&project.config_file(name))? {
            files.push(BundleFile {
                path: config(name),
                contents,
                mode: 0o644,
            });
        }
    }
    let infra = project.infra_dir();
    for (name, mode) in [
        ("infrastructure_key", 0o600),
        ("infrastructure_key.pub", 0o644),
    ] {
        if let Some(contents) = read_optional(&infra.join(name))? {
            files.push(BundleFile {
                path: format!("config/.infra/{name}"),
                contents,
                mode,
            });
        }
    }
    files_under(
        &infra.join("releases"),
        "config/.infra/releases",
        &mut files,
    )?;
    for dir in ["playbooks", "stdlib", "templates"] {
        files_under(&project.root.join(dir), dir, &mut files)?;
    }
    let own = keys::ensure_key(project, droplet).map_err(|e| InstallError::Local(e.to_string()))?;
    files.push(BundleFile {
        path: format!("config/.infra/{MONITOR_DIR}/{OWN_KEY_FILE}"),
        contents: format!("{}\n", keys::secret_hex(&own)).into_bytes(),
        mode: 0o600,
    });
    files.push(BundleFile {
        path: format!("config/.infra/{MONITOR_DIR}/{PEERS_FILE}"),
        contents: keys::peers_json(public_keys).into_bytes(),
        mode: 0o644,
    });
    files.extend(sandbox_files(project).unwrap_or_default());
    let mut env = BTreeMap::new();
    let mut names: Vec<String> = crate::secrets::secret_variables(Some(loaded))
        .into_iter()
        .collect();
    names.push("DO_API_URL".into());
    names.sort();
    for name in names {
        if let Ok(value) = std::env::var(&name) {
            env.insert(name, value);
        }
    }
    Ok(Bundle {
        droplet: droplet.to_string(),
        files,
        env,
    })
}

/// `'text'` for a POSIX shell.
fn single_quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// The script (sent on standard input) that writes the bundle: each file atomically, with its
/// mode from the first byte, under `umask 077`.
pub fn bundle_script(bundle: &Bundle, digest: &str) -> String {
    use base64_lite::encode;
    let mut s = String::from("set -e\numask 077\n");
    let mut dirs: Vec<String> = bundle
        .files
        .iter()
        .filter_map(|f| {
            Path::new(&format!("{REMOTE_ROOT}/{}", f.path))
                .parent()
                .map(|p| p.display().to_string())
        })
        .collect();
    dirs.push("/etc/infra".into());
    dirs.push("/usr/local/lib/infra".into());
    dirs.sort();
    dirs.dedup();
    for d in &dirs {
        let _ = writeln!(s, "mkdir -p {}", single_quoted(d));
    }
    let _ = writeln!(
        s,
        "chmod 755 {REMOTE_ROOT} {REMOTE_ROOT}/config 2>/dev/null || true"
    );
    let mut write = |path: &str, contents: &[u8], mode: u32| {
        let target = single_quoted(path);
        let _ = writeln!(s, "base64 -d >{target}.new <<'INFRA_BUNDLE_END'");
        for chunk in encode(contents).as_bytes().chunks(76) {
            s.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
            s.push('\n');
        }
        let _ = writeln!(
            s,
            "INFRA_BUNDLE_END\nchmod {mode:o} {target}.new && mv -f {target}.new {target}"
        );
    };
    for f in &bundle.files {
        write(&format!("{REMOTE_ROOT}/{}", f.path), &f.contents, f.mode);
    }
    let mut env = String::new();
    let mut systemd_env = String::new();
    for (k, v) in &bundle.env {
        let _ = writeln!(env, "{k}={}", single_quoted(v));
        let _ = writeln!(systemd_env, "{k}={}", v.replace('\n', " "));
    }
    write(REMOTE_ENV, env.as_bytes(), 0o600);
    write(
        &format!("{REMOTE_ENV}.systemd"),
        systemd_env.as_bytes(),
        0o600,
    );
    write(SUPERVISOR, SUPERVISOR_SCRIPT.as_bytes(), 0o755);
    write(
        &format!("{REMOTE_ROOT}/{BUNDLE_DIGEST}"),
        format!("{digest}\n").as_bytes(),
        0o644,
    );
    s
}

/// Starts the monitor (or restarts it, to pick up a new binary or bundle), and makes sure it
/// comes back after a reboot.
pub fn start_script(droplet: &str) -> String {
    let name = single_quoted(droplet);
    format!(
        r#"set -e
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  cat >/etc/systemd/system/infra-monitor@.service <<'INFRA_UNIT_END'
{UNIT}INFRA_UNIT_END
  systemctl daemon-reload
  systemctl enable infra-monitor@{name} >/dev/null 2>&1
  systemctl restart infra-monitor@{name}
  echo "started: systemd"
  exit 0
fi
mkdir -p /etc/infra/boot.d
printf '#!/bin/sh\n%s\n' "setsid {SUPERVISOR} {name} </dev/null >/dev/null 2>&1 &" >/etc/infra/boot.d/60-infra-monitor
chmod 755 /etc/infra/boot.d/60-infra-monitor
if [ -f /run/infra-monitor.pid ] && kill -0 "$(cat /run/infra-monitor.pid)" 2>/dev/null; then
  # The supervisor starts the new one within a second.
  pkill -f '^/usr/local/bin/infra --config-dir config monitor' || true
  echo "restarted: supervisor"
else
  setsid {SUPERVISOR} {name} </dev/null >/dev/null 2>&1 &
  echo "started: supervisor"
fi
"#
    )
}

/// What was done on one droplet.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Installed {
    pub droplet: String,
    /// `unchanged`, `installed` (first time) or `updated`.
    pub outcome: String,
    pub binary_uploaded: bool,
}

/// Installs monitors for one project's fleet.
pub struct Installer {
    pub project: Project,
    pub loaded: Arc<Loaded>,
    pub pool: Arc<Pool>,
    pub reporter: Reporter,
    pub dry_run: bool,
    /// The binary to install: this very one unless told otherwise.
    pub binary: PathBuf,
}

impl Installer {
    pub fn new(
        project: Project,
        loaded: Arc<Loaded>,
        pool: Arc<Pool>,
        reporter: Reporter,
        dry_run: bool,
    ) -> Result<Installer, InstallError> {
        // This very binary: through /proc/self/exe where there is one, which still reads when
        // the file was replaced meanwhile (a rebuild, an upgrade) and so names it "(deleted)".
        // (By pid, not `self`: `strip` reads the path in a process of its own.)
        let proc_exe = PathBuf::from(format!("/proc/{}/exe", std::process::id()));
        let binary = if proc_exe.exists() {
            proc_exe
        } else {
            std::env::current_exe()
                .map_err(|e| InstallError::Local(format!("cannot find the infra binary: {e}")))?
        };
        Ok(Installer {
            project,
            loaded,
            pool,
            reporter,
            dry_run,
            binary,
        })
    }

    /// Installs on every droplet of `only` (every droplet with an address when empty).
    pub async fn install(&self, only: &[String]) -> Result<Vec<Installed>, InstallError> {
        if !self.loaded.spec.monitors {
            tracing::info!(
                "monitors are off (\"monitors\": false in infrastructure_spec): none installed"
            );
            return Ok(Vec::new());
        }
        let all = monitored_droplets(&self.loaded);
        let hosts: Vec<Host> = if only.is_empty() {
            all.clone()
        } else {
            for name in only {
                if !all.iter().any(|h| &h.name == name) {
                    return Err(InstallError::Input(format!(
                        "droplet `{name}` has no address in the state; run `infra orchestrate` first"
                    )));
                }
            }
            all.iter()
                .filter(|h| only.contains(&h.name))
                .cloned()
                .collect()
        };
        if hosts.is_empty() {
            return Ok(Vec::new());
        }
        if self.dry_run {
            // Nothing is written, not even a key: what would be installed, and where.
            for h in &hosts {
                let change = Change::new(
                    "monitor",
                    &h.name,
                    serde_json::Value::Null,
                    json!({"binary": REMOTE_BINARY, "root": REMOTE_ROOT}),
                );
                self.reporter.would(
                    &change,
                    &format!(
                        "install the monitor on {} (the infra binary if it differs, configs, playbooks, its key, a supervisor) and start it",
                        h.name
                    ),
                );
            }
            return Ok(Vec::new());
        }
        // Every droplet's key exists before any bundle is made: each bundle names all peers.
        let mut public_keys = BTreeMap::new();
        for h in &all {
            let key = keys::ensure_key(&self.project, &h.name)
                .map_err(|e| InstallError::Local(e.to_string()))?;
            public_keys.insert(h.name.clone(), key.verifying_key());
        }
        let binary = shippable_binary(&self.binary)?;
        let binary_digest = format!("{:x}", Sha256::digest(&binary));
        let mut bundles = BTreeMap::new();
        for h in &hosts {
            bundles.insert(
                h.name.clone(),
                bundle(&self.project, &self.loaded, &h.name, &public_keys)?,
            );
        }
        let results = self
            .pool
            .fan_out(&hosts, hosts.len(), |session| {
                let bundle = &bundles[&session.host().name];
                let binary = &binary;
                let binary_digest = &binary_digest;
                async move { install_one(&session, bundle, binary, binary_digest).await }
            })
            .await;
        let mut out = Vec::new();
        let mut failures = Vec::new();
        for (host, result) in results {
            match result {
                Ok(installed) => {
                    if installed.outcome != "unchanged" {
                        let change = Change::new(
                            "monitor",
                            &host.name,
                            serde_json::Value::Null,
                            json!({"outcome": installed.outcome, "binary_uploaded": installed.binary_uploaded}),
                        );
                        self.reporter.done(
                            &change,
                            &format!("{}: monitor {}", host.name, installed.outcome),
                        );
                    }
                    out.push(installed);
                }
                Err(e) => failures.push(format!("{}: {e}", host.name)),
            }
        }
        if !failures.is_empty() {
            return Err(InstallError::Local(format!(
                "the monitor could not be installed on {} droplet(s):\n  {}",
                failures.len(),
                failures.join("\n  ")
            )));
        }
        Ok(out)
    }
}

/// The binary as droplets get it: without its debug sections where `strip` is installed (a
/// debug build is mostly debug info; function names stay for backtraces), else as it is.
fn shippable_binary(path: &Path) -> Result<Vec<u8>, InstallError> {
    let read = |p: &Path| {
        std::fs::read(p)
            .map_err(|e| InstallError::Local(format!("cannot read {}: {e}", p.display())))
    };
    let stripped = std::env::temp_dir().join(format!("infra-monitor-{}", std::process::id()));
    let status = std::process::Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(&stripped)
        .arg(path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    let bytes = match status {
        Ok(s) if s.success() => read(&stripped),
        _ => read(path),
    };
    let _ = std::fs::remove_file(&stripped);
    bytes
}

async fn install_one(
    session: &Session,
    bundle: &Bundle,
    binary: &[u8],
    binary_digest: &str,
) -> Result<Installed, InstallError> {
    let droplet = session.host().name.clone();
    let digest = bundle.digest(binary_digest);
    let probe = session
        .run(&format!(
            "sha256sum {REMOTE_BINARY} 2>/dev/null | cut -d' ' -f1; cat {REMOTE_ROOT}/{BUNDLE_DIGEST} 2>/dev/null || true; [ -f /run/infra-monitor.pid ] && kill -0 \"$(cat /run/infra-monitor.pid)\" 2>/dev/null && echo running || {{ systemctl is-active --quiet infra-monitor@{} 2>/dev/null && echo running; }} || true",
            single_quoted(&droplet)
        ))
        .await?;
    let text = probe.stdout_text();
    let mut lines = text.lines();
    let remote_binary = lines.next().unwrap_or("").trim().to_string();
    let remote_digest = lines.next().unwrap_or("").trim().to_string();
    let running = text.lines().any(|l| l.trim() == "running");
    let first_time = remote_digest.is_empty();
    if remote_digest == digest && remote_binary == binary_digest && running {
        return Ok(Installed {
            droplet,
            outcome: "unchanged".into(),
            binary_uploaded: false,
        });
    }
    let binary_uploaded = remote_binary != binary_digest;
    if binary_uploaded {
        session.upload(REMOTE_BINARY, binary, 0o755).await?;
    }
    let script = bundle_script(bundle, &digest);
    let out = session
        .exec_with(
            "sh -s",
            Some(script.as_bytes()),
            std::time::Duration::from_secs(300),
        )
        .await?;
    if !out.success() {
        return Err(InstallError::Droplet {
            droplet,
            message: format!(
                "writing the monitor's files failed ({}): {}",
                out.describe_status(),
                out.stderr_text().trim()
            ),
        });
    }
    let out = session.run(&start_script(&bundle.droplet)).await?;
    if !out.success() {
        return Err(InstallError::Droplet {
            droplet,
            message: format!(
                "starting the monitor failed ({}): {}",
                out.describe_status(),
                out.stderr_text().trim()
            ),
        });
    }
    Ok(Installed {
        droplet,
        outcome: if first_time { "installed" } else { "updated" }.into(),
        binary_uploaded,
    })
}

/// Writes `state` as the monitor's state file on each of `hosts` that has a monitor; a droplet
/// that cannot be reached is told in the result, not an error (it gets the state with the next
/// install). The droplets' names that took it.
pub async fn share_state(pool: &Pool, hosts: &[Host], state: &[u8]) -> Vec<String> {
    let path = format!("{REMOTE_ROOT}/config/infrastructure.json");
    let results = pool
        .fan_out(hosts, hosts.len().max(1), |session| {
            let path = path.clone();
            async move {
                let has = session
                    .exec(&format!("test -d {REMOTE_ROOT}/config"))
                    .await?
                    .success();
                if has {
                    session.upload(&path, state, 0o644).await?;
                }
                Ok::<_, RemoteError>(has)
            }
        })
        .await;
    let mut took = Vec::new();
    for (host, result) in results {
        match result {
            Ok(true) => took.push(host.name),
            Ok(false) => {}
            Err(e) => tracing::warn!("{}: the state was not shared: {e}", host.name),
        }
    }
    took
}

/// Base64 (standard alphabet, padded) for the bundle script; a dozen lines instead of a crate.
mod base64_lite {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub fn encode(bytes: &[u8]) -> String {
        let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                chunk.get(1).copied().unwrap_or(0),
                chunk.get(2).copied().unwrap_or(0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    #[cfg(test)]
    #[test]
    fn encodes_like_rfc_4648() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(encode(plain.as_bytes()), encoded);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundle_script_writes_every_file_with_its_mode_and_no_secret_on_a_command_line() {
        let bundle = Bundle {
            droplet: "web1".into(),
            files: vec![BundleFile {
                path: "config/.infra/monitor/key".into(),
                contents: b"secret-key\n".to_vec(),
                mode: 0o600,
            }],
            env: BTreeMap::from([("DO_TOKEN".to_string(), "tok'en".to_string())]),
        };
        let script = bundle_script(&bundle, "abc");
        assert!(script.contains("chmod 600 '/var/lib/infra/monitor/config/.infra/monitor/key'.new"));
        assert!(!script.contains("secret-key") && !script.contains("tok'en"));
        // The script really writes what it says: run it against a scratch root.
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().display().to_string();
        let local = script
            .replace(REMOTE_ROOT, &format!("{root}/root"))
            .replace("/etc/infra", &format!("{root}/etc"))
            .replace("/usr/local/lib/infra", &format!("{root}/lib"));
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&local)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let key = dir.path().join("root/config/.infra/monitor/key");
        assert_eq!(std::fs::read(&key).unwrap(), b"secret-key\n");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let env = std::fs::read_to_string(dir.path().join("etc/monitor.env")).unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                ". {}/etc/monitor.env && printf %s \"$DO_TOKEN\"",
                root
            ))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "tok'en", "{env}");
    }

    #[test]
    fn the_digest_changes_with_any_file_or_secret() {
        let mut bundle = Bundle {
            droplet: "web1".into(),
            files: vec![],
            env: BTreeMap::new(),
        };
        let a = bundle.digest("bin");
        bundle.env.insert("DO_TOKEN".into(), "x".into());
        let b = bundle.digest("bin");
        assert_ne!(a, b);
        assert_ne!(b, bundle.digest("other-bin"));
    }
}
