//! Rendering templates from playbooks: `template_context` builds the context infra would use
//! for a template, `render_template` renders any template with a context map. Both read
//! `templates/` through the project (a project file overrides the embedded default) and reach
//! no other files; secrets are never read here (an env file context shows where each value
//! would come from).

use std::sync::Arc;

use rhai::{Dynamic, Engine, EvalAltResult, Map};

use super::{from_dynamic, to_dynamic};
use crate::host::error::bad_input;
use crate::host::Context;
use crate::template::{context_for, Request, Templates};

pub fn register(engine: &mut Engine, ctx: &Arc<Context>) {
    let c = ctx.clone();
    engine.register_fn(
        "render_template",
        move |name: &str, context: Map| -> Result<String, Box<EvalAltResult>> {
            let value: serde_json::Value =
                from_dynamic(&Dynamic::from_map(context), "a map of template variables")?;
            Templates::new(&c.project)
                .render_value(name, &value)
                .map_err(|e| bad_input(e.to_string()))
        },
    );
    let c = ctx.clone();
    engine.register_fn(
        "template_context",
        move |name: &str, request: Map| -> Result<Dynamic, Box<EvalAltResult>> {
            let request: Request = from_dynamic(
                &Dynamic::from_map(request),
                "#{project, environment, service, release, droplet} (each optional)",
            )?;
            let loaded = c.loaded()?;
            let context =
                context_for(&loaded, name, &request).map_err(|e| bad_input(e.to_string()))?;
            to_dynamic(&context)
        },
    );
    let c = ctx.clone();
    engine.register_fn(
        "template_context",
        move |name: &str| -> Result<Dynamic, Box<EvalAltResult>> {
            let loaded = c.loaded()?;
            let context = context_for(&loaded, name, &Request::default())
                .map_err(|e| bad_input(e.to_string()))?;
            to_dynamic(&context)
        },
    );
}
