//! The choker, as aria2 1.36 runs it (`BtLeecherStateChoke`,
//! `BtSeederStateChoke`), and the transfer-rate window it ranks peers by
//! (`SpeedCalc`). Pure: the engine hands it one entry per connected peer
//! and random draws, and applies what it decides.
//!
//! A choke round (aria2 runs one every 10 s, and at once when a choked
//! peer says `INTERESTED` or an unchoked one `NOT_INTERESTED`) first marks
//! every peer for choking, then:
//! - leeching: every third round a random choked, interested peer becomes
//!   the optimistic unchoke; then the peers that are interested and sent a
//!   block in the last 30 s are sorted by download rate from them, the
//!   others shuffled behind them, and the first `slots` entries of that
//!   list are unchoked when interested (an uninterested one still uses up
//!   its entry). An optimistic unchoke that wins a regular slot is moved
//!   to the first interested entry.
//! - seeding: the interested peers sorted with those that still have
//!   requests being served first, then those unchoked in the last 20 s
//!   (most recent first), then by upload rate; the first `slots` (one more
//!   every third round) are unchoked, and in the other two rounds of three
//!   a random one of the rest becomes the optimistic unchoke.
//!
//! A peer ends up unchoked when it is not marked or is the optimistic one.

use std::collections::VecDeque;

/// Seconds a transfer rate looks back (aria2's `SpeedCalc` window).
pub const RATE_WINDOW_S: f64 = 10.0;
/// A leecher's regular unchoke goes to peers that sent a block this recently.
pub const RECENT_BLOCK_S: f64 = 30.0;
/// A seeder keeps preferring peers it unchoked this recently.
pub const RECENT_UNCHOKE_S: f64 = 20.0;

/// Bytes moved over the last [`RATE_WINDOW_S`], in one-second slots.
#[derive(Debug, Default)]
pub struct Rate {
    slots: VecDeque<(f64, u64)>,
}

impl Rate {
    fn prune(&mut self, now: f64) {
        while self
            .slots
            .front()
            .is_some_and(|s| now - s.0 > RATE_WINDOW_S)
        {
            self.slots.pop_front();
        }
    }

    /// Counts `bytes` moved at `now`.
    pub fn add(&mut self, now: f64, bytes: u64) {
        self.prune(now);
        match self.slots.back_mut() {
            Some(last) if now - last.0 < 1.0 => last.1 += bytes,
            _ => self.slots.push_back((now, bytes)),
        }
    }

    /// Bytes per second: the window's bytes over the time since its oldest slot.
    pub fn get(&mut self, now: f64) -> f64 {
        self.prune(now);
        let Some(first) = self.slots.front() else {
            return 0.0;
        };
        let bytes: u64 = self.slots.iter().map(|s| s.1).sum();
        bytes as f64 / (now - first.0).max(0.001)
    }
}

/// One connected peer in a choke round.
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    /// The engine's handle for the peer.
    pub link: u32,
    /// It is interested in us.
    pub interested: bool,
    /// We choke it now.
    pub am_choking: bool,
    /// Leeching: its download rate to us; seeding: our upload rate to it.
    pub rate: f64,
    /// Leeching: it sent us a block in the last [`RECENT_BLOCK_S`].
    pub recent_block: bool,
    /// Seeding: its requests are being served.
    pub outstanding: bool,
    /// Seeding: when we last unchoked it, if in the last [`RECENT_UNCHOKE_S`].
    pub recent_unchoke: Option<f64>,
    /// In: it holds the optimistic unchoke; out: it holds it after the round.
    pub optimistic: bool,
    /// Out: marked for choking.
    pub choke: bool,
}

