//! `infra recover` on the sandbox, for real: a deployed web droplet is powered off through the
//! sandbox's API and rebuilt from its snapshot: one droplet of that name in the cloud, the state
//! and the cloud agreeing on its new address, nginx on the master pointing at it, requests
//! through nginx answered by it again. A dry run changes nothing; a second run does nothing.

use std::collections::BTreeSet;
use std::time::Duration;

use infra::cloud::DropletAction;
use serde_json::Value;

use crate::deploy::{answering, sample_repo, DEPLOY_LIMIT};
use crate::harness::{Output, Test};
use crate::orchestrate::{describe, spawn, Sandbox};

pub(crate) const SECRETS: &[(&str, &str)] = &[("HOSTOMATIC_UAT_DB_PASSWORD", "uat-canary-5e0f1a")];
const DROPLETS: &[&str] = &["master", "hostomatic-web1", "hostomatic-web2"];
pub(crate) const UAT: &str = "uat.hostomatic.internal";

/// hostomatic's two web services and a worker, built from `repo`.
pub(crate) fn deployment_config(repo: &std::path::Path) -> String {
    format!(
        r#"{{
  "deployment_platform": "docker",
  "projects": {{
    "hostomatic": {{"repo": {repo}, "branch": "main", "services": {{
      "backend": {{"containerfile_path": "backend/Dockerfile", "secrets": ["db_password"], "health_timeout": 20}},
      "frontend": {{"containerfile_path": "frontend/Dockerfile"}},
      "worker_email": {{"type": "worker", "containerfile_path": "workers/Dockerfile",
                        "command": "python email_processor.py"}}
    }}}}
  }}
}}
"#,
        repo = serde_json::to_string(&repo.display().to_string()).unwrap()
    )
}

fn run(sandbox: &Sandbox, args: &[&str]) -> Output {
    spawn(&sandbox.test, args, SECRETS).finish_within(DEPLOY_LIMIT)
}

pub(crate) fn run_ok(sandbox: &Sandbox, args: &[&str]) -> Output {
    let out = run(sandbox, args);
    assert_eq!(out.code, 0, "{}", describe(&out));
    out
}

