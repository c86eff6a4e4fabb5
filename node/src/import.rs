//! The offline path: a release carried as a manifest plus a chunk folder (or
//! a store directory), verified, stored, reassembled, and recorded.
//!
//! Order matters for the threats of DESIGN.md §4: the manifest is verified
//! against a *read-only* view of the store first, so a refused manifest
//! changes no byte on disk (a release its publisher halted is refused there
//! too); each chunk is checked before it is written; then the release goes
//! through the update lifecycle ([`crate::update`]), whose commit is the only
//! thing that raises the floor. Every step is idempotent, so a run killed at
//! any point can simply be run again: it finishes what the crash interrupted.

use std::path::{Path, PathBuf};

use pollen_core::chunk::{ChunkId, VerifiedChunk};
use std::sync::Arc;

use pollen_core::manifest::{verify, ChunkRef, VerifiedManifest, VerifyContext, VerifyError};
use pollen_core::rollout::{ControlError, VerifiedControl};
use pollen_core::status::Phase;
use pollen_core::trust::VerifiedPolicy;
use serde::Serialize;

use crate::policy_store::PolicyStoreError;
use crate::store::{self, ImageStore, Places, Put, RocksStore, Store, StoreError};
use crate::update::{self, Outcome, UpdateConfig, UpdateError, Updater};

/// Where the chunks come from.
#[derive(Debug)]
pub enum ChunkSource {
    /// A folder of files named by chunk id (64 hex digits).
    Dir(PathBuf),
    /// Another Pollen store (for example the publisher's), opened read-only.
    Store(RocksStore),
}

impl ChunkSource {
    /// A store directory if `path` holds one, otherwise a chunk folder.
    pub fn open(path: &Path) -> Result<Self, ImportError> {
        if RocksStore::exists(path) {
            Ok(Self::Store(RocksStore::open_read_only(path)?))
        } else if path.is_dir() {
            Ok(Self::Dir(path.to_owned()))
        } else {
            Err(ImportError::NoSource(path.to_owned()))
        }
    }

    pub(crate) fn read(&self, chunk: &ChunkRef) -> Result<Vec<u8>, ImportError> {
        let missing = || ImportError::NotInSource(chunk.id);
        match self {
            Self::Store(s) => s.get_chunk(&chunk.id)?.ok_or_else(missing),
            Self::Dir(dir) => {
                let path = dir.join(chunk.id.to_hex());
                let len = match std::fs::metadata(&path) {
                    Ok(m) => m.len(),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(missing()),
                    Err(e) => return Err(ImportError::Io { path, source: e }),
                };
                if len != u64::from(chunk.len) {
                    return Err(ImportError::Chunk(StoreError::WrongLength {
                        id: chunk.id,
                        expected: chunk.len,
                        got: len,
                    }));
                }
                std::fs::read(&path).map_err(|source| ImportError::Io { path, source })
            }
        }
    }
}

/// Everything an import needs, parsed and typed.
#[derive(Debug)]
pub struct ImportRequest {
    pub data_dir: PathBuf,
    /// The device's first policy (trust file or policy file); the store's
    /// newer one wins.
    pub policy: VerifiedPolicy,
    pub manifest: Vec<u8>,
    pub source: ChunkSource,
    pub out: Option<PathBuf>,
    pub hardware: Option<String>,
    pub channel: Option<String>,
    pub now: u64,
    /// A rollout control carried with the release (signed bytes).
    pub control: Option<Vec<u8>>,
    /// Install through the lifecycle after storing; `None` only stocks the store.
    pub install: Option<UpdateConfig>,
    /// Most the data directory may take (`--store-budget`).
    pub store_budget: Option<u64>,
}

/// What an import did; `--json` prints this.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ImportReport {
    pub manifest_id: String,
    pub channel: String,
    pub version: String,
    pub release: u64,
    pub chunks_total: usize,
    /// Chunks that were already in the store (resume, or shared with an older release).
    pub chunks_present: usize,
    pub chunks_new: usize,
    pub bytes_new: u64,
    pub artifact_bytes: u64,
    pub artifact_blake3: String,
    pub out: Option<PathBuf>,
    pub floor: u64,
    /// The lifecycle's result: committed, rolled-back, failed, deferred, retry,
    /// nothing (already installed); `None` when not installing.
    pub install: Option<String>,
    /// The lifecycle phase afterwards and its last error, if any.
    pub phase: Option<String>,
    pub last_error: Option<String>,
    pub active_slot: Option<String>,
    /// This release ended rolled back or failed (now or in an interrupted earlier run).
    pub install_failed: bool,
}

