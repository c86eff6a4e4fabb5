//! Storage on flash, with the real binary: releases are written into the
//! slots and nowhere else, a device whose budget fits two releases takes
//! five in turn without its data directory ever growing past the budget,
//! and a release that cannot fit is refused before a byte of it is written.

use std::path::Path;

use std::time::Duration;

use pollen_e2e::{
    file_blake3, poll, run, run_json, s, try_node_status, write_random_file, Daemon, Release,
};
use pollen_node::store::disk_usage;
use pollen_node::update::{Slot, Slots};

const MIB: u64 = 1 << 20;
/// Each release.
const SIZE: u64 = 4 * MIB;
/// Two releases, and room for the database's own files.
const BUDGET: u64 = 2 * SIZE + 2 * MIB;

struct Publisher {
    _tmp: tempfile::TempDir,
    dir: std::path::PathBuf,
    key: String,
    trust: String,
    store: std::path::PathBuf,
}

impl Publisher {
    fn new() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_owned();
        let key = dir.join("publisher.key");
        run_json("pollen-seeder", &["keygen", "--out", s(&key)]);
        Self {
            key: s(&key).to_owned(),
            trust: format!("{}.pub", s(&key)),
            store: dir.join("seeder"),
            dir,
            _tmp: tmp,
        }
    }

    /// Publishes release `n` of `size` random bytes: its manifest and the
    /// artifact's BLAKE3.
    fn publish(&self, n: u64, size: u64) -> (std::path::PathBuf, String) {
        let artifact = self.dir.join(format!("v{n}.img"));
        write_random_file(&artifact, size, 700 + n);
        let manifest = self.dir.join(format!("v{n}.pollen"));
        run_json(
            "pollen-seeder",
            &[
                "publish",
                "--key",
                &self.key,
                "--store",
                s(&self.store),
                "--artifact",
                s(&artifact),
                "--channel",
                "stable",
                "--version",
                &format!("{n}.0.0"),
                "--release",
                &n.to_string(),
                "--out",
                s(&manifest),
            ],
        );
        (manifest, file_blake3(&artifact))
    }

    fn import_args<'a>(&'a self, data: &'a Path, manifest: &'a Path) -> Vec<&'a str> {
        vec![
            "import",
            "--data",
            s(data),
            "--trust",
            &self.trust,
            "--manifest",
            s(manifest),
            "--chunks",
            s(&self.store),
            "--channel",
            "stable",
            "--store-budget",
            "10485760",
        ]
    }
}

/// The release in `slot` and the hash of its artifact, checked whole.
fn slot(data: &Path, slot: Slot) -> Option<(u64, String)> {
    let slots = Slots::new(data);
    let info = slots.info(slot).expect("slot info")?;
    let hash = file_blake3(&slots.artifact(slot));
    assert_eq!(hash, info.blake3, "slot {} is not whole", slot.name());
    Some((info.release, hash))
}

fn check_clean(data: &Path) {
    let out = run("pollen-node", &["check", "--data", s(data)]);
    assert!(
        out.status.success(),
        "check: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn five_releases_on_a_budget_that_fits_two() {
    assert_eq!(BUDGET, 10485760, "the budget flag above");
    let p = Publisher::new();
    let data = p.dir.join("device");
    let mut hashes = Vec::new();
    for n in 1..=5u64 {
        let (manifest, hash) = p.publish(n, SIZE);
        hashes.push(hash);
        let r = run_json("pollen-node", &p.import_args(&data, &manifest));
        assert_eq!(r["install"], "committed", "release {n}: {r}");
        let used = disk_usage(&data);
        println!(
            "release {n}: data directory {used} bytes ({:.2} × release), budget {BUDGET}",
            used as f64 / SIZE as f64
        );
        assert!(
            used <= BUDGET,
            "release {n}: {used} bytes on disk > {BUDGET}"
        );
        check_clean(&data);
        let active = Slots::new(&data).active().expect("active").expect("a slot");
        assert_eq!(
            slot(&data, active),
            Some((n, hashes[n as usize - 1].clone())),
            "installed"
        );
        if n > 1 {
            assert_eq!(
                slot(&data, active.other()),
                Some((n - 1, hashes[n as usize - 2].clone())),
                "previous intact"
            );
        }
    }
    // No chunk bytes in the database: it is small beside the slots.
    let db = disk_usage(&data.join("store"));
    assert!(db < 2 * MIB, "database {db} bytes");

    // A release that cannot fit beside the installed one is refused before
    // any byte is written, and the device stays as it was.
    let (big, _) = p.publish(6, 6 * MIB);
    let out = run("pollen-node", &p.import_args(&data, &big));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a release over the budget was taken");
    assert!(
        err.contains("does not fit the store budget of 10485760 bytes"),
        "{err}"
    );
    let check = run_json("pollen-node", &["check", "--data", s(&data)]);
    assert_eq!(
        check["manifests"], 2,
        "installed and previous only: {check}"
    );
    let active = Slots::new(&data).active().expect("active").expect("a slot");
    assert_eq!(slot(&data, active), Some((5, hashes[4].clone())));
    assert_eq!(
        slot(&data, active.other()),
        Some((4, hashes[3].clone())),
        "the previous release is untouched by a refused one"
    );
    assert!(disk_usage(&data) <= BUDGET);
    check_clean(&data);
}

#[test]
fn a_running_device_refuses_a_release_over_its_budget_with_a_status_error() {
    let r = Release::publish(6 * MIB, 61);
    let (_seeder, addr) = r.serve();
    let data = r.dir.join("device");
    let _node = {
        let mut args = r.device_args(&data, &addr);
        args.extend_from_slice(&["--store-budget", "4MiB"]);
        Daemon::spawn("pollen-node", &args)
    };
    let st = poll(Duration::from_secs(120), "the release refused", || {
        let st = try_node_status(&data)?;
        if st["phase"] == "failed" {
            Ok(st)
        } else {
            Err(st.to_string())
        }
    });
    let error = st["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("does not fit the store budget of 4194304 bytes"),
        "{st}"
    );
    assert_eq!(st["running"], true, "the node keeps running: {st}");
    // Nothing of it was written.
    for slot in [Slot::A, Slot::B] {
        assert!(
            !Slots::new(&data).artifact(slot).exists(),
            "{}",
            slot.name()
        );
    }
}

/// A tmpfs of a given size, mounted for the test and unmounted after.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "tmpfs",
                s(dir.path()),
            ])
            .output()
            .expect("mount");
        assert!(out.status.success(), "mount tmpfs (needs root): {out:?}");
        Self { dir }
    }

    fn resize(&self, size: &str) {
        let out = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}"), s(self.dir.path())])
            .output()
            .expect("remount");
        assert!(out.status.success(), "remount tmpfs: {out:?}");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .args(["-l", s(self.dir.path())])
            .status();
    }
}

