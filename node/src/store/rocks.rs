//! RocksDB-backed [`Store`]: column families `chunks-0` (chunk bytes, in blob
//! files), `have-0` (chunk id → length, written in the same batch, so
//! presence checks never read chunk bytes), `manifests-0` and `state-0`.
//!
//! Durability of chunks, two ways in:
//! - [`Store::put_chunk`] goes through the write-ahead log (not synced): a
//!   chunk survives a crash of the process (kill -9) as soon as the put
//!   returned, which is what lets an interrupted fetch resume without
//!   fetching a verified chunk again, and survives power loss once flushed
//!   ([`Store::sync_chunks`] or RocksDB's own flushes; flush output is
//!   fsynced). The chunk and its `have-0` entry are one batch, and recovery
//!   stops at a torn log record, so a torn write leaves a missing chunk, not
//!   a wrong one (and every read is checked against the id anyway).
//! - [`Store::put_chunk_unlogged`] skips the log: the log would put every
//!   byte on disk (and through a CRC) a second time. Such a chunk is lost
//!   whole by a crash before the next flush (a clean close flushes). Its
//!   bytes and `have-0` entry still share a batch, and `atomic_flush`
//!   writes all column families' memtables out together, so after a crash
//!   `have-0` never names a chunk whose bytes are missing. Only for bulk
//!   loads that name the chunks in something durable after
//!   [`Store::sync_chunks`] returned: the publisher writes the manifest
//!   only then, and a publish that crashed is simply run again.
//!
//! Manifests and state go through the log; state writes are synced.
//!
//! `held-0` is the [`super::ImageStore`]'s: which chunks of the release a
//! device writes into its image are there (keys: target manifest id, then
//! chunk id), through the log, not synced (a lost entry is a chunk fetched
//! again).

use std::path::{Path, PathBuf};

use pollen_core::chunk::{ChunkId, VerifiedChunk};
use pollen_core::manifest::{ChunkRef, ManifestId, VerifiedManifest};
use rocksdb::{
    ColumnFamilyDescriptor, FlushOptions, IteratorMode, Options, ReadOptions, WriteBatch,
    WriteOptions, DB,
};

use super::{Put, Store, StoreError};

const CF_CHUNKS: &str = "chunks-0";
const CF_HAVE: &str = "have-0";
const CF_MANIFESTS: &str = "manifests-0";
const CF_STATE: &str = "state-0";
const CF_HELD: &str = "held-0";
const ALL_CFS: [&str; 5] = [CF_CHUNKS, CF_HAVE, CF_MANIFESTS, CF_STATE, CF_HELD];

/// A key and its value, as RocksDB's iterators return them.
type Entry = (Box<[u8]>, Box<[u8]>);

/// A store in a RocksDB directory.
pub struct RocksStore {
    db: DB,
    path: PathBuf,
}

impl std::fmt::Debug for RocksStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksStore")
            .field("path", &self.path)
            .finish()
    }
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
    // Unlogged chunk writes: flush column families together (module docs).
    opts.set_atomic_flush(true);
    // Little space reserved ahead: RocksDB reserves (fallocates) a log
    // file of 1.1 × the write buffer and 4 MiB of its manifest, tens of MiB
    // a device's data directory is measured for against its budget.
    opts.set_max_total_wal_size(1 << 20);
    opts.set_manifest_preallocation_size(64 << 10);
    opts
}

/// True when files in `dir` can be written with `O_DIRECT` (not on tmpfs,
/// for one): tried once, with a file created and removed at once.
#[cfg(target_os = "linux")]
fn direct_io_works(dir: &Path) -> bool {
    use std::os::unix::fs::OpenOptionsExt;
    let probe = dir.join(".pollen-direct-io-probe");
    let ok = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(nix::fcntl::OFlag::O_DIRECT.bits())
        .open(&probe)
        .is_ok();
    let _ = std::fs::remove_file(&probe);
    ok
}

#[cfg(not(target_os = "linux"))]
fn direct_io_works(_: &Path) -> bool {
    false
}

fn cf_options(name: &str) -> Options {
    let mut opts = Options::default();
    if name == CF_CHUNKS {
        // Chunks are large, written once and never updated: keep them out of
        // the LSM tree so compaction does not rewrite them.
        opts.set_enable_blob_files(true);
        opts.set_min_blob_size(4096);
        opts.set_write_buffer_size(32 << 20);
    }
    opts
}

