//! [`LocalHealth`]: the component a droplet's monitor calls every tick to check its own
//! services ([`LocalHealth::check`]) and repair what it can ([`LocalHealth::repair`]). It
//! keeps what must outlive a tick: each container's restart backoff, the Redis connections,
//! the last CPU and memory sample (taken in the background: `stats` takes a moment), and
//! which alerts are up, so a condition is told once when it starts, not every second.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use indexmap::IndexMap;

use super::checks::{
    check_container, check_queue, over_thresholds, ContainerStatus, HealthReport, QueueReport,
};
use super::engine::{Engine, EngineError, Usage};
use super::expected::ExpectedContainer;
use super::redis::{Redis, RedisError, RedisTarget, Requeue};
use super::repair::{
    failed_list, job_digest, requeue_counts, RepairEvent, RestartBackoff, REQUEUE_SCAN,
    RESTART_WINDOW,
};

/// How often CPU and memory are sampled.
pub const RESOURCE_INTERVAL: Duration = Duration::from_secs(10);

type StatsTask = tokio::task::JoinHandle<Result<HashMap<String, Usage>, EngineError>>;

pub struct LocalHealth {
    expected: Vec<ExpectedContainer>,
    /// By project-environment.
    redis: IndexMap<String, RedisTarget>,
    connections: HashMap<String, Redis>,
    http: reqwest::Client,
    backoff: HashMap<String, RestartBackoff>,
    /// Alert conditions currently up, by a key naming the condition.
    raised: HashSet<String>,
    usage: HashMap<String, Usage>,
    /// Containers the last check found running: the ones `stats` is asked about.
    running: HashSet<String>,
    stats: Option<StatsTask>,
    last_stats: Option<Instant>,
    resource_interval: Duration,
}

impl LocalHealth {
    /// Checks `expected` (see [`super::expected_on`]); `redis` holds each project-
    /// environment's Redis (see [`redis_targets`]).
    pub fn new(
        expected: Vec<ExpectedContainer>,
        redis: IndexMap<String, RedisTarget>,
    ) -> LocalHealth {
        let http = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client without TLS settings builds");
        LocalHealth {
            expected,
            redis,
            connections: HashMap::new(),
            http,
            backoff: HashMap::new(),
            raised: HashSet::new(),
            usage: HashMap::new(),
            running: HashSet::new(),
            stats: None,
            last_stats: None,
            resource_interval: RESOURCE_INTERVAL,
        }
    }

    /// How often CPU and memory are sampled (`RESOURCE_INTERVAL` unless set).
    pub fn with_resource_interval(mut self, every: Duration) -> LocalHealth {
        self.resource_interval = every;
        self
    }

    pub fn expected(&self) -> &[ExpectedContainer] {
        &self.expected
    }

    /// A new placement (the state changed): containers no longer expected lose their history.
    pub fn set_expected(
        &mut self,
        expected: Vec<ExpectedContainer>,
        redis: IndexMap<String, RedisTarget>,
    ) {
        let names: HashSet<&str> = expected.iter().map(|e| e.name.as_str()).collect();
        self.backoff.retain(|name, _| names.contains(name.as_str()));
        self.usage.retain(|name, _| names.contains(name.as_str()));
        if redis != self.redis {
            self.connections.clear();
        }
        self.expected = expected;
        self.redis = redis;
    }

