//! `[limits]`: request size limits, read into the transport stage's [`Limits`].

use super::reader::{Problems, TableReader};
pub(crate) use crate::stages::transport::Limits;

const LIMITS: &[&str] = &[
    "max_uri_bytes",
    "max_header_bytes",
    "max_body_bytes",
    "max_connections",
    "max_h2_streams",
    "max_rate_limit_keys",
    "quota_save_interval",
];

/// Reads `[limits]`.
pub(super) fn read(top: &TableReader<'_, '_>, p: &mut Problems<'_>) -> Limits {
    let mut limits = Limits::default();
    if let Some(l) = top.table(p, "limits", LIMITS) {
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
    limits
}
