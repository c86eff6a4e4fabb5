//! The `/pollen/3` protocol as a behaviour of its own: request-response
//! with Pollen's codec underneath, and above it the correlation of every
//! outbound request with what it was for ([`Pending`]), so the driver
//! receives answers already paired with their purpose and never keeps a
//! table of request ids. Answers to requests it no longer tracks are
//! dropped here.
//!
//! Requests to a peer that speaks sessions go on its session
//! ([`super::session`]), the rest on a stream each; answers and requests
//! from either come out as the same events.
//!
//! On the serving side it owns the per-peer serving limits
//! ([`super::serving`]): a chunk request the driver can serve is offered
//! here, and answered `Busy` or `Declined` here when admission says so;
//! the driver only reads and sends the chunks this admits.

use std::collections::HashMap;
use std::task::{Context, Poll};
use std::time::Duration;

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
use pollen_core::admission::AdmissionConfig;
use pollen_core::manifest::ManifestId;
use pollen_core::swarm::SiteId;
use pollen_core::wire::{Request, Response};

use super::piecewise::Landing;
use super::protocol::{ChunkSource, Codec, Counter, Expect, Outbound, Reply};
use super::serving::{Offered, Serving};
use super::session::{SessionReply, SessionRequestId, Sessions};

/// A request a peer made of us: on a stream of its own or on its session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum InboundId {
    Stream(InboundRequestId),
    Session(SessionRequestId),
}

/// The way back for an answer ([`Pollen::respond`]).
#[derive(Debug)]
pub enum Channel {
    Stream(ResponseChannel<Reply>),
    Session(SessionReply),
}

/// A chunk request admitted by the serving limits, to be read and sent
/// ([`Pollen::send_chunk`]) or answered without it ([`Pollen::not_sent`]).
pub type Admitted = super::serving::Admitted<InboundId, Channel>;

/// What an outbound request was for.
#[derive(Debug)]
pub enum Pending {
    Hello,
    Manifest,
    Have(ManifestId),
    /// A chunk, with the counter of its response's bytes received so far
    /// and where its pieces land if it comes in pieces.
    Chunk {
        manifest: ManifestId,
        index: u32,
        progress: Counter,
        landing: Option<Landing>,
    },
    Peers,
    /// A notice whose answer carries nothing.
    Notice,
    Control(ManifestId),
}

/// What reading the answer to a request for `pending` needs.
fn expect(pending: &Pending) -> Expect {
    match pending {
        Pending::Chunk {
            progress, landing, ..
        } => Expect {
            progress: Some(progress.clone()),
            landing: landing.clone(),
        },
        _ => Expect::default(),
    }
}

/// What the protocol tells the driver.
#[derive(Debug)]
pub enum Event {
    /// A peer asks something; answer through [`Pollen::respond`].
    Request {
        peer: PeerId,
        id: InboundId,
        request: Request,
        channel: Channel,
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
    /// A peer took back its request `id` (on a session): hand it to
    /// [`Pollen::cancelled`].
    Cancelled { peer: PeerId, id: InboundId },
    /// Our response was written to its end (`complete`), or its stream failed.
    ResponseEnded {
        peer: PeerId,
        id: InboundId,
        complete: bool,
    },
}

/// See the module documentation.
#[allow(missing_debug_implementations)] // request-response's behaviour has none
pub struct Pollen {
    inner: request_response::Behaviour<Codec>,
    pending: HashMap<OutboundRequestId, Pending>,
    sessions: Sessions,
    serving: Serving<InboundId, Channel>,
}

impl Pollen {
    pub fn new(inner: request_response::Behaviour<Codec>, sessions: Sessions) -> Self {
        Self {
            inner,
            pending: HashMap::new(),
            sessions,
            serving: Serving::new(AdmissionConfig::default(), None),
        }
    }

    /// Serves under `config` as a node of `site` (the driver's settings).
    pub fn serve_with(&mut self, config: AdmissionConfig, site: Option<SiteId>) {
        self.serving = Serving::new(config, site);
    }

    /// A new release of `chunks` chunks is served.
    pub fn new_release(&mut self, chunks: u32) {
        self.serving.new_release(chunks);
    }

    /// Whether requests from other sites are served.
    pub fn set_serves_away(&mut self, yes: bool) {
        self.serving.set_serves_away(yes);
    }

    /// A request for a chunk this node holds (`len` bytes): admitted now
    /// (returned), held for a slot, or answered `Busy` / `Declined` here.
    #[allow(clippy::too_many_arguments)] // one request's fields
    pub fn offer_chunk(
        &mut self,
        now: Duration,
        id: InboundId,
        peer: PeerId,
        site: Option<SiteId>,
        manifest: ManifestId,
        index: u32,
        len: u32,
        channel: Channel,
    ) -> Option<Admitted> {
        match self
            .serving
            .offer(now, id, peer, site, manifest, index, len, channel)
        {
            Offered::Send(a) => Some(a),
            Offered::Held => None,
            Offered::Refused(channel, response) => {
                self.respond(channel, response);
                None
            }
        }
    }

    /// The next held request whose turn has come; those declined meanwhile
    /// are answered here.
    pub fn next_admitted(&mut self, now: Duration) -> Option<Admitted> {
        loop {
            match self.serving.poll_start(now)? {
                Offered::Send(a) => return Some(a),
                Offered::Refused(channel, response) => self.respond(channel, response),
                Offered::Held => {}
            }
        }
    }

