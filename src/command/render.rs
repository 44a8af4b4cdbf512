//! `infra render TEMPLATE [PROJECT] [ENV]`: prints a template rendered with the context infra
//! would deploy it with, so a team can inspect (and diff) what a deploy would write.

use super::{Env, Failure, Outcome};
use crate::config;
use crate::state::State;
use crate::template::{context_for, set_value, Request, Templates};

/// What `infra render` was asked for.
pub struct RenderArgs {
    pub template: String,
    pub request: Request,
    /// `KEY=VALUE` overrides of context values.
    pub set: Vec<String>,
    /// Print the context as JSON instead of rendering.
    pub show_context: bool,
}

pub fn run(env: &Env, args: RenderArgs) -> Outcome {
    let path = env.project.state_path();
    let state = State::load(&path, &env.project.display(&path))?;
    let loaded = config::load(&env.project, state)?;
    let input = |e: crate::template::TemplateError| Failure::input(e.to_string());
    let mut context = context_for(&loaded, &args.template, &args.request).map_err(input)?;
    for assignment in &args.set {
        let Some((key, value)) = assignment.split_once('=') else {
            return Err(Failure::input(format!(
                "`--set {assignment}` is not KEY=VALUE; write it like `--set nginx.listen=8080`"
            )));
        };
        set_value(&mut context, key.trim(), value).map_err(input)?;
    }
    if args.show_context {
        println!(
            "{}",
            serde_json::to_string_pretty(&context).expect("contexts serialize")
        );
        return Ok(());
    }
    let rendered = Templates::new(&env.project)
        .render_value(&args.template, &context)
        .map_err(input)?;
    if env.options.json {
        let out = serde_json::json!({"template": args.template, "output": rendered});
        println!("{out}");
    } else {
        print!("{rendered}");
    }
    Ok(())
}
