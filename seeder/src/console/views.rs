//! The console's data shaping, free of HTTP and I/O: from the releases in
//! the store, the controls in force and the devices' status records to the
//! views the API serves (release summaries, stage and site progress,
//! devices filtered and paginated, uplink savings per site, Prometheus
//! text). Every function takes `now` where time matters.

use std::collections::BTreeMap;

use crate::view::ReleaseHead;
use pollen_core::fleet::{over_threshold, stage_counts, StageCounts};
use pollen_core::manifest::SignedManifest;
use pollen_core::rollout::{current_stage, RolloutControl};
use pollen_core::status::StatusRecord;
use serde::Serialize;

/// Largest page of devices the API hands out at once.
pub const MAX_PAGE: usize = 500;
/// Page size when the request names none.
pub const DEFAULT_PAGE: usize = 50;

/// A release as the store holds it, with the control in force.
#[derive(Clone, Debug)]
pub struct ReleaseEntry {
    pub manifest: SignedManifest,
    pub control: Option<RolloutControl>,
}

/// A release's manifest summary and rollout state.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReleaseSummary {
    #[serde(flatten)]
    pub head: ReleaseHead,
    pub artifact_bytes: u64,
    pub chunks: usize,
    pub stages: Vec<StagePlan>,
    pub max_failures_percent: Option<f64>,
    /// `rolling-out`, `halted`, `complete` (last stage open) or `expired`.
    pub state: &'static str,
    pub halted: bool,
    /// 1-based; `None` before the first stage opens.
    pub open_stage: Option<usize>,
    pub control_seq: Option<u64>,
}

/// One stage as the manifest plans it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StagePlan {
    pub share_percent: f64,
    pub start_at: Option<u64>,
}

/// Counts of one stage (or one site) of a release.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProgressRow {
    /// 1-based stage number, or the site name.
    pub name: String,
    #[serde(flatten)]
    pub counts: StageCounts,
    pub failure_percent: f64,
}

/// A release's progress: per stage and per site.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReleaseProgress {
    pub release: ReleaseSummary,
    pub stages: Vec<ProgressRow>,
    pub sites: Vec<ProgressRow>,
    pub totals: StageCounts,
    /// Halted while a stage's failure rate is over `--max-failures`:
    /// the seeder's automatic halt (or an operator's halt it agrees with).
    pub auto_halted: bool,
}

fn percent(basis_points: u32) -> f64 {
    f64::from(basis_points) / 100.0
}

/// The summary of one release at `now`.
pub fn summary(entry: &ReleaseEntry, now: u64) -> ReleaseSummary {
    let m = entry.manifest.manifest();
    let promoted = entry.control.as_ref().and_then(|c| c.promoted);
    let halted = entry.control.as_ref().is_some_and(|c| c.halted);
    let open = current_stage(&m.rollout, promoted, now);
    let state = if m.expires_at <= now {
        "expired"
    } else if halted {
        "halted"
    } else if open.is_some_and(|i| i + 1 == m.rollout.stages.len()) {
        "complete"
    } else {
        "rolling-out"
    };
    ReleaseSummary {
        head: ReleaseHead::new(&entry.manifest),
        artifact_bytes: m.artifact.size,
        chunks: m.chunks.len(),
        stages: m
            .rollout
            .stages
            .iter()
            .map(|s| StagePlan {
                share_percent: percent(u32::from(s.share)),
                start_at: s.start_at,
            })
            .collect(),
        max_failures_percent: m.rollout.max_failures.map(|b| percent(u32::from(b))),
        state,
        halted,
        open_stage: open.map(|i| i + 1),
        control_seq: entry.control.as_ref().map(|c| c.seq),
    }
}

/// Adds `b` into `a`.
fn add(a: &mut StageCounts, b: &StageCounts) {
    a.seen += b.seen;
    a.downloading += b.downloading;
    a.waiting += b.waiting;
    a.installing += b.installing;
    a.installed += b.installed;
    a.failed += b.failed;
    a.rolled_back += b.rolled_back;
}

fn total(stages: &[StageCounts]) -> StageCounts {
    let mut t = StageCounts {
        share: stages.last().map_or(0, |s| s.share),
        ..StageCounts::default()
    };
    for s in stages {
        add(&mut t, s);
    }
    t
}

fn row(name: String, counts: StageCounts) -> ProgressRow {
    ProgressRow {
        failure_percent: percent(counts.failure_rate()),
        name,
        counts,
    }
}

