//! The rollout of one service of a release.
//!
//! Web services, one droplet at a time (or `batch` at once): the new container starts beside
//! the old one on the service's other droplet port (ports alternate between the service's own
//! port and that port ± 20000 from release to release), must answer its health check with a
//! 2xx within `health_timeout`, then nginx is moved to it, the old one drains and is stopped,
//! and the new one takes the service's name. A failed gate removes the new container; nginx
//! never saw it and the old release keeps serving. So a single web droplet never goes dark.
//!
//! Workers after the web services: a new one starts beside the old, then the old one stops;
//! a `singleton` (a scheduler) is stopped first and only then replaced, so two never run at
//! once, and a replacement that dies is undone by starting the old one again.

use std::collections::HashSet;
use std::time::Duration;

use indexmap::IndexMap;
use serde_json::{json, Value};

use super::bootstrap::droplet_error;
use super::releases::{now_rfc3339, LiveContainer, ReleaseRecord, Releases};
use super::ship::short_digest;
use super::{DeployError, Deployer, Target, DRAIN, STOP_GRACE};
use crate::balancer::{self, Applied, LivePorts};
use crate::platform::{pull_line, remove_line, ContainerSpec, Platform};
use crate::remote::{shell_quote, Session};
use crate::report::Change;
use crate::state::placement::project_env;
use crate::state::runtime::ServiceKind;
use crate::template::{split_command, Secret};

/// How long a new worker must stay up (running, not restarted) to count as started.
const WORKER_SETTLE: Duration = Duration::from_secs(2);
/// Pulling a large image over a slow link takes a while.
const PULL_TIMEOUT: Duration = Duration::from_secs(1800);
/// The distance between a web service's two droplet ports.
const SLOT_OFFSET: u16 = 20000;

/// The droplet port a web service's next container publishes: the other one of its two.
pub fn next_port(own: u16, live: Option<u16>) -> u16 {
    if live == Some(own) {
        other_port(own)
    } else {
        own
    }
}

pub fn other_port(own: u16) -> u16 {
    if own <= u16::MAX - SLOT_OFFSET {
        own + SLOT_OFFSET
    } else {
        own - SLOT_OFFSET
    }
}

/// `hostomatic-uat-backend-next`: the new container until it takes over.
fn next_name(full_name: &str) -> String {
    format!("{full_name}-next")
}

/// A new container started beside the old one.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub target: Target,
    pub container: String,
    pub port: Option<u16>,
}

/// What rolling one service did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ServiceOutcome {
    pub service: String,
    pub droplets: Vec<String>,
    /// Already running this release everywhere: nothing was touched.
    pub unchanged: bool,
}

impl Deployer {
    /// Rolls `service` of `release` out to every droplet it is placed on.
    pub async fn deploy_service(
        &self,
        service: &str,
        release: &ReleaseRecord,
        batch: usize,
    ) -> Result<ServiceOutcome, DeployError> {
        let targets: Vec<Target> = self
            .targets()?
            .into_iter()
            .filter(|t| t.service == service)
            .collect();
        if targets.is_empty() {
            return Err(DeployError::Input(format!(
                "`{}` has no service `{service}` placed on a droplet",
                self.project_env
            )));
        }
        let image = release.images.get(service).ok_or_else(|| {
            DeployError::Input(format!(
                "release {} has no image of `{service}` (the service was added after it); deploy a new release",
                release.name
            ))
        })?;
        let reference = self
            .registry
            .pull_reference(&image.repository, &image.digest);
        let releases = self.releases()?;
        let live = releases.live.get(service).cloned().unwrap_or_default();
        let mut outcome = ServiceOutcome {
            service: service.to_string(),
            droplets: targets.iter().map(|t| t.droplet.clone()).collect(),
            unchanged: false,
        };
        if targets.iter().all(|t| {
            live.get(&t.droplet)
                .is_some_and(|c| c.release == release.name && c.digest == image.digest)
        }) {
            outcome.unchanged = true;
            self.reporter.progress(
                "unchanged",
                &targets[0].full_name,
                &format!("already runs {} on every droplet", release.name),
                json!({"release": release.name}),
            );
            return Ok(outcome);
        }
        if self.platform == Platform::Kubernetes {
            return Err(DeployError::Input(
                "the kubernetes platform deploys a whole release at once: use `deploy_release`"
                    .into(),
            ));
        }
        let secrets = self.secrets()?.swap_remove(service).unwrap_or_default();
        match targets[0].kind {
            ServiceKind::Web => {
                for chunk in targets.chunks(batch.max(1)) {
                    self.roll_web(chunk, release, &image.digest, &reference, &secrets)
                        .await?;
                }
            }
            ServiceKind::Worker => {
                for target in &targets {
                    self.replace_worker(target, release, &image.digest, &reference, &secrets)
                        .await?;
                }
            }
        }
        self.retire_unplaced(service, &targets).await?;
        Ok(outcome)
    }

