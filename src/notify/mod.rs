//! Alerts: email over SMTP, texts through an SMS provider's HTTP API, the heartbeat, and
//! duplicate suppression.
//!
//! [`Notifier`] is the one place the monitor and commands send through: [`Notifier::alert`]
//! renders an [`Alert`] (the email from `templates/email/`, the text one line), sends it on
//! every enabled channel that has not already delivered it, and reports per channel what was
//! sent, suppressed, disabled or failed. A failed channel is reported as failed and is tried
//! again on the next call; only deliveries are recorded (see [`suppress`]).

pub mod email;
pub mod heartbeat;
pub mod sms;
pub mod suppress;

use std::path::Path;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::config::Loaded;
use crate::project::Project;
use crate::template::{email_context, EmailEvent, Templates};
use email::{Email, EmailSender};
use sms::SmsSender;
use suppress::{Ledger, LedgerError};

/// How long an alert for one event stays suppressed after it was delivered: after that, a
/// problem that lasts is reported again.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(6 * 3600);

/// Something to tell people about.
#[derive(Debug, Clone)]
pub struct Alert {
    /// What happened; also the email template's context.
    pub event: EmailEvent,
    /// What tells two occurrences of one kind of event on one droplet apart (the verdict's
    /// epoch, the recovery's checkpoint id, a heartbeat's slot): alerts with the same kind,
    /// droplet and incident are one event and are sent once.
    pub incident: String,
}

impl Alert {
    /// `failure`, `recovery` or `heartbeat`.
    pub fn kind(&self) -> &'static str {
        match self.event {
            EmailEvent::FailureAlert(_) => "failure",
            EmailEvent::RecoveryComplete(_) => "recovery",
            EmailEvent::Heartbeat(_) => "heartbeat",
        }
    }

    /// The droplet the alert is about (the sender, for a heartbeat).
    pub fn droplet(&self) -> &str {
        match &self.event {
            EmailEvent::FailureAlert(f) => &f.droplet,
            EmailEvent::RecoveryComplete(r) => &r.droplet,
            EmailEvent::Heartbeat(h) => &h.sender,
        }
    }

    /// `kind/droplet/incident`: what duplicate suppression knows the alert by.
    pub fn key(&self) -> String {
        format!("{}/{}/{}", self.kind(), self.droplet(), self.incident)
    }

    /// The email template, under `templates/`.
    pub fn template(&self) -> &'static str {
        match self.event {
            EmailEvent::FailureAlert(_) => "email/failure_alert.txt.j2",
            EmailEvent::RecoveryComplete(_) => "email/recovery_complete.txt.j2",
            EmailEvent::Heartbeat(_) => "email/heartbeat.txt.j2",
        }
    }

    /// The SMS text, or `None` for what goes by email only (the heartbeat).
    pub fn text(&self) -> Option<String> {
        let text = match &self.event {
            EmailEvent::FailureAlert(f) => format!(
                "[infra] ALERT {}{} failed: {}",
                f.droplet,
                f.ip.as_deref()
                    .map(|ip| format!(" ({ip})"))
                    .unwrap_or_default(),
                f.error
            ),
            EmailEvent::RecoveryComplete(r) => format!(
                "[infra] recovered {} in {} s, IP {}",
                r.droplet,
                r.duration_seconds,
                r.new_ip.as_deref().unwrap_or("not assigned yet")
            ),
            EmailEvent::Heartbeat(_) => return None,
        };
        Some(sms::one_line(&text))
    }
}

/// An alert as a playbook or a command asks for it: only `kind`, `droplet` and `incident` are
/// required; the rest is filled from the state (the droplet's IP, its services, the monitors
/// that watch it).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRequest {
    /// `failure` or `recovery`.
    pub kind: String,
    pub droplet: String,
    pub incident: String,
    /// Failure: what the health check saw.
    pub error: Option<String>,
    /// Failure: the droplet's IP; recovery: its old one.
    pub ip: Option<String>,
    pub reported_by: Option<Vec<String>>,
    pub services: Option<Vec<String>>,
    /// Recovery: the IP it came back with.
    pub new_ip: Option<String>,
    pub snapshot: Option<String>,
    pub duration_seconds: Option<u64>,
    /// Failure: what happens next, when it is not a recovery from the latest snapshot.
    pub action: Option<String>,
}

