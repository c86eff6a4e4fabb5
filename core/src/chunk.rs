//! Content-defined chunking (FastCDC 2020) and BLAKE3 chunk identifiers.
//!
//! Identical content yields identical chunks wherever it sits in an artifact,
//! so a new release shares every unchanged region with the old one.

use std::fmt;
use std::io::Read;
use std::str::FromStr;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::manifest::ChunkRef;

mod pieces;
mod stream;

pub use pieces::{
    piece_count, piece_hashes, piece_range, Assembly, CheckedPieces, PieceError, PieceHash,
    MAX_PIECES, PIECE_LEN,
};
pub use stream::{Cut, Cuts};

/// BLAKE3 hash of a chunk's bytes: the chunk's name everywhere in Pollen.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ChunkId(pub [u8; 32]);

impl ChunkId {
    /// The id of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }

    /// True when `bytes` hash to this id.
    pub fn matches(&self, bytes: &[u8]) -> bool {
        // blake3::Hash compares in constant time.
        blake3::hash(bytes) == blake3::Hash::from_bytes(self.0)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkId({})", &self.to_hex()[..16])
    }
}

impl FromStr for ChunkId {
    type Err = ChunkError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| ChunkError::BadId(s.to_owned()))?;
        Ok(Self(out))
    }
}

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChunkError {
    #[error("chunk sizes out of range: min {min}, avg {avg}, max {max} (need 64 KiB <= min <= avg <= max <= 16 MiB, all even)")]
    BadParams { min: u32, avg: u32, max: u32 },
    #[error("not a chunk id (64 hex digits): {0:?}")]
    BadId(String),
    #[error("reading the artifact: {0}")]
    Io(#[from] std::io::Error),
}

/// FastCDC size bounds, recorded in the manifest so anyone can re-chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkParams {
    pub min: u32,
    pub avg: u32,
    pub max: u32,
}

impl ChunkParams {
    /// Smallest `min` accepted: keeps per-chunk overhead (ids, requests) small.
    pub const MIN_MIN: u32 = 16 * 1024;
    /// Largest `max` accepted: one chunk must fit comfortably in one message.
    pub const MAX_MAX: u32 = 16 * 1024 * 1024;

    /// Pollen's default: 64 KiB / 256 KiB / 1 MiB.
    pub const DEFAULT: Self = Self {
        min: 64 * 1024,
        avg: 256 * 1024,
        max: 1024 * 1024,
    };

    /// Checks the bounds; the only way to build params from untrusted numbers.
    pub fn new(min: u32, avg: u32, max: u32) -> Result<Self, ChunkError> {
        let ok = Self::MIN_MIN <= min
            && min <= avg
            && avg <= max
            && max <= Self::MAX_MAX
            && min.is_multiple_of(2)
            && avg.is_multiple_of(2)
            && max.is_multiple_of(2)
            && (avg as usize) <= fastcdc::v2020::AVERAGE_MAX
            && (min as usize) <= fastcdc::v2020::MINIMUM_MAX;
        if ok {
            Ok(Self { min, avg, max })
        } else {
            Err(ChunkError::BadParams { min, avg, max })
        }
    }

    /// True when these params pass [`ChunkParams::new`].
    pub fn is_valid(&self) -> bool {
        Self::new(self.min, self.avg, self.max).is_ok()
    }
}

impl Default for ChunkParams {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Bytes known to be the chunk they are named by: BLAKE3 of the bytes is
/// the id. Made once, by checking bytes against an id (and the length a
/// manifest gives) with [`VerifiedChunk::check`] / [`VerifiedChunk::check_id`],
/// or by [`chunks`], which computed the id from the bytes. Whoever holds one
/// need not hash again (a store takes only these). The bytes sit in a
/// reference-counted buffer: cloning or handing them on copies nothing.
/// A chunk of more than one piece that was checked (or arrived in pieces)
/// also keeps its piece hashes, which the check computed on the way: it
/// can be sent in pieces without hashing it again.
#[derive(Clone)]
pub struct VerifiedChunk {
    id: ChunkId,
    bytes: Bytes,
    pieces: Option<std::sync::Arc<[PieceHash]>>,
}

impl PartialEq for VerifiedChunk {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id && self.bytes == other.bytes
    }
}

impl Eq for VerifiedChunk {}

