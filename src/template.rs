//! Templates: minijinja over `templates/` (a project file overrides the embedded default of the
//! same name), and the typed context each bundled template is rendered with, built from the
//! loaded configs.
//!
//! Rendering is strict: a variable or field the context does not have is an error naming the
//! template file, the line and what was missing, never an empty string in a config file.
//!
//! Contexts follow one rule for where services run: the placement in [`Loaded::services`]
//! (spec + deployment config, ports sticky from the state). IPs come from the runtime
//! droplets; a droplet without one yet is simply left out, so every context renders before
//! orchestration too.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use indexmap::IndexMap;
use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Enumerator, Object, ObjectExt, ObjectRepr, Value as JinjaValue};
use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::deployment::ServiceConfig;
use crate::config::Loaded;
use crate::project::{embedded_defaults, Project, Source};
use crate::state::placement::{project_env, service_name};
use crate::state::{ServiceKind, ServiceMap, ServiceRecord, Summary};

/// Why a template could not be rendered. Every variant is the input's fault: the template, the
/// context or the names asked for.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("template `{name}` is neither in templates/ nor embedded; create templates/{name} or use one of: {known}")]
    NotFound { name: String, known: String },
    /// The template failed to parse or render.
    #[error("{}", located(.file, *.line, .message, .source_line.as_deref()))]
    Render {
        /// The file as shown to the user: `templates/x.j2` or `<embedded>/templates/x.j2`.
        file: String,
        line: Option<usize>,
        message: String,
        source_line: Option<String>,
    },
    /// The context cannot be built: unknown project, bad release tag, missing secret, ...
    #[error("{0}")]
    Context(String),
}

fn located(file: &str, line: Option<usize>, message: &str, source_line: Option<&str>) -> String {
    match (line, source_line) {
        (Some(line), Some(src)) => {
            let gutter = line.to_string().len();
            format!("{file}:{line}: {message}\n{:gutter$} |\n{line} | {src}", "")
        }
        (Some(line), None) => format!("{file}:{line}: {message}"),
        _ => format!("{file}: {message}"),
    }
}

fn context_error(message: impl Into<String>) -> TemplateError {
    TemplateError::Context(message.into())
}

/// The templates of one project, ready to render.
pub struct Templates {
    env: Environment<'static>,
    /// Every template the loader has read, by name, for naming files and showing lines.
    sources: Arc<Mutex<HashMap<String, Source>>>,
    /// Names the environment provides (`range`, `namespace`, ...): a context lookup of one of
    /// these that fails is not a miss, since the global answers it.
    globals: Arc<HashSet<String>>,
}

impl Templates {
    pub fn new(project: &Project) -> Templates {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // Outputs are YAML, nginx, HCL and env files, not HTML: escaping would corrupt them.
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.set_syntax(
            SyntaxConfig::builder()
                .keep_trailing_newline(true)
                .build()
                .expect("the default delimiters are valid"),
        );
        let sources: Arc<Mutex<HashMap<String, Source>>> = Arc::default();
        let seen = sources.clone();
        let project = project.clone();
        env.set_loader(move |name| {
            if let Some(problem) = name_problem(name) {
                return Err(minijinja::Error::new(ErrorKind::InvalidOperation, problem));
            }
            let found = match project.source(&format!("templates/{name}")) {
                Ok(source) => Some(source),
                Err(crate::project::SourceError::NotFound) => None,
                Err(e) => {
                    return Err(minijinja::Error::new(
                        ErrorKind::InvalidOperation,
                        format!("template {e}"),
                    ))
                }
            };
            Ok(found.map(|source| {
                let text = source.text.clone();
                seen.lock()
                    .expect("template sources")
                    .insert(name.to_string(), source);
                text
            }))
        });
        let globals = env.globals().map(|(name, _)| name.to_string()).collect();
        Templates {
            env,
            sources,
            globals: Arc::new(globals),
        }
    }

    /// Renders `name` (relative to `templates/`) with any serializable context.
    pub fn render<C: Serialize + ?Sized>(
        &self,
        name: &str,
        context: &C,
    ) -> Result<String, TemplateError> {
        let value = serde_json::to_value(context).map_err(|e| {
            context_error(format!("the context of `{name}` cannot be serialized: {e}"))
        })?;
        self.render_value(name, &value)
    }

    /// Renders `name` with a JSON context (an object: its keys are the template's variables).
    pub fn render_value(&self, name: &str, context: &Value) -> Result<String, TemplateError> {
        let name = normalize_name(name);
        if let Some(problem) = name_problem(name) {
            return Err(context_error(problem));
        }
        if !context.is_object() {
            return Err(context_error(format!(
                "the context of `{name}` must be a map of variables, not {}",
                json_kind(context)
            )));
        }
        let misses = Arc::new(Misses::default());
        let root = tracked(context, String::new(), &misses, &self.globals);
        let result = self
            .env
            .get_template(name)
            .and_then(|template| template.render(root));
        result.map_err(|err| self.convert(name, &err, &misses))
    }

    fn convert(&self, name: &str, err: &minijinja::Error, misses: &Misses) -> TemplateError {
        // Errors inside an included template arrive wrapped; the innermost one knows the file.
        let mut inner = err;
        while let Some(next) =
            std::error::Error::source(inner).and_then(|s| s.downcast_ref::<minijinja::Error>())
        {
            inner = next;
        }
        if inner.kind() == ErrorKind::TemplateNotFound {
            let missing = inner
                .detail()
                .and_then(|d| d.split('"').nth(1))
                .unwrap_or(name)
                .to_string();
            return TemplateError::NotFound {
                name: missing,
                known: known_templates().join(", "),
            };
        }
        let template = inner.name().unwrap_or(name);
        let sources = self.sources.lock().expect("template sources");
        let source = sources.get(template);
        let file = source
            .map(|s| s.display.clone())
            .unwrap_or_else(|| format!("templates/{template}"));
        let line = inner.line();
        let source_line = line
            .and_then(|l| source.and_then(|s| s.text.lines().nth(l - 1)))
            .map(|s| s.trim_end().to_string());
        let message = if inner.kind() == ErrorKind::UndefinedError {
            undefined_message(template, source_line.as_deref(), misses)
        } else {
            match inner.detail() {
                Some(detail) => format!("{}: {detail}", inner.kind()),
                None => inner.kind().to_string(),
            }
        };
        TemplateError::Render {
            file,
            line,
            message,
            source_line,
        }
    }
}

