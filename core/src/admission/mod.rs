//! Admission control for a node's uploads (DESIGN.md §5, "no collapse under
//! load"): a server — seeder or device — sends a bounded number of chunk
//! responses at once, holds the next requests in a FIFO queue, and answers
//! `Busy` (with a retry hint) only when what it has queued would take longer
//! than [`AdmissionConfig::max_queue`] to send at the rate it actually
//! uploads — instead of queueing work until the requester gives up on it,
//! or sharing its link among so many responses that none finishes soon.
//!
//! Requests from the server's own site and from elsewhere go to two lanes
//! ([`lane`]), each with its own bottleneck (the LAN, the uplink) and so its
//! own measured rate. The rate is measured, not configured: the fastest
//! seen over recent busy periods, decaying. A server also declines to send
//! a site a chunk it is already sending to another member of that site
//! (they share it over their LAN), and a publisher's server super-seeds
//! ([`Spread`]) when sites share with each other.
//!
//! Sans-IO: the caller passes `now`, names each request with a token of its
//! own, starts what [`Admission::poll_start`] returns, and reports every
//! response's end with [`Admission::finished`] — when its requester has it
//! (the node: when the requester announces the chunk), not when its bytes
//! were written, since socket buffers hold seconds of a slow link — or a
//! waiting request's requester leaving.

mod connections;
mod lane;
mod shun;
mod spread;

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use crate::swarm::SiteId;
pub use connections::{keep_connection, PER_SITE_WHEN_FULL};
use lane::Lane;
pub use shun::{Shun, SHUN_AFTER, SHUN_FOR};
pub use spread::Spread;

/// An origin's lane keeps about this long of its measured delivery under way.
pub const IN_FLIGHT: Duration = Duration::from_secs(2);
/// A requesting site may have about this long of its own delivery rate
/// under way: half the server's, so a server that feeds every site's
/// downlink at full speed still has slots to spare (and is not the
/// bottleneck).
pub const SITE_IN_FLIGHT: Duration = Duration::from_secs(1);
/// The retry hint of a server that has not measured its rate yet.
const UNMEASURED_HINT: Duration = Duration::from_secs(1);
/// Retry hints are kept within these.
const MIN_HINT: Duration = Duration::from_millis(100);
const MAX_HINT: Duration = Duration::from_secs(30);
/// A device that does not serve other sites (not its site's gateway) asks
/// them to come back after this.
const NOT_SERVING_HINT: Duration = Duration::from_secs(60);
/// A publisher's server with this much work queued is the bottleneck: it
/// super-seeds ([`Spread`]).
const SPREAD_DRAIN: Duration = Duration::from_secs(1);
/// Responses a requesting site may have under way before its rate is known.
const SITE_START: usize = 2;
/// Longest hint to a site that asked for more than its downlink takes.
const SITE_HINT: Duration = Duration::from_secs(1);
/// Responses delivered before a lane trusts its measured rate.
const MEASURED: u64 = 8;
/// A chunk declined for [`Spread`] is not asked for again sooner than this.
const MIN_SPREAD_HINT: Duration = Duration::from_secs(1);
/// A freed slot goes to the oldest waiting request of a peer with fewer
/// responses than this under way, if there is one: a peer that never
/// acknowledges what it got (its slots are held until the caller gives up
/// waiting) cannot keep everyone else waiting behind its queue.
const PEER_ACTIVE: usize = 2;

/// Settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdmissionConfig {
    /// Responses sent at once to other sites (across the uplink), at most;
    /// later requests wait their turn. Between [`AdmissionConfig::min_active`]
    /// and this, the lane keeps about [`IN_FLIGHT`] of its measured delivery
    /// rate under way, so each response moves fast and requesters turned
    /// away find idle sources (BitTorrent's upload slots), and a fast link
    /// is still filled.
    pub max_active: usize,
    /// Responses always allowed at once to other sites.
    pub min_active: usize,
    /// Responses sent at once to the server's own site (over its LAN).
    pub max_active_site: usize,
    /// A request is refused when everything queued before it (and itself)
    /// would take longer than this to send at the lane's measured rate.
    pub max_queue: Duration,
    /// Requests a lane holds waiting before its rate is measured.
    pub initial_waiting: usize,
    /// Requests queued for one peer, at most.
    pub per_peer: usize,
    /// Super-seed ([`Spread`]) while it is the bottleneck (a backlog, and a
    /// second of work queued at its measured rate): for a publisher's server
    /// when sites share with each other — every chunk once to the fleet
    /// before any twice.
    pub spread: bool,
}

