//! RocksDB-backed [`Store`]: chunk bytes in append-only pack files
//! ([`super::packs`]), RocksDB for the rest: column families `chunks-1`
//! (the pack index: chunk id → pack, offset, length), `manifests-0` and
//! `state-0`.
//!
//! Durability of chunks, two ways in:
//! - [`Store::put_chunk`] appends the bytes, writes them into the pack (no
//!   sync) and then the index entry through RocksDB's write-ahead log (not
//!   synced): the chunk survives a crash of the process (kill -9) once the
//!   put returned, which is what lets an interrupted fetch resume without
//!   fetching a verified chunk again, and power loss once
//!   [`Store::sync_chunks`] returned. After power loss before that, an
//!   index entry may name bytes that did not reach the disk: every read is
//!   checked against the id, and such a chunk is "not held".
//! - [`Store::put_chunk_unlogged`] (bulk loads: the publisher) appends into
//!   a large buffer and keeps the index entry in memory, where the store's
//!   own reads find it; [`Store::sync_chunks`] writes the buffer out,
//!   fdatasyncs the packs, and only then writes the batched index entries
//!   (synced). A crash before that loses such chunks whole and the index
//!   never names bytes that were not synced. Only for loads that name the
//!   chunks in something durable after [`Store::sync_chunks`] returned: the
//!   publisher writes the manifest only then, and a publish that crashed is
//!   simply run again.
//!
//! A chunk already indexed is not written again. Reads `pread` the bytes and
//! [`Store::read_chunk`] checks them (BLAKE3, once): a short or wrong chunk
//! is logged, its index entry dropped (read-write opens) and answered as not
//! held. `pollen-node check` reads and hashes every indexed chunk. Deleting
//! chunks ([`RocksStore::drop_chunks`]) deletes their packs; at every
//! read-write open, packs the index names nowhere (a crashed run's) are
//! deleted. A pack with only some dead chunks stays as it is.
//!
//! Old layout: a store of an earlier version keeps chunk bytes in
//! `chunks-0`/`have-0`. A read-write open moves them into packs (each
//! checked against its id), syncs, then drops those families: one pass,
//! resumable (a crash midway leaves the old families, and moved chunks are
//! not moved again). A read-only open of such a store is refused
//! ([`StoreError::OldLayout`]) rather than showing it without its chunks.
//!
//! Manifests and state go through the log; state writes are synced.
//!
//! `held-0` is the [`super::ImageStore`]'s: which chunks of the release a
//! device writes into its image are there (keys: target manifest id, then
//! chunk id), through the log, not synced (a lost entry is a chunk fetched
//! again).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use pollen_core::chunk::{ChunkId, Rejected, VerifiedChunk};
use pollen_core::manifest::{ChunkRef, ManifestId, VerifiedManifest};
use rocksdb::{ColumnFamilyDescriptor, IteratorMode, Options, WriteBatch, WriteOptions, DB};

use super::packs::{Loc, Packs};
use super::{Put, Store, StoreError};

const CF_INDEX: &str = "chunks-1";
const CF_MANIFESTS: &str = "manifests-0";
const CF_STATE: &str = "state-0";
const CF_HELD: &str = "held-0";
const ALL_CFS: [&str; 4] = [CF_INDEX, CF_MANIFESTS, CF_STATE, CF_HELD];
/// The old layout's families: chunk bytes, and chunk id → length.
const LEGACY_CHUNKS: &str = "chunks-0";
const LEGACY_HAVE: &str = "have-0";
const LEGACY_CFS: [&str; 2] = [LEGACY_CHUNKS, LEGACY_HAVE];

/// A key and its value, as RocksDB's iterators return them.
type Entry = (Box<[u8]>, Box<[u8]>);

/// A store in a RocksDB directory, chunk bytes in pack files beside it.
pub struct RocksStore {
    db: DB,
    path: PathBuf,
    /// Boxed: keeps the store small to move.
    packs: Box<Packs>,
    /// Index entries of unlogged puts, written at the next sync.
    pending: Mutex<HashMap<ChunkId, Loc>>,
    writable: bool,
}

