//! The droplet's services running again after a rebuild. From a snapshot the containers are
//! there (the engine restarts them at boot): each is started if it is not running and gated on
//! its health check. A container that is missing (a droplet made from the base image, or an
//! image gone) is deployed again, as a deploy would, from the master's registry by the digest
//! its release recorded (`crate::deploy`, the service's other droplets untouched).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::inspect::{live_services, LiveService};
use super::{ImageChoice, Recovery, RecoveryError};
use crate::config::Loaded;
use crate::deploy::Deployer;
use crate::remote::{shell_quote, Host};
use crate::report::Change;
use crate::state::runtime::ServiceKind;

/// What became of one service.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Started {
    pub service: String,
    /// `running` (it was), `started` (it was stopped), `deployed` (it was missing) or
    /// `planned` in a dry run.
    pub how: String,
    pub release: String,
}

/// Waits until the web container answers its health path with a 2xx (or the worker runs),
/// up to its `health_timeout`; the reason when it does not.
fn gate_script(s: &LiveService) -> String {
    let cli = s.platform.cli();
    let name = shell_quote(&s.container);
    let timeout = s.health_timeout;
    let probe = match (s.kind, s.port) {
        (ServiceKind::Web, Some(port)) => format!(
            "code=$(curl -s -o /dev/null -w '%{{http_code}}' --max-time 2 {} || true); case $code in 2??) echo ok; exit 0;; esac",
            shell_quote(&format!("http://127.0.0.1:{port}{}", s.health_path))
        ),
        _ => "echo ok; exit 0".to_string(),
    };
    format!(
        r#"deadline=$(( $(date +%s) + {timeout} ))
code=none
while :; do
  if [ "$({cli} container inspect -f '{{{{.State.Running}}}}' {name} 2>/dev/null)" = true ]; then
    {probe}
  fi
  if [ "$(date +%s)" -ge "$deadline" ]; then echo "not healthy within {timeout} s (last answer: $code)"; exit 1; fi
  sleep 0.5
done"#
    )
}

impl Recovery {
    /// The deployer of `project`'s `environment`, for putting `droplet`'s services back.
    fn deployer(
        &self,
        droplet: &str,
        project: &str,
        environment: &str,
    ) -> Result<Deployer, RecoveryError> {
        Deployer::new(
            self.project.clone(),
            self.loaded()?,
            self.pool.clone(),
            self.reporter.clone(),
            self.dry_run,
            &self.command,
            project,
            environment,
        )
        .map_err(Self::deploy_error(droplet))
    }

    /// Every service container the releases place on `droplet` running and healthy.
    pub async fn start_services(&self, droplet: &str) -> Result<Vec<Started>, RecoveryError> {
        let loaded = self.loaded()?;
        let record = self.record(&loaded, droplet)?;
        let mut ck = self.checkpoint(droplet)?;
        if let Some(incident) = ck.incident.clone() {
            if let Some(step) = incident.done("services") {
                self.already(droplet, "services", &incident);
                return Ok(
                    serde_json::from_value(step.result["services"].clone()).unwrap_or_default()
                );
            }
        }
        let services = live_services(&self.project, &loaded, droplet)?;
        let fresh = matches!(
            ck.incident.as_ref().and_then(|i| i.image.as_ref()),
            Some(ImageChoice::Base { .. })
        );
        let mut by_pe: BTreeMap<(String, String), Vec<LiveService>> = BTreeMap::new();
        for s in services {
            by_pe
                .entry((s.project.clone(), s.environment.clone()))
                .or_default()
                .push(s);
        }
        let epoch = self.permit(&mut ck)?;
        if fresh && record.role == "master" {
            self.bootstrap_master(droplet, &loaded).await?;
        }
        let mut out = Vec::new();
        for ((name, environment), services) in by_pe {
            let d = self.deployer(droplet, &name, &environment)?;
            // A deploy of this project-environment must not roll while its containers are
            // put back (nor this undo what it rolled).
            let _lock = if self.dry_run {
                None
            } else {
                Some(
                    crate::deploy::lock::acquire(
                        &self.project,
                        &d.project_env,
                        &self.command,
                        self.lock_timeout,
                    )
                    .map_err(Self::deploy_error(droplet))?,
                )
            };
            if fresh {
                // The base image has no engine yet, nor the registry's trust.
                d.bootstrap().await.map_err(Self::deploy_error(droplet))?;
            }
            let releases = d.releases().map_err(Self::deploy_error(droplet))?;
            for s in services {
                let at = format!("{}@{droplet}", s.full_name);
                let change = Change::new(
                    "start_service",
                    &at,
                    serde_json::Value::Null,
                    json!({"release": s.release, "container": s.container}),
                );
                if self.dry_run {
                    self.reporter.would(
                        &change,
                        &format!(
                            "start {} ({}) on {droplet} if it is not running, deploying it again from the registry if it is missing, and wait for {}",
                            s.container,
                            s.release,
                            match s.kind {
                                ServiceKind::Web => format!("GET {} to answer 2xx", s.health_path),
                                ServiceKind::Worker => "it to run".to_string(),
                            }
                        ),
                    );
                    out.push(Started {
                        service: s.full_name.clone(),
                        how: "planned".into(),
                        release: s.release.clone(),
                    });
                    continue;
                }
                self.permit(&mut ck)?;
                let started = std::time::Instant::now();
                let how = self.put_back(&d, &releases, &s, droplet, &record).await?;
                self.reporter.done(
                    &change,
                    &format!(
                        "{at}: {how}, healthy ({} of {}, {:.1} s)",
                        s.container,
                        s.release,
                        started.elapsed().as_secs_f64()
                    ),
                );
                out.push(Started {
                    service: s.full_name.clone(),
                    how: how.into(),
                    release: s.release.clone(),
                });
            }
        }
        if !self.dry_run {
            self.finish_step(&mut ck, "services", epoch, json!({"services": out}))?;
        }
        Ok(out)
    }

