//! Droplets (`/v2/droplets...`) and their actions (`/v2/actions`, `/v2/droplets/{id}/actions`):
//! the routes. Each create, power change, snapshot, resize or rebuild is an action handed to
//! the worker (`worker.rs`), which runs Docker and completes (or errors) it when it is done.
//!
//! A create from a base image turns a ready spare into the droplet (`spares.rs`); from a
//! snapshot, or with no spare ready, it boots a container on demand.
//!
//! A droplet is `new` until its sshd answers, then `active`; `off` after a power off or
//! shutdown. Its `networks.v4` lists its one address twice, as `public` and as `private`: the
//! sandbox network is both what the machine reaches droplets on and what they reach each
//! other on.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Path, Query, State as Extract};
use axum::http::StatusCode;
use serde_json::Value;

use crate::cloud::{
    ActionLink, ActionLinks, ActionResponse, ActionStatus, ActionsPage, Droplet, DropletCreate,
    DropletCreated, DropletMultiCreate, DropletResponse, DropletStatus, DropletsCreated,
    DropletsPage, ImageRef,
};
use crate::sandbox::api::{self, ApiError, ApiResult};
use crate::sandbox::droplet_view::render;
use crate::sandbox::shared::{now, Sandbox};
use crate::sandbox::spares;
use crate::sandbox::store::DropletRecord;
use crate::sandbox::worker::{container_name, perform, resolve_image, Work};
use crate::sandbox::{account, catalog, firewalls, tags};

/// Actions DigitalOcean has that the sandbox does not perform.
const UNSUPPORTED: [&str; 7] = [
    "enable_backups",
    "disable_backups",
    "change_backup_policy",
    "password_reset",
    "rename",
    "change_kernel",
    "enable_ipv6",
];

// ---------------------------------------------------------------------------------------------
// Routes

fn not_found_droplet(id: u64) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("The resource you requested could not be found: droplet {id}."),
    )
}

pub async fn list(
    Extract(sandbox): Extract<Arc<Sandbox>>,
    Query(query): Query<api::Query>,
) -> ApiResult {
    let state = sandbox.state.lock().await;
    let tag = query.get("tag_name");
    let name = query.get("name");
    // The sandbox has no GPU droplets.
    let gpus = query.get("type").is_some_and(|t| t == "gpus");
    let droplets: Vec<Droplet> = state
        .droplets
        .iter()
        .filter(|_| !gpus)
        .filter(|d| tag.is_none_or(|t| d.tags.contains(t)))
        .filter(|d| name.is_none_or(|n| &d.name == n))
        .map(|d| render(&state, d))
        .collect();
    let page = api::page(droplets, &query, &sandbox.base_url, "/v2/droplets")?;
    Ok(api::json(
        StatusCode::OK,
        &DropletsPage {
            droplets: page.items,
            links: page.links,
            meta: Some(page.meta),
        },
    ))
}

pub async fn get(Extract(sandbox): Extract<Arc<Sandbox>>, Path(id): Path<String>) -> ApiResult {
    let id = api::id(&id)?;
    let state = sandbox.state.lock().await;
    let droplet = state.droplet(id).ok_or_else(|| not_found_droplet(id))?;
    Ok(api::json(
        StatusCode::OK,
        &DropletResponse {
            droplet: render(&state, droplet),
        },
    ))
}

