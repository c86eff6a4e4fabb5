//! `pollen-seeder enroll` (device credentials, one or a CSV batch, signed
//! with the enroll key) and `pollen-seeder id` (the seeder's own peer id:
//! it is enrolled like any device, but `pollen-node id` reads a node's data
//! directory, not the seeder's store).

use std::path::PathBuf;

use anyhow::Context;
use clap::{ArgGroup, Args};
use pollen_core::trust::VerifiedCredential;
use pollen_node::node_id::peer_id;
use pollen_seeder::enroll::{self, Device};
use pollen_seeder::files::{read_bounded, write_new};
use pollen_seeder::fleet_policy::{load_held, parse_days};
use pollen_seeder::keyfile;

/// Largest CSV batch read.
const MAX_CSV_BYTES: usize = 16 << 20;

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("source").required(true).args(["peer_id", "csv"])))]
pub struct EnrollOpt {
    /// The enroll role's secret key (on the provisioning station).
    #[arg(long, value_name = "ENROLL_SECRET")]
    key: PathBuf,
    /// The node's peer id (`pollen-node id`; for the seeder, `pollen-seeder id`).
    #[arg(long, requires_all = ["device_id", "out"], value_name = "ID")]
    peer_id: Option<String>,
    /// The device's id in the fleet (rollout buckets are computed from it).
    #[arg(long, value_name = "NAME")]
    device_id: Option<String>,
    #[arg(long, conflicts_with = "csv")]
    site: Option<String>,
    #[arg(long, conflicts_with = "csv")]
    hardware: Option<String>,
    #[arg(long, conflicts_with = "csv")]
    serial: Option<String>,
    /// The credential file to write (never overwritten).
    #[arg(long, conflicts_with = "csv")]
    out: Option<PathBuf>,
    /// A batch: `peer_id,device_id,site,hardware,serial`, one device per
    /// line after that header, empty cells for none.
    #[arg(long, requires = "out_dir", conflicts_with = "device_id")]
    csv: Option<PathBuf>,
    /// Where a batch's credentials go, one `<device_id>.cred` per row
    /// (created if missing). Nothing is written unless every row is good.
    #[arg(long, value_name = "DIR", conflicts_with = "peer_id")]
    out_dir: Option<PathBuf>,
    /// Days until the credential expires (or a duration: 90d, 12h).
    #[arg(long, default_value = "3650", value_parser = parse_days, value_name = "DAYS")]
    expires_in: u64,
    /// The fleet policy: refuse a key that is not in its enroll role, and
    /// check each credential against it.
    #[arg(long, value_name = "POLICY")]
    policy: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct IdOpt {
    /// The seeder's store (created, mode 0700, if missing).
    #[arg(long)]
    store: PathBuf,
    #[arg(long)]
    json: bool,
}

pub fn enroll(o: EnrollOpt) -> anyhow::Result<()> {
    let key = keyfile::load_secret(&o.key)?;
    let policy = match &o.policy {
        Some(p) => {
            let held = load_held(p)?;
            enroll::check_enroll_key(held.policy(), &key)?;
            Some(held)
        }
        None => None,
    };
    let devices: Vec<(Option<usize>, Device)> = match (&o.peer_id, &o.csv) {
        (Some(peer), _) => {
            let (peer, _) = enroll::parse_peer(peer)?;
            let device = Device {
                peer,
                device: o.device_id.clone().unwrap_or_default(),
                site: o.site.clone(),
                hardware: o.hardware.clone(),
                serial: o.serial.clone(),
            };
            vec![(None, device)]
        }
        (None, Some(csv)) => {
            let bytes = read_bounded(csv, MAX_CSV_BYTES)?;
            let text = String::from_utf8(bytes)
                .map_err(|_| anyhow::anyhow!("{}: not UTF-8 text", csv.display()))?;
            enroll::parse_csv(&text)
                .with_context(|| format!("{}", csv.display()))?
                .into_iter()
                .map(|(line, d)| (Some(line), d))
                .collect()
        }
        (None, None) => anyhow::bail!("--peer-id or --csv is required"),
    };
    let now = pollen_node::unix_now();
    let mut files = Vec::new();
    for (line, device) in &devices {
        let at = || match line {
            Some(l) => format!("line {l}"),
            None => format!("device {:?}", device.device),
        };
        let signed = enroll::credential(device, &key, now, o.expires_in).with_context(at)?;
        let bytes = signed.encode();
        if let Some(p) = &policy {
            VerifiedCredential::check(&bytes, &signed.credential().key, p.policy(), now)
                .with_context(|| format!("{}: refused by the policy", at()))?;
        }
        let path = match (&o.out, &o.out_dir) {
            (Some(out), _) => out.clone(),
            (None, Some(dir)) => enroll::path_in(dir, &device.device),
            (None, None) => anyhow::bail!("--out or --out-dir is required"),
        };
        files.push((path, bytes));
    }
    if let Some(dir) = &o.out_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        enroll::write_all(&files)?;
    } else if let Some((path, bytes)) = files.first() {
        write_new(path, bytes)?;
    }
    let report: Vec<serde_json::Value> = devices
        .iter()
        .zip(&files)
        .map(|((_, d), (path, _))| {
            serde_json::json!({
                "device_id": d.device,
                "peer_id": d.peer.to_string(),
                "site": d.site,
                "hardware": d.hardware,
                "serial": d.serial,
                "expires_at": now.saturating_add(o.expires_in),
                "file": path,
            })
        })
        .collect();
    if o.json {
        return crate::print_json(&serde_json::json!({
            "key_id": key.public().id().to_string(),
            "credentials": report,
        }));
    }
    for ((_, d), (path, _)) in devices.iter().zip(&files) {
        println!(
            "enrolled {} ({}{}) -> {}",
            d.device,
            d.peer,
            d.site
                .as_deref()
                .map_or(String::new(), |s| format!(", site {s}")),
            path.display()
        );
    }
    println!(
        "{} credential(s) signed by enroll key {}",
        files.len(),
        key.public().id()
    );
    Ok(())
}

pub fn id(o: IdOpt) -> anyhow::Result<()> {
    let (id, created) = peer_id(&o.store)?;
    if o.json {
        return crate::print_json(&serde_json::json!({
            "peer_id": id.to_string(),
            "created": created,
        }));
    }
    println!("{id}");
    if created {
        eprintln!("created the seeder's identity in {}", o.store.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::{Cli, Command};

    fn enroll(args: &str) -> Result<super::EnrollOpt, clap::Error> {
        let argv = format!("pollen-seeder enroll --key k {args}");
        match Cli::try_parse_from(argv.split_whitespace())?.command {
            Command::Enroll(o) => Ok(o),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn one_device_or_a_batch_never_both() {
        let one = enroll("--peer-id 12D3 --device-id press-1 --site a --out p.cred").expect("one");
        assert_eq!(one.expires_in, 3650 * 86_400);
        assert!(enroll("--csv fleet.csv --out-dir creds").is_ok());
        for bad in [
            "",
            "--peer-id 12D3 --out p.cred",
            "--peer-id 12D3 --device-id press-1",
            "--csv fleet.csv",
            "--csv fleet.csv --out-dir d --device-id x",
            "--csv fleet.csv --out-dir d --site x",
            "--csv fleet.csv --out-dir d --out x",
            "--peer-id 12D3 --device-id p --out p.cred --out-dir d",
            "--peer-id 12D3 --device-id p --out p.cred --csv f",
        ] {
            assert!(enroll(bad).is_err(), "accepted: {bad:?}");
        }
    }
}
