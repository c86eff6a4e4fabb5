//! The closed mesh over the real protocol (libp2p's memory transport with
//! Noise, in one process): enrolled nodes deliver, unenrolled or
//! impersonating peers get no answer of any kind, and a revocation cuts a
//! device off with one policy push.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::swarm::SwarmEvent;
use pollen_core::manifest::{ManifestId, SecretKey, TrustPolicy};
use pollen_core::trust::{Credential, FleetPolicy, SignedCredential, SignedPolicy};
use pollen_core::wire::{Hello, Request, Role};
use serde_bytes::ByteBuf;
use tokio::sync::{mpsc, oneshot};

use super::tests::{config, seeded_store, seeded_store_with};
use super::*;
use crate::net::identity::peer_key;
use crate::store::tests::artifact;
use crate::store::{keys, MemStore, RocksStore};

pub(super) const DEADLINE: Duration = Duration::from_secs(60);

fn key(n: u8) -> SecretKey {
    SecretKey::from_bytes(&[n; 32])
}

/// Root 1, release 9 (the key `seeded_store` signs with), operator 20, enroll 30.
fn policy(version: u64, revoked: &[[u8; 32]]) -> Vec<u8> {
    policy_with(version, 9, revoked)
}

/// The same with release key `release`.
fn policy_with(version: u64, release: u8, revoked: &[[u8; 32]]) -> Vec<u8> {
    let single = |n: u8| TrustPolicy::single(key(n).public());
    let mut p = FleetPolicy::new(
        version,
        crate::unix_now() + 3600,
        [single(1), single(release), single(20)],
        Some(single(30)),
    );
    p.revoked.extend(revoked.iter().copied());
    SignedPolicy::sign(p, &[&key(1)]).expect("valid").encode()
}

fn enroll(peer: &PeerId, device: &str) -> SignedCredential {
    let c = Credential {
        key: peer_key(peer).expect("ed25519"),
        device: device.into(),
        site: Some("hall".into()),
        hardware: None,
        serial: None,
        issued_at: 0,
        expires_at: crate::unix_now() + 3600,
    };
    SignedCredential::sign(c, &[&key(30)]).expect("valid")
}

/// `config` for a closed mesh: policy v1 and the credential of the
/// identity in `store` (created here, as `pollen-node id` does).
fn closed(base: NodeConfig, store: &dyn Store, device: &str) -> NodeConfig {
    let me = load_or_create_identity(store).expect("identity");
    let first = VerifiedPolicy::first(&policy(1, &[]), crate::unix_now()).expect("v1");
    NodeConfig {
        policy: Some(first),
        credential: Some(enroll(&me.public().to_peer_id(), device)),
        ..base
    }
}

/// A running driver: its address, events, endpoint commands and stop.
pub(super) struct Running {
    pub(super) addr: Multiaddr,
    peer: PeerId,
    events: mpsc::Receiver<NodeEvent>,
    commands: mpsc::Sender<ApiCommand>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<Report, DriverError>>,
}

impl Running {
    /// Stops the driver and waits until it has (its store closed with it).
    pub(super) async fn stop(self) -> Report {
        let _ = self.stop.send(());
        self.task.await.expect("join").expect("the driver ran")
    }
}

pub(super) async fn start<S: Store + 'static>(store: Arc<S>, config: NodeConfig) -> Running {
    let (tx, mut events) = mpsc::channel(256);
    let driver = Driver::new(store, config, Some(tx)).expect("driver");
    let peer = driver.peer_id();
    let (commands, rx) = mpsc::channel(8);
    let shared = Arc::new(std::sync::Mutex::new(crate::api::Snapshot::default()));
    let driver = driver.with_api(shared, rx);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(driver.run(async {
        let _ = stopped.await;
    }));
    let addr = wait_for(&mut events, |e| match e {
        NodeEvent::Listening(a) => Some(a.clone()),
        _ => None,
    })
    .await;
    Running {
        addr,
        peer,
        events,
        commands,
        stop,
        task,
    }
}

async fn wait_for<T>(
    events: &mut mpsc::Receiver<NodeEvent>,
    mut pick: impl FnMut(&NodeEvent) -> Option<T>,
) -> T {
    tokio::time::timeout(DEADLINE, async {
        loop {
            match events.recv().await {
                Some(e) => {
                    if let Some(t) = pick(&e) {
                        return t;
                    }
                }
                None => panic!("the driver stopped"),
            }
        }
    })
    .await
    .expect("the event came in time")
}

/// A bare protocol peer's swarm on the memory transport (no mDNS).
pub(super) fn memory_swarm(key: Keypair) -> libp2p::Swarm<Behaviour> {
    build_swarm(
        key,
        false,
        &Limits::default(),
        Transport::Memory,
        crate::net::Advertise::Listen,
    )
    .expect("swarm")
}

