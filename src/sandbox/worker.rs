//! The droplet action worker: the background work that makes each create, power change,
//! snapshot, resize or rebuild real (Docker on the droplet's container), completing or erroring
//! its action when done, and `resume`, which after a server restart finishes what an earlier
//! server left half done. The routes that start this work are in `droplets.rs`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cloud::ImageRef;
use crate::cloud::{ActionStatus, DropletStatus};
use crate::sandbox::api::ApiError;
use crate::sandbox::backend::{self, ContainerState, DropletRun};
use crate::sandbox::shared::{now, Sandbox, BOOT_TIMEOUT};
use crate::sandbox::spares::{self, Spare};
use crate::sandbox::store::State;
use crate::sandbox::store::{DropletRecord, SnapshotRecord};
use crate::sandbox::{catalog, firewalls, reserved_ips};

/// Background work on one droplet.
#[derive(Debug, Clone)]
pub(super) enum Work {
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

/// Runs one piece of work and records how its action ended.
pub(super) async fn perform(sandbox: Arc<Sandbox>, droplet_id: u64, action_id: u64, work: Work) {
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

/// The container of a droplet booted on demand (one made from a spare keeps the spare's).
pub(super) fn container_name(sandbox_id: &str, id: u64) -> String {
    format!("infra-sbx-{sandbox_id}-{id}")
}

/// After a server restart: matches every droplet with its container, finishes what an earlier
/// server left half done, and brings running droplets' rules back.
pub(super) async fn resume(sandbox: Arc<Sandbox>) {
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

/// The CPUs and memory a droplet of its size gets.
fn limits(droplet: &DropletRecord) -> backend::Limits {
    let size = catalog::size(&droplet.size).unwrap_or_else(|| catalog::sizes().remove(0));
    backend::Limits::new(size.vcpus, size.memory, droplet.id)
}

/// A create's or rebuild's `image`: a base image (by id or slug) or one of the account's
/// snapshots (by id). Returns its id and the Docker image to start.
pub(super) fn resolve_image(
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
