//! Spare droplets: containers of the base image the server boots before anyone asks for them,
//! so that a create answers in the time it takes to hand one over rather than the time Docker
//! takes to start containers (which this machine's daemon does one at a time).
//!
//! - The server keeps `--spares N` of them booted (`infra sandbox up --spares N`, default
//!   [`DEFAULT_SPARES`], 0 turns them off; recorded in `server.json`). A spare is ready once its
//!   sshd answers and its host keys are all made; after each take, a background task boots the
//!   next one, one at a time, and no request ever waits for it.
//! - A create from a base image takes a ready spare when there is one; the spare then becomes
//!   the droplet for real (`droplets.rs`): its container is renamed to the droplet's, and in
//!   the same `docker exec` that writes its authorized keys it learns its id and name (written
//!   to `/etc/infra-droplet`, applied by `droplet-init identify`: hostname, `/etc/hosts`, and
//!   new host keys for the new id, the init's own logic). Every later boot of the container
//!   applies that file again, since Docker gives the container back the spare's hostname. A
//!   create from a snapshot, or with no spare ready, boots a container on demand.
//! - Spares are no droplets: never listed, counted or limited by the API, never under a
//!   firewall. Each holds an address of the sandbox network, which the allocators of droplet
//!   and reserved addresses skip ([`crate::sandbox::server::Sandbox::held_addresses`]); the
//!   droplet made from a spare keeps its address.
//! - They carry the sandbox's label, so `infra sandbox down` removes them. They survive a
//!   restart of the server: the new server adopts every running spare of the current image
//!   whose address no droplet has taken ([`recover`]), removes the others, and tops the pool
//!   up. `GET /sandbox/spares` (outside the DigitalOcean API) tells how full the pool is.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand_core::{OsRng, RngCore};
use serde::Serialize;
use tokio::sync::Notify;

use crate::sandbox::backend::{self, Docker, DropletRun};
use crate::sandbox::droplets;
use crate::sandbox::server::{Sandbox, BOOT_TIMEOUT};
use crate::sandbox::store::State;

/// How many spares `infra sandbox up` keeps without `--spares`.
pub const DEFAULT_SPARES: usize = 5;
/// The most `--spares` accepts: each holds an address and about 35 MiB.
pub const MAX_SPARES: usize = 20;

/// A booted container waiting to become a droplet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spare {
    /// Its container's name: `infra-sbx-<sandbox id>-spare-<hex>`.
    pub container: String,
    /// `spare-<hex>`: its hostname and `INFRA_DROPLET_ID` until it becomes a droplet.
    pub identity: String,
    pub ip: Ipv4Addr,
}

/// How full the pool is (`GET /sandbox/spares`, `infra sandbox status`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct PoolStatus {
    pub target: usize,
    pub ready: usize,
    pub booting: usize,
}

#[derive(Debug, Default)]
struct Pool {
    ready: Vec<Spare>,
    /// Addresses of spares being booted.
    booting: Vec<Ipv4Addr>,
}

/// The pool, shared by the create route (which takes) and the refill task (which boots).
#[derive(Debug, Default)]
pub struct Spares {
    target: usize,
    pool: std::sync::Mutex<Pool>,
    wake: Notify,
    /// When a spare was last taken: refills wait for a quiet moment, so that booting the next
    /// spare does not compete with a burst of creates for Docker and the CPU.
    last_take: std::sync::Mutex<Option<Instant>>,
}

/// How long after the last take the pool starts refilling.
const QUIET: Duration = Duration::from_secs(2);

impl Spares {
    pub fn new(target: usize, ready: Vec<Spare>) -> Spares {
        Spares {
            target,
            pool: std::sync::Mutex::new(Pool {
                ready,
                booting: Vec::new(),
            }),
            wake: Notify::new(),
            last_take: std::sync::Mutex::new(None),
        }
    }

    fn pool(&self) -> std::sync::MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The oldest ready spare, if any; the refill task then boots another.
    pub fn take(&self) -> Option<Spare> {
        let mut pool = self.pool();
        if pool.ready.is_empty() {
            return None;
        }
        let spare = pool.ready.remove(0);
        drop(pool);
        *self.last_take.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        self.wake.notify_one();
        Some(spare)
    }