    /// Puts `service` of `release` on `droplet` alone, as a deploy would (web: started beside
    /// whatever is there, gated on its health check, recorded live; workers replaced), the
    /// service's other droplets untouched: what recovery does on a rebuilt droplet whose
    /// container is missing. The image comes from the registry when the droplet lacks it.
    pub async fn deploy_service_on(
        &self,
        service: &str,
        release: &ReleaseRecord,
        droplet: &str,
    ) -> Result<(), DeployError> {
        let targets: Vec<Target> = self
            .targets()?
            .into_iter()
            .filter(|t| t.service == service && t.droplet == droplet)
            .collect();
        let Some(first) = targets.first() else {
            return Err(DeployError::Input(format!(
                "`{}` has no service `{service}` placed on {droplet}",
                self.project_env
            )));
        };
        let image = release.images.get(service).ok_or_else(|| {
            DeployError::Input(format!(
                "release {} has no image of `{service}`; deploy a new release",
                release.name
            ))
        })?;
        if self.platform == Platform::Kubernetes {
            return Err(DeployError::Input(
                "the kubernetes platform runs no containers on the droplets for infra to restart"
                    .into(),
            ));
        }
        let reference = self
            .registry
            .pull_reference(&image.repository, &image.digest);
        let secrets = self.secrets()?.swap_remove(service).unwrap_or_default();
        match first.kind {
            ServiceKind::Web => {
                self.roll_web(&targets, release, &image.digest, &reference, &secrets)
                    .await
            }
            ServiceKind::Worker => {
                self.replace_worker(first, release, &image.digest, &reference, &secrets)
                    .await
            }
        }
    }

    /// Pulls every image of `release` onto every droplet that will run it, all droplets at
    /// once, before anything is replaced: the rollout then starts containers from images
    /// already there, so each droplet spends as little time as possible between old and new.
    pub async fn pull_release(&self, release: &ReleaseRecord) -> Result<(), DeployError> {
        if self.platform == Platform::Kubernetes {
            return Ok(());
        }
        let mut by_droplet: IndexMap<String, (crate::remote::Host, Vec<String>)> = IndexMap::new();
        for t in self.targets()? {
            let Some(image) = release.images.get(&t.service) else {
                continue;
            };
            let reference = self
                .registry
                .pull_reference(&image.repository, &image.digest);
            let entry = by_droplet
                .entry(t.droplet.clone())
                .or_insert_with(|| (t.host.clone(), Vec::new()));
            if !entry.1.contains(&reference) {
                entry.1.push(reference);
            }
        }
        if self.dry_run {
            for (droplet, (_, references)) in &by_droplet {
                let change = Change::new("pull_images", droplet, Value::Null, json!(references));
                self.reporter.would(
                    &change,
                    &format!(
                        "pull {} image(s) of {} on {droplet}",
                        references.len(),
                        release.name
                    ),
                );
            }
            return Ok(());
        }
        let hosts: Vec<crate::remote::Host> = by_droplet.values().map(|(h, _)| h.clone()).collect();
        let results = self
            .pool
            .fan_out(&hosts, hosts.len(), |session| {
                let references = by_droplet[&session.host().name].1.clone();
                async move {
                    let started = std::time::Instant::now();
                    let line = references
                        .iter()
                        .map(|r| pull_line(self.platform, r))
                        .collect::<Vec<_>>()
                        .join(" && ");
                    let out = session.exec_with(&line, None, PULL_TIMEOUT).await?;
                    if !out.success() {
                        return Err(droplet_error(
                            session.host(),
                            &format!("pulling the images of {}", release.name),
                            &out,
                        ));
                    }
                    Ok::<(usize, f64), DeployError>((
                        references.len(),
                        started.elapsed().as_secs_f64(),
                    ))
                }
            })
            .await;
        for (host, result) in results {
            let (count, seconds) = result?;
            self.reporter.progress(
                "pulled",
                &host.name,
                &format!(
                    "{count} image(s) of {} ready in {seconds:.1} s",
                    release.name
                ),
                json!({"release": release.name, "images": count, "seconds": seconds}),
            );
        }
        Ok(())
    }

