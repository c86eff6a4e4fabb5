//! The site's split of uplink work (DESIGN.md §5): rendezvous hashing over
//! the site's members (this node and its connected site peers) names the one
//! member that fetches each chunk across the uplink. This node may fetch its
//! own chunks, and those of members that have stalled.

use super::rendezvous::{chunk_key, pick};
use super::{Bitfield, PeerKey};
use crate::manifest::ChunkRef;

#[derive(Debug)]
pub(crate) struct UplinkSplit<P> {
    /// Members and their rendezvous keys, sorted by member.
    members: Vec<(P, u64)>,
    /// This node's place in `members`.
    me: usize,
    /// Per chunk: its member's place in `members`.
    owner: Vec<u32>,
    /// Per member: stalled (its chunks are anyone's).
    stalled: Vec<bool>,
    /// Chunks this node may fetch across the uplink.
    allowed: Bitfield,
}

impl<P: PeerKey> UplinkSplit<P> {
    /// The split among `me` and `others` (each with its rendezvous key).
    pub fn new(chunks: &[ChunkRef], me: (P, u64), others: impl Iterator<Item = (P, u64)>) -> Self {
        let mut members: Vec<(P, u64)> = others.chain(std::iter::once(me)).collect();
        members.sort_by_key(|m| m.0);
        members.dedup_by(|a, b| a.0 == b.0);
        let me = members.iter().position(|m| m.0 == me.0).unwrap_or(0);
        let owner = chunks
            .iter()
            .map(|c| pick(chunk_key(&c.id), &members).unwrap_or(me) as u32)
            .collect();
        let mut split = Self {
            stalled: vec![false; members.len()],
            members,
            me,
            owner,
            allowed: Bitfield::new(chunks.len() as u32),
        };
        split.rebuild();
        split
    }

    pub fn allowed(&self) -> &Bitfield {
        &self.allowed
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
        for (i, &o) in self.owner.iter().enumerate() {
            if o as usize == self.me || self.stalled[o as usize] {
                allowed.set(i as u32);
            }
        }
        self.allowed = allowed;
    }
}
