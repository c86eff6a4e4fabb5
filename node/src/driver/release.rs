//! The release a node is working on: its verified manifest, the unique
//! chunk list and the scheduler instance for it.

use std::time::Duration;

use libp2p::PeerId;
use pollen_core::manifest::{ChunkRef, ManifestId, VerifiedManifest};
use pollen_core::swarm::{unique_chunks, Bitfield, PeerKey, Swarm, SwarmConfig};

use crate::store::{Store, StoreError};

/// A libp2p peer id as the scheduler sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Peer(pub PeerId);

impl PeerKey for Peer {
    fn key_bytes(&self) -> Vec<u8> {
        self.0.to_bytes()
    }
}

/// The current release and its scheduler.
#[derive(Debug)]
pub struct Release {
    pub manifest: VerifiedManifest,
    pub chunks: Vec<ChunkRef>,
    pub sched: Swarm<Peer>,
    /// Chunks already held when this release was taken up (resume, or shared with an older one).
    pub held_at_start: u32,
}

impl Release {
    pub fn new<S: Store + ?Sized>(
        store: &S,
        manifest: VerifiedManifest,
        config: SwarmConfig,
        me: Peer,
        now: Duration,
    ) -> Result<Self, StoreError> {
        let chunks = unique_chunks(manifest.manifest());
        let mut have = Bitfield::new(chunks.len() as u32);
        for (i, c) in chunks.iter().enumerate() {
            if store.has_chunk(&c.id)? {
                have.set(i as u32);
            }
        }
        let held_at_start = have.count();
        let sched = Swarm::new(config, me, chunks.clone(), have, now);
        Ok(Self {
            manifest,
            chunks,
            sched,
            held_at_start,
        })
    }

    pub fn id(&self) -> ManifestId {
        self.manifest.id()
    }

    pub fn release(&self) -> u64 {
        self.manifest.manifest().release
    }
}
