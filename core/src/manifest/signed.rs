//! The signed envelope: body bytes plus detached ed25519 signatures.
//!
//! Each signature is over `BLAKE3-derive_key("pollen manifest v1", body)`,
//! so a Pollen signature can never be replayed as a signature on anything else.

use serde::{Deserialize, Serialize};

use super::keys::{KeyId, SecretKey};
use super::{DecodeError, Encoded, Manifest, ManifestId, MAX_MANIFEST_BYTES};

/// Version byte that starts every signed envelope.
pub const ENVELOPE_VERSION: u8 = 1;
pub(crate) const SIGNING_CONTEXT: &str = "pollen manifest v1";

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
    /// The body's BLAKE3, hashed once when the body is made or decoded: the
    /// id is asked for on every chunk that arrives or is served, and a large
    /// release's body is hundreds of KiB.
    id: ManifestId,
    manifest: Manifest,
    signatures: Vec<Signature>,
}

pub(crate) fn signing_digest(body: &[u8]) -> [u8; 32] {
    blake3::derive_key(SIGNING_CONTEXT, body)
}

/// Signs `body` under a domain-separation `context` with every key given.
pub(crate) fn sign_body(context: &str, body: &[u8], keys: &[&SecretKey]) -> Vec<Signature> {
    let digest = blake3::derive_key(context, body);
    keys.iter()
        .map(|k| Signature {
            key_id: k.public().id(),
            signature: k.sign_digest(&digest),
        })
        .collect()
}

/// Splits envelope bytes (of a manifest or any other signed Pollen object)
/// into body and signatures: size cap, version byte, exact length, one
/// canonical encoding.
pub(crate) fn open_envelope(
    bytes: &[u8],
    max: usize,
) -> Result<(Vec<u8>, Vec<Signature>), DecodeError> {
    if bytes.len() > max {
        return Err(DecodeError::Oversized {
            len: bytes.len(),
            max,
        });
    }
    let (&version, rest) = bytes.split_first().ok_or(DecodeError::Truncated)?;
    if version != ENVELOPE_VERSION {
        return Err(DecodeError::UnknownVersion(version));
    }
    let (envelope, trailing): (Envelope, _) =
        postcard::take_from_bytes(rest).map_err(|e| Encoded::Envelope.postcard(e))?;
    if !trailing.is_empty() {
        return Err(DecodeError::TrailingBytes(trailing.len()));
    }
    let signatures = envelope
        .signatures
        .into_iter()
        .map(|w| {
            let raw: [u8; 64] = w
                .signature
                .as_slice()
                .try_into()
                .map_err(|_| DecodeError::SignatureLength { key_id: w.key_id })?;
            Ok(Signature {
                key_id: w.key_id,
                signature: ed25519_dalek::Signature::from_bytes(&raw),
            })
        })
        .collect::<Result<Vec<_>, DecodeError>>()?;
    // One byte string per envelope: no overlong varints, no alternate forms.
    if seal_envelope(&envelope.body, &signatures) != bytes {
        return Err(DecodeError::NonCanonical(Encoded::Envelope));
    }
    Ok((envelope.body, signatures))
}

/// The envelope bytes of `body` with `signatures`.
pub(crate) fn seal_envelope(body: &[u8], signatures: &[Signature]) -> Vec<u8> {
    let envelope = Envelope {
        body: body.to_vec(),
        signatures: signatures
            .iter()
            .map(|s| WireSignature {
                key_id: s.key_id,
                signature: s.signature.to_bytes().to_vec(),
            })
            .collect(),
    };
    crate::encode::canonical(&[ENVELOPE_VERSION], &envelope)
}

impl SignedManifest {
    /// Signs `manifest` with every key given (one signature each).
    pub fn sign(manifest: Manifest, keys: &[&SecretKey]) -> Self {
        let body = manifest.encode();
        let signatures = sign_body(SIGNING_CONTEXT, &body, keys);
        Self {
            id: ManifestId::of_body(&body),
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
        let (body, signatures) = open_envelope(bytes, MAX_MANIFEST_BYTES)?;
        let manifest = Manifest::decode(&body)?;
        Ok(Self {
            id: ManifestId::of_body(&body),
            body,
            manifest,
            signatures,
        })
    }

    /// The envelope's bytes, as stored and sent.
    pub fn encode(&self) -> Vec<u8> {
        seal_envelope(&self.body, &self.signatures)
    }

    /// The manifest as decoded. Not yet verified: see [`super::verify`].
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn body(&self) -> &[u8] {
        &self.body
    }

    pub fn id(&self) -> ManifestId {
        self.id
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
