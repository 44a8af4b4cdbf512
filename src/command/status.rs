//! `infra status`: what the state file records — droplets, services, load-balancer targets,
//! who monitors whom — and summary counts.

use std::collections::HashMap;

use indexmap::IndexMap;
use serde::Serialize;

use super::{Env, Outcome};
use crate::state::placement::{required_droplets, service_name};
use crate::state::{summary, Runtime, ServiceKind, ServiceRecord, State, Summary};
use crate::table::Table;

#[derive(Serialize)]
struct DropletStatus<'a> {
    ip: Option<&'a str>,
    role: &'a str,
    project: Option<&'a str>,
    size: Option<&'a str>,
    region: Option<&'a str>,
    monitors: &'a [String],
    monitored_by: Vec<&'a str>,
    services: Vec<String>,
}

#[derive(Serialize)]
struct ServiceStatus<'a> {
    #[serde(flatten)]
    record: &'a ServiceRecord,
    worker: bool,
}

#[derive(Serialize)]
struct Status<'a> {
    /// With `--refresh`: what the cloud showed that the state does not say.
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh: Option<Vec<crate::fleet::Finding>>,
    droplets: IndexMap<&'a str, DropletStatus<'a>>,
    projects: IndexMap<&'a str, IndexMap<&'a str, ServiceStatus<'a>>>,
    load_balancer: IndexMap<String, Vec<String>>,
    /// Per deployed project-environment: the current release and which release each service
    /// runs on each droplet.
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    releases: IndexMap<String, ReleaseStatus>,
    /// Each droplet's monitor as its last report says (when monitors are installed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    monitors: Vec<crate::monitor::status::Seen>,
    summary: Summary,
    problems: Vec<String>,
}

#[derive(Serialize)]
struct ReleaseStatus {
    current: Option<String>,
    /// service -> droplet -> release.
    live: IndexMap<String, IndexMap<String, String>>,
}

/// The release histories in config/.infra/releases (one directory read: most
/// project-environments of a large fleet may have none).
fn releases(env: &Env) -> Result<IndexMap<String, ReleaseStatus>, super::Failure> {
    let dir = crate::deploy::releases::releases_dir(&env.project);
    let mut out = IndexMap::new();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(out);
    };
    let mut paths: Vec<std::path::PathBuf> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for path in paths {
        let Some(key) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".json"))
        else {
            continue;
        };
        let r = crate::deploy::Releases::load(&path)
            .map_err(|e| super::Failure::flow(e.to_string()))?;
        let live = r
            .live
            .iter()
            .map(|(service, by)| {
                let by = by
                    .iter()
                    .map(|(d, c)| (d.clone(), c.release.clone()))
                    .collect();
                (service.clone(), by)
            })
            .collect();
        out.insert(
            key.to_string(),
            ReleaseStatus {
                current: r.current,
                live,
            },
        );
    }
    Ok(out)
}

fn build<'a>(runtime: &'a Runtime, summary: Summary, problems: Vec<String>) -> Status<'a> {
    // Indexes built once, so status stays linear in the size of the fleet.
    let mut services_on: HashMap<&str, Vec<String>> = HashMap::new();
    let mut watchers: HashMap<&str, Vec<&str>> = HashMap::new();
    for (key, services) in &runtime.projects {
        for (service, record) in services {
            for d in &record.assigned_droplets {
                services_on
                    .entry(d.as_str())
                    .or_default()
                    .push(service_name(key, service));
            }
        }
    }
    for (name, d) in &runtime.droplets {
        for m in &d.monitors {
            watchers.entry(m.as_str()).or_default().push(name.as_str());
        }
    }
    let droplets = runtime
        .droplets
        .iter()
        .map(|(name, d)| {
            (
                name.as_str(),
                DropletStatus {
                    ip: d.ip.as_deref(),
                    role: &d.role,
                    project: d.project.as_deref(),
                    size: d.size.as_deref(),
                    region: d.region.as_deref(),
                    monitors: &d.monitors,
                    monitored_by: watchers.remove(name.as_str()).unwrap_or_default(),
                    services: services_on.remove(name.as_str()).unwrap_or_default(),
                },
            )
        })
        .collect();
    let mut load_balancer = IndexMap::new();
    let projects = runtime
        .projects
        .iter()
        .map(|(key, services)| {
            let services = services
                .iter()
                .map(|(service, record)| {
                    if let (ServiceKind::Web, Some(port)) = (record.kind, record.port) {
                        let targets = record
                            .assigned_droplets
                            .iter()
                            .filter_map(|d| runtime.droplets.get(d).and_then(|r| r.ip.as_deref()))
                            .map(|ip| format!("{ip}:{port}"))
                            .collect();
                        load_balancer.insert(service_name(key, service), targets);
                    }
                    (
                        service.as_str(),
                        ServiceStatus {
                            record,
                            worker: record.kind == ServiceKind::Worker,
                        },
                    )
                })
                .collect();
            (key.as_str(), services)
        })
        .collect();
    Status {
        refresh: None,
        droplets,
        projects,
        load_balancer,
        releases: IndexMap::new(),
        monitors: Vec::new(),
        summary,
        problems,
    }
}