    /// The addresses spares hold, ready or booting.
    pub fn addresses(&self) -> Vec<Ipv4Addr> {
        let pool = self.pool();
        pool.ready
            .iter()
            .map(|s| s.ip)
            .chain(pool.booting.iter().copied())
            .collect()
    }

    pub fn status(&self) -> PoolStatus {
        let pool = self.pool();
        PoolStatus {
            target: self.target,
            ready: pool.ready.len(),
            booting: pool.booting.len(),
        }
    }
}

fn random_hex() -> String {
    format!("{:08x}", OsRng.next_u32())
}

/// `infra-sbx-<sandbox id>-spare-`: what every spare's container name starts with.
pub fn name_prefix(sandbox_id: &str) -> String {
    format!("infra-sbx-{sandbox_id}-spare-")
}

/// The spares a previous server left: the running ones of `image`, on the sandbox network,
/// at an address no droplet or reserved IP has, are ready again; the others are removed.
pub async fn recover(docker: &Docker, state: &State, image: &str, keep: usize) -> Vec<Spare> {
    let prefix = name_prefix(&state.sandbox_id);
    let Some(network) = state.network.as_ref() else {
        return Vec::new();
    };
    let names = match docker.containers_named(&prefix).await {
        Ok(names) => names,
        Err(e) => {
            tracing::warn!("cannot list the spares of a previous server: {e}");
            return Vec::new();
        }
    };
    let used = state.addresses_in_use();
    let format = format!(
        "{{{{.State.Running}}}} {{{{.Config.Image}}}} {{{{with index .NetworkSettings.Networks \"{}\"}}}}{{{{.IPAddress}}}}{{{{end}}}}",
        network.name
    );
    let mut ready: Vec<Spare> = Vec::new();
    for name in names.into_iter().filter(|n| n.starts_with(&prefix)) {
        let inspected = docker.inspect(&name, &format).await.unwrap_or_default();
        let mut fields = inspected.split_whitespace();
        let running = fields.next() == Some("true");
        let same_image = fields.next() == Some(image);
        let ip = fields.next().and_then(|ip| ip.parse::<Ipv4Addr>().ok());
        let identity = name.strip_prefix(&prefix).map(|hex| format!("spare-{hex}"));
        match (running && same_image, ip, identity) {
            (true, Some(ip), Some(identity))
                if !used.contains(&ip)
                    && ready.len() < keep
                    && !ready.iter().any(|s| s.ip == ip) =>
            {
                ready.push(Spare {
                    container: name,
                    identity,
                    ip,
                });
            }
            _ => {
                if let Err(e) = docker.remove_container(&name).await {
                    tracing::warn!("cannot remove the stale spare {name}: {e}");
                }
            }
        }
    }
    if !ready.is_empty() {
        tracing::info!("kept {} spare(s) from the previous server", ready.len());
    }
    ready
}

/// Keeps the pool full, one boot at a time, for as long as the server runs.
pub async fn keep_full(sandbox: Arc<Sandbox>) {
    let spares = &sandbox.spares;
    loop {
        let status = spares.status();
        if status.ready + status.booting >= status.target {
            spares.wake.notified().await;
            continue;
        }
        // Let a burst of creates finish before competing with it.
        loop {
            let last = *spares.last_take.lock().unwrap_or_else(|p| p.into_inner());
            match last.map(|t| t.elapsed()) {
                Some(since) if since < QUIET => tokio::time::sleep(QUIET - since).await,
                _ => break,
            }
        }
        let started = Instant::now();
        match boot(&sandbox).await {
            Ok(spare) => tracing::info!(
                "spare {} ready in {} ms",
                spare.container,
                started.elapsed().as_millis()
            ),
            Err(e) => {
                tracing::warn!("cannot boot a spare droplet: {e}");
                // Docker is unwell or the network is full: try again later, or after a take.
                let _ = tokio::time::timeout(Duration::from_secs(10), spares.wake.notified()).await;
            }
        }
    }
}

