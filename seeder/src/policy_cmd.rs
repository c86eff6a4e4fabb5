//! `pollen-seeder policy create | show | rotate`: the fleet policy on the
//! publisher's side. Root keys are kept offline, so these run where the
//! root keys are, sign with whichever are given, and say which signatures
//! are still missing (the rest are added with `pollen-seeder sign`).

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{ArgGroup, Args, Subcommand};
use pollen_core::manifest::{ManifestId, PublicKey, SecretKey};
use pollen_core::trust::{FleetPolicy, Role, SignedPolicy, VerifiedPolicy};
use pollen_node::store::RocksStore;
use pollen_node::trust_file::load_public_key;
use pollen_seeder::files::write_new;
use pollen_seeder::fleet_policy::{
    self, check_signers, load_held, parse_days, parse_manifest_id, read_policy, RoleChange,
    Rotation,
};
use pollen_seeder::policy_view::PolicyView;
use pollen_seeder::{enroll, keyfile};

#[derive(Args, Debug)]
pub struct PolicyOpt {
    #[command(subcommand)]
    cmd: PolicyCmd,
}

#[derive(Subcommand, Debug)]
enum PolicyCmd {
    /// Write a fleet's first signed policy: each role's keys and threshold.
    Create(CreateOpt),
    /// Show a policy file and whether it verifies (and, with --held, as a rotation).
    Show(ShowOpt),
    /// Write the next version of the held policy: rotated roles, revoked
    /// devices, recalled releases, floor resets.
    Rotate(RotateOpt),
    /// Hand a policy to the running seeder of a store (no restart): it
    /// takes it if it is a valid rotation of the one it holds, and passes
    /// it on to every admitted peer.
    Push(PushOpt),
}

#[derive(Args, Debug)]
struct PushOpt {
    /// The store `serve` is running on.
    #[arg(long)]
    store: PathBuf,
    /// The signed policy file.
    file: PathBuf,
}

/// A role's threshold: 1 to 16 (the most keys a role names).
fn threshold() -> clap::builder::RangedI64ValueParser<u8> {
    clap::value_parser!(u8).range(1..=16)
}

#[derive(Args, Debug)]
struct CreateOpt {
    /// Root role: public keys (`keygen`'s `.pub` files) that sign policies. Keep them offline.
    #[arg(long, num_args = 1.., required = true, value_name = "FILE.pub")]
    root: Vec<PathBuf>,
    /// How many root keys must sign (1 to 16).
    #[arg(long, default_value_t = 1, value_parser = threshold())]
    root_threshold: u8,
    /// Release role: keys that sign release manifests. Keep them offline.
    #[arg(long, num_args = 1.., required = true, value_name = "FILE.pub")]
    release: Vec<PathBuf>,
    /// How many release keys must sign (1 to 16).
    #[arg(long, default_value_t = 1, value_parser = threshold())]
    release_threshold: u8,
    /// Operator role: keys that sign rollout controls (may live on the seeder).
    #[arg(long, num_args = 1.., required = true, value_name = "FILE.pub")]
    operator: Vec<PathBuf>,
    /// How many operator keys must sign (1 to 16).
    #[arg(long, default_value_t = 1, value_parser = threshold())]
    operator_threshold: u8,
    /// Enroll role: keys that sign device credentials. With it the mesh is
    /// closed: only enrolled peers are answered.
    #[arg(long, num_args = 1.., value_name = "FILE.pub")]
    enroll: Vec<PathBuf>,
    /// How many enroll keys must sign a credential (1 to 16; default 1).
    #[arg(long, requires = "enroll", value_parser = threshold())]
    enroll_threshold: Option<u8>,
    /// The policy's version (devices take only a higher one than they hold).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    version: u64,
    /// Days until devices refuse the policy (or a duration: 90d, 12h).
    #[arg(long, default_value = "365", value_parser = parse_days, value_name = "DAYS")]
    expires_in: u64,
    /// Root secret keys to sign with now, each once (none: sign later with
    /// `pollen-seeder sign`).
    #[arg(long, num_args = 1.., value_name = "SECRET")]
    key: Vec<PathBuf>,
    /// The policy file to write (never overwritten).
    #[arg(long)]
    out: PathBuf,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct ShowOpt {
    /// The policy file.
    file: PathBuf,
    /// The policy devices hold now (a policy file, or a trust file or `.pub`
    /// for a fleet without one): also judge FILE as a rotation from it.
    #[arg(long, value_name = "HELD_POLICY_OR_TRUST_FILE")]
    held: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("base").required(true).args(["from", "from_trust"])))]
