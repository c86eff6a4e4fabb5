//! The choker of a standard client: every round the interested peers with
//! the best rates (download rate from them while leeching, upload rate to
//! them while seeding) get the regular unchoke slots, and one more peer,
//! chosen at random among the rest and kept between rotations, is unchoked
//! optimistically. Pure: the engine feeds it rates and random draws.

/// An interested peer in a choke round.
#[derive(Clone, Copy, Debug)]
pub struct Candidate {
    pub peer: u32,
    /// Bytes per second over the last round (from it, or to it when seeding).
    pub rate: f64,
    /// A random draw breaking ties between equal rates.
    pub tie: u64,
}

/// The peers to unchoke in the regular slots: the `slots` best by rate.
pub fn regular(cands: &[Candidate], slots: usize) -> Vec<u32> {
    let mut sorted: Vec<&Candidate> = cands.iter().collect();
    sorted.sort_by(|a, b| b.rate.total_cmp(&a.rate).then(a.tie.cmp(&b.tie)));
    sorted.iter().take(slots).map(|c| c.peer).collect()
}

/// The optimistic unchoke: `current` stays while it is still interested
/// and `rotate` is false; otherwise a candidate outside `regular`, chosen
/// by `draw`. `None` when every candidate has a regular slot.
pub fn optimistic(
    cands: &[Candidate],
    regular: &[u32],
    current: Option<u32>,
    rotate: bool,
    draw: u64,
) -> Option<u32> {
    let rest: Vec<u32> = cands
        .iter()
        .map(|c| c.peer)
        .filter(|p| !regular.contains(p))
        .collect();
    if let Some(cur) = current.filter(|c| !rotate && rest.contains(c)) {
        return Some(cur);
    }
    if rest.is_empty() {
        return None;
    }
    Some(rest[(draw % rest.len() as u64) as usize])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cands(rates: &[f64]) -> Vec<Candidate> {
        rates
            .iter()
            .enumerate()
            .map(|(i, &rate)| Candidate {
                peer: i as u32,
                rate,
                tie: 0,
            })
            .collect()
    }

    #[test]
    fn regular_slots_go_to_the_four_best_rates() {
        let c = cands(&[5.0, 1.0, 9.0, 3.0, 7.0, 0.0, 8.0]);
        let mut got = regular(&c, 4);
        got.sort_unstable();
        assert_eq!(got, vec![0, 2, 4, 6]);
        assert_eq!(regular(&c[..2], 4).len(), 2);
    }

    #[test]
    fn ties_break_by_the_draw() {
        let mut c = cands(&[1.0, 1.0, 1.0]);
        c[2].tie = 0;
        c[0].tie = 5;
        c[1].tie = 3;
        assert_eq!(regular(&c, 1), vec![2]);
    }

    #[test]
    fn optimistic_unchoke_stays_until_rotation_and_never_takes_a_regular_slot() {
        let c = cands(&[5.0, 1.0, 9.0, 3.0, 7.0, 0.0, 8.0]);
        let reg = regular(&c, 4);
        let mut seen = std::collections::BTreeSet::new();
        for draw in 0..30 {
            let o = optimistic(&c, &reg, None, true, draw).expect("someone");
            assert!(!reg.contains(&o));
            seen.insert(o);
        }
        // The three outside the regular slots all get their turn.
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec![1, 3, 5]);
        // Kept between rotations...
        assert_eq!(optimistic(&c, &reg, Some(5), false, 0), Some(5));
        // ...replaced at one (a draw that lands elsewhere).
        assert_eq!(optimistic(&c, &reg, Some(5), true, 0), Some(1));
        // ...and when it won a regular slot meanwhile.
        assert_eq!(optimistic(&c, &reg, Some(2), false, 1), Some(3));
        // Nobody left over.
        assert_eq!(
            optimistic(&c[..3], &regular(&c[..3], 4), None, true, 7),
            None
        );
    }
}
