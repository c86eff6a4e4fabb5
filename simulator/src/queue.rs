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
        loop {
            let first = D * i + 1;
            if first >= n {
                break;
            }
            let last = (first + D).min(n);
            let mut min = first;
            for c in first + 1..last {
                if self.heap[c].key() < self.heap[min].key() {
                    min = c;
                }
            }
            if self.heap[i].key() <= self.heap[min].key() {
                break;
            }
            self.heap.swap(i, min);
            i = min;
        }
        Some((top.at, top.ev))
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
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
    }
}