impl AlertRequest {
    /// The alert, with what was left out taken from `loaded`'s state.
    pub fn into_alert(self, loaded: &Loaded) -> Result<Alert, String> {
        use crate::template::{FailureAlert, RecoveryComplete};
        if self.droplet.is_empty() || self.incident.is_empty() {
            return Err(
                "an alert needs a `droplet` and an `incident` (what tells this event apart from an earlier one of the same droplet, e.g. the verdict's epoch)".into(),
            );
        }
        let ip = self.ip.or_else(|| {
            loaded
                .runtime
                .droplets
                .get(&self.droplet)
                .and_then(|d| d.ip.clone())
        });
        let services = self
            .services
            .unwrap_or_else(|| loaded.state.services_on_droplet(&self.droplet));
        let event = match self.kind.as_str() {
            "failure" => EmailEvent::FailureAlert(FailureAlert {
                action: self.action,
                reported_by: self
                    .reported_by
                    .unwrap_or_else(|| loaded.state.monitored_by(&self.droplet)),
                droplet: self.droplet,
                ip,
                error: self
                    .error
                    .ok_or("a failure alert needs an `error`: what the health check saw")?,
                services,
            }),
            "recovery" => EmailEvent::RecoveryComplete(RecoveryComplete {
                droplet: self.droplet,
                old_ip: ip,
                new_ip: self.new_ip,
                snapshot: self.snapshot,
                duration_seconds: self.duration_seconds.unwrap_or(0),
                services,
            }),
            other => {
                return Err(format!(
                    "`{other}` is not an alert kind; use \"failure\" or \"recovery\" (the monitor sends heartbeats itself)"
                ))
            }
        };
        Ok(Alert {
            event,
            incident: self.incident,
        })
    }
}

/// Which channels to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Channels {
    pub email: bool,
    pub sms: bool,
}

impl Channels {
    pub const ALL: Channels = Channels {
        email: true,
        sms: true,
    };
}

/// What happened on one channel.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Delivery {
    Sent {
        to: Vec<String>,
    },
    /// Already delivered for this event, at `sent_at` (RFC 3339).
    Suppressed {
        sent_at: String,
    },
    /// The configuration turns the channel off, or it does not carry this kind of alert.
    Skipped {
        reason: String,
    },
    Failed {
        error: String,
    },
}

impl Delivery {
    pub fn failed(&self) -> Option<&str> {
        match self {
            Delivery::Failed { error } => Some(error),
            _ => None,
        }
    }

    /// One line for people: `sent to a, b`, `suppressed: ...`.
    pub fn describe(&self) -> String {
        match self {
            Delivery::Sent { to } => format!("sent to {}", to.join(", ")),
            Delivery::Suppressed { sent_at } => {
                format!("suppressed: already sent for this event at {sent_at}")
            }
            Delivery::Skipped { reason } => format!("not sent: {reason}"),
            Delivery::Failed { error } => format!("FAILED: {error}"),
        }
    }
}

/// What [`Notifier::alert`] did, per channel.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertReport {
    pub key: String,
    pub email: Delivery,
    pub sms: Delivery,
}

impl AlertReport {
    /// `(channel, error)` for each channel that failed.
    pub fn failures(&self) -> Vec<(&'static str, &str)> {
        [("email", &self.email), ("sms", &self.sms)]
            .into_iter()
            .filter_map(|(name, d)| d.failed().map(|e| (name, e)))
            .collect()
    }
}

/// What sending would do on one channel, in a dry run.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Preview {
    WouldSend {
        /// The server (`host:port (security)`) or provider (`twilio at URL`).
        via: String,
        to: Vec<String>,
        /// The email's subject and body; the text for SMS.
        #[serde(skip_serializing_if = "Option::is_none")]
        subject: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        body: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        text: Option<String>,
    },
    /// Turned off, not asked for, or not a channel this alert goes by.
    NotSent { reason: String },
    /// Would fail as configured (a missing key, an unset variable, a template error).
    WouldFail { error: String },
}

