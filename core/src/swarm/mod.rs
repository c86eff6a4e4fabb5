//! The swarm scheduler: which chunk to request from which peer, and when.
//!
//! A sans-IO state machine in the style of quinn-proto: inputs are method
//! calls that take `now` (time since an epoch the driver picks), outputs are
//! [`Action`]s drained with [`Swarm::poll_action`] and a deadline from
//! [`Swarm::poll_timeout`]. It never reads a clock, does no I/O and draws its
//! randomness from the configured seed, so the node and the simulator run
//! exactly this code and a simulation is reproducible.
//!
//! Policies (DESIGN.md §5): rarest-first with a seeded tie-break; bounded
//! pipelining per peer and in total; end-game duplicates for the last
//! chunks; site awareness (LAN peers first; a chunk crosses the uplink only
//! when no site peer has it, fetched by the one site member that rendezvous
//! hashing assigns, with a fallback after a grace period); an uplink byte
//! budget; penalties and bans for peers that send chunks failing their hash.

mod bitfield;
mod budget;
mod pass;
mod rendezvous;
mod split;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::chunk::ChunkId;
use crate::manifest::{ChunkRef, Manifest};

pub use bitfield::{Bitfield, BitfieldLenError};
pub use budget::TokenBucket;
pub use rendezvous::{assignee, member_key, PeerKey};
use split::UplinkSplit;

/// A site (one factory LAN behind one uplink), named by a hash of its name.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct SiteId(pub u64);

impl SiteId {
    pub fn from_name(name: &str) -> Self {
        let h = blake3::derive_key("pollen site id v1", name.as_bytes());
        let mut b = [0u8; 8];
        b.copy_from_slice(&h[..8]);
        Self(u64::from_le_bytes(b))
    }
}

/// The chunk list the swarm works on: each distinct chunk once, in order of
/// first appearance. Bit `i` of every [`Bitfield`] refers to entry `i`.
pub fn unique_chunks(manifest: &Manifest) -> Vec<ChunkRef> {
    let mut seen = std::collections::HashSet::new();
    manifest
        .chunks
        .iter()
        .filter(|c| seen.insert(c.id))
        .copied()
        .collect()
}

/// Scheduler settings. [`SwarmConfig::default`] is the node's default policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwarmConfig {
    /// Seed for every random choice.
    pub seed: u64,
    /// Requests in flight to one peer.
    pub per_peer_in_flight: usize,
    /// Requests in flight in total.
    pub total_in_flight: usize,
    /// A request not answered by then is abandoned and retried elsewhere.
    pub request_timeout: Duration,
    /// End-game starts when every lacking chunk is requested and at most this many remain.
    pub endgame_chunks: usize,
    /// Copies of one request in flight during end-game.
    pub endgame_copies: usize,
    /// This node's site; `None` treats every peer alike.
    pub site: Option<SiteId>,
    /// Site awareness (Pollen's policy). Off: a plain swarm that fetches from anyone.
    pub site_aware: bool,
    /// Fetch from peers on the same site. Off (`--no-lan`): only remote peers.
    pub fetch_from_site: bool,
    /// Uplink budget in bytes per second for requests to remote peers.
    pub uplink_rate: Option<u64>,
    /// A site member assigned to fetch chunks across the uplink that announces
    /// nothing new for this long is considered stalled: we fetch its chunks ourselves.
    pub assignee_grace: Duration,
    /// With site awareness, no uplink request before this long after start,
    /// so the site's membership (and so the split of uplink work) settles first.
    pub remote_warmup: Duration,
    /// Chunks failing verification before a peer is banned.
    pub ban_after: u32,
    /// How long to leave a peer alone after it answered `Busy`.
    pub busy_backoff: Duration,
    /// With site awareness: requests the whole site keeps in flight across
    /// its uplink; each member takes its share (at least one). Deep queues
    /// on a slow shared uplink only turn into timeouts and duplicates.
    pub site_uplink_requests: usize,
}

impl Default for SwarmConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            per_peer_in_flight: 8,
            total_in_flight: 64,
            request_timeout: Duration::from_secs(30),
            endgame_chunks: 8,
            endgame_copies: 2,
            site: None,
            site_aware: true,
            fetch_from_site: true,
            uplink_rate: None,
            assignee_grace: Duration::from_secs(20),
            remote_warmup: Duration::from_secs(2),
            ban_after: 2,
            busy_backoff: Duration::from_millis(250),
            site_uplink_requests: 16,
        }
    }
}

