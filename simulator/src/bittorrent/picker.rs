//! One peer's piece picker: which block to request next from a peer that
//! has unchoked it. Blocks of pieces already started come first (so pieces
//! complete and can be shared), then a new piece — at random for the first
//! `random_first` pieces, rarest among the connected peers after that —
//! and, once every missing block has been requested, end-game: blocks
//! already requested elsewhere, from this peer too.

use std::collections::BTreeMap;

use pollen_core::swarm::Bitfield;

/// A block state: requests outstanding for it, or [`DONE`].
const DONE: u8 = u8::MAX;

/// What a received block did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    /// Already held (an end-game duplicate, or a piece already complete).
    Duplicate,
    /// A new block; its piece is not complete yet.
    Block,
    /// The block completed its piece.
    Piece,
}

/// The picker's state for one peer.
#[derive(Debug)]
pub struct Picker {
    pieces: u32,
    blocks: u16,
    last_blocks: u16,
    random_first: u32,
    end_game: bool,
    pub have: Bitfield,
    /// How many connected peers hold each piece.
    avail: Vec<u16>,
    /// Started pieces: per block, the requests outstanding or [`DONE`].
    partial: BTreeMap<u32, Vec<u8>>,
}

impl Picker {
    /// `pieces` pieces of `blocks` blocks each (the last of `last_blocks`).
    pub fn new(
        pieces: u32,
        blocks: u16,
        last_blocks: u16,
        random_first: u32,
        end_game: bool,
    ) -> Self {
        Self {
            pieces,
            blocks,
            last_blocks,
            random_first,
            end_game,
            have: Bitfield::new(pieces),
            avail: vec![0; pieces as usize],
            partial: BTreeMap::new(),
        }
    }

    /// A seed: every piece held.
    pub fn seed(pieces: u32) -> Self {
        let mut p = Self::new(pieces, 1, 1, 0, false);
        p.have = Bitfield::full(pieces);
        p
    }

    pub fn blocks_of(&self, piece: u32) -> u16 {
        if piece + 1 == self.pieces {
            self.last_blocks
        } else {
            self.blocks
        }
    }

    pub fn is_complete(&self) -> bool {
        self.have.is_full()
    }

    /// A connected peer holds `piece` (from its bitfield or a `HAVE`).
    pub fn peer_has(&mut self, piece: u32) {
        self.avail[piece as usize] = self.avail[piece as usize].saturating_add(1);
    }

    /// Blocks not yet requested from anyone, in pieces `peer` holds.
    fn fresh_in_partial(&self, peer: &Bitfield) -> Option<(u32, u16)> {
        self.partial
            .iter()
            .filter(|(p, _)| peer.get(**p))
            .find_map(|(&p, b)| b.iter().position(|&s| s == 0).map(|i| (p, i as u16)))
    }

    /// A piece to start from `peer`: random while fewer than
    /// `random_first` are held, rarest-first after (ties to the first
    /// found from a random offset). `draw` is a random number.
    fn new_piece(&self, peer: &Bitfield, draw: u64) -> Option<u32> {
        let n = self.pieces;
        let offset = (draw % u64::from(n)) as u32;
        let random = self.have.count() < self.random_first;
        let mut best: Option<(u16, u32)> = None;
        for k in 0..n {
            let p = (offset + k) % n;
            if self.have.get(p) || self.partial.contains_key(&p) || !peer.get(p) {
                continue;
            }
            if random {
                return Some(p);
            }
            let a = self.avail[p as usize];
            if best.is_none_or(|(b, _)| a < b) {
                best = Some((a, p));
            }
        }
        best.map(|(_, p)| p)
    }

    /// Every piece missing has been started and every block of it requested.
    fn all_requested(&self) -> bool {
        self.have.count() as usize + self.partial.len() == self.pieces as usize
            && self.partial.values().all(|b| b.iter().all(|&s| s != 0))
    }

    /// The next block to request from a peer holding `peer`, skipping the
    /// blocks in `outstanding` (already requested from it); marks it
    /// requested. `draw` is a random number.
    pub fn pick(
        &mut self,
        peer: &Bitfield,
        outstanding: &[(u32, u16)],
        draw: u64,
    ) -> Option<(u32, u16)> {
        if let Some((p, b)) = self.fresh_in_partial(peer) {
            self.partial.get_mut(&p)?[b as usize] = 1;
            return Some((p, b));
        }
        if let Some(p) = self.new_piece(peer, draw) {
            let mut blocks = vec![0u8; usize::from(self.blocks_of(p))];
            blocks[0] = 1;
            self.partial.insert(p, blocks);
            return Some((p, 0));
        }
        if !self.end_game || !self.all_requested() {
            return None;
        }
        // End-game: the least requested block this peer has not been asked for.
        let mut best: Option<(u8, u32, u16)> = None;
        for (&p, blocks) in self.partial.iter().filter(|(p, _)| peer.get(**p)) {
            for (i, &s) in blocks.iter().enumerate() {
                let b = i as u16;
                if s == DONE || outstanding.contains(&(p, b)) {
                    continue;
                }
                if best.is_none_or(|(c, _, _)| s < c) {
                    best = Some((s, p, b));
                }
            }
        }
        let (_, p, b) = best?;
        let s = &mut self.partial.get_mut(&p)?[b as usize];
        *s = s.saturating_add(1).min(DONE - 1);
        Some((p, b))
    }

