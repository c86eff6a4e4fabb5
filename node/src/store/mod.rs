//! Local storage of chunks, manifests and node state.
//!
//! [`Store`] is the interface; [`RocksStore`] keeps it on disk (the seeder's
//! store: chunk bytes in append-only pack files owned by `packs`, their
//! index, manifests and state in RocksDB column families that carry a
//! version, e.g. `chunks-1`), [`ImageStore`]
//! keeps chunk bytes in the artifact images themselves (a device's slots, a
//! fetch's output) and the rest in RocksDB, [`MemStore`] in memory for tests
//! and the simulator. A store takes only chunks checked against their id beforehand
//! ([`VerifiedChunk`]: hashed once, on receipt or by the publisher's
//! chunker) and does not hash them again; a chunk read back to be served or
//! reassembled is checked once per read ([`Store::read_chunk`]), which
//! catches corruption at rest. Writes are idempotent. Helpers shared by both
//! live in [`ops`].
//!
//! Durability ([`RocksStore`] has the details): a chunk put with
//! [`Store::put_chunk`] survives a crash of the process once the put
//! returned, and power loss once [`Store::sync_chunks`] returned; one put
//! with [`Store::put_chunk_unlogged`] (bulk loads) only after
//! [`Store::sync_chunks`] (a close without it loses such chunks). Node state ([`Store::put_state`]) is synced to
//! disk on every write.

mod image;
pub mod keys;
mod local_copy;
mod memory;
mod ops;
mod packs;
mod rocks;

use pollen_core::chunk::{ChunkId, Rejected, VerifiedChunk};
use pollen_core::manifest::{ChunkRef, DecodeError, ManifestId, VerifiedManifest};

