//! The monitor's alerts component: sends what the bus asks for through `crate::notify` (email,
//! SMS; each event once, also across restarts) and the heartbeat email, which one monitor
//! sends per interval (the primary sender, or the first live backup).
//!
//! Recovery steps alert from recovery.rhai (`send_alert`), run only by the coordinator; what
//! has no step is alerted here, also only by the coordinator (the prober decides): a verdict on
//! the master without `auto_recover_master`, the mass-failure brake, a rejected edit of
//! recovery.rhai, and the droplet's own repairs that did not hold.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};
use tokio::sync::broadcast;

use super::daemon::{BusEvent, Monitor};
use crate::config::Loaded;
use crate::notify::{AlertRequest, Notifier, DEFAULT_WINDOW};

/// How often the heartbeat is considered (it is sent once per configured interval).
const HEARTBEAT_CHECK: Duration = Duration::from_secs(30);
/// Alerts kept in the status report.
const KEPT: usize = 10;

/// A failure alert about `droplet` (`incident` tells this event apart from earlier ones);
/// `action` says what happens next.
pub fn failure(
    droplet: &str,
    incident: &str,
    error: &str,
    reported_by: Vec<String>,
    action: &str,
) -> AlertRequest {
    AlertRequest {
        kind: "failure".into(),
        droplet: droplet.into(),
        incident: incident.into(),
        error: Some(error.into()),
        reported_by: Some(reported_by),
        action: Some(action.into()),
        ..AlertRequest::default()
    }
}

pub async fn run(monitor: Monitor, loaded: Arc<Loaded>) {
    let project = monitor.project().clone();
    let notifier = match Notifier::new(&project, &loaded, &project.infra_dir(), DEFAULT_WINDOW) {
        Ok(n) => n,
        Err(e) => {
            tracing::error!("alerts are off: {e}");
            return;
        }
    };
    let mut events = monitor.subscribe();
    let mut heartbeat = tokio::time::interval(HEARTBEAT_CHECK);
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(BusEvent::Alert(request)) => send(&monitor, &notifier, &loaded, request).await,
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!("the alerts component missed {n} events")
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = heartbeat.tick() => {
                let alive = peers_alive(&monitor);
                let me = monitor.droplet().to_string();
                let report = notifier
                    .heartbeat(&loaded, &me, |name| name == me || alive.iter().any(|a| a == name), SystemTime::now())
                    .await;
                if let Some(report) = report {
                    record(&monitor, json!({"kind": "heartbeat", "report": report}));
                }
            }
        }
    }
}

async fn send(monitor: &Monitor, notifier: &Notifier, loaded: &Loaded, request: AlertRequest) {
    let what = format!(
        "{} {} ({})",
        request.kind, request.droplet, request.incident
    );
    let alert = match request.into_alert(loaded) {
        Ok(alert) => alert,
        Err(e) => {
            tracing::error!("alert {what} not sent: {e}");
            return;
        }
    };
    let report = notifier.alert(loaded, &alert).await;
    for (channel, error) in report.failures() {
        tracing::error!("alert {what}: {channel} failed: {error}");
    }
    record(monitor, json!({"alert": what, "report": report}));
}

fn record(monitor: &Monitor, entry: Value) {
    let mut entry = entry;
    entry["at"] = json!(super::status::now_unix());
    monitor.update_report(|r| {
        r.alerts.push(entry);
        let excess = r.alerts.len().saturating_sub(KEPT);
        r.alerts.drain(..excess);
    });
}

/// The peers this monitor last saw alive (from the protocol's view in the report).
fn peers_alive(monitor: &Monitor) -> Vec<String> {
    let mut alive = Vec::new();
    monitor.update_report(|r| {
        if let Some(peers) = r.protocol["peers"].as_array() {
            alive = peers
                .iter()
                .filter(|p| p["state"] == "alive")
                .filter_map(|p| p["name"].as_str().map(str::to_string))
                .collect();
        }
    });
    alive
}
