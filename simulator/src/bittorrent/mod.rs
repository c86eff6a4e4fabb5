//! The `bittorrent` strategy: a model of a standard BitTorrent client
//! (not Pollen's scheduler) over the same flow-level network
//! ([`crate::net`]) and event queue ([`crate::queue`]) as the engine, with
//! the same outcome and reports. A tracker hands out random peers, local
//! peer discovery joins the devices of a site, a choker with regular and
//! optimistic unchoke slots decides who is served, a picker (random first,
//! then rarest first, end-game) decides what is requested, 16 KiB blocks
//! are pipelined. The seeder is the initial seed. Deterministic: all
//! randomness comes from the scenario's seed. What it leaves out is in
//! `simulator/README.md` ("BitTorrent baseline").

mod choke;
mod picker;
mod spec;

use std::collections::{HashMap, VecDeque};

use pollen_core::manifest::ChunkRef;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub use spec::BittorrentSpec;

use crate::engine::{self, Node as Reported, Outcome, Sample, Site};
use crate::net::{to_ns as ns, Job, LinkId, Net};
use crate::queue::Queue;
use crate::scenario::Scenario;
use choke::{Entry, Rate, RECENT_BLOCK_S, RECENT_UNCHOKE_S};
use picker::{Picker, Received};

const MBIT: f64 = 1_000_000.0 / 8.0;
/// Responses a sender keeps in the network per connection: the one moving
/// and the next, so a busy connection never goes idle between blocks.
const IN_NET: u8 = 2;

#[derive(Clone, Copy, Debug)]
enum Ev {
    /// A peer starts: its choker's first round.
    Start(u32),
    /// A peer connects: local peer discovery, its first announce.
    Join(u32),
    Announce(u32),
    /// The periodic choke round is due (unless one ran meanwhile).
    Choke(u32),
    /// A block request reaches its sender `to` (sent under choke
    /// generation `gen` of that connection).
    Request {
        to: u32,
        from: u32,
        piece: u32,
        block: u16,
        gen: u32,
    },
    /// A block's last byte reaches its requester `to`.
    Deliver {
        to: u32,
        from: u32,
        piece: u32,
        block: u16,
    },
    Sample,
}

/// One end of a connection, as the peer holding it sees it.
#[derive(Debug)]
struct Link {
    peer: u32,
    /// This peer's index in `peer`'s links.
    back: u32,
    /// Pieces `peer` has that this peer lacks (interested while > 0).
    wanted: u32,
    /// This peer chokes `peer`.
    am_choking: bool,
    /// `peer` holds this peer's optimistic unchoke.
    optimistic: bool,
    /// When this peer last unchoked `peer`.
    last_unchoke: f64,
    /// When `peer` last sent this peer a block.
    last_block: f64,
    /// Bumped at every choke: requests sent before it are void.
    gen: u32,
    /// This peer's requests to `peer`, and whether `peer` has started sending each.
    outstanding: Vec<(u32, u16)>,
    sent: Vec<bool>,
    /// `peer`'s requests to this peer, not yet handed to the network.
    queue: VecDeque<(u32, u16)>,
    in_net: u8,
    /// Bytes from and to `peer` over the last seconds.
    got: Rate,
    gave: Rate,
}

/// One BitTorrent client (the seeder is peer 0).
#[derive(Debug)]
struct Peer {
    site: Option<u32>,
    name: String,
    picker: Picker,
    links: Vec<Link>,
    index: HashMap<u32, u32>,
    joined: bool,
    announced: bool,
    /// The choker's round counters (leeching, seeding) and its last round.
    leech_round: u32,
    seed_round: u32,
    last_choke: f64,
    up_link: LinkId,
    down_link: LinkId,
    start: f64,
    finish: Option<f64>,
    bytes_in_lan: u64,
    bytes_in_uplink: u64,
    bytes_out: u64,
    duplicates: u64,
    requests: u64,
}

