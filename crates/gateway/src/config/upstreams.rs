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

/// Reads the route's upstream policy onto `up`.
pub(super) fn tune(r: &TableReader<'_, '_>, p: &mut Problems<'_>, up: &mut Upstream) {
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
