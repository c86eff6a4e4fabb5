//! Genuine values for fuzzing: what the targets compare decoded bytes
//! against, and what `examples/seeds.rs` encodes into the seed corpora.
//!
//! Everything is made with pollen-core's own APIs (chunking, manifest and
//! control signing, status signing, wire encoding, the local endpoint's
//! request head) from fixed keys and times, so every run makes the same bytes.
//! The fleet trust seeds (policies, credentials) are made by the real CLI
//! from key files holding [`fleet_key`]s (`scripts/fuzz-trust-seeds.sh`).

use std::sync::OnceLock;

use pollen_core::chunk::{chunks, piece_hashes};
use pollen_core::manifest::{
    Artifact, ChunkRef, Install, Rollout, RolloutStage, SecretKey, TrustPolicy, VerifyContext,
};
use pollen_core::origin::{ChannelIndex, ControlId, SignedIndex};
use pollen_core::rollout::{RolloutControl, SignedControl};
use pollen_core::status::{Phase, ReleaseRef, SignedStatus, StatusRecord};
use pollen_core::swarm::{unique_chunks, Bitfield, SiteId};
use pollen_core::trust::{FleetPolicy, SignedPolicy, VerifiedPolicy};
use pollen_core::wire::{Announce, Hello, Request, Response, Role, StatusEntry};
use pollen_core::{local_http, ChunkParams, Manifest, SignedManifest};
use serde_bytes::ByteBuf;

/// The fixtures' clock: seconds since the Unix epoch.
pub const NOW: u64 = 1_800_000_000;
/// The channel every fixture is on.
pub const CHANNEL: &str = "stable";
/// The hardware model the fixture devices are.
pub const HARDWARE: &str = "press-v2";

/// The publisher's signing key.
pub fn publisher() -> SecretKey {
    SecretKey::from_bytes(&[7; 32])
}

/// What a fixture device trusts: the publisher alone.
pub fn policy() -> TrustPolicy {
    TrustPolicy::single(publisher().public())
}

/// What a fixture device knows about itself when it verifies a manifest.
pub fn verify_context() -> VerifyContext {
    VerifyContext {
        now: NOW + 60,
        floor: 0,
        hardware: Some(HARDWARE.into()),
        channel: Some(CHANNEL.into()),
    }
}

/// Device `n`'s mesh identity key (it signs the device's status records).
pub fn device_key(n: u8) -> SecretKey {
    SecretKey::from_bytes(&[0x40 + n; 32])
}

/// Deterministic bytes that do not compress (an artifact's content).
fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A release as the publisher makes it: the artifact cut by core's
/// chunker, the manifest signed by [`publisher`].
#[derive(Debug)]
pub struct Release {
    pub signed: SignedManifest,
    /// The signed manifest's bytes.
    pub bytes: Vec<u8>,
    /// The artifact's chunks, in order.
    pub chunks: Vec<Vec<u8>>,
}

fn release(name: &str, version: &str, number: u64, artifact: &[u8], rollout: Rollout) -> Release {
    let params = ChunkParams::new(16 * 1024, 32 * 1024, 64 * 1024).expect("valid chunk params");
    let cut: Vec<_> = chunks(artifact, params)
        .map(|c| c.expect("chunking bytes in memory").data().to_vec())
        .collect();
    let refs = cut
        .iter()
        .map(|c| ChunkRef {
            id: pollen_core::ChunkId::of(c),
            len: c.len() as u32,
        })
        .collect();
    let manifest = Manifest {
        product: "press-firmware".into(),
        channel: CHANNEL.into(),
        version: version.into(),
        release: number,
        created_at: NOW,
        expires_at: NOW + 90 * 86_400,
        hardware: vec![HARDWARE.into()],
        artifact: Artifact {
            name: name.into(),
            size: artifact.len() as u64,
            blake3: *blake3::hash(artifact).as_bytes(),
        },
        chunking: params,
        chunks: refs,
        rollout,
        install: Install::FullImage,
    };
    let signed = SignedManifest::sign(manifest, &[&publisher()]);
    let bytes = signed.encode();
    Release {
        signed,
        bytes,
        chunks: cut,
    }
}

