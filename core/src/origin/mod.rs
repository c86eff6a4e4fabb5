//! Origins (DESIGN "Origins"): a static tree any HTTP server, object store
//! or CDN serves unchanged, made by `pollen-seeder export --origin DIR`.
//!
//! This module owns what the publisher's exporter and a node's HTTP client
//! must agree on: the tree's names ([`paths`]) and the signed channel index
//! ([`index`]) that says which manifest (and rollout control, and fleet
//! policy) is current on a channel, until when.
//!
//! The tree, relative to its root:
//! - `index/<channel>`: the signed [`ChannelIndex`], replaced atomically;
//! - `manifest/<manifest id>`: signed manifest bytes as the mesh carries them;
//! - `control/<control id>`: a signed rollout control ([`ControlId`]: BLAKE3
//!   of its bytes);
//! - `policy/<version>`: the newest signed fleet policy;
//! - `chunk/<first two hex digits>/<chunk id>`: raw chunk bytes.
//!
//! Ids are lowercase hex. Every file but the index is immutable once
//! written (a name always means the same bytes, but for a manifest that
//! gained co-signatures), and every file the index names is written before it.

pub mod index;
pub mod paths;

pub use index::{
    verify, ChannelIndex, ControlId, IndexError, SignedIndex, VerifiedIndex, INDEX_FORMAT,
    MAX_INDEX_BYTES,
};
pub use paths::{
    chunk_path, control_path, index_path, manifest_path, policy_path, valid_channel_name,
};
