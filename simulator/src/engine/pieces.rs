//! Passing a chunk on piece by piece (`piece_kib`): a response is handed
//! to the network a piece at a time, each piece as soon as its sender has
//! it, so a device that is still receiving a chunk can already pass its
//! first pieces on. A device tells of a chunk once its first piece is in
//! ([`pollen_core::node::Node::handle_partial`]); a response that breaks
//! off breaks off what was being passed on of it too.
//!
//! Pieces nobody watches move as one *run* (a single job of the network
//! model): the first piece alone (it makes the chunk one the receiver can
//! pass on), then the rest together. Once the receiver passes the chunk on
//! (a response waits for its pieces) or the stream is reset mid-run, the
//! run is split where it stands ([`crate::net::Net::split`]) and its pieces
//! land one by one from there, at the same times as if they had been sent
//! so all along: a piece's events are paid for only where they change
//! something.

use std::time::Duration;

use super::{Ev, Sim};
use crate::net::Job;

/// A response sent piece by piece.
#[derive(Debug)]
pub(super) struct Pieced {
    pub(super) from: u32,
    pub(super) to: u32,
    pub(super) index: u32,
    pub(super) epoch: u32,
    pub(super) deadline: f64,
    pub(super) pieces: u32,
    /// Pieces handed to the network so far, and arrived.
    pub(super) queued: u32,
    pub(super) done: u32,
}

/// A chunk a node receives piece by piece: the response it comes by, the
/// pieces in, and the responses of its own waiting for more of them.
#[derive(Debug)]
pub(super) struct Partial {
    pub(super) token: u64,
    pub(super) pieces: u32,
    pub(super) waiters: Vec<u64>,
}

impl Sim {
    /// Whether `node` can serve `index`: it holds it, or is receiving it
    /// piece by piece and has a piece of it.
    pub(super) fn holds_some(&self, node: u32, index: u32) -> bool {
        self.holds(node, index)
            || self
                .partial
                .get(&(node, index))
                .is_some_and(|p| p.pieces > 0)
    }

    /// Pieces chunk `index` is passed on in.
    fn pieces_of(&self, index: u32) -> u32 {
        let len = u64::from(self.chunks[index as usize].len);
        match self.piece_len {
            Some(p) if len > p => len.div_ceil(p) as u32,
            _ => 1,
        }
    }

    /// Starts response `job` from `from` to `to`: whole, or piece by piece
    /// (as many pieces as `from` has; the rest as they come).
    pub(super) fn send(&mut self, from: u32, to: u32, job: Job) {
        let pieces = self.pieces_of(job.index);
        if pieces == 1 {
            let path = self.path(from, to);
            self.net.enqueue(self.now(), from, to, || path, job);
            return;
        }
        let r = Pieced {
            from,
            to,
            index: job.index,
            epoch: job.epoch,
            deadline: job.deadline,
            pieces,
            queued: 0,
            done: 0,
        };
        self.pieced.insert(job.token, r);
        self.pieced_of.insert((from, to, job.index), job.token);
        let have = if self.holds(from, job.index) {
            u32::MAX
        } else {
            // `from` passes on what it is still receiving: the response it
            // comes by lands piece by piece from now on.
            if let Some(up) = self.partial.get(&(from, job.index)).map(|p| p.token) {
                self.split_runs(up);
            }
            match self.partial.get_mut(&(from, job.index)) {
                Some(p) => {
                    p.waiters.push(job.token);
                    p.pieces
                }
                // A held request whose chunk the sender lost meanwhile
                // (the response it was coming by broke off).
                None => {
                    self.fail_pieced(job.token);
                    return;
                }
            }
        };
        self.feed(job.token, have);
    }