/// A 256 KiB firmware image in a few chunks, rolled out in three stages.
pub fn firmware() -> &'static Release {
    static R: OnceLock<Release> = OnceLock::new();
    R.get_or_init(|| {
        let rollout = Rollout {
            stages: vec![
                RolloutStage {
                    share: 100,
                    start_at: None,
                },
                RolloutStage {
                    share: 1_000,
                    start_at: Some(NOW + 3_600),
                },
                RolloutStage {
                    share: 10_000,
                    start_at: Some(NOW + 86_400),
                },
            ],
            max_failures: Some(500),
        };
        release(
            "press-v2-2.4.1.img",
            "2.4.1",
            24,
            &pseudo_random(256 * 1024, 24),
            rollout,
        )
    })
}

/// A 700-byte configuration bundle: one chunk, everyone at once.
pub fn config_bundle() -> &'static Release {
    static R: OnceLock<Release> = OnceLock::new();
    R.get_or_init(|| {
        release(
            "press-v2-config.tar",
            "2.4.2",
            25,
            &pseudo_random(700, 25),
            Rollout::default(),
        )
    })
}

/// The firmware's rollout controls as the seeder issues them: promote
/// the next stage, halt, resume (each superseding the one before).
pub fn controls() -> &'static [Vec<u8>] {
    static C: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    C.get_or_init(|| {
        let id = firmware().signed.id();
        let mut promote = RolloutControl::initial(CHANNEL, id).next(NOW + 600);
        promote.promoted = Some(1);
        let mut halt = promote.next(NOW + 1_200);
        halt.halted = true;
        let mut resume = halt.next(NOW + 4_000);
        resume.halted = false;
        [promote, halt, resume]
            .into_iter()
            .map(|c| SignedControl::sign(c, &[&publisher()]).encode())
            .collect()
    })
}

/// Status records of three devices at several points of the lifecycle,
/// each signed by its device's key ([`device_key`]).
pub fn status_records() -> &'static [SignedStatus] {
    static S: OnceLock<Vec<SignedStatus>> = OnceLock::new();
    S.get_or_init(|| {
        let old = ReleaseRef {
            manifest: config_bundle().signed.id(),
            release: 23,
            version: "2.4.0".into(),
        };
        let new = ReleaseRef {
            manifest: firmware().signed.id(),
            release: 24,
            version: "2.4.1".into(),
        };
        let base = StatusRecord {
            device: "press-7".into(),
            site: Some("hall-a".into()),
            hardware: Some(HARDWARE.into()),
            channel: CHANNEL.into(),
            installed: Some(old.clone()),
            target: Some(new.clone()),
            phase: Phase::Downloading,
            note: None,
            last_error: None,
            attempts: 0,
            traffic: Default::default(),
            seq: NOW * 1000,
        };
        let records = [
            (0, base.clone()),
            (
                0,
                StatusRecord {
                    phase: Phase::Verified,
                    note: Some("not yet in stage".into()),
                    seq: NOW * 1000 + 30_000,
                    ..base.clone()
                },
            ),
            (
                1,
                StatusRecord {
                    device: "press-12".into(),
                    installed: Some(new.clone()),
                    phase: Phase::Committed,
                    attempts: 1,
                    traffic: Default::default(),
                    seq: NOW * 1000 + 95_000,
                    ..base.clone()
                },
            ),
            (
                2,
                StatusRecord {
                    device: "lathe-3".into(),
                    site: Some("hall-b".into()),
                    phase: Phase::RolledBack,
                    last_error: Some(
                        "health hook /usr/lib/pollen/selftest exited with status 3".into(),
                    ),
                    attempts: 2,
                    traffic: Default::default(),
                    seq: NOW * 1000 + 120_000,
                    ..base.clone()
                },
            ),
            (
                2,
                StatusRecord {
                    device: "lathe-3".into(),
                    site: None,
                    hardware: None,
                    installed: None,
                    target: None,
                    phase: Phase::Idle,
                    seq: NOW * 1000 + 1,
                    ..base
                },
            ),
        ];
        records
            .into_iter()
            .map(|(k, r)| SignedStatus::sign(r, &device_key(k)))
            .collect()
    })
}