/// What the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action<P> {
    /// Ask `peer` for chunk `index` (id and length given for convenience).
    Request {
        peer: P,
        index: u32,
        id: ChunkId,
        len: u32,
    },
    /// Abandon the request for `index` sent to `peer`.
    Cancel { peer: P, index: u32 },
    /// We now hold `index`: tell the peers.
    Have { index: u32 },
    /// `peer` sent a chunk that failed verification.
    Penalise { peer: P },
    /// Disconnect `peer` and refuse it from now on.
    Ban { peer: P },
    /// Every chunk is held.
    Complete,
}

/// Counters, for logs, metrics and the simulator's reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SwarmStats {
    pub requests: u64,
    pub chunks_verified: u64,
    pub chunks_rejected: u64,
    pub duplicates: u64,
    pub timeouts: u64,
    pub failures: u64,
    /// Verified bytes from peers on this node's site.
    pub bytes_from_site: u64,
    /// Verified bytes from peers elsewhere (across the uplink).
    pub bytes_from_remote: u64,
}

#[derive(Debug)]
struct PeerState {
    local: bool,
    /// Its rendezvous key.
    key: u64,
    has: Bitfield,
    /// (chunk, deadline) of each request in flight to it.
    in_flight: Vec<(u32, Duration)>,
    strikes: u32,
    /// Last time it connected or announced a chunk new to it.
    last_progress: Duration,
    /// Not asked for anything before this (it said it was busy).
    busy_until: Duration,
    /// Marked stalled in the uplink split.
    stalled: bool,
}

/// The scheduler for one release on one node.
///
/// Costs: a `Have` is O(log peers) (only the announced chunk can have
/// become requestable); a full pass, after a chunk arrives or a slot frees,
/// walks the peers with word-wide set operations over the release's chunks.
#[derive(Debug)]
pub struct Swarm<P: PeerKey> {
    config: SwarmConfig,
    me: P,
    me_key: u64,
    rng: ChaCha8Rng,
    chunks: Arc<[ChunkRef]>,
    have: Bitfield,
    /// The chunks still lacking, first in a seeded random order; a chunk
    /// gained is swapped out for the last one, so the order keeps moving
    /// (the rarest-first tie-break).
    lacking: Vec<u32>,
    /// Per lacking chunk: its place in `lacking`.
    rank: Vec<u32>,
    /// Per chunk: connected peers that have it. This and `local_avail`
    /// are exact for the chunks this node lacks, the only ones they steer;
    /// `handle_have` stops counting a chunk once it is held.
    availability: Vec<u32>,
    /// Per chunk: site peers that have it.
    local_avail: Vec<u32>,
    /// Chunks some site peer has.
    on_site: Bitfield,
    /// Lacking chunks with no request in flight, and how many.
    open: Bitfield,
    open_count: u32,
    /// Per chunk: requests in flight for it.
    requested: Vec<u16>,
    /// Every request in flight, by deadline.
    deadlines: BTreeSet<(Duration, u32, P)>,
    in_flight: usize,
    remote_in_flight: usize,
    /// Connected peers by class, each sorted; a pass starts each at a random place.
    local_peers: Vec<P>,
    remote_peers: Vec<P>,
    started: Duration,
    wakeups: BTreeSet<Duration>,
    peers: BTreeMap<P, PeerState>,
    banned: BTreeSet<P>,
    budget: Option<TokenBucket>,
    actions: VecDeque<Action<P>>,
    stats: SwarmStats,
    complete: bool,
    /// Who fetches which chunk across the uplink: built when first needed
    /// after the site's membership changed.
    split: Option<UplinkSplit<P>>,
    /// Scratch for `handle_have_many`.
    fresh: Vec<u32>,
}

