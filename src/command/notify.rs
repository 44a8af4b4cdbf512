//! `infra notify test [--email] [--sms]`: a test alert through the configured channels, so a
//! team knows the alerts will arrive before a droplet fails. `--dry-run` renders and prints
//! what would be sent and sends nothing.
//!
//! The test is the heartbeat email (subject marked `[test]`) and a one-line text. It is never
//! suppressed and never recorded in the alert ledger: it is not an event.

use std::time::SystemTime;

use serde_json::{json, Value};

use super::{Env, Failure, Outcome};
use crate::cli::NotifyAction;
use crate::config;
use crate::notify::{heartbeat, Channels, Delivery, Notifier, Route, DEFAULT_WINDOW};
use crate::state::State;

pub async fn run(env: &Env, action: NotifyAction) -> Outcome {
    let NotifyAction::Test { email, sms } = action;
    // Neither flag: every channel; a flag given: the channels named.
    let channels = if email || sms {
        Channels { email, sms }
    } else {
        Channels::ALL
    };
    let explicit = email || sms;
    let path = env.project.state_path();
    let state = State::load(&path, &env.project.display(&path))?;
    let loaded = config::load(&env.project, state)?;
    let notifier = Notifier::new(
        &env.project,
        &loaded,
        &env.project.infra_dir(),
        DEFAULT_WINDOW,
    )
    .map_err(|e| Failure::flow(e.to_string()))?;

    let config = loaded
        .state
        .heartbeat_config(loaded.email.heartbeat_interval_minutes);
    let sender = config
        .primary_sender
        .clone()
        .unwrap_or_else(|| "master".to_string());
    let now = SystemTime::now();
    let mut alert = heartbeat::alert(&config, &sender, now);
    alert.incident = "test".to_string();
    let mut prepared = notifier.prepare(&loaded, &alert, now);
    if let Ok(email) = &mut prepared.email {
        email.subject = format!("[test] {}", email.subject);
    }
    let summary = loaded.state.summary();
    prepared.text = Some(format!(
        "[infra] test alert from `infra notify test`: {} droplets, {} services",
        summary.droplets, summary.services
    ));

    let email_route = notifier.email_route();
    let sms_route = notifier.sms_route();
    if env.options.dry_run {
        let mut out = serde_json::Map::new();
        out.insert("dry_run".into(), true.into());
        let mut blocks = Vec::new();
        let mut problems: Vec<(&str, String)> = Vec::new();
        if channels.email {
            let email = prepared.email.as_ref();
            let (value, text) = match (&email_route, email) {
                (Route::Off(reason), _) => {
                    if explicit {
                        problems.push(("email", format!("asked for, but {reason}")));
                    }
                    (
                        json!({"status": "not_sent", "reason": reason}),
                        format!("email: not sent: {reason}\n"),
                    )
                }
                (Route::Broken(error), _) | (Route::Ready { .. }, Err(error)) => {
                    problems.push(("email", error.clone()));
                    (
                        json!({"status": "would_fail", "error": error}),
                        format!("email: would fail: {error}\n"),
                    )
                }
                (Route::Ready { via, to }, Ok(email)) => (
                    json!({"status": "would_send", "server": via, "to": to,
                           "subject": email.subject, "body": email.body}),
                    format!(
                        "email: would send through {via} to {}\nSubject: {}\n\n{}\n",
                        to.join(", "),
                        email.subject,
                        email.body.trim_end()
                    ),
                ),
            };
            out.insert("email".into(), value);
            blocks.push(text);
        }
        if channels.sms {
            let text = prepared.text.clone().unwrap_or_default();
            let (value, block) = match &sms_route {
                Route::Off(reason) => {
                    if explicit {
                        problems.push(("sms", format!("asked for, but {reason}")));
                    }
                    (
                        json!({"status": "not_sent", "reason": reason}),
                        format!("sms: not sent: {reason}\n"),
                    )
                }
                Route::Broken(error) => {
                    problems.push(("sms", error.clone()));
                    (
                        json!({"status": "would_fail", "error": error}),
                        format!("sms: would fail: {error}\n"),
                    )
                }
                Route::Ready { via, to } => (
                    json!({"status": "would_send", "provider": via, "to": to, "text": text}),
                    format!(
                        "sms: would send through {via} to {}\n{text}\n",
                        to.join(", ")
                    ),
                ),
            };
            out.insert("sms".into(), value);
            blocks.push(block);
        }
        if env.options.json {
            crate::output::line(&Value::Object(out).to_string());
        } else {
            crate::output::text(&blocks.join("\n"));
        }
        return failed(&problems);
    }

    let report = notifier.send(&prepared, channels).await;
    let mut problems: Vec<(&str, String)> = Vec::new();
    let mut lines = Vec::new();
    for (name, asked, delivery, route) in [
        ("email", channels.email, &report.email, &email_route),
        ("sms", channels.sms, &report.sms, &sms_route),
    ] {
        if !asked {
            continue;
        }
        let line = match (delivery, route) {
            (Delivery::Sent { to }, Route::Ready { via, .. }) => {
                format!("{name}: sent to {} through {via}", to.join(", "))
            }
            _ => format!("{name}: {}", delivery.describe()),
        };
        lines.push(line);
        match delivery {
            Delivery::Failed { error } => problems.push((name, error.clone())),
            Delivery::Skipped { reason } if explicit => {
                problems.push((name, format!("asked for, but {reason}")))
            }
            _ => {}
        }
    }
    if env.options.json {
        crate::output::line(&serde_json::to_string(&report).expect("the report serializes"));
    } else {
        crate::output::line(&lines.join("\n"));
    }
    failed(&problems)
}

/// `Ok` when nothing failed, else a failure naming each channel and why.
fn failed(problems: &[(&str, String)]) -> Outcome {
    if problems.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = problems.iter().map(|(name, _)| *name).collect();
    let details: Vec<String> = problems
        .iter()
        .map(|(name, error)| format!("{name}: {error}"))
        .collect();
    Err(Failure::flow(format!(
        "the test alert failed on {}\nerror: {}",
        names.join(" and "),
        details.join("\nerror: ")
    )))
}
