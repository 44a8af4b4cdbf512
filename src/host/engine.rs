//! The one place the Rhai engine is hardened.
//!
//! What a playbook can reach: the natives registered in `natives/`, modules imported by name
//! from `stdlib/` (the project's first, then the embedded ones; no paths outside it), and
//! nothing else: no `eval`, no file or network access except through natives, bounded
//! operations, call depth, expression depth and sizes, and undeclared variables are a compile
//! error. `print` and `debug` go to the log. Ctrl-C stops a script at its next operation.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rhai::{Dynamic, Engine};

/// Enough for any real playbook; a runaway loop stops instead of hanging.
pub const MAX_OPERATIONS: u64 = 100_000_000;

pub fn hardened(cancel: Arc<AtomicBool>) -> Engine {
    let mut engine = Engine::new();
    engine.set_max_operations(MAX_OPERATIONS);
    engine.set_max_call_levels(64);
    engine.set_max_expr_depths(128, 64);
    engine.set_max_string_size(8 << 20);
    engine.set_max_array_size(1_000_000);
    engine.set_max_map_size(1_000_000);
    engine.set_max_modules(256);
    engine.disable_symbol("eval");
    engine.set_strict_variables(true);
    engine.on_print(|text| tracing::info!(target: "playbook", "{text}"));
    engine.on_debug(|text, source, pos| {
        tracing::debug!(target: "playbook", "{}:{}: {text}", source.unwrap_or("playbook"), pos)
    });
    engine.on_progress(move |_| {
        cancel
            .load(Ordering::Relaxed)
            .then(|| Dynamic::from("cancelled"))
    });
    engine
}
