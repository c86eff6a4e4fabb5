//! `pollen-seeder export --origin DIR` (and `publish`/`rollout --origin`):
//! a store's current releases as a static tree any web server, object
//! store or CDN serves unchanged (`pollen_core::origin`'s layout).
//!
//! In two steps, so bad input changes nothing: [`plan`] reads and checks
//! everything (the keys against the operator role, each channel's newest
//! release and its chunks, its rollout control, the fleet policy) without
//! touching the tree; [`write`] then writes chunks, manifests, controls
//! and the policy, and each channel's signed index last
//! ([`crate::origin_tree`]: temporary names, sync, rename). An index is
//! rewritten only when what it names changed, when the one in the tree no
//! longer verifies, or when less than half of `index_ttl` is left (run
//! the export again before then, e.g. daily for the default 7 days, or
//! mirrors are reported frozen when it expires).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use pollen_core::manifest::{ChunkRef, KeyId, ManifestId, SecretKey, SignedManifest, TrustPolicy};
use pollen_core::origin::{
    chunk_path, control_path, index_path, manifest_path, policy_path, valid_channel_name,
    ChannelIndex, ControlId, IndexError, SignedIndex, MAX_INDEX_BYTES,
};
use pollen_core::rollout::{ControlError, SignedControl, VerifiedControl};
use pollen_core::trust::VerifiedPolicy;
use pollen_node::store::{Store, StoreError};
use serde::Serialize;

use crate::origin_tree::{Tree, TreeError};

/// Default life of a channel index: mirrors not refreshed for this long
/// are refused by devices as frozen.
pub const DEFAULT_INDEX_TTL_SECS: u64 = 7 * 86_400;
/// Shortest index life accepted.
pub const MIN_INDEX_TTL_SECS: u64 = 60;

/// Errors of this module; each names what is wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OriginError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Tree(#[from] TreeError),
    #[error("no key given to sign the channel index (an operator key)")]
    NoKey,
    #[error("--index-ttl of {0} s is too short: devices would refuse the index within a minute (at least {MIN_INDEX_TTL_SECS} s)")]
    TtlTooShort(u64),
    #[error("key {key_id} is not an operator key of fleet policy version {version}{roles}: devices would refuse the channel index it signs")]
    NotOperator {
        key_id: KeyId,
        version: u64,
        /// ` (it is a release key)` and the like, or empty.
        roles: String,
    },
    #[error("key {0} is given twice")]
    DuplicateKey(KeyId),
    #[error("the index would not verify under fleet policy version {version}: {source}")]
    Unverified { version: u64, source: IndexError },
    #[error("channel name {0:?} cannot name a file of the tree (letters, digits, '-', '_', '.'; not starting with '.')")]
    BadChannel(String),
    #[error("channel {channel:?} has no release in the store (channels there: {known})")]
    UnknownChannel { channel: String, known: String },
    #[error("the store holds no release: nothing to export")]
    Empty,
    #[error("every release of channel {0:?} is recalled by the fleet policy")]
    AllRecalled(String),
    #[error("stored manifest {id}: {source}")]
    Manifest {
        id: ManifestId,
        source: pollen_core::manifest::DecodeError,
    },
    #[error("chunk {chunk} of release {release} ({manifest}) is not in the store")]
    MissingChunk {
        chunk: pollen_core::ChunkId,
        release: u64,
        manifest: ManifestId,
    },
    #[error("the rollout control of release {release} ({manifest}): {source}")]
    Control {
        release: u64,
        manifest: ManifestId,
        source: ControlError,
    },
}

/// What to export and how.
#[derive(Debug)]
pub struct OriginRequest {
    /// The tree's root.
    pub dir: PathBuf,
    /// Channels to export; empty: every channel in the store.
    pub channels: Vec<String>,
    /// Operator key(s) signing each index (a k-of-n operator role: k keys).
    pub keys: Vec<SecretKey>,
    /// `--policy`: a fleet policy or a trust file; the store's own policy
    /// wins when it is newer.
    pub policy: Option<VerifiedPolicy>,
    pub index_ttl_secs: u64,
    /// Re-hash chunk files already in the tree instead of trusting their size.
    pub verify: bool,
    /// Unix milliseconds.
    pub now_ms: u64,
    /// Signed controls in hand that the store may not show yet (a
    /// `rollout` just handed to a running seeder).
    pub controls: Vec<Vec<u8>>,
}

