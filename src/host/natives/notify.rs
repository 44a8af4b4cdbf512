//! Alerts from playbooks: `send_alert(#{kind, droplet, incident, ...})` sends a failure or
//! recovery alert through the channels config/email_config.json and config/sms_config.json
//! turn on, once per event (the ledger in config/.infra/ remembers what went out). It returns
//! what happened per channel; a failed channel is reported, not raised, so a recovery does not
//! stop because an email could not go. Credentials never reach the script.

use std::sync::Arc;
use std::time::SystemTime;

use rhai::{Dynamic, Engine, EvalAltResult, Map};
use serde_json::json;

use super::{from_dynamic, to_dynamic};
use crate::host::error::{bad_input, failure};
use crate::host::Context;
use crate::notify::{AlertRequest, Channels, Notifier, DEFAULT_WINDOW};
use crate::report::Change;

pub fn register(engine: &mut Engine, ctx: &Arc<Context>) {
    let c = ctx.clone();
    engine.register_fn(
        "send_alert",
        move |request: Map| -> Result<Dynamic, Box<EvalAltResult>> { send_alert(&c, request) },
    );
}

fn send_alert(ctx: &Context, request: Map) -> Result<Dynamic, Box<EvalAltResult>> {
    let request: AlertRequest = from_dynamic(
        &Dynamic::from_map(request),
        "#{kind, droplet, incident} and optionally error, ip, reported_by, services, new_ip, snapshot, duration_seconds",
    )?;
    let loaded = ctx.loaded()?;
    let alert = request.into_alert(&loaded).map_err(bad_input)?;
    let notifier = Notifier::new(
        &ctx.project,
        &loaded,
        &ctx.project.infra_dir(),
        DEFAULT_WINDOW,
    )
    .map_err(|e| failure(e.to_string()))?;
    let prepared = notifier.prepare(&loaded, &alert, SystemTime::now());
    let change = Change::new(
        "alert",
        &prepared.key,
        json!(null),
        json!({
            "subject": prepared.email.as_ref().ok().map(|e| e.subject.clone()),
            "text": prepared.text,
        }),
    );
    if ctx.dry_run() {
        ctx.reporter()
            .would(&change, &format!("send the alert {}", prepared.key));
        return to_dynamic(&notifier.preview(&prepared, Channels::ALL));
    }
    let report = ctx.block_on(notifier.alert(&loaded, &alert))?;
    for (channel, error) in report.failures() {
        tracing::warn!("alert {} by {channel} failed: {error}", report.key);
    }
    ctx.reporter().done(
        &change,
        &format!(
            "alert {}: email {}; sms {}",
            report.key,
            report.email.describe(),
            report.sms.describe()
        ),
    );
    to_dynamic(&report)
}
