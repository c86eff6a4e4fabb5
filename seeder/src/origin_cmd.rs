//! The CLI side of origin exports: `export --origin DIR`, and the
//! `--origin DIR` of `publish` and `rollout`, which is checked before the
//! command does anything and runs once it succeeded.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use pollen_core::manifest::SecretKey;
use pollen_core::trust::VerifiedPolicy;
use pollen_node::store::RocksStore;
use pollen_seeder::keyfile;
use pollen_seeder::origin_export::{
    check_keys, export, held_policy, summary, ExportReport, OriginRequest, MIN_INDEX_TTL_SECS,
};

/// `--origin` on `publish` and `rollout`.
#[derive(Args, Debug, Clone)]
pub struct AfterOpt {
    /// Once the command succeeded, export the channel into this origin
    /// tree (`export --origin`): the channel's chunks, manifest, control,
    /// the fleet policy, then a new signed index.
    #[arg(long, value_name = "DIR")]
    pub origin: Option<PathBuf>,
    /// Operator key(s) signing the channel index (repeatable; default:
    /// --key, which for `publish` under a fleet policy is a release key
    /// and will not do).
    #[arg(long, value_name = "SECRET", requires = "origin")]
    pub origin_key: Vec<PathBuf>,
    /// How long the channel index is valid: devices refuse an origin or
    /// mirror whose index is older (run `export --origin` again before).
    #[arg(long, default_value = "7d", value_name = "DURATION")]
    pub index_ttl: humantime::Duration,
}

/// An origin export checked before the command's own work.
#[derive(Debug)]
pub struct Prepared {
    dir: PathBuf,
    keys: Vec<SecretKey>,
    policy: Option<VerifiedPolicy>,
    ttl: u64,
}

fn load_keys(paths: &[PathBuf]) -> anyhow::Result<Vec<SecretKey>> {
    paths.iter().map(|p| Ok(keyfile::load_secret(p)?)).collect()
}

/// The policy of the store at `store` (if there is one) or `given`,
/// whichever is newer.
fn policy_of(
    store: &Path,
    given: Option<VerifiedPolicy>,
) -> anyhow::Result<Option<VerifiedPolicy>> {
    if RocksStore::exists(store) {
        let ro = RocksStore::open_read_only(store)?;
        Ok(held_policy(&ro, given)?)
    } else {
        Ok(given)
    }
}

/// Checks `--origin` (keys against the operator role, the folder) before
/// the command does anything; `None` without `--origin`.
pub fn prepare(
    o: &AfterOpt,
    default_key: &Path,
    policy: Option<&Path>,
    store: &Path,
) -> anyhow::Result<Option<Prepared>> {
    let Some(dir) = &o.origin else {
        return Ok(None);
    };
    anyhow::ensure!(
        o.index_ttl.as_secs() >= MIN_INDEX_TTL_SECS,
        "--index-ttl must be at least {MIN_INDEX_TTL_SECS} s"
    );
    let paths = if o.origin_key.is_empty() {
        vec![default_key.to_owned()]
    } else {
        o.origin_key.clone()
    };
    let keys = load_keys(&paths)?;
    let given = match policy {
        Some(p) => Some(pollen_node::trust_file::load_policy(
            p,
            pollen_node::unix_now(),
        )?),
        None => None,
    };
    let policy = policy_of(store, given)?;
    check_keys(&keys, policy.as_ref()).context("--origin")?;
    pollen_seeder::origin_tree::check_dir(dir).context("--origin")?;
    Ok(Some(Prepared {
        dir: dir.clone(),
        keys,
        policy,
        ttl: o.index_ttl.as_secs(),
    }))
}

/// Runs a prepared export of `channel` (with `controls` in hand), once
/// the command itself succeeded.
pub fn run_after(
    p: Prepared,
    store: &Path,
    channel: &str,
    controls: Vec<Vec<u8>>,
) -> anyhow::Result<ExportReport> {
    let ro = RocksStore::open_read_only(store)?;
    let report = export(
        &ro,
        OriginRequest {
            dir: p.dir,
            channels: vec![channel.to_owned()],
            keys: p.keys,
            policy: p.policy,
            index_ttl_secs: p.ttl,
            verify: false,
            now_ms: unix_now_ms(),
            controls,
        },
    )
    .context("--origin (the command itself succeeded; run `export --origin` again)")?;
    Ok(report)
}

/// `export --origin DIR`.
#[allow(clippy::too_many_arguments)]
pub fn export_origin(
    store: &Path,
    dir: &Path,
    channels: Vec<String>,
    keys: &[PathBuf],
    policy: Option<&Path>,
    ttl: u64,
    verify: bool,
    json: bool,
) -> anyhow::Result<()> {
    anyhow::ensure!(RocksStore::exists(store), "no store at {}", store.display());
    let keys = load_keys(keys)?;
    let given = match policy {
        Some(p) => Some(pollen_node::trust_file::load_policy(
            p,
            pollen_node::unix_now(),
        )?),
        None => None,
    };
    let ro = RocksStore::open_read_only(store)?;
    let report = export(
        &ro,
        OriginRequest {
            dir: dir.to_owned(),
            channels,
            keys,
            policy: given,
            index_ttl_secs: ttl,
            verify,
            now_ms: unix_now_ms(),
            controls: Vec::new(),
        },
    )?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", summary(&report));
    }
    Ok(())
}

fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
