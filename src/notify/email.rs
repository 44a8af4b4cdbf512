//! Alert email over SMTP (lettre): the connection exactly as `config/email_config.json` says
//! (`starttls`, implicit `tls` or `none`), the password from the variable `smtp.password_env`
//! names, and an optional `smtp.ca_file` trusted besides the system's roots.
//!
//! The password is read from the environment when the sender is made and goes only to the
//! SMTP server: no message, log line or error here contains it.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::email::EmailConfig;
use crate::project::Project;
use crate::template::{split_email, EmailContext, TemplateError, Templates};

/// How long one SMTP conversation may take before it counts as failed.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum EmailError {
    /// A key the sender needs is missing from email_config.json.
    #[error("{file}: {key}: {message}")]
    Config {
        file: String,
        key: &'static str,
        message: String,
    },
    #[error("{file}: smtp.password_env names `{variable}`, which is not set; export the SMTP password in `{variable}` where infra runs")]
    PasswordUnset { file: String, variable: String },
    #[error("{file}: smtp.ca_file: cannot use {path}: {cause}; give a PEM file of the relay's CA certificate, relative to the config directory")]
    CaFile {
        file: String,
        /// As shown to the user: relative to the project where it is inside it.
        path: String,
        cause: String,
    },
    #[error("{file}: `{address}` is not an address SMTP accepts ({cause})")]
    Address {
        file: String,
        address: String,
        cause: String,
    },
    #[error("cannot set up TLS for {server}: {cause}")]
    Tls { server: String, cause: String },
    #[error("the email could not be built: {0}")]
    Build(String),
    #[error("sending through {server} failed: {cause}; {hint}")]
    Send {
        server: String,
        cause: String,
        hint: &'static str,
    },
}

/// A rendered email: the template's first line is the subject.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Email {
    pub subject: String,
    pub body: String,
}

/// Renders `template` (under `templates/`, like `email/failure_alert.txt.j2`) with `context`.
pub fn render(
    templates: &Templates,
    template: &str,
    context: &EmailContext,
) -> Result<Email, TemplateError> {
    let text = templates.render(template, context)?;
    let (subject, body) = split_email(template, &text)?;
    Ok(Email {
        subject: subject.to_string(),
        body: body.to_string(),
    })
}

/// An SMTP connection as configured and the addresses mail goes from and to.
pub struct EmailSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
    /// `host:port (security)`, for messages.
    server: String,
}

fn parse_mailbox(file: &str, address: &str) -> Result<Mailbox, EmailError> {
    address
        .parse()
        .map_err(|e: lettre::address::AddressError| EmailError::Address {
            file: file.to_string(),
            address: address.to_string(),
            cause: e.to_string(),
        })
}

impl EmailSender {
    /// The sender for `config`, whose file is `project`'s email_config.json. Fails when a key
    /// it needs is missing, the password variable is unset or the CA file cannot be read;
    /// whether email is enabled is the caller's question.
    pub fn new(project: &Project, config: &EmailConfig) -> Result<EmailSender, EmailError> {
        let file = project.display(&project.email_path());
        let missing = |key: &'static str, message: &str| EmailError::Config {
            file: file.clone(),
            key,
            message: message.to_string(),
        };
        let Some(smtp) = &config.smtp else {
            return Err(missing(
                "smtp",
                "missing; add the SMTP server, e.g. \"smtp\": {\"host\": \"smtp.example.com\", \"port\": 587}",
            ));
        };
        let Some(from) = &config.from else {
            return Err(missing(
                "from",
                "missing; add the sender, e.g. \"from\": \"infra@example.com\"",
            ));
        };
        if config.recipients.is_empty() {
            return Err(missing(
                "recipients",
                "no one to send to; add e.g. \"recipients\": [\"ops@example.com\"]",
            ));
        }
        let from = parse_mailbox(&file, from)?;
        let to = config
            .recipients
            .iter()
            .map(|r| parse_mailbox(&file, r))
            .collect::<Result<Vec<_>, _>>()?;
        let server = format!("{}:{} ({})", smtp.host, smtp.port, smtp.security);

        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host)
            .port(smtp.port)
            .timeout(Some(SEND_TIMEOUT));
        if smtp.security != "none" {
            let mut params = TlsParameters::builder(smtp.host.clone());
            if let Some(ca) = &smtp.ca_file {
                let path = project.config_dir.join(ca);
                let ca_error = |cause: String| EmailError::CaFile {
                    file: file.clone(),
                    path: project.display(&path),
                    cause,
                };
                let pem = std::fs::read(&path).map_err(|e| ca_error(e.to_string()))?;
                let cert = Certificate::from_pem(&pem)
                    .map_err(|e| ca_error(format!("not PEM certificates: {e}")))?;
                if !String::from_utf8_lossy(&pem).contains("BEGIN CERTIFICATE") {
                    return Err(ca_error("it holds no PEM certificate".to_string()));
                }
                params = params.add_root_certificate(cert);
            }
            let params = params.build_rustls().map_err(|e| EmailError::Tls {
                server: server.clone(),
                cause: e.to_string(),
            })?;
            builder = builder.tls(if smtp.security == "tls" {
                Tls::Wrapper(params)
            } else {
                Tls::Required(params)
            });
        } else {
            builder = builder.tls(Tls::None);
        }
        if let Some(variable) = &smtp.password_env {
            let password = std::env::var(variable)
                .ok()
                .filter(|p| !p.is_empty())
                .ok_or_else(|| EmailError::PasswordUnset {
                    file: file.clone(),
                    variable: variable.clone(),
                })?;
            let user = smtp
                .username
                .clone()
                .unwrap_or_else(|| from.email.to_string());
            builder = builder.credentials(Credentials::new(user, password));
        } else if smtp.username.is_some() {
            return Err(missing(
                "smtp.password_env",
                "missing while smtp.username is set; name the variable holding the password, e.g. \"password_env\": \"SMTP_PASSWORD\"",
            ));
        }
        Ok(EmailSender {
            transport: builder.build(),
            from,
            to,
            server,
        })
    }

    /// `host:port (security)`.
    pub fn server(&self) -> &str {
        &self.server
    }

    pub fn recipients(&self) -> Vec<String> {
        self.to.iter().map(|m| m.email.to_string()).collect()
    }

    /// Sends `email` to every recipient in one SMTP conversation.
    pub async fn send(&self, email: &Email) -> Result<(), EmailError> {
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(email.subject.clone())
            .header(ContentType::TEXT_PLAIN);
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        let message = builder
            .body(email.body.clone())
            .map_err(|e| EmailError::Build(e.to_string()))?;
        self.transport
            .send(message)
            .await
            .map(drop)
            .map_err(|e| EmailError::Send {
                server: self.server.clone(),
                cause: e.to_string(),
                hint: hint(&e),
            })
    }
}

