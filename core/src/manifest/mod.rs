//! The release manifest: what a release is, its canonical bytes, its signatures.
//!
//! Bytes on disk and on the wire are a *signed envelope*
//! (`[ENVELOPE_VERSION] ++ postcard(body, signatures)`) around the *body*
//! (`[FORMAT_VERSION] ++ postcard(Manifest)`). Signatures cover the body's
//! exact bytes; the [`ManifestId`] is the BLAKE3 of those bytes.

mod keys;
mod signed;
mod trust;
pub mod trust_text;
mod verify;

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::chunk::{ChunkId, ChunkParams};

pub use keys::{KeyError, KeyId, PublicKey, SecretKey};
pub(crate) use signed::{open_envelope, seal_envelope, sign_body, SIGNING_CONTEXT};
pub use signed::{Signature, SignedManifest, ENVELOPE_VERSION};
pub use trust::{TrustError, TrustPolicy};
pub use trust_text::{TrustLine, TrustText, TrustTextError};
pub(crate) use verify::check_signatures;
pub use verify::{check_context, verify, VerifiedManifest, VerifyContext, VerifyError};

/// Version byte that starts every manifest body; others are refused.
pub const FORMAT_VERSION: u8 = 1;
/// Largest signed manifest accepted (a 4 GiB release at 64 KiB chunks needs ~2.4 MiB).
pub const MAX_MANIFEST_BYTES: usize = 8 << 20;
/// Longest free-text field (product, channel, hardware model, names).
pub const MAX_NAME_LEN: usize = 128;

/// A release: what to fetch, how to check it, who may install it, until when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub product: String,
    pub channel: String,
    /// Semantic version for people; `release` is the number that orders releases.
    pub version: String,
    /// Monotonic release number: devices refuse anything below their floor.
    pub release: u64,
    /// Seconds since the Unix epoch.
    pub created_at: u64,
    /// Seconds since the Unix epoch; the manifest is refused from then on.
    pub expires_at: u64,
    /// Hardware models this release targets; empty means any.
    pub hardware: Vec<String>,
    pub artifact: Artifact,
    pub chunking: ChunkParams,
    /// The artifact, in order: concatenating these chunks rebuilds it.
    pub chunks: Vec<ChunkRef>,
    pub rollout: Rollout,
    pub install: Install,
}

/// The whole artifact the chunks rebuild.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// File name suggested for the reassembled artifact.
    pub name: String,
    pub size: u64,
    /// BLAKE3 of the whole artifact.
    pub blake3: [u8; 32],
}

/// One entry of the ordered chunk list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChunkRef {
    pub id: ChunkId,
    pub len: u32,
}

/// Staged rollout policy. Stage shares are in basis points (1/10 000).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollout {
    pub stages: Vec<RolloutStage>,
    /// Halt the rollout when a stage's failure rate passes this (basis points); `None`: never.
    pub max_failures: Option<u16>,
}

/// One rollout stage: devices whose bucket is below `share` take part from `start_at` on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutStage {
    /// Basis points of the fleet, 1..=10 000.
    pub share: u16,
    /// Seconds since the Unix epoch; `None` starts with the release.
    pub start_at: Option<u64>,
}

impl Default for Rollout {
    /// Everyone, at once, never halted automatically.
    fn default() -> Self {
        Self {
            stages: vec![RolloutStage {
                share: 10_000,
                start_at: None,
            }],
            max_failures: None,
        }
    }
}

/// How a device installs the artifact.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Install {
    /// The artifact is a full image written into the inactive A/B slot.
    FullImage,
}

/// BLAKE3 of a manifest's signed body bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ManifestId(pub [u8; 32]);

impl ManifestId {
    pub fn of_body(body: &[u8]) -> Self {
        Self(*blake3::hash(body).as_bytes())
    }
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for ManifestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ManifestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ManifestId({})", &self.to_hex()[..16])
    }
}

/// Why manifest bytes could not be decoded (before any signature is looked at).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("manifest is {len} bytes, over the {max}-byte limit")]
    Oversized { len: usize, max: usize },
    #[error("manifest is empty or truncated")]
    Truncated,
    #[error("unknown manifest format version {0} (this build reads version {FORMAT_VERSION})")]
    UnknownVersion(u8),
    #[error("malformed {of}: {error}")]
    Encoding { of: Encoded, error: postcard::Error },
    #[error("non-canonical {0} encoding")]
    NonCanonical(Encoded),
    #[error("malformed manifest: signature by {key_id} is not 64 bytes")]
    SignatureLength { key_id: KeyId },
    #[error("malformed signing key: {0}")]
    Key(KeyError),
    #[error("malformed manifest: {0}")]
    Field(FieldError),
    #[error("{0} bytes follow the signed manifest and are covered by no signature")]
    TrailingBytes(usize),
}