    /// Hands the network the pieces of response `token` up to `have` that
    /// it has not had yet: one by one where the receiver passes the chunk
    /// on, else the first alone and the others as a run.
    fn feed(&mut self, token: u64, have: u32) {
        let Some(r) = self.pieced.get(&token) else {
            return;
        };
        let (Some(piece_len), Some(len)) = (
            self.piece_len,
            self.chunks.get(r.index as usize).map(|c| u64::from(c.len)),
        ) else {
            return;
        };
        let upto = have.min(r.pieces);
        let (from, to, index, epoch, deadline, pieces) =
            (r.from, r.to, r.index, r.epoch, r.deadline, r.pieces);
        let watched = self
            .partial
            .get(&(to, index))
            .is_some_and(|p| p.token == token && !p.waiters.is_empty());
        let mut jobs = Vec::new();
        let mut k = r.queued;
        while k < upto {
            let run = if k == 0 || watched { 1 } else { upto - k };
            let start = u64::from(k) * piece_len;
            let end = (u64::from(k + run) * piece_len).min(len);
            jobs.push(Job {
                token,
                index,
                bytes: end - start,
                epoch,
                deadline,
                pieces,
                run,
            });
            k += run;
        }
        if let Some(r) = self.pieced.get_mut(&token) {
            r.queued = r.queued.max(upto);
        }
        let now = self.now();
        for job in jobs {
            let path = self.path(from, to);
            self.net.enqueue(now, from, to, || path, job);
        }
    }

    /// Response `token`'s pieces are watched one by one from now on: its
    /// runs are split where they stand. The pieces of them that have left
    /// count as sent, and arrive one latency after they left (at once if
    /// that is past: nothing watched them arrive).
    pub(super) fn split_runs(&mut self, token: u64) {
        let (Some(r), Some(piece_len)) = (self.pieced.get(&token), self.piece_len) else {
            return;
        };
        let (from, to) = (r.from, r.to);
        let left = self.net.split(self.now(), from, to, token, piece_len);
        self.pieces_left(token, left);
    }

    /// The stream of a run due now was reset mid-way: it stops at the
    /// piece now leaving (which fails its response as it ends).
    pub(super) fn reset_run(&mut self) -> bool {
        let piece_len = self.piece_len.unwrap_or(0);
        match self.net.reset_run(self.now(), piece_len) {
            Some((_, _, token, left)) => {
                self.pieces_left(token, left);
                true
            }
            None => false,
        }
    }

    /// Pieces of response `token` that left its sender at the times
    /// `left`, within a run now split: they count as sent, and arrive one
    /// latency after they left.
    fn pieces_left(&mut self, token: u64, left: Vec<f64>) {
        let Some(r) = self.pieced.get_mut(&token) else {
            return;
        };
        if left.is_empty() {
            return;
        }
        r.done += left.len() as u32;
        let (from, to, index, epoch) = (r.from, r.to, r.index, r.epoch);
        let piece_len = self.piece_len.unwrap_or(0);
        self.nodes[from as usize].bytes_sent += left.len() as u64 * piece_len;
        let now = self.now();
        let latency = self.latency(from, to);
        for t in left {
            let at = t + latency;
            match self.partial.get_mut(&(to, index)) {
                Some(p) if at <= now && p.token == token => p.pieces += 1,
                _ => self.push(
                    at,
                    Ev::Piece {
                        to,
                        index,
                        epoch,
                        token,
                        count: 1,
                    },
                ),
            }
        }
    }

    /// A piece of a response left its sender: the last arrives as the
    /// chunk, the others as pieces; a response past its deadline fails.
    pub(super) fn piece_sent(&mut self, from: u32, to: u32, job: Job) {
        let now = self.now();
        let at = now + self.latency(from, to);
        let alive = self.nodes[to as usize].up && self.nodes[to as usize].epoch == job.epoch;
        let Some(r) = self.pieced.get_mut(&job.token) else {
            return;
        };
        if job.deadline < now || !alive {
            self.fail_pieced(job.token);
            return;
        }
        r.done += job.run;
        if r.done < r.pieces {
            self.push(
                at,
                Ev::Piece {
                    to,
                    index: job.index,
                    epoch: job.epoch,
                    token: job.token,
                    count: job.run,
                },
            );
            return;
        }
        let bytes = u64::from(self.chunks[job.index as usize].len);
        self.pieced.remove(&job.token);
        self.pieced_of.remove(&(from, to, job.index));
        self.finished(from, to, &job, bytes);
        self.push(
            at,
            Ev::Deliver {
                to,
                from,
                index: job.index,
                epoch: job.epoch,
            },
        );
    }

