//! Builders for discrete-event runs with real Ed25519 keys or the fast checksum.

use infra::monitor::protocol::{Node, ProtocolConfig};

use crate::cluster::Cluster;
use crate::des::{Des, Network};
use crate::fast_auth::FastAuth;

/// `n` monitors with real keys; `tune` adjusts every node's config.
pub fn signed(
    n: usize,
    seed: u64,
    net: Network,
    tune: fn(&mut ProtocolConfig),
) -> Des<infra::monitor::protocol::Keyring> {
    let cluster = Cluster::new(n, seed);
    let mut sample = cluster.config(0);
    tune(&mut sample);
    let names = cluster.names.clone();
    Des::new(
        names,
        &sample,
        seed,
        net,
        Box::new(move |i, saved, now, wall| {
            let mut cfg = cluster.config(i);
            tune(&mut cfg);
            match saved {
                Some(s) => Node::restore(cfg, cluster.keyring(i), s, now, wall),
                None => Node::new(cfg, cluster.keyring(i), now, wall),
            }
            .expect("valid config")
        }),
    )
}

/// `n` monitors authenticating with [`FastAuth`] (the long runs only).
pub fn fast(n: usize, seed: u64, net: Network, tune: fn(&mut ProtocolConfig)) -> Des<FastAuth> {
    let cluster = Cluster::new(n, seed);
    let mut sample = cluster.config(0);
    tune(&mut sample);
    let names = cluster.names.clone();
    let keys: Vec<(String, u64)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.clone(), seed.wrapping_mul(31).wrapping_add(i as u64 + 1)))
        .collect();
    Des::new(
        names,
        &sample,
        seed,
        net,
        Box::new(move |i, saved, now, wall| {
            let mut cfg = cluster.config(i);
            tune(&mut cfg);
            let auth = FastAuth {
                me: cluster.names[i].clone(),
                keys: keys.clone(),
            };
            match saved {
                Some(s) => Node::restore(cfg, auth, s, now, wall),
                None => Node::new(cfg, auth, now, wall),
            }
            .expect("valid config")
        }),
    )
}

pub fn defaults(_: &mut ProtocolConfig) {}

/// Recovery timers shortened (the properties checked do not depend on their size).
pub fn quick_recovery(cfg: &mut ProtocolConfig) {
    cfg.power_cycle_after = 3_000;
    cfg.recover_after = 6_000;
    cfg.step_retry = 1_000;
}
