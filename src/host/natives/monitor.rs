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

pub fn register(engine: &mut Engine, ctx: &Arc<Context>) {
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
