//! The update lifecycle across the mesh with real processes: installs,
//! health-check rollbacks reported to the seeder through chains of peers,
//! the automatic halt of a failing rollout, and refusals that change no
//! state on the network path.

use std::path::{Path, PathBuf};
use std::time::Duration;

use pollen_e2e::{
    file_blake3, free_port, node_status, poll, release_stages, run_json, run_ok, s, seeder_status,
    serve_args, write_random_file, Daemon, Release,
};

const WAIT: Duration = Duration::from_secs(180);

fn seeder(r: &Release, port: u16, key: bool) -> (Daemon, String) {
    let listen = format!("/ip4/127.0.0.1/tcp/{port}");
    let mut args = serve_args(&r.store, &listen);
    if key {
        args.extend_from_slice(&["--key", s(&r.key)]);
    }
    let mut d = Daemon::spawn("pollen-seeder", &args);
    let addr = d.loopback_addr();
    (d, addr)
}

/// A device daemon; `peer` is the one address it is given.
fn node(r: &Release, data: &Path, device: &str, peer: &str, health: &str) -> (Daemon, String) {
    let mut args = r.device_args(data, peer);
    args.extend_from_slice(&[
        "--device-id",
        device,
        "--status-interval",
        "2s",
        "--retry-interval",
        "1s",
        "--install-hook",
        r#"echo "$POLLEN_VERSION" > "$POLLEN_SLOT/installed-by-hook""#,
        "--health-hook",
        health,
    ]);
    let mut d = Daemon::spawn("pollen-node", &args);
    let addr = d.loopback_addr();
    (d, addr)
}

fn publish_next(r: &Release, n: u64, extra: &[&str]) -> serde_json::Value {
    let artifact = r.dir.join(format!("v{n}.img"));
    write_random_file(&artifact, 4 << 20, 500 + n);
    let version = format!("{n}.0.0");
    let mut args = vec![
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
        &version,
    ];
    args.extend_from_slice(extra);
    let mut report = run_json("pollen-seeder", &args);
    report["blake3"] = serde_json::json!(file_blake3(&artifact));
    report
}

fn stage_sum(stages: &[serde_json::Value], field: &str) -> u64 {
    stages.iter().map(|s| s[field].as_u64().unwrap_or(0)).sum()
}

/// What the active slot holds, checked whole.
fn active_slot(data: &Path) -> Option<(String, String)> {
    let link = std::fs::read_link(data.join("slots/active")).ok()?;
    let slot = data.join("slots").join(&link);
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(slot.join("release.json")).ok()?).ok()?;
    let hash = file_blake3(&slot.join("artifact"));
    assert_eq!(
        info["blake3"].as_str(),
        Some(hash.as_str()),
        "active slot not whole"
    );
    Some((link.display().to_string(), hash))
}