/// Runs the `bittorrent` strategy on `sc` (the release's total size is
/// what matters; it is cut into `[bittorrent] piece_kib` pieces).
pub fn run(sc: &Scenario, chunks: &[ChunkRef], mut progress: impl FnMut(usize, usize)) -> Outcome {
    let mut sim = Sim::new(sc, chunks);
    let limit = ns(sc.time_limit_s);
    let total = sim.peers.len() - 1;
    let mut last_report = 0u64;
    while let Some((at, transfer)) = crate::engine::next_step(&sim.queue, &sim.net) {
        if at > limit || sim.remaining == 0 {
            break;
        }
        sim.now_ns = at;
        sim.events += 1;
        if transfer {
            sim.transfer_done();
        } else if let Some((_, ev)) = sim.queue.pop() {
            sim.handle(ev);
        }
        if sim.events - last_report >= 500_000 {
            last_report = sim.events;
            progress(total - sim.remaining, total);
        }
    }
    sim.sample();
    progress(total - sim.remaining, total);
    sim.outcome()
}

struct Sim<'a> {
    sc: &'a Scenario,
    bt: BittorrentSpec,
    peers: Vec<Peer>,
    sites: Vec<Site>,
    net: Net,
    queue: Queue<Ev>,
    rng: ChaCha8Rng,
    now_ns: u64,
    events: u64,
    remaining: usize,
    samples: Vec<Sample>,
    /// Peers that announced, in order (the tracker's list).
    tracker: Vec<u32>,
    seeder_latency: f64,
    total_bytes: u64,
    piece_bytes: u64,
    block_bytes: u64,
    pieces: u32,
}