/// One channel's part of the export, read and checked.
#[derive(Debug)]
struct ChannelPlan {
    channel: String,
    manifest: SignedManifest,
    manifest_bytes: Vec<u8>,
    /// Unique chunks, in manifest order.
    chunks: Vec<ChunkRef>,
    control: Option<(ControlId, Vec<u8>)>,
}

/// Everything an export writes, checked before anything is.
#[derive(Debug)]
pub struct Plan {
    channels: Vec<ChannelPlan>,
    /// The held policy (`None`: no policy nor trust file given or stored).
    held: Option<VerifiedPolicy>,
    /// Its signed bytes (`None` for a trust file's version 0).
    policy: Option<(u64, Vec<u8>)>,
    keys: Vec<SecretKey>,
    ttl: u64,
    verify: bool,
    now_ms: u64,
}

/// What one channel's export did.
#[derive(Debug, Clone, Serialize)]
pub struct ChannelReport {
    pub channel: String,
    pub manifest_id: String,
    pub release: u64,
    pub version: String,
    pub chunks: usize,
    pub control: Option<String>,
    pub policy_version: Option<u64>,
    pub index_seq: u64,
    pub index_expires_at: u64,
    /// False when the index in the tree already said all this and was fresh.
    pub index_written: bool,
}

/// What an export did.
#[derive(Debug, Clone, Serialize)]
pub struct ExportReport {
    pub dir: PathBuf,
    pub channels: Vec<ChannelReport>,
    /// Files written (the indexes included) and files found in place.
    pub files_written: u64,
    pub files_kept: u64,
    pub bytes_written: u64,
    /// Temporary files of an interrupted export, removed.
    pub temp_removed: u64,
}

/// The policy to hold: the newer of `--policy` and the store's.
pub fn held_policy<S: Store + ?Sized>(
    store: &S,
    given: Option<VerifiedPolicy>,
) -> Result<Option<VerifiedPolicy>, OriginError> {
    let stored = match pollen_node::policy_store::stored(store) {
        Ok(p) => p,
        Err(pollen_node::policy_store::PolicyStoreError::Store(e)) => return Err(e.into()),
        // A stored policy that no longer verifies is not handed out.
        Err(e) => {
            tracing::warn!(error = %e, "the store's fleet policy is ignored");
            None
        }
    };
    Ok(match (given, stored) {
        (Some(g), Some(s)) if s.version() > g.version() => Some(s),
        (Some(g), _) => Some(g),
        (None, s) => s,
    })
}

/// Refuses keys the devices would not count for the index: with a policy
/// (or trust file), each key must hold the operator role and together
/// they must reach its threshold.
pub fn check_keys(keys: &[SecretKey], held: Option<&VerifiedPolicy>) -> Result<(), OriginError> {
    if keys.is_empty() {
        return Err(OriginError::NoKey);
    }
    let mut seen = BTreeSet::new();
    for k in keys {
        let id = k.public().id();
        if !seen.insert(id) {
            return Err(OriginError::DuplicateKey(id));
        }
        let Some(held) = held else { continue };
        let policy = held.policy();
        if policy.operator.key(&id).is_none() {
            let roles: Vec<&str> = policy.roles_of(&id).iter().map(|r| r.as_str()).collect();
            return Err(OriginError::NotOperator {
                key_id: id,
                version: held.version(),
                roles: if roles.is_empty() {
                    " (it holds no role)".into()
                } else {
                    format!(" (it is a {} key)", roles.join(" and "))
                },
            });
        }
    }
    if let Some(held) = held {
        // The threshold, as a device counts it.
        let probe = ChannelIndex {
            channel: "probe".into(),
            seq: 0,
            issued_at: 0,
            expires_at: u64::MAX,
            manifest: ManifestId([0; 32]),
            release: 0,
            control: None,
            policy_version: None,
        };
        let refs: Vec<&SecretKey> = keys.iter().collect();
        SignedIndex::sign(probe, &refs)
            .and_then(|s| s.verify(held, "probe", 0))
            .map_err(|source| OriginError::Unverified {
                version: held.version(),
                source,
            })?;
    }
    Ok(())
}

