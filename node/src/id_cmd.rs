//! `pollen-node id`: the node's peer id, to enroll it (`pollen-seeder
//! enroll --peer-id`); creates the node's identity when it has none.

use std::path::PathBuf;

use clap::Args;
use pollen_node::import::store_dir;
use pollen_node::node_id::peer_id;

#[derive(Args, Debug)]
pub struct IdOpt {
    /// The node's data directory (created, mode 0700, if missing).
    #[arg(long)]
    data: PathBuf,
    #[arg(long)]
    json: bool,
}

pub fn show(o: IdOpt) -> anyhow::Result<()> {
    let (id, created) = peer_id(&store_dir(&o.data))?;
    if o.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "peer_id": id.to_string(),
                "created": created,
            }))?
        );
    } else {
        println!("{id}");
        if created {
            eprintln!("created a new identity in {}", o.data.display());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use crate::{Cli, Command};

    #[test]
    fn id_needs_the_data_directory() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["pollen-node", "id", "--data", "/var/lib/pollen"]);
        assert!(matches!(cli.map(|c| c.command), Ok(Command::Id(_))));
        assert!(Cli::try_parse_from(["pollen-node", "id"]).is_err());
    }
}
