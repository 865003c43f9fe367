//! Subscriptions: the event stream, filtered, delivered to sinks (`[[events.subscriptions]]`).
//!
//! The log's writer hands each batch it wrote to [`Subscriptions::take`], on its own
//! thread. An event a subscription's filter passes goes into its sink's bounded queue; a
//! task of the sinks' runtime (one thread, `candor-sinks`) delivers the queue (see
//! [`super::sinks`]). When the queue is full:
//!
//! - `block`: the writer waits for room — the log's own queue fills and requests wait on it
//!   in turn; nothing is lost. Each wait is counted and timed. A wait is bounded by the
//!   subscription's `max_wait`: past it the sink is *stalled* and its events are dropped
//!   (counted) without waiting until its queue has room again, so that a dead sink slows the
//!   gateway for `max_wait`, not forever.
//! - `drop`: the event is dropped and counted, never waited for.
//!
//! Either way, once a sink that dropped events delivers again, an `events.dropped` event
//! tells the sink's name and the exact number dropped since the last such event.
//!
//! A reload rebuilds the subscriptions ([`apply`]); a sink whose settings did not change is
//! kept with its queue, so nothing queued is lost; a sink that went away delivers what it
//! holds, then stops.

use super::sinks::Deliverer;
use super::{Consumer, Event, EventLog, Severity, Written, kinds};
use crate::config::{Config, Mode, SubscriptionConfig};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant, SystemTime};

/// One event in a sink's queue: its line and what a sink labels it with.
#[derive(Clone, Debug)]
pub(crate) struct Item {
    /// The JSON line.
    pub(crate) line: Arc<str>,
    /// The type.
    pub(crate) kind: &'static str,
    /// The severity.
    pub(crate) severity: Severity,
}

/// A bounded queue between the writer's thread (which may wait for room) and a sink's task
/// (which is told when there is something).
#[derive(Debug)]
pub(crate) struct Queue {
    items: Mutex<VecDeque<Item>>,
    cap: usize,
    room: Condvar,
    ready: tokio::sync::Notify,
}