/// The newest release of `channel` the policy does not recall.
fn newest<'a>(
    manifests: &'a [(SignedManifest, Vec<u8>)],
    channel: &str,
    held: Option<&VerifiedPolicy>,
) -> Result<&'a (SignedManifest, Vec<u8>), OriginError> {
    manifests
        .iter()
        .filter(|(m, _)| m.manifest().channel == channel)
        .filter(|(m, _)| held.is_none_or(|p| !p.policy().is_recalled(&m.id())))
        .max_by_key(|(m, _)| m.manifest().release)
        .ok_or_else(|| OriginError::AllRecalled(channel.to_owned()))
}

/// The control to publish with `m`: the newest of the stored one and
/// those in hand; checked against the operator role when a policy is held.
fn control_for<S: Store + ?Sized>(
    store: &S,
    m: &SignedManifest,
    in_hand: &[Vec<u8>],
    held: Option<&VerifiedPolicy>,
) -> Result<Option<(ControlId, Vec<u8>)>, OriginError> {
    let err = |source| OriginError::Control {
        release: m.manifest().release,
        manifest: m.id(),
        source,
    };
    let mut best: Option<(u64, Vec<u8>)> = None;
    let stored = pollen_node::controls::load_bytes(store, &m.id())?;
    for bytes in stored.iter().chain(in_hand) {
        let signed = SignedControl::decode(bytes).map_err(err)?;
        if signed.control().release != m.id() {
            continue;
        }
        let seq = signed.control().seq;
        if best.as_ref().is_none_or(|(s, _)| seq > *s) {
            best = Some((seq, bytes.clone()));
        }
    }
    let Some((_, bytes)) = best else {
        return Ok(None);
    };
    if let Some(held) = held {
        VerifiedControl::from_bytes(&bytes, &held.policy().operator).map_err(err)?;
    }
    Ok(Some((ControlId::of(&bytes), bytes)))
}

/// Reads and checks everything the export needs; writes nothing.
pub fn plan<S: Store + ?Sized>(store: &S, req: OriginRequest) -> Result<Plan, OriginError> {
    if req.index_ttl_secs < MIN_INDEX_TTL_SECS {
        return Err(OriginError::TtlTooShort(req.index_ttl_secs));
    }
    let held = held_policy(store, req.policy)?;
    check_keys(&req.keys, held.as_ref())?;
    let mut manifests = Vec::new();
    for id in store.manifest_ids()? {
        let Some(bytes) = store.get_manifest(&id)? else {
            continue;
        };
        let m = SignedManifest::decode(&bytes)
            .map_err(|source| OriginError::Manifest { id, source })?;
        manifests.push((m, bytes));
    }
    let known: BTreeSet<&str> = manifests
        .iter()
        .map(|(m, _)| m.manifest().channel.as_str())
        .collect();
    let wanted: Vec<String> = if req.channels.is_empty() {
        if known.is_empty() {
            return Err(OriginError::Empty);
        }
        known.iter().map(|c| (*c).to_owned()).collect()
    } else {
        let mut w = req.channels.clone();
        w.sort();
        w.dedup();
        w
    };
    let mut channels = Vec::new();
    for channel in wanted {
        if !valid_channel_name(&channel) {
            return Err(OriginError::BadChannel(channel));
        }
        if !known.contains(channel.as_str()) {
            return Err(OriginError::UnknownChannel {
                channel,
                known: if known.is_empty() {
                    "none".into()
                } else {
                    known.iter().copied().collect::<Vec<_>>().join(", ")
                },
            });
        }
        let (m, bytes) = newest(&manifests, &channel, held.as_ref())?;
        if m.manifest().expires_at <= req.now_ms / 1000 {
            tracing::warn!(
                channel = %channel,
                release = m.manifest().release,
                expires_at = m.manifest().expires_at,
                "the channel's newest release has expired: devices will refuse it"
            );
        }
        let mut seen = BTreeSet::new();
        let mut chunks = Vec::new();
        for c in &m.manifest().chunks {
            if !seen.insert(c.id) {
                continue;
            }
            if !store.has_chunk(&c.id)? {
                return Err(OriginError::MissingChunk {
                    chunk: c.id,
                    release: m.manifest().release,
                    manifest: m.id(),
                });
            }
            chunks.push(*c);
        }
        let control = control_for(store, m, &req.controls, held.as_ref())?;
        channels.push(ChannelPlan {
            channel,
            manifest: m.clone(),
            manifest_bytes: bytes.clone(),
            chunks,
            control,
        });
    }
    let policy = held
        .as_ref()
        .and_then(|p| p.to_bytes().map(|b| (p.version(), b)));
    Ok(Plan {
        channels,
        held,
        policy,
        keys: req.keys,
        ttl: req.index_ttl_secs,
        verify: req.verify,
        now_ms: req.now_ms,
    })
}

