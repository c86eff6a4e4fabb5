//! A fleet of sites in network namespaces (root only: `#[ignore = "needs
//! root"]`, run by `scripts/test.sh` as root with `--ignored`; they fail,
//! not skip, where namespaces are unavailable): a seeder on the core
//! router, several sites each behind its own shaped uplink, real
//! `pollen-node` processes finding their site peers by mDNS and other
//! sites' gateways by peer exchange. Bytes are counted on the veths.
//!
//! - Sites stay sites: with a seeder that has room, each site's uplink
//!   carries one copy in, on the wire.
//! - One-shot `fetch` devices at a site larger than `SITE_FANOUT` stay
//!   until their site is done (not until `--linger` runs out), and the
//!   site still takes one copy.
//! - Release day behind a slow publisher link: every device completes near
//!   the lower bound, the seeder sends about one copy in all, and the
//!   simulator's prediction of the same set-up is within ±25 %; and the
//!   same in 1 MiB chunks, passed on in 64 KiB pieces as they land
//!   (within 2 x the bound there, the simulator within ±25 %).
//! - Sites larger than `SITE_FANOUT`, where a device that is not a gateway
//!   tells its gains to the gateways and a sample of its site peers: every
//!   device completes and each site still takes one copy across its uplink
//!   (the time is reported, not asserted: see the test).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use pollen_e2e::fleet::{Dir, Fleet};
use pollen_e2e::netns::{exclusive, require};
use pollen_e2e::{file_blake3, s, Daemon, Release};

/// POLLEN_E2E_CAPTURE=FILE: headers of site 0's uplink traffic go there
/// (tcpdump), for looking into what crosses it.
fn capture(fleet: &Fleet) -> Option<std::process::Child> {
    let file = std::env::var("POLLEN_E2E_CAPTURE").ok()?;
    let (router, dev) = fleet.uplink_dev(0);
    let child = std::process::Command::new("ip")
        .args(["netns", "exec", &router, "tcpdump", "-q", "-s", "128"])
        .args(["-i", &dev, "-w", &file])
        .spawn()
        .expect("tcpdump");
    Some(child)
}

/// Starts every device of every site (`run`, or `fetch` when `fetch`),
/// each finding its site by mDNS and given only the seeder.
fn devices(fleet: &Fleet, r: &Release, seeder: &str, fetch: bool) -> Vec<(Daemon, PathBuf)> {
    let mut all = Vec::new();
    for (i, (_, names)) in fleet.sites.iter().enumerate() {
        for (j, ns) in names.iter().enumerate() {
            let tag = format!("s{i}d{j}");
            let out = r.dir.join(format!("{tag}.img"));
            let data = r.dir.join(&tag);
            let listen = format!("/ip4/{}/tcp/4100", fleet.device_ip(i, j));
            let site = format!("site{i}");
            let mut args = vec![
                if fetch { "fetch" } else { "run" },
                "--data",
                s(&data),
                "--trust",
                &r.trust,
                "--channel",
                "stable",
                "--site",
                &site,
                "--listen",
                &listen,
                "--peer",
                seeder,
                "--out",
                s(&out),
            ];
            if fetch {
                // Long enough that only a complete site lets them leave
                // within the test's limits.
                args.extend(["--json", "--linger", "600s"]);
            }
            let args: Vec<String> = args.into_iter().map(str::to_owned).collect();
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            all.push((Daemon::spawn_in(ns, "pollen-node", &refs), out));
        }
    }
    all
}

/// What a release day delivered, from the devices' reports.
struct Delivered {
    /// The last completion, seconds after the start.
    secs: f64,
    /// Each device's verified bytes from across its uplink.
    across: Vec<u64>,
    /// Chunks that arrived in pieces (`/pollen/4`), over all devices.
    in_pieces: u64,
    /// Verified bytes received from each peer id, over all devices.
    from: std::collections::BTreeMap<String, u64>,
    /// Chunks that arrived for a device that already held them, over all.
    duplicates: u64,
    /// Each device's seconds to complete, by its own clock, sorted.
    done: Vec<f64>,
}

