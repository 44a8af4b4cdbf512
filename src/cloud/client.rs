//! The HTTP side of the DigitalOcean client: base URL, token, retries, pacing, pagination and
//! error mapping. The typed operations built on it live in `operations.rs`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::cloud::endpoint::SandboxEndpoint;
use crate::cloud::error::{ApiError, CloudError};
use crate::cloud::rate_limiter::{RateLimit, RateLimiter};
use crate::cloud::retry_policy::{rate_limit_wait, RetryPolicy};
use crate::cloud::token::Token;
use crate::cloud::types::{ErrorBody, Paged};

/// DigitalOcean's API, used when `DO_API_URL` is not set.
pub const DEFAULT_API_URL: &str = "https://api.digitalocean.com";

/// Items per page when listing: the API's maximum, to spend as few requests as possible.
const PER_PAGE: &str = "200";

/// A list longer than this many pages is treated as a broken `next` chain.
const MAX_PAGES: usize = 1000;

/// A DigitalOcean API v2 client. Cheap to clone; clones share one connection pool and one rate
/// limiter, so the limit holds for the whole process rather than per clone.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    token: Token,
    authorization: HeaderValue,
    retry: RetryPolicy,
    limiter: RateLimiter,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.inner.base.as_str())
            .field("token", &self.inner.token)
            .field("retry", &self.inner.retry)
            .finish()
    }
}

/// Whether a request may be sent again after it may have reached the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Replay {
    /// Reads, deletes, full replacements and set-membership changes: repeating them ends in the
    /// same state.
    Safe,
    /// Creates and actions: repeating them could make a second droplet or snapshot. Such a
    /// request is only retried when it certainly did not take effect (refused connection, 429).
    Unsafe,
}

/// One HTTP exchange for the retry loop to drive.
pub(crate) struct Call {
    pub(crate) method: Method,
    pub(crate) url: Url,
    pub(crate) body: Option<Vec<u8>>,
    pub(crate) replay: Replay,
}

/// Why an attempt got no HTTP answer.
struct Failure {
    /// Whether the request may have reached the server.
    delivered: bool,
    cause: String,
}

impl Failure {
    /// A server whose certificate is not trusted will not become trusted by asking again.
    fn untrusted(&self) -> bool {
        self.cause.contains("certificate")
    }
}

/// A successful answer.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) body: Vec<u8>,
}

impl Client {
    /// A client configured from the environment: `DO_TOKEN` (required) and `DO_API_URL`
    /// (default [`DEFAULT_API_URL`]), with the default retry policy and rate limit.
    pub fn from_env() -> Result<Client, CloudError> {
        Client::from_lookup(|name| std::env::var(name).ok())
    }

    /// The client infra commands use in `project`: `DO_TOKEN` (and `DO_API_URL`) from the
    /// environment when set, else the project's sandbox cloud if `infra sandbox up` started
    /// one (it writes both to `config/.infra/sandbox/env`). Either way, the sandbox's own CA
    /// is trusted when, and only when, the URL is that sandbox's.
    pub fn for_project(project: &crate::project::Project) -> Result<Client, CloudError> {
        let sandbox = SandboxEndpoint::find(project);
        if std::env::var_os("DO_TOKEN").is_some() {
            return match &sandbox {
                Some(sandbox) => Client::from_lookup_with(
                    |name| std::env::var(name).ok(),
                    |url, token, retry| sandbox.client_for(url, token, retry),
                ),
                None => Client::from_env(),
            };
        }
        match sandbox {
            Some(sandbox) => sandbox.client(RetryPolicy::default()),
            None => Client::from_env(),
        }
    }

