//! A route's upstream policy: `balance`, `connect_timeout`, `retries`, `retry_on`,
//! `retry_backoff`, `retry_budget`, `eject_after`, `ejection_time` and
//! `max_ejected_percent`, read onto its [`Upstream`].

use super::did_you_mean;
use super::reader::{Problems, TableReader};
use crate::upstream::Upstream;
use crate::upstream::targets::Balance;
use std::time::Duration;

const RETRY_ON: &[&str] = &["connect", "reset", "502", "503", "504"];

/// A duration at `key` from `min` to `max`.
fn bounded(
    r: &TableReader<'_, '_>,
    p: &mut Problems<'_>,
    key: &str,
    min: Duration,
    max: Duration,
    words: &str,
) -> Option<Duration> {
    let d = r.duration(p, key)?;
    if d < min || d > max {
        p.at(
            r.get(key).map_or(r.span.clone(), |v| v.span()),
            &r.key_path(key),
            format!("must be from {words}"),
        );
        return None;
    }
    Some(d)
}

/// Reads the route's upstream policy onto `up`; files are relative to `dir`.
pub(super) fn tune(
    r: &TableReader<'_, '_>,
    p: &mut Problems<'_>,
    up: &mut Upstream,
    dir: &std::path::Path,
) {
    tls(r, p, up, dir);
    health_check(r, p, up);
    if let Some((b, span)) = r.string(p, "balance") {
        match b.as_str() {
            "round_robin" => up.balance = Balance::RoundRobin,
            "least_requests" => up.balance = Balance::LeastRequests,
            other => {
                let problem = p.at(
                    span,
                    &r.key_path("balance"),
                    format!("unknown balance `{other}`"),
                );
                problem.suggestion = did_you_mean(other, &["round_robin", "least_requests"]);
                problem.expected = Some("round_robin or least_requests".into());
            }
        }
    }
    let ms = Duration::from_millis;
    if let Some(d) = bounded(
        r,
        p,
        "connect_timeout",
        ms(10),
        Duration::from_secs(60),
        "10ms to 60s",
    ) {
        up.connect_timeout = d;
    }
    if let Some(n) = r.integer(p, "retries", 0, 10) {
        up.retry.retries = n as u32;
    }
    if let Some(list) = r.strings(p, "retry_on") {
        up.retry.on_connect = false;
        up.retry.on_reset = false;
        up.retry.on_status.clear();
        for (word, span) in list {
            match word.as_str() {
                "connect" => up.retry.on_connect = true,
                "reset" => up.retry.on_reset = true,
                "502" | "503" | "504" => up.retry.on_status.push(word.parse().unwrap_or(503)),
                other => {
                    let problem = p.at(
                        span,
                        &r.key_path("retry_on"),
                        format!("`{other}` is not a retry condition"),
                    );
                    problem.suggestion = did_you_mean(other, RETRY_ON);
                    problem.expected = Some(format!("any of {}", RETRY_ON.join(", ")));
                }
            }
        }
    }
    if let Some(d) = bounded(
        r,
        p,
        "retry_backoff",
        ms(1),
        Duration::from_secs(1),
        "1ms to 1s",
    ) {
        up.retry.backoff = d;
    }
    if let Some(n) = r.integer(p, "retry_budget", 0, 100) {
        up.retry.budget = n as f64 / 100.0;
    }
    if let Some(n) = r.integer(p, "eject_after", 0, 1000) {
        up.health.eject_after = n as u32;
    }
    if let Some(d) = bounded(
        r,
        p,
        "ejection_time",
        ms(100),
        crate::upstream::targets::MAX_EJECTION,
        "100ms to 5m",
    ) {
        up.health.ejection_time = d;
    }
    if let Some(n) = r.integer(p, "max_ejected_percent", 1, 100) {
        up.health.max_ejected_percent = n as u8;
    }
}