/// The release view: stage counts, site counts and totals of `entry`
/// from `records` (the devices of every release; those that do not
/// mention this one are left out).
pub fn release_progress(
    entry: &ReleaseEntry,
    records: &[StatusRecord],
    now: u64,
) -> ReleaseProgress {
    let m = entry.manifest.manifest();
    let id = entry.manifest.id();
    let mentions = |r: &&StatusRecord| {
        [&r.target, &r.installed]
            .into_iter()
            .flatten()
            .any(|t| t.manifest == id)
    };
    let mut by_site: BTreeMap<&str, Vec<&StatusRecord>> = BTreeMap::new();
    for r in records.iter().filter(mentions) {
        by_site
            .entry(r.site.as_deref().unwrap_or("-"))
            .or_default()
            .push(r);
    }
    let mut stages = vec![StageCounts::default(); m.rollout.stages.len()];
    let mut sites = Vec::with_capacity(by_site.len());
    for (site, group) in by_site {
        let counts = stage_counts(&id, &m.rollout, group.iter().copied());
        for (all, one) in stages.iter_mut().zip(&counts) {
            all.share = one.share;
            add(all, one);
        }
        sites.push(row(site.to_owned(), total(&counts)));
    }
    for (s, plan) in stages.iter_mut().zip(&m.rollout.stages) {
        s.share = plan.share;
    }
    let auto_halted = entry.control.as_ref().is_some_and(|c| c.halted)
        && m.rollout
            .max_failures
            .is_some_and(|max| over_threshold(&stages, max).is_some());
    ReleaseProgress {
        release: summary(entry, now),
        totals: total(&stages),
        stages: stages
            .into_iter()
            .enumerate()
            .map(|(i, c)| row((i + 1).to_string(), c))
            .collect(),
        sites,
        auto_halted,
    }
}

/// Filters of the devices view; `None` matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
pub struct DeviceQuery {
    pub site: Option<String>,
    pub hardware: Option<String>,
    pub phase: Option<String>,
    /// A release number: the device's target or installed release.
    pub release: Option<u64>,
    pub offset: Option<usize>,
    pub limit: Option<usize>,
}

/// One device as the devices view shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeviceRow {
    pub device: String,
    pub site: Option<String>,
    pub hardware: Option<String>,
    pub channel: String,
    pub phase: &'static str,
    pub installed: Option<u64>,
    pub target: Option<u64>,
    pub note: Option<String>,
    pub last_error: Option<String>,
    pub attempts: u32,
    pub bytes_from_site: u64,
    pub bytes_from_uplink: u64,
    pub reported_seconds_ago: u64,
}

/// A page of devices, and how many matched in all.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DevicePage {
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
    pub devices: Vec<DeviceRow>,
}

fn matches(q: &DeviceQuery, r: &StatusRecord) -> bool {
    let eq = |want: &Option<String>, have: &Option<String>| {
        want.as_deref()
            .is_none_or(|w| w.is_empty() || have.as_deref() == Some(w))
    };
    eq(&q.site, &r.site)
        && eq(&q.hardware, &r.hardware)
        && q.phase
            .as_deref()
            .is_none_or(|p| p.is_empty() || p == r.phase.as_str())
        && q.release.is_none_or(|n| {
            [&r.target, &r.installed]
                .into_iter()
                .flatten()
                .any(|t| t.release == n)
        })
}

/// The devices matching `q`, sorted by device id, one page of them
/// (`limit` at most [`MAX_PAGE`]).
pub fn devices(records: &[StatusRecord], q: &DeviceQuery, now: u64) -> DevicePage {
    let offset = q.offset.unwrap_or(0);
    let limit = q.limit.unwrap_or(DEFAULT_PAGE).min(MAX_PAGE);
    let mut hits: Vec<&StatusRecord> = records.iter().filter(|r| matches(q, r)).collect();
    hits.sort_unstable_by(|a, b| a.device.cmp(&b.device));
    let total = hits.len();
    let devices = hits
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|r| DeviceRow {
            device: r.device.clone(),
            site: r.site.clone(),
            hardware: r.hardware.clone(),
            channel: r.channel.clone(),
            phase: r.phase.as_str(),
            installed: r.installed.as_ref().map(|t| t.release),
            target: r.target.as_ref().map(|t| t.release),
            note: r.note.clone(),
            last_error: r.last_error.clone(),
            attempts: r.attempts,
            bytes_from_site: r.traffic.from_site,
            bytes_from_uplink: r.traffic.from_uplink,
            reported_seconds_ago: now.saturating_sub(r.seq / 1000),
        })
        .collect();
    DevicePage {
        total,
        offset,
        limit,
        devices,
    }
}

