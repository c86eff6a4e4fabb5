//! The behaviour's serving limits, driven directly (request ids are `u32`,
//! a response channel is the request's own number, so each answer names
//! the request it went to).

use super::*;

const MS: fn(u64) -> Duration = Duration::from_millis;
const LEN: u32 = 1 << 20;

/// A server on a site of its own (requesters that name no site come from
/// elsewhere: its lane across the uplink): two sent at once, two held.
fn server() -> Serving<u32, u32> {
    Serving::new(
        AdmissionConfig {
            max_active: 2,
            min_active: 2,
            max_active_site: 2,
            max_queue: Duration::from_secs(4),
            initial_waiting: 2,
            per_peer: 8,
            spread: false,
        },
        Some(SiteId(99)),
    )
}

fn manifest() -> ManifestId {
    ManifestId([7; 32])
}

/// Offers request `id` (chunk `id`) of `peer` at `now`.
fn offer(s: &mut Serving<u32, u32>, now: Duration, id: u32, peer: PeerId) -> Offered<u32, u32> {
    s.offer(now, id, peer, None, manifest(), id, LEN, id)
}

/// Offers and, if admitted, starts sending at once; returns the admitted id.
fn send(s: &mut Serving<u32, u32>, now: Duration, id: u32, peer: PeerId) -> u32 {
    match offer(s, now, id, peer) {
        Offered::Send(a) => {
            s.sending(a.id, a.peer, a.index, LEN, Counter::default());
            a.id
        }
        other => panic!("request {id} not admitted: {other:?}"),
    }
}

/// Takes both slots (1 from `a`, 2 from `b`) and the queue (3 from `a`,
/// 4 from `b`, held) at time 0; the two peers.
fn fill(s: &mut Serving<u32, u32>) -> (PeerId, PeerId) {
    let (a, b) = (PeerId::random(), PeerId::random());
    send(s, MS(0), 1, a);
    send(s, MS(0), 2, b);
    assert!(matches!(offer(s, MS(0), 3, a), Offered::Held));
    assert!(matches!(offer(s, MS(0), 4, b), Offered::Held));
    (a, b)
}

#[test]
fn past_the_slots_and_the_queue_a_request_hears_busy() {
    let mut s = server();
    let (a, _) = fill(&mut s);
    match offer(&mut s, MS(0), 5, a) {
        Offered::Refused(channel, Response::Busy { retry_ms }) => {
            assert_eq!(channel, 5, "the answer goes to the refused request");
            assert!(retry_ms > 0, "a Busy carries a hint");
        }
        other => panic!("expected Busy, got {other:?}"),
    }
    assert!(s.poll_start(MS(0)).is_none(), "both slots are taken");
}

#[test]
fn an_announcement_frees_the_slot_for_the_next_held_request() {
    let mut s = server();
    let (a, b) = (PeerId::random(), PeerId::random());
    send(&mut s, MS(0), 1, a);
    send(&mut s, MS(0), 2, b);
    assert!(matches!(offer(&mut s, MS(0), 3, b), Offered::Held));
    // Written to the end: the slot still waits for the announcement.
    s.ended(MS(100), 1, true);
    assert!(s.poll_start(MS(100)).is_none());
    assert!(s.announced(MS(1000), &a, &[1]).is_empty());
    match s.poll_start(MS(1000)) {
        Some(Offered::Send(next)) => {
            assert_eq!((next.id, next.peer, next.index), (3, b, 3));
        }
        other => panic!("the held request should start: {other:?}"),
    }
}

#[test]
fn a_held_request_for_a_chunk_its_peer_announced_is_moot() {
    let mut s = server();
    let (a, b) = (PeerId::random(), PeerId::random());
    send(&mut s, MS(0), 1, a);
    send(&mut s, MS(0), 2, a);
    assert!(matches!(offer(&mut s, MS(0), 3, b), Offered::Held));
    // `b` got chunk 3 elsewhere: its held request is returned to be declined.
    assert_eq!(s.announced(MS(10), &b, &[3]), vec![3]);
    assert!(s.poll_start(MS(10)).is_none());
}

