//! `pollen-node`: the agent that runs on every device.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use libp2p::Multiaddr;
use pollen_core::manifest::SignedManifest;
use pollen_node::cli_support::{init_tracing, one_line, parse_rate, Progress};
use pollen_node::import::{import, store_dir, ChunkSource, ImportRequest};
use pollen_node::store::{RocksStore, Store};
use pollen_node::trust_file::load_trust;

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
}

#[derive(Args, Debug)]
struct MeshOpt {
    /// The node's data directory (created if missing).
    #[arg(long)]
    data: PathBuf,
    /// Trust file, or a single publisher `.pub` file.
    #[arg(long)]
    trust: PathBuf,
    /// The release channel to follow.
    #[arg(long)]
    channel: String,
    /// Address to listen on (repeatable).
    #[arg(long, default_value = "/ip4/0.0.0.0/tcp/0")]
    listen: Vec<Multiaddr>,
    /// A peer to dial and keep dialing (repeatable): the seeder across the
    /// uplink, or LAN peers where multicast is blocked.
    #[arg(long)]
    peer: Vec<Multiaddr>,
    /// This node's site (its LAN); peers on the same site are preferred.
    #[arg(long)]
    site: Option<String>,
    /// Budget for fetching across the uplink, e.g. 8mbit or 1MB/s.
    #[arg(long, value_parser = parse_rate)]
    uplink_rate: Option<u64>,
    /// Fetch only from the --peer peers (the central baseline).
    #[arg(long)]
    no_lan: bool,
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
}

#[derive(Args, Debug)]
struct RunOpt {
    #[command(flatten)]
    mesh: MeshOpt,
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
    #[arg(long)]
    manifest: PathBuf,
    /// Folder of chunk files named by id, or a Pollen store directory.
    #[arg(long)]
    chunks: PathBuf,
    /// Write the reassembled artifact here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// This device's hardware model: releases for other models are refused.
    #[arg(long)]
    hardware: Option<String>,
    /// The channel this device follows: releases for other channels are refused.
    #[arg(long)]
    channel: Option<String>,
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

mod mesh;

fn main() -> ExitCode {
    init_tracing();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Import(opt) => run_import(opt),
        Command::Check(opt) => run_check(opt),
        Command::Run(opt) => mesh::run(opt.mesh, opt.out),
        Command::Fetch(opt) => mesh::fetch(opt),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pollen-node: error: {}", one_line(e.as_ref()));
            ExitCode::FAILURE
        }
    }
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
    let trust = load_trust(&opt.trust)?;
    let manifest = read_manifest(&opt.manifest)?;
    let source = ChunkSource::open(&opt.chunks)?;
    let req = ImportRequest {
        data_dir: opt.data,
        trust,
        manifest,
        source,
        out: opt.out,
        hardware: opt.hardware,
        channel: opt.channel,
        now: pollen_node::unix_now(),
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
        println!(
            "floor      release {} (older releases are now refused)",
            report.floor
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
    let store = RocksStore::open_read_only(&dir)?;
    let mut report = CheckReport {
        chunks: 0,
        chunk_bytes: 0,
        manifests: 0,
        problems: Vec::new(),
    };
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
