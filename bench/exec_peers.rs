//! `infra exec all -- hostname` on 20 sandbox droplets against its peers on the same hosts in
//! the same run (issue 8): Ansible's ad-hoc `command` module (forks=20, pipelining off and on)
//! and `pyinfra exec` (parallel 20). Goal: infra at most 0.5x pyinfra.
//!
//!     cargo bench --bench exec_peers
//!
//! Real CLI end to end: a temp project (`infra init`), a sandbox without spares (`infra sandbox
//! up --spares 0`: no pool refilling on the same cores meanwhile), a spec of a master and 19
//! web droplets, `infra orchestrate`. Then every tool runs `hostname` on all 20 droplets as root
//! with the project's key, checking host keys against infra's `config/known_hosts` (pinned by a
//! first `infra exec`); Ansible connects afresh every run (no ControlPersist), as the others do.
//! Each figure is the wall time of the whole command, process start to exit: once the droplets
//! are idle, a warm-up round, then the median of 5 rounds (1 with `INFRA_BENCH_QUICK=1`), the
//! tools taking turns within each round. A run counts only if it exited 0 and printed the 20
//! droplets' own hostnames. Beside it: the CPU time of the tool's processes here, and of the
//! droplets meanwhile (their cgroups), which shows what the wall time is spent on.
//!
//! Needs Docker and the droplet image (`.ci/prepare-sandbox`); without Docker it says so and
//! exits. A peer that is not installed is skipped with the pip command that installs it
//! (`INFRA_REQUIRE_TOOLS` makes that a failure, as in CI).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod run_mode;
mod sandbox_down;

const BIN: &str = env!("CARGO_BIN_EXE_infra");
const HOSTS: usize = 20;
const ROUNDS: usize = 5;
const FORKS: &str = "20";
const PIP_INSTALL: &str =
    "python3 -m pip install --root-user-action=ignore 'ansible-core==2.19.*' 'pyinfra==3.*'";

/// One way to run `hostname` on every droplet.
struct Tool {
    label: String,
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<(String, String)>,
    /// (inventory name, printed line) pairs from the tool's stdout and stderr.
    parse: fn(&str) -> Vec<(String, String)>,
    /// The droplets it runs on, each of which must print its own name.
    expect: Vec<String>,
    runs: Vec<Run>,
    failed: Option<String>,
}

/// One successful run.
#[derive(Clone, Copy)]
struct Run {
    wall: Duration,
    /// CPU time of the tool's processes on this machine (user + system, its children too).
    cpu: Duration,
    /// CPU time the droplets spent meanwhile (sshd, the shell, the command), if readable.
    droplets: Option<Duration>,
}

impl Tool {
    fn command_line(&self) -> String {
        let env: Vec<String> = self
            .env
            .iter()
            .filter(|(k, _)| k == "ANSIBLE_PIPELINING")
            .map(|(k, v)| format!("{k}={v} "))
            .collect();
        let name = self.program.file_name().unwrap().to_string_lossy();
        let args: Vec<String> = self
            .args
            .iter()
            .map(|a| {
                let a = a.to_string_lossy();
                match Path::new(&*a).file_name() {
                    // The inventory files, by name only.
                    Some(f) if a.starts_with('/') => f.to_string_lossy().into_owned(),
                    _ => a.into_owned(),
                }
            })
            .collect();
        format!("{}{name} {}", env.concat(), args.join(" "))
    }

    /// Runs the command once: what it took if it succeeded and printed every droplet's
    /// hostname, else why not.
    fn run(&self, dir: &Path, meter: &Meter) -> Result<Run, String> {
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .env_remove("DO_TOKEN")
            .env_remove("DO_API_URL")
            .env_remove("ANSIBLE_CONFIG");
        for (k, v) in &self.env {
            command.env(k, v);
        }
        let (cpu_before, droplets_before) = (children_cpu(), meter.droplets_cpu());
        let started = Instant::now();
        let out = command
            .output()
            .map_err(|e| format!("could not start: {e}"))?;
        let took = Run {
            wall: started.elapsed(),
            cpu: children_cpu().saturating_sub(cpu_before),
            droplets: droplets_before
                .zip(meter.droplets_cpu())
                .map(|(before, after)| after.saturating_sub(before)),
        };
        let stdout = String::from_utf8_lossy(&out.stdout);
        let describe = || {
            format!(
                "stdout:\n{}\nstderr:\n{}",
                tail(&stdout),
                tail(&String::from_utf8_lossy(&out.stderr))
            )
        };
        if !out.status.success() {
            return Err(format!("{}\n{}", out.status, describe()));
        }
        // Every droplet printed its own hostname: 20 distinct ones (or the one).
        // pyinfra prints the output on stderr; infra and ansible on stdout.
        let seen = (self.parse)(&format!(
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
        let missing: Vec<&String> = self
            .expect
            .iter()
            .filter(|name| {
                !seen
                    .iter()
                    .any(|(host, line)| host == *name && line == *name)
            })
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "expected each of the {} droplets' own hostname, missing {missing:?}, parsed {seen:?}\n{}",
                self.expect.len(),
                describe()
            ));
        }
        Ok(took)
    }
}

