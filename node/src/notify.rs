//! systemd's service protocol (`Type=notify`): `READY=1` with a status
//! line once the store is open and the node listens, `STOPPING=1` on the
//! way out, and `WATCHDOG=1` pings while the driver's loop makes progress
//! ([`Heartbeat`]), so systemd restarts a node whose loop hangs. Without
//! `NOTIFY_SOCKET` (not under systemd) every call does nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sd_notify::NotifyState;

/// When the driver's loop last turned; cheap to clone and to beat.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    start: Instant,
    /// Milliseconds since `start` at the last beat.
    last: Arc<AtomicU64>,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Self::new()
    }
}

impl Heartbeat {
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            last: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The loop made a turn.
    pub fn beat(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }

    /// How long since the last beat.
    pub fn age(&self) -> Duration {
        let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd (NOTIFY_SOCKET)");
    }
}

/// Startup is finished: the store is open and the node listens.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// The service is stopping (after SIGTERM or SIGINT).
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// How often to ping and how fresh the heartbeat must be, for a watchdog
/// of `interval`: half of it, as systemd advises.
pub fn ping_every(interval: Duration) -> Duration {
    (interval / 2).max(Duration::from_millis(1))
}

/// Ping only if the loop turned within the last period.
pub fn should_ping(age: Duration, every: Duration) -> bool {
    age <= every
}

/// When systemd's watchdog is on (`WATCHDOG_USEC`, and `WATCHDOG_PID`
/// unset or this process), pings it every half interval while `heartbeat`
/// is fresh, on the current tokio runtime; otherwise does nothing.
pub fn spawn_watchdog(heartbeat: Heartbeat) -> Option<tokio::task::JoinHandle<()>> {
    let interval = sd_notify::watchdog_enabled()?;
    let every = ping_every(interval);
    tracing::info!(
        interval_ms = interval.as_millis() as u64,
        "systemd watchdog on"
    );
    Some(tokio::spawn(async move {
        let mut timer = tokio::time::interval(every);
        let mut stalled = false;
        loop {
            timer.tick().await;
            let age = heartbeat.age();
            if should_ping(age, every) {
                send(&[NotifyState::Watchdog]);
                stalled = false;
            } else if !stalled {
                stalled = true;
                tracing::error!(
                    stalled_ms = age.as_millis() as u64,
                    "the driver's loop is stalled: no watchdog ping, systemd will restart the node"
                );
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::{ping_every, should_ping, Heartbeat};
    use std::time::Duration;

    #[test]
    fn pings_at_half_the_interval_only_while_the_loop_beats() {
        let every = ping_every(Duration::from_secs(2));
        assert_eq!(every, Duration::from_secs(1));
        assert!(should_ping(Duration::from_millis(200), every));
        assert!(!should_ping(Duration::from_millis(1500), every));
    }

    #[test]
    fn the_heartbeat_goes_stale_until_the_loop_beats() {
        let Some(start) = std::time::Instant::now().checked_sub(Duration::from_secs(10)) else {
            return;
        };
        let h = Heartbeat {
            start,
            last: std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0)),
        };
        let every = ping_every(Duration::from_secs(2));
        assert!(h.age() >= Duration::from_secs(10));
        assert!(!should_ping(h.age(), every));
        let driver_side = h.clone();
        driver_side.beat();
        assert!(should_ping(h.age(), every));
    }
}
