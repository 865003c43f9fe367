//! Alerts (`[alerts]`): built-in rules watching the event stream, each raising an alert with
//! a type (System, Security, Upstream, Config) and a severity (Critical, Warning, Info),
//! told by webhook and by e-mail, and recorded as an `alert.raised` event.
//!
//! | rule | raised on | type, severity |
//! | --- | --- | --- |
//! | `api_restarted` | `api.restarted`: "API has restarted due to an error" | System, Warning |
//! | `config_rejected` | `config.rejected` | Config, Warning |
//! | `upstream_unhealthy` | `upstream.down` with `healthy_targets` 0 | Upstream, Critical |
//! | `error_rate` | a route's answers of status 500 or more (events of severity `error` or worse) over all its answers (`request.completed`, `request.rejected`) in the last `window`, above `threshold`, once `min_requests` were answered | Upstream, Warning |
//! | `certificate_expiry` | the TLS certificate (`[server.tls] cert`) expires within `within` (checked at start, on each reload and hourly) | System, Warning (Critical within a day or expired) |
//!
//! An alert about the same thing (the rule and what it is about: a route, an upstream, a
//! file) is told at most once per `repeat_every`; the occurrences in between are counted
//! and told, with the time of the first, in the next one.
//!
//! The rules run on the event log's writer thread and never wait: a raised alert goes into
//! a bounded queue (full: the alert is dropped and counted) for a task of the sinks' runtime
//! that delivers it.

use super::sinks::Webhook;
use super::subscriptions::runtime;
use super::{Consumer, Event, EventLog, Severity, Written, kinds};
use crate::config::{AlertsConfig, Config, EmailConfig};
use serde_json::{Map, Value, json};
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

/// What an alert is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AlertType {
    /// The gateway itself: restarts, certificates.
    System,
    /// Authentication and access.
    #[allow(dead_code)]
    Security,
    /// Upstreams and the answers they give.
    Upstream,
    /// The configuration.
    Config,
}

impl AlertType {
    fn as_str(self) -> &'static str {
        match self {
            AlertType::System => "System",
            AlertType::Security => "Security",
            AlertType::Upstream => "Upstream",
            AlertType::Config => "Config",
        }
    }
}

/// How much an alert matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AlertSeverity {
    /// The API is not serving, or will stop.
    Critical,
    /// Something needs an operator.
    Warning,
    /// Worth knowing.
    #[allow(dead_code)]
    Info,
}

impl AlertSeverity {
    fn as_str(self) -> &'static str {
        match self {
            AlertSeverity::Critical => "Critical",
            AlertSeverity::Warning => "Warning",
            AlertSeverity::Info => "Info",
        }
    }

    fn event_severity(self) -> Severity {
        match self {
            AlertSeverity::Critical => Severity::Critical,
            AlertSeverity::Warning => Severity::Warning,
            AlertSeverity::Info => Severity::Info,
        }
    }
}

/// An alert a rule raised.
#[derive(Clone, Debug)]
pub(crate) struct Alert {
    /// The rule's name.
    pub(crate) rule: &'static str,
    /// What it is about, for deduplication: the rule and a route, an upstream, a file.
    pub(crate) key: String,
    /// The alert, in words.
    pub(crate) title: String,
    pub(crate) kind: AlertType,
    pub(crate) severity: AlertSeverity,
    /// The values involved.
    pub(crate) facts: Map<String, Value>,
    /// What to do.
    pub(crate) advice: String,
}

/// An alert to tell: with the first time it was seen and how often since it was last told.
#[derive(Clone, Debug)]
struct Raised {
    alert: Alert,
    first: SystemTime,
    count: u64,
}

impl Raised {
    fn to_json(&self, repeat_every: Duration) -> Value {
        let a = &self.alert;
        json!({
            "rule": a.rule,
            "title": a.title,
            "type": a.kind.as_str(),
            "severity": a.severity.as_str(),
            "about": a.key,
            "facts": a.facts,
            "first_seen": crate::time::rfc3339_millis(crate::time::unix_millis(self.first)),
            "count": self.count,
            "repeat_every": crate::duration::text(repeat_every),
            "advice": a.advice,
            "host": host(),
        })
    }

