//! The signed envelope: body bytes plus detached ed25519 signatures.
//!
//! Each signature is over `BLAKE3-derive_key("pollen manifest v1", body)`,
//! so a Pollen signature can never be replayed as a signature on anything else.

use serde::{Deserialize, Serialize};

use super::keys::{KeyId, SecretKey};
use super::{DecodeError, Manifest, ManifestId, MAX_MANIFEST_BYTES};

/// Version byte that starts every signed envelope.
pub const ENVELOPE_VERSION: u8 = 1;
const SIGNING_CONTEXT: &str = "pollen manifest v1";

#[derive(Serialize, Deserialize)]
struct Envelope {
    #[serde(with = "serde_bytes")]
    body: Vec<u8>,
    signatures: Vec<WireSignature>,
}

#[derive(Serialize, Deserialize)]
struct WireSignature {
    key_id: KeyId,
    #[serde(with = "serde_bytes")]
    signature: Vec<u8>,
}

/// One signature, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    pub key_id: KeyId,
    pub(crate) signature: ed25519_dalek::Signature,
}

/// A decoded (not yet verified) signed manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedManifest {
    body: Vec<u8>,
    manifest: Manifest,
    signatures: Vec<Signature>,
}

pub(crate) fn signing_digest(body: &[u8]) -> [u8; 32] {
    blake3::derive_key(SIGNING_CONTEXT, body)
}

impl SignedManifest {
    /// Signs `manifest` with every key given (one signature each).
    pub fn sign(manifest: Manifest, keys: &[&SecretKey]) -> Self {
        let body = manifest.encode();
        let digest = signing_digest(&body);
        let signatures = keys
            .iter()
            .map(|k| Signature {
                key_id: k.public().id(),
                signature: k.sign_digest(&digest),
            })
            .collect();
        Self {
            body,
            manifest,
            signatures,
        }
    }

    /// Adds a co-signature (for k-of-n policies signed on separate machines).
    pub fn add_signature(&mut self, key: &SecretKey) {
        let digest = signing_digest(&self.body);
        self.signatures.push(Signature {
            key_id: key.public().id(),
            signature: key.sign_digest(&digest),
        });
    }

    /// Parses envelope bytes: size cap, version byte, exact length, body.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(DecodeError::Oversized {
                len: bytes.len(),
                max: MAX_MANIFEST_BYTES,
            });
        }
        let (&version, rest) = bytes.split_first().ok_or(DecodeError::Truncated)?;
        if version != ENVELOPE_VERSION {
            return Err(DecodeError::UnknownVersion(version));
        }
        let (envelope, trailing): (Envelope, _) =
            postcard::take_from_bytes(rest).map_err(|e| match e {
                postcard::Error::DeserializeUnexpectedEnd => DecodeError::Truncated,
                other => DecodeError::Malformed(other.to_string()),
            })?;
        if !trailing.is_empty() {
            return Err(DecodeError::TrailingBytes(trailing.len()));
        }
        let manifest = Manifest::decode(&envelope.body)?;
        let signatures = envelope
            .signatures
            .into_iter()
            .map(|w| {
                let raw: [u8; 64] = w.signature.as_slice().try_into().map_err(|_| {
                    DecodeError::Malformed(format!("signature by {} is not 64 bytes", w.key_id))
                })?;
                Ok(Signature {
                    key_id: w.key_id,
                    signature: ed25519_dalek::Signature::from_bytes(&raw),
                })
            })
            .collect::<Result<Vec<_>, DecodeError>>()?;
        let decoded = Self {
            body: envelope.body,
            manifest,
            signatures,
        };
        // One byte string per envelope: no overlong varints, no alternate forms.
        if decoded.encode() != bytes {
            return Err(DecodeError::Malformed(
                "non-canonical envelope encoding".into(),
            ));
        }
        Ok(decoded)
    }

    /// The envelope's bytes, as stored and sent.
    pub fn encode(&self) -> Vec<u8> {
        let envelope = Envelope {
            body: self.body.clone(),
            signatures: self
                .signatures
                .iter()
                .map(|s| WireSignature {
                    key_id: s.key_id,
                    signature: s.signature.to_bytes().to_vec(),
                })
                .collect(),
        };
        let mut out = vec![ENVELOPE_VERSION];
        out.extend(postcard::to_stdvec(&envelope).unwrap_or_default());
        out
    }

    /// The manifest as decoded. Not yet verified: see [`super::verify`].
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn body(&self) -> &[u8] {
        &self.body
    }

    pub fn id(&self) -> ManifestId {
        ManifestId::of_body(&self.body)
    }

    pub fn signatures(&self) -> &[Signature] {
        &self.signatures
    }

    /// Replaces the signatures (tests build forged envelopes with this).
    #[doc(hidden)]
    pub fn with_signatures_of(mut self, other: &SignedManifest) -> Self {
        self.signatures = other.signatures.clone();
        self
    }
}
