//! The `/pollen/3` request-response codec: one length-prefixed postcard
//! frame each way per stream. The length is checked against the cap before
//! a byte of the body is read, so a peer cannot make us buffer more.
//!
//! A request going out may carry a counter the codec advances as the
//! response's bytes arrive, and a response going out one it advances as its
//! bytes are written: the scheduler tells a slow transfer from a stalled
//! one by them, and a server measures the rate it really uploads at.
//!
//! Chunks, which are nearly all the bytes, are framed without copies: a
//! chunk response is written as postcard's header for it followed by the
//! payload straight from its shared buffer, and read by parsing that header
//! and reading the payload straight into the buffer the writer thread then
//! takes. The bytes on the wire are exactly what postcard writes, so peers
//! running the previous codec read and write the same frames. A chunk being
//! read from the store ([`Reply::chunk_when_read`]) is awaited here, in the
//! connection's task, not on the node's event loop.
//!
//! On [`PIECES_STREAM_PROTOCOL`] a chunk of more than one piece is written
//! as [`Response::Pieces`], led by its piece hashes, and a chunk this node
//! is still receiving can be answered from its pieces as they land
//! ([`super::piecewise`]); on `/pollen/3` the same chunk goes whole.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::partial::Partial;
use super::piecewise::{self, in_pieces, Landing};

use bytes::Bytes;
use futures::channel::oneshot;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use pollen_core::chunk::VerifiedChunk;
use pollen_core::wire::{
    chunk_header, frame_header, frame_len, ChunkLen, Request, Response, CHUNK_TAG, FRAME_HEADER,
    MAX_REQUEST, MAX_RESPONSE, PIECES_PROTOCOL, PIECES_TAG, PROTOCOL,
};

/// The protocol as libp2p names it.
pub const STREAM_PROTOCOL: StreamProtocol = StreamProtocol::new(PROTOCOL);
/// The protocol with chunks in pieces, offered first.
pub const PIECES_STREAM_PROTOCOL: StreamProtocol = StreamProtocol::new(PIECES_PROTOCOL);

/// Bytes read or written between two counter updates.
pub(super) const PIECE: usize = 16 * 1024;

/// Bytes moved so far, shared between the codec and the driver.
pub type Counter = Arc<AtomicU64>;

/// What reading a response needs besides its bytes: the counter of the
/// bytes received, and for a chunk where its pieces land.
#[derive(Clone, Debug, Default)]
pub struct Expect {
    pub progress: Option<Counter>,
    pub landing: Option<Landing>,
}

/// A request, and (going out) what reading its response needs.
#[derive(Clone, Debug)]
pub struct Outbound {
    pub request: Request,
    pub expect: Expect,
}

impl From<Request> for Outbound {
    fn from(request: Request) -> Self {
        Self {
            request,
            expect: Expect::default(),
        }
    }
}

/// A chunk being read (and checked) from the store for a response, or
/// `None` if it could not be read (the reader logged why).
pub type ChunkRead = oneshot::Receiver<Option<VerifiedChunk>>;

/// Where the bytes of a chunk response come from when they are not in
/// the [`Reply`] already.
#[derive(Debug)]
pub enum ChunkSource {
    /// Being read from the store.
    Read(ChunkRead),
    /// Still arriving from a peer, in pieces.
    Partial(Arc<Partial>),
}

/// A response, and (going out) the counter of its bytes written.
#[derive(Debug)]
pub struct Reply {
    /// What is written; for a chunk from a [`ChunkSource`], what is
    /// written if the chunk cannot be had.
    pub response: Response,
    pub progress: Option<Counter>,
    /// A chunk still being read or still arriving.
    pub chunk: Option<ChunkSource>,
}

impl Reply {
    /// A chunk response whose bytes come from `read` when the store has
    /// read them. If the read fails the peer is answered `NotFound` and the
    /// codec reports the stream failed (so libp2p reports an inbound
    /// failure, not a response sent): nothing counts as uploaded.
    pub fn chunk_when_read(read: ChunkRead, progress: Counter) -> Self {
        Self {
            response: Response::NotFound,
            progress: Some(progress),
            chunk: Some(ChunkSource::Read(read)),
        }
    }

    /// A chunk response from the pieces of `partial` as they land. If its
    /// sender breaks off before any is written the peer is answered
    /// `NotFound`, as for a failed read; after, the stream fails.
    pub fn chunk_from_partial(partial: Arc<Partial>, progress: Counter) -> Self {
        Self {
            response: Response::NotFound,
            progress: Some(progress),
            chunk: Some(ChunkSource::Partial(partial)),
        }
    }
}

impl From<Response> for Reply {
    fn from(response: Response) -> Self {
        Self {
            response,
            progress: None,
            chunk: None,
        }
    }
}

