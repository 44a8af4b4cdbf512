//! The large fleet the benchmarks plan against: a master plus 2 web droplets per project, 3
//! environments, 4 web services and 2 workers per project, with the runtime state filled in
//! (every droplet with an IP and monitors, every service placed with its port), as after a
//! converged orchestrate. Shared by `plan_status` and `plan_refresh`.

use std::path::Path;

use serde_json::{json, Map};

/// Writes the fleet of `projects` projects into `dir/config`.
pub fn generate(dir: &Path, projects: usize) {
    let config = dir.join("config");
    std::fs::create_dir_all(&config).unwrap();
    let mut spec_projects = Map::new();
    let mut deploy_projects = Map::new();
    for p in 0..projects {
        let name = format!("project{p:04}");
        spec_projects.insert(
            name.clone(),
            json!({"environments": ["prod", "uat", "test"], "web_droplets": 2, "web_droplet_spec": "s-1vcpu-1gb"}),
        );
        deploy_projects.insert(
            name,
            json!({"services": {
                "backend": {"containerfile_path": "backend/Dockerfile", "secrets": ["db_password"]},
                "frontend": {"containerfile_path": "frontend/Dockerfile"},
                "api": {"containerfile_path": "api/Dockerfile"},
                "admin": {"containerfile_path": "admin/Dockerfile", "base_port": 11000},
                "worker_email": {"type": "worker", "containerfile_path": "workers/Dockerfile", "command": "python email.py"},
                "scheduler": {"type": "worker", "containerfile_path": "scheduler/Dockerfile", "command": "python cron.py"}
            }}),
        );
    }
    let spec = json!({
        "droplets": {"master": {"size": "s-2vcpu-4gb", "region": "lon1", "role": "master"}},
        "projects": spec_projects,
    });
    std::fs::write(
        config.join("deployment_config.json"),
        serde_json::to_string_pretty(
            &json!({"deployment_platform": "docker", "projects": deploy_projects}),
        )
        .unwrap(),
    )
    .unwrap();
    let state_path = config.join("infrastructure.json");
    std::fs::write(
        &state_path,
        serde_json::to_string_pretty(&json!({"infrastructure_spec": spec})).unwrap(),
    )
    .unwrap();

    // Fill in the runtime state as a converged orchestrate would.
    let project = infra::project::Project::new(dir, Path::new("config"));
    let state = infra::state::State::load(&state_path, "config/infrastructure.json").unwrap();
    let loaded = infra::config::load(&project, state).unwrap();
    let droplets = infra::state::placement::required_droplets(&loaded.spec);
    let ring = infra::state::placement::monitoring_ring(droplets.keys());
    let mut state = infra::state::State::clone(&loaded.state);
    for (i, (name, d)) in droplets.iter().enumerate() {
        let ip = format!("10.{}.{}.{}", 1 + i / 65536, (i / 256) % 256, i % 256);
        state.add_droplet(
            name,
            Some(&ip),
            &d.size,
            &d.region,
            &d.role,
            &ring[name],
            d.project.as_deref(),
        );
    }
    for (key, services) in &loaded.services {
        for (service, record) in services {
            state.add_project_service(key, service, record);
        }
    }
    std::fs::write(&state_path, state.document().render()).unwrap();
}
