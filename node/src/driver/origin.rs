//! The HTTPS origin in the driver. The origin (its mirrors, one client) is
//! a synthetic peer of the node logic: a `PeerId` of a locally generated
//! key, introduced as an origin without a site that holds every chunk, so
//! core's classes, site split and gateways apply unchanged (only members
//! with uplink access are assigned uplink fetches; the others get chunks
//! from their site) and `--uplink-rate` budgets its bytes like any uplink
//! source's. A request to it becomes an HTTP GET on a task off the loop;
//! the answer goes through the writer (BLAKE3 against the chunk id) like a
//! peer's. Notices, acknowledgements and roles to it are not sent anywhere.
//! It also polls the channel's signed index for new releases (`index`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use libp2p::PeerId;
use pollen_core::chunk::{ChunkIndex, Rejected};
use pollen_core::manifest::ManifestId;
use pollen_core::origin::chunk_path;
use pollen_core::swarm::{Bitfield, PeerInfo as SchedPeer};
use tokio::sync::mpsc;

use super::{writer, Driver, DriverError, Peer};
use crate::net::protocol::Counter;
use crate::origin::{Expect, Fetched, OriginClient, OriginConfig, OriginError, OriginView};

/// Answers from origin tasks waiting for the loop at most (each task holds
/// one request the scheduler made, and the scheduler bounds those).
const DONE_QUEUE: usize = 64;
/// A chunk a mirror served wrong is asked for again after this (from the
/// next mirror, the bad one resting).
const BAD_CHUNK_RETRY: Duration = Duration::from_millis(200);

/// What an origin task reports back.
#[derive(Debug)]
pub(super) enum Done {
    Chunk {
        manifest: ManifestId,
        index: u32,
        result: Result<Fetched, OriginError>,
    },
    Index(super::origin_index::IndexDone),
}

/// The origin's state in the driver.
#[derive(Debug)]
pub(super) struct Origins {
    pub(super) client: Arc<OriginClient>,
    /// The peer the node logic knows the origin as.
    pub(super) peer: PeerId,
    pub(super) tx: mpsc::Sender<Done>,
    rx: mpsc::Receiver<Done>,
    /// Which mirror served each chunk now with the writer (blamed if it
    /// fails verification).
    served: HashMap<u32, usize>,
    /// Verified chunk bytes stored from the origin.
    pub(super) bytes_verified: u64,
    /// Chunks from the origin that failed verification (never stored).
    pub(super) chunks_rejected: u64,
    pub(super) index: super::origin_index::IndexPoll,
}

pub(super) async fn recv_origin(o: &mut Option<Origins>) -> Option<Done> {
    match o {
        Some(o) => o.rx.recv().await,
        None => std::future::pending().await,
    }
}

