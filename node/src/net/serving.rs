//! The serving side of the `/pollen/3` behaviour ([`super::pollen`]): per
//! peer serving limits. Each chunk request is sent at once, held in a short
//! queue until a slot frees, or refused (`Busy`, `Declined`), as
//! `pollen_core::admission` decides; a peer that lets responses go
//! unannounced is shunned (answered `Busy`).
//!
//! A response's slot is freed when its requester announces the chunk
//! (`Gained`), not when its bytes were written: socket buffers take seconds
//! of a slow link at once, so a server that counted written bytes would
//! think itself idle while its link is the bottleneck. A requester that
//! never announces it frees the slot after [`ACK_WAIT`]; one that does so
//! too often is shunned ([`Shun`]: its held requests are answered `Busy`).
//!
//! Generic over the request id and the response channel so the limits are
//! unit-tested without a network; the behaviour uses libp2p's.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use libp2p::PeerId;
pub use pollen_core::admission::SHUN_FOR;
use pollen_core::admission::{Admission, AdmissionConfig, Shun, Start, Verdict};
use pollen_core::manifest::ManifestId;
use pollen_core::swarm::SiteId;
use pollen_core::wire::Response;

use super::protocol::Counter;

/// A response written out but not yet announced by its requester frees its
/// slot after this long anyway.
pub const ACK_WAIT: Duration = Duration::from_secs(30);

