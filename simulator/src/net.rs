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
    /// How many of those pieces this job carries, one after the other (a
    /// *run*: 1 for a whole chunk or a single piece). Nothing watches the
    /// pieces of a run land one by one until [`Net::split`] is asked to.
    pub run: u32,
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

impl Conn {
    /// When the connection next needs the engine: its head job's last
    /// byte leaving, or, for a run still moving then, its stream's reset
    /// ([`Net::reset_run`]).
    fn due(&self, now: f64) -> u64 {
        let finish = now + self.remaining / self.rate;
        match self.queue.front() {
            Some(j) if j.run > 1 && j.deadline < finish => to_ns(j.deadline.max(now)),
            _ => to_ns(finish),
        }
    }
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
    /// Bytes that left a sender in responses cut off mid-way by an end
    /// going down `(sender, bytes)`; the engine drains it.
    pub cut: Vec<(u32, u64)>,
    /// Framing as a share of the payload (`Scenario::wire_overhead`).
    overhead: f64,
}

/// Seconds to the engine's integer nanoseconds.
pub fn to_ns(secs: f64) -> u64 {
    (secs.max(0.0) * 1e9).round() as u64
}

impl Net {
    /// A network whose links spend `overhead` (a share of the payload) on
    /// framing: a link's payload capacity is its rate / (1 + `overhead`).
    pub fn with_wire_overhead(overhead: f64) -> Self {
        Net {
            overhead,
            ..Net::default()
        }
    }

    /// Chunk bytes a second over a link of `bytes_per_s` on the wire.
    fn payload(&self, bytes_per_s: f64) -> f64 {
        bytes_per_s / (1.0 + self.overhead)
    }

    /// Adds a link of `bytes_per_s` on the wire.
    pub fn add_link(&mut self, bytes_per_s: f64) -> LinkId {
        self.links.push(Link {
            cap: self.payload(bytes_per_s),
            active: Vec::new(),
            share_seen: 0.0,
        });
        (self.links.len() - 1) as LinkId
    }

