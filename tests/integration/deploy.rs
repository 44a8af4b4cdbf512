//! Deploys on the sandbox, for real: a git repository the test makes from the sample app in
//! tests/fixtures/sample_app, images built with the local Docker Engine, pushed through an SSH
//! tunnel to the registry on the master, pulled and run by the droplets' own engines, routed by
//! the master's nginx. Requests go to the master's address with the virtual server's Host.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;

use crate::harness::Output;
use crate::orchestrate::{describe, spawn, Sandbox};

/// Deploys build, push and pull real images: more than an orchestrate.
pub(crate) const DEPLOY_LIMIT: Duration = Duration::from_secs(900);

/// Secret values no output, log or file of infra's may contain.
const UAT_SECRET: &str = "uat-canary-4c1d9e";
const PROD_SECRET: &str = "prod-canary-77ab02";

const SECRETS: &[(&str, &str)] = &[
    ("HOSTOMATIC_UAT_DB_PASSWORD", UAT_SECRET),
    ("HOSTOMATIC_PROD_DB_PASSWORD", PROD_SECRET),
    ("DIGITALPIXO_UAT_DB_PASSWORD", UAT_SECRET),
];

/// The sample app as a git repository at `dir`, one commit.
pub(crate) fn sample_repo(dir: &Path) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sample_app");
    let status = Command::new("cp")
        .arg("-r")
        .arg(format!("{}/.", fixture.display()))
        .arg(dir)
        .status()
        .unwrap();
    assert!(status.success());
    git(dir, &["init", "--quiet", "--initial-branch=main"]);
    commit_all(dir, "the sample app");
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=Test", "-c", "user.email=test@example.com"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A change to one file: a line at its end.
fn append(path: &Path, line: &str) {
    let mut text = std::fs::read_to_string(path).unwrap();
    text.push_str(line);
    std::fs::write(path, text).unwrap();
}

fn commit_all(dir: &Path, message: &str) -> String {
    git(dir, &["add", "--all"]);
    git(dir, &["commit", "--quiet", "--allow-empty", "-m", message]);
    git(dir, &["rev-parse", "HEAD"])
}

/// deployment_config.json: both projects build from `repo`.
fn deployment_config(repo: &Path) -> String {
    let services = r#"{
        "backend": {"containerfile_path": "backend/Dockerfile", "secrets": ["db_password"],
                    "environment": {"GREETING": "hello"}, "health_timeout": 20},
        "frontend": {"containerfile_path": "frontend/Dockerfile"},
        "worker_email": {"type": "worker", "containerfile_path": "workers/Dockerfile",
                         "command": "python email_processor.py"},
        "scheduler": {"type": "worker", "containerfile_path": "scheduler/Dockerfile",
                      "command": "python cron_scheduler.py", "singleton": true,
                      "secrets": ["db_password"]}
    }"#;
    let web_only = r#"{
        "backend": {"containerfile_path": "backend/Dockerfile", "secrets": ["db_password"]},
        "frontend": {"containerfile_path": "frontend/Dockerfile"}
    }"#;
    format!(
        r#"{{
  "deployment_platform": "docker",
  "projects": {{
    "hostomatic": {{"repo": {repo}, "branch": "main", "services": {services}}},
    "digitalpixo": {{"repo": {repo}, "branch": "main", "platform": "podman", "services": {web_only}}}
  }}
}}
"#,
        repo = serde_json::to_string(&repo.display().to_string()).unwrap()
    )
}

/// A sandbox with the init spec (master, hostomatic-web1/2, digitalpixo-web1) orchestrated and
/// the sample app's repository beside the project.
fn deployable() -> Option<(Sandbox, tempfile::TempDir)> {
    let sandbox = Sandbox::up(&[])?;
    let repo = tempfile::Builder::new()
        .prefix("infra-app-")
        .tempdir()
        .unwrap();
    sample_repo(repo.path());
    sandbox.test.write(
        "config/deployment_config.json",
        &deployment_config(repo.path()),
    );
    sandbox.ok(&["orchestrate"]);
    Some((sandbox, repo))
}

