//! The simulator's `bittorrent` strategy against a real BitTorrent client
//! (root only: `#[ignore = "needs root"]`, like `fleet.rs`, and failing
//! loudly without namespaces): aria2c seeds from the seeder's namespace
//! behind a 20 Mbit/s `tc tbf` link with opentracker beside it, three
//! sites of four aria2c devices each (local peer discovery on, DHT and peer
//! exchange off) behind 20 Mbit/s uplinks fetch a random file. The same
//! set-up as a scenario (`simulator/examples/bt-crosscheck.toml`) must
//! predict the time until every device is done, and the payload across
//! the uplinks and from the seeder (counted from aria2c's info logs, block
//! by block, as the model counts it; the veth counters' wire bytes are
//! printed beside them), within ±25 % of the median of three rounds (each
//! a fresh fleet, tracker and seed: aria2c's runs spread more than the
//! model's error).
//!
//! Multicast (local peer discovery) and every other packet stay inside the
//! namespaces the test creates; nothing runs on the host's interfaces.
//! `BT_CROSSCHECK_LOGS=DIR` keeps aria2c's logs (a directory per round).
//! About 2 minutes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pollen_e2e::fleet::{Dir, Fleet};
use pollen_e2e::netns::{exclusive, require};
use pollen_e2e::{random_bytes, s};

/// A bencoded value, written with sorted dictionary keys (BEP 3).
enum Ben<'a> {
    Int(u64),
    Bytes(&'a [u8]),
    Dict(Vec<(&'a str, Ben<'a>)>),
}

impl Ben<'_> {
    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Ben::Int(i) => out.extend_from_slice(format!("i{i}e").as_bytes()),
            Ben::Bytes(b) => {
                out.extend_from_slice(format!("{}:", b.len()).as_bytes());
                out.extend_from_slice(b);
            }
            Ben::Dict(entries) => {
                let mut sorted: Vec<&(&str, Ben<'_>)> = entries.iter().collect();
                sorted.sort_by_key(|(k, _)| k.as_bytes());
                out.push(b'd');
                for (k, v) in sorted {
                    Ben::Bytes(k.as_bytes()).write(out);
                    v.write(out);
                }
                out.push(b'e');
            }
        }
    }
}

/// A single-file torrent of `data` named `name` in pieces of `piece`
/// bytes, announcing to `tracker`: the .torrent's bytes and the info hash.
fn torrent(name: &str, data: &[u8], piece: usize, tracker: &str) -> (Vec<u8>, [u8; 20]) {
    let pieces: Vec<u8> = data
        .chunks(piece)
        .flat_map(|p| sha1_smol::Sha1::from(p).digest().bytes())
        .collect();
    let info = Ben::Dict(vec![
        ("length", Ben::Int(data.len() as u64)),
        ("name", Ben::Bytes(name.as_bytes())),
        ("piece length", Ben::Int(piece as u64)),
        ("pieces", Ben::Bytes(&pieces)),
    ]);
    let mut info_bytes = Vec::new();
    info.write(&mut info_bytes);
    let hash = sha1_smol::Sha1::from(&info_bytes).digest().bytes();
    let mut out = Vec::new();
    Ben::Dict(vec![
        ("announce", Ben::Bytes(tracker.as_bytes())),
        ("info", info),
    ])
    .write(&mut out);
    (out, hash)
}

