//! `[[events.subscriptions]]`: which events go where. Each subscription filters the event
//! stream (types, least severity, routes, codes) and delivers what passes to one sink (a
//! file, stdout, syslog or a webhook) through a bounded queue of its own, in `block` or
//! `drop` mode. The webhook settings are read here for `[alerts.webhook]` too.

use super::reader::{Problems, TableReader, did_you_mean};
use crate::events::{Severity, kinds};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

const SUBSCRIPTION: &[&str] = &[
    "name",
    "types",
    "severity",
    "routes",
    "codes",
    "sink",
    "mode",
    "queue",
    "max_wait",
    // file
    "path",
    // syslog
    "address",
    "app_name",
    "facility",
    // webhook
    "url",
    "secret_env",
    "secret_file",
    "ca_file",
    "batch",
    "flush_every",
    "timeout",
    "max_retries",
    "retry_backoff",
    "max_backoff",
];

/// Keys a webhook reads (a subscription's or `[alerts.webhook]`).
pub(super) const WEBHOOK: &[&str] = &[
    "url",
    "secret_env",
    "secret_file",
    "ca_file",
    "timeout",
    "max_retries",
    "retry_backoff",
    "max_backoff",
];

const SINKS: &[&str] = &["file", "stdout", "syslog", "webhook"];
const MODES: &[&str] = &["block", "drop"];

/// One `[[events.subscriptions]]` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriptionConfig {
    /// Its name, unique: in `/stats`, in logs and in `events.dropped` events.
    pub name: String,
    /// Which events it takes.
    pub filter: EventFilterConfig,
    /// Where they go.
    pub sink: SinkConfig,
    /// What happens when the sink's queue is full.
    pub mode: Mode,
    /// The most events waiting for the sink.
    pub queue: usize,
    /// In `block` mode, the longest the event log waits for room in a full queue before the
    /// sink is taken as stalled and its events are dropped (counted) until it has room again.
    pub max_wait: Duration,
    /// Where each route name in the filter was written, and the key (to check them against
    /// the routes once those are read).
    pub(crate) route_spans: Vec<(String, Range<usize>, String)>,
}

/// What a subscription takes: an event passes when each set part matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventFilterConfig {
    /// Type patterns: an exact type, `prefix.*`, or `*` (default: every type).
    pub types: Vec<String>,
    /// The least severity (default: info, everything).
    pub severity: Severity,
    /// Route names (default: any route, and events of no route).
    pub routes: Vec<String>,
    /// Catalog codes (default: any code, and events of no code).
    pub codes: Vec<String>,
}

/// A sink's behaviour when its queue is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The event log waits for room (bounded by `max_wait`): nothing is lost; the waits
    /// are counted.
    Block,
    /// The event is dropped and counted; the count is told as an `events.dropped` event
    /// once the sink delivers again.
    Drop,
}

impl Mode {
    /// `block` or `drop`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Block => "block",
            Mode::Drop => "drop",
        }
    }
}

/// Where a subscription's events go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SinkConfig {
    /// Appended to a file, one JSON line per event.
    File {
        /// The file (relative paths are against the configuration's folder).
        path: PathBuf,
    },
    /// Written to standard output, one JSON line per event.
    Stdout,
    /// Sent to a syslog server, RFC 5424.
    Syslog(SyslogConfig),
    /// POSTed in JSON batches, signed.
    Webhook(WebhookConfig),
}

impl SinkConfig {
    /// `file`, `stdout`, `syslog` or `webhook`.
    pub fn kind(&self) -> &'static str {
        match self {
            SinkConfig::File { .. } => "file",
            SinkConfig::Stdout => "stdout",
            SinkConfig::Syslog(_) => "syslog",
            SinkConfig::Webhook(_) => "webhook",
        }
    }
}

/// A syslog server and how events are labelled for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyslogConfig {
    /// `udp://host:port` (one datagram per event) or `tcp://host:port` (RFC 6587 octet
    /// counting).
    pub transport: SyslogTransport,
    /// `host:port`.
    pub address: String,
    /// APP-NAME (default `candor`).
    pub app_name: String,
    /// The facility number, 0 to 23 (default 16, `local0`).
    pub facility: u8,
}

