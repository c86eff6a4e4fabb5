//! A seeder announced by name: `serve --external-address /dns4/...` makes
//! identify tell peers that name instead of the listen addresses, peer
//! exchange passes it on, and a device that learns of the seeder only from
//! another device dials it by the name (resolved by libp2p's dns
//! transport).

use std::time::Duration;

use pollen_e2e::{free_port, s, serve_args, Daemon, Release};

const WAIT: Duration = Duration::from_secs(60);

/// `pollen-node run` on 127.0.0.1 (mDNS off) whose one peer is `peer`.
fn device(r: &Release, name: &str, peer: &str) -> Daemon {
    let (data, out) = (r.dir.join(name), r.dir.join(format!("{name}.img")));
    Daemon::spawn(
        "pollen-node",
        &[r.device_args(&data, peer), vec!["--out", s(&out)]].concat(),
    )
}

#[test]
fn a_device_told_of_the_seeder_by_a_peer_dials_its_dns_name() {
    let r = Release::publish(1 << 20, 81);
    let port = free_port();
    let listen = format!("/ip4/127.0.0.1/tcp/{port}");
    let named = format!("/dns4/localhost/tcp/{port}");
    let mut seeder = Daemon::spawn(
        "pollen-seeder",
        &[
            serve_args(&r.store, &listen),
            vec!["--external-address", &named],
        ]
        .concat(),
    );
    let seeder_addr = seeder.loopback_addr();
    let seeder_id = seeder_addr.rsplit('/').next().expect("peer id").to_owned();

    // A knows the seeder by its IP address (--peer); by the time it has the
    // release, identify told it the seeder's announced name.
    let mut a = device(&r, "a", &seeder_addr);
    let a_addr = a.loopback_addr();
    assert!(a.wait_complete(WAIT).is_some(), "A did not complete");

    // B knows only A: the seeder's address reaches it by peer exchange.
    std::env::set_var("RUST_LOG", "info,pollen_node::driver=debug");
    let mut b = device(&r, "b", &a_addr);
    std::env::remove_var("RUST_LOG");
    let dialed = b.wait_for(WAIT, |out, line| {
        let hit =
            !out && line.contains("pollen_node::driver: connected ") && line.contains(&seeder_id);
        hit.then(|| line.to_owned())
    });
    let dialed = dialed.unwrap_or_else(|| panic!("B never dialed the seeder: {:?}", b.stderr));
    assert!(
        dialed.contains(&named),
        "B dialed the seeder, but not by its name {named}: {dialed}"
    );
    assert!(b.wait_complete(WAIT).is_some(), "B did not complete");
}
