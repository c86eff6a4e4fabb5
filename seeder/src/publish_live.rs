//! Publishing into the store of a running seeder, without stopping it.
//!
//! The serving seeder holds its RocksDB store's lock, so `publish` cannot
//! write it. Instead it numbers the release from a read-only view of the
//! store (as `rollout` and `status` read it), chunks and signs into a
//! [`Staging`] folder inside the store directory (the export layout:
//! `manifest.pollen` and `chunks/`, holding only the chunks the store
//! lacks), and hands the folder to the seeder's local endpoint
//! (`POST /release`). The seeder judges and imports it, serves it and
//! announces it to its peers at once, and answers with the manifest id or
//! why it refused. The folder is removed in every case.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use pollen_core::chunk::VerifiedChunk;
use pollen_core::manifest::VerifiedManifest;
use pollen_node::api::{self, ApiError};
use pollen_node::driver::{CHUNK_DIR, MANIFEST_FILE};
use pollen_node::store::{Put, RocksStore, Store, StoreError};

use crate::publish::{publish_into, PublishError, PublishReport, PublishRequest, Sink};

/// Errors of a publish to a running seeder.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LiveError {
    #[error("reading the served store: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error("handing the release to the running seeder: {0}")]
    Api(ApiError),
    #[error("the running seeder refused the release: {0}")]
    Refused(String),
    #[error("the running seeder stored manifest {stored}, not {published}")]
    Mismatch { stored: String, published: String },
}

/// A folder inside the store's staging folder, removed when dropped.
#[derive(Debug)]
pub struct Staging {
    dir: PathBuf,
    /// The served store, read-only: chunks it holds are not staged again.
    known: RocksStore,
}

impl Staging {
    /// A new, empty staging folder for a release into `store_dir`.
    pub fn create(store_dir: &Path, known: RocksStore) -> Result<Self, PublishError> {
        use std::os::unix::fs::DirBuilderExt;
        let root = api::staging_dir(store_dir);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let dir = root.join(format!("{}-{nanos}", std::process::id()));
        let staging = |path: &Path| {
            let path = path.to_owned();
            move |source| PublishError::Staging { path, source }
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir.join(CHUNK_DIR))
            .map_err(staging(&dir))?;
        Ok(Self { dir, known })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn chunk_path(&self, chunk: &VerifiedChunk) -> PathBuf {
        self.dir.join(CHUNK_DIR).join(chunk.id().to_hex())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "removing the staging folder");
        }
    }
}

impl Sink for Staging {
    fn put_chunk(&self, chunk: VerifiedChunk) -> Result<Put, PublishError> {
        let path = self.chunk_path(&chunk);
        if self.known.has_chunk(&chunk.id())? || path.exists() {
            return Ok(Put::AlreadyHeld);
        }
        std::fs::write(&path, chunk.bytes())
            .map_err(|source| PublishError::Staging { path, source })?;
        Ok(Put::New)
    }

    /// The seeder reads the files before they could be lost; it makes
    /// what it stores durable itself.
    fn sync_chunks(&self) -> Result<(), PublishError> {
        Ok(())
    }

    fn put_manifest(&self, manifest: &VerifiedManifest) -> Result<(), PublishError> {
        let path = self.dir.join(MANIFEST_FILE);
        std::fs::write(&path, manifest.to_bytes())
            .map_err(|source| PublishError::Staging { path, source })
    }
}

/// Publishes `req` into `store_dir`, whose seeder answers on `addr`: the
/// release is served when this returns `Ok`.
pub fn publish_live(
    store_dir: &Path,
    addr: SocketAddr,
    req: &PublishRequest<'_>,
    progress: impl FnMut(u64),
) -> Result<(PublishReport, VerifiedManifest), LiveError> {
    let known = RocksStore::open_read_only(store_dir)?;
    // Numbered from the same view of the store that the staging folder
    // leaves out the chunks of; the seeder checks the number again.
    let numbering = RocksStore::open_read_only(store_dir)?;
    let staging = Staging::create(store_dir, known)?;
    let (mut report, verified) = publish_into(&numbering, &staging, req, progress)?;
    let path = staging.path().to_string_lossy().into_owned();
    tracing::info!(staging = %path, %addr, "handing the release to the running seeder");
    let answer = api::request_within(
        addr,
        "POST",
        "/release",
        path.as_bytes(),
        api::RELEASE_DEADLINE,
    );
    let stored = match answer {
        Ok(id) => id.trim().to_owned(),
        Err(ApiError::Status { body, .. }) => return Err(LiveError::Refused(body)),
        Err(e) => return Err(LiveError::Api(e)),
    };
    if stored != report.manifest_id {
        return Err(LiveError::Mismatch {
            stored,
            published: report.manifest_id,
        });
    }
    report.live = true;
    Ok((report, verified))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pollen_core::chunk::ChunkId;

    #[test]
    fn stages_only_new_chunks_and_removes_the_folder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store_dir = dir.path().join("store");
        let chunk = |bytes: &'static [u8]| {
            VerifiedChunk::check_id(ChunkId(*blake3::hash(bytes).as_bytes()), bytes).expect("chunk")
        };
        {
            let store = RocksStore::open(&store_dir).expect("store");
            Store::put_chunk(&store, chunk(b"held")).expect("put");
        }
        let known = RocksStore::open_read_only(&store_dir).expect("read-only");
        let staging = Staging::create(&store_dir, known).expect("staging");
        let path = staging.path().to_owned();
        assert!(path.starts_with(api::staging_dir(&store_dir)));
        let put = |bytes| Sink::put_chunk(&staging, chunk(bytes)).expect("put");
        assert_eq!(put(b"held"), Put::AlreadyHeld);
        assert_eq!(put(b"new"), Put::New);
        assert_eq!(put(b"new"), Put::AlreadyHeld);
        assert_eq!(
            std::fs::read_dir(path.join(CHUNK_DIR))
                .expect("chunks")
                .count(),
            1
        );
        drop(staging);
        assert!(!path.exists(), "the staging folder is removed");
    }
}
