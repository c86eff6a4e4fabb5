//! The signed channel index: an origin's word on which release is current
//! on one channel, with which rollout control and fleet policy, until when.
//!
//! Body: `[INDEX_FORMAT] ++ postcard(ChannelIndex)`, in the common signed
//! envelope, signed under its own context "pollen index v1" by the
//! operator role (the role that signs rollout controls; for a device on a
//! plain trust file, [`VerifiedPolicy::from_trust`] makes that the trust
//! file's keys, as for controls). A device takes an index only if it is
//! signed by the held policy's operator threshold, names the device's
//! channel, has not expired (a mirror that stopped updating is refused once
//! its index expires: [`IndexError::Expired`]) and its `seq` is not far
//! ahead of the clock. A node that already holds an index refuses an older
//! one ([`VerifiedIndex::check_not_older`]): a mirror cannot turn it back.
//! The index names what it points at by id only; each file it names is
//! verified on its own (manifest by its signatures, control by its id and
//! signatures, chunks by BLAKE3).

use serde::{Deserialize, Serialize};

use crate::manifest::{
    check_signatures, open_envelope, seal_envelope, sign_body, DecodeError, Encoded, KeyId,
    ManifestId, SecretKey, Signature, VerifyError,
};
use crate::trust::VerifiedPolicy;

use super::paths::valid_channel_name;

pub(crate) const SIGNING_CONTEXT: &str = "pollen index v1";
/// First byte of every index body (distinct from the other signed objects'
/// 1, `P` and `C`).
pub const INDEX_FORMAT: u8 = 0x49;
/// Largest signed index accepted (one is about 200 bytes plus 75 per
/// signature; an operator role has at most 16 keys).
pub const MAX_INDEX_BYTES: usize = 16 * 1024;
/// How far ahead of the clock an index's `seq` may be (milliseconds): an
/// index cannot claim a place in the order no later index can pass.
pub const MAX_SEQ_AHEAD_MS: u64 = 24 * 3600 * 1000;

/// BLAKE3 of a signed rollout control's bytes (envelope and signatures):
/// the name of its file under `control/`. Unlike a manifest id it covers
/// the signatures, so a co-signed control gets a new name and no file
/// ever changes its bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ControlId(pub [u8; 32]);

impl ControlId {
    /// The id of signed control `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }
    /// Whether `bytes` are the control this id names.
    pub fn matches(&self, bytes: &[u8]) -> bool {
        Self::of(bytes) == *self
    }
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl std::fmt::Display for ControlId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl std::fmt::Debug for ControlId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ControlId({})", &self.to_hex()[..16])
    }
}

/// One channel's current state on an origin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelIndex {
    pub channel: String,
    /// Strictly increasing per channel (the exporter uses Unix
    /// milliseconds): a node refuses an index older than one it holds.
    pub seq: u64,
    /// Seconds since the Unix epoch, for people.
    pub issued_at: u64,
    /// Seconds since the Unix epoch; refused after it (a frozen mirror).
    pub expires_at: u64,
    /// The channel's current release: `manifest/<id>`.
    pub manifest: ManifestId,
    /// That manifest's release number (to compare without fetching it).
    pub release: u64,
    /// The release's rollout control, if it has one: `control/<id>`.
    pub control: Option<ControlId>,
    /// The newest fleet policy the publisher holds: `policy/<version>`
    /// (`None`: a fleet on a trust file).
    pub policy_version: Option<u64>,
}

/// Why index bytes were refused. Each variant names its cause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IndexError {
    #[error("channel index: {0}")]
    Decode(#[from] DecodeError),
    #[error("channel index: channel name {0:?} is not a plain file name (letters, digits, '-', '_', '.')")]
    BadChannel(String),
    #[error("channel index: {0}")]
    Signature(VerifyError),
    #[error("channel index is for channel {found:?}, expected {expected:?}")]
    WrongChannel { expected: String, found: String },
    #[error("channel index of {channel:?} expired at {expires_at} (now {now}): the origin or mirror has stopped updating")]
    Expired {
        channel: String,
        expires_at: u64,
        now: u64,
    },
    #[error("channel index seq {seq} is beyond {limit}, a day past the clock (refused: nothing could follow it)")]
    SeqAhead { seq: u64, limit: u64 },
    #[error(
        "channel index seq {offered} is older than the one held ({held}): a stale origin or mirror"
    )]
    Stale { held: u64, offered: u64 },
}

impl ChannelIndex {
    /// Canonical body bytes.
    pub fn encode(&self) -> Vec<u8> {
        crate::encode::canonical(&[INDEX_FORMAT], self)
    }

