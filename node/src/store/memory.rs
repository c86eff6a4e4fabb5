//! In-memory [`Store`] for tests and the simulator.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use pollen_core::chunk::{ChunkId, VerifiedChunk};
use pollen_core::manifest::{ManifestId, VerifiedManifest};

use super::{Put, Store, StoreError};

#[derive(Debug, Default)]
struct Inner {
    chunks: BTreeMap<ChunkId, Bytes>,
    manifests: BTreeMap<ManifestId, Vec<u8>>,
    state: BTreeMap<String, Vec<u8>>,
}

/// A store that lives and dies with the process.
#[derive(Debug, Default)]
pub struct MemStore {
    inner: Mutex<Inner>,
}

impl MemStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-applied write:
        // every write is a single map insertion.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Store for MemStore {
    fn put_chunk(&self, chunk: VerifiedChunk) -> Result<Put, StoreError> {
        let mut inner = self.lock();
        if inner.chunks.contains_key(&chunk.id()) {
            return Ok(Put::AlreadyHeld);
        }
        inner.chunks.insert(chunk.id(), chunk.into_bytes());
        Ok(Put::New)
    }

    fn sync_chunks(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn get_chunk(&self, id: &ChunkId) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock().chunks.get(id).map(|b| b.to_vec()))
    }

    fn has_chunk(&self, id: &ChunkId) -> Result<bool, StoreError> {
        Ok(self.lock().chunks.contains_key(id))
    }

    fn chunk_ids(&self) -> Result<Vec<ChunkId>, StoreError> {
        Ok(self.lock().chunks.keys().copied().collect())
    }

    fn put_manifest(&self, manifest: &VerifiedManifest) -> Result<Put, StoreError> {
        let mut inner = self.lock();
        if inner.manifests.contains_key(&manifest.id()) {
            return Ok(Put::AlreadyHeld);
        }
        inner.manifests.insert(manifest.id(), manifest.to_bytes());
        Ok(Put::New)
    }

    fn get_manifest(&self, id: &ManifestId) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock().manifests.get(id).cloned())
    }

    fn manifest_ids(&self) -> Result<Vec<ManifestId>, StoreError> {
        Ok(self.lock().manifests.keys().copied().collect())
    }

    fn get_state(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock().state.get(key).cloned())
    }

    fn put_state(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.lock().state.insert(key.to_owned(), value.to_vec());
        Ok(())
    }

    fn state_with_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        Ok(self
            .lock()
            .state
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}
