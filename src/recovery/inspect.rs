//! What the cloud and the droplet say: [`Recovery::inspect`] only looks; [`Recovery::check`]
//! also power-cycles a droplet that is off or does not answer, once per incident.

use serde::Serialize;
use serde_json::json;

use super::{placed, Recovery, RecoveryError};
use crate::cloud::DropletStatus;
use crate::config::Loaded;
use crate::deploy::releases::{releases_path, Releases};
use crate::platform::Platform;
use crate::remote::{shell_quote, Host};
use crate::report::Change;
use crate::state::placement::{project_env, service_name};
use crate::state::runtime::ServiceKind;

/// How long a droplet's sshd gets to answer an inspection.
const SSH_PROBE: std::time::Duration = std::time::Duration::from_secs(10);

/// One service container on the droplet, as the last deploy left it.
#[derive(Debug, Clone)]
pub(super) struct LiveService {
    pub project: String,
    pub environment: String,
    pub service: String,
    pub full_name: String,
    pub container: String,
    pub release: String,
    pub kind: ServiceKind,
    pub port: Option<u16>,
    pub health_path: String,
    pub health_timeout: u64,
    pub platform: Platform,
}

impl LiveService {
    pub fn project_env(&self) -> String {
        project_env(&self.project, &self.environment)
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ServiceHealth {
    /// `hostomatic-uat-backend`.
    pub service: String,
    pub ok: bool,
    /// `running, GET /health 200`, `not running`, `missing`, ...
    pub detail: String,
}

/// What is known of one droplet right now.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Health {
    pub droplet: String,
    pub role: String,
    pub id: Option<u64>,
    pub ip: Option<String>,
    /// `active`, `off`, `new`, `archive`; `gone` when the cloud no longer has it,
    /// `unrecorded` when the state has no id for it.
    pub cloud: String,
    /// The cloud is running an action on it.
    pub locked: bool,
    /// Its sshd answered.
    pub answers: bool,
    pub services: Vec<ServiceHealth>,
    /// Active, answering, and every service healthy.
    pub healthy: bool,
    pub drained: bool,
    /// The open recovery incident, if any.
    pub incident: Option<String>,
    /// The open incident fenced it (it is off for good; only a replacement serves again).
    pub fenced: bool,
    pub power_cycled: bool,
}

/// The service containers the releases files place on `droplet`.
pub(super) fn live_services(
    project: &crate::project::Project,
    loaded: &Loaded,
    droplet: &str,
) -> Result<Vec<LiveService>, RecoveryError> {
    let mut out = Vec::new();
    for (name, spec) in &loaded.spec.projects {
        let platform_name = loaded.deployment.platform_of(name);
        let Some(platform) = Platform::parse(&platform_name) else {
            continue;
        };
        let deployment = loaded.deployment.project(name);
        for environment in &spec.environments {
            let pe = project_env(name, environment);
            let path = releases_path(project, &pe);
            let releases =
                Releases::load(&path).map_err(|e| RecoveryError::State(e.to_string()))?;
            for (service, by_droplet) in &releases.live {
                let Some(live) = by_droplet.get(droplet) else {
                    continue;
                };
                let placed = loaded
                    .services
                    .get(&pe)
                    .and_then(|m| m.get(service))
                    .filter(|r| r.assigned_droplets.iter().any(|d| d == droplet));
                let Some(record) = placed else {
                    // No longer placed here: the next deploy retires it, recovery leaves it.
                    continue;
                };
                let config = deployment.services.get(service);
                out.push(LiveService {
                    project: name.clone(),
                    environment: environment.clone(),
                    service: service.clone(),
                    full_name: service_name(&pe, service),
                    container: live.container.clone(),
                    release: live.release.clone(),
                    kind: record.kind,
                    port: live.port,
                    health_path: config
                        .map(|c| c.health_path().to_string())
                        .unwrap_or_else(|| "/".into()),
                    health_timeout: config.map(|c| c.health_timeout()).unwrap_or(30),
                    platform,
                });
            }
        }
    }
    Ok(out)
}

/// One shell line printing `<container> <running|stopped|missing> <http code or ->`.
pub(super) fn probe_line(s: &LiveService) -> String {
    let cli = s.platform.cli();
    let name = shell_quote(&s.container);
    let http = match (s.kind, s.port) {
        (ServiceKind::Web, Some(port)) => format!(
            "curl -s -o /dev/null -w '%{{http_code}}' --max-time 3 {} || true",
            shell_quote(&format!("http://127.0.0.1:{port}{}", s.health_path))
        ),
        _ => "echo -".to_string(),
    };
    format!(
        "st=$({cli} container inspect -f '{{{{.State.Running}}}}' {name} 2>/dev/null || echo missing); \
         case $st in true) st=running; code=$({http});; false) st=stopped; code=-;; *) st=missing; code=-;; esac; \
         echo {name} $st $code"
    )
}

impl Recovery {
    /// Looks at `droplet` without changing anything: the cloud's status of the recorded id,
    /// whether its sshd answers, and each of its service containers (running; web services
    /// answering their health path).
    pub async fn inspect(&self, droplet: &str) -> Result<Health, RecoveryError> {
        let loaded = self.loaded()?;
        let record = self.record(&loaded, droplet)?;
        let ck = self.checkpoint(droplet)?;
        let incident = ck.incident.as_ref();
        let mut health = Health {
            droplet: droplet.to_string(),
            role: record.role.clone(),
            id: record.id,
            ip: record.ip.clone(),
            cloud: "unrecorded".into(),
            locked: false,
            answers: false,
            services: Vec::new(),
            healthy: false,
            drained: loaded.state.drained_droplets().iter().any(|d| d == droplet),
            incident: incident.map(|i| i.id.clone()),
            fenced: incident.is_some_and(|i| i.done("fence").is_some()),
            power_cycled: incident.is_some_and(|i| i.power_cycled),
        };
        let Some(id) = record.id else {
            return Ok(health);
        };
        let found = self
            .fleet
            .droplet_by_id(id)
            .await
            .map_err(Self::fleet_error(droplet))?;
        let Some(cloud) = found else {
            health.cloud = "gone".into();
            return Ok(health);
        };
        health.locked = cloud.locked;
        health.cloud = match cloud.status {
            DropletStatus::New => "new",
            DropletStatus::Active => "active",
            DropletStatus::Off => "off",
            DropletStatus::Archive => "archive",
        }
        .into();
        let ip = cloud
            .public_ipv4()
            .map(|ip| ip.to_string())
            .or(record.ip.clone());
        let (Some(ip), DropletStatus::Active) = (ip, cloud.status) else {
            return Ok(health);
        };
        let Ok(addr) = ip.parse() else {
            return Ok(health);
        };
        let host = Host::new(droplet, addr);
        let session = match tokio::time::timeout(SSH_PROBE, self.pool.session(&host)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!("{droplet} does not answer SSH: {e}");
                return Ok(health);
            }
            Err(_) => return Ok(health),
        };
        health.answers = true;
        let services = live_services(&self.project, &loaded, droplet)?;
        if !services.is_empty() {
            let script = services
                .iter()
                .map(probe_line)
                .collect::<Vec<_>>()
                .join("\n");
            match session.exec(&script).await {
                Ok(out) => {
                    let text = out.stdout_text();
                    for s in &services {
                        let line = text
                            .lines()
                            .find(|l| l.split_whitespace().next() == Some(s.container.as_str()))
                            .unwrap_or("");
                        let words: Vec<&str> = line.split_whitespace().collect();
                        let state = words.get(1).copied().unwrap_or("unknown");
                        let code = words.get(2).copied().unwrap_or("-");
                        let (ok, detail) = match (state, s.kind) {
                            ("running", ServiceKind::Web) => (
                                code.starts_with('2'),
                                format!("running, GET {} {code}", s.health_path),
                            ),
                            ("running", ServiceKind::Worker) => (true, "running".into()),
                            (other, _) => (false, other.to_string()),
                        };
                        health.services.push(ServiceHealth {
                            service: s.full_name.clone(),
                            ok,
                            detail,
                        });
                    }
                }
                Err(e) => {
                    health.answers = false;
                    tracing::debug!("{droplet}: checking its services failed: {e}");
                    return Ok(health);
                }
            }
        }
        health.healthy = health.services.iter().all(|s| s.ok);
        Ok(health)
    }

