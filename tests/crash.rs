//! kill -9 of `pollen-node import` halfway, then a rerun: it completes, the
//! store is consistent, and nothing already stored is imported again.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use pollen_e2e::{bin, file_blake3, run_json, run_ok, s, Release};

#[test]
fn import_killed_halfway_resumes() {
    let r = Release::publish_with(160 << 20, 5, &["--chunk-kib", "64"]);
    let (t, trust, manifest, store, artifact) = (
        r.dir.as_path(),
        &r.trust,
        &r.manifest,
        &r.store,
        &r.artifact,
    );
    let total = r.report["chunks"].as_u64().expect("chunks");
    let data = t.join("node");
    let out = t.join("out.img");
    let args = [
        "import",
        "--data",
        s(&data),
        "--trust",
        trust,
        "--manifest",
        s(manifest),
        "--chunks",
        s(store),
        "--out",
        s(&out),
    ];

    let mut child = Command::new(bin("pollen-node"))
        .args(args)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let mut stored_at_kill = None;
    for line in BufReader::new(stderr).lines() {
        let line = line.expect("line");
        // "import: progress <done>/<total>"
        if let Some((done, all)) = line
            .strip_prefix("import: progress ")
            .and_then(|p| p.split_once('/'))
        {
            let (done, all): (u64, u64) =
                (done.parse().expect("done"), all.parse().expect("total"));
            if done * 2 >= all && done < all {
                child.kill().expect("kill -9");
                stored_at_kill = Some(done);
                break;
            }
        }
    }
    let status = child.wait().expect("wait");
    let stored_at_kill = stored_at_kill.expect("import never reached half way");
    assert!(
        !status.success(),
        "import finished before it could be killed"
    );
    assert!(!out.exists(), "a partial artifact was left at --out");

    let check = run_json("pollen-node", &["check", "--data", s(&data)]);
    assert_eq!(
        check["problems"].as_array().map(Vec::len),
        Some(0),
        "{check}"
    );
    assert!(check["chunks"].as_u64().expect("chunks") >= stored_at_kill);

    let report = run_json("pollen-node", &args);
    let present = report["chunks_present"].as_u64().expect("present");
    let new = report["chunks_new"].as_u64().expect("new");
    println!("killed at {stored_at_kill}/{total} chunks; rerun found {present} already held and imported {new}");
    assert!(
        present >= stored_at_kill,
        "chunks stored before the kill were lost"
    );
    assert_eq!(
        present + new,
        total,
        "every chunk imported exactly once across both runs"
    );
    assert_eq!(file_blake3(&out), file_blake3(artifact));
    run_ok("pollen-node", &["check", "--data", s(&data)]);
}
