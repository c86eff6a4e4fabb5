//! The operator console under test: a seeder serving `--http` on
//! 127.0.0.1 with a tokens file and an audit log, devices on a loopback
//! mesh (mDNS off) reporting to it, and a small blocking HTTP client for
//! the console's API.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{s, serve_args, Daemon, Release};

/// A read-only token of the tokens file [`Mesh::start`] writes.
pub const READ: &str = "viewer-token-6c1b0e0f5a";
/// An operator token of it (name `alice`).
pub const OPERATOR: &str = "operator-token-98d2f4a1c7";

/// One request to the console: status and body.
pub fn http(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect to the console");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).expect("send");
    let reply = read_reply(&mut stream);
    let text = String::from_utf8_lossy(&reply).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, body)
}

/// The reply: up to its Content-Length when it gives one (a server may
/// keep the connection open), else to the end of the stream.
fn read_reply(stream: &mut TcpStream) -> Vec<u8> {
    let mut reply = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = stream.read(&mut buf).expect("read reply");
        if n == 0 {
            return reply;
        }
        reply.extend_from_slice(&buf[..n]);
        let Some(end) = reply.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&reply[..end]).to_ascii_lowercase();
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok());
        if length.is_some_and(|len| reply.len() >= end + 4 + len) {
            return reply;
        }
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// A GET that must answer 200 with JSON.
pub fn get_json(addr: SocketAddr, path: &str, token: &str) -> serde_json::Value {
    let (status, body) = http(addr, "GET", path, Some(token));
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

/// A device of the mesh.
#[derive(Debug)]
pub struct Device {
    pub id: String,
    pub data: PathBuf,
    /// In the first stage of the release.
    pub first: bool,
    pub daemon: Daemon,
}

/// A seeder with the console and its devices.
#[derive(Debug)]
pub struct Mesh {
    pub release: Release,
    pub seeder: Daemon,
    pub console: SocketAddr,
    pub audit: PathBuf,
    pub devices: Vec<Device>,
}

impl Mesh {
    /// Publishes a 2 MiB release with `stages` (and `extra` publish
    /// arguments), serves it with the console (operator key given), and
    /// starts `inside` devices in the first stage and `outside` beyond it,
    /// alternating between sites `hall-a` and `hall-b`. Devices whose
    /// index is in `failing` fail their health check.
    pub fn start(
        stages: &str,
        first_share: u16,
        inside: usize,
        outside: usize,
        failing: &[usize],
    ) -> Self {
        let release = Release::publish_with(2 << 20, 170, &["--stages", stages]);
        let id = release.report["manifest_id"]
            .as_str()
            .expect("manifest id")
            .to_owned();
        let tokens = release.dir.join("tokens");
        std::fs::write(
            &tokens,
            format!("# console tokens\nread viewer {READ}\noperator alice {OPERATOR}\n"),
        )
        .expect("tokens file");
        let audit = release.dir.join("audit.jsonl");
        let mut args = serve_args(&release.store, "/ip4/127.0.0.1/tcp/0");
        args.extend_from_slice(&[
            "--key",
            s(&release.key),
            "--http",
            "127.0.0.1:0",
            "--http-tokens",
            s(&tokens),
            "--http-audit",
            s(&audit),
        ]);
        let mut seeder = Daemon::spawn("pollen-seeder", &args);
        let console = console_addr(&mut seeder);
        let peer = seeder.loopback_addr();
        let mut devices = Vec::new();
        for (i, (device, first)) in crate::pick_devices("press", &id, first_share, inside, outside)
            .into_iter()
            .enumerate()
        {
            let data = release.dir.join(&device);
            let site = if i % 2 == 0 { "hall-a" } else { "hall-b" };
            let health = if failing.contains(&i) {
                r#"echo "watchdog: service crashed" >&2; exit 1"#
            } else {
                r#"test -s "$POLLEN_ARTIFACT""#
            };
            let daemon = device_daemon(&release, &data, &device, site, &peer, health);
            devices.push(Device {
                id: device,
                data,
                first,
                daemon,
            });
        }
        Self {
            release,
            seeder,
            console,
            audit,
            devices,
        }
    }
}

/// The console's address from the seeder's `console http://ADDR/` line.
pub fn console_addr(seeder: &mut Daemon) -> SocketAddr {
    seeder
        .wait_for(Duration::from_secs(60), |out, l| {
            l.strip_prefix("console http://")
                .filter(|_| out)
                .and_then(|a| a.trim_end_matches('/').parse().ok())
        })
        .unwrap_or_else(|| panic!("no console line; stderr: {:?}", seeder.stderr))
}

fn device_daemon(
    r: &Release,
    data: &Path,
    device: &str,
    site: &str,
    peer: &str,
    health: &str,
) -> Daemon {
    let mut args = r.device_args(data, peer);
    args.extend_from_slice(&[
        "--device-id",
        device,
        "--site",
        site,
        "--status-interval",
        "1s",
        "--retry-interval",
        "1s",
        "--health-hook",
        health,
    ]);
    Daemon::spawn("pollen-node", &args)
}