/// Waits for every `run` device to complete; returns what they delivered
/// (their reports). Checks every artifact.
fn wait_all(
    nodes: &mut [(Daemon, PathBuf)],
    r: &Release,
    start: Instant,
    limit: Duration,
) -> Delivered {
    let mut last: f64 = 0.0;
    let mut across = Vec::new();
    let mut in_pieces = 0;
    let mut from = std::collections::BTreeMap::new();
    let mut duplicates = 0;
    let mut done = Vec::new();
    for (k, (node, out)) in nodes.iter_mut().enumerate() {
        let report = node
            .wait_complete(limit.saturating_sub(start.elapsed()))
            .unwrap_or_else(|| panic!("device {k} did not complete: {:?}", node.stderr));
        last = last.max(start.elapsed().as_secs_f64());
        across.push(report["bytes_from_remote"].as_u64().unwrap_or(0));
        in_pieces += report["chunks_in_pieces"].as_u64().unwrap_or(0);
        duplicates += report["duplicate_chunks"].as_u64().unwrap_or(0);
        done.extend(report["seconds_to_complete"].as_f64());
        for (peer, bytes) in report["bytes_from"].as_object().into_iter().flatten() {
            *from.entry(peer.clone()).or_insert(0) += bytes.as_u64().unwrap_or(0);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while !out.exists() && Instant::now() < deadline {
            node.wait_for(Duration::from_millis(100), |_, _| None::<()>);
        }
        assert_eq!(file_blake3(out), r.blake3, "device {k} artifact");
    }
    Delivered {
        secs: last,
        across,
        in_pieces,
        from,
        duplicates,
        done: {
            done.sort_by(f64::total_cmp);
            done
        },
    }
}

/// Per site: verified chunk bytes its devices fetched across its uplink,
/// as a multiple of the release.
fn chunks_across(across: &[u64], per_site: usize, size: u64) -> Vec<f64> {
    across
        .chunks(per_site)
        .map(|s| s.iter().sum::<u64>() as f64 / size as f64)
        .collect()
}

#[test]
#[ignore = "needs root"]
fn a_seeder_with_room_sends_each_site_one_copy_on_the_wire() {
    let _lock = exclusive();
    require();
    let fleet = Fleet::new(3, 5);
    fleet.limit_uplinks("20mbit");
    let r = Release::publish(16 << 20, 61);
    let _capture = capture(&fleet);
    let (_seeder, addr) = r.serve_in(&fleet.seeder, &fleet.seeder_ip());
    let start = Instant::now();
    let mut nodes = devices(&fleet, &r, &addr, false);
    let Delivered { secs, across, .. } = wait_all(&mut nodes, &r, start, Duration::from_secs(300));
    let f = r.size as f64;
    let chunks = chunks_across(&across, 5, r.size);
    println!(
        "3 sites x 5 devices, 16 MiB, 20 Mbit/s uplinks, no seeder limit: all done in {secs:.1} s"
    );
    println!(
        "  seeder sent {:.2} x F (wire bytes)",
        fleet.seeder_tx() as f64 / f
    );
    for (i, (_, names)) in fleet.sites.iter().enumerate() {
        let retrans: u64 = names
            .iter()
            .map(|ns| pollen_e2e::fleet::tcp_retransmits(ns))
            .sum();
        let (inb, out) = (fleet.uplink(i, Dir::In), fleet.uplink(i, Dir::Out));
        println!(
            "  site{i}: chunks across the uplink {:.3} x F; wire in {:.3} x F, out {:.3} x F; {retrans} TCP segments retransmitted",
            chunks[i],
            inb as f64 / f,
            out as f64 / f
        );
        // Each chunk crosses the site's uplink once.
        assert!(
            chunks[i] <= 1.05,
            "site{i} fetched {:.3} x F across its uplink",
            chunks[i]
        );
        // On the wire too (TCP/IP, Noise and yamux framing, requests): the
        // seeder has room, so sites do not seek each other and no chatter
        // between sites crosses the uplinks.
        assert!(
            (inb as f64) <= 1.05 * f,
            "site{i}'s uplink carried {:.3} x F in",
            inb as f64 / f
        );
    }
}

#[test]
#[ignore = "needs root"]
fn one_shot_fetch_devices_leave_nothing_to_fetch_again() {
    let _lock = exclusive();
    require();
    // Most of a site this large never tell a device of their gains: it
    // must ask them whether they are done.
    let per_site = pollen_core::node::SITE_FANOUT + 4;
    let fleet = Fleet::new(1, per_site);
    fleet.limit_uplinks("20mbit");
    let r = Release::publish(16 << 20, 62);
    let (_seeder, addr) = r.serve_in(&fleet.seeder, &fleet.seeder_ip());
    let start = Instant::now();
    let mut nodes = devices(&fleet, &r, &addr, true);
    let mut from_uplink = 0u64;
    for (k, (node, out)) in nodes.iter_mut().enumerate() {
        // Its reason to leave (a log line), then its report.
        let mut site_done = None;
        let report = node
            .wait_for(Duration::from_secs(300), |is_out, l| {
                if l.contains("leaving after completing") {
                    site_done = Some(l.contains("site_done=true"));
                }
                (is_out && l.contains("bytes_from_remote")).then(|| l.to_owned())
            })
            .unwrap_or_default();
        assert!(!report.is_empty(), "fetch {k} did not report within 300 s");
        if site_done.is_none() {
            site_done = node.wait_for(Duration::from_secs(10), |is_out, l| {
                (!is_out && l.contains("leaving after completing"))
                    .then(|| l.contains("site_done=true"))
            });
        }
        assert_eq!(
            site_done,
            Some(true),
            "fetch {k} left before its site was done"
        );
        if let Some(n) = report
            .split(':')
            .nth(1)
            .and_then(|v| v.trim().trim_end_matches(',').parse::<u64>().ok())
        {
            from_uplink += n;
        }
        let status = node.child.wait().expect("fetch exits");
        assert!(status.success(), "fetch {k} failed: {:?}", node.stderr);
        assert_eq!(file_blake3(out), r.blake3, "fetch {k} artifact");
    }
    let f = r.size as f64;
    let inb = fleet.uplink(0, Dir::In) as f64;
    let outb = fleet.uplink(0, Dir::Out) as f64;
    println!(
        "one site of {per_site} one-shot fetch devices, 16 MiB: all left {:.1} s after the start, each once its site was done; uplink in {:.3} x F, out {:.3} x F; chunks from across it {:.3} x F",
        start.elapsed().as_secs_f64(),
        inb / f,
        outb / f,
        from_uplink as f64 / f
    );
    assert!(inb <= 1.05 * f, "the uplink carried {:.3} x F", inb / f);
    assert!(
        from_uplink as f64 <= 1.05 * f,
        "chunks from across the uplink {:.3} x F",
        from_uplink as f64 / f
    );
}

/// What a release day measured from the devices' reports.
struct Day {
    /// The last completion, seconds after the start.
    secs: f64,
    /// Each site's verified chunk bytes fetched across its uplink (x F).
    chunks: Vec<f64>,
    /// Chunks that arrived in pieces, over all devices.
    in_pieces: u64,
    /// Verified chunk bytes the devices received from the seeder (x F):
    /// what it sent that was used, beside its link's counter.
    from_seeder: f64,
    /// Chunk bytes the seeder queued as responses (x F), from its last
    /// word on shutdown: what it meant to send, used or not.
    served: f64,
    /// Chunks that arrived for a device that already held them, over all.
    duplicates: u64,
    /// TCP segments the seeder retransmitted.
    retransmits: u64,
    /// The last completion by the devices' own clocks, which start when
    /// their nodes do: without the processes' start-up, which 60 of them
    /// at once on a small test machine stretch by a second or two.
    own_last: f64,
}

/// Serves `r` from the fleet's seeder to a `run` device in every device
/// namespace, all started at once, until every device completed. Every
/// chunk first leaves the seeder (the devices start empty), so the
/// devices' reports must credit it with at least one copy.
fn release_day(fleet: &Fleet, r: &Release, per_site: usize) -> Day {
    let (mut seeder, addr) = r.serve_in(&fleet.seeder, &fleet.seeder_ip());
    let seeder_id = addr.rsplit("/p2p/").next().unwrap_or_default().to_owned();
    let start = Instant::now();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (d, sent) = std::thread::scope(|scope| {
        // The seeder's link counter over time: when its work was done.
        let sampler = scope.spawn(|| {
            let mut sent = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                sent.push((start.elapsed().as_secs_f64(), fleet.seeder_tx()));
                std::thread::park_timeout(Duration::from_millis(250));
            }
            sent
        });
        let mut nodes = devices(fleet, r, &addr, false);
        let spawned = start.elapsed().as_secs_f64();
        let d = wait_all(&mut nodes, r, start, Duration::from_secs(600));
        println!("  devices spawned in {spawned:.1} s");
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (d, sampler.join().expect("sampler"))
    });
    let total = sent.last().map_or(0, |s| s.1);
    let by = |share: f64| {
        sent.iter()
            .find(|s| s.1 as f64 >= share * total as f64)
            .map_or(0.0, |s| s.0)
    };
    println!(
        "  seeder's link: 50 % of its bytes out by {:.1} s, 90 % by {:.1} s, 99 % by {:.1} s; devices done by their clocks: first {:.1} s, median {:.1} s, last {:.1} s",
        by(0.5),
        by(0.9),
        by(0.99),
        d.done.first().copied().unwrap_or(0.0),
        d.done.get(d.done.len() / 2).copied().unwrap_or(0.0),
        d.done.last().copied().unwrap_or(0.0)
    );
    let from_seeder = d.from.get(&seeder_id).copied().unwrap_or(0);
    assert!(
        from_seeder >= r.size,
        "the devices credit the seeder {seeder_id} with {from_seeder} bytes, less than the release's {}",
        r.size
    );
    assert!(seeder.terminate().success(), "the seeder's exit");
    let served = served_bytes(&seeder.stderr)
        .unwrap_or_else(|| panic!("no \"served\" line from the seeder: {:?}", seeder.stderr));
    assert!(
        served >= from_seeder,
        "the seeder queued {served} bytes but the devices verified {from_seeder} from it"
    );
    Day {
        secs: d.secs,
        chunks: chunks_across(&d.across, per_site, r.size),
        in_pieces: d.in_pieces,
        from_seeder: from_seeder as f64 / r.size as f64,
        served: served as f64 / r.size as f64,
        duplicates: d.duplicates,
        retransmits: pollen_e2e::fleet::tcp_retransmits(&fleet.seeder),
        own_last: d.done.last().copied().unwrap_or(f64::NAN),
    }
}

