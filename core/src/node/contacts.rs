//! The peers a node greeted, in key order, in one vector. A device has its
//! whole site as peers, and a `BTreeMap`'s nodes took about twice the
//! entries' own size; lookups are a binary search, and a greeting or a
//! departure moves at most the entries after it.

/// Greeted peers and what the node keeps about each, sorted by peer.
#[derive(Debug)]
pub(super) struct Contacts<P, C> {
    entries: Vec<(P, C)>,
}

impl<P, C> Default for Contacts<P, C> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
        }
    }
}

impl<P: Ord + Copy, C> Contacts<P, C> {
    fn find(&self, peer: &P) -> Result<usize, usize> {
        self.entries.binary_search_by(|(p, _)| p.cmp(peer))
    }

    pub fn get(&self, peer: &P) -> Option<&C> {
        self.find(peer).ok().map(|at| &self.entries[at].1)
    }

    pub fn get_mut(&mut self, peer: &P) -> Option<&mut C> {
        self.find(peer).ok().map(|at| &mut self.entries[at].1)
    }

    /// `peer`'s entry, made by `new` if it has none.
    pub fn get_or_insert_with(&mut self, peer: P, new: impl FnOnce() -> C) -> &mut C {
        let at = match self.find(&peer) {
            Ok(at) => at,
            Err(at) => {
                self.entries.insert(at, (peer, new()));
                at
            }
        };
        &mut self.entries[at].1
    }

    pub fn remove(&mut self, peer: &P) -> Option<C> {
        self.find(peer).ok().map(|at| self.entries.remove(at).1)
    }

    /// Every peer and its entry, in peer order.
    pub fn iter(&self) -> impl Iterator<Item = (&P, &C)> {
        self.entries.iter().map(|(p, c)| (p, c))
    }

    pub fn keys(&self) -> impl Iterator<Item = &P> {
        self.entries.iter().map(|(p, _)| p)
    }

    pub fn values(&self) -> impl Iterator<Item = &C> {
        self.entries.iter().map(|(_, c)| c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    proptest! {
        #[test]
        fn contacts_agree_with_a_btree_map(ops in proptest::collection::vec((0u8..3, 0u32..32), 0..300)) {
            let mut contacts = Contacts::default();
            let mut model = BTreeMap::new();
            for (n, (op, peer)) in ops.into_iter().enumerate() {
                match op {
                    0 => {
                        *contacts.get_or_insert_with(peer, || 0) += n;
                        *model.entry(peer).or_insert(0) += n;
                    }
                    1 => prop_assert_eq!(contacts.remove(&peer), model.remove(&peer)),
                    _ => {
                        if let Some(c) = contacts.get_mut(&peer) {
                            *c += 1;
                        }
                        if let Some(c) = model.get_mut(&peer) {
                            *c += 1;
                        }
                    }
                }
                prop_assert_eq!(contacts.get(&peer), model.get(&peer));
                prop_assert!(contacts.iter().eq(model.iter()));
                prop_assert!(contacts.keys().eq(model.keys()));
                prop_assert!(contacts.values().eq(model.values()));
            }
        }
    }
}
