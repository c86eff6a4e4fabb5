//! The discrete-event engine: an event heap over simulated time, one
//! [`pollen_core::swarm::Swarm`] per device driven through its
//! `handle_*`/`poll_*` API (the code the node ships), and the flow model of
//! [`crate::net`] for every transfer. Deterministic: all randomness comes
//! from the scenario's seed, times are integer nanoseconds in the heap, and
//! ties break by insertion order. An HTTPS origin (`[origin]`) is one more
//! node after the devices: an HTTP server with a time to first byte per
//! request, served as `central`'s HTTP over TCP. Uplink trace steps
//! ([`crate::trace`]) and churn leaves ([`crate::churn`]) are events in the
//! same heap.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use pollen_core::admission::{
    keep_connection, Admission, AdmissionConfig, AdmissionStats, Start, Verdict,
};
use pollen_core::manifest::{ChunkRef, ManifestId, Rollout, RolloutStage};
use pollen_core::node::{Node as Machine, NodeConfig, Output, Preset, STREAM_TIMEOUT};
use pollen_core::swarm::{
    Bitfield, PeerInfo, Receipt, SiteId, SwarmConfig, SwarmStats, WindowMode,
};
use pollen_core::wire::Role;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

mod pieces;

use crate::churn::ChurnClock;
use crate::net::{to_ns as ns, Job, LinkId, Net};
use crate::queue::Queue;
use crate::scenario::{Scenario, SiteSpec, Strategy};
use crate::trace::SiteTraces;
use pieces::{Partial, Pieced};

/// When the next thing happens and whether it is a transfer finishing
/// (`true`) or a queued event (`false`; events first on a tie); `None`:
/// nothing is left. Both strategies' loops step by it.
pub(crate) fn next_step<E>(queue: &Queue<E>, net: &Net) -> Option<(u64, bool)> {
    match (queue.peek_at(), net.next_finish()) {
        (None, None) => None,
        (Some(q), Some(f)) if f < q => Some((f, true)),
        (None, Some(f)) => Some((f, true)),
        (Some(q), _) => Some((q, false)),
    }
}

/// The seeder's node id.
pub const SEEDER: u32 = 0;
const MBIT: f64 = 1_000_000.0 / 8.0;
/// How often gateways top up their connections to other sites' gateways
/// (the node's redial interval).
const MAINTAIN_S: f64 = 3.0;

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
    /// The peer declined this chunk (a retry hint in ns).
    Declined {
        to: u32,
        from: u32,
        index: u32,
        epoch: u32,
        retry_ns: u64,
    },
    /// The peer answered `Busy` (a retry hint in ns), or the stream broke
    /// off (no hint).
    Busy {
        to: u32,
        from: u32,
        index: u32,
        epoch: u32,
        retry_ns: Option<u64>,
    },
    /// A node's deadline ([`Machine::poll_timeout`]): scheduler deadlines
    /// and batched gained-chunk notices.
    Timer(u32),
    /// Pieces (`count`, not the last) of a response sent piece by piece
    /// arrived (token: the sender's admission token for the response).
    Piece {
        to: u32,
        index: u32,
        epoch: u32,
        token: u64,
        count: u32,
    },
    Crash(u32),
    /// The origin's first byte for a device's request: its response
    /// starts flowing (the request's time to first byte has passed).
    OriginServe {
        to: u32,
        index: u32,
        epoch: u32,
    },
    Sample,
    /// A device leaves under churn as a rate (ignored if it has restarted
    /// since: another epoch).
    Leave {
        id: u32,
        epoch: u32,
    },
    /// A site's uplink takes step `step` of its trace (`up`: out of the
    /// site, else into it).
    Uplink {
        site: u32,
        up: bool,
        step: u32,
    },
    /// Gateways top up their connections to other sites' gateways (as the
    /// node does on its redial tick).
    Maintain,
}

/// One simulated node's state and counters.
#[derive(Debug)]
pub struct Node {
    /// Site index (`None`: the seeder or the origin, on the internet).
    pub site: Option<u32>,
    pub name: String,
    /// The node's logic (`pollen_core::node`, the code the node ships),
    /// while it is up.
    machine: Option<Machine<u32>>,
    peers: Vec<u32>,
    up: bool,
    joined: bool,
    epoch: u32,
    timer: Option<u64>,
    up_link: LinkId,
    down_link: LinkId,
    /// What it accepts to upload (`None`: the `central` seeder, an HTTP
    /// server that sends every request at once).
    admission: Option<Admission<u64, u32>>,
    /// Connected to the seeder (its connection limit may refuse).
    seeder_conn: bool,
    /// Requests this device has at the origin now, and those waiting on
    /// the device for one to end (index, epoch).
    origin_active: usize,
    origin_waiting: std::collections::VecDeque<(u32, u32)>,
    /// Seconds.
    pub start: f64,
    pub finish: Option<f64>,
    pub bytes_in_lan: u64,
    pub bytes_in_uplink: u64,
    pub bytes_out: u64,
    /// Bytes that left it, used or not: also responses that ended past
    /// their deadline and the pieces of responses cut off.
    pub bytes_sent: u64,
    pub crashes: u32,
    /// The scheduler's counters, summed over the node's incarnations.
    pub sched: SwarmStats,
    have_at_crash: Option<Bitfield>,
}

