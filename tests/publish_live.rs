//! Publishing to a running seeder: `pollen-seeder publish` hands each
//! release to the `serve` process of its store (which holds the store's
//! lock), and the devices connected to it install each one without the
//! seeder restarting or any connection being opened again. Refusals
//! (a release number that does not rise, by `publish` and by the seeder
//! itself, a staged folder outside the store, a bad manifest, a missing
//! chunk) change nothing it serves.

use std::path::Path;
use std::time::Duration;

use pollen_e2e::{
    node_status, poll, run, run_json, s, serve_args, try_node_status, write_random_file, Daemon,
    Release,
};
use pollen_node::api;

const WAIT: Duration = Duration::from_secs(120);

fn device(r: &Release, data: &Path, name: &str, seeder: &str) -> Daemon {
    let mut d = Daemon::spawn(
        "pollen-node",
        &[
            "run",
            "--data",
            s(data),
            "--trust",
            &r.trust,
            "--channel",
            "stable",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--no-mdns",
            "--peer",
            seeder,
            "--device-id",
            name,
            "--status-interval",
            "2s",
            "--retry-interval",
            "1s",
            "--install-hook",
            r#"cp "$POLLEN_ARTIFACT" "$POLLEN_SLOT/image""#,
            "--health-hook",
            r#"test -s "$POLLEN_SLOT/image""#,
        ],
    );
    d.loopback_addr();
    d
}

/// `publish` of release `n` (its own random artifact) into the store.
fn publish(r: &Release, store: &Path, n: u64, extra: &[&str]) -> std::process::Output {
    let artifact = r.dir.join(format!("v{n}.img"));
    write_random_file(&artifact, 2 << 20, 700 + n);
    let version = format!("{n}.0.0");
    let mut args = vec![
        "publish",
        "--key",
        s(&r.key),
        "--store",
        s(store),
        "--artifact",
        s(&artifact),
        "--channel",
        "stable",
        "--version",
        &version,
        "--json",
    ];
    args.extend_from_slice(extra);
    run("pollen-seeder", &args)
}

/// Waits until the device at `data` has committed release `n`.
fn installed(data: &Path, n: u64) -> serde_json::Value {
    poll(
        WAIT,
        &format!("{} to commit release {n}", data.display()),
        || {
            let st = try_node_status(data)?;
            if st["installed"]["release"] == n && st["phase"] == "committed" {
                Ok(st)
            } else {
                Err(st.to_string())
            }
        },
    )
}

/// The device's connections so far, once it is connected to `peers` peers.
fn connections(data: &Path, peers: u64) -> u64 {
    poll(
        WAIT,
        &format!("{} to have {peers} peers", data.display()),
        || {
            let st = try_node_status(data)?;
            match st["connections_opened"].as_u64() {
                Some(n) if st["peers"] == peers => Ok(n),
                _ => Err(st.to_string()),
            }
        },
    )
}

/// The release the seeder of `store` serves, from its own endpoint.
fn served(store: &Path) -> serde_json::Value {
    node_status(store)["release"]["release"].clone()
}

