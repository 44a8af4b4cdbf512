//! `--watch`: re-run a playbook whenever it or a module it imports changes. A version that does
//! not compile is reported and the previous one stays in use.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::Duration;

use indexmap::IndexMap;
use notify::{RecursiveMode, Watcher};
use rhai::Dynamic;

use super::{Compiled, Host, ScriptError};
use crate::project::Source;

/// How long to wait for a burst of file events (an editor's save) to settle.
pub const DEBOUNCE: Duration = Duration::from_millis(250);

/// Files whose change should re-run the playbook: the playbook itself and the modules it
/// imported, including a project module that does not exist yet but would override one.
fn watched_files(host: &Host, main: &Source) -> HashSet<PathBuf> {
    let mut files = HashSet::new();
    if let Some(p) = &main.path {
        files.insert(canonical(p));
    }
    for (name, _) in host.modules() {
        files.insert(canonical(
            &host.ctx.project.root.join(format!("stdlib/{name}.rhai")),
        ));
    }
    files
}

fn canonical(p: &Path) -> PathBuf {
    if let Ok(c) = p.canonicalize() {
        return c;
    }
    match (
        p.parent().and_then(|d| d.canonicalize().ok()),
        p.file_name(),
    ) {
        (Some(dir), Some(name)) => dir.join(name),
        _ => p.to_path_buf(),
    }
}

/// Runs until Ctrl-C. Each run's result is reported; errors never end the watch.
pub fn watch(
    host: &Host,
    playbook: &str,
    args: &[String],
    opts: &IndexMap<String, Dynamic>,
    mut report: impl FnMut(Result<(), ScriptError>),
) -> Result<(), String> {
    let load = || {
        host.ctx
            .project
            .playbook(playbook)
            .ok_or_else(|| format!("playbook `{playbook}` not found"))
    };
    let mut source = load()?;
    let (tx, rx) = mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            if !event.kind.is_access() {
                let _ = tx.send(event.paths);
            }
        }
    })
    .map_err(|e| format!("cannot watch files: {e}"))?;
    let mut dirs = HashSet::new();
    if let Some(dir) = source.path.as_ref().and_then(|p| p.parent()) {
        dirs.insert(canonical(dir));
    }
    let stdlib = host.ctx.project.root.join("stdlib");
    if stdlib.is_dir() {
        dirs.insert(canonical(&stdlib));
    }
    for dir in &dirs {
        watcher
            .watch(dir, RecursiveMode::NonRecursive)
            .map_err(|e| format!("cannot watch `{}`: {e}", dir.display()))?;
    }

    let mut current: Option<Compiled> = None;
    let mut previous_files: HashSet<PathBuf> = HashSet::new();
    loop {
        let compiled_ok;
        match host.compile(&source) {
            Ok(compiled) => {
                compiled_ok = true;
                report(host.run(&compiled, args, opts));
                current = Some(compiled);
            }
            Err(e) => {
                compiled_ok = false;
                report(Err(e));
                if current.is_some() {
                    tracing::warn!("keeping the previous version of `{}`", source.display);
                }
            }
        }
        // After a failed compile the module list is partial: keep watching what the previous
        // version used too.
        let mut files = watched_files(host, &source);
        if !compiled_ok {
            files.extend(previous_files.iter().cloned());
        }
        previous_files = files.clone();
        tracing::info!(
            "watching {} file(s) for changes (Ctrl-C to stop)",
            files.len()
        );
        // Wait for a relevant change, then for the burst to settle.
        loop {
            if host.ctx.cancel.load(Ordering::Relaxed) {
                return Ok(());
            }
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(paths) if paths.iter().any(|p| files.contains(&canonical(p))) => {
                    while rx.recv_timeout(DEBOUNCE).is_ok() {}
                    break;
                }
                Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
            }
        }
        match load() {
            Ok(s) => source = s,
            Err(e) => tracing::error!("{e}; keeping the previous version"),
        }
        tracing::info!("change detected: re-running `{}`", source.display);
    }
}
