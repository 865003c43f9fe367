//! Upstream connections: HTTP/1.1 keep-alive connections per upstream address, reused across
//! requests and configuration reloads.
//!
//! A connection goes back to the pool when the response body it carried has been read to the
//! end; a body dropped half-read takes its connection with it (what is left of the response
//! cannot be skipped safely). A request that a pooled connection closed under before it was
//! written is sent again on another connection; once any of it is written it never is.

use crate::http::body::{BodyError, IdleTimer, UpstreamBody};
use crate::stats::EndedBy;
use bytes::Bytes;
use http::uri::Authority;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// How many idle connections are kept per upstream address.
const MAX_IDLE_PER_UPSTREAM: usize = 1024;
/// How long an idle connection is kept.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often connections that stayed idle are purged: each time, half of those that no
/// request needed since the last time are closed, oldest first (after HAProxy's
/// `pool-purge-delay`), so that a burst's connections do not linger for the idle timeout.
const PURGE_EVERY: Duration = Duration::from_secs(5);
/// The most header fields an upstream response may have (the server side allows the same
/// number on requests).
pub(crate) const MAX_RESPONSE_HEADERS: usize = 1000;

/// Why an exchange with the upstream failed.
#[derive(Debug)]
pub(crate) enum SendError {
    /// No connection could be made: the cause, in words.
    Connect(String),
    /// The connection was made (or reused) and the exchange failed.
    Exchange(hyper::Error),
    /// Every connection the upstream may have is busy and the request could not wait for
    /// one: the queue was full (`waited` is `None`), or nothing came free in `waited`.
    Overloaded {
        /// The upstream's connection limit.
        limit: usize,
        /// The queue's limit.
        queue: usize,
        /// How long the request waited in the queue, if it was let in.
        waited: Option<Duration>,
    },
}

/// The caps on one upstream and how long a request may wait for a connection.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Caps {
    /// The most connections open at once.
    pub(crate) max_connections: usize,
    /// The most requests waiting for a connection.
    pub(crate) max_queue: usize,
    /// How long a request may wait in the queue.
    pub(crate) queue_wait: Duration,
    /// How long connecting (resolving the name and the TCP handshake) may take.
    pub(crate) connect_timeout: Duration,
}

/// A failed exchange, with the request when none of it was sent (it may go elsewhere).
#[derive(Debug)]
pub(crate) struct Failed {
    /// What failed.
    pub(crate) error: SendError,
    /// The request, when not a byte of it was written.
    pub(crate) unsent: Option<Request<UpstreamBody>>,
}

impl Failed {
    fn sent(error: SendError) -> Failed {
        Failed {
            error,
            unsent: None,
        }
    }
}

struct Idle {
    sender: SendRequest<UpstreamBody>,
    since: Instant,
}

/// One upstream address: its idle connections and its counts.
#[derive(Default)]
struct Entry {
    /// Oldest first; checked out from the end.
    idle: Vec<Idle>,
    /// The fewest idle connections there were since the last purge: that many were not
    /// needed.
    low: usize,
    gate: Arc<Gate>,
}

/// The open connections of one upstream address and the requests waiting for one.
#[derive(Debug, Default)]
struct Gate {
    open: AtomicUsize,
    queued: AtomicUsize,
    /// Told when a connection goes idle or closes.
    freed: tokio::sync::Notify,
}

impl Gate {
    /// Counts a new connection if there is room for one.
    fn try_open(&self, max: usize) -> bool {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    /// A connection closed (or was never made).
    fn closed(&self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
        self.freed.notify_one();
    }
}

/// A request's place in an upstream's queue, given back when dropped.
struct Queued(Arc<Gate>);

impl Drop for Queued {
    fn drop(&mut self) {
        self.0.queued.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Where pooled connections go: an address, and the TLS settings they were made with (0:
/// plain TCP).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Key {
    authority: Authority,
    tls: u64,
}

impl std::hash::Hash for Key {
    /// As `Authority`'s own (case-insensitive, as its equality is), but in one write
    /// rather than one a byte: every request looks its upstream up twice.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let text = self.authority.as_str().as_bytes();
        let mut lower = [0u8; 64];
        match lower.get_mut(..text.len()) {
            Some(lower) => {
                for (l, b) in lower.iter_mut().zip(text) {
                    *l = b.to_ascii_lowercase();
                }
                state.write(lower);
            }
            None => {
                for b in text {
                    state.write_u8(b.to_ascii_lowercase());
                }
            }
        }
        state.write_u64(self.tls);
    }
}

/// Where a request is sent: an address, over TLS when `tls` says how.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Dest<'a> {
    /// host:port
    pub(crate) authority: &'a Authority,
    /// TLS settings for an https:// upstream.
    pub(crate) tls: Option<&'a super::tls::UpstreamTls>,
}

impl Dest<'_> {
    fn key(&self) -> Key {
        Key {
            authority: self.authority.clone(),
            tls: self.tls.map_or(0, |t| t.id),
        }
    }
}

