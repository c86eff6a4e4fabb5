//! The scheduler's timer sets (request deadlines, wake-ups), each with its
//! earliest entry kept beside it: [`super::Swarm::poll_timeout`] runs after
//! every input and reads it without walking down a B-tree.

use std::collections::BTreeSet;

/// An ordered set that keeps a copy of its first element.
#[derive(Debug)]
pub(super) struct Timers<T> {
    set: BTreeSet<T>,
    first: Option<T>,
}

impl<T> Default for Timers<T> {
    fn default() -> Self {
        Self {
            set: BTreeSet::new(),
            first: None,
        }
    }
}

impl<T: Ord + Copy> Timers<T> {
    pub fn first(&self) -> Option<T> {
        self.first
    }

    pub fn insert(&mut self, t: T) {
        if self.first.is_none_or(|f| t < f) {
            self.first = Some(t);
        }
        self.set.insert(t);
    }

    pub fn remove(&mut self, t: &T) {
        if self.set.remove(t) && self.first.as_ref() == Some(t) {
            self.first = self.set.first().copied();
        }
    }

    pub fn pop_first(&mut self) -> Option<T> {
        let t = self.set.pop_first();
        self.first = self.set.first().copied();
        t
    }

    /// Drops every element before `t`.
    pub fn drop_before(&mut self, t: &T) {
        if self.first.is_some_and(|f| f < *t) {
            self.set = self.set.split_off(t);
            self.first = self.set.first().copied();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn first_follows_the_set(ops in proptest::collection::vec((0u8..4, 0u32..50), 0..200)) {
            let mut t = Timers::default();
            let mut model = BTreeSet::new();
            for (op, x) in ops {
                match op {
                    0 | 1 => { t.insert(x); model.insert(x); }
                    2 => { t.remove(&x); model.remove(&x); }
                    _ => {
                        prop_assert_eq!(t.pop_first(), model.pop_first());
                        t.drop_before(&x);
                        model = model.split_off(&x);
                    }
                }
                prop_assert_eq!(t.first(), model.first().copied());
            }
        }
    }
}
