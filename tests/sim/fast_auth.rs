//! A keyed checksum in place of Ed25519, for the 10^4 node-hour run only: it still detects
//! tampering and unknown senders in the simulation, costs ~100x less than a signature, and is
//! worthless against an attacker (which is why it lives in the tests, not in the crate).

use infra::monitor::protocol::{Authenticator, Verification};

pub struct FastAuth {
    pub me: String,
    pub keys: Vec<(String, u64)>,
}

fn tag(key: u64, message: &[u8]) -> [u8; 64] {
    let mut h = key ^ 0xcbf2_9ce4_8422_2325;
    for b in message {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let mut out = [0u8; 64];
    for (i, chunk) in out.chunks_mut(8).enumerate() {
        chunk.copy_from_slice(&(h.rotate_left(i as u32 * 8) ^ key).to_le_bytes());
    }
    out
}

impl Authenticator for FastAuth {
    fn sign(&self, message: &[u8]) -> [u8; 64] {
        let key = self
            .keys
            .iter()
            .find(|(n, _)| *n == self.me)
            .expect("own key")
            .1;
        tag(key, message)
    }

    fn verify(&self, sender: &str, message: &[u8], signature: &[u8; 64]) -> Verification {
        match self.keys.iter().find(|(n, _)| n == sender) {
            None => Verification::UnknownSender,
            Some((_, key)) if tag(*key, message) == *signature => Verification::Valid,
            Some(_) => Verification::BadSignature,
        }
    }
}
