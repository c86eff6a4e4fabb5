//! The flow-level network model.
//!
//! Every (sender, receiver) pair with data to move is one *connection*
//! (as a libp2p connection multiplexes all requests between two peers); it
//! carries its queued chunk responses one after the other. A connection
//! crosses the links on its path — the sender's upload, the receiver's
//! download, and where the pair is on different sites the sender site's
//! uplink (up) and the receiver site's uplink (down); the seeder's upload.
//! Rates approximate max-min fairness: a connection starts at the fair
//! share of its tightest link, then a few rounds of progressive filling
//! hand the share it cannot use (held back on another link) to the others
//! on the link. Rates are recomputed, for the connections on the links
//! concerned, whenever a connection starts or goes idle (see
//! `simulator/README.md` for what this leaves out).

use std::collections::{HashMap, VecDeque};

use crate::queue::Timers;

/// A link id.
pub type LinkId = u32;
/// A connection id.
pub type ConnId = u32;

#[derive(Debug)]
struct Link {
    /// Bytes per second.
    cap: f64,
    active: Vec<ConnId>,
    /// The fair share its connections' rates were last computed with
    /// (links of more than [`REFINE_MAX`] connections only).
    share_seen: f64,
}

/// One chunk response waiting on (or moving over) a connection.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Job {
    /// The sender's admission token for it.
    pub token: u64,
    pub index: u32,
    pub bytes: u64,
    /// Incarnation of the requester (a restarted node's old requests are void).
    pub epoch: u32,
    /// When the requester's stream is reset (libp2p's request timeout):
    /// a job still queued then is dropped, one still moving is not delivered.
    pub deadline: f64,
    /// How many pieces its response is sent in (1: sent whole; see
    /// `engine::pieces`).
    pub pieces: u32,
}

#[derive(Debug)]
struct Conn {
    from: u32,
    to: u32,
    path: Path,
    queue: VecDeque<Job>,
    rate: f64,
    last: f64,
    remaining: f64,
    active: bool,
}

/// The links a connection crosses (at most four: sender's upload, sender
/// site's uplink, receiver site's downlink, receiver's download), inline.
#[derive(Clone, Copy, Debug)]
struct Path {
    links: [LinkId; 4],
    len: u8,
}

impl Path {
    fn new(links: &[LinkId]) -> Self {
        assert!(links.len() <= 4, "a path crosses at most four links");
        let mut p = Path {
            links: [0; 4],
            len: links.len() as u8,
        };
        p.links[..links.len()].copy_from_slice(links);
        p
    }

    fn links(&self) -> &[LinkId] {
        &self.links[..self.len as usize]
    }
}

/// The links and connections.
#[derive(Debug, Default)]
pub struct Net {
    links: Vec<Link>,
    conns: Vec<Conn>,
    by_pair: HashMap<(u32, u32), ConnId>,
    by_node: HashMap<u32, Vec<ConnId>>,
    /// Rate recomputations done (for the events/s report).
    pub updates: u64,
    scratch: Scratch,
    /// Per active connection: when its head job's last byte leaves.
    timers: Timers,
    /// Jobs dropped unsent because their stream was reset while they
    /// waited `(sender, requester, job)`; the engine drains it.
    pub dropped: Vec<(u32, u32, Job)>,
}

/// Seconds to the engine's integer nanoseconds.
pub fn to_ns(secs: f64) -> u64 {
    (secs.max(0.0) * 1e9).round() as u64
}

impl Net {
    /// Adds a link of `bytes_per_s`.
    pub fn add_link(&mut self, bytes_per_s: f64) -> LinkId {
        self.links.push(Link {
            cap: bytes_per_s,
            active: Vec::new(),
            share_seen: 0.0,
        });
        (self.links.len() - 1) as LinkId
    }

    /// Sets link `link`'s capacity to `bytes_per_s` at `now` (a trace
    /// step): the rates of the connections on it are recomputed, and what
    /// they moved so far at the old rates is kept.
    pub fn set_capacity(&mut self, now: f64, link: LinkId, bytes_per_s: f64) {
        self.links[link as usize].cap = bytes_per_s;
        self.recompute(now, &[link], &[]);
    }

