//! Orchestrate for real, on the sandbox cloud: `infra orchestrate`, `scale`, `add-project` and
//! `remove-project` make droplets that answer SSH, record them in the state as they come up,
//! converge after being killed or on a flaky API, never make a droplet twice, and keep SSH to
//! the administrator's address.
//!
//! Like `sandbox.rs`, these need Docker and an SSH client: without them they fail saying to run
//! `.ci/prepare-sandbox`, unless `INFRA_SKIP_DOCKER_TESTS=1` skips them (and counts them). Each
//! test runs one sandbox in its
//! own project, with two to five droplets, and `infra sandbox down` always runs at the end.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use infra::cloud::{Client, RetryPolicy, Token};

use crate::harness::{exit_code, Output, Snapshot, Test, BIN};

/// Longest one infra command may take (creating droplets included) before the test fails.
const COMMAND_LIMIT: Duration = Duration::from_secs(300);

/// The droplets of the spec `infra init` writes.
const INIT_DROPLETS: &[&str] = &[
    "master",
    "hostomatic-web1",
    "hostomatic-web2",
    "digitalpixo-web1",
];

/// Spec edits without orchestrating (what the commands do before they apply).
pub(crate) const SCALE_SPEC: &str = "scale_project_spec(ARGS[0], parse_int(ARGS[1]));\n";
pub(crate) const SMALL_SPEC: &str =
    "remove_project_spec(\"digitalpixo\");\nscale_project_spec(\"hostomatic\", 1);\n";

/// How a run that found the state locked stops (the holder is named when its lock file could
/// be read).
const LOCKED: &str = "error: the state is locked by ";
const LOCK_ADVICE: &str = "; wait for it to finish";

/// A project made by `infra init` with its own running sandbox; `infra sandbox down` when
/// dropped, whatever happened.
pub(crate) struct Sandbox {
    pub(crate) test: Test,
    url: String,
    token: String,
}

impl Sandbox {
    /// `None` when the tools are missing and the test is skipped.
    pub(crate) fn up(args: &[&str]) -> Option<Sandbox> {
        Sandbox::up_monitored(args, false)
    }

    /// [`Sandbox::up`], with the self-healing monitors installed by orchestrate and deploys
    /// when `monitors` (the other tests keep them off: monitors would act on the droplets
    /// those tests power off or destroy on purpose).
    pub(crate) fn up_monitored(args: &[&str], monitors: bool) -> Option<Sandbox> {
        if !crate::harness::docker_tests_can_run() {
            return None;
        }
        let mut test = Test::init();
        if !monitors {
            test = test.edit(
                "config/infrastructure.json",
                "\"infrastructure_spec\": {",
                "\"infrastructure_spec\": {\n    \"monitors\": false,",
            );
        }
        let mut command = vec!["sandbox", "up"];
        command.extend(args);
        let out = run(&test, &command, &[]);
        assert_eq!(out.code, 0, "`infra sandbox up` failed:\n{}", out.stderr);
        let field = |name: &str| {
            out.stdout
                .split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .unwrap_or_else(|| panic!("no {name} in `{}`", out.stdout))
                .to_owned()
        };
        let (url, token) = (field("DO_API_URL="), field("DO_TOKEN="));
        Some(Sandbox { test, url, token })
    }

    pub(crate) fn path(&self) -> &Path {
        self.test.path()
    }

    /// `infra ARGS` in the project (which finds its sandbox by itself), bounded.
    pub(crate) fn infra(&self, args: &[&str]) -> Output {
        run(&self.test, args, &[])
    }

    /// `infra ARGS` with `ADMIN_IP` set.
    pub(crate) fn infra_as(&self, admin_ip: &str, args: &[&str]) -> Output {
        run(&self.test, args, &[("ADMIN_IP", admin_ip)])
    }

    /// `infra ARGS`, which must succeed.
    pub(crate) fn ok(&self, args: &[&str]) -> Output {
        let out = self.infra(args);
        assert_eq!(out.code, 0, "{}", describe(&out));
        out
    }

    pub(crate) fn spawn(&self, args: &[&str]) -> Spawned {
        spawn(&self.test, args, &[])
    }

    pub(crate) fn client(&self) -> Client {
        // The sandbox serves HTTPS with the project's own CA.
        let ca = std::fs::read(self.path().join("config/.infra/sandbox/ca.pem")).unwrap();
        let token = Token::new(self.token.clone()).unwrap();
        Client::trusting(&self.url, token, RetryPolicy::default(), &ca).unwrap()
    }

