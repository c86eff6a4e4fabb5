//! Chunks passed on while they arrive. A chunk answered in pieces
//! ([`Response::Pieces`](pollen_core::wire::Response::Pieces)) lands here
//! piece by piece, each checked against piece hashes that were checked
//! against the chunk's id first; a request for the chunk that comes
//! meanwhile is answered from the pieces in so far and then each as it
//! lands, so a site passes a large chunk on a piece behind its sender
//! instead of a whole chunk behind (DESIGN.md §5, "Pieces").
//!
//! [`Partials`] is the registry the codecs fill and the driver serves
//! from, keyed by chunk id. A [`Partial`] is registered when its piece
//! hashes check; the codec that fills it takes it out again if the
//! response breaks off, and the driver once the whole chunk is stored (or
//! the release changes). Readers of a partial whose sender broke off see
//! it end (`None`) and fail their own response: a frame cannot be cut
//! short, so its stream (or session) fails and the requester asks again.
//!
//! The first piece of a chunk is reported to the driver on a bounded
//! queue (the scheduler then tells peers of the chunk); a report that
//! finds the queue full is dropped — the chunk is told of when whole.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::channel::mpsc;
use pollen_core::chunk::{Assembly, CheckedPieces, ChunkId, PieceError, PieceHash, VerifiedChunk};
use pollen_core::manifest::{ChunkRef, ManifestId};
use tokio::sync::watch;

/// First-piece reports waiting for the driver, at most.
pub const REPORTS: usize = 256;

/// A chunk arriving in pieces: its checked piece hashes and the pieces
/// landed so far, in order.
#[derive(Debug)]
pub struct Partial {
    pieces: CheckedPieces,
    landed: watch::Receiver<Vec<Bytes>>,
    /// The whole chunk once every piece is in (checked piece by piece:
    /// not hashed again before it is stored).
    whole: std::sync::OnceLock<VerifiedChunk>,
}

impl Partial {
    /// The piece hashes the chunk was announced with (checked).
    pub fn hashes(&self) -> &[PieceHash] {
        self.pieces.hashes()
    }

    /// The chunk's length.
    pub fn chunk_len(&self) -> u32 {
        self.pieces.chunk_len()
    }

    /// How many pieces the chunk has.
    pub fn count(&self) -> u32 {
        self.pieces.count()
    }

    /// Piece `index` once it has landed; `None` if the response carrying
    /// the chunk broke off first (or there is no such piece).
    pub async fn piece(&self, index: u32) -> Option<Bytes> {
        if index >= self.count() {
            return None;
        }
        let mut rx = self.landed.clone();
        let landed = rx.wait_for(|p| p.len() > index as usize).await.ok()?;
        landed.get(index as usize).cloned()
    }
}

/// The filling end of a [`Partial`], held by the codec reading the
/// response: the next piece is read into [`Filling::next_mut`], then
/// checked and passed on by [`Filling::land`]. Dropped before the last
/// piece, the partial ends (its readers get `None`) and leaves the
/// registry.
#[derive(Debug)]
pub struct Filling {
    partial: Arc<Partial>,
    /// `None` once finished.
    assembly: Option<Assembly>,
    tx: watch::Sender<Vec<Bytes>>,
    /// Where it is registered (`None`: another partial of the same chunk
    /// was there first; this one only checks).
    registry: Option<Partials>,
    manifest: ManifestId,
    index: u32,
}

impl Filling {
    /// Where the next piece's bytes go; `None` once all have landed.
    pub fn next_mut(&mut self) -> Option<&mut [u8]> {
        self.assembly.as_mut()?.next_mut()
    }

    /// Checks the piece just read into [`Filling::next_mut`] and, if good,
    /// lands it: readers of the partial get it (the first one is reported
    /// to the driver).
    pub fn land(&mut self) -> Result<(), PieceError> {
        let Some(assembly) = self.assembly.as_mut() else {
            return Err(PieceError::NoPiece {
                len: self.partial.chunk_len(),
                index: self.partial.count(),
            });
        };
        let piece = assembly.check_next()?;
        let first = self.tx.borrow().is_empty();
        if self.registry.is_none() {
            // Nobody serves from this one: keep no copy.
            self.tx.send_modify(|p| p.push(Bytes::new()));
            return Ok(());
        }
        let copy = Bytes::copy_from_slice(piece);
        self.tx.send_modify(|p| p.push(copy));
        if first {
            if let Some(r) = &self.registry {
                r.first_piece(self.manifest, self.index);
            }
        }
        Ok(())
    }