    /// Queues `job` from `from` to `to` over `path` (used when the pair
    /// first talks).
    pub fn enqueue(
        &mut self,
        now: f64,
        from: u32,
        to: u32,
        path: impl FnOnce() -> Vec<LinkId>,
        job: Job,
    ) {
        let id = match self.by_pair.get(&(from, to)) {
            Some(&id) => id,
            None => {
                let id = self.conns.len() as ConnId;
                self.conns.push(Conn {
                    from,
                    to,
                    path: Path::new(&path()),
                    queue: VecDeque::new(),
                    rate: 0.0,
                    last: now,
                    remaining: 0.0,
                    active: false,
                });
                self.by_pair.insert((from, to), id);
                self.by_node.entry(from).or_default().push(id);
                self.by_node.entry(to).or_default().push(id);
                id
            }
        };
        let c = &mut self.conns[id as usize];
        c.queue.push_back(job);
        if c.active {
            return;
        }
        c.active = true;
        c.remaining = job.bytes as f64;
        c.last = now;
        // A fresh start: no rate yet, so recompute sets its deadline.
        c.rate = 0.0;
        let path = c.path;
        for &l in path.links() {
            self.links[l as usize].active.push(id);
        }
        self.recompute(now, path.links(), &[id])
    }

    /// When the next head job finishes (engine nanoseconds).
    pub fn next_finish(&self) -> Option<u64> {
        self.timers.peek().map(|(at, _)| at)
    }

    /// Completes the head job due at [`Net::next_finish`]: returns it and
    /// its endpoints. The connection moves on to its next job, or goes idle.
    pub fn complete(&mut self, now: f64) -> Option<(u32, u32, Job)> {
        let (_, id) = self.timers.peek()?;
        let c = &mut self.conns[id as usize];
        let Some(job) = c.queue.pop_front() else {
            // Not reached: an active connection has a head job.
            let path = self.deactivate(id);
            self.recompute(now, path.links(), &[]);
            return None;
        };
        let (from, to) = (c.from, c.to);
        // Jobs whose streams were reset while they waited never move.
        while let Some(j) = c.queue.front().copied().filter(|j| j.deadline < now) {
            c.queue.pop_front();
            self.dropped.push((from, to, j));
        }
        if let Some(next) = c.queue.front() {
            c.remaining = next.bytes as f64;
            c.last = now;
            let at = to_ns(now + c.remaining / c.rate);
            self.timers.set(id, at);
            return Some((from, to, job));
        }
        let path = self.deactivate(id);
        self.recompute(now, path.links(), &[]);
        Some((from, to, job))
    }

    /// Bytes of the response for `index` from `from` to `to` that have
    /// arrived by `now` (only the head of a connection moves).
    pub fn progress(&self, now: f64, from: u32, to: u32, index: u32) -> u64 {
        let Some(&id) = self.by_pair.get(&(from, to)) else {
            return 0;
        };
        let c = &self.conns[id as usize];
        match c.queue.front() {
            Some(j) if c.active && j.index == index => {
                let left = (c.remaining - c.rate * (now - c.last)).max(0.0);
                (j.bytes as f64 - left).max(0.0) as u64
            }
            _ => 0,
        }
    }

    fn deactivate(&mut self, id: ConnId) -> Path {
        self.timers.remove(id);
        let c = &mut self.conns[id as usize];
        c.active = false;
        // Storage freed, not kept: most connections go idle for good.
        c.queue = VecDeque::new();
        let path = c.path;
        for &l in path.links() {
            let active = &mut self.links[l as usize].active;
            if let Some(pos) = active.iter().position(|&x| x == id) {
                active.swap_remove(pos);
            }
        }
        path
    }

    /// A node went down: its connections stop; the jobs they carried go to
    /// [`Net::dropped`]. Returns how many.
    pub fn drop_node(&mut self, now: f64, node: u32) -> usize {
        let ids = self.by_node.get(&node).cloned().unwrap_or_default();
        let before = self.dropped.len();
        let mut touched = Vec::new();
        for id in ids {
            let c = &self.conns[id as usize];
            if !c.active {
                continue;
            }
            let (from, to) = (c.from, c.to);
            self.dropped.extend(c.queue.iter().map(|j| (from, to, *j)));
            touched.extend_from_slice(self.deactivate(id).links());
        }
        touched.sort_unstable();
        touched.dedup();
        self.recompute(now, &touched, &[]);
        self.dropped.len() - before
    }

