//! A release handed to a running seeder by `pollen-seeder publish`
//! (`POST /release` on the local endpoint): the staged folder's manifest
//! is judged like any release (the release role of the held policy, the
//! seeder's channel, not expired, not recalled, numbered above every
//! release of the channel in the store), the chunks the store lacks are
//! read from the folder, BLAKE3-checked and written on a blocking thread,
//! then the seeder serves it and announces it to every peer at once.
//! One release at a time; the caller hears the manifest id or the reason.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use pollen_core::chunk::VerifiedChunk;
use pollen_core::manifest::{
    check_context, verify, SignedManifest, VerifiedManifest, VerifyContext, VerifyError,
    MAX_MANIFEST_BYTES,
};
use pollen_core::trust::VerifiedPolicy;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{Driver, DriverError, Mode};
use crate::api::ReleaseReply;
use crate::import::{ChunkSource, ImportError};
use crate::store::{self, Store, StoreError};

/// The manifest's file name in a staged folder (as `export` writes it).
pub const MANIFEST_FILE: &str = "manifest.pollen";
/// The chunk folder in a staged folder, files named by chunk id.
pub const CHUNK_DIR: &str = "chunks";

/// Why a staged release was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IntakeError {
    #[error("only a seeder takes releases through its local endpoint")]
    NotSeeder,
    #[error("another release is being imported; try again once it is served")]
    Busy,
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("manifest refused: {0}")]
    Verify(#[from] VerifyError),
    #[error("release {release} ({manifest}) is recalled by fleet policy version {version}")]
    Recalled {
        release: u64,
        manifest: String,
        version: u64,
    },
    #[error(
        "release {requested} is not above release {newest} already published on channel {channel}"
    )]
    NotNewer {
        requested: u64,
        newest: u64,
        channel: String,
    },
    #[error("chunk {id} ({len} bytes) is missing from the staged release")]
    MissingChunk { id: String, len: u32 },
    #[error(transparent)]
    Import(#[from] ImportError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the import thread failed: {0}")]
    Join(#[source] tokio::task::JoinError),
}

/// What the import thread needs, owned.
struct Job {
    store: Arc<dyn Store>,
    dir: PathBuf,
    channel: String,
    /// The held policy (`None`: a seeder without one trusts its publisher,
    /// as an offline `publish` into its store does; devices judge).
    policy: Option<VerifiedPolicy>,
    now: u64,
}

/// The import under way and who waits for its answer.
#[derive(Debug)]
pub(super) struct Intake {
    task: JoinHandle<Result<VerifiedManifest, IntakeError>>,
    reply: oneshot::Sender<ReleaseReply>,
}

/// The import thread's result, once there is one.
pub(super) async fn intake_done(
    intake: &mut Option<Intake>,
) -> Result<VerifiedManifest, IntakeError> {
    match intake {
        Some(i) => (&mut i.task)
            .await
            .unwrap_or_else(|e| Err(IntakeError::Join(e))),
        None => std::future::pending().await,
    }
}

impl<S: Store + 'static> Driver<S> {
    /// `POST /release`: starts importing the staged folder `dir` (already
    /// checked to be inside the store's staging folder by the endpoint).
    pub(super) fn on_staged_release(&mut self, dir: PathBuf, reply: oneshot::Sender<ReleaseReply>) {
        let refused = if self.config.mode != Mode::Seed {
            Some(IntakeError::NotSeeder)
        } else if self.intake.is_some() {
            Some(IntakeError::Busy)
        } else {
            None
        };
        if let Some(e) = refused {
            tracing::warn!(dir = %dir.display(), error = %e, "refused a staged release");
            let _ = reply.send(Err(e.to_string()));
            return;
        }
        tracing::info!(dir = %dir.display(), "importing a staged release");
        let job = Job {
            store: self.store.clone(),
            dir,
            channel: self.config.channel.clone(),
            policy: self.trust.policy().cloned(),
            now: crate::unix_now(),
        };
        let task = tokio::task::spawn_blocking(move || job.run());
        self.intake = Some(Intake { task, reply });
    }

    /// The import finished: a stored release is served and announced at
    /// once; either way the publisher hears the outcome.
    pub(super) fn on_intake_done(
        &mut self,
        done: Result<VerifiedManifest, IntakeError>,
    ) -> Result<(), DriverError> {
        let Some(intake) = self.intake.take() else {
            return Ok(());
        };
        let answer = match done {
            Ok(v) => {
                let id = v.id().to_hex();
                tracing::info!(manifest = %id, release = v.manifest().release, "serving a release published live");
                self.switch_release(v)?;
                self.update_snapshot();
                Ok(id)
            }
            Err(e) => {
                tracing::warn!(error = %e, "refused a staged release");
                Err(e.to_string())
            }
        };
        let _ = intake.reply.send(answer);
        Ok(())
    }
}

