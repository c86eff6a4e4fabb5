//! The site's split of uplink work (DESIGN.md §5): rendezvous hashing over
//! the site's members with a working uplink connection (this node, if it has
//! one, and its connected site peers that said so) names the one member
//! that fetches each chunk across the uplink. This node may fetch its own
//! chunks, and those of members that have stalled; without an uplink
//! connection of its own, none.

use super::rendezvous::{chunk_key, pick, weight};
use super::{Bitfield, PeerKey};
use crate::manifest::ChunkRef;

/// The key members are ranked on to pick a site's fetchers.
const FETCHER_KEY: u64 = 0x706f_6c6c_656e_6674; // "pollenft"

/// A site has at most this many fetchers (a chunk's owner is a 16-bit
/// place among them, [`u16::MAX`] for none).
pub const MAX_FETCHERS: usize = u16::MAX as usize - 1;

/// Keeps the `fetchers` members (with their rendezvous keys) that rank
/// highest on [`FETCHER_KEY`] (at least one, at most [`MAX_FETCHERS`]):
/// every member computes the same set — the site's gateways — from the
/// same membership. `members` ends sorted by member.
pub fn keep_fetchers<P: Ord + Copy>(members: &mut Vec<(P, u64)>, fetchers: usize) {
    let keep = fetchers.clamp(1, MAX_FETCHERS);
    if members.len() > keep {
        // A selection, not a sort (this runs whenever a site peer comes or
        // goes): the highest (weight, key) first, ties in the given order.
        let mut ranked: Vec<(std::cmp::Reverse<(u64, u64)>, usize)> = members
            .iter()
            .enumerate()
            .map(|(i, m)| (std::cmp::Reverse((weight(FETCHER_KEY, m.1), m.1)), i))
            .collect();
        ranked.select_nth_unstable(keep - 1);
        ranked.truncate(keep);
        let kept: Vec<(P, u64)> = ranked.iter().map(|&(_, i)| members[i]).collect();
        *members = kept;
    }
    members.sort_by_key(|m| m.0);
}

#[derive(Debug)]
pub(crate) struct UplinkSplit<P> {
    /// Members and their rendezvous keys, sorted by member.
    members: Vec<(P, u64)>,
    /// This node's place in `members`.
    me: usize,
    /// Per chunk: its member's place in `members` ([`u16::MAX`]: none).
    owner: Vec<u16>,
    /// Per member: stalled (its chunks are anyone's).
    stalled: Vec<bool>,
    /// Chunks this node may fetch across the uplink.
    allowed: Bitfield,
    /// This node has an uplink connection (else it fetches nothing across it).
    me_uplink: bool,
}

impl<P: PeerKey> UplinkSplit<P> {
    /// The split among `me` (a candidate if `me_uplink`) and `others`
    /// (each with its rendezvous key): the `fetchers` candidates that rank
    /// highest on a fixed key become the members, so a site of any size
    /// keeps a bounded number of requests across its downlink.
    pub fn new(
        chunks: &[ChunkRef],
        me: (P, u64),
        me_uplink: bool,
        others: impl Iterator<Item = (P, u64)>,
        fetchers: usize,
    ) -> Self {
        let mut members: Vec<(P, u64)> = others.chain(me_uplink.then_some(me)).collect();
        members.sort_by_key(|m| m.0);
        members.dedup_by(|a, b| a.0 == b.0);
        keep_fetchers(&mut members, fetchers);
        let me = members
            .iter()
            .position(|m| m.0 == me.0)
            .unwrap_or(usize::MAX);
        let owner = chunks
            .iter()
            .map(|c| {
                pick(chunk_key(&c.id), &members)
                    .and_then(|k| u16::try_from(k).ok())
                    .unwrap_or(u16::MAX)
            })
            .collect();
        let me_uplink = me_uplink && me < members.len();
        let mut split = Self {
            stalled: vec![false; members.len()],
            members,
            me,
            owner,
            allowed: Bitfield::new(chunks.len() as u32),
            me_uplink,
        };
        split.rebuild();
        split
    }

    /// Whether this node was a candidate (had an uplink connection).
    pub fn me_uplink(&self) -> bool {
        self.me_uplink
    }

    pub fn allowed(&self) -> &Bitfield {
        &self.allowed
    }

    /// The member that fetches `index` across the uplink, and whether it
    /// is marked stalled (for logs: why a chunk was or was not fetched).
    pub fn owner(&self, index: u32) -> Option<(P, bool)> {
        let k = *self.owner.get(index as usize)? as usize;
        let (member, _) = self.members.get(k)?;
        Some((*member, self.stalled.get(k).copied().unwrap_or(false)))
    }

    /// Marks `member` stalled or not.
    pub fn set_stalled(&mut self, member: &P, stalled: bool) {
        let Ok(k) = self.members.binary_search_by(|m| m.0.cmp(member)) else {
            return;
        };
        if k != self.me && self.stalled[k] != stalled {
            self.stalled[k] = stalled;
            self.rebuild();
        }
    }

    fn rebuild(&mut self) {
        let mut allowed = Bitfield::new(self.owner.len() as u32);
        if self.me_uplink {
            for (i, &o) in self.owner.iter().enumerate() {
                if o as usize == self.me || self.stalled.get(o as usize) == Some(&true) {
                    allowed.set(i as u32);
                }
            }
        }
        self.allowed = allowed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fetchers as a full stable sort picks them.
    fn by_sort(mut members: Vec<(u32, u64)>, fetchers: usize) -> Vec<(u32, u64)> {
        if members.len() > fetchers.max(1) {
            members.sort_by_key(|m| std::cmp::Reverse((weight(FETCHER_KEY, m.1), m.1)));
            members.truncate(fetchers.max(1));
        }
        members.sort_by_key(|m| m.0);
        members
    }

    #[test]
    fn the_owner_of_a_chunk_is_the_member_allowed_it_and_says_if_stalled() {
        let chunks: Vec<ChunkRef> = (0..64u32)
            .map(|i| ChunkRef {
                id: crate::chunk::ChunkId::of(&i.to_le_bytes()),
                len: 10,
            })
            .collect();
        let others = [(2u32, 22u64), (3, 33)];
        let mut split = UplinkSplit::new(&chunks, (1, 11), true, others.into_iter(), 6);
        for i in 0..64 {
            let (owner, stalled) = split.owner(i).expect("three members: every chunk owned");
            assert_eq!(owner == 1, split.allowed().get(i), "chunk {i}");
            assert!(!stalled);
        }
        split.set_stalled(&2, true);
        for i in 0..64 {
            let (owner, stalled) = split.owner(i).expect("owned");
            assert_eq!(stalled, owner == 2, "chunk {i}");
            assert_eq!(owner != 3, split.allowed().get(i), "chunk {i}");
        }
        assert_eq!(split.owner(64), None, "past the release");
    }

    #[test]
    fn the_selection_keeps_what_a_sort_keeps_ties_included() {
        let mut x = 7u64;
        for n in 0..40u32 {
            for fetchers in [0, 1, 2, 6, 50] {
                // Keys from a small range, so equal keys (ties) occur.
                let members: Vec<(u32, u64)> = (0..n)
                    .map(|p| {
                        x = weight(x, 0x9e37_79b9);
                        (n - p, x % 5)
                    })
                    .collect();
                let mut got = members.clone();
                keep_fetchers(&mut got, fetchers);
                assert_eq!(got, by_sort(members, fetchers), "n {n} fetchers {fetchers}");
            }
        }
    }
}
