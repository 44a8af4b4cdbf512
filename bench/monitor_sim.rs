//! The monitor protocol in simulation: crash -> drain latency distribution at N = 3, 5 and 20
//! (turmoil UDP, simulated clock) and steady-state traffic per node at N = 20 (discrete-event
//! network, real Ed25519), beside the detection times of memberlist's defaults and Kubernetes'
//! node lifecycle.
//!
//! `cargo bench --bench monitor_sim` (SEEDS=N to change the 200 seeds per size).

#![allow(dead_code)]

#[path = "../tests/sim/cloud.rs"]
mod cloud;
#[path = "../tests/sim/cluster.rs"]
mod cluster;
#[path = "../tests/sim/des.rs"]
mod des;
#[path = "../tests/sim/fast_auth.rs"]
mod fast_auth;
#[path = "../tests/sim/latency.rs"]
mod latency;
#[path = "../tests/sim/scenarios.rs"]
mod scenarios;
#[path = "../tests/sim/turmoil_net.rs"]
mod turmoil_net;

use cluster::percentile;

fn main() {
    // INFRA_BENCH_QUICK (.ci/bench-check): a few seeds, to show that it still runs.
    let quick = std::env::var_os("INFRA_BENCH_QUICK").is_some_and(|v| v != "0");
    let seeds: u64 = std::env::var("SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if quick { 3 } else { 200 });
    println!("crash -> drain, simulated time, {seeds} seeds each (crash at a random moment, any member):");
    println!(
        "{:>4} {:>8} {:>8} {:>8} {:>8}",
        "N", "p50", "p90", "p99", "max"
    );
    for n in [3, 5, 20] {
        let started = std::time::Instant::now();
        let l = latency::distribution(n, 0..seeds);
        println!(
            "{n:>4} {:>7.2}s {:>7.2}s {:>7.2}s {:>7.2}s   ({:.0?} to simulate)",
            percentile(&l, 50.0) as f64 / 1000.0,
            percentile(&l, 90.0) as f64 / 1000.0,
            percentile(&l, 99.0) as f64 / 1000.0,
            l[l.len() - 1] as f64 / 1000.0,
            started.elapsed()
        );
    }
    println!("peers: memberlist defaults (LAN) detect in 6-9 s typically; Kubernetes marks a node");
    println!("NotReady after ~40-50 s (node-monitor-grace-period) and evicts later still.");

    let n = 20;
    let seconds = if quick { 10 } else { 120 };
    let mut des = scenarios::signed(n, 1, des::Network::default(), scenarios::defaults);
    des.run_until(10_000);
    let (d0, b0) = (des.datagrams, des.bytes);
    des.run_until(10_000 + seconds * 1000);
    let per_node = |v: u64| v as f64 / seconds as f64 / n as f64;
    println!(
        "N={n}, healthy, every node probing every peer: {:.1} datagrams/s and {:.0} bytes/s sent per node \
         ({:.0} bytes per datagram)",
        per_node(des.datagrams - d0),
        per_node(des.bytes - b0),
        (des.bytes - b0) as f64 / (des.datagrams - d0) as f64
    );
}