impl Plan {
    /// The channels this plan exports.
    pub fn channels(&self) -> Vec<&str> {
        self.channels.iter().map(|c| c.channel.as_str()).collect()
    }

    /// What devices verify the index under: the held policy, or (with
    /// none) the signing keys themselves.
    fn verifier(&self) -> VerifiedPolicy {
        match &self.held {
            Some(p) => p.clone(),
            None => VerifiedPolicy::from_trust(
                TrustPolicy::new(
                    self.keys.iter().map(SecretKey::public).collect(),
                    self.keys.len(),
                )
                .unwrap_or_else(|_| TrustPolicy::single(self.keys[0].public())),
            ),
        }
    }
}

/// The index for `c`: the one in the tree if it still says the same,
/// verifies and has at least half its life left; else a new one whose seq
/// follows both the clock and the tree's.
fn next_index(
    tree: &Tree,
    plan: &Plan,
    c: &ChannelPlan,
    verifier: &VerifiedPolicy,
) -> Result<(ChannelIndex, Option<Vec<u8>>), OriginError> {
    let now = plan.now_ms / 1000;
    let rel = index_path(&c.channel);
    let existing = tree
        .read(&rel, MAX_INDEX_BYTES)?
        .and_then(|b| SignedIndex::decode(&b).ok());
    let wanted = ChannelIndex {
        channel: c.channel.clone(),
        seq: plan.now_ms,
        issued_at: now,
        expires_at: now.saturating_add(plan.ttl),
        manifest: c.manifest.id(),
        release: c.manifest.manifest().release,
        control: c.control.as_ref().map(|(id, _)| *id),
        policy_version: plan.policy.as_ref().map(|(v, _)| *v),
    };
    if let Some(old) = &existing {
        let o = old.index();
        let same = o.manifest == wanted.manifest
            && o.release == wanted.release
            && o.control == wanted.control
            && o.policy_version == wanted.policy_version;
        let fresh = o.expires_at.saturating_sub(now) >= plan.ttl / 2;
        if same && fresh && old.clone().verify(verifier, &c.channel, now).is_ok() {
            return Ok((o.clone(), None));
        }
    }
    let seq = existing
        .map(|old| old.index().seq.saturating_add(1))
        .unwrap_or(0)
        .max(wanted.seq);
    let index = ChannelIndex { seq, ..wanted };
    let refs: Vec<&SecretKey> = plan.keys.iter().collect();
    let signed =
        SignedIndex::sign(index.clone(), &refs).map_err(|source| OriginError::Unverified {
            version: verifier.version(),
            source,
        })?;
    let bytes = signed.encode();
    // As a device will judge it, before anyone can read it.
    pollen_core::origin::verify(&bytes, verifier, &c.channel, now).map_err(|source| {
        OriginError::Unverified {
            version: verifier.version(),
            source,
        }
    })?;
    Ok((index, Some(bytes)))
}

