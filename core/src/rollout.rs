//! Staged-rollout eligibility (DESIGN.md §6): a device's bucket is
//! `BLAKE3(device id, release) mod 10 000`; it takes part in a stage when its
//! bucket is below the stage's share in basis points. Widening a stage only
//! adds devices, never reshuffles them, and each release draws a fresh order
//! so the same devices are not always first.

use crate::manifest::{ManifestId, Rollout};

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

/// The share in force at `now` (seconds since the Unix epoch): the largest
/// stage whose start time has passed (a stage with no start time starts with
/// the release). `None` before the first stage starts.
pub fn current_share(rollout: &Rollout, now: u64) -> Option<u16> {
    rollout
        .stages
        .iter()
        .filter(|s| s.start_at.is_none_or(|t| t <= now))
        .map(|s| s.share)
        .max()
}

/// Whether `device_id` may install `release` under `rollout` at `now`.
pub fn eligible(device_id: &str, release: &ManifestId, rollout: &Rollout, now: u64) -> bool {
    current_share(rollout, now).is_some_and(|share| in_share(bucket(device_id, release), share))
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
        assert_eq!(current_share(&rollout, 10), Some(100));
        assert_eq!(current_share(&rollout, 1_500), Some(5000));
        assert_eq!(current_share(&rollout, 2_000), Some(10_000));
        let late = Rollout {
            stages: vec![RolloutStage {
                share: 100,
                start_at: Some(50),
            }],
            max_failures: None,
        };
        assert_eq!(current_share(&late, 10), None);
        assert!(!eligible("any", &ManifestId([0; 32]), &late, 10));
    }
}
