//! `RemoteError`: everything that can go wrong reaching a droplet or running a command on it.
//! Each message names the host (name and IP) and says what to do next.

use std::path::PathBuf;
use std::time::Duration;

use super::Host;

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("cannot use the SSH key `{path}`: {reason}; `infra init` creates it")]
    Key { path: PathBuf, reason: String },

    #[error("cannot read `{path}`: {reason}")]
    KnownHostsRead { path: PathBuf, reason: String },

    #[error("`{path}` line {line}: {reason}; fix or remove the line (infra pins the key again on the next connection)")]
    KnownHostsInvalid {
        path: PathBuf,
        line: usize,
        reason: String,
    },

    #[error("cannot write `{path}`: {reason}")]
    KnownHostsWrite { path: PathBuf, reason: String },

    #[error("cannot connect to {host} on port {port}: {reason}; check that the droplet is on and that its firewall lets SSH in from this machine")]
    Connect {
        host: Host,
        port: u16,
        reason: String,
    },

    #[error("cannot connect to {host} on port {port}: no answer within {} s; check that the droplet is on and that its firewall lets SSH in from this machine", after.as_secs_f32())]
    ConnectTimeout {
        host: Host,
        port: u16,
        after: Duration,
    },

    #[error("{host} refused the SSH key `{key}` for `{user}`; check that its public key (`{key}.pub`) is in the droplet's `/root/.ssh/authorized_keys`")]
    AuthRejected {
        host: Host,
        user: String,
        key: PathBuf,
    },

    #[error("the SSH host key of {host} changed: `{}` line {} pins {}, the host offered {}; someone may be intercepting the connection, or the droplet was rebuilt; if it was rebuilt on purpose, remove line {} from `{}` and infra pins the new key on the next connection (infra forgets the pin itself when it recreates a droplet)", .change.known_hosts.display(), .change.line, .change.pinned, .change.offered, .change.line, .change.known_hosts.display())]
    HostKeyChanged {
        host: Host,
        change: Box<HostKeyChange>,
    },

    #[error("`{command}` failed on {host} with {status}{}", stderr_tail(stderr))]
    CommandFailed {
        host: Host,
        command: String,
        status: String,
        /// The last lines of the command's standard error.
        stderr: String,
    },

    #[error("`{command}` on {host} did not finish within {} s; it was stopped (pass a longer timeout if it needs more time)", after.as_secs_f32())]
    CommandTimeout {
        host: Host,
        command: String,
        after: Duration,
    },

    #[error("the SSH connection to {host} failed: {reason}; retry, and check that the droplet is still up")]
    Connection { host: Host, reason: String },

    #[error("gave up waiting for SSH on {host} after {} s: {last}", after.as_secs())]
    WaitGaveUp {
        host: Host,
        after: Duration,
        last: Box<RemoteError>,
    },

    #[error("stopped waiting for SSH on {host}: cancelled")]
    Cancelled { host: Host },
}

/// A host key that is not the pinned one.
#[derive(Debug)]
pub struct HostKeyChange {
    pub known_hosts: PathBuf,
    /// The pin's line in `known_hosts`, 1-based.
    pub line: usize,
    /// Both as `SHA256:...` fingerprints.
    pub pinned: String,
    pub offered: String,
}

impl RemoteError {
    /// The host the error is about, where there is one.
    pub fn host(&self) -> Option<&Host> {
        match self {
            RemoteError::Connect { host, .. }
            | RemoteError::ConnectTimeout { host, .. }
            | RemoteError::AuthRejected { host, .. }
            | RemoteError::HostKeyChanged { host, .. }
            | RemoteError::CommandFailed { host, .. }
            | RemoteError::CommandTimeout { host, .. }
            | RemoteError::Connection { host, .. }
            | RemoteError::WaitGaveUp { host, .. }
            | RemoteError::Cancelled { host } => Some(host),
            RemoteError::Key { .. }
            | RemoteError::KnownHostsRead { .. }
            | RemoteError::KnownHostsInvalid { .. }
            | RemoteError::KnownHostsWrite { .. } => None,
        }
    }

    /// Whether trying again later may succeed (the host is not up yet, or the network failed);
    /// a changed host key, a refused key or a failed command will not fix themselves.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            RemoteError::Connect { .. }
                | RemoteError::ConnectTimeout { .. }
                | RemoteError::Connection { .. }
        )
    }
}

fn stderr_tail(stderr: &str) -> String {
    if stderr.trim().is_empty() {
        String::new()
    } else {
        format!(":\n{}", stderr.trim_end())
    }
}
