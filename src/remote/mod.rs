//! Remote: SSH to droplets with russh. One [`Session`] is one authenticated connection that runs
//! many commands; a [`Pool`] keeps one session per host and fans a closure out over many hosts
//! with bounded concurrency; [`KnownHosts`] pins each droplet's host key the first time it is seen
//! (`config/known_hosts`) and refuses a changed one afterwards; [`wait_for_ssh`] waits for a
//! booting droplet.
//!
//! Secrets: anything a command needs that must stay private (env files, tokens) goes through the
//! command's standard input ([`Session::exec_with`], [`Session::upload`]), which is never logged
//! nor put in an error. Command lines are logged (at debug level) and named in errors, so they
//! must never carry a secret.

mod connector;
mod error;
mod fan_out;
mod host;
mod known_hosts;
mod pool;
mod session;
mod tunnel;
mod wait;

pub use connector::{Connector, Options};
pub use error::{HostKeyChange, RemoteError};
pub use fan_out::{run_everywhere, HostResult, DEFAULT_PARALLEL};
pub use host::Host;
pub use known_hosts::{HostKeyCheck, KnownHosts};
pub use pool::Pool;
pub use session::{shell_quote, ExecOutput, Session};
pub use tunnel::Tunnel;
pub use wait::wait_for_ssh;