/// Writes the plan into the tree at `dir` (created if missing): chunks,
/// manifests, controls and the policy first, each channel's index last.
pub fn write<S: Store + ?Sized>(
    store: &S,
    plan: &Plan,
    dir: &Path,
) -> Result<ExportReport, OriginError> {
    let mut tree = Tree::open(dir)?;
    let verifier = plan.verifier();
    if let Some((version, bytes)) = &plan.policy {
        tree.put(&policy_path(*version), bytes)?;
    }
    let mut reports = Vec::new();
    for c in &plan.channels {
        let m = c.manifest.manifest();
        for chunk in &c.chunks {
            let rel = chunk_path(&chunk.id);
            if tree.holds_chunk(&rel, chunk.id.as_bytes(), u64::from(chunk.len), plan.verify)? {
                tree.keep();
                continue;
            }
            let bytes = store.read_chunk(chunk)?.ok_or(OriginError::MissingChunk {
                chunk: chunk.id,
                release: m.release,
                manifest: c.manifest.id(),
            })?;
            tree.write(&rel, bytes.bytes())?;
        }
        tree.put(&manifest_path(&c.manifest.id()), &c.manifest_bytes)?;
        if let Some((id, bytes)) = &c.control {
            tree.put(&control_path(id), bytes)?;
        }
        let (index, bytes) = next_index(&tree, plan, c, &verifier)?;
        let written = match bytes {
            Some(bytes) => {
                tree.publish_index(&index_path(&c.channel), &bytes)?;
                true
            }
            None => {
                tree.keep();
                false
            }
        };
        tracing::info!(
            channel = %c.channel,
            release = m.release,
            manifest = %c.manifest.id(),
            seq = index.seq,
            index_written = written,
            "origin channel exported"
        );
        reports.push(ChannelReport {
            channel: c.channel.clone(),
            manifest_id: c.manifest.id().to_hex(),
            release: m.release,
            version: m.version.clone(),
            chunks: c.chunks.len(),
            control: c.control.as_ref().map(|(id, _)| id.to_hex()),
            policy_version: index.policy_version,
            index_seq: index.seq,
            index_expires_at: index.expires_at,
            index_written: written,
        });
    }
    tree.sync_dirs()?;
    Ok(ExportReport {
        dir: dir.to_owned(),
        channels: reports,
        files_written: tree.written,
        files_kept: tree.kept,
        bytes_written: tree.bytes_written,
        temp_removed: tree.temp_removed,
    })
}

/// Plans, checks the tree's folder, then writes: nothing is written
/// unless every check passed.
pub fn export<S: Store + ?Sized>(
    store: &S,
    req: OriginRequest,
) -> Result<ExportReport, OriginError> {
    let dir = req.dir.clone();
    let plan = plan(store, req)?;
    crate::origin_tree::check_dir(&dir)?;
    write(store, &plan, &dir)
}

/// Channels and their files, for the human summary.
pub fn summary(report: &ExportReport) -> String {
    let mut out = BTreeMap::new();
    for c in &report.channels {
        out.insert(
            c.channel.clone(),
            format!(
                "channel {}: release {} ({}) {}, {} chunks{}; index seq {} {} (expires at {})",
                c.channel,
                c.release,
                c.version,
                c.manifest_id,
                c.chunks,
                c.control
                    .as_ref()
                    .map_or(String::new(), |id| format!(", control {}", &id[..16])),
                c.index_seq,
                if c.index_written { "written" } else { "kept" },
                c.index_expires_at,
            ),
        );
    }
    let mut text: String = out.into_values().map(|l| l + "\n").collect();
    text.push_str(&format!(
        "{}: {} files written ({} bytes), {} already there{}\n",
        report.dir.display(),
        report.files_written,
        report.bytes_written,
        report.files_kept,
        if report.temp_removed > 0 {
            format!(
                ", {} temporary files of an interrupted export removed",
                report.temp_removed
            )
        } else {
            String::new()
        }
    ));
    text
}

#[cfg(test)]
mod tests;
