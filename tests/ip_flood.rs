//! A flood of connections from one address under fresh peer ids (root
//! only: `#[ignore = "needs root"]`, like tests/netns.rs). An attacker in a
//! namespace of its own opens 1 000 connections to a device, each under a
//! new libp2p identity, never says hello and holds what it gets. The device
//! must still reach its seeder (which comes up only during the flood) and
//! complete, and then serve an honest device on another address: a new
//! peer id costs nothing, so only the per-address limit on connections
//! that have not completed the exchange (`net::ip_limit`) stands between
//! the attacker and the device's connection budget.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::swarm::{dummy, SwarmEvent};
use libp2p::{noise, tcp, yamux, Multiaddr};
use pollen_e2e::netns::{enter, exclusive, require, Site};
use pollen_e2e::{file_blake3, poll, run_json_in, s, Daemon, Release};
use pollen_node::net::Limits;

/// Attempts in their handshake at once: fewer than the device's pending
/// limit, so the attempts that get through are what its limits on
/// established connections allow.
const IN_FLIGHT: usize = 16;

/// What the attacker saw, counted from its side.
#[derive(Debug, Default)]
struct Tally {
    /// Connections whose handshake completed.
    established: AtomicU32,
    /// Attempts dropped before their handshake completed.
    refused: AtomicU32,
    /// Established connections that closed since (denied once
    /// established, or dropped later).
    closed: AtomicU32,
}

impl Tally {
    fn get(&self) -> (u32, u32, u32) {
        (
            self.established.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
            self.closed.load(Ordering::Relaxed),
        )
    }
}

/// One attempt under a fresh identity: dial (with one of the
/// [`IN_FLIGHT`] permits until the handshake is over), never speak, hold
/// the connection until `stop`.
async fn attempt(
    target: Multiaddr,
    tally: Arc<Tally>,
    permits: Arc<tokio::sync::Semaphore>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut permit = Some(permits.acquire_owned().await.expect("semaphore"));
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .expect("tcp")
        .with_behaviour(|_| dummy::Behaviour)
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        .build();
    if swarm.dial(target).is_err() {
        tally.refused.fetch_add(1, Ordering::Relaxed);
        return;
    }
    loop {
        tokio::select! {
            event = swarm.select_next_some() => match event {
                SwarmEvent::ConnectionEstablished { .. } => {
                    tally.established.fetch_add(1, Ordering::Relaxed);
                    permit.take();
                }
                SwarmEvent::ConnectionClosed { .. } => {
                    tally.closed.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                SwarmEvent::OutgoingConnectionError { .. } => {
                    tally.refused.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                _ => {}
            },
            _ = stop.changed() => return,
        }
    }
}

/// Makes `attempts` connection attempts to `target` from namespace `ns`,
/// [`IN_FLIGHT`] at a time; what gets through is held until `stop`.
fn flood(
    ns: String,
    target: Multiaddr,
    attempts: u32,
    tally: Arc<Tally>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        enter(&ns);
        // One thread: every socket is opened in the attacker's namespace.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let permits = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
            let tasks: Vec<_> = (0..attempts)
                .map(|_| {
                    let (target, tally) = (target.clone(), tally.clone());
                    tokio::spawn(attempt(target, tally, permits.clone(), stop.clone()))
                })
                .collect();
            for t in tasks {
                t.await.expect("attempt task");
            }
        });
    })
}

