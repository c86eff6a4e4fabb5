//! The event queue: a 4-ary min-heap on (time, insertion number), so events
//! at the same nanosecond come out in the order they were scheduled (the
//! engine's determinism rests on that). Four children per node halve the
//! depth of a binary heap and keep a node's children in one or two cache
//! lines; pops, which dominate, get cheaper.

#[derive(Debug)]
struct Entry<E> {
    at: u64,
    seq: u64,
    ev: E,
}

impl<E> Entry<E> {
    fn key(&self) -> (u64, u64) {
        (self.at, self.seq)
    }
}

/// Events of type `E` by time in integer nanoseconds.
#[derive(Debug)]
pub struct Queue<E> {
    heap: Vec<Entry<E>>,
    seq: u64,
}

impl<E> Default for Queue<E> {
    fn default() -> Self {
        Self {
            heap: Vec::new(),
            seq: 0,
        }
    }
}

const D: usize = 4;

/// In a `D`-ary heap of `n` entries, the child of `i` that is least by
/// `less` (which compares two places), or `None` for a leaf.
#[inline]
fn least_child(n: usize, i: usize, less: impl Fn(usize, usize) -> bool) -> Option<usize> {
    let first = D * i + 1;
    if first >= n {
        return None;
    }
    let mut min = first;
    for c in first + 1..(first + D).min(n) {
        if less(c, min) {
            min = c;
        }
    }
    Some(min)
}

impl<E> Queue<E> {
    pub fn push(&mut self, at: u64, ev: E) {
        self.seq += 1;
        self.heap.push(Entry {
            at,
            seq: self.seq,
            ev,
        });
        let mut i = self.heap.len() - 1;
        while i > 0 {
            let parent = (i - 1) / D;
            if self.heap[parent].key() <= self.heap[i].key() {
                break;
            }
            self.heap.swap(parent, i);
            i = parent;
        }
    }

    /// The earliest event and its time.
    pub fn pop(&mut self) -> Option<(u64, E)> {
        if self.heap.is_empty() {
            return None;
        }
        let top = self.heap.swap_remove(0);
        let n = self.heap.len();
        let mut i = 0;
        while let Some(min) = least_child(n, i, |a, b| self.heap[a].key() < self.heap[b].key()) {
            if self.heap[i].key() <= self.heap[min].key() {
                break;
            }
            self.heap.swap(i, min);
            i = min;
        }
        Some((top.at, top.ev))
    }

    /// The earliest event's time.
    pub fn peek_at(&self) -> Option<u64> {
        self.heap.first().map(|e| e.at)
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

/// One deadline per id (`u32` ids, dense): a 4-ary min-heap on
/// (time, id) that moves an id's entry in place when its time changes, so a
/// transfer re-timed a hundred times leaves no stale entries behind.
#[derive(Debug, Default)]
pub struct Timers {
    heap: Vec<(u64, u32)>,
    /// Per id: its place in `heap`, or `NONE`.
    pos: Vec<u32>,
}

const NONE: u32 = u32::MAX;

impl Timers {
    /// Sets (or moves) `id`'s deadline.
    pub fn set(&mut self, id: u32, at: u64) {
        if self.pos.len() <= id as usize {
            self.pos.resize(id as usize + 1, NONE);
        }
        match self.pos[id as usize] {
            NONE => {
                self.heap.push((at, id));
                let i = self.heap.len() - 1;
                self.pos[id as usize] = i as u32;
                self.up(i);
            }
            p => {
                let old = self.heap[p as usize].0;
                self.heap[p as usize].0 = at;
                if at < old {
                    self.up(p as usize);
                } else {
                    self.down(p as usize);
                }
            }
        }
    }

    /// Drops `id`'s deadline, if any.
    pub fn remove(&mut self, id: u32) {
        let Some(&p) = self.pos.get(id as usize) else {
            return;
        };
        if p == NONE {
            return;
        }
        let p = p as usize;
        self.pos[id as usize] = NONE;
        let last = self.heap.pop().expect("a placed id is in the heap");
        if p < self.heap.len() {
            self.heap[p] = last;
            self.pos[last.1 as usize] = p as u32;
            self.up(p);
            self.down(p);
        }
    }

    /// The earliest deadline and its id.
    pub fn peek(&self) -> Option<(u64, u32)> {
        self.heap.first().copied()
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.pos[self.heap[a].1 as usize] = a as u32;
        self.pos[self.heap[b].1 as usize] = b as u32;
    }

    fn up(&mut self, mut i: usize) {
        while i > 0 {
            let parent = (i - 1) / D;
            if self.heap[parent] <= self.heap[i] {
                break;
            }
            self.swap(parent, i);
            i = parent;
        }
    }

    fn down(&mut self, mut i: usize) {
        let n = self.heap.len();
        while let Some(min) = least_child(n, i, |a, b| self.heap[a] < self.heap[b]) {
            if self.heap[i] <= self.heap[min] {
                break;
            }
            self.swap(i, min);
            i = min;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Pops come out by time, ties in push order.
        #[test]
        fn pops_in_time_then_push_order(times in proptest::collection::vec(0u64..50, 0..300)) {
            let mut q = Queue::default();
            for (k, &t) in times.iter().enumerate() {
                q.push(t, k);
            }
            let mut expected: Vec<(u64, usize)> = times.iter().copied().zip(0..).collect();
            expected.sort();
            let got: Vec<(u64, usize)> = std::iter::from_fn(|| q.pop()).collect();
            prop_assert_eq!(got, expected);
        }

        /// Whatever the sets, moves and removals, the earliest deadline is
        /// the least of those standing.
        #[test]
        fn timers_track_the_earliest(ops in proptest::collection::vec((0u32..20, 0u64..100, any::<bool>()), 0..300)) {
            let mut t = Timers::default();
            let mut model = std::collections::BTreeMap::new();
            for (id, at, keep) in ops {
                if keep {
                    t.set(id, at);
                    model.insert(id, at);
                } else {
                    t.remove(id);
                    model.remove(&id);
                }
                let best = model.iter().map(|(&id, &at)| (at, id)).min();
                prop_assert_eq!(t.peek(), best);
            }
        }
    }
}
