//! Body types. Bodies stream in both directions; nothing on the proxy path buffers a whole
//! body.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// A response body: one gateway-made chunk, or the upstream's body streamed through.
#[derive(Debug)]
pub enum GatewayBody {
    /// A body the gateway wrote (error documents, pages).
    Full(Option<Bytes>),
    /// The upstream's body, streamed.
    Upstream(crate::upstream::pool::PooledBody),
}

impl GatewayBody {
    /// A body holding `bytes`.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        GatewayBody::Full(Some(bytes.into()))
    }

    /// An empty body.
    pub fn empty() -> Self {
        GatewayBody::Full(None)
    }
}

/// Why a body failed on its way.
pub(crate) type BodyError = Box<dyn std::error::Error + Send + Sync>;

impl Body for GatewayBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            GatewayBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            GatewayBody::Upstream(inc) => Pin::new(inc).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            GatewayBody::Full(b) => b.is_none(),
            GatewayBody::Upstream(inc) => inc.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            GatewayBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            GatewayBody::Full(None) => SizeHint::with_exact(0),
            GatewayBody::Upstream(inc) => inc.size_hint(),
        }
    }
}

/// A response body on its way to the client, carrying the connection's in-flight mark:
/// when hyper has sent it to the end and drops it, the connection counts as idle again.
#[derive(Debug)]
pub(crate) struct ClientBody {
    inner: GatewayBody,
    _in_flight: crate::http::guard::InFlight,
}

impl ClientBody {
    /// `inner`, keeping `in_flight` until it has been sent.
    pub(crate) fn new(inner: GatewayBody, in_flight: crate::http::guard::InFlight) -> Self {
        ClientBody {
            inner,
            _in_flight: in_flight.answered(),
        }
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What went wrong with a request body on its way upstream: always the client's doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BodyFault {
    /// More bytes arrived than the size limit allows.
    TooLarge,
    /// The body's framing is broken: what was wrong.
    Broken(String),
    /// The client closed the connection after this many body bytes, before the end.
    EndedEarly(u64),
    /// Nothing arrived for the configured idle time.
    Stalled,
}

/// How a request body is doing, shared by the body (on the upstream connection's task) and
/// the forward stage.
#[derive(Debug)]
pub(crate) struct BodyWatch {
    fault: OnceLock<BodyFault>,
    /// When the last piece arrived (or the body was created), in nanoseconds since `base`.
    last_data: AtomicU64,
    /// The body is waiting for the client (it was read and had nothing).
    waiting: AtomicBool,
    /// The body has ended.
    done: AtomicBool,
    base: Instant,
}

impl BodyWatch {
    /// A body starting now.
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(BodyWatch {
            fault: OnceLock::new(),
            last_data: AtomicU64::new(0),
            waiting: AtomicBool::new(false),
            done: AtomicBool::new(false),
            base: Instant::now(),
        })
    }

    /// What went wrong, if anything.
    pub(crate) fn fault(&self) -> Option<&BodyFault> {
        self.fault.get()
    }

    /// When the client last sent a piece of the body (or the body started).
    pub(crate) fn last_data(&self) -> Instant {
        self.base + Duration::from_nanos(self.last_data.load(Ordering::Relaxed))
    }

    /// Whether the body is waiting for the client, who has not finished it.
    pub(crate) fn waiting_for_client(&self) -> bool {
        !self.done.load(Ordering::Relaxed) && self.waiting.load(Ordering::Relaxed)
    }

    fn data_arrived(&self) {
        let nanos = self.base.elapsed().as_nanos() as u64;
        self.last_data.store(nanos, Ordering::Relaxed);
        self.waiting.store(false, Ordering::Relaxed);
    }

    fn failed(&self, fault: BodyFault) -> BodyError {
        let words = match &fault {
            BodyFault::TooLarge => "the request body exceeds the size limit".to_owned(),
            BodyFault::Broken(why) => format!("the request body is broken: {why}"),
            BodyFault::EndedEarly(n) => {
                format!("the client closed the request body after {n} bytes")
            }
            BodyFault::Stalled => "the client stopped sending the request body".to_owned(),
        };
        let _ = self.fault.set(fault);
        words.into()
    }
}

