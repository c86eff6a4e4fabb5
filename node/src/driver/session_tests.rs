//! Sessions over the real protocol (libp2p's memory transport with Noise
//! and Yamux, in one process): a fetch goes on them, a node without them
//! is still served and still fetches, garbage on a session closes only
//! that session, and a request on a session that gets no answer fails.

use std::sync::Arc;
use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::identity::Keypair;
use libp2p::request_response::OutboundFailure;
use libp2p::swarm::SwarmEvent;
use pollen_core::manifest::TrustPolicy;
use pollen_core::wire::{Request, Response, MAX_REQUEST, SESSION_PREAMBLE};
use tokio::sync::oneshot;

use super::tests::{config, seeded_store, seeded_store_chunked, start_seeder_with};
use super::*;
use crate::net::behaviour::build_swarm;
use crate::net::session::SESSION;
use crate::net::{pollen, Advertise, BehaviourEvent};
use crate::store::tests::artifact;
use crate::store::{MemStore, RocksStore};

const DEADLINE: Duration = Duration::from_secs(60);

fn limits(sessions: bool) -> Limits {
    Limits {
        sessions,
        ..Limits::default()
    }
}

/// Starts a seeder with or without sessions; its address and its stop.
async fn seeder(store: Arc<RocksStore>, sessions: bool) -> (Multiaddr, oneshot::Sender<()>) {
    let mut cfg = config(Mode::Seed, None, vec![]);
    cfg.limits = limits(sessions);
    start_seeder_with(store, cfg).await
}

/// A device with or without sessions fetches from `addr`; its report.
async fn fetch(addr: Multiaddr, trust: TrustPolicy, sessions: bool, data: &[u8]) -> Report {
    fetch_with(addr, trust, limits(sessions), data).await.0
}

/// A device with `limits` fetches from `addr`; its report and the
/// release's manifest.
async fn fetch_with(
    addr: Multiaddr,
    trust: TrustPolicy,
    limits: Limits,
    data: &[u8],
) -> (Report, pollen_core::manifest::SignedManifest) {
    let store = Arc::new(MemStore::default());
    let mut cfg = config(Mode::Fetch, Some(trust), vec![addr]);
    cfg.limits = limits;
    let device = Driver::new(store.clone(), cfg, None).expect("device");
    let report = tokio::time::timeout(DEADLINE, device.run(std::future::pending()))
        .await
        .expect("the fetch completes in time")
        .expect("the driver runs");
    assert!(report.complete, "{report:?}");
    assert_eq!(report.chunks_rejected, 0);
    let id = store.manifest_ids().expect("ids")[0];
    let bytes = store.get_manifest(&id).expect("get").expect("held");
    let m = pollen_core::manifest::SignedManifest::decode(&bytes).expect("decode");
    let mut out = Vec::new();
    crate::store::reassemble_to(store.as_ref(), m.manifest(), &mut out).expect("reassemble");
    assert_eq!(out, data, "the device holds the release byte for byte");
    (report, m)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_goes_on_sessions_and_nodes_without_them_still_deliver() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = artifact(1_500_000);
    let (store, key) = seeded_store(&tmp.path().join("seeder"), &data);
    let trust = TrustPolicy::single(key.public());
    let (addr, stop) = seeder(store, true).await;

    // Both speak sessions: after the first few, requests go on one.
    let both = fetch(addr.clone(), trust.clone(), true, &data).await;
    assert!(
        both.requests_on_sessions >= both.chunks_fetched / 2,
        "{both:?}"
    );
    // A device from before sessions is served the old way.
    let old_device = fetch(addr, trust.clone(), false, &data).await;
    assert_eq!(old_device.requests_on_sessions, 0, "{old_device:?}");
    let _ = stop.send(());

    // A seeder from before sessions refuses them: the device asks it the
    // old way.
    let old_tmp = tempfile::tempdir().expect("tempdir");
    let (store, _) = seeded_store(old_tmp.path(), &data);
    let (addr, stop) = seeder(store, false).await;
    let old_seeder = fetch(addr, trust, true, &data).await;
    assert_eq!(old_seeder.requests_on_sessions, 0, "{old_seeder:?}");
    let _ = stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_go_in_pieces_between_nodes_that_take_them_and_whole_to_older_ones() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // Chunks of 64 KiB to 1 MiB: most are more than one piece.
    let data = artifact(1_500_000);
    let params = pollen_core::chunk::ChunkParams::DEFAULT;
    let (store, key) = seeded_store_chunked(&tmp.path().join("seeder"), &data, params);
    let trust = TrustPolicy::single(key.public());
    let limits = |sessions, pieces| Limits {
        sessions,
        pieces,
        ..Limits::default()
    };
    let seeder = |store, limits| {
        let mut cfg = config(Mode::Seed, None, vec![]);
        cfg.limits = limits;
        start_seeder_with(store, cfg)
    };
    let fetch = |addr: Multiaddr, limits: Limits| {
        let (trust, data) = (trust.clone(), data.clone());
        async move {
            let (report, m) = fetch_with(addr, trust, limits, &data).await;
            let mut ids: Vec<_> = m
                .manifest()
                .chunks
                .iter()
                .filter(|c| c.len > pollen_core::chunk::PIECE_LEN)
                .map(|c| c.id)
                .collect();
            ids.sort();
            ids.dedup();
            (report, ids.len() as u64)
        }
    };
    let (addr, stop) = seeder(store, limits(true, true)).await;
    for sessions in [true, false] {
        // Both take pieces: every chunk of more than one piece comes so.
        let (both, large) = fetch(addr.clone(), limits(sessions, true)).await;
        assert!(large > 0);
        assert_eq!(
            both.chunks_in_pieces, large,
            "sessions {sessions}: {both:?}"
        );
        // A device from before pieces is sent whole chunks.
        let (old, _) = fetch(addr.clone(), limits(sessions, false)).await;
        assert_eq!(old.chunks_in_pieces, 0, "{old:?}");
    }
    let _ = stop.send(());
    // A seeder from before pieces: the device takes whole chunks from it.
    let old_tmp = tempfile::tempdir().expect("tempdir");
    let (store, _) = seeded_store_chunked(old_tmp.path(), &data, params);
    let (addr, stop) = seeder(store, limits(true, false)).await;
    let (new, _) = fetch(addr, limits(true, true)).await;
    assert_eq!(new.chunks_in_pieces, 0, "{new:?}");
    assert!(new.requests_on_sessions > 0, "{new:?}");
    let _ = stop.send(());
}