impl Job {
    fn run(self) -> Result<VerifiedManifest, IntakeError> {
        let bytes = read_manifest(&self.dir.join(MANIFEST_FILE))?;
        let verified = self.judge(&bytes)?;
        let m = verified.manifest();
        let missing = store::missing_chunks(self.store.as_ref(), m)?;
        let chunks = self.dir.join(CHUNK_DIR);
        // Every missing chunk is there, at its length, before any is
        // written: a release short of a chunk leaves the store as it was.
        for c in &missing {
            let len = std::fs::metadata(chunks.join(c.id.to_hex())).map(|m| m.len());
            if len.ok() != Some(u64::from(c.len)) {
                return Err(IntakeError::MissingChunk {
                    id: c.id.to_hex(),
                    len: c.len,
                });
            }
        }
        let source = ChunkSource::Dir(chunks);
        for c in &missing {
            let chunk = VerifiedChunk::check(c, source.read(c)?)
                .map_err(|r| ImportError::Chunk(r.into()))?;
            self.store.put_chunk_unlogged(chunk)?;
        }
        // The manifest names these chunks: durable first.
        self.store.sync_chunks()?;
        self.store.put_manifest(&verified)?;
        tracing::info!(manifest = %verified.id(), release = m.release, new_chunks = missing.len(), "staged release stored");
        Ok(verified)
    }

    /// The manifest, judged as a device judges it, and numbered above every
    /// release of the channel in the store.
    fn judge(&self, bytes: &[u8]) -> Result<VerifiedManifest, IntakeError> {
        let ctx = VerifyContext {
            now: self.now,
            floor: 0,
            hardware: None,
            channel: Some(self.channel.clone()),
        };
        let verified = match &self.policy {
            Some(p) => verify(bytes, &p.policy().release, &ctx)?,
            None => unverified(bytes, &ctx)?,
        };
        let m = verified.manifest();
        if let Some(p) = self
            .policy
            .as_ref()
            .filter(|p| p.policy().is_recalled(&verified.id()))
        {
            return Err(IntakeError::Recalled {
                release: m.release,
                manifest: verified.id().to_hex(),
                version: p.version(),
            });
        }
        let newest = newest_release(self.store.as_ref(), &self.channel, self.policy.as_ref())?;
        if m.release <= newest {
            return Err(IntakeError::NotNewer {
                requested: m.release,
                newest,
                channel: self.channel.clone(),
            });
        }
        Ok(verified)
    }
}

/// Without a policy the seeder has no keys to check signatures against:
/// everything else a device checks is checked (and devices check the rest).
fn unverified(bytes: &[u8], ctx: &VerifyContext) -> Result<VerifiedManifest, VerifyError> {
    let signed = SignedManifest::decode(bytes)?;
    check_context(signed.manifest(), ctx)?;
    Ok(VerifiedManifest::assume_verified(signed))
}

/// The newest release number of `channel` in `store`, recalled ones left out.
fn newest_release(
    store: &dyn Store,
    channel: &str,
    policy: Option<&VerifiedPolicy>,
) -> Result<u64, StoreError> {
    let mut newest = 0;
    for id in store.manifest_ids()? {
        if policy.is_some_and(|p| p.policy().is_recalled(&id)) {
            continue;
        }
        let bytes = store.get_manifest(&id)?.unwrap_or_default();
        if let Ok(s) = SignedManifest::decode(&bytes) {
            if s.manifest().channel == channel {
                newest = newest.max(s.manifest().release);
            }
        }
    }
    Ok(newest)
}

/// The staged manifest file, at most [`MAX_MANIFEST_BYTES`] (one more is
/// read, so an oversized file is refused by the decoder, not truncated).
fn read_manifest(path: &Path) -> Result<Vec<u8>, IntakeError> {
    let io = |source| IntakeError::Io {
        path: path.to_owned(),
        source,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(io)?
        .take(MAX_MANIFEST_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    Ok(bytes)
}
