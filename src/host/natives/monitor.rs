//! Natives of the monitor: `install_monitors`. Thin: the work is in `crate::monitor`.

use std::sync::Arc;

use rhai::{Array, Dynamic, Engine, EvalAltResult};

use super::{droplet_names, to_dynamic};
use crate::host::error::located;
use crate::host::Context;
use crate::monitor::install::{InstallError, Installer};

fn install(ctx: &Context, only: Vec<String>) -> Result<Array, Box<EvalAltResult>> {
    let loaded = ctx.loaded()?;
    let pool = ctx.ssh_pool()?;
    let installer = Installer::new(
        ctx.project.clone(),
        Arc::new(loaded),
        pool,
        ctx.reporter().clone(),
        ctx.dry_run(),
    )
    .map_err(|e| located(e.to_string(), false))?;
    let installed = ctx
        .block_on(installer.install(&only))?
        .map_err(|e| located(e.to_string(), matches!(e, InstallError::Input(_))))?;
    installed.iter().map(to_dynamic).collect()
}

/// Copies this project's state file to every droplet's monitor (where one is installed), so
/// the monitors probe the fleet as it is now; each restarts with it.
fn share_state(ctx: &Context) -> Result<Array, Box<EvalAltResult>> {
    let loaded = ctx.loaded()?;
    if ctx.dry_run() {
        return Ok(Array::new());
    }
    let pool = ctx.ssh_pool()?;
    let text = std::fs::read(ctx.project.state_path())
        .map_err(|e| located(format!("cannot read the state: {e}"), false))?;
    let me = crate::monitor::daemon::running_as();
    let hosts: Vec<_> = crate::monitor::install::monitored_droplets(&loaded)
        .into_iter()
        .filter(|h| Some(&h.name) != me.as_ref())
        .collect();
    let results = ctx.block_on(crate::monitor::install::share_state(&pool, &hosts, &text))?;
    Ok(results.into_iter().map(Dynamic::from).collect())
}

pub fn register(engine: &mut Engine, ctx: &Arc<Context>) {
    let c = ctx.clone();
    engine.register_fn(
        "share_state",
        move || -> Result<Array, Box<EvalAltResult>> { share_state(&c) },
    );
    let c = ctx.clone();
    engine.register_fn(
        "install_monitors",
        move || -> Result<Array, Box<EvalAltResult>> { install(&c, Vec::new()) },
    );
    let c = ctx.clone();
    engine.register_fn(
        "install_monitors",
        move |droplets: Dynamic| -> Result<Array, Box<EvalAltResult>> {
            install(&c, droplet_names(droplets)?)
        },
    );
}
