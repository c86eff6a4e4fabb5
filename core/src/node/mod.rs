//! One node's decisions around the swarm scheduler: the release it works
//! on, whom it fetches from (its [`Preset`]), which peers hear its batched
//! gained-chunk notices and when, what role it announces, and which peer
//! gets which message.
//!
//! Sans-IO like [`crate::swarm`]: every input takes `now`; outputs are
//! queued [`Output`]s drained with [`Node::poll_output`], and the next
//! deadline is [`Node::poll_timeout`]. The node's tokio driver, the
//! simulator and core's in-memory harness all drive this one type, so none
//! of them keeps its own copy of this layer or of its constants.

mod contacts;
#[cfg(test)]
pub(crate) mod harness;
mod notices;
mod preset;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use crate::manifest::ChunkRef;
use crate::swarm::rendezvous::{member_key, weight};
use crate::swarm::{
    Action, Bitfield, PeerInfo, PeerKey, Receipt, SiteId, Swarm, SwarmConfig, SwarmStats,
};
use crate::wire::Role;

use contacts::Contacts;
use notices::{Lane, Notices};
pub use preset::Preset;

/// A response not complete by then has its stream reset (the node's
/// libp2p request timeout; the simulator models the same).
pub const STREAM_TIMEOUT: Duration = Duration::from_secs(300);
/// Gained-chunk notices to site peers go out this often. Origins hear
/// none: they fetch nothing, and what they sent a node is acknowledged at
/// once ([`Output::Ack`]); at a seeder across the uplink every device's
/// notices would cost the uplink a few KiB/s per device.
pub const NOTICE_EVERY: Duration = Duration::from_millis(200);
/// Gained-chunk notices to devices of other sites go out this often (each
/// notice is a stream across two uplinks).
pub const REMOTE_NOTICE_EVERY: Duration = Duration::from_secs(1);
/// A chunk gained while this node knows fewer gateways of other sites
/// than this holding it (the scheduler counts only gateways there) is
/// news to them: its notice to other sites goes
/// out on the next [`NOTICE_EVERY`] tick rather than waiting for
/// [`REMOTE_NOTICE_EVERY`]'s. Early in a chunk's spread each hop between
/// sites waits less to be told of; once it is common, notices stay
/// batched by the second (they cross two uplinks).
pub const NEWS_BELOW: u16 = 2;
/// A device of a site larger than this tells its gained chunks to the
/// site's gateways and about this many other site peers: a
/// fixed random choice per pair, the same from both ends (gateways tell
/// everyone). A site's notices then grow with its devices, not with their
/// square, and every device still hears the gateways, which carry the
/// uplink's chunks into the site and whose progress the uplink split
/// watches.
pub const SITE_FANOUT: usize = 20;

/// A node that leaves once its site is done ([`NodeConfig::watch_site`])
/// asks the site peers it does not know to be complete for their has-sets
/// this often: at a site larger than [`SITE_FANOUT`] most of them never
/// tell it of their gains.
pub const SITE_ASK_EVERY: Duration = Duration::from_secs(2);

/// After an origin last said it is the fleet's bottleneck, a node keeps
/// seeking other sites this long ([`Node::seeks_other_sites`]).
pub const CROSS_SITE_HOLD: Duration = Duration::from_secs(60);

/// A node's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeConfig {
    pub preset: Preset,
    /// The node's site (`None`: it names none, and treats every peer alike).
    pub site: Option<SiteId>,
    /// Scheduler settings; the preset sets the policy (and its own limits)
    /// over them, and [`NodeConfig::site`] replaces their site.
    pub swarm: SwarmConfig,
    /// Batching of gained-chunk notices (zero: each chunk at once).
    pub notice_every: Duration,
    pub remote_notice_every: Duration,
    /// See [`NEWS_BELOW`] (0: never news).
    pub news_below: u16,
    /// Site peers a device that is not a gateway tells of its gains, about
    /// (zero: all of them; see [`SITE_FANOUT`]).
    pub site_fanout: usize,
    /// A one-shot `fetch`: once complete, the node follows whether its site
    /// peers are ([`Swarm::site_complete`]), asking those it does not know
    /// to be every [`SITE_ASK_EVERY`] ([`Output::AskHave`]).
    pub watch_site: bool,
}

