//! `pollen-sim aggregate DIR`: reads a sweep's `sweep.csv`, groups its
//! rows by configuration (every column but `run`, `seed` and the results
//! after `seed`) and writes, per configuration and result column, the
//! number of values, mean, median and 95 % t-interval for the mean
//! ([`crate::stats`]) to `aggregate.csv`, and one result's means with
//! their intervals as error bars to `aggregate.svg`.

use std::path::{Path, PathBuf};

use crate::plot;
use crate::stats::{describe, Described};
use crate::sweep::csv_cell;

/// The sweep's table.
pub const SWEEP_CSV: &str = "sweep.csv";
/// What [`run`] writes.
pub const AGGREGATE_CSV: &str = "aggregate.csv";
pub const AGGREGATE_SVG: &str = "aggregate.svg";

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AggregateError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: no header row")]
    Empty { path: PathBuf },
    #[error("{path}: no `{column}` column (is it a pollen-sim sweep.csv?)")]
    MissingColumn { path: PathBuf, column: String },
    #[error("{path}: no result columns after `seed`")]
    NoResults { path: PathBuf },
    #[error("{path}, line {line}: {got} cells, the header has {expected}")]
    Ragged {
        path: PathBuf,
        line: usize,
        expected: usize,
        got: usize,
    },
    #[error("{path}, line {line}: an unterminated quoted cell")]
    Unterminated { path: PathBuf, line: usize },
    #[error("{path}, line {line}, column {column}: {value:?} is not a number")]
    NotNumber {
        path: PathBuf,
        line: usize,
        column: String,
        value: String,
    },
    #[error("{path}: no rows")]
    NoRows { path: PathBuf },
}

/// Splits CSV text into rows of cells (quoted cells may hold commas and
/// doubled quotes), with each row's line number.
fn parse_csv(text: &str, path: &Path) -> Result<Vec<(usize, Vec<String>)>, AggregateError> {
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let mut cells = Vec::new();
        let mut cell = String::new();
        let mut chars = line.chars().peekable();
        let mut quoted = false;
        while let Some(c) = chars.next() {
            match (quoted, c) {
                (false, ',') => cells.push(std::mem::take(&mut cell)),
                (false, '"') if cell.is_empty() => quoted = true,
                (true, '"') if chars.peek() == Some(&'"') => {
                    chars.next();
                    cell.push('"');
                }
                (true, '"') => quoted = false,
                (_, c) => cell.push(c),
            }
        }
        if quoted {
            return Err(AggregateError::Unterminated {
                path: path.to_owned(),
                line: line_no,
            });
        }
        cells.push(cell);
        rows.push((line_no, cells));
    }
    Ok(rows)
}

/// One configuration's statistics.
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    /// The configuration's values, in [`Aggregate::config`] order.
    pub config: Vec<String>,
    /// Rows (seeds) in it.
    pub n: usize,
    /// Per result column (`None`: no value in any row).
    pub results: Vec<Option<Described>>,
}

/// A sweep, aggregated over seeds.
#[derive(Clone, Debug, PartialEq)]
pub struct Aggregate {
    pub config: Vec<String>,
    pub results: Vec<String>,
    /// In the order configurations first appear in `sweep.csv`.
    pub groups: Vec<Group>,
}

impl Aggregate {
    /// Aggregates the text of a `sweep.csv` (`path` names it in errors).
    pub fn from_csv(text: &str, path: &Path) -> Result<Self, AggregateError> {
        let rows = parse_csv(text, path)?;
        let mut rows = rows.into_iter();
        let (_, header) = rows.next().ok_or_else(|| AggregateError::Empty {
            path: path.to_owned(),
        })?;
        let seed = header.iter().position(|c| c == "seed").ok_or_else(|| {
            AggregateError::MissingColumn {
                path: path.to_owned(),
                column: "seed".into(),
            }
        })?;
        if seed + 1 >= header.len() {
            return Err(AggregateError::NoResults {
                path: path.to_owned(),
            });
        }
        let config_idx: Vec<usize> = (0..seed).filter(|&i| header[i] != "run").collect();
        let config = config_idx.iter().map(|&i| header[i].clone()).collect();
        let results: Vec<String> = header[seed + 1..].to_vec();
        // Per configuration, per result column: the values.
        let mut keys: Vec<Vec<String>> = Vec::new();
        let mut values: Vec<Vec<Vec<f64>>> = Vec::new();
        let mut counts: Vec<usize> = Vec::new();
        for (line, cells) in rows {
            if cells.len() != header.len() {
                return Err(AggregateError::Ragged {
                    path: path.to_owned(),
                    line,
                    expected: header.len(),
                    got: cells.len(),
                });
            }
            let key: Vec<String> = config_idx.iter().map(|&i| cells[i].clone()).collect();
            let g = match keys.iter().position(|k| *k == key) {
                Some(g) => g,
                None => {
                    keys.push(key);
                    values.push(vec![Vec::new(); results.len()]);
                    counts.push(0);
                    keys.len() - 1
                }
            };
            counts[g] += 1;
            for (r, cell) in cells[seed + 1..].iter().enumerate() {
                let cell = cell.trim();
                if cell.is_empty() {
                    continue;
                }
                let v: f64 = cell
                    .parse()
                    .ok()
                    .filter(|v: &f64| v.is_finite())
                    .ok_or_else(|| AggregateError::NotNumber {
                        path: path.to_owned(),
                        line,
                        column: results[r].clone(),
                        value: cell.to_owned(),
                    })?;
                values[g][r].push(v);
            }
        }
        if keys.is_empty() {
            return Err(AggregateError::NoRows {
                path: path.to_owned(),
            });
        }
        let groups = keys
            .into_iter()
            .zip(values)
            .zip(counts)
            .map(|((config, vals), n)| Group {
                config,
                n,
                results: vals.iter().map(|v| describe(v)).collect(),
            })
            .collect();
        Ok(Self {
            config,
            results,
            groups,
        })
    }