/// How syslog messages travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyslogTransport {
    /// One datagram per message (RFC 5426).
    Udp,
    /// A stream, each message preceded by its length (RFC 6587 octet counting).
    Tcp,
}

/// A webhook: where batches are POSTed and how they are signed and retried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookConfig {
    /// `http://` or `https://` URL.
    pub url: http::Uri,
    /// The HMAC-SHA256 key the body is signed with, if any.
    pub secret: Option<Secret>,
    /// PEM CA certificates to trust for an `https://` URL (default: the system's).
    pub ca_file: Option<PathBuf>,
    /// The most events in one POST (default 100).
    pub batch: usize,
    /// The longest an event waits for its batch to fill (default 1 s).
    pub flush_every: Duration,
    /// How long one POST may take (default 10 s).
    pub timeout: Duration,
    /// In `drop` mode, tries after the first before a batch is given up (its events counted
    /// as dropped); in `block` mode a batch is tried until it is delivered.
    pub max_retries: u32,
    /// The first back-off; each retry doubles it, up to `max_backoff`, and waits a random
    /// time up to that (full jitter).
    pub retry_backoff: Duration,
    /// The longest back-off.
    pub max_backoff: Duration,
}

/// A secret read from the environment or a file: never printed (its `Debug` says where it
/// came from, not what it is).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    value: Vec<u8>,
    from: String,
}

impl Secret {
    /// The secret's bytes.
    pub(crate) fn expose(&self) -> &[u8] {
        &self.value
    }

    /// Where it came from, for messages: "environment variable X" or "file F".
    pub fn source(&self) -> &str {
        &self.from
    }

    /// A secret of `value` (tests).
    #[cfg(test)]
    pub(crate) fn of(value: &str) -> Secret {
        Secret {
            value: value.as_bytes().to_vec(),
            from: "test".into(),
        }
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret(from {})", self.from)
    }
}

/// Reads `[[events.subscriptions]]` in `[events]` (`t`).
pub(super) fn read(
    t: &TableReader<'_, '_>,
    p: &mut Problems<'_>,
    dir: &Path,
    catalog: &candor_catalog::Catalog,
) -> Vec<SubscriptionConfig> {
    let mut out: Vec<SubscriptionConfig> = Vec::new();
    for (i, s) in t
        .tables(p, "subscriptions", SUBSCRIPTION)
        .into_iter()
        .enumerate()
    {
        if let Some(sub) = read_one(&s, p, dir, catalog, i) {
            if out.iter().any(|o| o.name == sub.name) {
                let span = s.get("name").map_or(s.span.clone(), |v| v.span());
                p.at(
                    span,
                    &s.key_path("name"),
                    format!("a subscription named `{}` is defined already", sub.name),
                )
                .expected = Some("a name of its own for each subscription".into());
            } else {
                out.push(sub);
            }
        }
        s.finish(p);
    }
    out
}

