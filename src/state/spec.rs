//! `infrastructure_spec`: what the user wants (droplets and projects), read from JSON with
//! every problem reported by path.

use indexmap::IndexMap;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::schema::{hostname_problem, join, Checker};

pub const ROLES: &[&str] = &["master", "web"];
/// The master a spec gets when it lists projects but no master droplet.
pub const IMPLIED_MASTER: &str = "master";
pub const IMPLIED_MASTER_SIZE: &str = "s-2vcpu-4gb";
pub const DEFAULT_REGION: &str = "lon1";
pub const MAX_WEB_DROPLETS: i64 = 100;

// The keys infra reads in each object of the spec, one place per object: a key added to the
// format is one line here (and its check below). Any other key is reported as unknown, with
// the nearest of these; keys starting with `x-` are the user's own.

/// Keys of `infrastructure_spec`. The retention, snapshot and recovery settings are the
/// seed's (deploys and the monitor read them).
pub const SPEC_KEYS: &[&str] = &[
    "droplets",
    "projects",
    "snapshot_retention",
    "release_retention",
    "snapshot_after_deploy",
    "recover_after",
    "auto_recover_master",
    "monitors",
];

/// Keys of a droplet under `infrastructure_spec.droplets`.
pub const DROPLET_KEYS: &[&str] = &["size", "region", "role"];

