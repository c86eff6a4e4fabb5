use super::*;
use crate::publish::{publish, PublishRequest};
use pollen_core::chunk::ChunkParams;
use pollen_core::manifest::Rollout;
use pollen_core::rollout::RolloutControl;
use pollen_core::trust::{FleetPolicy, SignedPolicy};
use pollen_node::store::MemStore;

const NOW: u64 = 1_800_000_000;

fn key(n: u8) -> SecretKey {
    SecretKey::from_bytes(&[n; 32])
}

/// Fleet policy version 1: root 1, release 2, operator 3.
fn policy() -> VerifiedPolicy {
    let single = |n: u8| TrustPolicy::single(key(n).public());
    let p = FleetPolicy::new(
        1,
        NOW + 365 * 86_400,
        [single(1), single(2), single(3)],
        None,
    );
    let bytes = SignedPolicy::sign(p, &[&key(1)]).expect("valid").encode();
    VerifiedPolicy::first(&bytes, NOW).expect("verifies")
}

/// A store with one release of `size` bytes on each channel given.
fn store_with(dir: &Path, channels: &[(&str, u64, u64)]) -> MemStore {
    let store = MemStore::new();
    for (i, (channel, size, seed)) in channels.iter().enumerate() {
        let artifact = dir.join(format!("artifact-{i}"));
        let mut x = seed | 1;
        let bytes: Vec<u8> = (0..*size)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        std::fs::write(&artifact, bytes).expect("artifact");
        let req = PublishRequest {
            key: &key(2),
            artifact,
            product: "press".into(),
            channel: (*channel).into(),
            version: semver::Version::new(1, 0, i as u64),
            release: None,
            max_step: None,
            expires_in_secs: 90 * 86_400,
            hardware: Vec::new(),
            chunking: ChunkParams::new(16 * 1024, 32 * 1024, 64 * 1024).expect("params"),
            now: NOW,
            rollout: Rollout::default(),
            recalled: Default::default(),
        };
        publish(&store, &req, |_| {}).expect("publish");
    }
    store
}

fn request(dir: &Path, keys: Vec<SecretKey>, now_ms: u64) -> OriginRequest {
    OriginRequest {
        dir: dir.to_owned(),
        channels: Vec::new(),
        keys,
        policy: Some(policy()),
        index_ttl_secs: DEFAULT_INDEX_TTL_SECS,
        verify: false,
        now_ms,
        controls: Vec::new(),
    }
}

fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).expect("below").display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn every_channel_is_exported_with_its_index_last_and_verifiable() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = store_with(tmp.path(), &[("stable", 100_000, 1), ("beta", 30_000, 2)]);
    let dir = tmp.path().join("origin");
    let report = export(&store, request(&dir, vec![key(3)], NOW * 1000)).expect("export");
    assert_eq!(report.channels.len(), 2);
    for c in &report.channels {
        let bytes = std::fs::read(dir.join(index_path(&c.channel))).expect("index");
        let v = pollen_core::origin::verify(&bytes, &policy(), &c.channel, NOW).expect("verifies");
        assert_eq!(v.index().manifest.to_hex(), c.manifest_id);
        assert_eq!(v.index().policy_version, Some(1));
        let m = std::fs::read(dir.join(manifest_path(&v.index().manifest))).expect("manifest");
        let m = SignedManifest::decode(&m).expect("decodes");
        for chunk in &m.manifest().chunks {
            let bytes = std::fs::read(dir.join(chunk_path(&chunk.id))).expect("chunk");
            assert!(
                chunk.id.matches(&bytes),
                "chunk {} hashes to its name",
                chunk.id
            );
        }
    }
    assert!(dir.join("policy/1").is_file());
    assert!(
        !files(&dir).iter().any(|f| f.contains(".tmp-")),
        "{:?}",
        files(&dir)
    );
    assert_eq!(report.files_kept, 0);
}

#[test]
fn a_second_export_writes_nothing_until_the_index_is_half_way_to_expiry() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = store_with(tmp.path(), &[("stable", 50_000, 3)]);
    let dir = tmp.path().join("origin");
    let first = export(&store, request(&dir, vec![key(3)], NOW * 1000)).expect("export");
    let second = export(&store, request(&dir, vec![key(3)], NOW * 1000 + 5_000)).expect("again");
    assert_eq!(second.files_written, 0);
    assert_eq!(second.files_kept, first.files_written);
    assert!(!second.channels[0].index_written);
    assert_eq!(second.channels[0].index_seq, first.channels[0].index_seq);
    // Past half of its life the index is renewed, with a higher seq.
    let later = (NOW + DEFAULT_INDEX_TTL_SECS / 2 + 1) * 1000;
    let third = export(&store, request(&dir, vec![key(3)], later)).expect("renew");
    assert_eq!(third.files_written, 1);
    assert!(third.channels[0].index_written);
    assert!(third.channels[0].index_seq > first.channels[0].index_seq);
    // A clock that went back still gives a higher seq.
    let mut req = request(&dir, vec![key(3)], later - 60_000);
    req.index_ttl_secs = 10 * DEFAULT_INDEX_TTL_SECS;
    let fourth = export(&store, req).expect("clock back");
    assert!(fourth.channels[0].index_seq > third.channels[0].index_seq);
}