fn deploy(sandbox: &Sandbox, args: &[&str], env: &[(&str, &str)]) -> Output {
    spawn(&sandbox.test, args, env).finish_within(DEPLOY_LIMIT)
}

fn deploy_ok(sandbox: &Sandbox, args: &[&str]) -> Output {
    let out = deploy(sandbox, args, SECRETS);
    assert_eq!(out.code, 0, "{}", describe(&out));
    out
}

/// One HTTP/1.1 request (no keep-alive) to `ip:80` for `host`: status and body.
fn get(ip: &str, host: &str, path: &str) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect((ip, 80)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status line in {response:?}"))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// What the sample app says about itself.
pub(crate) fn answer(ip: &str, host: &str, path: &str) -> Value {
    let (status, body) = get(ip, host, path).unwrap_or_else(|e| panic!("GET {host}{path}: {e}"));
    assert_eq!(status, 200, "GET {host}{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {host}{path}: {e}: {body}"))
}

/// Which (release, droplet) pairs answer `path` over `tries` requests.
pub(crate) fn answering(
    ip: &str,
    host: &str,
    path: &str,
    tries: usize,
) -> BTreeSet<(String, String)> {
    (0..tries)
        .map(|_| {
            let a = answer(ip, host, path);
            (
                a["release"].as_str().unwrap().to_string(),
                a["droplet"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Requests through nginx, one after another, until stopped: how many, which failed, and
/// which releases answered.
struct Load {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<(usize, Vec<String>, BTreeSet<String>)>,
}

impl Load {
    fn start(ip: &str, host: &str, paths: &[&str]) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let (ip, host) = (ip.to_string(), host.to_string());
        let paths: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
        let handle = std::thread::spawn(move || {
            let mut count = 0;
            let mut failures = Vec::new();
            let mut releases = BTreeSet::new();
            while !flag.load(Ordering::Relaxed) {
                for path in &paths {
                    count += 1;
                    match get(&ip, &host, path) {
                        Ok((200, body)) => {
                            if let Ok(v) = serde_json::from_str::<Value>(&body) {
                                releases.insert(v["release"].as_str().unwrap_or("?").to_string());
                            }
                        }
                        Ok((status, body)) => failures.push(format!("{path}: {status} {body}")),
                        Err(e) => failures.push(format!("{path}: {e}")),
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            (count, failures, releases)
        });
        Load { stop, handle }
    }

    fn stop(self) -> (usize, Vec<String>, BTreeSet<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap()
    }
}

fn releases_json(sandbox: &Sandbox, project: &str, env: &str) -> Value {
    sandbox.ok(&["--json", "releases", project, env]).json()
}

fn current(sandbox: &Sandbox, project: &str, env: &str) -> String {
    releases_json(sandbox, project, env)["current"]
        .as_str()
        .unwrap_or_else(|| panic!("{project} {env} has no current release"))
        .to_string()
}

/// The `push_image` events of a `--json` run: bytes sent through the tunnel, by service.
fn pushed_bytes(out: &Output) -> BTreeMap<String, u64> {
    out.stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["kind"] == "push_image" && v["event"] == "change")
        .map(|v| {
            (
                v["target"].as_str().unwrap().to_string(),
                v["after"]["bytes_sent"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn kinds(out: &Output) -> BTreeSet<String> {
    out.stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["kind"].as_str().map(str::to_string))
        .collect()
}

/// Every file infra wrote in the project, as text.
fn project_files(sandbox: &Sandbox) -> String {
    let mut all = String::new();
    for (path, bytes) in sandbox.test.snapshot().0 {
        if path.starts_with("config/.infra/sandbox") || path.starts_with("config/.infra/checkouts")
        {
            continue;
        }
        all.push_str(&String::from_utf8_lossy(&bytes));
    }
    all
}

// ---------------------------------------------------------------------------------------------

/// deploy-uat through nginx from both web droplets, workers running and absent from nginx, the
/// env file private with the secret, the secret nowhere else; a redeploy of one changed file
/// under constant load: zero failed requests, only the changed layer sent, the singleton never
/// overlapping; deploy-prod with UAT's digests and a snapshot; rollback without a build; a
/// release failing its health check never routed to.
#[tokio::test(flavor = "multi_thread")]
async fn deploy_uat_promote_roll_back_and_refuse_an_unhealthy_release() {
    let Some((sandbox, repo)) = deployable() else {
        return;
    };
    let droplets = sandbox.state_droplets();
    let master = droplets["master"].clone();
    let web1 = droplets["hostomatic-web1"].clone();
    let uat = "uat.hostomatic.internal";

    // First deploy.
    let first = deploy_ok(&sandbox, &["--json", "deploy-uat", "hostomatic"]);
    let release1 = current(&sandbox, "hostomatic", "uat");
    let commit1 = git(repo.path(), &["rev-parse", "HEAD"]);
    assert!(
        release1.starts_with("uat-") && release1.ends_with(&format!("-{}", &commit1[..7])),
        "{release1}"
    );
    for path in ["/api/", "/"] {
        let seen = answering(&master, uat, path, 12);
        let want: BTreeSet<(String, String)> = ["hostomatic-web1", "hostomatic-web2"]
            .iter()
            .map(|d| (release1.clone(), d.to_string()))
            .collect();
        assert_eq!(
            seen, want,
            "{path} answers from both droplets with the release"
        );
    }
    assert_eq!(answer(&master, uat, "/api/")["service"], "backend");
    assert_eq!(answer(&master, uat, "/")["service"], "frontend");
    // Workers run their command on their droplet, and nginx knows nothing of them.
    let workers = sandbox
        .ssh(
            &web1,
            "docker ps --no-trunc --format '{{.Names}} {{.Command}}' | sort",
        )
        .unwrap();
    assert!(
        workers.contains("hostomatic-uat-worker_email \"python email_processor.py\""),
        "{workers}"
    );
    assert!(
        workers.contains("hostomatic-uat-scheduler \"python cron_scheduler.py\""),
        "{workers}"
    );
    let nginx = sandbox.ssh(&master, "cat /etc/nginx/nginx.conf").unwrap();
    assert!(
        nginx.contains("server_name uat.hostomatic.internal;"),
        "{nginx}"
    );
    assert!(
        !nginx.contains("worker_email") && !nginx.contains("scheduler"),
        "{nginx}"
    );
    // The env file: private, with the secret and the INFRA_* variables.
    let env_file = "/etc/infra/env/hostomatic-uat-backend.env";
    assert_eq!(
        sandbox
            .ssh(&web1, &format!("stat -c %a {env_file}"))
            .unwrap(),
        "600"
    );
    let env_text = sandbox.ssh(&web1, &format!("cat {env_file}")).unwrap();
    for line in [
        format!("DB_PASSWORD={UAT_SECRET}"),
        "GREETING=hello".into(),
        "INFRA_PROJECT=hostomatic".into(),
        "INFRA_ENVIRONMENT=uat".into(),
        "INFRA_SERVICE=backend".into(),
        format!("INFRA_RELEASE={release1}"),
        "INFRA_DROPLET=hostomatic-web1".into(),
    ] {
        assert!(env_text.lines().any(|l| l == line), "{line} in {env_text}");
    }
    // The secret is in none of infra's output or files.
    for text in [
        first.stdout.as_str(),
        first.stderr.as_str(),
        &project_files(&sandbox),
    ] {
        assert!(!text.contains(UAT_SECRET), "the UAT secret leaked");
    }

    // A redeploy of one changed file under constant load.
    append(&repo.path().join("backend/app.py"), "# version 2\n");
    commit_all(repo.path(), "backend: version 2");
    let since = sandbox.ssh(&web1, "date +%s").unwrap();
    let load = Load::start(&master, uat, &["/api/", "/"]);
    let second = deploy_ok(&sandbox, &["--json", "deploy-uat", "hostomatic"]);
    let (count, failures, seen) = load.stop();
    let release2 = current(&sandbox, "hostomatic", "uat");
    assert_ne!(release1, release2);
    assert!(count > 50, "only {count} requests during the deploy");
    assert!(
        failures.is_empty(),
        "{} of {count} requests failed: {failures:?}",
        failures.len()
    );
    assert!(seen.contains(&release2), "{seen:?}");
    // Only the changed layer went through the tunnel: the first push carried the base image.
    let (before, after) = (pushed_bytes(&first), pushed_bytes(&second));
    assert!(before["backend"] > 20_000_000, "first push: {before:?}");
    assert!(after["backend"] < 2_000_000, "second push: {after:?}");
    assert!(
        after["frontend"] < 200_000,
        "an unchanged image sends nothing much: {after:?}"
    );
    // The scheduler: the old one died before the new one started.
    let events = sandbox
        .ssh(
            &web1,
            &format!("docker events --since {since} --until $(date +%s) --filter event=start --filter event=die --format '{{{{.Action}}}} {{{{.Actor.Attributes.name}}}} {{{{index .Actor.Attributes \"infra.release\"}}}}' | grep scheduler"),
        )
        .unwrap();
    let lines: Vec<&str> = events.lines().collect();
    assert_eq!(lines.len(), 2, "{events}");
    assert!(
        lines[0].starts_with("die ") && lines[0].ends_with(&release1),
        "{events}"
    );
    assert!(
        lines[1].starts_with("start ") && lines[1].ends_with(&release2),
        "{events}"
    );

    // A no-change redeploy does nothing.
    let same = deploy_ok(&sandbox, &["deploy-uat", "hostomatic"]);
    assert!(same.stdout.contains("already runs"), "{}", describe(&same));

    // Prod: UAT's digests, no build, no push; a snapshot of each droplet.
    let prod = deploy_ok(&sandbox, &["--json", "deploy-prod", "hostomatic"]);
    assert!(!kinds(&prod).contains("build_image") && !kinds(&prod).contains("push_image"));
    let uat_releases = releases_json(&sandbox, "hostomatic", "uat");
    let prod_releases = releases_json(&sandbox, "hostomatic", "prod");
    let digests = |r: &Value| r["releases"][0]["images"].clone();
    assert_eq!(digests(&uat_releases), digests(&prod_releases));
    assert_eq!(
        prod_releases["releases"][0]["promoted_from"],
        release2.as_str()
    );
    let image_of = |name: &str| {
        sandbox
            .ssh(&web1, &format!("docker inspect -f '{{{{.Image}}}}' {name}"))
            .unwrap()
    };
    assert_eq!(
        image_of("hostomatic-uat-backend"),
        image_of("hostomatic-prod-backend")
    );
    let prod_answer = answer(&master, "prod.hostomatic.internal", "/api/");
    assert!(prod_answer["release"]
        .as_str()
        .unwrap()
        .starts_with("prod-"));
    assert!(!prod.stdout.contains(PROD_SECRET) && !prod.stderr.contains(PROD_SECRET));
    let snapshots: Vec<String> = sandbox
        .client()
        .list_snapshots()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    for droplet in ["hostomatic-web1", "hostomatic-web2"] {
        assert!(
            snapshots
                .iter()
                .any(|s| s.starts_with(&format!("infra-{droplet}-"))),
            "{snapshots:?}"
        );
    }

    // Rollback: the previous release, nothing built.
    let back = deploy_ok(&sandbox, &["--json", "rollback", "hostomatic", "uat"]);
    assert!(!kinds(&back).contains("build_image"), "{}", describe(&back));
    assert_eq!(current(&sandbox, "hostomatic", "uat"), release1);
    assert_eq!(
        answering(&master, uat, "/api/", 8)
            .iter()
            .map(|(r, _)| r.clone())
            .collect::<BTreeSet<_>>(),
        BTreeSet::from([release1.clone()])
    );

    // A release whose backend fails its health check: never routed to, the old one serves.
    std::fs::write(repo.path().join("backend/health_status"), "500\n").unwrap();
    commit_all(repo.path(), "backend: unhealthy");
    let load = Load::start(&master, uat, &["/api/"]);
    let bad = deploy(&sandbox, &["deploy-uat", "hostomatic"], SECRETS);
    let (count, failures, seen) = load.stop();
    assert_eq!(bad.code, 1, "{}", describe(&bad));
    assert!(
        bad.stderr
            .contains("`hostomatic-uat-backend` on hostomatic-web1 failed its health check"),
        "{}",
        describe(&bad)
    );
    assert!(bad.stderr.contains("answered 500"), "{}", describe(&bad));
    assert!(
        failures.is_empty(),
        "{} of {count} failed: {failures:?}",
        failures.len()
    );
    assert_eq!(
        seen,
        BTreeSet::from([release1.clone()]),
        "only the old release answered"
    );
    assert_eq!(current(&sandbox, "hostomatic", "uat"), release1);
    let names = sandbox
        .ssh(&web1, "docker ps -a --format '{{.Names}}'")
        .unwrap();
    assert!(
        !names.contains("-next"),
        "the failed container was removed: {names}"
    );
}

/// A project with one web droplet, on podman, rolls with zero failed requests; a missing secret
/// stops before anything changes; a dry run shows the plan and the nginx diff and changes
/// nothing on the droplets; status and discover show the live release; an nginx config that
/// fails `nginx -t` is never installed; a second deploy of the same project-environment at
/// once stops with the lock's holder named.
#[tokio::test(flavor = "multi_thread")]
async fn one_droplet_rolls_without_downtime_and_bad_starts_change_nothing() {
    let Some((sandbox, repo)) = deployable() else {
        return;
    };
    let droplets = sandbox.state_droplets();
    let master = droplets["master"].clone();
    let web = droplets["digitalpixo-web1"].clone();
    let host = "uat.digitalpixo.internal";
    let remote_state = |ip: &str| {
        sandbox
            .ssh(
                ip,
                "podman ps -a --format '{{.Names}}'; ls /etc/infra/env /etc/containers/registries.conf.d 2>&1; md5sum /etc/nginx/nginx.conf /etc/docker/daemon.json",
            )
            .unwrap()
    };
    let before = (remote_state(&web), remote_state(&master));

    // No secret: nothing changes, the variable is named.
    let missing = deploy(&sandbox, &["deploy-uat", "digitalpixo"], &[]);
    assert_eq!(missing.code, 2, "{}", describe(&missing));
    assert!(
        missing.stderr.contains("DIGITALPIXO_UAT_DB_PASSWORD"),
        "{}",
        describe(&missing)
    );
    // A dry run: the plan, no remote change.
    let dry = deploy(
        &sandbox,
        &["--dry-run", "deploy-uat", "digitalpixo"],
        SECRETS,
    );
    assert_eq!(dry.code, 0, "{}", describe(&dry));
    assert!(
        dry.stdout
            .contains("[dry-run] would build digitalpixo-backend:uat-"),
        "{}",
        describe(&dry)
    );
    assert!(
        dry.stdout
            .contains("[dry-run] would start digitalpixo-uat-backend"),
        "{}",
        describe(&dry)
    );
    assert_eq!((remote_state(&web), remote_state(&master)), before);
    assert!(!sandbox
        .path()
        .join("config/.infra/releases/digitalpixo-uat.json")
        .exists());

    deploy_ok(&sandbox, &["deploy-uat", "digitalpixo"]);
    let first = current(&sandbox, "digitalpixo", "uat");
    assert_eq!(answer(&master, host, "/api/")["release"], first.as_str());
    let containers = sandbox
        .ssh(&web, "podman ps --format '{{.Names}}' | sort")
        .unwrap();
    assert_eq!(
        containers, "digitalpixo-uat-backend\ndigitalpixo-uat-frontend",
        "podman runs them"
    );
    // status and discover: the live release per droplet.
    let status = sandbox.ok(&["--json", "status"]).json();
    assert_eq!(
        status["releases"]["digitalpixo-uat"]["current"],
        first.as_str()
    );
    assert_eq!(
        status["releases"]["digitalpixo-uat"]["live"]["backend"]["digitalpixo-web1"],
        first.as_str()
    );
    let discover = sandbox.ok(&["discover", "digitalpixo", "uat"]);
    assert!(
        discover
            .stdout
            .contains(&format!("current release: {first}")),
        "{}",
        describe(&discover)
    );
    assert!(
        discover.stdout.contains(&format!("[{first}]")),
        "{}",
        describe(&discover)
    );

    // A broken nginx template: `nginx -t` on the master refuses it, the old config stays.
    let config_before = sandbox
        .ssh(&master, "md5sum /etc/nginx/nginx.conf")
        .unwrap();
    let template = sandbox.test.read("templates/nginx/nginx.conf.j2");
    sandbox.test.write(
        "templates/nginx/nginx.conf.j2",
        &template.replace(
            "server_tokens off;",
            "server_tokens off;\n    no_such_directive on;",
        ),
    );
    sandbox.test.write("nginx.rhai", "render_nginx();\n");
    let refused = sandbox.infra(&["run", "nginx.rhai"]);
    assert_eq!(refused.code, 1, "{}", describe(&refused));
    assert!(
        refused.stderr.contains("failed `nginx -t`"),
        "{}",
        describe(&refused)
    );
    assert!(
        refused.stderr.contains("no_such_directive"),
        "{}",
        describe(&refused)
    );
    assert_eq!(
        sandbox
            .ssh(&master, "md5sum /etc/nginx/nginx.conf")
            .unwrap(),
        config_before
    );
    assert_eq!(answer(&master, host, "/api/")["release"], first.as_str());
    sandbox
        .test
        .write("templates/nginx/nginx.conf.j2", &template);

    // Under load, twice (the second roll goes back to the service's own port).
    for round in 1..=2 {
        append(
            &repo.path().join("frontend/app.py"),
            &format!("# version {round}\n"),
        );
        commit_all(repo.path(), "frontend: another version");
        let load = Load::start(&master, host, &["/api/", "/"]);
        deploy_ok(&sandbox, &["deploy-uat", "digitalpixo"]);
        let (count, failures, _) = load.stop();
        assert!(count > 20, "only {count} requests");
        assert!(
            failures.is_empty(),
            "round {round}: {} of {count} failed: {failures:?}",
            failures.len()
        );
    }
    let now = current(&sandbox, "digitalpixo", "uat");
    assert_eq!(answer(&master, host, "/")["release"], now.as_str());

    // Two deploys at once: the second stops, naming the first.
    append(&repo.path().join("frontend/app.py"), "# version 3\n");
    commit_all(repo.path(), "frontend: version 3");
    let mut running = spawn(&sandbox.test, &["deploy-uat", "digitalpixo"], SECRETS);
    running.wait_stdout("the checkout", |l| l.contains("checked out"));
    let second = deploy(&sandbox, &["deploy-uat", "digitalpixo"], SECRETS);
    assert_eq!(second.code, 1, "{}", describe(&second));
    assert!(
        second
            .stderr
            .contains("another deploy of `digitalpixo-uat` is running: pid"),
        "{}",
        describe(&second)
    );
    let first_out = running.finish_within(DEPLOY_LIMIT);
    assert_eq!(first_out.code, 0, "{}", describe(&first_out));
}