/// Codec for [`Outbound`] / [`Reply`]. Each stream gets its own clone; the
/// clone that wrote a request keeps its counter for reading the response.
#[derive(Clone, Debug, Default)]
pub struct Codec {
    expect: Expect,
}

pub(super) fn count(progress: Option<&Counter>, n: usize) {
    if let Some(p) = progress {
        p.fetch_add(n as u64, Ordering::Relaxed);
    }
}

async fn read_len<T: AsyncRead + Unpin + Send>(io: &mut T, max: usize) -> io::Result<usize> {
    let mut header = [0u8; FRAME_HEADER];
    io.read_exact(&mut header).await?;
    frame_len(header, max).map_err(invalid)
}

/// Fills `buf` from `io`, a piece at a time, counting.
pub(super) async fn read_into<T: AsyncRead + Unpin + Send>(
    io: &mut T,
    buf: &mut [u8],
    progress: Option<&Counter>,
) -> io::Result<()> {
    for piece in buf.chunks_mut(PIECE) {
        io.read_exact(piece).await?;
        count(progress, piece.len());
    }
    Ok(())
}

pub(super) async fn read_frame<T: AsyncRead + Unpin + Send>(
    io: &mut T,
    max: usize,
    progress: Option<&Counter>,
) -> io::Result<Vec<u8>> {
    let len = read_len(io, max).await?;
    let mut buf = vec![0u8; len];
    read_into(io, &mut buf, progress).await?;
    Ok(buf)
}

/// Reads a response frame, counting its bytes. A chunk's payload goes
/// straight into the buffer that becomes [`Response::Chunk`] (one in
/// pieces, checked piece by piece as it lands where `expect` says);
/// anything else is decoded by postcard.
pub(super) async fn read_response_frame<T: AsyncRead + Unpin + Send>(
    io: &mut T,
    expect: &Expect,
) -> io::Result<Response> {
    let progress = expect.progress.as_ref();
    let len = read_len(io, MAX_RESPONSE).await?;
    if len == 0 {
        return Err(invalid("empty response frame"));
    }
    let mut tag = [0u8; 1];
    io.read_exact(&mut tag).await?;
    count(progress, 1);
    if tag[0] == PIECES_TAG {
        return piecewise::read_pieces(io, len, progress, expect.landing.as_ref()).await;
    }
    if tag[0] != CHUNK_TAG {
        let mut buf = vec![0u8; len];
        buf[0] = tag[0];
        read_into(io, &mut buf[1..], progress).await?;
        return Response::decode(&buf).map_err(invalid);
    }
    let mut parse = ChunkLen::default();
    let mut header = 1;
    let payload = loop {
        if header >= len {
            return Err(invalid("chunk frame ends inside its header"));
        }
        let mut b = [0u8; 1];
        io.read_exact(&mut b).await?;
        header += 1;
        count(progress, 1);
        if let Some(n) = parse.push(b[0]).map_err(invalid)? {
            break n;
        }
    };
    if header.checked_add(payload) != Some(len) {
        return Err(invalid("chunk length disagrees with its frame"));
    }
    let mut buf = vec![0u8; payload];
    read_into(io, &mut buf, progress).await?;
    Ok(Response::Chunk(Bytes::from(buf)))
}

/// Writes one frame made of `parts` (its length, then each part in turn),
/// behind `prefix` (a session's tag; empty on a stream of its own). The
/// stream stays open.
///
/// The prefix, the length and the leading bytes go out in one write of up to
/// [`PIECE`] bytes, the rest in pieces: each write is a yamux frame, a
/// Noise message and (the socket has no Nagle delay) a TCP segment, so a
/// small message is one packet, not a 4-byte length packet and then its
/// body (a notice across a site's uplink costs half the packets).
pub(super) async fn write_frame<T: AsyncWrite + Unpin + Send>(
    io: &mut T,
    prefix: &[u8],
    parts: &[&[u8]],
    progress: Option<&Counter>,
) -> io::Result<()> {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let header = frame_header(total)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    let framing = prefix.len() + header.len();
    let mut first = Vec::with_capacity(PIECE.min(framing + total));
    first.extend_from_slice(prefix);
    first.extend_from_slice(&header);
    let mut rest: Vec<&[u8]> = Vec::with_capacity(parts.len());
    for part in parts {
        let room = PIECE.saturating_sub(first.len());
        if rest.is_empty() && part.len() <= room {
            first.extend_from_slice(part);
        } else if rest.is_empty() {
            let (head, tail) = part.split_at(room);
            first.extend_from_slice(head);
            rest.push(tail);
        } else {
            rest.push(part);
        }
    }
    io.write_all(&first).await?;
    count(progress, first.len() - framing);
    for part in rest {
        for piece in part.chunks(PIECE) {
            io.write_all(piece).await?;
            count(progress, piece.len());
        }
    }
    Ok(())
}

