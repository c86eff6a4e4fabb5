//! The node driver: one task that owns the libp2p swarm, the store and the
//! scheduler of the current release. It feeds network events and timers
//! into [`pollen_core::swarm::Swarm`] and executes the actions it returns;
//! everything it decides about chunks, the scheduler decided.

mod control;
mod fleet;
mod intake;
mod joined;
mod lifecycle;
mod local;
mod origin;
mod origin_index;
mod release;
mod serve;
mod trust;
mod uploads;
mod writer;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::OutboundFailure;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::{ConnectionId, SwarmEvent};
use libp2p::{identify, mdns, Multiaddr, PeerId};
use pollen_core::admission::AdmissionConfig;
use pollen_core::chunk::ChunkIndex;
use pollen_core::manifest::{verify, ManifestId, SecretKey, SignedManifest, VerifyContext};
use pollen_core::node::{Node, NodeConfig as LogicConfig, Output, Preset};
use pollen_core::rollout::VerifiedControl;
use pollen_core::swarm::{PeerInfo as SchedPeer, Receipt, SiteId, Swarm, SwarmConfig};
use pollen_core::trust::{SignedCredential, VerifiedPolicy};
use pollen_core::wire::{Announce, Hello, PeerRecord, Request, Response, Role};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::api::{ApiCommand, Shared};
use crate::net::exchange::KnownPeer;
use crate::net::partial::Partials;
use crate::net::piecewise::Landing;
use crate::net::pollen::{self, Channel, InboundId, Pending};
use crate::net::protocol::{Counter, Reply};
use crate::net::{
    build_swarm, load_or_create_identity, Advertise, Behaviour, BehaviourEvent, Limits, NetError,
    Transport,
};
use crate::store::{self, Store, StoreError};
use crate::update::{UpdateConfig, UpdateError};
use local::{recv_api, recv_progress};

pub use intake::{IntakeError, CHUNK_DIR, MANIFEST_FILE};

pub use release::{Peer, Release};

/// What the node is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Keep the newest release complete and serve it, until stopped.
    Run,
    /// Stop once the newest release is complete.
    Fetch,
    /// Serve the releases in the store; fetch nothing (the publisher's seeder).
    Seed,
}

/// A node's settings, validated by the CLI.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub channel: String,
    /// The fleet policy the node starts from (a signed policy file, or a
    /// trust file as version 0); a newer one in its store wins. `None` only
    /// in [`Mode::Seed`] without a policy (an open mesh, as before policies).
    pub policy: Option<VerifiedPolicy>,
    /// This node's credential (closed mesh): checked at start against the
    /// policy and its own peer id, sent in every hello.
    pub credential: Option<SignedCredential>,
    pub hardware: Option<String>,
    pub listen: Vec<Multiaddr>,
    /// The addresses peers are told to reach this node at (identify, and
    /// through it peer exchange), instead of its listen addresses: a name
    /// such as `/dns4/updates.example.com/tcp/4000`, resolved by whoever
    /// dials it. Empty: the listen addresses.
    pub external: Vec<Multiaddr>,
    pub peers: Vec<Multiaddr>,
    pub site: Option<String>,
    pub uplink_rate: Option<u64>,
    /// Fetch only from the static peers (the central baseline).
    pub no_lan: bool,
    /// Sites share with each other across their uplinks (each still gets
    /// one copy); off: across the uplink from origins only.
    pub cross_site: bool,
    /// Connections to devices of other sites kept at most (as a gateway).
    pub max_remote_peers: usize,
    /// `fetch`: keep serving the site after completing until its site peers
    /// are done too, or this long.
    pub linger: Duration,
    /// What this node accepts to upload ([`AdmissionConfig::origin`] on a seeder).
    pub admission: AdmissionConfig,
    pub mdns: bool,
    pub mode: Mode,
    pub seed: u64,
    /// Stop dialing discovered peers past this many connections.
    pub max_peers: usize,
    pub limits: Limits,
    /// TCP and QUIC, or (tests) the in-process memory transport.
    pub transport: Transport,
    /// The id rollout buckets are computed from (default: the peer id).
    pub device_id: Option<String>,
    /// Install releases through this lifecycle (`run` on a device); `None`
    /// only fetches (`fetch`) or serves (the seeder).
    pub lifecycle: Option<UpdateConfig>,
    /// A deferred or failed install is tried again after this long.
    pub retry_interval: Duration,
    /// The node re-publishes its status record at least this often.
    pub status_interval: Duration,
    /// The publisher's key, on a seeder: lets it halt a rollout by itself
    /// when a stage's failure rate passes the manifest's `max_failures`.
    pub publisher_key: Option<Arc<SecretKey>>,
}

