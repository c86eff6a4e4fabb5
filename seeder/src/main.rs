//! `pollen-seeder`: the publisher's tool — keys, publishing, inspection, verification.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, CommandFactory, Parser, Subcommand};
use pollen_core::admission::{AdmissionConfig, ORIGIN_SLOTS};
use pollen_core::chunk::ChunkParams;
use pollen_core::manifest::{verify, SignedManifest, VerifyContext};
use pollen_node::cli_support::{
    create_private_dir, fatal, init_tracing, note, one_line, LogFormat, Progress,
};
use pollen_node::config::ConfigError;
use pollen_node::notify;
use pollen_node::store::{MemStore, RocksStore, Store};
use pollen_node::trust_file::load_trust;
use pollen_seeder::publish::{next_release, publish, PublishRequest};
use pollen_seeder::publish_live::publish_live;
use pollen_seeder::view::ManifestView;
use pollen_seeder::{keyfile, rollout};

#[derive(Parser, Debug)]
#[command(
    name = "pollen-seeder",
    version,
    about = "Pollen publisher tool: keys, releases, verification"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Generate a publisher key pair: FILE (secret, mode 0600) and FILE.pub.
    Keygen(KeygenOpt),
    /// Chunk an artifact into a store and sign its release manifest.
    Publish(PublishOpt),
    /// Show a manifest (and whether it verifies, with --trust).
    Inspect(InspectOpt),
    /// Exit 0 only if a manifest (and optionally an artifact) verifies.
    Verify(VerifyOpt),
    /// Copy a release out of a store as a manifest plus a chunk folder (for
    /// USB sticks), or, with --origin, write the store's current releases
    /// as a static tree a web server, S3 or a CDN serves.
    Export(ExportOpt),
    /// Serve the newest release of a channel into the mesh.
    Serve(ServeOpt),
    /// Steer a release's staged rollout: promote the next stage, halt, resume.
    Rollout(fleet_cmd::RolloutOpt),
    /// Fleet status per release and stage, from the devices' status records.
    Status(fleet_cmd::StatusOpt),
    /// The fleet policy: create, show, rotate (roles, revoked devices, recalls).
    Policy(policy_cmd::PolicyOpt),
    /// Add one signature to a manifest, rollout control, fleet policy or credential file.
    Sign(sign_cmd::SignOpt),
    /// Replace a release's manifest in the store with a co-signed copy of it.
    ImportManifest(sign_cmd::ImportManifestOpt),
    /// Sign device credentials with the enroll key: one device, or a CSV batch.
    Enroll(enroll_cmd::EnrollOpt),
    /// Print the seeder's peer id (to enroll it), creating its identity if needed.
    Id(enroll_cmd::IdOpt),
    /// The config file of `serve` (`--config`): print the default one, or check one.
    Config(pollen_node::config::ConfigOpt),
}

