//! Messages between peers: postcard-encoded, size-bounded, versioned by the
//! protocol name (`/pollen/1`). Decoding untrusted bytes never panics and
//! never allocates more than the frame it was handed.

use serde::{Deserialize, Serialize};

use crate::manifest::ManifestId;
use crate::swarm::{Bitfield, SiteId};

/// Protocol name negotiated on every stream. Version 2 added roles
/// (origin, uplink, gateway), `Role` notices, `Declined` and retry hints;
/// version 3 fleet trust: policy and credential in `Hello`, credentials
/// beside status records, `Policy` pushes.
pub const PROTOCOL: &str = "/pollen/3";
/// The same messages on one long-lived stream per peer and direction: the
/// opener's requests, pipelined, each a frame as on [`PROTOCOL`] behind a
/// [`TAG`]-byte tag, and the answers, each behind its request's tag, in
/// whatever order they are ready. A peer without it is asked on
/// [`PROTOCOL`], a stream per request.
pub const SESSION_PROTOCOL: &str = "/pollen/3/session";
/// [`PROTOCOL`] where a chunk may be answered in pieces
/// ([`Response::Pieces`]); every other message is the same. Offered first
/// and accepted beside [`PROTOCOL`], so nodes of either version mesh: a
/// peer that speaks only `/pollen/3` is answered whole chunks.
pub const PIECES_PROTOCOL: &str = "/pollen/4";
/// [`SESSION_PROTOCOL`] with chunks in pieces, as [`PIECES_PROTOCOL`].
pub const PIECES_SESSION_PROTOCOL: &str = "/pollen/4/session";
/// Bytes of a session frame's tag (big-endian `u32`, chosen by the opener).
pub const TAG: usize = 4;
/// Set in a tag the opener sends, with nothing after it: it takes back its
/// request with the tag's other bits (abandoned, or answered elsewhere).
/// An acceptor that has not begun the answer drops it and writes nothing
/// for that tag; one under way is written to its end. Request tags leave
/// this bit clear.
pub const CANCEL_BIT: u32 = 1 << 31;
/// The first bytes each way on a session: the opener sends them, the
/// acceptor echoes them, and only then does the opener send requests on
/// it. Streams are negotiated lazily (a request rides with the protocol
/// name), so without this a peer that does not speak sessions would be
/// found out only by losing the requests already sent.
pub const SESSION_PREAMBLE: [u8; 4] = *b"PS1\n";
/// Largest request frame: requests are small (a bitfield of 64 Ki chunks is 8 KiB).
pub const MAX_REQUEST: usize = 256 * 1024;
/// Largest response frame: one chunk (at most 16 MiB) or one manifest, plus framing.
pub const MAX_RESPONSE: usize = 17 * 1024 * 1024;
/// Most peer records in one exchange.
pub const MAX_PEER_RECORDS: usize = 64;
/// Most addresses per peer record.
pub const MAX_ADDRS: usize = 8;
/// Most status records in one message (each with its credential).
pub const MAX_STATUS_RECORDS: usize = 32;

/// What a node says about itself when a connection opens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub channel: String,
    pub site: Option<SiteId>,
    /// The newest verified release this node holds a manifest for.
    pub newest: Option<Announce>,
    /// Its role ([`Role`]).
    pub role: Role,
    /// The newest signed fleet policy it holds (`core::trust::policy`);
    /// `None` for a node still on a trust file.
    pub policy: Option<serde_bytes::ByteBuf>,
    /// Its signed credential (`core::trust::credential`), checked against
    /// the key Noise authenticated; `None` in an open mesh.
    pub credential: Option<serde_bytes::ByteBuf>,
}

/// One device's signed status record, and the credential that says which
/// device it is (`None` in an open mesh).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusEntry {
    pub record: serde_bytes::ByteBuf,
    pub credential: Option<serde_bytes::ByteBuf>,
}

/// What a node is to the mesh (`core::swarm::PeerInfo` without the site).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    /// A publisher's server: it holds every chunk of what it serves.
    pub origin: bool,
    /// It has a working connection across its uplink.
    pub uplink: bool,
    /// It is one of its site's gateways (fetches across the uplink for its
    /// site, serves other sites).
    pub gateway: bool,
}

/// A release a node can serve: enough to decide whether to fetch its manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announce {
    pub manifest: ManifestId,
    pub release: u64,
}

