//! Where the event log lives: JSON-lines files in one folder, one started per
//! `max_file_bytes` or `rotate_every` (named by their start time, never renamed), files
//! older than `keep_for` deleted; and `index.sqlite` beside them, holding for each event its
//! time, type, severity, request id, route, code, and where its line is.

use super::{Event, Line, Severity, Written};
use crate::config::EventsConfig;
use rusqlite::{Connection, OptionalExtension, params};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    started INTEGER NOT NULL,
    ended INTEGER
);
CREATE TABLE IF NOT EXISTS events (
    time INTEGER NOT NULL,
    type TEXT NOT NULL,
    severity INTEGER NOT NULL,
    request_id TEXT,
    route TEXT,
    code TEXT,
    file INTEGER NOT NULL,
    offset INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_request ON events(request_id) WHERE request_id IS NOT NULL;
";

/// The index file's name in the log's folder.
pub(crate) const INDEX: &str = "index.sqlite";

/// The writer's side.
pub(crate) struct Store {
    dir: PathBuf,
    db: Connection,
    file: BufWriter<File>,
    file_id: i64,
    file_len: u64,
    file_started: Instant,
    max_file_bytes: u64,
    rotate_every: Duration,
    keep_for: Duration,
    last_retention: Instant,
    last_ms: i64,
    line: Vec<u8>,
}

impl Store {
    /// Opens (creating) the folder and its index, starts a new file and applies retention.
    pub(crate) fn open(dir: &Path, config: &EventsConfig) -> Result<Store, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let db = Connection::open(dir.join(INDEX)).map_err(|e| e.to_string())?;
        db.busy_timeout(Duration::from_secs(5))
            .map_err(|e| e.to_string())?;
        db.execute_batch(SCHEMA).map_err(|e| e.to_string())?;
        let (file, file_id) = new_file(dir, &db, None).map_err(|e| e.to_string())?;
        let mut store = Store {
            dir: dir.to_owned(),
            db,
            file,
            file_id,
            file_len: 0,
            file_started: Instant::now(),
            max_file_bytes: config.max_file_bytes,
            rotate_every: config.rotate_every,
            keep_for: config.keep_for,
            last_retention: Instant::now(),
            last_ms: 0,
            line: Vec::with_capacity(1024),
        };
        store.retention();
        Ok(store)
    }

    /// Appends and indexes `batch` (the lines are flushed before the index commits, so an
    /// index row never points past the file's end), filling `written` for the consumers
    /// when there are any.
    pub(crate) fn write(
        &mut self,
        batch: &[Event],
        mut written: Option<&mut Vec<Written>>,
    ) -> Result<(), String> {
        if self.file_len >= self.max_file_bytes || self.file_started.elapsed() >= self.rotate_every
        {
            self.rotate()
                .map_err(|e| format!("cannot start a new file: {e}"))?;
        }
        let mut rows = Vec::with_capacity(batch.len());
        let mut failed = None;
        for (i, ev) in batch.iter().enumerate() {
            // Ids and times ascend even when the clock steps back.
            let ms = crate::time::unix_millis(ev.time).max(self.last_ms);
            self.last_ms = ms;
            let id = format!("ev_{}", crate::http::request_id::new_ulid());
            self.line.clear();
            if let Err(e) = serde_json::to_writer(
                &mut self.line,
                &Line {
                    id: &id,
                    time_ms: ms,
                    event: ev,
                },
            ) {
                failed = Some(e.to_string());
                continue;
            }
            let line: Option<Arc<str>> = written
                .is_some()
                .then(|| String::from_utf8_lossy(&self.line).into());
            self.line.push(b'\n');
            if failed.is_none() {
                match self.file.write_all(&self.line) {
                    Ok(()) => {
                        rows.push((i, ms, self.file_len));
                        self.file_len += self.line.len() as u64;
                    }
                    Err(e) => failed = Some(e.to_string()),
                }
            }
            if let (Some(w), Some(line)) = (written.as_deref_mut(), line) {
                w.push(Written {
                    kind: ev.kind,
                    severity: ev.severity,
                    route: ev.route.clone(),
                    code: ev.code.as_deref().map(str::to_owned),
                    line,
                });
            }
        }
        self.file.flush().map_err(|e| e.to_string())?;
        if let Err(e) = self.index(batch, &rows) {
            failed.get_or_insert(format!("index: {e}"));
        }
        if self.last_retention.elapsed() >= Duration::from_secs(3600) {
            self.retention();
        }
        failed.map_or(Ok(()), Err)
    }

    fn index(&mut self, batch: &[Event], rows: &[(usize, i64, u64)]) -> rusqlite::Result<()> {
        let tx = self.db.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO events (time, type, severity, request_id, route, code, file, offset) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for &(i, ms, offset) in rows {
                let ev = &batch[i];
                insert.execute(params![
                    ms,
                    ev.kind,
                    ev.severity.rank(),
                    ev.request_id,
                    ev.route,
                    ev.code.as_deref(),
                    self.file_id,
                    offset as i64
                ])?;
            }
        }
        tx.commit()
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.file.flush()?;
        let (file, id) = new_file(&self.dir, &self.db, Some(self.file_id))?;
        self.file = file;
        self.file_id = id;
        self.file_len = 0;
        self.file_started = Instant::now();
        self.retention();
        Ok(())
    }

    /// Deletes the files (and their rows) whose every event is older than `keep_for`.
    fn retention(&mut self) {
        self.last_retention = Instant::now();
        let cutoff = crate::time::unix_millis(SystemTime::now()) - self.keep_for.as_millis() as i64;
        let old: Vec<(i64, String)> = self
            .db
            .prepare(
                "SELECT f.id, f.name FROM files f WHERE f.id != ?1 AND COALESCE(f.ended, (SELECT MIN(n.started) FROM files n WHERE n.started > f.started), f.started) < ?2",
            )
            .and_then(|mut s| {
                s.query_map(params![self.file_id, cutoff], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect()
            })
            .unwrap_or_default();
        for (id, name) in old {
            match std::fs::remove_file(self.dir.join(&name)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(target: "candor::events", file = %name, error = %e, "cannot delete an expired event file");
                    continue;
                }
            }
            let _ = self.db.execute("DELETE FROM events WHERE file = ?1", [id]);
            let _ = self.db.execute("DELETE FROM files WHERE id = ?1", [id]);
            tracing::info!(target: "candor::events", file = %name, "expired event file deleted (events.keep_for)");
        }
    }

    /// Flushes the file and marks its end.
    pub(crate) fn finish(&mut self) {
        let _ = self.file.flush();
        let _ = self.db.execute(
            "UPDATE files SET ended = ?1 WHERE id = ?2",
            params![crate::time::unix_millis(SystemTime::now()), self.file_id],
        );
    }
}

