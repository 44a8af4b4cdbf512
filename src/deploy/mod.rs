//! Deploy: a release of one project-environment from source to running containers.
//!
//! - [`checkout`]: the code, from `repo` at `branch` or a working tree (`--local`).
//! - [`build`]: one image per service, built here with the local Docker Engine.
//! - [`registry`]: pushed through an SSH tunnel to the master's registry (only missing layers);
//!   droplets pull from it by digest. Prod deploys UAT's digests under a prod tag.
//! - [`bootstrap`]: what a droplet needs before its first deploy (engine, registry trust; nginx
//!   and the registry on the master), installed with apt where missing.
//! - [`rollout`]: web services one droplet (or batch) at a time: start beside the old one, gate
//!   on the health check, move nginx to it, drain, stop the old one; workers after them,
//!   singletons never twice at once.
//! - [`releases`]: the history, the live containers, retention, rollback.
//!
//! Every remote change is reported (and audited) through the [`Reporter`]; in a dry run each
//! step says what it would do and nothing changes anywhere but the checkout cache.

pub mod bootstrap;
pub mod build;
pub mod checkout;
pub mod kubernetes;
pub mod lock;
pub mod redis;
pub mod registry;
pub mod releases;
pub mod rollout;
pub mod ship;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;

use crate::config::deployment::{ProjectDeployment, ServiceConfig};
use crate::config::Loaded;
use crate::platform::{Platform, ENV_DIR};
use crate::project::Project;
use crate::remote::{Host, Pool, RemoteError};
use crate::report::Reporter;
use crate::state::placement::{project_env, service_name};
use crate::state::runtime::ServiceKind;
use crate::template::{secret_env_name, Secret, Templates};

pub use registry::Registry;
pub use releases::{ImageRecord, LiveContainer, ReleaseRecord, Releases};

