//! Writes the seed corpora, `fuzz/seeds/<target>/<name>`, from genuine
//! values (`pollen_fuzz`'s fixtures, made with pollen-core's own APIs) and
//! real libp2p peer ids and addresses for peer exchange.
//!
//! `cargo run --manifest-path fuzz/Cargo.toml --example seeds` (no fuzzing
//! flags). The output is the same on every run; seed files of the same
//! name are overwritten, others left alone.

use std::path::{Path, PathBuf};

use libp2p_identity::{Keypair, PeerId};
use multiaddr::Multiaddr;
use pollen_core::swarm::{Bitfield, SiteId};
use pollen_core::wire::{frame_header, PeerRecord, Response, Role, SESSION_PREAMBLE};
use serde_bytes::ByteBuf;

type Seeds = Vec<(String, Vec<u8>)>;

fn named<N: Into<String>>(list: impl IntoIterator<Item = (N, Vec<u8>)>) -> Seeds {
    list.into_iter().map(|(n, b)| (n.into(), b)).collect()
}

fn peer(n: u8) -> PeerId {
    let mut secret = [n; 32];
    Keypair::ed25519_from_bytes(&mut secret)
        .expect("32 bytes are an ed25519 secret")
        .public()
        .to_peer_id()
}

fn addr(text: &str) -> ByteBuf {
    ByteBuf::from(text.parse::<Multiaddr>().expect("valid multiaddr").to_vec())
}

/// Peer exchange as a gateway answers it: other sites' gateways first.
fn peer_responses() -> Seeds {
    let gateway = PeerRecord {
        peer: peer(1).to_bytes(),
        addrs: vec![
            addr("/ip4/192.168.20.11/tcp/4001"),
            addr("/ip4/192.168.20.11/udp/4001/quic-v1"),
            addr("/ip6/fd00:20::11/tcp/4001"),
        ],
        site: Some(SiteId::from_name("hall-b")),
        role: Role {
            origin: false,
            uplink: true,
            gateway: true,
        },
    };
    let device = PeerRecord {
        peer: peer(2).to_bytes(),
        addrs: vec![addr(&format!(
            "/ip4/192.168.10.23/tcp/4001/p2p/{}",
            peer(2)
        ))],
        site: Some(SiteId::from_name("hall-a")),
        role: Role::default(),
    };
    let seeder = PeerRecord {
        peer: peer(3).to_bytes(),
        addrs: vec![addr("/ip4/203.0.113.10/tcp/4001")],
        site: None,
        role: Role {
            origin: true,
            uplink: true,
            gateway: false,
        },
    };
    [
        ("peers", vec![gateway, device, seeder.clone()]),
        ("peers-seeder-only", vec![seeder]),
        ("peers-none", vec![]),
    ]
    .into_iter()
    .map(|(name, list)| {
        let bytes = Response::Peers(list).encode().expect("encodes");
        (name.to_owned(), bytes)
    })
    .collect()
}

fn framed(direction: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![direction];
    out.extend_from_slice(&frame_header(body.len()).expect("fits"));
    out.extend_from_slice(body);
    out
}

/// `messages` as a session carries them: mode `direction | 2`, the
/// preamble, then each message framed behind its tag.
fn on_session(direction: u8, messages: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = vec![direction | 2];
    out.extend_from_slice(&SESSION_PREAMBLE);
    for (tag, (_, body)) in (0u32..).zip(messages) {
        out.extend_from_slice(&tag.to_be_bytes());
        out.extend_from_slice(&frame_header(body.len()).expect("fits"));
        out.extend_from_slice(body);
    }
    out
}

fn bitfield_seed(expected: u32, have: &Bitfield) -> Vec<u8> {
    let mut out = expected.to_le_bytes().to_vec();
    out.extend(postcard::to_stdvec(have).expect("encodes"));
    out
}

fn all_seeds() -> Vec<(&'static str, Seeds)> {
    let requests: Seeds = pollen_fuzz::requests()
        .into_iter()
        .map(|(n, r)| (n.to_owned(), r.encode().expect("encodes")))
        .collect();
    let mut responses: Seeds = pollen_fuzz::responses()
        .into_iter()
        .map(|(n, r)| (n.to_owned(), r.encode().expect("encodes")))
        .collect();
    responses.extend(peer_responses());
    let frames: Seeds = requests
        .iter()
        .map(|(n, b)| (format!("request-{n}"), framed(0, b)))
        .chain(
            responses
                .iter()
                .map(|(n, b)| (format!("response-{n}"), framed(1, b))),
        )
        .chain([
            ("session-requests".into(), on_session(0, &requests)),
            ("session-responses".into(), on_session(1, &responses)),
        ])
        .collect();

    let n = pollen_fuzz::firmware_chunk_count();
    let mut bitfields = named([
        ("have-some", bitfield_seed(n, &pollen_fuzz::have_some())),
        ("have-all", bitfield_seed(n, &Bitfield::full(n))),
        ("have-none", bitfield_seed(n, &Bitfield::new(n))),
    ]);
    // A release of 130 unique chunks (three words), part fetched.
    let mut big = Bitfield::new(130);
    for i in [0, 1, 63, 64, 100, 129] {
        big.set(i);
    }
    bitfields.push(("have-130".into(), bitfield_seed(130, &big)));

    vec![
        (
            "manifest_verify",
            named([
                ("firmware.pollen", pollen_fuzz::firmware().bytes.clone()),
                ("config.pollen", pollen_fuzz::config_bundle().bytes.clone()),
            ]),
        ),
        ("wire_request", requests),
        ("wire_frame", frames),
        ("peer_record", peer_responses()),
        ("wire_response", responses),
        (
            "status_record",
            pollen_fuzz::status_records()
                .iter()
                .enumerate()
                .map(|(i, s)| (format!("status-{i}"), s.to_bytes().to_vec()))
                .collect(),
        ),
        (
            "rollout_control",
            named(
                ["promote", "halt", "resume"]
                    .into_iter()
                    .zip(pollen_fuzz::controls().iter().cloned()),
            ),
        ),
        ("bitfield", bitfields),
        (
            "trust_text",
            named(
                pollen_fuzz::trust_files()
                    .into_iter()
                    .map(|(n, t)| (n, t.into_bytes())),
            ),
        ),
        ("local_http", named(pollen_fuzz::http_requests())),
        (
            "origin_index",
            named(
                ["fleet-operator", "trust-file"]
                    .into_iter()
                    .zip(pollen_fuzz::indexes().iter().cloned()),
            ),
        ),
    ]
}

fn main() -> std::io::Result<()> {
    let root: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    for (target, seeds) in all_seeds() {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        for (name, bytes) in &seeds {
            std::fs::write(dir.join(name), bytes)?;
        }
        println!("{target}: {} seeds", seeds.len());
    }
    Ok(())
}
