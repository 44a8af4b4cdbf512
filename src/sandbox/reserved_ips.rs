//! Reserved IPs (`/v2/reserved_ips...`): extra addresses of the sandbox network that move
//! between droplets. The droplet holding one answers on it as well (a second address on its
//! interface, announced with a gratuitous ARP so the machine and the other droplets learn
//! where it moved).

use std::net::Ipv4Addr;
use std::sync::Arc;

use axum::extract::{Path, State as Extract};
use axum::http::StatusCode;

use crate::cloud::{
    ActionLink, ActionResponse, ActionStatus, ReservedIp, ReservedIpAction, ReservedIpCreate,
    ReservedIpCreated, ReservedIpLinks, ReservedIpResponse,
};
use crate::sandbox::api::{self, ApiError, ApiResult};
use crate::sandbox::shared::{now, Sandbox};
use crate::sandbox::store::{ReservedIpRecord, State};
use crate::sandbox::{catalog, droplet_view};

/// The commands that bring a droplet's reserved IPs up (after a boot or an assignment).
pub fn script(state: &State, droplet_id: u64) -> String {
    state
        .reserved_ips
        .iter()
        .filter(|r| r.droplet_id == Some(droplet_id))
        .map(|r| {
            format!(
                "ip addr add {ip}/24 dev eth0 2>/dev/null; arping -q -U -c 1 -I eth0 {ip} >/dev/null 2>&1; true\n",
                ip = r.ip
            )
        })
        .collect()
}

fn render(state: &State, record: &ReservedIpRecord) -> ReservedIp {
    ReservedIp {
        ip: record.ip.to_string(),
        region: catalog::region(&record.region),
        droplet: record
            .droplet_id
            .and_then(|id| state.droplet(id))
            .map(|d| Box::new(droplet_view::render(state, d))),
        locked: Some(false),
        project_id: None,
    }
}

fn parse_ip(text: &str) -> Result<Ipv4Addr, ApiError> {
    text.parse().map_err(|_| ApiError::not_found())
}

/// Moves `ip` to `to` (or off every droplet): removes it from its old holder, adds it to the
/// new one. A droplet that is off picks it up when it boots.
async fn move_address(sandbox: &Sandbox, ip: Ipv4Addr, from: Option<u64>, to: Option<u64>) {
    let containers = {
        let state = sandbox.state.lock().await;
        let container = |id: Option<u64>| {
            id.and_then(|id| state.droplet(id))
                .map(|d| d.container.clone())
        };
        (container(from), container(to))
    };
    if let (Some(old), true) = (&containers.0, from != to) {
        let remove = format!("ip addr del {ip}/24 dev eth0 2>/dev/null; true");
        if let Err(e) = sandbox.docker.exec(old, &remove, None).await {
            tracing::debug!("reserved IP {ip} leaves a droplet that is off: {e}");
        }
    }
    if let Some(new) = &containers.1 {
        let add = format!(
            "ip addr add {ip}/24 dev eth0 2>/dev/null; arping -q -U -c 1 -I eth0 {ip} >/dev/null 2>&1; true"
        );
        if let Err(e) = sandbox.docker.exec(new, &add, None).await {
            tracing::debug!("reserved IP {ip} waits for its droplet to boot: {e}");
        }
    }
}

