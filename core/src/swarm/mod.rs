//! The swarm scheduler: which chunk to request from which peer, and when.
//!
//! A sans-IO state machine in the style of quinn-proto: inputs are method
//! calls that take `now` (time since an epoch the driver picks), outputs are
//! [`Action`]s drained with [`Swarm::poll_action`] and a deadline from
//! [`Swarm::poll_timeout`]. It never reads a clock, does no I/O and draws its
//! randomness from the configured seed, so the node and the simulator run
//! exactly this code and a simulation is reproducible.
//!
//! Policies (DESIGN.md §5): rarest-first with a seeded tie-break; a window
//! per source sized from the rate it delivers, deadlines from that rate,
//! and back-off with jitter after a refusal ([`flow`]); end-game duplicates
//! for the last chunks; site awareness (LAN peers first; a chunk crosses
//! the uplink only when no site peer has it, fetched by the one site member
//! with an uplink connection that rendezvous hashing assigns, from a device
//! of another site when one has it and from an origin only when none does);
//! an uplink byte budget; penalties and bans for peers that send chunks
//! failing their hash.

mod bitfield;
mod budget;
mod declines;
mod flow;
mod pass;
mod peers;
pub(crate) mod rendezvous;
mod split;
mod timers;

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::chunk::ChunkId;
use crate::manifest::{ChunkRef, Manifest};

pub use bitfield::{Bitfield, BitfieldLenError};
pub use budget::TokenBucket;
pub use flow::WindowMode;
use flow::{Flow, FlowConfig};
use peers::{Peers, Roster};
pub use rendezvous::{assignee, member_key, PeerKey};
pub use split::keep_fetchers;
use split::UplinkSplit;
use timers::Timers;

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

/// An origin that declined a chunk within this long is treated as the
/// fleet's bottleneck (asked only for what no other site has).
const ORIGIN_PRESSURE: Duration = Duration::from_secs(5);
/// A `Busy` hint longer than this says the peer is the bottleneck (an
/// unmeasured server hints a second; a saturated one, the time its queue
/// takes to drain past its bound).
const PRESSURE_HINT: Duration = Duration::from_secs(4);

/// How a peer relates to this node, from what it announced: a site
/// member, a device elsewhere, or a publisher's server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    /// On this node's site (its LAN).
    Local,
    /// A gateway of another site (a device that serves other sites):
    /// reached across both sites' uplinks.
    Remote,
    /// A publisher's server (seeder): holds every chunk, across the uplink.
    Origin,
    /// A device of another site that is not one of its gateways: with
    /// site awareness, never asked for anything.
    Bystander,
}

/// What a peer announced about itself when it connected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerInfo {
    /// Its site (`None`: it named none).
    pub site: Option<SiteId>,
    /// It is a publisher's server.
    pub origin: bool,
    /// It has a working connection across its uplink (meaningful for site
    /// members: only those may become the site's gateways).
    pub uplink: bool,
    /// It is one of its site's gateways: it fetches across its uplink for
    /// its site and serves other sites ([`Swarm::is_gateway`]).
    pub gateway: bool,
}

impl PeerInfo {
    /// Its class as seen from a node on `site`; with `gateways_only`
    /// (site awareness), devices of other sites that are not gateways
    /// are bystanders.
    pub fn class(&self, site: Option<SiteId>, gateways_only: bool) -> Class {
        if site.is_some() && self.site == site {
            Class::Local
        } else if self.origin {
            Class::Origin
        } else if gateways_only && !self.gateway {
            Class::Bystander
        } else {
            Class::Remote
        }
    }
}

/// Whom a node fetches from, and under which site rules: the one setting
/// behind every site predicate of the scheduler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SwarmPolicy {
    /// Pollen's (needs [`SwarmConfig::site`]; without one it is [`SwarmPolicy::Flat`]):
    /// LAN peers first, each chunk across the uplink once per site. With
    /// `cross_site`, also from gateways of other sites (origins only for
    /// chunks none of them has); without, across the uplink from origins only.
    Sites { cross_site: bool },
    /// A plain swarm: every peer alike, whatever its site.
    Flat,
    /// The central baseline (`--no-lan`): never from a site peer; every
    /// other peer alike.
    NoLan,
}

impl Default for SwarmPolicy {
    fn default() -> Self {
        Self::Sites { cross_site: true }
    }
}

/// Scheduler settings. [`SwarmConfig::default`] is the node's default policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwarmConfig {
    /// Seed for every random choice.
    pub seed: u64,
    /// Requests in flight to one peer, at most (its window decides below that).
    pub per_peer_in_flight: usize,
    /// Requests in flight in total.
    pub total_in_flight: usize,
    /// How a peer's window is sized (the node uses [`WindowMode::Rate`]).
    pub window_mode: WindowMode,
    /// Requests in flight to a peer whose delivery rate is not measured yet.
    pub initial_window: usize,
    /// A peer's window holds this long of the rate it delivers (at least one chunk).
    pub window_time: Duration,
    /// A request's deadline: this many times the time the bytes in flight to
    /// its peer take at the peer's rate, plus [`SwarmConfig::deadline_slack`].
    /// A deadline passing while the peer still delivers is moved, not acted on.
    pub deadline_margin: u32,
    pub deadline_slack: Duration,
    /// The deadline of a request to a peer whose rate is not measured yet.
    pub request_timeout: Duration,
    /// End-game starts when every lacking chunk is requested and at most this many remain.
    pub endgame_chunks: usize,
    /// Copies of one request in flight during end-game.
    pub endgame_copies: usize,
    /// This node's site; `None` treats every peer alike.
    pub site: Option<SiteId>,
    /// Whom chunks are fetched from, and under which site rules.
    pub policy: SwarmPolicy,
    /// Uplink budget in bytes per second for requests across the uplink.
    pub uplink_rate: Option<u64>,
    /// A site member assigned to fetch chunks across the uplink that
    /// announces nothing new for this long, while the rest of the site
    /// gained chunks, is considered stalled: we fetch its chunks ourselves.
    pub assignee_grace: Duration,
    /// With site awareness, no uplink request before this long after start,
    /// so the site's membership (and so the split of uplink work) settles first.
    pub remote_warmup: Duration,
    /// Chunks failing verification before a peer is banned.
    pub ban_after: u32,
    /// First back-off after a peer refused work without a hint (doubles per
    /// refusal in a row; a hint is used as given). Jittered.
    pub busy_backoff: Duration,
    /// With site awareness: requests the whole site keeps in flight across
    /// its uplink, shared by its fetchers. Deep queues on a slow shared
    /// uplink only make every chunk arrive later.
    pub site_uplink_requests: usize,
    /// With site awareness: the site's gateways, the members that fetch
    /// across its uplink and serve other sites (chosen among those with an
    /// uplink connection by a hash every member computes alike); the rest
    /// use their site only. Few, so a slow uplink carries a few fast flows
    /// each way rather than many slow ones.
    pub site_fetchers: usize,
}

