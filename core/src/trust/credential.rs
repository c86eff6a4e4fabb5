//! Device credentials: the enroll role's word that a mesh identity key
//! (a libp2p ed25519 peer id) is device `device` of `site`, until `expires_at`.
//!
//! Body: `[CREDENTIAL_FORMAT] ++ postcard(Credential)` in the common
//! envelope, signed under "pollen credential v1". Peers check a credential
//! against the policy they hold (enroll threshold, expiry, revocation) and
//! against the key Noise authenticated on the connection; status records
//! take device id, site and hardware from it, never from the record.

use serde::{Deserialize, Serialize};

use super::policy::FleetPolicy;
use super::MAX_NAME_LEN;
use crate::manifest::{
    check_signatures, open_envelope, seal_envelope, sign_body, DecodeError, Encoded, SecretKey,
    Signature, VerifyError,
};

/// First byte of every credential body.
pub const CREDENTIAL_FORMAT: u8 = 0x43;
/// Largest signed credential accepted.
pub const MAX_CREDENTIAL_BYTES: usize = 4096;
pub(crate) const SIGNING_CONTEXT: &str = "pollen credential v1";

/// What the enroll role says about one node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    /// The node's mesh identity: its ed25519 public key (its peer id).
    pub key: [u8; 32],
    /// The id rollout buckets are computed from; unique in the fleet.
    pub device: String,
    pub site: Option<String>,
    pub hardware: Option<String>,
    pub serial: Option<String>,
    /// Seconds since the Unix epoch.
    pub issued_at: u64,
    pub expires_at: u64,
}

/// Why a credential was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialError {
    #[error("credential: {0}")]
    Decode(#[from] DecodeError),
    #[error("credential: text field {0:?} is empty or longer than {MAX_NAME_LEN} bytes")]
    BadName(String),
    #[error("credential of {device:?}: {source}")]
    Signature { device: String, source: VerifyError },
    #[error("credential of {device:?} expired at {expires_at} (now {now})")]
    Expired {
        device: String,
        expires_at: u64,
        now: u64,
    },
    #[error("credential of {device:?} is revoked by fleet policy version {version}")]
    Revoked { device: String, version: u64 },
    #[error("credential of {device:?} is for another node's key (presented by {presented})")]
    WrongKey { device: String, presented: String },
    #[error("the fleet policy has no enroll role: credentials cannot be checked")]
    OpenMesh,
}

impl Credential {
    fn check(&self) -> Result<(), CredentialError> {
        let fields = [
            Some(&self.device),
            self.site.as_ref(),
            self.hardware.as_ref(),
            self.serial.as_ref(),
        ];
        for name in fields.into_iter().flatten() {
            if name.is_empty() || name.len() > MAX_NAME_LEN || name.chars().any(char::is_control) {
                return Err(CredentialError::BadName(name.clone()));
            }
        }
        Ok(())
    }

    fn encode(&self) -> Vec<u8> {
        crate::encode::canonical(&[CREDENTIAL_FORMAT], self)
    }
}

/// Decoded, not yet verified credential bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedCredential {
    body: Vec<u8>,
    credential: Credential,
    signatures: Vec<Signature>,
}

