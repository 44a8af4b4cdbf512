//! Reading the state and its computed relations, and editing the project spec.
//!
//! Edits are saved at once (under the lock, validated, atomically); in dry-run mode they are
//! reported and kept in memory only, so a later `plan()` shows their effect.

use std::sync::Arc;

use rhai::{Array, Dynamic, Engine, EvalAltResult, Map};

use super::to_dynamic;
use crate::config;
use crate::host::error::{bad_input, located};
use crate::host::{store_error, Context};
use crate::report::Change;
use crate::state::{self, ports, State, StateError};
use serde_json::{json, Value};

fn strings(list: &Array, what: &str) -> Result<Vec<String>, Box<EvalAltResult>> {
    list.iter()
        .map(|v| {
            v.clone()
                .into_string()
                .map_err(|t| bad_input(format!("{what} must be strings, found {t}")))
        })
        .collect()
}

fn port_arg(n: i64, what: &str) -> Result<u16, Box<EvalAltResult>> {
    u16::try_from(n)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| bad_input(format!("{what} must be from 1 to 65535, not {n}")))
}

/// Runs `read` on the current state.
fn read<T>(ctx: &Context, read: impl FnOnce(&State) -> T) -> Result<T, Box<EvalAltResult>> {
    Ok(read(ctx.store()?.state()))
}

/// Applies an edit (saved unless dry-run) and reports it.
fn edit(
    ctx: &Context,
    description: &str,
    edit: impl FnOnce(&mut State) -> Result<(), StateError>,
) -> Result<(), Box<EvalAltResult>> {
    ctx.store()?.update(edit).map_err(store_error)?;
    told(ctx, "edit_spec", "infrastructure_spec", description);
    Ok(())
}

/// Tells a change to infra's own files: what would be done in a dry run, else saved.
fn told(ctx: &Context, kind: &str, target: &str, description: &str) {
    let change = Change::new(
        kind,
        target,
        Value::Null,
        json!({ "description": description }),
    );
    if ctx.dry_run() {
        ctx.reporter().would(&change, description);
    } else {
        ctx.reporter().saved(&change, description);
    }
}

macro_rules! getter {
    ($engine:ident, $ctx:ident, $name:literal, |$state:ident $(, $arg:ident : $ty:ty)*| $body:expr) => {{
        let c = $ctx.clone();
        $engine.register_fn($name, move |$($arg: $ty),*| -> Result<Dynamic, Box<EvalAltResult>> {
            let value = read(&c, |$state| $body)?;
            to_dynamic(&value)
        });
    }};
}

