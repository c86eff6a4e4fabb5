//! Staged rollouts from the publisher's side: parsing `--stages` and
//! `--max-failures`, and working out the next rollout control (promote,
//! halt, resume) from the one in force.

use pollen_core::manifest::{ManifestId, Rollout, RolloutStage};
use pollen_core::rollout::{current_stage, RolloutControl};

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RolloutError {
    #[error("{0:?} is not a percentage between 0 and 100 (e.g. 10% or 0.5%)")]
    Percent(String),
    #[error("stage {stage:?}: {source}")]
    StageDelay {
        stage: String,
        source: humantime::DurationError,
    },
    #[error("stage {stage:?}: {source}")]
    StageTime {
        stage: String,
        source: std::num::ParseIntError,
    },
    #[error("stage {0:?}: no stages")]
    NoStages(String),
    #[error("stages must grow: {0}")]
    NotGrowing(String),
    #[error("already at the last stage ({0}%); nothing to promote")]
    LastStage(f64),
    #[error("the rollout is not halted")]
    NotHalted,
    #[error("the rollout is already halted")]
    AlreadyHalted,
}

/// A percentage (`20%`, `0.5%`, `20`) in basis points.
pub fn parse_percent(text: &str) -> Result<u16, RolloutError> {
    let bad = || RolloutError::Percent(text.to_owned());
    let v: f64 = text
        .trim()
        .trim_end_matches('%')
        .parse()
        .map_err(|_| bad())?;
    if !(0.0..=100.0).contains(&v) {
        return Err(bad());
    }
    Ok((v * 100.0).round() as u16)
}

/// Parses `1%,10%@+1h,50%@1767225600,100%`: each stage a share, optionally
/// `@+DURATION` (after `now`) or `@UNIX-SECONDS`. The first stage without a
/// time opens with the release; later ones without a time wait for
/// `pollen-seeder rollout promote`.
pub fn parse_stages(text: &str, now: u64) -> Result<Vec<RolloutStage>, RolloutError> {
    let mut stages = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (share, at) = match part.split_once('@') {
            Some((s, at)) => (s, Some(at.trim())),
            None => (part, None),
        };
        let share = parse_percent(share)?;
        let start_at = match at {
            None => None,
            Some(rel) if rel.starts_with('+') => {
                let d = humantime::parse_duration(&rel[1..]).map_err(|source| {
                    RolloutError::StageDelay {
                        stage: part.to_owned(),
                        source,
                    }
                })?;
                Some(now.saturating_add(d.as_secs()))
            }
            Some(abs) => Some(
                abs.parse::<u64>()
                    .map_err(|source| RolloutError::StageTime {
                        stage: part.to_owned(),
                        source,
                    })?,
            ),
        };
        if let Some(prev) = stages.last().map(|s: &RolloutStage| s.share) {
            if share <= prev {
                return Err(RolloutError::NotGrowing(text.to_owned()));
            }
        }
        stages.push(RolloutStage { share, start_at });
    }
    if stages.is_empty() {
        return Err(RolloutError::NoStages(text.to_owned()));
    }
    Ok(stages)
}

/// What the operator asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Promote,
    Halt,
    Resume,
}

/// The control that follows `current` (or the release's first) for `step`.
pub fn next_control(
    channel: &str,
    release: ManifestId,
    rollout: &Rollout,
    current: Option<&RolloutControl>,
    step: Step,
    now: u64,
) -> Result<RolloutControl, RolloutError> {
    let base = current
        .cloned()
        .unwrap_or_else(|| RolloutControl::initial(channel, release));
    let mut next = base.next(now);
    match step {
        Step::Halt if base.halted => return Err(RolloutError::AlreadyHalted),
        Step::Halt => next.halted = true,
        Step::Resume if !base.halted => return Err(RolloutError::NotHalted),
        Step::Resume => next.halted = false,
        Step::Promote => {
            let open = current_stage(rollout, base.promoted, now);
            let target = open.map_or(0, |i| i + 1);
            if target >= rollout.stages.len() {
                let share = rollout.stages.last().map_or(0, |s| s.share);
                return Err(RolloutError::LastStage(f64::from(share) / 100.0));
            }
            next.promoted = Some(target as u16);
        }
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stages_and_percentages() {
        assert_eq!(parse_percent("20%").expect("20%"), 2000);
        assert_eq!(parse_percent("0.5").expect("0.5"), 50);
        assert!(parse_percent("120%").is_err());
        assert!(parse_percent("ten").is_err());
        let s = parse_stages("1%, 10%@+1h, 50%@2000000000, 100%", 1000).expect("stages");
        assert_eq!(s.len(), 4);
        assert_eq!((s[0].share, s[0].start_at), (100, None));
        assert_eq!((s[1].share, s[1].start_at), (1000, Some(4600)));
        assert_eq!(s[2].start_at, Some(2_000_000_000));
        assert!(parse_stages("10%,5%", 0).is_err());
        assert!(parse_stages("", 0).is_err());
    }

    #[test]
    fn promote_halt_resume() {
        let rollout = Rollout {
            stages: parse_stages("10%,100%", 0).expect("stages"),
            max_failures: None,
        };
        let id = ManifestId([1; 32]);
        let p = next_control("s", id, &rollout, None, Step::Promote, 50).expect("promote");
        assert_eq!(p.promoted, Some(1));
        assert!(next_control("s", id, &rollout, Some(&p), Step::Promote, 51).is_err());
        let h = next_control("s", id, &rollout, Some(&p), Step::Halt, 52).expect("halt");
        assert!(h.halted && h.seq > p.seq && h.promoted == Some(1));
        assert!(next_control("s", id, &rollout, Some(&h), Step::Halt, 53).is_err());
        let r = next_control("s", id, &rollout, Some(&h), Step::Resume, 53).expect("resume");
        assert!(!r.halted && r.seq > h.seq);
    }
}
