//! Peer exchange records as libp2p types: a `pollen_core::wire::PeerRecord`
//! is parsed once, on receipt, into a [`KnownPeer`] (a `PeerId` and
//! `Multiaddr`s, capped), and a known peer is written back into one.

use libp2p::{Multiaddr, PeerId};
use pollen_core::swarm::SiteId;
use pollen_core::wire::{PeerRecord, Role, MAX_ADDRS};
use serde_bytes::ByteBuf;

/// A peer another node told us of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnownPeer {
    pub peer: PeerId,
    /// Its addresses that parse, at most [`MAX_ADDRS`].
    pub addrs: Vec<Multiaddr>,
    pub site: Option<SiteId>,
    pub role: Role,
}

/// Why a peer record was not taken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    #[error("not a peer id: {0}")]
    PeerId(#[from] libp2p::identity::ParseError),
    #[error("no address that parses")]
    NoAddress,
}

impl TryFrom<&PeerRecord> for KnownPeer {
    type Error = RecordError;

    fn try_from(rec: &PeerRecord) -> Result<Self, RecordError> {
        let peer = PeerId::from_bytes(&rec.peer)?;
        let addrs: Vec<Multiaddr> = rec
            .addrs
            .iter()
            .take(MAX_ADDRS)
            .filter_map(|a| Multiaddr::try_from(a.to_vec()).ok())
            .collect();
        if addrs.is_empty() {
            return Err(RecordError::NoAddress);
        }
        Ok(Self {
            peer,
            addrs,
            site: rec.site,
            role: rec.role,
        })
    }
}

impl From<&KnownPeer> for PeerRecord {
    fn from(k: &KnownPeer) -> Self {
        PeerRecord {
            peer: k.peer.to_bytes(),
            addrs: k
                .addrs
                .iter()
                .take(MAX_ADDRS)
                .map(|a| ByteBuf::from(a.to_vec()))
                .collect(),
            site: k.site,
            role: k.role,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> KnownPeer {
        KnownPeer {
            peer: PeerId::random(),
            addrs: vec!["/ip4/10.0.0.2/tcp/4000".parse().expect("addr")],
            site: Some(SiteId(3)),
            role: Role {
                origin: false,
                uplink: true,
                gateway: true,
            },
        }
    }

    #[test]
    fn round_trips() {
        let k = known();
        let rec = PeerRecord::from(&k);
        assert_eq!(KnownPeer::try_from(&rec).expect("parses"), k);
    }

    #[test]
    fn garbage_from_a_peer_is_refused_not_panicked_on() {
        let mut rec = PeerRecord::from(&known());
        rec.addrs = vec![ByteBuf::from(vec![0xff, 0x00, 0x13])];
        assert!(matches!(
            KnownPeer::try_from(&rec),
            Err(RecordError::NoAddress)
        ));
        rec.peer = vec![1, 2, 3];
        assert!(matches!(
            KnownPeer::try_from(&rec),
            Err(RecordError::PeerId(_))
        ));
    }
}
