//! The report every monitor writes each second (`config/.infra/monitor/status.json` under the
//! droplet's [`super::REMOTE_ROOT`]), and how `infra status` reads them over SSH.
//!
//! The protocol's view (peers, verdicts, coordinator, counters) and the droplet's own checks
//! are kept as the components wrote them; this module only adds who and when.

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{MONITOR_DIR, REMOTE_ROOT};
use crate::project::Project;
use crate::remote::{Host, Pool, RemoteError};

pub const STATUS_FILE: &str = "status.json";

/// A monitor's last report.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MonitorReport {
    pub droplet: String,
    /// The infra version the monitor runs.
    pub version: String,
    /// Unix seconds.
    pub started_at: u64,
    pub written_at: u64,
    /// The protocol's status: incarnation, coordinator and epoch, every peer as this monitor
    /// sees it, verdicts, datagram counters.
    pub protocol: Value,
    /// The droplet's own services: containers, health, queues, repairs.
    pub local: Value,
    /// recovery.rhai as loaded: when, and the error of a rejected edit.
    pub playbook: PlaybookStatus,
    /// Recovery steps this monitor ran or is running.
    pub steps: Vec<StepRecord>,
    /// Alerts sent or suppressed, newest last (a few).
    pub alerts: Vec<Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PlaybookStatus {
    pub path: String,
    pub loaded_at: u64,
    /// Why the newest edit was not taken (the previous version keeps running).
    pub rejected: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepRecord {
    pub target: String,
    pub step: String,
    pub epoch: u64,
    pub started_at: u64,
    pub finished_at: Option<u64>,
    /// `running`, `ok` or the error.
    pub outcome: String,
}

/// Where a monitor writes its report, in the project it runs from.
pub fn local_path(project: &Project) -> PathBuf {
    project.infra_dir().join(MONITOR_DIR).join(STATUS_FILE)
}

/// Where it is on a droplet.
pub fn remote_path() -> String {
    format!("{REMOTE_ROOT}/config/.infra/{MONITOR_DIR}/{STATUS_FILE}")
}

/// A droplet's monitor as `infra status` sees it.
#[derive(Debug, Clone, Serialize)]
pub struct Seen {
    pub droplet: String,
    /// Seconds since its last report (None when there is none).
    pub age_seconds: Option<u64>,
    pub report: Option<MonitorReport>,
    /// Why no report could be read.
    pub problem: Option<String>,
}

pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Reads every droplet's report over SSH, all at once.
pub async fn fetch(pool: Arc<Pool>, hosts: &[Host]) -> Vec<Seen> {
    let path = remote_path();
    // Ages as of the start: one droplet that does not answer must not age the others' reports.
    let now = now_unix();
    let results = pool
        .fan_out(hosts, hosts.len().max(1), |session| {
            let command = format!("cat {path} 2>/dev/null || true");
            async move { Ok::<_, RemoteError>(session.run(&command).await?.stdout_text()) }
        })
        .await;
    results
        .into_iter()
        .map(|(host, result)| match result {
            Ok(text) if text.trim().is_empty() => Seen {
                droplet: host.name,
                age_seconds: None,
                report: None,
                problem: Some("no monitor report (not installed or not started yet)".into()),
            },
            Ok(text) => match serde_json::from_str::<MonitorReport>(&text) {
                Ok(report) => Seen {
                    droplet: host.name,
                    age_seconds: Some(now.saturating_sub(report.written_at)),
                    report: Some(report),
                    problem: None,
                },
                Err(e) => Seen {
                    droplet: host.name,
                    age_seconds: None,
                    report: None,
                    problem: Some(format!("unreadable report: {e}")),
                },
            },
            Err(e) => Seen {
                droplet: host.name,
                age_seconds: None,
                report: None,
                problem: Some(e.to_string()),
            },
        })
        .collect()
}

/// A report as `infra status` prints it, each line starting with `indent`.
pub fn describe(report: &MonitorReport, indent: &str) -> String {
    let mut out = String::new();
    let p = &report.protocol;
    let text = |v: &Value| {
        v.as_str()
            .map(str::to_string)
            .unwrap_or_else(|| v.to_string())
    };
    let mut head = format!(
        "{indent}incarnation {}, epoch {}",
        p["incarnation"], p["epoch"]
    );
    match p["coordinator"].as_str() {
        Some(c) => head.push_str(&format!(", coordinator {c}")),
        None => head.push_str(", no coordinator"),
    }
    if p["lease"].is_object() {
        head.push_str(" (this monitor holds the lease)");
    }
    if p["abstaining"] == Value::Bool(true) {
        head.push_str("; ABSTAINING: it cannot reach half its peers");
    }
    if p["mass_failure"] == Value::Bool(true) {
        head.push_str("; MASS FAILURE: alerting only");
    }
    out.push_str(&head);
    out.push('\n');
    if let Some(peers) = p["peers"].as_array() {
        let views: Vec<String> = peers
            .iter()
            .map(|peer| {
                let mut v = format!("{} {}", text(&peer["name"]), text(&peer["state"]));
                if let Some(streak) = peer["streak"].as_u64().filter(|s| *s > 0) {
                    v.push_str(&format!(" (missed {streak})"));
                }
                if peer["abstaining"] == Value::Bool(true) {
                    v.push_str(" (abstaining)");
                }
                v
            })
            .collect();
        out.push_str(&format!("{indent}peers: {}\n", views.join(", ")));
    }
    if let Some(verdicts) = p["verdicts"].as_array() {
        for v in verdicts {
            let voters: Vec<String> = v["voters"]
                .as_array()
                .map(|a| a.iter().map(text).collect())
                .unwrap_or_default();
            out.push_str(&format!(
                "{indent}verdict: {} is down ({} s, voters {}), stage {}\n",
                text(&v["target"]),
                v["since_ms_ago"].as_u64().unwrap_or(0) / 1000,
                voters.join(", "),
                text(&v["stage"])
            ));
        }
    }
    let c = &p["counters"];
    if c.is_object() {
        let dropped: u64 = [
            "dropped_forged",
            "dropped_tampered",
            "dropped_replayed",
            "dropped_misdirected",
            "dropped_stale",
            "dropped_foreign",
            "dropped_malformed",
        ]
        .iter()
        .filter_map(|k| c[*k].as_u64())
        .sum();
        out.push_str(&format!(
            "{indent}datagrams: {} sent, {} received, {dropped} dropped (forged, tampered, replayed, misdirected or stale)\n",
            c["sent"], c["received"]
        ));
    }
    if let Some(rejected) = &report.playbook.rejected {
        out.push_str(&format!(
            "{indent}recovery.rhai was not loaded: {rejected}\n"
        ));
    }
    for s in report.steps.iter().rev().take(3) {
        out.push_str(&format!(
            "{indent}step {} {} (epoch {}): {}\n",
            s.step, s.target, s.epoch, s.outcome
        ));
    }
    out
}
