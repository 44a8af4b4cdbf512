//! `config/deployment_config.json`: per project, the services (web and worker) to deploy,
//! where their code is, and the platform that runs them.

use indexmap::IndexMap;
use serde::Serialize;
use serde_json::Value;

use crate::schema::{identifier_problem, join, Checker, Field, PathArg};
use crate::state::runtime::ServiceKind;
use crate::state::spec::environment_problem;

pub const PLATFORMS: &[&str] = &["docker", "podman", "kubernetes"];

// The keys infra reads in each object of deployment_config.json, one place per object: a key
// added to the format is one line here. Any other key is reported as unknown, with the nearest
// of these; keys starting with `x-` are the user's own. `environment` (a service's variables)
// and `domains` (by environment) are maps whose keys the user chooses.

/// Keys at the top of the file. `registry`: where images are pushed (the master's by default).
/// `release_retention`: releases whose images stay on the droplets (5). `kubernetes_context`:
/// the `kubectl` context the `kubernetes` platform applies to.
pub const ROOT_KEYS: &[&str] = &[
    "deployment_platform",
    "projects",
    "registry",
    "release_retention",
    "kubernetes_context",
];

/// Keys of a project under `projects`.
pub const PROJECT_KEYS: &[&str] = &[
    "repo",
    "branch",
    "platform",
    "registry",
    "domains",
    "services",
    "release_retention",
    "snapshot_after_deploy",
    "kubernetes_context",
];

/// Releases whose images stay on the droplets unless the config says otherwise.
pub const DEFAULT_RELEASE_RETENTION: usize = 5;
/// How long a new web container has to answer its health check, unless configured.
pub const DEFAULT_HEALTH_TIMEOUT: u64 = 30;
pub const DEFAULT_HEALTH_PATH: &str = "/health";

/// Keys of a service under `projects.<name>.services`. The health, singleton and queue
/// settings are the seed's worker model (deploys and the monitor read them).
pub const SERVICE_KEYS: &[&str] = &[
    "type",
    "containerfile_path",
    "context",
    "command",
    "secrets",
    "environment",
    "port",
    "base_port",
    "replicas",
    "droplets",
    "path",
    "health_check",
    "health_path",
    "health_timeout",
    "singleton",
    "queues",
    "max_queue_depth",
    "max_requeues",
    "max_cpu_percent",
    "max_memory_mb",
];

