//! Alert texts through the SMS provider's HTTP API, as `config/sms_config.json` says:
//!
//! - `twilio`: `POST {api_url}/Accounts/{sid}/Messages.json`, form fields `To`, `From`, `Body`,
//!   basic auth `sid:token` (both from the variables `account_sid_env` and `auth_token_env`
//!   name); `api_url` defaults to `https://api.twilio.com/2010-04-01`.
//! - `http`: any gateway that takes JSON: `POST {api_url}` with `{"to", "from", "body"}`
//!   (`from` is null when not configured), and `Authorization: Bearer <token>` when
//!   `auth_token_env` names a variable.
//!
//! One request per recipient. Credentials are read when the sender is made; they never appear
//! in a message: the account SID is left out of URLs shown, and a provider's reply is scrubbed
//! of both before it is quoted.

use std::time::Duration;

use crate::config::sms::SmsConfig;
use crate::project::Project;

/// Twilio's API root, when `api_url` is not given.
pub const TWILIO_API_URL: &str = "https://api.twilio.com/2010-04-01";

/// The longest text sent: one SMS segment.
pub const MAX_TEXT: usize = 160;

const TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum SmsError {
    #[error("{file}: {key}: {message}")]
    Config {
        file: String,
        key: &'static str,
        message: String,
    },
    #[error("{file}: {key} names `{variable}`, which is not set; export it where infra runs")]
    VariableUnset {
        file: String,
        key: &'static str,
        variable: String,
    },
    #[error("cannot set up the HTTP client: {0}")]
    Client(String),
    /// Some recipients did not get the text: one line per recipient.
    #[error("{}", .0.join("; "))]
    Send(Vec<String>),
}

enum Provider {
    Twilio {
        /// `{api_url}/Accounts/{sid}/Messages.json`.
        url: String,
        sid: String,
        token: String,
    },
    Http {
        url: String,
        token: Option<String>,
    },
}

/// The provider's API, credentials and who gets texts.
pub struct SmsSender {
    client: reqwest::Client,
    provider: Provider,
    /// `api_url` as configured: what messages name (never the URL with the account SID).
    api_url: String,
    from: Option<String>,
    recipients: Vec<String>,
}

/// `text` on one line, at most [`MAX_TEXT`] characters.
pub fn one_line(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= MAX_TEXT {
        return line;
    }
    let mut short: String = line.chars().take(MAX_TEXT - 1).collect();
    short.push('…');
    short
}

