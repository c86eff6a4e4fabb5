//! The discrete-event engine: an event heap over simulated time, one
//! [`pollen_core::swarm::Swarm`] per device driven through its
//! `handle_*`/`poll_*` API (the code the node ships), and the flow model of
//! [`crate::net`] for every transfer. Deterministic: all randomness comes
//! from the scenario's seed, times are integer nanoseconds in the heap, and
//! ties break by insertion order.

use std::sync::Arc;
use std::time::Duration;

use pollen_core::manifest::{ChunkRef, ManifestId};
use pollen_core::swarm::{Action, Bitfield, SiteId, Swarm, SwarmConfig};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::net::{to_ns as ns, Job, LinkId, Net};
use crate::queue::Queue;
use crate::scenario::{Scenario, Strategy};

/// The seeder's node id.
pub const SEEDER: u32 = 0;
/// The node's libp2p request timeout (`net::Limits`): a response not
/// complete by then has its stream reset. The scheduler's own, shorter
/// timeout re-requests elsewhere but cannot stop the first transfer (the
/// node ignores `Cancel`; request-response cannot cancel), as here.
const STREAM_TIMEOUT: f64 = 60.0;
const MBIT: f64 = 1_000_000.0 / 8.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Join(u32),
    Deliver {
        to: u32,
        from: u32,
        index: u32,
        epoch: u32,
    },
    Fail {
        to: u32,
        from: u32,
        index: u32,
        epoch: u32,
    },
    Timer(u32),
    /// The node's tick: its gained-chunk notices go out.
    Notify(u32),
    Crash(u32),
    Sample,
}

/// One simulated node's state and counters.
#[derive(Debug)]
pub struct Node {
    /// Site index (`None`: the seeder, on the internet).
    pub site: Option<u32>,
    pub name: String,
    swarm: Option<Swarm<u32>>,
    peers: Vec<u32>,
    up: bool,
    joined: bool,
    epoch: u32,
    timer: Option<u64>,
    /// Chunks gained since the last tick, and that tick's time.
    gained: Vec<u32>,
    notify_at: Option<u64>,
    up_link: LinkId,
    down_link: LinkId,
    /// Seconds.
    pub start: f64,
    pub finish: Option<f64>,
    pub bytes_in_lan: u64,
    pub bytes_in_uplink: u64,
    pub bytes_out: u64,
    pub crashes: u32,
    pub duplicates: u64,
    have_at_crash: Option<Bitfield>,
}

/// Per-site link ids and counters.
#[derive(Debug)]
pub struct Site {
    pub name: String,
    uplink_up: LinkId,
    uplink_down: LinkId,
    pub lan_latency: f64,
    pub wan_latency: f64,
    /// Bytes that crossed the uplink into the site.
    pub bytes_in: u64,
    pub devices: Vec<u32>,
}

/// One timeline sample.
#[derive(Clone, Debug)]
pub struct Sample {
    pub time: f64,
    pub site: u32,
    pub uplink_in_bytes: u64,
    pub done: u32,
}

/// A finished (or stopped) run.
#[derive(Debug)]
pub struct Outcome {
    pub nodes: Vec<Node>,
    pub sites: Vec<Site>,
    pub samples: Vec<Sample>,
    pub release_bytes: u64,
    pub chunks: usize,
    pub end: f64,
    pub events: u64,
    pub rate_updates: u64,
}

/// The simulation of one scenario.
#[derive(Debug)]
pub struct Sim {
    sc: Scenario,
    chunks: Arc<[ChunkRef]>,
    held_from_old: Bitfield,
    release_bytes: u64,
    nodes: Vec<Node>,
    sites: Vec<Site>,
    net: Net,
    seeder_up: LinkId,
    seeder_latency: f64,
    queue: Queue<Ev>,
    now_ns: u64,
    rng: ChaCha8Rng,
    samples: Vec<Sample>,
    events: u64,
    remaining: usize,
    dirty: Vec<u32>,
}

