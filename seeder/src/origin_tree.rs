//! Writing an origin tree (`pollen_core::origin`'s layout) so that a web
//! server or a sync tool reading it at any moment never sees a
//! half-written file: every file goes to a hidden temporary name in its
//! own folder (`.<name>.tmp-<random>`), is synced, then renamed into
//! place; the folders are synced before the index that names the files.
//! Files already there with the right bytes are left alone (chunks are
//! judged by size, or re-hashed with `verify`), so a re-export of an
//! unchanged store writes nothing. One export at a time holds
//! `.pollen-export.lock` in the tree's root.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The lock file in the tree's root (hidden, empty).
pub const LOCK_FILE: &str = ".pollen-export.lock";
/// What every temporary name in the tree contains.
pub const TEMP_MARK: &str = ".tmp-";

/// Errors of this module; each names the path.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TreeError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} is not a directory")]
    NotADirectory(PathBuf),
    #[error("{path} is not writable: {source}")]
    NotWritable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("another export is writing {0} (it holds {LOCK_FILE})")]
    Busy(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TreeError + '_ {
    move |source| TreeError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What `put` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Put {
    Written,
    Kept,
}

/// Refuses `dir` unless it is a writable directory, or does not exist
/// and could be created (its nearest existing ancestor is a writable
/// directory), without leaving anything anywhere: a probe file is created
/// and removed. Creates nothing else.
pub fn check_dir(dir: &Path) -> Result<(), TreeError> {
    let mut at = dir;
    let meta = loop {
        match std::fs::metadata(at) {
            Ok(m) => break m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && at != Path::new(".") => {
                at = match at.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p,
                    _ => Path::new("."),
                }
            }
            Err(e) => return Err(io(at)(e)),
        }
    };
    if !meta.is_dir() {
        return Err(TreeError::NotADirectory(at.to_owned()));
    }
    let probe = at.join(format!(".pollen-probe{TEMP_MARK}{}", random_hex()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .map_err(|source| TreeError::NotWritable {
            path: at.to_owned(),
            source,
        })?;
    std::fs::remove_file(&probe).map_err(io(&probe))
}

fn random_hex() -> String {
    let mut b = [0u8; 8];
    // Uniqueness, not secrecy: the pid and a counter back up a failed read.
    if getrandom::fill(&mut b).is_err() {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        b = (u64::from(std::process::id()) << 32 | n).to_le_bytes();
    }
    hex::encode(b)
}

/// An origin tree being written: its root, the lock, and the folders
/// changed since the last [`Tree::sync_dirs`].
#[derive(Debug)]
pub struct Tree {
    root: PathBuf,
    _lock: std::fs::File,
    dirty: BTreeSet<PathBuf>,
    /// Files written and kept, bytes written.
    pub written: u64,
    pub kept: u64,
    pub bytes_written: u64,
    /// Temporary files of an interrupted export, removed at open.
    pub temp_removed: u64,
}

impl Tree {
    /// Opens the tree at `root` (checked with [`check_dir`] first): takes
    /// the lock and removes temporary files an interrupted export left.
    pub fn open(root: &Path) -> Result<Tree, TreeError> {
        check_dir(root)?;
        std::fs::create_dir_all(root).map_err(io(root))?;
        let lock_path = root.join(LOCK_FILE);
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(TreeError::Busy(root.to_owned())),
            Err(std::fs::TryLockError::Error(e)) => return Err(io(&lock_path)(e)),
        }
        let mut tree = Tree {
            root: root.to_owned(),
            _lock: lock,
            dirty: BTreeSet::new(),
            written: 0,
            kept: 0,
            bytes_written: 0,
            temp_removed: 0,
        };
        tree.remove_temporaries()?;
        Ok(tree)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path of `rel` (an origin path such as `chunk/ab/ab…`).
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn remove_temporaries(&mut self) -> Result<(), TreeError> {
        let mut dirs = Vec::new();
        for top in ["index", "manifest", "control", "policy"] {
            dirs.push(self.root.join(top));
        }
        let chunk = self.root.join("chunk");
        if let Ok(entries) = std::fs::read_dir(&chunk) {
            for e in entries {
                let e = e.map_err(io(&chunk))?;
                if e.file_type().map_err(io(&chunk))?.is_dir() {
                    dirs.push(e.path());
                }
            }
        }
        for dir in dirs {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries {
                let e = e.map_err(io(&dir))?;
                let name = e.file_name();
                let name = name.to_string_lossy();
                if name.starts_with('.') && name.contains(TEMP_MARK) {
                    std::fs::remove_file(e.path()).map_err(io(&e.path()))?;
                    self.temp_removed += 1;
                }
            }
        }
        Ok(())
    }

    /// Whether the chunk file `rel` holds `len` bytes (and, with
    /// `rehash`, bytes whose BLAKE3 is `id`): then the store need not be read.
    pub fn holds_chunk(
        &self,
        rel: &str,
        id: &[u8; 32],
        len: u64,
        rehash: bool,
    ) -> Result<bool, TreeError> {
        let path = self.path(rel);
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io(&path)(e)),
        };
        if !meta.is_file() || meta.len() != len {
            return Ok(false);
        }
        if !rehash {
            return Ok(true);
        }
        let mut hasher = blake3::Hasher::new();
        let file = std::fs::File::open(&path).map_err(io(&path))?;
        std::io::copy(&mut std::io::BufReader::new(file.take(len)), &mut hasher)
            .map_err(io(&path))?;
        Ok(hasher.finalize().as_bytes() == id)
    }

    /// Reads the file `rel`, at most `max` bytes (`None`: absent or longer).
    pub fn read(&self, rel: &str, max: usize) -> Result<Option<Vec<u8>>, TreeError> {
        let path = self.path(rel);
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&path)(e)),
        };
        let mut bytes = Vec::new();
        file.take(max as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(io(&path))?;
        Ok((bytes.len() <= max).then_some(bytes))
    }

    /// Counts a file found in place.
    pub fn keep(&mut self) {
        self.kept += 1;
    }

    /// Makes the small file `rel` hold `bytes`: kept if it already does,
    /// byte for byte, else written (see [`Tree::write`]).
    pub fn put(&mut self, rel: &str, bytes: &[u8]) -> Result<Put, TreeError> {
        if self.read(rel, bytes.len())?.is_some_and(|b| b == bytes) {
            self.keep();
            return Ok(Put::Kept);
        }
        self.write(rel, bytes)?;
        Ok(Put::Written)
    }

    /// Writes `rel` through a synced temporary file and a rename; its
    /// folder is synced by the next [`Tree::sync_dirs`].
    pub fn write(&mut self, rel: &str, bytes: &[u8]) -> Result<(), TreeError> {
        let path = self.path(rel);
        self.replace(&path, bytes)?;
        self.written += 1;
        self.bytes_written += bytes.len() as u64;
        Ok(())
    }

    /// Writes `bytes` to `path` through a temporary file beside it.
    fn replace(&mut self, path: &Path, bytes: &[u8]) -> Result<(), TreeError> {
        let dir = path.parent().unwrap_or(&self.root).to_owned();
        self.make_dir(&dir)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temp = dir.join(format!(".{name}{TEMP_MARK}{}", random_hex()));
        let result = (|| {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&temp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            std::fs::rename(&temp, path)
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_file(&temp);
            return Err(io(path)(e));
        }
        self.dirty.insert(dir);
        Ok(())
    }

    /// Creates `dir` (below the root) and notes the folders to sync.
    fn make_dir(&mut self, dir: &Path) -> Result<(), TreeError> {
        if dir.is_dir() {
            return Ok(());
        }
        if let Some(parent) = dir.parent() {
            if parent != self.root.as_path() && parent.starts_with(&self.root) {
                self.make_dir(parent)?;
            }
            self.dirty.insert(parent.to_owned());
        }
        match std::fs::create_dir(dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(io(dir)(e)),
        }
    }

    /// Syncs every folder changed since the last call: what was renamed
    /// into them survives a crash before anything names it.
    pub fn sync_dirs(&mut self) -> Result<(), TreeError> {
        for dir in std::mem::take(&mut self.dirty) {
            std::fs::File::open(&dir)
                .and_then(|d| d.sync_all())
                .map_err(io(&dir))?;
        }
        Ok(())
    }

    /// Replaces `rel` (an index) with `bytes` after syncing everything
    /// written before it, then syncs its folder.
    pub fn publish_index(&mut self, rel: &str, bytes: &[u8]) -> Result<(), TreeError> {
        self.sync_dirs()?;
        self.write(rel, bytes)?;
        self.sync_dirs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_owned()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).expect("ls") {
                let p = e.expect("entry").path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.push(p.strip_prefix(dir).expect("below").display().to_string());
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn files_are_written_once_and_kept_after() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("origin");
        let mut tree = Tree::open(&root).expect("open");
        let chunk = b"1234";
        let id = *blake3::hash(chunk).as_bytes();
        assert!(!tree
            .holds_chunk("chunk/ab/abcd", &id, 4, true)
            .expect("look"));
        tree.write("chunk/ab/abcd", chunk).expect("write");
        assert!(tree
            .holds_chunk("chunk/ab/abcd", &id, 4, true)
            .expect("look"));
        assert!(!tree
            .holds_chunk("chunk/ab/abcd", &id, 5, false)
            .expect("look"));
        assert_eq!(tree.put("manifest/m", b"one").expect("put"), Put::Written);
        assert_eq!(tree.put("manifest/m", b"one").expect("put"), Put::Kept);
        // A manifest with other bytes (co-signed) is replaced.
        assert_eq!(tree.put("manifest/m", b"two!").expect("put"), Put::Written);
        tree.publish_index("index/stable", b"idx").expect("index");
        assert_eq!((tree.written, tree.kept), (4, 1));
        assert_eq!(
            names(&root),
            [LOCK_FILE, "chunk/ab/abcd", "index/stable", "manifest/m"]
        );
        assert_eq!(
            std::fs::read(root.join("manifest/m")).expect("read"),
            b"two!"
        );
    }

    #[test]
    fn a_corrupt_chunk_of_the_right_size_is_found_only_when_rehashed() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut tree = Tree::open(tmp.path()).expect("open");
        let id = *blake3::hash(b"good").as_bytes();
        tree.write("chunk/00/00", b"good").expect("write");
        std::fs::write(tmp.path().join("chunk/00/00"), b"evil").expect("corrupt");
        assert!(tree
            .holds_chunk("chunk/00/00", &id, 4, false)
            .expect("look"));
        assert!(!tree.holds_chunk("chunk/00/00", &id, 4, true).expect("look"));
    }

    #[test]
    fn leftover_temporaries_are_removed_and_a_second_writer_is_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(tmp.path().join("chunk/ab")).expect("mkdir");
        std::fs::create_dir_all(tmp.path().join("index")).expect("mkdir");
        std::fs::write(tmp.path().join("chunk/ab/.abcd.tmp-1"), b"half").expect("w");
        std::fs::write(tmp.path().join("index/.stable.tmp-2"), b"half").expect("w");
        let tree = Tree::open(tmp.path()).expect("open");
        assert_eq!(tree.temp_removed, 2);
        assert!(matches!(Tree::open(tmp.path()), Err(TreeError::Busy(_))));
        drop(tree);
        assert!(Tree::open(tmp.path()).is_ok());
    }

    #[test]
    fn a_file_or_unwritable_folder_is_refused_before_anything_is_written() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let file = tmp.path().join("file");
        std::fs::write(&file, b"x").expect("w");
        assert!(matches!(check_dir(&file), Err(TreeError::NotADirectory(_))));
        assert!(matches!(
            check_dir(&file.join("below")),
            Err(TreeError::NotADirectory(_) | TreeError::Io { .. })
        ));
        let new = tmp.path().join("new/origin");
        check_dir(&new).expect("could be created");
        assert!(!tmp.path().join("new").exists(), "nothing created");
        assert_eq!(names(tmp.path()), ["file"], "the probe is gone");
    }
}
