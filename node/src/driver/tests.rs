//! The driver on an in-process pair of nodes: a seeder (RocksDB in a
//! temporary directory) and a device (the in-memory store) over libp2p's
//! memory transport, in one tokio runtime.

use std::sync::Arc;
use std::time::Duration;

use pollen_core::admission::AdmissionConfig;
use pollen_core::manifest::{verify, SecretKey, SignedManifest, TrustPolicy, VerifyContext};
use tokio::sync::{mpsc, oneshot};

use super::*;
use crate::store::tests::{artifact, manifest_for};
use crate::store::{reassemble_to, MemStore, RocksStore, Store};

const DEADLINE: Duration = Duration::from_secs(60);

pub(super) fn config(mode: Mode, trust: Option<TrustPolicy>, peers: Vec<Multiaddr>) -> NodeConfig {
    NodeConfig {
        channel: "stable".into(),
        policy: trust.map(VerifiedPolicy::from_trust),
        credential: None,
        hardware: None,
        external: Vec::new(),
        listen: vec!["/memory/0".parse().expect("addr")],
        peers,
        site: Some("hall".into()),
        uplink_rate: None,
        no_lan: false,
        cross_site: true,
        max_remote_peers: 4,
        linger: Duration::ZERO,
        admission: if mode == Mode::Seed {
            AdmissionConfig::origin()
        } else {
            AdmissionConfig::default()
        },
        mdns: false,
        mode,
        seed: 7,
        max_peers: 16,
        limits: Limits::default(),
        transport: Transport::Memory,
        device_id: None,
        lifecycle: None,
        retry_interval: Duration::from_secs(60),
        status_interval: Duration::from_secs(30),
        publisher_key: None,
    }
}

/// A store holding a signed release of `data`, and the key that signed it.
pub(super) fn seeded_store(dir: &std::path::Path, data: &[u8]) -> (Arc<RocksStore>, SecretKey) {
    seeded_store_with(dir, data, SecretKey::from_bytes(&[9; 32]), |_| {})
}

/// The same, signed by `key`, with the manifest changed by `edit` first.
pub(super) fn seeded_store_with(
    dir: &std::path::Path,
    data: &[u8],
    key: SecretKey,
    edit: impl FnOnce(&mut pollen_core::manifest::Manifest),
) -> (Arc<RocksStore>, SecretKey) {
    seed(dir, manifest_for(data), key, edit)
}

/// A seeder's store holding `data` cut with `params` (the node's defaults
/// make chunks of more than one piece).
pub(super) fn seeded_store_chunked(
    dir: &std::path::Path,
    data: &[u8],
    params: pollen_core::chunk::ChunkParams,
) -> (Arc<RocksStore>, SecretKey) {
    let cut = crate::store::tests::manifest_chunked(data, params);
    seed(dir, cut, SecretKey::from_bytes(&[9; 32]), |_| {})
}

fn seed(
    dir: &std::path::Path,
    (mut m, chunks): (
        pollen_core::manifest::Manifest,
        Vec<pollen_core::chunk::Chunk>,
    ),
    key: SecretKey,
    edit: impl FnOnce(&mut pollen_core::manifest::Manifest),
) -> (Arc<RocksStore>, SecretKey) {
    let store = Arc::new(RocksStore::open(dir).expect("open"));
    edit(&mut m);
    for c in &chunks {
        store
            .put_chunk(c.clone().into_verified())
            .expect("put chunk");
    }
    let bytes = SignedManifest::sign(m, &[&key]).encode();
    let policy = TrustPolicy::single(key.public());
    let v = verify(&bytes, &policy, &VerifyContext::default()).expect("verify");
    store.put_manifest(&v).expect("put manifest");
    (store, key)
}

/// Starts a seeder; returns its address and the sender that stops it.
async fn start_seeder(store: Arc<RocksStore>) -> (Multiaddr, oneshot::Sender<()>) {
    start_seeder_with(store, config(Mode::Seed, None, vec![])).await
}

