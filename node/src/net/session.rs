//! Sessions: a node's requests to a peer on one long-lived stream
//! ([`SESSION_PROTOCOL`]), pipelined, instead of a stream of their own
//! each. A chunk on its own stream paid for a yamux stream, its
//! negotiation, a timer and a task wake-up or two, and so did the
//! acknowledgement after it; on a fast link that per-request work, not
//! the bytes, bounded the transfer (BENCHMARKS.md, "Sessions").
//!
//! Each direction is its own session: the opener sends tagged requests and
//! reads tagged answers; the acceptor reads requests, hands each to the
//! driver with a [`SessionReply`], and writes the answers as they come.
//! A session is opened on the first request to a peer (that request and
//! those sent while it opens go the old way) and is used once the peer
//! echoed its preamble ([`SESSION_PREAMBLE`]); a peer that does not speak
//! it, or whose session failed, is asked the old way until it reconnects.
//!
//! Bounded: at most [`QUEUE`] requests wait to be written on a session
//! (more go the old way), an accepted session reads at most `max_open`
//! requests ahead of its answers (then the peer's writes wait) and,
//! apart from them, at most [`NOTICES_AHEAD`] notices, a peer
//! has at most [`MAX_INBOUND`] sessions open to us, and a request that
//! gets no answer fails after the request timeout, as on its own stream.
//!
//! A request can be taken back ([`Sessions::cancel`], a tag with
//! [`CANCEL_BIT`] set): the peer drops it if it still holds it unanswered
//! (its admission queue), so bytes nobody waits for do not cross an uplink.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::channel::mpsc;
use futures::future::{self, Either};
use futures::{AsyncReadExt, AsyncWriteExt, SinkExt, StreamExt};
use libp2p::request_response::OutboundFailure;
use libp2p::{PeerId, Stream, StreamProtocol};
use libp2p_stream::{Control, IncomingStreams, OpenStreamError};
use pollen_core::wire::{
    Request, Response, CANCEL_BIT, MAX_REQUEST, PIECES_SESSION_PROTOCOL, SESSION_PREAMBLE,
    SESSION_PROTOCOL, TAG,
};

use super::pollen::{Event, Pending};
use super::protocol::{
    invalid, read_frame, read_response_frame, write_frame, write_reply, Expect, Reply,
};

/// The session protocol as libp2p names it.
pub const SESSION: StreamProtocol = StreamProtocol::new(SESSION_PROTOCOL);
/// The session protocol with chunks in pieces: opened first, and accepted
/// beside [`SESSION`].
pub const PIECES_SESSION: StreamProtocol = StreamProtocol::new(PIECES_SESSION_PROTOCOL);
/// Requests waiting to be written on one session, at most.
pub const QUEUE: usize = 64;
/// Sessions one peer may have open to us at once (one per connection).
pub const MAX_INBOUND: usize = 2;
/// Notes from all session tasks waiting for the behaviour, at most.
const NOTES: usize = 256;
/// Notices ([`Request::Gained`]) an accepted session reads ahead of their
/// answers, at most, beside its `max_open` other requests.
pub const NOTICES_AHEAD: usize = 256;

/// One request on one session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionRequestId {
    session: u64,
    tag: u32,
}

/// The way back for the answer to a request read from a session: written
/// behind its tag once [`SessionReply::send`] is called. Dropped unsent,
/// it tells the session the request was not answered (its place frees).
#[derive(Debug)]
pub struct SessionReply {
    tx: mpsc::Sender<Answer>,
    tag: u32,
    /// The request was a notice: its read-ahead place is a notice's.
    notice: bool,
    sent: bool,
}

/// What a session's writer gets for each request read: its tag, whether
/// it was a notice, and the reply (`None`: none, the request dropped).
type Answer = (u32, bool, Option<Reply>);