    /// The e-mail: subject and plain-text body.
    fn email(&self, repeat_every: Duration) -> (String, String) {
        let a = &self.alert;
        let subject = format!(
            "[candor] {} ({}): {}",
            a.severity.as_str(),
            a.kind.as_str(),
            a.title
        );
        let mut body = String::new();
        body.push_str(&format!("candor on {} raised an alert.\n\n", host()));
        body.push_str(&format!("Alert:     {}\n", a.title));
        body.push_str(&format!("Type:      {}\n", a.kind.as_str()));
        body.push_str(&format!("Severity:  {}\n", a.severity.as_str()));
        body.push_str(&format!("Rule:      {}\n", a.rule));
        body.push_str(&format!(
            "First:     {}\n",
            crate::time::rfc3339_millis(crate::time::unix_millis(self.first))
        ));
        body.push_str(&format!(
            "Count:     {} since then (the same alert is sent at most every {})\n",
            self.count,
            crate::duration::text(repeat_every)
        ));
        if !a.facts.is_empty() {
            body.push_str("\nFacts:\n");
            for (k, v) in &a.facts {
                let v = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let v = v.replace('\n', "\n      ");
                body.push_str(&format!("  {k}: {v}\n"));
            }
        }
        body.push_str("\nWhat to do:\n");
        body.push_str(&a.advice);
        body.push('\n');
        (subject, body)
    }
}

fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "this host".into())
}

/// Counters of the alerts, for `/stats`.
#[derive(Debug, Default)]
struct AlertCounters {
    raised: AtomicU64,
    suppressed: AtomicU64,
    delivered: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
}

/// When an alert was last told and what happened since.
#[derive(Debug)]
struct Seen {
    first: Option<SystemTime>,
    count: u64,
    last_sent: Instant,
}

/// A route's answers in the error-rate window: per-second buckets (second, answered,
/// errors), and whether the rate was above the threshold at the last look.
#[derive(Debug, Default)]
struct Window {
    buckets: VecDeque<(u64, u64, u64)>,
    total: u64,
    errors: u64,
    above: bool,
}

#[derive(Debug, Default)]
struct RuleState {
    seen: HashMap<String, Seen>,
    windows: HashMap<String, Window>,
}

/// The most alerts remembered for deduplication, and waiting to be told.
const MAX_SEEN: usize = 10_000;
const QUEUE: usize = 256;

/// The alert rules of one configuration: a consumer of the event log.
#[derive(Debug)]
pub(crate) struct Alerts {
    config: AlertsConfig,
    state: Mutex<RuleState>,
    tx: tokio::sync::mpsc::Sender<Raised>,
    counters: Arc<AlertCounters>,
    /// The TLS certificate file checked for expiry.
    cert: Mutex<Option<PathBuf>>,
    started: Instant,
}

