//! Fleet policies from the publisher's side: where the held policy comes
//! from (a policy file, or the trust file of a fleet that has none yet),
//! the next version of it (role rotation, revoked devices, recalls, floor
//! resets read from the store), and which keys may sign it.
//!
//! What a device accepts is decided by `pollen_core::trust`; this module
//! only builds policies and refuses, before anything is written, the ones
//! that could never pass there.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use pollen_core::manifest::{
    KeyId, ManifestId, PublicKey, SecretKey, SignedManifest, TrustError, TrustPolicy,
    ENVELOPE_VERSION,
};
use pollen_core::rollout::SignedControl;
use pollen_core::trust::policy::MAX_POLICY_BYTES;
use pollen_core::trust::{
    FleetPolicy, FloorReset, PolicyError, Role, SignedCredential, SignedPolicy, VerifiedPolicy,
};
use pollen_node::store::{Store, StoreError};
use pollen_node::trust_file::{load_trust, TrustFileError};

use crate::files::{read_bounded, FileError};

/// Seconds in a day (`--expires-in` counts days).
pub const DAY: u64 = 86_400;

/// Errors of this module; each names its cause.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FleetPolicyError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    TrustFile(#[from] TrustFileError),
    #[error("{path}: {source}")]
    Policy { path: PathBuf, source: PolicyError },
    #[error("{path} is a {kind}, not a fleet policy")]
    NotAPolicy { path: PathBuf, kind: &'static str },
    #[error(transparent)]
    Invalid(#[from] PolicyError),
    #[error("role {role}: {source} (check --{role} and --{role}-threshold)")]
    Role { role: Role, source: TrustError },
    #[error("role {0}: a threshold needs keys; give the role's keys too")]
    ThresholdWithoutKeys(Role),
    #[error("--key {key_id} is not a root key of the new policy{held}: only root keys sign a fleet policy")]
    NotRoot { key_id: KeyId, held: String },
    #[error("--key {0} is given twice")]
    DuplicateKey(KeyId),
    #[error("the held policy is at version {0}: there is no next version")]
    NoNextVersion(u64),
    #[error("manifest {0} is not in the store")]
    NotInStore(ManifestId),
    #[error("manifest {id} is on channel {found:?}, not {channel:?}")]
    WrongChannel {
        id: ManifestId,
        channel: String,
        found: String,
    },
    #[error("manifest {0} is recalled: a floor reset cannot go back to a recalled release")]
    ResetToRecalled(ManifestId),
    #[error("stored manifest {id}: {reason}")]
    StoredManifest { id: ManifestId, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `--expires-in`: a number of days (`365`), or a duration (`90d`, `12h`);
/// in seconds.
pub fn parse_days(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let secs = if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse::<u64>()
            .ok()
            .and_then(|d| d.checked_mul(DAY))
            .ok_or_else(|| format!("{text} days is too long"))?
    } else {
        humantime::parse_duration(text)
            .map_err(|e| format!("{text:?} is neither a number of days nor a duration: {e}"))?
            .as_secs()
    };
    if secs == 0 {
        return Err("the expiry must be in the future".into());
    }
    Ok(secs)
}

/// A manifest id given in hex.
pub fn parse_manifest_id(text: &str) -> Result<ManifestId, String> {
    let mut id = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut id)
        .map_err(|_| format!("{text:?} is not a manifest id (64 hex digits)"))?;
    Ok(ManifestId(id))
}

/// A role's keys and threshold, refused with the role's name when impossible.
pub fn role(
    role: Role,
    keys: Vec<PublicKey>,
    threshold: usize,
) -> Result<TrustPolicy, FleetPolicyError> {
    TrustPolicy::new(keys, threshold).map_err(|source| FleetPolicyError::Role { role, source })
}

/// What signed Pollen object other than a policy `bytes` are, if any.
fn other_kind(bytes: &[u8]) -> Option<&'static str> {
    if SignedManifest::decode(bytes).is_ok() {
        Some("release manifest")
    } else if SignedCredential::decode(bytes).is_ok() {
        Some("device credential")
    } else if SignedControl::decode(bytes).is_ok() {
        Some("rollout control")
    } else {
        None
    }
}

/// The error for `bytes` that did not decode as a policy.
fn not_a_policy(path: &Path, bytes: &[u8], source: PolicyError) -> FleetPolicyError {
    match other_kind(bytes) {
        Some(kind) => FleetPolicyError::NotAPolicy {
            path: path.to_owned(),
            kind,
        },
        None => FleetPolicyError::Policy {
            path: path.to_owned(),
            source,
        },
    }
}

