//! The fleet policy: one signed, versioned document naming the keys and
//! thresholds of each role, the revoked device keys, recalled releases and
//! per-channel floor resets.
//!
//! Body: `[POLICY_FORMAT] ++ postcard(WirePolicy)`, in the same envelope
//! as manifests and controls, signed by the root role under the context
//! "pollen policy v1". A device holds one policy and takes a newer one only
//! when the root threshold of the held policy *and* of the new one signed
//! it (TUF root rotation), its version is higher and it has not expired.
//! Today's trust file becomes a device's first policy through
//! [`VerifiedPolicy::from_trust`]: version 0, every signing role its keys,
//! and no enroll role (an open mesh, as before policies).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::MAX_NAME_LEN;
use crate::manifest::{
    check_signatures, open_envelope, seal_envelope, sign_body, DecodeError, Encoded, KeyError,
    KeyId, ManifestId, PublicKey, SecretKey, Signature, TrustError, TrustPolicy, VerifyError,
};

/// First byte of every policy body (distinct from manifests' and controls' 1).
pub const POLICY_FORMAT: u8 = 0x50;
/// Largest signed policy accepted.
pub const MAX_POLICY_BYTES: usize = 64 * 1024;
/// Most keys one role names.
pub const MAX_ROLE_KEYS: usize = 16;
/// Most revoked device keys one policy lists.
pub const MAX_REVOKED: usize = 1024;
/// Most recalled releases and floor resets one policy lists (each).
pub const MAX_RECALLS: usize = 256;
pub(crate) const SIGNING_CONTEXT: &str = "pollen policy v1";

/// The four roles of a fleet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Signs policies (rotation, revocation, recall); kept offline.
    Root,
    /// Signs release manifests; kept offline.
    Release,
    /// Signs rollout controls; may live on the seeder.
    Operator,
    /// Signs device credentials.
    Enroll,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Root, Role::Release, Role::Operator, Role::Enroll];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Root => "root",
            Role::Release => "release",
            Role::Operator => "operator",
            Role::Enroll => "enroll",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A recall: the channel's floor goes back to `release` (manifest
/// `manifest`) for devices whose installed release is recalled.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FloorReset {
    pub channel: String,
    pub release: u64,
    pub manifest: ManifestId,
}

/// Why a policy was refused. Each variant names its cause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    #[error("fleet policy: {0}")]
    Decode(#[from] DecodeError),
    #[error("fleet policy: role {role}: {error}")]
    RoleKey { role: Role, error: KeyError },
    #[error("fleet policy: role {role}: {source}")]
    BadRole { role: Role, source: TrustError },
    #[error("fleet policy: role {role} names {count} keys, at most {MAX_ROLE_KEYS}")]
    TooManyKeys { role: Role, count: usize },
    #[error("fleet policy: {what} lists {count} entries, at most {max}")]
    TooMany {
        what: &'static str,
        count: usize,
        max: usize,
    },
    #[error("fleet policy: text field {0:?} is empty or longer than {MAX_NAME_LEN} bytes")]
    BadName(String),
    #[error("fleet policy: more than one floor reset for channel {0:?}")]
    DuplicateReset(String),
    #[error("fleet policy version {offered} is not newer than the held version {held}")]
    NotNewer { held: u64, offered: u64 },
    #[error("fleet policy version {version} expired at {expires_at} (now {now})")]
    Expired {
        version: u64,
        expires_at: u64,
        now: u64,
    },
    #[error("fleet policy version {version}: not signed by the root threshold of the held policy (version {held}): {source}")]
    HeldRoot {
        version: u64,
        held: u64,
        source: VerifyError,
    },
    #[error("fleet policy version {version}: not signed by its own root threshold: {source}")]
    OwnRoot { version: u64, source: VerifyError },
}

/// A role's keys and threshold on the wire (keys in key-id order).
#[derive(Serialize, Deserialize)]
struct WireRole {
    threshold: u8,
    keys: Vec<[u8; 32]>,
}

#[derive(Serialize, Deserialize)]
struct WirePolicy {
    version: u64,
    expires_at: u64,
    root: WireRole,
    release: WireRole,
    operator: WireRole,
    /// Threshold 0 and no keys: no enroll role (an open mesh).
    enroll: WireRole,
    revoked: Vec<[u8; 32]>,
    recalled: Vec<ManifestId>,
    floor_resets: Vec<FloorReset>,
}

