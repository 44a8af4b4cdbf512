//! A droplet's checks of its own services, and the report they make: each expected container
//! running (the engine's word, and its main process not a zombie), a web service answering
//! its `health_path` with a 2xx on the droplet port it is published on, CPU and memory against
//! the service's thresholds, and each worker queue's depth against `max_queue_depth`.

use std::time::Duration;

use serde::Serialize;

use super::engine::{ContainerState, Usage};
use super::expected::ExpectedContainer;
use super::redis::{Redis, RedisError};
use super::repair::failed_list;
use crate::state::runtime::ServiceKind;

/// How long a web service's health path has to answer.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(2);

/// Where a container stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainerStatus {
    Running,
    /// Exists and is not running (exited, created, dead): a restart may bring it back.
    Stopped,
    /// The engine is restarting it itself (its restart policy).
    Restarting,
    Paused,
    /// No such container: only a deploy brings it back.
    Missing,
    /// The engine could not be asked.
    Unknown,
}

/// The main process of a running container, as the droplet's process table has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessStatus {
    Alive,
    /// Ended but not reaped: the container is as good as dead.
    Zombie,
    /// The engine says running and its process id is gone.
    Gone,
    /// The process table is not readable from here (the monitor runs in another PID
    /// namespace): the engine's word is taken.
    NotVisible,
}

