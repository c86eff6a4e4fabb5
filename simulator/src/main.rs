//! `pollen-sim`: run a scenario, sweep parameters, print an example.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use pollen_sim::provenance::{self, Meta};
use pollen_sim::resources::Cost;
use pollen_sim::scenario::EXAMPLE;
use pollen_sim::{aggregate, plot, run_to_dir, sweep, trace, Scenario, Summary};

#[derive(Parser, Debug)]
#[command(
    name = "pollen-sim",
    version,
    about = "Pollen's discrete-event simulator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run one scenario; results into --out.
    Run(RunOpt),
    /// Run a scenario for every combination of parameter values, across cores.
    Sweep(SweepOpt),
    /// Mean, median and 95 % t-interval per configuration across seeds of
    /// a sweep: reads DIR/sweep.csv, writes DIR/aggregate.csv and DIR/aggregate.svg.
    Aggregate(AggregateOpt),
    /// Print a commented example scenario.
    Example,
}

#[derive(Args, Debug)]
struct RunOpt {
    scenario: PathBuf,
    /// Results, with scenario.resolved.toml (the scenario as run, loadable
    /// again) and run.json (version, command line).
    #[arg(long)]
    out: PathBuf,
    /// Overrides the scenario's seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Override a scenario value, e.g. `strategy=central` or `site.0.devices=20` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

#[derive(Args, Debug)]
struct SweepOpt {
    scenario: PathBuf,
    /// `KEY=V1,V2,...` (repeatable: every combination runs). A value may be an
    /// inclusive integer range `A..B`, mixed with others: `seed=1..20`,
    /// `site.0.count=1..3,10`.
    #[arg(long, required = true, value_name = "KEY=VALUES")]
    param: Vec<String>,
    /// Results: a directory per run named from its parameters
    /// (`strategy-pollen_seed-3`), each with scenario.resolved.toml and
    /// run.json, and sweep.csv (parameter columns, strategy, seed, results).
    #[arg(long)]
    out: PathBuf,
    /// Parallel runs (default: the number of cores).
    #[arg(long)]
    jobs: Option<usize>,
}

#[derive(Args, Debug)]
struct AggregateOpt {
    /// A sweep's output directory (holding sweep.csv).
    dir: PathBuf,
    /// The result column aggregate.svg plots.
    #[arg(long, default_value = "completion_max_s")]
    metric: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(o) => run(o),
        Command::Sweep(o) => sweep(o),
        Command::Aggregate(o) => aggregate(o),
        Command::Example => {
            print!("{EXAMPLE}");
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pollen-sim: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn split_kv(s: &str) -> anyhow::Result<(String, String)> {
    let (k, v) = s
        .split_once('=')
        .with_context(|| format!("{s:?} is not KEY=VALUE"))?;
    Ok((k.trim().to_owned(), v.trim().to_owned()))
}

fn load(path: &Path, params: &[(String, String)]) -> anyhow::Result<(Scenario, PathBuf)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let sc = Scenario::from_toml_with(&text, params)
        .with_context(|| format!("scenario {}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new(".")).to_owned();
    // Bad traces are refused before anything runs.
    trace::load_all(&sc, &base).with_context(|| format!("scenario {}", path.display()))?;
    Ok((sc, base))
}

fn command_line() -> Vec<String> {
    std::env::args().collect()
}

fn progress_bar(label: String, total: u64) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg} [{bar:30}] {pos}/{len} devices done ({elapsed})",
    ) {
        bar.set_style(style);
    }
    bar.set_message(label);
    Some(bar)
}

fn run(o: RunOpt) -> anyhow::Result<()> {
    let mut params: Vec<(String, String)> = o
        .set
        .iter()
        .map(|s| split_kv(s))
        .collect::<Result<_, _>>()?;
    if let Some(seed) = o.seed {
        params.push(("seed".into(), seed.to_string()));
    }
    let (sc, base) = load(&o.scenario, &params)?;
    let bar = progress_bar(sc.strategy.name().into(), sc.devices());
    let started = std::time::Instant::now();
    // The provenance first: a run that cannot record it does not start.
    let mut meta = Meta::new(command_line(), &o.scenario, &params);
    provenance::write(&sc, &base, &o.out, &meta)?;
    let (s, _) = run_to_dir(&sc, &base, &o.out, |done, _| {
        if let Some(b) = &bar {
            b.set_position(done as u64);
        }
    })?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let wall = started.elapsed().as_secs_f64();
    print_summary(&s, Some(wall));
    let cost = Cost::now(wall, s.devices as u64);
    if let (Some(peak), Some(per)) = (cost.peak_rss_bytes, cost.peak_rss_bytes_per_device) {
        println!(
            "memory: peak RSS {:.0} MiB, {:.1} KiB per device",
            peak as f64 / 1048576.0,
            per as f64 / 1024.0
        );
    }
    meta.cost = Some(cost);
    provenance::write_meta(&o.out, &meta)?;
    println!("results in {}", o.out.display());
    Ok(())
}

fn print_summary(s: &Summary, wall: Option<f64>) {
    let t = |x: Option<f64>| x.map_or("-".to_owned(), |v| format!("{v:.1} s"));
    println!(
        "{}: {}/{} devices done; completion p50 {} p90 {} max {}; bound {:.1} s (ratio {})",
        s.strategy,
        s.devices_done,
        s.devices,
        t(s.completion_p50_s),
        t(s.completion_p90_s),
        t(s.completion_max_s),
        s.bound_s,
        s.ratio_to_bound.map_or("-".into(), |r| format!("{r:.2}"))
    );
    println!(
        "uplinks: max {:.2} x release, mean {:.2}; seeder sent {:.2} x{}; {} duplicate chunks; {} events{}",
        s.uplink_multiple_max,
        s.uplink_multiple_mean,
        s.seeder_multiple,
        s.origin_multiple
            .map_or(String::new(), |m| format!(", origin {m:.2} x")),
        s.duplicate_chunks,
        s.events,
        wall.map_or(String::new(), |w| format!(
            " in {w:.1} s wall ({:.0} events/s)",
            s.events as f64 / w.max(1e-9)
        ))
    );
}

/// A run's summary and sorted completion times.
type RunResult = anyhow::Result<(Summary, Vec<f64>)>;

fn sweep(o: SweepOpt) -> anyhow::Result<()> {
    let axes: Vec<sweep::Axis> = o
        .param
        .iter()
        .map(|p| sweep::parse_param(p))
        .collect::<Result<_, _>>()?;
    let mut table = sweep::Table::new(&axes)?;
    let combos = sweep::combinations(&axes);
    // Check every combination before running any.
    let mut runs = Vec::new();
    for c in &combos {
        let (sc, base) = load(&o.scenario, c)?;
        runs.push((sweep::run_dir_name(c), sc, base));
    }
    sweep::check_names(runs.iter().map(|r| r.0.as_str()))?;
    let command = command_line();
    let jobs = o
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, runs.len().max(1));
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<RunResult>>> =
        Mutex::new((0..runs.len()).map(|_| None).collect());
    let bar = progress_bar("sweep".into(), runs.len() as u64);
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some((name, sc, base)) = runs.get(i) else {
                    break;
                };
                let dir = o.out.join(name);
                let meta = Meta::new(command.clone(), &o.scenario, &combos[i]);
                let r = provenance::write(sc, base, &dir, &meta)
                    .map_err(anyhow::Error::from)
                    .and_then(|()| Ok(run_to_dir(sc, base, &dir, |_, _| {})?));
                if let Ok(mut all) = results.lock() {
                    all[i] = Some(r);
                }
                if let Some(b) = &bar {
                    b.inc(1);
                }
            });
        }
    });
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let results = results
        .into_inner()
        .map_err(|_| anyhow::anyhow!("a run panicked"))?;
    let mut cdfs = Vec::new();
    let mut uplink = Vec::new();
    for (((name, _, _), r), combo) in runs.iter().zip(results).zip(&combos) {
        let (s, times) = r.with_context(|| format!("run {name} did not finish"))??;
        table.push(name, combo, &s);
        println!("{name}:");
        print_summary(&s, None);
        uplink.push((
            name.clone(),
            s.uplink_multiple_mean * s.sites as f64 * s.release_bytes as f64 / 1e9,
        ));
        cdfs.push((name.clone(), times, s.devices));
    }
    std::fs::create_dir_all(&o.out)?;
    std::fs::write(o.out.join(aggregate::SWEEP_CSV), table.csv())?;
    std::fs::write(
        o.out.join("cdf.svg"),
        plot::cdf("Completion per run", &cdfs),
    )?;
    std::fs::write(
        o.out.join("uplink_bytes.svg"),
        plot::bars("Bytes over all site uplinks", "GB", &uplink),
    )?;
    if let Some(central) = uplink
        .iter()
        .find(|(n, _)| n.split('_').any(|p| p == "strategy-central"))
        .map(|x| x.1)
    {
        let saved: Vec<(String, f64)> = uplink
            .iter()
            .map(|(n, b)| (n.clone(), 100.0 * (1.0 - b / central.max(1e-12))))
            .collect();
        std::fs::write(
            o.out.join("saved_vs_central.svg"),
            plot::bars("Uplink bytes saved vs central", "% saved", &saved),
        )?;
    }
    println!("results in {}", o.out.display());
    Ok(())
}

fn aggregate(o: AggregateOpt) -> anyhow::Result<()> {
    let agg = aggregate::run(&o.dir, &o.metric)?;
    println!(
        "{} configurations, {} result columns; {} and {} in {}",
        agg.groups.len(),
        agg.results.len(),
        aggregate::AGGREGATE_CSV,
        aggregate::AGGREGATE_SVG,
        o.dir.display()
    );
    Ok(())
}