/// A fleet policy, parsed and checked (not yet verified).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetPolicy {
    /// Monotonic: a device never takes a lower or equal version.
    pub version: u64,
    /// Seconds since the Unix epoch; a device does not take an expired policy.
    pub expires_at: u64,
    pub root: TrustPolicy,
    pub release: TrustPolicy,
    pub operator: TrustPolicy,
    /// `None`: the mesh is open (no credentials asked).
    pub enroll: Option<TrustPolicy>,
    /// Revoked device identity keys: their credentials no longer count.
    pub revoked: BTreeSet<[u8; 32]>,
    /// Releases no device may take (a poisoned or bad release).
    pub recalled: BTreeSet<ManifestId>,
    /// Per channel: the release a device goes back to when its installed
    /// release is recalled.
    pub floor_resets: BTreeMap<String, FloorReset>,
}

fn wire_role(p: &TrustPolicy) -> WireRole {
    WireRole {
        threshold: u8::try_from(p.threshold()).unwrap_or(u8::MAX),
        keys: p.keys().map(|k| *k.as_bytes()).collect(),
    }
}

fn parse_role(role: Role, w: &WireRole) -> Result<TrustPolicy, PolicyError> {
    if w.keys.len() > MAX_ROLE_KEYS {
        return Err(PolicyError::TooManyKeys {
            role,
            count: w.keys.len(),
        });
    }
    let keys = w
        .keys
        .iter()
        .map(PublicKey::from_bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| PolicyError::RoleKey { role, error })?;
    TrustPolicy::new(keys, usize::from(w.threshold))
        .map_err(|source| PolicyError::BadRole { role, source })
}

fn check_name(name: &str) -> Result<(), PolicyError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(PolicyError::BadName(name.to_owned()));
    }
    Ok(())
}

fn check_count(what: &'static str, count: usize, max: usize) -> Result<(), PolicyError> {
    if count > max {
        return Err(PolicyError::TooMany { what, count, max });
    }
    Ok(())
}

impl FleetPolicy {
    /// A first policy: each role with its keys, nothing revoked or recalled.
    pub fn new(
        version: u64,
        expires_at: u64,
        roles: [TrustPolicy; 3],
        enroll: Option<TrustPolicy>,
    ) -> Self {
        let [root, release, operator] = roles;
        Self {
            version,
            expires_at,
            root,
            release,
            operator,
            enroll,
            revoked: BTreeSet::new(),
            recalled: BTreeSet::new(),
            floor_resets: BTreeMap::new(),
        }
    }

    /// The keys and threshold of `role` (`None`: no enroll role).
    pub fn role(&self, role: Role) -> Option<&TrustPolicy> {
        match role {
            Role::Root => Some(&self.root),
            Role::Release => Some(&self.release),
            Role::Operator => Some(&self.operator),
            Role::Enroll => self.enroll.as_ref(),
        }
    }

    /// The roles `key` holds in this policy.
    pub fn roles_of(&self, key: &KeyId) -> Vec<Role> {
        Role::ALL
            .into_iter()
            .filter(|r| self.role(*r).is_some_and(|p| p.key(key).is_some()))
            .collect()
    }

    /// Whether peers must present credentials (the policy has an enroll role).
    pub fn is_closed(&self) -> bool {
        self.enroll.is_some()
    }

    pub fn is_revoked(&self, device_key: &[u8; 32]) -> bool {
        self.revoked.contains(device_key)
    }

    pub fn is_recalled(&self, manifest: &ManifestId) -> bool {
        self.recalled.contains(manifest)
    }

    /// The lowest release a device of `channel` accepts, given the release
    /// it has installed: that release, unless it is recalled and the
    /// channel has a floor reset (then the reset's release).
    pub fn floor(&self, channel: &str, installed: Option<(ManifestId, u64)>) -> u64 {
        match installed {
            None => 0,
            Some((id, release)) if self.is_recalled(&id) => self
                .floor_resets
                .get(channel)
                .map_or(release, |r| r.release),
            Some((_, release)) => release,
        }
    }

