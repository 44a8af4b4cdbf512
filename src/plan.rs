//! Spec against runtime: the list of changes that `plan`, `orchestrate` and `watch` share.

use crate::name_map::NameMap;
use serde::Serialize;
use serde_json::{json, Value};

use crate::fleet::{Finding, Refresh};
use crate::state::placement::{required_droplets, service_name, RequiredDroplet};
use crate::state::{DropletRecord, Runtime, ServiceMap, ServiceRecord, Spec};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Update,
    Replace,
    Delete,
    /// Recorded, but no longer in the cloud: recreated.
    Gone,
    /// Changed outside infra (address, status, id): the state takes the cloud's values.
    Refresh,
    /// In the cloud, tagged `infra`, but neither recorded nor wanted (or a second droplet
    /// under a recorded name): destroyed.
    Orphan,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Droplet,
    Service,
}

/// One change: what, to which target, from what to what.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub action: Action,
    pub kind: Kind,
    pub target: String,
    /// For services: the project-environment and the service name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project_env: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    pub before: Option<Value>,
    pub after: Option<Value>,
    /// Why this change cannot be made in place: it is carried out only with `--force`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub needs_force: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PlanSummary {
    pub droplets_to_create: usize,
    pub droplets_to_change: usize,
    pub droplets_to_replace: usize,
    pub droplets_to_destroy: usize,
    pub services_to_add: usize,
    pub services_to_change: usize,
    pub services_to_remove: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub force: bool,
    /// Whether the cloud was compared with the state (`plan --offline` does not).
    pub refreshed: bool,
    pub changes: Vec<Change>,
    pub summary: PlanSummary,
}

fn droplet_after(d: &RequiredDroplet) -> Value {
    serde_json::to_value(d).expect("serializes")
}

fn droplet_before(d: &DropletRecord) -> Value {
    let mut v = json!({"role": d.role});
    let map = v.as_object_mut().expect("object");
    if let Some(ip) = &d.ip {
        map.insert("ip".into(), json!(ip));
    }
    if let Some(size) = &d.size {
        map.insert("size".into(), json!(size));
    }
    if let Some(region) = &d.region {
        map.insert("region".into(), json!(region));
    }
    if let Some(project) = &d.project {
        map.insert("project".into(), json!(project));
    }
    v
}

fn service_value(r: &ServiceRecord) -> Value {
    serde_json::to_value(r).expect("serializes")
}

impl Plan {
    /// Computes the changes that turn `runtime` into what `spec` and `services` describe.
    /// With `force`, every existing droplet is replaced. `refresh`, when the cloud was
    /// compared with the state, adds what it found: droplets gone, drifted, orphaned.
    pub fn compute(
        spec: &Spec,
        runtime: &Runtime,
        services: &NameMap<ServiceMap>,
        force: bool,
        refresh: Option<&Refresh>,
    ) -> Plan {
        let mut changes = Vec::new();
        let wanted = required_droplets(spec);
        let gone = |name: &str| refresh.is_some_and(|r| r.is_gone(name));
        for (name, d) in &wanted {
            let mut needs_force = None;
            let change = match runtime.droplets.get(name) {
                None => Some(Action::Create),
                Some(_) if gone(name) => Some(Action::Gone),
                Some(_) if force => Some(Action::Replace),
                Some(have) if have.region.as_ref().is_some_and(|r| r != &d.region) => {
                    Some(Action::Replace)
                }
                Some(have) if have.role != d.role || have.project != d.project => {
                    needs_force = Some(format!(
                        "a droplet's {} cannot change in place",
                        if have.role != d.role {
                            "role"
                        } else {
                            "project"
                        }
                    ));
                    Some(Action::Replace)
                }
                Some(have) if have.size.as_deref() != Some(d.size.as_str()) => Some(Action::Update),
                Some(_) => None,
            };
            if let Some(action) = change {
                changes.push(Change {
                    action,
                    kind: Kind::Droplet,
                    target: name.clone(),
                    project_env: None,
                    service: None,
                    before: runtime.droplets.get(name).map(droplet_before),
                    after: Some(droplet_after(d)),
                    needs_force,
                });
            }
        }
        for finding in refresh.map(|r| r.findings.as_slice()).unwrap_or_default() {
            match finding {
                Finding::Drift {
                    name,
                    before,
                    after,
                } => changes.push(Change {
                    action: Action::Refresh,
                    kind: Kind::Droplet,
                    target: name.clone(),
                    project_env: None,
                    service: None,
                    before: Some(serde_json::to_value(before).expect("serializes")),
                    after: Some(serde_json::to_value(after).expect("serializes")),
                    needs_force: None,
                }),
                Finding::Orphan { name, droplet } | Finding::Duplicate { name, droplet, .. } => {
                    let mut before = serde_json::to_value(droplet).expect("serializes");
                    if let Finding::Duplicate { kept, .. } = finding {
                        before["duplicate_of"] = json!(kept);
                    }
                    changes.push(Change {
                        action: Action::Orphan,
                        kind: Kind::Droplet,
                        target: name.clone(),
                        project_env: None,
                        service: None,
                        before: Some(before),
                        after: None,
                        needs_force: None,
                    })
                }
                Finding::Gone { .. } => {}
            }
        }
        for (key, wanted_services) in services {
            let have = runtime.projects.get(key);
            for (service, record) in wanted_services {
                let action = match have.and_then(|h| h.get(service)) {
                    None => Some(Action::Create),
                    Some(existing) if existing != record => Some(Action::Update),
                    Some(_) => None,
                };
                if let Some(action) = action {
                    changes.push(Change {
                        action,
                        kind: Kind::Service,
                        target: service_name(key, service),
                        project_env: Some(key.clone()),
                        service: Some(service.clone()),
                        before: have.and_then(|h| h.get(service)).map(service_value),
                        after: Some(service_value(record)),
                        needs_force: None,
                    });
                }
            }
        }
        for (key, have_services) in &runtime.projects {
            for (service, record) in have_services {
                if services.get(key).and_then(|s| s.get(service)).is_none() {
                    changes.push(Change {
                        action: Action::Delete,
                        kind: Kind::Service,
                        target: service_name(key, service),
                        project_env: Some(key.clone()),
                        service: Some(service.clone()),
                        before: Some(service_value(record)),
                        after: None,
                        needs_force: None,
                    });
                }
            }
        }
        // Droplets go last, once nothing is placed on them any more.
        for (name, d) in &runtime.droplets {
            if !wanted.contains_key(name) {
                changes.push(Change {
                    action: Action::Delete,
                    kind: Kind::Droplet,
                    target: name.clone(),
                    project_env: None,
                    service: None,
                    before: Some(droplet_before(d)),
                    after: None,
                    needs_force: None,
                });
            }
        }
        let summary = summarize(&changes);
        Plan {
            force,
            refreshed: refresh.is_some(),
            changes,
            summary,
        }
    }

