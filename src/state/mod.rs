//! The state file, `config/infrastructure.json`: the spec (`infrastructure_spec`, what the user
//! wants) beside the runtime state (`droplets` and `projects`, what exists).
//!
//! [`State`] wraps the JSON document itself rather than a typed copy, so key order, formatting
//! and keys infra does not know survive every load and save. Typed views ([`Spec`],
//! [`Runtime`]) are read from it on demand; edits go straight into the document.

pub mod lock;
pub mod placement;
pub mod ports;
pub mod runtime;
pub mod spec;
pub mod store;

use crate::name_map::NameMap;
use std::path::Path;

use indexmap::IndexMap;
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::diagnostic::{Problem, Problems};
use crate::document::Document;
use crate::schema::Checker;
pub use placement::{project_env, service_name, RequiredDroplet};
pub use runtime::{DropletRecord, Runtime, ServiceKind, ServiceMap, ServiceRecord};
pub use spec::Spec;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum StateError {
    #[error("project `{name}` is not in infrastructure_spec.projects; {}", known_projects(.known))]
    UnknownProject { name: String, known: Vec<String> },
    #[error("project `{0}` already exists; use `infra scale {0} N` to change its droplets")]
    ProjectExists(String),
    #[error("droplet `{0}` is not in the state; `infra status` lists the droplets")]
    UnknownDroplet(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("no droplet matches `{target}`; name `all`, a role ({}), a project or a droplet ({})", spec::ROLES.join(", "), if .known.is_empty() { "the state has none yet: run `infra orchestrate`".to_string() } else { .known.join(", ") })]
    NoSuchTarget { target: String, known: Vec<String> },
}

fn known_projects(known: &[String]) -> String {
    if known.is_empty() {
        "the spec has no projects yet (`infra add-project` adds one)".to_string()
    } else {
        format!("the spec has {}", known.join(", "))
    }
}

#[derive(Debug, Clone)]
pub struct State {
    doc: Document,
}

/// Spec and runtime read together, with every problem found in either.
pub struct Checked {
    pub spec: Spec,
    pub runtime: Runtime,
    pub problems: Problems,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HeartbeatConfig {
    pub primary_sender: Option<String>,
    pub backup_senders: Vec<String>,
    pub interval_minutes: u32,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    pub droplets: usize,
    pub droplets_by_role: IndexMap<String, usize>,
    pub spec_droplets: usize,
    pub projects: usize,
    pub project_environments: usize,
    pub services: usize,
    pub web_services: usize,
    pub worker_services: usize,
}

impl State {
    /// An empty state: no spec, nothing running.
    pub fn empty(path: &Path, display: &str) -> State {
        let value = json!({
            "droplets": {},
            "projects": {},
            "infrastructure_spec": {"droplets": {}, "projects": {}}
        });
        State {
            doc: Document::new(path, display, value),
        }
    }

    pub fn from_document(doc: Document) -> State {
        State { doc }
    }

    /// Reads the state file; a missing file says how to create it.
    pub fn load(path: &Path, display: &str) -> Result<State, Problem> {
        match Document::read_optional(path, display)? {
            Some(doc) => Ok(State { doc }),
            None => Err(Problem::at_path(
                display,
                "",
                "not found; run `infra init` to create it, or pass `--config-dir DIR`",
            )),
        }
    }

    pub fn document(&self) -> &Document {
        &self.doc
    }

    pub fn document_mut(&mut self) -> &mut Document {
        &mut self.doc
    }

    pub fn value(&self) -> &Value {
        &self.doc.value
    }

    pub fn display(&self) -> &str {
        &self.doc.display
    }

    fn root(&self) -> Option<&Map<String, Value>> {
        self.doc.value.as_object()
    }

    fn root_mut(&mut self) -> &mut Map<String, Value> {
        if !self.doc.value.is_object() {
            self.doc.value = Value::Object(Map::new());
        }
        self.doc.value.as_object_mut().expect("root is an object")
    }

