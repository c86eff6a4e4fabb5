//! A fixed-length set of chunk indices, as peers exchange them.

use serde::{Deserialize, Serialize};

/// Which chunks of a release a peer holds: bit `i` is chunk `i` of the
/// manifest's unique-chunk list.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bitfield {
    len: u32,
    words: Vec<u64>,
}

/// A bitfield whose length does not match the release.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bitfield of {got} bits for a release of {expected} chunks")]
pub struct BitfieldLenError {
    pub expected: u32,
    pub got: u32,
}

impl Bitfield {
    pub fn new(len: u32) -> Self {
        Self {
            len,
            words: vec![0; (len as usize).div_ceil(64)],
        }
    }

    pub fn full(len: u32) -> Self {
        let mut b = Self::new(len);
        for i in 0..len {
            b.set(i);
        }
        b
    }

    pub fn len(&self) -> u32 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, i: u32) -> bool {
        i < self.len && self.words[(i / 64) as usize] & (1 << (i % 64)) != 0
    }

    /// Sets bit `i`; returns true if it was clear. Out-of-range indices are ignored.
    pub fn set(&mut self, i: u32) -> bool {
        if i >= self.len {
            return false;
        }
        let w = &mut self.words[(i / 64) as usize];
        let was = *w & (1 << (i % 64)) != 0;
        *w |= 1 << (i % 64);
        !was
    }

    /// Clears bit `i`; returns true if it was set.
    pub fn clear(&mut self, i: u32) -> bool {
        if i >= self.len {
            return false;
        }
        let w = &mut self.words[(i / 64) as usize];
        let was = *w & (1 << (i % 64)) != 0;
        *w &= !(1 << (i % 64));
        was
    }

    pub fn count(&self) -> u32 {
        self.words.iter().map(|w| w.count_ones()).sum()
    }

    pub fn is_full(&self) -> bool {
        self.count() == self.len
    }

    pub fn iter_ones(&self) -> impl Iterator<Item = u32> + '_ {
        self.words.iter().enumerate().flat_map(|(k, &w)| ones(k, w))
    }

    /// The bits as 64-bit words, bit `i` in word `i / 64`; bits past `len` are clear.
    pub(crate) fn words(&self) -> &[u64] {
        &self.words
    }

    /// Checks a bitfield received from a peer: right length, no bits set
    /// beyond it. Parse, don't validate: the result is safe to index with.
    pub fn checked(self, expected: u32) -> Result<Self, BitfieldLenError> {
        let tail_clean = match self.len % 64 {
            0 => true,
            r => self.words.last().is_none_or(|w| w >> r == 0),
        };
        if self.len != expected
            || self.words.len() != (expected as usize).div_ceil(64)
            || !tail_clean
        {
            return Err(BitfieldLenError {
                expected,
                got: self.len,
            });
        }
        Ok(self)
    }
}

/// The indices of the set bits of `word`, the `k`-th word of a bitfield.
pub(crate) fn ones(k: usize, mut word: u64) -> impl Iterator<Item = u32> {
    std::iter::from_fn(move || {
        if word == 0 {
            return None;
        }
        let bit = word.trailing_zeros();
        word &= word - 1;
        Some(k as u32 * 64 + bit)
    })
}

impl std::fmt::Debug for Bitfield {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bitfield({}/{})", self.count(), self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn set_get_count_agree(len in 0u32..500, bits in proptest::collection::vec(any::<u32>(), 0..200)) {
            let mut b = Bitfield::new(len);
            let mut model = std::collections::BTreeSet::new();
            for x in bits {
                let i = if len == 0 { x } else { x % (len + 5) };
                let fresh = b.set(i);
                prop_assert_eq!(fresh, i < len && model.insert(i));
            }
            prop_assert_eq!(b.count() as usize, model.len());
            prop_assert_eq!(b.iter_ones().collect::<Vec<_>>(), model.into_iter().collect::<Vec<_>>());
            prop_assert!(b.clone().checked(len).is_ok());
            prop_assert!(b.checked(len + 1).is_err());
        }

        #[test]
        fn round_trips_through_postcard(len in 0u32..300, seed in any::<u64>()) {
            let mut b = Bitfield::new(len);
            for i in 0..len { if (seed >> (i % 64)) & 1 == 1 { b.set(i); } }
            let bytes = postcard::to_stdvec(&b).expect("encode");
            let back: Bitfield = postcard::from_bytes(&bytes).expect("decode");
            prop_assert_eq!(back.checked(len).expect("valid"), b);
        }
    }

    #[test]
    fn stray_high_bits_are_refused() {
        let b = Bitfield {
            len: 3,
            words: vec![0b1000],
        };
        assert!(b.checked(3).is_err());
        let b = Bitfield {
            len: 3,
            words: vec![0, 0],
        };
        assert!(b.checked(3).is_err());
    }
}