    /// New rates for the connections `own` (just started) and the active
    /// connections on `links` (and, through links of at most
    /// [`REFINE_MAX`] connections, their neighbours).
    ///
    /// Each connection starts at the fair share of its tightest link; then
    /// [`PASSES`] rounds of progressive filling hand the share a connection
    /// cannot use (it is held back elsewhere) to the others on the link —
    /// an approximation of max-min fairness that stays local. A link with
    /// more than [`REFINE_MAX`] connections keeps plain fair shares, and its
    /// connections are revisited only once its share has moved by more than
    /// [`BIG_LINK_SLACK`] since they last were.
    fn recompute(&mut self, now: f64, links: &[LinkId], own: &[ConnId]) {
        let mut s = std::mem::take(&mut self.scratch);
        s.begin(self.links.len(), self.conns.len());
        for &c in own {
            s.add_conn(c);
        }
        for &l in links {
            let link = &mut self.links[l as usize];
            let n = link.active.len();
            if n > REFINE_MAX {
                let fair = link.cap / n as f64;
                // Only a share that grew a little may be left alone: one that
                // shrank would let the link carry more than its capacity.
                if fair >= link.share_seen && fair - link.share_seen <= BIG_LINK_SLACK * fair {
                    continue;
                }
                link.share_seen = fair;
            }
            for &c in &link.active {
                s.add_conn(c);
            }
        }
        // Neighbours are pulled in only for small changes: an event on a
        // link with thousands of connections stays at plain fair shares.
        let refine = s.affected.len() <= REFINE_MAX;
        if refine {
            for k in 0..s.affected.len() {
                let c = s.affected[k];
                for &l in self.conns[c as usize].path.links() {
                    let link = &self.links[l as usize];
                    if link.active.len() <= REFINE_MAX && s.pull_link(l) {
                        for &c2 in &link.active {
                            s.add_conn(c2);
                        }
                    }
                }
            }
        }
        let fair = |link: &Link| link.cap / link.active.len().max(1) as f64;
        for k in 0..s.affected.len() {
            let c = s.affected[k];
            for &l in self.conns[c as usize].path.links() {
                s.add_link(l, fair(&self.links[l as usize]));
            }
        }
        let rate_of = |s: &Scratch, conns: &[Conn], c: ConnId| -> f64 {
            conns[c as usize]
                .path
                .links()
                .iter()
                .map(|&l| s.share[l as usize])
                .fold(f64::INFINITY, f64::min)
        };
        s.rate.clear();
        for k in 0..s.affected.len() {
            let r = rate_of(&s, &self.conns, s.affected[k]);
            s.rate.push(r);
        }
        for _ in 0..if refine { PASSES } else { 0 } {
            for k in 0..s.links.len() {
                let l = s.links[k];
                let link = &self.links[l as usize];
                let n = link.active.len();
                if n > REFINE_MAX {
                    continue;
                }
                let f = fair(link);
                let (mut held, mut held_n) = (0.0, 0usize);
                for &c in &link.active {
                    let r = s.rate_of(c).unwrap_or(self.conns[c as usize].rate);
                    if r < f * (1.0 - 1e-9) {
                        held += r;
                        held_n += 1;
                    }
                }
                let free = n - held_n;
                s.share[l as usize] = if free == 0 {
                    f
                } else {
                    ((link.cap - held) / free as f64).max(f)
                };
            }
            for k in 0..s.affected.len() {
                s.rate[k] = rate_of(&s, &self.conns, s.affected[k]);
            }
        }
        for (k, &id) in s.affected.iter().enumerate() {
            let rate = s.rate[k];
            let c = &mut self.conns[id as usize];
            if !c.active {
                continue;
            }
            if c.rate > 0.0 {
                c.remaining = (c.remaining - c.rate * (now - c.last)).max(0.0);
            }
            c.last = now;
            // A connection may keep a rate a little under its new one, never over.
            if c.rate > 0.0 && c.rate <= rate && rate - c.rate <= RATE_SLACK * rate {
                continue;
            }
            self.updates += 1;
            c.rate = rate;
            self.timers.set(id, to_ns(now + c.remaining / rate));
        }
        self.scratch = s;
    }
}

/// Reused buffers of [`Net::recompute`]: the connections and links one
/// recomputation touches, marked with a per-call stamp (no hashing, no
/// sorting, no allocation once warm).
#[derive(Debug, Default)]
struct Scratch {
    stamp: u32,
    affected: Vec<ConnId>,
    rate: Vec<f64>,
    /// Per connection: stamp when in `affected`, and its place there.
    conn_mark: Vec<u32>,
    conn_pos: Vec<u32>,
    /// Links on the affected connections' paths, and per link its share.
    links: Vec<LinkId>,
    link_mark: Vec<u32>,
    link_pulled: Vec<u32>,
    share: Vec<f64>,
}