/// Errors of the import path.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    #[error("manifest refused: {0}")]
    Verify(#[from] VerifyError),
    #[error("chunk refused: {0}")]
    Chunk(StoreError),
    #[error("chunk source: {} is neither a chunk folder nor a store", .0.display())]
    NoSource(PathBuf),
    #[error("chunk source: chunk {0} is not in the source")]
    NotInSource(ChunkId),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("release {release} was halted by its publisher: not installing it")]
    Halted { release: u64 },
    #[error("{0}")]
    Control(#[from] ControlError),
    #[error("control is for release {control}, not for this manifest ({manifest})")]
    ControlMismatch { control: String, manifest: String },
    #[error(transparent)]
    Update(#[from] UpdateError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Policy(#[from] PolicyStoreError),
    #[error("release {release} ({manifest}) is recalled by fleet policy version {version}")]
    Recalled {
        release: u64,
        manifest: String,
        version: u64,
    },
}

/// The store directory inside a node's data directory.
pub fn store_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("store")
}

/// Opens a device's store: its database in `DATA/store` (created private
/// if missing), releases written into the slots under `DATA/slots`.
pub fn open_device_store(data_dir: &Path, budget: Option<u64>) -> Result<ImageStore, StoreError> {
    open_image_store(
        data_dir,
        Places::Slots(crate::update::Slots::new(data_dir)),
        budget,
    )
}

/// Opens the store of a data directory that writes releases into `places`.
pub fn open_image_store(
    data_dir: &Path,
    places: Places,
    budget: Option<u64>,
) -> Result<ImageStore, StoreError> {
    let dir = store_dir(data_dir);
    crate::cli_support::create_private_dir(&dir).map_err(|source| StoreError::Io {
        context: format!("creating {}", dir.display()),
        source,
    })?;
    ImageStore::open(RocksStore::open(&dir)?, places, budget)
}

/// The policy to judge by: the store's, if it holds a newer one than the
/// device's first policy.
fn held_policy(
    store: Option<&RocksStore>,
    first: &VerifiedPolicy,
) -> Result<VerifiedPolicy, ImportError> {
    let stored = match store {
        Some(s) => crate::policy_store::stored(s)?,
        None => None,
    };
    Ok(match stored {
        Some(s) if s.version() >= first.version() => s,
        _ => first.clone(),
    })
}

/// Takes a fleet policy carried offline (a rotation, a revocation, a
/// recall) into the node's store, if it is a valid rotation of the policy
/// the node holds; returns the version now held. Nothing changes on a
/// refusal. The node must not be running (its store is locked); a running
/// node takes it through its local endpoint instead.
pub fn import_policy(
    data_dir: &Path,
    first: VerifiedPolicy,
    bytes: &[u8],
    now: u64,
) -> Result<u64, ImportError> {
    let dir = store_dir(data_dir);
    std::fs::create_dir_all(&dir).map_err(|source| ImportError::Io {
        path: dir.clone(),
        source,
    })?;
    let store = RocksStore::open(&dir)?;
    let held = crate::policy_store::held(&store, Some(first.clone()), now)?.unwrap_or(first);
    // Importing the policy already held is not an error (a stick used twice).
    if held.to_bytes().as_deref() == Some(bytes) {
        return Ok(held.version());
    }
    Ok(crate::policy_store::adopt(&store, &held, bytes, now)?.version())
}

/// Verifies `req.manifest` against the node's current floor, and refuses a
/// halted release when installing, without writing anything.
pub fn check_manifest(req: &ImportRequest) -> Result<VerifiedManifest, ImportError> {
    let dir = store_dir(&req.data_dir);
    let ro = match RocksStore::exists(&dir) {
        true => Some(RocksStore::open_read_only(&dir)?),
        false => None,
    };
    let policy = held_policy(ro.as_ref(), &req.policy)?;
    let (release_role, operator) = (&policy.policy().release, &policy.policy().operator);
    let floor = match (&req.channel, &ro) {
        (_, None) => 0,
        (channel, Some(ro)) => {
            // With no channel pinned, judge against the floor of the manifest's own channel.
            let channel = match channel {
                Some(c) => c.clone(),
                None => pollen_core::SignedManifest::decode(&req.manifest)
                    .map(|s| s.manifest().channel.clone())
                    .unwrap_or_default(),
            };
            let stored = store::floor(ro, &channel)?;
            match store::installed(ro, &channel)? {
                Some(id) => policy.policy().floor(&channel, Some((id, stored))),
                None => stored,
            }
        }
    };
    let ctx = VerifyContext {
        now: req.now,
        floor,
        hardware: req.hardware.clone(),
        channel: req.channel.clone(),
    };
    let verified = verify(&req.manifest, release_role, &ctx)?;
    if policy.policy().is_recalled(&verified.id()) {
        return Err(ImportError::Recalled {
            release: verified.manifest().release,
            manifest: verified.id().to_hex(),
            version: policy.version(),
        });
    }
    let carried = match &req.control {
        Some(bytes) => {
            let c = VerifiedControl::from_bytes(bytes, operator)?;
            if c.control().release != verified.id() {
                return Err(ImportError::ControlMismatch {
                    control: c.control().release.to_hex(),
                    manifest: verified.id().to_hex(),
                });
            }
            Some(c)
        }
        None => None,
    };
    let held = match &ro {
        Some(ro) => crate::controls::load(ro, &verified.id(), operator)?,
        None => None,
    };
    let newest = [carried, held]
        .into_iter()
        .flatten()
        .max_by_key(|c| c.control().seq);
    if req.install.is_some() && newest.is_some_and(|c| c.control().halted) {
        return Err(ImportError::Halted {
            release: verified.manifest().release,
        });
    }
    Ok(verified)
}

