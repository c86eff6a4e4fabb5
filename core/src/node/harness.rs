//! A deterministic in-memory network of N real [`Node`]s — quinn-proto's
//! `Pair`, grown to a mesh. No contention model: each transfer takes
//! latency + length / link rate. Node 0 is the seeder (holds everything,
//! runs no scheduler) on its own site, every node's configured peer.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::chunk::ChunkId;
use crate::swarm::{Swarm, SwarmPolicy};

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Up {
        node: u32,
    },
    Deliver {
        to: u32,
        from: u32,
        index: u32,
    },
    Fail {
        to: u32,
        from: u32,
        index: u32,
    },
    Have {
        to: u32,
        from: u32,
        indices: Arc<[u32]>,
    },
    Role {
        to: u32,
        from: u32,
        uplink: bool,
        gateway: bool,
    },
    Timer {
        node: u32,
    },
    Crash {
        node: u32,
    },
}

pub(crate) struct NodeSpec {
    pub site: u32,
    pub corrupt: bool,
}

pub(crate) struct Net {
    pub now: Duration,
    pub chunks: Vec<ChunkRef>,
    pub nodes: BTreeMap<u32, Node<u32>>,
    pub sites: BTreeMap<u32, u32>,
    pub corrupt: BTreeSet<u32>,
    pub dead: BTreeSet<u32>,
    pub finished: BTreeMap<u32, Duration>,
    /// Bytes into each site across its uplink.
    pub uplink_in: BTreeMap<u32, u64>,
    pub lan_rate: u64,
    pub wan_rate: u64,
    pub latency: Duration,
    pub max_in_flight_seen: usize,
    pub stored_corrupt: u64,
    queue: BinaryHeap<Reverse<(Duration, u64, Event)>>,
    seq: u64,
    timers: BTreeMap<u32, Duration>,
}

pub(crate) const SEEDER: u32 = 0;
const SEEDER_SITE: u32 = u32::MAX;

impl Net {
    /// `nodes[i]` describes node i+1; node 0 is the seeder.
    pub fn new(
        chunk_count: u32,
        chunk_len: u32,
        nodes: &[NodeSpec],
        config: impl Fn(u32) -> SwarmConfig,
    ) -> Self {
        let chunks: Vec<ChunkRef> = (0..chunk_count)
            .map(|i| ChunkRef {
                id: ChunkId::of(&i.to_le_bytes()),
                len: chunk_len,
            })
            .collect();
        let mut net = Net {
            now: Duration::ZERO,
            chunks: chunks.clone(),
            nodes: BTreeMap::new(),
            sites: BTreeMap::from([(SEEDER, SEEDER_SITE)]),
            corrupt: BTreeSet::new(),
            dead: BTreeSet::new(),
            finished: BTreeMap::new(),
            uplink_in: BTreeMap::new(),
            lan_rate: 100_000_000,
            wan_rate: 1_000_000,
            latency: Duration::from_millis(2),
            max_in_flight_seen: 0,
            stored_corrupt: 0,
            queue: BinaryHeap::new(),
            seq: 0,
            timers: BTreeMap::new(),
        };
        for (i, spec) in nodes.iter().enumerate() {
            let id = i as u32 + 1;
            net.sites.insert(id, spec.site);
            if spec.corrupt {
                net.corrupt.insert(id);
            }
            let swarm = config(id);
            let preset = match swarm.policy {
                SwarmPolicy::Sites { cross_site } => Preset::Device { cross_site },
                SwarmPolicy::NoLan => Preset::Central,
                _ => Preset::Flat,
            };
            let site = Some(SiteId(u64::from(spec.site)));
            // Each gained chunk is announced at once (one latency later).
            let config = NodeConfig {
                swarm,
                notice_every: Duration::ZERO,
                remote_notice_every: Duration::ZERO,
                ..NodeConfig::new(preset, site)
            };
            let have = if spec.corrupt {
                Bitfield::full(chunk_count)
            } else {
                Bitfield::new(chunk_count)
            };
            let mut node = Node::new(config, id, Duration::ZERO);
            node.take_release(Duration::ZERO, chunks.clone(), have);
            net.nodes.insert(id, node);
        }
        for id in net.nodes.keys().copied().collect::<Vec<_>>() {
            net.push(Duration::ZERO, Event::Up { node: id });
        }
        net
    }

