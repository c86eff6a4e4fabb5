//! Scheduler behaviour, on single swarms and on the in-memory N-node harness.

use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::node::harness::{Net, NodeSpec, SEEDER};

const MIN: Duration = Duration::from_secs(600);

fn specs(sites: &[u32]) -> Vec<NodeSpec> {
    sites
        .iter()
        .map(|&site| NodeSpec {
            site,
            corrupt: false,
        })
        .collect()
}

fn pollen(seed: u64) -> impl Fn(u32) -> SwarmConfig {
    move |id| SwarmConfig {
        seed: seed ^ u64::from(id),
        ..SwarmConfig::default()
    }
}

/// The next action that is not a role notice.
fn next_action(s: &mut Swarm<u32>) -> Option<Action<u32>> {
    std::iter::from_fn(|| s.poll_action()).find(|a| !matches!(a, Action::Role { .. }))
}

/// `n` distinct chunks of 1 000 bytes.
pub(super) fn chunk_refs(n: u32) -> Vec<ChunkRef> {
    (0..n)
        .map(|i| ChunkRef {
            id: ChunkId::of(&i.to_le_bytes()),
            len: 1000,
        })
        .collect()
}

#[test]
fn site_of_six_pulls_each_chunk_across_the_uplink_once() {
    let mut net = Net::new(64, 256 * 1024, &specs(&[1; 6]), pollen(7));
    net.run(MIN);
    assert_eq!(net.finished.len(), 6, "all nodes finish");
    let f = 64 * 256 * 1024;
    assert_eq!(net.uplink_in[&1], f, "exactly one copy crossed the uplink");
}

#[test]
fn plain_swarm_pulls_more_than_once() {
    let cfg = |id| SwarmConfig {
        seed: u64::from(id),
        policy: SwarmPolicy::Flat,
        ..SwarmConfig::default()
    };
    let mut net = Net::new(64, 256 * 1024, &specs(&[1; 6]), cfg);
    net.run(MIN);
    assert_eq!(net.finished.len(), 6);
    assert!(
        net.uplink_in[&1] > 2 * 64 * 256 * 1024,
        "{}",
        net.uplink_in[&1]
    );
}

#[test]
fn no_lan_fetches_everything_from_the_seeder() {
    let cfg = |id| SwarmConfig {
        seed: u64::from(id),
        policy: SwarmPolicy::NoLan,
        ..SwarmConfig::default()
    };
    let mut net = Net::new(16, 100_000, &specs(&[1; 4]), cfg);
    net.run(MIN);
    assert_eq!(net.finished.len(), 4);
    assert_eq!(net.uplink_in[&1], 4 * 16 * 100_000);
}

#[test]
fn same_seed_same_run() {
    let run = || {
        let mut net = Net::new(40, 50_000, &specs(&[1, 1, 1, 2, 2, 3]), pollen(3));
        net.run(MIN);
        (
            net.finished.clone(),
            net.uplink_in.clone(),
            net.nodes
                .keys()
                .map(|&id| net.swarm(id).stats().clone())
                .collect::<Vec<_>>(),
        )
    };
    assert_eq!(run(), run());
}

#[test]
fn corrupt_peer_is_banned_and_download_completes() {
    let mut nodes = specs(&[1, 1, 1, 1]);
    nodes.push(NodeSpec {
        site: 1,
        corrupt: true,
    });
    let mut net = Net::new(32, 10_000, &nodes, pollen(11));
    net.run(MIN);
    for id in 1..=4 {
        assert!(net.finished.contains_key(&id), "node {id} finished");
        let s = net.swarm(id);
        assert!(s.is_banned(&5) || s.stats().chunks_rejected == 0);
    }
    assert!(
        (1..=4).any(|id| net.swarm(id).is_banned(&5)),
        "someone met the liar and banned it"
    );
    assert_eq!(net.stored_corrupt, 0);
}

#[test]
fn assignee_crash_is_covered_by_the_rest() {
    let mut net = Net::new(64, 100_000, &specs(&[1; 5]), pollen(5));
    net.crash_at(3, Duration::from_millis(2500));
    net.run(MIN);
    for id in [1, 2, 4, 5] {
        assert!(net.finished.contains_key(&id), "node {id} finished");
    }
    // A crashed member's in-flight share may cross twice, never the whole release.
    assert!(
        net.uplink_in[&1] <= 64 * 100_000 * 12 / 10,
        "{}",
        net.uplink_in[&1]
    );
}

