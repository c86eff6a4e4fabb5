//! The release a node is working on: its verified manifest and unique
//! chunk list (its scheduler lives in the node logic, `pollen_core::node`).

use std::sync::Arc;

use libp2p::PeerId;
use pollen_core::manifest::{ChunkRef, ManifestId, VerifiedManifest};
use pollen_core::swarm::{unique_chunks, Bitfield, PeerKey};

use crate::store::{Store, StoreError};

/// A libp2p peer id as the scheduler sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Peer(pub PeerId);

impl PeerKey for Peer {
    fn key_bytes(&self) -> Vec<u8> {
        self.0.to_bytes()
    }
}

/// The current release.
#[derive(Debug)]
pub struct Release {
    pub manifest: VerifiedManifest,
    pub chunks: Arc<[ChunkRef]>,
    /// Chunks already held when this release was taken up (resume, or shared with an older one).
    pub held_at_start: u32,
}

impl Release {
    /// The release of `manifest`, and which of its chunks `store` holds.
    pub fn new<S: Store + ?Sized>(
        store: &S,
        manifest: VerifiedManifest,
    ) -> Result<(Self, Bitfield), StoreError> {
        let chunks = unique_chunks(manifest.manifest());
        let mut have = Bitfield::new(chunks.len() as u32);
        for (i, c) in chunks.iter().enumerate() {
            if store.has_chunk(&c.id)? {
                have.set(i as u32);
            }
        }
        let held_at_start = have.count();
        let release = Self {
            manifest,
            chunks: chunks.into(),
            held_at_start,
        };
        Ok((release, have))
    }

    pub fn id(&self) -> ManifestId {
        self.manifest.id()
    }

    pub fn release(&self) -> u64 {
        self.manifest.manifest().release
    }
}