    fn check(&self) -> Result<(), PolicyError> {
        for role in Role::ALL {
            if let Some(p) = self.role(role) {
                if p.keys().count() > MAX_ROLE_KEYS {
                    return Err(PolicyError::TooManyKeys {
                        role,
                        count: p.keys().count(),
                    });
                }
            }
        }
        check_count("revoked", self.revoked.len(), MAX_REVOKED)?;
        check_count("recalled", self.recalled.len(), MAX_RECALLS)?;
        check_count("floor_resets", self.floor_resets.len(), MAX_RECALLS)?;
        for (channel, reset) in &self.floor_resets {
            check_name(channel)?;
            if &reset.channel != channel {
                return Err(PolicyError::BadName(reset.channel.clone()));
            }
        }
        Ok(())
    }

    /// Canonical body bytes.
    pub fn encode(&self) -> Vec<u8> {
        let none = WireRole {
            threshold: 0,
            keys: Vec::new(),
        };
        let wire = WirePolicy {
            version: self.version,
            expires_at: self.expires_at,
            root: wire_role(&self.root),
            release: wire_role(&self.release),
            operator: wire_role(&self.operator),
            enroll: self.enroll.as_ref().map_or(none, wire_role),
            revoked: self.revoked.iter().copied().collect(),
            recalled: self.recalled.iter().copied().collect(),
            floor_resets: self.floor_resets.values().cloned().collect(),
        };
        crate::encode::canonical(&[POLICY_FORMAT], &wire)
    }

    /// Parses body bytes: format byte, every field checked, one canonical
    /// encoding (sorted keys and lists, no duplicates).
    pub fn decode(body: &[u8]) -> Result<Self, PolicyError> {
        let (&format, rest) = body.split_first().ok_or(DecodeError::Truncated)?;
        if format != POLICY_FORMAT {
            return Err(DecodeError::UnknownVersion(format).into());
        }
        let (w, trailing): (WirePolicy, _) =
            postcard::take_from_bytes(rest).map_err(|e| Encoded::Policy.postcard(e))?;
        if !trailing.is_empty() {
            return Err(DecodeError::TrailingBytes(trailing.len()).into());
        }
        check_count("revoked", w.revoked.len(), MAX_REVOKED)?;
        check_count("recalled", w.recalled.len(), MAX_RECALLS)?;
        check_count("floor_resets", w.floor_resets.len(), MAX_RECALLS)?;
        let enroll = if w.enroll.threshold == 0 && w.enroll.keys.is_empty() {
            None
        } else {
            Some(parse_role(Role::Enroll, &w.enroll)?)
        };
        let mut floor_resets = BTreeMap::new();
        for r in w.floor_resets {
            check_name(&r.channel)?;
            let channel = r.channel.clone();
            if floor_resets.insert(channel.clone(), r).is_some() {
                return Err(PolicyError::DuplicateReset(channel));
            }
        }
        let policy = Self {
            version: w.version,
            expires_at: w.expires_at,
            root: parse_role(Role::Root, &w.root)?,
            release: parse_role(Role::Release, &w.release)?,
            operator: parse_role(Role::Operator, &w.operator)?,
            enroll,
            revoked: w.revoked.into_iter().collect(),
            recalled: w.recalled.into_iter().collect(),
            floor_resets,
        };
        if policy.encode() != body {
            return Err(DecodeError::NonCanonical(Encoded::Policy).into());
        }
        Ok(policy)
    }
}

/// Decoded, not yet verified policy bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedPolicy {
    body: Vec<u8>,
    policy: FleetPolicy,
    signatures: Vec<Signature>,
}

