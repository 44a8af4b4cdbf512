//! `infra notify test [--email] [--sms]`: a test alert through the configured channels, so a
//! team knows the alerts will arrive before a droplet fails. `--dry-run` renders and prints
//! what would be sent and sends nothing.
//!
//! The test is the heartbeat email (subject marked `[test]`) and a one-line text. It is never
//! suppressed and never recorded in the alert ledger: it is not an event.

use std::time::SystemTime;

use super::{Env, Failure, Outcome};
use crate::cli::NotifyAction;
use crate::config;
use crate::notify::{heartbeat, Channels, Delivery, Notifier, Preview, Route, DEFAULT_WINDOW};
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

    if env.options.dry_run {
        let preview = notifier.preview(&prepared, channels);
        let mut problems: Vec<(&str, String)> = Vec::new();
        let mut blocks = Vec::new();
        for (name, asked, p) in [
            ("email", channels.email, &preview.email),
            ("sms", channels.sms, &preview.sms),
        ] {
            if !asked {
                continue;
            }
            let block = match p {
                Preview::NotSent { reason } => {
                    if explicit {
                        problems.push((name, format!("asked for, but {reason}")));
                    }
                    format!("{name}: not sent: {reason}\n")
                }
                Preview::WouldFail { error } => {
                    problems.push((name, error.clone()));
                    format!("{name}: would fail: {error}\n")
                }
                Preview::WouldSend {
                    via,
                    to,
                    subject,
                    body,
                    text,
                } => {
                    let mut block =
                        format!("{name}: would send through {via} to {}\n", to.join(", "));
                    if let (Some(subject), Some(body)) = (subject, body) {
                        block.push_str(&format!("Subject: {subject}\n\n{}\n", body.trim_end()));
                    }
                    if let Some(text) = text {
                        block.push_str(&format!("{text}\n"));
                    }
                    block
                }
            };
            blocks.push(block);
        }
        if env.options.json {
            crate::output::line(&serde_json::to_string(&preview).expect("the preview serializes"));
        } else {
            crate::output::text(&blocks.join("\n"));
        }
        return failed(&problems);
    }

    let email_route = notifier.email_route();
    let sms_route = notifier.sms_route();
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