impl Queue {
    pub(crate) fn new(cap: usize) -> Self {
        Queue {
            items: Mutex::new(VecDeque::with_capacity(cap.min(1024))),
            cap: cap.max(1),
            room: Condvar::new(),
            ready: tokio::sync::Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Item>> {
        self.items.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `item` if there is room.
    pub(crate) fn try_push(&self, item: Item) -> Result<(), Item> {
        let mut q = self.lock();
        if q.len() >= self.cap {
            return Err(item);
        }
        q.push_back(item);
        drop(q);
        self.ready.notify_one();
        Ok(())
    }

    /// Queues `item`, waiting up to `max` for room.
    pub(crate) fn push_wait(&self, item: Item, max: Duration) -> Result<(), Item> {
        let deadline = Instant::now() + max;
        let mut q = self.lock();
        while q.len() >= self.cap {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(item);
            }
            q = self
                .room
                .wait_timeout(q, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        q.push_back(item);
        drop(q);
        self.ready.notify_one();
        Ok(())
    }

    /// Moves up to `max` items, oldest first, into `out`.
    pub(crate) fn take(&self, max: usize, out: &mut Vec<Item>) {
        let mut q = self.lock();
        let n = max.min(q.len());
        out.extend(q.drain(..n));
        drop(q);
        if n > 0 {
            self.room.notify_all();
        }
    }

    /// Items waiting.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Waits until at least `n` items wait or `deadline` passes (at most a second at a time,
    /// so that the caller can look at other things).
    pub(crate) async fn wait_for(&self, n: usize, deadline: Instant) {
        while self.len() < n {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            let step = (deadline - now).min(Duration::from_secs(1));
            let _ = tokio::time::timeout(step, self.ready.notified()).await;
        }
    }
}

/// A sink's counters, as `/stats` shows them.
#[derive(Debug, Default)]
pub(crate) struct SinkCounters {
    /// Events its subscription passed to it.
    pub(crate) offered: AtomicU64,
    /// Events it delivered.
    pub(crate) delivered: AtomicU64,
    /// Events dropped: the queue was full (drop mode, or a stalled block-mode sink), or a
    /// batch was given up after its retries.
    pub(crate) dropped: AtomicU64,
    /// Dropped and not yet told in an `events.dropped` event.
    pub(crate) unreported: AtomicU64,
    /// Delivery attempts that failed.
    pub(crate) failed: AtomicU64,
    /// Times the event log waited for room in the queue (block mode), and how long in all.
    pub(crate) waited: AtomicU64,
    pub(crate) waited_us: AtomicU64,
    /// The longest single wait (µs).
    pub(crate) max_wait_us: AtomicU64,
    /// Events taken from the queue and being delivered.
    pub(crate) in_flight: AtomicU64,
}

/// What `/stats` shows of one sink.
#[derive(Clone, Debug, serde::Serialize)]
pub(crate) struct SinkStats {
    /// The subscription's name.
    pub(crate) name: String,
    /// `file`, `stdout`, `syslog` or `webhook`.
    pub(crate) sink: &'static str,
    /// `block` or `drop`.
    pub(crate) mode: &'static str,
    /// Events in the queue now.
    pub(crate) depth: usize,
    /// The queue's capacity.
    pub(crate) capacity: usize,
    /// Events the subscription passed to the sink.
    pub(crate) offered: u64,
    /// Events delivered.
    pub(crate) delivered: u64,
    /// Events taken from the queue, being delivered.
    pub(crate) in_flight: u64,
    /// Events dropped.
    pub(crate) dropped: u64,
    /// Delivery attempts that failed.
    pub(crate) failed: u64,
    /// Times the event log waited for room in the queue (block mode).
    pub(crate) waited: u64,
    /// How long it waited in all, in microseconds.
    pub(crate) waited_us: u64,
    /// The longest wait, in microseconds.
    pub(crate) max_wait_us: u64,
    /// Whether the sink is stalled (block mode, a wait reached `max_wait`): its events are
    /// dropped until its queue has room again.
    pub(crate) stalled: bool,
}

/// A sink: its queue, counters, and the task delivering it.
#[derive(Debug)]
pub(crate) struct Sink {
    pub(crate) name: String,
    config: SubscriptionConfig,
    pub(crate) queue: Arc<Queue>,
    pub(crate) counters: Arc<SinkCounters>,
    stalled: AtomicBool,
    /// Set when a reload removed it: it delivers what it holds, then stops.
    pub(crate) closed: Arc<AtomicBool>,
    /// When it started dropping (for the `events.dropped` event).
    pub(crate) dropping_since: Mutex<Option<SystemTime>>,
}

impl Sink {
    fn start(config: &SubscriptionConfig, log: Weak<EventLog>) -> Arc<Sink> {
        let sink = Arc::new(Sink {
            name: config.name.clone(),
            config: config.clone(),
            queue: Arc::new(Queue::new(config.queue)),
            counters: Arc::default(),
            stalled: AtomicBool::new(false),
            closed: Arc::default(),
            dropping_since: Mutex::new(None),
        });
        let deliverer = Deliverer::new(config);
        runtime().spawn(super::sinks::run(sink.clone(), deliverer, log));
        sink
    }

    /// Whether `other` describes this sink, so that a reload may keep it (the filter may
    /// change: it is the subscription's, not the sink's).
    fn same_sink(&self, other: &SubscriptionConfig) -> bool {
        let c = &self.config;
        c.name == other.name
            && c.sink == other.sink
            && c.mode == other.mode
            && c.queue == other.queue
            && c.max_wait == other.max_wait
    }

    /// The mode.
    pub(crate) fn mode(&self) -> Mode {
        self.config.mode
    }

    /// The sink's settings.
    pub(crate) fn config(&self) -> &SubscriptionConfig {
        &self.config
    }

    /// Counts `n` events dropped.
    pub(crate) fn count_dropped(&self, n: u64) {
        if n == 0 {
            return;
        }
        let c = &self.counters;
        c.dropped.fetch_add(n, Ordering::Relaxed);
        if c.unreported.fetch_add(n, Ordering::AcqRel) == 0
            && let Ok(mut since) = self.dropping_since.lock()
        {
            since.get_or_insert_with(SystemTime::now);
        }
    }

    /// Takes an event its subscription passed, on the writer's thread.
    fn offer(&self, item: Item) {
        let c = &self.counters;
        c.offered.fetch_add(1, Ordering::Relaxed);
        let item = match self.queue.try_push(item) {
            Ok(()) => {
                self.stalled.store(false, Ordering::Relaxed);
                return;
            }
            Err(item) => item,
        };
        if self.config.mode == Mode::Drop || self.stalled.load(Ordering::Relaxed) {
            self.count_dropped(1);
            return;
        }
        let started = Instant::now();
        let result = self.queue.push_wait(item, self.config.max_wait);
        let us = started.elapsed().as_micros() as u64;
        c.waited.fetch_add(1, Ordering::Relaxed);
        c.waited_us.fetch_add(us, Ordering::Relaxed);
        c.max_wait_us.fetch_max(us, Ordering::Relaxed);
        if result.is_err() {
            self.stalled.store(true, Ordering::Relaxed);
            self.count_dropped(1);
            tracing::error!(
                target: "candor::events",
                subscription = %self.name,
                max_wait_s = self.config.max_wait.as_secs(),
                queue = self.config.queue,
                "the sink of subscription {} had no room for {} s: its events are dropped (and counted) until it delivers again",
                self.name,
                self.config.max_wait.as_secs()
            );
        }
    }

    fn stats(&self) -> SinkStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SinkStats {
            name: self.name.clone(),
            sink: self.config.sink.kind(),
            mode: self.config.mode.as_str(),
            depth: self.queue.len(),
            capacity: self.config.queue,
            offered: get(&c.offered),
            delivered: get(&c.delivered),
            in_flight: get(&c.in_flight),
            dropped: get(&c.dropped),
            failed: get(&c.failed),
            waited: get(&c.waited),
            waited_us: get(&c.waited_us),
            max_wait_us: get(&c.max_wait_us),
            stalled: self.stalled.load(Ordering::Relaxed),
        }
    }

    /// Tells, as an `events.dropped` event, what was dropped since the last time (called
    /// when the sink has just delivered).
    pub(crate) fn report_drops(&self, log: &Weak<EventLog>) {
        let c = &self.counters;
        if c.unreported.load(Ordering::Acquire) == 0 {
            return;
        }
        let since = self.dropping_since.lock().ok().and_then(|mut s| s.take());
        let n = c.unreported.swap(0, Ordering::AcqRel);
        if n == 0 {
            return;
        }
        tracing::warn!(target: "candor::events", subscription = %self.name, dropped = n, "the sink of subscription {} delivers again; it dropped {n} events", self.name);
        if let Some(log) = log.upgrade() {
            log.emit(
                Event::new(kinds::EVENTS_DROPPED, Severity::Warning)
                    .fact("subscription", self.name.as_str())
                    .fact("sink", self.config.sink.kind())
                    .fact("mode", self.config.mode.as_str())
                    .fact("dropped", n)
                    .fact("dropped_total", c.dropped.load(Ordering::Relaxed))
                    .fact(
                        "since",
                        since.map(|t| crate::time::rfc3339_millis(crate::time::unix_millis(t))),
                    ),
            );
        }
    }
}

/// Which events a subscription takes.
#[derive(Debug)]
struct Filter {
    any_type: bool,
    exact: Vec<String>,
    /// `auth.` for `auth.*`.
    prefixes: Vec<String>,
    severity: Severity,
    routes: Vec<String>,
    codes: Vec<String>,
}

impl Filter {
    fn new(c: &crate::config::EventFilterConfig) -> Filter {
        let mut f = Filter {
            any_type: c.types.is_empty() || c.types.iter().any(|t| t == "*"),
            exact: Vec::new(),
            prefixes: Vec::new(),
            severity: c.severity,
            routes: c.routes.clone(),
            codes: c.codes.clone(),
        };
        for t in &c.types {
            match t.strip_suffix('*') {
                Some(prefix) if !prefix.is_empty() => f.prefixes.push(prefix.to_owned()),
                _ => f.exact.push(t.clone()),
            }
        }
        f
    }

    fn passes(&self, w: &Written) -> bool {
        w.severity >= self.severity
            && (self.any_type
                || self.exact.iter().any(|t| t == w.kind)
                || self.prefixes.iter().any(|p| w.kind.starts_with(p.as_str())))
            && (self.routes.is_empty()
                || w.route.is_some_and(|r| self.routes.iter().any(|x| x == r)))
            && (self.codes.is_empty() || w.code.is_some_and(|c| self.codes.iter().any(|x| x == c)))
    }
}

/// The subscriptions of one configuration: a consumer of the event log.
#[derive(Debug)]
pub(crate) struct Subscriptions {
    subs: Vec<(Filter, Arc<Sink>)>,
}

impl Consumer for Subscriptions {
    fn take(&self, batch: &[Written<'_>]) {
        for w in batch {
            for (filter, sink) in &self.subs {
                if filter.passes(w) {
                    sink.offer(Item {
                        line: w.line.clone(),
                        kind: w.kind,
                        severity: w.severity,
                    });
                }
            }
        }
    }
}

/// The sinks running in this process, with the log they belong to.
#[derive(Default)]
struct Live {
    log: Weak<EventLog>,
    sinks: Vec<Arc<Sink>>,
    alerts: Option<Arc<super::alerts::Alerts>>,
}

fn live() -> &'static Mutex<Live> {
    static LIVE: OnceLock<Mutex<Live>> = OnceLock::new();
    LIVE.get_or_init(Mutex::default)
}

/// The runtime sinks and alerts are delivered on: one thread of its own, so that their
/// network waits never take a request's thread, and they go on delivering while the
/// server drains.
pub(crate) fn runtime() -> &'static tokio::runtime::Handle {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(8)
            .thread_name("candor-sinks")
            .enable_all()
            .build()
            .unwrap_or_else(|e| {
                // No thread can be started: nothing else will work either.
                tracing::error!(target: "candor::events", error = %e, "cannot start the sinks' runtime");
                std::process::abort()
            })
    })
    .handle()
}

