//! The API event log: typed events (what happened to the API, its connections, its requests
//! and its configuration), each with an id, a time, a type, a severity, the request id where
//! there is one, and facts — never a secret.
//!
//! A request never waits on disk: [`EventLog::send`] makes the event its JSON line and puts
//! it in a bounded queue ([`queue`]); a writer thread takes the queued lines at once,
//! appends them to a JSON-lines file ([`store`]), hands the batch to the consumers
//! (subscriptions, alerts), and indexes the lines in SQLite (request id, time, type, code):
//! under load a few times a second, at once when the log goes quiet. A full
//! queue makes the sender wait for room: nothing is lost, and the waits are counted.
//!
//! [`story`] reads the log back: the events of one request, told for `candor explain`
//! and the admin API's `/requests/{id}`.

pub(crate) mod alerts;
mod line;
pub(crate) mod queue;
pub(crate) mod sinks;
pub(crate) mod store;
pub mod story;
pub(crate) mod subscriptions;
pub(crate) mod told;

use crate::pipeline::trail::Trail;
use serde::Serialize;
use serde::ser::SerializeMap;
use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

pub use store::{EventFilter, EventReader};

/// How much an event matters, in syslog's order (RFC 5424 §6.2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Routine: a request served, the gateway started.
    Info,
    /// Normal but worth a look: a request refused for the client's reasons.
    Notice,
    /// Something may need an operator: an upstream down, a configuration rejected.
    Warning,
    /// Something failed: a request the gateway or its upstream could not serve.
    Error,
    /// The API is not serving.
    Critical,
}

impl Severity {
    /// All, least first.
    pub const ALL: [Severity; 5] = [
        Severity::Info,
        Severity::Notice,
        Severity::Warning,
        Severity::Error,
        Severity::Critical,
    ];

    /// `info`, `notice`, `warning`, `error`, `critical`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Notice => "notice",
            Severity::Warning => "warning",
            Severity::Error => "error",
            Severity::Critical => "critical",
        }
    }

    /// The severity named `s`.
    pub fn parse(s: &str) -> Option<Severity> {
        Severity::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// The number stored in the index (0 = info).
    pub(crate) fn rank(self) -> i64 {
        self as i64
    }

    /// The RFC 5424 severity number.
    pub fn syslog(self) -> u8 {
        match self {
            Severity::Info => 6,
            Severity::Notice => 5,
            Severity::Warning => 4,
            Severity::Error => 3,
            Severity::Critical => 2,
        }
    }
}

impl Serialize for Severity {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The event types, as subscriptions name them.
pub mod kinds {
    /// The gateway started serving (listeners, configuration generation, version).
    pub const API_STARTED: &str = "api.started";
    /// The gateway stopped (reason).
    pub const API_STOPPED: &str = "api.stopped";
    /// The gateway was restarted by its supervisor after a crash (exit status or signal).
    pub const API_RESTARTED: &str = "api.restarted";
    /// A connection failed before a request could be read (TLS handshake, timeouts).
    pub const CONNECTION_FAILED: &str = "connection.failed";
    /// A connection closed: bytes, duration, whether after a response, who closed it.
    pub const CONNECTION_CLOSED: &str = "connection.closed";
    /// A client authenticated (client, account).
    pub const AUTH_SUCCEEDED: &str = "auth.succeeded";
    /// A client failed to authenticate (client, account where known, code).
    pub const AUTH_FAILED: &str = "auth.failed";
    /// The gateway refused a request (stage, code, facts).
    pub const REQUEST_REJECTED: &str = "request.rejected";
    /// A request was answered (status, timings, upstream tries).
    pub const REQUEST_COMPLETED: &str = "request.completed";
    /// A configuration was loaded (generation, file).
    pub const CONFIG_APPLIED: &str = "config.applied";
    /// A configuration was rejected; the running one stays (the full report).
    pub const CONFIG_REJECTED: &str = "config.rejected";
    /// An upstream target failed its health checks.
    pub const UPSTREAM_DOWN: &str = "upstream.down";
    /// An upstream target passes its health checks again.
    pub const UPSTREAM_UP: &str = "upstream.up";
    /// A rate limit refused a request.
    pub const LIMIT_EXCEEDED: &str = "limit.exceeded";
    /// An account's quota refused a request.
    pub const QUOTA_EXCEEDED: &str = "quota.exceeded";
    /// Events a sink dropped while it was failing, told once it recovers.
    pub const EVENTS_DROPPED: &str = "events.dropped";
    /// An alert was raised.
    pub const ALERT_RAISED: &str = "alert.raised";
    /// The store the gateways share state through (Redis) stopped answering.
    pub const SHARED_STATE_DOWN: &str = "shared_state.down";
    /// It answers again.
    pub const SHARED_STATE_UP: &str = "shared_state.up";

