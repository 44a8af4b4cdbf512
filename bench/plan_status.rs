//! Benchmark: `infra plan --json` and `infra status --json` on a large fleet, against merely
//! parsing the same state file with serde_json.
//!
//!     cargo bench --bench plan_status            # 500 projects x 3 environments x 6 services
//!     cargo bench --bench plan_status -- 100     # another number of projects
//!     cargo bench --bench plan_status -- 500 --out DIR   # only write the fleet to DIR
//!
//! The fleet: a master plus 2 web droplets per project (1,001 droplets), 3 environments, 4 web
//! services and 2 workers per project, with the runtime state filled in (every droplet with an
//! IP and monitors, every service placed with its port), as after a converged orchestrate.
//! Prints medians of several runs and peak memory (GNU time's maximum resident set size).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

mod large_fleet;
mod run_mode;

use large_fleet::generate;

const RUNS: usize = 11;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn time_command(bin: &str, dir: &Path, args: &[&str]) -> (Duration, u64) {
    let mut samples = Vec::new();
    let mut peak_kb = 0;
    for _ in 0..run_mode::repeat(RUNS) {
        let start = Instant::now();
        let out = Command::new("/usr/bin/time")
            .args(["-f", "%M"])
            .arg(bin)
            .args(args)
            .current_dir(dir)
            .output()
            .expect("GNU time is installed (apt-get install time)");
        samples.push(start.elapsed());
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        let kb: u64 = stderr
            .lines()
            .last()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or(0);
        peak_kb = peak_kb.max(kb);
    }
    (median(samples), peak_kb)
}

fn main() {
    let projects: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(500);
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--parse-only") {
        let text = std::fs::read_to_string(&args[i + 1]).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        std::hint::black_box(&v);
        // Exit without freeing, as infra does.
        std::process::exit(0);
    }
    // `-- --out DIR` only writes the fleet to DIR, for profiling by hand.
    if let Some(i) = args.iter().position(|a| a == "--out") {
        let out = Path::new(&args[i + 1]);
        generate(out, projects);
        println!("wrote {}", out.display());
        return;
    }
    if !Path::new("/usr/bin/time").exists() {
        run_mode::skip(
            "plan_status",
            "GNU time measures peak memory and is not installed (apt-get install time)",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), projects);
    let state_path = dir.path().join("config/infrastructure.json");
    let text = std::fs::read_to_string(&state_path).unwrap();
    let value: Value = serde_json::from_str(&text).unwrap();
    let droplets = value["droplets"].as_object().unwrap().len();
    let services: usize = value["projects"]
        .as_object()
        .unwrap()
        .values()
        .map(|s| s.as_object().unwrap().len())
        .sum();

    let parse_in_process = median(
        (0..run_mode::repeat(RUNS))
            .map(|_| {
                let start = Instant::now();
                let text = std::fs::read_to_string(&state_path).unwrap();
                let v: Value = serde_json::from_str(&text).unwrap();
                std::hint::black_box(v);
                start.elapsed()
            })
            .collect(),
    );
    // The baseline infra is held to: a process that only reads and parses the file, timed
    // the same way as infra's own runs (this benchmark binary, re-run with `--parse-only`).
    let me = std::env::current_exe().unwrap();
    let state_arg = state_path.to_str().unwrap();
    let (parse, parse_kb) = time_command(
        me.to_str().unwrap(),
        dir.path(),
        &["--parse-only", state_arg],
    );
    let bin = env!("CARGO_BIN_EXE_infra");
    let (noop, noop_kb) = time_command(bin, dir.path(), &["--version"]);
    println!(
        "fleet: {projects} projects, {droplets} droplets, {services} services; state file {:.1} MB",
        text.len() as f64 / 1e6
    );
    println!(
        "| what | median of {} | ratio to parse | peak RSS |",
        run_mode::repeat(RUNS)
    );
    println!("|---|---|---|---|");
    println!(
        "| read + serde_json parse, in a process of its own | {:.1} ms | 1.0 | {:.1} MB |",
        parse.as_secs_f64() * 1e3,
        parse_kb as f64 / 1024.0
    );
    println!(
        "| read + serde_json parse, in process (warm) | {:.1} ms | {:.2} | - |",
        parse_in_process.as_secs_f64() * 1e3,
        parse_in_process.as_secs_f64() / parse.as_secs_f64()
    );
    println!(
        "| `infra --version` (process start) | {:.1} ms | {:.2} | {:.1} MB |",
        noop.as_secs_f64() * 1e3,
        noop.as_secs_f64() / parse.as_secs_f64(),
        noop_kb as f64 / 1024.0
    );
    for args in [
        &["plan", "--json", "--offline"][..],
        &["plan", "--json", "--offline", "--force"][..],
        &["status", "--json"][..],
    ] {
        let (t, kb) = time_command(bin, dir.path(), args);
        println!(
            "| `infra {}` | {:.1} ms | {:.2} | {:.1} MB |",
            args.join(" "),
            t.as_secs_f64() * 1e3,
            t.as_secs_f64() / parse.as_secs_f64(),
            kb as f64 / 1024.0
        );
    }
}