impl Sim {
    /// Builds the network and schedules every device's start.
    pub fn new(sc: Scenario, chunks: Vec<ChunkRef>, held_from_old: Bitfield) -> Self {
        let release_bytes = chunks.iter().map(|c| u64::from(c.len)).sum();
        let mut rng = ChaCha8Rng::seed_from_u64(sc.seed);
        let mut net = Net::default();
        let seeder_up = net.add_link(sc.seeder.upload_mbit * MBIT);
        let unlimited = net.add_link(f64::MAX / 4.0);
        let mut nodes = vec![Node {
            site: None,
            name: "seeder".into(),
            swarm: None,
            peers: Vec::new(),
            up: true,
            joined: true,
            epoch: 0,
            timer: None,
            gained: Vec::new(),
            notify_at: None,
            up_link: seeder_up,
            down_link: unlimited,
            start: 0.0,
            finish: Some(0.0),
            bytes_in_lan: 0,
            bytes_in_uplink: 0,
            bytes_out: 0,
            crashes: 0,
            duplicates: 0,
            have_at_crash: None,
        }];
        let mut sites = Vec::new();
        for group in &sc.sites {
            for k in 0..group.count {
                let site = sites.len() as u32;
                let name = if group.count == 1 {
                    group.name.clone()
                } else {
                    format!("{}-{k}", group.name)
                };
                let mut devices = Vec::new();
                for d in 0..group.devices {
                    let spread = sc.heterogeneity.lan_spread;
                    let factor = 1.0 - spread + 2.0 * spread * unit(&mut rng);
                    let id = nodes.len() as u32;
                    nodes.push(Node {
                        site: Some(site),
                        name: format!("{name}/{d}"),
                        swarm: None,
                        peers: Vec::new(),
                        up: false,
                        joined: false,
                        epoch: 0,
                        timer: None,
                        gained: Vec::new(),
                        notify_at: None,
                        up_link: net.add_link(group.lan_up_mbit * MBIT * factor),
                        down_link: net.add_link(group.lan_down_mbit * MBIT * factor),
                        start: 0.0,
                        finish: None,
                        bytes_in_lan: 0,
                        bytes_in_uplink: 0,
                        bytes_out: 0,
                        crashes: 0,
                        duplicates: 0,
                        have_at_crash: None,
                    });
                    devices.push(id);
                }
                sites.push(Site {
                    name,
                    uplink_up: net.add_link(group.uplink_up_mbit * MBIT),
                    uplink_down: net.add_link(group.uplink_down_mbit * MBIT),
                    lan_latency: group.lan_latency_ms / 1000.0,
                    wan_latency: group.wan_latency_ms / 1000.0,
                    bytes_in: 0,
                    devices,
                });
            }
        }
        let remaining = nodes.len() - 1;
        let mut sim = Self {
            seeder_latency: sc.seeder.latency_ms / 1000.0,
            chunks: chunks.into(),
            held_from_old,
            release_bytes,
            nodes,
            sites,
            net,
            seeder_up,
            queue: Queue::default(),
            now_ns: 0,
            rng,
            samples: Vec::new(),
            events: 0,
            remaining,
            dirty: Vec::new(),
            sc,
        };
        sim.wire_peers();
        sim.schedule_starts();
        sim
    }

    fn now(&self) -> f64 {
        self.now_ns as f64 / 1e9
    }

    fn push(&mut self, at: f64, ev: Ev) {
        self.queue.push(ns(at).max(self.now_ns), ev);
    }

    /// Who talks to whom: the seeder always; `pollen` adds the device's
    /// site (as mDNS finds it); `swarm` adds random devices anywhere (as a
    /// tracker hands out); `central` nothing else. Links are symmetric.
    fn wire_peers(&mut self) {
        let n = self.nodes.len() as u32;
        for id in 1..n {
            self.nodes[id as usize].peers.push(SEEDER);
        }
        match self.sc.strategy {
            Strategy::Central => {}
            Strategy::Pollen => {
                for site in &self.sites {
                    for &a in &site.devices {
                        let others = site.devices.iter().copied().filter(|&b| b != a);
                        self.nodes[a as usize].peers.extend(others);
                    }
                }
            }
            Strategy::Swarm => {
                let want = self.sc.sched.remote_peers.min(n.saturating_sub(2));
                let mut sets: Vec<std::collections::BTreeSet<u32>> =
                    vec![Default::default(); n as usize];
                for a in 1..n {
                    let mut tries = 0;
                    while (sets[a as usize].len() as u32) < want && tries < want * 20 {
                        tries += 1;
                        let b = 1 + (self.rng.next_u64() % u64::from(n - 1)) as u32;
                        if b != a {
                            sets[a as usize].insert(b);
                            sets[b as usize].insert(a);
                        }
                    }
                }
                for (a, set) in sets.into_iter().enumerate().skip(1) {
                    self.nodes[a].peers.extend(set);
                }
            }
        }
    }