    /// Sends an admitted chunk of `len` bytes: the codec writes it when
    /// `source` has it (read from the store, or arriving in pieces); its
    /// slot is freed when the requester announces it.
    pub fn send_chunk(&mut self, admitted: Admitted, len: u32, source: ChunkSource) {
        let written = Counter::default();
        self.serving.sending(
            admitted.id,
            admitted.peer,
            admitted.index,
            len,
            written.clone(),
        );
        let reply = match source {
            ChunkSource::Read(read) => Reply::chunk_when_read(read, written),
            ChunkSource::Partial(p) => Reply::chunk_from_partial(p, written),
        };
        self.respond(admitted.channel, reply);
    }

    /// Answers an admitted request without its chunk; its slot is free.
    pub fn not_sent(&mut self, now: Duration, admitted: Admitted, response: Response) {
        self.serving.not_sent(now, admitted.id);
        self.respond(admitted.channel, response);
    }

    /// `peer` announced chunks: what carried them is delivered, and its
    /// held requests for them are answered `Declined` without a wait.
    pub fn announced(&mut self, now: Duration, peer: &PeerId, indices: &[u32]) {
        for channel in self.serving.announced(now, peer, indices) {
            self.respond(channel, Response::Declined { retry_ms: 0 });
        }
    }

    /// Frees the slots of responses never announced, shunning their
    /// requesters (their held requests are answered `Busy`).
    pub fn expire_uploads(&mut self, now: Duration) {
        for (channel, response) in self.serving.expire(now) {
            self.respond(channel, response);
        }
    }

    /// Takes back our request for chunk `index` of `manifest` from `peer`
    /// (on its session; a request on a stream of its own cannot be, and
    /// its answer comes anyway). Returns whether it was.
    pub fn cancel(&mut self, peer: &PeerId, manifest: ManifestId, index: u32) -> bool {
        self.sessions.cancel(peer, |p| {
            matches!(p, Pending::Chunk { manifest: m, index: i, .. } if *m == manifest && *i == index)
        })
    }

    /// A peer took back request `id`: if it is still held for a slot, it
    /// is dropped unanswered.
    pub fn cancelled(&mut self, now: Duration, id: InboundId) -> bool {
        // Dropped here: the session writes nothing for it.
        self.serving.cancel(now, id).is_some()
    }

    /// A response's stream ended (see [`Event::ResponseEnded`]).
    pub fn response_ended(&mut self, now: Duration, id: InboundId, complete: bool) {
        self.serving.ended(now, id, complete);
    }

    /// `peer` is gone: what was held for it or under way to it is over.
    pub fn forget_peer(&mut self, now: Duration, peer: &PeerId) {
        self.serving.forget(now, peer);
        self.sessions.forget(peer);
    }

    /// Sends `request` to `peer` at `now`, remembering what it is for: on
    /// its session if one is open, else on a stream of its own. (Bounded:
    /// each entry ends with an answer or a failure, the request timeout at
    /// the latest — [`Pollen::expire_requests`] for those on sessions.)
    /// Returns whether it went on a session.
    pub fn send(
        &mut self,
        now: Duration,
        peer: &PeerId,
        request: Request,
        pending: Pending,
    ) -> bool {
        let expect = expect(&pending);
        let Some((request, pending)) = self.sessions.send(now, *peer, request, pending, expect)
        else {
            return true;
        };
        self.send_on_stream(peer, request, pending);
        false
    }

    fn send_on_stream(&mut self, peer: &PeerId, request: Request, pending: Pending) {
        let expect = expect(&pending);
        let id = self.inner.send_request(peer, Outbound { request, expect });
        self.pending.insert(id, pending);
    }

    /// Whether requests to `peer` now go on its session.
    pub fn has_session(&self, peer: &PeerId) -> bool {
        self.sessions.is_open(peer)
    }

    /// Fails the requests on sessions whose answers are overdue.
    pub fn expire_requests(&mut self, now: Duration) {
        self.sessions.expire(now);
    }

    /// Answers a peer's request; a peer that went away meanwhile hears its
    /// stream fail instead ([`Event::ResponseEnded`]).
    pub fn respond(&mut self, channel: Channel, reply: impl Into<Reply>) {
        match channel {
            Channel::Stream(c) => {
                let _ = self.inner.send_response(c, reply.into());
            }
            Channel::Session(c) => c.send(reply.into()),
        }
    }

    /// Requests of ours still waiting for an answer.
    pub fn in_flight(&self) -> usize {
        self.pending.len() + self.sessions.asking()
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
                    id: InboundId::Stream(request_id),
                    request: request.request,
                    channel: Channel::Stream(channel),
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
                id: InboundId::Stream(request_id),
                complete: true,
            },
            Rr::InboundFailure {
                peer, request_id, ..
            } => Event::ResponseEnded {
                peer,
                id: InboundId::Stream(request_id),
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
        if let Poll::Ready(e) = self.sessions.poll(cx) {
            return Poll::Ready(ToSwarm::GenerateEvent(e));
        }
        for (peer, request, pending) in self.sessions.take_again() {
            self.send_on_stream(&peer, request, pending);
        }
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
