//! The harness: starts the real `candor` binary on loopback ports, talks to it over raw
//! sockets (so malformed requests can be sent), runs small upstreams that behave well or
//! badly, and sets up accounts and clients with the CLI. Everything a test writes lives in a
//! [`TempDir`] that is removed when the test ends.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_candor");

/// A directory in the system temp directory, removed with everything in it when dropped.
/// Whoever starts processes that write into it owns it and stops them first (see
/// [`Gateway`]'s `Drop`).
#[derive(Debug)]
pub(crate) struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Moves the directory out, leaving `self` owning nothing (to hand it to a successor).
    fn take(&mut self) -> TempDir {
        TempDir {
            path: std::mem::take(&mut self.path),
        }
    }
}

impl Deref for TempDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// A fresh directory for one test, removed when the returned guard is dropped.
pub(crate) fn temp_dir(name: &str) -> TempDir {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "candor-test-{}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    TempDir { path: dir }
}

pub(crate) fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/blackbox/fixtures")
        .join(name)
}

/// A running gateway; killed and waited for when dropped, then its directory is removed.
pub(crate) struct Gateway {
    pub(crate) child: Child,
    pub(crate) addr: SocketAddr,
    pub(crate) admin: Option<SocketAddr>,
    /// The configuration, the data directory and the gateway's stderr log.
    pub(crate) dir: TempDir,
    pub(crate) config: PathBuf,
    /// Everything the gateway printed on stdout, as it arrives.
    pub(crate) stdout: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Gateway {
    /// Starts `candor serve` with `config` (TOML text) on ephemeral ports.
    pub(crate) fn start(config: &str) -> Gateway {
        Self::start_after(config, |_| {})
    }

    /// Like [`Gateway::start`], running `prepare` with the config file's path first (to
    /// create accounts and clients with the CLI, say).
    pub(crate) fn start_after(config: &str, prepare: impl FnOnce(&Path)) -> Gateway {
        Self::start_with(config, &[], prepare)
    }

    /// Like [`Gateway::start_after`], with `extra` arguments to `serve` (`--no-supervisor`).
    pub(crate) fn start_with(config: &str, extra: &[&str], prepare: impl FnOnce(&Path)) -> Gateway {
        let dir = temp_dir("gw");
        let path = dir.join("candor.toml");
        std::fs::write(&path, config).unwrap();
        prepare(&path);
        let mut args = vec![
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ];
        args.extend_from_slice(extra);
        Self::spawn(dir, path, &args, true)
    }

    /// Stops this gateway with SIGTERM, waits for it, and starts it again on the same
    /// configuration and data directory.
    pub(crate) fn restart(self) -> Gateway {
        self.restart_after("TERM")
    }

    /// Kills this gateway with SIGKILL (a crash: nothing is saved on the way out) and
    /// starts it again on the same configuration and data directory.
    pub(crate) fn crash_and_restart(self) -> Gateway {
        self.restart_after("KILL")
    }

    fn restart_after(mut self, signal: &str) -> Gateway {
        self.signal(signal);
        let _ = self.child.wait();
        let (dir, config) = (self.dir.take(), self.config.clone());
        Self::spawn(
            dir,
            config,
            &[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
            ],
            true,
        )
    }

    /// Starts the embedded demo (no --config) in a fresh data directory.
    pub(crate) fn start_demo() -> Gateway {
        let dir = temp_dir("demo");
        let data = dir.join("data");
        let args = demo_args(&data);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Self::spawn(dir, data.join("candor.toml"), &args, false)
    }

    /// Stops this demo with SIGTERM, waits for it, and starts the demo again on the same
    /// data directory, with `extra` arguments (`--reset-demo`, say).
    pub(crate) fn restart_demo(mut self, extra: &[&str]) -> Gateway {
        self.signal("TERM");
        let _ = self.child.wait();
        let (dir, config) = (self.dir.take(), self.config.clone());
        let args = demo_args(&dir.join("data"));
        let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
        args.extend_from_slice(extra);
        Self::spawn(dir, config, &args, false)
    }

    fn spawn(dir: TempDir, config: PathBuf, args: &[&str], with_config: bool) -> Gateway {
        let stderr = std::fs::File::create(dir.join("stderr.log")).unwrap();
        let mut cmd = Command::new(BIN);
        cmd.args(args);
        if with_config {
            cmd.arg("--config").arg(&config);
        }
        let mut child = cmd
            .env("CANDOR_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .expect("start candor");
        let out = child.stdout.take().unwrap();
        let mut reader = BufReader::new(out);
        let mut stdout = Vec::new();
        let started = Self::read_addresses(&mut reader, &mut stdout);
        let (addr, admin) = match started {
            Ok(addresses) => addresses,
            Err(why) => {
                // Stop it before its directory goes.
                let _ = child.kill();
                let _ = child.wait();
                let log = std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default();
                panic!("{why}: {log}");
            }
        };
        // Keep reading stdout so the child never blocks on a full pipe.
        let stdout = std::sync::Arc::new(std::sync::Mutex::new(stdout));
        let sink = stdout.clone();
        std::thread::spawn(move || {
            for line in reader.lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        Gateway {
            child,
            addr,
            admin,
            dir,
            config,
            stdout,
        }
    }

    /// Reads the lines a starting gateway prints until it has named both listeners.
    fn read_addresses(
        reader: &mut impl BufRead,
        stdout: &mut Vec<String>,
    ) -> Result<(SocketAddr, Option<SocketAddr>), String> {
        let mut addr = None;
        let mut admin = None;
        let deadline = Instant::now() + Duration::from_secs(30);
        while addr.is_none() || admin.is_none() {
            if Instant::now() >= deadline {
                return Err("candor did not start".into());
            }
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) => return Err("candor exited before listening".into()),
                Ok(_) => {}
                Err(e) => return Err(format!("reading candor's stdout: {e}")),
            }
            if let Some(rest) = line.strip_prefix("candor listening on ") {
                let a = rest.trim().split("://").nth(1).unwrap_or_default();
                addr = Some(a.parse().map_err(|e| format!("listen address {a}: {e}"))?);
            } else if let Some(rest) = line.strip_prefix("candor admin listening on http://") {
                let a = rest.split_whitespace().next().unwrap_or_default();
                admin = Some(a.parse().map_err(|e| format!("admin address {a}: {e}"))?);
            }
            stdout.push(line);
        }
        Ok((addr.unwrap(), admin))
    }

    /// Waits for a stdout line starting with `prefix` and returns the rest of it.
    pub(crate) fn printed(&self, prefix: &str) -> String {
        for _ in 0..100 {
            if let Some(l) = self
                .stdout
                .lock()
                .unwrap()
                .iter()
                .find_map(|l| l.trim_start().strip_prefix(prefix))
            {
                return l.trim().to_owned();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("candor never printed `{prefix}`")
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }

    /// Sends a signal with kill(1) to the process started, the supervisor (which forwards
    /// TERM, INT and HUP to its worker). KILL is a crash of the whole gateway: the worker is
    /// killed too.
    pub(crate) fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(ok.success());
        if sig == "KILL" {
            self.kill_workers();
        }
    }

    /// The pid of the supervisor's current worker, as the supervisor printed it.
    pub(crate) fn worker_pid(&self) -> u32 {
        self.printed("candor supervisor: worker pid ");
        self.stdout
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| l.trim().strip_prefix("candor supervisor: worker pid "))
            .filter_map(|pid| pid.parse().ok())
            .next_back()
            .unwrap()
    }

    /// Kills this gateway's workers (the supervisor's children, found in /proc by the
    /// worker flag and this gateway's directory in their command line) and waits until
    /// they are gone, for at most 10 s.
    fn kill_workers(&self) {
        if self.dir.as_os_str().is_empty() {
            return;
        }
        for pid in workers_of(&self.dir) {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while process_alive(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// The admin listener's `/stats`, read with the admin token.
    pub(crate) fn stats(&self) -> Value {
        self.admin_get("/stats")
    }

    /// An admin listener endpoint's JSON, read with the admin token.
    pub(crate) fn admin_get(&self, path: &str) -> Value {
        let token = std::fs::read_to_string(self.printed("admin API token: in ")).unwrap();
        let auth = format!("Bearer {}", token.trim());
        let r = request(
            self.admin.unwrap(),
            "GET",
            path,
            &[("Authorization", &auth)],
            b"",
        );
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
    }

    /// Sends `req` and reads the whole response.
    pub(crate) fn send(&self, req: &[u8]) -> Response {
        send_raw(self.addr, req)
    }

    pub(crate) fn get(&self, path: &str) -> Response {
        self.request("GET", path, &[], b"")
    }

    pub(crate) fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        request(self.addr, method, path, headers, body)
    }

    /// The first log line containing `needle`, waiting for it as `eventually` does.
    pub(crate) fn log_line(&self, needle: &str) -> String {
        assert!(
            self.eventually(|g| g.log().contains(needle)),
            "no log line with {needle}: {}",
            self.log()
        );
        let log = self.log();
        log.lines().find(|l| l.contains(needle)).unwrap().to_owned()
    }

    /// Polls `check` until it holds (for reloads), at most ~10 s.
    pub(crate) fn eventually(&self, mut check: impl FnMut(&Gateway) -> bool) -> bool {
        for _ in 0..100 {
            if check(self) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        // The processes first (the supervisor, so that it restarts nothing, then its
        // worker), then (as the fields drop) the directory they wrote to.
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.kill_workers();
    }
}

/// The supervised workers running with `dir` in their command line (their configuration
/// or data directory is in it).
pub(crate) fn workers_of(dir: &Path) -> Vec<u32> {
    let dir = dir.to_string_lossy().into_owned().into_bytes();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let has = |needle: &[u8]| cmdline.windows(needle.len()).any(|w| w == needle);
            has(b"--supervised-worker") && has(&dir)
        })
        .filter(|pid| process_alive(*pid))
        .collect()
}

/// Whether `pid` runs (a zombie, dead and not yet reaped, does not).
pub(crate) fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

/// Builds and sends a request with `Connection: close`.
pub(crate) fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" || method == "PUT" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    send_raw(addr, &bytes)
}

/// A parsed HTTP/1.1 response.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Response {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

pub(crate) fn send_raw(addr: SocketAddr, req: &[u8]) -> Response {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(req).unwrap();
    read_response(&mut s)
}

/// Reads one response; the connection must close after it or carry a length.
pub(crate) fn read_response(s: &mut TcpStream) -> Response {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i;
        }
        let n = s.read(&mut chunk).expect("read head");
        assert!(
            n > 0,
            "connection closed without a response; got {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut rest = buf[head_end + 4..].to_vec();
    let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let body = if let Some(len) = get("content-length") {
        let len: usize = len.parse().unwrap();
        while rest.len() < len {
            let n = s.read(&mut chunk).unwrap();
            assert!(n > 0, "body cut short");
            rest.extend_from_slice(&chunk[..n]);
        }
        rest.truncate(len);
        rest
    } else if get("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
        loop {
            if find(&rest, b"0\r\n\r\n").is_some() && dechunk(&rest).is_some() {
                break dechunk(&rest).unwrap();
            }
            let n = s.read(&mut chunk).unwrap();
            if n == 0 {
                break dechunk(&rest).expect("complete chunked body");
            }
            rest.extend_from_slice(&chunk[..n]);
        }
    } else if status == 204 || status == 304 {
        Vec::new()
    } else {
        let _ = s.read_to_end(&mut rest);
        rest
    };
    Response {
        status,
        headers,
        body,
    }
}

/// Reads until the gateway closes the connection (the read timeout is a safety net far
/// beyond the configured 1 s; hitting it fails the test).
pub(crate) fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return out,
            Err(e) => panic!("the gateway kept the connection open: {e}"),
        }
    }
}