    fn schedule_starts(&mut self) {
        let release = ManifestId(*blake3::hash(&self.sc.seed.to_le_bytes()).as_bytes());
        let mut stages: Vec<(u16, f64)> = self
            .sc
            .stages
            .iter()
            .map(|s| ((s.share_percent * 100.0).round() as u16, s.start_s))
            .collect();
        stages.sort_by_key(|s| s.0);
        for id in 1..self.nodes.len() as u32 {
            let start = if stages.is_empty() {
                0.0
            } else {
                let bucket = pollen_core::rollout::bucket(&self.nodes[id as usize].name, &release);
                stages
                    .iter()
                    .find(|(share, _)| bucket < *share)
                    .map_or(f64::INFINITY, |(_, t)| *t)
            };
            if start.is_finite() {
                self.nodes[id as usize].start = start;
                self.push(start, Ev::Join(id));
            } else {
                self.remaining -= 1;
            }
        }
        let churn = self.sc.churn.clone();
        for id in 1..self.nodes.len() as u32 {
            if unit(&mut self.rng) < churn.crash_fraction {
                let at = self.nodes[id as usize].start + unit(&mut self.rng) * churn.crash_window_s;
                self.push(at, Ev::Crash(id));
            }
        }
        self.push(0.0, Ev::Sample);
    }

    fn latency(&self, a: u32, b: u32) -> f64 {
        let (sa, sb) = (self.nodes[a as usize].site, self.nodes[b as usize].site);
        let wan = |s: Option<u32>| match s {
            Some(s) => self.sites[s as usize].wan_latency,
            None => self.seeder_latency,
        };
        match (sa, sb) {
            (Some(x), Some(y)) if x == y => self.sites[x as usize].lan_latency,
            _ => wan(sa) + wan(sb),
        }
    }

    fn path(&self, from: u32, to: u32) -> Vec<LinkId> {
        let (f, t) = (&self.nodes[from as usize], &self.nodes[to as usize]);
        let mut p = vec![f.up_link];
        if f.site != t.site {
            if let Some(s) = f.site {
                p.push(self.sites[s as usize].uplink_up);
            }
            if let Some(s) = t.site {
                p.push(self.sites[s as usize].uplink_down);
            }
        }
        p.push(t.down_link);
        p
    }

    fn site_id(&self, node: u32) -> SiteId {
        match self.nodes[node as usize].site {
            Some(s) => SiteId(u64::from(s) + 1),
            None => SiteId(u64::MAX),
        }
    }

    fn holds(&self, node: u32, index: u32) -> bool {
        node == SEEDER
            || self.nodes[node as usize]
                .swarm
                .as_ref()
                .is_some_and(|s| s.have().get(index))
    }

    fn have_of(&self, node: u32) -> Bitfield {
        match &self.nodes[node as usize].swarm {
            _ if node == SEEDER => Bitfield::full(self.chunks.len() as u32),
            Some(s) => s.have().clone(),
            None => Bitfield::new(self.chunks.len() as u32),
        }
    }

    fn join(&mut self, id: u32) {
        let now = Duration::from_nanos(self.now_ns);
        let strategy = self.sc.strategy;
        let node = &mut self.nodes[id as usize];
        node.up = true;
        node.joined = true;
        node.epoch += 1;
        let have = node
            .have_at_crash
            .take()
            .unwrap_or_else(|| self.held_from_old.clone());
        // Central HTTP is one download stream per device: a request or two
        // ahead, and no scheduler timeouts (a slow server is just slow).
        let central = strategy == Strategy::Central;
        let config = SwarmConfig {
            seed: self.sc.seed ^ (u64::from(id) << 20) ^ u64::from(node.epoch),
            per_peer_in_flight: if central {
                2
            } else {
                self.sc.sched.per_peer_in_flight
            },
            total_in_flight: if central {
                2
            } else {
                self.sc.sched.total_in_flight
            },
            request_timeout: if central {
                Duration::from_secs(86_400)
            } else {
                SwarmConfig::default().request_timeout
            },
            site: (strategy == Strategy::Pollen)
                .then(|| SiteId(u64::from(node.site.unwrap_or(0)) + 1)),
            site_aware: strategy == Strategy::Pollen,
            ..SwarmConfig::default()
        };
        let swarm = Swarm::new(config, id, self.chunks.clone(), have, now);
        self.nodes[id as usize].swarm = Some(swarm);
        let peers = self.nodes[id as usize].peers.clone();
        for p in peers {
            if !self.nodes[p as usize].up {
                continue;
            }
            let (site_p, has_p) = (self.site_id(p), self.have_of(p));
            let (site_me, has_me) = (self.site_id(id), self.have_of(id));
            if let Some(s) = &mut self.nodes[id as usize].swarm {
                s.handle_peer_up(now, p, Some(site_p));
                s.handle_have_all(now, p, has_p);
            }
            if let Some(s) = &mut self.nodes[p as usize].swarm {
                s.handle_peer_up(now, id, Some(site_me));
                s.handle_have_all(now, id, has_me);
                self.dirty.push(p);
            }
        }
        self.dirty.push(id);
    }

