//! Staged-rollout eligibility (DESIGN.md §6): a device's bucket is
//! `BLAKE3(device id, release) mod 10 000`; it takes part in a stage when its
//! bucket is below the stage's share in basis points. Widening a stage only
//! adds devices, never reshuffles them, and each release draws a fresh order
//! so the same devices are not always first.

mod control;
pub(crate) use control::SIGNING_CONTEXT;

use crate::manifest::{ManifestId, Rollout};

pub use control::{
    ControlError, RolloutControl, SignedControl, VerifiedControl, MAX_CONTROL_BYTES,
    MAX_SEQ_AHEAD_MS,
};

/// Basis points in the whole fleet.
pub const FLEET: u16 = 10_000;

/// The device's bucket for a release, in `0..10 000`.
pub fn bucket(device_id: &str, release: &ManifestId) -> u16 {
    let mut h = blake3::Hasher::new_derive_key("pollen rollout bucket v1");
    h.update(&release.0);
    h.update(device_id.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d.as_bytes()[..8]);
    (u64::from_le_bytes(b) % u64::from(FLEET)) as u16
}

/// Whether a device with this bucket is in a stage of `share` basis points.
pub fn in_share(bucket: u16, share: u16) -> bool {
    bucket < share
}

/// The index of the stage in force at `now` (seconds since the Unix epoch):
/// the last stage that is open. The first stage opens at its start time (or
/// with the release when it has none); a later stage opens at its start time,
/// or, when it has none, only when a rollout control promotes it. Every
/// stage up to `promoted` is open whatever its start time. `None` before
/// the first stage opens.
pub fn current_stage(rollout: &Rollout, promoted: Option<u16>, now: u64) -> Option<usize> {
    rollout
        .stages
        .iter()
        .enumerate()
        .filter(|(i, s)| {
            let by_time = match s.start_at {
                Some(t) => t <= now,
                None => *i == 0,
            };
            by_time || promoted.is_some_and(|p| *i <= usize::from(p))
        })
        .map(|(i, _)| i)
        .max()
}

/// The share in force (see [`current_stage`]); shares only grow along the
/// stages, so this is the largest share open.
pub fn current_share(rollout: &Rollout, promoted: Option<u16>, now: u64) -> Option<u16> {
    let stage = current_stage(rollout, promoted, now)?;
    rollout.stages[..=stage].iter().map(|s| s.share).max()
}

/// The first stage whose share covers `bucket`: the stage a device joins in.
pub fn stage_of(rollout: &Rollout, bucket: u16) -> Option<usize> {
    rollout
        .stages
        .iter()
        .position(|s| in_share(bucket, s.share))
}

/// What a device does with a complete, verified release.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Its stage is open: install.
    Install,
    /// Its stage has not opened yet: keep the chunks (and serve them), wait.
    NotYet,
    /// The publisher halted the rollout: do not install.
    Halted,
}

/// Whether `device_id` may install `release` under `rollout` at `now`,
/// given the newest verified control for the release (if any).
pub fn decide(
    device_id: &str,
    release: &ManifestId,
    rollout: &Rollout,
    control: Option<&RolloutControl>,
    now: u64,
) -> Decision {
    if control.is_some_and(|c| c.halted) {
        return Decision::Halted;
    }
    let promoted = control.and_then(|c| c.promoted);
    match current_share(rollout, promoted, now) {
        Some(share) if in_share(bucket(device_id, release), share) => Decision::Install,
        _ => Decision::NotYet,
    }
}

