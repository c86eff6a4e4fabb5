//! Answering peers' requests. Every answer is bounded; chunks are re-hashed
//! before they are served, so a corrupted disk never spreads.

use libp2p::PeerId;
use pollen_core::wire::{PeerRecord, Request, Response, MAX_ADDRS, MAX_PEER_RECORDS};
use serde_bytes::ByteBuf;

use super::{Driver, DriverError, MAX_SERVING_PER_PEER};
use crate::store::Store;

impl Driver {
    pub(super) fn on_request(
        &mut self,
        peer: PeerId,
        request: Request,
    ) -> Result<Response, DriverError> {
        let now = self.now();
        Ok(match request {
            Request::Hello(h) => {
                let info = self.peers.entry(peer).or_default();
                info.site = h.site;
                if h.channel == self.config.channel {
                    self.consider(peer, h.newest);
                }
                Response::Hello(self.hello())
            }
            Request::Announce { channel, announce } => {
                if channel == self.config.channel {
                    self.consider(peer, Some(announce));
                }
                Response::Ok
            }
            Request::GetManifest(id) => match self.store.get_manifest(&id)? {
                Some(bytes) => Response::Manifest(bytes),
                None => Response::NotFound,
            },
            Request::GetHave(id) => match &self.release {
                Some(r) if r.id() == id => Response::Have(r.sched.have().clone()),
                _ => Response::NotFound,
            },
            Request::Gained { manifest, indices } => {
                if let Some(r) = &mut self.release {
                    if r.id() == manifest {
                        let n = r.chunks.len() as u32;
                        let indices: Vec<u32> = indices.into_iter().filter(|&i| i < n).collect();
                        r.sched.handle_have_many(now, super::Peer(peer), &indices);
                    }
                }
                Response::Ok
            }
            Request::GetChunk { manifest, index } => {
                let busy = self
                    .peers
                    .get(&peer)
                    .is_some_and(|i| i.serving >= MAX_SERVING_PER_PEER);
                let chunk = match &self.release {
                    Some(r) if r.id() == manifest && r.sched.have().get(index) => {
                        r.chunks.get(index as usize).copied()
                    }
                    _ => None,
                };
                match chunk {
                    _ if busy => Response::Busy,
                    None => Response::NotFound,
                    Some(c) => match self.store.get_chunk(&c.id)? {
                        Some(bytes) if c.id.matches(&bytes) => {
                            self.report.bytes_served += bytes.len() as u64;
                            self.report.chunks_served += 1;
                            Response::Chunk(bytes)
                        }
                        Some(_) => {
                            tracing::error!(chunk = %c.id, "stored chunk fails its hash; not serving it");
                            Response::NotFound
                        }
                        None => Response::NotFound,
                    },
                }
            }
            Request::GetPeers => {
                let records = self
                    .peers
                    .iter()
                    .filter(|(p, i)| **p != peer && i.hello && !i.listen.is_empty())
                    .take(MAX_PEER_RECORDS)
                    .map(|(p, i)| PeerRecord {
                        peer: p.to_bytes(),
                        addrs: i
                            .listen
                            .iter()
                            .take(MAX_ADDRS)
                            .map(|a| ByteBuf::from(a.to_vec()))
                            .collect(),
                        site: i.site,
                    })
                    .collect();
                Response::Peers(records)
            }
            Request::Status(list) => {
                self.on_status(peer, list)?;
                Response::Ok
            }
            Request::GetControl(id) => match crate::controls::load_bytes(self.store.as_ref(), &id)?
            {
                Some(bytes) => Response::Control(bytes),
                None => Response::NotFound,
            },
            Request::Control(bytes) => {
                self.on_control(peer, &bytes)?;
                Response::Ok
            }
            _ => Response::NotFound,
        })
    }
}