    fn crash(&mut self, id: u32) {
        let now = Duration::from_nanos(self.now_ns);
        let node = &mut self.nodes[id as usize];
        if !node.up || node.finish.is_some() {
            return;
        }
        node.up = false;
        node.crashes += 1;
        node.timer = None;
        node.gained.clear();
        node.notify_at = None;
        if let Some(s) = node.swarm.take() {
            node.duplicates += s.stats().duplicates;
            node.have_at_crash = Some(s.have().clone());
        }
        self.net.drop_node(self.now(), id);
        for p in self.nodes[id as usize].peers.clone() {
            if let Some(s) = &mut self.nodes[p as usize].swarm {
                s.handle_peer_down(now, id);
                self.dirty.push(p);
            }
        }
        if self.sc.churn.rejoin_after_s >= 0.0 {
            let at = self.now() + self.sc.churn.rejoin_after_s;
            self.push(at, Ev::Join(id));
        } else {
            self.remaining -= 1;
        }
    }

    /// Runs the node's queued actions, and those of nodes they touch.
    fn drain(&mut self) {
        while let Some(id) = self.dirty.pop() {
            self.drain_one(id);
        }
    }

    fn drain_one(&mut self, id: u32) {
        let now = self.now();
        let mut actions = Vec::new();
        let timeout = {
            let Some(s) = &mut self.nodes[id as usize].swarm else {
                return;
            };
            while let Some(a) = s.poll_action() {
                actions.push(a);
            }
            s.poll_timeout()
        };
        let epoch = self.nodes[id as usize].epoch;
        for a in actions {
            match a {
                Action::Request {
                    peer, index, len, ..
                } => {
                    let rtt = 2.0 * self.latency(peer, id);
                    if self.nodes[peer as usize].up && self.holds(peer, index) {
                        let path = self.path(peer, id);
                        let job = Job {
                            index,
                            bytes: u64::from(len),
                            epoch,
                            deadline: now + STREAM_TIMEOUT,
                        };
                        self.net.enqueue(now, peer, id, || path, job);
                    } else {
                        self.push(
                            now + rtt,
                            Ev::Fail {
                                to: id,
                                from: peer,
                                index,
                                epoch,
                            },
                        );
                    }
                }
                Action::Have { index } => {
                    let node = &mut self.nodes[id as usize];
                    node.gained.push(index);
                    let tick = ns(self.sc.sched.notify_ms / 1000.0);
                    if tick == 0 {
                        // Idealised: peers learn of a chunk the moment it lands.
                        node.notify_at = Some(self.now_ns);
                        self.notify(id, self.now_ns);
                    } else if node.notify_at.is_none() {
                        // The next tick of the node's clock (`driver::TICK`,
                        // `notify_ms`), which started when it joined: chunks
                        // gained since the last one go out in one notice.
                        let start = ns(node.start);
                        let at = start + (self.now_ns - start) / tick * tick + tick;
                        node.notify_at = Some(at);
                        self.queue.push(at, Ev::Notify(id));
                    }
                }
                Action::Complete => {
                    let n = &mut self.nodes[id as usize];
                    if n.finish.is_none() {
                        n.finish = Some(now);
                        self.remaining -= 1;
                    }
                }
                _ => {}
            }
        }
        if let Some(t) = timeout {
            let t = t.as_nanos() as u64;
            let node = &mut self.nodes[id as usize];
            if node.timer.is_none_or(|cur| t < cur || cur < self.now_ns) {
                node.timer = Some(t);
                self.queue.push(t.max(self.now_ns), Ev::Timer(id));
            }
        }
    }

    /// A transfer's last byte left: the chunk arrives one latency later,
    /// unless its stream was reset first.
    fn transfer_done(&mut self) {
        let now = self.now();
        let Some((from, to, job)) = self.net.complete(now) else {
            return;
        };
        if job.deadline >= now {
            let at = now + self.latency(from, to);
            let (index, epoch) = (job.index, job.epoch);
            self.push(
                at,
                Ev::Deliver {
                    to,
                    from,
                    index,
                    epoch,
                },
            );
        }
    }

    /// A node's tick: its gained chunks are announced to its peers.
    fn notify(&mut self, id: u32, at: u64) {
        let node = &mut self.nodes[id as usize];
        if node.notify_at != Some(at) {
            return;
        }
        node.notify_at = None;
        let gained = std::mem::take(&mut node.gained);
        let peers = std::mem::take(&mut node.peers);
        let now = Duration::from_nanos(at);
        for &p in &peers {
            if let Some(s) = &mut self.nodes[p as usize].swarm {
                s.handle_have_many(now, id, &gained);
                self.dirty.push(p);
            }
        }
        let node = &mut self.nodes[id as usize];
        node.peers = peers;
        node.gained = gained;
        node.gained.clear();
    }