#[derive(Args, Debug)]
struct ServeOpt {
    /// A TOML file of flags: each key a flag's long name (`no-mdns =
    /// true`, `listen = ["..."]`); flags given on the command line win.
    /// `pollen-seeder config --default` prints every key.
    #[arg(long, env = "POLLEN_SEEDER_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// The publisher's store (`publish --store`).
    #[arg(long)]
    store: PathBuf,
    /// The release channel to serve.
    #[arg(long)]
    channel: String,
    /// Address to listen on (repeatable).
    #[arg(long, default_value = "/ip4/0.0.0.0/tcp/0")]
    listen: Vec<libp2p::Multiaddr>,
    /// An address peers are told to reach the seeder at instead of its
    /// listen addresses (repeatable), e.g. /dns4/updates.example.com/tcp/4000.
    #[arg(long)]
    external_address: Vec<libp2p::Multiaddr>,
    /// Peers to dial (repeatable), e.g. a site's gateway.
    #[arg(long)]
    peer: Vec<libp2p::Multiaddr>,
    /// The seeder's site name (defaults to none: remote to every site).
    #[arg(long)]
    site: Option<String>,
    /// Do not use mDNS.
    #[arg(long)]
    no_mdns: bool,
    /// Operator key: lets the seeder halt a rollout by itself when a
    /// stage's failure rate passes the release's `--max-failures`. With a
    /// fleet policy it must be an operator key and neither a root nor a
    /// release key (those stay offline).
    #[arg(long)]
    key: Option<PathBuf>,
    /// The fleet policy (`pollen-seeder policy create`): the seeder checks
    /// peers' credentials (a closed mesh when it has an enroll role),
    /// controls against the operator role, and passes the policy on.
    #[arg(long)]
    policy: Option<PathBuf>,
    /// The seeder's own credential (`pollen-seeder enroll` of its peer id).
    #[arg(long)]
    credential: Option<PathBuf>,
    /// Local endpoint (status, metrics, rollout controls); loopback only.
    #[arg(long, default_value = "127.0.0.1:0")]
    api: std::net::SocketAddr,
    /// The fleet forbids site-to-site traffic: serve every site its own
    /// copy (no super-seeding).
    #[arg(long)]
    no_cross_site: bool,
    /// Chunk responses sent at once; more wait in a short queue, the rest
    /// hear `Busy` with a retry hint.
    #[arg(long, default_value_t = ORIGIN_SLOTS, value_parser = clap::value_parser!(u16).range(1..))]
    upload_slots: u16,
    /// Inbound connections kept at most; past half of it, two per site (so
    /// every site still reaches the seeder through its gateways).
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(2..))]
    max_connections: u32,
    /// Log lines on stderr as text or as one JSON object per line.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Serve the operator console (HTTP API, dashboard, /metrics) on this
    /// address, e.g. 127.0.0.1:8443; off by default.
    #[arg(long, value_name = "ADDR")]
    http: Option<std::net::SocketAddr>,
    /// The console's bearer tokens: `SCOPE NAME TOKEN` a line, SCOPE
    /// `read` or `operator` (README, "Operator console").
    #[arg(long, value_name = "FILE")]
    http_tokens: Option<PathBuf>,
    /// PEM certificate chain: the console speaks HTTPS (with --http-key).
    #[arg(long, value_name = "FILE")]
    http_cert: Option<PathBuf>,
    /// PEM private key of --http-cert.
    #[arg(long, value_name = "FILE")]
    http_key: Option<PathBuf>,
    /// Append-only audit log of the console's actions (JSON lines, synced
    /// per line).
    #[arg(long, value_name = "FILE")]
    http_audit: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct KeygenOpt {
    #[arg(long)]
    out: PathBuf,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct PublishOpt {
    /// Secret key file from `keygen`.
    #[arg(long)]
    key: PathBuf,
    /// Store directory (created if missing).
    #[arg(long)]
    store: PathBuf,
    #[arg(long)]
    artifact: PathBuf,
    #[arg(long)]
    channel: String,
    /// Semantic version, e.g. 2.1.0.
    #[arg(long)]
    version: semver::Version,
    /// Monotonic release number; default: one above the newest on the channel.
    #[arg(long)]
    release: Option<u64>,
    /// Refuse a --release more than this above the channel's newest
    /// release in the store (devices never take a lower release again).
    #[arg(long, default_value_t = 1000)]
    max_step: u64,
    /// Publish a --release past --max-step anyway.
    #[arg(long)]
    force: bool,
    /// The fleet policy: the key must be one of its release keys, and the
    /// releases it recalls do not count as the channel's newest (after a
    /// recall, numbering goes on from the good release).
    #[arg(long)]
    policy: Option<PathBuf>,
    /// How long devices accept the manifest, e.g. 30d, 12h.
    #[arg(long, default_value = "90d")]
    expires_in: humantime::Duration,
    /// Hardware model this release targets (repeatable); none means any.
    #[arg(long)]
    hardware: Vec<String>,
    /// Product name recorded in the manifest.
    #[arg(long, default_value = "pollen")]
    product: String,
    /// Average chunk size in KiB (min is a quarter, max four times).
    #[arg(long, default_value_t = 256)]
    chunk_kib: u32,
    /// Also write the signed manifest to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Rollout stages: shares of the fleet, each optionally `@+DURATION` or
    /// `@UNIX-TIME`; later stages without a time wait for `rollout promote`.
    #[arg(long, default_value = "100%")]
    stages: String,
    /// Halt the rollout when a stage's failure rate passes this (e.g. 20%);
    /// enforced by `serve --key`.
    #[arg(long)]
    max_failures: Option<String>,
    #[command(flatten)]
    origin: origin_cmd::AfterOpt,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct InspectOpt {
    manifest: PathBuf,
    /// Trust file or `.pub`: adds the signature verdict.
    #[arg(long)]
    trust: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct VerifyOpt {
    /// Trust file or `.pub`.
    #[arg(long)]
    trust: PathBuf,
    manifest: PathBuf,
    /// Also check that this file is the manifest's artifact.
    #[arg(long)]
    artifact: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct ExportOpt {
    #[arg(long)]
    store: PathBuf,
    /// Manifest id (hex) in the store, or a manifest file.
    #[arg(long, required_unless_present = "origin", conflicts_with = "origin")]
    manifest: Option<String>,
    /// Output folder: gets `manifest.pollen` and `chunks/`.
    #[arg(long, required_unless_present = "origin", conflicts_with = "origin")]
    out: Option<PathBuf>,
    /// Write an origin tree here instead: each channel's newest release
    /// (chunks, manifest, rollout control), the fleet policy, and a signed
    /// channel index, written so that a reader never sees a half-written
    /// file; files already there are kept. Serve it with any web server,
    /// or sync it to S3 or a CDN (README).
    #[arg(long, value_name = "DIR", requires = "key")]
    origin: Option<PathBuf>,
    /// A channel to export (repeatable; default: every channel in the store).
    #[arg(long, requires = "origin")]
    channel: Vec<String>,
    /// Operator key signing the channel indexes (repeatable, for an
    /// operator role that needs several signatures). Without a fleet
    /// policy, a key of the devices' trust file.
    #[arg(long, value_name = "SECRET", requires = "origin")]
    key: Vec<PathBuf>,
    /// The fleet policy (or trust file) devices hold: the keys must hold
    /// its operator role; a signed policy is published under `policy/`.
    /// The store's own policy is used when it is newer.
    #[arg(long, requires = "origin")]
    policy: Option<PathBuf>,
    /// How long each channel index is valid: devices refuse an origin or
    /// mirror whose index expired (a frozen mirror). Export again before
    /// half of it has passed; an export renews an index past that point.
    #[arg(long, default_value = "7d", value_name = "DURATION")]
    index_ttl: humantime::Duration,
    /// Re-hash the chunk files already in the tree (default: a file of the
    /// right size is kept).
    #[arg(long, requires = "origin")]
    verify: bool,
    #[arg(long, requires = "origin")]
    json: bool,
}

mod enroll_cmd;
mod fleet_cmd;
mod origin_cmd;
mod policy_cmd;
mod sign_cmd;

fn main() -> ExitCode {
    let cli: Cli = match pollen_node::config::parse_args(std::env::args_os(), &["serve"]) {
        Ok(cli) => cli,
        Err(ConfigError::Cli(e)) => e.exit(),
        Err(e) => {
            eprintln!("pollen-seeder: error: {e}");
            return ExitCode::from(2);
        }
    };
    init_tracing(match &cli.command {
        Command::Serve(o) => o.log_format,
        _ => LogFormat::Text,
    });
    let result = match cli.command {
        Command::Keygen(o) => keygen(o),
        Command::Publish(o) => run_publish(o),
        Command::Inspect(o) => inspect(o),
        Command::Verify(o) => run_verify(o),
        Command::Export(o) => export(o),
        Command::Serve(o) => serve(o),
        Command::Rollout(o) => fleet_cmd::rollout(o),
        Command::Status(o) => fleet_cmd::status(o),
        Command::Policy(o) => policy_cmd::policy(o),
        Command::Sign(o) => sign_cmd::sign(o),
        Command::ImportManifest(o) => sign_cmd::import_manifest(o),
        Command::Enroll(o) => enroll_cmd::enroll(o),
        Command::Id(o) => enroll_cmd::id(o),
        Command::Config(o) => match o.check {
            None => print_default_config(),
            Some(file) => match pollen_node::config::check_file::<Cli>(
                "pollen-seeder",
                "serve",
                &file,
                &["serve"],
            ) {
                Ok(()) => {
                    println!("{}: ok", file.display());
                    Ok(())
                }
                Err(ConfigError::Cli(e)) => e.exit(),
                Err(e) => {
                    eprintln!("pollen-seeder: error: {e}");
                    return ExitCode::from(2);
                }
            },
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            fatal("pollen-seeder", &one_line(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

/// `config --default`: the file of `serve`, from its flags' definitions.
fn print_default_config() -> anyhow::Result<()> {
    let cmd = Cli::command();
    let serve = cmd
        .find_subcommand("serve")
        .context("no serve subcommand")?;
    print!(
        "{}",
        pollen_node::config::default_file(
            serve,
            "pollen-seeder serve --config FILE (or POLLEN_SEEDER_CONFIG=FILE)"
        )
    );
    Ok(())
}

fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn keygen(o: KeygenOpt) -> anyhow::Result<()> {
    let key = keyfile::generate(&o.out)?;
    let id = key.public().id().to_string();
    let public = keyfile::public_path(&o.out);
    if o.json {
        print_json(&serde_json::json!({ "key_id": id, "secret_key": o.out, "public_key": public }))
    } else {
        println!(
            "key id {id}\nsecret key {} (keep it private)\npublic key {} (give it to devices)",
            o.out.display(),
            public.display()
        );
        Ok(())
    }
}

fn run_publish(o: PublishOpt) -> anyhow::Result<()> {
    let avg = o
        .chunk_kib
        .checked_mul(1024)
        .context("--chunk-kib too large")?;
    let chunking = ChunkParams::new(avg / 4, avg, avg.saturating_mul(4)).context("--chunk-kib")?;
    let key = keyfile::load_secret(&o.key)?;
    let now = pollen_node::unix_now();
    let rollout = pollen_core::manifest::Rollout {
        stages: rollout::parse_stages(&o.stages, now).context("--stages")?,
        max_failures: o
            .max_failures
            .as_deref()
            .map(rollout::parse_percent)
            .transpose()
            .context("--max-failures")?,
    };
    let total = std::fs::metadata(&o.artifact)
        .with_context(|| format!("reading {}", o.artifact.display()))?
        .len();
    let max_step = (!o.force).then_some(o.max_step);
    let recalled = match &o.policy {
        Some(p) => {
            let policy = pollen_node::trust_file::load_policy(p, now)?;
            let id = key.public().id();
            anyhow::ensure!(
                policy.policy().release.key(&id).is_some(),
                "--key {id} is not a release key of fleet policy version {}: devices would refuse the release",
                policy.version()
            );
            policy.policy().recalled.clone()
        }
        None => Default::default(),
    };
    // --origin is checked before anything is published.
    let origin = origin_cmd::prepare(&o.origin, &o.key, o.policy.as_deref(), &o.store)?;
    let channel = o.channel.clone();
    let req = PublishRequest {
        key: &key,
        artifact: o.artifact.clone(),
        product: o.product,
        channel: o.channel,
        version: o.version,
        release: o.release,
        max_step,
        expires_in_secs: o.expires_in.as_secs(),
        hardware: o.hardware,
        chunking,
        now,
        rollout,
        recalled,
    };
    let mut progress = Progress::new("publish", total, "bytes");
    let running = pollen_node::api::running_daemon(&o.store).ok();
    let (report, verified) = match running {
        // The seeder serving the store holds it: it imports and announces the release.
        Some(addr) => publish_live(&o.store, addr, &req, |done| progress.set(done, total))?,
        None => {
            // Refused before the store is created or opened for writing.
            if RocksStore::exists(&o.store) {
                let ro = RocksStore::open_read_only(&o.store)?;
                next_release(&ro, &req.channel, o.release, max_step, &req.recalled)?;
            } else {
                next_release(
                    &MemStore::new(),
                    &req.channel,
                    o.release,
                    max_step,
                    &req.recalled,
                )?;
            }
            create_private_dir(&o.store)
                .with_context(|| format!("creating {}", o.store.display()))?;
            let store = RocksStore::open(&o.store)?;
            publish(&store, &req, |done| progress.set(done, total))?
        }
    };
    progress.finish();
    if let Some(out) = &o.out {
        std::fs::write(out, verified.to_bytes())
            .with_context(|| format!("writing {}", out.display()))?;
    }
    let exported = match origin {
        Some(p) => Some(origin_cmd::run_after(p, &o.store, &channel, Vec::new())?),
        None => None,
    };
    if o.json {
        let mut value = serde_json::to_value(&report)?;
        if let Some(e) = exported {
            value["origin"] = serde_json::to_value(e)?;
        }
        return print_json(&value);
    }
    println!(
        "published {} {} (release {}) on channel {}",
        report.product, report.version, report.release, report.channel
    );
    println!("manifest   {}", report.manifest_id);
    if let Some(addr) = running {
        println!("served     now, by the running seeder of the store ({addr})");
    }
    println!(
        "artifact   {} bytes, blake3 {}",
        report.artifact_bytes, report.artifact_blake3
    );
    println!(
        "chunks     {} total, {} new ({} new bytes)",
        report.chunks, report.new_chunks, report.new_bytes
    );
    if let Some(out) = &o.out {
        println!("written to {}", out.display());
    }
    if let Some(e) = &exported {
        print!("{}", pollen_seeder::origin_export::summary(e));
    }
    Ok(())
}

fn read_manifest(path: &Path) -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .with_context(|| format!("opening {}", path.display()))?
        .take(pollen_core::manifest::MAX_MANIFEST_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(bytes)
}

fn inspect(o: InspectOpt) -> anyhow::Result<()> {
    let bytes = read_manifest(&o.manifest)?;
    let signed =
        SignedManifest::decode(&bytes).with_context(|| format!("{}", o.manifest.display()))?;
    let verdict = match &o.trust {
        None => None,
        Some(t) => {
            let policy = load_trust(t)?;
            let ctx = VerifyContext {
                now: pollen_node::unix_now(),
                ..Default::default()
            };
            Some(match verify(&bytes, &policy, &ctx) {
                Ok(_) => "valid".to_string(),
                Err(e) => format!("INVALID: {e}"),
            })
        }
    };
    let view = ManifestView::new(&signed, verdict);
    if o.json {
        print_json(&view)
    } else {
        print!("{}", view.summary());
        Ok(())
    }
}

fn run_verify(o: VerifyOpt) -> anyhow::Result<()> {
    let policy = load_trust(&o.trust)?;
    let bytes = read_manifest(&o.manifest)?;
    let ctx = VerifyContext {
        now: pollen_node::unix_now(),
        ..Default::default()
    };
    let verified =
        verify(&bytes, &policy, &ctx).map_err(|e| anyhow::anyhow!("manifest refused: {e}"))?;
    let m = verified.manifest();
    if let Some(path) = &o.artifact {
        let file =
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let mut hasher = blake3::Hasher::new();
        let size = std::io::copy(
            &mut std::io::BufReader::with_capacity(1 << 20, file),
            &mut hasher,
        )
        .with_context(|| format!("reading {}", path.display()))?;
        if size != m.artifact.size || hasher.finalize().as_bytes() != &m.artifact.blake3 {
            bail!(
                "artifact {} does not match the manifest (size {size}, expected {})",
                path.display(),
                m.artifact.size
            );
        }
    }
    if o.json {
        print_json(&serde_json::json!({
            "valid": true,
            "manifest_id": verified.id().to_hex(),
            "signers": verified.signers().iter().map(|k| k.to_string()).collect::<Vec<_>>(),
            "artifact_checked": o.artifact.is_some(),
        }))
    } else {
        println!(
            "valid: {} release {} signed by {}{}",
            verified.id(),
            m.release,
            verified
                .signers()
                .iter()
                .map(|k| k.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            if o.artifact.is_some() {
                "; artifact matches"
            } else {
                ""
            }
        );
        Ok(())
    }
}

fn export(o: ExportOpt) -> anyhow::Result<()> {
    if let Some(dir) = &o.origin {
        return origin_cmd::export_origin(
            &o.store,
            dir,
            o.channel,
            &o.key,
            o.policy.as_deref(),
            o.index_ttl.as_secs(),
            o.verify,
            o.json,
        );
    }
    let (Some(manifest), Some(out)) = (o.manifest, o.out) else {
        bail!("export needs --manifest and --out, or --origin");
    };
    let store = RocksStore::open_read_only(&o.store)?;
    let bytes = if Path::new(&manifest).is_file() {
        read_manifest(Path::new(&manifest))?
    } else {
        let mut id = [0u8; 32];
        hex::decode_to_slice(&manifest, &mut id)
            .context("--manifest is neither a file nor a manifest id")?;
        store
            .get_manifest(&pollen_core::ManifestId(id))?
            .with_context(|| format!("manifest {manifest} is not in the store"))?
    };
    let signed = SignedManifest::decode(&bytes)?;
    let chunk_dir = out.join("chunks");
    std::fs::create_dir_all(&chunk_dir)
        .with_context(|| format!("creating {}", chunk_dir.display()))?;
    for c in &signed.manifest().chunks {
        let chunk = store
            .read_chunk(c)?
            .with_context(|| format!("chunk {} is not in the store", c.id))?;
        std::fs::write(chunk_dir.join(c.id.to_hex()), chunk.bytes())?;
    }
    std::fs::write(out.join("manifest.pollen"), &bytes)?;
    println!(
        "exported {} chunks and manifest.pollen to {}",
        signed.manifest().chunks.len(),
        out.display()
    );
    Ok(())
}

/// Keys offline: the serving seeder holds an operator key at most.
fn check_online_key(
    policy: &pollen_core::trust::FleetPolicy,
    key: &pollen_core::manifest::SecretKey,
) -> anyhow::Result<()> {
    use pollen_core::trust::Role;
    let id = key.public().id();
    let roles = policy.roles_of(&id);
    if let Some(offline) = roles
        .iter()
        .find(|r| matches!(r, Role::Root | Role::Release))
    {
        anyhow::bail!(
            "--key {id} is a {offline} key of fleet policy version {}: root and release keys stay offline; serve with an operator key",
            policy.version
        );
    }
    anyhow::ensure!(
        roles.contains(&Role::Operator),
        "--key {id} is not an operator key of fleet policy version {}: the devices would refuse the controls it signs",
        policy.version
    );
    Ok(())
}

/// Starts the operator console; its actions reach the driver through the
/// local endpoint, as `pollen-seeder rollout` does.
async fn start_console(
    config: pollen_seeder::console::ConsoleConfig,
    store: std::sync::Arc<dyn Store + Send + Sync>,
    key: Option<std::sync::Arc<pollen_core::manifest::SecretKey>>,
    data_dir: &Path,
) -> anyhow::Result<()> {
    let file = pollen_node::api::addr_file(data_dir);
    let local: std::net::SocketAddr = std::fs::read_to_string(&file)
        .with_context(|| format!("reading {}", file.display()))?
        .trim()
        .parse()
        .with_context(|| format!("{}", file.display()))?;
    let deliver = Box::new(move |bytes: &[u8]| {
        pollen_node::api::request(local, "POST", "/control", bytes).map(drop)
    });
    let (addr, tls) = pollen_seeder::console::start(config, store, key, deliver).await?;
    println!("console {}://{addr}/", if tls { "https" } else { "http" });
    Ok(())
}

fn serve(o: ServeOpt) -> anyhow::Result<()> {
    use pollen_node::driver::{Driver, Mode, NodeConfig, NodeEvent};
    // Checked here, not with clap's `requires`: the config file checks
    // each flag on its own.
    let console = match (o.http, &o.http_tokens) {
        (Some(addr), Some(tokens)) => {
            anyhow::ensure!(
                o.http_cert.is_some() == o.http_key.is_some(),
                "--http-cert and --http-key go together"
            );
            Some(pollen_seeder::console::ConsoleConfig {
                addr,
                tokens: tokens.clone(),
                tls: o.http_cert.clone().zip(o.http_key.clone()),
                audit: o.http_audit.clone(),
            })
        }
        (Some(_), None) => anyhow::bail!("--http needs --http-tokens"),
        (None, _) => {
            anyhow::ensure!(
                o.http_tokens.is_none()
                    && o.http_cert.is_none()
                    && o.http_key.is_none()
                    && o.http_audit.is_none(),
                "--http-tokens, --http-cert, --http-key and --http-audit need --http"
            );
            None
        }
    };
    // A new store is created empty: the seeder serves nothing until the
    // first `publish` reaches it (live, through its local endpoint).
    create_private_dir(&o.store).with_context(|| format!("creating {}", o.store.display()))?;
    let store = std::sync::Arc::new(RocksStore::open(&o.store)?);
    let publisher_key = match &o.key {
        Some(k) => Some(std::sync::Arc::new(keyfile::load_secret(k)?)),
        None => None,
    };
    let policy = match &o.policy {
        Some(p) => Some(pollen_node::trust_file::load_policy(
            p,
            pollen_node::unix_now(),
        )?),
        None => None,
    };
    if let (Some(policy), Some(key)) = (&policy, &publisher_key) {
        check_online_key(policy.policy(), key)?;
    }
    let credential = match &o.credential {
        Some(c) => Some(pollen_node::trust_file::load_credential(c)?),
        None => None,
    };
    anyhow::ensure!(o.api.ip().is_loopback(), "--api must be a loopback address");
    let console_store: std::sync::Arc<dyn Store + Send + Sync> = store.clone();
    let console_key = publisher_key.clone();
    let config = NodeConfig {
        channel: o.channel,
        policy,
        credential,
        hardware: None,
        listen: o.listen,
        external: o.external_address,
        peers: o.peer,
        site: o.site,
        uplink_rate: None,
        no_lan: false,
        cross_site: !o.no_cross_site,
        max_remote_peers: 0,
        linger: std::time::Duration::ZERO,
        admission: AdmissionConfig {
            max_active: usize::from(o.upload_slots),
            spread: !o.no_cross_site,
            ..AdmissionConfig::origin()
        },
        mdns: !o.no_mdns,
        mode: Mode::Seed,
        seed: 0,
        max_peers: o.max_connections as usize,
        limits: pollen_node::net::Limits {
            max_established: o.max_connections,
            max_pending_incoming: 128,
            ..pollen_node::net::Limits::default()
        },
        transport: pollen_node::net::Transport::Network,
        device_id: None,
        lifecycle: None,
        retry_interval: std::time::Duration::from_secs(60),
        status_interval: std::time::Duration::from_secs(30),
        publisher_key,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let (tx, mut rx) = tokio::sync::mpsc::channel(64);
        let heartbeat = notify::Heartbeat::new();
        let driver = Driver::new(store, config, Some(tx))?.with_heartbeat(heartbeat.clone());
        notify::spawn_watchdog(heartbeat);
        let (shared, commands) = pollen_node::api::start(o.api, &o.store).await?;
        let driver = driver.with_api(shared, commands);
        if let Some(config) = console {
            start_console(config, console_store, console_key, &o.store).await?;
        }
        note(&format!("seeder peer id {}", driver.peer_id()));
        tokio::spawn(async move {
            let mut ready = false;
            while let Some(e) = rx.recv().await {
                match e {
                    NodeEvent::Listening(addr) => {
                        println!("listening {addr}");
                        if !std::mem::replace(&mut ready, true) {
                            notify::ready(&format!("serving, listening on {addr}"));
                        }
                    }
                    NodeEvent::NewRelease {
                        manifest,
                        release,
                        chunks,
                        ..
                    } => note(&format!(
                        "serving release {release} ({manifest}), {chunks} chunks"
                    )),
                    _ => {}
                }
            }
        });
        let span = tracing::info_span!("seeder");
        let shutdown = async {
            pollen_node::cli_support::shutdown_signal().await;
            notify::stopping();
        };
        let report = tracing::Instrument::instrument(driver.run(shutdown), span).await?;
        note(&format!(
            "served {} chunks ({} bytes)",
            report.chunks_served, report.bytes_served
        ));
        Ok(())
    })
}
