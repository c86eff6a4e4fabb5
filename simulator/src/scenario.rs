//! Scenarios: what a simulation runs, read from TOML and checked into a
//! typed [`Scenario`] before anything runs. `pollen-sim example` prints a
//! commented one ([`EXAMPLE`]).

use serde::{Deserialize, Serialize};

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScenarioError {
    #[error("scenario is not valid TOML: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("scenario: {0}")]
    Invalid(String),
    #[error("scenario has no source: give a [seeder] or an [origin] (or both) that is not `enabled = false`")]
    NoSource,
    #[error("--param {0}: {1}")]
    Param(String, String),
}

/// How devices get the release.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Central HTTP: every device downloads the whole artifact from the seeder.
    Central,
    /// Peer-to-peer without site awareness (a BitTorrent-like swarm).
    Swarm,
    /// Pollen's default: site-aware swarm.
    Pollen,
    /// A model of a standard BitTorrent client (`crate::bittorrent`,
    /// parameters in `[bittorrent]`).
    Bittorrent,
}

impl Strategy {
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Central => "central",
            Strategy::Swarm => "swarm",
            Strategy::Pollen => "pollen",
            Strategy::Bittorrent => "bittorrent",
        }
    }
}

/// A group of identical sites.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SiteSpec {
    /// Name (sites of a group are numbered after it).
    #[serde(default = "default_site_name")]
    pub name: String,
    /// How many sites like this.
    #[serde(default = "one")]
    pub count: u32,
    /// Devices per site.
    pub devices: u32,
    /// Per-device LAN upload and download, Mbit/s.
    pub lan_up_mbit: f64,
    pub lan_down_mbit: f64,
    /// The site's uplink: towards the internet (up) and from it (down), Mbit/s.
    pub uplink_up_mbit: f64,
    pub uplink_down_mbit: f64,
    /// One-way latency between devices on the site, ms.
    #[serde(default = "half_ms")]
    pub lan_latency_ms: f64,
    /// One-way latency from the site to the internet, ms.
    #[serde(default = "twenty_ms")]
    pub wan_latency_ms: f64,
    /// A CSV trace of the uplink's capacity into the site (`time_s,mbit`
    /// rows, a step function whose last value holds; before its first
    /// time, `uplink_down_mbit`), relative to the scenario file. Every site
    /// of the group follows it ([`crate::trace`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uplink_trace: Option<String>,
    /// The same for the uplink's capacity out of the site (`uplink_up_mbit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uplink_up_trace: Option<String>,
}

fn default_site_name() -> String {
    "site".into()
}
fn one() -> u32 {
    1
}
fn half_ms() -> f64 {
    0.5
}
fn twenty_ms() -> f64 {
    20.0
}

/// The publisher's seeder, on the internet.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SeederSpec {
    /// `false`: the fleet runs without a seeder (origin only); lets a sweep
    /// turn it off (`--param seeder.enabled=true,false`).
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub upload_mbit: f64,
    /// One-way latency from the seeder to the internet, ms.
    #[serde(default = "twenty_ms")]
    pub latency_ms: f64,
    /// Connections the seeder keeps (`pollen-seeder serve --max-connections`);
    /// above half of it, two per site (`pollen_core::admission::keep_connection`).
    /// Not applied to `central` (an HTTP server).
    #[serde(default = "max_connections")]
    pub max_connections: u32,
    /// Responses it sends at once (`pollen-seeder serve --upload-slots`).
    #[serde(default = "seeder_slots")]
    pub upload_slots: usize,
}

/// An HTTPS origin (a web server, object store or CDN holding every
/// chunk, `pollen-node --origin URL`): an uplink source with its own
/// capacity, shared fairly among the devices downloading, and a time to
/// first byte per request. It runs no admission control of Pollen's, never
/// fetches, announces nothing and takes no part in peer exchange.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OriginSpec {
    /// `false`: as if the table were absent (for sweeps).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Its capacity towards the internet, Mbit/s.
    pub upload_mbit: f64,
    /// Per request, from the device sending it to the first byte arriving
    /// (request round trip + server/CDN processing), ms. The site's
    /// `wan_latency_ms` does not add to it.
    #[serde(default = "origin_latency_ms")]
    pub latency_ms: f64,
    /// Requests a device has at the origin at once (the node's origin
    /// client concurrency); the scheduler's further requests wait on the
    /// device for one to end.
    #[serde(default = "origin_requests")]
    pub max_requests: usize,
}

