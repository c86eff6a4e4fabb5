//! The scheduling passes of [`Swarm`]: the full pass (LAN peers first, then
//! devices of other sites, then origins; a seeded walk, rarest allowed chunk
//! per peer over bitfield words), the incremental pass after a notice, and
//! the rules they apply (uplink warm-up, the rendezvous split, stalled
//! members, origins as the last resort, windows, end-game, the budget).

use std::time::Duration;

use rand_chacha::rand_core::RngCore;

use super::split::UplinkSplit;
use super::{bitfield, Action, Class, PeerKey, Req, Swarm};

/// Which chunks a class of peers may be asked for in one pass: the words
/// of the chunk bitfields worth looking at, each with a mask.
type Mask = Vec<(usize, u64)>;

impl<P: PeerKey> Swarm<P> {
    /// Whether uplink requests may start yet (the site's membership
    /// settles first); if not, wakes up when they may.
    fn warm(&mut self, now: Duration) -> bool {
        let warm = self.started + self.config.remote_warmup;
        if now < warm {
            self.wakeups.insert(warm);
        }
        now >= warm
    }

    /// The uplink split for the current membership, built if needed.
    fn split(&mut self, now: Duration) -> &UplinkSplit<P> {
        if self.split.is_none() {
            let others = self
                .local_peers
                .iter()
                .filter_map(|p| self.peers.get(p).map(|st| (*p, st.key, st.uplink)))
                .filter(|m| m.2)
                .map(|(p, key, _)| (p, key));
            self.split = Some(UplinkSplit::new(
                &self.chunks,
                (self.me, self.me_key),
                self.has_uplink(),
                others,
                self.config.site_fetchers,
            ));
            self.refresh_stalled(now);
        }
        self.split.as_ref().expect("built above")
    }

    /// Marks as stalled the site members that announced nothing new for
    /// the grace period while the site went on gaining chunks (a member
    /// that is alive announces what the site gains): their uplink chunks
    /// become anyone's. Wakes up when the next one could stall.
    pub(super) fn refresh_stalled(&mut self, now: Duration) {
        if self.complete {
            return;
        }
        let Some(split) = &mut self.split else {
            return;
        };
        let grace = self.config.assignee_grace;
        let mut next: Option<Duration> = None;
        for p in self.local_peers.iter() {
            let Some(st) = self.peers.seen_mut(p) else {
                continue;
            };
            let at = st.last_progress() + grace;
            st.stalled = now >= at && self.site_gain >= at;
            split.set_stalled(p, st.stalled);
            if !st.stalled {
                // Not silent long enough yet, or the site is quiet too:
                // look again then, or a grace period later.
                let again = if now < at { at } else { now + grace };
                next = Some(next.map_or(again, |n| n.min(again)));
            }
        }
        if let Some(at) = next {
            self.wakeups.insert(at);
        }
    }

    /// Whether a peer of this class may be asked for `index` (site policy).
    fn allowed(&mut self, now: Duration, class: Class, index: u32) -> bool {
        if class == Class::Local {
            return self.fetch_from_site();
        }
        if !self.uplink_rules() {
            return true;
        }
        let last_resort =
            class == Class::Origin && self.shares_across_sites() && self.origins_pressed(now);
        (class == Class::Origin || (class == Class::Remote && self.shares_across_sites()))
            && !self.on_site.get(index)
            && !(last_resort && self.on_remote.get(index))
            && self.warm(now)
            && self.split(now).allowed().get(index)
    }

    /// Whether end-game duplicates may go to a peer of this class.
    /// Uplink bytes are the scarce resource: never duplicate across it.
    fn endgame_for(&self, class: Class) -> bool {
        self.endgame() && (class == Class::Local || !self.uplink_rules())
    }

    /// The incremental pass after `peer` announced `index`.
    /// (`class` and `slot` are `peer`'s.)
    pub(super) fn try_request(
        &mut self,
        now: Duration,
        peer: P,
        slot: u32,
        class: Class,
        index: u32,
    ) {
        if self.complete || self.have.get(index) || self.in_flight >= self.config.total_in_flight {
            return;
        }
        // Side-effect-free checks, the cheapest first (the peer's state is
        // read only for a chunk that may be asked for).
        let requestable = self.open.get(index)
            || (self.endgame_for(class)
                && usize::from(self.requested[index as usize]) < self.config.endgame_copies
                && !self.arriving(index));
        if !requestable {
            return;
        }
        let Some(st) = self.peers.at(slot) else {
            return;
        };
        if st.asked().declined.contains(index) {
            return;
        }
        let len = u64::from(self.chunks[index as usize].len);
        if !self.may_ask(now, slot, len) || self.requested_from(&peer, index) {
            return;
        }
        if class != Class::Local && self.remote_in_flight >= self.remote_cap() {
            return;
        }
        if self.allowed(now, class, index) {
            self.issue(now, peer, slot, class, index);
        }
    }

