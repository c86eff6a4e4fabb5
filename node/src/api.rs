//! The local control endpoint, on loopback only: `GET /status` (JSON),
//! `GET /metrics` (Prometheus text format), `POST /control` (a signed
//! rollout control to pass into the mesh), `POST /policy` (a signed
//! fleet policy rotation; the node takes it only if it verifies) and, on a
//! seeder, `POST /release` (the path of a release `pollen-seeder publish`
//! staged inside the store directory: the seeder imports and serves it,
//! answering with its manifest id or why it refused). A minimal HTTP/1.1
//! server: one request per connection, bounded request size, a deadline per
//! connection and a cap on connections at once. Requests are parsed by
//! `pollen_core::local_http`; this module does the I/O.
//!
//! The daemon writes the bound address to `DATA/api.addr`, which is how
//! `pollen-node status` and `pollen-seeder rollout` find it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pollen_core::local_http;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, Semaphore};

mod render;
pub use render::{ReleaseView, View};

/// Connections served at once.
const MAX_CONNECTIONS: usize = 8;
/// Each connection must be done within this (reading its request, and
/// answering anything but `POST /release`).
const DEADLINE: Duration = Duration::from_secs(5);
/// A `POST /release` is answered within this: the seeder imports the
/// release (every chunk read, checked and written) before it answers.
pub const RELEASE_DEADLINE: Duration = Duration::from_secs(3600);

/// Errors of the endpoint and its client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    #[error("the local endpoint must listen on loopback, not {0}")]
    NotLoopback(SocketAddr),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("no running daemon: {}: {source}", path.display())]
    NoAddressFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no running daemon: {}: {source}", path.display())]
    BadAddressFile {
        path: PathBuf,
        source: std::net::AddrParseError,
    },
    #[error("no running daemon: {addr}: {source}")]
    NotRunning {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the daemon answered {status}: {body}")]
    Status { status: u16, body: String },
}

/// The answer to a staged release: its manifest id (hex), or why it was refused.
pub type ReleaseReply = Result<String, String>;

/// What the driver publishes for the endpoint to serve.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub status: serde_json::Value,
    pub metrics: String,
}

/// The snapshot shared between the driver (writer) and the endpoint (reader).
pub type Shared = Arc<Mutex<Snapshot>>;

/// What the endpoint hands to the driver.
#[derive(Debug)]
pub enum ApiCommand {
    /// Signed rollout control bytes.
    Control(Vec<u8>),
    /// Signed fleet policy bytes (a rotation pushed by the operator).
    Policy(Vec<u8>),
    /// A release staged by `pollen-seeder publish` in this folder (inside
    /// [`staging_dir`], checked by the endpoint): the seeder imports it,
    /// serves it and answers on `reply`.
    Release {
        dir: PathBuf,
        reply: oneshot::Sender<ReleaseReply>,
    },
}

/// Where the daemon records its endpoint's address.
pub fn addr_file(data_dir: &Path) -> PathBuf {
    data_dir.join("api.addr")
}

/// Where `pollen-seeder publish` stages releases for the running seeder of
/// the store `data_dir`: one folder per release (the export layout:
/// `manifest.pollen` and `chunks/`), removed once answered.
pub fn staging_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("staging")
}

/// The staged release folder a `POST /release` body names, if it is a
/// folder directly inside `data_dir`'s [`staging_dir`] (links resolved):
/// nothing else of the file system is read through the endpoint.
pub fn staged_release(data_dir: &Path, body: &[u8]) -> Result<PathBuf, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the path is not UTF-8".to_owned())?;
    let root = staging_dir(data_dir);
    let inside = std::fs::canonicalize(&root)
        .ok()
        .zip(std::fs::canonicalize(text.trim()).ok())
        .filter(|(root, dir)| dir.parent() == Some(root.as_path()) && dir.is_dir());
    match inside {
        Some((_, dir)) => Ok(dir),
        None => Err(format!(
            "{} is not a staged release folder: it must be a folder inside {}",
            text.trim(),
            root.display()
        )),
    }
}

/// Binds the endpoint on a loopback address and records it in `data_dir`.
pub async fn bind(addr: SocketAddr, data_dir: &Path) -> Result<TcpListener, ApiError> {
    if !addr.ip().is_loopback() {
        return Err(ApiError::NotLoopback(addr));
    }
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ApiError::Io {
            context: format!("binding the local endpoint on {addr}"),
            source,
        })?;
    let bound = listener.local_addr().map_err(|source| ApiError::Io {
        context: "reading the endpoint address".into(),
        source,
    })?;
    let file = addr_file(data_dir);
    let tmp = file.with_extension("partial");
    std::fs::write(&tmp, bound.to_string())
        .and_then(|()| std::fs::rename(&tmp, &file))
        .map_err(|source| ApiError::Io {
            context: format!("writing {}", file.display()),
            source,
        })?;
    tracing::info!(addr = %bound, "local endpoint listening");
    Ok(listener)
}

