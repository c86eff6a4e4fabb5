//! Pollen's core: the release format and the logic every Pollen program shares.
//!
//! Guarantee: deterministic, no I/O of its own and no clock. Every check that
//! depends on time takes `now` as an argument; chunking reads from a caller's
//! [`std::io::Read`] and never holds a whole artifact in memory.
//!
//! - [`chunk`]: content-defined chunking (FastCDC) and BLAKE3 chunk ids.
//! - [`manifest`]: the release manifest, its canonical encoding, ed25519
//!   signatures, the device's trust policy and [`manifest::verify`].
//! - [`swarm`]: the chunk scheduler; [`node`]: one node's decisions around
//!   it (presets, notices, roles), driven alike by the node and the
//!   simulator; [`admission`]: which chunk requests a
//!   server accepts; [`wire`]: messages between peers.
//! - [`rollout`]: staged-rollout eligibility and signed rollout controls.
//! - [`origin`]: the static origin tree's names and its signed channel index.
//! - [`status`]: the signed status record each device publishes;
//!   [`fleet`]: those records summed per release and rollout stage.

pub mod admission;
pub mod chunk;
mod encode;
pub mod fleet;
pub mod local_http;
pub mod manifest;
pub mod node;
pub mod origin;
pub mod rollout;
pub mod status;
pub mod swarm;
pub mod trust;
pub mod wire;

pub use chunk::{ChunkId, ChunkParams};
pub use manifest::{
    verify, Manifest, ManifestId, SignedManifest, TrustPolicy, VerifiedManifest, VerifyContext,
    VerifyError,
};