    /// [`Client::from_env`] with the variables read through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Client, CloudError> {
        Client::from_lookup_with(lookup, Client::new)
    }

    /// [`Client::from_lookup`], the client made by `make`.
    fn from_lookup_with(
        lookup: impl Fn(&str) -> Option<String>,
        make: impl FnOnce(&str, Token, RetryPolicy) -> Result<Client, CloudError>,
    ) -> Result<Client, CloudError> {
        let token = Token::new(lookup("DO_TOKEN").unwrap_or_default())?;
        let base = lookup("DO_API_URL")
            .map(|url| url.trim().to_owned())
            .filter(|url| !url.is_empty())
            .unwrap_or_else(|| DEFAULT_API_URL.to_owned());
        make(&base, token, RetryPolicy::default())
    }

    /// A client for `base_url` (e.g. `https://api.digitalocean.com`), trusting the platform's
    /// certificate authorities.
    pub fn new(base_url: &str, token: Token, retry: RetryPolicy) -> Result<Client, CloudError> {
        Client::build(base_url, token, retry, None)
    }

    /// A client for a server whose certificate is signed by `ca_pem` (a local sandbox's own
    /// CA): that CA is the only one it trusts, so it can reach nothing else over HTTPS, and no
    /// other client trusts that CA.
    pub fn trusting(
        base_url: &str,
        token: Token,
        retry: RetryPolicy,
        ca_pem: &[u8],
    ) -> Result<Client, CloudError> {
        let roots =
            reqwest::Certificate::from_pem_bundle(ca_pem).map_err(|e| CloudError::HttpSetup {
                cause: format!("the CA certificate is not PEM: {}", error_chain(&e)),
            })?;
        if roots.is_empty() {
            return Err(CloudError::HttpSetup {
                cause: "the CA certificate file holds no certificate".into(),
            });
        }
        Client::build(base_url, token, retry, Some(roots))
    }

    fn build(
        base_url: &str,
        token: Token,
        retry: RetryPolicy,
        roots: Option<Vec<reqwest::Certificate>>,
    ) -> Result<Client, CloudError> {
        let base = parse_base_url(base_url)?;
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("infra/", env!("CARGO_PKG_VERSION")))
            // The API never redirects; following one could carry the token somewhere else.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60));
        if let Some(roots) = roots {
            builder = builder.tls_certs_only(roots);
        }
        let http = builder.build().map_err(|e| CloudError::HttpSetup {
            cause: error_chain(&e),
        })?;
        let authorization = token.authorization();
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base,
                token,
                authorization,
                retry,
                limiter: RateLimiter::new(RateLimit::default()),
            }),
        })
    }

    /// The same client with its own rate limiter of `limit` (the default is DigitalOcean's 250
    /// requests a minute). Call it before cloning: clones made earlier keep the old limiter.
    pub fn with_rate_limit(self, limit: RateLimit) -> Client {
        let inner = &self.inner;
        Client {
            inner: Arc::new(Inner {
                http: inner.http.clone(),
                base: inner.base.clone(),
                token: inner.token.clone(),
                authorization: inner.authorization.clone(),
                retry: inner.retry.clone(),
                limiter: RateLimiter::new(limit),
            }),
        }
    }

    /// The API base URL requests go to.
    pub fn base_url(&self) -> &str {
        self.inner.base.as_str()
    }

    /// `base/<segments...>?<query>`, each segment percent-encoded.
    pub(crate) fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Url {
        let mut url = self.inner.base.clone();
        url.path_segments_mut()
            .expect("parse_base_url admits only http(s) URLs, which have paths")
            .pop_if_empty()
            .extend(segments);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    /// `GET` and decode.
    pub(crate) async fn get<T: DeserializeOwned>(&self, url: Url) -> Result<T, CloudError> {
        let call = Call {
            method: Method::GET,
            url,
            body: None,
            replay: Replay::Safe,
        };
        self.decode(call).await
    }

    /// Send a JSON body and decode the JSON answer.
    pub(crate) async fn send<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: &B,
        replay: Replay,
    ) -> Result<T, CloudError> {
        let call = Call {
            method,
            url,
            body: Some(encode(body)?),
            replay,
        };
        self.decode(call).await
    }

    /// Send a request whose success has no body (`204 No Content`).
    ///
    /// A `DELETE` that gets `404` after an earlier attempt may have reached the server counts as
    /// done: the earlier attempt deleted it.
    pub(crate) async fn send_no_content<B: Serialize>(
        &self,
        method: Method,
        url: Url,
        body: Option<&B>,
        replay: Replay,
    ) -> Result<(), CloudError> {
        let call = Call {
            method,
            url,
            body: body.map(encode).transpose()?,
            replay,
        };
        self.execute(call).await.map(|_| ())
    }

    /// Every item of a paginated list, following `links.pages.next`.
    pub(crate) async fn list_all<P: Paged>(
        &self,
        segments: &[&str],
        query: &[(&str, &str)],
    ) -> Result<Vec<P::Item>, CloudError> {
        let mut query = query.to_vec();
        query.push(("per_page", PER_PAGE));
        let mut url = self.url(segments, &query);
        let mut items = Vec::new();
        let mut seen = std::collections::HashSet::new();
        loop {
            let endpoint = endpoint(&Method::GET, &url);
            if !seen.insert(url.clone()) || seen.len() > MAX_PAGES {
                return Err(CloudError::Pagination {
                    endpoint,
                    reason: "the `next` links loop back to a page already read".into(),
                });
            }
            let page: P = self.get(url.clone()).await?;
            let (mut batch, links) = page.into_parts();
            items.append(&mut batch);
            let Some(next) = links.next() else {
                return Ok(items);
            };
            url = self.next_page_url(&url, next, endpoint)?;
        }
    }

    /// Checks a `next` link before following it: the token goes with the request, so the link
    /// must lead to the same scheme, host and port as the API base.
    fn next_page_url(
        &self,
        current: &Url,
        next: &str,
        endpoint: String,
    ) -> Result<Url, CloudError> {
        let next = current.join(next).map_err(|e| CloudError::Pagination {
            endpoint: endpoint.clone(),
            reason: format!("`{next}` is not a URL ({e})"),
        })?;
        if next.origin() != self.inner.base.origin() {
            return Err(CloudError::Pagination {
                endpoint,
                reason: format!(
                    "it leads to {}, not to the API at {}, and the token is not sent elsewhere",
                    next.origin().ascii_serialization(),
                    self.inner.base.origin().ascii_serialization()
                ),
            });
        }
        Ok(next)
    }

    async fn decode<T: DeserializeOwned>(&self, call: Call) -> Result<T, CloudError> {
        let endpoint = endpoint(&call.method, &call.url);
        let replay = call.replay;
        let answer = self.execute(call).await?;
        serde_json::from_slice(&answer.body).map_err(|e| match replay {
            // The create or action succeeded, we just cannot tell what it made: the caller must
            // look before trying again, exactly as after a lost answer.
            Replay::Unsafe => CloudError::Ambiguous {
                endpoint,
                cause: format!(
                    "its {} answer could not be read: {e}",
                    answer.status.as_u16()
                ),
            },
            Replay::Safe => CloudError::Decode {
                endpoint,
                status: answer.status.as_u16(),
                cause: e.to_string(),
            },
        })
    }

    /// Sends `call`, retrying as its [`Replay`] and the [`RetryPolicy`] allow, and turns error
    /// statuses into [`CloudError`]s.
    pub(crate) async fn execute(&self, call: Call) -> Result<Answer, CloudError> {
        let policy = &self.inner.retry;
        let max_attempts = policy.max_attempts.max(1);
        let endpoint = endpoint(&call.method, &call.url);
        // Whether some attempt may have reached the server and taken effect.
        let mut maybe_applied = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.inner.limiter.acquire().await;
            let (status, headers, body) = match self.attempt(&call).await {
                Ok(answer) => answer,
                Err(failure) => {
                    maybe_applied |= failure.delivered;
                    let cause = self.inner.token.redact(&failure.cause);
                    if failure.delivered && call.replay == Replay::Unsafe {
                        return Err(CloudError::Ambiguous { endpoint, cause });
                    }
                    if failure.untrusted() {
                        return Err(CloudError::Transport {
                            endpoint,
                            attempts: attempt,
                            cause: format!(
                                "{cause} (its TLS certificate is not trusted; for a local sandbox, use the URL `infra sandbox up` printed, from the project's directory, or trust its `config/.infra/sandbox/ca.pem`)"
                            ),
                        });
                    }
                    if attempt >= max_attempts {
                        return Err(CloudError::Transport {
                            endpoint,
                            attempts: attempt,
                            cause,
                        });
                    }
                    self.back_off(&endpoint, attempt, &cause, policy.backoff(attempt))
                        .await;
                    continue;
                }
            };

            if status.is_success() {
                return Ok(Answer { status, body });
            }
            if status == StatusCode::NOT_FOUND && call.method == Method::DELETE && maybe_applied {
                tracing::debug!(%endpoint, "already gone after an earlier attempt; treating the delete as done");
                return Ok(Answer {
                    status: StatusCode::NO_CONTENT,
                    body: Vec::new(),
                });
            }

            if status == StatusCode::TOO_MANY_REQUESTS {
                // Refused before doing anything, so even a create may be repeated.
                let asked = rate_limit_wait(&headers, SystemTime::now());
                let give_up = attempt >= max_attempts
                    || asked.is_some_and(|wait| wait > policy.max_rate_limit_wait);
                if give_up {
                    return Err(self
                        .api_error(&endpoint, status, &body, attempt, asked)
                        .into());
                }
                let wait = asked.unwrap_or_else(|| policy.backoff(attempt));
                self.inner
                    .limiter
                    .pause_until(tokio::time::Instant::now() + wait);
                self.back_off(&endpoint, attempt, "429 too many requests", wait)
                    .await;
                continue;
            }

            if status.is_server_error() {
                maybe_applied = true;
                if call.replay == Replay::Unsafe {
                    let error = self.api_error(&endpoint, status, &body, attempt, None);
                    return Err(CloudError::Ambiguous {
                        endpoint,
                        cause: format!(
                            "{} {}{}",
                            status.as_u16(),
                            error.message.trim_end_matches('.'),
                            error
                                .request_id
                                .map(|id| format!(", request id {id}"))
                                .unwrap_or_default()
                        ),
                    });
                }
                if attempt < max_attempts {
                    let cause = format!("{status}");
                    self.back_off(&endpoint, attempt, &cause, policy.backoff(attempt))
                        .await;
                    continue;
                }
            }

            return Err(self
                .api_error(&endpoint, status, &body, attempt, None)
                .into());
        }
    }

    /// One send: the status, headers and whole body, or why there is no answer.
    async fn attempt(&self, call: &Call) -> Result<(StatusCode, HeaderMap, Vec<u8>), Failure> {
        let mut request = self
            .inner
            .http
            .request(call.method.clone(), call.url.clone())
            .header(AUTHORIZATION, self.inner.authorization.clone())
            .header(ACCEPT, HeaderValue::from_static("application/json"));
        if let Some(body) = &call.body {
            request = request
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .body(body.clone());
        }
        // Errors are turned into text without their URL: ours never holds the token, but a
        // `DO_API_URL` with credentials in it would, and the endpoint is reported separately.
        let response = request.send().await.map_err(|error| Failure {
            // A refused or failed connection never carried the request; any later failure (a
            // reset, a timeout) may have come after the server acted on it.
            delivered: !error.is_connect(),
            cause: error_chain(&error.without_url()),
        })?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(|error| Failure {
            // The server answered, so the request arrived; only the body was lost.
            delivered: true,
            cause: error_chain(&error.without_url()),
        })?;
        Ok((status, headers, body.to_vec()))
    }

    async fn back_off(&self, endpoint: &str, attempt: u32, cause: &str, wait: Duration) {
        tracing::warn!(
            endpoint,
            attempt,
            wait_ms = wait.as_millis() as u64,
            cause,
            "DigitalOcean request failed; retrying"
        );
        tokio::time::sleep(wait).await;
    }

    fn api_error(
        &self,
        endpoint: &str,
        status: StatusCode,
        body: &[u8],
        attempts: u32,
        retry_after: Option<Duration>,
    ) -> ApiError {
        let token = &self.inner.token;
        let (id, message, request_id) = match serde_json::from_slice::<ErrorBody>(body) {
            Ok(parsed) => (parsed.id.clone(), parsed.text(), parsed.request_id.clone()),
            // Not DigitalOcean's JSON (a proxy's HTML page, say): show the start of it.
            Err(_) => {
                let text = String::from_utf8_lossy(body);
                let text: String = text.trim().chars().take(200).collect();
                let message = if text.is_empty() {
                    status.canonical_reason().unwrap_or("").to_lowercase()
                } else {
                    text
                };
                (None, message, None)
            }
        };
        ApiError {
            endpoint: endpoint.to_owned(),
            status: status.as_u16(),
            id: id.map(|id| token.redact(&id)),
            message: token.redact(&message),
            request_id: request_id.map(|id| token.redact(&id)),
            attempts,
            retry_after,
        }
    }
}

