//! Roles across the handshake, over the real protocol (libp2p's memory
//! transport): a role that changes while two nodes' hellos cross reaches
//! the peer once it is up. (A site member that kept a stale "no uplink"
//! for a peer left it out of the uplink split, and both fetched the same
//! chunks across the uplink.)

use std::sync::Arc;

use futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::swarm::SwarmEvent;
use pollen_core::swarm::SiteId;
use pollen_core::wire::{Hello, Request, Response, Role};
use tokio::sync::mpsc;

use super::tests::config;
use super::trust_tests::{memory_swarm, start, DEADLINE};
use super::*;
use crate::store::MemStore;

/// A bare protocol peer: dials `target`, says `hello`, answers what it is
/// asked (its hello answer to the target's hello only once `release`
/// fires), and reports every request it gets.
fn raw_peer(
    target: Multiaddr,
    hello: Hello,
    mut release: Option<tokio::sync::oneshot::Receiver<()>>,
) -> mpsc::Receiver<Request> {
    let (tx, rx) = mpsc::channel(64);
    let mut swarm = memory_swarm(Keypair::generate_ed25519());
    swarm.dial(target).expect("dial");
    tokio::spawn(async move {
        let mut held = None;
        loop {
            let event = match &mut release {
                Some(r) if held.is_some() => tokio::select! {
                    e = swarm.select_next_some() => e,
                    _ = r => {
                        release = None;
                        if let Some(channel) = held.take() {
                            swarm.behaviour_mut().pollen.respond(channel, Response::Hello(hello.clone()));
                        }
                        continue;
                    }
                },
                _ => swarm.select_next_some().await,
            };
            match event {
                SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                    let h = Request::Hello(hello.clone());
                    swarm
                        .behaviour_mut()
                        .pollen
                        .send(Duration::ZERO, &peer_id, h, Pending::Hello);
                }
                SwarmEvent::Behaviour(BehaviourEvent::Pollen(pollen::Event::Request {
                    request,
                    channel,
                    ..
                })) => {
                    let p = &mut swarm.behaviour_mut().pollen;
                    match &request {
                        Request::Hello(_) if release.is_some() => held = Some(channel),
                        Request::Hello(_) => p.respond(channel, Response::Hello(hello.clone())),
                        _ => p.respond(channel, Response::Ok),
                    }
                    if tx.send(request).await.is_err() {
                        return;
                    }
                }
                _ => {}
            }
        }
    });
    rx
}

/// Waits for a role notice saying `uplink`.
async fn role_notice(rx: &mut mpsc::Receiver<Request>, uplink: bool) -> Role {
    tokio::time::timeout(DEADLINE, async {
        loop {
            match rx.recv().await {
                Some(Request::Role(r)) if r.uplink == uplink => return r,
                Some(_) => {}
                None => panic!("the peer stopped"),
            }
        }
    })
    .await
    .expect("the role notice came in time")
}

/// A publisher's server's role.
const ORIGIN: Role = Role {
    origin: true,
    uplink: false,
    gateway: false,
};

/// Waits for the device's hello, which says it has no uplink yet.
async fn hello_without_uplink(member: &mut mpsc::Receiver<Request>) {
    loop {
        let r = tokio::time::timeout(DEADLINE, member.recv()).await;
        if let Ok(Some(Request::Hello(h))) = r {
            assert!(!h.role.uplink, "no uplink yet");
            return;
        }
        assert!(r.is_ok(), "the device's hello came in time");
    }
}

fn hello(role: Role) -> Hello {
    Hello {
        channel: "stable".into(),
        site: Some(SiteId::from_name("hall")),
        newest: None,
        role,
        policy: None,
        credential: None,
    }
}

#[tokio::test]
async fn a_role_that_changes_while_hellos_cross_is_told_once_the_peer_is_up() {
    let device = start(
        Arc::new(MemStore::default()),
        config(Mode::Run, None, vec![]),
    )
    .await;
    // A site member greets the device and holds its answer to the
    // device's hello: the device's node logic does not know it yet.
    let (release, released) = tokio::sync::oneshot::channel();
    let mut member = raw_peer(device.addr.clone(), hello(Role::default()), Some(released));
    hello_without_uplink(&mut member).await;
    // A publisher's server comes: the device now has an uplink (it tells
    // the peers it knows, the server among them).
    let mut server = raw_peer(device.addr.clone(), hello(ORIGIN), None);
    role_notice(&mut server, true).await;
    // The member answers: once up, it hears the device's role too.
    release.send(()).expect("the member runs");
    let told = role_notice(&mut member, true).await;
    assert!(!told.origin);
    device.stop().await;
}

#[tokio::test]
async fn a_role_change_is_told_again_once_it_has_settled() {
    let device = start(
        Arc::new(MemStore::default()),
        config(Mode::Run, None, vec![]),
    )
    .await;
    let mut member = raw_peer(device.addr.clone(), hello(Role::default()), None);
    hello_without_uplink(&mut member).await;
    let _server = raw_peer(device.addr.clone(), hello(ORIGIN), None);
    // The change is told at once, and again once it has settled: a hello
    // with the old role taken after the first notice is overruled.
    let first = role_notice(&mut member, true).await;
    let at = std::time::Instant::now();
    let again = role_notice(&mut member, true).await;
    assert_eq!(again, first);
    assert!(
        at.elapsed() >= ROLE_SETTLE / 2,
        "told again only after the settling time: {:?}",
        at.elapsed()
    );
    device.stop().await;
}
