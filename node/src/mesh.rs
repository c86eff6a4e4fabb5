//! `pollen-node run` and `pollen-node fetch`: the CLI edge of the driver.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use pollen_core::admission::AdmissionConfig;
use pollen_core::manifest::SignedManifest;
use pollen_node::api;
use pollen_node::cli_support::{note, Progress};
use pollen_node::driver::{Driver, Mode, NodeConfig, NodeEvent};
use pollen_node::import::{open_device_store, open_image_store};
use pollen_node::net::Limits;
use pollen_node::notify;
use pollen_node::origin::OriginConfig;
use pollen_node::store::{reassemble_to_file, ImageStore, Places, Store};
use pollen_node::trust_file::{load_credential, load_policy};
use tokio::sync::mpsc;

use crate::{FetchOpt, LifecycleOpt, MeshOpt};

fn config(opt: &MeshOpt, mode: Mode, linger: Duration) -> anyhow::Result<NodeConfig> {
    anyhow::ensure!(!opt.channel.is_empty(), "--channel must not be empty");
    Ok(NodeConfig {
        channel: opt.channel.clone(),
        policy: Some(load_policy(&opt.trust, pollen_node::unix_now())?),
        credential: match &opt.credential {
            Some(c) => Some(load_credential(c)?),
            None => None,
        },
        hardware: opt.hardware.clone(),
        listen: opt.listen.clone(),
        external: opt.external_address.clone(),
        peers: opt.peer.clone(),
        site: opt.site.clone(),
        uplink_rate: opt.uplink_rate,
        no_lan: opt.no_lan,
        cross_site: !opt.no_cross_site,
        max_remote_peers: opt.max_remote_peers,
        linger,
        admission: AdmissionConfig::default(),
        mdns: !opt.no_mdns,
        mode,
        seed: opt.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0)
        }),
        max_peers: opt.max_peers,
        limits: Limits::default(),
        transport: pollen_node::net::Transport::Network,
        device_id: opt.device_id.clone(),
        lifecycle: None,
        retry_interval: opt.retry_interval.into(),
        status_interval: opt.status_interval.into(),
        publisher_key: None,
    })
}

