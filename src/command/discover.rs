//! `infra discover PROJECT ENV`: how to reach one project-environment's services, workers
//! included (`get_service_discovery_info`).

use serde::Serialize;

use super::{Env, Failure, Outcome};
use crate::config;
use crate::state::placement::{project_env, service_name};
use crate::state::{ServiceKind, State};
use crate::table::Table;

#[derive(Serialize)]
struct Endpoint {
    droplet: String,
    ip: Option<String>,
    url: Option<String>,
    /// The release its container runs, once deployed.
    release: Option<String>,
}

#[derive(Serialize)]
struct ServiceInfo {
    name: String,
    #[serde(rename = "type")]
    kind: ServiceKind,
    port: Option<u16>,
    route: Option<String>,
    command: Option<String>,
    endpoints: Vec<Endpoint>,
    /// Environment variable names the secrets are read from at deploy time (never values).
    secret_env: Vec<String>,
}

#[derive(Serialize)]
struct Discovery {
    project: String,
    environment: String,
    platform: String,
    branch: String,
    domain: Option<String>,
    /// Whether the services are recorded in the state (deployed) or only planned.
    recorded: bool,
    /// The release the last finished deploy made current.
    current_release: Option<String>,
    services: Vec<ServiceInfo>,
}

pub fn run(env: &Env, project: &str, environment: &str) -> Outcome {
    let path = env.project.state_path();
    let state = State::load(&path, &env.project.display(&path))?;
    let loaded = config::load(&env.project, state)?;
    let Some(spec) = loaded.spec.projects.get(project) else {
        let known: Vec<&str> = loaded.spec.projects.keys().map(String::as_str).collect();
        return Err(Failure::input(format!(
            "project `{project}` is not in the spec; known projects: {}",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        )));
    };
    if !spec.environments.iter().any(|e| e == environment) {
        return Err(Failure::input(format!(
            "project `{project}` has no environment `{environment}`; it has {}",
            spec.environments.join(", ")
        )));
    }
    let key = project_env(project, environment);
    let deployment = loaded.deployment.project(project);
    let recorded = loaded.runtime.projects.get(&key);
    let releases =
        crate::deploy::Releases::load(&crate::deploy::releases::releases_path(&env.project, &key))
            .map_err(|e| Failure::flow(e.to_string()))?;
    let services = recorded
        .or_else(|| loaded.services.get(&key))
        .cloned()
        .unwrap_or_default();
    let infos = services
        .iter()
        .map(|(service, record)| {
            let config = deployment.services.get(service);
            let endpoints = record
                .assigned_droplets
                .iter()
                .map(|d| {
                    let ip = loaded.runtime.droplets.get(d).and_then(|r| r.ip.clone());
                    let live = releases.live.get(service).and_then(|by| by.get(d));
                    let port = live.and_then(|c| c.port).or(record.port);
                    let url = match (&ip, record.kind, port) {
                        (Some(ip), ServiceKind::Web, Some(port)) => {
                            Some(format!("http://{ip}:{port}"))
                        }
                        _ => None,
                    };
                    Endpoint {
                        droplet: d.clone(),
                        ip,
                        url,
                        release: live.map(|c| c.release.clone()),
                    }
                })
                .collect();
            ServiceInfo {
                name: service_name(&key, service),
                kind: record.kind,
                port: record.port,
                route: (record.kind == ServiceKind::Web)
                    .then(|| config.map(|c| c.route(service)))
                    .flatten(),
                command: config.and_then(|c| c.command.clone()),
                endpoints,
                secret_env: config
                    .map(|c| {
                        c.secrets
                            .iter()
                            .map(|s| crate::template::secret_env_name(project, environment, s))
                            .collect()
                    })
                    .unwrap_or_default(),
            }
        })
        .collect();
    let info = Discovery {
        project: project.to_string(),
        environment: environment.to_string(),
        platform: loaded.deployment.platform_of(project),
        branch: deployment.branch.clone(),
        domain: deployment.domains.get(environment).cloned(),
        recorded: recorded.is_some(),
        current_release: releases.current.clone(),
        services: infos,
    };
    if env.options.json {
        println!(
            "{}",
            serde_json::to_string(&info).expect("discovery serializes")
        );
        return Ok(());
    }
    println!(
        "{key}: platform {}, branch {}{}",
        info.platform,
        info.branch,
        info.domain
            .as_ref()
            .map(|d| format!(", domain {d}"))
            .unwrap_or_default()
    );
    match &info.current_release {
        Some(r) => println!("current release: {r} (`infra releases {project} {environment}`)"),
        None => println!("no release deployed yet (`infra deploy-{environment} {project}`)"),
    }
    if !info.recorded {
        println!("(not deployed yet: showing the planned placement; run `infra orchestrate`)");
    }
    let mut t = Table::new(&["SERVICE", "TYPE", "PORT", "ROUTE", "ENDPOINTS"]);
    for s in &info.services {
        let endpoints: Vec<String> = s
            .endpoints
            .iter()
            .map(|e| {
                let at = e.url.clone().unwrap_or_else(|| match &e.ip {
                    Some(ip) => format!("{} ({ip})", e.droplet),
                    None => e.droplet.clone(),
                });
                match &e.release {
                    Some(r) => format!("{at} [{r}]"),
                    None => at,
                }
            })
            .collect();
        t.row(vec![
            s.name.clone(),
            s.kind.as_str().to_string(),
            s.port.map_or("-".into(), |p| p.to_string()),
            s.route.clone().unwrap_or_else(|| "-".into()),
            endpoints.join(", "),
        ]);
    }
    print!("{}", t.render(2));
    let workers: Vec<&ServiceInfo> = info
        .services
        .iter()
        .filter(|s| s.kind == ServiceKind::Worker)
        .collect();
    if !workers.is_empty() {
        println!("\nWorkers (no traffic; container name and command):");
        for w in workers {
            println!(
                "  {}: {}",
                w.name,
                w.command.as_deref().unwrap_or("(image default)")
            );
        }
    }
    let secrets: Vec<&String> = info.services.iter().flat_map(|s| &s.secret_env).collect();
    if !secrets.is_empty() {
        let mut unique: Vec<&String> = Vec::new();
        for s in secrets {
            if !unique.contains(&s) {
                unique.push(s);
            }
        }
        println!(
            "\nSecrets are read at deploy time from: {}",
            unique
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}
