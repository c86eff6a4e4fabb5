//! Co-signed manifests back into the publisher's store. A release is
//! published with one key of a k-of-n release role; the other keys sign the
//! manifest file on their own machines (`pollen-seeder sign`); the result
//! replaces the copy the store holds, so `serve` offers the signatures
//! devices need. Only a manifest with the body the store already holds
//! (same manifest id, so the same chunks) and that verifies under the
//! release role is taken.

use pollen_core::manifest::{
    verify, DecodeError, KeyId, ManifestId, SignedManifest, TrustPolicy, VerifiedManifest,
    VerifyContext, VerifyError,
};
use pollen_node::store::{RocksStore, Store, StoreError};

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CosignedError {
    #[error("not a release manifest: {0}")]
    Decode(#[from] DecodeError),
    #[error("release {release} on channel {channel} ({id}) is not in the store: only a co-signed copy of a release published there (the same body) is taken")]
    NotHeld {
        id: ManifestId,
        channel: String,
        release: u64,
    },
    #[error("manifest refused: {0}")]
    Refused(VerifyError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A co-signed manifest that may replace the store's copy.
#[derive(Debug)]
pub struct Checked {
    pub verified: VerifiedManifest,
    /// Who signed the copy the store holds.
    pub held_signers: Vec<KeyId>,
    /// The store already holds exactly these bytes.
    pub unchanged: bool,
}

/// Checks `bytes` against the store (read-only is enough) and the release
/// role, without writing anything.
pub fn check<S: Store + ?Sized>(
    store: &S,
    bytes: &[u8],
    release_role: &TrustPolicy,
    now: u64,
) -> Result<Checked, CosignedError> {
    let signed = SignedManifest::decode(bytes)?;
    let m = signed.manifest();
    let not_held = || CosignedError::NotHeld {
        id: signed.id(),
        channel: m.channel.clone(),
        release: m.release,
    };
    let held = store.get_manifest(&signed.id())?.ok_or_else(not_held)?;
    let held_signed =
        SignedManifest::decode(&held).map_err(|source| StoreError::StoredManifest {
            id: signed.id(),
            source,
        })?;
    if held_signed.body() != signed.body() {
        return Err(not_held());
    }
    let ctx = VerifyContext {
        now,
        ..VerifyContext::default()
    };
    let verified = verify(bytes, release_role, &ctx).map_err(CosignedError::Refused)?;
    Ok(Checked {
        verified,
        held_signers: held_signed.signatures().iter().map(|s| s.key_id).collect(),
        unchanged: held == bytes,
    })
}

/// Writes a checked manifest over the store's copy.
pub fn commit(store: &RocksStore, checked: &Checked) -> Result<(), CosignedError> {
    if !store.replace_manifest(&checked.verified)? {
        return Err(CosignedError::NotHeld {
            id: checked.verified.id(),
            channel: checked.verified.manifest().channel.clone(),
            release: checked.verified.manifest().release,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pollen_core::chunk::{ChunkId, ChunkParams};
    use pollen_core::manifest::{Artifact, ChunkRef, Install, Manifest, Rollout, SecretKey};
    use pollen_node::store::MemStore;

    fn key(n: u8) -> SecretKey {
        SecretKey::from_bytes(&[n; 32])
    }

    fn manifest(release: u64) -> Manifest {
        Manifest {
            product: "press".into(),
            channel: "stable".into(),
            version: "1.0.0".into(),
            release,
            created_at: 0,
            expires_at: u64::MAX,
            hardware: vec![],
            artifact: Artifact {
                name: "image.bin".into(),
                size: 1,
                blake3: [0; 32],
            },
            chunking: ChunkParams::DEFAULT,
            chunks: vec![ChunkRef {
                id: ChunkId::of(b"x"),
                len: 1,
            }],
            rollout: Rollout::default(),
            install: Install::FullImage,
        }
    }

    fn signed(release: u64, by: &[u8]) -> Vec<u8> {
        let keys: Vec<SecretKey> = by.iter().map(|&n| key(n)).collect();
        let refs: Vec<&SecretKey> = keys.iter().collect();
        SignedManifest::sign(manifest(release), &refs).encode()
    }

    #[test]
    fn only_the_held_body_signed_by_the_role_is_taken() {
        let store = MemStore::new();
        let role = TrustPolicy::new(vec![key(1).public(), key(2).public(), key(3).public()], 2)
            .expect("valid");
        let single = TrustPolicy::single(key(1).public());
        let one = verify(&signed(1, &[1]), &single, &VerifyContext::default()).expect("verify");
        store.put_manifest(&one).expect("put");
        let c = check(&store, &signed(1, &[1, 3]), &role, 10).expect("2 of 3");
        assert_eq!(c.held_signers, [key(1).public().id()]);
        assert!(!c.unchanged);
        assert!(
            check(&store, &signed(1, &[1]), &single, 10)
                .expect("same")
                .unchanged
        );
        assert!(matches!(
            check(&store, &signed(1, &[3]), &role, 10),
            Err(CosignedError::Refused(VerifyError::BelowThreshold { .. }))
        ));
        let err = check(&store, &signed(2, &[1, 2]), &role, 10).expect_err("other body");
        assert!(err.to_string().contains("is not in the store"), "{err}");
        assert!(matches!(
            check(&store, b"junk", &role, 10),
            Err(CosignedError::Decode(_))
        ));
    }
}
