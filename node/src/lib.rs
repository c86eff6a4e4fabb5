//! The Pollen device agent as a library: the binary `pollen-node` is a thin
//! CLI over it, and `pollen-seeder` reuses its store and trust loading.
//!
//! - [`store`]: chunks, manifests and node state (RocksDB or in memory).
//! - [`trust_file`]: reading a device's trust policy from disk.
//! - [`import`]: the offline path, a release carried on a USB stick.
//! - [`update`]: the A/B install lifecycle, hooks, commit and rollback.
//! - [`api`]: the local status/metrics/control endpoint on loopback.
//! - [`node_id`]: the peer id a node is enrolled under.
//! - [`config`]: the binaries' config file (flags as TOML keys).
//! - [`notify`]: systemd readiness and watchdog.

pub mod api;
pub mod cli_support;
pub mod config;
pub mod controls;
pub mod driver;
pub mod import;
pub mod net;
pub mod node_id;
pub mod notify;
pub mod origin;
pub mod policy_store;
pub mod status_store;
pub mod store;
pub mod trust_file;
pub mod update;

/// Seconds since the Unix epoch, read once at the edge and passed inward.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