    /// The droplet ports other services hold on `droplet` (their own and their live ones).
    fn ports_taken(&self, droplet: &str, except: &str) -> Result<HashSet<u16>, DeployError> {
        let mut taken = HashSet::new();
        for (pe, services) in &self.loaded.services {
            for (name, record) in services {
                if pe == &self.project_env && name == except {
                    continue;
                }
                if record.assigned_droplets.iter().any(|d| d == droplet) {
                    taken.extend(record.port);
                }
            }
        }
        let live = self.live_ports()?;
        for ((pe, service, d), port) in live.ports {
            if d == droplet && !(pe == self.project_env && service == except) {
                taken.insert(port);
            }
        }
        Ok(taken)
    }

    async fn roll_web(
        &self,
        chunk: &[Target],
        release: &ReleaseRecord,
        digest: &str,
        reference: &str,
        secrets: &IndexMap<String, Secret>,
    ) -> Result<(), DeployError> {
        let releases = self.releases()?;
        let mut candidates = Vec::new();
        for target in chunk {
            let own = target.port.ok_or_else(|| {
                DeployError::Input(format!(
                    "web service `{}` has no port; run `infra validate` to see why",
                    target.full_name
                ))
            })?;
            let live = releases
                .live
                .get(&target.service)
                .and_then(|by| by.get(&target.droplet));
            let port = next_port(own, live.and_then(|c| c.port));
            if port != own
                && self
                    .ports_taken(&target.droplet, &target.service)?
                    .contains(&port)
            {
                return Err(DeployError::Input(format!(
                    "`{}` needs droplet port {port} on {} to start beside its running release, but another service holds it; give one of them another `port` in deployment_config.json",
                    target.full_name, target.droplet
                )));
            }
            let old = live.map(|c| c.release.clone());
            let change = Change::new(
                "deploy_service",
                &format!("{}@{}", target.full_name, target.droplet),
                json!(old),
                json!({"release": release.name, "digest": digest, "port": port}),
            );
            if self.dry_run {
                self.reporter.would(
                    &change,
                    &format!(
                        "start {} ({}) on {} port {port} beside {}, gate on GET {} (2xx within {} s), move nginx to it, drain {} s, stop the old one",
                        target.full_name,
                        short_digest(digest),
                        target.droplet,
                        old.as_deref().unwrap_or("nothing"),
                        target.config.health_path(),
                        target.config.health_timeout(),
                        DRAIN.as_secs()
                    ),
                );
                continue;
            }
            candidates.push((target.clone(), port, change));
        }
        if self.dry_run {
            return Ok(());
        }
        // Start and gate the batch's candidates together.
        let started = futures_util::future::join_all(candidates.iter().map(
            |(target, port, _)| async move {
                let started = std::time::Instant::now();
                let candidate = self
                    .start_named(
                        target,
                        release,
                        reference,
                        secrets,
                        Some(*port),
                        &next_name(&target.full_name),
                    )
                    .await?;
                let session = self.pool.session(&target.host).await?;
                self.reporter.progress(
                    "started",
                    &format!("{}@{}", target.full_name, target.droplet),
                    &format!(
                        "started {} on port {port} in {:.1} s; checking {}",
                        release.name,
                        started.elapsed().as_secs_f64(),
                        target.config.health_path()
                    ),
                    json!({"release": release.name, "port": port, "seconds": started.elapsed().as_secs_f64()}),
                );
                let gate = std::time::Instant::now();
                self.gate(&session, &candidate).await?;
                self.reporter.progress(
                    "healthy",
                    &format!("{}@{}", target.full_name, target.droplet),
                    &format!("healthy in {:.1} s", gate.elapsed().as_secs_f64()),
                    json!({"seconds": gate.elapsed().as_secs_f64()}),
                );
                Ok::<Candidate, DeployError>(candidate)
            },
        ))
        .await;
        let mut healthy = Vec::new();
        let mut failure = None;
        for ((_, _, change), result) in candidates.iter().zip(started) {
            match result {
                Ok(c) => healthy.push(c),
                Err(e) => {
                    self.reporter.failed(change, &e.to_string());
                    failure.get_or_insert(e);
                }
            }
        }
        if let Some(e) = failure {
            for c in &healthy {
                self.discard(c).await;
            }
            return Err(e);
        }
        // Switch: nginx to the new containers.
        let mut releases = self.releases()?;
        let before = releases.clone();
        for c in &healthy {
            releases
                .live
                .entry(c.target.service.clone())
                .or_default()
                .insert(
                    c.target.droplet.clone(),
                    LiveContainer {
                        release: release.name.clone(),
                        container: c.target.full_name.clone(),
                        port: c.port,
                        digest: digest.to_string(),
                    },
                );
        }
        self.save_releases(&releases)?;
        if let Err(e) = self.render_nginx().await {
            self.save_releases(&before)?;
            for c in &healthy {
                self.discard(c).await;
            }
            return Err(e);
        }
        // Drain, then the old ones go and the new ones take the service's name.
        tokio::time::sleep(DRAIN).await;
        for ((_, _, change), c) in candidates.iter().zip(&healthy) {
            let session = self.pool.session(&c.target.host).await?;
            self.take_over(&session, c).await?;
            self.reporter.done(
                change,
                &format!(
                    "{}@{}: {} live on port {}",
                    c.target.full_name,
                    c.target.droplet,
                    release.name,
                    c.port.unwrap_or_default()
                ),
            );
        }
        Ok(())
    }

