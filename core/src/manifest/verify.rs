//! `verify`: from untrusted bytes to a manifest this device may act on.
//!
//! One error variant per threat (DESIGN.md §4 items 1–4 and 7), each naming
//! its cause. Verification is pure: no clock (the caller passes `now`), no I/O.

use std::collections::BTreeSet;

use super::keys::KeyId;
use super::signed::{signing_digest, Signature, SignedManifest};
use super::trust::TrustPolicy;
use super::{ChunkListError, DecodeError, Manifest, ManifestId};

/// What the device knows about itself when judging a manifest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyContext {
    /// Seconds since the Unix epoch.
    pub now: u64,
    /// Lowest release number this device still accepts (its installed release).
    pub floor: u64,
    /// The device's hardware model; `None` skips the hardware check.
    pub hardware: Option<String>,
    /// The channel the device follows; `None` accepts any channel.
    pub channel: Option<String>,
}

/// Why a manifest was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    // Threat 2: altered, truncated, oversized, unknown version.
    #[error(transparent)]
    Decode(DecodeError),
    // Threat 1: signatures.
    #[error(
        "signed only by unknown key {key_id}: no trusted key signed this manifest enough times"
    )]
    UnknownKey { key_id: KeyId },
    #[error("key {key_id} signed more than once; each key counts once")]
    DuplicateSignature { key_id: KeyId },
    #[error("signature by trusted key {key_id} does not match the manifest bytes (altered after signing)")]
    BadSignature { key_id: KeyId },
    #[error("{valid} valid signature(s) from trusted keys, policy needs {required}")]
    BelowThreshold { valid: usize, required: usize },
    // Threat 2: wrong channel.
    #[error("manifest is for channel {found:?}, this device follows {expected:?}")]
    WrongChannel { expected: String, found: String },
    // Threat 3: rollback and freeze.
    #[error("release {release} is older than the installed floor {floor} (rollback refused)")]
    Rollback { release: u64, floor: u64 },
    #[error("manifest expired at {expires_at} (now {now}); refusing a possibly frozen release")]
    Expired { expires_at: u64, now: u64 },
    // Threat 4.
    #[error("release targets hardware {targets:?}, this device is {hardware:?}")]
    WrongHardware {
        hardware: String,
        targets: Vec<String>,
    },
    // Threat 7: content the signature does not cover.
    #[error("content not covered by the signature: {0} bytes follow the signed manifest")]
    Trailing(usize),
    #[error("content not covered by the signature: {0}")]
    ChunkList(ChunkListError),
}

impl From<DecodeError> for VerifyError {
    fn from(e: DecodeError) -> Self {
        match e {
            DecodeError::TrailingBytes(n) => VerifyError::Trailing(n),
            other => VerifyError::Decode(other),
        }
    }
}

/// A manifest that passed [`verify`]; only `verify` makes one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedManifest {
    signed: SignedManifest,
    signers: Vec<KeyId>,
}

impl VerifiedManifest {
    pub fn manifest(&self) -> &Manifest {
        self.signed.manifest()
    }
    pub fn id(&self) -> ManifestId {
        self.signed.id()
    }
    /// Envelope bytes, to store or send on unchanged.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.signed.encode()
    }
    /// For a publisher serving its own store: manifests it signed and checked
    /// when it published them. A device never calls this; it calls [`verify`].
    pub fn assume_verified(signed: SignedManifest) -> Self {
        Self {
            signed,
            signers: Vec::new(),
        }
    }
    /// The trusted keys whose valid signatures counted.
    pub fn signers(&self) -> &[KeyId] {
        &self.signers
    }
}

/// Verifies signed manifest bytes against the device's policy and situation.
pub fn verify(
    bytes: &[u8],
    policy: &TrustPolicy,
    ctx: &VerifyContext,
) -> Result<VerifiedManifest, VerifyError> {
    let signed = SignedManifest::decode(bytes)?;
    let signers = check_signatures(&signing_digest(signed.body()), signed.signatures(), policy)?;
    check_context(signed.manifest(), ctx)?;
    Ok(VerifiedManifest { signed, signers })
}

