//! A device's store: chunk bytes live in the artifact images themselves
//! (the A/B slots, or a one-shot fetch's output), never in RocksDB, which
//! keeps manifests, state, and which chunks of the release being written
//! are held ([`ImageStore`]).
//!
//! The rules (docs/DESIGN.md §12, "Storage on flash"):
//! - A verified chunk is written at each of its offsets in the *target*
//!   image (the inactive slot, or the output's partial file) and synced
//!   before it counts as held. Held chunks are listed in `held-0`, keyed by
//!   the target's manifest id and the chunk id, so an entry left by an
//!   older target never counts for a newer one.
//! - The active slot is never written. Its chunks count as held for any
//!   release that shares them: [`Store::complete_image`] (staging) copies
//!   them into the target locally, skipping any already right in place,
//!   and checks the whole artifact's BLAKE3 in the same pass.
//! - Every read is checked against the chunk id: a held chunk of the target
//!   that fails is forgotten (and fetched again); one of the active slot is
//!   reported and not served.
//! - A release that does not fit the budget is refused before any byte is
//!   written ([`StoreError::OverBudget`]); [`Store::collect_garbage`] (at
//!   open and after a commit) drops what no kept release needs.

use std::collections::HashSet;
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use pollen_core::chunk::{ChunkId, VerifiedChunk};
use pollen_core::manifest::{Manifest, ManifestId, SignedManifest, VerifiedManifest};
use serde::{Deserialize, Serialize};

use super::local_copy::{chunk_places, clone_shared, same_place, ChunkPlaces};
use super::{keys, Put, Reassembled, RocksStore, Store, StoreError};
use crate::update::{failpoint, Slot, Slots};

/// Where a store writes the release it fetches.
#[derive(Clone, Debug)]
pub enum Places {
    /// A device's A/B slots: into the inactive slot's artifact.
    Slots(Slots),
    /// A one-shot fetch: into `.NAME.pollen-partial` beside this path,
    /// renamed to it once complete and checked.
    Output(PathBuf),
}

/// Where each chunk of a release sits in its image.
#[derive(Debug)]
struct Image {
    manifest: ManifestId,
    path: PathBuf,
    file: Arc<File>,
    at: ChunkPlaces,
}

impl Image {
    fn new(manifest: ManifestId, m: &Manifest, path: PathBuf, file: File) -> Self {
        Self {
            manifest,
            path,
            file: Arc::new(file),
            at: chunk_places(m),
        }
    }

    fn read(&self, id: &ChunkId) -> Result<Option<Vec<u8>>, StoreError> {
        let Some((len, offsets)) = self.at.get(id) else {
            return Ok(None);
        };
        read_at(&self.file, &self.path, offsets[0], *len).map(Some)
    }
}

fn read_at(file: &File, path: &Path, offset: u64, len: u32) -> Result<Vec<u8>, StoreError> {
    let mut buf = vec![0; len as usize];
    file.read_exact_at(&mut buf, offset)
        .map_err(|source| StoreError::Io {
            context: format!("reading {} bytes at {offset} of {}", len, path.display()),
            source,
        })?;
    Ok(buf)
}

/// The BLAKE3 of everything `feed` hands its callback, in order, and how
/// many bytes that was, hashed on a second thread so that reading the image
/// and hashing it overlap (a staging pass reads the whole release). The
/// callback says `false` once the hashing thread is gone; an error from
/// `feed` ends the hashing unfinished.
fn hashed_in_order(
    feed: impl FnOnce(&mut dyn FnMut(Vec<u8>) -> bool) -> Result<(), StoreError>,
) -> Result<([u8; 32], u64), StoreError> {
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
        let hashing = scope.spawn(move || {
            let mut hasher = blake3::Hasher::new();
            let mut n = 0u64;
            for bytes in rx {
                hasher.update(&bytes);
                n += bytes.len() as u64;
            }
            (*hasher.finalize().as_bytes(), n)
        });
        let fed = feed(&mut |bytes| tx.send(bytes).is_ok());
        drop(tx);
        let whole = hashing
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        fed.map(|()| whole)
    })
}

