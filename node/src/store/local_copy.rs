//! What a release being written can take from the images already on disk
//! instead of the network: chunks the slot's old release has at the same
//! place ([`same_place`]), and runs of chunks the active slot shares, cloned
//! where the file system shares blocks ([`clone_shared`]).

use std::collections::{HashMap, HashSet};
use std::fs::File;

use pollen_core::chunk::ChunkId;
use pollen_core::manifest::Manifest;

use crate::update::failpoint;

/// Where each chunk of a release sits: id → (length, every offset it
/// occupies; read from the first).
pub(super) type ChunkPlaces = HashMap<ChunkId, (u32, Vec<u64>)>;

/// The places of every chunk of `m`.
pub(super) fn chunk_places(m: &Manifest) -> ChunkPlaces {
    let mut at = ChunkPlaces::new();
    for (offset, c) in m.placed_chunks() {
        at.entry(c.id).or_insert((c.len, Vec::new())).1.push(offset);
    }
    at
}

/// Runs of chunks of `m` (not held) the active image has, as (offset in
/// the target, offset in the active image, length), consecutive chunks
/// merged where both sides are contiguous.
pub(super) fn shared_runs(
    m: &Manifest,
    held: &HashSet<ChunkId>,
    at: &ChunkPlaces,
) -> Vec<(u64, u64, u64)> {
    let mut runs: Vec<(u64, u64, u64)> = Vec::new();
    for (offset, c) in m.placed_chunks() {
        let len = u64::from(c.len);
        let source = at
            .get(&c.id)
            .filter(|(l, _)| *l == c.len && !held.contains(&c.id));
        if let Some((_, offsets)) = source {
            let src = offsets[0];
            match runs.last_mut() {
                Some((d, s, n)) if *d + *n == offset && *s + *n == src => *n += len,
                _ => runs.push((offset, src, len)),
            }
        }
    }
    runs
}

/// File system blocks: clones are made of whole ones.
const BLOCK: u64 = 4096;

/// Copies the block-aligned middle of each run of chunks shared with the
/// active image with `copy_file_range`: on a file system with reflinks
/// (XFS, btrfs) the blocks are shared, no byte is written; elsewhere the
/// kernel copies them. Best effort: the caller's pass (which checks every
/// chunk and the whole artifact) copies whatever this did not. Returns
/// the bytes handed to the kernel.
pub(super) fn clone_shared(
    dst: &File,
    src: &File,
    m: &Manifest,
    held: &HashSet<ChunkId>,
    at: &ChunkPlaces,
) -> u64 {
    let mut done = 0u64;
    for (d, s, n) in shared_runs(m, held, at) {
        // Source and target must sit alike within a block to share blocks.
        if d % BLOCK != s % BLOCK {
            continue;
        }
        let start = d.next_multiple_of(BLOCK);
        let end = (d + n) / BLOCK * BLOCK;
        if end <= start {
            continue;
        }
        failpoint("local-copy");
        let (Ok(mut off_in), Ok(mut off_out)) =
            (i64::try_from(start - d + s), i64::try_from(start))
        else {
            continue;
        };
        let mut left = usize::try_from(end - start).unwrap_or(0);
        while left > 0 {
            match nix::fcntl::copy_file_range(src, Some(&mut off_in), dst, Some(&mut off_out), left)
            {
                Ok(0) | Err(_) => break,
                Ok(k) => {
                    left = left.saturating_sub(k);
                    done += k as u64;
                }
            }
        }
    }
    done
}

/// The chunks of `new` that `old` has at the same offsets (every place
/// `new` has them).
pub(super) fn same_place(old: &Manifest, new: &Manifest) -> HashSet<ChunkId> {
    let at: HashMap<u64, ChunkId> = old.placed_chunks().map(|(o, c)| (o, c.id)).collect();
    let mut places: HashMap<ChunkId, bool> = HashMap::new();
    for (offset, c) in new.placed_chunks() {
        let here = at.get(&offset) == Some(&c.id);
        *places.entry(c.id).or_insert(true) &= here;
    }
    places
        .into_iter()
        .filter_map(|(id, all)| all.then_some(id))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{manifest_for, noise};

    #[test]
    fn chunks_in_place_are_only_those_that_did_not_move() {
        let a = noise(400_000, 1);
        let mut patched = a.clone();
        patched[200_000..200_100].copy_from_slice(&noise(100, 2));
        let (ma, _) = manifest_for(&a);
        let (mp, _) = manifest_for(&patched);
        let same = same_place(&ma, &mp);
        assert!(!same.is_empty() && same.len() < mp.chunks.len());
        // An insertion at the front moves every chunk after it.
        let mut moved = noise(4096, 3);
        moved.extend_from_slice(&a);
        let (mm, _) = manifest_for(&moved);
        assert!(
            same_place(&ma, &mm).len() <= 1,
            "{:?}",
            same_place(&ma, &mm)
        );
    }

    #[test]
    fn shared_runs_merge_what_moved_together_and_skip_held_chunks() {
        let a = noise(400_000, 4);
        let mut moved = noise(4096, 5);
        moved.extend_from_slice(&a);
        let (ma, _) = manifest_for(&a);
        let (mm, _) = manifest_for(&moved);
        let at = chunk_places(&ma);
        let runs = shared_runs(&mm, &HashSet::new(), &at);
        assert_eq!(runs.len(), 1, "{runs:?}");
        let (dst, src, len) = runs[0];
        assert_eq!(dst - src, 4096, "moved by the insertion");
        assert!(len > 300_000, "{len}");
        // A chunk already held splits the run; it is not copied.
        let middle = mm.chunks[mm.chunks.len() / 2].id;
        let held: HashSet<ChunkId> = [middle].into();
        let runs = shared_runs(&mm, &held, &at);
        assert_eq!(runs.len(), 2, "{runs:?}");
    }
}