#[test]
fn a_peer_that_lets_responses_expire_unannounced_hears_busy() {
    let mut s = server();
    let (a, b) = (PeerId::random(), PeerId::random());
    send(&mut s, MS(0), 1, a);
    send(&mut s, MS(0), 2, a);
    assert!(matches!(offer(&mut s, MS(0), 3, a), Offered::Held));
    assert!(matches!(offer(&mut s, MS(0), 4, b), Offered::Held));
    s.ended(MS(100), 1, true);
    s.ended(MS(100), 2, true);
    // Not yet: the acknowledgement may still come.
    assert!(s.expire(MS(100) + ACK_WAIT - MS(1)).is_empty());
    let now = MS(100) + ACK_WAIT;
    let busy = s.expire(now);
    assert_eq!(
        busy,
        vec![(
            3,
            Response::Busy {
                retry_ms: ms(SHUN_FOR)
            }
        )],
        "the shunned peer's held request is refused, the other's is not"
    );
    match offer(&mut s, now, 5, a) {
        Offered::Refused(5, Response::Busy { retry_ms }) => {
            assert!(retry_ms > 0 && retry_ms <= ms(SHUN_FOR), "{retry_ms}");
        }
        other => panic!("a shunned peer is served nothing: {other:?}"),
    }
    // The freed slots go to the other peer.
    assert!(matches!(s.poll_start(now), Some(Offered::Send(h)) if h.peer == b));
    // Its shun over, the peer is served again.
    let later = now + SHUN_FOR;
    s.expire(later);
    assert!(matches!(offer(&mut s, later, 6, a), Offered::Send(_)));
}

#[test]
fn a_peer_that_leaves_frees_what_it_held_and_what_was_under_way() {
    let mut s = server();
    let (a, b) = (PeerId::random(), PeerId::random());
    send(&mut s, MS(0), 1, a);
    send(&mut s, MS(0), 2, a);
    assert!(matches!(offer(&mut s, MS(0), 3, a), Offered::Held));
    assert!(matches!(offer(&mut s, MS(0), 4, b), Offered::Held));
    s.forget(MS(500), &a);
    match s.poll_start(MS(500)) {
        Some(Offered::Send(h)) => assert_eq!((h.id, h.peer), (4, b)),
        other => panic!("the other peer's request starts: {other:?}"),
    }
    assert!(
        s.poll_start(MS(500)).is_none(),
        "the gone peer's is never started"
    );
}

#[test]
fn a_request_answered_without_its_chunk_gives_its_slot_back() {
    let mut s = server();
    let (a, b) = (PeerId::random(), PeerId::random());
    let Offered::Send(first) = offer(&mut s, MS(0), 1, a) else {
        panic!("admitted");
    };
    send(&mut s, MS(0), 2, a);
    assert!(matches!(offer(&mut s, MS(0), 3, b), Offered::Held));
    s.not_sent(MS(5), first.id);
    assert!(matches!(s.poll_start(MS(5)), Some(Offered::Send(h)) if h.id == 3));
}

#[test]
fn a_held_request_taken_back_is_never_sent_and_makes_room() {
    let mut s = server();
    let (a, _) = fill(&mut s);
    // The queue is full: a fifth waits for nothing but Busy.
    assert!(matches!(offer(&mut s, MS(0), 5, a), Offered::Refused(..)));
    assert_eq!(
        s.cancel(MS(10), 3),
        Some(3),
        "held: dropped, its channel back"
    );
    assert_eq!(s.cancel(MS(10), 3), None, "taken back once");
    assert_eq!(s.cancel(MS(10), 1), None, "one under way goes on");
    // Its place in the queue is free again...
    assert!(matches!(offer(&mut s, MS(10), 6, a), Offered::Held));
    // ...and when a slot frees, the next held request goes, never 3.
    s.ended(MS(20), 1, false);
    match s.poll_start(MS(20)) {
        Some(Offered::Send(x)) => assert_eq!(x.id, 4),
        other => panic!("expected request 4 to start, got {other:?}"),
    }
}