/// A peer's swarm over the memory transport, with or without sessions.
fn peer(sessions: bool) -> libp2p::Swarm<crate::net::Behaviour> {
    build_swarm(
        Keypair::generate_ed25519(),
        false,
        &limits(sessions),
        Transport::Memory,
        Advertise::Listen,
    )
    .expect("swarm")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_a_session_closes_it_and_the_node_serves_on() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = artifact(300_000);
    let (store, key) = seeded_store(&tmp.path().join("seeder"), &data);
    let (addr, stop) = seeder(store, true).await;

    let mut attacker = peer(true);
    let mut control = attacker.behaviour().stream.new_control();
    let target = connect(&mut attacker, addr.clone()).await;
    let driving = tokio::spawn(async move {
        loop {
            attacker.select_next_some().await;
        }
    });

    let hi = &SESSION_PREAMBLE[..];
    for garbage in [
        // Not the preamble.
        b"GET / HTTP/1.1\r\n".to_vec(),
        // A tag, then a length over the request cap.
        [hi, &[0, 0, 0, 1], &((MAX_REQUEST + 1) as u32).to_be_bytes()].concat(),
        // A tag, then a frame that is no request.
        [hi, &[0, 0, 0, 2], &[0, 0, 0, 3], &[0xff, 0xff, 0xff]].concat(),
    ] {
        let mut stream = control.open_stream(target, SESSION).await.expect("open");
        stream.write_all(&garbage).await.expect("write");
        stream.flush().await.expect("flush");
        // The node answers nothing (past echoing a preamble) and closes
        // the session.
        let mut rest = Vec::new();
        let read = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut rest))
            .await
            .expect("the node closes the session");
        assert!(rest.is_empty() || rest == hi, "{read:?} {rest:?}");
    }
    driving.abort();

    // And serves the next device as before.
    let report = fetch(addr, TrustPolicy::single(key.public()), true, &data).await;
    assert!(report.requests_on_sessions > 0, "{report:?}");
    let _ = stop.send(());
}