    /// [`Recovery::inspect`], and when the droplet is off or does not answer, one hard power
    /// cycle, never a second in the same incident (recorded in the checkpoint).
    pub async fn check(&self, droplet: &str) -> Result<Health, RecoveryError> {
        let mut health = self.inspect(droplet).await?;
        self.tell(&health);
        // A droplet the cloud is acting on (locked) is left to that action.
        let down =
            matches!(health.cloud.as_str(), "off" | "active") && !health.answers && !health.locked;
        let Some(id) = health.id.filter(|_| down && !health.fenced) else {
            return Ok(health);
        };
        let loaded = self.loaded()?;
        let record = self.record(&loaded, droplet)?;
        let mut ck = self.checkpoint(droplet)?;
        let incident = ck.open(|| placed(&record));
        if incident.power_cycled {
            self.reporter.progress(
                "power_cycle_skipped",
                droplet,
                &format!(
                    "power-cycled once already in incident {}; not again",
                    incident.id
                ),
                json!({"incident": incident.id}),
            );
            return Ok(health);
        }
        let change = Change::new(
            "power_cycle",
            droplet,
            json!({"status": health.cloud, "answers": false}),
            json!({"id": id}),
        );
        let epoch = self.permit(&mut ck)?;
        if self.dry_run {
            self.reporter.would(
                &change,
                &format!(
                    "power-cycle {droplet} (id {id}) once: it is {} and does not answer",
                    health.cloud
                ),
            );
            return Ok(health);
        }
        self.fleet
            .power_cycle(id)
            .await
            .inspect_err(|e| self.reporter.failed(&change, &e.to_string()))
            .map_err(Self::fleet_error(droplet))?;
        if let Some(incident) = ck.incident.as_mut() {
            incident.power_cycled = true;
        }
        self.finish_step(&mut ck, "power_cycle", epoch, json!({"id": id}))?;
        self.reporter.done(
            &change,
            &format!("{droplet}: power-cycled (id {id}); it is not cycled again in this incident"),
        );
        health.power_cycled = true;
        Ok(health)
    }

    /// Tells what [`Recovery::inspect`] found.
    pub fn tell(&self, health: &Health) {
        let services = if health.services.is_empty() {
            String::new()
        } else {
            format!(
                "; {}",
                health
                    .services
                    .iter()
                    .map(|s| format!("{} {}", s.service, s.detail))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let text = format!(
            "cloud says {}{}, SSH {}{services}{}",
            health.cloud,
            if health.locked {
                " (locked by an action)"
            } else {
                ""
            },
            if health.answers {
                "answers"
            } else {
                "does not answer"
            },
            if health.healthy { ": healthy" } else { "" },
        );
        self.reporter.progress(
            "inspected",
            &health.droplet,
            &text,
            serde_json::to_value(health).expect("health serializes"),
        );
    }
}
