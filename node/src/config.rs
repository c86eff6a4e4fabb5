//! The binaries' config file: a flat TOML table whose keys are the long
//! flag names of a subcommand (`uplink-rate = "8mbit"`, `no-mdns = true`,
//! `peer = ["/dns4/..."]`). Each file value is checked by the flag's own
//! clap parser, then handed to clap as the flag would be, so a file value
//! and a flag value are validated alike; a flag given on the command line
//! wins over its key. Also renders the commented default file
//! (`config --default`) from the clap definition itself.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::ArgAction;
use clap::{Arg, ArgMatches, Command};
use toml::de::{DeTable, DeValue};

/// The id of the flag that names the config file.
pub const CONFIG_ARG: &str = "config";

/// Largest config file read.
const MAX_FILE: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The command line itself is wrong (or asks for help): clap's own error.
    #[error(transparent)]
    Cli(#[from] clap::Error),
    #[error("reading config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Syntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}:{line}: unknown key `{key}`")]
    UnknownKey {
        path: PathBuf,
        line: usize,
        key: String,
    },
    #[error("{path}:{line}: key `{key}`: expected {expected}")]
    WrongType {
        path: PathBuf,
        line: usize,
        key: String,
        expected: &'static str,
    },
    #[error("{path}:{line}: key `{key}`: {message}")]
    BadValue {
        path: PathBuf,
        line: usize,
        key: String,
        message: String,
    },
}

/// The `config` subcommand of both binaries: print the default file of
/// the daemon's subcommand, or check a file as the daemon would read it.
#[derive(clap::Args, Debug)]
#[group(required = true, multiple = false)]
pub struct ConfigOpt {
    /// Print the commented default file.
    #[arg(long)]
    pub default: bool,
    /// Check FILE as the daemon would read it (every key, every value, the
    /// required keys present) and exit 0 if it would start with it.
    #[arg(long, value_name = "FILE")]
    pub check: Option<PathBuf>,
}

/// `config --check FILE`: parses `BIN SUB --config FILE` as `P` would,
/// without running anything.
pub fn check_file<P: clap::Parser>(
    bin: &str,
    sub: &str,
    file: &std::path::Path,
    with_config: &[&str],
) -> Result<(), ConfigError> {
    let argv = [
        bin.into(),
        sub.into(),
        "--config".into(),
        file.as_os_str().to_owned(),
    ];
    parse_args::<P>(argv, with_config).map(|_| ())
}

/// [`parse`] for a derived parser `P`.
pub fn parse_args<P: clap::Parser>(
    argv: impl IntoIterator<Item = OsString>,
    with_config: &[&str],
) -> Result<P, ConfigError> {
    let matches = parse(P::command(), argv.into_iter().collect(), with_config)?;
    Ok(P::from_arg_matches(&matches)?)
}

/// Parses `argv` as `cmd` would, with the config file of the chosen
/// subcommand, if it is one of `with_config` and its `--config` flag (or
/// the flag's env var) names a file. Keys of any of `with_config` are
/// known; a subcommand ignores the keys of the others (`fetch` reads the
/// file of `run`).
pub fn parse(
    cmd: Command,
    argv: Vec<OsString>,
    with_config: &[&str],
) -> Result<ArgMatches, ConfigError> {
    // First pass: which subcommand, which file, which flags were given.
    // Required flags may come from the file, so none is required yet.
    let mut loose = cmd.clone();
    for name in with_config {
        loose = loose.mut_subcommand(name, |s| s.mut_args(|a| a.required(false)));
    }
    let first = loose.try_get_matches_from(argv.clone())?;
    let Some((name, sub)) = first.subcommand() else {
        return Ok(cmd.try_get_matches_from(argv)?);
    };
    let file = with_config
        .contains(&name)
        .then(|| sub.try_get_one::<PathBuf>(CONFIG_ARG).ok().flatten())
        .flatten();
    let Some(path) = file else {
        return Ok(cmd.try_get_matches_from(argv)?);
    };
    let text = read(path)?;
    let known: Vec<Arg> = with_config
        .iter()
        .filter_map(|n| cmd.find_subcommand(n))
        .flat_map(|s| s.get_arguments().cloned())
        .collect();
    let this = cmd
        .find_subcommand(name)
        .map(|s| s.get_arguments().collect::<Vec<_>>());
    let extra = file_args(path, &text, &known, this.unwrap_or_default(), sub)?;
    let mut all = argv;
    all.extend(extra);
    Ok(cmd.try_get_matches_from(all)?)
}

fn read(path: &Path) -> Result<String, ConfigError> {
    use std::io::Read;
    let err = |source| ConfigError::Read {
        path: path.to_owned(),
        source,
    };
    let mut text = String::new();
    std::fs::File::open(path)
        .map_err(err)?
        .take(MAX_FILE)
        .read_to_string(&mut text)
        .map_err(err)?;
    Ok(text)
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset).unwrap_or(text).matches('\n').count() + 1
}

/// A flag's config key: its long name, if it can be one.
fn key_of(arg: &Arg) -> Option<&str> {
    let long = arg.get_long()?;
    let usable = matches!(
        arg.get_action(),
        ArgAction::Set | ArgAction::Append | ArgAction::SetTrue
    );
    (usable && arg.get_id() != CONFIG_ARG).then_some(long)
}

