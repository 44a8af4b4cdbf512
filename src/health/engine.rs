//! The droplet's own container engine, through its CLI (`docker` or `podman`, which take the
//! same commands and print the same `inspect` JSON): a container's state and published ports,
//! starting a stopped one, and CPU and memory from `stats`. The monitor runs beside the engine
//! on the droplet, so these are local processes, not SSH.

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tokio::process::Command;

/// How long one engine command may take (a busy engine answers `inspect` slowly).
pub const ENGINE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot run `{cli}`: {reason}; is the container engine installed on this droplet?")]
    Spawn { cli: String, reason: String },
    #[error("`{command}` did not finish within {seconds} s")]
    Timeout { command: String, seconds: u64 },
    #[error("`{command}` failed: {stderr}")]
    Failed { command: String, stderr: String },
    #[error("`{command}` printed what infra cannot read: {reason}")]
    Output { command: String, reason: String },
}

/// What the engine says about one container.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContainerState {
    /// `running`, `exited`, `created`, `paused`, `restarting`, `dead`.
    pub status: String,
    pub running: bool,
    pub paused: bool,
    pub restarting: bool,
    /// The main process's id on the droplet (0 when not running).
    pub pid: u32,
    pub exit_code: i64,
    pub oom_killed: bool,
    /// Container port -> droplet port, for TCP ports published on the droplet.
    pub published: HashMap<u16, u16>,
}

/// CPU and memory of one container, as `stats` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Usage {
    /// Percent of one core (200 = two cores' worth).
    pub cpu_percent: f64,
    pub memory_mb: f64,
}

/// A container engine CLI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Engine {
    cli: String,
}

impl Engine {
    /// `docker` or `podman` (or a path to one).
    pub fn new(cli: impl Into<String>) -> Engine {
        Engine { cli: cli.into() }
    }

    pub fn cli(&self) -> &str {
        &self.cli
    }

    async fn run(&self, args: &[&str]) -> Result<std::process::Output, EngineError> {
        let command = format!("{} {}", self.cli, args.join(" "));
        let child = Command::new(&self.cli)
            .args(args)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        tokio::time::timeout(ENGINE_TIMEOUT, child)
            .await
            .map_err(|_| EngineError::Timeout {
                command,
                seconds: ENGINE_TIMEOUT.as_secs(),
            })?
            .map_err(|e| EngineError::Spawn {
                cli: self.cli.clone(),
                reason: e.to_string(),
            })
    }

    fn failed(&self, args: &[&str], out: &std::process::Output) -> EngineError {
        EngineError::Failed {
            command: format!("{} {}", self.cli, args.join(" ")),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        }
    }

    /// The state of `name`; `None` when there is no such container.
    pub async fn inspect(&self, name: &str) -> Result<Option<ContainerState>, EngineError> {
        let mut states = self.inspect_many(&[name.to_string()]).await?;
        Ok(states.remove(name))
    }

    /// The state of each of `names` that exists, by name: one engine command for them all
    /// (the monitor asks every second; one process per container would cost more than the
    /// checks themselves).
    pub async fn inspect_many(
        &self,
        names: &[String],
    ) -> Result<HashMap<String, ContainerState>, EngineError> {
        if names.is_empty() {
            return Ok(HashMap::new());
        }
        let mut args = vec!["container", "inspect"];
        args.extend(names.iter().map(String::as_str));
        let out = self.run(&args).await?;
        // A missing container makes the command fail, and it still prints the others.
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr).to_lowercase();
            let only_missing = stderr
                .lines()
                .filter(|l| !l.trim().is_empty())
                .all(|l| l.contains("no such"));
            if !only_missing {
                return Err(self.failed(&args[..2], &out));
            }
        }
        let value: Value = if out.stdout.iter().all(u8::is_ascii_whitespace) {
            Value::Array(Vec::new())
        } else {
            serde_json::from_slice(&out.stdout).map_err(|e| EngineError::Output {
                command: format!("{} container inspect", self.cli),
                reason: e.to_string(),
            })?
        };
        let mut states = HashMap::new();
        for item in value.as_array().into_iter().flatten() {
            // Docker names a container `/name`; podman `name`.
            let Some(name) = item["Name"].as_str().map(|n| n.trim_start_matches('/')) else {
                continue;
            };
            if names.iter().any(|n| n == name) {
                states.insert(name.to_string(), parse_state(item));
            }
        }
        Ok(states)
    }

    /// Starts the stopped container `name` as it was created (same image, env file, ports).
    pub async fn start(&self, name: &str) -> Result<(), EngineError> {
        let args = ["start", name];
        let out = self.run(&args).await?;
        if !out.status.success() {
            return Err(self.failed(&args, &out));
        }
        Ok(())
    }

    /// Restarts `name` (a running container whose main process is gone or a zombie).
    pub async fn restart(&self, name: &str) -> Result<(), EngineError> {
        let args = ["restart", name];
        let out = self.run(&args).await?;
        if !out.status.success() {
            return Err(self.failed(&args, &out));
        }
        Ok(())
    }

    /// CPU and memory of each running container in `names`, by name (those not running are
    /// left out). `stats` samples for a moment, so callers run it off their tick.
    pub async fn stats(&self, names: &[String]) -> Result<HashMap<String, Usage>, EngineError> {
        if names.is_empty() {
            return Ok(HashMap::new());
        }
        let mut args = vec![
            "stats",
            "--no-stream",
            "--format",
            "{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}",
        ];
        args.extend(names.iter().map(String::as_str));
        let out = self.run(&args).await?;
        // A container that stopped between the caller's look and this one makes `stats` fail
        // for all; what it printed for the others still counts.
        let text = String::from_utf8_lossy(&out.stdout);
        let usage = parse_stats(&text);
        if usage.is_empty() && !out.status.success() {
            return Err(self.failed(&args, &out));
        }
        Ok(usage)
    }
}

