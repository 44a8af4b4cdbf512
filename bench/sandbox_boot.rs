//! How fast the sandbox makes droplets: the time from the create request to SSH answering on
//! the droplet, for 1 droplet and for 5 created at once (goal: 5 within 1.5x of 1); how many
//! requests the client made per droplet; and the memory of the sandbox holding 5 droplets.
//!
//!     cargo bench --bench sandbox_boot
//!
//! Needs Docker and the droplet image (`.ci/prepare-sandbox` builds it); without Docker it
//! prints a notice and exits. The client is infra's own DigitalOcean client, polling the list
//! of the run's droplets (by tag) once a second until all are active, as a playbook would.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use infra::cloud::{
    Client, DropletCreate, DropletMultiCreate, DropletSpec, DropletStatus, RetryPolicy,
    SshKeyCreate, SshKeyRef, Token,
};

const BIN: &str = env!("CARGO_BIN_EXE_infra");
const ROUNDS: usize = 3;
const POLL: Duration = Duration::from_secs(1);
const LIMIT: Duration = Duration::from_secs(120);

fn main() {
    let docker = Command::new("docker").arg("version").output();
    if !docker.is_ok_and(|o| o.status.success()) {
        println!("sandbox_boot: skipped, Docker is not usable here");
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
    let exports = infra(&["sandbox", "up"]);
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
    /// Create request to sshd answering, averaged over the droplets.
    ssh_mean: Duration,
    /// Create request to the client seeing every droplet active.
    active: Duration,
    requests: usize,
}

async fn run(project: &Path, url: &str, token: &str) {
    let client = Client::new(url, Token::new(token).unwrap(), RetryPolicy::default()).unwrap();
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

    println!("| droplets at once | create → SSH answering (all) | mean per droplet | create → client sees all active | requests per droplet |");
    println!("|---|---|---|---|---|");
    let mut memory = None;
    let mut medians = Vec::new();
    for count in [1usize, 5] {
        let mut rounds = Vec::new();
        for round in 0..ROUNDS {
            let tag = format!("bench-{count}-{round}");
            let requests_before = log_lines(&log);
            let result = create_and_wait(&client, key.id, count, &tag).await;
            let requests = log_lines(&log) - requests_before;
            if count == 5 && round == ROUNDS - 1 {
                memory = Some(measure_memory(server_pid, &sandbox_id));
            }
            client.delete_droplets_by_tag(&tag).await.unwrap();
            rounds.push(Round { requests, ..result });
        }
        rounds.sort_by_key(|r| r.ssh_all);
        let median = &rounds[ROUNDS / 2];
        println!(
            "| {count} | {:.2} s (runs: {}) | {:.2} s | {:.2} s | {:.1} |",
            median.ssh_all.as_secs_f64(),
            rounds
                .iter()
                .map(|r| format!("{:.2}", r.ssh_all.as_secs_f64()))
                .collect::<Vec<_>>()
                .join(", "),
            median.ssh_mean.as_secs_f64(),
            median.active.as_secs_f64(),
            median.requests as f64 / count as f64
        );
        medians.push(median.ssh_all);
    }
    println!();
    println!(
        "5 at once / 1: {:.2}x (goal: at most 1.5x)",
        medians[1].as_secs_f64() / medians[0].as_secs_f64()
    );
    if let Some((server, droplets)) = memory {
        println!(
            "memory with 5 droplets: server {:.1} MiB RSS, droplets {:.1} MiB in all ({:.1} MiB each)",
            server,
            droplets,
            droplets / 5.0
        );
    }
}

async fn create_and_wait(client: &Client, key: u64, count: usize, tag: &str) -> Round {
    let mut spec = DropletSpec::new("s-1vcpu-1gb", "debian-12-x64");
    spec.ssh_keys = vec![SshKeyRef::Id(key)];
    spec.tags = vec![tag.to_owned()];
    let started = Instant::now();
    let droplets = if count == 1 {
        vec![
            client
                .create_droplet(&DropletCreate {
                    name: format!("{tag}-0"),
                    spec,
                })
                .await
                .unwrap()
                .droplet,
        ]
    } else {
        client
            .create_droplets(&DropletMultiCreate {
                names: (0..count).map(|i| format!("{tag}-{i}")).collect(),
                spec,
            })
            .await
            .unwrap()
            .droplets
    };
    let ips: Vec<Ipv4Addr> = droplets.iter().map(|d| d.public_ipv4().unwrap()).collect();
    // sshd answering, watched directly so the API polling does not blur it.
    let probes: Vec<_> = ips
        .into_iter()
        .map(|ip| {
            tokio::task::spawn_blocking(move || {
                while started.elapsed() < LIMIT {
                    if banner(ip) {
                        return started.elapsed();
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                panic!("{ip} never answered SSH");
            })
        })
        .collect();
    let active = loop {
        let listed = client.list_droplets(Some(tag)).await.unwrap();
        if listed.len() == count && listed.iter().all(|d| d.status == DropletStatus::Active) {
            break started.elapsed();
        }
        assert!(started.elapsed() < LIMIT, "droplets never became active");
        tokio::time::sleep(POLL).await;
    };
    let mut times = Vec::new();
    for probe in probes {
        times.push(probe.await.unwrap());
    }
    Round {
        ssh_all: times.iter().copied().max().unwrap(),
        ssh_mean: times.iter().sum::<Duration>() / times.len() as u32,
        active,
        requests: 0,
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

/// The server's resident memory and the droplets' memory as Docker accounts it, in MiB.
fn measure_memory(pid: u64, sandbox_id: &str) -> (f64, f64) {
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
        "{{.MemUsage}}".to_owned(),
    ];
    args.extend(ids);
    let stats = Command::new("docker").args(&args).output().unwrap();
    let droplets: f64 = String::from_utf8_lossy(&stats.stdout)
        .lines()
        .filter_map(|l| mib(l.split('/').next()?.trim()))
        .sum();
    (server_kib / 1024.0, droplets)
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