/// Shuffles `v` with `draw` (Fisher-Yates).
pub fn shuffle<T>(v: &mut [T], draw: &mut impl FnMut() -> u64) {
    for i in (1..v.len()).rev() {
        let j = (draw() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
}

/// A leecher's round number `round` (0, 1, 2, 0, ...) over `peers`; the
/// entries come back reordered, each with `choke` and `optimistic` set.
pub fn leecher(peers: &mut [Entry], slots: usize, round: u32, draw: &mut impl FnMut() -> u64) {
    for p in peers.iter_mut() {
        p.choke = true;
    }
    if round == 0 {
        for p in peers.iter_mut() {
            p.optimistic = false;
        }
        let mut waiting: Vec<usize> = (0..peers.len())
            .filter(|&i| peers[i].am_choking && peers[i].interested)
            .collect();
        shuffle(&mut waiting, draw);
        if let Some(&i) = waiting.first() {
            peers[i].optimistic = true;
        }
    }
    // Regular unchokers first, best rate first; the rest shuffled.
    peers.sort_by_key(|p| !(p.interested && p.recent_block));
    let regular = peers
        .iter()
        .filter(|p| p.interested && p.recent_block)
        .count();
    peers[..regular].sort_by(|a, b| b.rate.total_cmp(&a.rate));
    shuffle(&mut peers[regular..], draw);
    let mut moved = false;
    for p in peers.iter_mut().take(slots) {
        if !p.interested {
            continue;
        }
        p.choke = false;
        if p.optimistic {
            p.optimistic = false;
            moved = true;
        }
    }
    if moved {
        if let Some(p) = peers.iter_mut().find(|p| p.interested) {
            p.optimistic = true;
        }
    }
}

/// A seeder's round number `round` (0, 1, 2, 0, ...) over `peers` (the
/// uninterested ones are marked and lose an optimistic unchoke); the
/// entries come back reordered, each with `choke` and `optimistic` set.
pub fn seeder(peers: &mut [Entry], slots: usize, round: u32, draw: &mut impl FnMut() -> u64) {
    for p in peers.iter_mut() {
        p.choke = true;
        if !p.interested {
            p.optimistic = false;
        }
    }
    peers.sort_by_key(|p| !p.interested);
    let n = peers.iter().filter(|p| p.interested).count();
    let list = &mut peers[..n];
    list.sort_by(|a, b| {
        b.outstanding
            .cmp(&a.outstanding)
            .then_with(|| match (a.recent_unchoke, b.recent_unchoke) {
                (Some(x), Some(y)) => y.total_cmp(&x),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => b.rate.total_cmp(&a.rate),
            })
    });
    let count = if round == 2 { slots + 1 } else { slots };
    let take = count.min(n);
    for p in list[..take].iter_mut() {
        p.choke = false;
    }
    if round < 2 {
        for p in list.iter_mut() {
            p.optimistic = false;
        }
        let rest = &mut list[take..];
        shuffle(rest, draw);
        if let Some(p) = rest.first_mut() {
            p.optimistic = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(link: u32, interested: bool, rate: f64) -> Entry {
        Entry {
            link,
            interested,
            am_choking: true,
            rate,
            recent_block: rate > 0.0,
            outstanding: false,
            recent_unchoke: None,
            optimistic: false,
            choke: false,
        }
    }

    fn unchoked(peers: &[Entry]) -> Vec<u32> {
        let mut v: Vec<u32> = peers
            .iter()
            .filter(|p| !p.choke || p.optimistic)
            .map(|p| p.link)
            .collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn rate_is_bytes_over_the_last_ten_seconds() {
        let mut r = Rate::default();
        assert_eq!(r.get(0.0), 0.0);
        r.add(0.0, 1000);
        r.add(0.5, 1000);
        r.add(2.0, 2000);
        assert!((r.get(4.0) - 1000.0).abs() < 1e-9);
        // The first slot (t = 0) leaves the window after 10 s.
        assert!((r.get(10.5) - 2000.0 / 8.5).abs() < 1e-9);
        assert_eq!(r.get(13.0), 0.0);
    }

    #[test]
    fn leecher_unchokes_the_three_best_recent_senders() {
        let mut peers = vec![
            entry(0, true, 5.0),
            entry(1, true, 1.0),
            entry(2, true, 9.0),
            entry(3, true, 3.0),
            entry(4, false, 7.0),
            entry(5, true, 8.0),
        ];
        let mut d = 0u64;
        let mut draw = || {
            d += 1;
            d
        };
        leecher(&mut peers, 3, 1, &mut draw);
        assert_eq!(unchoked(&peers), vec![0, 2, 5]);
    }

    #[test]
    fn leecher_without_senders_unchokes_random_entries_and_an_uninterested_one_uses_its_entry() {
        // Nobody has sent anything yet: the three slots go to the first
        // three of a shuffled list, the uninterested one unchoked by none.
        let mut seen = std::collections::BTreeSet::new();
        let mut fewer = false;
        for seed in 0..200u64 {
            let mut peers: Vec<Entry> = (0..6).map(|i| entry(i, i != 4, 0.0)).collect();
            let mut s = seed;
            let mut draw = || {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                s >> 33
            };
            leecher(&mut peers, 3, 1, &mut draw);
            let got = unchoked(&peers);
            assert!(!got.contains(&4));
            fewer |= got.len() < 3;
            seen.extend(got);
        }
        assert!(
            fewer,
            "an uninterested peer among the first three takes a slot"
        );
        assert_eq!(seen.len(), 5);
    }

    #[test]
    fn leecher_draws_an_optimistic_unchoke_every_third_round_only() {
        let mut peers: Vec<Entry> = (0..6).map(|i| entry(i, true, i as f64)).collect();
        let mut draw = || 0;
        leecher(&mut peers, 3, 0, &mut draw);
        let opt: Vec<u32> = peers
            .iter()
            .filter(|p| p.optimistic)
            .map(|p| p.link)
            .collect();
        assert_eq!(opt.len(), 1);
        assert!(opt[0] < 3, "the optimistic one is outside the best three");
        assert_eq!(unchoked(&peers).len(), 4);
        // Rounds 1 and 2 keep it.
        for p in peers.iter_mut() {
            p.am_choking = p.choke && !p.optimistic;
        }
        leecher(&mut peers, 3, 1, &mut draw);
        let again: Vec<u32> = peers
            .iter()
            .filter(|p| p.optimistic)
            .map(|p| p.link)
            .collect();
        assert_eq!(again, opt);
    }

    #[test]
    fn seeder_prefers_peers_being_served_then_recent_unchokes_then_rate() {
        let mut peers: Vec<Entry> = (0..6).map(|i| entry(i, true, i as f64)).collect();
        peers[0].outstanding = true;
        peers[1].recent_unchoke = Some(5.0);
        peers[2].recent_unchoke = Some(7.0);
        let mut draw = || 0;
        seeder(&mut peers, 3, 2, &mut draw);
        // Round 2: four slots, no new optimistic unchoke.
        assert_eq!(unchoked(&peers), vec![0, 1, 2, 5]);
        let mut peers: Vec<Entry> = (0..6).map(|i| entry(i, true, i as f64)).collect();
        seeder(&mut peers, 3, 0, &mut draw);
        assert_eq!(peers.iter().filter(|p| p.optimistic).count(), 1);
        assert_eq!(unchoked(&peers).len(), 4);
        // Nobody recent or served: the best upload rates, and one of the rest.
        let got = unchoked(&peers);
        assert!(got.ends_with(&[3, 4, 5]), "{got:?}");
    }
}