impl SessionReply {
    /// Answers; a session closed meanwhile drops it (and reports its end).
    pub fn send(mut self, reply: Reply) {
        self.sent = true;
        // Each clone of the sender has a slot of its own: never full.
        let _ = self.tx.try_send((self.tag, self.notice, Some(reply)));
    }
}

impl Drop for SessionReply {
    fn drop(&mut self) {
        if !self.sent {
            let _ = self.tx.try_send((self.tag, self.notice, None));
        }
    }
}

/// What a session's writer sends.
enum Outgoing {
    Request {
        tag: u32,
        request: Request,
        expect: Box<Expect>,
    },
    /// Takes back the request with this tag ([`CANCEL_BIT`]).
    Cancel(u32),
}

/// What session tasks tell the behaviour.
enum Note {
    Opened {
        peer: PeerId,
        session: u64,
        tx: mpsc::Sender<Outgoing>,
    },
    OpenFailed {
        peer: PeerId,
        session: u64,
    },
    /// An answer to `tag` on our session.
    Answer {
        peer: PeerId,
        session: u64,
        tag: u32,
        response: Response,
    },
    /// Our session ended; `culprit` is the tag whose answer was malformed.
    Closed {
        peer: PeerId,
        session: u64,
        error: io::Error,
        culprit: Option<u32>,
    },
    /// The peer took back its request `tag`.
    Cancelled {
        peer: PeerId,
        session: u64,
        tag: u32,
    },
    /// A request read from a peer's session.
    Asked {
        peer: PeerId,
        session: u64,
        tag: u32,
        request: Request,
        reply: SessionReply,
    },
    /// Our answer to `tag` was written (`complete`), or was not.
    Answered {
        peer: PeerId,
        session: u64,
        tag: u32,
        complete: bool,
    },
    /// A peer's session ended.
    Ended {
        peer: PeerId,
        session: u64,
    },
}

/// Our session to one peer.
enum Out {
    Opening(u64),
    Open {
        session: u64,
        tx: mpsc::Sender<Outgoing>,
        next_tag: u32,
    },
    /// It does not speak sessions, or its session failed: the old way
    /// until it reconnects.
    Refused,
}

/// A request of ours on a session, waiting for its answer.
struct Asking {
    peer: PeerId,
    /// Kept to be asked again the old way if the session breaks.
    request: Request,
    pending: Pending,
    deadline: Duration,
    /// Taken back: only its chunk, should it come anyway, is passed on.
    cancelled: bool,
}

/// A peer's session to us.
struct In {
    peer: PeerId,
    /// Requests read and not yet answered.
    open: HashSet<u32>,
}

/// Every session of a node. See the module documentation.
pub struct Sessions {
    control: Option<Control>,
    /// Whether our sessions are opened with chunks in pieces first.
    pieces: bool,
    /// Sessions peers open to us, and whether chunks go in pieces on them.
    incoming: Vec<(IncomingStreams, bool)>,
    /// Longest an answered request may take (the request timeout).
    timeout: Duration,
    /// Requests an accepted session reads ahead of its answers.
    max_open: usize,
    next_session: u64,
    out: HashMap<PeerId, Out>,
    asking: HashMap<SessionRequestId, Asking>,
    inbound: HashMap<u64, In>,
    notes_tx: mpsc::Sender<Note>,
    notes: mpsc::Receiver<Note>,
    ready: VecDeque<Event>,
    /// Requests cut off by a session that broke, to be asked the old way.
    again: Vec<(PeerId, Request, Pending)>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("enabled", &self.control.is_some())
            .field("out", &self.out.len())
            .field("asking", &self.asking.len())
            .field("inbound", &self.inbound.len())
            .finish()
    }
}

