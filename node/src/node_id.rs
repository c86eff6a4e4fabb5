//! A node's (or the seeder's) peer id, as `pollen-node id` and
//! `pollen-seeder id` print it for enrollment: read from its store, even
//! while its daemon holds the store open, and created there when it has
//! none yet (the same identity `run`, `fetch` and `serve` then use).

use std::path::Path;

use libp2p::identity::Keypair;
use libp2p::PeerId;

use crate::cli_support::create_private_dir;
use crate::net::{load_or_create_identity, NetError};
use crate::store::{keys, RocksStore, Store, StoreError};

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeIdError {
    #[error("creating {path}: {source}")]
    Create {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Identity(#[from] NetError),
}

/// The peer id kept in the store at `store_dir` (created, mode 0700, with a
/// fresh ed25519 identity when there is none), and whether it was created.
pub fn peer_id(store_dir: &Path) -> Result<(PeerId, bool), NodeIdError> {
    if RocksStore::exists(store_dir) {
        // Read-only first: works while a daemon has the store open.
        let ro = RocksStore::open_read_only(store_dir)?;
        if let Some(bytes) = ro.get_state(keys::IDENTITY)? {
            let key = Keypair::from_protobuf_encoding(&bytes).map_err(NetError::Identity)?;
            return Ok((key.public().to_peer_id(), false));
        }
    }
    create_private_dir(store_dir).map_err(|source| NodeIdError::Create {
        path: store_dir.display().to_string(),
        source,
    })?;
    let store = RocksStore::open(store_dir)?;
    let key = load_or_create_identity(&store)?;
    Ok((key.public().to_peer_id(), true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_is_created_once_and_read_while_the_store_is_open() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("data").join("store");
        let (id, created) = peer_id(&dir).expect("created");
        assert!(created);
        assert!(crate::net::identity::peer_key(&id).is_some(), "ed25519");
        let held = RocksStore::open(&dir).expect("a daemon holds it");
        assert_eq!(peer_id(&dir).expect("read").0, id);
        drop(held);
        assert_eq!(peer_id(&dir).expect("read"), (id, false));
    }
}
