//! A poisoned release recalled end to end, with the real binaries: devices
//! install release 18446744073709551615 (published with `--force`, the
//! mistake `--max-step` guards against); a policy rotation recalls it and
//! resets the channel's floor to release 1, pushed to the running seeder;
//! every device goes back to release 1 and then takes release 2, and the
//! poisoned release is refused from then on.

use std::path::Path;
use std::time::Duration;

use pollen_e2e::{
    free_port, node_status, poll, run, run_json, s, serve_args, try_node_status, write_random_file,
    Daemon, Release,
};

const WAIT: Duration = Duration::from_secs(180);

fn seeder(r: &Release, policy: &Path, port: u16) -> Daemon {
    let listen = format!("/ip4/127.0.0.1/tcp/{port}");
    let mut d = Daemon::spawn(
        "pollen-seeder",
        &[serve_args(&r.store, &listen), vec!["--policy", s(policy)]].concat(),
    );
    d.loopback_addr();
    d
}

fn device(policy: &Path, data: &Path, name: &str, seeder: &str) -> Daemon {
    let mut d = Daemon::spawn(
        "pollen-node",
        &[
            "run",
            "--data",
            s(data),
            "--policy",
            s(policy),
            "--channel",
            "stable",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--no-mdns",
            "--peer",
            seeder,
            "--device-id",
            name,
            "--status-interval",
            "2s",
            "--retry-interval",
            "1s",
        ],
    );
    // Listening: its local endpoint is up too.
    d.loopback_addr();
    d
}

fn publish(r: &Release, n: &str, version: &str, extra: &[&str]) -> serde_json::Value {
    let artifact = r.dir.join(format!("v{version}.img"));
    write_random_file(
        &artifact,
        1 << 20,
        900 + version.len() as u64 * 7 + n.len() as u64,
    );
    let mut args = vec![
        "publish",
        "--key",
        s(&r.key),
        "--store",
        s(&r.store),
        "--artifact",
        s(&artifact),
        "--channel",
        "stable",
        "--version",
        version,
        "--release",
        n,
    ];
    args.extend_from_slice(extra);
    run_json("pollen-seeder", &args)
}

/// Polls until `data`'s device has committed `release`.
fn committed(data: &Path, release: u64) {
    poll(WAIT, &format!("release {release} committed"), || {
        let st = try_node_status(data)?;
        let ok = st["phase"] == "committed" && st["installed"]["release"].as_u64() == Some(release);
        if ok {
            Ok(())
        } else {
            Err(st.to_string())
        }
    });
}

#[test]
fn a_floor_reset_recalls_a_poisoned_release() {
    let r = Release::publish(1 << 20, 41);
    let good = r.report["manifest_id"].as_str().expect("id").to_owned();
    let pubkey = &r.trust;
    // Policy v1: the publisher's key holds every signing role (an open mesh).
    let v1 = r.dir.join("v1.policy");
    run_json(
        "pollen-seeder",
        &[
            "policy",
            "create",
            "--root",
            pubkey,
            "--release",
            pubkey,
            "--operator",
            pubkey,
            "--key",
            s(&r.key),
            "--out",
            s(&v1),
        ],
    );
    let port = free_port();
    let addr = format!("/ip4/127.0.0.1/tcp/{port}");
    let mut seed = seeder(&r, &v1, port);
    let datas: Vec<_> = (0..2).map(|i| r.dir.join(format!("dev{i}"))).collect();
    let _devices: Vec<Daemon> = datas
        .iter()
        .enumerate()
        .map(|(i, d)| device(&v1, d, &format!("press-{i}"), &addr))
        .collect();
    for d in &datas {
        committed(d, 1);
    }

    // The mistake: a release number no later release can pass.
    seed.kill();
    let refused = run(
        "pollen-seeder",
        &[
            "publish",
            "--key",
            s(&r.key),
            "--store",
            s(&r.store),
            "--artifact",
            s(&r.artifact),
            "--channel",
            "stable",
            "--version",
            "9.9.9",
            "--release",
            "18446744073709551615",
        ],
    );
    assert!(!refused.status.success(), "--max-step let the jump through");
    let poison = publish(&r, "18446744073709551615", "9.9.9", &["--force"]);
    let poison_id = poison["manifest_id"].as_str().expect("id").to_owned();
    let mut seed = seeder(&r, &v1, port);
    for d in &datas {
        committed(d, u64::MAX);
    }

    // The recall: v2 resets stable's floor to release 1 and recalls what is above it.
    let v2 = r.dir.join("v2.policy");
    let rotated = run_json(
        "pollen-seeder",
        &[
            "policy",
            "rotate",
            "--from",
            s(&v1),
            "--reset-floor",
            "stable",
            "--to",
            &good,
            "--store",
            s(&r.store),
            "--key",
            s(&r.key),
            "--out",
            s(&v2),
        ],
    );
    assert!(
        rotated.to_string().contains(&poison_id),
        "the poisoned release is not recalled: {rotated}"
    );
    let pushed = run(
        "pollen-seeder",
        &["policy", "push", "--store", s(&r.store), s(&v2)],
    );
    assert!(pushed.status.success(), "{pushed:?}");
    for d in &datas {
        committed(d, 1);
    }

    // Numbering goes on from the good release; the devices take release 2.
    seed.kill();
    let next = publish(&r, "2", "2.0.0", &["--policy", s(&v2)]);
    assert_eq!(next["release"], 2);
    let _seed = seeder(&r, &v1, port);
    for d in &datas {
        committed(d, 2);
        let st = node_status(d);
        assert_ne!(
            st["target"]["manifest"].as_str(),
            Some(poison_id.as_str()),
            "the poisoned release came back: {st}"
        );
    }
}
