//! The DigitalOcean API token, kept out of every log line, error and `--json` document.

use std::fmt;

use reqwest::header::HeaderValue;

use crate::cloud::error::CloudError;

/// A DigitalOcean API token.
///
/// `Debug` and `Display` print `***`, and there is deliberately no `Serialize`, so the token
/// cannot reach a log, an error message or `--json` output by accident. The only way out is the
/// `Authorization` header, which is marked sensitive so `reqwest`/`hyper` never print it either.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// Checks that `raw` can travel in an HTTP header; surrounding whitespace (a pasted newline)
    /// is dropped.
    pub fn new(raw: impl Into<String>) -> Result<Token, CloudError> {
        let raw = raw.into();
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(CloudError::MissingToken);
        }
        // Checked here rather than left to `HeaderValue`, whose error would surface later and
        // far from the variable the user has to fix.
        if !trimmed.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(CloudError::InvalidToken {
                reason: "it contains spaces or characters that are not printable ASCII",
            });
        }
        Ok(Token(trimmed.to_owned()))
    }

    /// The `Authorization: Bearer ...` header value, marked sensitive.
    pub(crate) fn authorization(&self) -> HeaderValue {
        let mut value = HeaderValue::from_str(&format!("Bearer {}", self.0))
            .expect("Token::new admits only printable ASCII");
        value.set_sensitive(true);
        value
    }

    /// Replaces every occurrence of the token in `text` (a server message, a transport error)
    /// with `***`, in case anything ever echoes it back.
    pub(crate) fn redact(&self, text: &str) -> String {
        text.replace(&self.0, "***")
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_the_token() {
        let token = Token::new("dop_v1_secret").unwrap();
        assert_eq!(format!("{token:?}"), "***");
        assert_eq!(token.to_string(), "***");
        assert_eq!(format!("{:?}", Some(&token)), "Some(***)");
    }

    #[test]
    fn authorization_header_carries_the_token_and_is_sensitive() {
        let header = Token::new(" dop_v1_secret\n").unwrap().authorization();
        assert_eq!(header.to_str().unwrap(), "Bearer dop_v1_secret");
        assert!(header.is_sensitive());
        assert!(!format!("{header:?}").contains("secret"));
    }

    #[test]
    fn empty_or_unprintable_tokens_are_refused() {
        assert!(matches!(Token::new("  \n"), Err(CloudError::MissingToken)));
        assert!(matches!(
            Token::new("two words"),
            Err(CloudError::InvalidToken { .. })
        ));
    }

    #[test]
    fn redact_removes_every_copy() {
        let token = Token::new("abc123").unwrap();
        assert_eq!(token.redact("x abc123 y abc123"), "x *** y ***");
    }
}
