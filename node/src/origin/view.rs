//! The origin as the node's status JSON shows it.

use serde::Serialize;

use super::MirrorStatus;

/// The origin's part of `GET /status`.
#[derive(Clone, Debug, Serialize)]
pub struct OriginView {
    /// Each mirror, in the order they are tried.
    pub mirrors: Vec<MirrorStatus>,
    /// Chunk bytes from the origin that passed BLAKE3 and were stored.
    pub bytes_verified: u64,
    /// Chunks from the origin that failed verification (never stored).
    pub chunks_rejected: u64,
    /// The sequence number of the newest index taken.
    pub index_seq: Option<u64>,
    /// Why the last index poll failed (stale, expired, unreachable...).
    pub index_error: Option<String>,
}
