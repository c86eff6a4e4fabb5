//! A readable (and JSON) view of a manifest, for `inspect`.

use pollen_core::manifest::{Manifest, SignedManifest};
use serde::Serialize;

/// The manifest with ids as hex strings, as `inspect --json` prints it.
#[derive(Debug, Serialize)]
pub struct ManifestView {
    #[serde(flatten)]
    pub head: ReleaseHead,
    pub artifact: ArtifactView,
    pub chunking: ChunkingView,
    pub chunks: Vec<ChunkView>,
    pub rollout: Vec<StageView>,
    pub max_failures_percent: Option<f64>,
    pub install: String,
    pub signatures: Vec<String>,
    /// Set when a trust policy was given: "valid", or the reason it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
}

/// What names a release, with its id as hex: the fields every view of a
/// manifest starts with (`inspect --json`, the console's release list).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReleaseHead {
    pub manifest_id: String,
    pub product: String,
    pub channel: String,
    pub version: String,
    pub release: u64,
    pub created_at: u64,
    pub expires_at: u64,
    pub hardware: Vec<String>,
}

impl ReleaseHead {
    pub fn new(signed: &SignedManifest) -> Self {
        let m: &Manifest = signed.manifest();
        Self {
            manifest_id: signed.id().to_hex(),
            product: m.product.clone(),
            channel: m.channel.clone(),
            version: m.version.clone(),
            release: m.release,
            created_at: m.created_at,
            expires_at: m.expires_at,
            hardware: m.hardware.clone(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct ArtifactView {
    pub name: String,
    pub size: u64,
    pub blake3: String,
}

#[derive(Debug, Serialize)]
pub struct ChunkingView {
    pub min: u32,
    pub avg: u32,
    pub max: u32,
}

#[derive(Debug, Serialize)]
pub struct ChunkView {
    pub id: String,
    pub len: u32,
}

#[derive(Debug, Serialize)]
pub struct StageView {
    pub percent: f64,
    pub start_at: Option<u64>,
}

impl ManifestView {
    pub fn new(signed: &SignedManifest, verdict: Option<String>) -> Self {
        let m: &Manifest = signed.manifest();
        Self {
            head: ReleaseHead::new(signed),
            artifact: ArtifactView {
                name: m.artifact.name.clone(),
                size: m.artifact.size,
                blake3: hex::encode(m.artifact.blake3),
            },
            chunking: ChunkingView {
                min: m.chunking.min,
                avg: m.chunking.avg,
                max: m.chunking.max,
            },
            chunks: m
                .chunks
                .iter()
                .map(|c| ChunkView {
                    id: c.id.to_hex(),
                    len: c.len,
                })
                .collect(),
            rollout: m
                .rollout
                .stages
                .iter()
                .map(|s| StageView {
                    percent: f64::from(s.share) / 100.0,
                    start_at: s.start_at,
                })
                .collect(),
            max_failures_percent: m.rollout.max_failures.map(|b| f64::from(b) / 100.0),
            install: format!("{:?}", m.install),
            signatures: signed
                .signatures()
                .iter()
                .map(|s| s.key_id.to_string())
                .collect(),
            verdict,
        }
    }

    /// The human summary `inspect` prints without `--json`.
    pub fn summary(&self) -> String {
        let when = |t: u64| {
            humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.min(253_402_300_799)),
            )
            .to_string()
        };
        let h = &self.head;
        let mut s = format!(
            "manifest  {}\nproduct   {}  channel {}  version {}  release {}\ncreated   {}\nexpires   {}\nhardware  {}\nartifact  {} ({} bytes, blake3 {})\nchunks    {} (sizes {}/{}/{} min/avg/max)\nrollout   {}\nsigned by {}\n",
            h.manifest_id,
            h.product,
            h.channel,
            h.version,
            h.release,
            when(h.created_at),
            when(h.expires_at),
            if h.hardware.is_empty() { "any".to_string() } else { h.hardware.join(", ") },
            self.artifact.name,
            self.artifact.size,
            self.artifact.blake3,
            self.chunks.len(),
            self.chunking.min,
            self.chunking.avg,
            self.chunking.max,
            self.rollout.iter().map(|s| format!("{}%", s.percent)).collect::<Vec<_>>().join(" → "),
            self.signatures.join(", "),
        );
        if let Some(v) = &self.verdict {
            s.push_str(&format!("verdict   {v}\n"));
        }
        s
    }
}
