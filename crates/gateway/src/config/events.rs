//! `[events]`: the API event log — where it is written, when a file is rotated and how long
//! files are kept.

use super::reader::{Problems, TableReader};
use std::path::{Path, PathBuf};
use std::time::Duration;

const EVENTS: &[&str] = &[
    "enabled",
    "dir",
    "max_file_bytes",
    "rotate_every",
    "keep_for",
    "queue",
];

/// `[events]`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventsConfig {
    /// Whether the event log is written (default: yes).
    pub enabled: bool,
    /// The folder of the JSON-lines files and their SQLite index (default:
    /// `<server.data_dir>/events`; relative paths are against the configuration's folder).
    pub dir: Option<PathBuf>,
    /// A file grows to at most this many bytes, then a new one is started.
    pub max_file_bytes: u64,
    /// A new file is started at least this often.
    pub rotate_every: Duration,
    /// Files older than this are deleted, with their index rows.
    pub keep_for: Duration,
    /// Events waiting for the writer, at most; a request whose event finds the queue full
    /// waits for room (nothing is lost; the waits are counted).
    pub queue: usize,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            enabled: true,
            dir: None,
            max_file_bytes: 64 << 20,
            rotate_every: Duration::from_secs(86_400),
            keep_for: Duration::from_secs(14 * 86_400),
            queue: 65_536,
        }
    }
}

impl EventsConfig {
    /// The folder the log is written to, for a gateway whose data directory is `data_dir`.
    pub fn dir_in(&self, data_dir: &Path) -> PathBuf {
        self.dir.clone().unwrap_or_else(|| data_dir.join("events"))
    }
}

/// Reads `[events]`.
pub(super) fn read(top: &TableReader<'_, '_>, p: &mut Problems<'_>, dir: &Path) -> EventsConfig {
    let mut c = EventsConfig::default();
    let Some(t) = top.table(p, "events", EVENTS) else {
        return c;
    };
    if let Some(b) = t.boolean(p, "enabled") {
        c.enabled = b;
    }
    if let Some((d, _)) = t.string(p, "dir") {
        c.dir = Some(dir.join(d));
    }
    if let Some(n) = t.integer(p, "max_file_bytes", 1 << 16, 1 << 40) {
        c.max_file_bytes = n as u64;
    }
    if let Some(d) = t.duration_in(
        p,
        "rotate_every",
        Duration::from_secs(60),
        Duration::from_secs(30 * 86_400),
    ) {
        c.rotate_every = d;
    }
    if let Some(d) = t.duration_in(
        p,
        "keep_for",
        Duration::from_secs(60),
        Duration::from_secs(3650 * 86_400),
    ) {
        c.keep_for = d;
    }
    if let Some(n) = t.integer(p, "queue", 1, 1 << 24) {
        c.queue = n as usize;
    }
    t.finish(p);
    c
}
