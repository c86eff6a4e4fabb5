//! The connected peers' state, in a slab: each peer gets a small slot number
//! when it connects, mapped once from its key at the API boundary, so the
//! scheduler's hot paths index vectors instead of searching a map. Owns the
//! peers' has-bitfields too, one row each in a single vector. A peer gets
//! a row only when it first tells of a chunk: at a large site a device
//! hears from a sample of its site peers (DESIGN.md §5), and the rest would
//! hold empty rows for the whole run.
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
    /// Marked stalled in the uplink split.
    pub stalled: bool,
    /// Last time it connected or announced a chunk new to it, in
    /// nanoseconds (8 bytes where a `Duration` takes 16: an index entry
    /// stays at 24).
    progress_ns: u64,
}

impl Seen {
    pub fn new(slot: u32, class: Class, now: std::time::Duration) -> Self {
        let mut seen = Self {
            slot,
            class,
            stalled: false,
            progress_ns: 0,
        };
        seen.set_progress(now);
        seen
    }

    /// Last time it connected or announced a chunk new to it.
    pub fn last_progress(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.progress_ns)
    }

    pub fn set_progress(&mut self, now: std::time::Duration) {
        self.progress_ns = u64::try_from(now.as_nanos()).unwrap_or(u64::MAX);
    }
}

/// Every connected peer's state, by slot.
#[derive(Debug)]
pub(super) struct Peers<P> {
    states: Vec<Option<PeerState>>,
    free: Vec<u32>,
    index: SlotIndex<P>,
    /// Bits per has-bitfield (the release's chunks).
    chunks: u32,
    /// Each slot's row of `has` ([`NO_ROW`]: it told of no chunk yet).
    row_of: Vec<u32>,
    /// Rows given up by peers that left, zeroed.
    free_rows: Vec<u32>,
    /// Rows handed out so far (free ones included).
    rows: usize,
    /// Word `k` of row `r`'s has-bitfield at `r * words + k`.
    has: Vec<u64>,
}

/// The row of a slot that has none.
const NO_ROW: u32 = u32::MAX;

impl<P: PeerKey> Peers<P> {
    pub fn new(chunks: u32) -> Self {
        Self {
            states: Vec::new(),
            free: Vec::new(),
            index: SlotIndex::default(),
            chunks,
            row_of: Vec::new(),
            free_rows: Vec::new(),
            rows: 0,
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
        if slot as usize >= self.row_of.len() {
            self.row_of.resize(slot as usize + 1, NO_ROW);
        }
        self.row_of[slot as usize] = NO_ROW;
        let seen = Seen::new(slot, class, now);
        self.index.insert(peer, seen);
        slot
    }

    /// Removes a peer: its state and the chunks it had.
    pub fn remove(&mut self, peer: &P) -> Option<(PeerState, Vec<u32>)> {
        let slot = self.index.remove(peer)?.slot;
        let ones = self.ones(slot);
        if let Some(row) = self.row(slot) {
            let words = self.words();
            self.has[row * words..(row + 1) * words].fill(0);
            self.free_rows.push(row as u32);
            self.row_of[slot as usize] = NO_ROW;
        }
        self.free.push(slot);
        let state = self.states[slot as usize].take()?;
        Some((state, ones))
    }

    /// `slot`'s row of the has-bitfields, if it has one.
    fn row(&self, slot: u32) -> Option<usize> {
        self.row_of
            .get(slot as usize)
            .filter(|&&r| r != NO_ROW)
            .map(|&r| r as usize)
    }

    /// `slot`'s row, given one (empty) if it has none.
    fn row_or_new(&mut self, slot: u32) -> usize {
        if let Some(row) = self.row(slot) {
            return row;
        }
        let row = match self.free_rows.pop() {
            Some(r) => r as usize,
            None => {
                let (row, words) = (self.rows, self.words());
                self.rows += 1;
                if self.has.len() == self.has.capacity() {
                    // Grown by a quarter, not doubled: a node keeps one
                    // such table per release, sized by its peers.
                    self.has.reserve_exact((self.has.len() / 4).max(8 * words));
                }
                self.has.resize(self.rows * words, 0);
                row
            }
        };
        self.row_of[slot as usize] = row as u32;
        row
    }

    fn bit_at(&self, row: usize, i: u32) -> Option<(usize, u64)> {
        (i < self.chunks).then(|| (row * self.words() + (i / 64) as usize, 1u64 << (i % 64)))
    }

    fn bit(&self, slot: u32, i: u32) -> Option<(usize, u64)> {
        self.bit_at(self.row(slot)?, i)
    }

    /// Whether the peer in `slot` has chunk `i`.
    pub fn has(&self, slot: u32, i: u32) -> bool {
        self.bit(slot, i)
            .is_some_and(|(at, bit)| self.has[at] & bit != 0)
    }

    /// Marks chunk `i` held by `slot`; true if it was not (out-of-range
    /// indices are ignored).
    pub fn set_has(&mut self, slot: u32, i: u32) -> bool {
        if i >= self.chunks || slot as usize >= self.row_of.len() {
            return false;
        }
        let row = self.row_or_new(slot);
        let Some((at, bit)) = self.bit_at(row, i) else {
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
        self.row(slot)
            .map_or(0, |row| self.has[row * self.words() + k])
    }

    /// Whether `slot` has a chunk of `mask` (word `k` and its bits).
    pub fn has_any(&self, slot: u32, mask: &[(usize, u64)]) -> bool {
        self.row(slot).is_some_and(|row| {
            let words = &self.has[row * self.words()..(row + 1) * self.words()];
            mask.iter().any(|&(k, m)| words[k] & m != 0)
        })
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
        let row = match self.row(slot) {
            Some(row) => row,
            None if has.words().iter().all(|&w| w == 0) => return (gained, lost),
            None if slot as usize >= self.row_of.len() => return (gained, lost),
            None => self.row_or_new(slot),
        };
        for (k, &new) in has.words().iter().enumerate().take(self.words()) {
            let at = row * self.words() + k;
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
    /// A power of two long (or empty), at most three quarters full (a
    /// probe mostly stays within the line it starts on).
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
        if (self.len + 1) * 4 > self.table.len() * 3 {
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
            let seen = |slot| Seen::new(slot, Class::Local, Duration::ZERO);
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
    fn has_rows_survive_growth_and_reuse() {
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
        assert_eq!(peers.rows, 2, "only peers that told of a chunk hold a row");
        assert_eq!(peers.row(again), None, "a new peer starts without one");
        assert!(peers.set_has(again, 7));
        assert_eq!(peers.rows, 2, "and takes the row the leaver gave up");
        assert_eq!(peers.ones(again), vec![7], "zeroed when it was given up");
        // Every peer tells of a chunk: rows grow past their first eight.
        for (n, &s) in slots.iter().enumerate().skip(4) {
            peers.set_has(s, 100 + n as u32);
        }
        assert_eq!(peers.rows, 17);
        assert_eq!(peers.ones(slots[19]), vec![0, 119]);
        assert_eq!(peers.ones(again), vec![7]);
        assert!(slots[4..].iter().all(|&s| !peers.has_all(s)));
        assert_eq!(peers.slot(&99), Some(again));
        assert_eq!(
            peers.seen(&99).map(|s| s.last_progress()),
            Some(Duration::from_secs(1))
        );
        assert_eq!(peers.slot(&3), None);
        assert_eq!(peers.len(), 20);
    }
}
