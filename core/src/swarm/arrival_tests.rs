//! A chunk reported when its bytes arrive ([`Swarm::handle_arrived`]) and
//! checked later: its request slot frees at once, and it is asked for
//! nowhere else until its verdict.

use std::time::Duration;

use super::tests::chunk_refs;
use super::*;

const MS: Duration = Duration::from_millis(1);

/// One request per peer at a time, no site rules: every peer has all `n`.
fn swarm(n: u32, peers: u32) -> Swarm<u32> {
    let cfg = SwarmConfig {
        per_peer_in_flight: 1,
        total_in_flight: 64,
        site: None,
        ..SwarmConfig::default()
    };
    let mut s = Swarm::new(cfg, 0, chunk_refs(n), Bitfield::new(n), Duration::ZERO);
    for p in 1..=peers {
        s.handle_peer_up(Duration::ZERO, p, PeerInfo::default());
        s.handle_have_all(Duration::ZERO, p, Bitfield::full(n));
    }
    s
}

/// A device of site 1 lacking all `n` chunks, site rules on.
fn on_site_1(n: u32) -> Swarm<u32> {
    let cfg = SwarmConfig {
        site: Some(SiteId(1)),
        ..SwarmConfig::default()
    };
    Swarm::new(cfg, 0, chunk_refs(n), Bitfield::new(n), Duration::ZERO)
}

/// A peer of `site`, neither origin nor gateway.
fn of_site(site: u64) -> PeerInfo {
    PeerInfo {
        site: Some(SiteId(site)),
        ..PeerInfo::default()
    }
}

pub(super) fn requests(s: &mut Swarm<u32>) -> Vec<(u32, u32)> {
    std::iter::from_fn(|| s.poll_action())
        .filter_map(|a| match a {
            Action::Request { peer, index, .. } => Some((peer, index)),
            _ => None,
        })
        .collect()
}

#[test]
fn an_arrival_frees_the_slot_and_its_chunk_is_not_asked_for_again() {
    let mut s = swarm(3, 1);
    let first = requests(&mut s);
    assert_eq!(first.len(), 1, "one request per peer");
    let (peer, a) = first[0];
    s.handle_arrived(MS, peer, a);
    let next = requests(&mut s);
    assert_eq!(next.len(), 1, "the slot freed before the verdict: {next:?}");
    assert_ne!(next[0].1, a, "the arrived chunk is not asked for again");
    // Its verdict: held, and not counted as a duplicate.
    s.handle_chunk(2 * MS, peer, a, Receipt::Verified);
    assert!(s.have().get(a));
    assert_eq!(s.stats().duplicates, 0);
    assert_eq!(s.stats().chunks_verified, 1);
    let (p, b) = next[0];
    s.handle_arrived(3 * MS, p, b);
    let last = requests(&mut s);
    assert_eq!(last.len(), 1);
    assert!(last[0].1 != a && last[0].1 != b, "{last:?}");
    s.handle_chunk(4 * MS, p, b, Receipt::Verified);
    s.handle_arrived(5 * MS, p, last[0].1);
    assert!(requests(&mut s).is_empty(), "nothing left to ask for");
    assert!(!s.is_complete(), "complete only once checked");
    s.handle_chunk(6 * MS, p, last[0].1, Receipt::Verified);
    assert!(s.is_complete());
}

#[test]
fn end_game_does_not_duplicate_a_chunk_being_checked() {
    // Two peers, two chunks: both requested, one from each; the first
    // arrives. In end-game a free peer would take a copy of a requested
    // chunk, never of one whose bytes are in.
    let mut s = swarm(2, 2);
    let first = requests(&mut s);
    assert_eq!(first.len(), 2);
    let (p, a) = first[0];
    s.handle_arrived(MS, p, a);
    let more = requests(&mut s);
    assert!(
        more.iter().all(|&(_, i)| i != a),
        "the chunk being checked was asked for again: {more:?}"
    );
}

