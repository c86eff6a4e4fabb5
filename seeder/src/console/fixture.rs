//! A synthetic fleet for the console's tests and benchmarks: one signed
//! release with staged rollout and as many status records as asked, spread
//! over sites, hardware models and phases (no network, no store).

use pollen_core::chunk::{ChunkId, ChunkParams};
use pollen_core::manifest::{
    Artifact, ChunkRef, Install, Manifest, Rollout, RolloutStage, SecretKey, SignedManifest,
};
use pollen_core::rollout::RolloutControl;
use pollen_core::status::{Phase, ReleaseRef, StatusRecord, Traffic};

use super::views::ReleaseEntry;

/// Release `release` on channel `stable`, stages 10 %, 50 %, 100 %, at
/// most 20 % failures, signed with a fixed key.
pub fn release(release: u64) -> ReleaseEntry {
    let manifest = Manifest {
        product: "press".into(),
        channel: "stable".into(),
        version: format!("{release}.0.0"),
        release,
        created_at: 1_000,
        expires_at: u64::MAX,
        hardware: vec![],
        artifact: Artifact {
            name: "image.bin".into(),
            size: 1,
            blake3: *blake3::hash(b"x").as_bytes(),
        },
        chunking: ChunkParams::DEFAULT,
        chunks: vec![ChunkRef {
            id: ChunkId::of(b"x"),
            len: 1,
        }],
        rollout: Rollout {
            stages: [1000, 5000, 10_000]
                .into_iter()
                .map(|share| RolloutStage {
                    share,
                    start_at: None,
                })
                .collect(),
            max_failures: Some(2000),
        },
        install: Install::FullImage,
    };
    let key = SecretKey::from_bytes(&[7; 32]);
    ReleaseEntry {
        manifest: SignedManifest::sign(manifest, &[&key]),
        control: None,
    }
}

/// The control `entry` would carry with these settings.
pub fn control(
    entry: &ReleaseEntry,
    seq: u64,
    promoted: Option<u16>,
    halted: bool,
) -> RolloutControl {
    let m = entry.manifest.manifest();
    RolloutControl {
        channel: m.channel.clone(),
        release: entry.manifest.id(),
        seq,
        promoted,
        halted,
        issued_at: 2_000,
    }
}

/// `n` devices on `entry`'s release: `dev-00000`..., at 20 sites of 3
/// hardware models; phases cycle through every lifecycle phase; record
/// times (`seq`) at 1 000 s plus the device's index.
pub fn records(entry: &ReleaseEntry, n: usize) -> Vec<StatusRecord> {
    let m = entry.manifest.manifest();
    let this = ReleaseRef {
        manifest: entry.manifest.id(),
        release: m.release,
        version: m.version.clone(),
    };
    let phases = [
        Phase::Downloading,
        Phase::Verified,
        Phase::Staged,
        Phase::Committed,
        Phase::Committed,
        Phase::Committed,
        Phase::RolledBack,
        Phase::Failed,
    ];
    (0..n)
        .map(|i| {
            let phase = phases[i % phases.len()];
            StatusRecord {
                device: format!("dev-{i:05}"),
                site: Some(format!("site-{:02}", i % 20)),
                hardware: Some(format!("hw-{}", i % 3)),
                channel: "stable".into(),
                installed: (phase == Phase::Committed).then(|| this.clone()),
                target: Some(this.clone()),
                phase,
                note: None,
                last_error: matches!(phase, Phase::RolledBack | Phase::Failed)
                    .then(|| format!("health check failed on dev-{i:05}")),
                attempts: 1,
                traffic: Traffic {
                    from_site: 3 << 20,
                    from_uplink: if i % 20 == 0 { 4 << 20 } else { 1 << 20 },
                },
                seq: (1_000 + i as u64) * 1000,
            }
        })
        .collect()
}
