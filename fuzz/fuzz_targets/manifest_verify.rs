//! Fuzzes manifest decoding and verification with arbitrary bytes.
//!
//! Invariants checked beyond "no panic": anything that decodes re-encodes to
//! the same bytes, and nothing but the seeded genuine manifest's exact bytes
//! verifies under the fuzz policy.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use pollen_core::manifest::{
    verify, Artifact, ChunkRef, Install, Manifest, Rollout, SecretKey, SignedManifest, TrustPolicy, VerifyContext,
};
use pollen_core::{ChunkId, ChunkParams};

fn genuine() -> &'static (TrustPolicy, Vec<u8>) {
    static G: OnceLock<(TrustPolicy, Vec<u8>)> = OnceLock::new();
    G.get_or_init(|| {
        let key = SecretKey::from_bytes(&[7; 32]);
        let chunks = vec![ChunkRef { id: ChunkId::of(b"a"), len: 70_000 }, ChunkRef { id: ChunkId::of(b"b"), len: 1 }];
        let m = Manifest {
            product: "fuzz".into(),
            channel: "stable".into(),
            version: "1.2.3".into(),
            release: 9,
            created_at: 1,
            expires_at: u64::MAX,
            hardware: vec!["hw".into()],
            artifact: Artifact { name: "a".into(), size: 70_001, blake3: [1; 32] },
            chunking: ChunkParams::DEFAULT,
            chunks,
            rollout: Rollout::default(),
            install: Install::FullImage,
        };
        (TrustPolicy::single(key.public()), SignedManifest::sign(m, &[&key]).encode())
    })
}

fuzz_target!(|data: &[u8]| {
    let (policy, genuine) = genuine();
    if let Ok(signed) = SignedManifest::decode(data) {
        assert_eq!(signed.encode(), data, "decode accepted a non-canonical envelope");
    }
    let ctx = VerifyContext { now: 100, floor: 0, hardware: Some("hw".into()), channel: Some("stable".into()) };
    if verify(data, policy, &ctx).is_ok() {
        assert_eq!(data, &genuine[..], "verify accepted bytes that were never signed");
    }
});