fn read_one(
    s: &TableReader<'_, '_>,
    p: &mut Problems<'_>,
    dir: &Path,
    catalog: &candor_catalog::Catalog,
    index: usize,
) -> Option<SubscriptionConfig> {
    let before = p.list.len();
    let name = s
        .string(p, "name")
        .map_or_else(|| format!("subscription-{index}"), |(n, _)| n);
    let filter = read_filter(s, p, catalog);
    let mode = match s.string(p, "mode") {
        None => Mode::Block,
        Some((m, span)) => match m.as_str() {
            "block" => Mode::Block,
            "drop" => Mode::Drop,
            _ => {
                let problem = p.at(span, &s.key_path("mode"), format!("unknown mode `{m}`"));
                problem.expected =
                    Some("block (nothing is lost) or drop (drops are counted)".into());
                problem.suggestion = did_you_mean(&m, MODES);
                Mode::Block
            }
        },
    };
    let queue = s.integer(p, "queue", 1, 1 << 22).unwrap_or(10_000) as usize;
    let max_wait = s
        .duration_in(
            p,
            "max_wait",
            Duration::from_secs(1),
            Duration::from_secs(3600),
        )
        .unwrap_or(Duration::from_secs(30));
    let sink = match s.string(p, "sink") {
        None => {
            p.at(
                s.span.clone(),
                &s.key_path("sink"),
                format!("subscription `{name}` has no sink"),
            )
            .expected = Some(format!("sink = one of: {}", SINKS.join(", ")));
            None
        }
        Some((kind, span)) => read_sink(s, p, dir, &kind, span),
    };
    // Settings of another sink than the one chosen are mistakes, not silently ignored.
    if let Some(sink) = &sink {
        let own: &[&str] = match sink {
            SinkConfig::File { .. } => &["path"],
            SinkConfig::Stdout => &[],
            SinkConfig::Syslog(_) => &["address", "app_name", "facility"],
            SinkConfig::Webhook(_) => &[
                "url",
                "secret_env",
                "secret_file",
                "ca_file",
                "batch",
                "flush_every",
                "timeout",
                "max_retries",
                "retry_backoff",
                "max_backoff",
            ],
        };
        // The keys after `max_wait` are sink settings.
        for key in &SUBSCRIPTION[9..] {
            if own.contains(key) {
                continue;
            }
            if let Some(v) = s.get(key) {
                p.at(
                    v.span(),
                    &s.key_path(key),
                    format!("`{key}` is not a setting of a {} sink", sink.kind()),
                )
                .expected = Some(format!(
                    "for sink = \"{}\": {}",
                    sink.kind(),
                    if own.is_empty() {
                        "no settings".to_owned()
                    } else {
                        own.join(", ")
                    }
                ));
            }
        }
    }
    if p.list.len() > before {
        return None;
    }
    Some(SubscriptionConfig {
        name,
        route_spans: filter.1,
        filter: filter.0,
        sink: sink?,
        mode,
        queue,
        max_wait,
    })
}

/// The filter, and each route name's span and key.
fn read_filter(
    s: &TableReader<'_, '_>,
    p: &mut Problems<'_>,
    catalog: &candor_catalog::Catalog,
) -> (EventFilterConfig, Vec<(String, Range<usize>, String)>) {
    let mut f = EventFilterConfig {
        types: Vec::new(),
        severity: Severity::Info,
        routes: Vec::new(),
        codes: Vec::new(),
    };
    for (t, span) in s.strings(p, "types").unwrap_or_default() {
        if let Err((message, suggestion)) = check_type_pattern(&t) {
            let problem = p.at(span, &s.key_path("types"), message);
            problem.suggestion = suggestion;
            problem.expected = Some(format!(
                "an event type, `prefix.*` or `*`; the types: {}",
                kinds::ALL.join(", ")
            ));
        } else {
            f.types.push(t);
        }
    }
    if let Some((sev, span)) = s.string(p, "severity") {
        match Severity::parse(&sev) {
            Some(v) => f.severity = v,
            None => {
                let names: Vec<&str> = Severity::ALL.iter().map(|s| s.as_str()).collect();
                let problem = p.at(
                    span,
                    &s.key_path("severity"),
                    format!("`{sev}` is not a severity"),
                );
                problem.suggestion = did_you_mean(&sev, &names).or_else(|| {
                    names
                        .iter()
                        .find(|n| !sev.is_empty() && n.starts_with(sev.as_str()))
                        .map(|n| (*n).to_owned())
                });
                problem.expected = Some(format!(
                    "the least severity taken, one of: {}",
                    names.join(", ")
                ));
            }
        }
    }
    let routes: Vec<_> = s
        .strings(p, "routes")
        .unwrap_or_default()
        .into_iter()
        .map(|(r, span)| (r, span, s.key_path("routes")))
        .collect();
    f.routes = routes.iter().map(|(r, _, _)| r.clone()).collect();
    let known: Vec<&str> = catalog.entries().iter().map(|e| e.code.as_str()).collect();
    for (code, span) in s.strings(p, "codes").unwrap_or_default() {
        if !known.contains(&code.as_str()) {
            let problem = p.at(
                span,
                &s.key_path("codes"),
                format!("`{code}` is not a code of the catalog"),
            );
            problem.suggestion = did_you_mean(&code, &known);
            problem.expected = Some("a catalog code (candor catalog lists them)".into());
        } else {
            f.codes.push(code);
        }
    }
    (f, routes)
}

