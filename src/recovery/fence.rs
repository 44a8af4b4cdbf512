//! Fencing: who may act on a droplet's recovery right now. Every side effect of a recovery
//! first asks its [`Fence`]; the answer is an epoch, recorded in the checkpoint, and a fence
//! whose epoch is below the highest the checkpoint has seen is refused (a coordinator that
//! lost its lease must not finish a step its successor already redid).
//!
//! [`LocalFence`] is the fence of a recovery run by hand (`infra recover`): an exclusive lock
//! file per droplet, so a second `infra recover` of the same droplet stops naming the first,
//! and an epoch one above the checkpoint's. The monitors' coordinator brings its own fence
//! (epochs promised by a majority).

use std::path::PathBuf;
use std::time::Duration;

use super::checkpoint::{checkpoint_path, recovery_dir, Checkpoint};
use crate::project::Project;
use crate::state::lock::{LockError, StateLock};

/// A fence said no: nothing was done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct FenceRefused {
    pub reason: String,
}

impl FenceRefused {
    pub fn new(reason: impl Into<String>) -> FenceRefused {
        FenceRefused {
            reason: reason.into(),
        }
    }
}

/// Whether this recovery may act now, and under which epoch.
pub trait Fence: Send + Sync {
    /// The epoch to act under, or why not.
    fn permits(&self) -> Result<u64, FenceRefused>;
}

/// The fence of a recovery run by hand: holds `config/.infra/recovery/<droplet>.lock` for as
/// long as it lives.
pub struct LocalFence {
    droplet: String,
    checkpoint: PathBuf,
    epoch: u64,
    _lock: StateLock,
}

impl LocalFence {
    /// Takes the droplet's recovery lock (refused, naming the holder, when another run has
    /// it) and the epoch after the highest the checkpoint has seen.
    pub fn acquire(
        project: &Project,
        droplet: &str,
        command: &str,
        timeout: Duration,
    ) -> Result<LocalFence, FenceRefused> {
        let path = recovery_dir(project).join(format!("{droplet}.lock"));
        let lock = StateLock::acquire(&path, command, timeout).map_err(|e| match e {
            LockError::Held(h) => FenceRefused::new(format!(
                "`{droplet}` is being recovered by pid {} on {} (`{}`) since {}; let it finish (its progress is in {}), or stop it and run again",
                h.pid,
                h.host,
                h.command,
                h.since,
                project.display(&checkpoint_path(project, droplet))
            )),
            other => FenceRefused::new(format!("the recovery lock of `{droplet}`: {other}")),
        })?;
        let checkpoint = checkpoint_path(project, droplet);
        let seen = Checkpoint::load(&checkpoint, droplet)
            .map_err(|e| FenceRefused::new(e.to_string()))?
            .epoch;
        Ok(LocalFence {
            droplet: droplet.to_string(),
            checkpoint,
            epoch: seen + 1,
            _lock: lock,
        })
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }
}

impl Fence for LocalFence {
    fn permits(&self) -> Result<u64, FenceRefused> {
        let seen = Checkpoint::load(&self.checkpoint, &self.droplet)
            .map_err(|e| FenceRefused::new(e.to_string()))?
            .epoch;
        if seen > self.epoch {
            return Err(stale(&self.droplet, self.epoch, seen));
        }
        Ok(self.epoch)
    }
}

/// A fence for dry runs, which change nothing: it takes no lock and permits every step.
pub struct DryRunFence;

impl Fence for DryRunFence {
    fn permits(&self) -> Result<u64, FenceRefused> {
        Ok(0)
    }
}

/// The refusal of an epoch below one already seen.
pub fn stale(droplet: &str, epoch: u64, seen: u64) -> FenceRefused {
    FenceRefused::new(format!(
        "the recovery of `{droplet}` under epoch {epoch} is stale: epoch {seen} has acted on it since, so this run stops without changing anything"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project() -> (tempfile::TempDir, Project) {
        let dir = tempfile::tempdir().unwrap();
        let project = Project::new(dir.path(), std::path::Path::new("config"));
        (dir, project)
    }

    #[test]
    fn a_second_recovery_of_the_same_droplet_is_refused_naming_the_first() {
        let (_dir, project) = project();
        let first =
            LocalFence::acquire(&project, "web1", "infra recover web1", Duration::ZERO).unwrap();
        assert_eq!(first.permits(), Ok(1));
        let refused = LocalFence::acquire(&project, "web1", "infra recover web1", Duration::ZERO)
            .err()
            .expect("refused");
        assert!(
            refused.reason.starts_with(&format!(
                "`web1` is being recovered by pid {} on ",
                std::process::id()
            )),
            "{refused}"
        );
        assert!(
            refused.reason.contains("(`infra recover web1`)"),
            "{refused}"
        );
        // Another droplet is another lock.
        LocalFence::acquire(&project, "web2", "infra recover web2", Duration::ZERO).unwrap();
        drop(first);
        LocalFence::acquire(&project, "web1", "infra recover web1", Duration::ZERO).unwrap();
    }

    #[test]
    fn an_epoch_below_the_checkpoints_is_refused() {
        let (_dir, project) = project();
        let path = checkpoint_path(&project, "web1");
        let ck = Checkpoint {
            droplet: "web1".into(),
            epoch: 4,
            ..Default::default()
        };
        ck.save(&path).unwrap();
        let fence =
            LocalFence::acquire(&project, "web1", "infra recover web1", Duration::ZERO).unwrap();
        assert_eq!(fence.epoch(), 5);
        assert_eq!(fence.permits(), Ok(5));
        // A coordinator with a newer lease acted meanwhile.
        Checkpoint { epoch: 9, ..ck }.save(&path).unwrap();
        assert_eq!(
            fence.permits().unwrap_err().reason,
            "the recovery of `web1` under epoch 5 is stale: epoch 9 has acted on it since, so this run stops without changing anything"
        );
    }
}
