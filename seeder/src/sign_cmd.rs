//! `pollen-seeder sign` (one more signature on a manifest, rollout
//! control, fleet policy or credential file, so a k-of-n role signs on k
//! separate machines) and `pollen-seeder import-manifest` (the co-signed
//! manifest back into the store that published it, for `serve`).

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use pollen_core::manifest::{KeyId, MAX_MANIFEST_BYTES};
use pollen_core::trust::cosign::cosign;
use pollen_node::store::RocksStore;
use pollen_seeder::cosigned;
use pollen_seeder::files::{read_bounded, replace, write_new};
use pollen_seeder::fleet_policy::load_held;
use pollen_seeder::keyfile;

#[derive(Args, Debug)]
pub struct SignOpt {
    /// The secret key to add a signature with (each key signs once).
    #[arg(long, value_name = "SECRET")]
    key: PathBuf,
    /// A release manifest, rollout control, fleet policy or credential file;
    /// replaced in place (atomically) unless --out is given.
    file: PathBuf,
    /// Write the co-signed copy here instead (never overwritten).
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct ImportManifestOpt {
    /// The publisher's store that published the release (`serve` stopped).
    #[arg(long)]
    store: PathBuf,
    /// What devices check manifests against: a trust file, a `.pub`, or a
    /// fleet policy file (its release role).
    #[arg(long, value_name = "TRUST_OR_POLICY")]
    trust: PathBuf,
    /// The co-signed manifest file.
    manifest: PathBuf,
    #[arg(long)]
    json: bool,
}

pub fn sign(o: SignOpt) -> anyhow::Result<()> {
    let key = keyfile::load_secret(&o.key)?;
    let bytes = read_bounded(&o.file, MAX_MANIFEST_BYTES)?;
    let (kind, signed) = cosign(&bytes, &key).with_context(|| format!("{}", o.file.display()))?;
    let written = match &o.out {
        Some(out) => {
            write_new(out, &signed)?;
            out
        }
        None => {
            replace(&o.file, &signed)?;
            &o.file
        }
    };
    let key_id = key.public().id().to_string();
    if o.json {
        return crate::print_json(&serde_json::json!({
            "kind": kind.as_str(),
            "key_id": key_id,
            "file": written,
        }));
    }
    println!(
        "signed {} ({}) with key {key_id}",
        written.display(),
        kind.as_str()
    );
    Ok(())
}

fn ids(keys: &[KeyId]) -> Vec<String> {
    keys.iter().map(KeyId::to_string).collect()
}

pub fn import_manifest(o: ImportManifestOpt) -> anyhow::Result<()> {
    anyhow::ensure!(
        RocksStore::exists(&o.store),
        "no store at {}",
        o.store.display()
    );
    if let Ok(addr) = pollen_node::api::running_daemon(&o.store) {
        anyhow::bail!(
            "pollen-seeder serve is running on {} (endpoint {addr}): stop it, import, and start it again",
            o.store.display()
        );
    }
    let role = load_held(&o.trust)?.policy().release.clone();
    let bytes = read_bounded(&o.manifest, MAX_MANIFEST_BYTES)?;
    // Judged on a read-only view: a refused manifest changes nothing.
    let checked = {
        let ro = RocksStore::open_read_only(&o.store)?;
        cosigned::check(&ro, &bytes, &role, pollen_node::unix_now())
            .with_context(|| format!("{}", o.manifest.display()))?
    };
    if !checked.unchanged {
        let store = RocksStore::open(&o.store)?;
        cosigned::commit(&store, &checked)?;
    }
    let v = &checked.verified;
    if o.json {
        return crate::print_json(&serde_json::json!({
            "manifest_id": v.id().to_hex(),
            "release": v.manifest().release,
            "channel": v.manifest().channel,
            "signers": ids(v.signers()),
            "was_signed_by": ids(&checked.held_signers),
            "replaced": !checked.unchanged,
        }));
    }
    let m = v.manifest();
    if checked.unchanged {
        println!(
            "release {} ({}) on {}: the store holds these signatures already",
            m.release,
            v.id(),
            m.channel
        );
    } else {
        println!(
            "release {} ({}) on {}: now signed by {} (was {})",
            m.release,
            v.id(),
            m.channel,
            ids(v.signers()).join(", "),
            ids(&checked.held_signers).join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::{Cli, Command};

    fn parse(args: &str) -> Result<Command, clap::Error> {
        let argv = format!("pollen-seeder {args}");
        Ok(Cli::try_parse_from(argv.split_whitespace())?.command)
    }

    #[test]
    fn sign_takes_one_key_and_one_file() {
        let Command::Sign(o) = parse("sign --key k m.pollen --out m2.pollen").expect("valid")
        else {
            panic!("not sign");
        };
        assert_eq!(o.file, std::path::Path::new("m.pollen"));
        assert!(parse("sign m.pollen").is_err(), "no key");
        assert!(parse("sign --key k").is_err(), "no file");
        assert!(parse("sign --key k a b").is_err(), "two files");
        assert!(
            parse("import-manifest --store s m.pollen").is_err(),
            "no trust"
        );
        assert!(parse("import-manifest --store s --trust t m.pollen").is_ok());
    }
}