fn origin_latency_ms() -> f64 {
    50.0
}
fn origin_requests() -> usize {
    4
}

fn seeder_slots() -> usize {
    pollen_core::admission::AdmissionConfig::origin().max_active
}

fn max_connections() -> u32 {
    512
}

/// Devices leaving and joining.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChurnSpec {
    /// Fraction of devices that crash once, at a uniform time in `[0, crash_window_s]`.
    #[serde(default)]
    pub crash_fraction: f64,
    #[serde(default = "sixty")]
    pub crash_window_s: f64,
    /// A crashed device comes back (with what it had stored) after this long; < 0: never.
    #[serde(default = "thirty")]
    pub rejoin_after_s: f64,
    /// Churn as a rate: each device leaves this many times an hour on
    /// average while it is up (exponential times between leaves, from the
    /// scenario's seed), finished or not, and comes back with what it
    /// stored after an exponential time of mean `mean_offline_s`. 0: off.
    #[serde(default)]
    pub rate_per_hour: f64,
    #[serde(default = "sixty")]
    pub mean_offline_s: f64,
}

impl Default for ChurnSpec {
    fn default() -> Self {
        Self {
            crash_fraction: 0.0,
            crash_window_s: sixty(),
            rejoin_after_s: thirty(),
            rate_per_hour: 0.0,
            mean_offline_s: sixty(),
        }
    }
}

fn sixty() -> f64 {
    60.0
}
fn thirty() -> f64 {
    30.0
}

/// Device bandwidth heterogeneity.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HeterogeneitySpec {
    /// Each device's LAN up/down is scaled by a factor uniform in `[1 - spread, 1 + spread]`.
    #[serde(default)]
    pub lan_spread: f64,
}

/// A rollout stage: devices whose bucket is below the share start at `start_s`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StageSpec {
    pub share_percent: f64,
    pub start_s: f64,
}

/// The scheduler's knobs the simulator exposes.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SchedSpec {
    #[serde(default = "eight")]
    pub per_peer_in_flight: usize,
    #[serde(default = "sixty_four")]
    pub total_in_flight: usize,
    /// Devices of other sites each device connects to (`swarm`: devices
    /// anywhere; `pollen`: only with `cross_site`).
    #[serde(default = "twenty")]
    pub remote_peers: u32,
    /// `pollen`: sites share with each other across their uplinks (the
    /// node's default; `--no-cross-site` turns it off).
    #[serde(default = "yes")]
    pub cross_site: bool,
    /// `pollen`: gateways per site, and the requests they keep in flight
    /// across its downlink between them (the node's defaults).
    #[serde(default = "site_fetchers")]
    pub site_fetchers: usize,
    #[serde(default = "site_uplink_requests")]
    pub site_uplink_requests: usize,
    /// Responses a device sends at once to other sites (its gateway's
    /// upload slots; with `swarm`, to anyone).
    #[serde(default = "upload_slots")]
    pub upload_slots: usize,
    /// How often a device announces the chunks it gained
    /// (`pollen_core::node::NOTICE_EVERY`, as the node); 0: at once, as
    /// each chunk lands (idealised information).
    #[serde(default = "notify_ms")]
    pub notify_ms: f64,
    /// `pollen`: how often a device announces gained chunks to its peers on
    /// other sites (`pollen_core::node::REMOTE_NOTICE_EVERY`, as the node).
    #[serde(default = "notify_remote_ms")]
    pub notify_remote_ms: f64,
    /// `pollen`: a chunk gained while fewer gateways of other sites than
    /// this are known to hold it is announced to them on the `notify_ms`
    /// tick instead (`pollen_core::node::NEWS_BELOW`, as the node); 0:
    /// never.
    #[serde(default = "notify_news_below")]
    pub notify_news_below: u16,
    /// `pollen`: at a site of more devices than this, a device that is
    /// not a gateway tells its gains to the gateways, origins and about
    /// this many other site peers (`pollen_core::node::SITE_FANOUT`, as
    /// the node); 0: to every site peer.
    #[serde(default = "site_fanout")]
    pub site_fanout: usize,
    /// How a device sizes what it keeps in flight to one source: `rate`
    /// (from what it delivers; the node's policy) or `aimd` (loss-driven,
    /// for comparison).
    #[serde(default)]
    pub window: Window,
}

/// [`SchedSpec::window`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Window {
    #[default]
    Rate,
    Aimd,
}

