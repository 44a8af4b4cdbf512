//! A test cluster's names, keys and configs, shared by the turmoil and the discrete-event
//! harnesses.

use std::collections::BTreeMap;

use ed25519_dalek::{SigningKey, VerifyingKey};
use infra::monitor::protocol::{Keyring, ProtocolConfig};

/// 2026-12-02 00:00 UTC: the wall clock at simulated time zero.
pub const WALL: u64 = 1_796_169_600_000;

pub struct Cluster {
    pub names: Vec<String>,
    keys: Vec<SigningKey>,
    publics: BTreeMap<String, VerifyingKey>,
}

impl Cluster {
    /// `n` monitors `web0`..; keys derived from `seed`, so a failing seed replays exactly.
    pub fn new(n: usize, seed: u64) -> Cluster {
        let names: Vec<String> = (0..n).map(|i| format!("web{i:02}")).collect();
        let keys: Vec<SigningKey> = (0..n)
            .map(|i| {
                let mut secret = [0u8; 32];
                secret[..8].copy_from_slice(&seed.to_le_bytes());
                secret[8..16].copy_from_slice(&(i as u64).to_le_bytes());
                SigningKey::from_bytes(&secret)
            })
            .collect();
        let publics = names
            .iter()
            .cloned()
            .zip(keys.iter().map(SigningKey::verifying_key))
            .collect();
        Cluster {
            names,
            keys,
            publics,
        }
    }

    pub fn keyring(&self, i: usize) -> Keyring {
        Keyring::new(
            self.names[i].clone(),
            self.keys[i].clone(),
            self.publics.clone(),
        )
    }

    /// Every node watches every peer (the N <= 20 rule).
    pub fn config(&self, i: usize) -> ProtocolConfig {
        let watch = self
            .names
            .iter()
            .filter(|n| **n != self.names[i])
            .cloned()
            .collect();
        ProtocolConfig::new(self.names[i].clone(), self.names.clone(), watch)
    }
}

/// Percentile (0..=100) of sorted values, nearest rank.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    assert!(!sorted.is_empty());
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Runs `f` for each seed on as many threads as the machine offers; results in seed order.
pub fn par_seeds<T: Send>(seeds: std::ops::Range<u64>, f: impl Fn(u64) -> T + Sync) -> Vec<T> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    let seeds: Vec<u64> = seeds.collect();
    let chunks: Vec<Vec<u64>> = (0..threads)
        .map(|t| seeds.iter().copied().skip(t).step_by(threads).collect())
        .collect();
    let mut results: Vec<(u64, T)> = std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .iter()
            .map(|chunk| {
                s.spawn(|| {
                    chunk
                        .iter()
                        .map(|seed| (*seed, f(*seed)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a seed panicked"))
            .collect()
    });
    results.sort_by_key(|(seed, _)| *seed);
    results.into_iter().map(|(_, t)| t).collect()
}