/// Which signed object a [`DecodeError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Encoded {
    Manifest,
    Envelope,
    ChannelIndex,
    Control,
    Credential,
    Policy,
    StatusRecord,
}

impl fmt::Display for Encoded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Encoded::Manifest => "manifest",
            Encoded::Envelope => "signed envelope",
            Encoded::ChannelIndex => "channel index",
            Encoded::Control => "rollout control",
            Encoded::Credential => "credential",
            Encoded::Policy => "fleet policy",
            Encoded::StatusRecord => "status record",
        })
    }
}

impl Encoded {
    /// The decode error of a postcard failure while reading this object.
    pub(crate) fn postcard(self, error: postcard::Error) -> DecodeError {
        match error {
            postcard::Error::DeserializeUnexpectedEnd => DecodeError::Truncated,
            error => DecodeError::Encoding { of: self, error },
        }
    }
}

/// A manifest field that decoded but does not hold a valid value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FieldError {
    #[error("{what} {value:?} is empty, too long or has control characters")]
    BadText { what: &'static str, value: String },
    #[error("version {version:?} is not semver: {}", semver_reason(version))]
    NotSemver { version: String },
    #[error("chunk size bounds {0:?} out of range")]
    ChunkBounds(ChunkParams),
    #[error("rollout stages must be non-empty, growing, within 1..=10000")]
    RolloutStages,
}

/// Why `version` does not parse, in semver's words (kept out of
/// [`FieldError`] so the error stays `Clone + Eq`).
fn semver_reason(version: &str) -> String {
    match semver::Version::parse(version) {
        Err(e) => e.to_string(),
        Ok(_) => "parses".into(),
    }
}

/// Why a chunk list does not describe its artifact.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChunkListError {
    #[error("chunk {index} has length {len} outside 1..={max}")]
    Length { index: usize, len: u32, max: u32 },
    #[error("chunk lengths sum to {total} bytes but the artifact is {size} bytes")]
    Size { total: u64, size: u64 },
}

impl Manifest {
    /// Each entry of the chunk list with its offset in the artifact.
    pub fn placed_chunks(&self) -> impl Iterator<Item = (u64, &ChunkRef)> {
        self.chunks.iter().scan(0u64, |offset, c| {
            let at = *offset;
            *offset += u64::from(c.len);
            Some((at, c))
        })
    }

    /// Canonical body bytes: the format version, then postcard.
    pub fn encode(&self) -> Vec<u8> {
        crate::encode::canonical(&[FORMAT_VERSION], self)
    }