pub async fn create(Extract(sandbox): Extract<Arc<Sandbox>>, body: axum::body::Bytes) -> ApiResult {
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("error parsing request body: {e}")))?;
    let multi = value.get("names").is_some();
    let (names, spec) = if multi {
        let request: DropletMultiCreate = api::typed(value)?;
        (request.names, request.spec)
    } else {
        let request: DropletCreate = api::typed(value)?;
        (vec![request.name], request.spec)
    };
    if names.is_empty() || names.len() > 10 {
        return Err(ApiError::unprocessable(
            "You may create between 1 and 10 Droplets at a time.",
        ));
    }
    for name in &names {
        if !valid_hostname(name) {
            return Err(ApiError::unprocessable(format!(
                "Only valid hostname characters are allowed. (a-z, A-Z, 0-9, . and -): `{name}`"
            )));
        }
    }
    let size = catalog::size(&spec.size).ok_or_else(|| {
        ApiError::unprocessable("You specified an invalid size for Droplet creation.")
    })?;
    let region = spec
        .region
        .clone()
        .unwrap_or_else(|| catalog::DEFAULT_REGION.to_owned());
    if catalog::region(&region).is_none() {
        return Err(ApiError::unprocessable(
            "You specified an invalid region for Droplet creation.",
        ));
    }
    for tag in &spec.tags {
        tags::check_name(tag).map_err(|e| ApiError::unprocessable(e.body.text()))?;
    }
    if spec
        .user_data
        .as_ref()
        .is_some_and(|u| !u.trim().is_empty())
    {
        return Err(ApiError::unprocessable(
            "The sandbox does not run cloud-init, so it cannot take `user_data`: configure droplets over SSH instead.",
        ));
    }

    let mut state = sandbox.state.lock().await;
    let (image_id, image) = resolve_image(&sandbox, &state, &spec.image)?;
    let mut key_ids = Vec::new();
    for key in &spec.ssh_keys {
        let found = account::find(&state, &key.to_string()).ok_or_else(|| {
            ApiError::unprocessable(format!(
                "SSH key `{key}` is not on this account: register it with POST /v2/account/keys first."
            ))
        })?;
        key_ids.push(found.id);
    }
    if !sandbox.records_only && state.droplets.len() + names.len() > account::DROPLET_LIMIT as usize
    {
        return Err(ApiError::unprocessable(format!(
            "creating {} droplet(s) would exceed your droplet limit of {}",
            names.len(),
            account::DROPLET_LIMIT
        )));
    }
    let network = state
        .network
        .clone()
        .ok_or_else(|| ApiError::server_error("the sandbox network is not ready"))?;
    let mut created = Vec::new();
    let mut links = Vec::new();
    let mut works = Vec::new();
    // Spares are of the base image; a snapshot's droplets boot on demand.
    let base = image == sandbox.image;
    for name in &names {
        let spare = if base && !sandbox.records_only {
            sandbox.spares.take()
        } else {
            None
        };
        let id = state.next_id();
        let ip = match &spare {
            Some(spare) => spare.ip,
            // A record needs an address no host will ever answer on: one of the shared
            // address space (100.64.0.0/10), from the id.
            None if sandbox.records_only => {
                Ipv4Addr::from(u32::from(Ipv4Addr::new(100, 64, 0, 0)) + (id % (1 << 22)) as u32)
            }
            None => sandbox.allocate_address(&state, &network).ok_or_else(|| {
                ApiError::unprocessable("The sandbox network has no free address left.")
            })?,
        };
        let record = DropletRecord {
            id,
            name: name.clone(),
            size: size.slug.clone(),
            region: region.clone(),
            image_id,
            ip,
            status: if sandbox.records_only {
                DropletStatus::Active
            } else {
                DropletStatus::New
            },
            created_at: now(),
            tags: dedup(&spec.tags),
            ssh_key_ids: key_ids.clone(),
            snapshot_ids: Vec::new(),
            // A droplet made from a spare keeps the spare's container, under its name.
            container: match &spare {
                Some(spare) => spare.container.clone(),
                None => container_name(&state.sandbox_id, id),
            },
            spare: spare.as_ref().map(|s| s.identity.clone()),
        };
        state.droplets.push(record);
        works.push(match spare {
            Some(spare) => Work::Adopt {
                spare,
                image: image.clone(),
            },
            None => Work::Create {
                image: image.clone(),
            },
        });
        let action = sandbox.start_action(&mut state, "create", id, "droplet", &region);
        links.push(ActionLink {
            id: action.id,
            rel: "create".into(),
            href: sandbox.action_href(action.id),
        });
        created.push((id, action.id));
    }
    for tag in &spec.tags {
        if !state.tags.contains(tag) {
            state.tags.push(tag.clone());
        }
    }
    sandbox.save(&state)?;
    let rendered: Vec<Droplet> = created
        .iter()
        .filter_map(|(id, _)| state.droplet(*id).map(|d| render(&state, d)))
        .collect();
    drop(state);
    for ((id, action), work) in created.into_iter().zip(works) {
        if sandbox.records_only {
            sandbox.finish(action, Ok(())).await;
        } else {
            tokio::spawn(perform(sandbox.clone(), id, action, work));
        }
    }
    let links = ActionLinks { actions: links };
    Ok(if multi {
        api::json(
            StatusCode::ACCEPTED,
            &DropletsCreated {
                droplets: rendered,
                links,
            },
        )
    } else {
        api::json(
            StatusCode::ACCEPTED,
            &DropletCreated {
                droplet: rendered.into_iter().next().expect("one droplet"),
                links,
            },
        )
    })
}