/// The bytes in the seeder's last word, `served N chunks (B bytes)`.
fn served_bytes(stderr: &[String]) -> Option<u64> {
    stderr.iter().rev().find_map(|l| {
        let rest = l.split("served ").nth(1)?;
        let bytes = rest.split('(').nth(1)?.split(' ').next()?;
        bytes.parse().ok()
    })
}

/// The simulator's run of `simulator/examples/NAME`, the same set-up as a
/// test's fleet.
fn simulated(name: &str) -> Model {
    simulated_with(name, |text| text)
}

/// The same, its text changed by `edit` first.
fn simulated_with(name: &str, edit: impl FnOnce(String) -> String) -> Model {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../simulator/examples")
            .join(name),
    )
    .expect("scenario");
    let sc = pollen_sim::Scenario::from_toml(&edit(text)).expect("scenario parses");
    let o = pollen_sim::simulate(&sc, std::path::Path::new("."), |_, _| {}).expect("simulates");
    let total = o.nodes[0].bytes_out as f64;
    let by = |share: f64| {
        o.samples
            .iter()
            .find(|s| s.seeder_out_bytes as f64 >= share * total)
            .map_or(f64::NAN, |s| s.time)
    };
    Model {
        summary: pollen_sim::report::summary(&sc, &o),
        seeder_sent: o.nodes[0].bytes_sent as f64 / o.release_bytes as f64,
        seeder_by: [by(0.5), by(0.9), by(0.99)],
    }
}

