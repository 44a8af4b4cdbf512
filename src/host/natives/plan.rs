//! `plan()` and `show_plan(plan)`: the change list between the spec and what exists.
//!
//! A plan is handed to scripts as a handle (`is_empty()`, `.changes`, `.summary`), not as a
//! map, so a plan of thousands of changes is not copied unless a script looks inside it.

use std::sync::Arc;

use rhai::{Engine, EvalAltResult};

use super::to_dynamic;
use crate::host::Context;
use crate::plan::{Action, Kind, Plan};

pub fn register(engine: &mut Engine, ctx: &Arc<Context>) {
    engine
        .register_type_with_name::<Plan>("Plan")
        .register_fn("is_empty", |p: &mut Plan| p.is_empty())
        .register_get("changes", |p: &mut Plan| to_dynamic(&p.changes))
        .register_get("summary", |p: &mut Plan| to_dynamic(&p.summary))
        .register_get("force", |p: &mut Plan| p.force)
        // Why the plan cannot go ahead without `--force` ("" when it can).
        .register_get("needs_force", |p: &mut Plan| {
            p.blocked_without_force()
                .map(|c| {
                    format!(
                        "droplet `{}`: {}; `infra orchestrate --force --yes` recreates the droplets, with whatever runs on them",
                        c.target,
                        c.needs_force.as_deref().unwrap_or_default()
                    )
                })
                .unwrap_or_default()
        })
        .register_fn("to_string", |p: &mut Plan| p.render_text())
        .register_fn(
            "droplets",
            |p: &mut Plan, action: &str| -> Result<rhai::Array, Box<EvalAltResult>> {
                let action = match action {
                    "create" => Action::Create,
                    "update" => Action::Update,
                    "replace" => Action::Replace,
                    "delete" => Action::Delete,
                    "gone" => Action::Gone,
                    "refresh" => Action::Refresh,
                    "orphan" => Action::Orphan,
                    other => {
                        return Err(crate::host::error::bad_input(format!(
                            "no plan action `{other}`; use create, update, replace, delete, gone, refresh or orphan"
                        )))
                    }
                };
                Ok(p.changes
                    .iter()
                    .filter(|c| c.kind == Kind::Droplet && c.action == action)
                    .map(|c| rhai::Dynamic::from(c.target.clone()))
                    .collect())
            },
        );
    let c = ctx.clone();
    engine.register_fn("plan", move || compute(&c, false));
    let c = ctx.clone();
    engine.register_fn("plan", move |force: bool| compute(&c, force));
    let c = ctx.clone();
    engine.register_fn("show_plan", move |plan: &mut Plan| {
        if c.options.json {
            crate::output::line(&serde_json::to_string(&*plan).expect("plan serializes"));
        } else {
            crate::output::text(&plan.render_text());
        }
    });
}

fn compute(ctx: &Context, force: bool) -> Result<Plan, Box<EvalAltResult>> {
    let loaded = ctx.loaded()?;
    let refresh = ctx.services.refresh();
    let plan = Plan::compute(
        &loaded.spec,
        &loaded.runtime,
        &loaded.services,
        force,
        refresh.as_ref(),
    );
    crate::deferred_drop::drop_in_background(loaded);
    Ok(plan)
}
