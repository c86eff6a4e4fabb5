//! The HTTPS origin on loopback, with no seeder: nginx serves a tree
//! `pollen-seeder export --origin` wrote; one device knows the origin, two
//! others know only devices. Everyone completes with the same BLAKE3 and
//! the origin sends about one copy of the release. And a hostile first
//! mirror (a chunk with wrong bytes, a truncated chunk): the device
//! completes from the second mirror, stores nothing bad, and its status
//! names the error. The same against a first mirror that misbehaves at the
//! HTTP level (`pollen_e2e::hostile_origin`): chunk responses longer than
//! the chunk (declared so, chunked, or ended by the close) and a response
//! that stalls for good after its first bytes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use pollen_e2e::hostile_origin::{Framing, HostileOrigin, Misbehaviour};
use pollen_e2e::origin::{export, Origin};
use pollen_e2e::{file_blake3, poll, run_json, s, try_node_status, Daemon, Release};

/// The successful chunk responses in an nginx access log (combined
/// format: `"GET /chunk/... HTTP/1.1" 200 BYTES`): path and body bytes.
fn chunks_served(origin: &Origin) -> Vec<(String, u64)> {
    origin
        .access_log()
        .lines()
        .filter_map(|l| {
            let (_, after) = l.split_once("\"GET ")?;
            let (path, rest) = after.split_once(' ')?;
            let (_, rest) = rest.split_once('"')?;
            let mut f = rest.split_whitespace();
            let (status, bytes) = (f.next()?, f.next()?);
            let ok = path.starts_with("/chunk/") && status == "200";
            ok.then(|| Some((path.to_owned(), bytes.parse::<u64>().ok()?)))?
        })
        .collect()
}

/// Body bytes of successful chunk responses in an nginx access log.
fn chunk_bytes(origin: &Origin) -> u64 {
    chunks_served(origin).iter().map(|(_, n)| n).sum()
}

/// nginx serving `root` on loopback, and the URL a node is given for it.
fn serve(root: &Path) -> (Origin, String) {
    let origin = Origin::start(root);
    let url = format!("{}/", origin.url);
    (origin, url)
}

/// `pollen-node run` on 127.0.0.1 in site `plant` writing `out`, with `extra`.
fn device(r: &Release, data: &Path, out: &Path, seed: u32, extra: &[&str]) -> Daemon {
    let seed = seed.to_string();
    let mut args = r.node_args("run", data, &[]);
    args.extend_from_slice(&["--site", "plant", "--out", s(out), "--seed", &seed]);
    args.extend_from_slice(extra);
    Daemon::spawn("pollen-node", &args)
}

fn wait_done(node: &mut Daemon, out: &Path, what: &str) -> serde_json::Value {
    let report = node
        .wait_complete(Duration::from_secs(120))
        .unwrap_or_else(|| panic!("{what} did not complete; stderr: {:?}", node.stderr));
    // The artifact is written right after the completion line.
    poll(Duration::from_secs(30), "the artifact", || {
        node.wait_for(Duration::from_millis(50), |_, _| None::<()>);
        out.exists()
            .then_some(())
            .ok_or_else(|| "not yet".to_owned())
    });
    report
}

/// The node's status once it shows the release complete (its snapshot
/// is refreshed by the event loop, a moment after the completion line).
fn complete_status(data: &Path) -> serde_json::Value {
    poll(
        Duration::from_secs(10),
        "status to show the release complete",
        || {
            let status = try_node_status(data)?;
            match status["release"]["complete"] == true {
                true => Ok(status),
                false => Err(status.to_string()),
            }
        },
    )
}

