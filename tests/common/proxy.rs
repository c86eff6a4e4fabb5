//! A factory site whose only way out is a forward proxy (root only): the
//! devices of a [`Site`] lose their route to the cloud, squid (Debian's
//! package, `scripts/setup.sh`) runs in the site router namespace on the
//! site LAN and may only reach the cloud; plus a test CA and server
//! certificate made with the openssl CLI, a TCP reachability probe from
//! inside a namespace, and daemons started in a namespace with extra
//! environment (the proxy variables).
//!
//! squid runs in the foreground (`-N`) with its config, pid file and logs
//! in a temporary directory of its own, caches nothing, and is killed
//! when the [`Squid`] is dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::netns::{sh, Site};
use crate::origin::Tls;
use crate::{bin, Daemon};

/// squid's port on the site LAN.
pub const PROXY_PORT: u16 = 3128;

/// Whether a TCP connection from namespace `ns` to `ip`:`port` succeeds
/// within 3 s (bash's `/dev/tcp`, under `timeout`).
pub fn tcp_connects(ns: &str, ip: &str, port: u16) -> bool {
    Command::new("ip")
        .args(["netns", "exec", ns, "timeout", "3", "bash", "-c"])
        .arg(format!("exec 3<>/dev/tcp/{ip}/{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Takes away every route from the site to the cloud: the devices lose
/// their default route and the router stops forwarding, so the only way
/// out is a process in the router namespace (the proxy).
pub fn cut_direct_route(site: &Site) {
    for ns in &site.devices {
        sh(&format!("ip -n {ns} route del default"));
    }
    sh(&format!(
        "ip netns exec {} sysctl -qw net.ipv4.ip_forward=0",
        site.router
    ));
}

/// The router's address on the site LAN (where squid listens).
pub fn gateway_ip(site: &Site) -> String {
    format!("10.{}.1.254", site.net)
}

/// A running squid: the site's forward proxy.
#[derive(Debug)]
pub struct Squid {
    child: Child,
    /// `http://GATEWAY_IP:3128`, as `HTTP_PROXY`/`HTTPS_PROXY` take it.
    pub url: String,
    work: tempfile::TempDir,
}

/// squid's config: listen on `listen` (`IP:PORT`), serve clients from
/// `lan` (a CIDR) going to `cloud` (an IP) only, plain GET or CONNECT to
/// `port` there; no cache, everything it writes under `work`.
fn squid_config(listen: &str, lan: &str, cloud: &str, port: u16, work: &Path) -> String {
    let w = work.display();
    format!(
        "http_port {listen}\n\
         visible_hostname pollen-site-proxy\n\
         pid_filename {w}/squid.pid\n\
         cache_log {w}/cache.log\n\
         access_log stdio:{w}/access.log squid\n\
         cache_store_log none\n\
         coredump_dir {w}\n\
         cache deny all\n\
         cache_mem 8 MB\n\
         pinger_enable off\n\
         netdb_filename none\n\
         logfile_rotate 0\n\
         shutdown_lifetime 0 seconds\n\
         acl site src {lan}\n\
         acl cloud dst {cloud}/32\n\
         acl origin_port port {port}\n\
         http_access deny !site\n\
         http_access deny !cloud\n\
         http_access deny !origin_port\n\
         http_access allow site\n\
         http_access deny all\n"
    )
}

impl Squid {
    /// Starts squid in `site`'s router namespace on the site LAN, letting
    /// the site's devices reach `cloud_ip`:`origin_port` only; returns
    /// once it accepts connections (from a device's namespace). Panics,
    /// with squid's log, if it does not within 20 s.
    pub fn start(site: &Site, cloud_ip: &str, origin_port: u16) -> Squid {
        let work = tempfile::tempdir().expect("tempdir for squid");
        // squid drops to its own user (`proxy`) and then writes its logs.
        sh(&format!("chmod 0777 {}", work.path().display()));
        let gw = gateway_ip(site);
        let conf = work.path().join("squid.conf");
        let lan = format!("10.{}.1.0/24", site.net);
        std::fs::write(
            &conf,
            squid_config(
                &format!("{gw}:{PROXY_PORT}"),
                &lan,
                cloud_ip,
                origin_port,
                work.path(),
            ),
        )
        .expect("write squid.conf");
        let mut child = Command::new("ip")
            .args(["netns", "exec", &site.router])
            .arg(squid())
            .arg("-N")
            .arg("-f")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting squid (scripts/setup.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !tcp_connects(&site.devices[0], &gw, PROXY_PORT) {
            let exited = child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "squid did not accept connections on {gw}:{PROXY_PORT} ({exited:?}): {}",
                    std::fs::read_to_string(work.path().join("cache.log")).unwrap_or_default()
                );
            }
            std::thread::park_timeout(Duration::from_millis(100));
        }
        Squid {
            child,
            url: format!("http://{gw}:{PROXY_PORT}"),
            work,
        }
    }

    /// squid's access log so far, one request a line (a CONNECT tunnel is
    /// logged when it closes).
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.work.path().join("access.log")).unwrap_or_default()
    }

    /// The environment a device takes to use this proxy for everything.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("HTTP_PROXY", self.url.clone()),
            ("HTTPS_PROXY", self.url.clone()),
            ("NO_PROXY", String::new()),
        ]
    }
}

