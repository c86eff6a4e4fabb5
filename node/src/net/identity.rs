//! A node's mesh identity as fleet trust sees it: the 32-byte ed25519
//! public key inside an ed25519 peer id (libp2p inlines such keys in the
//! id), which device credentials bind and status records are signed with.

use libp2p::PeerId;

/// Multihash code of the identity hash libp2p uses for inlined keys.
const IDENTITY_HASH: u64 = 0x00;

/// The ed25519 public key a peer id names, or `None` for ids of other key
/// types (or hashed ones), which no credential can bind.
pub fn peer_key(peer: &PeerId) -> Option<[u8; 32]> {
    let hash = peer.as_ref();
    if hash.code() != IDENTITY_HASH {
        return None;
    }
    let public = libp2p::identity::PublicKey::try_decode_protobuf(hash.digest()).ok()?;
    Some(public.try_into_ed25519().ok()?.to_bytes())
}

/// The peer id of an ed25519 identity key (the inverse of [`peer_key`]).
pub fn peer_of_key(key: &[u8; 32]) -> Option<PeerId> {
    let ed = libp2p::identity::ed25519::PublicKey::try_from_bytes(key).ok()?;
    Some(libp2p::identity::PublicKey::from(ed).to_peer_id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ed25519_peer_ids_carry_their_key() {
        let key = libp2p::identity::Keypair::generate_ed25519();
        let peer = key.public().to_peer_id();
        let bytes = peer_key(&peer).expect("ed25519 ids inline the key");
        assert_eq!(peer_of_key(&bytes), Some(peer));
        assert_eq!(
            peer_key(&PeerId::random()),
            None,
            "a hashed id names no key"
        );
    }
}