    /// Requests the sandbox answered that change something (not GET), so far.
    pub(crate) fn mutating_calls(&self) -> Vec<String> {
        self.test
            .read("config/.infra/sandbox/server.log")
            .lines()
            .filter(|l| {
                ["POST ", "PUT ", "PATCH ", "DELETE "]
                    .iter()
                    .any(|m| l.starts_with(m))
            })
            .map(str::to_owned)
            .collect()
    }

    /// The state's droplets: name -> IP.
    pub(crate) fn state_droplets(&self) -> BTreeMap<String, String> {
        let state = self.test.json("config/infrastructure.json");
        state["droplets"]
            .as_object()
            .unwrap_or_else(|| panic!("no droplets in the state: {state:#}"))
            .iter()
            .map(|(name, d)| {
                let ip = d["ip"]
                    .as_str()
                    .unwrap_or_else(|| panic!("droplet {name} has no IP in the state: {d}"));
                (name.clone(), ip.to_owned())
            })
            .collect()
    }

    /// The cloud's droplets tagged `infra`: name -> IP, failing on a name seen twice.
    pub(crate) async fn cloud_droplets(&self) -> BTreeMap<String, String> {
        let listed = self.client().list_droplets_by_tag("infra").await.unwrap();
        let mut out = BTreeMap::new();
        for d in &listed {
            let ip = d.public_ipv4().map(|ip| ip.to_string()).unwrap_or_default();
            let twice = out.insert(d.name.clone(), ip);
            assert!(
                twice.is_none(),
                "duplicate droplet `{}` in the cloud: {:?}",
                d.name,
                listed.iter().map(|d| (&d.name, d.id)).collect::<Vec<_>>()
            );
        }
        out
    }

    /// The state and the cloud agree: the same droplets (exactly `names`), the same IPs, none
    /// twice; every service is on droplets that exist; and the state is valid.
    pub(crate) async fn assert_converged(&self, names: &[&str]) {
        let cloud = self.cloud_droplets().await;
        let state = self.state_droplets();
        let wanted: BTreeSet<String> = names.iter().map(|n| n.to_string()).collect();
        assert_eq!(
            cloud.keys().cloned().collect::<BTreeSet<_>>(),
            wanted,
            "the cloud's droplets"
        );
        assert_eq!(
            state, cloud,
            "the state's droplets and IPs against the cloud's"
        );
        let runtime = self.test.json("config/infrastructure.json");
        for (key, services) in runtime["projects"].as_object().unwrap() {
            for (service, record) in services.as_object().unwrap() {
                for on in record["assigned_droplets"].as_array().unwrap() {
                    let on = on.as_str().unwrap();
                    assert!(
                        wanted.contains(on),
                        "{key}.{service} is assigned to `{on}`, which does not exist"
                    );
                }
            }
        }
        self.ok(&["validate"]);
    }

    /// The project's files, without the sandbox's own (its log grows with every request).
    pub(crate) fn files(&self) -> Snapshot {
        let mut snapshot = self.test.snapshot();
        snapshot
            .0
            .retain(|path, _| !path.starts_with("config/.infra/sandbox"));
        snapshot
    }

    pub(crate) fn key(&self) -> PathBuf {
        self.path().join("config/.infra/infrastructure_key")
    }

    /// Runs `command` as root on `ip` with the project's key.
    pub(crate) fn ssh(&self, ip: &str, command: &str) -> Result<String, String> {
        let mut cmd = Command::new("ssh");
        cmd.arg("-i").arg(self.key());
        for option in host_key_options(self.path()) {
            cmd.args(["-o", &option]);
        }
        let out = cmd
            .args([
                "-o",
                "BatchMode=yes",
                "-o",
                "ConnectTimeout=5",
                "-o",
                "LogLevel=ERROR",
                &format!("root@{ip}"),
                command,
            ])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }

