//! The upload scheduler against the behaviours the fleet relies on.

use super::*;

const MS: fn(u64) -> Duration = Duration::from_millis;
const MIB: u64 = 1 << 20;

fn cfg() -> AdmissionConfig {
    AdmissionConfig {
        max_active: 2,
        min_active: 2,
        max_active_site: 2,
        max_queue: Duration::from_secs(4),
        initial_waiting: 2,
        per_peer: 8,
        spread: false,
    }
}

type A = Admission<u32, u32>;

/// A server on a site of its own: requesters that name no site are from
/// elsewhere (its lane across the uplink).
fn server(config: AdmissionConfig) -> A {
    A::new(config, Some(SiteId(99)))
}

#[test]
fn sends_a_few_at_once_queues_the_next_and_refuses_the_rest() {
    let mut a = server(cfg());
    assert_eq!(a.offer(MS(0), 1, 1, None, 0, MIB), Verdict::Send);
    assert_eq!(a.offer(MS(0), 2, 2, None, 1, MIB), Verdict::Send);
    // Unmeasured: `initial_waiting` wait.
    assert_eq!(a.offer(MS(0), 3, 3, None, 2, MIB), Verdict::Wait);
    assert_eq!(a.offer(MS(0), 4, 4, None, 3, MIB), Verdict::Wait);
    assert!(matches!(
        a.offer(MS(0), 5, 5, None, 4, MIB),
        Verdict::Busy { .. }
    ));
    assert_eq!(a.poll_start(MS(0)), None, "both slots taken");
    // Two MiB in 2 s: 1 MiB/s. The waiting ones start in order.
    a.finished(MS(2000), 1, MIB);
    a.finished(MS(2000), 2, MIB);
    assert_eq!(a.poll_start(MS(2000)), Some(Start::Send(3)));
    assert_eq!(a.poll_start(MS(2000)), Some(Start::Send(4)));
    assert_eq!(a.poll_start(MS(2000)), None);
    // Measured: 2 MiB sending, 4 s of queue at 1 MiB/s leaves room for 2 more.
    assert_eq!(a.offer(MS(2000), 6, 6, None, 5, MIB), Verdict::Wait);
    assert_eq!(a.offer(MS(2000), 7, 7, None, 6, MIB), Verdict::Wait);
    let Verdict::Busy { retry_after } = a.offer(MS(2000), 8, 8, None, 7, MIB) else {
        panic!("over the bound");
    };
    // 5 MiB queued at 1 MiB/s against a 4 s bound: about a second.
    assert!(
        (MS(900)..MS(1100)).contains(&retry_after),
        "{retry_after:?}"
    );
    assert_eq!(a.stats().refused, 2);
    assert_eq!(a.stats().queued, 4);
}

#[test]
fn a_waiting_request_whose_requester_left_never_starts() {
    let mut a = server(cfg());
    for t in 1..=3 {
        a.offer(MS(0), t, t, None, t, 10);
    }
    a.finished(MS(1), 3, 0);
    a.finished(MS(2), 1, 10);
    assert_eq!(a.poll_start(MS(2)), None);
    assert_eq!(a.len(), 1);
}

#[test]
fn the_own_site_has_its_own_lane_and_no_site_refusal() {
    let home = Some(SiteId(1));
    let mut a = A::new(cfg(), home);
    // Two members of the home site may take the same chunk at once.
    assert_eq!(a.offer(MS(0), 1, 1, home, 7, MIB), Verdict::Send);
    assert_eq!(a.offer(MS(0), 2, 2, home, 7, MIB), Verdict::Send);
    assert_eq!(a.offer(MS(0), 3, 3, home, 8, MIB), Verdict::Wait);
    // The uplink lane is idle.
    assert_eq!(a.offer(MS(0), 4, 4, Some(SiteId(2)), 7, MIB), Verdict::Send);
}

#[test]
fn a_site_gets_each_chunk_once_at_a_time() {
    let mut a = server(cfg());
    let (x, y) = (Some(SiteId(1)), Some(SiteId(2)));
    assert_eq!(a.offer(MS(0), 1, 1, x, 7, 1000), Verdict::Send);
    assert!(matches!(
        a.offer(MS(0), 2, 2, x, 7, 1000),
        Verdict::Declined { .. }
    ));
    assert_eq!(a.offer(MS(0), 3, 3, y, 7, 1000), Verdict::Send);
    a.finished(MS(10), 1, 1000);
    assert_eq!(a.offer(MS(10), 4, 2, x, 7, 1000), Verdict::Send);
    assert_eq!(a.stats().declined_same_site, 1);
}

#[test]
fn per_peer_cap_holds() {
    let wide = AdmissionConfig {
        max_active: 8,
        min_active: 8,
        per_peer: 4,
        ..cfg()
    };
    let mut a = server(wide);
    for i in 0..4 {
        assert_eq!(a.offer(MS(0), i, 1, None, i, 10), Verdict::Send);
    }
    assert!(matches!(
        a.offer(MS(0), 9, 1, None, 9, 10),
        Verdict::Busy { .. }
    ));
    assert_eq!(a.offer(MS(0), 10, 2, None, 9, 10), Verdict::Send);
}

