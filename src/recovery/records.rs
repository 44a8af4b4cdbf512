//! [`StoreRecords`]: recovery's [`Records`] over a state store of its own, for a process that
//! runs recovery outside a playbook host (the monitor daemon, tests).

use std::sync::Mutex;

use super::{Records, RecoveryError};
use crate::config::{self, Loaded};
use crate::project::Project;
use crate::state::store::StateStore;
use crate::state::{State, StateError};

pub struct StoreRecords {
    project: Project,
    store: Mutex<StateStore>,
}

impl StoreRecords {
    pub fn new(project: Project, store: StateStore) -> StoreRecords {
        StoreRecords {
            project,
            store: Mutex::new(store),
        }
    }
}

impl Records for StoreRecords {
    fn loaded(&self) -> Result<Loaded, RecoveryError> {
        let state = self.store.lock().expect("state store").shared();
        config::load(&self.project, state).map_err(|e| {
            RecoveryError::Input(
                e.0.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n"),
            )
        })
    }

    fn update(
        &self,
        edit: &mut dyn FnMut(&mut State) -> Result<(), StateError>,
    ) -> Result<(), RecoveryError> {
        self.store
            .lock()
            .expect("state store")
            .update(|s| edit(s))
            .map_err(|e| RecoveryError::State(e.to_string()))
    }
}