    /// Whether every piece has landed.
    pub fn is_complete(&self) -> bool {
        self.tx.borrow().len() as u32 == self.partial.count()
    }

    /// Reads `bytes` into the next piece's place and lands it.
    #[cfg(test)]
    pub(crate) fn land_bytes(&mut self, bytes: &[u8]) -> Result<(), PieceError> {
        match self.next_mut() {
            Some(place) if place.len() == bytes.len() => place.copy_from_slice(bytes),
            Some(place) => place.fill(0),
            None => {}
        }
        self.land()
    }

    /// The whole chunk, once every piece has landed (else `None`); kept
    /// with the partial for the driver to store without hashing it again.
    pub fn finish(&mut self) -> Option<VerifiedChunk> {
        let whole = self.assembly.take_if(|a| a.is_complete())?.finish()?;
        if self.registry.is_some() {
            let _ = self.partial.whole.set(whole.clone());
        }
        Some(whole)
    }
}

impl Drop for Filling {
    fn drop(&mut self) {
        // Complete, it stays until the driver has stored the chunk.
        if !self.is_complete() {
            if let Some(r) = &self.registry {
                r.remove_if(&self.partial);
            }
        }
    }
}

#[derive(Debug, Default)]
struct Shared {
    by_id: HashMap<ChunkId, Arc<Partial>>,
    reports: Option<mpsc::Sender<(ManifestId, u32)>>,
}

/// Every chunk of this node arriving in pieces. Cloning shares it.
#[derive(Clone, Debug, Default)]
pub struct Partials {
    shared: Arc<Mutex<Shared>>,
}

