//! Fleet trust through the real binaries: policies created, shown and
//! rotated (and a rotation missing a root refused), devices enrolled one
//! at a time and from CSV, a 2-of-3 release signed on three machines and
//! served, and publish's guard against a poisoned release floor. Every
//! refusal names its cause and changes no file or store.

use std::path::{Path, PathBuf};
use std::time::Duration;

use pollen_e2e::{file_blake3, run, run_json, run_ok, s, snapshot, write_random_file, Daemon};

/// A temporary directory with key pairs made by `pollen-seeder keygen`.
struct Keys {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl Keys {
    fn new(names: &[&str]) -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_owned();
        for name in names {
            run_json("pollen-seeder", &["keygen", "--out", s(&dir.join(name))]);
        }
        Self { _tmp: tmp, dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The secret key file's path.
    fn secret(&self, name: &str) -> String {
        s(&self.path(name)).to_owned()
    }

    /// The public key file's path.
    fn public(&self, name: &str) -> String {
        format!("{}.pub", self.secret(name))
    }

    /// The key id `keygen` printed for it.
    fn id(&self, name: &str) -> String {
        let text = std::fs::read_to_string(self.public(name)).expect("public key");
        let key = pollen_core::manifest::PublicKey::from_text(&text).expect("public key text");
        key.id().to_string()
    }
}

/// Runs a command that must fail; returns its stderr.
fn refused(name: &str, args: &[&str]) -> String {
    let out = run(name, args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "{name} {args:?} succeeded; stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    stderr
}

fn show(policy: &Path, held: Option<&str>) -> serde_json::Value {
    let mut args = vec!["policy", "show", s(policy)];
    if let Some(h) = held {
        args.extend_from_slice(&["--held", h]);
    }
    run_json("pollen-seeder", &args)
}

fn role_keys(view: &serde_json::Value, role: &str) -> Vec<String> {
    view["roles"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["role"] == role)
        .map(|r| {
            r["keys"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn policies_are_created_shown_and_rotated() {
    let k = Keys::new(&["root1", "root2", "rel1", "rel2", "op", "enr"]);
    let v1 = k.path("v1.policy");
    let out = run_ok(
        "pollen-seeder",
        &[
            "policy",
            "create",
            "--root",
            &k.public("root1"),
            "--release",
            &k.public("rel1"),
            "--operator",
            &k.public("op"),
            "--enroll",
            &k.public("enr"),
            "--key",
            &k.secret("root1"),
            "--out",
            s(&v1),
        ],
    );
    assert!(out.contains("own root  verifies"), "{out}");
    let view = show(&v1, None);
    assert_eq!(view["version"], 1);
    assert_eq!(view["closed_mesh"], true);
    assert_eq!(view["own_root"]["verifies"], true);
    assert_eq!(role_keys(&view, "release"), [k.id("rel1")]);
    assert_eq!(view["signatures"][0]["key_id"], k.id("root1").as_str());
    assert_eq!(view["signatures"][0]["roles"][0], "root");
    let text = run_ok("pollen-seeder", &["policy", "show", s(&v1)]);
    assert!(
        text.contains("fleet policy version 1, expires 20"),
        "{text}"
    );
    assert!(
        text.contains(&format!("release   1 of 1: {}", k.id("rel1"))),
        "{text}"
    );

    // A key that is no root key does not sign a policy; nothing is written.
    let stray = k.path("stray.policy");
    let err = refused(
        "pollen-seeder",
        &[
            "policy",
            "create",
            "--root",
            &k.public("root1"),
            "--release",
            &k.public("rel1"),
            "--operator",
            &k.public("op"),
            "--key",
            &k.secret("rel1"),
            "--out",
            s(&stray),
        ],
    );
    assert!(
        err.contains(&format!("--key {} is not a root key", k.id("rel1"))),
        "{err}"
    );
    assert!(!stray.exists());

    // The release key rotated, and the root with it: signed by the held
    // root and the new one, it verifies as a rotation from v1.
    let v2 = k.path("v2.policy");
    run_ok(
        "pollen-seeder",
        &[
            "policy",
            "rotate",
            "--from",
            s(&v1),
            "--set-root",
            &k.public("root2"),
            "--set-release",
            &k.public("rel2"),
            "--key",
            &k.secret("root1"),
            &k.secret("root2"),
            "--out",
            s(&v2),
        ],
    );
    let view = show(&v2, Some(s(&v1)));
    assert_eq!(view["version"], 2);
    assert_eq!(view["rotation"]["verifies"], true, "{view}");
    assert_eq!(role_keys(&view, "release"), [k.id("rel2")]);
    assert_eq!(role_keys(&view, "root"), [k.id("root2")]);
    assert_eq!(role_keys(&view, "operator"), [k.id("op")], "copied");
    assert_eq!(role_keys(&view, "enroll"), [k.id("enr")], "copied");

    // Signed by the new root only: valid on its own, not as a rotation;
    // the held root's signature is reported missing.
    let only_new = k.path("only-new.policy");
    let out = run_ok(
        "pollen-seeder",
        &[
            "policy",
            "rotate",
            "--from",
            s(&v1),
            "--set-root",
            &k.public("root2"),
            "--key",
            &k.secret("root2"),
            "--out",
            s(&only_new),
        ],
    );
    assert!(out.contains("rotation  does NOT verify"), "{out}");
    assert!(
        out.contains(&format!(
            "held root (version 1): 0 of threshold 1 signed; 1 more needed, from: {}",
            k.id("root1")
        )),
        "{out}"
    );
    let view = show(&only_new, Some(s(&v1)));
    assert_eq!(view["own_root"]["verifies"], true);
    assert_eq!(view["rotation"]["verifies"], false);
    assert!(view["rotation"]["error"]
        .as_str()
        .is_some_and(|e| e.contains("not signed by the root threshold of the held policy")));
    assert_eq!(view["rotation"]["roots"][0]["missing"], 1);

    // The missing signature added with `sign`; signing twice is refused
    // and leaves the file as it was.
    let out = run_ok(
        "pollen-seeder",
        &["sign", "--key", &k.secret("root1"), s(&only_new)],
    );
    assert!(out.contains("(fleet policy) with key"), "{out}");
    assert_eq!(show(&only_new, Some(s(&v1)))["rotation"]["verifies"], true);
    let before = file_blake3(&only_new);
    let err = refused(
        "pollen-seeder",
        &["sign", "--key", &k.secret("root1"), s(&only_new)],
    );
    assert!(
        err.contains(&format!(
            "key {} already signed this fleet policy",
            k.id("root1")
        )),
        "{err}"
    );
    assert_eq!(file_blake3(&only_new), before);

    // An output file is never overwritten.
    let before = file_blake3(&v2);
    let err = refused(
        "pollen-seeder",
        &[
            "policy",
            "rotate",
            "--from",
            s(&v1),
            "--key",
            &k.secret("root1"),
            "--out",
            s(&v2),
        ],
    );
    assert!(
        err.contains("already exists; refusing to overwrite it"),
        "{err}"
    );
    assert_eq!(file_blake3(&v2), before);

    // A fleet on a trust file today: its first policy is a rotation from
    // the trust file (version 0), signed by the trust file's key and the new root.
    let first = k.path("first.policy");
    run_ok(
        "pollen-seeder",
        &[
            "policy",
            "rotate",
            "--from-trust",
            &k.public("rel1"),
            "--set-root",
            &k.public("root1"),
            "--set-enroll",
            &k.public("enr"),
            "--key",
            &k.secret("rel1"),
            &k.secret("root1"),
            "--out",
            s(&first),
        ],
    );
    let view = show(&first, Some(&k.public("rel1")));
    assert_eq!(view["version"], 1);
    assert_eq!(view["rotation"]["verifies"], true, "{view}");
    assert_eq!(
        role_keys(&view, "release"),
        [k.id("rel1")],
        "the publisher key stays"
    );
    let err = refused(
        "pollen-seeder",
        &[
            "policy",
            "rotate",
            "--from",
            &k.public("rel1"),
            "--out",
            s(&k.path("x")),
        ],
    );
    assert!(err.contains("use --from-trust"), "{err}");
}

#[test]
fn devices_are_enrolled_one_at_a_time_and_from_csv() {
    use std::os::unix::fs::PermissionsExt;
    let k = Keys::new(&["root", "rel", "op", "enr"]);
    let policy = k.path("fleet.policy");
    run_ok(
        "pollen-seeder",
        &[
            "policy",
            "create",
            "--root",
            &k.public("root"),
            "--release",
            &k.public("rel"),
            "--operator",
            &k.public("op"),
            "--enroll",
            &k.public("enr"),
            "--key",
            &k.secret("root"),
            "--out",
            s(&policy),
        ],
    );
    // Each device's id, created in its data directory (mode 0700).
    let ids: Vec<String> = (0..4)
        .map(|i| {
            let data = k.path(&format!("device-{i}"));
            let id = run_json("pollen-node", &["id", "--data", s(&data)]);
            assert_eq!(id["created"], true);
            let mode = std::fs::metadata(&data)
                .expect("data dir")
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, 0o700, "the data directory holds the identity key");
            let again = run_ok("pollen-node", &["id", "--data", s(&data)]);
            assert_eq!(again.trim(), id["peer_id"].as_str().expect("peer id"));
            again.trim().to_owned()
        })
        .collect();
    let seeder_id = run_json("pollen-seeder", &["id", "--store", s(&k.path("store"))]);
    assert!(seeder_id["peer_id"]
        .as_str()
        .is_some_and(|p| p.starts_with("12D3KooW")));

    let cred = k.path("press-0.cred");
    let out = run_ok(
        "pollen-seeder",
        &[
            "enroll",
            "--key",
            &k.secret("enr"),
            "--peer-id",
            &ids[0],
            "--device-id",
            "press-0",
            "--site",
            "hall-a",
            "--policy",
            s(&policy),
            "--out",
            s(&cred),
        ],
    );
    assert!(
        out.contains(&format!("enrolled press-0 ({}, site hall-a)", ids[0])),
        "{out}"
    );
    // A credential takes a co-signature like any signed file (for a k-of-n
    // enroll role), to --out, leaving the original as it was.
    let cosigned = k.path("press-0-2.cred");
    let before = file_blake3(&cred);
    let out = run_json(
        "pollen-seeder",
        &[
            "sign",
            "--key",
            &k.secret("root"),
            s(&cred),
            "--out",
            s(&cosigned),
        ],
    );
    assert_eq!(out["kind"], "device credential");
    assert_eq!(out["key_id"], k.id("root").as_str());
    assert_eq!(file_blake3(&cred), before);
    assert_ne!(file_blake3(&cosigned), before);
    // The credential is revoked by its file; the policy lists the peer id.
    let v2 = k.path("v2.policy");
    run_ok(
        "pollen-seeder",
        &[
            "policy",
            "rotate",
            "--from",
            s(&policy),
            "--revoke-device",
            s(&cred),
            "--revoke-device",
            &ids[3],
            "--key",
            &k.secret("root"),
            "--out",
            s(&v2),
        ],
    );
    let view = show(&v2, Some(s(&policy)));
    let revoked: Vec<&str> = view["revoked"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["peer_id"].as_str())
        .collect();
    assert_eq!(revoked.len(), 2);
    assert!(revoked.contains(&ids[0].as_str()) && revoked.contains(&ids[3].as_str()));

    // Refusals name the cause and write nothing.
    let stray = k.path("stray.cred");
    let hashed = "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N";
    let err = refused(
        "pollen-seeder",
        &[
            "enroll",
            "--key",
            &k.secret("enr"),
            "--peer-id",
            hashed,
            "--device-id",
            "x",
            "--out",
            s(&stray),
        ],
    );
    assert!(err.contains("not an ed25519 peer id"), "{err}");
    let err = refused(
        "pollen-seeder",
        &[
            "enroll",
            "--key",
            &k.secret("rel"),
            "--peer-id",
            &ids[1],
            "--device-id",
            "x",
            "--policy",
            s(&policy),
            "--out",
            s(&stray),
        ],
    );
    assert!(
        err.contains(&format!(
            "the enroll key {} is not a key of the policy's enroll role",
            k.id("rel")
        )),
        "{err}"
    );
    assert!(!stray.exists());

    // A batch with one bad row: the error names the line, nothing is written.
    let csv = k.path("fleet.csv");
    let out_dir = k.path("creds");
    std::fs::write(
        &csv,
        format!(
            "peer_id,device_id,site,hardware,serial\n{},press-1,hall-a,imx8,SN-1\n{},press-2,hall-a,,\nnot-a-peer,press-3,hall-b,,\n",
            ids[1], ids[2]
        ),
    )
    .expect("write csv");
    let args = [
        "enroll",
        "--key",
        &k.secret("enr"),
        "--csv",
        s(&csv),
        "--out-dir",
        s(&out_dir),
    ];
    let err = refused("pollen-seeder", &args);
    assert!(
        err.contains("fleet.csv: line 4: peer id \"not-a-peer\""),
        "{err}"
    );
    assert!(!out_dir.exists(), "nothing written");
    // The good batch: one file per row, named by device id.
    std::fs::write(
        &csv,
        format!(
            "peer_id,device_id,site,hardware,serial\n{},press-1,hall-a,imx8,SN-1\n{},hall b/press 2,hall-b,,\n",
            ids[1], ids[2]
        ),
    )
    .expect("write csv");
    let report = run_json("pollen-seeder", &args);
    assert_eq!(report["credentials"].as_array().map(Vec::len), Some(2));
    let files: Vec<String> = std::fs::read_dir(&out_dir)
        .expect("out dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    let mut files = files;
    files.sort();
    assert_eq!(files, ["hall_b_press_2.cred", "press-1.cred"]);
    // Run again: every file exists, so none is written over.
    let before = snapshot(&out_dir);
    let err = refused("pollen-seeder", &args);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(snapshot(&out_dir), before);
}

/// `bytes` (a signed envelope) with its first signature entry repeated:
/// the envelope is the version byte then postcard of the body and the
/// signatures (key id, signature bytes).
fn duplicate_first_signature(bytes: &[u8]) -> Vec<u8> {
    #[derive(serde::Serialize, serde::Deserialize)]
    struct Envelope {
        #[serde(with = "serde_bytes")]
        body: Vec<u8>,
        signatures: Vec<Entry>,
    }
    #[derive(Clone, serde::Serialize, serde::Deserialize)]
    struct Entry {
        key_id: [u8; 8],
        #[serde(with = "serde_bytes")]
        signature: Vec<u8>,
    }
    let (&version, rest) = bytes.split_first().expect("not empty");
    let mut envelope: Envelope = postcard::from_bytes(rest).expect("an envelope");
    let first = envelope.signatures[0].clone();
    envelope.signatures.push(first);
    let mut out = vec![version];
    out.extend(postcard::to_stdvec(&envelope).expect("encodes"));
    out
}

#[test]
fn a_two_of_three_release_is_signed_on_three_machines_and_served() {
    let k = Keys::new(&["k1", "k2", "k3"]);
    let trust = k.path("trust");
    std::fs::write(&trust, "threshold 2\nkey k1.pub\nkey k2.pub\nkey k3.pub\n").expect("trust");
    let trust = s(&trust).to_owned();
    // Machine A publishes with k1.
    let a = k.path("a");
    let store = a.join("store");
    let artifact = k.path("image.bin");
    write_random_file(&artifact, 3 << 20, 5);
    std::fs::create_dir_all(&a).expect("mkdir");
    let one = a.join("release.pollen");
    let published = run_json(
        "pollen-seeder",
        &[
            "publish",
            "--key",
            &k.secret("k1"),
            "--store",
            s(&store),
            "--artifact",
            s(&artifact),
            "--channel",
            "stable",
            "--version",
            "1.0.0",
            "--out",
            s(&one),
        ],
    );
    let id = published["manifest_id"].as_str().expect("id").to_owned();
    let err = refused("pollen-seeder", &["verify", "--trust", &trust, s(&one)]);
    assert!(
        err.contains("1 valid signature(s) from trusted keys, policy needs 2"),
        "{err}"
    );
    // B and C each receive the file and add their signature.
    let (b, c) = (k.path("b"), k.path("c"));
    for dir in [&b, &c] {
        std::fs::create_dir_all(dir).expect("mkdir");
    }
    let on_b = b.join("release.pollen");
    std::fs::copy(&one, &on_b).expect("to B");
    let out = run_ok(
        "pollen-seeder",
        &["sign", "--key", &k.secret("k2"), s(&on_b)],
    );
    assert!(
        out.contains(&format!("(release manifest) with key {}", k.id("k2"))),
        "{out}"
    );
    let on_c = c.join("release.pollen");
    std::fs::copy(&on_b, &on_c).expect("to C");
    run_ok(
        "pollen-seeder",
        &["sign", "--key", &k.secret("k3"), s(&on_c)],
    );
    let before = file_blake3(&on_c);
    let err = refused(
        "pollen-seeder",
        &["sign", "--key", &k.secret("k3"), s(&on_c)],
    );
    assert!(
        err.contains("already signed this release manifest"),
        "{err}"
    );
    assert_eq!(file_blake3(&on_c), before);
    let junk = k.path("junk");
    std::fs::write(&junk, b"not signed at all").expect("write");
    let err = refused(
        "pollen-seeder",
        &["sign", "--key", &k.secret("k3"), s(&junk)],
    );
    assert!(err.contains("junk: not a signed Pollen object"), "{err}");

    // The 2-of-3 trust file: three signatures pass; one, or one twice, do not.
    let ok = run_json("pollen-seeder", &["verify", "--trust", &trust, s(&on_c)]);
    assert_eq!(ok["signers"].as_array().map(Vec::len), Some(3));
    let inspected = run_json("pollen-seeder", &["inspect", s(&on_c), "--trust", &trust]);
    assert_eq!(inspected["verdict"], "valid");
    assert_eq!(inspected["manifest_id"], id.as_str(), "the same body");
    let twice = k.path("twice.pollen");
    std::fs::write(
        &twice,
        duplicate_first_signature(&std::fs::read(&one).expect("read")),
    )
    .expect("write");
    let err = refused("pollen-seeder", &["verify", "--trust", &trust, s(&twice)]);
    assert!(
        err.contains(&format!(
            "key {} signed more than once; each key counts once",
            k.id("k1")
        )),
        "{err}"
    );
    let inspected = run_json("pollen-seeder", &["inspect", s(&twice), "--trust", &trust]);
    assert!(inspected["verdict"]
        .as_str()
        .is_some_and(|v| v.starts_with("INVALID")));
    let inspected = run_json("pollen-seeder", &["inspect", s(&one), "--trust", &trust]);
    assert!(inspected["verdict"]
        .as_str()
        .is_some_and(|v| v.contains("policy needs 2")));

    // Back on A: the store takes the co-signed copy of its release, and
    // refuses the short ones without changing.
    let held = snapshot(&store);
    for bad in [&one, &twice] {
        let err = refused(
            "pollen-seeder",
            &[
                "import-manifest",
                "--store",
                s(&store),
                "--trust",
                &trust,
                s(bad),
            ],
        );
        assert!(err.contains("manifest refused"), "{err}");
        assert_eq!(snapshot(&store), held, "the store changed");
    }
    let other = k.path("other.bin");
    write_random_file(&other, 1 << 20, 6);
    let elsewhere = k.path("elsewhere");
    let foreign = k.path("foreign.pollen");
    run_json(
        "pollen-seeder",
        &[
            "publish",
            "--key",
            &k.secret("k2"),
            "--store",
            s(&elsewhere),
            "--artifact",
            s(&other),
            "--channel",
            "stable",
            "--version",
            "1.0.0",
            "--out",
            s(&foreign),
        ],
    );
    run_ok(
        "pollen-seeder",
        &["sign", "--key", &k.secret("k3"), s(&foreign)],
    );
    let err = refused(
        "pollen-seeder",
        &[
            "import-manifest",
            "--store",
            s(&store),
            "--trust",
            &trust,
            s(&foreign),
        ],
    );
    assert!(err.contains("is not in the store"), "{err}");
    assert_eq!(snapshot(&store), held, "the store changed");
    let imported = run_json(
        "pollen-seeder",
        &[
            "import-manifest",
            "--store",
            s(&store),
            "--trust",
            &trust,
            s(&on_c),
        ],
    );
    assert_eq!(imported["replaced"], true);
    assert_eq!(imported["signers"].as_array().map(Vec::len), Some(3));
    let export = k.path("export");
    run_ok(
        "pollen-seeder",
        &[
            "export",
            "--store",
            s(&store),
            "--manifest",
            &id,
            "--out",
            s(&export),
        ],
    );
    let exported = run_json(
        "pollen-seeder",
        &[
            "verify",
            "--trust",
            &trust,
            s(&export.join("manifest.pollen")),
        ],
    );
    assert_eq!(exported["signers"].as_array().map(Vec::len), Some(3));

    // A serves it; a device with the 2-of-3 trust file fetches it. The
    // seeder's peer id is the one `pollen-seeder id` printed.
    let seeder_id = run_ok("pollen-seeder", &["id", "--store", s(&store)]);
    let mut seeder = Daemon::spawn(
        "pollen-seeder",
        &[
            "serve",
            "--store",
            s(&store),
            "--channel",
            "stable",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--no-mdns",
        ],
    );
    let addr = seeder.loopback_addr();
    let line = format!("seeder peer id {}", seeder_id.trim());
    let announced = seeder.stderr.iter().any(|l| l == &line)
        || seeder
            .wait_for(Duration::from_secs(10), |out, l| {
                (!out && l == line).then_some(())
            })
            .is_some();
    assert!(
        announced,
        "serve did not use the id `id` printed: {:?}",
        seeder.stderr
    );
    let out = k.path("fetched.img");
    let report = run_json(
        "pollen-node",
        &[
            "fetch",
            "--data",
            s(&k.path("device")),
            "--trust",
            &trust,
            "--channel",
            "stable",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--no-mdns",
            "--peer",
            &addr,
            "--out",
            s(&out),
            "--timeout",
            "2m",
            "--linger",
            "0s",
        ],
    );
    assert_eq!(report["complete"], true);
    assert_eq!(file_blake3(&out), file_blake3(&artifact));

    // The store is the running seeder's: import-manifest waits for it to stop.
    let err = refused(
        "pollen-seeder",
        &[
            "import-manifest",
            "--store",
            s(&store),
            "--trust",
            &trust,
            s(&on_c),
        ],
    );
    assert!(err.contains("pollen-seeder serve is running on"), "{err}");

    // Rollout controls are co-signed the same way.
    let control = k.path("halt.control");
    run_ok(
        "pollen-seeder",
        &[
            "rollout",
            "--key",
            &k.secret("k1"),
            "--store",
            s(&store),
            "--channel",
            "stable",
            "--out",
            s(&control),
            "halt",
        ],
    );
    let out = run_ok(
        "pollen-seeder",
        &["sign", "--key", &k.secret("k2"), s(&control)],
    );
    assert!(
        out.contains(&format!("(rollout control) with key {}", k.id("k2"))),
        "{out}"
    );
}

#[test]
fn publish_refuses_a_release_far_above_the_newest_unless_forced() {
    let k = Keys::new(&["k"]);
    let store = k.path("store");
    let artifact = k.path("image.bin");
    write_random_file(&artifact, 1 << 20, 9);
    let key = k.secret("k");
    let publish = |version: &str, extra: &[&str]| {
        let mut args = vec![
            "publish",
            "--key",
            &key,
            "--store",
            s(&store),
            "--artifact",
            s(&artifact),
            "--channel",
            "stable",
            "--version",
            version,
        ];
        args.extend_from_slice(extra);
        run("pollen-seeder", &args)
    };
    // Not even a fresh store is created for a refused first release.
    let out = publish("1.0.0", &["--release", "18446744073709551615"]);
    assert!(!out.status.success());
    assert!(!store.exists(), "a refused publish created the store");
    let first = publish("1.0.0", &["--json"]);
    assert!(first.status.success());
    let first: serde_json::Value = serde_json::from_slice(&first.stdout).expect("json");
    let good = first["manifest_id"].as_str().expect("id").to_owned();
    let before = snapshot(&store);
    let out = publish("2.0.0", &["--release", "18446744073709551615"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("release 18446744073709551615 is more than 1000 above its newest release 1 on channel stable"),
        "{err}"
    );
    assert!(err.contains("--force"), "{err}");
    assert_eq!(snapshot(&store), before, "the store changed");
    let out = publish("2.0.0", &["--release", "12", "--max-step", "10"]);
    assert!(!out.status.success(), "12 is 11 above 1");
    assert_eq!(snapshot(&store), before, "the store changed");
    assert!(
        publish("2.0.0", &["--release", "1001"]).status.success(),
        "exactly the step"
    );
    let forced = publish(
        "3.0.0",
        &["--release", "18446744073709551615", "--force", "--json"],
    );
    assert!(
        forced.status.success(),
        "{}",
        String::from_utf8_lossy(&forced.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&forced.stdout).expect("json");
    assert_eq!(report["release"], u64::MAX);
    let poisoned = report["manifest_id"].as_str().expect("id").to_owned();

    // The way back: a policy that resets the channel's floor to release 1
    // and recalls what the store holds above it (1001 and the poisoned one).
    let policy = k.path("v1.policy");
    let pubkey = k.public("k");
    run_ok(
        "pollen-seeder",
        &[
            "policy",
            "create",
            "--root",
            &pubkey,
            "--release",
            &pubkey,
            "--operator",
            &pubkey,
            "--key",
            &key,
            "--out",
            s(&policy),
        ],
    );
    let reset = |out: &Path, to: &str, extra: &[&str]| {
        let mut args = vec![
            "policy",
            "rotate",
            "--from",
            s(&policy),
            "--reset-floor",
            "stable",
            "--to",
            to,
            "--store",
            s(&store),
            "--key",
            &key,
            "--out",
            s(out),
        ];
        args.extend_from_slice(extra);
        run("pollen-seeder", &args)
    };
    let v2 = k.path("v2.policy");
    let out = reset(&v2, &good, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "recalls release 18446744073709551615 ({poisoned})"
        )),
        "{text}"
    );
    let view = show(&v2, Some(s(&policy)));
    assert_eq!(view["rotation"]["verifies"], true);
    assert_eq!(view["floor_resets"][0]["release"], 1);
    assert_eq!(view["floor_resets"][0]["manifest"], good.as_str());
    let recalled = view["recalled"].as_array().expect("recalled");
    assert_eq!(recalled.len(), 2);
    assert!(recalled.iter().any(|r| r == poisoned.as_str()));
    let only = k.path("v2-only.policy");
    assert!(reset(&only, &good, &["--no-auto-recall"]).status.success());
    assert_eq!(
        show(&only, None)["recalled"].as_array().map(Vec::len),
        Some(0)
    );
    // Resetting to a release that is not in the store, or to a recalled
    // one, is refused and writes nothing.
    let stray = k.path("stray.policy");
    let out = reset(&stray, &"ab".repeat(32), &[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not in the store"));
    let out = reset(&stray, &good, &["--recall", &good]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot go back to a recalled release"));
    assert!(!stray.exists());
}