type IdleLists = HashMap<Key, Entry>;

/// The pool: idle connections by upstream address.
#[derive(Clone, Default)]
pub(crate) struct Pool {
    idle: Arc<Mutex<IdleLists>>,
    reaper: Arc<std::sync::OnceLock<()>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let idle: usize = self
            .idle
            .lock()
            .map_or(0, |m| m.values().map(|e| e.idle.len()).sum());
        f.debug_struct("Pool").field("idle", &idle).finish()
    }
}

impl Pool {
    /// Sends `req` (origin-form target, Host set) to `dest` on a pooled connection or a
    /// new one.
    /// With every connection `caps` allows busy, the request waits in the upstream's queue
    /// for one to come free (or is refused when the queue is full).
    pub(crate) async fn send(
        &self,
        dest: Dest<'_>,
        mut req: Request<UpstreamBody>,
        caps: Caps,
    ) -> Result<Response<PooledBody>, Failed> {
        let key = dest.key();
        let authority = &key;
        let mut queued: Option<(Queued, Instant)> = None;
        loop {
            let (idle, gate) = self.checkout(authority, caps.max_connections);
            if let Some(mut sender) = idle {
                // An idle connection is ready at once; one that closed meanwhile says so.
                if sender.ready().await.is_err() {
                    continue;
                }
                match sender.try_send_request(req).await {
                    Ok(resp) => return Ok(self.pooled(authority, sender, resp)),
                    Err(mut e) => match e.take_message() {
                        // Not written: the connection closed first; try another.
                        Some(r) => {
                            req = r;
                            continue;
                        }
                        None => return Err(Failed::sent(SendError::Exchange(e.into_error()))),
                    },
                }
            }
            if gate.try_open(caps.max_connections) {
                drop(queued);
                // Boxed: a new connection is the rare path, and its future would otherwise
                // be room in every request's.
                let mut sender = match Box::pin(connect(dest, gate, caps.connect_timeout)).await {
                    Ok(s) => s,
                    Err(error) => {
                        return Err(Failed {
                            error,
                            unsent: Some(req),
                        });
                    }
                };
                if let Err(e) = sender.ready().await {
                    return Err(Failed {
                        error: SendError::Exchange(e),
                        unsent: Some(req),
                    });
                }
                return match sender.try_send_request(req).await {
                    Ok(resp) => Ok(self.pooled(authority, sender, resp)),
                    Err(mut e) => {
                        let unsent = e.take_message();
                        Err(Failed {
                            error: SendError::Exchange(e.into_error()),
                            unsent,
                        })
                    }
                };
            }
            let since = match &queued {
                Some((_, since)) => *since,
                None => {
                    let admitted = gate
                        .queued
                        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                            (n < caps.max_queue).then_some(n + 1)
                        })
                        .is_ok();
                    if !admitted {
                        return Err(Failed {
                            error: SendError::Overloaded {
                                limit: caps.max_connections,
                                queue: caps.max_queue,
                                waited: None,
                            },
                            unsent: Some(req),
                        });
                    }
                    let now = Instant::now();
                    queued = Some((Queued(gate.clone()), now));
                    now
                }
            };
            let deadline = since + caps.queue_wait;
            if tokio::time::timeout_at(deadline.into(), gate.freed.notified())
                .await
                .is_err()
            {
                return Err(Failed {
                    error: SendError::Overloaded {
                        limit: caps.max_connections,
                        queue: caps.max_queue,
                        waited: Some(caps.queue_wait),
                    },
                    unsent: Some(req),
                });
            }
        }
    }

    /// An idle connection to `authority`, if there is one and fewer than `max_busy` of the
    /// address's connections are busy, and the address's counts. (Idle connections opened
    /// for a route with a higher cap do not let a route exceed its own.)
    fn checkout(
        &self,
        authority: &Key,
        max_busy: usize,
    ) -> (Option<SendRequest<UpstreamBody>>, Arc<Gate>) {
        let Ok(mut lists) = self.idle.lock() else {
            return (None, Arc::default());
        };
        // Looked up before an entry is made: no copy of the key on the common path.
        let entry = match lists.get_mut(authority) {
            Some(entry) => entry,
            None => lists.entry(authority.clone()).or_default(),
        };
        let open = entry.gate.open.load(Ordering::Acquire);
        if open.saturating_sub(entry.idle.len()) >= max_busy {
            return (None, entry.gate.clone());
        }
        while let Some(idle) = entry.idle.pop() {
            if idle.since.elapsed() < IDLE_TIMEOUT && !idle.sender.is_closed() {
                entry.low = entry.low.min(entry.idle.len());
                return (Some(idle.sender), entry.gate.clone());
            }
        }
        entry.low = 0;
        (None, entry.gate.clone())
    }

    /// Returns a connection whose response has been read. The request body may still be
    /// on its way (an upstream can answer before reading it all): such a connection is
    /// parked only once its request is fully written, so no later request queues behind a
    /// body that may never end.
    fn checkin(&self, authority: &Key, mut sender: SendRequest<UpstreamBody>) {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match sender.poll_ready(&mut cx) {
            Poll::Ready(Ok(())) => self.park(authority, sender),
            Poll::Ready(Err(_)) => {}
            Poll::Pending => {
                let (pool, authority) = (self.clone(), authority.clone());
                tokio::spawn(async move {
                    if let Ok(Ok(())) = tokio::time::timeout(IDLE_TIMEOUT, sender.ready()).await {
                        pool.park(&authority, sender);
                    }
                });
            }
        }
    }

    fn park(&self, authority: &Key, sender: SendRequest<UpstreamBody>) {
        if sender.is_closed() {
            return;
        }
        let Ok(mut idle) = self.idle.lock() else {
            return;
        };
        let entry = match idle.get_mut(authority) {
            Some(entry) => entry,
            None => idle.entry(authority.clone()).or_default(),
        };
        if entry.idle.len() < MAX_IDLE_PER_UPSTREAM {
            entry.idle.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
        // A request waiting in the queue can have it.
        let gate = entry.gate.clone();
        drop(idle);
        gate.freed.notify_one();
        self.reaper.get_or_init(|| {
            tokio::spawn(reap(Arc::downgrade(&self.idle)));
        });
    }

    fn pooled(
        &self,
        authority: &Key,
        sender: SendRequest<UpstreamBody>,
        resp: Response<Incoming>,
    ) -> Response<PooledBody> {
        let mut resp = resp.map(|inner| PooledBody {
            inner,
            home: Some((self.clone(), authority.clone(), sender)),
            stream: None,
        });
        if resp.body().inner.is_end_stream() {
            resp.body_mut().release();
        }
        resp
    }
}

