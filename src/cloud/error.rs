//! What can go wrong when talking to DigitalOcean, and what the user can do about it.

use std::time::Duration;

use thiserror::Error;

/// An error from the DigitalOcean client.
///
/// Messages never contain the API token: server text and transport errors are passed through
/// [`Token::redact`](crate::cloud::Token) and `reqwest` errors are stripped of their URL before
/// they are turned into text.
#[derive(Debug, Error)]
pub enum CloudError {
    #[error(
        "`DO_TOKEN` is not set; create a personal access token with read and write scope in the \
         DigitalOcean control panel (API > Tokens) and `export DO_TOKEN=...`, or start the local \
         sandbox with `infra sandbox up` and export the variables it prints"
    )]
    MissingToken,

    #[error(
        "`DO_TOKEN` is not a usable token: {reason}; copy the token again without extra characters"
    )]
    InvalidToken { reason: &'static str },

    #[error(
        "`DO_API_URL` {reason}; set it to an http(s) URL such as https://api.digitalocean.com, or \
         unset it to use DigitalOcean itself"
    )]
    InvalidBaseUrl { reason: String },

    #[error(
        "could not set up an HTTP client: {cause}; check the system's TLS and network \
         configuration"
    )]
    HttpSetup { cause: String },

    /// DigitalOcean answered with an error status.
    #[error(transparent)]
    Api(Box<ApiError>),

    /// The request never got an HTTP answer, on every attempt.
    #[error(
        "could not reach DigitalOcean for {endpoint} after {attempts} attempt(s): {cause}; check \
         the network connection and `DO_API_URL`, then run again"
    )]
    Transport {
        endpoint: String,
        attempts: u32,
        cause: String,
    },

    /// A request that is not safe to repeat (a create, an action) failed after it may have
    /// reached DigitalOcean, so it may or may not have taken effect. It was not retried.
    #[error(
        "{endpoint} may or may not have taken effect ({cause}); it was not retried because \
         repeating it could act twice: check the resource first (for a droplet, list droplets by \
         its tag) and only then try again"
    )]
    Ambiguous { endpoint: String, cause: String },

    #[error(
        "could not understand DigitalOcean's answer to {endpoint} (status {status}): {cause}; if \
         `DO_API_URL` points at a proxy or sandbox, check that it speaks DigitalOcean's API v2"
    )]
    Decode {
        endpoint: String,
        status: u16,
        cause: String,
    },

    #[error(
        "a pagination link from {endpoint} was refused: {reason}; check that `DO_API_URL` points \
         at the API itself"
    )]
    Pagination { endpoint: String, reason: String },

    #[error(
        "DigitalOcean action {id} ({kind}) on {resource} errored; look at the resource in the \
         control panel, fix the cause and run again"
    )]
    ActionErrored {
        id: u64,
        kind: String,
        resource: String,
    },

    #[error(
        "DigitalOcean action {id} ({kind}) on {resource} was still running after {}s; it may \
         still finish: check it later before starting it again",
        waited.as_secs()
    )]
    ActionTimedOut {
        id: u64,
        kind: String,
        resource: String,
        waited: Duration,
    },

    /// The caller asked for something the API cannot express; nothing was sent.
    #[error("{0}")]
    InvalidRequest(String),
}

impl CloudError {
    /// The HTTP status DigitalOcean answered with, when there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            CloudError::Api(api) => Some(api.status),
            CloudError::Decode { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// True for a 404: the resource does not exist (any more).
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// True when a non-repeatable request may or may not have taken effect.
    pub fn is_ambiguous(&self) -> bool {
        matches!(self, CloudError::Ambiguous { .. })
    }
}

impl From<ApiError> for CloudError {
    fn from(error: ApiError) -> Self {
        CloudError::Api(Box::new(error))
    }
}

/// An error status from DigitalOcean, with the fields of its error body.
///
/// DigitalOcean's errors are `{"id", "message", "request_id"}`; a few endpoints (tags) answer
/// `{"error", "messages", "root_causes"}` instead, which lands in `message` too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// Method and path of the request, e.g. `GET /v2/droplets/1` (never the host or token).
    pub endpoint: String,
    pub status: u16,
    /// DigitalOcean's short error id, e.g. `not_found`.
    pub id: Option<String>,
    pub message: String,
    /// Quote this to DigitalOcean support.
    pub request_id: Option<String>,
    /// How many times the request was sent.
    pub attempts: u32,
    /// For 429: how long DigitalOcean asked us to wait, when it said.
    pub retry_after: Option<Duration>,
}

impl ApiError {
    /// What the user can do about this error.
    pub fn hint(&self) -> String {
        match self.status {
            401 => "check that `DO_TOKEN` holds a valid, unexpired DigitalOcean API token".into(),
            403 => "the token lacks a scope this call needs; create a token with read and write \
                    scope and update `DO_TOKEN`"
                .into(),
            404 => "the resource does not exist (any more); check the id, or refresh the recorded \
                    state with `infra status`"
                .into(),
            400 | 422 => "DigitalOcean refused the values sent; fix the ones the message names \
                          (in the spec or config) and run again"
                .into(),
            429 => match self.retry_after {
                Some(wait) => format!(
                    "DigitalOcean is rate limiting this token (250 requests a minute, 5000 an \
                     hour); wait {}s and run again, or run fewer operations at once",
                    wait.as_secs().max(1)
                ),
                None => "DigitalOcean is rate limiting this token (250 requests a minute, 5000 \
                         an hour); wait a minute and run again, or run fewer operations at once"
                    .into(),
            },
            500..=599 => "DigitalOcean had a server error; run again later, and if it persists \
                          quote the request id to DigitalOcean support"
                .into(),
            _ => "run again; if it persists, quote the request id to DigitalOcean support".into(),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "DigitalOcean answered {} with {}",
            self.endpoint, self.status
        )?;
        if let Some(id) = &self.id {
            write!(f, " {id}")?;
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message.trim_end_matches('.'))?;
        }
        if let Some(request_id) = &self.request_id {
            write!(f, " (request id {request_id})")?;
        }
        if self.attempts > 1 {
            write!(f, " after {} attempts", self.attempts)?;
        }
        write!(f, "; {}", self.hint())
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16) -> ApiError {
        ApiError {
            endpoint: "GET /v2/account".into(),
            status,
            id: Some("unauthorized".into()),
            message: "Unable to authenticate you.".into(),
            request_id: Some("4d9d8375".into()),
            attempts: 1,
            retry_after: None,
        }
    }

    #[test]
    fn api_error_names_id_message_request_id_and_a_next_step() {
        let text = CloudError::from(api(401)).to_string();
        assert_eq!(
            text,
            "DigitalOcean answered GET /v2/account with 401 unauthorized: Unable to authenticate \
             you (request id 4d9d8375); check that `DO_TOKEN` holds a valid, unexpired \
             DigitalOcean API token"
        );
    }

    #[test]
    fn rate_limit_hint_says_how_long_to_wait() {
        let mut error = api(429);
        error.retry_after = Some(Duration::from_secs(29));
        error.attempts = 5;
        let text = error.to_string();
        assert!(text.contains("after 5 attempts"), "{text}");
        assert!(text.contains("wait 29s"), "{text}");
    }

    #[test]
    fn status_helpers() {
        assert!(CloudError::from(api(404)).is_not_found());
        assert_eq!(CloudError::MissingToken.status(), None);
        assert!(CloudError::Ambiguous {
            endpoint: "POST /v2/droplets".into(),
            cause: "500".into()
        }
        .is_ambiguous());
    }
}