impl std::fmt::Debug for RocksStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksStore")
            .field("path", &self.path)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn db_options() -> Options {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    // RocksDB's own info log: at most 2 × 256 KiB on a small disk.
    opts.set_keep_log_file_num(2);
    opts.set_max_log_file_size(256 << 10);
    // Bounded memory: a device may have little of it.
    opts.set_write_buffer_size(16 << 20);
    opts.set_max_write_buffer_number(2);
    // Little space reserved ahead: RocksDB reserves (fallocates) a log
    // file of 1.1 × the write buffer and 4 MiB of its manifest, tens of MiB
    // a device's data directory is measured for against its budget.
    opts.set_max_total_wal_size(1 << 20);
    opts.set_manifest_preallocation_size(64 << 10);
    opts
}

fn cf_options(name: &str) -> Options {
    let mut opts = Options::default();
    if name == LEGACY_CHUNKS {
        // As the old layout wrote it: values in blob files.
        opts.set_enable_blob_files(true);
        opts.set_min_blob_size(4096);
    }
    opts
}

impl RocksStore {
    /// Opens (creating if needed) the store at `path` for reading and writing.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(path).map_err(|source| StoreError::Io {
            context: format!("creating {}", path.display()),
            source,
        })?;
        let existing = DB::list_cf(&Options::default(), path).unwrap_or_default();
        let legacy: Vec<&'static str> = LEGACY_CFS
            .into_iter()
            .filter(|n| existing.iter().any(|e| e == n))
            .collect();
        let cfs = ALL_CFS
            .iter()
            .chain(&legacy)
            .map(|n| ColumnFamilyDescriptor::new(*n, cf_options(n)));
        let db = DB::open_cf_descriptors(&db_options(), path, cfs).map_err(|source| {
            StoreError::Open {
                path: path.display().to_string(),
                source,
            }
        })?;
        let mut store = Self {
            db,
            path: path.to_owned(),
            packs: Box::new(Packs::open(path, true)?),
            pending: Mutex::new(HashMap::new()),
            writable: true,
        };
        if !legacy.is_empty() {
            store.migrate(&legacy)?;
        }
        store.remove_dead_packs()?;
        Ok(store)
    }

    /// Moves the old layout's chunks into packs, then drops its families
    /// (module docs).
    fn migrate(&mut self, legacy: &[&'static str]) -> Result<(), StoreError> {
        if legacy.contains(&LEGACY_CHUNKS) {
            let (mut moved, mut bad) = (0usize, 0usize);
            let cf = self.cf(LEGACY_CHUNKS)?;
            for item in self.db.iterator_cf(cf, IteratorMode::Start) {
                let (k, v) = item?;
                let id = ChunkId((&*k).try_into().map_err(|_| StoreError::KeyLength {
                    cf: LEGACY_CHUNKS,
                    len: k.len(),
                })?);
                match VerifiedChunk::check_id(id, v.into_vec()) {
                    Ok(chunk) => {
                        self.put(chunk, false)?;
                        moved += 1;
                    }
                    Err(reason) => {
                        tracing::warn!(chunk = %id, %reason, "old-layout chunk fails its check; not moved");
                        bad += 1;
                    }
                }
            }
            self.sync_chunks()?;
            tracing::info!(
                store = %self.path.display(),
                moved,
                bad,
                "moved chunks of the old layout into pack files"
            );
        }
        for name in legacy {
            self.db.drop_cf(name)?;
        }
        Ok(())
    }

    /// Deletes packs no index entry names (a crashed run's bytes).
    fn remove_dead_packs(&self) -> Result<(), StoreError> {
        if self.packs.list()?.is_empty() {
            return Ok(());
        }
        let mut live = HashSet::new();
        for item in self.db.iterator_cf(self.cf(CF_INDEX)?, IteratorMode::Start) {
            let (k, v) = item?;
            live.insert(self.decode_loc(&k, &v)?.pack);
        }
        let removed = self.packs.remove_unreferenced(&live)?;
        if removed > 0 {
            tracing::info!(store = %self.path.display(), removed, "deleted packs no chunk is indexed in");
        }
        Ok(())
    }

    fn decode_loc(&self, key: &[u8], value: &[u8]) -> Result<Loc, StoreError> {
        Loc::decode(value).ok_or(StoreError::IndexEntry {
            key: key.to_vec(),
            len: value.len(),
        })
    }

    /// Opens an existing store without writing to its directory at all.
    pub fn open_read_only(path: &Path) -> Result<Self, StoreError> {
        let mut opts = Options::default();
        // Keep RocksDB's info log out of the directory we promise not to touch.
        opts.set_db_log_dir(std::env::temp_dir().join("pollen-rocksdb-logs"));
        // A store written by an older version may lack a newer family.
        let existing = DB::list_cf(&opts, path).unwrap_or_default();
        let descriptors = ALL_CFS
            .iter()
            .chain(&[LEGACY_CHUNKS])
            .filter(|n| existing.iter().any(|e| e == *n))
            .map(|n| ColumnFamilyDescriptor::new(*n, cf_options(n)));
        let db = DB::open_cf_descriptors_read_only(&opts, path, descriptors, false).map_err(
            |source| StoreError::Open {
                path: path.display().to_string(),
                source,
            },
        )?;
        if let Some(cf) = db.cf_handle(LEGACY_CHUNKS) {
            if db.iterator_cf(cf, IteratorMode::Start).next().is_some() {
                return Err(StoreError::OldLayout {
                    path: path.to_owned(),
                });
            }
        }
        Ok(Self {
            db,
            path: path.to_owned(),
            packs: Box::new(Packs::open(path, false)?),
            pending: Mutex::new(HashMap::new()),
            writable: false,
        })
    }

    /// True when `path` looks like a RocksDB directory.
    pub fn exists(path: &Path) -> bool {
        path.join("CURRENT").is_file()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces the envelope of a manifest already held (the same body,
    /// since manifests are stored under the BLAKE3 of their body) with
    /// `manifest`'s: a release co-signed after it was published. Returns
    /// `false`, writing nothing, when the store does not hold its body.
    pub fn replace_manifest(&self, manifest: &VerifiedManifest) -> Result<bool, StoreError> {
        let cf = self.cf(CF_MANIFESTS)?;
        let id = manifest.id();
        if self.db.get_pinned_cf(cf, id.0)?.is_none() {
            return Ok(false);
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.put_cf_opt(cf, id.0, manifest.to_bytes(), &wo)?;
        Ok(true)
    }

    /// Records a chunk of the image being written as held (see the module docs).
    pub(crate) fn put_held(&self, key: &[u8]) -> Result<(), StoreError> {
        Ok(self.db.put_cf(self.cf(CF_HELD)?, key, [])?)
    }

    pub(crate) fn delete_held(&self, key: &[u8]) -> Result<(), StoreError> {
        Ok(self.db.delete_cf(self.cf(CF_HELD)?, key)?)
    }

    /// Every `held-0` key that starts with `prefix`.
    pub(crate) fn held_with_prefix(&self, prefix: &[u8]) -> Result<Vec<Vec<u8>>, StoreError> {
        Ok(self
            .with_prefix(CF_HELD, prefix)?
            .into_iter()
            .map(|(k, _)| k.into_vec())
            .collect())
    }

    /// Every entry of column family `cf` whose key starts with `prefix`, in key order.
    fn with_prefix(&self, cf: &'static str, prefix: &[u8]) -> Result<Vec<Entry>, StoreError> {
        let mode = IteratorMode::From(prefix, rocksdb::Direction::Forward);
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(cf)?, mode) {
            let (k, v) = item?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push((k, v));
        }
        Ok(out)
    }

    /// Deletes every `held-0` entry not under `keep`; how many went.
    pub(crate) fn delete_held_except(&self, keep: Option<&[u8; 32]>) -> Result<usize, StoreError> {
        let cf = self.cf(CF_HELD)?;
        let mut batch = WriteBatch::default();
        let mut n = 0;
        for item in self.db.iterator_cf(cf, IteratorMode::Start) {
            let (k, _) = item?;
            if keep.is_none_or(|p| !k.starts_with(p)) {
                batch.delete_cf(cf, k);
                n += 1;
            }
        }
        if n > 0 {
            self.db.write(batch)?;
        }
        Ok(n)
    }

    /// Deletes every chunk: its index entry, then every pack (a device's
    /// store of an older version kept chunk bytes here); how many went.
    pub(crate) fn drop_chunks(&self) -> Result<usize, StoreError> {
        let ids = self.chunk_ids()?;
        if ids.is_empty() && self.packs.list()?.is_empty() {
            return Ok(0);
        }
        lock(&self.pending).clear();
        let cf = self.cf(CF_INDEX)?;
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(cf, &[0u8; 32][..], &[0xffu8; 33][..]);
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.write_opt(batch, &wo)?;
        self.packs.remove_unreferenced(&HashSet::new())?;
        Ok(ids.len())
    }

    pub(crate) fn delete_manifest(&self, id: &ManifestId) -> Result<(), StoreError> {
        Ok(self.db.delete_cf(self.cf(CF_MANIFESTS)?, id.0)?)
    }

    pub(crate) fn delete_state(&self, key: &str) -> Result<(), StoreError> {
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        Ok(self.db.delete_cf_opt(self.cf(CF_STATE)?, key, &wo)?)
    }

    fn cf(&self, name: &'static str) -> Result<&rocksdb::ColumnFamily, StoreError> {
        self.db
            .cf_handle(name)
            .ok_or(StoreError::MissingColumnFamily(name))
    }

    /// Writes the pack buffer out without indexing anything.
    #[cfg(test)]
    pub(crate) fn packs_flush_for_tests(&self) {
        self.packs.flush().expect("flush");
    }

    /// The index family; `None` only in a read-only open of a store that
    /// never had one (no chunks).
    fn index(&self) -> Option<&rocksdb::ColumnFamily> {
        self.db.cf_handle(CF_INDEX)
    }

    /// Where `id` lies, and whether its index entry is still pending.
    fn lookup(&self, id: &ChunkId) -> Result<Option<(Loc, bool)>, StoreError> {
        if let Some(loc) = lock(&self.pending).get(id) {
            return Ok(Some((*loc, true)));
        }
        let Some(cf) = self.index() else {
            return Ok(None);
        };
        match self.db.get_pinned_cf(cf, id.as_bytes())? {
            None => Ok(None),
            Some(v) => Ok(Some((self.decode_loc(id.as_bytes(), &v)?, false))),
        }
    }

    /// The bytes at `loc`; `None` when the pack is missing or too short.
    fn read_at(&self, loc: Loc, pending: bool) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(match pending {
            true => self.packs.read_buffered(loc)?,
            false => self.packs.read(loc)?,
        })
    }

    /// A chunk found short or wrong on read: not held from now on (a
    /// read-only open only reports it; `check` names it).
    fn forget(&self, id: &ChunkId, loc: Loc) {
        if !self.writable {
            return;
        }
        let mut pending = lock(&self.pending);
        if pending.get(id) == Some(&loc) {
            pending.remove(id);
            return;
        }
        drop(pending);
        let dropped = self
            .cf(CF_INDEX)
            .and_then(|cf| Ok(self.db.delete_cf(cf, id.as_bytes())?));
        if let Err(error) = dropped {
            tracing::warn!(chunk = %id, %error, "dropping the index entry of a bad chunk failed");
        }
    }

    /// Appends a chunk not held yet; its index entry through the log
    /// (`logged`) or pending until the next sync.
    fn put(&self, chunk: VerifiedChunk, logged: bool) -> Result<Put, StoreError> {
        let id = chunk.id();
        if self.has_chunk(&id)? {
            return Ok(Put::AlreadyHeld);
        }
        let loc = self.packs.append(chunk.bytes())?;
        if logged {
            // The bytes reach the file before the index names them.
            self.packs.flush()?;
            self.db
                .put_cf(self.cf(CF_INDEX)?, id.as_bytes(), loc.encode())?;
        } else {
            lock(&self.pending).insert(id, loc);
        }
        Ok(Put::New)
    }

    fn keys(&self, cf: &'static str) -> Result<Vec<[u8; 32]>, StoreError> {
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(cf)?, IteratorMode::Start) {
            let (k, _) = item?;
            let key: [u8; 32] = (&*k)
                .try_into()
                .map_err(|_| StoreError::KeyLength { cf, len: k.len() })?;
            out.push(key);
        }
        Ok(out)
    }
}