#[test]
fn release_installs_then_rolls_back_where_health_fails() {
    let r = Release::publish(4 << 20, 91);
    let port = free_port();
    let (mut seed, mut prev) = seeder(&r, port, false);
    let mut nodes = Vec::new();
    let mut datas = Vec::new();
    for i in 0..6 {
        let data = r.dir.join(format!("node{i}"));
        // Devices 4 and 5 cannot run release 2: their health check says so.
        let health = if i >= 4 {
            r#"test "$POLLEN_RELEASE" != 2 || { echo "watchdog: service crashed" >&2; exit 1; }"#
        } else {
            r#"test -s "$POLLEN_ARTIFACT" && test -e "$POLLEN_SLOT/installed-by-hook""#
        };
        // A chain: each node knows only the previous one, so most status
        // records reach the seeder through other nodes.
        let (n, addr) = node(&r, &data, &format!("press-{i}"), &prev, health);
        prev = addr;
        nodes.push(n);
        datas.push(data);
    }
    poll(WAIT, "release 1 installed on 6 devices", || {
        let st = seeder_status(&r.store);
        let stages = release_stages(&st, 1);
        match stage_sum(&stages, "installed") {
            6 => Ok(()),
            n => Err(format!("{n} installed: {st}")),
        }
    });
    for d in &datas {
        assert_eq!(active_slot(d).map(|a| a.1), Some(r.blake3.clone()));
    }

    // Release 2: the operator stops the seeder, publishes, serves again on the same port.
    seed.kill();
    let v2 = publish_next(&r, 2, &[]);
    let _seed = seeder(&r, port, false);
    let st = poll(WAIT, "release 2: 4 installed, 2 rolled back", || {
        let st = seeder_status(&r.store);
        let stages = release_stages(&st, 2);
        let (ok, back) = (
            stage_sum(&stages, "installed"),
            stage_sum(&stages, "rolled_back"),
        );
        if (ok, back) == (4, 2) {
            Ok(st)
        } else {
            Err(format!("{ok} installed, {back} rolled back: {st}"))
        }
    });
    println!(
        "{}",
        run_ok("pollen-seeder", &["status", "--store", s(&r.store)])
    );
    let stages = release_stages(&st, 2);
    assert_eq!(stage_sum(&stages, "seen"), 6);
    assert_eq!(stage_sum(&stages, "failed"), 0);
    for (i, d) in datas.iter().enumerate() {
        let status = node_status(d);
        assert_eq!(status["running"], true);
        if i < 4 {
            assert_eq!(status["phase"], "committed", "node {i}: {status}");
            assert_eq!(status["installed"]["release"], 2);
            assert_eq!(
                active_slot(d),
                Some(("b".into(), v2["blake3"].as_str().unwrap_or("").into()))
            );
            let by_hook =
                std::fs::read_to_string(d.join("slots/b/installed-by-hook")).unwrap_or_default();
            assert_eq!(
                by_hook.trim(),
                "2.0.0",
                "install hook did not run with the slot"
            );
        } else {
            assert_eq!(status["phase"], "rolled-back", "node {i}: {status}");
            assert_eq!(status["installed"]["release"], 1);
            assert!(status["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("watchdog")));
            assert_eq!(active_slot(d), Some(("a".into(), r.blake3.clone())));
        }
        let device = format!("press-{i}");
        let reported = st["devices"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|x| x["device"] == device.as_str())
            .unwrap_or_else(|| panic!("{device} not in the seeder's status"));
        assert_eq!(reported["phase"], status["phase"], "{device}");
    }
    // Prometheus metrics on the local endpoint.
    let addr = std::fs::read_to_string(datas[0].join("api.addr")).expect("api.addr");
    let metrics =
        pollen_node::api::request(addr.trim().parse().expect("addr"), "GET", "/metrics", b"")
            .expect("metrics");
    assert!(
        metrics.contains("pollen_update_phase{phase=\"committed\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("pollen_installed_release 2"));
    assert!(metrics.contains("pollen_bytes_received_total{source=\"lan\"}"));
    drop(nodes);
}

#[test]
fn failing_rollout_halts_itself_after_the_first_stage() {
    let r = Release::publish_with(
        4 << 20,
        92,
        &["--stages", "34%,100%", "--max-failures", "20%"],
    );
    let id = r.report["manifest_id"]
        .as_str()
        .expect("manifest id")
        .to_owned();
    let devices = pollen_e2e::pick_devices("line", &id, 3400, 2, 4);
    let port = free_port();
    let (seed, _) = seeder(&r, port, true);
    let seeder_addr = format!("/ip4/127.0.0.1/tcp/{port}");
    let mut nodes = Vec::new();
    for (device, _) in &devices {
        let data = r.dir.join(device);
        let n = node(
            &r,
            &data,
            device,
            &seeder_addr,
            r#"echo "no heartbeat" >&2; exit 1"#,
        );
        nodes.push((data, n));
    }
    let st = poll(WAIT, "the seeder to halt the rollout", || {
        let st = seeder_status(&r.store);
        let halted = st["releases"][0]["halted"] == true;
        if halted {
            Ok(st)
        } else {
            Err(st.to_string())
        }
    });
    let stages = release_stages(&st, 1);
    let failed = stages[0]["rolled_back"].as_u64().unwrap_or(0);
    assert!(failed >= 1, "halted without a failure: {st}");
    assert_eq!(stage_sum(&stages, "installed"), 0);
    // The operator promotes anyway: the halt still holds for everyone.
    let promoted = run_json(
        "pollen-seeder",
        &[
            "rollout",
            "--key",
            s(&r.key),
            "--store",
            s(&r.store),
            "--channel",
            "stable",
            "promote",
        ],
    );
    assert_eq!(promoted["halted"], true);
    let seq = promoted["seq"].as_u64().expect("seq");
    for ((data, _), (device, first)) in nodes.iter().zip(&devices) {
        let status = poll(WAIT, &format!("{device} to see the promotion"), || {
            let st = node_status(data);
            let seen = st["control"]["seq"].as_u64().is_some_and(|s| s >= seq);
            // Judged again under the promotion: held as halted, or (first stage) rolled back.
            let halted = st["note"].as_str().is_some_and(|n| n.contains("halted"));
            let settled = halted || st["phase"] == "rolled-back";
            if seen && settled {
                Ok(st)
            } else {
                Err(st.to_string())
            }
        });
        assert!(
            status["installed"].is_null(),
            "{device} installed a halted release: {status}"
        );
        assert!(active_slot(data).is_none(), "{device} has an active slot");
        if !first {
            assert_eq!(status["phase"], "verified", "{device}: {status}");
            assert!(
                status["note"]
                    .as_str()
                    .is_some_and(|n| n.contains("halted")),
                "{status}"
            );
            assert_eq!(
                status["release"]["complete"], true,
                "{device} should still hold the chunks"
            );
        }
    }
    let st = poll(WAIT, "the later stage to report", || {
        let st = seeder_status(&r.store);
        match release_stages(&st, 1)
            .get(1)
            .and_then(|s| s["waiting"].as_u64())
        {
            Some(4) => Ok(st),
            _ => Err(st.to_string()),
        }
    });
    println!(
        "{}",
        run_ok("pollen-seeder", &["status", "--store", s(&r.store)])
    );
    let later = &release_stages(&st, 1)[1];
    assert_eq!(later["installed"], 0);
    assert_eq!(later["rolled_back"], 0);
    drop(seed);
}

/// A store holding one crafted release (signed with the genuine key);
/// returns the store directory and the signed manifest bytes.
fn crafted_store(
    r: &Release,
    name: &str,
    tweak: impl FnOnce(&mut pollen_core::Manifest),
) -> (PathBuf, Vec<u8>) {
    use pollen_core::manifest::{SecretKey, SignedManifest, VerifiedManifest};
    use pollen_node::store::{RocksStore, Store};
    let key_text = std::fs::read_to_string(&r.key).expect("key");
    let key = SecretKey::from_text(key_text.trim()).expect("secret key");
    let src = RocksStore::open_read_only(&r.store).expect("publisher store");
    let id = src.manifest_ids().expect("ids")[0];
    let signed = SignedManifest::decode(&src.get_manifest(&id).expect("get").expect("manifest"))
        .expect("decode");
    let mut m = signed.manifest().clone();
    tweak(&mut m);
    let store_dir = r.dir.join(name);
    let store = RocksStore::open(&store_dir).expect("store");
    for c in &m.chunks {
        let chunk = src.read_chunk(c).expect("chunk").expect("present");
        store.put_chunk(chunk).expect("put");
    }
    let bytes = SignedManifest::sign(m, &[&key]).encode();
    let signed = SignedManifest::decode(&bytes).expect("decode");
    store
        .put_manifest(&VerifiedManifest::assume_verified(signed))
        .expect("put manifest");
    (store_dir, bytes)
}

/// A genuine-key release a device on release 5 (hardware `hw-a`) must refuse.
struct Bad {
    name: &'static str,
    store: PathBuf,
    manifest: Vec<u8>,
    /// What the refusal message must say.
    phrase: &'static str,
}

/// Older, expired and other-hardware releases; with `halted`, also a
/// release 6 its publisher halted (the control stored with it, and written
/// to `halt.control` for the offline path).
fn bad_releases(r: &Release, halted: bool) -> Vec<Bad> {
    let now = pollen_node::unix_now();
    let mut out = Vec::new();
    let mut add = |name, phrase, tweak: &dyn Fn(&mut pollen_core::Manifest)| {
        let (store, manifest) = crafted_store(r, name, tweak);
        out.push(Bad {
            name,
            store,
            manifest,
            phrase,
        });
    };
    add("older", "rollback refused", &|m| m.release = 4);
    add("expired", "expired", &|m| {
        m.release = 6;
        m.created_at = now - 7200;
        m.expires_at = now - 3600;
    });
    add("other-hardware", "hardware", &|m| {
        m.release = 6;
        m.hardware = vec!["hw-b".into()];
    });
    if halted {
        add("halted", "halted", &|m| m.release = 6);
        let store = out.last().map(|b| b.store.clone()).expect("just added");
        let halt = run_json(
            "pollen-seeder",
            &[
                "rollout",
                "--key",
                s(&r.key),
                "--store",
                s(&store),
                "--channel",
                "stable",
                "--out",
                s(&r.dir.join("halt.control")),
                "halt",
            ],
        );
        assert_eq!(halt["halted"], true);
    }
    out
}

fn serve_store(store: &Path) -> (Daemon, String) {
    let mut d = Daemon::spawn("pollen-seeder", &serve_args(store, "/ip4/127.0.0.1/tcp/0"));
    let addr = d.loopback_addr();
    (d, addr)
}

/// A device on release 5 (hardware `hw-a`), installed offline.
fn device_on_release_5(r: &Release) -> PathBuf {
    let data = r.dir.join("device");
    let out = pollen_e2e::run(
        "pollen-node",
        &[
            "import",
            "--data",
            s(&data),
            "--trust",
            &r.trust,
            "--manifest",
            s(&r.manifest),
            "--chunks",
            s(&r.store),
            "--hardware",
            "hw-a",
            "--channel",
            "stable",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    data
}

fn device_daemon(r: &Release, data: &Path, peers: &[String]) -> Daemon {
    let mut args = vec![
        "run",
        "--data",
        s(data),
        "--trust",
        &r.trust,
        "--channel",
        "stable",
        "--hardware",
        "hw-a",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--no-mdns",
        "--status-interval",
        "1s",
    ];
    for p in peers {
        args.extend_from_slice(&["--peer", p]);
    }
    let mut d = Daemon::spawn("pollen-node", &args);
    d.loopback_addr();
    d
}

#[test]
fn refusals_on_the_offline_path_change_nothing() {
    let r = Release::publish_with(2 << 20, 94, &["--hardware", "hw-a", "--release", "5"]);
    let data = device_on_release_5(&r);
    for bad in bad_releases(&r, true) {
        let file = r.dir.join(format!("{}.pollen", bad.name));
        std::fs::write(&file, &bad.manifest).expect("write manifest");
        let before = pollen_e2e::snapshot(&data);
        let control = r.dir.join("halt.control");
        let mut args = vec![
            "import",
            "--data",
            s(&data),
            "--trust",
            &r.trust,
            "--manifest",
            s(&file),
            "--chunks",
            s(&bad.store),
            "--hardware",
            "hw-a",
            "--channel",
            "stable",
        ];
        if bad.name == "halted" {
            args.extend_from_slice(&["--control", s(&control)]);
        }
        let out = pollen_e2e::run("pollen-node", &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{}: accepted", bad.name);
        assert!(stderr.contains(bad.phrase), "{}: {stderr}", bad.name);
        assert_eq!(
            pollen_e2e::snapshot(&data),
            before,
            "{}: the data directory changed",
            bad.name
        );
        println!(
            "offline {}: refused, data directory unchanged — {}",
            bad.name,
            stderr.trim()
        );
    }
    assert_eq!(active_slot(&data), Some(("a".into(), r.blake3.clone())));
}

/// What must not change on a refusal: lifecycle record, floor, active slot, manifests held.
fn state_of(data: &Path) -> String {
    let st = node_status(data);
    let store = pollen_node::store::RocksStore::open_read_only(&data.join("store")).expect("store");
    let mut ids: Vec<String> = pollen_node::store::Store::manifest_ids(&store)
        .expect("ids")
        .iter()
        .map(|i| i.to_hex())
        .collect();
    ids.sort();
    format!(
        "phase {} installed {} floor {} active {:?} manifests {:?}",
        st["phase"],
        st["installed"],
        pollen_node::store::floor(&store, "stable").expect("floor"),
        active_slot(data),
        ids
    )
}

#[test]
fn refusals_on_the_network_path_change_nothing() {
    let r = Release::publish_with(2 << 20, 93, &["--hardware", "hw-a", "--release", "5"]);
    let data = device_on_release_5(&r);
    let before = state_of(&data);
    let mut bad = bad_releases(&r, true);
    let halted = bad.pop().expect("the halted release");
    let seeders: Vec<(Daemon, String)> = bad.iter().map(|b| serve_store(&b.store)).collect();
    let addrs: Vec<String> = seeders.iter().map(|(_, a)| a.clone()).collect();
    let mut dev = device_daemon(&r, &data, &addrs);
    let st = poll(WAIT, "two manifests refused", || {
        let st = node_status(&data);
        let peers = st["peers"].as_u64().unwrap_or(0);
        let refused = st["manifests_refused"].as_u64().unwrap_or(0);
        if refused >= 2 && peers >= 3 {
            Ok(st)
        } else {
            Err(st.to_string())
        }
    });
    assert_eq!(
        st["release"]["release"], 5,
        "took up a refused release: {st}"
    );
    dev.kill();
    // Collect what it logged (its pipes are closed now).
    dev.wait_for(Duration::from_secs(10), |_, _| None::<()>);
    assert_eq!(state_of(&data), before, "a refusal changed the device");
    let log = dev.stderr.join("\n");
    for b in &bad[1..] {
        assert!(log.contains(b.phrase), "{}: {log}", b.name);
    }
    println!("older release 4: never fetched; expired and other-hardware release 6: refused; state unchanged");

    // A halted release 6: fetched and seeded, never installed.
    let (_seeder, addr) = serve_store(&halted.store);
    let mut dev = device_daemon(&r, &data, &[addr]);
    let st = poll(WAIT, "the halted release held, not installed", || {
        let st = node_status(&data);
        let held = st["release"]["release"] == 6 && st["release"]["complete"] == true;
        let noted = st["note"].as_str().is_some_and(|n| n.contains("halted"));
        if held && noted {
            Ok(st)
        } else {
            Err(st.to_string())
        }
    });
    assert_eq!(st["installed"]["release"], 5);
    dev.kill();
    let stopped = node_status(&data);
    assert_eq!(stopped["installed"]["release"], 5, "{stopped}");
    let store = pollen_node::store::RocksStore::open_read_only(&data.join("store")).expect("store");
    assert_eq!(
        pollen_node::store::floor(&store, "stable").expect("floor"),
        5
    );
    assert_eq!(active_slot(&data), Some(("a".into(), r.blake3.clone())));
    println!("halted release 6: complete in the store, not installed; still on release 5");
}