/// Reads the policy devices hold, to build on or to judge a rotation from:
/// a signed policy file, or a trust file (or a publisher's `.pub`) for a
/// fleet that has no policy yet (version 0, its keys in every signing role,
/// no enroll role; [`VerifiedPolicy::from_trust`]).
pub fn load_held(path: &Path) -> Result<VerifiedPolicy, FleetPolicyError> {
    let bytes = read_bounded(path, MAX_POLICY_BYTES)?;
    let policy = |source| FleetPolicyError::Policy {
        path: path.to_owned(),
        source,
    };
    match SignedPolicy::decode(&bytes) {
        // Checked on its own root threshold whatever the date: devices keep
        // a policy past its expiry, and rotating away from an expired
        // policy must stay possible.
        Ok(_) => VerifiedPolicy::stored(&bytes).map_err(policy),
        // Signed envelopes start with their version byte; text never does.
        Err(e) if bytes.first() == Some(&ENVELOPE_VERSION) => Err(not_a_policy(path, &bytes, e)),
        Err(_) => Ok(VerifiedPolicy::from_trust(load_trust(path)?)),
    }
}

/// Reads a policy file without judging its signatures (to co-sign or show it).
pub fn read_policy(path: &Path) -> Result<(Vec<u8>, SignedPolicy), FleetPolicyError> {
    let bytes = read_bounded(path, MAX_POLICY_BYTES)?;
    let signed = SignedPolicy::decode(&bytes).map_err(|e| not_a_policy(path, &bytes, e))?;
    Ok((bytes, signed))
}

/// A change to one role: new keys, a new threshold, or both; neither
/// keeps the role as it is.
#[derive(Clone, Debug, Default)]
pub struct RoleChange {
    pub keys: Option<Vec<PublicKey>>,
    pub threshold: Option<usize>,
}

/// What `policy rotate` changes in the held policy; everything else is
/// copied.
#[derive(Clone, Debug, Default)]
pub struct Rotation {
    pub root: RoleChange,
    pub release: RoleChange,
    pub operator: RoleChange,
    pub enroll: RoleChange,
    /// Drop the enroll role: the mesh opens again (no credentials asked).
    pub remove_enroll: bool,
    /// Device identity keys to revoke.
    pub revoke: Vec<[u8; 32]>,
    /// Releases to recall.
    pub recall: Vec<ManifestId>,
    pub floor_reset: Option<FloorReset>,
    /// Seconds since the Unix epoch.
    pub expires_at: u64,
}

fn changed(
    which: Role,
    current: Option<&TrustPolicy>,
    change: &RoleChange,
) -> Result<Option<TrustPolicy>, FleetPolicyError> {
    if change.keys.is_none() && change.threshold.is_none() {
        return Ok(current.cloned());
    }
    let keys = match (&change.keys, current) {
        (Some(keys), _) => keys.clone(),
        (None, Some(p)) => p.keys().cloned().collect(),
        (None, None) => return Err(FleetPolicyError::ThresholdWithoutKeys(which)),
    };
    let threshold = change
        .threshold
        .or(current.map(TrustPolicy::threshold))
        .unwrap_or(1);
    role(which, keys, threshold).map(Some)
}

/// The next version of `held` with `r` applied.
pub fn rotate(held: &FleetPolicy, r: &Rotation) -> Result<FleetPolicy, FleetPolicyError> {
    let version = held
        .version
        .checked_add(1)
        .ok_or(FleetPolicyError::NoNextVersion(held.version))?;
    let required = |which, current: &TrustPolicy, change| {
        changed(which, Some(current), change).map(|p| p.unwrap_or_else(|| current.clone()))
    };
    let mut next = FleetPolicy {
        version,
        expires_at: r.expires_at,
        root: required(Role::Root, &held.root, &r.root)?,
        release: required(Role::Release, &held.release, &r.release)?,
        operator: required(Role::Operator, &held.operator, &r.operator)?,
        enroll: match r.remove_enroll {
            true => None,
            false => changed(Role::Enroll, held.enroll.as_ref(), &r.enroll)?,
        },
        ..held.clone()
    };
    next.revoked.extend(r.revoke.iter().copied());
    next.recalled.extend(r.recall.iter().copied());
    if let Some(reset) = &r.floor_reset {
        if next.is_recalled(&reset.manifest) {
            return Err(FleetPolicyError::ResetToRecalled(reset.manifest));
        }
        next.floor_resets
            .insert(reset.channel.clone(), reset.clone());
    }
    // Caps and names, as a device will check them.
    SignedPolicy::sign(next.clone(), &[])?;
    Ok(next)
}