impl NodeConfig {
    pub fn new(preset: Preset, site: Option<SiteId>) -> Self {
        Self {
            preset,
            site,
            swarm: SwarmConfig::default(),
            notice_every: NOTICE_EVERY,
            remote_notice_every: REMOTE_NOTICE_EVERY,
            news_below: NEWS_BELOW,
            site_fanout: SITE_FANOUT,
            watch_site: false,
        }
    }
}

/// What the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output<P> {
    /// Ask `peer` for chunk `index` of the current release.
    Request { peer: P, index: u32, len: u32 },
    /// Take back the request for chunk `index` to `peer` (abandoned, or
    /// the chunk came from elsewhere first): a server that has not begun
    /// its answer drops it, instead of sending bytes nobody waits for.
    Cancel { peer: P, index: u32 },
    /// Tell `peer` which chunks this node gained since its last notice.
    Gained { peer: P, indices: Arc<[u32]> },
    /// Tell `peer` that the chunk it sent arrived and verified: its upload
    /// slot is free, and it learns its delivery rate.
    Ack { peer: P, index: u32 },
    /// Tell `peer` this node's new role.
    Role { peer: P, role: Role },
    /// This node's role changed (what it serves other sites follows it;
    /// a new gateway looks for other sites' gateways).
    RoleChanged(Role),
    /// `peer` sent a chunk that failed verification.
    Penalise { peer: P },
    /// Disconnect `peer` and refuse it from now on.
    Ban { peer: P },
    /// Every chunk of the current release is held.
    Complete,
    /// Ask `peer` for its whole has-set ([`NodeConfig::watch_site`]); the
    /// answer goes to [`Node::handle_have_all`].
    AskHave { peer: P },
}

/// A peer that greeted this node.
#[derive(Clone, Copy, Debug)]
struct Contact {
    info: PeerInfo,
    /// Named in the node's configuration (a static peer).
    configured: bool,
    /// In the current release's scheduler.
    source: bool,
    /// The pair's draw for [`SITE_FANOUT`]: the same from both ends.
    pair: u64,
}

/// One node: see the module documentation.
#[derive(Debug)]
pub struct Node<P: PeerKey> {
    config: NodeConfig,
    me: P,
    /// `me`'s rendezvous key.
    me_key: u64,
    started: Duration,
    peers: Contacts<P, Contact>,
    swarm: Option<Swarm<P>>,
    role: Role,
    notices: Notices,
    /// Greeted site peers and origins: what the [`SITE_FANOUT`] sample is
    /// drawn against. Origins still count, as when they heard notices, so
    /// every site's sample (and the simulator's outputs) stayed as it was.
    audience: usize,
    /// Who hears each lane's notices ([`Lane::Site`], [`Lane::Away`]), in
    /// peer order; rebuilt after a peer or this node's role changes.
    told: Option<[Vec<P>; 2]>,
    /// When the site peers not known to be complete are next asked
    /// ([`NodeConfig::watch_site`]).
    next_ask: Option<Duration>,
    out: VecDeque<Output<P>>,
}

impl<P: PeerKey> Node<P> {
    pub fn new(config: NodeConfig, me: P, now: Duration) -> Self {
        let notices = Notices::new(now, config.notice_every, config.remote_notice_every);
        Self {
            role: Role {
                origin: config.preset == Preset::Seeder,
                ..Role::default()
            },
            config,
            me,
            me_key: member_key(&me),
            started: now,
            peers: Contacts::default(),
            swarm: None,
            notices,
            audience: 0,
            told: None,
            next_ask: None,
            out: VecDeque::new(),
        }
    }

