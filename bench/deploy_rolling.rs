//! A rolling deploy under load: the sample app (tests/fixtures/sample_app) on a 2-droplet
//! project of the sandbox, `wrk` sending requests through the master's nginx before and during
//! a redeploy of a one-file change; failed requests and p99 latency during the roll against
//! before it; the deploy's wall time split into checkout, build, push, pull, start, health gate
//! and switch (from the times its `--json` events arrive); and a no-change redeploy.
//!
//!     cargo bench --bench deploy_rolling
//!
//! Needs Docker, the droplet image and python:3.11-slim (`.ci/prepare-sandbox`) and `wrk`
//! (`apt-get install wrk`). `INFRA_BENCH_QUICK=1` measures one redeploy and one no-change
//! redeploy with a short load.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod run_mode;
mod sandbox_down;

const BIN: &str = env!("CARGO_BIN_EXE_infra");
const SECRETS: &[(&str, &str)] = &[
    ("HOSTOMATIC_UAT_DB_PASSWORD", "bench-secret"),
    ("HOSTOMATIC_UAT_STRIPE_KEY", "bench-secret"),
    ("HOSTOMATIC_UAT_STRIPE_PUBLISHABLE_KEY", "bench-secret"),
    ("HOSTOMATIC_UAT_SENDGRID_API_KEY", "bench-secret"),
    ("HOSTOMATIC_UAT_REDIS_PASSWORD", "bench-secret"),
];

fn infra_command(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .current_dir(dir)
        .env_remove("DO_TOKEN")
        .env_remove("DO_API_URL")
        .env_remove("ADMIN_IP");
    for (k, v) in SECRETS {
        command.env(k, v);
    }
    command
}

fn infra(dir: &Path, args: &[&str]) -> (String, Duration) {
    let start = Instant::now();
    let out = infra_command(dir, args).output().expect("infra runs");
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "infra {}: {}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (String::from_utf8_lossy(&out.stdout).into_owned(), took)
}

fn git(dir: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=bench",
            "-c",
            "user.email=bench@example.com",
        ])
        .args(args)
        .status()
        .unwrap()
        .success();
    assert!(ok, "git {args:?}");
}

