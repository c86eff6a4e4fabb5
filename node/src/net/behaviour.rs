//! The composed libp2p behaviour of a Pollen node and its construction.

use std::time::Duration;

use libp2p::core::transport::MemoryTransport;
use libp2p::core::{upgrade, Transport as _};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    allow_block_list, connection_limits, identify, identity, mdns, noise, ping, request_response,
    tcp, yamux,
};

use super::ip_limit;
use super::pollen::Pollen;
use super::protocol::{Codec, PIECES_STREAM_PROTOCOL, STREAM_PROTOCOL};
use super::session::Sessions;
use super::NetError;

/// Limits that keep a node serving honest peers under floods.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Inbound connections kept at most (a seeder's `--max-connections`).
    pub max_established: u32,
    /// Outbound connections kept at most: the node's own dials, never
    /// crowded out by inbound ones.
    pub max_outgoing: u32,
    pub max_per_peer: u32,
    pub max_pending_incoming: u32,
    /// Inbound connections per IPv4 address or IPv6 /64 that have not
    /// completed the hello exchange (still in their handshake, or greeted
    /// but silent).
    pub max_unadmitted_per_ip: u32,
    /// Concurrent inbound streams per connection (request-response).
    pub max_streams: usize,
    /// A stream (request and its response) is reset after this long. Long:
    /// the scheduler decides when a slow response is stalled, from its
    /// progress, and a response cut off is bytes sent for nothing.
    pub request_timeout: Duration,
    /// Requests to a peer go on one long-lived stream per peer (`false`:
    /// a stream each, and peers' sessions are refused, as a node from
    /// before sessions; for tests of the two together).
    pub sessions: bool,
    /// Chunks of more than one piece go in pieces to peers that take them,
    /// and chunks still arriving are passed on (`/pollen/4`; `false`: only
    /// `/pollen/3`, as a node from before pieces; for tests of the two
    /// together).
    pub pieces: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_established: 128,
            max_outgoing: 256,
            max_per_peer: 2,
            max_pending_incoming: 32,
            max_unadmitted_per_ip: 8,
            max_streams: 32,
            request_timeout: pollen_core::node::STREAM_TIMEOUT,
            sessions: true,
            pieces: true,
        }
    }
}

/// How often a connection is pinged (its round-trip time measured).
pub const PING_INTERVAL: Duration = Duration::from_secs(60);

/// How a node reaches its peers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Transport {
    /// TCP (Noise, Yamux) and QUIC: the real thing.
    #[default]
    Network,
    /// libp2p's in-process memory transport (Noise, Yamux), listening on
    /// `/memory/N`: nodes of one process, for tests of the driver.
    Memory,
}

/// Which of its addresses a node tells its peers (identify).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Advertise {
    /// Its listen addresses (and external ones, if any).
    #[default]
    Listen,
    /// Only its external addresses (`--external-address`): the listen
    /// addresses behind a NAT, a container or `0.0.0.0` (loopback, bridges)
    /// would only be dialed in vain.
    ExternalOnly,
}

/// Everything a Pollen node speaks.
#[allow(missing_debug_implementations)] // the derive cannot see its members
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    pub limits: connection_limits::Behaviour,
    pub ip_limit: ip_limit::Behaviour,
    pub blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub mdns: Toggle<mdns::tokio::Behaviour>,
    /// Long-lived streams, for [`Pollen`]'s sessions.
    pub stream: libp2p_stream::Behaviour,
    pub pollen: Pollen,
}