/// Every [`PURGE_EVERY`], closes half of the connections no request needed since the last
/// time and those idle for longer than [`IDLE_TIMEOUT`] (dropping the sender ends the
/// connection's task and its socket), and forgets upstreams with none left. Ends with the
/// pool.
async fn reap(idle: std::sync::Weak<Mutex<IdleLists>>) {
    loop {
        tokio::time::sleep(PURGE_EVERY).await;
        let Some(idle) = idle.upgrade() else { return };
        let Ok(mut lists) = idle.lock() else { return };
        for entry in lists.values_mut() {
            purge(entry);
        }
        // An address is forgotten only when nothing counts on its gate.
        lists.retain(|_, e| !e.idle.is_empty() || Arc::strong_count(&e.gate) > 1);
    }
}

/// One purge of an address's idle connections (see [`reap`]).
fn purge(entry: &mut Entry) {
    let surplus = entry.low.min(entry.idle.len()) / 2;
    entry.idle.drain(..surplus);
    entry
        .idle
        .retain(|e| e.since.elapsed() < IDLE_TIMEOUT && !e.sender.is_closed());
    entry.low = entry.idle.len();
}

/// Opens a connection counted on `gate` (given back when the connection ends, or at once
/// when it cannot be made).
async fn connect(
    dest: Dest<'_>,
    gate: Arc<Gate>,
    timeout: Duration,
) -> Result<SendRequest<UpstreamBody>, SendError> {
    match open(dest, timeout).await {
        Ok((sender, conn)) => {
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(target: "candor::upstream", error = %e, "upstream connection ended with an error");
                }
                gate.closed();
            });
            Ok(sender)
        }
        Err(e) => {
            gate.closed();
            Err(e)
        }
    }
}