    /// Handles one scheduled event due at `at`.
    fn handle(&mut self, at: u64, ev: Ev) {
        match ev {
            Ev::Join(id) => self.join(id),
            Ev::Deliver {
                to,
                from,
                index,
                epoch,
            } => self.deliver(to, from, index, epoch),
            Ev::Fail {
                to,
                from,
                index,
                epoch,
            } => {
                let n = &mut self.nodes[to as usize];
                if n.up && n.epoch == epoch {
                    if let Some(s) = &mut n.swarm {
                        s.handle_request_failed(Duration::from_nanos(self.now_ns), from, index);
                        self.dirty.push(to);
                    }
                }
            }
            Ev::Timer(id) => {
                let n = &mut self.nodes[id as usize];
                if n.timer == Some(at) {
                    n.timer = None;
                    if let Some(s) = &mut n.swarm {
                        s.handle_timeout(Duration::from_nanos(at));
                        self.dirty.push(id);
                    }
                }
            }
            Ev::Notify(id) => self.notify(id, at),
            Ev::Crash(id) => self.crash(id),
            Ev::Sample => {
                self.sample();
                let next = self.now() + self.sc.sample_s;
                self.push(next, Ev::Sample);
            }
        }
    }

    fn deliver(&mut self, to: u32, from: u32, index: u32, epoch: u32) {
        let node = &self.nodes[to as usize];
        if !node.up || node.epoch != epoch || !self.nodes[from as usize].up {
            return;
        }
        let len = u64::from(self.chunks[index as usize].len);
        let cross = self.nodes[from as usize].site != self.nodes[to as usize].site;
        if let (true, Some(s)) = (cross, self.nodes[to as usize].site) {
            self.sites[s as usize].bytes_in += len;
        }
        self.nodes[from as usize].bytes_out += len;
        let n = &mut self.nodes[to as usize];
        if cross {
            n.bytes_in_uplink += len;
        } else {
            n.bytes_in_lan += len;
        }
        if let Some(s) = &mut n.swarm {
            s.handle_chunk(Duration::from_nanos(self.now_ns), from, index, true);
        }
        self.dirty.push(to);
    }

    fn sample(&mut self) {
        let now = self.now();
        for (i, site) in self.sites.iter().enumerate() {
            let done = site
                .devices
                .iter()
                .filter(|&&d| self.nodes[d as usize].finish.is_some())
                .count() as u32;
            self.samples.push(Sample {
                time: now,
                site: i as u32,
                uplink_in_bytes: site.bytes_in,
                done,
            });
        }
    }

    /// Runs to completion (every device done or gone) or the time limit;
    /// `progress(done, total)` is called now and then.
    pub fn run(mut self, mut progress: impl FnMut(usize, usize)) -> Outcome {
        let limit = ns(self.sc.time_limit_s);
        let total = self.nodes.len() - 1;
        let mut last_report = 0u64;
        loop {
            // The next event, or the next transfer to finish (events first on a tie).
            let (at, transfer) = match (self.queue.peek_at(), self.net.next_finish()) {
                (None, None) => break,
                (Some(q), Some(f)) if f < q => (f, true),
                (None, Some(f)) => (f, true),
                (Some(q), _) => (q, false),
            };
            if at > limit || self.remaining == 0 {
                break;
            }
            self.now_ns = at;
            self.events += 1;
            if transfer {
                self.transfer_done();
            } else if let Some((_, ev)) = self.queue.pop() {
                self.handle(at, ev);
            }
            self.drain();
            if self.events - last_report >= 200_000 {
                last_report = self.events;
                progress(total - self.remaining, total);
            }
        }
        self.sample();
        progress(total - self.remaining, total);
        let end = self.now();
        for n in &mut self.nodes {
            if let Some(s) = &n.swarm {
                n.duplicates += s.stats().duplicates;
            }
        }
        Outcome {
            nodes: self.nodes,
            sites: self.sites,
            samples: self.samples,
            release_bytes: self.release_bytes,
            chunks: self.chunks.len(),
            end,
            events: self.events,
            rate_updates: self.net.updates,
        }
    }

    /// The seeder's upload link (for tests).
    pub fn seeder_link(&self) -> LinkId {
        self.seeder_up
    }
}

/// A uniform draw in `[0, 1)`.
fn unit(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}
