//! The connected peers' state, in a slab: each peer gets a small slot number
//! when it connects, mapped once from its key at the API boundary, so the
//! scheduler's hot paths index vectors instead of searching a map. Owns the
//! peers' has-bitfields too, stored by word (word `k` of every slot side by
//! side), so a pass can tell which peers have anything it may ask for by
//! reading a few contiguous columns instead of each peer's own bitfield.
//! What a notice updates about its sender ([`Seen`]) sits beside the key
//! in the index, so a notice reads one line of the index, not the state too.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

use super::bitfield::{self, Bitfield};
use super::{Class, PeerKey, PeerState};

/// A class's connected peers, sorted by key, each with its slot.
#[derive(Debug)]
pub(super) struct Roster<P> {
    peers: Vec<P>,
    slots: Vec<u32>,
}

impl<P> Default for Roster<P> {
    fn default() -> Self {
        Self {
            peers: Vec::new(),
            slots: Vec::new(),
        }
    }
}

impl<P: PeerKey> Roster<P> {
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, P> {
        self.peers.iter()
    }

    /// The peer at place `at` (in key order) and its slot.
    pub fn at(&self, at: usize) -> (P, u32) {
        (self.peers[at], self.slots[at])
    }

    /// Every slot, in key order.
    pub fn slots(&self) -> &[u32] {
        &self.slots
    }

    /// Adds `peer` (not in it yet) in key order.
    pub fn insert(&mut self, peer: P, slot: u32) {
        let at = self.peers.binary_search(&peer).unwrap_or_else(|at| at);
        self.peers.insert(at, peer);
        self.slots.insert(at, slot);
    }

    pub fn remove(&mut self, peer: &P) {
        if let Ok(at) = self.peers.binary_search(peer) {
            self.peers.remove(at);
            self.slots.remove(at);
        }
    }
}

/// What the index keeps beside a peer's key: its slot, and what a notice
/// from it reads and updates.
#[derive(Clone, Copy, Debug)]
pub(super) struct Seen {
    pub slot: u32,
    pub class: Class,
    /// Last time it connected or announced a chunk new to it.
    pub last_progress: std::time::Duration,
    /// Marked stalled in the uplink split.
    pub stalled: bool,
}

/// Every connected peer's state, by slot.
#[derive(Debug)]
pub(super) struct Peers<P> {
    states: Vec<Option<PeerState>>,
    free: Vec<u32>,
    index: SlotIndex<P>,
    /// Bits per has-bitfield (the release's chunks).
    chunks: u32,
    /// Slots per column of `has`.
    cap: usize,
    /// Word `k` of slot `s`'s has-bitfield at `k * cap + s`.
    has: Vec<u64>,
}

impl<P: PeerKey> Peers<P> {
    pub fn new(chunks: u32) -> Self {
        Self {
            states: Vec::new(),
            free: Vec::new(),
            index: SlotIndex::default(),
            chunks,
            cap: 0,
            has: Vec::new(),
        }
    }

