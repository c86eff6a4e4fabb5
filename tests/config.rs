//! The config file of the real binaries: the file `config --default`
//! prints (required keys filled in) runs a node and a seeder; flags on the
//! command line override its keys; an unknown key or a bad value stops the
//! binary before it does anything, naming the file, the key and the line.
//! `--log-format json`: every stderr line is a JSON log event.

use std::path::Path;
use std::time::Duration;

use pollen_e2e::{run, run_ok, s, try_node_status, Daemon, Release};

const WAIT: Duration = Duration::from_secs(60);

/// The printed default file with `key = value` lines set (commented-out
/// placeholders or defaults alike).
fn filled(default: &str, set: &[(&str, String)]) -> String {
    let mut out = String::new();
    for line in default.lines() {
        let key = line
            .trim_start_matches("# ")
            .split(" = ")
            .next()
            .unwrap_or("");
        match set.iter().find(|(k, _)| *k == key && line.contains(" = ")) {
            Some((k, v)) => out.push_str(&format!("{k} = {v}\n")),
            None => out.push_str(&format!("{line}\n")),
        }
    }
    out
}

/// Every stderr line is a JSON event with a timestamp, a level and
/// fields; returns their messages.
fn json_messages(stderr: &[String]) -> Vec<String> {
    assert!(!stderr.is_empty(), "no log lines");
    stderr
        .iter()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
            assert!(v["level"].is_string(), "{line}");
            assert!(v["timestamp"].is_string(), "{line}");
            assert!(v["fields"].is_object(), "{line}");
            v["fields"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

#[test]
fn node_runs_from_its_default_file_and_flags_override_it() {
    let r = Release::publish(2 << 20, 70);
    let (mut seeder, addr) = r.serve();
    let default = run_ok("pollen-node", &["config", "--default"]);
    for key in [
        "data",
        "trust",
        "channel",
        "peer",
        "uplink-rate",
        "install-hook",
        "log-format",
    ] {
        assert!(
            default.contains(&format!("{key} = ")),
            "{key} missing:\n{default}"
        );
    }
    assert!(default.contains("\nmax-attempts = 3\n"), "{default}");
    assert!(default.contains("\nlog-format = \"text\"\n"), "{default}");
    let data = r.dir.join("dev");
    let file = r.dir.join("node.toml");
    let text = filled(
        &default,
        &[
            ("data", format!("{:?}", s(&data))),
            ("trust", format!("{:?}", r.trust)),
            ("channel", "\"nightly\"".into()),
            ("listen", "[\"/ip4/127.0.0.1/tcp/0\"]".into()),
            ("peer", format!("[{addr:?}]")),
        ],
    );
    std::fs::write(&file, text).expect("write config");

    // The file says channel nightly, no-mdns false, log-format text; the
    // flags say otherwise and win.
    let mut n = Daemon::spawn(
        "pollen-node",
        &[
            "run",
            "--config",
            s(&file),
            "--channel",
            "stable",
            "--no-mdns",
            "--log-format",
            "json",
        ],
    );
    n.loopback_addr();
    n.wait_complete(WAIT).expect("fetched channel stable");
    let st = try_node_status(&data).expect("status");
    assert_eq!(st["channel"], "stable", "{st}");
    assert!(n.terminate().success(), "{:?}", n.stderr);
    let messages = json_messages(&n.stderr);
    assert!(
        messages.iter().any(|m| m == "SIGTERM: stopping"),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.starts_with("peer id ")),
        "{messages:?}"
    );
    let status = seeder.terminate();
    assert!(status.success(), "{status:?}: {:?}", seeder.stderr);
}

#[test]
fn fetch_reads_the_node_file_from_pollen_config() {
    let r = Release::publish(1 << 20, 71);
    let (mut seeder, addr) = r.serve();
    let (data, out) = (r.dir.join("dev"), r.dir.join("out.img"));
    let file = r.dir.join("node.toml");
    std::fs::write(
        &file,
        format!(
            "data = {:?}\ntrust = {:?}\nchannel = \"stable\"\nlisten = [\"/ip4/127.0.0.1/tcp/0\"]\n\
             peer = [{addr:?}]\nno-mdns = true\ninstall-hook = \"true\"\nlinger = \"0s\"\n",
            s(&data),
            r.trust
        ),
    )
    .expect("write");
    let out_flag = s(&out);
    let done = std::process::Command::new(pollen_e2e::bin("pollen-node"))
        .args(["fetch", "--out", out_flag, "--log-format", "json"])
        .env("POLLEN_CONFIG", &file)
        .output()
        .expect("fetch");
    assert!(done.status.success(), "{done:?}");
    assert_eq!(pollen_e2e::file_blake3(&out), r.blake3);
    let stderr: Vec<String> = String::from_utf8_lossy(&done.stderr)
        .lines()
        .map(str::to_owned)
        .collect();
    json_messages(&stderr);
    let status = seeder.terminate();
    assert!(status.success(), "{status:?}: {:?}", seeder.stderr);
}

fn refused(args: &[&str], line: usize, file: &Path, needles: &[&str]) {
    let out = run("pollen-node", args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "accepted: {stderr}");
    assert!(
        stderr.contains(&format!("{}:{line}:", file.display())),
        "no file:line in {stderr}"
    );
    for n in needles {
        assert!(stderr.contains(n), "no {n:?} in {stderr}");
    }
}

#[test]
fn unknown_keys_and_bad_values_are_refused_before_anything_happens() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let file = dir.path().join("node.toml");
    let head = format!(
        "data = {:?}\ntrust = \"/nonexistent\"\nchannel = \"stable\"\n",
        s(&data)
    );
    std::fs::write(&file, format!("{head}\n# typo\nuplink_rate = \"8mbit\"\n")).expect("w");
    let args = ["run", "--config", s(&file)];
    refused(&args, 6, &file, &["unknown key", "uplink_rate"]);
    std::fs::write(&file, format!("{head}uplink-rate = \"fast\"\n")).expect("w");
    refused(&args, 4, &file, &["uplink-rate", "fast"]);
    std::fs::write(&file, format!("{head}no-mdns = \"yes\"\n")).expect("w");
    refused(&args, 4, &file, &["no-mdns", "true or false"]);
    std::fs::write(&file, format!("{head}peer = \"/ip4/1.2.3.4/tcp/1\"\n")).expect("w");
    refused(&args, 4, &file, &["peer", "array"]);
    std::fs::write(&file, format!("{head}api = \"10.0.0.1:80\"\n")).expect("w");
    refused(&args, 4, &file, &["api", "loopback"]);
    assert!(!data.exists(), "a refused config changed state");
}

