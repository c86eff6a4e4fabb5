//! Where each object lives under an origin's base URL (the exported tree).

use pollen_core::chunk::ChunkId;
use pollen_core::manifest::ManifestId;

/// `index/<channel>`: the channel's signed index.
pub fn index_path(channel: &str) -> String {
    format!("index/{channel}")
}

/// `manifest/<id hex>`: a signed manifest as the mesh carries it.
pub fn manifest_path(id: &ManifestId) -> String {
    format!("manifest/{}", id.to_hex())
}

/// `control/<id hex>`: a signed rollout control.
pub fn control_path(id_hex: &str) -> String {
    format!("control/{id_hex}")
}

/// `policy/<version>`: a signed fleet policy.
pub fn policy_path(version: u64) -> String {
    format!("policy/{version}")
}

/// `chunk/<first two hex chars>/<id hex>`: a chunk's raw bytes.
pub fn chunk_path(id: &ChunkId) -> String {
    let hex = id.to_hex();
    format!("chunk/{}/{hex}", &hex[..2])
}
