//! The connected peers' state, in a slab: each peer gets a small slot number
//! when it connects, mapped once from its key at the API boundary, so the
//! scheduler's hot paths index vectors instead of searching a map. Owns the
//! peers' has-bitfields too, stored by word (word `k` of every slot side by
//! side), so a pass can tell which peers have anything it may ask for by
//! reading a few contiguous columns instead of each peer's own bitfield.

use std::collections::HashMap;

use super::bitfield::{self, Bitfield};
use super::{PeerKey, PeerState};

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

/// Every connected peer's state, by slot.
#[derive(Debug)]
pub(super) struct Peers<P> {
    states: Vec<Option<PeerState>>,
    free: Vec<u32>,
    index: HashMap<P, u32>,
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
            index: HashMap::new(),
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
        self.index.get(peer).copied()
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

    /// Adds a peer (not connected yet) holding nothing; returns its slot.
    pub fn insert(&mut self, peer: P, state: PeerState) -> u32 {
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
        self.index.insert(peer, slot);
        slot
    }

    /// Removes a peer: its state and the chunks it had.
    pub fn remove(&mut self, peer: &P) -> Option<(PeerState, Vec<u32>)> {
        let slot = self.index.remove(peer)?;
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
