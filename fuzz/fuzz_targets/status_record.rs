//! Fuzzes `status::SignedStatus::decode`, what nodes and the seeder run on
//! every status record relayed to them.
//!
//! Checked beyond "no panic": the size cap holds; an accepted record keeps
//! exactly its bytes and decodes again to itself; under a fixture device's
//! key only the records that device really signed (the seeds) are accepted.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use pollen_core::manifest::KeyId;
use pollen_core::status::{SignedStatus, MAX_STATUS_BYTES};

fn genuine() -> &'static (Vec<KeyId>, Vec<Vec<u8>>) {
    static G: OnceLock<(Vec<KeyId>, Vec<Vec<u8>>)> = OnceLock::new();
    G.get_or_init(|| {
        let keys = (0..3)
            .map(|n| pollen_fuzz::device_key(n).public().id())
            .collect();
        let records = pollen_fuzz::status_records()
            .iter()
            .map(|s| s.to_bytes().to_vec())
            .collect();
        (keys, records)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(status) = SignedStatus::decode(data) else {
        return;
    };
    assert!(data.len() <= MAX_STATUS_BYTES);
    assert_eq!(status.to_bytes(), data);
    assert_eq!(
        SignedStatus::decode(status.to_bytes()).as_ref(),
        Ok(&status)
    );
    let (keys, records) = genuine();
    if keys.contains(&status.key_id()) {
        assert!(
            records.iter().any(|r| r[..] == *data),
            "a fixture device's key accepted a record it never signed"
        );
    }
});