    /// Takes up a release: `chunks` (see [`crate::swarm::unique_chunks`]),
    /// of which `have` are held. Work on the previous one stops; every
    /// greeted peer it fetches from becomes a source.
    pub fn take_release(
        &mut self,
        now: Duration,
        chunks: impl Into<Arc<[ChunkRef]>>,
        have: Bitfield,
    ) {
        let mut config = self.config.preset.swarm_config(&self.config.swarm);
        config.site = self.config.site;
        self.swarm = Some(Swarm::new(config, self.me, chunks, have, now));
        self.notices.clear();
        self.next_ask = None;
        let peers: Vec<P> = self.peers.keys().copied().collect();
        for p in peers {
            if let Some(c) = self.peers.get_mut(&p) {
                c.source = false;
            }
            self.add_source(now, p);
        }
        self.pump(now);
    }

    /// A peer greeted this node (or told it a new role): `configured` if
    /// it is one of the node's static peers.
    pub fn handle_peer_up(&mut self, now: Duration, peer: P, info: PeerInfo, configured: bool) {
        self.told = None;
        let was_here = self.peers.get(&peer).map(|c| !self.elsewhere(&c.info));
        let here = !self.elsewhere(&info);
        if was_here != Some(here) {
            self.audience = self.audience + usize::from(here) - usize::from(was_here == Some(true));
        }
        let me = self.me_key;
        let contact = self.peers.get_or_insert_with(peer, || Contact {
            info,
            configured,
            source: false,
            pair: weight(me, member_key(&peer)),
        });
        contact.info = info;
        contact.configured |= configured;
        if contact.source {
            if let Some(s) = &mut self.swarm {
                s.handle_peer_up(now, peer, info);
            }
        } else {
            self.add_source(now, peer);
        }
        self.idle_role();
        self.pump(now);
    }

    /// A greeted peer's new role (ignored for peers that did not greet).
    pub fn handle_peer_role(&mut self, now: Duration, peer: P, role: Role) {
        let Some(c) = self.peers.get(&peer) else {
            return;
        };
        let info = PeerInfo {
            origin: role.origin,
            uplink: role.uplink,
            gateway: role.gateway,
            ..c.info
        };
        let configured = c.configured;
        self.handle_peer_up(now, peer, info, configured);
    }

    pub fn handle_peer_down(&mut self, now: Duration, peer: P) {
        let Some(gone) = self.peers.remove(&peer) else {
            return;
        };
        self.told = None;
        if !self.elsewhere(&gone.info) {
            self.audience = self.audience.saturating_sub(1);
        }
        if let Some(s) = &mut self.swarm {
            s.handle_peer_down(now, peer);
        }
        self.idle_role();
        self.pump(now);
    }

    /// A peer's whole has-set for the current release.
    pub fn handle_have_all(&mut self, now: Duration, peer: P, has: Bitfield) {
        if let Some(s) = &mut self.swarm {
            s.handle_have_all(now, peer, has);
        }
        self.pump(now);
    }

    /// A peer's notice (or acknowledgement) of chunks it gained; indices
    /// outside the release are ignored.
    pub fn handle_gained(&mut self, now: Duration, peer: P, indices: &[u32]) {
        if let Some(s) = &mut self.swarm {
            let n = s.chunks().len() as u32;
            if indices.iter().all(|&i| i < n) {
                s.handle_have_many(now, peer, indices);
            } else {
                let valid: Vec<u32> = indices.iter().copied().filter(|&i| i < n).collect();
                s.handle_have_many(now, peer, &valid);
            }
        }
        self.pump(now);
    }

    /// A requested chunk arrived and was checked against its id (a caller
    /// that checks as the bytes come). Every verified one is acknowledged,
    /// duplicates too: the sender's upload slot waits for it (and a sender
    /// shuns peers that never acknowledge).
    pub fn handle_chunk(&mut self, now: Duration, peer: P, index: u32, receipt: Receipt) {
        if let Some(s) = &mut self.swarm {
            s.handle_chunk(now, peer, index, receipt);
            if receipt == Receipt::Verified {
                self.out.push_back(Output::Ack { peer, index });
            }
        }
        self.pump(now);
    }