    fn push(&mut self, at: Duration, e: Event) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq, e)));
    }

    pub fn crash_at(&mut self, node: u32, at: Duration) {
        self.push(at, Event::Crash { node });
    }

    /// A node's scheduler.
    pub fn swarm(&self, node: u32) -> &Swarm<u32> {
        self.nodes[&node].swarm().expect("every node has a release")
    }

    fn holds(&self, node: u32, index: u32) -> bool {
        node == SEEDER
            || self
                .nodes
                .get(&node)
                .and_then(|n| n.have())
                .is_some_and(|h| h.get(index))
    }

    fn transfer_time(&self, from: u32, to: u32, len: u32) -> Duration {
        let rate = if self.sites[&from] == self.sites[&to] {
            self.lan_rate
        } else {
            self.wan_rate
        };
        self.latency + Duration::from_secs_f64(f64::from(len) / rate as f64)
    }

    /// Runs until nothing is left to do or `limit` passes.
    pub fn run(&mut self, limit: Duration) {
        while let Some(Reverse((at, _, event))) = self.queue.pop() {
            if at > limit {
                break;
            }
            self.now = at;
            self.step(event);
        }
    }

    fn step(&mut self, event: Event) {
        let now = self.now;
        let node = match &event {
            Event::Up { node } | Event::Timer { node } | Event::Crash { node } => *node,
            Event::Deliver { to, .. }
            | Event::Fail { to, .. }
            | Event::Have { to, .. }
            | Event::Role { to, .. } => *to,
        };
        if self.dead.contains(&node) {
            return;
        }
        match event {
            Event::Up { node } => {
                // Full mesh: every node sees the seeder and every other node.
                let peers: Vec<u32> = self.sites.keys().copied().filter(|&p| p != node).collect();
                for p in peers {
                    let site = SiteId(u64::from(self.sites[&p]));
                    let (has, role) = if p == SEEDER {
                        (Bitfield::full(self.chunks.len() as u32), Role::default())
                    } else {
                        let n = &self.nodes[&p];
                        (
                            n.have()
                                .cloned()
                                .unwrap_or_else(|| Bitfield::new(self.chunks.len() as u32)),
                            n.role(),
                        )
                    };
                    let info = PeerInfo {
                        site: Some(site),
                        origin: p == SEEDER,
                        uplink: role.uplink,
                        gateway: role.gateway,
                    };
                    let n = self.nodes.get_mut(&node).expect("node");
                    n.handle_peer_up(now, p, info, p == SEEDER);
                    n.handle_have_all(now, p, has);
                }
            }
            Event::Crash { node } => {
                self.dead.insert(node);
                let others: Vec<u32> = self.nodes.keys().copied().filter(|&p| p != node).collect();
                for p in others {
                    if let Some(n) = self.nodes.get_mut(&p) {
                        n.handle_peer_down(now, node);
                    }
                }
            }
            Event::Deliver { to, from, index } => {
                if self.dead.contains(&from) {
                    return;
                }
                let ok = !self.corrupt.contains(&from);
                if self.sites[&from] != self.sites[&to] {
                    *self.uplink_in.entry(self.sites[&to]).or_default() +=
                        u64::from(self.chunks[index as usize].len);
                }
                let n = self.nodes.get_mut(&to).expect("node");
                let held = |n: &Node<u32>| n.have().is_some_and(|h| h.get(index));
                let had = held(n);
                let receipt = if ok {
                    Receipt::Verified
                } else {
                    Receipt::Rejected
                };
                n.handle_chunk(now, from, index, receipt);
                if !ok && !had && held(n) {
                    self.stored_corrupt += 1;
                }
            }
            Event::Fail { to, from, index } => {
                self.nodes
                    .get_mut(&to)
                    .expect("node")
                    .handle_request_failed(now, from, index);
            }
            Event::Have { to, from, indices } => {
                self.nodes
                    .get_mut(&to)
                    .expect("node")
                    .handle_gained(now, from, &indices);
            }
            Event::Role {
                to,
                from,
                uplink,
                gateway,
            } => {
                let role = Role {
                    origin: false,
                    uplink,
                    gateway,
                };
                self.nodes
                    .get_mut(&to)
                    .expect("node")
                    .handle_peer_role(now, from, role);
            }
            Event::Timer { node } => {
                self.timers.remove(&node);
                self.nodes
                    .get_mut(&node)
                    .expect("node")
                    .handle_timeout(now, |_, _| 0);
            }
        }
        self.drain(node);
    }

    fn drain(&mut self, node: u32) {
        let now = self.now;
        let Some(n) = self.nodes.get_mut(&node) else {
            return;
        };
        let outputs: Vec<Output<u32>> = std::iter::from_fn(|| n.poll_output()).collect();
        let in_flight = n.swarm().map_or(0, |s| s.in_flight());
        self.max_in_flight_seen = self.max_in_flight_seen.max(in_flight);
        let timeout = n.poll_timeout();
        for out in outputs {
            match out {
                Output::Request { peer, index, len } => {
                    if self.dead.contains(&peer) {
                        continue; // the requester's timeout handles it
                    }
                    if self.holds(peer, index) || self.corrupt.contains(&peer) {
                        let at = now + self.transfer_time(peer, node, len);
                        let to = node;
                        self.push(
                            at,
                            Event::Deliver {
                                to,
                                from: peer,
                                index,
                            },
                        );
                    } else {
                        let at = now + self.latency * 2;
                        self.push(
                            at,
                            Event::Fail {
                                to: node,
                                from: peer,
                                index,
                            },
                        );
                    }
                }
                Output::Gained { peer, indices } if peer != SEEDER => {
                    let at = now + self.latency;
                    self.push(
                        at,
                        Event::Have {
                            to: peer,
                            from: node,
                            indices,
                        },
                    );
                }
                // Every node is connected to every other: a new role reaches
                // all of them (the node's per-peer `Role` notices, and the
                // greeting a later peer gets, together).
                Output::RoleChanged(role) => {
                    let at = now + self.latency;
                    let others: Vec<u32> =
                        self.nodes.keys().copied().filter(|&p| p != node).collect();
                    for to in others {
                        let (uplink, gateway) = (role.uplink, role.gateway);
                        let ev = Event::Role {
                            to,
                            from: node,
                            uplink,
                            gateway,
                        };
                        self.push(at, ev);
                    }
                }
                Output::Complete => {
                    self.finished.insert(node, now);
                }
                _ => {}
            }
        }
        if let Some(t) = timeout {
            let t = t.max(now);
            if self.timers.get(&node).is_none_or(|&cur| t < cur) {
                self.timers.insert(node, t);
                self.push(t, Event::Timer { node });
            }
        }
    }
}
