//! Fuzzes manifest decoding and verification with arbitrary bytes.
//!
//! Invariants checked beyond "no panic": anything that decodes re-encodes to
//! the same bytes, and nothing but the exact bytes of a manifest the
//! publisher really signed (`pollen_fuzz::firmware` and `config_bundle`,
//! also seeds) verifies under its policy.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use pollen_core::manifest::{verify, SignedManifest, TrustPolicy, VerifyContext};

type Genuine = (TrustPolicy, VerifyContext, [&'static [u8]; 2]);

fn genuine() -> &'static Genuine {
    static G: OnceLock<Genuine> = OnceLock::new();
    G.get_or_init(|| {
        (
            pollen_fuzz::policy(),
            pollen_fuzz::verify_context(),
            [
                &pollen_fuzz::firmware().bytes,
                &pollen_fuzz::config_bundle().bytes,
            ],
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let (policy, ctx, genuine) = genuine();
    if let Ok(signed) = SignedManifest::decode(data) {
        assert_eq!(
            signed.encode(),
            data,
            "decode accepted a non-canonical envelope"
        );
    }
    if let Ok(verified) = verify(data, policy, ctx) {
        assert!(
            genuine.contains(&data),
            "verify accepted bytes that were never signed"
        );
        assert_eq!(verified.to_bytes(), data);
    }
});
