//! A fleet in network namespaces (root only): a core router (the
//! internet), the seeder in a namespace of its own behind a link `tc tbf`
//! can shape, and N sites, each a router namespace with a shaped veth
//! uplink to the core and a bridge for its device namespaces. Byte counters
//! come from the veths: what the seeder sent, what crossed each site's
//! uplink each way. Everything is created under a per-run prefix and
//! removed on drop.

use std::process::Command;

use crate::netns::{delete_namespaces, link_counter, sh};

/// The topology. Addresses: seeder 10.B.1.2 (core 10.B.1.1); site i uplink
/// 10.B.(10+i).2 (core .1); site i LAN 10.B.(100+i).0/24, router .254,
/// device j at .(j+1).
#[derive(Debug)]
pub struct Fleet {
    prefix: String,
    base: u8,
    pub core: String,
    pub seeder: String,
    /// Per site: router namespace and device namespaces.
    pub sites: Vec<(String, Vec<String>)>,
    /// The host's neighbour-table limits before this fleet raised them.
    neighbours: Option<NeighbourLimits>,
}

/// The kernel's ARP table is one for all network namespaces, and past
/// `gc_thresh3` entries (1 024 by default) it refuses new ones: packets to
/// a neighbour it cannot add, multicast included, are dropped. Real devices
/// each have a table of their own; a fleet of namespaces on one host shares
/// one, so a fleet that needs more raises the limits while it lives (every
/// device learns every site peer, its router and some others).
#[derive(Debug)]
struct NeighbourLimits([String; 3]);

const NEIGH: &str = "/proc/sys/net/ipv4/neigh/default";

impl NeighbourLimits {
    fn read() -> Self {
        NeighbourLimits(["gc_thresh1", "gc_thresh2", "gc_thresh3"].map(|k| {
            std::fs::read_to_string(format!("{NEIGH}/{k}"))
                .expect("read the neighbour-table limits")
                .trim()
                .to_owned()
        }))
    }

    fn write(&self) {
        for (k, v) in ["gc_thresh1", "gc_thresh2", "gc_thresh3"]
            .iter()
            .zip(&self.0)
        {
            std::fs::write(format!("{NEIGH}/{k}"), v).expect("set the neighbour-table limits");
        }
    }

    /// Raises the limits to hold `entries` (returns the old ones), or
    /// leaves them if they already do.
    fn make_room(entries: usize) -> Option<Self> {
        let old = Self::read();
        let max: usize = old.0[2].parse().expect("gc_thresh3 is a number");
        if max >= entries {
            return None;
        }
        let new = NeighbourLimits([
            old.0[0].clone(),
            entries.to_string(),
            (entries * 2).to_string(),
        ]);
        new.write();
        Some(old)
    }
}

/// Which way across a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// Into the site (its downlink), or out of the seeder.
    In,
    /// Out of the site (its uplink).
    Out,
}

impl Fleet {
    /// `sites` sites of `devices` devices each.
    pub fn new(sites: usize, devices: usize) -> Self {
        assert!(sites <= 80 && devices <= 200, "addressing limits");
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = (std::process::id() % 1000) * 10 + n % 10;
        let prefix = format!("pf{id}x");
        let base = 100 + (id % 100) as u8;
        let mut fleet = Fleet {
            core: format!("{prefix}c"),
            seeder: format!("{prefix}s"),
            sites: Vec::new(),
            prefix,
            base,
            neighbours: NeighbourLimits::make_room(2 * sites * devices * (devices + 4) + 256),
        };
        fleet.cleanup();
        let (p, b, c, s) = (&fleet.prefix, base, &fleet.core, &fleet.seeder);
        sh(&format!("ip netns add {c} && ip -n {c} link set lo up"));
        sh(&format!(
            "ip netns exec {c} sysctl -qw net.ipv4.ip_forward=1"
        ));
        sh(&format!("ip netns add {s} && ip -n {s} link set lo up"));
        sh(&format!("ip link add {p}sa type veth peer name {p}sb && ip link set {p}sa netns {s} && ip link set {p}sb netns {c}"));
        sh(&format!(
            "ip -n {s} addr add 10.{b}.1.2/24 dev {p}sa && ip -n {s} link set {p}sa up"
        ));
        sh(&format!(
            "ip -n {c} addr add 10.{b}.1.1/24 dev {p}sb && ip -n {c} link set {p}sb up"
        ));
        sh(&format!("ip -n {s} route add default via 10.{b}.1.1"));
        for i in 0..sites {
            fleet.add_site(i, devices);
        }
        fleet
    }

