//! Client connections: counted per listener against its cap, told to drain on shutdown, and
//! driven ([`serve`]): HTTP/1 or HTTP/2 told from the first bytes, asked to close (HTTP/2
//! GOAWAY, HTTP/1 `Connection: close`) when idle too long, too old, or when the client
//! resets most of its streams. An idle HTTP/1 connection holds no parser: hyper's buffers
//! (16 KiB) are given back until the next request's first bytes come.

use crate::config::Timeouts;
use crate::http::guard::{HeadGuard, RESET_BUDGET, Shared};
use crate::http::h2_frames::{ENHANCE_YOUR_CALM, Framed, Handback, goaway};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
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
    Idle = 1,
    /// Older than `timeouts.max_connection_age`.
    Age = 2,
    /// The client reset most of its requests, over the budget.
    Resets = 3,
    /// The gateway is shutting down.
    Drain = 4,
    /// A request head did not arrive whole within `timeouts.request_head`.
    Head = 5,
}

impl Close {
    /// Records on the connection that the gateway asked it to close, and why.
    pub(crate) fn mark(self, shared: &Shared) {
        shared.closing.store(self as u8, Ordering::Relaxed);
    }

    /// Why the gateway asked the connection to close, if it did (for its event).
    pub(crate) fn marked(shared: &Shared) -> Option<&'static str> {
        Some(match shared.closing.load(Ordering::Relaxed) {
            1 => "idle (timeouts.keepalive)",
            2 => "max_connection_age",
            3 => "resets",
            4 => "shutdown",
            5 => "request_head timeout",
            _ => return None,
        })
    }

    /// For the log.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Close::Idle => "idle for timeouts.keepalive",
            Close::Age => "older than timeouts.max_connection_age",
            Close::Resets => "the client reset most of its requests",
            Close::Drain => "the gateway is shutting down",
            Close::Head => "no whole request head within timeouts.request_head",
        }
    }

    /// Counts the close in `/stats`.
    pub(crate) fn count(self) {
        let s = &crate::stats::STATS;
        crate::stats::bump(match self {
            Close::Idle => &s.closed_idle,
            Close::Age => &s.closed_age,
            Close::Resets => &s.closed_resets,
            Close::Drain | Close::Head => return,
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

/// How long an HTTP/1 connection waits for its next request with its parser in place; after
/// that the parser is taken apart (its buffers given back) and made anew when bytes come. A
/// client sending request after request keeps its parser.
const PARK_AFTER: Duration = Duration::from_millis(250);

/// The HTTP/1 and HTTP/2 settings connections are served with.
#[derive(Clone, Debug)]
pub(crate) struct Builders {
    /// HTTP/1.
    pub(crate) h1: http1::Builder,
    /// HTTP/2.
    pub(crate) h2: http2::Builder<TokioExecutor>,
}

/// A connection's service, as hyper calls it.
pub(crate) trait ConnService:
    Service<
        http::Request<Incoming>,
        Response = http::Response<crate::http::body::ClientBody>,
        Error = std::convert::Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
}

impl<T> ConnService for T where
    T: Service<
            http::Request<Incoming>,
            Response = http::Response<crate::http::body::ClientBody>,
            Error = std::convert::Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static
{
}

/// What a connection is served with besides its bytes.
pub(crate) struct Driving<'a, V> {
    /// The protocol settings.
    pub(crate) builders: &'a Builders,
    /// Each request's service.
    pub(crate) service: V,
    /// The state the guard and the service share.
    pub(crate) shared: Arc<Shared>,
    /// Told on shutdown.
    pub(crate) drain: watch::Receiver<bool>,
    /// The configured timeouts.
    pub(crate) timeouts: Timeouts,
    /// The client, for the log.
    pub(crate) peer: SocketAddr,
}

/// Serves a guarded connection until it ends: HTTP/2 when it starts with the connection
/// preface, HTTP/1 otherwise.
pub(crate) async fn serve<S, V>(mut io: HeadGuard<S>, mut d: Driving<'_, V>) -> hyper::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    V: ConnService,
{
    // The preface's own deadline: the guard times a first head that is not complete, but a
    // complete `PRI` head whose rest never comes passes it.
    let deadline = tokio::time::Instant::now() + d.timeouts.request_head + Duration::from_secs(1);
    let sniffed = tokio::select! {
        r = io.sniff(deadline) => r,
        _ = d.drain.changed() => {
            Close::Drain.mark(&d.shared);
            return Ok(());
        }
    };
    match sniffed {
        Ok(true) => drive_h2(io, d).await,
        Ok(false) => drive_h1(io, d).await,
        Err(e) => {
            tracing::debug!(target: "candor::server", peer = %d.peer, error = %e, "connection failed before its first request");
            Ok(())
        }
    }
}

/// The connection timer fired: `Some(why)` when the connection should close now (counted and
/// logged), else the timer is set to the next look.
fn looked_at(
    d: &Driving<'_, impl ConnService>,
    accepted: Instant,
    timer: Pin<&mut tokio::time::Sleep>,
) -> Option<Close> {
    let (keepalive, max_age) = (d.timeouts.keepalive, d.timeouts.max_connection_age);
    match check(&d.shared, accepted, keepalive, max_age, Instant::now()) {
        Ok(next) => {
            timer.reset(next.into());
            None
        }
        Err(why) => {
            tracing::debug!(target: "candor::server", peer = %d.peer, why = why.as_str(), "asking a connection to close");
            why.count();
            why.mark(&d.shared);
            Some(why)
        }
    }
}

/// The client reset most of its requests: logged and counted.
fn calm_down(d: &Driving<'_, impl ConnService>) {
    let (resets, requests) = d.shared.resets();
    tracing::warn!(target: "candor::server", peer = %d.peer, resets, requests, "closing a connection: the client reset most of its requests");
    Close::Resets.count();
    Close::Resets.mark(&d.shared);
}

/// Drives an HTTP/2 connection: on shutdown, idleness (keep-alive) or age it gets GOAWAY
/// and a grace to finish; an HTTP/2 client must acknowledge the GOAWAY's PING for the
/// connection to end, and one that never does is dropped after the grace (an idle one has
/// nothing in flight: 1 s; an old one gets the keep-alive time to finish what it has). A
/// client resetting most of its streams gets no grace: its streams are dropped (their
/// upstream requests cancelled) and the connection ends with GOAWAY `ENHANCE_YOUR_CALM`.
async fn drive_h2<S>(io: HeadGuard<S>, mut d: Driving<'_, impl ConnService>) -> hyper::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (io, back) = Framed::new(io);
    // Boxed: HTTP/2 state is large, and HTTP/1 connections need not carry room for it.
    let mut conn = Box::pin(
        d.builders
            .h2
            .serve_connection(TokioIo::new(io), d.service.clone()),
    );
    let accepted = Instant::now();
    let keepalive = d.timeouts.keepalive;
    let timer = tokio::time::sleep(keepalive.min(d.timeouts.max_connection_age));
    tokio::pin!(timer);
    let mut closing = false;
    let mut grace: Option<Pin<Box<tokio::time::Sleep>>> = None;
    loop {
        tokio::select! {
            biased;
            r = conn.as_mut() => return r,
            _ = d.drain.changed(), if !closing => {
                closing = true;
                Close::Drain.mark(&d.shared);
                conn.as_mut().graceful_shutdown();
            }
            () = d.shared.calm.notified() => {
                calm_down(&d);
                drop(conn);
                if let Ok(back) = back.await {
                    // After hyper's own (graceful) GOAWAY, no second one: its last-stream-id
                    // may not rise (RFC 9113 §6.8).
                    enhance_your_calm(back, &d, !closing).await;
                }
                return Ok(());
            }
            () = async { grace.as_mut().expect("set").await }, if grace.is_some() => {
                return Ok(());
            }
            () = &mut timer, if !closing => {
                if let Some(why) = looked_at(&d, accepted, timer.as_mut()) {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                    let wait = if why == Close::Idle { Duration::from_secs(1) } else { keepalive };
                    grace = Some(Box::pin(tokio::time::sleep(wait)));
                }
            }
        }
    }
}

/// Ends an HTTP/2 connection whose client reset most of its streams: GOAWAY
/// `ENHANCE_YOUR_CALM` naming the last stream it opened and why (unless `goaway` is false,
/// hyper having sent one already, or hyper's last write ended inside a frame: then the
/// connection is only closed), then the end of the stream; what the client still sends is
/// read and dropped until it closes too (or the second is up), so that closing with its
/// bytes unread does not reset the connection and lose the GOAWAY on the way.
async fn enhance_your_calm<S>(
    back: Handback<HeadGuard<S>>,
    d: &Driving<'_, impl ConnService>,
    goaway_allowed: bool,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Handback {
        mut io,
        at_boundary,
        last_stream,
    } = back;
    let end = async {
        if at_boundary && goaway_allowed {
            let (resets, requests) = d.shared.resets();
            let why = format!(
                "candor: the client reset {resets} of its {requests} requests (more than {RESET_BUDGET}, and most of them)"
            );
            io.write_all(&goaway(last_stream, ENHANCE_YOUR_CALM, &why))
                .await?;
            io.flush().await?;
        }
        io.shutdown().await?;
        let mut drain = [0u8; 4096];
        while io.read(&mut drain).await? > 0 {}
        Ok::<(), std::io::Error>(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), end).await;
}

/// Drives an HTTP/1 connection: asked to close (after the response in flight) on shutdown,
/// idleness, age or resets. Idle for [`PARK_AFTER`] with nothing read and nothing to write,
/// its parser is taken apart; the guard alone waits for the next bytes (and for its timers),
/// and a new parser gets them.
async fn drive_h1<S>(
    mut io: HeadGuard<S>,
    mut d: Driving<'_, impl ConnService>,
) -> hyper::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let accepted = Instant::now();
    let timer = tokio::time::sleep(d.timeouts.keepalive.min(d.timeouts.max_connection_age));
    tokio::pin!(timer);
    let park = tokio::time::sleep(PARK_AFTER);
    tokio::pin!(park);
    let mut closing = false;
    let mut service = d.service.clone();
    loop {
        // Boxed: taken apart while the connection is idle, so that an idle connection holds
        // neither its buffers nor room for them.
        let mut conn = Box::pin(d.builders.h1.serve_connection(TokioIo::new(io), service));
        park.as_mut()
            .reset(tokio::time::Instant::now() + PARK_AFTER);
        loop {
            tokio::select! {
                biased;
                r = conn.as_mut() => return r,
                _ = d.drain.changed(), if !closing => {
                    closing = true;
                    Close::Drain.mark(&d.shared);
                    conn.as_mut().graceful_shutdown();
                }
                () = d.shared.calm.notified(), if !closing => {
                    calm_down(&d);
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
                () = &mut timer, if !closing => {
                    if looked_at(&d, accepted, timer.as_mut()).is_some() {
                        closing = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
                () = &mut park, if !closing => {
                    // Parked once the last response ended PARK_AFTER ago, not sooner: a
                    // client sending request after request keeps its parser.
                    let now = Instant::now();
                    let due = match d.shared.idle() {
                        Some(Some(since)) => since + PARK_AFTER,
                        _ => now + PARK_AFTER,
                    };
                    if due <= now && d.shared.quiet() {
                        break;
                    }
                    park.as_mut().reset(tokio::time::Instant::from_std(due.max(now + PARK_AFTER / 5)));
                }
            }
        }
        let parts = Pin::into_inner(conn).into_parts();
        io = parts.io.into_inner();
        service = parts.service;
        let unread = parts.read_buf;
        // Empty lines before a request line are ignored (RFC 9112 §2.2): the parser kept
        // them unread, and nothing is lost by dropping them.
        let blank = unread.iter().all(|b| matches!(b, b'\r' | b'\n'));
        if !blank || !io.is_quiet() {
            // Not idle after all (bytes came between the look and now): served on.
            io.unread(&unread);
            continue;
        }
        // The parser's read buffer goes too (an empty `Bytes` may still own it).
        drop(unread);
        // Parked: nothing but the guard and the service until the client sends.
        let parked = Parked::new();
        let close = loop {
            tokio::select! {
                biased;
                r = io.fill() => match r {
                    Ok(true) => break false,
                    Ok(false) => return Ok(()),
                    Err(e) => {
                        tracing::debug!(target: "candor::server", peer = %d.peer, error = %e, "idle connection failed");
                        return Ok(());
                    }
                },
                _ = d.drain.changed() => {
                    Close::Drain.mark(&d.shared);
                    break true;
                }
                () = &mut timer => {
                    if looked_at(&d, accepted, timer.as_mut()).is_some() {
                        break true;
                    }
                }
            }
        };
        drop(parked);
        if close {
            // Closed as hyper would have: TLS gets its close_notify, TCP its FIN.
            let _ = tokio::time::timeout(Duration::from_secs(1), io.shutdown()).await;
            return Ok(());
        }
    }
}

/// A client socket whose bytes are counted (into the connection's [`Shared`]) for its
/// `connection.closed` event.
pub(crate) struct Counted<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Counted<S> {
    /// Counts `inner`'s bytes into `shared`.
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Self {
        Counted { inner, shared }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            this.shared.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = r {
            this.shared.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
        }
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let std::task::Poll::Ready(Ok(n)) = r {
            this.shared.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// An HTTP/1 connection idle without its parser, counted in `/stats` while it lasts.
struct Parked;

impl Parked {
    fn new() -> Self {
        crate::stats::STATS.parked.fetch_add(1, Ordering::Relaxed);
        crate::stats::bump(&crate::stats::STATS.parked_total);
        Parked
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        crate::stats::STATS.parked.fetch_sub(1, Ordering::Relaxed);
    }
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