/// The command-line arguments the file adds: every key checked (known,
/// of the right type, accepted by its flag's parser), then the keys of
/// this subcommand that the command line did not give.
fn file_args(
    path: &Path,
    text: &str,
    known: &[Arg],
    this: Vec<&Arg>,
    given: &ArgMatches,
) -> Result<Vec<OsString>, ConfigError> {
    let table = DeTable::parse(text).map_err(|e| ConfigError::Syntax {
        path: path.to_owned(),
        line: line_of(text, e.span().map_or(0, |s| s.start)),
        message: e.message().to_owned(),
    })?;
    let mut extra = Vec::new();
    for (key, value) in table.get_ref() {
        let line = line_of(text, key.span().start);
        let key: &str = key.get_ref();
        let Some(arg) = known.iter().find(|a| key_of(a) == Some(key)) else {
            return Err(ConfigError::UnknownKey {
                path: path.to_owned(),
                line,
                key: key.to_owned(),
            });
        };
        let args = flag_args(path, text, key, arg, value)?;
        // A key of a sibling subcommand only: ignored here.
        let Some(own) = this.iter().find(|a| key_of(a) == Some(key)) else {
            continue;
        };
        if given.value_source(own.get_id().as_str()) != Some(ValueSource::CommandLine) {
            extra.extend(args);
        }
    }
    Ok(extra)
}

/// One key's value as arguments for its flag, each checked by the flag's parser.
fn flag_args(
    path: &Path,
    text: &str,
    key: &str,
    arg: &Arg,
    value: &toml::Spanned<DeValue<'_>>,
) -> Result<Vec<OsString>, ConfigError> {
    let wrong = |span: std::ops::Range<usize>, expected| ConfigError::WrongType {
        path: path.to_owned(),
        line: line_of(text, span.start),
        key: key.to_owned(),
        expected,
    };
    let mut out = Vec::new();
    match (arg.get_action(), value.get_ref()) {
        (ArgAction::SetTrue, DeValue::Boolean(on)) => {
            if *on {
                out.push(OsString::from(format!("--{key}")));
            }
        }
        (ArgAction::SetTrue, _) => return Err(wrong(value.span(), "true or false")),
        (ArgAction::Append, DeValue::Array(items)) => {
            for item in items {
                let v = scalar(item.get_ref())
                    .ok_or_else(|| wrong(item.span(), "an array of strings"))?;
                out.push(checked(path, text, key, arg, &v, item.span())?);
            }
        }
        (ArgAction::Append, _) => return Err(wrong(value.span(), "an array of strings")),
        (_, v) => {
            let v = scalar(v).ok_or_else(|| wrong(value.span(), "a string or an integer"))?;
            out.push(checked(path, text, key, arg, &v, value.span())?);
        }
    }
    Ok(out)
}

/// A string or an integer as the text a flag would take.
fn scalar(value: &DeValue<'_>) -> Option<String> {
    match value {
        DeValue::String(s) => Some(s.to_string()),
        DeValue::Integer(i) if i.radix() == 10 => Some(i.as_str().replace('_', "")),
        _ => None,
    }
}

/// `--key=value`, if the flag's own parser takes `value`.
fn checked(
    path: &Path,
    text: &str,
    key: &str,
    arg: &Arg,
    value: &str,
    span: std::ops::Range<usize>,
) -> Result<OsString, ConfigError> {
    let flag = OsString::from(format!("--{key}={value}"));
    let probe = Command::new("config")
        .no_binary_name(true)
        .arg(arg.clone().required(false));
    match probe.try_get_matches_from([flag.clone()]) {
        Ok(_) => Ok(flag),
        Err(e) => Err(ConfigError::BadValue {
            path: path.to_owned(),
            line: line_of(text, span.start),
            key: key.to_owned(),
            message: clap_message(&e),
        }),
    }
}

/// The first line of a clap error, without its `error: ` prefix.
fn clap_message(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let first = text.lines().next().unwrap_or_default();
    first.strip_prefix("error: ").unwrap_or(first).to_owned()
}

/// The commented default config file of subcommand `cmd`: each key with
/// its flag's help, set to its default, or commented out with a
/// placeholder when it has none.
pub fn default_file(cmd: &Command, title: &str) -> String {
    let mut out =
        format!("# {title}\n# Every key is a flag's long name; a flag on the command line wins.\n");
    for arg in cmd.get_arguments() {
        let Some(key) = key_of(arg) else { continue };
        out.push('\n');
        let help = arg
            .get_long_help()
            .or(arg.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default();
        for line in wrap(&help, 76) {
            out.push_str(&format!("# {line}\n").replace("# \n", "#\n"));
        }
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        let list = matches!(arg.get_action(), ArgAction::Append);
        match arg.get_action() {
            ArgAction::SetTrue => out.push_str(&format!("{key} = false\n")),
            _ if defaults.is_empty() => {
                let name = arg
                    .get_value_names()
                    .and_then(|n| n.first())
                    .map_or_else(|| key.to_uppercase(), |n| n.to_string());
                let placeholder = toml_value(&[name], list);
                let required = if arg.is_required_set() {
                    "  # required"
                } else {
                    ""
                };
                out.push_str(&format!("# {key} = {placeholder}{required}\n"));
            }
            _ => out.push_str(&format!("{key} = {}\n", toml_value(&defaults, list))),
        }
    }
    out
}

fn toml_value(values: &[String], list: bool) -> String {
    let one = |v: &String| {
        if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) && v.len() < 19 {
            v.clone()
        } else {
            format!("{v:?}")
        }
    };
    if list {
        let items: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
        format!("[{}]", items.join(", "))
    } else {
        values.first().map(one).unwrap_or_default()
    }
}

/// Words of `text` in lines of at most `width` characters (paragraph breaks kept).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for (i, para) in text.split("\n\n").enumerate() {
        if i > 0 {
            lines.push(String::new());
        }
        let mut line = String::new();
        for word in para.split_whitespace() {
            if !line.is_empty() && line.len() + 1 + word.len() > width {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        if !line.is_empty() {
            lines.push(line);
        }
    }
    lines
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