fn events(out: &Output) -> Vec<Value> {
    out.stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Powers droplet `id` off through the sandbox's API and waits for the action to finish.
pub(crate) async fn power_off(client: &infra::cloud::Client, id: u64) {
    let action = client
        .droplet_action(id, &DropletAction::PowerOff)
        .await
        .unwrap();
    client
        .wait_for_action(
            action.id,
            Duration::from_millis(200),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
}

/// The droplets in the cloud named `name`: (id, status, IP, image name).
pub(crate) async fn named(sandbox: &Sandbox, name: &str) -> Vec<(u64, String, String, String)> {
    sandbox
        .client()
        .list_droplets(None)
        .await
        .unwrap()
        .into_iter()
        .filter(|d| d.name == name)
        .map(|d| {
            (
                d.id,
                format!("{:?}", d.status).to_lowercase(),
                d.public_ipv4().map(|ip| ip.to_string()).unwrap_or_default(),
                d.image.name.clone().unwrap_or_default(),
            )
        })
        .collect()
}

/// A project with a master and two web droplets, deployed, one snapshotted. The snapshotted
/// one powered off: `infra recover` brings it back from the snapshot, once. Then the other:
/// drained alone (the monitors' first step), then recovered from the base image with its
/// services deployed again from the master's registry.
#[tokio::test(flavor = "multi_thread")]
async fn recover_rebuilds_a_powered_off_droplet_from_its_snapshot_once() {
    let Some(sandbox) = Sandbox::up(&[]) else {
        return;
    };
    let repo = tempfile::Builder::new()
        .prefix("infra-app-")
        .tempdir()
        .unwrap();
    sample_repo(repo.path());
    sandbox.test.write(
        "config/deployment_config.json",
        &deployment_config(repo.path()),
    );
    sandbox
        .test
        .write("small.rhai", "remove_project_spec(\"digitalpixo\");\n");
    sandbox.ok(&["run", "small.rhai"]);
    sandbox.ok(&["orchestrate"]);
    run_ok(&sandbox, &["deploy-uat", "hostomatic"]);
    sandbox
        .test
        .write("snap.rhai", "snapshot(\"hostomatic-web1\");\n");
    sandbox.ok(&["run", "snap.rhai"]);

    let before = sandbox.state_droplets();
    let master = before["master"].clone();
    let old_ip = before["hostomatic-web1"].clone();
    let both: BTreeSet<String> = ["hostomatic-web1", "hostomatic-web2"]
        .iter()
        .map(|d| d.to_string())
        .collect();
    let droplets_answering = |path: &str| -> BTreeSet<String> {
        answering(&master, UAT, path, 12)
            .into_iter()
            .map(|(_, droplet)| droplet)
            .collect()
    };
    assert_eq!(droplets_answering("/api/"), both);

    // The droplet dies: powered off through the sandbox's API.
    let old = named(&sandbox, "hostomatic-web1").await;
    assert_eq!(old.len(), 1, "{old:?}");
    let old_id = old[0].0;
    let client = sandbox.client();
    power_off(&client, old_id).await;

    // A dry run tells the plan and changes nothing: files, the cloud, nginx on the master.
    let files = sandbox.files();
    let calls = sandbox.mutating_calls().len();
    let nginx_before = sandbox.ssh(&master, "cat /etc/nginx/nginx.conf").unwrap();
    let dry = run_ok(&sandbox, &["--dry-run", "recover", "hostomatic-web1"]);
    for want in [
        "[dry-run] would drain hostomatic-web1 from nginx",
        &format!("[dry-run] would fence hostomatic-web1: power off id {old_id}"),
        "[dry-run] would create hostomatic-web1 (",
        ") from snapshot infra-hostomatic-web1-",
        &format!("then destroy the fenced original (id {old_id})"),
        "[dry-run] would start hostomatic-uat-backend",
        "[dry-run] would start hostomatic-uat-worker_email",
    ] {
        assert!(
            dry.stdout.contains(want),
            "no `{want}` in:\n{}",
            describe(&dry)
        );
    }
    files.assert_same(&sandbox.files());
    assert_eq!(
        sandbox.mutating_calls().len(),
        calls,
        "a dry run called the cloud"
    );
    assert_eq!(
        sandbox.ssh(&master, "cat /etc/nginx/nginx.conf").unwrap(),
        nginx_before
    );
    assert_eq!(named(&sandbox, "hostomatic-web1").await, {
        let mut now = old.clone();
        now[0].1 = "off".into();
        now
    });

    // The recovery.
    let out = run_ok(&sandbox, &["--json", "recover", "hostomatic-web1"]);
    let kinds: Vec<String> = events(&out)
        .iter()
        .filter(|e| e["event"] == "change")
        .filter_map(|e| e["kind"].as_str().map(String::from))
        .collect();
    for kind in [
        "drain_droplet",
        "fence_droplet",
        "recreate_droplet",
        "destroy_droplet",
        "start_service",
        "restore_droplet",
    ] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "no {kind} in {kinds:?}\n{}",
            describe(&out)
        );
    }
    assert!(
        events(&out).iter().any(|e| e["event"] == "recovered"),
        "{}",
        describe(&out)
    );

    // One droplet of that name, made from the snapshot, and the state agrees with the cloud.
    let now = named(&sandbox, "hostomatic-web1").await;
    assert_eq!(now.len(), 1, "exactly one hostomatic-web1: {now:?}");
    let (new_id, status, new_ip, image) = now[0].clone();
    assert_ne!(new_id, old_id);
    assert_eq!(status, "active");
    assert!(
        image.starts_with("infra-hostomatic-web1-"),
        "made from {image}"
    );
    sandbox.assert_converged(DROPLETS).await;
    assert_eq!(sandbox.state_droplets()["hostomatic-web1"], new_ip);
    let state = sandbox.test.json("config/infrastructure.json");
    assert!(
        state["droplets"]["hostomatic-web1"]
            .get("drained")
            .is_none(),
        "{state:#}"
    );
    sandbox.assert_reachable();

    // nginx points at the new address, and requests through it answer from both droplets.
    let nginx = sandbox.ssh(&master, "cat /etc/nginx/nginx.conf").unwrap();
    assert!(nginx.contains(&format!("server {new_ip}:")), "{nginx}");
    if new_ip != old_ip {
        assert!(!nginx.contains(&format!("server {old_ip}:")), "{nginx}");
    }
    assert_eq!(droplets_answering("/api/"), both);
    assert_eq!(droplets_answering("/"), both);
    let workers = sandbox
        .ssh(&new_ip, "docker ps --format '{{.Names}}' | sort")
        .unwrap();
    assert!(workers.contains("hostomatic-uat-worker_email"), "{workers}");

    // The checkpoint says what was done, and the incident is closed.
    let ck = sandbox
        .test
        .json("config/.infra/recovery/hostomatic-web1.json");
    assert!(ck.get("incident").is_none(), "{ck:#}");
    let steps: Vec<&str> = ck["last"]["steps"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        steps,
        [
            "drain",
            "fence",
            "recreate",
            "destroy_original",
            "services",
            "restore"
        ],
        "{ck:#}"
    );

    // Again: nothing to recover, and nothing asked of the cloud.
    let calls = sandbox.mutating_calls().len();
    let files = sandbox.files();
    let again = run_ok(&sandbox, &["recover", "hostomatic-web1"]);
    assert!(
        again.stderr.contains("nothing to recover") || again.stdout.contains("nothing to recover"),
        "{}",
        describe(&again)
    );
    assert_eq!(
        sandbox.mutating_calls().len(),
        calls,
        "{}",
        describe(&again)
    );
    assert_eq!(named(&sandbox, "hostomatic-web1").await, now);
    files.assert_same(&sandbox.files());

    // The other droplet has no snapshot. The monitors' first step alone: drained, requests
    // keep answering from hostomatic-web1.
    let web2 = named(&sandbox, "hostomatic-web2").await;
    power_off(&client, web2[0].0).await;
    run_ok(
        &sandbox,
        &["run", "playbooks/recovery.rhai", "hostomatic-web2", "drain"],
    );
    let only_web1: BTreeSet<String> = ["hostomatic-web1".to_string()].into();
    assert_eq!(droplets_answering("/api/"), only_web1);
    assert_eq!(droplets_answering("/"), only_web1);
    let state = sandbox.test.json("config/infrastructure.json");
    assert!(
        state["droplets"]["hostomatic-web2"]["drained"]["incident"]
            .as_str()
            .is_some_and(|i| i.starts_with("hostomatic-web2-")),
        "{state:#}"
    );

    // `infra recover` resumes that incident (the drain is not done again), makes the droplet
    // from the base image and deploys its services from the master's registry.
    let out = run_ok(&sandbox, &["recover", "hostomatic-web2"]);
    for want in [
        "hostomatic-web2: resuming incident hostomatic-web2-",
        "drain: done already at ",
        "from the base image",
    ] {
        assert!(
            out.stdout.contains(want) || out.stderr.contains(want),
            "no `{want}` in:\n{}",
            describe(&out)
        );
    }
    let rebuilt = named(&sandbox, "hostomatic-web2").await;
    assert_eq!(rebuilt.len(), 1, "exactly one hostomatic-web2: {rebuilt:?}");
    assert_ne!(rebuilt[0].0, web2[0].0);
    assert!(
        !rebuilt[0].3.starts_with("infra-"),
        "made from {}",
        rebuilt[0].3
    );
    sandbox.assert_converged(DROPLETS).await;
    assert_eq!(droplets_answering("/api/"), both);
    assert_eq!(droplets_answering("/"), both);
    let containers = sandbox
        .ssh(&rebuilt[0].2, "docker ps --format '{{.Names}}' | sort")
        .unwrap();
    // The worker is placed on hostomatic-web1 only.
    assert_eq!(
        containers, "hostomatic-uat-backend\nhostomatic-uat-frontend",
        "deployed again"
    );
}

