//! Event subscriptions (`[[events.subscriptions]]`): webhooks under load in `block` mode
//! (nothing lost, the waits measured) and down in `drop` mode (drops counted exactly, then
//! told as `events.dropped`), HMAC signatures, syslog over UDP and TCP in RFC 5424, filters,
//! and `candor check` on bad subscriptions.

use crate::harness::*;
use serde_json::Value;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One POST a [`Hook`] received: its headers (lower-case names) and body.
#[derive(Clone, Debug)]
pub(crate) struct Post {
    pub(crate) headers: HashMap<String, String>,
    pub(crate) body: Vec<u8>,
}

impl Post {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// A webhook receiver on loopback: answers every POST 200 after `delay`, keeping the
/// connection, and records what it got.
pub(crate) struct Hook {
    pub(crate) addr: SocketAddr,
    pub(crate) posts: Arc<Mutex<Vec<Post>>>,
    stop: Arc<AtomicBool>,
}

impl Hook {
    pub(crate) fn start(delay: Duration) -> Hook {
        Self::start_on("127.0.0.1:0".parse().unwrap(), delay)
    }

    pub(crate) fn start_on(addr: SocketAddr, delay: Duration) -> Hook {
        let listener = TcpListener::bind(addr).unwrap();
        let addr = listener.local_addr().unwrap();
        let posts: Arc<Mutex<Vec<Post>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (posts.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let p = p.clone();
                std::thread::spawn(move || serve_hook(conn, delay, &p));
            }
        });
        Hook { addr, posts, stop }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub(crate) fn posts(&self) -> Vec<Post> {
        self.posts.lock().unwrap().clone()
    }

    /// Every event of every batch received, in order.
    pub(crate) fn events(&self) -> Vec<Value> {
        self.posts()
            .iter()
            .flat_map(|p| p.json()["events"].as_array().cloned().unwrap_or_default())
            .collect()
    }
}

impl Drop for Hook {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve_hook(conn: TcpStream, delay: Duration, posts: &Mutex<Vec<Post>>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let mut writer = conn.try_clone().unwrap();
    let mut reader = BufReader::new(conn);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
            }
        }
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        std::thread::sleep(delay);
        posts.lock().unwrap().push(Post { headers, body });
        if writer
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .is_err()
        {
            return;
        }
    }
}

/// `sha256=<hex>` of HMAC-SHA256(secret, "<timestamp>.<body>"), as the receiver computes it.
pub(crate) fn expected_signature(secret: &[u8], post: &Post) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mut msg = post.headers["x-candor-timestamp"].as_bytes().to_vec();
    msg.push(b'.');
    msg.extend_from_slice(&post.body);
    let tag = ring::hmac::sign(&key, &msg);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// The sink named `name` in `/stats`.
pub(crate) fn sink(gw: &Gateway, name: &str) -> Value {
    gw.stats()["events"]["sinks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no sink {name} in /stats"))
}

/// Waits up to `secs` for `check`.
pub(crate) fn wait_for(secs: u64, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    check()
}

