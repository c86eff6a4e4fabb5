//! The lifecycle against an in-memory store and real slot directories.

use std::sync::Arc;
use std::time::Duration;

use pollen_core::status::Phase;

use super::*;
use crate::store::tests::{artifact, manifest_for, verified};
use crate::store::MemStore;

struct Device {
    _tmp: tempfile::TempDir,
    store: Arc<MemStore>,
    config: UpdateConfig,
}

fn device(hooks: Hooks) -> Device {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = UpdateConfig {
        data_dir: tmp.path().to_owned(),
        channel: "stable".into(),
        hooks: Hooks {
            timeout: Duration::from_secs(20),
            ..hooks
        },
        max_attempts: 2,
    };
    Device {
        _tmp: tmp,
        store: Arc::new(MemStore::default()),
        config,
    }
}

/// Release `n`: its chunks put in the device's store, its manifest verified.
fn release(d: &Device, n: u64) -> VerifiedManifest {
    let data = artifact(100_000 + n as usize * 7_000);
    let (mut m, cs) = manifest_for(&data);
    m.release = n;
    m.version = format!("{n}.0.0");
    for c in &cs {
        d.store.put_chunk(c.clone().into_verified()).expect("put");
    }
    verified(m)
}

fn updater(d: &Device) -> Updater {
    Updater::open(d.store.clone(), d.config.clone()).expect("open")
}

fn active_release(u: &Updater) -> Option<u64> {
    let slot = u.slots().active().expect("active")?;
    let info = u
        .slots()
        .info(slot)
        .expect("info")
        .expect("active slot is complete");
    let bytes = std::fs::read(u.slots().artifact(slot)).expect("artifact");
    assert_eq!(hex::encode(blake3::hash(&bytes).as_bytes()), info.blake3);
    Some(info.release)
}

#[test]
fn good_release_commits_and_raises_the_floor() {
    let d = device(Hooks::default());
    let mut u = updater(&d);
    let v1 = release(&d, 1);
    assert_eq!(u.install(&v1, false).expect("install"), Outcome::Committed);
    assert_eq!(u.record().phase, Phase::Committed);
    assert_eq!(active_release(&u), Some(1));
    assert_eq!(store::floor(d.store.as_ref(), "stable").expect("floor"), 1);
    // Installing it again does nothing; v2 goes to the other slot.
    assert_eq!(u.install(&v1, false).expect("again"), Outcome::Nothing);
    let v2 = release(&d, 2);
    assert_eq!(u.install(&v2, false).expect("v2"), Outcome::Committed);
    assert_eq!(u.slots().active().expect("active"), Some(Slot::B));
    assert_eq!(active_release(&u), Some(2));
    // An older release is never installed over a newer one.
    let mut u = updater(&d);
    assert_eq!(u.install(&v1, false).expect("older"), Outcome::Nothing);
    assert_eq!(active_release(&u), Some(2));
}

#[test]
fn failing_health_check_rolls_back_and_is_not_retried() {
    let d = device(Hooks {
        health: Some(
            r#"test "$POLLEN_RELEASE" != 2 || { echo "service did not start" >&2; exit 1; }"#
                .into(),
        ),
        ..Hooks::default()
    });
    let mut u = updater(&d);
    u.install(&release(&d, 1), false).expect("v1");
    let v2 = release(&d, 2);
    assert_eq!(u.install(&v2, false).expect("v2"), Outcome::RolledBack);
    assert_eq!(u.record().phase, Phase::RolledBack);
    assert!(u
        .record()
        .last_error
        .as_deref()
        .is_some_and(|e| e.contains("service did not start")));
    assert_eq!(active_release(&u), Some(1));
    assert_eq!(store::floor(d.store.as_ref(), "stable").expect("floor"), 1);
    assert_eq!(
        u.install(&v2, false).expect("again"),
        Outcome::Nothing,
        "retried a rolled-back release"
    );
    // The record survives a restart.
    assert_eq!(updater(&d).record(), u.record());
}

#[test]
fn precondition_defers_without_spending_attempts() {
    let mut d = device(Hooks::default());
    let flag = d.config.data_dir.join("battery-ok");
    d.config.hooks.precondition = Some(format!("test -e '{}'", flag.display()));
    let mut u = updater(&d);
    let v1 = release(&d, 1);
    for _ in 0..3 {
        assert_eq!(u.install(&v1, false).expect("deferred"), Outcome::Deferred);
    }
    assert_eq!(u.record().attempts, 0);
    assert_eq!(u.record().phase, Phase::Verified);
    std::fs::write(&flag, b"").expect("write");
    assert_eq!(u.install(&v1, false).expect("install"), Outcome::Committed);
}

#[test]
fn failing_install_hook_is_retried_then_given_up() {
    let d = device(Hooks {
        install: Some("exit 4".into()),
        ..Hooks::default()
    });
    let mut u = updater(&d);
    let v1 = release(&d, 1);
    assert_eq!(u.install(&v1, false).expect("first"), Outcome::Retry);
    assert_eq!(u.install(&v1, false).expect("second"), Outcome::Failed);
    assert_eq!(u.record().phase, Phase::Failed);
    assert_eq!(u.install(&v1, false).expect("third"), Outcome::Nothing);
    assert_eq!(
        u.slots().active().expect("active"),
        None,
        "switched after a failed install"
    );
}

#[test]
fn recovery_from_switched_reruns_health_and_counts_the_attempt() {
    let d = device(Hooks::default());
    let mut u = updater(&d);
    u.install(&release(&d, 1), false).expect("v1");
    // As if killed right after persisting Switched for v2, before the link moved.
    let v2 = release(&d, 2);
    u.slots()
        .stage(Slot::B, d.store.as_ref(), &v2)
        .expect("stage");
    u.record.target = Some(Target {
        release: release_ref(&v2),
        slot: Some(Slot::B),
    });
    u.record.phase = Phase::Switched;
    u.record.attempts = 1;
    u.persist().expect("persist");
    let mut u = updater(&d);
    assert_eq!(u.recover().expect("recover"), Outcome::Committed);
    assert_eq!(u.record().attempts, 2);
    assert_eq!(active_release(&u), Some(2));
    // Out of attempts, a pending health check is not run again: roll back.
    u.record.phase = Phase::Switched;
    u.record.installed = Some(Target {
        release: release_ref(&release(&d, 1)),
        slot: Some(Slot::A),
    });
    u.persist().expect("persist");
    let mut u = updater(&d);
    assert_eq!(u.recover().expect("recover"), Outcome::RolledBack);
    assert_eq!(active_release(&u), Some(1));
}