fn main() {
    let docker = Command::new("docker").arg("version").output();
    if !docker.is_ok_and(|o| o.status.success()) {
        run_mode::skip("exec_peers", "Docker is not usable here");
        return;
    }
    let ansible = installed("ansible", "ansible-core");
    let pyinfra = installed("pyinfra", "pyinfra");

    let dir = tempfile::tempdir().expect("temp dir");
    let dir = dir.path();
    // Whatever happens, no sandbox is left running.
    let _down = sandbox_down::Down(dir);
    infra(dir, &["init"]);
    // A master and one project of 19 web droplets: 20 in all.
    let state_path = dir.join("config/infrastructure.json");
    let mut state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state_path).unwrap()).unwrap();
    let projects = state["infrastructure_spec"]["projects"]
        .as_object_mut()
        .expect("the init spec has projects");
    projects.retain(|name, _| name == "hostomatic");
    projects["hostomatic"]["web_droplets"] = (HOSTS as u64 - 1).into();
    // Measured without the self-healing monitors (bench/monitor_fleet.rs measures those).
    state["infrastructure_spec"]["monitors"] = false.into();
    std::fs::write(&state_path, serde_json::to_string_pretty(&state).unwrap()).unwrap();
    let started = Instant::now();
    // No spare pool: its refill would boot droplets on the same 2 cores while the tools run.
    infra(dir, &["sandbox", "up", "--spares", "0"]);
    infra(dir, &["orchestrate"]);
    println!(
        "exec_peers: sandbox up and {HOSTS} droplets orchestrated in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state_path).unwrap()).unwrap();
    let droplets: BTreeMap<String, String> = state["droplets"]
        .as_object()
        .expect("droplets in the state")
        .iter()
        .map(|(name, d)| {
            let ip = d["ip"]
                .as_str()
                .unwrap_or_else(|| panic!("{name} has no IP"));
            (name.clone(), ip.to_owned())
        })
        .collect();
    assert_eq!(droplets.len(), HOSTS, "droplets in the state: {droplets:?}");
    assert!(droplets.contains_key("master"), "{droplets:?}");
    let all: Vec<String> = droplets.keys().cloned().collect();
    let meter = Meter::for_sandbox(dir);
    if meter.droplets_cpu().is_none() {
        println!("exec_peers: the droplets' CPU time cannot be read here (no cgroup v1 or v2 accounting found), so it is not reported");
    }

    let mut tools = vec![Tool {
        label: "infra exec".into(),
        program: BIN.into(),
        args: ["exec", "all", "--", "hostname"]
            .map(OsString::from)
            .to_vec(),
        env: vec![],
        parse: parse_infra,
        expect: all.clone(),
        runs: vec![],
        failed: None,
    }];
    // The warm-up of infra pins every droplet's host key in config/known_hosts, which the
    // peers then check against.
    let warm = tools[0]
        .run(dir, &meter)
        .unwrap_or_else(|e| panic!("infra exec failed: {e}"));
    println!(
        "exec_peers: warm-up, infra pinned the host keys ({} ms)",
        ms(warm.wall)
    );
    let known_hosts = dir.join("config/known_hosts");
    let pinned = std::fs::read_to_string(&known_hosts).unwrap_or_default();
    assert_eq!(
        pinned.lines().count(),
        HOSTS,
        "config/known_hosts:\n{pinned}"
    );
    let key = dir.join("config/.infra/infrastructure_key");
    assert!(key.exists(), "no project key at {}", key.display());
    // A droplet boots its own Docker Engine, which keeps the cores busy for seconds after
    // sshd answers: wait until the droplets are idle before measuring.
    let started = Instant::now();
    let settled = meter.settle();
    println!(
        "exec_peers: {} ({:.1} s)",
        settled,
        started.elapsed().as_secs_f64()
    );

    // Ansible's `command` module needs Python on the droplet; `raw` does not.
    let python = infra(dir, &["exec", "master", "--", "command -v python3 || true"]);
    let python = python
        .trim()
        .strip_prefix("master | ")
        .map(str::to_owned)
        .filter(|p| p.starts_with('/'));
    println!(
        "exec_peers: python3 on the droplets: {}",
        python.as_deref().unwrap_or("none")
    );

    if let Some(ansible) = ansible {
        let inventory = dir.join("inventory.ini");
        let mut text = String::from("[droplets]\n");
        for (name, ip) in &droplets {
            text.push_str(&format!("{name} ansible_host={ip}\n"));
        }
        std::fs::write(&inventory, text).unwrap();
        // No ansible.cfg of the machine's or the user's: every setting is below.
        let config = dir.join("ansible.cfg");
        std::fs::write(&config, "[defaults]\n").unwrap();
        let module = match &python {
            Some(_) => "command",
            None => {
                println!("exec_peers: the droplets have no python3, so ansible runs `-m raw` (`-m command` needs Python on the host)");
                "raw"
            }
        };
        for pipelining in ["False", "True"] {
            let mut env = vec![
                ("ANSIBLE_CONFIG".into(), config.display().to_string()),
                ("ANSIBLE_PIPELINING".into(), pipelining.into()),
                ("ANSIBLE_HOST_KEY_CHECKING".into(), "True".into()),
                // Ansible's default ssh_args keep a master connection open for 60 s
                // (ControlPersist), which later rounds would reuse; here every round connects
                // afresh, as infra and pyinfra do.
                (
                    "ANSIBLE_SSH_ARGS".into(),
                    format!(
                        "-o UserKnownHostsFile={} -o StrictHostKeyChecking=yes",
                        known_hosts.display()
                    ),
                ),
                ("ANSIBLE_PRIVATE_KEY_FILE".into(), key.display().to_string()),
                ("ANSIBLE_REMOTE_USER".into(), "root".into()),
                ("ANSIBLE_NOCOLOR".into(), "1".into()),
            ];
            if let Some(python) = &python {
                env.push(("ANSIBLE_PYTHON_INTERPRETER".into(), python.clone()));
            }
            tools.push(Tool {
                label: format!(
                    "ansible -m {module}, forks=20, pipelining {}",
                    if pipelining == "True" { "on" } else { "off" }
                ),
                program: ansible.clone(),
                args: vec![
                    "all".into(),
                    "-i".into(),
                    inventory.clone().into(),
                    "-m".into(),
                    module.into(),
                    "-a".into(),
                    "hostname".into(),
                    "-f".into(),
                    FORKS.into(),
                ],
                env,
                parse: parse_ansible,
                expect: all.clone(),
                runs: vec![],
                failed: None,
            });
        }
    }
    if let Some(pyinfra) = &pyinfra {
        let inventory = dir.join("inventory.py");
        let mut text = String::from("hosts = [\n");
        for (name, ip) in &droplets {
            text.push_str(&format!(
                "    ({name:?}, {{\"ssh_hostname\": {ip:?}, \"ssh_user\": \"root\", \"ssh_key\": {:?}, \"ssh_known_hosts_file\": {:?}, \"ssh_strict_host_key_checking\": \"yes\"}}),\n",
                key.display().to_string(),
                known_hosts.display().to_string(),
            ));
        }
        text.push_str("]\n");
        std::fs::write(&inventory, text).unwrap();
        tools.push(Tool {
            label: "pyinfra exec, parallel 20".into(),
            program: pyinfra.clone(),
            args: vec![
                "-y".into(),
                "--parallel".into(),
                FORKS.into(),
                inventory.clone().into(),
                "exec".into(),
                "--".into(),
                "hostname".into(),
            ],
            env: vec![],
            parse: parse_pyinfra,
            expect: all.clone(),
            runs: vec![],
            failed: None,
        });
        // The same on one droplet: no other droplet's sshd competes for the cores, as on
        // real hosts, which each have their own.
        tools.push(Tool {
            label: "pyinfra exec, one droplet".into(),
            program: pyinfra.clone(),
            args: vec![
                "-y".into(),
                "--limit".into(),
                "master".into(),
                inventory.into(),
                "exec".into(),
                "--".into(),
                "hostname".into(),
            ],
            env: vec![],
            parse: parse_pyinfra,
            expect: vec!["master".into()],
            runs: vec![],
            failed: None,
        });
    }
    tools.push(Tool {
        label: "infra exec, one droplet".into(),
        program: BIN.into(),
        args: ["exec", "master", "--", "hostname"]
            .map(OsString::from)
            .to_vec(),
        env: vec![],
        parse: parse_infra,
        expect: vec!["master".into()],
        runs: vec![],
        failed: None,
    });

    // Warm-up: every tool once more, infra included (now on settled droplets).
    for tool in tools.iter_mut() {
        if let Err(e) = tool.run(dir, &meter) {
            tool.failed = Some(e);
        }
    }
    let rounds = run_mode::repeat(ROUNDS);
    for round in 0..rounds {
        // The tools take turns, starting with a different one each round.
        let n = tools.len();
        for i in 0..n {
            let tool = &mut tools[(round + i) % n];
            if tool.failed.is_some() {
                continue;
            }
            match tool.run(dir, &meter) {
                Ok(run) => tool.runs.push(run),
                Err(e) => tool.failed = Some(e),
            }
        }
    }

    for tool in &tools {
        println!("exec_peers: {}: {}", tool.label, tool.command_line());
        if let Some(e) = &tool.failed {
            println!(
                "exec_peers: {} FAILED, so it has no number:\n{e}",
                tool.label
            );
        }
    }
    for hosts in [HOSTS, 1] {
        let group: Vec<&Tool> = tools.iter().filter(|t| t.expect.len() == hosts).collect();
        let pyinfra_median = group
            .iter()
            .find(|t| t.label.starts_with("pyinfra") && t.failed.is_none())
            .map(|t| median(t.runs.iter().map(|r| r.wall)));
        println!();
        println!(
            "| tool ({hosts} droplet{}) | wall, median of {rounds} | runs | ratio to pyinfra | CPU here (median) | CPU in the droplets (median) |",
            if hosts == 1 { "" } else { "s" }
        );
        println!("|---|---|---|---|---|---|");
        for tool in group {
            if tool.failed.is_some() {
                println!("| {} | failed | - | - | - | - |", tool.label);
                continue;
            }
            let wall = median(tool.runs.iter().map(|r| r.wall));
            let ratio = pyinfra_median.map_or("-".into(), |p| {
                format!("{:.2}", wall.as_secs_f64() / p.as_secs_f64())
            });
            let runs: Vec<String> = tool.runs.iter().map(|r| ms(r.wall)).collect();
            let cpu = median(tool.runs.iter().map(|r| r.cpu));
            let in_droplets = if tool.runs.iter().all(|r| r.droplets.is_some()) {
                format!(
                    "{} ms",
                    ms(median(tool.runs.iter().filter_map(|r| r.droplets)))
                )
            } else {
                "-".into()
            };
            println!(
                "| {} | {} ms | {} | {ratio} | {} ms | {in_droplets} |",
                tool.label,
                ms(wall),
                runs.join(", "),
                ms(cpu),
            );
        }
    }
    if pyinfra.is_none() {
        println!("(no ratio: pyinfra is not installed)");
    }
    let failed: Vec<&str> = tools
        .iter()
        .filter(|t| t.failed.is_some())
        .map(|t| t.label.as_str())
        .collect();
    assert!(failed.is_empty(), "failed: {}", failed.join("; "));
}

