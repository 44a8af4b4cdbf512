//! One deploy per project-environment at a time: an exclusive lock on
//! `config/.infra/deploy-<project>-<env>.lock` naming its holder (pid, host, command, since),
//! like the state lock. Deploys of other project-environments go on meanwhile; the nginx
//! config they share has its own short lock (src/balancer/).

use std::time::Duration;

use crate::project::Project;
use crate::state::lock::{LockError, StateLock};

use super::DeployError;

/// Takes the deploy lock of `project_env`, waiting up to `timeout`.
pub fn acquire(
    project: &Project,
    project_env: &str,
    command: &str,
    timeout: Duration,
) -> Result<StateLock, DeployError> {
    let path = project
        .infra_dir()
        .join(format!("deploy-{project_env}.lock"));
    StateLock::acquire(&path, command, timeout).map_err(|e| match e {
        LockError::Held(holder) => DeployError::Locked(format!(
            "another deploy of `{project_env}` is running: pid {} on {} (`{}`) since {}; wait for it to finish, or retry with `--lock-timeout SECONDS`",
            holder.pid, holder.host, holder.command, holder.since
        )),
        LockError::HeldUnknown(file) => DeployError::Locked(format!(
            "another deploy of `{project_env}` is running (lock file `{file}`); wait for it to finish"
        )),
        other => DeployError::Locked(other.to_string()),
    })
}