impl Default for SchedSpec {
    fn default() -> Self {
        Self {
            per_peer_in_flight: 8,
            total_in_flight: 64,
            remote_peers: 20,
            cross_site: true,
            site_fetchers: site_fetchers(),
            site_uplink_requests: site_uplink_requests(),
            upload_slots: upload_slots(),
            notify_ms: notify_ms(),
            notify_remote_ms: notify_remote_ms(),
            notify_news_below: notify_news_below(),
            site_fanout: site_fanout(),
            window: Window::Rate,
        }
    }
}

fn yes() -> bool {
    true
}
fn site_fetchers() -> usize {
    pollen_core::swarm::SwarmConfig::default().site_fetchers
}
fn site_uplink_requests() -> usize {
    pollen_core::swarm::SwarmConfig::default().site_uplink_requests
}
fn upload_slots() -> usize {
    pollen_core::admission::AdmissionConfig::default().max_active
}

fn notify_ms() -> f64 {
    pollen_core::node::NOTICE_EVERY.as_secs_f64() * 1000.0
}
fn notify_remote_ms() -> f64 {
    pollen_core::node::REMOTE_NOTICE_EVERY.as_secs_f64() * 1000.0
}
fn notify_news_below() -> u16 {
    pollen_core::node::NEWS_BELOW
}

fn site_fanout() -> usize {
    pollen_core::node::SITE_FANOUT
}

fn eight() -> usize {
    8
}
fn sixty_four() -> usize {
    64
}
fn twenty() -> u32 {
    20
}

/// Real files instead of a synthetic release: the chunk list of `new`, and
/// (with `old`) the chunks every device already holds from `old`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FilesSpec {
    pub new: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old: Option<String>,
}

/// A whole scenario.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    #[serde(default)]
    pub seed: u64,
    pub strategy: Strategy,
    /// Synthetic release: size and (fixed) chunk size.
    #[serde(default)]
    pub release_mib: f64,
    #[serde(default = "chunk_kib")]
    pub chunk_kib: u32,
    /// Pass a chunk on piece by piece, in pieces of this size (KiB, a power
    /// of two): a device tells of a chunk once its first piece is in, and
    /// sends each piece on as it lands. The default is the node's
    /// (`pollen_core::chunk::PIECE_LEN`, 64 KiB, on `/pollen/4`); 0: a chunk
    /// is passed on only once whole, as nodes before `/pollen/4` did.
    #[serde(default = "piece_kib")]
    pub piece_kib: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files: Option<FilesSpec>,
    /// The publisher's seeder (absent or `enabled = false`: none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seeder: Option<SeederSpec>,
    /// An HTTPS origin (absent or `enabled = false`: none). At least one
    /// of the two sources is needed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<OriginSpec>,
    #[serde(rename = "site")]
    pub sites: Vec<SiteSpec>,
    #[serde(default)]
    pub churn: ChurnSpec,
    #[serde(default)]
    pub heterogeneity: HeterogeneitySpec,
    /// Framing on the wire, as a share of the payload: every link's rate
    /// (`*_mbit`, what `tc tbf` or a line delivers in frames) carries
    /// `1 / (1 + wire_overhead)` of it in chunk bytes. 0 (the default): the
    /// rates are payload rates. `0.046` is bulk TCP in Ethernet frames of
    /// 1 514 bytes carrying 1 448 (IPv4, TCP timestamps), the namespace
    /// fleet's links; the bound is charged the same.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub wire_overhead: f64,
    #[serde(default, rename = "stage")]
    pub stages: Vec<StageSpec>,
    #[serde(default)]
    pub sched: SchedSpec,
    /// The `bittorrent` strategy's client model.
    #[serde(default)]
    pub bittorrent: crate::bittorrent::BittorrentSpec,
    /// Give up after this much simulated time, s.
    #[serde(default = "limit")]
    pub time_limit_s: f64,
    /// Timeline sample interval, s.
    #[serde(default = "one_s")]
    pub sample_s: f64,
}

fn chunk_kib() -> u32 {
    256
}
fn piece_kib() -> u32 {
    pollen_core::chunk::PIECE_LEN / 1024
}
fn is_zero(x: &f64) -> bool {
    *x == 0.0
}
fn limit() -> f64 {
    86_400.0
}
fn one_s() -> f64 {
    1.0
}

impl Scenario {
    /// Parses and checks a scenario.
    pub fn from_toml(text: &str) -> Result<Self, ScenarioError> {
        let s: Scenario = toml::from_str(text)?;
        s.check()?;
        Ok(s)
    }

