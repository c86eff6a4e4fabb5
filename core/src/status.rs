//! Fleet status: the small record each device publishes about itself, and
//! its signed form that travels through the mesh to the seeder.
//!
//! A record is signed by the device's own ed25519 key (its mesh identity),
//! so peers relaying it cannot alter it or speak for another device. Records
//! of one device are ordered by `seq`; the newest wins everywhere.

use serde::{Deserialize, Serialize};

use crate::manifest::{DecodeError, Encoded, KeyId, ManifestId, PublicKey, SecretKey};

const SIGNING_CONTEXT: &str = "pollen status v1";
/// Largest signed status record accepted.
pub const MAX_STATUS_BYTES: usize = 2048;
/// Longest error text kept in a record.
pub const MAX_ERROR_LEN: usize = 400;

/// Where a device is in the update lifecycle (DESIGN.md §6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Phase {
    /// Nothing to do: no release newer than the installed one.
    Idle,
    /// Fetching the chunks of `target`.
    Downloading,
    /// `target` is complete and verified; waiting for its stage, the
    /// precondition hook, or (when halted) for good.
    Verified,
    /// The inactive slot holds `target`.
    Staged,
    /// The active slot is `target`, pending its health check.
    Switched,
    /// `target` passed its health check and is installed.
    Committed,
    /// `target` failed after the switch; the previous slot is active again.
    RolledBack,
    /// `target` failed before the switch (staging or install hook) too often.
    Failed,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::Downloading => "downloading",
            Phase::Verified => "verified",
            Phase::Staged => "staged",
            Phase::Switched => "switched",
            Phase::Committed => "committed",
            Phase::RolledBack => "rolled-back",
            Phase::Failed => "failed",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A release, named for people and for machines.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseRef {
    pub manifest: ManifestId,
    pub release: u64,
    pub version: String,
}

/// Bytes a device fetched for its target: from peers of its own site (the
/// LAN) and from beyond it (the site's uplink: other sites, the seeder,
/// an origin).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Traffic {
    pub from_site: u64,
    pub from_uplink: u64,
}

/// What a device says about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusRecord {
    /// The id the rollout buckets are computed from.
    pub device: String,
    pub site: Option<String>,
    pub hardware: Option<String>,
    pub channel: String,
    /// The release committed on the device.
    pub installed: Option<ReleaseRef>,
    /// The release the lifecycle is working on (or last worked on).
    pub target: Option<ReleaseRef>,
    pub phase: Phase,
    /// Why the target waits ("not yet in stage", "halted", "deferred by precondition").
    pub note: Option<String>,
    pub last_error: Option<String>,
    /// Install attempts of the target.
    pub attempts: u32,
    /// Bytes of the target fetched so far, by where they came from (the
    /// operator console's uplink savings per site).
    pub traffic: Traffic,
    /// Milliseconds since the Unix epoch when the record was made; newest wins.
    pub seq: u64,
}

/// Why status bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StatusError {
    #[error("status record: {0}")]
    Decode(#[from] DecodeError),
    #[error("status record: signature does not match the device key")]
    BadSignature,
}

#[derive(Serialize, Deserialize)]
struct Wire {
    #[serde(with = "serde_bytes")]
    body: Vec<u8>,
    key: [u8; 32],
    #[serde(with = "serde_bytes")]
    signature: Vec<u8>,
}

/// A status record with the device's signature checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedStatus {
    record: StatusRecord,
    key: PublicKey,
    bytes: Vec<u8>,
}

impl SignedStatus {
    /// Signs `record` with the device key. Long error texts are cut to
    /// [`MAX_ERROR_LEN`] so a record always fits [`MAX_STATUS_BYTES`].
    pub fn sign(mut record: StatusRecord, key: &SecretKey) -> Self {
        for text in [&mut record.last_error, &mut record.note]
            .into_iter()
            .flatten()
        {
            if text.len() > MAX_ERROR_LEN {
                let mut cut = MAX_ERROR_LEN;
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                text.truncate(cut);
            }
        }
        let body = crate::encode::canonical(&[], &record);
        let signature = key.sign_digest(&blake3::derive_key(SIGNING_CONTEXT, &body));
        let public = key.public();
        let wire = Wire {
            body,
            key: *public.as_bytes(),
            signature: signature.to_bytes().to_vec(),
        };
        let bytes = crate::encode::canonical(&[], &wire);
        Self {
            record,
            key: public,
            bytes,
        }
    }