/// A super-seeding server of `slots` slots serving a release of 5 chunks,
/// its rate measured (1 MiB/s) over eight responses of chunk 4 to site 9,
/// sent again and again while it was not the bottleneck; 8 s in.
fn measured_spreading_server(slots: usize) -> A {
    let cfg = AdmissionConfig {
        spread: true,
        max_active: slots,
        min_active: slots,
        ..cfg()
    };
    let mut a = server(cfg);
    a.new_release(5);
    for t in 0..8u32 {
        let at = MS(1000 * u64::from(t));
        assert_eq!(
            a.offer(at, 100 + t, 1, Some(SiteId(9)), 4, MIB),
            Verdict::Send
        );
        a.finished(at + MS(1000), 100 + t, MIB);
    }
    a
}

#[test]
fn a_spreading_server_declines_what_it_sent_until_the_round_is_done() {
    let mut a = measured_spreading_server(1);
    // A backlog and three seconds of work queued: it is the bottleneck. A
    // chunk that went out already is declined, one that did not waits.
    assert_eq!(
        a.offer(MS(8000), 2, 2, Some(SiteId(2)), 1, MIB),
        Verdict::Send
    );
    assert_eq!(
        a.offer(MS(8000), 3, 3, Some(SiteId(2)), 2, MIB),
        Verdict::Wait
    );
    assert!(matches!(
        a.offer(MS(8000), 4, 4, Some(SiteId(3)), 4, MIB),
        Verdict::Declined { .. }
    ));
    // With no backlog, it serves anyone.
    a.finished(MS(9000), 2, MIB);
    assert_eq!(a.poll_start(MS(9000)), Some(Start::Send(3)));
    a.finished(MS(10_000), 3, MIB);
    assert_eq!(
        a.offer(MS(10_000), 5, 4, Some(SiteId(3)), 4, MIB),
        Verdict::Send
    );
    assert_eq!(a.stats().declined_spread, 1);
}

#[test]
fn a_server_whose_sites_ask_past_their_budgets_spreads_with_slots_to_spare() {
    // Four slots: with two sites held to their budgets (each a second of
    // its share), the slots never fill, yet the sites want more than the
    // server sends: it is the bottleneck and super-seeds.
    let mut a = measured_spreading_server(4);
    let (x, y) = (Some(SiteId(1)), Some(SiteId(2)));
    assert_eq!(a.offer(MS(8000), 1, 2, x, 1, MIB), Verdict::Send);
    assert_eq!(a.offer(MS(8000), 2, 2, x, 2, MIB), Verdict::Send);
    // Before any site is over its budget, a chunk sent already is served.
    assert_eq!(a.offer(MS(8000), 3, 3, y, 4, MIB), Verdict::Send);
    assert!(matches!(
        a.offer(MS(8100), 4, 2, x, 3, MIB),
        Verdict::Busy { .. }
    ));
    // Two of four slots free and nothing waiting, but site x asked past
    // its budget: chunk 1, out once already, is declined for site y.
    assert!(matches!(
        a.offer(MS(8200), 5, 3, y, 1, MIB),
        Verdict::Declined { .. }
    ));
    assert_eq!(a.stats().declined_spread, 1);
    // A second after the last ask past a budget, with no backlog, the
    // server has room again and serves anyone.
    for t in 1..=3 {
        a.finished(MS(9000), t, MIB);
    }
    assert_eq!(a.offer(MS(9200), 6, 3, y, 1, MIB), Verdict::Send);
}

#[test]
fn an_origin_keeps_its_measured_rate_in_flight() {
    let cfg = AdmissionConfig {
        max_active: 64,
        min_active: 4,
        ..cfg()
    };
    let mut a = server(cfg);
    // Four slots before anything is measured.
    for t in 0..6 {
        a.offer(MS(0), t, t, None, t, MIB);
    }
    assert_eq!(a.poll_start(MS(0)), None);
    // 4 MiB delivered in half a second: 8 MiB/s, sixteen 1 MiB slots (two
    // seconds of it).
    for t in 0..4 {
        a.finished(MS(500), t, MIB);
    }
    let started: Vec<Start<u32>> = std::iter::from_fn(|| a.poll_start(MS(500))).collect();
    assert_eq!(started, vec![Start::Send(4), Start::Send(5)]);
    for t in 10..30 {
        a.offer(MS(500), t, t, None, t, MIB);
    }
    let active = 2 + 20 - a.waiting_away.len();
    assert_eq!(active, 16, "two seconds of 8 MiB/s in flight");
}

