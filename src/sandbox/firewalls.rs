//! Cloud firewalls (`/v2/firewalls...`): stored as DigitalOcean describes them, and enforced
//! inside every member droplet (by id or by tag) with the rules `iptables.rs` renders.

use std::net::Ipv4Addr;
use std::sync::Arc;

use axum::extract::{Path, Query, State as Extract};
use axum::http::StatusCode;

use crate::cloud::{
    DropletStatus, Firewall, FirewallDroplets, FirewallRequest, FirewallResponse, FirewallRules,
    FirewallStatus, FirewallsPage, InboundRule, OutboundRule, Protocol, RuleTarget,
};
use crate::sandbox::api::{self, ApiError, ApiResult};
use crate::sandbox::iptables;
use crate::sandbox::shared::{now, Sandbox};
use crate::sandbox::store::State;

/// The inbound rules that apply to a droplet, `None` when it is in no firewall.
fn rules_for(state: &State, droplet_id: u64) -> Option<Vec<InboundRule>> {
    let droplet = state.droplet(droplet_id)?;
    let mut member = false;
    let mut rules = Vec::new();
    for firewall in &state.firewalls {
        if firewall.droplet_ids.contains(&droplet_id)
            || firewall.tags.iter().any(|t| droplet.tags.contains(t))
        {
            member = true;
            rules.extend(firewall.inbound_rules.iter().cloned());
        }
    }
    member.then_some(rules)
}

/// The addresses of the droplets a rule target names by id or tag.
fn resolve(state: &State, target: &RuleTarget) -> Vec<Ipv4Addr> {
    state
        .droplets
        .iter()
        .filter(|d| {
            target.droplet_ids.contains(&d.id) || d.tags.iter().any(|t| target.tags.contains(t))
        })
        .map(|d| d.ip)
        .collect()
}

/// The commands that put a droplet's firewall rules in place, `None` when it is in no
/// firewall (a droplet that just booted then has nothing to lift).
pub fn script_for(state: &State, droplet_id: u64) -> Option<String> {
    let rules = rules_for(state, droplet_id)?;
    Some(iptables::script(Some(&rules), &|t| resolve(state, t)))
}

