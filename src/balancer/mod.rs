//! The load balancer: nginx on the master, one config for every project-environment
//! (templates/nginx/nginx.conf.j2). A new config is checked with `nginx -t` on the master
//! before it replaces the old one; a config that fails the check is never installed, and the
//! previous one keeps serving. Reloads are graceful: old workers finish their requests.
//!
//! Where each web service runs comes from the deploys ([`LivePorts`]): a project-environment
//! that has been deployed is routed to the droplets and ports its live containers publish; one
//! never deployed is routed to its placement (the service's port on each assigned droplet).

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use crate::config::Loaded;
use crate::project::Project;
use crate::remote::Session;
use crate::state::lock::{LockError, StateLock};
use crate::template::{nginx_context, NginxContext, Templates};

pub const CONFIG_PATH: &str = "/etc/nginx/nginx.conf";
const NEW_PATH: &str = "/etc/nginx/nginx.conf.infra-new";
const PREVIOUS_PATH: &str = "/etc/nginx/nginx.conf.infra-previous";

#[derive(Debug, thiserror::Error)]
pub enum BalancerError {
    #[error("the new nginx config failed `nginx -t` on {droplet}, so the previous config keeps serving:\n{output}")]
    CheckFailed { droplet: String, output: String },
    #[error("nginx on {droplet}: {message}")]
    Apply { droplet: String, message: String },
    #[error("{0}")]
    Remote(#[from] crate::remote::RemoteError),
    #[error("{0}")]
    Template(#[from] crate::template::TemplateError),
    #[error("{0}")]
    Locked(String),
}

/// Where deployed web services run: `(project_env, service, droplet) -> droplet port`, and
/// which project-environments have been deployed at all.
#[derive(Debug, Clone, Default)]
pub struct LivePorts {
    pub ports: BTreeMap<(String, String, String), u16>,
    pub deployed: HashSet<String>,
}

/// The nginx context: placement's upstreams with each deployed service's live targets, less
/// the droplets recovery has drained (until it restores them).
pub fn context(loaded: &Loaded, live: &LivePorts) -> Result<NginxContext, BalancerError> {
    let mut context = nginx_context(loaded)?;
    let drained = loaded.state.drained_droplets();
    for upstream in &mut context.upstreams {
        upstream.targets.retain(|t| !drained.contains(&t.droplet));
    }
    for upstream in &mut context.upstreams {
        if !live.deployed.contains(&upstream.project_env) {
            continue;
        }
        upstream.targets.retain_mut(|target| {
            let key = (
                upstream.project_env.clone(),
                upstream.service.clone(),
                target.droplet.clone(),
            );
            match live.ports.get(&key) {
                Some(port) => {
                    target.port = *port;
                    true
                }
                None => false,
            }
        });
    }
    Ok(context)
}

pub fn render(
    templates: &Templates,
    loaded: &Loaded,
    live: &LivePorts,
) -> Result<String, BalancerError> {
    Ok(templates.render("nginx/nginx.conf.j2", &context(loaded, live)?)?)
}

/// One writer of the nginx config at a time (deploys of different project-environments run
/// at once; each must render from the others' latest targets).
pub fn lock(project: &Project, command: &str) -> Result<StateLock, BalancerError> {
    let path = project.infra_dir().join("balancer.lock");
    StateLock::acquire(&path, command, Duration::from_secs(120)).map_err(|e| match e {
        LockError::Held(h) => BalancerError::Locked(format!(
            "the nginx config is being changed by pid {} on {} (`{}`) since {}; try again when it is done",
            h.pid, h.host, h.command, h.since
        )),
        other => BalancerError::Locked(other.to_string()),
    })
}

/// The config the master has now (empty when it has none).
pub async fn current(session: &Session) -> Result<String, BalancerError> {
    Ok(session
        .exec(&format!("cat {CONFIG_PATH} 2>/dev/null"))
        .await?
        .stdout_text())
}

/// What applying a config did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The master already had it (and nginx runs).
    Unchanged,
    Reloaded,
    /// nginx was not running; now it is.
    Started,
}

/// Installs `config` on the master: checked with `nginx -t` first (a failing config is removed
/// and the previous one stays), then moved into place and nginx reloaded (or started).
pub async fn apply(session: &Session, config: &str) -> Result<Applied, BalancerError> {
    let droplet = session.host().name.clone();
    session.upload(NEW_PATH, config.as_bytes(), 0o644).await?;
    let script = format!(
        r#"new={NEW_PATH}
running=
if [ -s /run/nginx.pid ] && kill -0 "$(cat /run/nginx.pid)" 2>/dev/null; then running=1; fi
if [ -n "$running" ] && cmp -s "$new" {CONFIG_PATH}; then rm -f "$new"; echo unchanged; exit 0; fi
if ! out=$(nginx -t -q -c "$new" 2>&1); then rm -f "$new"; printf '%s\n' "$out" >&2; exit 3; fi
[ -f {CONFIG_PATH} ] && cp -p {CONFIG_PATH} {PREVIOUS_PATH}
mv -f "$new" {CONFIG_PATH}
if [ -n "$running" ]; then
  master=$(cat /run/nginx.pid)
  old=$(cat /proc/$master/task/*/children 2>/dev/null)
  nginx -s reload
  # The signal returns at once; until the old workers stop accepting, new requests still get
  # the old targets (a drained, dead droplet among them). Wait for that, 5 s at most.
  i=0
  while [ $i -lt 50 ]; do
    busy=
    for p in $old; do
      case "$(tr '\0' ' ' < /proc/$p/cmdline 2>/dev/null)" in
        *"shutting down"*) ;;
        *"worker process"*) busy=1 ;;
      esac
    done
    [ -z "$busy" ] && break
    sleep 0.1
    i=$((i + 1))
  done
  echo reloaded
elif [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then systemctl start nginx; echo started
else nginx; echo started
fi"#
    );
    let out = session.exec(&script).await?;
    match (out.status, out.stdout_text().trim()) {
        (0, "unchanged") => Ok(Applied::Unchanged),
        (0, "reloaded") => Ok(Applied::Reloaded),
        (0, _) => Ok(Applied::Started),
        (3, _) => Err(BalancerError::CheckFailed {
            droplet,
            output: out.stderr_text().trim().to_string(),
        }),
        _ => Err(BalancerError::Apply {
            droplet,
            message: format!(
                "installing the config failed ({}): {}",
                out.describe_status(),
                out.stderr_text().trim()
            ),
        }),
    }
}

/// A unified diff of two configs (`diff -u`), for dry runs; empty when they are equal.
pub fn diff(before: &str, after: &str) -> String {
    if before == after {
        return String::new();
    }
    let dir = std::env::temp_dir().join(format!("infra-nginx-diff-{}", std::process::id()));
    let (a, b) = (dir.join("current"), dir.join("new"));
    let written = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(&a, before))
        .and_then(|()| std::fs::write(&b, after));
    if written.is_err() {
        let _ = std::fs::remove_dir_all(&dir);
        return String::from("(the configs differ)");
    }
    let out = std::process::Command::new("diff")
        .arg("-u")
        .arg("--label")
        .arg(format!("{CONFIG_PATH} (on the master)"))
        .arg("--label")
        .arg(format!("{CONFIG_PATH} (new)"))
        .arg(&a)
        .arg(&b)
        .output();
    let _ = std::fs::remove_dir_all(&dir);
    match out {
        Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
        Err(_) => String::from("(the configs differ; install diffutils to see how)"),
    }
}
