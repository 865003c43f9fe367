//! Where the event log lives: JSON-lines files in one folder, one started per
//! `max_file_bytes` or `rotate_every` (named by their start time, never renamed), files
//! older than `keep_for` deleted; and `index.sqlite` beside them, holding for each event its
//! time, type, severity, request id, route, code, and where its line is.

#[cfg(test)]
use super::Event;
use super::{Severity, Written};
use crate::config::EventsConfig;
use rusqlite::{Connection, OptionalExtension, params};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
-- The index is appended to (at its right edge: times and gateway-made ids ascend) and read
-- back rarely: a small page cache (256 KiB, not the default 2 MiB) is enough for that, and
-- keeps what a burst of events leaves behind small (the soak test's burst of 7,000
-- connections filled a 1 MiB cache, in the C allocator's memory, which keeps it).
PRAGMA cache_size = -256;
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
CREATE TABLE IF NOT EXISTS batches (
    file INTEGER NOT NULL,
    first INTEGER NOT NULL,
    end INTEGER NOT NULL,
    min_arrival INTEGER NOT NULL,
    max_arrival INTEGER NOT NULL,
    time INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS batches_by_arrival ON batches(min_arrival);
";

use super::queue::{self, FOUND_BY_TIME_SPAN_MS};

/// The most bytes of batches read to list recent served requests (`/events`).
const MAX_SCAN_BYTES: u64 = 64 << 20;

/// Under load, index rows wait and commit together: with the first batch written this long
/// after the first of them (each commit of the index costs the gateway more than the rows
/// in it; one a batch was about 2 % of the plain route's CPU). When the log goes quiet they
/// commit at the end of the writer's linger.
pub(crate) const INDEX_EVERY: Duration = Duration::from_millis(250);

/// The number of waiting index rows that commits them with the batch that reaches it (one
/// batch may add up to the queue's size).
const MAX_PENDING_ROWS: usize = 4096;

/// One write's events that have no rows: where their lines are and their arrivals.
struct BatchRow {
    /// The file's id in the index.
    file: i64,
    first: u64,
    end: u64,
    min_arrival: i64,
    max_arrival: i64,
    time: i64,
}

/// An event's index row, waiting for the next commit: the [`queue::Entry`]'s fields, and
/// where its line is (the file's id, the offset in it).
struct Row {
    ms: i64,
    kind: &'static str,
    severity: Severity,
    request_id: Option<String>,
    route: Option<Arc<str>>,
    code: Option<std::borrow::Cow<'static, str>>,
    file: i64,
    offset: i64,
}

/// What the index is yet to be told: rows of events written to their file since the last
/// commit.
#[derive(Default)]
struct Pending {
    /// Events that get a row each.
    rows: Vec<Row>,
    /// Writes whose served requests are found by their arrival.
    batches: Vec<BatchRow>,
    /// When the first of them was written.
    since: Option<Instant>,
}

/// The index file's name in the log's folder.
pub(crate) const INDEX: &str = "index.sqlite";

/// The writer's side.
pub(crate) struct Store {
    dir: PathBuf,
    db: Connection,
    /// The current file, appended a batch at a time (one write each: no buffer of its own).
    file: File,
    file_id: i64,
    file_len: u64,
    file_started: Instant,
    max_file_bytes: u64,
    rotate_every: Duration,
    keep_for: Duration,
    last_retention: Instant,
    /// For tests' batches only: the senders' queue keeps the time of the last event.
    #[cfg(test)]
    last_ms: i64,
    /// A write failed part way: the next batch starts a new file.
    torn: bool,
    /// Rows written to the files, not yet to the index.
    pending: Pending,
}

impl Drop for Store {
    /// Rows still waiting are committed (a writer that stops on a panic loses no more of
    /// the index than its last batch).
    fn drop(&mut self) {
        let _ = self.commit_index();
    }
}

/// Where [`Store::write`] puts what it wrote for the consumers, and which types' lines they
/// read.
pub(crate) type ForConsumers<'w, 'b> = (&'w mut Vec<Written<'b>>, &'w dyn Fn(&str) -> bool);

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
            #[cfg(test)]
            last_ms: 0,
            torn: false,
            pending: Pending::default(),
        };
        store.retention();
        Ok(store)
    }

    /// Appends `batch` to the file and its rows to those waiting for the index, committing
    /// them when they are due ([`INDEX_EVERY`], or [`MAX_PENDING_ROWS`]); filling `written`
    /// for the consumers when there are any, with the lines of the types the predicate
    /// says they read. The consumers get the batch even when the disk refuses it. A row
    /// is committed only after its line was written, so none points past a file's end.
    pub(crate) fn write<'b>(
        &mut self,
        batch: &'b queue::Batch,
        written: Option<ForConsumers<'_, 'b>>,
    ) -> Result<(), String> {
        if let Some((w, reads)) = written {
            let unread: Arc<str> = Arc::from("");
            w.extend(batch.lines().map(|(e, line)| Written {
                kind: e.kind,
                severity: e.severity,
                route: e.route.as_deref(),
                code: e.code.as_deref(),
                line: if reads(e.kind) {
                    String::from_utf8_lossy(line).into()
                } else {
                    unread.clone()
                },
            }));
        }
        let appended = self.append(batch);
        let pending = &mut self.pending;
        if pending.since.is_none() && !(pending.rows.is_empty() && pending.batches.is_empty()) {
            pending.since = Some(Instant::now());
        }
        // Due even when this batch failed: the rows of the batches before it are in the file.
        let due = pending.rows.len() >= MAX_PENDING_ROWS
            || pending.since.is_some_and(|t| t.elapsed() >= INDEX_EVERY);
        let committed = if due { self.commit_index() } else { Ok(()) };
        if self.last_retention.elapsed() >= Duration::from_secs(3600) {
            self.retention();
        }
        appended.and(committed)
    }

    /// Appends `batch` to the current file (starting a new one when due) and its rows to
    /// those waiting for the index.
    fn append(&mut self, batch: &queue::Batch) -> Result<(), String> {
        if self.torn
            || self.file_len >= self.max_file_bytes
            || self.file_started.elapsed() >= self.rotate_every
        {
            self.rotate()
                .map_err(|e| format!("cannot start a new file: {e}"))?;
        }
        let first = self.file_len;
        if let Err(e) = self.file.write_all(&batch.bytes) {
            // How much of the batch reached the file is not known: the next batch starts
            // a new file, and none of this one is indexed.
            self.torn = true;
            return Err(e.to_string());
        }
        self.file_len += batch.bytes.len() as u64;
        let mut by_arrival: Option<BatchRow> = None;
        for e in &batch.entries {
            match e.by_arrival {
                Some(a) => {
                    let b = by_arrival.get_or_insert(BatchRow {
                        file: self.file_id,
                        first,
                        end: self.file_len,
                        min_arrival: a,
                        max_arrival: a,
                        time: e.ms,
                    });
                    b.min_arrival = b.min_arrival.min(a);
                    b.max_arrival = b.max_arrival.max(a);
                }
                None => self.pending.rows.push(Row {
                    ms: e.ms,
                    kind: e.kind,
                    severity: e.severity,
                    request_id: e.request_id.clone(),
                    route: e.route.clone(),
                    code: e.code.clone(),
                    file: self.file_id,
                    offset: (first + e.start as u64) as i64,
                }),
            }
        }
        self.pending.batches.extend(by_arrival);
        Ok(())
    }

    /// Whether rows wait for the index.
    pub(crate) fn has_pending(&self) -> bool {
        self.pending.since.is_some()
    }

    /// Commits the rows waiting for the index (they are dropped when the commit fails, as
    /// a batch's rows were).
    pub(crate) fn commit_index(&mut self) -> Result<(), String> {
        let pending = std::mem::take(&mut self.pending);
        if pending.since.is_none() {
            return Ok(());
        }
        let rows = pending.rows.len() + pending.batches.len();
        self.index(&pending).map_err(|e| {
            format!("cannot commit {rows} rows to the event index (their lines are in the event files): {e}")
        })
    }

    /// Writes `events` as one batch (tests; the log's senders build batches as they send).
    #[cfg(test)]
    pub(crate) fn write_events(&mut self, events: Vec<Event>) -> Result<(), String> {
        let mut batch = queue::Batch::default();
        for mut ev in events {
            let ms = crate::time::unix_millis(ev.time).max(self.last_ms);
            self.last_ms = ms;
            batch.push(&mut ev, ms).map_err(|e| e.to_string())?;
        }
        self.write(&batch, None)?;
        self.commit_index()
    }

    fn index(&mut self, pending: &Pending) -> rusqlite::Result<()> {
        let tx = self.db.transaction()?;
        if !pending.rows.is_empty() {
            let mut insert = tx.prepare_cached(
                "INSERT INTO events (time, type, severity, request_id, route, code, file, offset) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for r in &pending.rows {
                insert.execute(params![
                    r.ms,
                    r.kind,
                    r.severity.rank(),
                    r.request_id,
                    r.route,
                    r.code.as_deref(),
                    r.file,
                    r.offset
                ])?;
            }
        }
        if !pending.batches.is_empty() {
            let mut insert = tx.prepare_cached(
                "INSERT INTO batches (file, first, end, min_arrival, max_arrival, time) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for b in &pending.batches {
                insert.execute(params![
                    b.file,
                    b.first as i64,
                    b.end as i64,
                    b.min_arrival,
                    b.max_arrival,
                    b.time
                ])?;
            }
        }
        tx.commit()
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        // The old file's rows before it is marked ended (and before retention runs).
        if let Err(e) = self.commit_index() {
            tracing::error!(target: "candor::events", error = %e, "event index");
        }
        let (file, id) = new_file(&self.dir, &self.db, Some(self.file_id))?;
        self.file = file;
        self.file_id = id;
        self.file_len = 0;
        self.file_started = Instant::now();
        self.torn = false;
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
            let _ = self.db.execute("DELETE FROM batches WHERE file = ?1", [id]);
            let _ = self.db.execute("DELETE FROM files WHERE id = ?1", [id]);
            tracing::info!(target: "candor::events", file = %name, "expired event file deleted (events.keep_for)");
        }
    }

    /// Commits what waits for the index and marks the file's end.
    pub(crate) fn finish(&mut self) {
        if let Err(e) = self.commit_index() {
            tracing::error!(target: "candor::events", error = %e, "cannot write the last events to the event index");
        }
        let _ = self.db.execute(
            "UPDATE files SET ended = ?1 WHERE id = ?2",
            params![crate::time::unix_millis(SystemTime::now()), self.file_id],
        );
    }
}

