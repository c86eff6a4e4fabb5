//! Churn as a rate (`[churn] rate_per_hour`, `mean_offline_s`): when a
//! device next leaves and how long it stays away, drawn from exponential
//! distributions with a random stream of its own (derived from the
//! scenario's seed, so runs without this churn draw exactly as before).

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::scenario::ChurnSpec;

/// Mixed into the seed so churn draws do not follow the engine's stream.
const STREAM: u64 = 0x6368_7572_6e00_0001;

/// Draws leave and rejoin times.
#[derive(Debug)]
pub struct ChurnClock {
    rng: ChaCha8Rng,
    /// Mean time up between leaves, s (`None`: churn off).
    mean_up_s: Option<f64>,
    mean_offline_s: f64,
}

impl ChurnClock {
    pub fn new(spec: &ChurnSpec, seed: u64) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed ^ STREAM),
            mean_up_s: (spec.rate_per_hour > 0.0).then(|| 3600.0 / spec.rate_per_hour),
            mean_offline_s: spec.mean_offline_s,
        }
    }

    /// Seconds from a (re)join to the device's next leave; `None`: never.
    pub fn next_leave(&mut self) -> Option<f64> {
        let mean = self.mean_up_s?;
        Some(exponential(&mut self.rng, mean))
    }

    /// Seconds a device that left stays away.
    pub fn offline(&mut self) -> f64 {
        exponential(&mut self.rng, self.mean_offline_s)
    }
}

/// An exponential draw of mean `mean`.
fn exponential(rng: &mut ChaCha8Rng, mean: f64) -> f64 {
    // Uniform in (0, 1]: never ln(0).
    let u = ((rng.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64;
    -u.ln() * mean
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(rate: f64, offline: f64) -> ChurnSpec {
        ChurnSpec {
            rate_per_hour: rate,
            mean_offline_s: offline,
            ..ChurnSpec::default()
        }
    }

    #[test]
    fn off_without_a_rate() {
        assert_eq!(ChurnClock::new(&spec(0.0, 60.0), 1).next_leave(), None);
    }

    #[test]
    fn draws_have_the_configured_means_and_repeat_per_seed() {
        let mut c = ChurnClock::new(&spec(36.0, 20.0), 7);
        let n = 20_000;
        let up: f64 = (0..n).map(|_| c.next_leave().expect("on")).sum::<f64>() / n as f64;
        let off: f64 = (0..n).map(|_| c.offline()).sum::<f64>() / n as f64;
        // Means 100 s and 20 s; the standard error is mean / sqrt(n), under 1 %.
        assert!((up - 100.0).abs() < 4.0, "{up}");
        assert!((off - 20.0).abs() < 0.8, "{off}");
        let draw = |seed| ChurnClock::new(&spec(36.0, 20.0), seed).next_leave();
        assert_eq!(draw(3), draw(3));
        assert_ne!(draw(3), draw(4));
    }
}