/// What a hostile peer got for its requests.
#[derive(Debug, Default)]
struct Outcome {
    responses: usize,
    failed: usize,
    disconnected: bool,
}

/// A peer with a fresh identity that dials `target`, says `hello` (if
/// any) and asks for a manifest, a chunk, peers and a has-set at once.
async fn attack(target: &Multiaddr, hello: Option<Hello>, manifest: ManifestId) -> Outcome {
    let mut swarm = memory_swarm(Keypair::generate_ed25519());
    swarm.dial(target.clone()).expect("dial");
    let mut out = Outcome::default();
    let mut sent = 0;
    tokio::time::timeout(DEADLINE, async {
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                    let p = &mut swarm.behaviour_mut().pollen;
                    if let Some(h) = hello.clone() {
                        p.send(Duration::ZERO, &peer_id, Request::Hello(h), Pending::Hello);
                        sent += 1;
                    }
                    p.send(
                        Duration::ZERO,
                        &peer_id,
                        Request::GetManifest(manifest),
                        Pending::Manifest,
                    );
                    let chunk = Request::GetChunk { manifest, index: 0 };
                    p.send(Duration::ZERO, &peer_id, chunk, Pending::Notice);
                    p.send(Duration::ZERO, &peer_id, Request::GetPeers, Pending::Peers);
                    p.send(
                        Duration::ZERO,
                        &peer_id,
                        Request::GetHave(manifest),
                        Pending::Have(manifest),
                    );
                    sent += 4;
                }
                SwarmEvent::ConnectionClosed { .. } => out.disconnected = true,
                SwarmEvent::Behaviour(BehaviourEvent::Pollen(pollen::Event::Response {
                    ..
                })) => out.responses += 1,
                SwarmEvent::Behaviour(BehaviourEvent::Pollen(pollen::Event::Failed { .. })) => {
                    out.failed += 1
                }
                _ => {}
            }
            if sent > 0 && out.disconnected && out.responses + out.failed == sent {
                return;
            }
        }
    })
    .await
    .expect("every request ended and the peer was disconnected in time");
    out
}

fn hello(credential: Option<Vec<u8>>) -> Hello {
    Hello {
        channel: "stable".into(),
        site: None,
        newest: None,
        role: Role::default(),
        policy: Some(ByteBuf::from(policy(1, &[]))),
        credential: credential.map(ByteBuf::from),
    }
}

/// A closed seeder and one enrolled device that fetched its release
/// and keeps serving it (`run`).
async fn closed_mesh(
    tmp: &std::path::Path,
) -> (
    Running,
    Running,
    Arc<MemStore>,
    ManifestId,
    SignedCredential,
) {
    let (seeder_store, _) = seeded_store(&tmp.join("seeder"), &artifact(300_000));
    let manifest = seeder_store.manifest_ids().expect("ids")[0];
    let seeder_store: Arc<RocksStore> = seeder_store;
    let seeder_config = closed(
        config(Mode::Seed, None, vec![]),
        seeder_store.as_ref(),
        "seeder",
    );
    let seeder = start(seeder_store, seeder_config).await;
    let store = Arc::new(MemStore::default());
    let device_config = closed(
        config(Mode::Run, None, vec![seeder.addr.clone()]),
        store.as_ref(),
        "press-1",
    );
    let credential = device_config.credential.clone().expect("enrolled");
    let mut device = start(store.clone(), device_config).await;
    wait_for(&mut device.events, |e| {
        matches!(e, NodeEvent::Complete { .. }).then_some(())
    })
    .await;
    (seeder, device, store, manifest, credential)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unenrolled_and_impersonating_peers_get_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut seeder, device, _, manifest, stolen) = closed_mesh(tmp.path()).await;
    for target in [&seeder.addr, &device.addr] {
        for (what, hello) in [
            ("no hello", None),
            ("no credential", Some(hello(None))),
            (
                "another device's credential",
                Some(hello(Some(stolen.encode()))),
            ),
        ] {
            let got = attack(target, hello, manifest).await;
            assert_eq!(got.responses, 0, "{what}: answered {got:?}");
            assert!(got.failed > 0 && got.disconnected, "{what}: {got:?}");
        }
    }
    // The seeder says whom it refused and why it had to.
    wait_for(&mut seeder.events, |e| {
        matches!(e, NodeEvent::PeerRefused(_)).then_some(())
    })
    .await;
    device.stop().await;
    let report = seeder.stop().await;
    assert!(report.peers_refused >= 3, "{report:?}");
}