impl Sessions {
    /// Sessions over `control` (`None`: this node neither opens nor accepts
    /// any, as a node from before them).
    /// Without `pieces`, only [`SESSION`], as a node from before pieces.
    pub fn new(control: Option<Control>, timeout: Duration, max_open: usize, pieces: bool) -> Self {
        let mut control = control;
        let incoming = control
            .as_mut()
            .map(|c| {
                [(PIECES_SESSION, true), (SESSION, false)]
                    .into_iter()
                    .filter(|(_, p)| pieces || !p)
                    .filter_map(|(p, pieces)| Some((c.accept(p).ok()?, pieces)))
                    .collect()
            })
            .unwrap_or_default();
        let (notes_tx, notes) = mpsc::channel(NOTES);
        Self {
            control,
            pieces,
            incoming,
            timeout,
            max_open: max_open.max(1),
            next_session: 0,
            out: HashMap::new(),
            asking: HashMap::new(),
            inbound: HashMap::new(),
            notes_tx,
            notes,
            ready: VecDeque::new(),
            again: Vec::new(),
        }
    }

    /// Requests of ours waiting for an answer on a session.
    pub fn asking(&self) -> usize {
        self.asking.len()
    }

    /// Whether `peer`'s session is open.
    pub fn is_open(&self, peer: &PeerId) -> bool {
        matches!(self.out.get(peer), Some(Out::Open { .. }))
    }

    /// Sends `request` on `peer`'s session if one is open; otherwise starts
    /// opening one (if it may) and gives the request back (`Some`), to be
    /// sent the old way.
    pub fn send(
        &mut self,
        now: Duration,
        peer: PeerId,
        request: Request,
        pending: Pending,
        expect: Expect,
    ) -> Option<(Request, Pending)> {
        if self.control.is_none() {
            return Some((request, pending));
        }
        match self.out.get_mut(&peer) {
            Some(Out::Open {
                session,
                tx,
                next_tag,
            }) => {
                let tag = *next_tag;
                let out = Outgoing::Request {
                    tag,
                    request: request.clone(),
                    expect: Box::new(expect),
                };
                match tx.try_send(out) {
                    Ok(()) => {
                        *next_tag = next_tag.wrapping_add(1) & !CANCEL_BIT;
                        let id = SessionRequestId {
                            session: *session,
                            tag,
                        };
                        let deadline = now + self.timeout;
                        self.asking.insert(
                            id,
                            Asking {
                                peer,
                                request,
                                pending,
                                deadline,
                                cancelled: false,
                            },
                        );
                        None
                    }
                    // Full (or its task just ended): this one the old way.
                    Err(_) => Some((request, pending)),
                }
            }
            Some(Out::Opening(_) | Out::Refused) => Some((request, pending)),
            None => {
                let session = self.new_session();
                self.out.insert(peer, Out::Opening(session));
                if let Some(control) = self.control.clone() {
                    let notes = self.notes_tx.clone();
                    tokio::spawn(open(control, peer, session, notes, self.pieces));
                }
                Some((request, pending))
            }
        }
    }

    /// Takes back our request on `peer`'s session that `is_it` picks (its
    /// chunk came from elsewhere, or it was abandoned): the peer drops it
    /// if it has not begun the answer. Returns whether one was taken back.
    pub fn cancel(&mut self, peer: &PeerId, is_it: impl Fn(&Pending) -> bool) -> bool {
        let Some(Out::Open { session, tx, .. }) = self.out.get_mut(peer) else {
            return false;
        };
        let found = self
            .asking
            .iter_mut()
            .find(|(id, a)| id.session == *session && !a.cancelled && is_it(&a.pending));
        let Some((id, a)) = found else {
            return false;
        };
        // Best effort: with the writer's queue full, the answer still comes.
        if tx.try_send(Outgoing::Cancel(id.tag)).is_err() {
            return false;
        }
        a.cancelled = true;
        true
    }

    fn new_session(&mut self) -> u64 {
        self.next_session += 1;
        self.next_session
    }

