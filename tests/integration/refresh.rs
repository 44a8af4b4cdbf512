//! The state tells the truth about the cloud: every `plan` and `orchestrate` lists the
//! droplets tagged `infra` and reconciles — a droplet deleted behind infra's back is shown gone
//! and recreated, an orphan or a duplicate is destroyed, a size change is a real resize — and
//! every mutating native tells in a dry run what it would do, without a mutating call. Also
//! here: secrets never reach a playbook or any output, a wrong ADMIN_IP is said at once, and a
//! closed stdout pipe is success.
//!
//! Like `orchestrate.rs`, these run on a sandbox and need Docker (see
//! `harness::docker_tests_can_run`), except the pipe and secret tests that need no cloud.

use std::process::{Command, Stdio};
use std::time::Duration;

use infra::cloud::{DropletCreate, DropletSpec, ImageRef};

use crate::harness::Test;
use crate::orchestrate::{describe, edit_spec, Sandbox, SMALL_SPEC};

/// master and hostomatic-web1 only.
const SMALL: [&str; 2] = ["master", "hostomatic-web1"];

/// A droplet made through the API behind infra's back, tagged as infra tags its own.
async fn create_tagged(sandbox: &Sandbox, name: &str) -> u64 {
    let mut spec = DropletSpec::new("s-1vcpu-1gb", ImageRef::Slug("debian-12-x64".into()));
    spec.region = Some("lon1".into());
    spec.tags = vec!["infra".into(), name.into()];
    let created = sandbox
        .client()
        .create_droplet(&DropletCreate {
            name: name.into(),
            spec,
        })
        .await
        .expect("create behind infra's back");
    created.droplet.id
}

/// A refreshed plan finds the cloud and the state matching the spec.
fn assert_no_changes(sandbox: &Sandbox) {
    let plan = sandbox.ok(&["plan"]);
    assert!(
        plan.stdout.starts_with("No changes."),
        "{}",
        describe(&plan)
    );
}