/// The simulator's run of a test's fleet.
struct Model {
    summary: pollen_sim::report::Summary,
    /// What left the seeder (x F), used or not (the summary's seeder
    /// multiple counts the chunks delivered).
    seeder_sent: f64,
    /// When 50, 90 and 99 % of the chunks it delivered were in (to the
    /// scenario's sampling period).
    seeder_by: [f64; 3],
}

impl Model {
    /// Prints the model's run beside a real one done in `secs` by the
    /// test's clock and `own_last` by the devices' own.
    fn print_against(&self, secs: f64, own_last: f64) {
        let sim = &self.summary;
        let done = sim.completion_max_s.unwrap_or(f64::NAN);
        println!(
            "  simulated: {done:.1} s ({:+.0} %; {:+.0} % of the devices' own last, {own_last:.1} s), seeder sent {:.3} x F, delivered {:.3} x F of chunks; {} duplicate chunks; seeder's chunks 50 / 90 / 99 % in by {:.0?} s; devices done median {:.1} s",
            (done / secs - 1.0) * 100.0,
            (done / own_last - 1.0) * 100.0,
            self.seeder_sent,
            sim.seeder_multiple,
            sim.duplicate_chunks,
            self.seeder_by,
            sim.completion_p50_s.unwrap_or(f64::NAN)
        );
    }
}

