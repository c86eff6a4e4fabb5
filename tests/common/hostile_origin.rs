//! A hostile origin mirror for tests: a small HTTP/1.1 server on
//! 127.0.0.1 (std `TcpListener`, a thread per connection, one request per
//! connection) serving an exported tree as nginx would, except that its
//! chunk responses (`GET /chunk/...`) misbehave as its [`Misbehaviour`]
//! says: too long (declared so, chunked, or delimited by the close), or a
//! stall (the head and part of the body, then nothing, the connection held
//! open until the server is dropped). It records every path asked and the
//! chunk paths it misbehaved on, for the test to compare with what the
//! good mirror served.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How a too-long chunk response says where it ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// A `Content-Length` of the chunk and the extra bytes.
    Declared,
    /// `Transfer-Encoding: chunked`, no length given.
    Chunked,
    /// No length at all: the body ends when the connection closes.
    CloseDelimited,
}

/// What the mirror does to chunk requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Misbehaviour {
    /// The chunk's bytes followed by `extra` more.
    Oversize { extra: usize, framing: Framing },
    /// The chunk's true `Content-Length` and its first `sent` bytes, then
    /// nothing more (the connection kept open).
    Stall { sent: usize },
}

/// What the server shares with its connection threads.
#[derive(Debug)]
struct Shared {
    root: PathBuf,
    mode: Misbehaviour,
    /// Every request path, in order of arrival.
    asked: Mutex<Vec<String>>,
    /// The chunk paths answered badly, in order (repeats kept).
    misbehaved: Mutex<Vec<String>>,
    /// Stalled connections, held open until the server is dropped.
    held: Mutex<Vec<TcpStream>>,
    stop: AtomicBool,
}

/// A running hostile mirror; stopped (every held connection closed) on drop.
#[derive(Debug)]
pub struct HostileOrigin {
    /// `http://127.0.0.1:PORT/`, as `--origin` takes it.
    pub url: String,
    port: u16,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl HostileOrigin {
    /// Serves `root` (an exported tree) on a free port of 127.0.0.1.
    pub fn start(root: &Path, mode: Misbehaviour) -> HostileOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the hostile origin");
        let port = listener.local_addr().expect("its address").port();
        let shared = Arc::new(Shared {
            root: std::path::absolute(root).expect("absolute root"),
            mode,
            asked: Mutex::default(),
            misbehaved: Mutex::default(),
            held: Mutex::default(),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        let accept = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let s = s.clone();
                std::thread::spawn(move || s.answer(stream));
            }
        });
        HostileOrigin {
            url: format!("http://127.0.0.1:{port}/"),
            port,
            shared,
            accept: Some(accept),
        }
    }

    /// Every path asked so far (`/index/stable`, `/chunk/ab/...`), in order.
    pub fn asked(&self) -> Vec<String> {
        lock(&self.shared.asked).clone()
    }

    /// The chunk paths answered badly so far, in order (repeats kept).
    pub fn misbehaved(&self) -> Vec<String> {
        lock(&self.shared.misbehaved).clone()
    }
}

impl Drop for HostileOrigin {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop up to see the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        lock(&self.shared.held).clear();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// Reads one request on `stream` and answers it (errors writing are
    /// the client hanging up: ignored).
    fn answer(&self, mut stream: TcpStream) {
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        let Some(path) = read_request_path(&mut stream) else {
            return;
        };
        lock(&self.asked).push(path.clone());
        let Some(body) = self.file(&path) else {
            let _ = stream.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            return;
        };
        if !path.starts_with("/chunk/") {
            let _ = write_plain(&mut stream, &body);
            return;
        }
        lock(&self.misbehaved).push(path);
        match self.mode {
            Misbehaviour::Oversize { extra, framing } => {
                let mut long = body;
                long.resize(long.len() + extra, 0xa5);
                let _ = match framing {
                    Framing::Declared => write_plain(&mut stream, &long),
                    Framing::Chunked => write_chunked(&mut stream, &long),
                    Framing::CloseDelimited => write_close_delimited(&mut stream, &long),
                };
            }
            Misbehaviour::Stall { sent } => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                let part = &body[..sent.min(body.len().saturating_sub(1))];
                let written = stream
                    .write_all(head.as_bytes())
                    .and_then(|()| stream.write_all(part))
                    .and_then(|()| stream.flush());
                if written.is_ok() {
                    lock(&self.held).push(stream);
                }
            }
        }
    }

    /// The bytes of the file at request path `path` under the root; `None`
    /// if there is none (or the path leaves the root).
    fn file(&self, path: &str) -> Option<Vec<u8>> {
        let rel = Path::new(path.trim_start_matches('/'));
        if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            return None;
        }
        std::fs::read(self.root.join(rel)).ok()
    }
}

/// The path of the `GET` request on `stream` (its head read whole).
fn read_request_path(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).ok().filter(|&n| n > 0)?;
        head.extend_from_slice(&buf[..n]);
        if head.len() > 16 * 1024 {
            return None;
        }
    }
    let line = head.split(|&b| b == b'\r').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split(' ');
    (parts.next()? == "GET").then_some(())?;
    parts.next().map(str::to_owned)
}

fn write_plain(stream: &mut TcpStream, body: &[u8]) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)
}

/// `body` in chunked transfer coding, in pieces of 16 KiB.
fn write_chunked(stream: &mut TcpStream, body: &[u8]) -> std::io::Result<()> {
    stream.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
    )?;
    for piece in body.chunks(16 * 1024) {
        write!(stream, "{:x}\r\n", piece.len())?;
        stream.write_all(piece)?;
        stream.write_all(b"\r\n")?;
    }
    stream.write_all(b"0\r\n\r\n")
}

/// `body` with no length: it ends when the connection is shut down.
fn write_close_delimited(stream: &mut TcpStream, body: &[u8]) -> std::io::Result<()> {
    stream.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
    )?;
    stream.write_all(body)?;
    stream.shutdown(std::net::Shutdown::Write)
}
