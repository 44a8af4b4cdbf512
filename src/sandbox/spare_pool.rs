//! The pool of spare droplets (see `spares.rs` for what spares are and the work that boots,
//! hands over and recovers them): the booted spares ready to be taken, those booting, and where
//! their directories are. Plain data behind a lock, held by the shared `Sandbox`
//! handle, so the handle needs nothing of the background work.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Notify;

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
pub(super) struct Pool {
    pub(super) ready: Vec<Spare>,
    /// Addresses of spares being booted.
    pub(super) booting: Vec<Ipv4Addr>,
}

/// The pool, shared by the create route (which takes) and the refill task (which boots).
#[derive(Debug, Default)]
pub struct Spares {
    pub(super) target: usize,
    pool: std::sync::Mutex<Pool>,
    pub(super) wake: Notify,
    /// When a spare was last taken: refills wait for a quiet moment, so that booting the next
    /// spare does not compete with a burst of creates for Docker and the CPU.
    pub(super) last_take: std::sync::Mutex<Option<Instant>>,
}

/// How long after the last take the pool starts refilling.
pub(super) const QUIET: Duration = Duration::from_secs(2);

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

    pub(super) fn pool(&self) -> std::sync::MutexGuard<'_, Pool> {
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

/// Where the spares' directories are: `spares/` beside the state file `state_file`, absolute
/// (as `docker run --volume` needs).
pub fn root(state_file: &Path) -> PathBuf {
    let dir = state_file.parent().unwrap_or(Path::new(".")).join("spares");
    std::path::absolute(&dir).unwrap_or(dir)
}

/// The directory of the spare `identity` (and later of the droplet made from it).
pub fn dir(root: &Path, identity: &str) -> PathBuf {
    root.join(identity)
}

/// Removes the directory of a spare, or of a droplet made from one, once its container is gone.
pub fn remove_dir(root: &Path, identity: &str) {
    let dir = dir(root, identity);
    if let Err(e) = std::fs::remove_dir_all(&dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!("cannot remove {}: {e}", dir.display());
        }
    }
}
