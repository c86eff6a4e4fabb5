use super::*;
use crate::manifest::TrustPolicy;
use crate::trust::{FleetPolicy, SignedPolicy};

const NOW: u64 = 1_800_000_000;

fn key(n: u8) -> SecretKey {
    SecretKey::from_bytes(&[n; 32])
}

fn single(n: u8) -> TrustPolicy {
    TrustPolicy::single(key(n).public())
}

/// A device on fleet policy version 1: root 1, release 2, operator 3.
fn held_policy() -> VerifiedPolicy {
    let policy = FleetPolicy::new(
        1,
        NOW + 365 * 86_400,
        [single(1), single(2), single(3)],
        None,
    );
    let bytes = SignedPolicy::sign(policy, &[&key(1)])
        .expect("valid policy")
        .encode();
    VerifiedPolicy::first(&bytes, NOW).expect("signed by its root")
}

fn index() -> ChannelIndex {
    ChannelIndex {
        channel: "stable".into(),
        seq: NOW * 1000,
        issued_at: NOW,
        expires_at: NOW + 7 * 86_400,
        manifest: ManifestId([9; 32]),
        release: 24,
        control: Some(ControlId([7; 32])),
        policy_version: Some(1),
    }
}

fn signed(index: ChannelIndex, keys: &[&SecretKey]) -> Vec<u8> {
    SignedIndex::sign(index, keys).expect("signs").encode()
}

#[test]
fn round_trips_and_verifies_under_the_operator_role() {
    let bytes = signed(index(), &[&key(3)]);
    let v = verify(&bytes, &held_policy(), "stable", NOW + 60).expect("verifies");
    assert_eq!(v.index(), &index());
    assert_eq!(v.to_bytes(), bytes);
    assert_eq!(v.signers(), &[key(3).public().id()]);
    assert!(bytes.len() < 300, "an index is small: {}", bytes.len());
}

#[test]
fn a_trust_file_device_takes_an_index_signed_by_its_trust_keys() {
    let held = VerifiedPolicy::from_trust(single(5));
    let bytes = signed(index(), &[&key(5)]);
    assert!(verify(&bytes, &held, "stable", NOW).is_ok());
    let other = signed(index(), &[&key(6)]);
    assert!(matches!(
        verify(&other, &held, "stable", NOW),
        Err(IndexError::Signature(VerifyError::UnknownKey { .. }))
    ));
}

#[test]
fn a_release_or_root_key_does_not_pass_for_the_operator() {
    for wrong in [1, 2] {
        let bytes = signed(index(), &[&key(wrong)]);
        assert!(
            matches!(
                verify(&bytes, &held_policy(), "stable", NOW),
                Err(IndexError::Signature(VerifyError::UnknownKey { .. }))
            ),
            "key {wrong}"
        );
    }
}

#[test]
fn below_the_operator_threshold_is_refused() {
    let two = TrustPolicy::new(vec![key(3).public(), key(4).public()], 2).expect("2 of 2");
    let held = VerifiedPolicy::from_trust(two);
    let one = signed(index(), &[&key(3)]);
    assert!(matches!(
        verify(&one, &held, "stable", NOW),
        Err(IndexError::Signature(VerifyError::BelowThreshold {
            valid: 1,
            required: 2
        }))
    ));
    let both = signed(index(), &[&key(3), &key(4)]);
    assert!(verify(&both, &held, "stable", NOW).is_ok());
}

#[test]
fn another_contexts_signature_is_refused() {
    // The operator's key signing the same body as a rollout control.
    let s = SignedIndex::sign(index(), &[&key(3)]).expect("signs");
    let forged = SignedIndex {
        signatures: sign_body("pollen rollout v1", &s.body, &[&key(3)]),
        ..s
    };
    assert!(matches!(
        verify(&forged.encode(), &held_policy(), "stable", NOW),
        Err(IndexError::Signature(VerifyError::BadSignature { .. }))
    ));
}

#[test]
fn every_flipped_byte_is_refused() {
    let bytes = signed(index(), &[&key(3)]);
    for i in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[i] ^= 0x01;
        assert!(
            verify(&bad, &held_policy(), "stable", NOW).is_err(),
            "flip at byte {i} accepted"
        );
    }
}