struct RotateOpt {
    /// The policy devices hold now.
    #[arg(long, value_name = "CURRENT.policy")]
    from: Option<PathBuf>,
    /// A fleet's first policy, for devices that hold a trust file (or a
    /// `.pub`) today (version 0): it must be signed by the trust file's
    /// key(s), up to its threshold, and by the new root key(s).
    #[arg(long, value_name = "TRUST_FILE_OR_PUB")]
    from_trust: Option<PathBuf>,
    /// The new policy file (never overwritten).
    #[arg(long, value_name = "NEW.policy")]
    out: PathBuf,
    /// New root keys (the old root must still sign this version).
    #[arg(long, num_args = 1.., value_name = "FILE.pub")]
    set_root: Vec<PathBuf>,
    /// How many root keys must sign (default: the held policy's).
    #[arg(long, value_parser = threshold())]
    root_threshold: Option<u8>,
    /// New release keys (manifests signed by the old ones stop verifying).
    #[arg(long, num_args = 1.., value_name = "FILE.pub")]
    set_release: Vec<PathBuf>,
    /// How many release keys must sign (default: the held policy's).
    #[arg(long, value_parser = threshold())]
    release_threshold: Option<u8>,
    /// New operator keys.
    #[arg(long, num_args = 1.., value_name = "FILE.pub")]
    set_operator: Vec<PathBuf>,
    /// How many operator keys must sign (default: the held policy's).
    #[arg(long, value_parser = threshold())]
    operator_threshold: Option<u8>,
    /// New enroll keys (adding them to an open mesh closes it).
    #[arg(long, num_args = 1.., value_name = "FILE.pub")]
    set_enroll: Vec<PathBuf>,
    /// How many enroll keys must sign (default: the held policy's).
    #[arg(long, value_parser = threshold())]
    enroll_threshold: Option<u8>,
    /// Drop the enroll role: the mesh opens (no credentials asked).
    #[arg(long, conflicts_with_all = ["set_enroll", "enroll_threshold"])]
    no_enroll: bool,
    /// A device whose credential no longer counts: its peer id or its
    /// credential file (repeatable).
    #[arg(long, value_name = "PEER_ID_OR_CREDENTIAL_FILE")]
    revoke_device: Vec<String>,
    /// A release no device may take, by manifest id (repeatable).
    #[arg(long, value_parser = parse_manifest_id, value_name = "MANIFEST_ID_HEX")]
    recall: Vec<ManifestId>,
    /// Recall a channel's bad releases: devices whose installed release is
    /// recalled go back to the --to release.
    #[arg(long, value_name = "CHANNEL", requires_all = ["to", "store"])]
    reset_floor: Option<String>,
    /// The release the channel's floor goes back to (its manifest id).
    #[arg(long, value_parser = parse_manifest_id, value_name = "MANIFEST_ID_HEX", requires = "reset_floor")]
    to: Option<ManifestId>,
    /// The publisher's store holding the --to manifest (read only).
    #[arg(long, value_name = "DIR", requires = "reset_floor")]
    store: Option<PathBuf>,
    /// Do not recall the channel's releases above --to that the store holds.
    #[arg(long, requires = "reset_floor")]
    no_auto_recall: bool,
    /// Days until devices refuse the new policy (or a duration: 90d, 12h).
    #[arg(long, default_value = "365", value_parser = parse_days, value_name = "DAYS")]
    expires_in: u64,
    /// Root secret keys to sign with now (the held and the new root's),
    /// each once; the rest sign later with `pollen-seeder sign`.
    #[arg(long, num_args = 1.., value_name = "SECRET")]
    key: Vec<PathBuf>,
    #[arg(long)]
    json: bool,
}

pub fn policy(o: PolicyOpt) -> anyhow::Result<()> {
    match o.cmd {
        PolicyCmd::Create(o) => create(o),
        PolicyCmd::Show(o) => show(o),
        PolicyCmd::Rotate(o) => rotate(o),
        PolicyCmd::Push(o) => push(o),
    }
}