impl<S: crate::store::Store + 'static> Driver<S> {
    /// Adds the origin `config` names (its mirrors) as an uplink source.
    pub fn with_origins(mut self, config: OriginConfig) -> Result<Self, DriverError> {
        let poll = config.poll;
        let client = Arc::new(OriginClient::new(config)?);
        let peer = libp2p::identity::Keypair::generate_ed25519()
            .public()
            .to_peer_id();
        let (tx, rx) = mpsc::channel(DONE_QUEUE);
        tracing::info!(origin = %peer, mirrors = ?client.config().urls.iter().map(|u| u.as_str()).collect::<Vec<_>>(), "origin configured");
        self.origins = Some(Origins {
            client,
            peer,
            tx,
            rx,
            served: HashMap::new(),
            bytes_verified: 0,
            chunks_rejected: 0,
            index: super::origin_index::IndexPoll::new(poll),
        });
        let now = self.now();
        let info = SchedPeer {
            site: None,
            origin: true,
            uplink: false,
            gateway: false,
        };
        self.node.handle_peer_up(now, Peer(peer), info, true);
        self.origin_has_all();
        self.drain_actions()?;
        Ok(self)
    }

    /// Whether `peer` is the origin's synthetic peer.
    pub(super) fn is_origin(&self, peer: &PeerId) -> bool {
        self.origins.as_ref().is_some_and(|o| o.peer == *peer)
    }

    /// The origin holds every chunk of the current release (said again
    /// whenever a release is taken up: the scheduler is new then).
    fn origin_has_all(&mut self) {
        if let Some(n) = self.release.as_ref().map(|r| r.chunks.len()) {
            self.origin_has(n);
        }
    }

    /// The origin holds all `chunks` of the release just taken up.
    pub(super) fn origin_has(&mut self, chunks: usize) {
        let Some(peer) = self.origins.as_ref().map(|o| o.peer) else {
            return;
        };
        let now = self.now();
        self.node
            .handle_have_all(now, Peer(peer), Bitfield::full(chunks as u32));
    }

    /// The node logic asked the origin for chunk `index`: a GET off the loop.
    pub(super) fn origin_request(&mut self, index: u32) {
        let (Some(o), Some(r)) = (&self.origins, &self.release) else {
            return;
        };
        let Some(chunk) = r.chunks.get(index as usize).copied() else {
            return;
        };
        let manifest = r.id();
        let progress = Counter::default();
        self.chunk_progress
            .insert((o.peer, index), progress.clone());
        let (client, tx) = (o.client.clone(), o.tx.clone());
        tokio::spawn(async move {
            let path = chunk_path(&chunk.id);
            let expect = Expect::Exactly(u64::from(chunk.len));
            let result = client.fetch(&path, expect, None, Some(&progress)).await;
            let _ = tx
                .send(Done::Chunk {
                    manifest,
                    index,
                    result,
                })
                .await;
        });
    }

    pub(super) fn on_origin(&mut self, done: Done) -> Result<(), DriverError> {
        match done {
            Done::Chunk {
                manifest,
                index,
                result,
            } => self.on_origin_chunk(manifest, index, result),
            Done::Index(d) => self.on_index_done(d),
        }
    }

    fn on_origin_chunk(
        &mut self,
        manifest: ManifestId,
        index: u32,
        result: Result<Fetched, OriginError>,
    ) -> Result<(), DriverError> {
        let Some(peer) = self.origins.as_ref().map(|o| o.peer) else {
            return Ok(());
        };
        self.chunk_progress.remove(&(peer, index));
        if self.release.as_ref().is_none_or(|r| r.id() != manifest) {
            return Ok(());
        }
        let now = self.now();
        let p = Peer(peer);
        match result {
            Ok(Fetched::Body { bytes, mirror, .. }) => {
                if let Some(o) = &mut self.origins {
                    o.served.insert(index, mirror);
                }
                self.on_chunk(peer, manifest, index, bytes)?;
            }
            // Never asked conditionally: not an answer to this request.
            Ok(Fetched::NotModified { .. }) => self.node.handle_request_busy(now, p, index, None),
            Err(e @ OriginError::NotFound { .. }) => {
                tracing::warn!(index, error = %e, "no origin mirror has the chunk");
                self.node.handle_request_failed(now, p, index);
            }
            Err(e) => {
                tracing::debug!(index, error = %e, "origin chunk request failed");
                self.node
                    .handle_request_busy(now, p, index, e.retry_after());
            }
        }
        Ok(())
    }

    /// The writer's verdict on a chunk from the origin. A chunk that failed
    /// verification rests the mirror that served it and is asked again (the
    /// next mirror answers): not a strike against the origin as a whole,
    /// which would ban every mirror for one bad one. Returns whether the
    /// verdict was handled here.
    pub(super) fn origin_written(
        &mut self,
        peer: PeerId,
        index: ChunkIndex,
        len: usize,
        outcome: &writer::Outcome,
    ) -> bool {
        let Some(o) = self.origins.as_mut().filter(|o| o.peer == peer) else {
            return false;
        };
        let mirror = o.served.remove(&index.get());
        match outcome {
            writer::Outcome::Stored(_) => {
                o.bytes_verified += len as u64;
                false
            }
            writer::Outcome::Rejected(reason) => {
                o.chunks_rejected += 1;
                let text = rejected_text(reason, index.get());
                tracing::warn!(%index, mirror, %reason, "origin chunk failed verification; not stored");
                if let Some(m) = mirror {
                    o.client.blame(m, text);
                }
                let now = self.now();
                self.node
                    .handle_request_busy(now, Peer(peer), index.get(), Some(BAD_CHUNK_RETRY));
                true
            }
            writer::Outcome::NotStored => false,
        }
    }

    pub(super) fn origin_view(&self) -> Option<OriginView> {
        self.origins.as_ref().map(|o| OriginView {
            mirrors: o.client.status(),
            bytes_verified: o.bytes_verified,
            chunks_rejected: o.chunks_rejected,
            index_seq: o.index.newest_seq(),
            index_error: o.index.error().map(str::to_owned),
        })
    }
}

fn rejected_text(reason: &Rejected, index: u32) -> String {
    format!("chunk {index} failed verification: {reason}")
}
