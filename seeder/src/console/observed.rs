//! Controls the console did not issue (`pollen-seeder rollout` against the
//! running seeder, or another operator's tool): each one that comes into
//! force between two snapshots becomes a control-history entry, so the
//! history shows every control, not only the console's own.

use pollen_core::manifest::ManifestId;
use pollen_core::rollout::RolloutControl;

use super::audit::AuditEntry;
use super::fleet::Fleet;

/// Who an observed control is attributed to.
pub const ELSEWHERE: &str = "(signed elsewhere)";

/// History entries for the controls in force in `new` that were not in
/// force in `old`, that no entry of `history` names already (an audit log
/// read back after a restart), and that the console did not issue itself
/// (`ours(release, seq)`).
pub fn observed(
    old: &Fleet,
    new: &Fleet,
    history: &[AuditEntry],
    ours: impl Fn(&ManifestId, u64) -> bool,
) -> Vec<AuditEntry> {
    let mut out = Vec::new();
    for entry in &new.releases {
        let Some(c) = &entry.control else {
            continue;
        };
        let id = entry.manifest.id();
        let before = old
            .releases
            .iter()
            .find(|e| e.manifest.id() == id)
            .and_then(|e| e.control.as_ref());
        let m = entry.manifest.manifest();
        let named = history
            .iter()
            .any(|h| h.channel == m.channel && h.release == m.release && h.seq == Some(c.seq));
        if before.is_some_and(|b| b.seq == c.seq) || named || ours(&id, c.seq) {
            continue;
        }
        out.push(AuditEntry {
            time: c.issued_at,
            who: ELSEWHERE.into(),
            action: action(before, c).into(),
            channel: m.channel.clone(),
            release: m.release,
            result: "observed".into(),
            seq: Some(c.seq),
        });
    }
    out
}

/// What `now` did relative to `before` (the control it replaced, if seen).
fn action(before: Option<&RolloutControl>, now: &RolloutControl) -> &'static str {
    let was_halted = before.is_some_and(|b| b.halted);
    if now.halted && !was_halted {
        "halt"
    } else if !now.halted && was_halted {
        "resume"
    } else if now.promoted != before.and_then(|b| b.promoted) {
        "promote"
    } else {
        "control"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::fixture;
    use crate::console::views::ReleaseEntry;

    fn fleet(control: Option<RolloutControl>) -> Fleet {
        let mut entry: ReleaseEntry = fixture::release(3);
        entry.control = control;
        Fleet {
            releases: vec![entry],
            records: Vec::new(),
        }
    }

    #[test]
    fn a_control_from_elsewhere_is_recorded_once_with_what_it_did() {
        let e = fixture::release(3);
        let none = fleet(None);
        let halted = fleet(Some(fixture::control(&e, 4, None, true)));
        let got = observed(&none, &halted, &[], |_, _| false);
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].action.as_str(), got[0].seq), ("halt", Some(4)));
        assert_eq!(got[0].who, ELSEWHERE);
        // The same control in the next snapshot: nothing new.
        assert!(observed(&halted, &halted, &got, |_, _| false).is_empty());
        // Read back from the audit log after a restart: not again.
        assert!(observed(&none, &halted, &got, |_, _| false).is_empty());
        let resumed = fleet(Some(fixture::control(&e, 5, Some(1), false)));
        let got = observed(&halted, &resumed, &[], |_, _| false);
        assert_eq!(got[0].action, "resume");
        let promoted = fleet(Some(fixture::control(&e, 6, Some(2), false)));
        assert_eq!(
            observed(&resumed, &promoted, &[], |_, _| false)[0].action,
            "promote"
        );
    }

    #[test]
    fn the_consoles_own_controls_are_not_observed() {
        let e = fixture::release(3);
        let halted = fleet(Some(fixture::control(&e, 4, None, true)));
        let ours = |id: &ManifestId, seq: u64| *id == e.manifest.id() && seq == 4;
        assert!(observed(&fleet(None), &halted, &[], ours).is_empty());
    }
}