/// A response read from raw bytes (the whole of what the gateway sent).
pub(crate) fn parse_raw(raw: &[u8]) -> Response {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let raw = raw.to_vec();
    let t = std::thread::spawn(move || {
        let (mut c, _) = listener.accept().unwrap();
        c.write_all(&raw).unwrap();
    });
    let mut s = TcpStream::connect(addr).unwrap();
    let r = read_response(&mut s);
    t.join().unwrap();
    r
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let i = find(b, b"\r\n")?;
        let size = usize::from_str_radix(
            std::str::from_utf8(&b[..i]).ok()?.split(';').next()?.trim(),
            16,
        )
        .ok()?;
        b = &b[i + 2..];
        if size == 0 {
            return Some(out);
        }
        if b.len() < size + 2 {
            return None;
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

/// Asserts `resp` is a catalog error with `code`, checks the whole envelope, and returns
/// the body. Every code a test produces is asserted through here (the coverage test reads
/// these calls).
/// `candor serve` arguments for the demo in `data`, on ephemeral ports.
pub(crate) fn demo_args(data: &Path) -> Vec<String> {
    [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().unwrap(),
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Where an `errors[]` item is: a body problem's JSON Pointer, the name of the others, which
/// must have no pointer (one convention for every problem).
pub(crate) fn at(e: &Value) -> String {
    if e["in"] == "body" {
        e["pointer"]
            .as_str()
            .expect("a body problem has a pointer")
            .to_owned()
    } else {
        assert!(
            e.get("pointer").is_none(),
            "only body problems have a pointer: {e}"
        );
        e["name"].as_str().unwrap_or_default().to_owned()
    }
}

pub(crate) fn assert_problem(resp: &Response, code: &str) -> Value {
    let body = resp.json();
    let entry = candor_catalog::Catalog::builtin()
        .get(code)
        .unwrap_or_else(|| panic!("{code} is not a catalog code"));
    assert_eq!(body["code"], code, "{}", resp.text());
    assert_eq!(
        resp.header("content-type"),
        Some("application/problem+json"),
        "{}",
        resp.text()
    );
    let rid = resp
        .header("x-request-id")
        .expect("X-Request-Id on every error");
    assert_eq!(body["request_id"], rid);
    assert_eq!(body["status"], resp.status);
    assert!(
        body["type"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/errors/{code}")),
        "{body}"
    );
    assert!(body["title"].as_str().is_some_and(|t| !t.is_empty()));
    let detail = body["detail"].as_str().unwrap();
    for p in entry.message.placeholders() {
        assert!(
            !detail.contains(&format!("{{{p}}}")),
            "unfilled placeholder {{{p}}} in detail: {detail}"
        );
    }
    assert!(!detail.is_empty());
    assert!(body["instance"].is_string());
    // The headers the catalog says come with this code (its troubleshooting page lists
    // them): every answer of the code carries them.
    for h in &entry.headers {
        assert!(
            resp.header(h).is_some(),
            "{code} without {h}, which the catalog says comes with it: {body}"
        );
    }
    // And the other way round (RateLimit fields excepted: a limited route may send them
    // on every answer).
    for h in ["retry-after", "www-authenticate", "allow"] {
        assert!(
            resp.header(h).is_none() || entry.headers.iter().any(|d| d.eq_ignore_ascii_case(h)),
            "{code} carries {h}, which the catalog does not list for it: {body}"
        );
    }
    if resp.status == 401 {
        assert!(
            resp.header("www-authenticate").is_some(),
            "a 401 without WWW-Authenticate: {body}"
        );
    }
    if resp.status == 405 {
        assert!(
            resp.header("allow").is_some(),
            "a 405 without Allow: {body}"
        );
    }
    if body["retry"] == "after_delay" {
        assert!(
            resp.header("retry-after").is_some(),
            "retry after_delay without Retry-After: {body}"
        );
    }
    assert!(body["errors"].is_array());
    assert!(
        ["never", "after_delay", "with_backoff", "after_reauth"]
            .contains(&body["retry"].as_str().unwrap())
    );
    if body["retry"] == entry.retry.as_str() || code == "upstream_error" {
        // The entry's default, or an upstream-derived class.
    } else {
        panic!(
            "retry {} differs from the entry's {}",
            body["retry"],
            entry.retry.as_str()
        );
    }
    body
}

// ------------------------------------------------------------------ upstreams

/// How a test upstream behaves.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Behaviour {
    /// Answers 200 with a JSON echo of method, path, query and headers.
    Echo,
    /// Reads the request and closes the connection without answering.
    Reset,
    /// Reads the request and never answers (until the gateway closes the connection, counted
    /// in `Upstream::closed`, or for 120 s).
    Hang,
    /// Answers bytes that are not HTTP.
    Garbage,
    /// Answers 500 text/plain "database is on fire".
    PlainError,
    /// Answers after a delay.
    Slow(Duration),
    /// Answers one request as if keeping the connection alive, then closes it 50 ms later
    /// (as an upstream's idle timeout does).
    CloseAfterOne,
    /// Answers every request with a body of this many bytes (b'y'), keeping the connection.
    Big(usize),
    /// Answers 200 "early" as soon as a request head arrives, without reading the body; a
    /// connection whose request had a body is then only read from, never answered again.
    EarlyAnswer,
    /// Answers every request with this status and a short text body.
    Status(u16),
    /// Answers 200 with a Content-Length of 100, sends 10 bytes and closes.
    CutBody,
    /// Answers this status as problem details (`code` "its_own_code") of which it sends 8 of
    /// the 100 bytes announced, then nothing (until the gateway closes the connection).
    ProblemStall(u16),
    /// Answers this status with a whole problem-details body, `code` "its_own_code".
    Problem(u16),
    /// Answers the first `n` requests (counted over all connections) with this status,
    /// `Retry-After: 1` and a text body "failing KEY" (the request's Idempotency-Key), then
    /// echoes as [`Behaviour::Echo`] does.
    FailFirst(usize, u16),
}

/// An upstream on a loopback port, serving in a thread.
pub(crate) struct Upstream {
    pub(crate) addr: SocketAddr,
    pub(crate) hits: std::sync::Arc<AtomicUsize>,
    /// Connections the gateway closed while a `Hang` upstream held their request.
    pub(crate) closed: std::sync::Arc<AtomicUsize>,
    /// Every request head received, in order, as "request line | host".
    pub(crate) received: Received,
}

/// The request heads an upstream received.
pub(crate) type Received = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

impl Upstream {
    pub(crate) fn start(behaviour: Behaviour) -> Upstream {
        Self::start_on("127.0.0.1:0".parse().unwrap(), behaviour)
    }

    /// An upstream on `addr` (an address [`Upstream::refused`] gave: a target coming back).
    pub(crate) fn start_on(addr: SocketAddr, behaviour: Behaviour) -> Upstream {
        let listener = TcpListener::bind(addr).unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = std::sync::Arc::new(AtomicUsize::new(0));
        let closed = std::sync::Arc::new(AtomicUsize::new(0));
        let received = Received::default();
        let (h, c, log) = (hits.clone(), closed.clone(), received.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                h.fetch_add(1, Ordering::Relaxed);
                let (log, c) = (log.clone(), c.clone());
                std::thread::spawn(move || serve_upstream(conn, behaviour, &log, &c));
            }
        });
        Upstream {
            addr,
            hits,
            closed,
            received,
        }
    }

    /// A loopback address with nothing listening.
    pub(crate) fn refused() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The request heads received so far ("request line | host").
    pub(crate) fn heads(&self) -> Vec<String> {
        self.received.lock().unwrap().clone()
    }
}

/// Reads one request head and its body (by Content-Length or chunked).
/// Request line, headers, body.
type RawRequest = (String, Vec<(String, String)>, Vec<u8>);

fn read_request(conn: &mut TcpStream, log: &Received) -> Option<RawRequest> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i;
        }
        let n = conn.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let line = lines.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = buf[head_end + 4..].to_vec();
    let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let host = get("host").unwrap_or_default();
    log.lock().unwrap().push(format!("{line} | {host}"));
    if let Some(len) = get("content-length") {
        let len: usize = len.parse().ok()?;
        while body.len() < len {
            let n = conn.read(&mut chunk).ok()?;
            if n == 0 {
                return None;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else if get("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
        while dechunk(&body).is_none() {
            let n = conn.read(&mut chunk).ok()?;
            if n == 0 {
                return None;
            }
            body.extend_from_slice(&chunk[..n]);
        }
        body = dechunk(&body)?;
    }
    Some((line, headers, body))
}

fn serve_upstream(mut conn: TcpStream, behaviour: Behaviour, log: &Received, closed: &AtomicUsize) {
    match behaviour {
        Behaviour::Reset => {
            let _ = read_request(&mut conn, log);
            let _ = conn.shutdown(std::net::Shutdown::Both);
        }
        Behaviour::Hang => {
            let _ = read_request(&mut conn, log);
            let _ = conn.set_read_timeout(Some(Duration::from_secs(120)));
            if matches!(conn.read(&mut [0u8; 1]), Ok(0)) {
                closed.fetch_add(1, Ordering::Relaxed);
            }
        }
        Behaviour::Garbage => {
            let _ = read_request(&mut conn, log);
            let _ = conn.write_all(b"SMTP ready, not HTTP at all\r\n\r\n");
        }
        Behaviour::Big(n) => {
            let body = vec![b'y'; n];
            while read_request(&mut conn, log).is_some() {
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n\r\n");
                if conn.write_all(head.as_bytes()).is_err() || conn.write_all(&body).is_err() {
                    return;
                }
            }
        }
        Behaviour::EarlyAnswer => {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            loop {
                let Some(end) = find(&buf, b"\r\n\r\n") else {
                    match conn.read(&mut chunk) {
                        Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                        _ => return,
                    }
                    continue;
                };
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                buf.drain(..end + 4);
                let has_body =
                    head.contains("content-length:") && !head.contains("content-length: 0");
                if conn
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nearly")
                    .is_err()
                {
                    return;
                }
                if has_body {
                    while matches!(conn.read(&mut chunk), Ok(n) if n > 0) {}
                    return;
                }
            }
        }
        Behaviour::CloseAfterOne => {
            if read_request(&mut conn, log).is_some() {
                let _ = conn.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok",
                );
                std::thread::sleep(Duration::from_millis(50));
                let _ = conn.shutdown(std::net::Shutdown::Both);
            }
        }
        Behaviour::Status(status) => {
            while read_request(&mut conn, log).is_some() {
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status} Status\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\nstatus"
                );
            }
        }
        Behaviour::CutBody => {
            if read_request(&mut conn, log).is_some() {
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n0123456789"
                );
                let _ = conn.flush();
                std::thread::sleep(Duration::from_millis(50));
                let _ = conn.shutdown(std::net::Shutdown::Both);
            }
        }
        Behaviour::ProblemStall(status) => {
            if read_request(&mut conn, log).is_some() {
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status} Oops\r\nContent-Type: application/problem+json\r\nContent-Length: 100\r\n\r\n{{\"code\":"
                );
                let _ = conn.flush();
                let mut sink = [0u8; 64];
                let _ = conn.read(&mut sink);
            }
        }
        Behaviour::Problem(status) => {
            while read_request(&mut conn, log).is_some() {
                let body =
                    r#"{"type":"about:blank","title":"Oops","status":409,"code":"its_own_code"}"#;
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status} Oops\r\nContent-Type: application/problem+json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.flush();
            }
        }
        Behaviour::PlainError => {
            while read_request(&mut conn, log).is_some() {
                let body = "database is on fire";
                let _ = write!(
                    conn,
                    "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
            }
        }
        Behaviour::Echo | Behaviour::Slow(_) | Behaviour::FailFirst(..) => {
            while let Some((line, headers, body)) = read_request(&mut conn, log) {
                if let Behaviour::Slow(d) = behaviour {
                    std::thread::sleep(d);
                }
                if let Behaviour::FailFirst(n, status) = behaviour
                    && log.lock().unwrap().len() <= n
                {
                    // The body names the request's Idempotency-Key, if any.
                    let key = headers
                        .iter()
                        .find(|(k, _)| k == "idempotency-key")
                        .map_or("", |(_, v)| v.as_str());
                    let text = format!("failing {key}");
                    let _ = write!(
                        conn,
                        "HTTP/1.1 {status} Failing\r\nContent-Type: text/plain\r\nRetry-After: 1\r\nContent-Length: {}\r\n\r\n{text}",
                        text.len()
                    );
                    continue;
                }
                let mut parts = line.split_whitespace();
                let method = parts.next().unwrap_or("").to_owned();
                let target = parts.next().unwrap_or("").to_owned();
                let map: HashMap<String, Vec<String>> =
                    headers.iter().fold(HashMap::new(), |mut m, (k, v)| {
                        m.entry(k.clone()).or_default().push(v.clone());
                        m
                    });
                let doc = serde_json::json!({
                    "method": method,
                    "target": target,
                    "headers": map,
                    "body_len": body.len(),
                    "body_sum": body.iter().map(|b| u64::from(*b)).sum::<u64>(),
                });
                let text = doc.to_string();
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nX-Upstream: echo\r\n\r\n{text}",
                    text.len()
                );
            }
        }
    }
}

