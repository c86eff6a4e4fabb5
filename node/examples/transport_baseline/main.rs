//! The baseline for the mesh benchmark: the same libp2p transport Pollen
//! uses (TCP + Noise + Yamux over loopback) moving N MiB over one bare
//! stream, with no chunking, hashing or storage. Prints MB/s.
//!
//! `cargo run --example transport_baseline -- 1024`
//!
//! With `-- 1024 K D`, the same bytes as requests of K KiB each, D in
//! flight, each answered on a stream of its own (request-response): what
//! a stream per chunk costs, without Pollen's own work.
//!
//! With `-- 1024 --floor DIR`, the floor (`floor.rs`): the bare stream
//! plus the per-byte work no chunk-verifying store can skip — the sender
//! reads each piece from a file on disk and checks it, the receiver checks
//! it and writes it, synced — with none of Pollen's protocol. Files go to
//! DIR.

mod floor;

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::SwarmEvent;
use libp2p::{noise, tcp, yamux, StreamProtocol};

const PROTO: StreamProtocol = StreamProtocol::new("/pollen-bench/bare/1");

/// Request: how many bytes to send. Response: the bytes, streamed, counted on arrival.
/// Each stream's codec remembers how many it asked for (its read buffer's size).
#[derive(Clone, Default)]
struct Bare {
    asked: u64,
    floor: Option<Floor>,
}

/// The floor's two ends (one process holds both).
#[derive(Clone)]
struct Floor {
    source: Arc<floor::Source>,
    dir: PathBuf,
}

impl request_response::Codec for Bare {
    type Protocol = StreamProtocol;
    type Request = u64;
    type Response = u64;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<u64> {
        let mut b = [0u8; 8];
        io.read_exact(&mut b).await?;
        Ok(u64::from_be_bytes(b))
    }
    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<u64> {
        if let Some(f) = &self.floor {
            let sink = floor::Sink::create(&f.dir, f.source.hashes())?;
            return sink.receive(io, self.asked).await;
        }
        let mut buf = vec![0u8; self.asked.clamp(1, 1 << 20) as usize];
        let mut total = 0u64;
        loop {
            let n = io.read(&mut buf).await?;
            if n == 0 {
                return Ok(total);
            }
            total += n as u64;
        }
    }
    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        n: u64,
    ) -> io::Result<()> {
        self.asked = n;
        io.write_all(&n.to_be_bytes()).await?;
        io.close().await
    }
    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        n: u64,
    ) -> io::Result<()> {
        if let Some(f) = &self.floor {
            f.source.send(io, n).await?;
            return io.close().await;
        }
        let buf = vec![0xa5u8; n.min(1 << 20) as usize];
        let mut left = n;
        while left > 0 {
            let k = left.min(buf.len() as u64) as usize;
            io.write_all(&buf[..k]).await?;
            left -= k as u64;
        }
        io.close().await
    }
}

fn swarm(floor: Option<Floor>) -> libp2p::Swarm<request_response::Behaviour<Bare>> {
    let cfg = request_response::Config::default()
        .with_request_timeout(std::time::Duration::from_secs(600));
    libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .expect("tcp")
        .with_behaviour(|_| {
            request_response::Behaviour::with_codec(
                Bare { asked: 0, floor },
                [(PROTO, ProtocolSupport::Full)],
                cfg,
            )
        })
        .expect("behaviour")
        .build()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mib: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1024);
    let floor_dir = (args.get(2).map(String::as_str) == Some("--floor"))
        .then(|| args.get(3).map(PathBuf::from).expect("--floor DIR"));
    let floor = floor_dir.map(|dir| Floor {
        source: Arc::new(floor::Source::create(&dir, mib << 20).expect("the floor's source file")),
        dir,
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let mut server = swarm(floor.clone());
        server
            .listen_on("/ip4/127.0.0.1/tcp/0".parse().expect("addr"))
            .expect("listen");
        let addr = loop {
            if let SwarmEvent::NewListenAddr { address, .. } = server.select_next_some().await {
                break address;
            }
        };
        let server_id = *server.local_peer_id();
        tokio::spawn(async move {
            loop {
                if let SwarmEvent::Behaviour(request_response::Event::Message {
                    message:
                        request_response::Message::Request {
                            request, channel, ..
                        },
                    ..
                }) = server.select_next_some().await
                {
                    let _ = server.behaviour_mut().send_response(channel, request);
                }
            }
        });
        let mut client = swarm(floor.clone());
        client.dial(addr).expect("dial");
        // Optional: the same bytes as requests of `chunk` KiB, `depth` in flight.
        let chunk: u64 = if floor.is_some() {
            0
        } else {
            args.get(2).and_then(|a| a.parse().ok()).unwrap_or(0) << 10
        };
        let depth: u64 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(8);
        let total = mib << 20;
        let (mut asked, mut got) = (0u64, 0u64);
        let mut start = None;
        loop {
            match client.select_next_some().await {
                SwarmEvent::ConnectionEstablished { .. } => {
                    start = Some(Instant::now());
                    if chunk == 0 {
                        client.behaviour_mut().send_request(&server_id, total);
                    } else {
                        while asked < total && asked < depth * chunk {
                            client.behaviour_mut().send_request(&server_id, chunk);
                            asked += chunk;
                        }
                    }
                }
                SwarmEvent::Behaviour(request_response::Event::Message {
                    message: request_response::Message::Response { response, .. },
                    ..
                }) => {
                    got += response;
                    if chunk > 0 && asked < total {
                        client.behaviour_mut().send_request(&server_id, chunk);
                        asked += chunk;
                    }
                    if got < total {
                        continue;
                    }
                    let secs = start.map(|s| s.elapsed().as_secs_f64()).unwrap_or(f64::NAN);
                    let how = if floor.is_some() {
                        "floor (bare stream + disk read, BLAKE3 both ends, synced write)"
                            .to_string()
                    } else if chunk == 0 {
                        "bare stream".to_string()
                    } else {
                        format!(
                            "a stream per {} KiB request, {depth} in flight",
                            chunk >> 10
                        )
                    };
                    println!(
                        "{how}: {} MiB in {secs:.2} s = {:.1} MB/s",
                        got >> 20,
                        got as f64 / secs / 1e6
                    );
                    return;
                }
                SwarmEvent::Behaviour(request_response::Event::OutboundFailure {
                    error, ..
                }) => panic!("{error}"),
                _ => {}
            }
        }
    });
}