impl SignedPolicy {
    /// Signs `policy` with every key given (root keys, one signature each).
    pub fn sign(policy: FleetPolicy, keys: &[&SecretKey]) -> Result<Self, PolicyError> {
        policy.check()?;
        let body = policy.encode();
        let signatures = sign_body(SIGNING_CONTEXT, &body, keys);
        Ok(Self {
            body,
            policy,
            signatures,
        })
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, PolicyError> {
        let (body, signatures) = open_envelope(bytes, MAX_POLICY_BYTES)?;
        let policy = FleetPolicy::decode(&body)?;
        Ok(Self {
            body,
            policy,
            signatures,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        seal_envelope(&self.body, &self.signatures)
    }

    /// The policy as decoded; not yet verified.
    pub fn policy(&self) -> &FleetPolicy {
        &self.policy
    }

    pub fn signatures(&self) -> &[Signature] {
        &self.signatures
    }

    fn digest(&self) -> [u8; 32] {
        blake3::derive_key(SIGNING_CONTEXT, &self.body)
    }

    fn check_own_root(&self) -> Result<(), PolicyError> {
        check_signatures(&self.digest(), &self.signatures, &self.policy.root)
            .map(drop)
            .map_err(|source| PolicyError::OwnRoot {
                version: self.policy.version,
                source,
            })
    }

    fn check_expiry(&self, now: u64) -> Result<(), PolicyError> {
        if now >= self.policy.expires_at {
            return Err(PolicyError::Expired {
                version: self.policy.version,
                expires_at: self.policy.expires_at,
                now,
            });
        }
        Ok(())
    }
}

/// The policy a device holds: verified, or the first one it was given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedPolicy {
    policy: FleetPolicy,
    /// `None` for a policy made from a trust file.
    signed: Option<SignedPolicy>,
}

impl VerifiedPolicy {
    /// Today's trust file as a device's first policy: version 0, never
    /// expiring, the trust file's keys and threshold for root, release and
    /// operator, no enroll role (the mesh stays open until a signed policy
    /// with an enroll role arrives).
    pub fn from_trust(trust: TrustPolicy) -> Self {
        Self {
            policy: FleetPolicy::new(0, u64::MAX, [trust.clone(), trust.clone(), trust], None),
            signed: None,
        }
    }

    /// A policy provisioned as the device's first (trust on first use, like
    /// a trust file): it must be signed by its own root threshold and not
    /// be expired.
    pub fn first(bytes: &[u8], now: u64) -> Result<Self, PolicyError> {
        let signed = SignedPolicy::decode(bytes)?;
        signed.check_own_root()?;
        signed.check_expiry(now)?;
        Ok(Self {
            policy: signed.policy.clone(),
            signed: Some(signed),
        })
    }

    /// A policy this device accepted before and stored: its own root
    /// threshold is checked again, its expiry is not (a device keeps the
    /// newest policy it took even after that expired; it only refuses to
    /// *take* an expired one).
    pub fn stored(bytes: &[u8]) -> Result<Self, PolicyError> {
        let signed = SignedPolicy::decode(bytes)?;
        signed.check_own_root()?;
        Ok(Self {
            policy: signed.policy.clone(),
            signed: Some(signed),
        })
    }

    /// A newer policy offered by a peer, a file or the publisher: taken
    /// only if its version is higher, it has not expired, and the root
    /// threshold of this (held) policy and of the new one both signed it.
    pub fn accept(&self, bytes: &[u8], now: u64) -> Result<Self, PolicyError> {
        let signed = SignedPolicy::decode(bytes)?;
        let offered = signed.policy.version;
        if offered <= self.policy.version {
            return Err(PolicyError::NotNewer {
                held: self.policy.version,
                offered,
            });
        }
        check_signatures(&signed.digest(), &signed.signatures, &self.policy.root).map_err(
            |source| PolicyError::HeldRoot {
                version: offered,
                held: self.policy.version,
                source,
            },
        )?;
        signed.check_own_root()?;
        signed.check_expiry(now)?;
        Ok(Self {
            policy: signed.policy.clone(),
            signed: Some(signed),
        })
    }

    pub fn policy(&self) -> &FleetPolicy {
        &self.policy
    }

    pub fn version(&self) -> u64 {
        self.policy.version
    }

    /// The signed bytes, to store and pass on (`None` for a trust file's policy).
    pub fn to_bytes(&self) -> Option<Vec<u8>> {
        self.signed.as_ref().map(SignedPolicy::encode)
    }

    /// For a publisher's own tools reading a policy they created: the
    /// policy as written, checked against its own root threshold only.
    pub fn signed(&self) -> Option<&SignedPolicy> {
        self.signed.as_ref()
    }
}

#[cfg(test)]
mod tests;
