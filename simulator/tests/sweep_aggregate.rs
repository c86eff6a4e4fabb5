//! The command line end to end: a tiny sweep over `seed=1..3`, its
//! `sweep.csv`, run directories and provenance files, `aggregate`, and a
//! run repeated from its `scenario.resolved.toml` giving identical files.

use std::path::Path;
use std::process::Command;

const SIM: &str = env!("CARGO_BIN_EXE_pollen-sim");

const SCENARIO: &str = r#"strategy = "pollen"
seed = 1
release_mib = 4.0
chunk_kib = 256
[seeder]
upload_mbit = 20.0
[[site]]
count = 2
devices = 3
lan_up_mbit = 100.0
lan_down_mbit = 100.0
uplink_up_mbit = 10.0
uplink_down_mbit = 10.0
uplink_trace = "traces/site.csv"
[churn]
rate_per_hour = 300.0
mean_offline_s = 2.0
"#;

fn sim(args: &[&str]) -> std::process::Output {
    let out = Command::new(SIM)
        .args(args)
        .output()
        .expect("pollen-sim runs");
    out
}

fn ok(args: &[&str]) -> String {
    let out = sim(args);
    assert!(
        out.status.success(),
        "pollen-sim {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn a_seed_sweep_aggregates_and_its_runs_repeat_from_the_resolved_scenario() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = dir.path().join("scenario.toml");
    std::fs::write(&scenario, SCENARIO).expect("scenario");
    std::fs::create_dir(dir.path().join("traces")).expect("dir");
    std::fs::write(
        dir.path().join("traces/site.csv"),
        "time_s,mbit\n0,10\n2,5\n",
    )
    .expect("trace");
    let out = dir.path().join("sweep");
    let (s, o) = (
        scenario.to_str().expect("utf-8"),
        out.to_str().expect("utf-8"),
    );
    ok(&[
        "sweep",
        s,
        "--param",
        "strategy=central,pollen",
        "--param",
        "seed=1..3",
        "--out",
        o,
        "--jobs",
        "2",
    ]);

    // sweep.csv: parameters, strategy, seed, then numbers only.
    let csv = read(&out.join("sweep.csv"));
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    assert_eq!(&header[..4], ["run", "strategy", "seed", "devices"]);
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 6);
    let mut names = Vec::new();
    for row in &rows {
        assert_eq!(row.len(), header.len());
        let name = row[0];
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)),
            "{name}"
        );
        assert_eq!(name, format!("strategy-{}_seed-{}", row[1], row[2]));
        for (cell, col) in row[3..].iter().zip(&header[3..]) {
            assert!(
                cell.is_empty() || cell.parse::<f64>().is_ok(),
                "{col}: {cell:?} is not a number"
            );
        }
        names.push(name.to_owned());
    }
    assert_eq!(names[0], "strategy-central_seed-1");
    assert_eq!(names[5], "strategy-pollen_seed-3");
    let col = |name: &str| header.iter().position(|h| *h == name).expect("column");
    let seeds: Vec<&str> = rows.iter().map(|r| r[col("seed")]).collect();
    assert_eq!(seeds, ["1", "2", "3", "1", "2", "3"]);

    // Every run directory records how it was made.
    for name in &names {
        let run = out.join(name);
        let resolved = read(&run.join("scenario.resolved.toml"));
        let seed = name.rsplit('-').next().expect("seed");
        assert!(resolved.contains(&format!("seed = {seed}\n")), "{resolved}");
        assert!(run.join("uplink-trace-0-down.csv").is_file());
        let meta: serde_json::Value =
            serde_json::from_str(&read(&run.join("run.json"))).expect("run.json");
        assert_eq!(meta["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(meta["command"][1], "sweep");
        assert_eq!(meta["overrides"][1][1], seed);
    }

    // Repeating a run from its resolved scenario gives the same files.
    let first = out.join(&names[4]);
    let again = dir.path().join("again");
    ok(&[
        "run",
        first
            .join("scenario.resolved.toml")
            .to_str()
            .expect("utf-8"),
        "--out",
        again.to_str().expect("utf-8"),
    ]);
    for f in ["summary.json", "nodes.csv", "timeline.csv", "cdf.svg"] {
        assert_eq!(read(&first.join(f)), read(&again.join(f)), "{f} differs");
    }
    assert_eq!(
        read(&first.join("scenario.resolved.toml")),
        read(&again.join("scenario.resolved.toml"))
    );

    // Aggregate: one row per strategy, three seeds each.
    let printed = ok(&["aggregate", o]);
    assert!(printed.contains("2 configurations"), "{printed}");
    let agg = read(&out.join("aggregate.csv"));
    let mut lines = agg.lines();
    let head: Vec<&str> = lines.next().expect("header").split(',').collect();
    assert_eq!(&head[..2], ["strategy", "n"]);
    let at = |name: &str| head.iter().position(|h| *h == name).expect("column");
    for (line, strategy) in lines.zip(["central", "pollen"]) {
        let cells: Vec<&str> = line.split(',').collect();
        assert_eq!(cells[0], strategy);
        assert_eq!(cells[at("n")], "3");
        // The mean of the three runs' last completions, from sweep.csv.
        let values: Vec<f64> = rows
            .iter()
            .filter(|r| r[1] == strategy)
            .map(|r| r[col("completion_max_s")].parse().expect("number"))
            .collect();
        let mean = values.iter().sum::<f64>() / 3.0;
        let got: f64 = cells[at("completion_max_s_mean")].parse().expect("mean");
        assert!((got - mean).abs() < 1e-9 * mean, "{got} vs {mean}");
        let lo: f64 = cells[at("completion_max_s_ci95_lo")].parse().expect("lo");
        let hi: f64 = cells[at("completion_max_s_ci95_hi")].parse().expect("hi");
        assert!(lo <= mean && mean <= hi, "{lo} {mean} {hi}");
    }
    let svg = read(&out.join("aggregate.svg"));
    assert!(svg.starts_with("<svg") && svg.contains("3 seeds"), "{svg}");
}

#[test]
fn aggregate_reports_a_missing_or_malformed_sweep() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_str().expect("utf-8");
    let out = sim(&["aggregate", d]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sweep.csv"), "{err}");
    std::fs::write(dir.path().join("sweep.csv"), "run,seed,t\na,1,fast\n").expect("csv");
    let out = sim(&["aggregate", d]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 2") && err.contains("\"fast\" is not a number"),
        "{err}"
    );
    assert!(!dir.path().join("aggregate.csv").exists());
}

#[test]
fn a_bad_range_or_trace_is_refused_before_any_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = dir.path().join("scenario.toml");
    std::fs::write(&scenario, SCENARIO).expect("scenario");
    std::fs::create_dir(dir.path().join("traces")).expect("dir");
    std::fs::write(dir.path().join("traces/site.csv"), "0,10\n2,-5\n").expect("trace");
    let out = dir.path().join("out");
    let (s, o) = (
        scenario.to_str().expect("utf-8"),
        out.to_str().expect("utf-8"),
    );
    let r = sim(&["sweep", s, "--param", "seed=3..1", "--out", o]);
    assert!(!r.status.success());
    assert!(String::from_utf8_lossy(&r.stderr).contains("\"3..1\" is not an integer range"));
    let r = sim(&["sweep", s, "--param", "seed=1..2", "--out", o]);
    assert!(!r.status.success());
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("site.csv, line 2"), "{err}");
    assert!(!out.exists(), "a refused sweep wrote results");
}