    /// The first change that needs `--force` when this plan has not got it.
    pub fn blocked_without_force(&self) -> Option<&Change> {
        if self.force {
            return None;
        }
        self.changes.iter().find(|c| c.needs_force.is_some())
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// The plan as a person reads it, Terraform style.
    pub fn render_text(&self) -> String {
        if self.is_empty() {
            return "No changes. The infrastructure matches the spec.\n".to_string();
        }
        let mut out = String::from("infra will perform the following actions:\n\n");
        for kind in [Kind::Droplet, Kind::Service] {
            let lines: Vec<String> = self
                .changes
                .iter()
                .filter(|c| c.kind == kind)
                .map(render_change)
                .collect();
            if lines.is_empty() {
                continue;
            }
            out.push_str(match kind {
                Kind::Droplet => "Droplets:\n",
                Kind::Service => "Services:\n",
            });
            for line in lines {
                out.push_str(&line);
                out.push('\n');
            }
            out.push('\n');
        }
        let s = &self.summary;
        out.push_str(&format!(
            "Plan: {} droplet{} to create, {} to change, {} to replace, {} to destroy; {} service{} to add, {} to change, {} to remove.\n",
            s.droplets_to_create,
            plural(s.droplets_to_create),
            s.droplets_to_change,
            s.droplets_to_replace,
            s.droplets_to_destroy,
            s.services_to_add,
            plural(s.services_to_add),
            s.services_to_change,
            s.services_to_remove,
        ));
        out
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn summarize(changes: &[Change]) -> PlanSummary {
    let mut s = PlanSummary::default();
    for c in changes {
        let slot = match (c.kind, c.action) {
            (Kind::Droplet, Action::Create | Action::Gone) => &mut s.droplets_to_create,
            (Kind::Droplet, Action::Update | Action::Refresh) => &mut s.droplets_to_change,
            (Kind::Droplet, Action::Replace) => &mut s.droplets_to_replace,
            (Kind::Droplet, Action::Delete | Action::Orphan) => &mut s.droplets_to_destroy,
            (Kind::Service, Action::Create) => &mut s.services_to_add,
            (Kind::Service, Action::Update | Action::Replace | Action::Refresh) => {
                &mut s.services_to_change
            }
            (Kind::Service, Action::Delete | Action::Gone | Action::Orphan) => {
                &mut s.services_to_remove
            }
        };
        *slot += 1;
    }
    s
}

fn str_field<'a>(v: &'a Option<Value>, key: &str) -> Option<&'a str> {
    v.as_ref().and_then(|v| v.get(key)).and_then(Value::as_str)
}

fn list_field(v: &Option<Value>, key: &str) -> String {
    v.as_ref()
        .and_then(|v| v.get(key))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

fn describe_droplet(v: &Option<Value>) -> String {
    let mut parts = Vec::new();
    for key in ["size", "region", "role"] {
        if let Some(s) = str_field(v, key) {
            parts.push(s.to_string());
        }
    }
    if let Some(p) = str_field(v, "project") {
        parts.push(format!("project {p}"));
    }
    parts.join(", ")
}

fn describe_service(v: &Option<Value>) -> String {
    let kind = str_field(v, "type").unwrap_or("web");
    let port = v
        .as_ref()
        .and_then(|v| v.get("port"))
        .and_then(Value::as_u64);
    let droplets = list_field(v, "assigned_droplets");
    match port {
        Some(p) => format!("({kind}, port {p}) on {droplets}"),
        None => format!("({kind}) on {droplets}"),
    }
}

fn render_change(c: &Change) -> String {
    let symbol = match c.action {
        Action::Create => "  +",
        Action::Update | Action::Refresh => "  ~",
        Action::Replace => "-/+",
        Action::Delete | Action::Orphan => "  -",
        Action::Gone => "  !",
    };
    match (c.kind, c.action) {
        (Kind::Droplet, Action::Gone) => {
            format!(
                "{symbol} droplet {} ({}) is gone from the cloud: it is recreated",
                c.target,
                describe_droplet(&c.after)
            )
        }
        (Kind::Droplet, Action::Refresh) => format!(
            "{symbol} droplet {}: {} (changed outside infra)",
            c.target,
            field_diffs(c, &["ip", "status", "id"]).join("; ")
        ),
        (Kind::Droplet, Action::Orphan) => {
            let id = c.before.as_ref().and_then(|v| v.get("id")).cloned();
            let ip = str_field(&c.before, "ip").unwrap_or("no address");
            let what = match c.before.as_ref().and_then(|v| v.get("duplicate_of")) {
                Some(kept) => format!("duplicate of id {kept}"),
                None => "orphan: tagged `infra`, neither recorded nor in the spec".to_string(),
            };
            format!(
                "{symbol} droplet {} (id {}, {ip}): {what}",
                c.target,
                id.unwrap_or_default()
            )
        }
        (Kind::Droplet, Action::Create) => {
            format!(
                "{symbol} droplet {} ({})",
                c.target,
                describe_droplet(&c.after)
            )
        }
        (Kind::Droplet, Action::Delete) => {
            let ip = str_field(&c.before, "ip")
                .map(|ip| format!(", {ip}"))
                .unwrap_or_default();
            format!(
                "{symbol} droplet {} ({}{ip})",
                c.target,
                describe_droplet(&c.before)
            )
        }
        (Kind::Droplet, Action::Replace) => match &c.needs_force {
            Some(why) => format!(
                "{symbol} droplet {} ({}) is recreated: {why} (needs --force)",
                c.target,
                describe_droplet(&c.after)
            ),
            None => format!(
                "{symbol} droplet {} ({}) is recreated",
                c.target,
                describe_droplet(&c.after)
            ),
        },
        (Kind::Droplet, Action::Update) => format!(
            "{symbol} droplet {}: {}",
            c.target,
            field_diffs(c, &["size", "role", "project"]).join("; ")
        ),
        (Kind::Service, Action::Update) => {
            let mut diffs = Vec::new();
            let port = |v: &Option<Value>| {
                v.as_ref()
                    .and_then(|v| v.get("port"))
                    .and_then(Value::as_u64)
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "(none)".into())
            };
            if str_field(&c.before, "type") != str_field(&c.after, "type") {
                diffs.push(format!(
                    "type {} -> {}",
                    str_field(&c.before, "type").unwrap_or("web"),
                    str_field(&c.after, "type").unwrap_or("web")
                ));
            }
            if port(&c.before) != port(&c.after) {
                diffs.push(format!("port {} -> {}", port(&c.before), port(&c.after)));
            }
            let (a, b) = (
                list_field(&c.before, "assigned_droplets"),
                list_field(&c.after, "assigned_droplets"),
            );
            if a != b {
                diffs.push(format!("droplets {} -> {}", or_none(&a), or_none(&b)));
            }
            format!("{symbol} service {}: {}", c.target, diffs.join("; "))
        }
        (Kind::Service, Action::Delete) => {
            format!(
                "{symbol} service {} {}",
                c.target,
                describe_service(&c.before)
            )
        }
        (Kind::Service, _) => format!(
            "{symbol} service {} {}",
            c.target,
            describe_service(&c.after)
        ),
    }
}

/// `key before -> after` for each of `keys` whose value the change alters (`(none)` for a
/// value that is absent).
fn field_diffs(c: &Change, keys: &[&str]) -> Vec<String> {
    let text = |v: &Option<Value>, key: &str| {
        v.as_ref()
            .and_then(|v| v.get(key))
            .filter(|x| !x.is_null())
            .map(|x| {
                x.as_str()
                    .map(String::from)
                    .unwrap_or_else(|| x.to_string())
            })
    };
    keys.iter()
        .filter_map(|key| {
            let (a, b) = (text(&c.before, key), text(&c.after, key));
            (a != b).then(|| {
                format!(
                    "{key} {} -> {}",
                    a.as_deref().unwrap_or("(none)"),
                    b.as_deref().unwrap_or("(none)")
                )
            })
        })
        .collect()
}

fn or_none(s: &str) -> &str {
    if s.is_empty() {
        "(none)"
    } else {
        s
    }
}