fn write_error(path: &Path, source: std::io::Error) -> StoreError {
    if source.kind() == std::io::ErrorKind::StorageFull {
        StoreError::NoSpace {
            path: path.display().to_string(),
        }
    } else {
        StoreError::Io {
            context: format!("writing {}", path.display()),
            source,
        }
    }
}

/// The release being written.
#[derive(Debug)]
struct Target {
    image: Image,
    slot: Option<Slot>,
    /// Chunks written into the image and synced.
    held: HashSet<ChunkId>,
    /// The whole image is the release, checked.
    complete: bool,
}

/// What `image/target` records of the [`Target`].
#[derive(Debug, Serialize, Deserialize)]
struct TargetRecord {
    manifest: String,
    slot: Option<Slot>,
    complete: bool,
    /// The image file (so `check` finds a fetch's partial output too).
    #[serde(default)]
    path: Option<PathBuf>,
}

#[derive(Debug, Default)]
struct Layout {
    /// The active slot's release (read only).
    active: Option<Image>,
    target: Option<Target>,
}

/// A device's store: RocksDB for everything but chunk bytes, which live in
/// the images. See the module docs.
pub struct ImageStore {
    db: RocksStore,
    places: Places,
    budget: Option<u64>,
    layout: Mutex<Layout>,
    /// Opened only to look (`check`): the release being written is taken
    /// wherever its record says it is, this store's place or not.
    looking: bool,
}

impl std::fmt::Debug for ImageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageStore")
            .field("db", &self.db)
            .field("places", &self.places)
            .field("budget", &self.budget)
            .finish()
    }
}

/// Bytes a file or directory tree takes on disk (allocated blocks).
pub fn disk_usage(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    let mut total = meta.blocks() * 512;
    if meta.is_dir() {
        if let Ok(entries) = std::fs::read_dir(path) {
            for e in entries.flatten() {
                total += disk_usage(&e.path());
            }
        }
    }
    total
}

fn held_key(target: &ManifestId, chunk: &ChunkId) -> [u8; 64] {
    let mut key = [0u8; 64];
    key[..32].copy_from_slice(&target.0);
    key[32..].copy_from_slice(chunk.as_bytes());
    key
}

impl ImageStore {
    /// Opens the store of a data directory (`DATA/store`), finds the active
    /// slot's release and the release being written, and cleans up.
    pub fn open(db: RocksStore, places: Places, budget: Option<u64>) -> Result<Self, StoreError> {
        let store = Self {
            db,
            places,
            budget,
            layout: Mutex::new(Layout::default()),
            looking: false,
        };
        store.reload()?;
        store.collect_garbage()?;
        Ok(store)
    }

    /// Opens for looking only (`check`): nothing is cleaned up or written.
    pub fn open_read_only(db: RocksStore, places: Places) -> Result<Self, StoreError> {
        let store = Self {
            db,
            places,
            budget: None,
            layout: Mutex::new(Layout::default()),
            looking: true,
        };
        store.reload()?;
        Ok(store)
    }

    /// The database under the images (manifests and state).
    pub fn db(&self) -> &RocksStore {
        &self.db
    }

    fn lock(&self) -> MutexGuard<'_, Layout> {
        self.layout.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn manifest(&self, id: &ManifestId) -> Result<Option<Manifest>, StoreError> {
        match self.db.get_manifest(id)? {
            None => Ok(None),
            Some(bytes) => SignedManifest::decode(&bytes)
                .map(|s| Some(s.manifest().clone()))
                .map_err(|source| StoreError::StoredManifest { id: *id, source }),
        }
    }

