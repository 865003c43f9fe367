//! Client connections: counted per listener against its cap, told to drain on shutdown, and
//! watched for the reasons a connection is asked to close (HTTP/2 GOAWAY, HTTP/1 `Connection:
//! close`): idle too long, too old, or a client resetting most of its streams.

use crate::http::guard::{RESET_BUDGET, Shared};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, watch};

/// The open connections of one listener.
#[derive(Debug)]
pub(crate) struct Connections {
    /// "main" or "admin", for the log.
    listener: &'static str,
    open: AtomicUsize,
    /// Connections refused at the cap, and when the last warning about them was logged (ms
    /// since `started`).
    refused: AtomicU64,
    warned_at: AtomicU64,
    started: Instant,
    /// Told when a connection ends.
    ended: Notify,
    drain: watch::Sender<bool>,
}

/// One open connection, counted until dropped.
#[derive(Debug)]
pub(crate) struct Ticket(Arc<Connections>);

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.ended.notify_waiters();
    }
}

impl Connections {
    /// No connections yet on `listener`.
    pub(crate) fn new(listener: &'static str) -> Arc<Self> {
        Arc::new(Connections {
            listener,
            open: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
            warned_at: AtomicU64::new(0),
            started: Instant::now(),
            ended: Notify::new(),
            drain: watch::channel(false).0,
        })
    }

    /// Counts a new connection, unless `cap` are open already: then the refusal is counted
    /// and logged (at most once a second, with the count since the last line).
    pub(crate) fn admit(self: &Arc<Self>, cap: usize) -> Option<Ticket> {
        let admitted = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < cap).then_some(n + 1)
            })
            .is_ok();
        if admitted {
            return Some(Ticket(self.clone()));
        }
        let refused = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        let now = self.started.elapsed().as_millis() as u64 + 1000;
        let last = self.warned_at.load(Ordering::Relaxed);
        if now >= last + 1000
            && self
                .warned_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                target: "candor::server",
                listener = self.listener,
                limit = cap,
                refused_total = refused,
                "connection refused: the listener is at limits.max_connections"
            );
        }
        None
    }

    /// The listener's name: "main" or "admin".
    pub(crate) fn listener(&self) -> &'static str {
        self.listener
    }

    /// Connections open now.
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Connections refused at the cap so far.
    pub(crate) fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// What a connection watches to learn that the gateway is shutting down.
    pub(crate) fn drain_signal(&self) -> watch::Receiver<bool> {
        self.drain.subscribe()
    }

    /// Asks every connection to finish, and waits until none is left.
    pub(crate) async fn drain(&self) {
        let _ = self.drain.send(true);
        loop {
            let ended = self.ended.notified();
            if self.open() == 0 {
                return;
            }
            ended.await;
        }
    }
}

/// Why a connection is asked to close.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Close {
    /// No request for the keep-alive time.
    Idle,
    /// Older than `timeouts.max_connection_age`.
    Age,
    /// The client reset most of its requests, over the budget.
    Resets,
}

impl Close {
    /// For the log.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Close::Idle => "idle for timeouts.keepalive",
            Close::Age => "older than timeouts.max_connection_age",
            Close::Resets => "the client reset most of its requests",
        }
    }

    /// Counts the close in `/stats`.
    pub(crate) fn count(self) {
        let s = &crate::stats::STATS;
        crate::stats::bump(match self {
            Close::Idle => &s.closed_idle,
            Close::Age => &s.closed_age,
            Close::Resets => &s.closed_resets,
        });
    }
}

/// When to look at a connection next, or why it should close now: `keepalive` bounds the
/// time with no request in flight (from accept, or the end of the last response), `max_age`
/// its whole life.
pub(crate) fn check(
    shared: &Shared,
    accepted: Instant,
    keepalive: Duration,
    max_age: Duration,
    now: Instant,
) -> Result<Instant, Close> {
    let (resets, requests) = shared.resets();
    if resets > RESET_BUDGET && resets * 2 > requests {
        return Err(Close::Resets);
    }
    let old = accepted + max_age;
    if now >= old {
        return Err(Close::Age);
    }
    let idle_end = match shared.idle() {
        None => now + keepalive,
        Some(since) => since.unwrap_or(accepted).max(accepted) + keepalive,
    };
    if now >= idle_end {
        return Err(Close::Idle);
    }
    Ok(idle_end.min(old))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_refuses_and_tickets_give_back() {
        let c = Connections::new("main");
        let a = c.admit(2).unwrap();
        let _b = c.admit(2).unwrap();
        assert!(c.admit(2).is_none());
        assert_eq!((c.open(), c.refused()), (2, 1));
        drop(a);
        assert!(c.admit(2).is_some());
    }

    #[test]
    fn idle_and_age() {
        let s = Shared::default();
        let t0 = Instant::now();
        let (ka, age) = (Duration::from_secs(60), Duration::from_secs(3600));
        assert_eq!(check(&s, t0, ka, age, t0), Ok(t0 + ka));
        assert_eq!(check(&s, t0, ka, age, t0 + ka), Err(Close::Idle));
        assert_eq!(
            check(&s, t0, ka, Duration::from_secs(30), t0 + ka),
            Err(Close::Age)
        );
        let _busy = Arc::new(Shared::default());
        let f = _busy.begin();
        assert_eq!(check(&_busy, t0, ka, age, t0 + ka), Ok(t0 + ka + ka));
        drop(f);
    }
}
