//! The mesh on loopback with real processes: a seeder and six nodes, each
//! given one neighbour; peer exchange builds the mesh; everyone ends with
//! the same BLAKE3 and most chunks come from other nodes. Also a fetch
//! over QUIC, and from a seeder named by DNS.

use std::time::Duration;

use pollen_e2e::{file_blake3, run_json, s, serve_args, Daemon, Release};

#[test]
fn seeder_and_six_nodes_share_a_release() {
    let r = Release::publish(64 << 20, 77);
    let (t, trust, expected) = (r.dir.as_path(), r.trust.clone(), r.blake3.clone());
    let (mut seeder, mut prev) = r.serve();
    let mut nodes = Vec::new();
    for i in 0..6 {
        let data = t.join(format!("node{i}"));
        let out = t.join(format!("node{i}.img"));
        let mut node = Daemon::spawn(
            "pollen-node",
            &[
                "run",
                "--data",
                s(&data),
                "--trust",
                &trust,
                "--channel",
                "stable",
                "--listen",
                "/ip4/127.0.0.1/tcp/0",
                "--no-mdns",
                "--site",
                "factory",
                "--peer",
                &prev,
                "--out",
                s(&out),
                "--seed",
                &i.to_string(),
            ],
        );
        prev = node.loopback_addr();
        nodes.push((node, out));
    }
    let seeder_id = prev_peer_id(&mut seeder);
    let mut from_seeder = 0u64;
    let mut from_nodes = 0u64;
    for (i, (node, out)) in nodes.iter_mut().enumerate() {
        let report = node
            .wait_for(Duration::from_secs(240), |is_out, l| {
                l.strip_prefix("complete ")
                    .filter(|_| is_out)
                    .map(|j| serde_json::from_str::<serde_json::Value>(j).expect("json"))
            })
            .unwrap_or_else(|| panic!("node {i} did not complete; stderr: {:?}", node.stderr));
        // The artifact is written right after the completion line.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !out.exists() && std::time::Instant::now() < deadline {
            node.wait_for(Duration::from_millis(200), |_, _| None::<()>);
        }
        assert_eq!(file_blake3(out), expected, "node {i} artifact");
        for (peer, bytes) in report["bytes_from"].as_object().expect("bytes_from") {
            let b = bytes.as_u64().expect("bytes");
            if *peer == seeder_id {
                from_seeder += b;
            } else {
                from_nodes += b;
            }
        }
        assert_eq!(report["chunks_rejected"], 0);
    }
    let total = from_seeder + from_nodes;
    println!(
        "6 nodes, 64 MiB: {:.1} MiB from the seeder ({:.0}%), {:.1} MiB from other nodes ({:.0}%)",
        from_seeder as f64 / 1048576.0,
        100.0 * from_seeder as f64 / total as f64,
        from_nodes as f64 / 1048576.0,
        100.0 * from_nodes as f64 / total as f64
    );
    assert!(
        from_nodes > from_seeder,
        "most bytes should come from other nodes"
    );
}

fn prev_peer_id(seeder: &mut Daemon) -> String {
    let line = seeder
        .stdout
        .iter()
        .find(|l| l.starts_with("listening "))
        .cloned()
        .expect("listen line");
    line.rsplit("/p2p/").next().expect("peer id").to_owned()
}

#[test]
fn fetch_killed_halfway_resumes_without_refetching() {
    let r = Release::publish(96 << 20, 78);
    let (t, trust, expected) = (r.dir.as_path(), r.trust.clone(), r.blake3.clone());
    let (_seeder, seeder_addr) = r.serve();
    let data = t.join("node");
    let out = t.join("out.img");
    let args = [
        "fetch",
        "--data",
        s(&data),
        "--trust",
        &trust,
        "--channel",
        "stable",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--no-mdns",
        "--peer",
        &seeder_addr,
        "--uplink-rate",
        "24MB/s",
        "--out",
        s(&out),
        "--timeout",
        "5m",
    ];
    let mut first = Daemon::spawn("pollen-node", &args);
    let killed_at = first
        .wait_for(Duration::from_secs(120), |is_out, l| {
            let (done, total) = l
                .strip_prefix("fetch: progress ")
                .filter(|_| !is_out)?
                .split_once('/')?;
            let (done, total): (u32, u32) = (done.parse().ok()?, total.parse().ok()?);
            (done * 2 >= total && done < total).then_some(done)
        })
        .unwrap_or_else(|| panic!("never reached half way: {:?}", first.stderr));
    first.kill();
    assert!(!out.exists());

    let second = run_json("pollen-node", &args);
    let held = second["chunks_held_at_start"].as_u64().expect("held");
    let fetched = second["chunks_fetched"].as_u64().expect("fetched");
    let total = second["chunks_total"].as_u64().expect("total");
    println!("killed with {killed_at}/{total} chunks; restart held {held}, fetched {fetched}, duplicates {}", second["duplicate_chunks"]);
    assert!(held >= u64::from(killed_at), "verified chunks were lost");
    assert_eq!(
        held + fetched,
        total,
        "fetched exactly the chunks it lacked"
    );
    assert_eq!(second["duplicate_chunks"], 0, "no chunk fetched twice");
    assert_eq!(file_blake3(&out), expected);
}

#[test]
fn fetch_over_quic() {
    let r = Release::publish(16 << 20, 79);
    let mut seeder = Daemon::spawn(
        "pollen-seeder",
        &serve_args(&r.store, "/ip4/127.0.0.1/udp/0/quic-v1"),
    );
    let addr = seeder.listen_addr("/quic-v1/");
    let out = r.dir.join("quic.img");
    let report = run_json(
        "pollen-node",
        &[
            "fetch",
            "--data",
            s(&r.dir.join("node")),
            "--trust",
            &r.trust,
            "--channel",
            "stable",
            "--listen",
            "/ip4/127.0.0.1/udp/0/quic-v1",
            "--no-mdns",
            "--peer",
            &addr,
            "--out",
            s(&out),
            "--timeout",
            "2m",
        ],
    );
    assert_eq!(report["complete"], true);
    assert_eq!(file_blake3(&out), r.blake3);
    assert_eq!(
        report["connections_opened"], 1,
        "one connection to the seeder"
    );
}

/// A seeder named by DNS (`/dns4/localhost/...`), as an integrator writes
/// it instead of hard-coding an address; resolved when the node dials.
#[test]
fn fetch_from_a_seeder_named_by_dns() {
    let r = Release::publish(4 << 20, 80);
    let (_seeder, addr) = r.serve();
    let named = addr.replacen("/ip4/127.0.0.1/", "/dns4/localhost/", 1);
    assert!(named.starts_with("/dns4/localhost/tcp/"), "{named}");
    let (data, out) = (r.dir.join("dns-node"), r.dir.join("dns.img"));
    let mut args = r.fetch_args(&data, &out, &[&named]);
    args.extend_from_slice(&["--timeout", "2m"]);
    let report = run_json("pollen-node", &args);
    assert_eq!(report["complete"], true);
    assert_eq!(file_blake3(&out), r.blake3);
    assert_eq!(
        report["connections_opened"], 1,
        "one connection to the seeder"
    );
}