#[test]
fn truncated_trailing_and_oversized_bytes_are_refused() {
    let bytes = signed(index(), &[&key(3)]);
    for len in 0..bytes.len() {
        assert!(
            matches!(
                verify(&bytes[..len], &held_policy(), "stable", NOW),
                Err(IndexError::Decode(_))
            ),
            "prefix of {len} bytes"
        );
    }
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert!(matches!(
        verify(&trailing, &held_policy(), "stable", NOW),
        Err(IndexError::Decode(DecodeError::TrailingBytes(1)))
    ));
    let oversized = vec![0u8; MAX_INDEX_BYTES + 1];
    assert!(matches!(
        verify(&oversized, &held_policy(), "stable", NOW),
        Err(IndexError::Decode(DecodeError::Oversized { .. }))
    ));
    // Bytes after the body inside the envelope are covered by the
    // signature and still refused.
    let mut body = index().encode();
    body.push(0);
    let sigs = sign_body(SIGNING_CONTEXT, &body, &[&key(3)]);
    assert!(matches!(
        verify(&seal_envelope(&body, &sigs), &held_policy(), "stable", NOW),
        Err(IndexError::Decode(DecodeError::TrailingBytes(1)))
    ));
}

#[test]
fn another_objects_body_is_not_an_index() {
    // A signed control in the same envelope, by the same key.
    let control = crate::rollout::RolloutControl::initial("stable", ManifestId([9; 32]));
    let bytes = crate::rollout::SignedControl::sign(control, &[&key(3)]).encode();
    assert!(matches!(
        verify(&bytes, &held_policy(), "stable", NOW),
        Err(IndexError::Decode(DecodeError::UnknownVersion(1)))
    ));
}

#[test]
fn an_expired_index_is_refused_as_a_frozen_mirror() {
    let bytes = signed(index(), &[&key(3)]);
    let at = index().expires_at;
    assert!(verify(&bytes, &held_policy(), "stable", at).is_ok());
    let err = verify(&bytes, &held_policy(), "stable", at + 1).expect_err("expired");
    assert_eq!(
        err,
        IndexError::Expired {
            channel: "stable".into(),
            expires_at: at,
            now: at + 1
        }
    );
    assert!(err.to_string().contains("stopped updating"), "{err}");
    let v = verify(&bytes, &held_policy(), "stable", NOW).expect("fresh");
    assert!(!v.is_expired(at) && v.is_expired(at + 1));
}

#[test]
fn another_channels_index_is_refused() {
    let bytes = signed(index(), &[&key(3)]);
    assert_eq!(
        verify(&bytes, &held_policy(), "beta", NOW),
        Err(IndexError::WrongChannel {
            expected: "beta".into(),
            found: "stable".into()
        })
    );
}

#[test]
fn a_channel_name_that_is_no_file_name_is_neither_signed_nor_taken() {
    let bad = ChannelIndex {
        channel: "../etc".into(),
        ..index()
    };
    assert!(matches!(
        SignedIndex::sign(bad.clone(), &[&key(3)]),
        Err(IndexError::BadChannel(_))
    ));
    let body = bad.encode();
    let sigs = sign_body(SIGNING_CONTEXT, &body, &[&key(3)]);
    assert!(matches!(
        verify(&seal_envelope(&body, &sigs), &held_policy(), "../etc", NOW),
        Err(IndexError::BadChannel(_))
    ));
}

#[test]
fn a_seq_far_ahead_of_the_clock_is_refused() {
    let ahead = ChannelIndex {
        seq: u64::MAX,
        ..index()
    };
    let bytes = signed(ahead, &[&key(3)]);
    assert!(matches!(
        verify(&bytes, &held_policy(), "stable", NOW),
        Err(IndexError::SeqAhead { .. })
    ));
    let just = ChannelIndex {
        seq: NOW * 1000 + MAX_SEQ_AHEAD_MS,
        ..index()
    };
    assert!(verify(&signed(just, &[&key(3)]), &held_policy(), "stable", NOW).is_ok());
}

#[test]
fn an_index_older_than_the_held_one_is_stale() {
    let bytes = signed(index(), &[&key(3)]);
    let v = verify(&bytes, &held_policy(), "stable", NOW).expect("verifies");
    let seq = index().seq;
    assert!(!v.is_older_than(seq) && v.check_not_older(seq).is_ok());
    assert!(v.is_older_than(seq + 1));
    assert_eq!(
        v.check_not_older(seq + 1),
        Err(IndexError::Stale {
            held: seq + 1,
            offered: seq
        })
    );
}

#[test]
fn control_ids_cover_the_signatures() {
    let control = crate::rollout::RolloutControl::initial("stable", ManifestId([9; 32]));
    let one = crate::rollout::SignedControl::sign(control.clone(), &[&key(3)]).encode();
    let two = crate::rollout::SignedControl::sign(control, &[&key(3), &key(4)]).encode();
    let id = ControlId::of(&one);
    assert!(id.matches(&one) && !id.matches(&two));
    assert_ne!(ControlId::of(&two), id);
}