    /// Parses body bytes, refusing non-canonical encodings and invalid fields.
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        if body.len() > MAX_MANIFEST_BYTES {
            return Err(DecodeError::Oversized {
                len: body.len(),
                max: MAX_MANIFEST_BYTES,
            });
        }
        let (&version, rest) = body.split_first().ok_or(DecodeError::Truncated)?;
        if version != FORMAT_VERSION {
            return Err(DecodeError::UnknownVersion(version));
        }
        let (manifest, trailing): (Manifest, _) =
            postcard::take_from_bytes(rest).map_err(|e| Encoded::Manifest.postcard(e))?;
        if !trailing.is_empty() {
            return Err(DecodeError::TrailingBytes(trailing.len()));
        }
        if manifest.encode() != body {
            return Err(DecodeError::NonCanonical(Encoded::Manifest));
        }
        manifest.check_fields().map_err(DecodeError::Field)?;
        Ok(manifest)
    }

    /// Field checks that need no key: names, version syntax, rollout shares.
    fn check_fields(&self) -> Result<(), FieldError> {
        for (what, s) in [
            ("product", &self.product),
            ("channel", &self.channel),
            ("artifact name", &self.artifact.name),
        ]
        .into_iter()
        .chain(self.hardware.iter().map(|h| ("hardware model", h)))
        {
            if s.is_empty() || s.len() > MAX_NAME_LEN || s.chars().any(char::is_control) {
                return Err(FieldError::BadText {
                    what,
                    value: s.clone(),
                });
            }
        }
        if semver::Version::parse(&self.version).is_err() {
            return Err(FieldError::NotSemver {
                version: self.version.clone(),
            });
        }
        if !self.chunking.is_valid() {
            return Err(FieldError::ChunkBounds(self.chunking));
        }
        if self.rollout.stages.is_empty()
            || self
                .rollout
                .stages
                .iter()
                .any(|s| s.share == 0 || s.share > 10_000)
            || self
                .rollout
                .stages
                .windows(2)
                .any(|w| w[0].share > w[1].share)
            || self.rollout.max_failures.is_some_and(|m| m > 10_000)
        {
            return Err(FieldError::RolloutStages);
        }
        Ok(())
    }

    /// Checks that the chunk list describes exactly the artifact: lengths in
    /// bounds and summing to its size.
    pub fn check_chunk_list(&self) -> Result<(), ChunkListError> {
        let mut total: u64 = 0;
        for (index, c) in self.chunks.iter().enumerate() {
            if c.len == 0 || c.len > self.chunking.max {
                return Err(ChunkListError::Length {
                    index,
                    len: c.len,
                    max: self.chunking.max,
                });
            }
            total += u64::from(c.len);
        }
        if total != self.artifact.size {
            return Err(ChunkListError::Size {
                total,
                size: self.artifact.size,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn sample(release: u64, chunks: usize) -> Manifest {
        let chunks: Vec<ChunkRef> = (0..chunks)
            .map(|i| ChunkRef {
                id: ChunkId::of(&i.to_le_bytes()),
                len: 100_000 + i as u32,
            })
            .collect();
        Manifest {
            product: "press-controller".into(),
            channel: "stable".into(),
            version: format!("1.{release}.0"),
            release,
            created_at: 1_700_000_000,
            expires_at: 1_900_000_000,
            hardware: vec!["imx8-rev2".into()],
            artifact: Artifact {
                name: "image.bin".into(),
                size: chunks.iter().map(|c| u64::from(c.len)).sum(),
                blake3: [7; 32],
            },
            chunking: ChunkParams::DEFAULT,
            chunks,
            rollout: Rollout::default(),
            install: Install::FullImage,
        }
    }

    #[test]
    fn placed_chunks_sit_end_to_end() {
        let m = sample(1, 3);
        let placed: Vec<(u64, u32)> = m.placed_chunks().map(|(o, c)| (o, c.len)).collect();
        assert_eq!(
            placed,
            [(0, 100_000), (100_000, 100_001), (200_001, 100_002)]
        );
    }

    #[test]
    fn unknown_version_is_refused() {
        let mut bytes = sample(1, 2).encode();
        bytes[0] = 9;
        assert_eq!(
            Manifest::decode(&bytes),
            Err(DecodeError::UnknownVersion(9))
        );
    }

    #[test]
    fn truncation_and_trailing_bytes_are_refused() {
        let bytes = sample(1, 3).encode();
        assert_eq!(
            Manifest::decode(&bytes[..bytes.len() - 1]),
            Err(DecodeError::Truncated)
        );
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            Manifest::decode(&longer),
            Err(DecodeError::TrailingBytes(1))
        );
    }

    #[test]
    fn bad_fields_are_refused() {
        let mut m = sample(1, 1);
        m.version = "one".into();
        let err = Manifest::decode(&m.encode()).expect_err("a non-semver version is refused");
        assert!(matches!(
            err,
            DecodeError::Field(FieldError::NotSemver { .. })
        ));
        assert!(
            err.to_string()
                .starts_with("malformed manifest: version \"one\" is not semver: "),
            "{err}"
        );
        let mut m = sample(1, 1);
        m.rollout.stages[0].share = 0;
        assert_eq!(
            Manifest::decode(&m.encode()),
            Err(DecodeError::Field(FieldError::RolloutStages))
        );
    }

    #[test]
    fn chunk_list_must_cover_the_artifact() {
        let mut m = sample(1, 4);
        assert!(m.check_chunk_list().is_ok());
        m.artifact.size += 1;
        assert!(matches!(
            m.check_chunk_list(),
            Err(ChunkListError::Size { .. })
        ));
    }

    proptest! {
        #[test]
        fn encoding_round_trips(
            release in any::<u64>(),
            n in 0usize..64,
            created in any::<u64>(),
            hw in proptest::collection::vec("[a-z0-9-]{1,20}", 0..4),
            stages in proptest::collection::vec(1u16..=10_000, 1..5),
        ) {
            let mut m = sample(release % 1000, n);
            m.release = release;
            m.created_at = created;
            m.hardware = hw;
            let mut stages = stages;
            stages.sort_unstable();
            m.rollout.stages = stages.into_iter().map(|share| RolloutStage { share, start_at: None }).collect();
            let bytes = m.encode();
            prop_assert_eq!(Manifest::decode(&bytes), Ok(m));
        }
    }
}