#[test]
fn a_fleet_without_a_seeder_takes_one_copy_from_the_origin() {
    let r = Release::publish(24 << 20, 15);
    let t = r.dir.as_path();
    let tree = t.join("tree");
    export(&r, &tree);
    let (nginx, nginx_url) = serve(&tree);
    let poll_every = ["--origin", nginx_url.as_str(), "--origin-poll", "1s"];
    let mut gate = device(&r, &t.join("a"), &t.join("a.img"), 1, &poll_every);
    let gate_addr = gate.loopback_addr();
    let mut b = device(
        &r,
        &t.join("b"),
        &t.join("b.img"),
        2,
        &["--peer", &gate_addr],
    );
    let b_addr = b.loopback_addr();
    let mut c = device(&r, &t.join("c"), &t.join("c.img"), 3, &["--peer", &b_addr]);
    for (node, name) in [(&mut gate, "a"), (&mut b, "b"), (&mut c, "c")] {
        let out = t.join(format!("{name}.img"));
        wait_done(node, &out, name);
        assert_eq!(file_blake3(&out), r.blake3, "device {name}'s artifact");
    }
    let from_origin = chunk_bytes(&nginx);
    eprintln!(
        "origin chunk bytes {from_origin} for a {} byte release ({:.3} copies)",
        r.size,
        from_origin as f64 / r.size as f64
    );
    assert!(
        from_origin >= r.size,
        "the origin sent {from_origin} bytes of {}",
        r.size
    );
    assert!(
        from_origin as f64 <= 1.05 * r.size as f64,
        "the origin sent {from_origin} bytes for a {} byte release",
        r.size
    );
    // The device with the origin shows it, with the bytes it verified.
    let status = complete_status(&t.join("a"));
    let origin = &status["origin"];
    assert_eq!(origin["mirrors"][0]["state"], "ok", "{status}");
    assert!(
        origin["bytes_verified"]
            .as_u64()
            .is_some_and(|v| v >= r.size * 9 / 10),
        "{status}"
    );
    assert_eq!(origin["chunks_rejected"], 0);
}

/// The chunk files of a tree, largest first.
fn chunk_files(tree: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(tree.join("chunk"))
        .expect("chunk dir")
        .flat_map(|d| std::fs::read_dir(d.expect("entry").path()).expect("subdir"))
        .map(|f| f.expect("file").path())
        .collect();
    files.sort_by_key(|f| std::cmp::Reverse(std::fs::metadata(f).map_or(0, |m| m.len())));
    files
}

#[test]
fn a_hostile_first_mirror_is_survived_from_the_second() {
    let r = Release::publish(6 << 20, 16);
    let t = r.dir.as_path();
    let good = t.join("good");
    export(&r, &good);
    // The bad mirror: the same tree, one chunk's bytes altered (same
    // length), another chunk cut short.
    let bad = t.join("bad");
    let copied = Command::new("cp")
        .args(["-a", s(&good), s(&bad)])
        .status()
        .expect("cp");
    assert!(copied.success());
    let files = chunk_files(&bad);
    assert!(files.len() >= 2, "{files:?}");
    let mut altered = std::fs::read(&files[0]).expect("chunk");
    for b in altered.iter_mut().take(64) {
        *b ^= 0xff;
    }
    std::fs::write(&files[0], &altered).expect("write");
    let short = std::fs::read(&files[1]).expect("chunk");
    std::fs::write(&files[1], &short[..short.len() / 2]).expect("write");
    let (_bad_nginx, bad_url) = serve(&bad);
    let (_good_nginx, good_url) = serve(&good);
    let data = t.join("dev");
    let out = t.join("dev.img");
    let mut dev = device(
        &r,
        &data,
        &out,
        4,
        &[
            "--origin",
            &bad_url,
            "--origin",
            &good_url,
            "--origin-poll",
            "1s",
        ],
    );
    let report = wait_done(&mut dev, &out, "the device");
    assert_eq!(file_blake3(&out), r.blake3);
    assert_eq!(report["complete"], true);
    let status = complete_status(&data);
    let origin = &status["origin"];
    let first = &origin["mirrors"][0];
    let error = first["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("failed verification") || error.contains("expected exactly"),
        "the bad mirror's error: {status}"
    );
    assert_eq!(origin["mirrors"][1]["state"], "ok", "{status}");
    // Nothing bad stored: the device's own check of every chunk passes.
    let _ = dev.terminate();
    let check = Command::new(pollen_e2e::bin("pollen-node"))
        .args(["check", "--data", s(&data)])
        .output()
        .expect("check");
    assert!(
        check.status.success(),
        "check: {}",
        String::from_utf8_lossy(&check.stderr)
    );
}

/// A second release of `r` (2.0.0, other bytes) published into its store.
fn publish_second(r: &Release) {
    let artifact = r.dir.join("image2.bin");
    pollen_e2e::write_random_file(&artifact, 3 << 20, 99);
    run_json(
        "pollen-seeder",
        &[
            "publish",
            "--key",
            s(&r.key),
            "--store",
            s(&r.store),
            "--artifact",
            s(&artifact),
            "--channel",
            "stable",
            "--version",
            "2.0.0",
            "--out",
            s(&r.dir.join("release2.pollen")),
        ],
    );
}