    /// The object under `key` at the root, created (at the end) when missing.
    fn section_mut(&mut self, key: &str) -> &mut Map<String, Value> {
        let root = self.root_mut();
        if !root.get(key).is_some_and(Value::is_object) {
            root.insert(key.to_string(), Value::Object(Map::new()));
        }
        root.get_mut(key)
            .and_then(Value::as_object_mut)
            .expect("object")
    }

    fn spec_section_mut(&mut self, key: &str) -> &mut Map<String, Value> {
        let spec = self.section_mut("infrastructure_spec");
        if !spec.get(key).is_some_and(Value::is_object) {
            spec.insert(key.to_string(), Value::Object(Map::new()));
        }
        spec.get_mut(key)
            .and_then(Value::as_object_mut)
            .expect("object")
    }

    /// Reads spec and runtime, collecting every problem (`validate_state`).
    pub fn check(&self) -> Checked {
        let mut c = Checker::new(&self.doc.display);
        let empty = Map::new();
        let root = match self.doc.value.as_object() {
            Some(root) => root,
            None => {
                c.expected("", "an object", &self.doc.value);
                &empty
            }
        };
        let spec = match root.get("infrastructure_spec") {
            Some(v) => Spec::check(&mut c, "infrastructure_spec", v),
            None => Spec::default(),
        };
        let runtime = Runtime::check(&mut c, root);
        runtime.check_relations(&mut c);
        Checked {
            spec,
            runtime,
            problems: c.problems,
        }
    }

    /// The spec as far as it is valid (invalid entries are left out).
    pub fn spec(&self) -> Spec {
        self.check().spec
    }

    /// The runtime state as far as it is valid.
    pub fn runtime(&self) -> Runtime {
        self.check().runtime
    }