/// A config with one route to `upstream` plus `extra` TOML appended.
pub(crate) fn one_route(path: &str, upstream: &str, extra: &str) -> String {
    format!("[[routes]]\nname = \"r\"\npath = \"{path}\"\nupstream = \"{upstream}\"\n{extra}\n")
}

// ------------------------------------------------------------------ the CLI

/// Runs `candor` with `args`: exit code, stdout, stderr.
pub(crate) fn candor(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs a `candor` subcommand on `gw`'s configuration; must succeed; returns stdout.
pub(crate) fn cli(gw: &Gateway, args: &[&str]) -> String {
    cli_at(&gw.config, args)
}

/// Runs a `candor` subcommand with `--config config`; must succeed; returns stdout.
pub(crate) fn cli_at(config: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The first word after `key` on the line of `out` that starts with it.
pub(crate) fn value_of(out: &str, key: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|v| v.split_whitespace().next().unwrap().to_owned())
        .unwrap_or_else(|| panic!("no {key} in {out}"))
}

// ------------------------------------------------------------------ accounts, clients, tokens

pub(crate) const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");

/// A gateway with bearer-protected routes, accounts `acme` and `globex`, and one client of
/// `acme` (scopes `devices:read devices:write`).
pub(crate) struct Setup {
    pub(crate) gw: Gateway,
    pub(crate) up: Upstream,
    pub(crate) client_id: String,
    pub(crate) secret: String,
}

/// The [`Setup`] gateway, locking a client out after `max_failed_attempts`.
pub(crate) fn setup_with(max_failed_attempts: u32) -> Setup {
    let up = Upstream::start(Behaviour::Echo);
    let u = up.url();
    let config = format!(
        r#"
[auth]
audience = "devices-api"
max_failed_attempts = {max_failed_attempts}

[[routes]]
name = "devices"
path = "/v1/customers/{{customer}}/devices"
methods = ["GET", "POST"]
upstream = "{u}"
auth = "bearer"
scopes = ["devices:read"]
account_param = "customer"

[[routes]]
name = "admin"
path = "/v1/admin"
upstream = "{u}"
auth = "bearer"
scopes = ["admin"]

[[routes]]
name = "company"
path = "/v2/devices"
upstream = "{u}"
auth = "bearer"
account_header = "Api-Company"

[[routes]]
name = "tok"
path = "/edge/devices"
upstream = "{u}"
auth = "bearer"
auth_scheme = "TOK"

[[routes]]
name = "open"
path = "/open"
upstream = "{u}"
"#
    );
    let mut out = String::new();
    let gw = Gateway::start_after(&config, |path| {
        cli_at(
            path,
            &["accounts", "add", "--id", "acme", "--name", "Acme Corp"],
        );
        cli_at(
            path,
            &["accounts", "add", "--id", "globex", "--name", "Globex"],
        );
        out = cli_at(
            path,
            &[
                "clients",
                "add",
                "--account",
                "acme",
                "--scopes",
                "devices:read devices:write",
            ],
        );
    });
    let client_id = value_of(&out, "client_id:");
    let secret = value_of(&out, "client_secret:");
    Setup {
        gw,
        up,
        client_id,
        secret,
    }
}

/// The [`Setup`] gateway, locking a client out after 3 failed attempts.
pub(crate) fn setup() -> Setup {
    setup_with(3)
}

/// An `application/x-www-form-urlencoded` body.
pub(crate) fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                v.replace('%', "%25")
                    .replace(' ', "+")
                    .replace('&', "%26")
                    .replace(':', "%3A")
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// A Basic `Authorization` value.
pub(crate) fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

/// POSTs `pairs` to the token endpoint as the setup's client (Basic authentication).
pub(crate) fn token_request(s: &Setup, pairs: &[(&str, &str)]) -> Response {
    let auth = basic(&s.client_id, &s.secret);
    s.gw.request(
        "POST",
        "/oauth/token",
        &[FORM, ("Authorization", &auth)],
        form(pairs).as_bytes(),
    )
}

/// A client-credentials access token of the setup's client.
pub(crate) fn token(s: &Setup) -> String {
    let r = token_request(s, &[("grant_type", "client_credentials")]);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["access_token"].as_str().unwrap().to_owned()
}

/// GETs `path` with `Authorization: value`.
pub(crate) fn bearer(s: &Setup, path: &str, value: &str) -> Response {
    s.gw.request("GET", path, &[("Authorization", value)], b"")
}

/// A gateway with one bearer route `q` at `/q` to an echo upstream (`top` TOML before it,
/// `route_extra` in it), an account made with `candor accounts add` and `account`'s
/// arguments, and a client of that account (the first `--id` value).
pub(crate) fn account_setup(top: &str, route_extra: &str, account: &[&str]) -> Setup {
    let up = Upstream::start(Behaviour::Echo);
    let config = format!(
        "{top}\n[[routes]]\nname = \"q\"\npath = \"/q\"\nupstream = \"{}\"\nauth = \"bearer\"\n{route_extra}\n",
        up.url()
    );
    let id = account
        .iter()
        .position(|a| *a == "--id")
        .and_then(|i| account.get(i + 1))
        .copied()
        .expect("an --id");
    let mut out = String::new();
    let gw = Gateway::start_after(&config, |path| {
        let mut args = vec!["accounts", "add"];
        args.extend_from_slice(account);
        cli_at(path, &args);
        out = cli_at(path, &["clients", "add", "--account", id]);
    });
    Setup {
        gw,
        up,
        client_id: value_of(&out, "client_id:"),
        secret: value_of(&out, "client_secret:"),
    }
}

/// Runs `candor check` on `config` (TOML text, in a directory of its own): it must fail,
/// and its report (returned) must contain each of `needles`.
pub(crate) fn check_reports(config: &str, needles: &[&str]) -> String {
    let dir = temp_dir("check-reports");
    let file = dir.join("candor.toml");
    std::fs::write(&file, config).unwrap();
    let (code, out, _) = candor(&["check", "--config", file.to_str().unwrap()]);
    assert_ne!(code, 0, "{out}");
    for needle in needles {
        assert!(out.contains(needle), "{needle} not in\n{out}");
    }
    out
}

impl Setup {
    /// This setup with its gateway restarted on the same configuration and data: stopped
    /// with SIGTERM, or killed with SIGKILL when `crash` (nothing saved on the way out).
    pub(crate) fn restarted(self, crash: bool) -> Setup {
        let Setup {
            gw,
            up,
            client_id,
            secret,
        } = self;
        Setup {
            gw: if crash {
                gw.crash_and_restart()
            } else {
                gw.restart()
            },
            up,
            client_id,
            secret,
        }
    }
}

// ------------------------------------------------------------------ Redis

/// A `redis-server` of the test's own, on a free loopback port, in a temp directory, with
/// nothing saved to disk; killed when dropped. CI installs the Debian package.
pub(crate) struct Redis {
    child: Option<Child>,
    /// The port it listens on (kept across [`Redis::restart`]).
    pub(crate) port: u16,
    dir: TempDir,
}

impl Redis {
    /// Starts a server and waits until it answers PING.
    pub(crate) fn start() -> Redis {
        let mut r = Redis {
            child: None,
            port: Upstream::refused().port(),
            dir: temp_dir("redis"),
        };
        r.restart();
        r
    }

    /// `redis://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server with SIGKILL and waits for it: everything it held is gone.
    pub(crate) fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server (again) on the same port, empty, and waits until it answers.
    pub(crate) fn restart(&mut self) {
        self.kill();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&*self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (apt-get install redis-server)");
        self.child = Some(child);
        for _ in 0..200 {
            if self.ping() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("redis-server on port {} did not answer PING", self.port);
    }

    /// Sends `sig` (`STOP`, `CONT`) to the server: stopped, it holds its connections open
    /// and answers nothing.
    pub(crate) fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// The seconds `key` has left (`TTL`: -2 when there is no such key).
    pub(crate) fn ttl(&self, key: &str) -> i64 {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(format!("*2\r\n$3\r\nTTL\r\n${}\r\n", key.len()).as_bytes())
            .unwrap();
        s.write_all(key.as_bytes()).unwrap();
        s.write_all(b"\r\n").unwrap();
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).unwrap();
        line.trim()
            .strip_prefix(':')
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("TTL answered {line:?}"))
    }

    /// Runs a Lua `script` with `args` (no keys) and waits for its answer: for planting
    /// data as other gateways would have left it.
    pub(crate) fn eval(&self, script: &str, args: &[&str]) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut parts = vec!["EVAL", script, "0"];
        parts.extend_from_slice(args);
        let mut req = format!("*{}\r\n", parts.len());
        for p in &parts {
            req.push_str(&format!("${}\r\n{p}\r\n", p.len()));
        }
        s.write_all(req.as_bytes()).unwrap();
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).unwrap();
        assert!(!line.starts_with('-'), "EVAL answered {line:?}");
    }

    /// How many times Redis ran a script (EVALSHA, EVAL, SCRIPT LOAD): the gateways'
    /// round trips.
    pub(crate) fn script_calls(&self) -> u64 {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"INFO commandstats\r\n").unwrap();
        let mut r = BufReader::new(s);
        let mut head = String::new();
        r.read_line(&mut head).unwrap();
        let len: usize = head.trim().trim_start_matches('$').parse().unwrap();
        let mut body = vec![0; len];
        r.read_exact(&mut body).unwrap();
        String::from_utf8_lossy(&body)
            .lines()
            .filter(|l| {
                ["cmdstat_evalsha:", "cmdstat_eval:", "cmdstat_script:"]
                    .iter()
                    .any(|p| l.starts_with(p))
            })
            .filter_map(|l| {
                l.split_once("calls=")?
                    .1
                    .split(',')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum()
    }

    fn ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Calls the admin API of `gw` with its admin token (a JSON `body`, if any).
pub(crate) fn admin_call(gw: &Gateway, method: &str, path: &str, body: Option<&str>) -> Response {
    let token = std::fs::read_to_string(gw.printed("admin API token: in ")).unwrap();
    let auth = format!("Bearer {}", token.trim());
    let mut h = vec![("Authorization", auth.as_str())];
    if body.is_some() {
        h.push(("Content-Type", "application/json"));
    }
    request(
        gw.admin.unwrap(),
        method,
        path,
        &h,
        body.unwrap_or("").as_bytes(),
    )
}