/// Builds the subscriptions and alert rules of `config` and gives them to `log` (at start
/// and on each reload). Sinks whose settings did not change are kept, with what they hold.
pub(crate) fn apply(log: &Arc<EventLog>, config: &Config) {
    if !log.on() {
        return;
    }
    let mut live = live().lock().unwrap_or_else(|e| e.into_inner());
    if !Weak::ptr_eq(&live.log, &Arc::downgrade(log)) {
        for s in live.sinks.drain(..) {
            s.closed.store(true, Ordering::Release);
        }
        live.alerts = None;
        live.log = Arc::downgrade(log);
    }
    let mut kept = Vec::new();
    let mut subs = Vec::new();
    for c in &config.events.subscriptions {
        let sink = match live.sinks.iter().position(|s| s.same_sink(c)) {
            Some(i) => live.sinks.swap_remove(i),
            None => Sink::start(c, Arc::downgrade(log)),
        };
        subs.push((Filter::new(&c.filter), sink.clone()));
        kept.push(sink);
    }
    for gone in live.sinks.drain(..) {
        gone.closed.store(true, Ordering::Release);
        gone.queue.ready.notify_one();
    }
    live.sinks = kept;
    let mut consumers: Vec<Arc<dyn Consumer>> = Vec::new();
    if !subs.is_empty() {
        consumers.push(Arc::new(Subscriptions { subs }));
    }
    live.alerts = super::alerts::apply(log, config, live.alerts.take());
    if let Some(a) = &live.alerts {
        consumers.push(a.clone());
    }
    log.set_consumers(consumers);
}

