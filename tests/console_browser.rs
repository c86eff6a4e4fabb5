//! The operator console's dashboard in headless Chromium against a seeder
//! and a live loopback mesh of six devices on a release whose first stage
//! fails on one device: the page shows the stage counts and the
//! rolled-back device with its error; a read-only token gets disabled
//! buttons; clicking halt with an operator token (the confirmation
//! accepted) halts the rollout. Screenshots go to the test's output
//! directory (`target/tmp/console_browser/`).

use std::path::PathBuf;
use std::time::Duration;

use pollen_e2e::cdp::{Chromium, Page};
use pollen_e2e::console::{get_json, Mesh, OPERATOR, READ};
use pollen_e2e::poll;

const WAIT: Duration = Duration::from_secs(180);

fn out_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console_browser");
    std::fs::create_dir_all(&dir).expect("output dir");
    dir
}

/// Waits until the page has loaded the console's data and `ready` holds.
fn wait_page(page: &mut Page, what: &str, ready: &str) -> serde_json::Value {
    poll(WAIT, what, || {
        let v = page.eval(&format!(
            "(() => {{ if (!document.body.dataset.loaded) return null; return ({ready}); }})()"
        ));
        if v.is_null() || v == false {
            Err(format!("{what}: {v}"))
        } else {
            Ok(v)
        }
    })
}

const STAGE_CELLS: &str = "Array.from(document.querySelectorAll('#stages tbody tr')).map(r => Array.from(r.cells).slice(0, 9).map(c => c.textContent))";

#[test]
fn dashboard_shows_a_failing_stage_and_halts_it() {
    // Stage 1 (50 %): three devices, the second fails its health check.
    let mesh = Mesh::start("50%,100%", 5000, 3, 3, &[1]);
    let addr = mesh.console;
    poll(
        WAIT,
        "stage 1: 2 installed, 1 rolled back; stage 2 waiting",
        || {
            let v = get_json(addr, "/api/releases/stable/1", READ);
            let n = |i: usize, f: &str| v["stages"][i][f].as_u64().unwrap_or(0);
            if (n(0, "installed"), n(0, "rolled_back"), n(1, "waiting")) == (2, 1, 3) {
                Ok(())
            } else {
                Err(v.to_string())
            }
        },
    );
    let failing = &mesh.devices[1].id;
    let out = out_dir();
    let chromium = Chromium::start(1280, 1800);
    let mut page = chromium.page();

    // A read-only token: the data, and no action allowed.
    page.navigate(&format!("http://{addr}/#token={READ}"));
    let stages = wait_page(
        &mut page,
        "the stage table (read-only)",
        &format!("{STAGE_CELLS}.length === 2 && {STAGE_CELLS}"),
    );
    assert_eq!(
        stages,
        serde_json::json!([
            ["1", "50%", "3", "0", "0", "0", "2", "0", "1"],
            ["2", "100%", "3", "0", "3", "0", "0", "0", "0"],
        ]),
        "stage, share, seen, downloading, waiting, installing, installed, failed, rolled back"
    );
    let buttons = page.eval(
        "['btn-promote','btn-halt','btn-resume'].map(id => document.getElementById(id).disabled)",
    );
    assert_eq!(buttons, serde_json::json!([true, true, true]));
    let who = page.eval("document.getElementById('who').textContent");
    assert_eq!(who, "viewer (read)");
    std::fs::write(out.join("console-read-only.png"), page.screenshot()).expect("screenshot");

    // The operator: the rolled-back device with its error, then halt.
    page.call(
        "Runtime.evaluate",
        serde_json::json!({"expression": "sessionStorage.clear()"}),
    );
    page.navigate(&format!("http://{addr}/?as=operator#token={OPERATOR}"));
    let row = wait_page(
        &mut page,
        "the rolled-back device in the devices table",
        &format!(
            "(() => {{ const r = Array.from(document.querySelectorAll('#devices tbody tr')).find(r => r.cells[0].textContent === '{failing}'); return r ? Array.from(r.cells).map(c => c.textContent) : null; }})()"
        ),
    );
    assert_eq!(row[3], "rolled-back", "{row}");
    assert!(
        row[7].as_str().is_some_and(|e| e.contains("watchdog")),
        "last error shown: {row}"
    );
    let halt_enabled = wait_page(
        &mut page,
        "halt enabled for the operator",
        "!document.getElementById('btn-halt').disabled",
    );
    assert_eq!(halt_enabled, true);
    assert_eq!(
        page.eval("document.getElementById('who').textContent"),
        "alice (operator)"
    );
    // The chart has its lines and the savings table its two sites.
    assert_eq!(
        page.eval("document.querySelectorAll('#chart polyline').length"),
        2
    );
    assert_eq!(
        page.eval("document.querySelectorAll('#savings tbody tr').length"),
        2
    );
    let shot = page.screenshot();
    std::fs::write(out.join("console.png"), &shot).expect("screenshot");

    // Click halt: the confirm() dialog opens, is accepted, the control goes out.
    let click = page.send(
        "Runtime.evaluate",
        serde_json::json!({"expression": "document.getElementById('btn-halt').click()"}),
    );
    let dialog = page.wait_event("Page.javascriptDialogOpening", Duration::from_secs(30));
    assert_eq!(dialog["params"]["type"], "confirm");
    assert!(dialog["params"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("halt release 1")));
    page.call(
        "Page.handleJavaScriptDialog",
        serde_json::json!({"accept": true}),
    );
    page.wait_result(click);
    let v = poll(WAIT, "the rollout halted", || {
        let v = get_json(addr, "/api/releases/stable/1", READ);
        if v["release"]["halted"] == true {
            Ok(v)
        } else {
            Err(v.to_string())
        }
    });
    assert_eq!(v["release"]["state"], "halted");
    let controls = get_json(addr, "/api/controls", READ);
    assert_eq!(controls["history"][0]["who"], "alice");
    assert_eq!(controls["history"][0]["action"], "halt");
    assert_eq!(controls["history"][0]["result"], "ok");
    // The devices hear it; the page shows it with resume offered instead.
    for d in &mesh.devices {
        poll(WAIT, &format!("{} to hear the halt", d.id), || {
            let st = pollen_e2e::node_status(&d.data);
            if st["control"]["halted"] == true {
                Ok(())
            } else {
                Err(st.to_string())
            }
        });
    }
    let state = wait_page(
        &mut page,
        "the page to show the halt",
        "document.getElementById('release-state').textContent === 'halted' && !document.getElementById('btn-resume').disabled && document.getElementById('btn-halt').disabled",
    );
    assert_eq!(state, true);
    std::fs::write(out.join("console-halted.png"), page.screenshot()).expect("screenshot");
    println!("screenshots in {}", out.display());
}
