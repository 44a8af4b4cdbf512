//! Services placed on droplets with their ports (`get_required_services`): what the spec and
//! deployment_config.json ask for together. It lives beside the configs, which it reads, and
//! reads the state's spec and runtime; the state itself knows nothing of the configs.

use crate::config::deployment::{DeploymentConfig, PortSetting, ProjectDeployment};
use crate::name_map::NameMap;
use crate::schema::{index, join, Checker};
use crate::state::ports::{default_base_port, hash_based_port, next_in_range, DEFAULT_PORT_RANGE};
use crate::state::runtime::{Runtime, ServiceKind, ServiceMap, ServiceRecord};
use crate::state::spec::{web_droplet_name, ProjectSpec, Spec};
use crate::state::{project_env, service_name};

/// Services of every project-environment, placed and given ports.
///
/// Ports are sticky: a port already recorded in the runtime state is kept while it is free on
/// the service's droplets, so adding a project never renumbers another. New ports come from
/// [`hash_based_port`]; a clash moves to the next free port in the service's range, visiting
/// services in name order so every machine resolves clashes the same way. Problems (explicit
/// ports that clash, unknown droplets) are reported against deployment_config.json.
pub fn required_services(
    spec: &Spec,
    deploy: &DeploymentConfig,
    runtime: &Runtime,
    c: &mut Checker,
) -> NameMap<ServiceMap> {
    let mut out: NameMap<ServiceMap> = NameMap::default();
    let defaults = ProjectDeployment::default_for_project();
    for (project, p) in &spec.projects {
        let deployment = deploy.projects.get(project).unwrap_or(&defaults);
        place_project(project, p, deployment, runtime, c, &mut out);
    }
    out
}