impl Consumer for Alerts {
    fn take(&self, batch: &[Written<'_>]) {
        for w in batch {
            self.look(w);
        }
    }

    /// Every rule but the error rate reads the event's facts; the error rate needs only a
    /// request's route and severity (and requests are the bulk of the log).
    fn reads_lines(&self, kind: &str) -> bool {
        !matches!(kind, kinds::REQUEST_COMPLETED | kinds::REQUEST_REJECTED)
    }
}

impl Alerts {
    /// Looks at one event.
    fn look(&self, w: &Written) {
        let rules = &self.config.rules;
        match w.kind {
            kinds::API_RESTARTED if rules.api_restarted => {
                let facts = facts_of(
                    w,
                    &[
                        "ended_by",
                        "signal",
                        "signal_name",
                        "exit_status",
                        "restarts",
                        "previous_pid",
                        "ended_at",
                        "reason",
                    ],
                );
                self.raise(Alert {
                    rule: "api_restarted",
                    key: "api_restarted".into(),
                    title: "API has restarted due to an error".into(),
                    kind: AlertType::System,
                    severity: AlertSeverity::Warning,
                    facts,
                    advice: "The gateway's worker process ended abnormally and its supervisor started it again; requests in flight then were cut off. Read the gateway's log just before the restart for the cause (a panic names its place; a signal such as SIGKILL may be the out-of-memory killer), and `candor explain` a request id from that time. If it happens again, keep the log and report it.".into(),
                });
            }
            kinds::SHARED_STATE_DOWN if rules.shared_state_unreachable => {
                let facts = facts_of(w, &["store", "address", "cause", "on_failure", "meanwhile"]);
                let closed = facts.get("on_failure").and_then(Value::as_str) == Some("closed");
                let address = facts
                    .get("address")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
                self.raise(Alert {
                    rule: "shared_state_unreachable",
                    key: format!("shared_state_unreachable:{address}"),
                    title: "Shared state (Redis) unreachable".into(),
                    kind: AlertType::System,
                    severity: if closed {
                        AlertSeverity::Critical
                    } else {
                        AlertSeverity::Warning
                    },
                    facts,
                    advice: if closed {
                        "The Redis server the gateways share rate limits through does not answer, and `on_failure = \"closed\"`: rate-limited routes answer 503 rate_limit_store_unavailable until it is back. Start or fix the server at the address above; the gateway tries it every second and needs no restart."
                    } else {
                        "The Redis server the gateways share rate limits through does not answer; each gateway counts rate limits on its own meanwhile (`on_failure = \"open\"`), so together they admit more than the limit. Start or fix the server at the address above; the gateway tries it every second and needs no restart."
                    }
                    .into(),
                });
            }
            kinds::CONFIG_REJECTED if rules.config_rejected => {
                let facts = facts_of(w, &["file", "running_generation", "report"]);
                let file = facts
                    .get("file")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
                self.raise(Alert {
                    rule: "config_rejected",
                    key: format!("config_rejected:{file}"),
                    title: "A configuration change was rejected".into(),
                    kind: AlertType::Config,
                    severity: AlertSeverity::Warning,
                    facts,
                    advice: format!(
                        "The running configuration stays in force; the change is not applied. Run `candor check --config {file}` to see every problem with its line and column, fix the file, and save it: it is reloaded on change (or send SIGHUP)."
                    ),
                });
            }
            kinds::UPSTREAM_DOWN if rules.upstream_unhealthy => {
                let facts = facts_of(
                    w,
                    &[
                        "upstream",
                        "route",
                        "target",
                        "healthy_targets",
                        "targets",
                        "cause",
                        "reason",
                    ],
                );
                if facts.get("healthy_targets").and_then(Value::as_u64) != Some(0) {
                    return;
                }
                let upstream = facts
                    .get("upstream")
                    .and_then(Value::as_str)
                    .or(w.route)
                    .unwrap_or("")
                    .to_owned();
                self.raise(Alert {
                    rule: "upstream_unhealthy",
                    key: format!("upstream_unhealthy:{upstream}"),
                    title: format!("Upstream {upstream} has no healthy target"),
                    kind: AlertType::Upstream,
                    severity: AlertSeverity::Critical,
                    facts,
                    advice: "Every target of this upstream failed its health checks: its routes answer no_healthy_upstream (503). Check that the upstream's servers run and answer the health check path from the gateway's host; `/upstreams` on the admin API shows each target's state.".into(),
                });
            }
            kinds::REQUEST_COMPLETED | kinds::REQUEST_REJECTED => {
                if let (Some(rule), Some(route)) = (&self.config.rules.error_rate, &w.route) {
                    self.count_answer(route, w.severity >= Severity::Error, rule);
                }
            }
            _ => {}
        }
    }