impl Default for SwarmConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            per_peer_in_flight: 8,
            total_in_flight: 64,
            window_mode: WindowMode::Rate,
            initial_window: 2,
            window_time: Duration::from_secs(1),
            deadline_margin: 3,
            deadline_slack: Duration::from_secs(2),
            request_timeout: Duration::from_secs(30),
            endgame_chunks: 8,
            endgame_copies: 2,
            site: None,
            policy: SwarmPolicy::default(),
            uplink_rate: None,
            assignee_grace: Duration::from_secs(20),
            remote_warmup: Duration::from_secs(2),
            ban_after: 2,
            busy_backoff: Duration::from_millis(250),
            site_uplink_requests: 12,
            site_fetchers: 6,
        }
    }
}

impl SwarmConfig {
    fn flow(&self) -> FlowConfig {
        FlowConfig {
            mode: self.window_mode,
            initial_window: self.initial_window.max(1),
            window_time: self.window_time,
            margin: f64::from(self.deadline_margin.max(1)),
            slack: self.deadline_slack,
            initial_timeout: self.request_timeout,
            backoff: self.busy_backoff,
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
    /// What this node tells its peers about itself changed (an uplink
    /// connection came or went; it became a gateway or stopped being one).
    Role { uplink: bool, gateway: bool },
}

/// What checking a received chunk against its id found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Receipt {
    /// Its length and BLAKE3 match: stored.
    Verified,
    /// It does not match (or broke the protocol): not stored, and the
    /// sender is penalised.
    Rejected,
}

/// Counters, for logs, metrics and the simulator's reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SwarmStats {
    pub requests: u64,
    pub chunks_verified: u64,
    pub chunks_rejected: u64,
    pub duplicates: u64,
    /// Requests abandoned: no byte arrived for a whole deadline.
    pub timeouts: u64,
    /// Requests refused (`Busy`) or failed.
    pub failures: u64,
    /// Requests declined for that chunk (others have it).
    pub declined: u64,
    /// Verified bytes from peers on this node's site.
    pub bytes_from_site: u64,
    /// Verified bytes from peers elsewhere (across the uplink), origins included.
    pub bytes_from_remote: u64,
    /// Of those, bytes from origins.
    pub bytes_from_origin: u64,
    /// Requests across the uplink taken back (no piece of the chunk in
    /// yet) because a site peer had it.
    pub taken_back: u64,
}

/// How many connected peers have a chunk: in all (bystanders aside), on
/// this node's site, and devices of other sites. Sixteen bits each (one of
/// these per chunk per node is a third of a simulated device's per-chunk
/// memory): a scheduler takes at most [`MAX_PEERS`] peers.
#[derive(Clone, Copy, Debug, Default)]
struct Holders {
    all: u16,
    local: u16,
    remote: u16,
}

/// Peers one scheduler keeps at most; later ones are not taken up (far
/// above any connection limit of the node).
pub const MAX_PEERS: usize = u16::MAX as usize;

/// A request in flight.
#[derive(Clone, Copy, Debug)]
struct Req {
    index: u32,
    len: u32,
    /// Bytes of it received so far (progress reports).
    received: u32,
    deadline: Duration,
    /// The peer's delivered bytes when the deadline was set: more by the
    /// deadline means it is still delivering.
    seen: u64,
}

#[derive(Debug)]
struct PeerState {
    class: Class,
    /// Its rendezvous key.
    key: u64,
    /// Requests in flight to it (they are in [`Swarm::flying`]).
    in_flight: u32,
    /// A site member with a working uplink connection.
    uplink: bool,
    /// Made when it is first asked for something (`None`: [`NEVER_ASKED`]).
    asked: Option<Box<Asked>>,
}

/// What a peer keeps once this node has asked it for chunks: its delivery
/// rate, back-off and refusals. Boxed apart from [`PeerState`]: a device
/// has every member of its site as a peer but asks few of them, and the
/// scheduler's peer table is what a node's memory grows with.
#[derive(Debug, Default)]
struct Asked {
    flow: Flow,
    strikes: u32,
    /// Not asked for anything before this (it refused work or timed out).
    busy_until: Duration,
    /// Chunks it declined to send, each until a time (it said others have them).
    declined: declines::Declines,
    /// Last time it said it is the bottleneck: it declined a chunk (an
    /// origin super-seeds then) or was busy for long.
    declined_at: Option<Duration>,
}

/// A peer's [`Asked`] before anything was asked of it.
static NEVER_ASKED: Asked = Asked {
    flow: Flow::NEW,
    strikes: 0,
    busy_until: Duration::ZERO,
    declined: declines::Declines::NONE,
    declined_at: None,
};