/// Refuses signing keys that cannot count: a policy is signed by the root
/// keys of the new policy and (for a rotation) of the held one, each once.
pub fn check_signers(
    new: &FleetPolicy,
    held: Option<&FleetPolicy>,
    keys: &[SecretKey],
) -> Result<(), FleetPolicyError> {
    let mut seen = BTreeSet::new();
    for key in keys {
        let id = key.public().id();
        if !seen.insert(id) {
            return Err(FleetPolicyError::DuplicateKey(id));
        }
        let in_new = new.root.key(&id).is_some();
        let in_held = held.is_some_and(|h| h.root.key(&id).is_some());
        if !in_new && !in_held {
            return Err(FleetPolicyError::NotRoot {
                key_id: id,
                held: held.map_or(String::new(), |h| {
                    format!(" nor of the held policy (version {})", h.version)
                }),
            });
        }
    }
    Ok(())
}

/// Signs `policy` with `keys` (checked by [`check_signers`] first): the
/// policy file's bytes.
pub fn sign(policy: FleetPolicy, keys: &[SecretKey]) -> Result<Vec<u8>, FleetPolicyError> {
    let refs: Vec<&SecretKey> = keys.iter().collect();
    Ok(SignedPolicy::sign(policy, &refs)?.encode())
}

/// A floor reset read from the publisher's store, with the releases it
/// recalls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreReset {
    pub reset: FloorReset,
    /// Manifests of the channel in the store above the reset's release,
    /// with their release numbers (what `--no-auto-recall` leaves out).
    pub above: Vec<(ManifestId, u64)>,
}

