//! Crash safety of the update lifecycle, state by state, with the real
//! binary: release 1 is installed, then release 2 is imported with the
//! process killed at each point of the lifecycle (an armed failpoint
//! aborts it; two cases use a real `kill -9` while a hook runs). Run again,
//! the node must end Committed on a good release 2, or back on release 1's
//! slot on a bad one (its health hook fails) — with the active slot whole
//! at every moment and never a rollback after a commit.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use pollen_e2e::{bin, file_blake3, run_json, s, write_random_file};
use pollen_node::store::{floor, RocksStore};
use pollen_node::update::{load_record, Slot, Slots, FAILPOINTS};

/// A publisher store holding releases 1 and 2.
struct Publisher {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    trust: String,
    store: PathBuf,
    manifests: [PathBuf; 2],
    blake3: [String; 2],
}

fn publisher() -> Publisher {
    publisher_of(false)
}

/// `delta`: release 2 is release 1 with 64 KiB in the middle changed, so
/// staging copies most of it from the active slot.
fn publisher_of(delta: bool) -> Publisher {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_owned();
    let key = dir.join("publisher.key");
    run_json("pollen-seeder", &["keygen", "--out", s(&key)]);
    let store = dir.join("seeder");
    let mut manifests = Vec::new();
    let mut blake3 = Vec::new();
    for n in 1..=2u64 {
        let artifact = dir.join(format!("v{n}.img"));
        write_random_file(&artifact, 3 << 20, 40 + n);
        if delta && n == 2 {
            let mut bytes = std::fs::read(dir.join("v1.img")).expect("read v1");
            let mid = bytes.len() / 2;
            bytes[mid..mid + (64 << 10)].copy_from_slice(&pollen_e2e::random_bytes(64 << 10, 9));
            std::fs::write(&artifact, bytes).expect("write v2");
        }
        let manifest = dir.join(format!("v{n}.pollen"));
        run_json(
            "pollen-seeder",
            &[
                "publish",
                "--key",
                s(&key),
                "--store",
                s(&store),
                "--artifact",
                s(&artifact),
                "--channel",
                "stable",
                "--version",
                &format!("{n}.0.0"),
                "--out",
                s(&manifest),
            ],
        );
        blake3.push(file_blake3(&artifact));
        manifests.push(manifest);
    }
    Publisher {
        trust: format!("{}.pub", s(&key)),
        _tmp: tmp,
        dir,
        store,
        manifests: [manifests[0].clone(), manifests[1].clone()],
        blake3: [blake3[0].clone(), blake3[1].clone()],
    }
}

const BAD_HEALTH: &str =
    r#"test "$POLLEN_RELEASE" != 2 || { echo "release 2 does not boot" >&2; exit 1; }"#;

fn import_cmd(p: &Publisher, data: &Path, n: usize, health: &str) -> Command {
    let mut cmd = Command::new(bin("pollen-node"));
    cmd.args([
        "import",
        "--data",
        s(data),
        "--trust",
        &p.trust,
        "--manifest",
        s(&p.manifests[n - 1]),
        "--chunks",
        s(&p.store),
        "--channel",
        "stable",
        "--health-hook",
        health,
        "--hook-timeout",
        "60s",
    ]);
    cmd
}

fn output(mut cmd: Command) -> Output {
    cmd.output().expect("running pollen-node")
}

/// The release the active slot holds, after checking the slot is whole
/// (its artifact hashes to what its `release.json` says).
fn active(data: &Path) -> Option<(Slot, u64, String)> {
    let slots = Slots::new(data);
    let slot = slots.active().expect("reading slots/active")?;
    let info = slots
        .info(slot)
        .expect("slot info")
        .unwrap_or_else(|| panic!("active slot {} has no release.json", slot.name()));
    let hash = file_blake3(&slots.artifact(slot));
    assert_eq!(
        hash,
        info.blake3,
        "active slot {} is not whole",
        slot.name()
    );
    Some((slot, info.release, hash))
}

fn lifecycle(data: &Path) -> (pollen_node::update::Record, u64) {
    let store = RocksStore::open_read_only(&data.join("store")).expect("store");
    let record = load_record(&store, "stable").expect("record");
    (record, floor(&store, "stable").expect("floor"))
}

fn fresh_node_on_v1(p: &Publisher, name: &str) -> PathBuf {
    let data = p.dir.join(name);
    let out = output(import_cmd(p, &data, 1, BAD_HEALTH));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(active(&data).map(|a| a.1), Some(1));
    data
}

/// After the restart: where the node must end.
fn assert_final(p: &Publisher, data: &Path, good: bool, case: &str) {
    let (record, fl) = lifecycle(data);
    let (slot, release, hash) = active(data).expect("an active slot");
    if good {
        assert_eq!(record.phase.as_str(), "committed", "{case}: {record:?}");
        assert_eq!((slot, release, fl), (Slot::B, 2, 2), "{case}");
        assert_eq!(hash, p.blake3[1], "{case}");
    } else {
        assert_eq!(record.phase.as_str(), "rolled-back", "{case}: {record:?}");
        assert_eq!((slot, release, fl), (Slot::A, 1, 1), "{case}");
        assert_eq!(hash, p.blake3[0], "{case}");
        assert!(record
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("does not boot") || e.contains("interrupted")));
    }
}

