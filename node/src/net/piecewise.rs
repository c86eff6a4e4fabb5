//! Chunk responses in pieces ([`Response::Pieces`]) on the wire: reading
//! one into a [`Partial`](super::partial::Partial) as its pieces land, and
//! writing one from a whole chunk or from a partial still arriving.
//!
//! Reading trusts nothing the peer sends for the arithmetic: the chunk's
//! id and length come from the signed manifest (the request's
//! [`Landing`]); the count of hashes, the hashes and the payload length
//! must agree with them before a byte of the payload is read.

use std::io;
use std::sync::Arc;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use pollen_core::chunk::{piece_hashes, CheckedPieces, PieceHash, MAX_PIECES, PIECE_LEN};
use pollen_core::manifest::{ChunkRef, ManifestId};
use pollen_core::wire::{chunk_header, frame_header, pieces_header, ChunkLen, Response};

use super::partial::{Partial, Partials};
use super::protocol::{count, invalid, read_into, write_frame, Counter, PIECE};

/// Where a chunk asked for lands if it is answered in pieces: the chunk
/// (from the manifest) and the registry it is served from meanwhile.
#[derive(Clone, Debug)]
pub struct Landing {
    pub partials: Partials,
    pub manifest: ManifestId,
    pub index: u32,
    pub chunk: ChunkRef,
}

/// Whether a chunk of `len` bytes goes in pieces to a peer that takes them.
pub fn in_pieces(len: usize) -> bool {
    len > PIECE_LEN as usize
}

/// Reads a varint (as [`ChunkLen`] parses it) one byte at a time, counting.
async fn read_varint<T: AsyncRead + Unpin + Send>(
    io: &mut T,
    read: &mut usize,
    frame: usize,
    progress: Option<&Counter>,
) -> io::Result<usize> {
    let mut parse = ChunkLen::default();
    loop {
        if *read >= frame {
            return Err(invalid("pieces frame ends inside its header"));
        }
        let mut b = [0u8; 1];
        io.read_exact(&mut b).await?;
        *read += 1;
        count(progress, 1);
        if let Some(n) = parse.push(b[0]).map_err(invalid)? {
            return Ok(n);
        }
    }
}

/// Reads the rest of a [`Response::Pieces`] frame of `frame` bytes whose
/// tag is read: its hashes, checked against the chunk `landing` names,
/// then each piece, checked and landed as it comes. Returns the whole
/// chunk as [`Response::Chunk`].
pub(super) async fn read_pieces<T: AsyncRead + Unpin + Send>(
    io: &mut T,
    frame: usize,
    progress: Option<&Counter>,
    landing: Option<&Landing>,
) -> io::Result<Response> {
    let Some(landing) = landing else {
        return Err(invalid("a chunk in pieces that was not asked for"));
    };
    let mut read = 1;
    let n = read_varint(io, &mut read, frame, progress).await?;
    if n > MAX_PIECES || read + 32 * n > frame {
        return Err(invalid("too many piece hashes"));
    }
    let mut hashes = vec![[0u8; 32]; n];
    for h in &mut hashes {
        io.read_exact(h).await?;
        count(progress, 32);
    }
    read += 32 * n;
    let chunk = landing.chunk;
    let pieces = CheckedPieces::new(chunk.id, chunk.len, hashes).map_err(invalid)?;
    let len = read_varint(io, &mut read, frame, progress).await?;
    if len != chunk.len as usize || read.checked_add(len) != Some(frame) {
        return Err(invalid("pieces frame length disagrees with the chunk"));
    }
    let mut filling = landing
        .partials
        .start(landing.manifest, landing.index, pieces);
    while let Some(place) = filling.next_mut() {
        read_into(io, place, progress).await?;
        filling.land().map_err(invalid)?;
    }
    let whole = filling
        .finish()
        .ok_or_else(|| invalid("a chunk in pieces ended early"))?;
    Ok(Response::Chunk(whole.bytes().clone()))
}

/// Writes whole `chunk` as [`Response::Pieces`], with its `hashes` (as
/// its check computed them; computed here if not given).
pub(super) async fn write_whole<T: AsyncWrite + Unpin + Send>(
    io: &mut T,
    prefix: &[u8],
    chunk: &[u8],
    hashes: Option<&[PieceHash]>,
    progress: Option<&Counter>,
) -> io::Result<()> {
    let computed;
    let hashes = match hashes {
        Some(h) => h,
        None => {
            computed = piece_hashes(chunk);
            &computed
        }
    };
    let header = pieces_header(hashes, chunk.len()).ok_or_else(|| invalid("chunk too large"))?;
    write_frame(io, prefix, &[&header, chunk], progress).await
}

/// Writes the chunk arriving in `partial`, each piece as it lands: in
/// pieces if the peer takes them (`pieces`), else whole once it is in.
/// If the partial's sender breaks off before a byte is written, the peer
/// is answered `fallback`, uncounted, and this returns `NotFound`; after,
/// the frame cannot be finished and this fails (`BrokenPipe`), so the
/// stream or session carrying it fails.
pub(super) async fn write_partial<T: AsyncWrite + Unpin + Send>(
    io: &mut T,
    prefix: &[u8],
    partial: &Arc<Partial>,
    pieces: bool,
    fallback: &Response,
    progress: Option<&Counter>,
) -> io::Result<()> {
    let broke = || io::Error::new(io::ErrorKind::BrokenPipe, "the chunk's sender broke off");
    let len = partial.chunk_len() as usize;
    if !pieces {
        let mut whole = Vec::with_capacity(len);
        for i in 0..partial.count() {
            match partial.piece(i).await {
                Some(p) => whole.extend_from_slice(&p),
                None => {
                    let body = fallback.encode().map_err(invalid)?;
                    write_frame(io, prefix, &[&body], None).await?;
                    return Err(io::Error::new(io::ErrorKind::NotFound, broke()));
                }
            }
        }
        let (header, n) = chunk_header(len).ok_or_else(|| invalid("chunk too large"))?;
        return write_frame(io, prefix, &[&header[..n], &whole], progress).await;
    }
    // The first piece before the header: a sender that breaks off at once
    // still leaves the stream usable.
    let Some(first) = partial.piece(0).await else {
        let body = fallback.encode().map_err(invalid)?;
        write_frame(io, prefix, &[&body], None).await?;
        return Err(io::Error::new(io::ErrorKind::NotFound, broke()));
    };
    let header = pieces_header(partial.hashes(), len).ok_or_else(|| invalid("chunk too large"))?;
    let framing = frame_header(header.len() + len).map_err(invalid)?;
    let mut lead = Vec::with_capacity(prefix.len() + framing.len() + header.len());
    lead.extend_from_slice(prefix);
    lead.extend_from_slice(&framing);
    lead.extend_from_slice(&header);
    io.write_all(&lead).await?;
    count(progress, header.len());
    let mut piece = Some(first);
    for i in 0..partial.count() {
        let p = match piece.take() {
            Some(p) => p,
            None => partial.piece(i).await.ok_or_else(broke)?,
        };
        for part in p.chunks(PIECE) {
            io.write_all(part).await?;
            count(progress, part.len());
        }
        // Out now: the next piece may be a while.
        io.flush().await?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "piecewise_tests.rs"]
mod tests;
