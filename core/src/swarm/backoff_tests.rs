//! Back-off after timeouts: none left once the peer turns out to have
//! been slow rather than gone.

use std::time::Duration;

use super::arrival_tests::requests;
use super::tests::chunk_refs;
use super::*;

const TIMEOUT: Duration = Duration::from_secs(5);

/// One peer holding all of `chunks`, `window` requests to it at a time.
fn one_peer(chunks: u32, window: usize) -> Swarm<u32> {
    let cfg = SwarmConfig {
        site: None,
        endgame_chunks: 0,
        request_timeout: TIMEOUT,
        initial_window: window,
        ..SwarmConfig::default()
    };
    let mut s = Swarm::new(
        cfg,
        0,
        chunk_refs(chunks),
        Bitfield::new(chunks),
        Duration::ZERO,
    );
    s.handle_peer_up(Duration::ZERO, 1, PeerInfo::default());
    s.handle_have_all(Duration::ZERO, 1, Bitfield::full(chunks));
    s
}

/// The chunks requested since the last call.
fn requested(s: &mut Swarm<u32>) -> Vec<u32> {
    requests(s).into_iter().map(|(_, index)| index).collect()
}

#[test]
fn a_chunk_arriving_after_its_timeout_ends_the_back_off() {
    let mut s = one_peer(2, 1);
    let first = requested(&mut s);
    assert_eq!(first.len(), 1);
    // Six timeouts in a row, each after its own back-off: 8 s or more now.
    let mut now = Duration::ZERO;
    while s.stats().timeouts < 6 {
        now = s.poll_timeout().expect("a timer pending");
        s.handle_timeout(now, |_, _| 0);
        requested(&mut s);
    }
    let wake = s.poll_timeout().expect("the back-off's end");
    assert!(wake >= now + Duration::from_secs(8), "{:?}", wake - now);
    // The first chunk it was asked for arrives after all: it was slow.
    s.handle_chunk(now + Duration::from_secs(1), 1, first[0], Receipt::Verified);
    let asked = requested(&mut s);
    assert_eq!(asked.len(), 1, "asked again at once for what is left");
    assert_ne!(asked[0], first[0]);
}
