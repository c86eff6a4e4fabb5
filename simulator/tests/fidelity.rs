//! Fidelity checks: the simulator against closed forms and bounds, and
//! its determinism.

use pollen_sim::report::bounds;
use pollen_sim::{run_to_dir, simulate, Scenario};

fn scenario(strategy: &str, body: &str) -> Scenario {
    let text = format!("strategy = \"{strategy}\"\nseed = 7\n{body}");
    Scenario::from_toml(&text).expect("scenario")
}

fn max_completion(sc: &Scenario) -> (f64, pollen_sim::Outcome) {
    let o = simulate(sc, std::path::Path::new("."), |_, _| {}).expect("run");
    let devices = o.nodes.len() - 1;
    let times = pollen_sim::completion_times(&o);
    assert_eq!(times.len(), devices, "not every device finished");
    (times[times.len() - 1], o)
}

#[test]
fn one_seeder_one_node_is_size_over_the_slower_link() {
    // Seeder 80 Mbit/s up, device 40 Mbit/s down: 64 MiB takes F / 40 Mbit/s,
    // plus one one-way latency for the last chunk (20 + 20 ms across the WAN).
    let sc = scenario(
        "swarm",
        r#"release_mib = 64.0
chunk_kib = 1024
[seeder]
upload_mbit = 80.0
latency_ms = 20.0
[[site]]
devices = 1
lan_up_mbit = 40.0
lan_down_mbit = 40.0
uplink_up_mbit = 1000.0
uplink_down_mbit = 1000.0
wan_latency_ms = 20.0
"#,
    );
    let (t, _) = max_completion(&sc);
    let expected = 64.0 * 1024.0 * 1024.0 * 8.0 / 40e6 + 0.040;
    println!("one node: simulated {t:.3} s, closed form {expected:.3} s");
    assert!((t - expected).abs() / expected < 0.01, "{t} vs {expected}");
}

#[test]
fn central_matches_n_f_over_seeder_upload() {
    // 20 devices behind a fat uplink; the seeder's 50 Mbit/s is the bottleneck.
    let sc = scenario(
        "central",
        r#"release_mib = 32.0
chunk_kib = 1024
[seeder]
upload_mbit = 50.0
[[site]]
devices = 20
lan_up_mbit = 100.0
lan_down_mbit = 100.0
uplink_up_mbit = 1000.0
uplink_down_mbit = 1000.0
"#,
    );
    let (t, o) = max_completion(&sc);
    let expected = 20.0 * 32.0 * 1024.0 * 1024.0 * 8.0 / 50e6;
    println!("central, 20 devices: simulated {t:.2} s, N·F/u_s = {expected:.2} s");
    assert!((t - expected).abs() / expected < 0.03, "{t} vs {expected}");
    assert_eq!(o.nodes[0].bytes_out, 20 * 32 * 1024 * 1024);
}

/// With 64 KiB chunks, two requests in flight per peer and idealised
/// information (peers learn of a chunk as it lands), over eight seeds:
/// 1.40–1.42 ×. Without site awareness devices collide on the chunks only
/// the seeder holds and ask the seeder, the bottleneck, for chunks peers
/// already have (it sends 1.26 copies), and at the start the seeder's
/// admission control holds or refuses what its eight slots cannot take yet
/// (a second's back-off on a five-second transfer) — see simulator/README.md.
#[test]
fn flat_swarm_is_within_1_5_of_the_kumar_ross_bound() {
    let body = r#"release_mib = 64.0
chunk_kib = 64
[seeder]
upload_mbit = 100.0
[[site]]
devices = 30
lan_up_mbit = 100.0
lan_down_mbit = 100.0
uplink_up_mbit = 10000.0
uplink_down_mbit = 10000.0
[sched]
remote_peers = 29
per_peer_in_flight = 2
notify_ms = 0.0
"#;
    for seed in 1..=8 {
        let mut sc = scenario("swarm", body);
        sc.seed = seed;
        let (t, o) = max_completion(&sc);
        let bound = bounds(&sc, o.release_bytes).cross_site;
        println!(
            "swarm, 30 homogeneous nodes, seed {seed}: {t:.2} s, bound {bound:.2} s, ratio {:.3}",
            t / bound
        );
        assert!(t <= 1.5 * bound, "seed {seed}: {t} > 1.5 × {bound}");
    }
}

#[test]
fn pollen_sends_one_copy_over_each_uplink() {
    let sc = scenario(
        "pollen",
        r#"release_mib = 32.0
chunk_kib = 256
[seeder]
upload_mbit = 100.0
[[site]]
count = 4
devices = 8
lan_up_mbit = 100.0
lan_down_mbit = 100.0
uplink_up_mbit = 20.0
uplink_down_mbit = 20.0
"#,
    );
    let (_, o) = max_completion(&sc);
    for s in &o.sites {
        let multiple = s.bytes_in as f64 / o.release_bytes as f64;
        println!("pollen: {} uplink carried {multiple:.3} x release", s.name);
        assert!(multiple <= 1.05, "{}: {multiple}", s.name);
    }
}

#[test]
fn same_scenario_and_seed_give_identical_outputs() {
    let text = pollen_sim::scenario::EXAMPLE;
    let params = |seed: &str| {
        vec![
            ("release_mib".to_owned(), "16".to_owned()),
            ("site.0.count".to_owned(), "3".to_owned()),
            ("site.0.devices".to_owned(), "6".to_owned()),
            ("churn.crash_fraction".to_owned(), "0.2".to_owned()),
            ("churn.rejoin_after_s".to_owned(), "5".to_owned()),
            ("churn.crash_window_s".to_owned(), "10".to_owned()),
            ("heterogeneity.lan_spread".to_owned(), "0.5".to_owned()),
            // Churn as a rate and an uplink trace take part too.
            ("churn.rate_per_hour".to_owned(), "120".to_owned()),
            ("churn.mean_offline_s".to_owned(), "5".to_owned()),
            ("site.0.uplink_trace".to_owned(), "trace.csv".to_owned()),
            ("seed".to_owned(), seed.to_owned()),
        ]
    };
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("trace.csv"),
        "time_s,mbit\n0,10\n3,4\n9,12\n",
    )
    .expect("trace");
    let mut outs = Vec::new();
    for (i, seed) in ["3", "3", "4"].iter().enumerate() {
        let sc = Scenario::from_toml_with(text, &params(seed)).expect("scenario");
        let out = dir.path().join(i.to_string());
        run_to_dir(&sc, dir.path(), &out, |_, _| {}).expect("run");
        let read = |f: &str| std::fs::read(out.join(f)).expect("output");
        outs.push((
            read("summary.json"),
            read("nodes.csv"),
            read("timeline.csv"),
        ));
    }
    assert_eq!(outs[0], outs[1], "same seed, different results");
    assert_ne!(outs[0].1, outs[2].1, "the seed changes nothing");
    let nodes = String::from_utf8(outs[0].1.clone()).expect("utf-8");
    assert!(
        nodes.lines().skip(1).any(|l| !l.ends_with(",0")),
        "no crash happened"
    );
}