/// Which chunks of the firmware a device half-way through holds.
pub fn have_some() -> Bitfield {
    let len = unique_chunks(firmware().signed.manifest()).len() as u32;
    let mut have = Bitfield::new(len);
    for i in (0..len).step_by(2) {
        have.set(i);
    }
    have
}

/// The firmware's unique chunk count: what a `Have` must match.
pub fn firmware_chunk_count() -> u32 {
    unique_chunks(firmware().signed.manifest()).len() as u32
}

fn announce() -> Announce {
    Announce {
        manifest: firmware().signed.id(),
        release: 24,
    }
}

/// Requests as nodes send them (named for the seed files).
pub fn requests() -> Vec<(&'static str, Request)> {
    let id = firmware().signed.id();
    let site = Some(SiteId::from_name("hall-a"));
    vec![
        (
            "hello-gateway",
            Request::Hello(Hello {
                channel: CHANNEL.into(),
                site,
                newest: Some(announce()),
                role: Role {
                    origin: false,
                    uplink: true,
                    gateway: true,
                },
                policy: None,
                credential: None,
            }),
        ),
        (
            "hello-fresh-device",
            Request::Hello(Hello {
                channel: CHANNEL.into(),
                site,
                newest: None,
                role: Role::default(),
                policy: None,
                credential: None,
            }),
        ),
        (
            "announce",
            Request::Announce {
                channel: CHANNEL.into(),
                announce: announce(),
            },
        ),
        ("get-manifest", Request::GetManifest(id)),
        ("get-have", Request::GetHave(id)),
        (
            "gained",
            Request::Gained {
                manifest: id,
                indices: have_some().iter_ones().collect(),
            },
        ),
        (
            "get-chunk",
            Request::GetChunk {
                manifest: id,
                index: 3,
            },
        ),
        ("get-peers", Request::GetPeers),
        (
            "status",
            Request::Status(
                status_records()
                    .iter()
                    .map(|s| StatusEntry {
                        record: ByteBuf::from(s.to_bytes().to_vec()),
                        credential: None,
                    })
                    .collect(),
            ),
        ),
        (
            "control",
            Request::Control(ByteBuf::from(controls()[1].clone())),
        ),
        ("get-control", Request::GetControl(id)),
        (
            "role",
            Request::Role(Role {
                origin: false,
                uplink: false,
                gateway: true,
            }),
        ),
    ]
}

/// Responses as nodes and seeders send them, but for peer exchange
/// (`examples/seeds.rs` adds those: they need real libp2p peer ids).
pub fn responses() -> Vec<(&'static str, Response)> {
    vec![
        (
            "hello-seeder",
            Response::Hello(Hello {
                channel: CHANNEL.into(),
                site: None,
                newest: Some(announce()),
                role: Role {
                    origin: true,
                    uplink: true,
                    gateway: false,
                },
                policy: None,
                credential: None,
            }),
        ),
        ("ok", Response::Ok),
        ("manifest", Response::Manifest(firmware().bytes.clone())),
        ("have-some", Response::Have(have_some())),
        (
            "have-all",
            Response::Have(Bitfield::full(firmware_chunk_count())),
        ),
        (
            "chunk",
            Response::Chunk(config_bundle().chunks[0].clone().into()),
        ),
        ("not-found", Response::NotFound),
        ("busy", Response::Busy { retry_ms: 1_500 }),
        ("declined", Response::Declined { retry_ms: 4_000 }),
        ("control", Response::Control(controls()[0].clone())),
        ("pieces", pieces()),
    ]
}

/// A chunk of 70 KiB in its two pieces, as `/pollen/4` sends it.
fn pieces() -> Response {
    let chunk = pseudo_random(70 * 1024, 26);
    Response::Pieces {
        hashes: piece_hashes(&chunk),
        chunk: chunk.into(),
    }
}

/// Trust files as a device's operator writes them (the node's `trust_file`
/// reads these; key files are named relative to the trust file).
pub fn trust_files() -> Vec<(&'static str, String)> {
    vec![
        ("single-key.pub", publisher().public().to_text()),
        (
            "two-of-three",
            "# Fleet trust: two of the three release managers must sign.\n\
             threshold 2\n\
             key publisher-a.pub\n\
             key publisher-b.pub   # release manager on call\n\
             key publisher-c.pub\n"
                .into(),
        ),
        ("one-key", "key keys/publisher.pub\n".into()),
    ]
}

