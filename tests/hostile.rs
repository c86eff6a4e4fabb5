//! Hostile peers speaking the real protocol: one serves corrupted chunks,
//! one sends more bytes than asked. Both are detected, penalised and
//! banned; the honest download completes and nothing corrupt is stored.
//! And a seeder whose own disk corrupted a chunk: it answers `NotFound` for
//! that chunk, says why, and keeps serving.

use std::time::Duration;

use futures::StreamExt;

use libp2p::swarm::SwarmEvent;
use pollen_core::chunk::{chunks, ChunkParams};
use pollen_core::manifest::SignedManifest;
use pollen_core::swarm::{unique_chunks, Bitfield};
use pollen_core::wire::{Announce, Hello, Request, Response, Role};
use pollen_e2e::{file_blake3, run, run_json, run_ok, s, Release};
use pollen_node::net::{build_swarm, pollen, BehaviourEvent, Limits};

#[derive(Clone, Copy, Debug)]
enum Lie {
    Corrupt,
    Oversize,
}

/// Runs a hostile peer on a thread of its own; returns its address.
fn hostile_peer(lie: Lie, manifest: Vec<u8>, artifact: &std::path::Path) -> String {
    let signed = SignedManifest::decode(&manifest).expect("manifest");
    let data = std::fs::read(artifact).expect("artifact");
    let by_id: std::collections::HashMap<_, _> = chunks(&data[..], ChunkParams::DEFAULT)
        .map(|c| c.expect("chunk"))
        .map(|c| (c.id(), c.data().to_vec()))
        .collect();
    let list = unique_chunks(signed.manifest());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let mut swarm = build_swarm(
                libp2p::identity::Keypair::generate_ed25519(),
                false,
                &Limits::default(),
                pollen_node::net::Transport::Network,
                pollen_node::net::Advertise::Listen,
            )
            .expect("swarm");
            swarm
                .listen_on("/ip4/127.0.0.1/tcp/0".parse().expect("addr"))
                .expect("listen");
            let announce = Announce {
                manifest: signed.id(),
                release: signed.manifest().release,
            };
            loop {
                match swarm.select_next_some().await {
                    SwarmEvent::NewListenAddr { address, .. } => {
                        let _ = tx.send(format!("{address}/p2p/{}", swarm.local_peer_id()));
                    }
                    SwarmEvent::Behaviour(BehaviourEvent::Pollen(pollen::Event::Request {
                        request,
                        channel,
                        ..
                    })) => {
                        let response = match request {
                            Request::Hello(_) => Response::Hello(Hello {
                                channel: "stable".into(),
                                site: None,
                                newest: Some(announce),
                                role: Role {
                                    origin: true,
                                    ..Role::default()
                                },
                                policy: None,
                                credential: None,
                            }),
                            Request::GetManifest(_) => Response::Manifest(manifest.clone()),
                            Request::GetHave(_) => {
                                Response::Have(Bitfield::full(list.len() as u32))
                            }
                            Request::GetChunk { index, .. } => {
                                let mut bytes = by_id[&list[index as usize].id].clone();
                                match lie {
                                    Lie::Corrupt => {
                                        let mid = bytes.len() / 2;
                                        bytes[mid] ^= 0x40;
                                    }
                                    Lie::Oversize => bytes.extend_from_slice(&[0u8; 64 * 1024]),
                                }
                                Response::Chunk(bytes.into())
                            }
                            Request::GetPeers => Response::Peers(Vec::new()),
                            _ => Response::Ok,
                        };
                        swarm.behaviour_mut().pollen.respond(channel, response);
                    }
                    _ => {}
                }
            }
        });
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("hostile peer address")
}

fn run_against(lie: Lie) {
    let r = Release::publish(24 << 20, 5);
    let t = r.dir.as_path();
    let liar = hostile_peer(
        lie,
        std::fs::read(&r.manifest).expect("manifest"),
        &r.artifact,
    );
    let liar_id = liar.rsplit("/p2p/").next().expect("id").to_owned();
    let (_seeder, seeder_addr) = r.serve();
    let data = t.join("node");
    let out = t.join("out.img");
    let mut args = r.fetch_args(&data, &out, &[&liar, &seeder_addr]);
    args.extend_from_slice(&["--timeout", "3m", "--seed", "1"]);
    let report = run_json("pollen-node", &args);
    println!(
        "{lie:?}: rejected {} chunks, banned {}",
        report["chunks_rejected"], report["banned"]
    );
    assert!(
        report["chunks_rejected"].as_u64().expect("rejected") >= 2,
        "{report}"
    );
    assert!(
        report["banned"]
            .as_array()
            .expect("banned")
            .iter()
            .any(|b| b == liar_id.as_str()),
        "{report}"
    );
    assert!(
        !report["bytes_from"]
            .as_object()
            .expect("bytes_from")
            .contains_key(&liar_id),
        "bytes accepted from the liar"
    );
    assert_eq!(file_blake3(&out), r.blake3);
    run_ok("pollen-node", &["check", "--data", s(&data)]);
}

#[test]
fn corrupting_peer_is_banned() {
    run_against(Lie::Corrupt);
}

#[test]
fn oversending_peer_is_banned() {
    run_against(Lie::Oversize);
}

#[test]
fn corruption_on_the_seeders_disk_is_not_served_and_the_seeder_keeps_running() {
    let r = Release::publish(6 << 20, 91);
    // Flip bytes in the middle of every pack file (where the seeder keeps
    // chunk bytes): some chunk's bytes no longer match its id.
    let mut flipped = 0;
    let packs = r.store.join("packs");
    for entry in std::fs::read_dir(&packs).expect("pack folder") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "pack") {
            let mut bytes = std::fs::read(&path).expect("pack file");
            let mid = bytes.len() / 2;
            for b in &mut bytes[mid..mid + 64] {
                *b ^= 0x5a;
            }
            std::fs::write(&path, bytes).expect("write pack file");
            flipped += 1;
        }
    }
    assert!(flipped > 0, "no pack file in {}", packs.display());
    let (mut seeder, addr) = r.serve();
    let data = r.dir.join("node");
    let out = r.dir.join("out.img");
    let mut args = r.fetch_args(&data, &out, &[&addr]);
    args.extend_from_slice(&["--timeout", "10s"]);
    let fetch = run("pollen-node", &args);
    assert!(
        !fetch.status.success(),
        "a release with a corrupt chunk completed"
    );
    assert!(!out.exists());
    let said = seeder.wait_for(Duration::from_secs(10), |is_out, l| {
        (!is_out && l.contains("answering NotFound")).then_some(())
    });
    assert!(said.is_some(), "seeder stderr: {:?}", seeder.stderr);
    assert!(
        seeder.child.try_wait().expect("wait").is_none(),
        "the seeder stopped"
    );
    // Still serving: the node's store holds every chunk but the bad ones,
    // and nothing it holds is corrupt.
    let check = run_json("pollen-node", &["check", "--data", s(&data)]);
    assert!(check["chunks"].as_u64().expect("chunks") > 0, "{check}");
    assert_eq!(check["problems"], serde_json::json!([]), "{check}");
}
