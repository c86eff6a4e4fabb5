//! Fleet summaries: status records grouped per release and rollout stage,
//! the numbers `pollen-seeder status` shows and the failure rate the
//! seeder's automatic halt watches.

use serde::Serialize;

use crate::manifest::{ManifestId, Rollout};
use crate::rollout::{bucket, stage_of};
use crate::status::{Phase, StatusRecord};

/// Devices of one stage of one release, by where they are.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StageCounts {
    /// The stage's share in basis points.
    pub share: u16,
    /// Devices whose record mentions the release (as target or installed).
    pub seen: u32,
    pub downloading: u32,
    /// Complete and verified, waiting (stage not open, halted, deferred).
    pub waiting: u32,
    /// Staged or switched, pending the health check.
    pub installing: u32,
    pub installed: u32,
    pub failed: u32,
    pub rolled_back: u32,
}

impl StageCounts {
    /// Failed or rolled back, in basis points of the devices seen (0 when none seen).
    pub fn failure_rate(&self) -> u32 {
        match self.seen {
            0 => 0,
            seen => (self.failed + self.rolled_back) * 10_000 / seen,
        }
    }

    fn count(&mut self, record: &StatusRecord, release: &ManifestId) {
        self.seen += 1;
        let on_target = record
            .target
            .as_ref()
            .is_some_and(|t| t.manifest == *release);
        let installed = record
            .installed
            .as_ref()
            .is_some_and(|t| t.manifest == *release);
        if installed {
            self.installed += 1;
            return;
        }
        if !on_target {
            return;
        }
        match record.phase {
            Phase::Downloading | Phase::Idle => self.downloading += 1,
            Phase::Verified => self.waiting += 1,
            Phase::Staged | Phase::Switched => self.installing += 1,
            Phase::Committed => self.installed += 1,
            Phase::Failed => self.failed += 1,
            Phase::RolledBack => self.rolled_back += 1,
        }
    }
}

/// Counts per stage of `release` (index `i` is stage `i` of `rollout`);
/// each device is counted in the first stage that covers its bucket.
pub fn stage_counts<'a>(
    release: &ManifestId,
    rollout: &Rollout,
    records: impl IntoIterator<Item = &'a StatusRecord>,
) -> Vec<StageCounts> {
    let mut stages: Vec<StageCounts> = rollout
        .stages
        .iter()
        .map(|s| StageCounts {
            share: s.share,
            ..StageCounts::default()
        })
        .collect();
    for r in records {
        let mentions = [&r.target, &r.installed]
            .into_iter()
            .flatten()
            .any(|t| t.manifest == *release);
        if !mentions {
            continue;
        }
        if let Some(i) = stage_of(rollout, bucket(&r.device, release)) {
            stages[i].count(r, release);
        }
    }
    stages
}

/// The first stage whose failure rate is over `max_failures` basis points
/// (with at least one failure), if any: the seeder halts the rollout then.
pub fn over_threshold(stages: &[StageCounts], max_failures: u16) -> Option<usize> {
    stages
        .iter()
        .position(|s| s.failed + s.rolled_back > 0 && s.failure_rate() > u32::from(max_failures))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::RolloutStage;
    use crate::status::ReleaseRef;

    fn rec(device: &str, release: ManifestId, phase: Phase, installed: bool) -> StatusRecord {
        let r = ReleaseRef {
            manifest: release,
            release: 2,
            version: "2".into(),
        };
        StatusRecord {
            device: device.into(),
            site: None,
            hardware: None,
            channel: "stable".into(),
            installed: installed.then(|| r.clone()),
            target: Some(r),
            phase,
            note: None,
            last_error: None,
            attempts: 1,
            traffic: Default::default(),
            seq: 1,
        }
    }

    #[test]
    fn counts_by_stage_and_flags_the_failing_one() {
        let id = ManifestId([8; 32]);
        let rollout = Rollout {
            stages: vec![
                RolloutStage {
                    share: 5_000,
                    start_at: None,
                },
                RolloutStage {
                    share: 10_000,
                    start_at: None,
                },
            ],
            max_failures: Some(2_000),
        };
        let devices: Vec<String> = (0..40).map(|i| format!("dev-{i}")).collect();
        let first: Vec<&String> = devices.iter().filter(|d| bucket(d, &id) < 5_000).collect();
        assert!(first.len() >= 5, "too few devices in stage 0");
        let mut records = Vec::new();
        for (i, d) in first.iter().enumerate() {
            let phase = if i < 2 {
                Phase::RolledBack
            } else {
                Phase::Committed
            };
            records.push(rec(d, id, phase, i >= 2));
        }
        // A device on another release is not counted.
        records.push(rec(
            "elsewhere",
            ManifestId([1; 32]),
            Phase::Committed,
            true,
        ));
        let stages = stage_counts(&id, &rollout, &records);
        assert_eq!(stages[0].seen as usize, first.len());
        assert_eq!(stages[0].rolled_back, 2);
        assert_eq!(stages[0].installed as usize, first.len() - 2);
        assert_eq!(stages[1].seen, 0);
        let rate = stages[0].failure_rate();
        assert_eq!(rate, 20_000 / first.len() as u32);
        assert_eq!(over_threshold(&stages, (rate - 1) as u16), Some(0));
        assert_eq!(over_threshold(&stages, rate as u16), None);
    }
}
