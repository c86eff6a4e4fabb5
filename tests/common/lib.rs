//! Shared helpers for Pollen's end-to-end tests: find (and build) the real
//! binaries, make artifacts, run commands, snapshot directories.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub mod cdp;
pub mod console;
pub mod fleet;
pub mod hostile_origin;
pub mod netns;
pub mod origin;
pub mod proxy;

/// Directory holding the binaries of the profile the tests were built
/// with, or `POLLEN_BIN_DIR` (benchmarks compare another build's binaries).
fn bin_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("POLLEN_BIN_DIR") {
            return PathBuf::from(dir);
        }
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
        // Make sure the binaries exist and are current (a no-op when they
        // are). The whole workspace, as `scripts/test.sh` builds it: with
        // fewer packages cargo unifies other features for the shared
        // dependencies (rustls, tokio, ...), and would build them and the
        // node a second time.
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "--workspace", "--bins"]);
        // Not the variables cargo set for this test crate: build scripts
        // (ring's) rerun when one of them changes, so a build that sees
        // them would rebuild half the tree here, and the next `cargo test`
        // all of it again.
        for (name, _) in std::env::vars_os() {
            let crate_var = name.to_str().is_some_and(|n| {
                n.starts_with("CARGO_PKG_")
                    || n.starts_with("CARGO_MANIFEST_")
                    || matches!(
                        n,
                        "CARGO_CRATE_NAME"
                            | "CARGO_BIN_NAME"
                            | "CARGO_PRIMARY_PACKAGE"
                            | "CARGO_TARGET_TMPDIR"
                            | "OUT_DIR"
                    )
            });
            if crate_var {
                cmd.env_remove(name);
            }
        }
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
    succeeded(name, args, run(name, args))
}

/// The stdout of a finished Pollen command, which must have succeeded.
fn succeeded(name: &str, args: &[&str], out: Output) -> String {
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
    parse_json(name, &run_ok(name, &all))
}

/// Runs a Pollen binary with `--json` inside network namespace `ns`; it
/// must succeed. Returns the parsed output.
pub fn run_json_in(ns: &str, name: &str, args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(bin(name))
        .args(&all)
        .output()
        .expect("spawning a pollen binary in a namespace");
    parse_json(name, &succeeded(name, &all, out))
}

fn parse_json(name: &str, stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout)
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

/// A long-running Pollen process whose output lines are collected by
/// background threads; killed when dropped.
pub struct Daemon {
    pub child: std::process::Child,
    lines: std::sync::mpsc::Receiver<(bool, String)>,
    pub stdout: Vec<String>,
    pub stderr: Vec<String>,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("pid", &self.child.id())
            .finish()
    }
}

impl Daemon {
    pub fn spawn(name: &str, args: &[&str]) -> Self {
        Self::spawn_cmd(Command::new(bin(name)), args)
    }

    /// The same with extra environment variables (and `remove`d ones).
    pub fn spawn_env(name: &str, args: &[&str], env: &[(&str, &str)], remove: &[&str]) -> Self {
        let mut cmd = Command::new(bin(name));
        cmd.envs(env.iter().copied());
        for var in remove {
            cmd.env_remove(var);
        }
        Self::spawn_cmd(cmd, args)
    }