#[test]
fn block_mode_under_load_loses_nothing_and_measures_the_waits() {
    let up = Upstream::start(Behaviour::Echo);
    // A slow receiver: each batch takes 40 ms to be answered, so at most 10 events in 40 ms
    // (250/s) are delivered, fewer than the clients send.
    let hook = Hook::start(Duration::from_millis(40));
    let secret = "a-webhook-secret-3f9c";
    let config = format!(
        "[events]\nqueue = 64\n\n[[events.subscriptions]]\nname = \"hook\"\ntypes = [\"request.completed\"]\nsink = \"webhook\"\nurl = \"{}\"\nsecret_file = \"hook.secret\"\nbatch = 50\nflush_every = \"20ms\"\nqueue = 10\nmode = \"block\"\n\n{}",
        hook.url("/candor/events"),
        one_route("/r", &up.url(), "")
    );
    let gw = Gateway::start_after(&config, |path| {
        std::fs::write(path.with_file_name("hook.secret"), format!("{secret}\n")).unwrap();
    });
    let addr = gw.addr;
    let ids: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(move || {
                    (0..250)
                        .map(|_| {
                            let r = request(addr, "GET", "/r", &[], b"");
                            assert_eq!(r.status, 200);
                            r.header("x-request-id").unwrap().to_owned()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert_eq!(ids.len(), 2000);
    assert!(
        wait_for(60, || hook.events().len() >= 2000),
        "{} of 2000 events delivered; {}",
        hook.events().len(),
        sink(&gw, "hook")
    );
    let mut seen: HashMap<String, usize> = HashMap::new();
    for ev in hook.events() {
        assert_eq!(ev["type"], "request.completed");
        *seen
            .entry(ev["request_id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    for id in &ids {
        assert_eq!(
            seen.get(id),
            Some(&1),
            "request {id} delivered {:?} times",
            seen.get(id)
        );
    }
    assert_eq!(seen.len(), 2000);
    // Every batch is signed over its timestamp and body.
    for post in hook.posts() {
        assert_eq!(post.headers["content-type"], "application/json");
        assert_eq!(
            post.headers["x-candor-signature"],
            expected_signature(secret.as_bytes(), &post)
        );
        assert!(post.json()["events"].as_array().unwrap().len() <= 10);
        assert_eq!(post.json()["subscription"], "hook");
    }
    let stats = sink(&gw, "hook");
    assert_eq!(stats["mode"], "block");
    assert_eq!(stats["dropped"], 0, "{stats}");
    assert_eq!(stats["delivered"], 2000, "{stats}");
    assert!(stats["waited"].as_u64().unwrap() > 0, "{stats}");
    assert!(stats["waited_us"].as_u64().unwrap() > 0, "{stats}");
    // The secret is in no log line and not in /stats.
    assert!(!gw.log().contains(secret));
    assert!(!gw.stats().to_string().contains(secret));
}

#[test]
fn drop_mode_counts_drops_exactly_and_tells_them_once_the_sink_recovers() {
    let up = Upstream::start(Behaviour::Echo);
    // Nothing listens there yet: every delivery fails.
    let down = Upstream::refused();
    let config = format!(
        "[[events.subscriptions]]\nname = \"lossy\"\ntypes = [\"request.completed\", \"events.dropped\"]\nsink = \"webhook\"\nurl = \"http://{down}/in\"\nbatch = 5\nflush_every = \"10ms\"\nqueue = 5\nmode = \"drop\"\nmax_retries = 1\nretry_backoff = \"10ms\"\nmax_backoff = \"20ms\"\ntimeout = \"2s\"\n\n{}",
        one_route("/r", &up.url(), "")
    );
    let gw = Gateway::start(&config);
    let mut sent = 0u64;
    for _ in 0..200 {
        assert_eq!(gw.get("/r").status, 200);
        sent += 1;
    }
    // Everything offered is queued, being tried, or dropped; nothing delivered.
    assert!(
        wait_for(20, || {
            let s = sink(&gw, "lossy");
            s["offered"] == sent && s["dropped"] == sent && s["in_flight"] == 0
        }),
        "{}",
        sink(&gw, "lossy")
    );
    let before = sink(&gw, "lossy");
    assert_eq!(before["delivered"], 0, "{before}");
    assert_eq!(before["dropped"], sent, "{before}");
    assert!(before["failed"].as_u64().unwrap() > 0, "{before}");
    // The receiver comes up; more requests, delivered.
    let hook = Hook::start_on(down, Duration::ZERO);
    for _ in 0..10 {
        assert_eq!(gw.get("/r").status, 200);
        sent += 1;
    }
    let tally = |hook: &Hook| {
        let events = hook.events();
        let completed = events
            .iter()
            .filter(|e| e["type"] == "request.completed")
            .count() as u64;
        let told: u64 = events
            .iter()
            .filter(|e| e["type"] == "events.dropped")
            .map(|e| e["facts"]["dropped"].as_u64().unwrap())
            .sum();
        (completed, told)
    };
    assert!(
        wait_for(30, || {
            let (completed, told) = tally(&hook);
            completed + told == sent
        }),
        "{:?} of {sent}; {}",
        tally(&hook),
        sink(&gw, "lossy")
    );
    let (completed, told) = tally(&hook);
    assert!(completed >= 1);
    let dropped_event = hook
        .events()
        .into_iter()
        .find(|e| e["type"] == "events.dropped")
        .unwrap();
    assert_eq!(dropped_event["severity"], "warning");
    assert_eq!(dropped_event["facts"]["subscription"], "lossy");
    assert_eq!(dropped_event["facts"]["sink"], "webhook");
    assert!(dropped_event["facts"]["since"].is_string());
    // sent requests - delivered = dropped, in the events and in /stats.
    let stats = sink(&gw, "lossy");
    assert_eq!(sent - completed, told);
    assert_eq!(stats["dropped"], told, "{stats}");
    assert_eq!(stats["waited"], 0, "{stats}");
    gw.log_line("delivers again; it dropped");
}

/// The parts of an RFC 5424 message: PRI, version, timestamp, host, app, procid, msgid, the
/// structured data and the message.
fn rfc5424(msg: &str) -> (u32, Vec<String>, Value) {
    let rest = msg.strip_prefix('<').unwrap();
    let (pri, rest) = rest.split_once('>').unwrap();
    let mut parts = rest.splitn(7, ' ');
    let head: Vec<String> = (0..6).map(|_| parts.next().unwrap().to_owned()).collect();
    let rest = parts.next().unwrap();
    let (sd, json) = rest.split_at(rest.find("] ").unwrap() + 2);
    assert!(sd.starts_with("[origin software=\"candor\""), "{msg}");
    (
        pri.parse().unwrap(),
        head,
        serde_json::from_str(json).unwrap(),
    )
}

#[test]
fn syslog_over_udp_is_rfc5424_with_the_event_as_message() {
    let up = Upstream::start(Behaviour::Echo);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let config = format!(
        "[[events.subscriptions]]\nname = \"syslog\"\ntypes = [\"request.completed\"]\nsink = \"syslog\"\naddress = \"udp://{}\"\napp_name = \"candor-test\"\nfacility = \"local3\"\n\n{}",
        socket.local_addr().unwrap(),
        one_route("/r", &up.url(), "")
    );
    let gw = Gateway::start(&config);
    let r = gw.get("/r");
    let mut buf = vec![0; 65_536];
    let n = socket.recv(&mut buf).unwrap();
    let msg = std::str::from_utf8(&buf[..n]).unwrap();
    let (pri, head, ev) = rfc5424(msg);
    // local3 (19) * 8 + informational (6).
    assert_eq!(pri, 19 * 8 + 6, "{msg}");
    assert_eq!(head[0], "1");
    assert_eq!(head[1], ev["time"].as_str().unwrap(), "{msg}");
    assert_eq!(head[3], "candor-test");
    assert_eq!(
        head[4],
        gw.worker_pid().to_string(),
        "the worker writes the event"
    );
    assert_eq!(head[5], "request.completed");
    assert_eq!(ev["request_id"], r.header("x-request-id").unwrap());
}

#[test]
fn syslog_over_tcp_frames_each_message_with_its_length() {
    let up = Upstream::start(Behaviour::Echo);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let config = format!(
        "[[events.subscriptions]]\nname = \"syslog\"\ntypes = [\"request.*\"]\nseverity = \"notice\"\nsink = \"syslog\"\naddress = \"tcp://{}\"\n\n{}",
        listener.local_addr().unwrap(),
        one_route("/r", &up.url(), "")
    );
    let gw = Gateway::start(&config);
    let miss = gw.get("/nowhere");
    assert_eq!(miss.status, 404);
    let (mut conn, _) = listener.accept().unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let read_frame = |conn: &mut TcpStream| {
        let mut len = Vec::new();
        let mut b = [0u8];
        loop {
            conn.read_exact(&mut b).unwrap();
            if b[0] == b' ' {
                break;
            }
            len.push(b[0]);
        }
        let len: usize = std::str::from_utf8(&len).unwrap().parse().unwrap();
        let mut msg = vec![0; len];
        conn.read_exact(&mut msg).unwrap();
        String::from_utf8(msg).unwrap()
    };
    let msg = read_frame(&mut conn);
    let (pri, head, ev) = rfc5424(&msg);
    // local0 (16, the default) * 8 + notice (5).
    assert_eq!(pri, 16 * 8 + 5, "{msg}");
    assert_eq!(head[3], "candor");
    assert_eq!(head[5], "request.rejected");
    assert_eq!(ev["code"], "route_not_found");
    assert_eq!(ev["request_id"], miss.header("x-request-id").unwrap());
    // The next message follows on the same connection, framed the same way (a request
    // served is `info`, under the filter's least severity: not sent).
    assert_eq!(gw.get("/r").status, 200);
    let again = gw.get("/nowhere/else");
    let msg = read_frame(&mut conn);
    let (_, _, ev) = rfc5424(&msg);
    assert_eq!(ev["request_id"], again.header("x-request-id").unwrap());
}

#[test]
fn filters_take_types_severities_routes_and_codes() {
    let up = Upstream::start(Behaviour::Echo);
    let nobody = Upstream::refused();
    let sub = |name: &str, filter: &str| {
        format!(
            "[[events.subscriptions]]\nname = \"{name}\"\n{filter}\nsink = \"file\"\npath = \"{name}.jsonl\"\n\n"
        )
    };
    let config = format!(
        "{}{}{}{}{}[[events.subscriptions]]\nname = \"out\"\ntypes = [\"api.started\"]\nsink = \"stdout\"\n\n[[routes]]\nname = \"one\"\npath = \"/one\"\nupstream = \"{up}\"\n\n[[routes]]\nname = \"two\"\npath = \"/two\"\nupstream = \"{up}\"\n\n[[routes]]\nname = \"down\"\npath = \"/down\"\nupstream = \"http://{nobody}\"\n",
        sub("rejected", "types = [\"request.rejected\"]"),
        sub("errors", "severity = \"error\""),
        sub("two", "routes = [\"two\"]"),
        sub("missing", "codes = [\"route_not_found\"]"),
        sub("config", "types = [\"config.*\"]"),
        up = up.url(),
    );
    let gw = Gateway::start(&config);
    assert_eq!(gw.get("/one").status, 200);
    let two = gw.get("/two");
    assert_eq!(two.status, 200);
    let miss = gw.get("/nope");
    assert_eq!(miss.status, 404);
    let down = gw.get("/down");
    assert_eq!(down.status, 502);
    let read = |name: &str| -> Vec<Value> {
        std::fs::read_to_string(gw.dir.join(format!("{name}.jsonl")))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let id = |r: &Response| r.header("x-request-id").unwrap().to_owned();
    let ids = |evs: &[Value]| -> Vec<String> {
        evs.iter()
            .filter_map(|e| e["request_id"].as_str().map(str::to_owned))
            .collect()
    };
    assert!(gw.eventually(|_| {
        !read("rejected").is_empty()
            && read("errors")
                .iter()
                .any(|e| e["request_id"] == id(&down).as_str())
            && !read("two").is_empty()
            && !read("missing").is_empty()
            && !read("config").is_empty()
    }));
    std::thread::sleep(Duration::from_millis(300));
    let rejected = read("rejected");
    assert!(
        rejected.iter().all(|e| e["type"] == "request.rejected"),
        "{rejected:?}"
    );
    assert!(ids(&rejected).contains(&id(&miss)));
    let errors = read("errors");
    assert!(
        errors
            .iter()
            .all(|e| e["severity"] == "error" || e["severity"] == "critical"),
        "{errors:?}"
    );
    assert_eq!(ids(&errors), vec![id(&down)]);
    let two_events = read("two");
    assert!(
        two_events.iter().all(|e| e["route"] == "two"),
        "{two_events:?}"
    );
    assert_eq!(ids(&two_events), vec![id(&two)]);
    let missing = read("missing");
    assert!(missing.iter().all(|e| e["code"] == "route_not_found"));
    assert_eq!(ids(&missing), vec![id(&miss)]);
    let config_events = read("config");
    assert!(config_events.iter().all(|e| e["type"] == "config.applied"));
    assert!(gw.eventually(|g| {
        g.stdout
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("\"type\":\"api.started\""))
    }));
}

#[test]
fn a_reload_keeps_a_sink_and_what_it_holds() {
    let up = Upstream::start(Behaviour::Echo);
    let down = Upstream::refused();
    let sub = format!(
        "[[events.subscriptions]]\nname = \"kept\"\ntypes = [\"request.completed\"]\nsink = \"webhook\"\nurl = \"http://{down}/in\"\nflush_every = \"10ms\"\nretry_backoff = \"50ms\"\nmax_backoff = \"100ms\"\n\n"
    );
    let gw = Gateway::start(&format!("{sub}{}", one_route("/r", &up.url(), "")));
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(gw.get("/r").header("x-request-id").unwrap().to_owned());
    }
    // Offered, and failing: nothing listens at the webhook's address yet.
    assert!(wait_for(10, || {
        let s = sink(&gw, "kept");
        s["offered"] == 5 && s["failed"].as_u64().unwrap() > 0
    }));
    // A reload that changes the filter's severity but not the sink.
    std::fs::write(
        &gw.config,
        format!(
            "{}{}",
            sub.replace(
                "sink = \"webhook\"",
                "severity = \"info\"\nsink = \"webhook\""
            ),
            one_route("/r", &up.url(), "")
        ),
    )
    .unwrap();
    gw.signal("HUP");
    assert!(gw.eventually(|g| g.log().contains("configuration reloaded")));
    let hook = Hook::start_on(down, Duration::ZERO);
    assert!(wait_for(20, || hook.events().len() >= 5));
    let got: Vec<String> = hook
        .events()
        .iter()
        .map(|e| e["request_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(got, ids);
    let stats = sink(&gw, "kept");
    assert_eq!(stats["dropped"], 0, "{stats}");
    assert!(stats["failed"].as_u64().unwrap() > 0, "{stats}");
}

#[test]
fn check_reports_bad_subscriptions_precisely() {
    let out = check_reports(
        r#"[[events.subscriptions]]
name = "a"
types = ["request.rejcted", "ath.*"]
severity = "warn"
sink = "webhook"
url = "ftp://hooks.example.com/x"
secret_env = "CANDOR_TEST_NO_SUCH_SECRET_VARIABLE"
mode = "dorp"

[[events.subscriptions]]
name = "b"
sink = "webhok"

[[events.subscriptions]]
name = "c"
codes = ["rate_limted"]
sink = "syslog"
address = "udp://127.0.0.1:514"
path = "x.jsonl"

[[events.subscriptions]]
name = "d"
routes = ["nope"]
sink = "stdout"

[[events.subscriptions]]
name = "d"
sink = "stdout"

[[events.subscriptions]]
name = "e"
sink = "syslog"
address = "514"

[[routes]]
name = "r"
path = "/r"
upstream = "http://127.0.0.1:9"
"#,
        &[
            "events.subscriptions[0].types: `request.rejcted` is not an event type; did you mean `request.rejected`?",
            "events.subscriptions[0].types: `ath.*` matches no event type; did you mean `auth.*`?",
            "events.subscriptions[0].severity: `warn` is not a severity; did you mean `warning`?",
            "events.subscriptions[0].url: `ftp://hooks.example.com/x` is not a webhook URL: `ftp` is not a scheme a webhook can have",
            "events.subscriptions[0].secret_env: the environment variable CANDOR_TEST_NO_SUCH_SECRET_VARIABLE is not set or is empty",
            "events.subscriptions[0].mode: unknown mode `dorp`; did you mean `drop`?",
            "events.subscriptions[1].sink: unknown sink `webhok`; did you mean `webhook`?",
            "events.subscriptions[2].codes: `rate_limted` is not a code of the catalog; did you mean `rate_limited`?",
            "events.subscriptions[5].address: `514` is not a syslog address",
            "events.subscriptions[2].path: `path` is not a setting of a syslog sink",
            "events.subscriptions[3].routes: `nope` is not the name of a route",
            "events.subscriptions[4].name: a subscription named `d` is defined already",
        ],
    );
    assert!(out.contains(":3:"), "positions are given: {out}");
    // A secret read from a file never shows, even next to a problem.
    let dir = temp_dir("check-secret");
    std::fs::write(dir.join("hook.secret"), "s3cr3t-never-printed\n").unwrap();
    let file = dir.join("candor.toml");
    std::fs::write(
        &file,
        "[[events.subscriptions]]\nname = \"a\"\nsink = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\nsecret_file = \"hook.secret\"\nbatch = 0\n",
    )
    .unwrap();
    let (code, out, err) = candor(&["check", "--config", file.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(out.contains("events.subscriptions[0].batch"), "{out}");
    assert!(
        !out.contains("s3cr3t") && !err.contains("s3cr3t"),
        "{out}{err}"
    );
}