    /// Every droplet of the state answers SSH at its recorded IP, as itself.
    pub(crate) fn assert_reachable(&self) {
        for (name, ip) in self.state_droplets() {
            let hostname = self
                .ssh(&ip, "hostname")
                .unwrap_or_else(|e| panic!("SSH to {name} at {ip}: {e}"));
            assert_eq!(hostname, name, "the host at {ip}");
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let out = run(&self.test, &["sandbox", "down"], &[]);
        if out.code != 0 {
            eprintln!("`infra sandbox down` failed:\n{}", out.stderr);
        }
    }
}

/// The `ssh -o` options that check a droplet's host key against the one infra pinned in
/// `config/known_hosts` when it first met it, so every SSH check here also proves the droplet
/// is the one infra recorded.
fn host_key_options(project: &Path) -> Vec<String> {
    vec![
        "StrictHostKeyChecking=yes".into(),
        format!(
            "UserKnownHostsFile={}",
            project.join("config/known_hosts").display()
        ),
    ]
}

pub(crate) fn describe(out: &Output) -> String {
    format!(
        "infra {}\nexit code: {}\n--- stdout\n{}--- stderr\n{}---",
        out.args.join(" "),
        out.code,
        out.stdout,
        out.stderr
    )
}

fn command(test: &Test, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args).current_dir(test.path());
    for var in [
        "DO_TOKEN",
        "DIGITALOCEAN_TOKEN",
        "DO_API_URL",
        "ADMIN_IP",
        "RUST_LOG",
        "RUST_BACKTRACE",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// An `infra` process whose stdout is read line by line as it comes.
pub(crate) struct Spawned {
    args: Vec<String>,
    child: Child,
    stdout: Receiver<String>,
    seen: Vec<String>,
    stderr: Option<JoinHandle<String>>,
}

pub(crate) fn spawn(test: &Test, args: &[&str], env: &[(&str, &str)]) -> Spawned {
    let mut child = command(test, args, env).spawn().expect("spawn infra");
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut err = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = err.read_to_string(&mut text);
        text
    });
    Spawned {
        args: args.iter().map(|a| a.to_string()).collect(),
        child,
        stdout: rx,
        seen: Vec::new(),
        stderr: Some(stderr),
    }
}

