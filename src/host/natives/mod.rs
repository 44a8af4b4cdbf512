//! Every native function playbooks can call is registered here, one module per domain.
//! Natives are thin: they turn script values into core types, call core, and turn the result
//! back; errors go through `host::error::{failure, bad_input}`.

mod cloud;
mod core;
mod deploy;
pub mod docs;
mod plan;
mod remote;
mod state;
mod template;

use std::sync::Arc;

use rhai::{Dynamic, Engine, EvalAltResult};

use super::error::bad_input;
use super::Context;

pub fn register_all(engine: &mut Engine, ctx: &Arc<Context>) {
    cloud::register(engine, ctx);
    cloud::register_maintenance(engine, ctx);
    core::register(engine, ctx);
    deploy::register(engine, ctx);
    state::register(engine, ctx);
    plan::register(engine, ctx);
    remote::register(engine, ctx);
    template::register(engine, ctx);
}

/// Script value from anything serializable.
pub fn to_dynamic<T: serde::Serialize>(value: &T) -> Result<Dynamic, Box<EvalAltResult>> {
    rhai::serde::to_dynamic(value)
}

/// Core type from a script value, naming what was expected on failure.
pub fn from_dynamic<T: serde::de::DeserializeOwned>(
    value: &Dynamic,
    what: &str,
) -> Result<T, Box<EvalAltResult>> {
    rhai::serde::from_dynamic(value).map_err(|e| bad_input(format!("expected {what}: {e}")))
}