impl RocksStore {
    /// Opens (creating if needed) the store at `path` for reading and writing.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let cfs = ALL_CFS
            .iter()
            .map(|n| ColumnFamilyDescriptor::new(*n, cf_options(n)));
        let mut opts = db_options();
        std::fs::create_dir_all(path).map_err(|source| StoreError::Io {
            context: format!("creating {}", path.display()),
            source,
        })?;
        if direct_io_works(path) {
            // Flushes write chunk bytes straight to the disk: through the
            // page cache they cost a kernel copy per byte (the largest CPU
            // item of a fetch, measured in BENCHMARKS.md) and push out
            // what a small device keeps cached. Reads stay buffered.
            opts.set_use_direct_io_for_flush_and_compaction(true);
        }
        let db = DB::open_cf_descriptors(&opts, path, cfs).map_err(|source| StoreError::Open {
            path: path.display().to_string(),
            source,
        })?;
        Ok(Self {
            db,
            path: path.to_owned(),
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
            .filter(|n| existing.is_empty() || existing.iter().any(|e| e == *n))
            .map(|n| ColumnFamilyDescriptor::new(*n, cf_options(n)));
        let db = DB::open_cf_descriptors_read_only(&opts, path, descriptors, false).map_err(
            |source| StoreError::Open {
                path: path.display().to_string(),
                source,
            },
        )?;
        Ok(Self {
            db,
            path: path.to_owned(),
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

    /// Deletes every chunk and its presence entry (a device's store of an
    /// older version kept chunk bytes here) and compacts the space away;
    /// how many went.
    pub(crate) fn drop_chunks(&self) -> Result<usize, StoreError> {
        let ids = self.keys(CF_HAVE)?;
        let bytes_cf = self.cf(CF_CHUNKS)?;
        let have_cf = self.cf(CF_HAVE)?;
        let any_bytes = self
            .db
            .iterator_cf(bytes_cf, IteratorMode::Start)
            .next()
            .is_some();
        if ids.is_empty() && !any_bytes {
            return Ok(0);
        }
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(bytes_cf, &[0u8; 32][..], &[0xffu8; 33][..]);
        batch.delete_range_cf(have_cf, &[0u8; 32][..], &[0xffu8; 33][..]);
        self.db.write(batch)?;
        let mut fo = FlushOptions::default();
        fo.set_wait(true);
        self.db.flush_cfs_opt(&[bytes_cf, have_cf], &fo)?;
        self.db
            .compact_range_cf(bytes_cf, None::<&[u8]>, None::<&[u8]>);
        self.db
            .compact_range_cf(have_cf, None::<&[u8]>, None::<&[u8]>);
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

    /// A chunk and its presence entry, in one batch.
    fn put(&self, chunk: VerifiedChunk, wo: &WriteOptions) -> Result<Put, StoreError> {
        let id = chunk.id();
        if self.has_chunk(&id)? {
            return Ok(Put::AlreadyHeld);
        }
        let bytes = chunk.bytes();
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_CHUNKS)?, id.as_bytes(), bytes);
        batch.put_cf(
            self.cf(CF_HAVE)?,
            id.as_bytes(),
            (bytes.len() as u64).to_be_bytes(),
        );
        self.db.write_opt(batch, wo)?;
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
        self.put(chunk, &WriteOptions::default())
    }

    fn put_chunk_unlogged(&self, chunk: VerifiedChunk) -> Result<Put, StoreError> {
        let mut wo = WriteOptions::default();
        wo.disable_wal(true);
        self.put(chunk, &wo)
    }

    fn sync_chunks(&self) -> Result<(), StoreError> {
        let mut fo = FlushOptions::default();
        fo.set_wait(true);
        self.db
            .flush_cfs_opt(&[self.cf(CF_CHUNKS)?, self.cf(CF_HAVE)?], &fo)?;
        Ok(())
    }

    fn get_chunk(&self, id: &ChunkId) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get_cf(self.cf(CF_CHUNKS)?, id.as_bytes())?)
    }

    fn read_chunk(&self, chunk: &ChunkRef) -> Result<Option<VerifiedChunk>, StoreError> {
        // BLAKE3 checks every byte right after: RocksDB's own CRC of the
        // blob record would be a second pass over it (in software, in this
        // build), for nothing.
        let mut ro = ReadOptions::default();
        ro.set_verify_checksums(false);
        ro.fill_cache(false);
        let bytes = self
            .db
            .get_cf_opt(self.cf(CF_CHUNKS)?, chunk.id.as_bytes(), &ro)?;
        super::checked(chunk, bytes)
    }

    fn has_chunk(&self, id: &ChunkId) -> Result<bool, StoreError> {
        Ok(self
            .db
            .get_pinned_cf(self.cf(CF_HAVE)?, id.as_bytes())?
            .is_some())
    }

    fn chunk_ids(&self) -> Result<Vec<ChunkId>, StoreError> {
        Ok(self.keys(CF_HAVE)?.into_iter().map(ChunkId).collect())
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