/// Everything [`verify`] checks of a manifest besides its signatures: the
/// channel, expiry, rollback floor, hardware and chunk list against `ctx`.
pub fn check_context(m: &Manifest, ctx: &VerifyContext) -> Result<(), VerifyError> {
    if let Some(expected) = &ctx.channel {
        if &m.channel != expected {
            return Err(VerifyError::WrongChannel {
                expected: expected.clone(),
                found: m.channel.clone(),
            });
        }
    }
    if ctx.now >= m.expires_at {
        return Err(VerifyError::Expired {
            expires_at: m.expires_at,
            now: ctx.now,
        });
    }
    if m.release < ctx.floor {
        return Err(VerifyError::Rollback {
            release: m.release,
            floor: ctx.floor,
        });
    }
    if let Some(hw) = &ctx.hardware {
        if !m.hardware.is_empty() && !m.hardware.contains(hw) {
            return Err(VerifyError::WrongHardware {
                hardware: hw.clone(),
                targets: m.hardware.clone(),
            });
        }
    }
    m.check_chunk_list().map_err(VerifyError::ChunkList)
}

/// Counts valid signatures over `digest` by distinct trusted keys against
/// the threshold (manifests and rollout controls alike).
pub(crate) fn check_signatures(
    digest: &[u8; 32],
    signatures: &[Signature],
    policy: &TrustPolicy,
) -> Result<Vec<KeyId>, VerifyError> {
    let mut seen = BTreeSet::new();
    let mut valid = Vec::new();
    let mut unknown = None;
    for sig in signatures {
        if !seen.insert(sig.key_id) {
            return Err(VerifyError::DuplicateSignature { key_id: sig.key_id });
        }
        let Some(key) = policy.key(&sig.key_id) else {
            unknown.get_or_insert(sig.key_id);
            continue;
        };
        key.verifying_key()
            .verify_strict(digest, &sig.signature)
            .map_err(|_| VerifyError::BadSignature { key_id: sig.key_id })?;
        valid.push(sig.key_id);
    }
    if valid.len() >= policy.threshold() {
        return Ok(valid);
    }
    match unknown {
        Some(key_id) if valid.is_empty() => Err(VerifyError::UnknownKey { key_id }),
        _ => Err(VerifyError::BelowThreshold {
            valid: valid.len(),
            required: policy.threshold(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::tests::sample;
    use crate::manifest::{PublicKey, SecretKey};
    use proptest::prelude::*;

    fn key(n: u8) -> SecretKey {
        SecretKey::from_bytes(&[n; 32])
    }

    fn ctx() -> VerifyContext {
        VerifyContext {
            now: 1_800_000_000,
            floor: 3,
            hardware: Some("imx8-rev2".into()),
            channel: Some("stable".into()),
        }
    }

    fn policy(keys: &[u8], threshold: usize) -> TrustPolicy {
        let keys: Vec<PublicKey> = keys.iter().map(|&n| key(n).public()).collect();
        TrustPolicy::new(keys, threshold).expect("valid policy")
    }

    fn signed(m: crate::manifest::Manifest, by: &[u8]) -> Vec<u8> {
        let keys: Vec<SecretKey> = by.iter().map(|&n| key(n)).collect();
        let refs: Vec<&SecretKey> = keys.iter().collect();
        SignedManifest::sign(m, &refs).encode()
    }

    #[test]
    fn genuine_manifest_passes() {
        let bytes = signed(sample(5, 3), &[1, 2]);
        let v = verify(&bytes, &policy(&[1, 2, 3], 2), &ctx()).expect("genuine");
        assert_eq!(v.manifest().release, 5);
        assert_eq!(v.signers().len(), 2);
        assert_eq!(v.to_bytes(), bytes);
    }

    #[test]
    fn the_id_is_the_body_hash_however_the_envelope_was_made() {
        let m = sample(5, 3);
        let mut made = SignedManifest::sign(m.clone(), &[&key(1)]);
        assert_eq!(made.id(), ManifestId::of_body(&m.encode()));
        made.add_signature(&key(2));
        let decoded = SignedManifest::decode(&made.encode()).expect("decodes");
        assert_eq!(decoded.id(), made.id());
        let other = SignedManifest::sign(sample(6, 3), &[&key(1)]);
        assert_ne!(other.id(), made.id());
    }

    #[test]
    fn threat1_signatures() {
        let p = policy(&[1, 2, 3], 2);
        assert!(matches!(
            verify(&signed(sample(5, 1), &[9]), &p, &ctx()),
            Err(VerifyError::UnknownKey { .. })
        ));
        assert_eq!(
            verify(&signed(sample(5, 1), &[1]), &p, &ctx()),
            Err(VerifyError::BelowThreshold {
                valid: 1,
                required: 2
            })
        );
        assert!(matches!(
            verify(&signed(sample(5, 1), &[1, 1]), &p, &ctx()),
            Err(VerifyError::DuplicateSignature { .. })
        ));
    }

    #[test]
    fn threat2_to_4() {
        let p = policy(&[1], 1);
        let mut m = sample(5, 1);
        m.channel = "beta".into();
        assert!(matches!(
            verify(&signed(m, &[1]), &p, &ctx()),
            Err(VerifyError::WrongChannel { .. })
        ));
        assert_eq!(
            verify(&signed(sample(2, 1), &[1]), &p, &ctx()),
            Err(VerifyError::Rollback {
                release: 2,
                floor: 3
            })
        );
        let mut m = sample(5, 1);
        m.expires_at = 1_700_000_001;
        assert!(matches!(
            verify(&signed(m, &[1]), &p, &ctx()),
            Err(VerifyError::Expired { .. })
        ));
        let mut m = sample(5, 1);
        m.hardware = vec!["rpi4".into()];
        assert!(matches!(
            verify(&signed(m, &[1]), &p, &ctx()),
            Err(VerifyError::WrongHardware { .. })
        ));
        let mut big = vec![crate::manifest::ENVELOPE_VERSION];
        big.resize(crate::manifest::MAX_MANIFEST_BYTES + 1, 0);
        assert!(matches!(
            verify(&big, &p, &ctx()),
            Err(VerifyError::Decode(DecodeError::Oversized { .. }))
        ));
    }

    #[test]
    fn threat7_mix_and_match() {
        let p = policy(&[1], 1);
        let mut bytes = signed(sample(5, 2), &[1]);
        bytes.extend_from_slice(&[0; 40]);
        assert!(matches!(
            verify(&bytes, &p, &ctx()),
            Err(VerifyError::Trailing(40))
        ));
        let a = SignedManifest::sign(sample(5, 2), &[&key(1)]);
        let b = SignedManifest::sign(sample(6, 3), &[&key(1)]);
        let spliced = b.with_signatures_of(&a).encode();
        assert!(matches!(
            verify(&spliced, &p, &ctx()),
            Err(VerifyError::BadSignature { .. })
        ));
        let mut m = sample(5, 2);
        m.artifact.size += 4096;
        assert!(matches!(
            verify(&signed(m, &[1]), &p, &ctx()),
            Err(VerifyError::ChunkList(ChunkListError::Size { .. }))
        ));
    }

    #[test]
    fn every_single_bit_flip_fails() {
        let p = policy(&[1, 2], 2);
        let bytes = signed(sample(5, 4), &[1, 2]);
        assert!(verify(&bytes, &p, &ctx()).is_ok());
        for bit in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(
                verify(&flipped, &p, &ctx()).is_err(),
                "flip of bit {bit} was accepted"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn bit_flips_fail_for_any_manifest(release in 3u64..1000, n in 0usize..20, bit in any::<prop::sample::Index>()) {
            let p = policy(&[1], 1);
            let bytes = signed(sample(release, n), &[1]);
            let mut flipped = bytes.clone();
            let i = bit.index(bytes.len() * 8);
            flipped[i / 8] ^= 1 << (i % 8);
            prop_assert!(verify(&flipped, &p, &ctx()).is_err());
        }

        #[test]
        fn arbitrary_bytes_never_verify(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            prop_assert!(verify(&bytes, &policy(&[1], 1), &ctx()).is_err());
        }
    }
}
