//! What a run writes: `summary.json`, `nodes.csv`, `timeline.csv`, and the
//! Kumar–Ross lower bound the completion time is compared with.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::engine::Outcome;
use crate::scenario::Scenario;

const MBIT: f64 = 1_000_000.0 / 8.0;

/// Lower bounds on the time to give every device the release.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bounds {
    /// Sites may serve each other across their uplinks (Pollen's default).
    pub cross_site: f64,
    /// Every site's copy comes from the seeder.
    pub no_cross_site: f64,
}

/// The lower bounds (Kumar & Ross 2006, with sites): for a release of `F`
/// bytes, seeder upload `u_s`, `S` sites with uplinks `U_up`/`U_down`, `N`
/// devices with LAN upload `u_i` and slowest download `d_min`,
///
/// - with cross-site sharing: `max(F/u_s, F/d_min, max F/U_down,
///   S·F/(u_s + Σ U_up), N·F/(u_s + Σ u_i))` — every site's copy crosses its
///   downlink and is sent by the seeder or another site's uplink;
/// - without: `max(F/u_s, F/d_min, max F/U_down, S·F/u_s, N·F/(u_s + Σ u_i))`
///   — the seeder sends every site its copy.
///
/// With an HTTPS origin, `u_s` is the sources' capacity: the seeder's
/// upload plus the origin's. With the origin the only source, nothing
/// flows before its time to first byte `L`: both bounds are `L +` the above.
pub fn bounds(sc: &Scenario, release_bytes: u64) -> Bounds {
    // What the release takes on the wire: the rates below are wire rates.
    let f = release_bytes as f64 * (1.0 + sc.wire_overhead);
    let us = sc.seeder().map_or(0.0, |s| s.upload_mbit * MBIT)
        + sc.origin().map_or(0.0, |o| o.upload_mbit * MBIT);
    let first_byte = match (sc.seeder(), sc.origin()) {
        (None, Some(o)) => o.latency_ms / 1000.0,
        _ => 0.0,
    };
    let spread = 1.0 - sc.heterogeneity.lan_spread;
    let d_min = sc
        .sites
        .iter()
        .map(|s| s.lan_down_mbit * MBIT * spread)
        .fold(f64::INFINITY, f64::min);
    let site_down = sc
        .sites
        .iter()
        .map(|s| f / (s.uplink_down_mbit * MBIT))
        .fold(0.0, f64::max);
    let n = sc.devices() as f64;
    let sum_up: f64 = sc
        .sites
        .iter()
        .map(|s| s.lan_up_mbit * MBIT * f64::from(s.devices) * f64::from(s.count))
        .sum();
    let sites: f64 = sc.sites.iter().map(|s| f64::from(s.count)).sum();
    let sum_uplink_up: f64 = sc
        .sites
        .iter()
        .map(|s| s.uplink_up_mbit * MBIT * f64::from(s.count))
        .sum();
    let common = [f / us, f / d_min, site_down, n * f / (us + sum_up)]
        .into_iter()
        .fold(0.0, f64::max);
    Bounds {
        cross_site: first_byte + common.max(sites * f / (us + sum_uplink_up)),
        no_cross_site: first_byte + common.max(sites * f / us),
    }
}

/// The bound a run is measured against: without cross-site sharing when the
/// scenario turns it off for `pollen`, or has no seeder (no one hands out
/// other sites' gateways), with it otherwise.
pub fn bound_for(sc: &Scenario, release_bytes: u64) -> f64 {
    let b = bounds(sc, release_bytes);
    if sc.strategy == crate::Strategy::Pollen && (!sc.sched.cross_site || sc.seeder().is_none()) {
        b.no_cross_site
    } else {
        b.cross_site
    }
}

/// `summary.json`.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Summary {
    pub strategy: String,
    pub seed: u64,
    pub devices: usize,
    pub devices_done: usize,
    pub sites: usize,
    pub release_bytes: u64,
    pub chunks: usize,
    /// Seconds from the start of the run.
    pub completion_p50_s: Option<f64>,
    pub completion_p90_s: Option<f64>,
    pub completion_p99_s: Option<f64>,
    pub completion_max_s: Option<f64>,
    /// Bytes into each site across its uplink, as multiples of the release size.
    pub uplink_multiple_max: f64,
    pub uplink_multiple_mean: f64,
    pub uplink_multiple_per_site: Vec<f64>,
    pub bytes_from_seeder: u64,
    pub seeder_multiple: f64,
    /// Bytes the HTTPS origin sent, and as a multiple of the release (only
    /// with an origin).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_from_origin: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin_multiple: Option<f64>,
    pub duplicate_chunks: u64,
    /// Times a device went down (`[churn]` crashes and leaves), over all devices.
    pub device_leaves: u64,
    /// Chunk requests sent, refused (`Busy` or not held) and abandoned
    /// (no byte for a whole deadline), over all devices.
    pub requests: u64,
    pub requests_refused: u64,
    pub requests_timed_out: u64,
    /// Requests declined for that chunk (it had gone out already, or was on
    /// its way to the requester's site).
    pub requests_declined: u64,
    /// Requests the seeder accepted, refused (`Busy`) and declined.
    pub seeder_accepted: u64,
    pub seeder_refused: u64,
    pub seeder_declined: u64,
    /// The lower bound the run is measured against ([`bound_for`]).
    pub bound_s: f64,
    /// Both bounds ([`bounds`]).
    pub bound_cross_site_s: f64,
    pub bound_no_cross_site_s: f64,
    /// `completion_max_s / bound_s`.
    pub ratio_to_bound: Option<f64>,
    pub simulated_s: f64,
    pub events: u64,
    pub rate_updates: u64,
}

fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Rounds to microseconds so printed numbers are stable.
fn r6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

pub fn summary(sc: &Scenario, o: &Outcome) -> Summary {
    let mut done: Vec<f64> = o.nodes[1..].iter().filter_map(|n| n.finish).collect();
    done.sort_by(f64::total_cmp);
    let f = o.release_bytes.max(1) as f64;
    let per_site: Vec<f64> = o.sites.iter().map(|s| r6(s.bytes_in as f64 / f)).collect();
    let both = bounds(sc, o.release_bytes);
    let bound = bound_for(sc, o.release_bytes);
    let max = done.last().copied();
    Summary {
        strategy: sc.strategy.name().into(),
        seed: sc.seed,
        devices: o.nodes.len() - 1,
        devices_done: done.len(),
        sites: o.sites.len(),
        release_bytes: o.release_bytes,
        chunks: o.chunks,
        completion_p50_s: percentile(&done, 50.0).map(r6),
        completion_p90_s: percentile(&done, 90.0).map(r6),
        completion_p99_s: percentile(&done, 99.0).map(r6),
        completion_max_s: max.map(r6),
        uplink_multiple_max: per_site.iter().copied().fold(0.0, f64::max),
        uplink_multiple_mean: r6(per_site.iter().sum::<f64>() / per_site.len().max(1) as f64),
        uplink_multiple_per_site: per_site,
        bytes_from_seeder: o.nodes[0].bytes_out,
        seeder_multiple: r6(o.nodes[0].bytes_out as f64 / f),
        bytes_from_origin: o.origin.as_ref().map(|n| n.bytes_out),
        origin_multiple: o.origin.as_ref().map(|n| r6(n.bytes_out as f64 / f)),
        duplicate_chunks: o.nodes.iter().map(|n| n.sched.duplicates).sum(),
        device_leaves: o.nodes.iter().map(|n| u64::from(n.crashes)).sum(),
        requests: o.nodes.iter().map(|n| n.sched.requests).sum(),
        requests_refused: o.nodes.iter().map(|n| n.sched.failures).sum(),
        requests_timed_out: o.nodes.iter().map(|n| n.sched.timeouts).sum(),
        seeder_accepted: o.seeder_admission.as_ref().map_or(0, |a| a.accepted),
        seeder_refused: o.seeder_admission.as_ref().map_or(0, |a| a.refused),
        seeder_declined: o
            .seeder_admission
            .as_ref()
            .map_or(0, |a| a.declined_same_site + a.declined_spread),
        requests_declined: o.nodes.iter().map(|n| n.sched.declined).sum(),
        bound_s: r6(bound),
        bound_cross_site_s: r6(both.cross_site),
        bound_no_cross_site_s: r6(both.no_cross_site),
        ratio_to_bound: max.map(|m| r6(m / bound)),
        simulated_s: r6(o.end),
        events: o.events,
        rate_updates: o.rate_updates,
    }
}

/// `nodes.csv`: one row per device.
pub fn nodes_csv(o: &Outcome) -> String {
    let mut out = String::from(
        "node,site,start_s,finish_s,duration_s,bytes_in_lan,bytes_in_uplink,bytes_out,crashes\n",
    );
    for (i, n) in o.nodes.iter().enumerate().skip(1) {
        let site = n
            .site
            .map(|s| o.sites[s as usize].name.as_str())
            .unwrap_or("");
        let fin = n.finish.map(|f| format!("{:.6}", f)).unwrap_or_default();
        let dur = n
            .finish
            .map(|f| format!("{:.6}", f - n.start))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{i},{site},{:.6},{fin},{dur},{},{},{},{}",
            n.start, n.bytes_in_lan, n.bytes_in_uplink, n.bytes_out, n.crashes
        );
    }
    out
}

/// `timeline.csv`: per sample and site, bytes in across the uplink
/// (cumulative), the uplink's use over the last interval, devices done.
pub fn timeline_csv(o: &Outcome, sc: &Scenario) -> String {
    let mut out = String::from(
        "time_s,site,uplink_in_bytes,uplink_in_mbit_s,uplink_utilisation,devices_done,seeder_out_bytes\n",
    );
    let caps: Vec<f64> = sc
        .sites
        .iter()
        .flat_map(|g| std::iter::repeat_n(g.uplink_down_mbit, g.count as usize))
        .collect();
    let mut prev: Vec<(f64, u64)> = vec![(0.0, 0); o.sites.len()];
    for s in &o.samples {
        let (t0, b0) = prev[s.site as usize];
        let dt = s.time - t0;
        let mbit = if dt > 0.0 {
            (s.uplink_in_bytes - b0) as f64 * 8.0 / 1e6 / dt
        } else {
            0.0
        };
        prev[s.site as usize] = (s.time, s.uplink_in_bytes);
        let cap = caps.get(s.site as usize).copied().unwrap_or(1.0);
        let _ = writeln!(
            out,
            "{:.6},{},{},{:.6},{:.6},{},{}",
            s.time,
            o.sites[s.site as usize].name,
            s.uplink_in_bytes,
            mbit,
            mbit / cap,
            s.done,
            s.seeder_out_bytes
        );
    }
    out
}

/// Writes the three files into `dir`.
pub fn write(dir: &Path, sc: &Scenario, o: &Outcome) -> std::io::Result<Summary> {
    std::fs::create_dir_all(dir)?;
    let s = summary(sc, o);
    std::fs::write(
        dir.join("summary.json"),
        serde_json::to_string_pretty(&s).unwrap_or_default() + "\n",
    )?;
    std::fs::write(dir.join("nodes.csv"), nodes_csv(o))?;
    std::fs::write(dir.join("timeline.csv"), timeline_csv(o, sc))?;
    Ok(s)
}