pub async fn delete(Extract(sandbox): Extract<Arc<Sandbox>>, Path(id): Path<String>) -> ApiResult {
    let id = api::id(&id)?;
    if sandbox.state.lock().await.droplet(id).is_none() {
        return Err(not_found_droplet(id));
    }
    destroy(&sandbox, &[id]).await?;
    Ok(api::no_content())
}

pub async fn delete_by_tag(
    Extract(sandbox): Extract<Arc<Sandbox>>,
    Query(query): Query<api::Query>,
) -> ApiResult {
    let tag = query
        .get("tag_name")
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::bad_request("`tag_name` is required to delete droplets by tag"))?;
    let ids: Vec<u64> = {
        let state = sandbox.state.lock().await;
        if !state.tags.contains(tag) && !state.droplets.iter().any(|d| d.tags.contains(tag)) {
            return Err(ApiError::not_found());
        }
        state
            .droplets
            .iter()
            .filter(|d| d.tags.contains(tag))
            .map(|d| d.id)
            .collect()
    };
    destroy(&sandbox, &ids).await?;
    Ok(api::no_content())
}

/// Removes droplets: their records first (so they leave every list at once), then their
/// containers. Their addresses are held back until the containers are gone.
async fn destroy(sandbox: &Arc<Sandbox>, ids: &[u64]) -> Result<(), ApiError> {
    let removed: Vec<DropletRecord> = {
        let mut state = sandbox.state.lock().await;
        let removed: Vec<DropletRecord> = state
            .droplets
            .iter()
            .filter(|d| ids.contains(&d.id))
            .cloned()
            .collect();
        state.droplets.retain(|d| !ids.contains(&d.id));
        for firewall in &mut state.firewalls {
            firewall.droplet_ids.retain(|id| !ids.contains(id));
        }
        for reserved in &mut state.reserved_ips {
            if reserved.droplet_id.is_some_and(|id| ids.contains(&id)) {
                reserved.droplet_id = None;
            }
        }
        sandbox.hold_addresses(removed.iter().map(|d| d.ip));
        sandbox.save(&state)?;
        removed
    };
    let mut failure = None;
    for droplet in removed.iter().filter(|_| !sandbox.records_only) {
        match sandbox.docker.remove_container(&droplet.container).await {
            Ok(()) => {
                if let Some(spare) = &droplet.spare {
                    spares::remove_dir(&sandbox.spares_root(), spare);
                }
            }
            Err(e) => {
                tracing::error!("cannot remove droplet {}: {e}", droplet.id);
                failure = Some(e);
            }
        }
    }
    sandbox.release_addresses(removed.iter().map(|d| d.ip));
    // Rules that named these droplets as sources change for everyone else.
    firewalls::apply(sandbox, None).await;
    match failure {
        None => Ok(()),
        Some(e) => Err(ApiError::server_error(format!(
            "the droplet was removed from the account but its container was not: {e}"
        ))),
    }
}

pub async fn list_actions(
    Extract(sandbox): Extract<Arc<Sandbox>>,
    Path(id): Path<String>,
    Query(query): Query<api::Query>,
) -> ApiResult {
    let id = api::id(&id)?;
    let state = sandbox.state.lock().await;
    state.droplet(id).ok_or_else(|| not_found_droplet(id))?;
    let actions = state
        .actions
        .iter()
        .filter(|a| a.resource_id == Some(id) && a.resource_type.as_deref() == Some("droplet"))
        .rev()
        .cloned()
        .collect();
    let path = format!("/v2/droplets/{id}/actions");
    let page = api::page(actions, &query, &sandbox.base_url, &path)?;
    Ok(api::json(
        StatusCode::OK,
        &ActionsPage {
            actions: page.items,
            links: page.links,
            meta: Some(page.meta),
        },
    ))
}

pub async fn get_action(
    Extract(sandbox): Extract<Arc<Sandbox>>,
    Path(id): Path<String>,
) -> ApiResult {
    let id = api::id(&id)?;
    let state = sandbox.state.lock().await;
    let action = state
        .actions
        .iter()
        .find(|a| a.id == id)
        .ok_or_else(ApiError::not_found)?;
    Ok(api::json(
        StatusCode::OK,
        &ActionResponse {
            action: action.clone(),
        },
    ))
}