/// Binds the endpoint, spawns its server, and returns what the driver
/// needs: the snapshot to publish into and the commands to take.
pub async fn start(
    addr: SocketAddr,
    data_dir: &Path,
) -> Result<(Shared, mpsc::Receiver<ApiCommand>), ApiError> {
    let listener = bind(addr, data_dir).await?;
    let shared = Shared::default();
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(serve(listener, shared.clone(), tx, data_dir.to_owned()));
    Ok((shared, rx))
}

/// Serves the endpoint until the task is dropped; staged releases are
/// taken only from inside `data_dir`'s [`staging_dir`].
pub async fn serve(
    listener: TcpListener,
    shared: Shared,
    commands: mpsc::Sender<ApiCommand>,
    data_dir: PathBuf,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            continue; // dropped: over the connection cap
        };
        let (shared, commands, data_dir) = (shared.clone(), commands.clone(), data_dir.clone());
        tokio::spawn(async move {
            // Each step of `handle` has its own, shorter deadline.
            let limit = RELEASE_DEADLINE + 2 * DEADLINE;
            let _ = tokio::time::timeout(limit, handle(stream, shared, commands, &data_dir)).await;
            drop(permit);
        });
    }
}

async fn handle(
    mut stream: tokio::net::TcpStream,
    shared: Shared,
    commands: mpsc::Sender<ApiCommand>,
    data_dir: &Path,
) -> std::io::Result<()> {
    let Ok(request) = tokio::time::timeout(DEADLINE, read_request(&mut stream)).await else {
        return Ok(());
    };
    let Some((method, path, body)) = request? else {
        return respond(&mut stream, 413, "text/plain", "request too large\n").await;
    };
    if (method.as_str(), path.as_str()) == ("POST", "/release") {
        let (status, text) = release(&commands, data_dir, &body).await;
        return within(DEADLINE, respond(&mut stream, status, "text/plain", &text)).await;
    }
    within(
        DEADLINE,
        answer(&mut stream, &shared, &commands, &method, &path, body),
    )
    .await
}

async fn within(
    limit: Duration,
    f: impl std::future::Future<Output = std::io::Result<()>>,
) -> std::io::Result<()> {
    tokio::time::timeout(limit, f)
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
}

/// A request's method, path and body; `None`: over the size cap.
type Request = Option<(String, String, Vec<u8>)>;

async fn read_request(stream: &mut tokio::net::TcpStream) -> std::io::Result<Request> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let head = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        match local_http::parse_head(&buf) {
            Ok(Some(head)) => break head,
            Ok(None) => {}
            Err(_) => return Ok(None),
        }
    };
    while buf.len() < head.end() {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = head.body(&buf).unwrap_or_default().to_vec();
    Ok(Some((head.method, head.path, body)))
}

/// `POST /release`: the staged folder goes to the driver, whose verdict
/// is the answer (200 with the manifest id, 400 with the reason).
async fn release(
    commands: &mpsc::Sender<ApiCommand>,
    data_dir: &Path,
    body: &[u8],
) -> (u16, String) {
    let dir = match staged_release(data_dir, body) {
        Ok(dir) => dir,
        Err(e) => return (400, format!("{e}\n")),
    };
    let (reply, answer) = oneshot::channel();
    if commands
        .try_send(ApiCommand::Release { dir, reply })
        .is_err()
    {
        return (503, "busy, try again\n".into());
    }
    match tokio::time::timeout(RELEASE_DEADLINE, answer).await {
        Ok(Ok(Ok(id))) => (200, format!("{id}\n")),
        Ok(Ok(Err(e))) => (400, format!("{e}\n")),
        Ok(Err(_)) => (503, "the daemon is stopping\n".into()),
        Err(_) => (503, "timed out importing the release\n".into()),
    }
}

async fn answer(
    stream: &mut tokio::net::TcpStream,
    shared: &Shared,
    commands: &mpsc::Sender<ApiCommand>,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> std::io::Result<()> {
    match (method, path) {
        ("GET", "/status") => {
            let text = {
                let snap = shared.lock().map_err(|_| std::io::ErrorKind::Other)?;
                serde_json::to_string_pretty(&snap.status).unwrap_or_default()
            };
            respond(stream, 200, "application/json", &text).await
        }
        ("GET", "/metrics") => {
            let text = shared
                .lock()
                .map_err(|_| std::io::ErrorKind::Other)?
                .metrics
                .clone();
            respond(stream, 200, "text/plain; version=0.0.4", &text).await
        }
        ("POST", "/control") => match commands.try_send(ApiCommand::Control(body)) {
            Ok(()) => respond(stream, 202, "text/plain", "accepted\n").await,
            Err(_) => respond(stream, 503, "text/plain", "busy, try again\n").await,
        },
        ("POST", "/policy") => match commands.try_send(ApiCommand::Policy(body)) {
            Ok(()) => respond(stream, 202, "text/plain", "accepted\n").await,
            Err(_) => respond(stream, 503, "text/plain", "busy, try again\n").await,
        },
        _ => respond(stream, 404, "text/plain", "not found\n").await,
    }
}

async fn respond(
    stream: &mut tokio::net::TcpStream,
    status: u16,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        404 => "Not Found",
        413 => "Payload Too Large",
        _ => "Service Unavailable",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

/// The address a running daemon recorded in `data_dir`, if it answers.
pub fn running_daemon(data_dir: &Path) -> Result<SocketAddr, ApiError> {
    let file = addr_file(data_dir);
    let text = std::fs::read_to_string(&file).map_err(|source| ApiError::NoAddressFile {
        path: file.clone(),
        source,
    })?;
    let addr: SocketAddr = text
        .trim()
        .parse()
        .map_err(|source| ApiError::BadAddressFile { path: file, source })?;
    if !addr.ip().is_loopback() {
        return Err(ApiError::NotLoopback(addr));
    }
    TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|source| ApiError::NotRunning { addr, source })?;
    Ok(addr)
}

/// A blocking request to the endpoint (for the CLIs); returns the body.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<String, ApiError> {
    request_within(addr, method, path, body, DEADLINE)
}

