//! Service behaviour of the real binaries: SIGTERM (what `systemctl stop`
//! sends) stops `pollen-node run` mid-download and mid-install with exit
//! status 0, the chunks it held in hand written; the store checks clean;
//! a restart with the same config file picks up where it stopped, and the
//! interrupted install is redone and committed. systemd's notify protocol:
//! `READY=1`, `WATCHDOG=1` pings, `STOPPING=1`.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};

use pollen_e2e::{
    file_blake3, node_status, poll, run, s, serve_args, try_node_status, Daemon, Release,
};

const WAIT: Duration = Duration::from_secs(120);

fn node(r: &Release, data: &Path, seeder: &str, out: &Path) -> Daemon {
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
            "--uplink-rate",
            "8mbit",
            "--out",
            s(out),
        ],
    );
    d.loopback_addr();
    d
}

/// Waits until the node holds some chunks of the release, not all.
fn mid_download(data: &Path) -> u64 {
    poll(WAIT, "some chunks, not all", || {
        let st = try_node_status(data)?;
        let (held, total) = (
            st["release"]["chunks_held"].as_u64().unwrap_or(0),
            st["release"]["chunks_total"].as_u64().unwrap_or(0),
        );
        if held > 0 && held < total {
            Ok(held)
        } else {
            Err(st.to_string())
        }
    })
}

fn check_clean(data: &Path, when: &str) {
    let check = run("pollen-node", &["check", "--data", s(data)]);
    assert!(check.status.success(), "check {when}: {check:?}");
}

#[test]
fn sigterm_mid_download_stops_cleanly_and_a_restart_completes() {
    let r = Release::publish(12 << 20, 62);
    let (mut seeder, addr) = r.serve();
    let (data, out) = (r.dir.join("dev"), r.dir.join("dev.img"));
    let mut n = node(&r, &data, &addr, &out);
    let held = mid_download(&data);
    let code = n.terminate();
    assert!(
        code.success(),
        "exit after SIGTERM: {code:?}; {:?}",
        n.stderr
    );
    assert!(
        n.stderr.iter().any(|l| l.contains("SIGTERM: stopping")),
        "{:?}",
        n.stderr
    );
    check_clean(&data, "after SIGTERM");

    // Restarted: it keeps what it had and finishes.
    let mut again = node(&r, &data, &addr, &out);
    let report = again
        .wait_complete(WAIT)
        .expect("complete after the restart");
    assert!(
        report["chunks_held_at_start"].as_u64().unwrap_or(0) >= held,
        "refetched what it held: {report}"
    );
    poll(WAIT, "the release installed", || {
        let st = try_node_status(&data)?;
        if st["phase"] == "committed" {
            Ok(())
        } else {
            Err(st.to_string())
        }
    });
    poll(WAIT, "the artifact written", || {
        if out.exists() && file_blake3(&out) == r.blake3 {
            Ok(())
        } else {
            Err("not yet".into())
        }
    });
    assert!(again.terminate().success());
    assert!(seeder.terminate().success(), "{:?}", seeder.stderr);
}

