//! `config/email_config.json`: SMTP settings, recipients and the heartbeat interval.

use serde::Serialize;
use serde_json::Value;

use crate::schema::{join, Checker};

pub const SECURITY: &[&str] = &["starttls", "tls", "none"];

// The keys infra reads in each object of email_config.json, one place per object: a key added
// to the format is one line here. Any other key is reported as unknown, with the nearest of
// these; keys starting with `x-` are the user's own.

/// Keys at the top of the file.
pub const ROOT_KEYS: &[&str] = &["enabled", "smtp", "from", "recipients", "heartbeat"];

/// Keys of `smtp`.
pub const SMTP_KEYS: &[&str] = &[
    "host",
    "port",
    "username",
    "password_env",
    "security",
    "ca_file",
];

/// Keys of `heartbeat`.
pub const HEARTBEAT_KEYS: &[&str] = &["interval_minutes"];

/// Keys that would hold a secret's value; [`check_no_secret_values`] reports them.
pub const SECRET_VALUE_KEYS: &[&str] = &["password", "token", "auth_token", "api_key", "secret"];

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    /// Name of the environment variable holding the password; never the password.
    pub password_env: Option<String>,
    pub security: String,
    /// A PEM file of certificates trusted besides the system's roots (a private relay's CA),
    /// relative to the config directory unless absolute.
    pub ca_file: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EmailConfig {
    pub enabled: bool,
    pub smtp: Option<SmtpConfig>,
    pub from: Option<String>,
    pub recipients: Vec<String>,
    pub heartbeat_interval_minutes: u32,
}

impl Default for EmailConfig {
    fn default() -> Self {
        EmailConfig {
            enabled: false,
            smtp: None,
            from: None,
            recipients: Vec::new(),
            heartbeat_interval_minutes: 60,
        }
    }
}

pub fn email_problem(s: &str) -> Option<String> {
    let valid = s
        .split_once('@')
        .is_some_and(|(user, host)| !user.is_empty() && host.contains('.') && !s.contains(' '));
    (!valid).then(|| format!("`{s}` is not an email address; use one like \"ops@example.com\""))
}

pub fn env_var_problem(s: &str) -> Option<String> {
    let valid = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        && !s.starts_with(|c: char| c.is_ascii_digit());
    (!valid).then(|| {
        format!("`{s}` is not an environment variable name; use upper-case letters, digits and underscores, like \"SMTP_PASSWORD\"")
    })
}

/// Keys that would hold a secret's value. Config files name environment variables instead.
pub fn check_no_secret_values(c: &mut Checker, path: &str, map: &serde_json::Map<String, Value>) {
    for &key in SECRET_VALUE_KEYS {
        if map.contains_key(key) {
            c.error(
                &join(path, key),
                format!("secrets are not stored in config files; put it in an environment variable and set `{key}_env` to that variable's name"),
            );
        }
    }
}

pub fn check_env_name(
    c: &mut Checker,
    map: &serde_json::Map<String, Value>,
    path: &str,
    key: &str,
) -> Option<String> {
    let name = c.opt_string(map, path, key, "\"SMTP_PASSWORD\"")?;
    match env_var_problem(&name) {
        Some(message) => {
            c.error(&join(path, key), message);
            None
        }
        None => Some(name),
    }
}

impl EmailConfig {
    pub fn check(c: &mut Checker, value: &Value) -> EmailConfig {
        let mut config = EmailConfig::default();
        let Some(root) = c.object("", value) else {
            return config;
        };
        c.unknown_keys(root, "", ROOT_KEYS, &[]);
        config.enabled = c.opt_bool(root, "", "enabled").unwrap_or(true);
        if let Some(smtp) = c.opt_object(root, "", "smtp") {
            c.unknown_keys(smtp, "smtp", SMTP_KEYS, SECRET_VALUE_KEYS);
            check_no_secret_values(c, "smtp", smtp);
            let host = c.req_string(smtp, "smtp", "host", "\"smtp.example.com\"");
            let port = c.opt_integer(smtp, "smtp", "port", 1, 65535).unwrap_or(587) as u16;
            let security = match smtp.get("security") {
                None => Some("starttls".to_string()),
                Some(v) => c.one_of("smtp.security", v, SECURITY),
            };
            let username = c.opt_string(smtp, "smtp", "username", "\"alerts@example.com\"");
            let password_env = check_env_name(c, smtp, "smtp", "password_env");
            let ca_file = c.opt_string(smtp, "smtp", "ca_file", "\"relay-ca.pem\"");
            if ca_file.as_deref().is_some_and(|f| f.trim().is_empty()) {
                c.error(
                    "smtp.ca_file",
                    "empty; name a PEM file of the relay's CA certificate, relative to the config directory, or remove the key",
                );
            }
            if ca_file.is_some() && security.as_deref() == Some("none") {
                c.error(
                    "smtp.ca_file",
                    "a CA file is only used with \"security\": \"starttls\" or \"tls\"; remove it or change `smtp.security`",
                );
            }
            if let (Some(host), Some(security)) = (host, security) {
                config.smtp = Some(SmtpConfig {
                    host,
                    port,
                    username,
                    password_env,
                    security,
                    ca_file,
                });
            }
        } else if config.enabled && root.contains_key("recipients") && !root.contains_key("smtp") {
            c.error(
                "smtp",
                "missing; add the SMTP server, e.g. \"smtp\": {\"host\": \"smtp.example.com\", \"port\": 587}",
            );
        }
        if let Some(from) = c.opt_string(root, "", "from", "\"infra@example.com\"") {
            match email_problem(&from) {
                Some(message) => c.error("from", message),
                None => config.from = Some(from),
            }
        }
        if let Some(v) = root.get("recipients") {
            if let Some(list) =
                c.string_list("recipients", v, "[\"ops@example.com\"]", email_problem)
            {
                config.recipients = list;
            }
        }
        if let Some(hb) = c.opt_object(root, "", "heartbeat") {
            c.unknown_keys(hb, "heartbeat", HEARTBEAT_KEYS, &[]);
            if let Some(n) = c.opt_integer(hb, "heartbeat", "interval_minutes", 1, 10080) {
                config.heartbeat_interval_minutes = n as u32;
            }
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn problems(value: Value) -> (EmailConfig, Vec<String>) {
        let mut c = Checker::new("config/email_config.json");
        let config = EmailConfig::check(&mut c, &value);
        (config, c.problems.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn a_ca_file_is_read_for_tls_and_refused_without_it() {
        let (config, found) = problems(json!({
            "smtp": {"host": "relay.internal", "security": "tls", "ca_file": "relay-ca.pem"}
        }));
        assert!(found.is_empty(), "{found:?}");
        let smtp = config.smtp.expect("smtp");
        assert_eq!(smtp.ca_file.as_deref(), Some("relay-ca.pem"));
        assert_eq!(smtp.port, 587);

        let (_, found) = problems(json!({
            "smtp": {"host": "relay.internal", "security": "none", "ca_file": "relay-ca.pem"}
        }));
        assert_eq!(
            found,
            ["config/email_config.json: smtp.ca_file: a CA file is only used with \"security\": \"starttls\" or \"tls\"; remove it or change `smtp.security`"]
        );
    }
}