#[test]
fn a_key_without_the_operator_role_is_refused_before_the_folder_exists() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = store_with(tmp.path(), &[("stable", 20_000, 4)]);
    let dir = tmp.path().join("origin");
    for (wrong, role) in [(2, "release"), (1, "root"), (9, "no role")] {
        let err = export(&store, request(&dir, vec![key(wrong)], NOW * 1000)).expect_err("refused");
        let text = err.to_string();
        assert!(matches!(err, OriginError::NotOperator { .. }), "{text}");
        assert!(text.contains(role), "{text}");
        assert!(!dir.exists(), "nothing written");
    }
    assert!(matches!(
        export(&store, request(&dir, Vec::new(), NOW * 1000)),
        Err(OriginError::NoKey)
    ));
    assert!(matches!(
        export(&store, request(&dir, vec![key(3), key(3)], NOW * 1000)),
        Err(OriginError::DuplicateKey(_))
    ));
    assert!(!dir.exists());
}

#[test]
fn an_unknown_or_unnamable_channel_is_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = store_with(tmp.path(), &[("stable", 20_000, 5)]);
    let dir = tmp.path().join("origin");
    let mut req = request(&dir, vec![key(3)], NOW * 1000);
    req.channels = vec!["stable".into(), "nightly".into()];
    let err = export(&store, req).expect_err("unknown");
    assert!(
        err.to_string().contains("\"nightly\" has no release"),
        "{err}"
    );
    assert!(
        err.to_string().contains("stable"),
        "names the known ones: {err}"
    );
    let mut req = request(&dir, vec![key(3)], NOW * 1000);
    req.channels = vec!["../up".into()];
    assert!(matches!(
        export(&store, req),
        Err(OriginError::BadChannel(_))
    ));
    assert!(!dir.exists());
    assert!(matches!(
        export(&MemStore::new(), request(&dir, vec![key(3)], NOW * 1000)),
        Err(OriginError::Empty)
    ));
    let mut req = request(&dir, vec![key(3)], NOW * 1000);
    req.index_ttl_secs = 0;
    assert!(matches!(
        export(&store, req),
        Err(OriginError::TtlTooShort(0))
    ));
    assert!(!dir.exists());
}

#[test]
fn a_control_in_hand_is_published_and_named_by_the_index() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = store_with(tmp.path(), &[("stable", 20_000, 6)]);
    let dir = tmp.path().join("origin");
    let id = store.manifest_ids().expect("ids")[0];
    let mut halt = RolloutControl::initial("stable", id).next(NOW);
    halt.halted = true;
    let bytes = SignedControl::sign(halt, &[&key(3)]).encode();
    let mut req = request(&dir, vec![key(3)], NOW * 1000);
    req.controls = vec![bytes.clone()];
    let report = export(&store, req).expect("export");
    let control = ControlId::of(&bytes);
    assert_eq!(report.channels[0].control, Some(control.to_hex()));
    assert_eq!(
        std::fs::read(dir.join(control_path(&control))).expect("control"),
        bytes
    );
    // A control the operator role did not sign is refused, nothing changes.
    let before = files(&dir);
    let mut forged = RolloutControl::initial("stable", id).next(NOW + 10);
    forged.halted = false;
    let mut req = request(&dir, vec![key(3)], NOW * 1000 + 20_000);
    req.controls = vec![SignedControl::sign(forged, &[&key(2)]).encode()];
    assert!(matches!(
        export(&store, req),
        Err(OriginError::Control { .. })
    ));
    assert_eq!(files(&dir), before);
}

#[test]
fn without_a_policy_the_index_is_signed_by_the_keys_given() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = store_with(tmp.path(), &[("stable", 20_000, 7)]);
    let dir = tmp.path().join("origin");
    let mut req = request(&dir, vec![key(2)], NOW * 1000);
    req.policy = None;
    let report = export(&store, req).expect("export");
    assert_eq!(report.channels[0].policy_version, None);
    let held = VerifiedPolicy::from_trust(TrustPolicy::single(key(2).public()));
    let bytes = std::fs::read(dir.join("index/stable")).expect("index");
    assert!(pollen_core::origin::verify(&bytes, &held, "stable", NOW).is_ok());
    assert!(!dir.join("policy").exists());
}