/// Reads the CPU time the sandbox's droplet containers have used, from their cgroups.
struct Meter {
    /// One `cpuacct.usage` (cgroup v1, ns) or `cpu.stat` (cgroup v2, usage_usec) per droplet.
    files: Vec<PathBuf>,
}

impl Meter {
    fn for_sandbox(dir: &Path) -> Meter {
        let sandbox: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("config/.infra/sandbox/state.json"))
                .unwrap_or_default(),
        )
        .unwrap_or_default();
        let Some(id) = sandbox["sandbox_id"].as_str() else {
            return Meter { files: vec![] };
        };
        let out = Command::new("docker")
            .args(["ps", "-q", "--no-trunc", "--filter"])
            .arg(format!("label=infra.sandbox={id}"))
            .output()
            .expect("docker ps");
        let files = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|container| {
                [
                    format!("/sys/fs/cgroup/cpuacct/docker/{container}/cpuacct.usage"),
                    format!("/sys/fs/cgroup/system.slice/docker-{container}.scope/cpu.stat"),
                    format!("/sys/fs/cgroup/docker/{container}/cpu.stat"),
                ]
                .into_iter()
                .map(PathBuf::from)
                .find(|p| p.exists())
            })
            .collect::<Vec<_>>();
        Meter { files }
    }

    /// Waits until the droplets together use under a tenth of a core (at most a minute; ten
    /// seconds if their CPU time cannot be read). Says what it found.
    fn settle(&self) -> String {
        let Some(mut last) = self.droplets_cpu() else {
            std::thread::sleep(Duration::from_secs(10));
            return "waited 10 s for the droplets to finish booting".into();
        };
        let started = Instant::now();
        loop {
            std::thread::sleep(Duration::from_secs(1));
            let now = self.droplets_cpu().unwrap_or(last);
            let used = now.saturating_sub(last);
            last = now;
            if used < Duration::from_millis(100) {
                return format!(
                    "the droplets are idle ({} ms of CPU in the last second)",
                    ms(used)
                );
            }
            if started.elapsed() > Duration::from_secs(60) {
                return format!("the droplets are still busy after a minute ({} ms of CPU in the last second); measuring anyway", ms(used));
            }
        }
    }

    /// The droplets' CPU time so far, `None` if it cannot be read for all of them.
    fn droplets_cpu(&self) -> Option<Duration> {
        if self.files.len() != HOSTS {
            return None;
        }
        let mut total = Duration::ZERO;
        for file in &self.files {
            let text = std::fs::read_to_string(file).ok()?;
            total += if file.ends_with("cpuacct.usage") {
                Duration::from_nanos(text.trim().parse().ok()?)
            } else {
                let usec = text
                    .lines()
                    .find_map(|l| l.strip_prefix("usage_usec "))?
                    .trim()
                    .parse()
                    .ok()?;
                Duration::from_micros(usec)
            };
        }
        Some(total)
    }
}

