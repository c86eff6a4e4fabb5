//! Fuzzes `wire::Response::decode`, what a node runs on every response
//! frame a peer sends.
//!
//! Checked beyond "no panic": the size cap holds; whatever decodes
//! re-encodes, no longer than the input, and decodes back to itself; peer
//! exchange stays within its caps; the payloads a response carries (a
//! manifest, a has-set, a rollout control) decode without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pollen_core::rollout::SignedControl;
use pollen_core::wire::{Response, MAX_ADDRS, MAX_PEER_RECORDS, MAX_RESPONSE};
use pollen_core::SignedManifest;

fuzz_target!(|data: &[u8]| {
    let Ok(resp) = Response::decode(data) else {
        return;
    };
    assert!(data.len() <= MAX_RESPONSE);
    let bytes = resp.encode().expect("a decoded response re-encodes");
    assert!(bytes.len() <= data.len(), "re-encoding grew");
    assert_eq!(Response::decode(&bytes).as_ref(), Ok(&resp));
    match resp {
        Response::Peers(list) => {
            assert!(list.len() <= MAX_PEER_RECORDS);
            assert!(list.iter().all(|p| p.addrs.len() <= MAX_ADDRS));
        }
        Response::Manifest(m) => {
            let _ = SignedManifest::decode(&m);
        }
        Response::Have(have) => {
            let len = have.len();
            let _ = have.checked(len);
        }
        Response::Control(c) => {
            let _ = SignedControl::decode(&c);
        }
        _ => {}
    }
});
