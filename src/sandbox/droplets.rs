//! Droplets (`/v2/droplets...`) and their actions (`/v2/actions`, `/v2/droplets/{id}/actions`),
//! with the background work that makes them real: each create, power change, snapshot, resize
//! or rebuild is an action that runs Docker and completes (or errors) when the droplet is there.
//!
//! A create from a base image turns a ready spare into the droplet (`spares.rs`); from a
//! snapshot, or with no spare ready, it boots a container on demand.
//!
//! A droplet is `new` until its sshd answers, then `active`; `off` after a power off or
//! shutdown. Its `networks.v4` lists its one address twice, as `public` and as `private`: the
//! sandbox network is both what the machine reaches droplets on and what they reach each
//! other on.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, Query, State as Extract};
use axum::http::StatusCode;
use serde_json::Value;

use crate::cloud::{
    ActionLink, ActionLinks, ActionResponse, ActionStatus, ActionsPage, DiskInfo, DiskSize,
    Droplet, DropletCreate, DropletCreated, DropletMultiCreate, DropletResponse, DropletStatus,
    DropletsCreated, DropletsPage, ImageRef, NetworkType, NetworkV4, Networks,
};
use crate::sandbox::api::{self, ApiError, ApiResult};
use crate::sandbox::backend::{self, ContainerState, DropletRun};
use crate::sandbox::server::{now, Sandbox, BOOT_TIMEOUT};
use crate::sandbox::spares::{self, Spare};
use crate::sandbox::store::{DropletRecord, NetworkRecord, SnapshotRecord, State};
use crate::sandbox::{account, catalog, firewalls, reserved_ips, snapshots, tags};

/// Background work on one droplet.
#[derive(Debug, Clone)]
enum Work {
    Create {
        image: String,
    },
    /// A create that takes a spare; `image` boots one on demand if the spare fails.
    Adopt {
        spare: Spare,
        image: String,
    },
    PowerOff,
    Shutdown,
    PowerOn,
    Reboot,
    PowerCycle,
    Snapshot {
        name: String,
    },
    Rebuild {
        image: String,
        image_id: u64,
    },
    /// A new size's CPUs and memory for a droplet that is off.
    Resize {
        size: String,
    },
}

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
// Rendering

/// A droplet as the API shows it.
pub fn render(state: &State, droplet: &DropletRecord) -> Droplet {
    let size = catalog::size(&droplet.size).unwrap_or_else(|| catalog::sizes().remove(0));
    let region = catalog::region(&droplet.region)
        .unwrap_or_else(|| catalog::region(catalog::DEFAULT_REGION).expect("default region"));
    let image = catalog::base_image(Some(droplet.image_id), None)
        .or_else(|| state.snapshot(droplet.image_id).map(snapshots::image_of))
        .unwrap_or_else(|| snapshots::deleted_image(droplet.image_id));
    let gateway = state.network.as_ref().map(|n| n.gateway.to_string());
    let address = |kind| NetworkV4 {
        ip_address: Some(droplet.ip.to_string()),
        netmask: Some("255.255.255.0".into()),
        gateway: gateway.clone(),
        kind,
    };
    let locked = state.actions.iter().any(|a| {
        a.status == ActionStatus::InProgress
            && a.resource_id == Some(droplet.id)
            && a.resource_type.as_deref() == Some("droplet")
    });
    Droplet {
        id: droplet.id,
        name: droplet.name.clone(),
        memory: size.memory,
        vcpus: size.vcpus,
        disk: size.disk,
        disk_info: vec![DiskInfo {
            kind: Some("local".into()),
            size: Some(DiskSize {
                amount: Some(size.disk),
                unit: Some("gib".into()),
            }),
        }],
        locked,
        status: droplet.status,
        kernel: None,
        created_at: droplet.created_at.clone(),
        features: vec!["private_networking".into()],
        backup_ids: Vec::new(),
        next_backup_window: None,
        snapshot_ids: droplet.snapshot_ids.clone(),
        image,
        volume_ids: Vec::new(),
        size_slug: size.slug.clone(),
        size,
        networks: Networks {
            v4: vec![address(NetworkType::Public), address(NetworkType::Private)],
            v6: Vec::new(),
        },
        region,
        tags: droplet.tags.clone(),
        vpc_uuid: Some(vpc_uuid(&state.sandbox_id)),
    }
}

