//! Requests to the node's loopback control endpoint (`GET /status`,
//! `GET /metrics`, `POST /control`): this module owns their parsing — the
//! request head from the bytes received so far, the body's length, the size
//! limits — and the head a client writes. No I/O: the node's `api` reads
//! and writes the socket and calls this.
//!
//! The endpoint speaks a minimal HTTP/1.1: one request per connection, the
//! method and path are the head's first two words, the body is
//! `Content-Length` bytes (none when the header is absent or unreadable),
//! and head and body together stay within [`MAX_REQUEST`].

use std::fmt;

/// Largest request accepted (head and body).
pub const MAX_REQUEST: usize = 72 * 1024;

/// A request's head, complete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    /// The first word of the request line (`GET`); bytes that are not
    /// UTF-8 read as U+FFFD, so they never match a route.
    pub method: String,
    /// The second word (`/status`).
    pub path: String,
    /// Bytes of the head, blank line included: the body starts here.
    pub len: usize,
    /// The body's length from `Content-Length`; 0 when absent or unreadable.
    pub content_length: usize,
}

impl Head {
    /// Bytes of the whole request, head and body (at most [`MAX_REQUEST`]).
    pub fn end(&self) -> usize {
        self.len + self.content_length
    }

    /// The body within the bytes received, once they are all there.
    pub fn body<'a>(&self, received: &'a [u8]) -> Option<&'a [u8]> {
        received.get(self.len..self.end())
    }
}

/// Why a request is refused (the endpoint answers 413).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    #[error("{received} bytes received without a complete request head within the {max}-byte cap")]
    HeadTooLarge { received: usize, max: usize },
    #[error("a {head}-byte head with a {content_length}-byte body is over the {max}-byte cap")]
    TooLarge {
        head: usize,
        content_length: usize,
        max: usize,
    },
}

/// Parses the head of a request from the bytes received so far (call it
/// again as more arrive): `Ok(None)` while the head is incomplete.
///
/// Refuses, before any more is read, more than [`MAX_REQUEST`] bytes
/// without a complete head, and a head whose declared body would take the
/// request past [`MAX_REQUEST`].
pub fn parse_head(received: &[u8]) -> Result<Option<Head>, RequestError> {
    if received.len() > MAX_REQUEST {
        return Err(RequestError::HeadTooLarge {
            received: received.len(),
            max: MAX_REQUEST,
        });
    }
    let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&received[..end]);
    let content_length = text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let len = end + 4;
    if len.saturating_add(content_length) > MAX_REQUEST {
        return Err(RequestError::TooLarge {
            head: len,
            content_length,
            max: MAX_REQUEST,
        });
    }
    let mut words = text.split_whitespace();
    let method = words.next().unwrap_or("").to_owned();
    let path = words.next().unwrap_or("").to_owned();
    Ok(Some(Head {
        method,
        path,
        len,
        content_length,
    }))
}

/// The head a client sends before a body of `body_len` bytes.
pub fn request_head(method: &str, path: &str, host: impl fmt::Display, body_len: usize) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {body_len}\r\nConnection: close\r\n\r\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_the_client_writes() {
        let mut req = request_head("POST", "/control", "127.0.0.1:4001", 5).into_bytes();
        let head_len = req.len();
        req.extend_from_slice(b"bytes");
        for cut in 0..head_len {
            assert_eq!(parse_head(&req[..cut]), Ok(None), "cut at {cut}");
        }
        let head = parse_head(&req).expect("valid").expect("complete");
        assert_eq!(
            head,
            Head {
                method: "POST".into(),
                path: "/control".into(),
                len: head_len,
                content_length: 5,
            }
        );
        assert_eq!(head.body(&req), Some(&b"bytes"[..]));
        assert_eq!(head.body(&req[..req.len() - 1]), None);
    }

    #[test]
    fn content_length_is_found_in_any_case_and_defaults_to_zero() {
        let head = parse_head(b"GET /status HTTP/1.1\r\ncontent-LENGTH : 3\r\n\r\nabc")
            .expect("valid")
            .expect("complete");
        assert_eq!((head.method.as_str(), head.content_length), ("GET", 3));
        for text in [
            &b"GET /metrics HTTP/1.1\r\n\r\n"[..],
            b"GET /metrics HTTP/1.1\r\nContent-Length: -4\r\n\r\n",
            b"GET /metrics HTTP/1.1\r\nContent-Length: lots\r\n\r\n",
        ] {
            let head = parse_head(text).expect("valid").expect("complete");
            assert_eq!((head.path.as_str(), head.content_length), ("/metrics", 0));
        }
        let head = parse_head(b"\xff\xfe /status\r\n\r\n")
            .expect("valid")
            .expect("complete");
        assert_ne!(head.method, "GET");
        let empty = parse_head(b"\r\n\r\n").expect("valid").expect("complete");
        assert_eq!((empty.method.as_str(), empty.path.as_str()), ("", ""));
    }

    #[test]
    fn size_caps_hold() {
        assert!(matches!(
            parse_head(&vec![b'a'; MAX_REQUEST + 1]),
            Err(RequestError::HeadTooLarge { .. })
        ));
        assert_eq!(parse_head(&vec![b'a'; MAX_REQUEST]), Ok(None));
        let head = request_head("POST", "/control", "h", MAX_REQUEST);
        assert!(matches!(
            parse_head(head.as_bytes()),
            Err(RequestError::TooLarge { .. })
        ));
        // The largest body that fits: its five digits make the head 4 bytes longer.
        let body = MAX_REQUEST - request_head("POST", "/control", "h", 0).len() - 4;
        let head = request_head("POST", "/control", "h", body);
        let parsed = parse_head(head.as_bytes())
            .expect("fits")
            .expect("complete");
        assert_eq!(parsed.end(), MAX_REQUEST);
        let head = request_head("POST", "/control", "h", body + 1);
        assert!(parse_head(head.as_bytes()).is_err());
    }

    /// Regression: a `Content-Length` near `usize::MAX` overflowed the
    /// head-plus-body sum (a panic with overflow checks, an out-of-range
    /// slice without).
    #[test]
    fn huge_content_length_is_refused_not_overflowed() {
        let text = format!(
            "POST /control HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            usize::MAX
        );
        assert!(matches!(
            parse_head(text.as_bytes()),
            Err(RequestError::TooLarge { .. })
        ));
    }
}
