//! Logging, failing, the environment, and small conveniences.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rhai::{Dynamic, Engine, EvalAltResult};

use super::{from_dynamic, to_dynamic};
use crate::host::error::{bad_input, failure};
use crate::host::Context;

pub fn register(engine: &mut Engine, ctx: &Arc<Context>) {
    engine.register_fn(
        "log",
        |message: &str| tracing::info!(target: "playbook", "{message}"),
    );
    engine.register_fn(
        "warn",
        |message: &str| tracing::warn!(target: "playbook", "{message}"),
    );
    engine.register_fn("fail", |message: &str| -> Result<(), Box<EvalAltResult>> {
        Err(failure(message))
    });
    engine.register_fn(
        "bad_input",
        |message: &str| -> Result<(), Box<EvalAltResult>> { Err(bad_input(message)) },
    );
    // A variable that holds a secret is refused, set or not, so a playbook cannot leak it.
    let c = ctx.clone();
    engine.register_fn(
        "env",
        move |name: &str| -> Result<Dynamic, Box<EvalAltResult>> {
            refuse_secret(&c, name)?;
            Ok(std::env::var(name)
                .map(Dynamic::from)
                .unwrap_or(Dynamic::UNIT))
        },
    );
    let c = ctx.clone();
    engine.register_fn(
        "env",
        move |name: &str, default: &str| -> Result<String, Box<EvalAltResult>> {
            refuse_secret(&c, name)?;
            Ok(std::env::var(name).unwrap_or_else(|_| default.to_string()))
        },
    );
    let c = ctx.clone();
    engine.register_fn("dry_run", move || c.dry_run());
    let c = ctx.clone();
    engine.register_fn("offline", move || c.options.offline);
    let c = ctx.clone();
    engine.register_fn("json_output", move || c.options.json);
    // Asks a person at a terminal to type `yes`; without a terminal, says how to confirm.
    engine.register_fn(
        "confirm",
        |question: &str, flag: &str| -> Result<bool, Box<EvalAltResult>> {
            use std::io::{BufRead, IsTerminal, Write};
            if !std::io::stdin().is_terminal() {
                return Err(bad_input(format!(
                    "{question}; not asking without a terminal: add {flag} to go ahead"
                )));
            }
            eprint!("{question}. Type yes to go ahead: ");
            let _ = std::io::stderr().flush();
            let mut answer = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut answer)
                .map_err(|e| failure(format!("cannot read the answer: {e}")))?;
            Ok(answer.trim() == "yes")
        },
    );
    // One JSON event on stdout with --json; a plain line without it.
    let c = ctx.clone();
    engine.register_fn(
        "emit",
        move |event: rhai::Map, text: &str| -> Result<(), Box<EvalAltResult>> {
            if c.options.json {
                let v: serde_json::Value =
                    from_dynamic(&Dynamic::from_map(event), "a map of event fields")?;
                println!("{v}");
            } else {
                println!("{text}");
            }
            Ok(())
        },
    );
    engine.register_fn(
        "to_json",
        |value: Dynamic| -> Result<String, Box<EvalAltResult>> {
            let v: serde_json::Value = from_dynamic(&value, "a value that JSON can hold")?;
            Ok(v.to_string())
        },
    );
    engine.register_fn(
        "parse_json",
        |text: &str| -> Result<Dynamic, Box<EvalAltResult>> {
            let v: serde_json::Value =
                serde_json::from_str(text).map_err(|e| bad_input(format!("invalid JSON: {e}")))?;
            to_dynamic(&v)
        },
    );
    // Waits that Ctrl-C interrupts.
    let c = ctx.clone();
    engine.register_fn(
        "sleep",
        move |seconds: f64| -> Result<(), Box<EvalAltResult>> { sleep(&c, seconds) },
    );
    let c = ctx.clone();
    engine.register_fn(
        "sleep",
        move |seconds: i64| -> Result<(), Box<EvalAltResult>> { sleep(&c, seconds as f64) },
    );
}

fn sleep(ctx: &Context, seconds: f64) -> Result<(), Box<EvalAltResult>> {
    if !(0.0..=86_400.0).contains(&seconds) {
        return Err(bad_input(format!(
            "sleep takes 0 to 86400 seconds, not {seconds}"
        )));
    }
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    while Instant::now() < end {
        if ctx.cancel.load(Ordering::Relaxed) {
            return Err(Box::new(EvalAltResult::ErrorTerminated(
                Dynamic::from("cancelled"),
                rhai::Position::NONE,
            )));
        }
        std::thread::sleep((end - Instant::now()).min(Duration::from_millis(50)));
    }
    Ok(())
}

fn refuse_secret(ctx: &Context, name: &str) -> Result<(), Box<EvalAltResult>> {
    // Configs that do not load leave the cloud token as the one known secret.
    let loaded = ctx.loaded().ok();
    if crate::secrets::is_secret(name, loaded.as_ref()) {
        return Err(bad_input(format!(
            "`{name}` holds a secret, and playbooks cannot read secrets; the natives that need it read it themselves"
        )));
    }
    Ok(())
}