/// Whether `device_id` may install `release` under `rollout` at `now` (no control).
pub fn eligible(device_id: &str, release: &ManifestId, rollout: &Rollout, now: u64) -> bool {
    decide(device_id, release, rollout, None, now) == Decision::Install
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::RolloutStage;

    fn devices(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("device-{i:04}")).collect()
    }

    #[test]
    fn one_percent_of_200_is_stable_when_widened() {
        let release = ManifestId([7; 32]);
        let ids = devices(200);
        let pick = |share| -> Vec<&String> {
            ids.iter()
                .filter(|d| in_share(bucket(d, &release), share))
                .collect()
        };
        let one = pick(100);
        let ten = pick(1000);
        // Deterministic: the same call gives the same devices.
        assert_eq!(one, pick(100));
        // Expected counts: 1 % of 200 is 2 and 10 % is 20, within binomial spread.
        assert!(one.len() <= 8, "{} devices at 1 %", one.len());
        assert!(
            (8..=34).contains(&ten.len()),
            "{} devices at 10 %",
            ten.len()
        );
        // Widening only adds.
        assert!(one.iter().all(|d| ten.contains(d)));
        println!("1 %: {:?}; 10 %: {} devices", one, ten.len());
    }

    #[test]
    fn buckets_differ_between_releases_and_spread_evenly() {
        let ids = devices(10_000);
        let a = ManifestId([1; 32]);
        let b = ManifestId([2; 32]);
        let in_a: Vec<bool> = ids.iter().map(|d| bucket(d, &a) < 1000).collect();
        let in_b: Vec<bool> = ids.iter().map(|d| bucket(d, &b) < 1000).collect();
        let count_a = in_a.iter().filter(|&&x| x).count();
        assert!((900..=1100).contains(&count_a), "{count_a}");
        let both = in_a.iter().zip(&in_b).filter(|(x, y)| **x && **y).count();
        assert!(
            both < 200,
            "first stages of two releases overlap in {both} devices"
        );
    }

    #[test]
    fn stages_open_with_time() {
        let rollout = Rollout {
            stages: vec![
                RolloutStage {
                    share: 100,
                    start_at: None,
                },
                RolloutStage {
                    share: 5000,
                    start_at: Some(1_000),
                },
                RolloutStage {
                    share: 10_000,
                    start_at: Some(2_000),
                },
            ],
            max_failures: None,
        };
        assert_eq!(current_share(&rollout, None, 10), Some(100));
        assert_eq!(current_share(&rollout, None, 1_500), Some(5000));
        assert_eq!(current_share(&rollout, None, 2_000), Some(10_000));
        // A promotion opens stages before their time.
        assert_eq!(current_share(&rollout, Some(1), 10), Some(5000));
        assert_eq!(current_share(&rollout, Some(2), 10), Some(10_000));
        let late = Rollout {
            stages: vec![RolloutStage {
                share: 100,
                start_at: Some(50),
            }],
            max_failures: None,
        };
        assert_eq!(current_share(&late, None, 10), None);
        assert!(!eligible("any", &ManifestId([0; 32]), &late, 10));
    }

    fn manual(shares: &[u16]) -> Rollout {
        Rollout {
            stages: shares
                .iter()
                .map(|&share| RolloutStage {
                    share,
                    start_at: None,
                })
                .collect(),
            max_failures: None,
        }
    }

    #[test]
    fn later_stages_without_a_time_wait_for_promotion() {
        let r = manual(&[100, 1000, 10_000]);
        assert_eq!(current_stage(&r, None, 5), Some(0));
        assert_eq!(current_stage(&r, Some(1), 5), Some(1));
        assert_eq!(current_stage(&r, Some(9), 5), Some(2));
        assert_eq!(stage_of(&r, 99), Some(0));
        assert_eq!(stage_of(&r, 100), Some(1));
        assert_eq!(stage_of(&r, 9_999), Some(2));
    }

    #[test]
    fn halt_overrides_every_stage() {
        let r = manual(&[10_000]);
        let id = ManifestId([3; 32]);
        let mut c = RolloutControl {
            channel: "stable".into(),
            release: id,
            seq: 1,
            promoted: None,
            halted: false,
            issued_at: 0,
        };
        assert_eq!(decide("d", &id, &r, Some(&c), 0), Decision::Install);
        c.halted = true;
        assert_eq!(decide("d", &id, &r, Some(&c), 0), Decision::Halted);
        // A device outside the open stage waits; promoted in, it installs.
        let staged = manual(&[0, 10_000]);
        assert_eq!(decide("d", &id, &staged, None, 0), Decision::NotYet);
        c.halted = false;
        c.promoted = Some(1);
        assert_eq!(decide("d", &id, &staged, Some(&c), 0), Decision::Install);
    }
}
