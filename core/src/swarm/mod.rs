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
mod rendezvous;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::chunk::ChunkId;
use crate::manifest::{ChunkRef, Manifest};

pub use bitfield::{Bitfield, BitfieldLenError};
pub use budget::TokenBucket;
pub use rendezvous::{assignee, PeerKey};

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
    has: Bitfield,
    /// Chunk index → deadline.
    in_flight: BTreeMap<u32, Duration>,
    strikes: u32,
    /// Last time it connected or announced a chunk new to it.
    last_progress: Duration,
    /// Not asked for anything before this (it said it was busy).
    busy_until: Duration,
}

/// The scheduler for one release on one node.
#[derive(Debug)]
pub struct Swarm<P: PeerKey> {
    config: SwarmConfig,
    me: P,
    rng: ChaCha8Rng,
    chunks: Vec<ChunkRef>,
    have: Bitfield,
    /// Chunks we lack, in a seeded random order (the rarest-first tie-break).
    lacking: Vec<u32>,
    /// Per chunk: connected peers that have it.
    availability: Vec<u32>,
    /// Per chunk: peers it is requested from.
    requested: BTreeMap<u32, Vec<P>>,
    started: Duration,
    wakeups: BTreeSet<Duration>,
    peers: BTreeMap<P, PeerState>,
    banned: BTreeSet<P>,
    budget: Option<TokenBucket>,
    actions: VecDeque<Action<P>>,
    stats: SwarmStats,
    complete: bool,
    /// The site member rendezvous hashing assigns each chunk to, computed on
    /// first use; cleared whenever the site's membership changes.
    assignees: Vec<Option<P>>,
    /// Per chunk, how many site peers have it.
    local_avail: Vec<u32>,
}

impl<P: PeerKey> Swarm<P> {
    /// A scheduler for `chunks` (see [`unique_chunks`]) on node `me`, which
    /// already holds the chunks set in `have`.
    pub fn new(
        config: SwarmConfig,
        me: P,
        chunks: Vec<ChunkRef>,
        have: Bitfield,
        now: Duration,
    ) -> Self {
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
            me,
            rng,
            availability: vec![0; chunks.len()],
            chunks,
            have,
            lacking,
            requested: BTreeMap::new(),
            started: now,
            wakeups: BTreeSet::new(),
            peers: BTreeMap::new(),
            banned: BTreeSet::new(),
            budget,
            actions,
            stats: SwarmStats::default(),
            complete,
            assignees: Vec::new(),
            local_avail: vec![0; n as usize],
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
        self.peers.values().map(|p| p.in_flight.len()).sum()
    }

    // ---- inputs ----

    /// A peer connected; `site` is the site it announced.
    pub fn handle_peer_up(&mut self, now: Duration, peer: P, site: Option<SiteId>) {
        if self.banned.contains(&peer) || peer == self.me {
            return;
        }
        let local = self.config.site.is_some() && site == self.config.site;
        let n = self.chunks.len() as u32;
        if let Some(old) = self.peers.get_mut(&peer) {
            if old.local != local {
                for i in old.has.iter_ones() {
                    let a = &mut self.local_avail[i as usize];
                    *a = if local { *a + 1 } else { a.saturating_sub(1) };
                }
            }
            old.local = local;
        } else {
            let state = PeerState {
                local,
                has: Bitfield::new(n),
                in_flight: BTreeMap::new(),
                strikes: 0,
                last_progress: now,
                busy_until: Duration::ZERO,
            };
            self.peers.insert(peer, state);
        }
        self.assignees.clear();
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
        for i in has.iter_ones() {
            if !state.has.get(i) {
                self.availability[i as usize] += 1;
                if state.local {
                    self.local_avail[i as usize] += 1;
                }
                state.last_progress = now;
            }
        }
        state.has = has;
        self.schedule(now);
    }

