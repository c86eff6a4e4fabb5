//! The node layer on its own: who hears which notice and when, acks,
//! presets, roles.

use std::time::Duration;

use super::*;
use crate::chunk::ChunkId;

const MS: Duration = Duration::from_millis(1);
const SITE: SiteId = SiteId(1);

fn chunks(n: u32) -> Vec<ChunkRef> {
    (0..n)
        .map(|i| ChunkRef {
            id: ChunkId::of(&i.to_le_bytes()),
            len: 1000,
        })
        .collect()
}

fn info(site: u64, origin: bool) -> PeerInfo {
    PeerInfo {
        site: Some(SiteId(site)),
        origin,
        uplink: false,
        gateway: false,
    }
}

fn drain(n: &mut Node<u32>) -> Vec<Output<u32>> {
    std::iter::from_fn(|| n.poll_output()).collect()
}

fn requests(out: &[Output<u32>]) -> Vec<(u32, u32)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Request { peer, index, .. } => Some((*peer, *index)),
            _ => None,
        })
        .collect()
}

/// Node 0 on site 1 with a site peer 1, an origin 2 and a device 3 of site 2.
fn device() -> Node<u32> {
    let mut n = Node::new(
        NodeConfig::new(Preset::Device { cross_site: true }, Some(SITE)),
        0,
        Duration::ZERO,
    );
    n.take_release(Duration::ZERO, chunks(4), Bitfield::new(4));
    n.handle_peer_up(Duration::ZERO, 1, info(1, false), false);
    n.handle_peer_up(Duration::ZERO, 2, info(99, true), true);
    n.handle_peer_up(Duration::ZERO, 3, info(2, false), false);
    n
}