impl<'a> Sim<'a> {
    fn new(sc: &'a Scenario, chunks: &[ChunkRef]) -> Self {
        let bt = sc.bittorrent.clone();
        let total_bytes: u64 = chunks.iter().map(|c| u64::from(c.len)).sum::<u64>().max(1);
        let piece_bytes = u64::from(bt.piece_kib) * 1024;
        let block_bytes = u64::from(bt.block_kib) * 1024;
        let pieces = total_bytes.div_ceil(piece_bytes) as u32;
        let per_piece = piece_bytes.div_ceil(block_bytes) as u16;
        let last_len = total_bytes - u64::from(pieces - 1) * piece_bytes;
        let last_blocks = last_len.div_ceil(block_bytes) as u16;
        let mut rng = ChaCha8Rng::seed_from_u64(sc.seed);
        let mut net = Net::with_wire_overhead(sc.wire_overhead);
        let seeder = sc.seeder();
        let seeder_up = net.add_link(seeder.map_or(1.0, |s| s.upload_mbit) * MBIT);
        let unlimited = net.add_link(f64::MAX / 4.0);
        let new_peer = |site, name, picker, up_link, down_link| Peer {
            site,
            name,
            picker,
            links: Vec::new(),
            index: HashMap::new(),
            joined: false,
            announced: false,
            leech_round: 0,
            seed_round: 0,
            last_choke: f64::NEG_INFINITY,
            up_link,
            down_link,
            start: 0.0,
            finish: None,
            bytes_in_lan: 0,
            bytes_in_uplink: 0,
            bytes_out: 0,
            duplicates: 0,
            requests: 0,
        };
        let mut peers = vec![new_peer(
            None,
            "seeder".to_owned(),
            Picker::seed(pieces),
            seeder_up,
            unlimited,
        )];
        peers[0].finish = Some(0.0);
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
                    let up = net.add_link(group.lan_up_mbit * MBIT * factor);
                    let down = net.add_link(group.lan_down_mbit * MBIT * factor);
                    let picker =
                        Picker::new(pieces, per_piece, last_blocks, bt.random_first, bt.end_game);
                    devices.push(peers.len() as u32);
                    peers.push(new_peer(
                        Some(site),
                        format!("{name}/{d}"),
                        picker,
                        up,
                        down,
                    ));
                }
                sites.push(Site::build(name, group, &mut net, devices));
            }
        }
        let mut sim = Sim {
            sc,
            remaining: peers.len() - 1,
            bt,
            peers,
            sites,
            net,
            queue: Queue::default(),
            rng,
            now_ns: 0,
            events: 0,
            samples: Vec::new(),
            tracker: Vec::new(),
            seeder_latency: seeder.map_or(0.0, |s| s.latency_ms) / 1000.0,
            total_bytes,
            piece_bytes,
            block_bytes,
            pieces,
        };
        // Every client starts at once (the seeder, already running, is
        // connectable at once); devices connect after `connect_delay_s`,
        // in a random order (who is first to ask the seeder is chance).
        let delay = sim.bt.connect_delay_s;
        let mut order: Vec<u32> = (1..sim.peers.len() as u32).collect();
        choke::shuffle(&mut order, &mut || sim.rng.next_u64());
        sim.push(0.0, Ev::Join(0));
        for id in 0..sim.peers.len() as u32 {
            sim.push(0.0, Ev::Start(id));
        }
        for id in order {
            sim.push(delay, Ev::Join(id));
        }
        sim.push(0.0, Ev::Sample);
        sim
    }

    fn now(&self) -> f64 {
        self.now_ns as f64 / 1e9
    }

    fn push(&mut self, at: f64, ev: Ev) {
        self.queue.push(ns(at).max(self.now_ns), ev);
    }

    fn draw(&mut self) -> u64 {
        self.rng.next_u64()
    }

    fn block_len(&self, piece: u32, block: u16) -> u64 {
        let start = u64::from(piece) * self.piece_bytes;
        let piece_len = self.piece_bytes.min(self.total_bytes - start);
        let off = u64::from(block) * self.block_bytes;
        self.block_bytes.min(piece_len - off)
    }

    fn latency(&self, a: u32, b: u32) -> f64 {
        let (sa, sb) = (self.peers[a as usize].site, self.peers[b as usize].site);
        engine::latency(&self.sites, self.seeder_latency, sa, sb)
    }

    fn path(&self, from: u32, to: u32) -> Vec<LinkId> {
        let (f, t) = (&self.peers[from as usize], &self.peers[to as usize]);
        engine::path(&self.sites, (f.site, f.up_link), (t.site, t.down_link))
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Start(id) => {
                self.choke_round(id);
                let next = self.now() + self.bt.choke_interval_s;
                self.push(next, Ev::Choke(id));
            }
            Ev::Join(id) => self.join(id),
            Ev::Announce(id) => self.announce(id),
            Ev::Choke(id) => {
                let interval = self.bt.choke_interval_s;
                let last = self.peers[id as usize].last_choke;
                if self.now() - last >= interval - 1e-9 {
                    self.choke_round(id);
                }
                let next = self.peers[id as usize].last_choke + interval;
                self.push(next, Ev::Choke(id));
            }
            Ev::Request {
                to,
                from,
                piece,
                block,
                gen,
            } => self.request_arrives(to, from, piece, block, gen),
            Ev::Deliver {
                to,
                from,
                piece,
                block,
            } => self.deliver(to, from, piece, block),
            Ev::Sample => {
                self.sample();
                let next = self.now() + self.sc.sample_s;
                self.push(next, Ev::Sample);
            }
        }
    }

    /// Local peer discovery (the site's devices that connected) and the
    /// first announce.
    fn join(&mut self, id: u32) {
        let p = &mut self.peers[id as usize];
        p.joined = true;
        if let (true, Some(site)) = (self.bt.lpd, p.site) {
            let mates: Vec<u32> = self.sites[site as usize]
                .devices
                .iter()
                .copied()
                .filter(|&d| d != id && self.peers[d as usize].joined)
                .collect();
            for m in mates {
                self.connect(id, m);
            }
        }
        self.announce(id);
    }

    /// The tracker returns up to `tracker_peers` random peers among those
    /// that announced before; this peer connects while it has room.
    fn announce(&mut self, id: u32) {
        let want = self.bt.tracker_peers as usize;
        let mut others: Vec<u32> = self.tracker.iter().copied().filter(|&p| p != id).collect();
        // A partial Fisher-Yates shuffle: the first `want` are the list.
        let k = want.min(others.len());
        for i in 0..k {
            let j = i + (self.draw() % (others.len() - i) as u64) as usize;
            others.swap(i, j);
        }
        for &o in &others[..k] {
            self.connect(id, o);
        }
        if !self.peers[id as usize].announced {
            self.peers[id as usize].announced = true;
            self.tracker.push(id);
        }
        let next = self.now() + self.bt.announce_interval_s;
        self.push(next, Ev::Announce(id));
    }

    /// Connects `a` and `b` (if neither is at `max_peers`): handshake and
    /// bitfields at once, both choked, interest as the bitfields say.
    fn connect(&mut self, a: u32, b: u32) {
        let max = self.bt.max_peers as usize;
        let (pa, pb) = (&self.peers[a as usize], &self.peers[b as usize]);
        if a == b || pa.index.contains_key(&b) || pa.links.len() >= max || pb.links.len() >= max {
            return;
        }
        let (la, lb) = (pa.links.len() as u32, pb.links.len() as u32);
        let link = |peer, back| Link {
            peer,
            back,
            wanted: 0,
            am_choking: true,
            optimistic: false,
            last_unchoke: f64::NEG_INFINITY,
            last_block: f64::NEG_INFINITY,
            gen: 0,
            outstanding: Vec::new(),
            sent: Vec::new(),
            queue: VecDeque::new(),
            in_net: 0,
            got: Rate::default(),
            gave: Rate::default(),
        };
        for (x, y, back) in [(a, b, lb), (b, a, la)] {
            let held: Vec<u32> = self.peers[y as usize].picker.have.iter_ones().collect();
            let px = &mut self.peers[x as usize];
            let mut l = link(y, back);
            for &piece in &held {
                px.picker.peer_has(piece);
                if !px.picker.have.get(piece) {
                    l.wanted += 1;
                }
            }
            px.index.insert(y, px.links.len() as u32);
            px.links.push(l);
        }
        for (x, lx) in [(a, la), (b, lb)] {
            if self.peers[x as usize].links[lx as usize].wanted > 0 {
                self.became_interested(x, lx);
            }
        }
    }

    /// Peer `x` became interested in the peer of its link `lx`: that peer
    /// runs a choke round if it chokes `x` (as aria2 does on `INTERESTED`),
    /// or — if it already unchokes it — `x` requests.
    fn became_interested(&mut self, x: u32, lx: u32) {
        let l = &self.peers[x as usize].links[lx as usize];
        let (s, back) = (l.peer, l.back);
        if self.peers[s as usize].links[back as usize].am_choking {
            self.choke_round(s);
        } else {
            self.pump(x, lx);
        }
    }

    /// Whether the peer of `s`'s link `ls` is interested in `s`.
    fn interested_in(&self, s: u32, ls: u32) -> bool {
        let l = &self.peers[s as usize].links[ls as usize];
        self.peers[l.peer as usize].links[l.back as usize].wanted > 0
    }

    fn is_seed(&self, s: u32) -> bool {
        self.peers[s as usize].picker.is_complete()
    }

    fn unchoke(&mut self, s: u32, ls: u32) {
        let now = self.now();
        let l = &mut self.peers[s as usize].links[ls as usize];
        l.am_choking = false;
        l.last_unchoke = now;
        let (r, back) = (l.peer, l.back);
        self.pump(r, back);
    }

    /// `s` chokes the peer of its link `ls`: the requests it had not
    /// started are dropped, and the requester forgets them.
    fn choke(&mut self, s: u32, ls: u32) {
        let l = &mut self.peers[s as usize].links[ls as usize];
        l.am_choking = true;
        l.optimistic = false;
        l.gen += 1;
        l.queue.clear();
        let (r, back) = (l.peer, l.back);
        let rp = &mut self.peers[r as usize];
        let rl = &mut rp.links[back as usize];
        let mut k = 0;
        while k < rl.outstanding.len() {
            if rl.sent[k] {
                k += 1;
            } else {
                let (piece, block) = rl.outstanding.swap_remove(k);
                rl.sent.swap_remove(k);
                rp.picker.unrequest(piece, block);
            }
        }
        // The blocks it forgot can go to the peers still serving it.
        for i in 0..self.peers[r as usize].links.len() as u32 {
            if i != back {
                self.pump(r, i);
            }
        }
    }

    /// `r` requests blocks from the peer of its link `lr` while that peer
    /// unchokes it and fewer than `queue_depth` are outstanding.
    fn pump(&mut self, r: u32, lr: u32) {
        let depth = self.bt.queue_depth;
        let (s, back, wanted) = {
            let l = &self.peers[r as usize].links[lr as usize];
            (l.peer, l.back, l.wanted)
        };
        let gen = {
            let sl = &self.peers[s as usize].links[back as usize];
            if sl.am_choking || wanted == 0 {
                return;
            }
            sl.gen
        };
        let delay = self.latency(r, s);
        let at = self.now() + delay;
        while self.peers[r as usize].links[lr as usize].outstanding.len() < depth {
            let draw = self.draw();
            let (rp, sp) = two(&mut self.peers, r as usize, s as usize);
            let l = &mut rp.links[lr as usize];
            let Some((piece, block)) = rp.picker.pick(&sp.picker.have, &l.outstanding, draw) else {
                return;
            };
            l.outstanding.push((piece, block));
            l.sent.push(false);
            rp.requests += 1;
            self.push(
                at,
                Ev::Request {
                    to: s,
                    from: r,
                    piece,
                    block,
                    gen,
                },
            );
        }
    }

    fn request_arrives(&mut self, s: u32, r: u32, piece: u32, block: u16, gen: u32) {
        let Some(&ls) = self.peers[s as usize].index.get(&r) else {
            return;
        };
        let l = &mut self.peers[s as usize].links[ls as usize];
        if l.am_choking || l.gen != gen {
            return;
        }
        // Cancelled while travelling (end-game): no longer outstanding.
        let back = l.back;
        let still = self.peers[r as usize].links[back as usize]
            .outstanding
            .contains(&(piece, block));
        if still {
            self.peers[s as usize].links[ls as usize]
                .queue
                .push_back((piece, block));
            self.feed(s, ls);
        }
    }

    /// Hands `s`'s queued responses on link `ls` to the network, keeping
    /// [`IN_NET`] there.
    fn feed(&mut self, s: u32, ls: u32) {
        loop {
            let l = &mut self.peers[s as usize].links[ls as usize];
            if l.in_net >= IN_NET {
                return;
            }
            let Some((piece, block)) = l.queue.pop_front() else {
                return;
            };
            l.in_net += 1;
            let (r, back) = (l.peer, l.back);
            let rl = &mut self.peers[r as usize].links[back as usize];
            if let Some(k) = rl.outstanding.iter().position(|&o| o == (piece, block)) {
                rl.sent[k] = true;
            }
            let job = Job {
                pieces: 1,
                run: 1,
                token: (u64::from(piece) << 16) | u64::from(block),
                index: piece,
                bytes: self.block_len(piece, block),
                epoch: 0,
                deadline: f64::INFINITY,
            };
            let path = self.path(s, r);
            let now = self.now();
            self.net.enqueue(now, s, r, || path, job);
        }
    }

    fn transfer_done(&mut self) {
        let now = self.now();
        let Some((s, r, job)) = self.net.complete(now) else {
            return;
        };
        let (piece, block) = ((job.token >> 16) as u32, (job.token & 0xffff) as u16);
        if let Some(&ls) = self.peers[s as usize].index.get(&r) {
            let l = &mut self.peers[s as usize].links[ls as usize];
            l.in_net = l.in_net.saturating_sub(1);
            l.gave.add(now, job.bytes);
            self.peers[s as usize].bytes_out += job.bytes;
            self.feed(s, ls);
        }
        let at = now + self.latency(s, r);
        self.push(
            at,
            Ev::Deliver {
                to: r,
                from: s,
                piece,
                block,
            },
        );
    }

    fn deliver(&mut self, r: u32, s: u32, piece: u32, block: u16) {
        let len = self.block_len(piece, block);
        let cross = self.peers[r as usize].site != self.peers[s as usize].site;
        if let (true, Some(site)) = (cross, self.peers[r as usize].site) {
            self.sites[site as usize].bytes_in += len;
        }
        let rp = &mut self.peers[r as usize];
        if cross {
            rp.bytes_in_uplink += len;
        } else {
            rp.bytes_in_lan += len;
        }
        let Some(&lr) = rp.index.get(&s) else {
            return;
        };
        let now = self.now_ns as f64 / 1e9;
        let l = &mut rp.links[lr as usize];
        l.got.add(now, len);
        l.last_block = now;
        if let Some(k) = l.outstanding.iter().position(|&o| o == (piece, block)) {
            l.outstanding.swap_remove(k);
            l.sent.swap_remove(k);
        }
        match rp.picker.received(piece, block) {
            Received::Duplicate => rp.duplicates += 1,
            got => {
                self.cancel_elsewhere(r, lr, piece, block);
                if got == Received::Piece {
                    self.gained(r, piece);
                }
            }
        }
        self.pump(r, lr);
    }

    /// End-game: the block came; requests for it to other peers that have
    /// not started sending it are cancelled.
    fn cancel_elsewhere(&mut self, r: u32, except: u32, piece: u32, block: u16) {
        for i in 0..self.peers[r as usize].links.len() {
            if i as u32 == except {
                continue;
            }
            let l = &mut self.peers[r as usize].links[i];
            let Some(k) = l.outstanding.iter().position(|&o| o == (piece, block)) else {
                continue;
            };
            if l.sent[k] {
                continue;
            }
            l.outstanding.swap_remove(k);
            l.sent.swap_remove(k);
            let (s, back) = (l.peer, l.back);
            let q = &mut self.peers[s as usize].links[back as usize].queue;
            if let Some(j) = q.iter().position(|&o| o == (piece, block)) {
                q.remove(j);
            }
            self.pump(r, i as u32);
        }
    }

    /// `r` completed `piece`: `HAVE` to every peer (at once); interest
    /// changes both ways; done when it was the last.
    fn gained(&mut self, r: u32, piece: u32) {
        let links: Vec<(u32, u32)> = self.peers[r as usize]
            .links
            .iter()
            .map(|l| (l.peer, l.back))
            .collect();
        for (i, (q, back)) in links.into_iter().enumerate() {
            let qp = &mut self.peers[q as usize];
            qp.picker.peer_has(piece);
            if !qp.picker.have.get(piece) {
                let ql = &mut qp.links[back as usize];
                ql.wanted += 1;
                if ql.wanted == 1 {
                    self.became_interested(q, back);
                }
            }
            if self.peers[q as usize].picker.have.get(piece) {
                let l = &mut self.peers[r as usize].links[i];
                l.wanted = l.wanted.saturating_sub(1);
                if l.wanted == 0 {
                    // Not interested any more: a peer that unchokes it
                    // runs a choke round (aria2 on `NOT_INTERESTED`).
                    if !self.peers[q as usize].links[back as usize].am_choking {
                        self.choke_round(q);
                    }
                }
            }
        }
        if self.peers[r as usize].picker.is_complete() {
            self.peers[r as usize].finish = Some(self.now());
            self.remaining -= 1;
        }
    }

    /// A choke round of `s` (aria2's, see [`choke`]): who it unchokes, by
    /// the leecher's or the seeder's rule.
    fn choke_round(&mut self, s: u32) {
        let now = self.now();
        let seed = self.is_seed(s);
        let n = self.peers[s as usize].links.len() as u32;
        let mut entries = Vec::with_capacity(n as usize);
        for i in 0..n {
            let interested = self.interested_in(s, i);
            let l = &mut self.peers[s as usize].links[i as usize];
            let rate = if seed {
                l.gave.get(now)
            } else {
                l.got.get(now)
            };
            entries.push(Entry {
                link: i,
                interested,
                am_choking: l.am_choking,
                rate,
                recent_block: now - l.last_block < RECENT_BLOCK_S,
                // aria2's own send queue: empty while the socket's buffer
                // takes a whole pipeline (see the README).
                outstanding: false,
                recent_unchoke: (now - l.last_unchoke < RECENT_UNCHOKE_S).then_some(l.last_unchoke),
                optimistic: l.optimistic,
                choke: false,
            });
        }
        let slots = self.bt.unchoke_slots;
        let rng = &mut self.rng;
        let mut draw = || rng.next_u64();
        let p = &mut self.peers[s as usize];
        p.last_choke = now;
        if seed {
            choke::seeder(&mut entries, slots, p.seed_round, &mut draw);
            p.seed_round = (p.seed_round + 1) % 3;
        } else {
            choke::leecher(&mut entries, slots, p.leech_round, &mut draw);
            p.leech_round = (p.leech_round + 1) % 3;
        }
        let keep = |e: &Entry| !e.choke || e.optimistic;
        for e in &entries {
            if !keep(e) && !self.peers[s as usize].links[e.link as usize].am_choking {
                self.choke(s, e.link);
            }
        }
        for e in &entries {
            self.peers[s as usize].links[e.link as usize].optimistic = e.optimistic;
        }
        for e in &entries {
            if keep(e) && self.peers[s as usize].links[e.link as usize].am_choking {
                self.unchoke(s, e.link);
            }
        }
    }

    fn sample(&mut self) {
        let now = self.now();
        let peers = &self.peers;
        let finished = |d: u32| peers[d as usize].finish.is_some();
        let seeder_out = peers[0].bytes_out;
        crate::engine::sample_sites(&mut self.samples, now, &self.sites, seeder_out, finished);
    }

    fn outcome(self) -> Outcome {
        let end = self.now();
        let nodes = self
            .peers
            .into_iter()
            .map(|p| {
                Reported::reported(
                    p.site,
                    p.name,
                    p.start,
                    p.finish,
                    [p.bytes_in_lan, p.bytes_in_uplink, p.bytes_out],
                    p.requests,
                    p.duplicates,
                )
            })
            .collect();
        let sites = self.sites;
        Outcome {
            origin: None,
            seeder_admission: None,
            nodes,
            sites,
            samples: self.samples,
            release_bytes: self.total_bytes,
            chunks: self.pieces as usize,
            end,
            events: self.events,
            rate_updates: self.net.updates,
        }
    }
}

/// Two distinct elements of `v`, both mutable.
fn two<T>(v: &mut [T], a: usize, b: usize) -> (&mut T, &mut T) {
    assert_ne!(a, b, "two distinct peers");
    if a < b {
        let (x, y) = v.split_at_mut(b);
        (&mut x[a], &mut y[0])
    } else {
        let (x, y) = v.split_at_mut(a);
        (&mut y[0], &mut x[b])
    }
}

/// A uniform draw in `[0, 1)`.
fn unit(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}