/// Runs the import; `progress(done, total)` is called after each chunk.
pub fn import(
    req: ImportRequest,
    mut progress: impl FnMut(usize, usize),
) -> Result<ImportReport, ImportError> {
    let verified = check_manifest(&req)?;
    let m = verified.manifest();
    let store = Arc::new(open_device_store(&req.data_dir, req.store_budget)?);
    let mut updater = match &req.install {
        Some(config) => {
            let mut u = Updater::open(store.clone(), config.clone())?;
            // A run killed mid-install is finished (or undone) before anything new.
            u.recover()?;
            Some(u)
        }
        None => None,
    };
    let held = held_policy(Some(store.db()), &req.policy)?;
    if let Some(bytes) = &req.control {
        if let Ok(c) = VerifiedControl::from_bytes(bytes, &held.policy().operator) {
            crate::controls::save_if_newer(store.as_ref(), &c)?;
        }
    }

    // The manifest first: the store names the chunks it holds of a release
    // by its manifest, so an import killed halfway resumes where it stopped.
    let stored = store.put_manifest(&verified)?;
    // Refused here, before any chunk byte is written, if it does not fit
    // (and the manifest is taken out again: a refusal changes nothing).
    if let Err(e) = store.take_up(&verified) {
        if let (StoreError::OverBudget { .. }, Put::New) = (&e, stored) {
            store.db().delete_manifest(&verified.id())?;
        }
        return Err(e.into());
    }
    let total = m.chunks.len();
    let missing = store::missing_chunks(store.as_ref(), m)?;
    let present = pollen_core::swarm::unique_chunks(m).len() - missing.len();
    let (mut chunks_new, mut bytes_new) = (0, 0u64);
    progress(total - missing.len(), total);
    for (i, c) in missing.iter().enumerate() {
        if i == missing.len() / 2 {
            update::failpoint("importing");
        }
        let chunk = VerifiedChunk::check(c, req.source.read(c)?)
            .map_err(|r| ImportError::Chunk(r.into()))?;
        if store.put_chunk(chunk)? == Put::New {
            chunks_new += 1;
            bytes_new += u64::from(c.len);
        }
        tracing::debug!(chunk = %c.id, len = c.len, "stored");
        progress(total - missing.len() + i + 1, total);
    }
    // Durable (power loss too) before the lifecycle goes on.
    store.sync_chunks()?;

    let reassembled = match &req.out {
        Some(path) => store::reassemble_to_file(store.as_ref(), m, path)?,
        None => store::reassemble_to(store.as_ref(), m, &mut std::io::sink())?,
    };
    tracing::info!(manifest = %verified.id(), release = m.release, chunks_new, "imported");
    let recall = store::installed(store.as_ref(), &m.channel)?
        .is_some_and(|id| held.policy().is_recalled(&id));
    let outcome = match &mut updater {
        Some(u) => Some(u.install(&verified, recall)?),
        None => None,
    };
    let record = updater.as_ref().map(|u| u.record().clone());
    let active_slot = match &updater {
        Some(u) => u.slots().active()?.map(|s| s.name().to_owned()),
        None => None,
    };
    let floor = store::floor(store.as_ref(), &m.channel)?;
    Ok(ImportReport {
        manifest_id: verified.id().to_hex(),
        channel: m.channel.clone(),
        version: m.version.clone(),
        release: m.release,
        chunks_total: total,
        chunks_present: present,
        chunks_new,
        bytes_new,
        artifact_bytes: reassembled.bytes,
        artifact_blake3: hex::encode(reassembled.blake3),
        out: req.out.clone(),
        floor,
        install: outcome.map(|o| outcome_name(&o).to_owned()),
        phase: record.as_ref().map(|r| r.phase.to_string()),
        install_failed: record.as_ref().is_some_and(|r| {
            r.target
                .as_ref()
                .is_some_and(|t| t.release.manifest == verified.id())
                && matches!(r.phase, Phase::RolledBack | Phase::Failed)
        }),
        last_error: record.and_then(|r| r.last_error),
        active_slot,
    })
}

/// How an outcome is printed.
pub fn outcome_name(o: &Outcome) -> &'static str {
    match o {
        Outcome::Nothing => "nothing",
        Outcome::Committed => "committed",
        Outcome::RolledBack => "rolled-back",
        Outcome::Failed => "failed",
        Outcome::Deferred => "deferred",
        Outcome::Retry => "retry",
    }
}
