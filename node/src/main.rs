//! `pollen-node`: the agent that runs on every device.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, CommandFactory, Parser, Subcommand};
use libp2p::Multiaddr;
use pollen_core::manifest::SignedManifest;
use pollen_node::cli_support::{fatal, init_tracing, one_line, parse_rate, LogFormat, Progress};
use pollen_node::config::ConfigError;
use pollen_node::import::{import, store_dir, ChunkSource, ImportRequest};
use pollen_node::store::{RocksStore, Store};
use pollen_node::update::{Hooks, UpdateConfig};

#[derive(Parser, Debug)]
#[command(
    name = "pollen-node",
    version,
    about = "Pollen device agent: fetch, verify and install releases"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Import a release carried offline: a manifest plus a chunk folder or store.
    Import(ImportOpt),
    /// Check the store: every chunk against its id, every manifest decodes.
    Check(CheckOpt),
    /// Join the mesh: keep the newest release of the channel complete and serve it.
    Run(RunOpt),
    /// Join the mesh until the newest release is complete, then write it out and exit.
    Fetch(FetchOpt),
    /// Show the update lifecycle (from the running daemon, or from the store).
    Status(StatusOpt),
    /// Print the node's peer id (to enroll it), creating its identity if needed.
    Id(id_cmd::IdOpt),
    /// The config file of `run` (`--config`): print the default one, or check one.
    Config(pollen_node::config::ConfigOpt),
}