/// Starts a new file (closing `previous` in the index).
fn new_file(
    dir: &Path,
    db: &Connection,
    previous: Option<i64>,
) -> std::io::Result<(BufWriter<File>, i64)> {
    let now = crate::time::unix_millis(SystemTime::now());
    if let Some(p) = previous {
        let _ = db.execute("UPDATE files SET ended = ?1 WHERE id = ?2", params![now, p]);
    }
    // `events-2026-12-07T03.04.05.123Z.jsonl` (no colons: portable file names); a second
    // file in the same millisecond gets a suffix.
    let stamp = crate::time::rfc3339_millis(now).replace(':', ".");
    let mut name = format!("events-{stamp}.jsonl");
    let mut n = 1;
    while dir.join(&name).exists() {
        n += 1;
        name = format!("events-{stamp}-{n}.jsonl");
    }
    let file = std::fs::OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(dir.join(&name))?;
    db.execute(
        "INSERT INTO files (name, started) VALUES (?1, ?2)",
        params![name, now],
    )
    .map_err(std::io::Error::other)?;
    Ok((
        BufWriter::with_capacity(64 << 10, file),
        db.last_insert_rowid(),
    ))
}

/// The most events told for one request id.
pub(crate) const MAX_PER_REQUEST: usize = 500;

/// Which events to list.
#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    /// A type, or a prefix ending in `.*` (`request.*`), or `*`.
    pub kind: Option<String>,
    /// The least severity.
    pub severity: Option<Severity>,
    /// The route.
    pub route: Option<String>,
    /// The code.
    pub code: Option<String>,
    /// The request id.
    pub request_id: Option<String>,
    /// At most this many, newest first (default 100, at most 1000).
    pub limit: Option<usize>,
}

