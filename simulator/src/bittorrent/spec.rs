//! The `[bittorrent]` table of a scenario: the knobs of the `bittorrent`
//! strategy's model of a standard client, each with the common clients'
//! default (see `simulator/README.md`, "BitTorrent baseline").

use serde::{Deserialize, Serialize};

/// Parameters of the BitTorrent model.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BittorrentSpec {
    /// Piece size, KiB (the unit of rarest-first and of `HAVE` messages).
    #[serde(default = "piece_kib")]
    pub piece_kib: u32,
    /// Block size, KiB (the unit of requests; 16 KiB in every client).
    #[serde(default = "block_kib")]
    pub block_kib: u32,
    /// Block requests a peer keeps outstanding to each peer (pipelining).
    #[serde(default = "queue_depth")]
    pub queue_depth: usize,
    /// Peers the tracker returns per announce (`numwant`), drawn at random
    /// from those that announced before.
    #[serde(default = "tracker_peers")]
    pub tracker_peers: u32,
    /// Seconds between announces; each one connects to new peers from a
    /// fresh list while the peer has room under `max_peers`.
    #[serde(default = "announce_interval_s")]
    pub announce_interval_s: f64,
    /// Connections a peer keeps at most (aria2's `--bt-max-peers`, 55).
    #[serde(default = "max_peers")]
    pub max_peers: u32,
    /// Local peer discovery (BEP 14): the devices of a site find each other.
    #[serde(default = "yes")]
    pub lpd: bool,
    /// Regular unchoke slots (aria2: 3, plus the optimistic unchoke; a
    /// seeder one more every third round).
    #[serde(default = "unchoke_slots")]
    pub unchoke_slots: usize,
    /// Seconds between periodic choke rounds (a peer also runs one when a
    /// choked peer becomes interested or an unchoked one loses interest).
    #[serde(default = "choke_interval_s")]
    pub choke_interval_s: f64,
    /// Seconds from a device's start until it connects to the peers that
    /// local peer discovery and the tracker name (aria2: its event loop's
    /// next pass, about 1 s).
    #[serde(default = "connect_delay_s")]
    pub connect_delay_s: f64,
    /// Accepted for scenarios written before the choker followed aria2
    /// (the optimistic unchoke now rotates every third choke round); ignored.
    #[serde(default, skip_serializing)]
    pub optimistic_interval_s: Option<f64>,
    /// Pieces picked at random before rarest-first takes over.
    #[serde(default = "random_first")]
    pub random_first: u32,
    /// End-game: once every missing block is requested, request the
    /// outstanding ones from every peer that has them too, cancelling the
    /// rest when one arrives.
    #[serde(default = "yes")]
    pub end_game: bool,
}

impl Default for BittorrentSpec {
    fn default() -> Self {
        Self {
            piece_kib: piece_kib(),
            block_kib: block_kib(),
            queue_depth: queue_depth(),
            tracker_peers: tracker_peers(),
            announce_interval_s: announce_interval_s(),
            max_peers: max_peers(),
            lpd: true,
            unchoke_slots: unchoke_slots(),
            choke_interval_s: choke_interval_s(),
            connect_delay_s: connect_delay_s(),
            optimistic_interval_s: None,
            random_first: random_first(),
            end_game: true,
        }
    }
}

impl BittorrentSpec {
    /// What is wrong with these values, if anything.
    pub fn problem(&self) -> Option<&'static str> {
        let positive = |x: f64| x > 0.0 && x.is_finite();
        if self.block_kib == 0 || self.piece_kib < self.block_kib || self.piece_kib > 16 * 1024 {
            return Some("bittorrent: need 1 <= block_kib <= piece_kib <= 16384");
        }
        if self.piece_kib / self.block_kib > 1024 {
            return Some("bittorrent: at most 1024 blocks per piece");
        }
        if self.queue_depth == 0 || self.max_peers == 0 || self.unchoke_slots == 0 {
            return Some("bittorrent: queue_depth, max_peers and unchoke_slots must be >= 1");
        }
        if !positive(self.announce_interval_s)
            || !positive(self.choke_interval_s)
            || !(self.connect_delay_s == 0.0 || positive(self.connect_delay_s))
        {
            return Some("bittorrent: intervals must be positive seconds, connect_delay_s >= 0");
        }
        None
    }
}

fn piece_kib() -> u32 {
    256
}
fn block_kib() -> u32 {
    16
}
fn queue_depth() -> usize {
    16
}
fn tracker_peers() -> u32 {
    50
}
fn announce_interval_s() -> f64 {
    // opentracker's default interval: 30 minutes.
    1800.0
}
fn max_peers() -> u32 {
    55
}
fn yes() -> bool {
    true
}
fn unchoke_slots() -> usize {
    3
}
fn choke_interval_s() -> f64 {
    10.0
}
fn connect_delay_s() -> f64 {
    1.0
}
fn random_first() -> u32 {
    4
}