/// A peer another node knows, for peer exchange.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRecord {
    /// libp2p peer id bytes.
    #[serde(with = "serde_bytes")]
    pub peer: Vec<u8>,
    /// Multiaddr bytes.
    pub addrs: Vec<serde_bytes::ByteBuf>,
    pub site: Option<SiteId>,
    /// Its role as the responder last heard it.
    pub role: Role,
}

/// Requests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Request {
    /// Sent on connect; answered with the peer's own `Hello`.
    Hello(Hello),
    /// A new release is available from the sender.
    Announce { channel: String, announce: Announce },
    /// The signed manifest bytes.
    GetManifest(ManifestId),
    /// The responder's has-set for a release.
    GetHave(ManifestId),
    /// Chunks the sender gained since its last report (indices into the unique chunk list).
    Gained {
        manifest: ManifestId,
        indices: Vec<u32>,
    },
    /// One chunk, by release and index.
    GetChunk { manifest: ManifestId, index: u32 },
    /// Peers the responder knows (peer exchange).
    GetPeers,
    /// Signed fleet status records (`core::status`), passed on towards the seeder.
    Status(Vec<StatusEntry>),
    /// A signed rollout control (`core::rollout`), passed on to every peer.
    Control(serde_bytes::ByteBuf),
    /// The newest rollout control the responder holds for a release.
    GetControl(ManifestId),
    /// The sender's role changed.
    Role(Role),
    /// A newer signed fleet policy, passed on to every admitted peer.
    Policy(serde_bytes::ByteBuf),
}

/// Responses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Response {
    Hello(Hello),
    Ok,
    Manifest(#[serde(with = "serde_bytes")] Vec<u8>),
    Have(Bitfield),
    /// Chunk bytes (encoded exactly as a `serde_bytes` byte string; held in
    /// a shared buffer so that neither side copies them to frame them, see
    /// [`chunk_header`]).
    Chunk(bytes::Bytes),
    Peers(Vec<PeerRecord>),
    /// The responder does not have what was asked.
    NotFound,
    /// The responder is full (or does not serve the requester's site): try
    /// others now, and it again after `retry_ms`.
    Busy {
        retry_ms: u32,
    },
    /// The responder does not send this chunk now (it is on its way to the
    /// requester's site, or has gone out to the fleet already): ask others
    /// for it, or it again after `retry_ms`.
    Declined {
        retry_ms: u32,
    },
    /// Signed rollout control bytes.
    Control(#[serde(with = "serde_bytes")] Vec<u8>),
    /// A chunk led by its piece hashes (`core::chunk::pieces`), only on
    /// [`PIECES_PROTOCOL`] / [`PIECES_SESSION_PROTOCOL`] and only for a
    /// chunk of more than one piece: the requester checks the hashes
    /// against the chunk's id, then each piece as it lands, and can pass
    /// the chunk on before its last byte. Framed like [`Response::Chunk`]
    /// without copies ([`pieces_header`]).
    Pieces {
        hashes: Vec<[u8; 32]>,
        chunk: bytes::Bytes,
    },
}

/// Errors of this module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    #[error("message of {len} bytes is over the {max}-byte cap")]
    TooLarge { len: usize, max: usize },
    #[error("malformed message: {0}")]
    Malformed(#[from] postcard::Error),
    #[error("{0} bytes follow the message")]
    TrailingBytes(usize),
    #[error("a message carries more {0} than allowed")]
    OverLimit(Limited),
    #[error("a chunk frame's length is not a canonical varint of at most 32 bits")]
    BadChunkLength,
    #[error("frame of {len} bytes over the {max}-byte cap")]
    FrameTooLarge { len: usize, max: usize },
}

/// What a message may carry only so much of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Limited {
    /// Chunk indices in a notice.
    Indices,
    /// Status records, or bytes in one.
    StatusRecords,
    /// Bytes of a rollout control.
    ControlBytes,
    /// Bytes of a fleet policy or credential.
    TrustBytes,
    /// Peer records, or addresses in one.
    PeerRecords,
    /// Piece hashes before a chunk.
    PieceHashes,
}

impl std::fmt::Display for Limited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Limited::Indices => "chunk indices",
            Limited::StatusRecords => "status records (or bytes in one)",
            Limited::ControlBytes => "rollout control bytes",
            Limited::TrustBytes => "fleet policy or credential bytes",
            Limited::PieceHashes => "piece hashes",
            Limited::PeerRecords => "peer records (or addresses in one)",
        })
    }
}

