//! The driver's fleet side: publishing this node's status record,
//! relaying others', passing rollout controls on, the seeder's automatic
//! halt, and the snapshot the local endpoint serves (status JSON and
//! Prometheus metrics).

use std::fmt::Write as _;
use std::time::Instant;

use libp2p::identity::Keypair;
use libp2p::PeerId;
use pollen_core::fleet::{over_threshold, stage_counts};
use pollen_core::manifest::SecretKey;
use pollen_core::rollout::{RolloutControl, SignedControl, VerifiedControl};
use pollen_core::status::{Phase, StatusRecord};
use pollen_core::wire::{Request, MAX_STATUS_RECORDS};
use serde_bytes::ByteBuf;
use tokio::sync::mpsc;

use super::lifecycle::{Lifecycle, Progress};
use super::{Driver, DriverError, Mode, Pending};
use crate::api::{ApiCommand, Shared};
use crate::net::NetError;
use crate::store::keys;
use crate::store::Store;

/// The device's status-signing key: its mesh identity's ed25519 key.
pub(super) fn device_key(key: &Keypair) -> Result<SecretKey, NetError> {
    let ed = key
        .clone()
        .try_into_ed25519()
        .map_err(|e| NetError::Identity(e.to_string()))?;
    let bytes: [u8; 32] = ed
        .secret()
        .as_ref()
        .try_into()
        .map_err(|_| NetError::Identity("ed25519 secret key is not 32 bytes".into()))?;
    Ok(SecretKey::from_bytes(&bytes))
}

/// How long a release waits for a peer to answer `GetControl` before it
/// may be installed anyway (a device with no peers left).
const CONTROL_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

pub(super) async fn recv_progress(l: &mut Option<Lifecycle>) -> Option<Progress> {
    match l {
        Some(l) => l.progress.recv().await,
        None => std::future::pending().await,
    }
}

