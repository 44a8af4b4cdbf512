//! The signed envelope around every datagram, the keys that sign it and the checks that drop
//! forged, tampered, replayed and stale datagrams.
//!
//! Layout: `version (1) | cluster fingerprint (4, LE) | sender name length (1) | sender name |
//! recipient (varint: its index in the sorted cluster) | sequence (varint) | sender wall clock
//! ms (varint) | body | Ed25519 signature (64)`. The recipient is signed too: a genuine datagram
//! redirected to another member is dropped as misdirected, not taken as news from its sender. The
//! signature covers a domain tag followed by every byte before it.

use std::collections::BTreeMap;
use std::path::Path;

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

use super::wire::Reader;
use super::Millis;

pub const VERSION: u8 = 1;
const DOMAIN: &[u8] = b"infra-monitor-v1\0";
const SIGNATURE: usize = 64;
/// How many sequence numbers below the highest one seen are still accepted once each, so UDP
/// reordering is harmless. A sender numbers all its datagrams in one sequence (at N = 20 some
/// 50-100 a second), so this covers reordering by ten seconds or more.
pub const REPLAY_WINDOW: u64 = 1024;

/// Signs outgoing envelopes and verifies incoming ones. [`Keyring`] (Ed25519) is the one real
/// implementation; the trait exists so a long-running simulation can swap in a cheaper one.
pub trait Authenticator {
    fn sign(&self, message: &[u8]) -> [u8; SIGNATURE];
    fn verify(&self, sender: &str, message: &[u8], signature: &[u8; SIGNATURE]) -> Verification;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    Valid,
    UnknownSender,
    BadSignature,
}

/// Why a datagram was dropped. Counted per reason in [`super::Counters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// The sender is not a member whose key we hold (including datagrams claiming to be us).
    Forged,
    /// The envelope does not decode, or its signature does not match its bytes: altered in
    /// transit or signed with a key that is not the sender's.
    Tampered,
    /// A sequence number already accepted, or more than [`REPLAY_WINDOW`] behind the newest
    /// from that sender (too old to tell).
    Replayed,
    /// Authentic, but addressed to another member (captured and redirected).
    Misdirected,
    /// The sender's wall clock is outside `message_window` of ours.
    Stale,
    /// Signed by a member but for a different cluster list (a configuration mismatch).
    Foreign,
    /// Authentic, but its body does not decode (a version mismatch or a bug).
    Malformed,
}

/// This node's signing key and its peers' public keys, by droplet name.
pub struct Keyring {
    me: String,
    signing: SigningKey,
    peers: BTreeMap<String, VerifyingKey>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("Keyring")
            .field("me", &self.me)
            .field("peers", &self.peers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Keyring {
    /// A fresh Ed25519 signing key from the operating system's generator.
    pub fn generate() -> SigningKey {
        SigningKey::generate(&mut rand_core::OsRng)
    }

    /// `peers` should hold every other monitor's public key; a key listed under `me` is ignored,
    /// so a datagram claiming to come from this node is always dropped as forged.
    pub fn new(
        me: impl Into<String>,
        signing: SigningKey,
        mut peers: BTreeMap<String, VerifyingKey>,
    ) -> Keyring {
        let me = me.into();
        peers.remove(&me);
        Keyring { me, signing, peers }
    }

    pub fn me(&self) -> &str {
        &self.me
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    pub fn peers(&self) -> &BTreeMap<String, VerifyingKey> {
        &self.peers
    }
}

impl Authenticator for Keyring {
    fn sign(&self, message: &[u8]) -> [u8; SIGNATURE] {
        self.signing.sign(message).to_bytes()
    }

    fn verify(&self, sender: &str, message: &[u8], signature: &[u8; SIGNATURE]) -> Verification {
        let Some(key) = self.peers.get(sender) else {
            return Verification::UnknownSender;
        };
        match key.verify(message, &Signature::from_bytes(signature)) {
            Ok(()) => Verification::Valid,
            Err(_) => Verification::BadSignature,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read `{path}`: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write `{path}`: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("`{path}` must hold {bytes} bytes as {} hex digits on one line; regenerate it with `infra orchestrate`", bytes * 2)]
    Format { path: String, bytes: usize },
    #[error("`{path}` is readable by others (mode {mode:o}); run `chmod 600 {path}`")]
    Permissions { path: String, mode: u32 },
    #[error("`{path}` is not a valid Ed25519 public key; regenerate it with `infra orchestrate`")]
    PublicKey { path: String },
}

/// Writes the 32-byte secret as hex, atomically, readable by its owner only.
pub fn save_secret(path: &Path, key: &SigningKey) -> Result<(), KeyFileError> {
    let text = format!("{}\n", hex(&key.to_bytes()));
    crate::atomic_file::write_with_mode(path, text.as_bytes(), Some(0o600)).map_err(|source| {
        KeyFileError::Write {
            path: path.display().to_string(),
            source,
        }
    })
}

/// Reads a secret written by [`save_secret`]; refuses a file others can read.
pub fn load_secret(path: &Path) -> Result<SigningKey, KeyFileError> {
    let shown = || path.display().to_string();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|source| KeyFileError::Read {
            path: shown(),
            source,
        })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyFileError::Permissions {
                path: shown(),
                mode,
            });
        }
    }
    let bytes: [u8; 32] = read_hex(path)?;
    Ok(SigningKey::from_bytes(&bytes))
}

