//! Peers that take responses and never acknowledge them. A response's slot
//! is freed when its requester announces the chunk; one that never does
//! frees it only when the server gives up waiting. A peer that lets
//! [`SHUN_AFTER`] responses expire so (with no acknowledgement between) is
//! served nothing for [`SHUN_FOR`], so a peer that floods requests and
//! never acknowledges cannot hold every slot.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

/// Responses a peer lets expire unacknowledged before it is shunned...
pub const SHUN_AFTER: u32 = 2;
/// ... for this long.
pub const SHUN_FOR: Duration = Duration::from_secs(300);

/// Per peer: responses it let expire since its last acknowledgement, and
/// when the last one expired.
#[derive(Debug)]
pub struct Shun<P> {
    unacked: HashMap<P, (u32, Duration)>,
}

impl<P> Default for Shun<P> {
    fn default() -> Self {
        Self {
            unacked: HashMap::new(),
        }
    }
}

impl<P: Copy + Eq + Hash> Shun<P> {
    /// How long `peer` is still served nothing (`None`: it is served).
    pub fn shunned(&self, now: Duration, peer: &P) -> Option<Duration> {
        let &(count, last) = self.unacked.get(peer)?;
        let left = (last + SHUN_FOR).saturating_sub(now);
        (count >= SHUN_AFTER && !left.is_zero()).then_some(left)
    }

    /// `peer` acknowledged a response: its slate is clean.
    pub fn acked(&mut self, peer: &P) {
        self.unacked.remove(peer);
    }

    /// A response to `peer` expired unacknowledged.
    pub fn expired(&mut self, now: Duration, peer: P) {
        let e = self.unacked.entry(peer).or_insert((0, now));
        *e = (e.0 + 1, now);
    }

    /// Forgets what is older than [`SHUN_FOR`].
    pub fn prune(&mut self, now: Duration) {
        self.unacked
            .retain(|_, (_, last)| now.saturating_sub(*last) < SHUN_FOR);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn two_expired_responses_shun_a_peer_for_five_minutes() {
        let mut s = Shun::default();
        s.expired(10 * S, 7u32);
        assert_eq!(s.shunned(10 * S, &7), None, "one may be bad luck");
        s.expired(20 * S, 7);
        assert_eq!(s.shunned(20 * S, &7), Some(SHUN_FOR));
        assert_eq!(s.shunned(20 * S, &8), None);
        assert_eq!(s.shunned(320 * S, &7), None, "served again after SHUN_FOR");
        s.prune(320 * S);
        s.expired(330 * S, 7);
        assert_eq!(s.shunned(330 * S, &7), None, "pruned: counting starts anew");
    }

    #[test]
    fn an_acknowledgement_clears_the_count() {
        let mut s = Shun::default();
        s.expired(S, 1u32);
        s.acked(&1);
        s.expired(2 * S, 1);
        assert_eq!(s.shunned(2 * S, &1), None);
    }
}
