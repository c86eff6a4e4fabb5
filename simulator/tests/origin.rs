//! HTTPS origins in the simulator: an origin-only fleet takes one copy
//! per site, one device's request pipeline against an origin matches its
//! closed form, and a scenario without any source is refused.

use pollen_sim::report::bound_for;
use pollen_sim::scenario::ScenarioError;
use pollen_sim::{simulate, Scenario};

const MIB: f64 = 1024.0 * 1024.0;

fn run(sc: &Scenario) -> (Vec<f64>, pollen_sim::Outcome) {
    let o = simulate(sc, std::path::Path::new("."), |_, _| {}).expect("run");
    let times = pollen_sim::completion_times(&o);
    assert_eq!(times.len(), o.nodes.len() - 1, "not every device finished");
    (times, o)
}

#[test]
fn origin_only_fleet_sends_one_copy_per_site() {
    let sc = Scenario::from_toml(
        r#"strategy = "pollen"
seed = 3
release_mib = 32.0
chunk_kib = 256
[origin]
upload_mbit = 200.0
latency_ms = 40.0
[[site]]
count = 6
devices = 8
lan_up_mbit = 100.0
lan_down_mbit = 100.0
uplink_up_mbit = 20.0
uplink_down_mbit = 20.0
"#,
    )
    .expect("scenario");
    let (times, o) = run(&sc);
    let f = o.release_bytes as f64;
    for s in &o.sites {
        let m = s.bytes_in as f64 / f;
        assert!(
            m <= 1.05,
            "site {} took {m:.3} x F across its uplink",
            s.name
        );
    }
    let origin = o.origin.as_ref().expect("the origin's counters");
    let sent = origin.bytes_out as f64 / f;
    println!(
        "origin-only, 6 sites x 8: origin sent {sent:.3} x F, seeder {} B; last done {:.2} s",
        o.nodes[0].bytes_out,
        times[times.len() - 1]
    );
    assert!((6.0..=6.0 * 1.05).contains(&sent), "origin sent {sent} x F");
    assert_eq!(o.nodes[0].bytes_out, 0, "there is no seeder");
    let bound = bound_for(&sc, o.release_bytes);
    let last = times[times.len() - 1];
    assert!(last >= bound, "{last} s beats the lower bound {bound} s");
    assert!(last <= 1.3 * bound, "{last} s vs the bound {bound} s");
}

/// One device on a fat LAN and uplink, against an origin of capacity `C`
/// and time to first byte `L`: the scheduler keeps at least `max_requests`
/// (`k`) requests for the origin, which has `k` of them at once. With the
/// pipe not full (`k·c/C < L + c/C`), each of the `k` request slots cycles
/// every `L + c/C` and the slots stagger by `c/C`: `T = (n/k)(L + c/C) +
/// (k-1)·c/C`. With it full, the origin's link never idles after the
/// first byte: `T = L + n·c/C`. Both after the scheduler's warm-up before
/// its first uplink request (`SwarmConfig::remote_warmup`).
#[test]
fn one_device_against_an_origin_follows_its_request_pipeline() {
    for (mbit, latency_ms, k) in [(100.0, 200.0, 4usize), (50.0, 20.0, 4), (100.0, 100.0, 2)] {
        let sc = Scenario::from_toml(&format!(
            r#"strategy = "pollen"
seed = 5
release_mib = 64.0
chunk_kib = 256
[origin]
upload_mbit = {mbit}
latency_ms = {latency_ms}
max_requests = {k}
[[site]]
devices = 1
lan_up_mbit = 1000.0
lan_down_mbit = 1000.0
uplink_up_mbit = 1000.0
uplink_down_mbit = 1000.0
"#
        ))
        .expect("scenario");
        let (times, _) = run(&sc);
        let t = times[0];
        let (c, cap, l) = (256.0 * 1024.0, mbit * 1e6 / 8.0, latency_ms / 1000.0);
        let n = 64.0 * MIB / c;
        let kf = k as f64;
        let warmup = pollen_core::swarm::SwarmConfig::default()
            .remote_warmup
            .as_secs_f64();
        let expected = warmup
            + if kf * c / cap < l + c / cap {
                n / kf * (l + c / cap) + (kf - 1.0) * c / cap
            } else {
                l + n * c / cap
            };
        println!(
            "origin {mbit} Mbit/s, {latency_ms} ms, {k} requests: simulated {t:.3} s, closed form {expected:.3} s"
        );
        assert!((t - expected).abs() / expected < 0.03, "{t} vs {expected}");
        assert!(t >= bound_for(&sc, 64 * 1024 * 1024), "the bound is beaten");
    }
}