#[test]
fn uplink_budget_is_respected() {
    let rate = 200_000;
    let cfg = move |id| SwarmConfig {
        seed: u64::from(id),
        uplink_rate: Some(rate),
        ..SwarmConfig::default()
    };
    let mut net = Net::new(40, 100_000, &specs(&[1]), cfg);
    net.wan_rate = 100_000_000;
    net.run(MIN);
    let done = net.finished[&1].as_secs_f64();
    // 4 MB at 200 kB/s with a one-second burst: at least 19 s.
    assert!(done >= 19.0, "finished in {done} s");
}

#[test]
fn pipelining_is_bounded_and_endgame_duplicates() {
    let cfg = SwarmConfig {
        per_peer_in_flight: 3,
        total_in_flight: 5,
        site: None,
        ..SwarmConfig::default()
    };
    let mut s: Swarm<u32> = Swarm::new(cfg, 0, chunk_refs(10), Bitfield::new(10), Duration::ZERO);
    for p in 1..=3 {
        s.handle_peer_up(Duration::ZERO, p, PeerInfo::default());
        s.handle_have_all(Duration::ZERO, p, Bitfield::full(10));
    }
    let mut requests = Vec::new();
    while let Some(a) = s.poll_action() {
        if let Action::Request { peer, index, .. } = a {
            requests.push((peer, index));
        }
    }
    assert_eq!(requests.len(), 5, "total cap");
    for p in 1..=3 {
        assert!(requests.iter().filter(|r| r.0 == p).count() <= 3);
    }
    // Deliver all but the end: end-game duplicates the last requests.
    let mut t = Duration::from_millis(1);
    let mut dupes = 0;
    for _ in 0..40 {
        let Some(&(peer, index)) = requests.first() else {
            break;
        };
        requests.remove(0);
        s.handle_chunk(t, peer, index, Receipt::Verified);
        t += Duration::from_millis(1);
        while let Some(a) = s.poll_action() {
            if let Action::Request { peer, index, .. } = a {
                if requests.iter().any(|r| r.1 == index) {
                    dupes += 1;
                }
                requests.push((peer, index));
            }
        }
    }
    assert!(s.is_complete());
    assert!(dupes > 0, "end-game sent duplicate requests");
}

#[test]
fn a_scheduler_takes_up_to_max_peers() {
    // Complete, so that each peer costs no pass (a pass walks every peer).
    let mut s: Swarm<u32> = Swarm::new(
        pollen(1)(0),
        0,
        chunk_refs(1),
        Bitfield::full(1),
        Duration::ZERO,
    );
    let last = MAX_PEERS as u32 + 1;
    for p in 1..=last {
        s.handle_peer_up(Duration::ZERO, p, PeerInfo::default());
    }
    assert_eq!(
        s.peers.len(),
        MAX_PEERS,
        "the peer past the cap is not taken up"
    );
    assert!(s.peers.slot(&last).is_none() && s.peers.slot(&(last - 1)).is_some());
}

#[test]
fn rarest_chunk_is_requested_first() {
    let cfg = SwarmConfig {
        per_peer_in_flight: 1,
        total_in_flight: 1,
        site: None,
        ..SwarmConfig::default()
    };
    let mut s: Swarm<u32> = Swarm::new(cfg, 0, chunk_refs(4), Bitfield::new(4), Duration::ZERO);
    let mut common = Bitfield::new(4);
    for i in [0, 1, 3] {
        common.set(i);
    }
    for p in 2..=4 {
        s.handle_peer_up(Duration::ZERO, p, PeerInfo::default());
        s.handle_have_all(Duration::ZERO, p, common.clone());
    }
    s.handle_peer_up(Duration::ZERO, 1, PeerInfo::default());
    s.handle_have_all(Duration::ZERO, 1, Bitfield::full(4));
    // The one slot went out before peer 1 was known; when it frees, the
    // chunk only peer 1 holds goes first.
    let (peer, index) = std::iter::from_fn(|| s.poll_action())
        .find_map(|a| match a {
            Action::Request { peer, index, .. } => Some((peer, index)),
            _ => None,
        })
        .expect("a request");
    assert_ne!(index, 2);
    s.handle_chunk(Duration::from_millis(1), peer, index, Receipt::Verified);
    let first = std::iter::from_fn(|| s.poll_action()).find_map(|a| match a {
        Action::Request { index, .. } => Some(index),
        _ => None,
    });
    assert_eq!(first, Some(2), "chunk 2 is held by one peer only");
}