impl<P: PeerKey> Swarm<P> {
    /// A scheduler for `chunks` (see [`unique_chunks`]) on node `me`, which
    /// already holds the chunks set in `have`.
    pub fn new(
        config: SwarmConfig,
        me: P,
        chunks: impl Into<Arc<[ChunkRef]>>,
        have: Bitfield,
        now: Duration,
    ) -> Self {
        let chunks: Arc<[ChunkRef]> = chunks.into();
        let n = chunks.len() as u32;
        let mut have = have;
        if have.len() != n {
            have = Bitfield::new(n);
        }
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let mut lacking: Vec<u32> = (0..n).filter(|&i| !have.get(i)).collect();
        // Fisher–Yates with the seeded generator.
        for i in (1..lacking.len()).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            lacking.swap(i, j);
        }
        let mut rank = vec![0; n as usize];
        let mut open = Bitfield::new(n);
        for (pos, &i) in lacking.iter().enumerate() {
            rank[i as usize] = pos as u32;
            open.set(i);
        }
        let open_count = lacking.len() as u32;
        let max_chunk = chunks.iter().map(|c| u64::from(c.len)).max().unwrap_or(0);
        let budget = config
            .uplink_rate
            .map(|r| TokenBucket::new(r, max_chunk, now));
        let complete = lacking.is_empty();
        let mut actions = VecDeque::new();
        if complete {
            actions.push_back(Action::Complete);
        }
        Self {
            config,
            me_key: member_key(&me),
            me,
            rng,
            availability: vec![0; n as usize],
            local_avail: vec![0; n as usize],
            on_site: Bitfield::new(n),
            open,
            open_count,
            requested: vec![0; n as usize],
            chunks,
            have,
            lacking,
            rank,
            deadlines: BTreeSet::new(),
            in_flight: 0,
            remote_in_flight: 0,
            local_peers: Vec::new(),
            remote_peers: Vec::new(),
            started: now,
            wakeups: BTreeSet::new(),
            peers: BTreeMap::new(),
            banned: BTreeSet::new(),
            budget,
            actions,
            stats: SwarmStats::default(),
            complete,
            split: None,
            fresh: Vec::new(),
        }
    }

    pub fn have(&self) -> &Bitfield {
        &self.have
    }

    pub fn chunks(&self) -> &[ChunkRef] {
        &self.chunks
    }

    pub fn stats(&self) -> &SwarmStats {
        &self.stats
    }

    pub fn is_complete(&self) -> bool {
        self.complete
    }

    pub fn is_banned(&self, peer: &P) -> bool {
        self.banned.contains(peer)
    }

    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Requests in flight, over all peers.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Runs a full pass now (tests check it finds nothing the incremental
    /// pass of [`Swarm::handle_have`] missed).
    #[cfg(test)]
    pub(crate) fn full_pass(&mut self, now: Duration) {
        self.schedule(now);
    }

    // ---- inputs ----

    /// A peer connected; `site` is the site it announced.
    pub fn handle_peer_up(&mut self, now: Duration, peer: P, site: Option<SiteId>) {
        if self.banned.contains(&peer) || peer == self.me {
            return;
        }
        let local = self.config.site.is_some() && site == self.config.site;
        match self.peers.get(&peer).map(|st| st.local) {
            Some(was) if was == local => {}
            Some(_) => self.reclassify(&peer, local),
            None => {
                let state = PeerState {
                    local,
                    key: member_key(&peer),
                    has: Bitfield::new(self.chunks.len() as u32),
                    in_flight: Vec::new(),
                    strikes: 0,
                    last_progress: now,
                    busy_until: Duration::ZERO,
                    stalled: false,
                };
                self.peers.insert(peer, state);
                self.class_mut(local).push(peer);
                self.class_mut(local).sort_unstable();
                if local {
                    self.split = None;
                }
            }
        }
        self.schedule(now);
    }

    /// A peer went away: its requests are retried elsewhere.
    pub fn handle_peer_down(&mut self, now: Duration, peer: P) {
        self.drop_peer(&peer);
        self.schedule(now);
    }

    /// A peer's whole has-set (it must be [`Bitfield::checked`] by the caller).
    pub fn handle_have_all(&mut self, now: Duration, peer: P, has: Bitfield) {
        if has.len() != self.chunks.len() as u32 {
            return;
        }
        let Some(state) = self.peers.get_mut(&peer) else {
            return;
        };
        let old = std::mem::replace(&mut state.has, has);
        let local = state.local;
        let (mut gained, mut lost) = (Vec::new(), Vec::new());
        for (k, (&new, &was)) in state.has.words().iter().zip(old.words()).enumerate() {
            gained.extend(bitfield::ones(k, new & !was));
            lost.extend(bitfield::ones(k, was & !new));
        }
        for &i in &gained {
            self.availability[i as usize] += 1;
            if local {
                self.local_avail[i as usize] += 1;
                self.on_site.set(i);
            }
        }
        for i in lost {
            self.availability[i as usize] = self.availability[i as usize].saturating_sub(1);
            if local {
                self.lose_local(i);
            }
        }
        let progress = !gained.is_empty();
        if progress {
            self.progressed(now, &peer);
        }
        self.schedule(now);
    }

    /// A peer now has chunk `index`.
    pub fn handle_have(&mut self, now: Duration, peer: P, index: u32) {
        self.handle_have_many(now, peer, &[index]);
    }

    /// A peer now has each chunk of `indices` (a batch of notices).
    pub fn handle_have_many(&mut self, now: Duration, peer: P, indices: &[u32]) {
        // Done: nothing more to schedule, so nothing to track.
        if self.complete {
            return;
        }
        let Some(state) = self.peers.get_mut(&peer) else {
            return;
        };
        let was_stalled = std::mem::take(&mut state.stalled);
        state.last_progress = now;
        if was_stalled {
            if let Some(split) = &mut self.split {
                split.set_stalled(&peer, false);
            }
        }
        let local = state.local;
        // Counts cover only chunks this node lacks (the only ones they
        // steer), so a chunk held already needs no more than the progress.
        let mut fresh = std::mem::take(&mut self.fresh);
        fresh.extend(
            indices
                .iter()
                .copied()
                .filter(|&i| !self.have.get(i) && state.has.set(i)),
        );
        for &index in &fresh {
            self.availability[index as usize] += 1;
            if local {
                self.local_avail[index as usize] += 1;
                self.on_site.set(index);
            }
            // Everything requestable before was requested (or a cap stopped
            // it): only this chunk, from this peer, can be new.
            self.try_request(now, peer, index);
        }
        fresh.clear();
        self.fresh = fresh;
    }

    /// A requested chunk arrived; `verified` says whether its BLAKE3 matched.
    /// The caller stores it only when verified.
    pub fn handle_chunk(&mut self, now: Duration, peer: P, index: u32, verified: bool) {
        if index as usize >= self.chunks.len() {
            return;
        }
        let was_requested = self.finish_request(&peer, index);
        if !verified {
            self.stats.chunks_rejected += 1;
            self.strike(peer);
            self.schedule(now);
            return;
        }
        if !was_requested || self.have.get(index) {
            self.stats.duplicates += 1;
            if self.have.get(index) {
                self.schedule(now);
                return;
            }
        }
        self.have.set(index);
        let pos = self.rank[index as usize] as usize;
        self.lacking.swap_remove(pos);
        if let Some(&moved) = self.lacking.get(pos) {
            self.rank[moved as usize] = pos as u32;
        }
        if self.open.clear(index) {
            self.open_count -= 1;
        }
        self.stats.chunks_verified += 1;
        let len = u64::from(self.chunks[index as usize].len);
        match self.peers.get(&peer) {
            Some(p) if p.local => self.stats.bytes_from_site += len,
            _ => self.stats.bytes_from_remote += len,
        }
        if self.requested[index as usize] > 0 {
            let others: Vec<P> = self
                .peers
                .iter()
                .filter(|(_, st)| st.in_flight.iter().any(|&(i, _)| i == index))
                .map(|(p, _)| *p)
                .collect();
            for other in others {
                self.finish_request(&other, index);
                self.actions
                    .push_back(Action::Cancel { peer: other, index });
            }
        }
        self.actions.push_back(Action::Have { index });
        if self.lacking.is_empty() && !self.complete {
            self.complete = true;
            self.actions.push_back(Action::Complete);
        }
        self.schedule(now);
    }

    /// The peer does not have the chunk after all: do not ask it for this
    /// chunk again until it announces it anew.
    pub fn handle_request_failed(&mut self, now: Duration, peer: P, index: u32) {
        if self.finish_request(&peer, index) {
            self.stats.failures += 1;
            if let Some(st) = self.peers.get_mut(&peer) {
                if st.has.clear(index) {
                    let local = st.local;
                    self.availability[index as usize] =
                        self.availability[index as usize].saturating_sub(1);
                    if local {
                        self.lose_local(index);
                    }
                }
            }
        }
        self.schedule(now);
    }

    /// The peer is overloaded or the request broke off: try elsewhere now,
    /// and this peer again after [`SwarmConfig::busy_backoff`].
    pub fn handle_request_busy(&mut self, now: Duration, peer: P, index: u32) {
        if self.finish_request(&peer, index) {
            self.stats.failures += 1;
            if let Some(st) = self.peers.get_mut(&peer) {
                st.busy_until = now + self.config.busy_backoff;
                self.wakeups.insert(st.busy_until);
            }
        }
        self.schedule(now);
    }

    /// Timers: request deadlines, grace periods, budget refills.
    pub fn handle_timeout(&mut self, now: Duration) {
        while let Some(&(deadline, index, peer)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.finish_request(&peer, index);
            self.stats.timeouts += 1;
            self.actions.push_back(Action::Cancel { peer, index });
        }
        self.wakeups = self.wakeups.split_off(&(now + Duration::from_nanos(1)));
        self.refresh_stalled(now);
        self.schedule(now);
    }

    // ---- outputs ----

    pub fn poll_action(&mut self) -> Option<Action<P>> {
        self.actions.pop_front()
    }

    /// When [`Swarm::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Duration> {
        let deadline = self.deadlines.first().map(|d| d.0);
        match (deadline, self.wakeups.first().copied()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // ---- internals ----

    /// The connected peers of one class (site or elsewhere), sorted.
    fn class(&self, local: bool) -> &[P] {
        if local {
            &self.local_peers
        } else {
            &self.remote_peers
        }
    }

    fn class_mut(&mut self, local: bool) -> &mut Vec<P> {
        if local {
            &mut self.local_peers
        } else {
            &mut self.remote_peers
        }
    }

    /// Site-aware rules for requests across the uplink apply.
    fn uplink_rules(&self) -> bool {
        self.config.site_aware && self.config.site.is_some() && self.config.fetch_from_site
    }

    /// This member's share of the site's uplink requests.
    fn remote_cap(&self) -> usize {
        if !self.config.site_aware || self.config.site.is_none() {
            return usize::MAX;
        }
        let members = 1 + self.local_peers.len();
        self.config.site_uplink_requests.div_ceil(members).max(1)
    }

    fn endgame(&self) -> bool {
        !self.lacking.is_empty()
            && self.lacking.len() <= self.config.endgame_chunks
            && self.open_count == 0
    }

    /// A site peer no longer counts as holding `index`.
    fn lose_local(&mut self, index: u32) {
        let a = &mut self.local_avail[index as usize];
        *a = a.saturating_sub(1);
        if *a == 0 {
            self.on_site.clear(index);
        }
    }

    /// `peer` announced something new.
    fn progressed(&mut self, now: Duration, peer: &P) {
        if let Some(st) = self.peers.get_mut(peer) {
            st.last_progress = now;
            st.stalled = false;
        }
        if let Some(split) = &mut self.split {
            split.set_stalled(peer, false);
        }
    }

    /// A known peer moved between site and elsewhere.
    fn reclassify(&mut self, peer: &P, local: bool) {
        let Some(st) = self.peers.get_mut(peer) else {
            return;
        };
        st.local = local;
        let n = st.in_flight.len();
        let ones: Vec<u32> = st.has.iter_ones().collect();
        for i in ones {
            if local {
                self.local_avail[i as usize] += 1;
                self.on_site.set(i);
            } else {
                self.lose_local(i);
            }
        }
        if local {
            self.remote_in_flight -= n;
        } else {
            self.remote_in_flight += n;
        }
        self.class_mut(!local).retain(|p| p != peer);
        self.class_mut(local).push(*peer);
        self.class_mut(local).sort_unstable();
        self.split = None;
    }

    fn finish_request(&mut self, peer: &P, index: u32) -> bool {
        let Some(st) = self.peers.get_mut(peer) else {
            return false;
        };
        let Some(pos) = st.in_flight.iter().position(|&(i, _)| i == index) else {
            return false;
        };
        let (_, deadline) = st.in_flight.swap_remove(pos);
        if !st.local {
            self.remote_in_flight -= 1;
        }
        self.deadlines.remove(&(deadline, index, *peer));
        self.in_flight -= 1;
        let r = &mut self.requested[index as usize];
        *r -= 1;
        if *r == 0 && !self.have.get(index) && self.open.set(index) {
            self.open_count += 1;
        }
        true
    }

    fn drop_peer(&mut self, peer: &P) {
        let Some(st) = self.peers.get(peer) else {
            return;
        };
        let local = st.local;
        let flying: Vec<u32> = st.in_flight.iter().map(|&(i, _)| i).collect();
        for index in flying {
            self.finish_request(peer, index);
        }
        let Some(st) = self.peers.remove(peer) else {
            return;
        };
        for i in st.has.iter_ones() {
            self.availability[i as usize] = self.availability[i as usize].saturating_sub(1);
            if local {
                self.lose_local(i);
            }
        }
        self.class_mut(local).retain(|p| p != peer);
        if local {
            self.split = None;
        }
    }

    fn strike(&mut self, peer: P) {
        let Some(st) = self.peers.get_mut(&peer) else {
            return;
        };
        st.strikes += 1;
        if st.strikes >= self.config.ban_after {
            self.drop_peer(&peer);
            self.banned.insert(peer);
            self.actions.push_back(Action::Ban { peer });
        } else {
            self.actions.push_back(Action::Penalise { peer });
        }
    }
}

#[cfg(test)]
mod harness;
#[cfg(test)]
mod tests;