    /// Counts one answer of `route` and raises the error-rate alert when the rate goes
    /// above the threshold.
    fn count_answer(&self, route: &str, error: bool, rule: &crate::config::ErrorRateRule) {
        let now = self.started.elapsed().as_secs();
        let window_s = rule.window.as_secs().max(1);
        let crossed = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let w = match state.windows.get_mut(route) {
                Some(w) => w,
                None => state.windows.entry(route.to_owned()).or_default(),
            };
            match w.buckets.back_mut() {
                Some(b) if b.0 == now => {
                    b.1 += 1;
                    b.2 += u64::from(error);
                }
                _ => w.buckets.push_back((now, 1, u64::from(error))),
            }
            w.total += 1;
            w.errors += u64::from(error);
            while let Some(&(t, total, errors)) = w.buckets.front() {
                if t + window_s > now {
                    break;
                }
                w.buckets.pop_front();
                w.total -= total;
                w.errors -= errors;
            }
            let above = w.total >= rule.min_requests
                && (w.errors as f64) > rule.threshold * (w.total as f64);
            let crossed = above && !w.above;
            w.above = above;
            crossed.then_some((w.total, w.errors))
        };
        if let Some((total, errors)) = crossed {
            let mut facts = Map::new();
            facts.insert("route".into(), route.into());
            facts.insert("answered".into(), total.into());
            facts.insert("errors".into(), errors.into());
            facts.insert(
                "error_rate".into(),
                json!(((errors as f64 / total as f64) * 1000.0).round() / 1000.0),
            );
            facts.insert("threshold".into(), json!(rule.threshold));
            facts.insert("window".into(), crate::duration::text(rule.window).into());
            self.raise(Alert {
                rule: "error_rate",
                key: format!("error_rate:{route}"),
                title: format!(
                    "Route {route}: {errors} of {total} answers in the last {} were errors",
                    crate::duration::text(rule.window)
                ),
                kind: AlertType::Upstream,
                severity: AlertSeverity::Warning,
                facts,
                advice: "More of this route's requests than the threshold were answered with status 500 or more. `candor explain <request id>` or the admin API's /events?type=request.completed&severity=error tell which stage or upstream failed them; check the upstream's health and its own logs.".into(),
            });
        }
    }

    /// Raises `alert`, unless the same alert was told less than `repeat_every` ago (then
    /// it is counted, and told with the next one).
    pub(crate) fn raise(&self, alert: Alert) {
        let raised = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if state.seen.len() >= MAX_SEEN && !state.seen.contains_key(&alert.key) {
                let repeat = self.config.repeat_every;
                state.seen.retain(|_, s| s.last_sent.elapsed() < repeat);
            }
            let now = SystemTime::now();
            let due = state
                .seen
                .get(&alert.key)
                .is_none_or(|s| s.last_sent.elapsed() >= self.config.repeat_every);
            let seen = state.seen.entry(alert.key.clone()).or_insert(Seen {
                first: None,
                count: 0,
                last_sent: Instant::now(),
            });
            let first = *seen.first.get_or_insert(now);
            seen.count += 1;
            if !due {
                self.counters.suppressed.fetch_add(1, Ordering::Relaxed);
                return;
            }
            let count = seen.count;
            seen.first = None;
            seen.count = 0;
            seen.last_sent = Instant::now();
            Raised {
                alert,
                first,
                count,
            }
        };
        self.counters.raised.fetch_add(1, Ordering::Relaxed);
        if self.tx.try_send(raised).is_err() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::error!(target: "candor::alerts", "an alert was dropped: {QUEUE} alerts wait to be delivered already");
        }
    }

    /// `/stats`'s `alerts`.
    pub(crate) fn stats_json(&self) -> Value {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        json!({
            "raised": get(&c.raised),
            "suppressed": get(&c.suppressed),
            "delivered": get(&c.delivered),
            "failed": get(&c.failed),
            "dropped": get(&c.dropped),
        })
    }

    /// Checks the TLS certificate's expiry (on start, reload and hourly).
    fn check_certificate(&self) {
        let Some(within) = self.config.rules.certificate_expiry else {
            return;
        };
        let Some(path) = self.cert.lock().ok().and_then(|c| c.clone()) else {
            return;
        };
        let not_after = match crate::config::read_file(&path)
            .ok()
            .and_then(|pem| first_certificate_not_after(&pem))
        {
            Some(t) => t,
            None => return,
        };
        let left = not_after - crate::time::unix_now();
        if left > within.as_secs() as i64 {
            return;
        }
        let mut facts = Map::new();
        facts.insert("cert".into(), path.display().to_string().into());
        facts.insert("not_after".into(), crate::time::rfc3339(not_after).into());
        facts.insert("seconds_left".into(), left.into());
        let when = if left <= 0 {
            format!("expired at {}", crate::time::rfc3339(not_after))
        } else {
            format!(
                "expires in {} at {}",
                crate::time::human_seconds(left),
                crate::time::rfc3339(not_after)
            )
        };
        self.raise(Alert {
            rule: "certificate_expiry",
            key: format!("certificate_expiry:{}", path.display()),
            title: format!("The TLS certificate {when}"),
            kind: AlertType::System,
            severity: if left < 86_400 {
                AlertSeverity::Critical
            } else {
                AlertSeverity::Warning
            },
            facts,
            advice: format!(
                "Renew the certificate and write it to {} ([server.tls] cert), with its key; the gateway loads it on the next reload (save the configuration file or send SIGHUP). Clients refuse an expired certificate.",
                path.display()
            ),
        });
    }
}