    /// Runs the binary inside network namespace `ns`.
    pub fn spawn_in(ns: &str, name: &str, args: &[&str]) -> Self {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns]).arg(bin(name));
        Self::spawn_cmd(cmd, args)
    }

    fn spawn_cmd(mut cmd: Command, args: &[&str]) -> Self {
        use std::io::BufRead;
        use std::process::Stdio;
        let mut child = cmd
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn daemon");
        let (tx, rx) = std::sync::mpsc::channel();
        let out = child.stdout.take().expect("stdout");
        let err = child.stderr.take().expect("stderr");
        let tx2 = tx.clone();
        // POLLEN_E2E_LOG_DIR: every daemon's stderr is also kept in a file
        // there (for debugging a failing end-to-end test).
        let mut log = std::env::var_os("POLLEN_E2E_LOG_DIR").and_then(|dir| {
            let path = Path::new(&dir).join(format!("daemon-{}.log", child.id()));
            std::fs::File::create(path).ok()
        });
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send((true, line));
            }
        });
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                if let Some(f) = &mut log {
                    let _ = writeln!(f, "{line}");
                }
                let _ = tx2.send((false, line));
            }
        });
        Self {
            child,
            lines: rx,
            stdout: Vec::new(),
            stderr: Vec::new(),
        }
    }

    /// Waits (up to `timeout`) for a line for which `want` returns a value.
    pub fn wait_for<T>(
        &mut self,
        timeout: std::time::Duration,
        mut want: impl FnMut(bool, &str) -> Option<T>,
    ) -> Option<T> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((is_out, line)) => {
                    let hit = want(is_out, &line);
                    if is_out {
                        self.stdout.push(line);
                    } else {
                        self.stderr.push(line);
                    }
                    if hit.is_some() {
                        return hit;
                    }
                }
                Err(_) => return None,
            }
        }
    }

    /// The first `listening` address on 127.0.0.1.
    pub fn loopback_addr(&mut self) -> String {
        self.listen_addr("/ip4/127.0.0.1/")
    }

    /// The first `listening` address containing `part`.
    pub fn listen_addr(&mut self, part: &str) -> String {
        self.wait_for(std::time::Duration::from_secs(30), |out, l| {
            l.strip_prefix("listening ")
                .filter(|a| out && a.contains(part))
                .map(str::to_owned)
        })
        .unwrap_or_else(|| panic!("no listen address with {part}; stderr: {:?}", self.stderr))
    }

    /// Waits for the `complete {json}` line of `pollen-node run`.
    pub fn wait_complete(&mut self, timeout: std::time::Duration) -> Option<serde_json::Value> {
        self.wait_for(timeout, |out, l| {
            l.strip_prefix("complete ")
                .filter(|_| out)
                .and_then(|j| serde_json::from_str(j).ok())
        })
    }

    /// Sends SIGTERM and waits (at most 30 s) for the exit, collecting
    /// the output it still writes.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = i32::try_from(self.child.id()).expect("pid");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        )
        .expect("SIGTERM");
        let status = self.wait_exit(std::time::Duration::from_secs(30));
        status.unwrap_or_else(|| panic!("no exit 30 s after SIGTERM; stderr: {:?}", self.stderr))
    }

    /// Waits (up to `timeout`) for the process to exit, draining its output.
    pub fn wait_exit(&mut self, timeout: std::time::Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                // Whatever it wrote last (the pipes close with it).
                self.wait_for(std::time::Duration::from_secs(5), |_, _| None::<()>);
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            // A bounded wait for output, not a sleep.
            self.wait_for(std::time::Duration::from_millis(100), |_, _| None::<()>);
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `pollen-seeder serve` arguments for `store` on channel `stable`,
/// listening on `listen`, mDNS off; callers add the rest.
pub fn serve_args<'a>(store: &'a Path, listen: &'a str) -> Vec<&'a str> {
    vec![
        "serve",
        "--store",
        s(store),
        "--channel",
        "stable",
        "--listen",
        listen,
        "--no-mdns",
    ]
}

/// A release published with the real `pollen-seeder` into a fresh store,
/// in a temporary directory that lives as long as this value.
#[derive(Debug)]
pub struct Release {
    _tmp: tempfile::TempDir,
    pub dir: PathBuf,
    pub key: PathBuf,
    /// The publisher's `.pub` file, as `--trust` takes it.
    pub trust: String,
    pub artifact: PathBuf,
    pub store: PathBuf,
    pub manifest: PathBuf,
    pub blake3: String,
    pub size: u64,
    /// `publish --json` output.
    pub report: serde_json::Value,
}

impl Release {
    /// Publishes `size` pseudo-random bytes on channel `stable` as 1.0.0.
    pub fn publish(size: u64, seed: u64) -> Self {
        Self::publish_with(size, seed, &[])
    }

    /// The same, with extra `publish` arguments.
    pub fn publish_with(size: u64, seed: u64, extra: &[&str]) -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_owned();
        let key = dir.join("publisher.key");
        run_json("pollen-seeder", &["keygen", "--out", s(&key)]);
        let artifact = dir.join("image.bin");
        write_random_file(&artifact, size, seed);
        let store = dir.join("seeder");
        let manifest = dir.join("release.pollen");
        let mut args = vec![
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
            "1.0.0",
            "--out",
            s(&manifest),
        ];
        args.extend_from_slice(extra);
        let report = run_json("pollen-seeder", &args);
        Self {
            trust: format!("{}.pub", s(&key)),
            blake3: file_blake3(&artifact),
            _tmp: tmp,
            dir,
            key,
            artifact,
            store,
            manifest,
            size,
            report,
        }
    }

    /// `pollen-node COMMAND` arguments every node of this release on
    /// 127.0.0.1 takes (mDNS off): its data in `data`, and `peers`.
    pub fn node_args<'a>(
        &'a self,
        command: &'a str,
        data: &'a Path,
        peers: &[&'a str],
    ) -> Vec<&'a str> {
        let mut args = vec![
            command,
            "--data",
            s(data),
            "--trust",
            &self.trust,
            "--channel",
            "stable",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--no-mdns",
        ];
        for p in peers {
            args.extend_from_slice(&["--peer", p]);
        }
        args
    }

    /// `pollen-node fetch` arguments for this release on 127.0.0.1 (mDNS
    /// off): into `data`, writing `out`, from `peers`; callers add the rest.
    pub fn fetch_args<'a>(
        &'a self,
        data: &'a Path,
        out: &'a Path,
        peers: &[&'a str],
    ) -> Vec<&'a str> {
        let mut args = self.node_args("fetch", data, peers);
        args.extend_from_slice(&["--out", s(out)]);
        args
    }

    /// `pollen-node run` arguments for a device of this release on
    /// 127.0.0.1 (mDNS off): its data in `data`, `peer` the one address it
    /// is given; callers add the rest.
    pub fn device_args<'a>(&'a self, data: &'a Path, peer: &'a str) -> Vec<&'a str> {
        self.node_args("run", data, &[peer])
    }

    /// Serves the release on 127.0.0.1 (mDNS off); returns the seeder and its address.
    pub fn serve(&self) -> (Daemon, String) {
        let mut seeder = Daemon::spawn(
            "pollen-seeder",
            &serve_args(&self.store, "/ip4/127.0.0.1/tcp/0"),
        );
        let addr = seeder.loopback_addr();
        (seeder, addr)
    }

    /// Serves the release from namespace `ns` on `ip` port 4000 (mDNS
    /// off); returns the seeder and its address.
    pub fn serve_in(&self, ns: &str, ip: &str) -> (Daemon, String) {
        let listen = format!("/ip4/{ip}/tcp/4000");
        let mut seeder = Daemon::spawn_in(ns, "pollen-seeder", &serve_args(&self.store, &listen));
        let addr = seeder.listen_addr(ip);
        (seeder, addr)
    }
}