#[test]
fn every_lifecycle_state_survives_a_crash() {
    let p = publisher();
    let mut walked = 0;
    for good in [true, false] {
        let health = if good { "true" } else { BAD_HEALTH };
        for &point in FAILPOINTS {
            let reached = match point {
                "healthy" | "committed" | "cleanup" => good,
                "rolled-back" => !good,
                // Release 2 shares no chunk with release 1: see
                // `kill_9_during_a_local_copy_from_the_active_slot`.
                "local-copy" => false,
                _ => true,
            };
            if !reached {
                continue;
            }
            let case = format!(
                "{} release, crash at {point}",
                if good { "good" } else { "bad" }
            );
            let data = fresh_node_on_v1(
                &p,
                &format!("{}-{point}", if good { "good" } else { "bad" }),
            );
            let mut cmd = import_cmd(&p, &data, 2, health);
            cmd.env("POLLEN_FAILPOINT", point);
            let crashed = output(cmd);
            assert!(
                crashed.status.code().is_none(),
                "{case}: the failpoint was not reached ({}; {})",
                crashed.status,
                String::from_utf8_lossy(&crashed.stderr)
            );
            // Whatever the crash left, the active slot is whole.
            let at_crash = active(&data).map(|a| a.1);
            assert!(
                matches!(at_crash, Some(1) | Some(2)),
                "{case}: {at_crash:?}"
            );
            // After a commit, even a health hook that now fails must not roll back.
            let restart_health = if point == "committed" {
                "false"
            } else {
                health
            };
            let again = output(import_cmd(&p, &data, 2, restart_health));
            assert_eq!(
                again.status.success(),
                good,
                "{case}: {}",
                String::from_utf8_lossy(&again.stderr)
            );
            assert_final(&p, &data, good, &case);
            println!(
                "{case}: active slot at crash held release {at_crash:?}; ended {}",
                if good { "committed" } else { "rolled back" }
            );
            walked += 1;
        }
    }
    assert_eq!(walked, 2 * FAILPOINTS.len() - 6);
}

/// Waits for a hook to write its pid into `marker`.
fn wait_marker(marker: &Path) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(pid) = std::fs::read_to_string(marker)
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            return pid;
        }
        assert!(Instant::now() < deadline, "hook never ran");
        std::thread::park_timeout(Duration::from_millis(50));
    }
}

#[test]
fn kill_9_while_a_hook_runs() {
    let p = publisher();
    for (state, hook) in [("staged", "--install-hook"), ("switched", "--health-hook")] {
        let data = fresh_node_on_v1(&p, &format!("kill-{state}"));
        let marker = data.join("hook.pid");
        let blocking = format!(
            "echo $$ > '{0}.tmp' && mv '{0}.tmp' '{0}' && sleep 600",
            marker.display()
        );
        let mut cmd = if hook == "--health-hook" {
            import_cmd(&p, &data, 2, &blocking)
        } else {
            let mut cmd = import_cmd(&p, &data, 2, "true");
            cmd.args([hook, &blocking]);
            cmd
        };
        cmd.stderr(std::process::Stdio::null());
        let mut child = cmd.spawn().expect("spawn import");
        let hook_pid = wait_marker(&marker);
        let (record, _) = lifecycle(&data);
        assert_eq!(record.phase.as_str(), state, "killed in the wrong state");
        child.kill().expect("kill -9");
        child.wait().expect("reap");
        // The hook leads its own process group: end it and whatever it started.
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(hook_pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        assert!(active(&data).is_some());
        let again = output(import_cmd(&p, &data, 2, "true"));
        assert!(
            again.status.success(),
            "{}",
            String::from_utf8_lossy(&again.stderr)
        );
        assert_final(&p, &data, true, &format!("kill -9 in {state}"));
        println!("kill -9 while {state} (hook running): ended committed on release 2");
    }
}

#[test]
fn kill_9_during_a_local_copy_from_the_active_slot() {
    let p = publisher_of(true);
    for point in ["local-copy", "staging"] {
        let data = fresh_node_on_v1(&p, &format!("delta-{point}"));
        let mut cmd = import_cmd(&p, &data, 2, "true");
        cmd.env("POLLEN_FAILPOINT", point);
        let crashed = output(cmd);
        assert!(
            crashed.status.code().is_none(),
            "{point}: the failpoint was not reached ({}; {})",
            crashed.status,
            String::from_utf8_lossy(&crashed.stderr)
        );
        assert_eq!(active(&data).map(|a| a.1), Some(1), "{point}");
        // The half-written slot claims no release.
        let slots = Slots::new(&data);
        assert!(slots.info(Slot::B).expect("info").is_none(), "{point}");
        let again = output(import_cmd(&p, &data, 2, "true"));
        assert!(
            again.status.success(),
            "{point}: {}",
            String::from_utf8_lossy(&again.stderr)
        );
        assert_final(&p, &data, true, &format!("delta release, crash at {point}"));
        let check = output({
            let mut c = Command::new(bin("pollen-node"));
            c.args(["check", "--data", s(&data)]);
            c
        });
        assert!(
            check.status.success(),
            "{point}: check: {}",
            String::from_utf8_lossy(&check.stdout)
        );
        println!("delta release, crash at {point}: ended committed on release 2, check clean");
    }
}
