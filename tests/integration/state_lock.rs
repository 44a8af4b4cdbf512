//! One writer at a time, and a state file that survives being killed mid-save.
//!
//! Edits take the state lock and hold it until the run ends, so a playbook that edits and then
//! sleeps holds the lock for as long as the test needs: no timing is assumed.

use regex::Regex;
use serde_json::Value;

use crate::harness::Test;

const STATE: &str = "config/infrastructure.json";

/// A playbook that edits the state (taking the lock), says so, and waits to be interrupted.
const HOLD: &str = "add_project_spec(\"holder\", [\"prod\"], 1, \"s-1vcpu-1gb\");\nlog(\"holding\");\nsleep(600);\n";

/// What `infra add-project shop prod 1 s-1vcpu-1gb` does to the spec, without orchestrating
/// afterwards (which needs a cloud; `orchestrate.rs` tests that on the sandbox).
const ADD_SHOP: &str =
    "add_project_spec(\"shop\", [\"prod\"], 1, \"s-1vcpu-1gb\");\nshow_plan(plan());\n";

/// `remove_project_spec(ARGS[0])`, what `infra remove-project` edits the spec with.
const REMOVE: &str = "remove_project_spec(ARGS[0]);\nshow_plan(plan());\n";

fn projects(test: &Test) -> Vec<String> {
    let state: Value = test.json(STATE);
    state["infrastructure_spec"]["projects"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

#[test]
fn a_second_writer_fails_naming_the_holder() {
    let test = Test::init().file("hold.rhai", HOLD);
    let mut holder = test.spawn(["run", "hold.rhai"]);
    holder.wait_for("holding");

    let before = test.snapshot();
    let out = test.infra(["add-project", "shop", "prod", "1", "s-1vcpu-1gb"]);
    out.assert_code(1);
    let pattern = Regex::new(
        r"^error: the state is locked by pid (\d+) on (\S+) \(`infra run hold\.rhai`\) since (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ); wait for it to finish, or retry with `--lock-timeout SECONDS`\n",
    )
    .unwrap();
    let caps = pattern
        .captures(&out.stderr)
        .unwrap_or_else(|| panic!("unexpected stderr:\n{}", out.stderr));
    assert_eq!(caps[1].parse::<u32>().unwrap(), holder.pid());
    assert_eq!(&caps[2], infra::state::lock::host_name());
    before.assert_same(&test.snapshot());

    holder.signal("INT");
    holder.finish().assert_code(130);
    assert_eq!(projects(&test), ["hostomatic", "digitalpixo", "holder"]);
}

#[test]
fn a_second_writer_with_a_lock_timeout_waits_and_then_succeeds() {
    let test = Test::init()
        .file("hold.rhai", HOLD)
        .file("add.rhai", ADD_SHOP);
    let mut holder = test.spawn(["run", "hold.rhai"]);
    holder.wait_for("holding");

    let waiter = test.spawn(["--lock-timeout", "20", "run", "add.rhai"]);
    // Give the waiter a moment to start waiting (the test passes either way).
    std::thread::sleep(std::time::Duration::from_millis(500));
    holder.signal("INT");
    holder.finish().assert_code(130);

    let out = waiter.finish();
    out.assert_code(0).assert_stderr_contains(
        "add project `shop` to infrastructure_spec.projects (environments prod; 1 web droplet of s-1vcpu-1gb): saved\n",
    );
    // The waiter re-read the file after getting the lock: the holder's edit is kept.
    assert_eq!(
        projects(&test),
        ["hostomatic", "digitalpixo", "holder", "shop"]
    );
    test.infra(["validate"]).assert_success();
}

#[test]
fn a_process_killed_while_saving_leaves_a_file_that_parses() {
    let test = Test::init()
        .file(
            "churn.rhai",
            "loop {\n    if \"churn\" in spec().projects {\n        remove_project_spec(\"churn\");\n    } else {\n        add_project_spec(\"churn\", [\"prod\"], 1, \"s-1vcpu-1gb\");\n    }\n}\n",
        )
        .file("remove.rhai", REMOVE);
    let original = test.read(STATE);
    for round in 0..6 {
        let mut running = test.spawn(["run", "churn.rhai"]);
        // Let it save a varying number of times, then kill it wherever it is.
        for _ in 0..(5 + round * 7) {
            running.wait_for_line("ending in `: saved`", |l| l.ends_with(": saved"));
        }
        running.signal("KILL");
        running.finish().assert_code(128 + 9);

        let text = test.read(STATE);
        let state: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("round {round}: the state does not parse ({e}):\n{text}"));
        let names: Vec<&String> = state["infrastructure_spec"]["projects"]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        assert!(
            names == ["hostomatic", "digitalpixo"]
                || names == ["hostomatic", "digitalpixo", "churn"],
            "round {round}: {names:?}"
        );
        if names.len() == 2 {
            assert_eq!(text, original, "round {round}");
        }
        // The next writer takes over the dead process's lock.
        test.infra(["validate"]).assert_success();
    }
    // Left as it was: the last run may have died between add and remove.
    if projects(&test).contains(&"churn".to_string()) {
        test.infra(["run", "remove.rhai", "churn"]).assert_success();
    }
    assert_eq!(test.read(STATE), original);
}

#[test]
fn a_stale_lock_is_taken_over() {
    // A pid that certainly belonged to a process that has ended.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();

    let stale = format!(
        r#"{{"pid":{dead},"host":"{}","command":"infra orchestrate","since":"2020-01-01T00:00:00Z"}}"#,
        infra::state::lock::host_name()
    );
    let test = Test::init()
        .file("config/.infra/state.lock", &stale)
        .file("add.rhai", ADD_SHOP)
        .file("remove.rhai", REMOVE);
    test.infra(["run", "add.rhai"])
        .assert_success()
        .assert_stderr(&format!(
            "warning: took over a stale lock left by pid {dead} (`infra orchestrate`, since 2020-01-01T00:00:00Z)\n\
             add project `shop` to infrastructure_spec.projects (environments prod; 1 web droplet of s-1vcpu-1gb): saved\n"
        ));
    assert!(projects(&test).contains(&"shop".to_string()));
    // Released: the lock file is emptied, and the next writer finds nothing stale.
    assert_eq!(test.read("config/.infra/state.lock"), "");
    test.infra(["run", "remove.rhai", "shop"])
        .assert_success()
        .assert_stderr("remove project `shop` from infrastructure_spec.projects: saved\n");
}

#[test]
fn saves_after_a_crash_leave_no_temp_files_behind() {
    let test = Test::init()
        .file(
            "churn.rhai",
            "loop {\n    if \"churn\" in spec().projects {\n        remove_project_spec(\"churn\");\n    } else {\n        add_project_spec(\"churn\", [\"prod\"], 1, \"s-1vcpu-1gb\");\n    }\n}\n",
        )
        .file("add.rhai", ADD_SHOP);
    for round in 0..10 {
        let mut running = test.spawn(["run", "churn.rhai"]);
        for _ in 0..(3 + round) {
            running.wait_for_line("ending in `: saved`", |l| l.ends_with(": saved"));
        }
        running.signal("KILL");
        running.finish();
    }
    test.infra(["run", "add.rhai"]).assert_success();
    let leftovers: Vec<String> = std::fs::read_dir(test.path().join("config"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp."))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
