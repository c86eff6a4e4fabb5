//! Trust files: which publisher keys a device trusts, and the threshold.
//!
//! Either a single `.pub` file (threshold 1), or a text file:
//! ```text
//! # comments and blank lines are ignored
//! threshold 2
//! key publisher-a.pub   # paths relative to the trust file
//! key publisher-b.pub
//! key publisher-c.pub
//! ```
//! This module reads the files; `pollen_core::manifest::trust_text` parses
//! the text.

use std::path::{Path, PathBuf};

use pollen_core::manifest::trust_text::{self, TrustLine, DEFAULT_THRESHOLD};
use pollen_core::manifest::{
    KeyError, PublicKey, TrustError, TrustPolicy, TrustTextError, ENVELOPE_VERSION,
};
use pollen_core::trust::credential::MAX_CREDENTIAL_BYTES;
use pollen_core::trust::policy::MAX_POLICY_BYTES;
use pollen_core::trust::{CredentialError, PolicyError, SignedCredential, VerifiedPolicy};

/// Errors of this module; each names the file at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrustFileError {
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Key { path: PathBuf, source: KeyError },
    #[error("{path}, {source}")]
    Syntax {
        path: PathBuf,
        source: TrustTextError,
    },
    #[error("{path}: {source}")]
    Policy { path: PathBuf, source: TrustError },
    #[error("{path}: {source}")]
    FleetPolicy { path: PathBuf, source: PolicyError },
    #[error("{path}: {source}")]
    Credential {
        path: PathBuf,
        source: CredentialError,
    },
}

/// Largest trust or key file read (they are a few lines long).
const MAX_FILE: usize = 64 * 1024;

fn read_small(path: &Path) -> Result<String, TrustFileError> {
    let bytes = read_bytes(path, MAX_FILE)?;
    String::from_utf8(bytes).map_err(|e| TrustFileError::Io {
        path: path.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })
}

/// Reads at most `max` bytes of `path`; a longer file is an error (read
/// through a bound, so a file that grows meanwhile cannot make it read more).
fn read_bytes(path: &Path, max: usize) -> Result<Vec<u8>, TrustFileError> {
    use std::io::Read;
    let io = |source| TrustFileError::Io {
        path: path.to_owned(),
        source,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(io)?
        .take(max as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() > max {
        return Err(io(std::io::Error::other(format!(
            "over the {max}-byte cap of this file"
        ))));
    }
    Ok(bytes)
}

/// Reads a public key file.
pub fn load_public_key(path: &Path) -> Result<PublicKey, TrustFileError> {
    PublicKey::from_text(&read_small(path)?).map_err(|source| TrustFileError::Key {
        path: path.to_owned(),
        source,
    })
}

/// A device's first policy: a signed fleet policy file (`pollen-seeder
/// policy create`), or a trust file / `.pub` (version 0, an open mesh).
pub fn load_policy(path: &Path, now: u64) -> Result<VerifiedPolicy, TrustFileError> {
    let bytes = read_bytes(path, MAX_POLICY_BYTES)?;
    if bytes.first() == Some(&ENVELOPE_VERSION) {
        return VerifiedPolicy::first(&bytes, now).map_err(|source| TrustFileError::FleetPolicy {
            path: path.to_owned(),
            source,
        });
    }
    Ok(VerifiedPolicy::from_trust(load_trust(path)?))
}

/// A credential file (`pollen-seeder enroll`), decoded; verified by the
/// driver against the policy it holds and its own key.
pub fn load_credential(path: &Path) -> Result<SignedCredential, TrustFileError> {
    let bytes = read_bytes(path, MAX_CREDENTIAL_BYTES)?;
    SignedCredential::decode(&bytes).map_err(|source| TrustFileError::Credential {
        path: path.to_owned(),
        source,
    })
}

/// Reads a trust policy from a `.pub` file or a trust file.
pub fn load_trust(path: &Path) -> Result<TrustPolicy, TrustFileError> {
    let text = read_small(path)?;
    if trust_text::is_public_key(&text) {
        return Ok(TrustPolicy::single(load_public_key(path)?));
    }
    let base = path.parent().unwrap_or(Path::new("."));
    let mut threshold = None;
    let mut keys = Vec::new();
    for line in trust_text::lines(&text) {
        let (_, line) = line.map_err(|source| TrustFileError::Syntax {
            path: path.to_owned(),
            source,
        })?;
        match line {
            TrustLine::Threshold(n) => threshold = Some(n),
            TrustLine::Key(file) => keys.push(load_public_key(&base.join(file))?),
        }
    }
    let threshold = threshold.unwrap_or(DEFAULT_THRESHOLD);
    TrustPolicy::new(keys, threshold).map_err(|source| TrustFileError::Policy {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pollen_core::manifest::SecretKey;

    #[test]
    fn reads_single_key_and_threshold_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = SecretKey::from_bytes(&[1; 32]).public();
        let b = SecretKey::from_bytes(&[2; 32]).public();
        std::fs::write(dir.path().join("a.pub"), a.to_text()).expect("write");
        std::fs::write(dir.path().join("b.pub"), b.to_text()).expect("write");
        let single = load_trust(&dir.path().join("a.pub")).expect("single key");
        assert_eq!(single.threshold(), 1);
        let trust = dir.path().join("trust");
        std::fs::write(
            &trust,
            "# fleet\nthreshold 2\nkey a.pub\nkey b.pub # second\n",
        )
        .expect("write");
        let policy = load_trust(&trust).expect("policy");
        assert_eq!(policy.threshold(), 2);
        assert!(policy.key(&b.id()).is_some());
        std::fs::write(&trust, "threshold 3\nkey a.pub\n").expect("write");
        assert!(matches!(
            load_trust(&trust),
            Err(TrustFileError::Policy { .. })
        ));
        std::fs::write(&trust, "trust everyone\n").expect("write");
        let err = load_trust(&trust).expect_err("syntax");
        assert!(matches!(&err, TrustFileError::Syntax { source, .. } if source.line() == 1));
        assert_eq!(
            err.to_string(),
            format!(
                "{}, line 1: expected `threshold N` or `key FILE`, found \"trust everyone\"",
                trust.display()
            )
        );
    }
}
