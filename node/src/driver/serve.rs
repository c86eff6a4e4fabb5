//! Answering peers' requests. Every answer is bounded; chunk requests go
//! through the protocol behaviour's serving limits ([`crate::net::serving`],
//! which answers `Busy` and `Declined` itself), and admitted chunks are
//! read off the event loop ([`reader`]) and checked against their id once
//! per read, so a corrupted disk never spreads. A store error while serving
//! is logged and answered `NotFound`: it never stops the node.

pub(super) mod reader;

use libp2p::PeerId;
use pollen_core::admission::keep_connection;
use pollen_core::manifest::{ChunkRef, ManifestId};
use pollen_core::wire::{PeerRecord, Request, Response, MAX_ADDRS, MAX_PEER_RECORDS};

use super::{Driver, DriverError, Mode};
use crate::net::exchange::KnownPeer;
use crate::net::pollen::{Admitted, Channel, InboundId};
use crate::net::protocol::{ChunkRead, ChunkSource};
use crate::store::StoreError;

/// A stored item to serve, or `NotFound` if it cannot be read (logged).
fn or_not_found(
    what: &str,
    read: Result<Option<Vec<u8>>, StoreError>,
    found: impl FnOnce(Vec<u8>) -> Response,
) -> Response {
    match read {
        Ok(Some(bytes)) => found(bytes),
        Ok(None) => Response::NotFound,
        Err(e) => {
            tracing::error!(error = %e, "reading {what} to serve failed; answering NotFound");
            Response::NotFound
        }
    }
}