/// Checks an event type pattern: the message and a suggestion when it names no type.
pub(crate) fn check_type_pattern(t: &str) -> Result<(), (String, Option<String>)> {
    if t == "*" || kinds::ALL.contains(&t) {
        return Ok(());
    }
    let prefixes: Vec<String> = kinds::ALL
        .iter()
        .filter_map(|k| k.split_once('.').map(|(a, _)| format!("{a}.*")))
        .collect();
    if let Some(prefix) = t.strip_suffix(".*") {
        if prefixes
            .iter()
            .any(|x| x.strip_suffix(".*") == Some(prefix))
        {
            return Ok(());
        }
        let names: Vec<&str> = prefixes.iter().map(String::as_str).collect();
        return Err((
            format!("`{t}` matches no event type"),
            did_you_mean(t, &names),
        ));
    }
    let mut names: Vec<&str> = kinds::ALL.to_vec();
    names.extend(prefixes.iter().map(String::as_str));
    Err((
        format!("`{t}` is not an event type"),
        did_you_mean(t, &names),
    ))
}

fn read_sink(
    s: &TableReader<'_, '_>,
    p: &mut Problems<'_>,
    dir: &Path,
    kind: &str,
    span: Range<usize>,
) -> Option<SinkConfig> {
    match kind {
        "stdout" => Some(SinkConfig::Stdout),
        "file" => match s.string(p, "path") {
            Some((path, _)) => Some(SinkConfig::File {
                path: dir.join(path),
            }),
            None => {
                p.at(
                    s.span.clone(),
                    &s.key_path("path"),
                    "a file sink needs the file's path".into(),
                )
                .expected = Some("path = \"events-subscription.jsonl\"".into());
                None
            }
        },
        "syslog" => read_syslog(s, p).map(SinkConfig::Syslog),
        "webhook" => {
            let w = read_webhook(s, p, dir, true)?;
            Some(SinkConfig::Webhook(w))
        }
        _ => {
            let problem = p.at(span, &s.key_path("sink"), format!("unknown sink `{kind}`"));
            problem.suggestion = did_you_mean(kind, SINKS);
            problem.expected = Some(format!("one of: {}", SINKS.join(", ")));
            None
        }
    }
}

const FACILITIES: &[&str] = &[
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
    "ftp", "ntp", "audit", "alert", "clock", "local0", "local1", "local2", "local3", "local4",
    "local5", "local6", "local7",
];

fn read_syslog(s: &TableReader<'_, '_>, p: &mut Problems<'_>) -> Option<SyslogConfig> {
    let before = p.list.len();
    let expected = "udp://host:port or tcp://host:port, such as \"udp://127.0.0.1:514\"";
    let (transport, address) = match s.string(p, "address") {
        None => {
            p.at(
                s.span.clone(),
                &s.key_path("address"),
                "a syslog sink needs the server's address".into(),
            )
            .expected = Some(expected.into());
            return None;
        }
        Some((a, span)) => {
            let parsed = match a.split_once("://") {
                Some(("udp", rest)) => Some((SyslogTransport::Udp, rest)),
                Some(("tcp", rest)) => Some((SyslogTransport::Tcp, rest)),
                _ => None,
            };
            let valid = parsed.filter(|(_, rest)| {
                rest.parse::<http::uri::Authority>()
                    .is_ok_and(|a| a.port_u16().is_some() && a.as_str() == *rest)
            });
            match valid {
                Some((t, rest)) => (t, rest.to_owned()),
                None => {
                    p.at(
                        span,
                        &s.key_path("address"),
                        format!("`{a}` is not a syslog address"),
                    )
                    .expected = Some(expected.into());
                    (SyslogTransport::Udp, String::new())
                }
            }
        }
    };
    let app_name = match s.string(p, "app_name") {
        None => "candor".to_owned(),
        Some((a, span)) => {
            // RFC 5424 APP-NAME: 1 to 48 printable US-ASCII characters.
            if a.is_empty() || a.len() > 48 || !a.bytes().all(|b| (33..=126).contains(&b)) {
                p.at(
                    span,
                    &s.key_path("app_name"),
                    format!("`{a}` cannot be a syslog APP-NAME"),
                )
                .expected = Some("1 to 48 printable ASCII characters, no spaces".into());
            }
            a
        }
    };
    let facility = match s.get("facility").map(|v| v.get_ref()) {
        None => 16,
        Some(toml::de::DeValue::Integer(_)) => s.integer(p, "facility", 0, 23).unwrap_or(16) as u8,
        Some(_) => match s.string(p, "facility") {
            Some((f, span)) => match FACILITIES.iter().position(|x| *x == f) {
                Some(n) => n as u8,
                None => {
                    let problem = p.at(
                        span,
                        &s.key_path("facility"),
                        format!("`{f}` is not a syslog facility"),
                    );
                    problem.suggestion = did_you_mean(&f, FACILITIES);
                    problem.expected = Some(format!(
                        "a number from 0 to 23 or one of: {}",
                        FACILITIES.join(", ")
                    ));
                    16
                }
            },
            None => 16,
        },
    };
    (p.list.len() == before).then_some(SyslogConfig {
        transport,
        address,
        app_name,
        facility,
    })
}

