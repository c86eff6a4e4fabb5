//! The `/pollen/3` protocol as a behaviour of its own: request-response
//! with Pollen's codec underneath, and above it the correlation of every
//! outbound request with what it was for ([`Pending`]), so the driver
//! receives answers already paired with their purpose and never keeps a
//! table of request ids. Answers to requests it no longer tracks are
//! dropped here.

use std::collections::HashMap;
use std::task::{Context, Poll};

use libp2p::core::transport::PortUse;
use libp2p::core::Endpoint;
use libp2p::request_response::{
    self, InboundRequestId, OutboundFailure, OutboundRequestId, ResponseChannel,
};
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};
use pollen_core::manifest::ManifestId;
use pollen_core::wire::{Request, Response};

use super::protocol::{Codec, Counter, Outbound, Reply};

/// What an outbound request was for.
#[derive(Debug)]
pub enum Pending {
    Hello,
    Manifest,
    Have(ManifestId),
    /// A chunk, with the counter of its response's bytes received so far.
    Chunk {
        manifest: ManifestId,
        index: u32,
        progress: Counter,
    },
    Peers,
    /// A notice whose answer carries nothing.
    Notice,
    Control(ManifestId),
}

/// What the protocol tells the driver.
#[derive(Debug)]
pub enum Event {
    /// A peer asks something; answer through [`Pollen::respond`].
    Request {
        peer: PeerId,
        id: InboundRequestId,
        request: Request,
        channel: ResponseChannel<Reply>,
    },
    /// The answer to a request of ours, with what it was for.
    Response {
        peer: PeerId,
        pending: Pending,
        response: Response,
    },
    /// A request of ours failed (no answer, a broken stream, a bad frame).
    Failed {
        peer: PeerId,
        pending: Pending,
        error: OutboundFailure,
    },
    /// Our response was written to its end (`complete`), or its stream failed.
    ResponseEnded {
        peer: PeerId,
        id: InboundRequestId,
        complete: bool,
    },
}

/// See the module documentation.
#[allow(missing_debug_implementations)] // request-response's behaviour has none
pub struct Pollen {
    inner: request_response::Behaviour<Codec>,
    pending: HashMap<OutboundRequestId, Pending>,
}

impl Pollen {
    pub fn new(inner: request_response::Behaviour<Codec>) -> Self {
        Self {
            inner,
            pending: HashMap::new(),
        }
    }

    /// Sends `request` to `peer`, remembering what it is for. (Bounded by
    /// request-response: each entry ends with an answer or a failure,
    /// the stream timeout at the latest.)
    pub fn send(&mut self, peer: &PeerId, request: Request, pending: Pending) {
        let progress = match &pending {
            Pending::Chunk { progress, .. } => Some(progress.clone()),
            _ => None,
        };
        let id = self
            .inner
            .send_request(peer, Outbound { request, progress });
        self.pending.insert(id, pending);
    }

    /// Answers a peer's request; a peer that went away meanwhile hears its
    /// stream fail instead ([`Event::ResponseEnded`]).
    pub fn respond(&mut self, channel: ResponseChannel<Reply>, reply: impl Into<Reply>) {
        let _ = self.inner.send_response(channel, reply.into());
    }

    /// Requests of ours still waiting for an answer.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Our own event for one of request-response's (`None`: an answer to
    /// a request no longer tracked).
    fn translate(&mut self, event: request_response::Event<Outbound, Reply>) -> Option<Event> {
        use request_response::{Event as Rr, Message};
        Some(match event {
            Rr::Message { peer, message, .. } => match message {
                Message::Request {
                    request_id,
                    request,
                    channel,
                } => Event::Request {
                    peer,
                    id: request_id,
                    request: request.request,
                    channel,
                },
                Message::Response {
                    request_id,
                    response,
                } => Event::Response {
                    peer,
                    pending: self.pending.remove(&request_id)?,
                    response: response.response,
                },
            },
            Rr::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => Event::Failed {
                peer,
                pending: self.pending.remove(&request_id)?,
                error,
            },
            Rr::ResponseSent {
                peer, request_id, ..
            } => Event::ResponseEnded {
                peer,
                id: request_id,
                complete: true,
            },
            Rr::InboundFailure {
                peer, request_id, ..
            } => Event::ResponseEnded {
                peer,
                id: request_id,
                complete: false,
            },
        })
    }
}

impl NetworkBehaviour for Pollen {
    type ConnectionHandler =
        <request_response::Behaviour<Codec> as NetworkBehaviour>::ConnectionHandler;
    type ToSwarm = Event;

    fn handle_pending_inbound_connection(
        &mut self,
        id: ConnectionId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.inner
            .handle_pending_inbound_connection(id, local, remote)
    }

    fn handle_established_inbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.inner
            .handle_established_inbound_connection(id, peer, local, remote)
    }

    fn handle_pending_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: Option<PeerId>,
        addresses: &[Multiaddr],
        role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        self.inner
            .handle_pending_outbound_connection(id, peer, addresses, role)
    }

    fn handle_established_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.inner
            .handle_established_outbound_connection(id, peer, addr, role, port_use)
    }

    fn on_swarm_event(&mut self, event: FromSwarm<'_>) {
        self.inner.on_swarm_event(event)
    }

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        self.inner.on_connection_handler_event(peer, id, event)
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<ToSwarm<Event, THandlerInEvent<Self>>> {
        loop {
            match self.inner.poll(cx) {
                Poll::Ready(ToSwarm::GenerateEvent(e)) => {
                    if let Some(e) = self.translate(e) {
                        return Poll::Ready(ToSwarm::GenerateEvent(e));
                    }
                }
                Poll::Ready(other) => {
                    // Every other instruction passes through unchanged.
                    return Poll::Ready(other.map_out(|_| unreachable!("handled above")));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
