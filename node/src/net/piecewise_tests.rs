use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::channel::mpsc;
use futures::{StreamExt, TryStreamExt};
use libp2p::request_response::Codec as _;
use libp2p::StreamProtocol;
use pollen_core::chunk::{piece_range, ChunkId};
use pollen_core::wire::{Request, PIECES_TAG};

use super::*;
use crate::net::protocol::{
    Codec, Expect, Outbound, Reply, PIECES_STREAM_PROTOCOL, STREAM_PROTOCOL,
};

const MANIFEST: ManifestId = ManifestId([4; 32]);

fn chunk(len: usize, seed: u8) -> (Vec<u8>, ChunkRef) {
    let bytes: Vec<u8> = (0..len).map(|i| (i * 31 % 253) as u8 ^ seed).collect();
    let r = ChunkRef {
        id: ChunkId::of(&bytes),
        len: len as u32,
    };
    (bytes, r)
}

fn piece(bytes: &[u8], i: u32) -> &[u8] {
    let r = piece_range(bytes.len() as u32, i).expect("in range");
    &bytes[r.start as usize..r.end as usize]
}

fn landing(partials: &Partials, chunk: ChunkRef) -> Landing {
    Landing {
        partials: partials.clone(),
        manifest: MANIFEST,
        index: 3,
        chunk,
    }
}

/// Writes `reply` as a server on `protocol` would.
async fn serve(protocol: StreamProtocol, reply: Reply) -> (io::Result<()>, Vec<u8>) {
    let mut wire = futures::io::Cursor::new(Vec::new());
    let r = Codec::default()
        .write_response(&protocol, &mut wire, reply)
        .await;
    (r, wire.into_inner())
}

/// Reads `frame` as the answer to a request for `chunk` landing in `partials`.
async fn receive(frame: Vec<u8>, landing: Option<Landing>) -> io::Result<Response> {
    let mut client = Codec::default();
    let ask = Outbound {
        request: Request::GetChunk {
            manifest: MANIFEST,
            index: 3,
        },
        expect: Expect {
            progress: None,
            landing,
        },
    };
    let mut sink = futures::io::Cursor::new(Vec::new());
    client
        .write_request(&PIECES_STREAM_PROTOCOL, &mut sink, ask)
        .await
        .expect("request written");
    let mut source = futures::io::Cursor::new(frame);
    client
        .read_response(&PIECES_STREAM_PROTOCOL, &mut source)
        .await
        .map(|r| r.response)
}

#[tokio::test]
async fn a_large_chunk_goes_in_pieces_only_to_a_peer_that_takes_them() {
    let (bytes, r) = chunk(3 * PIECE_LEN as usize + 5, 1);
    let whole = Response::Chunk(Bytes::from(bytes.clone()));
    // /pollen/4: led by its piece hashes, as postcard writes the message.
    let (ok, frame) = serve(PIECES_STREAM_PROTOCOL, whole.clone().into()).await;
    ok.expect("written");
    assert_eq!(frame[4], PIECES_TAG);
    let message = Response::Pieces {
        hashes: piece_hashes(&bytes),
        chunk: Bytes::from(bytes.clone()),
    };
    assert_eq!(&frame[4..], &message.encode().expect("encode")[..]);
    let (partials, mut reports) = Partials::new();
    let got = receive(frame.clone(), Some(landing(&partials, r))).await;
    assert_eq!(got.expect("read"), whole);
    assert_eq!(reports.next().await, Some((MANIFEST, 3)));
    assert!(
        partials.get(&r).is_some(),
        "whole, served from until stored"
    );
    let checked = partials.whole(&r).expect("checked whole, for the writer");
    assert_eq!(&checked.bytes()[..], &bytes[..]);
    // Nobody asked for it in pieces: refused.
    let err = receive(frame, None).await.expect_err("refused");
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    // /pollen/3: whole, as before.
    let (ok, frame) = serve(STREAM_PROTOCOL, whole.clone().into()).await;
    ok.expect("written");
    assert_eq!(&frame[4..], &whole.encode().expect("encode")[..]);
    // A chunk of one piece goes whole on /pollen/4 too.
    let small = Response::Chunk(vec![9; PIECE_LEN as usize].into());
    let (_, frame) = serve(PIECES_STREAM_PROTOCOL, small.clone().into()).await;
    assert_eq!(&frame[4..], &small.encode().expect("encode")[..]);
}

#[tokio::test]
async fn pieces_that_do_not_match_the_manifest_are_refused_and_leave_nothing() {
    let (bytes, r) = chunk(2 * PIECE_LEN as usize + 1, 2);
    let (ok, frame) = serve(
        PIECES_STREAM_PROTOCOL,
        Response::Chunk(bytes.clone().into()).into(),
    )
    .await;
    ok.expect("written");
    let (partials, mut reports) = Partials::new();
    // Another chunk's id: the hashes do not make it.
    let (_, other) = chunk(r.len as usize, 3);
    let err = receive(frame.clone(), Some(landing(&partials, other)))
        .await
        .expect_err("refused");
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    // A byte of the last piece flipped: the first two land, then refused.
    let mut tampered = frame.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let err = receive(tampered, Some(landing(&partials, r)))
        .await
        .expect_err("refused");
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    assert!(partials.is_empty(), "a broken fill leaves the registry");
    assert_eq!(
        reports.next().await,
        Some((MANIFEST, 3)),
        "its first pieces landed"
    );
    // A hash flipped: refused before any piece.
    let mut bad_hash = frame.clone();
    bad_hash[4 + 2 + 7] ^= 1;
    let err = receive(bad_hash, Some(landing(&partials, r)))
        .await
        .expect_err("refused");
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    // Cut short.
    let err = receive(
        frame[..frame.len() - 10].to_vec(),
        Some(landing(&partials, r)),
    )
    .await
    .expect_err("refused");
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    assert!(partials.is_empty());
    assert_eq!(
        reports.next().await,
        Some((MANIFEST, 3)),
        "its first pieces landed"
    );
    assert!(reports.try_recv().is_err(), "no other first piece landed");
}