#[test]
#[ignore = "needs root"]
fn flash_crowd_behind_a_slow_seeder_completes_near_the_bound() {
    let r = Release::publish(16 << 20, 63);
    flash_crowd(&r, "256 KiB", simulated("flash-5x3.toml"), Some((1.5, 1.5)));
}

/// Benchmark (not a check; `scripts/bench-pieces.sh` runs it): the same
/// flash crowd with chunks of 1 MiB on average (256 KiB to 4 MiB), each
/// passed on in 64 KiB pieces as it lands; simulated on the same chunk
/// list (the release file, cut as `publish --chunk-kib 1024`). A
/// cross-check of the model where pieces matter, whose time spreads too
/// widely between runs for a pass/fail limit: with 16 chunks for 5 sites
/// the seeder's first round is the slow part (the model puts it at 1.64 x
/// the bound; eight runs of the real node took 1.33-1.93 x, BENCHMARKS.md,
/// "A 1 MiB flash crowd in namespaces"). Asserted: every device completes
/// with the release, chunks arrive in pieces, and each site takes one
/// copy across its uplink; the time, the seeder's bytes and the model's
/// error are printed.
#[test]
#[ignore = "bench: scripts/bench-pieces.sh"]
fn bench_flash_crowd_in_1_mib_chunks() {
    let r = Release::publish_with(16 << 20, 65, &["--chunk-kib", "1024"]);
    let artifact = r.dir.join("image.bin");
    let sim = simulated_with("flash-5x3.toml", |text| {
        let files = format!("chunk_kib = 1024\nfiles = {{ new = {:?} }}\n", artifact);
        let synthetic = "release_mib = 16.0\nchunk_kib = 256\n";
        assert!(text.contains(synthetic), "flash-5x3.toml names its release");
        text.replace(synthetic, &files)
    });
    let in_pieces = flash_crowd(&r, "1 MiB", sim, None);
    assert!(in_pieces > 0, "no chunk arrived in pieces");
}

/// A seeder behind 2 Mbit/s, 5 sites of 3 devices behind 20 Mbit/s
/// uplinks, everyone asking at once for `r`, against the simulator's
/// `model` of the same: each site's uplink carries about one copy and, with
/// `limits` (a check, not a benchmark), all complete within `limits.0` x
/// the bound, the seeder sends at most `limits.1` x F, and the simulation
/// is within 25 %. Returns the chunks that arrived in pieces.
fn flash_crowd(r: &Release, chunks_name: &str, model: Model, limits: Option<(f64, f64)>) -> u64 {
    let _lock = exclusive();
    require();
    let (sites, per_site) = (5, 3);
    let fleet = Fleet::new(sites, per_site);
    fleet.limit_seeder("2mbit");
    fleet.limit_uplinks("20mbit");
    let _capture = capture(&fleet);
    let Day {
        secs,
        chunks,
        in_pieces,
        from_seeder,
        served,
        duplicates,
        retransmits,
        own_last,
    } = release_day(&fleet, r, per_site);
    let f = r.size as f64;
    let sim = &model.summary;
    let bound = sim.bound_s;
    let sim_done = sim.completion_max_s.expect("the simulation completes");

    let seeder = fleet.seeder_tx() as f64 / f;
    let ins: Vec<f64> = (0..sites)
        .map(|i| fleet.uplink(i, Dir::In) as f64 / f)
        .collect();
    println!("flash crowd: seeder 2 Mbit/s, {sites} sites x {per_site} devices, 20 Mbit/s uplinks, 16 MiB in {chunks_name} chunks");
    println!(
        "  real: all done in {secs:.1} s = {:.2} x the bound {bound:.1} s; {in_pieces} chunks arrived in pieces",
        secs / bound
    );
    println!("  real: seeder sent {seeder:.2} x F (wire), queued {served:.3} x F of chunks, {from_seeder:.3} x F the devices verified; {duplicates} duplicate chunks, {retransmits} TCP segments retransmitted; site uplinks in {ins:.3?} x F (wire), chunks across them {chunks:.3?} x F");
    model.print_against(secs, own_last);
    for (i, (x, c)) in ins.iter().zip(&chunks).enumerate() {
        assert!(*c <= 1.05, "site{i} fetched {c:.3} x F across its uplink");
        assert!(*x <= 1.3, "site{i}'s uplink carried {x:.3} x F in");
    }
    if let Some((within, seeder_within)) = limits {
        assert!(
            secs <= within * bound,
            "{secs:.1} s is over {within} x the bound {bound:.1} s"
        );
        assert!(seeder <= seeder_within, "the seeder sent {seeder:.2} x F");
        assert!(
            (sim_done / secs - 1.0).abs() <= 0.25,
            "simulated {sim_done:.1} s vs measured {secs:.1} s"
        );
    }
    in_pieces
}

