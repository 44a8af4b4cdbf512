//! Orchestrating the `infra init` spec (a master and three web droplets) on the sandbox cloud:
//! wall time split into API calls, waiting for droplets to boot and infra's own work (from the
//! `orchestrated` event of `infra --json orchestrate`); API requests per droplet created (from
//! the sandbox's request log); and a no-change re-run.
//!
//!     cargo bench --bench orchestrate
//!
//! Needs Docker and the droplet image (`.ci/prepare-sandbox`); without Docker it says so and
//! exits. Each round starts from a fresh sandbox and the `init` state.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

mod run_mode;
mod sandbox_down;

const BIN: &str = env!("CARGO_BIN_EXE_infra");
const ROUNDS: usize = 3;
const RERUNS: usize = 7;

fn infra(dir: &Path, args: &[&str]) -> (String, Duration) {
    let start = Instant::now();
    let out = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_remove("DO_TOKEN")
        .env_remove("DO_API_URL")
        .env_remove("ADMIN_IP")
        .output()
        .expect("infra runs");
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "infra {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    (String::from_utf8_lossy(&out.stdout).into_owned(), took)
}

fn requests(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("config/.infra/sandbox/server.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(" -> "))
        .map(str::to_owned)
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    if Command::new("docker")
        .arg("info")
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        run_mode::skip("orchestrate", "Docker is not usable here");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    // Whatever happens, no sandbox is left running.
    let _down = sandbox_down::Down(dir);
    infra(dir, &["init"]);
    without_monitors(dir);
    let initial = std::fs::read(dir.join("config/infrastructure.json")).unwrap();
    let (mut total, mut api, mut boot, mut own, mut per_droplet) =
        (vec![], vec![], vec![], vec![], vec![]);
    let mut reruns = vec![];
    let (rounds, reruns_each) = (run_mode::repeat(ROUNDS), run_mode::repeat(RERUNS));
    for _ in 0..rounds {
        std::fs::write(dir.join("config/infrastructure.json"), &initial).unwrap();
        infra(dir, &["sandbox", "up"]);
        let before = requests(dir).len();
        let (out, took) = infra(dir, &["--json", "orchestrate"]);
        let after = requests(dir);
        let event: serde_json::Value = out
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["event"] == "orchestrated")
            .expect("an orchestrated event");
        let created = out
            .lines()
            .filter(|l| l.contains("\"droplet_ready\""))
            .count();
        let made = &after[before..];
        // The constant part: the key (list, create) and the firewalls (list, two creates).
        let per = |prefix: &str| made.iter().filter(|l| l.contains(prefix)).count();
        let droplet_requests = per("/v2/droplets");
        total.push(took.as_secs_f64() * 1e3);
        api.push(event["api_ms"].as_f64().unwrap());
        boot.push(event["boot_wait_ms"].as_f64().unwrap());
        own.push(
            took.as_secs_f64() * 1e3
                - event["api_ms"].as_f64().unwrap()
                - event["boot_wait_ms"].as_f64().unwrap(),
        );
        per_droplet.push(droplet_requests as f64 / created as f64);
        println!(
            "round: {created} droplets in {:.0} ms; {} requests ({} on /v2/droplets, {} others)",
            took.as_secs_f64() * 1e3,
            made.len(),
            droplet_requests,
            made.len() - droplet_requests
        );
        for _ in 0..reruns_each {
            let before = requests(dir).len();
            let (out, took) = infra(dir, &["orchestrate"]);
            assert!(out.contains("No changes"), "{out}");
            let mutating = requests(dir)[before..]
                .iter()
                .filter(|l| !l.contains("GET "))
                .count();
            assert_eq!(mutating, 0, "a no-change re-run changed something");
            reruns.push(took.as_secs_f64() * 1e3);
        }
        infra(dir, &["sandbox", "down"]);
    }
    let (t, a, b, o) = (median(total), median(api), median(boot), median(own));
    println!("| what | median of {rounds} |");
    println!("|---|---|");
    println!("| orchestrate the init spec (4 droplets), wall | {t:.0} ms |");
    println!(
        "| - waiting on the API | {a:.0} ms ({:.0}%) |",
        a / t * 100.0
    );
    println!(
        "| - waiting for droplets to boot | {b:.0} ms ({:.0}%) |",
        b / t * 100.0
    );
    println!(
        "| - infra's own work (process start, playbook, state saves) | {o:.0} ms ({:.1}%) |",
        o / t * 100.0
    );
    println!(
        "| requests on /v2/droplets per droplet created | {:.2} |",
        median(per_droplet)
    );
    println!(
        "| no-change re-run (median of {}) | {:.0} ms |",
        rounds * reruns_each,
        median(reruns)
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