/// Why bytes are not the chunk they were meant to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejected {
    #[error("chunk {id} should be {expected} bytes, got {got}")]
    WrongLength {
        id: ChunkId,
        expected: u32,
        got: usize,
    },
    #[error("chunk {id}: its {got} bytes hash to {actual}")]
    WrongHash {
        id: ChunkId,
        actual: ChunkId,
        got: usize,
    },
}

impl VerifiedChunk {
    /// Checks `bytes` against a manifest's entry: its length first (no
    /// hashing for a wrong-sized answer), then BLAKE3.
    pub fn check(chunk: &ChunkRef, bytes: impl Into<Bytes>) -> Result<Self, Rejected> {
        let bytes = bytes.into();
        if bytes.len() != chunk.len as usize {
            return Err(Rejected::WrongLength {
                id: chunk.id,
                expected: chunk.len,
                got: bytes.len(),
            });
        }
        Self::check_id(chunk.id, bytes)
    }

    /// Checks `bytes` against `id` alone (BLAKE3, once). A chunk of more
    /// than one piece is hashed piece by piece and the pieces' hashes
    /// merged (the same tree, the same cost), and keeps them.
    pub fn check_id(id: ChunkId, bytes: impl Into<Bytes>) -> Result<Self, Rejected> {
        let bytes = bytes.into();
        let (actual, pieces) = match u64::try_from(bytes.len()) {
            Ok(len) if len > u64::from(PIECE_LEN) => {
                let hashes = piece_hashes(&bytes);
                (pieces::root(&hashes, len), Some(hashes.into()))
            }
            _ => (*blake3::hash(&bytes).as_bytes(), None),
        };
        // blake3::Hash compares in constant time.
        if blake3::Hash::from_bytes(actual) == blake3::Hash::from_bytes(id.0) {
            Ok(Self { id, bytes, pieces })
        } else {
            Err(Rejected::WrongHash {
                id,
                actual: ChunkId(actual),
                got: bytes.len(),
            })
        }
    }

    /// Its piece hashes, if it has more than one piece and they were
    /// computed when it was checked (not for a chunk whose id was computed
    /// from its bytes, [`chunks`]).
    pub fn piece_hashes(&self) -> Option<&[PieceHash]> {
        self.pieces.as_deref()
    }

    pub fn id(&self) -> ChunkId {
        self.id
    }

    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The manifest entry for this chunk. `None` only for a chunk over
    /// 4 GiB, which no valid [`ChunkParams`] cuts.
    pub fn chunk_ref(&self) -> Option<ChunkRef> {
        Some(ChunkRef {
            id: self.id,
            len: u32::try_from(self.bytes.len()).ok()?,
        })
    }

    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }
}

impl fmt::Debug for VerifiedChunk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedChunk")
            .field("id", &self.id)
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// An index into a release's list of unique chunks, checked once against
/// the list's length ([`ChunkIndex::new`]); code that takes one need not
/// check it again for that release.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChunkIndex(u32);

impl ChunkIndex {
    /// `index` if it is below `count`.
    pub fn new(index: u32, count: usize) -> Option<Self> {
        ((index as usize) < count).then_some(Self(index))
    }

    pub fn get(self) -> u32 {
        self.0
    }

    pub fn as_usize(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for ChunkIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One chunk cut from an artifact: where it starts, and its bytes with the
/// id computed from them.
#[derive(Clone, PartialEq, Eq)]
pub struct Chunk {
    offset: u64,
    chunk: VerifiedChunk,
}

impl Chunk {
    pub fn id(&self) -> ChunkId {
        self.chunk.id
    }

    pub fn offset(&self) -> u64 {
        self.offset
    }

    pub fn data(&self) -> &[u8] {
        &self.chunk.bytes
    }

    /// The chunk, for a store: its id was computed from these bytes.
    pub fn into_verified(self) -> VerifiedChunk {
        self.chunk
    }
}

impl fmt::Debug for Chunk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chunk")
            .field("id", &self.chunk.id)
            .field("offset", &self.offset)
            .field("len", &self.chunk.bytes.len())
            .finish()
    }
}

/// Cuts `source` into content-defined chunks, streaming, and computes each
/// chunk's id. Memory stays at a few blocks of `max(8 MiB, 2 * params.max)`
/// (plus the chunks the caller still holds), whatever the artifact's size.
pub fn chunks<R: Read>(
    source: R,
    params: ChunkParams,
) -> impl Iterator<Item = Result<Chunk, ChunkError>> {
    cuts(source, params).map(|cut| cut.map(Cut::into_chunk))
}