/// How many times one failed job is moved back to its queue unless `max_requeues` says.
pub const DEFAULT_MAX_REQUEUES: u32 = 3;
/// The suffixes the monitor gives a queue's companions: `<queue>:failed` (jobs the worker gave
/// up on) and `<queue>:requeues` (how often each was moved back). A queue named with one of
/// them would be confused with another queue's companion.
pub const QUEUE_SUFFIXES: &[&str] = &[":failed", ":requeues"];

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum PortSetting {
    /// The same port in every environment (only valid for single-environment projects, since
    /// environments share droplets).
    Fixed(u16),
    PerEnvironment(IndexMap<String, u16>),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceConfig {
    #[serde(rename = "type")]
    pub kind: ServiceKind,
    pub containerfile_path: String,
    pub command: Option<String>,
    pub secrets: Vec<String>,
    pub environment: IndexMap<String, String>,
    pub port: Option<PortSetting>,
    pub base_port: Option<u16>,
    /// Place on the first N web droplets (workers default to 1, web services to all).
    pub replicas: Option<u32>,
    /// Place on exactly these droplets.
    pub droplets: Option<Vec<String>>,
    /// Where the load balancer routes this web service (`/`, `/api/`).
    pub path: Option<String>,
    /// HTTP path a web service answers health checks on (`health_path`; `health_check` is
    /// the older name of the same key).
    pub health_check: Option<String>,
    /// Seconds a new web container has to answer its health check with a 2xx.
    pub health_timeout: Option<u64>,
    /// A worker that must never run twice at once (a scheduler): stopped before its
    /// replacement starts.
    pub singleton: bool,
    /// The image's build context, relative to the repository root (default: the root).
    pub context: Option<String>,
    /// The Redis lists a worker consumes (`["email_queue"]`), on its project-environment's
    /// Redis on the master. The monitor watches their depth and requeues their failed jobs.
    pub queues: Vec<String>,
    /// A queue longer than this raises an alert (and nothing more).
    pub max_queue_depth: Option<u64>,
    /// How many times one failed job goes back to its queue (`max_requeues()`, default 3).
    pub max_requeues: Option<u32>,
    /// Alert when one container uses more CPU than this, in percent of one core (`200`: two
    /// cores' worth), as the engine's `stats` reports it.
    pub max_cpu_percent: Option<u32>,
    /// Alert when one container uses more memory than this, in MiB.
    pub max_memory_mb: Option<u64>,
}

impl ServiceConfig {
    /// The service a project gets when deployment_config.json does not describe it.
    fn default_web(name: &str) -> ServiceConfig {
        ServiceConfig {
            kind: ServiceKind::Web,
            containerfile_path: format!("{name}/Dockerfile"),
            command: None,
            secrets: Vec::new(),
            environment: IndexMap::new(),
            port: None,
            base_port: None,
            replicas: None,
            droplets: None,
            path: None,
            health_check: None,
            health_timeout: None,
            singleton: false,
            context: None,
            queues: Vec::new(),
            max_queue_depth: None,
            max_requeues: None,
            max_cpu_percent: None,
            max_memory_mb: None,
        }
    }

    /// How many times one failed job is moved back to its queue.
    pub fn max_requeues(&self) -> u32 {
        self.max_requeues.unwrap_or(DEFAULT_MAX_REQUEUES)
    }

    /// The path new containers are health-checked on.
    pub fn health_path(&self) -> &str {
        self.health_check.as_deref().unwrap_or(DEFAULT_HEALTH_PATH)
    }

    pub fn health_timeout(&self) -> u64 {
        self.health_timeout.unwrap_or(DEFAULT_HEALTH_TIMEOUT)
    }

    pub fn explicit_port(&self, environment: &str) -> Option<u16> {
        match &self.port {
            Some(PortSetting::Fixed(p)) => Some(*p),
            Some(PortSetting::PerEnvironment(map)) => map.get(environment).copied(),
            None => None,
        }
    }

    /// Location the load balancer routes to this service.
    pub fn route(&self, name: &str) -> String {
        self.path.clone().unwrap_or_else(|| match name {
            "frontend" => "/".to_string(),
            "backend" => "/api/".to_string(),
            other => format!("/{other}/"),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProjectDeployment {
    pub repo: Option<String>,
    pub branch: String,
    pub platform: Option<String>,
    /// Public host name per environment, for the load balancer's `server_name`.
    pub domains: IndexMap<String, String>,
    pub services: IndexMap<String, ServiceConfig>,
    /// An outside registry (`registry.example.com/team`) instead of the master's.
    pub registry: Option<String>,
    pub release_retention: Option<usize>,
    /// Per environment; unset: snapshots after prod deploys only.
    pub snapshot_after_deploy: IndexMap<String, bool>,
    pub kubernetes_context: Option<String>,
}

impl ProjectDeployment {
    /// Whether a successful deploy to `environment` ends with a snapshot of each droplet.
    pub fn snapshot_after_deploy(&self, environment: &str) -> bool {
        self.snapshot_after_deploy
            .get(environment)
            .copied()
            .unwrap_or(environment == "prod")
    }
}

impl ProjectDeployment {
    /// What a project without an entry in deployment_config.json deploys: a backend and a
    /// frontend, as in the spec's examples.
    pub fn default_for_project() -> ProjectDeployment {
        let mut services = IndexMap::new();
        for name in ["backend", "frontend"] {
            services.insert(name.to_string(), ServiceConfig::default_web(name));
        }
        ProjectDeployment {
            repo: None,
            branch: "main".into(),
            platform: None,
            domains: IndexMap::new(),
            services,
            registry: None,
            release_retention: None,
            snapshot_after_deploy: IndexMap::new(),
            kubernetes_context: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeploymentConfig {
    pub deployment_platform: String,
    pub projects: IndexMap<String, ProjectDeployment>,
    pub registry: Option<String>,
    pub release_retention: usize,
    pub kubernetes_context: Option<String>,
}

impl Default for DeploymentConfig {
    fn default() -> Self {
        DeploymentConfig {
            deployment_platform: "docker".into(),
            projects: IndexMap::new(),
            registry: None,
            release_retention: DEFAULT_RELEASE_RETENTION,
            kubernetes_context: None,
        }
    }
}

impl DeploymentConfig {
    /// The deployment of `project`, or the default one.
    pub fn project(&self, project: &str) -> ProjectDeployment {
        self.projects
            .get(project)
            .cloned()
            .unwrap_or_else(ProjectDeployment::default_for_project)
    }

    pub fn platform_of(&self, project: &str) -> String {
        self.projects
            .get(project)
            .and_then(|p| p.platform.clone())
            .unwrap_or_else(|| self.deployment_platform.clone())
    }

    /// The outside registry `project` pushes to, if one is configured (else the master's).
    pub fn registry_of(&self, project: &str) -> Option<String> {
        self.projects
            .get(project)
            .and_then(|p| p.registry.clone())
            .or_else(|| self.registry.clone())
    }

    pub fn release_retention_of(&self, project: &str) -> usize {
        self.projects
            .get(project)
            .and_then(|p| p.release_retention)
            .unwrap_or(self.release_retention)
    }

    pub fn kubernetes_context_of(&self, project: &str) -> Option<String> {
        self.projects
            .get(project)
            .and_then(|p| p.kubernetes_context.clone())
            .or_else(|| self.kubernetes_context.clone())
    }

    pub fn check(c: &mut Checker, value: &Value) -> DeploymentConfig {
        let mut config = DeploymentConfig::default();
        let Some(root) = c.object("", value) else {
            return config;
        };
        c.unknown_keys(root, "", ROOT_KEYS, &[]);
        if let Some(v) = root.get("deployment_platform") {
            if let Some(p) = c.one_of("deployment_platform", v, PLATFORMS) {
                config.deployment_platform = p;
            }
        }
        config.registry = check_registry(c, root, "");
        if let Some(n) = c.opt_integer(root, "", "release_retention", 1, 100) {
            config.release_retention = n as usize;
        }
        config.kubernetes_context = c.opt_string(root, "", "kubernetes_context", "\"my-cluster\"");
        if let Some(projects) = c.opt_object(root, "", "projects") {
            for (name, p) in projects {
                if let Some(project) = check_project(c, &join("projects", name), p) {
                    config.projects.insert(name.clone(), project);
                }
            }
        }
        config
    }
}

fn check_project(c: &mut Checker, path: &str, value: &Value) -> Option<ProjectDeployment> {
    let map = c.object(path, value)?;
    c.unknown_keys(map, path, PROJECT_KEYS, &[]);
    let repo = c.opt_string(map, path, "repo", "\"git@github.com:me/app.git\"");
    let branch = c
        .opt_string(map, path, "branch", "\"main\"")
        .unwrap_or_else(|| "main".into());
    let platform = map
        .get("platform")
        .and_then(|v| c.one_of(&join(path, "platform"), v, PLATFORMS));
    let mut domains = IndexMap::new();
    if let Some(d) = c.opt_object(map, path, "domains") {
        for (env, host) in d {
            let p = join(&join(path, "domains"), env);
            if let Some(message) = environment_problem(env) {
                c.error(&p, message);
            } else if let Some(h) = c.string(&p, host, "\"uat.example.com\"") {
                domains.insert(env.clone(), h);
            }
        }
    }
    let registry = check_registry(c, map, path);
    let release_retention = c
        .opt_integer(map, path, "release_retention", 1, 100)
        .map(|n| n as usize);
    let kubernetes_context = c.opt_string(map, path, "kubernetes_context", "\"my-cluster\"");
    let mut snapshot_after_deploy = IndexMap::new();
    match map.get("snapshot_after_deploy") {
        None | Some(Value::Null) => {}
        Some(Value::Bool(b)) => {
            for env in ["prod", "uat"] {
                snapshot_after_deploy.insert(env.to_string(), *b);
            }
        }
        Some(Value::Object(per_env)) => {
            for (env, v) in per_env {
                let p = join(&join(path, "snapshot_after_deploy"), env);
                if let Some(message) = environment_problem(env) {
                    c.error(&p, message);
                } else if let Some(b) = v.as_bool() {
                    snapshot_after_deploy.insert(env.clone(), b);
                } else {
                    c.expected(&p, "true or false", v);
                }
            }
        }
        Some(other) => c.expected(
            &join(path, "snapshot_after_deploy"),
            "true, false or {\"prod\": true, \"uat\": false}",
            other,
        ),
    }
    let mut services = IndexMap::new();
    match map.get("services") {
        None => c.error(
            &join(path, "services"),
            "missing; add the project's services, e.g. \"services\": {\"backend\": {\"containerfile_path\": \"backend/Dockerfile\"}}",
        ),
        Some(v) => {
            let spath = join(path, "services");
            if let Some(s) = c.object(&spath, v) {
                if s.is_empty() {
                    c.error(&spath, "is empty; add at least one service");
                }
                for (name, svc) in s {
                    let p = Field(spath.as_str(), name.as_str());
                    if let Some(message) = identifier_problem(name, "service name") {
                        c.error(&p, message);
                    } else if let Some(svc) = check_service(c, &p, svc) {
                        services.insert(name.clone(), svc);
                    }
                }
            }
        }
    }
    Some(ProjectDeployment {
        repo,
        branch,
        platform,
        domains,
        services,
        registry,
        release_retention,
        snapshot_after_deploy,
        kubernetes_context,
    })
}

/// `registry`: a host (with an optional port) and an optional path, as Docker names them
/// (`registry.example.com:5000/team`); no scheme.
fn check_registry(
    c: &mut Checker,
    map: &serde_json::Map<String, Value>,
    path: &str,
) -> Option<String> {
    let registry = c.opt_string(map, path, "registry", "\"registry.example.com/team\"")?;
    let valid = !registry.is_empty()
        && !registry.contains("://")
        && !registry.ends_with('/')
        && registry
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "._-:/".contains(ch));
    if !valid {
        c.error(
            &join(path, "registry"),
            format!("`{registry}` is not a registry name; use a host and an optional path without a scheme, like \"registry.example.com/team\""),
        );
        return None;
    }
    Some(registry)
}

fn check_service(
    c: &mut Checker,
    path: &(impl PathArg + ?Sized),
    value: &Value,
) -> Option<ServiceConfig> {
    let map = c.object(path, value)?;
    c.unknown_keys(map, path, SERVICE_KEYS, &[]);
    let kind = match map.get("type") {
        None => Some(ServiceKind::Web),
        Some(v) => c
            .one_of(&Field(path, "type"), v, &["web", "worker"])
            .map(|k| {
                if k == "worker" {
                    ServiceKind::Worker
                } else {
                    ServiceKind::Web
                }
            }),
    };
    let containerfile_path =
        c.req_string(map, path, "containerfile_path", "\"backend/Dockerfile\"");
    let command = c.opt_string(map, path, "command", "\"python worker.py\"");
    if kind == Some(ServiceKind::Worker) && command.is_none() && !map.contains_key("command") {
        c.error(
            &Field(path, "command"),
            "missing; a worker needs a `command` (what its container runs), e.g. \"python email_processor.py\"",
        );
    }
    let secrets = match map.get("secrets") {
        None | Some(Value::Null) => Some(Vec::new()),
        Some(v) => c.string_list(&Field(path, "secrets"), v, "[\"db_password\"]", |s| {
            identifier_problem(s, "secret name")
        }),
    };
    let mut environment = IndexMap::new();
    if let Some(env) = c.opt_object(map, path, "environment") {
        for (k, v) in env {
            let env_path = Field(path, "environment");
            let p = Field(&env_path, k.as_str());
            let valid_key = !k.is_empty()
                && k.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
                && !k.starts_with(|ch: char| ch.is_ascii_digit());
            if !valid_key {
                c.error(&p, format!("`{k}` is not a valid environment variable name; use letters, digits and underscores"));
                continue;
            }
            match v {
                Value::String(s) => {
                    environment.insert(k.clone(), s.clone());
                }
                Value::Number(n) => {
                    environment.insert(k.clone(), n.to_string());
                }
                Value::Bool(b) => {
                    environment.insert(k.clone(), b.to_string());
                }
                other => c.expected(&p, "a string", other),
            }
        }
    }
    let port = match map.get("port") {
        None | Some(Value::Null) => None,
        Some(Value::Object(per_env)) => {
            let mut ports = IndexMap::new();
            for (env, p) in per_env {
                let port_path = Field(path, "port");
                let pp = Field(&port_path, env.as_str());
                if let Some(message) = environment_problem(env) {
                    c.error(&pp, message);
                } else if let Some(n) = c.integer(&pp, p, 1, 65535) {
                    ports.insert(env.clone(), n as u16);
                }
            }
            Some(PortSetting::PerEnvironment(ports))
        }
        Some(v) => c
            .integer(&Field(path, "port"), v, 1, 65535)
            .map(|n| PortSetting::Fixed(n as u16)),
    };
    let base_port = c
        .opt_integer(map, path, "base_port", 1, 64535)
        .map(|n| n as u16);
    let replicas = c
        .opt_integer(map, path, "replicas", 1, 100)
        .map(|n| n as u32);
    let droplets = match map.get("droplets") {
        None | Some(Value::Null) => None,
        Some(v) => c.string_list(&Field(path, "droplets"), v, "[\"hostomatic-web1\"]", |_| {
            None
        }),
    };
    let route = c.opt_string(map, path, "path", "\"/api/\"");
    if let Some(r) = &route {
        if !r.starts_with('/') || r.contains(char::is_whitespace) || r.contains(';') {
            c.error(
                &Field(path, "path"),
                format!("`{r}` is not a URL path; use one like \"/api/\""),
            );
        }
    }
    let mut health_check = None;
    for key in ["health_path", "health_check"] {
        if let Some(h) = c.opt_string(map, path, key, "\"/health\"") {
            if !h.starts_with('/') || h.contains(char::is_whitespace) {
                c.error(
                    &Field(path, key),
                    format!("`{h}` is not a URL path; use one like \"/health\""),
                );
            } else if health_check.as_ref().is_some_and(|first| first != &h) {
                c.error(
                    &Field(path, key),
                    "`health_path` and `health_check` are the same setting and disagree; keep `health_path`",
                );
            } else {
                health_check = Some(h);
            }
        }
    }
    let health_timeout = c
        .opt_integer(map, path, "health_timeout", 1, 3600)
        .map(|n| n as u64);
    let singleton = c.opt_bool(map, path, "singleton").unwrap_or(false);
    if singleton && kind == Some(ServiceKind::Web) {
        c.error(
            &Field(path, "singleton"),
            "only a worker can be a singleton: web services run on every droplet they are placed on and roll one beside the other; remove it or make the service \"type\": \"worker\"",
        );
    }
    let context = c.opt_string(map, path, "context", "\"backend\"");
    if let Some(dir) = &context {
        if dir.starts_with('/') || dir.split('/').any(|part| part == "..") {
            c.error(
                &Field(path, "context"),
                format!(
                    "`{dir}` leaves the repository; use a directory inside it, like \"backend\""
                ),
            );
        }
    }
    if kind == Some(ServiceKind::Worker) {
        for key in ["port", "base_port", "path"] {
            if map.get(key).is_some_and(|v| !v.is_null()) {
                c.error(
                    &Field(path, key),
                    "a worker takes no traffic, so it has no port or route; remove this key or make the service \"type\": \"web\"",
                );
            }
        }
    }
    let queues = check_queues(c, path, map, kind);
    let max_cpu_percent = c
        .opt_integer(map, path, "max_cpu_percent", 1, 100_000)
        .map(|n| n as u32);
    let max_memory_mb = c
        .opt_integer(map, path, "max_memory_mb", 1, 16 * 1024 * 1024)
        .map(|n| n as u64);
    Some(ServiceConfig {
        queues: queues.queues?,
        max_queue_depth: queues.max_depth,
        max_requeues: queues.max_requeues,
        max_cpu_percent,
        max_memory_mb,
        kind: kind?,
        containerfile_path: containerfile_path?,
        command,
        secrets: secrets?,
        environment,
        port,
        base_port,
        replicas,
        droplets,
        path: route,
        health_check,
        health_timeout,
        singleton,
        context,
    })
}

/// A worker's `queues` and the two settings that only mean something with them.
struct QueueSettings {
    queues: Option<Vec<String>>,
    max_depth: Option<u64>,
    max_requeues: Option<u32>,
}

fn check_queues(
    c: &mut Checker,
    path: &(impl PathArg + ?Sized),
    map: &serde_json::Map<String, Value>,
    kind: Option<ServiceKind>,
) -> QueueSettings {
    let queues = match map.get("queues") {
        None | Some(Value::Null) => Some(Vec::new()),
        Some(v) => c.string_list(
            &Field(path, "queues"),
            v,
            "[\"email_queue\"]",
            queue_problem,
        ),
    };
    if kind == Some(ServiceKind::Web) && queues.as_ref().is_some_and(|q| !q.is_empty()) {
        c.error(
            &Field(path, "queues"),
            "only a worker consumes queues; a web service reaches Redis through REDIS_URL without naming them: remove this key or make the service \"type\": \"worker\"",
        );
    }
    let max_depth = c
        .opt_integer(map, path, "max_queue_depth", 1, 1_000_000_000)
        .map(|n| n as u64);
    let max_requeues = c
        .opt_integer(map, path, "max_requeues", 0, 1000)
        .map(|n| n as u32);
    // Said only when `queues` itself was fine: one problem at a time per service.
    if queues.as_ref().is_some_and(Vec::is_empty) {
        for key in ["max_queue_depth", "max_requeues"] {
            if map.get(key).is_some_and(|v| !v.is_null()) {
                c.error(
                    &Field(path, key),
                    "applies to the service's `queues`, and it names none: add them, like \"queues\": [\"email_queue\"], or remove this key",
                );
            }
        }
    }
    QueueSettings {
        queues,
        max_depth,
        max_requeues,
    }
}

/// A Redis list name the monitor can watch and requeue into.
fn queue_problem(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > 200 {
        return Some(format!(
            "`{name}` is not a queue name; use 1 to 200 characters, like \"email_queue\""
        ));
    }
    if name.chars().any(|ch| ch.is_whitespace() || ch.is_control()) {
        return Some(format!(
            "`{name}` is not a queue name; use one without spaces, like \"email_queue\""
        ));
    }
    QUEUE_SUFFIXES
        .iter()
        .find(|suffix| name.ends_with(*suffix))
        .map(|suffix| {
            format!("`{name}` ends with `{suffix}`, which the monitor uses for a queue's own companion list; name the queue without it")
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn problems(service: Value) -> (Option<ServiceConfig>, Vec<String>) {
        let config = json!({"projects": {"shop": {"services": {"jobs": service}}}});
        let mut c = Checker::new("config/deployment_config.json");
        let checked = DeploymentConfig::check(&mut c, &config);
        let messages = c.problems.iter().map(|p| p.to_string()).collect();
        let service = checked
            .projects
            .get("shop")
            .and_then(|p| p.services.get("jobs"))
            .cloned();
        (service, messages)
    }

    #[test]
    fn a_worker_reads_its_queues_limits_and_thresholds() {
        let (service, messages) = problems(json!({
            "type": "worker", "containerfile_path": "w/Dockerfile", "command": "run",
            "queues": ["email_queue", "app:jobs"], "max_queue_depth": 500, "max_requeues": 5,
            "max_cpu_percent": 150, "max_memory_mb": 512
        }));
        assert_eq!(messages, Vec::<String>::new());
        let service = service.unwrap();
        assert_eq!(service.queues, ["email_queue", "app:jobs"]);
        assert_eq!(service.max_queue_depth, Some(500));
        assert_eq!(service.max_requeues(), 5);
        assert_eq!(service.max_cpu_percent, Some(150));
        assert_eq!(service.max_memory_mb, Some(512));
    }

    #[test]
    fn requeues_default_to_three_and_zero_turns_them_off() {
        let worker = |extra: Value| {
            let mut v = json!({"type": "worker", "containerfile_path": "w/Dockerfile",
                "command": "run", "queues": ["q"]});
            v.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            problems(v).0.unwrap()
        };
        assert_eq!(worker(json!({})).max_requeues(), DEFAULT_MAX_REQUEUES);
        assert_eq!(worker(json!({"max_requeues": 0})).max_requeues(), 0);
    }

    #[test]
    fn queue_settings_errors_name_the_key_and_what_to_do() {
        let path = "config/deployment_config.json: projects.shop.services.jobs";
        let cases = [
            (
                json!({"containerfile_path": "w/Dockerfile", "queues": ["q"]}),
                format!("{path}.queues: only a worker consumes queues; a web service reaches Redis through REDIS_URL without naming them: remove this key or make the service \"type\": \"worker\""),
            ),
            (
                json!({"type": "worker", "containerfile_path": "w/Dockerfile", "command": "run", "max_queue_depth": 10}),
                format!("{path}.max_queue_depth: applies to the service's `queues`, and it names none: add them, like \"queues\": [\"email_queue\"], or remove this key"),
            ),
            (
                json!({"type": "worker", "containerfile_path": "w/Dockerfile", "command": "run", "queues": ["jobs:failed"]}),
                format!("{path}.queues[0]: `jobs:failed` ends with `:failed`, which the monitor uses for a queue's own companion list; name the queue without it"),
            ),
            (
                json!({"type": "worker", "containerfile_path": "w/Dockerfile", "command": "run", "queues": ["a b"]}),
                format!("{path}.queues[0]: `a b` is not a queue name; use one without spaces, like \"email_queue\""),
            ),
            (
                json!({"type": "worker", "containerfile_path": "w/Dockerfile", "command": "run", "queues": "q"}),
                format!("{path}.queues: expected a list of strings like [\"email_queue\"], found \"q\""),
            ),
            (
                json!({"type": "worker", "containerfile_path": "w/Dockerfile", "command": "run", "queues": ["q"], "max_queue_depth": 0}),
                format!("{path}.max_queue_depth: expected a whole number from 1 to 1000000000, found 0"),
            ),
            (
                json!({"containerfile_path": "w/Dockerfile", "max_cpu_percent": "90%"}),
                format!("{path}.max_cpu_percent: expected a whole number from 1 to 100000, found \"90%\""),
            ),
            (
                json!({"containerfile_path": "w/Dockerfile", "max_memory_mb": -1}),
                format!("{path}.max_memory_mb: expected a whole number from 1 to 16777216, found -1"),
            ),
        ];
        for (service, expected) in cases {
            let (_, messages) = problems(service.clone());
            assert_eq!(messages, vec![expected], "for {service}");
        }
    }
}
