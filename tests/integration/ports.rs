//! Ports: the same on every machine and every version (golden values), never shared on a
//! droplet however many projects there are, and never renumbered once recorded.

use infra::name_map::NameMap;
use std::collections::HashMap;

use serde_json::{json, Map, Value};

use infra::config::deployment::DeploymentConfig;
use infra::config::placement::required_services;
use infra::schema::Checker;
use infra::state::ports::{hash_based_port, resource_hash};
use infra::state::{Runtime, ServiceKind, ServiceMap, Spec};

use crate::harness::Test;

/// The spec's example projects: (project, environment, resource hash, backend, frontend).
/// These are SHA-256 of `project-environment`, first four bytes, modulo 1000, on top of the
/// base port. Changing any of them moves every deployed service: never update them.
const GOLDEN: &[(&str, &str, &str, u16, u16)] = &[
    ("hostomatic", "prod", "0a503201", 8841, 9841),
    ("hostomatic", "uat", "2660fd01", 8433, 9433),
    ("digitalpixo", "prod", "cd87e72c", 8820, 9820),
    ("digitalpixo", "uat", "4d92057c", 8292, 9292),
];

#[test]
fn golden_hash_ports_of_the_spec_examples() {
    for &(project, env, hash, backend, frontend) in GOLDEN {
        assert_eq!(resource_hash(project, env), hash, "{project}-{env}");
        assert_eq!(
            hash_based_port(project, env, 8000, 1000),
            backend,
            "{project}-{env}"
        );
        assert_eq!(
            hash_based_port(project, env, 9000, 1000),
            frontend,
            "{project}-{env}"
        );
    }
}

/// The same ports reach the user through `infra plan --json` on the project `infra init` makes.
#[test]
fn golden_ports_in_the_plan_of_the_default_project() {
    let test = Test::init();
    let plan = test
        .infra(["plan", "--offline", "--json"])
        .assert_success()
        .json();
    let mut ports: HashMap<String, u64> = HashMap::new();
    for change in plan["changes"].as_array().unwrap() {
        if let Some(port) = change["after"]["port"].as_u64() {
            ports.insert(change["target"].as_str().unwrap().to_string(), port);
        }
    }
    for &(project, env, _, backend, frontend) in GOLDEN {
        assert_eq!(
            ports[&format!("{project}-{env}-backend")],
            u64::from(backend)
        );
        assert_eq!(
            ports[&format!("{project}-{env}-frontend")],
            u64::from(frontend)
        );
    }
    assert_eq!(ports.len(), 8, "{ports:?}");
}

/// A recorded port is kept even when it is not the hash-based one (the seed records 8001).
#[test]
fn plan_keeps_a_port_recorded_in_the_state() {
    let test = Test::init().edit(
        "config/infrastructure.json",
        "\"projects\": {},",
        r#""projects": {
    "hostomatic-prod": {
      "backend": {"type": "web", "port": 8001, "assigned_droplets": ["hostomatic-web1", "hostomatic-web2"]}
    }
  },"#,
    )
    .edit(
        "config/infrastructure.json",
        "\"droplets\": {},",
        r#""droplets": {
    "hostomatic-web1": {"ip": "10.0.0.2", "size": "s-2vcpu-4gb", "region": "lon1", "role": "web", "project": "hostomatic"},
    "hostomatic-web2": {"ip": "10.0.0.3", "size": "s-2vcpu-4gb", "region": "lon1", "role": "web", "project": "hostomatic"}
  },"#,
    );
    let plan = test
        .infra(["plan", "--offline", "--json"])
        .assert_success()
        .json();
    let changes = plan["changes"].as_array().unwrap();
    assert!(
        !changes
            .iter()
            .any(|c| c["target"] == "hostomatic-prod-backend"),
        "the recorded backend should need no change: {changes:#?}"
    );
    let frontend = changes
        .iter()
        .find(|c| c["target"] == "hostomatic-prod-frontend")
        .unwrap();
    assert_eq!(frontend["after"]["port"], 9841);
}

/// `projects` of a deployment config: each project gets these services.
fn deployment(projects: &[String]) -> Value {
    let services = json!({
        "backend": {"containerfile_path": "backend/Dockerfile"},
        "frontend": {"containerfile_path": "frontend/Dockerfile"},
        // Two more web services without a base port: both start from 10000 with the same
        // hash, so every project-environment has a clash to resolve.
        "api": {"containerfile_path": "api/Dockerfile"},
        "admin": {"containerfile_path": "admin/Dockerfile"},
        "docs": {"containerfile_path": "docs/Dockerfile", "base_port": 10000, "replicas": 1},
        "worker": {"type": "worker", "containerfile_path": "w/Dockerfile", "command": "run"}
    });
    let mut map = Map::new();
    for p in projects {
        map.insert(p.clone(), json!({"services": services.clone()}));
    }
    json!({"deployment_platform": "docker", "projects": map})
}