    /// Whether `peer` may be sent a request of `len` bytes now: not backing
    /// off, under the per-peer cap, and within its window.
    fn may_ask(&self, now: Duration, slot: u32, len: u64) -> bool {
        self.peers.at(slot).is_some_and(|st| {
            let asked = st.asked();
            asked.busy_until <= now
                && (st.in_flight as usize) < self.config.per_peer_in_flight
                && asked
                    .flow
                    .admits(&self.flow_config, st.in_flight as usize, len)
        })
    }

    /// Sends the request unless the uplink budget says wait.
    fn issue(&mut self, now: Duration, peer: P, slot: u32, class: Class, index: u32) -> bool {
        let len = self.chunks[index as usize].len;
        if class != Class::Local {
            if let Some(budget) = &mut self.budget {
                if !budget.try_take(now, u64::from(len)) {
                    let at = budget.ready_at(now, u64::from(len));
                    self.wakeups.insert(at.max(now + Duration::from_millis(1)));
                    return false;
                }
            }
        }
        let Some(st) = self.peers.at_mut(slot) else {
            return false;
        };
        st.in_flight += 1;
        let flow = &mut st.asked_mut().flow;
        flow.sent(now, u64::from(len));
        let deadline = flow.deadline(&self.flow_config, now, flow.in_flight_bytes);
        let seen = flow.delivered();
        self.flying.push((
            peer,
            Req {
                index,
                len,
                received: 0,
                deadline,
                seen,
            },
        ));
        self.deadlines.insert((deadline, index, peer));
        self.in_flight += 1;
        if class != Class::Local {
            self.remote_in_flight += 1;
        }
        let r = &mut self.requested[index as usize];
        *r = r.saturating_add(1);
        if self.open.clear(index) {
            self.open_count -= 1;
        }
        self.stats.requests += 1;
        let id = self.chunks[index as usize].id;
        self.actions.push_back(Action::Request {
            peer,
            index,
            id,
            len,
        });
        true
    }

    /// The chunks a peer of this class may be asked for in this pass
    /// (end-game duplicates aside): open ones; across the uplink only those
    /// no site peer has and this node is to fetch, and from an origin (with
    /// cross-site sharing) only those no device of another site has.
    fn mask(&mut self, now: Duration, class: Class) -> Mask {
        if self.open_count == 0 {
            return Vec::new();
        }
        if class == Class::Local {
            if !self.fetch_from_site() {
                return Vec::new();
            }
            let (open, site) = (self.open.words(), self.on_site.words());
            return nonzero_words(open.len(), |k| open[k] & site[k]);
        }
        if !self.uplink_rules() {
            let open = self.open.words();
            return nonzero_words(open.len(), |k| open[k]);
        }
        if class == Class::Bystander
            || (class == Class::Remote && !self.shares_across_sites())
            || !self.warm(now)
        {
            return Vec::new();
        }
        self.split(now);
        let last_resort =
            class == Class::Origin && self.shares_across_sites() && self.origins_pressed(now);
        let (open, site, elsewhere) = (
            self.open.words(),
            self.on_site.words(),
            self.on_remote.words(),
        );
        let allowed = self.split.as_ref().map(|s| s.allowed().words());
        nonzero_words(open.len(), |k| {
            let mut m = open[k] & !site[k] & allowed.map_or(!0, |a| a[k]);
            if last_resort {
                m &= !elsewhere[k];
            }
            m
        })
    }

    /// Picks the rarest chunk for `peer` among `mask` (still open) and,
    /// in end-game, the lacking chunks with room for another copy.
    fn pick(&self, peer: &P, slot: u32, mask: &Mask, endgame: bool) -> Option<u32> {
        let st = self.peers.at(slot)?;
        let open = self.open.words();
        let key = |i: u32| (self.holders[i as usize].all, self.rank[i as usize], i);
        let mut best: Option<(u16, u32, u32)> = None;
        let declined = st.asked().declined.words();
        for &(k, m) in mask {
            let skip = declined.map_or(0, |d| d[k]);
            let has = self.peers.has_word(slot, k);
            for i in bitfield::ones(k, has & m & open[k] & !skip) {
                best = Some(best.map_or(key(i), |b| b.min(key(i))));
            }
        }
        if endgame {
            for &i in &self.lacking {
                if self.peers.has(slot, i)
                    && usize::from(self.requested[i as usize]) < self.config.endgame_copies
                    && !self.arriving(i)
                    && !self.requested_from(peer, i)
                    && !st.asked().declined.contains(i)
                {
                    best = Some(best.map_or(key(i), |b| b.min(key(i))));
                }
            }
        }
        best.map(|(_, _, i)| i)
    }