/// The same, configured by `cfg`.
pub(super) async fn start_seeder_with(
    store: Arc<RocksStore>,
    cfg: NodeConfig,
) -> (Multiaddr, oneshot::Sender<()>) {
    let (tx, mut events) = mpsc::channel(64);
    let driver = Driver::new(store, cfg, Some(tx)).expect("seeder");
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(driver.run(async {
        let _ = stopped.await;
    }));
    let addr = tokio::time::timeout(DEADLINE, async {
        loop {
            match events.recv().await {
                Some(NodeEvent::Listening(a)) => return a,
                Some(_) => {}
                None => panic!("the seeder stopped before listening"),
            }
        }
    })
    .await
    .expect("the seeder listens");
    (addr, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_fetches_a_release_from_a_seeder_in_process() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = artifact(600_000);
    let (seeder_store, key) = seeded_store(&tmp.path().join("seeder"), &data);
    let (addr, stop) = start_seeder(seeder_store).await;

    let store = Arc::new(MemStore::default());
    let trust = Some(TrustPolicy::single(key.public()));
    let device =
        Driver::new(store.clone(), config(Mode::Fetch, trust, vec![addr]), None).expect("device");
    let report = tokio::time::timeout(DEADLINE, device.run(std::future::pending()))
        .await
        .expect("the fetch completes in time")
        .expect("the driver runs");
    let _ = stop.send(());

    assert!(report.complete, "{report:?}");
    assert_eq!(u64::from(report.chunks_total), report.chunks_fetched);
    assert_eq!(report.chunks_rejected, 0);
    assert_eq!(report.manifests_refused, 0);
    let id = store.manifest_ids().expect("ids")[0];
    let bytes = store.get_manifest(&id).expect("get").expect("held");
    let m = SignedManifest::decode(&bytes).expect("decode");
    let mut out = Vec::new();
    reassemble_to(store.as_ref(), m.manifest(), &mut out).expect("reassemble");
    assert_eq!(out, data, "the device holds the release byte for byte");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_refuses_a_release_signed_by_a_key_it_does_not_trust() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (seeder_store, _) = seeded_store(&tmp.path().join("seeder"), &artifact(100_000));
    let (addr, stop) = start_seeder(seeder_store).await;

    let store = Arc::new(MemStore::default());
    let other = SecretKey::from_bytes(&[1; 32]).public();
    let config = config(Mode::Fetch, Some(TrustPolicy::single(other)), vec![addr]);
    let (tx, mut events) = mpsc::channel(64);
    let device = Driver::new(store.clone(), config, Some(tx)).expect("device");
    let (quit, quitted) = oneshot::channel::<()>();
    let run = tokio::spawn(device.run(async {
        let _ = quitted.await;
    }));
    // The device greets the seeder, asks for its manifest and refuses it.
    let mut took_up = false;
    tokio::time::timeout(DEADLINE, async {
        loop {
            match events.recv().await {
                Some(NodeEvent::ManifestRefused(_)) => return,
                Some(NodeEvent::NewRelease { .. }) => took_up = true,
                Some(_) => {}
                None => panic!("the device stopped"),
            }
        }
    })
    .await
    .expect("the device refuses the manifest in time");
    let _ = quit.send(());
    let report = run.await.expect("join").expect("the driver runs");
    let _ = stop.send(());
    assert!(!took_up, "an untrusted release was taken up");
    assert!(report.manifests_refused >= 1, "{report:?}");
    assert!(store.manifest_ids().expect("ids").is_empty());
    assert!(store.chunk_ids().expect("ids").is_empty());
}

#[test]
fn gateway_search_backs_off_to_five_minutes() {
    let mut g = GatewaySearch::default();
    let t0 = g.next;
    assert!(g.due(t0, false), "at once");
    assert!(!g.due(t0 + Duration::from_secs(2), false));
    let mut at = t0;
    let mut waits = Vec::new();
    for _ in 0..10 {
        let next = g.next;
        assert!(!g.due(next - Duration::from_millis(1), false));
        assert!(g.due(next, false));
        waits.push((next - at).as_secs());
        at = next;
    }
    assert_eq!(waits[..4], [3, 6, 12, 24]);
    assert_eq!(*waits.last().expect("some"), 300, "capped: {waits:?}");
    // Fetching a release: every 3 s again, from the next search on.
    let next = g.next;
    assert!(g.due(next, true));
    assert_eq!((g.next - next).as_secs(), 3);
    assert!(g.due(g.next, true));
}
