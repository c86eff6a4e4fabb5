//! `pollen-seeder rollout` and `pollen-seeder status`: steering a release's
//! staged rollout and reading the fleet's status records.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use pollen_core::fleet::stage_counts;
use pollen_core::manifest::{SignedManifest, TrustPolicy};
use pollen_core::rollout::{current_stage, RolloutControl, SignedControl, VerifiedControl};
use pollen_core::status::StatusRecord;
use pollen_node::store::{RocksStore, Store};
use pollen_node::{api, controls};
use pollen_seeder::keyfile;
use pollen_seeder::rollout::{next_control, Step};

#[derive(Args, Debug)]
pub struct RolloutOpt {
    /// Secret key file (a key the devices' trust policy holds).
    #[arg(long)]
    key: PathBuf,
    /// The publisher's store (the one `serve` serves; it may be running).
    #[arg(long)]
    store: PathBuf,
    #[arg(long)]
    channel: String,
    /// Release number to steer (default: the newest on the channel).
    #[arg(long)]
    release: Option<u64>,
    /// Also write the signed control here, to carry to offline devices.
    #[arg(long)]
    out: Option<PathBuf>,
    /// The fleet policy (or trust file) devices hold, for --origin: the
    /// key must hold its operator role; a signed policy is published too.
    #[arg(long, requires = "origin")]
    policy: Option<PathBuf>,
    #[command(flatten)]
    origin: crate::origin_cmd::AfterOpt,
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    step: StepCmd,
}

#[derive(Subcommand, Debug, Clone, Copy)]
enum StepCmd {
    /// Open the next stage now.
    Promote,
    /// Stop: devices that have not installed the release will not.
    Halt,
    /// Undo a halt.
    Resume,
}

#[derive(Args, Debug)]
pub struct StatusOpt {
    /// The publisher's store (read-only; `serve` may be running).
    #[arg(long)]
    store: PathBuf,
    /// Only this channel.
    #[arg(long)]
    channel: Option<String>,
    #[arg(long)]
    json: bool,
}

/// Every manifest in the store (of `channel`, if given), newest release first.
fn manifests(store: &RocksStore, channel: Option<&str>) -> anyhow::Result<Vec<SignedManifest>> {
    let mut out = Vec::new();
    for id in store.manifest_ids()? {
        let Some(bytes) = store.get_manifest(&id)? else {
            continue;
        };
        let m = SignedManifest::decode(&bytes).with_context(|| format!("stored manifest {id}"))?;
        if channel.is_none_or(|c| m.manifest().channel == c) {
            out.push(m);
        }
    }
    out.sort_by_key(|m| std::cmp::Reverse(m.manifest().release));
    Ok(out)
}

fn control_of(store: &RocksStore, m: &SignedManifest) -> anyhow::Result<Option<RolloutControl>> {
    Ok(controls::load_bytes(store, &m.id())?
        .and_then(|b| SignedControl::decode(&b).ok())
        .map(|s| s.control().clone()))
}

fn open_ro(dir: &Path) -> anyhow::Result<RocksStore> {
    anyhow::ensure!(RocksStore::exists(dir), "no store at {}", dir.display());
    Ok(RocksStore::open_read_only(dir)?)
}

pub fn rollout(o: RolloutOpt) -> anyhow::Result<()> {
    let key = keyfile::load_secret(&o.key)?;
    let now = pollen_node::unix_now();
    // --origin is checked before the control is signed or delivered.
    let origin = crate::origin_cmd::prepare(&o.origin, &o.key, o.policy.as_deref(), &o.store)?;
    let (manifest, current) = {
        let store = open_ro(&o.store)?;
        let all = manifests(&store, Some(&o.channel))?;
        let m = match o.release {
            Some(n) => all.into_iter().find(|m| m.manifest().release == n),
            None => all.into_iter().next(),
        }
        .with_context(|| format!("no such release on channel {} in the store", o.channel))?;
        let current = control_of(&store, &m)?;
        (m, current)
    };
    let step = match o.step {
        StepCmd::Promote => Step::Promote,
        StepCmd::Halt => Step::Halt,
        StepCmd::Resume => Step::Resume,
    };
    let rollout = &manifest.manifest().rollout;
    let next = next_control(
        &o.channel,
        manifest.id(),
        rollout,
        current.as_ref(),
        step,
        now,
    )?;
    let signed = SignedControl::sign(next.clone(), &[&key]);
    let bytes = signed.encode();
    // Check it as a device will (with this key trusted) before anyone sees it.
    let verified = VerifiedControl::from_bytes(&bytes, &TrustPolicy::single(key.public()))?;
    let delivered = match api::running_daemon(&o.store) {
        Ok(addr) => {
            api::request(addr, "POST", "/control", &bytes)?;
            format!("handed to the running seeder at {addr}")
        }
        Err(_) => {
            let store = RocksStore::open(&o.store)?;
            controls::save_if_newer(&store, &verified)?;
            "stored; `pollen-seeder serve` announces it when it starts".to_owned()
        }
    };
    if let Some(out) = &o.out {
        std::fs::write(out, &bytes).with_context(|| format!("writing {}", out.display()))?;
    }
    let exported = match origin {
        Some(p) => Some(crate::origin_cmd::run_after(
            p,
            &o.store,
            &o.channel,
            vec![bytes.clone()],
        )?),
        None => None,
    };
    let stage = current_stage(rollout, next.promoted, now);
    let share = stage.map(|i| f64::from(rollout.stages[i].share) / 100.0);
    if o.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "manifest_id": manifest.id().to_hex(),
                "release": manifest.manifest().release,
                "seq": next.seq,
                "halted": next.halted,
                "promoted": next.promoted,
                "open_stage": stage,
                "open_share_percent": share,
                "delivered": delivered,
                "origin": exported,
            }))?
        );
    } else {
        println!(
            "release {} ({}): {}; stage {} of {} open ({}% of the fleet)",
            manifest.manifest().release,
            manifest.manifest().version,
            if next.halted { "HALTED" } else { "rolling out" },
            stage.map_or(0, |i| i + 1),
            rollout.stages.len(),
            share.unwrap_or(0.0)
        );
        println!("control    seq {}, {delivered}", next.seq);
        if let Some(e) = &exported {
            print!("{}", pollen_seeder::origin_export::summary(e));
        }
    }
    Ok(())
}