/// Reads the log back (for `candor explain` and the admin API).
#[derive(Debug)]
pub struct EventReader {
    dir: PathBuf,
    db: Connection,
}

impl EventReader {
    /// Opens the log in `dir` for reading. An error says why in one line.
    pub fn open(dir: &Path) -> Result<EventReader, String> {
        let index = dir.join(INDEX);
        if !index.exists() {
            return Err(format!(
                "no event log in {} (the gateway writes it there once it has started with [events] enabled)",
                dir.display()
            ));
        }
        let db = Connection::open_with_flags(
            &index,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| format!("cannot open {}: {e}", index.display()))?;
        let _ = db.busy_timeout(Duration::from_secs(5));
        Ok(EventReader {
            dir: dir.to_owned(),
            db,
        })
    }

    /// The events of request `id`, in order: the newest [`MAX_PER_REQUEST`] (a client may
    /// send one id with many requests).
    pub fn by_request(&self, id: &str) -> Result<Vec<serde_json::Value>, String> {
        let mut events = self.lines(
            "SELECT f.name, e.offset FROM events e JOIN files f ON f.id = e.file WHERE e.request_id = ?1 ORDER BY e.rowid DESC LIMIT ?2",
            &[&id as &dyn rusqlite::ToSql, &(MAX_PER_REQUEST as i64)],
        )?;
        events.reverse();
        Ok(events)
    }

    /// The newest events that pass `f`, newest first.
    pub fn recent(&self, f: &EventFilter) -> Result<Vec<serde_json::Value>, String> {
        let mut sql = String::from(
            "SELECT f.name, e.offset FROM events e JOIN files f ON f.id = e.file WHERE 1",
        );
        let mut args: Vec<Box<dyn rusqlite::ToSql>> = Vec::new();
        match f.kind.as_deref() {
            None | Some("*") => {}
            Some(k) if k.ends_with(".*") => {
                sql.push_str(" AND e.type LIKE ? ESCAPE '\\'");
                let prefix = k[..k.len() - 1]
                    .replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_");
                args.push(Box::new(format!("{prefix}%")));
            }
            Some(k) => {
                sql.push_str(" AND e.type = ?");
                args.push(Box::new(k.to_owned()));
            }
        }
        if let Some(s) = f.severity {
            sql.push_str(" AND e.severity >= ?");
            args.push(Box::new(s.rank()));
        }
        for (col, v) in [
            ("route", &f.route),
            ("code", &f.code),
            ("request_id", &f.request_id),
        ] {
            if let Some(v) = v {
                sql.push_str(&format!(" AND e.{col} = ?"));
                args.push(Box::new(v.clone()));
            }
        }
        sql.push_str(" ORDER BY e.rowid DESC LIMIT ?");
        args.push(Box::new(f.limit.unwrap_or(100).clamp(1, 1000) as i64));
        let refs: Vec<&dyn rusqlite::ToSql> = args.iter().map(|a| a.as_ref()).collect();
        self.lines(&sql, &refs)
    }

    /// The time (ms since the epoch) of the oldest event kept, if any.
    pub fn oldest(&self) -> Option<i64> {
        self.db
            .query_row("SELECT time FROM events ORDER BY rowid LIMIT 1", [], |r| {
                r.get(0)
            })
            .optional()
            .ok()
            .flatten()
    }

