//! Site tests in network namespaces (root only: `#[ignore = "needs root"]`,
//! run by `scripts/test.sh` as root with `--ignored`; they fail, not skip,
//! where namespaces are unavailable): mDNS discovery with no `--peer` at
//! all, and a factory site behind a rate-limited uplink, with and without
//! the mesh.

use std::time::{Duration, Instant};

use pollen_e2e::netns::{exclusive, require, Site};
use pollen_e2e::{file_blake3, s, Daemon, Release};

#[test]
#[ignore = "needs root"]
fn mdns_finds_peers_in_namespaces() {
    let _lock = exclusive();
    require();
    let site = Site::new(4);
    let r = Release::publish(8 << 20, 31);
    let _seeder = Daemon::spawn_in(
        &site.devices[0],
        "pollen-seeder",
        &["serve", "--store", s(&r.store), "--channel", "stable"],
    );
    let mut nodes: Vec<(Daemon, std::path::PathBuf)> = (1..4)
        .map(|i| {
            let out = r.dir.join(format!("n{i}.img"));
            let d = Daemon::spawn_in(
                &site.devices[i],
                "pollen-node",
                &[
                    "run",
                    "--data",
                    s(&r.dir.join(format!("n{i}"))),
                    "--trust",
                    &r.trust,
                    "--channel",
                    "stable",
                    "--out",
                    s(&out),
                ],
            );
            (d, out)
        })
        .collect();
    for (i, (node, out)) in nodes.iter_mut().enumerate() {
        node.wait_complete(Duration::from_secs(120))
            .unwrap_or_else(|| panic!("node {i} did not complete: {:?}", node.stderr));
        wait_file(node, out);
        assert_eq!(file_blake3(out), r.blake3);
    }
    println!("mDNS: 3 nodes with no --peer found the seeder and each other and completed");
}

fn wait_file(node: &mut Daemon, path: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !path.exists() && Instant::now() < deadline {
        node.wait_for(Duration::from_millis(100), |_, _| None::<()>);
    }
}

/// Runs six nodes behind the uplink; returns (uplink bytes, seconds).
fn run_site(site: &Site, r: &Release, seeder: &str, tag: &str, extra: &[&str]) -> (u64, f64) {
    let before = site.uplink_rx_bytes();
    let start = Instant::now();
    let mut nodes: Vec<(Daemon, std::path::PathBuf)> = (0..site.devices.len())
        .map(|i| {
            let out = r.dir.join(format!("{tag}{i}.img"));
            let data = r.dir.join(format!("{tag}{i}"));
            let listen = format!("/ip4/{}/tcp/4100", site.device_ip(i));
            let mut args = vec![
                "run",
                "--data",
                s(&data),
                "--trust",
                &r.trust,
                "--channel",
                "stable",
                "--site",
                "factory",
                "--listen",
                &listen,
                "--peer",
                seeder,
                "--out",
                s(&out),
            ];
            args.extend_from_slice(extra);
            let args: Vec<String> = args.into_iter().map(str::to_owned).collect();
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            (
                Daemon::spawn_in(&site.devices[i], "pollen-node", &refs),
                out,
            )
        })
        .collect();
    let mut times = Vec::new();
    for (i, (node, out)) in nodes.iter_mut().enumerate() {
        node.wait_complete(Duration::from_secs(900))
            .unwrap_or_else(|| panic!("{tag} node {i} did not complete: {:?}", node.stderr));
        times.push(start.elapsed().as_secs_f64());
        wait_file(node, out);
        assert_eq!(file_blake3(out), r.blake3, "{tag} node {i}");
    }
    let bytes = site.uplink_rx_bytes() - before;
    (bytes, times.into_iter().fold(0.0, f64::max))
}

#[test]
#[ignore = "needs root"]
fn factory_site_uplink_carries_one_copy() {
    let _lock = exclusive();
    require();
    let site = Site::new(6);
    site.limit_uplink("8mbit");
    let r = Release::publish(32 << 20, 32);
    let (_seeder, seeder_addr) = r.serve_in(&site.cloud, &site.cloud_ip());

    let (mesh_bytes, mesh_secs) = run_site(&site, &r, &seeder_addr, "mesh", &[]);
    let (solo_bytes, solo_secs) =
        run_site(&site, &r, &seeder_addr, "nolan", &["--no-lan", "--no-mdns"]);
    let f = r.size as f64;
    println!("factory site, 6 nodes, 32 MiB release, 8 Mbit/s uplink:");
    println!(
        "  mesh:     {:.2} x release through the uplink, all done in {mesh_secs:.1} s",
        mesh_bytes as f64 / f
    );
    println!(
        "  --no-lan: {:.2} x release through the uplink, all done in {solo_secs:.1} s",
        solo_bytes as f64 / f
    );
    assert!(
        (mesh_bytes as f64) <= 1.1 * f,
        "mesh moved {mesh_bytes} bytes over the uplink"
    );
    assert!(
        (solo_bytes as f64) >= 5.5 * f,
        "--no-lan moved only {solo_bytes} bytes"
    );
}
