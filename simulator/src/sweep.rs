//! Sweeps: `--param KEY=VALUES` parsing (lists and inclusive integer
//! ranges such as `seed=1..20`), the combinations they span, each run's
//! directory name (safe in a shell, distinct per combination) and the rows
//! of `sweep.csv` (one column per swept parameter, `strategy` and `seed`,
//! then plain numeric results).

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::report::Summary;

/// Values one range may expand to at most.
const MAX_RANGE: i64 = 100_000;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SweepError {
    #[error("--param {0:?} is not KEY=VALUES")]
    NotKeyValue(String),
    #[error("--param {0}: an empty key or value")]
    Empty(String),
    #[error("--param {param}: {range:?} is not an integer range A..B with A <= B (at most {MAX_RANGE} values)")]
    BadRange { param: String, range: String },
    #[error("--param {0} is given twice")]
    Repeated(String),
    #[error("parameters {0} and {1} give the same sweep.csv column {2}")]
    ColumnClash(String, String, String),
    #[error("two runs would share the directory {0}")]
    NameClash(String),
}

/// One swept parameter and its values, in order.
#[derive(Clone, Debug, PartialEq)]
pub struct Axis {
    pub key: String,
    pub values: Vec<String>,
}

/// Parses `KEY=V1,V2,A..B,...`: comma-separated values, each a literal or
/// an inclusive integer range `A..B` (`seed=1..20`, `x=1..3,10`).
pub fn parse_param(p: &str) -> Result<Axis, SweepError> {
    let (k, vs) = p
        .split_once('=')
        .ok_or_else(|| SweepError::NotKeyValue(p.to_owned()))?;
    let key = k.trim().to_owned();
    if key.is_empty() {
        return Err(SweepError::Empty(p.to_owned()));
    }
    let mut values = Vec::new();
    for v in vs.split(',').map(str::trim) {
        if v.is_empty() {
            return Err(SweepError::Empty(p.to_owned()));
        }
        match v.split_once("..") {
            Some((a, b)) => {
                let bad = || SweepError::BadRange {
                    param: key.clone(),
                    range: v.to_owned(),
                };
                let (a, b) = match (a.trim().parse::<i64>(), b.trim().parse::<i64>()) {
                    (Ok(a), Ok(b)) if a <= b && b - a < MAX_RANGE => (a, b),
                    _ => return Err(bad()),
                };
                values.extend((a..=b).map(|x| x.to_string()));
            }
            None => values.push(v.to_owned()),
        }
    }
    Ok(Axis { key, values })
}

/// Every combination of the axes' values (the first axis varies slowest),
/// as `(key, value)` lists in axis order.
pub fn combinations(axes: &[Axis]) -> Vec<Vec<(String, String)>> {
    let mut combos: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for axis in axes {
        combos = combos
            .into_iter()
            .flat_map(|c| {
                axis.values.iter().map(move |v| {
                    let mut c = c.clone();
                    c.push((axis.key.clone(), v.clone()));
                    c
                })
            })
            .collect();
    }
    combos
}

/// A value kept as it is in a directory name: no `_` (it separates
/// parameters) and nothing a shell treats specially.
fn value_safe(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '.' || c == '-'
}

/// A parameter key in a directory name.
fn key_safe(c: char) -> bool {
    value_safe(c) || c == '_'
}

/// The directory of the run with parameters `combo`: `key-value` pairs
/// joined by `_` (`strategy-pollen_seed-3`), characters only from
/// `[A-Za-z0-9._-]`. A value with other characters (or `_`) has them
/// replaced by `-`, and the name gains `_h` and 8 hex digits of a hash of
/// the exact parameters, so distinct combinations stay distinct.
pub fn run_dir_name(combo: &[(String, String)]) -> String {
    let mut name = String::new();
    let mut exact = true;
    for (i, (k, v)) in combo.iter().enumerate() {
        if i > 0 {
            name.push('_');
        }
        name.extend(k.chars().map(|c| if key_safe(c) { c } else { '-' }));
        name.push('-');
        for c in v.chars() {
            exact &= value_safe(c);
            name.push(if value_safe(c) { c } else { '-' });
        }
    }
    if !exact {
        let raw: Vec<String> = combo.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let hash = blake3::hash(raw.join("\n").as_bytes());
        let _ = write!(name, "_h{}", &hash.to_hex()[..8]);
    }
    if name.is_empty() {
        name.push_str("run");
    }
    name
}

