//! Every native function playbooks can call is registered here, one module per domain.
//! Natives are thin: they turn script values into core types, call core, and turn the result
//! back; errors go through `host::error::{failure, bad_input}`.

mod cloud;
mod core;
mod deploy;
pub mod docs;
mod monitor;
mod notify;
mod plan;
mod recovery;
mod remote;
mod state;
mod template;

use std::sync::Arc;

use rhai::{Array, Dynamic, Engine, EvalAltResult};

use super::error::bad_input;
use super::Context;

pub fn register_all(engine: &mut Engine, ctx: &Arc<Context>) {
    cloud::register(engine, ctx);
    cloud::register_maintenance(engine, ctx);
    core::register(engine, ctx);
    deploy::register(engine, ctx);
    monitor::register(engine, ctx);
    notify::register(engine, ctx);
    state::register(engine, ctx);
    plan::register(engine, ctx);
    recovery::register(engine, ctx);
    remote::register(engine, ctx);
    template::register(engine, ctx);
}

/// A droplet name or a list of droplet names, as natives that act on droplets take them.
pub fn droplet_names(value: Dynamic) -> Result<Vec<String>, Box<EvalAltResult>> {
    if value.is_string() {
        return Ok(vec![value.into_string().expect("string")]);
    }
    let list = value
        .try_cast::<Array>()
        .ok_or_else(|| bad_input("expected a droplet name or a list of droplet names"))?;
    list.into_iter()
        .map(|v| {
            v.into_string()
                .map_err(|t| bad_input(format!("droplet names are strings, not {t}")))
        })
        .collect()
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
