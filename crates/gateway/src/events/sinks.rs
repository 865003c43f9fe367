//! The sinks: where a subscription's events are delivered, each by a task of the sinks'
//! runtime reading the subscription's queue.
//!
//! | sink | delivery |
//! | --- | --- |
//! | `file` | each event's JSON line appended to the file (reopened for each batch, so an outside rotation is followed) |
//! | `stdout` | each event's JSON line on standard output |
//! | `syslog` | RFC 5424 messages, the JSON line as MSG: one UDP datagram each, or over TCP with RFC 6587 octet counting |
//! | `webhook` | batches POSTed as `{"subscription": name, "events": [..]}`, signed (see [`Webhook`]) |
//!
//! A failed delivery is tried again after a back-off with full jitter. In `block` mode a
//! batch is tried until it is delivered (the queue filling up is the back-pressure); in
//! `drop` mode it is given up after `max_retries` and its events are counted as dropped.

use super::EventLog;
use super::subscriptions::{Item, Sink};
use crate::config::{
    Mode, SinkConfig, SubscriptionConfig, SyslogConfig, SyslogTransport, WebhookConfig,
};
use crate::http::body::{BodyWatch, UpstreamBody};
use crate::upstream::pool::{Caps, Dest, Pool};
use bytes::Bytes;
use http_body_util::BodyExt;
use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

/// Delivers batches to one sink.
pub(crate) enum Deliverer {
    File(std::path::PathBuf),
    Stdout,
    Syslog(Syslog),
    Webhook(Box<Webhook>),
}

impl Deliverer {
    pub(crate) fn new(c: &SubscriptionConfig) -> Deliverer {
        match &c.sink {
            SinkConfig::File { path } => Deliverer::File(path.clone()),
            SinkConfig::Stdout => Deliverer::Stdout,
            SinkConfig::Syslog(s) => Deliverer::Syslog(Syslog::new(s)),
            SinkConfig::Webhook(w) => Deliverer::Webhook(Box::new(Webhook::new(w))),
        }
    }

    /// The most events per delivery and how long to wait for them.
    fn batching(&self) -> (usize, Duration) {
        match self {
            Deliverer::Webhook(w) => (w.config.batch, w.config.flush_every),
            _ => (512, Duration::ZERO),
        }
    }

    /// Retries before a batch is given up (drop mode), the first back-off and the longest.
    fn retries(&self) -> (u32, Duration, Duration) {
        match self {
            Deliverer::Webhook(w) => (
                w.config.max_retries,
                w.config.retry_backoff,
                w.config.max_backoff,
            ),
            _ => (3, Duration::from_millis(100), Duration::from_secs(5)),
        }
    }

    async fn deliver(&mut self, name: &str, batch: &[Item]) -> Result<(), String> {
        match self {
            Deliverer::File(path) => {
                let mut text = String::with_capacity(batch.iter().map(|i| i.line.len() + 1).sum());
                for i in batch {
                    text.push_str(&i.line);
                    text.push('\n');
                }
                let path = path.clone();
                blocking(move || {
                    let mut f = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&path)
                        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
                    f.write_all(text.as_bytes())
                        .map_err(|e| format!("cannot write to {}: {e}", path.display()))
                })
                .await
            }
            Deliverer::Stdout => {
                let mut text = String::new();
                for i in batch {
                    text.push_str(&i.line);
                    text.push('\n');
                }
                blocking(move || {
                    let mut out = std::io::stdout().lock();
                    out.write_all(text.as_bytes())
                        .and_then(|()| out.flush())
                        .map_err(|e| format!("cannot write to standard output: {e}"))
                })
                .await
            }
            Deliverer::Syslog(s) => s.send(batch).await,
            Deliverer::Webhook(w) => {
                let mut body = String::with_capacity(
                    64 + batch.iter().map(|i| i.line.len() + 1).sum::<usize>(),
                );
                body.push_str("{\"subscription\":");
                body.push_str(&serde_json::Value::from(name).to_string());
                body.push_str(",\"events\":[");
                for (n, i) in batch.iter().enumerate() {
                    if n > 0 {
                        body.push(',');
                    }
                    body.push_str(&i.line);
                }
                body.push_str("]}");
                w.post(Bytes::from(body)).await
            }
        }
    }
}

/// Runs `f` on a blocking thread; a panic in it is a failed delivery, not a lost task.
async fn blocking(f: impl FnOnce() -> Result<(), String> + Send + 'static) -> Result<(), String> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(format!("the writer stopped: {e}")))
}