/// [`request`], waiting up to `wait` for each read of the answer (a
/// `POST /release` is answered after the import: [`RELEASE_DEADLINE`]).
pub fn request_within(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
    wait: Duration,
) -> Result<String, ApiError> {
    let io = |context: &str| {
        let context = format!("{context} {addr}");
        move |source| ApiError::Io { context, source }
    };
    let mut stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(io("connecting to"))?;
    stream
        .set_read_timeout(Some(wait))
        .map_err(io("configuring"))?;
    let head = local_http::request_head(method, path, addr, body.len());
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body))
        .map_err(io("writing to"))?;
    let mut reply = Vec::new();
    stream
        .take(MAX_REPLY)
        .read_to_end(&mut reply)
        .map_err(io("reading from"))?;
    let text = String::from_utf8_lossy(&reply).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .unwrap_or(0);
    if status / 100 != 2 {
        return Err(ApiError::Status {
            status,
            body: body.trim().to_owned(),
        });
    }
    Ok(body.to_owned())
}

/// Largest reply the client reads.
const MAX_REPLY: u64 = 16 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serves_status_metrics_and_controls_on_loopback_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outside: SocketAddr = "0.0.0.0:0".parse().expect("addr");
        assert!(matches!(
            bind(outside, dir.path()).await,
            Err(ApiError::NotLoopback(_))
        ));
        let listener = bind("127.0.0.1:0".parse().expect("addr"), dir.path())
            .await
            .expect("bind");
        let shared: Shared = Arc::default();
        {
            let mut s = shared.lock().expect("lock");
            s.status = serde_json::json!({"phase": "committed"});
            s.metrics = "pollen_peers 3\n".into();
        }
        let (tx, mut rx) = mpsc::channel(4);
        tokio::spawn(serve(listener, shared, tx, dir.path().to_owned()));
        let data = dir.path().to_owned();
        let (status, metrics, missing) = tokio::task::spawn_blocking(move || {
            let addr = running_daemon(&data).expect("running");
            (
                request(addr, "GET", "/status", b"").expect("status"),
                request(addr, "GET", "/metrics", b"").expect("metrics"),
                request(addr, "GET", "/nope", b""),
            )
        })
        .await
        .expect("join");
        assert!(status.contains("committed"));
        assert_eq!(metrics, "pollen_peers 3\n");
        assert!(matches!(missing, Err(ApiError::Status { status: 404, .. })));
        let data = dir.path().to_owned();
        tokio::task::spawn_blocking(move || {
            let addr = running_daemon(&data).expect("running");
            request(addr, "POST", "/control", b"signed bytes").expect("post");
            request(addr, "POST", "/policy", b"policy bytes").expect("post")
        })
        .await
        .expect("join");
        match rx.recv().await {
            Some(ApiCommand::Control(b)) => assert_eq!(b, b"signed bytes"),
            other => panic!("expected the control, got {other:?}"),
        }
        match rx.recv().await {
            Some(ApiCommand::Policy(b)) => assert_eq!(b, b"policy bytes"),
            other => panic!("expected the policy, got {other:?}"),
        }
    }

    #[test]
    fn staged_releases_come_only_from_the_staging_folder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("store");
        let staged = staging_dir(&data).join("42-1");
        std::fs::create_dir_all(&staged).expect("mkdir");
        let outside = dir.path().join("elsewhere");
        std::fs::create_dir_all(&outside).expect("mkdir");
        let text = |p: &Path| p.to_str().expect("utf-8").as_bytes().to_vec();
        assert_eq!(
            staged_release(&data, &text(&staged)).ok(),
            std::fs::canonicalize(&staged).ok()
        );
        for bad in [
            text(&outside),
            text(&staging_dir(&data)),
            text(&staged.join("..").join("..").join("..").join("elsewhere")),
            text(&staging_dir(&data).join("missing")),
            vec![0xff, 0xfe],
        ] {
            let e = staged_release(&data, &bad).expect_err("refused");
            assert!(e.contains("not"), "{e}");
        }
    }
}
