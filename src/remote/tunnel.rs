//! `Tunnel`: a port on this machine's loopback that leads, over an SSH session, to a port on
//! the droplet (`ssh -L` without the `ssh`). The registry on the master is reached this way: it
//! listens only on the droplet, and this machine's Docker Engine pushes to `127.0.0.1:<port>`,
//! which Docker trusts without TLS because it is loopback.
//!
//! Each accepted connection gets its own `direct-tcpip` channel and is copied both ways until
//! either side closes. The channel's window is honoured in both directions (russh's
//! `ChannelStream`), so a large layer streams at the pace the droplet takes it instead of being
//! buffered whole or stalling (basecamp/kamal#1886 wedged at ~27 MiB).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::{RemoteError, Session};

pub struct Tunnel {
    local: SocketAddr,
    accept: JoinHandle<()>,
    bytes_sent: Arc<AtomicU64>,
}

impl Tunnel {
    /// Listens on a free loopback port and forwards each connection to `remote_host:remote_port`
    /// as the droplet of `session` sees it (`127.0.0.1` is the droplet itself).
    pub async fn open(
        session: Arc<Session>,
        remote_host: &str,
        remote_port: u16,
    ) -> Result<Tunnel, RemoteError> {
        let listener =
            TcpListener::bind(("127.0.0.1", 0))
                .await
                .map_err(|e| RemoteError::Connection {
                    host: session.host().clone(),
                    reason: format!("cannot listen on a loopback port for the tunnel: {e}"),
                })?;
        let local = listener.local_addr().map_err(|e| RemoteError::Connection {
            host: session.host().clone(),
            reason: format!("cannot read the tunnel's local address: {e}"),
        })?;
        let bytes_sent = Arc::new(AtomicU64::new(0));
        let counter = bytes_sent.clone();
        let remote_host = remote_host.to_owned();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut socket, peer)) = listener.accept().await else {
                    return;
                };
                let session = session.clone();
                let remote_host = remote_host.clone();
                let counter = counter.clone();
                tokio::spawn(async move {
                    let channel = match session
                        .open_direct_tcpip(&remote_host, remote_port, peer)
                        .await
                    {
                        Ok(channel) => channel,
                        Err(e) => {
                            tracing::warn!(
                                "tunnel to {remote_host}:{remote_port} on {}: {e}",
                                session.host()
                            );
                            return;
                        }
                    };
                    let stream = channel.into_stream();
                    let (mut from_droplet, mut to_droplet) = tokio::io::split(stream);
                    let (mut from_client, mut to_client) = socket.split();
                    // Counted as it goes, not when the connection ends: Docker keeps its
                    // connections open after a push.
                    let up = async {
                        let mut buffer = vec![0u8; 64 * 1024];
                        loop {
                            let n = from_client.read(&mut buffer).await?;
                            if n == 0 {
                                return to_droplet.shutdown().await;
                            }
                            to_droplet.write_all(&buffer[..n]).await?;
                            counter.fetch_add(n as u64, Ordering::Relaxed);
                        }
                    };
                    let down = async {
                        tokio::io::copy(&mut from_droplet, &mut to_client).await?;
                        to_client.shutdown().await
                    };
                    if let Err(e) = tokio::try_join!(up, down) {
                        tracing::debug!(
                            "tunnel connection to {remote_host}:{remote_port} on {} ended: {e}",
                            session.host()
                        );
                    }
                });
            }
        });
        Ok(Tunnel {
            local,
            accept,
            bytes_sent,
        })
    }

    /// The loopback port that leads to the droplet.
    pub fn port(&self) -> u16 {
        self.local.port()
    }

    /// Bytes sent to the droplet through the tunnel so far.
    pub fn bytes_sent(&self) -> u64 {
        self.bytes_sent.load(Ordering::Relaxed)
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        self.accept.abort();
    }
}
