//! Super-seeding for a publisher's server: how often each chunk of the
//! release has gone out, so that with sites sharing across their uplinks
//! the server sends a chunk again only once every chunk has gone out as
//! often. On release day the fleet gets about one copy from the publisher;
//! a requester that finds no other holder is served in the next round.

/// Sends per chunk of one release.
#[derive(Clone, Debug)]
pub struct Spread {
    /// Per chunk: responses started.
    sends: Vec<u32>,
    /// `level[k]`: chunks sent exactly `base + k` times.
    level: Vec<u32>,
    /// The fewest sends of any chunk.
    base: u32,
}

impl Spread {
    /// For a release of `chunks` unique chunks, none sent.
    pub fn new(chunks: u32) -> Self {
        Self {
            sends: vec![0; chunks as usize],
            level: vec![chunks],
            base: 0,
        }
    }

    /// Whether to decline `index` now: it went out more often than some other chunk.
    pub fn declines(&self, index: u32) -> bool {
        self.sends
            .get(index as usize)
            .is_some_and(|&s| s > self.base)
    }

    /// Chunks not yet sent as often as the rest (the current round's).
    pub fn behind(&self) -> u32 {
        self.level.first().copied().unwrap_or(0)
    }

    /// A response for `index` started.
    pub fn sent(&mut self, index: u32) {
        let Some(s) = self.sends.get_mut(index as usize) else {
            return;
        };
        let k = (*s - self.base) as usize;
        *s += 1;
        self.level[k] -= 1;
        if self.level.len() <= k + 1 {
            self.level.push(0);
        }
        self.level[k + 1] += 1;
        while self.level.len() > 1 && self.level[0] == 0 {
            self.level.remove(0);
            self.base += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_chunk_goes_out_once_before_any_goes_twice() {
        let mut s = Spread::new(3);
        assert!(!s.declines(0));
        s.sent(0);
        assert!(s.declines(0) && !s.declines(1) && !s.declines(2));
        assert_eq!(s.behind(), 2);
        s.sent(1);
        s.sent(2);
        // A round done: every chunk may go out again.
        assert!(!s.declines(0));
        s.sent(0);
        s.sent(0);
        assert!(s.declines(0) && !s.declines(1));
        assert!(!s.declines(99), "unknown chunks are not declined here");
    }
}