    /// A peer now has chunk `index`.
    pub fn handle_have(&mut self, now: Duration, peer: P, index: u32) {
        let Some(state) = self.peers.get_mut(&peer) else {
            return;
        };
        if state.has.set(index) {
            state.last_progress = now;
            self.availability[index as usize] += 1;
            if state.local {
                self.local_avail[index as usize] += 1;
            }
            self.schedule(now);
        }
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
        self.stats.chunks_verified += 1;
        let len = u64::from(self.chunks[index as usize].len);
        match self.peers.get(&peer) {
            Some(p) if p.local => self.stats.bytes_from_site += len,
            _ => self.stats.bytes_from_remote += len,
        }
        if let Some(pos) = self.lacking.iter().position(|&i| i == index) {
            self.lacking.swap_remove(pos);
        }
        for other in self.requested.remove(&index).unwrap_or_default() {
            if let Some(st) = self.peers.get_mut(&other) {
                st.in_flight.remove(&index);
            }
            self.actions
                .push_back(Action::Cancel { peer: other, index });
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
                    self.availability[index as usize] =
                        self.availability[index as usize].saturating_sub(1);
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
        let expired: Vec<(P, u32)> = self
            .peers
            .iter()
            .flat_map(|(p, st)| {
                st.in_flight
                    .iter()
                    .filter(|(_, &d)| d <= now)
                    .map(move |(&i, _)| (*p, i))
            })
            .collect();
        for (peer, index) in expired {
            self.finish_request(&peer, index);
            self.stats.timeouts += 1;
            self.actions.push_back(Action::Cancel { peer, index });
        }
        self.wakeups = self.wakeups.split_off(&(now + Duration::from_nanos(1)));
        self.schedule(now);
    }

    // ---- outputs ----

    pub fn poll_action(&mut self) -> Option<Action<P>> {
        self.actions.pop_front()
    }

    /// When [`Swarm::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Duration> {
        let deadlines = self
            .peers
            .values()
            .flat_map(|p| p.in_flight.values().copied());
        deadlines.chain(self.wakeups.iter().next().copied()).min()
    }

    // ---- internals ----

    fn finish_request(&mut self, peer: &P, index: u32) -> bool {
        let had = self
            .peers
            .get_mut(peer)
            .is_some_and(|st| st.in_flight.remove(&index).is_some());
        if let Some(list) = self.requested.get_mut(&index) {
            list.retain(|p| p != peer);
            if list.is_empty() {
                self.requested.remove(&index);
            }
        }
        had
    }

