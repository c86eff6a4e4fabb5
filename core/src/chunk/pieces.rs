//! A chunk's pieces: its consecutive [`PIECE_LEN`] parts (the last one
//! shorter). Each is a whole subtree of the chunk's BLAKE3 tree, so the
//! pieces' chaining values ("piece hashes", 32 bytes each) can be checked
//! once against the chunk id, and then every piece on its own as it lands.
//! This is what lets a site pass a large chunk on piece by piece instead
//! of after its last byte (DESIGN.md §10, "Release day with 1 MiB chunks").
//!
//! Only the lengths known from the signed manifest decide where pieces
//! start; nothing a peer sends does, so a peer cannot steer the tree
//! arithmetic (blake3's `hazmat` functions assert on misuse).

use blake3::hazmat::{self, ChainingValue, HasherExt, Mode};

use super::{ChunkId, VerifiedChunk};

/// Bytes per piece: a power of two times BLAKE3's 1 KiB chunk, so every
/// piece of a longer chunk is one subtree of its tree. 64 KiB: in the
/// simulator's slowest release-day corner 1 MiB chunks passed on in
/// 64 KiB pieces finished within 1.47 × the bound, in 256 KiB pieces 1.57
/// (simulator/README.md, "Passing chunks on in pieces"); a 1 MiB chunk's
/// 16 piece hashes are 512 bytes.
pub const PIECE_LEN: u32 = 64 * 1024;
/// Most pieces a chunk can have (the largest chunk, 16 MiB).
pub const MAX_PIECES: usize = (crate::chunk::ChunkParams::MAX_MAX / PIECE_LEN) as usize;

/// A piece's chaining value.
pub type PieceHash = ChainingValue;

/// Errors of this module.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum PieceError {
    #[error("{got} piece hashes for a chunk of {len} bytes, which has {want}")]
    Count { len: u32, want: u32, got: usize },
    #[error("the piece hashes do not hash to the chunk's id")]
    Root,
    #[error("a chunk of {len} bytes has no piece {index}")]
    NoPiece { len: u32, index: u32 },
    #[error("piece {index} is {got} bytes, expected {want}")]
    Length { index: u32, want: u32, got: usize },
    #[error("piece {index} does not match its hash")]
    Mismatch { index: u32 },
}

/// How many pieces a chunk of `len` bytes has (at least one).
pub fn piece_count(len: u32) -> u32 {
    len.div_ceil(PIECE_LEN).max(1)
}

/// Where piece `index` of a chunk of `len` bytes lies in it.
pub fn piece_range(len: u32, index: u32) -> Option<std::ops::Range<u32>> {
    (index < piece_count(len)).then(|| {
        let start = index * PIECE_LEN;
        start..len.min(start.saturating_add(PIECE_LEN))
    })
}

/// The piece hashes of `chunk`: empty for a chunk of one piece, which its
/// id checks whole.
pub fn piece_hashes(chunk: &[u8]) -> Vec<PieceHash> {
    if chunk.len() <= PIECE_LEN as usize {
        return Vec::new();
    }
    chunk
        .chunks(PIECE_LEN as usize)
        .enumerate()
        .map(|(i, piece)| piece_hash(i as u64 * u64::from(PIECE_LEN), piece))
        .collect()
}

fn piece_hash(offset: u64, piece: &[u8]) -> PieceHash {
    let mut hasher = blake3::Hasher::new();
    hasher.set_input_offset(offset);
    hasher.update(piece);
    hasher.finalize_non_root()
}

/// The chaining value of the subtree over `hashes` (consecutive pieces
/// covering `len` bytes; more than one piece).
fn merge(hashes: &[PieceHash], len: u64, root: bool) -> ChainingValue {
    let left_len = hazmat::left_subtree_len(len);
    let split = (left_len / u64::from(PIECE_LEN)) as usize;
    let side = |part: &[PieceHash], len: u64| {
        if part.len() == 1 {
            part[0]
        } else {
            merge(part, len, false)
        }
    };
    let left = side(&hashes[..split], left_len);
    let right = side(&hashes[split..], len - left_len);
    if root {
        *hazmat::merge_subtrees_root(&left, &right, Mode::Hash).as_bytes()
    } else {
        hazmat::merge_subtrees_non_root(&left, &right, Mode::Hash)
    }
}