    /// Parses with `KEY=VALUE` overrides applied (dotted keys into tables,
    /// `site.N.key` into the N-th site group).
    pub fn from_toml_with(text: &str, params: &[(String, String)]) -> Result<Self, ScenarioError> {
        let mut value: toml::Table = text.parse::<toml::Table>()?;
        for (key, raw) in params {
            set_param(&mut value, key, raw)?;
        }
        let s: Scenario = value
            .try_into()
            .map_err(|e: toml::de::Error| ScenarioError::Invalid(e.to_string()))?;
        s.check()?;
        Ok(s)
    }

    fn check(&self) -> Result<(), ScenarioError> {
        let bad = |m: &str| Err(ScenarioError::Invalid(m.to_owned()));
        if self.sites.is_empty() {
            return bad("at least one [[site]] is needed");
        }
        let positive = |x: f64| x > 0.0 && x.is_finite();
        if self.files.is_none() && !positive(self.release_mib) {
            return bad("release_mib must be positive (or give [files])");
        }
        if self.chunk_kib == 0 || self.chunk_kib > 16 * 1024 {
            return bad("chunk_kib must be in 1..=16384");
        }
        if self.piece_kib != 0 && (!self.piece_kib.is_power_of_two() || self.piece_kib > 16 * 1024)
        {
            return bad("piece_kib must be 0 (off) or a power of two up to 16384");
        }
        if self.seeder().is_none() && self.origin().is_none() {
            return Err(ScenarioError::NoSource);
        }
        if self.strategy != Strategy::Pollen && self.seeder().is_none() {
            return bad(
                "strategies central, swarm and bittorrent need a [seeder]; an origin-only fleet runs pollen",
            );
        }
        if self.strategy == Strategy::Bittorrent {
            if let Some(why) = self.bittorrent.problem() {
                return bad(why);
            }
            if !self.stages.is_empty()
                || self.churn.crash_fraction > 0.0
                || self.churn.rate_per_hour > 0.0
                || self.files.as_ref().is_some_and(|f| f.old.is_some())
                || self
                    .sites
                    .iter()
                    .any(|g| g.uplink_trace.is_some() || g.uplink_up_trace.is_some())
            {
                return bad(
                    "bittorrent models no stages, churn, uplink traces or delta updates ([files] old)",
                );
            }
        }
        if self.strategy != Strategy::Pollen && self.origin().is_some() {
            return bad("an [origin] is modelled for strategy pollen only");
        }
        if let Some(o) = self.origin() {
            if !(o.latency_ms >= 0.0 && o.latency_ms.is_finite()) || o.max_requests == 0 {
                return bad("origin.latency_ms must be >= 0 and origin.max_requests >= 1");
            }
        }
        let rates = self
            .seeder()
            .map(|s| s.upload_mbit)
            .into_iter()
            .chain(self.origin().map(|o| o.upload_mbit))
            .chain(self.sites.iter().flat_map(|s| {
                [
                    s.lan_up_mbit,
                    s.lan_down_mbit,
                    s.uplink_up_mbit,
                    s.uplink_down_mbit,
                ]
            }));
        for r in rates {
            if !positive(r) {
                return bad("every rate must be a positive number of Mbit/s");
            }
        }
        if !(0.0..1.0).contains(&self.wire_overhead) {
            return bad("wire_overhead must be in [0, 1): framing as a share of the payload");
        }
        if self.sites.iter().any(|s| s.devices == 0 || s.count == 0) {
            return bad("every site group needs devices >= 1 and count >= 1");
        }
        if self.devices() > 200_000 {
            return bad("at most 200 000 devices");
        }
        let rate = self.churn.rate_per_hour;
        if !(rate >= 0.0 && rate.is_finite() && positive(self.churn.mean_offline_s)) {
            return bad("churn.rate_per_hour must be >= 0 and churn.mean_offline_s positive");
        }
        if !(0.0..=1.0).contains(&self.churn.crash_fraction)
            || !(0.0..1.0).contains(&self.heterogeneity.lan_spread)
        {
            return bad("crash_fraction must be in [0, 1] and lan_spread in [0, 1)");
        }
        if self
            .stages
            .iter()
            .any(|s| !(0.0..=100.0).contains(&s.share_percent) || s.start_s < 0.0)
        {
            return bad("stage shares must be in [0, 100] and start times >= 0");
        }
        if !positive(self.sample_s) || !positive(self.time_limit_s) {
            return bad("sample_s and time_limit_s must be positive");
        }
        let period = |x: f64| x >= 0.0 && x.is_finite();
        if !period(self.sched.notify_ms) || !period(self.sched.notify_remote_ms) {
            return bad("sched.notify_ms and sched.notify_remote_ms must be >= 0");
        }
        Ok(())
    }