    /// A request for the block is gone unanswered (choked, or cancelled).
    pub fn unrequest(&mut self, piece: u32, block: u16) {
        if let Some(s) = self
            .partial
            .get_mut(&piece)
            .and_then(|b| b.get_mut(block as usize))
        {
            if *s != DONE && *s > 0 {
                *s -= 1;
            }
        }
    }

    /// The block arrived.
    pub fn received(&mut self, piece: u32, block: u16) -> Received {
        if self.have.get(piece) {
            return Received::Duplicate;
        }
        let Some(blocks) = self.partial.get_mut(&piece) else {
            return Received::Duplicate;
        };
        let Some(s) = blocks.get_mut(block as usize) else {
            return Received::Duplicate;
        };
        if *s == DONE {
            return Received::Duplicate;
        }
        *s = DONE;
        if blocks.iter().all(|&s| s == DONE) {
            self.partial.remove(&piece);
            self.have.set(piece);
            return Received::Piece;
        }
        Received::Block
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(n: u32) -> Bitfield {
        Bitfield::full(n)
    }

    #[test]
    fn the_first_pieces_are_random_then_the_rarest_comes_first() {
        let n = 20;
        let mut p = Picker::new(n, 1, 1, 4, true);
        // Piece 13 is the rarest among the peers; 7 next.
        for piece in 0..n {
            let holders = match piece {
                13 => 1,
                7 => 2,
                _ => 5,
            };
            for _ in 0..holders {
                p.peer_has(piece);
            }
        }
        // Random first: different draws start different pieces.
        let firsts: std::collections::BTreeSet<u32> = (0..4)
            .map(|d| {
                let (piece, _) = p.pick(&full(n), &[], d * 5 + 1).expect("a piece");
                assert_eq!(p.received(piece, 0), Received::Piece);
                piece
            })
            .collect();
        assert_eq!(firsts.len(), 4);
        assert_eq!(firsts, [1, 6, 11, 16].into_iter().collect());
        // Now rarest-first, whatever the draw.
        for draw in [0, 3, 17] {
            let mut q = Picker::new(n, 1, 1, 0, true);
            for piece in 0..n {
                for _ in 0..(if piece == 13 {
                    1
                } else if piece == 7 {
                    2
                } else {
                    5
                }) {
                    q.peer_has(piece);
                }
            }
            assert_eq!(q.pick(&full(n), &[], draw), Some((13, 0)));
            assert_eq!(q.pick(&full(n), &[], draw), Some((7, 0)));
        }
    }

    #[test]
    fn started_pieces_are_finished_first_and_only_what_the_peer_has_is_asked() {
        let mut p = Picker::new(4, 3, 2, 0, true);
        let mut only2 = Bitfield::new(4);
        only2.set(2);
        assert_eq!(p.pick(&only2, &[], 0), Some((2, 0)));
        assert_eq!(p.pick(&full(4), &[], 0), Some((2, 1)));
        assert_eq!(p.pick(&full(4), &[], 0), Some((2, 2)));
        // Piece 3 is the last: two blocks.
        assert_eq!(p.blocks_of(3), 2);
        let mut none = Bitfield::new(4);
        assert_eq!(p.pick(&none, &[], 0), None);
        none.set(2);
        // Everything of piece 2 is requested and others exist: no end-game yet.
        assert_eq!(p.pick(&none, &[], 0), None);
    }

    #[test]
    fn end_game_asks_for_outstanding_blocks_again_and_counts_duplicates() {
        let mut p = Picker::new(2, 2, 2, 0, true);
        let all = full(2);
        let mut asked = Vec::new();
        while let Some(b) = p.pick(&all, &asked, 0) {
            if asked.contains(&b) {
                break;
            }
            asked.push(b);
        }
        // Every block requested once; a second peer now gets them again.
        assert_eq!(asked.len(), 4);
        let again = p.pick(&all, &[], 0).expect("end-game request");
        assert!(asked.contains(&again));
        // The first copy lands, the second is a duplicate.
        assert_eq!(p.received(again.0, again.1), Received::Block);
        assert_eq!(p.received(again.0, again.1), Received::Duplicate);
        // A peer already asked for every block gets nothing more.
        let mut q = Picker::new(1, 2, 2, 0, true);
        let one = full(1);
        let a = q.pick(&one, &[], 0).expect("first");
        let b = q.pick(&one, &[a], 0).expect("second");
        assert_eq!(q.pick(&one, &[a, b], 0), None);
        // Without end-game nothing is requested twice.
        let mut r = Picker::new(1, 1, 1, 0, false);
        assert!(r.pick(&one, &[], 0).is_some());
        assert_eq!(r.pick(&one, &[], 0), None);
    }

    #[test]
    fn an_unanswered_request_is_picked_again() {
        let mut p = Picker::new(1, 2, 2, 0, false);
        let one = full(1);
        assert_eq!(p.pick(&one, &[], 0), Some((0, 0)));
        assert_eq!(p.pick(&one, &[], 0), Some((0, 1)));
        p.unrequest(0, 1);
        assert_eq!(p.pick(&one, &[], 0), Some((0, 1)));
        assert_eq!(p.received(0, 0), Received::Block);
        assert_eq!(p.received(0, 1), Received::Piece);
        assert!(p.is_complete());
    }
}
