//! A droplet's own health: what its monitor checks about the services placed on it and what
//! it repairs there by itself, before any peer or the cloud is involved. Core only: no Rhai,
//! no SSH; it runs on the droplet, beside the container engine and with the env files.
//!
//! - [`expected`]: the containers the state places on a droplet, with their checks' settings.
//! - [`engine`]: the droplet's `docker`/`podman` CLI (inspect, start, stats).
//! - [`checks`]: running, main process, web `health_path`, CPU/memory, queue depth: a
//!   serializable [`HealthReport`].
//! - [`repair`]: restart backoff, the alert after repeated restarts, the events told.
//! - [`local_health`]: [`LocalHealth`], the component the monitor calls every tick.
//! - [`redis`]: a small RESP2 client for the workers' queues on the master's Redis.

pub mod checks;
pub mod engine;
pub mod expected;
pub mod local_health;
pub mod redis;
pub mod repair;

pub use checks::{ContainerReport, ContainerStatus, HealthReport, QueueReport};
pub use engine::Engine;
pub use expected::{expected_on, ExpectedContainer};
pub use local_health::{redis_targets, requeue_failed, LocalHealth};
pub use redis::{Redis, RedisError, RedisTarget};
pub use repair::RepairEvent;
