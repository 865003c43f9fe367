//! `[log]`: what the request log records.

use super::reader::{Problems, TableReader};

const LOG: &[&str] = &["requests"];

/// `[log]`
#[derive(Clone, Copy, Debug)]
pub struct LogConfig {
    /// Log the trail of every request, not only of failed ones.
    pub requests: bool,
}

/// Reads `[log]`.
pub(super) fn read(top: &TableReader<'_, '_>, p: &mut Problems<'_>) -> LogConfig {
    let mut log = LogConfig { requests: true };
    if let Some(l) = top.table(p, "log", LOG) {
        if let Some(b) = l.boolean(p, "requests") {
            log.requests = b;
        }
        l.finish(p);
    }
    log
}
