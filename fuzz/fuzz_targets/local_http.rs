//! Fuzzes the loopback control endpoint's request parsing
//! (`local_http::parse_head`), fed the way the node's `api` feeds it: the
//! bytes received so far, growing.
//!
//! Checked beyond "no panic": the size caps hold; a complete head ends at
//! the first blank line and is found again, unchanged, in every longer
//! prefix and in none shorter; the body is there exactly when all its
//! bytes are; a head the client writes (`request_head`) for the parsed
//! method and path parses back to them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pollen_core::local_http::{parse_head, request_head, RequestError, MAX_REQUEST};

fuzz_target!(|data: &[u8]| {
    let terminator = data.windows(4).position(|w| w == b"\r\n\r\n");
    let head = match parse_head(data) {
        Ok(None) => {
            assert!(data.len() <= MAX_REQUEST && terminator.is_none());
            return;
        }
        Err(RequestError::HeadTooLarge { received, max }) => {
            assert!(received == data.len() && received > max);
            return;
        }
        Err(RequestError::TooLarge {
            head,
            content_length,
            max,
        }) => {
            assert_eq!(Some(head), terminator.map(|t| t + 4));
            assert!(head.saturating_add(content_length) > max);
            return;
        }
        Ok(Some(head)) => head,
        Err(e) => panic!("unknown error {e}"),
    };
    assert_eq!(Some(head.len), terminator.map(|t| t + 4));
    assert!(head.end() <= MAX_REQUEST);
    assert_eq!(parse_head(&data[..head.len]), Ok(Some(head.clone())));
    assert_eq!(parse_head(&data[..head.len - 1]), Ok(None));
    assert_eq!(head.body(data).is_some(), data.len() >= head.end());
    if let Some(body) = head.body(data) {
        assert_eq!(body.len(), head.content_length);
    }
    let plain = |w: &str| !w.is_empty() && w.bytes().all(|b| b.is_ascii_uppercase());
    if plain(&head.method) && !head.path.is_empty() {
        let written = request_head(
            &head.method,
            &head.path,
            "127.0.0.1:4001",
            head.content_length,
        );
        if let Ok(Some(again)) = parse_head(written.as_bytes()) {
            assert_eq!(
                (again.method, again.path, again.content_length),
                (head.method, head.path, head.content_length)
            );
        }
    }
});
