//! Names inside an origin tree, as '/'-separated paths relative to its
//! root (a URL path below the origin's base URL, or a path below the
//! export directory): one definition for the exporter and the client.

use crate::chunk::ChunkId;
use crate::manifest::{ManifestId, MAX_NAME_LEN};

use super::index::ControlId;

/// Whether `channel` can name a file of the tree and a URL path segment
/// as it is: 1 to [`MAX_NAME_LEN`] bytes of ASCII letters, digits, `-`,
/// `_` and `.`, not starting with `.` (so never `.`, `..`, or one of the
/// exporter's hidden temporary names).
pub fn valid_channel_name(channel: &str) -> bool {
    !channel.is_empty()
        && channel.len() <= MAX_NAME_LEN
        && !channel.starts_with('.')
        && channel
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// `index/<channel>` (the caller checks the name with [`valid_channel_name`]).
pub fn index_path(channel: &str) -> String {
    format!("index/{channel}")
}

/// `manifest/<manifest id>`.
pub fn manifest_path(id: &ManifestId) -> String {
    format!("manifest/{}", id.to_hex())
}

/// `control/<control id>`.
pub fn control_path(id: &ControlId) -> String {
    format!("control/{}", id.to_hex())
}

/// `policy/<version>` (decimal).
pub fn policy_path(version: u64) -> String {
    format!("policy/{version}")
}

/// `chunk/<first two hex digits>/<chunk id>`.
pub fn chunk_path(id: &ChunkId) -> String {
    let hex = id.to_hex();
    format!("chunk/{}/{hex}", &hex[..2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_lowercase_hex_under_their_folders() {
        let chunk = ChunkId([0xab; 32]);
        assert_eq!(chunk_path(&chunk), format!("chunk/ab/{}", "ab".repeat(32)));
        assert_eq!(
            manifest_path(&ManifestId([0x0f; 32])),
            format!("manifest/{}", "0f".repeat(32))
        );
        assert_eq!(
            control_path(&ControlId([0xc0; 32])),
            format!("control/{}", "c0".repeat(32))
        );
        assert_eq!(policy_path(12), "policy/12");
        assert_eq!(index_path("stable"), "index/stable");
    }

    #[test]
    fn channel_names_that_are_not_plain_file_names_are_refused() {
        for good in ["stable", "beta-2", "press_v2.lts", "A"] {
            assert!(valid_channel_name(good), "{good}");
        }
        let long = "x".repeat(MAX_NAME_LEN + 1);
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "a/b",
            "a b",
            "ünï",
            "a%2f",
            long.as_str(),
        ] {
            assert!(!valid_channel_name(bad), "{bad:?}");
        }
    }
}