/// How long an old web container keeps its in-flight requests after nginx moved away from it.
pub const DRAIN: Duration = Duration::from_secs(2);
/// How long a stopped container gets to exit on SIGTERM before it is killed.
pub const STOP_GRACE: u64 = 10;

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("{0}")]
    Input(String),
    #[error("checkout: {message}")]
    Checkout { message: String },
    #[error("building `{service}`: {message}")]
    Build { service: String, message: String },
    #[error("pushing images: {message}")]
    Push { message: String },
    #[error("secrets are missing, so nothing was changed: set {}", .variables.join(", "))]
    MissingSecrets { variables: Vec<String> },
    #[error("{0}")]
    Remote(#[from] RemoteError),
    #[error("on {droplet}: {message}")]
    Droplet { droplet: String, message: String },
    #[error("`{service}` on {droplet} failed its health check ({reason}); the new container was removed and the old release keeps serving. Its last log lines:\n{log}")]
    Unhealthy {
        service: String,
        droplet: String,
        reason: String,
        log: String,
    },
    #[error("{0}")]
    Releases(#[from] releases::ReleasesError),
    #[error("{0}")]
    Locked(String),
    #[error("{0}")]
    Balancer(#[from] crate::balancer::BalancerError),
    #[error("{0}")]
    Kubernetes(#[from] crate::platform::kubernetes::KubernetesError),
    #[error("{0}")]
    Template(#[from] crate::template::TemplateError),
}

impl DeployError {
    /// Whether the fault is in what the user gave (exit 2) rather than in the run (exit 1).
    pub fn is_input(&self) -> bool {
        matches!(
            self,
            DeployError::Input(_)
                | DeployError::MissingSecrets { .. }
                | DeployError::Template(_)
                | DeployError::Kubernetes(_)
        )
    }
}

/// One service on one droplet, as a deploy sees it.
#[derive(Debug, Clone)]
pub struct Target {
    pub service: String,
    /// `hostomatic-uat-backend`: the container's name once it is live.
    pub full_name: String,
    pub droplet: String,
    pub host: Host,
    pub kind: ServiceKind,
    /// The service's own port (web services): what the container listens on.
    pub port: Option<u16>,
    pub config: ServiceConfig,
}

/// A deploy of one project-environment: the configs, the droplets and where images live.
pub struct Deployer {
    pub project: Project,
    pub loaded: Loaded,
    pub pool: Arc<Pool>,
    pub reporter: Reporter,
    pub dry_run: bool,
    /// The command line, as locks name their holder.
    pub command: String,
    pub name: String,
    pub environment: String,
    /// `hostomatic-uat`.
    pub project_env: String,
    pub deployment: ProjectDeployment,
    pub platform: Platform,
    pub registry: Registry,
    pub templates: Templates,
}

impl Deployer {
    /// Checks that `name` has `environment` and its services are placed.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        project: Project,
        loaded: Loaded,
        pool: Arc<Pool>,
        reporter: Reporter,
        dry_run: bool,
        command: &str,
        name: &str,
        environment: &str,
    ) -> Result<Deployer, DeployError> {
        // The project, its environment and its placed services, named when missing.
        crate::template::placed(&loaded, name, environment)?;
        let pe = project_env(name, environment);
        let deployment = loaded.deployment.project(name);
        let platform_name = loaded.deployment.platform_of(name);
        let platform = Platform::parse(&platform_name)
            .ok_or_else(|| DeployError::Input(format!("unknown platform `{platform_name}`")))?;
        if platform == Platform::Kubernetes
            && loaded.deployment.kubernetes_context_of(name).is_none()
        {
            return Err(crate::platform::kubernetes::KubernetesError::NoCluster {
                project: name.to_string(),
            }
            .into());
        }
        let registry = match loaded.deployment.registry_of(name) {
            Some(prefix) => Registry::Outside { prefix },
            None => {
                if platform == Platform::Kubernetes {
                    return Err(crate::platform::kubernetes::KubernetesError::NoRegistry {
                        project: name.to_string(),
                    }
                    .into());
                }
                let (_, master) = master_of(&loaded)?;
                Registry::Master {
                    address: master.ip.to_string(),
                }
            }
        };
        let templates = Templates::new(&project);
        Ok(Deployer {
            project,
            loaded,
            pool,
            reporter,
            dry_run,
            command: command.to_string(),
            name: name.to_string(),
            environment: environment.to_string(),
            project_env: pe,
            deployment,
            platform,
            registry,
            templates,
        })
    }

    /// Every service of the project-environment on every droplet it is placed on, web
    /// services first, in the order deployment_config.json lists them.
    pub fn targets(&self) -> Result<Vec<Target>, DeployError> {
        let services = &self.loaded.services[&self.project_env];
        let mut out = Vec::new();
        for kind in [ServiceKind::Web, ServiceKind::Worker] {
            for (service, record) in services.iter().filter(|(_, r)| r.kind == kind) {
                let config = self
                    .deployment
                    .services
                    .get(service)
                    .cloned()
                    .ok_or_else(|| {
                        DeployError::Input(format!(
                            "`{}` is placed but not in deployment_config.json; add it under projects.{}.services",
                            service_name(&self.project_env, service),
                            self.name
                        ))
                    })?;
                for droplet in &record.assigned_droplets {
                    out.push(Target {
                        service: service.clone(),
                        full_name: service_name(&self.project_env, service),
                        droplet: droplet.clone(),
                        host: droplet_host(&self.loaded, droplet)?,
                        kind,
                        port: record.port,
                        config: config.clone(),
                    });
                }
            }
        }
        Ok(out)
    }

    /// The droplets the project-environment's services run on, by name.
    pub fn droplets(&self) -> Result<Vec<Host>, DeployError> {
        let mut hosts: Vec<Host> = Vec::new();
        for t in self.targets()? {
            if !hosts.iter().any(|h| h.name == t.host.name) {
                hosts.push(t.host);
            }
        }
        hosts.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(hosts)
    }

    pub fn master(&self) -> Result<Host, DeployError> {
        master_of(&self.loaded).map(|(_, host)| host)
    }

    /// Every secret of every service, read from `<PROJECT>_<ENV>_<SECRET>`; all missing ones
    /// are named at once, before anything changes.
    pub fn secrets(&self) -> Result<IndexMap<String, IndexMap<String, Secret>>, DeployError> {
        let mut out = IndexMap::new();
        let mut missing = Vec::new();
        for (service, config) in &self.deployment.services {
            if !self.loaded.services[&self.project_env].contains_key(service) {
                continue;
            }
            let mut values = IndexMap::new();
            for secret in &config.secrets {
                let var = secret_env_name(&self.name, &self.environment, secret);
                match std::env::var(&var) {
                    Ok(value) if !value.is_empty() => {
                        values.insert(secret.clone(), Secret::new(value));
                    }
                    _ => {
                        if !missing.contains(&var) {
                            missing.push(var);
                        }
                    }
                }
            }
            out.insert(service.clone(), values);
        }
        if self.uses_redis() && self.redis_password().is_none() {
            let var = secret_env_name(&self.name, &self.environment, redis::REDIS_PASSWORD_SECRET);
            if !missing.contains(&var) {
                missing.push(var);
            }
        }
        if !missing.is_empty() {
            return Err(DeployError::MissingSecrets { variables: missing });
        }
        Ok(out)
    }

    /// Whether this project-environment has a Redis on the master (see [`redis`]).
    pub fn uses_redis(&self) -> bool {
        self.platform != Platform::Kubernetes
            && redis::uses_redis(&self.deployment, &self.loaded.services[&self.project_env])
    }

    /// `<PROJECT>_<ENV>_REDIS_PASSWORD`, when set.
    fn redis_password(&self) -> Option<Secret> {
        let var = secret_env_name(&self.name, &self.environment, redis::REDIS_PASSWORD_SECRET);
        std::env::var(var)
            .ok()
            .filter(|v| !v.is_empty())
            .map(Secret::new)
    }

    /// Where this project-environment's Redis runs, when it has one.
    pub fn redis_place(&self) -> Result<Option<redis::RedisPlace>, DeployError> {
        if !self.uses_redis() {
            return Ok(None);
        }
        let (_, master) = master_of(&self.loaded)?;
        let port = redis::redis_ports(&self.loaded)
            .get(&self.project_env)
            .copied()
            .ok_or_else(|| {
                DeployError::Input(format!(
                    "`{}` uses Redis but has no Redis port; run `infra validate`",
                    self.project_env
                ))
            })?;
        Ok(Some(redis::RedisPlace {
            project_env: self.project_env.clone(),
            host: master.ip.to_string(),
            port,
        }))
    }

    /// The Redis place and its password, for env files and the master's config; a missing
    /// password is named (deploys check it first, in [`Self::secrets`]).
    pub fn redis_with_password(&self) -> Result<Option<(redis::RedisPlace, Secret)>, DeployError> {
        let Some(place) = self.redis_place()? else {
            return Ok(None);
        };
        let password = self
            .redis_password()
            .ok_or_else(|| DeployError::MissingSecrets {
                variables: vec![secret_env_name(
                    &self.name,
                    &self.environment,
                    redis::REDIS_PASSWORD_SECRET,
                )],
            })?;
        Ok(Some((place, password)))
    }

    /// The variables of `target`'s container in `release`: its environment, its secrets and
    /// the INFRA_* variables. Holds secret values: only ever uploaded (on standard input) or
    /// given to `kubectl` on standard input, never shown.
    pub fn env_context(
        &self,
        target: &Target,
        release: &str,
        secrets: &IndexMap<String, Secret>,
    ) -> Result<crate::template::EnvFileContext, DeployError> {
        let mut context = crate::template::env_file_context(
            &self.loaded,
            &self.name,
            &self.environment,
            &target.service,
            secrets,
        )?;
        for (key, value) in [
            ("INFRA_PROJECT", self.name.as_str()),
            ("INFRA_ENVIRONMENT", self.environment.as_str()),
            ("INFRA_SERVICE", target.service.as_str()),
            ("INFRA_RELEASE", release),
            ("INFRA_DROPLET", target.droplet.as_str()),
        ] {
            context.variables.insert(key.to_string(), value.to_string());
        }
        // Every service of a project-environment with Redis reaches it: workers consume the
        // queues, web services enqueue. A key the service's `environment` (or its secret
        // `redis_password`) sets already is left as it is.
        if let Some((place, password)) = self.redis_with_password()? {
            let taken = |context: &crate::template::EnvFileContext, key: &str| {
                context.variables.contains_key(key) || context.secrets.contains_key(key)
            };
            for (key, value) in place.variables() {
                if !taken(&context, key) {
                    context.variables.insert(key.to_string(), value);
                }
            }
            if !taken(&context, "REDIS_URL") {
                context
                    .secrets
                    .insert("REDIS_URL".to_string(), place.url(&password));
            }
            if !taken(&context, "REDIS_PASSWORD") {
                context
                    .secrets
                    .insert("REDIS_PASSWORD".to_string(), password);
            }
        }
        Ok(context)
    }

    /// The env file of `target` in `release` (templates/env/service.env.j2).
    pub fn env_file(
        &self,
        target: &Target,
        release: &str,
        secrets: &IndexMap<String, Secret>,
    ) -> Result<String, DeployError> {
        let context = self.env_context(target, release, secrets)?;
        Ok(self.templates.render("env/service.env.j2", &context)?)
    }

    /// Where `target`'s env file lives on its droplet.
    pub fn env_path(target: &Target) -> String {
        env_path_of(&target.full_name)
    }

    pub fn releases_path(&self) -> std::path::PathBuf {
        releases::releases_path(&self.project, &self.project_env)
    }

    pub fn releases(&self) -> Result<Releases, DeployError> {
        Ok(Releases::load(&self.releases_path())?)
    }

    /// Saves the release history (not in a dry run).
    pub fn save_releases(&self, releases: &Releases) -> Result<(), DeployError> {
        if self.dry_run {
            return Ok(());
        }
        releases.save(&self.releases_path())?;
        Ok(())
    }

    /// The image repository of `service`: one per project and service, shared by its
    /// environments.
    pub fn repository(&self, service: &str) -> String {
        format!("{}-{}", self.name, service).to_lowercase()
    }
}

/// Where the env file of the container `full_name` lives on its droplet (the monitor reads a
/// worker's Redis settings from it).
pub fn env_path_of(full_name: &str) -> String {
    format!("{ENV_DIR}/{full_name}.env")
}

/// The droplet `name` as an SSH host, from its recorded address.
pub fn droplet_host(loaded: &Loaded, name: &str) -> Result<Host, DeployError> {
    let ip: IpAddr = loaded
        .runtime
        .droplets
        .get(name)
        .and_then(|d| d.ip.as_deref())
        .and_then(|ip| ip.parse().ok())
        .ok_or_else(|| {
            DeployError::Input(format!(
                "droplet `{name}` has no address in the state yet; run `infra orchestrate` first"
            ))
        })?;
    Ok(Host::new(name.to_string(), ip))
}

/// The master droplet, which runs nginx and the registry.
pub fn master_of(loaded: &Loaded) -> Result<(String, Host), DeployError> {
    let name = loaded
        .runtime
        .droplets
        .iter()
        .find(|(_, d)| d.role == "master")
        .map(|(name, _)| name.clone())
        .or_else(|| loaded.spec.master().map(|(name, _)| name.clone()))
        .ok_or_else(|| {
            DeployError::Input(
                "the spec has no master droplet; nginx and the registry run on it: add one to infrastructure_spec.droplets".into(),
            )
        })?;
    let host = droplet_host(loaded, &name)?;
    Ok((name, host))
}