pub async fn create(Extract(sandbox): Extract<Arc<Sandbox>>, body: axum::body::Bytes) -> ApiResult {
    let request: ReservedIpCreate = api::body(&body)?;
    let (record, droplet, action) = {
        let mut state = sandbox.state.lock().await;
        let (region, droplet) = match &request {
            ReservedIpCreate::ForDroplet { droplet_id } => {
                let droplet = state.droplet(*droplet_id).ok_or_else(|| {
                    ApiError::unprocessable(format!("droplet {droplet_id} does not exist"))
                })?;
                (droplet.region.clone(), Some(*droplet_id))
            }
            ReservedIpCreate::InRegion { region, .. } => {
                if catalog::region(region).is_none() {
                    return Err(ApiError::unprocessable(
                        "You specified an invalid region for the reserved IP.",
                    ));
                }
                (region.clone(), None)
            }
        };
        if state.reserved_ips.len() >= 5 {
            return Err(ApiError::unprocessable(
                "You have reached your reserved IP limit of 5.",
            ));
        }
        let network = state
            .network
            .clone()
            .ok_or_else(|| ApiError::server_error("the sandbox network is not ready"))?;
        let base = network.gateway.octets();
        let used = state.addresses_in_use();
        let held = sandbox.held_addresses();
        // From the top of the range, away from the droplets' addresses.
        let ip = (200..=254u8)
            .rev()
            .map(|last| Ipv4Addr::new(base[0], base[1], base[2], last))
            .find(|ip| !used.contains(ip) && !held.contains(ip))
            .ok_or_else(|| {
                ApiError::unprocessable("The sandbox network has no free address left.")
            })?;
        let record = ReservedIpRecord {
            ip,
            region: region.clone(),
            droplet_id: droplet,
        };
        state.reserved_ips.push(record.clone());
        let action = droplet.map(|_| {
            let mut action = sandbox.start_action(
                &mut state,
                "assign_ip",
                u32::from(ip) as u64,
                "reserved_ip",
                &region,
            );
            action.status = ActionStatus::Completed;
            action.completed_at = Some(now());
            if let Some(stored) = state.action_mut(action.id) {
                *stored = action.clone();
            }
            action
        });
        sandbox.save(&state)?;
        (record, droplet, action)
    };
    move_address(&sandbox, record.ip, None, droplet).await;
    let state = sandbox.state.lock().await;
    let links = ReservedIpLinks {
        droplets: droplet
            .map(|id| ActionLink {
                id,
                rel: "droplet".into(),
                href: format!("{}/v2/droplets/{id}", sandbox.base_url),
            })
            .into_iter()
            .collect(),
        actions: action
            .map(|a| ActionLink {
                id: a.id,
                rel: "assign_ip".into(),
                href: sandbox.action_href(a.id),
            })
            .into_iter()
            .collect(),
    };
    Ok(api::json(
        StatusCode::ACCEPTED,
        &ReservedIpCreated {
            reserved_ip: render(&state, &record),
            links: Some(links),
        },
    ))
}

pub async fn get(Extract(sandbox): Extract<Arc<Sandbox>>, Path(ip): Path<String>) -> ApiResult {
    let ip = parse_ip(&ip)?;
    let state = sandbox.state.lock().await;
    let record = state
        .reserved_ips
        .iter()
        .find(|r| r.ip == ip)
        .ok_or_else(ApiError::not_found)?;
    Ok(api::json(
        StatusCode::OK,
        &ReservedIpResponse {
            reserved_ip: render(&state, record),
        },
    ))
}

pub async fn delete(Extract(sandbox): Extract<Arc<Sandbox>>, Path(ip): Path<String>) -> ApiResult {
    let ip = parse_ip(&ip)?;
    let holder = {
        let mut state = sandbox.state.lock().await;
        let record = state
            .reserved_ips
            .iter()
            .find(|r| r.ip == ip)
            .ok_or_else(ApiError::not_found)?
            .clone();
        state.reserved_ips.retain(|r| r.ip != ip);
        sandbox.save(&state)?;
        record.droplet_id
    };
    move_address(&sandbox, ip, holder, None).await;
    Ok(api::no_content())
}

pub async fn post_action(
    Extract(sandbox): Extract<Arc<Sandbox>>,
    Path(ip): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    let ip = parse_ip(&ip)?;
    let request: ReservedIpAction = api::body(&body)?;
    let (from, to, action) = {
        let mut state = sandbox.state.lock().await;
        let record = state
            .reserved_ips
            .iter()
            .find(|r| r.ip == ip)
            .ok_or_else(ApiError::not_found)?
            .clone();
        let (kind, to) = match request {
            ReservedIpAction::Assign { droplet_id } => {
                if state.droplet(droplet_id).is_none() {
                    return Err(ApiError::unprocessable(format!(
                        "droplet {droplet_id} does not exist"
                    )));
                }
                ("assign_ip", Some(droplet_id))
            }
            ReservedIpAction::Unassign => ("unassign_ip", None),
        };
        let mut action = sandbox.start_action(
            &mut state,
            kind,
            u32::from(ip) as u64,
            "reserved_ip",
            &record.region,
        );
        action.status = ActionStatus::Completed;
        action.completed_at = Some(now());
        if let Some(stored) = state.action_mut(action.id) {
            *stored = action.clone();
        }
        if let Some(stored) = state.reserved_ips.iter_mut().find(|r| r.ip == ip) {
            stored.droplet_id = to;
        }
        sandbox.save(&state)?;
        (record.droplet_id, to, action)
    };
    move_address(&sandbox, ip, from, to).await;
    Ok(api::json(StatusCode::CREATED, &ActionResponse { action }))
}