    /// Every type.
    pub const ALL: &[&str] = &[
        API_STARTED,
        API_STOPPED,
        API_RESTARTED,
        CONNECTION_FAILED,
        CONNECTION_CLOSED,
        AUTH_SUCCEEDED,
        AUTH_FAILED,
        REQUEST_REJECTED,
        REQUEST_COMPLETED,
        CONFIG_APPLIED,
        CONFIG_REJECTED,
        UPSTREAM_DOWN,
        UPSTREAM_UP,
        LIMIT_EXCEEDED,
        QUOTA_EXCEEDED,
        EVENTS_DROPPED,
        ALERT_RAISED,
        SHARED_STATE_DOWN,
        SHARED_STATE_UP,
    ];
}

/// One event, as emitted (its id is given when it is written). It may borrow from its
/// sender (a request's id and facts): it becomes its line before the send returns.
#[derive(Debug)]
pub(crate) struct Event<'a> {
    /// When it happened.
    pub(crate) time: SystemTime,
    /// Its type, one of [`kinds`].
    pub(crate) kind: &'static str,
    /// How much it matters.
    pub(crate) severity: Severity,
    /// The request it is about.
    pub(crate) request_id: Option<Cow<'a, str>>,
    /// The W3C trace it belongs to (written as its 32 hex digits).
    pub(crate) trace_id: Option<[u8; 16]>,
    /// The route it is about.
    pub(crate) route: Option<Arc<str>>,
    /// The catalog code (or an upstream's problem code), for errors.
    pub(crate) code: Option<Cow<'static, str>>,
    /// What else is known.
    pub(crate) facts: Facts<'a>,
    /// For a request's event: its arrival (ms since the Unix epoch), when its id is a ULID
    /// the gateway made then, so that the id tells the time. The store finds a served
    /// request's `request.completed` by that time instead of indexing it.
    pub(crate) arrived_ms: Option<i64>,
}

/// An event's facts.
#[derive(Debug)]
pub(crate) enum Facts<'a> {
    /// Named values.
    Map(serde_json::Map<String, serde_json::Value>),
    /// A request's story.
    Request(&'a RequestFacts<'a>),
}

/// What a request's event tells: the request, the answer, the timings and the trail.
#[derive(Debug, Serialize)]
pub(crate) struct RequestFacts<'a> {
    /// The method (none for a request the head guard refused before reading one: written
    /// as ""). Kept as `http::Method`: a standard one is copied without an allocation.
    #[serde(serialize_with = "method_text")]
    pub(crate) method: Option<http::Method>,
    /// The path (never the query, which may hold a credential).
    pub(crate) path: Cow<'a, str>,
    /// The client's address.
    pub(crate) client: IpAddr,
    /// The status sent.
    pub(crate) status: u16,
    /// Who the error is blamed on, for an error: client, gateway, upstream.
    #[serde(skip_serializing_if = "str::is_empty")]
    pub(crate) source: &'static str,
    /// Which side ended the request, for an error.
    #[serde(skip_serializing_if = "str::is_empty")]
    pub(crate) ended_by: &'static str,
    /// From the head's arrival to the answer's head, in microseconds.
    pub(crate) duration_us: u64,
    /// Of that, the time spent on the upstream (every try, back-off included).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) upstream_us: Option<u64>,
    /// The configuration generation that served it.
    pub(crate) config_generation: u64,
    /// For an error, its troubleshooting page (the problem's `type`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) docs: Option<String>,
    /// Each stage's decision, in order.
    pub(crate) trail: Trail,
}

fn method_text<S: serde::Serializer>(m: &Option<http::Method>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(m.as_ref().map_or("", http::Method::as_str))
}

/// A path as an event keeps it: at most [`MAX_PATH`] bytes, then how long it was (a refused
/// 80 KiB target is not logged whole).
pub(crate) fn kept_path(path: &str) -> Cow<'_, str> {
    if path.len() <= MAX_PATH {
        return Cow::Borrowed(path);
    }
    let mut end = MAX_PATH;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}… ({} bytes)", &path[..end], path.len()))
}