/// A parameter's `sweep.csv` column: `site.0.devices` → `site_0_devices`.
pub fn column_name(key: &str) -> String {
    key.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// Result columns of `sweep.csv`, after the parameters, `strategy` and `seed`.
pub const RESULT_COLUMNS: [&str; 20] = [
    "devices",
    "devices_done",
    "completion_p50_s",
    "completion_p90_s",
    "completion_p99_s",
    "completion_max_s",
    "bound_s",
    "ratio_to_bound",
    "uplink_multiple_max",
    "uplink_multiple_mean",
    "seeder_multiple",
    "origin_multiple",
    "duplicate_chunks",
    "requests",
    "requests_refused",
    "requests_timed_out",
    "requests_declined",
    "device_leaves",
    "simulated_s",
    "events",
];

fn result_values(s: &Summary) -> [String; 20] {
    let f = |x: Option<f64>| x.map_or(String::new(), |v| v.to_string());
    [
        s.devices.to_string(),
        s.devices_done.to_string(),
        f(s.completion_p50_s),
        f(s.completion_p90_s),
        f(s.completion_p99_s),
        f(s.completion_max_s),
        s.bound_s.to_string(),
        f(s.ratio_to_bound),
        s.uplink_multiple_max.to_string(),
        s.uplink_multiple_mean.to_string(),
        s.seeder_multiple.to_string(),
        f(s.origin_multiple),
        s.duplicate_chunks.to_string(),
        s.requests.to_string(),
        s.requests_refused.to_string(),
        s.requests_timed_out.to_string(),
        s.requests_declined.to_string(),
        s.device_leaves.to_string(),
        s.simulated_s.to_string(),
        s.events.to_string(),
    ]
}

/// A CSV cell: quoted when it holds a comma, a quote or a line break.
pub fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// The layout of `sweep.csv` for a sweep over `axes`: `run` (the run's
/// directory), one column per parameter except `seed` (in `--param`
/// order), `strategy` unless swept, `seed`, then [`RESULT_COLUMNS`].
#[derive(Clone, Debug)]
pub struct Table {
    /// Parameter keys with their columns (without `seed`).
    params: Vec<(String, String)>,
    strategy_swept: bool,
    csv: String,
}

impl Table {
    pub fn new(axes: &[Axis]) -> Result<Self, SweepError> {
        let mut seen = BTreeSet::new();
        let mut columns: Vec<(String, String)> = Vec::new();
        for a in axes {
            if !seen.insert(a.key.clone()) {
                return Err(SweepError::Repeated(a.key.clone()));
            }
            if a.key == "seed" {
                continue;
            }
            let col = column_name(&a.key);
            let reserved = ["run", "seed"].contains(&col.as_str())
                || (col == "strategy" && a.key != "strategy")
                || RESULT_COLUMNS.contains(&col.as_str());
            if reserved {
                return Err(SweepError::ColumnClash(a.key.clone(), col.clone(), col));
            }
            if let Some((other, _)) = columns.iter().find(|(_, c)| *c == col) {
                return Err(SweepError::ColumnClash(other.clone(), a.key.clone(), col));
            }
            columns.push((a.key.clone(), col));
        }
        let strategy_swept = columns.iter().any(|(k, _)| k == "strategy");
        let mut csv = String::from("run");
        for (_, c) in &columns {
            csv.push(',');
            csv.push_str(c);
        }
        if !strategy_swept {
            csv.push_str(",strategy");
        }
        csv.push_str(",seed");
        for c in RESULT_COLUMNS {
            csv.push(',');
            csv.push_str(c);
        }
        csv.push('\n');
        Ok(Self {
            params: columns,
            strategy_swept,
            csv,
        })
    }

    /// Adds the row of the run `name` with parameters `combo` and summary `s`.
    pub fn push(&mut self, name: &str, combo: &[(String, String)], s: &Summary) {
        let mut cells = vec![csv_cell(name)];
        for (key, _) in &self.params {
            let v = combo
                .iter()
                .find(|(k, _)| k == key)
                .map_or("", |(_, v)| v.as_str());
            cells.push(csv_cell(v));
        }
        if !self.strategy_swept {
            cells.push(s.strategy.clone());
        }
        cells.push(s.seed.to_string());
        cells.extend(result_values(s));
        self.csv.push_str(&cells.join(","));
        self.csv.push('\n');
    }

    /// The CSV text so far.
    pub fn csv(&self) -> &str {
        &self.csv
    }
}

/// Checks that the runs' directory names are distinct.
pub fn check_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<(), SweepError> {
    let mut seen = BTreeSet::new();
    for n in names {
        if !seen.insert(n) {
            return Err(SweepError::NameClash(n.to_owned()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_lists_expand() {
        let a = parse_param("seed=1..3").expect("range");
        assert_eq!(a.key, "seed");
        assert_eq!(a.values, ["1", "2", "3"]);
        let a = parse_param(" x = 5, -1..1 ,a,2.5").expect("mixed");
        assert_eq!(a.values, ["5", "-1", "0", "1", "a", "2.5"]);
        assert_eq!(parse_param("x=4..4").expect("one").values, ["4"]);
        for bad in [
            "x=3..1",
            "x=1..",
            "x=..2",
            "x=1.5..3",
            "x=a..b",
            "x=0..100000",
        ] {
            assert!(
                matches!(parse_param(bad), Err(SweepError::BadRange { .. })),
                "{bad}"
            );
        }
        assert!(matches!(parse_param("x"), Err(SweepError::NotKeyValue(_))));
        assert!(matches!(parse_param("x=1,,2"), Err(SweepError::Empty(_))));
        assert!(matches!(parse_param("=1"), Err(SweepError::Empty(_))));
    }

    #[test]
    fn combinations_cover_every_pair() {
        let axes = [
            parse_param("strategy=central,pollen").expect("axis"),
            parse_param("seed=1..3").expect("axis"),
        ];
        let c = combinations(&axes);
        assert_eq!(c.len(), 6);
        assert_eq!(
            c[0],
            [
                ("strategy".into(), "central".into()),
                ("seed".into(), "1".into())
            ]
        );
        assert_eq!(
            c[5],
            [
                ("strategy".into(), "pollen".into()),
                ("seed".into(), "3".into())
            ]
        );
    }

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn directory_names_are_safe_and_distinct() {
        assert_eq!(
            run_dir_name(&kv(&[("strategy", "pollen"), ("seed", "3")])),
            "strategy-pollen_seed-3"
        );
        assert_eq!(
            run_dir_name(&kv(&[("site.0.uplink_down_mbit", "-2.5")])),
            "site.0.uplink_down_mbit--2.5"
        );
        let odd = [
            kv(&[("name", "a b")]),
            kv(&[("name", "a/b")]),
            kv(&[("name", "a-b")]),
            kv(&[("name", "a_b")]),
            kv(&[("name", "a=b")]),
            kv(&[("name", "a"), ("x", "b")]),
        ];
        let names: Vec<String> = odd.iter().map(|c| run_dir_name(c)).collect();
        for n in &names {
            assert!(
                n.chars().all(key_safe),
                "{n} has a character outside [A-Za-z0-9._-]"
            );
        }
        check_names(names.iter().map(String::as_str)).expect("distinct");
        assert!(names[0].starts_with("name-a-b_h"), "{}", names[0]);
        assert_eq!(names[2], "name-a-b");
        assert!(matches!(
            check_names(["a", "b", "a"]),
            Err(SweepError::NameClash(n)) if n == "a"
        ));
    }

    #[test]
    fn columns_are_identifiers_and_clashes_are_refused() {
        assert_eq!(column_name("site.0.devices"), "site_0_devices");
        let t = Table::new(&[
            parse_param("site.0.devices=1,2").expect("axis"),
            parse_param("seed=1..2").expect("axis"),
        ])
        .expect("table");
        assert!(t
            .csv()
            .starts_with("run,site_0_devices,strategy,seed,devices,devices_done,"));
        let t = Table::new(&[parse_param("strategy=central,pollen").expect("axis")]).expect("t");
        assert!(t.csv().starts_with("run,strategy,seed,devices,"));
        let clash = Table::new(&[
            parse_param("site.0.x=1").expect("axis"),
            parse_param("site_0.x=1").expect("axis"),
        ]);
        assert!(matches!(clash, Err(SweepError::ColumnClash(..))));
        let twice = Table::new(&[
            parse_param("seed=1").expect("axis"),
            parse_param("seed=2").expect("axis"),
        ]);
        assert!(matches!(twice, Err(SweepError::Repeated(_))));
    }
}