#[test]
fn a_scenario_without_a_source_is_refused() {
    let site = r#"[[site]]
devices = 2
lan_up_mbit = 100.0
lan_down_mbit = 100.0
uplink_up_mbit = 10.0
uplink_down_mbit = 10.0
"#;
    let none = format!("strategy = \"pollen\"\nrelease_mib = 8.0\n{site}");
    assert!(matches!(
        Scenario::from_toml(&none),
        Err(ScenarioError::NoSource)
    ));
    let off = format!(
        "strategy = \"pollen\"\nrelease_mib = 8.0\n[seeder]\nupload_mbit = 10.0\nenabled = false\n{site}"
    );
    let err = Scenario::from_toml(&off).expect_err("a disabled seeder alone is no source");
    assert!(err.to_string().contains("no source"), "{err}");
    // A sweep turning the only source off is refused too.
    let on =
        format!("strategy = \"pollen\"\nrelease_mib = 8.0\n[seeder]\nupload_mbit = 10.0\n{site}");
    assert!(Scenario::from_toml(&on).is_ok());
    let p = [("seeder.enabled".to_owned(), "false".to_owned())];
    assert!(matches!(
        Scenario::from_toml_with(&on, &p),
        Err(ScenarioError::NoSource)
    ));
    // With an origin it runs.
    let p = [
        ("seeder.enabled".to_owned(), "false".to_owned()),
        ("origin.upload_mbit".to_owned(), "100".to_owned()),
    ];
    let sc = Scenario::from_toml_with(&on, &p).expect("origin-only");
    assert!(sc.seeder().is_none() && sc.origin().is_some());
    // Central and swarm need the seeder.
    let central =
        format!("strategy = \"central\"\nrelease_mib = 8.0\n[origin]\nupload_mbit = 10.0\n{site}");
    assert!(Scenario::from_toml(&central).is_err());
}

/// No run with an origin beats the reported lower bound (one that did
/// would be a model bug): origin only and beside a seeder, slow and fast
/// origins, with and without a time to first byte.
#[test]
fn no_origin_run_beats_the_bound() {
    let base = r#"strategy = "pollen"
seed = 11
release_mib = 16.0
chunk_kib = 256
[seeder]
upload_mbit = 20.0
[origin]
upload_mbit = 20.0
[[site]]
count = 4
devices = 4
lan_up_mbit = 100.0
lan_down_mbit = 100.0
uplink_up_mbit = 40.0
uplink_down_mbit = 40.0
"#;
    for seeder in ["true", "false"] {
        for cap in ["20", "1000"] {
            for latency in ["0", "100"] {
                let p: Vec<(String, String)> = [
                    ("seeder.enabled", seeder),
                    ("origin.upload_mbit", cap),
                    ("origin.latency_ms", latency),
                ]
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
                let sc = Scenario::from_toml_with(base, &p).expect("scenario");
                let (times, o) = run(&sc);
                let last = times[times.len() - 1];
                let bound = bound_for(&sc, o.release_bytes);
                println!(
                    "seeder {seeder}, origin {cap} Mbit/s {latency} ms: {last:.2} s, bound {bound:.2} s"
                );
                assert!(last >= bound, "{p:?}: {last} s beats the bound {bound} s");
            }
        }
    }
}
