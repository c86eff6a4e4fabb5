//! Benchmark (not a check; `scripts/bench-status.sh` runs it): status
//! traffic over a factory site's uplink while the fleet is idle. Six
//! devices `run` behind an 8 Mbit/s uplink; once each has installed the
//! release and the seeder counts all six as installed, the bytes crossing
//! the uplink (both ways) are counted over a window of
//! `POLLEN_BENCH_WINDOW` seconds (default 60) and printed per minute.
//! `POLLEN_BIN_DIR` points it at another build's binaries (the "before"
//! of a comparison); `POLLEN_STATUS_INTERVAL` passes `--status-interval`.

use std::time::{Duration, Instant};

use pollen_e2e::netns::{exclusive, require, Site};
use pollen_e2e::{poll, release_stages, s, seeder_status, Daemon, Release};

#[test]
#[ignore = "bench: scripts/bench-status.sh"]
fn bench_idle_status_traffic() {
    let _lock = exclusive();
    require();
    let site = Site::new(6);
    site.limit_uplink("8mbit");
    let r = Release::publish(1 << 20, 7);
    let (_seeder, seeder_addr) = r.serve_in(&site.cloud, &site.cloud_ip());
    let interval = std::env::var("POLLEN_STATUS_INTERVAL")
        .ok()
        .filter(|i| !i.is_empty());
    let window: u64 = std::env::var("POLLEN_BENCH_WINDOW")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(60);
    let mut nodes: Vec<Daemon> = (0..site.devices.len())
        .map(|i| {
            let data = r.dir.join(format!("dev{i}"));
            let listen = format!("/ip4/{}/tcp/4100", site.device_ip(i));
            let device = format!("dev{i}");
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
                &seeder_addr,
                "--device-id",
                &device,
            ];
            if let Some(i) = &interval {
                args.extend_from_slice(&["--status-interval", i]);
            }
            let args: Vec<String> = args.into_iter().map(str::to_owned).collect();
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            Daemon::spawn_in(&site.devices[i], "pollen-node", &refs)
        })
        .collect();
    for (i, n) in nodes.iter_mut().enumerate() {
        n.wait_complete(Duration::from_secs(300))
            .unwrap_or_else(|| panic!("node {i} did not complete: {:?}", n.stderr));
    }
    poll(Duration::from_secs(300), "six devices installed", || {
        let st = seeder_status(&r.store);
        let installed: u64 = release_stages(&st, 1)
            .iter()
            .map(|s| s["installed"].as_u64().unwrap_or(0))
            .sum();
        if installed == 6 {
            Ok(())
        } else {
            Err(st.to_string())
        }
    });
    let (rx0, tx0) = (site.uplink_rx_bytes(), site.uplink_tx_bytes());
    let start = Instant::now();
    // A measurement window, not a wait for an event: the fleet stays idle.
    while start.elapsed() < Duration::from_secs(window) {
        nodes[0].wait_for(Duration::from_millis(500), |_, _| None::<()>);
    }
    let secs = start.elapsed().as_secs_f64();
    let (rx, tx) = (site.uplink_rx_bytes() - rx0, site.uplink_tx_bytes() - tx0);
    let per_min = |b: u64| b as f64 * 60.0 / secs;
    println!(
        "idle factory site, 6 devices, status interval {}: uplink {:.0} B/min in, {:.0} B/min out, {:.0} B/min total ({secs:.0} s window)",
        interval.as_deref().unwrap_or("default"),
        per_min(rx),
        per_min(tx),
        per_min(rx + tx)
    );
}
