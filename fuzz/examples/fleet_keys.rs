//! Writes the fleet roles' fixture keys (`pollen_fuzz::FLEET_KEYS`) as key
//! files, `DIR/<name>.key` (mode 0600) and `DIR/<name>.key.pub`, in the
//! text form `pollen-seeder keygen` writes, so the real CLI makes the
//! fleet trust seeds with keys the targets know (`scripts/fuzz-trust-seeds.sh`).
//!
//! `cargo run --manifest-path fuzz/Cargo.toml --no-default-features --example fleet_keys -- DIR`

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: fleet_keys DIR");
        std::process::exit(2);
    };
    std::fs::create_dir_all(&dir)?;
    for (name, _) in pollen_fuzz::FLEET_KEYS {
        let key = pollen_fuzz::fleet_key(name);
        let secret = dir.join(format!("{name}.key"));
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&secret)?
            .write_all(key.to_text().as_bytes())?;
        std::fs::write(dir.join(format!("{name}.key.pub")), key.public().to_text())?;
        println!("{name}: key id {}", key.public().id());
    }
    Ok(())
}
