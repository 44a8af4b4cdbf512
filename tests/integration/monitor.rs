//! Real `infra monitor` processes on this machine's loopback: each monitor of a three-droplet
//! fleet listens on its own 127.0.N.x address (the state's IPs), with its own project copy and
//! key, exactly as installed on droplets. A recovery.rhai of the test's records each step the
//! coordinator runs, so verdicts, fencing (one coordinator) and refutation are seen end to end
//! over real UDP; datagrams the test forges, tampers with or replays are dropped and counted.

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Running, Test};

const DROPLETS: &[&str] = &["master", "hostomatic-web1", "hostomatic-web2"];

/// The droplets' addresses in test `net`'s own corner of loopback (tests run at once).
fn address(net: u8, name: &str) -> String {
    let i = DROPLETS.iter().position(|n| *n == name).unwrap();
    format!("127.0.{net}.{}", 10 + i)
}

/// A recovery.rhai that only says which step ran where: the real one drives the cloud.
const RECORDING_PLAYBOOK: &str = r#"
fn drain(droplet) { print(`STEP drain ${droplet}`); }
fn check(droplet) { print(`STEP check ${droplet}`); }
fn recover(droplet) { print(`STEP recover ${droplet}`); }
fn restore(droplet) { print(`STEP restore ${droplet}`); }
"#;

fn state(net: u8) -> String {
    let droplets: Vec<String> = DROPLETS
        .iter()
        .map(|name| {
            let ip = address(net, name);
            let role = if *name == "master" { "master" } else { "web" };
            let project = if *name == "master" {
                String::new()
            } else {
                r#", "project": "hostomatic""#.to_string()
            };
            format!(
                r#""{name}": {{"ip": "{ip}", "size": "s-2vcpu-4gb", "region": "lon1", "role": "{role}"{project}}}"#
            )
        })
        .collect();
    format!(
        r#"{{
  "droplets": {{ {} }},
  "projects": {{}},
  "infrastructure_spec": {{
    "droplets": {{"master": {{"size": "s-2vcpu-4gb", "region": "lon1", "role": "master"}}}},
    "projects": {{"hostomatic": {{"environments": ["prod"], "web_droplets": 2, "web_droplet_spec": "s-2vcpu-4gb"}}}}
  }}
}}
"#,
        droplets.join(",\n    ")
    )
}

/// One project copy per droplet, as `install_monitors` leaves it: the state, the droplet's own
/// key and every peer's public key.
struct Fleet {
    net: u8,
    tests: BTreeMap<String, Test>,
}

impl Fleet {
    fn new(net: u8) -> Fleet {
        let keys: BTreeMap<String, ed25519_dalek::SigningKey> = DROPLETS
            .iter()
            .map(|n| {
                (
                    n.to_string(),
                    ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng),
                )
            })
            .collect();
        let public: BTreeMap<String, ed25519_dalek::VerifyingKey> = keys
            .iter()
            .map(|(n, k)| (n.clone(), k.verifying_key()))
            .collect();
        let mut tests = BTreeMap::new();
        for name in DROPLETS {
            let test = Test::new()
                .file("config/infrastructure.json", &state(net))
                .file("playbooks/recovery.rhai", RECORDING_PLAYBOOK)
                .file(
                    "config/.infra/monitor/peers.json",
                    &infra::monitor::keys::peers_json(&public),
                );
            infra::monitor::keys::write_secret(
                &test.path().join("config/.infra/monitor/key"),
                &keys[*name],
            )
            .unwrap();
            tests.insert(name.to_string(), test);
        }
        Fleet { net, tests }
    }

    fn start(&self, name: &str) -> Running {
        let ip = address(self.net, name);
        self.tests[name].spawn(["monitor", name, "--listen", &format!("{ip}:7947")])
    }

    fn status(&self, name: &str) -> Option<Value> {
        let path = self.tests[name]
            .path()
            .join("config/.infra/monitor/status.json");
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    }

    /// Waits until `check` holds for `name`'s report, or fails with the last one.
    fn wait_for(&self, name: &str, what: &str, within: Duration, check: impl Fn(&Value) -> bool) {
        let deadline = Instant::now() + within;
        let mut last = None;
        while Instant::now() < deadline {
            if let Some(status) = self.status(name) {
                if check(&status) {
                    return;
                }
                last = Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "{name}: no report {what} within {within:?}; last report: {}",
            serde_json::to_string_pretty(&last).unwrap()
        );
    }
}

fn peer_state(status: &Value, peer: &str) -> String {
    status["protocol"]["peers"]
        .as_array()
        .and_then(|peers| peers.iter().find(|p| p["name"] == peer))
        .map(|p| p["state"].as_str().unwrap_or("").to_string())
        .unwrap_or_default()
}

fn all_alive(status: &Value) -> bool {
    DROPLETS
        .iter()
        .filter(|n| status["droplet"] != **n)
        .all(|n| peer_state(status, n) == "alive")
}

fn steps(running: &Running) -> Vec<String> {
    running
        .seen
        .iter()
        .filter_map(|l| l.find("STEP ").map(|i| l[i..].to_string()))
        .collect()
}

/// Fails with its output if the monitor stopped (a monitor runs until it is killed).
fn still_running(running: &mut Running) {
    running.read_for(Duration::from_secs(1));
    if let Some(status) = running.child.try_wait().unwrap() {
        panic!(
            "the monitor exited ({status}):\n{}",
            running.seen.join("\n")
        );
    }
}

/// Reads the stderr lines that come within `d` into `seen`.
fn drain_lines(running: &mut Running, d: Duration) {
    running.read_for(d);
}