    /// Pieces (`count`, not the last) of the response `token` reached
    /// `to`: the first makes the chunk one `to` can pass on; each is passed
    /// on to the responses waiting for it.
    pub(super) fn piece_arrived(
        &mut self,
        to: u32,
        index: u32,
        epoch: u32,
        token: u64,
        count: u32,
    ) {
        let n = &self.nodes[to as usize];
        if !n.up || n.epoch != epoch || !self.pieced.contains_key(&token) || self.holds(to, index) {
            return;
        }
        let p = self.partial.entry((to, index)).or_insert(Partial {
            token,
            pieces: 0,
            waiters: Vec::new(),
        });
        if p.token != token {
            return;
        }
        let first = p.pieces == 0;
        p.pieces += count;
        let (have, waiters) = (p.pieces, p.waiters.clone());
        if first {
            if let Some(m) = &mut self.nodes[to as usize].machine {
                m.handle_partial(Duration::from_nanos(self.now_ns), index);
                self.dirty.push(to);
            }
        }
        for w in waiters {
            self.feed(w, have);
        }
    }

    /// Response `token` broke off: its sender's slot frees, its requester
    /// hears so, and what the requester passed on of it breaks off too.
    pub(super) fn fail_pieced(&mut self, token: u64) {
        // What of a moving run has left counts as sent.
        self.split_runs(token);
        let Some(r) = self.pieced.remove(&token) else {
            return;
        };
        self.pieced_of.remove(&(r.from, r.to, r.index));
        let t = Duration::from_nanos(self.now_ns);
        let piece_len = self.piece_len.unwrap_or(0);
        if let Some(a) = &mut self.nodes[r.from as usize].admission {
            a.finished(t, token, u64::from(r.done) * piece_len);
        }
        if let Some(p) = self.partial.get_mut(&(r.from, r.index)) {
            p.waiters.retain(|&w| w != token);
        }
        let n = &self.nodes[r.to as usize];
        if n.up && n.epoch == r.epoch {
            let now = self.now();
            self.push(
                now,
                Ev::Busy {
                    to: r.to,
                    from: r.from,
                    index: r.index,
                    epoch: r.epoch,
                    retry_ns: None,
                },
            );
        }
        if self
            .partial
            .get(&(r.to, r.index))
            .is_some_and(|p| p.token == token)
        {
            self.abort_partial(r.to, r.index);
        }
        self.start_held(r.from);
    }

    /// `node` will not get `index` by the response it was coming by: the
    /// responses passing it on break off.
    fn abort_partial(&mut self, node: u32, index: u32) {
        if let Some(p) = self.partial.remove(&(node, index)) {
            for w in p.waiters {
                self.fail_pieced(w);
            }
        }
    }

    /// `node` holds `index` whole now: the responses passing it on get
    /// their remaining pieces.
    pub(super) fn partial_done(&mut self, node: u32, index: u32) {
        if let Some(p) = self.partial.remove(&(node, index)) {
            for w in p.waiters {
                self.feed(w, u32::MAX);
            }
        }
    }

    /// `node` went down: what it was passing on breaks off.
    pub(super) fn drop_partials(&mut self, node: u32) {
        let mine: Vec<u32> = self
            .partial
            .range((node, 0)..=(node, u32::MAX))
            .map(|(&(_, i), _)| i)
            .collect();
        for index in mine {
            self.abort_partial(node, index);
        }
    }
}