/// The connection task of an upstream connection.
type ConnTask = http1::Connection<TokioIo<UpstreamIo>, UpstreamBody>;

/// An upstream connection's transport: TCP, or TLS over TCP.
enum UpstreamIo {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl tokio::io::AsyncRead for UpstreamIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_read(cx, buf),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for UpstreamIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_write(cx, buf),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            UpstreamIo::Plain(s) => s.is_write_vectored(),
            UpstreamIo::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_flush(cx),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_shutdown(cx),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Connects to `dest` (TCP, then the TLS handshake for an https:// upstream), both within
/// `timeout`, and starts HTTP/1.1 on the connection.
async fn open(
    dest: Dest<'_>,
    timeout: Duration,
) -> Result<(SendRequest<UpstreamBody>, ConnTask), SendError> {
    let started = Instant::now();
    let authority = dest.authority;
    // Authority::host keeps the brackets of an IPv6 literal; the resolver does not want them.
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let default_port = if dest.tls.is_some() { 443 } else { 80 };
    let addr = (host, authority.port_u16().unwrap_or(default_port));
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(SendError::Connect(connect_cause(&e))),
        Err(_) => {
            return Err(SendError::Connect(format!(
                "no connection within {} (connect_timeout)",
                crate::time::human_duration(timeout)
            )));
        }
    };
    let _ = stream.set_nodelay(true);
    let io = match dest.tls {
        None => UpstreamIo::Plain(stream),
        Some(tls) => {
            let name = match &tls.server_name {
                Some(n) => n.clone(),
                None => rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|_| {
                    tracing::warn!(target: "candor::upstream", host = %host, "an upstream's host is not a name a TLS certificate can be checked against");
                    SendError::Connect(
                        "TLS: the target's host is not a name a certificate can be checked against (set upstream_sni)".to_owned(),
                    )
                })?,
            };
            let shown = name.to_str().into_owned();
            let left = timeout.saturating_sub(started.elapsed());
            let handshake =
                tokio_rustls::TlsConnector::from(tls.config.clone()).connect(name, stream);
            match tokio::time::timeout(left, handshake).await {
                Ok(Ok(s)) => UpstreamIo::Tls(Box::new(s)),
                Ok(Err(e)) => {
                    super::tls::log_handshake_failure(&e, tls, authority.as_str(), &shown);
                    return Err(SendError::Connect(super::tls::handshake_failure(&e, tls)));
                }
                Err(_) => {
                    return Err(SendError::Connect(format!(
                        "TLS handshake not done within {} (connect_timeout; is the upstream serving TLS on that port?)",
                        crate::time::human_duration(timeout)
                    )));
                }
            }
        }
    };
    // As many response headers as clients may send (hyper's default is 100: an upstream
    // setting many cookies would otherwise fail as a protocol error).
    http1::Builder::new()
        .max_headers(MAX_RESPONSE_HEADERS)
        .handshake(TokioIo::new(io))
        .await
        .map_err(SendError::Exchange)
}

/// The cause of a failed connect, in words: "connection refused", "name not resolved: ...".
fn connect_cause(e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::ConnectionRefused => {
            "connection refused: nothing accepts connections at that address".to_owned()
        }
        ErrorKind::TimedOut => format!("the TCP handshake timed out ({e})"),
        // Resolver failures carry no OS error number; socket failures do.
        _ if e.raw_os_error().is_none() => format!("the name could not be resolved ({e})"),
        _ => format!("tcp connect error ({e})"),
    }
}

/// An upstream response body; its connection returns to the pool when it has been read to
/// the end. Once [`PooledBody::stream_to_client`] has been called, a pause of the upstream
/// longer than the idle limit cuts the body off, and a body that ends badly is logged with
/// who ended it (upstream or client), the status already sent and the bytes delivered.
pub struct PooledBody {
    inner: Incoming,
    home: Option<(Pool, Key, SendRequest<UpstreamBody>)>,
    /// Boxed: most of the body's life is spent without it being looked at.
    stream: Option<Box<Streaming>>,
}

