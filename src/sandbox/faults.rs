//! Fault injection, set when the sandbox starts (`infra sandbox up --fail-rate 0.2
//! --latency-ms 50`): every request waits the added latency, and a share of requests is
//! answered with DigitalOcean's 429 (with `retry-after`, before anything is done) or 500.
//! Half of the failures are each kind; half of the 500s on changes (anything but GET) come
//! after the change was made, like an answer lost on the way back.

use std::time::Duration;

use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Faults {
    /// Share of requests that fail, 0.0 to 1.0.
    pub fail_rate: f64,
    /// Added to every request.
    pub latency_ms: u64,
}

/// What to do with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    TooManyRequests,
    ServerError,
}

impl Faults {
    pub fn new(fail_rate: f64, latency_ms: u64) -> Result<Faults, String> {
        if !(0.0..=1.0).contains(&fail_rate) || fail_rate.is_nan() {
            return Err(format!(
                "`--fail-rate` must be between 0 and 1, not {fail_rate}"
            ));
        }
        Ok(Faults {
            fail_rate,
            latency_ms,
        })
    }

    pub fn latency(&self) -> Duration {
        Duration::from_millis(self.latency_ms)
    }

    /// Draws the fate of one request.
    pub fn draw(&self) -> Fault {
        self.pick(OsRng.next_u64())
    }

    fn pick(&self, random: u64) -> Fault {
        if self.fail_rate <= 0.0 {
            return Fault::None;
        }
        let x = (random >> 11) as f64 / (1u64 << 53) as f64;
        if x >= self.fail_rate {
            Fault::None
        } else if x < self.fail_rate / 2.0 {
            Fault::TooManyRequests
        } else {
            Fault::ServerError
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_share_of_failures_follows_the_rate() {
        let faults = Faults::new(0.2, 0).unwrap();
        let mut counts = [0usize; 3];
        for i in 0..10_000u64 {
            // Evenly spread draws (the middle of each ten-thousandth) instead of random ones,
            // so the test is exact.
            let step = u64::MAX / 10_000;
            let random = i * step + step / 2;
            match faults.pick(random) {
                Fault::None => counts[0] += 1,
                Fault::TooManyRequests => counts[1] += 1,
                Fault::ServerError => counts[2] += 1,
            }
        }
        assert_eq!(counts, [8000, 1000, 1000]);
        assert_eq!(Faults::default().draw(), Fault::None);
        assert!(Faults::new(1.5, 0).is_err());
    }
}
