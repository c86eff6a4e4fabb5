//! Fuzzes `trust::SignedCredential::decode` and its verification against
//! the fixture fleet's policy, what a peer runs on every credential a node
//! presents when it joins a closed mesh.
//!
//! Checked beyond "no panic": anything that decodes re-encodes to the same
//! bytes; a credential that verifies keeps its bytes, verifies again for
//! its own key and never for another, and stops counting once its key is
//! revoked.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pollen_core::trust::credential::MAX_CREDENTIAL_BYTES;
use pollen_core::trust::{SignedCredential, VerifiedCredential};
use pollen_fuzz::NOW;

fuzz_target!(|data: &[u8]| {
    let Ok(signed) = SignedCredential::decode(data) else {
        return;
    };
    assert!(data.len() <= MAX_CREDENTIAL_BYTES);
    assert_eq!(
        signed.encode(),
        data,
        "decode accepted a non-canonical envelope"
    );
    let policy = pollen_fuzz::held_policy().policy();
    let key = signed.credential().key;
    let Ok(verified) = signed.verify(policy, NOW) else {
        return;
    };
    assert_eq!(verified.to_bytes(), data);
    let again = VerifiedCredential::check(data, &key, policy, NOW).expect("verifies again");
    assert_eq!(again.credential(), verified.credential());
    let mut other = key;
    other[0] ^= 1;
    assert!(
        VerifiedCredential::check(data, &other, policy, NOW).is_err(),
        "a credential passed for another node's key"
    );
    let mut revoking = policy.clone();
    revoking.revoked.insert(key);
    assert!(verified.still_valid(&revoking, NOW).is_err());
});
