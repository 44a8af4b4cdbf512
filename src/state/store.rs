//! Loading and saving the state file safely: edits run under the exclusive lock against the
//! latest file on disk, are validated, then written atomically. In dry-run mode edits apply to
//! the in-memory copy only, so later steps see them, and nothing is locked or written.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::lock::{LockError, StateLock};
use super::{State, StateError};
use crate::diagnostic::{InvalidInput, Problem};
use crate::document::Document;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("{0}")]
    Invalid(#[from] InvalidInput),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("cannot write `{path}`: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

impl From<Problem> for StoreError {
    fn from(p: Problem) -> Self {
        StoreError::Invalid(p.into())
    }
}

pub struct StateStore {
    path: PathBuf,
    lock_path: PathBuf,
    command: String,
    lock_timeout: Duration,
    dry_run: bool,
    state: Arc<State>,
    lock: Option<StateLock>,
    saves: usize,
    /// Problems the current state has, once known (each edit may only add none).
    known_problems: Option<Vec<String>>,
}

impl StateStore {
    /// Opens the state at `path`; `lock_path` is taken on the first edit.
    pub fn open(
        path: &Path,
        display: &str,
        lock_path: &Path,
        command: &str,
        lock_timeout: Duration,
        dry_run: bool,
    ) -> Result<StateStore, StoreError> {
        let state = Arc::new(State::load(path, display)?);
        Ok(StateStore {
            path: path.to_path_buf(),
            lock_path: lock_path.to_path_buf(),
            command: command.to_string(),
            lock_timeout,
            dry_run,
            state,
            lock: None,
            saves: 0,
            known_problems: None,
        })
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// The current state, shared without copying.
    pub fn shared(&self) -> Arc<State> {
        self.state.clone()
    }

    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    /// How many times the file was written.
    pub fn saves(&self) -> usize {
        self.saves
    }

    /// Takes the lock for the rest of this run and re-reads the file if it changed meanwhile.
    pub fn lock(&mut self) -> Result<(), StoreError> {
        if self.dry_run || self.lock.is_some() {
            return Ok(());
        }
        let lock = StateLock::acquire(&self.lock_path, &self.command, self.lock_timeout)?;
        if let Some(stale) = &lock.stale {
            tracing::warn!(
                "took over a stale lock left by pid {} (`{}`, since {})",
                stale.pid,
                stale.command,
                stale.since
            );
        }
        self.lock = Some(lock);
        let on_disk = std::fs::read_to_string(&self.path).ok();
        if on_disk.as_deref() != self.state.document().original() {
            let display = self.state.display().to_string();
            self.state = Arc::new(State::load(&self.path, &display)?);
            self.known_problems = None;
        }
        Ok(())
    }

    /// Applies `edit`, then validates and saves. A failed edit or an edit that leaves the
    /// state invalid changes nothing, on disk or in memory.
    pub fn update<T>(
        &mut self,
        edit: impl FnOnce(&mut State) -> Result<T, StateError>,
    ) -> Result<T, StoreError> {
        self.lock()?;
        let mut next = State::clone(&self.state);
        let out = edit(&mut next)?;
        // Only problems the edit brings in refuse it: a state that already had one (a
        // droplet the runtime names but does not list, say) can still be edited.
        let before = match &self.known_problems {
            Some(known) => known.clone(),
            None => problem_lines(&self.state),
        };
        let after = next.check().problems.into_vec();
        let after_lines: Vec<String> = after.iter().map(ToString::to_string).collect();
        let mut new_problems = crate::diagnostic::Problems::new();
        for (problem, line) in after.into_iter().zip(&after_lines) {
            if !before.contains(line) {
                new_problems.push(problem);
            }
        }
        if !new_problems.is_empty() {
            return Err(StoreError::Invalid(InvalidInput(new_problems)));
        }
        if !self.dry_run {
            next.save().map_err(|source| StoreError::Write {
                path: self.state.display().to_string(),
                source,
            })?;
            self.saves += 1;
        }
        self.state = Arc::new(next);
        // The next edit compares against these without checking the state again.
        self.known_problems = Some(after_lines);
        Ok(out)
    }

    /// Re-reads the file from disk (used between runs of a watched playbook).
    pub fn reload(&mut self) -> Result<(), StoreError> {
        let display = self.state.display().to_string();
        self.state = Arc::new(State::load(&self.path, &display)?);
        self.known_problems = None;
        Ok(())
    }

    /// Lets go of the lock (the next edit takes it again).
    pub fn release(&mut self) {
        self.lock = None;
    }
}

impl From<Document> for State {
    fn from(doc: Document) -> Self {
        State::from_document(doc)
    }
}

fn problem_lines(state: &State) -> Vec<String> {
    state
        .check()
        .problems
        .iter()
        .map(ToString::to_string)
        .collect()
}