/// Reads a webhook's settings from `s` (a subscription or `[alerts.webhook]`).
pub(super) fn read_webhook(
    s: &TableReader<'_, '_>,
    p: &mut Problems<'_>,
    dir: &Path,
    batched: bool,
) -> Option<WebhookConfig> {
    let before = p.list.len();
    let expected =
        "an http:// or https:// URL with a host, such as \"https://hooks.example.com/candor\"";
    let url = match s.string(p, "url") {
        None => {
            p.at(
                s.span.clone(),
                &s.key_path("url"),
                "a webhook needs the URL it posts to".into(),
            )
            .expected = Some(expected.into());
            None
        }
        Some((u, span)) => match u.parse::<http::Uri>() {
            Ok(uri)
                if matches!(uri.scheme_str(), Some("http" | "https"))
                    && uri.authority().is_some_and(|a| !a.host().is_empty())
                    && !uri.authority().is_some_and(|a| a.as_str().contains('@')) =>
            {
                Some(uri)
            }
            Ok(uri) => {
                let why = match uri.scheme_str() {
                    None => "it has no scheme".to_owned(),
                    Some(s @ ("http" | "https")) => {
                        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
                            "credentials do not go in the URL (the body is signed with secret_env or secret_file)".to_owned()
                        } else {
                            format!("an {s}:// URL needs a host")
                        }
                    }
                    Some(s) => format!("`{s}` is not a scheme a webhook can have"),
                };
                p.at(
                    span,
                    &s.key_path("url"),
                    format!("`{u}` is not a webhook URL: {why}"),
                )
                .expected = Some(expected.into());
                None
            }
            Err(e) => {
                p.at(span, &s.key_path("url"), format!("`{u}` is not a URL: {e}"))
                    .expected = Some(expected.into());
                None
            }
        },
    };
    let secret = read_secret(s, p, dir, "secret_env", "secret_file", "signing key");
    let ca_file = s.string(p, "ca_file").map(|(f, span)| {
        let path = dir.join(f);
        if !path.is_file() {
            p.at(
                span,
                &s.key_path("ca_file"),
                format!("cannot read the CA file {}", path.display()),
            )
            .expected = Some("a PEM file of CA certificates".into());
        }
        path
    });
    let batch = if batched {
        s.integer(p, "batch", 1, 10_000).unwrap_or(100) as usize
    } else {
        1
    };
    let flush_every = if batched {
        s.duration(p, "flush_every")
            .filter(|d| {
                let ok = *d >= Duration::from_millis(10) && *d <= Duration::from_secs(60);
                if !ok && let Some(v) = s.get("flush_every") {
                    p.at(
                        v.span(),
                        &s.key_path("flush_every"),
                        "flush_every must be from 10ms to 60s".into(),
                    );
                }
                ok
            })
            .unwrap_or(Duration::from_secs(1))
    } else {
        Duration::ZERO
    };
    let timeout = s
        .duration_in(
            p,
            "timeout",
            Duration::from_secs(1),
            Duration::from_secs(300),
        )
        .unwrap_or(Duration::from_secs(10));
    let max_retries = s.integer(p, "max_retries", 0, 1000).unwrap_or(5) as u32;
    let retry_backoff = s
        .duration(p, "retry_backoff")
        .unwrap_or(Duration::from_millis(200))
        .max(Duration::from_millis(1));
    let max_backoff = s
        .duration(p, "max_backoff")
        .unwrap_or(Duration::from_secs(30))
        .max(retry_backoff);
    if p.list.len() > before {
        return None;
    }
    Some(WebhookConfig {
        url: url?,
        secret,
        ca_file,
        batch,
        flush_every,
        timeout,
        max_retries,
        retry_backoff,
        max_backoff,
    })
}

