//! Writing and reading publisher key files.
//!
//! The secret key file is created with mode 0600 and never overwritten; the
//! public key goes to `FILE.pub`, the file devices list in their trust policy.

use std::io::Write;
use std::path::{Path, PathBuf};

use pollen_core::manifest::{KeyError, SecretKey};

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    #[error("{0} already exists; refusing to overwrite a key")]
    Exists(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Key { path: PathBuf, source: KeyError },
    #[error("{path} is readable by other users (mode {mode:o}); run chmod 600 on it")]
    Permissions { path: PathBuf, mode: u32 },
}

/// `FILE.pub` beside `FILE`.
pub fn public_path(secret: &Path) -> PathBuf {
    let mut name = secret.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

/// Generates a key from the operating system's randomness and writes both files.
pub fn generate(secret_path: &Path) -> Result<SecretKey, KeyFileError> {
    let pub_path = public_path(secret_path);
    for p in [secret_path, &pub_path] {
        if p.exists() {
            return Err(KeyFileError::Exists(p.to_owned()));
        }
    }
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| KeyFileError::Io {
        path: secret_path.to_owned(),
        source: std::io::Error::other(format!("no randomness available: {e}")),
    })?;
    let key = SecretKey::from_bytes(&seed);
    write_new(secret_path, key.to_text().as_bytes(), 0o600)?;
    write_new(&pub_path, key.public().to_text().as_bytes(), 0o644)?;
    Ok(key)
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), KeyFileError> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source: std::io::Error| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            KeyFileError::Exists(path.to_owned())
        } else {
            KeyFileError::Io {
                path: path.to_owned(),
                source,
            }
        }
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)
}

/// Reads a secret key, refusing one that other users can read.
pub fn load_secret(path: &Path) -> Result<SecretKey, KeyFileError> {
    use std::os::unix::fs::PermissionsExt;
    let io = |source| KeyFileError::Io {
        path: path.to_owned(),
        source,
    };
    let mode = std::fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    let text = std::fs::read_to_string(path).map_err(io)?;
    SecretKey::from_text(&text).map_err(|source| KeyFileError::Key {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_writes_private_key_and_refuses_overwrite() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k");
        let key = generate(&path).expect("generate");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load_secret(&path).expect("load").public(), key.public());
        assert!(matches!(generate(&path), Err(KeyFileError::Exists(_))));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(matches!(
            load_secret(&path),
            Err(KeyFileError::Permissions { .. })
        ));
    }
}
