//! What a result directory records about how it was made: the fully
//! resolved scenario (`scenario.resolved.toml`, every default filled in and
//! every override applied, loadable again by `pollen-sim run`) and
//! `run.json` (the simulator's version, the command line, the overrides).

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::scenario::Scenario;

/// The resolved scenario's file name.
pub const RESOLVED: &str = "scenario.resolved.toml";
/// The run's metadata file name.
pub const META: &str = "run.json";

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProvenanceError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("serialising the resolved scenario: {0}")]
    Toml(#[from] toml::ser::Error),
    #[error("serialising run.json: {0}")]
    Json(#[from] serde_json::Error),
}

/// `run.json`.
#[derive(Clone, Debug, Serialize)]
pub struct Meta {
    pub simulator: &'static str,
    pub version: &'static str,
    /// The command line, as given.
    pub command: Vec<String>,
    /// The scenario file it read.
    pub scenario: String,
    /// `--set`/`--param`/`--seed` overrides of this run, in order.
    pub overrides: Vec<(String, String)>,
    /// Wall time and peak memory, once the run has ended (`run` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<crate::resources::Cost>,
}

impl Meta {
    pub fn new(command: Vec<String>, scenario: &Path, overrides: &[(String, String)]) -> Self {
        Self {
            simulator: env!("CARGO_PKG_NAME"),
            version: env!("CARGO_PKG_VERSION"),
            command,
            scenario: scenario.display().to_string(),
            overrides: overrides.to_vec(),
            cost: None,
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ProvenanceError + '_ {
    move |source| ProvenanceError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The scenario as TOML for `out`: trace files are copied into `out`
/// (`uplink-trace-G-down.csv`, `-up.csv` for site group `G`) and named
/// relative to it, release files by absolute path (they may be large).
pub fn resolved(sc: &Scenario, base: &Path, out: &Path) -> Result<String, ProvenanceError> {
    let mut sc = sc.clone();
    for (g, site) in sc.sites.iter_mut().enumerate() {
        for (dir, trace) in [
            ("down", &mut site.uplink_trace),
            ("up", &mut site.uplink_up_trace),
        ] {
            if let Some(p) = trace {
                let name = format!("uplink-trace-{g}-{dir}.csv");
                let from = base.join(&*p);
                let to = out.join(&name);
                if from != to {
                    std::fs::copy(&from, &to).map_err(io(&from))?;
                }
                *p = name;
            }
        }
    }
    if let Some(files) = &mut sc.files {
        files.new = absolute(base, &files.new);
        files.old = files.old.as_deref().map(|p| absolute(base, p));
    }
    let mut text = String::from(
        "# The fully resolved scenario of this run (defaults filled in, overrides applied);\n\
         # `pollen-sim run scenario.resolved.toml --out DIR` repeats it.\n",
    );
    text.push_str(&toml::to_string(&sc)?);
    Ok(text)
}

/// `p` (relative to `base`) as an absolute path, where it exists.
fn absolute(base: &Path, p: &str) -> String {
    let joined = base.join(p);
    std::fs::canonicalize(&joined)
        .unwrap_or(joined)
        .display()
        .to_string()
}

/// Writes `scenario.resolved.toml` and `run.json` into `out`.
pub fn write(sc: &Scenario, base: &Path, out: &Path, meta: &Meta) -> Result<(), ProvenanceError> {
    std::fs::create_dir_all(out).map_err(io(out))?;
    let text = resolved(sc, base, out)?;
    let path = out.join(RESOLVED);
    std::fs::write(&path, text).map_err(io(&path))?;
    write_meta(out, meta)
}

/// (Re)writes `run.json` into `out` (again at the end of a run, with its cost).
pub fn write_meta(out: &Path, meta: &Meta) -> Result<(), ProvenanceError> {
    let path = out.join(META);
    std::fs::write(&path, serde_json::to_string_pretty(meta)? + "\n").map_err(io(&path))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::EXAMPLE;

    #[test]
    fn the_resolved_scenario_parses_back_to_the_same_values() {
        let params = vec![
            ("site.0.devices".to_owned(), "7".to_owned()),
            ("churn.rate_per_hour".to_owned(), "2.5".to_owned()),
            ("seed".to_owned(), "11".to_owned()),
        ];
        let sc = Scenario::from_toml_with(EXAMPLE, &params).expect("scenario");
        let dir = tempfile::tempdir().expect("tempdir");
        let text = resolved(&sc, dir.path(), dir.path()).expect("resolved");
        let back = Scenario::from_toml(&text).expect("parses back");
        assert_eq!(format!("{back:?}"), format!("{sc:?}"));
        assert!(text.contains("rate_per_hour = 2.5"), "{text}");
        assert!(text.contains("seed = 11"), "{text}");
        // Defaults the example leaves out are written.
        assert!(text.contains("window = \"rate\""), "{text}");
    }
}
