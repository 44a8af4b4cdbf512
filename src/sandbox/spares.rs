//! Spare droplets: containers of the base image the server boots before anyone asks for them,
//! so that a create answers in the time it takes to hand one over rather than the time Docker
//! takes to start containers (which this machine's daemon does one at a time).
//!
//! - The server keeps `--spares N` of them booted (`infra sandbox up --spares N`, default
//!   [`DEFAULT_SPARES`], 0 turns them off; recorded in `server.json`). A spare is ready once its
//!   sshd answers and its host keys are all made; after each take, a background task boots the
//!   next one, one at a time, and no request ever waits for it.
//! - Each spare has a directory of the sandbox's, `spares/<spare identity>` beside the state
//!   file, bind-mounted at [`backend::SPARE_MOUNT`] and watched by its init
//!   (`droplet_init.sh`), which says `ready` there once its host keys are made.
//! - A create from a base image takes a ready spare when there is one; the spare then becomes
//!   the droplet for real (`droplets.rs`) with no call to Docker at all ([`hand_over`]): the
//!   server writes into the spare's directory the script a `docker exec` would have run (its
//!   id and name written to `/etc/infra-droplet` and applied by `droplet-init identify`:
//!   hostname, `/etc/hosts`; exactly the droplet's authorized keys, its reserved IPs and its
//!   firewall rules), the spare's init runs it and answers. This machine's Docker Engine runs
//!   `docker exec`s and renames one at a time, so five creates at once used to wait for each
//!   other there. A spare that does not take the script within [`CLAIM_TIMEOUT`] has it
//!   withdrawn and is handed over by `docker exec` instead; one that takes it and does not
//!   answer is removed, and the droplet boots on demand. The droplet keeps the spare's
//!   container name (its record says which container is its) and the spare's host keys (made
//!   at the spare's own boot, seen by nobody). Every later boot of the container applies
//!   `/etc/infra-droplet` again, since Docker gives the container back the spare's hostname. A
//!   create from a snapshot, or with no spare ready, boots a container on demand.
//! - Spares are no droplets: never listed, counted or limited by the API, never under a
//!   firewall. Each holds an address of the sandbox network, which the allocators of droplet
//!   and reserved addresses skip ([`crate::sandbox::shared::Sandbox::held_addresses`]); the
//!   droplet made from a spare keeps its address.
//! - They carry the sandbox's label, so `infra sandbox down` removes them. They survive a
//!   restart of the server: the new server adopts every running spare of the current image
//!   whose address no droplet has taken ([`recover`]), removes the others, and tops the pool
//!   up. `GET /sandbox/spares` (outside the DigitalOcean API) tells how full the pool is.

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand_core::{OsRng, RngCore};

use crate::sandbox::backend::{self, Docker, DropletRun};
use crate::sandbox::shared::{Sandbox, BOOT_TIMEOUT};
use crate::sandbox::spare_pool::QUIET;
pub use crate::sandbox::spare_pool::{
    dir, remove_dir, root, PoolStatus, Spare, Spares, DEFAULT_SPARES, MAX_SPARES,
};
use crate::sandbox::store::State;

/// How long a spare may take to claim the hand-over script (its init looks every 20 ms).
pub const CLAIM_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a spare may take to run it once claimed.
const RUN_TIMEOUT: Duration = Duration::from_secs(15);