/// The longest path an event keeps whole.
pub(crate) const MAX_PATH: usize = 2048;

impl<'a> Event<'a> {
    /// An event of `kind` now, with no facts yet.
    pub(crate) fn new(kind: &'static str, severity: Severity) -> Self {
        Self::at(SystemTime::now(), kind, severity)
    }

    /// An event of `kind` that happened at `time`, with no facts yet.
    pub(crate) fn at(time: SystemTime, kind: &'static str, severity: Severity) -> Self {
        Event {
            time,
            kind,
            severity,
            request_id: None,
            trace_id: None,
            route: None,
            code: None,
            facts: Facts::Map(serde_json::Map::new()),
            arrived_ms: None,
        }
    }

    /// Adds a fact.
    pub(crate) fn fact(mut self, name: &str, value: impl Into<serde_json::Value>) -> Self {
        if let Facts::Map(m) = &mut self.facts {
            m.insert(name.to_owned(), value.into());
        }
        self
    }

    /// Sets the catalog code.
    pub(crate) fn code(mut self, code: impl Into<Cow<'static, str>>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// Sets the request id.
    pub(crate) fn request(mut self, id: &'a str) -> Self {
        self.request_id = Some(Cow::Borrowed(id));
        self
    }

    /// Sets the route.
    pub(crate) fn route(mut self, name: &str) -> Self {
        self.route = Some(name.into());
        self
    }
}

/// The event log of the running gateway, for the few places deep in the code that have no
/// handle of their own (the shared rate-limit store): set when the server is bound.
static PROCESS_LOG: std::sync::OnceLock<std::sync::Weak<EventLog>> = std::sync::OnceLock::new();

/// Makes `log` the process's event log (the first server bound in a process).
pub(crate) fn set_process_log(log: &Arc<EventLog>) {
    let _ = PROCESS_LOG.set(Arc::downgrade(log));
}

/// Records `ev` in the process's event log, if there is one (without waiting).
pub(crate) fn emit_to_process_log(ev: Event<'_>) {
    if let Some(log) = PROCESS_LOG.get().and_then(std::sync::Weak::upgrade) {
        log.emit(ev);
    }
}

/// An event as the writer wrote it: its index fields (borrowed from the batch) and its line
/// (without the newline), for consumers.
#[derive(Clone, Debug)]
pub(crate) struct Written<'a> {
    /// The type.
    pub(crate) kind: &'static str,
    /// The severity.
    pub(crate) severity: Severity,
    /// The route, if any.
    pub(crate) route: Option<&'a str>,
    /// The code, if any.
    pub(crate) code: Option<&'a str>,
    /// The JSON line; empty when no consumer reads the lines of this type
    /// ([`Consumer::reads_lines`]), so that it is not copied for nobody.
    pub(crate) line: Arc<str>,
}

