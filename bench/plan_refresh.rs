//! Benchmark: `infra plan` with its refresh (the cloud's droplets listed and compared with the
//! state) against `infra plan --offline`, on the 1,001-droplet fleet of `plan_status`, against a
//! sandbox that holds those droplets as records (`infra sandbox up --records-only`: no
//! containers, so a fleet this size fits on one machine).
//!
//!     cargo bench --bench plan_refresh            # 500 projects: 1,001 droplets
//!     cargo bench --bench plan_refresh -- 100     # another number of projects
//!
//! Goals (issue 7): at most ceil(droplets / 200) list requests per plan (one paged listing),
//! and plan within 4x of `plan --offline`. Prints medians; the plan must find nothing to change
//! (the state records exactly what the cloud holds), or the run fails.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use infra::cloud::{Client, DropletMultiCreate, DropletSpec, ImageRef, RetryPolicy, Token};
use serde_json::{json, Value};

mod large_fleet;
mod run_mode;
mod sandbox_down;

const BIN: &str = env!("CARGO_BIN_EXE_infra");
const RUNS: usize = 11;

fn infra(dir: &Path, args: &[&str]) -> std::process::Output {
    let out = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_remove("DO_TOKEN")
        .env_remove("DO_API_URL")
        .output()
        .expect("infra runs");
    assert!(
        out.status.success(),
        "infra {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn list_requests(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("config/.infra/sandbox/server.log"))
        .unwrap_or_default()
        .lines()
        // The log names the path without its query: every droplet listing is one of these.
        .filter(|l| l.starts_with("GET /v2/droplets -> "))
        .count()
}

#[tokio::main]
async fn main() {
    let projects: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(500);
    let docker = Command::new("docker").arg("version").output();
    if !docker.is_ok_and(|o| o.status.success()) {
        run_mode::skip(
            "plan_refresh",
            "Docker is not usable here (the sandbox needs it)",
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    large_fleet::generate(dir, projects);
    infra(dir, &["sandbox", "up", "--records-only", "--spares", "0"]);
    let _down = sandbox_down::Down(dir);

    // The cloud holds every droplet of the state, tagged as infra tags them.
    let env = std::fs::read_to_string(dir.join("config/.infra/sandbox/env")).unwrap();
    let var = |name: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
            .unwrap()
            .to_string()
    };
    let ca = std::fs::read(dir.join("config/.infra/sandbox/ca.pem")).unwrap();
    let client = Client::trusting(
        &var("DO_API_URL"),
        Token::new(var("DO_TOKEN")).unwrap(),
        RetryPolicy::default(),
        &ca,
    )
    .unwrap();
    let state_path = dir.join("config/infrastructure.json");
    let mut state: Value =
        serde_json::from_str(&std::fs::read_to_string(&state_path).unwrap()).unwrap();
    // Each droplet made with the size the state records, ten names a request.
    let mut by_size: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (name, d) in state["droplets"].as_object().unwrap() {
        let size = d["size"].as_str().unwrap().to_string();
        by_size.entry(size).or_default().push(name.clone());
    }
    let droplets: usize = by_size.values().map(Vec::len).sum();
    let started = Instant::now();
    for (size, names) in &by_size {
        for chunk in names.chunks(DropletMultiCreate::MAX_NAMES) {
            let mut spec = DropletSpec::new(size.as_str(), ImageRef::Slug("debian-12-x64".into()));
            spec.region = Some("lon1".into());
            spec.tags = vec!["infra".into()];
            client
                .create_droplets(&DropletMultiCreate {
                    names: chunk.to_vec(),
                    spec,
                })
                .await
                .expect("create the records");
        }
    }
    let created = started.elapsed();
    // The state records what the cloud made: ids, addresses, sizes.
    for d in client.list_droplets_by_tag("infra").await.unwrap() {
        let record = &mut state["droplets"][&d.name];
        record["id"] = json!(d.id);
        record["ip"] = json!(d.public_ipv4().unwrap().to_string());
        record["status"] = json!("active");
    }
    std::fs::write(&state_path, serde_json::to_string_pretty(&state).unwrap()).unwrap();

    let offline = |dir: &Path| infra(dir, &["plan", "--json", "--offline"]);
    let refreshed = |dir: &Path| infra(dir, &["plan", "--json"]);
    // Both plans find nothing to change: the state is the truth about the cloud.
    for out in [offline(dir), refreshed(dir)] {
        let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            plan["changes"],
            json!([]),
            "the plan should be empty: {plan}"
        );
    }
    let before = list_requests(dir);
    refreshed(dir);
    let per_plan = list_requests(dir) - before;

    let time = |run: &dyn Fn(&Path) -> std::process::Output| {
        median(
            (0..run_mode::repeat(RUNS))
                .map(|_| {
                    let start = Instant::now();
                    run(dir);
                    start.elapsed()
                })
                .collect(),
        )
    };
    let offline_time = time(&offline);
    let refreshed_time = time(&refreshed);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "plan_refresh: {} droplets in the cloud (created as records in {:.1} s)",
        droplets,
        created.as_secs_f64()
    );
    println!(
        "  plan --offline --json   median {:>8.1} ms",
        ms(offline_time)
    );
    println!(
        "  plan --json (refresh)   median {:>8.1} ms   {:.2}x of offline (goal <= 4x)",
        ms(refreshed_time),
        refreshed_time.as_secs_f64() / offline_time.as_secs_f64()
    );
    println!(
        "  list requests per plan  {per_plan} (goal <= {})",
        droplets.div_ceil(200)
    );
    assert!(
        per_plan <= droplets.div_ceil(200),
        "{per_plan} list requests for {droplets} droplets"
    );
}
