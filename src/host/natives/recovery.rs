//! Natives of playbooks/recovery.rhai: `inspect_droplet`, `check_droplet`, `drain_droplet`,
//! `restore_droplet`, `fence_droplet`, `recreate_droplet`, `start_services`,
//! `recovery_incident`, `auto_recover_master`. Thin: the steps, their fencing, checkpoints
//! and reports are in `crate::recovery`.
//!
//! Each droplet's steps run under one fence for the whole run: the one the monitor put in
//! `Services::recovery_fences` before the run, else a `LocalFence` taken on the first step
//! (a second `infra recover` of the same droplet stops, naming this one). A dry run takes none.

use std::sync::Arc;

use rhai::{Array, Dynamic, Engine, EvalAltResult, Map};

use super::to_dynamic;
use crate::config::Loaded;
use crate::host::error::located;
use crate::host::{store_error, Context};
use crate::recovery::{DryRunFence, Fence, LocalFence, Parts, Records, Recovery, RecoveryError};
use crate::state::{State, StateError};

/// The host's state store, as recovery reads and records through it.
struct HostRecords(Arc<Context>);

fn script_message(e: &EvalAltResult) -> String {
    match e {
        EvalAltResult::ErrorRuntime(value, _) => value.to_string(),
        other => other.to_string(),
    }
}

impl Records for HostRecords {
    fn loaded(&self) -> Result<Loaded, RecoveryError> {
        self.0
            .loaded()
            .map_err(|e| RecoveryError::Input(script_message(&e)))
    }

    fn update(
        &self,
        edit: &mut dyn FnMut(&mut State) -> Result<(), StateError>,
    ) -> Result<(), RecoveryError> {
        let mut store = self
            .0
            .store()
            .map_err(|e| RecoveryError::State(script_message(&e)))?;
        store
            .update(|s| edit(s))
            .map_err(|e| RecoveryError::State(script_message(&store_error(e))))
    }
}

fn recovery_error(e: RecoveryError) -> Box<EvalAltResult> {
    if e.is_cancelled() {
        return Box::new(EvalAltResult::ErrorTerminated(
            Dynamic::from("cancelled"),
            rhai::Position::NONE,
        ));
    }
    located(e.to_string(), e.is_input())
}

/// The fence `droplet`'s steps run under in this run.
fn fence_for(ctx: &Context, droplet: &str) -> Result<Arc<dyn Fence>, Box<EvalAltResult>> {
    if ctx.dry_run() {
        return Ok(Arc::new(DryRunFence));
    }
    let mut fences = ctx
        .services
        .recovery_fences
        .lock()
        .expect("recovery fences");
    if let Some(fence) = fences.get(droplet) {
        return Ok(fence.clone());
    }
    let fence: Arc<dyn Fence> = Arc::new(
        LocalFence::acquire(
            &ctx.project,
            droplet,
            &ctx.options.command,
            ctx.options.lock_timeout,
        )
        .map_err(|e| located(e.to_string(), false))?,
    );
    fences.insert(droplet.to_string(), fence.clone());
    Ok(fence)
}

/// The recovery of `droplet`: fenced for steps that change something, unfenced for looking.
fn recovery(
    ctx: &Arc<Context>,
    droplet: &str,
    fenced: bool,
) -> Result<Recovery, Box<EvalAltResult>> {
    let fence = if fenced {
        fence_for(ctx, droplet)?
    } else {
        Arc::new(DryRunFence)
    };
    Ok(Recovery::new(Parts {
        project: ctx.project.clone(),
        records: Arc::new(HostRecords(ctx.clone())),
        fleet: ctx.fleet()?,
        pool: ctx.ssh_pool()?,
        reporter: ctx.reporter().clone(),
        dry_run: ctx.dry_run(),
        command: ctx.options.command.clone(),
        lock_timeout: ctx.options.lock_timeout,
        fence,
    }))
}

fn run<T>(
    ctx: &Context,
    future: impl std::future::Future<Output = Result<T, RecoveryError>>,
) -> Result<T, Box<EvalAltResult>> {
    ctx.block_on(future)?.map_err(recovery_error)
}

pub fn register(engine: &mut Engine, ctx: &Arc<Context>) {
    let c = ctx.clone();
    engine.register_fn(
        "inspect_droplet",
        move |droplet: &str| -> Result<Dynamic, Box<EvalAltResult>> {
            let r = recovery(&c, droplet, false)?;
            let health = run(&c, r.inspect(droplet))?;
            r.tell(&health);
            to_dynamic(&health)
        },
    );
    let c = ctx.clone();
    engine.register_fn(
        "check_droplet",
        move |droplet: &str| -> Result<Dynamic, Box<EvalAltResult>> {
            let r = recovery(&c, droplet, true)?;
            to_dynamic(&run(&c, r.check(droplet))?)
        },
    );
    let c = ctx.clone();
    engine.register_fn(
        "drain_droplet",
        move |droplet: &str| -> Result<Dynamic, Box<EvalAltResult>> {
            let r = recovery(&c, droplet, true)?;
            to_dynamic(&run(&c, r.drain(droplet))?)
        },
    );
    let c = ctx.clone();
    engine.register_fn(
        "restore_droplet",
        move |droplet: &str| -> Result<bool, Box<EvalAltResult>> {
            let r = recovery(&c, droplet, true)?;
            run(&c, r.restore(droplet))
        },
    );
    let c = ctx.clone();
    engine.register_fn(
        "fence_droplet",
        move |droplet: &str| -> Result<bool, Box<EvalAltResult>> {
            let r = recovery(&c, droplet, true)?;
            run(&c, r.fence(droplet))
        },
    );
    let c = ctx.clone();
    engine.register_fn(
        "recreate_droplet",
        move |droplet: &str| -> Result<Dynamic, Box<EvalAltResult>> {
            let r = recovery(&c, droplet, true)?;
            to_dynamic(&run(&c, r.recreate(droplet))?)
        },
    );
    let c = ctx.clone();
    engine.register_fn(
        "start_services",
        move |droplet: &str| -> Result<Array, Box<EvalAltResult>> {
            let r = recovery(&c, droplet, true)?;
            run(&c, r.start_services(droplet))?
                .iter()
                .map(to_dynamic)
                .collect()
        },
    );
    let c = ctx.clone();
    engine.register_fn(
        "recovery_incident",
        move |droplet: &str| -> Result<Dynamic, Box<EvalAltResult>> {
            let path = crate::recovery::checkpoint::checkpoint_path(&c.project, droplet);
            let ck = crate::recovery::Checkpoint::load(&path, droplet)
                .map_err(|e| located(e.to_string(), false))?;
            match ck.incident {
                Some(incident) => {
                    let mut map = to_dynamic(&incident)?
                        .try_cast::<Map>()
                        .expect("an incident is a map");
                    let steps: Array = incident.steps.keys().map(|k| k.clone().into()).collect();
                    map.insert("done".into(), steps.into());
                    Ok(map.into())
                }
                None => Ok(Dynamic::UNIT),
            }
        },
    );
    let c = ctx.clone();
    engine.register_fn(
        "auto_recover_master",
        move || -> Result<bool, Box<EvalAltResult>> { Ok(c.loaded()?.spec.auto_recover_master) },
    );
}
