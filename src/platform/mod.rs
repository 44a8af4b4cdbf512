//! The platforms that run a project's containers: `docker` and `podman` on each droplet (the
//! same command lines: podman takes Docker's), and `kubernetes` (manifests applied with
//! `kubectl`, see [`kubernetes`]). What runs where, and in which order, is the rollout's
//! business (src/deploy/rollout.rs); this module only says how.

pub mod kubernetes;

use crate::remote::shell_quote;

/// Where each container's env file lives on a droplet (mode 0700; the files 0600).
pub const ENV_DIR: &str = "/etc/infra/env";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    Docker,
    Podman,
    Kubernetes,
}

impl Platform {
    pub fn parse(name: &str) -> Option<Platform> {
        match name {
            "docker" => Some(Platform::Docker),
            "podman" => Some(Platform::Podman),
            "kubernetes" => Some(Platform::Kubernetes),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Platform::Docker => "docker",
            Platform::Podman => "podman",
            Platform::Kubernetes => "kubernetes",
        }
    }

    /// The container CLI on a droplet.
    pub fn cli(self) -> &'static str {
        match self {
            Platform::Podman => "podman",
            _ => "docker",
        }
    }
}

/// One container to start on a droplet.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    pub name: String,
    /// What the droplet pulls and runs: `10.0.0.2:5000/shop-backend@sha256:...`.
    pub image: String,
    pub env_file: String,
    /// `(droplet port, container port)` for a web service: the container always listens on
    /// its service's port (`PORT`); the droplet port alternates between releases so the new
    /// container can start beside the old one.
    pub publish: Option<(u16, u16)>,
    /// The worker's command as words; empty runs the image's own.
    pub command: Vec<String>,
    pub labels: Vec<(String, String)>,
}

impl ContainerSpec {
    /// `docker run -d ...` (or podman's), one shell line.
    pub fn run_line(&self, platform: Platform) -> String {
        let mut words: Vec<String> = vec![
            platform.cli().into(),
            "run".into(),
            "--detach".into(),
            "--name".into(),
            self.name.clone(),
            "--restart".into(),
            "unless-stopped".into(),
            "--env-file".into(),
            self.env_file.clone(),
        ];
        if let Some((host, container)) = self.publish {
            words.push("--env".into());
            words.push(format!("PORT={container}"));
            words.push("--publish".into());
            words.push(format!("{host}:{container}"));
        }
        for (key, value) in &self.labels {
            words.push("--label".into());
            words.push(format!("{key}={value}"));
        }
        words.push(self.image.clone());
        words.extend(self.command.iter().cloned());
        words
            .iter()
            .map(|w| shell_quote(w))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// `docker pull IMAGE` unless the droplet has it already (pulling by digest: present means
/// identical).
pub fn pull_line(platform: Platform, image: &str) -> String {
    let cli = platform.cli();
    let image = shell_quote(image);
    format!("{cli} image inspect {image} >/dev/null 2>&1 || {cli} pull --quiet {image} >/dev/null")
}

/// Stops and removes `name` if it exists; `grace` seconds for it to end on SIGTERM.
pub fn remove_line(platform: Platform, name: &str, grace: u64) -> String {
    let cli = platform.cli();
    let name = shell_quote(name);
    format!(
        "if {cli} container inspect {name} >/dev/null 2>&1; then {cli} stop --time {grace} {name} >/dev/null; {cli} rm --force {name} >/dev/null; fi"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_web_container_publishes_its_slot_port_and_is_told_its_port() {
        let spec = ContainerSpec {
            name: "shop-uat-backend".into(),
            image: "10.0.0.2:5000/shop-backend@sha256:ab".into(),
            env_file: "/etc/infra/env/shop-uat-backend.env".into(),
            publish: Some((28001, 8001)),
            command: vec![],
            labels: vec![("infra.release".into(), "uat-1".into())],
        };
        assert_eq!(
            spec.run_line(Platform::Docker),
            "docker run --detach --name shop-uat-backend --restart unless-stopped --env-file /etc/infra/env/shop-uat-backend.env --env PORT=8001 --publish 28001:8001 --label infra.release=uat-1 10.0.0.2:5000/shop-backend@sha256:ab"
        );
        let worker = ContainerSpec {
            publish: None,
            command: vec!["python".into(), "cron job.py".into()],
            ..spec
        };
        assert!(worker
            .run_line(Platform::Podman)
            .ends_with("10.0.0.2:5000/shop-backend@sha256:ab python 'cron job.py'"));
        assert!(worker.run_line(Platform::Podman).starts_with("podman run"));
    }
}