    /// Pulls the image (if the droplet lacks it), writes the env file and starts container
    /// `name`: with `port` a web service's droplet port, published beside its old one.
    async fn start_named(
        &self,
        target: &Target,
        release: &ReleaseRecord,
        reference: &str,
        secrets: &IndexMap<String, Secret>,
        port: Option<u16>,
        name: &str,
    ) -> Result<Candidate, DeployError> {
        let session = self.pool.session(&target.host).await?;
        let env = self.env_file(target, &release.name, secrets)?;
        let env_path = Deployer::env_path(target);
        session.upload(&env_path, env.as_bytes(), 0o600).await?;
        let pull = session
            .exec_with(&pull_line(self.platform, reference), None, PULL_TIMEOUT)
            .await?;
        if !pull.success() {
            return Err(droplet_error(
                &target.host,
                &format!("pulling {reference}"),
                &pull,
            ));
        }
        let command = match &target.config.command {
            Some(c) => split_command(c).map_err(|problem| {
                DeployError::Input(format!(
                    "the command of `{}` in deployment_config.json {problem}",
                    target.full_name
                ))
            })?,
            None => Vec::new(),
        };
        let spec = ContainerSpec {
            name: name.to_string(),
            image: reference.to_string(),
            env_file: env_path,
            publish: port.map(|p| (p, target.port.unwrap_or(p))),
            command,
            labels: vec![
                ("infra.project".into(), self.name.clone()),
                ("infra.environment".into(), self.environment.clone()),
                ("infra.service".into(), target.service.clone()),
                ("infra.release".into(), release.name.clone()),
                (
                    "infra.type".into(),
                    match target.kind {
                        ServiceKind::Web => "web".into(),
                        ServiceKind::Worker => "worker".into(),
                    },
                ),
            ],
        };
        let line = format!(
            "{} && {}",
            remove_line(self.platform, name, 0),
            spec.run_line(self.platform)
        );
        let out = session.exec(&line).await?;
        if !out.success() {
            return Err(droplet_error(
                &target.host,
                &format!("starting {name}"),
                &out,
            ));
        }
        Ok(Candidate {
            target: target.clone(),
            container: name.to_string(),
            port,
        })
    }

    /// The health gate: GET `health_path` on the candidate's droplet port until it answers
    /// 2xx, up to `health_timeout`; a container that exits fails at once. A failure removes
    /// the candidate and says its last log lines.
    async fn gate(&self, session: &Session, c: &Candidate) -> Result<(), DeployError> {
        let port = c.port.unwrap_or_default();
        let path = c.target.config.health_path();
        let timeout = c.target.config.health_timeout();
        let cli = self.platform.cli();
        let name = shell_quote(&c.container);
        let url = shell_quote(&format!("http://127.0.0.1:{port}{path}"));
        let script = format!(
            r#"deadline=$(( $(date +%s) + {timeout} ))
code=none
while :; do
  code=$(curl -s -o /dev/null -w '%{{http_code}}' --max-time 2 {url} || true)
  case $code in 2??) echo "ok $code"; exit 0 ;; esac
  if [ "$({cli} container inspect -f '{{{{.State.Running}}}}' {name} 2>/dev/null)" != true ]; then echo "the container exited"; exit 1; fi
  if [ "$(date +%s)" -ge "$deadline" ]; then
    case $code in 000) echo "no answer on port {port} within {timeout} s" ;; *) echo "GET {path} answered $code, not 2xx, for {timeout} s" ;; esac
    exit 1
  fi
  sleep 0.25
