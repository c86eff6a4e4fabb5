//! Append-only pack files: the chunk bytes of a [`super::RocksStore`], in
//! `packs/NNNNNNNN.pack` inside the store directory. This module owns the
//! files (appending, syncing, reading at an offset, deleting); the store
//! owns the index that says which chunk lies where ([`Loc`]).
//!
//! Appends go into one large buffer, written out when it fills ([`BUF`]:
//! on a thread of its own while appends fill a second buffer, so a publish
//! does not wait for each write; one such write at a time, waited for by
//! anything that needs its bytes in the file or its error),
//! when the store needs the bytes in the file ([`Packs::flush`]) and on
//! [`Packs::sync`], which also fdatasyncs every pack written since the last
//! sync (and the folder, when a pack was created). Packs are written with
//! `O_DIRECT` where the file system allows it (no copy through the page
//! cache; reads stay buffered): a write that ends mid-block (a flush for a
//! durable put, a sync) is padded with zeros to the next [`ALIGN`] boundary
//! and the next append starts there. A pack is closed at
//! [`PACK_LIMIT`] bytes and a new one started; every process starts its own
//! pack at its first append, so bytes of a crashed run are never appended to.
//! Bytes are never rewritten: a pack is deleted whole once no index entry
//! names it ([`Packs::remove_unreferenced`]); a pack with some dead chunks
//! (after a crash, a dropped duplicate, a chunk found corrupt) keeps them.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// Write buffer size: appends reach the disk in writes of this size.
const BUF: usize = 8 << 20;
/// Direct writes start and end on this boundary, from memory aligned to it.
const ALIGN: usize = 4096;
/// A pack is closed once it holds this many bytes.
const PACK_LIMIT: u64 = 1 << 30;
/// The folder inside the store directory.
const DIR: &str = "packs";

/// Errors of the pack files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PackError {
    #[error("creating the pack folder {path}: {source}")]
    Folder {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("creating pack {pack}: {source}")]
    Create { pack: u32, source: std::io::Error },
    #[error("writing pack {pack}: {source}")]
    Write { pack: u32, source: std::io::Error },
    #[error("no space left on the device writing pack {pack}")]
    NoSpace { pack: u32 },
    #[error("syncing pack {pack}: {source}")]
    Sync { pack: u32, source: std::io::Error },
    #[error("reading pack {pack}: {source}")]
    Read { pack: u32, source: std::io::Error },
    #[error("deleting pack {pack}: {source}")]
    Remove { pack: u32, source: std::io::Error },
    #[error("listing the pack folder {path}: {source}")]
    List {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("syncing the folder {path}: {source}")]
    SyncFolder {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("a chunk of {len} bytes does not fit a pack entry")]
    TooLarge { len: usize },
    #[error("the store's packs are read-only here")]
    ReadOnly,
}

/// Where a chunk's bytes lie: pack number, offset and length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Loc {
    pub pack: u32,
    pub offset: u64,
    pub len: u32,
}

impl Loc {
    /// Its index value: 16 bytes, big-endian.
    pub fn encode(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..4].copy_from_slice(&self.pack.to_be_bytes());
        out[4..12].copy_from_slice(&self.offset.to_be_bytes());
        out[12..].copy_from_slice(&self.len.to_be_bytes());
        out
    }

    /// `None` for a value that is not 16 bytes.
    pub fn decode(v: &[u8]) -> Option<Self> {
        let v: &[u8; 16] = v.try_into().ok()?;
        let (p, rest) = v.split_at(4);
        let (o, l) = rest.split_at(8);
        Some(Self {
            pack: u32::from_be_bytes(p.try_into().ok()?),
            offset: u64::from_be_bytes(o.try_into().ok()?),
            len: u32::from_be_bytes(l.try_into().ok()?),
        })
    }
}