#[test]
#[ignore = "needs root"]
fn fresh_peer_ids_from_one_address_do_not_starve_the_device() {
    const ATTEMPTS: u32 = 1000;
    let _lock = exclusive();
    require();
    let site = Site::new(3);
    let (victim_ns, honest_ns, attacker_ns) =
        (&site.devices[0], &site.devices[1], &site.devices[2]);
    let r = Release::publish(16 << 20, 41);

    // The seeder's address (its identity stays in its store); it is down
    // until the flood is under way.
    let (mut seeder, seeder_addr) = r.serve_in(&site.cloud, &site.cloud_ip());
    seeder.kill();

    let victim_ip = site.device_ip(0);
    let listen = format!("/ip4/{victim_ip}/tcp/4100");
    let mut victim = Daemon::spawn_in(
        victim_ns,
        "pollen-node",
        &[
            "run",
            "--data",
            s(&r.dir.join("victim")),
            "--trust",
            &r.trust,
            "--channel",
            "stable",
            "--listen",
            &listen,
            "--no-mdns",
            "--peer",
            &seeder_addr,
        ],
    );
    let victim_addr = victim.listen_addr(&victim_ip);

    let tally = Arc::new(Tally::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let attacker = flood(
        attacker_ns.clone(),
        victim_addr.parse().expect("victim address"),
        ATTEMPTS,
        tally.clone(),
        stop_rx,
    );
    let flood_started = Instant::now();
    poll(Duration::from_secs(120), "every attempt answered", || {
        let (established, refused, _) = tally.get();
        if established + refused == ATTEMPTS {
            Ok(())
        } else {
            Err(format!("{established} established, {refused} refused"))
        }
    });
    let flood_secs = flood_started.elapsed().as_secs_f64();
    let (established, refused, _) = tally.get();
    assert!(established > 0, "the flood never got a connection in");

    // The seeder comes back while the attacker holds its connections: the
    // device's own dial must get through, and it completes.
    let back = Instant::now();
    let (_seeder, again) = r.serve_in(&site.cloud, &site.cloud_ip());
    assert_eq!(again, seeder_addr, "the seeder kept its identity");
    let report = victim
        .wait_complete(Duration::from_secs(180))
        .unwrap_or_else(|| {
            panic!(
                "the flooded device did not complete (attacker: established, refused, closed {:?}): {:?}",
                tally.get(),
                victim.stderr
            )
        });
    let victim_secs = back.elapsed().as_secs_f64();
    let seeder_id = seeder_addr.rsplit("/p2p/").next().expect("seeder id");
    assert!(
        report["bytes_from"][seeder_id].as_u64().unwrap_or(0) > 0,
        "the device got nothing from its seeder: {report}"
    );
    drop(_seeder); // from now on only the flooded device serves the release

    // An honest device on another address fetches from the flooded one.
    let out = r.dir.join("honest.img");
    let data = r.dir.join("honest");
    let mut args = r.fetch_args(&data, &out, &[&victim_addr]);
    args.extend_from_slice(&["--timeout", "3m"]);
    let fetch_started = Instant::now();
    let honest = run_json_in(honest_ns, "pollen-node", &args);
    let fetch_secs = fetch_started.elapsed().as_secs_f64();
    assert_eq!(file_blake3(&out), r.blake3);
    assert!(
        victim.child.try_wait().expect("wait").is_none(),
        "the flooded device died"
    );

    // What the attacker holds now, the device let it keep.
    let limit = Limits::default().max_unadmitted_per_ip;
    let (established_end, refused_end, closed) = tally.get();
    assert_eq!(
        (established_end, refused_end),
        (established, refused),
        "attempts are over"
    );
    let held = established - closed;
    assert!(
        held <= limit,
        "{held} connections held from one address (limit {limit})"
    );
    assert!(held > 0, "the device dropped every attacker connection");
    let _ = stop_tx.send(true);
    attacker.join().expect("attacker thread");

    println!(
        "{ATTEMPTS} connection attempts from one address under fresh peer ids, {IN_FLIGHT} at a time \
         (all answered in {flood_secs:.1} s): {refused} refused during the handshake, {established} established, \
         of which {closed} closed by the device and {held} held to the end (limit {limit})"
    );
    println!(
        "under the flood: the device reached its seeder and completed 16 MiB {victim_secs:.1} s after the seeder came back; \
         an honest device fetched the release from it in {fetch_secs:.1} s ({} chunks)",
        honest["chunks_fetched"]
    );
}