/// Bytes of the big-endian length that precedes each frame on a stream.
pub const FRAME_HEADER: usize = 4;

/// The body length a frame's header announces, refused over `max` so a
/// reader can check it before reading (or allocating for) the body.
pub fn frame_len(header: [u8; FRAME_HEADER], max: usize) -> Result<usize, WireError> {
    let len = u32::from_be_bytes(header) as usize;
    if len > max {
        return Err(WireError::FrameTooLarge { len, max });
    }
    Ok(len)
}

/// The header of a frame of `len` bytes.
pub fn frame_header(len: usize) -> Result<[u8; FRAME_HEADER], WireError> {
    u32::try_from(len)
        .map(u32::to_be_bytes)
        .map_err(|_| WireError::FrameTooLarge {
            len,
            max: u32::MAX as usize,
        })
}

fn encode<T: Serialize>(msg: &T, max: usize) -> Result<Vec<u8>, WireError> {
    let bytes = postcard::to_stdvec(msg)?;
    if bytes.len() > max {
        return Err(WireError::TooLarge {
            len: bytes.len(),
            max,
        });
    }
    Ok(bytes)
}

fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8], max: usize) -> Result<T, WireError> {
    if bytes.len() > max {
        return Err(WireError::TooLarge {
            len: bytes.len(),
            max,
        });
    }
    let (msg, rest) = postcard::take_from_bytes(bytes)?;
    if !rest.is_empty() {
        return Err(WireError::TrailingBytes(rest.len()));
    }
    Ok(msg)
}

/// Postcard's tag of [`Response::Chunk`] (its variant index).
pub const CHUNK_TAG: u8 = 4;
/// Longest [`chunk_header`]: the tag and a varint of up to 5 bytes (a `u32`).
pub const CHUNK_HEADER_MAX: usize = 6;

/// The bytes postcard puts before a chunk's payload in an encoded
/// [`Response::Chunk`] of `len` bytes (tag, then the length as a varint),
/// and how many of them there are. A codec writes these, then the payload
/// from its own buffer: the same bytes as `encode`, without copying the
/// payload into a new one. `None` for a payload over `u32::MAX` bytes.
pub fn chunk_header(len: usize) -> Option<([u8; CHUNK_HEADER_MAX], usize)> {
    let mut left = u32::try_from(len).ok()?;
    let mut out = [0u8; CHUNK_HEADER_MAX];
    out[0] = CHUNK_TAG;
    let mut n = 1;
    loop {
        let low = (left & 0x7f) as u8;
        left >>= 7;
        if left == 0 {
            out[n] = low;
            return Some((out, n + 1));
        }
        out[n] = low | 0x80;
        n += 1;
    }
}

/// Postcard's tag of [`Response::Pieces`] (its variant index).
pub const PIECES_TAG: u8 = 10;
/// Most piece hashes before a chunk (a 16 MiB chunk's).
pub const MAX_PIECES: usize = crate::chunk::MAX_PIECES;

/// The bytes postcard puts before the payload of an encoded
/// [`Response::Pieces`] with `hashes` and a chunk of `len` bytes: the tag,
/// the count as a varint, the hashes, the length as a varint. `None` for
/// more than [`MAX_PIECES`] hashes or a payload over `u32::MAX` bytes.
pub fn pieces_header(hashes: &[[u8; 32]], len: usize) -> Option<Vec<u8>> {
    if hashes.len() > MAX_PIECES {
        return None;
    }
    let (count, n) = chunk_header(hashes.len())?;
    let (length, m) = chunk_header(len)?;
    let mut out = Vec::with_capacity(n + 32 * hashes.len() + m);
    out.push(PIECES_TAG);
    out.extend_from_slice(&count[1..n]);
    for h in hashes {
        out.extend_from_slice(h);
    }
    out.extend_from_slice(&length[1..m]);
    Some(out)
}

/// Decodes the varint length of a chunk payload from the bytes after
/// [`CHUNK_TAG`] (or a count of piece hashes, or a length after them),
/// fed one at a time: `Ok(Some(len))` when complete,
/// `Ok(None)` when more bytes are needed. At most 5 bytes, canonical only.
#[derive(Debug, Default)]
pub struct ChunkLen {
    value: u32,
    shift: u32,
}