/// Dials `addr` from `swarm`, driving it until connected; the peer's id.
async fn connect(swarm: &mut libp2p::Swarm<crate::net::Behaviour>, addr: Multiaddr) -> PeerId {
    swarm.dial(addr).expect("dial");
    tokio::time::timeout(DEADLINE, async {
        loop {
            if let SwarmEvent::ConnectionEstablished { peer_id, .. } =
                swarm.select_next_some().await
            {
                return peer_id;
            }
        }
    })
    .await
    .expect("connected")
}

/// Starts `server` listening on the memory transport; its address.
async fn listen(server: &mut libp2p::Swarm<crate::net::Behaviour>) -> Multiaddr {
    server
        .listen_on("/memory/0".parse().expect("addr"))
        .expect("listen");
    loop {
        if let SwarmEvent::NewListenAddr { address, .. } = server.select_next_some().await {
            return address;
        }
    }
}

/// A server without sessions of its own whose session streams the test
/// takes (`IncomingStreams`), listening; and a client with sessions
/// dialing it.
async fn server_and_client() -> (
    libp2p::Swarm<crate::net::Behaviour>,
    libp2p_stream::IncomingStreams,
    libp2p::Swarm<crate::net::Behaviour>,
) {
    let mut server = peer(false);
    let incoming = server
        .behaviour()
        .stream
        .new_control()
        .accept(SESSION)
        .expect("accept");
    let addr = listen(&mut server).await;
    let mut client = peer(true);
    client.dial(addr).expect("dial");
    (server, incoming, client)
}

