//! How often and how patiently the client retries: back-off with jitter, and the waits
//! DigitalOcean asks for on 429.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand_core::{OsRng, RngCore};
use reqwest::header::HeaderMap;

/// Retry budget for one request.
///
/// Every attempt counts against `max_attempts`, including those that follow a 429, so a request
/// gives up after a bounded number of tries however the server answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts, the first one included (1 = never retry).
    pub max_attempts: u32,
    /// Back-off before the first retry; it doubles for each further one.
    pub base_delay: Duration,
    /// Cap on one back-off.
    pub max_delay: Duration,
    /// The longest `retry-after` / `ratelimit-reset` wait the client sits out. A longer one
    /// (DigitalOcean's hourly limit can mean most of an hour) fails at once with a 429 error
    /// that says how long to wait, rather than hanging a command.
    pub max_rate_limit_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            // Enough that even a fifth of requests failing (an API having a bad minute) sinks
            // a call only about once in 400,000; the later back-offs are long, so a truly
            // broken API still gives up within a couple of minutes.
            max_attempts: 8,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(20),
            max_rate_limit_wait: Duration::from_secs(65),
        }
    }
}

impl RetryPolicy {
    /// Back-off before attempt `attempt + 1`, where `attempt` (from 1) just failed: exponential,
    /// capped, with "equal jitter" (a random point in the upper half) so that clients that failed
    /// together do not retry together.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(30);
        let ceiling = self
            .base_delay
            .saturating_mul(1u32 << exponent)
            .min(self.max_delay);
        let half = ceiling / 2;
        let spread = (ceiling - half).as_nanos() as u64;
        let jitter = if spread == 0 {
            0
        } else {
            OsRng.next_u64() % (spread + 1)
        };
        half + Duration::from_nanos(jitter)
    }
}

/// The wait a 429 asks for: `retry-after` (seconds) if present, else `ratelimit-reset` (Unix
/// time at which the oldest counted request expires), else `None`.
pub(crate) fn rate_limit_wait(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let number = |name: &str| -> Option<u64> {
        headers
            .get(name)?
            .to_str()
            .ok()?
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite() && *n >= 0.0)
            .map(|n| n.ceil() as u64)
    };
    if let Some(seconds) = number("retry-after") {
        return Some(Duration::from_secs(seconds));
    }
    let reset = number("ratelimit-reset")?;
    let now = now.duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(reset.saturating_sub(now)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn backoff_grows_stays_capped_and_jitters_in_the_upper_half() {
        let policy = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            max_rate_limit_wait: Duration::from_secs(1),
        };
        for _ in 0..200 {
            let first = policy.backoff(1);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let third = policy.backoff(3);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
            let late = policy.backoff(40);
            assert!(late >= Duration::from_millis(500) && late <= Duration::from_millis(1000));
        }
    }

    #[test]
    fn zero_delays_do_not_panic() {
        let policy = RetryPolicy {
            base_delay: Duration::ZERO,
            max_delay: Duration::ZERO,
            ..RetryPolicy::default()
        };
        assert_eq!(policy.backoff(3), Duration::ZERO);
    }

    #[test]
    fn retry_after_wins_over_ratelimit_reset() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        let mut headers = HeaderMap::new();
        headers.insert("ratelimit-reset", HeaderValue::from_static("1010"));
        assert_eq!(
            rate_limit_wait(&headers, now),
            Some(Duration::from_secs(10))
        );
        headers.insert("retry-after", HeaderValue::from_static("29"));
        assert_eq!(
            rate_limit_wait(&headers, now),
            Some(Duration::from_secs(29))
        );
    }

    #[test]
    fn a_reset_in_the_past_means_no_wait_and_garbage_is_ignored() {
        let now = UNIX_EPOCH + Duration::from_secs(2_000);
        let mut headers = HeaderMap::new();
        headers.insert("ratelimit-reset", HeaderValue::from_static("1500"));
        assert_eq!(rate_limit_wait(&headers, now), Some(Duration::ZERO));
        headers.insert("ratelimit-reset", HeaderValue::from_static("soon"));
        assert_eq!(rate_limit_wait(&headers, now), None);
        assert_eq!(rate_limit_wait(&HeaderMap::new(), now), None);
    }
}