fn spec(projects: &[String], environments: &[&str]) -> Value {
    let mut map = Map::new();
    for p in projects {
        map.insert(
            p.clone(),
            json!({"environments": environments, "web_droplets": 2, "web_droplet_spec": "s-1vcpu-1gb"}),
        );
    }
    json!({
        "droplets": {"master": {"size": "s-2vcpu-4gb", "region": "lon1", "role": "master"}},
        "projects": map
    })
}

fn place(spec_json: &Value, deploy_json: &Value, state_root: &Value) -> NameMap<ServiceMap> {
    let mut c = Checker::new("test");
    let spec = Spec::check(&mut c, "infrastructure_spec", spec_json);
    let deploy = DeploymentConfig::check(&mut c, deploy_json);
    let runtime = Runtime::check(&mut c, state_root.as_object().unwrap());
    let services = required_services(&spec, &deploy, &runtime, &mut c);
    let problems: Vec<String> = c.problems.iter().map(ToString::to_string).collect();
    assert!(problems.is_empty(), "{problems:#?}");
    services
}

/// No droplet has a port twice, and every port is in its service's range.
fn assert_no_collisions(services: &NameMap<ServiceMap>) -> usize {
    let mut taken: HashMap<(String, u16), String> = HashMap::new();
    let mut web = 0;
    for (key, map) in services {
        for (service, record) in map {
            if record.kind == ServiceKind::Worker {
                assert_eq!(record.port, None, "{key}-{service}");
                continue;
            }
            web += 1;
            let port = record
                .port
                .unwrap_or_else(|| panic!("{key}-{service} has no port"));
            let base = match service.as_str() {
                "backend" => 8000,
                "frontend" => 9000,
                _ => 10000,
            };
            assert!(
                (base..base + 1000).contains(&port),
                "{key}-{service}: port {port} outside {base}..{}",
                base + 1000
            );
            for d in &record.assigned_droplets {
                if let Some(other) = taken.insert((d.clone(), port), format!("{key}-{service}")) {
                    panic!("port {port} on {d} is given to both {other} and {key}-{service}");
                }
            }
        }
    }
    web
}

/// The runtime state a first orchestration would record for `services`.
fn recorded(services: &NameMap<ServiceMap>) -> Value {
    let mut projects = Map::new();
    for (key, map) in services {
        projects.insert(key.clone(), serde_json::to_value(map).unwrap());
    }
    json!({"droplets": {}, "projects": projects})
}

#[test]
fn no_port_collisions_across_500_projects_and_3_environments() {
    let projects: Vec<String> = (0..500).map(|i| format!("project{i:03}")).collect();
    let environments = ["prod", "uat", "test"];
    let spec_json = spec(&projects, &environments);
    let deploy_json = deployment(&projects);
    let empty = json!({});

    let first = place(&spec_json, &deploy_json, &empty);
    assert_eq!(first.len(), 1500);
    let web = assert_no_collisions(&first);
    assert_eq!(web, 1500 * 5);

    // Deterministic: the same input places everything the same way.
    let again = place(&spec_json, &deploy_json, &empty);
    assert_eq!(first, again);
}

#[test]
fn recorded_ports_are_not_renumbered_when_projects_and_environments_are_added() {
    let projects: Vec<String> = (0..500).map(|i| format!("project{i:03}")).collect();
    let state = {
        let first = place(
            &spec(&projects, &["prod", "uat", "test"]),
            &deployment(&projects),
            &json!({}),
        );
        recorded(&first)
    };
    let before = place(
        &spec(&projects, &["prod", "uat", "test"]),
        &deployment(&projects),
        &state,
    );

    // A new project, and in every project a new environment that sorts first, so that
    // without the recorded ports it would claim contested ports before the others.
    let mut more = projects.clone();
    more.insert(0, "aaa-new".to_string());
    let after = place(
        &spec(&more, &["a0", "prod", "uat", "test"]),
        &deployment(&more),
        &state,
    );
    assert_no_collisions(&after);
    for (key, map) in &before {
        for (service, record) in map {
            assert_eq!(
                after[key][service].port, record.port,
                "{key}-{service} was renumbered"
            );
        }
    }
    assert_eq!(after.len(), 1500 + 500 + 4);

    // The scenario is a real contest: without the recorded ports, some would move.
    let unrecorded = place(
        &spec(&more, &["a0", "prod", "uat", "test"]),
        &deployment(&more),
        &json!({}),
    );
    let moved = before
        .iter()
        .flat_map(|(key, map)| map.iter().map(move |(s, r)| (key, s, r)))
        .filter(|(key, s, r)| unrecorded[*key][*s].port != r.port)
        .count();
    assert!(moved > 0, "no port was contested; the test proves nothing");
}
