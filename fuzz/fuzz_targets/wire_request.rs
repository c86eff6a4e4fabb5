//! Fuzzes `wire::Request::decode`, what a node runs on every request
//! frame a peer sends.
//!
//! Checked beyond "no panic": the size cap holds; whatever decodes
//! re-encodes within the cap, no longer than the input, and decodes back to
//! itself; the per-variant caps (indices, status records, control size) hold;
//! the signed payloads a request carries decode without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pollen_core::rollout::{SignedControl, MAX_CONTROL_BYTES};
use pollen_core::status::{SignedStatus, MAX_STATUS_BYTES};
use pollen_core::wire::{Request, MAX_REQUEST, MAX_STATUS_RECORDS};

fuzz_target!(|data: &[u8]| {
    let Ok(req) = Request::decode(data) else {
        return;
    };
    assert!(data.len() <= MAX_REQUEST);
    let bytes = req.encode().expect("a decoded request re-encodes");
    assert!(bytes.len() <= data.len(), "re-encoding grew");
    assert_eq!(Request::decode(&bytes).as_ref(), Ok(&req));
    match &req {
        Request::Gained { indices, .. } => assert!(indices.len() <= MAX_REQUEST / 4),
        Request::Status(list) => {
            assert!(list.len() <= MAX_STATUS_RECORDS);
            for r in list {
                assert!(r.len() <= MAX_STATUS_BYTES);
                let _ = SignedStatus::decode(r);
            }
        }
        Request::Control(c) => {
            assert!(c.len() <= MAX_CONTROL_BYTES);
            let _ = SignedControl::decode(c);
        }
        _ => {}
    }
});
