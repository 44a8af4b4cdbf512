//! The services a run's natives share: the state store, the fleet (the cloud), the reporter
//! and the last refresh. One struct, so deploy and monitor add their services (an SSH pool, a
//! registry tunnel) as fields of the same kind instead of another lock per service.

use std::sync::{Arc, Mutex};

use crate::audit::AuditLog;
use crate::fleet::Refresh;
use crate::project::Project;
use crate::report::Reporter;
use crate::state::store::StateStore;

use super::RunOptions;

/// A service made on first use and shared after: cheap to ask for again.
pub struct Lazy<T>(Mutex<Option<Arc<T>>>);

impl<T> Default for Lazy<T> {
    fn default() -> Self {
        Lazy(Mutex::new(None))
    }
}

impl<T> Lazy<T> {
    /// The service, made by `make` the first time.
    pub fn get_or_try_init<E>(&self, make: impl FnOnce() -> Result<T, E>) -> Result<Arc<T>, E> {
        let mut slot = self.0.lock().expect("service slot");
        if let Some(made) = slot.as_ref() {
            return Ok(made.clone());
        }
        let made = Arc::new(make()?);
        *slot = Some(made.clone());
        Ok(made)
    }

    /// The service if it was made.
    pub fn get(&self) -> Option<Arc<T>> {
        self.0.lock().expect("service slot").clone()
    }

    /// Forgets the service, so the next use makes it afresh.
    pub fn reset(&self) {
        self.0.lock().expect("service slot").take();
    }
}

pub struct Services {
    /// Opened on first use, dropped (and its lock let go) at the end of every run.
    pub(super) store: Mutex<Option<StateStore>>,
    pub fleet: Lazy<crate::fleet::Fleet>,
    /// SSH connections to the droplets, one per host, kept for the whole run.
    pub ssh: Lazy<crate::remote::Pool>,
    pub reporter: Reporter,
    /// What the last `refresh()` of this run found, for the `plan()` after it.
    refresh: Mutex<Option<Refresh>>,
    /// The deploy locks this run holds, by project-environment, until it ends.
    deploy_locks: Mutex<std::collections::HashMap<String, crate::state::lock::StateLock>>,
    /// The fence each droplet's recovery steps run under, by droplet, until the run ends: a
    /// `LocalFence` taken on first use, or one the monitor put here before the run.
    pub recovery_fences: Mutex<std::collections::HashMap<String, Arc<dyn crate::recovery::Fence>>>,
}

impl Services {
    pub fn new(project: &Project, options: &RunOptions) -> Services {
        let audit = project.infra_dir().join("audit.log");
        Services {
            store: Mutex::new(None),
            fleet: Lazy::default(),
            ssh: Lazy::default(),
            reporter: Reporter::new(
                AuditLog {
                    display: project.display(&audit),
                    path: audit,
                    command: options.command.clone(),
                },
                options.json,
                options.dry_run,
            ),
            refresh: Mutex::new(None),
            deploy_locks: Mutex::default(),
            recovery_fences: Mutex::default(),
        }
    }

    /// Takes `project_env`'s deploy lock with `take` unless this run holds it already.
    pub fn hold_deploy_lock<E>(
        &self,
        project_env: &str,
        take: impl FnOnce() -> Result<crate::state::lock::StateLock, E>,
    ) -> Result<(), E> {
        let mut held = self.deploy_locks.lock().expect("deploy locks");
        if !held.contains_key(project_env) {
            held.insert(project_env.to_string(), take()?);
        }
        Ok(())
    }

    pub fn set_refresh(&self, refresh: Refresh) {
        *self.refresh.lock().expect("refresh") = Some(refresh);
    }

    pub fn refresh(&self) -> Option<Refresh> {
        self.refresh.lock().expect("refresh").clone()
    }

    /// Between runs (`watch`, `run --watch`): the next run reads the cloud's endpoint and the
    /// cloud itself afresh.
    pub(super) fn reset_run(&self) {
        self.refresh.lock().expect("refresh").take();
        self.deploy_locks.lock().expect("deploy locks").clear();
        self.recovery_fences
            .lock()
            .expect("recovery fences")
            .clear();
        self.fleet.reset();
        self.ssh.reset();
    }
}
