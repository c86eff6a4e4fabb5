//! What the Pollen binaries share at their edge: logging set-up, stopping
//! on SIGINT or SIGTERM, progress reporting (a bar on a terminal, sparse
//! plain lines otherwise) and the private directories their stores live in.

use std::io::IsTerminal;
use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};

/// How log lines are written (`--log-format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One readable line per event.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `fields`, `target`,
    /// spans), for log collectors.
    Json,
}

static FORMAT: std::sync::OnceLock<LogFormat> = std::sync::OnceLock::new();

/// Logs to stderr in `format`. Default filter: Pollen's own events at
/// `info` (releases taken up, installs, commits, rollbacks, halts, refused
/// peers), everything else at `warn`; `RUST_LOG` overrides. Colour only on
/// a terminal, so journald and log files get plain text.
pub fn init_tracing(format: LogFormat) {
    let _ = FORMAT.set(format);
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("warn,pollen_node=info,pollen_seeder=info")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
    };
}

/// A line for the person at the terminal (stderr): as it is in text
/// format, an `info` event in JSON format (so every stderr line is JSON).
pub fn note(text: &str) {
    match FORMAT.get() {
        Some(LogFormat::Json) => tracing::info!("{text}"),
        _ => eprintln!("{text}"),
    }
}

/// The binaries' last word on failure: `NAME: error: ...` on stderr, an
/// `error` event in JSON format.
pub fn fatal(name: &str, error: &str) {
    match FORMAT.get() {
        Some(LogFormat::Json) => tracing::error!(error, "{name} failed"),
        _ => eprintln!("{name}: error: {error}"),
    }
}

/// Resolves when the process is asked to stop: SIGINT (Ctrl-C) or SIGTERM
/// (`systemctl stop`, `kill`), logging which. The driver then finishes the
/// store writes it has in hand and returns; an install hook that is
/// running is left to the lifecycle's crash recovery at the next start.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch for SIGTERM; only SIGINT stops the node");
                std::future::pending::<()>().await
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping"),
        _ = term => tracing::info!("SIGTERM: stopping"),
    }
}

/// Progress of a long job over a known number of units.
#[derive(Debug)]
pub struct Progress {
    bar: Option<ProgressBar>,
    label: &'static str,
    last_percent: Option<u64>,
}

impl Progress {
    /// A bar when stderr is a terminal; otherwise a line on stderr every 10%
    /// (`<label>: progress <done>/<total>`), which scripts and tests can follow.
    pub fn new(label: &'static str, total: u64, unit: &str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            let template = format!("{label} [{{bar:40}}] {{pos}}/{{len}} {unit} {{eta}}");
            if let Ok(style) = ProgressStyle::with_template(&template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        });
        Self {
            bar,
            label,
            last_percent: None,
        }
    }

    pub fn set(&mut self, done: u64, total: u64) {
        if let Some(bar) = &self.bar {
            bar.set_length(total);
            bar.set_position(done);
            return;
        }
        let percent = done.saturating_mul(100).checked_div(total).unwrap_or(100);
        let step = percent / 10;
        if self.last_percent != Some(step) || done == total {
            if self.last_percent != Some(step) {
                note(&format!("{}: progress {done}/{total}", self.label));
            }
            self.last_percent = Some(step);
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Creates `dir` and any missing parents with mode 0700 (a node's data
/// directory and its store hold the node's identity key). A directory that
/// already exists keeps its mode.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// An error and its causes on one line, skipping a cause whose text the
/// message before it already includes (thiserror's `{0}` plus `#[from]`).
pub fn one_line(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let text = e.to_string();
        if line.is_empty() {
            // Some wrappers (libp2p's TransportError::Other) print nothing.
            line = text;
        } else if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = e.source();
    }
    line
}

/// A number and its unit: `factor` maps a unit (lower case, trimmed) to
/// bytes; the product, rounded, must lie in 1..=`max`. `what` and `example`
/// word the errors.
fn scaled(
    s: &str,
    t: &str,
    what: &str,
    example: &str,
    max: f64,
    factor: impl Fn(&str) -> Option<f64>,
) -> Result<u64, String> {
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a {what} (try {example})"))?;
    let unit = unit.trim();
    let f = factor(unit).ok_or_else(|| format!("unknown {what} unit {unit:?} in {s:?}"))?;
    let v = (n * f).round();
    if !(1.0..=max).contains(&v) {
        return Err(format!("{what} {s:?} out of range"));
    }
    Ok(v as u64)
}

/// Byte multiples both parsers take: kB, MB, GB (1000s), KiB, MiB, GiB (1024s).
fn byte_unit(unit: &str) -> Option<f64> {
    Some(match unit {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    })
}

/// Parses a byte rate: `8mbit`, `10Mbit/s`, `1MB/s`, `512KiB`, `1000000` (bytes/s).
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let t = s.trim().trim_end_matches("/s").to_ascii_lowercase();
    scaled(s, &t, "rate", "8mbit or 1MB/s", 1e12, |unit| match unit {
        "bps" => Some(1.0),
        "kbit" => Some(1e3 / 8.0),
        "mbit" => Some(1e6 / 8.0),
        "gbit" => Some(1e9 / 8.0),
        other => byte_unit(other),
    })
}

/// Parses a size: `2GiB`, `512MiB`, `1.5GB`, `100kB`, `1000000` (bytes).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    scaled(s, &t, "size", "2GiB or 500MB", 1e15, |unit| match unit {
        "tb" => Some(1e12),
        "tib" => Some(1024.0f64.powi(4)),
        other => byte_unit(other),
    })
}

#[cfg(test)]
mod tests {
    use super::{create_private_dir, one_line, parse_rate, parse_size};

    #[test]
    fn sizes_parse_in_both_unit_families() {
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("512 MiB"), Ok(512 << 20));
        assert_eq!(parse_size("1.5GB"), Ok(1_500_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("2 parsecs").is_err());
        assert!(parse_size("0").is_err());
        assert!(parse_size("-1GiB").is_err());
    }

    /// An error that prints nothing and wraps another.
    #[derive(Debug)]
    struct Silent(std::io::Error);

    impl std::fmt::Display for Silent {
        fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            Ok(())
        }
    }

    impl std::error::Error for Silent {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn one_line_skips_wrappers_that_print_nothing() {
        let e = Silent(std::io::Error::other("address in use"));
        assert_eq!(one_line(&e), "address in use");
    }

    #[test]
    fn private_dirs_are_0700_down_to_the_leaf() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().expect("tempdir");
        let data = tmp.path().join("data");
        create_private_dir(&data.join("store")).expect("create");
        for dir in [&data, &data.join("store")] {
            let mode = std::fs::metadata(dir).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", dir.display());
        }
        create_private_dir(&data).expect("exists already");
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("8mbit"), Ok(1_000_000));
        assert_eq!(parse_rate("1MB/s"), Ok(1_000_000));
        assert_eq!(parse_rate("2MiB"), Ok(2 << 20));
        assert_eq!(parse_rate("1500"), Ok(1500));
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("0").is_err());
    }
}