fn state_id(sandbox: &Sandbox, name: &str) -> u64 {
    sandbox.test.json("config/infrastructure.json")["droplets"][name]["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("no id recorded for {name}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_droplet_deleted_behind_infras_back_is_shown_gone_and_recreated() {
    let Some(sandbox) = Sandbox::up(&[]) else {
        return;
    };
    edit_spec(&sandbox, SMALL_SPEC, &[]);
    sandbox.ok(&["orchestrate"]);
    let old_id = state_id(&sandbox, "hostomatic-web1");
    sandbox
        .client()
        .delete_droplet(old_id)
        .await
        .expect("delete behind infra's back");

    let before = sandbox.files();
    let plan = sandbox.ok(&["plan"]);
    assert!(
        plan.stdout.contains(
            "  ! droplet hostomatic-web1 (s-2vcpu-4gb, lon1, web, project hostomatic) is gone from the cloud: it is recreated"
        ),
        "{}",
        describe(&plan)
    );
    before.assert_same(&sandbox.files());
    // `--offline` believes the state.
    let offline = sandbox.ok(&["plan", "--offline"]);
    assert!(
        offline.stdout.starts_with("No changes."),
        "{}",
        describe(&offline)
    );

    let out = sandbox.ok(&["orchestrate"]);
    assert!(
        out.stdout.contains("droplet hostomatic-web1: active at "),
        "{}",
        describe(&out)
    );
    assert_ne!(state_id(&sandbox, "hostomatic-web1"), old_id);
    sandbox.assert_converged(&SMALL).await;
    sandbox.assert_reachable();
    // Its services are still placed on it.
    let state = sandbox.test.json("config/infrastructure.json");
    let backend = &state["projects"]["hostomatic-prod"]["backend"]["assigned_droplets"];
    assert_eq!(
        backend,
        &serde_json::json!(["hostomatic-web1"]),
        "{state:#}"
    );
    assert_no_changes(&sandbox);
}

#[tokio::test(flavor = "multi_thread")]
async fn orphans_and_duplicates_are_shown_and_destroyed() {
    let Some(sandbox) = Sandbox::up(&[]) else {
        return;
    };
    edit_spec(&sandbox, SMALL_SPEC, &[]);
    sandbox.ok(&["orchestrate"]);
    let master = state_id(&sandbox, "master");
    let orphan = create_tagged(&sandbox, "hostomatic-web7").await;
    let duplicate = create_tagged(&sandbox, "master").await;

    let plan = sandbox.ok(&["plan"]);
    for line in [
        format!("  - droplet hostomatic-web7 (id {orphan}, "),
        "orphan: tagged `infra`, neither recorded nor in the spec".to_string(),
        format!("  - droplet master (id {duplicate}, "),
        format!("duplicate of id {master}"),
    ] {
        assert!(plan.stdout.contains(&line), "{line}\n{}", describe(&plan));
    }
    let json = sandbox.ok(&["plan", "--json"]).json();
    assert_eq!(json["summary"]["droplets_to_destroy"], 2, "{json:#}");

    // A dry run tells what it would destroy and destroys nothing.
    let calls = sandbox.mutating_calls().len();
    let dry = sandbox.ok(&["--dry-run", "orchestrate"]);
    assert!(
        dry.stdout.contains(&format!(
            "[dry-run] would destroy orphan droplet `hostomatic-web7` (id {orphan})"
        )) && dry.stdout.contains(&format!(
            "[dry-run] would destroy duplicate droplet `master` (id {duplicate}; id {master} is kept)"
        )),
        "{}",
        describe(&dry)
    );
    assert_eq!(
        sandbox.mutating_calls().len(),
        calls,
        "the dry run changed the cloud"
    );

    let out = sandbox.ok(&["orchestrate"]);
    assert!(
        out.stdout.contains(&format!(
            "destroyed orphan droplet `hostomatic-web7` (id {orphan})"
        )),
        "{}",
        describe(&out)
    );
    assert_eq!(
        state_id(&sandbox, "master"),
        master,
        "the recorded master was kept"
    );
    sandbox.assert_converged(&SMALL).await;
    let audit = sandbox.test.read("config/.infra/audit.log");
    assert!(
        audit
            .lines()
            .any(|l| l.contains("\"kind\":\"destroy_droplet\"")
                && l.contains(&format!("\"id\":{duplicate}"))),
        "{audit}"
    );
}

/// SIGKILL right after the create request went out, then the spec drops that droplet: the
/// droplet left behind (recorded or not) is destroyed by the next run.
#[tokio::test(flavor = "multi_thread")]
async fn a_create_killed_in_flight_leaves_nothing_once_the_spec_drops_it() {
    let Some(sandbox) = Sandbox::up(&["--spares", "0"]) else {
        return;
    };
    edit_spec(&sandbox, SMALL_SPEC, &[]);
    sandbox.ok(&["orchestrate"]);
    edit_spec(&sandbox, "scale_project_spec(\"hostomatic\", 2);\n", &[]);
    let creates = || {
        sandbox
            .mutating_calls()
            .iter()
            .filter(|l| l.starts_with("POST /v2/droplets "))
            .count()
    };
    let before = creates();
    let running = sandbox.spawn(&["orchestrate"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while creates() == before {
        assert!(std::time::Instant::now() < deadline, "no create was sent");
        std::thread::sleep(Duration::from_millis(20));
    }
    running.kill();
    edit_spec(&sandbox, "scale_project_spec(\"hostomatic\", 1);\n", &[]);
    let plan = sandbox.ok(&["plan"]);
    assert!(
        plan.stdout.contains("  - droplet hostomatic-web2 ("),
        "the droplet left behind is planned for destruction\n{}",
        describe(&plan)
    );
    sandbox.ok(&["orchestrate"]);
    sandbox.assert_converged(&SMALL).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_size_change_resizes_the_droplet_in_place() {
    let Some(sandbox) = Sandbox::up(&[]) else {
        return;
    };
    edit_spec(&sandbox, "remove_project_spec(\"hostomatic\");\n", &[]);
    sandbox.ok(&["orchestrate"]);
    let id = state_id(&sandbox, "digitalpixo-web1");
    let path = "config/infrastructure.json";
    let text = sandbox.test.read(path).replace(
        "\"web_droplet_spec\": \"s-1vcpu-1gb\"",
        "\"web_droplet_spec\": \"s-2vcpu-4gb\"",
    );
    sandbox.test.write(path, &text);

    let plan = sandbox.ok(&["plan"]);
    assert!(
        plan.stdout
            .contains("  ~ droplet digitalpixo-web1: size s-1vcpu-1gb -> s-2vcpu-4gb"),
        "{}",
        describe(&plan)
    );
    let dry = sandbox.ok(&["--dry-run", "orchestrate"]);
    assert!(
        dry.stdout.contains(
            "[dry-run] would resize droplet `digitalpixo-web1` from s-1vcpu-1gb to s-2vcpu-4gb"
        ),
        "{}",
        describe(&dry)
    );
    let out = sandbox.ok(&["orchestrate"]);
    assert!(
        out.stdout
            .contains("droplet digitalpixo-web1: resized s-1vcpu-1gb -> s-2vcpu-4gb"),
        "{}",
        describe(&out)
    );
    // The same droplet, bigger.
    assert_eq!(state_id(&sandbox, "digitalpixo-web1"), id);
    let state = sandbox.test.json(path);
    assert_eq!(state["droplets"]["digitalpixo-web1"]["size"], "s-2vcpu-4gb");
    let cloud = sandbox.client().get_droplet(id).await.unwrap();
    assert_eq!(cloud.size_slug, "s-2vcpu-4gb");
    let ip = cloud.public_ipv4().unwrap().to_string();
    let nproc = sandbox.ssh(&ip, "nproc").unwrap();
    assert_eq!(nproc, "2", "nproc after the resize");
    let limit = sandbox
        .ssh(
            &ip,
            "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes",
        )
        .unwrap();
    assert_eq!(
        limit,
        (4u64 << 30).to_string(),
        "the memory limit after the resize"
    );
    assert_no_changes(&sandbox);
}

/// A role change cannot be made in place: the plan says so and orchestrate refuses it without
/// `--force`.
#[tokio::test(flavor = "multi_thread")]
async fn a_role_change_needs_force() {
    let Some(sandbox) = Sandbox::up(&[]) else {
        return;
    };
    edit_spec(&sandbox, SMALL_SPEC, &[]);
    sandbox.ok(&["orchestrate"]);
    let path = "config/infrastructure.json";
    let mut state = sandbox.test.json(path);
    state["droplets"]["hostomatic-web1"]["role"] = "master".into();
    sandbox
        .test
        .write(path, &serde_json::to_string_pretty(&state).unwrap());
    let plan = sandbox.ok(&["plan"]);
    assert!(
        plan.stdout.contains("-/+ droplet hostomatic-web1 (s-2vcpu-4gb, lon1, web, project hostomatic) is recreated: a droplet's role cannot change in place (needs --force)"),
        "{}",
        describe(&plan)
    );
    let calls = sandbox.mutating_calls().len();
    let out = sandbox.infra(&["orchestrate"]);
    assert_eq!(out.code, 2, "{}", describe(&out));
    assert!(
        out.stderr.contains("droplet `hostomatic-web1`: a droplet's role cannot change in place; `infra orchestrate --force --yes` recreates the droplets"),
        "{}",
        describe(&out)
    );
    assert_eq!(sandbox.mutating_calls().len(), calls);
}

/// `--dry-run` reaches every mutating native: each tells what it would do, and nothing in the
/// cloud, the files or the droplets changes.
#[tokio::test(flavor = "multi_thread")]
async fn every_mutating_native_tells_what_it_would_do_in_a_dry_run() {
    let Some(sandbox) = Sandbox::up(&[]) else {
        return;
    };
    edit_spec(&sandbox, SMALL_SPEC, &[]);
    // On an empty cloud: the key, the droplets, the services, the fleet's firewall (the
    // master's waits for the master's id).
    let before = sandbox.files();
    let dry = sandbox.ok(&["--dry-run", "orchestrate"]);
    for line in [
        "[dry-run] would register the infrastructure SSH key with the account",
        "[dry-run] would create droplet `master` (s-2vcpu-4gb, lon1, master)",
        "[dry-run] would create droplet `hostomatic-web1` (s-2vcpu-4gb, lon1, web)",
        "[dry-run] would record every service's droplets and ports in the state",
        "[dry-run] would create firewall `infra-fleet` (SSH only from ",
    ] {
        assert!(dry.stdout.contains(line), "{line}\n{}", describe(&dry));
    }
    before.assert_same(&sandbox.files());
    assert_eq!(sandbox.mutating_calls(), Vec::<String>::new());

    sandbox.ok(&["orchestrate"]);
    // The rest, one playbook calling each native directly.
    sandbox.test.write(
        "natives.rhai",
        r#"destroy_droplet("hostomatic-web1");
update_admin_ip("203.0.113.9/32");
ensure_firewall("203.0.113.9/32");
delete_snapshots([#{id: "12345", name: "infra-master-1", droplet: "1", created_at: "2026-01-01T00:00:00Z"}]);
scale_project_spec("hostomatic", 2);
create_droplet("hostomatic-web2");
"#,
    );
    let before = sandbox.files();
    let calls = sandbox.mutating_calls().len();
    let json = sandbox.ok(&["--dry-run", "--json", "run", "natives.rhai"]);
    let events: Vec<serde_json::Value> = json
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .filter(|e| e["dry_run"] == true)
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "destroy_droplet",
            "update_admin_ip",
            "update_firewall",
            "delete_snapshot",
            "edit_spec",
            "create_droplet"
        ],
        "{}",
        describe(&json)
    );
    for e in &events {
        for field in ["kind", "target", "before", "after"] {
            assert!(e.get(field).is_some(), "event without `{field}`: {e}");
        }
    }
    before.assert_same(&sandbox.files());
    assert_eq!(
        sandbox.mutating_calls().len(),
        calls,
        "a dry run changed the cloud"
    );
}

/// A firewall that shuts this machine out is said at once, with the address to use.
#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_admin_ip_is_said_at_once() {
    let Some(sandbox) = Sandbox::up(&[]) else {
        return;
    };
    edit_spec(&sandbox, "remove_project_spec(\"hostomatic\");\n", &[]);
    let started = std::time::Instant::now();
    let out = sandbox.infra_as("198.51.100.7/32", &["orchestrate"]);
    assert_eq!(out.code, 1, "{}", describe(&out));
    let gateway = sandbox_gateway(&sandbox);
    for part in [
        "does not answer from here since the firewall allows SSH only from ADMIN_IP=198.51.100.7/32".to_string(),
        format!("but the droplets see this machine as {gateway}/32"),
        "`infra update-admin-ip CIDR`".to_string(),
    ] {
        assert!(out.stderr.contains(&part), "{part}\n{}", describe(&out));
    }
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "took {:?}: the lock-out must be said at once, not after every SSH wait",
        started.elapsed()
    );
    // With the right address, the next run repairs it.
    sandbox.ok(&["orchestrate"]);
    sandbox.assert_reachable();
}

/// Neither the cloud token nor a configured secret reaches a playbook, the state, the audit
/// log, the lock (read while a run holds it), or any output of a full orchestrate.
#[tokio::test(flavor = "multi_thread")]
async fn tokens_and_secrets_appear_nowhere() {
    let Some(sandbox) = Sandbox::up(&[]) else {
        return;
    };
    let env = sandbox.test.read("config/.infra/sandbox/env");
    let token = env
        .lines()
        .find_map(|l| l.strip_prefix("DO_TOKEN="))
        .unwrap()
        .to_string();
    let canary = "canary-5f1e9a0c7b";
    edit_spec(&sandbox, "remove_project_spec(\"hostomatic\");\n", &[]);
    let secret = [("DIGITALPIXO_PROD_DB_PASSWORD", canary)];
    // The lock, while the first run holds it, names the subcommand and playbook only.
    let mut first = crate::orchestrate::spawn(
        &sandbox.test,
        &["--json", "run", "orchestrate", "--", "--canary", canary],
        &secret,
    );
    let lock_path = sandbox.path().join("config/.infra/state.lock");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let lock = loop {
        match std::fs::read_to_string(&lock_path) {
            Ok(text) if !text.is_empty() => break text,
            _ => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the run never took the lock"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    };
    assert!(lock.contains("infra --json run orchestrate"), "{lock}");
    let out = first.finish();
    assert_eq!(out.code, 0, "{}", describe(&out));
    let mut outputs = vec![lock, format!("{}{}", out.stdout, out.stderr)];
    for args in [
        vec!["orchestrate"],
        vec!["status", "--refresh"],
        vec!["--json", "plan"],
    ] {
        let out = crate::orchestrate::run(&sandbox.test, &args, &secret);
        assert_eq!(out.code, 0, "{}", describe(&out));
        outputs.push(format!("{}{}", out.stdout, out.stderr));
    }
    // A playbook asking for either gets a refusal, not the value.
    sandbox.test.write("peek.rhai", "print(env(ARGS[0]));\n");
    for name in ["DO_TOKEN", "DIGITALPIXO_PROD_DB_PASSWORD"] {
        let out = crate::orchestrate::run(
            &sandbox.test,
            &["run", "peek.rhai", name],
            &[
                ("DIGITALPIXO_PROD_DB_PASSWORD", canary),
                ("DO_TOKEN", &token),
            ],
        );
        assert_eq!(out.code, 2, "{}", describe(&out));
        assert!(
            out.stderr.contains(&format!(
                "`{name}` holds a secret, and playbooks cannot read secrets"
            )),
            "{}",
            describe(&out)
        );
        outputs.push(format!("{}{}", out.stdout, out.stderr));
    }
    let mut texts = outputs;
    for file in ["config/infrastructure.json", "config/.infra/audit.log"] {
        texts.push(sandbox.test.read(file));
    }
    let audit = sandbox.test.read("config/.infra/audit.log");
    assert!(
        audit.contains("\"command\":\"infra --json run orchestrate\""),
        "the audit log records the subcommand and playbook: {audit}"
    );
    for text in &texts {
        assert!(!text.contains(&token), "the token leaked: {text}");
        assert!(!text.contains(canary), "the secret leaked: {text}");
    }
}

/// `infra status | head -1` on a large state: the closed pipe is success, without a panic.
#[test]
fn a_closed_pipe_is_success() {
    let test = Test::init();
    let path = test.path().join("config/infrastructure.json");
    let mut state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let droplets = state["droplets"].as_object_mut().unwrap();
    for i in 0..3000 {
        droplets.insert(
            format!("extra-web{i}"),
            serde_json::json!({"ip": "203.0.113.1", "size": "s-1vcpu-1gb", "region": "lon1", "role": "web"}),
        );
    }
    std::fs::write(&path, serde_json::to_string(&state).unwrap()).unwrap();
    let out = Command::new("bash")
        .args([
            "-c",
            &format!(
                "'{}' status | head -1 >/dev/null; exit ${{PIPESTATUS[0]}}",
                env!("CARGO_BIN_EXE_infra")
            ),
        ])
        .current_dir(test.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// `infra watch`: an orchestration that fails (here: a stored administrator address that
/// shuts this machine out) is tried again with back-off, and goes through once the cause is
/// gone, without a spec edit.
#[tokio::test(flavor = "multi_thread")]
async fn watch_retries_a_failed_orchestration() {
    let Some(sandbox) = Sandbox::up(&[]) else {
        return;
    };
    edit_spec(&sandbox, "remove_project_spec(\"hostomatic\");\n", &[]);
    sandbox.ok(&["update-admin-ip", "198.51.100.7/32"]);
    let mut watch = sandbox.spawn(&["--json", "watch"]);
    // The first run fails at once: no droplet could be reached through that firewall.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        sandbox
            .client()
            .list_droplets_by_tag("infra")
            .await
            .unwrap(),
        vec![]
    );
    // Stored at the state's root, outside the spec: no edit for the watch to react to.
    let right = format!("{}/32", sandbox_gateway(&sandbox));
    sandbox.ok(&["--lock-timeout", "120", "update-admin-ip", &right]);
    watch.wait_stdout("an orchestration after the retry", |l| {
        l.contains("\"event\":\"orchestrated\"")
    });
    let _ = Command::new("kill")
        .args(["-INT", &watch.pid().to_string()])
        .status();
    let out = watch.finish();
    assert!(
        out.stderr.contains(
            "the firewall `infra-fleet` allows SSH only from 198.51.100.7/32, but the droplets see this machine as "
        ) && out.stderr.contains("trying again in 5 s"),
        "{}",
        describe(&out)
    );
    sandbox
        .assert_converged(&["master", "digitalpixo-web1"])
        .await;
    sandbox.assert_reachable();
}

/// The address the droplets see this machine as, on the sandbox's network.
fn sandbox_gateway(sandbox: &Sandbox) -> String {
    let state = sandbox.test.json("config/.infra/sandbox/state.json");
    state["network"]["gateway"]
        .as_str()
        .expect("the sandbox network's gateway")
        .to_string()
}
