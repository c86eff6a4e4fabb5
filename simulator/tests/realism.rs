//! Realism knobs: uplink capacity traces and churn as a rate.

use std::path::Path;

use pollen_sim::trace::Trace;
use pollen_sim::{simulate, Scenario, SimError};

/// One device behind a 40 Mbit/s uplink, a fast seeder and LAN: the
/// uplink is the only bottleneck (64 MiB, 1 MiB chunks).
fn one_device(trace: Option<&str>) -> Scenario {
    let trace = trace.map_or(String::new(), |t| format!("uplink_trace = \"{t}\"\n"));
    let text = format!(
        r#"strategy = "swarm"
seed = 7
release_mib = 64.0
chunk_kib = 1024
[seeder]
upload_mbit = 1000.0
latency_ms = 20.0
[[site]]
devices = 1
lan_up_mbit = 1000.0
lan_down_mbit = 1000.0
uplink_up_mbit = 1000.0
uplink_down_mbit = 40.0
wan_latency_ms = 20.0
{trace}"#
    );
    Scenario::from_toml(&text).expect("scenario")
}

fn last_completion(sc: &Scenario, base: &Path) -> f64 {
    let o = simulate(sc, base, |_, _| {}).expect("run");
    let t = pollen_sim::completion_times(&o);
    assert_eq!(t.len(), 1, "the device did not finish");
    t[0]
}

/// When `bytes` have crossed a link that follows `trace` (from `before`
/// Mbit/s ahead of its first step).
fn time_to_move(bytes: f64, trace: &Trace, before: f64) -> f64 {
    let mut steps = vec![(0.0, trace.rate_at(0.0, before))];
    steps.extend(trace.steps.iter().copied().filter(|&(t, _)| t > 0.0));
    let mut left = bytes;
    for (i, &(t, mbit)) in steps.iter().enumerate() {
        let rate = mbit * 1e6 / 8.0;
        let until = steps.get(i + 1).map_or(f64::INFINITY, |s| s.0);
        if left <= rate * (until - t) {
            return t + left / rate;
        }
        left -= rate * (until - t);
    }
    unreachable!("the last step holds forever")
}

#[test]
fn a_trace_that_halves_the_uplink_halfway_slows_the_second_half() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = 64.0 * 1024.0 * 1024.0;
    // Half the release crosses at 40 Mbit/s, then the link drops to 20.
    let half = f / 2.0 / (40e6 / 8.0);
    let text = format!("time_s,mbit\n0,40\n{half},20\n");
    std::fs::write(dir.path().join("halve.csv"), &text).expect("trace");
    let trace = Trace::parse(&text, Path::new("halve.csv")).expect("trace parses");
    // The last byte's one-way trip across the WAN (20 + 20 ms), as in
    // tests/fidelity.rs.
    let latency = 0.040;
    let flat = last_completion(&one_device(None), dir.path());
    let traced = last_completion(&one_device(Some("halve.csv")), dir.path());
    let expected_flat = f / (40e6 / 8.0) + latency;
    let expected = time_to_move(f, &trace, 40.0) + latency;
    println!(
        "one device: flat {flat:.3} s (closed form {expected_flat:.3}), traced {traced:.3} s (from the trace {expected:.3})"
    );
    assert!((flat - expected_flat).abs() / expected_flat < 0.01);
    assert!(
        (traced - expected).abs() / expected < 0.01,
        "{traced} vs {expected}"
    );
    // Halving the second half's rate adds half the flat time.
    assert!(traced > flat * 1.4, "{traced} vs {flat}");
}

#[test]
fn a_trace_that_raises_the_rate_speeds_the_run_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 10 Mbit/s until 4 s, then 80 (past the 40 of uplink_down_mbit).
    let text = "time_s,mbit\n0,10\n4,80\n";
    std::fs::write(dir.path().join("up.csv"), text).expect("trace");
    let trace = Trace::parse(text, Path::new("up.csv")).expect("parses");
    let t = last_completion(&one_device(Some("up.csv")), dir.path());
    let expected = time_to_move(64.0 * 1024.0 * 1024.0, &trace, 40.0) + 0.040;
    println!("one device, 10 then 80 Mbit/s: {t:.3} s (from the trace {expected:.3})");
    // 2 %: the device's request window has to grow into the faster link.
    assert!((t - expected).abs() / expected < 0.02, "{t} vs {expected}");
}

#[test]
fn bad_traces_are_refused_before_the_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        ("back.csv", "0,10\n5,20\n3,10\n", "line 3"),
        ("neg.csv", "0,10\n5,-3\n", "not a positive number"),
        ("junk.csv", "0,10\nfive,20\n", "expected `time_s,mbit`"),
    ];
    for (name, text, says) in cases {
        std::fs::write(dir.path().join(name), text).expect("trace");
        let e = simulate(&one_device(Some(name)), dir.path(), |_, _| {}).expect_err("refused");
        assert!(matches!(e, SimError::Trace(_)), "{e}");
        let msg = e.to_string();
        assert!(msg.contains(name) && msg.contains(says), "{msg}");
    }
    let e = simulate(&one_device(Some("absent.csv")), dir.path(), |_, _| {}).expect_err("no file");
    assert!(e.to_string().contains("absent.csv"), "{e}");
}

/// 3 sites × 10 devices, 32 MiB in 256 KiB chunks, with churn as a rate.
fn churning(rate_per_hour: f64) -> Scenario {
    let text = format!(
        r#"strategy = "pollen"
seed = 5
release_mib = 32.0
chunk_kib = 256
time_limit_s = 3600.0
[seeder]
upload_mbit = 50.0
[[site]]
count = 3
devices = 10
lan_up_mbit = 100.0
lan_down_mbit = 100.0
uplink_up_mbit = 10.0
uplink_down_mbit = 10.0
[churn]
rate_per_hour = {rate_per_hour}
mean_offline_s = 5.0
"#
    );
    Scenario::from_toml(&text).expect("scenario")
}

#[test]
fn churn_as_a_rate_leaves_in_proportion_and_the_run_completes() {
    let mut leaves = Vec::new();
    for rate in [0.0, 180.0, 360.0] {
        let sc = churning(rate);
        let o = simulate(&sc, Path::new("."), |_, _| {}).expect("run");
        let s = pollen_sim::report::summary(&sc, &o);
        let n = s.devices as f64;
        // Each device alternates up (mean 3600 / rate s) and away (mean
        // 5 s) until the run ends: about n · T / (3600 / rate + 5) leaves.
        let expected = if rate > 0.0 {
            n * o.end / (3600.0 / rate + 5.0)
        } else {
            0.0
        };
        println!(
            "rate {rate}/h: {} leaves (about {expected:.0} expected over {:.1} s), {}/{} done",
            s.device_leaves, o.end, s.devices_done, s.devices
        );
        assert_eq!(
            s.devices_done, s.devices,
            "rate {rate}: not every device finished"
        );
        if rate == 0.0 {
            assert_eq!(s.device_leaves, 0);
        } else {
            let got = s.device_leaves as f64;
            assert!(
                (got - expected).abs() <= 0.3 * expected,
                "rate {rate}: {got} leaves, about {expected:.0} expected"
            );
            // Leaves happen throughout the run, not once per device.
            let most = o.nodes.iter().map(|d| d.crashes).max().unwrap_or(0);
            assert!(most >= 2, "rate {rate}: no device left twice");
        }
        leaves.push(s.device_leaves);
    }
    assert!(leaves[2] > leaves[1] && leaves[1] > leaves[0], "{leaves:?}");
}
