//! Publish → import → reassemble through the real binaries, and the delta
//! between two releases.

use pollen_e2e::{file_blake3, run, run_json, s, write_random_file, Release};

const MIB: u64 = 1 << 20;

#[test]
fn round_trip_200_mib_through_store_and_chunk_folder() {
    let r = Release::publish(200 * MIB, 1);
    let (t, manifest, store, published, trust) =
        (r.dir.as_path(), &r.manifest, &r.store, &r.report, &r.trust);
    let expected = file_blake3(&r.artifact);
    assert_eq!(published["artifact_blake3"], expected.as_str());
    assert_eq!(published["new_bytes"], 200 * MIB);

    // From the publisher's store directly.
    let out1 = t.join("node1.img");
    let report = run_json(
        "pollen-node",
        &[
            "import",
            "--data",
            s(&t.join("node1")),
            "--trust",
            trust,
            "--manifest",
            s(manifest),
            "--chunks",
            s(store),
            "--out",
            s(&out1),
        ],
    );
    assert_eq!(report["chunks_new"], published["chunks"]);
    assert_eq!(file_blake3(&out1), expected);

    // From a USB-style export: manifest plus chunk folder.
    let usb = t.join("usb");
    let id = published["manifest_id"].as_str().expect("manifest id");
    let exported = run(
        "pollen-seeder",
        &[
            "export",
            "--store",
            s(store),
            "--manifest",
            id,
            "--out",
            s(&usb),
        ],
    );
    assert!(
        exported.status.success(),
        "{}",
        String::from_utf8_lossy(&exported.stderr)
    );
    let out2 = t.join("node2.img");
    run_json(
        "pollen-node",
        &[
            "import",
            "--data",
            s(&t.join("node2")),
            "--trust",
            trust,
            "--manifest",
            s(&usb.join("manifest.pollen")),
            "--chunks",
            s(&usb.join("chunks")),
            "--out",
            s(&out2),
        ],
    );
    assert_eq!(file_blake3(&out2), expected);
    println!("200 MiB round trip: blake3 {expected} identical after publish, import from store and from a chunk folder");

    let verified = run(
        "pollen-seeder",
        &[
            "verify",
            "--trust",
            trust,
            s(manifest),
            "--artifact",
            s(&out2),
        ],
    );
    assert!(verified.status.success());
}

#[test]
fn delta_release_moves_only_changed_bytes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let key = t.join("k");
    run_json("pollen-seeder", &["keygen", "--out", s(&key)]);
    let trust = format!("{}.pub", s(&key));
    let store = t.join("store");

    let v1 = t.join("v1.img");
    write_random_file(&v1, 256 * MIB, 2);
    let mut bytes = std::fs::read(&v1).expect("read v1");
    let middle = bytes.len() / 2;
    let patch = pollen_e2e::random_bytes(MIB as usize, 3);
    bytes[middle..middle + MIB as usize].copy_from_slice(&patch);
    let insert = pollen_e2e::random_bytes(4096, 4);
    bytes.splice(300_000..300_000, insert);
    let v2 = t.join("v2.img");
    std::fs::write(&v2, &bytes).expect("write v2");
    let v2_len = bytes.len() as f64;
    drop(bytes);

    let publish = |artifact: &std::path::Path, version: &str, out: &std::path::Path| {
        run_json(
            "pollen-seeder",
            &[
                "publish",
                "--key",
                s(&key),
                "--store",
                s(&store),
                "--artifact",
                s(artifact),
                "--channel",
                "stable",
                "--version",
                version,
                "--out",
                s(out),
            ],
        )
    };
    let m1 = t.join("v1.pollen");
    let m2 = t.join("v2.pollen");
    publish(&v1, "1.0.0", &m1);
    let p2 = publish(&v2, "1.1.0", &m2);
    let node = t.join("node");
    let import = |m: &std::path::Path| {
        run_json(
            "pollen-node",
            &[
                "import",
                "--data",
                s(&node),
                "--trust",
                &trust,
                "--manifest",
                s(m),
                "--chunks",
                s(&store),
            ],
        )
    };
    import(&m1);
    let r2 = import(&m2);

    let lacked = r2["bytes_new"].as_u64().expect("bytes_new") as f64;
    let percent = 100.0 * lacked / v2_len;
    println!(
        "delta: v2 has {} chunks; publish reported {} new chunks ({} bytes); the node holding v1 lacked {} chunks, {:.0} bytes = {percent:.2}% of v2",
        p2["chunks"], p2["new_chunks"], p2["new_bytes"], r2["chunks_new"], lacked
    );
    assert!(percent <= 3.0, "node lacked {percent:.2}% of v2");
    assert!(p2["new_chunks"].as_u64().expect("new_chunks") > 0);
    assert_eq!(
        p2["new_chunks"], r2["chunks_new"],
        "publish and import agree on what is new"
    );
    assert_eq!(r2["release"], 2, "release numbers rise by default");
}

