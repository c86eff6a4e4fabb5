//! The roles a node can be started in, and what each means for its
//! scheduler: the one place the device, the central baseline, the plain
//! swarm and the seeder are defined, for the node and the simulator alike.

use std::time::Duration;

use crate::swarm::{SwarmConfig, SwarmPolicy};

/// What a node is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Preset {
    /// A device: Pollen's site policy, fetching from every peer that
    /// greets it. With `cross_site`, sites also share across their uplinks
    /// (each still gets one copy); without, across the uplink from origins only.
    Device { cross_site: bool },
    /// The central baseline (`--no-lan`, the simulator's `central`): a
    /// download from the configured servers only, one stream kept two
    /// requests ahead and never given up on (a slow server is just slow).
    Central,
    /// A plain swarm (the simulator's `swarm`): every peer alike.
    Flat,
    /// A publisher's server: holds every chunk and fetches nothing.
    Seeder,
}

/// The central baseline's requests in flight.
const CENTRAL_IN_FLIGHT: usize = 2;
const CENTRAL_PATIENCE: Duration = Duration::from_secs(86_400);

impl Preset {
    /// The scheduler settings of this preset over `base`.
    pub fn swarm_config(self, base: &SwarmConfig) -> SwarmConfig {
        let mut c = base.clone();
        match self {
            Preset::Device { cross_site } => c.policy = SwarmPolicy::Sites { cross_site },
            Preset::Flat | Preset::Seeder => c.policy = SwarmPolicy::Flat,
            Preset::Central => {
                c.policy = SwarmPolicy::NoLan;
                c.per_peer_in_flight = CENTRAL_IN_FLIGHT;
                c.total_in_flight = CENTRAL_IN_FLIGHT;
                c.window_time = CENTRAL_PATIENCE;
                c.request_timeout = CENTRAL_PATIENCE;
            }
        }
        c
    }

    /// Whether a node of this preset fetches from a peer (`configured`: one
    /// of its static peers).
    pub fn fetches_from(self, configured: bool) -> bool {
        match self {
            Preset::Device { .. } | Preset::Flat => true,
            Preset::Central => configured,
            Preset::Seeder => false,
        }
    }

    /// Whether a node of this preset finds peers on its LAN (mDNS) and
    /// through peer exchange.
    pub fn discovers(self) -> bool {
        !matches!(self, Preset::Central)
    }
}