pub fn status(o: StatusOpt) -> anyhow::Result<()> {
    let store = open_ro(&o.store)?;
    let now = pollen_node::unix_now();
    let mut records: Vec<StatusRecord> = Vec::new();
    for (key, bytes) in store.state_with_prefix(pollen_node::store::keys::STATUS_PREFIX)? {
        match pollen_node::status_store::record(&bytes) {
            Ok(r) => records.push(r),
            Err(e) => tracing::warn!(%key, error = %e, "stored status record refused"),
        }
    }
    records.retain(|r| o.channel.as_deref().is_none_or(|c| r.channel == c));
    records.sort_by(|a, b| a.device.cmp(&b.device));
    let mut releases = Vec::new();
    for m in manifests(&store, o.channel.as_deref())? {
        let rollout = &m.manifest().rollout;
        let control = control_of(&store, &m)?;
        let promoted = control.as_ref().and_then(|c| c.promoted);
        let stages = stage_counts(&m.id(), rollout, &records);
        let stages: Vec<serde_json::Value> = stages
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let mut v = serde_json::to_value(s).unwrap_or_default();
                v["stage"] = serde_json::json!(i + 1);
                v["share_percent"] = serde_json::json!(f64::from(s.share) / 100.0);
                v["failure_percent"] = serde_json::json!(f64::from(s.failure_rate()) / 100.0);
                v
            })
            .collect();
        releases.push(serde_json::json!({
            "manifest_id": m.id().to_hex(),
            "channel": m.manifest().channel,
            "release": m.manifest().release,
            "version": m.manifest().version,
            "halted": control.as_ref().is_some_and(|c| c.halted),
            "open_stage": current_stage(rollout, promoted, now).map(|i| i + 1),
            "max_failures_percent": rollout.max_failures.map(|b| f64::from(b) / 100.0),
            "stages": stages,
        }));
    }
    let devices: Vec<serde_json::Value> = records
        .iter()
        .map(|r| {
            serde_json::json!({
                "device": r.device,
                "site": r.site,
                "hardware": r.hardware,
                "channel": r.channel,
                "phase": r.phase.as_str(),
                "installed": r.installed.as_ref().map(|t| t.release),
                "target": r.target.as_ref().map(|t| t.release),
                "note": r.note,
                "last_error": r.last_error,
                "attempts": r.attempts,
                "reported_seconds_ago": now.saturating_sub(r.seq / 1000),
            })
        })
        .collect();
    if o.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "releases": releases,
                "devices": devices,
            }))?
        );
        return Ok(());
    }
    print_tables(&releases, &devices);
    Ok(())
}

fn print_tables(releases: &[serde_json::Value], devices: &[serde_json::Value]) {
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    for r in releases {
        println!(
            "release {} ({}) on {} — {}{}",
            r["release"],
            r["version"].as_str().unwrap_or("?"),
            r["channel"].as_str().unwrap_or("?"),
            if r["halted"] == true {
                "HALTED"
            } else {
                "rolling out"
            },
            r["open_stage"]
                .as_u64()
                .map_or(String::new(), |s| format!(", stage {s} open")),
        );
        println!(
            "  {:>5} {:>7} {:>5} {:>11} {:>7} {:>10} {:>9} {:>6} {:>11}",
            "stage",
            "share",
            "seen",
            "downloading",
            "waiting",
            "installing",
            "installed",
            "failed",
            "rolled-back"
        );
        for s in r["stages"].as_array().into_iter().flatten() {
            println!(
                "  {:>5} {:>7} {:>5} {:>11} {:>7} {:>10} {:>9} {:>6} {:>11}",
                n(&s["stage"]),
                format!("{}%", s["share_percent"].as_f64().unwrap_or(0.0)),
                n(&s["seen"]),
                n(&s["downloading"]),
                n(&s["waiting"]),
                n(&s["installing"]),
                n(&s["installed"]),
                n(&s["failed"]),
                n(&s["rolled_back"]),
            );
        }
    }
    println!("{} device(s) reporting", devices.len());
    let release = |v: &serde_json::Value| v.as_u64().map_or("-".to_owned(), |n| n.to_string());
    if !devices.is_empty() {
        println!(
            "  {:<24} {:<10} {:<12} {:>9} {:>6}  last error",
            "device", "site", "phase", "installed", "target"
        );
    }
    for d in devices {
        println!(
            "  {:<24} {:<10} {:<12} {:>9} {:>6}  {}",
            d["device"].as_str().unwrap_or("?"),
            d["site"].as_str().unwrap_or("-"),
            d["phase"].as_str().unwrap_or("?"),
            release(&d["installed"]),
            release(&d["target"]),
            d["last_error"].as_str().unwrap_or(""),
        );
    }
}