#[test]
fn recover_names_a_droplet_the_state_does_not_have() {
    Test::init()
        .args(["recover", "nope"])
        .run()
        .assert_code(2)
        .assert_stderr_contains(
            "droplet \"nope\" is not in the state; \"infra status\" lists the droplets",
        );
}

#[test]
fn recovery_rhai_names_an_unknown_step() {
    Test::init()
        .args([
            "run",
            "playbooks/recovery.rhai",
            "hostomatic-web1",
            "reboot",
        ])
        .run()
        .assert_code(2)
        .assert_stderr_contains("unknown step \"reboot\"; use recover, drain, check or restore");
}

#[test]
fn auto_recover_master_must_be_true_or_false() {
    let test = Test::init();
    let mut state = test.json("config/infrastructure.json");
    state["infrastructure_spec"]["auto_recover_master"] = "yes".into();
    test.write(
        "config/infrastructure.json",
        &serde_json::to_string_pretty(&state).unwrap(),
    );
    test.infra(["validate"])
        .assert_code(2)
        .assert_stderr_contains(
            "config/infrastructure.json: infrastructure_spec.auto_recover_master: expected true or false, found \"yes\"",
        );
}

/// The monitors' coordinator calls each step of recovery.rhai as a function of the droplet's
/// name alone (without running the playbook's top level).
#[test]
fn recovery_rhai_has_the_steps_the_monitors_call() {
    let dir = tempfile::tempdir().unwrap();
    let project = infra::project::Project::new(dir.path(), std::path::Path::new("config"));
    let options = infra::host::RunOptions {
        dry_run: true,
        offline: false,
        json: false,
        command: "infra test".into(),
        lock_timeout: Duration::ZERO,
    };
    let host = infra::host::Host::new(std::sync::Arc::new(infra::host::Context::new(
        project.clone(),
        options,
        Default::default(),
    )));
    let source = project.playbook("playbooks/recovery.rhai").unwrap();
    let compiled = host.compile(&source).unwrap();
    let steps: BTreeSet<String> = compiled
        .ast
        .iter_functions()
        .filter(|f| f.params.len() == 1)
        .map(|f| f.name.to_string())
        .collect();
    for step in ["drain", "check", "recover", "restore"] {
        assert!(steps.contains(step), "no {step}(droplet) in {steps:?}");
    }
}
