//! What a droplet's monitor does about what its checks found, and what it tells: a dead
//! container is started again with exponential backoff, and repeated restarts become an alert;
//! a worker's failed jobs go back to their queue a bounded number of times. A queue backlog
//! or a resource threshold only alerts: nothing local can fix a slow consumer, and a backlog
//! must never rebuild a droplet.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::Serialize;

/// Restarts within this window count towards the alert.
pub const RESTART_WINDOW: Duration = Duration::from_secs(600);
/// This many restarts within [`RESTART_WINDOW`] raise [`RepairEvent::RepeatedRestarts`].
pub const ALERT_AFTER_RESTARTS: usize = 3;
/// The wait after the first restart before a second; it doubles with each further one.
pub const BACKOFF_BASE: Duration = Duration::from_secs(1);
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// A container that has stayed up this long since its last restart starts its backoff over.
pub const STABLE_AFTER: Duration = Duration::from_secs(60);
/// Failed jobs looked at per queue and tick, from each end of the failed list.
pub const REQUEUE_SCAN: i64 = 500;

/// The wait before the next restart after `attempts` restarts in a row: 1 s, 2 s, 4 s, ...,
/// at most [`BACKOFF_MAX`].
pub fn backoff_delay(attempts: u32) -> Duration {
    if attempts == 0 {
        return Duration::ZERO;
    }
    let factor = 1u64 << (attempts - 1).min(20);
    BACKOFF_BASE.saturating_mul(factor as u32).min(BACKOFF_MAX)
}

/// One container's restart history.
#[derive(Debug, Clone, Default)]
pub struct RestartBackoff {
    /// When each restart (tried) within the window happened, oldest first.
    restarts: VecDeque<Instant>,
    /// Restarts in a row without the container staying up [`STABLE_AFTER`].
    attempts: u32,
    last: Option<Instant>,
    /// The alert for the current run of restarts was raised.
    alerted: bool,
}

impl RestartBackoff {
    /// Whether the backoff lets a restart happen at `now`.
    pub fn may_restart(&self, now: Instant) -> bool {
        match self.last {
            None => true,
            Some(last) => now.saturating_duration_since(last) >= backoff_delay(self.attempts),
        }
    }

    /// When the next restart may happen, if one is being held back.
    pub fn next_at(&self) -> Option<Instant> {
        self.last.map(|last| last + backoff_delay(self.attempts))
    }

    /// Counts a restart (tried, whether or not it worked) at `now`; returns how many there
    /// were within the window when that number has just reached the alert threshold.
    pub fn record_restart(&mut self, now: Instant) -> Option<usize> {
        self.forget_before(now);
        self.restarts.push_back(now);
        self.attempts = self.attempts.saturating_add(1);
        self.last = Some(now);
        if self.restarts.len() >= ALERT_AFTER_RESTARTS && !self.alerted {
            self.alerted = true;
            return Some(self.restarts.len());
        }
        None
    }

    /// The container is running at `now`: after [`STABLE_AFTER`] the backoff starts over, and
    /// once the window holds fewer restarts than the threshold a new run may alert again.
    pub fn record_running(&mut self, now: Instant) {
        if self
            .last
            .is_some_and(|last| now.saturating_duration_since(last) >= STABLE_AFTER)
        {
            self.attempts = 0;
        }
        self.forget_before(now);
    }

    fn forget_before(&mut self, now: Instant) {
        while self
            .restarts
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= RESTART_WINDOW)
        {
            self.restarts.pop_front();
        }
        if self.restarts.len() < ALERT_AFTER_RESTARTS {
            self.alerted = false;
        }
    }

    /// Restarts within the window ending at `now`.
    pub fn recent(&self, now: Instant) -> usize {
        self.restarts
            .iter()
            .filter(|t| now.saturating_duration_since(**t) < RESTART_WINDOW)
            .count()
    }
}