/// Writes a public key as hex (mode 0644).
pub fn save_public(path: &Path, key: &VerifyingKey) -> Result<(), KeyFileError> {
    let text = format!("{}\n", hex(key.as_bytes()));
    crate::atomic_file::write_with_mode(path, text.as_bytes(), Some(0o644)).map_err(|source| {
        KeyFileError::Write {
            path: path.display().to_string(),
            source,
        }
    })
}

pub fn load_public(path: &Path) -> Result<VerifyingKey, KeyFileError> {
    let bytes: [u8; 32] = read_hex(path)?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| KeyFileError::PublicKey {
        path: path.display().to_string(),
    })
}

fn read_hex<const N: usize>(path: &Path) -> Result<[u8; N], KeyFileError> {
    let shown = || path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Read {
        path: shown(),
        source,
    })?;
    unhex(text.trim()).ok_or(KeyFileError::Format {
        path: shown(),
        bytes: N,
    })
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != N * 2 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&text[i * 2..i * 2 + 2], 16).ok()?;
    }
    Some(out)
}

/// Builds a signed envelope around `body`.
pub(crate) fn seal(
    auth: &dyn Authenticator,
    cluster: u32,
    sender: &str,
    recipient: u64,
    seq: u64,
    wall_ms: u64,
    body: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(DOMAIN.len() + 24 + sender.len() + body.len() + SIGNATURE);
    out.extend_from_slice(DOMAIN);
    out.push(VERSION);
    out.extend_from_slice(&cluster.to_le_bytes());
    out.push(sender.len() as u8);
    out.extend_from_slice(sender.as_bytes());
    super::wire::put(&mut out, recipient);
    super::wire::put(&mut out, seq);
    super::wire::put(&mut out, wall_ms);
    out.extend_from_slice(body);
    let signature = auth.sign(&out);
    out.extend_from_slice(&signature);
    out.drain(..DOMAIN.len());
    out
}

/// An envelope whose signature checked out.
#[derive(Debug)]
pub(crate) struct Opened<'a> {
    pub sender: &'a str,
    /// The member it is addressed to (its index in the sorted cluster).
    pub recipient: u64,
    pub seq: u64,
    pub wall_ms: u64,
    pub body: &'a [u8],
}

/// Decodes and authenticates an envelope. The claimed sender (for logging) comes back with a
/// drop so the caller can count it; it is untrusted.
pub(crate) fn open<'a>(
    auth: &dyn Authenticator,
    cluster: u32,
    bytes: &'a [u8],
) -> Result<Opened<'a>, (DropReason, Option<String>)> {
    let tampered = |sender: Option<&str>| (DropReason::Tampered, sender.map(str::to_owned));
    if bytes.len() < SIGNATURE + 8 {
        return Err(tampered(None));
    }
    let (signed, signature) = bytes.split_at(bytes.len() - SIGNATURE);
    let mut r = Reader {
        bytes: signed,
        at: 0,
    };
    let header = (|| {
        let version = r.byte()?;
        let fingerprint = u32::from_le_bytes(r.take(4)?.try_into().expect("four bytes"));
        let len = usize::from(r.byte()?);
        let sender = std::str::from_utf8(r.take(len)?).map_err(|_| super::wire::Malformed)?;
        let recipient = r.varint()?;
        let seq = r.varint()?;
        let wall_ms = r.varint()?;
        Ok::<_, super::wire::Malformed>((version, fingerprint, sender, recipient, seq, wall_ms))
    })();
    let Ok((version, fingerprint, sender, recipient, seq, wall_ms)) = header else {
        return Err(tampered(None));
    };
    if version != VERSION {
        return Err(tampered(Some(sender)));
    }
    let mut message = Vec::with_capacity(DOMAIN.len() + signed.len());
    message.extend_from_slice(DOMAIN);
    message.extend_from_slice(signed);
    let signature: &[u8; SIGNATURE] = signature.try_into().expect("64 bytes");
    match auth.verify(sender, &message, signature) {
        Verification::Valid => {}
        Verification::UnknownSender => return Err((DropReason::Forged, Some(sender.to_owned()))),
        Verification::BadSignature => return Err(tampered(Some(sender))),
    }
    if fingerprint != cluster {
        return Err((DropReason::Foreign, Some(sender.to_owned())));
    }
    Ok(Opened {
        sender,
        recipient,
        seq,
        wall_ms,
        body: &signed[r.at..],
    })
}