fn push(o: PushOpt) -> anyhow::Result<()> {
    let (bytes, signed) = read_policy(&o.file)?;
    let addr = pollen_node::api::running_daemon(&o.store).map_err(|e| {
        anyhow::anyhow!(
            "no seeder running on {}: {e} (a stopped seeder takes the policy with `serve --policy FILE`)",
            o.store.display()
        )
    })?;
    pollen_node::api::request(addr, "POST", "/policy", &bytes)?;
    println!(
        "fleet policy version {} handed to the seeder at {addr}; its log says whether it took it",
        signed.policy().version
    );
    Ok(())
}

fn public_keys(files: &[PathBuf]) -> anyhow::Result<Vec<PublicKey>> {
    Ok(files
        .iter()
        .map(|f| load_public_key(f))
        .collect::<Result<_, _>>()?)
}

fn secret_keys(files: &[PathBuf]) -> anyhow::Result<Vec<SecretKey>> {
    Ok(files
        .iter()
        .map(|f| keyfile::load_secret(f))
        .collect::<Result<_, _>>()?)
}

fn change(keys: &[PathBuf], threshold: Option<u8>) -> anyhow::Result<RoleChange> {
    Ok(RoleChange {
        keys: match keys.is_empty() {
            true => None,
            false => Some(public_keys(keys)?),
        },
        threshold: threshold.map(usize::from),
    })
}

/// Signs, writes (never over an existing file) and reports.
fn write(
    policy: FleetPolicy,
    held: Option<&VerifiedPolicy>,
    keys: &[SecretKey],
    out: &Path,
    json: bool,
    notes: &[String],
) -> anyhow::Result<()> {
    check_signers(&policy, held.map(VerifiedPolicy::policy), keys)?;
    let bytes = fleet_policy::sign(policy, keys)?;
    write_new(out, &bytes)?;
    let signed = SignedPolicy::decode(&bytes)?;
    let view = PolicyView::new(&bytes, &signed, held, pollen_node::unix_now());
    if json {
        let mut v = serde_json::to_value(&view)?;
        v["out"] = serde_json::json!(out);
        v["notes"] = serde_json::json!(notes);
        return crate::print_json(&v);
    }
    print!("{}", view.summary());
    for n in notes {
        println!("note      {n}");
    }
    println!("written to {}", out.display());
    if !view.verifies() {
        println!(
            "not yet valid: add the missing signatures with `pollen-seeder sign --key SECRET {}`",
            out.display()
        );
    }
    Ok(())
}

fn create(o: CreateOpt) -> anyhow::Result<()> {
    let role = |r, files: &[PathBuf], t: u8| -> anyhow::Result<_> {
        Ok(fleet_policy::role(r, public_keys(files)?, usize::from(t))?)
    };
    let roles = [
        role(Role::Root, &o.root, o.root_threshold)?,
        role(Role::Release, &o.release, o.release_threshold)?,
        role(Role::Operator, &o.operator, o.operator_threshold)?,
    ];
    let enroll = match o.enroll.is_empty() {
        true => None,
        false => Some(role(
            Role::Enroll,
            &o.enroll,
            o.enroll_threshold.unwrap_or(1),
        )?),
    };
    let now = pollen_node::unix_now();
    let policy = FleetPolicy::new(o.version, now.saturating_add(o.expires_in), roles, enroll);
    let keys = secret_keys(&o.key)?;
    write(policy, None, &keys, &o.out, o.json, &[])
}

fn show(o: ShowOpt) -> anyhow::Result<()> {
    let (bytes, signed) = read_policy(&o.file)?;
    let held = o.held.as_deref().map(load_held).transpose()?;
    let view = PolicyView::new(&bytes, &signed, held.as_ref(), pollen_node::unix_now());
    if o.json {
        crate::print_json(&view)
    } else {
        print!("{}", view.summary());
        Ok(())
    }
}

