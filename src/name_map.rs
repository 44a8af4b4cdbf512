//! Maps keyed by names (droplets, services, project-environments) with a fast hasher.
//!
//! A state of a thousand droplets and nine thousand services is looked up by name tens of
//! thousands of times per command; Rust's default SipHash guards against hash flooding by
//! untrusted input, which a user's own config is not, and costs several times more than FNV-1a
//! on short names.

use std::hash::{BuildHasherDefault, Hasher};

use indexmap::IndexMap;

/// FNV-1a, 64 bits.
#[derive(Clone, Copy)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

pub type FnvBuild = BuildHasherDefault<Fnv>;

/// An insertion-ordered map from names to `V`.
pub type NameMap<V> = IndexMap<String, V, FnvBuild>;