/// A web service's health path, asked once.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HttpCheck {
    /// The droplet port asked (the one the container is published on).
    pub port: u16,
    pub path: String,
    pub status: Option<u16>,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContainerReport {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ServiceKind,
    pub status: ContainerStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<ProcessStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpCheck>,
    /// Last sampled CPU and memory (sampled every few seconds, not every tick).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Thresholds it is over, said in words (`memory 512 MiB over max_memory_mb 300`).
    pub over: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ContainerReport {
    /// Stopped, or running with a dead main process: what a restart is for.
    pub fn is_dead(&self) -> bool {
        self.status == ContainerStatus::Stopped
            || (self.status == ContainerStatus::Running
                && matches!(
                    self.process,
                    Some(ProcessStatus::Zombie | ProcessStatus::Gone)
                ))
    }

    /// Running and passing every check.
    pub fn is_healthy(&self) -> bool {
        self.status == ContainerStatus::Running
            && !self.is_dead()
            && self.http.as_ref().is_none_or(|h| h.ok)
            && self.over.is_empty()
    }
}

/// One worker queue on its project-environment's Redis.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueReport {
    pub project_env: String,
    pub queue: String,
    pub depth: Option<u64>,
    /// Jobs in `<queue>:failed`.
    pub failed: Option<u64>,
    pub max_depth: Option<u64>,
    /// Deeper than `max_queue_depth`.
    pub backlog: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Everything one tick of checks found on this droplet.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HealthReport {
    pub containers: Vec<ContainerReport>,
    pub queues: Vec<QueueReport>,
}

impl HealthReport {
    pub fn healthy(&self) -> bool {
        self.containers.iter().all(ContainerReport::is_healthy)
            && self.queues.iter().all(|q| !q.backlog && q.error.is_none())
    }

    pub fn container(&self, name: &str) -> Option<&ContainerReport> {
        self.containers.iter().find(|c| c.name == name)
    }
}

/// The report on `expected`'s container from what the engine said about it (`Ok(None)`: no
/// such container) and, when it runs, its main process and health path.
pub async fn check_container(
    http: &reqwest::Client,
    expected: &ExpectedContainer,
    inspected: Result<Option<&ContainerState>, String>,
) -> ContainerReport {
    let mut report = ContainerReport {
        name: expected.name.clone(),
        kind: expected.kind,
        status: ContainerStatus::Unknown,
        exit_code: None,
        process: None,
        http: None,
        usage: None,
        over: Vec::new(),
        error: None,
    };
    let state = match inspected {
        Ok(Some(state)) => state,
        Ok(None) => {
            report.status = ContainerStatus::Missing;
            return report;
        }
        Err(e) => {
            report.error = Some(e);
            return report;
        }
    };
    report.status = status_of(state);
    if report.status != ContainerStatus::Running {
        report.exit_code = Some(state.exit_code);
        return report;
    }
    report.process = Some(process_status(state.pid));
    if let (Some(port), Some(path)) = (expected.port, &expected.health_path) {
        let published = state.published.get(&port).copied().unwrap_or(port);
        report.http = Some(check_http(http, published, path).await);
    }
    report
}

fn status_of(state: &ContainerState) -> ContainerStatus {
    if state.restarting || state.status == "restarting" {
        ContainerStatus::Restarting
    } else if state.paused || state.status == "paused" {
        ContainerStatus::Paused
    } else if state.running {
        ContainerStatus::Running
    } else {
        ContainerStatus::Stopped
    }
}

/// Reads `/proc/<pid>/stat` (the monitor runs on the droplet, beside the engine).
pub fn process_status(pid: u32) -> ProcessStatus {
    if pid == 0 {
        return ProcessStatus::Gone;
    }
    if !std::path::Path::new("/proc/1/stat").exists() {
        return ProcessStatus::NotVisible;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // `pid (comm) S ...`: the state is the first field after the last `)`.
        Ok(stat) => match stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
        {
            Some("Z") | Some("X") | Some("x") => ProcessStatus::Zombie,
            _ => ProcessStatus::Alive,
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // In another PID namespace the engine's pids mean nothing here: only call the
            // process gone when this namespace is the droplet's (pid 1 is its init, not us).
            if in_host_pid_namespace() {
                ProcessStatus::Gone
            } else {
                ProcessStatus::NotVisible
            }
        }
        Err(_) => ProcessStatus::NotVisible,
    }
}

/// Whether this process sees the droplet's own process table: a container's PID namespace
/// is another one than pid 1's of the host, which /proc/self/ns/pid names.
fn in_host_pid_namespace() -> bool {
    match (
        std::fs::read_link("/proc/self/ns/pid"),
        std::fs::read_link("/proc/1/ns/pid"),
    ) {
        (Ok(own), Ok(init)) => own == init,
        _ => false,
    }
}

/// GET `http://127.0.0.1:<port><path>`: a 2xx within [`HTTP_TIMEOUT`] is healthy.
pub async fn check_http(http: &reqwest::Client, port: u16, path: &str) -> HttpCheck {
    let url = format!("http://127.0.0.1:{port}{path}");
    let mut check = HttpCheck {
        port,
        path: path.to_string(),
        status: None,
        ok: false,
        error: None,
    };
    match http.get(&url).timeout(HTTP_TIMEOUT).send().await {
        Ok(response) => {
            let status = response.status();
            check.status = Some(status.as_u16());
            check.ok = status.is_success();
            if !check.ok {
                check.error = Some(format!("{url} answered {status}"));
            }
        }
        Err(e) if e.is_timeout() => {
            check.error = Some(format!(
                "{url} did not answer within {} s",
                HTTP_TIMEOUT.as_secs()
            ));
        }
        Err(e) => check.error = Some(format!("{url}: {}", error_chain(&e))),
    }
    check
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The thresholds `usage` is over, in words.
pub fn over_thresholds(expected: &ExpectedContainer, usage: &Usage) -> Vec<String> {
    let mut over = Vec::new();
    if let Some(max) = expected.max_cpu_percent {
        if usage.cpu_percent > f64::from(max) {
            over.push(format!(
                "CPU {:.1}% over max_cpu_percent {max}",
                usage.cpu_percent
            ));
        }
    }
    if let Some(max) = expected.max_memory_mb {
        if usage.memory_mb > max as f64 {
            over.push(format!(
                "memory {:.1} MiB over max_memory_mb {max}",
                usage.memory_mb
            ));
        }
    }
    over
}

/// `LLEN` of `queue` and of its failed list.
pub async fn check_queue(
    redis: &mut Redis,
    project_env: &str,
    queue: &str,
    max_depth: Option<u64>,
) -> Result<QueueReport, RedisError> {
    let depth = redis.llen(queue).await?;
    let failed = redis.llen(&failed_list(queue)).await?;
    Ok(QueueReport {
        project_env: project_env.to_string(),
        queue: queue.to_string(),
        depth: Some(depth),
        failed: Some(failed),
        max_depth,
        backlog: max_depth.is_some_and(|max| depth > max),
        error: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expected(cpu: Option<u32>, memory: Option<u64>) -> ExpectedContainer {
        ExpectedContainer {
            name: "shop-prod-jobs".into(),
            project: "shop".into(),
            environment: "prod".into(),
            service: "jobs".into(),
            kind: ServiceKind::Worker,
            engine: "docker".into(),
            port: None,
            health_path: None,
            queues: vec![],
            max_queue_depth: None,
            max_requeues: 3,
            max_cpu_percent: cpu,
            max_memory_mb: memory,
            env_file: "/etc/infra/env/shop-prod-jobs.env".into(),
        }
    }

    #[test]
    fn thresholds_are_said_in_words_and_only_when_set() {
        let usage = Usage {
            cpu_percent: 150.0,
            memory_mb: 400.0,
        };
        assert!(over_thresholds(&expected(None, None), &usage).is_empty());
        assert_eq!(
            over_thresholds(&expected(Some(100), Some(512)), &usage),
            ["CPU 150.0% over max_cpu_percent 100"]
        );
        assert_eq!(
            over_thresholds(&expected(Some(200), Some(300)), &usage),
            ["memory 400.0 MiB over max_memory_mb 300"]
        );
    }

    #[test]
    fn this_process_is_alive_and_a_dead_pid_is_gone() {
        assert_eq!(process_status(std::process::id()), ProcessStatus::Alive);
        assert_eq!(process_status(0), ProcessStatus::Gone);
        // Above the kernel's pid_max (at most 2^22): no process has it.
        let status = process_status(4_194_305);
        assert!(
            matches!(status, ProcessStatus::Gone | ProcessStatus::NotVisible),
            "{status:?}"
        );
    }

    #[test]
    fn a_stopped_container_or_a_zombie_process_is_dead() {
        let mut report = ContainerReport {
            name: "c".into(),
            kind: ServiceKind::Web,
            status: ContainerStatus::Running,
            exit_code: None,
            process: Some(ProcessStatus::Alive),
            http: None,
            usage: None,
            over: vec![],
            error: None,
        };
        assert!(report.is_healthy() && !report.is_dead());
        report.process = Some(ProcessStatus::Zombie);
        assert!(report.is_dead());
        report.process = Some(ProcessStatus::NotVisible);
        assert!(!report.is_dead());
        report.status = ContainerStatus::Stopped;
        assert!(report.is_dead() && !report.is_healthy());
        report.status = ContainerStatus::Missing;
        assert!(!report.is_dead() && !report.is_healthy());
    }
}