    /// Sets link `link`'s capacity to `bytes_per_s` at `now` (a trace
    /// step): the rates of the connections on it are recomputed, and what
    /// they moved so far at the old rates is kept.
    pub fn set_capacity(&mut self, now: f64, link: LinkId, bytes_per_s: f64) {
        self.links[link as usize].cap = self.payload(bytes_per_s);
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
            let at = c.due(now);
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

    /// Splits the runs of response `token` from `from` to `to` into single
    /// pieces of `piece_len` bytes, as if they had been queued piece by
    /// piece all along: the moving one at the piece now leaving, which
    /// keeps its place and its finish time. Returns when each piece of the
    /// moving run that has already left did (earlier than the last rate
    /// change: that change's time, which is the latest it can have been).
    pub fn split(&mut self, now: f64, from: u32, to: u32, token: u64, piece_len: u64) -> Vec<f64> {
        let mut left_at = Vec::new();
        let Some(&id) = self.by_pair.get(&(from, to)) else {
            return left_at;
        };
        let c = &mut self.conns[id as usize];
        if !c.active || piece_len == 0 || !c.queue.iter().any(|j| j.token == token && j.run > 1) {
            return left_at;
        }
        let mut head_moves = false;
        let mut queue = VecDeque::with_capacity(c.queue.len());
        for (i, job) in std::mem::take(&mut c.queue).into_iter().enumerate() {
            if job.token != token || job.run <= 1 {
                queue.push_back(job);
                continue;
            }
            let piece = |k: u32| Job {
                bytes: piece_len.min(job.bytes - u64::from(k) * piece_len),
                run: 1,
                ..job
            };
            let mut first = 0;
            if i == 0 {
                // The connection's head: moving since `c.last` at `c.rate`.
                let moved_last = job.bytes as f64 - c.remaining;
                let moved = job.bytes as f64 - (c.remaining - c.rate * (now - c.last)).max(0.0);
                while first + 1 < job.run {
                    let edge = (u64::from(first + 1) * piece_len) as f64;
                    if edge > moved {
                        break;
                    }
                    let at = if edge >= moved_last && c.rate > 0.0 {
                        c.last + (edge - moved_last) / c.rate
                    } else {
                        c.last
                    };
                    left_at.push(at.min(now));
                    first += 1;
                }
                let head = piece(first);
                let end = (u64::from(first) * piece_len + head.bytes) as f64;
                c.remaining = (end - moved).max(0.0);
                c.last = now;
                head_moves = true;
            }
            queue.extend((first..job.run).map(piece));
        }
        c.queue = queue;
        if head_moves {
            let at = c.due(now);
            self.timers.set(id, at);
        }
        left_at
    }

    /// The stream of a run at the head of the connection due now
    /// ([`Net::next_finish`]) was reset while the run still moves: the run
    /// is split ([`Net::split`], piece length `piece_len`) so that it stops
    /// at the piece now leaving, as pieces sent one by one would. Returns
    /// the connection's ends, the response's token and when the pieces of
    /// the run that already left did; `None` if what is due is a job's end.
    pub fn reset_run(&mut self, now: f64, piece_len: u64) -> Option<(u32, u32, u64, Vec<f64>)> {
        let (_, id) = self.timers.peek()?;
        let c = &self.conns[id as usize];
        let head = c.queue.front().filter(|j| j.run > 1 && j.deadline <= now)?;
        let (from, to, token) = (c.from, c.to, head.token);
        Some((from, to, token, self.split(now, from, to, token, piece_len)))
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
            if let Some(head) = c.queue.front() {
                let left = (c.remaining - c.rate * (now - c.last)).max(0.0);
                let moved = (head.bytes as f64 - left).max(0.0) as u64;
                if moved > 0 {
                    self.cut.push((from, moved));
                }
            }
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
            let at = c.due(now);
            self.timers.set(id, at);
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
            run: 1,
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
    fn framing_takes_its_share_of_a_links_rate() {
        // 25 % framing: a 10 B/s link moves 8 payload bytes a second, also
        // after a trace step to 20 B/s.
        let mut net = Net::with_wire_overhead(0.25);
        let l = net.add_link(10.0);
        net.enqueue(0.0, 1, 2, || vec![l], job(16));
        assert_eq!(net.next_finish(), Some(to_ns(2.0)));
        net.set_capacity(1.0, l, 20.0);
        assert_eq!(net.next_finish(), Some(to_ns(1.5)));
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
        // The second job had moved for a second at 10 B/s when its end left.
        assert_eq!(net.cut, vec![(1, 10)]);
        assert_eq!(net.next_finish(), None);
    }

    #[test]
    fn a_run_split_mid_way_lands_its_pieces_as_if_sent_one_by_one() {
        let mut net = Net::default();
        let l = net.add_link(100.0);
        let other = net.add_link(1000.0);
        // Four pieces of 100 bytes (the last 50) as one run, another
        // response's job queued behind it.
        let run = Job {
            token: 7,
            pieces: 5,
            run: 4,
            ..job(350)
        };
        net.enqueue(0.0, 1, 2, || vec![l], run);
        net.enqueue(0.0, 1, 2, || vec![l], job(10));
        // Another connection halves the rate at 0.5 s: 50 bytes moved, then
        // 50 B/s.
        net.enqueue(0.5, 3, 4, || vec![l, other], job(1_000));
        assert_eq!(net.next_finish(), Some(to_ns(0.5 + 300.0 / 50.0)));
        // Nothing to split for another token, or between other peers.
        assert!(net.split(2.0, 1, 2, 8, 100).is_empty());
        assert!(net.split(2.0, 2, 1, 7, 100).is_empty());
        // At 3.0 s: 50 + 2.5 * 50 = 175 bytes moved; the first piece left
        // at 1.5 s (after the rate change), the second is leaving.
        let left = net.split(3.0, 1, 2, 7, 100);
        assert_eq!(left, vec![1.5]);
        assert_eq!(net.next_finish(), Some(to_ns(3.5)));
        let (_, _, j) = net.complete(3.5).expect("second piece");
        assert_eq!((j.token, j.bytes, j.run), (7, 100, 1));
        assert_eq!(net.next_finish(), Some(to_ns(5.5)));
        let (_, _, j) = net.complete(5.5).expect("third piece");
        assert_eq!((j.bytes, j.run), (100, 1));
        let (_, _, j) = net.complete(6.5).expect("the short last piece");
        assert_eq!((j.bytes, j.run), (50, 1));
        // The run's end time is unchanged; the job behind it still follows.
        assert_eq!(net.next_finish(), Some(to_ns(6.5 + 10.0 / 50.0)));
        let (_, _, j) = net.complete(6.7).expect("the job behind");
        assert_eq!((j.token, j.bytes), (0, 10));
        // A split finds no run any more.
        assert!(net.split(7.0, 1, 2, 7, 100).is_empty());
    }

    #[test]
    fn a_run_whose_stream_is_reset_mid_way_stops_at_the_piece_leaving() {
        let mut net = Net::default();
        let l = net.add_link(100.0);
        let run = Job {
            token: 7,
            pieces: 4,
            run: 4,
            deadline: 2.5,
            ..job(400)
        };
        net.enqueue(0.0, 1, 2, || vec![l], run);
        // Due at the reset, not at the run's end (4.0 s).
        assert_eq!(net.next_finish(), Some(to_ns(2.5)));
        assert_eq!(net.reset_run(2.4, 100), None, "not yet");
        let (from, to, token, left) = net.reset_run(2.5, 100).expect("reset");
        assert_eq!((from, to, token), (1, 2, 7));
        assert_eq!(left, vec![1.0, 2.0]);
        // The third piece ends at 3.0 s; nothing is due before.
        assert_eq!(net.next_finish(), Some(to_ns(3.0)));
        assert_eq!(net.reset_run(3.0, 100), None);
        let (_, _, j) = net.complete(3.0).expect("third piece");
        assert_eq!((j.bytes, j.run), (100, 1));
        // The last piece was queued past its reset: dropped, never moved.
        assert_eq!(net.dropped.len(), 1);
        assert_eq!(net.next_finish(), None);
    }

    #[test]
    fn a_queued_run_splits_into_pieces_in_its_place() {
        let mut net = Net::default();
        let l = net.add_link(100.0);
        net.enqueue(0.0, 1, 2, || vec![l], job(100));
        let run = Job {
            token: 7,
            pieces: 3,
            run: 3,
            ..job(250)
        };
        net.enqueue(0.0, 1, 2, || vec![l], run);
        assert!(
            net.split(0.5, 1, 2, 7, 100).is_empty(),
            "nothing of it left yet"
        );
        assert_eq!(net.next_finish(), Some(to_ns(1.0)));
        let sizes: Vec<u64> = std::iter::from_fn(|| {
            let at = net.next_finish()? as f64 / 1e9;
            net.complete(at).map(|(_, _, j)| j.bytes)
        })
        .collect();
        assert_eq!(sizes, vec![100, 100, 100, 50]);
    }
}