fn parse_state(value: &Value) -> ContainerState {
    let state = &value["State"];
    let flag = |key: &str| state[key].as_bool().unwrap_or(false);
    let mut published = HashMap::new();
    // NetworkSettings.Ports holds what is published now; HostConfig.PortBindings what was
    // asked for (all a stopped container has).
    for ports in [
        &value["NetworkSettings"]["Ports"],
        &value["HostConfig"]["PortBindings"],
    ] {
        let Some(map) = ports.as_object() else {
            continue;
        };
        for (key, bindings) in map {
            let Some(port) = key.strip_suffix("/tcp").and_then(|p| p.parse::<u16>().ok()) else {
                continue;
            };
            let host_port = bindings
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|b| b["HostPort"].as_str())
                .find_map(|p| p.parse::<u16>().ok().filter(|p| *p != 0));
            if let Some(host_port) = host_port {
                published.entry(port).or_insert(host_port);
            }
        }
    }
    ContainerState {
        status: state["Status"].as_str().unwrap_or("unknown").to_string(),
        running: flag("Running"),
        paused: flag("Paused"),
        restarting: flag("Restarting"),
        pid: state["Pid"].as_u64().unwrap_or(0) as u32,
        exit_code: state["ExitCode"].as_i64().unwrap_or(0),
        oom_killed: flag("OOMKilled"),
        published,
    }
}

/// `name<TAB>12.5%<TAB>20.1MiB / 1.9GiB` lines.
fn parse_stats(text: &str) -> HashMap<String, Usage> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let mut parts = line.split('\t');
        let (Some(name), Some(cpu), Some(mem)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let cpu = cpu.trim().trim_end_matches('%').trim().parse::<f64>();
        let memory = mem.split('/').next().and_then(megabytes);
        if let (Ok(cpu_percent), Some(memory_mb)) = (cpu, memory) {
            out.insert(
                name.trim().to_string(),
                Usage {
                    cpu_percent,
                    memory_mb,
                },
            );
        }
    }
    out
}

/// `20.1MiB`, `512kB`, `1.2GB`, `0B` in MiB.
fn megabytes(text: &str) -> Option<f64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let bytes = match unit.trim() {
        "B" | "" => 1.0,
        "KiB" => 1024.0,
        "kB" | "KB" => 1000.0,
        "MiB" => 1024.0 * 1024.0,
        "MB" => 1e6,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "GB" => 1e9,
        "TiB" => 1024.0f64.powi(4),
        "TB" => 1e12,
        _ => return None,
    };
    Some(number * bytes / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn inspect_output_gives_the_state_and_the_published_port() {
        let value = json!({
            "State": {"Status": "running", "Running": true, "Paused": false, "Restarting": false,
                      "OOMKilled": false, "Pid": 4242, "ExitCode": 0},
            "HostConfig": {"PortBindings": {"8001/tcp": [{"HostIp": "", "HostPort": "28001"}]}},
            "NetworkSettings": {"Ports": {"8001/tcp": [{"HostIp": "0.0.0.0", "HostPort": "28001"},
                                                        {"HostIp": "::", "HostPort": "28001"}],
                                          "53/udp": null}}
        });
        let state = parse_state(&value);
        assert!(state.running);
        assert_eq!(state.pid, 4242);
        assert_eq!(state.published, HashMap::from([(8001, 28001)]));
        let stopped = parse_state(&json!({
            "State": {"Status": "exited", "Running": false, "Pid": 0, "ExitCode": 137},
            "HostConfig": {"PortBindings": {"8001/tcp": [{"HostPort": "8001"}]}},
            "NetworkSettings": {"Ports": {}}
        }));
        assert_eq!(
            (stopped.status.as_str(), stopped.exit_code),
            ("exited", 137)
        );
        assert_eq!(stopped.published, HashMap::from([(8001, 8001)]));
    }

    #[test]
    fn stats_lines_give_cpu_and_memory() {
        let usage = parse_stats(
            "shop-prod-backend\t12.50%\t20MiB / 1.944GiB\nshop-prod-jobs\t0.00%\t512KiB / 1GiB\nbroken line\n",
        );
        assert_eq!(usage["shop-prod-backend"].cpu_percent, 12.5);
        assert_eq!(usage["shop-prod-backend"].memory_mb, 20.0);
        assert_eq!(usage["shop-prod-jobs"].memory_mb, 0.5);
        assert_eq!(usage.len(), 2);
        assert_eq!(megabytes("1.5GB"), Some(1.5e9 / 1048576.0));
        assert_eq!(megabytes("12 parsecs"), None);
    }
}
