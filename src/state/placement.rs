//! What the spec asks for, computed: the droplets, their names, and who monitors whom.
//! Shared by `plan`, `status` and the playbooks. Where services go (which needs the deployment
//! config) is `crate::config::placement`.

use std::collections::HashSet;

use indexmap::IndexMap;
use serde::Serialize;

use super::spec::{web_droplet_name, Spec};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RequiredDroplet {
    pub size: String,
    pub region: String,
    pub role: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
}

/// `<project>-<env>`, the key of a project-environment under `projects`.
pub fn project_env(project: &str, environment: &str) -> String {
    format!("{project}-{environment}")
}

/// `<project>-<env>-<service>`: the service's name everywhere (container, upstream, logs).
pub fn service_name(project_env: &str, service: &str) -> String {
    format!("{project_env}-{service}")
}

/// Droplets the spec asks for: its named droplets, then each project's web droplets.
pub fn required_droplets(spec: &Spec) -> IndexMap<String, RequiredDroplet> {
    let mut out = IndexMap::new();
    for (name, d) in &spec.droplets {
        out.insert(
            name.clone(),
            RequiredDroplet {
                size: d.size.clone(),
                region: d.region.clone(),
                role: d.role.clone(),
                project: None,
            },
        );
    }
    for (project, p) in &spec.projects {
        let region = spec.project_region(p);
        for n in 1..=p.web_droplets {
            out.insert(
                web_droplet_name(project, n),
                RequiredDroplet {
                    size: p.web_droplet_spec.clone(),
                    region: region.clone(),
                    role: "web".into(),
                    project: Some(project.clone()),
                },
            );
        }
    }
    out
}

/// Who monitors whom: each droplet watches the next two in a ring (master first, then by
/// name), so every droplet has two watchers as soon as there are three droplets.
pub fn monitoring_ring<'a>(
    names: impl IntoIterator<Item = &'a String>,
) -> IndexMap<String, Vec<String>> {
    let mut sorted: Vec<&String> = names
        .into_iter()
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    sorted.sort_by_key(|n| (n.as_str() != "master", natural_key(n)));
    let n = sorted.len();
    let watchers = 2.min(n.saturating_sub(1));
    let mut out = IndexMap::new();
    for (i, name) in sorted.iter().enumerate() {
        let targets = (1..=watchers)
            .map(|k| sorted[(i + k) % n].clone())
            .collect();
        out.insert((*name).clone(), targets);
    }
    out
}

/// Sorts `web2` before `web10`.
fn natural_key(s: &str) -> Vec<(String, u64)> {
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut digits = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            if !digits.is_empty() {
                parts.push((
                    std::mem::take(&mut text),
                    digits.parse().unwrap_or(u64::MAX),
                ));
                digits.clear();
            }
            text.push(c);
        }
    }
    parts.push((text, digits.parse().unwrap_or(0)));
    parts
}