done"#
        );
        let out = session
            .exec_with(&script, None, Duration::from_secs(timeout + 30))
            .await?;
        if out.success() {
            return Ok(());
        }
        let reason = out.stdout_text().trim().to_string();
        let log = self.log_tail(session, &c.container).await;
        self.discard(c).await;
        Err(DeployError::Unhealthy {
            service: c.target.full_name.clone(),
            droplet: c.target.droplet.clone(),
            reason,
            log,
        })
    }

    async fn log_tail(&self, session: &Session, container: &str) -> String {
        let cli = self.platform.cli();
        match session
            .exec(&format!(
                "{cli} logs --tail 20 {} 2>&1",
                shell_quote(container)
            ))
            .await
        {
            Ok(out) => {
                let text = out.stdout_text();
                if text.trim().is_empty() {
                    "(it wrote nothing)".into()
                } else {
                    text.trim_end().to_string()
                }
            }
            Err(e) => format!("(cannot read its log: {e})"),
        }
    }

    /// Removes a candidate that will not go live.
    async fn discard(&self, c: &Candidate) {
        if let Ok(session) = self.pool.session(&c.target.host).await {
            let line = remove_line(self.platform, &c.container, 0);
            if let Err(e) = session.exec(&line).await {
                tracing::warn!("cannot remove {} on {}: {e}", c.container, c.target.droplet);
            }
        }
    }

    /// The old container stops (it has drained) and the candidate takes the service's name.
    async fn take_over(&self, session: &Session, c: &Candidate) -> Result<(), DeployError> {
        let cli = self.platform.cli();
        let line = format!(
            "{} && {cli} rename {} {}",
            remove_line(self.platform, &c.target.full_name, STOP_GRACE),
            shell_quote(&c.container),
            shell_quote(&c.target.full_name)
        );
        let out = session.exec(&line).await?;
        if !out.success() {
            return Err(droplet_error(
                &c.target.host,
                &format!("replacing {}", c.target.full_name),
                &out,
            ));
        }
        Ok(())
    }

    /// Whether `name` is still running, unrestarted, after [`WORKER_SETTLE`].
    async fn settled(&self, session: &Session, name: &str) -> Result<bool, DeployError> {
        tokio::time::sleep(WORKER_SETTLE).await;
        let cli = self.platform.cli();
        let out = session
            .exec(&format!(
                "{cli} container inspect -f '{{{{.State.Running}}}} {{{{.RestartCount}}}}' {}",
                shell_quote(name)
            ))
            .await?;
        Ok(out.success() && out.stdout_text().trim() == "true 0")
    }

    async fn replace_worker(
        &self,
        target: &Target,
        release: &ReleaseRecord,
        digest: &str,
        reference: &str,
        secrets: &IndexMap<String, Secret>,
    ) -> Result<(), DeployError> {
        let releases = self.releases()?;
        let old = releases
            .live
            .get(&target.service)
            .and_then(|by| by.get(&target.droplet))
            .map(|c| c.release.clone());
        let at = format!("{}@{}", target.full_name, target.droplet);
        let change = Change::new(
            "deploy_service",
            &at,
            json!(old),
            json!({"release": release.name, "digest": digest, "singleton": target.config.singleton}),
        );
        if self.dry_run {
            let how = if target.config.singleton {
                "stop the old one, then start"
            } else {
                "start beside the old one, then stop the old one:"
            };
            self.reporter.would(
                &change,
                &format!(
                    "{how} {} ({}) on {}",
                    target.full_name,
                    short_digest(digest),
                    target.droplet
                ),
            );
            return Ok(());
        }
        let session = self.pool.session(&target.host).await?;
        let cli = self.platform.cli();
        let full = shell_quote(&target.full_name);
        let previous_name = format!("{}-previous", target.full_name);
        let previous = shell_quote(&previous_name);
        let result = if target.config.singleton {
            // Stopped (waited for) and set aside before the new one starts: never two at once.
            let stop = format!(
                "{} && if {cli} container inspect {full} >/dev/null 2>&1; then {cli} stop --time {STOP_GRACE} {full} >/dev/null && {cli} rename {full} {previous}; fi",
                remove_line(self.platform, &previous_name, 0)
            );
            let out = session.exec(&stop).await?;
            if !out.success() {
                return Err(droplet_error(
                    &target.host,
                    &format!("stopping {}", target.full_name),
                    &out,
                ));
            }
            let started = self
                .start_named(target, release, reference, secrets, None, &target.full_name)
                .await;
            let ok = match &started {
                Ok(_) => self.settled(&session, &target.full_name).await?,
                Err(_) => false,
            };
            if ok {
                session
                    .exec(&remove_line(self.platform, &previous_name, 0))
                    .await?;
                Ok(())
            } else {
                let log = self.log_tail(&session, &target.full_name).await;
                // Undo: the new one goes, the old one comes back.
                let undo = format!(
                    "{} ; if {cli} container inspect {previous} >/dev/null 2>&1; then {cli} rename {previous} {full} && {cli} start {full} >/dev/null; fi",
                    remove_line(self.platform, &target.full_name, 0)
                );
                let _ = session.exec(&undo).await;
                Err(match started {
                    Err(e) => e,
                    Ok(_) => DeployError::Unhealthy {
                        service: target.full_name.clone(),
                        droplet: target.droplet.clone(),
                        reason: "the new worker did not stay up".into(),
                        log,
                    },
                })
            }
        } else {
            let next = next_name(&target.full_name);
            let candidate = self
                .start_named(target, release, reference, secrets, None, &next)
                .await?;
            if self.settled(&session, &next).await? {
                self.take_over(&session, &candidate).await
            } else {
                let log = self.log_tail(&session, &next).await;
                self.discard(&candidate).await;
                Err(DeployError::Unhealthy {
                    service: target.full_name.clone(),
                    droplet: target.droplet.clone(),
                    reason: "the new worker did not stay up".into(),
                    log,
                })
            }
        };
        if let Err(e) = result {
            self.reporter.failed(&change, &e.to_string());
            return Err(e);
        }
        let mut releases = self.releases()?;
        releases
            .live
            .entry(target.service.clone())
            .or_default()
            .insert(
                target.droplet.clone(),
                LiveContainer {
                    release: release.name.clone(),
                    container: target.full_name.clone(),
                    port: None,
                    digest: digest.to_string(),
                },
            );
        self.save_releases(&releases)?;
        self.reporter
            .done(&change, &format!("{at}: {} running", release.name));
        Ok(())
    }

    /// Containers of `service` on droplets it is no longer placed on (after a scale down or a
    /// placement change) are stopped, once the new ones serve.
    async fn retire_unplaced(&self, service: &str, targets: &[Target]) -> Result<(), DeployError> {
        let mut releases = self.releases()?;
        let Some(by_droplet) = releases.live.get(service) else {
            return Ok(());
        };
        let gone: Vec<(String, String)> = by_droplet
            .iter()
            .filter(|(d, _)| !targets.iter().any(|t| &t.droplet == *d))
            .map(|(d, c)| (d.clone(), c.container.clone()))
            .collect();
        if gone.is_empty() {
            return Ok(());
        }
        for (droplet, container) in &gone {
            if let Some(by) = releases.live.get_mut(service) {
                by.shift_remove(droplet);
            }
            let change = Change::new(
                "stop_service",
                &format!("{container}@{droplet}"),
                Value::Null,
                Value::Null,
            );
            if self.dry_run {
                self.reporter.would(
                    &change,
                    &format!("stop {container} on {droplet} (no longer placed there)"),
                );
                continue;
            }
            self.save_releases(&releases)?;
            self.render_nginx().await?;
            if let Ok(host) = super::droplet_host(&self.loaded, droplet) {
                if let Ok(session) = self.pool.session(&host).await {
                    session
                        .exec(&remove_line(self.platform, container, STOP_GRACE))
                        .await?;
                }
            }
            self.reporter.done(
                &change,
                &format!("stopped {container} on {droplet} (no longer placed there)"),
            );
        }
        Ok(())
    }

    /// The release is live: recorded as current, images beyond the retention removed from
    /// the droplets, and the history copied to the master.
    pub async fn finish(&self, release: &ReleaseRecord) -> Result<(), DeployError> {
        let mut releases = self.releases()?;
        let mut record = releases
            .find(&release.name)
            .cloned()
            .unwrap_or_else(|| release.clone());
        let change = Change::new(
            "release",
            &self.project_env,
            json!(releases.current),
            json!(release.name),
        );
        if self.dry_run {
            self.reporter.would(
                &change,
                &format!(
                    "make {} the current release of {}",
                    release.name, self.project_env
                ),
            );
            return Ok(());
        }
        record.deployed = Some(now_rfc3339());
        releases.record(record);
        releases.current = Some(release.name.clone());
        self.save_releases(&releases)?;
        self.reporter.done(
            &change,
            &format!("{}: {} is live", self.project_env, release.name),
        );
        self.prune(&releases).await?;
        self.publish(&releases).await;
        Ok(())
    }

    /// Images of releases beyond `release_retention` leave the droplets (the registry keeps
    /// them, so an old release can still be rolled back to).
    async fn prune(&self, releases: &Releases) -> Result<(), DeployError> {
        let keep = self.loaded.deployment.release_retention_of(&self.name);
        let old = releases.beyond_retention(keep);
        if old.is_empty() || self.platform == Platform::Kubernetes {
            return Ok(());
        }
        let references: Vec<String> = old
            .iter()
            .flat_map(|r| r.images.values())
            .map(|i| self.registry.pull_reference(&i.repository, &i.digest))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let cli = self.platform.cli();
        let line = references
            .iter()
            .map(|r| format!("{cli} image rm {} >/dev/null 2>&1", shell_quote(r)))
            .collect::<Vec<_>>()
            .join("; ")
            + "; true";
        let hosts = self.droplets()?;
        for (host, result) in self
            .pool
            .fan_out(&hosts, hosts.len(), |session| {
                let line = line.clone();
                async move { session.exec(&line).await.map_err(DeployError::from) }
            })
            .await
        {
            if let Err(e) = result {
                tracing::warn!("cannot remove old images on {}: {e}", host.name);
            }
        }
        let names: Vec<&str> = old.iter().map(|r| r.name.as_str()).collect();
        let change = Change::new(
            "prune_releases",
            &self.project_env,
            json!(names),
            Value::Null,
        );
        self.reporter.done(
            &change,
            &format!(
                "{}: removed the images of {} from the droplets (keeping the last {keep})",
                self.project_env,
                names.join(", ")
            ),
        );
        Ok(())
    }

    /// A copy of the release history on the master, for the monitor to redeploy from.
    async fn publish(&self, releases: &Releases) {
        let Ok(master) = self.master() else { return };
        let text = serde_json::to_string_pretty(releases).expect("releases serialize");
        let path = format!("/var/lib/infra/releases/{}.json", self.project_env);
        let result = async {
            let session = self.pool.session(&master).await?;
            session.run("mkdir -p /var/lib/infra/releases").await?;
            session.upload(&path, text.as_bytes(), 0o644).await
        }
        .await;
        if let Err(e) = result {
            tracing::warn!("cannot copy the release history to {}: {e}", master.name);
        }
    }

    /// Every live web container of the project-environment answers its health check on its
    /// droplet port (one try each, 5 s): `service@droplet -> "200"`; any failure fails the
    /// call, naming each one that failed.
    pub async fn check_health(&self) -> Result<Vec<(String, String)>, DeployError> {
        let releases = self.releases()?;
        let mut checks = Vec::new();
        for t in self.targets()? {
            if t.kind != ServiceKind::Web {
                continue;
            }
            let Some(port) = releases
                .live
                .get(&t.service)
                .and_then(|by| by.get(&t.droplet))
                .and_then(|c| c.port)
            else {
                continue;
            };
            checks.push((t, port));
        }
        if self.dry_run {
            for (t, port) in &checks {
                self.reporter.progress(
                    "check_health",
                    &format!("{}@{}", t.full_name, t.droplet),
                    &format!(
                        "[dry-run] would GET {} on port {port}",
                        t.config.health_path()
                    ),
                    json!({"dry_run": true}),
                );
            }
            return Ok(Vec::new());
        }
        let results = futures_util::future::join_all(checks.iter().map(|(t, port)| async move {
            let session = self.pool.session(&t.host).await?;
            let url = shell_quote(&format!(
                "http://127.0.0.1:{port}{}",
                t.config.health_path()
            ));
            let out = session
                .exec(&format!(
                    "curl -s -o /dev/null -w '%{{http_code}}' --max-time 5 {url}"
                ))
                .await?;
            Ok::<String, DeployError>(out.stdout_text().trim().to_string())
        }))
        .await;
        let mut out = Vec::new();
        let mut failed = Vec::new();
        for ((t, port), result) in checks.iter().zip(results) {
            let at = format!("{}@{}", t.full_name, t.droplet);
            match result {
                Ok(code) if code.starts_with('2') => {
                    self.reporter.progress(
                        "healthy",
                        &at,
                        &format!("GET {} on port {port}: {code}", t.config.health_path()),
                        json!({"status": code}),
                    );
                    out.push((at, code));
                }
                Ok(code) => failed.push(format!("{at} answered {code} on port {port}")),
                Err(e) => failed.push(format!("{at}: {e}")),
            }
        }
        if !failed.is_empty() {
            return Err(DeployError::Droplet {
                droplet: self.project_env.clone(),
                message: format!("health check failed: {}", failed.join("; ")),
            });
        }
        Ok(out)
    }

    /// Where every deployed web service runs now, across all project-environments.
    pub fn live_ports(&self) -> Result<LivePorts, DeployError> {
        live_ports(&self.project, &self.loaded)
    }

    /// Renders nginx from the live targets and installs it on the master (`nginx -t` first);
    /// in a dry run, shows the diff against the master's config.
    pub async fn render_nginx(&self) -> Result<Applied, DeployError> {
        render_nginx_for(
            &self.project,
            &self.loaded,
            &self.pool,
            &self.reporter,
            self.dry_run,
            &self.command,
        )
        .await
    }
}

