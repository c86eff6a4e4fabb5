//! Per-address limit on inbound connections that have not completed
//! Pollen's exchange. A new peer id costs nothing, so limits per peer id
//! do not stop one host: here every inbound connection from an IP address,
//! from its first packet until its peer is [`admitted`](Behaviour::admit)
//! (the driver calls that when the peer's hello was accepted), counts
//! against that address, and an address with `max_unadmitted_per_ip` such
//! connections gets no more. An IPv6 address counts as its /64: a host is
//! commonly given a whole /64 and can pick a fresh address in it for every
//! connection. Connections without an IP address (the memory transport)
//! and outbound connections are not counted.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::task::{Context, Poll};

use libp2p::core::transport::PortUse;
use libp2p::core::{ConnectedPoint, Endpoint};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::behaviour::{ConnectionClosed, ConnectionEstablished, ListenFailure};
use libp2p::swarm::{
    dummy, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};

/// Where unadmitted connections are counted from: an IPv4 address, or
/// the /64 network of an IPv6 one (IPv4-mapped IPv6 as IPv4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Source(IpAddr);

impl Source {
    pub fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V6(v6) => Self(IpAddr::V6(Ipv6Addr::from(
                u128::from(v6) & !u128::from(u64::MAX),
            ))),
            v4 => Self(v4),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(ip) => write!(f, "{ip}"),
            IpAddr::V6(net) => write!(f, "{net}/64"),
        }
    }
}

/// Why an inbound connection was denied.
#[derive(Debug, thiserror::Error)]
#[error("{from} already has {limit} connections that have not completed the exchange")]
pub struct Exceeded {
    pub from: Source,
    pub limit: u32,
}

/// A peer with at least one established connection (either direction).
#[derive(Debug, Default)]
struct Peer {
    connections: usize,
    admitted: bool,
}

/// See the module documentation.
#[derive(Debug)]
pub struct Behaviour {
    max_unadmitted_per_ip: u32,
    /// Inbound connections still in their transport handshake.
    pending: HashMap<ConnectionId, Source>,
    /// Established inbound connections with an IP address.
    inbound: HashMap<ConnectionId, (PeerId, Source)>,
    peers: HashMap<PeerId, Peer>,
    /// Per source: its pending connections plus its established inbound
    /// connections of peers not admitted. No zero entries.
    unadmitted: HashMap<Source, u32>,
}

/// Where a connection from the IP address a multiaddr starts with counts.
fn source_of(addr: &Multiaddr) -> Option<Source> {
    match addr.iter().next()? {
        Protocol::Ip4(ip) => Some(Source::of(IpAddr::V4(ip))),
        Protocol::Ip6(ip) => Some(Source::of(IpAddr::V6(ip))),
        _ => None,
    }
}

impl Behaviour {
    pub fn new(max_unadmitted_per_ip: u32) -> Self {
        Self {
            max_unadmitted_per_ip,
            pending: HashMap::new(),
            inbound: HashMap::new(),
            peers: HashMap::new(),
            unadmitted: HashMap::new(),
        }
    }

