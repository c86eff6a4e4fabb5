//! Headless Chromium driven over the DevTools protocol, for the operator
//! console's browser test: starts Debian's `chromium` (no sandbox, as root
//! in CI; a temporary profile; DevTools on a free loopback port), attaches
//! to its page over a websocket and sends protocol commands, keeping the
//! events that arrive meanwhile. A missing chromium is a failure, never a skip.

use std::io::BufRead;
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// A running headless Chromium; killed when dropped.
#[derive(Debug)]
pub struct Chromium {
    child: Child,
    _profile: tempfile::TempDir,
    /// The DevTools HTTP endpoint, `127.0.0.1:PORT`.
    pub devtools: String,
}

impl Chromium {
    /// Starts `chromium --headless` with a `width` × `height` window.
    pub fn start(width: u32, height: u32) -> Self {
        let profile = tempfile::tempdir().expect("profile dir");
        let mut child = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                &format!("--window-size={width},{height}"),
                &format!("--user-data-dir={}", profile.path().display()),
                "about:blank",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("chromium could not be started ({e}): install it (scripts/setup.sh, Debian's chromium package)")
            });
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(url) = line.strip_prefix("DevTools listening on ws://") {
                    let _ = tx.send(url.split('/').next().unwrap_or("").to_owned());
                }
            }
        });
        let devtools = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("chromium printed no DevTools address within 60 s");
        Self {
            child,
            _profile: profile,
            devtools,
        }
    }

    /// Attaches to the browser's first page.
    pub fn page(&self) -> Page {
        let addr = self.devtools.parse().expect("devtools address");
        let (status, body) = crate::console::http(addr, "GET", "/json/list", None);
        assert_eq!(status, 200, "DevTools /json/list: {body}");
        let targets: serde_json::Value = serde_json::from_str(&body).expect("targets");
        let url = targets
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["type"] == "page")
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .expect("a page target")
            .to_owned();
        let (ws, _) = tungstenite::connect(url.as_str()).expect("DevTools websocket");
        if let MaybeTlsStream::Plain(s) = ws.get_ref() {
            s.set_read_timeout(Some(Duration::from_secs(60)))
                .expect("read timeout");
        }
        let mut page = Page {
            ws,
            next: 1,
            events: Vec::new(),
        };
        page.call("Page.enable", serde_json::json!({}));
        page.call("Runtime.enable", serde_json::json!({}));
        page
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One page over the DevTools protocol.
#[derive(Debug)]
pub struct Page {
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    next: u64,
    /// Events received and not yet taken.
    events: Vec<serde_json::Value>,
}

impl Page {
    /// Sends a command without waiting; its id.
    pub fn send(&mut self, method: &str, params: serde_json::Value) -> u64 {
        let id = self.next;
        self.next += 1;
        let msg = serde_json::json!({ "id": id, "method": method, "params": params });
        self.ws
            .send(Message::text(msg.to_string()))
            .expect("DevTools send");
        id
    }

    fn read(&mut self) -> serde_json::Value {
        loop {
            match self.ws.read().expect("DevTools read") {
                Message::Text(t) => {
                    return serde_json::from_str(t.as_str()).expect("DevTools JSON")
                }
                Message::Close(_) => panic!("DevTools closed the page's websocket"),
                _ => {}
            }
        }
    }

    /// The result of command `id` (events arriving first are kept).
    pub fn wait_result(&mut self, id: u64) -> serde_json::Value {
        loop {
            let msg = self.read();
            if msg["id"] == id {
                assert!(msg["error"].is_null(), "DevTools error: {msg}");
                return msg["result"].clone();
            }
            if msg["method"].is_string() {
                self.events.push(msg);
            }
        }
    }

    /// Sends a command and waits for its result.
    pub fn call(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        let id = self.send(method, params);
        self.wait_result(id)
    }

    /// The first event `method` (kept or arriving within `timeout`).
    pub fn wait_event(&mut self, method: &str, timeout: Duration) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self.events.iter().position(|e| e["method"] == method) {
                return self.events.remove(i);
            }
            assert!(
                Instant::now() < deadline,
                "no {method} event within {timeout:?}"
            );
            let msg = self.read();
            if msg["method"].is_string() {
                self.events.push(msg);
            }
        }
    }

    /// Evaluates `expr` in the page; its value (JSON-serialisable values only).
    pub fn eval(&mut self, expr: &str) -> serde_json::Value {
        let r = self.call(
            "Runtime.evaluate",
            serde_json::json!({ "expression": expr, "returnByValue": true, "awaitPromise": true }),
        );
        assert!(r["exceptionDetails"].is_null(), "{expr}: {r}");
        r["result"]["value"].clone()
    }

    /// Opens `url` and waits for its load event.
    pub fn navigate(&mut self, url: &str) {
        self.events.retain(|e| e["method"] != "Page.loadEventFired");
        self.call("Page.navigate", serde_json::json!({ "url": url }));
        self.wait_event("Page.loadEventFired", Duration::from_secs(60));
    }

    /// A PNG of the whole page.
    pub fn screenshot(&mut self) -> Vec<u8> {
        let r = self.call(
            "Page.captureScreenshot",
            serde_json::json!({ "format": "png", "captureBeyondViewport": true }),
        );
        base64_decode(r["data"].as_str().expect("screenshot data"))
    }
}

/// Standard base64 (with padding), as DevTools sends binary data.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let clean: Vec<u8> = text.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(clean.len() / 4 * 3);
    for quad in clean.chunks(4) {
        let data: Vec<u8> = quad.iter().copied().filter(|&c| c != b'=').collect();
        let mut n = 0u32;
        for (i, &c) in data.iter().enumerate() {
            n |= value(c) << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..data.len()]);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64() {
        assert_eq!(super::base64_decode("aGVsbG8="), b"hello");
        assert_eq!(super::base64_decode("aGk="), b"hi");
        assert_eq!(super::base64_decode("YWJj"), b"abc");
    }
}