    fn open_image(&self, id: ManifestId, path: PathBuf) -> Result<Option<Image>, StoreError> {
        let Some(m) = self.manifest(&id)? else {
            return Ok(None);
        };
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StoreError::Io {
                    context: format!("opening {}", path.display()),
                    source,
                })
            }
        };
        Ok(Some(Image::new(id, &m, path, file)))
    }

    fn slot_error(e: crate::update::UpdateError) -> StoreError {
        StoreError::Slots(Box::new(e))
    }

    /// The release a complete slot holds, per its `release.json`.
    fn slot_release(slots: &Slots, slot: Slot) -> Result<Option<ManifestId>, StoreError> {
        let info = slots.info(slot).map_err(Self::slot_error)?;
        Ok(info.and_then(|i| {
            let mut raw = [0u8; 32];
            hex::decode_to_slice(&i.manifest, &mut raw).ok()?;
            Some(ManifestId(raw))
        }))
    }

    /// Reads the slots and the target record again (after a switch, a
    /// rollback, or at open).
    pub fn reload(&self) -> Result<(), StoreError> {
        let mut active = None;
        let mut active_slot = None;
        if let Places::Slots(slots) = &self.places {
            active_slot = slots.active().map_err(Self::slot_error)?;
            if let Some(slot) = active_slot {
                if let Some(id) = Self::slot_release(slots, slot)? {
                    active = self.open_image(id, slots.artifact(slot))?;
                }
            }
        }
        let mut target = None;
        // A record that does not parse names no release: the release is
        // taken up again (and its chunks fetched again), the node starts.
        let record = self.db.get_state(keys::IMAGE_TARGET)?.and_then(|bytes| {
            let rec: Result<TargetRecord, _> = serde_json::from_slice(&bytes);
            let rec = rec.ok().and_then(|r| {
                let mut raw = [0u8; 32];
                hex::decode_to_slice(&r.manifest, &mut raw).ok()?;
                Some((r, ManifestId(raw)))
            });
            if rec.is_none() {
                tracing::warn!("the record of the release being written is corrupt; ignored");
            }
            rec
        });
        if let Some((rec, id)) = record {
            // A target switched to is the active release now.
            let switched = rec.slot.is_some() && rec.slot == active_slot;
            let path = rec
                .path
                .clone()
                .unwrap_or_else(|| self.target_path(rec.slot, rec.complete));
            // Written for another use of this directory (a `fetch --out`
            // before a daemon, a daemon's slot before a `fetch --out`, or
            // another output file): nothing there is this store's; the
            // release is taken up again into its own place.
            let foreign = !self.looking && !self.is_own_place(&path);
            if foreign {
                tracing::warn!(manifest = %id, path = %path.display(), "the release being written went elsewhere; it is fetched again here");
            }
            if !switched && !foreign {
                if let Some(m) = self.manifest(&id)? {
                    let file = std::fs::OpenOptions::new()
                        .read(true)
                        .write(true)
                        .open(&path)
                        // `check` may look at a file it cannot write.
                        .or_else(|_| File::open(&path));
                    if let Ok(file) = file {
                        let mut held = HashSet::new();
                        for key in self.db.held_with_prefix(&id.0)? {
                            if let Ok(raw) = <[u8; 32]>::try_from(&key[32..]) {
                                held.insert(ChunkId(raw));
                            }
                        }
                        target = Some(Target {
                            image: Image::new(id, &m, path, file),
                            slot: rec.slot,
                            held,
                            complete: rec.complete,
                        });
                    }
                }
            }
        }
        let mut layout = self.lock();
        layout.active = active;
        layout.target = target;
        Ok(())
    }

    /// Whether `path` is where this store writes a release: a slot's
    /// artifact, or the output file (or its partial file).
    fn is_own_place(&self, path: &Path) -> bool {
        match &self.places {
            Places::Slots(slots) => [Slot::A, Slot::B]
                .into_iter()
                .any(|s| slots.artifact(s) == path),
            Places::Output(out) => path == out || path == partial_path(out),
        }
    }

    fn target_path(&self, slot: Option<Slot>, complete: bool) -> PathBuf {
        match (&self.places, slot) {
            (Places::Slots(slots), slot) => slots.artifact(slot.unwrap_or(Slot::A)),
            (Places::Output(out), _) if complete => out.clone(),
            (Places::Output(out), _) => partial_path(out),
        }
    }

    fn persist_target(&self, t: &Target) -> Result<(), StoreError> {
        let rec = TargetRecord {
            manifest: t.image.manifest.to_hex(),
            slot: t.slot,
            complete: t.complete,
            path: Some(t.image.path.clone()),
        };
        let bytes = serde_json::to_vec(&rec).map_err(StoreError::TargetEncoding)?;
        self.db.put_state(keys::IMAGE_TARGET, &bytes)
    }

    /// The bytes the data directory takes besides the target image: the
    /// database and the active slot.
    fn used_besides_target(&self, layout: &Layout) -> u64 {
        let active = layout.active.as_ref().map_or(0, |a| disk_usage(&a.path));
        disk_usage(self.db.path()) + active
    }

    /// Makes `manifest` the release written into the images (see
    /// [`Store::take_up`]).
    fn begin(&self, manifest: &VerifiedManifest) -> Result<(), StoreError> {
        let id = manifest.id();
        let m = manifest.manifest();
        let mut layout = self.lock();
        if layout.active.as_ref().is_some_and(|a| a.manifest == id)
            || layout
                .target
                .as_ref()
                .is_some_and(|t| t.image.manifest == id)
        {
            return Ok(());
        }
        let mut in_place = None;
        let (slot, complete) = match &self.places {
            Places::Slots(slots) => {
                let slot = slots.inactive().map_err(Self::slot_error)?;
                let there = Self::slot_release(slots, slot)?;
                // The previous release, taken up again (a recall): it is there whole.
                let complete = there == Some(id);
                if let (Some(prev), false) = (there, complete) {
                    in_place = self.manifest(&prev)?;
                }
                (Some(slot), complete)
            }
            Places::Output(_) => (None, false),
        };
        if let (Some(budget), false) = (self.budget, complete) {
            let used = self.used_besides_target(&layout);
            if used + m.artifact.size > budget {
                return Err(StoreError::OverBudget {
                    release: m.release,
                    size: m.artifact.size,
                    used,
                    budget,
                });
            }
        }
        // The old record goes first: a crash from here on leaves no release
        // being written (it is taken up afresh), never one whose marks name
        // bytes about to be truncated or overwritten.
        self.db.delete_state(keys::IMAGE_TARGET)?;
        layout.target = None;
        // No target of this release was open (it returned above), so any
        // marks left name another file's bytes (an older release, or this
        // one written elsewhere): none are kept.
        self.db.delete_held_except(None)?;
        let path = self.target_path(slot, complete);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
                context: format!("creating {}", dir.display()),
                source,
            })?;
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| write_error(&path, e))?;
        if !complete {
            // The whole release's space is reserved first (no byte written;
            // what the file holds stays): a full disk shows here, before
            // anything changed, not halfway through the download.
            let size = i64::try_from(m.artifact.size).unwrap_or(i64::MAX);
            if let Err(errno) = nix::fcntl::posix_fallocate(&file, 0, size) {
                let e = std::io::Error::from_raw_os_error(errno as i32);
                return Err(write_error(&path, e));
            }
        }
        if let (Places::Slots(slots), Some(slot), false) = (&self.places, slot, complete) {
            // The slot stops claiming what it held before its first byte changes.
            slots.forget(slot).map_err(Self::slot_error)?;
        }
        if !complete {
            // What the slot held stays where the new release has the same
            // bytes at the same place (staging skips writing those).
            file.set_len(m.artifact.size)
                .map_err(|e| write_error(&path, e))?;
        }
        // Chunks the slot's old release has at the same place are there
        // already (checked when it was staged; every read checks again).
        let held = in_place.map_or_else(HashSet::new, |prev| same_place(&prev, m));
        let target = Target {
            image: Image::new(id, m, path, file),
            slot,
            held,
            complete,
        };
        self.persist_target(&target)?;
        for c in &target.held {
            self.db.put_held(&held_key(&id, c))?;
        }
        tracing::info!(manifest = %id, release = m.release, slot = slot.map(|s| s.name()), complete, "writing release into its image");
        layout.target = Some(target);
        Ok(())
    }

    /// Fills the target image with what the active slot shares, checks the
    /// whole, and (output mode) renames it into place.
    fn complete(&self, manifest: &VerifiedManifest) -> Result<(PathBuf, Reassembled), StoreError> {
        let id = manifest.id();
        let m = manifest.manifest();
        let (file, path, held, active, already) = {
            let layout = self.lock();
            let Some(t) = layout.target.as_ref().filter(|t| t.image.manifest == id) else {
                return Err(StoreError::NotWriting(m.release));
            };
            let active = layout
                .active
                .as_ref()
                .map(|a| (a.file.clone(), a.path.clone(), a.at.clone()));
            (
                t.image.file.clone(),
                t.image.path.clone(),
                t.held.clone(),
                active,
                t.complete,
            )
        };
        let cloned = match (&active, already) {
            (Some((afile, _, at)), false) => clone_shared(&file, afile, m, &held, at),
            _ => 0,
        };
        let mut copied = 0u64;
        let half = m.chunks.len() / 2;
        let (digest, hashed) = hashed_in_order(|hash| {
            for (i, (offset, c)) in m.placed_chunks().enumerate() {
                if i == half {
                    failpoint("staging");
                }
                let here = read_at(&file, &path, offset, c.len)?;
                let bytes = if already || held.contains(&c.id) || c.id.matches(&here) {
                    here
                } else {
                    let Some((afile, apath, at)) = &active else {
                        return Err(StoreError::MissingChunk(c.id));
                    };
                    let Some((len, offsets)) = at.get(&c.id) else {
                        return Err(StoreError::MissingChunk(c.id));
                    };
                    let src = read_at(afile, apath, offsets[0], *len)?;
                    let src = VerifiedChunk::check_id(c.id, src)
                        .map_err(|reason| StoreError::CorruptChunk { id: c.id, reason })?;
                    failpoint("local-copy");
                    file.write_all_at(src.bytes(), offset)
                        .map_err(|e| write_error(&path, e))?;
                    copied += u64::from(c.len);
                    src.bytes().to_vec()
                };
                if !hash(bytes) {
                    break;
                }
            }
            Ok(())
        })?;
        file.sync_data().map_err(|e| write_error(&path, e))?;
        if digest != m.artifact.blake3 || hashed != m.artifact.size {
            return Err(StoreError::ArtifactMismatch {
                expected: hex::encode(m.artifact.blake3),
                actual: hex::encode(digest),
            });
        }
        tracing::info!(manifest = %id, cloned, copied, "image complete and checked");
        let path = match &self.places {
            Places::Output(out) => {
                std::fs::rename(&path, out).map_err(|source| StoreError::Io {
                    context: format!("renaming into {}", out.display()),
                    source,
                })?;
                out.clone()
            }
            Places::Slots(_) => path,
        };
        let mut layout = self.lock();
        if let Some(t) = layout.target.as_mut().filter(|t| t.image.manifest == id) {
            t.complete = true;
            t.image.path = path.clone();
            self.persist_target(t)?;
        }
        Ok((
            path,
            Reassembled {
                bytes: hashed,
                blake3: digest,
            },
        ))
    }

    /// Forgets a held chunk of the target that no longer reads back right.
    fn forget_held(&self, id: &ChunkId) {
        let mut layout = self.lock();
        if let Some(t) = layout.target.as_mut() {
            if t.held.remove(id) {
                let _ = self.db.delete_held(&held_key(&t.image.manifest, id));
            }
        }
    }

    /// Checks every image the store knows chunk by chunk (`check`): one line
    /// per problem, and the chunks and bytes found whole.
    pub fn check_images(&self) -> Result<(u64, u64, Vec<String>), StoreError> {
        let layout = self.lock();
        let mut problems = Vec::new();
        let (mut chunks, mut bytes) = (0u64, 0u64);
        let images = layout
            .active
            .iter()
            .map(|a| (a, None))
            .chain(layout.target.iter().map(|t| (&t.image, Some(t))));
        for (image, target) in images {
            for (id, (len, offsets)) in &image.at {
                if target.is_some_and(|t| !t.complete && !t.held.contains(id)) {
                    continue;
                }
                for &off in offsets {
                    match read_at(&image.file, &image.path, off, *len) {
                        Ok(b) if id.matches(&b) => {
                            chunks += 1;
                            bytes += u64::from(*len);
                        }
                        Ok(_) => problems.push(format!(
                            "{}: chunk {id} at offset {off} does not match its id",
                            image.path.display()
                        )),
                        Err(e) => problems.push(e.to_string()),
                    }
                }
            }
        }
        Ok((chunks, bytes, problems))
    }
}

