//! Fuzzes `rollout::SignedControl::decode` and verification, what every
//! node runs on a rollout control from a peer or the local endpoint.
//!
//! Checked beyond "no panic": anything that decodes re-encodes to the same
//! bytes (the envelope is canonical); only the publisher's genuine controls
//! (the seeds) verify under its trust policy.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use pollen_core::manifest::TrustPolicy;
use pollen_core::rollout::{SignedControl, VerifiedControl, MAX_CONTROL_BYTES};

fn policy() -> &'static TrustPolicy {
    static P: OnceLock<TrustPolicy> = OnceLock::new();
    P.get_or_init(pollen_fuzz::policy)
}

fuzz_target!(|data: &[u8]| {
    let Ok(signed) = SignedControl::decode(data) else {
        return;
    };
    assert!(data.len() <= MAX_CONTROL_BYTES);
    assert_eq!(
        signed.encode(),
        data,
        "decode accepted a non-canonical envelope"
    );
    if let Ok(verified) = signed.verify(policy()) {
        assert!(
            pollen_fuzz::controls().iter().any(|c| c[..] == *data),
            "verify accepted a control the publisher never signed"
        );
        assert_eq!(verified.to_bytes(), data);
        let again = VerifiedControl::from_bytes(data, policy()).expect("verifies again");
        assert_eq!(again.control(), verified.control());
    }
});