impl Node {
    /// A device of `site` that has not joined yet, on these links.
    fn device(site: Option<u32>, name: String, up_link: LinkId, down_link: LinkId) -> Self {
        Node {
            site,
            name,
            machine: None,
            peers: Vec::new(),
            up: false,
            joined: false,
            epoch: 0,
            timer: None,
            up_link,
            down_link,
            admission: None,
            seeder_conn: false,
            origin_active: 0,
            origin_waiting: Default::default(),
            start: 0.0,
            finish: None,
            bytes_in_lan: 0,
            bytes_in_uplink: 0,
            bytes_out: 0,
            bytes_sent: 0,
            crashes: 0,
            sched: SwarmStats::default(),
            have_at_crash: None,
        }
    }

    /// A server on the internet (the seeder, the origin), up from the
    /// start with everything, uploading through `admission` if any.
    fn server(
        name: &str,
        up_link: LinkId,
        down_link: LinkId,
        admission: Option<Admission<u64, u32>>,
    ) -> Self {
        Node {
            up: true,
            joined: true,
            finish: Some(0.0),
            admission,
            ..Node::device(None, name.into(), up_link, down_link)
        }
    }

    /// A node as the reports see it, for a model that runs outside this
    /// engine (`crate::bittorrent`): `bytes` is in from the LAN, in across
    /// the uplink, out.
    pub(crate) fn reported(
        site: Option<u32>,
        name: String,
        start: f64,
        finish: Option<f64>,
        bytes: [u64; 3],
        requests: u64,
        duplicates: u64,
    ) -> Self {
        Node {
            joined: true,
            start,
            finish,
            bytes_in_lan: bytes[0],
            bytes_in_uplink: bytes[1],
            bytes_out: bytes[2],
            sched: SwarmStats {
                requests,
                duplicates,
                ..SwarmStats::default()
            },
            ..Node::device(site, name, 0, 0)
        }
    }
}