    /// A requested chunk's bytes are all in, to be checked and stored off
    /// the event loop (a caller whose check takes a while): acknowledged at
    /// once, so the sender's upload slot and this node's request slot both
    /// free while it is hashed and written. [`Node::handle_checked`] gives
    /// the verdict later (or [`Node::handle_request_busy`] that it could
    /// not be stored). The acknowledgement says the bytes came, not that
    /// they were good: a bad chunk is penalised by its verdict.
    pub fn handle_arrived(&mut self, now: Duration, peer: P, index: u32) {
        if let Some(s) = &mut self.swarm {
            s.handle_arrived(now, peer, index);
            self.out.push_back(Output::Ack { peer, index });
        }
        self.pump(now);
    }

    /// The verdict on a chunk reported by [`Node::handle_arrived`] (its
    /// acknowledgement went out then).
    pub fn handle_checked(&mut self, now: Duration, peer: P, index: u32, receipt: Receipt) {
        if let Some(s) = &mut self.swarm {
            s.handle_chunk(now, peer, index, receipt);
        }
        self.pump(now);
    }

    /// The first piece of a requested chunk arrived and was checked (see
    /// [`Swarm::handle_partial`]).
    pub fn handle_partial(&mut self, now: Duration, index: u32) {
        if let Some(s) = &mut self.swarm {
            s.handle_partial(index);
        }
        self.pump(now);
    }

    /// The peer does not have the chunk after all.
    pub fn handle_request_failed(&mut self, now: Duration, peer: P, index: u32) {
        if let Some(s) = &mut self.swarm {
            s.handle_request_failed(now, peer, index);
        }
        self.pump(now);
    }

    /// The peer refused work (`retry`: its hint), or the stream broke off.
    pub fn handle_request_busy(
        &mut self,
        now: Duration,
        peer: P,
        index: u32,
        retry: Option<Duration>,
    ) {
        if let Some(s) = &mut self.swarm {
            s.handle_request_busy(now, peer, index, retry);
        }
        self.pump(now);
    }

    /// The peer declined this chunk (others have it).
    pub fn handle_request_declined(&mut self, now: Duration, peer: P, index: u32, retry: Duration) {
        if let Some(s) = &mut self.swarm {
            s.handle_request_declined(now, peer, index, retry);
        }
        self.pump(now);
    }

    /// The deadline from [`Node::poll_timeout`] passed: notices due go out,
    /// and the scheduler's deadlines are checked, `progress(peer, index)`
    /// saying how many bytes of each late request have arrived.
    pub fn handle_timeout(&mut self, now: Duration, progress: impl FnMut(&P, u32) -> u64) {
        if let Some(s) = &mut self.swarm {
            if s.poll_timeout().is_some_and(|t| t <= now) {
                s.handle_timeout(now, progress);
            }
        }
        for lane in [Lane::Site, Lane::Away] {
            if self.notices.due(lane).is_some_and(|t| t <= now) {
                self.flush(lane);
            }
        }
        if self.next_ask.is_some_and(|t| t <= now) {
            self.ask_site(now);
        }
        self.pump(now);
    }

    /// Sends every notice now, due or not (a node about to leave tells its
    /// peers what it gained since its last notice).
    pub fn flush_notices(&mut self) {
        for lane in [Lane::Site, Lane::Away] {
            self.flush(lane);
        }
    }

    pub fn poll_output(&mut self) -> Option<Output<P>> {
        self.out.pop_front()
    }