impl Default for AdmissionConfig {
    /// A device's: one response at a time to other sites (its site's
    /// uplink is shared by the site's gateways), eight to its own site.
    fn default() -> Self {
        Self {
            max_active: 1,
            min_active: 1,
            max_active_site: 8,
            max_queue: Duration::from_secs(4),
            initial_waiting: 8,
            per_peer: 16,
            spread: false,
        }
    }
}

/// Responses a publisher's server sends at once, at most, by default.
pub const ORIGIN_SLOTS: u16 = 64;

impl AdmissionConfig {
    /// A publisher's server (seeder): four to [`ORIGIN_SLOTS`] responses at
    /// once as its delivery rate allows, room for a release-day crowd to
    /// wait while its rate is first measured, and super-seeding (with sites
    /// sharing, which is the default).
    pub fn origin() -> Self {
        Self {
            max_active: usize::from(ORIGIN_SLOTS),
            min_active: 4,
            spread: true,
            ..Self::default()
        }
    }
}

/// What to do with a waiting request whose turn came ([`Admission::poll_start`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start<T> {
    /// Send the response now.
    Send(T),
    /// Answer `Declined` with this hint (its chunk went out meanwhile and
    /// this server is the fleet's bottleneck); the request is over.
    Decline(T, Duration),
}

/// What to do with a chunk request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Send the response now.
    Send,
    /// Hold it: [`Admission::poll_start`] names it when its turn comes.
    Wait,
    /// Answer `Busy`: the server is full; the requester should try it
    /// again after this.
    Busy { retry_after: Duration },
    /// Answer `Declined`: not this chunk now (it is on its way to the
    /// requester's site, or has gone out to the fleet already); ask others
    /// for it, or this server again after this.
    Declined { retry_after: Duration },
}

/// Counters for metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AdmissionStats {
    /// Requests sent at once or queued.
    pub accepted: u64,
    /// Of those, queued first.
    pub queued: u64,
    /// Answered `Busy`.
    pub refused: u64,
    /// Declined: the chunk was on its way to the requester's site.
    pub declined_same_site: u64,
    /// Declined: the chunk had gone out more often than others ([`Spread`]).
    pub declined_spread: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Which {
    /// The server's own site (its LAN).
    Site,
    /// Everyone else (across its uplink).
    Away,
}

#[derive(Clone, Copy, Debug)]
struct Entry<P> {
    peer: P,
    site: Option<SiteId>,
    index: u32,
    len: u64,
    lane: Which,
    active: bool,
}

/// The upload scheduler of one server; `T` names requests, `P` peers.
#[derive(Debug)]
pub struct Admission<T, P> {
    config: AdmissionConfig,
    /// The server's own site: requests from it use the site lane and are
    /// never declined for their site.
    site: Option<SiteId>,
    lan: Lane,
    away: Lane,
    waiting_lan: VecDeque<T>,
    waiting_away: VecDeque<T>,
    entries: BTreeMap<T, Entry<P>>,
    per_peer: BTreeMap<P, usize>,
    /// Per peer: its responses under way (being sent, or awaiting the end).
    active_per_peer: BTreeMap<P, usize>,
    /// (site, chunk) pairs queued or being sent across the uplink.
    to_site: BTreeMap<(SiteId, u32), u32>,
    /// Per requesting site: its responses under way and the rate they are
    /// delivered at (its own downlink may be what limits it).
    sites: BTreeMap<SiteId, Lane>,
    /// With [`AdmissionConfig::spread`]: the current release's sends.
    spread: Option<Spread>,
    /// When a site last asked for more than its budget (see
    /// [`Admission::spread_declines`]).
    site_over_at: Option<Duration>,
    /// Whether it serves other sites at all (a device: while it is one of
    /// its site's gateways).
    serves_away: bool,
    stats: AdmissionStats,
}

impl<T: Ord + Copy, P: Ord + Copy> Admission<T, P> {
    /// A server on `site` (`None`: on no site, as a seeder).
    pub fn new(config: AdmissionConfig, site: Option<SiteId>) -> Self {
        Self {
            config,
            site,
            lan: Lane::default(),
            away: Lane::default(),
            waiting_lan: VecDeque::new(),
            waiting_away: VecDeque::new(),
            entries: BTreeMap::new(),
            per_peer: BTreeMap::new(),
            active_per_peer: BTreeMap::new(),
            to_site: BTreeMap::new(),
            sites: BTreeMap::new(),
            spread: None,
            site_over_at: None,
            serves_away: true,
            stats: AdmissionStats::default(),
        }
    }

