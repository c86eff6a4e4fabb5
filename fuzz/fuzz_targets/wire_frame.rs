//! Fuzzes the node's stream framing (`wire::frame_len` before reading a
//! body, as `node::net::protocol` does) over a byte stream of frames, on a
//! stream per request or on a session (`node::net::session`).
//!
//! Input: a mode byte (bit 0 clear: requests under `MAX_REQUEST`, set:
//! responses under `MAX_RESPONSE`; bit 1 set: a session, which starts with
//! `wire::SESSION_PREAMBLE` and puts a `wire::TAG`-byte tag before each
//! frame; a request tag with `wire::CANCEL_BIT` set has no frame after it),
//! then frames (4-byte big-endian length, body) until the stream ends. Checked: a session without the preamble is read no further; a
//! length over the cap is refused before the body; every frame that
//! decodes, re-framed with `wire::frame_header`, reads back to the same
//! message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pollen_core::wire::{
    frame_header, frame_len, Request, Response, CANCEL_BIT, FRAME_HEADER, MAX_REQUEST,
    MAX_RESPONSE, SESSION_PREAMBLE, TAG,
};

/// What the front of a stream holds.
enum Next<'a> {
    /// A frame's body, and the rest of the stream.
    Frame(&'a [u8], &'a [u8]),
    /// A length over the cap: the reader stops before the body.
    Refused,
    /// The stream ends inside a header or a body (a failed read).
    End,
}

/// Reads one frame off the front of `stream`, as the node's codec does.
fn read_frame(stream: &[u8], max: usize) -> Next<'_> {
    let Some(Ok(header)) = stream
        .get(..FRAME_HEADER)
        .map(<[u8; FRAME_HEADER]>::try_from)
    else {
        return Next::End;
    };
    let Ok(len) = frame_len(header, max) else {
        assert!(u32::from_be_bytes(header) as usize > max);
        return Next::Refused;
    };
    assert!(len <= max);
    let rest = &stream[FRAME_HEADER..];
    match rest.get(..len) {
        Some(body) => Next::Frame(body, &rest[len..]),
        None => Next::End,
    }
}

/// Reads back a message re-framed by `frame_header`: one whole frame.
fn read_whole(framed: &[u8], max: usize) -> &[u8] {
    match read_frame(framed, max) {
        Next::Frame(body, []) => body,
        _ => panic!("a re-framed message did not read back as one frame"),
    }
}

fn reframe(body: &[u8]) -> Vec<u8> {
    let mut framed = frame_header(body.len()).expect("fits a header").to_vec();
    framed.extend_from_slice(body);
    framed
}

/// A session's stream past its preamble, or `None` if it has none.
fn past_preamble(stream: &[u8]) -> Option<&[u8]> {
    stream.strip_prefix(&SESSION_PREAMBLE[..])
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut stream)) = data.split_first() else {
        return;
    };
    let requests = mode & 1 == 0;
    let session = mode & 2 != 0;
    let max = if requests { MAX_REQUEST } else { MAX_RESPONSE };
    if session {
        match past_preamble(stream) {
            Some(rest) => stream = rest,
            None => return,
        }
    }
    loop {
        if session {
            // Each frame behind its tag; a stream ending inside one ends here.
            let (Some(tag), Some(rest)) = (stream.get(..TAG), stream.get(TAG..)) else {
                return;
            };
            stream = rest;
            let tag = u32::from_be_bytes([tag[0], tag[1], tag[2], tag[3]]);
            if requests && tag & CANCEL_BIT != 0 {
                continue; // A request taken back: the next tag follows.
            }
        }
        let Next::Frame(body, rest) = read_frame(stream, max) else {
            return;
        };
        stream = rest;
        if requests {
            if let Ok(req) = Request::decode(body) {
                let framed = reframe(&req.encode().expect("re-encodes"));
                assert_eq!(Request::decode(read_whole(&framed, max)).as_ref(), Ok(&req));
            }
        } else if let Ok(resp) = Response::decode(body) {
            let framed = reframe(&resp.encode().expect("re-encodes"));
            assert_eq!(
                Response::decode(read_whole(&framed, max)).as_ref(),
                Ok(&resp)
            );
        }
    }
});
