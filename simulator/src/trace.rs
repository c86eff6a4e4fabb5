//! Uplink capacity traces: a site's uplink rate over time, read from a CSV
//! file of `time_s,mbit` rows (a step function: each rate holds from its
//! time until the next row's; the last holds to the end). The engine
//! changes the link's capacity at each row's time through its event queue.

use std::path::{Path, PathBuf};

use crate::scenario::Scenario;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TraceError {
    #[error("uplink trace {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("uplink trace {path}, line {line}: expected `time_s,mbit`, got {text:?}")]
    Malformed {
        path: PathBuf,
        line: usize,
        text: String,
    },
    #[error("uplink trace {path}, line {line}: time {time} s is not after the previous row's")]
    NotIncreasing {
        path: PathBuf,
        line: usize,
        time: f64,
    },
    #[error("uplink trace {path}, line {line}: time {time} s is negative")]
    NegativeTime {
        path: PathBuf,
        line: usize,
        time: f64,
    },
    #[error("uplink trace {path}, line {line}: rate {mbit} Mbit/s is not a positive number")]
    BadRate {
        path: PathBuf,
        line: usize,
        mbit: f64,
    },
    #[error("uplink trace {path}: no rows")]
    Empty { path: PathBuf },
}

/// One trace: `(time_s, mbit)` steps, times strictly increasing.
#[derive(Clone, Debug, PartialEq)]
pub struct Trace {
    pub steps: Vec<(f64, f64)>,
}

impl Trace {
    /// Parses a trace's text (`path` only names it in errors). A first line
    /// that is not numeric is a header; blank lines and `#` comments are skipped.
    pub fn parse(text: &str, path: &Path) -> Result<Self, TraceError> {
        let mut steps: Vec<(f64, f64)> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let body = raw.split('#').next().unwrap_or("").trim();
            if body.is_empty() {
                continue;
            }
            let malformed = || TraceError::Malformed {
                path: path.to_owned(),
                line,
                text: raw.to_owned(),
            };
            let mut cells = body.split(',').map(str::trim);
            let (Some(a), Some(b), None) = (cells.next(), cells.next(), cells.next()) else {
                return Err(malformed());
            };
            let (time, mbit) = match (a.parse::<f64>(), b.parse::<f64>()) {
                (Ok(t), Ok(r)) => (t, r),
                // A header: the first non-blank line, not numbers at all.
                (Err(_), Err(_)) if steps.is_empty() && !a.is_empty() && !b.is_empty() => {
                    if line_is_first(text, i) {
                        continue;
                    }
                    return Err(malformed());
                }
                _ => return Err(malformed()),
            };
            if !time.is_finite() {
                return Err(malformed());
            }
            if time < 0.0 {
                return Err(TraceError::NegativeTime {
                    path: path.to_owned(),
                    line,
                    time,
                });
            }
            if !(mbit > 0.0 && mbit.is_finite()) {
                return Err(TraceError::BadRate {
                    path: path.to_owned(),
                    line,
                    mbit,
                });
            }
            if steps.last().is_some_and(|&(t, _)| time <= t) {
                return Err(TraceError::NotIncreasing {
                    path: path.to_owned(),
                    line,
                    time,
                });
            }
            steps.push((time, mbit));
        }
        if steps.is_empty() {
            return Err(TraceError::Empty {
                path: path.to_owned(),
            });
        }
        Ok(Trace { steps })
    }

    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<Self, TraceError> {
        let text = std::fs::read_to_string(path).map_err(|source| TraceError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// The rate at `time` (`before` ahead of the first step).
    pub fn rate_at(&self, time: f64, before: f64) -> f64 {
        self.steps
            .iter()
            .take_while(|&&(t, _)| t <= time)
            .last()
            .map_or(before, |&(_, r)| r)
    }
}

/// Whether line `i` is the first non-blank, non-comment line of `text`.
fn line_is_first(text: &str, i: usize) -> bool {
    text.lines()
        .position(|l| !l.split('#').next().unwrap_or("").trim().is_empty())
        == Some(i)
}

/// The traces of one site: into it (`down`) and out of it (`up`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SiteTraces {
    pub down: Option<Trace>,
    pub up: Option<Trace>,
}

/// Every site's traces, in the engine's site order (groups expanded by
/// their `count`); paths are relative to `base` (the scenario's directory).
pub fn load_all(sc: &Scenario, base: &Path) -> Result<Vec<SiteTraces>, TraceError> {
    let mut out = Vec::new();
    for group in &sc.sites {
        let load = |p: &Option<String>| p.as_ref().map(|p| Trace::load(&base.join(p))).transpose();
        let traces = SiteTraces {
            down: load(&group.uplink_trace)?,
            up: load(&group.uplink_up_trace)?,
        };
        out.extend(std::iter::repeat_n(traces, group.count as usize));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Trace, TraceError> {
        Trace::parse(text, Path::new("t.csv"))
    }

    #[test]
    fn parses_a_step_function_with_a_header() {
        let t = parse("time_s,mbit\n0,10\n# halve\n30.5, 5\n\n60,20\n").expect("parses");
        assert_eq!(t.steps, vec![(0.0, 10.0), (30.5, 5.0), (60.0, 20.0)]);
        assert_eq!(t.rate_at(-1.0, 7.0), 7.0);
        assert_eq!(t.rate_at(0.0, 7.0), 10.0);
        assert_eq!(t.rate_at(30.4, 7.0), 10.0);
        assert_eq!(t.rate_at(30.5, 7.0), 5.0);
        assert_eq!(t.rate_at(1e9, 7.0), 20.0);
    }

    #[test]
    fn bad_traces_are_refused_with_the_line() {
        assert!(matches!(
            parse("0,10\n20,5\n10,8\n"),
            Err(TraceError::NotIncreasing { line: 3, .. })
        ));
        assert!(matches!(
            parse("0,10\n10,10\n10,8\n"),
            Err(TraceError::NotIncreasing { line: 3, .. })
        ));
        assert!(matches!(
            parse("0,10\n5,-1\n"),
            Err(TraceError::BadRate { line: 2, .. })
        ));
        assert!(matches!(
            parse("0,0\n"),
            Err(TraceError::BadRate { line: 1, .. })
        ));
        assert!(matches!(
            parse("-1,3\n"),
            Err(TraceError::NegativeTime { line: 1, .. })
        ));
        assert!(matches!(
            parse("0,10\nabc,def\n"),
            Err(TraceError::Malformed { line: 2, .. })
        ));
        assert!(matches!(
            parse("0,10,3\n"),
            Err(TraceError::Malformed { line: 1, .. })
        ));
        assert!(matches!(
            parse("0;10\n"),
            Err(TraceError::Malformed { line: 1, .. })
        ));
        assert!(matches!(parse("0,nan\n"), Err(TraceError::BadRate { .. })));
        assert!(matches!(
            parse("time_s,mbit\n"),
            Err(TraceError::Empty { .. })
        ));
        let e = parse("0,10\n20,5\n10,8\n").expect_err("refused");
        assert!(e.to_string().contains("t.csv, line 3"), "{e}");
    }
}
