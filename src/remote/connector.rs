//! `Connector`: what opening a session takes (the project's key, its known hosts, the user,
//! port and timeouts), and the russh handler that checks host keys against `config/known_hosts`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use russh::client;
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKeyOrCertificate};

use super::{Host, KnownHosts, RemoteError, Session};
use crate::project::Project;

/// How to reach droplets.
#[derive(Debug, Clone)]
pub struct Options {
    /// `root` on droplets.
    pub user: String,
    pub port: u16,
    /// The longest a connection may take to be ready: TCP, key exchange and authentication.
    pub connect_timeout: Duration,
    /// The longest a command run with [`Session::exec`] may take.
    pub command_timeout: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            user: "root".into(),
            port: 22,
            connect_timeout: Duration::from_secs(10),
            command_timeout: Duration::from_secs(600),
        }
    }
}

/// Opens authenticated, host-key-checked sessions to droplets. Cheap to share (`Arc`).
pub struct Connector {
    key: Arc<PrivateKey>,
    key_path: PathBuf,
    known_hosts: KnownHosts,
    options: Options,
    config: Arc<client::Config>,
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector")
            .field("key_path", &self.key_path)
            .field("known_hosts", &self.known_hosts)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Connector {
    /// A connector that logs in with the OpenSSH private key at `key_path` (not encrypted).
    pub fn new(
        key_path: &Path,
        known_hosts: KnownHosts,
        options: Options,
    ) -> Result<Connector, RemoteError> {
        let key = russh::keys::load_secret_key(key_path, None).map_err(|e| RemoteError::Key {
            path: key_path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let config = client::Config {
            // Commands are small and interactive in rhythm: do not wait to fill packets.
            nodelay: true,
            // Pooled sessions idle between playbook steps; keepalives find a dead peer.
            keepalive_interval: Some(Duration::from_secs(15)),
            keepalive_max: 3,
            ..client::Config::default()
        };
        Ok(Connector {
            key: Arc::new(key),
            key_path: key_path.to_path_buf(),
            known_hosts,
            options,
            config: Arc::new(config),
        })
    }

    /// The project's key (`config/.infra/infrastructure_key`) and `config/known_hosts`.
    pub fn for_project(project: &Project) -> Result<Connector, RemoteError> {
        Connector::new(
            &project.ssh_key_path(),
            KnownHosts::for_project(project),
            Options::default(),
        )
    }

    pub fn known_hosts(&self) -> &KnownHosts {
        &self.known_hosts
    }

    pub fn options(&self) -> &Options {
        &self.options
    }

    pub fn key_path(&self) -> &Path {
        &self.key_path
    }

    /// Connects to `host`, checks its host key (pinning it on first use) and logs in, all
    /// within [`Options::connect_timeout`].
    pub async fn connect(&self, host: &Host) -> Result<Session, RemoteError> {
        let port = self.options.port;
        let attempt = async {
            let verifier = Verifier {
                host: host.clone(),
                known_hosts: self.known_hosts.clone(),
            };
            let mut handle = client::connect(self.config.clone(), (host.ip, port), verifier)
                .await
                .map_err(|e| e.into_remote(host, port))?;
            let key = PrivateKeyWithHashAlg::new(self.key.clone(), None);
            let auth = handle
                .authenticate_publickey(self.options.user.clone(), key)
                .await
                .map_err(|e| RemoteError::Connection {
                    host: host.clone(),
                    reason: format!("authentication failed: {e}"),
                })?;
            if !auth.success() {
                return Err(RemoteError::AuthRejected {
                    host: host.clone(),
                    user: self.options.user.clone(),
                    key: self.key_path.clone(),
                });
            }
            tracing::debug!("connected to {host}");
            Ok(Session::new(
                host.clone(),
                handle,
                self.options.command_timeout,
            ))
        };
        match tokio::time::timeout(self.options.connect_timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(RemoteError::ConnectTimeout {
                host: host.clone(),
                port,
                after: self.options.connect_timeout,
            }),
        }
    }
}

/// The russh client handler: checks the server's host key against `config/known_hosts`.
pub(super) struct Verifier {
    host: Host,
    known_hosts: KnownHosts,
}

/// What the handshake can fail with: SSH itself, or our verdict on the host key (kept whole, so
/// the caller sees the changed-key error rather than russh's "unknown key").
#[derive(Debug)]
pub(super) enum HandshakeError {
    Ssh(russh::Error),
    HostKey(RemoteError),
}

impl From<russh::Error> for HandshakeError {
    fn from(e: russh::Error) -> HandshakeError {
        HandshakeError::Ssh(e)
    }
}

impl HandshakeError {
    fn into_remote(self, host: &Host, port: u16) -> RemoteError {
        match self {
            HandshakeError::HostKey(e) => e,
            // The TCP connection itself: refused, unreachable, reset.
            HandshakeError::Ssh(russh::Error::IO(e)) => RemoteError::Connect {
                host: host.clone(),
                port,
                reason: e.to_string().to_lowercase(),
            },
            HandshakeError::Ssh(e) => RemoteError::Connection {
                host: host.clone(),
                reason: format!("SSH handshake: {}", e.to_string().to_lowercase()),
            },
        }
    }
}

impl client::Handler for Verifier {
    type Error = HandshakeError;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, HandshakeError> {
        let key = key.public_key();
        let known_hosts = self.known_hosts.clone();
        let host = self.host.clone();
        // A file read and perhaps an atomic write with fsync: off the async workers.
        let verdict = tokio::task::spawn_blocking(move || known_hosts.verify(&host, &key))
            .await
            .map_err(|e| {
                HandshakeError::HostKey(RemoteError::Connection {
                    host: self.host.clone(),
                    reason: format!("host key check did not finish: {e}"),
                })
            })?;
        verdict.map(|_| true).map_err(HandshakeError::HostKey)
    }
}
