//! Token bucket for the operator's uplink byte-rate budget.

use std::time::Duration;

/// Bytes per second with a burst allowance; time is the caller's `now`.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate: u64,
    capacity: u64,
    tokens: f64,
    last: Duration,
}

impl TokenBucket {
    /// `rate` bytes/s; the bucket holds one second of rate, and at least `min_burst`.
    pub fn new(rate: u64, min_burst: u64, now: Duration) -> Self {
        let capacity = rate.max(min_burst);
        Self {
            rate,
            capacity,
            tokens: capacity as f64,
            last: now,
        }
    }

    fn refill(&mut self, now: Duration) {
        let dt = now.saturating_sub(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate as f64).min(self.capacity as f64);
        self.last = self.last.max(now);
    }

    /// Takes `bytes` if available now.
    pub fn try_take(&mut self, now: Duration, bytes: u64) -> bool {
        self.refill(now);
        if self.tokens >= bytes.min(self.capacity) as f64 {
            self.tokens -= bytes as f64;
            true
        } else {
            false
        }
    }

    /// When `bytes` will be available.
    pub fn ready_at(&mut self, now: Duration, bytes: u64) -> Duration {
        self.refill(now);
        let missing = bytes.min(self.capacity) as f64 - self.tokens;
        if missing <= 0.0 || self.rate == 0 {
            return now;
        }
        now + Duration::from_secs_f64(missing / self.rate as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_run_rate_is_the_budget() {
        let mut b = TokenBucket::new(1_000_000, 0, Duration::ZERO);
        let mut now = Duration::ZERO;
        let mut taken = 0u64;
        while now < Duration::from_secs(10) {
            if b.try_take(now, 100_000) {
                taken += 100_000;
            } else {
                now = b.ready_at(now, 100_000);
            }
        }
        // One second of burst plus ten seconds of rate.
        assert!((10_000_000..=11_100_000).contains(&taken), "{taken}");
    }
}
