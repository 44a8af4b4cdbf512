//! The self-healing monitor: a daemon on every droplet (`infra monitor DROPLET`).
//!
//! - `protocol/`: the sans-IO protocol (signed probes, relayed probes, quorum verdicts,
//!   coordinator epochs), driven by the daemon with a real socket and by the simulation tests
//!   with turmoil's.
//! - `keys`: each droplet's Ed25519 key and the peers' public keys, as files.
//! - `install`: what `orchestrate`/`deploy` put on each droplet (binary, configs, playbooks,
//!   keys, a supervisor) and how the daemon is started and kept running.
//! - `daemon`: the running monitor, built from components that share one handle and talk over
//!   one event bus.
//! - `status`: the report each monitor writes every second, which `infra status` reads.

pub mod alerts;
pub mod daemon;
pub mod install;
pub mod keys;
pub mod local;
pub mod protocol;
pub mod status;

/// The UDP port monitors probe each other on (the fleet firewall opens every port between the
/// fleet's droplets).
pub const MONITOR_PORT: u16 = 7947;

/// Where a droplet keeps its monitor's project copy: `config/`, `playbooks/`, `stdlib/`,
/// `templates/`, as in the operator's project.
pub const REMOTE_ROOT: &str = "/var/lib/infra/monitor";

/// The monitor's own files within a project's `config/.infra/`.
pub const MONITOR_DIR: &str = "monitor";