    /// The seeder, if the fleet has one.
    pub fn seeder(&self) -> Option<&SeederSpec> {
        self.seeder.as_ref().filter(|s| s.enabled)
    }

    /// The HTTPS origin, if the fleet has one.
    pub fn origin(&self) -> Option<&OriginSpec> {
        self.origin.as_ref().filter(|o| o.enabled)
    }

    /// Devices in all sites.
    pub fn devices(&self) -> u64 {
        self.sites
            .iter()
            .map(|s| u64::from(s.devices) * u64::from(s.count))
            .sum()
    }
}

fn parse_value(raw: &str) -> toml::Value {
    if let Ok(i) = raw.parse::<i64>() {
        toml::Value::Integer(i)
    } else if let Ok(f) = raw.parse::<f64>() {
        toml::Value::Float(f)
    } else if let Ok(b) = raw.parse::<bool>() {
        toml::Value::Boolean(b)
    } else {
        toml::Value::String(raw.to_owned())
    }
}

fn set_param(table: &mut toml::Table, key: &str, raw: &str) -> Result<(), ScenarioError> {
    let err = |m: &str| ScenarioError::Param(key.to_owned(), m.to_owned());
    let parts: Vec<&str> = key.split('.').collect();
    let mut cur = table;
    let mut i = 0;
    while i + 1 < parts.len() {
        let name = parts[i];
        // A table the scenario left to its defaults is created.
        if !cur.contains_key(name)
            && parts
                .get(i + 1)
                .is_some_and(|p| p.parse::<usize>().is_err())
        {
            cur.insert(name.to_owned(), toml::Value::Table(toml::Table::new()));
        }
        let entry = cur
            .get_mut(name)
            .ok_or_else(|| err(&format!("no table {name}")))?;
        cur = match entry {
            toml::Value::Table(t) => t,
            toml::Value::Array(items) => {
                let n: usize = parts
                    .get(i + 1)
                    .and_then(|p| p.parse().ok())
                    .ok_or_else(|| err("an array needs an index, e.g. site.0.devices"))?;
                i += 1;
                match items.get_mut(n) {
                    Some(toml::Value::Table(t)) => t,
                    _ => return Err(err(&format!("no entry {n} in {name}"))),
                }
            }
            _ => return Err(err(&format!("{name} is not a table"))),
        };
        i += 1;
    }
    let last = parts[parts.len() - 1];
    let mut v = parse_value(raw);
    // Keep floats floats: `release_mib=64` must not become an integer the schema refuses.
    if let (Some(toml::Value::Float(_)), toml::Value::Integer(n)) = (cur.get(last), &v) {
        v = toml::Value::Float(*n as f64);
    }
    cur.insert(last.to_owned(), v);
    Ok(())
}

/// A commented example scenario (`pollen-sim example`).
pub const EXAMPLE: &str = r#"# A Pollen simulation scenario. Rates in Mbit/s, times in seconds unless named _ms.
seed = 1                   # one seed for every random choice: same scenario + seed = same results
strategy = "pollen"        # central (HTTP from the seeder) | swarm (P2P, no sites) | pollen | bittorrent
release_mib = 500.0        # synthetic release of this size ...
chunk_kib = 1024           # ... in chunks of this size
piece_kib = 64             # a chunk is passed on in pieces of this size (a power of two) as they land, as the node does; 0: only once whole
# [files]                  # or a real chunk list (FastCDC, as `pollen-seeder publish` cuts it):
# new = "firmware-2.img"   # the release
# old = "firmware-1.img"   # every device already holds this one's chunks (a delta update)
time_limit_s = 86400.0     # give up after this much simulated time
sample_s = 5.0             # timeline.csv sample interval
# wire_overhead = 0.046    # framing per payload byte (TCP/IP in Ethernet frames, as tc tbf counts); 0: rates are payload rates

[seeder]
upload_mbit = 100.0
latency_ms = 20.0          # seeder to the internet, one way
max_connections = 512      # the seeder keeps this many; past half, two per site
upload_slots = 64          # responses it sends at once at most (about 2 s of its rate); more wait, the rest hear Busy
# enabled = false          # no seeder (then an [origin] is needed)

