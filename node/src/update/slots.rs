//! The A/B slots: two directories under `DATA/slots` and an `active`
//! symlink naming one of them, switched atomically (a new link renamed over
//! the old). Staging writes only the slot `active` does not name, through a
//! temporary file that is synced and renamed, so the active slot is never
//! written and never half-written.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use pollen_core::manifest::VerifiedManifest;
use serde::{Deserialize, Serialize};

use super::{failpoint, UpdateError};
use crate::store::{Store, StoreError};

/// One of the two slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Slot {
    A,
    B,
}

impl Slot {
    pub fn name(self) -> &'static str {
        match self {
            Slot::A => "a",
            Slot::B => "b",
        }
    }
    pub fn other(self) -> Self {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }
}

/// What a slot holds, written beside its artifact once the artifact is complete.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotInfo {
    pub manifest: String,
    pub release: u64,
    pub version: String,
    pub size: u64,
    pub blake3: String,
}

/// The slot directories of one data directory.
#[derive(Clone, Debug)]
pub struct Slots {
    root: PathBuf,
}

const ACTIVE: &str = "active";
const ARTIFACT: &str = "artifact";
const INFO: &str = "release.json";

fn io(context: String) -> impl FnOnce(std::io::Error) -> UpdateError {
    move |source| UpdateError::Io { context, source }
}

impl Slots {
    pub fn new(data_dir: &Path) -> Self {
        Self {
            root: data_dir.join("slots"),
        }
    }

    pub fn dir(&self, slot: Slot) -> PathBuf {
        self.root.join(slot.name())
    }

    pub fn artifact(&self, slot: Slot) -> PathBuf {
        self.dir(slot).join(ARTIFACT)
    }

    /// The slot `active` names; `None` on a device that never installed.
    pub fn active(&self) -> Result<Option<Slot>, UpdateError> {
        match fs::read_link(self.root.join(ACTIVE)) {
            Ok(target) => match target.to_str() {
                Some("a") => Ok(Some(Slot::A)),
                Some("b") => Ok(Some(Slot::B)),
                _ => Err(UpdateError::ActiveLink(target)),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(format!("reading {}/active", self.root.display()))(e)),
        }
    }

    /// The slot staging may write: the one `active` does not name.
    pub fn inactive(&self) -> Result<Slot, UpdateError> {
        Ok(self.active()?.map_or(Slot::A, Slot::other))
    }

    /// What `slot` holds, if it holds a complete artifact.
    pub fn info(&self, slot: Slot) -> Result<Option<SlotInfo>, UpdateError> {
        let path = self.dir(slot).join(INFO);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| UpdateError::SlotInfo { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(format!("reading {}", path.display()))(e)),
        }
    }

    /// Makes `slot` claim no release (its `release.json` removed, synced):
    /// done before its artifact is written in place.
    pub fn forget(&self, slot: Slot) -> Result<(), UpdateError> {
        if self.active()? == Some(slot) {
            return Err(UpdateError::ActiveSlot {
                slot,
                doing: "write into",
            });
        }
        let dir = self.dir(slot);
        match fs::remove_file(dir.join(INFO)) {
            Ok(()) => sync_dir(&dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(format!("removing {}/{INFO}", dir.display()))(e)),
        }
    }

    /// Stages the release into `slot` (never the active one). A store that
    /// wrote it into the slot already completes and checks it in place
    /// ([`Store::complete_image`]); otherwise the artifact is copied out of
    /// the store through a synced temporary file. Then its `release.json`.
    pub fn stage<S: Store + ?Sized>(
        &self,
        slot: Slot,
        store: &S,
        manifest: &VerifiedManifest,
    ) -> Result<SlotInfo, UpdateError> {
        if self.active()? == Some(slot) {
            return Err(UpdateError::ActiveSlot {
                slot,
                doing: "stage into",
            });
        }
        let dir = self.dir(slot);
        // Forget what the slot held first: a crash from here on leaves it empty, not stale.
        self.forget(slot)?;
        fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        let m = manifest.manifest();
        if let Some((path, whole)) = store.complete_image(manifest)? {
            if path != self.artifact(slot) {
                return Err(UpdateError::WrongPlace { path, slot });
            }
            return self.describe(slot, manifest, whole.blake3);
        }
        let tmp = dir.join(".artifact.partial");
        let file = fs::File::create(&tmp).map_err(io(format!("creating {}", tmp.display())))?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        let mut hasher = blake3::Hasher::new();
        let half = m.chunks.len() / 2;
        for (i, c) in m.chunks.iter().enumerate() {
            if i == half {
                out.flush()
                    .map_err(io(format!("writing {}", tmp.display())))?;
                failpoint::hit("staging");
            }
            let chunk = store.read_chunk(c)?.ok_or(StoreError::MissingChunk(c.id))?;
            let data = chunk.bytes();
            hasher.update(data);
            out.write_all(data)
                .map_err(io(format!("writing {}", tmp.display())))?;
        }
        let file = out
            .into_inner()
            .map_err(|e| io(format!("writing {}", tmp.display()))(e.into_error()))?;
        file.sync_all()
            .map_err(io(format!("syncing {}", tmp.display())))?;
        let digest = *hasher.finalize().as_bytes();
        if digest != m.artifact.blake3 {
            let _ = fs::remove_file(&tmp);
            return Err(StoreError::ArtifactMismatch {
                expected: hex::encode(m.artifact.blake3),
                actual: hex::encode(digest),
            }
            .into());
        }
        let artifact = dir.join(ARTIFACT);
        fs::rename(&tmp, &artifact).map_err(io(format!("renaming into {}", artifact.display())))?;
        self.describe(slot, manifest, digest)
    }

    /// Writes `release.json` of a slot whose artifact is complete and checked.
    fn describe(
        &self,
        slot: Slot,
        manifest: &VerifiedManifest,
        digest: [u8; 32],
    ) -> Result<SlotInfo, UpdateError> {
        let dir = self.dir(slot);
        let m = manifest.manifest();
        let info = SlotInfo {
            manifest: manifest.id().to_hex(),
            release: m.release,
            version: m.version.clone(),
            size: m.artifact.size,
            blake3: hex::encode(digest),
        };
        write_synced(
            &dir.join(INFO),
            &serde_json::to_vec_pretty(&info).unwrap_or_default(),
        )?;
        sync_dir(&dir)?;
        Ok(info)
    }

    /// Makes `slot` the active one (`None`: no slot, the factory image) atomically.
    pub fn point_to(&self, slot: Option<Slot>) -> Result<(), UpdateError> {
        fs::create_dir_all(&self.root).map_err(io(format!("creating {}", self.root.display())))?;
        let link = self.root.join(ACTIVE);
        match slot {
            None => match fs::remove_file(&link) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(format!("removing {}", link.display()))(e)),
            },
            Some(slot) => {
                let tmp = self.root.join(".active.new");
                let _ = fs::remove_file(&tmp);
                std::os::unix::fs::symlink(slot.name(), &tmp)
                    .map_err(io(format!("linking {}", tmp.display())))?;
                fs::rename(&tmp, &link).map_err(io(format!("switching {}", link.display())))?;
            }
        }
        sync_dir(&self.root)
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), UpdateError> {
    let tmp = path.with_extension("partial");
    let mut f = fs::File::create(&tmp).map_err(io(format!("creating {}", tmp.display())))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(io(format!("writing {}", tmp.display())))?;
    fs::rename(&tmp, path).map_err(io(format!("renaming into {}", path.display())))
}

fn sync_dir(dir: &Path) -> Result<(), UpdateError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(format!("syncing {}", dir.display())))
}