#[test]
fn a_stale_mirror_is_refused_and_reported() {
    let r = Release::publish(2 << 20, 17);
    let t = r.dir.as_path();
    // The stale mirror holds release 1's tree; the fresh one release 2's.
    let stale = t.join("stale");
    export(&r, &stale);
    publish_second(&r);
    let fresh = t.join("fresh");
    export(&r, &fresh);
    let (fresh_nginx, fresh_url) = serve(&fresh);
    let (_stale_nginx, stale_url) = serve(&stale);
    let data = t.join("dev");
    let out = t.join("dev.img");
    let mut dev = device(
        &r,
        &data,
        &out,
        5,
        &[
            "--origin",
            &fresh_url,
            "--origin",
            &stale_url,
            "--origin-poll",
            "1s",
        ],
    );
    let report = wait_done(&mut dev, &out, "the device");
    assert_eq!(report["release"], 2, "{report}");
    // The fresh mirror goes away: the stale one answers the next polls,
    // and its older index is refused.
    drop(fresh_nginx);
    let status = poll(Duration::from_secs(30), "the stale index refused", || {
        let status = try_node_status(&data)?;
        let error = status["origin"]["index_error"].as_str().unwrap_or_default();
        match error.contains("older than the one held") {
            true => Ok(status),
            false => Err(status.to_string()),
        }
    });
    assert_eq!(status["release"]["release"], 2, "still release 2: {status}");
    let stale_error = status["origin"]["mirrors"][1]["last_error"]
        .as_str()
        .unwrap_or_default();
    assert!(stale_error.contains("older"), "{status}");
}

#[test]
fn an_expired_index_is_reported() {
    let r = Release::publish(1 << 20, 18);
    let t = r.dir.as_path();
    let tree = t.join("tree");
    run_json(
        "pollen-seeder",
        &[
            "export",
            "--store",
            s(&r.store),
            "--origin",
            s(&tree),
            "--key",
            s(&r.key),
            "--policy",
            &r.trust,
            "--index-ttl",
            "60s",
        ],
    );
    let (_nginx, nginx_url) = serve(&tree);
    let data = t.join("dev");
    let out = t.join("dev.img");
    let mut dev = device(
        &r,
        &data,
        &out,
        6,
        &["--origin", &nginx_url, "--origin-poll", "1s"],
    );
    wait_done(&mut dev, &out, "the device");
    // Nobody exports again: once the index's life is over, status says so.
    // The exporter's shortest index life is a minute.
    poll(
        Duration::from_secs(100),
        "the expired index reported",
        || {
            let status = try_node_status(&data)?;
            let error = status["origin"]["index_error"].as_str().unwrap_or_default();
            match error.contains("expired") {
                true => Ok(()),
                false => Err(status.to_string()),
            }
        },
    );
}

/// What a device made of a hostile first mirror and nginx as the second,
/// both serving one tree.
struct HostileRun {
    release: Release,
    status: serde_json::Value,
    report: serde_json::Value,
    /// The chunk paths the hostile mirror answered badly.
    misbehaved: Vec<String>,
    /// The chunk responses nginx sent: path and body bytes.
    served: Vec<(String, u64)>,
    /// The release's chunk paths in the tree, with their sizes.
    chunks: Vec<(String, u64)>,
    took: Duration,
}