    /// Whether to serve other sites (a device: while it is one of its
    /// site's gateways); when not, their requests get `Busy` for a minute.
    pub fn set_serves_away(&mut self, yes: bool) {
        self.serves_away = yes;
    }

    pub fn stats(&self) -> &AdmissionStats {
        &self.stats
    }

    /// Responses being sent and requests waiting, over both lanes.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The upload capacity towards other sites measured so far, bytes/s.
    pub fn capacity(&self, now: Duration) -> Option<f64> {
        self.away.capacity(now)
    }

    /// The server now serves a release of `chunks` unique chunks (chunk
    /// indices in later offers are into it); super-seeding starts afresh.
    pub fn new_release(&mut self, chunks: u32) {
        if self.config.spread {
            self.spread = Some(Spread::new(chunks));
        }
    }

    /// A requester of the server's own site — or, between a server and a
    /// requester that name no site, of the same network — uses the site
    /// lane; everyone else, the lane across the uplink.
    fn which(&self, site: Option<SiteId>) -> Which {
        if site == self.site {
            Which::Site
        } else {
            Which::Away
        }
    }

    fn lane(&self, which: Which) -> &Lane {
        match which {
            Which::Site => &self.lan,
            Which::Away => &self.away,
        }
    }

    fn lane_mut(&mut self, which: Which) -> &mut Lane {
        match which {
            Which::Site => &mut self.lan,
            Which::Away => &mut self.away,
        }
    }

    fn waiting(&mut self, which: Which) -> &mut VecDeque<T> {
        match which {
            Which::Site => &mut self.waiting_lan,
            Which::Away => &mut self.waiting_away,
        }
    }

    /// `peer` (of `site`) asks for chunk `index` of `len` bytes; `token`
    /// names the request in later calls.
    pub fn offer(
        &mut self,
        now: Duration,
        token: T,
        peer: P,
        site: Option<SiteId>,
        index: u32,
        len: u64,
    ) -> Verdict {
        let which = self.which(site);
        let active = self.lane(which).active;
        let max_active = self.slots(which, now);
        let drain = self.lane(which).drain_time(now, len);
        let max_queue = self.config.max_queue;
        // Unmeasured, a server cannot tell how long; it asks for a second
        // (a hint a requester does not take for a bottleneck).
        let hint = |d: Option<Duration>, floor: Duration| {
            d.unwrap_or(UNMEASURED_HINT).clamp(floor, MAX_HINT)
        };
        if which == Which::Away {
            if site.is_some_and(|s| self.to_site.contains_key(&(s, index))) {
                self.stats.declined_same_site += 1;
                return Verdict::Declined {
                    retry_after: hint(drain, MIN_HINT),
                };
            }
            if !self.serves_away {
                self.stats.refused += 1;
                return Verdict::Busy {
                    retry_after: NOT_SERVING_HINT,
                };
            }
            if let Some(retry_after) = self.spread_declines(now, index, len) {
                self.stats.declined_spread += 1;
                return Verdict::Declined { retry_after };
            }
            if let Some(site) = site {
                let lane = self.sites.get(&site);
                let under_way = lane.map_or(0, |l| {
                    l.active + l.waiting_bytes.div_ceil(len.max(1)) as usize
                });
                if under_way >= self.site_budget(site, now) {
                    // Its own downlink is what limits it: come back as soon
                    // as one of its responses is through (a short hint, not
                    // a sign to the requester that this server is the
                    // bottleneck; this server counts it as a backlog for
                    // super-seeding, see `spread_declines`).
                    let one = lane.and_then(|l| Lane::time_for(l.capacity(now), len));
                    self.site_over_at = Some(now);
                    self.stats.refused += 1;
                    return Verdict::Busy {
                        retry_after: one.unwrap_or(MIN_HINT).clamp(MIN_HINT, SITE_HINT),
                    };
                }
            }
        }
        let mine = self.per_peer.get(&peer).copied().unwrap_or(0);
        let idle = active < max_active && self.waiting_len(which) == 0;
        // A few always wait, so a freed slot is refilled at once.
        let waiting = self.waiting_len(which);
        let room = waiting < self.config.min_active.max(1)
            || match drain {
                Some(d) => d <= self.config.max_queue,
                None => waiting < self.config.initial_waiting,
            };
        if mine >= self.config.per_peer || !(idle || room) {
            self.stats.refused += 1;
            let over = drain.map(|d| d.saturating_sub(max_queue));
            return Verdict::Busy {
                retry_after: hint(over, MIN_HINT),
            };
        }
        self.entries.insert(
            token,
            Entry {
                peer,
                site,
                index,
                len,
                lane: which,
                active: idle,
            },
        );
        *self.per_peer.entry(peer).or_default() += 1;
        if let (Which::Away, Some(s)) = (which, site) {
            *self.to_site.entry((s, index)).or_default() += 1;
        }
        self.stats.accepted += 1;
        if idle {
            *self.active_per_peer.entry(peer).or_default() += 1;
            self.start(now, which, site, index, len);
            Verdict::Send
        } else {
            self.stats.queued += 1;
            self.lane_mut(which).waiting_bytes += len;
            if let (Which::Away, Some(site)) = (which, site) {
                self.sites.entry(site).or_default().waiting_bytes += len;
            }
            self.waiting(which).push_back(token);
            Verdict::Wait
        }
    }