impl Scratch {
    fn begin(&mut self, links: usize, conns: usize) {
        self.stamp = self.stamp.wrapping_add(1);
        if self.stamp == 0 {
            self.conn_mark.iter_mut().for_each(|m| *m = 0);
            self.link_mark.iter_mut().for_each(|m| *m = 0);
            self.link_pulled.iter_mut().for_each(|m| *m = 0);
            self.stamp = 1;
        }
        self.conn_mark.resize(conns, 0);
        self.conn_pos.resize(conns, 0);
        self.link_mark.resize(links, 0);
        self.link_pulled.resize(links, 0);
        self.share.resize(links, 0.0);
        self.affected.clear();
        self.links.clear();
    }

    fn add_conn(&mut self, c: ConnId) {
        if self.conn_mark[c as usize] != self.stamp {
            self.conn_mark[c as usize] = self.stamp;
            self.conn_pos[c as usize] = self.affected.len() as u32;
            self.affected.push(c);
        }
    }

    /// Whether `l`'s connections are still to be pulled in (marks it pulled).
    fn pull_link(&mut self, l: LinkId) -> bool {
        let fresh = self.link_pulled[l as usize] != self.stamp;
        self.link_pulled[l as usize] = self.stamp;
        fresh
    }

    fn add_link(&mut self, l: LinkId, fair: f64) {
        if self.link_mark[l as usize] != self.stamp {
            self.link_mark[l as usize] = self.stamp;
            self.share[l as usize] = fair;
            self.links.push(l);
        }
    }

    /// The rate being computed for `c`, if it is affected.
    fn rate_of(&self, c: ConnId) -> Option<f64> {
        (self.conn_mark[c as usize] == self.stamp)
            .then(|| self.rate[self.conn_pos[c as usize] as usize])
    }
}

/// Links with more connections than this keep plain fair shares (and do
/// not pull their connections into a recomputation): bounded work per event.
pub const REFINE_MAX: usize = 8;
/// A connection keeps its rate while the recomputed one is at most this
/// much (relative) above it: tiny ripples through progressive filling would
/// otherwise re-time every finish event on the site. Never kept above it.
pub const RATE_SLACK: f64 = 0.02;
/// How far (relative) a big link's fair share may grow before its
/// connections' rates are recomputed (a shrinking share always is).
pub const BIG_LINK_SLACK: f64 = 0.05;
/// Rounds of progressive filling per recomputation.
pub const PASSES: usize = 3;

#[cfg(test)]
mod tests {
    use super::*;

    fn job(bytes: u64) -> Job {
        Job {
            pieces: 1,
            token: 0,
            index: 0,
            bytes,
            epoch: 0,
            deadline: f64::INFINITY,
        }
    }

    #[test]
    fn two_connections_share_a_link_then_one_speeds_up() {
        let mut net = Net::default();
        let shared = net.add_link(100.0);
        let a = net.add_link(1000.0);
        let b = net.add_link(1000.0);
        net.enqueue(0.0, 1, 2, || vec![shared, a], job(100));
        assert_eq!(net.next_finish(), Some(to_ns(1.0)));
        // Both now at 50 B/s: the first has 50 bytes left (done at 1.5 s),
        // the second 100.
        net.enqueue(0.5, 3, 4, || vec![shared, b], job(100));
        assert_eq!(net.next_finish(), Some(to_ns(1.5)));
        let (from, to, _) = net.complete(1.5).expect("first done");
        assert_eq!((from, to), (1, 2));
        // Alone again: 100 - 50 bytes left at 100 B/s.
        assert_eq!(net.next_finish(), Some(to_ns(2.0)));
        assert_eq!(net.complete(2.0).map(|d| (d.0, d.1)), Some((3, 4)));
        assert_eq!(net.next_finish(), None);
    }

    #[test]
    fn queued_jobs_follow_each_other() {
        let mut net = Net::default();
        let l = net.add_link(10.0);
        net.enqueue(0.0, 1, 2, || vec![l], job(10));
        net.enqueue(0.0, 1, 2, || vec![l], job(20));
        assert_eq!(net.next_finish(), Some(to_ns(1.0)));
        let (_, _, j) = net.complete(1.0).expect("first job");
        assert_eq!(j.bytes, 10);
        assert_eq!(net.next_finish(), Some(to_ns(3.0)));
        assert_eq!(net.drop_node(2.0, 2), 1);
        assert_eq!(net.dropped.len(), 1);
        assert_eq!(net.next_finish(), None);
    }
}