/// Hands the spare whose directory is `dir` over: `script` to run as a `docker exec` would
/// (`keys` on its stdin), by the spare's own init (see `droplet_init.sh`). `Ok(true)` once the
/// script succeeded; `Ok(false)` if the spare did not claim it in time (it is withdrawn, so it
/// never runs: the caller hands the spare over another way); an error if the spare claimed it
/// and failed or did not answer.
pub async fn hand_over(dir: &Path, script: &str, keys: &str) -> Result<bool, String> {
    let path = |name: &str| dir.join(name);
    let written = (|| {
        for stale in ["ack", "ack.new", "take.run", "take.withdrawn"] {
            let _ = std::fs::remove_file(path(stale));
        }
        std::fs::write(path("take.keys"), keys)?;
        std::fs::write(path("take.sh.new"), script)?;
        // The script appears whole or not at all: the init claims it by this name.
        std::fs::rename(path("take.sh.new"), path("take.sh"))
    })();
    written.map_err(|e| {
        format!(
            "cannot write to the spare's directory {}: {e}",
            dir.display()
        )
    })?;
    let withdraw = || std::fs::rename(path("take.sh"), path("take.withdrawn")).is_ok();
    let started = Instant::now();
    let mut claimed = false;
    loop {
        if let Ok(status) = std::fs::read_to_string(path("ack")) {
            return match status.trim() {
                "0" => Ok(true),
                status => Err(format!(
                    "the spare's hand-over script failed (exit status {status}): {}",
                    std::fs::read_to_string(path("take.log"))
                        .unwrap_or_default()
                        .trim()
                )),
            };
        }
        if !claimed && started.elapsed() > CLAIM_TIMEOUT {
            // Withdrawn under the name the init claims it by: it can no longer run.
            if withdraw() {
                return Ok(false);
            }
            claimed = true;
        }
        if started.elapsed() > CLAIM_TIMEOUT + RUN_TIMEOUT {
            return Err(format!(
                "the spare did not finish its hand-over script within {} s",
                (CLAIM_TIMEOUT + RUN_TIMEOUT).as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `infra-sbx-<sandbox id>-spare-`: what every spare's container name starts with (and every
/// droplet's made from a spare).
pub fn name_prefix(sandbox_id: &str) -> String {
    format!("infra-sbx-{sandbox_id}-spare-")
}

/// The spares a previous server left: the running ones of `image`, on the sandbox network,
/// at an address no droplet or reserved IP has, with their directory under `root` and ready,
/// are ready again; the others are removed, and so are directories under `root` that are
/// neither a ready spare's nor a droplet's.
pub async fn recover(
    docker: &Docker,
    state: &State,
    image: &str,
    keep: usize,
    root: &Path,
) -> Vec<Spare> {
    let ready = recover_containers(docker, state, image, keep, root).await;
    if let Ok(entries) = std::fs::read_dir(root) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let kept = ready.iter().any(|s| s.identity == name)
                || state
                    .droplets
                    .iter()
                    .any(|d| d.spare.as_deref() == Some(&name));
            if !kept {
                remove_dir(root, &name);
            }
        }
    }
    ready
}

async fn recover_containers(
    docker: &Docker,
    state: &State,
    image: &str,
    keep: usize,
    root: &Path,
) -> Vec<Spare> {
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
    // Droplets made from spares keep the spares' names.
    let candidates = names
        .into_iter()
        .filter(|n| n.starts_with(&prefix) && !state.droplets.iter().any(|d| &d.container == n));
    for name in candidates {
        let inspected = docker.inspect(&name, &format).await.unwrap_or_default();
        let mut fields = inspected.split_whitespace();
        let running = fields.next() == Some("true");
        let same_image = fields.next() == Some(image);
        let ip = fields.next().and_then(|ip| ip.parse::<Ipv4Addr>().ok());
        let identity = name
            .strip_prefix(&prefix)
            .map(|hex| format!("spare-{hex}"))
            .filter(|identity| dir(root, identity).join("ready").exists());
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
        let ip = sandbox
            .allocate_address(&state, &network)
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
        remove_dir(&sandbox.spares_root(), &spare.identity);
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
    let dir = dir(&sandbox.spares_root(), &spare.identity);
    // A directory of the same name (a spare of the same random name gone wrong) goes first.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
    sandbox
        .docker
        .run_droplet(&DropletRun {
            container: &spare.container,
            hostname: &spare.identity,
            identity: &spare.identity,
            sandbox_id,
            network,
            ip: spare.ip,
            image: &sandbox.image,
            spare_dir: Some(&dir),
            limits: None,
        })
        .await
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    // Ready when sshd answers and its init says so (the RSA host key, made in the background,
    // is there, and the init watches its directory): the droplet made from it then keeps every
    // host key, with nothing left to land afterwards.
    loop {
        if dir.join("ready").exists() && backend::ssh_answers(spare.ip).await {
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

fn random_hex() -> String {
    format!("{:08x}", OsRng.next_u32())
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

    /// A spare's watcher (`droplet_init.sh`) in miniature: looks for the script, claims it,
    /// answers `status`.
    fn watcher(
        dir: std::path::PathBuf,
        status: &'static str,
    ) -> std::thread::JoinHandle<(String, String)> {
        std::thread::spawn(move || loop {
            if std::fs::rename(dir.join("take.sh"), dir.join("take.run")).is_ok() {
                let keys = std::fs::read_to_string(dir.join("take.keys")).unwrap();
                let script = std::fs::read_to_string(dir.join("take.run")).unwrap();
                std::fs::write(dir.join("take.log"), "iptables: no\n").unwrap();
                std::fs::write(dir.join("ack.new"), status).unwrap();
                std::fs::rename(dir.join("ack.new"), dir.join("ack")).unwrap();
                return (script, keys);
            }
            std::thread::sleep(Duration::from_millis(20));
        })
    }

    #[tokio::test]
    async fn a_hand_over_waits_for_the_spare_s_answer() {
        let dir = tempfile::tempdir().unwrap();
        let spare = watcher(dir.path().to_owned(), "0\n");
        assert_eq!(
            hand_over(dir.path(), "hostname web\n", "ssh-ed25519 AAAA me\n").await,
            Ok(true)
        );
        assert_eq!(
            spare.join().unwrap(),
            ("hostname web\n".into(), "ssh-ed25519 AAAA me\n".into())
        );

        // Again, as after a failed attempt: a failing script is an error, with what it said,
        // and the earlier answer is not taken for it.
        let spare = watcher(dir.path().to_owned(), "1\n");
        let failed = hand_over(dir.path(), "false\n", "").await.unwrap_err();
        assert!(
            failed.contains("exit status 1") && failed.contains("iptables: no"),
            "{failed}"
        );
        spare.join().unwrap();
    }

    #[tokio::test]
    async fn a_spare_that_never_claims_the_script_has_it_withdrawn() {
        let lonely = tempfile::tempdir().unwrap();
        let started = Instant::now();
        assert_eq!(hand_over(lonely.path(), "true\n", "").await, Ok(false));
        assert!(started.elapsed() >= CLAIM_TIMEOUT);
        // A late watcher cannot run it.
        assert!(!lonely.path().join("take.sh").exists());
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