/// Starts a new file (closing `previous` in the index).
fn new_file(dir: &Path, db: &Connection, previous: Option<i64>) -> std::io::Result<(File, i64)> {
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
    Ok((file, db.last_insert_rowid()))
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
        // A lookup reads a few pages: the writer's small cache (see SCHEMA) does.
        let _ = db.execute_batch("PRAGMA cache_size = -256;");
        Ok(EventReader {
            dir: dir.to_owned(),
            db,
        })
    }

    /// The events of request `id`, in order: the newest [`MAX_PER_REQUEST`] (a client may
    /// send one id with many requests).
    pub fn by_request(&self, id: &str) -> Result<Vec<serde_json::Value>, String> {
        let mut found = self.positions(
            "SELECT e.file, f.name, e.offset FROM events e JOIN files f ON f.id = e.file WHERE e.request_id = ?1 ORDER BY e.rowid DESC LIMIT ?2",
            &[&id as &dyn rusqlite::ToSql, &(MAX_PER_REQUEST as i64)],
        )?;
        found.extend(self.served_by_arrival(id)?);
        let mut events = self.lines(newest(found, MAX_PER_REQUEST))?;
        events.reverse();
        Ok(events)
    }

    /// The lines of the served requests written without rows of their own that carry
    /// request id `id` (a ULID the gateway made: its time says which batches to read).
    fn served_by_arrival(&self, id: &str) -> Result<Vec<Position>, String> {
        let Some(t) = crate::http::request_id::ulid_millis(id) else {
            return Ok(Vec::new());
        };
        let t = t as i64;
        let batches = self.batches(
            "SELECT b.file, f.name, b.first, b.end FROM batches b JOIN files f ON f.id = b.file WHERE b.min_arrival <= ?1 AND b.min_arrival > ?2 AND b.max_arrival >= ?1 ORDER BY b.rowid",
            &[&t as &dyn rusqlite::ToSql, &(t - FOUND_BY_TIME_SPAN_MS)],
        )?;
        let needle = format!("\"request_id\":\"{id}\"");
        let mut found = Vec::new();
        for b in batches {
            self.scan(&b, &mut |offset, line| {
                if line.contains(&needle) {
                    found.push(Position {
                        file: b.file,
                        name: b.name.clone(),
                        offset,
                    });
                }
                true
            });
        }
        Ok(found)
    }

    /// The newest events that pass `f`, newest first.
    pub fn recent(&self, f: &EventFilter) -> Result<Vec<serde_json::Value>, String> {
        let limit = f.limit.unwrap_or(100).clamp(1, 1000);
        let mut sql = String::from(
            "SELECT e.file, f.name, e.offset FROM events e JOIN files f ON f.id = e.file WHERE 1",
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
        args.push(Box::new(limit as i64));
        let refs: Vec<&dyn rusqlite::ToSql> = args.iter().map(|a| a.as_ref()).collect();
        let mut found = self.positions(&sql, &refs)?;
        found.extend(self.served_recent(f, limit)?);
        self.lines(newest(found, limit))
    }

    /// The newest `limit` served requests written without rows of their own that pass
    /// `f`, reading batches back from the newest (at most [`MAX_SCAN_BYTES`] of them).
    fn served_recent(&self, f: &EventFilter, limit: usize) -> Result<Vec<Position>, String> {
        let kind_passes = match f.kind.as_deref() {
            None | Some("*") => true,
            Some(k) if k.ends_with(".*") => {
                super::kinds::REQUEST_COMPLETED.starts_with(&k[..k.len() - 1])
            }
            Some(k) => k == super::kinds::REQUEST_COMPLETED,
        };
        if !kind_passes || f.code.is_some() || f.severity.is_some_and(|s| s > Severity::Info) {
            return Ok(Vec::new());
        }
        if let Some(id) = &f.request_id {
            let mut found = self.served_by_arrival(id)?;
            if let Some(route) = &f.route {
                let needle = format!("\"route\":{}", serde_json::Value::from(route.as_str()));
                found.retain(|p| self.line_at(p).is_some_and(|l| l.contains(&needle)));
            }
            return Ok(found);
        }
        let route = f
            .route
            .as_ref()
            .map(|r| format!("\"route\":{}", serde_json::Value::from(r.as_str())));
        let batches = self.batches(
            "SELECT b.file, f.name, b.first, b.end FROM batches b JOIN files f ON f.id = b.file ORDER BY b.rowid DESC",
            &[],
        )?;
        let mut found = Vec::new();
        let mut scanned = 0;
        for b in batches {
            if found.len() >= limit || scanned >= MAX_SCAN_BYTES {
                break;
            }
            scanned += b.end.saturating_sub(b.first);
            let mut here = Vec::new();
            self.scan(&b, &mut |offset, line| {
                let served = line.contains("\"type\":\"request.completed\",\"severity\":\"info\"")
                    && !line.contains("\"code\":");
                if served && route.as_ref().is_none_or(|r| line.contains(r.as_str())) {
                    here.push(Position {
                        file: b.file,
                        name: b.name.clone(),
                        offset,
                    });
                }
                true
            });
            found.extend(here.into_iter().rev());
        }
        Ok(found)
    }

    /// The time (ms since the epoch) of the oldest event kept, if any.
    pub fn oldest(&self) -> Option<i64> {
        self.db
            .query_row(
                "SELECT MIN(t) FROM (SELECT (SELECT time FROM events ORDER BY rowid LIMIT 1) AS t UNION ALL SELECT (SELECT time FROM batches ORDER BY rowid LIMIT 1))",
                [],
                |r| r.get(0),
            )
            .optional()
            .ok()
            .flatten()
            .flatten()
    }

    fn positions(&self, sql: &str, args: &[&dyn rusqlite::ToSql]) -> Result<Vec<Position>, String> {
        self.db
            .prepare(sql)
            .and_then(|mut s| {
                s.query_map(args, |r| {
                    Ok(Position {
                        file: r.get(0)?,
                        name: r.get(1)?,
                        offset: r.get(2)?,
                    })
                })?
                .collect()
            })
            .map_err(|e| format!("cannot read the event index: {e}"))
    }

    fn batches(&self, sql: &str, args: &[&dyn rusqlite::ToSql]) -> Result<Vec<Batch>, String> {
        self.db
            .prepare(sql)
            .and_then(|mut s| {
                s.query_map(args, |r| {
                    Ok(Batch {
                        file: r.get(0)?,
                        name: r.get(1)?,
                        first: r.get::<_, i64>(2)?.max(0) as u64,
                        end: r.get::<_, i64>(3)?.max(0) as u64,
                    })
                })?
                .collect()
            })
            .map_err(|e| format!("cannot read the event index: {e}"))
    }

    /// Calls `each` with the offset and text of every line of batch `b`, until it answers
    /// false. A file that is gone or unreadable gives nothing (retention may delete it
    /// between the query and the read).
    fn scan(&self, b: &Batch, each: &mut dyn FnMut(i64, &str) -> bool) {
        if !is_log_file_name(&b.name) {
            return;
        }
        let Ok(mut file) = File::open(self.dir.join(&b.name)) else {
            return;
        };
        let len = b.end.saturating_sub(b.first).min(MAX_SCAN_BYTES);
        let mut bytes = Vec::with_capacity(len as usize);
        if file.seek(SeekFrom::Start(b.first)).is_err()
            || file.take(len).read_to_end(&mut bytes).is_err()
        {
            return;
        }
        let mut at = 0;
        for line in bytes.split(|&c| c == b'\n') {
            let offset = (b.first + at) as i64;
            at += line.len() as u64 + 1;
            if let Ok(text) = std::str::from_utf8(line)
                && !text.is_empty()
                && !each(offset, text)
            {
                break;
            }
        }
    }

    /// The text of the line at `p`, if it can be read.
    fn line_at(&self, p: &Position) -> Option<String> {
        if !is_log_file_name(&p.name) {
            return None;
        }
        let mut reader = BufReader::new(File::open(self.dir.join(&p.name)).ok()?);
        reader.seek(SeekFrom::Start(p.offset as u64)).ok()?;
        let mut text = String::new();
        reader.take(4 << 20).read_line(&mut text).ok()?;
        Some(text)
    }

    fn lines(&self, rows: Vec<Position>) -> Result<Vec<serde_json::Value>, String> {
        let mut open: Option<(String, BufReader<File>)> = None;
        let mut out = Vec::with_capacity(rows.len());
        let mut text = String::new();
        let mut unreadable: Option<String> = None;
        let found = rows.len();
        for Position { name, offset, .. } in rows {
            // The index names files in the log's own folder, nothing else.
            if !is_log_file_name(&name) {
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

/// Where one event's line is.
#[derive(Debug)]
struct Position {
    file: i64,
    name: String,
    offset: i64,
}

/// One batch row: the file and the bytes of its lines.
#[derive(Debug)]
struct Batch {
    file: i64,
    name: String,
    first: u64,
    end: u64,
}

/// The newest `limit` of `found`, newest first in the order written (file, then offset),
/// each once.
fn newest(mut found: Vec<Position>, limit: usize) -> Vec<Position> {
    found.sort_by_key(|p| std::cmp::Reverse((p.file, p.offset)));
    found.dedup_by(|a, b| a.file == b.file && a.offset == b.offset);
    found.truncate(limit);
    found
}

/// Whether the index's `name` is a file in the log's own folder (nothing else is read).
fn is_log_file_name(name: &str) -> bool {
    !name.contains(['/', '\\']) && !name.starts_with('.')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Event, kinds};

    fn one(mut ev: Event) -> queue::Batch {
        let mut b = queue::Batch::default();
        let ms = crate::time::unix_millis(ev.time);
        b.push(&mut ev, ms).unwrap();
        b
    }

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
        // The consumers read no request's line here: those are not copied for them.
        let reads = |kind: &str| kind != kinds::REQUEST_REJECTED;
        let mut handed = 0;
        for i in 0..600 {
            let id = format!("r{}", i % 300);
            let ev = Event::new(kinds::REQUEST_REJECTED, Severity::Notice)
                .request(&id)
                .route("devices")
                .code("route_not_found")
                .fact("padding", "x".repeat(200));
            let mut written = Vec::new();
            let batch = one(ev);
            store.write(&batch, Some((&mut written, &reads))).unwrap();
            let w = &written[0];
            assert_eq!(
                (w.kind, w.route, w.code, &*w.line),
                (
                    kinds::REQUEST_REJECTED,
                    Some("devices"),
                    Some("route_not_found"),
                    ""
                )
            );
            handed += written.len();
        }
        let ev = Event::new(kinds::CONFIG_APPLIED, Severity::Info).fact("generation", 2);
        let mut written = Vec::new();
        let batch = one(ev);
        store.write(&batch, Some((&mut written, &reads))).unwrap();
        handed += written.len();
        assert!(
            written[0].line.contains("\"generation\":2"),
            "{}",
            written[0].line
        );
        drop(written);
        store.finish();
        assert_eq!(handed, 601);
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
    fn rows_wait_for_the_index_until_due_or_told() {
        let dir = temp_dir("pending");
        let mut store = Store::open(&dir, &EventsConfig::default()).unwrap();
        fn rejected(id: &str) -> Event<'_> {
            Event::new(kinds::REQUEST_REJECTED, Severity::Notice)
                .request(id)
                .code("route_not_found")
        }
        store.write(&one(rejected("early")), None).unwrap();
        assert!(store.has_pending());
        // In the file, not yet in the index.
        let r = EventReader::open(&dir).unwrap();
        assert!(r.by_request("early").unwrap().is_empty());
        // Told (the log went quiet): committed.
        store.commit_index().unwrap();
        assert!(!store.has_pending());
        assert_eq!(r.by_request("early").unwrap().len(), 1);
        // Due by age: the write that comes after INDEX_EVERY commits what waits.
        store.write(&one(rejected("aged")), None).unwrap();
        std::thread::sleep(INDEX_EVERY);
        store.write(&one(rejected("later")), None).unwrap();
        assert!(!store.has_pending());
        assert_eq!(r.by_request("aged").unwrap().len(), 1);
        assert_eq!(r.by_request("later").unwrap().len(), 1);
        // Due by number: MAX_PENDING_ROWS rows commit at once.
        let mut batch = queue::Batch::default();
        let ids: Vec<String> = (0..MAX_PENDING_ROWS).map(|i| format!("n{i}")).collect();
        for id in &ids {
            let mut ev = rejected(id);
            let ms = crate::time::unix_millis(ev.time);
            batch.push(&mut ev, ms).unwrap();
        }
        store.write(&batch, None).unwrap();
        assert!(!store.has_pending());
        assert_eq!(r.by_request("n4095").unwrap().len(), 1);
        // What waits at the end is committed by finish.
        store.write(&one(rejected("last")), None).unwrap();
        store.finish();
        assert_eq!(r.by_request("last").unwrap().len(), 1);
        // And by a store dropped without finish (a writer that stopped on a panic).
        store.write(&one(rejected("dropped")), None).unwrap();
        assert!(store.has_pending());
        drop(store);
        assert_eq!(r.by_request("dropped").unwrap().len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A served request with an id the gateway made: no row of its own, found by the id's
    /// time; other events of the same request keep their rows; both listed in order.
    #[test]
    fn served_requests_are_found_by_the_time_in_their_ids() {
        let dir = temp_dir("by-arrival");
        let mut store = Store::open(&dir, &EventsConfig::default()).unwrap();
        let mut ids = Vec::new();
        let mut batch = Vec::new();
        for i in 0..50 {
            let rid = crate::http::request_id::RequestId::new();
            let mut auth = Event::new(kinds::AUTH_SUCCEEDED, Severity::Info).route("r");
            auth.request_id = Some(rid.text.clone().into());
            let mut done = Event::new(kinds::REQUEST_COMPLETED, Severity::Info)
                .route(if i % 2 == 0 { "even" } else { "odd" });
            done.request_id = Some(rid.text.clone().into());
            done.arrived_ms = rid.made_at_ms.map(|m| m as i64);
            batch.push(auth);
            batch.push(done);
            ids.push(rid.text);
            if i % 10 == 9 {
                store.write_events(std::mem::take(&mut batch)).unwrap();
            }
        }
        // A client's own id, and a served request whose answer is an upstream's problem,
        // are indexed one by one.
        let mut own = Event::new(kinds::REQUEST_COMPLETED, Severity::Info).request("client-id");
        own.arrived_ms = None;
        let mut problem = Event::new(kinds::REQUEST_COMPLETED, Severity::Info)
            .request(&ids[0])
            .code("upstream_said_no");
        problem.arrived_ms = crate::http::request_id::ulid_millis(&ids[0]).map(|m| m as i64);
        store.write_events(vec![own, problem]).unwrap();
        store.finish();

        let rows: i64 = store
            .db
            .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 52, "50 auth.succeeded + the two indexed one by one");
        let batches: i64 = store
            .db
            .query_row("SELECT COUNT(*) FROM batches", [], |r| r.get(0))
            .unwrap();
        assert_eq!(batches, 5);

        let r = EventReader::open(&dir).unwrap();
        let told = r.by_request(&ids[7]).unwrap();
        let kinds: Vec<&str> = told.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["auth.succeeded", "request.completed"]);
        assert_eq!(told[1]["route"], "odd");
        let first = r.by_request(&ids[0]).unwrap();
        assert_eq!(first.len(), 3);
        assert_eq!(first[2]["code"], "upstream_said_no");
        assert_eq!(r.by_request("client-id").unwrap().len(), 1);
        assert!(
            r.by_request(&crate::http::request_id::new_ulid())
                .unwrap()
                .is_empty()
        );

        // Recent lists merge rows and batches, newest first.
        let recent = r
            .recent(&EventFilter {
                limit: Some(5),
                ..Default::default()
            })
            .unwrap();
        let kinds: Vec<&str> = recent.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(kinds[..2], ["request.completed", "request.completed"]);
        assert_eq!(recent[0]["code"], "upstream_said_no");
        assert_eq!(recent[1]["request_id"], "client-id");
        assert_eq!(recent[2]["request_id"], ids[49].as_str());
        assert_eq!(recent[2]["type"], "request.completed");
        assert_eq!(recent[3]["request_id"], ids[49].as_str());
        assert_eq!(recent[3]["type"], "auth.succeeded");
        let odd = r
            .recent(&EventFilter {
                kind: Some("request.*".into()),
                route: Some("odd".into()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(odd.len(), 25);
        assert_eq!(odd[0]["request_id"], ids[49].as_str());
        let by_id = r
            .recent(&EventFilter {
                request_id: Some(ids[3].clone()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(by_id.len(), 2);
        for f in [
            EventFilter {
                severity: Some(Severity::Notice),
                ..Default::default()
            },
            EventFilter {
                kind: Some("auth.*".into()),
                ..Default::default()
            },
        ] {
            assert!(
                r.recent(&f)
                    .unwrap()
                    .iter()
                    .all(|e| e["type"] != "request.completed" || e.get("code").is_some())
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn files_past_keep_for_are_deleted_with_their_rows() {
        let dir = temp_dir("retention");
        let config = EventsConfig::default();
        let mut store = Store::open(&dir, &config).unwrap();
        let ev = Event::new(kinds::API_STARTED, Severity::Info).request("old");
        store.write_events(vec![ev]).unwrap();
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
