use super::*;

fn key(n: u8) -> SecretKey {
    SecretKey::from_bytes(&[n; 32])
}

fn role(keys: &[u8], threshold: usize) -> TrustPolicy {
    TrustPolicy::new(keys.iter().map(|&n| key(n).public()).collect(), threshold).expect("valid")
}

/// Root {1,2} 2-of-2, release 10, operator 20, enroll 30.
fn policy(version: u64, root: &[u8], threshold: usize) -> FleetPolicy {
    FleetPolicy::new(
        version,
        2_000,
        [role(root, threshold), role(&[10], 1), role(&[20], 1)],
        Some(role(&[30], 1)),
    )
}

fn signed(p: FleetPolicy, by: &[u8]) -> Vec<u8> {
    let keys: Vec<SecretKey> = by.iter().map(|&n| key(n)).collect();
    let refs: Vec<&SecretKey> = keys.iter().collect();
    SignedPolicy::sign(p, &refs).expect("valid").encode()
}

#[test]
fn round_trips_canonically() {
    let mut p = policy(3, &[1, 2], 2);
    p.revoked.insert([7; 32]);
    p.recalled.insert(ManifestId([9; 32]));
    p.floor_resets.insert(
        "stable".into(),
        FloorReset {
            channel: "stable".into(),
            release: 4,
            manifest: ManifestId([5; 32]),
        },
    );
    let bytes = signed(p.clone(), &[1, 2]);
    let back = SignedPolicy::decode(&bytes).expect("decodes");
    assert_eq!(back.policy(), &p);
    assert_eq!(back.encode(), bytes);
    for i in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[i] ^= 0x01;
        assert!(
            VerifiedPolicy::first(&bad, 1_000).is_err(),
            "flip at byte {i} accepted"
        );
    }
}

#[test]
fn first_policy_needs_its_own_root_threshold() {
    assert!(VerifiedPolicy::first(&signed(policy(1, &[1, 2], 2), &[1, 2]), 1_000).is_ok());
    assert!(matches!(
        VerifiedPolicy::first(&signed(policy(1, &[1, 2], 2), &[1]), 1_000),
        Err(PolicyError::OwnRoot {
            source: VerifyError::BelowThreshold { .. },
            ..
        })
    ));
    assert!(matches!(
        VerifiedPolicy::first(&signed(policy(1, &[1, 2], 2), &[1, 2]), 2_000),
        Err(PolicyError::Expired { .. })
    ));
}

#[test]
fn root_rotated_twice_in_a_row() {
    let v1 = VerifiedPolicy::first(&signed(policy(1, &[1, 2], 2), &[1, 2]), 1_000).expect("v1");
    // v2: root {2,3}; signed by v1's root (1,2) and its own (2,3).
    let v2 = v1
        .accept(&signed(policy(2, &[2, 3], 2), &[1, 2, 3]), 1_000)
        .expect("v2");
    // v3: root {4}; signed by v2's root (2,3) and its own (4).
    let v3 = v2
        .accept(&signed(policy(3, &[4], 1), &[2, 3, 4]), 1_000)
        .expect("v3");
    assert_eq!(v3.version(), 3);
    // The old roots no longer sign anything v3 takes.
    assert!(matches!(
        v3.accept(&signed(policy(4, &[1, 2], 2), &[1, 2]), 1_000),
        Err(PolicyError::HeldRoot { .. })
    ));
}

#[test]
fn rotations_missing_a_root_are_refused() {
    let v1 = VerifiedPolicy::first(&signed(policy(1, &[1, 2], 2), &[1, 2]), 1_000).expect("v1");
    // Only the new root: an attacker with a fresh key cannot take over.
    assert!(matches!(
        v1.accept(&signed(policy(2, &[5], 1), &[5]), 1_000),
        Err(PolicyError::HeldRoot { held: 1, .. })
    ));
    // Only the old root: the new root must have its keys in hand.
    assert!(matches!(
        v1.accept(&signed(policy(2, &[5], 1), &[1, 2]), 1_000),
        Err(PolicyError::OwnRoot { .. })
    ));
    // Half the old threshold.
    assert!(matches!(
        v1.accept(&signed(policy(2, &[5], 1), &[1, 5]), 1_000),
        Err(PolicyError::HeldRoot {
            source: VerifyError::BelowThreshold { .. },
            ..
        })
    ));
    // Never back, never sideways.
    assert_eq!(
        v1.accept(&signed(policy(1, &[1, 2], 2), &[1, 2]), 1_000),
        Err(PolicyError::NotNewer {
            held: 1,
            offered: 1
        })
    );
    assert!(matches!(
        v1.accept(&signed(policy(2, &[1, 2], 2), &[1, 2]), 2_500),
        Err(PolicyError::Expired { .. })
    ));
}

#[test]
fn a_trust_file_is_version_zero_and_its_keys_sign_the_first_policy() {
    let held = VerifiedPolicy::from_trust(role(&[1], 1));
    assert!(!held.policy().is_closed());
    assert_eq!(held.policy().role(Role::Release), Some(&role(&[1], 1)));
    assert!(held.to_bytes().is_none());
    let v1 = held
        .accept(&signed(policy(1, &[2], 1), &[1, 2]), 1_000)
        .expect("the publisher key hands over to the new root");
    assert!(v1.policy().is_closed());
    assert_eq!(
        v1.policy().roles_of(&key(10).public().id()),
        [Role::Release]
    );
}

#[test]
fn floor_goes_back_only_for_a_recalled_install() {
    let mut p = policy(1, &[1], 1);
    p.recalled.insert(ManifestId([9; 32]));
    p.floor_resets.insert(
        "stable".into(),
        FloorReset {
            channel: "stable".into(),
            release: 4,
            manifest: ManifestId([4; 32]),
        },
    );
    assert_eq!(p.floor("stable", Some((ManifestId([9; 32]), u64::MAX))), 4);
    assert_eq!(p.floor("stable", Some((ManifestId([8; 32]), 7))), 7);
    assert_eq!(p.floor("beta", Some((ManifestId([9; 32]), 9))), 9);
    assert_eq!(p.floor("stable", None), 0);
}

#[test]
fn bad_fields_are_refused_when_signing() {
    let mut p = policy(1, &[1], 1);
    p.floor_resets.insert(
        "stable".into(),
        FloorReset {
            channel: "beta".into(),
            release: 1,
            manifest: ManifestId([1; 32]),
        },
    );
    assert!(SignedPolicy::sign(p, &[&key(1)]).is_err());
}