/// A random wait up to `min(max, first * 2^attempt)` (full jitter).
pub(crate) fn backoff(attempt: u32, first: Duration, max: Duration) -> Duration {
    let ceiling = first
        .saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX))
        .min(max);
    ceiling.mul_f64(fastrand::f64())
}

/// Delivers `sink`'s queue until the sink is closed and empty.
pub(crate) async fn run(sink: Arc<Sink>, mut deliverer: Deliverer, log: Weak<EventLog>) {
    let (batch_size, flush_every) = deliverer.batching();
    let (max_retries, first, max) = deliverer.retries();
    let mut batch: Vec<Item> = Vec::with_capacity(batch_size.min(1024));
    let mut failing_since: Option<Instant> = None;
    loop {
        if sink.queue.len() == 0 {
            if sink.closed.load(Ordering::Acquire) {
                return;
            }
            sink.queue
                .wait_for(1, Instant::now() + Duration::from_secs(1))
                .await;
            continue;
        }
        if batch_size > 1 && !sink.closed.load(Ordering::Acquire) {
            sink.queue
                .wait_for(batch_size, Instant::now() + flush_every)
                .await;
        }
        sink.queue.take(batch_size, &mut batch);
        let n = batch.len() as u64;
        sink.counters.in_flight.store(n, Ordering::Relaxed);
        let mut attempt = 0u32;
        loop {
            match deliverer.deliver(&sink.name, &batch).await {
                Ok(()) => {
                    sink.counters.delivered.fetch_add(n, Ordering::Relaxed);
                    if let Some(since) = failing_since.take() {
                        tracing::info!(target: "candor::events", subscription = %sink.name, failing_for_ms = since.elapsed().as_millis() as u64, "the sink of subscription {} delivers again", sink.name);
                    }
                    sink.report_drops(&log);
                    break;
                }
                Err(e) => {
                    sink.counters.failed.fetch_add(1, Ordering::Relaxed);
                    let give_up = attempt >= max_retries
                        && (sink.mode() == Mode::Drop || sink.closed.load(Ordering::Acquire));
                    if failing_since.is_none() || give_up {
                        failing_since.get_or_insert_with(Instant::now);
                        tracing::warn!(
                            target: "candor::events",
                            subscription = %sink.name,
                            sink = sink.config().sink.kind(),
                            events = n,
                            attempt = attempt + 1,
                            error = %e,
                            "the sink of subscription {} failed: {e}; {}",
                            sink.name,
                            if give_up { "the batch is dropped (counted)" } else { "retrying with back-off" }
                        );
                    }
                    if give_up {
                        sink.count_dropped(n);
                        break;
                    }
                    tokio::time::sleep(backoff(attempt, first, max)).await;
                    attempt = attempt.saturating_add(1);
                }
            }
        }
        sink.counters.in_flight.store(0, Ordering::Relaxed);
        batch.clear();
    }
}

// ------------------------------------------------------------------ syslog

/// An RFC 5424 syslog destination.
pub(crate) struct Syslog {
    config: SyslogConfig,
    udp: Option<tokio::net::UdpSocket>,
    tcp: Option<tokio::net::TcpStream>,
}

/// How long a syslog connection or send may take.
const SYSLOG_TIMEOUT: Duration = Duration::from_secs(5);

impl Syslog {
    fn new(config: &SyslogConfig) -> Syslog {
        Syslog {
            config: config.clone(),
            udp: None,
            tcp: None,
        }
    }