impl Drop for Squid {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn squid() -> PathBuf {
    ["/usr/sbin/squid", "/usr/local/sbin/squid"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("squid"))
}

/// A test CA and a server certificate it signed for one IP address (as an
/// IP subjectAltName), made with the openssl CLI in `dir`.
#[derive(Debug, Clone)]
pub struct TestCa {
    /// The CA certificate (PEM), as `--origin-ca` takes it.
    pub ca: PathBuf,
    /// The server's certificate and key for nginx.
    pub server: Tls,
}

impl TestCa {
    /// Makes a fresh P-256 CA (valid for a day) and a server certificate
    /// for `ip` in `dir`.
    pub fn new(dir: &Path, ip: &str) -> TestCa {
        std::fs::create_dir_all(dir).expect("CA dir");
        let d = dir.display();
        sh(&format!(
            "cd {d} && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
             -keyout ca.key -out ca.pem -days 1 -subj /CN=pollen-test-ca \
             -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
             2>&1"
        ));
        std::fs::write(
            dir.join("server.ext"),
            format!(
                "subjectAltName=IP:{ip}\nbasicConstraints=CA:FALSE\n\
                 keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
            ),
        )
        .expect("server.ext");
        sh(&format!(
            "cd {d} && openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
             -keyout server.key -out server.csr -subj /CN={ip} 2>&1 && \
             openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
             -out server.pem -days 1 -extfile server.ext 2>&1"
        ));
        TestCa {
            ca: dir.join("ca.pem"),
            server: Tls {
                cert: dir.join("server.pem"),
                key: dir.join("server.key"),
            },
        }
    }
}

impl Daemon {
    /// Runs the binary `name` inside network namespace `ns` with extra
    /// environment variables (the proxy's, say).
    pub fn spawn_in_env(ns: &str, name: &str, args: &[&str], env: &[(&str, String)]) -> Self {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns]).arg(bin(name));
        cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        Self::spawn_cmd(cmd, args)
    }
}

/// `pollen-node status --json` of `data` run inside namespace `ns` (the
/// node's local endpoint is on that namespace's 127.0.0.1), or why not:
/// for polling.
pub fn try_node_status_in(ns: &str, data: &Path) -> Result<serde_json::Value, String> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(bin("pollen-node"))
        .args(["status", "--data"])
        .arg(data)
        .arg("--json")
        .output()
        .map_err(|e| e.to_string())?;
    serde_json::from_slice(&out.stdout).map_err(|_| String::from_utf8_lossy(&out.stderr).into())
}