    /// A master made from the base image gets nginx and the registry again (what a deploy's
    /// bootstrap installs); the registry starts empty, so the next deploy pushes every image.
    async fn bootstrap_master(&self, droplet: &str, loaded: &Loaded) -> Result<(), RecoveryError> {
        let Some((name, environment)) = loaded
            .spec
            .projects
            .iter()
            .find_map(|(name, p)| Some((name.clone(), p.environments.first()?.clone())))
        else {
            return Ok(());
        };
        let d = self.deployer(droplet, &name, &environment)?;
        d.bootstrap().await.map_err(Self::deploy_error(droplet))?;
        self.reporter.progress(
            "registry_empty",
            droplet,
            "warning: the master was made from the base image: its registry is empty until the next deploy pushes the images again",
            json!({}),
        );
        Ok(())
    }

    /// One service on the droplet: running as it is, started, or deployed again; then gated.
    async fn put_back(
        &self,
        d: &Deployer,
        releases: &crate::deploy::Releases,
        s: &LiveService,
        droplet: &str,
        record: &crate::state::DropletRecord,
    ) -> Result<&'static str, RecoveryError> {
        let failed = |message: String| RecoveryError::Failed {
            droplet: droplet.into(),
            message,
        };
        let ip = record
            .ip
            .as_deref()
            .and_then(|ip| ip.parse().ok())
            .ok_or_else(|| failed("it has no address in the state".into()))?;
        let host = Host::new(droplet, ip);
        let session = self
            .pool
            .session(&host)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let cli = s.platform.cli();
        let name = shell_quote(&s.container);
        let state = session
            .exec(&format!(
                "{cli} container inspect -f '{{{{.State.Running}}}}' {name} 2>/dev/null || echo missing"
            ))
            .await
            .map_err(|e| failed(e.to_string()))?
            .stdout_text();
        let how = match state.trim() {
            "true" => "running",
            "false" => {
                let out = session
                    .exec(&format!("{cli} start {name} >/dev/null"))
                    .await
                    .map_err(|e| failed(e.to_string()))?;
                if !out.success() {
                    "deployed"
                } else {
                    "started"
                }
            }
            _ => "deployed",
        };
        if how == "deployed" {
            let release = releases
                .find(&s.release)
                .or(releases.current_release())
                .ok_or_else(|| {
                    failed(format!(
                        "`{}` ran release {}, which the release history of {} no longer has; deploy it again",
                        s.full_name,
                        s.release,
                        s.project_env()
                    ))
                })?;
            d.deploy_service_on(&s.service, release, droplet)
                .await
                .map_err(Self::deploy_error(droplet))?;
            return Ok(how);
        }
        let out = session
            .exec_with(
                &gate_script(s),
                None,
                Duration::from_secs(s.health_timeout + 30),
            )
            .await
            .map_err(|e| failed(e.to_string()))?;
        if !out.success() {
            return Err(failed(format!(
                "`{}` {}; look at `{cli} logs {}` on {droplet}",
                s.full_name,
                out.stdout_text().trim(),
                s.container
            )));
        }
        Ok(how)
    }
}