/// One timeline sample per site at `now`; `finished(d)`: device `d` is done.
pub(crate) fn sample_sites(
    samples: &mut Vec<Sample>,
    now: f64,
    sites: &[Site],
    seeder_out_bytes: u64,
    finished: impl Fn(u32) -> bool,
) {
    for (i, site) in sites.iter().enumerate() {
        let done = site.devices.iter().filter(|&&d| finished(d)).count() as u32;
        samples.push(Sample {
            time: now,
            site: i as u32,
            uplink_in_bytes: site.bytes_in,
            done,
            seeder_out_bytes,
        });
    }
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

impl Site {
    /// Site `name`, one of `group`, its uplink's two directions added to `net`.
    pub(crate) fn build(name: String, group: &SiteSpec, net: &mut Net, devices: Vec<u32>) -> Self {
        Site {
            name,
            uplink_up: net.add_link(group.uplink_up_mbit * MBIT),
            uplink_down: net.add_link(group.uplink_down_mbit * MBIT),
            lan_latency: group.lan_latency_ms / 1000.0,
            wan_latency: group.wan_latency_ms / 1000.0,
            bytes_in: 0,
            devices,
        }
    }
}

/// The one-way latency between a node at site `a` and one at site `b`
/// (`None`: the seeder's side of the WAN): the LAN's within a site, else
/// both ends' WAN latencies.
pub(crate) fn latency(sites: &[Site], seeder_latency: f64, a: Option<u32>, b: Option<u32>) -> f64 {
    let wan = |s: Option<u32>| match s {
        Some(s) => sites[s as usize].wan_latency,
        None => seeder_latency,
    };
    match (a, b) {
        (Some(x), Some(y)) if x == y => sites[x as usize].lan_latency,
        _ => wan(a) + wan(b),
    }
}

/// The links a transfer crosses from a node at site `from.0` (its upload
/// link `from.1`) to one at site `to.0` (its download link `to.1`): both
/// sites' uplinks when they differ.
pub(crate) fn path(
    sites: &[Site],
    from: (Option<u32>, LinkId),
    to: (Option<u32>, LinkId),
) -> Vec<LinkId> {
    let mut p = vec![from.1];
    if from.0 != to.0 {
        if let Some(s) = from.0 {
            p.push(sites[s as usize].uplink_up);
        }
        if let Some(s) = to.0 {
            p.push(sites[s as usize].uplink_down);
        }
    }
    p.push(to.1);
    p
}

/// One timeline sample.
#[derive(Clone, Debug)]
pub struct Sample {
    pub time: f64,
    pub site: u32,
    pub uplink_in_bytes: u64,
    pub done: u32,
    /// Bytes the seeder has sent so far (all sites).
    pub seeder_out_bytes: u64,
}

/// A finished (or stopped) run.
#[derive(Debug)]
pub struct Outcome {
    /// The HTTPS origin (not among `nodes`), if the fleet has one.
    pub origin: Option<Node>,
    /// The seeder's admission counters (`central`: none).
    pub seeder_admission: Option<AdmissionStats>,
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
    /// Scratch: a node's outputs being handled.
    outputs: Vec<Output<u32>>,
    /// The seeder's connections, in all and per site.
    seeder_conns: u32,
    seeder_site_conns: Vec<u32>,
    /// Requests held in a sender's queue, by admission token: (sender,
    /// requester, response).
    held: std::collections::HashMap<u64, (u32, u32, Job)>,
    next_token: u64,
    /// Devices that are their site's gateways now.
    gateways: std::collections::BTreeSet<u32>,
    /// The origin's node id (after every device), if the fleet has one.
    origin: Option<u32>,
    /// One past the last device's id.
    devices_end: u32,
    /// Churn as a rate.
    churn: ChurnClock,
    /// Uplink capacity traces per site (empty: none).
    traces: Vec<SiteTraces>,
    /// Bytes of a piece when chunks are passed on piece by piece (`None`:
    /// a chunk is passed on once whole).
    piece_len: Option<u64>,
    /// Responses sent piece by piece, by the sender's admission token.
    pieced: BTreeMap<u64, Pieced>,
    /// The same, by (sender, requester, chunk).
    pieced_of: HashMap<(u32, u32, u32), u64>,
    /// Chunks being received piece by piece, by (node, chunk).
    partial: BTreeMap<(u32, u32), Partial>,
}

impl Sim {
    /// Builds the network and schedules every device's start.
    pub fn new(sc: Scenario, chunks: Vec<ChunkRef>, held_from_old: Bitfield) -> Self {
        let release_bytes = chunks.iter().map(|c| u64::from(c.len)).sum();
        let mut rng = ChaCha8Rng::seed_from_u64(sc.seed);
        let mut net = Net::with_wire_overhead(sc.wire_overhead);
        let seeder_up = net.add_link(sc.seeder().map_or(1.0, |s| s.upload_mbit) * MBIT);
        let unlimited = net.add_link(f64::MAX / 4.0);
        let seeder_admission =
            (sc.strategy != Strategy::Central && sc.seeder().is_some()).then(|| {
                // The publisher's seeder super-seeds when sites share.
                let config = AdmissionConfig {
                    spread: sc.sched.cross_site,
                    max_active: sc.seeder().map_or(1, |s| s.upload_slots),
                    ..AdmissionConfig::origin()
                };
                let mut a = Admission::new(config, None);
                a.new_release(chunks.len() as u32);
                a
            });
        let mut nodes = vec![Node::server(
            "seeder",
            seeder_up,
            unlimited,
            seeder_admission,
        )];
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
                    let up = net.add_link(group.lan_up_mbit * MBIT * factor);
                    let down = net.add_link(group.lan_down_mbit * MBIT * factor);
                    nodes.push(Node::device(Some(site), format!("{name}/{d}"), up, down));
                    devices.push(id);
                }
                sites.push(Site::build(name, group, &mut net, devices));
            }
        }
        let remaining = nodes.len() - 1;
        let devices_end = nodes.len() as u32;
        let origin = sc.origin().map(|o| {
            let up_link = net.add_link(o.upload_mbit * MBIT);
            // An HTTP server: no admission control of Pollen's.
            nodes.push(Node::server("origin", up_link, unlimited, None));
            devices_end
        });
        let site_count = sites.len();
        let mut sim = Self {
            seeder_latency: sc.seeder().map_or(0.0, |s| s.latency_ms) / 1000.0,
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
            outputs: Vec::new(),
            seeder_conns: 0,
            seeder_site_conns: vec![0; site_count],
            held: std::collections::HashMap::new(),
            next_token: 0,
            gateways: std::collections::BTreeSet::new(),
            origin,
            devices_end,
            churn: ChurnClock::new(&sc.churn, sc.seed),
            traces: Vec::new(),
            piece_len: (sc.piece_kib > 0).then(|| u64::from(sc.piece_kib) * 1024),
            pieced: BTreeMap::new(),
            pieced_of: HashMap::new(),
            partial: BTreeMap::new(),
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

    /// Who talks to whom: the seeder (as its connection limit allows, at
    /// join); `pollen` adds the device's site (as mDNS finds it) and, with
    /// cross-site sharing, `remote_peers` random devices of other sites (as
    /// peer exchange hands out); `swarm` adds random devices anywhere (as a
    /// tracker hands out); `central` nothing else. Links are symmetric.
    fn wire_peers(&mut self) {
        let n = self.devices_end;
        for id in 1..n {
            if self.sc.seeder().is_some() {
                self.nodes[id as usize].peers.push(SEEDER);
            }
            if let Some(origin) = self.origin {
                self.nodes[id as usize].peers.push(origin);
            }
        }
        match self.sc.strategy {
            // `bittorrent` runs in `crate::bittorrent`, never here.
            Strategy::Central | Strategy::Bittorrent => {}
            Strategy::Pollen => {
                // Sites' gateways find each other when they become gateways
                // (`connect_gateways`), as peer exchange hands them out.
                for site in &self.sites {
                    for &a in &site.devices {
                        let others = site.devices.iter().copied().filter(|&b| b != a);
                        self.nodes[a as usize].peers.extend(others);
                    }
                }
            }
            Strategy::Swarm => {
                // A tracker's list: random devices anywhere.
                let mut sets: Vec<std::collections::BTreeSet<u32>> =
                    vec![Default::default(); n as usize];
                let want = self.sc.sched.remote_peers.min(n.saturating_sub(2));
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

    /// A device that became its site's gateway — or that the seeder turned
    /// away — connects to `remote_peers` gateways of other sites (peer
    /// exchange hands out peers with their roles; gateways keep connections
    /// to gateways). Links are symmetric.
    fn connect_gateways(&mut self, id: u32) {
        // Without a seeder no one hands out other sites' gateways (the
        // origin takes no part in peer exchange).
        if !self.sc.sched.cross_site
            || self.sc.strategy != Strategy::Pollen
            || self.sc.seeder().is_none()
        {
            return;
        }
        let now = Duration::from_nanos(self.now_ns);
        // As the node: only while its logic seeks other sites (an origin
        // said it is the bottleneck, or none is in reach).
        let seeks = |m: &Machine<u32>| m.seeks_other_sites(now);
        if !self.nodes[id as usize].machine.as_ref().is_some_and(seeks) {
            return;
        }
        let own = self.nodes[id as usize].site;
        let others: Vec<u32> = self
            .gateways
            .iter()
            .copied()
            .filter(|&g| self.nodes[g as usize].site != own && self.nodes[g as usize].up)
            .collect();
        if others.is_empty() {
            return;
        }
        let have: usize = self.nodes[id as usize]
            .peers
            .iter()
            .filter(|&&p| self.gateways.contains(&p) && self.nodes[p as usize].site != own)
            .count();
        let want = (self.sc.sched.remote_peers as usize).saturating_sub(have);
        let mut tries = 0;
        let mut added = 0;
        while added < want.min(others.len()) && tries < want * 20 {
            tries += 1;
            let g = others[(self.rng.next_u64() % others.len() as u64) as usize];
            if self.nodes[id as usize].peers.contains(&g) {
                continue;
            }
            added += 1;
            self.nodes[id as usize].peers.push(g);
            self.nodes[g as usize].peers.push(id);
            self.introduce(now, id, g);
        }
        self.dirty.push(id);
    }

    /// `a` and `b` (connected) tell each other's schedulers who they are
    /// and what they hold.
    fn introduce(&mut self, now: Duration, a: u32, b: u32) {
        let (info_a, has_a) = (self.info(a), self.have_of(a));
        let (info_b, has_b) = (self.info(b), self.have_of(b));
        // Every device names the seeder (and the origin) as static peers.
        let configured = |p: u32| p == SEEDER || Some(p) == self.origin;
        let (conf_a, conf_b) = (configured(a), configured(b));
        if let Some(m) = &mut self.nodes[a as usize].machine {
            m.handle_peer_up(now, b, info_b, conf_b);
            m.handle_have_all(now, b, has_b);
        }
        if let Some(m) = &mut self.nodes[b as usize].machine {
            m.handle_peer_up(now, a, info_a, conf_a);
            m.handle_have_all(now, a, has_a);
            self.dirty.push(b);
        }
    }

    /// A device's role changed: its admission serves other sites only as
    /// a gateway, and a new gateway finds others (its peers hear of it
    /// through [`Output::Role`]).
    fn role_changed(&mut self, id: u32, role: Role) {
        let node = &mut self.nodes[id as usize];
        if let Some(a) = &mut node.admission {
            a.set_serves_away(role.gateway || self.sc.strategy != Strategy::Pollen);
        }
        if role.gateway {
            self.gateways.insert(id);
            self.connect_gateways(id);
        } else {
            self.gateways.remove(&id);
        }
    }

    fn schedule_starts(&mut self) {
        let release = ManifestId(*blake3::hash(&self.sc.seed.to_le_bytes()).as_bytes());
        // The scenario's stages as a rollout: a device starts with the
        // first stage whose share covers its bucket (`core::rollout`).
        let mut stages: Vec<(u16, f64)> = self
            .sc
            .stages
            .iter()
            .map(|s| ((s.share_percent * 100.0).round() as u16, s.start_s))
            .collect();
        stages.sort_by_key(|s| s.0);
        let rollout = Rollout {
            stages: stages
                .iter()
                .map(|&(share, _)| RolloutStage {
                    share,
                    start_at: None,
                })
                .collect(),
            max_failures: None,
        };
        for id in 1..self.devices_end {
            let start = if stages.is_empty() {
                0.0
            } else {
                let bucket = pollen_core::rollout::bucket(&self.nodes[id as usize].name, &release);
                pollen_core::rollout::stage_of(&rollout, bucket)
                    .map_or(f64::INFINITY, |i| stages[i].1)
            };
            if start.is_finite() {
                self.nodes[id as usize].start = start;
                self.push(start, Ev::Join(id));
            } else {
                self.remaining -= 1;
            }
        }
        let churn = self.sc.churn.clone();
        for id in 1..self.devices_end {
            if unit(&mut self.rng) < churn.crash_fraction {
                let at = self.nodes[id as usize].start + unit(&mut self.rng) * churn.crash_window_s;
                self.push(at, Ev::Crash(id));
            }
        }
        self.push(0.0, Ev::Sample);
        if self.sc.strategy == Strategy::Pollen && self.sc.sched.cross_site {
            self.push(MAINTAIN_S, Ev::Maintain);
        }
    }

    fn latency(&self, a: u32, b: u32) -> f64 {
        // The origin's delay is all in its time to first byte.
        if self.origin.is_some_and(|o| o == a || o == b) {
            return 0.0;
        }
        let (sa, sb) = (self.nodes[a as usize].site, self.nodes[b as usize].site);
        latency(&self.sites, self.seeder_latency, sa, sb)
    }

    fn path(&self, from: u32, to: u32) -> Vec<LinkId> {
        let (f, t) = (&self.nodes[from as usize], &self.nodes[to as usize]);
        path(&self.sites, (f.site, f.up_link), (t.site, t.down_link))
    }

    fn site_id(&self, node: u32) -> SiteId {
        match self.nodes[node as usize].site {
            Some(s) => SiteId(u64::from(s) + 1),
            None => SiteId(u64::MAX),
        }
    }

    fn holds(&self, node: u32, index: u32) -> bool {
        node == SEEDER
            || Some(node) == self.origin
            || self.nodes[node as usize]
                .machine
                .as_ref()
                .and_then(|m| m.have())
                .is_some_and(|h| h.get(index))
    }

    fn have_of(&self, node: u32) -> Bitfield {
        match self.nodes[node as usize]
            .machine
            .as_ref()
            .and_then(|m| m.have())
        {
            _ if node == SEEDER || Some(node) == self.origin => {
                Bitfield::full(self.chunks.len() as u32)
            }
            Some(h) => h.clone(),
            None => Bitfield::new(self.chunks.len() as u32),
        }
    }

    /// What `node` tells a peer about itself (the seeder: an origin that
    /// serves every site).
    fn info(&self, node: u32) -> PeerInfo {
        if Some(node) == self.origin {
            // As the node introduces its `--origin`: an origin on no site.
            return PeerInfo {
                site: None,
                origin: true,
                uplink: false,
                gateway: false,
            };
        }
        let role = match &self.nodes[node as usize].machine {
            _ if node == SEEDER => Role {
                origin: true,
                uplink: true,
                gateway: true,
            },
            Some(m) => m.role(),
            None => Role::default(),
        };
        PeerInfo {
            site: Some(self.site_id(node)),
            origin: role.origin,
            uplink: role.uplink,
            gateway: role.gateway,
        }
    }

    /// The device connects to the seeder, if the seeder keeps it.
    fn connect_seeder(&mut self, id: u32) {
        let site = self.nodes[id as usize].site.unwrap_or(0) as usize;
        let Some(seeder) = self.sc.seeder() else {
            return;
        };
        let keep = self.sc.strategy == Strategy::Central
            || keep_connection(
                self.seeder_conns,
                seeder.max_connections,
                self.seeder_site_conns[site],
            );
        if keep {
            self.seeder_conns += 1;
            self.seeder_site_conns[site] += 1;
        }
        self.nodes[id as usize].seeder_conn = keep;
    }

    fn join(&mut self, id: u32) {
        let now = Duration::from_nanos(self.now_ns);
        let strategy = self.sc.strategy;
        self.connect_seeder(id);
        let node = &mut self.nodes[id as usize];
        node.up = true;
        node.joined = true;
        node.epoch += 1;
        let own_site = self.requester_site(id);
        let node = &mut self.nodes[id as usize];
        let config = AdmissionConfig {
            max_active: self.sc.sched.upload_slots,
            ..AdmissionConfig::default()
        };
        let mut admission = Admission::new(config, own_site);
        admission.set_serves_away(strategy != Strategy::Pollen);
        node.admission = Some(admission);
        let have = node
            .have_at_crash
            .take()
            .unwrap_or_else(|| self.held_from_old.clone());
        let preset = match strategy {
            Strategy::Pollen => Preset::Device {
                cross_site: self.sc.sched.cross_site,
            },
            Strategy::Swarm => Preset::Flat,
            Strategy::Central | Strategy::Bittorrent => Preset::Central,
        };
        let site =
            (strategy == Strategy::Pollen).then(|| SiteId(u64::from(node.site.unwrap_or(0)) + 1));
        let config = NodeConfig {
            swarm: SwarmConfig {
                seed: self.sc.seed ^ (u64::from(id) << 20) ^ u64::from(node.epoch),
                per_peer_in_flight: self.sc.sched.per_peer_in_flight,
                total_in_flight: self.sc.sched.total_in_flight,
                site_fetchers: self.sc.sched.site_fetchers,
                site_uplink_requests: self.sc.sched.site_uplink_requests,
                window_mode: match self.sc.sched.window {
                    crate::scenario::Window::Rate => WindowMode::Rate,
                    crate::scenario::Window::Aimd => WindowMode::Aimd,
                },
                ..SwarmConfig::default()
            },
            notice_every: Duration::from_secs_f64(self.sc.sched.notify_ms / 1000.0),
            remote_notice_every: Duration::from_secs_f64(self.sc.sched.notify_remote_ms / 1000.0),
            news_below: self.sc.sched.notify_news_below,
            site_fanout: self.sc.sched.site_fanout,
            ..NodeConfig::new(preset, site)
        };
        let mut machine = Machine::new(config, id, now);
        machine.take_release(now, self.chunks.clone(), have);
        self.nodes[id as usize].machine = Some(machine);
        if !self.nodes[id as usize].seeder_conn && self.sc.seeder().is_some() {
            // Turned away by the seeder: reach other sites through their gateways.
            self.connect_gateways(id);
        }
        let peers = self.nodes[id as usize].peers.clone();
        for p in peers {
            if !self.nodes[p as usize].up || (p == SEEDER && !self.nodes[id as usize].seeder_conn) {
                continue;
            }
            self.introduce(now, id, p);
        }
        self.dirty.push(id);
        if let Some(after) = self.churn.next_leave() {
            let epoch = self.nodes[id as usize].epoch;
            self.push(self.now() + after, Ev::Leave { id, epoch });
        }
    }

    fn crash(&mut self, id: u32) {
        let node = &self.nodes[id as usize];
        if !node.up || node.finish.is_some() {
            return;
        }
        self.take_down(id);
        if self.sc.churn.rejoin_after_s >= 0.0 {
            let at = self.now() + self.sc.churn.rejoin_after_s;
            self.push(at, Ev::Join(id));
        } else {
            self.remaining -= 1;
        }
    }

    /// Churn as a rate: the device leaves (finished or not) and rejoins
    /// after an offline time.
    fn leave(&mut self, id: u32, epoch: u32) {
        let node = &self.nodes[id as usize];
        if !node.up || node.epoch != epoch {
            return;
        }
        self.take_down(id);
        let at = self.now() + self.churn.offline();
        self.push(at, Ev::Join(id));
    }

    /// A site's uplink moves to step `step` of its trace.
    fn uplink_step(&mut self, site: u32, up: bool, step: u32) {
        let traces = &self.traces[site as usize];
        let trace = if up { &traces.up } else { &traces.down };
        let Some(&(_, mbit)) = trace.as_ref().and_then(|t| t.steps.get(step as usize)) else {
            return;
        };
        let s = &self.sites[site as usize];
        let link = if up { s.uplink_up } else { s.uplink_down };
        self.net.set_capacity(self.now(), link, mbit * MBIT);
    }

    /// Uses `traces` (one per site, in site order) for the sites' uplink
    /// capacities: every step is an event.
    pub fn with_traces(mut self, traces: Vec<SiteTraces>) -> Self {
        for (site, t) in traces.iter().enumerate() {
            for (up, trace) in [(false, &t.down), (true, &t.up)] {
                for (step, &(time, _)) in trace.iter().flat_map(|t| t.steps.iter()).enumerate() {
                    let ev = Ev::Uplink {
                        site: site as u32,
                        up,
                        step: step as u32,
                    };
                    self.push(time, ev);
                }
            }
        }
        self.traces = traces;
        self
    }

    /// Takes a device down: its connections and the requests it held or
    /// made end; its peers hear of it. What it stored survives.
    fn take_down(&mut self, id: u32) {
        let now = Duration::from_nanos(self.now_ns);
        let node = &mut self.nodes[id as usize];
        node.up = false;
        node.crashes += 1;
        node.timer = None;
        if let Some(m) = node.machine.take() {
            if let (Some(stats), Some(have)) = (m.stats(), m.have()) {
                add_stats(&mut node.sched, stats);
                node.have_at_crash = Some(have.clone());
            }
        }
        node.admission = None;
        node.origin_active = 0;
        node.origin_waiting.clear();
        self.gateways.remove(&id);
        if std::mem::take(&mut node.seeder_conn) {
            let site = node.site.unwrap_or(0) as usize;
            self.seeder_conns -= 1;
            self.seeder_site_conns[site] -= 1;
        }
        self.net.drop_node(self.now(), id);
        for (from, bytes) in std::mem::take(&mut self.net.cut) {
            self.nodes[from as usize].bytes_sent += bytes;
        }
        self.release_dropped();
        self.drop_partials(id);
        // Requests it held die with it; requests it made wait no more.
        let t = Duration::from_nanos(self.now_ns);
        let mut gone: Vec<(u64, u32)> = self
            .held
            .iter()
            .filter(|(_, (from, to, _))| *from == id || *to == id)
            .map(|(&token, &(from, _, _))| (token, from))
            .collect();
        gone.sort_unstable();
        let mut servers = Vec::new();
        for (token, from) in gone {
            self.held.remove(&token);
            if from != id {
                if let Some(a) = &mut self.nodes[from as usize].admission {
                    a.finished(t, token, 0);
                }
                servers.push(from);
            }
        }
        servers.sort_unstable();
        servers.dedup();
        for server in servers {
            self.start_held(server);
        }
        for p in self.nodes[id as usize].peers.clone() {
            if let Some(m) = &mut self.nodes[p as usize].machine {
                m.handle_peer_down(now, id);
                self.dirty.push(p);
            }
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
        let t = Duration::from_nanos(self.now_ns);
        let Some(m) = &mut self.nodes[id as usize].machine else {
            return;
        };
        let mut outputs = std::mem::take(&mut self.outputs);
        outputs.extend(std::iter::from_fn(|| m.poll_output()));
        let timeout = m.poll_timeout();
        let epoch = self.nodes[id as usize].epoch;
        for out in outputs.drain(..) {
            match out {
                Output::Request { peer, index, len } => {
                    self.request(id, peer, index, u64::from(len), epoch)
                }
                // Notices arrive as they are sent (the seeder runs no
                // scheduler and needs none).
                Output::Gained { peer, indices } => {
                    if let Some(m) = &mut self.nodes[peer as usize].machine {
                        m.handle_gained(t, id, &indices);
                        self.dirty.push(peer);
                    }
                }
                Output::Role { peer, role } => {
                    if let Some(m) = &mut self.nodes[peer as usize].machine {
                        m.handle_peer_role(t, id, role);
                        self.dirty.push(peer);
                    }
                }
                Output::RoleChanged(role) => self.role_changed(id, role),
                Output::Complete => {
                    let n = &mut self.nodes[id as usize];
                    if n.finish.is_none() {
                        n.finish = Some(now);
                        self.remaining -= 1;
                    }
                }
                // The sender's slot frees when the transfer ends, and it
                // learns of the chunk from the next notice. A cancel is not
                // modelled: a queued response is sent anyway (README,
                // "The model, and what it leaves out").
                // Simulated devices stay after completing (no `watch_site`),
                // so none asks its site peers what they hold.
                Output::Ack { .. }
                | Output::AskHave { .. }
                | Output::Cancel { .. }
                | Output::Penalise { .. }
                | Output::Ban { .. } => {}
            }
        }
        self.outputs = outputs;
        if let Some(t) = timeout {
            let t = t.as_nanos() as u64;
            let node = &mut self.nodes[id as usize];
            if node.timer.is_none_or(|cur| t < cur || cur < self.now_ns) {
                node.timer = Some(t);
                self.queue.push(t.max(self.now_ns), Ev::Timer(id));
            }
        }
    }

    /// `id` asks `peer` for chunk `index`: the peer refuses at once if it
    /// lacks it, answers `Busy` if its admission says so, or queues the
    /// response on their connection.
    fn request(&mut self, id: u32, peer: u32, index: u32, len: u64, epoch: u32) {
        let now = self.now();
        let back = now + 2.0 * self.latency(peer, id);
        if !self.nodes[peer as usize].up || !self.holds_some(peer, index) {
            self.push(
                back,
                Ev::Fail {
                    to: id,
                    from: peer,
                    index,
                    epoch,
                },
            );
            return;
        }
        if Some(peer) == self.origin {
            self.origin_request(id, index, epoch);
            return;
        }
        let site = self.requester_site(id);
        let t = Duration::from_nanos(self.now_ns);
        self.next_token += 1;
        let token = self.next_token;
        let verdict = match &mut self.nodes[peer as usize].admission {
            Some(a) => a.offer(t, token, id, site, index, len),
            None => Verdict::Send,
        };
        // Central HTTP over TCP: a download is slow, never cut off.
        let reset = if self.sc.strategy == Strategy::Central {
            f64::INFINITY
        } else {
            now + STREAM_TIMEOUT.as_secs_f64()
        };
        let job = Job {
            token,
            index,
            bytes: len,
            epoch,
            deadline: reset,
            pieces: 1,
            run: 1,
        };
        match verdict {
            Verdict::Send => self.send(peer, id, job),
            Verdict::Wait => {
                self.held.insert(token, (peer, id, job));
            }
            Verdict::Busy { retry_after } => self.push(
                back,
                Ev::Busy {
                    to: id,
                    from: peer,
                    index,
                    epoch,
                    retry_ns: Some(retry_after.as_nanos() as u64),
                },
            ),
            Verdict::Declined { retry_after } => self.push(
                back,
                Ev::Declined {
                    to: id,
                    from: peer,
                    index,
                    epoch,
                    retry_ns: retry_after.as_nanos() as u64,
                },
            ),
        }
    }

    /// `id` asks the origin for `index`: the request goes out if the device
    /// has fewer than `max_requests` at the origin, or waits on the device.
    fn origin_request(&mut self, id: u32, index: u32, epoch: u32) {
        let Some(spec) = self.sc.origin() else {
            return;
        };
        let (limit, ttfb) = (spec.max_requests, spec.latency_ms / 1000.0);
        let n = &mut self.nodes[id as usize];
        if n.origin_active >= limit {
            n.origin_waiting.push_back((index, epoch));
            return;
        }
        n.origin_active += 1;
        let at = self.now() + ttfb;
        self.push(
            at,
            Ev::OriginServe {
                to: id,
                index,
                epoch,
            },
        );
    }

    /// The first byte of the origin's response to `to` is due: the response
    /// flows (HTTP over TCP: a fair share, no deadline, never cut off).
    fn origin_serve(&mut self, to: u32, index: u32, epoch: u32) {
        let Some(origin) = self.origin else {
            return;
        };
        let n = &self.nodes[to as usize];
        if !n.up || n.epoch != epoch {
            return;
        }
        self.next_token += 1;
        let job = Job {
            token: self.next_token,
            index,
            bytes: u64::from(self.chunks[index as usize].len),
            epoch,
            deadline: f64::INFINITY,
            pieces: 1,
            run: 1,
        };
        self.send(origin, to, job);
    }

    /// One of `to`'s requests at the origin ended: its next waiting one
    /// (if any) goes out.
    fn origin_request_ended(&mut self, to: u32) {
        let n = &mut self.nodes[to as usize];
        n.origin_active = n.origin_active.saturating_sub(1);
        if let Some((index, epoch)) = n.origin_waiting.pop_front() {
            if n.up && n.epoch == epoch {
                self.origin_request(to, index, epoch);
            }
        }
    }

    /// Starts the requests `server` held whose turn has come (dropping
    /// those whose requester went away meanwhile).
    fn start_held(&mut self, server: u32) {
        let t = Duration::from_nanos(self.now_ns);
        let now = self.now();
        loop {
            let Some(a) = &mut self.nodes[server as usize].admission else {
                return;
            };
            let Some(start) = a.poll_start(t) else {
                return;
            };
            let (token, decline) = match start {
                Start::Send(token) => (token, None),
                Start::Decline(token, hint) => (token, Some(hint)),
            };
            let Some((from, to, job)) = self.held.remove(&token) else {
                continue;
            };
            let n = &self.nodes[to as usize];
            let alive = n.up && n.epoch == job.epoch;
            if let Some(hint) = decline {
                if alive {
                    let back = now + self.latency(from, to);
                    let ev = Ev::Declined {
                        to,
                        from,
                        index: job.index,
                        epoch: job.epoch,
                        retry_ns: hint.as_nanos() as u64,
                    };
                    self.push(back, ev);
                }
            } else if alive {
                self.send(from, to, job);
            } else if let Some(a) = &mut self.nodes[server as usize].admission {
                a.finished(t, token, 0);
            }
        }
    }

    /// The site a requester names to the peers it asks (site-aware only).
    fn requester_site(&self, id: u32) -> Option<SiteId> {
        (self.sc.strategy == Strategy::Pollen).then(|| self.site_id(id))
    }

    /// A response ended (`sent` of its bytes left): the sender's admission
    /// starts the next one.
    fn finished(&mut self, from: u32, to: u32, job: &Job, sent: u64) {
        if Some(from) == self.origin {
            self.origin_request_ended(to);
            return;
        }
        let t = Duration::from_nanos(self.now_ns);
        if let Some(a) = &mut self.nodes[from as usize].admission {
            a.finished(t, job.token, sent);
        }
        self.start_held(from);
    }

    /// Responses the network dropped unsent (their streams were reset, or
    /// an end went down): senders free their slots, live requesters hear
    /// that the stream broke off.
    fn release_dropped(&mut self) {
        let dropped = std::mem::take(&mut self.net.dropped);
        let now = self.now();
        for (from, to, job) in &dropped {
            if job.pieces > 1 {
                self.fail_pieced(job.token);
                continue;
            }
            self.finished(*from, *to, job, 0);
            let n = &self.nodes[*to as usize];
            if n.up && n.epoch == job.epoch {
                self.push(
                    now,
                    Ev::Busy {
                        to: *to,
                        from: *from,
                        index: job.index,
                        epoch: job.epoch,
                        retry_ns: None,
                    },
                );
            }
        }
        self.net.dropped = dropped;
        self.net.dropped.clear();
    }

    /// A transfer's last byte left: the chunk arrives one latency later,
    /// unless its stream was reset first.
    fn transfer_done(&mut self) {
        let now = self.now();
        if self.reset_run() {
            return;
        }
        let Some((from, to, job)) = self.net.complete(now) else {
            return;
        };
        self.nodes[from as usize].bytes_sent += job.bytes;
        if job.pieces > 1 {
            self.piece_sent(from, to, job);
            self.release_dropped();
            return;
        }
        self.finished(from, to, &job, job.bytes);
        self.release_dropped();
        let (index, epoch) = (job.index, job.epoch);
        if job.deadline >= now {
            let at = now + self.latency(from, to);
            self.push(
                at,
                Ev::Deliver {
                    to,
                    from,
                    index,
                    epoch,
                },
            );
        } else {
            self.push(
                now,
                Ev::Busy {
                    to,
                    from,
                    index,
                    epoch,
                    retry_ns: None,
                },
            );
        }
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
                    if let Some(m) = &mut n.machine {
                        m.handle_request_failed(Duration::from_nanos(self.now_ns), from, index);
                        self.dirty.push(to);
                    }
                }
            }
            Ev::Busy {
                to,
                from,
                index,
                epoch,
                retry_ns,
            } => {
                let n = &mut self.nodes[to as usize];
                if n.up && n.epoch == epoch {
                    if let Some(m) = &mut n.machine {
                        let hint = retry_ns.map(Duration::from_nanos);
                        m.handle_request_busy(Duration::from_nanos(at), from, index, hint);
                        self.dirty.push(to);
                    }
                }
            }
            Ev::Declined {
                to,
                from,
                index,
                epoch,
                retry_ns,
            } => {
                let n = &mut self.nodes[to as usize];
                if n.up && n.epoch == epoch {
                    if let Some(m) = &mut n.machine {
                        let hint = Duration::from_nanos(retry_ns);
                        m.handle_request_declined(Duration::from_nanos(at), from, index, hint);
                        self.dirty.push(to);
                    }
                }
            }
            Ev::Timer(id) => {
                let now = self.now();
                let n = &mut self.nodes[id as usize];
                if n.timer == Some(at) {
                    n.timer = None;
                    if let Some(m) = &mut n.machine {
                        // As the node's driver does: what has arrived of each
                        // request so far decides whether it is overdue.
                        let (net, pieced, pieced_of) = (&self.net, &self.pieced, &self.pieced_of);
                        let piece_len = self.piece_len.unwrap_or(0);
                        m.handle_timeout(Duration::from_nanos(at), |p, index| {
                            let before = pieced_of
                                .get(&(*p, id, index))
                                .and_then(|t| pieced.get(t))
                                .map_or(0, |r| u64::from(r.done) * piece_len);
                            before + net.progress(now, *p, id, index)
                        });
                        self.dirty.push(id);
                    }
                }
            }
            Ev::Piece {
                to,
                index,
                epoch,
                token,
                count,
            } => self.piece_arrived(to, index, epoch, token, count),
            Ev::Crash(id) => self.crash(id),
            Ev::Leave { id, epoch } => self.leave(id, epoch),
            Ev::Uplink { site, up, step } => self.uplink_step(site, up, step),
            Ev::OriginServe { to, index, epoch } => self.origin_serve(to, index, epoch),
            Ev::Maintain => {
                let keep: Vec<u32> = (1..self.devices_end)
                    .filter(|&d| {
                        let n = &self.nodes[d as usize];
                        n.up && (self.gateways.contains(&d) || !n.seeder_conn)
                    })
                    .collect();
                for d in keep {
                    self.connect_gateways(d);
                }
                self.push(self.now() + MAINTAIN_S, Ev::Maintain);
            }
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
        self.partial_done(to, index);
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
        if let Some(m) = &mut n.machine {
            m.handle_chunk(
                Duration::from_nanos(self.now_ns),
                from,
                index,
                Receipt::Verified,
            );
        }
        self.dirty.push(to);
    }

    fn sample(&mut self) {
        let now = self.now();
        let nodes = &self.nodes;
        let finished = |d: u32| nodes[d as usize].finish.is_some();
        let seeder_out = nodes[0].bytes_out;
        sample_sites(&mut self.samples, now, &self.sites, seeder_out, finished);
    }

    /// Runs to completion (every device done or gone) or the time limit;
    /// `progress(done, total)` is called now and then.
    pub fn run(mut self, mut progress: impl FnMut(usize, usize)) -> Outcome {
        let limit = ns(self.sc.time_limit_s);
        let total = self.devices_end as usize - 1;
        let mut last_report = 0u64;
        while let Some((at, transfer)) = next_step(&self.queue, &self.net) {
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
            if let Some(stats) = n.machine.as_ref().and_then(|m| m.stats()) {
                add_stats(&mut n.sched, stats);
            }
        }
        let origin = self.origin.and_then(|_| self.nodes.pop());
        Outcome {
            origin,
            seeder_admission: self.nodes[0].admission.as_ref().map(|a| a.stats().clone()),
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

/// Adds one incarnation's scheduler counters to a node's.
fn add_stats(total: &mut SwarmStats, s: &SwarmStats) {
    total.requests += s.requests;
    total.chunks_verified += s.chunks_verified;
    total.chunks_rejected += s.chunks_rejected;
    total.duplicates += s.duplicates;
    total.timeouts += s.timeouts;
    total.failures += s.failures;
    total.declined += s.declined;
    total.bytes_from_site += s.bytes_from_site;
    total.bytes_from_remote += s.bytes_from_remote;
    total.bytes_from_origin += s.bytes_from_origin;
}

/// A uniform draw in `[0, 1)`.
fn unit(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}