/// Bytes one site's devices fetched, by where from.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SiteSavings {
    pub site: String,
    pub devices: usize,
    /// From peers of the same site: bytes the uplink did not carry.
    pub bytes_from_site: u64,
    pub bytes_from_uplink: u64,
    /// Share of the site's bytes that came over the LAN.
    pub saved_percent: f64,
}

/// Uplink savings per site, from the byte counters in the devices' records.
pub fn savings(records: &[StatusRecord]) -> Vec<SiteSavings> {
    let mut sites: BTreeMap<&str, (usize, u64, u64)> = BTreeMap::new();
    for r in records {
        let e = sites.entry(r.site.as_deref().unwrap_or("-")).or_default();
        e.0 += 1;
        e.1 = e.1.saturating_add(r.traffic.from_site);
        e.2 = e.2.saturating_add(r.traffic.from_uplink);
    }
    sites
        .into_iter()
        .map(|(site, (devices, lan, uplink))| {
            let all = lan.saturating_add(uplink);
            SiteSavings {
                site: site.to_owned(),
                devices,
                bytes_from_site: lan,
                bytes_from_uplink: uplink,
                saved_percent: if all == 0 {
                    0.0
                } else {
                    (lan as f64 * 10_000.0 / all as f64).round() / 100.0
                },
            }
        })
        .collect()
}

/// Channels with their releases (newest first), from the store's releases.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChannelRow {
    pub channel: String,
    pub releases: Vec<u64>,
    pub newest: Option<u64>,
    pub devices: usize,
}

/// The channels of `entries` and of `records`.
pub fn channels(entries: &[ReleaseEntry], records: &[StatusRecord]) -> Vec<ChannelRow> {
    let mut out: BTreeMap<String, ChannelRow> = BTreeMap::new();
    let slot = |out: &mut BTreeMap<String, ChannelRow>, c: &str| {
        if !out.contains_key(c) {
            out.insert(
                c.to_owned(),
                ChannelRow {
                    channel: c.to_owned(),
                    releases: Vec::new(),
                    newest: None,
                    devices: 0,
                },
            );
        }
    };
    for e in entries {
        let m = e.manifest.manifest();
        slot(&mut out, &m.channel);
        if let Some(row) = out.get_mut(&m.channel) {
            row.releases.push(m.release);
        }
    }
    for r in records {
        slot(&mut out, &r.channel);
        if let Some(row) = out.get_mut(&r.channel) {
            row.devices += 1;
        }
    }
    for row in out.values_mut() {
        row.releases.sort_unstable_by(|a, b| b.cmp(a));
        row.newest = row.releases.first().copied();
    }
    out.into_values().collect()
}

/// Prometheus text: per-release, per-stage device counts by state, and
/// whether each release is halted automatically.
pub fn metrics_text(progress: &[ReleaseProgress]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    out.push_str(
        "# HELP pollen_rollout_stage_devices Devices of a release's rollout stage, by state.\n",
    );
    out.push_str("# TYPE pollen_rollout_stage_devices gauge\n");
    for p in progress {
        for s in &p.stages {
            let c = &s.counts;
            for (state, n) in [
                ("seen", c.seen),
                ("downloading", c.downloading),
                ("waiting", c.waiting),
                ("installing", c.installing),
                ("installed", c.installed),
                ("failed", c.failed),
                ("rolled_back", c.rolled_back),
            ] {
                let _ = writeln!(
                    out,
                    "pollen_rollout_stage_devices{{channel=\"{}\",release=\"{}\",stage=\"{}\",state=\"{state}\"}} {n}",
                    p.release.head.channel, p.release.head.release, s.name
                );
            }
        }
    }
    out.push_str("# HELP pollen_rollout_halted 1 when a release's rollout is halted.\n");
    out.push_str("# TYPE pollen_rollout_halted gauge\n");
    for p in progress {
        let _ = writeln!(
            out,
            "pollen_rollout_halted{{channel=\"{}\",release=\"{}\"}} {}",
            p.release.head.channel,
            p.release.head.release,
            u8::from(p.release.halted)
        );
    }
    out.push_str("# HELP pollen_rollout_auto_halted 1 when a release is halted with a stage over its --max-failures.\n");
    out.push_str("# TYPE pollen_rollout_auto_halted gauge\n");
    for p in progress {
        let _ = writeln!(
            out,
            "pollen_rollout_auto_halted{{channel=\"{}\",release=\"{}\"}} {}",
            p.release.head.channel,
            p.release.head.release,
            u8::from(p.auto_halted)
        );
    }
    out
}

#[cfg(test)]
#[path = "views_tests.rs"]
mod tests;