impl Preview {
    pub fn would_fail(&self) -> Option<&str> {
        match self {
            Preview::WouldFail { error } => Some(error),
            _ => None,
        }
    }
}

/// What [`Notifier::preview`] found, per channel.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PreviewReport {
    pub key: String,
    pub dry_run: bool,
    pub email: Preview,
    pub sms: Preview,
}

/// An alert rendered for each channel, before it is sent.
#[derive(Debug, Clone, Serialize)]
pub struct Prepared {
    pub key: String,
    /// The email, or why it could not be rendered.
    pub email: Result<Email, String>,
    /// The SMS text; `None` for alerts that go by email only.
    pub text: Option<String>,
}

/// A channel as configured.
enum Channel<T> {
    Ready(T),
    /// Turned off in the config: why, for people.
    Off(String),
    /// On, but cannot work as configured (a missing key, an unset variable): the error every
    /// alert on this channel reports.
    Broken(String),
}

impl<T> Channel<T> {
    fn route(&self, ready: impl Fn(&T) -> (String, Vec<String>)) -> Route {
        match self {
            Channel::Ready(sender) => {
                let (via, to) = ready(sender);
                Route::Ready { via, to }
            }
            Channel::Off(reason) => Route::Off(reason.clone()),
            Channel::Broken(error) => Route::Broken(error.clone()),
        }
    }

    /// The sender, or what a delivery on this channel comes to without one.
    fn sender(&self) -> Result<&T, Delivery> {
        match self {
            Channel::Ready(sender) => Ok(sender),
            Channel::Off(reason) => Err(Delivery::Skipped {
                reason: reason.clone(),
            }),
            Channel::Broken(error) => Err(Delivery::Failed {
                error: error.clone(),
            }),
        }
    }
}

/// Where a channel sends, as configured.
#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    /// Through `via` (a server, a provider) to `to`.
    Ready { via: String, to: Vec<String> },
    /// Turned off: why.
    Off(String),
    /// On, but it cannot send as configured: the error.
    Broken(String),
}

/// Sends alerts through the configured channels, once per event.
pub struct Notifier {
    templates: Templates,
    email: Channel<EmailSender>,
    sms: Channel<SmsSender>,
    /// Held for the whole of an alert, so two callers cannot both send one event.
    ledger: tokio::sync::Mutex<Ledger>,
    window: Duration,
}

fn off_reason(project: &Project, path: &Path) -> String {
    let file = project.display(path);
    if path.exists() {
        format!("disabled in {file} (\"enabled\": false)")
    } else {
        format!("{file} does not exist (`infra init` writes one)")
    }
}

impl Notifier {
    /// A notifier for `project` with the configs in `loaded`; sent alerts are recorded in
    /// `dir` and suppressed for `window` after delivery. A channel that is on but cannot work
    /// as configured is not an error here: every alert reports it as failed.
    pub fn new(
        project: &Project,
        loaded: &Loaded,
        dir: &Path,
        window: Duration,
    ) -> Result<Notifier, LedgerError> {
        let email = if !loaded.email.enabled {
            Channel::Off(off_reason(project, &project.email_path()))
        } else {
            match EmailSender::new(project, &loaded.email) {
                Ok(sender) => Channel::Ready(sender),
                Err(e) => Channel::Broken(e.to_string()),
            }
        };
        let sms = if !loaded.sms.enabled {
            Channel::Off(off_reason(project, &project.sms_path()))
        } else {
            match SmsSender::new(project, &loaded.sms) {
                Ok(sender) => Channel::Ready(sender),
                Err(e) => Channel::Broken(e.to_string()),
            }
        };
        Ok(Notifier {
            templates: Templates::new(project),
            email,
            sms,
            ledger: tokio::sync::Mutex::new(Ledger::open(dir)?),
            window,
        })
    }

    /// Where email goes: `host:port (security)` and the recipients.
    pub fn email_route(&self) -> Route {
        self.email
            .route(|s| (s.server().to_string(), s.recipients()))
    }

    /// Where texts go: the provider and its API URL, and the recipients.
    pub fn sms_route(&self) -> Route {
        self.sms.route(|s| (s.endpoint(), s.recipients().to_vec()))
    }