/// What receives each batch the writer wrote (subscriptions, alert rules). Called on the
/// writer's thread: a consumer that waits holds the log back (its sink's `block` mode).
pub(crate) trait Consumer: Send + Sync + std::fmt::Debug {
    /// Takes a batch, in order.
    fn take(&self, batch: &[Written<'_>]);

    /// Whether it reads the lines of events of type `kind` (by default, of every type).
    fn reads_lines(&self, kind: &str) -> bool {
        let _ = kind;
        true
    }
}

/// The longest a request waits for room in a full event queue.
const MAX_SEND_WAIT: Duration = Duration::from_secs(5);

/// Counters of the log itself.
#[derive(Debug, Default)]
pub(crate) struct LogStats {
    /// Events emitted.
    pub(crate) emitted: AtomicU64,
    /// Events written.
    pub(crate) written: AtomicU64,
    /// Events lost: the queue was full for an event that could not wait, or the log closed.
    pub(crate) lost: AtomicU64,
    /// Sends that waited for room in the queue, and how long in all (µs).
    pub(crate) waited: AtomicU64,
    pub(crate) waited_us: AtomicU64,
    /// Files or index writes that failed.
    pub(crate) write_errors: AtomicU64,
}

/// The API event log of one gateway process.
#[derive(Debug)]
pub(crate) struct EventLog {
    queue: Option<Arc<queue::Queue>>,
    dir: Option<std::path::PathBuf>,
    consumers: Arc<arc_swap::ArcSwap<Vec<Arc<dyn Consumer>>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    pub(crate) stats: Arc<LogStats>,
    /// How long a send waits for room ([`MAX_SEND_WAIT`]).
    send_wait: Duration,
    /// Which limits' refusals were told when ([`told`]).
    pub(crate) told: told::Told,
}

impl LogStats {
    /// The counters as `/stats` shows them.
    pub(crate) fn to_json(&self, on: bool) -> serde_json::Value {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        serde_json::json!({
            "on": on,
            "emitted": get(&self.emitted),
            "written": get(&self.written),
            "lost": get(&self.lost),
            "waited": get(&self.waited),
            "waited_us": get(&self.waited_us),
            "write_errors": get(&self.write_errors),
        })
    }
}

impl EventLog {
    /// A log that records nothing (`[events] enabled = false`).
    pub(crate) fn off() -> Arc<Self> {
        Arc::new(EventLog {
            queue: None,
            dir: None,
            consumers: Default::default(),
            writer: Mutex::new(None),
            stats: Default::default(),
            send_wait: MAX_SEND_WAIT,
            told: Default::default(),
        })
    }

    /// Opens the log in `config`'s folder under `data_dir` and starts its writer.
    pub(crate) fn open(
        config: &crate::config::EventsConfig,
        data_dir: &std::path::Path,
    ) -> Result<Arc<Self>, String> {
        if !config.enabled {
            return Ok(Self::off());
        }
        let dir = config.dir_in(data_dir);
        let store = store::Store::open(&dir, config).map_err(|e| {
            format!(
                "cannot open the event log in {}: {e} (set [events] dir, or enabled = false)",
                dir.display()
            )
        })?;
        let queue = Arc::new(queue::Queue::new(config.queue));
        let consumers: Arc<arc_swap::ArcSwap<Vec<Arc<dyn Consumer>>>> = Default::default();
        let stats: Arc<LogStats> = Default::default();
        let writer = {
            let consumers = consumers.clone();
            let stats = stats.clone();
            let queue = queue.clone();
            std::thread::Builder::new()
                .name("candor-events".into())
                .spawn(move || {
                    // A writer that dies (a panic outside the consumers) closes the queue,
                    // so that senders are not held waiting for room that never comes.
                    let _stopped = Stopped(&queue);
                    write_loop(&queue, store, &consumers, &stats)
                })
                .map_err(|e| format!("cannot start the event writer: {e}"))?
        };
        Ok(Arc::new(EventLog {
            queue: Some(queue),
            dir: Some(dir),
            consumers,
            writer: Mutex::new(Some(writer)),
            stats,
            send_wait: MAX_SEND_WAIT,
            told: Default::default(),
        }))
    }

    /// Whether events are recorded (callers skip building them when not).
    #[inline]
    pub(crate) fn on(&self) -> bool {
        self.queue.is_some()
    }

    /// The folder of the log, when it is on.
    pub(crate) fn dir(&self) -> Option<&std::path::Path> {
        self.dir.as_deref()
    }

    /// Replaces the consumers (a reload's subscriptions and alert rules).
    pub(crate) fn set_consumers(&self, consumers: Vec<Arc<dyn Consumer>>) {
        self.consumers.store(Arc::new(consumers));
    }

    /// Records `ev` without waiting: for the few places that cannot wait. When the queue is
    /// full the event is lost, and counted.
    pub(crate) fn emit(&self, mut ev: Event<'_>) {
        let Some(queue) = &self.queue else { return };
        self.stats.emitted.fetch_add(1, Ordering::Relaxed);
        if let Err(refused) = queue.push(&mut ev) {
            self.refused(&refused);
        }
    }

    /// Counts an event the queue did not take as lost.
    fn refused(&self, refused: &queue::Refused) {
        self.stats.lost.fetch_add(1, Ordering::Relaxed);
        if let queue::Refused::Unwritable(e) = refused {
            tracing::error!(target: "candor::events", error = %e, "an event could not be made into its line; it is lost");
        }
    }

    /// Records `ev`, waiting for room when the queue is full (the wait is counted; past
    /// [`MAX_SEND_WAIT`] the event is lost, and counted). Never waits on disk itself.
    pub(crate) async fn send(&self, mut ev: Event<'_>) {
        if !self.try_send(&mut ev) {
            self.send_waiting(ev).await;
        }
    }

    /// Records `ev` if the queue has room (`true`: taken, or lost and counted); `false`
    /// when the queue is full, for [`EventLog::send_waiting`] (a request's last event is
    /// sent so: only a full queue builds a waiting future, and the event is not moved).
    #[inline]
    pub(crate) fn try_send(&self, ev: &mut Event<'_>) -> bool {
        let Some(queue) = &self.queue else {
            return true;
        };
        self.stats.emitted.fetch_add(1, Ordering::Relaxed);
        match queue.push(ev) {
            Ok(()) => true,
            Err(queue::Refused::Full) => false,
            Err(refused) => {
                self.refused(&refused);
                true
            }
        }
    }

    /// Waits for room for `ev`, which [`EventLog::try_send`] gave back (already counted as
    /// emitted).
    pub(crate) async fn send_waiting(&self, mut ev: Event<'_>) {
        let Some(queue) = &self.queue else { return };
        let started = Instant::now();
        // Bounded back-pressure: a writer stuck on its disk (a hung mount) does not hold
        // requests forever; past MAX_SEND_WAIT the event is lost, and counted.
        let deadline = tokio::time::Instant::from_std(started + self.send_wait);
        loop {
            let room = queue.room.notified();
            tokio::pin!(room);
            // Listening before the second try: room made between the two is not missed.
            room.as_mut().enable();
            match queue.push(&mut ev) {
                Ok(()) => break,
                Err(queue::Refused::Full) => {}
                Err(refused) => {
                    self.refused(&refused);
                    break;
                }
            }
            if tokio::time::timeout_at(deadline, room).await.is_err() {
                self.stats.lost.fetch_add(1, Ordering::Relaxed);
                break;
            }
        }
        self.stats.waited.fetch_add(1, Ordering::Relaxed);
        self.stats
            .waited_us
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
    }

    /// Writes everything sent so far and stops the writer, waiting at most `wait`.
    pub(crate) async fn close(&self, wait: Duration) {
        let Some(queue) = &self.queue else { return };
        let (done, finished) = std::sync::mpsc::channel();
        queue.close(Some(done));
        let writer = self.writer.lock().ok().and_then(|mut w| w.take());
        let _ = tokio::task::spawn_blocking(move || {
            if finished.recv_timeout(wait).is_ok()
                && let Some(w) = writer
            {
                let _ = w.join();
            }
        })
        .await;
    }
}

impl Drop for EventLog {
    /// A log dropped without [`EventLog::close`] still writes what was queued.
    fn drop(&mut self) {
        if let Some(queue) = &self.queue {
            queue.close(None);
        }
    }
}

/// Closes the queue when the writer stops, however it stops.
struct Stopped<'q>(&'q queue::Queue);

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            tracing::error!(target: "candor::events", "the event writer stopped on a panic; events from now on are lost, and counted");
        }
        self.0.close(None);
    }
}