/// Cuts `source` into content-defined chunks without hashing them (see
/// [`Cut::into_chunk`]): the cut points of [`chunks`], each chunk a
/// zero-copy slice of a large read block. Stops after a read error.
pub fn cuts<R: Read>(source: R, params: ChunkParams) -> Cuts<R> {
    Cuts::new(source, params)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn small() -> ChunkParams {
        ChunkParams::new(16 * 1024, 32 * 1024, 64 * 1024).expect("valid params")
    }

    /// Deterministic bytes that do not compress (also the cutter's tests').
    pub(super) fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(len);
        let mut x = seed | 1;
        while out.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.extend_from_slice(&x.to_le_bytes());
        }
        out.truncate(len);
        out
    }

    fn cut(data: &[u8], p: ChunkParams) -> Vec<Chunk> {
        chunks(data, p)
            .collect::<Result<_, _>>()
            .expect("in-memory read")
    }

    #[test]
    fn rejects_bad_params() {
        assert!(ChunkParams::new(1024, 2048, 4096).is_err());
        assert!(ChunkParams::new(64 * 1024, 32 * 1024, 1 << 20).is_err());
        assert!(ChunkParams::new(64 * 1024, 256 * 1024, 32 << 20).is_err());
        assert!(ChunkParams::DEFAULT.is_valid());
    }

    #[test]
    fn empty_input_has_no_chunks() {
        assert!(cut(&[], small()).is_empty());
    }

    #[test]
    fn local_edit_keeps_distant_chunks() {
        let a = pseudo_random(1 << 20, 7);
        let mut b = a.clone();
        b.splice(100_000..100_000, [1u8, 2, 3]);
        let ia: std::collections::HashSet<_> = cut(&a, small()).iter().map(Chunk::id).collect();
        let cb = cut(&b, small());
        let shared = cb.iter().filter(|c| ia.contains(&c.id())).count();
        assert!(shared + 3 >= cb.len(), "shared {shared} of {}", cb.len());
    }

    #[test]
    fn verified_chunk_takes_only_the_right_bytes() {
        let data = pseudo_random(5000, 3);
        let good = ChunkRef {
            id: ChunkId::of(&data),
            len: 5000,
        };
        let v = VerifiedChunk::check(&good, data.clone()).expect("right bytes");
        assert_eq!(
            (v.id(), v.len(), v.chunk_ref()),
            (good.id, 5000, Some(good))
        );
        assert_eq!(v.bytes().as_ref(), &data[..]);

        let short = VerifiedChunk::check(&good, data[..4999].to_vec());
        assert!(matches!(
            short,
            Err(Rejected::WrongLength {
                expected: 5000,
                got: 4999,
                ..
            })
        ));
        let mut flipped = data.clone();
        flipped[10] ^= 1;
        let actual = ChunkId::of(&flipped);
        assert_eq!(
            VerifiedChunk::check(&good, flipped.clone()),
            Err(Rejected::WrongHash {
                id: good.id,
                actual,
                got: 5000
            })
        );
        assert!(VerifiedChunk::check_id(good.id, flipped).is_err());
        assert!(VerifiedChunk::check_id(good.id, data).is_ok());
    }

    #[test]
    fn chunk_index_is_checked_once() {
        assert_eq!(ChunkIndex::new(3, 4).map(ChunkIndex::get), Some(3));
        assert_eq!(ChunkIndex::new(4, 4), None);
        assert_eq!(ChunkIndex::new(0, 0), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn deterministic_exact_cover_and_bounded(len in 0usize..600_000, seed in any::<u64>()) {
            let p = small();
            let data = pseudo_random(len, seed);
            let first = cut(&data, p);
            let second = cut(&data, p);
            prop_assert_eq!(&first, &second);
            let mut pos = 0u64;
            for (i, c) in first.iter().enumerate() {
                prop_assert_eq!(c.offset(), pos);
                prop_assert!(c.id().matches(c.data()));
                prop_assert!(c.data().len() <= p.max as usize);
                if i + 1 < first.len() {
                    prop_assert!(c.data().len() >= p.min as usize);
                }
                prop_assert_eq!(c.data(), &data[pos as usize..pos as usize + c.data().len()]);
                pos += c.data().len() as u64;
            }
            prop_assert_eq!(pos as usize, data.len());
        }

        #[test]
        fn chunk_id_hex_round_trips(bytes in any::<[u8; 32]>()) {
            let id = ChunkId(bytes);
            prop_assert_eq!(id.to_hex().parse::<ChunkId>().ok(), Some(id));
        }
    }
}
