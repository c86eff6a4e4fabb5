//! Rendezvous (highest-random-weight) hashing: which site member fetches a
//! chunk across the uplink. Every member computes the same answer from the
//! same membership, and a member leaving moves only its own chunks.

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

fn weight(chunk: &ChunkId, member: &[u8]) -> u64 {
    let mut h = blake3::Hasher::new_derive_key("pollen rendezvous v1");
    h.update(&chunk.0);
    h.update(member);
    let out = h.finalize();
    let mut w = [0u8; 8];
    w.copy_from_slice(&out.as_bytes()[..8]);
    u64::from_le_bytes(w)
}

/// The member with the highest weight for `chunk` (ties broken by key bytes).
pub fn assignee<'a, P: PeerKey + 'a>(
    chunk: &ChunkId,
    members: impl IntoIterator<Item = &'a P>,
) -> Option<P> {
    members
        .into_iter()
        .map(|p| {
            let key = p.key_bytes();
            (weight(chunk, &key), key, *p)
        })
        .max_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)))
        .map(|(_, _, p)| p)
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
}