#[test]
fn a_rejected_arrival_is_wanted_again() {
    let mut s = swarm(1, 2);
    let first = requests(&mut s);
    let (p, a) = first[0];
    s.handle_arrived(MS, p, a);
    assert!(
        requests(&mut s).is_empty(),
        "the only chunk is being checked"
    );
    s.handle_chunk(2 * MS, p, a, Receipt::Rejected);
    assert_eq!(s.stats().chunks_rejected, 1);
    let again = requests(&mut s);
    assert_eq!(again.len(), 1, "asked for again: {again:?}");
    assert_eq!(again[0].1, a);
    assert!(!s.have().get(a));
}

#[test]
fn an_arrival_that_could_not_be_stored_is_asked_for_after_the_back_off() {
    let mut s = swarm(1, 1);
    let (p, a) = requests(&mut s)[0];
    s.handle_arrived(MS, p, a);
    // The disk refused it: as if the sender were busy for a second.
    s.handle_request_busy(2 * MS, p, a, Some(Duration::from_secs(1)));
    assert_eq!(s.stats().failures, 1);
    assert!(
        requests(&mut s).is_empty(),
        "the peer is left alone for now"
    );
    let wake = s.poll_timeout().expect("a wake-up after the back-off");
    assert!(wake >= Duration::from_secs(1), "{wake:?}");
    s.handle_timeout(wake, |_, _| 0);
    let again = requests(&mut s);
    assert_eq!(
        again,
        vec![(p, a)],
        "asked for again once the back-off ran out"
    );
}

#[test]
fn bytes_nobody_asked_for_change_nothing() {
    let mut s = swarm(2, 1);
    let (p, a) = requests(&mut s)[0];
    let other = 1 - a;
    // Not requested: ignored, and still asked for when a slot frees.
    s.handle_arrived(MS, 7, other);
    s.handle_arrived(MS, p, 99);
    assert!(requests(&mut s).is_empty(), "no slot freed");
    s.handle_arrived(2 * MS, p, a);
    assert_eq!(requests(&mut s), vec![(p, other)]);
}

#[test]
fn a_chunk_from_a_site_peer_that_left_before_its_verdict_counts_as_from_the_site() {
    let mut s = on_site_1(2);
    s.handle_peer_up(Duration::ZERO, 1, of_site(1));
    s.handle_have_all(Duration::ZERO, 1, Bitfield::full(2));
    let (peer, index) = requests(&mut s)[0];
    s.handle_arrived(MS, peer, index);
    // A one-shot fetch leaves while the chunk is hashed and written.
    s.handle_peer_down(2 * MS, peer);
    s.handle_chunk(3 * MS, peer, index, Receipt::Verified);
    assert!(s.have().get(index));
    let len = u64::from(chunk_refs(2)[index as usize].len);
    assert_eq!(s.stats().bytes_from_site, len);
    assert_eq!(s.stats().bytes_from_remote, 0);
}

#[test]
fn a_copy_from_across_checked_first_is_credited_across() {
    // The request across the uplink was taken back and the chunk asked of
    // a site peer, but the bytes from across came anyway: both copies are
    // in, and the one from across is checked first.
    let mut s = on_site_1(1);
    let (local, across) = (1, 2);
    s.handle_peer_up(Duration::ZERO, local, of_site(1));
    s.handle_peer_up(Duration::ZERO, across, of_site(2));
    s.handle_have_all(Duration::ZERO, local, Bitfield::full(1));
    assert_eq!(requests(&mut s), vec![(local, 0)]);
    s.handle_arrived(MS, across, 0);
    s.handle_arrived(2 * MS, local, 0);
    s.handle_chunk(3 * MS, across, 0, Receipt::Verified);
    let len = u64::from(chunk_refs(1)[0].len);
    assert_eq!(
        s.stats().bytes_from_remote,
        len,
        "the bytes stored came across"
    );
    assert_eq!(s.stats().bytes_from_site, 0);
    // The site peer's copy is a duplicate, credited to no one.
    s.handle_chunk(4 * MS, local, 0, Receipt::Verified);
    assert_eq!(s.stats().duplicates, 1);
    assert_eq!(s.stats().bytes_from_remote, len);
    assert_eq!(s.stats().bytes_from_site, 0);
    assert!(s.checking_from.is_empty(), "nothing left of either arrival");
}