/// `GET /v2/droplets?tag_name=web`: method, path and query, without scheme or host.
fn endpoint(method: &Method, url: &Url) -> String {
    match url.query() {
        Some(query) => format!("{method} {}?{query}", url.path()),
        None => format!("{method} {}", url.path()),
    }
}

fn encode<B: Serialize>(body: &B) -> Result<Vec<u8>, CloudError> {
    serde_json::to_vec(body)
        .map_err(|e| CloudError::InvalidRequest(format!("could not encode the request body: {e}")))
}

/// An error and its sources, `outer: inner: root`, for messages that must stand alone.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let part = inner.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = inner.source();
    }
    text
}

fn parse_base_url(raw: &str) -> Result<Url, CloudError> {
    let url = Url::parse(raw).map_err(|e| CloudError::InvalidBaseUrl {
        reason: format!("is not a URL ({e})"),
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        // The URL itself is not echoed: it holds credentials.
        return Err(CloudError::InvalidBaseUrl {
            reason: "contains a user name or password; the token belongs in `DO_TOKEN`".into(),
        });
    }
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(CloudError::InvalidBaseUrl {
            reason: format!("uses `{}`, not http or https", url.scheme()),
        });
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(CloudError::InvalidBaseUrl {
            reason: format!("(`{url}`) has a query or fragment"),
        });
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(base: &str) -> Client {
        Client::new(base, Token::new("t0ken").unwrap(), RetryPolicy::default()).unwrap()
    }

    #[test]
    fn from_lookup_needs_a_token_and_defaults_the_url() {
        let missing = Client::from_lookup(|_| None).unwrap_err();
        assert!(matches!(missing, CloudError::MissingToken));
        assert!(missing.to_string().starts_with("`DO_TOKEN` is not set"));

        let client = Client::from_lookup(|name| (name == "DO_TOKEN").then(|| "t".into())).unwrap();
        assert_eq!(client.base_url(), "https://api.digitalocean.com/");

        let sandbox = Client::from_lookup(|name| match name {
            "DO_TOKEN" => Some("t".into()),
            "DO_API_URL" => Some("http://127.0.0.1:8089".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(sandbox.base_url(), "http://127.0.0.1:8089/");
    }

    #[test]
    fn base_urls_with_credentials_are_refused_without_echoing_them() {
        let error = Client::new(
            "https://me:hunter2@api.example",
            Token::new("t").unwrap(),
            RetryPolicy::default(),
        )
        .unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("`DO_API_URL` contains a user name or password"),
            "{text}"
        );
        assert!(!text.contains("hunter2"), "{text}");
        assert!(Client::new("ftp://x", Token::new("t").unwrap(), RetryPolicy::default()).is_err());
        assert!(Client::new(
            "not a url",
            Token::new("t").unwrap(),
            RetryPolicy::default()
        )
        .is_err());
    }

    #[test]
    fn urls_keep_a_base_path_and_encode_segments() {
        let c = client("http://127.0.0.1:9/prefix/");
        let url = c.url(&["v2", "tags", "env:prod", "resources"], &[]);
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:9/prefix/v2/tags/env:prod/resources"
        );
        let url = c.url(
            &["v2", "droplets"],
            &[("tag_name", "a b"), ("per_page", "200")],
        );
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:9/prefix/v2/droplets?tag_name=a+b&per_page=200"
        );
        assert_eq!(
            endpoint(&Method::GET, &url),
            "GET /prefix/v2/droplets?tag_name=a+b&per_page=200"
        );
        let url = client("https://api.digitalocean.com").url(&["v2", "x/y"], &[]);
        assert_eq!(url.path(), "/v2/x%2Fy");
    }

    #[test]
    fn next_links_must_stay_on_the_api_host() {
        let c = client("http://127.0.0.1:9");
        let current = c.url(&["v2", "droplets"], &[]);
        let same = c
            .next_page_url(
                &current,
                "http://127.0.0.1:9/v2/droplets?page=2",
                "e".into(),
            )
            .unwrap();
        assert_eq!(same.query(), Some("page=2"));
        let relative = c
            .next_page_url(&current, "/v2/droplets?page=3", "e".into())
            .unwrap();
        assert_eq!(relative.as_str(), "http://127.0.0.1:9/v2/droplets?page=3");
        let elsewhere = c
            .next_page_url(
                &current,
                "https://evil.example/v2/droplets?page=2",
                "e".into(),
            )
            .unwrap_err();
        assert!(
            elsewhere.to_string().contains("https://evil.example"),
            "{elsewhere}"
        );
    }

    #[test]
    fn a_trusted_ca_must_be_a_certificate() {
        let token = || Token::new("t").unwrap();
        let url = "https://127.0.0.1:9";
        for garbage in [&b"not a certificate"[..], b""] {
            let error = Client::trusting(url, token(), RetryPolicy::default(), garbage)
                .unwrap_err()
                .to_string();
            assert!(error.contains("CA certificate"), "{error}");
        }
    }

    #[test]
    fn debug_shows_no_token() {
        let text = format!("{:?}", client("http://127.0.0.1:9"));
        assert!(!text.contains("t0ken"), "{text}");
        assert!(text.contains("***"), "{text}");
    }
}