impl Spawned {
    /// Reads stdout until a line satisfies `want`; fails after [`COMMAND_LIMIT`] or if the
    /// process ends first.
    pub(crate) fn wait_stdout(&mut self, what: &str, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + COMMAND_LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if want(&line) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    let _ = self.child.kill();
                    panic!(
                        "no stdout line {what} within {COMMAND_LIMIT:?}; stdout so far:\n{}",
                        self.seen.join("\n")
                    );
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let out = self.finish();
                    panic!(
                        "infra ended before printing a line {what}:\n{}",
                        describe(&out)
                    );
                }
            }
        }
    }

    pub(crate) fn kill(mut self) {
        let _ = self.child.kill();
        let status = self.child.wait().expect("wait");
        assert_eq!(exit_code(status), 128 + 9, "killed with SIGKILL");
    }

    /// Waits, at most [`COMMAND_LIMIT`], for the process to end.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn finish(&mut self) -> Output {
        self.finish_within(COMMAND_LIMIT)
    }

    /// Waits for the process to end, at most `limit`.
    pub(crate) fn finish_within(&mut self, limit: Duration) -> Output {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "infra {} did not end within {limit:?}; stdout so far:\n{}",
                    self.args.join(" "),
                    self.seen.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        while let Ok(line) = self.stdout.recv_timeout(Duration::from_secs(10)) {
            self.seen.push(line);
        }
        let stderr = self
            .stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        Output {
            args: self.args.clone(),
            stdout: self.seen.iter().map(|l| format!("{l}\n")).collect(),
            stderr,
            code: exit_code(status),
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `infra ARGS` to the end, at most [`COMMAND_LIMIT`].
pub(crate) fn run(test: &Test, args: &[&str], env: &[(&str, &str)]) -> Output {
    spawn(test, args, env).finish()
}

/// A spec-only edit through `infra run` (the natives the commands use, without applying).
pub(crate) fn edit_spec(sandbox: &Sandbox, playbook: &str, args: &[&str]) {
    sandbox.test.write("edit.rhai", playbook);
    let mut command = vec!["run", "edit.rhai"];
    command.extend(args);
    sandbox.ok(&command);
}

fn is_ready_line(line: &str) -> bool {
    line.starts_with("droplet ") && line.contains(": active at ")
}

// ---------------------------------------------------------------------------------------------

/// The `init` spec: four droplets, each answering SSH at its recorded IP with the project's
/// key; a re-run changes nothing and makes no mutating call. Dry runs, before and after, make no
/// mutating call, change no file and write nothing on the droplets.
#[tokio::test(flavor = "multi_thread")]
async fn orchestrate_makes_the_init_spec_and_a_rerun_changes_nothing() {
    let Some(sandbox) = Sandbox::up(&[]) else {
        return;
    };

    // A dry run with nothing made yet.
    let files = sandbox.files();
    let plan = sandbox.ok(&["plan"]);
    assert!(
        plan.stdout.contains("Plan: 4 droplets to create"),
        "{}",
        plan.stdout
    );
    sandbox.ok(&["--dry-run", "orchestrate"]);
    assert_eq!(sandbox.mutating_calls(), Vec::<String>::new());
    files.assert_same(&sandbox.files());
    assert!(sandbox.cloud_droplets().await.is_empty());

    let out = sandbox.ok(&["orchestrate"]);
    for name in INIT_DROPLETS {
        assert!(
            out.stdout.contains(&format!("droplet {name}: active at ")),
            "{}",
            describe(&out)
        );
    }
    sandbox.assert_converged(INIT_DROPLETS).await;
    sandbox.assert_reachable();
    let state = sandbox.test.json("config/infrastructure.json");
    assert_eq!(
        state["projects"]["hostomatic-prod"]["backend"]["assigned_droplets"],
        serde_json::json!(["hostomatic-web1", "hostomatic-web2"])
    );
    let firewalls = sandbox.client().list_firewalls().await.unwrap();
    let mut names: Vec<&str> = firewalls.iter().map(|f| f.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["infra-fleet", "infra-master"]);

    // A re-run: nothing to do, nothing changed.
    let calls = sandbox.mutating_calls();
    let state_text = sandbox.test.read("config/infrastructure.json");
    let again = sandbox.ok(&["orchestrate"]);
    assert!(again.stdout.contains("No changes"), "{}", describe(&again));
    assert_eq!(
        sandbox.mutating_calls(),
        calls,
        "a re-run changed the cloud"
    );
    assert_eq!(sandbox.test.read("config/infrastructure.json"), state_text);

    // Dry runs of every command that would change something: no mutating call, no file
    // changed, nothing written on the droplets.
    let ips = sandbox.state_droplets();
    for ip in ips.values() {
        sandbox
            // A droplet's RSA host key is made in the background after it answers SSH
            // (droplet_init.sh): wait for it, so that only what the dry runs write counts.
            .ssh(
                ip,
                "until [ -s /etc/ssh/ssh_host_rsa_key ]; do sleep 0.1; done; touch /tmp/infra-dry-run-marker && sleep 1",
            )
            .unwrap();
    }
    let files = sandbox.files();
    let calls = sandbox.mutating_calls();
    for args in [
        &["--dry-run", "orchestrate", "--force", "--yes"][..],
        &["--dry-run", "scale", "hostomatic", "3"],
        &["--dry-run", "remove-project", "digitalpixo"],
        &[
            "--dry-run",
            "add-project",
            "shop",
            "prod",
            "1",
            "s-1vcpu-1gb",
        ],
    ] {
        let out = sandbox.ok(args);
        assert!(out.stdout.contains("\nPlan: "), "{}", describe(&out));
    }
    assert_eq!(
        sandbox.mutating_calls(),
        calls,
        "a dry run changed the cloud"
    );
    files.assert_same(&sandbox.files());
    for (name, ip) in &ips {
        let written = sandbox
            .ssh(
                ip,
                "find /etc /root /opt /srv /home /var/lib/docker -xdev -newer /tmp/infra-dry-run-marker 2>/dev/null | head -20; docker ps -aq 2>/dev/null",
            )
            .unwrap();
        assert_eq!(written, "", "a dry run wrote on {name}");
    }
}

/// `scale hostomatic 3` makes hostomatic-web3 and puts web services on it; `scale hostomatic 2`
/// takes it away; `remove-project digitalpixo` destroys its droplet and its state; `add-project`
/// makes the new project's droplet.
#[tokio::test(flavor = "multi_thread")]
async fn scale_add_project_and_remove_project_change_the_cloud() {
    let Some(sandbox) = Sandbox::up(&[]) else {
        return;
    };
    sandbox.ok(&["orchestrate"]);
    sandbox.assert_converged(INIT_DROPLETS).await;
    let before = sandbox.state_droplets();

    let out = sandbox.ok(&["scale", "hostomatic", "3"]);
    assert!(
        out.stdout.contains("droplet hostomatic-web3: active at "),
        "{}",
        describe(&out)
    );
    let mut five = INIT_DROPLETS.to_vec();
    five.push("hostomatic-web3");
    sandbox.assert_converged(&five).await;
    let state = sandbox.test.json("config/infrastructure.json");
    assert_eq!(
        state["infrastructure_spec"]["projects"]["hostomatic"]["web_droplets"],
        3
    );
    for env in ["prod", "uat"] {
        let services = &state["projects"][format!("hostomatic-{env}")];
        for web in ["backend", "frontend"] {
            assert_eq!(
                services[web]["assigned_droplets"],
                serde_json::json!(["hostomatic-web1", "hostomatic-web2", "hostomatic-web3"]),
                "{env} {web}"
            );
        }
        // Workers stay where they are.
        assert_eq!(
            services["worker_email"]["assigned_droplets"],
            serde_json::json!(["hostomatic-web1"])
        );
    }
    // The droplets that were there are untouched.
    for (name, ip) in &before {
        assert_eq!(sandbox.state_droplets().get(name), Some(ip), "{name}");
    }
    let web3 = sandbox.state_droplets()["hostomatic-web3"].clone();
    assert_eq!(sandbox.ssh(&web3, "hostname").unwrap(), "hostomatic-web3");

    sandbox.ok(&["scale", "hostomatic", "2"]);
    sandbox.assert_converged(INIT_DROPLETS).await;
    let state = sandbox.test.json("config/infrastructure.json");
    assert_eq!(
        state["projects"]["hostomatic-prod"]["backend"]["assigned_droplets"],
        serde_json::json!(["hostomatic-web1", "hostomatic-web2"])
    );
    assert_eq!(sandbox.state_droplets(), before);

    sandbox.ok(&["remove-project", "digitalpixo"]);
    sandbox
        .assert_converged(&["master", "hostomatic-web1", "hostomatic-web2"])
        .await;
    let state = sandbox.test.json("config/infrastructure.json");
    assert!(state["infrastructure_spec"]["projects"]
        .get("digitalpixo")
        .is_none());
    for key in state["projects"].as_object().unwrap().keys() {
        assert!(
            !key.starts_with("digitalpixo"),
            "{key} is still in the state"
        );
    }
    assert!(
        sandbox.test.json("config/deployment_config.json")["projects"]
            .get("digitalpixo")
            .is_none()
    );

    let out = sandbox.ok(&["add-project", "shop", "prod", "1", "s-1vcpu-1gb"]);
    assert!(
        out.stdout.contains("droplet shop-web1: active at "),
        "{}",
        describe(&out)
    );
    sandbox
        .assert_converged(&["master", "hostomatic-web1", "hostomatic-web2", "shop-web1"])
        .await;
    sandbox.assert_reachable();
    let again = sandbox.ok(&["orchestrate"]);
    assert!(again.stdout.contains("No changes"), "{}", describe(&again));
}

/// SIGKILL at several points of creating and destroying, then a re-run: it converges, with no
/// droplet made twice and a state that matches the cloud.
#[tokio::test(flavor = "multi_thread")]
async fn orchestrate_killed_at_several_points_converges_on_a_rerun() {
    let Some(sandbox) = Sandbox::up(&[]) else {
        return;
    };
    // While the creates are in flight.
    let mut first = sandbox.spawn(&["orchestrate"]);
    first.wait_stdout("saying a droplet is being created", |l| {
        l.contains(": creating")
    });
    first.kill();
    // Once the first droplet is recorded.
    let mut second = sandbox.spawn(&["orchestrate"]);
    second.wait_stdout("saying a droplet is active", is_ready_line);
    second.kill();
    let out = sandbox.ok(&["orchestrate"]);
    assert_eq!(out.code, 0);
    sandbox.assert_converged(INIT_DROPLETS).await;
    sandbox.assert_reachable();

    // Scaling up, killed once the plan is shown (before, during or after the create).
    edit_spec(&sandbox, SCALE_SPEC, &["hostomatic", "3"]);
    let mut up = sandbox.spawn(&["orchestrate"]);
    up.wait_stdout("ending the plan", |l| l.starts_with("Plan: "));
    up.kill();
    sandbox.ok(&["orchestrate"]);
    let mut five = INIT_DROPLETS.to_vec();
    five.push("hostomatic-web3");
    sandbox.assert_converged(&five).await;

    // Scaling down, killed once the plan is shown (before, during or after the delete).
    edit_spec(&sandbox, SCALE_SPEC, &["hostomatic", "2"]);
    let mut down = sandbox.spawn(&["orchestrate"]);
    down.wait_stdout("ending the plan", |l| l.starts_with("Plan: "));
    down.kill();
    sandbox.ok(&["orchestrate"]);
    sandbox.assert_converged(INIT_DROPLETS).await;
    sandbox.assert_reachable();
    let again = sandbox.ok(&["orchestrate"]);
    assert!(again.stdout.contains("No changes"), "{}", describe(&again));
}

/// A fifth of API requests failing (429 with retry-after, or 500): orchestrate, scale up and
/// down still converge, with nothing made twice.
#[tokio::test(flavor = "multi_thread")]
async fn orchestrate_converges_on_a_flaky_sandbox() {
    let Some(sandbox) = Sandbox::up(&["--fail-rate", "0.2"]) else {
        return;
    };
    sandbox.ok(&["orchestrate"]);
    sandbox.assert_converged(INIT_DROPLETS).await;
    sandbox.assert_reachable();
    let again = sandbox.ok(&["orchestrate"]);
    assert!(again.stdout.contains("No changes"), "{}", describe(&again));

    sandbox.ok(&["scale", "hostomatic", "3"]);
    let mut five = INIT_DROPLETS.to_vec();
    five.push("hostomatic-web3");
    sandbox.assert_converged(&five).await;
    sandbox.ok(&["scale", "hostomatic", "2"]);
    sandbox.assert_converged(INIT_DROPLETS).await;
    // With a fifth of some forty requests failing, seeing none at all has odds of about one in
    // ten thousand; both kinds each appear in all but a few runs in a hundred.
    let log = sandbox.test.read("config/.infra/sandbox/server.log");
    assert!(
        log.contains("-> 429") || log.contains("-> 500"),
        "the sandbox injected no faults:\n{log}"
    );
}

/// Runs two `infra ARGS` at once and checks each either succeeded or stopped with the lock
/// message; returns how many succeeded.
fn two_at_once(sandbox: &Sandbox, args: &[&str]) -> usize {
    let mut a = sandbox.spawn(args);
    let mut b = sandbox.spawn(args);
    let (a, b) = (a.finish(), b.finish());
    for (out, other) in [(&a, &b), (&b, &a)] {
        match out.code {
            0 => {}
            1 => assert!(
                out.stderr.contains(LOCKED) && out.stderr.contains(LOCK_ADVICE),
                "stopped, but not by the lock:\n{}\nthe other run:\n{}",
                describe(out),
                describe(other)
            ),
            _ => panic!("unexpected exit code\n{}", describe(out)),
        }
    }
    [&a, &b].iter().filter(|o| o.code == 0).count()
}

/// Two orchestrates at once: the second stops with the lock message (or, given
/// `--lock-timeout`, waits and then finds the work done); no droplet or key is made twice and
/// the state is whole.
#[tokio::test(flavor = "multi_thread")]
async fn two_orchestrates_at_once_neither_duplicate_nor_corrupt() {
    let Some(sandbox) = Sandbox::up(&[]) else {
        return;
    };
    // A fresh account: both would register the key and create every droplet.
    assert!(two_at_once(&sandbox, &["orchestrate"]) >= 1);
    let keys = sandbox.client().list_ssh_keys().await.unwrap();
    assert_eq!(keys.len(), 1, "the key registered twice: {keys:?}");
    sandbox.cloud_droplets().await;
    // The one that stopped left nothing a re-run does not finish.
    sandbox.ok(&["orchestrate"]);
    sandbox.assert_converged(INIT_DROPLETS).await;

    // The key is there: both would go straight to creating hostomatic-web3.
    edit_spec(&sandbox, SCALE_SPEC, &["hostomatic", "3"]);
    assert!(two_at_once(&sandbox, &["orchestrate"]) >= 1);
    sandbox.cloud_droplets().await;
    sandbox.ok(&["orchestrate"]);
    let mut five = INIT_DROPLETS.to_vec();
    five.push("hostomatic-web3");
    sandbox.assert_converged(&five).await;

    // Both willing to wait: both succeed, one after the other.
    edit_spec(&sandbox, SCALE_SPEC, &["hostomatic", "2"]);
    assert_eq!(
        two_at_once(&sandbox, &["--lock-timeout", "240", "orchestrate"]),
        2
    );
    sandbox.assert_converged(INIT_DROPLETS).await;
    sandbox.assert_reachable();
}

/// SSH is allowed only from `ADMIN_IP`: from any other address the droplets do not answer, and
/// orchestrate says it shut this machine out.
#[tokio::test(flavor = "multi_thread")]
async fn ssh_from_outside_admin_ip_is_refused() {
    let Some(sandbox) = Sandbox::up(&[]) else {
        return;
    };
    edit_spec(&sandbox, SMALL_SPEC, &[]);
    let droplets = ["master", "hostomatic-web1"];

    // This machine's address on the sandbox's network (its gateway), as the sandbox recorded
    // it; infra reads the same to default ADMIN_IP.
    let network = sandbox.test.json("config/.infra/sandbox/state.json")["network"].clone();
    let gateway = network["gateway"]
        .as_str()
        .unwrap_or_else(|| panic!("no gateway in the sandbox's network: {network}"))
        .to_owned();
    let mut octets: Vec<u8> = gateway.split('.').map(|o| o.parse().unwrap()).collect();
    assert_eq!(octets.len(), 4, "{gateway}");
    // Another address of the same subnet, which is not this machine and no droplet.
    assert!(
        network["subnet"]
            .as_str()
            .is_some_and(|s| s.ends_with("/24")),
        "{network}"
    );
    octets[3] = 254;
    let elsewhere = format!(
        "{}/32",
        octets
            .iter()
            .map(u8::to_string)
            .collect::<Vec<_>>()
            .join(".")
    );

    // The droplets are made and the firewall set; then infra finds SSH shut out and says so.
    let out = sandbox.infra_as(&elsewhere, &["orchestrate"]);
    assert_eq!(out.code, 1, "{}", describe(&out));
    assert!(
        out.stderr.contains(&format!(
            "since the firewall allows SSH only from ADMIN_IP={elsewhere}, but the droplets see this machine as {gateway}/32"
        )),
        "{}",
        describe(&out)
    );
    sandbox.assert_converged(&droplets).await;
    for (name, ip) in sandbox.state_droplets() {
        assert_ne!(format!("{ip}/32"), elsewhere);
        let refused = sandbox.ssh(&ip, "hostname");
        let error = refused.expect_err(&format!(
            "{name} at {ip} answered SSH from outside ADMIN_IP"
        ));
        assert!(
            !error.contains("Permission denied"),
            "{name}: sshd answered: {error}"
        );
    }

    // From this machine's address it answers.
    let mine = format!("{gateway}/32");
    let out = sandbox.infra_as(&mine, &["update-admin-ip", &mine]);
    assert_eq!(out.code, 0, "{}", describe(&out));
    sandbox.assert_reachable();
}

/// A run that stopped after the droplets were made and recorded but before the firewalls (a
/// crash at that point, played here by the apply steps without `ensure_firewall`): a re-run
/// must still put the firewalls up, though the plan has no droplet or service left to change.
#[tokio::test(flavor = "multi_thread")]
async fn a_rerun_puts_up_the_firewalls_a_crashed_run_did_not_get_to() {
    let Some(sandbox) = Sandbox::up(&[]) else {
        return;
    };
    edit_spec(&sandbox, SMALL_SPEC, &[]);
    edit_spec(
        &sandbox,
        "ensure_ssh_key();\ncreate_droplet(plan().droplets(\"create\"));\nassign_services();\n",
        &[],
    );
    sandbox
        .assert_converged(&["master", "hostomatic-web1"])
        .await;
    assert!(sandbox.client().list_firewalls().await.unwrap().is_empty());

    sandbox.ok(&["orchestrate"]);
    let firewalls = sandbox.client().list_firewalls().await.unwrap();
    let mut names: Vec<&str> = firewalls.iter().map(|f| f.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["infra-fleet", "infra-master"]);
}

/// `infra watch`: orchestrates at once, again when the spec changes (an edit creates the new
/// droplet), never because of orchestrate's own writes to the same file, and a broken edit is
/// reported without applying anything or stopping the watch.
#[tokio::test(flavor = "multi_thread")]
async fn watch_orchestrates_spec_edits_and_survives_a_broken_one() {
    let Some(sandbox) = Sandbox::up(&[]) else {
        return;
    };
    edit_spec(&sandbox, SMALL_SPEC, &[]);
    let mut watch = sandbox.spawn(&["--json", "watch"]);
    let orchestrated = |l: &str| l.contains("\"event\":\"orchestrated\"");
    watch.wait_stdout("the first orchestration", orchestrated);
    assert_eq!(
        sandbox.state_droplets().keys().collect::<Vec<_>>(),
        ["hostomatic-web1", "master"]
    );

    // An edit of the spec: the watch creates the new droplet.
    let state = sandbox.path().join("config/infrastructure.json");
    let scaled = |n: u64| {
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
        v["infrastructure_spec"]["projects"]["hostomatic"]["web_droplets"] = n.into();
        serde_json::to_string_pretty(&v).unwrap()
    };
    std::fs::write(&state, scaled(2)).unwrap();
    watch.wait_stdout("hostomatic-web2 ready", |l| {
        l.contains("\"kind\":\"create_droplet\"") && l.contains("hostomatic-web2")
    });
    watch.wait_stdout("the second orchestration", orchestrated);
    assert!(sandbox.state_droplets().contains_key("hostomatic-web2"));

    // A broken edit: reported, nothing applied; then a good edit is applied again.
    let good = scaled(1);
    let calls = sandbox.mutating_calls().len();
    std::fs::write(&state, "{ \"infrastructure_spec\": ").unwrap();
    // Give the watch the time to see it; nothing may change the cloud meanwhile.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        sandbox.mutating_calls().len(),
        calls,
        "a broken spec was applied"
    );
    std::fs::write(&state, good).unwrap();
    watch.wait_stdout("hostomatic-web2 destroyed", |l| {
        l.contains("\"kind\":\"destroy_droplet\"") && l.contains("hostomatic-web2")
    });
    watch.wait_stdout("the third orchestration", orchestrated);

    // Its own state writes never start another run.
    let calls = sandbox.mutating_calls().len();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        sandbox.mutating_calls().len(),
        calls,
        "orchestrate re-triggered itself"
    );

    let _ = Command::new("kill")
        .args(["-INT", &watch.child.id().to_string()])
        .status();
    let out = watch.finish();
    assert_eq!(out.code, 130, "{}", describe(&out));
    assert!(
        out.stderr.contains("invalid JSON")
            && out.stderr.contains("nothing applied, still watching"),
        "{}",
        describe(&out)
    );
    assert_eq!(
        out.stdout.matches("\"event\":\"orchestrated\"").count(),
        3,
        "{}",
        describe(&out)
    );
    let cloud = sandbox.cloud_droplets().await;
    assert_eq!(cloud, sandbox.state_droplets());
}