/// `infra --json deploy-uat hostomatic`, each event with the time it arrived.
fn timed_deploy(dir: &Path) -> (Vec<(f64, serde_json::Value)>, f64) {
    let start = Instant::now();
    let mut child = infra_command(dir, &["--json", "deploy-uat", "hostomatic"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut events = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
            events.push((start.elapsed().as_secs_f64(), v));
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "deploy failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (events, start.elapsed().as_secs_f64())
}

/// The deploy's phases, in seconds, from when its events arrived.
fn phases(events: &[(f64, serde_json::Value)], total: f64) -> Vec<(&'static str, f64)> {
    let last = |pred: &dyn Fn(&serde_json::Value) -> bool| {
        events
            .iter()
            .filter(|(_, v)| pred(v))
            .map(|(t, _)| *t)
            .fold(0.0, f64::max)
    };
    let sum = |event: &str| -> f64 {
        events
            .iter()
            .filter(|(_, v)| v["event"] == event)
            .filter_map(|(_, v)| v["seconds"].as_f64())
            .sum()
    };
    let checkout = last(&|v| v["event"] == "checkout");
    let built = last(&|v| v["kind"] == "build_image");
    let pushed = last(&|v| v["kind"] == "push_image");
    let pulled = last(&|v| v["event"] == "pulled");
    let (start, gate) = (sum("started"), sum("healthy"));
    let rolled = last(&|v| v["kind"] == "release") - pulled;
    vec![
        ("checkout", checkout),
        ("build", built - checkout),
        ("bootstrap + push", pushed - built),
        ("pull (all droplets at once)", pulled - pushed),
        ("start containers", start),
        ("health gate", gate),
        (
            "switch nginx + drain + stop old",
            (rolled - start - gate).max(0.0),
        ),
        ("total", total),
    ]
}

/// wrk's summary: requests, failures, p99.
struct Load {
    requests: u64,
    rate: f64,
    non_2xx: u64,
    socket_errors: String,
    p99_ms: f64,
}

fn wrk(ip: &str, seconds: u64) -> Child {
    Command::new("wrk")
        .args(["-t2", "-c16", "--latency", "-d"])
        .arg(format!("{seconds}s"))
        .args(["-H", "Host: uat.hostomatic.internal"])
        .arg(format!("http://{ip}/api/"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wrk runs")
}

fn parse_wrk(text: &str) -> Load {
    let word = |line: &str, n: usize| line.split_whitespace().nth(n).unwrap_or("0").to_string();
    let ms = |s: &str| {
        if let Some(v) = s.strip_suffix("ms") {
            v.parse::<f64>().unwrap_or(0.0)
        } else if let Some(v) = s.strip_suffix("us") {
            v.parse::<f64>().unwrap_or(0.0) / 1000.0
        } else if let Some(v) = s.strip_suffix('s') {
            v.parse::<f64>().unwrap_or(0.0) * 1000.0
        } else {
            0.0
        }
    };
    let mut load = Load {
        requests: 0,
        rate: 0.0,
        non_2xx: 0,
        socket_errors: "none".into(),
        p99_ms: 0.0,
    };
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with("99%") {
            load.p99_ms = ms(&word(t, 1));
        } else if t.contains("requests in") {
            load.requests = word(t, 0).parse().unwrap_or(0);
        } else if t.starts_with("Requests/sec:") {
            load.rate = word(t, 1).parse().unwrap_or(0.0);
        } else if t.starts_with("Non-2xx or 3xx responses:") {
            load.non_2xx = word(t, 4).parse().unwrap_or(0);
        } else if t.starts_with("Socket errors:") {
            load.socket_errors = t.trim_start_matches("Socket errors:").trim().to_string();
        }
    }
    load
}

fn finish(child: Child) -> Load {
    let out = child.wait_with_output().unwrap();
    parse_wrk(&String::from_utf8_lossy(&out.stdout))
}

fn main() {
    if !Command::new("docker")
        .arg("info")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        run_mode::skip("deploy_rolling", "Docker is not usable here");
        return;
    }
    if Command::new("wrk").arg("--version").output().is_err() {
        run_mode::skip(
            "deploy_rolling",
            "wrk is not installed (apt-get install wrk)",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let _down = sandbox_down::Down(dir);
    infra(dir, &["init"]);
    without_monitors(dir);
    // The sample app as its own repository, which the default deployment config describes.
    let app = dir.join("app");
    std::fs::create_dir_all(&app).unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sample_app");
    assert!(Command::new("cp")
        .arg("-r")
        .arg(format!("{}/.", fixture.display()))
        .arg(&app)
        .status()
        .unwrap()
        .success());
    git(&app, &["init", "--quiet", "--initial-branch=main"]);
    git(&app, &["add", "--all"]);
    git(&app, &["commit", "--quiet", "-m", "the sample app"]);
    let path = dir.join("config/deployment_config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    config["projects"]["hostomatic"]["repo"] = "app".into();
    // Only the 2-droplet project: digitalpixo is left out of the spec below.
    std::fs::write(&path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
    std::fs::write(
        dir.join("small.rhai"),
        "remove_project_spec(\"digitalpixo\");\n",
    )
    .unwrap();
    infra(dir, &["run", "small.rhai"]);
    infra(dir, &["sandbox", "up"]);
    infra(dir, &["orchestrate"]);
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("config/infrastructure.json")).unwrap(),
    )
    .unwrap();
    let master = state["droplets"]["master"]["ip"]
        .as_str()
        .unwrap()
        .to_string();

    let (_, cold) = infra(dir, &["deploy-uat", "hostomatic"]);
    println!(
        "first deploy (cold: base layers pushed and pulled): {:.1} s",
        cold.as_secs_f64()
    );

    let rounds = run_mode::repeat(3);
    let load_seconds = if run_mode::quick() { 5 } else { 15 };
    let mut results = Vec::new();
    for round in 1..=rounds {
        let before = finish(wrk(&master, load_seconds));
        let file = app.join("backend/app.py");
        let mut text = std::fs::read_to_string(&file).unwrap();
        text.push_str(&format!("# bench round {round}\n"));
        std::fs::write(&file, text).unwrap();
        git(&app, &["commit", "--quiet", "-am", "bench: one file"]);
        // wrk runs longer than the deploy and is stopped (SIGINT prints its summary) after it.
        let during = wrk(&master, 600);
        let (events, total) = timed_deploy(dir);
        unsafe {
            libc::kill(during.id() as i32, libc::SIGINT);
        }
        let during = finish(during);
        let split = phases(&events, total);
        println!(
            "round {round}: before {} req ({:.0}/s, p99 {:.1} ms), during {} req ({:.0}/s, p99 {:.1} ms), non-2xx {}, socket errors {}; deploy {total:.1} s",
            before.requests, before.rate, before.p99_ms, during.requests, during.rate, during.p99_ms, during.non_2xx, during.socket_errors
        );
        results.push((before, during, split));
    }
    let mut no_change = Vec::new();
    for _ in 0..run_mode::repeat(5) {
        let (out, took) = infra(dir, &["deploy-uat", "hostomatic"]);
        assert!(out.contains("already runs"), "{out}");
        no_change.push(took.as_secs_f64());
    }
    no_change.sort_by(|a, b| a.partial_cmp(b).unwrap());

    let median = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    println!("\n| under load through nginx (wrk, 16 connections) | median of {rounds} |");
    println!("|---|---|");
    println!(
        "| requests/s before the roll | {:.0} |",
        median(results.iter().map(|r| r.0.rate).collect())
    );
    println!(
        "| requests/s during the roll | {:.0} |",
        median(results.iter().map(|r| r.1.rate).collect())
    );
    println!(
        "| p99 before | {:.1} ms |",
        median(results.iter().map(|r| r.0.p99_ms).collect())
    );
    println!(
        "| p99 during | {:.1} ms |",
        median(results.iter().map(|r| r.1.p99_ms).collect())
    );
    println!(
        "| non-2xx responses during the roll (all rounds) | {} |",
        results.iter().map(|r| r.1.non_2xx).sum::<u64>()
    );
    for (i, r) in results.iter().enumerate() {
        println!("| socket errors, round {} | {} |", i + 1, r.1.socket_errors);
    }
    println!("\n| deploy phase (one-file change) | median of {rounds} |");
    println!("|---|---|");
    for (i, (name, _)) in results[0].2.iter().enumerate() {
        println!(
            "| {name} | {:.1} s |",
            median(results.iter().map(|r| r.2[i].1).collect())
        );
    }
    println!(
        "\nno-change redeploy (same commit): median {:.2} s of {} (goal < 2 s)",
        no_change[no_change.len() / 2],
        no_change.len()
    );
}

/// Turns the self-healing monitors off in the project's spec: this benchmark measures
/// without them (bench/monitor_fleet.rs measures the monitors).
fn without_monitors(dir: &Path) {
    let path = dir.join("config/infrastructure.json");
    let mut state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    state["infrastructure_spec"]["monitors"] = false.into();
    std::fs::write(&path, serde_json::to_string_pretty(&state).unwrap()).unwrap();
}
