//! One command on many hosts at once (`infra exec`, the `ssh` and `ssh_all` natives): bounded
//! concurrency, one pooled connection per host, each host's output kept apart and told with
//! its name, and every host's outcome returned, so one unreachable droplet never hides the
//! others' results.

use std::sync::Arc;

use super::{ExecOutput, Host, Pool, RemoteError};

/// How many hosts a fan-out talks to at once unless told otherwise.
pub const DEFAULT_PARALLEL: usize = 20;

/// What one host did: its output, or why the command could not run there.
#[derive(Debug)]
pub struct HostResult {
    pub host: Host,
    pub outcome: Result<ExecOutput, RemoteError>,
}

impl HostResult {
    pub fn success(&self) -> bool {
        self.outcome.as_ref().is_ok_and(ExecOutput::success)
    }

    /// `exit status 3`, `signal KILL`, or the connection error.
    pub fn failure(&self) -> Option<String> {
        match &self.outcome {
            Ok(out) if out.success() => None,
            Ok(out) => Some(out.describe_status()),
            Err(e) => Some(e.to_string()),
        }
    }

    /// The host's output with every line prefixed by its name (`name | ` for standard output,
    /// `name ! ` for standard error), the way a person reads many hosts at once.
    pub fn prefixed(&self) -> String {
        let name = &self.host.name;
        let mut text = String::new();
        match &self.outcome {
            Ok(out) => {
                for line in out.stdout_text().lines() {
                    text.push_str(&format!("{name} | {line}\n"));
                }
                for line in out.stderr_text().lines() {
                    text.push_str(&format!("{name} ! {line}\n"));
                }
                if !out.success() {
                    text.push_str(&format!("{name} ! {}\n", out.describe_status()));
                }
            }
            Err(e) => text.push_str(&format!("{name} ! {e}\n")),
        }
        text
    }
}

/// Runs `command` on every host, at most `parallel` at a time, results in the order of
/// `hosts`.
pub async fn run_everywhere(
    pool: &Pool,
    hosts: &[Host],
    command: &str,
    parallel: usize,
) -> Vec<HostResult> {
    let command: Arc<str> = command.into();
    pool.fan_out(hosts, parallel, |session| {
        let command = command.clone();
        async move { session.exec(&command).await }
    })
    .await
    .into_iter()
    .map(|(host, outcome)| HostResult { host, outcome })
    .collect()
}
