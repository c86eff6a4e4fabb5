//! `pollen-node status`: the lifecycle and mesh state, from the running
//! daemon's local endpoint, or (daemon stopped) from the store read-only.

use std::path::Path;

use anyhow::Context;
use pollen_node::api;
use pollen_node::import::store_dir;
use pollen_node::store::{RocksStore, Store};
use pollen_node::update::{Record, Slots};

pub fn show(data: &Path, json: bool) -> anyhow::Result<()> {
    let status = match api::running_daemon(data) {
        Ok(addr) => {
            let body = api::request(addr, "GET", "/status", b"")?;
            let mut v: serde_json::Value =
                serde_json::from_str(&body).context("the daemon's status is not JSON")?;
            v["running"] = serde_json::json!(true);
            v
        }
        Err(why) => {
            tracing::debug!(%why, "no daemon; reading the store");
            from_store(data)?
        }
    };
    let active = Slots::new(data).active()?.map(|s| s.name());
    let mut status = status;
    status["active_slot"] = serde_json::json!(active);
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(());
    }
    let s = |k: &str| match &status[k] {
        serde_json::Value::Null => "-".to_owned(),
        serde_json::Value::String(t) => t.clone(),
        other => other.to_string(),
    };
    let release = |k: &str| match &status[k] {
        serde_json::Value::Null => "none".to_owned(),
        v => format!(
            "release {} ({}) in slot {}",
            v["release"],
            v["version"].as_str().unwrap_or("?"),
            v["slot"].as_str().unwrap_or("-")
        ),
    };
    println!(
        "daemon      {}",
        if status["running"] == true {
            "running"
        } else {
            "not running"
        }
    );
    println!("channel     {}", s("channel"));
    println!("phase       {}", s("phase"));
    println!("installed   {}", release("installed"));
    println!("target      {}", release("target"));
    println!("active slot {}", s("active_slot"));
    if status["note"].is_string() {
        println!("note        {}", s("note"));
    }
    if status["last_error"].is_string() {
        println!("last error  {}", s("last_error"));
    }
    if status["running"] == true {
        println!("peers       {}", s("peers"));
        if let Some(r) = status["release"].as_object() {
            println!(
                "newest      release {} ({} of {} chunks)",
                r["release"], r["chunks_held"], r["chunks_total"]
            );
        }
    }
    Ok(())
}

fn from_store(data: &Path) -> anyhow::Result<serde_json::Value> {
    let dir = store_dir(data);
    anyhow::ensure!(
        RocksStore::exists(&dir),
        "no daemon running and no store at {}",
        dir.display()
    );
    let store = RocksStore::open_read_only(&dir)?;
    let records = store.state_with_prefix(pollen_node::store::keys::UPDATE_PREFIX)?;
    let Some((key, bytes)) = records.first() else {
        return Ok(serde_json::json!({"running": false, "phase": "idle"}));
    };
    let r: Record = serde_json::from_slice(bytes).context("lifecycle record")?;
    Ok(serde_json::json!({
        "running": false,
        "channel": key.trim_start_matches(pollen_node::store::keys::UPDATE_PREFIX),
        "phase": r.phase.as_str(),
        "installed": r.installed.as_ref().map(|t| t.view()),
        "target": r.target.as_ref().map(|t| t.view()),
        "note": r.note,
        "last_error": r.last_error,
        "attempts": r.attempts,
    }))
}