/// The sandbox network's id, shaped as a UUID.
fn vpc_uuid(sandbox_id: &str) -> String {
    let hex: String = format!("{sandbox_id:0>12}").chars().take(12).collect();
    format!("5a4db0c5-0000-4000-8000-{hex}")
}

fn not_found_droplet(id: u64) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("The resource you requested could not be found: droplet {id}."),
    )
}

// ---------------------------------------------------------------------------------------------
// Routes

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
    if state.droplets.len() + names.len() > account::DROPLET_LIMIT as usize {
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
        let spare = if base { sandbox.spares.take() } else { None };
        let ip = match &spare {
            Some(spare) => spare.ip,
            None => allocate_address(&sandbox, &state, &network).ok_or_else(|| {
                ApiError::unprocessable("The sandbox network has no free address left.")
            })?,
        };
        let id = state.next_id();
        let record = DropletRecord {
            id,
            name: name.clone(),
            size: size.slug.clone(),
            region: region.clone(),
            image_id,
            ip,
            status: DropletStatus::New,
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
        tokio::spawn(perform(sandbox.clone(), id, action, work));
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
    for droplet in &removed {
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

/// The CPUs and memory a droplet of its size gets.
fn limits(droplet: &DropletRecord) -> backend::Limits {
    let size = catalog::size(&droplet.size).unwrap_or_else(|| catalog::sizes().remove(0));
    backend::Limits::new(size.vcpus, size.memory, droplet.id)
}

// ---------------------------------------------------------------------------------------------
// Background work

/// Runs one piece of work and records how its action ended.
async fn perform(sandbox: Arc<Sandbox>, droplet_id: u64, action_id: u64, work: Work) {
    let outcome = run(&sandbox, droplet_id, &work).await;
    sandbox.finish(action_id, outcome).await;
}

async fn run(sandbox: &Arc<Sandbox>, id: u64, work: &Work) -> Result<(), String> {
    let droplet = record(sandbox, id).await?;
    let docker = &sandbox.docker;
    let failed = |e: backend::DockerError| e.to_string();
    match work {
        Work::Create { image } => {
            let started = Instant::now();
            start_container(sandbox, &droplet, image).await?;
            let running = started.elapsed();
            provision(sandbox, id, true, None).await?;
            let provisioned = started.elapsed();
            wait_active(sandbox, id).await?;
            tracing::info!(
                "droplet {id} active in {} ms (container {} ms, keys and rules {} ms, sshd {} ms)",
                started.elapsed().as_millis(),
                running.as_millis(),
                (provisioned - running).as_millis(),
                (started.elapsed() - provisioned).as_millis()
            );
            Ok(())
        }
        Work::Adopt { spare, image } => {
            let started = Instant::now();
            let from_spare = match adopt(sandbox, &droplet, spare).await {
                Ok(()) => true,
                Err(e) if e.contains("was deleted") => return Err(e),
                Err(e) => {
                    tracing::warn!(
                        "droplet {id}: the spare {} failed ({e}); booting one on demand",
                        spare.container
                    );
                    let _ = docker.remove_container(&spare.container).await;
                    spares::remove_dir(&sandbox.spares_root(), &spare.identity);
                    // A container of its own, under the name of a droplet booted on demand.
                    let droplet = {
                        let mut state = sandbox.state.lock().await;
                        let container = container_name(&state.sandbox_id, id);
                        let droplet = state.droplet_mut(id).map(|d| {
                            d.spare = None;
                            d.container = container;
                            d.clone()
                        });
                        sandbox.save_quietly(&state);
                        droplet.ok_or_else(|| format!("droplet {id} was deleted"))?
                    };
                    start_container(sandbox, &droplet, image).await?;
                    provision(sandbox, id, true, None).await?;
                    false
                }
            };
            if from_spare {
                // A spare runs unlimited until it knows its droplet's size.
                docker
                    .limit(&droplet.container, &limits(&droplet))
                    .await
                    .map_err(failed)?;
            }
            let provisioned = started.elapsed();
            wait_active(sandbox, id).await?;
            tracing::info!(
                "droplet {id} active in {} ms ({}, sshd {} ms)",
                started.elapsed().as_millis(),
                if from_spare {
                    format!(
                        "from spare {}: {} ms",
                        spare.container,
                        provisioned.as_millis()
                    )
                } else {
                    format!("booted on demand: {} ms", provisioned.as_millis())
                },
                (started.elapsed() - provisioned).as_millis()
            );
            Ok(())
        }
        Work::PowerOff => {
            docker.kill(&droplet.container).await.map_err(failed)?;
            set_status(sandbox, id, DropletStatus::Off).await;
            Ok(())
        }
        Work::Shutdown => {
            docker
                .stop(&droplet.container, Duration::from_secs(30))
                .await
                .map_err(failed)?;
            set_status(sandbox, id, DropletStatus::Off).await;
            Ok(())
        }
        Work::PowerOn => {
            docker.start(&droplet.container).await.map_err(failed)?;
            provision(sandbox, id, false, None).await?;
            wait_active(sandbox, id).await
        }
        Work::Reboot => {
            docker
                .stop(&droplet.container, Duration::from_secs(10))
                .await
                .map_err(failed)?;
            docker.start(&droplet.container).await.map_err(failed)?;
            provision(sandbox, id, false, None).await?;
            wait_active(sandbox, id).await
        }
        Work::PowerCycle => {
            docker.kill(&droplet.container).await.map_err(failed)?;
            docker.start(&droplet.container).await.map_err(failed)?;
            provision(sandbox, id, false, None).await?;
            wait_active(sandbox, id).await
        }
        Work::Snapshot { name } => snapshot(sandbox, &droplet, name).await,
        Work::Resize { size } => {
            let resized = DropletRecord {
                size: size.clone(),
                ..droplet.clone()
            };
            docker
                .limit(&droplet.container, &limits(&resized))
                .await
                .map_err(failed)?;
            let mut state = sandbox.state.lock().await;
            if let Some(d) = state.droplet_mut(id) {
                d.size = size.clone();
            }
            sandbox.save_quietly(&state);
            Ok(())
        }
        Work::Rebuild { image, image_id } => {
            docker
                .remove_container(&droplet.container)
                .await
                .map_err(failed)?;
            {
                let mut state = sandbox.state.lock().await;
                if let Some(d) = state.droplet_mut(id) {
                    d.image_id = *image_id;
                    d.status = DropletStatus::New;
                }
                sandbox.save_quietly(&state);
            }
            start_container(sandbox, &droplet, image).await?;
            provision(sandbox, id, true, None).await?;
            wait_active(sandbox, id).await
        }
    }
}

async fn record(sandbox: &Sandbox, id: u64) -> Result<DropletRecord, String> {
    sandbox
        .state
        .lock()
        .await
        .droplet(id)
        .cloned()
        .ok_or_else(|| format!("droplet {id} was deleted"))
}

async fn set_status(sandbox: &Sandbox, id: u64, status: DropletStatus) {
    let mut state = sandbox.state.lock().await;
    if let Some(droplet) = state.droplet_mut(id) {
        droplet.status = status;
    }
    sandbox.save_quietly(&state);
}

async fn start_container(
    sandbox: &Sandbox,
    droplet: &DropletRecord,
    image: &str,
) -> Result<(), String> {
    let (network, sandbox_id) = {
        let state = sandbox.state.lock().await;
        (
            state.network.clone().ok_or("the sandbox network is gone")?,
            state.sandbox_id.clone(),
        )
    };
    // A container left by an interrupted create would hold the name.
    let _ = sandbox.docker.remove_container(&droplet.container).await;
    sandbox
        .docker
        .run_droplet(&DropletRun {
            container: &droplet.container,
            hostname: &droplet.name,
            identity: &droplet.id.to_string(),
            sandbox_id: &sandbox_id,
            network: &network.name,
            ip: droplet.ip,
            image,
            spare_dir: None,
            limits: Some(&limits(droplet)),
        })
        .await
        .map_err(|e| e.to_string())?;
    // Deleted while its container was starting: the delete did not see the container.
    if record(sandbox, droplet.id).await.is_err() {
        let _ = sandbox.docker.remove_container(&droplet.container).await;
        return Err(format!("droplet {} was deleted", droplet.id));
    }
    Ok(())
}

/// Turns a spare into the droplet, with no call to Docker (see `spares.rs`): the spare's own
/// init runs what [`provision`] would run by `docker exec`, handed over through the spare's
/// directory: the droplet's id and name (hostname: `droplet-init identify`), exactly its
/// authorized keys, its reserved IPs and its firewall rules. The spare already has the
/// droplet's address, and its container is the droplet's. A spare that does not take the
/// script in time is handed over by `docker exec` instead.
async fn adopt(
    sandbox: &Arc<Sandbox>,
    droplet: &DropletRecord,
    spare: &Spare,
) -> Result<(), String> {
    let identify = spares::identify_script(&spare.identity, droplet.id, &droplet.name);
    let (_, authorized, script) =
        provision_script(sandbox, droplet.id, true, Some(&identify)).await?;
    let dir = spares::dir(&sandbox.spares_root(), &spare.identity);
    let outcome = spares::hand_over(&dir, &script, &authorized).await;
    // Deleted meanwhile: the delete removed the container.
    record(sandbox, droplet.id).await?;
    match outcome? {
        true => Ok(()),
        false => {
            tracing::warn!(
                "droplet {}: the spare {} did not take its identity within {} s; by docker exec",
                droplet.id,
                spare.container,
                spares::CLAIM_TIMEOUT.as_secs()
            );
            provision(sandbox, droplet.id, true, Some(&identify)).await
        }
    }
}

/// Puts what the sandbox manages onto a droplet that just booted, in one `docker exec`: its
/// authorized keys (only when `keys`: a power cycle keeps whatever the droplet's owner has put
/// there since), its reserved IPs and its firewall rules; `first`, if given, runs before them.
async fn provision(
    sandbox: &Arc<Sandbox>,
    id: u64,
    keys: bool,
    first: Option<&str>,
) -> Result<(), String> {
    let (container, authorized, script) = provision_script(sandbox, id, keys, first).await?;
    if script.is_empty() {
        return Ok(());
    }
    let input = keys.then_some(authorized.as_bytes());
    sandbox
        .docker
        .exec(&container, &script, input)
        .await
        .map(|_| ())
        .map_err(|e| format!("cannot set up the droplet's keys, addresses and firewall: {e}"))
}

/// What [`provision`] runs: the droplet's container, its authorized keys (the script's stdin
/// when `keys`) and the script.
async fn provision_script(
    sandbox: &Sandbox,
    id: u64,
    keys: bool,
    first: Option<&str>,
) -> Result<(String, String, String), String> {
    let found = {
        let state = sandbox.state.lock().await;
        let droplet = state
            .droplet(id)
            .ok_or_else(|| format!("droplet {id} was deleted"))?;
        let authorized: String = droplet
            .ssh_key_ids
            .iter()
            .filter_map(|key| state.ssh_keys.iter().find(|k| k.id == *key))
            .map(|k| format!("{}\n", k.public_key.trim()))
            .collect();
        let mut script = first.unwrap_or_default().to_owned();
        if keys {
            script.push_str(
                "umask 077 && mkdir -p /root/.ssh && cat >/root/.ssh/authorized_keys.new \
                 && mv /root/.ssh/authorized_keys.new /root/.ssh/authorized_keys || exit 1\n",
            );
        }
        script.push_str(&reserved_ips::script(&state, id));
        if let Some(rules) = firewalls::script_for(&state, id) {
            script.push_str(&rules);
        }
        (droplet.container.clone(), authorized, script)
    };
    Ok(found)
}

/// Waits for sshd to answer, then marks the droplet active.
async fn wait_active(sandbox: &Sandbox, id: u64) -> Result<(), String> {
    let droplet = record(sandbox, id).await?;
    let started = Instant::now();
    let mut checks = 0u32;
    loop {
        if backend::ssh_answers(droplet.ip).await {
            set_status(sandbox, id, DropletStatus::Active).await;
            return Ok(());
        }
        if started.elapsed() > BOOT_TIMEOUT {
            return Err(format!(
                "sshd on droplet {id} did not answer within {} s",
                BOOT_TIMEOUT.as_secs()
            ));
        }
        checks += 1;
        if checks.is_multiple_of(20) {
            record(sandbox, id).await?;
            if matches!(
                sandbox.docker.state(&droplet.container).await,
                Ok(ContainerState::Stopped)
            ) {
                return Err(format!(
                    "droplet {id} stopped while booting (see `docker logs {}`)",
                    droplet.container
                ));
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn snapshot(sandbox: &Sandbox, droplet: &DropletRecord, name: &str) -> Result<(), String> {
    let (snapshot_id, sandbox_id) = {
        let mut state = sandbox.state.lock().await;
        let id = state.next_id();
        sandbox.save_quietly(&state);
        (id, state.sandbox_id.clone())
    };
    let image = format!("infra-sbx-{sandbox_id}-snapshot:{snapshot_id}");
    let bytes = sandbox
        .docker
        .snapshot(&droplet.container, &image, &sandbox_id)
        .await
        .map_err(|e| e.to_string())?;
    let size = catalog::size(&droplet.size).map_or(25, |s| s.disk);
    let mut state = sandbox.state.lock().await;
    state.snapshots.push(SnapshotRecord {
        id: snapshot_id,
        name: name.to_owned(),
        droplet_id: droplet.id,
        created_at: now(),
        region: droplet.region.clone(),
        min_disk_size: size,
        size_gigabytes: (bytes as f64 / 1e7).round() / 100.0,
        image,
        tags: Vec::new(),
    });
    if let Some(d) = state.droplet_mut(droplet.id) {
        d.snapshot_ids.push(snapshot_id);
    }
    sandbox.save_quietly(&state);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// A create's or rebuild's `image`: a base image (by id or slug) or one of the account's
/// snapshots (by id). Returns its id and the Docker image to start.
fn resolve_image(
    sandbox: &Sandbox,
    state: &State,
    image: &ImageRef,
) -> Result<(u64, String), ApiError> {
    let invalid =
        || ApiError::unprocessable("You specified an invalid image for Droplet creation.");
    match image {
        ImageRef::Id(id) => {
            if let Some(base) = catalog::base_image(Some(*id), None) {
                Ok((base.id, sandbox.image.clone()))
            } else if let Some(snapshot) = state.snapshot(*id) {
                Ok((snapshot.id, snapshot.image.clone()))
            } else {
                Err(invalid())
            }
        }
        ImageRef::Slug(slug) => {
            if let Ok(id) = slug.parse::<u64>() {
                return resolve_image(sandbox, state, &ImageRef::Id(id));
            }
            catalog::base_image(None, Some(slug))
                .map(|base| (base.id, sandbox.image.clone()))
                .ok_or_else(invalid)
        }
    }
}

/// The container of a droplet booted on demand (one made from a spare keeps the spare's).
fn container_name(sandbox_id: &str, id: u64) -> String {
    format!("infra-sbx-{sandbox_id}-{id}")
}

/// The first free address of the sandbox network, from `.10`: none a droplet, reserved IP or
/// spare holds.
pub(crate) fn allocate_address(
    sandbox: &Sandbox,
    state: &State,
    network: &NetworkRecord,
) -> Option<Ipv4Addr> {
    let base = network.gateway.octets();
    let used = state.addresses_in_use();
    let held = sandbox.held_addresses();
    (10..=254u8)
        .map(|last| Ipv4Addr::new(base[0], base[1], base[2], last))
        .find(|ip| !used.contains(ip) && !held.contains(ip))
}

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

/// After a server restart: matches every droplet with its container, finishes what an earlier
/// server left half done, and brings running droplets' rules back.
pub async fn resume(sandbox: Arc<Sandbox>) {
    let (droplets, interrupted): (Vec<DropletRecord>, HashMap<u64, (u64, String)>) = {
        let mut state = sandbox.state.lock().await;
        let mut interrupted = HashMap::new();
        let stamp = now();
        for action in &mut state.actions {
            if action.status == ActionStatus::InProgress {
                if let Some(resource) = action.resource_id {
                    interrupted.insert(resource, (action.id, action.kind.clone()));
                }
                if action.kind != "create" {
                    action.status = ActionStatus::Errored;
                    action.completed_at = Some(stamp.clone());
                }
            }
        }
        sandbox.save_quietly(&state);
        (state.droplets.clone(), interrupted)
    };
    for droplet in droplets {
        let sandbox = sandbox.clone();
        let pending = interrupted.get(&droplet.id).cloned();
        tokio::spawn(async move {
            let id = droplet.id;
            let container = sandbox.docker.state(&droplet.container).await;
            // An interrupted create from a spare, or resize, may have left the container with
            // other CPUs and memory than its recorded size.
            if pending.is_some()
                && matches!(
                    container,
                    Ok(ContainerState::Running | ContainerState::Stopped)
                )
            {
                if let Err(e) = sandbox
                    .docker
                    .limit(&droplet.container, &limits(&droplet))
                    .await
                {
                    tracing::warn!("droplet {id}: cannot set its size's limits: {e}");
                }
            }
            match (container, pending) {
                (Ok(ContainerState::Missing), Some((action, kind))) if kind == "create" => {
                    let image = {
                        let state = sandbox.state.lock().await;
                        resolve_image(&sandbox, &state, &ImageRef::Id(droplet.image_id))
                            .map(|(_, image)| image)
                    };
                    match image {
                        Ok(image) => perform(sandbox, id, action, Work::Create { image }).await,
                        Err(_) => {
                            sandbox
                                .finish(action, Err("its image was deleted".into()))
                                .await
                        }
                    }
                }
                (Ok(ContainerState::Running), pending) => {
                    // A create from a spare stopped halfway through the hand-over: finish
                    // turning it into the droplet, by `docker exec` (the identity step does
                    // nothing twice).
                    let identify = match (&pending, &droplet.spare) {
                        (Some((_, kind)), Some(spare)) if kind == "create" => {
                            Some(spares::identify_script(spare, id, &droplet.name))
                        }
                        _ => None,
                    };
                    let outcome =
                        match provision(&sandbox, id, pending.is_some(), identify.as_deref()).await
                        {
                            Ok(()) => wait_active(&sandbox, id).await,
                            Err(e) => Err(e),
                        };
                    if let Some((action, kind)) = pending {
                        if kind == "create" {
                            sandbox.finish(action, outcome).await;
                        }
                    }
                }
                (Ok(_), pending) => {
                    set_status(&sandbox, id, DropletStatus::Off).await;
                    if let Some((action, kind)) = pending {
                        if kind == "create" {
                            sandbox
                                .finish(action, Err("the sandbox stopped while it booted".into()))
                                .await;
                        }
                    }
                }
                (Err(e), _) => tracing::error!("cannot inspect droplet {id}: {e}"),
            }
        });
    }
}