#[test]
fn seeder_serves_from_its_default_file_named_by_the_env_var() {
    let r = Release::publish(1 << 20, 72);
    let default = run_ok("pollen-seeder", &["config", "--default"]);
    assert!(
        default.contains("# store = \"STORE\"  # required"),
        "{default}"
    );
    assert!(default.contains("\nupload-slots = "), "{default}");
    let file = r.dir.join("seeder.toml");
    let text = filled(
        &default,
        &[
            ("store", format!("{:?}", s(&r.store))),
            ("channel", "\"stable\"".into()),
            ("listen", "[\"/ip4/127.0.0.1/tcp/0\"]".into()),
            ("no-mdns", "true".into()),
            ("log-format", "\"json\"".into()),
        ],
    );
    std::fs::write(&file, text).expect("write");
    let mut seeder = Daemon::spawn_env(
        "pollen-seeder",
        &["serve"],
        &[("POLLEN_SEEDER_CONFIG", s(&file))],
        &[],
    );
    let addr = seeder.loopback_addr();
    let (data, out) = (r.dir.join("dev"), r.dir.join("out.img"));
    let mut args = r.fetch_args(&data, &out, &[&addr]);
    args.extend(["--linger", "0s"]);
    run_ok("pollen-node", &args);
    assert_eq!(pollen_e2e::file_blake3(&out), r.blake3);
    assert!(seeder.terminate().success(), "{:?}", seeder.stderr);
    let messages = json_messages(&seeder.stderr);
    assert!(
        messages.iter().any(|m| m.starts_with("serving release 1")),
        "{messages:?}"
    );
}

/// The conffiles the Debian packages ship (packaging/etc) against the real
/// parsers: as shipped, `config --check` names exactly the required keys
/// left for the integrator; with every commented example taken in, the
/// file is accepted; a stray key is refused with its line.
#[test]
fn packaged_config_files_check_against_the_real_parsers() {
    let dir = tempfile::tempdir().expect("tmp");
    let packaging = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/etc");
    for (bin, file, missing) in [
        ("pollen-node", "node.toml", &["--trust", "--channel"][..]),
        ("pollen-seeder", "seeder.toml", &["--channel"][..]),
    ] {
        let shipped = packaging.join(file);
        let out = run(bin, &["config", "--check", s(&shipped)]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bin} {file}: {stderr}");
        for flag in missing {
            assert!(stderr.contains(flag), "{bin} {file}: no {flag} in {stderr}");
        }

        let text = std::fs::read_to_string(&shipped).expect("read conffile");
        let mut examples = 0;
        let all: String = text
            .lines()
            .map(|l| match l.strip_prefix('#') {
                Some(rest) if rest.split_once(" = ").is_some_and(|(k, _)| is_key(k)) => {
                    examples += 1;
                    format!("{rest}\n")
                }
                _ => format!("{l}\n"),
            })
            .collect();
        assert!(examples >= 10, "{file}: only {examples} examples");
        let full = dir.path().join(file);
        std::fs::write(&full, &all).expect("write");
        let out = run(bin, &["config", "--check", s(&full)]);
        assert!(
            out.status.success(),
            "{bin} {file} with every example: {}",
            String::from_utf8_lossy(&out.stderr)
        );

        std::fs::write(&full, format!("{all}stray-key = 1\n")).expect("write");
        let line = all.lines().count() + 1;
        let out = run(bin, &["config", "--check", s(&full)]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(&format!(
                "{}:{line}: unknown key `stray-key`",
                full.display()
            )),
            "{stderr}"
        );
    }
}

fn is_key(k: &str) -> bool {
    !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '-')
}