/// What a repair pass did or found worth telling. `is_alert` says which ones a person should
/// hear about; the daemon sends those (and suppresses duplicates).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RepairEvent {
    /// A stopped container was started again; `attempt`: its restarts within the last
    /// [`RESTART_WINDOW`], this one included.
    Restarted { container: String, attempt: u32 },
    /// Starting it failed; the backoff holds the next try.
    RestartFailed { container: String, error: String },
    /// [`ALERT_AFTER_RESTARTS`] restarts within [`RESTART_WINDOW`].
    RepeatedRestarts {
        container: String,
        restarts: usize,
        window_seconds: u64,
    },
    /// The container does not exist: only a deploy (or a recovery) can bring it back.
    Missing { container: String },
    /// Running, but failing a check that a restart would not fix (health path, CPU, memory).
    Unhealthy { container: String, reason: String },
    /// Failed jobs moved back to their queue.
    Requeued {
        project_env: String,
        queue: String,
        jobs: usize,
    },
    /// A failed job went back `max_requeues` times already: it stays in `<queue>:failed`.
    /// `job` is a digest of its payload (payloads may hold personal data).
    RequeueLimit {
        project_env: String,
        queue: String,
        job: String,
        requeues: u32,
    },
    /// The queue is longer than `max_queue_depth`: an alert, nothing more.
    QueueBacklog {
        project_env: String,
        queue: String,
        depth: u64,
        max_depth: u64,
    },
    /// The project-environment's Redis could not be used.
    RedisUnavailable { project_env: String, error: String },
}

impl RepairEvent {
    /// Whether a person should be told.
    pub fn is_alert(&self) -> bool {
        !matches!(
            self,
            RepairEvent::Restarted { .. } | RepairEvent::Requeued { .. }
        )
    }

    /// One line for people: what happened, and what was done about it.
    pub fn describe(&self) -> String {
        match self {
            RepairEvent::Restarted { container, attempt } => {
                format!("{container} had stopped and was started again (restart {attempt} in 10 minutes)")
            }
            RepairEvent::RestartFailed { container, error } => {
                format!("{container} had stopped and could not be started again: {error}")
            }
            RepairEvent::RepeatedRestarts {
                container,
                restarts,
                window_seconds,
            } => format!(
                "{container} stopped and was restarted {restarts} times within {} minutes",
                window_seconds / 60
            ),
            RepairEvent::Missing { container } => {
                format!("{container} does not exist on this droplet (deploy it again)")
            }
            RepairEvent::Unhealthy { container, reason } => format!("{container} is unhealthy: {reason}"),
            RepairEvent::Requeued {
                project_env,
                queue,
                jobs,
            } => format!("{jobs} failed job(s) of {project_env}/{queue} went back to the queue"),
            RepairEvent::RequeueLimit {
                project_env,
                queue,
                job,
                requeues,
            } => format!(
                "job {job} of {project_env}/{queue} failed after {requeues} requeues and stays in {}",
                failed_list(queue)
            ),
            RepairEvent::QueueBacklog {
                project_env,
                queue,
                depth,
                max_depth,
            } => format!("{project_env}/{queue} holds {depth} jobs (max_queue_depth {max_depth})"),
            RepairEvent::RedisUnavailable { project_env, error } => {
                format!("{project_env}'s Redis cannot be used: {error}")
            }
        }
    }

    /// What it is about: a container name or `<project-env>/<queue>`.
    pub fn subject(&self) -> String {
        match self {
            RepairEvent::Restarted { container, .. }
            | RepairEvent::RestartFailed { container, .. }
            | RepairEvent::RepeatedRestarts { container, .. }
            | RepairEvent::Missing { container }
            | RepairEvent::Unhealthy { container, .. } => container.clone(),
            RepairEvent::Requeued {
                project_env, queue, ..
            }
            | RepairEvent::RequeueLimit {
                project_env, queue, ..
            }
            | RepairEvent::QueueBacklog {
                project_env, queue, ..
            } => format!("{project_env}/{queue}"),
            RepairEvent::RedisUnavailable { project_env, .. } => project_env.clone(),
        }
    }
}

/// `<queue>:failed`: where a worker puts the jobs it gave up on.
pub fn failed_list(queue: &str) -> String {
    format!("{queue}:failed")
}