    fn lines(
        &self,
        sql: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<serde_json::Value>, String> {
        let rows: Vec<(String, i64)> = self
            .db
            .prepare(sql)
            .and_then(|mut s| s.query_map(args, |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
            .map_err(|e| format!("cannot read the event index: {e}"))?;
        let mut open: Option<(String, BufReader<File>)> = None;
        let mut out = Vec::with_capacity(rows.len());
        let mut text = String::new();
        let mut unreadable: Option<String> = None;
        let found = rows.len();
        for (name, offset) in rows {
            // The index names files in the log's own folder, nothing else.
            if name.contains(['/', '\\']) || name.starts_with('.') {
                unreadable
                    .get_or_insert(format!("the index names {name:?}, not a file of the log"));
                continue;
            }
            if open.as_ref().is_none_or(|(n, _)| *n != name) {
                match File::open(self.dir.join(&name)) {
                    Ok(f) => open = Some((name.clone(), BufReader::new(f))),
                    // Deleted by retention after the query, or unreadable: said if nothing
                    // else is found.
                    Err(e) => {
                        unreadable.get_or_insert(format!(
                            "{} cannot be read: {e}",
                            self.dir.join(&name).display()
                        ));
                        continue;
                    }
                }
            }
            let (_, reader) = open.as_mut().expect("opened");
            text.clear();
            // One line, at most 4 MiB of it (a damaged file may have no newline).
            if reader.seek(SeekFrom::Start(offset as u64)).is_err()
                || reader.by_ref().take(4 << 20).read_line(&mut text).is_err()
            {
                continue;
            }
            match serde_json::from_str(text.trim_end()) {
                Ok(v) => out.push(v),
                Err(_) => {
                    unreadable.get_or_insert(format!(
                        "{} holds no event where the index says (damaged or truncated)",
                        self.dir
                            .join(open.as_ref().map_or("", |(n, _)| n))
                            .display()
                    ));
                }
            }
        }
        match unreadable {
            // The index knows events the files no longer give: say so, rather than "not
            // there".
            Some(why) if out.is_empty() && found > 0 => {
                Err(format!("the event index lists {found} event(s), but {why}"))
            }
            _ => Ok(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Event, kinds};

    fn jsonl_files(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "jsonl")
            })
            .count()
    }

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "candor-events-{name}-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn written_events_are_found_by_request_and_filter_and_files_rotate() {
        let dir = temp_dir("store");
        let config = EventsConfig {
            max_file_bytes: 1 << 16,
            ..EventsConfig::default()
        };
        let mut store = Store::open(&dir, &config).unwrap();
        let mut written = Vec::new();
        for i in 0..600 {
            let ev = Event::new(kinds::REQUEST_REJECTED, Severity::Notice)
                .request(&format!("r{}", i % 300))
                .route("devices")
                .code("route_not_found")
                .fact("padding", "x".repeat(200));
            store
                .write(std::slice::from_ref(&ev), Some(&mut written))
                .unwrap();
        }
        let ev = Event::new(kinds::CONFIG_APPLIED, Severity::Info).fact("generation", 2);
        store.write(&[ev], Some(&mut written)).unwrap();
        store.finish();
        assert_eq!(written.len(), 601);
        let files = jsonl_files(&dir);
        assert!(
            files > 1,
            "600 events of ~400 bytes rotate at 64 KiB: {files} files"
        );
        let r = EventReader::open(&dir).unwrap();
        let two = r.by_request("r7").unwrap();
        assert_eq!(two.len(), 2);
        assert_eq!(two[0]["request_id"], "r7");
        assert!(two[0]["id"].as_str().unwrap() < two[1]["id"].as_str().unwrap());
        let config = r
            .recent(&EventFilter {
                kind: Some("config.*".into()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(config.len(), 1);
        assert_eq!(config[0]["facts"]["generation"], 2);
        let warnings = r
            .recent(&EventFilter {
                severity: Some(Severity::Warning),
                ..Default::default()
            })
            .unwrap();
        assert!(warnings.is_empty());
        assert_eq!(
            r.recent(&EventFilter {
                code: Some("route_not_found".into()),
                limit: Some(5),
                ..Default::default()
            })
            .unwrap()
            .len(),
            5
        );
        assert!(r.oldest().is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn files_past_keep_for_are_deleted_with_their_rows() {
        let dir = temp_dir("retention");
        let config = EventsConfig::default();
        let mut store = Store::open(&dir, &config).unwrap();
        let mut written = Vec::new();
        let ev = Event::new(kinds::API_STARTED, Severity::Info).request("old");
        store.write(&[ev], Some(&mut written)).unwrap();
        store.rotate().unwrap();
        // The first file ended two days ago.
        let two_days_ago = crate::time::unix_millis(SystemTime::now()) - 2 * 86_400_000;
        store
            .db
            .execute(
                "UPDATE files SET started = ?1, ended = ?1 WHERE id != ?2",
                [two_days_ago, store.file_id],
            )
            .unwrap();
        store.keep_for = Duration::from_secs(86_400);
        store.retention();
        let r = EventReader::open(&dir).unwrap();
        assert!(r.by_request("old").unwrap().is_empty());
        let files = jsonl_files(&dir);
        assert_eq!(files, 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
