//! Shared helpers for Pollen's end-to-end tests: find (and build) the real
//! binaries, make artifacts, run commands, snapshot directories.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// Directory holding the binaries of the profile the tests were built with.
fn bin_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        // target/<profile>/deps/<test> → target/<profile>
        let dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target dir")
            .to_owned();
        let profile = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("debug")
            .to_owned();
        // Make sure the binaries exist and are current (a no-op when they are).
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "--quiet",
            "-p",
            "pollen-node",
            "-p",
            "pollen-seeder",
            "--bins",
        ]);
        if profile != "debug" {
            cmd.args([
                "--profile",
                if profile == "release" {
                    "release"
                } else {
                    &profile
                },
            ]);
        }
        let status = cmd.status().expect("running cargo build for the binaries");
        assert!(status.success(), "building pollen binaries failed");
        dir
    })
    .clone()
}

/// Path of a Pollen binary (`pollen-node`, `pollen-seeder`).
pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(path.is_file(), "{} missing", path.display());
    path
}

/// Runs a Pollen binary to completion.
pub fn run(name: &str, args: &[&str]) -> Output {
    Command::new(bin(name))
        .args(args)
        .output()
        .expect("spawning a pollen binary")
}

/// Runs a Pollen binary that must succeed; returns stdout.
pub fn run_ok(name: &str, args: &[&str]) -> String {
    let out = run(name, args);
    assert!(
        out.status.success(),
        "{name} {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a Pollen binary with `--json` that must succeed; returns the parsed output.
pub fn run_json(name: &str, args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.push("--json");
    let stdout = run_ok(name, &all);
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{name} printed no JSON ({e}): {stdout}"))
}

/// Deterministic pseudo-random bytes (BLAKE3 in XOF mode, keyed by `seed`).
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    let mut out = vec![0u8; len];
    blake3::Hasher::new_keyed(&key)
        .finalize_xof()
        .fill(&mut out);
    out
}

/// Writes `len` pseudo-random bytes to `path`, streaming in 4 MiB pieces.
pub fn write_random_file(path: &Path, len: u64, seed: u64) {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    let mut xof = blake3::Hasher::new_keyed(&key).finalize_xof();
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).expect("create artifact"));
    let mut buf = vec![0u8; 4 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        xof.fill(&mut buf[..n]);
        file.write_all(&buf[..n]).expect("write artifact");
        left -= n as u64;
    }
    file.flush().expect("flush artifact");
}

/// BLAKE3 of a file, hex.
pub fn file_blake3(path: &Path) -> String {
    let mut hasher = blake3::Hasher::new();
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    std::io::copy(&mut std::io::BufReader::new(file), &mut hasher).expect("hash file");
    hasher.finalize().to_hex().to_string()
}

/// Every file below `dir` with the BLAKE3 of its bytes: equal snapshots mean
/// the directory is byte-for-byte unchanged.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    if !dir.exists() {
        return out;
    }
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir).expect("below dir").to_owned();
                out.insert(rel, file_blake3(&path));
            }
        }
    }
    out
}

/// Turns a path into the `&str` the command lines want.
pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}