/// The floor reset of `channel` back to manifest `to` (held in `store`),
/// and every manifest of the channel in the store with a higher release.
pub fn floor_reset<S: Store + ?Sized>(
    store: &S,
    channel: &str,
    to: ManifestId,
) -> Result<StoreReset, FleetPolicyError> {
    let decode = |id: ManifestId, bytes: Vec<u8>| {
        SignedManifest::decode(&bytes).map_err(|e| FleetPolicyError::StoredManifest {
            id,
            reason: e.to_string(),
        })
    };
    let target = decode(
        to,
        store
            .get_manifest(&to)?
            .ok_or(FleetPolicyError::NotInStore(to))?,
    )?;
    let m = target.manifest();
    if m.channel != channel {
        return Err(FleetPolicyError::WrongChannel {
            id: to,
            channel: channel.to_owned(),
            found: m.channel.clone(),
        });
    }
    let mut above = Vec::new();
    for id in store.manifest_ids()? {
        let Some(bytes) = store.get_manifest(&id)? else {
            continue;
        };
        let other = decode(id, bytes)?;
        let o = other.manifest();
        if o.channel == channel && o.release > m.release {
            above.push((id, o.release));
        }
    }
    above.sort_by_key(|(_, release)| *release);
    Ok(StoreReset {
        reset: FloorReset {
            channel: channel.to_owned(),
            release: m.release,
            manifest: to,
        },
        above,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> SecretKey {
        SecretKey::from_bytes(&[n; 32])
    }

    fn single(n: u8) -> TrustPolicy {
        TrustPolicy::single(key(n).public())
    }

    fn v1() -> FleetPolicy {
        FleetPolicy::new(1, 1_000, [single(1), single(2), single(3)], Some(single(4)))
    }

    #[test]
    fn days_and_durations() {
        assert_eq!(parse_days("365"), Ok(365 * DAY));
        assert_eq!(parse_days("90d"), Ok(90 * DAY));
        assert_eq!(parse_days("12h"), Ok(12 * 3600));
        assert!(parse_days("0").is_err());
        assert!(parse_days("soon").is_err());
        assert!(parse_days("99999999999999999999").is_err());
        assert!(parse_days(&u64::MAX.to_string()).is_err());
    }

    #[test]
    fn manifest_ids_are_64_hex_digits() {
        assert_eq!(
            parse_manifest_id(&"ab".repeat(32)),
            Ok(ManifestId([0xab; 32]))
        );
        assert!(parse_manifest_id("abcd").is_err());
        assert!(parse_manifest_id(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn a_rotation_copies_what_it_does_not_change() {
        let mut held = v1();
        held.revoked.insert([9; 32]);
        let r = Rotation {
            release: RoleChange {
                keys: Some(vec![key(5).public(), key(6).public()]),
                threshold: Some(2),
            },
            revoke: vec![[8; 32]],
            recall: vec![ManifestId([7; 32])],
            expires_at: 5_000,
            ..Rotation::default()
        };
        let next = rotate(&held, &r).expect("valid");
        assert_eq!(next.version, 2);
        assert_eq!(next.expires_at, 5_000);
        assert_eq!(next.root, held.root);
        assert_eq!(next.operator, held.operator);
        assert_eq!(next.enroll, held.enroll);
        assert_eq!(next.release.threshold(), 2);
        assert_eq!(next.revoked.len(), 2, "old revocations stay");
        assert!(next.is_recalled(&ManifestId([7; 32])));
    }

    #[test]
    fn impossible_roles_name_the_role() {
        let r = Rotation {
            root: RoleChange {
                keys: None,
                threshold: Some(2),
            },
            ..Rotation::default()
        };
        let err = rotate(&v1(), &r).expect_err("1 key, threshold 2");
        assert!(
            err.to_string().starts_with("role root: threshold 2"),
            "{err}"
        );
        let mut open = v1();
        open.enroll = None;
        let r = Rotation {
            enroll: RoleChange {
                keys: None,
                threshold: Some(1),
            },
            ..Rotation::default()
        };
        assert!(matches!(
            rotate(&open, &r),
            Err(FleetPolicyError::ThresholdWithoutKeys(Role::Enroll))
        ));
        let r = Rotation {
            remove_enroll: true,
            ..Rotation::default()
        };
        assert!(!rotate(&v1(), &r).expect("valid").is_closed());
    }

    #[test]
    fn a_reset_to_a_recalled_release_is_refused() {
        let reset = FloorReset {
            channel: "stable".into(),
            release: 3,
            manifest: ManifestId([3; 32]),
        };
        let r = Rotation {
            recall: vec![ManifestId([3; 32])],
            floor_reset: Some(reset),
            ..Rotation::default()
        };
        assert!(matches!(
            rotate(&v1(), &r),
            Err(FleetPolicyError::ResetToRecalled(_))
        ));
    }

    #[test]
    fn only_root_keys_sign_each_once() {
        let held = v1();
        let mut next = rotate(&held, &Rotation::default()).expect("valid");
        next.root = single(10);
        assert!(check_signers(&next, Some(&held), &[key(1), key(10)]).is_ok());
        let err = check_signers(&next, Some(&held), &[key(2)]).expect_err("release key");
        assert!(
            err.to_string()
                .contains("nor of the held policy (version 1)"),
            "{err}"
        );
        assert!(matches!(
            check_signers(&next, None, &[key(1)]),
            Err(FleetPolicyError::NotRoot { .. })
        ));
        assert!(matches!(
            check_signers(&next, None, &[key(10), key(10)]),
            Err(FleetPolicyError::DuplicateKey(_))
        ));
    }

    #[test]
    fn held_policies_come_from_policy_or_trust_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pub_file = dir.path().join("root.pub");
        std::fs::write(&pub_file, key(1).public().to_text()).expect("write");
        let held = load_held(&pub_file).expect("a .pub is a trust policy");
        assert_eq!(held.version(), 0);
        let policy_file = dir.path().join("v1.policy");
        std::fs::write(&policy_file, sign(v1(), &[key(1)]).expect("signs")).expect("write");
        // Expired (at 1 000) but held: still the base of a rotation.
        assert_eq!(load_held(&policy_file).expect("policy").version(), 1);
        let unsigned = dir.path().join("unsigned.policy");
        std::fs::write(&unsigned, sign(v1(), &[]).expect("signs")).expect("write");
        let err = load_held(&unsigned).expect_err("no root signature");
        assert!(err.to_string().contains("unsigned.policy"), "{err}");
        let credential = pollen_core::trust::Credential {
            key: *key(40).public().as_bytes(),
            device: "press-7".into(),
            site: None,
            hardware: None,
            serial: None,
            issued_at: 0,
            expires_at: 10,
        };
        let cred = SignedCredential::sign(credential, &[&key(4)]).expect("signs");
        std::fs::write(&unsigned, cred.encode()).expect("write");
        let err = read_policy(&unsigned).expect_err("a credential");
        assert!(
            err.to_string()
                .ends_with("is a device credential, not a fleet policy"),
            "{err}"
        );
        let mut junk = sign(v1(), &[key(1)]).expect("signs");
        junk.truncate(20);
        std::fs::write(&policy_file, junk).expect("write");
        assert!(matches!(
            load_held(&policy_file),
            Err(FleetPolicyError::Policy { .. })
        ));
    }
}
