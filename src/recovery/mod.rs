//! Recovery of a failed droplet: the steps of the graduated response, each a core function
//! that is fenced, checkpointed and safe to run again.
//!
//! - [`Recovery::inspect`] / [`Recovery::check`]: what the cloud and the droplet say (status,
//!   lock, SSH, each service); `check` also power-cycles an unanswering droplet, once per
//!   incident.
//! - [`Recovery::drain`] / [`Recovery::restore`]: nginx stops / starts routing to it (the
//!   drain is recorded in the state, so every later render keeps it out until the restore).
//! - [`Recovery::fence`]: powered off and confirmed off before anything replaces it: a zombie
//!   never comes back serving traffic under the same name.
//! - [`Recovery::recreate`]: a replacement from its newest snapshot (or the base image), found
//!   again by the incident's tag before one is made, extras and the fenced original destroyed,
//!   the new id and address recorded in the state.
//! - [`Recovery::start_services`]: the droplet's containers running and healthy (started, or
//!   deployed again from the master's registry through `crate::deploy`).
//!
//! Each step asks the [`Fence`] first and refuses under a stale epoch; what it did goes into
//! the checkpoint ([`checkpoint`]) at once, and a re-run skips every step recorded there.
//! Knows nothing of Rhai: `playbooks/recovery.rhai` strings the steps together.

pub mod checkpoint;
mod drain;
pub mod fence;
mod inspect;
mod rebuild;
mod records;
mod services;
#[cfg(test)]
mod tests;

pub use checkpoint::{Checkpoint, ImageChoice, Incident, Placed};
pub use drain::Drained;
pub use fence::{DryRunFence, Fence, FenceRefused, LocalFence};
pub use inspect::{Health, ServiceHealth};
pub use rebuild::Recreated;
pub use records::StoreRecords;
pub use services::Started;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::config::Loaded;
use crate::deploy::DeployError;
use crate::fleet::{Fleet, FleetError};
use crate::project::Project;
use crate::remote::Pool;
use crate::report::Reporter;
use crate::state::{DropletRecord, State, StateError};

