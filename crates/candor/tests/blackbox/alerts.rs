//! Alerts (`[alerts]`): a rejected configuration change told by webhook and by e-mail (to an
//! SMTP sink the test runs on loopback), once per `repeat_every`, and recorded as an
//! `alert.raised` event; `candor check` on bad alert settings.

use crate::harness::*;
use crate::subscriptions::{Hook, expected_signature, wait_for};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A minimal SMTP server on loopback (EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT): each
/// message's envelope and data are recorded.
struct SmtpSink {
    addr: SocketAddr,
    mails: Arc<Mutex<Vec<Mail>>>,
}

#[derive(Clone, Debug, Default)]
struct Mail {
    from: String,
    to: Vec<String>,
    data: String,
}

impl SmtpSink {
    fn start() -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mails: Arc<Mutex<Vec<Mail>>> = Arc::default();
        let m = mails.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let m = m.clone();
                std::thread::spawn(move || {
                    let _ = smtp_session(conn, &m);
                });
            }
        });
        SmtpSink { addr, mails }
    }

    fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }
}

fn smtp_session(conn: TcpStream, mails: &Mutex<Vec<Mail>>) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut w = conn.try_clone()?;
    let mut r = BufReader::new(conn);
    w.write_all(b"220 sink.test ESMTP\r\n")?;
    let mut mail = Mail::default();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let upper = line.to_ascii_uppercase();
        if upper.starts_with("EHLO") {
            w.write_all(b"250-sink.test\r\n250 8BITMIME\r\n")?;
        } else if upper.starts_with("HELO") {
            w.write_all(b"250 sink.test\r\n")?;
        } else if upper.starts_with("MAIL FROM:") {
            mail = Mail {
                from: line[10..].trim().to_owned(),
                ..Mail::default()
            };
            w.write_all(b"250 OK\r\n")?;
        } else if upper.starts_with("RCPT TO:") {
            mail.to.push(line[8..].trim().to_owned());
            w.write_all(b"250 OK\r\n")?;
        } else if upper.starts_with("DATA") {
            w.write_all(b"354 end with .\r\n")?;
            loop {
                let mut l = String::new();
                if r.read_line(&mut l)? == 0 {
                    return Ok(());
                }
                if l == ".\r\n" {
                    break;
                }
                mail.data.push_str(l.strip_prefix('.').unwrap_or(&l));
            }
            mails.lock().unwrap().push(std::mem::take(&mut mail));
            w.write_all(b"250 queued\r\n")?;
        } else if upper.starts_with("QUIT") {
            w.write_all(b"221 bye\r\n")?;
            return Ok(());
        } else if upper.starts_with("RSET") || upper.starts_with("NOOP") {
            w.write_all(b"250 OK\r\n")?;
        } else {
            w.write_all(b"502 not implemented\r\n")?;
        }
    }
}