    /// One round of checks.
    pub async fn check(&mut self, now: Instant) -> HealthReport {
        self.collect_stats(now).await;
        // One `inspect` per engine for all its containers.
        let mut by_engine: IndexMap<&str, Vec<String>> = IndexMap::new();
        for e in &self.expected {
            by_engine.entry(&e.engine).or_default().push(e.name.clone());
        }
        let mut inspected = HashMap::new();
        for (cli, names) in by_engine {
            let states = Engine::new(cli)
                .inspect_many(&names)
                .await
                .map_err(|e| e.to_string());
            inspected.insert(cli.to_string(), states);
        }
        let futures = self.expected.iter().map(|e| {
            let http = self.http.clone();
            let state = match &inspected[&e.engine] {
                Ok(states) => Ok(states.get(&e.name)),
                Err(error) => Err(error.clone()),
            };
            async move { check_container(&http, e, state).await }
        });
        let mut containers = futures_util::future::join_all(futures).await;
        self.running = containers
            .iter()
            .filter(|c| c.status == ContainerStatus::Running)
            .map(|c| c.name.clone())
            .collect();
        for (report, expected) in containers.iter_mut().zip(&self.expected) {
            if report.status != ContainerStatus::Running {
                continue;
            }
            if let Some(usage) = self.usage.get(&report.name) {
                report.usage = Some(*usage);
                report.over = over_thresholds(expected, usage);
            }
        }
        let mut queues = Vec::new();
        for (project_env, watched) in self.queues() {
            for (queue, max_depth) in watched {
                queues.push(self.check_one_queue(&project_env, &queue, max_depth).await);
            }
        }
        HealthReport { containers, queues }
    }

    /// Restarts what is dead (with backoff), requeues failed jobs, and tells what a person
    /// should hear about: each condition once, when it starts.
    pub async fn repair(&mut self, now: Instant, report: &HealthReport) -> Vec<RepairEvent> {
        let mut events = Vec::new();
        let mut up: HashSet<String> = HashSet::new();
        for container in &report.containers {
            let Some(expected) = self.expected.iter().find(|e| e.name == container.name) else {
                continue;
            };
            let name = container.name.clone();
            if container.status == ContainerStatus::Missing {
                let key = format!("missing:{name}");
                if self.raised.insert(key.clone()) {
                    events.push(RepairEvent::Missing {
                        container: name.clone(),
                    });
                }
                up.insert(key);
                continue;
            }
            if container.is_dead() {
                let backoff = self.backoff.entry(name.clone()).or_default();
                if !backoff.may_restart(now) {
                    continue;
                }
                let engine = Engine::new(expected.engine.clone());
                // A running container whose process is gone needs a restart, not a start.
                let result = if container.status == ContainerStatus::Running {
                    engine.restart(&name).await
                } else {
                    engine.start(&name).await
                };
                let backoff = self.backoff.entry(name.clone()).or_default();
                let alert = backoff.record_restart(now);
                match result {
                    Ok(()) => events.push(RepairEvent::Restarted {
                        container: name.clone(),
                        attempt: backoff.recent(now) as u32,
                    }),
                    Err(e) => events.push(RepairEvent::RestartFailed {
                        container: name.clone(),
                        error: e.to_string(),
                    }),
                }
                if let Some(restarts) = alert {
                    events.push(RepairEvent::RepeatedRestarts {
                        container: name.clone(),
                        restarts,
                        window_seconds: RESTART_WINDOW.as_secs(),
                    });
                }
                continue;
            }
            if container.status == ContainerStatus::Running {
                self.backoff
                    .entry(name.clone())
                    .or_default()
                    .record_running(now);
                let mut reasons: Vec<String> = Vec::new();
                if let Some(http) = container.http.as_ref().filter(|h| !h.ok) {
                    reasons.push(
                        http.error
                            .clone()
                            .unwrap_or_else(|| format!("{} failed", http.path)),
                    );
                }
                reasons.extend(container.over.iter().cloned());
                if !reasons.is_empty() {
                    let key = format!("unhealthy:{name}");
                    if self.raised.insert(key.clone()) {
                        events.push(RepairEvent::Unhealthy {
                            container: name.clone(),
                            reason: reasons.join("; "),
                        });
                    }
                    up.insert(key);
                }
            }
        }
        for queue in &report.queues {
            if let Some(error) = &queue.error {
                let key = format!("redis:{}", queue.project_env);
                if self.raised.insert(key.clone()) {
                    events.push(RepairEvent::RedisUnavailable {
                        project_env: queue.project_env.clone(),
                        error: error.clone(),
                    });
                }
                up.insert(key);
                continue;
            }
            if let (true, Some(depth), Some(max_depth)) =
                (queue.backlog, queue.depth, queue.max_depth)
            {
                let key = format!("backlog:{}/{}", queue.project_env, queue.queue);
                if self.raised.insert(key.clone()) {
                    events.push(RepairEvent::QueueBacklog {
                        project_env: queue.project_env.clone(),
                        queue: queue.queue.clone(),
                        depth,
                        max_depth,
                    });
                }
                up.insert(key);
            }
            if queue.failed.unwrap_or(0) > 0 {
                events.extend(self.requeue(queue).await);
            }
        }
        // Conditions that ended may be told again when they come back; a job past its
        // requeue limit is told once for as long as this monitor runs.
        self.raised
            .retain(|key| up.contains(key) || key.starts_with("limit:"));
        events
    }

