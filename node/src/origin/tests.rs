//! The client against a tiny HTTP server of the test's own (std
//! `TcpListener` on loopback) answering each path with chosen raw bytes.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;

/// What the test server does for a path.
#[derive(Clone)]
enum Reply {
    /// Writes these bytes and closes.
    Raw(Vec<u8>),
    /// Writes these bytes and then keeps the connection open, silent.
    Stall(Vec<u8>),
    /// `304` when the request carries this `If-None-Match`, else these bytes.
    Etag(&'static str, Vec<u8>),
}

struct Server {
    url: reqwest::Url,
    hits: Arc<Mutex<HashMap<String, u32>>>,
}

impl Server {
    fn hits(&self, path: &str) -> u32 {
        let hits = self.hits.lock().unwrap_or_else(|e| e.into_inner());
        hits.get(path).copied().unwrap_or(0)
    }
}

fn ok(body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nETag: \"v1\"\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

fn head_only(status: &str, headers: &str) -> Vec<u8> {
    format!("HTTP/1.1 {status}\r\n{headers}Connection: close\r\n\r\n").into_bytes()
}

fn serve(routes: Vec<(&'static str, Reply)>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let routes: Arc<HashMap<String, Reply>> = Arc::new(
        routes
            .into_iter()
            .map(|(p, r)| (format!("/{p}"), r))
            .collect(),
    );
    let hits = Arc::new(Mutex::new(HashMap::new()));
    let counted = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let (routes, hits) = (routes.clone(), counted.clone());
            std::thread::spawn(move || answer(stream, &routes, &hits));
        }
    });
    Server {
        url: parse_origin_url(&format!("http://{addr}/tree")).expect("url"),
        hits,
    }
}

fn answer(mut s: TcpStream, routes: &HashMap<String, Reply>, hits: &Mutex<HashMap<String, u32>>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let path = path.strip_prefix("/tree").unwrap_or(&path).to_owned();
    *hits
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(path.clone())
        .or_default() += 1;
    let reply = routes
        .get(&path)
        .cloned()
        .unwrap_or_else(|| Reply::Raw(head_only("404 Not Found", "Content-Length: 0\r\n")));
    match reply {
        Reply::Raw(bytes) => {
            let _ = s.write_all(&bytes);
        }
        Reply::Stall(bytes) => {
            let _ = s.write_all(&bytes);
            // Silent until the client hangs up.
            let _ = s.read(&mut [0u8; 1]);
        }
        Reply::Etag(tag, bytes) => {
            let wanted = format!("if-none-match: {}", tag.to_lowercase());
            let reply = match head.contains(&wanted) {
                true => head_only("304 Not Modified", ""),
                false => bytes,
            };
            let _ = s.write_all(&reply);
        }
    }
}

fn client(urls: Vec<reqwest::Url>) -> OriginClient {
    let mut config = OriginConfig::new(urls);
    config.stall_timeout = Duration::from_millis(300);
    config.backoff = Duration::from_millis(200);
    config.retries = 0;
    OriginClient::new(config).expect("client")
}

#[tokio::test]
async fn a_good_chunk_is_read_whole_and_counted() {
    let body = vec![7u8; 5000];
    let server = serve(vec![("chunk/ab/ab", Reply::Raw(ok(&body)))]);
    let c = client(vec![server.url.clone()]);
    let progress = Arc::new(AtomicU64::new(0));
    let got = c
        .fetch("chunk/ab/ab", Expect::Exactly(5000), None, Some(&progress))
        .await
        .expect("fetched");
    let Fetched::Body {
        bytes,
        etag,
        mirror,
    } = got
    else {
        panic!("not a body: {got:?}");
    };
    assert_eq!(bytes.as_ref(), body.as_slice());
    assert_eq!((etag.as_deref(), mirror), (Some("\"v1\""), 0));
    assert_eq!(progress.load(std::sync::atomic::Ordering::Relaxed), 5000);
    let status = &c.status()[0];
    assert_eq!(
        (status.state, status.bytes_fetched),
        (MirrorState::Ok, 5000)
    );
}

