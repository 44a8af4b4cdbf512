//! The sandbox speaks HTTPS, as DigitalOcean's API does: clients such as pydo refuse to send a
//! bearer token over plain HTTP.
//!
//! - A certificate authority made once per project: `ca.pem` (the certificate, for users to
//!   trust) and `ca-key.pem` (its key, 0600, never printed), in the sandbox's directory. `down`
//!   keeps both, so what a user set up to trust the CA keeps working for the next sandbox.
//! - At every start, a new server certificate for `127.0.0.1` and `localhost`, signed by that
//!   CA; its key lives in memory only.
//! - [`TlsListener`]: TLS handshakes run concurrently, off the accept loop, so one slow client
//!   cannot hold up the others; a client that speaks plain HTTP to it is told to use https.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::rustls;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::atomic_file;

/// The CA's certificate, within the sandbox's directory.
pub const CA_FILE: &str = crate::cloud::endpoint::CA_FILE;
/// The CA's private key, within the sandbox's directory.
pub const CA_KEY_FILE: &str = "ca-key.pem";

/// How long a client may take over its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot {action} {}: {source}", path.display())]
    File {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the sandbox's CA key {} is not usable ({cause}); remove it and `ca.pem` beside it, and `infra sandbox up` makes a new CA (clients must then trust the new `ca.pem`)", path.display())]
    BadKey { path: PathBuf, cause: rcgen::Error },
    #[error("cannot make the sandbox's certificates: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("cannot set up TLS: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The project's sandbox CA: its certificate and what signs with it.
pub struct Authority {
    pub cert_path: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("cert_path", &self.cert_path)
            .finish_non_exhaustive()
    }
}

/// The CA's identity, made from its key alone: so it can be rebuilt from `ca-key.pem` without
/// parsing `ca.pem`, and two projects' CAs never share a name.
fn authority_params(key: &KeyPair) -> CertificateParams {
    let digest = Sha256::digest(key.public_key_raw());
    let short: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "infra sandbox");
    name.push(DnType::CommonName, format!("infra sandbox CA {short}"));
    let mut params = CertificateParams::default();
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

/// The project's CA from `dir`, made there on first use.
pub fn authority(dir: &Path) -> Result<Authority, TlsError> {
    let cert_path = dir.join(CA_FILE);
    let key_path = dir.join(CA_KEY_FILE);
    if key_path.is_file() && cert_path.is_file() {
        let text = std::fs::read_to_string(&key_path).map_err(|source| TlsError::File {
            action: "read",
            path: key_path.clone(),
            source,
        })?;
        let key = KeyPair::from_pem(&text).map_err(|cause| TlsError::BadKey {
            path: key_path.clone(),
            cause,
        })?;
        let params = authority_params(&key);
        return Ok(Authority {
            cert_path,
            issuer: Issuer::new(params, key),
        });
    }
    let key = KeyPair::generate()?;
    let mut params = authority_params(&key);
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(3650);
    params.serial_number = Some(serial());
    let cert = params.self_signed(&key)?;
    // The key first: a certificate without its key would be rebuilt with a new key anyway.
    write(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
    write(&cert_path, cert.pem().as_bytes(), 0o644)?;
    Ok(Authority {
        cert_path,
        issuer: Issuer::new(params, key),
    })
}

fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TlsError> {
    atomic_file::write_with_mode(path, bytes, Some(mode)).map_err(|source| TlsError::File {
        action: "write",
        path: path.to_owned(),
        source,
    })
}

fn serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
    // Positive, as DER integers for serials must be.
    bytes[0] &= 0x7f;
    SerialNumber::from_slice(&bytes)
}