#[test]
fn seeder_cli_refuses_and_explains() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let key = t.join("k");
    let other = t.join("other");
    run_json("pollen-seeder", &["keygen", "--out", s(&key)]);
    run_json("pollen-seeder", &["keygen", "--out", s(&other)]);
    let again = run("pollen-seeder", &["keygen", "--out", s(&key)]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("refusing to overwrite"));

    let artifact = t.join("a.bin");
    write_random_file(&artifact, 3 * MIB, 9);
    let manifest = t.join("m.pollen");
    run_json(
        "pollen-seeder",
        &[
            "publish",
            "--key",
            s(&key),
            "--store",
            s(&t.join("store")),
            "--artifact",
            s(&artifact),
            "--channel",
            "beta",
            "--version",
            "0.3.0",
            "--hardware",
            "imx8",
            "--out",
            s(&manifest),
        ],
    );
    let trust = format!("{}.pub", s(&key));
    let wrong_trust = format!("{}.pub", s(&other));

    let view = run_json(
        "pollen-seeder",
        &["inspect", s(&manifest), "--trust", &trust],
    );
    assert_eq!(view["verdict"], "valid");
    assert_eq!(view["channel"], "beta");
    assert_eq!(view["hardware"][0], "imx8");
    assert_eq!(view["artifact"]["size"], 3 * MIB);
    let view = run_json(
        "pollen-seeder",
        &["inspect", s(&manifest), "--trust", &wrong_trust],
    );
    assert!(view["verdict"]
        .as_str()
        .expect("verdict")
        .starts_with("INVALID"));

    let bad = run(
        "pollen-seeder",
        &["verify", "--trust", &wrong_trust, s(&manifest)],
    );
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(
        stderr.trim().lines().count(),
        1,
        "one-line reason: {stderr}"
    );
    assert!(stderr.contains("unknown key"), "{stderr}");

    let mut altered = std::fs::read(&artifact).expect("read");
    altered[12345] ^= 1;
    let altered_path = t.join("altered.bin");
    std::fs::write(&altered_path, altered).expect("write");
    let bad = run(
        "pollen-seeder",
        &[
            "verify",
            "--trust",
            &trust,
            s(&manifest),
            "--artifact",
            s(&altered_path),
        ],
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("does not match"));
    let good = run(
        "pollen-seeder",
        &[
            "verify",
            "--trust",
            &trust,
            s(&manifest),
            "--artifact",
            s(&artifact),
        ],
    );
    assert!(good.status.success());

    let older = run(
        "pollen-seeder",
        &[
            "publish",
            "--key",
            s(&key),
            "--store",
            s(&t.join("store")),
            "--artifact",
            s(&artifact),
            "--channel",
            "beta",
            "--version",
            "0.2.0",
            "--release",
            "1",
        ],
    );
    assert!(!older.status.success());
    assert!(String::from_utf8_lossy(&older.stderr).contains("is not above release 1"));
}
