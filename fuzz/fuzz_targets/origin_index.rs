//! Fuzzes `origin::SignedIndex::decode` and `verify`, what a node runs on
//! the channel index it fetches from an HTTP origin or mirror.
//!
//! Checked beyond "no panic": anything that decodes re-encodes to the same
//! bytes and stays within the size cap; only the publisher's genuine
//! indexes (the seeds) verify, each under the fleet it was signed for
//! (the fixture fleet's operator role, or the publisher's trust file),
//! and a verified index is fresh, names the device's channel and is not
//! older than itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pollen_core::origin::{SignedIndex, MAX_INDEX_BYTES};

fuzz_target!(|data: &[u8]| {
    let Ok(signed) = SignedIndex::decode(data) else {
        return;
    };
    assert!(data.len() <= MAX_INDEX_BYTES);
    assert_eq!(
        signed.encode(),
        data,
        "decode accepted a non-canonical envelope"
    );
    let now = pollen_fuzz::NOW + 60;
    for held in [
        pollen_fuzz::held_policy(),
        pollen_fuzz::held_publisher_trust(),
    ] {
        let Ok(verified) = signed.clone().verify(held, pollen_fuzz::CHANNEL, now) else {
            continue;
        };
        assert!(
            pollen_fuzz::indexes().iter().any(|i| i[..] == *data),
            "verify accepted an index the publisher never signed"
        );
        assert_eq!(verified.to_bytes(), data);
        assert_eq!(verified.index().channel, pollen_fuzz::CHANNEL);
        assert!(!verified.is_expired(now));
        assert!(verified.check_not_older(verified.index().seq).is_ok());
        assert!(verified.is_older_than(verified.index().seq.saturating_add(1)));
        // Another channel's device refuses it.
        assert!(signed.clone().verify(held, "beta", now).is_err());
    }
});
