//! Publisher keys: ed25519 key pairs, key ids, and their text form.
//!
//! Text forms (one line each, so they survive copy and paste):
//! `pollen-public-key ed25519 <64 hex>` and `pollen-secret-key ed25519 <64 hex>`.

use std::fmt;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

const PUBLIC_TAG: &str = "pollen-public-key ed25519";
const SECRET_TAG: &str = "pollen-secret-key ed25519";
const KEY_ID_CONTEXT: &str = "pollen key id v1";

/// Short, stable name of a public key: the first 8 bytes of a
/// domain-separated BLAKE3 of the key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct KeyId(pub [u8; 8]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// Errors of this module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    #[error("not a Pollen {expected} key (expected a line starting {tag:?})")]
    WrongFormat {
        expected: &'static str,
        tag: &'static str,
    },
    #[error("key material is not 32 bytes of hex")]
    BadHex,
    #[error("not a valid ed25519 public key")]
    InvalidPoint,
}

/// A publisher's public key, as a device trusts it.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
    id: KeyId,
}

impl PublicKey {
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, KeyError> {
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| KeyError::InvalidPoint)?;
        if key.is_weak() {
            return Err(KeyError::InvalidPoint);
        }
        Ok(Self::from_verifying(key))
    }

    fn from_verifying(key: VerifyingKey) -> Self {
        let digest = blake3::derive_key(KEY_ID_CONTEXT, key.as_bytes());
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        Self { key, id: KeyId(id) }
    }

    pub fn id(&self) -> KeyId {
        self.id
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        self.key.as_bytes()
    }

    pub(crate) fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// The one-line text form written to `.pub` files.
    pub fn to_text(&self) -> String {
        format!("{PUBLIC_TAG} {}\n", hex::encode(self.as_bytes()))
    }

    /// Parses the text form; anything after the hex on the line is a comment.
    pub fn from_text(text: &str) -> Result<Self, KeyError> {
        let bytes = parse_tagged(text, PUBLIC_TAG, "public")?;
        Self::from_bytes(&bytes)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.id)
    }
}

/// A publisher's signing key. Its `Debug` never prints the secret.
pub struct SecretKey(SigningKey);

impl SecretKey {
    /// Builds a key from 32 secret random bytes (the caller supplies the randomness).
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        Self(SigningKey::from_bytes(bytes))
    }

    pub fn public(&self) -> PublicKey {
        PublicKey::from_verifying(self.0.verifying_key())
    }

    pub(crate) fn sign_digest(&self, digest: &[u8; 32]) -> ed25519_dalek::Signature {
        self.0.sign(digest)
    }

    pub fn to_text(&self) -> String {
        format!("{SECRET_TAG} {}\n", hex::encode(self.0.to_bytes()))
    }

    pub fn from_text(text: &str) -> Result<Self, KeyError> {
        Ok(Self::from_bytes(&parse_tagged(text, SECRET_TAG, "secret")?))
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(for {})", self.public().id())
    }
}

fn parse_tagged(
    text: &str,
    tag: &'static str,
    expected: &'static str,
) -> Result<[u8; 32], KeyError> {
    let rest = text
        .trim_start()
        .strip_prefix(tag)
        .ok_or(KeyError::WrongFormat { expected, tag })?;
    let hex_part = rest.split_whitespace().next().ok_or(KeyError::BadHex)?;
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut out).map_err(|_| KeyError::BadHex)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_forms_round_trip() {
        let sk = SecretKey::from_bytes(&[3; 32]);
        let pk = sk.public();
        assert_eq!(PublicKey::from_text(&pk.to_text()), Ok(pk.clone()));
        assert_eq!(
            SecretKey::from_text(&sk.to_text()).map(|k| k.public()),
            Ok(pk.clone())
        );
        assert!(matches!(
            PublicKey::from_text(&sk.to_text()),
            Err(KeyError::WrongFormat { .. })
        ));
        assert!(!format!("{sk:?}").contains(&hex::encode([3u8; 32])));
    }

    #[test]
    fn distinct_keys_have_distinct_ids() {
        let a = SecretKey::from_bytes(&[1; 32]).public();
        let b = SecretKey::from_bytes(&[2; 32]).public();
        assert_ne!(a.id(), b.id());
    }
}
