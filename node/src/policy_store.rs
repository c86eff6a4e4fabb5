//! The fleet policy a node holds, kept in its store: at start the newer of
//! the stored and the configured policy (a node never goes back to an
//! older one), afterwards replaced only by a valid rotation. The driver
//! (policies from peers and the local endpoint) and `pollen-node import`
//! (a policy carried on a USB stick) both go through here.

use pollen_core::trust::{PolicyError, VerifiedPolicy};

use crate::store::{keys, Store, StoreError};

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyStoreError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("the stored fleet policy no longer verifies: {0}")]
    Stored(PolicyError),
}

/// The policy in the store, if any (checked on its own root threshold;
/// read only, for a view such as an import's judging of a manifest).
pub fn stored<S: Store + ?Sized>(store: &S) -> Result<Option<VerifiedPolicy>, PolicyStoreError> {
    match store.get_state(keys::POLICY)? {
        Some(bytes) => Ok(Some(
            VerifiedPolicy::stored(&bytes).map_err(PolicyStoreError::Stored)?,
        )),
        None => Ok(None),
    }
}

/// The policy to hold: the stored one, unless `configured` is a newer
/// valid rotation of it (then stored in its place); `configured` alone on
/// a node that never stored one. A configured policy older than the stored
/// one is ignored (logged): the node keeps the newest it ever took.
pub fn held<S: Store + ?Sized>(
    store: &S,
    configured: Option<VerifiedPolicy>,
    now: u64,
) -> Result<Option<VerifiedPolicy>, PolicyStoreError> {
    Ok(match (stored(store)?, configured) {
        (None, None) => None,
        (None, Some(c)) => {
            if let Some(bytes) = c.to_bytes() {
                store.put_state(keys::POLICY, &bytes)?;
            }
            Some(c)
        }
        (Some(s), None) => Some(s),
        (Some(s), Some(c)) if c.version() <= s.version() => {
            if c.version() < s.version() {
                tracing::info!(
                    stored = s.version(),
                    configured = c.version(),
                    "keeping the newer fleet policy from the store"
                );
            }
            Some(s)
        }
        (Some(s), Some(c)) => {
            let bytes = c.to_bytes().unwrap_or_default();
            Some(adopt(store, &s, &bytes, now)?)
        }
    })
}

/// Takes `bytes` as the new policy if it is a valid rotation of `held`
/// (newer, both root thresholds, not expired) and stores it; on any
/// refusal nothing changes.
pub fn adopt<S: Store + ?Sized>(
    store: &S,
    held: &VerifiedPolicy,
    bytes: &[u8],
    now: u64,
) -> Result<VerifiedPolicy, PolicyStoreError> {
    let next = held.accept(bytes, now)?;
    store.put_state(keys::POLICY, bytes)?;
    tracing::info!(
        from = held.version(),
        to = next.version(),
        "fleet policy rotated"
    );
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemStore;
    use pollen_core::manifest::{SecretKey, TrustPolicy};
    use pollen_core::trust::{FleetPolicy, SignedPolicy};

    fn key(n: u8) -> SecretKey {
        SecretKey::from_bytes(&[n; 32])
    }

    fn policy(version: u64, root: u8, by: &[u8]) -> Vec<u8> {
        let single = |n: u8| TrustPolicy::single(key(n).public());
        let p = FleetPolicy::new(
            version,
            10_000,
            [single(root), single(10), single(20)],
            Some(single(30)),
        );
        let keys: Vec<SecretKey> = by.iter().map(|&n| key(n)).collect();
        let refs: Vec<&SecretKey> = keys.iter().collect();
        SignedPolicy::sign(p, &refs).expect("valid").encode()
    }

    #[test]
    fn never_goes_back_and_refusals_change_nothing() {
        let store = MemStore::default();
        let v1 = VerifiedPolicy::first(&policy(1, 1, &[1]), 100).expect("v1");
        let held1 = held(&store, Some(v1.clone()), 100)
            .expect("held")
            .expect("some");
        assert_eq!(held1.version(), 1);
        let v2 = adopt(&store, &held1, &policy(2, 2, &[1, 2]), 100).expect("rotation");
        // Restarted with the old file: the stored v2 stays.
        let again = held(&store, Some(v1), 100).expect("held").expect("some");
        assert_eq!(again.version(), 2);
        // A forged v3 (new root only) is refused; the store keeps v2.
        assert!(adopt(&store, &v2, &policy(3, 3, &[3]), 100).is_err());
        assert_eq!(
            store.get_state(keys::POLICY).expect("read"),
            Some(policy(2, 2, &[1, 2]))
        );
        // A trust file after a signed policy: the signed one stays.
        let trust = VerifiedPolicy::from_trust(TrustPolicy::single(key(1).public()));
        let kept = held(&store, Some(trust), 100).expect("held").expect("some");
        assert_eq!(kept.version(), 2);
    }
}