/// The pack being appended to.
struct Current {
    number: u32,
    file: Arc<File>,
    /// Bytes in the file or being written to it (what follows is in the
    /// buffer).
    written: u64,
    /// Opened with `O_DIRECT`: writes are whole aligned blocks.
    direct: bool,
}

/// The write buffer: [`BUF`] bytes starting at an [`ALIGN`]ed address
/// (found inside a larger allocation, so no `unsafe`).
struct Buf {
    mem: Vec<u8>,
    start: usize,
    len: usize,
}

impl Buf {
    fn new() -> Self {
        let mem = vec![0u8; BUF + ALIGN];
        let start = (ALIGN - mem.as_ptr() as usize % ALIGN) % ALIGN;
        Self { mem, start, len: 0 }
    }

    fn data(&self) -> &[u8] {
        &self.mem[self.start..self.start + self.len]
    }

    fn room(&self) -> usize {
        BUF - self.len
    }

    fn extend(&mut self, bytes: &[u8]) {
        let at = self.start + self.len;
        self.mem[at..at + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    /// Writes the data at `offset` of pack `pack` (padded to whole blocks
    /// for a direct file) and empties the buffer: how many bytes went out.
    fn write_out(
        &mut self,
        file: &File,
        pack: u32,
        offset: u64,
        direct: bool,
    ) -> Result<u64, PackError> {
        let data = if direct { self.padded() } else { self.data() };
        file.write_all_at(data, offset)
            .map_err(|source| write_error(pack, source))?;
        let n = data.len() as u64;
        self.len = 0;
        Ok(n)
    }

    /// The data, zero-padded to a whole number of [`ALIGN`] blocks.
    fn padded(&mut self) -> &[u8] {
        let end = self.len.div_ceil(ALIGN) * ALIGN;
        self.mem[self.start + self.len..self.start + end].fill(0);
        &self.mem[self.start..self.start + end]
    }
}

/// A full buffer written on a thread of its own, so the appending thread
/// fills the next one instead of waiting for the disk; at most one at a
/// time. Anything that needs its bytes in the file waits for it first
/// ([`Packs::settle`]), and its error surfaces there.
struct Inflight {
    pack: u32,
    write: std::thread::JoinHandle<(Buf, Result<(), PackError>)>,
}

struct Writer {
    /// The number the next pack created gets.
    next: u32,
    current: Option<Current>,
    /// Allocated at the first append.
    buf: Option<Buf>,
    /// Closed packs written since the last sync.
    unsynced: Vec<(u32, Arc<File>)>,
    /// A full buffer being written while appends fill the next one.
    inflight: Option<Inflight>,
    /// A buffer written out, kept for the next.
    spare: Option<Buf>,
    /// Bytes went into the current pack since the last sync.
    dirty: bool,
    /// A pack (or the folder) was created since the last sync.
    new_entries: bool,
}

impl Writer {
    /// Where the next append lands.
    fn end(&self) -> Option<u64> {
        let c = self.current.as_ref()?;
        Some(c.written + self.buf.as_ref().map_or(0, |b| b.len) as u64)
    }
}

/// The pack files of one store directory.
pub(crate) struct Packs {
    dir: PathBuf,
    /// `None` when opened read-only.
    writer: Option<Mutex<Writer>>,
    readers: Mutex<HashMap<u32, Arc<File>>>,
    /// [`PACK_LIMIT`], smaller in tests.
    limit: u64,
}

fn write_error(pack: u32, source: std::io::Error) -> PackError {
    if source.raw_os_error() == Some(nix::libc::ENOSPC) {
        PackError::NoSpace { pack }
    } else {
        PackError::Write { pack, source }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Creates `path` for direct writes (`O_DIRECT`: no copy through the page
/// cache, which was the largest CPU item of a publish).
#[cfg(target_os = "linux")]
fn open_direct(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(nix::fcntl::OFlag::O_DIRECT.bits())
        .open(path)
}

#[cfg(not(target_os = "linux"))]
fn open_direct(_: &Path) -> std::io::Result<File> {
    Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
}

fn name(number: u32) -> String {
    format!("{number:08}.pack")
}

fn number_of(file_name: &str) -> Option<u32> {
    let digits = file_name.strip_suffix(".pack")?;
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

impl Packs {
    /// The packs of the store at `store_dir`; nothing is created before the
    /// first append.
    pub fn open(store_dir: &Path, writable: bool) -> Result<Self, PackError> {
        let dir = store_dir.join(DIR);
        let writer = match writable {
            false => None,
            true => {
                let last = Self::list_dir(&dir)?.into_iter().max();
                Some(Mutex::new(Writer {
                    next: last.map_or(0, |n| n.saturating_add(1)),
                    current: None,
                    buf: None,
                    unsynced: Vec::new(),
                    inflight: None,
                    spare: None,
                    dirty: false,
                    new_entries: false,
                }))
            }
        };
        Ok(Self {
            dir,
            writer,
            readers: Mutex::new(HashMap::new()),
            limit: PACK_LIMIT,
        })
    }

    /// The same packs, closed at `limit` bytes.
    #[cfg(test)]
    pub fn with_limit(mut self, limit: u64) -> Self {
        self.limit = limit;
        self
    }

    /// Every pack number in `dir` (none when it does not exist).
    fn list_dir(dir: &Path) -> Result<Vec<u32>, PackError> {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(PackError::List {
                    path: dir.to_owned(),
                    source,
                })
            }
        };
        let mut out = Vec::new();
        for e in entries {
            let e = e.map_err(|source| PackError::List {
                path: dir.to_owned(),
                source,
            })?;
            if let Some(n) = number_of(&e.file_name().to_string_lossy()) {
                out.push(n);
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    /// Every pack number on disk.
    pub fn list(&self) -> Result<Vec<u32>, PackError> {
        Self::list_dir(&self.dir)
    }

    fn path(&self, number: u32) -> PathBuf {
        self.dir.join(name(number))
    }

    fn writer(&self) -> Result<MutexGuard<'_, Writer>, PackError> {
        self.writer.as_ref().map(lock).ok_or(PackError::ReadOnly)
    }

    /// Appends `bytes` to the current pack (starting one when needed): where
    /// they will lie. They may sit in the buffer until [`Packs::flush`].
    pub fn append(&self, bytes: &[u8]) -> Result<Loc, PackError> {
        let len =
            u32::try_from(bytes.len()).map_err(|_| PackError::TooLarge { len: bytes.len() })?;
        let mut w = self.writer()?;
        if w.end()
            .is_some_and(|e| e > 0 && e + bytes.len() as u64 > self.limit)
        {
            self.close_current(&mut w)?;
        }
        if w.current.is_none() {
            self.start_pack(&mut w)?;
        }
        let Some(offset) = w.end() else {
            return Err(PackError::ReadOnly);
        };
        let number = w.current.as_ref().map_or(0, |c| c.number);
        let mut rest = bytes;
        while !rest.is_empty() {
            let buf = w.buf.get_or_insert_with(Buf::new);
            let n = buf.room().min(rest.len());
            buf.extend(&rest[..n]);
            rest = &rest[n..];
            if buf.room() == 0 {
                Self::write_full(&mut w)?;
            }
        }
        w.dirty = true;
        Ok(Loc {
            pack: number,
            offset,
            len,
        })
    }

    fn start_pack(&self, w: &mut Writer) -> Result<(), PackError> {
        if !self.dir.is_dir() {
            std::fs::create_dir_all(&self.dir).map_err(|source| PackError::Folder {
                path: self.dir.clone(),
                source,
            })?;
        }
        let number = w.next;
        let path = self.path(number);
        let (file, direct) = match open_direct(&path) {
            Ok(file) => (file, true),
            // Not on this file system (tmpfs before Linux 6.6): buffered.
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                let file = OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&path)
                    .map_err(|source| PackError::Create {
                        pack: number,
                        source,
                    })?;
                (file, false)
            }
            Err(source) => {
                return Err(PackError::Create {
                    pack: number,
                    source,
                })
            }
        };
        w.next = number.saturating_add(1);
        w.current = Some(Current {
            number,
            file: Arc::new(file),
            written: 0,
            direct,
        });
        w.new_entries = true;
        Ok(())
    }

    /// Writes the buffer out and moves the current pack to the unsynced list.
    fn close_current(&self, w: &mut Writer) -> Result<(), PackError> {
        Self::write_buf(w)?;
        if let Some(c) = w.current.take() {
            w.unsynced.push((c.number, c.file));
        }
        w.dirty = false;
        Ok(())
    }

    /// Writes the buffer out at the end of the current pack. A direct
    /// write is padded to a whole block; the next append starts after the
    /// padding (at most [`ALIGN`] - 1 bytes, only where a flush or sync
    /// ended a write mid-block).
    fn write_buf(w: &mut Writer) -> Result<(), PackError> {
        Self::settle(w)?;
        let Writer { current, buf, .. } = w;
        let Some(buf) = buf.as_mut().filter(|b| b.len > 0) else {
            return Ok(());
        };
        let Some(c) = current.as_mut() else {
            buf.len = 0;
            return Ok(());
        };
        c.written += buf.write_out(&c.file, c.number, c.written, c.direct)?;
        Ok(())
    }

    /// Hands the full buffer to a writing thread (after the previous one
    /// finished) and goes on with an empty one.
    fn write_full(w: &mut Writer) -> Result<(), PackError> {
        Self::settle(w)?;
        let Some(c) = w.current.as_mut() else {
            if let Some(b) = w.buf.as_mut() {
                b.len = 0;
            }
            return Ok(());
        };
        let Some(mut full) = w.buf.take() else {
            return Ok(());
        };
        w.buf = Some(w.spare.take().unwrap_or_else(Buf::new));
        let (file, pack, offset, direct) = (c.file.clone(), c.number, c.written, c.direct);
        // A full buffer is a whole number of blocks: no padding.
        c.written += full.len as u64;
        let write = std::thread::Builder::new()
            .name("pollen-pack-write".into())
            .spawn(move || {
                let result = full.write_out(&file, pack, offset, direct).map(drop);
                (full, result)
            })
            .map_err(|source| PackError::Write { pack, source })?;
        w.inflight = Some(Inflight { pack, write });
        Ok(())
    }

    /// Waits for the buffer being written, if any: its bytes are in the
    /// file after this, or its error is returned.
    fn settle(w: &mut Writer) -> Result<(), PackError> {
        let Some(Inflight { pack, write }) = w.inflight.take() else {
            return Ok(());
        };
        match write.join() {
            Ok((mut buf, result)) => {
                buf.len = 0; // also after a failed write
                w.spare = Some(buf);
                result
            }
            Err(_) => Err(PackError::Write {
                pack,
                source: std::io::Error::other("the pack writing thread panicked"),
            }),
        }
    }

    /// Writes what is buffered into the current pack (no sync): from now
    /// on, [`Packs::read`] finds it.
    pub fn flush(&self) -> Result<(), PackError> {
        Self::write_buf(&mut *self.writer()?)
    }

    /// Makes every byte appended so far survive power loss: written out,
    /// every pack touched since the last sync fdatasynced, and the folder
    /// synced when a pack was created.
    pub fn sync(&self) -> Result<(), PackError> {
        let Some(writer) = &self.writer else {
            return Ok(());
        };
        let mut w = lock(writer);
        Self::write_buf(&mut w)?;
        for (number, file) in w.unsynced.drain(..) {
            file.sync_data().map_err(|source| PackError::Sync {
                pack: number,
                source,
            })?;
        }
        if w.dirty {
            if let Some(c) = &w.current {
                c.file.sync_data().map_err(|source| PackError::Sync {
                    pack: c.number,
                    source,
                })?;
            }
            w.dirty = false;
        }
        if w.new_entries {
            for dir in [Some(self.dir.as_path()), self.dir.parent()]
                .into_iter()
                .flatten()
            {
                File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(|source| PackError::SyncFolder {
                        path: dir.to_owned(),
                        source,
                    })?;
            }
            w.new_entries = false;
        }
        Ok(())
    }

    /// A reading handle on pack `number`, opened once.
    fn reader(&self, number: u32) -> Result<Option<Arc<File>>, PackError> {
        if let Some(f) = lock(&self.readers).get(&number) {
            return Ok(Some(f.clone()));
        }
        let file = match File::open(self.path(number)) {
            Ok(f) => Arc::new(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(PackError::Read {
                    pack: number,
                    source,
                })
            }
        };
        lock(&self.readers).insert(number, file.clone());
        Ok(Some(file))
    }

    /// The bytes at `loc`, written out before ([`Packs::flush`]): `None`
    /// when the pack is missing or too short (a torn tail).
    pub fn read(&self, loc: Loc) -> Result<Option<Vec<u8>>, PackError> {
        let Some(file) = self.reader(loc.pack)? else {
            return Ok(None);
        };
        let mut out = vec![0u8; loc.len as usize];
        match file.read_exact_at(&mut out, loc.offset) {
            Ok(()) => Ok(Some(out)),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
            Err(source) => Err(PackError::Read {
                pack: loc.pack,
                source,
            }),
        }
    }

    /// Like [`Packs::read`], for bytes that may still be in the buffer,
    /// whole or in part (a chunk that filled the buffer has its head in
    /// the file and its tail in the buffer).
    pub fn read_buffered(&self, loc: Loc) -> Result<Option<Vec<u8>>, PackError> {
        if let Some(writer) = &self.writer {
            let mut w = lock(writer);
            if w.inflight.as_ref().is_some_and(|f| f.pack == loc.pack) {
                Self::settle(&mut w)?;
            }
            if let Some(c) = w.current.as_ref().filter(|c| c.number == loc.pack) {
                let end = loc.offset + u64::from(loc.len);
                if end > c.written {
                    let in_file = c.written.saturating_sub(loc.offset) as usize;
                    let start = loc.offset.saturating_sub(c.written) as usize;
                    let tail_len = loc.len as usize - in_file;
                    let Some(tail) = w
                        .buf
                        .as_ref()
                        .and_then(|b| b.data().get(start..start + tail_len))
                    else {
                        return Ok(None);
                    };
                    let mut out = Vec::with_capacity(loc.len as usize);
                    if in_file > 0 {
                        let head = Loc {
                            len: in_file as u32,
                            ..loc
                        };
                        let Some(bytes) = self.read(head)? else {
                            return Ok(None);
                        };
                        out.extend_from_slice(&bytes);
                    }
                    out.extend_from_slice(tail);
                    return Ok(Some(out));
                }
            }
        }
        self.read(loc)
    }

    /// Deletes every pack not in `keep` (closing the current one if it is
    /// not kept): what the index names no more. Returns how many went.
    pub fn remove_unreferenced(&self, keep: &HashSet<u32>) -> Result<usize, PackError> {
        let mut w = self.writer()?;
        Self::settle(&mut w)?;
        if w.current
            .as_ref()
            .is_some_and(|c| !keep.contains(&c.number))
        {
            w.current = None;
            if let Some(b) = w.buf.as_mut() {
                b.len = 0;
            }
            w.dirty = false;
        }
        w.unsynced.retain(|(n, _)| keep.contains(n));
        let current = w.current.as_ref().map(|c| c.number);
        let mut removed = 0;
        for number in self.list()? {
            if keep.contains(&number) || Some(number) == current {
                continue;
            }
            lock(&self.readers).remove(&number);
            match std::fs::remove_file(self.path(number)) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(PackError::Remove {
                        pack: number,
                        source,
                    })
                }
            }
        }
        Ok(removed)
    }
}