/// A response body on its way to a client.
#[derive(Debug)]
struct Streaming {
    request_id: http::HeaderValue,
    upstream: Authority,
    status: u16,
    idle: IdleTimer,
    last: Instant,
    sent: u64,
    polled: bool,
    /// Ended, well or badly (logged).
    over: bool,
}

impl Streaming {
    /// Logs and counts the end of a body that did not end well, by the upstream or by the
    /// client.
    fn ended_badly(&mut self, ended_by: EndedBy, cause: &str) {
        self.over = true;
        let s = &crate::stats::STATS;
        crate::stats::bump(if ended_by == EndedBy::Client {
            &s.cut_off_by_client
        } else {
            &s.cut_off_by_upstream
        });
        let ended_by = ended_by.as_str();
        tracing::warn!(
            target: "candor::request",
            request_id = %self.request_id.to_str().unwrap_or(""),
            upstream = %self.upstream,
            status = self.status,
            bytes_sent = self.sent,
            ended_by,
            cause,
            "response cut off"
        );
    }
}

impl std::fmt::Debug for PooledBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledBody")
            .field("pooled", &self.home.is_some())
            .finish()
    }
}

impl PooledBody {
    fn release(&mut self) {
        if let Some((pool, authority, sender)) = self.home.take() {
            pool.checkin(&authority, sender);
        }
    }

    /// Marks this body as going to a client: `idle` bounds the upstream's pauses, and the
    /// request id and status are what an early end is logged with.
    pub(crate) fn stream_to_client(
        &mut self,
        request_id: &http::HeaderValue,
        status: u16,
        idle: Duration,
    ) {
        let upstream = match &self.home {
            Some((_, key, _)) => key.authority.clone(),
            None => Authority::from_static("unknown"),
        };
        self.stream = Some(Box::new(Streaming {
            request_id: request_id.clone(),
            upstream,
            status,
            idle: IdleTimer::new(idle),
            last: Instant::now(),
            sent: 0,
            polled: false,
            over: self.inner.is_end_stream(),
        }));
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match polled {
            Poll::Ready(None) => {
                this.release();
                if let Some(s) = &mut this.stream {
                    s.over = true;
                }
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(frame))) => {
                let end = this.inner.is_end_stream();
                if end {
                    this.release();
                }
                if let Some(s) = &mut this.stream {
                    s.polled = true;
                    s.sent += frame.data_ref().map_or(0, |d| d.len() as u64);
                    s.last = Instant::now();
                    s.over |= end;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.home = None;
                if let Some(s) = &mut this.stream {
                    s.ended_badly(
                        EndedBy::Upstream,
                        &format!("the upstream's body broke off: {e}"),
                    );
                }
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Pending => {
                let Some(s) = &mut this.stream else {
                    return Poll::Pending;
                };
                s.polled = true;
                if !s.idle.expired(cx, s.last) {
                    return Poll::Pending;
                }
                this.home = None;
                let cause = format!(
                    "the upstream sent nothing for {} (timeouts.response_body_idle)",
                    crate::time::human_duration(s.idle.idle())
                );
                s.ended_badly(EndedBy::Upstream, &cause);
                Poll::Ready(Some(Err(cause.into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        if let Some(s) = &mut self.stream
            && s.polled
            && !s.over
        {
            s.ended_badly(
                EndedBy::Client,
                "the client went away before the response's end",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn keys_equal_in_any_case_hash_alike() {
        let key = |a: &str, tls| Key {
            authority: Authority::try_from(a).unwrap(),
            tls,
        };
        let hasher = std::collections::hash_map::RandomState::new();
        let (a, b) = (key("Example.COM:8080", 0), key("example.com:8080", 0));
        assert_eq!(a, b);
        assert_eq!(hasher.hash_one(&a), hasher.hash_one(&b));
        assert_ne!(
            hasher.hash_one(&a),
            hasher.hash_one(key("example.com:8080", 7))
        );
        // Past the 64 bytes hashed at once, too.
        let long = "a-very-long-upstream-host-name.that-goes-on.and-on.example.internal:8443";
        assert_eq!(
            hasher.hash_one(key(long, 0)),
            hasher.hash_one(key(&long.to_ascii_uppercase(), 0))
        );
    }
}
