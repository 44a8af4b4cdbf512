//! `infra run` and the commands that are playbooks (`plan`, `add-project`, ...).

use std::sync::Arc;

use indexmap::IndexMap;
use rhai::Dynamic;

use super::{Env, Failure, Outcome};
use crate::host::{watch, Context, Host};

/// `OPTS` for a built-in command's boolean flags (only those that are set).
pub fn flags(pairs: &[(&str, bool)]) -> IndexMap<String, Dynamic> {
    pairs
        .iter()
        .filter(|(_, on)| *on)
        .map(|(k, _)| (k.to_string(), Dynamic::TRUE))
        .collect()
}

/// `--key value` and `--flag` pairs after `--`.
fn parse_opts(raw: &[String]) -> Result<IndexMap<String, Dynamic>, Failure> {
    let mut out = IndexMap::new();
    let mut i = 0;
    while i < raw.len() {
        let Some(key) = raw[i].strip_prefix("--").filter(|k| !k.is_empty()) else {
            return Err(Failure::input(format!(
                "unexpected `{}` after `--`; options there take the form `--key value` or `--flag`",
                raw[i]
            )));
        };
        let (key, value) = match key.split_once('=') {
            Some((k, v)) => (k.to_string(), Dynamic::from(v.to_string())),
            None => match raw.get(i + 1) {
                Some(v) if !v.starts_with("--") => {
                    i += 1;
                    (key.to_string(), Dynamic::from(v.clone()))
                }
                _ => (key.to_string(), Dynamic::TRUE),
            },
        };
        out.insert(key.replace('-', "_"), value);
        i += 1;
    }
    Ok(out)
}

fn host(env: Env) -> Host {
    Host::new(Arc::new(Context::new(env.project, env.options, env.cancel)))
}

/// Runs a bundled playbook by name (the project's copy if it has one).
pub async fn builtin(
    env: Env,
    name: &str,
    args: Vec<String>,
    opts: IndexMap<String, Dynamic>,
) -> Outcome {
    run_named(env, format!("playbooks/{name}.rhai"), args, opts).await
}

async fn run_named(
    env: Env,
    file: String,
    args: Vec<String>,
    opts: IndexMap<String, Dynamic>,
) -> Outcome {
    let source = env
        .project
        .playbook(&file)
        .map_err(|e| Failure::input(e.playbook_message(&file)))?;
    let host = host(env);
    tokio::task::spawn_blocking(move || {
        host.run_source(&source, &args, &opts)
            .map_err(Failure::from)
    })
    .await
    .map_err(|e| Failure::flow(format!("the playbook thread failed: {e}")))?
}

pub async fn run(
    env: Env,
    file: String,
    args: Vec<String>,
    watch: bool,
    opts: Vec<String>,
) -> Outcome {
    let opts = parse_opts(&opts)?;
    if !watch {
        return run_named(env, file, args, opts).await;
    }
    if let Err(e) = env.project.playbook(&file) {
        return Err(Failure::input(e.playbook_message(&file)));
    }
    let host = host(env);
    tokio::task::spawn_blocking(move || {
        watch::watch(&host, &file, &args, &opts, |result| match result {
            Ok(()) => tracing::info!("run finished"),
            Err(e) => tracing::error!("{e}"),
        })
        .map_err(Failure::flow)?;
        // The watch only ends on Ctrl-C: exit as an interrupted command does.
        Err(Failure::interrupted())
    })
    .await
    .map_err(|e| Failure::flow(format!("the watch thread failed: {e}")))?
}