/// `upstream_ca_file`, `upstream_sni`, `upstream_client_cert` and `upstream_client_key`:
/// only for https:// upstreams.
fn tls(r: &TableReader<'_, '_>, p: &mut Problems<'_>, up: &mut Upstream, dir: &std::path::Path) {
    const KEYS: [&str; 4] = [
        "upstream_ca_file",
        "upstream_sni",
        "upstream_client_cert",
        "upstream_client_key",
    ];
    let given: Vec<&str> = KEYS
        .iter()
        .copied()
        .filter(|k| r.get(k).is_some())
        .collect();
    if !up.https {
        for k in given {
            p.at(
                r.get(k).map_or(r.span.clone(), |v| v.span()),
                &r.key_path(k),
                "applies to https:// upstreams; this route's is http://".into(),
            );
        }
        return;
    }
    let file = |p: &mut Problems<'_>, k: &str| {
        let path = r.string(p, k).map(|(f, _)| dir.join(f))?;
        p.reads(&path);
        Some(path)
    };
    let settings = crate::upstream::tls::TlsSettings {
        ca_file: file(p, "upstream_ca_file"),
        server_name: r.string(p, "upstream_sni").map(|(n, _)| n),
        client_cert: match (
            file(p, "upstream_client_cert"),
            file(p, "upstream_client_key"),
        ) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            (c, _) => {
                let (missing, present) = if c.is_some() {
                    ("upstream_client_key", "upstream_client_cert")
                } else {
                    ("upstream_client_cert", "upstream_client_key")
                };
                p.at(
                    r.get(present).map_or(r.span.clone(), |v| v.span()),
                    &r.key_path(missing),
                    format!("missing: {present} is set, and a client certificate needs both"),
                );
                None
            }
        },
    };
    match crate::upstream::tls::build(&settings) {
        Ok(t) => up.tls = Some(t),
        Err(e) => {
            let at = given
                .first()
                .and_then(|k| r.get(k))
                .map_or(r.span.clone(), |v| v.span());
            let key = given
                .first()
                .map_or("upstream".to_owned(), |k| r.key_path(k));
            p.at(at, &key, e);
        }
    }
}

const HEALTH_CHECK: &[&str] = &[
    "path",
    "interval",
    "timeout",
    "healthy_after",
    "unhealthy_after",
];

/// `health_check = { path = "/health", interval = "5s", timeout = "2s", healthy_after = 2,
/// unhealthy_after = 3 }`.
fn health_check(r: &TableReader<'_, '_>, p: &mut Problems<'_>, up: &mut Upstream) {
    let Some(t) = r.table(p, "health_check", HEALTH_CHECK) else {
        return;
    };
    let before = p.list.len();
    let path = match t.string(p, "path") {
        Some((path, _)) if path.starts_with('/') && !path.contains(char::is_whitespace) => path,
        Some((path, span)) => {
            p.at(span, &t.key_path("path"), format!("`{path}` is not a path"))
                .expected = Some("a path such as \"/health\"".into());
            String::new()
        }
        None => {
            p.at(t.span.clone(), &t.key_path("path"), "missing".into())
                .expected = Some("the path to GET, such as \"/health\"".into());
            String::new()
        }
    };
    let ms = Duration::from_millis;
    let interval = bounded(
        &t,
        p,
        "interval",
        ms(100),
        Duration::from_secs(3600),
        "100ms to 1h",
    )
    .unwrap_or(Duration::from_secs(5));
    let timeout = bounded(
        &t,
        p,
        "timeout",
        ms(10),
        Duration::from_secs(60),
        "10ms to 60s",
    )
    .unwrap_or(Duration::from_secs(2));
    let healthy_after = t.integer(p, "healthy_after", 1, 100).unwrap_or(2) as u32;
    let unhealthy_after = t.integer(p, "unhealthy_after", 1, 100).unwrap_or(3) as u32;
    t.finish(p);
    if p.list.len() == before {
        up.health_check = Some(crate::upstream::health::HealthCheck {
            path,
            interval,
            timeout,
            healthy_after,
            unhealthy_after,
        });
    }
}
