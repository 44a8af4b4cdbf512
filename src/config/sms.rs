//! `config/sms_config.json`: the SMS provider and who gets texts.

use serde::Serialize;
use serde_json::Value;

use super::email::{check_env_name, check_no_secret_values, SECRET_VALUE_KEYS};
use crate::schema::Checker;

pub const PROVIDERS: &[&str] = &["twilio", "http"];

/// The keys infra reads in sms_config.json, in one place: a key added to the format is one line
/// here. Any other key is reported as unknown, with the nearest of these; keys starting with
/// `x-` are the user's own.
pub const KEYS: &[&str] = &[
    "enabled",
    "provider",
    "api_url",
    "account_sid_env",
    "auth_token_env",
    "from",
    "recipients",
];

#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct SmsConfig {
    pub enabled: bool,
    pub provider: Option<String>,
    pub api_url: Option<String>,
    pub account_sid_env: Option<String>,
    pub auth_token_env: Option<String>,
    pub from: Option<String>,
    pub recipients: Vec<String>,
}

/// E.164: `+` then 8 to 15 digits.
pub fn phone_problem(s: &str) -> Option<String> {
    let digits = s.strip_prefix('+').unwrap_or("");
    let valid = (8..=15).contains(&digits.len()) && digits.chars().all(|c| c.is_ascii_digit());
    (!valid).then(|| {
        format!("`{s}` is not a phone number in international form; use one like \"+447700900123\"")
    })
}

impl SmsConfig {
    pub fn check(c: &mut Checker, value: &Value) -> SmsConfig {
        let mut config = SmsConfig::default();
        let Some(root) = c.object("", value) else {
            return config;
        };
        c.unknown_keys(root, "", KEYS, SECRET_VALUE_KEYS);
        check_no_secret_values(c, "", root);
        config.enabled = c.opt_bool(root, "", "enabled").unwrap_or(false);
        config.provider = root
            .get("provider")
            .and_then(|v| c.one_of("provider", v, PROVIDERS));
        config.api_url = c.opt_string(root, "", "api_url", "\"https://api.twilio.com/2010-04-01\"");
        if let Some(url) = &config.api_url {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                c.error("api_url", format!("`{url}` is not an http(s) URL"));
            }
        }
        config.account_sid_env = check_env_name(c, root, "", "account_sid_env");
        config.auth_token_env = check_env_name(c, root, "", "auth_token_env");
        if let Some(from) = c.opt_string(root, "", "from", "\"+447700900000\"") {
            match phone_problem(&from) {
                Some(message) => c.error("from", message),
                None => config.from = Some(from),
            }
        }
        if let Some(v) = root.get("recipients") {
            if let Some(list) = c.string_list("recipients", v, "[\"+447700900123\"]", phone_problem)
            {
                config.recipients = list;
            }
        }
        if config.enabled && config.provider.is_none() && !root.contains_key("provider") {
            c.error(
                "provider",
                "missing; SMS is enabled, so name the provider: \"twilio\" or \"http\"",
            );
        }
        config
    }
}