#[test]
fn a_waiting_request_is_declined_when_its_chunk_went_out_meanwhile() {
    let cfg = AdmissionConfig {
        spread: true,
        max_active: 1,
        min_active: 1,
        ..cfg()
    };
    let mut a = server(cfg);
    a.new_release(6);
    // Measured over eight responses of chunk 5: 1 MiB/s.
    for t in 0..8u32 {
        let at = MS(1000 * u64::from(t));
        assert_eq!(
            a.offer(at, 100 + t, 1, Some(SiteId(9)), 5, MIB),
            Verdict::Send
        );
        a.finished(at + MS(1000), 100 + t, MIB);
    }
    // Chunk 2 goes out, and two sites wait for chunk 3.
    assert_eq!(
        a.offer(MS(8000), 3, 3, Some(SiteId(2)), 2, MIB),
        Verdict::Send
    );
    assert_eq!(
        a.offer(MS(8000), 4, 4, Some(SiteId(3)), 3, MIB),
        Verdict::Wait
    );
    assert_eq!(
        a.offer(MS(8000), 5, 5, Some(SiteId(4)), 3, MIB),
        Verdict::Wait
    );
    a.finished(MS(9000), 3, MIB);
    assert_eq!(a.poll_start(MS(9000)), Some(Start::Send(4)));
    // Chunk 3 is out once, and the server still has a backlog: the second
    // site's wait ends in a decline (others have the chunk).
    assert_eq!(
        a.offer(MS(9000), 6, 6, Some(SiteId(5)), 4, MIB),
        Verdict::Wait
    );
    a.finished(MS(10_000), 4, MIB);
    assert!(matches!(
        a.poll_start(MS(10_000)),
        Some(Start::Decline(5, _))
    ));
}

#[test]
fn a_site_gets_what_its_own_downlink_takes_and_no_more() {
    let cfg = AdmissionConfig {
        max_active: 64,
        min_active: 64,
        ..cfg()
    };
    let mut a = server(cfg);
    let x = Some(SiteId(1));
    // Unknown: two at once.
    assert_eq!(a.offer(MS(0), 1, 1, x, 1, MIB), Verdict::Send);
    assert_eq!(a.offer(MS(0), 2, 2, x, 2, MIB), Verdict::Send);
    let Verdict::Busy { retry_after } = a.offer(MS(0), 3, 3, x, 3, MIB) else {
        panic!("over the site's budget");
    };
    assert!(
        retry_after <= Duration::from_secs(1),
        "a short hint: {retry_after:?}"
    );
    // Another site is not held back by it.
    assert_eq!(a.offer(MS(0), 4, 4, Some(SiteId(2)), 3, MIB), Verdict::Send);
    // The site takes 2 MiB a second: two at once stays its budget.
    a.finished(MS(1000), 1, MIB);
    a.finished(MS(1000), 2, MIB);
    for t in 5..7 {
        assert_eq!(a.offer(MS(1000), t, t, x, t, MIB), Verdict::Send);
    }
    assert!(matches!(
        a.offer(MS(1000), 7, 7, x, 7, MIB),
        Verdict::Busy { .. }
    ));
}

#[test]
fn unsited_servers_and_requesters_share_the_site_lane() {
    let mut a = A::new(cfg(), None);
    // Two site slots (the lane across the uplink also has two).
    assert_eq!(a.offer(MS(0), 1, 1, None, 1, MIB), Verdict::Send);
    assert_eq!(a.offer(MS(0), 2, 2, None, 2, MIB), Verdict::Send);
    assert_eq!(a.offer(MS(0), 3, 3, Some(SiteId(1)), 3, MIB), Verdict::Send);
    assert_eq!(a.offer(MS(0), 4, 4, Some(SiteId(2)), 4, MIB), Verdict::Send);
    assert_eq!(a.offer(MS(0), 5, 5, None, 5, MIB), Verdict::Wait);
}

#[test]
fn a_peer_that_holds_its_slots_does_not_starve_the_others() {
    let mut a = server(AdmissionConfig {
        max_active_site: 4,
        initial_waiting: 16,
        ..cfg()
    });
    let site = Some(SiteId(99));
    // Peer 1 takes every slot and queues more; peer 2 queues behind it.
    for t in 0..4 {
        assert_eq!(a.offer(MS(0), t, 1, site, t, MIB), Verdict::Send);
    }
    for t in 4..8 {
        assert_eq!(a.offer(MS(0), t, 1, site, t, MIB), Verdict::Wait);
    }
    assert_eq!(a.offer(MS(0), 20, 2, site, 20, MIB), Verdict::Wait);
    assert_eq!(a.offer(MS(0), 21, 2, site, 21, MIB), Verdict::Wait);
    assert_eq!(a.offer(MS(0), 22, 2, site, 22, MIB), Verdict::Wait);
    // Peer 1 never finishes what it got; one of its slots is given up.
    a.finished(MS(30_000), 0, 0);
    assert_eq!(
        a.poll_start(MS(30_000)),
        Some(Start::Send(20)),
        "peer 2 first"
    );
    a.finished(MS(30_000), 1, 0);
    assert_eq!(a.poll_start(MS(30_000)), Some(Start::Send(21)));
    // Peer 2 has two under way: the next slot goes back to the queue's order.
    a.finished(MS(30_000), 2, 0);
    assert_eq!(a.poll_start(MS(30_000)), Some(Start::Send(4)));
    // Peer 2's answered chunk frees a slot that goes to peer 2 again.
    a.finished(MS(30_100), 20, MIB);
    assert_eq!(a.poll_start(MS(30_100)), Some(Start::Send(22)));
}