    async fn send(&mut self, batch: &[Item]) -> Result<(), String> {
        let address = self.config.address.clone();
        match self.config.transport {
            SyslogTransport::Udp => {
                if self.udp.is_none() {
                    let target = tokio::net::lookup_host(&address)
                        .await
                        .map_err(|e| format!("cannot resolve {address}: {e}"))?
                        .next()
                        .ok_or_else(|| format!("{address} resolves to no address"))?;
                    let local = if target.is_ipv4() {
                        "0.0.0.0:0"
                    } else {
                        "[::]:0"
                    };
                    let s = tokio::net::UdpSocket::bind(local)
                        .await
                        .map_err(|e| format!("cannot open a UDP socket: {e}"))?;
                    s.connect(target)
                        .await
                        .map_err(|e| format!("cannot send to {address}: {e}"))?;
                    self.udp = Some(s);
                }
                let Some(s) = &self.udp else {
                    return Err("no socket".into());
                };
                for i in batch {
                    let msg = rfc5424(i, &self.config);
                    let sent = tokio::time::timeout(SYSLOG_TIMEOUT, s.send(msg.as_bytes())).await;
                    match sent {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => {
                            self.udp = None;
                            return Err(format!("cannot send to udp://{address}: {e}"));
                        }
                        Err(_) => return Err(format!("udp://{address}: the send timed out")),
                    }
                }
                Ok(())
            }
            SyslogTransport::Tcp => {
                if self.tcp.is_none() {
                    let s = tokio::time::timeout(
                        SYSLOG_TIMEOUT,
                        tokio::net::TcpStream::connect(&address),
                    )
                    .await
                    .map_err(|_| format!("cannot connect to tcp://{address} within 5 s"))?
                    .map_err(|e| format!("cannot connect to tcp://{address}: {e}"))?;
                    let _ = s.set_nodelay(true);
                    self.tcp = Some(s);
                }
                let mut framed = Vec::new();
                for i in batch {
                    let msg = rfc5424(i, &self.config);
                    framed.extend_from_slice(format!("{} ", msg.len()).as_bytes());
                    framed.extend_from_slice(msg.as_bytes());
                }
                let Some(s) = &mut self.tcp else {
                    return Err("no connection".into());
                };
                let written = tokio::time::timeout(SYSLOG_TIMEOUT, s.write_all(&framed)).await;
                match written {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => {
                        self.tcp = None;
                        Err(format!("cannot send to tcp://{address}: {e}"))
                    }
                    Err(_) => {
                        self.tcp = None;
                        Err(format!("tcp://{address}: the send timed out"))
                    }
                }
            }
        }
    }
}

/// This machine's name for syslog's HOSTNAME, or `-`.
fn hostname() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::fs::read_to_string("/etc/hostname"))
            .unwrap_or_default();
        let name = name.trim();
        if name.is_empty() || name.len() > 255 || !name.bytes().all(|b| (33..=126).contains(&b)) {
            "-".to_owned()
        } else {
            name.to_owned()
        }
    })
}

/// One event as an RFC 5424 message:
/// `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [origin ...] MSG`, the event's time as
/// TIMESTAMP, its type as MSGID and its JSON line as MSG.
pub(crate) fn rfc5424(item: &Item, c: &SyslogConfig) -> String {
    #[derive(serde::Deserialize)]
    struct Head<'a> {
        #[serde(borrow)]
        time: Option<&'a str>,
    }
    let time = serde_json::from_str::<Head<'_>>(&item.line)
        .ok()
        .and_then(|h| h.time)
        .unwrap_or("-");
    let pri = u32::from(c.facility) * 8 + u32::from(item.severity.syslog());
    format!(
        "<{pri}>1 {time} {host} {app} {pid} {msgid} [origin software=\"candor\" swVersion=\"{version}\"] {line}",
        host = hostname(),
        app = c.app_name,
        pid = std::process::id(),
        msgid = item.kind,
        version = env!("CARGO_PKG_VERSION"),
        line = item.line,
    )
}

// ------------------------------------------------------------------ webhooks

/// The pool webhook connections are kept in (apart from the upstreams').
fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(Pool::default)
}

/// A webhook: each POST carries `X-Candor-Timestamp` (Unix seconds) and, with a secret,
/// `X-Candor-Signature: sha256=<hex>`, the HMAC-SHA256 of `<timestamp>.<body>` under the
/// secret. A receiver recomputes it and refuses a timestamp too far from its clock.
pub(crate) struct Webhook {
    pub(crate) config: WebhookConfig,
    authority: http::uri::Authority,
    path: String,
    tls: Result<Option<crate::upstream::tls::UpstreamTls>, String>,
}

impl Webhook {
    pub(crate) fn new(config: &WebhookConfig) -> Webhook {
        let authority = config
            .url
            .authority()
            .cloned()
            .unwrap_or_else(|| http::uri::Authority::from_static("localhost"));
        let authority = if authority.port_u16().is_some() {
            authority
        } else {
            let port = if config.url.scheme_str() == Some("https") {
                443
            } else {
                80
            };
            format!("{}:{port}", authority.host())
                .parse()
                .unwrap_or(authority)
        };
        let tls = if config.url.scheme_str() == Some("https") {
            crate::upstream::tls::build(&crate::upstream::tls::TlsSettings {
                ca_file: config.ca_file.clone(),
                server_name: None,
                client_cert: None,
            })
            .map(Some)
        } else {
            Ok(None)
        };
        Webhook {
            config: config.clone(),
            path: config
                .url
                .path_and_query()
                .map_or("/".to_owned(), |p| p.as_str().to_owned()),
            authority,
            tls,
        }
    }

