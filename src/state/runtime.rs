//! The runtime half of the state file: droplets that exist and the services placed on them.

use crate::name_map::{FnvBuild, NameMap};
use std::collections::HashMap;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::schema::{index, join, Checker, Field, PathArg};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceKind {
    Web,
    Worker,
}

impl ServiceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceKind::Web => "web",
            ServiceKind::Worker => "worker",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DropletRecord {
    /// The cloud's id, once infra created or adopted the droplet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    pub ip: Option<String>,
    /// The cloud's status as last seen (`active`, `off`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    pub size: Option<String>,
    pub region: Option<String>,
    pub role: String,
    pub project: Option<String>,
    pub monitors: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceRecord {
    #[serde(rename = "type")]
    pub kind: ServiceKind,
    pub port: Option<u16>,
    pub assigned_droplets: Vec<String>,
}

/// Services of one project-environment (`hostomatic-prod`), by service name.
pub type ServiceMap = NameMap<ServiceRecord>;

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Runtime {
    pub droplets: NameMap<DropletRecord>,
    pub projects: NameMap<ServiceMap>,
}

pub fn is_ipv4(s: &str) -> bool {
    s.parse::<std::net::Ipv4Addr>().is_ok()
}

impl Runtime {
    /// Reads the `droplets` and `projects` keys of the state file's root object.
    pub fn check(c: &mut Checker, root: &Map<String, Value>) -> Runtime {
        let mut runtime = Runtime::default();
        if let Some(droplets) = c.opt_object(root, "", "droplets") {
            for (name, d) in droplets {
                let path = Field("droplets", name);
                if let Some(record) = check_droplet(c, &path, d) {
                    runtime.droplets.insert(name.clone(), record);
                }
            }
        }
        if let Some(projects) = c.opt_object(root, "", "projects") {
            for (key, services) in projects {
                let path = Field("projects", key);
                let Some(services) = c.object(&path, services) else {
                    continue;
                };
                let mut map = ServiceMap::default();
                for (service, record) in services {
                    if let Some(r) = check_service(c, &Field(&path, service), record) {
                        map.insert(service.clone(), r);
                    }
                }
                runtime.projects.insert(key.clone(), map);
            }
        }
        runtime
    }

    /// Cross-checks: assignments name known droplets, and no droplet has a port twice.
    pub fn check_relations(&self, c: &mut Checker) {
        // (droplet, port) -> (project-env, service) holding it; names are built only for errors.
        let mut ports: HashMap<(&str, u16), (&str, &str), FnvBuild> = HashMap::default();
        for (key, services) in &self.projects {
            for (service, record) in services {
                let parent = Field("projects", key.as_str());
                let path = Field(&parent, service.as_str());
                for (i, droplet) in record.assigned_droplets.iter().enumerate() {
                    if !self.droplets.contains_key(droplet) {
                        c.error(
                            &index(&join(&path.render(), "assigned_droplets"), i),
                            format!("unknown droplet `{droplet}`; it is not under `droplets` (run `infra orchestrate` to repair the state)"),
                        );
                    }
                    if let Some(port) = record.port {
                        if let Some((k, s)) = ports.insert((droplet.as_str(), port), (key, service))
                        {
                            c.error(
                                &Field(&path, "port"),
                                format!("port {port} is also used by `{k}-{s}` on `{droplet}`; two services cannot share a port on one droplet"),
                            );
                        }
                    }
                }
            }
        }
        for (name, d) in &self.droplets {
            for (i, m) in d.monitors.iter().enumerate() {
                if !self.droplets.contains_key(m) {
                    c.error(
                        &index(&join(&join("droplets", name), "monitors"), i),
                        format!("unknown droplet `{m}`"),
                    );
                }
            }
        }
    }
}

fn check_droplet(
    c: &mut Checker,
    path: &(impl PathArg + ?Sized),
    value: &Value,
) -> Option<DropletRecord> {
    let map = c.object(path, value)?;
    let ip = match map.get("ip") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if is_ipv4(s) => Some(s.clone()),
        Some(other) => {
            c.expected(
                &Field(path, "ip"),
                "an IPv4 address like \"203.0.113.10\"",
                other,
            );
            None
        }
    };
    let role = match map.get("role") {
        None => "web".to_string(),
        Some(v) => c.one_of(&Field(path, "role"), v, super::spec::ROLES)?,
    };
    let monitors = match map.get("monitors") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => c.string_list(&Field(path, "monitors"), v, "[\"master\"]", |_| None)?,
    };
    Some(DropletRecord {
        id: c
            .opt_integer(map, path, "id", 1, i64::MAX)
            .map(|id| id as u64),
        ip,
        status: c.opt_string(map, path, "status", "\"active\""),
        size: c.opt_string(map, path, "size", "\"s-2vcpu-4gb\""),
        region: c.opt_string(map, path, "region", "\"lon1\""),
        role,
        project: c.opt_string(map, path, "project", "\"hostomatic\""),
        monitors,
    })
}

fn check_service(
    c: &mut Checker,
    path: &(impl PathArg + ?Sized),
    value: &Value,
) -> Option<ServiceRecord> {
    let map = c.object(path, value)?;
    let kind = match map.get("type") {
        None => ServiceKind::Web,
        Some(v) => match c
            .one_of(&Field(path, "type"), v, &["web", "worker"])?
            .as_str()
        {
            "worker" => ServiceKind::Worker,
            _ => ServiceKind::Web,
        },
    };
    let port = c.opt_integer(map, path, "port", 1, 65535).map(|p| p as u16);
    let assigned_droplets = match map.get("assigned_droplets") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => c.string_list(
            &Field(path, "assigned_droplets"),
            v,
            "[\"hostomatic-web1\"]",
            |_| None,
        )?,
    };
    Some(ServiceRecord {
        kind,
        port,
        assigned_droplets,
    })
}