/// The partial file a one-shot fetch writes beside its output.
pub fn partial_path(out: &Path) -> PathBuf {
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_owned();
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dir.join(format!(".{name}.pollen-partial"))
}

impl Store for ImageStore {
    fn put_chunk(&self, chunk: VerifiedChunk) -> Result<Put, StoreError> {
        self.put_chunks(vec![chunk])
            .pop()
            .unwrap_or(Ok(Put::Unwanted))
    }

    /// Writes every chunk of the batch into the image, then syncs the
    /// image once, then records the written ones as held: a chunk counts
    /// as held only once its bytes reached the disk, as with one put at a
    /// time, but a batch of `n` costs one `fdatasync` instead of `n`.
    fn put_chunks(&self, chunks: Vec<VerifiedChunk>) -> Vec<Result<Put, StoreError>> {
        let (file, path, manifest, mut results) = {
            let layout = self.lock();
            let Some(t) = layout.target.as_ref() else {
                return chunks.iter().map(|_| Ok(Put::Unwanted)).collect();
            };
            // Per chunk: its result so far, and where to write it (`New` ones).
            let mut seen = HashSet::new();
            let planned: Vec<_> = chunks
                .iter()
                .map(|c| {
                    let id = c.id();
                    if t.complete || t.held.contains(&id) || !seen.insert(id) {
                        return (Ok(Put::AlreadyHeld), None);
                    }
                    match t.image.at.get(&id) {
                        Some((_, offsets)) => (Ok(Put::New), Some(offsets.clone())),
                        None => (Ok(Put::Unwanted), None),
                    }
                })
                .collect();
            (
                t.image.file.clone(),
                t.image.path.clone(),
                t.image.manifest,
                planned,
            )
        };
        let mut written = false;
        for (chunk, (result, offsets)) in chunks.iter().zip(results.iter_mut()) {
            let Some(offsets) = offsets else { continue };
            for (i, off) in offsets.iter().enumerate() {
                if let Err(e) = file.write_all_at(chunk.bytes(), *off) {
                    *result = Err(write_error(&path, e));
                    break;
                }
                if i == 0 {
                    failpoint("slot-write");
                }
            }
            written |= result.is_ok();
        }
        // Synced before any of them counts as held: a crash never leaves a
        // held chunk whose bytes did not reach the disk.
        if written {
            if let Err(e) = file.sync_data() {
                for (result, offsets) in results.iter_mut() {
                    if offsets.is_some() && result.is_ok() {
                        let each = std::io::Error::new(e.kind(), e.to_string());
                        *result = Err(write_error(&path, each));
                    }
                }
            }
        }
        let mut layout = self.lock();
        let mut target = layout
            .target
            .as_mut()
            .filter(|t| t.image.manifest == manifest);
        chunks
            .iter()
            .zip(results)
            .map(|(chunk, (result, offsets))| {
                if offsets.is_none() || result.is_err() {
                    return result;
                }
                let Some(t) = target.as_deref_mut() else {
                    return Ok(Put::Unwanted);
                };
                // A database that cannot record it (its disk full too)
                // leaves the chunk not held: asked for again, not fatal.
                let id = chunk.id();
                self.db
                    .put_held(&held_key(&manifest, &id))
                    .map_err(|e| StoreError::Io {
                        context: "recording a stored chunk".into(),
                        source: std::io::Error::other(e.to_string()),
                    })?;
                t.held.insert(id);
                Ok(Put::New)
            })
            .collect()
    }

