//! Service behaviour of the real binaries: SIGTERM (what `systemctl stop`
//! sends) stops `pollen-node run` mid-download with exit status 0, the
//! chunks it held in hand written; the store checks clean; a restart picks
//! up where it stopped, completes and installs. The seeder stops on
//! SIGTERM the same way.

use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use pollen_e2e::{file_blake3, poll, run, s, try_node_status, Daemon, Release};

const WAIT: Duration = Duration::from_secs(120);

/// Sends SIGTERM and waits (with a deadline) for the process to exit.
fn terminate(d: &mut Daemon) -> std::process::ExitStatus {
    let pid = Pid::from_raw(i32::try_from(d.child.id()).expect("pid"));
    kill(pid, Signal::SIGTERM).expect("SIGTERM");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = d.child.try_wait().expect("wait") {
            return status;
        }
        assert!(Instant::now() < deadline, "no exit 30 s after SIGTERM");
        // Drains its output while waiting (bounded wait, not a sleep).
        d.wait_for(Duration::from_millis(100), |_, _| None::<()>);
    }
}

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

#[test]
fn sigterm_mid_download_stops_cleanly_and_a_restart_completes() {
    let r = Release::publish(12 << 20, 62);
    let (mut seeder, addr) = r.serve();
    let (data, out) = (r.dir.join("dev"), r.dir.join("dev.img"));
    let mut n = node(&r, &data, &addr, &out);
    let held = poll(WAIT, "some chunks, not all", || {
        let st = try_node_status(&data)?;
        let (held, total) = (
            st["release"]["chunks_held"].as_u64().unwrap_or(0),
            st["release"]["chunks_total"].as_u64().unwrap_or(0),
        );
        if held > 0 && held < total {
            Ok(held)
        } else {
            Err(st.to_string())
        }
    });
    let code = terminate(&mut n);
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
    let check = run("pollen-node", &["check", "--data", s(&data)]);
    assert!(check.status.success(), "check after SIGTERM: {check:?}");

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
    assert!(terminate(&mut again).success());
    assert!(terminate(&mut seeder).success(), "{:?}", seeder.stderr);
}