    /// `aggregate.csv`: the configuration's columns, `n`, then per result
    /// column `R`: `R_n`, `R_mean`, `R_median`, `R_ci95_lo`, `R_ci95_hi`
    /// (empty where undefined: no values, or one value for the interval).
    pub fn csv(&self) -> String {
        let mut head: Vec<String> = self.config.iter().map(|c| csv_cell(c)).collect();
        head.push("n".into());
        for r in &self.results {
            for s in ["n", "mean", "median", "ci95_lo", "ci95_hi"] {
                head.push(csv_cell(&format!("{r}_{s}")));
            }
        }
        let mut out = head.join(",") + "\n";
        for g in &self.groups {
            let mut cells: Vec<String> = g.config.iter().map(|c| csv_cell(c)).collect();
            cells.push(g.n.to_string());
            for d in &g.results {
                match d {
                    Some(d) => {
                        let (lo, hi) = d.ci95.map_or((String::new(), String::new()), |(lo, hi)| {
                            (lo.to_string(), hi.to_string())
                        });
                        cells.extend([
                            d.n.to_string(),
                            d.mean.to_string(),
                            d.median.to_string(),
                            lo,
                            hi,
                        ]);
                    }
                    None => cells.extend([
                        "0".into(),
                        String::new(),
                        String::new(),
                        String::new(),
                        String::new(),
                    ]),
                }
            }
            out.push_str(&cells.join(","));
            out.push('\n');
        }
        out
    }

    /// `aggregate.svg`: `metric`'s mean per configuration with its 95 %
    /// interval as an error bar; `None` if the sweep has no such column.
    pub fn svg(&self, metric: &str) -> Option<String> {
        let r = self.results.iter().position(|c| c == metric)?;
        let bars: Vec<plot::ErrorBar> = self
            .groups
            .iter()
            .map(|g| {
                let label = if g.config.is_empty() {
                    "all".to_owned()
                } else {
                    g.config.join(" ")
                };
                let d = g.results[r];
                plot::ErrorBar {
                    label,
                    value: d.map_or(0.0, |d| d.mean),
                    interval: d.and_then(|d| d.ci95),
                }
            })
            .collect();
        let n: Vec<usize> = self.groups.iter().map(|g| g.n).collect();
        let seeds = match (n.iter().min(), n.iter().max()) {
            (Some(a), Some(b)) if a == b => format!("{a} seeds"),
            (Some(a), Some(b)) => format!("{a}-{b} seeds"),
            _ => String::new(),
        };
        Some(plot::bars_with_errors(
            &format!("{metric}: mean and 95 % t-interval ({seeds})"),
            metric,
            &bars,
        ))
    }
}