/// Echoes a session's preamble, as a node that speaks sessions does.
async fn echo_preamble(stream: &mut libp2p::Stream) {
    let mut hi = [0u8; SESSION_PREAMBLE.len()];
    stream.read_exact(&mut hi).await.expect("preamble");
    stream.write_all(&hi).await.expect("echo");
    stream.flush().await.expect("flush");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_on_a_session_without_an_answer_fails_at_its_deadline() {
    // A server that takes sessions and never answers on them.
    let (mut server, mut incoming, mut client) = server_and_client().await;
    let server_id = *server.local_peer_id();

    let failed = tokio::time::timeout(DEADLINE, async {
        let mut held = Vec::new();
        let mut on_session = false;
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        loop {
            tokio::select! {
                _ = server.select_next_some() => {}
                Some((_, mut stream)) = incoming.next() => {
                    // It speaks sessions: echoes the preamble, then nothing.
                    echo_preamble(&mut stream).await;
                    held.push(stream);
                }
                _ = tick.tick(), if !on_session => {
                    let p = &mut client.behaviour_mut().pollen;
                    if !p.has_session(&server_id) {
                        continue;
                    }
                    let before = p.in_flight();
                    on_session = p.send(Duration::ZERO, &server_id, Request::GetPeers, pollen::Pending::Peers);
                    assert!(on_session, "the request goes on the open session");
                    assert_eq!(p.in_flight(), before + 1);
                    // Nothing is overdue before its deadline; at it, it fails.
                    p.expire_requests(pollen_core::node::STREAM_TIMEOUT - Duration::from_millis(1));
                    assert_eq!(p.in_flight(), before + 1);
                    p.expire_requests(pollen_core::node::STREAM_TIMEOUT);
                    assert_eq!(p.in_flight(), before);
                }
                e = client.select_next_some() => match e {
                    SwarmEvent::ConnectionEstablished { .. } => {
                        // The first request opens the session and goes the
                        // old way (unanswered there too; told apart by its
                        // purpose).
                        let p = &mut client.behaviour_mut().pollen;
                        assert!(!p.send(Duration::ZERO, &server_id, Request::GetPeers, pollen::Pending::Manifest));
                    }
                    SwarmEvent::Behaviour(BehaviourEvent::Pollen(pollen::Event::Failed {
                        error, pending: pollen::Pending::Peers, ..
                    })) if on_session => return error,
                    _ => {}
                },
            }
        }
    })
    .await
    .expect("the overdue request fails");
    assert!(matches!(failed, OutboundFailure::Timeout), "{failed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_cut_off_by_a_broken_session_are_asked_again_the_old_way() {
    // A server that answers on streams, and takes a session only to
    // break it once a request arrives on it.
    let (mut server, mut incoming, mut client) = server_and_client().await;
    let server_id = *server.local_peer_id();

    let answered = tokio::time::timeout(DEADLINE, async {
        let mut on_session = false;
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        loop {
            tokio::select! {
                e = server.select_next_some() => {
                    if let SwarmEvent::Behaviour(BehaviourEvent::Pollen(pollen::Event::Request {
                        channel, ..
                    })) = e {
                        server.behaviour_mut().pollen.respond(channel, Response::Peers(Vec::new()));
                    }
                }
                Some((_, mut stream)) = incoming.next() => {
                    echo_preamble(&mut stream).await;
                    tokio::spawn(async move {
                        // The tag and the length of the first request, then gone.
                        let mut head = [0u8; 8];
                        let _ = stream.read_exact(&mut head).await;
                        drop(stream);
                    });
                }
                _ = tick.tick(), if !on_session => {
                    let p = &mut client.behaviour_mut().pollen;
                    if p.has_session(&server_id) {
                        on_session = p.send(Duration::ZERO, &server_id, Request::GetPeers, pollen::Pending::Peers);
                        assert!(on_session, "the request goes on the open session");
                    }
                }
                e = client.select_next_some() => match e {
                    SwarmEvent::ConnectionEstablished { .. } => {
                        let p = &mut client.behaviour_mut().pollen;
                        assert!(!p.send(Duration::ZERO, &server_id, Request::GetPeers, pollen::Pending::Manifest));
                    }
                    SwarmEvent::Behaviour(BehaviourEvent::Pollen(pollen::Event::Response {
                        pending: pollen::Pending::Peers, response, ..
                    })) if on_session => return Ok(response),
                    SwarmEvent::Behaviour(BehaviourEvent::Pollen(pollen::Event::Failed {
                        pending: pollen::Pending::Peers, error, ..
                    })) if on_session => return Err(error),
                    _ => {}
                },
            }
        }
    })
    .await
    .expect("the request is answered in time");
    assert!(
        matches!(answered, Ok(Response::Peers(ref p)) if p.is_empty()),
        "{answered:?}"
    );
    assert!(
        !client.behaviour().pollen.has_session(&server_id),
        "the broken session is not used again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_taken_back_reaches_the_server_and_is_never_reported_failed() {
    // Both speak sessions; the server holds chunk requests unanswered, as
    // a full admission queue does, and answers everything else.
    let mut server = peer(true);
    let addr = listen(&mut server).await;
    let server_id = *server.local_peer_id();
    let mut client = peer(true);
    client.dial(addr).expect("dial");
    let manifest = pollen_core::ManifestId([7; 32]);
    let chunk = |index| pollen::Pending::Chunk {
        manifest,
        index,
        progress: Default::default(),
        landing: None,
    };

    let (cancelled, failures) = tokio::time::timeout(DEADLINE, async {
        let mut held = None;
        let mut cancelled = None;
        let mut failures = Vec::new();
        let mut step = 0;
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        loop {
            tokio::select! {
                e = server.select_next_some() => match e {
                    SwarmEvent::Behaviour(BehaviourEvent::Pollen(pollen::Event::Request {
                        id, request: Request::GetChunk { index: 3, .. }, channel, ..
                    })) => held = Some((id, channel)),
                    SwarmEvent::Behaviour(BehaviourEvent::Pollen(pollen::Event::Request {
                        channel, ..
                    })) => server.behaviour_mut().pollen.respond(channel, Response::Peers(Vec::new())),
                    SwarmEvent::Behaviour(BehaviourEvent::Pollen(pollen::Event::Cancelled { id, .. })) => {
                        let (held_id, channel) = held.take().expect("the chunk request arrived first");
                        assert_eq!(id, held_id, "the request taken back is the one held");
                        drop(channel); // as the admission queue drops it
                        cancelled = Some(id);
                    }
                    _ => {}
                },
                _ = tick.tick() => {
                    let p = &mut client.behaviour_mut().pollen;
                    if step == 0 && p.has_session(&server_id) {
                        assert!(p.send(Duration::ZERO, &server_id, Request::GetChunk { manifest, index: 3 }, chunk(3)));
                        step = 1;
                    } else if step == 1 && held.is_some() {
                        assert!(!p.cancel(&server_id, manifest, 4), "nothing asked for chunk 4");
                        assert!(p.cancel(&server_id, manifest, 3));
                        assert!(!p.cancel(&server_id, manifest, 3), "taken back once");
                        step = 2;
                    } else if step == 2 && cancelled.is_some() {
                        // Past its deadline it is gone, silently: the
                        // scheduler gave it up already.
                        let before = p.in_flight();
                        p.expire_requests(pollen_core::node::STREAM_TIMEOUT);
                        assert_eq!(p.in_flight(), before - 1);
                        assert!(p.send(Duration::ZERO, &server_id, Request::GetPeers, pollen::Pending::Peers));
                        step = 3;
                    }
                }
                e = client.select_next_some() => match e {
                    SwarmEvent::ConnectionEstablished { .. } => {
                        let p = &mut client.behaviour_mut().pollen;
                        assert!(!p.send(Duration::ZERO, &server_id, Request::GetPeers, pollen::Pending::Manifest));
                    }
                    SwarmEvent::Behaviour(BehaviourEvent::Pollen(pollen::Event::Failed {
                        pending, error, ..
                    })) => failures.push(format!("{pending:?}: {error}")),
                    SwarmEvent::Behaviour(BehaviourEvent::Pollen(pollen::Event::Response {
                        pending: pollen::Pending::Peers, ..
                    })) if step == 3 => return (cancelled, failures),
                    _ => {}
                },
            }
        }
    })
    .await
    .expect("the request is taken back in time");
    assert!(cancelled.is_some());
    assert!(failures.is_empty(), "{failures:?}");
}

/// One request frame on a session: its tag, then the framed request.
fn tagged(tag: u32, request: &Request) -> Vec<u8> {
    let body = request.encode().expect("encode");
    [
        &tag.to_be_bytes()[..],
        &(body.len() as u32).to_be_bytes(),
        &body,
    ]
    .concat()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notices_are_heard_while_every_request_waits_for_its_answer() {
    // A node with sessions that answers nothing: each request it reads
    // keeps its read-ahead place, as a chunk answer does while the chunk
    // still arrives from a sender that stalled.
    let mut server = peer(true);
    let addr = listen(&mut server).await;
    let (heard_tx, mut heard) = futures::channel::mpsc::unbounded();
    let serving = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            if let SwarmEvent::Behaviour(BehaviourEvent::Pollen(pollen::Event::Request {
                request,
                channel,
                ..
            })) = server.select_next_some().await
            {
                let _ = heard_tx.unbounded_send(request);
                held.push(channel);
            }
        }
    });

    let mut client = peer(true);
    let mut control = client.behaviour().stream.new_control();
    let target = connect(&mut client, addr).await;
    let driving = tokio::spawn(async move {
        loop {
            client.select_next_some().await;
        }
    });

    let mut stream = control.open_stream(target, SESSION).await.expect("open");
    stream.write_all(&SESSION_PREAMBLE).await.expect("preamble");
    let mut echo = [0u8; SESSION_PREAMBLE.len()];
    stream.read_exact(&mut echo).await.expect("echo");
    // Every place for requests taken, then two notices.
    let places = Limits::default().max_streams as u32;
    let mut bytes = Vec::new();
    for tag in 0..places {
        bytes.extend(tagged(tag, &Request::GetPeers));
    }
    let manifest = pollen_core::manifest::ManifestId([7; 32]);
    for (tag, index) in [(places, 3), (places + 1, 4)] {
        let notice = Request::Gained {
            manifest,
            indices: vec![index],
        };
        bytes.extend(tagged(tag, &notice));
    }
    stream.write_all(&bytes).await.expect("write");
    stream.flush().await.expect("flush");

    let mut asked = 0;
    let mut gained = Vec::new();
    tokio::time::timeout(DEADLINE, async {
        while gained.len() < 2 {
            match heard.next().await.expect("the node runs") {
                Request::GetPeers => asked += 1,
                Request::Gained { indices, .. } => gained.extend(indices),
                other => panic!("not asked: {other:?}"),
            }
        }
    })
    .await
    .expect("the notices are heard while no request is answered");
    assert_eq!(asked, places, "every request read first");
    assert_eq!(gained, [3, 4]);
    driving.abort();
    serving.abort();
}