#[test]
fn monitors_agree_on_a_dead_peer_once_and_take_it_back_when_it_returns() {
    let fleet = Fleet::new(1);
    let mut master = fleet.start("master");
    let mut web1 = fleet.start("hostomatic-web1");
    let mut web2 = fleet.start("hostomatic-web2");
    for r in [&mut master, &mut web1, &mut web2] {
        still_running(r);
    }
    for name in DROPLETS {
        fleet.wait_for(
            name,
            "with every peer alive",
            Duration::from_secs(20),
            all_alive,
        );
    }

    // web2's monitor (and so, to its peers, web2) dies: the other two are a majority of three.
    let killed = Instant::now();
    web2.kill();
    for name in ["master", "hostomatic-web1"] {
        fleet.wait_for(
            name,
            "with a verdict on web2",
            Duration::from_secs(15),
            |s| peer_state(s, "hostomatic-web2") == "down",
        );
    }
    let seen_down = killed.elapsed();
    // Exactly one of them (the coordinator) drains it, once.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut drains = 0;
    while Instant::now() < deadline && drains == 0 {
        drain_lines(&mut master, Duration::from_millis(200));
        drain_lines(&mut web1, Duration::from_millis(200));
        drains = steps(&master)
            .iter()
            .chain(steps(&web1).iter())
            .filter(|s| s.as_str() == "STEP drain hostomatic-web2")
            .count();
    }
    drain_lines(&mut master, Duration::from_secs(2));
    drain_lines(&mut web1, Duration::from_secs(2));
    let all: Vec<String> = steps(&master).into_iter().chain(steps(&web1)).collect();
    assert_eq!(
        all.iter()
            .filter(|s| *s == "STEP drain hostomatic-web2")
            .count(),
        1,
        "one drain in {seen_down:?}; steps: {all:?}\nmaster:\n{}\nweb1:\n{}",
        master.seen.join("\n"),
        web1.seen.join("\n")
    );
    assert!(
        steps(&master).iter().all(|s| !s.contains("master"))
            && steps(&web1).iter().all(|s| !s.contains("web1")),
        "{all:?}"
    );

    // web2 comes back (a new incarnation): it is restored, and everyone sees it alive again.
    let mut web2 = fleet.start("hostomatic-web2");
    for name in DROPLETS {
        fleet.wait_for(
            name,
            "with every peer alive again",
            Duration::from_secs(20),
            all_alive,
        );
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut restored = false;
    while Instant::now() < deadline && !restored {
        drain_lines(&mut master, Duration::from_millis(200));
        drain_lines(&mut web1, Duration::from_millis(200));
        restored = steps(&master)
            .iter()
            .chain(steps(&web1).iter())
            .any(|s| s == "STEP restore hostomatic-web2");
    }
    assert!(
        restored,
        "no restore step; master:\n{}\nweb1:\n{}",
        master.seen.join("\n"),
        web1.seen.join("\n")
    );
    for r in [&mut master, &mut web1, &mut web2] {
        r.kill();
    }
}

#[test]
fn forged_tampered_and_redirected_datagrams_are_dropped_and_counted() {
    let fleet = Fleet::new(2);
    // web2 is the test itself: a socket on its address collects what master sends it.
    let spy = UdpSocket::bind(format!("{}:7947", address(2, "hostomatic-web2"))).unwrap();
    spy.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut master = fleet.start("master");
    let mut web1 = fleet.start("hostomatic-web1");
    fleet.wait_for("master", "seeing web1", Duration::from_secs(20), |s| {
        peer_state(s, "hostomatic-web1") == "alive"
    });
    let mut genuine = vec![0u8; 2048];
    let (n, _) = spy.recv_from(&mut genuine).expect("master probes web2");
    let genuine = genuine[..n].to_vec();
    let before = fleet.status("master").unwrap()["protocol"]["counters"].clone();

    let to_master = |bytes: &[u8]| {
        spy.send_to(bytes, format!("{}:7947", address(2, "master")))
            .unwrap();
    };
    // Forged: bytes that are no envelope, and a genuine envelope re-signed with a key that is
    // not the sender's.
    to_master(b"not a datagram at all");
    let mut resigned = genuine.clone();
    let len = resigned.len();
    let stranger = ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng);
    use ed25519_dalek::Signer;
    let signature = stranger.sign(&resigned[..len - 64]);
    resigned[len - 64..].copy_from_slice(&signature.to_bytes());
    to_master(&resigned);
    // Tampered: one byte of the body flipped.
    let mut tampered = genuine.clone();
    tampered[len - 70] ^= 0x01;
    to_master(&tampered);
    // Redirected: a genuine datagram meant for web2 (from master or web1), delivered to master
    // twice: misdirected (or, master's own, forged); never taken as news.
    to_master(&genuine);
    to_master(&genuine);
    std::thread::sleep(Duration::from_secs(2));
    let after = fleet.status("master").unwrap()["protocol"]["counters"].clone();
    let dropped = |c: &Value| -> u64 {
        c.as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.starts_with("dropped_"))
            .filter_map(|(_, v)| v.as_u64())
            .sum()
    };
    assert!(
        dropped(&after) >= dropped(&before) + 5,
        "5 bad datagrams, dropped before {before} after {after}"
    );
    // None was taken for web2 being alive: web2 (only the test's socket) stays suspected.
    fleet.wait_for("master", "with web2 down", Duration::from_secs(15), |s| {
        peer_state(s, "hostomatic-web2") != "alive"
    });
    master.kill();
    web1.kill();
}
