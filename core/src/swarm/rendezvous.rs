//! Rendezvous (highest-random-weight) hashing: which site member fetches a
//! chunk across the uplink. Every member computes the same answer from the
//! same membership, and a member leaving moves only its own chunks.
//!
//! A member's key is derived once from its identity with BLAKE3; a chunk's
//! is the first eight bytes of its id (itself a BLAKE3 hash). The weight of
//! a (chunk, member) pair is a 64-bit finaliser over the two keys, so the
//! split of a 1 024-chunk release over a 100-device site is 10⁵ cheap
//! mixes, not 10⁵ hashes.

use crate::chunk::ChunkId;

/// A peer identity the scheduler can hash.
pub trait PeerKey: Copy + Ord + std::hash::Hash + std::fmt::Debug {
    /// Stable bytes naming the peer (the same on every node).
    fn key_bytes(&self) -> Vec<u8>;
}

impl PeerKey for u32 {
    fn key_bytes(&self) -> Vec<u8> {
        self.to_le_bytes().to_vec()
    }
}

impl PeerKey for u64 {
    fn key_bytes(&self) -> Vec<u8> {
        self.to_le_bytes().to_vec()
    }
}

/// A member's rendezvous key.
pub fn member_key<P: PeerKey>(member: &P) -> u64 {
    let h = blake3::derive_key("pollen rendezvous v2", &member.key_bytes());
    let mut k = [0u8; 8];
    k.copy_from_slice(&h[..8]);
    u64::from_le_bytes(k)
}

/// A chunk's rendezvous key.
pub fn chunk_key(chunk: &ChunkId) -> u64 {
    let mut k = [0u8; 8];
    k.copy_from_slice(&chunk.0[..8]);
    u64::from_le_bytes(k)
}

/// The weight of a member for a chunk (splitmix64's finaliser).
pub fn weight(chunk: u64, member: u64) -> u64 {
    let mut x = chunk ^ member;
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Among `members` (`(member, member_key)`), the one with the highest
/// weight for the chunk with key `chunk`: its position (ties by key).
pub fn pick(chunk: u64, members: &[(impl Copy, u64)]) -> Option<usize> {
    members
        .iter()
        .enumerate()
        .max_by_key(|(_, (_, key))| (weight(chunk, *key), *key))
        .map(|(i, _)| i)
}

/// The member with the highest weight for `chunk`.
pub fn assignee<'a, P: PeerKey + 'a>(
    chunk: &ChunkId,
    members: impl IntoIterator<Item = &'a P>,
) -> Option<P> {
    let keyed: Vec<(P, u64)> = members.into_iter().map(|p| (*p, member_key(p))).collect();
    pick(chunk_key(chunk), &keyed).map(|i| keyed[i].0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_evenly_and_moves_little() {
        let members: Vec<u32> = (0..8).collect();
        let chunks: Vec<ChunkId> = (0..4000u32)
            .map(|i| ChunkId::of(&i.to_le_bytes()))
            .collect();
        let mut counts = [0usize; 8];
        for c in &chunks {
            counts[assignee(c, &members).expect("members") as usize] += 1;
        }
        assert!(
            counts.iter().all(|&n| (350..650).contains(&n)),
            "{counts:?}"
        );
        let fewer: Vec<u32> = (0..7).collect();
        let moved = chunks
            .iter()
            .filter(|c| {
                assignee(c, &members) != assignee(c, &fewer) && assignee(c, &members) != Some(7)
            })
            .count();
        assert_eq!(moved, 0, "only the leaving member's chunks move");
    }

    #[test]
    fn a_hundred_members_share_a_thousand_chunks() {
        let members: Vec<u32> = (0..100).collect();
        let mut counts = [0usize; 100];
        for i in 0..10_000u32 {
            let c = ChunkId::of(&i.to_le_bytes());
            counts[assignee(&c, &members).expect("members") as usize] += 1;
        }
        // Mean 100 each; a fair split stays within ±45 % for every member.
        assert!(counts.iter().all(|&n| (55..145).contains(&n)), "{counts:?}");
    }
}