/// Boots one spare and adds it to the pool once it is ready.
async fn boot(sandbox: &Sandbox) -> Result<Spare, String> {
    let hex = random_hex();
    let (spare, network, sandbox_id) = {
        let state = sandbox.state.lock().await;
        let network = state.network.clone().ok_or("the sandbox network is gone")?;
        // Under the state lock, like a create's allocation, and held before it is released.
        let ip = droplets::allocate_address(sandbox, &state, &network)
            .ok_or("the sandbox network has no free address left")?;
        sandbox.spares.pool().booting.push(ip);
        let spare = Spare {
            container: format!("{}{hex}", name_prefix(&state.sandbox_id)),
            identity: format!("spare-{hex}"),
            ip,
        };
        (spare, network, state.sandbox_id.clone())
    };
    let outcome = start(sandbox, &spare, &network.name, &sandbox_id).await;
    if outcome.is_err() {
        let _ = sandbox.docker.remove_container(&spare.container).await;
    }
    let mut pool = sandbox.spares.pool();
    if let Some(at) = pool.booting.iter().position(|ip| *ip == spare.ip) {
        pool.booting.remove(at);
    }
    outcome?;
    pool.ready.push(spare.clone());
    Ok(spare)
}

async fn start(
    sandbox: &Sandbox,
    spare: &Spare,
    network: &str,
    sandbox_id: &str,
) -> Result<(), String> {
    let docker = &sandbox.docker;
    docker
        .run_droplet(&DropletRun {
            container: &spare.container,
            hostname: &spare.identity,
            identity: &spare.identity,
            sandbox_id,
            network,
            ip: spare.ip,
            image: &sandbox.image,
        })
        .await
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    // Ready when sshd answers and the RSA host key, made in the background, is there: a take
    // then replaces every host key, with nothing of the spare's left to land afterwards.
    loop {
        if backend::ssh_answers(spare.ip).await
            && docker
                .exec(&spare.container, "test -s /etc/ssh/ssh_host_rsa_key", None)
                .await
                .is_ok()
        {
            return Ok(());
        }
        if started.elapsed() > BOOT_TIMEOUT {
            return Err(format!(
                "spare {} was not ready within {} s",
                spare.container,
                BOOT_TIMEOUT.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The shell lines that make a spare the droplet `id` named `name` (see `droplet_init.sh`).
pub fn identify_script(spare_identity: &str, id: u64, name: &str) -> String {
    format!(
        "printf '%s %s %s\\n' '{spare_identity}' '{id}' '{name}' >/etc/infra-droplet \
         && /sbin/droplet-init identify || exit 1\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spare(n: u8) -> Spare {
        Spare {
            container: format!("infra-sbx-ab-spare-{n}"),
            identity: format!("spare-{n}"),
            ip: Ipv4Addr::new(10, 0, 0, n),
        }
    }

    #[test]
    fn takes_the_oldest_spare_and_holds_every_address() {
        let spares = Spares::new(3, vec![spare(10), spare(11)]);
        spares.pool().booting.push(Ipv4Addr::new(10, 0, 0, 12));
        assert_eq!(
            spares.addresses(),
            [10, 11, 12].map(|n| Ipv4Addr::new(10, 0, 0, n))
        );
        assert_eq!(
            spares.status(),
            PoolStatus {
                target: 3,
                ready: 2,
                booting: 1
            }
        );
        assert_eq!(spares.take(), Some(spare(10)));
        assert_eq!(spares.take(), Some(spare(11)));
        assert_eq!(spares.take(), None);
        assert_eq!(spares.addresses(), [Ipv4Addr::new(10, 0, 0, 12)]);
    }

    #[test]
    fn the_identity_line_is_what_the_init_reads() {
        assert_eq!(
            identify_script("spare-0a0b0c0d", 4100007, "web-1.example"),
            "printf '%s %s %s\\n' 'spare-0a0b0c0d' '4100007' 'web-1.example' >/etc/infra-droplet \
             && /sbin/droplet-init identify || exit 1\n"
        );
    }
}