/// `infra cleanup` lists infra's snapshots beyond the retention count and deletes them only
/// with `--apply` (the oldest go, the newest 3 stay); every change is in the audit log.
#[tokio::test(flavor = "multi_thread")]
async fn cleanup_deletes_snapshots_beyond_the_retention_count_only_with_apply() {
    let Some(sandbox) = Sandbox::up(&[]) else {
        return;
    };
    edit_spec(&sandbox, SMALL_SPEC, &[]);
    sandbox.ok(&["orchestrate"]);
    let client = sandbox.client();
    let master = client
        .find_tagged_droplet("master", "infra")
        .await
        .unwrap()
        .expect("the master exists");
    // A droplet infra did not make, with snapshots whose names look like infra's: never
    // infra's to delete.
    let mut spec = infra::cloud::DropletSpec::new(
        "s-1vcpu-1gb",
        infra::cloud::ImageRef::Slug("debian-12-x64".into()),
    );
    spec.region = Some("lon1".into());
    let other = client
        .create_droplet(&infra::cloud::DropletCreate {
            name: "someone-elses".into(),
            spec,
        })
        .await
        .unwrap()
        .droplet
        .id;
    for n in 1..=4 {
        for (droplet, name) in [(master.id, "master"), (other, "other")] {
            let action = infra::cloud::DropletAction::Snapshot {
                name: format!("infra-{name}-{n}"),
            };
            let started = client.droplet_action(droplet, &action).await.unwrap();
            client
                .wait_for_action(started.id, Duration::from_millis(200), COMMAND_LIMIT)
                .await
                .unwrap();
        }
        // Creation times have whole seconds: keep them apart so "oldest" is well defined.
        std::thread::sleep(Duration::from_millis(1100));
    }
    let all_names = || async {
        let mut names: Vec<String> = client
            .list_snapshots()
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        names.sort();
        names
    };
    let names = || async {
        let mut names = all_names().await;
        names.retain(|n| n.starts_with("infra-master-"));
        names
    };
    assert_eq!(names().await.len(), 4);

    let listed = sandbox.ok(&["cleanup"]);
    assert!(
        listed.stderr.contains("snapshot infra-master-1 "),
        "{}",
        describe(&listed)
    );
    assert!(
        listed
            .stderr
            .contains("1 snapshot(s) beyond the retention count"),
        "{}",
        describe(&listed)
    );
    assert_eq!(
        names().await.len(),
        4,
        "cleanup without --apply deleted something"
    );

    let applied = sandbox.ok(&["cleanup", "--apply"]);
    assert!(
        applied.stdout.contains("deleted snapshot"),
        "{}",
        describe(&applied)
    );
    assert_eq!(
        names().await,
        ["infra-master-2", "infra-master-3", "infra-master-4"]
    );
    let again = sandbox.ok(&["cleanup"]);
    assert!(
        again.stderr.contains("nothing to clean up"),
        "{}",
        describe(&again)
    );
    assert_eq!(
        all_names()
            .await
            .iter()
            .filter(|n| n.starts_with("infra-other-"))
            .count(),
        4,
        "a snapshot of a droplet infra did not make was touched"
    );
    client.delete_droplet(other).await.unwrap();

    // The audit log: one JSON line per change, with who, what and how it ended.
    let audit = sandbox.test.read("config/.infra/audit.log");
    let entries: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).expect("each audit line is JSON"))
        .collect();
    for e in &entries {
        for field in ["time", "user", "command", "kind", "target", "result"] {
            assert!(e[field].is_string(), "audit entry without `{field}`: {e}");
        }
    }
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions.iter().filter(|a| **a == "create_droplet").count(),
        2,
        "{audit}"
    );
    assert!(
        entries
            .iter()
            .any(|e| e["kind"] == "delete_snapshot" && e["command"] == "infra cleanup --apply"),
        "{audit}"
    );
}