/// Whether `sender_wall` is within `window` of `my_wall`.
pub(crate) fn fresh(sender_wall: u64, my_wall: u64, window: Millis) -> bool {
    sender_wall.abs_diff(my_wall) <= window
}

/// Per-sender sequence numbers: the highest accepted and which of the [`REPLAY_WINDOW`] below it
/// were seen.
#[derive(Debug, Clone, Default)]
pub(crate) struct ReplayWindow {
    highest: u64,
    /// Bit i (word i / 64, bit i % 64) set: `highest - i` was accepted.
    seen: [u64; (REPLAY_WINDOW / 64) as usize],
    any: bool,
}

impl ReplayWindow {
    fn bit(&self, back: u64) -> bool {
        self.seen[(back / 64) as usize] & (1 << (back % 64)) != 0
    }

    fn set(&mut self, back: u64) {
        self.seen[(back / 64) as usize] |= 1 << (back % 64);
    }

    /// Shifts the window up by `by` sequence numbers.
    fn shift(&mut self, by: u64) {
        if by >= REPLAY_WINDOW {
            self.seen = Default::default();
            return;
        }
        let (words, bits) = ((by / 64) as usize, (by % 64) as u32);
        let old = self.seen;
        for i in (0..old.len()).rev() {
            let from = i.checked_sub(words);
            let mut w = from.map_or(0, |f| old[f] << bits);
            if bits > 0 {
                if let Some(lower) = from.and_then(|f| f.checked_sub(1)) {
                    w |= old[lower] >> (64 - bits);
                }
            }
            self.seen[i] = w;
        }
    }

    /// Records `seq` and says whether it is new.
    pub(crate) fn accept(&mut self, seq: u64) -> bool {
        if !self.any || seq > self.highest {
            let by = if self.any {
                seq - self.highest
            } else {
                REPLAY_WINDOW
            };
            self.shift(by);
            self.set(0);
            self.highest = seq;
            self.any = true;
            return true;
        }
        let back = self.highest - seq;
        if back >= REPLAY_WINDOW || self.bit(back) {
            return false;
        }
        self.set(back);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_window_accepts_reordering_once_and_refuses_old() {
        let mut w = ReplayWindow::default();
        assert!(w.accept(1000));
        assert!(w.accept(1002));
        assert!(w.accept(1001), "reordered but new");
        assert!(!w.accept(1001), "replayed");
        assert!(!w.accept(1002), "replayed");
        assert!(w.accept(1000 + REPLAY_WINDOW + 1));
        assert!(!w.accept(1000), "behind the window");
        assert!(w.accept(1100), "inside the window, never seen");
        assert!(!w.accept(1100));
        assert!(!w.accept(1002), "still remembered after the shift");
        assert!(w.accept(1003 + 64), "bits carried across words stay apart");
        assert!(!w.accept(1001 + REPLAY_WINDOW));
    }

    #[test]
    fn key_files_round_trip_and_the_secret_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let key = Keyring::generate();
        let secret = dir.path().join("monitor.key");
        let public = dir.path().join("monitor.pub");
        save_secret(&secret, &key).unwrap();
        save_public(&public, &key.verifying_key()).unwrap();
        assert_eq!(load_secret(&secret).unwrap().to_bytes(), key.to_bytes());
        assert_eq!(load_public(&public).unwrap(), key.verifying_key());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_secret(&secret).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        std::fs::write(&public, "abcd\n").unwrap();
        let err = load_public(&public).unwrap_err().to_string();
        assert!(err.contains("64 hex digits"), "{err}");
    }
}