/// The facts of the event in `w` named in `names`.
fn facts_of(w: &Written, names: &[&str]) -> Map<String, Value> {
    let mut out = Map::new();
    let Ok(Value::Object(mut ev)) = serde_json::from_str::<Value>(&w.line) else {
        return out;
    };
    let Some(Value::Object(mut facts)) = ev.remove("facts") else {
        return out;
    };
    for n in names {
        if let Some(v) = facts.remove(*n) {
            out.insert((*n).to_owned(), v);
        }
    }
    out
}

/// Builds the alert rules of `config`, keeping what `previous` remembered (which alerts
/// were told when); `None` when the configuration has no `[alerts]`.
pub(crate) fn apply(
    log: &Arc<EventLog>,
    config: &Config,
    previous: Option<Arc<Alerts>>,
) -> Option<Arc<Alerts>> {
    let c = config.alerts.as_ref()?;
    let state = previous
        .map(|p| std::mem::take(&mut *p.state.lock().unwrap_or_else(|e| e.into_inner())))
        .unwrap_or_default();
    let (tx, rx) = tokio::sync::mpsc::channel(QUEUE);
    let alerts = Arc::new(Alerts {
        config: c.clone(),
        state: Mutex::new(state),
        tx,
        counters: Arc::default(),
        cert: Mutex::new(config.server.tls.as_ref().map(|t| t.cert.clone())),
        started: Instant::now(),
    });
    let delivery = Delivery {
        webhook: c.webhook.as_ref().map(Webhook::new),
        email: c.email.clone(),
        repeat_every: c.repeat_every,
        counters: alerts.counters.clone(),
        log: Arc::downgrade(log),
    };
    runtime().spawn(delivery.run(rx));
    runtime().spawn(check_certificates(Arc::downgrade(&alerts)));
    Some(alerts)
}

