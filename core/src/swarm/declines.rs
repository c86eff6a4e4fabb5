//! The chunks one peer declined lately, each until a time: a bit per chunk
//! for the scheduler's hot loops (allocated only once the peer declines
//! something), and the expiries that clear them.

use std::time::Duration;

use super::Bitfield;

#[derive(Clone, Debug, Default)]
pub(crate) struct Declines(Option<Box<Declined>>);

/// What a peer that declined something declined (boxed: most peers never
/// decline anything, and a node keeps a [`Declines`] per peer).
#[derive(Clone, Debug)]
struct Declined {
    /// Chunk and until when, one entry per chunk.
    until: Vec<(u32, Duration)>,
    bits: Bitfield,
}

impl Declines {
    /// Nothing declined.
    pub const NONE: Self = Self(None);

    /// `index` (of `chunks`) is declined until `until` (replacing an
    /// earlier time for it).
    pub fn add(&mut self, index: u32, until: Duration, chunks: u32) {
        let d = self.0.get_or_insert_with(|| {
            Box::new(Declined {
                until: Vec::new(),
                bits: Bitfield::new(chunks),
            })
        });
        d.until.retain(|&(i, _)| i != index);
        d.until.push((index, until));
        d.bits.set(index);
    }

    pub fn contains(&self, index: u32) -> bool {
        self.0.as_ref().is_some_and(|d| d.bits.get(index))
    }

    /// The declined chunks' words (`None`: none).
    pub fn words(&self) -> Option<&[u64]> {
        self.0.as_ref().map(|d| d.bits.words())
    }

    /// Forgets what was declined until `now` or earlier.
    pub fn expire(&mut self, now: Duration) {
        let Some(d) = &mut self.0 else {
            return;
        };
        let bits = &mut d.bits;
        d.until.retain(|&(i, t)| {
            let keep = t > now;
            if !keep {
                bits.clear(i);
            }
            keep
        });
        if d.until.is_empty() {
            self.0 = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn declines_last_until_they_expire() {
        let mut d = Declines::default();
        assert!(d.words().is_none());
        d.add(3, S(10), 64);
        d.add(5, S(20), 64);
        d.add(3, S(30), 64);
        assert!(d.contains(3) && d.contains(5) && !d.contains(4));
        d.expire(S(20));
        assert!(d.contains(3) && !d.contains(5), "3 was renewed to 30 s");
        d.expire(S(30));
        assert!(d.0.is_none() && d.words().is_none() && !d.contains(3));
    }
}