    /// Decodes and checks the signature of status bytes from a peer.
    pub fn decode(bytes: &[u8]) -> Result<Self, StatusError> {
        if bytes.len() > MAX_STATUS_BYTES {
            return Err(DecodeError::Oversized {
                len: bytes.len(),
                max: MAX_STATUS_BYTES,
            }
            .into());
        }
        let (wire, rest): (Wire, _) =
            postcard::take_from_bytes(bytes).map_err(|e| Encoded::StatusRecord.postcard(e))?;
        if !rest.is_empty() {
            return Err(DecodeError::TrailingBytes(rest.len()).into());
        }
        // One byte string per signed record, as for manifests and controls:
        // no overlong varints, no alternate forms of the same record.
        if postcard::to_stdvec(&wire).ok().as_deref() != Some(bytes) {
            return Err(DecodeError::NonCanonical(Encoded::StatusRecord).into());
        }
        let key = PublicKey::from_bytes(&wire.key).map_err(DecodeError::Key)?;
        let raw: [u8; 64] = wire
            .signature
            .as_slice()
            .try_into()
            .map_err(|_| StatusError::BadSignature)?;
        key.verifying_key()
            .verify_strict(
                &blake3::derive_key(SIGNING_CONTEXT, &wire.body),
                &ed25519_dalek::Signature::from_bytes(&raw),
            )
            .map_err(|_| StatusError::BadSignature)?;
        let (record, rest): (StatusRecord, _) =
            postcard::take_from_bytes(&wire.body).map_err(|e| Encoded::StatusRecord.postcard(e))?;
        if !rest.is_empty() {
            return Err(DecodeError::TrailingBytes(rest.len()).into());
        }
        Ok(Self {
            record,
            key,
            bytes: bytes.to_vec(),
        })
    }

    pub fn record(&self) -> &StatusRecord {
        &self.record
    }
    /// The device key that signed it: records are kept per key.
    pub fn key_id(&self) -> KeyId {
        self.key.id()
    }
    /// The device key itself (its mesh identity, which a credential binds).
    pub fn key(&self) -> &PublicKey {
        &self.key
    }
    pub fn to_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> StatusRecord {
        StatusRecord {
            device: "press-7".into(),
            site: Some("hall-a".into()),
            hardware: Some("imx8".into()),
            channel: "stable".into(),
            installed: None,
            target: Some(ReleaseRef {
                manifest: ManifestId([4; 32]),
                release: 2,
                version: "2.0.0".into(),
            }),
            phase: Phase::RolledBack,
            note: None,
            last_error: Some("é".repeat(MAX_ERROR_LEN)),
            attempts: 1,
            traffic: Default::default(),
            seq: 17,
        }
    }

    #[test]
    fn signed_round_trip_fits_and_cuts_long_errors() {
        let key = SecretKey::from_bytes(&[5; 32]);
        let s = SignedStatus::sign(record(), &key);
        assert!(s.to_bytes().len() <= MAX_STATUS_BYTES);
        let back = SignedStatus::decode(s.to_bytes()).expect("decodes");
        assert_eq!(back.record(), s.record());
        assert_eq!(back.key_id(), key.public().id());
        assert!(back
            .record()
            .last_error
            .as_ref()
            .is_some_and(|e| e.len() <= MAX_ERROR_LEN));
    }

    /// Regression, found writing the `status_record` fuzz target (its
    /// property: under a device's key only bytes the device produced
    /// decode): overlong varints for the body or signature length decoded
    /// to the same signed record under other bytes.
    #[test]
    fn non_canonical_encodings_are_refused() {
        let key = SecretKey::from_bytes(&[5; 32]);
        let bytes = SignedStatus::sign(record(), &key).to_bytes().to_vec();
        // The body length is a two-byte varint (the record is over 127
        // bytes); the signature's length (64) one byte after body and key.
        assert!(bytes[0] >= 0x80 && bytes[1] < 0x80);
        let body_len = usize::from(bytes[0] & 0x7f) | usize::from(bytes[1]) << 7;
        let sig_len_at = 2 + body_len + 32;
        assert_eq!(bytes[sig_len_at], 64);
        let mut overlong_sig = bytes.clone();
        overlong_sig.splice(sig_len_at..=sig_len_at, [0x80 | 64, 0]);
        let mut overlong_body = bytes.clone();
        overlong_body.splice(1..2, [bytes[1] | 0x80, 0]);
        for bad in [overlong_sig, overlong_body] {
            assert!(matches!(
                SignedStatus::decode(&bad),
                Err(StatusError::Decode(DecodeError::NonCanonical(
                    Encoded::StatusRecord
                )))
            ));
        }
        assert!(SignedStatus::decode(&bytes).is_ok());
    }

    #[test]
    fn any_altered_byte_is_refused() {
        let key = SecretKey::from_bytes(&[5; 32]);
        let mut r = record();
        r.last_error = None;
        let bytes = SignedStatus::sign(r, &key).to_bytes().to_vec();
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x04;
            if let Ok(s) = SignedStatus::decode(&bad) {
                panic!("flip at {i} accepted as {:?}", s.record());
            }
        }
    }
}
