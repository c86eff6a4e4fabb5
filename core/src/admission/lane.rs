//! One lane of a server's uploads: the responses being sent and waiting,
//! and the upload rate measured while it was busy — a moving average, so a
//! burst into socket buffers at the start of a busy period (bytes written
//! are not yet bytes sent) fades within a few samples.

use std::time::Duration;

/// A rate sample spans at least this long (or a whole busy period).
const MIN_SAMPLE: Duration = Duration::from_millis(500);
/// Weight of a new sample in the moving average.
const GAIN: f64 = 0.3;

/// Bytes in a lane and the rate they leave at.
#[derive(Debug, Default)]
pub(super) struct Lane {
    /// Responses being sent, and their bytes.
    pub active: usize,
    pub active_bytes: u64,
    /// Bytes of responses waiting for a slot.
    pub waiting_bytes: u64,
    /// Bytes finished so far.
    sent: u64,
    /// Start of the current rate sample: time and `sent` then.
    mark: Option<(Duration, u64)>,
    /// Start of the sample that ended at `mark` (responses finishing at
    /// that same instant are folded into it).
    prev: Option<(Duration, u64)>,
    /// Responses finished, and their bytes (for the mean length).
    finished: u64,
    finished_bytes: u64,
    /// Moving average of the samples, bytes/s, and its value before the
    /// last sample (a sample redone at the same instant replaces it).
    rate: Option<f64>,
    before: Option<f64>,
}

impl Lane {
    /// The upload rate measured while busy, bytes/s.
    pub fn capacity(&self, _now: Duration) -> Option<f64> {
        self.rate
    }

    /// How long everything queued in the lane (and `more` bytes) would
    /// take to send at the measured capacity (`None`: not measured yet).
    pub fn drain_time(&self, now: Duration, more: u64) -> Option<Duration> {
        Self::time_for(
            self.capacity(now),
            self.active_bytes + self.waiting_bytes + more,
        )
    }

    /// How long `bytes` take at `capacity` (`None`: not measured).
    pub fn time_for(capacity: Option<f64>, bytes: u64) -> Option<Duration> {
        let c = capacity.filter(|&c| c > 0.0)?;
        Some(Duration::from_secs_f64((bytes as f64 / c).min(86_400.0)))
    }

    /// A response starts sending.
    pub fn start(&mut self, now: Duration, len: u64) {
        if self.active == 0 {
            // A busy period starts: idle time is not upload time.
            self.mark = Some((now, self.sent));
            self.prev = None;
        }
        self.active += 1;
        self.active_bytes += len;
    }

    /// `bytes` more of the active responses left.
    pub fn sent(&mut self, now: Duration, bytes: u64) {
        self.sent += bytes;
        self.sample(now);
    }

    /// Responses finished so far.
    pub fn finished(&self) -> u64 {
        self.finished
    }

    /// Mean length of the responses finished, bytes.
    pub fn mean_len(&self) -> Option<f64> {
        (self.finished > 0).then(|| self.finished_bytes as f64 / self.finished as f64)
    }

    /// A response of `len` bytes ended, its last `bytes` leaving now.
    pub fn finish(&mut self, now: Duration, len: u64, bytes: u64) {
        self.finished += 1;
        self.finished_bytes += len;
        self.active = self.active.saturating_sub(1);
        self.active_bytes = self.active_bytes.saturating_sub(len);
        self.sent(now, bytes);
        if self.active == 0 {
            self.mark = None;
        }
    }

    /// Takes a rate sample once the current one spans [`MIN_SAMPLE`]; a
    /// response that ends sooner after the last sample is folded into it (a
    /// sample over a millisecond would claim any rate). The first sample of
    /// a busy period spans its first response, however short.
    fn sample(&mut self, now: Duration) {
        let Some((t0, s0)) = self.mark else {
            return;
        };
        let dt = now.saturating_sub(t0);
        if dt >= MIN_SAMPLE || (self.prev.is_none() && dt > Duration::ZERO) {
            self.record((self.sent - s0) as f64 / dt.as_secs_f64());
            self.prev = Some((t0, s0));
            self.mark = Some((now, self.sent));
        } else if let Some((tp, sp)) = self.prev {
            if now > tp {
                self.rate = self.before;
                self.record((self.sent - sp) as f64 / (now - tp).as_secs_f64());
                self.mark = Some((now, self.sent));
            }
        }
    }

    fn record(&mut self, sample: f64) {
        self.before = self.rate;
        self.rate = Some(match self.rate {
            Some(r) => r + GAIN * (sample - r),
            None => sample,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn capacity_is_the_rate_while_busy() {
        let mut l = Lane::default();
        l.start(MS(0), 1000);
        l.start(MS(0), 1000);
        l.finish(MS(1000), 1000, 1000);
        // Both at the same instant count in one sample.
        l.finish(MS(1000), 1000, 1000);
        let c = l.capacity(MS(1000)).expect("measured");
        assert!((1999.0..2001.0).contains(&c), "{c}");
        // Idle time does not count: a later busy period at the same rate.
        l.start(MS(60_000), 1000);
        l.finish(MS(60_500), 1000, 1000);
        assert!((1999.0..2001.0).contains(&l.capacity(MS(60_500)).expect("measured")));
        assert_eq!(l.drain_time(MS(60_500), 2000), Some(MS(1000)));
    }

    #[test]
    fn responses_ending_close_together_do_not_claim_a_huge_rate() {
        let mut l = Lane::default();
        l.start(MS(0), 1000);
        l.start(MS(0), 1000);
        l.start(MS(0), 1000);
        l.finish(MS(1000), 1000, 1000);
        l.finish(MS(1001), 1000, 1000);
        l.finish(MS(1002), 1000, 1000);
        let c = l.capacity(MS(1002)).expect("measured");
        assert!((2900.0..3100.0).contains(&c), "{c}");
    }

    #[test]
    fn a_burst_into_buffers_fades() {
        let mut l = Lane::default();
        // 1 MB "sent" in 0.5 s (into socket buffers), then 1 MB/s for 4 s.
        l.start(MS(0), 10_000_000);
        l.sent(MS(500), 1_000_000);
        for k in 1..=8u64 {
            l.sent(MS(500 + k * 500), 500_000);
        }
        let c = l.capacity(MS(4500)).expect("measured");
        assert!((1_000_000.0..1_100_000.0).contains(&c), "{c}");
    }
}
