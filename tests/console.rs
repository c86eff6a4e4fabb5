//! The operator console against the real seeder and a loopback mesh: every
//! endpoint answers, tokens are checked (401 without or with a wrong one,
//! 403 for a read-only token on an action, nothing changed either way),
//! and a halt through the API reaches the devices and stops their install.

use std::time::Duration;

use pollen_e2e::console::{get_json, http, Mesh, OPERATOR, READ};
use pollen_e2e::{node_status, poll, run_json, s};

const WAIT: Duration = Duration::from_secs(180);

fn stage(view: &serde_json::Value, i: usize, field: &str) -> u64 {
    view["stages"][i][field].as_u64().unwrap_or(0)
}

#[test]
fn console_api_reads_acts_and_halts_a_rollout() {
    // Stage 1 (34 %): two devices install. Stage 2 waits for a promotion.
    let mesh = Mesh::start("34%,100%", 3400, 2, 3, &[]);
    let addr = mesh.console;
    let view = poll(WAIT, "stage 1 installed, stage 2 waiting", || {
        let v = get_json(addr, "/api/releases/stable/1", READ);
        if stage(&v, 0, "installed") == 2 && stage(&v, 1, "waiting") == 3 {
            Ok(v)
        } else {
            Err(v.to_string())
        }
    });
    assert_eq!(view["release"]["state"], "rolling-out");
    assert_eq!(view["release"]["open_stage"], 1);
    assert_eq!(view["totals"]["seen"], 5);
    let sites: Vec<&str> = view["sites"]
        .as_array()
        .expect("sites")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(sites, ["hall-a", "hall-b"]);
    assert!(!view["series"].as_array().expect("series").is_empty());

    // Every read endpoint.
    let who = get_json(addr, "/api/whoami", READ);
    assert_eq!(
        (who["name"].as_str(), who["scope"].as_str()),
        (Some("viewer"), Some("read"))
    );
    assert_eq!(who["can_act"], false);
    let who = get_json(addr, "/api/whoami", OPERATOR);
    assert_eq!(
        (who["scope"].as_str(), who["can_act"].as_bool()),
        (Some("operator"), Some(true))
    );
    let channels = get_json(addr, "/api/channels", READ);
    assert_eq!(channels[0]["channel"], "stable");
    assert_eq!(channels[0]["releases"], serde_json::json!([1]));
    assert_eq!(channels[0]["devices"], 5);
    let releases = get_json(addr, "/api/releases", READ);
    assert_eq!(releases[0]["release"], 1);
    assert_eq!(releases[0]["stages"].as_array().map(Vec::len), Some(2));
    assert_eq!(releases[0]["artifact_bytes"], 2 << 20);
    let all = get_json(addr, "/api/devices?limit=2", READ);
    assert_eq!(
        (
            all["total"].as_u64(),
            all["devices"].as_array().map(Vec::len)
        ),
        (Some(5), Some(2))
    );
    let rest = get_json(addr, "/api/devices?offset=2&limit=10", READ);
    assert_eq!(rest["devices"].as_array().map(Vec::len), Some(3));
    let committed = get_json(addr, "/api/devices?phase=committed&release=1", READ);
    assert_eq!(committed["total"], 2);
    let firsts: Vec<&str> = mesh
        .devices
        .iter()
        .filter(|d| d.first)
        .map(|d| d.id.as_str())
        .collect();
    for d in committed["devices"].as_array().expect("devices") {
        assert!(firsts.contains(&d["device"].as_str().unwrap_or("")), "{d}");
    }
    let hall_a = get_json(addr, "/api/devices?site=hall-a", READ);
    assert_eq!(hall_a["total"], 3);
    let (status, _) = http(addr, "GET", "/api/devices?limit=lots", Some(READ));
    assert_eq!(status, 400, "a malformed query is refused");
    let savings = get_json(addr, "/api/savings", READ);
    let fetched: u64 = savings
        .as_array()
        .expect("sites")
        .iter()
        .map(|s| {
            s["bytes_from_site"].as_u64().unwrap_or(0)
                + s["bytes_from_uplink"].as_u64().unwrap_or(0)
        })
        .sum();
    assert!(
        fetched >= 5 * (2 << 20),
        "every device's bytes counted: {savings}"
    );
    let controls = get_json(addr, "/api/controls", READ);
    assert_eq!(controls, serde_json::json!({"in_force": [], "history": []}));
    let (status, spec) = http(addr, "GET", "/api/openapi.json", None);
    assert_eq!(status, 200);
    assert!(spec.contains("/api/releases/{channel}/{release}/{action}"));
    let (status, metrics) = http(addr, "GET", "/metrics", Some(READ));
    assert_eq!(status, 200);
    assert!(
        metrics.contains("pollen_rollout_stage_devices{channel=\"stable\",release=\"1\",stage=\"1\",state=\"installed\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("pollen_rollout_auto_halted{channel=\"stable\",release=\"1\"} 0"));
    let (status, page) = http(addr, "GET", "/", None);
    assert_eq!(status, 200);
    assert!(page.contains("Pollen operator console"));

    // Without a token, with a wrong one, with a read-only one: refused, nothing changed.
    let halt = "/api/releases/stable/1/halt";
    for path in ["/api/releases", "/api/devices", "/metrics", halt] {
        let method = if path == halt { "POST" } else { "GET" };
        assert_eq!(
            http(addr, method, path, None).0,
            401,
            "{path} without a token"
        );
        assert_eq!(
            http(addr, method, path, Some("not-a-token-0000000000")).0,
            401,
            "{path} with a wrong token"
        );
    }
    let (status, body) = http(addr, "POST", halt, Some(READ));
    assert_eq!(status, 403, "{body}");
    let controls = get_json(addr, "/api/controls", READ);
    assert_eq!(
        controls["in_force"],
        serde_json::json!([]),
        "no control issued"
    );
    let history = controls["history"].as_array().expect("history");
    assert_eq!(history.len(), 1, "{controls}");
    assert_eq!(history[0]["who"], "viewer");
    assert!(history[0]["result"]
        .as_str()
        .is_some_and(|r| r.starts_with("forbidden")));
    assert!(node_status(&mesh.devices[0].data)["control"].is_null());

    // The operator halts, then promotes: the halt holds and stage 2 never installs.
    let (status, body) = http(addr, "POST", halt, Some(OPERATOR));
    assert_eq!(status, 200, "{body}");
    let halted: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        (halted["halted"].as_bool(), halted["by"].as_str()),
        (Some(true), Some("alice"))
    );
    let (status, _) = http(addr, "POST", halt, Some(OPERATOR));
    assert_eq!(status, 409, "already halted");
    let (status, body) = http(
        addr,
        "POST",
        "/api/releases/stable/1/promote",
        Some(OPERATOR),
    );
    assert_eq!(status, 200, "{body}");
    let promoted: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(promoted["halted"], true);
    assert_eq!(promoted["promoted"], 1);
    let seq = promoted["seq"].as_u64().expect("seq");
    for d in mesh.devices.iter().filter(|d| !d.first) {
        let st = poll(
            WAIT,
            &format!("{} to hold the halted release", d.id),
            || {
                let st = node_status(&d.data);
                let seen = st["control"]["seq"].as_u64().is_some_and(|s| s >= seq);
                let held = st["note"].as_str().is_some_and(|n| n.contains("halted"));
                if seen && held {
                    Ok(st)
                } else {
                    Err(st.to_string())
                }
            },
        );
        assert_eq!(st["phase"], "verified", "{}: {st}", d.id);
        assert!(
            st["installed"].is_null(),
            "{} installed a halted release",
            d.id
        );
    }
    let view = poll(WAIT, "the console to show the halt", || {
        let v = get_json(addr, "/api/releases/stable/1", READ);
        if v["release"]["halted"] == true && v["release"]["open_stage"] == 2 {
            Ok(v)
        } else {
            Err(v.to_string())
        }
    });
    assert_eq!(view["release"]["state"], "halted");
    assert_eq!(view["auto_halted"], false, "halted by the operator");
    assert_eq!(stage(&view, 1, "installed"), 0);
    let controls = get_json(addr, "/api/controls", READ);
    assert_eq!(controls["in_force"][0]["seq"], seq);
    let results: Vec<(&str, &str, &str)> = controls["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|h| {
            (
                h["who"].as_str().unwrap_or(""),
                h["action"].as_str().unwrap_or(""),
                h["result"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(results.len(), 4, "{results:?}");
    assert_eq!(results[0], ("alice", "promote", "ok"));
    assert_eq!(results[2], ("alice", "halt", "ok"));
    assert!(results[1].2.starts_with("refused"));
    // The audit file holds the same, one JSON object a line.
    let audit = std::fs::read_to_string(&mesh.audit).expect("audit log");
    let lines: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[3]["action"], "promote");
    assert_eq!(lines[3]["seq"], seq);
    println!("audit log {}:\n{audit}", s(&mesh.audit));

    // A control signed elsewhere (the rollout command against the running
    // seeder) enters the history too, attributed to no token.
    let r = &mesh.release;
    let resumed = run_json(
        "pollen-seeder",
        &[
            "rollout",
            "--key",
            s(&r.key),
            "--store",
            s(&r.store),
            "--channel",
            "stable",
            "resume",
        ],
    );
    let resumed_seq = resumed["seq"].as_u64().expect("seq");
    let history = poll(WAIT, "the console to see the resume", || {
        let c = get_json(addr, "/api/controls", READ);
        let h = c["history"].clone();
        if h[0]["seq"] == resumed_seq {
            Ok(h)
        } else {
            Err(c.to_string())
        }
    });
    assert_eq!(history[0]["who"], "(signed elsewhere)");
    assert_eq!(history[0]["action"], "resume");
    assert_eq!(history[0]["result"], "observed");
    assert_eq!(history.as_array().map(Vec::len), Some(5), "{history}");
    let audit = std::fs::read_to_string(&mesh.audit).expect("audit log");
    assert_eq!(audit.lines().count(), 5, "{audit}");
}