impl ChunkLen {
    pub fn push(&mut self, byte: u8) -> Result<Option<usize>, WireError> {
        let bad = || WireError::BadChunkLength;
        if self.shift > 28 || (self.shift == 28 && byte > 0x0f) {
            return Err(bad());
        }
        self.value |= u32::from(byte & 0x7f) << self.shift;
        if byte & 0x80 != 0 {
            self.shift += 7;
            return Ok(None);
        }
        if byte == 0 && self.shift > 0 {
            // A trailing zero group: not how postcard writes it.
            return Err(bad());
        }
        Ok(Some(self.value as usize))
    }
}

use crate::trust::credential::MAX_CREDENTIAL_BYTES;
use crate::trust::policy::MAX_POLICY_BYTES;

fn credential_fits(c: Option<&serde_bytes::ByteBuf>) -> bool {
    c.is_none_or(|c| c.len() <= MAX_CREDENTIAL_BYTES)
}

/// A hello's policy and credential within their caps.
fn check_hello(h: &Hello) -> Result<(), WireError> {
    if h.policy
        .as_ref()
        .is_some_and(|p| p.len() > MAX_POLICY_BYTES)
        || !credential_fits(h.credential.as_ref())
    {
        return Err(WireError::OverLimit(Limited::TrustBytes));
    }
    Ok(())
}

impl Request {
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        encode(self, MAX_REQUEST)
    }
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let req: Self = decode(bytes, MAX_REQUEST)?;
        match &req {
            Request::Gained { indices, .. } if indices.len() > MAX_REQUEST / 4 => {
                Err(WireError::OverLimit(Limited::Indices))
            }
            Request::Status(list)
                if list.len() > MAX_STATUS_RECORDS
                    || list.iter().any(|e| {
                        e.record.len() > crate::status::MAX_STATUS_BYTES
                            || !credential_fits(e.credential.as_ref())
                    }) =>
            {
                Err(WireError::OverLimit(Limited::StatusRecords))
            }
            Request::Control(c) if c.len() > crate::rollout::MAX_CONTROL_BYTES => {
                Err(WireError::OverLimit(Limited::ControlBytes))
            }
            Request::Policy(p) if p.len() > MAX_POLICY_BYTES => {
                Err(WireError::OverLimit(Limited::TrustBytes))
            }
            Request::Hello(h) => check_hello(h).map(|()| req),
            _ => Ok(req),
        }
    }
}