pub async fn get_droplet_action(
    Extract(sandbox): Extract<Arc<Sandbox>>,
    Path((droplet_id, action_id)): Path<(String, String)>,
) -> ApiResult {
    let (droplet_id, action_id) = (api::id(&droplet_id)?, api::id(&action_id)?);
    let state = sandbox.state.lock().await;
    let action = state
        .actions
        .iter()
        .find(|a| a.id == action_id && a.resource_id == Some(droplet_id))
        .ok_or_else(ApiError::not_found)?;
    Ok(api::json(
        StatusCode::OK,
        &ActionResponse {
            action: action.clone(),
        },
    ))
}

pub async fn post_action(
    Extract(sandbox): Extract<Arc<Sandbox>>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    let id = api::id(&id)?;
    let request: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("error parsing request body: {e}")))?;
    let kind = request
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::unprocessable("`type` is required"))?
        .to_owned();
    if sandbox.records_only {
        return Err(ApiError::unprocessable(format!(
            "this sandbox holds droplets as records only (`--records-only`): it performs no `{kind}`"
        )));
    }
    let mut state = sandbox.state.lock().await;
    let droplet = state
        .droplet(id)
        .ok_or_else(|| not_found_droplet(id))?
        .clone();
    let work = match kind.as_str() {
        "power_off" => Work::PowerOff,
        "shutdown" => Work::Shutdown,
        "power_on" => Work::PowerOn,
        "reboot" => Work::Reboot,
        "power_cycle" => Work::PowerCycle,
        "snapshot" => {
            let name = request
                .get("name")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .filter(|n| !n.trim().is_empty())
                .unwrap_or_else(|| format!("{}-{}", droplet.name, unix_millis()));
            Work::Snapshot { name }
        }
        "rebuild" | "restore" => {
            let image: ImageRef = request
                .get("image")
                .cloned()
                .map(api::typed)
                .transpose()?
                .ok_or_else(|| ApiError::unprocessable("`image` is required"))?;
            if kind == "restore" && matches!(image, ImageRef::Id(i) if state.snapshot(i).is_none())
            {
                return Err(ApiError::unprocessable(
                    "You can only restore a droplet from one of its snapshots.",
                ));
            }
            let (image_id, image) = resolve_image(&sandbox, &state, &image)?;
            Work::Rebuild { image, image_id }
        }
        "resize" => resize(&request, &droplet)?,
        other if UNSUPPORTED.contains(&other) => {
            return Err(ApiError::unprocessable(format!(
                "The sandbox does not support the `{other}` droplet action."
            )))
        }
        other => {
            return Err(ApiError::unprocessable(format!(
                "`{other}` is not a droplet action type"
            )))
        }
    };
    let busy = state.actions.iter().any(|a| {
        a.status == ActionStatus::InProgress
            && a.resource_id == Some(id)
            && a.resource_type.as_deref() == Some("droplet")
    });
    if busy {
        return Err(ApiError::unprocessable(
            "Droplet already has a pending event.",
        ));
    }
    let action = sandbox.start_action(&mut state, &kind, id, "droplet", &droplet.region);
    sandbox.save(&state)?;
    drop(state);
    tokio::spawn(perform(sandbox.clone(), id, action.id, work));
    Ok(api::json(StatusCode::CREATED, &ActionResponse { action }))
}

/// A resize's checks, as DigitalOcean makes them: a size that exists, a droplet that is off,
/// and with `disk`, no smaller disk.
fn resize(request: &Value, droplet: &DropletRecord) -> Result<Work, ApiError> {
    let slug = request
        .get("size")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::unprocessable("`size` is required to resize a droplet"))?;
    let size = catalog::size(slug).ok_or_else(|| {
        ApiError::unprocessable("You specified an invalid size for Droplet resize.")
    })?;
    if droplet.status != DropletStatus::Off {
        return Err(ApiError::unprocessable(
            "Droplet is currently on. Please power it off to run this event.",
        ));
    }
    // `disk` is a boolean, though some clients send it as a string.
    let disk = matches!(request.get("disk"), Some(Value::Bool(true)))
        || request.get("disk").and_then(Value::as_str) == Some("true");
    let current = catalog::size(&droplet.size).map_or(0, |s| s.disk);
    if disk && size.disk < current {
        return Err(ApiError::unprocessable(
            "Size can not decrease size of Droplet's disk image",
        ));
    }
    Ok(Work::Resize { size: size.slug })
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// What DigitalOcean accepts as a droplet name.
fn valid_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        && !name.starts_with(['-', '.'])
        && !name.ends_with(['-', '.'])
}

fn dedup(tags: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for tag in tags {
        if !out.contains(tag) {
            out.push(tag.clone());
        }
    }
    out
}

fn unix_millis() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}