    /// A seeded random walk over `n` peers: a start and a step coprime
    /// with `n`, so every peer comes once, in an order that changes with
    /// every pass (without drawing a number per peer).
    fn walk(&mut self, n: usize) -> (usize, usize) {
        if n < 2 {
            return (0, 1);
        }
        let start = (self.rng.next_u64() % n as u64) as usize;
        let mut step = 1 + (self.rng.next_u64() % (n as u64 - 1)) as usize;
        while gcd(step, n) != 1 {
            step = step % (n - 1) + 1;
        }
        (start, step)
    }

    /// A full pass: LAN peers first, then origins and devices of other sites
    /// (origins last while they refuse work), each class from a seeded random
    /// place, one request per peer per round until the caps are reached or
    /// nothing more can be asked.
    pub(super) fn schedule(&mut self, now: Duration) {
        if self.complete || self.in_flight >= self.config.total_in_flight {
            return;
        }
        let endgame = self.endgame();
        if self.open_count == 0 && !endgame {
            return;
        }
        let remote_cap = self.remote_cap();
        // Other sites are asked before origins only while origins refuse
        // work (they are the bottleneck); otherwise origins come first, and
        // sites' uplinks carry nothing for each other.
        let order = if self.shares_across_sites() && !self.origins_pressed(now) {
            [Class::Local, Class::Origin, Class::Remote]
        } else {
            [Class::Local, Class::Remote, Class::Origin]
        };
        let classes = order.map(|c| (c, self.mask(now, c), self.endgame_for(c)));
        let orders = order.map(|c| {
            let n = self.class(c).len();
            self.walk(n)
        });
        // Within one pass nothing a peer could be asked for is added and
        // no room frees up, so a peer that could take no chunk, or had
        // nothing to offer, is not looked at again; a peer holding nothing
        // in its class's mask is passed from the start (outside end-game),
        // found from its has-bitfield's words in the mask alone.
        let mut passed = std::mem::take(&mut self.passed);
        for (c, (class, mask, endgame)) in classes.iter().enumerate() {
            let slots = self.class(*class).slots();
            let p = &mut passed[c];
            p.clear();
            if *endgame {
                p.resize(slots.len(), false);
                continue;
            }
            p.resize(slots.len(), true);
            for (at, &s) in slots.iter().enumerate() {
                if self.peers.has_any(s, mask) {
                    p[at] = false;
                }
            }
        }
        self.pass_rounds(now, &classes, orders, remote_cap, &mut passed);
        self.passed = passed;
    }

    /// The rounds of a full pass, one request per peer per round, until
    /// the caps are reached or a round issues nothing.
    fn pass_rounds(
        &mut self,
        now: Duration,
        classes: &[(Class, Mask, bool); 3],
        orders: [(usize, usize); 3],
        remote_cap: usize,
        passed: &mut [Vec<bool>; 3],
    ) {
        let min_len = self.min_len;
        loop {
            let mut issued = false;
            for (c, (class, mask, endgame)) in classes.iter().enumerate() {
                if mask.is_empty() && !endgame {
                    continue;
                }
                let n = self.class(*class).len();
                let (start, step) = orders[c];
                let mut at = start;
                for k in 0..n {
                    if k > 0 {
                        // (start + k * step) % n, stepping.
                        at += step;
                        if at >= n {
                            at -= n;
                        }
                    }
                    if self.in_flight >= self.config.total_in_flight {
                        return;
                    }
                    if *class != Class::Local && self.remote_in_flight >= remote_cap {
                        break;
                    }
                    if passed[c][at] {
                        continue;
                    }
                    let (peer, slot) = self.class(*class).at(at);
                    if !self.may_ask(now, slot, min_len) {
                        passed[c][at] = true;
                        continue;
                    }
                    let Some(index) = self.pick(&peer, slot, mask, *endgame) else {
                        passed[c][at] = true;
                        continue;
                    };
                    let len = u64::from(self.chunks[index as usize].len);
                    if !self.may_ask(now, slot, len) {
                        continue;
                    }
                    issued |= self.issue(now, peer, slot, *class, index);
                }
            }
            if !issued {
                return;
            }
        }
    }
}

/// The words `k` of `0..words` where `mask(k)` is not zero, with it.
fn nonzero_words(words: usize, mask: impl Fn(usize) -> u64) -> Mask {
    (0..words)
        .map(|k| (k, mask(k)))
        .filter(|&(_, m)| m != 0)
        .collect()
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}
