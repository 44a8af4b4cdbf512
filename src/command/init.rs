//! `infra init`: write the embedded defaults into the project and make the SSH key pair.

use std::path::PathBuf;

use serde::Serialize;

use super::{Env, Failure, Outcome};
use crate::project::embedded_defaults;

#[derive(Default, Serialize)]
struct Report {
    created: Vec<String>,
    overwritten: Vec<String>,
    kept: Vec<String>,
}

pub fn run(env: &Env, force: bool) -> Outcome {
    let project = &env.project;
    let mut report = Report::default();
    for (rel, text) in embedded_defaults() {
        // Config defaults go to --config-dir; everything else under the project root.
        let target: PathBuf = match rel.strip_prefix("config/") {
            Some(name) => project.config_file(name),
            None => project.root.join(&rel),
        };
        let shown = project.display(&target);
        let exists = target.exists();
        if exists && !force {
            report.kept.push(shown);
            continue;
        }
        if env.options.dry_run {
            println!(
                "[dry-run] would {} {shown}",
                if exists { "overwrite" } else { "create" }
            );
            continue;
        }
        if let Some(dir) = target.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                Failure::flow(format!("cannot create `{}`: {e}", project.display(dir)))
            })?;
        }
        crate::atomic_file::write(&target, text.as_bytes())
            .map_err(|e| Failure::flow(format!("cannot write `{shown}`: {e}")))?;
        if exists {
            report.overwritten.push(shown);
        } else {
            report.created.push(shown);
        }
    }

    let infra_dir = project.infra_dir();
    let ignore = infra_dir.join(".gitignore");
    let key = project.ssh_key_path();
    let key_shown = project.display(&key);
    if env.options.dry_run {
        if !key.exists() {
            println!("[dry-run] would create {key_shown} (ed25519, 0600) and {key_shown}.pub");
        }
        return Ok(());
    }
    std::fs::create_dir_all(&infra_dir).map_err(|e| {
        Failure::flow(format!(
            "cannot create `{}`: {e}",
            project.display(&infra_dir)
        ))
    })?;
    if !ignore.exists() {
        // Keys, locks and logs stay out of version control.
        crate::atomic_file::write(&ignore, b"*\n").map_err(|e| {
            Failure::flow(format!("cannot write `{}`: {e}", project.display(&ignore)))
        })?;
    }
    if key.exists() {
        // Droplets trust this key: replacing it would lock infra out of them.
        report.kept.push(key_shown);
    } else {
        let comment = format!("infra@{}", crate::state::lock::host_name());
        crate::keypair::generate(&key, &comment).map_err(|e| Failure::flow(e.to_string()))?;
        report.created.push(key_shown.clone());
        report.created.push(format!("{key_shown}.pub"));
    }

    if env.options.json {
        println!(
            "{}",
            serde_json::to_string(&report).expect("report serializes")
        );
        return Ok(());
    }
    for f in &report.created {
        println!("created      {f}");
    }
    for f in &report.overwritten {
        println!("overwrote    {f}");
    }
    for f in &report.kept {
        println!(
            "kept         {f} (exists{})",
            if f.ends_with("infrastructure_key") {
                "; an existing key is never replaced, droplets trust it"
            } else {
                "; --force overwrites it"
            }
        );
    }
    println!();
    println!(
        "next: edit {}, then run `infra validate` and `infra plan`",
        project.display(&project.state_path())
    );
    Ok(())
}