    fn slots(&self, which: Which, now: Duration) -> usize {
        match which {
            Which::Site => self.config.max_active_site.max(1),
            Which::Away => {
                let (lo, hi) = (self.config.min_active.max(1), self.config.max_active.max(1));
                let lane = &self.away;
                let want = match (lane.capacity(now), lane.mean_len()) {
                    (Some(rate), Some(len)) if len > 0.0 => {
                        (rate * IN_FLIGHT.as_secs_f64() / len).ceil() as usize
                    }
                    _ => lo,
                };
                want.clamp(lo.min(hi), hi)
            }
        }
    }

    /// With super-seeding, while this server is the bottleneck (a backlog
    /// — every slot its rate allows taken, requests waiting, or a site
    /// asking past its budget within the last [`SITE_HINT`] — and a
    /// second of work queued at a rate measured over several responses):
    /// whether to decline `index`, with the hint. A server with room that
    /// no site asks past its budget serves anyone.
    ///
    /// The site budgets are why a site asking past its own counts: when
    /// this server's link is what limits every site, each site's measured
    /// rate is a share of it and the budgets together hold about
    /// [`SITE_IN_FLIGHT`] of its rate under way, half of the slots'
    /// [`IN_FLIGHT`]; with a few sites the slots then never fill, and
    /// without this the sites would each fetch their own copy. From here
    /// that looks the same as sites held back by their own downlinks, so
    /// those count too: a chunk declined to one of them comes from another
    /// site, a hop later, through the downlink that limited it anyway.
    fn spread_declines(&self, now: Duration, index: u32, len: u64) -> Option<Duration> {
        let s = self.spread.as_ref()?;
        let lane = &self.away;
        let over = self
            .site_over_at
            .is_some_and(|t| now.saturating_sub(t) <= SITE_HINT);
        let backlog =
            lane.active >= self.slots(Which::Away, now) || !self.waiting_away.is_empty() || over;
        let measured = lane.finished() >= MEASURED;
        let drain = lane.drain_time(now, len);
        let full = backlog && measured && drain.is_some_and(|d| d > SPREAD_DRAIN);
        if !full || !s.declines(index) {
            return None;
        }
        // Back when the chunks still behind could have gone out.
        let behind = Lane::time_for(lane.capacity(now), u64::from(s.behind()) * len);
        Some(
            behind
                .unwrap_or(UNMEASURED_HINT)
                .clamp(MIN_SPREAD_HINT, MAX_HINT),
        )
    }

    /// A response starts in `which`.
    fn start(&mut self, now: Duration, which: Which, site: Option<SiteId>, index: u32, len: u64) {
        self.lane_mut(which).start(now, len);
        if which == Which::Away {
            if let Some(s) = &mut self.spread {
                s.sent(index);
            }
            if let Some(site) = site {
                self.sites.entry(site).or_default().start(now, len);
            }
        }
    }

    /// A waiting request of `site` left the queue.
    fn site_unwait(&mut self, which: Which, site: Option<SiteId>, len: u64) {
        if let (Which::Away, Some(site)) = (which, site) {
            if let Some(l) = self.sites.get_mut(&site) {
                l.waiting_bytes = l.waiting_bytes.saturating_sub(len);
            }
        }
    }