/// A config file as a unit file would name it: the whole node, hooks
/// included. The install hook marks which attempt runs, then waits (its
/// own deadline) until the test creates `go`.
fn service_config(r: &Release, dir: &Path, seeder: &str) -> std::path::PathBuf {
    let d = s(dir);
    let text = format!(
        r#"# /etc/pollen/node.toml
data = "{d}/data"
trust = "{trust}"
channel = "stable"
listen = ["/ip4/127.0.0.1/tcp/0"]
peer = ["{seeder}"]
no-mdns = true
uplink-rate = "8mbit"
out = "{d}/current.img"
install-hook = 'touch "{d}/installing.$POLLEN_ATTEMPT"; i=0; while [ ! -e "{d}/go" ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done; test -e "{d}/go"'
health-hook = 'test -s "$POLLEN_ARTIFACT"'
hook-timeout = "5m"
max-attempts = 3
"#,
        trust = r.trust,
    );
    let path = dir.join("node.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

#[test]
fn service_with_config_file_survives_sigterm_mid_download_and_mid_install() {
    let r = Release::publish(12 << 20, 64);
    let (mut seeder, addr) = r.serve();
    let dir = r.dir.join("svc");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let config = service_config(&r, &dir, &addr);
    let data = dir.join("data");
    let start = || {
        let mut d = Daemon::spawn("pollen-node", &["run", "--config", s(&config)]);
        d.loopback_addr();
        d
    };

    // 1. SIGTERM mid-download.
    let mut n = start();
    mid_download(&data);
    let code = n.terminate();
    assert!(code.success(), "mid-download: {code:?}; {:?}", n.stderr);
    check_clean(&data, "after SIGTERM mid-download");

    // 2. Restarted: completes, stages, runs the install hook; SIGTERM
    //    while the hook runs.
    let mut n = start();
    let st = poll(WAIT, "the install hook running (attempt 1)", || {
        let st = try_node_status(&data)?;
        if dir.join("installing.1").exists() && st["phase"] == "staged" {
            Ok(st)
        } else {
            Err(st.to_string())
        }
    });
    assert_eq!(st["attempts"], 1, "{st}");
    let code = n.terminate();
    assert!(code.success(), "mid-install: {code:?}; {:?}", n.stderr);
    check_clean(&data, "after SIGTERM mid-install");
    let st = node_status(&data);
    assert_eq!(st["phase"], "staged", "stopped mid-install: {st}");
    assert!(st["installed"].is_null(), "nothing installed yet: {st}");

    // 3. Restarted: the interrupted install is staged again (a second
    //    attempt); the hook is let finish; the release is committed.
    let mut n = start();
    poll(WAIT, "the install hook running again (attempt 2)", || {
        let st = try_node_status(&data)?;
        if dir.join("installing.2").exists() {
            Ok(())
        } else {
            Err(st.to_string())
        }
    });
    std::fs::write(dir.join("go"), b"").expect("go");
    let st = poll(WAIT, "the release committed", || {
        let st = try_node_status(&data)?;
        if st["phase"] == "committed" {
            Ok(st)
        } else {
            Err(st.to_string())
        }
    });
    assert_eq!(st["installed"]["release"], 1, "{st}");
    assert_eq!(
        st["attempts"], 2,
        "one interrupted attempt, one whole: {st}"
    );
    assert!(st["last_error"].is_null(), "{st}");
    assert!(!dir.join("installing.3").exists(), "no third attempt");
    assert_eq!(file_blake3(&dir.join("current.img")), r.blake3);
    let slot = std::fs::canonicalize(data.join("slots/active")).expect("active slot");
    assert_eq!(file_blake3(&slot.join("artifact")), r.blake3);
    let code = n.terminate();
    assert!(code.success(), "{code:?}; {:?}", n.stderr);
    check_clean(&data, "at the end");
    let st = node_status(&data);
    assert_eq!(st["phase"], "committed", "{st}");
    assert_eq!(st["installed"]["release"], 1, "{st}");
    assert!(seeder.terminate().success(), "{:?}", seeder.stderr);
}

/// Receives notify datagrams until one has the line `want`, for at most
/// `timeout`; every message is kept in `seen`.
fn expect_notify(sock: &UnixDatagram, want: &str, timeout: Duration, seen: &mut Vec<String>) {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 4096];
    loop {
        assert!(
            Instant::now() < deadline,
            "no {want} within {timeout:?}; got {seen:?}"
        );
        let Ok(n) = sock.recv(&mut buf) else { continue };
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        let hit = msg.lines().any(|l| l == want);
        seen.push(msg);
        if hit {
            return;
        }
    }
}

fn notify_socket(dir: &Path) -> (UnixDatagram, std::path::PathBuf) {
    let path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&path).expect("bind notify socket");
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    (sock, path)
}

#[test]
fn systemd_ready_watchdog_and_stopping() {
    let r = Release::publish(1 << 16, 65);
    let (sock, path) = notify_socket(&r.dir);
    let data = r.dir.join("dev");
    let mut n = Daemon::spawn_env(
        "pollen-node",
        &r.node_args("run", &data, &[]),
        &[("NOTIFY_SOCKET", s(&path)), ("WATCHDOG_USEC", "2000000")],
        &["WATCHDOG_PID"],
    );
    let mut seen = Vec::new();
    expect_notify(&sock, "READY=1", Duration::from_secs(30), &mut seen);
    let ready = seen.last().cloned().unwrap_or_default();
    assert!(
        ready.contains("STATUS=listening on /ip4/127.0.0.1/"),
        "{ready}"
    );
    // Pings every second (half of WATCHDOG_USEC) while the loop runs.
    for _ in 0..2 {
        seen.clear();
        expect_notify(&sock, "WATCHDOG=1", Duration::from_secs(5), &mut seen);
    }
    let code = n.terminate();
    assert!(code.success(), "{code:?}; {:?}", n.stderr);
    expect_notify(&sock, "STOPPING=1", Duration::from_secs(5), &mut seen);

    // The seeder too.
    drop(sock);
    std::fs::remove_file(&path).expect("rm socket");
    let (sock, path) = notify_socket(&r.dir);
    let mut seeder = Daemon::spawn_env(
        "pollen-seeder",
        &serve_args(&r.store, "/ip4/127.0.0.1/tcp/0"),
        &[("NOTIFY_SOCKET", s(&path)), ("WATCHDOG_USEC", "2000000")],
        &["WATCHDOG_PID"],
    );
    expect_notify(&sock, "READY=1", Duration::from_secs(30), &mut seen);
    expect_notify(&sock, "WATCHDOG=1", Duration::from_secs(5), &mut seen);
    assert!(seeder.terminate().success(), "{:?}", seeder.stderr);
    expect_notify(&sock, "STOPPING=1", Duration::from_secs(5), &mut seen);
}
