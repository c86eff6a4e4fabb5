//! Batching of gained-chunk notices: chunks gained between two ticks of the
//! node's notice clock (which starts with the node) go out in one notice,
//! on two lanes with their own periods — site peers, and devices of other
//! sites. A gain the other lane's peers are unlikely to have heard of
//! elsewhere ([`Notices::push`]'s `soon`) brings its lane's notice forward
//! to the next tick of the shorter period.

use std::sync::Arc;
use std::time::Duration;

/// Who a notice is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Lane {
    /// Site peers.
    Site,
    /// Devices of other sites.
    Away,
}

#[derive(Debug, Default)]
struct Batch {
    period: Duration,
    gained: Vec<u32>,
    due: Option<Duration>,
}

#[derive(Debug)]
pub(super) struct Notices {
    start: Duration,
    lanes: [Batch; 2],
}

impl Notices {
    pub fn new(start: Duration, site: Duration, away: Duration) -> Self {
        let batch = |period| Batch {
            period,
            ..Batch::default()
        };
        Self {
            start,
            lanes: [batch(site), batch(away)],
        }
    }

    fn lane(&mut self, lane: Lane) -> &mut Batch {
        &mut self.lanes[lane as usize]
    }

    /// Notes a gained chunk; `true` if it is to go out at once (a zero
    /// period). With `soon`, the lane's notice goes out no later than the
    /// next tick of the shortest lane period (the chunk is news).
    pub fn push(&mut self, now: Duration, lane: Lane, index: u32, soon: bool) -> bool {
        let start = self.start;
        let shortest = self.lanes.iter().map(|b| b.period).min();
        let b = self.lane(lane);
        b.gained.push(index);
        if b.period.is_zero() {
            return true;
        }
        let period = match shortest {
            Some(p) if soon && !p.is_zero() => p.min(b.period),
            _ => b.period,
        };
        let at = next_tick(start, now, period);
        b.due = Some(b.due.map_or(at, |due| due.min(at)));
        false
    }

    /// When the lane's notice is due.
    pub fn due(&self, lane: Lane) -> Option<Duration> {
        self.lanes[lane as usize].due
    }

    /// The lane's gained chunks, emptied (`None`: nothing gained).
    pub fn take(&mut self, lane: Lane) -> Option<Arc<[u32]>> {
        let b = self.lane(lane);
        b.due = None;
        if b.gained.is_empty() {
            return None;
        }
        let list: Arc<[u32]> = b.gained.as_slice().into();
        b.gained.clear();
        Some(list)
    }

    /// A new release: nothing of the old one is announced.
    pub fn clear(&mut self) {
        for b in &mut self.lanes {
            b.gained.clear();
            b.due = None;
        }
    }
}

/// The first tick of a clock of `period` that started at `start`, after `now`.
fn next_tick(start: Duration, now: Duration, period: Duration) -> Duration {
    let since = now.saturating_sub(start).as_nanos();
    let period = period.as_nanos();
    let at = start.as_nanos() + (since / period + 1) * period;
    Duration::from_nanos(u64::try_from(at).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn gains_between_ticks_share_one_notice_on_the_node_clock() {
        let mut n = Notices::new(50 * MS, 200 * MS, 1000 * MS);
        assert!(!n.push(120 * MS, Lane::Site, 3, false));
        assert!(!n.push(240 * MS, Lane::Site, 4, false));
        assert_eq!(n.due(Lane::Site), Some(250 * MS));
        assert!(!n.push(240 * MS, Lane::Away, 3, false));
        assert_eq!(n.due(Lane::Away), Some(1050 * MS));
        assert_eq!(n.take(Lane::Site).as_deref(), Some(&[3, 4][..]));
        assert_eq!(n.due(Lane::Site), None);
        assert_eq!(n.take(Lane::Site), None);
        assert!(!n.push(250 * MS, Lane::Site, 5, false));
        assert_eq!(
            n.due(Lane::Site),
            Some(450 * MS),
            "a gain on a tick waits for the next"
        );
    }

    #[test]
    fn news_brings_the_away_notice_forward_to_the_site_tick() {
        let mut n = Notices::new(Duration::ZERO, 200 * MS, 1000 * MS);
        // An ordinary gain waits for the away lane's own tick...
        assert!(!n.push(130 * MS, Lane::Away, 1, false));
        assert_eq!(n.due(Lane::Away), Some(1000 * MS));
        // ...news goes out on the next site tick, with what waited.
        assert!(!n.push(330 * MS, Lane::Away, 2, true));
        assert_eq!(n.due(Lane::Away), Some(400 * MS));
        // A later ordinary gain does not push it back.
        assert!(!n.push(350 * MS, Lane::Away, 3, false));
        assert_eq!(n.due(Lane::Away), Some(400 * MS));
        assert_eq!(n.take(Lane::Away).as_deref(), Some(&[1, 2, 3][..]));
        // The site lane's period is already the shortest.
        assert!(!n.push(410 * MS, Lane::Site, 4, true));
        assert_eq!(n.due(Lane::Site), Some(600 * MS));
    }

    #[test]
    fn a_zero_period_sends_each_chunk_at_once() {
        let mut n = Notices::new(Duration::ZERO, Duration::ZERO, 1000 * MS);
        assert!(n.push(7 * MS, Lane::Site, 1, false));
        assert_eq!(n.take(Lane::Site).as_deref(), Some(&[1][..]));
    }
}