/// A mail's body with quoted-printable soft breaks and escapes undone (enough for ASCII).
fn unfolded(data: &str) -> String {
    let joined = data.replace("=\r\n", "");
    let mut out = String::new();
    let mut chars = joined.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '=' {
            let hex: String = chars.by_ref().take(2).collect();
            match u8::from_str_radix(&hex, 16) {
                Ok(b) => out.push(b as char),
                Err(_) => {
                    out.push('=');
                    out.push_str(&hex);
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn a_rejected_configuration_is_alerted_by_webhook_and_email_once_per_interval() {
    let up = Upstream::start(Behaviour::Echo);
    let hook = Hook::start(Duration::ZERO);
    let smtp = SmtpSink::start();
    let secret = "alert-hook-secret-71";
    let config = format!(
        r#"[alerts]
repeat_every = "1h"

[alerts.webhook]
url = "{url}"
secret_file = "alert.secret"

[alerts.email]
smtp = "smtp://{smtp}"
from = "candor@example.test"
to = ["ops@example.test", "oncall@example.test"]

[[events.subscriptions]]
name = "alerts"
types = ["alert.raised"]
sink = "file"
path = "alerts.jsonl"

{route}"#,
        url = hook.url("/alerts"),
        smtp = smtp.addr,
        route = one_route("/r", &up.url(), ""),
    );
    let gw = Gateway::start_after(&config, |path| {
        std::fs::write(path.with_file_name("alert.secret"), secret).unwrap();
    });
    // A change with a mistake: rejected, the running configuration stays.
    std::fs::write(
        &gw.config,
        config.replace("[alerts]", "[alerts]\nrepeat_evry = 3"),
    )
    .unwrap();
    gw.signal("HUP");
    assert!(wait_for(20, || !hook.posts().is_empty()), "{}", gw.log());
    let post = &hook.posts()[0];
    assert_eq!(
        post.headers["x-candor-signature"],
        expected_signature(secret.as_bytes(), post)
    );
    let alert = &post.json()["alert"];
    assert_eq!(alert["rule"], "config_rejected");
    assert_eq!(alert["title"], "A configuration change was rejected");
    assert_eq!(alert["type"], "Config");
    assert_eq!(alert["severity"], "Warning");
    assert_eq!(alert["count"], 1);
    assert!(
        alert["facts"]["report"]
            .as_str()
            .unwrap()
            .contains("did you mean `repeat_every`?"),
        "{alert}"
    );
    assert!(alert["advice"].as_str().unwrap().contains("candor check"));

    assert!(wait_for(20, || !smtp.mails().is_empty()), "{}", gw.log());
    let mail = &smtp.mails()[0];
    assert!(mail.from.contains("candor@example.test"), "{mail:?}");
    assert_eq!(mail.to.len(), 2, "{mail:?}");
    let data = unfolded(&mail.data);
    assert!(
        data.contains("Subject: [candor] Warning (Config): A configuration change was rejected"),
        "{data}"
    );
    for needle in [
        "Alert:     A configuration change was rejected",
        "Type:      Config",
        "Severity:  Warning",
        "First:     ",
        "Count:     1 since then",
        "What to do:",
        "repeat_evry",
    ] {
        assert!(data.contains(needle), "{needle} not in {data}");
    }
    assert!(!data.contains(secret));

    // The same alert again within repeat_every: counted, not sent.
    std::fs::write(
        &gw.config,
        config.replace("[alerts]", "[alerts]\nrepeat_evry = 4"),
    )
    .unwrap();
    gw.signal("HUP");
    assert!(wait_for(
        20,
        || gw.stats()["events"]["alerts"]["suppressed"] == 1
    ));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(hook.posts().len(), 1);
    assert_eq!(smtp.mails().len(), 1);
    let stats = &gw.stats()["events"]["alerts"];
    assert_eq!(stats["raised"], 1, "{stats}");
    assert_eq!(stats["delivered"], 2, "{stats}");

    // Recorded as an event.
    let raised: Vec<Value> = std::fs::read_to_string(gw.dir.join("alerts.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(raised.len(), 1, "{raised:?}");
    assert_eq!(raised[0]["type"], "alert.raised");
    assert_eq!(raised[0]["severity"], "warning");
    assert_eq!(raised[0]["facts"]["rule"], "config_rejected");
    assert_eq!(
        raised[0]["facts"]["to"],
        serde_json::json!(["webhook", "email"])
    );
    assert!(!gw.log().contains(secret));
}

#[test]
fn check_reports_bad_alert_settings() {
    check_reports(
        r#"[alerts]
repeat_every = "soon"

[alerts.rules]
error_rate = { threshold = 1.5, window = "1m" }
config_rejectd = true

[alerts.webhook]
url = "hooks.example.com"

[alerts.email]
smtp = "mail.example.com:25"
from = "not an address"
to = []
password_env = "CANDOR_TEST_NO_SUCH_PASSWORD_VARIABLE"
"#,
        &[
            "alerts.repeat_every: \"soon\" is not a duration",
            "alerts.rules.error_rate.threshold:",
            "alerts.rules.config_rejectd: unknown key `config_rejectd`; did you mean `config_rejected`?",
            "alerts.webhook.url: `hooks.example.com` is not a webhook URL",
            "alerts.email.smtp: `mail.example.com:25` is not an SMTP server's URL",
            "alerts.email.from: `not an address` is not an e-mail address",
            "alerts.email.to: e-mail alerts need at least one recipient",
            "alerts.email.password_env: the environment variable CANDOR_TEST_NO_SUCH_PASSWORD_VARIABLE is not set or is empty",
        ],
    );
}

#[test]
fn a_worker_killed_is_alerted_as_api_has_restarted_due_to_an_error() {
    let up = Upstream::start(Behaviour::Echo);
    let hook = Hook::start(Duration::ZERO);
    let smtp = SmtpSink::start();
    let config = format!(
        r#"[alerts.webhook]
url = "{url}"
secret_file = "alert.secret"

[alerts.email]
smtp = "smtp://{smtp}"
from = "candor@example.test"
to = ["ops@example.test"]

{route}"#,
        url = hook.url("/alerts"),
        smtp = smtp.addr,
        route = one_route("/r", &up.url(), ""),
    );
    let gw = Gateway::start_after(&config, |path| {
        std::fs::write(path.with_file_name("alert.secret"), "restart-secret-12").unwrap();
    });
    assert_eq!(gw.get("/r").status, 200);
    let old = gw.worker_pid();
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &old.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    // The supervisor starts a new worker, which records api.restarted; the rule raises
    // "API has restarted due to an error" (System, Warning), by webhook and by e-mail.
    assert!(
        wait_for(30, || hook
            .posts()
            .iter()
            .any(|p| p.json()["alert"]["rule"] == "api_restarted")),
        "{}",
        gw.log()
    );
    let post = hook
        .posts()
        .into_iter()
        .find(|p| p.json()["alert"]["rule"] == "api_restarted")
        .unwrap();
    let alert = &post.json()["alert"];
    assert_eq!(alert["title"], "API has restarted due to an error");
    assert_eq!(alert["type"], "System");
    assert_eq!(alert["severity"], "Warning");
    assert_eq!(alert["facts"]["signal_name"], "SIGKILL", "{alert}");
    assert!(
        wait_for(30, || smtp.mails().iter().any(
            |m| unfolded(&m.data).contains("API has restarted due to an error")
        )),
        "{}",
        gw.log()
    );
    // And the gateway serves again.
    assert_eq!(gw.get("/r").status, 200);
}

#[test]
fn shared_state_unreachable_is_an_event_and_an_alert() {
    let mut redis = Redis::start();
    let up = Upstream::start(Behaviour::Echo);
    let hook = Hook::start(Duration::ZERO);
    let config = format!(
        r#"[limits.shared]
redis = "{redis}"
on_failure = "closed"

[alerts.webhook]
url = "{url}"
secret_file = "alert.secret"

{route}
[[routes.rate_limits]]
name = "hourly"
limit = 100
window = "1h"
key = "route"
"#,
        redis = redis.url(),
        url = hook.url("/alerts"),
        route = one_route("/limited", &up.url(), ""),
    );
    let gw = Gateway::start_after(&config, |path| {
        std::fs::write(path.with_file_name("alert.secret"), "redis-alert-secret-5").unwrap();
    });
    assert_eq!(gw.get("/limited").status, 200);
    redis.kill();
    assert_problem(&gw.get("/limited"), "rate_limit_store_unavailable");
    let raised = |rule: &str| {
        hook.posts()
            .into_iter()
            .map(|p| p.json()["alert"].clone())
            .find(|a| a["rule"] == rule)
    };
    assert!(
        wait_for(20, || raised("shared_state_unreachable").is_some()),
        "{}",
        gw.log()
    );
    let alert = raised("shared_state_unreachable").unwrap();
    assert_eq!(alert["title"], "Shared state (Redis) unreachable");
    assert_eq!(alert["type"], "System");
    assert_eq!(
        alert["severity"], "Critical",
        "on_failure = closed: {alert}"
    );
    assert_eq!(alert["facts"]["on_failure"], "closed");
    assert!(alert["advice"].as_str().unwrap().contains("503"));
    // The events: down, then up once it answers again.
    redis.restart();
    assert!(gw.eventually(|g| g.get("/limited").status == 200));
    let dir = gw.dir.join("candor-data").join("events");
    let mut seen = Vec::new();
    gw.eventually(|_| {
        seen = crate::events::events_in(&dir)
            .into_iter()
            .filter(|e| e["type"].as_str().unwrap().starts_with("shared_state."))
            .collect();
        seen.len() >= 2
    });
    assert_eq!(seen[0]["type"], "shared_state.down", "{seen:#?}");
    assert_eq!(seen[0]["severity"], "critical");
    assert_eq!(seen[1]["type"], "shared_state.up", "{seen:#?}");
}