    /// Every problem with the state file, one line each.
    pub fn validate_state(&self) -> Vec<String> {
        self.check()
            .problems
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    pub fn infrastructure_spec(&self) -> Value {
        self.root()
            .and_then(|r| r.get("infrastructure_spec"))
            .cloned()
            .unwrap_or_else(|| json!({"droplets": {}, "projects": {}}))
    }

    pub fn update_infrastructure_spec(&mut self, spec: Value) {
        self.root_mut().insert("infrastructure_spec".into(), spec);
    }

    pub fn add_project_spec(
        &mut self,
        project: &str,
        environments: &[String],
        web_droplets: i64,
        web_droplet_spec: &str,
    ) -> Result<(), StateError> {
        let invalid = |m: String| Err(StateError::InvalidArgument(m));
        if let Some(m) = spec::project_name_problem(project) {
            return invalid(m);
        }
        if self.spec().projects.contains_key(project) {
            return Err(StateError::ProjectExists(project.into()));
        }
        if environments.is_empty() {
            return invalid(
                "no environments given; list them separated by commas, like prod,uat".into(),
            );
        }
        for (i, e) in environments.iter().enumerate() {
            if let Some(m) = spec::environment_problem(e) {
                return invalid(m);
            }
            if environments[..i].contains(e) {
                return invalid(format!("environment `{e}` is listed twice; list each once"));
            }
        }
        check_web_droplets(web_droplets)?;
        if let Some(m) = spec::slug_problem(web_droplet_spec, "droplet size", "s-1vcpu-1gb") {
            return invalid(m);
        }
        self.spec_section_mut("projects").insert(
            project.to_string(),
            json!({
                "environments": environments,
                "web_droplets": web_droplets,
                "web_droplet_spec": web_droplet_spec,
            }),
        );
        Ok(())
    }

    fn unknown_project(&self, project: &str) -> StateError {
        StateError::UnknownProject {
            name: project.to_string(),
            known: self.spec_project_names(),
        }
    }

    /// Project names as written in the spec, valid or not.
    pub fn spec_project_names(&self) -> Vec<String> {
        self.root()
            .and_then(|r| r.get("infrastructure_spec"))
            .and_then(|s| s.get("projects"))
            .and_then(Value::as_object)
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default()
    }

    pub fn remove_project_spec(&mut self, project: &str) -> Result<(), StateError> {
        match self.spec_section_mut("projects").shift_remove(project) {
            Some(_) => Ok(()),
            None => Err(self.unknown_project(project)),
        }
    }

    /// Sets a project's number of web droplets (what `scale` changes).
    pub fn set_web_droplets(&mut self, project: &str, web_droplets: i64) -> Result<(), StateError> {
        check_web_droplets(web_droplets)?;
        let projects = self.spec_section_mut("projects");
        match projects.get_mut(project).and_then(Value::as_object_mut) {
            Some(p) => {
                p.insert("web_droplets".into(), json!(web_droplets));
                Ok(())
            }
            None => Err(self.unknown_project(project)),
        }
    }

    /// Writes the document atomically to its file (`save_state`). Callers that may race with
    /// another process go through [`store::StateStore`], which also takes the lock.
    pub fn save(&mut self) -> std::io::Result<()> {
        let text = self.doc.render();
        crate::atomic_file::write(&self.doc.path, text.as_bytes())?;
        self.doc.mark_saved(text);
        Ok(())
    }

    /// The droplets the spec asks for (`get_required_droplets`).
    pub fn required_droplets(&self) -> IndexMap<String, RequiredDroplet> {
        placement::required_droplets(&self.spec())
    }

    #[allow(clippy::too_many_arguments)]
    pub fn add_droplet(
        &mut self,
        name: &str,
        ip: Option<&str>,
        size: &str,
        region: &str,
        role: &str,
        monitors: &[String],
        project: Option<&str>,
    ) {
        let droplets = self.section_mut("droplets");
        let entry = droplets
            .entry(name.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        let map = entry.as_object_mut().expect("object");
        match ip {
            Some(ip) => map.insert("ip".into(), json!(ip)),
            None => map.shift_remove("ip"),
        };
        map.insert("size".into(), json!(size));
        map.insert("region".into(), json!(region));
        map.insert("role".into(), json!(role));
        if monitors.is_empty() {
            map.shift_remove("monitors");
        } else {
            map.insert("monitors".into(), json!(monitors));
        }
        match project {
            Some(p) => map.insert("project".into(), json!(p)),
            None => map.shift_remove("project"),
        };
    }

    /// Records every service where `services` places it and drops those it no longer has,
    /// puts the droplet records in the spec's order, and sets who monitors whom among the
    /// droplets that exist.
    pub fn assign_services(&mut self, spec: &Spec, services: &NameMap<ServiceMap>) {
        let runtime = self.runtime();
        for (key, have) in &runtime.projects {
            for service in have.keys() {
                if services.get(key).and_then(|m| m.get(service)).is_none() {
                    self.remove_project_service(key, service);
                }
            }
        }
        for (key, wanted) in services {
            for (service, record) in wanted {
                self.add_project_service(key, service, record);
            }
        }
        let wanted = placement::required_droplets(spec);
        self.order_droplets(&wanted.keys().map(String::as_str).collect::<Vec<_>>());
        let droplets = self.droplets();
        let ring = placement::monitoring_ring(droplets.keys());
        for (name, d) in droplets {
            let monitors = ring.get(&name).cloned().unwrap_or_default();
            if monitors != d.monitors {
                self.add_droplet(
                    &name,
                    d.ip.as_deref(),
                    d.size.as_deref().unwrap_or_default(),
                    d.region.as_deref().unwrap_or_default(),
                    &d.role,
                    &monitors,
                    d.project.as_deref(),
                );
            }
        }
    }

    /// Records what the cloud says of a droplet: its id, address and status.
    pub fn record_seen(
        &mut self,
        name: &str,
        id: u64,
        ip: Option<&str>,
        status: &str,
    ) -> Result<(), StateError> {
        let d = self.droplet_entry(name)?;
        d.insert("id".into(), json!(id));
        match ip {
            Some(ip) => d.insert("ip".into(), json!(ip)),
            None => d.shift_remove("ip"),
        };
        d.insert("status".into(), json!(status));
        Ok(())
    }

    /// The record of droplet `name`, to change.
    fn droplet_entry(&mut self, name: &str) -> Result<&mut Map<String, Value>, StateError> {
        self.section_mut("droplets")
            .get_mut(name)
            .and_then(Value::as_object_mut)
            .ok_or_else(|| StateError::UnknownDroplet(name.into()))
    }

    /// Records a droplet's new size.
    pub fn set_droplet_size(&mut self, name: &str, size: &str) -> Result<(), StateError> {
        self.droplet_entry(name)?.insert("size".into(), json!(size));
        Ok(())
    }

    /// Puts the `droplets` records in `order` (those not named keep their order, after), so
    /// the file reads in spec order whatever order droplets came up in.
    pub fn order_droplets(&mut self, order: &[&str]) {
        let droplets = self.section_mut("droplets");
        let mut entries: Vec<(String, Value)> = std::mem::take(droplets).into_iter().collect();
        let rank = |name: &str| order.iter().position(|o| *o == name).unwrap_or(order.len());
        entries.sort_by_key(|(name, _)| rank(name));
        droplets.extend(entries);
    }

    /// Records the cloud's id of a droplet (kept beside what the spec's format knows).
    pub fn set_droplet_id(&mut self, name: &str, id: u64) -> Result<(), StateError> {
        self.droplet_entry(name)?.insert("id".into(), json!(id));
        Ok(())
    }

    /// Droplets recovery took out of nginx (a `drained` entry in their record), which every
    /// nginx render leaves out until recovery restores them.
    pub fn drained_droplets(&self) -> Vec<String> {
        let Some(droplets) = self
            .root()
            .and_then(|r| r.get("droplets"))
            .and_then(Value::as_object)
        else {
            return Vec::new();
        };
        droplets
            .iter()
            .filter(|(_, d)| d.get("drained").is_some_and(|v| !v.is_null()))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Marks droplet `name` drained (with what recovery says of the drain) or, with `None`,
    /// routed again.
    pub fn set_drained(&mut self, name: &str, drained: Option<Value>) -> Result<(), StateError> {
        let d = self.droplet_entry(name)?;
        match drained {
            Some(v) => d.insert("drained".into(), v),
            None => d.shift_remove("drained"),
        };
        Ok(())
    }

    pub fn droplet_id(&self, name: &str) -> Option<u64> {
        self.root()?.get("droplets")?.get(name)?.get("id")?.as_u64()
    }

    /// The administrator's address (CIDR) that SSH is allowed from, as last set.
    pub fn admin_ip(&self) -> Option<String> {
        self.root()?.get("admin_ip")?.as_str().map(String::from)
    }

    pub fn set_admin_ip(&mut self, cidr: &str) {
        self.root_mut().insert("admin_ip".into(), json!(cidr));
    }

    pub fn update_droplet_ip(&mut self, name: &str, ip: &str) -> Result<(), StateError> {
        if !runtime::is_ipv4(ip) {
            return Err(StateError::InvalidArgument(format!(
                "`{ip}` is not an IPv4 address"
            )));
        }
        self.droplet_entry(name)?.insert("ip".into(), json!(ip));
        Ok(())
    }

    /// Removes a droplet and every reference to it (assignments, monitors).
    pub fn remove_droplet(&mut self, name: &str) -> bool {
        let removed = self.section_mut("droplets").shift_remove(name).is_some();
        for d in self.section_mut("droplets").values_mut() {
            if let Some(list) = d.get_mut("monitors").and_then(Value::as_array_mut) {
                list.retain(|m| m.as_str() != Some(name));
            }
        }
        for services in self.section_mut("projects").values_mut() {
            if let Some(services) = services.as_object_mut() {
                for record in services.values_mut() {
                    if let Some(list) = record
                        .get_mut("assigned_droplets")
                        .and_then(Value::as_array_mut)
                    {
                        list.retain(|m| m.as_str() != Some(name));
                    }
                }
            }
        }
        removed
    }

    /// The droplets `target` names: `all`, a role (`master`, `web`), a project, or one droplet.
    pub fn select_droplets(&self, target: &str) -> Result<NameMap<DropletRecord>, StateError> {
        let mut droplets = self.droplets();
        if droplets.contains_key(target) {
            droplets.retain(|name, _| name == target);
            return Ok(droplets);
        }
        let known: Vec<String> = droplets.keys().cloned().collect();
        match target {
            "all" => {}
            role if spec::ROLES.contains(&role) => droplets.retain(|_, d| d.role == role),
            project => droplets.retain(|_, d| d.project.as_deref() == Some(project)),
        }
        if droplets.is_empty() {
            return Err(StateError::NoSuchTarget {
                target: target.to_string(),
                known,
            });
        }
        Ok(droplets)
    }

    pub fn droplet(&self, name: &str) -> Option<DropletRecord> {
        self.runtime().droplets.shift_remove(name)
    }

    pub fn droplets(&self) -> NameMap<DropletRecord> {
        self.runtime().droplets
    }

    pub fn droplets_by_role(&self, role: &str) -> NameMap<DropletRecord> {
        self.droplets()
            .into_iter()
            .filter(|(_, d)| d.role == role)
            .collect()
    }

    pub fn droplets_by_project(&self, project: &str) -> NameMap<DropletRecord> {
        self.droplets()
            .into_iter()
            .filter(|(_, d)| d.project.as_deref() == Some(project))
            .collect()
    }

    pub fn master_droplet(&self) -> Option<(String, DropletRecord)> {
        self.droplets_by_role("master").into_iter().next()
    }

    pub fn web_droplets(&self) -> NameMap<DropletRecord> {
        self.droplets_by_role("web")
    }

    /// Records a service of a project-environment, keeping keys infra does not know.
    pub fn add_project_service(
        &mut self,
        project_env: &str,
        service: &str,
        record: &ServiceRecord,
    ) {
        let projects = self.section_mut("projects");
        let services = projects
            .entry(project_env.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if !services.is_object() {
            *services = Value::Object(Map::new());
        }
        let services = services.as_object_mut().expect("object");
        let entry = services
            .entry(service.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        let map = entry.as_object_mut().expect("object");
        map.insert("type".into(), json!(record.kind.as_str()));
        match record.port {
            Some(p) => map.insert("port".into(), json!(p)),
            None => map.shift_remove("port"),
        };
        map.insert("assigned_droplets".into(), json!(record.assigned_droplets));
    }

    /// Removes a service; the project-environment goes too when it has none left.
    pub fn remove_project_service(&mut self, project_env: &str, service: &str) -> bool {
        let projects = self.section_mut("projects");
        let Some(services) = projects.get_mut(project_env).and_then(Value::as_object_mut) else {
            return false;
        };
        let removed = services.shift_remove(service).is_some();
        if services.is_empty() {
            projects.shift_remove(project_env);
        }
        removed
    }

    pub fn project_services(&self, project_env: &str) -> ServiceMap {
        self.runtime()
            .projects
            .shift_remove(project_env)
            .unwrap_or_default()
    }

    pub fn all_projects(&self) -> NameMap<ServiceMap> {
        self.runtime().projects
    }

    pub fn service_name(project_env: &str, service: &str) -> String {
        service_name(project_env, service)
    }

    /// Full names of the services placed on `droplet`, workers included.
    pub fn services_on_droplet(&self, droplet: &str) -> Vec<String> {
        services_on_droplet(&self.runtime(), droplet)
    }

    /// `ip:port` of each droplet behind a web service; workers take no traffic, so none.
    pub fn load_balancer_targets(&self, project_env: &str, service: &str) -> Vec<String> {
        load_balancer_targets(&self.runtime(), project_env, service)
    }

    /// Droplets whose `monitors` list names `droplet`.
    pub fn monitored_by(&self, droplet: &str) -> Vec<String> {
        monitored_by(&self.runtime(), droplet)
    }

    pub fn heartbeat_config(&self, default_interval: u32) -> HeartbeatConfig {
        let hb = self
            .root()
            .and_then(|r| r.get("heartbeat"))
            .and_then(Value::as_object);
        let runtime = self.runtime();
        let primary = hb
            .and_then(|h| h.get("primary_sender"))
            .and_then(Value::as_str)
            .map(String::from)
            .or_else(|| {
                runtime
                    .droplets
                    .iter()
                    .find(|(_, d)| d.role == "master")
                    .map(|(n, _)| n.clone())
            });
        let backups = hb
            .and_then(|h| h.get("backup_senders"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_else(|| {
                runtime
                    .droplets
                    .iter()
                    .filter(|(n, _)| Some(*n) != primary.as_ref())
                    .take(2)
                    .map(|(n, _)| n.clone())
                    .collect()
            });
        let interval = hb
            .and_then(|h| h.get("interval_minutes"))
            .and_then(Value::as_u64)
            .map(|n| n as u32)
            .unwrap_or(default_interval);
        HeartbeatConfig {
            primary_sender: primary,
            backup_senders: backups,
            interval_minutes: interval,
        }
    }

    pub fn update_heartbeat_config(
        &mut self,
        primary_sender: Option<&str>,
        backup_senders: Option<&[String]>,
        interval_minutes: Option<u32>,
    ) -> Result<(), StateError> {
        if interval_minutes == Some(0) {
            return Err(StateError::InvalidArgument(
                "the heartbeat interval must be at least 1 minute".into(),
            ));
        }
        let hb = self.section_mut("heartbeat");
        if let Some(p) = primary_sender {
            hb.insert("primary_sender".into(), json!(p));
        }
        if let Some(b) = backup_senders {
            hb.insert("backup_senders".into(), json!(b));
        }
        if let Some(i) = interval_minutes {
            hb.insert("interval_minutes".into(), json!(i));
        }
        Ok(())
    }

    pub fn summary(&self) -> Summary {
        let checked = self.check();
        summary(&checked.spec, &checked.runtime)
    }
}

fn check_web_droplets(n: i64) -> Result<(), StateError> {
    if (1..=spec::MAX_WEB_DROPLETS).contains(&n) {
        Ok(())
    } else {
        Err(StateError::InvalidArgument(format!(
            "expected a whole number of web droplets from 1 to {}, found {n}",
            spec::MAX_WEB_DROPLETS
        )))
    }
}

pub fn services_on_droplet(runtime: &Runtime, droplet: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (key, services) in &runtime.projects {
        for (service, record) in services {
            if record.assigned_droplets.iter().any(|d| d == droplet) {
                out.push(service_name(key, service));
            }
        }
    }
    out
}

pub fn load_balancer_targets(runtime: &Runtime, project_env: &str, service: &str) -> Vec<String> {
    let Some(record) = runtime
        .projects
        .get(project_env)
        .and_then(|s| s.get(service))
    else {
        return Vec::new();
    };
    let (ServiceKind::Web, Some(port)) = (record.kind, record.port) else {
        return Vec::new();
    };
    record
        .assigned_droplets
        .iter()
        .filter_map(|d| runtime.droplets.get(d).and_then(|r| r.ip.clone()))
        .map(|ip| format!("{ip}:{port}"))
        .collect()
}

pub fn monitored_by(runtime: &Runtime, droplet: &str) -> Vec<String> {
    runtime
        .droplets
        .iter()
        .filter(|(_, d)| d.monitors.iter().any(|m| m == droplet))
        .map(|(n, _)| n.clone())
        .collect()
}

pub fn summary(spec: &Spec, runtime: &Runtime) -> Summary {
    let mut by_role = IndexMap::new();
    for d in runtime.droplets.values() {
        *by_role.entry(d.role.clone()).or_insert(0) += 1;
    }
    let (mut web, mut worker) = (0, 0);
    for services in runtime.projects.values() {
        for record in services.values() {
            match record.kind {
                ServiceKind::Web => web += 1,
                ServiceKind::Worker => worker += 1,
            }
        }
    }
    Summary {
        droplets: runtime.droplets.len(),
        droplets_by_role: by_role,
        spec_droplets: placement::required_droplets(spec).len(),
        projects: spec.projects.len(),
        project_environments: runtime.projects.len(),
        services: web + worker,
        web_services: web,
        worker_services: worker,
    }
}
