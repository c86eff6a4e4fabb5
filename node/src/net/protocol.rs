//! The `/pollen/2` request-response codec: one length-prefixed postcard
//! frame each way per stream. The length is checked against the cap before
//! a byte of the body is read, so a peer cannot make us buffer more.
//!
//! A request going out may carry a counter the codec advances as the
//! response's bytes arrive, and a response going out one it advances as its
//! bytes are written: the scheduler tells a slow transfer from a stalled
//! one by them, and a server measures the rate it really uploads at.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use pollen_core::wire::{
    frame_header, frame_len, Request, Response, FRAME_HEADER, MAX_REQUEST, MAX_RESPONSE, PROTOCOL,
};

/// The protocol as libp2p names it.
pub const STREAM_PROTOCOL: StreamProtocol = StreamProtocol::new(PROTOCOL);

/// Bytes read or written between two counter updates.
const PIECE: usize = 16 * 1024;

/// Bytes moved so far, shared between the codec and the driver.
pub type Counter = Arc<AtomicU64>;

/// A request, and (going out) the counter of its response's bytes received.
#[derive(Clone, Debug)]
pub struct Outbound {
    pub request: Request,
    pub progress: Option<Counter>,
}

impl From<Request> for Outbound {
    fn from(request: Request) -> Self {
        Self {
            request,
            progress: None,
        }
    }
}

/// A response, and (going out) the counter of its bytes written.
#[derive(Clone, Debug)]
pub struct Reply {
    pub response: Response,
    pub progress: Option<Counter>,
}

impl From<Response> for Reply {
    fn from(response: Response) -> Self {
        Self {
            response,
            progress: None,
        }
    }
}

/// Codec for [`Outbound`] / [`Reply`]. Each stream gets its own clone; the
/// clone that wrote a request keeps its counter for reading the response.
#[derive(Clone, Debug, Default)]
pub struct Codec {
    progress: Option<Counter>,
}

async fn read_frame<T: AsyncRead + Unpin + Send>(
    io: &mut T,
    max: usize,
    progress: Option<&Counter>,
) -> io::Result<Vec<u8>> {
    let mut header = [0u8; FRAME_HEADER];
    io.read_exact(&mut header).await?;
    let len = frame_len(header, max).map_err(invalid)?;
    let mut buf = vec![0u8; len];
    for piece in buf.chunks_mut(PIECE) {
        io.read_exact(piece).await?;
        if let Some(p) = progress {
            p.fetch_add(piece.len() as u64, Ordering::Relaxed);
        }
    }
    Ok(buf)
}

async fn write_frame<T: AsyncWrite + Unpin + Send>(
    io: &mut T,
    bytes: &[u8],
    progress: Option<&Counter>,
) -> io::Result<()> {
    let header = frame_header(bytes.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    io.write_all(&header).await?;
    for piece in bytes.chunks(PIECE) {
        io.write_all(piece).await?;
        if let Some(p) = progress {
            p.fetch_add(piece.len() as u64, Ordering::Relaxed);
        }
    }
    io.close().await
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
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
        let frame = read_frame(io, MAX_RESPONSE, self.progress.as_ref()).await?;
        Ok(Response::decode(&frame).map_err(invalid)?.into())
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
        self.progress = req.progress;
        write_frame(io, &req.request.encode().map_err(invalid)?, None).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Reply,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let bytes = res.response.encode().map_err(invalid)?;
        write_frame(io, &bytes, res.progress.as_ref()).await
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
                response: Response::Chunk(vec![7; 100_000]),
                progress: Some(sent.clone()),
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
                progress: Some(got.clone()),
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
            assert_eq!(back.response, Response::Chunk(vec![7; 100_000]));
            assert_eq!(got.load(Ordering::Relaxed), sent.load(Ordering::Relaxed));
        });
    }
}