    fn sync_chunks(&self) -> Result<(), StoreError> {
        // Every put is synced already.
        Ok(())
    }

    fn get_chunk(&self, id: &ChunkId) -> Result<Option<Vec<u8>>, StoreError> {
        let layout = self.lock();
        if let Some(t) = &layout.target {
            if t.complete || t.held.contains(id) {
                if let Some(bytes) = t.image.read(id)? {
                    return Ok(Some(bytes));
                }
            }
        }
        match &layout.active {
            Some(a) => a.read(id),
            None => Ok(None),
        }
    }

    fn read_chunk(
        &self,
        chunk: &pollen_core::manifest::ChunkRef,
    ) -> Result<Option<VerifiedChunk>, StoreError> {
        let result = super::checked(chunk, self.get_chunk(&chunk.id)?);
        if let Err(StoreError::CorruptChunk { id, reason }) = &result {
            tracing::error!(chunk = %id, %reason, "a chunk in a slot image is corrupt; not served");
            self.forget_held(id);
        }
        result
    }

    fn has_chunk(&self, id: &ChunkId) -> Result<bool, StoreError> {
        let layout = self.lock();
        let in_target = layout
            .target
            .as_ref()
            .is_some_and(|t| t.held.contains(id) || (t.complete && t.image.at.contains_key(id)));
        let in_active = layout
            .active
            .as_ref()
            .is_some_and(|a| a.at.contains_key(id));
        Ok(in_target || in_active)
    }

