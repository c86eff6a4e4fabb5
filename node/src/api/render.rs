//! What the local endpoint serves, rendered from a plain [`View`] of the
//! node that the driver fills in: the status JSON and the Prometheus text.
//! No node state lives here; the driver only gathers, this only formats.

use std::fmt::Write as _;

use pollen_core::fleet::StageCounts;
use pollen_core::rollout::RolloutControl;
use pollen_core::status::Phase;
use pollen_core::swarm::SwarmStats;

use crate::update::Record;

/// The current release as the endpoint shows it.
#[derive(Clone, Debug)]
pub struct ReleaseView {
    pub manifest: String,
    pub release: u64,
    pub version: String,
    pub chunks_total: usize,
    pub chunks_held: u32,
    pub complete: bool,
    pub stats: SwarmStats,
}

/// Everything the endpoint renders, borrowed from the driver.
#[derive(Debug)]
pub struct View<'a> {
    pub peer_id: String,
    pub device_id: &'a str,
    pub channel: &'a str,
    pub site: Option<&'a str>,
    /// Peers connected that completed the hello.
    pub peers: usize,
    /// Connections established since the node started (both directions):
    /// steady while its peers stay connected.
    pub connections_opened: u64,
    pub release: Option<ReleaseView>,
    pub control: Option<&'a RolloutControl>,
    /// The update lifecycle's record (devices that install).
    pub lifecycle: Option<&'a Record>,
    /// Devices whose status record this node holds.
    pub fleet_devices: usize,
    /// Per rollout stage of the current release (a seeder).
    pub stages: Option<Vec<StageCounts>>,
    pub manifests_refused: u64,
    pub bytes_served: u64,
    /// The HTTPS origin's mirrors and counters (`--origin`).
    pub origin: Option<crate::origin::OriginView>,
}

const PHASES: [Phase; 8] = [
    Phase::Idle,
    Phase::Downloading,
    Phase::Verified,
    Phase::Staged,
    Phase::Switched,
    Phase::Committed,
    Phase::RolledBack,
    Phase::Failed,
];

impl View<'_> {
    /// `GET /status`.
    pub fn status_json(&self) -> serde_json::Value {
        let rec = self.lifecycle;
        let release = self.release.as_ref().map(|r| {
            serde_json::json!({
                "manifest": r.manifest,
                "release": r.release,
                "version": r.version,
                "chunks_total": r.chunks_total,
                "chunks_held": r.chunks_held,
                "complete": r.complete,
                "bytes_from_site": r.stats.bytes_from_site,
                "bytes_from_remote": r.stats.bytes_from_remote,
                "chunks_verified": r.stats.chunks_verified,
                "chunks_rejected": r.stats.chunks_rejected,
            })
        });
        let control = self
            .control
            .map(|c| serde_json::json!({"seq": c.seq, "halted": c.halted, "promoted": c.promoted}));
        let mut v = serde_json::json!({
            "peer_id": self.peer_id,
            "device_id": self.device_id,
            "channel": self.channel,
            "site": self.site,
            "peers": self.peers,
            "connections_opened": self.connections_opened,
            "release": release,
            "control": control,
            "phase": rec.map(|r| r.phase.as_str()),
            "target": rec.and_then(|r| r.target.as_ref()).map(|t| t.view()),
            "installed": rec.and_then(|r| r.installed.as_ref()).map(|t| t.view()),
            "note": rec.and_then(|r| r.note.clone()),
            "last_error": rec.and_then(|r| r.last_error.clone()),
            "attempts": rec.map(|r| r.attempts),
            "fleet_devices": self.fleet_devices,
            "manifests_refused": self.manifests_refused,
        });
        if let Some(stages) = &self.stages {
            v["stages"] = serde_json::json!(stages);
        }
        if let Some(origin) = &self.origin {
            v["origin"] = serde_json::json!(origin);
        }
        v
    }

    /// `GET /metrics`, in the Prometheus text format.
    pub fn metrics_text(&self) -> String {
        let mut m = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
            let _ = writeln!(m, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, v) in samples {
                let _ = writeln!(m, "{name}{labels} {v}");
            }
        };
        let s = self
            .release
            .as_ref()
            .map(|r| r.stats.clone())
            .unwrap_or_default();
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
            &[("", self.bytes_served)],
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
            &[("", self.manifests_refused)],
        );
        metric(
            "pollen_peers",
            "gauge",
            "Peers connected that completed the hello.",
            &[("", self.peers as u64)],
        );
        metric(
            "pollen_connections_opened_total",
            "counter",
            "Connections established since the node started.",
            &[("", self.connections_opened)],
        );
        if let Some(r) = &self.release {
            metric(
                "pollen_release_chunks",
                "gauge",
                "Chunks of the current release: held and total.",
                &[
                    ("{state=\"held\"}", u64::from(r.chunks_held)),
                    ("{state=\"total\"}", r.chunks_total as u64),
                ],
            );
        }
        if let Some(rec) = self.lifecycle {
            let labels: Vec<String> = PHASES
                .iter()
                .map(|p| format!("{{phase=\"{}\"}}", p.as_str()))
                .collect();
            let samples: Vec<(&str, u64)> = PHASES
                .iter()
                .zip(&labels)
                .map(|(p, label)| (label.as_str(), u64::from(*p == rec.phase)))
                .collect();
            metric(
                "pollen_update_phase",
                "gauge",
                "The update lifecycle's phase (1 for the current one).",
                &samples,
            );
            let installed = rec.installed.as_ref().map_or(0, |t| t.release.release);
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
            &[("", self.fleet_devices as u64)],
        );
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(record: Option<&Record>) -> View<'_> {
        View {
            peer_id: "12D3KooW".into(),
            device_id: "dev1",
            channel: "stable",
            site: Some("hall-a"),
            peers: 3,
            connections_opened: 5,
            release: Some(ReleaseView {
                manifest: "ab".repeat(32),
                release: 7,
                version: "1.2.3".into(),
                chunks_total: 10,
                chunks_held: 4,
                complete: false,
                stats: SwarmStats {
                    bytes_from_site: 100,
                    bytes_from_remote: 50,
                    ..SwarmStats::default()
                },
            }),
            control: None,
            lifecycle: record,
            fleet_devices: 0,
            stages: None,
            manifests_refused: 2,
            bytes_served: 9,
            origin: None,
        }
    }

    #[test]
    fn status_and_metrics_show_the_view() {
        let record = Record::default();
        let v = view(Some(&record));
        let json = v.status_json();
        assert_eq!(json["release"]["chunks_held"], 4);
        assert_eq!(json["site"], "hall-a");
        assert_eq!(json["phase"], "idle");
        let text = v.metrics_text();
        assert!(text.contains("pollen_bytes_received_total{source=\"lan\"} 100\n"));
        assert!(text.contains("pollen_release_chunks{state=\"held\"} 4\n"));
        assert!(text.contains("pollen_update_phase{phase=\"idle\"} 1\n"));
        assert!(text.contains("pollen_manifests_refused_total 2\n"));
    }

    #[test]
    fn a_seeder_without_lifecycle_has_no_phase_metric() {
        let text = view(None).metrics_text();
        assert!(!text.contains("pollen_update_phase"));
        assert!(text.contains("pollen_peers 3\n"));
        assert!(text.contains("pollen_connections_opened_total 5\n"));
    }
}