/// `<queue>:requeues`: a hash of payload -> times it was moved back.
pub fn requeue_counts(queue: &str) -> String {
    format!("{queue}:requeues")
}

/// A short, stable name for a job payload that does not show the payload.
pub fn job_digest(job: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(job);
    let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_from_one_second_up_to_five_minutes() {
        let delays: Vec<u64> = (0..12).map(|n| backoff_delay(n).as_secs()).collect();
        assert_eq!(delays, [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(backoff_delay(u32::MAX), BACKOFF_MAX);
    }

    #[test]
    fn restarts_wait_for_their_backoff() {
        let t0 = Instant::now();
        let mut b = RestartBackoff::default();
        assert!(b.may_restart(t0));
        assert_eq!(b.record_restart(t0), None);
        assert!(!b.may_restart(t0 + Duration::from_millis(999)));
        assert!(b.may_restart(t0 + Duration::from_secs(1)));
        b.record_restart(t0 + Duration::from_secs(1));
        assert!(!b.may_restart(t0 + Duration::from_secs(2)));
        assert!(b.may_restart(t0 + Duration::from_secs(3)));
        assert_eq!(b.next_at(), Some(t0 + Duration::from_secs(3)));
    }

    #[test]
    fn three_restarts_in_ten_minutes_alert_once() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut b = RestartBackoff::default();
        assert_eq!(b.record_restart(at(0)), None);
        assert_eq!(b.record_restart(at(100)), None);
        assert_eq!(b.record_restart(at(200)), Some(3));
        // Still within the window: no second alert for the fourth.
        assert_eq!(b.record_restart(at(300)), None);
        assert_eq!(b.recent(at(300)), 4);
        // Once the window holds fewer than three, a new run alerts again.
        b.record_running(at(850));
        assert_eq!(b.recent(at(850)), 1);
        assert_eq!(b.record_restart(at(860)), None);
        assert_eq!(b.record_restart(at(870)), Some(3));
    }

    #[test]
    fn restarts_spread_beyond_ten_minutes_never_alert() {
        let t0 = Instant::now();
        let mut b = RestartBackoff::default();
        for i in 0..10 {
            assert_eq!(b.record_restart(t0 + Duration::from_secs(i * 301)), None);
        }
    }

    #[test]
    fn a_container_that_stays_up_starts_its_backoff_over() {
        let t0 = Instant::now();
        let mut b = RestartBackoff::default();
        for i in 0..5 {
            b.record_restart(t0 + Duration::from_secs(i * 40));
        }
        let last = t0 + Duration::from_secs(160);
        assert_eq!(b.next_at(), Some(last + Duration::from_secs(16)));
        b.record_running(last + Duration::from_secs(30));
        assert_eq!(b.next_at(), Some(last + Duration::from_secs(16)));
        b.record_running(last + STABLE_AFTER);
        assert!(b.may_restart(last + STABLE_AFTER));
        b.record_restart(last + STABLE_AFTER);
        assert_eq!(
            b.next_at(),
            Some(last + STABLE_AFTER + Duration::from_secs(1))
        );
    }

    #[test]
    fn only_what_a_person_must_hear_is_an_alert() {
        let restarted = RepairEvent::Restarted {
            container: "c".into(),
            attempt: 1,
        };
        assert!(!restarted.is_alert());
        let backlog = RepairEvent::QueueBacklog {
            project_env: "shop-prod".into(),
            queue: "mail".into(),
            depth: 10,
            max_depth: 5,
        };
        assert!(backlog.is_alert());
        assert_eq!(backlog.subject(), "shop-prod/mail");
        assert_eq!(
            serde_json::to_value(&backlog).unwrap()["event"],
            "queue_backlog"
        );
        assert_eq!(job_digest(b"{\"to\":\"a@b\"}").len(), "sha256:".len() + 12);
        assert_eq!(failed_list("mail"), "mail:failed");
        assert_eq!(requeue_counts("mail"), "mail:requeues");
    }
}