/// Reads a secret named by `env_key` (an environment variable) or `file_key` (a file whose
/// content, less a final newline, is the secret). Neither the value nor a part of it goes
/// into a message.
pub(super) fn read_secret(
    s: &TableReader<'_, '_>,
    p: &mut Problems<'_>,
    dir: &Path,
    env_key: &str,
    file_key: &str,
    what: &str,
) -> Option<Secret> {
    let env = s.string(p, env_key);
    let file = s.string(p, file_key);
    match (env, file) {
        (Some(_), Some((_, span))) => {
            p.at(
                span,
                &s.key_path(file_key),
                format!("{env_key} and {file_key} both name the {what}"),
            )
            .expected = Some(format!("one of {env_key} or {file_key}"));
            None
        }
        (Some((var, span)), None) => match std::env::var_os(&var) {
            Some(v) if !v.is_empty() => Some(Secret {
                value: v.as_encoded_bytes().to_vec(),
                from: format!("environment variable {var}"),
            }),
            _ => {
                p.at(
                    span,
                    &s.key_path(env_key),
                    format!("the environment variable {var} is not set or is empty"),
                )
                .expected = Some(format!(
                    "the {what} in {var} in the gateway's environment (or {file_key} naming a file that holds it)"
                ));
                None
            }
        },
        (None, Some((f, span))) => {
            let path = dir.join(&f);
            p.reads(&path);
            match super::read_file(&path) {
                Ok(mut v) => {
                    while v.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                        v.pop();
                    }
                    if v.is_empty() {
                        p.at(
                            span,
                            &s.key_path(file_key),
                            format!("{} is empty", path.display()),
                        )
                        .expected = Some(format!("a file holding the {what}"));
                        return None;
                    }
                    Some(Secret {
                        value: v,
                        from: format!("file {}", path.display()),
                    })
                }
                Err(e) => {
                    p.at(
                        span,
                        &s.key_path(file_key),
                        format!("cannot read {}: {e}", path.display()),
                    )
                    .expected = Some(format!("a file holding the {what}"));
                    None
                }
            }
        }
        (None, None) => None,
    }
}

/// Reports each subscription route that names no route.
pub(super) fn check_routes(
    p: &mut Problems<'_>,
    subscriptions: &[SubscriptionConfig],
    routes: &[super::RouteConfig],
) {
    let names: Vec<&str> = routes.iter().map(|r| r.name.as_str()).collect();
    for s in subscriptions {
        for (r, span, key) in &s.route_spans {
            if names.contains(&r.as_str()) {
                continue;
            }
            let problem = p.at(
                span.clone(),
                key,
                format!("`{r}` is not the name of a route"),
            );
            problem.suggestion = did_you_mean(r, &names);
            problem.expected = Some(if names.is_empty() {
                "a route's name: the configuration has no routes".into()
            } else {
                format!("a route's name, one of: {}", names.join(", "))
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_patterns() {
        assert!(check_type_pattern("*").is_ok());
        assert!(check_type_pattern("auth.*").is_ok());
        assert!(check_type_pattern("request.rejected").is_ok());
        let (m, s) = check_type_pattern("request.rejcted").unwrap_err();
        assert!(m.contains("not an event type"));
        assert_eq!(s.as_deref(), Some("request.rejected"));
        let (m, s) = check_type_pattern("ath.*").unwrap_err();
        assert!(m.contains("matches no event type"));
        assert_eq!(s.as_deref(), Some("auth.*"));
    }

    #[test]
    fn a_secret_is_never_printed() {
        let s = Secret::of("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
