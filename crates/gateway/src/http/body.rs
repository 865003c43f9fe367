//! Body types. Bodies stream in both directions; nothing on the proxy path buffers a whole
//! body.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

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

impl Body for GatewayBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
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
            _in_flight: in_flight,
        }
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The request body on its way upstream, counting bytes so that a body without
/// Content-Length is cut off at the size limit.
#[derive(Debug)]
pub(crate) struct UpstreamBody {
    inner: Incoming,
    limit: u64,
    seen: u64,
    exceeded: Arc<AtomicBool>,
}

/// The request body grew past the limit.
#[derive(Debug)]
pub(crate) struct BodyTooLarge;

impl std::fmt::Display for BodyTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("request body exceeds the size limit")
    }
}

impl std::error::Error for BodyTooLarge {}

impl UpstreamBody {
    /// Wraps `inner`; `exceeded` is set if more than `limit` bytes arrive.
    pub(crate) fn new(inner: Incoming, limit: u64, exceeded: Arc<AtomicBool>) -> Self {
        UpstreamBody {
            inner,
            limit,
            seen: 0,
            exceeded,
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.seen += d.len() as u64;
                    if this.seen > this.limit {
                        this.exceeded.store(true, Ordering::Relaxed);
                        return Poll::Ready(Some(Err(Box::new(BodyTooLarge))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
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
