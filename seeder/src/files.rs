//! The publisher's signed files (fleet policies, credentials, co-signed
//! manifests and controls) on disk: reads with a size cap, and writes that
//! never leave a half-written file behind (a temporary file beside the
//! target, synced, then renamed or linked into place).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Errors of this module; each names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is over {max} bytes: not a file Pollen wrote")]
    TooLarge { path: PathBuf, max: usize },
    #[error("{0} already exists; refusing to overwrite it")]
    Exists(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FileError + '_ {
    move |source| FileError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Reads at most `max` bytes of `path`; a longer file is refused.
pub fn read_bounded(path: &Path, max: usize) -> Result<Vec<u8>, FileError> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(io(path))?
        .take(max as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io(path))?;
    if bytes.len() > max {
        return Err(FileError::TooLarge {
            path: path.to_owned(),
            max,
        });
    }
    Ok(bytes)
}

/// A fresh name beside `path` for its temporary copy.
fn temp_beside(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(".{name}.{}-{n}.tmp", std::process::id()))
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Writes `bytes` to a synced temporary file beside `path`, with `mode`.
fn write_temp(path: &Path, bytes: &[u8], mode: u32) -> Result<PathBuf, FileError> {
    use std::os::unix::fs::OpenOptionsExt;
    let temp = temp_beside(path);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temp)?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&temp);
        return Err(io(path)(e));
    }
    Ok(temp)
}

fn sync_dir(dir: &Path) -> Result<(), FileError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}

/// Creates `path` with `bytes`, all at once; refuses if it exists.
pub fn write_new(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    if path.symlink_metadata().is_ok() {
        return Err(FileError::Exists(path.to_owned()));
    }
    let temp = write_temp(path, bytes, 0o644)?;
    // A hard link never replaces an existing file, unlike a rename.
    let linked = std::fs::hard_link(&temp, path);
    let _ = std::fs::remove_file(&temp);
    match linked {
        Ok(()) => sync_dir(parent(path)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(FileError::Exists(path.to_owned()))
        }
        Err(e) => Err(io(path)(e)),
    }
}

/// Replaces the existing file `path` with `bytes`, all at once, keeping
/// its permissions.
pub fn replace(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(io(path))?
        .permissions()
        .mode()
        & 0o777;
    let temp = write_temp(path, bytes, mode)?;
    if let Err(e) = std::fs::rename(&temp, path) {
        let _ = std::fs::remove_file(&temp);
        return Err(io(path)(e));
    }
    sync_dir(parent(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_files_are_never_overwritten_and_replacements_keep_the_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("policy");
        write_new(&path, b"one").expect("new");
        assert!(matches!(
            write_new(&path, b"two"),
            Err(FileError::Exists(_))
        ));
        assert_eq!(std::fs::read(&path).expect("read"), b"one");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        replace(&path, b"three").expect("replace");
        assert_eq!(std::fs::read(&path).expect("read"), b"three");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 1);
        assert!(matches!(
            read_bounded(&path, 4),
            Err(FileError::TooLarge { max: 4, .. })
        ));
        assert_eq!(read_bounded(&path, 5).expect("fits"), b"three");
    }
}