#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error("{0}")]
    Fence(#[from] FenceRefused),
    #[error("{0}")]
    Input(String),
    #[error("{0}")]
    Checkpoint(#[from] checkpoint::CheckpointError),
    #[error("{0}")]
    State(String),
    #[error("recovering `{droplet}`: {message}")]
    Failed { droplet: String, message: String },
    #[error("recovering `{droplet}`: {source}")]
    Fleet {
        droplet: String,
        source: Box<FleetError>,
    },
    #[error("recovering `{droplet}`: {source}")]
    Deploy {
        droplet: String,
        source: Box<DeployError>,
    },
}

impl RecoveryError {
    /// Whether the fault is in what the user gave (exit 2) rather than in the run (exit 1).
    pub fn is_input(&self) -> bool {
        matches!(self, RecoveryError::Input(_))
            || matches!(self, RecoveryError::Deploy { source, .. } if source.is_input())
    }

    pub fn is_cancelled(&self) -> bool {
        matches!(self, RecoveryError::Fleet { source, .. } if matches!(**source, FleetError::Cancelled))
    }
}

/// How recovery reads the configs and records what it did in the state: the host's state
/// store for `infra recover`, the monitor's own for the daemon.
pub trait Records: Send + Sync {
    /// Every config file, read against the current state.
    fn loaded(&self) -> Result<Loaded, RecoveryError>;
    /// Applies `edit` to the state and saves it (under the state lock; not in a dry run).
    fn update(
        &self,
        edit: &mut dyn FnMut(&mut State) -> Result<(), StateError>,
    ) -> Result<(), RecoveryError>;
}

/// Everything a recovery needs, for [`Recovery::new`].
pub struct Parts {
    pub project: Project,
    pub records: Arc<dyn Records>,
    pub fleet: Arc<Fleet>,
    pub pool: Arc<Pool>,
    pub reporter: Reporter,
    pub dry_run: bool,
    /// The command line, as locks name their holder.
    pub command: String,
    /// How long to wait for a deploy of the same project-environment to finish.
    pub lock_timeout: Duration,
    pub fence: Arc<dyn Fence>,
}

/// The recovery steps for one project's fleet.
pub struct Recovery {
    project: Project,
    records: Arc<dyn Records>,
    fleet: Arc<Fleet>,
    pool: Arc<Pool>,
    reporter: Reporter,
    dry_run: bool,
    command: String,
    lock_timeout: Duration,
    fence: Arc<dyn Fence>,
}

impl Recovery {
    pub fn new(parts: Parts) -> Recovery {
        Recovery {
            project: parts.project,
            records: parts.records,
            fleet: parts.fleet,
            pool: parts.pool,
            reporter: parts.reporter,
            dry_run: parts.dry_run,
            command: parts.command,
            lock_timeout: parts.lock_timeout,
            fence: parts.fence,
        }
    }

    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    fn checkpoint_path(&self, droplet: &str) -> PathBuf {
        checkpoint::checkpoint_path(&self.project, droplet)
    }

    /// The droplet's checkpoint as the last run left it.
    pub fn checkpoint(&self, droplet: &str) -> Result<Checkpoint, RecoveryError> {
        Ok(Checkpoint::load(&self.checkpoint_path(droplet), droplet)?)
    }

    /// Writes the checkpoint (never in a dry run, which changes nothing).
    fn save(&self, ck: &Checkpoint) -> Result<(), RecoveryError> {
        if self.dry_run {
            return Ok(());
        }
        ck.save(&self.checkpoint_path(&ck.droplet))?;
        Ok(())
    }

    /// Asks the fence before a side effect: its epoch, refused when another recovery has
    /// acted under a higher one (as the checkpoint on disk says), recorded in `ck`.
    fn permit(&self, ck: &mut Checkpoint) -> Result<u64, RecoveryError> {
        let epoch = self.fence.permits()?;
        if self.dry_run {
            return Ok(epoch);
        }
        let seen = self.checkpoint(&ck.droplet)?.epoch.max(ck.epoch);
        if seen > epoch {
            return Err(fence::stale(&ck.droplet, epoch, seen).into());
        }
        ck.epoch = epoch;
        Ok(epoch)
    }

    /// Records `step` done with `result` and saves the checkpoint.
    fn finish_step(
        &self,
        ck: &mut Checkpoint,
        step: &str,
        epoch: u64,
        result: Value,
    ) -> Result<(), RecoveryError> {
        ck.record(step, epoch, result);
        self.save(ck)
    }

    /// Tells that `step` was done by an earlier run (it is not done again).
    fn already(&self, droplet: &str, step: &str, incident: &Incident) {
        let at = incident
            .done(step)
            .map(|s| s.at.as_str())
            .unwrap_or_default();
        self.reporter.progress(
            "recovery_step_done",
            droplet,
            &format!(
                "{step}: done already at {at} (incident {}); not repeated",
                incident.id
            ),
            json!({"step": step, "incident": incident.id, "at": at}),
        );
    }

    fn loaded(&self) -> Result<Loaded, RecoveryError> {
        self.records.loaded()
    }

    /// The state's record of `droplet`.
    fn record(&self, loaded: &Loaded, droplet: &str) -> Result<DropletRecord, RecoveryError> {
        loaded
            .runtime
            .droplets
            .get(droplet)
            .cloned()
            .ok_or_else(|| {
                let known: Vec<&str> = loaded.runtime.droplets.keys().map(String::as_str).collect();
                RecoveryError::Input(format!(
                "droplet `{droplet}` is not in the state ({}); `infra status` lists the droplets",
                if known.is_empty() {
                    "it has none yet".to_string()
                } else {
                    format!("it has {}", known.join(", "))
                }
            ))
            })
    }

    fn update(
        &self,
        mut edit: impl FnMut(&mut State) -> Result<(), StateError>,
    ) -> Result<(), RecoveryError> {
        self.records.update(&mut edit)
    }

    fn fleet_error(droplet: &str) -> impl FnOnce(FleetError) -> RecoveryError + '_ {
        move |source| RecoveryError::Fleet {
            droplet: droplet.to_string(),
            source: Box::new(source),
        }
    }

    fn deploy_error(droplet: &str) -> impl FnOnce(DeployError) -> RecoveryError + '_ {
        move |source| RecoveryError::Deploy {
            droplet: droplet.to_string(),
            source: Box::new(source),
        }
    }
}

/// The droplet as the state records it, for the incident to remember.
fn placed(record: &DropletRecord) -> Option<Placed> {
    Some(Placed {
        id: record.id?,
        ip: record.ip.clone().unwrap_or_default(),
    })
}
