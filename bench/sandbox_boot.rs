//! How fast the sandbox makes droplets: the time from the create request to SSH answering on
//! the droplet, for 1 droplet and for 5 created at once (goal: 5 within 1.5x of 1); how many
//! requests the client made per droplet; and the memory of the sandbox holding 5 droplets.
//!
//!     cargo bench --bench sandbox_boot                  # with the default pool of 5 spares
//!     INFRA_BENCH_SPARES=0 cargo bench --bench sandbox_boot   # every droplet on demand
//!
//! The sandbox runs with `--spares 5` (or `INFRA_BENCH_SPARES`): it keeps that many droplets
//! booted, and a create from the base image turns spares into the droplets. Before each round
//! (timing and request-counting alike) the bench waits until the pool is full again
//! (`GET /sandbox/spares`), so every round measures creates with a warm pool, as a user who
//! creates droplets now and then sees them; creating more than the pool holds at once, or again
//! before it refilled, boots the rest on demand.
//!
//! Needs Docker and the droplet image (`.ci/prepare-sandbox` builds it); without Docker it
//! prints a notice and exits. The client is infra's own DigitalOcean client: it creates the
//! droplets (one request for all of them), polls the list of the run's droplets (by tag) until
//! all are active, then connects to each one's sshd. Timing rounds poll every 100 ms; a last
//! round per case polls once a second, as a playbook would, and counts the requests.
//! (Probing sshd before the droplet is active would measure the machine's ARP retry timer,
//! not the sandbox: a first ARP request for an address not up yet is retried after a second.)

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use infra::cloud::{
    Client, DropletCreate, DropletMultiCreate, DropletSpec, DropletStatus, RetryPolicy,
    SshKeyCreate, SshKeyRef, Token,
};

mod run_mode;

const BIN: &str = env!("CARGO_BIN_EXE_infra");
const ROUNDS: usize = 3;
/// How often the timing rounds poll, and how often the request-counting round does.
const FAST_POLL: Duration = Duration::from_millis(100);
const PLAYBOOK_POLL: Duration = Duration::from_secs(1);
const LIMIT: Duration = Duration::from_secs(120);

fn main() {
    let docker = Command::new("docker").arg("version").output();
    if !docker.is_ok_and(|o| o.status.success()) {
        run_mode::skip("sandbox_boot", "Docker is not usable here");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let infra = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .current_dir(dir.path())
            .output()
            .expect("run infra");
        assert!(
            out.status.success(),
            "infra {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    infra(&["init"]);
    let spares = std::env::var("INFRA_BENCH_SPARES").unwrap_or_else(|_| "5".into());
    let exports = infra(&["sandbox", "up", "--spares", &spares]);
    let field = |name: &str| {
        exports
            .split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .expect("export line")
            .to_owned()
    };
    let (url, token) = (field("DO_API_URL="), field("DO_TOKEN="));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runtime.block_on(run(dir.path(), &url, &token))
    }));
    infra(&["sandbox", "down"]);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

struct Round {
    /// Create request to the last droplet's sshd answering.
    ssh_all: Duration,
    /// Create request to a droplet listed active, averaged over the droplets.
    active_mean: Duration,
}

