use std::ffi::OsString;
use std::io::Write;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use super::{default_file, parse, ConfigError};

#[derive(Parser, Debug)]
#[command(name = "t")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    Run(RunOpt),
    Fetch(FetchOpt),
    Other {
        #[arg(long)]
        config: Option<std::path::PathBuf>,
    },
}

#[derive(Args, Debug)]
struct RunOpt {
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// The data directory.
    #[arg(long)]
    data: std::path::PathBuf,
    /// Peers (repeatable).
    #[arg(long)]
    peer: Vec<String>,
    #[arg(long, default_value = "/ip4/0.0.0.0/tcp/0")]
    listen: Vec<String>,
    /// Off switch.
    #[arg(long)]
    no_mdns: bool,
    #[arg(long, value_parser = crate::cli_support::parse_rate)]
    uplink_rate: Option<u64>,
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    max_attempts: u32,
    #[arg(long, default_value = "5m")]
    status_interval: humantime::Duration,
    #[arg(long)]
    install_hook: Option<String>,
}

#[derive(Args, Debug)]
struct FetchOpt {
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    #[arg(long)]
    data: std::path::PathBuf,
    #[arg(long)]
    json: bool,
}

struct File(tempfile::NamedTempFile);

fn file(text: &str) -> File {
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    f.write_all(text.as_bytes()).expect("write");
    File(f)
}

fn cli(f: &File, args: &[&str]) -> Result<Cli, ConfigError> {
    let mut argv: Vec<OsString> = vec!["t".into()];
    argv.extend(args.iter().map(OsString::from));
    argv.extend(["--config".into(), f.0.path().as_os_str().to_owned()]);
    let m = parse(Cli::command(), argv, &["run", "fetch"])?;
    Ok(Cli::from_arg_matches(&m)?)
}

fn run(c: Cli) -> RunOpt {
    match c.command {
        Cmd::Run(o) => o,
        other => panic!("not run: {other:?}"),
    }
}

#[test]
fn file_values_become_flags() {
    let f = file(
        "data = \"/var/lib/pollen\"\npeer = [\"/ip4/1.2.3.4/tcp/4000\", \"/ip4/5.6.7.8/tcp/1\"]\n\
         no-mdns = true\nuplink-rate = \"8mbit\"\nmax-attempts = 5\nstatus-interval = \"30s\"\n\
         install-hook = \"/bin/echo $POLLEN_ARTIFACT\"\n",
    );
    let o = run(cli(&f, &["run"]).expect("parses"));
    assert_eq!(o.data, std::path::Path::new("/var/lib/pollen"));
    assert_eq!(o.peer, ["/ip4/1.2.3.4/tcp/4000", "/ip4/5.6.7.8/tcp/1"]);
    assert_eq!(o.listen, ["/ip4/0.0.0.0/tcp/0"], "default kept");
    assert!(o.no_mdns);
    assert_eq!(o.uplink_rate, Some(1_000_000));
    assert_eq!(o.max_attempts, 5);
    assert_eq!(*o.status_interval, std::time::Duration::from_secs(30));
    assert_eq!(
        o.install_hook.as_deref(),
        Some("/bin/echo $POLLEN_ARTIFACT")
    );
}

#[test]
fn flags_override_keys_and_replace_lists() {
    let f = file("data = \"/file\"\npeer = [\"/ip4/1.1.1.1/tcp/1\"]\nmax-attempts = 5\n");
    let o = run(cli(
        &f,
        &["run", "--data", "/flag", "--peer", "/ip4/2.2.2.2/tcp/2"],
    )
    .expect("ok"));
    assert_eq!(o.data, std::path::Path::new("/flag"));
    assert_eq!(o.peer, ["/ip4/2.2.2.2/tcp/2"]);
    assert_eq!(o.max_attempts, 5);
}