impl Store for RocksStore {
    fn put_chunk(&self, chunk: VerifiedChunk) -> Result<Put, StoreError> {
        self.put(chunk, true)
    }

    fn put_chunk_unlogged(&self, chunk: VerifiedChunk) -> Result<Put, StoreError> {
        self.put(chunk, false)
    }

    fn sync_chunks(&self) -> Result<(), StoreError> {
        if !self.writable {
            return Ok(());
        }
        let batched: Vec<(ChunkId, Loc)> =
            lock(&self.pending).iter().map(|(k, v)| (*k, *v)).collect();
        // Bytes first: no synced index entry may name unsynced bytes.
        self.packs.sync()?;
        if batched.is_empty() {
            // Entries of `put_chunk` are in the log: sync it.
            self.db.flush_wal(true)?;
            return Ok(());
        }
        let cf = self.cf(CF_INDEX)?;
        let mut batch = WriteBatch::default();
        for (id, loc) in &batched {
            batch.put_cf(cf, id.as_bytes(), loc.encode());
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.write_opt(batch, &wo)?;
        let mut pending = lock(&self.pending);
        for (id, loc) in batched {
            if pending.get(&id) == Some(&loc) {
                pending.remove(&id);
            }
        }
        Ok(())
    }

    fn get_chunk(&self, id: &ChunkId) -> Result<Option<Vec<u8>>, StoreError> {
        let Some((loc, pending)) = self.lookup(id)? else {
            return Ok(None);
        };
        let bytes = self.read_at(loc, pending)?;
        if bytes.is_none() {
            tracing::warn!(chunk = %id, pack = loc.pack, offset = loc.offset, "the pack ends before this chunk");
        }
        Ok(bytes)
    }

    fn read_chunk(&self, chunk: &ChunkRef) -> Result<Option<VerifiedChunk>, StoreError> {
        let id = chunk.id;
        let Some((loc, pending)) = self.lookup(&id)? else {
            return Ok(None);
        };
        if loc.len != chunk.len {
            // Same id, other length: the entry asked with is wrong, not
            // what is stored.
            return Err(StoreError::CorruptChunk {
                id,
                reason: Rejected::WrongLength {
                    id,
                    expected: chunk.len,
                    got: loc.len as usize,
                },
            });
        }
        let Some(bytes) = self.read_at(loc, pending)? else {
            tracing::warn!(chunk = %id, pack = loc.pack, offset = loc.offset, "the pack ends before this chunk; not held");
            self.forget(&id, loc);
            return Ok(None);
        };
        match VerifiedChunk::check_id(id, bytes) {
            Ok(c) => Ok(Some(c)),
            Err(reason) => {
                tracing::warn!(chunk = %id, pack = loc.pack, offset = loc.offset, %reason, "stored chunk fails its check; not held");
                self.forget(&id, loc);
                Ok(None)
            }
        }
    }

    fn has_chunk(&self, id: &ChunkId) -> Result<bool, StoreError> {
        if lock(&self.pending).contains_key(id) {
            return Ok(true);
        }
        let Some(cf) = self.index() else {
            return Ok(false);
        };
        Ok(self.db.get_pinned_cf(cf, id.as_bytes())?.is_some())
    }

    fn chunk_ids(&self) -> Result<Vec<ChunkId>, StoreError> {
        let mut ids: Vec<ChunkId> = match self.index() {
            None => Vec::new(),
            Some(_) => self.keys(CF_INDEX)?.into_iter().map(ChunkId).collect(),
        };
        ids.extend(lock(&self.pending).keys().copied());
        ids.sort_unstable_by_key(|id| id.0);
        ids.dedup();
        Ok(ids)
    }

    fn put_manifest(&self, manifest: &VerifiedManifest) -> Result<Put, StoreError> {
        let cf = self.cf(CF_MANIFESTS)?;
        let id = manifest.id();
        if self.db.get_pinned_cf(cf, id.0)?.is_some() {
            return Ok(Put::AlreadyHeld);
        }
        self.db.put_cf(cf, id.0, manifest.to_bytes())?;
        Ok(Put::New)
    }

    fn get_manifest(&self, id: &ManifestId) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get_cf(self.cf(CF_MANIFESTS)?, id.0)?)
    }

    fn manifest_ids(&self) -> Result<Vec<ManifestId>, StoreError> {
        Ok(self
            .keys(CF_MANIFESTS)?
            .into_iter()
            .map(ManifestId)
            .collect())
    }

    fn get_state(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get_cf(self.cf(CF_STATE)?, key)?)
    }

    fn put_state(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let mut wo = rocksdb::WriteOptions::default();
        // State transitions must survive power loss, not only kill -9.
        wo.set_sync(true);
        Ok(self.db.put_cf_opt(self.cf(CF_STATE)?, key, value, &wo)?)
    }

    fn state_with_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        Ok(self
            .with_prefix(CF_STATE, prefix.as_bytes())?
            .into_iter()
            .map(|(k, v)| (String::from_utf8_lossy(&k).into_owned(), v.into_vec()))
            .collect())
    }
}