    fn chunk_ids(&self) -> Result<Vec<ChunkId>, StoreError> {
        let layout = self.lock();
        let mut ids: Vec<ChunkId> = layout
            .active
            .iter()
            .flat_map(|a| a.at.keys().copied())
            .collect();
        if let Some(t) = &layout.target {
            if t.complete {
                ids.extend(t.image.at.keys().copied());
            } else {
                ids.extend(t.held.iter().copied());
            }
        }
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    fn put_manifest(&self, manifest: &VerifiedManifest) -> Result<Put, StoreError> {
        self.db.put_manifest(manifest)
    }

    fn get_manifest(&self, id: &ManifestId) -> Result<Option<Vec<u8>>, StoreError> {
        self.db.get_manifest(id)
    }

    fn manifest_ids(&self) -> Result<Vec<ManifestId>, StoreError> {
        self.db.manifest_ids()
    }

    fn get_state(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.db.get_state(key)
    }

    fn put_state(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.db.put_state(key, value)
    }

    fn state_with_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.db.state_with_prefix(prefix)
    }

    fn take_up(&self, manifest: &VerifiedManifest) -> Result<(), StoreError> {
        self.begin(manifest)
    }

    fn complete_image(
        &self,
        manifest: &VerifiedManifest,
    ) -> Result<Option<(PathBuf, Reassembled)>, StoreError> {
        self.complete(manifest).map(Some)
    }

