//! The device's trust policy: which publisher keys count, and how many must sign.

use std::collections::BTreeMap;

use super::keys::{KeyId, PublicKey};

/// Errors building a policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrustError {
    #[error("a trust policy needs at least one key")]
    NoKeys,
    #[error("threshold {threshold} is impossible with {keys} key(s): need 1 <= threshold <= keys")]
    BadThreshold { threshold: usize, keys: usize },
    #[error("key {0} is listed twice")]
    DuplicateKey(KeyId),
}

/// A set of publisher keys and a threshold k-of-n; each key counts once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustPolicy {
    keys: BTreeMap<KeyId, PublicKey>,
    threshold: usize,
}

impl TrustPolicy {
    pub fn new(keys: Vec<PublicKey>, threshold: usize) -> Result<Self, TrustError> {
        if keys.is_empty() {
            return Err(TrustError::NoKeys);
        }
        if threshold == 0 || threshold > keys.len() {
            return Err(TrustError::BadThreshold {
                threshold,
                keys: keys.len(),
            });
        }
        let mut map = BTreeMap::new();
        for k in keys {
            let id = k.id();
            if map.insert(id, k).is_some() {
                return Err(TrustError::DuplicateKey(id));
            }
        }
        Ok(Self {
            keys: map,
            threshold,
        })
    }

    /// One trusted key, threshold 1.
    pub fn single(key: PublicKey) -> Self {
        Self {
            keys: BTreeMap::from([(key.id(), key)]),
            threshold: 1,
        }
    }

    pub fn threshold(&self) -> usize {
        self.threshold
    }

    pub fn key(&self, id: &KeyId) -> Option<&PublicKey> {
        self.keys.get(id)
    }

    pub fn keys(&self) -> impl Iterator<Item = &PublicKey> {
        self.keys.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::SecretKey;

    #[test]
    fn rejects_impossible_policies() {
        let a = SecretKey::from_bytes(&[1; 32]).public();
        assert_eq!(TrustPolicy::new(vec![], 1), Err(TrustError::NoKeys));
        assert!(TrustPolicy::new(vec![a.clone()], 2).is_err());
        assert!(TrustPolicy::new(vec![a.clone()], 0).is_err());
        assert_eq!(
            TrustPolicy::new(vec![a.clone(), a.clone()], 1),
            Err(TrustError::DuplicateKey(a.id()))
        );
    }
}
