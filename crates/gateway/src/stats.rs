//! Counters of what the edge refused, cut off and closed, and of every error answered by
//! code: served by the admin listener's `/stats`. Counting is an atomic add on paths that
//! already failed; the plain route counts nothing.

use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Who ended a failed exchange, for the request log and the counters (after HAProxy's
/// termination flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EndedBy {
    /// The client stopped sending, broke its message's framing, or went away.
    Client = 0,
    /// The upstream failed, timed out or broke its response.
    Upstream = 1,
    /// The gateway refused the request: a rule, a limit, or a fault of its own.
    Gateway = 2,
}

impl EndedBy {
    const ALL: [EndedBy; 3] = [EndedBy::Client, EndedBy::Upstream, EndedBy::Gateway];
}

impl EndedBy {
    /// For the log and `/stats`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            EndedBy::Client => "client",
            EndedBy::Upstream => "upstream",
            EndedBy::Gateway => "gateway",
        }
    }
}

/// The counters of one gateway process.
#[derive(Debug)]
pub(crate) struct Stats {
    /// Connections asked to close because they were idle for `timeouts.keepalive`.
    pub closed_idle: AtomicU64,
    /// ... older than `timeouts.max_connection_age`.
    pub closed_age: AtomicU64,
    /// ... whose client reset most of its requests, over the budget.
    pub closed_resets: AtomicU64,
    /// TLS handshakes that failed or did not end within `timeouts.tls_handshake`.
    pub tls_handshakes_failed: AtomicU64,
    /// HTTP/1 connections idle now with their parser and its buffers given back (a gauge).
    pub parked: AtomicU64,
    /// ... times a connection was parked so far.
    pub parked_total: AtomicU64,
    /// Responses cut off after their status was sent: the upstream broke off or stalled.
    pub cut_off_by_upstream: AtomicU64,
    /// ... the client went away.
    pub cut_off_by_client: AtomicU64,
    errors: Mutex<BTreeMap<&'static str, [u64; 3]>>,
}

/// This process's counters.
pub(crate) static STATS: Stats = Stats {
    closed_idle: AtomicU64::new(0),
    closed_age: AtomicU64::new(0),
    closed_resets: AtomicU64::new(0),
    tls_handshakes_failed: AtomicU64::new(0),
    parked: AtomicU64::new(0),
    parked_total: AtomicU64::new(0),
    cut_off_by_upstream: AtomicU64::new(0),
    cut_off_by_client: AtomicU64::new(0),
    errors: Mutex::new(BTreeMap::new()),
};

/// Adds one to `counter`.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Stats {
    /// Counts an error answered with `code`, ended by `by`.
    pub(crate) fn error(&self, code: &'static str, by: EndedBy) {
        let i = by as usize;
        if let Ok(mut m) = self.errors.lock() {
            m.entry(code).or_default()[i] += 1;
        }
    }

    /// Calls `f` with each error code, who ended its exchanges, and how many (for
    /// `/metrics`).
    pub(crate) fn each_error(&self, mut f: impl FnMut(&'static str, EndedBy, u64)) {
        if let Ok(m) = self.errors.lock() {
            for (code, counts) in m.iter() {
                for (i, by) in EndedBy::ALL.iter().enumerate() {
                    if counts[i] > 0 {
                        f(code, *by, counts[i]);
                    }
                }
            }
        }
    }

    /// The counters as JSON, with each listener's connections: (name, open, refused at the
    /// cap).
    pub(crate) fn to_json(&self, listeners: &[(&str, usize, u64)]) -> Value {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut errors = Map::new();
        let mut ended = [0u64; 3];
        if let Ok(m) = self.errors.lock() {
            for (code, counts) in m.iter() {
                let mut by = Map::new();
                for (i, who) in EndedBy::ALL.iter().enumerate() {
                    ended[i] += counts[i];
                    if counts[i] > 0 {
                        by.insert(who.as_str().into(), counts[i].into());
                    }
                }
                errors.insert((*code).into(), Value::Object(by));
            }
        }
        let open: Map<String, Value> = listeners
            .iter()
            .map(|(name, n, _)| ((*name).to_owned(), (*n).into()))
            .collect();
        let refused: u64 = listeners.iter().map(|(_, _, r)| r).sum();
        json!({
            "connections": {
                "open": open,
                "refused_at_cap": refused,
                "closed": {
                    "idle": get(&self.closed_idle),
                    "max_age": get(&self.closed_age),
                    "resets": get(&self.closed_resets),
                },
                "tls_handshakes_failed": get(&self.tls_handshakes_failed),
                "idle_parked": get(&self.parked),
                "idle_parked_total": get(&self.parked_total),
            },
            "failed_exchanges_ended_by": {
                "client": ended[0],
                "upstream": ended[1],
                "gateway": ended[2],
            },
            "responses_cut_off": {
                "by_upstream": get(&self.cut_off_by_upstream),
                "by_client": get(&self.cut_off_by_client),
            },
            "errors": errors,
        })
    }
}
