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

use serde_json::{json, Map, Value};

mod run_mode;

const RUNS: usize = 11;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn generate(dir: &Path, projects: usize) {
    let config = dir.join("config");
    std::fs::create_dir_all(&config).unwrap();
    let mut spec_projects = Map::new();
    let mut deploy_projects = Map::new();
    for p in 0..projects {
        let name = format!("project{p:04}");
        spec_projects.insert(
            name.clone(),
            json!({"environments": ["prod", "uat", "test"], "web_droplets": 2, "web_droplet_spec": "s-1vcpu-1gb"}),
        );
        deploy_projects.insert(
            name,
            json!({"services": {
                "backend": {"containerfile_path": "backend/Dockerfile", "secrets": ["db_password"]},
                "frontend": {"containerfile_path": "frontend/Dockerfile"},
                "api": {"containerfile_path": "api/Dockerfile"},
                "admin": {"containerfile_path": "admin/Dockerfile", "base_port": 11000},
                "worker_email": {"type": "worker", "containerfile_path": "workers/Dockerfile", "command": "python email.py"},
                "scheduler": {"type": "worker", "containerfile_path": "scheduler/Dockerfile", "command": "python cron.py"}
            }}),
        );
    }
    let spec = json!({
        "droplets": {"master": {"size": "s-2vcpu-4gb", "region": "lon1", "role": "master"}},
        "projects": spec_projects,
    });
    std::fs::write(
        config.join("deployment_config.json"),
        serde_json::to_string_pretty(
            &json!({"deployment_platform": "docker", "projects": deploy_projects}),
        )
        .unwrap(),
    )
    .unwrap();
    let state_path = config.join("infrastructure.json");
    std::fs::write(
        &state_path,
        serde_json::to_string_pretty(&json!({"infrastructure_spec": spec})).unwrap(),
    )
    .unwrap();

    // Fill in the runtime state as a converged orchestrate would.
    let project = infra::project::Project::new(dir, Path::new("config"));
    let state = infra::state::State::load(&state_path, "config/infrastructure.json").unwrap();
    let loaded = infra::config::load(&project, state).unwrap();
    let droplets = infra::state::placement::required_droplets(&loaded.spec);
    let ring = infra::state::placement::monitoring_ring(droplets.keys());
    let mut state = infra::state::State::clone(&loaded.state);
    for (i, (name, d)) in droplets.iter().enumerate() {
        let ip = format!("10.{}.{}.{}", 1 + i / 65536, (i / 256) % 256, i % 256);
        state.add_droplet(
            name,
            Some(&ip),
            &d.size,
            &d.region,
            &d.role,
            &ring[name],
            d.project.as_deref(),
        );
    }
    for (key, services) in &loaded.services {
        for (service, record) in services {
            state.add_project_service(key, service, record);
        }
    }
    std::fs::write(&state_path, state.document().render()).unwrap();
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
        &["plan", "--json"][..],
        &["plan", "--json", "--force"][..],
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