impl<S: crate::store::Store + 'static> Driver<S> {
    pub(super) fn on_request(
        &mut self,
        peer: PeerId,
        request: Request,
    ) -> Result<Response, DriverError> {
        let now = self.now();
        Ok(match request {
            Request::Hello(h) => {
                let site = self.site_of(&peer, h.site);
                if self.config.mode == Mode::Seed && !self.keeps(site) {
                    // Full: a site's gateways reach us, the rest use their site.
                    tracing::info!(%peer, "full: turning a peer away");
                    if let Some(info) = self.peers.get_mut(&peer) {
                        info.turn_away = true;
                    }
                    return Ok(Response::Busy { retry_ms: 60_000 });
                }
                self.swarm.behaviour_mut().ip_limit.admit(peer);
                let info = self.peers.entry(peer).or_default();
                info.site = site;
                info.role = h.role;
                // Admitted: it hears this node's hello now (and greets back).
                if !info.hello_sent {
                    self.send_hello(peer);
                }
                if h.channel == self.config.channel {
                    self.consider(peer, h.newest);
                }
                let hello = self.hello();
                if let Some(info) = self.peers.get_mut(&peer) {
                    info.told_role = Some(hello.role);
                }
                Response::Hello(hello)
            }
            Request::Role(role) => {
                if let Some(info) = self.peers.get_mut(&peer) {
                    info.role = role;
                    self.node.handle_peer_role(now, super::Peer(peer), role);
                }
                Response::Ok
            }
            Request::Announce { channel, announce } => {
                if channel == self.config.channel {
                    self.consider(peer, Some(announce));
                }
                Response::Ok
            }
            Request::GetManifest(id) => or_not_found(
                "a manifest",
                self.store.get_manifest(&id),
                Response::Manifest,
            ),
            Request::GetHave(id) => match (&self.release, self.node.have()) {
                (Some(r), Some(have)) if r.id() == id => Response::Have(have.clone()),
                _ => Response::NotFound,
            },
            Request::Gained { manifest, indices } => {
                if let Some(r) = &self.release {
                    if r.id() == manifest {
                        // The node logic ignores indices outside the release.
                        self.node.handle_gained(now, super::Peer(peer), &indices);
                        // What we sent it has arrived: its slots are free,
                        // and what it still waited for here it has now.
                        self.swarm
                            .behaviour_mut()
                            .pollen
                            .announced(now, &peer, &indices);
                        self.start_held();
                    }
                }
                Response::Ok
            }
            Request::GetPeers => Response::Peers(self.peer_records(peer)),
            Request::Status(list) => {
                self.on_status(peer, list)?;
                Response::Ok
            }
            Request::GetControl(id) => or_not_found(
                "a rollout control",
                crate::controls::load_bytes(self.store.as_ref(), &id),
                Response::Control,
            ),
            Request::Control(bytes) => {
                self.on_control(peer, &bytes)?;
                Response::Ok
            }
            Request::Policy(bytes) => {
                self.offer_policy(Some(peer), &bytes);
                Response::Ok
            }
            _ => Response::NotFound,
        })
    }

    /// Whether a seeder keeps a new peer of `site` (see
    /// [`keep_connection`]): counted over the peers that said hello.
    fn keeps(&self, site: Option<pollen_core::swarm::SiteId>) -> bool {
        let hello = self.peers.values().filter(|i| i.hello || i.site.is_some());
        let (mut all, mut same) = (0u32, 0u32);
        for i in hello {
            all += 1;
            if site.is_some() && i.site == site {
                same += 1;
            }
        }
        keep_connection(all, self.config.limits.max_established, same)
    }

    /// Peer exchange: peers this node knows, gateways of other sites first.
    fn peer_records(&self, asker: PeerId) -> Vec<PeerRecord> {
        let mut known: Vec<(&PeerId, &super::PeerInfo)> = self
            .peers
            .iter()
            .filter(|(p, i)| **p != asker && i.hello && !i.listen.is_empty())
            .collect();
        known.sort_by_key(|(p, i)| (!i.role.gateway, **p));
        known
            .into_iter()
            .take(MAX_PEER_RECORDS)
            .map(|(p, i)| {
                PeerRecord::from(&KnownPeer {
                    peer: *p,
                    addrs: i.listen.iter().take(MAX_ADDRS).cloned().collect(),
                    site: i.site,
                    role: i.role,
                })
            })
            .collect()
    }

    /// A chunk request: sent now, held for a slot, or refused.
    pub(super) fn on_get_chunk(
        &mut self,
        peer: PeerId,
        id: InboundId,
        channel: Channel,
        manifest: ManifestId,
        index: u32,
    ) {
        // Held, or arriving in pieces (served as they land).
        let chunk = match &self.release {
            Some(r) if r.id() == manifest => r.chunks.get(index as usize).copied().filter(|c| {
                self.node.have().is_some_and(|h| h.get(index)) || self.partials.get(c).is_some()
            }),
            _ => None,
        };
        let Some(chunk) = chunk else {
            self.respond(channel, Response::NotFound);
            return;
        };
        let site = self.peers.get(&peer).and_then(|i| i.site);
        let now = self.now();
        let admitted = self
            .swarm
            .behaviour_mut()
            .pollen
            .offer_chunk(now, id, peer, site, manifest, index, chunk.len, channel);
        if let Some(admitted) = admitted {
            self.send_chunk(admitted);
        }
    }

    /// Starts the held requests whose turn has come (the behaviour declines
    /// those whose chunk went out to the fleet meanwhile).
    pub(super) fn start_held(&mut self) {
        let now = self.now();
        while let Some(admitted) = self.swarm.behaviour_mut().pollen.next_admitted(now) {
            self.send_chunk(admitted);
        }
    }

    /// Sends an admitted chunk: queues its read and hands the response to
    /// the codec at once, which writes the bytes when the reader has them
    /// (its slot is freed when the requester announces the chunk, or the
    /// stream broke off — a failed read counts as that).
    fn send_chunk(&mut self, admitted: Admitted) {
        let now = self.now();
        let chunk = match &self.release {
            Some(r) if r.id() == admitted.manifest => {
                r.chunks.get(admitted.index as usize).copied()
            }
            _ => None,
        };
        let Some(chunk) = chunk else {
            let pollen = &mut self.swarm.behaviour_mut().pollen;
            pollen.not_sent(now, admitted, Response::NotFound);
            return;
        };
        let held = self.node.have().is_some_and(|h| h.get(admitted.index));
        let source = match self.partials.get(&chunk).filter(|_| !held) {
            // Still arriving: its pieces go out as they land.
            Some(partial) => {
                self.report.chunks_passed_on += 1;
                ChunkSource::Partial(partial)
            }
            None => match self.read_to_serve(chunk) {
                Some(read) => ChunkSource::Read(read),
                None => {
                    let pollen = &mut self.swarm.behaviour_mut().pollen;
                    pollen.not_sent(now, admitted, Response::Busy { retry_ms: 1000 });
                    return;
                }
            },
        };
        // Counted when queued: a read that fails is logged by the reader.
        self.report.bytes_served += u64::from(chunk.len);
        self.report.chunks_served += 1;
        let pollen = &mut self.swarm.behaviour_mut().pollen;
        pollen.send_chunk(admitted, chunk.len, source);
    }

    /// Queues a read of `chunk` to serve (`None`: the readers cannot take
    /// it now, logged).
    fn read_to_serve(&mut self, chunk: ChunkRef) -> Option<ChunkRead> {
        let read = self
            .uploads
            .reader(&self.store)
            .and_then(|r| r.read(chunk).map_err(super::uploads::ReaderError::from));
        read.map_err(|e| {
            tracing::warn!(chunk = %chunk.id, error = %e, "cannot read a chunk to serve now");
        })
        .ok()
    }
}
