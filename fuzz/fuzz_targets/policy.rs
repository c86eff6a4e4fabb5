//! Fuzzes `trust::SignedPolicy::decode` and the two ways a device takes a
//! fleet policy: `VerifiedPolicy::first` (provisioned) and `accept` (a
//! newer one from a peer, a file or the publisher), against a device that
//! holds a trust file and one that holds version 1 of the fixture fleet.
//!
//! Checked beyond "no panic": anything that decodes re-encodes to the same
//! bytes (envelope and body are canonical); bytes that do not decode are
//! neither taken first nor accepted; an accepted policy is newer than the
//! held one, keeps exactly its bytes, and would also be taken first (its
//! own root signed it and it has not expired).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pollen_core::trust::policy::MAX_POLICY_BYTES;
use pollen_core::trust::{FleetPolicy, SignedPolicy, VerifiedPolicy};
use pollen_fuzz::NOW;

fuzz_target!(|data: &[u8]| {
    let decoded = SignedPolicy::decode(data);
    if let Ok(signed) = &decoded {
        assert!(data.len() <= MAX_POLICY_BYTES);
        assert_eq!(
            signed.encode(),
            data,
            "decode accepted a non-canonical envelope"
        );
        let body = signed.policy().encode();
        assert_eq!(FleetPolicy::decode(&body).as_ref(), Ok(signed.policy()));
    }
    let first = VerifiedPolicy::first(data, NOW);
    if first.is_ok() {
        assert!(decoded.is_ok(), "taken first without decoding");
    }
    for held in [pollen_fuzz::held_trust(), pollen_fuzz::held_policy()] {
        if let Ok(next) = held.accept(data, NOW) {
            assert!(decoded.is_ok(), "accepted without decoding");
            assert!(next.version() > held.version(), "accepted an older policy");
            assert_eq!(next.to_bytes().as_deref(), Some(data));
            assert!(first.is_ok(), "accepted what its own root did not sign");
        }
    }
});