/// The writer: batches of events appended and indexed, then handed to the consumers.
fn write_loop(
    queue: &queue::Queue,
    mut store: store::Store,
    consumers: &arc_swap::ArcSwap<Vec<Arc<dyn Consumer>>>,
    stats: &LogStats,
) {
    // After a write, the writer lingers for the rest of FLUSH_EVERY unless a batch worth
    // writing comes first, so that under load each write, transaction and flush carries
    // many events (an event reaches the file within FLUSH_EVERY, or at once when the log
    // was idle). The index commits every store::INDEX_EVERY under load, and as soon as the
    // log goes quiet.
    const FLUSH_EVERY: Duration = Duration::from_millis(25);
    let mut spare = queue::Batch::default();
    let mut last_error: Option<Instant> = None;
    let mut failed = |e: String, events: usize| {
        let errors = stats.write_errors.fetch_add(1, Ordering::Relaxed) + 1;
        // A full disk fails every batch: told at most once a minute.
        if last_error.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
            last_error = Some(Instant::now());
            tracing::error!(target: "candor::events", error = %e, events, failed_writes_so_far = errors, "cannot write to the event log; the events go on to the subscriptions");
        }
    };
    let mut linger = None;
    loop {
        let (batch, closing, done) = queue.take(spare, linger, store.has_pending());
        let began = Instant::now();
        if batch.is_empty() && !closing {
            // The log went quiet with rows waiting for the index.
            if let Err(e) = store.commit_index() {
                failed(e, 0);
            }
            spare = batch;
            linger = None;
            continue;
        }
        if !batch.is_empty() {
            let consumers = consumers.load();
            // Borrows from the batch: handed to the consumers before the batch is cleared.
            let mut written = Vec::new();
            let reads_lines = |kind: &str| consumers.iter().any(|c| c.reads_lines(kind));
            let want = (!consumers.is_empty()).then_some((&mut written, &reads_lines as _));
            match store.write(&batch, want) {
                Ok(()) => {
                    stats
                        .written
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                }
                Err(e) => failed(e, batch.len()),
            }
            if !written.is_empty() {
                for c in consumers.iter() {
                    // A consumer that panics loses this batch, not the log.
                    let taken =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| c.take(&written)));
                    if taken.is_err() {
                        tracing::error!(target: "candor::events", consumer = ?c, events = written.len(), "an event consumer panicked; it gets the next batch");
                    }
                }
            }
        }
        spare = batch;
        spare.clear();
        if closing {
            store.finish();
            if let Some(done) = done {
                let _ = done.send(());
            }
            return;
        }
        linger = Some(began + FLUSH_EVERY);
    }
}