/// The live ports of every project-environment with a release history.
pub fn live_ports(
    project: &crate::project::Project,
    loaded: &crate::config::Loaded,
) -> Result<LivePorts, DeployError> {
    let mut live = LivePorts::default();
    for (name, spec) in &loaded.spec.projects {
        for environment in &spec.environments {
            let pe = project_env(name, environment);
            let path = super::releases::releases_path(project, &pe);
            if !path.exists() {
                continue;
            }
            let releases = Releases::load(&path)?;
            if releases.live.is_empty() {
                continue;
            }
            live.deployed.insert(pe.clone());
            for (service, by_droplet) in &releases.live {
                for (droplet, c) in by_droplet {
                    if let Some(port) = c.port {
                        live.ports
                            .insert((pe.clone(), service.clone(), droplet.clone()), port);
                    }
                }
            }
        }
    }
    Ok(live)
}

/// Renders nginx from every project-environment's live targets and installs it on the master
/// (`nginx -t` first, the previous config kept when it fails); in a dry run, shows the diff
/// against the master's config instead. Under the balancer lock, so deploys of different
/// project-environments at once each render from the others' latest targets.
pub async fn render_nginx_for(
    project: &crate::project::Project,
    loaded: &crate::config::Loaded,
    pool: &crate::remote::Pool,
    reporter: &crate::report::Reporter,
    dry_run: bool,
    command: &str,
) -> Result<Applied, DeployError> {
    let (_, master) = super::master_of(loaded)?;
    let _lock = if dry_run {
        None
    } else {
        Some(balancer::lock(project, command)?)
    };
    let live = live_ports(project, loaded)?;
    let templates = crate::template::Templates::new(project);
    let config = balancer::render(&templates, loaded, &live)?;
    let session = pool.session(&master).await?;
    let change = Change::new(
        "render_nginx",
        &master.name,
        Value::Null,
        json!({"path": balancer::CONFIG_PATH}),
    );
    if dry_run {
        let current = balancer::current(&session).await?;
        let diff = balancer::diff(&current, &config);
        if diff.is_empty() {
            reporter.progress(
                "nginx",
                &master.name,
                "nginx config unchanged",
                json!({"changed": false}),
            );
        } else {
            reporter.would(
                &change,
                &format!(
                    "install this nginx config on {} (after `nginx -t`) and reload:\n{}",
                    master.name,
                    diff.trim_end()
                ),
            );
        }
        return Ok(Applied::Unchanged);
    }
    let applied = balancer::apply(&session, &config)
        .await
        .inspect_err(|e| reporter.failed(&change, &e.to_string()))?;
    if applied != Applied::Unchanged {
        reporter.done(
            &change,
            &format!(
                "{}: nginx {} with the new targets",
                master.name,
                if applied == Applied::Started {
                    "started"
                } else {
                    "reloaded"
                }
            ),
        );
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn web_ports_alternate_between_two_slots() {
        assert_eq!(next_port(8001, None), 8001);
        assert_eq!(next_port(8001, Some(8001)), 28001);
        assert_eq!(next_port(8001, Some(28001)), 8001);
        assert_eq!(other_port(60000), 40000);
    }
}