    /// `peer` completed the exchange: its connections, present and future,
    /// no longer count against their address. Forgotten when its last
    /// connection closes; a peer not connected (any more) is ignored.
    pub fn admit(&mut self, peer: PeerId) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if p.admitted {
            return;
        }
        p.admitted = true;
        let ips: Vec<Source> = self
            .inbound
            .values()
            .filter(|(q, _)| *q == peer)
            .map(|(_, ip)| *ip)
            .collect();
        for ip in ips {
            self.release(ip);
        }
    }

    /// Connections that count against `ip`'s limit (its /64's for IPv6).
    pub fn unadmitted(&self, ip: IpAddr) -> u32 {
        self.count(Source::of(ip))
    }

    fn count(&self, from: Source) -> u32 {
        self.unadmitted.get(&from).copied().unwrap_or(0)
    }

    fn admitted(&self, peer: &PeerId) -> bool {
        self.peers.get(peer).is_some_and(|p| p.admitted)
    }

    /// Whether `from` may have one more unadmitted connection.
    fn check(&self, from: Source) -> Result<(), ConnectionDenied> {
        let count = self.count(from);
        if count < self.max_unadmitted_per_ip {
            return Ok(());
        }
        tracing::debug!(%from, count, "inbound connection denied: too many unadmitted from this address");
        Err(ConnectionDenied::new(Exceeded {
            from,
            limit: self.max_unadmitted_per_ip,
        }))
    }

    fn hold(&mut self, ip: Source) {
        *self.unadmitted.entry(ip).or_default() += 1;
    }

    fn release(&mut self, ip: Source) {
        if let Some(n) = self.unadmitted.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.unadmitted.remove(&ip);
            }
        }
    }

    fn established(&mut self, e: ConnectionEstablished<'_>) {
        let peer = self.peers.entry(e.peer_id).or_default();
        peer.connections += 1;
        let admitted = peer.admitted;
        let ConnectedPoint::Listener { send_back_addr, .. } = e.endpoint else {
            return;
        };
        let Some(ip) = source_of(send_back_addr) else {
            return;
        };
        self.inbound.insert(e.connection_id, (e.peer_id, ip));
        if !admitted {
            self.hold(ip);
        }
    }

    fn closed(&mut self, c: ConnectionClosed<'_>) {
        let admitted = self.admitted(&c.peer_id);
        if let Some((_, ip)) = self.inbound.remove(&c.connection_id) {
            if !admitted {
                self.release(ip);
            }
        }
        if let Some(p) = self.peers.get_mut(&c.peer_id) {
            p.connections = p.connections.saturating_sub(1);
            if p.connections == 0 {
                self.peers.remove(&c.peer_id);
            }
        }
    }

    fn listen_failed(&mut self, f: ListenFailure<'_>) {
        if let Some(ip) = self.pending.remove(&f.connection_id) {
            self.release(ip);
        }
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        id: ConnectionId,
        _local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        let Some(ip) = source_of(remote) else {
            return Ok(());
        };
        self.check(ip)?;
        self.pending.insert(id, ip);
        self.hold(ip);
        Ok(())
    }

    fn handle_established_inbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        _local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        // Its handshake is over: from here it counts as established
        // (from `ConnectionEstablished`, which follows unless another
        // behaviour denies it).
        if let Some(ip) = self.pending.remove(&id) {
            self.release(ip);
        }
        if let Some(ip) = source_of(remote).filter(|_| !self.admitted(&peer)) {
            self.check(ip)?;
        }
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _id: ConnectionId,
        _peer: PeerId,
        _addr: &Multiaddr,
        _role: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm<'_>) {
        match event {
            FromSwarm::ConnectionEstablished(e) => self.established(e),
            FromSwarm::ConnectionClosed(c) => self.closed(c),
            FromSwarm::ListenFailure(f) => self.listen_failed(f),
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _peer: PeerId,
        _id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _cx: &mut Context<'_>) -> Poll<ToSwarm<Infallible, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use libp2p::swarm::ListenError;

    use super::*;

    /// Drives the behaviour as the swarm does, connection by connection.
    struct Harness {
        b: Behaviour,
        next: usize,
        local: Multiaddr,
    }

    impl Harness {
        fn new(max: u32) -> Self {
            Self {
                b: Behaviour::new(max),
                next: 0,
                local: "/ip4/10.0.0.1/tcp/4000".parse().expect("addr"),
            }
        }

        fn id(&mut self) -> ConnectionId {
            self.next += 1;
            ConnectionId::new_unchecked(self.next)
        }

        /// An inbound connection's first step; `Err` if denied.
        fn pending(&mut self, remote: &Multiaddr) -> Result<ConnectionId, ConnectionDenied> {
            let id = self.id();
            let local = self.local.clone();
            match self.b.handle_pending_inbound_connection(id, &local, remote) {
                Ok(()) => Ok(id),
                Err(e) => {
                    self.listen_failure(id, remote);
                    Err(e)
                }
            }
        }

        /// The handshake of a pending connection finished as `peer`.
        fn establish(
            &mut self,
            id: ConnectionId,
            peer: PeerId,
            remote: &Multiaddr,
        ) -> Result<(), ConnectionDenied> {
            let local = self.local.clone();
            if let Err(e) = self
                .b
                .handle_established_inbound_connection(id, peer, &local, remote)
            {
                self.listen_failure(id, remote);
                return Err(e);
            }
            let endpoint = ConnectedPoint::Listener {
                local_addr: local,
                send_back_addr: remote.clone(),
            };
            self.established(id, peer, &endpoint);
            Ok(())
        }

        /// Tells the behaviour the connection is up.
        fn established(&mut self, id: ConnectionId, peer: PeerId, endpoint: &ConnectedPoint) {
            self.b
                .on_swarm_event(FromSwarm::ConnectionEstablished(ConnectionEstablished {
                    peer_id: peer,
                    connection_id: id,
                    endpoint,
                    failed_addresses: &[],
                    other_established: 0,
                }));
        }

        /// A whole inbound connection from a fresh peer id.
        fn inbound(&mut self, remote: &str) -> Result<(ConnectionId, PeerId), ConnectionDenied> {
            self.inbound_as(PeerId::random(), remote)
        }

        fn inbound_as(
            &mut self,
            peer: PeerId,
            remote: &str,
        ) -> Result<(ConnectionId, PeerId), ConnectionDenied> {
            let remote: Multiaddr = remote.parse().expect("addr");
            let id = self.pending(&remote)?;
            self.establish(id, peer, &remote)?;
            Ok((id, peer))
        }

        fn outbound(&mut self, peer: PeerId, addr: &str) -> ConnectionId {
            let id = self.id();
            let addr: Multiaddr = addr.parse().expect("addr");
            self.b
                .handle_established_outbound_connection(
                    id,
                    peer,
                    &addr,
                    Endpoint::Dialer,
                    PortUse::Reuse,
                )
                .expect("outbound connections are never denied");
            let endpoint = ConnectedPoint::Dialer {
                address: addr,
                role_override: Endpoint::Dialer,
                port_use: PortUse::Reuse,
            };
            self.established(id, peer, &endpoint);
            id
        }

        fn listen_failure(&mut self, id: ConnectionId, remote: &Multiaddr) {
            let local = self.local.clone();
            self.b
                .on_swarm_event(FromSwarm::ListenFailure(ListenFailure {
                    local_addr: &local,
                    send_back_addr: remote,
                    error: &ListenError::Aborted,
                    connection_id: id,
                    peer_id: None,
                }));
        }

        fn close(&mut self, id: ConnectionId, peer: PeerId, remote: &str, remaining: usize) {
            let endpoint = ConnectedPoint::Listener {
                local_addr: self.local.clone(),
                send_back_addr: remote.parse().expect("addr"),
            };
            self.b
                .on_swarm_event(FromSwarm::ConnectionClosed(ConnectionClosed {
                    peer_id: peer,
                    connection_id: id,
                    endpoint: &endpoint,
                    cause: None,
                    remaining_established: remaining,
                }));
        }

        fn is_empty(&self) -> bool {
            self.b.pending.is_empty()
                && self.b.inbound.is_empty()
                && self.b.peers.is_empty()
                && self.b.unadmitted.is_empty()
        }
    }

    const ATTACKER: &str = "/ip4/192.0.2.7/tcp/50000";
    const HONEST: &str = "/ip4/192.0.2.8/tcp/50000";

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn denied_for(e: ConnectionDenied) -> IpAddr {
        e.downcast::<Exceeded>()
            .expect("denied by the ip limit")
            .from
            .0
    }

    #[test]
    fn fresh_peer_ids_from_one_address_are_capped_and_others_are_not() {
        let mut h = Harness::new(4);
        for _ in 0..4 {
            h.inbound(ATTACKER).expect("within the limit");
        }
        for _ in 0..100 {
            let e = h.inbound(ATTACKER).expect_err("over the limit");
            assert_eq!(denied_for(e), ip("192.0.2.7"));
        }
        assert_eq!(h.b.unadmitted(ip("192.0.2.7")), 4);
        // Another address has its own budget.
        for _ in 0..4 {
            h.inbound(HONEST).expect("another address");
        }
        assert!(h.inbound(HONEST).is_err());
    }

    #[test]
    fn connections_in_their_handshake_count() {
        let mut h = Harness::new(3);
        let remote: Multiaddr = ATTACKER.parse().expect("addr");
        let ids: Vec<ConnectionId> = (0..3)
            .map(|_| h.pending(&remote).expect("within the limit"))
            .collect();
        assert!(h.pending(&remote).is_err(), "a fourth handshake at once");
        // A handshake that fails gives its place back.
        h.listen_failure(ids[0], &remote);
        let again = h.pending(&remote).expect("room again");
        // Finishing handshakes do not count twice.
        for id in [ids[1], ids[2], again] {
            h.establish(id, PeerId::random(), &remote)
                .expect("established");
        }
        assert_eq!(h.b.unadmitted(ip("192.0.2.7")), 3);
        assert!(h.pending(&remote).is_err());
    }

    #[test]
    fn admitted_peers_stop_counting_and_may_connect_again() {
        let mut h = Harness::new(2);
        let (_, a) = h.inbound(ATTACKER).expect("first");
        let (_, b) = h.inbound(ATTACKER).expect("second");
        assert!(h.inbound(ATTACKER).is_err());
        h.b.admit(a);
        assert_eq!(h.b.unadmitted(ip("192.0.2.7")), 1);
        // An admitted peer's further connection counts only during its
        // handshake (who it is is not known before).
        h.inbound_as(a, ATTACKER).expect("admitted peer");
        assert_eq!(h.b.unadmitted(ip("192.0.2.7")), 1);
        let (_, c) = h.inbound(ATTACKER).expect("room for one");
        assert!(h.inbound(ATTACKER).is_err());
        h.b.admit(b);
        h.b.admit(b); // twice is once
        assert_eq!(h.b.unadmitted(ip("192.0.2.7")), 1);
        h.b.admit(c);
        assert_eq!(h.b.unadmitted(ip("192.0.2.7")), 0);
    }

    #[test]
    fn closed_connections_are_forgotten() {
        let mut h = Harness::new(2);
        let (c1, a) = h.inbound(ATTACKER).expect("first");
        let (c2, b) = h.inbound(ATTACKER).expect("second");
        let (c3, _) = h.inbound_as(a, HONEST).expect("a second path of a");
        h.b.admit(a);
        h.close(c1, a, ATTACKER, 1);
        h.close(c2, b, ATTACKER, 0);
        assert_eq!(h.b.unadmitted(ip("192.0.2.7")), 0);
        h.close(c3, a, HONEST, 0);
        assert!(h.is_empty(), "{:?}", h.b);
        // Admission does not outlive the peer's connections.
        let (_, a2) = h.inbound_as(a, ATTACKER).expect("back");
        assert_eq!(a2, a);
        assert_eq!(h.b.unadmitted(ip("192.0.2.7")), 1);
    }

    #[test]
    fn a_connection_another_behaviour_denies_is_not_counted() {
        let mut h = Harness::new(1);
        let remote: Multiaddr = ATTACKER.parse().expect("addr");
        let id = h.pending(&remote).expect("pending");
        let local = h.local.clone();
        h.b.handle_established_inbound_connection(id, PeerId::random(), &local, &remote)
            .expect("this behaviour lets it through");
        // ...but another one denies it: the swarm reports a listen failure.
        h.listen_failure(id, &remote);
        assert!(h.is_empty());
        h.inbound(ATTACKER).expect("its place is free");
    }

    #[test]
    fn outbound_memory_and_unknown_peers_are_not_counted() {
        let mut h = Harness::new(1);
        let seeder = PeerId::random();
        for _ in 0..3 {
            h.outbound(seeder, "/ip4/192.0.2.7/tcp/4000");
        }
        assert_eq!(h.b.unadmitted(ip("192.0.2.7")), 0);
        for _ in 0..3 {
            h.inbound("/memory/7").expect("no address, no limit");
        }
        assert_eq!(h.b.peers.len(), 4);
        h.b.admit(PeerId::random());
        assert_eq!(h.b.peers.len(), 4, "a peer not connected is not remembered");
    }

    #[test]
    fn ipv4_mapped_ipv6_is_the_ipv4_address() {
        let mut h = Harness::new(1);
        h.inbound(ATTACKER).expect("first");
        let e = h
            .inbound("/ip6/::ffff:192.0.2.7/tcp/50000")
            .expect_err("the same host");
        assert_eq!(denied_for(e), ip("192.0.2.7"));
        h.inbound("/ip6/2001:db8::7/udp/4000/quic-v1")
            .expect("an IPv6 address of its own");
    }

    #[test]
    fn fresh_ipv6_addresses_of_one_slash_64_share_its_limit() {
        let mut h = Harness::new(3);
        for k in 1..=3 {
            h.inbound(&format!("/ip6/2001:db8:0:7::{k:x}/tcp/50000"))
                .expect("within the /64's limit");
        }
        let e = h
            .inbound("/ip6/2001:db8:0:7:ffff:1:2:3/tcp/50000")
            .expect_err("another address of the same /64");
        let denied = e.downcast::<Exceeded>().expect("denied by the ip limit");
        assert_eq!(denied.from.0, ip("2001:db8:0:7::"));
        assert_eq!(
            denied.to_string(),
            "2001:db8:0:7::/64 already has 3 connections that have not completed the exchange"
        );
        assert_eq!(h.b.unadmitted(ip("2001:db8:0:7::abcd")), 3);
        h.inbound("/ip6/2001:db8:0:8::1/tcp/50000")
            .expect("the next /64 has a limit of its own");
        h.inbound("/ip4/192.0.2.7/tcp/50000")
            .expect("IPv4 addresses count one by one");
    }
}
