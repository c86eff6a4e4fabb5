//! Per-source congestion control (DESIGN.md §5, "no collapse under load"):
//! how many bytes to keep in flight to one peer, when a request to it is
//! overdue, and how long to leave it alone after it refused work.
//!
//! Delivery-rate based, as BBR sizes its window from the bottleneck rate
//! rather than from losses: the window is what the source delivered to us
//! over the last [`FlowConfig::window_time`], at least one chunk; a request's
//! deadline is the time the bytes ahead of it and its own would take at
//! that rate, times a margin, plus a slack; and a deadline that passes while
//! the source is still delivering is moved, never acted on. The simulator's
//! flash-crowd comparison with loss-driven AIMD is in `simulator/README.md`.

use std::time::Duration;

/// A sample is taken from progress reports no more often than this (a
/// completed chunk always gives one).
const MIN_SAMPLE: Duration = Duration::from_millis(100);
/// Weight of a new rate sample in the moving average.
const GAIN: f64 = 0.25;
/// Longest back-off after repeated refusals, whatever the hint.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// How a source's window is sized.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum WindowMode {
    /// From the rate the source delivers (the default).
    #[default]
    Rate,
    /// Loss-driven AIMD in requests, as TCP Reno: one more request per
    /// window of completed chunks, halved on a refusal or a timeout. Kept
    /// for the simulator's comparison.
    Aimd,
}

/// The knobs of [`Flow`], from [`super::SwarmConfig`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct FlowConfig {
    pub mode: WindowMode,
    /// Requests in flight to a source whose rate is not known yet.
    pub initial_window: usize,
    /// The window holds this much of the source's delivery rate.
    pub window_time: Duration,
    /// Deadline = margin × expected time + slack.
    pub margin: f64,
    pub slack: Duration,
    /// Deadline while the rate is unknown.
    pub initial_timeout: Duration,
    /// First back-off after a refusal with no hint; doubles per refusal in a row.
    pub backoff: Duration,
}

/// One source's delivery state.
#[derive(Clone, Debug)]
pub(crate) struct Flow {
    /// Bytes per second it delivers to us (moving average of samples taken
    /// while requests to it were in flight).
    rate: Option<f64>,
    /// Start of the sample being taken: time and `delivered` then.
    mark: Option<(Duration, u64)>,
    /// Bytes received from it so far (completed chunks and progress).
    delivered: u64,
    /// Bytes requested from it and not yet received.
    pub in_flight_bytes: u64,
    /// Refusals and timeouts in a row.
    strikes: u32,
    /// [`WindowMode::Aimd`]'s window in requests (0: not started).
    cwnd: f64,
}

impl Default for Flow {
    fn default() -> Self {
        Self::NEW
    }
}

impl Flow {
    /// A source nothing was asked of yet.
    pub const NEW: Self = Self {
        rate: None,
        mark: None,
        delivered: 0,
        in_flight_bytes: 0,
        strikes: 0,
        cwnd: 0.0,
    };

    /// Bytes/s it delivers, once measured.
    pub fn rate(&self) -> Option<f64> {
        self.rate
    }

    /// Total bytes received from it (a request's deadline is moved when
    /// this grew since the deadline was set).
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// The window in bytes (`None`: the rate is unknown, count requests).
    pub fn window_bytes(&self, cfg: &FlowConfig, chunk: u64) -> Option<u64> {
        if cfg.mode == WindowMode::Aimd {
            return None;
        }
        self.rate
            .map(|r| ((r * cfg.window_time.as_secs_f64()) as u64).max(chunk))
    }

    /// Whether a request of `len` bytes fits beside `requests` in flight.
    pub fn admits(&self, cfg: &FlowConfig, requests: usize, len: u64) -> bool {
        if requests == 0 {
            return true;
        }
        match self.window_bytes(cfg, len) {
            Some(w) => self.in_flight_bytes + len <= w,
            None if cfg.mode == WindowMode::Aimd => (requests as f64) < self.cwnd(cfg).floor(),
            None => requests < cfg.initial_window,
        }
    }

    fn cwnd(&self, cfg: &FlowConfig) -> f64 {
        if self.cwnd > 0.0 {
            self.cwnd
        } else {
            cfg.initial_window as f64
        }
    }

    /// A request of `len` went out.
    pub fn sent(&mut self, now: Duration, len: u64) {
        if self.in_flight_bytes == 0 {
            self.mark = Some((now, self.delivered));
        }
        self.in_flight_bytes += len;
    }

    /// A request ended without delivering the rest of its bytes.
    pub fn ended(&mut self, outstanding: u64) {
        self.in_flight_bytes = self.in_flight_bytes.saturating_sub(outstanding);
        if self.in_flight_bytes == 0 {
            self.mark = None;
        }
    }

    /// `bytes` more arrived; `done` when they completed a chunk.
    pub fn received(&mut self, cfg: &FlowConfig, now: Duration, bytes: u64, done: bool) {
        self.delivered += bytes;
        self.in_flight_bytes = self.in_flight_bytes.saturating_sub(bytes);
        if done {
            self.strikes = 0;
            let w = self.cwnd(cfg);
            self.cwnd = w + 1.0 / w;
        }
        if let Some((t0, d0)) = self.mark {
            let dt = now.saturating_sub(t0);
            if dt > Duration::ZERO && (done || dt >= MIN_SAMPLE) {
                let sample = (self.delivered - d0) as f64 / dt.as_secs_f64();
                self.rate = Some(match self.rate {
                    Some(r) => r + GAIN * (sample - r),
                    None => sample,
                });
                self.mark = Some((now, self.delivered));
            }
        }
        if self.in_flight_bytes == 0 {
            self.mark = None;
        }
    }