/// What to do about a failed send, by what failed.
fn hint(e: &lettre::transport::smtp::Error) -> &'static str {
    // A certificate rejected during an implicit-TLS connect arrives as a connection error.
    let text = e.to_string();
    if e.is_tls() || text.contains("certificate") || text.contains("handshake") {
        "check `smtp.security` (starttls or tls as the server expects) and that the server's certificate is trusted (`smtp.ca_file` for a private CA)"
    } else if e.status().is_some_and(|c| c.to_string().starts_with("53")) {
        "the server refused the login: check `smtp.username` and the password in the variable `smtp.password_env` names"
    } else if e.is_permanent() {
        "the server refused the message: check `from` and `recipients`"
    } else if e.is_transient() {
        "the server asked to try later; the next alert retries"
    } else {
        "check `smtp.host`, `smtp.port` and `smtp.security`, and that the server is reachable from here"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::email::SmtpConfig;

    fn config(security: &str, ca_file: Option<&str>, password_env: Option<&str>) -> EmailConfig {
        EmailConfig {
            enabled: true,
            smtp: Some(SmtpConfig {
                host: "relay.internal".into(),
                port: 465,
                username: None,
                password_env: password_env.map(String::from),
                security: security.into(),
                ca_file: ca_file.map(String::from),
            }),
            from: Some("infra@example.com".into()),
            recipients: vec!["ops@example.com".into()],
            heartbeat_interval_minutes: 60,
        }
    }

    fn error(config: &EmailConfig) -> String {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("config")).expect("mkdir");
        std::fs::write(dir.path().join("config/not-pem.pem"), "hello").expect("write");
        let project = Project::new(dir.path(), std::path::Path::new("config"));
        match EmailSender::new(&project, config) {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_missing_or_unusable_ca_file_is_named_with_what_to_do() {
        assert_eq!(
            error(&config("tls", Some("relay-ca.pem"), None)),
            "config/email_config.json: smtp.ca_file: cannot use config/relay-ca.pem: No such file or directory (os error 2); give a PEM file of the relay's CA certificate, relative to the config directory"
        );
        assert_eq!(
            error(&config("tls", Some("not-pem.pem"), None)),
            "config/email_config.json: smtp.ca_file: cannot use config/not-pem.pem: it holds no PEM certificate; give a PEM file of the relay's CA certificate, relative to the config directory"
        );
    }

    #[test]
    fn an_unset_password_variable_is_named() {
        assert_eq!(
            error(&config("starttls", None, Some("INFRA_TEST_UNSET_SMTP_PASSWORD"))),
            "config/email_config.json: smtp.password_env names `INFRA_TEST_UNSET_SMTP_PASSWORD`, which is not set; export the SMTP password in `INFRA_TEST_UNSET_SMTP_PASSWORD` where infra runs"
        );
    }
}