    /// Renders `alert` for each channel, as it would be sent at `now`.
    pub fn prepare(&self, loaded: &Loaded, alert: &Alert, now: SystemTime) -> Prepared {
        let context = email_context(loaded, alert.event.clone(), now);
        Prepared {
            key: alert.key(),
            email: email::render(&self.templates, alert.template(), &context)
                .map_err(|e| e.to_string()),
            text: alert.text(),
        }
    }

    /// What [`Notifier::send`] would do with `prepared` on `channels`; sends nothing.
    pub fn preview(&self, prepared: &Prepared, channels: Channels) -> PreviewReport {
        let not_asked = || Preview::NotSent {
            reason: "not asked for".into(),
        };
        let email = match (channels.email, self.email_route(), &prepared.email) {
            (false, _, _) => not_asked(),
            (true, Route::Off(reason), _) => Preview::NotSent { reason },
            (true, Route::Broken(error), _) => Preview::WouldFail { error },
            (true, Route::Ready { .. }, Err(error)) => Preview::WouldFail {
                error: error.clone(),
            },
            (true, Route::Ready { via, to }, Ok(email)) => Preview::WouldSend {
                via,
                to,
                subject: Some(email.subject.clone()),
                body: Some(email.body.clone()),
                text: None,
            },
        };
        let sms = match (channels.sms, self.sms_route(), &prepared.text) {
            (false, _, _) => not_asked(),
            (true, _, None) => Preview::NotSent {
                reason: "this alert goes by email only".into(),
            },
            (true, Route::Off(reason), _) => Preview::NotSent { reason },
            (true, Route::Broken(error), _) => Preview::WouldFail { error },
            (true, Route::Ready { via, to }, Some(text)) => Preview::WouldSend {
                via,
                to,
                subject: None,
                body: None,
                text: Some(text.clone()),
            },
        };
        PreviewReport {
            key: prepared.key.clone(),
            dry_run: true,
            email,
            sms,
        }
    }

    /// Sends `alert` on every enabled channel that has not delivered it yet.
    pub async fn alert(&self, loaded: &Loaded, alert: &Alert) -> AlertReport {
        let now = SystemTime::now();
        self.alert_until(loaded, alert, now, now + self.window)
            .await
    }

    /// [`Notifier::alert`] at `now`; the deliveries are remembered until `expires`.
    pub async fn alert_until(
        &self,
        loaded: &Loaded,
        alert: &Alert,
        now: SystemTime,
        expires: SystemTime,
    ) -> AlertReport {
        let mut ledger = self.ledger.lock().await;
        let prepared = self.prepare(loaded, alert, now);
        let suppressed = |channel| {
            ledger
                .sent_at(&prepared.key, channel, now)
                .map(|t| Delivery::Suppressed {
                    sent_at: humantime::format_rfc3339_seconds(t).to_string(),
                })
        };
        let (email_done, sms_done) = (suppressed("email"), suppressed("sms"));
        let channels = Channels {
            email: email_done.is_none(),
            sms: sms_done.is_none(),
        };
        let mut report = self.send(&prepared, channels).await;
        for (channel, delivery, done) in [
            ("email", &mut report.email, email_done),
            ("sms", &mut report.sms, sms_done),
        ] {
            if let Some(done) = done {
                *delivery = done;
            } else if matches!(delivery, Delivery::Sent { .. }) {
                if let Err(e) = ledger.record(&prepared.key, channel, now, expires) {
                    // Sent all the same; a restart may send it once more.
                    tracing::warn!(
                        "{} was sent by {channel} but not recorded: {e}",
                        prepared.key
                    );
                }
            }
        }
        report
    }

    /// Sends the heartbeat if `me` is the monitor that sends it now (the primary sender while
    /// `alive` says so, else the first live backup) and this interval's has not gone out yet.
    /// `None` when another monitor sends it.
    pub async fn heartbeat(
        &self,
        loaded: &Loaded,
        me: &str,
        alive: impl Fn(&str) -> bool,
        now: SystemTime,
    ) -> Option<AlertReport> {
        let config = loaded
            .state
            .heartbeat_config(loaded.email.heartbeat_interval_minutes);
        if heartbeat::sender(&config, alive) != Some(me) {
            return None;
        }
        let alert = heartbeat::alert(&config, me, now);
        let expires = heartbeat::next_due(&config, now);
        Some(self.alert_until(loaded, &alert, now, expires).await)
    }