impl Authority {
    /// A fresh server certificate for `127.0.0.1`, `localhost` and `also` (the address the
    /// droplets reach the sandbox on), and the TLS configuration that serves it (HTTP/1.1,
    /// aws-lc-rs, TLS 1.2 and 1.3).
    pub fn server_config(&self, also: &[IpAddr]) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let key = KeyPair::generate()?;
        let mut names = vec!["127.0.0.1".to_string(), "localhost".to_string()];
        names.extend(also.iter().map(IpAddr::to_string));
        let mut params = CertificateParams::new(names)?;
        params
            .distinguished_name
            .push(DnType::CommonName, "infra sandbox");
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        // Within the 398 days some clients allow a server certificate.
        params.not_after = now + time::Duration::days(397);
        params.serial_number = Some(serial());
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer)?;
        let key_der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], key_der)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// Accepts TCP connections and hands on those whose TLS handshake succeeded.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    pub fn new(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<Self> {
        Self::on_all(vec![listener], config)
    }

    /// Accepts on every listener (loopback for the operator, the droplets' gateway for their
    /// monitors) and hands on connections in one stream; the first listener's address is the
    /// one told to plain-HTTP clients.
    pub fn on_all(
        listeners: Vec<TcpListener>,
        config: Arc<rustls::ServerConfig>,
    ) -> std::io::Result<Self> {
        let first = listeners
            .first()
            .ok_or_else(|| std::io::Error::other("no listener"))?
            .local_addr()?;
        let (send, ready) = mpsc::channel(64);
        let acceptor = TlsAcceptor::from(config);
        for listener in listeners {
            let local = listener.local_addr()?;
            Self::accept_on(listener, local, acceptor.clone(), send.clone());
        }
        Ok(TlsListener {
            ready,
            local: first,
        })
    }

    fn accept_on(
        listener: TcpListener,
        local: SocketAddr,
        acceptor: TlsAcceptor,
        send: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
    ) {
        tokio::spawn(async move {
            loop {
                let (stream, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors, say: wait rather than spin.
                        tracing::warn!("cannot accept a connection: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                if send.is_closed() {
                    return;
                }
                let (acceptor, send) = (acceptor.clone(), send.clone());
                tokio::spawn(async move {
                    if let Some(tls) = handshake(&acceptor, stream, local).await {
                        let _ = send.send((tls, peer)).await;
                    }
                });
            }
        });
    }
}

/// The TLS handshake, or, for a client that sent plain HTTP, an answer saying to use https.
async fn handshake(
    acceptor: &TlsAcceptor,
    mut stream: TcpStream,
    local: SocketAddr,
) -> Option<TlsStream<TcpStream>> {
    let mut first = [0u8; 1];
    let peeked = tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.peek(&mut first)).await;
    if !matches!(peeked, Ok(Ok(1))) {
        return None;
    }
    // A TLS record starts with 0x16 (handshake); an HTTP request with a method's letters.
    if first[0].is_ascii_uppercase() {
        let body = format!(
            "{{\"id\":\"bad_request\",\"message\":\"This sandbox serves HTTPS only: use https://{local} (and trust its CA, `config/.infra/sandbox/ca.pem`).\"}}"
        );
        let answer = format!(
            "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(answer.as_bytes()).await;
        let _ = stream.shutdown().await;
        tracing::info!("a plain HTTP request was refused: this sandbox serves HTTPS");
        return None;
    }
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(e)) => {
            // Most often a client that does not trust the CA.
            tracing::info!("a TLS handshake failed: {e}");
            None
        }
        Err(_) => None,
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accept loop never ends on its own.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_authority_is_made_once_and_its_key_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let first = authority(dir.path()).unwrap();
        let pem = std::fs::read_to_string(&first.cert_path).unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(CA_KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(!format!("{first:?}").contains("PRIVATE"));
        let again = authority(dir.path()).unwrap();
        assert_eq!(std::fs::read_to_string(&again.cert_path).unwrap(), pem);
        again.server_config(&[]).unwrap();

        std::fs::write(dir.path().join(CA_KEY_FILE), "not a key").unwrap();
        let error = authority(dir.path()).unwrap_err().to_string();
        assert!(
            error.contains("ca-key.pem") && error.contains("remove it"),
            "{error}"
        );
    }

    /// A client that trusts the CA gets through; one that does not, and one that speaks plain
    /// HTTP, do not.
    #[tokio::test]
    async fn serves_https_to_clients_that_trust_the_authority() {
        let dir = tempfile::tempdir().unwrap();
        let authority = authority(dir.path()).unwrap();
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let tls = TlsListener::new(listener, authority.server_config(&[]).unwrap()).unwrap();
        let app = axum::Router::new().route("/", axum::routing::get(|| async { "hello" }));
        tokio::spawn(async move { axum::serve(tls, app).await });

        let ca = std::fs::read(&authority.cert_path).unwrap();
        let trusting = reqwest::Client::builder()
            .tls_certs_only(reqwest::Certificate::from_pem_bundle(&ca).unwrap())
            .build()
            .unwrap();
        for host in ["127.0.0.1", "localhost"] {
            let answer = trusting
                .get(format!("https://{host}:{port}/"))
                .send()
                .await
                .unwrap();
            assert_eq!(answer.text().await.unwrap(), "hello");
        }
        let stranger = reqwest::Client::new();
        assert!(stranger
            .get(format!("https://127.0.0.1:{port}/"))
            .send()
            .await
            .is_err());
        let plain = stranger
            .get(format!("http://127.0.0.1:{port}/"))
            .send()
            .await
            .unwrap();
        assert_eq!(plain.status(), 400);
        assert!(plain.text().await.unwrap().contains("serves HTTPS only"));
    }
}
