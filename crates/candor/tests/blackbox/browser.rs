//! A real headless Chromium (the Debian `chromium` package), driven over the DevTools
//! protocol by a minimal client: JSON commands and events over one loopback websocket
//! (`tungstenite`, no TLS). One browser serves every check of a test; it is killed and its
//! profile directory removed when dropped.

use crate::harness::{TempDir, temp_dir};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// Where the Debian package puts the browser; `CANDOR_CHROMIUM` names another.
const CHROMIUM: &str = "/usr/bin/chromium";

/// How long one protocol answer may take before the test fails instead of hanging (a
/// guard against a wedged browser, not a speed check).
const ANSWER_WAIT: Duration = Duration::from_secs(60);

/// The browser process and its profile directory.
pub(crate) struct Browser {
    child: Child,
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    /// Events received while waiting for answers, oldest first.
    events: Vec<Value>,
    /// Dropped after the process is killed.
    _profile: TempDir,
}

/// One page (a target) of the browser, attached with a flat session.
pub(crate) struct Page {
    session: String,
}

/// A console message, exception or log entry of level error.
#[derive(Debug)]
pub(crate) struct PageError {
    pub(crate) kind: &'static str,
    pub(crate) text: String,
}

impl Browser {
    /// Starts Chromium headless, with no network of its own beyond what pages ask for.
    /// Panics (the test fails) when the browser is not installed.
    pub(crate) fn start() -> Browser {
        let exe = std::env::var("CANDOR_CHROMIUM").unwrap_or_else(|_| CHROMIUM.to_owned());
        assert!(
            std::path::Path::new(&exe).exists(),
            "{exe} is missing: the browser tests need Chromium (`apt-get install -y chromium`; .ci/run installs it)"
        );
        let profile = temp_dir("chromium");
        let mut child = Command::new(&exe)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--hide-scrollbars",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {exe}: {e}"));
        // "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/ID" on stderr; the
        // rest of stderr is drained so the browser never blocks on it.
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("DevTools listening on ")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(url.trim().to_owned());
                }
            }
        });
        let url = match rx.recv_timeout(ANSWER_WAIT) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{exe} did not print its DevTools address");
            }
        };
        assert!(url.starts_with("ws://127.0.0.1:"), "{url}");
        let (ws, _) = tungstenite::connect(url.as_str())
            .unwrap_or_else(|e| panic!("cannot connect to the browser at {url}: {e}"));
        if let MaybeTlsStream::Plain(s) = ws.get_ref() {
            s.set_read_timeout(Some(ANSWER_WAIT)).unwrap();
        }
        Browser {
            child,
            ws,
            next_id: 1,
            events: Vec::new(),
            _profile: profile,
        }
    }

    fn read(&mut self) -> Value {
        loop {
            match self.ws.read() {
                Ok(Message::Text(t)) => return serde_json::from_str(t.as_str()).unwrap(),
                Ok(Message::Binary(b)) => return serde_json::from_slice(&b).unwrap(),
                Ok(_) => continue,
                Err(e) => panic!("the browser connection failed: {e}"),
            }
        }
    }

    /// Sends `method` (to `session`, or to the browser) and returns its result; an error
    /// answer fails the test.
    pub(crate) fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = s.into();
        }
        self.ws
            .send(Message::text(msg.to_string()))
            .unwrap_or_else(|e| panic!("cannot send {method}: {e}"));
        loop {
            let m = self.read();
            if m["id"] == id {
                if let Some(err) = m.get("error") {
                    panic!("{method} failed: {err}");
                }
                return m["result"].clone();
            }
            if m.get("method").is_some() {
                self.events.push(m);
            }
        }
    }

    /// Waits for the event `method` of `session`, returning it (events before it stay
    /// queued).
    fn wait_event(&mut self, session: &str, method: &str) -> Value {
        if let Some(i) = self
            .events
            .iter()
            .position(|e| e["method"] == method && e["sessionId"] == session)
        {
            return self.events.remove(i);
        }
        loop {
            let m = self.read();
            if m["method"] == method && m["sessionId"] == session {
                return m;
            }
            if m.get("method").is_some() {
                self.events.push(m);
            }
        }
    }

    /// Opens a new page with the console, the runtime and the log reported.
    pub(crate) fn new_page(&mut self) -> Page {
        let target = self.call(None, "Target.createTarget", json!({ "url": "about:blank" }));
        let attached = self.call(
            None,
            "Target.attachToTarget",
            json!({ "targetId": target["targetId"], "flatten": true }),
        );
        let session = attached["sessionId"].as_str().unwrap().to_owned();
        for domain in ["Page.enable", "Runtime.enable", "Log.enable"] {
            self.call(Some(&session), domain, json!({}));
        }
        Page { session }
    }

    /// Loads `url` in `page` and waits for its load event. Returns the errors the page
    /// reported while loading (console errors, exceptions, error log entries such as a
    /// refused resource or a Content-Security-Policy violation).
    pub(crate) fn navigate(&mut self, page: &Page, url: &str) -> Vec<PageError> {
        self.drain_errors(page);
        let r = self.call(Some(&page.session), "Page.navigate", json!({ "url": url }));
        assert!(r.get("errorText").is_none(), "{url}: {r}");
        self.wait_event(&page.session, "Page.loadEventFired");
        // A round trip after the load event, so that what the page logged is in.
        self.eval(page, "1");
        self.drain_errors(page)
    }

    /// The errors `page` reported since the last call.
    pub(crate) fn drain_errors(&mut self, page: &Page) -> Vec<PageError> {
        let mut out = Vec::new();
        let events = std::mem::take(&mut self.events);
        for e in events {
            if e["sessionId"] != page.session.as_str() {
                self.events.push(e);
                continue;
            }
            let p = &e["params"];
            match e["method"].as_str().unwrap_or("") {
                "Runtime.exceptionThrown" => out.push(PageError {
                    kind: "exception",
                    text: p["exceptionDetails"].to_string(),
                }),
                "Runtime.consoleAPICalled"
                    if matches!(p["type"].as_str(), Some("error" | "assert")) =>
                {
                    out.push(PageError {
                        kind: "console",
                        text: p["args"].to_string(),
                    })
                }
                "Log.entryAdded" if p["entry"]["level"] == "error" => out.push(PageError {
                    kind: "log",
                    text: format!("{} ({})", p["entry"]["text"], p["entry"]["url"]),
                }),
                _ => {}
            }
        }
        out
    }

    /// Evaluates `expression` in `page` (promises awaited) and returns its value.
    pub(crate) fn eval(&mut self, page: &Page, expression: &str) -> Value {
        let r = self.call(
            Some(&page.session),
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
        );
        if let Some(ex) = r.get("exceptionDetails") {
            panic!("{expression} threw: {ex}");
        }
        r["result"]["value"].clone()
    }

    /// Calls `method` of `page`'s session.
    pub(crate) fn page_call(&mut self, page: &Page, method: &str, params: Value) -> Value {
        self.call(Some(&page.session), method, params)
    }

    /// A PNG of what `page` shows, the whole page.
    pub(crate) fn screenshot(&mut self, page: &Page) -> Vec<u8> {
        use base64::Engine;
        let r = self.page_call(
            page,
            "Page.captureScreenshot",
            json!({ "format": "png", "captureBeyondViewport": true }),
        );
        base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap())
            .unwrap()
    }
}

impl Drop for Browser {
    /// Asks the browser to close (it stops its helper processes, which a kill would leave
    /// writing into the profile), kills it if it has not exited after a while, and then
    /// removes the profile directory.
    fn drop(&mut self) {
        let close = json!({ "id": self.next_id, "method": "Browser.close" });
        let _ = self.ws.send(Message::text(close.to_string()));
        for _ in 0..100 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A helper that outlived the browser by a moment may have written after it.
        let _ = std::fs::remove_dir_all(&*self._profile);
    }
}