pub fn register(engine: &mut Engine, ctx: &Arc<Context>) {
    getter!(engine, ctx, "spec", |s| s.infrastructure_spec());
    getter!(engine, ctx, "state", |s| s.value().clone());
    getter!(engine, ctx, "droplets", |s| s.droplets());
    getter!(engine, ctx, "droplet", |s, name: &str| s.droplet(name));
    getter!(engine, ctx, "droplets_by_role", |s, role: &str| s
        .droplets_by_role(role));
    getter!(engine, ctx, "droplets_by_project", |s, p: &str| s
        .droplets_by_project(p));
    getter!(engine, ctx, "master_droplet", |s| s
        .master_droplet()
        .map(|(n, _)| n));
    getter!(engine, ctx, "web_droplets", |s| s.web_droplets());
    getter!(engine, ctx, "projects", |s| s.all_projects());
    getter!(engine, ctx, "project_services", |s, pe: &str| s
        .project_services(pe));
    getter!(engine, ctx, "services_on_droplet", |s, d: &str| s
        .services_on_droplet(d));
    getter!(
        engine,
        ctx,
        "load_balancer_targets",
        |s, pe: &str, svc: &str| s.load_balancer_targets(pe, svc)
    );
    getter!(engine, ctx, "monitored_by", |s, d: &str| s.monitored_by(d));
    getter!(engine, ctx, "required_droplets", |s| s.required_droplets());
    getter!(engine, ctx, "summary", |s| s.summary());
    getter!(engine, ctx, "validate_state", |s| s.validate_state());

    // Holds the state lock for the rest of the run (edits take it anyway; this is for runs
    // that must decide under it, like orchestration planning before it acts).
    let c = ctx.clone();
    engine.register_fn("lock_state", move || -> Result<(), Box<EvalAltResult>> {
        c.store()?.lock().map_err(store_error)
    });
    let c = ctx.clone();
    engine.register_fn(
        "required_services",
        move || -> Result<Dynamic, Box<EvalAltResult>> { to_dynamic(&c.loaded()?.services) },
    );
    let c = ctx.clone();
    engine.register_fn(
        "heartbeat_config",
        move || -> Result<Dynamic, Box<EvalAltResult>> {
            let loaded = c.loaded()?;
            to_dynamic(
                &loaded
                    .state
                    .heartbeat_config(loaded.email.heartbeat_interval_minutes),
            )
        },
    );
    engine.register_fn("service_name", |pe: &str, service: &str| {
        state::service_name(pe, service)
    });
    engine.register_fn("project_env", |p: &str, env: &str| {
        state::project_env(p, env)
    });
    engine.register_fn("resource_hash", |p: &str, env: &str| {
        ports::resource_hash(p, env)
    });
    engine.register_fn(
        "hash_port",
        |p: &str, env: &str, base: i64| -> Result<i64, Box<EvalAltResult>> {
            let base = port_arg(base, "the base port")?;
            Ok(ports::hash_based_port(p, env, base, ports::DEFAULT_PORT_RANGE).into())
        },
    );
    engine.register_fn(
        "hash_port",
        |p: &str, env: &str, base: i64, range: i64| -> Result<i64, Box<EvalAltResult>> {
            let base = port_arg(base, "the base port")?;
            let range = port_arg(range, "the port range")?;
            Ok(ports::hash_based_port(p, env, base, range).into())
        },
    );

    let c = ctx.clone();
    engine.register_fn(
        "add_project_spec",
        move |name: &str, envs: Array, count: i64, size: &str| -> Result<(), Box<EvalAltResult>> {
            let envs = strings(&envs, "environments")?;
            let description = format!(
                "add project `{name}` to infrastructure_spec.projects (environments {}; {count} web droplet{} of {size})",
                envs.join(", "),
                if count == 1 { "" } else { "s" }
            );
            edit(&c, &description, |s| {
                s.add_project_spec(name, &envs, count, size)
            })
        },
    );
    let c = ctx.clone();
    engine.register_fn(
        "remove_project_spec",
        move |name: &str| -> Result<(), Box<EvalAltResult>> {
            // The project's services go too, so deployment_config.json names no project the
            // spec lacks. The spec is checked first, so a typo removes nothing.
            {
                let mut store = c.store()?;
                store.lock().map_err(store_error)?;
                let known = store.state().spec_project_names();
                if !known.iter().any(|p| p == name) {
                    let unknown = StateError::UnknownProject {
                        name: name.to_string(),
                        known,
                    };
                    return Err(store_error(unknown.into()));
                }
            }
            let removed = config::remove_project_deployment(&c.project, name, c.dry_run())
                .map_err(|p| located(p.to_string(), false))?;
            if removed {
                let what = format!(
                    "remove projects.{name} from {}",
                    c.project.display(&c.project.deployment_path())
                );
                told(&c, "edit_deployment_config", name, &what);
            }
            edit(
                &c,
                &format!("remove project `{name}` from infrastructure_spec.projects"),
                |s| s.remove_project_spec(name),
            )
        },
    );
    let c = ctx.clone();
    engine.register_fn(
        "scale_project_spec",
        move |name: &str, count: i64| -> Result<(), Box<EvalAltResult>> {
            edit(
                &c,
                &format!("set infrastructure_spec.projects.{name}.web_droplets to {count}"),
                |s| s.set_web_droplets(name, count),
            )
        },
    );
    let c = ctx.clone();
    engine.register_fn("update_heartbeat_config", move |settings: Map| -> Result<(), Box<EvalAltResult>> {
        let mut primary = None;
        let mut backups = None;
        let mut interval = None;
        for (key, value) in settings {
            match key.as_str() {
                "primary_sender" => primary = Some(value.into_string().map_err(|t| bad_input(format!("primary_sender must be a string, found {t}")))?),
                "backup_senders" => {
                    let list = value.try_cast::<Array>().ok_or_else(|| bad_input("backup_senders must be an array of droplet names"))?;
                    backups = Some(strings(&list, "backup_senders")?);
                }
                "interval_minutes" => {
                    let n = value.as_int().map_err(|t| bad_input(format!("interval_minutes must be a whole number, found {t}")))?;
                    interval = Some(u32::try_from(n).map_err(|_| bad_input(format!("interval_minutes must be from 1 to 10080, not {n}")))?);
                }
                other => return Err(bad_input(format!("unknown heartbeat setting `{other}`; use primary_sender, backup_senders or interval_minutes"))),
            }
        }
        edit(&c, "update the heartbeat settings", |s| {
            s.update_heartbeat_config(primary.as_deref(), backups.as_deref(), interval)
        })
    });
}