/// Requests to the loopback control endpoint as `pollen-node status`,
/// Prometheus and `pollen-seeder rollout` send them.
pub fn http_requests() -> Vec<(&'static str, Vec<u8>)> {
    let host = "127.0.0.1:39121";
    let mut control =
        local_http::request_head("POST", "/control", host, controls()[1].len()).into_bytes();
    control.extend_from_slice(&controls()[1]);
    vec![
        (
            "get-status",
            local_http::request_head("GET", "/status", host, 0).into_bytes(),
        ),
        (
            "get-metrics",
            local_http::request_head("GET", "/metrics", host, 0).into_bytes(),
        ),
        ("post-control", control),
    ]
}

/// The fleet roles' fixture keys, by name: what `examples/fleet_keys.rs`
/// writes as key files for `scripts/fuzz-trust-seeds.sh`, and what the
/// `policy` and `credential` targets' fixed policies name.
pub const FLEET_KEYS: [(&str, u8); 5] = [
    ("root", 0x51),
    ("new-root", 0x52),
    ("release", 0x53),
    ("operator", 0x54),
    ("enroll", 0x55),
];

/// A fleet role's fixture key, by its name in [`FLEET_KEYS`].
pub fn fleet_key(name: &str) -> SecretKey {
    let byte = FLEET_KEYS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, b)| *b)
        .expect("a name in FLEET_KEYS");
    SecretKey::from_bytes(&[byte; 32])
}

fn single(name: &str) -> TrustPolicy {
    TrustPolicy::single(fleet_key(name).public())
}

/// A device that holds a trust file naming the root key alone: version 0,
/// whose first signed policy must carry the root key's signature.
pub fn held_trust() -> &'static VerifiedPolicy {
    static P: OnceLock<VerifiedPolicy> = OnceLock::new();
    P.get_or_init(|| VerifiedPolicy::from_trust(single("root")))
}

/// A device that holds version 1 of the fleet policy: the roles the seed
/// script's first policy names (root, release, operator, enroll), signed
/// by the root key.
pub fn held_policy() -> &'static VerifiedPolicy {
    static P: OnceLock<VerifiedPolicy> = OnceLock::new();
    P.get_or_init(|| {
        let policy = FleetPolicy::new(
            1,
            NOW + 365 * 86_400,
            [single("root"), single("release"), single("operator")],
            Some(single("enroll")),
        );
        let bytes = SignedPolicy::sign(policy, &[&fleet_key("root")])
            .expect("a valid policy")
            .encode();
        VerifiedPolicy::first(&bytes, NOW).expect("signed by its root")
    })
}

/// A fleet on the publisher's trust file ([`policy`]) as a device holds it.
pub fn held_publisher_trust() -> &'static VerifiedPolicy {
    static P: OnceLock<VerifiedPolicy> = OnceLock::new();
    P.get_or_init(|| VerifiedPolicy::from_trust(policy()))
}

/// Channel indexes as `pollen-seeder export --origin` writes them for the
/// firmware: one under the fixture fleet (signed by its operator key,
/// naming the halt control and policy version 1, [`held_policy`]), one
/// for a fleet on the publisher's trust file (no control, no policy).
pub fn indexes() -> &'static [Vec<u8>] {
    static I: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    I.get_or_init(|| {
        let fleet = ChannelIndex {
            channel: CHANNEL.into(),
            seq: NOW * 1000,
            issued_at: NOW,
            expires_at: NOW + 7 * 86_400,
            manifest: firmware().signed.id(),
            release: 24,
            control: Some(ControlId::of(&controls()[1])),
            policy_version: Some(1),
        };
        let trust_file = ChannelIndex {
            seq: NOW * 1000 + 1,
            control: None,
            policy_version: None,
            ..fleet.clone()
        };
        [(fleet, fleet_key("operator")), (trust_file, publisher())]
            .into_iter()
            .map(|(index, key)| {
                SignedIndex::sign(index, &[&key])
                    .expect("a plain channel name")
                    .encode()
            })
            .collect()
    })
}