/// Two sites of 30 devices behind a slow seeder. Asserted: every device
/// completes (within 600 s), each site fetches one copy across its
/// uplink, the sites share (the seeder sends at most 1.5 x F: each site
/// its own copy would be 2 x F) and all are done within 1.8 x the bound.
/// Before the seeder counted a site asking past its budget as a backlog
/// (`core::admission`), whether the sites shared hung on the timing of its
/// queue: one run in four at 49.1 s, the others 70.9-81.9 s at
/// 1.86-2.18 x F; with it, 43.6-47.9 s then and 41.5-43.6 s in eleven of
/// twelve runs on a quiet host, 1.08-1.17 x F (simulator/README.md,
/// "Cross-check at large sites"). The model's time is printed, not
/// asserted: 8-12 % under these runs, 4-6 % under the devices' own last
/// completion (the test's clock also holds 60 processes starting).
#[test]
#[ignore = "needs root"]
fn large_sites_hear_a_sample_and_still_take_one_copy() {
    let _lock = exclusive();
    require();
    let (sites, per_site) = (2, 30);
    assert!(
        per_site > pollen_core::node::SITE_FANOUT,
        "the sample is on"
    );
    let fleet = Fleet::new(sites, per_site);
    fleet.limit_seeder("4mbit");
    fleet.limit_uplinks("10mbit");
    let r = Release::publish(16 << 20, 64);
    let Day {
        secs,
        chunks,
        from_seeder,
        served,
        duplicates,
        retransmits,
        own_last,
        ..
    } = release_day(&fleet, &r, per_site);
    let f = r.size as f64;
    let model = simulated("large-sites-2x30.toml");
    let sim = &model.summary;
    let bound = sim.bound_s;
    assert!(sim.completion_max_s.is_some(), "the simulation completes");
    let seeder = fleet.seeder_tx() as f64 / f;
    println!("large sites: seeder 4 Mbit/s, {sites} sites x {per_site} devices, 10 Mbit/s uplinks, 16 MiB");
    println!(
        "  real: all done in {secs:.1} s = {:.2} x the bound {bound:.1} s; seeder sent {seeder:.2} x F (wire), queued {served:.3} x F of chunks, {from_seeder:.3} x F the devices verified; {duplicates} duplicate chunks, {retransmits} TCP segments retransmitted; chunks across the uplinks {chunks:.3?} x F",
        secs / bound
    );
    model.print_against(secs, own_last);
    for (i, c) in chunks.iter().enumerate() {
        assert!(*c <= 1.05, "site{i} fetched {c:.3} x F across its uplink");
    }
    assert!(
        seeder <= 1.5,
        "the seeder sent {seeder:.2} x F: the sites did not share"
    );
    assert!(
        secs <= 1.8 * bound,
        "{secs:.1} s is over 1.8 x the bound {bound:.1} s"
    );
}