impl SignedCredential {
    /// Signs `credential` with every enroll key given.
    pub fn sign(credential: Credential, keys: &[&SecretKey]) -> Result<Self, CredentialError> {
        credential.check()?;
        let body = credential.encode();
        let signatures = sign_body(SIGNING_CONTEXT, &body, keys);
        Ok(Self {
            body,
            credential,
            signatures,
        })
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, CredentialError> {
        let (body, signatures) = open_envelope(bytes, MAX_CREDENTIAL_BYTES)?;
        let (&format, rest) = body.split_first().ok_or(DecodeError::Truncated)?;
        if format != CREDENTIAL_FORMAT {
            return Err(DecodeError::UnknownVersion(format).into());
        }
        let (credential, trailing): (Credential, _) =
            postcard::take_from_bytes(rest).map_err(|e| Encoded::Credential.postcard(e))?;
        if !trailing.is_empty() {
            return Err(DecodeError::TrailingBytes(trailing.len()).into());
        }
        if credential.encode() != body {
            return Err(DecodeError::NonCanonical(Encoded::Credential).into());
        }
        credential.check()?;
        Ok(Self {
            body,
            credential,
            signatures,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        seal_envelope(&self.body, &self.signatures)
    }

    /// The credential as decoded; not yet verified.
    pub fn credential(&self) -> &Credential {
        &self.credential
    }

    /// Checks it against `policy` at `now`: the enroll threshold signed it,
    /// it has not expired, its key is not revoked.
    pub fn verify(
        self,
        policy: &FleetPolicy,
        now: u64,
    ) -> Result<VerifiedCredential, CredentialError> {
        let enroll = policy.enroll.as_ref().ok_or(CredentialError::OpenMesh)?;
        let device = || self.credential.device.clone();
        let digest = blake3::derive_key(SIGNING_CONTEXT, &self.body);
        check_signatures(&digest, &self.signatures, enroll).map_err(|source| {
            CredentialError::Signature {
                device: device(),
                source,
            }
        })?;
        if now >= self.credential.expires_at {
            return Err(CredentialError::Expired {
                device: device(),
                expires_at: self.credential.expires_at,
                now,
            });
        }
        if policy.is_revoked(&self.credential.key) {
            return Err(CredentialError::Revoked {
                device: device(),
                version: policy.version,
            });
        }
        Ok(VerifiedCredential { signed: self })
    }
}

/// A credential that verified under the policy held when it was checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedCredential {
    signed: SignedCredential,
}

impl VerifiedCredential {
    /// Decodes and verifies credential bytes in one step, and checks they
    /// are for `key` (the identity key the connection authenticated).
    pub fn check(
        bytes: &[u8],
        key: &[u8; 32],
        policy: &FleetPolicy,
        now: u64,
    ) -> Result<Self, CredentialError> {
        let v = SignedCredential::decode(bytes)?.verify(policy, now)?;
        if &v.credential().key != key {
            return Err(CredentialError::WrongKey {
                device: v.credential().device.clone(),
                presented: hex::encode(key),
            });
        }
        Ok(v)
    }

    pub fn credential(&self) -> &Credential {
        &self.signed.credential
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.signed.encode()
    }

    /// Still good under `policy` at `now` (a newer policy may revoke it).
    pub fn still_valid(&self, policy: &FleetPolicy, now: u64) -> Result<(), CredentialError> {
        self.signed.clone().verify(policy, now).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{PublicKey, TrustPolicy};

    fn key(n: u8) -> SecretKey {
        SecretKey::from_bytes(&[n; 32])
    }

    fn policy(enroll: &[u8], threshold: usize) -> FleetPolicy {
        let single = |n: u8| TrustPolicy::single(key(n).public());
        let keys: Vec<PublicKey> = enroll.iter().map(|&n| key(n).public()).collect();
        FleetPolicy::new(
            1,
            u64::MAX,
            [single(1), single(2), single(3)],
            Some(TrustPolicy::new(keys, threshold).expect("valid")),
        )
    }

    fn credential(device_key: u8) -> Credential {
        Credential {
            key: *key(device_key).public().as_bytes(),
            device: "press-7".into(),
            site: Some("hall-a".into()),
            hardware: Some("imx8".into()),
            serial: None,
            issued_at: 100,
            expires_at: 1_000,
        }
    }

    fn signed(by: &[u8]) -> Vec<u8> {
        let keys: Vec<SecretKey> = by.iter().map(|&n| key(n)).collect();
        let refs: Vec<&SecretKey> = keys.iter().collect();
        SignedCredential::sign(credential(40), &refs)
            .expect("valid")
            .encode()
    }

    #[test]
    fn genuine_credential_for_its_own_key_passes() {
        let bytes = signed(&[4]);
        let own = *key(40).public().as_bytes();
        let v = VerifiedCredential::check(&bytes, &own, &policy(&[4], 1), 500).expect("genuine");
        assert_eq!(v.credential().device, "press-7");
        assert_eq!(v.to_bytes(), bytes);
    }

    #[test]
    fn every_refusal_names_its_cause() {
        let own = *key(40).public().as_bytes();
        let p = policy(&[4, 5], 2);
        assert!(matches!(
            VerifiedCredential::check(&signed(&[4]), &own, &p, 500),
            Err(CredentialError::Signature {
                source: VerifyError::BelowThreshold { .. },
                ..
            })
        ));
        assert!(matches!(
            VerifiedCredential::check(&signed(&[4, 4]), &own, &p, 500),
            Err(CredentialError::Signature {
                source: VerifyError::DuplicateSignature { .. },
                ..
            })
        ));
        let both = signed(&[4, 5]);
        assert!(VerifiedCredential::check(&both, &own, &p, 500).is_ok());
        assert!(matches!(
            VerifiedCredential::check(&both, &own, &p, 1_000),
            Err(CredentialError::Expired { .. })
        ));
        let other = *key(41).public().as_bytes();
        let err = VerifiedCredential::check(&both, &other, &p, 500).expect_err("stolen");
        assert!(matches!(err, CredentialError::WrongKey { .. }));
        assert!(err.to_string().contains("another node's key"));
        let mut revoking = p.clone();
        revoking.revoked.insert(own);
        revoking.version = 2;
        assert_eq!(
            VerifiedCredential::check(&both, &own, &revoking, 500),
            Err(CredentialError::Revoked {
                device: "press-7".into(),
                version: 2
            })
        );
        let mut open = p.clone();
        open.enroll = None;
        assert_eq!(
            VerifiedCredential::check(&both, &own, &open, 500),
            Err(CredentialError::OpenMesh)
        );
    }

    #[test]
    fn other_roles_contexts_do_not_pass() {
        // The same body signed as a manifest or policy is not a credential.
        let c = SignedCredential::sign(credential(40), &[&key(4)]).expect("valid");
        for context in [
            "pollen manifest v1",
            "pollen policy v1",
            "pollen rollout v1",
        ] {
            let forged = SignedCredential {
                signatures: sign_body(context, &c.body, &[&key(4)]),
                ..c.clone()
            };
            assert!(forged.verify(&policy(&[4], 1), 500).is_err());
        }
    }

    #[test]
    fn bad_names_and_flipped_bytes_are_refused() {
        let mut c = credential(40);
        c.device = String::new();
        assert!(SignedCredential::sign(c, &[&key(4)]).is_err());
        let mut c = credential(40);
        c.site = Some("a\nb".into());
        assert!(SignedCredential::sign(c, &[&key(4)]).is_err());
        let bytes = signed(&[4]);
        let own = *key(40).public().as_bytes();
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            assert!(
                VerifiedCredential::check(&bad, &own, &policy(&[4], 1), 500).is_err(),
                "flip at byte {i} accepted"
            );
        }
    }
}