/// Errors of the driver.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    #[error(transparent)]
    Net(#[from] NetError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("storing a chunk failed: {0}")]
    Write(#[source] writer::WriteError),
    #[error("starting a thread: {0}")]
    Thread(#[from] std::io::Error),
    #[error(transparent)]
    Update(#[from] UpdateError),
    #[error(transparent)]
    Policy(#[from] crate::policy_store::PolicyStoreError),
    #[error("this node's credential: {0}")]
    Credential(#[from] trust::Refusal),
    #[error("origin: {0}")]
    Origin(#[from] crate::origin::OriginError),
}

/// What the driver tells its owner while it runs (bounded; dropped if nobody reads).
#[derive(Clone, Debug)]
pub enum NodeEvent {
    Listening(Multiaddr),
    NewRelease {
        manifest: ManifestId,
        release: u64,
        chunks: u32,
        held: u32,
    },
    Progress {
        held: u32,
        total: u32,
    },
    Complete {
        manifest: ManifestId,
        report: Box<Report>,
    },
    Banned(PeerId),
    /// A manifest from this peer failed verification (not stored).
    ManifestRefused(PeerId),
    /// This peer was refused by the closed mesh (no, a foreign, an expired
    /// or a revoked credential) and disconnected.
    PeerRefused(PeerId),
}

/// Counters for the final report and the logs.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub peer_id: String,
    pub manifest_id: Option<String>,
    pub release: Option<u64>,
    pub chunks_total: u32,
    /// Chunks already in the store when the release was taken up.
    pub chunks_held_at_start: u32,
    /// Verified chunks received and stored during this run.
    pub chunks_fetched: u64,
    pub chunks_rejected: u64,
    pub duplicate_chunks: u64,
    pub bytes_from_site: u64,
    pub bytes_from_remote: u64,
    /// Verified bytes received, per peer id.
    pub bytes_from: BTreeMap<String, u64>,
    pub bytes_served: u64,
    pub chunks_served: u64,
    /// Of those, chunks served while they were still arriving here (in
    /// pieces, each passed on as it landed).
    pub chunks_passed_on: u64,
    /// Chunks that arrived in pieces (told of, and servable, from their
    /// first piece).
    pub chunks_in_pieces: u64,
    pub banned: Vec<String>,
    /// Manifests from peers that failed verification (rollback, expiry, hardware, signatures…).
    pub manifests_refused: u64,
    /// Peers refused by the closed mesh (no, a foreign or a revoked credential).
    pub peers_refused: u64,
    /// Connections established (both directions).
    pub connections_opened: u64,
    /// Requests of ours sent on a peer's session; the rest went on a
    /// stream each (the first few to a peer, and all to a peer without
    /// sessions).
    pub requests_on_sessions: u64,
    pub complete: bool,
    /// Seconds from start until the release was complete in the store.
    pub seconds_to_complete: Option<f64>,
}

#[derive(Debug, Default)]
struct PeerInfo {
    site: Option<SiteId>,
    role: Role,
    hello: bool,
    /// Named by `--peer` (the only ones fetched from with `--no-lan`).
    is_static: bool,
    listen: Vec<Multiaddr>,
    /// A seeder turned it away (full): disconnected once the answer is out.
    turn_away: bool,
    /// This node sent it its hello (a dialer at once; a listener once the
    /// dialer's hello admitted it, so an unadmitted peer hears nothing).
    hello_sent: bool,
    /// When its first connection was established (the hello deadline
    /// counts from here).
    connected_at: Option<Duration>,
    /// The role this node last told it (in a hello either way, or a role
    /// notice). A role that changes while hellos cross is told again once
    /// the peer is up: until then the node logic does not know the peer,
    /// so its role notices skip it, and a stale role would make two site
    /// members each fetch the same chunks across the uplink.
    told_role: Option<Role>,
}

/// When a gateway asks for other sites' gateways: every
/// [`GATEWAY_SEARCH_MIN`] while it fetches a release, otherwise after a
/// wait that doubles up to [`GATEWAY_SEARCH_MAX`] (each answer is a list of
/// peer records across the uplink; an idle fleet should not pay for it
/// every few seconds).
#[derive(Debug)]
struct GatewaySearch {
    next: Instant,
    wait: Duration,
}

/// The first wait between two searches for gateways.
const GATEWAY_SEARCH_MIN: Duration = Duration::from_secs(3);
/// The longest wait between two searches for gateways.
const GATEWAY_SEARCH_MAX: Duration = Duration::from_secs(300);

impl Default for GatewaySearch {
    fn default() -> Self {
        Self {
            next: Instant::now(),
            wait: GATEWAY_SEARCH_MIN,
        }
    }
}

impl GatewaySearch {
    /// Whether a search is due at `now`; if so, the next one waits longer,
    /// unless the node is `fetching` a release (then other sites' gateways
    /// matter now, and it keeps looking every [`GATEWAY_SEARCH_MIN`]).
    fn due(&mut self, now: Instant, fetching: bool) -> bool {
        if fetching {
            self.wait = GATEWAY_SEARCH_MIN;
        }
        if now < self.next {
            return false;
        }
        self.next = now + self.wait;
        self.wait = (self.wait * 2).min(GATEWAY_SEARCH_MAX);
        true
    }
}

/// Housekeeping (held uploads, fleet status, progress events) runs this often.
const TICK: Duration = Duration::from_millis(200);
/// A role change is told to every greeted peer again this long after it.
/// Hellos and role notices travel on different streams (or a session and
/// a stream), so a peer can take a hello that carried the old role after
/// the notice of the new one, and keep the old: a site member then left
/// out of a peer's uplink split fetched the same chunks across the uplink
/// as the peer did (seen in the flash-crowd namespace test's logs). Once
/// things have settled, the role said again is the last word.
const ROLE_SETTLE: Duration = Duration::from_secs(2);
/// A chunk that could not be written (disk full) is asked for again after this.
const WRITE_RETRY: Duration = Duration::from_secs(5);
/// A seeder that turned this node away is not dialed again sooner than this.
const TURNED_AWAY: Duration = Duration::from_secs(60);

/// The node: build with [`Driver::new`], then [`Driver::run`].
///
/// Generic over its [`Store`] (RocksDB on a seeder, the image store on a
/// device, [`crate::store::MemStore`] in tests): the binary picks it.
pub struct Driver<S> {
    swarm: libp2p::Swarm<Behaviour>,
    store: Arc<S>,
    config: NodeConfig,
    site: Option<SiteId>,
    release: Option<Release>,
    /// What the node decides (`pollen_core::node`): the scheduler of the
    /// current release, notices, roles.
    node: Node<Peer>,
    peers: HashMap<PeerId, PeerInfo>,
    /// Dials of static addresses under way (one per address at a time).
    static_dials: HashMap<ConnectionId, Multiaddr>,
    /// The peer each static address last reached (an address may name no
    /// peer id, as `/dns4/updates.example.com/tcp/4000` does).
    static_peers: HashMap<Multiaddr, PeerId>,
    /// Static addresses whose peer turned this node away, until when.
    turned_away: HashMap<Multiaddr, Instant>,
    uploads: uploads::Uploads,
    /// Chunk requests in flight: their received-byte counters.
    chunk_progress: HashMap<(PeerId, u32), Counter>,
    /// Chunks arriving in pieces, served from while they arrive
    /// (`net::partial`), and the reports of their first pieces.
    partials: Partials,
    first_pieces: futures::channel::mpsc::Receiver<(ManifestId, u32)>,
    /// `fetch`: when to stop lingering for the site.
    linger_until: Option<Instant>,
    start: Instant,
    heard_hello: bool,
    report: Report,
    events: Option<mpsc::Sender<NodeEvent>>,
    last_progress: u32,
    writer: writer::Writer,
    lifecycle: Option<lifecycle::Lifecycle>,
    fleet: fleet::Fleet,
    /// The newest verified rollout control of the current release.
    control: Option<VerifiedControl>,
    /// Until a peer answered `GetControl` for the current release (or this
    /// deadline passed), the release is not installed: a halt must not lose
    /// the race against a fast download.
    control_asked: Option<Instant>,
    device_id: String,
    last_status: Option<Instant>,
    /// When stale status records were last looked for.
    last_expiry: Option<Instant>,
    gateway_search: GatewaySearch,
    /// When the current role is told to every greeted peer again
    /// ([`ROLE_SETTLE`]).
    role_again: Option<Duration>,
    api: Option<(Shared, mpsc::Receiver<ApiCommand>)>,
    /// A release `pollen-seeder publish` staged for this seeder, being imported.
    intake: Option<intake::Intake>,
    /// Fleet policy, own credential, admitted peers.
    trust: trust::Trust,
    /// Beaten every turn of the loop (the systemd watchdog's evidence).
    heartbeat: Option<crate::notify::Heartbeat>,
    /// Why the last chunk could not be written (disk full, I/O), until
    /// when the download waits for it.
    write_trouble: Option<(String, Instant)>,
    /// Releases the store refused (over its budget): not fetched again
    /// until the node restarts.
    refused: std::collections::HashSet<ManifestId>,
    /// A release the disk had no room for: taken up again after
    /// [`WRITE_RETRY`].
    waiting_for_room: Option<pollen_core::manifest::VerifiedManifest>,
    /// The HTTPS origin (`--origin`), a synthetic peer of the node logic.
    origins: Option<origin::Origins>,
}

impl<S> std::fmt::Debug for Driver<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("peer", self.swarm.local_peer_id())
            .finish()
    }
}

impl<S: Store + 'static> Driver<S> {
    /// Opens the network on `store` (any [`Store`]: RocksDB on a node, in
    /// memory in tests) and takes up the newest stored release of the channel.
    pub fn new(
        store: Arc<S>,
        config: NodeConfig,
        events: Option<mpsc::Sender<NodeEvent>>,
    ) -> Result<Self, DriverError> {
        let key = load_or_create_identity(store.as_ref())?;
        let device_key = local::device_key(&key)?;
        let now_unix = crate::unix_now();
        let policy = crate::policy_store::held(store.as_ref(), config.policy.clone(), now_unix)?;
        let trust = trust::Trust::new(policy, config.credential.clone());
        trust.check_own(&key.public().to_peer_id(), now_unix)?;
        let use_mdns = config.mdns && !config.no_lan;
        let advertise = match config.external.is_empty() {
            true => Advertise::Listen,
            false => Advertise::ExternalOnly,
        };
        let mut swarm = build_swarm(key, use_mdns, &config.limits, config.transport, advertise)?;
        for addr in &config.external {
            tracing::info!(%addr, "announcing external address");
            swarm.add_external_address(addr.clone());
        }
        for addr in &config.listen {
            swarm
                .listen_on(addr.clone())
                .map_err(|source| NetError::Listen {
                    addr: addr.clone(),
                    source,
                })?;
        }
        let site = config.site.as_deref().map(SiteId::from_name);
        swarm
            .behaviour_mut()
            .pollen
            .serve_with(config.admission.clone(), site);
        let peer_id = *swarm.local_peer_id();
        let writer = writer::Writer::spawn(store.clone())?;
        let (partials, first_pieces) = Partials::new();
        let preset = match config.mode {
            Mode::Seed => Preset::Seeder,
            _ if config.no_lan => Preset::Central,
            _ => Preset::Device {
                cross_site: config.cross_site,
            },
        };
        let node_config = LogicConfig {
            swarm: SwarmConfig {
                seed: config.seed,
                uplink_rate: config.uplink_rate,
                ..SwarmConfig::default()
            },
            watch_site: config.mode == Mode::Fetch,
            ..LogicConfig::new(preset, site)
        };
        let node = Node::new(node_config, Peer(peer_id), Duration::ZERO);
        let lifecycle = match &config.lifecycle {
            Some(c) => Some(lifecycle::Lifecycle::spawn(
                store.clone(),
                c.clone(),
                config.retry_interval,
            )?),
            None => None,
        };
        let mut driver = Self {
            swarm,
            store,
            site,
            release: None,
            node,
            peers: HashMap::new(),
            static_dials: HashMap::new(),
            static_peers: HashMap::new(),
            turned_away: HashMap::new(),
            uploads: uploads::Uploads::default(),
            chunk_progress: HashMap::new(),
            partials,
            first_pieces,
            linger_until: None,
            start: Instant::now(),
            heard_hello: false,
            report: Report {
                peer_id: peer_id.to_string(),
                ..Report::default()
            },
            events,
            last_progress: u32::MAX,
            writer,
            lifecycle,
            fleet: fleet::Fleet::new(device_key),
            control: None,
            control_asked: None,
            device_id: config
                .device_id
                .clone()
                .unwrap_or_else(|| peer_id.to_string()),
            last_status: None,
            last_expiry: None,
            gateway_search: GatewaySearch::default(),
            role_again: None,
            api: None,
            intake: None,
            heartbeat: None,
            write_trouble: None,
            refused: Default::default(),
            waiting_for_room: None,
            origins: None,
            trust,
            config,
        };
        if driver.config.mode == Mode::Seed {
            driver.load_fleet()?;
        }
        driver.take_up_stored_release()?;
        if driver.config.mode == Mode::Seed && driver.release.is_none() {
            // A new seeder: it serves from the first `publish` that reaches it.
            tracing::info!(channel = %driver.config.channel, "no release to serve yet; waiting for publish");
        }
        driver.dial_static();
        Ok(driver)
    }

    pub fn peer_id(&self) -> PeerId {
        *self.swarm.local_peer_id()
    }

    /// Serves status and metrics through the local endpoint and takes its commands.
    pub fn with_api(mut self, shared: Shared, commands: mpsc::Receiver<ApiCommand>) -> Self {
        self.api = Some((shared, commands));
        self
    }

    /// Beats `heartbeat` on every turn of [`Driver::run`]'s loop.
    pub fn with_heartbeat(mut self, heartbeat: crate::notify::Heartbeat) -> Self {
        self.heartbeat = Some(heartbeat);
        self
    }

    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    fn emit(&self, e: NodeEvent) {
        if let Some(tx) = &self.events {
            let _ = tx.try_send(e);
        }
    }

    /// The current release's scheduler.
    fn sched(&self) -> Option<&Swarm<Peer>> {
        self.release.as_ref().and(self.node.swarm())
    }

    /// What the scheduler needs to know of a peer.
    fn sched_peer(info: &PeerInfo) -> SchedPeer {
        SchedPeer {
            site: info.site,
            origin: info.role.origin,
            uplink: info.role.uplink,
            gateway: info.role.gateway,
        }
    }

    fn verify_context(&self) -> Result<VerifyContext, StoreError> {
        let channel = &self.config.channel;
        let stored = store::floor(self.store.as_ref(), channel)?;
        // A recalled install lowers the floor to its channel's reset.
        let floor = match (
            self.trust.policy(),
            store::installed(self.store.as_ref(), channel)?,
        ) {
            (Some(p), Some(id)) => p.policy().floor(channel, Some((id, stored))),
            _ => stored,
        };
        Ok(VerifyContext {
            now: crate::unix_now(),
            floor,
            hardware: self.config.hardware.clone(),
            channel: Some(self.config.channel.clone()),
        })
    }

    /// The newest manifest of the channel already in the store (re-verified
    /// unless seeding), so a restarted node resumes where it stopped.
    fn take_up_stored_release(&mut self) -> Result<(), DriverError> {
        let mut candidates: Vec<(u64, Vec<u8>)> = Vec::new();
        for id in self.store.manifest_ids()? {
            let Some(bytes) = self.store.get_manifest(&id)? else {
                continue;
            };
            let Ok(signed) = SignedManifest::decode(&bytes) else {
                continue;
            };
            let m = signed.manifest();
            let recalled = self
                .trust
                .policy()
                .is_some_and(|p| p.policy().is_recalled(&signed.id()));
            if m.channel == self.config.channel && !recalled {
                candidates.push((m.release, bytes));
            }
        }
        // Newest first; one the store refuses (over budget) gives way to the next.
        candidates.sort_by_key(|c| std::cmp::Reverse(c.0));
        for (_, bytes) in candidates {
            self.take_up_stored(&bytes)?;
            if self.release.is_some() {
                break;
            }
        }
        Ok(())
    }

    fn take_up_stored(&mut self, bytes: &[u8]) -> Result<(), DriverError> {
        let role = self
            .trust
            .release_role()
            .filter(|_| self.config.mode != Mode::Seed);
        let verified = match role {
            Some(policy) => match verify(bytes, policy, &self.verify_context()?) {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(error = %e, "stored manifest no longer verifies; waiting for a newer one");
                    return Ok(());
                }
            },
            // The seeder serves what its publisher stored; it checked it on publish.
            None => {
                let signed = SignedManifest::decode(bytes).map_err(StoreError::ManifestBytes)?;
                pollen_core::manifest::VerifiedManifest::assume_verified(signed)
            }
        };
        self.switch_release(verified)?;
        Ok(())
    }

    fn switch_release(
        &mut self,
        manifest: pollen_core::manifest::VerifiedManifest,
    ) -> Result<(), StoreError> {
        match self.store.take_up(&manifest) {
            Ok(()) => {}
            Err(e @ StoreError::NoSpace { .. }) => {
                // Taken up again when the disk has room (`retry_take_up`).
                tracing::error!(manifest = %manifest.id(), error = %e, "no room for the release; waiting");
                if let Some(l) = &mut self.lifecycle {
                    l.paused(&manifest, format!("paused: {e}"));
                }
                self.write_trouble = Some((e.to_string(), Instant::now() + WRITE_RETRY));
                self.waiting_for_room = Some(manifest);
                return Ok(());
            }
            Err(e @ StoreError::OverBudget { .. }) => {
                tracing::error!(manifest = %manifest.id(), error = %e, "release refused");
                self.refused.insert(manifest.id());
                if let Some(l) = &mut self.lifecycle {
                    l.refuse(&manifest, e.to_string());
                }
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        let (release, have) = Release::new(self.store.as_ref(), manifest)?;
        let now = self.now();
        self.node.take_release(now, release.chunks.clone(), have);
        self.origin_has(release.chunks.len());
        let id = release.id();
        tracing::info!(manifest = %id, release = release.release(), chunks = release.chunks.len(), held = release.held_at_start, "taking up release");
        self.emit(NodeEvent::NewRelease {
            manifest: id,
            release: release.release(),
            chunks: release.chunks.len() as u32,
            held: release.held_at_start,
        });
        self.report.manifest_id = Some(id.to_hex());
        self.report.release = Some(release.release());
        self.report.chunks_total = release.chunks.len() as u32;
        self.report.chunks_held_at_start = release.held_at_start;
        let operator = self
            .trust
            .operator_role()
            .filter(|_| self.config.mode != Mode::Seed);
        self.control = match operator {
            Some(policy) => crate::controls::load(self.store.as_ref(), &id, policy)?,
            None => crate::controls::load_bytes(self.store.as_ref(), &id)?
                .and_then(|b| pollen_core::rollout::SignedControl::decode(&b).ok())
                .map(VerifiedControl::assume_verified),
        };
        self.swarm
            .behaviour_mut()
            .pollen
            .new_release(release.chunks.len() as u32);
        self.release = Some(release);
        self.control_asked = Some(Instant::now());
        self.chunk_progress.clear();
        self.partials.clear();
        // Old requests are for the old release; their answers will be ignored.
        let peers: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, i)| i.hello)
            .map(|(p, _)| *p)
            .collect();
        for p in peers {
            self.send(p, Request::GetHave(id), Pending::Have(id));
            self.send(p, Request::GetControl(id), Pending::Control(id));
            self.send(
                p,
                Request::Announce {
                    channel: self.config.channel.clone(),
                    announce: self.announce_of_current().expect("set above"),
                },
                Pending::Notice,
            );
        }
        Ok(())
    }

    /// Takes up a release the disk had no room for, once it is due again.
    fn retry_take_up(&mut self) {
        let due = self
            .write_trouble
            .as_ref()
            .is_none_or(|(_, until)| Instant::now() >= *until);
        if !due {
            return;
        }
        if let Some(m) = self.waiting_for_room.take() {
            let newer = self
                .release
                .as_ref()
                .is_none_or(|r| m.manifest().release > r.release());
            if newer {
                if let Err(e) = self.switch_release(m) {
                    tracing::error!(error = %e, "taking up the release failed");
                }
                if self.waiting_for_room.is_none() {
                    self.write_trouble = None;
                }
            }
        }
    }

    fn announce_of_current(&self) -> Option<Announce> {
        self.release.as_ref().map(|r| Announce {
            manifest: r.id(),
            release: r.release(),
        })
    }

    fn hello(&self) -> Hello {
        let mut hello = Hello {
            channel: self.config.channel.clone(),
            site: self.site,
            newest: self.announce_of_current(),
            role: self.node.role(),
            policy: None,
            credential: None,
        };
        self.trust.fill_hello(&mut hello);
        hello
    }

    /// A peer's site: its credential's in a closed mesh (a peer cannot
    /// claim another site's place), otherwise what its hello says.
    fn site_of(&self, peer: &PeerId, claimed: Option<SiteId>) -> Option<SiteId> {
        match self.trust.credential(peer) {
            Some(c) => c.site.as_deref().map(SiteId::from_name),
            None => claimed,
        }
    }

    /// Sends this node's hello to `peer` (once per peer while connected).
    fn send_hello(&mut self, peer: PeerId) {
        let hello = self.hello();
        let info = self.peers.entry(peer).or_default();
        info.hello_sent = true;
        info.told_role = Some(hello.role);
        self.send(peer, Request::Hello(hello), Pending::Hello);
    }

    fn send(&mut self, peer: PeerId, req: Request, what: Pending) {
        // Notices, acknowledgements and roles to the origin go nowhere.
        if self.is_origin(&peer) {
            return;
        }
        let now = self.now();
        if self
            .swarm
            .behaviour_mut()
            .pollen
            .send(now, &peer, req, what)
        {
            self.report.requests_on_sessions += 1;
        }
    }

    fn respond(&mut self, channel: Channel, response: impl Into<Reply>) {
        self.swarm.behaviour_mut().pollen.respond(channel, response);
    }

    /// This node's role changed (its peers hear of it through
    /// [`Output::Role`]): it serves other sites only as a gateway (or as a
    /// seeder, or without a site), and a new gateway looks for others.
    fn role_changed(&mut self, role: Role) {
        let (site_peers, site_uplinks) = self.node.site_view();
        tracing::info!(
            uplink = role.uplink,
            gateway = role.gateway,
            site_peers,
            site_uplinks,
            "role changed"
        );
        self.role_again = Some(self.now() + ROLE_SETTLE);
        self.swarm
            .behaviour_mut()
            .pollen
            .set_serves_away(role.gateway || role.origin || self.site.is_none());
        if role.gateway {
            // A new gateway looks at once, then less and less often.
            self.gateway_search = GatewaySearch::default();
            self.find_gateways();
        }
    }

    fn hello_peer_ids(&self) -> Vec<PeerId> {
        self.peers
            .iter()
            .filter(|(_, i)| i.hello)
            .map(|(p, _)| *p)
            .collect()
    }

    /// Whether a peer of `site` and `role` is a device of another site.
    fn other_site(&self, site: Option<SiteId>, role: Role) -> bool {
        self.node.elsewhere(&SchedPeer {
            site,
            origin: role.origin,
            ..SchedPeer::default()
        })
    }

    /// Connections to devices of other sites.
    fn remote_count(&self) -> usize {
        self.node.remote_count()
    }

    /// A gateway with room for more connections to other sites asks its
    /// origins and site peers for peers (their answers name gateways),
    /// while the node logic seeks other sites.
    fn find_gateways(&mut self) {
        if !self.config.cross_site
            || self.config.no_lan
            || !self.node.seeks_other_sites(self.now())
            || self.remote_count() >= self.config.max_remote_peers
            || !self.gateway_search.due(Instant::now(), self.fetching())
        {
            return;
        }
        let ask: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, i)| i.hello && (i.role.origin || !self.other_site(i.site, i.role)))
            .map(|(p, _)| *p)
            .collect();
        for p in ask {
            self.send(p, Request::GetPeers, Pending::Peers);
        }
    }

    /// A peer greeted this node: the node logic learns who it is.
    fn greeted(&mut self, peer: PeerId) {
        let now = self.now();
        if let Some(info) = self.peers.get(&peer).filter(|i| i.hello) {
            let sched_peer = Self::sched_peer(info);
            let told = info.told_role;
            self.node
                .handle_peer_up(now, Peer(peer), sched_peer, info.is_static);
            let role = self.node.role();
            if told != Some(role) {
                self.tell_role(peer, role);
            }
        }
    }

    /// Sends `peer` this node's role (see [`PeerInfo::told_role`]).
    fn tell_role(&mut self, peer: PeerId, role: Role) {
        if let Some(info) = self.peers.get_mut(&peer) {
            info.told_role = Some(role);
        }
        self.send(peer, Request::Role(role), Pending::Notice);
    }

    fn dial_static(&mut self) {
        let now = Instant::now();
        self.turned_away.retain(|_, until| *until > now);
        for addr in self.config.peers.clone() {
            let peer = match addr.iter().last() {
                Some(Protocol::P2p(p)) => Some(p),
                _ => self.static_peers.get(&addr).copied(),
            };
            let connected = peer.is_some_and(|p| self.swarm.is_connected(&p));
            // A dial still under way is not doubled (each would open a
            // connection of its own, with its own handshakes and pings).
            let dialing = self.static_dials.values().any(|a| *a == addr);
            if connected || dialing || self.turned_away.contains_key(&addr) {
                continue;
            }
            let opts = DialOpts::unknown_peer_id().address(addr.clone()).build();
            let id = opts.connection_id();
            match self.swarm.dial(opts) {
                Ok(()) => {
                    self.static_dials.insert(id, addr);
                }
                Err(e) => tracing::debug!(%addr, error = %e, "dial failed"),
            }
        }
        if self.node.role().gateway {
            self.find_gateways();
        }
    }

    /// Dials a peer learned by mDNS or peer exchange. Devices of other
    /// sites are dialed only with cross-site sharing, by gateways (or by a
    /// node without an uplink connection of its own), only gateways, and
    /// only while the node logic seeks other sites (an origin said it is
    /// the bottleneck, or none is in reach).
    fn dial_discovered(
        &mut self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        known: Option<(Option<SiteId>, Role)>,
    ) {
        if self.config.no_lan || peer == self.peer_id() || self.swarm.is_connected(&peer) {
            return;
        }
        if let Some((site, role)) = known {
            if self.other_site(site, role) {
                let wanted = self.config.cross_site
                    && role.gateway
                    && (self.node.role().gateway || !self.node.role().uplink)
                    && self.node.seeks_other_sites(self.now())
                    && self.remote_count() < self.config.max_remote_peers;
                if !wanted {
                    return;
                }
            }
        }
        if self.swarm.connected_peers().count() >= self.config.max_peers {
            return;
        }
        let opts = DialOpts::peer_id(peer).addresses(addrs).build();
        if let Err(e) = self.swarm.dial(opts) {
            tracing::debug!(%peer, error = %e, "dial of discovered peer failed");
        }
    }

    /// Runs until `shutdown` resolves, or (in [`Mode::Fetch`]) until the
    /// newest release is complete.
    pub async fn run(
        mut self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<Report, DriverError> {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(TICK);
        let mut redial = tokio::time::interval(Duration::from_secs(3));
        loop {
            let deadline = self
                .node
                .poll_timeout()
                .map(|d| self.start + d)
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event)?,
                _ = tokio::time::sleep_until(deadline.into()) => self.on_timer(),
                _ = tick.tick() => self.on_tick(),
                _ = redial.tick() => self.dial_static(),
                Some(written) = self.writer.done.recv() => self.on_written(written)?,
                Some((manifest, index)) = self.first_pieces.next() => {
                    self.on_first_piece(manifest, index);
                }
                Some(p) = recv_progress(&mut self.lifecycle) => {
                    if let Some(l) = &mut self.lifecycle { l.on_progress(p); }
                    self.publish_status(false);
                }
                Some(cmd) = recv_api(&mut self.api) => self.on_api(cmd)?,
                Some(done) = origin::recv_origin(&mut self.origins) => self.on_origin(done)?,
                done = intake::intake_done(&mut self.intake) => self.on_intake_done(done)?,
                _ = &mut shutdown => {
                    self.finish_writes().await?;
                    break;
                }
            }
            self.drain_actions()?;
            if let Some(h) = &self.heartbeat {
                h.beat();
            }
            if self.fetch_done() {
                // Leaving: what it gained since its last notice goes out now.
                self.node.flush_notices();
                self.drain_actions()?;
                self.on_tick();
                break;
            }
        }
        Ok(self.finish_report())
    }

    /// Stopping: the chunks the writer holds are written and counted (a
    /// chunk received is not thrown away because the node was told to stop).
    async fn finish_writes(&mut self) -> Result<(), DriverError> {
        while self.writer.done.in_flight() > 0 {
            match self.writer.done.recv().await {
                Some(w) => self.on_written(w)?,
                None => break,
            }
        }
        tracing::info!("stopping: store writes finished");
        Ok(())
    }

    /// `fetch`: the release is complete and the site no longer needs this
    /// node (every site peer it knows is complete too), or `--linger` ran out.
    fn fetch_done(&mut self) -> bool {
        if self.config.mode != Mode::Fetch || !self.heard_hello {
            return false;
        }
        if !self.sched().is_some_and(|r| r.is_complete()) {
            return false;
        }
        let until = *self
            .linger_until
            .get_or_insert_with(|| Instant::now() + self.config.linger);
        let site_done = self.sched().is_some_and(|r| r.site_complete());
        if !site_done && Instant::now() < until {
            return false;
        }
        tracing::info!(site_done, "leaving after completing");
        true
    }

    /// The node logic's deadline: notices due go out, and what each late
    /// request has received so far decides whether it is still moving.
    fn on_timer(&mut self) {
        let now = self.now();
        let progress = &self.chunk_progress;
        self.node.handle_timeout(now, |peer, index| {
            progress
                .get(&(peer.0, index))
                .map_or(0, |c| c.load(std::sync::atomic::Ordering::Relaxed))
        });
    }

    fn finish_report(&mut self) -> Report {
        if let Some(r) = self.release.as_ref().and(self.node.swarm()) {
            let s = r.stats();
            self.report.chunks_fetched = s.chunks_verified;
            self.report.chunks_rejected = s.chunks_rejected;
            self.report.duplicate_chunks = s.duplicates;
            self.report.bytes_from_site = s.bytes_from_site;
            self.report.bytes_from_remote = s.bytes_from_remote;
            self.report.complete = r.is_complete();
        }
        self.report.clone()
    }

    fn on_tick(&mut self) {
        self.retry_take_up();
        self.poll_index();
        self.tick_fleet();
        let now = self.now();
        self.expire_unadmitted(now);
        self.swarm.behaviour_mut().pollen.expire_uploads(now);
        self.swarm.behaviour_mut().pollen.expire_requests(now);
        if self.role_again.is_some_and(|at| now >= at) {
            self.role_again = None;
            let role = self.node.role();
            for peer in self.hello_peer_ids() {
                self.tell_role(peer, role);
            }
        }
        self.start_held();
        if let Some(r) = &self.release {
            let held = self.node.have().map_or(0, |h| h.count());
            if held != self.last_progress {
                self.last_progress = held;
                self.emit(NodeEvent::Progress {
                    held,
                    total: r.chunks.len() as u32,
                });
            }
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) -> Result<(), DriverError> {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                let full = address.with(Protocol::P2p(self.peer_id()));
                tracing::info!(addr = %full, "listening");
                self.emit(NodeEvent::Listening(full));
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                self.report.connections_opened += 1;
                let now = self.now();
                let info = self.peers.entry(peer_id).or_default();
                info.connected_at.get_or_insert(now);
                if let Some(addr) = self.static_dials.remove(&connection_id) {
                    info.is_static = true;
                    info.listen.push(addr.clone());
                    self.static_peers.insert(addr, peer_id);
                }
                // The dialer speaks first; a listener answers an admitted hello.
                if endpoint.is_dialer() && !info.hello_sent {
                    let addr = endpoint.get_remote_address();
                    tracing::debug!(peer = %peer_id, %addr, "connected");
                    self.send_hello(peer_id);
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                tracing::debug!(peer = %peer_id, "disconnected");
                if let Some(info) = self.peers.remove(&peer_id) {
                    if info.hello && self.other_site(info.site, info.role) {
                        // A gateway of another site is gone: look for others soon.
                        self.gateway_search = GatewaySearch::default();
                    }
                }
                self.trust.forget(&peer_id);
                let now = self.now();
                self.swarm.behaviour_mut().pollen.forget_peer(now, &peer_id);
                self.chunk_progress.retain(|(p, _), _| *p != peer_id);
                self.node.handle_peer_down(now, Peer(peer_id));
            }
            SwarmEvent::OutgoingConnectionError { connection_id, .. } => {
                self.static_dials.remove(&connection_id);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                let entry = self.peers.entry(peer_id).or_default();
                entry.listen = info
                    .listen_addrs
                    .into_iter()
                    .take(pollen_core::wire::MAX_ADDRS)
                    .collect();
            }
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(list))) => {
                let mut by_peer: BTreeMap<PeerId, Vec<Multiaddr>> = BTreeMap::new();
                for (peer, addr) in list {
                    by_peer.entry(peer).or_default().push(addr);
                }
                for (peer, addrs) in by_peer {
                    self.dial_discovered(peer, addrs, None);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Pollen(event)) => self.on_pollen(event)?,
            _ => {}
        }
        Ok(())
    }

    fn on_pollen(&mut self, event: pollen::Event) -> Result<(), DriverError> {
        match event {
            pollen::Event::Request {
                peer,
                id,
                request,
                channel,
            } => {
                let admitted = match &request {
                    Request::Hello(h) => self.admit_hello(peer, h),
                    _ if self.trust.is_admitted(&peer) => true,
                    _ => {
                        tracing::debug!(%peer, "request before a credential: refused");
                        self.refuse(peer);
                        false
                    }
                };
                // Refused: the channel is dropped unanswered.
                if admitted {
                    self.on_admitted_request(peer, id, request, channel)?;
                }
            }
            pollen::Event::Response {
                peer,
                pending,
                response,
            } => {
                let admitted = match &response {
                    Response::Hello(h) if matches!(pending, Pending::Hello) => {
                        self.admit_hello(peer, h)
                    }
                    _ => self.trust.is_admitted(&peer),
                };
                if admitted {
                    self.on_response(peer, pending, response)?;
                }
            }
            pollen::Event::Failed {
                peer,
                pending,
                error,
            } => self.on_failure(peer, pending, error),
            pollen::Event::ResponseEnded { peer, id, complete } => {
                self.response_ended(peer, id, complete)
            }
            pollen::Event::Cancelled { peer, id } => {
                let now = self.now();
                let dropped = self.swarm.behaviour_mut().pollen.cancelled(now, id);
                tracing::debug!(%peer, dropped, "request taken back");
            }
        }
        Ok(())
    }

    /// A request from a peer that passed the credential exchange.
    fn on_admitted_request(
        &mut self,
        peer: PeerId,
        id: InboundId,
        request: Request,
        channel: Channel,
    ) -> Result<(), DriverError> {
        match request {
            Request::GetChunk { manifest, index } => {
                self.on_get_chunk(peer, id, channel, manifest, index)
            }
            other => {
                let response = self.on_request(peer, other)?;
                self.respond(channel, response);
            }
        }
        Ok(())
    }

    /// A response was written out (`complete`), or its stream failed.
    fn response_ended(&mut self, peer: PeerId, id: InboundId, complete: bool) {
        let now = self.now();
        let pollen = &mut self.swarm.behaviour_mut().pollen;
        pollen.response_ended(now, id, complete);
        self.start_held();
        if self.peers.get(&peer).is_some_and(|i| i.turn_away) {
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }

    fn on_response(
        &mut self,
        from: PeerId,
        what: Pending,
        response: Response,
    ) -> Result<(), DriverError> {
        let now = self.now();
        match (what, response) {
            (Pending::Hello, Response::Busy { retry_ms }) => {
                // A full seeder turned us away: the site's gateways reach it.
                tracing::info!(peer = %from, retry_ms, "turned away by a full peer");
                let until =
                    Instant::now() + TURNED_AWAY.max(Duration::from_millis(u64::from(retry_ms)));
                if let Some(info) = self.peers.get(&from) {
                    for addr in info.listen.iter().filter(|_| info.is_static) {
                        self.turned_away.insert(addr.clone(), until);
                    }
                }
                let _ = self.swarm.disconnect_peer_id(from);
            }
            (Pending::Hello, Response::Hello(h)) => {
                self.swarm.behaviour_mut().ip_limit.admit(from);
                self.heard_hello = true;
                let site = self.site_of(&from, h.site);
                let info = self.peers.entry(from).or_default();
                info.hello = true;
                info.site = site;
                info.role = h.role;
                self.greeted(from);
                if let Some(id) = self.release.as_ref().map(|r| r.id()) {
                    self.send(from, Request::GetHave(id), Pending::Have(id));
                    if self.control_asked.is_some() {
                        self.send(from, Request::GetControl(id), Pending::Control(id));
                    }
                }
                if h.channel == self.config.channel {
                    self.consider(from, h.newest);
                }
                if !self.config.no_lan {
                    self.send(from, Request::GetPeers, Pending::Peers);
                }
                self.greet_fleet(from);
            }
            (Pending::Manifest, Response::Manifest(bytes)) => self.on_manifest(from, &bytes)?,
            (Pending::Have(id), Response::Have(bits)) => {
                if let Some(r) = &self.release {
                    if r.id() == id {
                        match bits.checked(r.chunks.len() as u32) {
                            Ok(bits) => self.node.handle_have_all(now, Peer(from), bits),
                            Err(e) => tracing::debug!(peer = %from, error = %e, "bad has-set"),
                        }
                    }
                }
            }
            (
                Pending::Chunk {
                    manifest, index, ..
                },
                Response::Chunk(data),
            ) => {
                self.chunk_progress.remove(&(from, index));
                self.on_chunk(from, manifest, index, data)?
            }
            (
                Pending::Chunk {
                    manifest, index, ..
                },
                other,
            ) => {
                self.chunk_progress.remove(&(from, index));
                if self.release.as_ref().is_some_and(|r| r.id() == manifest) {
                    let (p, n) = (Peer(from), &mut self.node);
                    let ms = |m: u32| Duration::from_millis(u64::from(m));
                    match other {
                        Response::NotFound => n.handle_request_failed(now, p, index),
                        Response::Declined { retry_ms } => {
                            n.handle_request_declined(now, p, index, ms(retry_ms))
                        }
                        Response::Busy { retry_ms } => {
                            n.handle_request_busy(now, p, index, Some(ms(retry_ms)))
                        }
                        _ => n.handle_request_busy(now, p, index, None),
                    }
                }
            }
            (Pending::Peers, Response::Peers(list)) => self.on_peers(list),
            (Pending::Control(id), response) => {
                if let Response::Control(bytes) = response {
                    self.on_control(from, &bytes)?;
                }
                if self.release.as_ref().is_some_and(|r| r.id() == id) {
                    self.control_asked = None;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn on_failure(&mut self, peer: PeerId, what: Pending, error: OutboundFailure) {
        let now = self.now();
        let Pending::Chunk {
            manifest, index, ..
        } = what
        else {
            return;
        };
        self.chunk_progress.remove(&(peer, index));
        if self.release.as_ref().is_none_or(|r| r.id() != manifest) {
            return;
        }
        // A frame over the cap or undecodable is a protocol violation, not bad luck.
        let violation =
            matches!(&error, OutboundFailure::Io(e) if e.kind() == std::io::ErrorKind::InvalidData);
        tracing::debug!(%peer, index, error = %error, violation, "chunk request failed");
        if violation {
            self.node
                .handle_chunk(now, Peer(peer), index, Receipt::Rejected);
        } else {
            self.node.handle_request_busy(now, Peer(peer), index, None);
        }
    }

    /// A peer says it has `newest`: fetch the manifest if it is newer than ours.
    fn consider(&mut self, from: PeerId, newest: Option<Announce>) {
        if self.config.mode == Mode::Seed {
            return;
        }
        let Some(a) = newest else { return };
        if self.refused.contains(&a.manifest) {
            return;
        }
        let ours = self.release.as_ref().map(|r| (r.id(), r.release()));
        if ours.is_some_and(|(id, rel)| id == a.manifest || rel >= a.release) {
            return;
        }
        self.send(from, Request::GetManifest(a.manifest), Pending::Manifest);
    }

    fn on_manifest(&mut self, from: PeerId, bytes: &[u8]) -> Result<(), DriverError> {
        let Some(policy) = self.trust.release_role() else {
            return Ok(());
        };
        let verdict = verify(bytes, policy, &self.verify_context()?).map_err(|e| e.to_string());
        let verdict = verdict.and_then(|v| match self.trust.policy() {
            Some(p) if p.policy().is_recalled(&v.id()) => Err(format!(
                "release {} ({}) is recalled by fleet policy version {}",
                v.manifest().release,
                v.id(),
                p.version()
            )),
            _ => Ok(v),
        });
        match verdict {
            Ok(v) => {
                let newer = self
                    .release
                    .as_ref()
                    .is_none_or(|r| v.manifest().release > r.release());
                if newer {
                    self.store.put_manifest(&v)?;
                    self.switch_release(v)?;
                }
            }
            Err(e) => {
                self.report.manifests_refused += 1;
                tracing::warn!(peer = %from, error = %e, "refused a manifest");
                self.emit(NodeEvent::ManifestRefused(from));
            }
        }
        Ok(())
    }

    fn on_chunk(
        &mut self,
        from: PeerId,
        manifest: ManifestId,
        index: u32,
        data: bytes::Bytes,
    ) -> Result<(), DriverError> {
        let Some(r) = &self.release else {
            return Ok(());
        };
        if r.id() != manifest {
            return Ok(());
        }
        // The one check of the index against the release (peer input).
        let Some(index) = ChunkIndex::new(index, r.chunks.len()) else {
            return Ok(());
        };
        let job = writer::Job {
            peer: from,
            manifest,
            index,
            chunk: r.chunks[index.as_usize()],
            data,
            // Arrived in pieces: checked as they landed.
            verified: self.partials.whole(&r.chunks[index.as_usize()]),
        };
        // The request is over: its slot (and the sender's) frees while
        // the writer hashes and stores the bytes.
        self.node
            .handle_arrived(self.now(), Peer(from), index.get());
        // Backpressure: while the writer has the most chunks out, their
        // results are taken first (one store write at most), none dropped.
        if let Some(w) = self.writer.wait_for_room() {
            self.on_written(w)?;
        }
        if let Err(w) = self.writer.submit(job) {
            self.on_written(*w)?;
        }
        Ok(())
    }

    /// The first piece of chunk `index` landed (checked): peers may be told
    /// of it and ask for it while the rest comes.
    fn on_first_piece(&mut self, manifest: ManifestId, index: u32) {
        if self.release.as_ref().is_some_and(|r| r.id() == manifest) {
            tracing::debug!(index, "first piece in");
            self.report.chunks_in_pieces += 1;
            self.node.handle_partial(self.now(), index);
        }
    }

    /// A chunk came back from the writer: checked, and stored if it was good.
    fn on_written(&mut self, w: writer::Written) -> Result<(), DriverError> {
        let now = self.now();
        let outcome = w.outcome.map_err(DriverError::Write)?;
        if self.release.as_ref().is_none_or(|r| r.id() != w.manifest) {
            return Ok(());
        }
        if let Some(chunk) = self
            .release
            .as_ref()
            .and_then(|r| r.chunks.get(w.index.as_usize()))
        {
            // Stored (or thrown out): no longer served from its pieces.
            self.partials.remove(&chunk.id);
        }
        if self.origin_written(w.peer, w.index, w.len, &outcome) {
            return Ok(());
        }
        let receipt = match outcome {
            writer::Outcome::Stored(_) => {
                *self
                    .report
                    .bytes_from
                    .entry(w.peer.to_string())
                    .or_default() += w.len as u64;
                tracing::debug!(peer = %w.peer, index = %w.index, "verified");
                Receipt::Verified
            }
            writer::Outcome::Rejected(reason) => {
                tracing::warn!(peer = %w.peer, index = %w.index, %reason, "chunk failed verification; not stored");
                Receipt::Rejected
            }
            writer::Outcome::NotStored => {
                let error = w.error.unwrap_or_else(|| "writing failed".into());
                if self.write_trouble.is_none() {
                    tracing::error!(%error, "cannot store chunks; the download pauses");
                }
                self.write_trouble = Some((error, Instant::now() + WRITE_RETRY));
                // Asked again later, as if the sender were busy.
                self.node
                    .handle_request_busy(now, Peer(w.peer), w.index.get(), Some(WRITE_RETRY));
                return Ok(());
            }
        };
        if self.write_trouble.take().is_some() {
            tracing::info!("chunks are stored again; the download resumes");
        }
        self.node
            .handle_checked(now, Peer(w.peer), w.index.get(), receipt);
        Ok(())
    }

    fn on_peers(&mut self, list: Vec<PeerRecord>) {
        for rec in list.iter().take(pollen_core::wire::MAX_PEER_RECORDS) {
            match KnownPeer::try_from(rec) {
                Ok(k) => self.dial_discovered(k.peer, k.addrs, Some((k.site, k.role))),
                Err(e) => tracing::debug!(error = %e, "peer record ignored"),
            }
        }
    }

    /// Whether a release is taken up and not yet complete.
    fn fetching(&self) -> bool {
        self.release.is_some() && !self.node.is_complete()
    }

    /// Carries out what the node logic decided.
    fn drain_actions(&mut self) -> Result<(), DriverError> {
        while let Some(out) = self.node.poll_output() {
            let Some(id) = self.release.as_ref().map(|r| r.id()) else {
                if let Output::RoleChanged(role) = out {
                    self.role_changed(role);
                } else if let Output::Role { peer, role } = out {
                    self.tell_role(peer.0, role);
                }
                continue;
            };
            match out {
                Output::Request { peer, index, .. } if self.is_origin(&peer.0) => {
                    self.origin_request(index)
                }
                Output::Request { peer, index, .. } => {
                    // Who fetches this chunk across the uplink, as this node
                    // sees its site (site rules only): for reading logs.
                    let owner = self.node.swarm().and_then(|s| s.uplink_owner(index));
                    tracing::debug!(
                        peer = %peer.0,
                        index,
                        owner = ?owner.map(|(p, _)| p.0),
                        owner_stalled = owner.is_some_and(|(_, s)| s),
                        "chunk requested"
                    );
                    let progress = Counter::default();
                    self.chunk_progress
                        .insert((peer.0, index), progress.clone());
                    let landing = self.release.as_ref().and_then(|r| {
                        Some(Landing {
                            partials: self.partials.clone(),
                            manifest: id,
                            index,
                            chunk: *r.chunks.get(index as usize)?,
                        })
                    });
                    self.send(
                        peer.0,
                        Request::GetChunk {
                            manifest: id,
                            index,
                        },
                        Pending::Chunk {
                            manifest: id,
                            index,
                            progress,
                            landing,
                        },
                    );
                }
                // An origin's range request is not taken back (it is
                // fetched whole; mirrors are not site peers).
                Output::Cancel { peer, .. } if self.is_origin(&peer.0) => {}
                Output::Cancel { peer, index } => {
                    // The scheduler no longer follows it: nor does its progress.
                    self.chunk_progress.remove(&(peer.0, index));
                    let taken = self.swarm.behaviour_mut().pollen.cancel(&peer.0, id, index);
                    tracing::debug!(peer = %peer.0, index, taken, "chunk request taken back");
                }
                Output::Gained { peer, indices } => {
                    let notice = Request::Gained {
                        manifest: id,
                        indices: indices.to_vec(),
                    };
                    self.send(peer.0, notice, Pending::Notice);
                }
                // The sender hears at once: that frees the upload slot that
                // carried the chunk, and measures its delivery rate.
                Output::Ack { peer, index } => {
                    let ack = Request::Gained {
                        manifest: id,
                        indices: vec![index],
                    };
                    self.send(peer.0, ack, Pending::Notice);
                }
                Output::AskHave { peer } => {
                    self.send(peer.0, Request::GetHave(id), Pending::Have(id));
                }
                Output::Role { peer, role } => self.tell_role(peer.0, role),
                Output::RoleChanged(role) => self.role_changed(role),
                Output::Penalise { peer } => {
                    tracing::warn!(peer = %peer.0, "peer penalised for a bad chunk")
                }
                Output::Ban { peer } => {
                    tracing::warn!(peer = %peer.0, "peer banned after repeated bad chunks");
                    self.swarm.behaviour_mut().blocked.block_peer(peer.0);
                    let _ = self.swarm.disconnect_peer_id(peer.0);
                    self.report.banned.push(peer.0.to_string());
                    self.emit(NodeEvent::Banned(peer.0));
                }
                Output::Complete => {
                    let (site_peers, site_uplinks) = self.node.site_view();
                    tracing::info!(
                        manifest = %id,
                        gateway = self.node.role().gateway,
                        site_peers,
                        site_uplinks,
                        "release complete"
                    );
                    self.report.seconds_to_complete = Some(self.start.elapsed().as_secs_f64());
                    let report = Box::new(self.finish_report());
                    self.emit(NodeEvent::Complete {
                        manifest: id,
                        report,
                    });
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod role_tests;
#[cfg(test)]
mod session_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod trust_tests;
