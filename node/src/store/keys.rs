//! Every key of the store's `state` table, in one place: what a node (and
//! the seeder) keeps besides chunks and manifests.

use pollen_core::manifest::{KeyId, ManifestId};

/// The node's libp2p identity (its ed25519 key pair, protobuf-encoded).
pub const IDENTITY: &str = "identity/ed25519";
/// Prefix of the lifecycle records, one per channel.
pub const UPDATE_PREFIX: &str = "update/";
/// The newest fleet policy the node took (signed bytes); never replaced by an older one.
pub const POLICY: &str = "trust/policy";
/// The release a device writes into its image (`store::ImageStore`).
pub const IMAGE_TARGET: &str = "image/target";
/// Prefix of the fleet status records a seeder keeps, one per device key.
pub const STATUS_PREFIX: &str = "status/";

/// The lowest acceptable release number for a channel (raised on install).
pub fn floor(channel: &str) -> String {
    format!("floor/{channel}")
}

/// The manifest id of the release installed on a channel.
pub fn installed(channel: &str) -> String {
    format!("installed/{channel}")
}

/// A channel's lifecycle record.
pub fn update_record(channel: &str) -> String {
    format!("{UPDATE_PREFIX}{channel}")
}

/// The newest verified rollout control of a release.
pub fn control(release: &ManifestId) -> String {
    format!("control/{}", release.to_hex())
}

/// A device's newest status record (on a seeder).
pub fn status(device: &KeyId) -> String {
    format!("{STATUS_PREFIX}{device}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_different_kinds_never_collide() {
        let ch = "stable";
        let keys = [
            floor(ch),
            installed(ch),
            update_record(ch),
            control(&ManifestId([0; 32])),
            IDENTITY.to_string(),
            POLICY.to_string(),
            IMAGE_TARGET.to_string(),
        ];
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert!(update_record(ch).starts_with(UPDATE_PREFIX));
    }
}