/// Milliseconds in a retry hint, saturating.
pub fn ms(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// A chunk request admitted: the caller reads the chunk and answers it
/// ([`Serving::sending`]), or gives its slot back ([`Serving::not_sent`]).
#[derive(Debug)]
pub struct Admitted<I, C> {
    pub id: I,
    pub peer: PeerId,
    pub manifest: ManifestId,
    pub index: u32,
    pub channel: C,
}

/// What became of a chunk request.
#[derive(Debug)]
pub enum Offered<I, C> {
    /// Send it now.
    Send(Admitted<I, C>),
    /// Held for a slot; [`Serving::poll_start`] hands it out later.
    Held,
    /// Answer the channel with this (`Busy` or `Declined`).
    Refused(C, Response),
}

/// A response under way: its requester, chunk and length, its byte
/// counter, and when its last byte was written.
#[derive(Debug)]
struct Sending {
    peer: PeerId,
    index: u32,
    len: u64,
    written: Counter,
    done_at: Option<Duration>,
}

/// Admission state, the held requests and the responses under way.
#[derive(Debug)]
pub struct Serving<I, C> {
    admission: Admission<I, PeerId>,
    held: HashMap<I, Admitted<I, C>>,
    sending: HashMap<I, Sending>,
    /// Peers that let responses expire unannounced.
    shun: Shun<PeerId>,
}

impl<I: Ord + Copy + std::hash::Hash + std::fmt::Debug, C> Serving<I, C> {
    pub fn new(config: AdmissionConfig, site: Option<SiteId>) -> Self {
        Self {
            admission: Admission::new(config, site),
            held: HashMap::new(),
            sending: HashMap::new(),
            shun: Shun::default(),
        }
    }

    /// A new release of `chunks` chunks is served.
    pub fn new_release(&mut self, chunks: u32) {
        self.admission.new_release(chunks);
    }

    /// Whether requests from other sites are served (a gateway, a seeder,
    /// a node without a site).
    pub fn set_serves_away(&mut self, yes: bool) {
        self.admission.set_serves_away(yes);
    }

    /// A request for chunk `index` (`len` bytes) of `manifest`, which this
    /// node holds.
    #[allow(clippy::too_many_arguments)] // one request's fields
    pub fn offer(
        &mut self,
        now: Duration,
        id: I,
        peer: PeerId,
        site: Option<SiteId>,
        manifest: ManifestId,
        index: u32,
        len: u32,
        channel: C,
    ) -> Offered<I, C> {
        if let Some(left) = self.shun.shunned(now, &peer) {
            // It let responses go unannounced: nothing for it for a while.
            tracing::debug!(%peer, index, "chunk request of a shunned peer");
            return Offered::Refused(channel, Response::Busy { retry_ms: ms(left) });
        }
        let verdict = self
            .admission
            .offer(now, id, peer, site, index, u64::from(len));
        tracing::debug!(%peer, index, ?verdict, "chunk request");
        let admitted = Admitted {
            id,
            peer,
            manifest,
            index,
            channel,
        };
        match verdict {
            Verdict::Send => Offered::Send(admitted),
            Verdict::Wait => {
                self.held.insert(id, admitted);
                Offered::Held
            }
            Verdict::Busy { retry_after } => Offered::Refused(
                admitted.channel,
                Response::Busy {
                    retry_ms: ms(retry_after),
                },
            ),
            Verdict::Declined { retry_after } => Offered::Refused(
                admitted.channel,
                Response::Declined {
                    retry_ms: ms(retry_after),
                },
            ),
        }
    }

    /// The next held request whose turn has come (`Send`), or one whose
    /// chunk went out to the fleet meanwhile (`Refused`: `Declined`).
    pub fn poll_start(&mut self, now: Duration) -> Option<Offered<I, C>> {
        while let Some(start) = self.admission.poll_start(now) {
            match start {
                Start::Send(id) => match self.held.remove(&id) {
                    Some(h) => return Some(Offered::Send(h)),
                    None => self.admission.finished(now, id, 0),
                },
                Start::Decline(id, hint) => {
                    if let Some(h) = self.held.remove(&id) {
                        let retry_ms = ms(hint);
                        return Some(Offered::Refused(h.channel, Response::Declined { retry_ms }));
                    }
                }
            }
        }
        None
    }

    /// An admitted chunk of `len` bytes is being sent; `written` counts its
    /// bytes out.
    pub fn sending(&mut self, id: I, peer: PeerId, index: u32, len: u32, written: Counter) {
        let sending = Sending {
            peer,
            index,
            len: u64::from(len),
            written,
            done_at: None,
        };
        self.sending.insert(id, sending);
    }

    /// An admitted request was answered without its chunk: its slot is free.
    pub fn not_sent(&mut self, now: Duration, id: I) {
        self.admission.finished(now, id, 0);
    }

    /// A response's stream ended: written to the end (`complete`; its slot
    /// waits for the requester's announcement), or broken off (freed with
    /// what was written), or the request was answered without a chunk.
    pub fn ended(&mut self, now: Duration, id: I, complete: bool) {
        if let Some(s) = self.sending.get_mut(&id) {
            if complete {
                s.done_at = Some(now);
                return;
            }
            let sent = s.written.load(Ordering::Relaxed);
            self.sending.remove(&id);
            self.admission.finished(now, id, sent);
        } else if self.held.remove(&id).is_some() {
            self.admission.finished(now, id, 0);
        }
    }

    /// The requester took back request `id`: if it is still held, it is
    /// dropped unanswered (its channel is returned, for the caller to drop)
    /// and its place in the queue frees. One already under way goes on.
    pub fn cancel(&mut self, now: Duration, id: I) -> Option<C> {
        let h = self.held.remove(&id)?;
        tracing::debug!(peer = %h.peer, index = h.index, "held request taken back");
        self.admission.finished(now, id, 0);
        Some(h.channel)
    }

    /// `peer` announced chunks: the responses that carried them to it are
    /// delivered, and its held requests for them are moot (returned, to be
    /// answered `Declined` without a wait).
    pub fn announced(&mut self, now: Duration, peer: &PeerId, indices: &[u32]) -> Vec<C> {
        let mut moot = Vec::new();
        for &index in indices {
            for id in self.admission.waiting_for(peer, index) {
                if let Some(h) = self.held.remove(&id) {
                    moot.push(h.channel);
                }
                self.admission.finished(now, id, 0);
            }
        }
        let done: Vec<(I, u64)> = self
            .sending
            .iter()
            .filter(|(_, s)| s.peer == *peer && indices.contains(&s.index))
            .map(|(id, s)| (*id, s.len))
            .collect();
        if !done.is_empty() {
            self.shun.acked(peer);
        }
        for (id, len) in done {
            self.sending.remove(&id);
            self.admission.finished(now, id, len);
        }
        moot
    }

    /// Responses written long ago whose requester never announced them.
    /// Returns the held requests of the peers this shuns, each with its
    /// `Busy` answer.
    pub fn expire(&mut self, now: Duration) -> Vec<(C, Response)> {
        let stale: Vec<(I, PeerId, u64)> = self
            .sending
            .iter()
            .filter(|(_, s)| s.done_at.is_some_and(|t| now.saturating_sub(t) >= ACK_WAIT))
            .map(|(id, s)| (*id, s.peer, s.len))
            .collect();
        for (id, peer, len) in stale {
            self.sending.remove(&id);
            self.admission.finished(now, id, len);
            self.shun.expired(now, peer);
        }
        self.shun.prune(now);
        let shunned: Vec<I> = self
            .held
            .iter()
            .filter(|(_, h)| self.shun.shunned(now, &h.peer).is_some())
            .map(|(id, _)| *id)
            .collect();
        let mut out = Vec::new();
        for id in shunned {
            if let Some(h) = self.held.remove(&id) {
                tracing::debug!(peer = %h.peer, index = h.index, "held request of a shunned peer refused");
                self.admission.finished(now, id, 0);
                let retry_ms = ms(SHUN_FOR);
                out.push((h.channel, Response::Busy { retry_ms }));
            }
        }
        out
    }

    /// `peer` went away: its held requests will never be answered, and
    /// what was under way to it is over.
    pub fn forget(&mut self, now: Duration, peer: &PeerId) {
        let gone: Vec<I> = self
            .held
            .iter()
            .filter(|(_, h)| h.peer == *peer)
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            self.held.remove(&id);
            self.admission.finished(now, id, 0);
        }
        let gone: Vec<(I, u64)> = self
            .sending
            .iter()
            .filter(|(_, s)| s.peer == *peer)
            .map(|(id, s)| (*id, s.written.load(Ordering::Relaxed)))
            .collect();
        for (id, sent) in gone {
            self.sending.remove(&id);
            self.admission.finished(now, id, sent);
        }
    }
}

#[cfg(test)]
#[path = "serving_tests.rs"]
mod tests;