    fn slots_changed(&self) -> Result<(), StoreError> {
        self.reload()
    }

    fn collect_garbage(&self) -> Result<(), StoreError> {
        let (target, mut kept) = {
            let layout = self.lock();
            let target = layout.target.as_ref().map(|t| t.image.manifest);
            let active = layout.active.as_ref().map(|a| a.manifest);
            (
                target,
                [target, active].into_iter().flatten().collect::<Vec<_>>(),
            )
        };
        if let Places::Slots(slots) = &self.places {
            for slot in [Slot::A, Slot::B] {
                kept.extend(Self::slot_release(slots, slot)?);
            }
        }
        // Held entries of any other target.
        let dropped = self.db.delete_held_except(target.as_ref().map(|t| &t.0))?;
        failpoint("cleanup");
        // Chunk bytes a store of an older version kept in RocksDB.
        let legacy = self.db.drop_chunks()?;
        // Manifests older than every kept release, and their controls.
        let oldest_kept = kept
            .iter()
            .filter_map(|id| self.manifest(id).ok().flatten().map(|m| m.release))
            .min();
        let mut manifests = 0;
        if let Some(oldest) = oldest_kept {
            for id in self.db.manifest_ids()? {
                if kept.contains(&id) {
                    continue;
                }
                // One that no longer decodes goes too (it could not be used).
                let old = self
                    .manifest(&id)
                    .ok()
                    .flatten()
                    .is_none_or(|m| m.release < oldest);
                if old {
                    self.db.delete_manifest(&id)?;
                    self.db.delete_state(&keys::control(&id))?;
                    manifests += 1;
                }
            }
        }
        if dropped + legacy + manifests > 0 {
            tracing::info!(
                held_entries = dropped,
                legacy_chunks = legacy,
                manifests,
                "cleaned up what no kept release needs"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "image_tests.rs"]
mod tests;
