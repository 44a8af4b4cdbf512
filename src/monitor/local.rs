//! The monitor's local-health component: every second, the droplet's own services are checked
//! and repaired by `crate::health` (a dead container restarted with backoff, failed jobs
//! requeued within `max_requeues`); what a person should hear about becomes an alert. A queue
//! backlog is only ever an alert: no peer and no cloud call is involved here.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use sha2::Digest;

use super::alerts;
use super::daemon::{BusEvent, Monitor};
use crate::config::Loaded;
use crate::health::{expected_on, redis_targets, ExpectedContainer, LocalHealth, RepairEvent};

const EVERY: Duration = Duration::from_secs(1);
/// How often the deployed set is looked at again (a deploy adds services).
const RESCAN: Duration = Duration::from_secs(30);
/// Repairs kept in the status report.
const KEPT: usize = 20;

/// The services placed here that were deployed here (a deploy writes their env file): a
/// service placed but never deployed is not a dead container.
fn deployed(loaded: &Loaded, droplet: &str) -> Vec<ExpectedContainer> {
    expected_on(loaded, droplet)
        .into_iter()
        .filter(|e| std::path::Path::new(&e.env_file).exists())
        .collect()
}

pub async fn run(monitor: Monitor, loaded: Arc<Loaded>) {
    let mut expected = deployed(&loaded, monitor.droplet());
    let (redis, problems) = redis_targets(&expected);
    for p in &problems {
        tracing::warn!("{p}");
    }
    tracing::info!(
        "checking {} deployed container(s) on {} every {EVERY:?}",
        expected.len(),
        monitor.droplet()
    );
    let mut health = LocalHealth::new(expected.clone(), redis);
    let mut scanned = Instant::now();
    let mut repairs: Vec<serde_json::Value> = Vec::new();
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = Instant::now();
        if now.duration_since(scanned) >= RESCAN {
            scanned = now;
            let again = deployed(&loaded, monitor.droplet());
            if again != expected {
                expected = again;
                let (redis, _) = redis_targets(&expected);
                health.set_expected(expected.clone(), redis);
            }
        }
        let report = health.check(now).await;
        let events = health.repair(now, &report).await;
        for event in &events {
            tracing::info!("{}", event.describe());
            repairs.push(
                json!({"at": super::status::now_unix(), "event": event, "text": event.describe()}),
            );
            // A container missing is a deploy's to report (or a deploy is placing it right
            // now); the monitor tells what it saw die.
            if event.is_alert() && !matches!(event, RepairEvent::Missing { .. }) {
                monitor.publish(BusEvent::Alert(alert(monitor.droplet(), event)));
            }
        }
        let excess = repairs.len().saturating_sub(KEPT);
        repairs.drain(..excess);
        let view = json!({"report": report, "repairs": repairs});
        monitor.update_report(|r| r.local = view);
    }
}

/// An alert about this droplet's own service: the incident is the event's subject and kind,
/// so a repeat within the suppression window is not sent twice.
fn alert(droplet: &str, event: &RepairEvent) -> crate::notify::AlertRequest {
    let text = event.describe();
    let kind = serde_json::to_value(event)
        .ok()
        .and_then(|v| v["event"].as_str().map(str::to_string))
        .unwrap_or_default();
    let digest = format!(
        "{:x}",
        sha2::Sha256::digest(format!("{kind}/{}", event.subject()).as_bytes())
    );
    alerts::failure(
        droplet,
        &format!("local-{}", &digest[..12]),
        &text,
        vec![droplet.to_string()],
        "The droplet's own monitor handles this (no other droplet and no cloud call is involved); it tells again if it keeps happening.",
    )
}