/// The origin settings of `--origin`, `--origin-ca` and `--origin-poll`.
fn origin_config(opt: &MeshOpt) -> anyhow::Result<Option<OriginConfig>> {
    if opt.origin.is_empty() {
        anyhow::ensure!(opt.origin_ca.is_none(), "--origin-ca needs an --origin");
        return Ok(None);
    }
    let mut config = OriginConfig::new(opt.origin.clone());
    config.ca_file = opt.origin_ca.clone();
    config.poll = opt.origin_poll.into();
    Ok(Some(config))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// Prints what the driver reports: listen addresses and completions on
/// stdout (scripts read them), progress on stderr. With `out`, each
/// completed release is reassembled there.
async fn watch(
    mut rx: mpsc::Receiver<NodeEvent>,
    label: &'static str,
    out: Option<(Arc<ImageStore>, std::path::PathBuf)>,
) {
    let mut progress: Option<Progress> = None;
    let mut ready = false;
    while let Some(e) = rx.recv().await {
        match e {
            // `fetch` keeps stdout for its result (JSON with --json).
            NodeEvent::Listening(addr) if label == "fetch" => note(&format!("listening {addr}")),
            NodeEvent::Listening(addr) => {
                println!("listening {addr}");
                if !std::mem::replace(&mut ready, true) {
                    notify::ready(&format!("listening on {addr}"));
                }
            }
            NodeEvent::NewRelease {
                manifest,
                release,
                chunks,
                held,
            } => {
                note(&format!(
                    "{label}: release {release} ({manifest}): {held}/{chunks} chunks held"
                ));
                progress = Some(Progress::new(label, u64::from(chunks), "chunks"));
            }
            NodeEvent::Progress { held, total } => {
                if let Some(p) = &mut progress {
                    p.set(u64::from(held), u64::from(total));
                }
            }
            NodeEvent::Complete { manifest, report } => {
                if let Some(p) = &progress {
                    p.finish();
                }
                note(&format!(
                    "{label}: release {manifest} complete and verified"
                ));
                if let Some((store, path)) = &out {
                    let (store, path) = (store.clone(), path.clone());
                    let written =
                        tokio::task::spawn_blocking(move || write_out(&store, manifest, &path))
                            .await;
                    match written {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => note(&format!("{label}: writing the artifact failed: {e:#}")),
                        Err(e) => note(&format!("{label}: writing the artifact failed: {e}")),
                    }
                }
                if label == "node" {
                    println!(
                        "complete {}",
                        serde_json::to_string(&report).unwrap_or_default()
                    );
                }
            }
            NodeEvent::Banned(peer) => note(&format!("{label}: banned {peer} (bad chunks)")),
            // Logged by the driver (warn), with the reason.
            NodeEvent::ManifestRefused(_) | NodeEvent::PeerRefused(_) => {}
        }
    }
}

fn write_out(
    store: &ImageStore,
    id: pollen_core::ManifestId,
    path: &std::path::Path,
) -> anyhow::Result<()> {
    let bytes = store
        .get_manifest(&id)?
        .context("manifest vanished from the store")?;
    let signed = SignedManifest::decode(&bytes)?;
    reassemble_to_file(store, signed.manifest(), path)?;
    Ok(())
}

pub fn run(
    opt: MeshOpt,
    lifecycle: LifecycleOpt,
    out: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    let mut cfg = config(&opt, Mode::Run, Duration::ZERO)?;
    cfg.lifecycle = Some(lifecycle.config(&opt.data, &opt.channel));
    let store = Arc::new(open_device_store(&opt.data, lifecycle.store_budget)?);
    runtime()?.block_on(async move {
        let (tx, rx) = mpsc::channel(64);
        let heartbeat = notify::Heartbeat::new();
        let mut driver =
            Driver::new(store.clone(), cfg, Some(tx))?.with_heartbeat(heartbeat.clone());
        if let Some(origin) = origin_config(&opt)? {
            driver = driver.with_origins(origin)?;
        }
        notify::spawn_watchdog(heartbeat);
        if let Some(addr) = opt.api {
            let (shared, commands) = api::start(addr, &opt.data).await?;
            driver = driver.with_api(shared, commands);
        }
        note(&format!("peer id {}", driver.peer_id()));
        tokio::spawn(watch(rx, "node", out.map(|o| (store, o))));
        let span = tracing::info_span!("node", peer = %driver.peer_id());
        let shutdown = async {
            pollen_node::cli_support::shutdown_signal().await;
            notify::stopping();
        };
        tracing::Instrument::instrument(driver.run(shutdown), span).await?;
        Ok(())
    })
}

pub fn fetch(opt: FetchOpt) -> anyhow::Result<()> {
    let cfg = config(&opt.mesh, Mode::Fetch, opt.linger.into())?;
    // Chunks go straight into the output (beside it until complete).
    let out =
        std::path::absolute(&opt.out).with_context(|| format!("--out {}", opt.out.display()))?;
    let store = Arc::new(open_image_store(&opt.mesh.data, Places::Output(out), None)?);
    let timeout: Duration = opt.timeout.into();
    let report = runtime()?.block_on({
        let store = store.clone();
        async move {
            let (tx, rx) = mpsc::channel(64);
            let mut driver = Driver::new(store, cfg, Some(tx))?;
            if let Some(origin) = origin_config(&opt.mesh)? {
                driver = driver.with_origins(origin)?;
            }
            tokio::spawn(watch(rx, "fetch", None));
            let span = tracing::info_span!("node", peer = %driver.peer_id());
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
            let run = tokio::spawn(tracing::Instrument::instrument(
                driver.run(async {
                    let _ = stop_rx.await;
                }),
                span,
            ));
            let timer = tokio::time::sleep(timeout);
            tokio::pin!(run, timer);
            tokio::select! {
                done = &mut run => anyhow::Ok(done??),
                _ = &mut timer => {
                    let _ = stop_tx.send(());
                    let report = run.await??;
                    anyhow::Ok(report)
                }
            }
        }
    })?;
    if !report.complete {
        bail!(
            "timed out after {} with {}/{} chunks of {}",
            humantime::format_duration(timeout),
            report.chunks_held_at_start as u64 + report.chunks_fetched,
            report.chunks_total,
            report.manifest_id.as_deref().unwrap_or("no release yet")
        );
    }
    let id = report.manifest_id.as_deref().unwrap_or_default();
    let mut raw = [0u8; 32];
    hex::decode_to_slice(id, &mut raw).context("manifest id")?;
    let bytes = store
        .get_manifest(&pollen_core::ManifestId(raw))?
        .context("manifest vanished from the store")?;
    let verified =
        pollen_core::manifest::VerifiedManifest::assume_verified(SignedManifest::decode(&bytes)?);
    // Verified when it was taken up; its chunks are in the output already.
    let (_, whole) = store
        .complete_image(&verified)?
        .context("the store keeps no image")?;
    if opt.json {
        let mut value = serde_json::to_value(&report)?;
        value["out"] = serde_json::json!(opt.out);
        value["artifact_blake3"] = serde_json::json!(hex::encode(whole.blake3));
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!(
            "release {} complete: {} bytes, blake3 {}",
            id,
            whole.bytes,
            hex::encode(whole.blake3)
        );
        println!(
            "chunks: {} held at start, {} fetched ({} bytes from site peers, {} bytes from other peers), {} rejected",
            report.chunks_held_at_start, report.chunks_fetched, report.bytes_from_site, report.bytes_from_remote, report.chunks_rejected
        );
        for (peer, bytes) in &report.bytes_from {
            println!("  {bytes:>12} bytes from {peer}");
        }
        println!("written to {}", opt.out.display());
    }
    Ok(())
}