#[test]
fn a_verified_chunk_is_acked_to_its_sender_and_noticed_by_lane() {
    let mut n = device();
    n.handle_have_all(MS, 1, Bitfield::full(4));
    let asked = requests(&drain(&mut n));
    let &(peer, index) = asked.first().expect("a request to the site peer");
    assert_eq!(peer, 1);
    n.handle_chunk(30 * MS, 1, index, Receipt::Verified);
    let out = drain(&mut n);
    assert!(out.contains(&Output::Ack { peer: 1, index }));
    assert!(
        !out.iter().any(|o| matches!(o, Output::Gained { .. })),
        "batched"
    );
    assert_eq!(n.poll_timeout(), Some(200 * MS));
    n.handle_timeout(200 * MS, |_, _| 0);
    let told: Vec<u32> = drain(&mut n)
        .into_iter()
        .filter_map(|o| match o {
            Output::Gained { peer, indices } => {
                assert_eq!(&*indices, &[index]);
                Some(peer)
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        told,
        vec![1, 3],
        "the site peer on the 200 ms tick, and the other site's device too \
         (no device there is known to hold the chunk: news), not the origin"
    );
    n.handle_timeout(1000 * MS, |_, _| 0);
    assert!(told_of(&drain(&mut n)).is_empty(), "told once");
}

fn told_of(out: &[Output<u32>]) -> Vec<u32> {
    out.iter()
        .filter_map(|o| match o {
            Output::Gained { peer, .. } => Some(*peer),
            _ => None,
        })
        .collect()
}

#[test]
fn a_chunk_other_sites_hold_goes_on_the_slower_tick_only_to_those_lacking_it() {
    let mut n = device();
    // Gateways 3 and 4 of site 2 hold every chunk (so no chunk is news to
    // other sites); gateway 5 of site 3 holds none.
    let role = Role {
        origin: false,
        uplink: true,
        gateway: true,
    };
    n.handle_peer_role(Duration::ZERO, 3, role);
    let gateway = |site| PeerInfo {
        gateway: true,
        ..info(site, false)
    };
    n.handle_peer_up(Duration::ZERO, 4, gateway(2), false);
    n.handle_peer_up(Duration::ZERO, 5, gateway(3), false);
    n.handle_have_all(MS, 3, Bitfield::full(4));
    n.handle_have_all(MS, 4, Bitfield::full(4));
    n.handle_have_all(MS, 1, Bitfield::full(4));
    let asked = requests(&drain(&mut n));
    let &(peer, index) = asked.first().expect("a request");
    assert_eq!(peer, 1, "from the site");
    n.handle_chunk(30 * MS, peer, index, Receipt::Verified);
    drain(&mut n);
    n.handle_timeout(200 * MS, |_, _| 0);
    assert_eq!(told_of(&drain(&mut n)), vec![1], "the site on its tick");
    assert_eq!(n.poll_timeout(), Some(1000 * MS));
    n.handle_timeout(1000 * MS, |_, _| 0);
    assert_eq!(
        told_of(&drain(&mut n)),
        vec![5],
        "other sites on the 1 s tick, and only the one lacking the chunk"
    );
}

/// The site peers that hear node `me`'s next site notice, at a site of
/// `site` devices (10 and up; `me` one of them), the listed ones gateways.
fn site_heard(me: u32, site: u32, gateways: &[u32]) -> Vec<u32> {
    let mut n = Node::new(
        NodeConfig::new(Preset::Device { cross_site: true }, Some(SITE)),
        me,
        Duration::ZERO,
    );
    n.take_release(Duration::ZERO, chunks(4), Bitfield::new(4));
    // No origin: this node has no uplink, so it is no gateway.
    n.handle_peer_up(Duration::ZERO, 3, info(2, false), false);
    for p in (10..10 + site).filter(|&p| p != me) {
        let mut i = info(1, false);
        i.gateway = gateways.contains(&p);
        n.handle_peer_up(Duration::ZERO, p, i, false);
    }
    let holder = if me == 10 { 11 } else { 10 };
    n.handle_have_all(MS, holder, Bitfield::full(4));
    let (from, index) = requests(&drain(&mut n))[0];
    n.handle_chunk(30 * MS, from, index, Receipt::Verified);
    drain(&mut n);
    n.handle_timeout(200 * MS, |_, _| 0);
    drain(&mut n)
        .into_iter()
        .filter_map(|o| match o {
            Output::Gained { peer, .. } if peer >= 10 => Some(peer),
            _ => None,
        })
        .collect()
}

#[test]
fn a_large_site_hears_a_device_through_its_gateways_and_a_sample() {
    // A site of 10: everyone hears everyone.
    assert_eq!(site_heard(10, 10, &[]), (11..20).collect::<Vec<_>>());
    // A site of 100 (99 peers hear the site lane): the gateways and about
    // SITE_FANOUT others.
    let gateways = [20, 40, 60];
    let heard = site_heard(10, 100, &gateways);
    for g in gateways {
        assert!(heard.contains(&g), "gateway {g} hears every device");
    }
    let sampled = heard.len() - gateways.len();
    assert!(
        (SITE_FANOUT / 2..=SITE_FANOUT * 2).contains(&sampled),
        "{sampled} sampled peers"
    );
    // The draw is the pair's: a peer hears node 10 exactly when node 10
    // hears it.
    for p in 11..110 {
        if gateways.contains(&p) {
            continue;
        }
        let hears_10 = site_heard(p, 100, &gateways).contains(&10);
        assert_eq!(hears_10, heard.contains(&p), "pair (10, {p})");
    }
}

#[test]
fn who_hears_follows_roles_and_departures_between_flushes() {
    let mut n = Node::new(
        NodeConfig::new(Preset::Device { cross_site: true }, Some(SITE)),
        10,
        Duration::ZERO,
    );
    n.take_release(Duration::ZERO, chunks(4), Bitfield::new(4));
    for p in 11..110 {
        n.handle_peer_up(Duration::ZERO, p, info(1, false), false);
    }
    n.handle_have_all(MS, 11, Bitfield::full(4));
    let mut asked = requests(&drain(&mut n));
    // Gains one chunk, then the next site tick: who heard of it.
    let mut round = |n: &mut Node<u32>, tick: u32| -> Vec<u32> {
        let (from, index) = asked.remove(0);
        n.handle_chunk(
            (tick - 1) * 200 * MS + 30 * MS,
            from,
            index,
            Receipt::Verified,
        );
        n.handle_timeout(tick * 200 * MS, |_, _| 0);
        let out = drain(n);
        asked.extend(requests(&out));
        out.into_iter()
            .filter_map(|o| match o {
                Output::Gained { peer, .. } => Some(peer),
                _ => None,
            })
            .collect()
    };
    let first = round(&mut n, 1);
    let quiet = (12..110)
        .find(|p| !first.contains(p))
        .expect("a sample, not all");
    let heard = *first.iter().find(|&&p| p != 11).expect("someone hears");
    let role = Role {
        origin: false,
        uplink: true,
        gateway: true,
    };
    n.handle_peer_role(2 * MS, quiet, role);
    let mut expected = first.clone();
    expected.push(quiet);
    expected.sort_unstable();
    assert_eq!(round(&mut n, 2), expected, "{quiet} became a gateway");
    n.handle_peer_down(202 * MS, heard);
    expected.retain(|&p| p != heard);
    assert_eq!(round(&mut n, 3), expected, "{heard} left");
}

#[test]
fn a_duplicate_is_acked_too() {
    let mut n = device();
    n.handle_have_all(MS, 1, Bitfield::full(4));
    let (_, index) = requests(&drain(&mut n))[0];
    n.handle_chunk(30 * MS, 1, index, Receipt::Verified);
    drain(&mut n);
    n.handle_chunk(40 * MS, 2, index, Receipt::Verified);
    assert!(drain(&mut n).contains(&Output::Ack { peer: 2, index }));
}

#[test]
fn a_leaving_node_flushes_its_notices() {
    let mut n = device();
    n.handle_have_all(MS, 1, Bitfield::full(4));
    let (_, index) = requests(&drain(&mut n))[0];
    n.handle_chunk(30 * MS, 1, index, Receipt::Verified);
    drain(&mut n);
    n.flush_notices();
    let told = drain(&mut n)
        .iter()
        .filter(|o| matches!(o, Output::Gained { .. }))
        .count();
    assert_eq!(told, 2, "the site peer and the other site's device");
}

#[test]
fn a_rejected_chunk_is_not_acked() {
    let mut n = device();
    n.handle_have_all(MS, 1, Bitfield::full(4));
    let (_, index) = requests(&drain(&mut n))[0];
    n.handle_chunk(30 * MS, 1, index, Receipt::Rejected);
    let out = drain(&mut n);
    assert!(!out.iter().any(|o| matches!(o, Output::Ack { .. })));
    assert!(out.contains(&Output::Penalise { peer: 1 }));
}

#[test]
fn central_fetches_only_from_configured_peers() {
    let mut n = Node::new(
        NodeConfig::new(Preset::Central, Some(SITE)),
        0,
        Duration::ZERO,
    );
    n.take_release(Duration::ZERO, chunks(8), Bitfield::new(8));
    n.handle_peer_up(Duration::ZERO, 1, info(1, false), false);
    n.handle_have_all(Duration::ZERO, 1, Bitfield::full(8));
    assert!(
        requests(&drain(&mut n)).is_empty(),
        "a site peer is no source"
    );
    n.handle_peer_up(MS, 2, info(99, true), true);
    n.handle_have_all(MS, 2, Bitfield::full(8));
    let asked = requests(&drain(&mut n));
    assert_eq!(asked.len(), 2, "two requests ahead: {asked:?}");
    assert!(asked.iter().all(|&(p, _)| p == 2));
}

#[test]
fn a_seeder_fetches_nothing_and_says_it_is_an_origin() {
    let mut n = Node::new(NodeConfig::new(Preset::Seeder, None), 0, Duration::ZERO);
    n.take_release(Duration::ZERO, chunks(4), Bitfield::new(4));
    n.handle_peer_up(Duration::ZERO, 1, info(1, false), false);
    n.handle_have_all(Duration::ZERO, 1, Bitfield::full(4));
    assert!(requests(&drain(&mut n)).is_empty());
    assert!(n.role().origin);
}

#[test]
fn without_a_release_the_uplink_role_follows_origin_connections() {
    let mut n: Node<u32> = Node::new(
        NodeConfig::new(Preset::Device { cross_site: true }, Some(SITE)),
        0,
        Duration::ZERO,
    );
    n.handle_peer_up(Duration::ZERO, 1, info(1, false), false);
    assert!(drain(&mut n).is_empty());
    n.handle_peer_up(MS, 2, info(99, true), true);
    let out = drain(&mut n);
    let role = Role {
        origin: false,
        uplink: true,
        gateway: false,
    };
    assert!(out.contains(&Output::RoleChanged(role)));
    assert!(out.contains(&Output::Role { peer: 1, role }));
    assert!(out.contains(&Output::Role { peer: 2, role }));
    n.handle_peer_down(2 * MS, 2);
    assert!(drain(&mut n).contains(&Output::RoleChanged(Role::default())));
}

#[test]
fn out_of_range_notices_are_ignored() {
    let mut n = device();
    n.handle_gained(MS, 1, &[2, 4_000_000]);
    let asked = requests(&drain(&mut n));
    assert_eq!(asked, vec![(1, 2)]);
}

#[test]
fn other_sites_are_sought_only_while_an_origin_is_the_bottleneck() {
    let mut n = Node::new(
        NodeConfig::new(Preset::Device { cross_site: true }, Some(SITE)),
        0,
        Duration::ZERO,
    );
    assert!(!n.seeks_other_sites(MS), "no release yet");
    n.take_release(Duration::ZERO, chunks(4), Bitfield::new(4));
    assert!(n.seeks_other_sites(MS), "no origin in reach");
    n.handle_peer_up(MS, 2, info(99, true), true);
    n.handle_have_all(MS, 2, Bitfield::full(4));
    assert!(!n.seeks_other_sites(2 * MS), "the origin has room");
    // The origin is asked after the site's warm-up.
    let mut asked = requests(&drain(&mut n));
    while asked.is_empty() {
        let t = n.poll_timeout().expect("a deadline ahead");
        assert!(t < Duration::from_secs(10), "no request by {t:?}");
        n.handle_timeout(t, |_, _| 0);
        asked = requests(&drain(&mut n));
    }
    let &(peer, index) = asked.first().expect("a request");
    assert_eq!(peer, 2);
    let at = Duration::from_secs(10);
    assert!(!n.seeks_other_sites(at), "the origin still has room");
    n.handle_request_declined(at, 2, index, Duration::from_secs(1));
    assert!(n.seeks_other_sites(at), "the origin declined a chunk");
    assert!(n.seeks_other_sites(at + CROSS_SITE_HOLD - MS));
    assert!(!n.seeks_other_sites(at + CROSS_SITE_HOLD), "pressure over");
    n.handle_request_busy(at, 2, index, Some(Duration::from_secs(1)));
    assert!(
        !n.seeks_other_sites(at + CROSS_SITE_HOLD),
        "a short Busy hint is no bottleneck"
    );
}

#[test]
fn other_sites_are_not_sought_without_cross_site_sharing_or_once_complete() {
    for preset in [
        Preset::Device { cross_site: false },
        Preset::Flat,
        Preset::Central,
    ] {
        let mut n: Node<u32> = Node::new(NodeConfig::new(preset, Some(SITE)), 0, Duration::ZERO);
        n.take_release(Duration::ZERO, chunks(4), Bitfield::new(4));
        assert!(!n.seeks_other_sites(MS), "{preset:?}");
    }
    let mut n = device();
    n.take_release(MS, chunks(4), Bitfield::full(4));
    n.handle_peer_up(MS, 5, info(1, false), false);
    assert!(n.is_complete());
    assert!(!n.seeks_other_sites(2 * MS), "complete");
}

#[test]
fn an_abandoned_request_is_taken_back_from_its_peer() {
    let mut n = device();
    n.handle_have_all(MS, 1, Bitfield::full(4));
    let asked = requests(&drain(&mut n));
    let &(peer, index) = asked.first().expect("a request to the site peer");
    // No byte of it arrives: at its deadline it is abandoned, and the
    // node tells the peer so that a server still holding it drops it.
    let mut cancelled = Vec::new();
    let mut now = MS;
    while cancelled.is_empty() && now < Duration::from_secs(600) {
        now = n.poll_timeout().expect("a deadline is pending").max(now);
        n.handle_timeout(now, |_, _| 0);
        cancelled = drain(&mut n)
            .into_iter()
            .filter_map(|o| match o {
                Output::Cancel { peer, index } => Some((peer, index)),
                _ => None,
            })
            .collect();
    }
    assert!(cancelled.contains(&(peer, index)), "{cancelled:?}");
}

/// Node 10 of a site of 100 (`watch_site` as given), complete at `done`
/// with its chunks from peer 11; the outputs since.
fn completed_at_large_site(watch_site: bool) -> (Node<u32>, Duration, Vec<Output<u32>>) {
    let config = NodeConfig {
        watch_site,
        ..NodeConfig::new(Preset::Device { cross_site: true }, Some(SITE))
    };
    let mut n = Node::new(config, 10, Duration::ZERO);
    n.take_release(Duration::ZERO, chunks(4), Bitfield::new(4));
    for p in 11..110 {
        n.handle_peer_up(Duration::ZERO, p, info(1, false), false);
    }
    n.handle_have_all(MS, 11, Bitfield::full(4));
    let mut now = MS;
    let mut out = drain(&mut n);
    while !n.is_complete() {
        let asked = requests(&out);
        assert!(!asked.is_empty(), "asks peer 11 for the rest");
        now += 10 * MS;
        for (from, index) in asked {
            n.handle_chunk(now, from, index, Receipt::Verified);
        }
        out = drain(&mut n);
    }
    (n, now, out)
}

fn asked_have(out: &[Output<u32>]) -> Vec<u32> {
    out.iter()
        .filter_map(|o| match o {
            Output::AskHave { peer } => Some(*peer),
            _ => None,
        })
        .collect()
}

#[test]
fn a_one_shot_node_asks_its_site_until_every_peer_is_complete() {
    let (mut n, done, out) = completed_at_large_site(true);
    assert!(out.contains(&Output::Complete));
    // Peer 11 said it holds everything; the other 98 are asked at once.
    assert_eq!(asked_have(&out), (12..110).collect::<Vec<_>>());
    assert!(!n.swarm().expect("a release").site_complete());
    for p in 12..109 {
        n.handle_have_all(done + MS, p, Bitfield::full(4));
    }
    drain(&mut n);
    let again = done + SITE_ASK_EVERY;
    assert!(n.poll_timeout().is_some_and(|t| t <= again));
    n.handle_timeout(again, |_, _| 0);
    assert_eq!(
        asked_have(&drain(&mut n)),
        vec![109],
        "only the one not known"
    );
    n.handle_have_all(again + MS, 109, Bitfield::full(4));
    assert!(n.swarm().expect("a release").site_complete());
    n.handle_timeout(again + SITE_ASK_EVERY, |_, _| 0);
    assert!(asked_have(&drain(&mut n)).is_empty(), "the site is done");
}

#[test]
fn a_device_that_stays_asks_nobody() {
    let (mut n, done, out) = completed_at_large_site(false);
    assert!(out.contains(&Output::Complete));
    assert!(asked_have(&out).is_empty());
    n.handle_timeout(done + SITE_ASK_EVERY, |_, _| 0);
    assert!(asked_have(&drain(&mut n)).is_empty());
}