/// A device with `--origin HOSTILE --origin NGINX` (no seeder, no peer)
/// fetching a release whose chunks the hostile mirror answers as `mode`
/// says. Checks the device completes with the right artifact and that its
/// own check of its store passes afterwards.
fn against_hostile(mode: Misbehaviour, seed: u64) -> HostileRun {
    let r = Release::publish(3 << 20, seed);
    let t = r.dir.as_path();
    let tree = t.join("tree");
    export(&r, &tree);
    let hostile = HostileOrigin::start(&tree, mode);
    let (nginx, nginx_url) = serve(&tree);
    let (data, out) = (t.join("dev"), t.join("dev.img"));
    let started = Instant::now();
    let mut dev = device(
        &r,
        &data,
        &out,
        7,
        &[
            "--origin",
            &hostile.url,
            "--origin",
            &nginx_url,
            "--origin-poll",
            "1s",
        ],
    );
    let report = wait_done(&mut dev, &out, "the device");
    let took = started.elapsed();
    assert_eq!(file_blake3(&out), r.blake3, "the artifact");
    let status = complete_status(&data);
    let _ = dev.terminate();
    let check = Command::new(pollen_e2e::bin("pollen-node"))
        .args(["check", "--data", s(&data)])
        .output()
        .expect("check");
    assert!(
        check.status.success(),
        "check: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let chunks = chunk_files(&tree)
        .iter()
        .map(|f| {
            let rel = f.strip_prefix(&tree).expect("under the tree");
            let len = std::fs::metadata(f).expect("chunk").len();
            (format!("/{}", rel.display()), len)
        })
        .collect();
    eprintln!("hostile mirror asked: {:?}", hostile.asked());
    HostileRun {
        misbehaved: hostile.misbehaved(),
        served: chunks_served(&nginx),
        chunks,
        status,
        report,
        took,
        release: r,
    }
}

impl HostileRun {
    /// The first mirror's last error names `what`; the second one is fine;
    /// nothing the hostile mirror sent reached the store (nothing failed
    /// verification: it was refused before), and every chunk it answered
    /// badly came whole from nginx.
    fn assert_refused_and_served_elsewhere(&self, what: &str) {
        let (status, origin) = (&self.status, &self.status["origin"]);
        let error = origin["mirrors"][0]["last_error"]
            .as_str()
            .unwrap_or_default();
        assert!(error.contains(what), "the hostile mirror's error: {status}");
        assert_eq!(origin["mirrors"][1]["state"], "ok", "{status}");
        assert_eq!(origin["chunks_rejected"], 0, "{status}");
        assert_eq!(self.report["chunks_rejected"], 0, "{}", self.report);
        assert!(!self.misbehaved.is_empty(), "the hostile mirror was asked");
        for path in &self.misbehaved {
            let (_, len) = self
                .chunks
                .iter()
                .find(|(p, _)| p == path)
                .unwrap_or_else(|| panic!("{path} is no chunk of the tree"));
            assert!(
                self.served.iter().any(|(p, n)| p == path && n == len),
                "nginx did not serve {path} ({len} bytes) whole: {:?}",
                self.served
            );
        }
    }

    /// Every chunk came from nginx (the hostile mirror answered every
    /// chunk request badly): nginx served each chunk of the tree, and the
    /// origin's verified bytes are one copy of the release.
    fn assert_all_chunks_from_nginx(&self) {
        for (path, len) in &self.chunks {
            assert!(
                self.served.iter().any(|(p, n)| p == path && n == len),
                "nginx never served {path} whole: {:?}",
                self.served
            );
        }
        let origin = &self.status["origin"];
        assert_eq!(
            origin["bytes_verified"].as_u64(),
            Some(self.release.size),
            "{}",
            self.status
        );
    }
}

fn oversize(framing: Framing, seed: u64) {
    let run = against_hostile(
        Misbehaviour::Oversize {
            extra: 4096,
            framing,
        },
        seed,
    );
    eprintln!("{framing:?}: complete in {:?}", run.took);
    run.assert_refused_and_served_elsewhere("response too large");
    run.assert_all_chunks_from_nginx();
}

#[test]
fn an_oversized_chunk_declared_so_is_refused_and_fetched_from_the_second_mirror() {
    oversize(Framing::Declared, 19);
}

#[test]
fn an_oversized_chunked_response_is_refused_and_fetched_from_the_second_mirror() {
    oversize(Framing::Chunked, 20);
}

#[test]
fn an_oversized_close_delimited_response_is_refused_and_fetched_from_the_second_mirror() {
    oversize(Framing::CloseDelimited, 21);
}

/// Chunk responses that stop after their first bytes: each is given up
/// after the client's stall timeout (30 s, the default: the node has no
/// flag for it) and its chunk fetched from nginx.
#[test]
fn a_stalled_chunk_response_times_out_and_is_fetched_from_the_second_mirror() {
    let run = against_hostile(Misbehaviour::Stall { sent: 1000 }, 22);
    eprintln!("stall: complete in {:?}", run.took);
    run.assert_refused_and_served_elsewhere("stalled");
    run.assert_all_chunks_from_nginx();
    assert!(
        run.took >= Duration::from_secs(30),
        "complete in {:?}, before a stall could time out",
        run.took
    );
}