/// Each sink's queue and counters (for `/stats` and metrics).
pub(crate) fn sink_stats(log: &Arc<EventLog>) -> Vec<SinkStats> {
    let live = live().lock().unwrap_or_else(|e| e.into_inner());
    if !Weak::ptr_eq(&live.log, &Arc::downgrade(log)) {
        return Vec::new();
    }
    live.sinks.iter().map(|s| s.stats()).collect()
}

/// `/stats`'s `sinks` and `alerts`.
pub(crate) fn stats_json(log: &Arc<EventLog>) -> serde_json::Value {
    let alerts = {
        let live = live().lock().unwrap_or_else(|e| e.into_inner());
        live.alerts
            .as_ref()
            .filter(|_| Weak::ptr_eq(&live.log, &Arc::downgrade(log)))
            .map(|a| a.stats_json())
    };
    serde_json::json!({
        "sinks": sink_stats(log),
        "alerts": alerts,
    })
}

/// Waits up to `wait` for every sink to deliver what it holds (at shutdown, after the log
/// was closed).
pub(crate) async fn flush(log: &Arc<EventLog>, wait: Duration) {
    let sinks: Vec<Arc<Sink>> = {
        let live = live().lock().unwrap_or_else(|e| e.into_inner());
        if !Weak::ptr_eq(&live.log, &Arc::downgrade(log)) {
            return;
        }
        live.sinks.clone()
    };
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline
        && sinks
            .iter()
            .any(|s| s.queue.len() > 0 || s.counters.in_flight.load(Ordering::Relaxed) > 0)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written<'a>(
        kind: &'static str,
        severity: Severity,
        route: Option<&'a str>,
        code: Option<&'a str>,
    ) -> Written<'a> {
        Written {
            kind,
            severity,
            route,
            code,
            line: Arc::from("{}"),
        }
    }

    #[test]
    fn filters_take_types_severity_routes_and_codes() {
        let f = Filter::new(&crate::config::EventFilterConfig {
            types: vec!["auth.*".into(), "request.rejected".into()],
            severity: Severity::Notice,
            routes: vec!["r".into()],
            codes: vec![],
        });
        assert!(f.passes(&written("auth.failed", Severity::Notice, Some("r"), None)));
        assert!(f.passes(&written(
            "request.rejected",
            Severity::Error,
            Some("r"),
            Some("x")
        )));
        assert!(!f.passes(&written("auth.failed", Severity::Info, Some("r"), None)));
        assert!(!f.passes(&written(
            "request.completed",
            Severity::Error,
            Some("r"),
            None
        )));
        assert!(!f.passes(&written("auth.failed", Severity::Notice, Some("s"), None)));
        assert!(!f.passes(&written("auth.failed", Severity::Notice, None, None)));
        let codes = Filter::new(&crate::config::EventFilterConfig {
            types: vec!["*".into()],
            severity: Severity::Info,
            routes: vec![],
            codes: vec!["rate_limited".into()],
        });
        assert!(codes.passes(&written(
            "request.rejected",
            Severity::Notice,
            None,
            Some("rate_limited")
        )));
        assert!(!codes.passes(&written(
            "request.rejected",
            Severity::Notice,
            None,
            Some("x")
        )));
        assert!(!codes.passes(&written("api.started", Severity::Info, None, None)));
    }

    #[test]
    fn a_full_queue_waits_then_gives_up() {
        let q = Queue::new(1);
        let item = Item {
            line: Arc::from("{}"),
            kind: kinds::API_STARTED,
            severity: Severity::Info,
        };
        assert!(q.try_push(item.clone()).is_ok());
        assert!(q.try_push(item.clone()).is_err());
        let started = Instant::now();
        assert!(
            q.push_wait(item.clone(), Duration::from_millis(50))
                .is_err()
        );
        assert!(started.elapsed() >= Duration::from_millis(50));
        let mut out = Vec::new();
        q.take(10, &mut out);
        assert_eq!(out.len(), 1);
        assert!(q.push_wait(item, Duration::from_millis(50)).is_ok());
    }
}