    fn drop_peer(&mut self, peer: &P) {
        if let Some(st) = self.peers.remove(peer) {
            self.assignees.clear();
            for i in st.has.iter_ones() {
                self.availability[i as usize] = self.availability[i as usize].saturating_sub(1);
                if st.local {
                    self.local_avail[i as usize] = self.local_avail[i as usize].saturating_sub(1);
                }
            }
            for &index in st.in_flight.keys() {
                if let Some(list) = self.requested.get_mut(&index) {
                    list.retain(|p| p != peer);
                    if list.is_empty() {
                        self.requested.remove(&index);
                    }
                }
            }
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

    fn endgame(&self) -> bool {
        self.lacking.len() <= self.config.endgame_chunks
            && self.lacking.iter().all(|i| self.requested.contains_key(i))
    }

    /// Whether `peer` may be asked for `index` now (site policy and budget).
    fn site_allows(&mut self, now: Duration, peer_local: bool, index: u32) -> bool {
        if peer_local {
            return self.config.fetch_from_site;
        }
        if !self.config.site_aware || self.config.site.is_none() || !self.config.fetch_from_site {
            return true;
        }
        if self.local_avail[index as usize] > 0 {
            return false;
        }
        let warm = self.started + self.config.remote_warmup;
        if now < warm {
            self.wakeups.insert(warm);
            return false;
        }
        if self.assignees.len() != self.chunks.len() {
            self.assignees = vec![None; self.chunks.len()];
        }
        let chosen = match self.assignees[index as usize] {
            Some(p) => p,
            None => {
                let id = self.chunks[index as usize].id;
                let members = self
                    .peers
                    .iter()
                    .filter(|(_, s)| s.local)
                    .map(|(p, _)| p)
                    .chain(std::iter::once(&self.me));
                let Some(chosen) = assignee(&id, members) else {
                    return true;
                };
                self.assignees[index as usize] = Some(chosen);
                chosen
            }
        };
        if chosen == self.me {
            return true;
        }
        // Another member fetches this one; take over only if it has stalled.
        let Some(st) = self.peers.get(&chosen) else {
            return true;
        };
        let stalled_at = st.last_progress + self.config.assignee_grace;
        if now >= stalled_at {
            return true;
        }
        self.wakeups.insert(stalled_at);
        false
    }

    /// Picks the rarest allowed chunk for `peer`.
    fn pick(&mut self, now: Duration, peer: &P, endgame: bool) -> Option<u32> {
        let st = self.peers.get(peer)?;
        let local = st.local;
        // Uplink bytes are the scarce resource: never duplicate across it.
        let endgame = endgame && (local || !self.config.site_aware || self.config.site.is_none());
        let mut best: Option<(u32, usize)> = None;
        let candidates: Vec<(usize, u32)> = self
            .lacking
            .iter()
            .enumerate()
            .filter(|(_, &i)| st.has.get(i) && !st.in_flight.contains_key(&i))
            .filter(|(_, &i)| match self.requested.get(&i) {
                None => true,
                Some(list) => endgame && list.len() < self.config.endgame_copies,
            })
            .map(|(pos, &i)| (pos, i))
            .collect();
        for (pos, i) in candidates {
            let rarity = self.availability[i as usize];
            let better = match best {
                None => true,
                Some((r, p)) => (rarity, pos) < (r, p),
            };
            if better && self.site_allows(now, local, i) {
                best = Some((rarity, pos));
            }
        }
        best.map(|(_, pos)| self.lacking[pos])
    }

    /// Requests in flight to peers off this node's site.
    fn remote_in_flight(&self) -> usize {
        self.peers
            .values()
            .filter(|p| !p.local)
            .map(|p| p.in_flight.len())
            .sum()
    }

    /// This member's share of the site's uplink requests.
    fn remote_cap(&self) -> usize {
        if !self.config.site_aware || self.config.site.is_none() {
            return usize::MAX;
        }
        let members = 1 + self.peers.values().filter(|p| p.local).count();
        self.config.site_uplink_requests.div_ceil(members).max(1)
    }

    fn schedule(&mut self, now: Duration) {
        if self.complete {
            return;
        }
        let mut total = self.in_flight();
        // Saturated: nothing can be issued (the common case on a busy site).
        if total >= self.config.total_in_flight {
            return;
        }
        let endgame = self.endgame();
        // LAN peers first, each class in a fresh seeded order.
        let mut order: Vec<(bool, u64, P)> = self
            .peers
            .iter()
            .map(|(p, s)| (!s.local, self.rng.next_u64(), *p))
            .collect();
        order.sort_unstable();
        let remote_cap = self.remote_cap();
        let mut remote = if remote_cap == usize::MAX {
            0
        } else {
            self.remote_in_flight()
        };
        loop {
            let mut issued = false;
            for &(_, _, peer) in &order {
                if total >= self.config.total_in_flight {
                    return;
                }
                let Some(st) = self.peers.get(&peer) else {
                    continue;
                };
                if st.in_flight.len() >= self.config.per_peer_in_flight || st.busy_until > now {
                    continue;
                }
                let local = st.local;
                if !local && remote >= remote_cap {
                    continue;
                }
                let Some(index) = self.pick(now, &peer, endgame) else {
                    continue;
                };
                let len = self.chunks[index as usize].len;
                if !local {
                    if let Some(budget) = &mut self.budget {
                        if !budget.try_take(now, u64::from(len)) {
                            let at = budget.ready_at(now, u64::from(len));
                            self.wakeups.insert(at.max(now + Duration::from_millis(1)));
                            continue;
                        }
                    }
                }
                let deadline = now + self.config.request_timeout;
                if let Some(st) = self.peers.get_mut(&peer) {
                    st.in_flight.insert(index, deadline);
                }
                total += 1;
                if !local {
                    remote += 1;
                }
                self.requested.entry(index).or_default().push(peer);
                self.stats.requests += 1;
                let id = self.chunks[index as usize].id;
                self.actions.push_back(Action::Request {
                    peer,
                    index,
                    id,
                    len,
                });
                issued = true;
            }
            if !issued {
                return;
            }
        }
    }
}

#[cfg(test)]
mod harness;
#[cfg(test)]
mod tests;