#[test]
fn timeouts_retry_elsewhere() {
    let cfg = SwarmConfig {
        request_timeout: Duration::from_secs(5),
        site: None,
        endgame_chunks: 0,
        ..SwarmConfig::default()
    };
    let mut s: Swarm<u32> = Swarm::new(cfg, 0, chunk_refs(1), Bitfield::new(1), Duration::ZERO);
    s.handle_peer_up(Duration::ZERO, 1, PeerInfo::default());
    s.handle_have_all(Duration::ZERO, 1, Bitfield::full(1));
    s.handle_peer_up(Duration::ZERO, 2, PeerInfo::default());
    s.handle_have_all(Duration::ZERO, 2, Bitfield::full(1));
    let first: Vec<_> = std::iter::from_fn(|| next_action(&mut s)).collect();
    assert_eq!(first.len(), 1);
    assert_eq!(s.poll_timeout(), Some(Duration::from_secs(5)));
    s.handle_timeout(Duration::from_secs(5), |_, _| 0);
    let after: Vec<_> = std::iter::from_fn(|| s.poll_action()).collect();
    assert!(after.iter().any(|a| matches!(a, Action::Cancel { .. })));
    assert!(after.iter().any(|a| matches!(a, Action::Request { .. })));
    assert_eq!(s.stats().timeouts, 1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Any mesh of sites completes; with no churn each site's uplink carries
    /// each chunk once; no corrupt chunk is ever accepted; caps hold.
    #[test]
    fn meshes_complete_with_one_copy_per_site(
        sites in proptest::collection::vec(1u32..4, 1..9),
        chunks in 1u32..40,
        seed in any::<u64>(),
        per_peer in 1usize..5,
    ) {
        let cfg = move |id: u32| SwarmConfig {
            seed: seed ^ u64::from(id),
            per_peer_in_flight: per_peer,
            total_in_flight: per_peer * 3,
            ..SwarmConfig::default()
        };
        let mut net = Net::new(chunks, 20_000, &specs(&sites), cfg);
        net.run(MIN);
        prop_assert_eq!(net.finished.len(), sites.len());
        prop_assert!(net.max_in_flight_seen <= per_peer * 3);
        for (site, bytes) in &net.uplink_in {
            prop_assert_eq!(*bytes, u64::from(chunks) * 20_000, "site {}", site);
        }
        prop_assert!(!net.uplink_in.contains_key(&SEEDER));
    }
}

#[test]
fn busy_peer_is_retried_after_backoff_not_forgotten() {
    let cfg = SwarmConfig {
        site: None,
        endgame_chunks: 0,
        ..SwarmConfig::default()
    };
    let mut s: Swarm<u32> = Swarm::new(cfg, 0, chunk_refs(1), Bitfield::new(1), Duration::ZERO);
    s.handle_peer_up(Duration::ZERO, 1, PeerInfo::default());
    s.handle_have_all(Duration::ZERO, 1, Bitfield::full(1));
    assert!(matches!(
        next_action(&mut s),
        Some(Action::Request {
            peer: 1,
            index: 0,
            ..
        })
    ));
    s.handle_request_busy(Duration::from_millis(10), 1, 0, None);
    assert_eq!(next_action(&mut s), None, "not asked again at once");
    let wake = s.poll_timeout().expect("a wake-up for the backoff");
    s.handle_timeout(wake, |_, _| 0);
    assert!(
        matches!(
            next_action(&mut s),
            Some(Action::Request {
                peer: 1,
                index: 0,
                ..
            })
        ),
        "asked again after the backoff"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A `Have` runs only the incremental pass; a full pass right after it
    /// must find nothing more to ask for, whatever came before.
    #[test]
    fn incremental_pass_misses_nothing(
        ops in proptest::collection::vec((0u8..4, 1u32..8, 0u32..24), 1..200),
        per_peer in 1usize..4,
        seed in any::<u64>(),
    ) {
        let site = Some(SiteId(1));
        let cfg = SwarmConfig {
            seed,
            per_peer_in_flight: per_peer,
            total_in_flight: per_peer * 3,
            site,
            site_uplink_requests: 4,
            ..SwarmConfig::default()
        };
        let mut s: Swarm<u32> = Swarm::new(cfg, 0, chunk_refs(24), Bitfield::new(24), Duration::ZERO);
        let mut flying: Vec<(u32, u32)> = Vec::new();
        let mut t = Duration::from_secs(3);
        for (op, peer, index) in ops {
            t += Duration::from_millis(10);
            match op {
                0 => {
                    let info = PeerInfo {
                        site: if peer < 6 { site } else { Some(SiteId(2)) },
                        origin: peer == 7,
                        uplink: true,
                        gateway: true,
                    };
                    s.handle_peer_up(t, peer, info)
                }
                1 => {
                    s.handle_have(t, peer, index);
                    while let Some(a) = s.poll_action() {
                        if let Action::Request { peer, index, .. } = a {
                            flying.push((peer, index));
                        }
                    }
                    s.full_pass(t);
                    let missed: Vec<_> = std::iter::from_fn(|| s.poll_action())
                        .filter(|a| matches!(a, Action::Request { .. }))
                        .collect();
                    prop_assert!(missed.is_empty(), "full pass found {:?}", missed);
                    continue;
                }
                2 if !flying.is_empty() => {
                    let (p, i) = flying.remove(index as usize % flying.len());
                    s.handle_chunk(t, p, i, Receipt::Verified);
                }
                _ => s.handle_peer_down(t, peer),
            }
            while let Some(a) = s.poll_action() {
                match a {
                    Action::Request { peer, index, .. } => flying.push((peer, index)),
                    Action::Cancel { peer, index } => flying.retain(|&f| f != (peer, index)),
                    _ => {}
                }
            }
            flying.retain(|&(p, _)| p != peer || op != 3);
        }
    }
}

/// One source delivering its responses in order, at a rate that changes
/// every ten seconds, sometimes refusing or breaking off a request.
struct Pipe {
    flying: std::collections::VecDeque<(u32, u32, f64)>,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Under any sequence of rates and losses: no request is issued that
    /// puts more bytes in flight to the source than its window allows (or
    /// more requests than the cap), and a source delivering at any positive
    /// rate completes every chunk.
    #[test]
    fn windows_hold_and_a_source_at_any_rate_completes(
        rates in proptest::collection::vec(500u64..20_000_000, 1..8),
        losses in proptest::collection::vec(0u8..12, 1..48),
        chunks in 1u32..32,
        len in 1_000u32..300_000,
        seed in any::<u64>(),
    ) {
        // A source that delivers: the loss pattern holds a delivery.
        prop_assume!(losses.iter().any(|&l| l > 2));
        let cfg = SwarmConfig {
            seed,
            site: None,
            endgame_chunks: 0,
            ..SwarmConfig::default()
        };
        let refs: Vec<ChunkRef> = (0..chunks)
            .map(|i| ChunkRef { id: ChunkId::of(&i.to_le_bytes()), len })
            .collect();
        let mut s: Swarm<u32> = Swarm::new(cfg.clone(), 0, refs, Bitfield::new(chunks), Duration::ZERO);
        let origin = PeerInfo { origin: true, ..PeerInfo::default() };
        s.handle_peer_up(Duration::ZERO, 1, origin);
        s.handle_have_all(Duration::ZERO, 1, Bitfield::full(chunks));
        let mut pipe = Pipe { flying: Default::default() };
        let mut now = Duration::ZERO;
        let mut deliveries = 0usize;
        let limit = Duration::from_secs(200_000);
        while !s.is_complete() && now < limit {
            // Drain what the scheduler decided; check the window on issue.
            let mut issued = false;
            while let Some(a) = s.poll_action() {
                match a {
                    Action::Request { peer, index, len, .. } => {
                        prop_assert_eq!(peer, 1);
                        pipe.flying.push_back((index, len, 0.0));
                        issued = true;
                    }
                    Action::Cancel { index, .. } => pipe.flying.retain(|f| f.0 != index),
                    _ => {}
                }
            }
            prop_assert!(pipe.flying.len() <= cfg.per_peer_in_flight);
            if issued && pipe.flying.len() > 1 {
                let in_flight = s.in_flight_bytes(&1);
                match s.window_bytes(&1) {
                    Some(w) => prop_assert!(in_flight <= w, "{} bytes in flight, window {}", in_flight, w),
                    None => prop_assert!(pipe.flying.len() <= cfg.initial_window),
                }
            }
            // The head of the pipe moves at this period's rate.
            let rate = rates[(now.as_secs() / 10) as usize % rates.len()] as f64;
            let timer = s.poll_timeout().unwrap_or(limit).max(now + Duration::from_millis(1));
            let head_done = pipe.flying.front().map(|f| (f64::from(f.1) - f.2) / rate);
            let step = match head_done {
                Some(t) => Duration::from_secs_f64(t.max(1e-6)).min(timer - now),
                None => timer - now,
            };
            now += step;
            if let Some(head) = pipe.flying.front_mut() {
                head.2 = (head.2 + rate * step.as_secs_f64()).min(f64::from(head.1));
                if head.2 >= f64::from(head.1) {
                    let (index, _, _) = pipe.flying.pop_front().expect("head");
                    let loss = losses[deliveries % losses.len()];
                    deliveries += 1;
                    match loss {
                        0 => s.handle_request_busy(now, 1, index, Some(Duration::from_millis(700))),
                        1 => s.handle_request_busy(now, 1, index, None),
                        2 => s.handle_request_declined(now, 1, index, Duration::from_secs(2)),
                        _ => s.handle_chunk(now, 1, index, Receipt::Verified),
                    }
                    continue;
                }
            }
            if s.poll_timeout().is_some_and(|t| t <= now) {
                let got: Vec<(u32, u64)> = pipe.flying.iter().map(|f| (f.0, f.2 as u64)).collect();
                s.handle_timeout(now, |_, index| {
                    got.iter().find(|g| g.0 == index).map_or(0, |g| g.1)
                });
            }
        }
        prop_assert!(s.is_complete(), "{} of {} chunks after {:?}", s.have().count(), chunks, now);
        prop_assert!(deliveries >= chunks as usize, "{} deliveries", deliveries);
    }
}

#[test]
fn only_peers_that_told_of_a_chunk_or_were_asked_take_room_for_it() {
    let site = SiteId(1);
    let cfg = SwarmConfig {
        site: Some(site),
        ..SwarmConfig::default()
    };
    let mut s: Swarm<u32> = Swarm::new(cfg, 0, chunk_refs(8), Bitfield::new(8), Duration::ZERO);
    let member = PeerInfo {
        site: Some(site),
        ..PeerInfo::default()
    };
    for p in 1..=20 {
        s.handle_peer_up(Duration::ZERO, p, member);
    }
    s.handle_have(Duration::ZERO, 7, 3);
    let asked: Vec<u32> = std::iter::from_fn(|| s.poll_action())
        .filter_map(|a| match a {
            Action::Request { peer, .. } => Some(peer),
            _ => None,
        })
        .collect();
    assert_eq!(asked, vec![7], "the one holder is asked");
    for p in 1..=20u32 {
        let st = s.peers.get(&p).expect("connected");
        assert_eq!(st.asked.is_some(), p == 7, "peer {p}: asked state");
        let slot = s.peers.slot(&p).expect("connected");
        assert_eq!(s.peers.has(slot, 3), p == 7);
    }
    assert_eq!(s.in_flight_bytes(&7), 1000);
    assert_eq!(s.in_flight_bytes(&8), 0, "a peer never asked reads as idle");
}

/// The chunk indices the scheduler asks peers to be told of, in order.
fn told_of(s: &mut Swarm<u32>) -> Vec<u32> {
    std::iter::from_fn(|| s.poll_action())
        .filter_map(|a| match a {
            Action::Have { index } => Some(index),
            _ => None,
        })
        .collect()
}

#[test]
fn a_chunk_is_told_of_once_from_its_first_piece_and_again_if_it_was_lost() {
    let cfg = SwarmConfig {
        site: None,
        endgame_chunks: 0,
        ..SwarmConfig::default()
    };
    let t = Duration::ZERO;
    let mut s: Swarm<u32> = Swarm::new(cfg, 0, chunk_refs(2), Bitfield::new(2), t);
    s.handle_peer_up(t, 1, PeerInfo::default());
    s.handle_have_all(t, 1, Bitfield::full(2));
    let asked: Vec<u32> = std::iter::from_fn(|| s.poll_action())
        .filter_map(|a| match a {
            Action::Request { index, .. } => Some(index),
            _ => None,
        })
        .collect();
    assert_eq!(asked.len(), 2, "both chunks asked of peer 1: {asked:?}");

    // Chunk 0: told of at its first piece, not again when whole.
    s.handle_partial(0);
    assert_eq!(told_of(&mut s), vec![0]);
    s.handle_partial(0);
    assert!(told_of(&mut s).is_empty(), "a second piece tells nothing");
    s.handle_chunk(t, 1, 0, Receipt::Verified);
    assert!(told_of(&mut s).is_empty(), "told of already");

    // Chunk 1: told of at its first piece, then its response breaks off;
    // once it comes whole from a retry it is told of again.
    s.handle_partial(1);
    assert_eq!(told_of(&mut s), vec![1]);
    s.handle_request_busy(t, 1, 1, None);
    let retry = Duration::from_secs(60);
    s.handle_timeout(retry, |_, _| 0);
    let again = std::iter::from_fn(|| s.poll_action())
        .any(|a| matches!(a, Action::Request { index: 1, .. }));
    assert!(again, "the lost chunk is asked for again");
    s.handle_chunk(retry, 1, 1, Receipt::Verified);
    assert_eq!(told_of(&mut s), vec![1], "held now: told of anew");

    // Out-of-range and held chunks tell nothing.
    s.handle_partial(7);
    s.handle_partial(0);
    assert!(told_of(&mut s).is_empty());
}

/// Two members of one site both fetching a chunk across the uplink (one
/// took the other for stalled): the first to tell the site of it keeps
/// it; the other's request, with no piece in yet, is taken back and the
/// chunk comes over the LAN.
#[test]
fn a_request_across_the_uplink_is_taken_back_when_a_site_peer_has_the_chunk() {
    let (n, site) = (16, SiteId(1));
    let cfg = SwarmConfig {
        site: Some(site),
        policy: SwarmPolicy::Sites { cross_site: true },
        ..SwarmConfig::default()
    };
    let mut s = Swarm::new(cfg, 0u32, chunk_refs(n), Bitfield::new(n), Duration::ZERO);
    let seeder = PeerInfo {
        origin: true,
        ..PeerInfo::default()
    };
    s.handle_peer_up(Duration::ZERO, 1, seeder);
    s.handle_have_all(Duration::ZERO, 1, Bitfield::full(n));
    let member = PeerInfo {
        site: Some(site),
        uplink: true,
        ..PeerInfo::default()
    };
    s.handle_peer_up(Duration::ZERO, 2, member);
    let t = Duration::from_secs(5);
    s.handle_timeout(t, |_, _| 0);
    let across: Vec<u32> = std::iter::from_fn(|| s.poll_action())
        .filter_map(|a| match a {
            Action::Request { peer: 1, index, .. } => Some(index),
            _ => None,
        })
        .collect();
    assert!(
        across.len() >= 2,
        "this member fetches its share: {across:?}"
    );
    let (x, y) = (across[0], across[1]);
    // The site peer tells of x: taken back from the seeder, asked of it.
    s.handle_have_many(t, 2, &[x]);
    let after: Vec<Action<u32>> = std::iter::from_fn(|| s.poll_action()).collect();
    assert!(
        after.contains(&Action::Cancel { peer: 1, index: x }),
        "{after:?}"
    );
    assert!(
        after
            .iter()
            .any(|a| matches!(a, Action::Request { peer: 2, index, .. } if *index == x)),
        "{after:?}"
    );
    assert_eq!(s.stats().taken_back, 1);
    // y's first piece is in from across: a site peer's notice leaves it be.
    s.handle_partial(y);
    s.handle_have_many(t, 2, &[y]);
    let after: Vec<Action<u32>> = std::iter::from_fn(|| s.poll_action()).collect();
    assert!(
        !after.iter().any(|a| matches!(a, Action::Cancel { .. })),
        "{after:?}"
    );
    assert_eq!(s.stats().taken_back, 1);
}