#[test]
fn required_flags_may_come_from_the_file_or_are_still_required() {
    let f = file("no-mdns = true\n");
    match cli(&f, &["run"]) {
        Err(ConfigError::Cli(e)) => {
            assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn unknown_keys_name_file_and_line() {
    let f = file("data = \"/d\"\n\n# comment\nno-such-key = 1\n");
    let e = cli(&f, &["run"]).expect_err("unknown key");
    assert!(matches!(e, ConfigError::UnknownKey { line: 4, ref key, .. } if key == "no-such-key"));
    let text = e.to_string();
    assert!(
        text.contains(&format!("{}:4:", f.0.path().display())),
        "{text}"
    );
    // `config` itself is no key.
    let f = file("config = \"/x\"\n");
    assert!(matches!(
        cli(&f, &["run", "--data", "/d"]),
        Err(ConfigError::UnknownKey { .. })
    ));
}

#[test]
fn wrong_types_and_bad_values_name_their_line() {
    for (text, line) in [
        ("data = \"/d\"\nno-mdns = \"yes\"\n", 2),
        ("peer = \"/ip4/1.1.1.1/tcp/1\"\ndata = \"/d\"\n", 1),
        ("data = \"/d\"\nmax-attempts = 1.5\n", 2),
        ("data = \"/d\"\npeer = [\n  \"ok\",\n  7.5,\n]\n", 4),
    ] {
        let e = cli(&file(text), &["run"]).expect_err(text);
        assert!(
            matches!(e, ConfigError::WrongType { line: l, .. } if l == line),
            "{text}: {e}"
        );
    }
    for (text, line, what) in [
        ("data = \"/d\"\n\nuplink-rate = \"fast\"\n", 3, "not a rate"),
        ("max-attempts = 0\ndata = \"/d\"\n", 1, "not in 1.."),
        ("data = \"/d\"\nstatus-interval = \"soon\"\n", 2, "soon"),
    ] {
        let e = cli(&file(text), &["run"]).expect_err(text);
        assert!(
            matches!(e, ConfigError::BadValue { line: l, .. } if l == line),
            "{text}: {e}"
        );
        assert!(e.to_string().contains(what), "{e}");
    }
    let e = cli(&file("data = \"/d\"\nthis is not toml\n"), &["run"]).expect_err("syntax");
    assert!(matches!(e, ConfigError::Syntax { line: 2, .. }), "{e}");
}

#[test]
fn a_bad_key_is_refused_even_when_a_flag_overrides_it() {
    let f = file("uplink-rate = \"fast\"\n");
    let e = cli(&f, &["run", "--data", "/d", "--uplink-rate", "1mbit"]).expect_err("bad");
    assert!(matches!(e, ConfigError::BadValue { line: 1, .. }), "{e}");
}

#[test]
fn a_sibling_subcommand_ignores_keys_it_lacks() {
    let f = file("data = \"/d\"\ninstall-hook = \"true\"\njson = true\n");
    match cli(&f, &["fetch"]).expect("fetch takes run's file").command {
        Cmd::Fetch(o) => assert!(o.json),
        other => panic!("{other:?}"),
    }
    let o = run(cli(&f, &["run"]).expect("run ignores fetch's json"));
    assert_eq!(o.install_hook.as_deref(), Some("true"));
}

#[test]
fn subcommands_without_a_config_file_are_untouched() {
    let f = file("garbage = 1\n");
    let c = cli(&f, &["other"]).expect("not read");
    assert!(matches!(c.command, Cmd::Other { .. }));
}

#[test]
fn the_default_file_parses_once_required_keys_are_filled() {
    let cmd = Cli::command();
    let sub = cmd.find_subcommand("run").expect("run");
    let text = default_file(sub, "test");
    assert!(
        text.contains("# The data directory\n# data = \"DATA\"  # required\n"),
        "{text}"
    );
    assert!(
        text.contains("listen = [\"/ip4/0.0.0.0/tcp/0\"]\n"),
        "{text}"
    );
    assert!(text.contains("max-attempts = 3\n"), "{text}");
    assert!(text.contains("status-interval = \"5m\"\n"), "{text}");
    assert!(text.contains("no-mdns = false\n"), "{text}");
    assert!(!text.contains("config ="), "{text}");
    let filled = format!("{text}\ndata = \"/d\"\n");
    let o = run(cli(&file(&filled), &["run"]).expect("default file parses"));
    assert_eq!(o.max_attempts, 3);
}