    /// Worker queues to watch, by project-environment: (queue, max depth).
    fn queues(&self) -> IndexMap<String, Vec<(String, Option<u64>)>> {
        let mut out: IndexMap<String, Vec<(String, Option<u64>)>> = IndexMap::new();
        for e in &self.expected {
            for queue in &e.queues {
                let list = out.entry(e.project_env()).or_default();
                if !list.iter().any(|(q, _)| q == queue) {
                    list.push((queue.clone(), e.max_queue_depth));
                }
            }
        }
        out
    }

    fn max_requeues(&self, project_env: &str, queue: &str) -> u32 {
        self.expected
            .iter()
            .filter(|e| e.project_env() == project_env && e.queues.iter().any(|q| q == queue))
            .map(|e| e.max_requeues)
            .min()
            .unwrap_or(crate::config::deployment::DEFAULT_MAX_REQUEUES)
    }

    /// The open connection to `project_env`'s Redis, connecting when there is none.
    async fn connection(&mut self, project_env: &str) -> Result<&mut Redis, String> {
        if !self.connections.contains_key(project_env) {
            let target = self.redis.get(project_env).ok_or_else(|| {
                format!("no Redis is known for `{project_env}`: its workers' env files name none; deploy it again to write REDIS_HOST, REDIS_PORT and REDIS_PASSWORD")
            })?;
            let redis = target.connect().await.map_err(|e| e.to_string())?;
            self.connections.insert(project_env.to_string(), redis);
        }
        Ok(self
            .connections
            .get_mut(project_env)
            .expect("just connected"))
    }