/// Checks the certificate now and every hour, while the rules are in force.
async fn check_certificates(alerts: Weak<Alerts>) {
    loop {
        match alerts.upgrade() {
            Some(a) => a.check_certificate(),
            None => return,
        }
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}

/// Tells raised alerts where the configuration says.
struct Delivery {
    webhook: Option<Webhook>,
    email: Option<EmailConfig>,
    repeat_every: Duration,
    counters: Arc<AlertCounters>,
    log: Weak<EventLog>,
}

impl Delivery {
    async fn run(self, mut rx: tokio::sync::mpsc::Receiver<Raised>) {
        while let Some(r) = rx.recv().await {
            let mut to = Vec::new();
            if self.webhook.is_some() {
                to.push("webhook");
            }
            if self.email.is_some() {
                to.push("email");
            }
            if let Some(log) = self.log.upgrade() {
                let a = &r.alert;
                log.emit(
                    Event::new(kinds::ALERT_RAISED, a.severity.event_severity())
                        .fact("rule", a.rule)
                        .fact("title", a.title.as_str())
                        .fact("alert_type", a.kind.as_str())
                        .fact("alert_severity", a.severity.as_str())
                        .fact("about", a.key.as_str())
                        .fact("facts", Value::Object(a.facts.clone()))
                        .fact(
                            "first_seen",
                            crate::time::rfc3339_millis(crate::time::unix_millis(r.first)),
                        )
                        .fact("count", r.count)
                        .fact("to", to.clone()),
                );
            }
            tracing::warn!(target: "candor::alerts", rule = r.alert.rule, alert_type = r.alert.kind.as_str(), severity = r.alert.severity.as_str(), count = r.count, "alert: {}", r.alert.title);
            let (raised, every) = (&r, self.repeat_every);
            if let Some(w) = &self.webhook {
                let body = bytes::Bytes::from(json!({ "alert": r.to_json(every) }).to_string());
                let retries = (
                    w.config.max_retries,
                    w.config.retry_backoff,
                    w.config.max_backoff,
                );
                self.tell("webhook", || w.post(body.clone()), retries).await;
            }
            if let Some(e) = &self.email {
                let retries = (3, Duration::from_millis(500), Duration::from_secs(30));
                self.tell("email", || send_email(e, raised, every), retries)
                    .await;
            }
        }
    }

    /// Tries `send` up to `1 + retries` times, with back-off.
    async fn tell<F, Fut>(
        &self,
        how: &str,
        send: F,
        (retries, first, max): (u32, Duration, Duration),
    ) where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<(), String>>,
    {
        let mut attempt = 0;
        loop {
            match send().await {
                Ok(()) => {
                    self.counters.delivered.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Err(e) => {
                    self.counters.failed.fetch_add(1, Ordering::Relaxed);
                    if attempt >= retries {
                        tracing::error!(target: "candor::alerts", via = how, error = %e, attempts = attempt + 1, "an alert could not be delivered by {how}: {e}");
                        return;
                    }
                    tracing::warn!(target: "candor::alerts", via = how, error = %e, attempt = attempt + 1, "an alert's delivery by {how} failed: {e}; retrying");
                    tokio::time::sleep(super::sinks::backoff(attempt, first, max)).await;
                    attempt += 1;
                }
            }
        }
    }
}

/// Mails `r` through the configured SMTP server.
async fn send_email(c: &EmailConfig, r: &Raised, repeat_every: Duration) -> Result<(), String> {
    use lettre::message::header::ContentType;
    use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
    let (subject, body) = r.email(repeat_every);
    let mut message = Message::builder()
        .from(
            c.from
                .parse()
                .map_err(|e| format!("from {}: {e}", c.from))?,
        )
        .subject(subject)
        .header(ContentType::TEXT_PLAIN);
    for to in &c.to {
        message = message.to(to.parse().map_err(|e| format!("to {to}: {e}"))?);
    }
    let message = message
        .body(body)
        .map_err(|e| format!("cannot build the e-mail: {e}"))?;
    let tls = if c.implicit_tls || c.starttls {
        let mut params = TlsParameters::builder(c.host.clone());
        // The system's CAs, or the configured file's only.
        if let Some(ca) = &c.ca_file {
            let pem = crate::config::read_file(ca)
                .map_err(|e| format!("cannot read {}: {e}", ca.display()))?;
            params = params
                .certificate_store(CertificateStore::None)
                .add_root_certificate(
                    Certificate::from_pem(&pem).map_err(|e| format!("{}: {e}", ca.display()))?,
                );
        }
        let params = params
            .build_rustls()
            .map_err(|e| format!("TLS to {}: {e}", c.host))?;
        if c.implicit_tls {
            Tls::Wrapper(params)
        } else {
            Tls::Required(params)
        }
    } else {
        Tls::None
    };
    let mut transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(c.host.as_str())
        .port(c.port)
        .tls(tls)
        .timeout(Some(c.timeout));
    if let (Some(user), Some(password)) = (&c.username, &c.password) {
        transport =
            transport.credentials(lettre::transport::smtp::authentication::Credentials::new(
                user.clone(),
                String::from_utf8_lossy(password.expose()).into_owned(),
            ));
    }
    let transport = transport.build();
    match tokio::time::timeout(c.timeout, transport.send(message)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("smtp://{}:{}: {e}", c.host, c.port)),
        Err(_) => Err(format!(
            "smtp://{}:{}: no answer within {}",
            c.host,
            c.port,
            crate::time::human_duration(c.timeout)
        )),
    }
}

// ------------------------------------------------------------------ certificates

/// The notAfter (Unix seconds) of the first certificate in `pem`.
fn first_certificate_not_after(pem: &[u8]) -> Option<i64> {
    let der = rustls_pemfile::certs(&mut &pem[..]).next()?.ok()?;
    not_after(der.as_ref())
}

/// One DER element: its tag, its content and what follows it.
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// A certificate's notAfter (RFC 5280 §4.1: Certificate → TBSCertificate → validity), in
/// Unix seconds.
fn not_after(cert: &[u8]) -> Option<i64> {
    let (0x30, cert, _) = der(cert)? else {
        return None;
    };
    let (0x30, mut tbs, _) = der(cert)? else {
        return None;
    };
    // [0] version, when present.
    if tbs.first() == Some(&0xa0) {
        tbs = der(tbs)?.2;
    }
    // serialNumber, signature, issuer.
    for _ in 0..3 {
        tbs = der(tbs)?.2;
    }
    let (0x30, validity, _) = der(tbs)? else {
        return None;
    };
    let after = der(validity)?.2;
    let (tag, time, _) = der(after)?;
    let text = std::str::from_utf8(time).ok()?.strip_suffix('Z')?;
    let (year, rest) = match tag {
        // UTCTime: YYMMDDHHMMSS; years 50 to 99 are 1950 to 1999.
        0x17 => {
            let yy: i64 = text.get(..2)?.parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, text.get(2..)?)
        }
        // GeneralizedTime: YYYYMMDDHHMMSS.
        0x18 => (text.get(..4)?.parse().ok()?, text.get(4..)?),
        _ => return None,
    };
    let field = |i: usize| -> Option<i64> { rest.get(i..i + 2)?.parse().ok() };
    let (month, day, hour, minute, second) =
        (field(0)?, field(2)?, field(4)?, field(6)?, field(8)?);
    Some(
        crate::time::days_from_civil(year, month, day) * 86_400
            + hour * 3600
            + minute * 60
            + second,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AlertRules, ErrorRateRule};

    fn alerts(repeat_every: Duration) -> (Arc<Alerts>, tokio::sync::mpsc::Receiver<Raised>) {
        let (tx, rx) = tokio::sync::mpsc::channel(QUEUE);
        let alerts = Arc::new(Alerts {
            config: AlertsConfig {
                repeat_every,
                rules: AlertRules {
                    error_rate: Some(ErrorRateRule {
                        threshold: 0.5,
                        window: Duration::from_secs(60),
                        min_requests: 4,
                    }),
                    ..AlertRules::default()
                },
                webhook: None,
                email: None,
            },
            state: Mutex::default(),
            tx,
            counters: Arc::default(),
            cert: Mutex::new(None),
            started: Instant::now(),
        });
        (alerts, rx)
    }

    fn written<'a>(
        kind: &'static str,
        severity: Severity,
        route: Option<&'a str>,
        facts: Value,
    ) -> Written<'a> {
        Written {
            kind,
            severity,
            route,
            code: None,
            line: Arc::from(json!({ "id": "ev", "type": kind, "facts": facts }).to_string()),
        }
    }

    #[test]
    fn a_restart_raises_api_has_restarted_due_to_an_error() {
        let (a, mut rx) = alerts(Duration::from_secs(3600));
        a.take(&[written(
            kinds::API_RESTARTED,
            Severity::Warning,
            None,
            json!({ "signal": "SIGSEGV", "exit_status": null, "restarts": 1 }),
        )]);
        let r = rx.try_recv().unwrap();
        assert_eq!(r.alert.title, "API has restarted due to an error");
        assert_eq!(r.alert.kind, AlertType::System);
        assert_eq!(r.alert.severity, AlertSeverity::Warning);
        assert_eq!(r.alert.facts["signal"], "SIGSEGV");
        assert_eq!(r.count, 1);
        let (subject, body) = r.email(Duration::from_secs(3600));
        assert_eq!(
            subject,
            "[candor] Warning (System): API has restarted due to an error"
        );
        assert!(body.contains("signal: SIGSEGV"), "{body}");
        assert!(body.contains("What to do:"), "{body}");
    }

    #[test]
    fn a_repeat_within_the_interval_is_counted_and_told_with_the_next() {
        let (a, mut rx) = alerts(Duration::from_millis(200));
        let ev = written(kinds::API_RESTARTED, Severity::Warning, None, json!({}));
        a.take(&[ev.clone(), ev.clone(), ev.clone()]);
        assert_eq!(rx.try_recv().unwrap().count, 1);
        assert!(rx.try_recv().is_err());
        std::thread::sleep(Duration::from_millis(250));
        a.take(&[ev]);
        // The two suppressed and this one.
        assert_eq!(rx.try_recv().unwrap().count, 3);
    }

    #[test]
    fn an_upstream_with_no_healthy_target_is_critical() {
        let (a, mut rx) = alerts(Duration::from_secs(3600));
        a.take(&[written(
            kinds::UPSTREAM_DOWN,
            Severity::Warning,
            Some("r"),
            json!({ "upstream": "api", "target": "127.0.0.1:1", "healthy_targets": 1 }),
        )]);
        assert!(rx.try_recv().is_err());
        a.take(&[written(
            kinds::UPSTREAM_DOWN,
            Severity::Warning,
            Some("r"),
            json!({ "upstream": "api", "target": "127.0.0.1:2", "healthy_targets": 0 }),
        )]);
        let r = rx.try_recv().unwrap();
        assert_eq!(r.alert.severity, AlertSeverity::Critical);
        assert_eq!(r.alert.kind, AlertType::Upstream);
        assert_eq!(r.alert.title, "Upstream api has no healthy target");
    }

    #[test]
    fn the_error_rate_alert_is_raised_when_the_rate_crosses_the_threshold() {
        let (a, mut rx) = alerts(Duration::from_secs(3600));
        let ok = written(
            kinds::REQUEST_COMPLETED,
            Severity::Info,
            Some("r"),
            json!({}),
        );
        let bad = written(
            kinds::REQUEST_COMPLETED,
            Severity::Error,
            Some("r"),
            json!({}),
        );
        // 2 of 3: above 0.5 but under min_requests.
        a.take(&[ok.clone(), bad.clone(), bad.clone()]);
        assert!(rx.try_recv().is_err());
        a.take(std::slice::from_ref(&bad));
        let r = rx.try_recv().unwrap();
        assert_eq!(r.alert.facts["errors"], 3);
        assert_eq!(r.alert.facts["answered"], 4);
        // Still above: not raised again.
        a.take(&[bad]);
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn not_after_is_read_from_a_certificate() {
        // The black-box suite's server certificate: notAfter=Oct 29 23:24:16 2126 GMT
        // (openssl x509 -enddate), a GeneralizedTime.
        let pem = include_bytes!("../../../candor/tests/blackbox/fixtures/server.pem");
        assert_eq!(first_certificate_not_after(pem), Some(4_948_989_856));
        assert_eq!(first_certificate_not_after(b"not a pem"), None);
    }
}
