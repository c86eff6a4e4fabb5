//! libp2p networking for Pollen nodes and seeders: transports (TCP + Noise +
//! Yamux, QUIC), mDNS, identify, ping, connection limits (per direction, and
//! per IP address for peers that have not said hello), a block list, and
//! the `/pollen/3` request-response protocol that carries hellos, manifest
//! announcements, has-sets, chunks and peer exchange, on a stream per
//! request or pipelined on one long-lived stream per peer ([`session`]).
//!
//! Shaped like a rust-libp2p protocol crate: [`protocol`] (the codec),
//! [`pollen`] (the protocol's behaviour: request correlation, and per-peer
//! serving limits with their `Busy` / `Declined` answers in [`serving`]),
//! [`behaviour`]
//! (composition and construction). The node's logic lives in
//! [`crate::driver`].

pub mod behaviour;
pub mod exchange;
pub mod identity;
pub mod ip_limit;
pub mod partial;
pub mod piecewise;
pub mod pollen;
pub mod protocol;
pub mod serving;
pub mod session;

pub use behaviour::{build_swarm, Advertise, Behaviour, BehaviourEvent, Limits, Transport};

use libp2p::identity::Keypair;
use libp2p::Multiaddr;

use crate::store::{Store, StoreError};

/// Errors of the network layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    #[error("transport set-up failed: noise: {0}")]
    Noise(#[source] libp2p::noise::Error),
    #[error("transport set-up failed: the system's DNS configuration: {0}")]
    Dns(#[source] std::io::Error),
    #[error("transport set-up failed: {0}")]
    Transport(#[source] libp2p::TransportBuilderError),
    #[error("transport set-up failed: {0}")]
    Behaviour(#[source] libp2p::BehaviourBuilderError),
    #[error("cannot listen on {addr}: {}", crate::cli_support::one_line(source))]
    Listen {
        addr: Multiaddr,
        source: libp2p::TransportError<std::io::Error>,
    },
    #[error("node identity: {0}")]
    Identity(#[source] libp2p::identity::DecodingError),
    #[error("node identity: the key is not ed25519: {0}")]
    NotEd25519(#[source] libp2p::identity::OtherVariantError),
    #[error("node identity: the ed25519 secret key is not 32 bytes")]
    SecretLength,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The node's libp2p identity, kept in its store so its peer id survives restarts.
pub fn load_or_create_identity<S: Store + ?Sized>(store: &S) -> Result<Keypair, NetError> {
    if let Some(bytes) = store.get_state(crate::store::keys::IDENTITY)? {
        return Keypair::from_protobuf_encoding(&bytes).map_err(NetError::Identity);
    }
    let key = Keypair::generate_ed25519();
    let bytes = key.to_protobuf_encoding().map_err(NetError::Identity)?;
    store.put_state(crate::store::keys::IDENTITY, &bytes)?;
    Ok(key)
}
