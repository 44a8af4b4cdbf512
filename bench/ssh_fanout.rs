//! SSH fan-out: connect to N sandbox droplets and run `hostname` on each, with infra's russh
//! pool and with the OpenSSH client (N `ssh` processes at once), as in ENVIRONMENT.md's table;
//! and one more command on a connection already open.
//!
//!     cargo bench --bench ssh_fanout                          # 3 and 10 droplets
//!     INFRA_BENCH_HOSTS=20 cargo bench --bench ssh_fanout     # 3 and 20
//!
//! Needs Docker and the droplet image (`.ci/prepare-sandbox` builds it); without Docker it
//! prints a notice and exits. Each figure is the median of 5 rounds; every round opens new
//! connections (a new pool; host keys are pinned by a warm-up round first). Droplets are
//! created ten at a time, the most one DigitalOcean request takes. `INFRA_BENCH_QUICK=1` runs
//! one round of each (see `run_mode.rs`).

use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use infra::cloud::{
    Client, DropletMultiCreate, DropletSpec, DropletStatus, SshKeyCreate, SshKeyRef,
};
use infra::project::Project;
use infra::remote::{Connector, Host, Pool};

mod run_mode;

const BIN: &str = env!("CARGO_BIN_EXE_infra");
const ROUNDS: usize = 5;
const LIMIT: Duration = Duration::from_secs(180);

fn main() {
    let docker = Command::new("docker").arg("version").output();
    if !docker.is_ok_and(|o| o.status.success()) {
        run_mode::skip("ssh_fanout", "Docker is not usable here");
        return;
    }
    let many: usize = std::env::var("INFRA_BENCH_HOSTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10);
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
    };
    infra(&["init"]);
    infra(&["sandbox", "up"]);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runtime.block_on(run(dir.path(), many))
    }));
    infra(&["sandbox", "down"]);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

async fn run(root: &Path, many: usize) {
    let project = Project::new(root, Path::new("config"));
    let client = Client::for_project(&project).unwrap();
    let public_key =
        std::fs::read_to_string(infra::keypair::public_path(&project.ssh_key_path())).unwrap();
    let key = client
        .create_ssh_key(&SshKeyCreate {
            name: "bench".into(),
            public_key,
        })
        .await
        .unwrap();
    let mut spec = DropletSpec::new("s-1vcpu-1gb", "debian-12-x64");
    spec.ssh_keys = vec![SshKeyRef::Id(key.id)];
    spec.tags = vec!["bench".into()];
    let names: Vec<String> = (1..=many).map(|i| format!("bench-{i}")).collect();
    // One request per ten names (DigitalOcean's limit for a multi-create), sent together.
    let requests: Vec<DropletMultiCreate> = names
        .chunks(DropletMultiCreate::MAX_NAMES)
        .map(|chunk| DropletMultiCreate {
            names: chunk.to_vec(),
            spec: spec.clone(),
        })
        .collect();
    let creates = requests
        .iter()
        .map(|request| client.create_droplets(request));
    for created in futures_util::future::join_all(creates).await {
        created.unwrap();
    }
    let started = Instant::now();
    let hosts: Vec<Host> = loop {
        let droplets = client.list_droplets_by_tag("bench").await.unwrap();
        if droplets.len() == many && droplets.iter().all(|d| d.status == DropletStatus::Active) {
            let mut hosts: Vec<Host> = droplets
                .iter()
                .map(|d| Host::new(d.name.clone(), IpAddr::V4(d.public_ipv4().unwrap())))
                .collect();
            hosts.sort();
            break hosts;
        }
        assert!(started.elapsed() < LIMIT, "droplets did not become active");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    // Warm-up: pins the host keys, and makes sure every sshd answers.
    fan_out(&project, &hosts).await;
    let key_path = project.ssh_key_path();

    let rounds = run_mode::repeat(ROUNDS);
    println!("| hosts | russh pool: connect + `hostname` (median of {rounds}) | OpenSSH client, all at once |");
    println!("|---|---|---|");
    for count in [3.min(many), many] {
        let hosts = &hosts[..count];
        let mut russh = Vec::new();
        let mut openssh = Vec::new();
        for _ in 0..rounds {
            let started = Instant::now();
            fan_out(&project, hosts).await;
            russh.push(started.elapsed());
            let started = Instant::now();
            ssh_all(&key_path, hosts);
            openssh.push(started.elapsed());
        }
        println!(
            "| {count} | {} | {} |",
            ms(median(russh)),
            ms(median(openssh))
        );
    }

    let connector = Connector::for_project(&project).unwrap();
    let session = connector.connect(&hosts[0]).await.unwrap();
    let mut each = Vec::new();
    let commands = run_mode::repeat(20);
    for _ in 0..commands {
        let started = Instant::now();
        session.run("true").await.unwrap();
        each.push(started.elapsed());
    }
    println!();
    println!(
        "one more command on an open connection: {} (median of {commands})",
        ms(median(each))
    );
}

/// A new pool (new connections) running `hostname` on every host at once.
async fn fan_out(project: &Project, hosts: &[Host]) {
    let pool = Pool::new(Connector::for_project(project).unwrap());
    let results = pool
        .fan_out(hosts, hosts.len(), |session| async move {
            session.run("hostname").await.map(|o| o.stdout_text())
        })
        .await;
    for (host, result) in results {
        assert_eq!(result.unwrap().trim(), host.name);
    }
    pool.close().await;
}

/// `ssh root@ip hostname` on every host, all processes at once.
fn ssh_all(key: &Path, hosts: &[Host]) {
    let children: Vec<_> = hosts
        .iter()
        .map(|host| {
            Command::new("ssh")
                .arg("-i")
                .arg(key)
                .args([
                    "-o",
                    "StrictHostKeyChecking=no",
                    "-o",
                    "UserKnownHostsFile=/dev/null",
                    "-o",
                    "BatchMode=yes",
                    "-o",
                    "LogLevel=ERROR",
                    &format!("root@{}", host.ip),
                    "hostname",
                ])
                .stdout(Stdio::piped())
                .spawn()
                .expect("ssh")
        })
        .collect();
    for (child, host) in children.into_iter().zip(hosts) {
        let out = child.wait_with_output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), host.name);
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}
