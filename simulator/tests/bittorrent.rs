//! The `bittorrent` strategy end to end: a small fleet completes, every
//! site takes at least one copy across its uplink and the seeder sends at
//! least one, a lone device is bound by its link, the same seed gives the
//! same run, and bad `[bittorrent]` values are refused.

use pollen_sim::{simulate, Scenario};

const FLEET: &str = r#"strategy = "bittorrent"
seed = 3
release_mib = 8.0
[seeder]
upload_mbit = 50.0
[[site]]
count = 3
devices = 4
lan_up_mbit = 100.0
lan_down_mbit = 100.0
uplink_up_mbit = 10.0
uplink_down_mbit = 10.0
[bittorrent]
piece_kib = 128
"#;

fn run(text: &str) -> pollen_sim::Summary {
    let sc = Scenario::from_toml(text).expect("scenario");
    let o = simulate(&sc, std::path::Path::new("."), |_, _| {}).expect("run");
    pollen_sim::report::summary(&sc, &o)
}

#[test]
fn a_small_fleet_completes_with_a_copy_into_every_site() {
    let s = run(FLEET);
    assert_eq!(s.devices_done, 12);
    assert_eq!(s.chunks, 64, "8 MiB in 128 KiB pieces");
    for (i, m) in s.uplink_multiple_per_site.iter().enumerate() {
        assert!(*m >= 1.0, "site {i} took {m} x F across its uplink");
    }
    assert!(
        s.seeder_multiple >= 1.0,
        "seeder sent {}",
        s.seeder_multiple
    );
    let done = s.completion_max_s.expect("done");
    assert!(
        done >= s.bound_s,
        "{done} s beats the bound {} s",
        s.bound_s
    );
}

#[test]
fn one_device_is_bound_by_the_slower_link() {
    // 16 MiB over a 20 Mbit/s site downlink: 6.7 s at best, after the
    // 1 s the client takes to connect; the seeder's choker unchokes it as
    // soon as it is interested, so little more.
    let s = run(r#"strategy = "bittorrent"
release_mib = 16.0
[seeder]
upload_mbit = 100.0
[[site]]
devices = 1
lan_up_mbit = 100.0
lan_down_mbit = 100.0
uplink_up_mbit = 20.0
uplink_down_mbit = 20.0
"#);
    let t = s.completion_max_s.expect("done");
    let floor = 1.0 + 16.0 * 1024.0 * 1024.0 * 8.0 / 20e6;
    assert!(t >= floor && t <= floor * 1.05, "{t} s vs {floor} s");
    assert!((s.uplink_multiple_max - 1.0).abs() < 1e-9);
}

#[test]
fn the_same_seed_gives_the_same_run_and_another_seed_another() {
    let a = run(FLEET);
    assert_eq!(a, run(FLEET));
    let b = run(&FLEET.replace("seed = 3", "seed = 4"));
    assert_ne!(a.completion_max_s, b.completion_max_s);
}

#[test]
fn bad_parameters_are_refused() {
    for bad in [
        "block_kib = 0",
        "piece_kib = 8",
        "queue_depth = 0",
        "unchoke_slots = 0",
        "choke_interval_s = 0.0",
        "connect_delay_s = -1.0",
        "no_such_knob = 1",
    ] {
        let text = FLEET.replace("piece_kib = 128", bad);
        assert!(Scenario::from_toml(&text).is_err(), "{bad} accepted");
    }
    // Scenarios resolved before the choker followed aria2 still load.
    let old = FLEET.replace(
        "piece_kib = 128",
        "piece_kib = 128\noptimistic_interval_s = 30.0",
    );
    assert_eq!(run(&old), run(FLEET));
    let churn = format!("{FLEET}[churn]\ncrash_fraction = 0.5\n");
    assert!(Scenario::from_toml(&churn).is_err(), "churn accepted");
}
