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

use super::ChunkId;

/// Bytes per piece: a power of two times BLAKE3's 1 KiB chunk, so every
/// piece of a longer chunk is one subtree of its tree.
pub const PIECE_LEN: u32 = 256 * 1024;

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
    const LENS: [usize; 12] = [
        0,
        1,
        K,
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
            assert_eq!(pieces.count() as usize, len.div_ceil(256 * K).max(1));
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
        assert_eq!(hashes.len(), 5);
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
            CheckedPieces::new(id, len as u32, hashes[..4].to_vec()),
            Err(PieceError::Count {
                want: 5,
                got: 4,
                ..
            })
        ));
        assert_eq!(
            CheckedPieces::new(ChunkId::of(b"another"), len as u32, hashes.clone()),
            Err(PieceError::Root)
        );
        let short = CheckedPieces::new(id, len as u32, hashes).expect("valid");
        assert!(matches!(
            short.check(4, &chunk[..2]),
            Err(PieceError::Length {
                index: 4,
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