impl Response {
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        encode(self, MAX_RESPONSE)
    }
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let resp: Self = decode(bytes, MAX_RESPONSE)?;
        match &resp {
            Response::Peers(list)
                if list.len() > MAX_PEER_RECORDS
                    || list.iter().any(|p| p.addrs.len() > MAX_ADDRS) =>
            {
                Err(WireError::OverLimit(Limited::PeerRecords))
            }
            Response::Hello(h) => check_hello(h).map(|()| resp),
            Response::Pieces { hashes, .. } if hashes.len() > MAX_PIECES => {
                Err(WireError::OverLimit(Limited::PieceHashes))
            }
            _ => Ok(resp),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trips() {
        let id = ManifestId([3; 32]);
        let msgs = vec![
            Request::Hello(Hello {
                channel: "stable".into(),
                site: Some(SiteId(9)),
                newest: Some(Announce {
                    manifest: id,
                    release: 4,
                }),
                role: Role {
                    origin: false,
                    uplink: true,
                    gateway: true,
                },
                policy: Some(serde_bytes::ByteBuf::from(vec![7; 300])),
                credential: None,
            }),
            Request::Role(Role::default()),
            Request::Policy(serde_bytes::ByteBuf::from(vec![8; 100])),
            Request::GetChunk {
                manifest: id,
                index: 7,
            },
            Request::Gained {
                manifest: id,
                indices: vec![1, 2, 3],
            },
            Request::GetPeers,
            Request::Status(vec![StatusEntry {
                record: serde_bytes::ByteBuf::from(vec![1, 2, 3]),
                credential: Some(serde_bytes::ByteBuf::from(vec![4; 200])),
            }]),
            Request::Control(serde_bytes::ByteBuf::from(vec![9; 40])),
            Request::GetControl(ManifestId([5; 32])),
        ];
        for m in msgs {
            assert_eq!(Request::decode(&m.encode().expect("encode")), Ok(m));
        }
        for resp in [
            Response::Chunk(vec![1; 1000].into()),
            Response::Busy { retry_ms: 1500 },
            Response::Declined { retry_ms: 4000 },
        ] {
            assert_eq!(Response::decode(&resp.encode().expect("encode")), Ok(resp));
        }
    }

    #[test]
    fn caps_are_enforced() {
        let big = Response::Chunk(vec![0; MAX_RESPONSE].into());
        assert!(matches!(big.encode(), Err(WireError::TooLarge { .. })));
        assert!(matches!(
            Request::decode(&vec![0; MAX_REQUEST + 1]),
            Err(WireError::TooLarge { .. })
        ));
        let fat = Request::Hello(Hello {
            channel: "stable".into(),
            site: None,
            newest: None,
            role: Role::default(),
            policy: None,
            credential: Some(serde_bytes::ByteBuf::from(vec![
                0;
                MAX_CREDENTIAL_BYTES + 1
            ])),
        });
        let bytes = postcard::to_stdvec(&fat).expect("encode");
        assert_eq!(
            Request::decode(&bytes),
            Err(WireError::OverLimit(Limited::TrustBytes))
        );
    }

    #[test]
    fn chunk_header_is_what_postcard_writes() {
        for len in [0usize, 1, 127, 128, 300, 16_383, 16_384, 1 << 20, 17 << 20] {
            let encoded = Response::Chunk(vec![9; len].into())
                .encode()
                .unwrap_or_else(|_| {
                    postcard::to_stdvec(&Response::Chunk(vec![9; len].into())).expect("encode")
                });
            let (header, n) = chunk_header(len).expect("fits");
            assert_eq!(&encoded[..n], &header[..n], "len {len}");
            assert_eq!(encoded.len(), n + len);
            let mut parse = ChunkLen::default();
            let mut got = None;
            for &b in &header[1..n] {
                got = parse.push(b).expect("valid varint");
            }
            assert_eq!(got, Some(len));
        }
        assert_eq!(
            postcard::to_stdvec(&Response::Chunk(Default::default())).expect("encode"),
            [CHUNK_TAG, 0]
        );
    }

    #[test]
    fn pieces_header_is_what_postcard_writes() {
        for (count, len) in [
            (2usize, 70_000usize),
            (4, 1 << 20),
            (130, 8_500_000),
            (256, 16 << 20),
        ] {
            let hashes: Vec<[u8; 32]> = (0..count).map(|i| [i as u8; 32]).collect();
            let message = Response::Pieces {
                hashes: hashes.clone(),
                chunk: vec![5; len].into(),
            };
            let encoded = postcard::to_stdvec(&message).expect("encode");
            let header = pieces_header(&hashes, len).expect("fits");
            assert_eq!(&encoded[..header.len()], &header[..], "{count} pieces");
            assert_eq!(encoded.len(), header.len() + len);
            assert_eq!(Response::decode(&encoded).expect("decodes"), message);
        }
        let too_many = vec![[0u8; 32]; MAX_PIECES + 1];
        assert_eq!(pieces_header(&too_many, 1), None);
        let message = Response::Pieces {
            hashes: too_many,
            chunk: vec![1].into(),
        };
        let encoded = postcard::to_stdvec(&message).expect("encode");
        assert_eq!(
            Response::decode(&encoded),
            Err(WireError::OverLimit(Limited::PieceHashes))
        );
    }

    #[test]
    fn chunk_length_varint_is_bounded_and_canonical() {
        let mut p = ChunkLen::default();
        for _ in 0..4 {
            assert_eq!(p.push(0xff), Ok(None));
        }
        assert!(p.push(0x10).is_err(), "over u32");
        let mut p = ChunkLen::default();
        assert_eq!(p.push(0x80), Ok(None));
        assert!(p.push(0).is_err(), "trailing zero group");
    }

    #[test]
    fn frame_headers_round_trip_and_cap() {
        let header = frame_header(70_000).expect("fits");
        assert_eq!(frame_len(header, MAX_REQUEST), Ok(70_000));
        assert_eq!(
            frame_len(frame_header(MAX_REQUEST + 1).expect("fits"), MAX_REQUEST),
            Err(WireError::FrameTooLarge {
                len: MAX_REQUEST + 1,
                max: MAX_REQUEST
            })
        );
        assert_eq!(
            frame_len([0xff; FRAME_HEADER], MAX_RESPONSE)
                .map_err(|e| e.to_string())
                .expect_err("over"),
            format!(
                "frame of {} bytes over the {MAX_RESPONSE}-byte cap",
                u32::MAX
            )
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = Request::decode(&bytes);
            let _ = Response::decode(&bytes);
        }
    }
}