    async fn check_one_queue(
        &mut self,
        project_env: &str,
        queue: &str,
        max_depth: Option<u64>,
    ) -> QueueReport {
        let result = match self.connection(project_env).await {
            Ok(redis) => check_queue(redis, project_env, queue, max_depth)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        match result {
            Ok(report) => report,
            Err(error) => {
                // A broken connection is made afresh next time.
                self.connections.remove(project_env);
                QueueReport {
                    project_env: project_env.to_string(),
                    queue: queue.to_string(),
                    depth: None,
                    failed: None,
                    max_depth,
                    backlog: false,
                    error: Some(error),
                }
            }
        }
    }

    /// Moves the failed jobs of `queue` that are under their limit back onto it.
    async fn requeue(&mut self, queue: &QueueReport) -> Vec<RepairEvent> {
        let limit = self.max_requeues(&queue.project_env, &queue.queue);
        let mut events = Vec::new();
        let outcome = match self.connection(&queue.project_env).await {
            Ok(redis) => requeue_failed(redis, &queue.queue, limit)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        match outcome {
            Ok((moved, at_limit)) => {
                if moved > 0 {
                    events.push(RepairEvent::Requeued {
                        project_env: queue.project_env.clone(),
                        queue: queue.queue.clone(),
                        jobs: moved,
                    });
                }
                for (job, requeues) in at_limit {
                    let key = format!("limit:{}/{}/{job}", queue.project_env, queue.queue);
                    if self.raised.insert(key) {
                        events.push(RepairEvent::RequeueLimit {
                            project_env: queue.project_env.clone(),
                            queue: queue.queue.clone(),
                            job,
                            requeues,
                        });
                    }
                }
            }
            Err(e) => {
                self.connections.remove(&queue.project_env);
                events.push(RepairEvent::RedisUnavailable {
                    project_env: queue.project_env.clone(),
                    error: e,
                });
            }
        }
        events
    }

    /// Takes the finished `stats` sample, and starts the next one when it is due.
    async fn collect_stats(&mut self, now: Instant) {
        if self.stats.as_ref().is_some_and(|task| task.is_finished()) {
            let task = self.stats.take().expect("a finished task");
            match task.await {
                Ok(Ok(usage)) => self.usage = usage,
                Ok(Err(e)) => tracing::warn!("sampling CPU and memory: {e}"),
                Err(e) => tracing::warn!("sampling CPU and memory: {e}"),
            }
        }
        let due = self
            .last_stats
            .is_none_or(|last| now.saturating_duration_since(last) >= self.resource_interval);
        let wanted = self
            .expected
            .iter()
            .any(|e| e.max_cpu_percent.is_some() || e.max_memory_mb.is_some());
        if self.stats.is_none() && due && wanted {
            self.last_stats = Some(now);
            let mut by_engine: IndexMap<String, Vec<String>> = IndexMap::new();
            // `stats` fails for all when one named container is not running.
            for e in self
                .expected
                .iter()
                .filter(|e| self.running.contains(&e.name))
            {
                by_engine
                    .entry(e.engine.clone())
                    .or_default()
                    .push(e.name.clone());
            }
            self.stats = Some(tokio::spawn(async move {
                let mut all = HashMap::new();
                for (cli, names) in by_engine {
                    all.extend(Engine::new(cli).stats(&names).await?);
                }
                Ok(all)
            }));
        }
    }
}

impl Drop for LocalHealth {
    fn drop(&mut self) {
        if let Some(task) = self.stats.take() {
            task.abort();
        }
    }
}

/// Requeues the failed jobs of `queue` under `limit` (the newest and oldest
/// [`REQUEUE_SCAN`] each time); returns how many moved and the jobs (by digest) at the limit.
pub async fn requeue_failed(
    redis: &mut Redis,
    queue: &str,
    limit: u32,
) -> Result<(usize, Vec<(String, u32)>), RedisError> {
    let failed = failed_list(queue);
    let counts = requeue_counts(queue);
    let total = redis.llen(&failed).await?;
    let mut jobs = if total as i64 <= 2 * REQUEUE_SCAN {
        redis.lrange(&failed, 0, -1).await?
    } else {
        let mut jobs = redis.lrange(&failed, 0, REQUEUE_SCAN - 1).await?;
        jobs.extend(redis.lrange(&failed, -REQUEUE_SCAN, -1).await?);
        jobs
    };
    // Oldest first (workers LPUSH what failed, so the oldest is at the right end), each
    // payload once: the script moves one copy at a time.
    jobs.reverse();
    let mut seen = HashSet::new();
    jobs.retain(|job| seen.insert(job.clone()));
    let mut moved = 0;
    let mut at_limit = Vec::new();
    for job in jobs {
        match redis
            .requeue_one(&failed, queue, &counts, &job, limit)
            .await?
        {
            Requeue::Moved(_) => moved += 1,
            Requeue::AtLimit(n) => at_limit.push((job_digest(&job), n)),
            Requeue::Gone => {}
        }
    }
    Ok((moved, at_limit))
}

/// Each project-environment's Redis, read from the env file of one of its workers that names
/// queues (deploys write REDIS_HOST, REDIS_PORT and REDIS_PASSWORD there), and the problems
/// met (a file missing or unreadable; the queue checks then say so too).
pub fn redis_targets(
    expected: &[ExpectedContainer],
) -> (IndexMap<String, RedisTarget>, Vec<String>) {
    let mut targets = IndexMap::new();
    let mut problems = Vec::new();
    for e in expected.iter().filter(|e| !e.queues.is_empty()) {
        let key = e.project_env();
        if targets.contains_key(&key) {
            continue;
        }
        match RedisTarget::from_env_file(std::path::Path::new(&e.env_file)) {
            Ok(Some(target)) => {
                targets.insert(key, target);
            }
            Ok(None) => problems.push(format!(
                "{} names no REDIS_HOST; deploy `{key}` again to write it",
                e.env_file
            )),
            Err(error) => problems.push(error.to_string()),
        }
    }
    (targets, problems)
}
