//! `infra monitor DROPLET` (the daemon itself) and `infra install-monitors [DROPLET...]`.

use std::net::SocketAddr;
use std::sync::Arc;

use super::{Env, Failure, Outcome};
use crate::host::Context;
use crate::monitor::daemon::{self, DaemonError};
use crate::monitor::install::{InstallError, Installer};

pub async fn run(env: &Env, droplet: &str, listen: Option<SocketAddr>) -> Outcome {
    daemon::run(env.project.clone(), droplet.to_string(), listen)
        .await
        .map_err(|e| match e {
            DaemonError::Input(m) => Failure::input(m),
            DaemonError::Io(m) => Failure::flow(m),
        })
}

pub async fn install(env: &Env, droplets: &[String]) -> Outcome {
    let ctx = Context::new(env.project.clone(), env.options.clone(), env.cancel.clone());
    let loaded = ctx.loaded().map_err(|e| Failure::input(e.to_string()))?;
    let pool = ctx.ssh_pool().map_err(|e| Failure::flow(e.to_string()))?;
    let installer = Installer::new(
        env.project.clone(),
        Arc::new(loaded),
        pool.clone(),
        ctx.reporter().clone(),
        env.options.dry_run,
    )
    .map_err(|e| Failure::flow(e.to_string()))?;
    let result = installer.install(droplets).await;
    pool.close().await;
    let installed = result.map_err(|e| match e {
        InstallError::Input(m) => Failure::input(m),
        other => Failure::flow(other.to_string()),
    })?;
    if env.options.json {
        crate::output::line(&serde_json::to_string(&installed).unwrap_or_default());
    } else if !env.options.dry_run {
        let unchanged = installed
            .iter()
            .filter(|i| i.outcome == "unchanged")
            .count();
        if unchanged > 0 {
            crate::output::line(&format!(
                "{unchanged} monitor(s) already up to date and running"
            ));
        }
    }
    Ok(())
}
