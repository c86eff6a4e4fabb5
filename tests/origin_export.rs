//! `pollen-seeder export --origin DIR`, and `publish --origin DIR`: the
//! static tree a web server serves (chunks hashing to their names, the
//! manifest, a signed channel index naming it), incremental re-export,
//! the index moving to a new release while old files stay, nothing
//! temporary left behind, the tree served unchanged by nginx, and bad
//! invocations refused with DIR untouched.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use pollen_core::manifest::{TrustPolicy, VerifyContext};
use pollen_core::origin::{chunk_path, index_path, manifest_path, verify as verify_index};
use pollen_core::trust::VerifiedPolicy;
use pollen_core::SignedManifest;
use pollen_e2e::origin::Origin;
use pollen_e2e::{run, run_json, s, snapshot, write_random_file, Release};

fn now() -> u64 {
    pollen_node::unix_now()
}

/// Every file below `dir` with its modification time.
fn mtimes(dir: &Path) -> BTreeMap<PathBuf, SystemTime> {
    snapshot(dir)
        .into_keys()
        .map(|rel| {
            let t = std::fs::metadata(dir.join(&rel))
                .and_then(|m| m.modified())
                .expect("mtime");
            (rel, t)
        })
        .collect()
}

fn trust_of(release: &Release) -> VerifiedPolicy {
    let public = std::fs::read_to_string(&release.trust).expect("read .pub");
    let key = pollen_core::manifest::PublicKey::from_text(&public).expect("public key");
    VerifiedPolicy::from_trust(TrustPolicy::single(key))
}

