//! The driver's uploads: chunk requests from peers sent at once, held in a
//! short queue until a slot frees, or refused (`Busy`, `Declined`), as
//! `pollen_core::admission` decides.
//!
//! A response's slot is freed when its requester announces the chunk
//! (`Gained`), not when its bytes were written: socket buffers take seconds
//! of a slow link at once, so a server that counted written bytes would
//! think itself idle while its link is the bottleneck. A requester that
//! never announces it frees the slot after [`ACK_WAIT`]; one that does so
//! too often is shunned ([`Shun`]: its held requests are answered `Busy`).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// A response written out but not yet announced by its requester frees its
/// slot after this long anyway.
pub(super) const ACK_WAIT: Duration = Duration::from_secs(30);
use libp2p::request_response::{InboundRequestId, ResponseChannel};
use libp2p::PeerId;
pub(super) use pollen_core::admission::SHUN_FOR;
use pollen_core::admission::{Admission, AdmissionConfig, Shun};
use pollen_core::manifest::ManifestId;
use pollen_core::swarm::SiteId;

use super::serve::reader::{ReadError, Reader};
use crate::net::protocol::{Counter, Reply};
use crate::store::Store;

/// Why an admitted chunk cannot be read now.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(super) enum ReaderError {
    #[error("starting the chunk readers: {0}")]
    Spawn(#[source] std::io::Error),
    #[error(transparent)]
    Read(#[from] ReadError),
}

/// A chunk request waiting for a slot.
#[derive(Debug)]
pub(super) struct Held {
    pub peer: PeerId,
    pub manifest: ManifestId,
    pub index: u32,
    pub channel: ResponseChannel<Reply>,
}

/// A response under way: its requester, chunk and length, its byte
/// counter, and when its last byte was written.
#[derive(Debug)]
pub(super) struct Sending {
    pub peer: PeerId,
    pub index: u32,
    pub len: u64,
    pub written: Counter,
    pub done_at: Option<Duration>,
}

/// Admission state, the held requests and the responses under way.
#[derive(Debug)]
pub(super) struct Uploads {
    pub admission: Admission<InboundRequestId, PeerId>,
    pub held: HashMap<InboundRequestId, Held>,
    pub sending: HashMap<InboundRequestId, Sending>,
    /// The threads that read chunks to serve, started with the first.
    reader: Option<Reader>,
    /// Peers that let responses expire unannounced.
    shun: Shun<PeerId>,
}

impl Uploads {
    pub fn new(config: AdmissionConfig, site: Option<SiteId>) -> Self {
        Self {
            admission: Admission::new(config, site),
            held: HashMap::new(),
            sending: HashMap::new(),
            reader: None,
            shun: Shun::default(),
        }
    }

    /// The chunk readers on `store`, started on first use.
    pub fn reader<S: Store + ?Sized + 'static>(
        &mut self,
        store: &Arc<S>,
    ) -> Result<&Reader, ReaderError> {
        if self.reader.is_none() {
            let store = store.clone();
            self.reader = Some(Reader::spawn(store).map_err(ReaderError::Spawn)?);
        }
        self.reader
            .as_ref()
            .ok_or(ReaderError::Read(ReadError::Gone))
    }

    /// How long `peer` is still served nothing (`None`: it is served).
    pub fn shunned(&self, now: Duration, peer: &PeerId) -> Option<Duration> {
        self.shun.shunned(now, peer)
    }

    /// A response's stream ended: written to the end (`complete`; its slot
    /// waits for the requester's announcement), or broken off (freed with
    /// what was written), or the request was answered without a chunk.
    pub fn ended(&mut self, now: Duration, id: InboundRequestId, complete: bool) {
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

    /// `peer` announced chunks: the responses that carried them to it are
    /// delivered, and its held requests for them are moot (returned, to be
    /// answered without the chunk).
    pub fn announced(&mut self, now: Duration, peer: &PeerId, indices: &[u32]) -> Vec<Held> {
        let mut moot = Vec::new();
        for &index in indices {
            for id in self.admission.waiting_for(peer, index) {
                if let Some(h) = self.held.remove(&id) {
                    moot.push(h);
                }
                self.admission.finished(now, id, 0);
            }
        }
        let done: Vec<(InboundRequestId, u64)> = self
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
    /// Returns the held requests of the peers this shuns, to be answered
    /// `Busy`.
    pub fn expire(&mut self, now: Duration) -> Vec<Held> {
        let stale: Vec<(InboundRequestId, PeerId, u64)> = self
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
        let shunned: Vec<InboundRequestId> = self
            .held
            .iter()
            .filter(|(_, h)| self.shunned(now, &h.peer).is_some())
            .map(|(id, _)| *id)
            .collect();
        let mut out = Vec::new();
        for id in shunned {
            if let Some(h) = self.held.remove(&id) {
                self.admission.finished(now, id, 0);
                out.push(h);
            }
        }
        out
    }

    /// `peer` went away: its held requests will never be answered, and
    /// what was under way to it is over.
    pub fn forget(&mut self, now: Duration, peer: &PeerId) {
        let gone: Vec<InboundRequestId> = self
            .held
            .iter()
            .filter(|(_, h)| h.peer == *peer)
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            self.held.remove(&id);
            self.admission.finished(now, id, 0);
        }
        let gone: Vec<(InboundRequestId, u64)> = self
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