/// `templates/nginx/nginx.conf.j2` and `nginx/nginx.conf.j2` name the same template.
fn normalize_name(name: &str) -> &str {
    let name = name.trim_start_matches("./");
    name.strip_prefix("templates/").unwrap_or(name)
}

/// Template names stay inside `templates/`: a playbook must not read other files through them.
fn name_problem(name: &str) -> Option<String> {
    let bad = name.is_empty()
        || name.starts_with('/')
        || name.contains('\\')
        || name.split('/').any(|part| part.is_empty() || part == "..");
    bad.then(|| {
        format!("`{name}` is not a template name; use a path inside templates/, like \"nginx/nginx.conf.j2\"")
    })
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

/// The embedded templates, by name relative to `templates/`.
pub fn known_templates() -> Vec<String> {
    embedded_defaults()
        .into_iter()
        .filter_map(|(rel, _)| rel.strip_prefix("templates/").map(str::to_string))
        .collect()
}

// --- naming what was undefined --------------------------------------------------------------
//
// minijinja only names the undefined expression with its `debug` feature, which infra does not
// build with. Instead every map in the context is an object that remembers lookups of keys it
// does not have; when rendering fails on an undefined value, the last such lookup whose key
// appears on the failing line is what was undefined.

#[derive(Debug, Default)]
struct Misses {
    list: Mutex<Vec<Miss>>,
}

#[derive(Debug, Clone)]
struct Miss {
    /// Where the lookup was made: `""` for the top level, `upstreams[0]` for a nested map.
    parent: String,
    key: String,
    /// The keys the map does have (names only: a context can hold secret values).
    known: Vec<String>,
}

/// Lookups made by `is defined` tests or `default` filters also miss, harmlessly; only the
/// recent ones can explain an error, so the list is kept short.
const MAX_MISSES: usize = 64;

impl Misses {
    fn record(&self, miss: Miss) {
        let mut list = self.list.lock().expect("template misses");
        if list.len() == MAX_MISSES {
            list.remove(0);
        }
        list.push(miss);
    }
}

struct TrackedMap {
    path: String,
    entries: IndexMap<String, JinjaValue>,
    misses: Arc<Misses>,
    globals: Arc<HashSet<String>>,
}

// Values stay out of Debug output: they can be secrets, and Debug ends up in logs.
impl fmt::Debug for TrackedMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrackedMap")
            .field("path", &self.path)
            .field("keys", &self.entries.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Object for TrackedMap {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &JinjaValue) -> Option<JinjaValue> {
        let key = key.as_str()?;
        if let Some(value) = self.entries.get(key) {
            return Some(value.clone());
        }
        if !(self.path.is_empty() && self.globals.contains(key)) {
            self.misses.record(Miss {
                parent: self.path.clone(),
                key: key.to_string(),
                known: self.entries.keys().cloned().collect(),
            });
        }
        None
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        self.mapped_enumerator(|this| Box::new(this.entries.keys().cloned().map(JinjaValue::from)))
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        Some(self.entries.len())
    }
}

fn tracked(
    value: &Value,
    path: String,
    misses: &Arc<Misses>,
    globals: &Arc<HashSet<String>>,
) -> JinjaValue {
    match value {
        Value::Object(map) => {
            let entries = map
                .iter()
                .map(|(key, v)| {
                    let child = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    (key.clone(), tracked(v, child, misses, globals))
                })
                .collect();
            JinjaValue::from_object(TrackedMap {
                path,
                entries,
                misses: misses.clone(),
                globals: globals.clone(),
            })
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| tracked(v, format!("{path}[{i}]"), misses, globals))
            .collect::<Vec<_>>()
            .into(),
        Value::String(s) => JinjaValue::from(s.as_str()),
        Value::Bool(b) => JinjaValue::from(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => JinjaValue::from(i),
            (None, Some(u)) => JinjaValue::from(u),
            _ => JinjaValue::from(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::Null => JinjaValue::from(()),
    }
}

fn undefined_message(template: &str, line: Option<&str>, misses: &Misses) -> String {
    let list = misses.list.lock().expect("template misses");
    let culprit = line.and_then(|line| {
        list.iter()
            .rev()
            .find(|m| contains_word(line, &m.key))
            .cloned()
    });
    let hint = format!(
        "`infra render {template} --show-context` lists what the context has, or fix the name in the template"
    );
    match culprit {
        Some(m) if m.parent.is_empty() => format!(
            "`{}` is undefined: the context has no such variable (it has {}); {hint}",
            m.key,
            names(&m.known)
        ),
        Some(m) => format!(
            "`{}` is undefined: `{}` has no such field (it has {}); {hint}",
            m.key,
            m.parent,
            names(&m.known)
        ),
        None => format!(
            "undefined value: a variable or field used on this line is not in the context; {hint}"
        ),
    }
}

fn names(keys: &[String]) -> String {
    if keys.is_empty() {
        "nothing".to_string()
    } else {
        keys.join(", ")
    }
}

/// Whether `word` occurs in `line` as a whole identifier.
fn contains_word(line: &str, word: &str) -> bool {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    line.match_indices(word).any(|(at, _)| {
        let before = line[..at].chars().next_back();
        let after = line[at + word.len()..].chars().next();
        !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
    })
}

// --- contexts ---------------------------------------------------------------------------------

/// A service of one project-environment, as every deployment template sees it.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceView {
    /// `worker_email`, as in deployment_config.json.
    pub name: String,
    /// `hostomatic-prod-worker_email`: the container name.
    pub full_name: String,
    /// `worker-email`: Kubernetes names are DNS-1123 labels, which have no `_`.
    pub k8s_name: String,
    #[serde(rename = "type")]
    pub kind: ServiceKind,
    /// `<project>-<env>-<service>:<release>`.
    pub image: String,
    pub containerfile_path: String,
    /// The port a web service listens on, on its droplets and inside its container.
    pub port: Option<u16>,
    /// Where the load balancer routes a web service (`/api/`).
    pub route: Option<String>,
    /// The worker's command as words; empty runs the image's default.
    pub command: Vec<String>,
    pub health_check: Option<String>,
    /// Non-secret variables from deployment_config.json.
    pub environment: IndexMap<String, String>,
    /// Secret names (`db_password`); values only ever reach the env file.
    pub secrets: Vec<String>,
    /// The Kubernetes Secret holding the env file: `<k8s_name>-env`.
    pub secret_name: String,
    /// The env file's name beside the compose file: `<full_name>.env`.
    pub env_file: String,
    pub droplets: Vec<String>,
    /// Kubernetes replicas: one per assigned droplet, at least one.
    pub replicas: usize,
}

/// `templates/docker-compose.yml.j2`.
#[derive(Debug, Clone, Serialize)]
pub struct ComposeContext {
    pub project: String,
    pub environment: String,
    pub project_env: String,
    pub release: String,
    /// When set, only the services placed on this droplet.
    pub droplet: Option<String>,
    pub services: Vec<ServiceView>,
}

/// `templates/kubernetes/*.yaml.j2`.
#[derive(Debug, Clone, Serialize)]
pub struct KubernetesContext {
    pub project: String,
    pub environment: String,
    /// `<project>-<env>`.
    pub namespace: String,
    pub release: String,
    pub services: Vec<ServiceView>,
}

/// Where nginx keeps its files and how it listens; `infra render --set` overrides them.
#[derive(Debug, Clone, Serialize)]
pub struct NginxSettings {
    pub listen: u16,
    pub pid: String,
    pub error_log: String,
    pub access_log: String,
    /// Directory for request-body and proxy buffers; none keeps nginx's built-in paths.
    pub temp_dir: Option<String>,
    pub worker_connections: u32,
}

impl Default for NginxSettings {
    fn default() -> Self {
        NginxSettings {
            listen: 80,
            pid: "/run/nginx.pid".into(),
            error_log: "/var/log/nginx/error.log".into(),
            access_log: "/var/log/nginx/access.log".into(),
            temp_dir: None,
            worker_connections: 1024,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UpstreamTarget {
    pub droplet: String,
    pub ip: String,
    pub port: u16,
}

/// One web service of one project-environment, over its droplets.
#[derive(Debug, Clone, Serialize)]
pub struct Upstream {
    /// `<project>-<env>-<service>`.
    pub name: String,
    pub project_env: String,
    pub service: String,
    pub port: u16,
    /// Assigned droplets that have an IP.
    pub targets: Vec<UpstreamTarget>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Location {
    pub route: String,
    pub upstream: String,
    pub service: String,
}

/// One project-environment's virtual server.
#[derive(Debug, Clone, Serialize)]
pub struct VirtualServer {
    pub project: String,
    pub environment: String,
    pub project_env: String,
    /// `domains[env]` from deployment_config.json, else `<env>.<project>.internal`.
    pub server_name: String,
    pub locations: Vec<Location>,
}

/// `templates/nginx/nginx.conf.j2`.
#[derive(Debug, Clone, Serialize)]
pub struct NginxContext {
    pub nginx: NginxSettings,
    pub upstreams: Vec<Upstream>,
    pub servers: Vec<VirtualServer>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VaultSettings {
    pub listen_address: String,
    pub port: u16,
    pub cluster_port: u16,
    pub storage_path: String,
    pub ui: bool,
    pub tls_cert_file: Option<String>,
    pub tls_key_file: Option<String>,
}

impl Default for VaultSettings {
    fn default() -> Self {
        VaultSettings {
            listen_address: "0.0.0.0".into(),
            port: 8200,
            cluster_port: 8201,
            storage_path: "/opt/vault/data".into(),
            ui: true,
            tls_cert_file: None,
            tls_key_file: None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct MasterView {
    pub name: String,
    pub ip: Option<String>,
}

/// `templates/vault/vault.hcl.j2`.
#[derive(Debug, Clone, Serialize)]
pub struct VaultContext {
    pub vault: VaultSettings,
    pub master: Option<MasterView>,
}

/// A secret's value: it serializes as itself (into the rendered output) but never shows in
/// Debug output.
#[derive(Clone, Serialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself, for where it must go (an env file, a Kubernetes Secret): never to
    /// output or logs.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// `templates/env/service.env.j2`.
#[derive(Debug, Clone, Serialize)]
pub struct EnvFileContext {
    pub project: String,
    pub environment: String,
    pub service: String,
    pub full_name: String,
    /// The service's `environment`.
    pub variables: IndexMap<String, String>,
    /// `DB_PASSWORD` for secret `db_password`.
    pub secrets: IndexMap<String, Secret>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DropletView {
    pub name: String,
    pub ip: Option<String>,
    pub role: String,
    pub project: Option<String>,
    /// Full names of the services placed on it, workers included.
    pub services: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Heartbeat {
    /// The droplet whose monitor sends it.
    pub sender: String,
    pub interval_minutes: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct FailureAlert {
    pub droplet: String,
    pub ip: Option<String>,
    /// What the health check saw.
    pub error: String,
    /// The monitors that agreed it failed.
    pub reported_by: Vec<String>,
    pub services: Vec<String>,
    /// What happens next, when it is not a recovery from the latest snapshot (a restarted
    /// container, a verdict on the master the monitors only alert about).
    pub action: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RecoveryComplete {
    pub droplet: String,
    pub old_ip: Option<String>,
    pub new_ip: Option<String>,
    pub snapshot: Option<String>,
    pub duration_seconds: u64,
    pub services: Vec<String>,
}

/// What an email is about; its variant's fields are the template's `heartbeat`, `failure`
/// or `recovery` variable.
#[derive(Debug, Clone, Serialize)]
pub enum EmailEvent {
    #[serde(rename = "heartbeat")]
    Heartbeat(Heartbeat),
    #[serde(rename = "failure")]
    FailureAlert(FailureAlert),
    #[serde(rename = "recovery")]
    RecoveryComplete(RecoveryComplete),
}

/// `templates/email/*.txt.j2`.
#[derive(Debug, Clone, Serialize)]
pub struct EmailContext {
    /// RFC 3339, UTC.
    pub sent_at: String,
    pub from: Option<String>,
    pub recipients: Vec<String>,
    pub summary: Summary,
    pub droplets: Vec<DropletView>,
    #[serde(flatten)]
    pub event: EmailEvent,
}

/// The services of `project`'s `environment`, checking that both exist.
pub fn placed<'a>(
    loaded: &'a Loaded,
    project: &str,
    environment: &str,
) -> Result<&'a ServiceMap, TemplateError> {
    let Some(spec) = loaded.spec.projects.get(project) else {
        let known: Vec<String> = loaded.spec.projects.keys().cloned().collect();
        return Err(context_error(format!(
            "project `{project}` is not in infrastructure_spec.projects; known projects: {}",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        )));
    };
    if !spec.environments.iter().any(|e| e == environment) {
        return Err(context_error(format!(
            "project `{project}` has no environment `{environment}`; it has {}",
            spec.environments.join(", ")
        )));
    }
    loaded
        .services
        .get(&project_env(project, environment))
        .ok_or_else(|| {
            context_error(format!(
                "`{}` has no placed services; run `infra validate` to see why",
                project_env(project, environment)
            ))
        })
}

/// Docker image tags: a letter, digit or `_`, then up to 127 of those, `.` and `-`.
fn release_problem(release: &str) -> Option<String> {
    let valid = release.len() <= 128
        && release
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && release
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    (!valid).then(|| {
        format!("`{release}` is not a valid image tag; use letters, digits, `_`, `.` and `-` (at most 128), like \"uat-20250101-120000-abc1234\"")
    })
}

/// A web service's port; placement gives every web service one unless the config has a
/// problem, which `infra validate` explains.
fn web_port(full_name: &str, record: &ServiceRecord) -> Result<u16, TemplateError> {
    record.port.ok_or_else(|| {
        context_error(format!(
            "web service `{full_name}` has no port; run `infra validate` to see why"
        ))
    })
}

/// Where the load balancer routes a web service; a service no longer in
/// deployment_config.json keeps the default route for its name.
fn route_of(config: Option<&ServiceConfig>, name: &str) -> String {
    match config {
        Some(c) => c.route(name),
        None => format!("/{name}/"),
    }
}

fn service_view(
    project: &str,
    environment: &str,
    name: &str,
    record: &ServiceRecord,
    config: Option<&ServiceConfig>,
    release: &str,
) -> Result<ServiceView, TemplateError> {
    let key = project_env(project, environment);
    let full_name = service_name(&key, name);
    let port = match record.kind {
        ServiceKind::Web => Some(web_port(&full_name, record)?),
        ServiceKind::Worker => None,
    };
    let command = match config.and_then(|c| c.command.as_deref()) {
        Some(command) => split_command(command).map_err(|problem| {
            context_error(format!(
                "the command of `{full_name}` in deployment_config.json {problem}"
            ))
        })?,
        None => Vec::new(),
    };
    let k8s_name = name.replace('_', "-");
    Ok(ServiceView {
        name: name.to_string(),
        image: format!("{full_name}:{release}"),
        full_name: full_name.clone(),
        secret_name: format!("{k8s_name}-env"),
        k8s_name,
        kind: record.kind,
        containerfile_path: config
            .map(|c| c.containerfile_path.clone())
            .unwrap_or_else(|| format!("{name}/Dockerfile")),
        port,
        route: (record.kind == ServiceKind::Web).then(|| route_of(config, name)),
        command,
        health_check: config.and_then(|c| c.health_check.clone()),
        environment: config.map(|c| c.environment.clone()).unwrap_or_default(),
        secrets: config.map(|c| c.secrets.clone()).unwrap_or_default(),
        env_file: format!("{full_name}.env"),
        droplets: record.assigned_droplets.clone(),
        replicas: record.assigned_droplets.len().max(1),
    })
}

fn service_views(
    loaded: &Loaded,
    project: &str,
    environment: &str,
    release: &str,
) -> Result<Vec<ServiceView>, TemplateError> {
    if let Some(problem) = release_problem(release) {
        return Err(context_error(problem));
    }
    let services = placed(loaded, project, environment)?;
    let deployment = loaded.deployment.project(project);
    services
        .iter()
        .map(|(name, record)| {
            service_view(
                project,
                environment,
                name,
                record,
                deployment.services.get(name),
                release,
            )
        })
        .collect()
}

/// The Compose file of `project`'s `environment`: every service, or only those placed on
/// `droplet`.
pub fn compose_context(
    loaded: &Loaded,
    project: &str,
    environment: &str,
    release: &str,
    droplet: Option<&str>,
) -> Result<ComposeContext, TemplateError> {
    let mut services = service_views(loaded, project, environment, release)?;
    let key = project_env(project, environment);
    if let Some(d) = droplet {
        services.retain(|s| s.droplets.iter().any(|x| x == d));
        if services.is_empty() {
            return Err(context_error(format!(
                "no service of `{key}` is placed on `{d}`; `infra discover {project} {environment}` shows where they run"
            )));
        }
    }
    Ok(ComposeContext {
        project: project.to_string(),
        environment: environment.to_string(),
        project_env: key,
        release: release.to_string(),
        droplet: droplet.map(str::to_string),
        services,
    })
}

/// The Kubernetes namespace, Deployments and Services of `project`'s `environment`.
pub fn kubernetes_context(
    loaded: &Loaded,
    project: &str,
    environment: &str,
    release: &str,
) -> Result<KubernetesContext, TemplateError> {
    let services = service_views(loaded, project, environment, release)?;
    let namespace = project_env(project, environment);
    // DNS-1123 labels are at most 63 characters; project and environment names allow longer.
    for name in std::iter::once(&namespace).chain(services.iter().map(|s| &s.k8s_name)) {
        if name.len() > 63 {
            return Err(context_error(format!(
                "`{name}` is longer than the 63 characters Kubernetes allows in a name; use a shorter project, environment or service name"
            )));
        }
    }
    Ok(KubernetesContext {
        project: project.to_string(),
        environment: environment.to_string(),
        namespace,
        release: release.to_string(),
        services,
    })
}

/// Whether `s` can stand as one nginx word: a domain or a route from deployment_config.json
/// must not be able to end a directive or open a block in nginx.conf.
fn is_nginx_word(s: &str) -> bool {
    !s.is_empty()
        && !s.chars().any(|c| {
            c.is_whitespace() || matches!(c, ';' | '{' | '}' | '#' | '"' | '\'' | '$' | '\\')
        })
}

/// The load balancer: an upstream per web service of every project-environment, over the
/// assigned droplets that have an IP (none before orchestration: the template then puts a
/// `down` placeholder in it, since nginx refuses an empty upstream), and a virtual server per
/// project-environment that has web services.
pub fn nginx_context(loaded: &Loaded) -> Result<NginxContext, TemplateError> {
    let mut upstreams = Vec::new();
    let mut servers = Vec::new();
    for (project, spec) in &loaded.spec.projects {
        let deployment = loaded.deployment.project(project);
        for environment in &spec.environments {
            let key = project_env(project, environment);
            let services = placed(loaded, project, environment)?;
            let server_name = deployment
                .domains
                .get(environment)
                .cloned()
                .unwrap_or_else(|| format!("{environment}.{project}.internal"));
            if !is_nginx_word(&server_name) {
                return Err(context_error(format!(
                    "domain `{server_name}` of `{key}` in deployment_config.json is not a host name; use one like \"uat.example.com\""
                )));
            }
            let mut locations: Vec<Location> = Vec::new();
            for (service, record) in services {
                if record.kind != ServiceKind::Web {
                    continue;
                }
                let full_name = service_name(&key, service);
                let port = web_port(&full_name, record)?;
                let route = route_of(deployment.services.get(service), service);
                if !is_nginx_word(&route) {
                    return Err(context_error(format!(
                        "route `{route}` of `{full_name}` is not a plain URL path; set its `path` in deployment_config.json to one like \"/api/\""
                    )));
                }
                if let Some(other) = locations.iter().find(|l| l.route == route) {
                    return Err(context_error(format!(
                        "`{}` and `{full_name}` both route `{route}` on `{server_name}`; give one of them another `path` in deployment_config.json",
                        other.upstream
                    )));
                }
                let targets = record
                    .assigned_droplets
                    .iter()
                    .filter_map(|d| {
                        let ip = loaded.runtime.droplets.get(d)?.ip.clone()?;
                        Some(UpstreamTarget {
                            droplet: d.clone(),
                            ip,
                            port,
                        })
                    })
                    .collect();
                locations.push(Location {
                    route,
                    upstream: full_name.clone(),
                    service: service.clone(),
                });
                upstreams.push(Upstream {
                    name: full_name,
                    project_env: key.clone(),
                    service: service.clone(),
                    port,
                    targets,
                });
            }
            // A project-environment of workers only takes no traffic.
            if !locations.is_empty() {
                servers.push(VirtualServer {
                    project: project.clone(),
                    environment: environment.clone(),
                    project_env: key,
                    server_name,
                    locations,
                });
            }
        }
    }
    Ok(NginxContext {
        nginx: NginxSettings::default(),
        upstreams,
        servers,
    })
}

/// Vault on the master.
pub fn vault_context(loaded: &Loaded) -> VaultContext {
    let running = loaded
        .runtime
        .droplets
        .iter()
        .find(|(_, d)| d.role == "master")
        .map(|(name, d)| MasterView {
            name: name.clone(),
            ip: d.ip.clone(),
        });
    let master = running.or_else(|| {
        loaded.spec.master().map(|(name, _)| MasterView {
            name: name.clone(),
            ip: None,
        })
    });
    VaultContext {
        vault: VaultSettings::default(),
        master,
    }
}

/// `HOSTOMATIC_PROD_DB_PASSWORD`: the environment variable a secret's value is read from at
/// deploy time.
pub fn secret_env_name(project: &str, environment: &str, secret: &str) -> String {
    format!("{project}_{environment}_{secret}")
        .to_uppercase()
        .replace('-', "_")
}

/// The env file of one service. `secrets` maps each of the service's secret names
/// (`db_password`) to its value; every secret the service lists must be there.
pub fn env_file_context(
    loaded: &Loaded,
    project: &str,
    environment: &str,
    service: &str,
    secrets: &IndexMap<String, Secret>,
) -> Result<EnvFileContext, TemplateError> {
    let services = placed(loaded, project, environment)?;
    let key = project_env(project, environment);
    let full_name = service_name(&key, service);
    if !services.contains_key(service) {
        let known: Vec<&str> = services.keys().map(String::as_str).collect();
        return Err(context_error(format!(
            "`{key}` has no service `{service}`; it has {}",
            known.join(", ")
        )));
    }
    let deployment = loaded.deployment.project(project);
    let config = deployment.services.get(service);
    let variables = config.map(|c| c.environment.clone()).unwrap_or_default();
    // An env file holds one variable a line: a line break would split a value in two.
    for (name, value) in &variables {
        if value.contains(['\n', '\r']) {
            return Err(context_error(format!(
                "the value of `{name}` in the environment of `{full_name}` spans lines; env files hold one line per variable, so remove the line break"
            )));
        }
    }
    let wanted = config.map(|c| c.secrets.clone()).unwrap_or_default();
    for name in secrets.keys() {
        if !wanted.contains(name) {
            return Err(context_error(format!(
                "`{name}` is not a secret of `{full_name}`; it has {}",
                if wanted.is_empty() {
                    "none".to_string()
                } else {
                    wanted.join(", ")
                }
            )));
        }
    }
    let mut values = IndexMap::new();
    for name in &wanted {
        let var = name.to_uppercase();
        let Some(value) = secrets.get(name) else {
            return Err(context_error(format!(
                "secret `{name}` of `{full_name}` has no value; set the environment variable {}",
                secret_env_name(project, environment, name)
            )));
        };
        // The message names the secret, never its value.
        if value.0.contains(['\n', '\r']) {
            return Err(context_error(format!(
                "the value of secret `{name}` of `{full_name}` spans lines; env files hold one line per variable, so store it without line breaks"
            )));
        }
        if variables.contains_key(&var) {
            return Err(context_error(format!(
                "`{var}` of `{full_name}` is both in its environment and a secret; remove one of them from deployment_config.json"
            )));
        }
        values.insert(var, value.clone());
    }
    Ok(EnvFileContext {
        project: project.to_string(),
        environment: environment.to_string(),
        service: service.to_string(),
        full_name,
        variables,
        secrets: values,
    })
}

/// Full names of the services placed on `droplet`, workers included.
fn services_placed_on(loaded: &Loaded, droplet: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (key, services) in &loaded.services {
        for (service, record) in services {
            if record.assigned_droplets.iter().any(|d| d == droplet) {
                out.push(service_name(key, service));
            }
        }
    }
    out
}

/// A notification email about `event`, sent at `sent_at`.
pub fn email_context(loaded: &Loaded, event: EmailEvent, sent_at: SystemTime) -> EmailContext {
    let droplets = loaded
        .runtime
        .droplets
        .iter()
        .map(|(name, d)| DropletView {
            name: name.clone(),
            ip: d.ip.clone(),
            role: d.role.clone(),
            project: d.project.clone(),
            services: services_placed_on(loaded, name),
        })
        .collect();
    EmailContext {
        sent_at: humantime::format_rfc3339_seconds(sent_at).to_string(),
        from: loaded.email.from.clone(),
        recipients: loaded.email.recipients.clone(),
        summary: loaded.state.summary(),
        droplets,
        event,
    }
}

// --- choosing a context by template name ------------------------------------------------------

/// Which context a template is rendered with, by where it lives under `templates/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextKind {
    Compose,
    Kubernetes,
    Nginx,
    Vault,
    EnvFile,
    Heartbeat,
    FailureAlert,
    RecoveryComplete,
}

impl ContextKind {
    /// `docker-compose*` and the folders `kubernetes/`, `nginx/`, `vault/`, `env/` and
    /// `email/` (by file name), so a team's added template gets its folder's context.
    pub fn of(name: &str) -> Result<ContextKind, TemplateError> {
        let name = normalize_name(name);
        if let Some(problem) = name_problem(name) {
            return Err(context_error(problem));
        }
        let (folder, file) = name.split_once('/').unwrap_or(("", name));
        let kind = match folder {
            "" if file.starts_with("docker-compose") => Some(ContextKind::Compose),
            "kubernetes" => Some(ContextKind::Kubernetes),
            "nginx" => Some(ContextKind::Nginx),
            "vault" => Some(ContextKind::Vault),
            "env" => Some(ContextKind::EnvFile),
            "email" => match file.split('.').next().unwrap_or("") {
                "heartbeat" => Some(ContextKind::Heartbeat),
                "failure_alert" => Some(ContextKind::FailureAlert),
                "recovery_complete" => Some(ContextKind::RecoveryComplete),
                _ => None,
            },
            _ => None,
        };
        kind.ok_or_else(|| {
            context_error(format!(
                "infra does not know which context `{name}` is rendered with; put it under kubernetes/, nginx/, vault/ or env/, name it docker-compose*, or name an email heartbeat, failure_alert or recovery_complete"
            ))
        })
    }
}

/// What a context is built for; fields a template's context does not use are ignored.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub project: Option<String>,
    pub environment: Option<String>,
    /// The service of an env file.
    pub service: Option<String>,
    /// The image tag of Compose and Kubernetes templates; `latest` when not given.
    pub release: Option<String>,
    /// Compose: only this droplet's services. Emails: the droplet the email is about.
    pub droplet: Option<String>,
}

impl Request {
    fn project_env(&self, template: &str) -> Result<(&str, &str), TemplateError> {
        match (self.project.as_deref(), self.environment.as_deref()) {
            (Some(p), Some(e)) => Ok((p, e)),
            _ => Err(context_error(format!(
                "`{template}` renders one project-environment; name them, like `infra render {template} hostomatic uat`"
            ))),
        }
    }

    fn release(&self) -> &str {
        self.release.as_deref().unwrap_or("latest")
    }
}

/// The context infra renders `template` with. Secrets are never read here: an env file's
/// secrets show where their value would come from (`<from $HOSTOMATIC_PROD_DB_PASSWORD>`);
/// deploying calls [`env_file_context`] with the values.
pub fn context_for(
    loaded: &Loaded,
    template: &str,
    request: &Request,
) -> Result<Value, TemplateError> {
    let template = normalize_name(template);
    let value = match ContextKind::of(template)? {
        ContextKind::Compose => {
            let (p, e) = request.project_env(template)?;
            to_json(&compose_context(
                loaded,
                p,
                e,
                request.release(),
                request.droplet.as_deref(),
            )?)
        }
        ContextKind::Kubernetes => {
            let (p, e) = request.project_env(template)?;
            to_json(&kubernetes_context(loaded, p, e, request.release())?)
        }
        ContextKind::Nginx => to_json(&nginx_context(loaded)?),
        ContextKind::Vault => to_json(&vault_context(loaded)),
        ContextKind::EnvFile => {
            let (p, e) = request.project_env(template)?;
            let Some(service) = request.service.as_deref() else {
                return Err(context_error(format!(
                    "`{template}` renders one service's env file; name it, like `infra render {template} {p} {e} --service backend`"
                )));
            };
            let deployment = loaded.deployment.project(p);
            let placeholders = deployment
                .services
                .get(service)
                .map(|c| {
                    c.secrets
                        .iter()
                        .map(|s| {
                            let var = secret_env_name(p, e, s);
                            (s.clone(), Secret::new(format!("<from ${var}>")))
                        })
                        .collect()
                })
                .unwrap_or_default();
            to_json(&env_file_context(loaded, p, e, service, &placeholders)?)
        }
        kind => {
            let event = preview_event(loaded, kind, request.droplet.as_deref())?;
            to_json(&email_context(loaded, event, SystemTime::now()))
        }
    };
    Ok(value)
}

fn to_json<T: Serialize>(context: &T) -> Value {
    serde_json::to_value(context).expect("contexts serialize to JSON")
}

/// The event an email template is previewed with: the monitor fills in real ones.
fn preview_event(
    loaded: &Loaded,
    kind: ContextKind,
    droplet: Option<&str>,
) -> Result<EmailEvent, TemplateError> {
    let required = loaded.state.required_droplets();
    let known = |d: &str| loaded.runtime.droplets.contains_key(d) || required.contains_key(d);
    if let Some(d) = droplet.filter(|d| !known(d)) {
        return Err(context_error(format!(
            "droplet `{d}` is neither in the state nor required by the spec; `infra status` lists the droplets"
        )));
    }
    let about = droplet
        .map(str::to_string)
        .or_else(|| {
            required
                .iter()
                .find(|(_, d)| d.role == "web")
                .map(|(n, _)| n.clone())
        })
        .or_else(|| required.keys().next().cloned())
        .unwrap_or_else(|| "master".to_string());
    let ip = loaded
        .runtime
        .droplets
        .get(&about)
        .and_then(|d| d.ip.clone());
    let services = services_placed_on(loaded, &about);
    Ok(match kind {
        ContextKind::Heartbeat => {
            let config = loaded
                .state
                .heartbeat_config(loaded.email.heartbeat_interval_minutes);
            EmailEvent::Heartbeat(Heartbeat {
                sender: droplet
                    .map(str::to_string)
                    .or(config.primary_sender)
                    .unwrap_or_else(|| "master".to_string()),
                interval_minutes: config.interval_minutes,
            })
        }
        ContextKind::FailureAlert => EmailEvent::FailureAlert(FailureAlert {
            action: None,
            reported_by: loaded.state.monitored_by(&about),
            droplet: about,
            ip,
            error: "(preview: the monitor puts the failed health check here)".to_string(),
            services,
        }),
        _ => EmailEvent::RecoveryComplete(RecoveryComplete {
            droplet: about,
            old_ip: ip,
            new_ip: None,
            snapshot: None,
            duration_seconds: 0,
            services,
        }),
    })
}

/// Sets the existing value at a dotted `path` (`nginx.listen`, `upstreams.0.port`) from text:
/// parsed as JSON where the current value is not a string, so numbers stay numbers.
pub fn set_value(context: &mut Value, path: &str, text: &str) -> Result<(), TemplateError> {
    let mut current = context;
    let mut walked = Vec::new();
    for part in path.split('.') {
        let here = if walked.is_empty() {
            "the context".to_string()
        } else {
            format!("`{}`", walked.join("."))
        };
        current = match current {
            Value::Object(map) => {
                let keys: Vec<String> = map.keys().cloned().collect();
                map.get_mut(part).ok_or_else(|| {
                    context_error(format!("{here} has no `{part}`; it has {}", names(&keys)))
                })?
            }
            Value::Array(items) => {
                let len = items.len();
                part.parse::<usize>()
                    .ok()
                    .and_then(|i| items.get_mut(i))
                    .ok_or_else(|| {
                        context_error(format!(
                            "{here} is a list of {len}; index it with 0 to {}",
                            len.saturating_sub(1)
                        ))
                    })?
            }
            _ => {
                return Err(context_error(format!(
                    "{here} is not a map or a list, so it has no `{part}`"
                )))
            }
        };
        walked.push(part);
    }
    *current = match current {
        Value::String(_) => Value::String(text.to_string()),
        _ => serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string())),
    };
    Ok(())
}

/// Splits a command line into words as a POSIX shell would, without expanding anything:
/// quotes group, a backslash escapes the next character (inside double quotes, only `"`, `\`,
/// `$` and `` ` ``).
pub fn split_command(command: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("has an unclosed `'`; close the quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err("has an unclosed `\"`; close the quote".into()),
                        },
                        Some(c) => word.push(c),
                        None => return Err("has an unclosed `\"`; close the quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => word.push(c),
                    None => {
                        return Err("ends in a lone `\\`; remove it or escape what follows".into())
                    }
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// Splits a rendered email into its subject (the first line, `Subject: ...`) and body (after
/// the blank line that follows).
pub fn split_email<'a>(name: &str, rendered: &'a str) -> Result<(&'a str, &'a str), TemplateError> {
    let (first, rest) = rendered.split_once('\n').unwrap_or((rendered, ""));
    let subject = first
        .strip_prefix("Subject:")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            context_error(format!(
                "`{name}` must start with a `Subject: ...` line, then a blank line, then the body"
            ))
        })?;
    Ok((subject, rest.strip_prefix('\n').unwrap_or(rest)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn project_with(files: &[(&str, &str)]) -> (tempfile::TempDir, Project) {
        let dir = tempfile::tempdir().expect("temp dir");
        for (rel, text) in files {
            let path = dir.path().join(rel);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, text).expect("write");
        }
        let project = Project::new(dir.path(), std::path::Path::new("config"));
        (dir, project)
    }

    #[test]
    fn project_file_overrides_the_embedded_template() {
        let (_dir, project) =
            project_with(&[("templates/vault/vault.hcl.j2", "mine {{ vault.port }}\n")]);
        let out = Templates::new(&project)
            .render("vault/vault.hcl.j2", &json!({"vault": {"port": 1}}))
            .expect("renders");
        assert_eq!(out, "mine 1\n");
    }

    #[test]
    fn an_undefined_variable_names_itself_the_file_and_the_line() {
        let (_dir, project) = project_with(&[(
            "templates/custom.j2",
            "a\n{{ nginx.listen }} {{ missing }}\n",
        )]);
        let err = Templates::new(&project)
            .render("custom.j2", &json!({"nginx": {"listen": 80}}))
            .expect_err("strict");
        let text = err.to_string();
        assert!(
            text.starts_with("templates/custom.j2:2: `missing` is undefined: the context has no such variable (it has nginx)"),
            "{text}"
        );
        assert!(
            text.ends_with("2 | {{ nginx.listen }} {{ missing }}"),
            "{text}"
        );
    }

    #[test]
    fn an_undefined_field_in_a_loop_names_the_map_it_is_missing_from() {
        let (_dir, project) = project_with(&[(
            "templates/custom.j2",
            "{% for u in ups %}\n{{ u.name }}:{{ u.prot }}\n{% endfor %}\n",
        )]);
        let err = Templates::new(&project)
            .render("custom.j2", &json!({"ups": [{"name": "a", "port": 1}]}))
            .expect_err("strict");
        assert!(
            err.to_string().starts_with(
                "templates/custom.j2:2: `prot` is undefined: `ups[0]` has no such field (it has name, port)"
            ),
            "{err}"
        );
    }

    #[test]
    fn undefined_in_an_if_is_an_error_too() {
        let (_dir, project) =
            project_with(&[("templates/custom.j2", "{% if nope %}x{% endif %}\n")]);
        let err = Templates::new(&project)
            .render("custom.j2", &json!({}))
            .expect_err("strict");
        assert!(err.to_string().contains("`nope` is undefined"), "{err}");
    }

    #[test]
    fn names_outside_templates_are_refused() {
        let (_dir, project) = project_with(&[]);
        let templates = Templates::new(&project);
        for name in ["../config/x", "/etc/passwd", "a//b", ""] {
            assert!(
                matches!(
                    templates.render(name, &json!({})),
                    Err(TemplateError::Context(_))
                ),
                "{name}"
            );
        }
        assert!(matches!(
            templates.render("nope.j2", &json!({})),
            Err(TemplateError::NotFound { .. })
        ));
    }

    #[test]
    fn a_syntax_error_names_the_file_and_line() {
        let (_dir, project) = project_with(&[("templates/bad.j2", "ok\n{% if %}\n")]);
        let err = Templates::new(&project)
            .render("bad.j2", &json!({}))
            .expect_err("syntax");
        assert!(
            err.to_string()
                .starts_with("templates/bad.j2:2: syntax error"),
            "{err}"
        );
    }

    #[test]
    fn commands_split_like_a_shell() {
        assert_eq!(
            split_command(r#"python  run.py --name "a b" 'c d' e\ f "x\"y""#).expect("splits"),
            vec!["python", "run.py", "--name", "a b", "c d", "e f", "x\"y"]
        );
        assert_eq!(split_command("").expect("empty"), Vec::<String>::new());
        assert_eq!(split_command("''").expect("empty word"), vec![""]);
        assert!(split_command("python 'oops").is_err());
    }

    #[test]
    fn set_value_keeps_types_and_refuses_unknown_keys() {
        let mut ctx = json!({"nginx": {"listen": 80, "pid": "/run/nginx.pid", "temp_dir": null}, "ups": [{"port": 1}]});
        set_value(&mut ctx, "nginx.listen", "8080").expect("number");
        set_value(&mut ctx, "nginx.pid", "123").expect("string stays string");
        set_value(&mut ctx, "nginx.temp_dir", "/tmp/x").expect("null takes text");
        set_value(&mut ctx, "ups.0.port", "2").expect("index");
        assert_eq!(
            ctx,
            json!({"nginx": {"listen": 8080, "pid": "123", "temp_dir": "/tmp/x"}, "ups": [{"port": 2}]})
        );
        let err = set_value(&mut ctx, "nginx.lisen", "1").expect_err("typo");
        assert_eq!(
            err.to_string(),
            "`nginx` has no `lisen`; it has listen, pid, temp_dir"
        );
    }

    #[test]
    fn emails_split_into_subject_and_body() {
        assert_eq!(
            split_email("e", "Subject: hi\n\nbody\n").expect("splits"),
            ("hi", "body\n")
        );
        assert!(split_email("e", "hi\n\nbody").is_err());
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(serde_json::to_string(&s).expect("json"), "\"hunter2\"");
    }

    #[test]
    fn template_kinds_follow_folders() {
        assert_eq!(
            ContextKind::of("templates/kubernetes/ingress.yaml.j2").expect("kind"),
            ContextKind::Kubernetes
        );
        assert_eq!(
            ContextKind::of("docker-compose.yml.j2").expect("kind"),
            ContextKind::Compose
        );
        assert_eq!(
            ContextKind::of("email/failure_alert.txt.j2").expect("kind"),
            ContextKind::FailureAlert
        );
        assert!(ContextKind::of("email/weekly.txt.j2").is_err());
        assert!(ContextKind::of("other/x.j2").is_err());
    }
}