    fn add_site(&mut self, i: usize, devices: usize) {
        let (p, b, c) = (self.prefix.clone(), self.base, self.core.clone());
        let r = format!("{p}r{i}");
        let (up, lan) = (10 + i, 100 + i);
        sh(&format!("ip netns add {r} && ip -n {r} link set lo up"));
        sh(&format!(
            "ip netns exec {r} sysctl -qw net.ipv4.ip_forward=1"
        ));
        sh(&format!("ip link add {p}u{i}a type veth peer name {p}u{i}b && ip link set {p}u{i}a netns {r} && ip link set {p}u{i}b netns {c}"));
        sh(&format!(
            "ip -n {r} addr add 10.{b}.{up}.2/24 dev {p}u{i}a && ip -n {r} link set {p}u{i}a up"
        ));
        sh(&format!(
            "ip -n {c} addr add 10.{b}.{up}.1/24 dev {p}u{i}b && ip -n {c} link set {p}u{i}b up"
        ));
        sh(&format!("ip -n {r} route add default via 10.{b}.{up}.1"));
        sh(&format!(
            "ip -n {c} route add 10.{b}.{lan}.0/24 via 10.{b}.{up}.2"
        ));
        sh(&format!(
            "ip -n {r} link add {p}br{i} type bridge && ip -n {r} link set {p}br{i} up"
        ));
        sh(&format!(
            "ip -n {r} addr add 10.{b}.{lan}.254/24 dev {p}br{i}"
        ));
        let mut names = Vec::new();
        for j in 0..devices {
            let d = format!("{p}d{i}_{j}");
            sh(&format!("ip netns add {d} && ip -n {d} link set lo up"));
            sh(&format!("ip link add {p}v{i}_{j}a type veth peer name {p}v{i}_{j}b && ip link set {p}v{i}_{j}a netns {d} && ip link set {p}v{i}_{j}b netns {r}"));
            sh(&format!("ip -n {r} link set {p}v{i}_{j}b master {p}br{i} && ip -n {r} link set {p}v{i}_{j}b up"));
            sh(&format!("ip -n {d} addr add 10.{b}.{lan}.{}/24 dev {p}v{i}_{j}a && ip -n {d} link set {p}v{i}_{j}a up", j + 1));
            sh(&format!("ip -n {d} route add default via 10.{b}.{lan}.254"));
            names.push(d);
        }
        self.sites.push((r, names));
    }

    pub fn seeder_ip(&self) -> String {
        format!("10.{}.1.2", self.base)
    }

    /// Device `j` of site `i` on its LAN.
    pub fn device_ip(&self, i: usize, j: usize) -> String {
        format!("10.{}.{}.{}", self.base, 100 + i, j + 1)
    }

    /// Shapes what the seeder sends (and receives) with a token bucket.
    pub fn limit_seeder(&self, rate: &str) {
        let (p, s, c) = (&self.prefix, &self.seeder, &self.core);
        sh(&format!("ip netns exec {s} tc qdisc replace dev {p}sa root tbf rate {rate} burst 32kb latency 400ms"));
        sh(&format!("ip netns exec {c} tc qdisc replace dev {p}sb root tbf rate {rate} burst 32kb latency 400ms"));
    }

    /// Shapes every site's uplink both ways with a token bucket.
    pub fn limit_uplinks(&self, rate: &str) {
        let (p, c) = (&self.prefix, &self.core);
        for (i, (r, _)) in self.sites.iter().enumerate() {
            sh(&format!("ip netns exec {r} tc qdisc replace dev {p}u{i}a root tbf rate {rate} burst 32kb latency 400ms"));
            sh(&format!("ip netns exec {c} tc qdisc replace dev {p}u{i}b root tbf rate {rate} burst 32kb latency 400ms"));
        }
    }

    /// Site `i`'s router namespace and its uplink device (for captures).
    pub fn uplink_dev(&self, i: usize) -> (String, String) {
        (self.sites[i].0.clone(), format!("{}u{i}a", self.prefix))
    }

    /// Bytes the seeder has sent onto its link (wire bytes: TCP/IP,
    /// Noise and yamux framing included).
    pub fn seeder_tx(&self) -> u64 {
        link_counter(&self.seeder, &format!("{}sa", self.prefix), "tx_bytes")
    }

    /// Bytes that crossed site `i`'s uplink into the site (`In`) or out of it.
    pub fn uplink(&self, i: usize, dir: Dir) -> u64 {
        let what = match dir {
            Dir::In => "rx_bytes",
            Dir::Out => "tx_bytes",
        };
        link_counter(&self.sites[i].0, &format!("{}u{i}a", self.prefix), what)
    }

    fn cleanup(&self) {
        delete_namespaces(&self.prefix);
    }
}

/// TCP segments retransmitted from namespace `ns` so far.
pub fn tcp_retransmits(ns: &str) -> u64 {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "cat", "/proc/net/snmp"])
        .output()
        .expect("read /proc/net/snmp");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut tcp = text.lines().filter(|l| l.starts_with("Tcp:"));
    let (names, values) = (tcp.next().unwrap_or(""), tcp.next().unwrap_or(""));
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "RetransSegs")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.cleanup();
        if let Some(old) = &self.neighbours {
            old.write();
        }
    }
}
