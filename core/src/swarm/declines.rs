//! The chunks one peer declined lately, each until a time: a bit per chunk
//! for the scheduler's hot loops (allocated only once the peer declines
//! something), and the expiries that clear them.

use std::time::Duration;

use super::Bitfield;

#[derive(Clone, Debug, Default)]
pub(crate) struct Declines {
    /// Chunk and until when, one entry per chunk.
    until: Vec<(u32, Duration)>,
    bits: Option<Bitfield>,
}

impl Declines {
    /// `index` (of `chunks`) is declined until `until` (replacing an
    /// earlier time for it).
    pub fn add(&mut self, index: u32, until: Duration, chunks: u32) {
        self.until.retain(|&(i, _)| i != index);
        self.until.push((index, until));
        self.bits
            .get_or_insert_with(|| Bitfield::new(chunks))
            .set(index);
    }

    pub fn contains(&self, index: u32) -> bool {
        self.bits.as_ref().is_some_and(|b| b.get(index))
    }

    /// The declined chunks' words (`None`: none).
    pub fn words(&self) -> Option<&[u64]> {
        self.bits.as_ref().map(|b| b.words())
    }

    /// Forgets what was declined until `now` or earlier.
    pub fn expire(&mut self, now: Duration) {
        if self.until.is_empty() {
            return;
        }
        let bits = &mut self.bits;
        self.until.retain(|&(i, t)| {
            let keep = t > now;
            if !keep {
                if let Some(b) = bits.as_mut() {
                    b.clear(i);
                }
            }
            keep
        });
        if self.until.is_empty() {
            self.bits = None;
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
        assert!(d.until.is_empty() && d.words().is_none() && !d.contains(3));
    }
}