/// The id of a chunk of `len` bytes (more than one piece) whose pieces
/// hash to `hashes`: BLAKE3 of the chunk, from its pieces.
pub(super) fn root(hashes: &[PieceHash], len: u64) -> ChainingValue {
    merge(hashes, len, true)
}

/// A chunk's piece hashes, checked against its id: the only way to check
/// a piece.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedPieces {
    id: ChunkId,
    len: u32,
    hashes: Vec<PieceHash>,
}

impl CheckedPieces {
    /// Checks `hashes` (as [`piece_hashes`] gives them) for the chunk `id`
    /// of `len` bytes.
    pub fn new(id: ChunkId, len: u32, hashes: Vec<PieceHash>) -> Result<Self, PieceError> {
        let want = piece_count(len);
        let expected = if want == 1 { 0 } else { want as usize };
        if hashes.len() != expected {
            return Err(PieceError::Count {
                len,
                want,
                got: hashes.len(),
            });
        }
        if want > 1 && merge(&hashes, u64::from(len), true) != id.0 {
            return Err(PieceError::Root);
        }
        Ok(Self { id, len, hashes })
    }

    pub fn count(&self) -> u32 {
        piece_count(self.len)
    }

    /// The chunk these pieces make up.
    pub fn id(&self) -> ChunkId {
        self.id
    }

    /// The chunk's length.
    pub fn chunk_len(&self) -> u32 {
        self.len
    }

    /// The piece hashes, as checked (empty for a chunk of one piece).
    pub fn hashes(&self) -> &[PieceHash] {
        &self.hashes
    }

    /// Checks `bytes` as piece `index`.
    pub fn check(&self, index: u32, bytes: &[u8]) -> Result<(), PieceError> {
        let range = piece_range(self.len, index).ok_or(PieceError::NoPiece {
            len: self.len,
            index,
        })?;
        if bytes.len() != range.len() {
            return Err(PieceError::Length {
                index,
                want: range.len() as u32,
                got: bytes.len(),
            });
        }
        let ok = match self.hashes.get(index as usize) {
            // One piece: the chunk itself.
            None => self.id.matches(bytes),
            Some(hash) => {
                let got = piece_hash(u64::from(range.start), bytes);
                // Compared as blake3 hashes: in constant time.
                blake3::Hash::from_bytes(got) == blake3::Hash::from_bytes(*hash)
            }
        };
        ok.then_some(()).ok_or(PieceError::Mismatch { index })
    }
}

/// A chunk checked piece by piece as its bytes land, in order, in a
/// buffer this owns: once every piece is checked it is a
/// [`VerifiedChunk`] without hashing it again (each piece matched a hash
/// that was checked against the chunk's id). Only the next piece's place
/// can be written, and only until it is checked, so what was checked is
/// what it hands over.
#[derive(Debug)]
pub struct Assembly {
    pieces: CheckedPieces,
    buf: Vec<u8>,
    checked: u32,
}

impl Assembly {
    pub fn new(pieces: CheckedPieces) -> Self {
        let buf = vec![0; pieces.len as usize];
        Self {
            pieces,
            buf,
            checked: 0,
        }
    }

    /// The piece hashes it checks against.
    pub fn pieces(&self) -> &CheckedPieces {
        &self.pieces
    }

    /// The place of the next piece, to fill; `None` once all are checked.
    pub fn next_mut(&mut self) -> Option<&mut [u8]> {
        let r = piece_range(self.pieces.len, self.checked).filter(|_| !self.is_complete())?;
        Some(&mut self.buf[r.start as usize..r.end as usize])
    }