/// Brings the rules inside droplets up to date: `only` these, or every droplet that is on.
/// A droplet that cannot be reached now gets its rules when it next boots.
pub async fn apply(sandbox: &Arc<Sandbox>, only: Option<&[u64]>) {
    if sandbox.records_only {
        // No host behind the droplets to enforce anything in.
        return;
    }
    let jobs: Vec<(u64, String, String)> = {
        let state = sandbox.state.lock().await;
        state
            .droplets
            .iter()
            .filter(|d| only.is_none_or(|ids| ids.contains(&d.id)))
            .filter(|d| only.is_some() || d.status != DropletStatus::Off)
            .map(|d| {
                let rules = rules_for(&state, d.id);
                let script = iptables::script(rules.as_deref(), &|t| resolve(&state, t));
                (d.id, d.container.clone(), script)
            })
            .collect()
    };
    let mut tasks = tokio::task::JoinSet::new();
    for (id, container, script) in jobs {
        let docker = sandbox.docker.clone();
        tasks.spawn(async move {
            if let Err(e) = docker.exec(&container, &script, None).await {
                tracing::debug!("firewall rules for droplet {id} wait for its next boot: {e}");
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

fn check(request: &FirewallRequest, state: &State) -> Result<(), ApiError> {
    let name = request.name.as_str();
    let valid_name = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        && name.len() <= 255;
    if !valid_name {
        return Err(ApiError::unprocessable(
            "name must begin with an alphanumeric character and hold only alphanumeric characters, `.` and `-`",
        ));
    }
    check_rules(&request.inbound_rules, &request.outbound_rules, state)?;
    for id in &request.droplet_ids {
        if state.droplet(*id).is_none() {
            return Err(ApiError::unprocessable(format!(
                "droplet {id} does not exist"
            )));
        }
    }
    Ok(())
}

fn check_rules(
    inbound: &[InboundRule],
    outbound: &[OutboundRule],
    state: &State,
) -> Result<(), ApiError> {
    let targets = inbound
        .iter()
        .map(|r| (r.protocol, &r.ports, &r.sources))
        .chain(
            outbound
                .iter()
                .map(|r| (r.protocol, &r.ports, &r.destinations)),
        );
    for (protocol, ports, target) in targets {
        if protocol != Protocol::Icmp && !iptables::valid_ports(ports) {
            return Err(ApiError::unprocessable(format!(
                "ports `{ports}` must be a port, a range like `8000-9000`, or `0` for all"
            )));
        }
        for id in &target.droplet_ids {
            if state.droplet(*id).is_none() {
                return Err(ApiError::unprocessable(format!(
                    "droplet {id} does not exist"
                )));
            }
        }
    }
    Ok(())
}

fn found<'s>(state: &'s mut State, id: &str) -> Result<&'s mut Firewall, ApiError> {
    state
        .firewalls
        .iter_mut()
        .find(|f| f.id == id)
        .ok_or_else(ApiError::not_found)
}

fn uuid() -> String {
    use rand_core::{OsRng, RngCore};
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

pub async fn list(
    Extract(sandbox): Extract<Arc<Sandbox>>,
    Query(query): Query<api::Query>,
) -> ApiResult {
    let firewalls = sandbox.state.lock().await.firewalls.clone();
    let page = api::page(firewalls, &query, &sandbox.base_url, "/v2/firewalls")?;
    Ok(api::json(
        StatusCode::OK,
        &FirewallsPage {
            firewalls: page.items,
            links: page.links,
            meta: Some(page.meta),
        },
    ))
}

pub async fn create(Extract(sandbox): Extract<Arc<Sandbox>>, body: axum::body::Bytes) -> ApiResult {
    let request: FirewallRequest = api::body(&body)?;
    let firewall = {
        let mut state = sandbox.state.lock().await;
        check(&request, &state)?;
        let firewall = Firewall {
            id: uuid(),
            status: Some(FirewallStatus::Succeeded),
            created_at: Some(now()),
            pending_changes: Vec::new(),
            name: request.name,
            droplet_ids: request.droplet_ids,
            tags: request.tags,
            inbound_rules: request.inbound_rules,
            outbound_rules: request.outbound_rules,
        };
        state.firewalls.push(firewall.clone());
        sandbox.save(&state)?;
        firewall
    };
    apply(&sandbox, None).await;
    Ok(api::json(
        StatusCode::ACCEPTED,
        &FirewallResponse { firewall },
    ))
}

pub async fn get(Extract(sandbox): Extract<Arc<Sandbox>>, Path(id): Path<String>) -> ApiResult {
    let mut state = sandbox.state.lock().await;
    let firewall = found(&mut state, &id)?.clone();
    Ok(api::json(StatusCode::OK, &FirewallResponse { firewall }))
}

pub async fn update(
    Extract(sandbox): Extract<Arc<Sandbox>>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    let request: FirewallRequest = api::body(&body)?;
    let firewall = {
        let mut state = sandbox.state.lock().await;
        found(&mut state, &id)?;
        check(&request, &state)?;
        let firewall = found(&mut state, &id)?;
        firewall.name = request.name;
        firewall.droplet_ids = request.droplet_ids;
        firewall.tags = request.tags;
        firewall.inbound_rules = request.inbound_rules;
        firewall.outbound_rules = request.outbound_rules;
        let firewall = firewall.clone();
        sandbox.save(&state)?;
        firewall
    };
    apply(&sandbox, None).await;
    Ok(api::json(StatusCode::OK, &FirewallResponse { firewall }))
}

pub async fn delete(Extract(sandbox): Extract<Arc<Sandbox>>, Path(id): Path<String>) -> ApiResult {
    {
        let mut state = sandbox.state.lock().await;
        found(&mut state, &id)?;
        state.firewalls.retain(|f| f.id != id);
        sandbox.save(&state)?;
    }
    apply(&sandbox, None).await;
    Ok(api::no_content())
}

/// Adds or removes member droplets.
async fn change_droplets(sandbox: Arc<Sandbox>, id: String, body: &[u8], add: bool) -> ApiResult {
    let request: FirewallDroplets = api::body(body)?;
    {
        let mut state = sandbox.state.lock().await;
        found(&mut state, &id)?;
        for droplet in &request.droplet_ids {
            if state.droplet(*droplet).is_none() {
                return Err(ApiError::unprocessable(format!(
                    "droplet {droplet} does not exist"
                )));
            }
        }
        let firewall = found(&mut state, &id)?;
        if add {
            for droplet in request.droplet_ids {
                if !firewall.droplet_ids.contains(&droplet) {
                    firewall.droplet_ids.push(droplet);
                }
            }
        } else {
            firewall
                .droplet_ids
                .retain(|d| !request.droplet_ids.contains(d));
        }
        sandbox.save(&state)?;
    }
    apply(&sandbox, None).await;
    Ok(api::no_content())
}

pub async fn add_droplets(
    Extract(sandbox): Extract<Arc<Sandbox>>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    change_droplets(sandbox, id, &body, true).await
}

pub async fn remove_droplets(
    Extract(sandbox): Extract<Arc<Sandbox>>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    change_droplets(sandbox, id, &body, false).await
}

/// Adds or removes rules.
async fn change_rules(sandbox: Arc<Sandbox>, id: String, body: &[u8], add: bool) -> ApiResult {
    let request: FirewallRules = api::body(body)?;
    if request.is_empty() {
        return Err(ApiError::bad_request(
            "give `inbound_rules` or `outbound_rules`",
        ));
    }
    {
        let mut state = sandbox.state.lock().await;
        found(&mut state, &id)?;
        check_rules(&request.inbound_rules, &request.outbound_rules, &state)?;
        let firewall = found(&mut state, &id)?;
        if add {
            for rule in request.inbound_rules {
                if !firewall.inbound_rules.contains(&rule) {
                    firewall.inbound_rules.push(rule);
                }
            }
            for rule in request.outbound_rules {
                if !firewall.outbound_rules.contains(&rule) {
                    firewall.outbound_rules.push(rule);
                }
            }
        } else {
            firewall
                .inbound_rules
                .retain(|r| !request.inbound_rules.contains(r));
            firewall
                .outbound_rules
                .retain(|r| !request.outbound_rules.contains(r));
        }
        sandbox.save(&state)?;
    }
    apply(&sandbox, None).await;
    Ok(api::no_content())
}

pub async fn add_rules(
    Extract(sandbox): Extract<Arc<Sandbox>>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    change_rules(sandbox, id, &body, true).await
}

pub async fn remove_rules(
    Extract(sandbox): Extract<Arc<Sandbox>>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    change_rules(sandbox, id, &body, false).await
}