/// A peer that connects and says nothing holds no slot past the hello
/// deadline (it would otherwise stay until the idle timeout, 300 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_peer_is_cut_at_the_hello_deadline() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut seeder, device, _, _, _) = closed_mesh(tmp.path()).await;
    let mut swarm = memory_swarm(Keypair::generate_ed25519());
    swarm.dial(seeder.addr.clone()).expect("dial");
    let lasted = tokio::time::timeout(DEADLINE, async {
        let mut established = None;
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::ConnectionEstablished { .. } => {
                    established = Some(std::time::Instant::now())
                }
                SwarmEvent::ConnectionClosed { .. } => {
                    return established.expect("established before closed").elapsed()
                }
                _ => {}
            }
        }
    })
    .await
    .expect("the silent connection was cut in time");
    // Cut by the deadline, not earlier for some other reason.
    assert!(
        lasted + Duration::from_secs(1) >= trust::HELLO_DEADLINE,
        "cut after {lasted:?}"
    );
    wait_for(&mut seeder.events, |e| {
        matches!(e, NodeEvent::PeerRefused(_)).then_some(())
    })
    .await;
    device.stop().await;
    let report = seeder.stop().await;
    assert_eq!(report.peers_refused, 1, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_device_is_cut_off_by_one_policy_push() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut seeder, device, _, _, _) = closed_mesh(tmp.path()).await;
    // A second enrolled device, connected to the seeder too.
    let other_store = Arc::new(MemStore::default());
    let other_config = closed(
        config(Mode::Run, None, vec![seeder.addr.clone()]),
        other_store.as_ref(),
        "press-2",
    );
    let mut other = start(other_store.clone(), other_config).await;
    wait_for(&mut other.events, |e| {
        matches!(e, NodeEvent::Complete { .. }).then_some(())
    })
    .await;

    let revoking = policy(2, &[peer_key(&device.peer).expect("ed25519")]);
    seeder
        .commands
        .send(ApiCommand::Policy(revoking.clone()))
        .await
        .expect("send");
    let cut = wait_for(&mut seeder.events, |e| match e {
        NodeEvent::PeerRefused(p) => Some(*p),
        _ => None,
    })
    .await;
    assert_eq!(cut, device.peer, "the revoked device is the one cut off");
    // The other device got the new policy from the seeder and keeps it.
    tokio::time::timeout(DEADLINE, async {
        while other_store.get_state(keys::POLICY).expect("read") != Some(revoking.clone()) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the policy reached the other device");
    // The revoked device, redialing with its old policy, is refused again.
    let again = wait_for(&mut seeder.events, |e| match e {
        NodeEvent::PeerRefused(p) => Some(*p),
        _ => None,
    })
    .await;
    // Refused again even if it has learned the new policy by now: a
    // dialer's hello carries its policy before it knows who answers (so a
    // rotated enroll key reaches a peer before its credential is judged),
    // and `other` may dial the device with the new policy. The policy is
    // not secret; a credential it revokes stays refused either way.
    assert_eq!(again, device.peer);
    other.stop().await;
    device.stop().await;
    seeder.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_a_valid_credential_of_its_own_does_not_start() {
    let store = MemStore::default();
    let mut c = closed(config(Mode::Fetch, None, vec![]), &store, "press-1");
    // Someone else's credential.
    c.credential = Some(enroll(
        &PeerId::from(Keypair::generate_ed25519().public()),
        "x",
    ));
    let err = Driver::new(Arc::new(store), c, None).expect_err("refused");
    assert!(
        err.to_string().contains("another node's key"),
        "unclear error: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_release_key_signs_and_the_old_one_no_longer_does() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // Policy v2 rotates the release role from key 9 to key 10.
    let v2 = policy_with(2, 10, &[]);
    let closed_v2 = |base: NodeConfig, store: &dyn Store, name: &str| NodeConfig {
        policy: Some(VerifiedPolicy::first(&v2, crate::unix_now()).expect("v2")),
        ..closed(base, store, name)
    };
    // Seeder A still serves a newer release signed by the old key.
    let (old_store, _) =
        seeded_store_with(&tmp.path().join("a"), &artifact(200_000), key(9), |m| {
            m.release = 3
        });
    let old_config = closed_v2(
        config(Mode::Seed, None, vec![]),
        old_store.as_ref(),
        "seeder-a",
    );
    let old = start(old_store, old_config).await;
    // Seeder B serves release 2 signed by the new key.
    let (new_store, _) =
        seeded_store_with(&tmp.path().join("b"), &artifact(250_000), key(10), |m| {
            m.release = 2
        });
    let new_id = new_store.manifest_ids().expect("ids")[0];
    let new_config = closed_v2(
        config(Mode::Seed, None, vec![]),
        new_store.as_ref(),
        "seeder-b",
    );
    let new = start(new_store, new_config).await;

    // A device that still holds v1 (release key 9) learns v2 from the seeders.
    let store = Arc::new(MemStore::default());
    let peers = vec![old.addr.clone(), new.addr.clone()];
    let device_config = closed(config(Mode::Fetch, None, peers), store.as_ref(), "press-1");
    let device = Driver::new(store.clone(), device_config, None).expect("device");
    let report = tokio::time::timeout(DEADLINE, device.run(std::future::pending()))
        .await
        .expect("the fetch completes in time")
        .expect("the driver runs");
    assert!(report.complete, "{report:?}");
    assert_eq!(report.release, Some(2), "the new key's release: {report:?}");
    assert!(
        report.manifests_refused >= 1,
        "the old key's release 3: {report:?}"
    );
    assert_eq!(store.manifest_ids().expect("ids"), vec![new_id]);
    assert_eq!(
        store.get_state(keys::POLICY).expect("read"),
        Some(v2.clone())
    );
    old.stop().await;
    new.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_status_records_change_no_count_and_trigger_no_halt() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (seeder_store, _) =
        seeded_store_with(&tmp.path().join("s"), &artifact(100_000), key(9), |m| {
            m.rollout.max_failures = Some(1_000)
        });
    let manifest = seeder_store.manifest_ids().expect("ids")[0];
    let seeder_config = NodeConfig {
        // The operator key: the seeder may halt by itself.
        publisher_key: Some(Arc::new(key(20))),
        ..closed(
            config(Mode::Seed, None, vec![]),
            seeder_store.as_ref(),
            "seeder",
        )
    };
    let seeder = start(seeder_store.clone(), seeder_config).await;

    // An enrolled device's identity, in hostile hands.
    let me = Keypair::generate_ed25519();
    let credential = enroll(&me.public().to_peer_id(), "press-1").encode();
    let target = Some(pollen_core::status::ReleaseRef {
        manifest,
        release: 1,
        version: "1.0.0".into(),
    });
    let record = |device: &str, phase| pollen_core::status::StatusRecord {
        device: device.into(),
        site: None,
        hardware: None,
        channel: "stable".into(),
        installed: None,
        target: target.clone(),
        phase,
        note: None,
        last_error: None,
        attempts: 1,
        traffic: Default::default(),
        seq: crate::unix_now() * 1000,
    };
    use pollen_core::status::{Phase, SignedStatus};
    use pollen_core::wire::StatusEntry;
    let mut entries = Vec::new();
    // Ten invented devices rolling back: fresh keys, without a credential
    // or with the stolen one.
    for i in 0..10u8 {
        let signed = SignedStatus::sign(
            record(&format!("ghost-{i}"), Phase::RolledBack),
            &key(100 + i),
        );
        entries.push(StatusEntry {
            record: ByteBuf::from(signed.to_bytes().to_vec()),
            credential: (i % 2 == 0).then(|| ByteBuf::from(credential.clone())),
        });
    }
    // Its own key, claiming to be another device.
    let own_key = super::local::device_key(&me).expect("ed25519");
    let own = SignedStatus::sign(record("press-9", Phase::Committed), &own_key);
    entries.push(StatusEntry {
        record: ByteBuf::from(own.to_bytes().to_vec()),
        credential: Some(ByteBuf::from(credential.clone())),
    });

    let mut swarm = memory_swarm(me);
    swarm.dial(seeder.addr.clone()).expect("dial");
    let mut hello = hello(Some(credential.clone()));
    hello.site = None;
    tokio::time::timeout(DEADLINE, async {
        let mut greeted = false;
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                    swarm.behaviour_mut().pollen.send(
                        Duration::ZERO,
                        &peer_id,
                        Request::Hello(hello.clone()),
                        Pending::Hello,
                    );
                }
                SwarmEvent::Behaviour(BehaviourEvent::Pollen(pollen::Event::Response {
                    peer,
                    pending: Pending::Hello,
                    ..
                })) if !greeted => {
                    greeted = true;
                    let status = Request::Status(entries.clone());
                    swarm.behaviour_mut().pollen.send(
                        Duration::ZERO,
                        &peer,
                        status,
                        Pending::Notice,
                    );
                }
                SwarmEvent::Behaviour(BehaviourEvent::Pollen(pollen::Event::Response {
                    pending: Pending::Notice,
                    ..
                })) => return,
                _ => {}
            }
        }
    })
    .await
    .expect("the seeder took the status message in time");
    let report = seeder.stop().await;
    assert_eq!(report.peers_refused, 0, "the enrolled peer was admitted");
    let stored: Vec<_> = seeder_store
        .state_with_prefix(keys::STATUS_PREFIX)
        .expect("read")
        .into_iter()
        .map(|(_, b)| crate::status_store::record(&b).expect("decodes"))
        .collect();
    assert_eq!(stored.len(), 1, "only the enrolled key counts: {stored:?}");
    assert_eq!(stored[0].device, "press-1", "named by its credential");
    assert_eq!(stored[0].phase, Phase::Committed);
    let control = crate::controls::load_bytes(seeder_store.as_ref(), &manifest).expect("read");
    assert!(control.is_none(), "a halt was signed");
}
