//! Rollout controls: the publisher's signed word on a release after it
//! shipped — promote the next stage now, halt, resume.
//!
//! A control is signed like a manifest (same envelope, same trust policy,
//! its own signing context "pollen rollout v1", so a manifest signature can
//! never pass as a control or the reverse). Controls of one release are
//! ordered by `seq`; a device keeps the highest verified one.

use serde::{Deserialize, Serialize};

use crate::manifest::{
    check_signatures, open_envelope, seal_envelope, sign_body, DecodeError, Encoded, KeyId,
    ManifestId, SecretKey, Signature, TrustPolicy, VerifyError,
};

pub(crate) const SIGNING_CONTEXT: &str = "pollen rollout v1";
/// Version byte that starts every control body.
pub const CONTROL_FORMAT: u8 = 1;
/// Largest signed control accepted.
pub const MAX_CONTROL_BYTES: usize = 4096;

/// The publisher's current word on one release's rollout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutControl {
    pub channel: String,
    /// The release (manifest id) this control steers.
    pub release: ManifestId,
    /// Orders controls of one release; the highest wins.
    pub seq: u64,
    /// Every stage up to this index is open, whatever its start time.
    pub promoted: Option<u16>,
    /// Devices that have not installed the release must not install it.
    pub halted: bool,
    /// Seconds since the Unix epoch, for people.
    pub issued_at: u64,
}

impl RolloutControl {
    /// The neutral control of a release (nothing promoted, not halted), to build on.
    pub fn initial(channel: &str, release: ManifestId) -> Self {
        Self {
            channel: channel.to_owned(),
            release,
            seq: 0,
            promoted: None,
            halted: false,
            issued_at: 0,
        }
    }

    /// A control that supersedes `self`, issued at `now` (seconds): its seq
    /// is above `self`'s and follows the clock, so a publisher working from
    /// a stale copy still orders after what it issued before.
    pub fn next(&self, now: u64) -> Self {
        Self {
            seq: now.saturating_mul(1000).max(self.seq.saturating_add(1)),
            issued_at: now,
            ..self.clone()
        }
    }
}

/// How far ahead of the clock a control's `seq` may be (milliseconds): a
/// control cannot claim a place in the order no later control can pass.
pub const MAX_SEQ_AHEAD_MS: u64 = 24 * 3600 * 1000;

impl RolloutControl {
    /// Refuses a `seq` more than [`MAX_SEQ_AHEAD_MS`] past `now` (seconds):
    /// a seq near `u64::MAX` would order after every later control (a
    /// halt that can never be lifted, or one that blocks the automatic halt).
    pub fn check_seq(&self, now: u64) -> Result<(), ControlError> {
        let limit = now.saturating_mul(1000).saturating_add(MAX_SEQ_AHEAD_MS);
        if self.seq > limit {
            return Err(ControlError::SeqAhead {
                seq: self.seq,
                limit,
            });
        }
        Ok(())
    }
}

/// Why control bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    #[error("rollout control: {0}")]
    Decode(#[from] DecodeError),
    #[error("rollout control: {0}")]
    Signature(VerifyError),
    #[error("rollout control: seq {seq} is beyond {limit}, a day past the clock (refused: nothing could follow it)")]
    SeqAhead { seq: u64, limit: u64 },
}

/// Decoded, not yet verified control bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedControl {
    body: Vec<u8>,
    control: RolloutControl,
    signatures: Vec<Signature>,
}

