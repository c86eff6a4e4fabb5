//! Pollen's simulator as a library: scenarios ([`scenario`]), the
//! deterministic discrete-event engine that runs one real
//! `pollen_core::swarm::Swarm` per device ([`engine`]) over a flow-level
//! network model ([`net`]), and what a run writes ([`report`], [`plot`],
//! [`provenance`], [`resources`]). Realism knobs: uplink capacity traces ([`trace`]) and
//! churn as a rate ([`churn`]). Sweeps and their analysis: [`sweep`],
//! [`aggregate`], [`stats`].
//!
//! Guarantee: the same scenario and seed give byte-identical outputs.

pub mod aggregate;
pub mod bittorrent;
pub mod churn;
pub mod engine;
pub mod net;
pub mod plot;
pub mod provenance;
pub mod queue;
pub mod release;
pub mod report;
pub mod resources;
pub mod scenario;
pub mod stats;
pub mod sweep;
pub mod trace;

use std::path::Path;

pub use engine::{Outcome, Sim};
pub use report::Summary;
pub use scenario::{Scenario, Strategy};

/// Errors of a run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    #[error(transparent)]
    Release(#[from] release::ReleaseError),
    #[error(transparent)]
    Trace(#[from] trace::TraceError),
    #[error("writing results: {0}")]
    Io(#[from] std::io::Error),
}

/// Runs `sc` (files named in it are relative to `base`).
pub fn simulate(
    sc: &Scenario,
    base: &Path,
    progress: impl FnMut(usize, usize),
) -> Result<Outcome, SimError> {
    let (chunks, held) = release::build(sc, base)?;
    if sc.strategy == Strategy::Bittorrent {
        // Scenario checks refuse traces, churn and stages for it.
        return Ok(bittorrent::run(sc, &chunks, progress));
    }
    let traces = trace::load_all(sc, base)?;
    Ok(Sim::new(sc.clone(), chunks, held)
        .with_traces(traces)
        .run(progress))
}

/// Sorted completion times of the devices that finished.
pub fn completion_times(o: &Outcome) -> Vec<f64> {
    let mut t: Vec<f64> = o.nodes[1..].iter().filter_map(|n| n.finish).collect();
    t.sort_by(f64::total_cmp);
    t
}

/// Runs `sc` and writes `summary.json`, `nodes.csv`, `timeline.csv`,
/// `cdf.svg` and `uplink.svg` into `out`.
pub fn run_to_dir(
    sc: &Scenario,
    base: &Path,
    out: &Path,
    progress: impl FnMut(usize, usize),
) -> Result<(Summary, Vec<f64>), SimError> {
    let o = simulate(sc, base, progress)?;
    let summary = report::write(out, sc, &o)?;
    let times = completion_times(&o);
    let devices = o.nodes.len() - 1;
    std::fs::write(
        out.join("cdf.svg"),
        plot::cdf(
            &format!("Completion, {} devices ({})", devices, sc.strategy.name()),
            &[(sc.strategy.name().to_owned(), times.clone(), devices)],
        ),
    )?;
    // Uplink use per site (the first eight, and the mean of all).
    let mut per_site: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    let caps: Vec<f64> = sc
        .sites
        .iter()
        .flat_map(|g| std::iter::repeat_n(g.uplink_down_mbit, g.count as usize))
        .collect();
    let mut prev = vec![(0.0f64, 0u64); o.sites.len()];
    for s in &o.samples {
        let i = s.site as usize;
        let (t0, b0) = prev[i];
        prev[i] = (s.time, s.uplink_in_bytes);
        if s.time <= t0 {
            continue;
        }
        let use_ = (s.uplink_in_bytes - b0) as f64 * 8.0 / 1e6 / (s.time - t0) / caps[i];
        if i < 8 {
            if per_site.len() <= i {
                per_site.push((o.sites[i].name.clone(), Vec::new()));
            }
            per_site[i].1.push((s.time, use_));
        }
    }
    std::fs::write(
        out.join("uplink.svg"),
        plot::lines(
            "Site uplink use (into the site)",
            "time (s)",
            "fraction of the downlink",
            &per_site,
        ),
    )?;
    Ok((summary, times))
}