    /// When [`Node::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Duration> {
        let sched = self.swarm.as_ref().and_then(|s| s.poll_timeout());
        [
            sched,
            self.notices.due(Lane::Site),
            self.notices.due(Lane::Away),
            self.next_ask,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The current release's scheduler.
    pub fn swarm(&self) -> Option<&Swarm<P>> {
        self.swarm.as_ref()
    }

    pub fn have(&self) -> Option<&Bitfield> {
        self.swarm.as_ref().map(|s| s.have())
    }

    pub fn stats(&self) -> Option<&SwarmStats> {
        self.swarm.as_ref().map(|s| s.stats())
    }

    pub fn is_complete(&self) -> bool {
        self.swarm.as_ref().is_some_and(|s| s.is_complete())
    }

    /// What this node tells its peers it is.
    pub fn role(&self) -> Role {
        self.role
    }

    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// When the node started (its notice clock counts from here).
    pub fn started(&self) -> Duration {
        self.started
    }

    /// Whether a peer that announced `info` is a device of another site.
    pub fn elsewhere(&self, info: &PeerInfo) -> bool {
        !info.origin && self.config.site.is_some() && info.site != self.config.site
    }

    /// Whether this node should look for other sites' gateways now (connect
    /// to them, and so hear and send notices across the uplinks): with
    /// cross-site sharing, while it lacks chunks of a release, once an
    /// origin said within [`CROSS_SITE_HOLD`] that it is the fleet's
    /// bottleneck, or while no origin is among its sources (other sites are
    /// then its way to the release). While the origins have room, each site
    /// fetches its copy from them and the uplinks carry no chatter between
    /// sites.
    pub fn seeks_other_sites(&self, now: Duration) -> bool {
        let Some(s) = &self.swarm else {
            return false;
        };
        let shares = self.config.site.is_some()
            && self.config.preset == (Preset::Device { cross_site: true });
        if !shares || s.is_complete() {
            return false;
        }
        !s.has_origin()
            || s.origin_pressed_at()
                .is_some_and(|t| now.saturating_sub(t) < CROSS_SITE_HOLD)
    }

    /// Greeted devices of this node's site, and how many of them have an
    /// uplink connection (what its gateway role is reckoned from).
    pub fn site_view(&self) -> (usize, usize) {
        let here = self
            .peers
            .values()
            .filter(|c| !c.info.origin && !self.elsewhere(&c.info));
        here.fold((0, 0), |(n, up), c| {
            (n + 1, up + usize::from(c.info.uplink))
        })
    }

    /// Greeted peers that are devices of other sites.
    pub fn remote_count(&self) -> usize {
        self.peers
            .values()
            .filter(|c| self.elsewhere(&c.info))
            .count()
    }

    fn add_source(&mut self, now: Duration, peer: P) {
        let Some(c) = self.peers.get(&peer) else {
            return;
        };
        if c.source || !self.config.preset.fetches_from(c.configured) {
            return;
        }
        let info = c.info;
        if let Some(s) = &mut self.swarm {
            s.handle_peer_up(now, peer, info);
            if let Some(c) = self.peers.get_mut(&peer) {
                c.source = true;
            }
        }
    }

    /// Without a release (so without a scheduler to say it), a device's
    /// uplink is a connection to an origin: its site peers learn it before
    /// a release starts, so their splits agree from the first request.
    fn idle_role(&mut self) {
        if self.swarm.is_some() || self.config.preset == Preset::Seeder {
            return;
        }
        let uplink = self.peers.values().any(|c| c.info.origin);
        self.set_role(uplink, false);
    }

    fn set_role(&mut self, uplink: bool, gateway: bool) {
        let role = Role {
            origin: self.role.origin,
            uplink,
            gateway,
        };
        if role == self.role {
            return;
        }
        self.role = role;
        self.told = None;
        self.out.push_back(Output::RoleChanged(role));
        for &peer in self.peers.keys() {
            self.out.push_back(Output::Role { peer, role });
        }
    }

    /// Turns the scheduler's actions into outputs.
    fn pump(&mut self, now: Duration) {
        loop {
            let Some(action) = self.swarm.as_mut().and_then(|s| s.poll_action()) else {
                return;
            };
            match action {
                Action::Request {
                    peer, index, len, ..
                } => self.out.push_back(Output::Request { peer, index, len }),
                Action::Have { index } => {
                    // Without a site, no peer is elsewhere: one lane.
                    let lanes = if self.config.site.is_some() { 2 } else { 1 };
                    for lane in [Lane::Site, Lane::Away].into_iter().take(lanes) {
                        let news = lane == Lane::Away
                            && self
                                .swarm
                                .as_ref()
                                .is_some_and(|s| s.remote_holders(index) < self.config.news_below);
                        if self.notices.push(now, lane, index, news) {
                            self.flush(lane);
                        }
                    }
                }
                Action::Role { uplink, gateway } => self.set_role(uplink, gateway),
                Action::Penalise { peer } => self.out.push_back(Output::Penalise { peer }),
                Action::Ban { peer } => self.out.push_back(Output::Ban { peer }),
                Action::Complete => {
                    self.out.push_back(Output::Complete);
                    if self.config.watch_site {
                        self.ask_site(now);
                    }
                }
                Action::Cancel { peer, index } => {
                    self.out.push_back(Output::Cancel { peer, index })
                }
            }
        }
    }

    /// Asks the site peers not known to hold every chunk for their
    /// has-sets, and when to ask again (never once the site is complete).
    fn ask_site(&mut self, now: Duration) {
        let Some(s) = &self.swarm else {
            self.next_ask = None;
            return;
        };
        let before = self.out.len();
        self.out
            .extend(s.site_peers_lacking().map(|peer| Output::AskHave { peer }));
        self.next_ask = (self.out.len() > before).then(|| now + SITE_ASK_EVERY);
    }

    /// The site peers this node tells of its gains besides gateways:
    /// those whose pair draw is at most this ([`SITE_FANOUT`]).
    fn fanout_cut(&self) -> u64 {
        let fanout = self.config.site_fanout;
        let sampled = matches!(self.config.preset, Preset::Device { .. })
            && fanout > 0
            && self.audience > fanout
            && !self.role.gateway;
        if !sampled {
            return u64::MAX;
        }
        u64::MAX / self.audience as u64 * fanout as u64
    }

    /// Sends a lane's gained chunks: site peers (all of them, or at a
    /// large site the gateways and the [`SITE_FANOUT`] sample), or devices
    /// of other sites; never origins ([`NOTICE_EVERY`]).
    fn flush(&mut self, lane: Lane) {
        let Some(indices) = self.notices.take(lane) else {
            return;
        };
        if self.told.is_none() {
            self.told = Some(self.recipients());
        }
        let Some(told) = &self.told else {
            return;
        };
        // Other sites hear only of chunks they are not known to hold: such
        // a notice would tell them nothing they can use (they fetch only
        // what they lack), and it crosses two uplinks. Site peers hear of
        // everything: their notices are also how the uplink split sees a
        // member make progress.
        let known = self.swarm.as_ref().filter(|_| lane == Lane::Away);
        for &peer in &told[usize::from(lane == Lane::Away)] {
            let indices = match known {
                Some(s) if indices.iter().any(|&i| s.peer_has(&peer, i)) => {
                    let lacking: Arc<[u32]> = indices
                        .iter()
                        .copied()
                        .filter(|&i| !s.peer_has(&peer, i))
                        .collect();
                    if lacking.is_empty() {
                        continue;
                    }
                    lacking
                }
                _ => indices.clone(),
            };
            self.out.push_back(Output::Gained { peer, indices });
        }
    }

    /// Who hears each lane: see [`Node::flush`].
    fn recipients(&self) -> [Vec<P>; 2] {
        let cut = self.fanout_cut();
        let mut told = [Vec::new(), Vec::new()];
        for (&peer, c) in self.peers.iter() {
            if c.info.origin {
                continue;
            }
            let away = self.elsewhere(&c.info);
            if away || c.info.gateway || c.pair <= cut {
                told[usize::from(away)].push(peer);
            }
        }
        told
    }
}
