//! Fuzzes peer exchange: a `Peers` response decoded by
//! `wire::Response::decode`, then each record's peer id and address bytes
//! turned into libp2p types exactly as the node's driver does
//! (`PeerId::from_bytes`, `Multiaddr::try_from`, at most `MAX_ADDRS` each).
//!
//! Checked: no panic anywhere; record and address caps hold; a peer id or
//! address that parses converts back to bytes that parse to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use libp2p_identity::PeerId;
use multiaddr::Multiaddr;
use pollen_core::wire::{Response, MAX_ADDRS, MAX_PEER_RECORDS};

fuzz_target!(|data: &[u8]| {
    let Ok(Response::Peers(list)) = Response::decode(data) else {
        return;
    };
    assert!(list.len() <= MAX_PEER_RECORDS);
    for rec in list {
        assert!(rec.addrs.len() <= MAX_ADDRS);
        if let Ok(peer) = PeerId::from_bytes(&rec.peer) {
            assert_eq!(PeerId::from_bytes(&peer.to_bytes()).ok(), Some(peer));
        }
        for a in rec.addrs.iter().take(MAX_ADDRS) {
            if let Ok(addr) = Multiaddr::try_from(a.to_vec()) {
                assert_eq!(Multiaddr::try_from(addr.to_vec()).ok(), Some(addr));
            }
        }
    }
});