/// A child process killed (and reaped) when dropped.
struct Proc(Child, &'static str);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    /// Runs `args` inside namespace `ns`, output to `log`.
    fn spawn_in(ns: &str, what: &'static str, args: &[&str], log: &Path) -> Self {
        let file = std::fs::File::create(log).expect("log file");
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {what}: {e}"));
        Proc(child, what)
    }

    /// Panics (with its log) if the process has exited.
    fn check_alive(&mut self, log: &Path) {
        if let Ok(Some(status)) = self.0.try_wait() {
            panic!(
                "{} exited ({status}): {}",
                self.1,
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
    }
}

fn need(tool: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "{tool} is missing: run scripts/setup.sh (apt-get install aria2 opentracker curl)"
    );
}

/// aria2c's options common to the seeder and the devices: local peer
/// discovery on `ip`'s interface, no DHT, no peer exchange, no limits.
fn aria2_args<'a>(dir: &'a str, ip: &'a str) -> Vec<&'a str> {
    vec![
        "aria2c",
        "--dir",
        dir,
        "--seed-ratio=0",
        "--enable-dht=false",
        "--enable-dht6=false",
        "--enable-peer-exchange=false",
        "--bt-enable-lpd=true",
        "--bt-lpd-interface",
        ip,
        "--disable-ipv6=true",
        "--file-allocation=none",
        "--summary-interval=0",
        "--console-log-level=warn",
        "--listen-port=6881",
    ]
}

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// The blocks an aria2c info log says its client received: (sender's
/// address, bytes) per `piece` message.
fn blocks_received(log: &Path) -> Vec<(String, u64)> {
    let text = std::fs::read_to_string(log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
    text.lines()
        .filter_map(|line| {
            // "... CUID#7 - From: 10.1.101.2:6881 piece index=3, begin=0, length=16384"
            let (_, rest) = line.split_once(" - From: ")?;
            let (addr, msg) = rest.split_once(' ')?;
            let len = msg.strip_prefix("piece index=")?.rsplit_once("length=")?.1;
            let ip = addr.rsplit_once(':')?.0;
            Some((ip.to_owned(), len.trim().parse().ok()?))
        })
        .collect()
}

/// Rounds of the real swarm the model is compared with.
const ROUNDS: usize = 3;

fn within(sim: f64, real: f64) -> f64 {
    sim / real - 1.0
}

#[test]
#[ignore = "needs root"]
fn aria2_and_the_bittorrent_model_agree_within_25_percent() {
    let _lock = exclusive();
    require();
    for tool in ["aria2c", "opentracker", "curl"] {
        need(tool);
    }

    // The scenario decides the set-up, so the two cannot drift apart.
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../simulator/examples/bt-crosscheck.toml"),
    )
    .expect("scenario");
    let sc = pollen_sim::Scenario::from_toml(&text).expect("scenario parses");
    assert_eq!(sc.strategy, pollen_sim::Strategy::Bittorrent);
    let group = &sc.sites[0];
    let sites = group.count as usize;
    let size = (sc.release_mib * 1024.0 * 1024.0) as usize;
    let data = random_bytes(size, 71);
    // aria2c's runs spread (27.6-41.4 s for the same set-up, see
    // simulator/README.md): the model meets the median of three rounds.
    let rounds: Vec<Real> = (0..ROUNDS).map(|k| aria2_round(&sc, &data, k)).collect();
    let median = |f: fn(&Real) -> f64| {
        let mut v: Vec<f64> = rounds.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let secs = median(|r| r.secs);
    let real_in = median(|r| r.real_in);
    let real_seeder = median(|r| r.real_seeder);

    let o = pollen_sim::simulate(&sc, Path::new("."), |_, _| {}).expect("simulates");
    let sim = pollen_sim::report::summary(&sc, &o);
    let sim_done = sim.completion_max_s.expect("the simulation completes");
    let mut sim_line = Vec::new();
    for chunk in o.samples.chunks(sites) {
        let into: u64 = chunk.iter().map(|x| x.uplink_in_bytes).sum();
        let f = size as f64;
        sim_line.push(format!(
            "{:.0}s {:.2}/{:.2}",
            chunk[0].time,
            chunk[0].seeder_out_bytes as f64 / f,
            into as f64 / f
        ));
    }
    println!("  simulated timeline: {}", sim_line.join(" "));
    println!(
        "aria2 vs model: seeder {} Mbit/s, {sites} sites x {} devices, {} Mbit/s uplinks, {} MiB in {} KiB pieces",
        sc.seeder().expect("a seeder").upload_mbit,
        group.devices,
        group.uplink_down_mbit,
        sc.release_mib,
        sc.bittorrent.piece_kib
    );
    println!(
        "  real, median of {ROUNDS} rounds: all done in {secs:.1} s; seeder sent {real_seeder:.2} x F payload; site uplinks in {real_in:.3} x F payload (mean over the sites)"
    );
    println!(
        "  simulated: all done in {sim_done:.1} s ({:+.0} %), median {:.1} s; seeder {:.2} x F ({:+.0} %); uplinks in {:.3?} x F, mean {:.3} ({:+.0} %)",
        within(sim_done, secs) * 100.0,
        sim.completion_p50_s.unwrap_or(0.0),
        sim.seeder_multiple,
        within(sim.seeder_multiple, real_seeder) * 100.0,
        sim.uplink_multiple_per_site,
        sim.uplink_multiple_mean,
        within(sim.uplink_multiple_mean, real_in) * 100.0
    );
    assert!(
        within(sim_done, secs).abs() <= 0.25,
        "completion: simulated {sim_done:.1} s vs measured {secs:.1} s (median of {ROUNDS})"
    );
    assert!(
        within(sim.uplink_multiple_mean, real_in).abs() <= 0.25,
        "uplink bytes in: simulated {:.3} x F vs measured {real_in:.3} x F (median of {ROUNDS})",
        sim.uplink_multiple_mean
    );
    assert!(
        within(sim.seeder_multiple, real_seeder).abs() <= 0.25,
        "seeder bytes: simulated {:.2} x F vs measured {real_seeder:.2} x F (median of {ROUNDS})",
        sim.seeder_multiple
    );
}

/// What one swarm of aria2c devices did, measured (multiples of the file's
/// size, "x F").
struct Real {
    /// Until the last device was done; the first and the median device.
    secs: f64,
    first: f64,
    median: f64,
    /// Payload across each site's uplink, and its mean over the sites.
    pay_ins: Vec<f64>,
    real_in: f64,
    /// Payload the seeder sent.
    real_seeder: f64,
    /// Wire bytes into each site, their mean, and out of the seeder.
    ins: Vec<f64>,
    wire_in: f64,
    wire_seeder: f64,
}

/// One round: a fresh fleet of namespaces, tracker and seed, and every
/// device fetching `data` from nothing.
fn aria2_round(sc: &pollen_sim::Scenario, data: &[u8], round: usize) -> Real {
    let group = &sc.sites[0];
    let (sites, per_site) = (group.count as usize, group.devices as usize);
    let seeder_mbit = sc.seeder().expect("a seeder").upload_mbit;
    let size = data.len();
    let piece = sc.bittorrent.piece_kib as usize * 1024;

    let fleet = Fleet::new(sites, per_site);
    fleet.limit_seeder(&format!("{seeder_mbit}mbit"));
    fleet.limit_uplinks(&format!("{}mbit", group.uplink_down_mbit));

    let tmp = tempfile::tempdir().expect("tempdir");
    let seeder_ip = fleet.seeder_ip();
    let tracker_url = format!("http://{seeder_ip}:6969/announce");
    let (meta, hash) = torrent("release.img", data, piece, &tracker_url);
    let torrent_path = tmp.path().join("release.torrent");
    std::fs::write(&torrent_path, &meta).expect("write torrent");
    let seed_dir = tmp.path().join("seed");
    std::fs::create_dir_all(&seed_dir).expect("seed dir");
    std::fs::write(seed_dir.join("release.img"), data).expect("seed file");
    // Writes when aria2c finished the download (before it seeds on).
    let hook = tmp.path().join("done.sh");
    std::fs::write(&hook, "#!/bin/sh\ndate +%s.%N > \"$3.done\"\n").expect("hook");
    Command::new("chmod")
        .args(["+x", s(&hook)])
        .status()
        .expect("chmod");

    // Debian's opentracker tracks whitelisted torrents only; it chroots
    // into the directory and runs as `nobody`.
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(tmp.path().join("whitelist.txt"), format!("{hex}\n")).expect("whitelist");
    Command::new("chmod")
        .args(["755", s(tmp.path())])
        .status()
        .expect("chmod");

    // The tracker and the seed, and the seed known to the tracker before
    // any device announces (as the model's seeder is).
    let tracker_log = tmp.path().join("opentracker.log");
    let mut tracker = Proc::spawn_in(
        &fleet.seeder,
        "opentracker",
        &[
            "opentracker",
            "-i",
            &seeder_ip,
            "-p",
            "6969",
            "-P",
            "6969",
            "-d",
            s(tmp.path()),
            "-w",
            "whitelist.txt",
        ],
        &tracker_log,
    );
    // aria2c's info logs (every message each client received: who sent
    // which block, its choke rounds) give the payload; they stay in the
    // temporary directory, or in `BT_CROSSCHECK_LOGS=DIR` when set.
    let logs = std::env::var_os("BT_CROSSCHECK_LOGS")
        .map_or_else(|| tmp.path().join("logs"), PathBuf::from)
        .join(format!("round{round}"));
    std::fs::create_dir_all(&logs).expect("log dir");
    let log_path = |name: &str| logs.join(format!("{name}.log"));
    let log_args = |name: &str| -> Vec<String> {
        vec![
            format!("--log={}", log_path(name).display()),
            "--log-level=info".to_owned(),
        ]
    };
    let seed_log = tmp.path().join("seed.log");
    let seed_extra = log_args("seed");
    let mut seed_args = aria2_args(s(&seed_dir), &seeder_ip);
    seed_args.extend(seed_extra.iter().map(String::as_str));
    seed_args.extend([
        "--bt-seed-unverified=true",
        "--check-integrity=false",
        s(&torrent_path),
    ]);
    let mut seed = Proc::spawn_in(&fleet.seeder, "aria2c (seed)", &seed_args, &seed_log);
    let escaped: String = hash.iter().map(|b| format!("%{b:02X}")).collect();
    let scrape = format!("http://{seeder_ip}:6969/scrape?info_hash={escaped}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        tracker.check_alive(&tracker_log);
        seed.check_alive(&seed_log);
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &fleet.core,
                "curl",
                "-s",
                "--max-time",
                "1",
                &scrape,
            ])
            .output()
            .expect("curl");
        if String::from_utf8_lossy(&out.stdout).contains("8:completei1e") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the tracker never listed the seed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let seeder_tx0 = fleet.seeder_tx();
    let ins0: Vec<u64> = (0..sites).map(|i| fleet.uplink(i, Dir::In)).collect();
    let start = now_unix();
    let mut devices = Vec::new();
    let mut outs: Vec<PathBuf> = Vec::new();
    for (i, (_, names)) in fleet.sites.iter().enumerate() {
        for (j, ns) in names.iter().enumerate() {
            let dir = tmp.path().join(format!("s{i}d{j}"));
            std::fs::create_dir_all(&dir).expect("device dir");
            let ip = fleet.device_ip(i, j);
            let hook_arg = format!("--on-bt-download-complete={}", s(&hook));
            let extra = log_args(&format!("s{i}d{j}"));
            let mut args = aria2_args(s(&dir), &ip);
            args.extend(extra.iter().map(String::as_str));
            args.extend([hook_arg.as_str(), s(&torrent_path)]);
            let log = dir.join("aria2c.log");
            devices.push((Proc::spawn_in(ns, "aria2c (device)", &args, &log), log));
            outs.push(dir.join("release.img"));
        }
    }

    // Every device done (its hook wrote the time), within 3 minutes.
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut done: Vec<Option<f64>> = vec![None; outs.len()];
    // (s, seeder bytes, bytes into the sites) once a second, for the log.
    let mut timeline: Vec<(f64, f64, f64)> = Vec::new();
    while done.iter().any(Option::is_none) {
        let t = now_unix() - start;
        if timeline.last().is_none_or(|l| t - l.0 >= 1.0) {
            let into: u64 = (0..sites).map(|i| fleet.uplink(i, Dir::In) - ins0[i]).sum();
            let f = size as f64;
            timeline.push((
                t,
                (fleet.seeder_tx() - seeder_tx0) as f64 / f,
                into as f64 / f,
            ));
        }
        for (k, out) in outs.iter().enumerate() {
            if done[k].is_none() {
                let mark = PathBuf::from(format!("{}.done", out.display()));
                done[k] = std::fs::read_to_string(&mark)
                    .ok()
                    .and_then(|t| t.trim().parse::<f64>().ok());
            }
        }
        for (p, log) in &mut devices {
            p.check_alive(log);
        }
        assert!(
            Instant::now() < deadline,
            "devices not done after 180 s: {:?}",
            done.iter()
                .enumerate()
                .filter(|(_, d)| d.is_none())
                .map(|(k, _)| k)
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let secs = done.iter().flatten().fold(0.0f64, |a, &t| a.max(t - start));
    let seeder_bytes = (fleet.seeder_tx() - seeder_tx0) as f64;
    let ins: Vec<f64> = (0..sites)
        .map(|i| (fleet.uplink(i, Dir::In) - ins0[i]) as f64 / size as f64)
        .collect();
    drop(devices);
    drop(seed);
    drop(tracker);
    // Payload, as the model counts it: the blocks each device received,
    // from the seeder and from devices of other sites.
    let lan = |i: usize| {
        let ip = fleet.device_ip(i, 0);
        ip[..=ip.rfind('.').expect("dotted")].to_owned()
    };
    let mut pay_in = vec![0u64; sites];
    let mut pay_seeder = 0u64;
    for (i, into) in pay_in.iter_mut().enumerate() {
        for j in 0..per_site {
            let blocks = blocks_received(&log_path(&format!("s{i}d{j}")));
            let got: u64 = blocks.iter().map(|b| b.1).sum();
            assert!(
                got >= size as u64,
                "device s{i}d{j}'s log names {got} bytes received, less than the file"
            );
            for (from, bytes) in blocks {
                if from == seeder_ip {
                    pay_seeder += bytes;
                }
                if !from.starts_with(&lan(i)) {
                    *into += bytes;
                }
            }
        }
    }
    let pay_ins: Vec<f64> = pay_in.iter().map(|&b| b as f64 / size as f64).collect();
    for (k, out) in outs.iter().enumerate() {
        let got = std::fs::read(out).unwrap_or_else(|e| panic!("device {k}: {e}"));
        assert!(got == data, "device {k}'s file differs from the seed's");
    }

    let line: Vec<String> = timeline
        .iter()
        .map(|(t, sd, i)| format!("{t:.0}s {sd:.2}/{i:.2}"))
        .collect();
    println!(
        "  real timeline (seeder / into all sites, x F): {}",
        line.join(" ")
    );
    let mut times: Vec<f64> = done.iter().flatten().map(|t| t - start).collect();
    times.sort_by(f64::total_cmp);
    let ins_mean = ins.iter().sum::<f64>() / ins.len() as f64;
    let real = Real {
        secs,
        first: times[0],
        median: times[times.len() / 2],
        real_in: pay_ins.iter().sum::<f64>() / pay_ins.len() as f64,
        real_seeder: pay_seeder as f64 / size as f64,
        wire_in: ins_mean,
        wire_seeder: seeder_bytes / size as f64,
        pay_ins,
        ins,
    };
    println!(
        "  real, round {round}: all done in {:.1} s (first {:.1} s, median {:.1} s); seeder sent {:.2} x F payload ({:.2} wire); site uplinks in {:.3?} x F payload, mean {:.3} ({:.3?} wire, mean {:.3})",
        real.secs,
        real.first,
        real.median,
        real.real_seeder,
        real.wire_seeder,
        real.pay_ins,
        real.real_in,
        real.ins,
        real.wire_in
    );
    real
}