/// An event's line: `{"id","time","type","severity","request_id","trace_id","route","code","facts"}`.
pub(crate) struct Line<'a> {
    /// The event's id: `ev_` and a ULID (ASCII).
    pub(crate) id: &'a [u8],
    pub(crate) time_ms: i64,
    pub(crate) event: &'a Event<'a>,
}

impl Serialize for Line<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let e = self.event;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("id", std::str::from_utf8(self.id).unwrap_or(""))?;
        m.serialize_entry("time", &crate::time::rfc3339_millis(self.time_ms))?;
        m.serialize_entry("type", e.kind)?;
        m.serialize_entry("severity", &e.severity)?;
        if let Some(r) = &e.request_id {
            m.serialize_entry("request_id", r)?;
        }
        if let Some(t) = &e.trace_id {
            let mut hex = [0u8; 32];
            crate::http::trace::hex_into(t, &mut hex);
            m.serialize_entry("trace_id", std::str::from_utf8(&hex).unwrap_or(""))?;
        }
        if let Some(r) = &e.route {
            m.serialize_entry("route", &**r)?;
        }
        if let Some(c) = &e.code {
            m.serialize_entry("code", c)?;
        }
        match &e.facts {
            Facts::Map(f) => m.serialize_entry("facts", f)?,
            Facts::Request(r) => m.serialize_entry("facts", r)?,
        }
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severities_order_and_parse() {
        assert!(Severity::Warning > Severity::Notice);
        for s in Severity::ALL {
            assert_eq!(Severity::parse(s.as_str()), Some(s));
        }
        assert_eq!(Severity::Critical.syslog(), 2);
    }

    #[test]
    fn a_send_to_a_stuck_writer_waits_a_bounded_time_then_counts_the_event_lost() {
        // A queue of one that nobody reads: the writer is stuck.
        let log = EventLog {
            queue: Some(Arc::new(queue::Queue::new(1))),
            dir: None,
            consumers: Default::default(),
            writer: Mutex::new(None),
            stats: Default::default(),
            send_wait: Duration::from_millis(50),
            told: Default::default(),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            log.send(Event::new(kinds::API_STARTED, Severity::Info))
                .await;
            log.send(Event::new(kinds::API_STOPPED, Severity::Info))
                .await;
        });
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        assert_eq!(get(&log.stats.emitted), 2);
        assert_eq!(get(&log.stats.waited), 1);
        assert_eq!(get(&log.stats.lost), 1);
    }

    #[test]
    fn a_writer_that_dies_closes_the_queue() {
        let q = Arc::new(queue::Queue::new(4));
        let writer = {
            let q = q.clone();
            std::thread::spawn(move || {
                let _stopped = Stopped(&q);
                panic!("the writer's store failed");
            })
        };
        assert!(writer.join().is_err());
        assert!(matches!(
            q.push(&mut Event::new(kinds::API_STOPPED, Severity::Info)),
            Err(queue::Refused::Closed)
        ));
    }

    #[test]
    fn a_line_is_one_json_object() {
        let ev = Event::new(kinds::CONFIG_APPLIED, Severity::Info)
            .fact("generation", 2)
            .code("x\"y");
        let line = serde_json::to_string(&Line {
            id: b"ev1",
            time_ms: 1_795_860_005_042,
            event: &ev,
        })
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["type"], "config.applied");
        assert_eq!(v["time"], "2026-11-28T10:00:05.042Z");
        assert_eq!(v["code"], "x\"y");
        assert_eq!(v["facts"]["generation"], 2);
        assert!(!line.contains('\n'));
    }
}