impl PeerState {
    fn new(class: Class, key: u64, uplink: bool) -> Self {
        Self {
            class,
            key,
            in_flight: 0,
            uplink,
            asked: None,
        }
    }

    fn asked(&self) -> &Asked {
        self.asked.as_deref().unwrap_or(&NEVER_ASKED)
    }

    fn asked_mut(&mut self) -> &mut Asked {
        self.asked.get_or_insert_with(Box::default)
    }

    fn local(&self) -> bool {
        self.class == Class::Local
    }
}

/// The scheduler for one release on one node.
///
/// Costs: a `Have` is O(1), one probe of the peer index and a bit of the
/// peer's has-bitfield (only the announced chunk can have become
/// requestable); a full pass, after a chunk arrives or a slot frees, finds
/// the peers holding anything it may ask for from their has-bitfields
/// (a peer that never told of a chunk has none to read) and visits only
/// those, with word-wide set operations over the release's chunks.
#[derive(Debug)]
pub struct Swarm<P: PeerKey> {
    config: SwarmConfig,
    flow_config: FlowConfig,
    me: P,
    me_key: u64,
    rng: ChaCha8Rng,
    chunks: Arc<[ChunkRef]>,
    /// The shortest chunk's length (a peer whose window cannot take it is
    /// skipped without picking a chunk for it).
    min_len: u64,
    have: Bitfield,
    /// The chunks still lacking, first in a seeded random order; a chunk
    /// gained is swapped out for the last one, so the order keeps moving
    /// (the rarest-first tie-break).
    lacking: Vec<u32>,
    /// Per lacking chunk: its place in `lacking`.
    rank: Vec<u32>,
    /// Per chunk: connected peers that have it, in all and by class, side
    /// by side (a notice updates them together). Exact for the chunks this
    /// node lacks, the only ones they steer; `handle_have` stops counting a
    /// chunk once it is held.
    holders: Vec<Holders>,
    /// Chunks some site peer has.
    on_site: Bitfield,
    /// Chunks some device of another site has.
    on_remote: Bitfield,
    /// Lacking chunks with no request in flight, and how many.
    open: Bitfield,
    /// Chunks whose bytes arrived ([`Swarm::handle_arrived`]) and are being
    /// checked and stored: neither open nor asked for again meanwhile.
    checking: Bitfield,
    /// Chunks told of to peers: held, or partly held and passed on piece
    /// by piece ([`Swarm::handle_partial`]).
    told: Bitfield,
    /// The peer each chunk being checked came from, and its class: its
    /// sender may leave before the verdict (a one-shot `fetch`), and the
    /// bytes still came from the site or across the uplink.
    checking_from: Vec<(u32, P, Class)>,
    open_count: u32,
    /// Per chunk: requests in flight for it.
    requested: Vec<u16>,
    /// Every request in flight with its peer, oldest first (a short list:
    /// [`SwarmConfig::total_in_flight`] at most, end-game copies aside).
    /// One list per node rather than one per peer: a node keeps few
    /// requests in flight but has many peers, and a per-peer list's
    /// storage stays with the peer for the rest of the run.
    flying: Vec<(P, Req)>,
    /// Every request in flight, by deadline.
    deadlines: Timers<(Duration, u32, P)>,
    in_flight: usize,
    /// Requests in flight across the uplink (to remote peers and origins).
    remote_in_flight: usize,
    /// Connected peers by class, each sorted; a pass starts each at a random place.
    local_peers: Roster<P>,
    remote_peers: Roster<P>,
    origin_peers: Roster<P>,
    /// When an origin last said it is the fleet's bottleneck.
    origin_pressed_at: Option<Duration>,
    bystanders: Roster<P>,
    /// What this node last told its peers: (uplink, gateway).
    role: (bool, bool),
    started: Duration,
    /// Last time this node or a site peer gained a chunk.
    site_gain: Duration,
    wakeups: Timers<Duration>,
    /// Connected peers by slot, with what they have.
    peers: Peers<P>,
    banned: BTreeSet<P>,
    budget: Option<TokenBucket>,
    actions: VecDeque<Action<P>>,
    stats: SwarmStats,
    complete: bool,
    /// Who fetches which chunk across the uplink: built when first needed
    /// after the site's membership changed.
    split: Option<UplinkSplit<P>>,
    /// Site members reporting an uplink, counted when first needed after a
    /// change (read for every announced chunk).
    local_uplinks: std::cell::Cell<Option<usize>>,
    /// Scratch for `handle_have_many`.
    fresh: Vec<u32>,
    /// Scratch for a full pass: per class, the peers passed over.
    passed: [Vec<bool>; 3],
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
        let checking = Bitfield::new(n);
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
            flow_config: config.flow(),
            config,
            me_key: member_key(&me),
            me,
            rng,
            holders: vec![Holders::default(); n as usize],
            on_site: Bitfield::new(n),
            on_remote: Bitfield::new(n),
            open,
            checking,
            told: Bitfield::new(n),
            checking_from: Vec::new(),
            open_count,
            requested: vec![0; n as usize],
            flying: Vec::new(),
            min_len: chunks.iter().map(|c| u64::from(c.len)).min().unwrap_or(0),
            chunks,
            have,
            lacking,
            rank,
            deadlines: Timers::default(),
            in_flight: 0,
            remote_in_flight: 0,
            local_peers: Roster::default(),
            remote_peers: Roster::default(),
            origin_peers: Roster::default(),
            origin_pressed_at: None,
            bystanders: Roster::default(),
            role: (false, false),
            started: now,
            site_gain: now,
            wakeups: Timers::default(),
            peers: Peers::new(n),
            banned: BTreeSet::new(),
            budget,
            actions,
            stats: SwarmStats::default(),
            complete,
            split: None,
            local_uplinks: std::cell::Cell::new(None),
            fresh: Vec::new(),
            passed: Default::default(),
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