/// Builds the libp2p swarm over tokio: TCP + Noise + Yamux and QUIC, or
/// the in-process memory transport.
pub fn build_swarm(
    keypair: identity::Keypair,
    use_mdns: bool,
    limits: &Limits,
    transport: Transport,
    advertise: Advertise,
) -> Result<libp2p::Swarm<Behaviour>, NetError> {
    let limits = limits.clone();
    let make = move |key: &identity::Keypair| behaviour(key, use_mdns, &limits, advertise);
    // Streams open lazily (multistream-select's `V1Lazy`): the dialer sends
    // its one protocol and the request together without waiting for the
    // listener's echo, a round trip and two small packets fewer per request
    // (every notice and chunk request is a stream; across a site's uplink
    // those packets were a tenth of the bytes besides the chunks).
    let idle = |c: libp2p::swarm::Config| {
        c.with_idle_connection_timeout(Duration::from_secs(300))
            .with_substream_upgrade_protocol_override(upgrade::Version::V1Lazy)
    };
    let builder = libp2p::SwarmBuilder::with_existing_identity(keypair).with_tokio();
    let swarm = match transport {
        Transport::Network => builder
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .map_err(NetError::Noise)?
            .with_quic()
            // `/dns4`, `/dns6` and `/dns` addresses, resolved on every dial
            // (so a redial follows a seeder that moved), by the system's
            // resolver configuration.
            .with_dns()
            .map_err(NetError::Dns)?
            .with_behaviour(make)
            .map_err(NetError::Behaviour)?
            .with_swarm_config(idle)
            .build(),
        Transport::Memory => builder
            .with_other_transport(|key| {
                let noise = noise::Config::new(key)
                    .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
                Ok(MemoryTransport::default()
                    .upgrade(upgrade::Version::V1)
                    .authenticate(noise)
                    .multiplex(yamux::Config::default()))
            })
            .map_err(NetError::Transport)?
            .with_behaviour(make)
            .map_err(NetError::Behaviour)?
            .with_swarm_config(idle)
            .build(),
    };
    Ok(swarm)
}

/// The behaviour of a node with `key`.
fn behaviour(
    key: &identity::Keypair,
    use_mdns: bool,
    limits: &Limits,
    advertise: Advertise,
) -> Result<Behaviour, Box<dyn std::error::Error + Send + Sync>> {
    let peer_id = key.public().to_peer_id();
    let mdns = if use_mdns {
        Some(mdns::tokio::Behaviour::new(
            mdns::Config::default(),
            peer_id,
        )?)
    } else {
        None
    };
    let stream = libp2p_stream::Behaviour::new();
    let control = limits.sessions.then(|| stream.new_control());
    let sessions = Sessions::new(
        control,
        limits.request_timeout,
        limits.max_streams,
        limits.pieces,
    );
    let pieces = limits.pieces.then_some((
        PIECES_STREAM_PROTOCOL,
        request_response::ProtocolSupport::Full,
    ));
    let protocols = pieces
        .into_iter()
        .chain([(STREAM_PROTOCOL, request_response::ProtocolSupport::Full)]);
    let rr_config = request_response::Config::default()
        .with_request_timeout(limits.request_timeout)
        .with_max_concurrent_streams(limits.max_streams);
    Ok(Behaviour {
        limits: connection_limits::Behaviour::new(
            connection_limits::ConnectionLimits::default()
                .with_max_established_incoming(Some(limits.max_established))
                .with_max_established_outgoing(Some(limits.max_outgoing))
                .with_max_established_per_peer(Some(limits.max_per_peer))
                .with_max_pending_incoming(Some(limits.max_pending_incoming)),
        ),
        ip_limit: ip_limit::Behaviour::new(limits.max_unadmitted_per_ip),
        blocked: allow_block_list::Behaviour::default(),
        identify: identify::Behaviour::new(
            identify::Config::new("/pollen/id/1".into(), key.public())
                .with_hide_listen_addrs(advertise == Advertise::ExternalOnly),
        ),
        // Once a minute, not libp2p's every 15 s: on an idle fleet the
        // pings (and their TCP acknowledgements) were most of the bytes on
        // a site's uplink (BENCHMARKS.md, idle status traffic).
        ping: ping::Behaviour::new(ping::Config::new().with_interval(PING_INTERVAL)),
        mdns: Toggle::from(mdns),
        stream,
        pollen: Pollen::new(
            request_response::Behaviour::with_codec(Codec::default(), protocols, rr_config),
            sessions,
        ),
    })
}