/// User + system CPU time of this process's children that have ended (and theirs).
fn children_cpu() -> Duration {
    // SAFETY: an all-zero rusage is a valid value, and getrusage only writes the struct it is
    // given.
    let (rc, usage) = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        (libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage), usage)
    };
    assert_eq!(rc, 0, "getrusage");
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// Runs infra in the project; its stdout. Panics if it fails.
fn infra(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_remove("DO_TOKEN")
        .env_remove("DO_API_URL")
        .env_remove("ADMIN_IP")
        .stdin(Stdio::null())
        .output()
        .expect("infra runs");
    assert!(
        out.status.success(),
        "infra {}:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The peer's executable, if it runs (`--version`), preferring the Python installation's own
/// script over a shim on PATH (pyenv's shims add a shell and a Python start of their own to
/// every run). `None`, with a notice, if it is not installed.
fn installed(program: &str, package: &str) -> Option<PathBuf> {
    let scripts = Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('scripts'))",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let path = std::env::var_os("PATH").unwrap_or_default();
    let candidates = scripts
        .into_iter()
        .chain(std::env::split_paths(&path))
        .map(|d| d.join(program));
    for candidate in candidates {
        let runs = Command::new(&candidate)
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .is_ok_and(|o| o.status.success());
        if runs {
            return Some(candidate);
        }
    }
    run_mode::skip(
        &format!("exec_peers: {program}"),
        &format!("{package} is not installed; install the peers with: {PIP_INSTALL}"),
    );
    None
}

/// `name | line` for each line a droplet printed.
fn parse_infra(stdout: &str) -> Vec<(String, String)> {
    stdout
        .lines()
        .filter_map(|l| l.split_once(" | "))
        .map(|(name, line)| (name.to_owned(), line.to_owned()))
        .collect()
}

/// `name | CHANGED | rc=0 >>` then the output (`-m command`), or `name | CHANGED | rc=0 |
/// (stdout) output` on one line (`-o`).
fn parse_ansible(stdout: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut lines = stdout.lines();
    while let Some(line) = lines.next() {
        let fields: Vec<&str> = line.split(" | ").collect();
        if fields.len() >= 3 && fields[1] == "CHANGED" && fields[2].starts_with("rc=0") {
            if let Some(one_line) = fields.get(3).and_then(|f| f.strip_prefix("(stdout) ")) {
                found.push((fields[0].to_owned(), one_line.trim().to_owned()));
            } else if let Some(next) = lines.next() {
                found.push((fields[0].to_owned(), next.trim().to_owned()));
            }
        }
    }
    found
}

/// `[name] output` for each line a host printed.
fn parse_pyinfra(stdout: &str) -> Vec<(String, String)> {
    stdout
        .lines()
        .filter_map(|l| l.trim().strip_prefix('['))
        .filter_map(|l| l.split_once("] "))
        .map(|(name, line)| (name.to_owned(), line.trim().to_owned()))
        .collect()
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

fn median(samples: impl Iterator<Item = Duration>) -> Duration {
    let mut samples: Vec<Duration> = samples.collect();
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1000.0)
}