/// Checks the tree as a device would: the index verifies and names the
/// manifest, the manifest verifies, every chunk it lists is there and
/// hashes to its name. Returns the manifest id the index names (hex).
fn check_tree(dir: &Path, held: &VerifiedPolicy) -> String {
    let bytes = std::fs::read(dir.join(index_path("stable"))).expect("index/stable");
    let index = verify_index(&bytes, held, "stable", now()).expect("the index verifies");
    let manifest_bytes =
        std::fs::read(dir.join(manifest_path(&index.index().manifest))).expect("manifest file");
    let ctx = VerifyContext {
        now: now(),
        ..VerifyContext::default()
    };
    let trust = &held.policy().release;
    let verified =
        pollen_core::verify(&manifest_bytes, trust, &ctx).expect("the manifest verifies");
    assert_eq!(verified.id(), index.index().manifest);
    assert_eq!(verified.manifest().release, index.index().release);
    for c in &verified.manifest().chunks {
        let rel = chunk_path(&c.id);
        let chunk = std::fs::read(dir.join(&rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert_eq!(chunk.len(), c.len as usize, "{rel}");
    }
    // Every chunk file in the tree hashes to its name, in its folder.
    for rel in snapshot(&dir.join("chunk")).into_keys() {
        let name = rel.file_name().and_then(|n| n.to_str()).expect("name");
        let folder = rel.parent().and_then(|p| p.to_str()).expect("folder");
        let bytes = std::fs::read(dir.join("chunk").join(&rel)).expect("chunk");
        assert_eq!(
            blake3::hash(&bytes).to_hex().as_str(),
            name,
            "chunk/{rel:?}"
        );
        assert_eq!(folder, &name[..2], "chunk/{rel:?}");
    }
    index.index().manifest.to_hex()
}

fn no_temporaries(dir: &Path) {
    let left: Vec<_> = snapshot(dir)
        .into_keys()
        .filter(|p| p.to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

#[test]
fn export_serve_reexport_and_move_to_the_next_release() {
    let release = Release::publish(3 << 20, 11);
    let held = trust_of(&release);
    let dir = release.dir.join("origin");
    let export = |extra: &[&str]| {
        let mut args = vec![
            "export",
            "--store",
            s(&release.store),
            "--origin",
            s(&dir),
            "--key",
            s(&release.key),
        ];
        args.extend_from_slice(extra);
        run_json("pollen-seeder", &args)
    };

    let first = export(&[]);
    let chunks = release.report["chunks"].as_u64().expect("chunk count");
    assert_eq!(first["channels"][0]["index_written"], true);
    assert_eq!(
        first["channels"][0]["manifest_id"],
        release.report["manifest_id"]
    );
    // Every unique chunk, the manifest and the index.
    assert!(first["files_written"].as_u64().expect("n") >= 2 + chunks.min(1));
    let named = check_tree(&dir, &held);
    assert_eq!(release.report["manifest_id"].as_str(), Some(named.as_str()));
    no_temporaries(&dir);

    // Again: nothing is written, no file is touched.
    let before = mtimes(&dir);
    let hashes = snapshot(&dir);
    let second = export(&[]);
    assert_eq!(second["files_written"], 0, "{second}");
    assert_eq!(second["files_kept"], first["files_written"], "{second}");
    assert_eq!(second["channels"][0]["index_written"], false);
    assert_eq!(mtimes(&dir), before);
    assert_eq!(snapshot(&dir), hashes);
    // --verify re-hashes what is there and still finds nothing to write.
    assert_eq!(export(&["--verify"])["files_written"], 0);

    // Served unchanged over HTTP.
    let origin = Origin::start(&dir);
    let index = origin.get(&index_path("stable")).expect("GET index");
    assert_eq!(index.status, 200);
    assert_eq!(
        index.body,
        std::fs::read(dir.join("index/stable")).expect("index")
    );
    let signed = SignedManifest::decode(
        &origin
            .get(&manifest_path(&pollen_core::ManifestId(
                hex::decode(&named)
                    .expect("hex")
                    .try_into()
                    .expect("32 bytes"),
            )))
            .expect("GET manifest")
            .body,
    )
    .expect("the served manifest decodes");
    let first_chunk = signed.manifest().chunks[0];
    let got = origin.get(&chunk_path(&first_chunk.id)).expect("GET chunk");
    assert_eq!(got.status, 200);
    assert!(
        first_chunk.id.matches(&got.body),
        "served chunk hashes to its id"
    );
    assert_eq!(
        got.body,
        std::fs::read(dir.join(chunk_path(&first_chunk.id))).expect("chunk file")
    );
    assert_eq!(origin.get("index/nightly").expect("GET").status, 404);

    // A second release published with --origin: the index moves to it,
    // every old file stays as it was.
    let artifact2 = release.dir.join("image-2.bin");
    write_random_file(&artifact2, 2 << 20, 12);
    let published = run_json(
        "pollen-seeder",
        &[
            "publish",
            "--key",
            s(&release.key),
            "--store",
            s(&release.store),
            "--artifact",
            s(&artifact2),
            "--channel",
            "stable",
            "--version",
            "1.1.0",
            "--origin",
            s(&dir),
        ],
    );
    let moved = check_tree(&dir, &held);
    assert_eq!(published["manifest_id"].as_str(), Some(moved.as_str()));
    assert_ne!(moved, named);
    assert_eq!(published["origin"]["channels"][0]["release"], 2);
    let after = snapshot(&dir);
    for (path, hash) in &hashes {
        if path.starts_with("index") {
            continue;
        }
        assert_eq!(after.get(path), Some(hash), "{path:?} changed or went away");
    }
    no_temporaries(&dir);
    // The new index, as served.
    let served = origin.get("index/stable").expect("GET index");
    let v = verify_index(&served.body, &held, "stable", now()).expect("verifies");
    assert_eq!(v.index().manifest.to_hex(), moved);
    // A halt with --origin: the control is published and the index names it.
    let halted = run_json(
        "pollen-seeder",
        &[
            "rollout",
            "--key",
            s(&release.key),
            "--store",
            s(&release.store),
            "--channel",
            "stable",
            "--origin",
            s(&dir),
            "halt",
        ],
    );
    assert_eq!(halted["halted"], true);
    let bytes = std::fs::read(dir.join("index/stable")).expect("index");
    let with_control = verify_index(&bytes, &held, "stable", now()).expect("verifies");
    assert_eq!(with_control.index().manifest.to_hex(), moved);
    let control_id = with_control
        .index()
        .control
        .expect("the index names the halt");
    let control = std::fs::read(dir.join(pollen_core::origin::control_path(&control_id)))
        .expect("control file");
    assert!(control_id.matches(&control));
    let control =
        pollen_core::rollout::VerifiedControl::from_bytes(&control, &held.policy().operator)
            .expect("the control verifies");
    assert!(control.control().halted);
    assert!(with_control.index().seq > v.index().seq);
    no_temporaries(&dir);
    // The first index is stale to a device holding the new one, not the reverse.
    let old = verify_index(&index.body, &held, "stable", now()).expect("old verifies");
    assert!(old.check_not_older(v.index().seq).is_err());
    assert!(v.check_not_older(old.index().seq).is_ok());
}

/// Keys for a fleet policy made with the real CLI.
fn keygen(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(format!("{name}.key"));
    run_json("pollen-seeder", &["keygen", "--out", s(&path)]);
    path
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn stderr_of(args: &[&str]) -> String {
    let out = run("pollen-seeder", args);
    assert!(
        !out.status.success(),
        "{args:?} succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_invocations_are_refused_and_leave_the_tree_unchanged() {
    let release = Release::publish(1 << 20, 21);
    let tmp = &release.dir;
    let [root, rel, op] = ["root", "rel", "op"].map(|n| keygen(tmp, n));
    let policy = tmp.join("fleet.policy");
    let pubs = |k: &Path| format!("{}.pub", s(k));
    run(
        "pollen-seeder",
        &[
            "policy",
            "create",
            "--root",
            &pubs(&root),
            "--release",
            &pubs(&rel),
            "--operator",
            &pubs(&op),
            "--key",
            s(&root),
            "--out",
            s(&policy),
        ],
    );
    assert!(policy.is_file(), "policy created");
    let dir = tmp.join("origin");
    let export = |key: &Path, extra: &[&str]| -> Vec<String> {
        [
            "export",
            "--store",
            s(&release.store),
            "--origin",
            s(&dir),
            "--key",
            s(key),
            "--policy",
            s(&policy),
        ]
        .iter()
        .chain(extra)
        .map(|a| a.to_string())
        .collect()
    };
    let call = |v: Vec<String>| stderr_of(&refs(&v));

    // Nothing there yet: refused before the folder is even created.
    let err = call(export(&rel, &[]));
    assert!(err.contains("is not an operator key"), "{err}");
    assert!(err.contains("release key"), "{err}");
    assert!(!dir.exists(), "nothing written");

    // A good export under the policy, then every bad one leaves it as it is.
    let report = run_json("pollen-seeder", &refs(&export(&op, &[])));
    assert_eq!(report["channels"][0]["policy_version"], 1);
    let held = pollen_node::trust_file::load_policy(&policy, now()).expect("policy");
    assert!(dir.join("policy/1").is_file());
    let index = std::fs::read(dir.join("index/stable")).expect("index");
    verify_index(&index, &held, "stable", now()).expect("verifies under the policy");
    let before = snapshot(&dir);
    let before_times = mtimes(&dir);

    for (key, extra, expect) in [
        (&rel, vec![], "is not an operator key"),
        (&root, vec![], "it is a root key"),
        (
            &op,
            vec!["--channel", "nightly"],
            "\"nightly\" has no release",
        ),
        (&op, vec!["--channel", "../up"], "cannot name a file"),
    ] {
        let err = call(export(key, &extra));
        assert!(err.contains(expect), "{extra:?}: {err}");
        assert_eq!(snapshot(&dir), before, "{extra:?} changed the tree");
        assert_eq!(mtimes(&dir), before_times);
    }
    // A missing key is a usage error (exit 2) naming --key.
    let out = run(
        "pollen-seeder",
        &["export", "--store", s(&release.store), "--origin", s(&dir)],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--key"));
    // DIR that is a file.
    let file = tmp.join("not-a-dir");
    std::fs::write(&file, b"x").expect("write");
    let err = stderr_of(&[
        "export",
        "--store",
        s(&release.store),
        "--origin",
        s(&file),
        "--key",
        s(&op),
        "--policy",
        s(&policy),
    ]);
    assert!(err.contains("is not a directory"), "{err}");
    assert_eq!(std::fs::read(&file).expect("read"), b"x");

    // publish --origin with the release key alone: refused before the
    // release is published (the store keeps one release).
    let artifact = tmp.join("image-2.bin");
    write_random_file(&artifact, 1 << 20, 22);
    let err = stderr_of(&[
        "publish",
        "--key",
        s(&rel),
        "--policy",
        s(&policy),
        "--store",
        s(&release.store),
        "--artifact",
        s(&artifact),
        "--channel",
        "stable",
        "--version",
        "1.1.0",
        "--origin",
        s(&dir),
    ]);
    assert!(err.contains("is not an operator key"), "{err}");
    let status = run_json("pollen-seeder", &["status", "--store", s(&release.store)]);
    assert_eq!(status["releases"].as_array().map(Vec::len), Some(1));
    assert_eq!(snapshot(&dir), before);
}

#[test]
fn publish_to_a_running_seeder_with_origin_exports_what_it_now_serves() {
    let release = Release::publish(1 << 20, 31);
    let held = trust_of(&release);
    let dir = release.dir.join("origin");
    let (_seeder, _addr) = release.serve();
    let artifact = release.dir.join("image-2.bin");
    write_random_file(&artifact, 3 << 20, 32);
    let published = run_json(
        "pollen-seeder",
        &[
            "publish",
            "--key",
            s(&release.key),
            "--store",
            s(&release.store),
            "--artifact",
            s(&artifact),
            "--channel",
            "stable",
            "--version",
            "2.0.0",
            "--origin",
            s(&dir),
        ],
    );
    assert_eq!(published["live"], true, "{published}");
    // The store the seeder holds, read while it runs: the new release and
    // every chunk of it are in the tree, the index names it.
    let named = check_tree(&dir, &held);
    assert_eq!(published["manifest_id"].as_str(), Some(named.as_str()));
    assert_eq!(published["origin"]["channels"][0]["release"], 2);
    no_temporaries(&dir);
}
