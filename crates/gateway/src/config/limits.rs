//! `[limits]`: request size limits, read into the transport stage's [`Limits`], and
//! `[limits.shared]`, the Redis store rate limits share between gateways.

use super::reader::{Problems, TableReader};
use crate::limits::shared::{OnFailure, SharedConfig, SharedMode};
pub(crate) use crate::stages::transport::Limits;
use std::time::Duration;

const SHARED: &[&str] = &["redis", "mode", "lease", "on_failure", "timeout"];

const LIMITS: &[&str] = &[
    "max_uri_bytes",
    "max_header_bytes",
    "max_body_bytes",
    "max_connections",
    "max_h2_streams",
    "max_rate_limit_keys",
    "quota_save_interval",
    "shared",
];

/// Reads `[limits]` and `[limits.shared]`.
pub(super) fn read(
    top: &TableReader<'_, '_>,
    p: &mut Problems<'_>,
) -> (Limits, Option<SharedConfig>) {
    let mut limits = Limits::default();
    let mut shared = None;
    if let Some(l) = top.table(p, "limits", LIMITS) {
        if let Some(s) = l.table(p, "shared", SHARED) {
            shared = read_shared(&s, p);
            s.finish(p);
        }
        if let Some(n) = l.integer(p, "max_uri_bytes", 256, 1 << 20) {
            limits.max_uri_bytes = n as usize;
        }
        if let Some(n) = l.integer(p, "max_header_bytes", 1024, 1 << 20) {
            limits.max_header_bytes = n as usize;
        }
        if let Some(n) = l.integer(p, "max_body_bytes", 0, 1 << 40) {
            limits.max_body_bytes = n as u64;
        }
        if let Some(n) = l.integer(p, "max_connections", 1, 1_000_000) {
            limits.max_connections = n as usize;
        }
        if let Some(n) = l.integer(p, "max_h2_streams", 1, 10_000) {
            limits.max_h2_streams = n as u32;
        }
        if let Some(n) = l.integer(p, "max_rate_limit_keys", 1, 100_000_000) {
            limits.max_rate_limit_keys = n as usize;
        }
        if let Some(d) = l.duration(p, "quota_save_interval") {
            if d < std::time::Duration::from_millis(100) || d > std::time::Duration::from_secs(3600)
            {
                p.at(
                    l.get("quota_save_interval")
                        .map_or(l.span.clone(), |v| v.span()),
                    &l.key_path("quota_save_interval"),
                    "must be from 100ms to 1h".into(),
                );
            } else {
                limits.quota_save_interval = d;
            }
        }
        l.finish(p);
    }
    (limits, shared)
}

/// Reads `[limits.shared]`: `redis` is required; `mode` "exact" (the default) or
/// "batched" (with `lease`, 2 to 10000 permits, default 100),
/// `on_failure` "open" (the default) or "closed", `timeout` from 1ms to 10s (250ms).
fn read_shared(s: &TableReader<'_, '_>, p: &mut Problems<'_>) -> Option<SharedConfig> {
    let before = p.list.len();
    let redis = match s.string(p, "redis") {
        Some((url, span)) => {
            if url.starts_with("rediss://") {
                p.at(
                    span,
                    &s.key_path("redis"),
                    "rediss:// (TLS to Redis) is not supported".into(),
                )
                .expected = Some("a redis:// URL such as \"redis://127.0.0.1:6379\"".into());
            } else if redis::Client::open(url.as_str()).is_err() || !url.starts_with("redis://") {
                p.at(
                    span,
                    &s.key_path("redis"),
                    "is not a Redis URL the client can use".into(),
                )
                .expected = Some(
                    "redis://[user:password@]host[:port][/db], such as \"redis://127.0.0.1:6379\""
                        .into(),
                );
            }
            url
        }
        None => {
            if s.get("redis").is_none() {
                p.at(
                    s.span.clone(),
                    &s.key_path("redis"),
                    "is missing: the shared store needs the address of a Redis server".into(),
                )
                .expected = Some("redis = \"redis://127.0.0.1:6379\"".into());
            }
            String::new()
        }
    };
    let lease = s.integer(p, "lease", 2, 10_000).map(|n| n as u32);
    let mode = match s.string(p, "mode") {
        None => SharedMode::Exact,
        Some((m, _)) if m == "exact" => SharedMode::Exact,
        Some((m, _)) if m == "batched" => SharedMode::Batched {
            lease: lease.unwrap_or(100),
        },
        Some((m, span)) => {
            p.at(span, &s.key_path("mode"), format!("\"{m}\" is not a mode"))
                .expected = Some(
                "\"exact\" (one Redis call per check) or \"batched\" (permits leased `lease` at a time)"
                    .into(),
            );
            SharedMode::Exact
        }
    };
    if lease.is_some() && mode == SharedMode::Exact {
        p.at(
            s.get("lease").map_or(s.span.clone(), |v| v.span()),
            &s.key_path("lease"),
            "applies to mode = \"batched\" only".into(),
        );
    }
    let on_failure = match s.string(p, "on_failure") {
        None => OnFailure::Open,
        Some((m, _)) if m == "open" => OnFailure::Open,
        Some((m, _)) if m == "closed" => OnFailure::Closed,
        Some((m, span)) => {
            p.at(
                span,
                &s.key_path("on_failure"),
                format!("\"{m}\" is not a choice"),
            )
            .expected = Some(
                "\"open\" (count in each gateway while Redis is unreachable) or \"closed\" (refuse with rate_limit_store_unavailable)"
                    .into(),
            );
            OnFailure::Open
        }
    };
    let mut timeout = Duration::from_millis(250);
    if let Some(d) = s.duration(p, "timeout") {
        if d < Duration::from_millis(1) || d > Duration::from_secs(10) {
            p.at(
                s.get("timeout").map_or(s.span.clone(), |v| v.span()),
                &s.key_path("timeout"),
                "must be from 1ms to 10s".into(),
            );
        } else {
            timeout = d;
        }
    }
    (p.list.len() == before).then_some(SharedConfig {
        redis,
        mode,
        on_failure,
        timeout,
    })
}