impl SmsSender {
    /// The sender for `config`, whose file is `project`'s sms_config.json. Fails when a key it
    /// needs is missing or a credential variable is unset; whether SMS is enabled is the
    /// caller's question.
    pub fn new(project: &Project, config: &SmsConfig) -> Result<SmsSender, SmsError> {
        let file = project.display(&project.sms_path());
        let problem = |key: &'static str, message: &str| SmsError::Config {
            file: file.clone(),
            key,
            message: message.to_string(),
        };
        let read = |key: &'static str, name: &Option<String>| -> Result<Option<String>, SmsError> {
            let Some(variable) = name else {
                return Ok(None);
            };
            match std::env::var(variable).ok().filter(|v| !v.is_empty()) {
                Some(value) => Ok(Some(value)),
                None => Err(SmsError::VariableUnset {
                    file: file.clone(),
                    key,
                    variable: variable.clone(),
                }),
            }
        };
        if config.recipients.is_empty() {
            return Err(problem(
                "recipients",
                "no one to text; add e.g. \"recipients\": [\"+447700900123\"]",
            ));
        }
        let (provider, api_url) = match config.provider.as_deref() {
            Some("twilio") => {
                let api_url = config
                    .api_url
                    .clone()
                    .unwrap_or_else(|| TWILIO_API_URL.to_string());
                if config.from.is_none() {
                    return Err(problem(
                        "from",
                        "missing; Twilio needs the number texts come from, e.g. \"from\": \"+447700900000\"",
                    ));
                }
                let sid = read("account_sid_env", &config.account_sid_env)?.ok_or_else(|| {
                    problem(
                        "account_sid_env",
                        "missing; name the variable holding the Twilio account SID, e.g. \"account_sid_env\": \"TWILIO_ACCOUNT_SID\"",
                    )
                })?;
                let token = read("auth_token_env", &config.auth_token_env)?.ok_or_else(|| {
                    problem(
                        "auth_token_env",
                        "missing; name the variable holding the Twilio auth token, e.g. \"auth_token_env\": \"TWILIO_AUTH_TOKEN\"",
                    )
                })?;
                let url = format!(
                    "{}/Accounts/{sid}/Messages.json",
                    api_url.trim_end_matches('/')
                );
                (Provider::Twilio { url, sid, token }, api_url)
            }
            Some("http") => {
                let Some(api_url) = config.api_url.clone() else {
                    return Err(problem(
                        "api_url",
                        "missing; the http provider posts JSON to this URL, e.g. \"api_url\": \"https://sms.example.com/send\"",
                    ));
                };
                let token = read("auth_token_env", &config.auth_token_env)?;
                (
                    Provider::Http {
                        url: api_url.clone(),
                        token,
                    },
                    api_url,
                )
            }
            Some(other) => {
                return Err(problem(
                    "provider",
                    &format!("`{other}` is not a provider infra knows; use \"twilio\" or \"http\""),
                ))
            }
            None => {
                return Err(problem(
                    "provider",
                    "missing; name the provider: \"twilio\" or \"http\"",
                ))
            }
        };
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| SmsError::Client(e.without_url().to_string()))?;
        Ok(SmsSender {
            client,
            provider,
            api_url,
            from: config.from.clone(),
            recipients: config.recipients.clone(),
        })
    }

    pub fn recipients(&self) -> &[String] {
        &self.recipients
    }

    /// `provider at api_url`, for messages.
    pub fn endpoint(&self) -> String {
        let provider = match self.provider {
            Provider::Twilio { .. } => "twilio",
            Provider::Http { .. } => "http",
        };
        format!("{provider} at {}", self.api_url)
    }

    /// Texts `text` (made one line of at most [`MAX_TEXT`] characters) to every recipient.
    /// Fails, naming each recipient that did not get it, if any did not.
    pub async fn send(&self, text: &str) -> Result<(), SmsError> {
        let text = one_line(text);
        let sends = self.recipients.iter().map(|to| self.send_one(to, &text));
        let failures: Vec<String> = futures_util::future::join_all(sends)
            .await
            .into_iter()
            .filter_map(Result::err)
            .collect();
        if failures.is_empty() {
            Ok(())
        } else {
            Err(SmsError::Send(failures))
        }
    }

    async fn send_one(&self, to: &str, text: &str) -> Result<(), String> {
        let request = match &self.provider {
            Provider::Twilio { url, sid, token } => {
                self.client.post(url).basic_auth(sid, Some(token)).form(&[
                    ("To", to),
                    ("From", self.from.as_deref().unwrap_or_default()),
                    ("Body", text),
                ])
            }
            Provider::Http { url, token } => {
                let request = self.client.post(url).json(&serde_json::json!({
                    "to": to,
                    "from": self.from,
                    "body": text,
                }));
                match token {
                    Some(token) => request.bearer_auth(token),
                    None => request,
                }
            }
        };
        let endpoint = self.endpoint();
        let response = request.send().await.map_err(|e| {
            format!(
                "text to {to} through {endpoint} failed: {}; check `api_url` and that it is reachable from here",
                e.without_url()
            )
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = response.text().await.unwrap_or_default();
        let hint = if status.as_u16() == 401 || status.as_u16() == 403 {
            "check the credentials in the variables `account_sid_env` and `auth_token_env` name"
        } else {
            "check `from`, `recipients` and the provider's account"
        };
        Err(format!(
            "text to {to} through {endpoint} failed: HTTP {status}: {}; {hint}",
            self.scrub(&reply_message(&body))
        ))
    }

    /// `text` without any credential in it.
    fn scrub(&self, text: &str) -> String {
        let secrets: Vec<&str> = match &self.provider {
            Provider::Twilio { sid, token, .. } => vec![sid, token],
            Provider::Http { token, .. } => token.iter().map(String::as_str).collect(),
        };
        secrets
            .into_iter()
            .filter(|s| !s.is_empty())
            .fold(text.to_string(), |t, s| t.replace(s, "***"))
    }
}

/// The provider's explanation: a JSON reply's `message` (Twilio's error format) or `error`, else
/// the start of the body.
fn reply_message(body: &str) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let field = parsed.as_ref().and_then(|v| {
        ["message", "error"]
            .iter()
            .find_map(|k| v.get(k).and_then(|m| m.as_str()).map(str::to_string))
    });
    let text = field.unwrap_or_else(|| body.trim().to_string());
    let text: String = text.chars().take(200).collect();
    if text.is_empty() {
        "no explanation in the reply".to_string()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_one_short_line() {
        assert_eq!(one_line("a\n  b\tc"), "a b c");
        let long = "x".repeat(500);
        let short = one_line(&long);
        assert_eq!(short.chars().count(), MAX_TEXT);
        assert!(short.ends_with('…'));
    }

    #[test]
    fn a_reply_is_quoted_by_its_message() {
        assert_eq!(
            reply_message(r#"{"code":20003,"message":"Authenticate","status":401}"#),
            "Authenticate"
        );
        assert_eq!(reply_message("  bad gateway \n"), "bad gateway");
        assert_eq!(reply_message(""), "no explanation in the reply");
    }
}