impl Partials {
    /// A registry that reports each chunk's first piece on the returned
    /// queue.
    pub fn new() -> (Self, mpsc::Receiver<(ManifestId, u32)>) {
        let (tx, rx) = mpsc::channel(REPORTS);
        let shared = Shared {
            by_id: HashMap::new(),
            reports: Some(tx),
        };
        (
            Self {
                shared: Arc::new(Mutex::new(shared)),
            },
            rx,
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts filling chunk `index` of `manifest` from `pieces` (checked
    /// against its id); registered unless the chunk is arriving already.
    pub fn start(&self, manifest: ManifestId, index: u32, pieces: CheckedPieces) -> Filling {
        let (tx, landed) = watch::channel(Vec::with_capacity(pieces.count() as usize));
        let id = pieces.id();
        let partial = Arc::new(Partial {
            pieces: pieces.clone(),
            landed,
            whole: std::sync::OnceLock::new(),
        });
        let mut shared = self.lock();
        let registry = (!shared.by_id.contains_key(&id)).then(|| {
            shared.by_id.insert(id, partial.clone());
            self.clone()
        });
        Filling {
            partial,
            assembly: Some(Assembly::new(pieces)),
            tx,
            registry,
            manifest,
            index,
        }
    }

    /// The partial of `chunk`, if it is arriving in pieces.
    pub fn get(&self, chunk: &ChunkRef) -> Option<Arc<Partial>> {
        let shared = self.lock();
        let p = shared.by_id.get(&chunk.id)?;
        (p.chunk_len() == chunk.len).then(|| p.clone())
    }

    /// Chunk `chunk` whole, if it arrived in pieces and every piece is in
    /// (checked: it need not be hashed again).
    pub fn whole(&self, chunk: &ChunkRef) -> Option<VerifiedChunk> {
        self.get(chunk)?.whole.get().cloned()
    }

    /// Forgets `id` (stored, or no longer wanted).
    pub fn remove(&self, id: &ChunkId) {
        self.lock().by_id.remove(id);
    }

    /// Forgets every partial (a new release).
    pub fn clear(&self) {
        self.lock().by_id.clear();
    }

    /// Chunks arriving in pieces now.
    pub fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn remove_if(&self, partial: &Arc<Partial>) {
        let mut shared = self.lock();
        let id = partial.pieces.id();
        if shared
            .by_id
            .get(&id)
            .is_some_and(|p| Arc::ptr_eq(p, partial))
        {
            shared.by_id.remove(&id);
        }
    }

    fn first_piece(&self, manifest: ManifestId, index: u32) {
        if let Some(tx) = &mut self.lock().reports {
            if tx.try_send((manifest, index)).is_err() {
                tracing::debug!(index, "first-piece report dropped: queue full");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use pollen_core::chunk::{piece_hashes, piece_range, PIECE_LEN};

    fn chunk(len: usize) -> (Vec<u8>, CheckedPieces, ChunkRef) {
        let bytes: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let id = ChunkId::of(&bytes);
        let pieces = CheckedPieces::new(id, len as u32, piece_hashes(&bytes)).expect("own pieces");
        let r = ChunkRef {
            id,
            len: len as u32,
        };
        (bytes, pieces, r)
    }

    fn piece(bytes: &[u8], i: u32) -> &[u8] {
        let r = piece_range(bytes.len() as u32, i).expect("in range");
        &bytes[r.start as usize..r.end as usize]
    }

    #[tokio::test]
    async fn readers_get_each_piece_as_it_lands_and_the_first_is_reported() {
        let len = 3 * PIECE_LEN as usize + 100;
        let (bytes, pieces, r) = chunk(len);
        let (partials, mut reports) = Partials::new();
        let m = ManifestId([1; 32]);
        let mut filling = partials.start(m, 5, pieces);
        let partial = partials.get(&r).expect("registered");
        let waiting = tokio::spawn({
            let partial = partial.clone();
            async move { partial.piece(2).await }
        });
        filling.land_bytes(piece(&bytes, 0)).expect("good piece");
        assert_eq!(reports.next().await, Some((m, 5)));
        assert_eq!(partial.piece(0).await.as_deref(), Some(piece(&bytes, 0)));
        filling.land_bytes(piece(&bytes, 1)).expect("good piece");
        assert!(!waiting.is_finished());
        filling.land_bytes(piece(&bytes, 2)).expect("good piece");
        let got = waiting.await.expect("joined");
        assert_eq!(got.as_deref(), Some(piece(&bytes, 2)));
        filling.land_bytes(piece(&bytes, 3)).expect("good piece");
        assert!(filling.is_complete());
        drop(filling);
        // Complete: served from until the driver stores it.
        assert_eq!(partial.piece(3).await.as_deref(), Some(piece(&bytes, 3)));
        assert!(partials.get(&r).is_some());
        partials.remove(&r.id);
        assert!(partials.is_empty());
        // Only the first piece was reported.
        assert!(reports.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_bad_piece_lands_nothing_and_a_broken_fill_ends_its_readers() {
        let len = 2 * PIECE_LEN as usize + 1;
        let (bytes, pieces, r) = chunk(len);
        let (partials, _reports) = Partials::new();
        let mut filling = partials.start(ManifestId([2; 32]), 0, pieces);
        let partial = partials.get(&r).expect("registered");
        let mut bad = piece(&bytes, 0).to_vec();
        bad[9] ^= 1;
        assert!(filling.land_bytes(&bad).is_err());
        filling.land_bytes(piece(&bytes, 0)).expect("good piece");
        let waiting = tokio::spawn({
            let partial = partial.clone();
            async move { partial.piece(1).await }
        });
        drop(filling);
        assert_eq!(waiting.await.expect("joined"), None);
        assert!(
            partials.get(&r).is_none(),
            "a broken fill leaves the registry"
        );
        assert_eq!(partial.piece(7).await, None);
    }

    #[tokio::test]
    async fn a_second_fill_of_the_same_chunk_checks_but_does_not_replace_the_first() {
        let len = 2 * PIECE_LEN as usize;
        let (bytes, pieces, r) = chunk(len);
        let (partials, _reports) = Partials::new();
        let first = partials.start(ManifestId([3; 32]), 1, pieces.clone());
        let mut second = partials.start(ManifestId([3; 32]), 1, pieces);
        let registered = partials.get(&r).expect("registered");
        second.land_bytes(piece(&bytes, 0)).expect("good piece");
        drop(second);
        let still = partials.get(&r).expect("the first stays");
        assert!(Arc::ptr_eq(&registered, &still));
        drop(first);
        assert!(partials.get(&r).is_none());
        let wrong_len = ChunkRef {
            id: r.id,
            len: r.len - 1,
        };
        let _again = partials.start(ManifestId([3; 32]), 1, chunk(len).1);
        assert!(
            partials.get(&wrong_len).is_none(),
            "a length that disagrees finds nothing"
        );
    }
}