async fn run(project: &Path, url: &str, token: &str) {
    // The sandbox serves HTTPS with the project's own CA.
    let ca = std::fs::read(project.join("config/.infra/sandbox/ca.pem")).unwrap();
    let client =
        Client::trusting(url, Token::new(token).unwrap(), RetryPolicy::default(), &ca).unwrap();
    let public_key =
        std::fs::read_to_string(project.join("config/.infra/infrastructure_key.pub")).unwrap();
    let key = client
        .create_ssh_key(&SshKeyCreate {
            name: "bench".into(),
            public_key,
        })
        .await
        .unwrap();
    let log = project.join("config/.infra/sandbox/server.log");
    let server_pid = std::fs::read_to_string(project.join("config/.infra/sandbox/server.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["pid"].as_u64())
        .expect("server pid");
    let sandbox_id = std::fs::read_to_string(project.join("config/.infra/sandbox/state.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["sandbox_id"].as_str().map(str::to_owned))
        .expect("sandbox id");

    let spares: u64 = std::env::var("INFRA_BENCH_SPARES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    println!("spares kept booted: {spares} (each round starts with the pool full)");
    println!();
    let rounds_each = run_mode::repeat(ROUNDS);
    println!("| droplets at once | create → SSH answering, all (median of {rounds_each}) | runs | create → active, mean per droplet | requests per droplet (1 s polls) |");
    println!("|---|---|---|---|---|");
    let mut memory = None;
    let mut medians = Vec::new();
    for count in [1usize, 5] {
        let mut rounds = Vec::new();
        for round in 0..rounds_each {
            let tag = format!("bench-{count}-{round}");
            wait_pool(&ca, url, token, spares).await;
            rounds.push(create_and_wait(&client, key.id, count, &tag, FAST_POLL).await);
            if count == 5 && round == rounds_each - 1 {
                memory = Some(measure_memory(project, server_pid, &sandbox_id));
            }
            client.delete_droplets_by_tag(&tag).await.unwrap();
        }
        let tag = format!("bench-{count}-requests");
        wait_pool(&ca, url, token, spares).await;
        let requests_before = log_lines(&log);
        create_and_wait(&client, key.id, count, &tag, PLAYBOOK_POLL).await;
        let requests = log_lines(&log) - requests_before;
        client.delete_droplets_by_tag(&tag).await.unwrap();
        rounds.sort_by_key(|r| r.ssh_all);
        let median = &rounds[rounds_each / 2];
        println!(
            "| {count} | {:.2} s | {} | {:.2} s | {:.1} |",
            median.ssh_all.as_secs_f64(),
            rounds
                .iter()
                .map(|r| format!("{:.2}", r.ssh_all.as_secs_f64()))
                .collect::<Vec<_>>()
                .join(", "),
            median.active_mean.as_secs_f64(),
            requests as f64 / count as f64
        );
        medians.push(median.ssh_all);
    }
    println!();
    println!(
        "5 at once / 1: {:.2}x (goal: at most 1.5x)",
        medians[1].as_secs_f64() / medians[0].as_secs_f64()
    );
    if let Some((server, droplets, spare_memory)) = memory {
        println!(
            "memory with 5 droplets: server {:.1} MiB RSS, droplets {:.1} MiB in all ({:.1} MiB each), spares {:.1} MiB",
            server,
            droplets,
            droplets / 5.0,
            spare_memory
        );
    }
}

/// Waits until the sandbox's pool holds `spares` ready spares.
async fn wait_pool(ca: &[u8], url: &str, token: &str, spares: u64) {
    let http = reqwest::Client::builder()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(ca).unwrap())
        .build()
        .unwrap();
    let started = Instant::now();
    loop {
        let answer: Option<serde_json::Value> = match http
            .get(format!("{url}/sandbox/spares"))
            .bearer_auth(token)
            .send()
            .await
        {
            Ok(response) => response.json().await.ok(),
            Err(_) => None,
        };
        if answer.is_some_and(|a| a["spares"]["ready"].as_u64() == Some(spares)) {
            return;
        }
        assert!(
            started.elapsed() < LIMIT,
            "the pool never held {spares} spares"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn create_and_wait(
    client: &Client,
    key: u64,
    count: usize,
    tag: &str,
    poll: Duration,
) -> Round {
    let mut spec = DropletSpec::new("s-1vcpu-1gb", "debian-12-x64");
    spec.ssh_keys = vec![SshKeyRef::Id(key)];
    spec.tags = vec![tag.to_owned()];
    let started = Instant::now();
    if count == 1 {
        client
            .create_droplet(&DropletCreate {
                name: format!("{tag}-0"),
                spec,
            })
            .await
            .unwrap();
    } else {
        client
            .create_droplets(&DropletMultiCreate {
                names: (0..count).map(|i| format!("{tag}-{i}")).collect(),
                spec,
            })
            .await
            .unwrap();
    }
    let mut active: Vec<(u64, Duration)> = Vec::new();
    let mut answered: Vec<Duration> = Vec::new();
    while answered.len() < count {
        assert!(started.elapsed() < LIMIT, "droplets never answered SSH");
        for droplet in client.list_droplets(Some(tag)).await.unwrap() {
            if droplet.status != DropletStatus::Active || active.iter().any(|a| a.0 == droplet.id) {
                continue;
            }
            active.push((droplet.id, started.elapsed()));
            let ip = droplet.public_ipv4().unwrap();
            let answered_at = tokio::task::spawn_blocking(move || {
                while started.elapsed() < LIMIT {
                    if banner(ip) {
                        return started.elapsed();
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                panic!("{ip} is active but does not answer SSH");
            })
            .await
            .unwrap();
            answered.push(answered_at);
        }
        if answered.len() < count {
            tokio::time::sleep(poll).await;
        }
    }
    Round {
        ssh_all: answered.iter().copied().max().unwrap(),
        active_mean: active.iter().map(|a| a.1).sum::<Duration>() / count as u32,
    }
}

/// Whether sshd at `ip` sends its banner.
fn banner(ip: Ipv4Addr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&(ip, 22).into(), Duration::from_millis(200))
    else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut first = [0u8; 4];
    let ok = stream.read_exact(&mut first).is_ok() && &first == b"SSH-";
    let _ = stream.write_all(b"SSH-2.0-bench\r\n");
    ok
}

/// Requests the server has logged (one line each, after its start line).
fn log_lines(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(" -> "))
        .count()
}

/// The server's resident memory, the droplets' and the spares' memory as Docker accounts it, in
/// MiB. A droplet made from a spare keeps the spare's container name: the droplets' containers
/// are those the sandbox's state names.
fn measure_memory(project: &Path, pid: u64, sandbox_id: &str) -> (f64, f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let server_kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    let label = format!("label=infra.sandbox={sandbox_id}");
    let ids = Command::new("docker")
        .args(["ps", "-q", "--filter", &label])
        .output()
        .unwrap();
    let ids: Vec<String> = String::from_utf8_lossy(&ids.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    let mut args = vec![
        "stats".to_owned(),
        "--no-stream".to_owned(),
        "--format".to_owned(),
        "{{.Name}} {{.MemUsage}}".to_owned(),
    ];
    args.extend(ids);
    let stats = Command::new("docker").args(&args).output().unwrap();
    let droplet_containers: Vec<String> =
        std::fs::read_to_string(project.join("config/.infra/sandbox/state.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| {
                v["droplets"].as_array().map(|droplets| {
                    droplets
                        .iter()
                        .filter_map(|d| d["container"].as_str().map(str::to_owned))
                        .collect()
                })
            })
            .unwrap_or_default();
    let (mut droplets, mut spares) = (0.0, 0.0);
    for line in String::from_utf8_lossy(&stats.stdout).lines() {
        let Some((name, usage)) = line.split_once(' ') else {
            continue;
        };
        let Some(used) = usage.split('/').next().and_then(|u| mib(u.trim())) else {
            continue;
        };
        if droplet_containers.iter().any(|d| d == name) {
            droplets += used;
        } else {
            spares += used;
        }
    }
    (server_kib / 1024.0, droplets, spares)
}

/// `35.2MiB`, `1.1GiB`, `800KiB` in MiB.
fn mib(text: &str) -> Option<f64> {
    let units = [
        ("GiB", 1024.0),
        ("MiB", 1.0),
        ("KiB", 1.0 / 1024.0),
        ("B", 1.0 / 1048576.0),
    ];
    units.iter().find_map(|(unit, factor)| {
        text.strip_suffix(unit)
            .and_then(|n| n.trim().parse::<f64>().ok())
            .map(|n| n * factor)
    })
}
