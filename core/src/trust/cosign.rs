//! Co-signing: one more signature on a signed Pollen object (manifest,
//! rollout control, fleet policy, credential, origin channel index), under that object's own
//! signing context, so a k-of-n role is signed on k separate machines
//! without any of them holding another's key.

use crate::manifest::{open_envelope, seal_envelope, sign_body, DecodeError, Manifest, SecretKey};
use crate::origin::{SignedIndex, INDEX_FORMAT};
use crate::rollout::SignedControl;

use super::credential::{SignedCredential, CREDENTIAL_FORMAT};
use super::policy::{SignedPolicy, POLICY_FORMAT};

/// Largest object `cosign` reads (a manifest's cap).
const MAX_OBJECT: usize = crate::manifest::MAX_MANIFEST_BYTES;

/// What kind of object was co-signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Manifest,
    Control,
    Policy,
    Credential,
    Index,
}

impl Kind {
    fn context(self) -> &'static str {
        match self {
            Kind::Manifest => crate::manifest::SIGNING_CONTEXT,
            Kind::Control => crate::rollout::SIGNING_CONTEXT,
            Kind::Policy => super::policy::SIGNING_CONTEXT,
            Kind::Credential => super::credential::SIGNING_CONTEXT,
            Kind::Index => crate::origin::index::SIGNING_CONTEXT,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Manifest => "release manifest",
            Kind::Control => "rollout control",
            Kind::Policy => "fleet policy",
            Kind::Credential => "device credential",
            Kind::Index => "channel index",
        }
    }
}

/// Why an object could not be co-signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CosignError {
    #[error("not a signed Pollen object: {0}")]
    Decode(#[from] DecodeError),
    #[error("not a manifest, rollout control, fleet policy, credential or channel index Pollen can read")]
    UnknownKind,
    #[error("key {key_id} already signed this {kind}")]
    AlreadySigned {
        key_id: crate::manifest::KeyId,
        kind: &'static str,
    },
}

/// Which kind of object `body` is (each decoder is strict, so at most one
/// accepts a body).
fn kind_of(bytes: &[u8], body: &[u8]) -> Result<Kind, CosignError> {
    match body.first() {
        Some(&POLICY_FORMAT) => SignedPolicy::decode(bytes)
            .map(|_| Kind::Policy)
            .map_err(|_| CosignError::UnknownKind),
        Some(&CREDENTIAL_FORMAT) => SignedCredential::decode(bytes)
            .map(|_| Kind::Credential)
            .map_err(|_| CosignError::UnknownKind),
        Some(&INDEX_FORMAT) => SignedIndex::decode(bytes)
            .map(|_| Kind::Index)
            .map_err(|_| CosignError::UnknownKind),
        _ if Manifest::decode(body).is_ok() => Ok(Kind::Manifest),
        _ if SignedControl::decode(bytes).is_ok() => Ok(Kind::Control),
        _ => Err(CosignError::UnknownKind),
    }
}

/// `bytes` with one more signature by `key`, and what they are. The
/// signatures already there are kept as they are (each verifier judges them).
pub fn cosign(bytes: &[u8], key: &SecretKey) -> Result<(Kind, Vec<u8>), CosignError> {
    let (body, mut signatures) = open_envelope(bytes, MAX_OBJECT)?;
    let kind = kind_of(bytes, &body)?;
    let key_id = key.public().id();
    if signatures.iter().any(|s| s.key_id == key_id) {
        return Err(CosignError::AlreadySigned {
            key_id,
            kind: kind.as_str(),
        });
    }
    signatures.extend(sign_body(kind.context(), &body, &[key]));
    Ok((kind, seal_envelope(&body, &signatures)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{tests::sample, verify, SignedManifest, TrustPolicy, VerifyContext};

    fn key(n: u8) -> SecretKey {
        SecretKey::from_bytes(&[n; 32])
    }

    #[test]
    fn two_of_three_signed_on_separate_machines() {
        let policy = TrustPolicy::new(vec![key(1).public(), key(2).public(), key(3).public()], 2)
            .expect("valid");
        let ctx = VerifyContext {
            now: 1_800_000_000,
            ..VerifyContext::default()
        };
        let one = SignedManifest::sign(sample(5, 2), &[&key(1)]).encode();
        assert!(verify(&one, &policy, &ctx).is_err(), "one of three");
        let (kind, two) = cosign(&one, &key(3)).expect("co-signs");
        assert_eq!(kind, Kind::Manifest);
        assert_eq!(
            verify(&two, &policy, &ctx).map(|v| v.signers().len()),
            Ok(2)
        );
        assert!(matches!(
            cosign(&two, &key(3)),
            Err(CosignError::AlreadySigned { .. })
        ));
        assert!(matches!(
            cosign(b"not signed", &key(3)),
            Err(CosignError::Decode(_))
        ));
    }

    #[test]
    fn controls_are_cosigned_under_their_own_context() {
        use crate::rollout::{RolloutControl, VerifiedControl};
        let c = RolloutControl::initial("stable", crate::manifest::ManifestId([1; 32]));
        let bytes = SignedControl::sign(c, &[&key(1)]).encode();
        let (kind, two) = cosign(&bytes, &key(2)).expect("co-signs");
        assert_eq!(kind, Kind::Control);
        let both = TrustPolicy::new(vec![key(1).public(), key(2).public()], 2).expect("valid");
        assert!(VerifiedControl::from_bytes(&two, &both).is_ok());
    }

    #[test]
    fn channel_indexes_are_cosigned_under_their_own_context() {
        use crate::origin::{verify, ChannelIndex};
        use crate::trust::VerifiedPolicy;
        let index = ChannelIndex {
            channel: "stable".into(),
            seq: 1,
            issued_at: 1,
            expires_at: 1_900_000_000,
            manifest: crate::manifest::ManifestId([1; 32]),
            release: 3,
            control: None,
            policy_version: None,
        };
        let bytes = SignedIndex::sign(index, &[&key(1)])
            .expect("signs")
            .encode();
        let (kind, two) = cosign(&bytes, &key(2)).expect("co-signs");
        assert_eq!(kind, Kind::Index);
        let both = TrustPolicy::new(vec![key(1).public(), key(2).public()], 2).expect("valid");
        let held = VerifiedPolicy::from_trust(both);
        assert!(verify(&bytes, &held, "stable", 1_800_000_000).is_err());
        assert!(verify(&two, &held, "stable", 1_800_000_000).is_ok());
    }
}