/// A pause limit for a body: one timer, set when the body first waits and fired at most once
/// per idle period (when it fires early, it is set to the real deadline), so that no piece
/// of the body pays for a timer.
#[derive(Debug)]
pub(crate) struct IdleTimer {
    idle: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl IdleTimer {
    /// A limit of `idle` per pause.
    pub(crate) fn new(idle: Duration) -> Self {
        IdleTimer { idle, timer: None }
    }

    /// The limit.
    pub(crate) fn idle(&self) -> Duration {
        self.idle
    }

    /// Called when the body has to wait: whether `idle` has passed since `last`, the
    /// arrival of its last piece.
    pub(crate) fn expired(&mut self, cx: &mut Context<'_>, last: Instant) -> bool {
        let idle = self.idle;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
        if timer.as_mut().poll(cx).is_pending() {
            return false;
        }
        let deadline = last + idle;
        if Instant::now() >= deadline {
            return true;
        }
        timer.as_mut().reset(deadline.into());
        let _ = timer.as_mut().poll(cx);
        false
    }
}

/// The request body on its way upstream. It counts bytes, so that a body without
/// Content-Length is cut off at the size limit; gives up when the client pauses longer than
/// the idle timeout; and tells any failure as the client's (see [`BodyWatch`]).
#[derive(Debug)]
pub(crate) struct UpstreamBody {
    inner: Source,
    limit: u64,
    seen: u64,
    idle: IdleTimer,
    watch: Arc<BodyWatch>,
}

/// Where an upstream body's bytes come from.
#[derive(Debug)]
enum Source {
    /// Streamed from the client as they come.
    Client(Incoming),
    /// Read whole already (to be checked first); taken when sent.
    Held(Option<Bytes>),
}

impl UpstreamBody {
    /// Wraps `inner`: at most `limit` bytes, pauses of at most `idle`.
    pub(crate) fn new(inner: Incoming, limit: u64, idle: Duration, watch: Arc<BodyWatch>) -> Self {
        UpstreamBody {
            inner: Source::Client(inner),
            limit,
            seen: 0,
            idle: IdleTimer::new(idle),
            watch,
        }
    }

    /// A body read whole from the client already (its limits were applied then).
    pub(crate) fn held(bytes: Bytes, watch: Arc<BodyWatch>) -> Self {
        UpstreamBody {
            seen: bytes.len() as u64,
            limit: u64::MAX,
            inner: Source::Held(Some(bytes).filter(|b| !b.is_empty())),
            idle: IdleTimer::new(Duration::MAX),
            watch,
        }
    }

    /// Called when the client keeps the body waiting: whether the idle time has passed.
    fn stalled(&mut self, cx: &mut Context<'_>) -> bool {
        self.watch.waiting.store(true, Ordering::Relaxed);
        self.idle.expired(cx, self.watch.last_data())
    }
}

/// The client's side of a failed request body: a framing fault the head guard found, the
/// connection closing early, or whatever else the parser reported.
fn client_fault(e: &hyper::Error, seen: u64) -> BodyFault {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if let Some(b) = io
                .get_ref()
                .and_then(|i| i.downcast_ref::<crate::http::guard::BrokenFraming>())
            {
                return BodyFault::Broken(b.0.to_owned());
            }
            if io.kind() == std::io::ErrorKind::UnexpectedEof {
                return BodyFault::EndedEarly(seen);
            }
        }
        cur = err.source();
    }
    if e.is_incomplete_message() || e.is_canceled() {
        return BodyFault::EndedEarly(seen);
    }
    BodyFault::Broken(e.to_string())
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let inner = match &mut this.inner {
            Source::Client(inner) => inner,
            Source::Held(bytes) => {
                this.watch.done.store(true, Ordering::Relaxed);
                return Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b))));
            }
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.seen += d.len() as u64;
                    if this.seen > this.limit {
                        return Poll::Ready(Some(Err(this.watch.failed(BodyFault::TooLarge))));
                    }
                }
                this.watch.data_arrived();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                let fault = client_fault(&e, this.seen);
                Poll::Ready(Some(Err(this.watch.failed(fault))))
            }
            Poll::Ready(None) => {
                this.watch.done.store(true, Ordering::Relaxed);
                Poll::Ready(None)
            }
            Poll::Pending if this.stalled(cx) => {
                Poll::Ready(Some(Err(this.watch.failed(BodyFault::Stalled))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        let end = match &self.inner {
            Source::Client(inner) => inner.is_end_stream(),
            Source::Held(bytes) => bytes.is_none(),
        };
        if end {
            self.watch.done.store(true, Ordering::Relaxed);
        }
        end
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Source::Client(inner) => inner.size_hint(),
            Source::Held(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}

/// A JSON document (`application/json`) with `status`: the one way the admin API, the demo
/// API and the token endpoint answer with data.
pub(crate) fn json_response(
    status: http::StatusCode,
    v: impl std::borrow::Borrow<serde_json::Value>,
) -> http::Response<GatewayBody> {
    let mut resp = http::Response::new(GatewayBody::full(v.borrow().to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}
