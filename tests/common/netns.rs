//! Network namespaces for site tests (root only): a "cloud" namespace with
//! the seeder, a site router namespace with a bridge for the devices, one
//! veth uplink between them that `tc tbf` can rate-limit. Everything is
//! created under a per-run prefix and removed on drop.

use std::process::Command;

/// Runs a shell command; panics with its output on failure.
pub fn sh(cmd: &str) {
    let out = Command::new("bash")
        .args(["-c", cmd])
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Why namespaces cannot be used here, if they cannot.
pub fn unavailable() -> Option<String> {
    if std::env::var("USER").ok().as_deref() != Some("root")
        && !std::fs::read_to_string("/proc/self/status")
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
    {
        return Some("not root".into());
    }
    static PROBE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = PROBE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let probe = format!("pp{}x{n}", std::process::id());
    let ok = Command::new("ip")
        .args(["netns", "add", &probe])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    let _ = Command::new("ip").args(["netns", "del", &probe]).status();
    if !ok {
        return Some("`ip netns add` failed (no iproute2 or no CAP_SYS_ADMIN)".into());
    }
    None
}

/// Moves the calling thread (only it) into network namespace `ns`, so the
/// sockets it opens from then on live there: an in-process client gets a
/// source address of its own.
pub fn enter(ns: &str) {
    let path = format!("/var/run/netns/{ns}");
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)
        .unwrap_or_else(|e| panic!("entering namespace {ns}: {e}"));
}

/// Namespace tests need root and iproute2. They are `#[ignore = "needs
/// root"]`, so a plain `cargo test` leaves them out (and says so);
/// `scripts/test.sh` runs them with `--ignored` as root and fails when it
/// cannot. Run without namespaces, a test fails, loudly, rather than
/// passing having tested nothing.
pub fn require() {
    if let Some(why) = unavailable() {
        panic!("this test needs network namespaces (root and iproute2): {why}");
    }
}

/// Site tests take this lock: they share the kernel's namespace machinery
/// and their timings mean more when they do not overlap.
pub fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A cloud namespace, a site router with a bridge, devices on the bridge.
#[derive(Debug)]
pub struct Site {
    pub prefix: String,
    pub cloud: String,
    pub router: String,
    pub devices: Vec<String>,
    /// Subnet index: addresses are 10.<net>.0.x (uplink) and 10.<net>.1.x (site LAN).
    pub net: u8,
}

impl Site {
    /// Builds the topology with `devices` device namespaces.
    pub fn new(devices: usize) -> Self {
        // Unique per process and per test in it (tests run in parallel).
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = (std::process::id() % 1000) * 10 + n % 10;
        let net = 200 + (id % 50) as u8;
        let prefix = format!("pl{id}x");
        let cloud = format!("{prefix}c");
        let router = format!("{prefix}r");
        let site = Site {
            prefix: prefix.clone(),
            cloud: cloud.clone(),
            router: router.clone(),
            devices: Vec::new(),
            net,
        };
        site.cleanup();
        sh(&format!("ip netns add {cloud} && ip netns add {router}"));
        sh(&format!(
            "ip -n {cloud} link set lo up && ip -n {router} link set lo up"
        ));
        // Uplink: cloud <-> router.
        sh(&format!(
            "ip link add {prefix}u0 type veth peer name {prefix}u1 && ip link set {prefix}u0 netns {cloud} && ip link set {prefix}u1 netns {router}"
        ));
        sh(&format!("ip -n {cloud} addr add 10.{net}.0.1/24 dev {prefix}u0 && ip -n {cloud} link set {prefix}u0 up"));
        sh(&format!("ip -n {router} addr add 10.{net}.0.2/24 dev {prefix}u1 && ip -n {router} link set {prefix}u1 up"));
        sh(&format!(
            "ip -n {cloud} route add 10.{net}.1.0/24 via 10.{net}.0.2"
        ));
        // Site LAN: a bridge in the router namespace.
        sh(&format!("ip -n {router} link add {prefix}br type bridge && ip -n {router} link set {prefix}br up"));
        sh(&format!(
            "ip -n {router} addr add 10.{net}.1.254/24 dev {prefix}br"
        ));
        sh(&format!(
            "ip netns exec {router} sysctl -qw net.ipv4.ip_forward=1"
        ));
        let mut site = site;
        for i in 0..devices {
            site.add_device(i);
        }
        site
    }

    fn add_device(&mut self, i: usize) {
        let (p, r, net) = (&self.prefix, &self.router, self.net);
        let ns = format!("{p}d{i}");
        sh(&format!("ip netns add {ns} && ip -n {ns} link set lo up"));
        sh(&format!("ip link add {p}v{i}a type veth peer name {p}v{i}b && ip link set {p}v{i}a netns {ns} && ip link set {p}v{i}b netns {r}"));
        sh(&format!(
            "ip -n {r} link set {p}v{i}b master {p}br && ip -n {r} link set {p}v{i}b up"
        ));
        sh(&format!(
            "ip -n {ns} addr add 10.{net}.1.{}/24 dev {p}v{i}a && ip -n {ns} link set {p}v{i}a up",
            i + 1
        ));
        sh(&format!("ip -n {ns} route add default via 10.{net}.1.254"));
        self.devices.push(ns);
    }

    /// Address of device `i` on the site LAN.
    pub fn device_ip(&self, i: usize) -> String {
        format!("10.{}.1.{}", self.net, i + 1)
    }

    pub fn cloud_ip(&self) -> String {
        format!("10.{}.0.1", self.net)
    }

    /// Rate-limits the uplink both ways with a token bucket filter.
    pub fn limit_uplink(&self, rate: &str) {
        let (p, c, r) = (&self.prefix, &self.cloud, &self.router);
        sh(&format!("ip netns exec {c} tc qdisc replace dev {p}u0 root tbf rate {rate} burst 32kb latency 400ms"));
        sh(&format!("ip netns exec {r} tc qdisc replace dev {p}u1 root tbf rate {rate} burst 32kb latency 400ms"));
    }

    /// Bytes that came into the site over the uplink so far.
    pub fn uplink_rx_bytes(&self) -> u64 {
        link_counter(&self.router, &format!("{}u1", self.prefix), "rx_bytes")
    }

    /// Bytes that left the site over the uplink so far.
    pub fn uplink_tx_bytes(&self) -> u64 {
        link_counter(&self.router, &format!("{}u1", self.prefix), "tx_bytes")
    }

    fn cleanup(&self) {
        delete_namespaces(&self.prefix);
    }
}

/// Deletes every network namespace whose name starts with `prefix`.
pub fn delete_namespaces(prefix: &str) {
    let list = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    for ns in list
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
    {
        let _ = Command::new("ip").args(["netns", "del", ns]).status();
    }
}

/// A link counter (`rx_bytes`, `tx_bytes`, ...) of device `dev` in namespace `ns`.
pub fn link_counter(ns: &str, dev: &str, what: &str) -> u64 {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "cat"])
        .arg(format!("/sys/class/net/{dev}/statistics/{what}"))
        .output()
        .expect("read a counter");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("counter {dev}/{what} in {ns}"))
}

impl Drop for Site {
    fn drop(&mut self) {
        self.cleanup();
    }
}
