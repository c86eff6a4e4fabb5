//! An HTTP origin for tests: nginx (Debian's package, `scripts/setup.sh`)
//! serving a directory as static files on 127.0.0.1 at a free port, as a
//! publisher's web server serves a `pollen-seeder export --origin` tree;
//! or ([`Origin::start_in`]) on a given address inside a network
//! namespace, over plain HTTP or TLS with a given certificate.
//!
//! nginx runs in the foreground as one process (`daemon off`,
//! `master_process off`: no workers switching to another user, so it
//! reads whatever the test can read) with its config, pid file, logs and
//! temporary folders in a temporary directory of its own; it is killed
//! when the [`Origin`] is dropped. Also a plain HTTP/1.0 GET over
//! `std::net::TcpStream` to read from it without any HTTP client library.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running nginx serving one directory.
#[derive(Debug)]
pub struct Origin {
    child: Child,
    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub url: String,
    pub port: u16,
    /// The directory served.
    pub root: PathBuf,
    /// Config, pid file, logs (`access.log`, `error.log`), temp folders.
    work: tempfile::TempDir,
}

/// A server certificate (chain) and its key, PEM files, for nginx's TLS.
#[derive(Debug, Clone)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// nginx's config for serving `root` on `listen` (`IP:PORT`), over TLS
/// with `tls`, everything it writes under `work`.
fn config(root: &Path, listen: &str, tls: Option<&Tls>, work: &Path) -> String {
    let w = work.display();
    let server_tls = match tls {
        Some(t) => format!(
            "\x20   ssl_certificate {};\n\x20   ssl_certificate_key {};\n",
            t.cert.display(),
            t.key.display()
        ),
        None => String::new(),
    };
    let ssl = if tls.is_some() { " ssl" } else { "" };
    format!(
        "daemon off;\n\
         master_process off;\n\
         worker_processes 1;\n\
         pid {w}/nginx.pid;\n\
         error_log {w}/error.log warn;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n\
         \x20 access_log {w}/access.log;\n\
         \x20 client_body_temp_path {w}/client_body;\n\
         \x20 proxy_temp_path {w}/proxy;\n\
         \x20 fastcgi_temp_path {w}/fastcgi;\n\
         \x20 uwsgi_temp_path {w}/uwsgi;\n\
         \x20 scgi_temp_path {w}/scgi;\n\
         \x20 default_type application/octet-stream;\n\
         \x20 sendfile on;\n\
         \x20 server {{\n\
         \x20   listen {listen}{ssl};\n\
         {server_tls}\
         \x20   root {root};\n\
         \x20   location / {{ }}\n\
         \x20 }}\n\
         }}\n",
        root = root.display()
    )
}

impl Origin {
    /// Starts nginx serving `dir` (which need not exist yet: requests then
    /// answer 404) and returns once it accepts connections. Panics, with
    /// nginx's error log, if it does not start within 10 s.
    pub fn start(dir: &Path) -> Origin {
        let root = std::path::absolute(dir).expect("absolute path of the served directory");
        let mut last = String::new();
        // A port free a moment ago may be taken by the time nginx binds it.
        for _ in 0..3 {
            let work = tempfile::tempdir().expect("tempdir for nginx");
            let port = crate::free_port();
            let conf = work.path().join("nginx.conf");
            let listen = format!("127.0.0.1:{port}");
            std::fs::write(&conf, config(&root, &listen, None, work.path()))
                .expect("write nginx.conf");
            let mut child = Command::new(nginx())
                .arg("-p")
                .arg(work.path())
                .arg("-e")
                .arg(work.path().join("error.log"))
                .arg("-c")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("starting nginx (scripts/setup.sh installs it)");
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    last = format!(
                        "nginx exited with {status}: {}",
                        std::fs::read_to_string(work.path().join("error.log")).unwrap_or_default()
                    );
                    break;
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Origin {
                        child,
                        url: format!("http://127.0.0.1:{port}"),
                        port,
                        root,
                        work,
                    };
                }
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    last = "nginx did not accept connections within 10 s".into();
                    break;
                }
                std::thread::park_timeout(Duration::from_millis(20));
            }
        }
        panic!("nginx did not start: {last}");
    }

    /// Starts nginx in network namespace `ns` serving `dir` on `ip`:`port`
    /// (`https://` with `tls`, else `http://`) and returns once it accepts
    /// connections there. Panics, with nginx's error log, if it does not
    /// start within 10 s. ([`Origin::get`] reads 127.0.0.1 only: not for
    /// this one.)
    pub fn start_in(ns: &str, ip: &str, port: u16, dir: &Path, tls: Option<&Tls>) -> Origin {
        let root = std::path::absolute(dir).expect("absolute path of the served directory");
        let work = tempfile::tempdir().expect("tempdir for nginx");
        let conf = work.path().join("nginx.conf");
        let listen = format!("{ip}:{port}");
        std::fs::write(&conf, config(&root, &listen, tls, work.path())).expect("write nginx.conf");
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(nginx())
            .arg("-p")
            .arg(work.path())
            .arg("-e")
            .arg(work.path().join("error.log"))
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting nginx (scripts/setup.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !crate::proxy::tcp_connects(ns, ip, port) {
            let exited = child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "nginx in {ns} did not accept connections on {listen} ({exited:?}): {}",
                    std::fs::read_to_string(work.path().join("error.log")).unwrap_or_default()
                );
            }
            std::thread::park_timeout(Duration::from_millis(50));
        }
        let scheme = if tls.is_some() { "https" } else { "http" };
        Origin {
            child,
            url: format!("{scheme}://{ip}:{port}"),
            port,
            root,
            work,
        }
    }

    /// `GET` of `path` (relative to the served root, e.g. `index/stable`).
    pub fn get(&self, path: &str) -> Result<HttpResponse, String> {
        http_get(self.port, &format!("/{}", path.trim_start_matches('/')))
    }

    /// The URL of `path` below the served root.
    pub fn url_of(&self, path: &str) -> String {
        format!("{}/{}", self.url, path.trim_start_matches('/'))
    }

    /// nginx's access log so far, one request a line.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.work.path().join("access.log")).unwrap_or_default()
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nginx() -> PathBuf {
    ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("nginx"))
}

/// A response read whole: status code, headers (names lowercased), body.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A plain HTTP/1.0 `GET` of `path` on 127.0.0.1:`port` (the connection
/// closes after the response, so the body is everything after the head).
pub fn http_get(port: u16, path: &str) -> Result<HttpResponse, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of the response head")?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|e| e.to_string())?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(HttpResponse {
        status,
        headers,
        body: raw[end + 4..].to_vec(),
    })
}

/// Exports the release's store as an origin tree into `dir` (signed by
/// the release's key, as its trust file's operator).
pub fn export(r: &crate::Release, dir: &Path) {
    crate::run_json(
        "pollen-seeder",
        &[
            "export",
            "--store",
            crate::s(&r.store),
            "--origin",
            crate::s(dir),
            "--key",
            crate::s(&r.key),
            "--policy",
            &r.trust,
        ],
    );
}
