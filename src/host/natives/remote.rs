//! `ssh(droplet, command)` and `ssh_all(droplets, command)`: a command on one droplet, or on
//! many at once (a list of names, or a target: `all`, a role, a project). What each droplet
//! printed is told prefixed by its name; a droplet whose command failed (or that could not be
//! reached) fails the call, naming it. In a dry run nothing runs: each tells what it would run.

use std::net::IpAddr;
use std::sync::Arc;

use rhai::{Array, Dynamic, Engine, EvalAltResult, Map};
use serde_json::json;

use crate::host::error::{bad_input, failure};
use crate::host::{store_error, Context};
use crate::remote::{run_everywhere, Host, HostResult, DEFAULT_PARALLEL};
use crate::report::Change;

pub fn register(engine: &mut Engine, ctx: &Arc<Context>) {
    let c = ctx.clone();
    engine.register_fn(
        "ssh",
        move |droplet: &str, command: &str| -> Result<Map, Box<EvalAltResult>> {
            let mut all = run(&c, vec![droplet.to_string()], command)?;
            Ok(all
                .remove(droplet)
                .and_then(|v| v.try_cast::<Map>())
                .unwrap_or_default())
        },
    );
    let c = ctx.clone();
    engine.register_fn(
        "ssh_all",
        move |droplets: Dynamic, command: &str| -> Result<Map, Box<EvalAltResult>> {
            let names = if droplets.is_string() {
                let target = droplets.into_string().expect("string");
                let store = c.store()?;
                store
                    .state()
                    .select_droplets(&target)
                    .map_err(|e| store_error(e.into()))?
                    .keys()
                    .cloned()
                    .collect()
            } else {
                droplets
                    .try_cast::<Array>()
                    .ok_or_else(|| bad_input("ssh_all takes a list of droplet names or a target (`all`, a role, a project)"))?
                    .into_iter()
                    .map(|v| {
                        v.into_string()
                            .map_err(|t| bad_input(format!("droplet names are strings, not {t}")))
                    })
                    .collect::<Result<Vec<String>, _>>()?
            };
            run(&c, names, command)
        },
    );
}

fn run(ctx: &Context, names: Vec<String>, command: &str) -> Result<Map, Box<EvalAltResult>> {
    let mut hosts = Vec::new();
    {
        let store = ctx.store()?;
        for name in &names {
            let d = store.state().droplet(name).ok_or_else(|| {
                store_error(crate::state::StateError::UnknownDroplet(name.clone()).into())
            })?;
            let ip: IpAddr =
                d.ip.as_deref()
                    .and_then(|ip| ip.parse().ok())
                    .ok_or_else(|| {
                        failure(format!(
                    "droplet `{name}` has no address in the state yet; run `infra orchestrate`"
                ))
                    })?;
            hosts.push(Host::new(name.clone(), ip));
        }
    }
    let change = |name: &str| Change::new("ssh", name, json!(null), json!({ "command": command }));
    let mut out = Map::new();
    if ctx.dry_run() {
        for h in &hosts {
            ctx.reporter()
                .would(&change(&h.name), &format!("run `{command}` on {}", h.name));
        }
        return Ok(out);
    }
    let pool = ctx.ssh_pool()?;
    let results = ctx.block_on(run_everywhere(&pool, &hosts, command, DEFAULT_PARALLEL))?;
    for r in &results {
        let text = r.prefixed();
        ctx.reporter()
            .done(&change(&r.host.name), text.trim_end_matches('\n'));
        out.insert(r.host.name.as_str().into(), result_map(r).into());
    }
    let failed: Vec<String> = results
        .iter()
        .filter_map(|r| Some(format!("{} ({})", r.host.name, r.failure()?)))
        .collect();
    if !failed.is_empty() {
        return Err(failure(format!(
            "`{command}` failed on {}",
            failed.join(", ")
        )));
    }
    Ok(out)
}

fn result_map(r: &HostResult) -> Map {
    let mut m = Map::new();
    match &r.outcome {
        Ok(o) => {
            m.insert("status".into(), (o.status as i64).into());
            m.insert("stdout".into(), o.stdout_text().into());
            m.insert("stderr".into(), o.stderr_text().into());
        }
        Err(e) => {
            m.insert("error".into(), e.to_string().into());
        }
    }
    m.insert("ok".into(), r.success().into());
    m
}