#[derive(Args, Debug)]
struct StatusOpt {
    /// The node's data directory.
    #[arg(long)]
    data: PathBuf,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct MeshOpt {
    /// A TOML file of flags: each key a flag's long name (`uplink-rate =
    /// "8mbit"`, `no-mdns = true`, `peer = ["..."]`); flags given on the
    /// command line win. `pollen-node config --default` prints every key.
    #[arg(long, env = "POLLEN_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// The node's data directory (created if missing).
    #[arg(long)]
    data: PathBuf,
    /// The device's first fleet policy: a signed policy file (`pollen-seeder
    /// policy create`), or a trust file / single publisher `.pub` file (an
    /// open mesh). A newer policy the node took since wins.
    #[arg(long, visible_alias = "policy")]
    trust: PathBuf,
    /// This device's credential (`pollen-seeder enroll`), needed in a
    /// closed mesh (a policy with an enroll role).
    #[arg(long)]
    credential: Option<PathBuf>,
    /// The release channel to follow.
    #[arg(long)]
    channel: String,
    /// Address to listen on (repeatable).
    #[arg(long, default_value = "/ip4/0.0.0.0/tcp/0")]
    listen: Vec<Multiaddr>,
    /// An address peers are told to reach this node at instead of its
    /// listen addresses (repeatable), e.g. /dns4/host.example.com/tcp/4000.
    #[arg(long)]
    external_address: Vec<Multiaddr>,
    /// A peer to dial and keep dialing (repeatable): the seeder across the
    /// uplink, or LAN peers where multicast is blocked.
    #[arg(long)]
    peer: Vec<Multiaddr>,
    /// An HTTP(S) origin: the base URL of a tree `pollen-seeder export
    /// --origin` wrote, on any web server, object store or CDN
    /// (repeatable: mirrors, tried in order, a failing one backing off).
    /// The site's gateways fetch their uplink copy from it; proxies come
    /// from HTTPS_PROXY / HTTP_PROXY / NO_PROXY.
    #[arg(long, value_parser = pollen_node::origin::parse_origin_url)]
    origin: Vec<reqwest::Url>,
    /// An extra PEM root certificate for the origin (added to the built-in roots).
    #[arg(long, value_name = "FILE")]
    origin_ca: Option<PathBuf>,
    /// How often the origin's channel index is polled for a new release
    /// (a conditional GET: an unchanged index costs a few hundred bytes).
    #[arg(long, default_value = "60s")]
    origin_poll: humantime::Duration,
    /// This node's site (its LAN); peers on the same site are preferred.
    #[arg(long)]
    site: Option<String>,
    /// Budget for fetching across the uplink, e.g. 8mbit or 1MB/s.
    #[arg(long, value_parser = parse_rate)]
    uplink_rate: Option<u64>,
    /// Fetch only from the --peer peers (the central baseline).
    #[arg(long)]
    no_lan: bool,
    /// Never fetch from or serve devices of other sites (for fleets that
    /// forbid site-to-site traffic): each site's copy comes from the seeder.
    #[arg(long)]
    no_cross_site: bool,
    /// Connections to other sites' gateways a gateway keeps at most.
    #[arg(long, default_value_t = 20)]
    max_remote_peers: usize,
    /// Do not use mDNS (it multicasts on every interface).
    #[arg(long)]
    no_mdns: bool,
    /// This device's hardware model.
    #[arg(long)]
    hardware: Option<String>,
    /// Seed for the scheduler's random choices (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// Stop dialing discovered peers beyond this many connections.
    #[arg(long, default_value_t = 64)]
    max_peers: usize,
    /// The id staged rollouts hash this device by (default: its peer id).
    #[arg(long)]
    device_id: Option<String>,
    /// Re-publish this device's status record at least this often (it is
    /// also sent at once whenever it changes).
    #[arg(long, default_value = "5m")]
    status_interval: humantime::Duration,
    /// Try a deferred or failed install again after this long.
    #[arg(long, default_value = "60s")]
    retry_interval: humantime::Duration,
    /// Local endpoint for `pollen-node status` and Prometheus (`/metrics`);
    /// loopback only.
    #[arg(long, default_value = "127.0.0.1:0", value_parser = parse_api_addr)]
    api: Option<std::net::SocketAddr>,
    /// Log lines on stderr as text or as one JSON object per line.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

fn parse_api_addr(s: &str) -> Result<std::net::SocketAddr, String> {
    let addr: std::net::SocketAddr = s.parse().map_err(|e| format!("{e}"))?;
    if addr.ip().is_loopback() {
        Ok(addr)
    } else {
        Err("the local endpoint must be on loopback (127.0.0.1 or ::1)".into())
    }
}

/// The update lifecycle's settings (see the README's device guide).
#[derive(Args, Debug, Clone)]
struct LifecycleOpt {
    /// Run before staging; a nonzero exit defers the install (retried later).
    #[arg(long, value_name = "COMMAND")]
    precondition_hook: Option<String>,
    /// Run after staging, to put the artifact where the device needs it.
    #[arg(long, value_name = "COMMAND")]
    install_hook: Option<String>,
    /// Run after the switch; failure or timeout rolls back to the previous slot.
    #[arg(long, value_name = "COMMAND")]
    health_hook: Option<String>,
    /// Each hook is killed after this long and counts as failed.
    #[arg(long, default_value = "5m")]
    hook_timeout: humantime::Duration,
    /// Install attempts per release (interrupted ones included) before giving up.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    max_attempts: u32,
    /// Most the data directory may take on disk (both slots and the
    /// database), e.g. 2GiB: a release that would not fit is refused, with
    /// a status error, before any byte of it is written. Unset: no limit.
    #[arg(long, value_name = "SIZE", value_parser = pollen_node::cli_support::parse_size)]
    store_budget: Option<u64>,
}

impl LifecycleOpt {
    fn config(&self, data: &std::path::Path, channel: &str) -> UpdateConfig {
        UpdateConfig {
            data_dir: data.to_owned(),
            channel: channel.to_owned(),
            hooks: Hooks {
                precondition: self.precondition_hook.clone(),
                install: self.install_hook.clone(),
                health: self.health_hook.clone(),
                timeout: self.hook_timeout.into(),
            },
            max_attempts: self.max_attempts,
        }
    }
}

#[derive(Args, Debug)]
struct RunOpt {
    #[command(flatten)]
    mesh: MeshOpt,
    #[command(flatten)]
    lifecycle: LifecycleOpt,
    /// Write each completed release's artifact here (atomically).
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct FetchOpt {
    #[command(flatten)]
    mesh: MeshOpt,
    /// Write the reassembled artifact here.
    #[arg(long)]
    out: PathBuf,
    /// Give up after this long, e.g. 10m.
    #[arg(long, default_value = "1h")]
    timeout: humantime::Duration,
    /// After completing, keep serving the site until every site peer it
    /// knows is complete too, or this long, so the site does not fetch its
    /// chunks across the uplink again.
    #[arg(long, default_value = "60s")]
    linger: humantime::Duration,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct ImportOpt {
    /// The node's data directory (created if missing).
    #[arg(long)]
    data: PathBuf,
    /// Trust file, or a single publisher `.pub` file.
    #[arg(long)]
    trust: PathBuf,
    /// The signed manifest file.
    #[arg(long, required_unless_present = "new_policy", requires = "chunks")]
    manifest: Option<PathBuf>,
    /// Folder of chunk files named by id, or a Pollen store directory.
    #[arg(long, requires = "manifest")]
    chunks: Option<PathBuf>,
    /// A newer signed fleet policy carried offline (a key rotation, a
    /// revocation or a recall): taken first, if it is a valid rotation of
    /// the policy the node holds. To a running node it goes through its
    /// local endpoint.
    #[arg(long)]
    new_policy: Option<PathBuf>,
    /// Write the reassembled artifact here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// This device's hardware model: releases for other models are refused.
    #[arg(long)]
    hardware: Option<String>,
    /// The channel this device follows: releases for other channels are refused.
    #[arg(long)]
    channel: Option<String>,
    /// A signed rollout control carried with the release (a halted release is refused).
    #[arg(long)]
    control: Option<PathBuf>,
    /// Only store the release (to seed it to others); do not install it.
    #[arg(long)]
    no_install: bool,
    #[command(flatten)]
    lifecycle: LifecycleOpt,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct CheckOpt {
    #[arg(long)]
    data: PathBuf,
    #[arg(long)]
    json: bool,
}

mod id_cmd;
mod mesh;
mod status_cmd;

fn main() -> ExitCode {
    let cli: Cli = match pollen_node::config::parse_args(std::env::args_os(), &["run", "fetch"]) {
        Ok(cli) => cli,
        Err(ConfigError::Cli(e)) => e.exit(),
        Err(e) => {
            eprintln!("pollen-node: error: {e}");
            return ExitCode::from(2);
        }
    };
    init_tracing(match &cli.command {
        Command::Run(opt) => opt.mesh.log_format,
        Command::Fetch(opt) => opt.mesh.log_format,
        _ => LogFormat::Text,
    });
    let result = match cli.command {
        Command::Import(opt) => run_import(opt),
        Command::Check(opt) => run_check(opt),
        Command::Run(opt) => mesh::run(opt.mesh, opt.lifecycle, opt.out),
        Command::Fetch(opt) => mesh::fetch(opt),
        Command::Status(opt) => status_cmd::show(&opt.data, opt.json),
        Command::Id(opt) => id_cmd::show(opt),
        Command::Config(o) => match o.check {
            None => print_default_config(),
            Some(file) => match pollen_node::config::check_file::<Cli>(
                "pollen-node",
                "run",
                &file,
                &["run", "fetch"],
            ) {
                Ok(()) => {
                    println!("{}: ok", file.display());
                    Ok(())
                }
                Err(ConfigError::Cli(e)) => e.exit(),
                Err(e) => {
                    eprintln!("pollen-node: error: {e}");
                    return ExitCode::from(2);
                }
            },
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            fatal("pollen-node", &one_line(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

/// `config --default`: the file of `run`, from its flags' definitions.
fn print_default_config() -> anyhow::Result<()> {
    let cmd = Cli::command();
    let run = cmd.find_subcommand("run").context("no run subcommand")?;
    print!(
        "{}",
        pollen_node::config::default_file(
            run,
            "pollen-node run --config FILE (or POLLEN_CONFIG=FILE)"
        )
    );
    Ok(())
}

/// Largest manifest file read; the decoder refuses anything bigger anyway.
const MAX_MANIFEST_FILE: u64 = pollen_core::manifest::MAX_MANIFEST_BYTES as u64 + 1;

fn read_manifest(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .with_context(|| format!("opening manifest {}", path.display()))?
        .take(MAX_MANIFEST_FILE)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading manifest {}", path.display()))?;
    Ok(bytes)
}

fn run_import(opt: ImportOpt) -> anyhow::Result<()> {
    let now = pollen_node::unix_now();
    let policy = pollen_node::trust_file::load_policy(&opt.trust, now)?;
    if let Some(path) = &opt.new_policy {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        match pollen_node::api::running_daemon(&opt.data) {
            Ok(addr) => {
                pollen_node::api::request(addr, "POST", "/policy", &bytes)?;
                println!(
                    "fleet policy handed to the running node (its log says whether it took it)"
                );
            }
            Err(_) => {
                let version =
                    pollen_node::import::import_policy(&opt.data, policy.clone(), &bytes, now)?;
                println!("fleet policy version {version} held");
            }
        }
    }
    let (Some(manifest), Some(chunks)) = (&opt.manifest, &opt.chunks) else {
        return Ok(());
    };
    let manifest = read_manifest(manifest)?;
    let source = ChunkSource::open(chunks)?;
    let control = match &opt.control {
        Some(path) => Some(
            std::fs::read(path).with_context(|| format!("reading control {}", path.display()))?,
        ),
        None => None,
    };
    let channel = match &opt.channel {
        Some(c) => c.clone(),
        None => SignedManifest::decode(&manifest)
            .map(|m| m.manifest().channel.clone())
            .unwrap_or_default(),
    };
    let install = (!opt.no_install).then(|| opt.lifecycle.config(&opt.data, &channel));
    let req = ImportRequest {
        data_dir: opt.data,
        control,
        install,
        policy,
        manifest,
        source,
        out: opt.out,
        hardware: opt.hardware,
        channel: opt.channel,
        now: pollen_node::unix_now(),
        store_budget: opt.lifecycle.store_budget,
    };
    let mut progress = Progress::new("import", 0, "chunks");
    let report = import(req, |done, total| progress.set(done as u64, total as u64))?;
    progress.finish();
    if opt.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "imported release {} ({}) on channel {}",
            report.release, report.version, report.channel
        );
        println!("manifest   {}", report.manifest_id);
        println!(
            "chunks     {} total, {} already held, {} new ({} bytes)",
            report.chunks_total, report.chunks_present, report.chunks_new, report.bytes_new
        );
        println!(
            "artifact   {} bytes, blake3 {}",
            report.artifact_bytes, report.artifact_blake3
        );
        if let Some(out) = &report.out {
            println!("written to {}", out.display());
        }
        if let Some(outcome) = &report.install {
            println!(
                "install    {outcome}; lifecycle {}, active slot {}",
                report.phase.as_deref().unwrap_or("-"),
                report.active_slot.as_deref().unwrap_or("none")
            );
        }
        println!(
            "floor      release {} (older releases are refused)",
            report.floor
        );
    }
    if report.install_failed {
        anyhow::bail!(
            "release {} was not installed ({}): {}",
            report.release,
            report.phase.as_deref().unwrap_or("-"),
            report.last_error.as_deref().unwrap_or("no error recorded")
        );
    }
    Ok(())
}

#[derive(serde::Serialize)]
struct CheckReport {
    chunks: usize,
    chunk_bytes: u64,
    manifests: usize,
    problems: Vec<String>,
}

fn run_check(opt: CheckOpt) -> anyhow::Result<()> {
    let dir = store_dir(&opt.data);
    anyhow::ensure!(RocksStore::exists(&dir), "no store at {}", dir.display());
    // A device's releases live in its slot images: every chunk at every
    // offset is checked against its id.
    let images = pollen_node::store::ImageStore::open_read_only(
        RocksStore::open_read_only(&dir)?,
        pollen_node::store::Places::Slots(pollen_node::update::Slots::new(&opt.data)),
    )?;
    let (chunks, chunk_bytes, problems) = images.check_images()?;
    let mut report = CheckReport {
        chunks: chunks as usize,
        chunk_bytes,
        manifests: 0,
        problems,
    };
    // Chunk bytes in pack files (a seeder's store): each read and hashed.
    let store = images.db();
    for id in store.chunk_ids()? {
        report.chunks += 1;
        match store.get_chunk(&id)? {
            Some(bytes) if id.matches(&bytes) => report.chunk_bytes += bytes.len() as u64,
            Some(_) => report
                .problems
                .push(format!("chunk {id} does not match its id")),
            None => report
                .problems
                .push(format!("chunk {id} is listed but its bytes are missing")),
        }
    }
    for id in store.manifest_ids()? {
        report.manifests += 1;
        let bytes = store.get_manifest(&id)?.unwrap_or_default();
        match SignedManifest::decode(&bytes) {
            Ok(m) if m.id() == id => {}
            Ok(_) => report
                .problems
                .push(format!("manifest {id} is stored under the wrong id")),
            Err(e) => report.problems.push(format!("manifest {id}: {e}")),
        }
    }
    if opt.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{} chunks ({} bytes), {} manifests",
            report.chunks, report.chunk_bytes, report.manifests
        );
        for p in &report.problems {
            println!("problem: {p}");
        }
    }
    anyhow::ensure!(
        report.problems.is_empty(),
        "{} problem(s) found",
        report.problems.len()
    );
    Ok(())
}
