//! Drain and restore: nginx on the master stops routing to a droplet (rendered from the live
//! targets less the drained droplets, checked with `nginx -t`, reloaded under the balancer
//! lock), and later routes to it again. The drain is recorded in the droplet's state record,
//! so a deploy's render meanwhile keeps it out too.

use serde::Serialize;
use serde_json::json;

use super::{placed, Recovery, RecoveryError};
use crate::balancer;
use crate::config::Loaded;
use crate::deploy::rollout::{live_ports, render_nginx_for};
use crate::report::Change;

/// What a drain did.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Drained {
    pub droplet: String,
    /// Whether nginx no longer routes to it (false for the master, which runs nginx).
    pub drained: bool,
    /// Drained by this call (not by an earlier run of the same incident).
    pub newly: bool,
    /// Upstreams whose only target it was: their routes answer 502 until it is recovered.
    pub sole: Vec<String>,
}

/// Upstreams that route to `droplet` and to no other droplet.
fn sole_upstreams(
    project: &crate::project::Project,
    loaded: &Loaded,
    droplet: &str,
) -> Result<Vec<String>, RecoveryError> {
    let live = live_ports(project, loaded).map_err(Recovery::deploy_error(droplet))?;
    let context = balancer::context(loaded, &live)
        .map_err(|e| RecoveryError::State(format!("rendering nginx: {e}")))?;
    Ok(context
        .upstreams
        .iter()
        .filter(|u| !u.targets.is_empty() && u.targets.iter().all(|t| t.droplet == droplet))
        .map(|u| u.name.clone())
        .collect())
}

impl Recovery {
    /// Takes `droplet` out of nginx. Services it holds the only copy of are named: their routes
    /// answer 502 until it is recovered.
    pub async fn drain(&self, droplet: &str) -> Result<Drained, RecoveryError> {
        let loaded = self.loaded()?;
        let record = self.record(&loaded, droplet)?;
        if record.role == "master" {
            self.reporter.progress(
                "drain_skipped",
                droplet,
                "the master runs nginx itself: there is nothing to drain it from",
                json!({}),
            );
            return Ok(Drained {
                droplet: droplet.into(),
                drained: false,
                newly: false,
                sole: Vec::new(),
            });
        }
        let mut ck = self.checkpoint(droplet)?;
        let incident = ck.open(|| placed(&record)).clone();
        if let Some(step) = incident.done("drain") {
            self.already(droplet, "drain", &incident);
            let sole = step.result["sole"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            return Ok(Drained {
                droplet: droplet.into(),
                drained: true,
                newly: false,
                sole,
            });
        }
        let sole = sole_upstreams(&self.project, &loaded, droplet)?;
        let epoch = self.permit(&mut ck)?;
        let mark =
            json!({"incident": incident.id, "since": crate::deploy::releases::now_rfc3339()});
        self.update(|s| s.set_drained(droplet, Some(mark.clone())))?;
        let change = Change::new(
            "drain_droplet",
            droplet,
            json!({"routed": true}),
            json!({"routed": false, "sole": sole}),
        );
        if self.dry_run {
            self.reporter.would(
                &change,
                &format!("drain {droplet} from nginx (requests go to the other droplets)"),
            );
        }
        self.render_nginx(droplet, &change).await?;
        for upstream in &sole {
            self.reporter.progress(
                "sole_copy",
                droplet,
                &format!(
                    "warning: `{upstream}` runs only on {droplet}: its route answers 502 until {droplet} is recovered"
                ),
                json!({"upstream": upstream}),
            );
        }
        if !self.dry_run {
            self.reporter.done(
                &change,
                &format!("{droplet}: drained from nginx; requests go to the other droplets"),
            );
        }
        self.finish_step(&mut ck, "drain", epoch, json!({"sole": sole}))?;
        Ok(Drained {
            droplet: droplet.into(),
            drained: true,
            newly: true,
            sole,
        })
    }

    /// nginx on the master rendered from the state as it is now (a drain or a restore just
    /// recorded), `change` told as failed if that fails.
    async fn render_nginx(&self, droplet: &str, change: &Change) -> Result<(), RecoveryError> {
        let loaded = self.loaded()?;
        render_nginx_for(
            &self.project,
            &loaded,
            &self.pool,
            &self.reporter,
            self.dry_run,
            &self.command,
        )
        .await
        .inspect_err(|e| self.reporter.failed(change, &e.to_string()))
        .map_err(Self::deploy_error(droplet))?;
        Ok(())
    }

    /// Routes nginx to `droplet` again (at the address the state has now) and closes the
    /// incident: after a refutation, or once a recovery finished.
    pub async fn restore(&self, droplet: &str) -> Result<bool, RecoveryError> {
        let loaded = self.loaded()?;
        let record = self.record(&loaded, droplet)?;
        let drained = loaded.state.drained_droplets().iter().any(|d| d == droplet);
        // A rebuilt master runs nginx itself: it gets the config rendered from the state.
        let master = record.role == "master";
        let mut ck = self.checkpoint(droplet)?;
        if !drained && ck.incident.is_none() {
            self.reporter.progress(
                "restore_skipped",
                droplet,
                "not drained and no recovery open: nothing to restore",
                json!({}),
            );
            return Ok(false);
        }
        let epoch = self.permit(&mut ck)?;
        let change = Change::new(
            "restore_droplet",
            droplet,
            json!({"routed": !drained}),
            json!({"routed": true, "ip": record.ip}),
        );
        let ip = record.ip.clone().unwrap_or_default();
        if drained || master {
            let what = if master {
                format!("nginx on {droplet} ({ip}) has the config rendered from the state")
            } else {
                format!("nginx routes to {droplet} again, at {ip}")
            };
            if self.dry_run {
                self.reporter.would(&change, &format!("make sure {what}"));
            }
            self.update(|s| s.set_drained(droplet, None))?;
            self.render_nginx(droplet, &change).await?;
            if !self.dry_run {
                self.reporter.done(&change, &format!("{droplet}: {what}"));
            }
        }
        if ck.incident.is_some() {
            ck.record("restore", epoch, json!({"ip": ip}));
            let id = ck
                .incident
                .as_ref()
                .map(|i| i.id.clone())
                .unwrap_or_default();
            ck.close();
            self.save(&ck)?;
            self.reporter.progress(
                "incident_closed",
                droplet,
                &format!("incident {id} closed"),
                json!({"incident": id}),
            );
        }
        Ok(drained)
    }
}
