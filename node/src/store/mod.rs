//! Local storage of chunks, manifests and node state.
//!
//! [`Store`] is the interface; [`RocksStore`] keeps it on disk (column families
//! carry a version, e.g. `chunks-0`), [`MemStore`] in memory for tests and the
//! simulator. Every chunk is checked against its id *before* it is written,
//! and writes are idempotent. Helpers shared by both live in [`ops`].

pub mod keys;
mod memory;
mod ops;
mod rocks;

use pollen_core::chunk::ChunkId;
use pollen_core::manifest::{ManifestId, VerifiedManifest};

pub use memory::MemStore;
pub use ops::{missing_chunks, reassemble_to, reassemble_to_file, Reassembled};
pub use rocks::RocksStore;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("chunk {id} does not match its id (got {got} bytes hashing to {actual}); not stored")]
    ChunkMismatch {
        id: ChunkId,
        actual: ChunkId,
        got: usize,
    },
    #[error("chunk {id} is {got} bytes, the manifest says {expected}; not stored")]
    WrongLength {
        id: ChunkId,
        expected: u32,
        got: u64,
    },
    #[error("chunk {0} is not in the store")]
    MissingChunk(ChunkId),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("reassembled artifact hashes to {actual}, manifest says {expected}")]
    ArtifactMismatch { expected: String, actual: String },
    #[error("the store at {path} is in use or unreadable: {source}")]
    Open {
        path: String,
        source: rocksdb::Error,
    },
    #[error("database: {0}")]
    Db(#[from] rocksdb::Error),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

/// Whether a put added something.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Put {
    New,
    AlreadyHeld,
}

/// What every Pollen store offers. Implementations are safe to share
/// between threads.
pub trait Store: Send + Sync {
    /// Stores `bytes` under `id` after checking `BLAKE3(bytes) == id`.
    fn put_chunk(&self, id: &ChunkId, bytes: &[u8]) -> Result<Put, StoreError>;
    fn get_chunk(&self, id: &ChunkId) -> Result<Option<Vec<u8>>, StoreError>;
    fn has_chunk(&self, id: &ChunkId) -> Result<bool, StoreError>;
    /// Every chunk id held, in id order.
    fn chunk_ids(&self) -> Result<Vec<ChunkId>, StoreError>;
    /// Stores a manifest that passed verification (its envelope bytes).
    fn put_manifest(&self, manifest: &VerifiedManifest) -> Result<Put, StoreError>;
    /// Envelope bytes of a stored manifest; verify them again before trusting them.
    fn get_manifest(&self, id: &ManifestId) -> Result<Option<Vec<u8>>, StoreError>;
    fn manifest_ids(&self) -> Result<Vec<ManifestId>, StoreError>;
    fn get_state(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    fn put_state(&self, key: &str, value: &[u8]) -> Result<(), StoreError>;
    /// Every state entry whose key starts with `prefix`, in key order.
    fn state_with_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError>;
}

/// Checks a chunk against its id: the one gate before any write.
pub(crate) fn check_chunk(id: &ChunkId, bytes: &[u8]) -> Result<(), StoreError> {
    if id.matches(bytes) {
        Ok(())
    } else {
        Err(StoreError::ChunkMismatch {
            id: *id,
            actual: ChunkId::of(bytes),
            got: bytes.len(),
        })
    }
}

/// Reads the release floor of `channel` (0 when none was recorded).
pub fn floor<S: Store + ?Sized>(store: &S, channel: &str) -> Result<u64, StoreError> {
    match store.get_state(&keys::floor(channel))? {
        None => Ok(0),
        Some(v) => {
            let bytes: [u8; 8] = v.as_slice().try_into().map_err(|_| {
                StoreError::Corrupt(format!("floor of {channel} is {} bytes", v.len()))
            })?;
            Ok(u64::from_be_bytes(bytes))
        }
    }
}

/// Raises the floor of `channel` to `release`; never lowers it.
pub fn raise_floor<S: Store + ?Sized>(
    store: &S,
    channel: &str,
    release: u64,
) -> Result<u64, StoreError> {
    let new = floor(store, channel)?.max(release);
    store.put_state(&keys::floor(channel), &new.to_be_bytes())?;
    Ok(new)
}

#[cfg(test)]
pub(crate) mod tests;