pub(super) async fn recv_api(
    api: &mut Option<(Shared, mpsc::Receiver<ApiCommand>)>,
) -> Option<ApiCommand> {
    match api {
        Some((_, rx)) => rx.recv().await,
        None => std::future::pending().await,
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Driver {
    /// Peers status records and controls go to: every peer but devices of
    /// other sites. Records travel towards the seeder through the site's
    /// own members and its origin connections, so a record crosses a site's
    /// uplink about once rather than once per cross-site connection.
    fn fleet_peers(&self) -> Vec<PeerId> {
        self.peers
            .iter()
            .filter(|(_, i)| i.hello && !self.other_site(i.site, i.role))
            .map(|(p, _)| *p)
            .collect()
    }

    /// This node's record from its lifecycle, if it installs releases.
    fn own_record(&self) -> Option<StatusRecord> {
        let l = self.lifecycle.as_ref()?;
        let r = &l.record;
        Some(StatusRecord {
            device: self.device_id.clone(),
            site: self.config.site.clone(),
            hardware: self.config.hardware.clone(),
            channel: self.config.channel.clone(),
            installed: r.installed.as_ref().map(|t| t.release.clone()),
            target: r.target.as_ref().map(|t| t.release.clone()),
            phase: r.phase,
            note: r.note.clone(),
            last_error: r.last_error.clone(),
            attempts: r.attempts,
            seq: 0,
        })
    }

    /// Publishes this node's record when it changed, or when `status_interval` passed.
    pub(super) fn publish_status(&mut self, force: bool) {
        let Some(record) = self.own_record() else {
            return;
        };
        let due = self
            .last_status
            .is_none_or(|t| t.elapsed() >= self.config.status_interval);
        if force || due || self.fleet.changed(&record) {
            self.last_status = Some(Instant::now());
            self.fleet.publish(record, unix_ms());
        }
    }

    /// Every tick: the lifecycle's rollout decision, status records to pass
    /// on, and the local endpoint's snapshot.
    pub(super) fn tick_fleet(&mut self) {
        let answered = self
            .control_asked
            .is_none_or(|asked| asked.elapsed() >= CONTROL_WAIT);
        if let (Some(l), Some(r), true) = (&mut self.lifecycle, &self.release, answered) {
            let control = self.control.as_ref().map(|c| c.control());
            let complete = self.node.is_complete();
            l.tick(r, complete, &self.device_id, control, crate::unix_now());
        }
        self.publish_status(false);
        let outbox = self.fleet.take_outbox();
        if !outbox.is_empty() {
            for p in self.fleet_peers() {
                self.send_records(p, &outbox);
            }
        }
        self.update_snapshot();
    }

    fn send_records(&mut self, peer: PeerId, records: &[ByteBuf]) {
        for batch in records.chunks(MAX_STATUS_RECORDS) {
            self.send(peer, Request::Status(batch.to_vec()), Pending::Notice);
        }
    }

    /// A peer finished its hello: give it every record and the current
    /// control (a device of another site gets the control only).
    pub(super) fn greet_fleet(&mut self, peer: PeerId) {
        let elsewhere = self
            .peers
            .get(&peer)
            .is_some_and(|i| self.other_site(i.site, i.role));
        let all = if elsewhere {
            Vec::new()
        } else {
            self.fleet.all()
        };
        self.send_records(peer, &all);
        if let Some(c) = &self.control {
            let bytes = ByteBuf::from(c.to_bytes());
            self.send(peer, Request::Control(bytes), Pending::Notice);
        }
    }

    /// Loads the records a seeder stored before it restarted.
    pub(super) fn load_fleet(&mut self) -> Result<(), DriverError> {
        for (_, bytes) in self.store.state_with_prefix(keys::STATUS_PREFIX)? {
            if let Err(e) = self.fleet.receive(&bytes) {
                tracing::warn!(error = %e, "a stored status record no longer decodes");
            }
        }
        // Loaded, not new: nothing to pass on.
        self.fleet.take_outbox();
        Ok(())
    }

    /// Status records from a peer.
    pub(super) fn on_status(
        &mut self,
        peer: PeerId,
        list: Vec<ByteBuf>,
    ) -> Result<(), DriverError> {
        let mut any = false;
        for bytes in list.iter().take(MAX_STATUS_RECORDS) {
            match self.fleet.receive(bytes) {
                Ok(Some(s)) => {
                    any = true;
                    if self.config.mode == Mode::Seed {
                        self.store
                            .put_state(&keys::status(&s.key_id()), s.to_bytes())?;
                    }
                    tracing::debug!(%peer, device = %s.record().device, phase = %s.record().phase, "status record");
                }
                Ok(None) => {}
                Err(e) => tracing::debug!(%peer, error = %e, "refused a status record"),
            }
        }
        if any && self.config.mode == Mode::Seed {
            self.check_auto_halt()?;
        }
        Ok(())
    }

    /// A rollout control from a peer (devices verify it; a seeder relays only its own).
    pub(super) fn on_control(&mut self, peer: PeerId, bytes: &[u8]) -> Result<(), DriverError> {
        let Some(policy) = &self.config.trust else {
            return Ok(());
        };
        match VerifiedControl::from_bytes(bytes, policy) {
            Ok(c) => self.adopt_control(c, Some(peer))?,
            Err(e) => tracing::warn!(%peer, error = %e, "refused a rollout control"),
        }
        Ok(())
    }

    pub(super) fn on_api(&mut self, cmd: ApiCommand) -> Result<(), DriverError> {
        match cmd {
            ApiCommand::Control(bytes) => {
                let control = match (&self.config.trust, SignedControl::decode(&bytes)) {
                    (_, Err(e)) => {
                        tracing::warn!(error = %e, "refused a local rollout control");
                        return Ok(());
                    }
                    (Some(policy), Ok(s)) => match s.verify(policy) {
                        Ok(v) => v,
                        Err(e) => {
                            tracing::warn!(error = %e, "refused a local rollout control");
                            return Ok(());
                        }
                    },
                    // The publisher's own seeder: devices judge what it relays.
                    (None, Ok(s)) => VerifiedControl::assume_verified(s),
                };
                self.adopt_control(control, None)
            }
        }
    }

    /// Keeps `control` if it is the newest of its release and passes it on.
    fn adopt_control(
        &mut self,
        control: VerifiedControl,
        from: Option<PeerId>,
    ) -> Result<(), DriverError> {
        if !crate::controls::save_if_newer(self.store.as_ref(), &control)? {
            return Ok(());
        }
        let c = control.control();
        tracing::info!(release = %c.release, seq = c.seq, halted = c.halted, promoted = ?c.promoted, "rollout control");
        let bytes = ByteBuf::from(control.to_bytes());
        if self.release.as_ref().is_some_and(|r| r.id() == c.release) {
            self.control = Some(control);
        }
        for p in self.hello_peer_ids() {
            if Some(p) != from {
                self.send(p, Request::Control(bytes.clone()), Pending::Notice);
            }
        }
        Ok(())
    }

    /// On a seeder with the publisher key: halts the current release when
    /// a stage's failure rate passes the manifest's `max_failures`.
    fn check_auto_halt(&mut self) -> Result<(), DriverError> {
        let (Some(key), Some(r)) = (&self.config.publisher_key, &self.release) else {
            return Ok(());
        };
        let rollout = &r.manifest.manifest().rollout;
        let Some(max) = rollout.max_failures else {
            return Ok(());
        };
        if self.control.as_ref().is_some_and(|c| c.control().halted) {
            return Ok(());
        }
        let id = r.id();
        let stages = stage_counts(&id, rollout, self.fleet.records());
        let Some(stage) = over_threshold(&stages, max) else {
            return Ok(());
        };
        let base = self
            .control
            .as_ref()
            .map(|c| c.control().clone())
            .unwrap_or_else(|| RolloutControl::initial(&self.config.channel, id));
        let halt = RolloutControl {
            halted: true,
            ..base.next(crate::unix_now())
        };
        tracing::warn!(
            release = %id,
            stage,
            failed = stages[stage].failed + stages[stage].rolled_back,
            seen = stages[stage].seen,
            max_failures_bp = max,
            "failure rate over the threshold: halting the rollout"
        );
        let signed = SignedControl::sign(halt, &[key.as_ref()]);
        self.adopt_control(VerifiedControl::assume_verified(signed), None)
    }

    fn status_json(&self) -> serde_json::Value {
        let rec = self.lifecycle.as_ref().map(|l| &l.record);
        let release = self.release.as_ref().zip(self.sched()).map(|(r, sched)| {
            let s = sched.stats();
            serde_json::json!({
                "manifest": r.id().to_hex(),
                "release": r.release(),
                "version": r.manifest.manifest().version,
                "chunks_total": r.chunks.len(),
                "chunks_held": sched.have().count(),
                "complete": sched.is_complete(),
                "bytes_from_site": s.bytes_from_site,
                "bytes_from_remote": s.bytes_from_remote,
                "chunks_verified": s.chunks_verified,
                "chunks_rejected": s.chunks_rejected,
            })
        });
        let control = self.control.as_ref().map(|c| {
            let c = c.control();
            serde_json::json!({"seq": c.seq, "halted": c.halted, "promoted": c.promoted})
        });
        let mut v = serde_json::json!({
            "peer_id": self.peer_id().to_string(),
            "device_id": self.device_id,
            "channel": self.config.channel,
            "site": self.config.site,
            "peers": self.hello_peer_ids().len(),
            "release": release,
            "control": control,
            "phase": rec.map(|r| r.phase.as_str()),
            "target": rec.and_then(|r| r.target.as_ref()).map(|t| t.view()),
            "installed": rec.and_then(|r| r.installed.as_ref()).map(|t| t.view()),
            "note": rec.and_then(|r| r.note.clone()),
            "last_error": rec.and_then(|r| r.last_error.clone()),
            "attempts": rec.map(|r| r.attempts),
            "fleet_devices": self.fleet.records().count(),
            "manifests_refused": self.report.manifests_refused,
        });
        if let (Mode::Seed, Some(r)) = (self.config.mode, &self.release) {
            let stages = stage_counts(
                &r.id(),
                &r.manifest.manifest().rollout,
                self.fleet.records(),
            );
            v["stages"] = serde_json::to_value(stages).unwrap_or_default();
        }
        v
    }

    fn metrics_text(&self) -> String {
        let mut m = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
            let _ = writeln!(m, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, v) in samples {
                let _ = writeln!(m, "{name}{labels} {v}");
            }
        };
        let stats = self.sched().map(|s| s.stats().clone());
        let s = stats.unwrap_or_default();
        metric(
            "pollen_bytes_received_total",
            "counter",
            "Verified chunk bytes received for the current release, by where they came from.",
            &[
                ("{source=\"lan\"}", s.bytes_from_site),
                ("{source=\"uplink\"}", s.bytes_from_remote),
            ],
        );
        metric(
            "pollen_bytes_served_total",
            "counter",
            "Chunk bytes served to peers.",
            &[("", self.report.bytes_served)],
        );
        metric(
            "pollen_chunks_verified_total",
            "counter",
            "Chunks received that passed BLAKE3 verification.",
            &[("", s.chunks_verified)],
        );
        metric(
            "pollen_chunks_rejected_total",
            "counter",
            "Chunks received that failed verification (not stored).",
            &[("", s.chunks_rejected)],
        );
        metric(
            "pollen_manifests_refused_total",
            "counter",
            "Manifests from peers that failed verification.",
            &[("", self.report.manifests_refused)],
        );
        metric(
            "pollen_peers",
            "gauge",
            "Peers connected that completed the hello.",
            &[("", self.hello_peer_ids().len() as u64)],
        );
        if let Some(r) = &self.release {
            metric(
                "pollen_release_chunks",
                "gauge",
                "Chunks of the current release: held and total.",
                &[
                    (
                        "{state=\"held\"}",
                        u64::from(self.node.have().map_or(0, |h| h.count())),
                    ),
                    ("{state=\"total\"}", r.chunks.len() as u64),
                ],
            );
        }
        if let Some(l) = &self.lifecycle {
            let phases = [
                Phase::Idle,
                Phase::Downloading,
                Phase::Verified,
                Phase::Staged,
                Phase::Switched,
                Phase::Committed,
                Phase::RolledBack,
                Phase::Failed,
            ];
            let labels: Vec<String> = phases
                .iter()
                .map(|p| format!("{{phase=\"{}\"}}", p.as_str()))
                .collect();
            let samples: Vec<(&str, u64)> = phases
                .iter()
                .zip(&labels)
                .map(|(p, label)| (label.as_str(), u64::from(*p == l.record.phase)))
                .collect();
            metric(
                "pollen_update_phase",
                "gauge",
                "The update lifecycle's phase (1 for the current one).",
                &samples,
            );
            let installed = l.record.installed.as_ref().map_or(0, |t| t.release.release);
            metric(
                "pollen_installed_release",
                "gauge",
                "Release number committed on this device (0: none).",
                &[("", installed)],
            );
        }
        metric(
            "pollen_fleet_devices",
            "gauge",
            "Devices whose status record this node holds.",
            &[("", self.fleet.records().count() as u64)],
        );
        m
    }

    fn update_snapshot(&mut self) {
        if self.api.is_none() {
            return;
        }
        let status = self.status_json();
        let metrics = self.metrics_text();
        if let Some((shared, _)) = &self.api {
            if let Ok(mut snap) = shared.lock() {
                snap.status = status;
                snap.metrics = metrics;
            }
        }
    }
}