    /// POSTs `body`, signed; `Ok` when the receiver answered 2xx.
    pub(crate) async fn post(&self, body: Bytes) -> Result<(), String> {
        let url = &self.config.url;
        let tls = self.tls.as_ref().map_err(|e| format!("{url}: {e}"))?;
        let timestamp = crate::time::unix_now().to_string();
        let mut req = http::Request::post(self.path.as_str())
            .header(
                http::header::HOST,
                url.authority().map_or("", |a| a.as_str()),
            )
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(
                http::header::USER_AGENT,
                concat!("candor/", env!("CARGO_PKG_VERSION")),
            )
            .header("X-Candor-Timestamp", timestamp.as_str());
        if let Some(secret) = &self.config.secret {
            req = req.header(
                "X-Candor-Signature",
                signature(secret.expose(), &timestamp, &body),
            );
        }
        let req = req
            .body(UpstreamBody::held(body, BodyWatch::new()))
            .map_err(|e| format!("cannot build the request to {url}: {e}"))?;
        let caps = Caps {
            max_connections: 4,
            max_queue: 16,
            queue_wait: self.config.timeout,
            connect_timeout: self.config.timeout.min(Duration::from_secs(5)),
        };
        let exchange = async {
            let resp = pool()
                .send(
                    Dest {
                        authority: &self.authority,
                        tls: tls.as_ref(),
                    },
                    req,
                    caps,
                )
                .await
                .map_err(|f| match f.error {
                    crate::upstream::pool::SendError::Connect(c) => c,
                    crate::upstream::pool::SendError::Exchange(e) => {
                        format!("the exchange failed ({e})")
                    }
                    crate::upstream::pool::SendError::Overloaded { .. } => {
                        "every connection to it is busy".to_owned()
                    }
                })?;
            let status = resp.status();
            // Read to the end, so that the connection goes back to the pool.
            let _ = resp.into_body().collect().await;
            if status.is_success() {
                Ok(())
            } else {
                Err(format!("answered {}", status.as_u16()))
            }
        };
        match tokio::time::timeout(self.config.timeout, exchange).await {
            Ok(r) => r.map_err(|e| format!("POST {url}: {e}")),
            Err(_) => Err(format!(
                "POST {url}: no answer within {}",
                crate::time::human_duration(self.config.timeout)
            )),
        }
    }
}

/// `sha256=<hex of HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub(crate) fn signature(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(timestamp.as_bytes());
    ctx.update(b".");
    ctx.update(body);
    let tag = ctx.sign();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for b in tag.as_ref() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Severity, kinds};

    #[test]
    fn a_syslog_message_is_rfc5424() {
        let item = Item {
            line: Arc::from(
                r#"{"id":"ev1","time":"2026-11-28T10:00:05.042Z","type":"config.rejected","severity":"warning"}"#,
            ),
            kind: kinds::CONFIG_REJECTED,
            severity: Severity::Warning,
        };
        let c = SyslogConfig {
            transport: SyslogTransport::Udp,
            address: "127.0.0.1:514".into(),
            app_name: "candor".into(),
            facility: 16,
        };
        let msg = rfc5424(&item, &c);
        let expected_head = format!(
            "<132>1 2026-11-28T10:00:05.042Z {} candor {} config.rejected [origin software=\"candor\" swVersion=\"",
            hostname(),
            std::process::id()
        );
        assert!(msg.starts_with(&expected_head), "{msg}");
        assert!(msg.ends_with(&*item.line));
    }

    #[test]
    fn signatures_are_hmac_sha256_of_timestamp_dot_body() {
        // RFC 4231 test case 2 shape: key "Jefe"; message "1700000000.{}".
        let s = signature(b"Jefe", "1700000000", b"{}");
        assert!(s.starts_with("sha256="));
        assert_eq!(s.len(), 7 + 64);
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"Jefe");
        let tag = ring::hmac::sign(&key, b"1700000000.{}");
        let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(s, format!("sha256={hex}"));
    }

    #[test]
    fn backoff_is_jittered_under_a_doubling_ceiling() {
        for attempt in 0..40 {
            let d = backoff(attempt, Duration::from_millis(100), Duration::from_secs(5));
            assert!(d <= Duration::from_millis(100) * 2u32.pow(attempt.min(6)));
            assert!(d <= Duration::from_secs(5));
        }
    }
}
