//! Floods from a test client — raw connections that never handshake,
//! thousands of chunk requests, frames claiming a gigabyte — leave the node
//! serving an honest peer, alive and with bounded memory.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::{AsyncRead, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::{noise, tcp, yamux, Multiaddr, PeerId};
use pollen_core::manifest::ManifestId;
use pollen_core::wire::Request;
use pollen_e2e::{file_blake3, run_json, s, Daemon, Release};
use pollen_node::net::protocol::STREAM_PROTOCOL;
use pollen_node::net::{build_swarm, pollen, Limits};

/// A codec that announces a 4 GiB frame and then streams zeros.
#[derive(Clone, Default)]
struct Oversize;

impl request_response::Codec for Oversize {
    type Protocol = libp2p::StreamProtocol;
    type Request = ();
    type Response = ();
    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &Self::Protocol,
        _: &mut T,
    ) -> std::io::Result<()> {
        Ok(())
    }
    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &Self::Protocol,
        _: &mut T,
    ) -> std::io::Result<()> {
        Ok(())
    }
    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &Self::Protocol,
        io: &mut T,
        _: (),
    ) -> std::io::Result<()> {
        io.write_all(&u32::MAX.to_be_bytes()).await?;
        let zeros = vec![0u8; 64 * 1024];
        for _ in 0..64 {
            io.write_all(&zeros).await?;
        }
        io.close().await
    }
    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &Self::Protocol,
        _: &mut T,
        _: (),
    ) -> std::io::Result<()> {
        Ok(())
    }
}

fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

/// Floods `target` with chunk requests and oversize frames until `stop`.
fn flood(
    target: Multiaddr,
    peer: PeerId,
    manifest: ManifestId,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
) {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            // On `/pollen/3`: its chunk requests go out as notices, with
            // nowhere for pieces to land, so on `/pollen/4` each answer
            // would break its session and the flood would move to a
            // stream per request — a different flood from the one this
            // test has always measured.
            let old = Limits {
                pieces: false,
                ..Limits::default()
            };
            let mut honest_codec = build_swarm(
                libp2p::identity::Keypair::generate_ed25519(),
                false,
                &old,
                pollen_node::net::Transport::Network,
                pollen_node::net::Advertise::Listen,
            )
            .expect("swarm");
            let mut evil = libp2p::SwarmBuilder::with_new_identity()
                .with_tokio()
                .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
                .expect("tcp")
                .with_behaviour(|_| {
                    request_response::Behaviour::with_codec(Oversize, [(STREAM_PROTOCOL, ProtocolSupport::Outbound)], request_response::Config::default())
                })
                .expect("behaviour")
                .build();
            let _ = honest_codec.dial(target.clone());
            let _ = evil.dial(target.clone());
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            let mut index = 0u32;
            while !stop.load(Ordering::Relaxed) {
                tokio::select! {
                    _ = honest_codec.select_next_some() => {}
                    _ = evil.select_next_some() => {}
                    _ = tick.tick() => {
                        // Keep knocking: pending-connection limits may turn us away at first.
                        if !honest_codec.is_connected(&peer) {
                            let _ = honest_codec.dial(target.clone());
                        }
                        if !evil.is_connected(&peer) {
                            let _ = evil.dial(target.clone());
                        }
                        if honest_codec.is_connected(&peer) {
                            for _ in 0..50 {
                                honest_codec.behaviour_mut().pollen.send(Duration::ZERO, &peer, Request::GetChunk { manifest, index: index % 64 }, pollen::Pending::Notice);
                                index += 1;
                                sent.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        if evil.is_connected(&peer) {
                            evil.behaviour_mut().send_request(&peer, ());
                        }
                    }
                }
            }
        });
    });
}

#[test]
fn floods_do_not_stop_honest_service() {
    let r = Release::publish(32 << 20, 8);
    let (t, trust, published) = (r.dir.as_path(), r.trust.clone(), &r.report);
    let (seeder, seeder_addr) = r.serve();
    // The victim: a node holding the release.
    let mut victim = Daemon::spawn(
        "pollen-node",
        &[
            "run",
            "--data",
            s(&t.join("victim")),
            "--trust",
            &trust,
            "--channel",
            "stable",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--no-mdns",
            "--peer",
            &seeder_addr,
        ],
    );
    let victim_addr = victim.loopback_addr();
    victim
        .wait_for(Duration::from_secs(120), |out, l| {
            (out && l.starts_with("complete ")).then_some(())
        })
        .expect("victim completes");
    drop(seeder); // from now on only the victim can serve the release

    let target: Multiaddr = victim_addr.parse().expect("addr");
    let peer: PeerId = victim_addr
        .rsplit("/p2p/")
        .next()
        .expect("id")
        .parse()
        .expect("peer id");
    let port: u16 = victim_addr
        .split("/tcp/")
        .nth(1)
        .and_then(|p| p.split('/').next())
        .and_then(|p| p.parse().ok())
        .expect("port");
    let mut raw = Vec::new();
    for i in 0..400 {
        if let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            if i % 2 == 0 {
                let _ = c.write_all(&[0xff; 512]);
            }
            raw.push(c);
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let mut manifest = [0u8; 32];
    hex::decode_to_slice(
        published["manifest_id"].as_str().expect("id"),
        &mut manifest,
    )
    .expect("hex");
    flood(
        target,
        peer,
        ManifestId(manifest),
        stop.clone(),
        sent.clone(),
    );

    // Let the floods get going before the honest peer arrives.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while sent.load(Ordering::Relaxed) < 2000 && std::time::Instant::now() < deadline {
        victim.wait_for(Duration::from_millis(100), |_, _| None::<()>);
    }
    assert!(
        sent.load(Ordering::Relaxed) >= 2000,
        "the flood never got going"
    );
    let out = t.join("honest.img");
    let started = std::time::Instant::now();
    let report = run_json(
        "pollen-node",
        &[
            "fetch",
            "--data",
            s(&t.join("honest")),
            "--trust",
            &trust,
            "--channel",
            "stable",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--no-mdns",
            "--peer",
            &victim_addr,
            "--out",
            s(&out),
            "--timeout",
            "4m",
        ],
    );
    stop.store(true, Ordering::Relaxed);
    assert_eq!(file_blake3(&out), r.blake3);
    assert!(
        victim.child.try_wait().expect("wait").is_none(),
        "the victim died"
    );
    let hwm = vm_hwm_kib(victim.child.id());
    println!(
        "under {} raw connections, {} flood requests and 4 GiB frame claims: honest fetch of 32 MiB completed ({} chunks) in {:.1} s, victim peak RSS {} MiB",
        raw.len(),
        sent.load(Ordering::Relaxed),
        report["chunks_fetched"],
        started.elapsed().as_secs_f64(),
        hwm / 1024
    );
    assert!(hwm < 300 * 1024, "victim peak RSS {hwm} KiB");
}
