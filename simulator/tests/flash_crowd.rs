//! Release day for a fleet (issue: fleet-scale delivery): 50 sites of 10
//! devices behind 10 Mbit/s uplinks all ask for a 100 MiB release in 1 MiB
//! chunks at once, with the publisher's seeder at 20, 100 and 200 Mbit/s.

use pollen_sim::report::{bound_for, bounds, summary};
use pollen_sim::scenario::EXAMPLE;
use pollen_sim::{simulate, Scenario, Summary};

fn run(params: &[(&str, &str)]) -> (Scenario, Summary) {
    let mut all = vec![
        ("release_mib", "100"),
        ("site.0.count", "50"),
        ("site.0.devices", "10"),
        ("time_limit_s", "86400"),
    ];
    all.extend_from_slice(params);
    let owned: Vec<(String, String)> = all
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let sc = Scenario::from_toml_with(EXAMPLE, &owned).expect("scenario");
    let o = simulate(&sc, std::path::Path::new("."), |_, _| {}).expect("runs");
    let s = summary(&sc, &o);
    (sc, s)
}

#[test]
fn a_flash_crowd_completes_near_the_bound_with_one_copy_per_site() {
    for seeder in ["20", "100", "200"] {
        let (_, s) = run(&[("seeder.upload_mbit", seeder)]);
        let ratio = s.ratio_to_bound.expect("every device done");
        println!(
            "seeder {seeder} Mbit/s: {}/{} done, last {:.1} s = {ratio:.2} x the bound {:.1} s; seeder sent {:.2} x F; site uplinks max {:.3} x F",
            s.devices_done,
            s.devices,
            s.completion_max_s.unwrap_or(0.0),
            s.bound_s,
            s.seeder_multiple,
            s.uplink_multiple_max
        );
        assert_eq!(s.devices_done, s.devices);
        assert!(ratio <= 1.5, "seeder {seeder}: {ratio} x the bound");
        assert!(
            s.seeder_multiple <= 2.0,
            "seeder {seeder}: sent {} x F",
            s.seeder_multiple
        );
        assert!(
            s.uplink_multiple_max <= 1.1,
            "seeder {seeder}: a site took {} x F",
            s.uplink_multiple_max
        );
    }
}

#[test]
fn without_cross_site_sharing_the_seeder_sends_each_site_one_copy() {
    let (sc, s) = run(&[("seeder.upload_mbit", "200"), ("sched.cross_site", "false")]);
    let sites = 50.0;
    let ratio = s.ratio_to_bound.expect("every device done");
    println!(
        "no cross-site, seeder 200 Mbit/s: last {:.1} s = {ratio:.2} x the bound without sharing {:.1} s; seeder sent {:.2} x F; site uplinks max {:.3} x F",
        s.completion_max_s.unwrap_or(0.0),
        s.bound_s,
        s.seeder_multiple,
        s.uplink_multiple_max
    );
    assert_eq!(s.devices_done, s.devices);
    assert!(
        s.seeder_multiple <= sites * 1.05,
        "{} x F",
        s.seeder_multiple
    );
    assert!(s.uplink_multiple_max <= 1.1);
    assert_eq!(s.bound_s, bounds(&sc, s.release_bytes).no_cross_site);
}

#[test]
fn central_http_completes_at_n_f_over_the_seeder_rate() {
    let (_, s) = run(&[("strategy", "central"), ("seeder.upload_mbit", "20")]);
    let expected = 500.0 * 100.0 * 1024.0 * 1024.0 * 8.0 / 20e6;
    let t = s.completion_max_s.expect("every device done");
    println!("central, seeder 20 Mbit/s: last {t:.1} s, N·F/u_s = {expected:.1} s");
    assert_eq!(s.devices_done, s.devices);
    assert!((t / expected - 1.0).abs() <= 0.05, "{t} vs {expected}");
    // Not below the lower bound either: the model never oversubscribes.
    assert!(t >= expected * 0.999, "{t} beats N·F/u_s = {expected}");
}

#[test]
fn framing_slows_the_seeder_and_the_bound_alike() {
    // 4.6 % of framing (`wire_overhead`): the seeder's 20 Mbit/s carries
    // 20 / 1.046 Mbit/s of chunks, and the bound is charged the same.
    let o = 0.046;
    let (sc, s) = run(&[
        ("strategy", "central"),
        ("seeder.upload_mbit", "20"),
        ("wire_overhead", "0.046"),
    ]);
    let expected = 500.0 * 100.0 * 1024.0 * 1024.0 * 8.0 * (1.0 + o) / 20e6;
    let t = s.completion_max_s.expect("every device done");
    println!(
        "central, 20 Mbit/s with 4.6 % framing: last {t:.1} s, N·F·(1 + o)/u_s = {expected:.1} s"
    );
    assert!((t / expected - 1.0).abs() <= 0.05, "{t} vs {expected}");
    assert!(t >= s.bound_s, "{t} beats the bound {}", s.bound_s);
    let plain = Scenario {
        wire_overhead: 0.0,
        ..sc
    };
    let ratio = s.bound_s / bound_for(&plain, s.release_bytes);
    assert!((ratio - (1.0 + o)).abs() < 1e-6, "the bound grew {ratio} x");
}

#[test]
fn the_bound_counts_what_sites_can_send_each_other() {
    // 200 one-device sites with 10 Mbit/s up (100 down), a 20 Mbit/s
    // seeder: with sharing every site's copy comes from the seeder or the
    // others' uplinks, S·F/(u_s + Σ up); without, S·F/u_s. (The old bound,
    // N·F/(u_s + Σ LAN up), said 0.42 s here.)
    let body = r#"strategy = "pollen"
release_mib = 10.0
[seeder]
upload_mbit = 20.0
[[site]]
count = 200
devices = 1
lan_up_mbit = 100.0
lan_down_mbit = 100.0
uplink_up_mbit = 10.0
uplink_down_mbit = 100.0
"#;
    let sc = Scenario::from_toml(body).expect("scenario");
    let f = 10.0 * 1024.0 * 1024.0;
    let b = bounds(&sc, f as u64);
    let mbit = 1e6 / 8.0;
    let cross = 200.0 * f / (20.0 * mbit + 200.0 * 10.0 * mbit);
    let alone = 200.0 * f / (20.0 * mbit);
    assert!(
        (b.cross_site - cross).abs() < 1e-6,
        "{} vs {cross}",
        b.cross_site
    );
    assert!(
        (b.no_cross_site - alone).abs() < 1e-6,
        "{} vs {alone}",
        b.no_cross_site
    );
}
