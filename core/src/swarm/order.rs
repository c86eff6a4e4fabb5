//! The chunks a node still lacks, in a seeded random order, and each
//! chunk's place in it: a chunk gained is swapped out for the last one in
//! O(1), so the order keeps moving (the rarest-first tie-break). Two
//! bytes an entry when the release has at most 65 536 chunks, else four:
//! a simulated device keeps one of these per release, and at 1 024 chunks
//! the narrow form is 4 KiB of the ~70 KiB a device costs.

/// Chunk indices or places, as narrow as the release allows.
#[derive(Clone, Debug)]
enum Indices {
    Narrow(Vec<u16>),
    Wide(Vec<u32>),
}

impl Indices {
    /// `values`, narrow if every value below `bound` fits in 16 bits.
    fn new(values: impl Iterator<Item = u32>, bound: u32) -> Self {
        if bound <= 1 << 16 {
            Indices::Narrow(values.map(|v| v as u16).collect())
        } else {
            Indices::Wide(values.collect())
        }
    }

    fn len(&self) -> usize {
        match self {
            Indices::Narrow(v) => v.len(),
            Indices::Wide(v) => v.len(),
        }
    }

    fn get(&self, i: usize) -> Option<u32> {
        match self {
            Indices::Narrow(v) => v.get(i).map(|&x| u32::from(x)),
            Indices::Wide(v) => v.get(i).copied(),
        }
    }

    /// Sets entry `i` to `value` (below the bound the form was chosen by).
    fn set(&mut self, i: usize, value: u32) {
        match self {
            Indices::Narrow(v) => v[i] = value as u16,
            Indices::Wide(v) => v[i] = value,
        }
    }

    fn swap_remove(&mut self, i: usize) {
        match self {
            Indices::Narrow(v) => {
                v.swap_remove(i);
            }
            Indices::Wide(v) => {
                v.swap_remove(i);
            }
        }
    }
}

/// The lacking chunks in order, and every chunk's place.
#[derive(Clone, Debug)]
pub(super) struct ChunkOrder {
    /// The chunks still lacking.
    lacking: Indices,
    /// Per chunk: its place in `lacking` (meaningless once it is held).
    place: Indices,
}

impl ChunkOrder {
    /// `lacking` in this order, of a release of `chunks` chunks.
    pub fn new(lacking: &[u32], chunks: u32) -> Self {
        let mut place = vec![0u32; chunks as usize];
        for (pos, &i) in lacking.iter().enumerate() {
            place[i as usize] = pos as u32;
        }
        Self {
            lacking: Indices::new(lacking.iter().copied(), chunks),
            place: Indices::new(place.into_iter(), chunks),
        }
    }

    pub fn len(&self) -> usize {
        self.lacking.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Chunk `index`'s place in the order (a tie-break key: lower first).
    pub fn place(&self, index: u32) -> u32 {
        self.place.get(index as usize).unwrap_or(u32::MAX)
    }

    /// Takes lacking chunk `index` out; the last one takes its place.
    pub fn remove(&mut self, index: u32) {
        let Some(pos) = self.place.get(index as usize).map(|p| p as usize) else {
            return;
        };
        if self.lacking.get(pos) != Some(index) {
            return;
        }
        self.lacking.swap_remove(pos);
        if let Some(moved) = self.lacking.get(pos) {
            self.place.set(moved as usize, pos as u32);
        }
    }

    /// The lacking chunks, in order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.len()).filter_map(|pos| self.lacking.get(pos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The order a plain vector and its places keep, as the scheduler kept them.
    fn model_remove(lacking: &mut Vec<u32>, place: &mut [u32], index: u32) {
        let pos = place[index as usize] as usize;
        if lacking.get(pos) != Some(&index) {
            return;
        }
        lacking.swap_remove(pos);
        if let Some(&moved) = lacking.get(pos) {
            place[moved as usize] = pos as u32;
        }
    }

    fn check(chunks: u32, order: Vec<u32>, removals: Vec<u32>) -> Result<(), TestCaseError> {
        let mut o = ChunkOrder::new(&order, chunks);
        let mut lacking = order.clone();
        let mut place = vec![0u32; chunks as usize];
        for (pos, &i) in order.iter().enumerate() {
            place[i as usize] = pos as u32;
        }
        for r in removals {
            let r = r % chunks;
            o.remove(r);
            model_remove(&mut lacking, &mut place, r);
            prop_assert_eq!(o.len(), lacking.len());
            prop_assert!(o.iter().eq(lacking.iter().copied()));
            for &i in &lacking {
                prop_assert_eq!(o.place(i), place[i as usize]);
            }
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn agrees_with_a_vector_and_its_places(
            order in Just((0..300u32).collect::<Vec<_>>()).prop_shuffle(),
            removals in proptest::collection::vec(0u32..300, 0..400),
        ) {
            check(300, order, removals)?;
        }

        #[test]
        fn agrees_past_sixteen_bits(
            removals in proptest::collection::vec(0u32..70_000, 0..200),
        ) {
            // Chunk indices above 65 535: the wide form.
            let order: Vec<u32> = (0..70_000u32).rev().collect();
            check(70_000, order, removals)?;
        }
    }

    #[test]
    fn narrow_up_to_sixteen_bits_and_wide_past() {
        let narrow = ChunkOrder::new(&[65_535, 0], 1 << 16);
        assert!(matches!(narrow.lacking, Indices::Narrow(_)));
        assert_eq!(narrow.iter().collect::<Vec<_>>(), [65_535, 0]);
        assert_eq!(narrow.place(65_535), 0);
        let wide = ChunkOrder::new(&[65_536], (1 << 16) + 1);
        assert!(matches!(wide.lacking, Indices::Wide(_)));
        assert_eq!(wide.iter().collect::<Vec<_>>(), [65_536]);
    }

    #[test]
    fn removing_a_held_or_unknown_chunk_changes_nothing() {
        let mut o = ChunkOrder::new(&[2, 0], 4);
        o.remove(1); // held from the start
        o.remove(9); // not in the release
        assert_eq!(o.iter().collect::<Vec<_>>(), [2, 0]);
        o.remove(2);
        o.remove(2);
        assert_eq!(o.iter().collect::<Vec<_>>(), [0]);
        assert_eq!(o.place(0), 0);
    }
}
