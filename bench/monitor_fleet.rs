//! Twenty real `infra monitor` processes (the release binary) on this machine's loopback, each
//! on its own 127.0.9.x address with its own project copy and key, exactly as installed on
//! droplets (issue 9): what one monitor costs at N=20 (resident memory, CPU, datagrams and
//! bytes per second), and how long the fleet takes from a monitor's death (SIGKILL) to the
//! coordinator draining it, measured on the real UDP stack and clock. The peers: memberlist's
//! defaults (typically 6-9 s to declare a node dead) and Kubernetes' node lifecycle controller
//! (~50 s with its default grace period). Goal: <= 20 MB RSS and < 1% of a core per monitor.
//!
//!     cargo bench --bench monitor_fleet
//!
//! The recovery playbook of each monitor only prints the step it runs (the real one drives the
//! cloud), so detection is timed to the coordinator's `drain` step. Steady state is measured
//! over 30 s (5 s with `INFRA_BENCH_QUICK=1`) once every monitor sees every peer alive; then 5
//! rounds (1) kill a different monitor, time the drain, start it again and wait until all
//! see it alive. No Docker or network beyond loopback is needed.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::time::{Duration, Instant};

mod run_mode;

const BIN: &str = env!("CARGO_BIN_EXE_infra");
const N: usize = 20;

const PLAYBOOK: &str = r#"
fn drain(droplet) { print(`STEP drain ${droplet}`); }
fn check(droplet) { print(`STEP check ${droplet}`); }
fn recover(droplet) { print(`STEP recover ${droplet}`); }
fn restore(droplet) { print(`STEP restore ${droplet}`); }
"#;

fn name(i: usize) -> String {
    if i == 0 {
        "master".into()
    } else {
        format!("web{i:02}")
    }
}

fn ip(i: usize) -> String {
    format!("127.0.9.{}", 10 + i)
}

fn state() -> String {
    let droplets: Vec<String> = (0..N)
        .map(|i| {
            let role = if i == 0 { "master" } else { "web" };
            let project = if i == 0 { "" } else { r#", "project": "app""# };
            format!(
                r#""{}": {{"ip": "{}", "size": "s-1vcpu-1gb", "region": "lon1", "role": "{role}"{project}}}"#,
                name(i),
                ip(i)
            )
        })
        .collect();
    format!(
        r#"{{"droplets": {{ {} }}, "projects": {{}},
  "infrastructure_spec": {{
    "droplets": {{"master": {{"size": "s-1vcpu-1gb", "region": "lon1", "role": "master"}}}},
    "projects": {{"app": {{"environments": ["prod"], "web_droplets": {}, "web_droplet_spec": "s-1vcpu-1gb"}}}}
  }}
}}"#,
        droplets.join(",\n"),
        N - 1
    )
}

/// A running monitor; its stderr lines arrive on the shared channel tagged with its index.
struct Monitor {
    child: Child,
    dir: PathBuf,
}

/// A monitor never outlives the benchmark, even one that fails half way.
impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(i: usize, dir: &Path, lines: &Sender<(usize, Instant, String)>) -> Monitor {
    let mut child = Command::new(BIN)
        .args(["monitor", &name(i), "--listen", &format!("{}:7947", ip(i))])
        .current_dir(dir)
        .env_remove("DO_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start infra monitor");
    let stderr = child.stderr.take().unwrap();
    let lines = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines.send((i, Instant::now(), line)).is_err() {
                return;
            }
        }
    });
    Monitor {
        child,
        dir: dir.to_path_buf(),
    }
}

