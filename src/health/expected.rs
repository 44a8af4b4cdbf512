//! What should run on one droplet: every container the state places there, with what its
//! droplet's monitor checks about it (the web service's port and `health_path`, a worker's
//! queues and limits, the resource thresholds). Computed from the same placement deploys use
//! (`Loaded::services`), so the monitor and the deploys never disagree on names or ports.

use serde::Serialize;

use crate::config::Loaded;
use crate::platform::Platform;
use crate::state::placement::{project_env, service_name};
use crate::state::runtime::ServiceKind;

/// One container a droplet should be running.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExpectedContainer {
    /// `<project>-<env>-<service>`: the container's name.
    pub name: String,
    pub project: String,
    pub environment: String,
    pub service: String,
    #[serde(rename = "type")]
    pub kind: ServiceKind,
    /// `docker` or `podman`: the engine CLI that runs it.
    pub engine: String,
    /// A web service's own port: what the container listens on (the droplet port it is
    /// published on alternates between releases, so the check reads it from the engine).
    pub port: Option<u16>,
    /// Where a web service answers its health check.
    pub health_path: Option<String>,
    /// The Redis lists a worker consumes.
    pub queues: Vec<String>,
    pub max_queue_depth: Option<u64>,
    pub max_requeues: u32,
    pub max_cpu_percent: Option<u32>,
    pub max_memory_mb: Option<u64>,
    /// Its env file on the droplet (where a worker's Redis settings are).
    pub env_file: String,
}

impl ExpectedContainer {
    /// `<project>-<env>`, the key its Redis and its queues belong to.
    pub fn project_env(&self) -> String {
        project_env(&self.project, &self.environment)
    }
}

/// The containers placed on `droplet`, in the spec's order of projects and environments and
/// the deployment config's order of services. Kubernetes projects have none here: their
/// cluster restarts its own pods.
pub fn expected_on(loaded: &Loaded, droplet: &str) -> Vec<ExpectedContainer> {
    let mut out = Vec::new();
    for (project, spec) in &loaded.spec.projects {
        let Some(platform) = Platform::parse(&loaded.deployment.platform_of(project)) else {
            continue;
        };
        if platform == Platform::Kubernetes {
            continue;
        }
        let deployment = loaded.deployment.project(project);
        for environment in &spec.environments {
            let key = project_env(project, environment);
            let Some(services) = loaded.services.get(&key) else {
                continue;
            };
            for (service, record) in services {
                if !record.assigned_droplets.iter().any(|d| d == droplet) {
                    continue;
                }
                let config = deployment.services.get(service);
                let name = service_name(&key, service);
                let web = record.kind == ServiceKind::Web;
                out.push(ExpectedContainer {
                    env_file: crate::deploy::env_path_of(&name),
                    name,
                    project: project.clone(),
                    environment: environment.clone(),
                    service: service.clone(),
                    kind: record.kind,
                    engine: platform.cli().to_string(),
                    port: if web { record.port } else { None },
                    health_path: web.then(|| {
                        config
                            .map(|c| c.health_path().to_string())
                            .unwrap_or_else(|| {
                                crate::config::deployment::DEFAULT_HEALTH_PATH.to_string()
                            })
                    }),
                    queues: config.map(|c| c.queues.clone()).unwrap_or_default(),
                    max_queue_depth: config.and_then(|c| c.max_queue_depth),
                    max_requeues: config
                        .map(|c| c.max_requeues())
                        .unwrap_or(crate::config::deployment::DEFAULT_MAX_REQUEUES),
                    max_cpu_percent: config.and_then(|c| c.max_cpu_percent),
                    max_memory_mb: config.and_then(|c| c.max_memory_mb),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project::Project;
    use crate::state::State;

    const STATE: &str = r#"{
  "droplets": {
    "master": {"ip": "203.0.113.10", "size": "s-1vcpu-1gb", "region": "lon1", "role": "master", "monitors": []},
    "shop-web1": {"ip": "203.0.113.11", "size": "s-1vcpu-1gb", "region": "lon1", "role": "web", "project": "shop", "monitors": []},
    "shop-web2": {"ip": "203.0.113.12", "size": "s-1vcpu-1gb", "region": "lon1", "role": "web", "project": "shop", "monitors": []}
  },
  "projects": {
    "shop-prod": {
      "backend": {"type": "web", "port": 8123, "assigned_droplets": ["shop-web1", "shop-web2"]},
      "jobs": {"type": "worker", "assigned_droplets": ["shop-web2"]}
    }
  },
  "infrastructure_spec": {
    "droplets": {"master": {"size": "s-1vcpu-1gb", "region": "lon1", "role": "master"}},
    "projects": {"shop": {"environments": ["prod"], "web_droplets": 2, "web_droplet_spec": "s-1vcpu-1gb"}}
  }
}"#;

    const DEPLOYMENT: &str = r#"{
  "deployment_platform": "podman",
  "projects": {"shop": {"services": {
    "backend": {"containerfile_path": "b/Dockerfile", "health_path": "/up", "max_memory_mb": 300},
    "jobs": {"type": "worker", "containerfile_path": "j/Dockerfile", "command": "run",
             "droplets": ["shop-web2"], "queues": ["mail", "thumbs"], "max_queue_depth": 50, "max_cpu_percent": 80}
  }}}
}"#;

    fn loaded() -> (tempfile::TempDir, Loaded) {
        let dir = tempfile::tempdir().unwrap();
        let project = Project::new(dir.path(), std::path::Path::new("config"));
        std::fs::create_dir_all(dir.path().join("config")).unwrap();
        std::fs::write(project.state_path(), STATE).unwrap();
        std::fs::write(project.deployment_path(), DEPLOYMENT).unwrap();
        let state = State::load(&project.state_path(), "config/infrastructure.json").unwrap();
        let loaded = crate::config::load(&project, state).unwrap();
        (dir, loaded)
    }

    #[test]
    fn each_droplet_expects_what_the_state_places_on_it() {
        let (_dir, loaded) = loaded();
        let web1 = expected_on(&loaded, "shop-web1");
        assert_eq!(
            web1.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["shop-prod-backend"]
        );
        let backend = &web1[0];
        assert_eq!(backend.port, Some(8123));
        assert_eq!(backend.health_path.as_deref(), Some("/up"));
        assert_eq!(backend.engine, "podman");
        assert_eq!(backend.max_memory_mb, Some(300));
        assert_eq!(backend.env_file, "/etc/infra/env/shop-prod-backend.env");

        let web2 = expected_on(&loaded, "shop-web2");
        assert_eq!(
            web2.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["shop-prod-backend", "shop-prod-jobs"]
        );
        let jobs = &web2[1];
        assert_eq!(jobs.kind, ServiceKind::Worker);
        assert_eq!((jobs.port, jobs.health_path.as_deref()), (None, None));
        assert_eq!(jobs.queues, ["mail", "thumbs"]);
        assert_eq!(jobs.max_queue_depth, Some(50));
        assert_eq!(jobs.max_requeues, 3);
        assert_eq!(jobs.max_cpu_percent, Some(80));
        assert_eq!(jobs.project_env(), "shop-prod");

        assert!(expected_on(&loaded, "master").is_empty());
        assert!(expected_on(&loaded, "no-such-droplet").is_empty());
    }
}