#[test]
#[ignore = "needs root"]
fn a_full_disk_pauses_the_download_until_there_is_room() {
    let r = Release::publish(8 * MIB, 62);
    let (_seeder, addr) = r.serve();
    let disk = SmallDisk::mount("6m");
    let data = disk.dir.path().join("device");
    let mut node = Daemon::spawn("pollen-node", &r.device_args(&data, &addr));
    let st = poll(Duration::from_secs(120), "the download paused", || {
        let st = try_node_status(&data)?;
        let paused = st["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("no space left"));
        if paused {
            Ok(st)
        } else {
            Err(st.to_string())
        }
    });
    assert_eq!(st["phase"], "downloading", "{st}");
    assert!(
        node.child.try_wait().expect("wait").is_none(),
        "the node stopped"
    );
    // Room again: the download resumes by itself and the release installs.
    disk.resize("64m");
    let st = poll(Duration::from_secs(120), "the release committed", || {
        let st = try_node_status(&data)?;
        if st["phase"] == "committed" {
            Ok(st)
        } else {
            Err(st.to_string())
        }
    });
    assert_eq!(st["last_error"], serde_json::Value::Null, "{st}");
    let active = Slots::new(&data).active().expect("active").expect("a slot");
    assert_eq!(slot(&data, active).map(|a| a.1), Some(r.blake3.clone()));
    node.terminate();
}

#[test]
fn a_flipped_byte_in_a_slot_is_not_served_and_check_finds_it() {
    let r = Release::publish(4 * MIB, 63);
    let (mut seeder, addr) = r.serve();
    let data = r.dir.join("device");
    let mut device = Daemon::spawn("pollen-node", &r.device_args(&data, &addr));
    let device_addr = device.loopback_addr();
    poll(Duration::from_secs(120), "the release committed", || {
        let st = try_node_status(&data)?;
        (st["phase"] == "committed")
            .then_some(())
            .ok_or(st.to_string())
    });
    seeder.terminate();
    // Corruption at rest in the active slot: its first chunk.
    let slots = Slots::new(&data);
    let artifact = slots.artifact(slots.active().expect("active").expect("a slot"));
    let mut bytes = std::fs::read(&artifact).expect("read slot");
    bytes[100] ^= 0x01;
    std::fs::write(&artifact, bytes).expect("write slot");

    // A peer that has only this device to fetch from never gets that chunk.
    let other = r.dir.join("other");
    let out = r.dir.join("out.img");
    let mut args = r.fetch_args(&other, &out, &[&device_addr]);
    args.extend_from_slice(&["--timeout", "15s", "--linger", "0s"]);
    let fetch = run("pollen-node", &args);
    assert!(!fetch.status.success(), "a corrupt release was fetched");
    assert!(!out.exists());
    let said = device.wait_for(Duration::from_secs(30), |is_out, l| {
        (!is_out && l.contains("corrupt")).then_some(())
    });
    assert!(said.is_some(), "device stderr: {:?}", device.stderr);
    assert!(
        device.child.try_wait().expect("wait").is_none(),
        "the device stopped"
    );
    device.terminate();
    let out = run("pollen-node", &["check", "--data", s(&data), "--json"]);
    assert!(!out.status.success(), "check passed a corrupt slot");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("check json");
    let problems = report["problems"].as_array().expect("problems");
    assert!(
        problems
            .iter()
            .any(|p| p.as_str().is_some_and(|p| p.contains("does not match"))),
        "{report}"
    );
}