# [origin]                 # an HTTPS origin (web server, S3, CDN) holding every chunk: pollen only
# upload_mbit = 1000.0     # its capacity, shared fairly among the devices downloading
# latency_ms = 50.0        # per request: time to first byte (round trip + processing)
# max_requests = 4         # requests a device has at the origin at once (the node's client concurrency)

[[site]]                   # repeat [[site]] for different kinds of sites
name = "plant"
count = 20                 # 20 sites like this one
devices = 50               # devices per site
lan_up_mbit = 100.0        # per device
lan_down_mbit = 100.0
uplink_up_mbit = 10.0      # the site's internet link
uplink_down_mbit = 10.0
lan_latency_ms = 0.5
wan_latency_ms = 20.0
# uplink_trace = "traces/plant.csv"    # time_s,mbit rows: the downlink's capacity over time (step function)
# uplink_up_trace = "traces/plant-up.csv"  # the same for the direction out of the site

[churn]
crash_fraction = 0.0       # devices that crash once, at a uniform time in [0, crash_window_s]
crash_window_s = 60.0
rejoin_after_s = 30.0      # and come back with what they stored (< 0: never)
rate_per_hour = 0.0        # churn as a rate: each device leaves this often an hour (exponential gaps), ...
mean_offline_s = 60.0      # ... and is away for an exponential time of this mean, then rejoins

[heterogeneity]
lan_spread = 0.0           # each device's LAN rates scaled by U[1 - spread, 1 + spread]

# [[stage]]                # staged rollout: devices whose bucket is under the share join at start_s
# share_percent = 10.0
# start_s = 0.0
# [[stage]]
# share_percent = 100.0
# start_s = 600.0

[sched]
per_peer_in_flight = 8     # the node's defaults
total_in_flight = 64
remote_peers = 20          # devices of other sites each device connects to (swarm: anywhere)
cross_site = true          # pollen: sites serve each other across their uplinks (each still gets one copy)
site_fetchers = 6          # pollen: gateways per site (fetch across the uplink, serve other sites)
site_uplink_requests = 12  # pollen: requests a site keeps in flight across its downlink
upload_slots = 1           # responses a gateway sends at once to other sites
notify_ms = 200.0          # gained chunks are announced on the node's 200 ms tick (0: at once)
notify_remote_ms = 1000.0  # pollen: ... and to devices of other sites once a second
notify_news_below = 2      # pollen: ... or on the notify_ms tick for a chunk fewer gateways of other sites are known to hold
site_fanout = 20           # pollen: at larger sites a non-gateway tells gateways, origins and ~20 sampled site peers (0: all)
window = "rate"            # per-source window: rate (from what a source delivers; the node's) | aimd (loss-driven, for comparison)
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_parses_and_params_override() {
        let s = Scenario::from_toml(EXAMPLE).expect("example parses");
        assert_eq!(s.devices(), 1000);
        let p = vec![
            ("strategy".to_owned(), "central".to_owned()),
            ("site.0.devices".to_owned(), "10".to_owned()),
            ("release_mib".to_owned(), "64".to_owned()),
        ];
        let s = Scenario::from_toml_with(EXAMPLE, &p).expect("overrides");
        assert_eq!(s.strategy, Strategy::Central);
        assert_eq!(s.devices(), 200);
        assert_eq!(s.release_mib, 64.0);
        assert!(Scenario::from_toml_with(EXAMPLE, &[("nope.x".into(), "1".into())]).is_err());
        assert!(Scenario::from_toml("strategy = \"pollen\"").is_err());
    }

    #[test]
    fn framing_is_a_share_below_one_and_left_out_when_zero() {
        let with =
            |o: &str| Scenario::from_toml_with(EXAMPLE, &[("wire_overhead".into(), o.into())]);
        assert_eq!(with("0.046").expect("a share").wire_overhead, 0.046);
        for bad in ["-0.1", "1", "1.5", "nan"] {
            let err = with(bad).expect_err(bad).to_string();
            assert!(err.contains("wire_overhead"), "{bad}: {err}");
        }
        // 0, the default, is not written into a resolved scenario, so
        // scenarios without framing resolve as they did before it.
        let plain = Scenario::from_toml(EXAMPLE).expect("example");
        assert_eq!(plain.wire_overhead, 0.0);
        let resolved = toml::to_string(&plain).expect("serialises");
        assert!(!resolved.contains("wire_overhead"));
        assert!(toml::to_string(&with("0.05").expect("a share"))
            .expect("serialises")
            .contains("wire_overhead = 0.05"));
    }
}
