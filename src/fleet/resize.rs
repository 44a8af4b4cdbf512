//! A size change carried out with DigitalOcean's resize action: power off, resize, power on,
//! each waited for. DigitalOcean resizes only a droplet that is off; the CPU and memory change
//! and the disk is left as it is (`disk: false`), so the change can be undone.

use std::time::Duration;

use serde_json::json;

use super::{Fleet, FleetError};
use crate::cloud::{Droplet, DropletAction, DropletStatus};
use crate::report::{Change, Reporter};

/// How long one power or resize action may take.
const ACTION_TIMEOUT: Duration = Duration::from_secs(600);

impl Fleet {
    /// Resizes droplet `name` (id `id`) from `from` to `to`, told as it goes (in a dry run:
    /// what would be done), and handed to `record` once done.
    pub async fn resize_reported(
        &self,
        name: &str,
        id: u64,
        from: &str,
        to: &str,
        reporter: &Reporter,
        record: impl FnOnce() -> Result<(), String>,
    ) -> Result<(), FleetError> {
        let change = Change::new(
            "resize_droplet",
            name,
            json!({"size": from}),
            json!({"size": to}),
        );
        if reporter.dry_run() {
            reporter.would(
                &change,
                &format!(
                    "resize droplet `{name}` from {from} to {to} (power off, resize, power on)"
                ),
            );
            return Ok(());
        }
        reporter.progress(
            "droplet_resizing",
            name,
            &format!("resizing {from} -> {to} (power off, resize, power on)"),
            json!({"from": from, "to": to}),
        );
        let started = std::time::Instant::now();
        if let Err(e) = self.resize(id, to).await {
            reporter.failed(&change, &e.to_string());
            return Err(e);
        }
        record().map_err(FleetError::Record)?;
        reporter.done(
            &change,
            &format!(
                "droplet {name}: resized {from} -> {to} ({:.1} s)",
                started.elapsed().as_secs_f64()
            ),
        );
        Ok(())
    }

    /// Resizes droplet `id` to `size`; a droplet already of that size is left alone. Returns
    /// the size it had.
    pub async fn resize(&self, id: u64, size: &str) -> Result<String, FleetError> {
        self.check_cancel()?;
        let droplet = self.api(self.client.get_droplet(id)).await?;
        let before = droplet.size_slug.clone();
        if before == size {
            return Ok(before);
        }
        if droplet.status != DropletStatus::Off {
            self.act(id, &DropletAction::PowerOff, |d| {
                d.status == DropletStatus::Off
            })
            .await?;
        }
        let resize = DropletAction::Resize {
            size: size.to_string(),
            disk: false,
        };
        self.act(id, &resize, |d| d.size_slug == size).await?;
        self.act(id, &DropletAction::PowerOn, |d| {
            d.status == DropletStatus::Active
        })
        .await?;
        Ok(before)
    }

    /// Runs one action and waits for it. When the answer to the request was lost, the
    /// droplet itself says whether it happened (`done`): an action is never sent twice.
    pub(super) async fn act(
        &self,
        id: u64,
        action: &DropletAction,
        done: impl Fn(&Droplet) -> bool,
    ) -> Result<(), FleetError> {
        self.check_cancel()?;
        match self.api(self.client.droplet_action(id, action)).await {
            Ok(started) => {
                self.api(self.client.wait_for_action(
                    started.id,
                    Duration::from_millis(500),
                    ACTION_TIMEOUT,
                ))
                .await?;
                Ok(())
            }
            Err(e) if e.is_ambiguous() => {
                tracing::warn!("{e}; looking at droplet {id} to see whether it took effect");
                // An action that took effect shows within seconds; one that never arrived
                // never shows, and the run stops for a re-run to try again.
                let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
                loop {
                    let droplet = self.api(self.client.get_droplet(id)).await?;
                    if done(&droplet) {
                        return Ok(());
                    }
                    if tokio::time::Instant::now() >= deadline {
                        return Err(e.into());
                    }
                    self.pause(Duration::from_secs(1)).await;
                }
            }
            Err(e) => Err(e.into()),
        }
    }
}