/// The writing half of an in-memory pipe whose other half is an
/// `AsyncRead` (`into_async_read` of the receiver).
struct PipeWriter(mpsc::UnboundedSender<io::Result<Vec<u8>>>);

impl futures::AsyncWrite for PipeWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.0.unbounded_send(Ok(buf.to_vec())) {
            Ok(()) => Poll::Ready(Ok(buf.len())),
            Err(_) => Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.close_channel();
        Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn a_chunk_still_arriving_is_passed_on_a_piece_behind_its_sender() {
    let (bytes, r) = chunk(4 * PIECE_LEN as usize + 100, 5);
    let hashes = CheckedPieces::new(r.id, r.len, piece_hashes(&bytes)).expect("own pieces");
    // This node receives the chunk from upstream into its registry...
    let (here, _) = Partials::new();
    let mut upstream = here.start(MANIFEST, 3, hashes);
    let partial = here.get(&r).expect("registered");
    upstream.land_bytes(piece(&bytes, 0)).expect("good piece");
    // ...and a peer asks for it meanwhile.
    let sent = Counter::default();
    let (tx, rx) = mpsc::unbounded();
    let writing = tokio::spawn({
        let reply = Reply::chunk_from_partial(partial, sent.clone());
        async move {
            let mut w = PipeWriter(tx);
            let r = crate::net::protocol::write_reply(&mut w, &[], reply, true).await;
            futures::AsyncWriteExt::close(&mut w).await.expect("close");
            r
        }
    });
    let (there, mut there_reports) = Partials::new();
    let reading = tokio::spawn({
        let landing = landing(&there, r);
        async move {
            let mut source = rx.into_async_read();
            let expect = Expect {
                progress: None,
                landing: Some(landing),
            };
            crate::net::protocol::read_response_frame(&mut source, &expect).await
        }
    });
    // The peer has the first piece, and can pass it on, while this node
    // still has only one of five.
    assert_eq!(there_reports.next().await, Some((MANIFEST, 3)));
    assert!(!upstream.is_complete());
    for i in 1..5 {
        upstream.land_bytes(piece(&bytes, i)).expect("good piece");
    }
    writing.await.expect("joined").expect("written");
    let got = reading.await.expect("joined").expect("read");
    assert_eq!(got, Response::Chunk(bytes.clone().into()));
    let framing = pieces_header(&piece_hashes(&bytes), bytes.len()).expect("fits");
    assert_eq!(
        sent.load(std::sync::atomic::Ordering::Relaxed) as usize,
        framing.len() + bytes.len()
    );
}

#[tokio::test]
async fn a_sender_that_breaks_off_fails_the_response_that_was_passing_it_on() {
    let (bytes, r) = chunk(2 * PIECE_LEN as usize + 100, 6);
    let hashes = || CheckedPieces::new(r.id, r.len, piece_hashes(&bytes)).expect("own pieces");
    // Broken off before its first piece: the peer hears NotFound, a whole
    // frame, and nothing counts as sent.
    let (here, _) = Partials::new();
    let upstream = here.start(MANIFEST, 3, hashes());
    let partial = here.get(&r).expect("registered");
    drop(upstream);
    let sent = Counter::default();
    let (result, frame) = serve(
        PIECES_STREAM_PROTOCOL,
        Reply::chunk_from_partial(partial, sent.clone()),
    )
    .await;
    assert_eq!(result.expect_err("failed").kind(), io::ErrorKind::NotFound);
    assert_eq!(
        Response::decode(&frame[4..]).expect("whole frame"),
        Response::NotFound
    );
    assert_eq!(sent.load(std::sync::atomic::Ordering::Relaxed), 0);
    // Broken off after its first piece went out: the frame cannot be
    // finished, so the response fails.
    let mut upstream = here.start(MANIFEST, 3, hashes());
    let partial = here.get(&r).expect("registered");
    upstream.land_bytes(piece(&bytes, 0)).expect("good piece");
    let writing = tokio::spawn(serve(
        PIECES_STREAM_PROTOCOL,
        Reply::chunk_from_partial(partial, Counter::default()),
    ));
    drop(upstream);
    let (result, frame) = writing.await.expect("joined");
    assert_eq!(
        result.expect_err("failed").kind(),
        io::ErrorKind::BrokenPipe
    );
    let (there, _) = Partials::new();
    assert!(receive(frame, Some(landing(&there, r))).await.is_err());
    assert!(there.is_empty());
}

#[tokio::test]
async fn a_peer_without_pieces_gets_a_chunk_still_arriving_whole_once_it_is_in() {
    let (bytes, r) = chunk(3 * PIECE_LEN as usize, 7);
    let hashes = CheckedPieces::new(r.id, r.len, piece_hashes(&bytes)).expect("own pieces");
    let (here, _) = Partials::new();
    let mut upstream = here.start(MANIFEST, 3, hashes);
    let partial = here.get(&r).expect("registered");
    let writing = tokio::spawn(serve(
        STREAM_PROTOCOL,
        Reply::chunk_from_partial(partial, Counter::default()),
    ));
    for i in 0..3 {
        upstream.land_bytes(piece(&bytes, i)).expect("good piece");
    }
    let (result, frame) = writing.await.expect("joined");
    result.expect("written");
    let whole = Response::Chunk(bytes.into());
    assert_eq!(&frame[4..], &whole.encode().expect("encode")[..]);
}