fn place_project(
    project: &str,
    p: &ProjectSpec,
    deployment: &ProjectDeployment,
    runtime: &Runtime,
    c: &mut Checker,
    out: &mut NameMap<ServiceMap>,
) {
    let web: Vec<String> = (1..=p.web_droplets)
        .map(|n| web_droplet_name(project, n))
        .collect();
    let mut ports = Ports(vec![Vec::new(); web.len()]);
    // Explicitly given ports on each droplet and who has them, for the clash message.
    let mut explicit: Vec<(usize, u16, String)> = Vec::new();
    let keys: Vec<String> = p
        .environments
        .iter()
        .map(|e| project_env(project, e))
        .collect();
    let mut pending: Vec<Pending> = Vec::new();
    for (environment, key) in p.environments.iter().zip(&keys) {
        let key_index = out.len();
        let mut services = ServiceMap::default();
        for (service, config) in &deployment.services {
            let cpath = || join(&join(&join("projects", project), "services"), service);
            let droplets: Vec<usize> = match &config.droplets {
                Some(list) => {
                    let mut ok = Vec::new();
                    for (i, d) in list.iter().enumerate() {
                        if let Some(n) = web.iter().position(|w| w == d) {
                            ok.push(n);
                        } else if environment == &p.environments[0] {
                            c.error(
                                &index(&join(&cpath(), "droplets"), i),
                                format!(
                                    "`{d}` is not a web droplet of project `{project}` (it has {}); name one of those",
                                    describe_range(project, p.web_droplets)
                                ),
                            );
                        }
                    }
                    ok
                }
                None => {
                    let default = match config.kind {
                        ServiceKind::Web => web.len(),
                        ServiceKind::Worker => 1,
                    };
                    let n = config.replicas.map(|r| r as usize).unwrap_or(default);
                    (0..n.min(web.len())).collect()
                }
            };
            let mut port = None;
            if config.kind == ServiceKind::Web {
                if let Some(given) = config.explicit_port(environment) {
                    let full = service_name(key, service);
                    for &d in &droplets {
                        if let Some((_, _, other)) =
                            explicit.iter().find(|(od, op, _)| *od == d && *op == given)
                        {
                            let ppath = match &config.port {
                                Some(PortSetting::PerEnvironment(_)) => {
                                    join(&join(&cpath(), "port"), environment)
                                }
                                _ => join(&cpath(), "port"),
                            };
                            // A fixed port clashes with itself across environments.
                            let hint = match &config.port {
                                Some(PortSetting::Fixed(_)) if other.ends_with(&format!("-{service}")) => {
                                    " (its environments share droplets: give one port per environment, like \"port\": {\"prod\": 8080, \"uat\": 8081})"
                                }
                                _ => "",
                            };
                            c.error(
                                &ppath,
                                format!("port {given} on `{}` is given to both `{other}` and `{full}`; give each service its own port on a droplet{hint}", web[d]),
                            );
                            break;
                        }
                    }
                    for &d in &droplets {
                        explicit.push((d, given, full.clone()));
                    }
                    ports.claim(&droplets, given);
                    port = Some(given);
                } else {
                    pending.push(Pending {
                        key,
                        key_index,
                        service,
                        environment,
                        base: config
                            .base_port
                            .unwrap_or_else(|| default_base_port(service)),
                        droplets: droplets.clone(),
                    });
                }
            }
            services.insert(
                service.clone(),
                ServiceRecord {
                    kind: config.kind,
                    port,
                    assigned_droplets: droplets.iter().map(|&d| web[d].clone()).collect(),
                },
            );
        }
        out.insert(key.clone(), services);
    }

    pending.sort_by(|a, b| (a.key, a.service).cmp(&(b.key, b.service)));
    let range = DEFAULT_PORT_RANGE;
    // Sticky ports first, so that new services work around them.
    let mut fresh = Vec::new();
    for item in pending {
        let recorded = runtime
            .projects
            .get(item.key)
            .and_then(|s| s.get(item.service))
            .and_then(|r| r.port)
            .filter(|p| (item.base..item.base.saturating_add(range)).contains(p));
        match recorded {
            Some(port) if ports.free(&item.droplets, port) => {
                ports.claim(&item.droplets, port);
                out[item.key_index][item.service].port = Some(port);
            }
            _ => fresh.push(item),
        }
    }
    for item in fresh {
        let mut port = hash_based_port(project, item.environment, item.base, range);
        let mut found = None;
        for _ in 0..range {
            if ports.free(&item.droplets, port) {
                found = Some(port);
                break;
            }
            port = next_in_range(port, item.base, range);
        }
        match found {
            Some(port) => {
                ports.claim(&item.droplets, port);
                out[item.key_index][item.service].port = Some(port);
            }
            None => c.error(
                &join(&join(&join("projects", project), "services"), item.service),
                format!(
                    "no free port left in {}..{} on its droplets; set `base_port` to another range",
                    item.base,
                    item.base as u32 + range as u32
                ),
            ),
        }
    }
}

fn describe_range(project: &str, n: u32) -> String {
    if n == 1 {
        format!("only `{}`", web_droplet_name(project, 1))
    } else {
        format!(
            "`{}` to `{}`",
            web_droplet_name(project, 1),
            web_droplet_name(project, n)
        )
    }
}

struct Pending<'a> {
    /// The project-environment (`key`, its index in the output) and the service's name.
    key: &'a str,
    key_index: usize,
    service: &'a str,
    environment: &'a str,
    base: u16,
    /// Indices of the droplets among the project's web droplets.
    droplets: Vec<usize>,
}

/// Ports taken on each of one project's web droplets. Projects never share droplets, so every
/// port decision is local to one project: a few short lists, no hashing, no names.
struct Ports(Vec<Vec<u16>>);

impl Ports {
    fn free(&self, droplets: &[usize], port: u16) -> bool {
        droplets.iter().all(|&d| !self.0[d].contains(&port))
    }

    fn claim(&mut self, droplets: &[usize], port: u16) {
        for &d in droplets {
            self.0[d].push(port);
        }
    }
}