/// Reads `dir/sweep.csv`, writes `dir/aggregate.csv` and (for `metric`)
/// `dir/aggregate.svg`.
pub fn run(dir: &Path, metric: &str) -> Result<Aggregate, AggregateError> {
    let path = dir.join(SWEEP_CSV);
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| AggregateError::Io { path, source }
    };
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    let agg = Aggregate::from_csv(&text, &path)?;
    let svg = agg
        .svg(metric)
        .ok_or_else(|| AggregateError::MissingColumn {
            path: path.clone(),
            column: metric.to_owned(),
        })?;
    let out = dir.join(AGGREGATE_CSV);
    std::fs::write(&out, agg.csv()).map_err(io(&out))?;
    let out = dir.join(AGGREGATE_SVG);
    std::fs::write(&out, svg).map_err(io(&out))?;
    Ok(agg)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SWEEP: &str = "run,site_0_devices,strategy,seed,completion_max_s,ratio_to_bound\n\
        a,10,pollen,1,10,1.0\n\
        b,10,pollen,2,20,\n\
        c,10,pollen,3,30,1.5\n\
        d,20,pollen,1,5,2\n\
        \"e,x\",20,\"pol\"\"len\",1,7,2\n";

    #[test]
    fn groups_by_configuration_across_seeds() {
        let a = Aggregate::from_csv(SWEEP, Path::new("sweep.csv")).expect("aggregates");
        assert_eq!(a.config, ["site_0_devices", "strategy"]);
        assert_eq!(a.results, ["completion_max_s", "ratio_to_bound"]);
        assert_eq!(a.groups.len(), 3);
        let g = &a.groups[0];
        assert_eq!(g.config, ["10", "pollen"]);
        assert_eq!(g.n, 3);
        let d = g.results[0].expect("values");
        assert_eq!((d.n, d.mean, d.median), (3, 20.0, 20.0));
        // s = 10: half-width t(0.975, 2) * 10 / sqrt(3).
        let (lo, hi) = d.ci95.expect("interval");
        let half = 4.303 * 10.0 / 3f64.sqrt();
        assert!((lo - (20.0 - half)).abs() < 1e-9 && (hi - (20.0 + half)).abs() < 1e-9);
        // An empty cell is a missing value, not a zero.
        let d = g.results[1].expect("values");
        assert_eq!((d.n, d.mean), (2, 1.25));
        assert_eq!(a.groups[2].config, ["20", "pol\"len"]);
        let csv = a.csv();
        let mut lines = csv.lines();
        assert_eq!(
            lines.next(),
            Some(
                "site_0_devices,strategy,n,completion_max_s_n,completion_max_s_mean,\
                 completion_max_s_median,completion_max_s_ci95_lo,completion_max_s_ci95_hi,\
                 ratio_to_bound_n,ratio_to_bound_mean,ratio_to_bound_median,\
                 ratio_to_bound_ci95_lo,ratio_to_bound_ci95_hi"
            )
        );
        assert!(lines
            .next()
            .is_some_and(|l| l.starts_with("10,pollen,3,3,20,20,")));
        assert_eq!(lines.next(), Some("20,pollen,1,1,5,5,,,1,2,2,,"));
        assert_eq!(lines.next(), Some("20,\"pol\"\"len\",1,1,7,7,,,1,2,2,,"));
        let svg = a.svg("completion_max_s").expect("svg");
        assert!(
            svg.contains("1-3 seeds") && svg.contains("10 pollen"),
            "{svg}"
        );
        assert!(a.svg("nope").is_none());
    }

    #[test]
    fn malformed_tables_are_refused() {
        let p = Path::new("sweep.csv");
        assert!(matches!(
            Aggregate::from_csv("", p),
            Err(AggregateError::Empty { .. })
        ));
        assert!(matches!(
            Aggregate::from_csv("run,x,y\na,1,2\n", p),
            Err(AggregateError::MissingColumn { .. })
        ));
        assert!(matches!(
            Aggregate::from_csv("run,seed\na,1\n", p),
            Err(AggregateError::NoResults { .. })
        ));
        assert!(matches!(
            Aggregate::from_csv("run,seed,t\n", p),
            Err(AggregateError::NoRows { .. })
        ));
        assert!(matches!(
            Aggregate::from_csv("run,seed,t\na,1,2\nb,2\n", p),
            Err(AggregateError::Ragged { line: 3, .. })
        ));
        assert!(matches!(
            Aggregate::from_csv("run,seed,t\na,1,2 s\n", p),
            Err(AggregateError::NotNumber { line: 2, .. })
        ));
        assert!(matches!(
            Aggregate::from_csv("run,seed,t\n\"a,1,2\n", p),
            Err(AggregateError::Unterminated { line: 2, .. })
        ));
        let e = Aggregate::from_csv("run,seed,t\na,1,inf\n", p).expect_err("refused");
        assert_eq!(
            e.to_string(),
            "sweep.csv, line 2, column t: \"inf\" is not a number"
        );
    }

    #[test]
    fn a_missing_directory_is_an_io_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = run(&dir.path().join("nope"), "completion_max_s").expect_err("no csv");
        assert!(matches!(e, AggregateError::Io { .. }), "{e}");
        assert!(e.to_string().contains("sweep.csv"), "{e}");
    }
}