/// A `POST /release` of `dir` to the seeder of `store`: its error text.
fn refused(store: &Path, dir: &Path) -> String {
    let addr = api::running_daemon(store).expect("the seeder answers");
    match api::request(addr, "POST", "/release", s(dir).as_bytes()) {
        Ok(id) => panic!("{} was taken as {id}", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn three_releases_published_to_a_running_seeder_install_on_connected_devices() {
    // Keys and a trust file; the seeder starts on an empty store (as the
    // packaged service does) and every release reaches it live.
    let r = Release::publish(1 << 10, 71);
    let store = r.dir.join("live-store");
    let mut seeder = Daemon::spawn("pollen-seeder", &serve_args(&store, "/ip4/127.0.0.1/tcp/0"));
    let seeder_addr = seeder.loopback_addr();
    let pid = seeder.child.id();
    let datas = [r.dir.join("press-1"), r.dir.join("press-2")];
    let _devices: Vec<Daemon> = datas
        .iter()
        .zip(["press-1", "press-2"])
        .map(|(data, name)| device(&r, data, name, &seeder_addr))
        .collect();
    let out = publish(&r, &store, 1, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for data in &datas {
        installed(data, 1);
    }
    // Each device: the seeder and the other device (peer exchange).
    let before: Vec<u64> = datas.iter().map(|d| connections(d, 2)).collect();
    let seeder_before = connections(&store, 2);

    for n in 2..=4 {
        let out = publish(&r, &store, n, &[]);
        assert!(
            out.status.success(),
            "publish {n} to the running seeder failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_eq!(report["release"], n);
        assert_eq!(report["live"], true, "{report}");
        // Served as soon as publish returned.
        assert_eq!(served(&store), n);
        for data in &datas {
            let st = installed(data, n);
            assert_eq!(st["installed"]["manifest"], report["manifest_id"]);
        }
        assert!(
            seeder.child.try_wait().expect("seeder state").is_none(),
            "the seeder stopped"
        );
    }
    assert_eq!(seeder.child.id(), pid);
    let after: Vec<u64> = datas.iter().map(|d| connections(d, 2)).collect();
    assert_eq!(before, after, "a device connected again");
    assert_eq!(connections(&store, 2), seeder_before);

    // A number that does not rise: refused with the reason, nothing staged left.
    let out = publish(&r, &store, 3, &["--release", "3"]);
    assert!(!out.status.success(), "release 3 again was published");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("release 3 is not above release 4"),
        "unclear refusal: {err}"
    );
    let staging = api::staging_dir(&store);
    let left = std::fs::read_dir(&staging).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "staging folders left behind");

    // What reaches the endpoint directly is judged as strictly.
    let outside = r.dir.join("outside");
    std::fs::create_dir_all(outside.join("chunks")).expect("mkdir");
    assert!(
        refused(&store, &outside).contains("is not a staged release folder"),
        "outside the store"
    );
    let garbage = staging.join("garbage");
    std::fs::create_dir_all(garbage.join("chunks")).expect("mkdir");
    std::fs::write(garbage.join("manifest.pollen"), b"not a manifest").expect("write");
    let e = refused(&store, &garbage);
    assert!(e.contains("manifest refused"), "{e}");
    // Release 5, signed by the right key, but staged without its chunks;
    // and release 2 again, which the seeder numbers against its own store.
    let short = stage_elsewhere(&r, 5, &staging.join("short"));
    let e = refused(&store, &short);
    assert!(e.contains("missing from the staged release"), "{e}");
    let old = stage_elsewhere(&r, 2, &staging.join("old"));
    let e = refused(&store, &old);
    assert!(e.contains("release 2 is not above release 4"), "{e}");
    assert_eq!(served(&store), 4, "a refusal changed what is served");
    let st = seeder_status_release(&store, 5);
    assert!(st.is_none(), "release 5 was stored: {st:?}");

    // Rollout controls reach the running seeder's devices as before.
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
            "halt",
        ],
    );
    assert_eq!(halt["halted"], true);
    assert_eq!(halt["release"], 4, "{halt}");
    for data in &datas {
        poll(WAIT, "the halt to reach the device", || {
            let st = try_node_status(data)?;
            match st["control"]["halted"] == true {
                true => Ok(()),
                false => Err(st.to_string()),
            }
        });
    }
    assert_eq!(seeder.child.id(), pid);
    assert!(seeder.child.try_wait().expect("seeder state").is_none());
}

/// Release `n` in the seeder's store, as `pollen-seeder status` lists it.
fn seeder_status_release(store: &Path, n: u64) -> Option<serde_json::Value> {
    let st = pollen_e2e::seeder_status(store);
    st["releases"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["release"] == n)
        .cloned()
}

/// Release `n` published offline into a scratch store, its manifest (and
/// no chunk) staged in `dir` by hand.
fn stage_elsewhere(r: &Release, n: u64, dir: &Path) -> std::path::PathBuf {
    let scratch = r.dir.join(format!("scratch-{n}"));
    let manifest = r.dir.join(format!("r{n}.pollen"));
    let artifact = r.dir.join(format!("scratch-{n}.img"));
    write_random_file(&artifact, 1 << 20, 800 + n);
    let (version, release) = (format!("{n}.0.0"), n.to_string());
    run_json(
        "pollen-seeder",
        &[
            "publish",
            "--key",
            s(&r.key),
            "--store",
            s(&scratch),
            "--artifact",
            s(&artifact),
            "--channel",
            "stable",
            "--version",
            &version,
            "--release",
            &release,
            "--out",
            s(&manifest),
        ],
    );
    std::fs::create_dir_all(dir.join("chunks")).expect("mkdir");
    std::fs::copy(&manifest, dir.join("manifest.pollen")).expect("copy");
    dir.to_owned()
}