/// `1 droplet`, `3 droplets`.
fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("{n} {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

fn dash(s: Option<&str>) -> String {
    s.unwrap_or("-").to_string()
}

fn render(status: &Status, spec_droplets: usize, spec_projects: usize) -> String {
    let mut out = String::new();
    if status.droplets.is_empty() && status.projects.is_empty() {
        out.push_str(&format!(
            "No droplets or services recorded yet. The spec asks for {} across {}: run `infra plan` to see them and `infra orchestrate` to create them.\n",
            count(spec_droplets, "droplet"),
            count(spec_projects, "project"),
        ));
        return out;
    }
    out.push_str(&format!("Droplets ({}):\n", status.droplets.len()));
    let mut t = Table::new(&[
        "NAME", "IP", "ROLE", "PROJECT", "SIZE", "REGION", "SERVICES",
    ]);
    for (name, d) in &status.droplets {
        t.row(vec![
            name.to_string(),
            dash(d.ip),
            d.role.to_string(),
            dash(d.project),
            dash(d.size),
            dash(d.region),
            d.services.len().to_string(),
        ]);
    }
    out.push_str(&t.render(2));
    out.push_str("\nServices:\n");
    let mut t = Table::new(&["SERVICE", "TYPE", "PORT", "DROPLETS"]);
    for (key, services) in &status.projects {
        for (service, s) in services {
            t.row(vec![
                service_name(key, service),
                s.record.kind.as_str().to_string(),
                s.record.port.map_or("-".into(), |p| p.to_string()),
                s.record.assigned_droplets.join(", "),
            ]);
        }
    }
    out.push_str(&t.render(2));
    out.push_str("\nLoad balancer targets (web services only):\n");
    if status.load_balancer.is_empty() {
        out.push_str("  none\n");
    }
    for (service, targets) in &status.load_balancer {
        let targets = if targets.is_empty() {
            "(no droplet with an IP yet)".to_string()
        } else {
            targets.join(", ")
        };
        out.push_str(&format!("  {service} -> {targets}\n"));
    }
    if !status.releases.is_empty() {
        out.push_str("\nReleases (`infra releases PROJECT ENV` for the history):\n");
        for (key, r) in &status.releases {
            out.push_str(&format!(
                "  {key}: {}\n",
                r.current.as_deref().unwrap_or("no finished deploy")
            ));
            for (service, by) in &r.live {
                for (droplet, release) in by {
                    out.push_str(&format!("    {key}-{service} on {droplet}: {release}\n"));
                }
            }
        }
    }
    out.push_str("\nMonitoring:\n");
    for (name, d) in &status.droplets {
        let by = if d.monitored_by.is_empty() {
            "nobody".to_string()
        } else {
            d.monitored_by.join(", ")
        };
        out.push_str(&format!("  {name} is watched by {by}\n"));
    }
    if !status.monitors.is_empty() {
        out.push_str(&render_monitors(&status.monitors));
    }
    let s = &status.summary;
    let roles: Vec<String> = s
        .droplets_by_role
        .iter()
        .map(|(r, n)| format!("{n} {r}"))
        .collect();
    out.push_str(&format!(
        "\nSummary: {} ({}); {}; {} ({} web, {}); the spec asks for {}\n",
        count(s.droplets, "droplet"),
        roles.join(", "),
        count(s.project_environments, "project-environment"),
        count(s.services, "service"),
        s.web_services,
        count(s.worker_services, "worker"),
        count(s.spec_droplets, "droplet"),
    ));
    out
}

/// With `refresh`, the cloud is listed first and what it shows that the state does not say
/// (droplets gone, changed outside infra, orphaned) is shown above the table; the state file
/// is not written (`infra orchestrate` records and repairs it).
pub async fn run(env: &Env, refresh: bool) -> Outcome {
    let path = env.project.state_path();
    let state = State::load(&path, &env.project.display(&path))?;
    let checked = state.check();
    let problems: Vec<String> = checked.problems.iter().map(ToString::to_string).collect();
    for p in &problems {
        tracing::warn!("{p}");
    }
    let findings = if refresh {
        Some(find_drift(env, &checked).await?)
    } else {
        None
    };
    let summary = summary(&checked.spec, &checked.runtime);
    let mut status = build(&checked.runtime, summary, problems);
    status.releases = releases(env)?;
    status.monitors = monitors(env, &checked.runtime).await;
    if env.options.json {
        status.refresh = findings;
        crate::output::line(&serde_json::to_string(&status).expect("status serializes"));
    } else {
        if let Some(findings) = &findings {
            crate::output::text(&render_findings(findings));
        }
        crate::output::text(&render(
            &status,
            required_droplets(&checked.spec).len(),
            checked.spec.projects.len(),
        ));
    }
    // A one-shot command: the process is about to exit, and freeing a large state piece by
    // piece would cost as much as building the output.
    std::mem::forget(status);
    crate::deferred_drop::drop_in_background((state, checked));
    Ok(())
}

async fn find_drift(
    env: &Env,
    checked: &crate::state::Checked,
) -> Result<Vec<crate::fleet::Finding>, super::Failure> {
    let fleet = crate::fleet::Fleet::for_project(&env.project, env.cancel.clone())
        .map_err(|e| super::Failure::flow(e.to_string()))?;
    let wanted = required_droplets(&checked.spec);
    let wanted: std::collections::HashSet<&str> = wanted.keys().map(String::as_str).collect();
    let refresh = fleet
        .refresh(&checked.runtime.droplets, &wanted)
        .await
        .map_err(|e| super::Failure::flow(e.to_string()))?;
    Ok(refresh.findings)
}

fn render_findings(findings: &[crate::fleet::Finding]) -> String {
    use crate::fleet::Finding;
    if findings.is_empty() {
        return "The cloud matches the state.\n\n".to_string();
    }
    let mut out =
        String::from("The cloud differs from the state (`infra orchestrate` repairs it):\n");
    for f in findings {
        let line = match f {
            Finding::Gone { name, id, .. } => format!(
                "  ! droplet {name}{} is gone",
                id.map(|id| format!(" (id {id})")).unwrap_or_default()
            ),
            Finding::Drift { name, before, after } => format!(
                "  ~ droplet {name}: ip {} -> {}, status {} -> {}",
                before.ip.as_deref().unwrap_or("(none)"),
                after.ip.as_deref().unwrap_or("(none)"),
                before.status.as_deref().unwrap_or("(none)"),
                after.status
            ),
            Finding::Orphan { name, droplet } => format!(
                "  - droplet {name} (id {}) is an orphan: tagged `infra`, neither recorded nor in the spec",
                droplet.id
            ),
            Finding::Duplicate { name, droplet, kept } => format!(
                "  - droplet {name} (id {}) is a duplicate of id {kept}",
                droplet.id
            ),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out.push('\n');
    out
}

/// The monitors' last reports, read over SSH from every droplet, when monitors were installed
/// from here (their keys exist); nothing otherwise, so `status` stays offline for a fleet
/// without them.
async fn monitors(env: &Env, runtime: &Runtime) -> Vec<crate::monitor::status::Seen> {
    let keys = crate::monitor::keys::monitor_dir(&env.project).join("keys");
    let installed = std::fs::read_dir(&keys)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false);
    if !installed {
        return Vec::new();
    }
    let hosts: Vec<crate::remote::Host> = runtime
        .droplets
        .iter()
        .filter_map(|(name, d)| {
            let ip = d.ip.as_deref()?.parse().ok()?;
            Some(crate::remote::Host::new(name.clone(), ip))
        })
        .collect();
    let connector = match crate::remote::Connector::for_project(&env.project) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("monitor reports not read: {e}");
            return Vec::new();
        }
    };
    let pool = std::sync::Arc::new(crate::remote::Pool::new(connector));
    let seen = crate::monitor::status::fetch(pool.clone(), &hosts).await;
    pool.close().await;
    seen
}

fn render_monitors(seen: &[crate::monitor::status::Seen]) -> String {
    let mut out = String::from("\nMonitors (each one's last report):\n");
    for s in seen {
        let Some(report) = &s.report else {
            out.push_str(&format!(
                "  {}: {}\n",
                s.droplet,
                s.problem.as_deref().unwrap_or("no report")
            ));
            continue;
        };
        let age = s.age_seconds.unwrap_or(0);
        out.push_str(&format!(
            "  {}: reported {age} s ago{}\n",
            s.droplet,
            if age > 10 {
                " (STALE: is the monitor running?)"
            } else {
                ""
            }
        ));
        out.push_str(&crate::monitor::status::describe(report, "    "));
    }
    out
}