    /// Responses a requesting site may have under way at once: about
    /// [`SITE_IN_FLIGHT`] of the rate it takes them at (at least one), so a
    /// site whose own downlink is full does not fill this server's queue.
    fn site_budget(&self, site: SiteId, now: Duration) -> usize {
        let Some(lane) = self.sites.get(&site) else {
            return SITE_START;
        };
        let want = match (lane.capacity(now), lane.mean_len()) {
            (Some(rate), Some(len)) if len > 0.0 => {
                (rate * SITE_IN_FLIGHT.as_secs_f64() / len).ceil() as usize
            }
            _ => SITE_START,
        };
        want.max(1)
    }

    /// Where in `which`'s queue the next request to start is: the oldest
    /// of a peer with fewer than [`PEER_ACTIVE`] under way, else the oldest.
    fn next_waiting(&self, which: Which) -> usize {
        let queue = match which {
            Which::Site => &self.waiting_lan,
            Which::Away => &self.waiting_away,
        };
        queue
            .iter()
            .position(|t| {
                self.entries.get(t).is_some_and(|e| {
                    self.active_per_peer.get(&e.peer).copied().unwrap_or(0) < PEER_ACTIVE
                })
            })
            .unwrap_or(0)
    }

    fn waiting_len(&self, which: Which) -> usize {
        match which {
            Which::Site => self.waiting_lan.len(),
            Which::Away => self.waiting_away.len(),
        }
    }

    /// The next waiting request whose turn has come: send it, or (super-
    /// seeding, its chunk has gone out to the fleet meanwhile) decline it.
    pub fn poll_start(&mut self, now: Duration) -> Option<Start<T>> {
        for which in [Which::Site, Which::Away] {
            while self.lane(which).active < self.slots(which, now) {
                let pos = self.next_waiting(which);
                let Some(token) = self.waiting(which).remove(pos) else {
                    break;
                };
                let Some(e) = self.entries.get(&token).copied() else {
                    continue;
                };
                let lane = self.lane_mut(which);
                lane.waiting_bytes = lane.waiting_bytes.saturating_sub(e.len);
                self.site_unwait(which, e.site, e.len);
                if which == Which::Away {
                    if let Some(retry_after) = self.spread_declines(now, e.index, e.len) {
                        self.stats.declined_spread += 1;
                        self.release(token);
                        return Some(Start::Decline(token, retry_after));
                    }
                }
                if let Some(e) = self.entries.get_mut(&token) {
                    e.active = true;
                }
                *self.active_per_peer.entry(e.peer).or_default() += 1;
                self.start(now, which, e.site, e.index, e.len);
                return Some(Start::Send(token));
            }
        }
        None
    }

    /// The held (waiting) requests of `peer` for chunk `index`: the caller
    /// answers them without the chunk (the requester has it now) and
    /// reports each with [`Admission::finished`].
    pub fn waiting_for(&self, peer: &P, index: u32) -> Vec<T> {
        self.entries
            .iter()
            .filter(|(_, e)| !e.active && e.peer == *peer && e.index == index)
            .map(|(t, _)| *t)
            .collect()
    }

    /// A request ended: its response finished with `sent` of its bytes
    /// sent (all when it completed), or, still waiting, its requester left.
    pub fn finished(&mut self, now: Duration, token: T, sent: u64) {
        let Some(e) = self.entries.get(&token).copied() else {
            return;
        };
        if e.active {
            self.lane_mut(e.lane).finish(now, e.len, sent.min(e.len));
            if let (Which::Away, Some(site)) = (e.lane, e.site) {
                if let Some(l) = self.sites.get_mut(&site) {
                    l.finish(now, e.len, sent.min(e.len));
                }
            }
        } else {
            let lane = self.lane_mut(e.lane);
            lane.waiting_bytes = lane.waiting_bytes.saturating_sub(e.len);
            self.site_unwait(e.lane, e.site, e.len);
            self.waiting(e.lane).retain(|t| *t != token);
        }
        self.release(token);
    }

    /// Forgets `token`'s entry and what it counted against its peer and site.
    fn release(&mut self, token: T) {
        let Some(e) = self.entries.remove(&token) else {
            return;
        };
        if let Some(n) = self.per_peer.get_mut(&e.peer) {
            *n -= 1;
            if *n == 0 {
                self.per_peer.remove(&e.peer);
            }
        }
        if e.active {
            if let Some(n) = self.active_per_peer.get_mut(&e.peer) {
                *n -= 1;
                if *n == 0 {
                    self.active_per_peer.remove(&e.peer);
                }
            }
        }
        if let (Which::Away, Some(s)) = (e.lane, e.site) {
            if let Some(n) = self.to_site.get_mut(&(s, e.index)) {
                *n -= 1;
                if *n == 0 {
                    self.to_site.remove(&(s, e.index));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
