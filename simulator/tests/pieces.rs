//! Passing chunks on piece by piece (`piece_kib`): what it buys on a chain
//! of hops, that it costs no extra copies across uplinks, that a device
//! leaving while it passes pieces on does not strand anyone (and what it
//! cut off counts as sent, not delivered), and that it stays deterministic.

use std::path::Path;

use pollen_sim::report::summary;
use pollen_sim::{simulate, Scenario, Summary};

/// Three sites of four devices, 8 MiB in 1 MiB chunks; the seeder reaches
/// only as fast as one site's uplink, so sites feed each other.
fn fleet(piece_kib: u32, churn_per_hour: f64) -> Scenario {
    let text = format!(
        r#"strategy = "pollen"
seed = 11
release_mib = 8.0
chunk_kib = 1024
piece_kib = {piece_kib}
time_limit_s = 3600.0
[seeder]
upload_mbit = 10.0
[[site]]
count = 3
devices = 4
lan_up_mbit = 100.0
lan_down_mbit = 100.0
uplink_up_mbit = 10.0
uplink_down_mbit = 10.0
[churn]
rate_per_hour = {churn_per_hour}
mean_offline_s = 2.0
"#
    );
    Scenario::from_toml(&text).expect("scenario")
}

fn run(sc: &Scenario) -> Summary {
    let o = simulate(sc, Path::new("."), |_, _| {}).expect("run");
    summary(sc, &o)
}

/// When the last device finished (every one must have).
fn last(s: &Summary) -> f64 {
    assert_eq!(s.devices_done, s.devices, "every device done");
    s.completion_max_s.expect("a completion time")
}

/// One site of two devices and one 4 MiB chunk: it crosses the uplink
/// (10 Mbit/s) to one device, which passes it on over a LAN as slow.
fn one_chunk(piece_kib: u32) -> Scenario {
    let text = format!(
        r#"strategy = "pollen"
seed = 3
release_mib = 4.0
chunk_kib = 4096
piece_kib = {piece_kib}
[seeder]
upload_mbit = 100.0
[[site]]
devices = 2
lan_up_mbit = 10.0
lan_down_mbit = 10.0
uplink_up_mbit = 10.0
uplink_down_mbit = 10.0
"#
    );
    Scenario::from_toml(&text).expect("scenario")
}

#[test]
fn a_chunk_passed_on_as_its_pieces_land_crosses_the_lan_meanwhile() {
    // Whole: 4 MiB over the uplink (3.4 s), then over the LAN (another
    // 3.4 s). In 256 KiB pieces the LAN hop runs behind the uplink by
    // about a piece (0.2 s).
    let whole = last(&run(&one_chunk(0)));
    let pieces = last(&run(&one_chunk(256)));
    let hop = 4.0 * 1024.0 * 1024.0 * 8.0 / 10e6;
    println!("one 4 MiB chunk: whole {whole:.2} s, in pieces {pieces:.2} s (one hop {hop:.2} s)");
    assert!(whole > 2.0 * hop, "{whole}");
    assert!(pieces < 0.75 * whole, "{pieces} vs {whole}");
}

#[test]
fn pieces_passed_on_as_they_land_keep_one_copy_per_uplink() {
    let whole = run(&fleet(0, 0.0));
    let pieces = run(&fleet(256, 0.0));
    let (t_whole, t_pieces) = (last(&whole), last(&pieces));
    println!(
        "whole chunks: last device at {t_whole:.2} s, uplinks {:.3} x; 256 KiB pieces: {t_pieces:.2} s, {:.3} x",
        whole.uplink_multiple_max, pieces.uplink_multiple_max
    );
    for s in [&whole, &pieces] {
        assert!(s.uplink_multiple_max <= 1.05, "{}", s.uplink_multiple_max);
    }
    assert!(t_pieces <= t_whole, "{t_pieces} vs {t_whole}");
}

#[test]
fn devices_leaving_while_passing_pieces_on_strand_no_one() {
    let s = run(&fleet(128, 1200.0));
    let t = last(&s);
    println!(
        "{} leaves, every device done, the last at {t:.2} s",
        s.device_leaves
    );
    assert!(s.device_leaves > 0, "the churn must have hit");
}

/// A node's bytes sent count what left it, used or not: with devices
/// leaving mid-response, more left than arrived as chunks, and no node
/// delivered more than it sent.
#[test]
fn bytes_cut_off_count_as_sent_not_delivered() {
    let sc = fleet(128, 1200.0);
    let o = simulate(&sc, Path::new("."), |_, _| {}).expect("run");
    for n in &o.nodes {
        assert!(
            n.bytes_sent >= n.bytes_out,
            "{}: sent {} < delivered {}",
            n.name,
            n.bytes_sent,
            n.bytes_out
        );
    }
    let sent: u64 = o.nodes.iter().map(|n| n.bytes_sent).sum();
    let delivered: u64 = o.nodes.iter().map(|n| n.bytes_out).sum();
    println!("sent {sent}, delivered {delivered}");
    assert!(
        sent > delivered,
        "churn cut nothing off: {sent} sent, {delivered} delivered"
    );
}

#[test]
fn the_same_seed_gives_the_same_run_with_pieces() {
    assert_eq!(run(&fleet(64, 600.0)), run(&fleet(64, 600.0)));
}

#[test]
fn a_piece_size_not_a_power_of_two_is_refused() {
    let text = r#"strategy = "pollen"
release_mib = 1.0
piece_kib = 96
[seeder]
upload_mbit = 10.0
[[site]]
devices = 1
lan_up_mbit = 10.0
lan_down_mbit = 10.0
uplink_up_mbit = 10.0
uplink_down_mbit = 10.0
"#;
    let e = Scenario::from_toml(text).expect_err("96 KiB pieces");
    assert!(e.to_string().contains("piece_kib"), "{e}");
}
