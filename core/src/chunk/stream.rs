//! The streaming cutter: reads an artifact in large blocks and cuts FastCDC
//! 2020 chunks as zero-copy slices of them ([`Cut`]), at exactly the cut
//! points of fastcdc's own `StreamCDC`, without its per-chunk copy.
//!
//! A cut depends only on the bytes from the chunk's start up to `max` (or
//! to the end of the artifact), so a cut is taken only once the block holds
//! `max` bytes past the chunk's start or reached the end; the uncut tail
//! (under `max` bytes) is carried into the next block. Blocks no chunk
//! points into any more are reused instead of allocated anew.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read};

use bytes::{Bytes, BytesMut};
use fastcdc::v2020::{select_masks, Normalization};

use super::{Chunk, ChunkError, ChunkId, ChunkParams, VerifiedChunk};

/// Bytes read per block (more when `2 * max` is larger): large reads, few
/// tail copies (a tail is under `max`, copied once per block).
const BLOCK: usize = 8 << 20;

/// Old blocks kept for reuse; with the current one, the most blocks the
/// cutter holds. Chunks handed out may still pin blocks dropped from here.
const SPARE_BLOCKS: usize = 2;

/// A chunk cut from an artifact, before its id is computed: where it starts
/// and its bytes (a slice of the cutter's block; nothing copied).
#[derive(Clone, PartialEq, Eq)]
pub struct Cut {
    offset: u64,
    bytes: Bytes,
}

impl Cut {
    pub fn offset(&self) -> u64 {
        self.offset
    }

    pub fn data(&self) -> &[u8] {
        &self.bytes
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Hashes the bytes (BLAKE3): the chunk with its id. The costly half of
    /// chunking, so a caller can run it on another thread than the cutting.
    pub fn into_chunk(self) -> Chunk {
        Chunk {
            offset: self.offset,
            chunk: VerifiedChunk {
                id: ChunkId::of(&self.bytes),
                bytes: self.bytes,
                pieces: None,
            },
        }
    }
}

impl std::fmt::Debug for Cut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cut")
            .field("offset", &self.offset)
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// Iterator of [`Cut`]s over a reader; see [`super::cuts`]. Stops after the
/// first read error (which it yields).
pub struct Cuts<R> {
    source: R,
    min: usize,
    avg: usize,
    max: usize,
    mask_s: u64,
    mask_l: u64,
    block_len: usize,
    /// The current block, frozen; `block[pos..]` is not cut yet.
    block: Bytes,
    pos: usize,
    /// Artifact offset of `block[pos]`.
    offset: u64,
    eof: bool,
    failed: bool,
    spare: VecDeque<Bytes>,
    /// Blocks allocated so far (the rest were reused).
    allocated: usize,
}

impl<R> std::fmt::Debug for Cuts<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cuts")
            .field("offset", &self.offset)
            .field("buffered", &(self.block.len() - self.pos))
            .field("eof", &self.eof)
            .field("failed", &self.failed)
            .field("allocated", &self.allocated)
            .finish()
    }
}

impl<R: Read> Cuts<R> {
    pub(super) fn new(source: R, params: ChunkParams) -> Self {
        Self::with_block(source, params, BLOCK)
    }

    /// Reads blocks of `block_len` bytes, or `2 * max` if that is more.
    fn with_block(source: R, params: ChunkParams, block_len: usize) -> Self {
        let max = params.max as usize;
        let (mask_s, mask_l) = select_masks(params.avg as usize, Normalization::Level1);
        Self {
            source,
            min: params.min as usize,
            avg: params.avg as usize,
            max,
            mask_s,
            mask_l,
            block_len: block_len.max(2 * max),
            block: Bytes::new(),
            pos: 0,
            offset: 0,
            eof: false,
            failed: false,
            spare: VecDeque::with_capacity(SPARE_BLOCKS + 1),
            allocated: 0,
        }
    }

    /// A block of `block_len` bytes to read into: a spare no chunk points
    /// into any more, or a new one.
    fn take_block(&mut self) -> BytesMut {
        for _ in 0..self.spare.len() {
            let Some(old) = self.spare.pop_front() else {
                break;
            };
            match old.try_into_mut() {
                Ok(block) if block.len() == self.block_len => return block,
                Ok(_) => {}
                Err(pinned) => self.spare.push_back(pinned),
            }
        }
        self.allocated += 1;
        BytesMut::zeroed(self.block_len)
    }

    /// Moves the uncut tail to the front of a fresh block and reads until
    /// the block is full or the source ends.
    fn refill(&mut self) -> std::io::Result<()> {
        let mut next = self.take_block();
        let tail = self.block.len() - self.pos;
        next[..tail].copy_from_slice(&self.block[self.pos..]);
        let mut filled = tail;
        while filled < next.len() {
            match self.source.read(&mut next[filled..]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        next.truncate(filled);
        let old = std::mem::replace(&mut self.block, next.freeze());
        self.pos = 0;
        if !old.is_empty() {
            self.spare.push_back(old);
            if self.spare.len() > SPARE_BLOCKS {
                self.spare.pop_front();
            }
        }
        Ok(())
    }
}

impl<R: Read> Iterator for Cuts<R> {
    type Item = Result<Cut, ChunkError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if self.block.len() - self.pos < self.max && !self.eof {
            if let Err(e) = self.refill() {
                self.failed = true;
                return Some(Err(ChunkError::Io(e)));
            }
        }
        let window = &self.block[self.pos..];
        if window.is_empty() {
            return None;
        }
        let (_, len) = fastcdc::v2020::cut(
            window,
            self.min,
            self.avg,
            self.max,
            self.mask_s,
            self.mask_l,
            self.mask_s << 1,
            self.mask_l << 1,
        );
        // `cut` takes the whole window when it is at most `min` and never
        // returns 0 for a non-empty one; guard anyway: no endless loop.
        if len == 0 {
            return None;
        }
        let bytes = self.block.slice(self.pos..self.pos + len);
        let offset = self.offset;
        self.pos += len;
        self.offset += len as u64;
        Some(Ok(Cut { offset, bytes }))
    }
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