    /// Parses body bytes: format byte, a plain channel name, no trailing
    /// bytes, one canonical encoding.
    pub fn decode(body: &[u8]) -> Result<Self, IndexError> {
        let (&format, rest) = body.split_first().ok_or(DecodeError::Truncated)?;
        if format != INDEX_FORMAT {
            return Err(DecodeError::UnknownVersion(format).into());
        }
        let (index, trailing): (ChannelIndex, _) =
            postcard::take_from_bytes(rest).map_err(|e| Encoded::ChannelIndex.postcard(e))?;
        if !trailing.is_empty() {
            return Err(DecodeError::TrailingBytes(trailing.len()).into());
        }
        if !valid_channel_name(&index.channel) {
            return Err(IndexError::BadChannel(index.channel));
        }
        if index.encode() != body {
            return Err(DecodeError::NonCanonical(Encoded::ChannelIndex).into());
        }
        Ok(index)
    }

    /// Refuses a `seq` more than [`MAX_SEQ_AHEAD_MS`] past `now` (seconds).
    pub fn check_seq(&self, now: u64) -> Result<(), IndexError> {
        let limit = now.saturating_mul(1000).saturating_add(MAX_SEQ_AHEAD_MS);
        if self.seq > limit {
            return Err(IndexError::SeqAhead {
                seq: self.seq,
                limit,
            });
        }
        Ok(())
    }

    /// Refuses an index whose expiry has passed (`now > expires_at`).
    pub fn check_expiry(&self, now: u64) -> Result<(), IndexError> {
        if now > self.expires_at {
            return Err(IndexError::Expired {
                channel: self.channel.clone(),
                expires_at: self.expires_at,
                now,
            });
        }
        Ok(())
    }
}

/// Decoded, not yet verified index bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedIndex {
    body: Vec<u8>,
    index: ChannelIndex,
    signatures: Vec<Signature>,
}

impl SignedIndex {
    /// Signs `index` with every key given (operator keys, one signature each).
    pub fn sign(index: ChannelIndex, keys: &[&SecretKey]) -> Result<Self, IndexError> {
        if !valid_channel_name(&index.channel) {
            return Err(IndexError::BadChannel(index.channel));
        }
        let body = index.encode();
        let signatures = sign_body(SIGNING_CONTEXT, &body, keys);
        Ok(Self {
            body,
            index,
            signatures,
        })
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, IndexError> {
        let (body, signatures) = open_envelope(bytes, MAX_INDEX_BYTES)?;
        let index = ChannelIndex::decode(&body)?;
        Ok(Self {
            body,
            index,
            signatures,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        seal_envelope(&self.body, &self.signatures)
    }

    /// The index as decoded; not yet verified.
    pub fn index(&self) -> &ChannelIndex {
        &self.index
    }

    pub fn signatures(&self) -> &[Signature] {
        &self.signatures
    }

    /// Checks the signatures against the operator role of `held`, then
    /// the channel, the clock and the expiry.
    pub fn verify(
        self,
        held: &VerifiedPolicy,
        channel: &str,
        now: u64,
    ) -> Result<VerifiedIndex, IndexError> {
        let digest = blake3::derive_key(SIGNING_CONTEXT, &self.body);
        let signers = check_signatures(&digest, &self.signatures, &held.policy().operator)
            .map_err(IndexError::Signature)?;
        if self.index.channel != channel {
            return Err(IndexError::WrongChannel {
                expected: channel.to_owned(),
                found: self.index.channel.clone(),
            });
        }
        self.index.check_seq(now)?;
        self.index.check_expiry(now)?;
        Ok(VerifiedIndex {
            signed: self,
            signers,
        })
    }
}

/// Decodes and verifies index bytes fetched from an origin for `channel`
/// at `now` (seconds), under the operator role of the policy (or trust
/// file) the node holds.
pub fn verify(
    bytes: &[u8],
    held: &VerifiedPolicy,
    channel: &str,
    now: u64,
) -> Result<VerifiedIndex, IndexError> {
    SignedIndex::decode(bytes)?.verify(held, channel, now)
}

/// An index that passed [`verify`]; only `verify` makes one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedIndex {
    signed: SignedIndex,
    signers: Vec<KeyId>,
}

impl VerifiedIndex {
    pub fn index(&self) -> &ChannelIndex {
        &self.signed.index
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.signed.encode()
    }

    pub fn signers(&self) -> &[KeyId] {
        &self.signers
    }

    /// Whether this index is older than one with `held_seq` (the node must
    /// not go back to it).
    pub fn is_older_than(&self, held_seq: u64) -> bool {
        self.index().seq < held_seq
    }

    /// [`IndexError::Stale`] when this index is older than `held_seq`;
    /// the same seq again (a mirror not yet updated) passes.
    pub fn check_not_older(&self, held_seq: u64) -> Result<(), IndexError> {
        if self.is_older_than(held_seq) {
            return Err(IndexError::Stale {
                held: held_seq,
                offered: self.index().seq,
            });
        }
        Ok(())
    }

    /// Whether the index has expired at `now` (a held index goes stale
    /// while no newer one arrives).
    pub fn is_expired(&self, now: u64) -> bool {
        self.index().check_expiry(now).is_err()
    }
}

#[cfg(test)]
mod tests;