    /// Checks the next piece as filled; its bytes if they match.
    pub fn check_next(&mut self) -> Result<&[u8], PieceError> {
        let index = self.checked;
        let r = piece_range(self.pieces.len, index)
            .filter(|_| !self.is_complete())
            .ok_or(PieceError::NoPiece {
                len: self.pieces.len,
                index,
            })?;
        let piece = &self.buf[r.start as usize..r.end as usize];
        self.pieces.check(index, piece)?;
        self.checked += 1;
        Ok(piece)
    }

    /// Whether every piece is checked.
    pub fn is_complete(&self) -> bool {
        self.checked == self.pieces.count()
    }

    /// The whole chunk, once every piece is checked (else `None`).
    pub fn finish(self) -> Option<VerifiedChunk> {
        if !self.is_complete() {
            return None;
        }
        let hashes = (!self.pieces.hashes.is_empty()).then(|| self.pieces.hashes.into());
        Some(VerifiedChunk {
            id: self.pieces.id,
            bytes: self.buf.into(),
            pieces: hashes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::{RngCore, SeedableRng};

    fn bytes(len: usize, seed: u64) -> Vec<u8> {
        let mut out = vec![0; len];
        rand_chacha::ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut out);
        out
    }

    const K: usize = 1024;
    /// Around every boundary that changes the tree's shape: one piece,
    /// two, a short last piece, a power of two, and past one.
    const LENS: [usize; 15] = [
        0,
        1,
        K,
        64 * K - 1,
        64 * K,
        64 * K + 1,
        256 * K - 1,
        256 * K,
        256 * K + 1,
        512 * K,
        600 * K + 7,
        768 * K,
        1024 * K,
        1024 * K + 1,
        1300 * K,
    ];

    #[test]
    fn piece_hashes_make_the_chunk_id_and_check_each_piece() {
        for (n, &len) in LENS.iter().enumerate() {
            let chunk = bytes(len, n as u64);
            let id = ChunkId::of(&chunk);
            let hashes = piece_hashes(&chunk);
            let pieces = CheckedPieces::new(id, len as u32, hashes).expect("the id's own pieces");
            assert_eq!(
                pieces.count() as usize,
                len.div_ceil(PIECE_LEN as usize).max(1)
            );
            for i in 0..pieces.count() {
                let r = piece_range(len as u32, i).expect("in range");
                let piece = &chunk[r.start as usize..r.end as usize];
                assert_eq!(pieces.check(i, piece), Ok(()), "len {len}, piece {i}");
                if !piece.is_empty() {
                    let mut bad = piece.to_vec();
                    bad[piece.len() / 2] ^= 1;
                    assert_eq!(
                        pieces.check(i, &bad),
                        Err(PieceError::Mismatch { index: i })
                    );
                }
            }
            assert!(matches!(
                pieces.check(pieces.count(), &[]),
                Err(PieceError::NoPiece { .. })
            ));
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
        #[test]
        fn any_length_checks(len in 0usize..1600 * K, seed: u64) {
            let chunk = bytes(len, seed);
            let pieces = CheckedPieces::new(ChunkId::of(&chunk), len as u32, piece_hashes(&chunk));
            let pieces = pieces.expect("the chunk's own piece hashes");
            for i in 0..pieces.count() {
                let r = piece_range(len as u32, i).expect("in range");
                proptest::prop_assert!(pieces.check(i, &chunk[r.start as usize..r.end as usize]).is_ok());
            }
        }
    }

    #[test]
    fn an_assembly_hands_over_only_what_it_checked_whole() {
        let len = 3 * PIECE_LEN as usize + 9;
        let chunk = bytes(len, 5);
        let id = ChunkId::of(&chunk);
        let pieces = || CheckedPieces::new(id, len as u32, piece_hashes(&chunk)).expect("own");
        let mut a = Assembly::new(pieces());
        let mut i = 0;
        while let Some(place) = a.next_mut() {
            let r = piece_range(len as u32, i).expect("in range");
            place.copy_from_slice(&chunk[r.start as usize..r.end as usize]);
            assert_eq!(
                a.check_next().expect("good"),
                &chunk[r.start as usize..r.end as usize]
            );
            i += 1;
        }
        assert_eq!(i, 4);
        assert!(matches!(a.check_next(), Err(PieceError::NoPiece { .. })));
        let whole = a.finish().expect("complete");
        assert_eq!(whole.id(), id);
        assert_eq!(whole.piece_hashes(), Some(&piece_hashes(&chunk)[..]));
        assert_eq!(&whole.bytes()[..], &chunk[..]);
        // A bad piece is not counted checked; nothing is handed over early.
        let mut a = Assembly::new(pieces());
        a.next_mut().expect("first").fill(7);
        assert_eq!(a.check_next(), Err(PieceError::Mismatch { index: 0 }));
        let first = &chunk[..PIECE_LEN as usize];
        a.next_mut()
            .expect("still the first")
            .copy_from_slice(first);
        a.check_next().expect("good now");
        assert!(a.finish().is_none(), "three pieces unchecked");
    }

    #[test]
    fn a_check_by_pieces_agrees_with_blake3_and_keeps_the_hashes() {
        for (n, &len) in LENS.iter().enumerate() {
            let chunk = bytes(len, 40 + n as u64);
            let id = ChunkId::of(&chunk);
            let v = VerifiedChunk::check_id(id, chunk.clone()).expect("its own id");
            let many = len > PIECE_LEN as usize;
            assert_eq!(v.piece_hashes().is_some(), many, "len {len}");
            if many {
                assert_eq!(v.piece_hashes(), Some(&piece_hashes(&chunk)[..]));
            }
            if len > 0 {
                let mut bad = chunk.clone();
                bad[len - 1] ^= 1;
                let actual = ChunkId::of(&bad);
                assert_eq!(
                    VerifiedChunk::check_id(id, bad).expect_err("not the chunk"),
                    crate::chunk::Rejected::WrongHash {
                        id,
                        actual,
                        got: len
                    }
                );
            }
        }
    }

    #[test]
    fn pieces_cover_the_chunk_in_order() {
        for &len in &LENS {
            let len = len as u32;
            let ranges: Vec<_> = (0..piece_count(len))
                .map(|i| piece_range(len, i).expect("in range"))
                .collect();
            assert_eq!(ranges.first().map(|r| r.start), Some(0));
            assert_eq!(ranges.last().map(|r| r.end), Some(len));
            assert!(ranges.windows(2).all(|w| w[0].end == w[1].start));
            assert!(ranges.iter().all(|r| r.len() <= PIECE_LEN as usize));
        }
    }

    #[test]
    fn wrong_piece_hashes_are_refused() {
        let len = 1024 * K + 1;
        let chunk = bytes(len, 99);
        let id = ChunkId::of(&chunk);
        let hashes = piece_hashes(&chunk);
        assert_eq!(hashes.len(), 17);
        for i in 0..hashes.len() {
            let mut bad = hashes.clone();
            bad[i][0] ^= 1;
            assert_eq!(
                CheckedPieces::new(id, len as u32, bad),
                Err(PieceError::Root)
            );
        }
        let mut swapped = hashes.clone();
        swapped.swap(0, 1);
        assert_eq!(
            CheckedPieces::new(id, len as u32, swapped),
            Err(PieceError::Root)
        );
        assert!(matches!(
            CheckedPieces::new(id, len as u32, hashes[..16].to_vec()),
            Err(PieceError::Count {
                want: 17,
                got: 16,
                ..
            })
        ));
        assert_eq!(
            CheckedPieces::new(ChunkId::of(b"another"), len as u32, hashes.clone()),
            Err(PieceError::Root)
        );
        let short = CheckedPieces::new(id, len as u32, hashes).expect("valid");
        assert!(matches!(
            short.check(16, &chunk[..2]),
            Err(PieceError::Length {
                index: 16,
                want: 1,
                got: 2
            })
        ));
        // A one-piece chunk takes no piece hashes: its id checks it whole.
        let small = bytes(100, 1);
        assert!(matches!(
            CheckedPieces::new(ChunkId::of(&small), 100, vec![[0; 32]]),
            Err(PieceError::Count {
                want: 1,
                got: 1,
                ..
            })
        ));
    }
}