impl SignedControl {
    pub fn sign(control: RolloutControl, keys: &[&SecretKey]) -> Self {
        let body = crate::encode::canonical(&[CONTROL_FORMAT], &control);
        let signatures = sign_body(SIGNING_CONTEXT, &body, keys);
        Self {
            body,
            control,
            signatures,
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, ControlError> {
        let (body, signatures) = open_envelope(bytes, MAX_CONTROL_BYTES)?;
        let (&format, rest) = body.split_first().ok_or(DecodeError::Truncated)?;
        if format != CONTROL_FORMAT {
            return Err(DecodeError::UnknownVersion(format).into());
        }
        let (control, trailing): (RolloutControl, _) =
            postcard::take_from_bytes(rest).map_err(|e| Encoded::Control.postcard(e))?;
        if !trailing.is_empty() {
            return Err(DecodeError::TrailingBytes(trailing.len()).into());
        }
        Ok(Self {
            body,
            control,
            signatures,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        seal_envelope(&self.body, &self.signatures)
    }

    /// The control as decoded; not yet verified.
    pub fn control(&self) -> &RolloutControl {
        &self.control
    }

    /// Checks the signatures against the device's trust policy.
    pub fn verify(self, policy: &TrustPolicy) -> Result<VerifiedControl, ControlError> {
        let digest = blake3::derive_key(SIGNING_CONTEXT, &self.body);
        let signers =
            check_signatures(&digest, &self.signatures, policy).map_err(ControlError::Signature)?;
        Ok(VerifiedControl {
            signed: self,
            signers,
        })
    }
}

/// A control whose signatures satisfied the trust policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedControl {
    signed: SignedControl,
    signers: Vec<KeyId>,
}

impl VerifiedControl {
    pub fn control(&self) -> &RolloutControl {
        &self.signed.control
    }
    pub fn to_bytes(&self) -> Vec<u8> {
        self.signed.encode()
    }
    pub fn signers(&self) -> &[KeyId] {
        &self.signers
    }
    /// For a publisher's seeder relaying controls it was handed locally: it
    /// passes them on unjudged, every device verifies them. Devices never call this.
    pub fn assume_verified(signed: SignedControl) -> Self {
        Self {
            signed,
            signers: Vec::new(),
        }
    }
    /// Decodes and verifies control bytes in one step.
    pub fn from_bytes(bytes: &[u8], policy: &TrustPolicy) -> Result<Self, ControlError> {
        SignedControl::decode(bytes)?.verify(policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn control() -> RolloutControl {
        RolloutControl {
            channel: "stable".into(),
            release: ManifestId([9; 32]),
            seq: 4,
            promoted: Some(1),
            halted: true,
            issued_at: 1_800_000_000,
        }
    }

    #[test]
    fn round_trips_and_verifies() {
        let k = SecretKey::from_bytes(&[1; 32]);
        let bytes = SignedControl::sign(control(), &[&k]).encode();
        let v = VerifiedControl::from_bytes(&bytes, &TrustPolicy::single(k.public()))
            .expect("verifies");
        assert_eq!(v.control(), &control());
        assert_eq!(v.to_bytes(), bytes);
    }

    #[test]
    fn seq_far_ahead_of_the_clock_is_refused_and_next_never_wraps() {
        let mut c = control();
        c.seq = u64::MAX;
        assert!(matches!(
            c.check_seq(1_800_000_000),
            Err(ControlError::SeqAhead { .. })
        ));
        assert_eq!(c.next(1).seq, u64::MAX, "saturates, never wraps to 0");
        assert!(control()
            .next(1_800_000_000)
            .check_seq(1_800_000_000)
            .is_ok());
    }

    #[test]
    fn every_flipped_byte_is_refused() {
        let k = SecretKey::from_bytes(&[1; 32]);
        let policy = TrustPolicy::single(k.public());
        let bytes = SignedControl::sign(control(), &[&k]).encode();
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            assert!(
                VerifiedControl::from_bytes(&bad, &policy).is_err(),
                "flip at byte {i} accepted"
            );
        }
    }

    #[test]
    fn unknown_key_and_manifest_context_are_refused() {
        let k = SecretKey::from_bytes(&[1; 32]);
        let stranger = SecretKey::from_bytes(&[2; 32]);
        let bytes = SignedControl::sign(control(), &[&stranger]).encode();
        let err = VerifiedControl::from_bytes(&bytes, &TrustPolicy::single(k.public()))
            .expect_err("stranger");
        assert!(matches!(
            err,
            ControlError::Signature(VerifyError::UnknownKey { .. })
        ));
        // The same body signed under the manifest context does not verify as a control.
        let signed = SignedControl::sign(control(), &[&k]);
        let forged = SignedControl {
            signatures: sign_body("pollen manifest v1", &signed.body, &[&k]),
            ..signed
        };
        assert!(forged.verify(&TrustPolicy::single(k.public())).is_err());
    }
}