    /// Fails the requests whose answers are overdue.
    pub fn expire(&mut self, now: Duration) {
        let overdue: Vec<SessionRequestId> = self
            .asking
            .iter()
            .filter(|(_, a)| a.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in overdue {
            if let Some(a) = self.asking.remove(&id).filter(|a| !a.cancelled) {
                self.ready.push_back(Event::Failed {
                    peer: a.peer,
                    pending: a.pending,
                    error: OutboundFailure::Timeout,
                });
            }
        }
    }

    /// Requests cut off by a broken session, to be asked again the old way
    /// (the session is not their peer's answer to them).
    pub fn take_again(&mut self) -> Vec<(PeerId, Request, Pending)> {
        std::mem::take(&mut self.again)
    }

    /// `peer` is gone: our session to it closes (its requests fail as its
    /// stream ends), and the next connection may open a new one.
    pub fn forget(&mut self, peer: &PeerId) {
        self.out.remove(peer);
    }

    /// The next event of the sessions.
    pub fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Event> {
        loop {
            if let Some(e) = self.ready.pop_front() {
                return Poll::Ready(e);
            }
            let accepted = self.incoming.iter_mut().find_map(|(incoming, pieces)| {
                match incoming.poll_next_unpin(cx) {
                    Poll::Ready(Some((peer, stream))) => Some((peer, stream, *pieces)),
                    _ => None,
                }
            });
            if let Some((peer, stream, pieces)) = accepted {
                self.accept(peer, stream, pieces);
                continue;
            }
            match self.notes.poll_next_unpin(cx) {
                Poll::Ready(Some(note)) => self.on_note(note),
                // The behaviour holds a sender: never ends.
                Poll::Ready(None) | Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn accept(&mut self, peer: PeerId, stream: Stream, pieces: bool) {
        let open = self.inbound.values().filter(|s| s.peer == peer).count();
        if open >= MAX_INBOUND {
            tracing::debug!(%peer, "refused a session: too many open");
            return; // Dropped: the peer's stream is reset.
        }
        let session = self.new_session();
        self.inbound.insert(
            session,
            In {
                peer,
                open: HashSet::new(),
            },
        );
        let task = serve(
            peer,
            session,
            stream,
            self.notes_tx.clone(),
            self.max_open,
            pieces,
        );
        tokio::spawn(task);
    }

    fn on_note(&mut self, note: Note) {
        match note {
            Note::Opened { peer, session, tx } => {
                if let Some(o @ Out::Opening(_)) = self.out.get_mut(&peer) {
                    if matches!(o, Out::Opening(s) if *s == session) {
                        *o = Out::Open {
                            session,
                            tx,
                            next_tag: 0,
                        };
                        tracing::debug!(%peer, session, "session open");
                    }
                }
                // Otherwise the peer was forgotten meanwhile: `tx` drops
                // here and the session closes.
            }
            Note::OpenFailed { peer, session } => {
                if matches!(self.out.get(&peer), Some(Out::Opening(s)) if *s == session) {
                    self.out.insert(peer, Out::Refused);
                }
            }
            Note::Answer {
                peer,
                session,
                tag,
                response,
            } => {
                // Unknown: it timed out already. Taken back: only a chunk
                // is worth passing on (the requester may still lack it);
                // a refusal is for a request the scheduler no longer has.
                let id = SessionRequestId { session, tag };
                let wanted = |a: &Asking| !a.cancelled || matches!(response, Response::Chunk(_));
                if let Some(a) = self.asking.remove(&id).filter(wanted) {
                    self.ready.push_back(Event::Response {
                        peer,
                        pending: a.pending,
                        response,
                    });
                }
            }
            Note::Closed {
                peer,
                session,
                error,
                culprit,
            } => {
                tracing::debug!(%peer, session, %error, "session closed");
                if matches!(self.out.get(&peer), Some(Out::Open { session: s, .. }) if *s == session)
                {
                    self.out.insert(peer, Out::Refused);
                }
                let ids: Vec<SessionRequestId> = self
                    .asking
                    .keys()
                    .filter(|id| id.session == session)
                    .copied()
                    .collect();
                for id in ids {
                    let Some(a) = self.asking.remove(&id) else {
                        continue;
                    };
                    if a.cancelled {
                        continue; // Nobody waits for it.
                    }
                    if culprit == Some(id.tag) {
                        // The answer that broke the session: the peer's violation.
                        let error = io::Error::new(error.kind(), error.to_string());
                        self.ready.push_back(Event::Failed {
                            peer: a.peer,
                            pending: a.pending,
                            error: OutboundFailure::Io(error),
                        });
                    } else if self.out.contains_key(&peer) {
                        // Cut off with it: asked again the old way.
                        self.again.push((a.peer, a.request, a.pending));
                    } else {
                        // The peer is gone.
                        self.ready.push_back(Event::Failed {
                            peer: a.peer,
                            pending: a.pending,
                            error: OutboundFailure::ConnectionClosed,
                        });
                    }
                }
            }
            Note::Cancelled { peer, session, tag } => {
                if self
                    .inbound
                    .get(&session)
                    .is_some_and(|s| s.open.contains(&tag))
                {
                    self.ready.push_back(Event::Cancelled {
                        peer,
                        id: super::pollen::InboundId::Session(SessionRequestId { session, tag }),
                    });
                }
            }
            Note::Asked {
                peer,
                session,
                tag,
                request,
                reply,
            } => {
                let Some(s) = self.inbound.get_mut(&session) else {
                    return; // Ended meanwhile: `reply` drops unsent.
                };
                s.open.insert(tag);
                self.ready.push_back(Event::Request {
                    peer,
                    id: super::pollen::InboundId::Session(SessionRequestId { session, tag }),
                    request,
                    channel: super::pollen::Channel::Session(reply),
                });
            }
            Note::Answered {
                peer,
                session,
                tag,
                complete,
            } => {
                if let Some(s) = self.inbound.get_mut(&session) {
                    s.open.remove(&tag);
                }
                self.ready.push_back(Event::ResponseEnded {
                    peer,
                    id: super::pollen::InboundId::Session(SessionRequestId { session, tag }),
                    complete,
                });
            }
            Note::Ended { peer, session } => {
                // Whatever it had not answered is over, unsent.
                let Some(s) = self.inbound.remove(&session) else {
                    return;
                };
                for tag in s.open {
                    self.ready.push_back(Event::ResponseEnded {
                        peer,
                        id: super::pollen::InboundId::Session(SessionRequestId { session, tag }),
                        complete: false,
                    });
                }
            }
        }
    }
}

/// Opens our session to `peer` and runs it: writes the requests it is
/// given, reads the answers.
async fn open(
    mut control: Control,
    peer: PeerId,
    session: u64,
    mut notes: mpsc::Sender<Note>,
    pieces: bool,
) {
    let first = if pieces { PIECES_SESSION } else { SESSION };
    let stream = match open_greeted(&mut control, peer, first).await {
        // Perhaps a peer from before pieces (the stream is negotiated
        // lazily, so that shows only as no echo): the session without them.
        Err(e) if pieces => {
            tracing::debug!(%peer, error = %e, "no session with pieces; trying without");
            open_greeted(&mut control, peer, SESSION).await
        }
        other => other,
    };
    let stream = match stream {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "no session");
            let _ = notes.send(Note::OpenFailed { peer, session }).await;
            return;
        }
    };
    let (tx, rx) = mpsc::channel(QUEUE);
    if notes
        .send(Note::Opened { peer, session, tx })
        .await
        .is_err()
    {
        return;
    }
    let (error, culprit) = run_out(peer, session, stream, rx, notes.clone()).await;
    let _ = notes
        .send(Note::Closed {
            peer,
            session,
            error,
            culprit,
        })
        .await;
}

/// Opens a session stream of `protocol` to `peer` and greets it.
async fn open_greeted(
    control: &mut Control,
    peer: PeerId,
    protocol: StreamProtocol,
) -> io::Result<Stream> {
    match control.open_stream(peer, protocol).await {
        Ok(s) => greet(s).await,
        Err(OpenStreamError::UnsupportedProtocol(_)) => Err(io::ErrorKind::Unsupported.into()),
        Err(OpenStreamError::Io(e)) => Err(e),
        Err(e) => Err(io::Error::other(e.to_string())),
    }
}

/// Sends the preamble and waits for its echo.
async fn greet(mut stream: Stream) -> io::Result<Stream> {
    stream.write_all(&SESSION_PREAMBLE).await?;
    stream.flush().await?;
    let mut echo = [0u8; SESSION_PREAMBLE.len()];
    stream.read_exact(&mut echo).await?;
    if echo != SESSION_PREAMBLE {
        return Err(invalid("not a session preamble"));
    }
    Ok(stream)
}

/// Reads the opener's preamble and echoes it.
async fn answer(stream: &mut Stream) -> io::Result<()> {
    let mut preamble = [0u8; SESSION_PREAMBLE.len()];
    stream.read_exact(&mut preamble).await?;
    if preamble != SESSION_PREAMBLE {
        return Err(invalid("not a session preamble"));
    }
    stream.write_all(&SESSION_PREAMBLE).await?;
    stream.flush().await
}

/// Our session's two halves; returns why it ended, and the tag whose
/// answer was malformed if that was why.
async fn run_out(
    peer: PeerId,
    session: u64,
    stream: Stream,
    mut rx: mpsc::Receiver<Outgoing>,
    mut notes: mpsc::Sender<Note>,
) -> (io::Error, Option<u32>) {
    let (mut r, mut w) = stream.split();
    let expected: Arc<Mutex<HashMap<u32, Expect>>> = Arc::default();
    let writer_expected = expected.clone();
    let writing = async move {
        while let Some(o) = rx.next().await {
            match o {
                Outgoing::Request {
                    tag,
                    request,
                    expect,
                } => {
                    if expect.progress.is_some() || expect.landing.is_some() {
                        lock(&writer_expected).insert(tag, *expect);
                    }
                    let body = request.encode().map_err(invalid)?;
                    write_frame(&mut w, &tag.to_be_bytes(), &[&body], None).await?;
                }
                Outgoing::Cancel(tag) => w.write_all(&(tag | CANCEL_BIT).to_be_bytes()).await?,
            }
            w.flush().await?;
        }
        // Forgotten: no more requests. Answers still come until the peer closes.
        w.close().await?;
        future::pending::<io::Result<()>>().await
    };
    let reading = async move {
        loop {
            let tag = read_tag(&mut r).await.map_err(|e| (e, None))?;
            let expect = lock(&expected).remove(&tag).unwrap_or_default();
            let response = read_response_frame(&mut r, &expect)
                .await
                .map_err(|e| (e, Some(tag)))?;
            let answer = Note::Answer {
                peer,
                session,
                tag,
                response,
            };
            if notes.send(answer).await.is_err() {
                return Err((io::Error::other("node stopped"), None));
            }
        }
    };
    match future::select(pin!(writing), pin!(reading)).await {
        Either::Left((Err(e), _)) => (e, None),
        Either::Left((Ok(()), _)) => (io::Error::other("writer ended"), None),
        Either::Right((Err((e, tag)), _)) => {
            let culprit = tag.filter(|_| e.kind() == io::ErrorKind::InvalidData);
            (e, culprit)
        }
        Either::Right((Ok(()), _)) => (io::Error::other("reader ended"), None),
    }
}

/// Runs a peer's session to us: reads its requests (at most `max_open`
/// ahead of their answers, and notices apart) and writes the answers as
/// the node gives them (chunks in pieces if the session takes them:
/// `pieces`).
async fn serve(
    peer: PeerId,
    session: u64,
    stream: Stream,
    mut notes: mpsc::Sender<Note>,
    max_open: usize,
    pieces: bool,
) {
    let mut stream = stream;
    if let Err(e) = answer(&mut stream).await {
        tracing::debug!(%peer, session, error = %e, "refused a session: no preamble");
        let _ = notes.send(Note::Ended { peer, session }).await;
        return;
    }
    let (mut r, mut w) = stream.split();
    // Each read request holds a reply sender; answered or dropped, it
    // comes back here. The permits bound the requests read ahead: notices
    // have their own, so an answer the writer waits on (a chunk still
    // arriving from a sender that stalled) never stops the peer's notices
    // of what it gained from being heard. (Before, the acknowledgements
    // and notices behind such an answer took the last places; its site
    // then heard nothing from the peer, took it for stalled after 20 s and
    // fetched its chunks across the uplink again.)
    let (reply_tx, mut replies) = mpsc::channel::<Answer>(0);
    let permits = Arc::new(tokio::sync::Semaphore::new(max_open));
    let notice_permits = Arc::new(tokio::sync::Semaphore::new(NOTICES_AHEAD));
    let reader_permits = (permits.clone(), notice_permits.clone());
    let mut reader_notes = notes.clone();
    let reading = async move {
        loop {
            let tag = match read_tag(&mut r).await {
                Ok(t) => t,
                // The peer closed its side: it asks nothing more.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e),
            };
            if tag & CANCEL_BIT != 0 {
                // Not a request: it takes no read-ahead place.
                let tag = tag & !CANCEL_BIT;
                let cancelled = Note::Cancelled { peer, session, tag };
                if reader_notes.send(cancelled).await.is_err() {
                    return Err(io::Error::other("node stopped"));
                }
                continue;
            }
            let frame = read_frame(&mut r, MAX_REQUEST, None).await?;
            let request = Request::decode(&frame).map_err(invalid)?;
            let notice = matches!(request, Request::Gained { .. });
            let places = if notice {
                &reader_permits.1
            } else {
                &reader_permits.0
            };
            let Ok(permit) = places.acquire().await else {
                return Ok(());
            };
            permit.forget();
            let reply = SessionReply {
                tx: reply_tx.clone(),
                tag,
                notice,
                sent: false,
            };
            let asked = Note::Asked {
                peer,
                session,
                tag,
                request,
                reply,
            };
            if reader_notes.send(asked).await.is_err() {
                return Err(io::Error::other("node stopped"));
            }
        }
    };
    let mut writer_notes = notes.clone();
    let writing = async move {
        while let Some((tag, notice, reply)) = replies.next().await {
            let complete = match reply {
                Some(reply) => match write_reply(&mut w, &tag.to_be_bytes(), reply, pieces).await {
                    Ok(()) => true,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => false,
                    Err(e) => return Err(e),
                },
                None => false,
            };
            w.flush().await?;
            if notice {
                notice_permits.add_permits(1);
            } else {
                permits.add_permits(1);
            }
            let answered = Note::Answered {
                peer,
                session,
                tag,
                complete,
            };
            if writer_notes.send(answered).await.is_err() {
                return Err(io::Error::other("node stopped"));
            }
        }
        w.close().await
    };
    // `select` drops the reader when it ends, and with it the reader's
    // reply sender: the writer then ends once every answer is written.
    let ended = match future::select(Box::pin(reading), Box::pin(writing)).await {
        // The peer asks no more: answer what it asked, then close.
        Either::Left((Ok(()), writing)) => writing.await,
        Either::Left((Err(e), _)) | Either::Right((Err(e), _)) => Err(e),
        Either::Right((Ok(()), _)) => Ok(()),
    };
    if let Err(e) = ended {
        tracing::debug!(%peer, session, error = %e, "peer's session ended");
    }
    let _ = notes.send(Note::Ended { peer, session }).await;
}

async fn read_tag<T: futures::AsyncRead + Unpin>(io: &mut T) -> io::Result<u32> {
    let mut tag = [0u8; TAG];
    io.read_exact(&mut tag).await?;
    Ok(u32::from_be_bytes(tag))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