#[tokio::test]
async fn an_oversize_content_length_is_refused_before_the_body() {
    let mut reply = head_only("200 OK", "Content-Length: 1000000000\r\n");
    reply.extend_from_slice(&[1u8; 4096]);
    let server = serve(vec![("manifest/x", Reply::Raw(reply))]);
    let c = client(vec![server.url.clone()]);
    let e = c
        .fetch("manifest/x", Expect::AtMost(65536), None, None)
        .await;
    assert!(
        matches!(
            e,
            Err(OriginError::TooLarge {
                got: 1_000_000_000,
                limit: 65536,
                ..
            })
        ),
        "{e:?}"
    );
    let status = &c.status()[0];
    assert_eq!(status.bytes_fetched, 0, "no byte of the body was read");
    assert_eq!(status.state, MirrorState::Failing);
    assert!(status
        .last_error
        .as_deref()
        .is_some_and(|e| e.contains("too large")));
}

#[tokio::test]
async fn a_body_without_length_is_cut_at_the_bound() {
    let mut reply = head_only("200 OK", "");
    reply.extend_from_slice(&[1u8; 10_000]);
    let server = serve(vec![("index/stable", Reply::Raw(reply))]);
    let c = client(vec![server.url.clone()]);
    let e = c
        .fetch("index/stable", Expect::AtMost(4096), None, None)
        .await;
    assert!(
        matches!(e, Err(OriginError::TooLarge { limit: 4096, .. })),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_chunk_of_the_wrong_length_is_refused() {
    let server = serve(vec![
        ("chunk/short", Reply::Raw(ok(&[1u8; 999]))),
        ("chunk/long", Reply::Raw(ok(&[1u8; 1001]))),
    ]);
    let c = client(vec![server.url.clone()]);
    let e = c
        .fetch("chunk/short", Expect::Exactly(1000), None, None)
        .await;
    assert!(
        matches!(
            e,
            Err(OriginError::WrongLength {
                got: 999,
                expected: 1000,
                ..
            })
        ),
        "{e:?}"
    );
    let c = client(vec![server.url.clone()]);
    let e = c
        .fetch("chunk/long", Expect::Exactly(1000), None, None)
        .await;
    assert!(
        matches!(e, Err(OriginError::TooLarge { got: 1001, .. })),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_truncated_body_is_an_error() {
    let mut reply = head_only("200 OK", "Content-Length: 1000\r\n");
    reply.extend_from_slice(&[1u8; 400]);
    let server = serve(vec![("chunk/t", Reply::Raw(reply))]);
    let c = client(vec![server.url.clone()]);
    let e = c.fetch("chunk/t", Expect::Exactly(1000), None, None).await;
    assert!(matches!(e, Err(OriginError::Truncated { .. })), "{e:?}");
}

#[tokio::test]
async fn busy_with_retry_after_rests_the_mirror_that_long() {
    let reply = head_only(
        "503 Service Unavailable",
        "Retry-After: 7\r\nContent-Length: 0\r\n",
    );
    let server = serve(vec![("chunk/b", Reply::Raw(reply))]);
    let c = client(vec![server.url.clone()]);
    let e = c.fetch("chunk/b", Expect::Exactly(10), None, None).await;
    let Err(e) = e else { panic!("not busy") };
    assert!(e.is_busy(), "{e:?}");
    assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
    let rest = c.status()[0].backoff_seconds.expect("resting");
    assert!(rest > 6.0 && rest <= 7.0, "{rest}");
    // Resting: not asked again, the caller hears how long to wait.
    let again = c.fetch("chunk/b", Expect::Exactly(10), None, None).await;
    assert!(
        matches!(again, Err(OriginError::BackingOff { .. })),
        "{again:?}"
    );
    assert_eq!(server.hits("/chunk/b"), 1);
}

#[tokio::test]
async fn a_stalled_response_times_out() {
    let mut reply = head_only("200 OK", "Content-Length: 1000\r\n");
    reply.extend_from_slice(&[1u8; 10]);
    let server = serve(vec![("chunk/s", Reply::Stall(reply))]);
    let c = client(vec![server.url.clone()]);
    let started = std::time::Instant::now();
    let e = c.fetch("chunk/s", Expect::Exactly(1000), None, None).await;
    assert!(matches!(e, Err(OriginError::Stalled { .. })), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_failing_mirror_rests_and_the_next_answers() {
    let bad = serve(vec![(
        "chunk/m",
        Reply::Raw(head_only(
            "500 Internal Server Error",
            "Content-Length: 0\r\n",
        )),
    )]);
    let good = serve(vec![("chunk/m", Reply::Raw(ok(&[3u8; 64])))]);
    let c = client(vec![bad.url.clone(), good.url.clone()]);
    for _ in 0..2 {
        let got = c.fetch("chunk/m", Expect::Exactly(64), None, None).await;
        assert!(
            matches!(got, Ok(Fetched::Body { mirror: 1, .. })),
            "{got:?}"
        );
    }
    // The second fetch skipped the resting first mirror.
    assert_eq!((bad.hits("/chunk/m"), good.hits("/chunk/m")), (1, 2));
    let status = c.status();
    assert_eq!(status[0].state, MirrorState::Failing);
    assert!(status[0]
        .last_error
        .as_deref()
        .is_some_and(|e| e.contains("500")));
    assert_eq!(status[1].state, MirrorState::Ok);
}

/// A first mirror whose `chunk/p` stalls after 10 of its 64 bytes, a
/// second that serves it; the client after one fetch of it, the first
/// mirror failing, its rest over.
async fn after_a_stall() -> (Server, Server, OriginClient) {
    let mut stall = head_only("200 OK", "Content-Length: 64\r\n");
    stall.extend_from_slice(&[3u8; 10]);
    let bad = serve(vec![("chunk/p", Reply::Stall(stall))]);
    let good = serve(vec![("chunk/p", Reply::Raw(ok(&[3u8; 64])))]);
    let c = client(vec![bad.url.clone(), good.url.clone()]);
    let got = c.fetch("chunk/p", Expect::Exactly(64), None, None).await;
    assert!(
        matches!(got, Ok(Fetched::Body { mirror: 1, .. })),
        "{got:?}"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while c.status()[0].backoff_seconds.is_some() {
        assert!(std::time::Instant::now() < deadline, "still resting");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(c.status()[0].state, MirrorState::Failing);
    (bad, good, c)
}

#[tokio::test]
async fn a_failing_mirror_takes_one_probe_while_the_others_go_on() {
    let (bad, good, c) = after_a_stall().await;
    // Three at once: one probes the first mirror (and stalls again), the
    // other two go straight to the second, without waiting for the stall.
    let started = std::time::Instant::now();
    let one = || async {
        let got = c.fetch("chunk/p", Expect::Exactly(64), None, None).await;
        (got, started.elapsed())
    };
    let (a, b, d) = tokio::join!(one(), one(), one());
    let stall = c.config().stall_timeout;
    let mut quick = 0;
    for (got, took) in [a, b, d] {
        assert!(
            matches!(got, Ok(Fetched::Body { mirror: 1, .. })),
            "{got:?}"
        );
        quick += usize::from(took < stall);
    }
    assert_eq!(quick, 2, "only the probe waits for the stall");
    assert_eq!((bad.hits("/chunk/p"), good.hits("/chunk/p")), (2, 4));
}

#[tokio::test]
async fn a_probe_dropped_before_its_answer_ends() {
    let (bad, _good, c) = after_a_stall().await;
    let dropped = tokio::time::timeout(
        Duration::from_millis(50),
        c.fetch("chunk/p", Expect::Exactly(64), None, None),
    )
    .await;
    assert!(dropped.is_err(), "the probe was still waiting: {dropped:?}");
    assert_eq!(bad.hits("/chunk/p"), 2);
    // The next request probes the first mirror again.
    let got = c.fetch("chunk/p", Expect::Exactly(64), None, None).await;
    assert!(
        matches!(got, Ok(Fetched::Body { mirror: 1, .. })),
        "{got:?}"
    );
    assert_eq!(bad.hits("/chunk/p"), 3);
}

#[tokio::test]
async fn a_blamed_mirror_rests() {
    let one = serve(vec![("chunk/v", Reply::Raw(ok(&[3u8; 8])))]);
    let two = serve(vec![("chunk/v", Reply::Raw(ok(&[3u8; 8])))]);
    let c = client(vec![one.url.clone(), two.url.clone()]);
    let got = c.fetch("chunk/v", Expect::Exactly(8), None, None).await;
    assert!(
        matches!(got, Ok(Fetched::Body { mirror: 0, .. })),
        "{got:?}"
    );
    c.blame(0, "chunk failed verification".into());
    let got = c.fetch("chunk/v", Expect::Exactly(8), None, None).await;
    assert!(
        matches!(got, Ok(Fetched::Body { mirror: 1, .. })),
        "{got:?}"
    );
}

#[tokio::test]
async fn an_unchanged_index_is_not_modified() {
    let server = serve(vec![("index/stable", Reply::Etag("\"v1\"", ok(b"index")))]);
    let c = client(vec![server.url.clone()]);
    let first = c
        .fetch("index/stable", Expect::AtMost(100), None, None)
        .await;
    let Ok(Fetched::Body {
        etag: Some(tag),
        mirror,
        ..
    }) = first
    else {
        panic!("{first:?}");
    };
    let again = c
        .fetch(
            "index/stable",
            Expect::AtMost(100),
            Some((mirror, &tag)),
            None,
        )
        .await;
    assert!(
        matches!(again, Ok(Fetched::NotModified { mirror: 0 })),
        "{again:?}"
    );
    // Another mirror's tag is not sent: the whole index comes back.
    let other = c
        .fetch("index/stable", Expect::AtMost(100), Some((1, &tag)), None)
        .await;
    assert!(matches!(other, Ok(Fetched::Body { .. })), "{other:?}");
}

#[tokio::test]
async fn a_missing_object_is_not_found_without_rest() {
    let server = serve(vec![]);
    let c = client(vec![server.url.clone()]);
    let e = c
        .fetch("manifest/none", Expect::AtMost(100), None, None)
        .await;
    assert!(matches!(e, Err(OriginError::NotFound { .. })), "{e:?}");
    assert_eq!(c.status()[0].backoff_seconds, None);
}

#[tokio::test]
async fn an_unreachable_mirror_is_a_connect_error() {
    // A port nobody listens on: bound, then closed.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let url = parse_origin_url(&format!("http://127.0.0.1:{port}/")).expect("url");
    let c = client(vec![url]);
    let e = c.fetch("index/x", Expect::AtMost(100), None, None).await;
    assert!(matches!(e, Err(OriginError::Connect { .. })), "{e:?}");
}

#[test]
fn origin_urls_are_checked() {
    assert!(parse_origin_url("ftp://example.com/").is_err());
    assert!(parse_origin_url("example.com").is_err());
    assert!(parse_origin_url("https://example.com/x?y=1").is_err());
    assert!(parse_origin_url("file:///srv/tree").is_err());
    let url = parse_origin_url("https://cdn.example.com/pollen").expect("valid");
    assert_eq!(url.as_str(), "https://cdn.example.com/pollen/");
    assert_eq!(
        url.join(&pollen_core::origin::index_path("stable"))
            .expect("join")
            .as_str(),
        "https://cdn.example.com/pollen/index/stable"
    );
}
