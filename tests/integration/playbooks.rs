//! Playbooks: every bundled one compiles, `infra run` hands them ARGS and OPTS, and the commands
//! that are playbooks (plan, add-project, scale, remove-project) and the built-in reports
//! (status, discover) print what the user needs.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use infra::host::{Context, Host, RunOptions};
use infra::project::{embedded_defaults, Project, Source};

use crate::harness::{Snapshot, Test};

fn host_in(dir: &std::path::Path) -> Host {
    let project = Project::new(dir, std::path::Path::new("config"));
    let options = RunOptions {
        dry_run: true,
        offline: false,
        json: false,
        command: "infra test".into(),
        lock_timeout: Duration::ZERO,
    };
    Host::new(Arc::new(Context::new(
        project,
        options,
        Arc::new(AtomicBool::new(false)),
    )))
}

#[test]
fn every_bundled_playbook_and_stdlib_module_compiles() {
    let dir = tempfile::tempdir().unwrap();
    let host = host_in(dir.path());
    let scripts: Vec<(String, &str)> = embedded_defaults()
        .into_iter()
        .filter(|(path, _)| path.ends_with(".rhai"))
        .collect();
    let playbooks = scripts
        .iter()
        .filter(|(p, _)| p.starts_with("playbooks/"))
        .count();
    let modules: Vec<&str> = scripts
        .iter()
        .filter_map(|(p, _)| p.strip_prefix("stdlib/")?.strip_suffix(".rhai"))
        .collect();
    // The four the foundation ships, at least.
    assert!(playbooks >= 4, "{scripts:?}");
    assert!(modules.contains(&"args"), "{scripts:?}");

    let mut failures = Vec::new();
    for (path, text) in &scripts {
        let source = Source {
            display: format!("<embedded>/{path}"),
            path: None,
            text: text.to_string(),
        };
        if let Err(e) = host.compile(&source) {
            failures.push(e.to_string());
        }
    }
    // Modules also through `import`, the way playbooks load them.
    for name in &modules {
        let source = Source {
            display: format!("import-{name}.rhai"),
            path: None,
            text: format!("import \"{name}\" as m;\n"),
        };
        if let Err(e) = host.compile(&source) {
            failures.push(e.to_string());
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// `infra init` writes the same playbooks, and the written copies compile too.
#[test]
fn init_writes_every_bundled_script_and_they_compile() {
    let test = Test::init();
    let host = host_in(test.path());
    for (path, text) in embedded_defaults() {
        if !path.ends_with(".rhai") {
            continue;
        }
        assert_eq!(test.read(&path), text, "{path}");
        let source = infra::project::Project::new(test.path(), "config".as_ref())
            .source(&path)
            .unwrap();
        assert_eq!(source.display, path);
        host.compile(&source)
            .unwrap_or_else(|e| panic!("{path} does not compile:\n{e}"));
    }
}

#[test]
fn run_passes_args_and_opts() {
    let test = Test::new().file(
        "show.rhai",
        "print(\"ARGS/OPTS \" + to_json(#{args: ARGS, opts: OPTS}));\n",
    );
    let out = test.infra([
        "run",
        "show.rhai",
        "one",
        "two words",
        "--",
        "--key",
        "value",
        "--flag",
        "--with-dash",
        "x",
        "--eq=1",
    ]);
    out.assert_success().assert_stdout("");
    let line = out
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("ARGS/OPTS "))
        .unwrap_or_else(|| panic!("no ARGS/OPTS line in:\n{}", out.stderr));
    let got: Value = serde_json::from_str(line).unwrap();
    assert_eq!(
        got,
        json!({
            "args": ["one", "two words"],
            "opts": {"key": "value", "flag": true, "with_dash": "x", "eq": "1"}
        })
    );
}

#[test]
fn run_without_args_gets_empty_args_and_opts() {
    Test::new()
        .file(
            "show.rhai",
            "print(`${ARGS.len()} args, ${OPTS.len()} opts`);\n",
        )
        .args(["run", "show.rhai"])
        .run()
        .assert_success()
        .assert_stderr("0 args, 0 opts\n");
}

/// What `infra plan` shows for the project `infra init` makes: every droplet, every service.
const INIT_PLAN: &str = "\
infra will perform the following actions:

Droplets:
  + droplet master (s-2vcpu-4gb, lon1, master)
  + droplet hostomatic-web1 (s-2vcpu-4gb, lon1, web, project hostomatic)
  + droplet hostomatic-web2 (s-2vcpu-4gb, lon1, web, project hostomatic)
  + droplet digitalpixo-web1 (s-1vcpu-1gb, lon1, web, project digitalpixo)

Services:
  + service hostomatic-prod-backend (web, port 8841) on hostomatic-web1, hostomatic-web2
  + service hostomatic-prod-frontend (web, port 9841) on hostomatic-web1, hostomatic-web2
  + service hostomatic-prod-worker_email (worker) on hostomatic-web1
  + service hostomatic-prod-scheduler (worker) on hostomatic-web1
  + service hostomatic-uat-backend (web, port 8433) on hostomatic-web1, hostomatic-web2
  + service hostomatic-uat-frontend (web, port 9433) on hostomatic-web1, hostomatic-web2
  + service hostomatic-uat-worker_email (worker) on hostomatic-web1
  + service hostomatic-uat-scheduler (worker) on hostomatic-web1
  + service digitalpixo-prod-backend (web, port 8820) on digitalpixo-web1
  + service digitalpixo-prod-frontend (web, port 9820) on digitalpixo-web1
  + service digitalpixo-uat-backend (web, port 8292) on digitalpixo-web1
  + service digitalpixo-uat-frontend (web, port 9292) on digitalpixo-web1

Plan: 4 droplets to create, 0 to change, 0 to replace, 0 to destroy; 12 services to add, 0 to change, 0 to remove.
";

#[test]
fn plan_of_the_init_project_lists_every_droplet_and_service() {
    let test = Test::init();
    let before = test.snapshot();
    test.infra(["plan", "--offline"])
        .assert_success()
        .assert_stdout(INIT_PLAN)
        .assert_stderr("");
    before.assert_same(&test.snapshot());
}

#[test]
fn plan_json_has_the_right_counts() {
    let test = Test::init();
    let plan = test
        .infra(["plan", "--offline", "--json"])
        .assert_success()
        .json();
    assert_eq!(
        plan["summary"],
        json!({
            "droplets_to_create": 4, "droplets_to_change": 0, "droplets_to_replace": 0,
            "droplets_to_destroy": 0, "services_to_add": 12, "services_to_change": 0,
            "services_to_remove": 0
        })
    );
    assert_eq!(plan["force"], false);
    let changes = plan["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 16);
    let count = |kind: &str| changes.iter().filter(|c| c["kind"] == kind).count();
    assert_eq!((count("droplet"), count("service")), (4, 12));
    let workers = changes
        .iter()
        .filter(|c| c["after"]["type"] == "worker")
        .count();
    assert_eq!(workers, 4);
    assert!(changes.iter().all(|c| c["action"] == "create"));
}

#[test]
fn dry_run_add_project_changes_nothing_and_shows_the_plan_with_the_new_droplets() {
    let test = Test::init();
    let before = test.snapshot();
    let out = test.infra([
        "--dry-run",
        "--offline",
        "add-project",
        "shop",
        "prod,uat",
        "2",
        "s-1vcpu-1gb",
    ]);
    out.assert_success();
    let expected = format!(
        "[dry-run] would add project `shop` to infrastructure_spec.projects (environments prod, uat; 2 web droplets of s-1vcpu-1gb)\n{}",
        INIT_PLAN
            .replace(
                "  + droplet digitalpixo-web1 (s-1vcpu-1gb, lon1, web, project digitalpixo)\n",
                "  + droplet digitalpixo-web1 (s-1vcpu-1gb, lon1, web, project digitalpixo)\n\
                 \x20 + droplet shop-web1 (s-1vcpu-1gb, lon1, web, project shop)\n\
                 \x20 + droplet shop-web2 (s-1vcpu-1gb, lon1, web, project shop)\n",
            )
            .replace(
                "  + service digitalpixo-uat-frontend (web, port 9292) on digitalpixo-web1\n",
                "  + service digitalpixo-uat-frontend (web, port 9292) on digitalpixo-web1\n\
                 \x20 + service shop-prod-backend (web, port 8774) on shop-web1, shop-web2\n\
                 \x20 + service shop-prod-frontend (web, port 9774) on shop-web1, shop-web2\n\
                 \x20 + service shop-uat-backend (web, port 8788) on shop-web1, shop-web2\n\
                 \x20 + service shop-uat-frontend (web, port 9788) on shop-web1, shop-web2\n",
            )
            .replace(
                "Plan: 4 droplets to create, 0 to change, 0 to replace, 0 to destroy; 12 services",
                "Plan: 6 droplets to create, 0 to change, 0 to replace, 0 to destroy; 16 services",
            )
    );
    out.assert_stdout(&expected);
    before.assert_same(&test.snapshot());
}

#[test]
fn dry_run_add_project_does_not_tell_to_run_orchestrate() {
    let test = Test::init();
    let out = test.infra([
        "--dry-run",
        "--offline",
        "add-project",
        "shop",
        "prod",
        "1",
        "s-1vcpu-1gb",
    ]);
    out.assert_success();
    assert!(!out.stderr.contains("infra orchestrate"), "{}", out.stderr);
}

#[test]
fn status_on_an_empty_state_says_what_to_do() {
    Test::init()
        .args(["status"])
        .run()
        .assert_success()
        .assert_stderr("")
        .assert_stdout(
            "No droplets or services recorded yet. The spec asks for 4 droplets across 2 projects: run `infra plan` to see them and `infra orchestrate` to create them.\n",
        );
}

/// The init project after a first orchestration of hostomatic's prod environment: IPs, ports,
/// a ring of monitors.
pub(crate) fn deployed() -> Test {
    Test::init()
        .edit(
            "config/infrastructure.json",
            "\"droplets\": {},",
            r#""droplets": {
    "master": {"ip": "203.0.113.10", "size": "s-2vcpu-4gb", "region": "lon1", "role": "master", "monitors": ["hostomatic-web1", "hostomatic-web2"]},
    "hostomatic-web1": {"ip": "203.0.113.11", "size": "s-2vcpu-4gb", "region": "lon1", "role": "web", "project": "hostomatic", "monitors": ["hostomatic-web2", "master"]},
    "hostomatic-web2": {"ip": "203.0.113.12", "size": "s-2vcpu-4gb", "region": "lon1", "role": "web", "project": "hostomatic", "monitors": ["master", "hostomatic-web1"]}
  },"#,
        )
        .edit(
            "config/infrastructure.json",
            "\"projects\": {},",
            r#""projects": {
    "hostomatic-prod": {
      "backend": {"type": "web", "port": 8841, "assigned_droplets": ["hostomatic-web1", "hostomatic-web2"]},
      "frontend": {"type": "web", "port": 9841, "assigned_droplets": ["hostomatic-web1", "hostomatic-web2"]},
      "worker_email": {"type": "worker", "assigned_droplets": ["hostomatic-web1"]},
      "scheduler": {"type": "worker", "assigned_droplets": ["hostomatic-web1"]}
    }
  },"#,
        )
}

#[test]
fn status_json_reports_ips_ports_workers_targets_and_monitors() {
    let test = deployed();
    let before = test.snapshot();
    let status = test.infra(["status", "--json"]).assert_success().json();
    before.assert_same(&test.snapshot());

    let d = &status["droplets"];
    assert_eq!(d["master"]["ip"], "203.0.113.10");
    assert_eq!(d["hostomatic-web1"]["ip"], "203.0.113.11");
    assert_eq!(
        d["master"]["monitored_by"],
        json!(["hostomatic-web1", "hostomatic-web2"])
    );
    assert_eq!(
        d["hostomatic-web1"]["monitored_by"],
        json!(["master", "hostomatic-web2"])
    );
    assert_eq!(
        d["hostomatic-web1"]["services"],
        json!([
            "hostomatic-prod-backend",
            "hostomatic-prod-frontend",
            "hostomatic-prod-worker_email",
            "hostomatic-prod-scheduler"
        ])
    );
    assert_eq!(d["master"]["services"], json!([]));

    let p = &status["projects"]["hostomatic-prod"];
    assert_eq!(p["backend"]["port"], 8841);
    assert_eq!(p["backend"]["worker"], false);
    assert_eq!(p["worker_email"]["worker"], true);
    assert_eq!(p["worker_email"]["type"], "worker");
    assert_eq!(p["worker_email"]["port"], Value::Null);

    // Load-balancer targets: web services only, one per droplet with an IP.
    assert_eq!(
        status["load_balancer"],
        json!({
            "hostomatic-prod-backend": ["203.0.113.11:8841", "203.0.113.12:8841"],
            "hostomatic-prod-frontend": ["203.0.113.11:9841", "203.0.113.12:9841"]
        })
    );
    assert_eq!(status["summary"]["web_services"], 2);
    assert_eq!(status["summary"]["worker_services"], 2);
    assert_eq!(status["summary"]["spec_droplets"], 4);
    assert_eq!(status["problems"], json!([]));
}

#[test]
fn status_text_shows_targets_and_who_watches_whom() {
    let out = deployed().infra(["status"]);
    out.assert_success()
        .assert_stdout_contains(
            "Load balancer targets (web services only):\n  hostomatic-prod-backend -> 203.0.113.11:8841, 203.0.113.12:8841\n  hostomatic-prod-frontend -> 203.0.113.11:9841, 203.0.113.12:9841\n",
        )
        .assert_stdout_contains(
            "Monitoring:\n  master is watched by hostomatic-web1, hostomatic-web2\n  hostomatic-web1 is watched by master, hostomatic-web2\n  hostomatic-web2 is watched by master, hostomatic-web1\n",
        )
        .assert_stdout_contains("  hostomatic-prod-worker_email  worker  -     hostomatic-web1\n");
}

#[test]
fn discover_json_reports_endpoints_workers_and_secret_names() {
    let test = deployed();
    let info = test
        .infra(["discover", "hostomatic", "prod", "--json"])
        .assert_success()
        .json();
    assert_eq!(info["recorded"], true);
    assert_eq!(info["platform"], "docker");
    let services = info["services"].as_array().unwrap();
    let by_name = |n: &str| {
        services
            .iter()
            .find(|s| s["name"] == n)
            .unwrap_or_else(|| panic!("{n} missing: {info:#}"))
    };
    let backend = by_name("hostomatic-prod-backend");
    assert_eq!(backend["port"], 8841);
    assert_eq!(backend["route"], "/api/");
    assert_eq!(
        backend["endpoints"],
        json!([
            {"droplet": "hostomatic-web1", "ip": "203.0.113.11", "url": "http://203.0.113.11:8841", "release": null},
            {"droplet": "hostomatic-web2", "ip": "203.0.113.12", "url": "http://203.0.113.12:8841", "release": null}
        ])
    );
    assert_eq!(
        backend["secret_env"],
        json!(["HOSTOMATIC_PROD_DB_PASSWORD", "HOSTOMATIC_PROD_STRIPE_KEY"])
    );
    let worker = by_name("hostomatic-prod-worker_email");
    assert_eq!(worker["type"], "worker");
    assert_eq!(worker["port"], Value::Null);
    assert_eq!(worker["command"], "python email_processor.py");
    assert_eq!(
        worker["endpoints"],
        json!([{"droplet": "hostomatic-web1", "ip": "203.0.113.11", "url": null, "release": null}])
    );
    assert_eq!(services.len(), 4);
}

// `scale`, `add-project` and `remove-project` apply their change by orchestrating, which needs
// a cloud: the tests here drive the natives they are made of (`scale_project_spec`, ...,
// `show_plan(plan())`) through `infra run`, or the commands with `--dry-run`; the commands' full
// behaviour is tested on the sandbox in `orchestrate.rs`.

/// Edits the spec the way `infra scale` does, then shows the plan, without applying it.
const SCALE_TO_3: &str = "scale_project_spec(\"hostomatic\", 3);\nshow_plan(plan());\n";

#[test]
fn scale_changes_the_spec_and_shows_the_new_droplet() {
    let test = Test::init().file("scale.rhai", SCALE_TO_3);
    let out = test.infra(["run", "scale.rhai"]);
    out.assert_success()
        .assert_stdout_contains(
            "  + droplet hostomatic-web3 (s-2vcpu-4gb, lon1, web, project hostomatic)\n",
        )
        .assert_stdout_contains(
            "  + service hostomatic-prod-backend (web, port 8841) on hostomatic-web1, hostomatic-web2, hostomatic-web3\n",
        )
        // Workers stay where they are.
        .assert_stdout_contains(
            "  + service hostomatic-prod-worker_email (worker) on hostomatic-web1\n",
        )
        .assert_stderr("set infrastructure_spec.projects.hostomatic.web_droplets to 3: saved\n");
    assert_eq!(
        test.json("config/infrastructure.json")["infrastructure_spec"]["projects"]["hostomatic"]
            ["web_droplets"],
        3
    );
}

/// `infra --dry-run scale` shows the same plan as the playbook above and changes nothing.
#[test]
fn dry_run_scale_shows_the_new_droplet_and_changes_nothing() {
    let test = Test::init().file("scale.rhai", SCALE_TO_3);
    let edited = test
        .infra(["run", "scale.rhai"])
        .assert_success()
        .stdout
        .clone();
    let test = Test::init();
    let before = test.snapshot();
    let out = test.infra(["--dry-run", "--offline", "scale", "hostomatic", "3"]);
    out.assert_success()
        .assert_stdout(&format!(
            "[dry-run] would set infrastructure_spec.projects.hostomatic.web_droplets to 3\n{edited}"
        ))
        .assert_stderr("");
    before.assert_same(&test.snapshot());
}

#[test]
fn remove_project_changes_the_spec_and_shows_the_plan() {
    let test = Test::init()
        .file(
            "add.rhai",
            "add_project_spec(\"shop\", [\"prod\"], 1, \"s-1vcpu-1gb\");\n",
        )
        .file(
            "remove.rhai",
            "remove_project_spec(\"shop\");\nshow_plan(plan());\n",
        );
    test.infra(["run", "add.rhai"]).assert_success();
    let out = test.infra(["run", "remove.rhai"]);
    out.assert_success()
        .assert_stdout(INIT_PLAN)
        .assert_stderr("remove project `shop` from infrastructure_spec.projects: saved\n");
    assert_eq!(
        test.read("config/infrastructure.json"),
        infra::project::embedded("config/infrastructure.json").unwrap()
    );
}

/// Removing a project that deployment_config.json describes (both of the init project's do):
/// its services go from the deployment config too.
#[test]
fn remove_project_described_in_the_deployment_config() {
    let test = Test::init().file(
        "remove.rhai",
        "remove_project_spec(\"digitalpixo\");\nshow_plan(plan());\n",
    );
    let out = test.infra(["run", "remove.rhai"]);
    out.assert_success()
        .assert_stdout_contains("Plan: 3 droplets to create");
    assert!(
        test.json("config/infrastructure.json")["infrastructure_spec"]["projects"]
            .get("digitalpixo")
            .is_none()
    );
    assert!(test.json("config/deployment_config.json")["projects"]
        .get("digitalpixo")
        .is_none());
    test.infra(["validate"]).assert_success();
}

/// `infra --dry-run remove-project` shows the plan without the project and changes nothing.
#[test]
fn dry_run_remove_project_shows_the_plan_and_changes_nothing() {
    let test = Test::init();
    let before = test.snapshot();
    test.infra(["--dry-run", "--offline", "remove-project", "digitalpixo"])
        .assert_success()
        .assert_stdout_contains("Plan: 3 droplets to create");
    before.assert_same(&test.snapshot());
}

#[test]
fn ctrl_c_stops_a_sleeping_playbook_with_exit_130() {
    let test = Test::init().file(
        "nap.rhai",
        "add_project_spec(\"shop\", [\"prod\"], 1, \"s-1vcpu-1gb\");\nlog(\"started\");\nsleep(60);\nlog(\"never\");\n",
    );
    let mut running = test.spawn(["run", "nap.rhai"]);
    running.wait_for("started");
    running.signal("INT");
    let out = running.finish();
    out.assert_code(130).assert_stderr(
        "add project `shop` to infrastructure_spec.projects (environments prod; 1 web droplet of s-1vcpu-1gb): saved\n\
         started\n\
         warning: interrupted: stopping at the next safe point (Ctrl-C again to force)\n\
         error: nap.rhai:3:1: stopped (Ctrl-C)\n  |\n3 | sleep(60);\n  | ^\n",
    );
    // Cleanly: the edit made before the interruption is saved whole, and the lock is free.
    assert!(
        test.json("config/infrastructure.json")["infrastructure_spec"]["projects"]["shop"]
            .is_object()
    );
    assert_eq!(test.read("config/.infra/state.lock"), "");
    test.write(
        "other.rhai",
        "add_project_spec(\"other\", [\"prod\"], 1, \"s-1vcpu-1gb\");\n",
    );
    test.infra(["run", "other.rhai"]).assert_success();
}

#[test]
fn ctrl_c_stops_a_busy_loop() {
    let test = Test::new().file(
        "spin.rhai",
        "log(\"started\");\nlet i = 0;\nloop { i += 1; }\n",
    );
    let before: Snapshot = test.snapshot();
    let mut running = test.spawn(["run", "spin.rhai"]);
    running.wait_for("started");
    running.signal("INT");
    let out = running.finish();
    out.assert_code(130)
        .assert_stderr_contains("error: spin.rhai:3:")
        .assert_stderr_contains(": stopped (Ctrl-C)\n");
    before.assert_same(&test.snapshot());
}
