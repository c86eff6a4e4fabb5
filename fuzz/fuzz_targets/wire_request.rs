//! Fuzzes `wire::Request::decode`, what a node runs on every request
//! frame a peer sends.
//!
//! Checked beyond "no panic": the size cap holds; whatever decodes
//! re-encodes within the cap, no longer than the input, and decodes back to
//! itself; the per-variant caps (indices, status records and their
//! credentials, control, policy and hello sizes) hold;
//! the signed payloads a request carries decode without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pollen_core::rollout::{SignedControl, MAX_CONTROL_BYTES};
use pollen_core::status::{SignedStatus, MAX_STATUS_BYTES};
use pollen_core::trust::credential::MAX_CREDENTIAL_BYTES;
use pollen_core::trust::policy::MAX_POLICY_BYTES;
use pollen_core::trust::{SignedCredential, SignedPolicy};
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
            for e in list {
                assert!(e.record.len() <= MAX_STATUS_BYTES);
                let _ = SignedStatus::decode(&e.record);
                if let Some(c) = &e.credential {
                    assert!(c.len() <= MAX_CREDENTIAL_BYTES);
                    let _ = SignedCredential::decode(c);
                }
            }
        }
        Request::Control(c) => {
            assert!(c.len() <= MAX_CONTROL_BYTES);
            let _ = SignedControl::decode(c);
        }
        Request::Hello(h) => {
            assert!(h
                .policy
                .as_ref()
                .is_none_or(|p| p.len() <= MAX_POLICY_BYTES));
            assert!(h
                .credential
                .as_ref()
                .is_none_or(|c| c.len() <= MAX_CREDENTIAL_BYTES));
        }
        Request::Policy(p) => {
            assert!(p.len() <= MAX_POLICY_BYTES);
            let _ = SignedPolicy::decode(p);
        }
        _ => {}
    }
});