/// Writes `response`; a chunk as header + payload from its own buffer, in
/// pieces if the peer takes them (`pieces`) and it has more than one.
async fn write_response_frame<T: AsyncWrite + Unpin + Send>(
    io: &mut T,
    prefix: &[u8],
    response: &Response,
    pieces: bool,
    progress: Option<&Counter>,
) -> io::Result<()> {
    match response {
        Response::Chunk(bytes) if pieces && in_pieces(bytes.len()) => {
            piecewise::write_whole(io, prefix, bytes, None, progress).await
        }
        Response::Chunk(bytes) => {
            let (header, n) =
                chunk_header(bytes.len()).ok_or_else(|| invalid("chunk too large"))?;
            if n + bytes.len() > MAX_RESPONSE {
                return Err(invalid("chunk over the response cap"));
            }
            write_frame(io, prefix, &[&header[..n], bytes], progress).await
        }
        other => write_frame(io, prefix, &[&other.encode().map_err(invalid)?], progress).await,
    }
}

/// Writes `reply` behind `prefix` (a chunk in pieces if the peer takes
/// them: `pieces`), waiting for its chunk if it is still being read or
/// still arriving. If that read failed the peer is answered with the
/// reply's fallback, uncounted, and this returns `NotFound`: nothing counts
/// as sent (see [`piecewise::write_partial`] for a chunk still arriving).
pub(super) async fn write_reply<T: AsyncWrite + Unpin + Send>(
    io: &mut T,
    prefix: &[u8],
    reply: Reply,
    pieces: bool,
) -> io::Result<()> {
    let progress = reply.progress.as_ref();
    let read = match reply.chunk {
        None => return write_response_frame(io, prefix, &reply.response, pieces, progress).await,
        Some(ChunkSource::Partial(p)) => {
            return piecewise::write_partial(io, prefix, &p, pieces, &reply.response, progress)
                .await
        }
        Some(ChunkSource::Read(read)) => read,
    };
    match read.await {
        // Checked when read: its piece hashes come with it.
        Ok(Some(chunk)) if pieces && in_pieces(chunk.len()) => {
            let hashes = chunk.piece_hashes();
            piecewise::write_whole(io, prefix, chunk.bytes(), hashes, progress).await
        }
        Ok(Some(chunk)) => {
            let response = Response::Chunk(chunk.into_bytes());
            write_response_frame(io, prefix, &response, false, progress).await
        }
        // The read failed (or its reader is gone): the peer hears the
        // fallback answer, uncounted, and the caller that nothing was sent.
        Ok(None) | Err(oneshot::Canceled) => {
            write_response_frame(io, prefix, &reply.response, false, None).await?;
            Err(io::Error::new(
                io::ErrorKind::NotFound,
                "the chunk could not be read from the store",
            ))
        }
    }
}

pub(super) fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