    fn words(&self) -> usize {
        (self.chunks as usize).div_ceil(64)
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn slot(&self, peer: &P) -> Option<u32> {
        self.index.get(peer).map(|s| s.slot)
    }

    #[cfg(test)]
    pub fn seen(&self, peer: &P) -> Option<&Seen> {
        self.index.get(peer)
    }

    pub fn seen_mut(&mut self, peer: &P) -> Option<&mut Seen> {
        self.index.get_mut(peer)
    }

    pub fn get(&self, peer: &P) -> Option<&PeerState> {
        self.at(self.slot(peer)?)
    }

    pub fn get_mut(&mut self, peer: &P) -> Option<&mut PeerState> {
        let slot = self.slot(peer)?;
        self.at_mut(slot)
    }

    pub fn at(&self, slot: u32) -> Option<&PeerState> {
        self.states.get(slot as usize)?.as_ref()
    }

    pub fn at_mut(&mut self, slot: u32) -> Option<&mut PeerState> {
        self.states.get_mut(slot as usize)?.as_mut()
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut PeerState> {
        self.states.iter_mut().flatten()
    }

    /// Adds a peer (not connected yet) holding nothing, seen now; returns
    /// its slot.
    pub fn insert(&mut self, peer: P, state: PeerState, now: std::time::Duration) -> u32 {
        let class = state.class;
        let slot = match self.free.pop() {
            Some(s) => {
                self.states[s as usize] = Some(state);
                s
            }
            None => {
                self.states.push(Some(state));
                (self.states.len() - 1) as u32
            }
        };
        if slot as usize >= self.cap {
            self.grow((self.cap * 2).max(8));
        }
        let seen = Seen {
            slot,
            class,
            last_progress: now,
            stalled: false,
        };
        self.index.insert(peer, seen);
        slot
    }

    /// Removes a peer: its state and the chunks it had.
    pub fn remove(&mut self, peer: &P) -> Option<(PeerState, Vec<u32>)> {
        let slot = self.index.remove(peer)?.slot;
        let ones = self.ones(slot);
        for k in 0..self.words() {
            self.has[k * self.cap + slot as usize] = 0;
        }
        self.free.push(slot);
        let state = self.states[slot as usize].take()?;
        Some((state, ones))
    }

    fn grow(&mut self, cap: usize) {
        let words = self.words();
        let mut has = vec![0; words * cap];
        for k in 0..words {
            let old = &self.has[k * self.cap..(k + 1) * self.cap];
            has[k * cap..k * cap + self.cap].copy_from_slice(old);
        }
        self.has = has;
        self.cap = cap;
    }

    fn bit(&self, slot: u32, i: u32) -> Option<(usize, u64)> {
        (i < self.chunks && (slot as usize) < self.cap).then(|| {
            (
                (i / 64) as usize * self.cap + slot as usize,
                1u64 << (i % 64),
            )
        })
    }

    /// Whether the peer in `slot` has chunk `i`.
    pub fn has(&self, slot: u32, i: u32) -> bool {
        self.bit(slot, i)
            .is_some_and(|(at, bit)| self.has[at] & bit != 0)
    }

    /// Marks chunk `i` held by `slot`; true if it was not (out-of-range
    /// indices are ignored).
    pub fn set_has(&mut self, slot: u32, i: u32) -> bool {
        let Some((at, bit)) = self.bit(slot, i) else {
            return false;
        };
        let was = self.has[at] & bit != 0;
        self.has[at] |= bit;
        !was
    }

    /// Clears chunk `i` of `slot`; true if it was set.
    pub fn clear_has(&mut self, slot: u32, i: u32) -> bool {
        let Some((at, bit)) = self.bit(slot, i) else {
            return false;
        };
        let was = self.has[at] & bit != 0;
        self.has[at] &= !bit;
        was
    }

    /// Word `k` of `slot`'s has-bitfield.
    pub fn has_word(&self, slot: u32, k: usize) -> u64 {
        self.has[k * self.cap + slot as usize]
    }

    /// Word `k` of every slot's has-bitfield, by slot.
    pub fn column(&self, k: usize) -> &[u64] {
        &self.has[k * self.cap..(k + 1) * self.cap]
    }

    /// The chunks `slot` has, in order.
    pub fn ones(&self, slot: u32) -> Vec<u32> {
        (0..self.words())
            .flat_map(|k| bitfield::ones(k, self.has_word(slot, k)))
            .collect()
    }

    /// Whether `slot` has every chunk.
    pub fn has_all(&self, slot: u32) -> bool {
        let held: u32 = (0..self.words())
            .map(|k| self.has_word(slot, k).count_ones())
            .sum();
        held == self.chunks
    }

    /// Replaces `slot`'s has-bitfield (of the right length); returns the
    /// chunks gained and those lost, each in order.
    pub fn replace_has(&mut self, slot: u32, has: &Bitfield) -> (Vec<u32>, Vec<u32>) {
        let (mut gained, mut lost) = (Vec::new(), Vec::new());
        for (k, &new) in has.words().iter().enumerate().take(self.words()) {
            let at = k * self.cap + slot as usize;
            let was = self.has[at];
            gained.extend(bitfield::ones(k, new & !was));
            lost.extend(bitfield::ones(k, was & !new));
            self.has[at] = new;
        }
        (gained, lost)
    }
}

/// Peer key to [`Seen`]: open addressing with linear probing, the key and
/// its value side by side (a lookup mostly reads one cache line), keyed
/// hashes.
#[derive(Debug)]
struct SlotIndex<P> {
    /// A power of two long (or empty), at most half full.
    table: Vec<Option<(P, Seen)>>,
    len: usize,
    hasher: RandomState,
}

impl<P> Default for SlotIndex<P> {
    fn default() -> Self {
        Self {
            table: Vec::new(),
            len: 0,
            hasher: RandomState::new(),
        }
    }
}

impl<P: PeerKey> SlotIndex<P> {
    fn len(&self) -> usize {
        self.len
    }

    fn home(&self, peer: &P) -> usize {
        (self.hasher.hash_one(peer) as usize) & (self.table.len() - 1)
    }

    /// Where `peer` is, or the empty place where it would go.
    fn find(&self, peer: &P) -> Result<usize, usize> {
        let mask = self.table.len() - 1;
        let mut i = self.home(peer);
        loop {
            match &self.table[i] {
                None => return Err(i),
                Some((q, _)) if q == peer => return Ok(i),
                Some(_) => i = (i + 1) & mask,
            }
        }
    }

    fn get(&self, peer: &P) -> Option<&Seen> {
        if self.table.is_empty() {
            return None;
        }
        let i = self.find(peer).ok()?;
        self.table[i].as_ref().map(|(_, s)| s)
    }

    fn get_mut(&mut self, peer: &P) -> Option<&mut Seen> {
        if self.table.is_empty() {
            return None;
        }
        let i = self.find(peer).ok()?;
        self.table[i].as_mut().map(|(_, s)| s)
    }

    fn insert(&mut self, peer: P, seen: Seen) {
        if (self.len + 1) * 2 > self.table.len() {
            let size = (self.table.len() * 2).max(16);
            let old = std::mem::replace(&mut self.table, vec![None; size]);
            for (p, s) in old.into_iter().flatten() {
                if let Err(i) = self.find(&p) {
                    self.table[i] = Some((p, s));
                }
            }
        }
        match self.find(&peer) {
            Ok(i) => self.table[i] = Some((peer, seen)),
            Err(i) => {
                self.table[i] = Some((peer, seen));
                self.len += 1;
            }
        }
    }

    fn remove(&mut self, peer: &P) -> Option<Seen> {
        if self.table.is_empty() {
            return None;
        }
        let mut hole = self.find(peer).ok()?;
        let (_, seen) = self.table[hole].take()?;
        self.len -= 1;
        // Backward shift: entries after the hole that may move into it do.
        let mask = self.table.len() - 1;
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let Some((q, _)) = &self.table[j] else {
                break;
            };
            let home = self.home(q);
            // `home` cyclically outside (hole, j]: the entry may move back.
            let stays = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !stays {
                self.table[hole] = self.table[j].take();
                hole = j;
            }
        }
        Some(seen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    proptest! {
        #[test]
        fn slot_index_agrees_with_a_map(ops in proptest::collection::vec((any::<bool>(), 0u32..64), 0..400)) {
            let seen = |slot| Seen { slot, class: Class::Local, last_progress: Duration::ZERO, stalled: false };
            let mut index = SlotIndex::default();
            let mut model = std::collections::BTreeMap::new();
            for (n, (add, peer)) in ops.into_iter().enumerate() {
                if add {
                    index.insert(peer, seen(n as u32));
                    model.insert(peer, n as u32);
                } else {
                    prop_assert_eq!(index.remove(&peer).map(|s| s.slot), model.remove(&peer));
                }
                prop_assert_eq!(index.len(), model.len());
                for p in 0..64u32 {
                    prop_assert_eq!(index.get(&p).map(|s| s.slot), model.get(&p).copied());
                }
            }
        }
    }

    #[test]
    fn has_columns_survive_growth_and_reuse() {
        let mut peers: Peers<u32> = Peers::new(130);
        let state = || PeerState::new(Class::Local, 0, false);
        let slots: Vec<u32> = (0..20)
            .map(|p| peers.insert(p, state(), Duration::ZERO))
            .collect();
        assert!(peers.set_has(slots[3], 129) && !peers.set_has(slots[3], 129));
        assert!(!peers.set_has(slots[3], 130), "out of range is ignored");
        assert!(peers.set_has(slots[19], 0));
        let (state3, ones) = peers.remove(&3).expect("connected");
        assert_eq!(ones, vec![129]);
        drop(state3);
        let again = peers.insert(99, state(), Duration::from_secs(1));
        assert_eq!(again, slots[3], "the slot is reused");
        assert!(!peers.has(again, 129), "and starts empty");
        assert!(peers.has(slots[19], 0) && peers.ones(slots[19]) == vec![0]);
        assert_eq!(peers.slot(&99), Some(again));
        assert_eq!(
            peers.seen(&99).map(|s| s.last_progress),
            Some(Duration::from_secs(1))
        );
        assert_eq!(peers.slot(&3), None);
        assert_eq!(peers.len(), 20);
    }
}
