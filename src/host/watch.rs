//! `--watch`: re-run a playbook whenever it or a module it imports changes. A version that does
//! not compile is reported and the previous one stays in use.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use notify::{RecursiveMode, Watcher};
use rhai::Dynamic;

use super::{Compiled, Host, ScriptError};

/// The first wait before a failed orchestration is tried again; each failure doubles it.
const FIRST_RETRY: Duration = Duration::from_secs(5);
const MAX_RETRY: Duration = Duration::from_secs(300);
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

/// Watches the directories that exist among `dirs` (not recursively); each change arrives as
/// the paths it touched. Keep the watcher alive as long as the receiver is used.
fn watch_dirs(
    dirs: &[PathBuf],
) -> Result<(notify::RecommendedWatcher, mpsc::Receiver<Vec<PathBuf>>), String> {
    let (tx, rx) = mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            if !event.kind.is_access() {
                let _ = tx.send(event.paths);
            }
        }
    })
    .map_err(|e| format!("cannot watch files: {e}"))?;
    let unique: HashSet<PathBuf> = dirs
        .iter()
        .filter(|d| d.is_dir())
        .map(|d| canonical(d))
        .collect();
    for dir in &unique {
        watcher
            .watch(dir, RecursiveMode::NonRecursive)
            .map_err(|e| format!("cannot watch `{}`: {e}", dir.display()))?;
    }
    Ok((watcher, rx))
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
            .map_err(|e| e.playbook_message(playbook))
    };
    let mut source = load()?;
    let mut dirs = vec![host.ctx.project.root.join("stdlib")];
    if let Some(dir) = source.path.as_ref().and_then(|p| p.parent()) {
        dirs.push(dir.to_path_buf());
    }
    let (_watcher, rx) = watch_dirs(&dirs)?;

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

/// What `infra watch` compares: the spec and the deployment config, not the runtime state
/// that orchestrate writes into the same file (so its own saves never re-trigger it).
fn spec_fingerprint(ctx: &super::Context) -> Result<String, String> {
    use sha2::{Digest, Sha256};
    let path = ctx.project.state_path();
    let display = ctx.project.display(&path);
    let doc = crate::document::Document::read(&path, &display).map_err(|p| p.to_string())?;
    let spec = doc
        .value
        .get("infrastructure_spec")
        .cloned()
        .unwrap_or_default();
    let deployment = std::fs::read_to_string(ctx.project.deployment_path()).unwrap_or_default();
    let mut hash = Sha256::new();
    hash.update(spec.to_string().as_bytes());
    hash.update(deployment.as_bytes());
    Ok(format!("{:x}", hash.finalize()))
}

/// `infra watch`: orchestrates now, then again whenever the spec (or the deployment config)
/// changes; reloads `orchestrate.rhai` and its modules when they change, keeping the previous
/// version when an edit does not compile; reports an invalid spec without applying anything;
/// and keeps watching until Ctrl-C.
pub fn watch_spec(host: &Host) -> Result<(), String> {
    let ctx = host.ctx.clone();
    let load = || {
        ctx.project
            .playbook("orchestrate")
            .map_err(|e| e.playbook_message("orchestrate"))
    };
    let (_watcher, rx) = watch_dirs(&[
        ctx.project.config_dir.clone(),
        ctx.project.root.join("playbooks"),
        ctx.project.root.join("stdlib"),
    ])?;
    let spec_files: HashSet<PathBuf> = [ctx.project.state_path(), ctx.project.deployment_path()]
        .iter()
        .map(|p| canonical(p))
        .collect();

    let mut current: Option<Compiled> = None;
    let mut applied: Option<String> = None;
    // When a failed run is tried again, and how long the wait before it was.
    let mut retry: Option<(Instant, Duration)> = None;
    let mut recompile = true;
    let mut reapply = true;
    // Say "watching" again only after something was reported, not after ignored events.
    let mut announce = true;
    let no_args: IndexMap<String, Dynamic> = IndexMap::new();
    loop {
        if recompile {
            match load().and_then(|source| host.compile(&source).map_err(|e| e.to_string())) {
                Ok(compiled) => {
                    if current.is_some() {
                        tracing::info!("reloaded `{}`", compiled.display);
                    }
                    current = Some(compiled);
                }
                Err(e) => {
                    tracing::error!("{e}");
                    if current.is_some() {
                        tracing::warn!("keeping the previous version of the playbook");
                    }
                    announce = true;
                }
            }
        }
        if reapply {
            match spec_fingerprint(&ctx) {
                Err(problem) => {
                    tracing::error!("{problem}; nothing applied, still watching");
                    announce = true;
                }
                Ok(fingerprint) if applied.as_ref() != Some(&fingerprint) => {
                    if let Some(compiled) = &current {
                        if applied.is_some() {
                            tracing::info!("the spec changed: orchestrating");
                        }
                        match host.run(compiled, &[], &no_args) {
                            Ok(()) => {
                                applied = Some(fingerprint);
                                retry = None;
                            }
                            Err(e) if e.kind == super::ErrorKind::Cancelled => return Ok(()),
                            Err(e) => {
                                // A failed run (the cloud down, a droplet slow to boot) is
                                // tried again with back-off until it works or the spec
                                // changes; bad input waits for the next edit.
                                tracing::error!("{e}");
                                if e.kind == super::ErrorKind::Runtime {
                                    let wait = retry
                                        .map(|(_, w): (Instant, Duration)| (w * 2).min(MAX_RETRY))
                                        .unwrap_or(FIRST_RETRY);
                                    tracing::warn!(
                                        "trying again in {} s (or at the next edit)",
                                        wait.as_secs()
                                    );
                                    retry = Some((Instant::now() + wait, wait));
                                } else {
                                    applied = Some(fingerprint);
                                    retry = None;
                                }
                            }
                        }
                        announce = true;
                    }
                }
                Ok(_) => {}
            }
        }
        if announce {
            tracing::info!("watching the spec and the playbooks (Ctrl-C to stop)");
        }
        announce = false;
        recompile = false;
        reapply = false;
        while !recompile && !reapply {
            if ctx.cancel.load(Ordering::Relaxed) {
                return Ok(());
            }
            if retry.is_some_and(|(at, _)| Instant::now() >= at) {
                reapply = true;
                break;
            }
            if retry.is_some_and(|(at, _)| Instant::now() >= at) {
                reapply = true;
                break;
            }
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(paths) => {
                    // Let a burst of writes (an editor's save) settle first.
                    let mut all = paths;
                    while let Ok(more) = rx.recv_timeout(DEBOUNCE) {
                        all.extend(more);
                    }
                    for p in &all {
                        let is_rhai = p.extension().is_some_and(|e| e == "rhai");
                        if spec_files.contains(&canonical(p)) {
                            reapply = true;
                        } else if is_rhai {
                            recompile = true;
                        }
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
            }
        }
    }
}