pub use image::{disk_usage, partial_path, ImageStore, Places};
pub use memory::MemStore;
pub use ops::{missing_chunks, reassemble_to, reassemble_to_file, Reassembled};
pub use packs::PackError;
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
    #[error("stored chunk {id} fails its check, not used: {reason}")]
    CorruptChunk { id: ChunkId, reason: Rejected },
    #[error("chunk refused: {0}")]
    Refused(Rejected),
    #[error("stored data is corrupt: column family {0} missing")]
    MissingColumnFamily(&'static str),
    #[error("stored data is corrupt: {cf} key of {len} bytes")]
    KeyLength { cf: &'static str, len: usize },
    #[error("stored data is corrupt: {what} of {channel} is {len} bytes")]
    ValueLength {
        what: &'static str,
        channel: String,
        len: usize,
    },
    #[error("stored data is corrupt: stored manifest {id}: {source}")]
    StoredManifest { id: ManifestId, source: DecodeError },
    #[error("stored data is corrupt: a stored manifest: {0}")]
    ManifestBytes(#[source] DecodeError),
    #[error("stored data is corrupt: slots: {0}")]
    Slots(#[source] Box<crate::update::UpdateError>),
    #[error("encoding the image target: {0}")]
    TargetEncoding(#[source] serde_json::Error),
    #[error("stored data is corrupt: release {0} is not the one being written")]
    NotWriting(u64),
    #[error("reassembled artifact hashes to {actual}, manifest says {expected}")]
    ArtifactMismatch { expected: String, actual: String },
    #[error("the store at {path} is in use or unreadable: {source}")]
    Open {
        path: String,
        source: rocksdb::Error,
    },
    #[error("database: {0}")]
    Db(#[from] rocksdb::Error),
    #[error(
        "stored data is corrupt: index entry {} is {len} bytes",
        hex::encode(key)
    )]
    IndexEntry { key: Vec<u8>, len: usize },
    #[error("pack files: {0}")]
    Pack(#[from] packs::PackError),
    #[error("the store at {path} keeps chunks in the old layout (chunks-0): open it once read-write (start `pollen-seeder serve` or `pollen-node` on it) to move them into pack files")]
    OldLayout { path: std::path::PathBuf },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("no space left on the device writing {path}")]
    NoSpace { path: String },
    #[error("release {release} ({size} bytes) does not fit the store budget of {budget} bytes ({used} bytes in use by the installed release and the database)")]
    OverBudget {
        release: u64,
        size: u64,
        used: u64,
        budget: u64,
    },
}

/// Whether a put added something.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Put {
    New,
    AlreadyHeld,
    /// Not part of the release being written (an answer that came late,
    /// for a release given up): nothing stored.
    Unwanted,
}

/// What every Pollen store offers. Implementations are safe to share
/// between threads.
pub trait Store: Send + Sync {
    /// Stores a chunk under its id; it survives a crash of the process once
    /// this returned. It was checked when it was made: the store does not
    /// hash it again.
    fn put_chunk(&self, chunk: VerifiedChunk) -> Result<Put, StoreError>;
    /// [`Store::put_chunk`] for each chunk, one result each in order. A
    /// store that syncs every put may sync once for the whole batch
    /// instead; each chunk is still durable when its result is `Ok`.
    fn put_chunks(&self, chunks: Vec<VerifiedChunk>) -> Vec<Result<Put, StoreError>> {
        chunks.into_iter().map(|c| self.put_chunk(c)).collect()
    }
    /// Like [`Store::put_chunk`], for bulk loads: cheaper, but the chunk may
    /// be lost by a crash until [`Store::sync_chunks`] returned. Name such
    /// chunks in nothing durable before that.
    fn put_chunk_unlogged(&self, chunk: VerifiedChunk) -> Result<Put, StoreError> {
        self.put_chunk(chunk)
    }
    /// Makes every chunk put so far survive a crash and power loss.
    fn sync_chunks(&self) -> Result<(), StoreError>;
    /// A chunk's bytes as stored, unchecked: prefer [`Store::read_chunk`].
    fn get_chunk(&self, id: &ChunkId) -> Result<Option<Vec<u8>>, StoreError>;
    /// A chunk read and checked against its manifest entry (one BLAKE3 per
    /// read): `Ok(None)` when it is not held, [`StoreError::CorruptChunk`]
    /// when what is held is not the chunk.
    fn read_chunk(&self, chunk: &ChunkRef) -> Result<Option<VerifiedChunk>, StoreError> {
        checked(chunk, self.get_chunk(&chunk.id)?)
    }
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

    /// The node takes up `manifest`'s release: a store that writes releases
    /// into images makes room for it here, or refuses it
    /// ([`StoreError::OverBudget`]) before any byte is written.
    fn take_up(&self, _manifest: &VerifiedManifest) -> Result<(), StoreError> {
        Ok(())
    }
    /// Completes the image of `manifest` in place and checks its whole
    /// BLAKE3, when this store writes releases into images: its path and
    /// hash. `None`: this store keeps chunks; reassemble them
    /// ([`reassemble_to`]).
    fn complete_image(
        &self,
        _manifest: &VerifiedManifest,
    ) -> Result<Option<(std::path::PathBuf, Reassembled)>, StoreError> {
        Ok(None)
    }
    /// The A/B slots were switched: read them again.
    fn slots_changed(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Deletes what no kept release needs (after a commit, at start).
    fn collect_garbage(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

impl From<Rejected> for StoreError {
    fn from(r: Rejected) -> Self {
        match r {
            Rejected::WrongLength { id, expected, got } => Self::WrongLength {
                id,
                expected,
                got: got as u64,
            },
            Rejected::WrongHash { id, actual, got } => Self::ChunkMismatch { id, actual, got },
            // `Rejected` is non-exhaustive; name the chunk as mismatched.
            _ => Self::Refused(r),
        }
    }
}

/// Reads the release floor of `channel` (0 when none was recorded).
pub fn floor<S: Store + ?Sized>(store: &S, channel: &str) -> Result<u64, StoreError> {
    match store.get_state(&keys::floor(channel))? {
        None => Ok(0),
        Some(v) => {
            let bytes: [u8; 8] = v
                .as_slice()
                .try_into()
                .map_err(|_| StoreError::ValueLength {
                    what: "floor",
                    channel: channel.to_owned(),
                    len: v.len(),
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

/// Sets the floor of `channel` to exactly `release`, lower or not: only
/// the commit of a recall (a fleet policy's floor reset) lowers it.
pub fn set_floor<S: Store + ?Sized>(
    store: &S,
    channel: &str,
    release: u64,
) -> Result<(), StoreError> {
    store.put_state(&keys::floor(channel), &release.to_be_bytes())
}

/// The manifest id of the release installed on `channel`, if any.
pub fn installed<S: Store + ?Sized>(
    store: &S,
    channel: &str,
) -> Result<Option<ManifestId>, StoreError> {
    match store.get_state(&keys::installed(channel))? {
        None => Ok(None),
        Some(v) => {
            let bytes: [u8; 32] = v
                .as_slice()
                .try_into()
                .map_err(|_| StoreError::ValueLength {
                    what: "installed id",
                    channel: channel.to_owned(),
                    len: v.len(),
                })?;
            Ok(Some(ManifestId(bytes)))
        }
    }
}

/// What a store read for `chunk` (if anything), checked against its entry.
pub(crate) fn checked(
    chunk: &ChunkRef,
    bytes: Option<Vec<u8>>,
) -> Result<Option<VerifiedChunk>, StoreError> {
    match bytes {
        None => Ok(None),
        Some(bytes) => VerifiedChunk::check(chunk, bytes)
            .map(Some)
            .map_err(|reason| StoreError::CorruptChunk {
                id: chunk.id,
                reason,
            }),
    }
}

#[cfg(test)]
mod packs_tests;
#[cfg(test)]
pub(crate) mod tests;