fn rotate(o: RotateOpt) -> anyhow::Result<()> {
    let held = match (&o.from, &o.from_trust) {
        (Some(p), _) | (None, Some(p)) => load_held(p)?,
        (None, None) => anyhow::bail!("--from or --from-trust is required"),
    };
    if o.from.is_some() && held.signed().is_none() {
        anyhow::bail!("--from takes a policy file; for a trust file or `.pub` use --from-trust");
    }
    if o.from_trust.is_some() && held.signed().is_some() {
        anyhow::bail!("--from-trust takes a trust file or `.pub`; for a policy file use --from");
    }
    let mut notes = Vec::new();
    let mut revoke = Vec::new();
    for arg in &o.revoke_device {
        let (key, peer) = enroll::device_key(arg).with_context(|| {
            format!("--revoke-device {arg}: neither a credential file nor an ed25519 peer id")
        })?;
        revoke.push(key);
        notes.push(format!("revokes {peer}"));
    }
    let mut recall = o.recall.clone();
    let floor_reset = match (&o.reset_floor, o.to, &o.store) {
        (Some(channel), Some(to), Some(dir)) => {
            anyhow::ensure!(RocksStore::exists(dir), "no store at {}", dir.display());
            let store = RocksStore::open_read_only(dir)?;
            let r = fleet_policy::floor_reset(&store, channel, to)
                .with_context(|| format!("--reset-floor {channel} --to {to}"))?;
            if !o.no_auto_recall {
                for (id, release) in &r.above {
                    if !recall.contains(id) && !held.policy().is_recalled(id) {
                        recall.push(*id);
                        notes.push(format!(
                            "recalls release {release} ({id}), above {}",
                            r.reset.release
                        ));
                    }
                }
            }
            Some(r.reset)
        }
        _ => None,
    };
    let rotation = Rotation {
        root: change(&o.set_root, o.root_threshold)?,
        release: change(&o.set_release, o.release_threshold)?,
        operator: change(&o.set_operator, o.operator_threshold)?,
        enroll: change(&o.set_enroll, o.enroll_threshold)?,
        remove_enroll: o.no_enroll,
        revoke,
        recall,
        floor_reset,
        expires_at: pollen_node::unix_now().saturating_add(o.expires_in),
    };
    let next = fleet_policy::rotate(held.policy(), &rotation)?;
    let keys = secret_keys(&o.key)?;
    write(next, Some(&held), &keys, &o.out, o.json, &notes)
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use crate::{Cli, Command};

    fn parse(args: &str) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("pollen-seeder").chain(args.split_whitespace()))
    }

    fn rotate(args: &str) -> Result<super::RotateOpt, clap::Error> {
        match parse(&format!("policy rotate {args}"))?.command {
            Command::Policy(super::PolicyOpt {
                cmd: super::PolicyCmd::Rotate(o),
            }) => Ok(o),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn create_takes_role_lists_and_checks_thresholds() {
        let ok = "policy create --root r1.pub r2.pub --root-threshold 2 --release a.pub \
                  --operator o.pub --key r1 r2 --out p";
        let Command::Policy(super::PolicyOpt {
            cmd: super::PolicyCmd::Create(o),
        }) = parse(ok).expect("valid").command
        else {
            panic!("not create");
        };
        assert_eq!(o.root.len(), 2);
        assert_eq!(o.key.len(), 2);
        assert_eq!(o.version, 1);
        assert_eq!(o.expires_in, 365 * 86_400);
        assert!(o.enroll.is_empty());
        for bad in [
            "policy create --release a --operator o --out p",
            "policy create --root r --release a --operator o",
            "policy create --root r --root-threshold 0 --release a --operator o --out p",
            "policy create --root r --root-threshold 17 --release a --operator o --out p",
            "policy create --root r --release a --operator o --enroll-threshold 1 --out p",
            "policy create --root r --release a --operator o --version 0 --out p",
            "policy create --root r --release a --operator o --expires-in 0 --out p",
        ] {
            assert!(parse(bad).is_err(), "accepted: {bad}");
        }
    }

    #[test]
    fn rotate_needs_one_base_and_a_whole_floor_reset() {
        let id = "ab".repeat(32);
        let o = rotate(&format!(
            "--from p1 --out p2 --recall {id} --reset-floor stable --to {id} --store s \
             --revoke-device 12D3KooW --revoke-device press.cred --expires-in 30d"
        ))
        .expect("valid");
        assert_eq!(o.recall.len(), 1);
        assert_eq!(o.revoke_device.len(), 2);
        assert_eq!(o.expires_in, 30 * 86_400);
        assert!(rotate("--from-trust trust --out p2").is_ok());
        for bad in [
            "--out p2".to_owned(),
            "--from p1 --from-trust t --out p2".to_owned(),
            "--from p1 --out p2 --recall abcd".to_owned(),
            "--from p1 --out p2 --reset-floor stable".to_owned(),
            format!("--from p1 --out p2 --reset-floor stable --to {id}"),
            format!("--from p1 --out p2 --to {id}"),
            "--from p1 --out p2 --no-enroll --set-enroll e.pub".to_owned(),
            "--from p1 --out p2 --no-auto-recall".to_owned(),
        ] {
            assert!(rotate(&bad).is_err(), "accepted: {bad}");
        }
    }
}