    /// Sends `prepared` on `channels` now, whatever was sent before (nothing is recorded);
    /// channels not asked for are reported as skipped.
    pub async fn send(&self, prepared: &Prepared, channels: Channels) -> AlertReport {
        let email = async {
            if !channels.email {
                return Delivery::Skipped {
                    reason: "not asked for".into(),
                };
            }
            let sender = match self.email.sender() {
                Ok(sender) => sender,
                Err(delivery) => return delivery,
            };
            match &prepared.email {
                Err(e) => Delivery::Failed { error: e.clone() },
                Ok(email) => match sender.send(email).await {
                    Ok(()) => Delivery::Sent {
                        to: sender.recipients(),
                    },
                    Err(e) => Delivery::Failed {
                        error: e.to_string(),
                    },
                },
            }
        };
        let sms = async {
            if !channels.sms {
                return Delivery::Skipped {
                    reason: "not asked for".into(),
                };
            }
            let Some(text) = &prepared.text else {
                return Delivery::Skipped {
                    reason: "this alert goes by email only".into(),
                };
            };
            let sender = match self.sms.sender() {
                Ok(sender) => sender,
                Err(delivery) => return delivery,
            };
            match sender.send(text).await {
                Ok(()) => Delivery::Sent {
                    to: sender.recipients().to_vec(),
                },
                Err(e) => Delivery::Failed {
                    error: e.to_string(),
                },
            }
        };
        let (email, sms) = tokio::join!(email, sms);
        AlertReport {
            key: prepared.key.clone(),
            email,
            sms,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU16, Ordering};
    use std::sync::{Arc, Mutex};

    use axum::extract::State as AxumState;
    use axum::http::StatusCode;
    use axum::routing::post;
    use axum::{Json, Router};
    use serde_json::Value;

    use super::*;
    use crate::state::State;
    use crate::template::FailureAlert;

    type GatewayState = (Arc<Mutex<Vec<Value>>>, Arc<AtomicU16>);

    /// A stand-in for an SMS gateway (the `http` provider): records each JSON body it gets and
    /// answers with the status set in `status`.
    struct Gateway {
        url: String,
        received: Arc<Mutex<Vec<Value>>>,
        status: Arc<AtomicU16>,
    }

    async fn gateway() -> Gateway {
        let received: Arc<Mutex<Vec<Value>>> = Arc::default();
        let status = Arc::new(AtomicU16::new(200));
        let app = Router::new()
            .route(
                "/send",
                post(
                    |AxumState((received, status)): AxumState<GatewayState>,
                     Json(body): Json<Value>| async move {
                        received.lock().expect("received").push(body);
                        StatusCode::from_u16(status.load(Ordering::SeqCst)).expect("status")
                    },
                ),
            )
            .with_state((received.clone(), status.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/send", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Gateway {
            url,
            received,
            status,
        }
    }

    /// A project with the default spec, email off and SMS on through `sms_url`.
    fn project(sms_url: &str, state_extra: &str) -> (tempfile::TempDir, Project, Loaded) {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("config");
        std::fs::create_dir_all(&config).expect("mkdir");
        let state = crate::project::embedded("config/infrastructure.json")
            .expect("embedded state")
            .replacen("{\n", &format!("{{\n{state_extra}"), 1);
        std::fs::write(config.join("infrastructure.json"), state).expect("write");
        std::fs::write(
            config.join("email_config.json"),
            r#"{"enabled": false, "from": "infra@example.com", "recipients": ["ops@example.com"]}"#,
        )
        .expect("write");
        std::fs::write(
            config.join("sms_config.json"),
            format!(
                r#"{{"enabled": true, "provider": "http", "api_url": "{sms_url}", "from": "+447700900000", "recipients": ["+447700900123"]}}"#
            ),
        )
        .expect("write");
        let project = Project::new(dir.path(), Path::new("config"));
        let path = project.state_path();
        let state = State::load(&path, &project.display(&path)).expect("state");
        let loaded = crate::config::load(&project, state).expect("configs");
        (dir, project, loaded)
    }

    fn failure(droplet: &str, incident: &str) -> Alert {
        Alert {
            event: EmailEvent::FailureAlert(FailureAlert {
                action: None,
                droplet: droplet.into(),
                ip: Some("10.0.0.7".into()),
                error: "no answer to 3 probes".into(),
                reported_by: vec!["master".into()],
                services: vec![],
            }),
            incident: incident.into(),
        }
    }

    #[tokio::test]
    async fn an_event_is_sent_once_even_across_a_restart_and_another_event_is_not_suppressed() {
        let gw = gateway().await;
        let (dir, project, loaded) = project(&gw.url, "");
        let ledger_dir = dir.path().join("ledger");
        let notifier = Notifier::new(&project, &loaded, &ledger_dir, DEFAULT_WINDOW).expect("new");

        let first = notifier
            .alert(&loaded, &failure("hostomatic-web1", "e1"))
            .await;
        assert_eq!(first.key, "failure/hostomatic-web1/e1");
        assert_eq!(
            first.sms,
            Delivery::Sent {
                to: vec!["+447700900123".into()]
            }
        );
        assert!(
            matches!(&first.email, Delivery::Skipped { reason } if reason.contains("disabled in config/email_config.json")),
            "{first:?}"
        );
        let bodies = gw.received.lock().expect("received").clone();
        assert_eq!(bodies.len(), 1);
        assert_eq!(bodies[0]["to"], "+447700900123");
        assert_eq!(bodies[0]["from"], "+447700900000");
        assert_eq!(
            bodies[0]["body"],
            "[infra] ALERT hostomatic-web1 (10.0.0.7) failed: no answer to 3 probes"
        );

        let second = notifier
            .alert(&loaded, &failure("hostomatic-web1", "e1"))
            .await;
        assert!(
            matches!(second.sms, Delivery::Suppressed { .. }),
            "{second:?}"
        );
        let other = notifier
            .alert(&loaded, &failure("hostomatic-web2", "e1"))
            .await;
        assert!(matches!(other.sms, Delivery::Sent { .. }), "{other:?}");
        let next = notifier
            .alert(&loaded, &failure("hostomatic-web1", "e2"))
            .await;
        assert!(matches!(next.sms, Delivery::Sent { .. }), "{next:?}");
        assert_eq!(gw.received.lock().expect("received").len(), 3);

        drop(notifier);
        let restarted = Notifier::new(&project, &loaded, &ledger_dir, DEFAULT_WINDOW).expect("new");
        let again = restarted
            .alert(&loaded, &failure("hostomatic-web1", "e1"))
            .await;
        assert!(
            matches!(again.sms, Delivery::Suppressed { .. }),
            "{again:?}"
        );
        assert_eq!(gw.received.lock().expect("received").len(), 3);
    }

    #[tokio::test]
    async fn a_failed_channel_is_reported_and_tried_again_next_time() {
        let gw = gateway().await;
        gw.status.store(503, Ordering::SeqCst);
        let (dir, project, loaded) = project(&gw.url, "");
        let notifier = Notifier::new(&project, &loaded, dir.path(), DEFAULT_WINDOW).expect("new");
        let alert = failure("hostomatic-web1", "e1");

        let failed = notifier.alert(&loaded, &alert).await;
        let failures = failed.failures();
        assert_eq!(failures.len(), 1, "{failed:?}");
        assert_eq!(failures[0].0, "sms");
        assert!(
            failures[0]
                .1
                .contains("text to +447700900123 through http at")
                && failures[0].1.contains("HTTP 503"),
            "{}",
            failures[0].1
        );

        gw.status.store(200, Ordering::SeqCst);
        let retried = notifier.alert(&loaded, &alert).await;
        assert!(matches!(retried.sms, Delivery::Sent { .. }), "{retried:?}");
        assert_eq!(gw.received.lock().expect("received").len(), 2);
    }

    #[tokio::test]
    async fn an_alert_is_sent_again_once_its_window_has_passed() {
        let gw = gateway().await;
        let (dir, project, loaded) = project(&gw.url, "");
        let notifier = Notifier::new(&project, &loaded, dir.path(), DEFAULT_WINDOW).expect("new");
        let alert = failure("hostomatic-web1", "e1");
        let t0 = SystemTime::now();
        let window = Duration::from_secs(600);
        let a = notifier.alert_until(&loaded, &alert, t0, t0 + window).await;
        let b = notifier
            .alert_until(&loaded, &alert, t0 + window, t0 + window * 2)
            .await;
        assert!(matches!(a.sms, Delivery::Sent { .. }), "{a:?}");
        assert!(matches!(b.sms, Delivery::Sent { .. }), "{b:?}");
    }

    #[tokio::test]
    async fn the_heartbeat_is_sent_by_the_first_live_sender_only() {
        let (dir, project, loaded) = project(
            "http://127.0.0.1:9/unused",
            "  \"heartbeat\": {\"primary_sender\": \"master\", \"backup_senders\": [\"hostomatic-web1\", \"hostomatic-web2\"]},\n",
        );
        let notifier = Notifier::new(&project, &loaded, dir.path(), DEFAULT_WINDOW).expect("new");
        let now = SystemTime::now();
        let master_down = |n: &str| n != "master";
        assert!(notifier
            .heartbeat(&loaded, "master", master_down, now)
            .await
            .is_none());
        assert!(notifier
            .heartbeat(&loaded, "hostomatic-web2", master_down, now)
            .await
            .is_none());
        let report = notifier
            .heartbeat(&loaded, "hostomatic-web1", master_down, now)
            .await
            .expect("web1 sends");
        assert!(
            report.key.starts_with("heartbeat/hostomatic-web1/"),
            "{report:?}"
        );
        assert!(
            matches!(report.email, Delivery::Skipped { .. }),
            "{report:?}"
        );
        assert!(
            matches!(&report.sms, Delivery::Skipped { reason } if reason.contains("email only")),
            "{report:?}"
        );
    }

    #[test]
    fn an_alert_request_is_checked_and_filled_from_the_state() {
        let (_dir, _project, loaded) = project("http://127.0.0.1:9/unused", "");
        let request = |kind: &str, error: Option<&str>| AlertRequest {
            kind: kind.into(),
            droplet: "hostomatic-web1".into(),
            incident: "epoch-3".into(),
            error: error.map(String::from),
            ..AlertRequest::default()
        };
        let alert = request("failure", Some("down"))
            .into_alert(&loaded)
            .expect("valid");
        assert_eq!(alert.key(), "failure/hostomatic-web1/epoch-3");
        assert_eq!(
            alert.text().as_deref(),
            Some("[infra] ALERT hostomatic-web1 failed: down")
        );
        assert_eq!(
            request("failure", None)
                .into_alert(&loaded)
                .expect_err("no error"),
            "a failure alert needs an `error`: what the health check saw"
        );
        assert_eq!(
            request("reboot", None).into_alert(&loaded).expect_err("bad kind"),
            "`reboot` is not an alert kind; use \"failure\" or \"recovery\" (the monitor sends heartbeats itself)"
        );
        let recovery = request("recovery", None)
            .into_alert(&loaded)
            .expect("valid");
        assert_eq!(recovery.template(), "email/recovery_complete.txt.j2");
    }

    #[test]
    fn the_heartbeat_email_renders_from_its_template() {
        let (dir, project, loaded) = project("http://127.0.0.1:9/unused", "");
        let notifier = Notifier::new(&project, &loaded, dir.path(), DEFAULT_WINDOW).expect("new");
        let config = loaded.state.heartbeat_config(60);
        let alert = heartbeat::alert(&config, "master", SystemTime::now());
        let prepared = notifier.prepare(&loaded, &alert, SystemTime::now());
        let email = prepared.email.expect("renders");
        assert_eq!(
            email.subject,
            "[infra] heartbeat from master: 0 droplets, 0 services"
        );
        assert!(
            email.body.starts_with("Heartbeat from master at "),
            "{}",
            email.body
        );
        assert_eq!(prepared.text, None);
    }
}