/// Keys of a project under `infrastructure_spec.projects`.
pub const PROJECT_KEYS: &[&str] = &["environments", "web_droplets", "web_droplet_spec", "region"];

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DropletSpec {
    pub size: String,
    pub region: String,
    pub role: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProjectSpec {
    pub environments: Vec<String>,
    pub web_droplets: u32,
    pub web_droplet_spec: String,
    /// Region of the project's web droplets; the master's when not given.
    pub region: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Spec {
    pub droplets: IndexMap<String, DropletSpec>,
    pub projects: IndexMap<String, ProjectSpec>,
    /// Snapshots `infra cleanup` keeps per droplet.
    pub snapshot_retention: Option<u32>,
    /// Whether the monitors may rebuild the master by themselves (else they only alert).
    pub auto_recover_master: bool,
    /// Whether orchestrate and deploys install the self-healing monitors (default true).
    pub monitors: bool,
    /// Seconds from a verdict to rebuilding the droplet (default 90).
    pub recover_after: Option<u64>,
}

/// Environment names end up in container, upstream and namespace names.
pub fn environment_problem(name: &str) -> Option<String> {
    let valid = name.len() <= 16
        && name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    (!valid).then(|| {
        format!("`{name}` is not a valid environment name; use lowercase letters and digits, starting with a letter (at most 16), like \"prod\" or \"uat\"")
    })
}

/// Project names become part of droplet hostnames (`<project>-web<N>`).
pub fn project_name_problem(name: &str) -> Option<String> {
    hostname_problem(name, "project name").or_else(|| {
        (name.len() > 50).then(|| {
            format!("`{name}` is too long for a project name; use at most 50 characters so that `{name}-web100` is a valid hostname")
        })
    })
}

pub fn web_droplet_name(project: &str, n: u32) -> String {
    format!("{project}-web{n}")
}

impl Spec {
    /// Reads `infrastructure_spec` (the value at `path`); problems go to the checker.
    pub fn check(c: &mut Checker, path: &str, value: &Value) -> Spec {
        let mut spec = Spec::default();
        let Some(map) = c.object(path, value) else {
            return spec;
        };
        c.unknown_keys(map, path, SPEC_KEYS, &[]);
        if let Some(droplets) = c.opt_object(map, path, "droplets") {
            let dpath = join(path, "droplets");
            for (name, d) in droplets {
                let p = join(&dpath, name);
                if let Some(message) = hostname_problem(name, "droplet name") {
                    c.error(&p, message);
                    continue;
                }
                if let Some(d) = check_droplet(c, &p, d) {
                    spec.droplets.insert(name.clone(), d);
                }
            }
            let masters: Vec<&String> = spec
                .droplets
                .iter()
                .filter(|(_, d)| d.role == "master")
                .map(|(n, _)| n)
                .collect();
            if masters.len() > 1 {
                c.error(
                    &dpath,
                    format!(
                        "{} droplets have role \"master\" ({}); keep exactly one",
                        masters.len(),
                        masters
                            .iter()
                            .map(|m| format!("`{m}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
            }
        }
        if let Some(projects) = c.opt_object(map, path, "projects") {
            let ppath = join(path, "projects");
            for (name, p) in projects {
                let pp = join(&ppath, name);
                if let Some(message) = project_name_problem(name) {
                    c.error(&pp, message);
                    continue;
                }
                if let Some(project) = check_project(c, &pp, p) {
                    spec.projects.insert(name.clone(), project);
                }
            }
            // A master whose entry has another problem (a missing size, say) still counts.
            let master_written = map
                .get("droplets")
                .and_then(Value::as_object)
                .is_some_and(|d| {
                    d.values()
                        .any(|v| v.get("role").and_then(Value::as_str) == Some("master"))
                });
            // The spec's own example lists only projects and still gets a master: without one
            // written, the master is implied, with the default size in the projects' region.
            let droplets_ok = map.get("droplets").is_none_or(|d| d.is_object());
            if !spec.projects.is_empty() && !master_written && droplets_ok {
                let existing = map
                    .get("droplets")
                    .and_then(Value::as_object)
                    .and_then(|d| d.get(IMPLIED_MASTER));
                match existing {
                    Some(m) if m.get("role").is_none_or(|r| r.as_str() == Some("web")) => {
                        c.error(
                            &join(&join(path, "droplets"), IMPLIED_MASTER),
                            "no droplet has role \"master\" and the name `master` is taken by a web droplet; give one droplet \"role\": \"master\" (the master runs the load balancer)",
                        );
                    }
                    // Its invalid role is reported already.
                    Some(_) => {}
                    None => {
                        let region = spec
                            .projects
                            .values()
                            .find_map(|p| p.region.clone())
                            .unwrap_or_else(|| DEFAULT_REGION.to_string());
                        spec.droplets.insert(
                            IMPLIED_MASTER.to_string(),
                            DropletSpec {
                                size: IMPLIED_MASTER_SIZE.to_string(),
                                region,
                                role: "master".into(),
                            },
                        );
                    }
                }
            }
        }
        spec.snapshot_retention = c
            .opt_integer(map, path, "snapshot_retention", 1, 100)
            .map(|n| n as u32);
        spec.monitors = c.opt_bool(map, path, "monitors").unwrap_or(true);
        spec.recover_after = c
            .opt_integer(map, path, "recover_after", 45, 86_400)
            .map(|n| n as u64);
        spec.auto_recover_master = c
            .opt_bool(map, path, "auto_recover_master")
            .unwrap_or(false);
        spec.check_generated_names(c, path);
        spec
    }

    /// Web droplet names are generated (`<project>-web<N>`), so a named droplet can take one
    /// of them (a droplet literally called `shop-web1` beside a project `shop`).
    fn check_generated_names(&self, c: &mut Checker, path: &str) {
        for (project, p) in &self.projects {
            for n in 1..=p.web_droplets {
                let name = web_droplet_name(project, n);
                if self.droplets.contains_key(&name) {
                    c.error(
                        &join(&join(path, "droplets"), &name),
                        format!("`{name}` is also the name of web droplet {n} of project `{project}`; rename this droplet"),
                    );
                }
            }
        }
    }

    /// The master droplet's name and spec, if there is one.
    pub fn master(&self) -> Option<(&String, &DropletSpec)> {
        self.droplets.iter().find(|(_, d)| d.role == "master")
    }

    /// The region web droplets of `project` go to.
    pub fn project_region(&self, project: &ProjectSpec) -> String {
        project
            .region
            .clone()
            .or_else(|| self.master().map(|(_, d)| d.region.clone()))
            .or_else(|| self.droplets.values().next().map(|d| d.region.clone()))
            .unwrap_or_else(|| DEFAULT_REGION.to_string())
    }
}

/// DigitalOcean slugs (sizes, regions): lowercase letters, digits and hyphens.
pub fn slug_problem(value: &str, what: &str, example: &str) -> Option<String> {
    let valid = !value.is_empty()
        && value.len() <= 64
        && !value.starts_with('-')
        && !value.ends_with('-')
        && value
            .chars()
            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-');
    (!valid).then(|| {
        format!("`{value}` is not a valid {what}; use a DigitalOcean slug like \"{example}\" (lowercase letters, digits and hyphens)")
    })
}

fn check_slug(
    c: &mut Checker,
    path: &str,
    key: &str,
    value: Option<String>,
    what: &str,
    example: &str,
) -> Option<String> {
    let value = value?;
    match slug_problem(&value, what, example) {
        Some(message) => {
            c.error(&join(path, key), message);
            None
        }
        None => Some(value),
    }
}

fn check_droplet(c: &mut Checker, path: &str, value: &Value) -> Option<DropletSpec> {
    let map = c.object(path, value)?;
    c.unknown_keys(map, path, DROPLET_KEYS, &[]);
    let size = c.req_string(map, path, "size", "\"s-2vcpu-4gb\"");
    let size = check_slug(c, path, "size", size, "droplet size", "s-2vcpu-4gb");
    let region = c.req_string(map, path, "region", "\"lon1\"");
    let region = check_slug(c, path, "region", region, "region", "lon1");
    let role = match map.get("role") {
        None => Some("web".to_string()),
        Some(v) => c.one_of(&join(path, "role"), v, ROLES),
    };
    Some(DropletSpec {
        size: size?,
        region: region?,
        role: role?,
    })
}

fn check_project(c: &mut Checker, path: &str, value: &Value) -> Option<ProjectSpec> {
    let map: &Map<String, Value> = c.object(path, value)?;
    c.unknown_keys(map, path, PROJECT_KEYS, &[]);
    let environments = match map.get("environments") {
        None => {
            c.error(
                &join(path, "environments"),
                "missing; add a list of environments like [\"prod\", \"uat\"]",
            );
            None
        }
        Some(v) => {
            let epath = join(path, "environments");
            let envs = c.string_list(&epath, v, "[\"prod\", \"uat\"]", environment_problem);
            if envs.as_ref().is_some_and(|e| e.is_empty()) {
                c.error(
                    &epath,
                    "is empty; list at least one environment, like [\"prod\"]",
                );
                None
            } else {
                envs
            }
        }
    };
    let web_droplets = c.req_integer(map, path, "web_droplets", 1, MAX_WEB_DROPLETS);
    let web_droplet_spec = c.req_string(map, path, "web_droplet_spec", "\"s-1vcpu-1gb\"");
    let web_droplet_spec = check_slug(
        c,
        path,
        "web_droplet_spec",
        web_droplet_spec,
        "droplet size",
        "s-1vcpu-1gb",
    );
    let region = c.opt_string(map, path, "region", "\"lon1\"");
    let region = check_slug(c, path, "region", region, "region", "lon1");
    Some(ProjectSpec {
        environments: environments?,
        web_droplets: web_droplets? as u32,
        web_droplet_spec: web_droplet_spec?,
        region,
    })
}