fn status(dir: &Path) -> Option<serde_json::Value> {
    let bytes = std::fs::read(dir.join("config/.infra/monitor/status.json")).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn sees_all_alive(dir: &Path) -> bool {
    status(dir).is_some_and(|s| {
        s["protocol"]["peers"]
            .as_array()
            .is_some_and(|p| p.len() == N - 1 && p.iter().all(|p| p["state"] == "alive"))
    })
}

fn wait_all_alive(monitors: &BTreeMap<usize, Monitor>, within: Duration) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if monitors.values().all(|m| sees_all_alive(&m.dir)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("the {N} monitors did not all see each other alive within {within:?}");
}

/// (resident KiB, CPU clock ticks user+system) of a process.
type Usage = (u64, u64);
/// (datagrams, bytes) a monitor sent and received.
type Traffic = (u64, u64);

fn usage(pid: u32) -> Usage {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = fields
        .get(11)
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        + fields
            .get(12)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    (rss, ticks)
}

fn counters(dir: &Path) -> Traffic {
    status(dir)
        .map(|s| {
            let c = &s["protocol"]["counters"];
            (
                c["sent"].as_u64().unwrap_or(0) + c["received"].as_u64().unwrap_or(0),
                c["bytes_sent"].as_u64().unwrap_or(0) + c["bytes_received"].as_u64().unwrap_or(0),
            )
        })
        .unwrap_or((0, 0))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if v.is_empty() {
        return 0.0;
    }
    v[v.len() / 2]
}

fn main() {
    if !Path::new("/proc/self/status").exists() {
        run_mode::skip("monitor_fleet", "/proc is needed to read memory and CPU");
        return;
    }
    let root = std::env::temp_dir().join(format!("infra-bench-monitors-{}", std::process::id()));
    let keys: Vec<ed25519_dalek::SigningKey> = (0..N)
        .map(|_| ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng))
        .collect();
    let public: BTreeMap<String, ed25519_dalek::VerifyingKey> =
        (0..N).map(|i| (name(i), keys[i].verifying_key())).collect();
    let mut dirs = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let dir = root.join(name(i));
        std::fs::create_dir_all(dir.join("config/.infra/monitor")).unwrap();
        std::fs::create_dir_all(dir.join("playbooks")).unwrap();
        std::fs::write(dir.join("config/infrastructure.json"), state()).unwrap();
        std::fs::write(dir.join("playbooks/recovery.rhai"), PLAYBOOK).unwrap();
        std::fs::write(
            dir.join("config/.infra/monitor/peers.json"),
            infra::monitor::keys::peers_json(&public),
        )
        .unwrap();
        infra::monitor::keys::write_secret(&dir.join("config/.infra/monitor/key"), key).unwrap();
        dirs.push(dir);
    }
    let (send, lines): (Sender<_>, Receiver<_>) = channel();
    let mut monitors: BTreeMap<usize, Monitor> =
        (0..N).map(|i| (i, start(i, &dirs[i], &send))).collect();
    wait_all_alive(&monitors, Duration::from_secs(60));

    // Steady state.
    let window = if run_mode::quick() {
        Duration::from_secs(5)
    } else {
        Duration::from_secs(30)
    };
    let ticks_per_second = 100.0; // USER_HZ on Linux
    let before: BTreeMap<usize, (Usage, Traffic)> = monitors
        .iter()
        .map(|(i, m)| (*i, (usage(m.child.id()), counters(&m.dir))))
        .collect();
    while lines.try_recv().is_ok() {}
    std::thread::sleep(window);
    // Nobody died meanwhile: any verdict is a false one.
    let false_verdicts = std::iter::from_fn(|| lines.try_recv().ok())
        .filter(|(_, _, line)| line.contains("Verdict {"))
        .count();
    let mut rss = Vec::new();
    let mut cpu = Vec::new();
    let mut datagrams = Vec::new();
    let mut bytes = Vec::new();
    for (i, m) in &monitors {
        let ((_, t0), (d0, b0)) = before[i];
        let ((r, t1), (d1, b1)) = (usage(m.child.id()), counters(&m.dir));
        rss.push(r as f64 / 1024.0);
        cpu.push((t1 - t0) as f64 / ticks_per_second / window.as_secs_f64() * 100.0);
        datagrams.push((d1 - d0) as f64 / window.as_secs_f64());
        bytes.push((b1 - b0) as f64 / window.as_secs_f64());
    }
    let max = |v: &[f64]| v.iter().cloned().fold(0.0, f64::max);

    // Detection: a monitor dies, the coordinator drains it.
    let rounds = run_mode::repeat(5);
    let mut latencies = Vec::new();
    for round in 0..rounds {
        let victim = 1 + (round * 7) % (N - 1);
        while lines.try_recv().is_ok() {}
        drop(monitors.remove(&victim));
        let killed = Instant::now();
        let wanted = format!("STEP drain {}", name(victim));
        let deadline = killed + Duration::from_secs(30);
        let mut drained = None;
        let mut about = Vec::new();
        while Instant::now() < deadline && drained.is_none() {
            if let Ok((i, at, line)) = lines.recv_timeout(Duration::from_millis(200)) {
                if line.contains(&wanted) {
                    drained = Some(at.duration_since(killed));
                } else if line.contains(&name(victim)) || line.contains("rror") {
                    about.push(format!("{}: {line}", name(i)));
                }
            }
        }
        let latency = drained.unwrap_or_else(|| {
            panic!(
                "no drain of {} within 30 s; what the monitors said of it:\n{}",
                name(victim),
                about.join("\n")
            )
        });
        latencies.push(latency.as_secs_f64());
        monitors.insert(victim, start(victim, &dirs[victim], &send));
        wait_all_alive(&monitors, Duration::from_secs(60));
    }
    drop(monitors);
    let _ = std::fs::remove_dir_all(&root);

    println!("monitor_fleet: {N} monitors on loopback, release build, {window:?} steady state, {rounds} kill rounds");
    println!("| measure (per monitor) | median | max | goal |");
    println!("|---|---|---|---|");
    println!(
        "| resident memory (MB) | {:.1} | {:.1} | <= 20 |",
        median(rss.clone()),
        max(&rss)
    );
    println!(
        "| CPU (% of one core) | {:.2} | {:.2} | < 1 |",
        median(cpu.clone()),
        max(&cpu)
    );
    println!(
        "| datagrams/s (in + out) | {:.0} | {:.0} | |",
        median(datagrams.clone()),
        max(&datagrams)
    );
    println!(
        "| bytes/s (in + out) | {:.0} | {:.0} | |",
        median(bytes.clone()),
        max(&bytes)
    );
    println!("false verdicts during the steady state (lines of any monitor): {false_verdicts}");
    let mut sorted = latencies.clone();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "death -> drain (s): median {:.2}, max {:.2} over {rounds} rounds; memberlist defaults ~6-9 s, Kubernetes node lifecycle ~50 s",
        median(latencies),
        sorted.last().copied().unwrap_or(0.0)
    );
}
