//! One mirror's health: its back-off after failures in a row, its last
//! error and the bytes it delivered (for the status JSON). A failing
//! mirror whose rest is over takes one request (a probe) until it answers;
//! meanwhile the others go on to the next mirror, so a mirror that stalls
//! costs one request per rest, not every request made while it hangs.

use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::Url;
use serde::Serialize;

/// How a mirror is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MirrorState {
    /// Not asked yet.
    Unknown,
    /// Its last answer was good.
    Ok,
    /// Its last answer failed; it rests until its back-off ends.
    Failing,
}

/// A mirror as the status JSON shows it.
#[derive(Clone, Debug, Serialize)]
pub struct MirrorStatus {
    pub url: String,
    pub state: MirrorState,
    pub last_error: Option<String>,
    /// Response bytes read from it (verified or not).
    pub bytes_fetched: u64,
    /// Seconds until it is asked again (while failing).
    pub backoff_seconds: Option<f64>,
}

#[derive(Debug)]
pub(super) struct Mirror {
    pub(super) url: Url,
    state: MirrorState,
    failures: u32,
    rest_until: Option<Instant>,
    last_error: Option<String>,
    bytes: u64,
    /// Failing, rested, and one request is asking it again.
    probing: bool,
}

impl Mirror {
    pub(super) fn new(url: Url) -> Self {
        Self {
            url,
            state: MirrorState::Unknown,
            failures: 0,
            rest_until: None,
            last_error: None,
            bytes: 0,
            probing: false,
        }
    }

    /// Whether a request may ask it at `now`, and whether that request is
    /// its probe (it failed last; the probe's end is told with
    /// [`Mirror::end_probe`], or its answer). `None`: resting, or a probe is out.
    pub(super) fn admit(&mut self, now: Instant) -> Option<bool> {
        if !self.resting(now).is_zero() || self.probing {
            return None;
        }
        self.probing = self.state == MirrorState::Failing;
        Some(self.probing)
    }

    /// The probe ended without an answer (its request was dropped).
    pub(super) fn end_probe(&mut self) {
        self.probing = false;
    }

    /// How long it still rests at `now` (zero: it may be asked).
    pub(super) fn resting(&self, now: Instant) -> Duration {
        self.rest_until
            .map_or(Duration::ZERO, |t| t.saturating_duration_since(now))
    }

    pub(super) fn add_bytes(&mut self, n: u64) {
        self.bytes += n;
    }

    pub(super) fn succeeded(&mut self) {
        self.state = MirrorState::Ok;
        self.probing = false;
        self.failures = 0;
        self.rest_until = None;
    }

    /// An error that is not the mirror's fault (a 404 while it syncs): kept, no rest.
    pub(super) fn note_error(&mut self, error: String) {
        self.last_error = Some(error);
        self.probing = false;
    }

    /// A failure: it rests `hint` (the server's `Retry-After`) or a
    /// jittered doubling of `base` per failure in a row, at most `max`.
    pub(super) fn failed(
        &mut self,
        now: Instant,
        error: String,
        hint: Option<Duration>,
        base: Duration,
        max: Duration,
    ) {
        self.state = MirrorState::Failing;
        self.probing = false;
        self.failures = self.failures.saturating_add(1);
        self.last_error = Some(error);
        let wait = match hint {
            Some(h) => h.min(max),
            None => jittered(base, self.failures, max),
        };
        self.rest_until = Some(now + wait);
    }

    pub(super) fn status(&self, now: Instant) -> MirrorStatus {
        let rest = self.resting(now);
        MirrorStatus {
            url: self.url.to_string(),
            state: self.state,
            last_error: self.last_error.clone(),
            bytes_fetched: self.bytes,
            backoff_seconds: (!rest.is_zero()).then_some(rest.as_secs_f64()),
        }
    }
}

/// `base` doubled per failure after the first, at most `max`, times a
/// random factor in [0.5, 1.0) (mirrors and devices do not retry in step).
pub(super) fn jittered(base: Duration, failures: u32, max: Duration) -> Duration {
    let doubled = base.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    doubled.min(max).mul_f64(rand::rng().random_range(0.5..1.0))
}
