//! A deterministic in-memory network of N nodes running real [`Swarm`]s —
//! quinn-proto's `Pair`, grown to a mesh. No contention model: each transfer
//! takes latency + length / link rate. Node 0 is the seeder (holds
//! everything, runs no scheduler) on its own site.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::time::Duration;

use super::*;
use crate::chunk::ChunkId;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Up { node: u32 },
    Deliver { to: u32, from: u32, index: u32 },
    Fail { to: u32, from: u32, index: u32 },
    Have { to: u32, from: u32, index: u32 },
    Timer { node: u32 },
    Crash { node: u32 },
}

pub(crate) struct NodeSpec {
    pub site: u32,
    pub corrupt: bool,
}

pub(crate) struct Net {
    pub now: Duration,
    pub chunks: Vec<ChunkRef>,
    pub swarms: BTreeMap<u32, Swarm<u32>>,
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
            swarms: BTreeMap::new(),
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
            let mut cfg = config(id);
            cfg.site = Some(SiteId(u64::from(spec.site)));
            let have = if spec.corrupt {
                Bitfield::full(chunk_count)
            } else {
                Bitfield::new(chunk_count)
            };
            net.swarms.insert(
                id,
                Swarm::new(cfg, id, chunks.clone(), have, Duration::ZERO),
            );
        }
        for id in net.swarms.keys().copied().collect::<Vec<_>>() {
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

    fn holds(&self, node: u32, index: u32) -> bool {
        node == SEEDER || self.swarms.get(&node).is_some_and(|s| s.have().get(index))
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
            Event::Deliver { to, .. } | Event::Fail { to, .. } | Event::Have { to, .. } => *to,
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
                    let has = if p == SEEDER {
                        Bitfield::full(self.chunks.len() as u32)
                    } else {
                        self.swarms[&p].have().clone()
                    };
                    let s = self.swarms.get_mut(&node).expect("node");
                    let info = PeerInfo {
                        site: Some(site),
                        origin: p == SEEDER,
                        uplink: true,
                        gateway: true,
                    };
                    s.handle_peer_up(now, p, info);
                    s.handle_have_all(now, p, has);
                }
            }
            Event::Crash { node } => {
                self.dead.insert(node);
                let others: Vec<u32> = self.swarms.keys().copied().filter(|&p| p != node).collect();
                for p in others {
                    if let Some(s) = self.swarms.get_mut(&p) {
                        s.handle_peer_down(now, node);
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
                let s = self.swarms.get_mut(&to).expect("node");
                let had = s.have().get(index);
                s.handle_chunk(now, from, index, ok);
                if !ok && !had && s.have().get(index) {
                    self.stored_corrupt += 1;
                }
            }
            Event::Fail { to, from, index } => {
                self.swarms
                    .get_mut(&to)
                    .expect("node")
                    .handle_request_failed(now, from, index);
            }
            Event::Have { to, from, index } => {
                self.swarms
                    .get_mut(&to)
                    .expect("node")
                    .handle_have(now, from, index);
            }
            Event::Timer { node } => {
                self.timers.remove(&node);
                self.swarms
                    .get_mut(&node)
                    .expect("node")
                    .handle_timeout(now, |_, _| 0);
            }
        }
        self.drain(node);
    }

    fn drain(&mut self, node: u32) {
        let now = self.now;
        let Some(swarm) = self.swarms.get_mut(&node) else {
            return;
        };
        let mut actions = Vec::new();
        while let Some(a) = swarm.poll_action() {
            actions.push(a);
        }
        self.max_in_flight_seen = self.max_in_flight_seen.max(swarm.in_flight());
        let timeout = swarm.poll_timeout();
        for a in actions {
            match a {
                Action::Request {
                    peer, index, len, ..
                } => {
                    if self.dead.contains(&peer) {
                        continue; // the requester's timeout handles it
                    }
                    if self.holds(peer, index) || self.corrupt.contains(&peer) {
                        let at = now + self.transfer_time(peer, node, len);
                        self.push(
                            at,
                            Event::Deliver {
                                to: node,
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
                Action::Have { index } => {
                    let at = now + self.latency;
                    let peers: Vec<u32> =
                        self.swarms.keys().copied().filter(|&p| p != node).collect();
                    for p in peers {
                        self.push(
                            at,
                            Event::Have {
                                to: p,
                                from: node,
                                index,
                            },
                        );
                    }
                }
                Action::Complete => {
                    self.finished.insert(node, now);
                }
                Action::Cancel { .. }
                | Action::Penalise { .. }
                | Action::Ban { .. }
                | Action::Role { .. } => {}
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