    /// The deadline of a request with `ahead` bytes (its own included) in
    /// flight before it is done.
    pub fn deadline(&self, cfg: &FlowConfig, now: Duration, ahead: u64) -> Duration {
        match self.rate {
            Some(r) if r > 0.0 => {
                let expected = (ahead as f64 / r * cfg.margin).min(86_400.0);
                now + Duration::from_secs_f64(expected) + cfg.slack
            }
            _ => now + cfg.initial_timeout,
        }
    }

    /// A chunk it was no longer asked for arrived after all: the timeout
    /// that gave up on it was spurious (the source was slow, not gone), so
    /// its refusals in a row start over, as TCP undoes the back-off of a
    /// timeout it finds spurious (RFC 4015, the Eifel response).
    pub fn spurious(&mut self) {
        self.strikes = 0;
    }

    /// It refused work or let a request time out: how long to leave it
    /// alone (before jitter). The rate estimate halves on a timeout.
    pub fn refused(&mut self, cfg: &FlowConfig, hint: Option<Duration>, timeout: bool) -> Duration {
        self.strikes = self.strikes.saturating_add(1);
        self.cwnd = (self.cwnd(cfg) / 2.0).max(1.0);
        if timeout {
            self.rate = self.rate.map(|r| r / 2.0);
        }
        let doubling = cfg.backoff * 2u32.saturating_pow(self.strikes.min(16) - 1);
        hint.unwrap_or(doubling).min(MAX_BACKOFF)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> FlowConfig {
        FlowConfig {
            mode: WindowMode::Rate,
            initial_window: 2,
            window_time: Duration::from_secs(1),
            margin: 3.0,
            slack: Duration::from_secs(2),
            initial_timeout: Duration::from_secs(30),
            backoff: Duration::from_millis(250),
        }
    }

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn window_follows_the_delivered_rate() {
        let c = cfg();
        let mut f = Flow::default();
        assert!(
            f.admits(&c, 1, 1000) && !f.admits(&c, 2, 1000),
            "two while unknown"
        );
        f.sent(MS(0), 1000);
        f.sent(MS(0), 1000);
        // 2000 bytes in 1 s: 2000 B/s, a 2000-byte window.
        f.received(&c, MS(500), 1000, true);
        f.received(&c, MS(1000), 1000, true);
        let r = f.rate().expect("measured");
        assert!((1900.0..2100.0).contains(&r), "{r}");
        assert_eq!(f.window_bytes(&c, 1000), Some(r as u64));
        assert!(f.admits(&c, 0, 5000), "an idle source always gets one");
        f.sent(MS(1000), 1000);
        assert!(f.admits(&c, 1, 900));
        assert!(!f.admits(&c, 1, 1500));
    }

    #[test]
    fn deadline_comes_from_the_rate() {
        let c = cfg();
        let mut f = Flow::default();
        assert_eq!(f.deadline(&c, MS(0), 1000), Duration::from_secs(30));
        f.sent(MS(0), 1000);
        f.received(&c, MS(1000), 1000, true);
        // 1000 B/s: 4000 bytes ahead take 4 s; ×3 + 2 s.
        assert_eq!(f.deadline(&c, MS(1000), 4000), Duration::from_secs(15));
    }

    #[test]
    fn aimd_adds_one_per_window_and_halves_on_refusal() {
        let c = FlowConfig {
            mode: WindowMode::Aimd,
            ..cfg()
        };
        let mut f = Flow::default();
        assert_eq!(f.window_bytes(&c, 1000), None, "counted in requests");
        assert!(f.admits(&c, 1, 1000) && !f.admits(&c, 2, 1000));
        // Two chunks complete: 2 + 1/2 + 1/2.5 = 2.9, then a third: 3.24.
        for t in 1..=3 {
            f.sent(MS(t), 1000);
            f.received(&c, MS(t + 1), 1000, true);
        }
        assert!(f.admits(&c, 2, 1000) && !f.admits(&c, 3, 1000));
        f.refused(&c, None, false);
        assert!(
            f.admits(&c, 0, 1000) && !f.admits(&c, 1, 1000),
            "halved to 1.6"
        );
        f.refused(&c, None, true);
        assert!(!f.admits(&c, 1, 1000), "never below one");
    }

    #[test]
    fn refusals_back_off_doubling_and_hints_win() {
        let c = cfg();
        let mut f = Flow::default();
        assert_eq!(f.refused(&c, None, false), MS(250));
        assert_eq!(f.refused(&c, None, false), MS(500));
        assert_eq!(f.refused(&c, Some(MS(3000)), false), MS(3000));
        f.sent(MS(0), 10);
        f.received(&c, MS(10), 10, true);
        assert_eq!(
            f.refused(&c, None, false),
            MS(250),
            "a chunk resets the count"
        );
        assert_eq!(f.refused(&c, None, false), MS(500));
        for _ in 0..20 {
            f.refused(&c, None, true);
        }
        assert_eq!(f.refused(&c, None, true), MAX_BACKOFF);
    }
}