/// Calls `check` until it returns a value, every 200 ms, for at most
/// `timeout`; panics naming `what` (and the last state `check` saw) then.
pub fn poll<T>(
    timeout: std::time::Duration,
    what: &str,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match check() {
            Ok(v) => return v,
            Err(last) if std::time::Instant::now() >= deadline => {
                panic!("timed out waiting for {what}; last: {last}")
            }
            Err(_) => std::thread::park_timeout(std::time::Duration::from_millis(200)),
        }
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `pollen-node status --json` of a data directory.
pub fn node_status(data: &Path) -> serde_json::Value {
    run_json("pollen-node", &["status", "--data", s(data)])
}

/// The same, or why not (no daemon yet, no store yet): for polling.
pub fn try_node_status(data: &Path) -> Result<serde_json::Value, String> {
    let out = run("pollen-node", &["status", "--data", s(data), "--json"]);
    serde_json::from_slice(&out.stdout).map_err(|_| String::from_utf8_lossy(&out.stderr).into())
}

/// `pollen-seeder status --json` of a publisher store.
pub fn seeder_status(store: &Path) -> serde_json::Value {
    run_json("pollen-seeder", &["status", "--store", s(store)])
}

/// The stage counts of release `n` in a `pollen-seeder status --json` value.
pub fn release_stages(status: &serde_json::Value, n: u64) -> Vec<serde_json::Value> {
    status["releases"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["release"] == n)
        .and_then(|r| r["stages"].as_array().cloned())
        .unwrap_or_default()
}

/// Device ids `PREFIX-N` whose rollout buckets for `release` (hex) fall
/// inside (`true`) or outside a first stage of `share` basis points:
/// `inside` of the first kind, then `outside` of the other.
pub fn pick_devices(
    prefix: &str,
    release: &str,
    share: u16,
    inside: usize,
    outside: usize,
) -> Vec<(String, bool)> {
    let mut raw = [0u8; 32];
    hex::decode_to_slice(release, &mut raw).expect("manifest id");
    let id = pollen_core::manifest::ManifestId(raw);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for n in 0.. {
        let d = format!("{prefix}-{n}");
        if pollen_core::rollout::bucket(&d, &id) < share {
            if a.len() < inside {
                a.push((d, true));
            }
        } else if b.len() < outside {
            b.push((d, false));
        }
        if a.len() == inside && b.len() == outside {
            break;
        }
    }
    a.into_iter().chain(b).collect()
}