    /// Under the site rules, the site member that fetches chunk `index`
    /// across the uplink in this node's current split, and whether this
    /// node counts it stalled; `None` before the split is built.
    pub fn uplink_owner(&self, index: u32) -> Option<(P, bool)> {
        self.split.as_ref().and_then(|s| s.owner(index))
    }

    /// Gateways of other sites known to hold chunk `index` (devices there
    /// that are not gateways are bystanders and not counted; 0 for an
    /// index past the release).
    pub fn remote_holders(&self, index: u32) -> u16 {
        self.holders.get(index as usize).map_or(0, |h| h.remote)
    }

    /// Whether `peer` is known to hold chunk `index` (it told of it).
    pub fn peer_has(&self, peer: &P, index: u32) -> bool {
        self.peers
            .slot(peer)
            .is_some_and(|slot| self.peers.has(slot, index))
    }

    /// Requests in flight, over all peers.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Whether every site peer this node knows holds every chunk: the site
    /// no longer needs this node (a one-shot `fetch` may leave).
    pub fn site_complete(&self) -> bool {
        self.site_peers_lacking().next().is_none()
    }

    /// The site peers not known to hold every chunk, in the order they came.
    pub fn site_peers_lacking(&self) -> impl Iterator<Item = P> + '_ {
        self.local_peers
            .iter()
            .zip(self.local_peers.slots())
            .filter(|&(_, &s)| !self.peers.has_all(s))
            .map(|(&p, _)| p)
    }

    /// Bytes requested from `peer` and not received yet.
    pub fn in_flight_bytes(&self, peer: &P) -> u64 {
        self.peers
            .get(peer)
            .map_or(0, |st| st.asked().flow.in_flight_bytes)
    }

    /// The bytes `peer`'s window allows now (`None`: its rate is not
    /// measured yet, so [`SwarmConfig::initial_window`] requests).
    pub fn window_bytes(&self, peer: &P) -> Option<u64> {
        let max_chunk = self.chunks.iter().map(|c| u64::from(c.len)).max()?;
        self.peers
            .get(peer)?
            .asked()
            .flow
            .window_bytes(&self.flow_config, max_chunk)
    }

    /// The delivery rate measured from `peer`, bytes/s.
    pub fn peer_rate(&self, peer: &P) -> Option<f64> {
        self.peers.get(peer)?.asked().flow.rate()
    }

    /// Whether this node has a source across the uplink (an origin, or with
    /// cross-site sharing a device of another site): what it tells its site
    /// peers as [`PeerInfo::uplink`].
    pub fn has_uplink(&self) -> bool {
        !self.origin_peers.is_empty()
            || (self.shares_across_sites() && !self.remote_peers.is_empty())
    }

    /// When an origin last said it is the fleet's bottleneck (declined a
    /// chunk, or was busy for long); `None`: never, for this release.
    pub fn origin_pressed_at(&self) -> Option<Duration> {
        self.origin_pressed_at
    }

    /// Whether an origin is among this node's sources.
    pub fn has_origin(&self) -> bool {
        !self.origin_peers.is_empty()
    }

    /// Whether this node is one of its site's gateways: with site
    /// awareness, one of the [`SwarmConfig::site_fetchers`] members with an
    /// uplink connection that rank highest on a hash every member computes
    /// alike. A gateway fetches across the uplink for its site and serves
    /// other sites; other members use their site only. Without site
    /// awareness every node is one.
    pub fn is_gateway(&self) -> bool {
        self.role.1
    }

    fn compute_gateway(&self) -> bool {
        if !self.uplink_rules() {
            return true;
        }
        if !self.has_uplink() {
            return false;
        }
        let mut candidates: Vec<(P, u64)> = self
            .local_peers
            .iter()
            .filter_map(|p| {
                self.peers
                    .get(p)
                    .filter(|st| st.uplink)
                    .map(|st| (*p, st.key))
            })
            .chain(std::iter::once((self.me, self.me_key)))
            .collect();
        keep_fetchers(&mut candidates, self.config.site_fetchers);
        candidates.iter().any(|m| m.0 == self.me)
    }

    /// Recomputes the role; tells the driver if it changed.
    fn refresh_role(&mut self) {
        let role = (self.has_uplink(), self.compute_gateway());
        if role != self.role {
            self.role = role;
            self.actions.push_back(Action::Role {
                uplink: role.0,
                gateway: role.1,
            });
        }
    }

    /// Runs a full pass now (tests check it finds nothing the incremental
    /// pass of [`Swarm::handle_have`] missed).
    #[cfg(test)]
    pub(crate) fn full_pass(&mut self, now: Duration) {
        self.schedule(now);
    }

    // ---- inputs ----

    /// A peer connected and said who it is, or announced a change (its
    /// uplink connection, its gateway role).
    pub fn handle_peer_up(&mut self, now: Duration, peer: P, info: PeerInfo) {
        if self.banned.contains(&peer) || peer == self.me {
            return;
        }
        let class = info.class(self.config.site, self.uplink_rules());
        match self.peers.get(&peer).map(|st| (st.class, st.uplink)) {
            Some((was, up)) if was == class => {
                if class == Class::Local && up != info.uplink {
                    self.set_uplink(&peer, info.uplink);
                }
            }
            Some(_) => {
                self.reclassify(&peer, class);
                self.set_uplink(&peer, info.uplink);
            }
            None if self.peers.len() >= MAX_PEERS => {}
            None => {
                let state = PeerState::new(class, member_key(&peer), info.uplink);
                let slot = self.peers.insert(peer, state, now);
                self.class_mut(class).insert(peer, slot);
                self.membership_changed(class);
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
        let Some(slot) = self.peers.slot(&peer) else {
            return;
        };
        let Some(class) = self.peers.at(slot).map(|st| st.class) else {
            return;
        };
        let (gained, lost) = self.peers.replace_has(slot, &has);
        for &i in &gained {
            self.count_holder(i, class);
        }
        for i in lost {
            self.lose_holder(i, class);
        }
        if !gained.is_empty() {
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
        // Done: nothing more to schedule; only what peers hold is kept (for
        // [`Swarm::site_complete`]).
        let Some(seen) = self.peers.seen_mut(&peer) else {
            return;
        };
        let slot = seen.slot;
        if self.complete {
            for &i in indices {
                self.peers.set_has(slot, i);
            }
            return;
        }
        let was_stalled = std::mem::take(&mut seen.stalled);
        seen.set_progress(now);
        let class = seen.class;
        if class == Class::Local {
            self.site_gain = self.site_gain.max(now);
        }
        if was_stalled {
            if let Some(split) = &mut self.split {
                split.set_stalled(&peer, false);
            }
        }
        // Counts cover only chunks this node lacks (the only ones they
        // steer), so a chunk held already needs no more than the progress.
        let mut fresh = std::mem::take(&mut self.fresh);
        let mut taken_back = false;
        fresh.extend(
            indices
                .iter()
                .copied()
                .filter(|&i| !self.have.get(i) && self.peers.set_has(slot, i)),
        );
        for &index in &fresh {
            self.count_holder(index, class);
            if class == Class::Local {
                taken_back |= self.take_back_across(now, index);
            }
            // Everything requestable before was requested (or a cap stopped
            // it): only this chunk, from this peer, can be new — and, for a
            // chunk now on site or elsewhere, nothing from an origin.
            self.try_request(now, peer, slot, class, index);
        }
        fresh.clear();
        self.fresh = fresh;
        // A request taken back freed a place in a window across the
        // uplink: anything may go there now.
        if taken_back {
            self.schedule(now);
        }
    }

    /// A site peer has chunk `index` (or its first piece): this node's
    /// requests for it across the uplink that have brought no piece yet
    /// are taken back, and it comes over the LAN instead. Two members can
    /// both fetch a chunk across (one took the other, waiting on a slow
    /// seeder, for stalled); the first to get a piece keeps it. True if
    /// any request was taken back.
    fn take_back_across(&mut self, now: Duration, index: u32) -> bool {
        if self.remote_in_flight == 0
            || self.requested[index as usize] == 0
            || self.arriving(index)
            || !self.uplink_rules()
        {
            return false;
        }
        let across: Vec<P> = self
            .flying
            .iter()
            .filter(|(p, r)| r.index == index && self.peers.get(p).is_some_and(|st| !st.local()))
            .map(|(p, _)| *p)
            .collect();
        for &p in &across {
            self.finish_request(now, &p, index, false);
            self.stats.taken_back += 1;
            self.actions.push_back(Action::Cancel { peer: p, index });
        }
        !across.is_empty()
    }

    /// A requested chunk's bytes are all in, not yet checked: the request
    /// is over (its place in the peer's window frees and the next can go
    /// out while this one is hashed and written), and the chunk is asked
    /// for nowhere else until [`Swarm::handle_chunk`] says what it was
    /// (or [`Swarm::handle_request_busy`] that it could not be stored).
    /// Optional: a caller that checks as the bytes come calls only
    /// `handle_chunk`.
    pub fn handle_arrived(&mut self, now: Duration, peer: P, index: u32) {
        if index as usize >= self.chunks.len() {
            return;
        }
        // Set first: finishing the request must not reopen the chunk. (A
        // chunk held already is not checked for; its verdict counts the
        // duplicate.)
        let fresh = !self.have.get(index) && self.checking.set(index);
        if self.finish_request(now, &peer, index, true) {
            if let Some(st) = self.peers.get(&peer).filter(|_| fresh) {
                self.checking_from.push((index, peer, st.class));
            }
        } else if fresh {
            // Not asked of this peer (or no longer): nothing is checked here.
            self.checking.clear(index);
        }
        self.schedule(now);
    }

    /// The class of `peer`, if chunk `index` arrived from it and is being
    /// checked; forgotten here. Another copy's verdict can come first (its
    /// request was taken back, its bytes came anyway): that copy is
    /// credited to its own sender.
    fn arrived_from(&mut self, index: u32, peer: &P) -> Option<Class> {
        let pos = self
            .checking_from
            .iter()
            .position(|(i, p, _)| *i == index && p == peer)?;
        Some(self.checking_from.swap_remove(pos).2)
    }

    /// A chunk that arrived is not held after all: wanted again.
    fn uncheck(&mut self, index: u32) -> bool {
        self.checking_from.retain(|&(i, _, _)| i != index);
        let was = self.checking.clear(index);
        if was {
            self.reopen(index);
            self.untell_if_open(index);
        }
        was
    }

    /// The first piece of requested chunk `index` arrived and was checked:
    /// peers are told of the chunk now, and may ask for it while the rest
    /// comes (the node passes the pieces on as they land).
    pub fn handle_partial(&mut self, index: u32) {
        if (index as usize) < self.chunks.len() && !self.have.get(index) && self.told.set(index) {
            self.actions.push_back(Action::Have { index });
        }
    }

    /// Whether chunk `index` is coming already, so an end-game copy would
    /// only compete with it: its bytes are in and being checked, or its
    /// first piece is in ([`Swarm::handle_partial`]; and a peer that heard
    /// of it from us might be passing our own pieces back).
    fn arriving(&self, index: u32) -> bool {
        self.checking.get(index) || (self.told.get(index) && !self.have.get(index))
    }

    /// `index` is open again if nothing asks for it, holds it or checks it.
    fn reopen(&mut self, index: u32) {
        if self.requested[index as usize] == 0
            && !self.have.get(index)
            && !self.checking.get(index)
            && self.open.set(index)
        {
            self.open_count += 1;
        }
    }

    /// A requested chunk arrived and was checked against its id. The
    /// caller stores it only when [`Receipt::Verified`].
    pub fn handle_chunk(&mut self, now: Duration, peer: P, index: u32, receipt: Receipt) {
        if index as usize >= self.chunks.len() {
            return;
        }
        let sender = self.peers.get(&peer).map(|p| p.class);
        let sender = self.arrived_from(index, &peer).or(sender);
        // Checked now, if it arrived before; a rejected one is wanted again.
        let arrived = if receipt == Receipt::Rejected {
            self.uncheck(index)
        } else {
            self.checking.clear(index)
        };
        let was_requested = self.finish_request(now, &peer, index, true) || arrived;
        if receipt == Receipt::Rejected {
            self.stats.chunks_rejected += 1;
            self.strike(peer);
            self.schedule(now);
            return;
        }
        if !was_requested {
            self.spurious_timeout(now, &peer);
        }
        if !was_requested || self.have.get(index) {
            self.stats.duplicates += 1;
            if self.have.get(index) {
                self.schedule(now);
                return;
            }
        }
        self.have.set(index);
        // Other copies still being checked are duplicates now.
        self.checking_from.retain(|&(i, _, _)| i != index);
        self.site_gain = self.site_gain.max(now);
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
        match sender {
            Some(Class::Local) => self.stats.bytes_from_site += len,
            Some(Class::Origin) => {
                self.stats.bytes_from_remote += len;
                self.stats.bytes_from_origin += len;
            }
            _ => self.stats.bytes_from_remote += len,
        }
        if self.requested[index as usize] > 0 {
            // In peer order, as before (each peer has one request per chunk at most).
            let mut others: Vec<P> = self
                .flying
                .iter()
                .filter(|(_, r)| r.index == index)
                .map(|(p, _)| *p)
                .collect();
            others.sort_unstable();
            others.dedup();
            for other in others {
                self.finish_request(now, &other, index, false);
                self.actions
                    .push_back(Action::Cancel { peer: other, index });
            }
        }
        if self.told.set(index) {
            self.actions.push_back(Action::Have { index });
        }
        if self.lacking.is_empty() && !self.complete {
            self.complete = true;
            self.actions.push_back(Action::Complete);
        }
        self.schedule(now);
    }

    /// The peer does not have the chunk after all: do not ask it for this
    /// chunk again until it announces it anew.
    pub fn handle_request_failed(&mut self, now: Duration, peer: P, index: u32) {
        if self.finish_request(now, &peer, index, false) {
            self.stats.failures += 1;
            if let Some(slot) = self.peers.slot(&peer) {
                let class = self.peers.at(slot).map(|st| st.class);
                if let (true, Some(class)) = (self.peers.clear_has(slot, index), class) {
                    self.lose_holder(index, class);
                }
            }
        }
        self.schedule(now);
    }

    /// The peer refused the request (it is overloaded, or the request broke
    /// off): try elsewhere now, and this peer again after `retry_after` (its
    /// hint) or a doubling back-off, with jitter either way.
    pub fn handle_request_busy(
        &mut self,
        now: Duration,
        peer: P,
        index: u32,
        retry_after: Option<Duration>,
    ) {
        // A chunk that arrived but could not be stored counts as busy too.
        if self.finish_request(now, &peer, index, false) || self.uncheck(index) {
            self.stats.failures += 1;
            self.back_off(now, &peer, retry_after, false);
            // An origin busy for long is the bottleneck.
            if retry_after.is_some_and(|h| h > PRESSURE_HINT) {
                self.pressed(now, &peer);
            }
        }
        self.schedule(now);
    }

    /// The peer declined to send this chunk now (others have it, or it is on
    /// its way to this site): ask others for it, and this peer again for it
    /// only after `retry_after` (jittered). Other chunks it may still send.
    pub fn handle_request_declined(
        &mut self,
        now: Duration,
        peer: P,
        index: u32,
        retry_after: Duration,
    ) {
        if self.finish_request(now, &peer, index, false) {
            self.stats.declined += 1;
            let until = now + retry_after.mul_f64(1.0 + 0.5 * self.unit());
            self.pressed(now, &peer);
            let n_chunks = self.chunks.len() as u32;
            if let Some(st) = self.peers.get_mut(&peer) {
                let asked = st.asked_mut();
                asked.declined.expire(now);
                asked.declined.add(index, until, n_chunks);
                self.wakeups.insert(until);
            }
        }
        self.schedule(now);
    }

    /// Timers: request deadlines, grace periods, budget refills.
    ///
    /// `progress(peer, index)` tells how many bytes of that request have
    /// arrived so far (0 if unknown): a request whose peer is still
    /// delivering is given a new deadline rather than abandoned.
    pub fn handle_timeout(&mut self, now: Duration, mut progress: impl FnMut(&P, u32) -> u64) {
        while let Some((deadline, index, peer)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.report_progress(now, &peer, &mut progress);
            let Some(pos) = self.request_pos(&peer, index) else {
                self.deadlines.pop_first();
                continue;
            };
            let Some(st) = self.peers.get_mut(&peer) else {
                self.deadlines.pop_first();
                continue;
            };
            let flow = &st.asked().flow;
            if flow.delivered() > self.flying[pos].1.seen {
                // Still delivering: the deadline moves with what is left.
                let ahead: u64 = self.flying[..=pos]
                    .iter()
                    .filter(|(p, _)| *p == peer)
                    .map(|(_, r)| u64::from(r.len - r.received.min(r.len)))
                    .sum();
                let r = &mut self.flying[pos].1;
                r.deadline = flow.deadline(&self.flow_config, now, ahead);
                r.seen = flow.delivered();
                let moved = (r.deadline, index, peer);
                self.deadlines.pop_first();
                self.deadlines.insert(moved);
                continue;
            }
            self.finish_request(now, &peer, index, false);
            self.stats.timeouts += 1;
            self.back_off(now, &peer, None, true);
            self.actions.push_back(Action::Cancel { peer, index });
        }
        self.wakeups.drop_before(&(now + Duration::from_nanos(1)));
        for asked in self.peers.values_mut().filter_map(|st| st.asked.as_mut()) {
            asked.declined.expire(now);
        }
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
        match (deadline, self.wakeups.first()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // ---- internals ----

    /// The connected peers of one class, sorted.
    fn class(&self, class: Class) -> &Roster<P> {
        match class {
            Class::Local => &self.local_peers,
            Class::Remote => &self.remote_peers,
            Class::Origin => &self.origin_peers,
            Class::Bystander => &self.bystanders,
        }
    }

    fn class_mut(&mut self, class: Class) -> &mut Roster<P> {
        match class {
            Class::Local => &mut self.local_peers,
            Class::Remote => &mut self.remote_peers,
            Class::Origin => &mut self.origin_peers,
            Class::Bystander => &mut self.bystanders,
        }
    }

    /// Site-aware rules for requests across the uplink apply.
    fn uplink_rules(&self) -> bool {
        matches!(self.config.policy, SwarmPolicy::Sites { .. }) && self.config.site.is_some()
    }

    /// Site peers are sources.
    fn fetch_from_site(&self) -> bool {
        self.config.policy != SwarmPolicy::NoLan
    }

    /// Devices of other sites are sources (under the site rules; without
    /// them every peer is).
    fn shares_across_sites(&self) -> bool {
        !matches!(self.config.policy, SwarmPolicy::Sites { cross_site: false })
    }

    /// With cross-site sharing: an origin said lately it is the fleet's
    /// bottleneck (declined chunks, or was busy for long), so it is asked
    /// only for chunks no other site has, and after other sites.
    fn origins_pressed(&self, now: Duration) -> bool {
        self.origin_peers.slots().iter().any(|&s| {
            self.peers
                .at(s)
                .and_then(|st| st.asked().declined_at)
                .is_some_and(|t| now.saturating_sub(t) < ORIGIN_PRESSURE)
        })
    }

    /// This member's share of the site's uplink requests.
    fn remote_cap(&self) -> usize {
        if !self.uplink_rules() {
            return usize::MAX;
        }
        let uplinks = self.local_uplinks.get().unwrap_or_else(|| {
            let n = self
                .local_peers
                .iter()
                .filter(|p| self.peers.get(p).is_some_and(|st| st.uplink))
                .count();
            self.local_uplinks.set(Some(n));
            n
        });
        let candidates = 1 + uplinks;
        let members = candidates.min(self.config.site_fetchers.clamp(1, split::MAX_FETCHERS));
        self.config.site_uplink_requests.div_ceil(members).max(1)
    }

    fn endgame(&self) -> bool {
        !self.lacking.is_empty()
            && self.lacking.len() <= self.config.endgame_chunks
            && self.open_count == 0
    }

    /// A peer of `class` holds `index` now.
    fn count_holder(&mut self, index: u32, class: Class) {
        let i = index as usize;
        if class == Class::Bystander {
            return;
        }
        let h = &mut self.holders[i];
        h.all += 1;
        match class {
            Class::Local => {
                h.local += 1;
                self.on_site.set(index);
            }
            Class::Remote => {
                h.remote += 1;
                self.on_remote.set(index);
            }
            Class::Origin | Class::Bystander => {}
        }
    }

    /// A peer of `class` no longer counts as holding `index`.
    fn lose_holder(&mut self, index: u32, class: Class) {
        let i = index as usize;
        if class == Class::Bystander {
            return;
        }
        let h = &mut self.holders[i];
        h.all = h.all.saturating_sub(1);
        let (avail, set) = match class {
            Class::Local => (&mut h.local, &mut self.on_site),
            Class::Remote => (&mut h.remote, &mut self.on_remote),
            Class::Origin | Class::Bystander => return,
        };
        *avail = avail.saturating_sub(1);
        if *avail == 0 {
            set.clear(index);
        }
    }

    /// `peer` announced something new.
    fn progressed(&mut self, now: Duration, peer: &P) {
        if let Some(st) = self.peers.seen_mut(peer) {
            st.set_progress(now);
            st.stalled = false;
            if st.class == Class::Local {
                self.site_gain = self.site_gain.max(now);
            }
        }
        if let Some(split) = &mut self.split {
            split.set_stalled(peer, false);
        }
    }

    fn set_uplink(&mut self, peer: &P, uplink: bool) {
        if let Some(st) = self.peers.get_mut(peer) {
            if st.uplink != uplink {
                st.uplink = uplink;
                self.local_uplinks.set(None);
                if st.local() {
                    self.split = None;
                    self.refresh_role();
                }
            }
        }
    }

    /// A known peer moved to another class.
    fn reclassify(&mut self, peer: &P, class: Class) {
        let Some(slot) = self.peers.slot(peer) else {
            return;
        };
        let Some(st) = self.peers.at_mut(slot) else {
            return;
        };
        let old = std::mem::replace(&mut st.class, class);
        let n = st.in_flight as usize;
        if let Some(seen) = self.peers.seen_mut(peer) {
            seen.class = class;
        }
        let ones = self.peers.ones(slot);
        for i in ones {
            self.lose_holder(i, old);
            self.count_holder(i, class);
        }
        if old == Class::Local {
            self.remote_in_flight += n;
        } else if class == Class::Local {
            self.remote_in_flight -= n;
        }
        self.class_mut(old).remove(peer);
        self.class_mut(class).insert(*peer, slot);
        self.split = None;
        self.local_uplinks.set(None);
        self.refresh_role();
    }

    /// Feeds `progress` for every request in flight to `peer`.
    fn report_progress(
        &mut self,
        now: Duration,
        peer: &P,
        progress: &mut impl FnMut(&P, u32) -> u64,
    ) {
        let Some(st) = self.peers.get_mut(peer) else {
            return;
        };
        let mut more = 0u64;
        for (_, r) in self.flying.iter_mut().filter(|(p, _)| p == peer) {
            let got = progress(peer, r.index).min(u64::from(r.len)) as u32;
            if got > r.received {
                more += u64::from(got - r.received);
                r.received = got;
            }
        }
        if more > 0 {
            st.asked_mut()
                .flow
                .received(&self.flow_config, now, more, false);
        }
    }

    /// Ends the request for `index` to `peer`; `delivered` when its chunk
    /// arrived. Returns whether there was one.
    fn finish_request(&mut self, now: Duration, peer: &P, index: u32, delivered: bool) -> bool {
        let Some(pos) = self.request_pos(peer, index) else {
            return false;
        };
        let Some(st) = self.peers.get_mut(peer) else {
            return false;
        };
        let (_, r) = self.flying.remove(pos);
        st.in_flight -= 1;
        let rest = u64::from(r.len - r.received.min(r.len));
        if delivered {
            st.asked_mut()
                .flow
                .received(&self.flow_config, now, rest, true);
        } else {
            st.asked_mut().flow.ended(rest);
        }
        if !st.local() {
            self.remote_in_flight -= 1;
        }
        self.deadlines.remove(&(r.deadline, index, *peer));
        self.in_flight -= 1;
        self.requested[index as usize] -= 1;
        self.reopen(index);
        if !delivered {
            self.untell_if_open(index);
        }
        true
    }

    /// A chunk told of from its first piece ([`Swarm::handle_partial`])
    /// whose response broke off is wanted again: told of anew once held.
    fn untell_if_open(&mut self, index: u32) {
        if self.open.get(index) {
            self.told.clear(index);
        }
    }

    /// Where the request for `index` to `peer` is in [`Swarm::flying`].
    fn request_pos(&self, peer: &P, index: u32) -> Option<usize> {
        if self.requested.get(index as usize).is_none_or(|&n| n == 0) {
            return None;
        }
        self.flying
            .iter()
            .position(|(p, r)| r.index == index && p == peer)
    }

    /// Whether a request for `index` to `peer` is in flight.
    fn requested_from(&self, peer: &P, index: u32) -> bool {
        self.request_pos(peer, index).is_some()
    }

    /// `peer` said it is the bottleneck (declined a chunk, or is busy for
    /// long): an origin is then asked after other sites for a while.
    fn pressed(&mut self, now: Duration, peer: &P) {
        if let Some(st) = self.peers.get_mut(peer) {
            st.asked_mut().declined_at = Some(now);
            if st.class == Class::Origin {
                self.origin_pressed_at = Some(now);
                // Its pressure ends then: a full pass may ask it first again.
                self.wakeups.insert(now + ORIGIN_PRESSURE);
            }
        }
    }

    /// A uniform draw in `[0, 1)` from the seeded generator.
    fn unit(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Leaves `peer` alone for a while (jittered), after a refusal or a timeout.
    fn back_off(&mut self, now: Duration, peer: &P, hint: Option<Duration>, timeout: bool) {
        let jitter = self.unit();
        let Some(st) = self.peers.get_mut(peer) else {
            return;
        };
        let asked = st.asked_mut();
        let wait = asked.flow.refused(&self.flow_config, hint, timeout);
        asked.busy_until = now + wait.mul_f64(1.0 + 0.5 * jitter);
        self.wakeups.insert(asked.busy_until);
    }

    /// A chunk arrived from `peer` after its request there had ended (timed
    /// out, or taken back once another copy came): the peer is slow, not
    /// gone, and is asked again from now on. Without this a site peer that
    /// held requests while it served other sites stayed out of reach long
    /// after it had sent them, while its site waited for its chunks.
    fn spurious_timeout(&mut self, now: Duration, peer: &P) {
        let Some(asked) = self.peers.get_mut(peer).and_then(|st| st.asked.as_mut()) else {
            return;
        };
        asked.flow.spurious();
        asked.busy_until = asked.busy_until.min(now);
    }

    fn drop_peer(&mut self, peer: &P) {
        let Some(st) = self.peers.get(peer) else {
            return;
        };
        let class = st.class;
        let flying: Vec<u32> = self
            .flying
            .iter()
            .filter(|(p, _)| p == peer)
            .map(|(_, r)| r.index)
            .collect();
        for index in flying {
            self.finish_request(Duration::ZERO, peer, index, false);
        }
        let Some((_, ones)) = self.peers.remove(peer) else {
            return;
        };
        for i in ones {
            self.lose_holder(i, class);
        }
        self.class_mut(class).remove(peer);
        self.membership_changed(class);
    }

    /// A peer of `class` came or went: a member joined or left, or our own
    /// uplink may have come up or gone; the split is rebuilt if so.
    fn membership_changed(&mut self, class: Class) {
        self.local_uplinks.set(None);
        let up = self.has_uplink();
        if class == Class::Local || self.split.as_ref().is_some_and(|s| s.me_uplink() != up) {
            self.split = None;
        }
        if class != Class::Bystander {
            self.refresh_role();
        }
    }

    fn strike(&mut self, peer: P) {
        let Some(st) = self.peers.get_mut(&peer) else {
            return;
        };
        let asked = st.asked_mut();
        asked.strikes += 1;
        if asked.strikes >= self.config.ban_after {
            self.drop_peer(&peer);
            self.banned.insert(peer);
            self.actions.push_back(Action::Ban { peer });
        } else {
            self.actions.push_back(Action::Penalise { peer });
        }
    }
}

#[cfg(test)]
mod arrival_tests;
#[cfg(test)]
mod backoff_tests;
#[cfg(test)]
mod tests;