impl libp2p::request_response::Codec for Codec {
    type Protocol = StreamProtocol;
    type Request = Outbound;
    type Response = Reply;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Outbound>
    where
        T: AsyncRead + Unpin + Send,
    {
        let frame = read_frame(io, MAX_REQUEST, None).await?;
        Ok(Request::decode(&frame).map_err(invalid)?.into())
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Reply>
    where
        T: AsyncRead + Unpin + Send,
    {
        Ok(read_response_frame(io, &self.expect).await?.into())
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Outbound,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        self.expect = req.expect;
        write_frame(io, &[], &[&req.request.encode().map_err(invalid)?], None).await?;
        io.close().await
    }

    async fn write_response<T>(
        &mut self,
        protocol: &StreamProtocol,
        io: &mut T,
        res: Reply,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        // A failed read is reported as the stream's failure (an inbound
        // failure, not a response sent).
        write_reply(io, &[], res, *protocol == PIECES_STREAM_PROTOCOL).await?;
        io.close().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::request_response::Codec as _;
    use pollen_core::manifest::ManifestId;

    #[test]
    fn counters_follow_the_bytes_both_ways() {
        futures::executor::block_on(async {
            let sent: Counter = Counter::default();
            let reply = Reply {
                response: Response::Chunk(vec![7; 100_000].into()),
                progress: Some(sent.clone()),
                chunk: None,
            };
            let mut wire = futures::io::Cursor::new(Vec::new());
            let mut server = Codec::default();
            server
                .write_response(&STREAM_PROTOCOL, &mut wire, reply)
                .await
                .expect("write");
            let frame = wire.into_inner();
            assert_eq!(sent.load(Ordering::Relaxed) as usize, frame.len() - 4);

            let got: Counter = Counter::default();
            let mut client = Codec::default();
            let mut sink = futures::io::Cursor::new(Vec::new());
            let ask = Outbound {
                request: Request::GetChunk {
                    manifest: ManifestId([1; 32]),
                    index: 3,
                },
                expect: Expect {
                    progress: Some(got.clone()),
                    landing: None,
                },
            };
            client
                .write_request(&STREAM_PROTOCOL, &mut sink, ask)
                .await
                .expect("write request");
            let mut source = futures::io::Cursor::new(frame);
            let back = client
                .read_response(&STREAM_PROTOCOL, &mut source)
                .await
                .expect("read");
            assert_eq!(back.response, Response::Chunk(vec![7; 100_000].into()));
            assert_eq!(got.load(Ordering::Relaxed), sent.load(Ordering::Relaxed));
        });
    }

    fn write(reply: Reply) -> (io::Result<()>, Vec<u8>) {
        futures::executor::block_on(async {
            let mut wire = futures::io::Cursor::new(Vec::new());
            let r = Codec::default()
                .write_response(&STREAM_PROTOCOL, &mut wire, reply)
                .await;
            (r, wire.into_inner())
        })
    }

    fn read(frame: Vec<u8>) -> io::Result<Response> {
        futures::executor::block_on(async {
            let mut source = futures::io::Cursor::new(frame);
            Codec::default()
                .read_response(&STREAM_PROTOCOL, &mut source)
                .await
                .map(|r| r.response)
        })
    }

    fn postcard_frame(r: &Response) -> Vec<u8> {
        let body = r.encode().expect("encode");
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&body);
        frame
    }

    #[test]
    fn frames_are_what_postcard_writes() {
        for r in [
            Response::Chunk(vec![3; 200_000].into()),
            Response::Chunk(Bytes::new()),
            Response::NotFound,
            Response::Busy { retry_ms: 77 },
            Response::Manifest(vec![1, 2, 3]),
        ] {
            let (ok, frame) = write(r.clone().into());
            ok.expect("written");
            assert_eq!(frame, postcard_frame(&r), "{r:?}");
            assert_eq!(read(frame).expect("read"), r);
        }
    }

    #[test]
    fn a_chunk_read_later_is_written_when_it_comes() {
        let (tx, rx) = oneshot::channel();
        let sent = Counter::default();
        let bytes = vec![5; 70_000];
        let chunk = VerifiedChunk::check_id(pollen_core::chunk::ChunkId::of(&bytes), bytes)
            .expect("its own id");
        tx.send(Some(chunk)).expect("send");
        let (ok, frame) = write(Reply::chunk_when_read(rx, sent.clone()));
        ok.expect("written");
        assert_eq!(sent.load(Ordering::Relaxed) as usize, frame.len() - 4);
        assert_eq!(
            read(frame).expect("read"),
            Response::Chunk(vec![5; 70_000].into())
        );
    }

    #[test]
    fn a_failed_read_answers_not_found_and_fails_the_stream() {
        let (tx, rx) = oneshot::channel();
        let sent = Counter::default();
        tx.send(None).expect("send");
        let (r, frame) = write(Reply::chunk_when_read(rx, sent.clone()));
        assert_eq!(r.expect_err("reported").kind(), io::ErrorKind::NotFound);
        assert_eq!(read(frame).expect("read"), Response::NotFound);
        assert_eq!(
            sent.load(Ordering::Relaxed),
            0,
            "nothing counts as uploaded"
        );

        let (tx, rx) = oneshot::channel::<Option<VerifiedChunk>>();
        drop(tx);
        let (r, frame) = write(Reply::chunk_when_read(rx, Counter::default()));
        assert!(r.is_err());
        assert_eq!(read(frame).expect("read"), Response::NotFound);
    }

    #[test]
    fn malformed_chunk_frames_are_refused() {
        let good = postcard_frame(&Response::Chunk(vec![1; 300].into()));
        // Frame length one more than the chunk header says.
        let mut long = good.clone();
        long.push(0);
        long[..4].copy_from_slice(&((good.len() - 4 + 1) as u32).to_be_bytes());
        assert_eq!(
            read(long).expect_err("refused").kind(),
            io::ErrorKind::InvalidData
        );
        // Frame ends inside the length varint.
        let cut = vec![0, 0, 0, 2, CHUNK_TAG, 0x80];
        assert_eq!(
            read(cut).expect_err("refused").kind(),
            io::ErrorKind::InvalidData
        );
        // Over the cap: refused before reading the body.
        let mut big = ((MAX_RESPONSE + 1) as u32).to_be_bytes().to_vec();
        big.push(CHUNK_TAG);
        assert_eq!(
            read(big).expect_err("refused").kind(),
            io::ErrorKind::InvalidData
        );
        // Truncated payload.
        let mut short = good.clone();
        short.truncate(good.len() - 1);
        assert!(read(short).is_err());
        assert!(read(vec![0, 0, 0, 0]).is_err());
    }
}
