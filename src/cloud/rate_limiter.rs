//! Client-side request pacing, shared by every clone of a [`Client`](crate::cloud::Client).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// At most `requests` requests in any window of length `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub requests: u32,
    pub per: Duration,
}

impl Default for RateLimit {
    /// DigitalOcean's burst limit: 250 requests per minute per token.
    fn default() -> Self {
        RateLimit {
            requests: 250,
            per: Duration::from_secs(60),
        }
    }
}

/// A sliding-window limiter: it remembers the send times of the last `requests` requests and lets
/// a new one go only once the oldest of them is a full window old.
///
/// Not a plain token bucket on purpose: a bucket holding 250 tokens that refills at 250/min lets
/// a burst of 250 be followed by another ~250 within the same minute, which is exactly what
/// DigitalOcean answers with 429. The window makes "never more than 250 in any minute" hold
/// exactly, for ~250 instants of memory.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    window: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    limit: usize,
    per: Duration,
    /// Send times granted so far (some possibly in the future), oldest first.
    granted: VecDeque<Instant>,
    /// Set after a 429 so that every clone holds back, not just the request that was refused.
    paused_until: Option<Instant>,
}

impl RateLimiter {
    pub(crate) fn new(limit: RateLimit) -> RateLimiter {
        RateLimiter {
            window: Mutex::new(Window {
                limit: limit.requests.max(1) as usize,
                per: limit.per,
                granted: VecDeque::new(),
                paused_until: None,
            }),
        }
    }

    /// Waits until one more request may be sent, and counts it.
    pub(crate) async fn acquire(&self) {
        let at = self.lock().reserve(Instant::now());
        tokio::time::sleep_until(at).await;
    }

    /// Holds every request back until `until` (DigitalOcean said to wait).
    pub(crate) fn pause_until(&self, until: Instant) {
        let mut window = self.lock();
        window.paused_until = Some(window.paused_until.map_or(until, |p| p.max(until)));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        // A panic while holding this lock cannot leave the window inconsistent (each update is a
        // single push/pop), so a poisoned lock is still usable.
        self.window
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

impl Window {
    /// Reserves the earliest send time at or after `now` that keeps the window within the limit.
    /// Reservations are handed out in order, so concurrent callers queue fairly and `granted`
    /// stays sorted.
    fn reserve(&mut self, now: Instant) -> Instant {
        let mut at = now;
        if let Some(paused) = self.paused_until {
            at = at.max(paused);
        }
        if self.granted.len() >= self.limit {
            let oldest = self.granted.pop_front().expect("limit is at least 1");
            at = at.max(oldest + self.per);
        }
        self.granted.push_back(at);
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(requests: u32, per_secs: u64) -> Window {
        Window {
            limit: requests as usize,
            per: Duration::from_secs(per_secs),
            granted: VecDeque::new(),
            paused_until: None,
        }
    }

    #[test]
    fn a_burst_never_exceeds_the_limit_in_any_window() {
        let start = Instant::now();
        let mut w = window(250, 60);
        let times: Vec<Instant> = (0..1000).map(|_| w.reserve(start)).collect();
        // The first 250 go at once; every later one waits for the slot 250 places before it.
        assert!(times[..250].iter().all(|t| *t == start));
        for i in 250..times.len() {
            assert!(
                times[i] >= times[i - 250] + Duration::from_secs(60),
                "request {i}"
            );
        }
        // Equivalently: no 60 s window holds more than 250 send times.
        for (i, t) in times.iter().enumerate() {
            let in_window = times[i..]
                .iter()
                .take_while(|u| **u < *t + Duration::from_secs(60))
                .count();
            assert!(
                in_window <= 250,
                "{in_window} requests in the window from {i}"
            );
        }
    }

    #[test]
    fn requests_spread_over_time_are_not_delayed() {
        let start = Instant::now();
        let mut w = window(2, 10);
        assert_eq!(w.reserve(start), start);
        let later = start + Duration::from_secs(6);
        assert_eq!(w.reserve(later), later);
        let much_later = start + Duration::from_secs(11);
        assert_eq!(w.reserve(much_later), much_later);
        // Two sent at 6 s and 11 s: the next may go when the one at 6 s is 10 s old.
        let next = w.reserve(much_later);
        assert_eq!(next, start + Duration::from_secs(16));
    }

    #[test]
    fn a_pause_holds_everything_back() {
        let start = Instant::now();
        let limiter = RateLimiter::new(RateLimit::default());
        limiter.pause_until(start + Duration::from_secs(5));
        limiter.pause_until(start + Duration::from_secs(2));
        let at = limiter.lock().reserve(start);
        assert_eq!(at, start + Duration::from_secs(5));
    }
}
