//! DigitalOcean API v2 client: the one way infra talks to a cloud, DigitalOcean's or the local
//! sandbox's (same code, different `DO_API_URL`).
//!
//! What this module owns:
//! - [`Client`]: token from `DO_TOKEN`, base URL from `DO_API_URL`; cheap to clone.
//! - Reliability: a sliding-window rate limiter (250 requests a minute by default, shared by
//!   all clones); retries with capped, jittered exponential back-off for 5xx and connection
//!   errors; `retry-after` / `ratelimit-reset` honoured on 429 ([`RetryPolicy`]).
//! - Idempotency: creates and actions are never sent twice once they may have reached the
//!   server. An uncertain outcome is [`CloudError::Ambiguous`], and the caller looks for the
//!   tagged resource before trying again. A 429 or a refused connection is retried even for a
//!   create, since nothing happened.
//! - Typed bodies ([`types`]) that follow the contract in
//!   `tests/fixtures/digitalocean/openapi-subset.yaml`; the contract tests check them against it.
//! - Secrecy: the token lives in [`Token`], which prints as `***`; errors carry method and
//!   path, never the host's credentials or the token.

pub mod catalog;
mod client;
pub mod endpoint;
mod ensure;
mod error;
mod operations;
mod rate_limiter;
mod retry_policy;
mod token;
pub mod types;

pub use client::{Client, DEFAULT_API_URL};
pub use endpoint::SandboxEndpoint;
pub use ensure::{create_once, Outcome, CREATE_ATTEMPTS};
pub use error::{ApiError, CloudError};
pub use rate_limiter::RateLimit;
pub use retry_policy::RetryPolicy;
pub use token::Token;
pub use types::*;
