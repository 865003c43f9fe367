//! The request context: what one request carries through the stages — its parts and body,
//! the downstream connection, the canonical path, the matched route, the identity snapshot
//! and the authenticated principal, its trace, and the trail of decisions.

use crate::http::address::{IpNet, client_ip, is_https};
use crate::http::body::GatewayBody;
use crate::http::trace::TraceContext;
use crate::identity::store::Snapshot;
use crate::pipeline::trail::Trail;
use crate::stages::authenticate::Principal;
use crate::stages::route::Route;
use http::{HeaderValue, Response};
use hyper::body::Incoming;
use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// What a stage decided.
#[derive(Debug)]
pub(crate) enum Flow {
    /// On to the next stage.
    Continue,
    /// Answer with this response (not an error: e.g. a redirect to HTTPS).
    Respond(Box<Response<GatewayBody>>),
}

/// What the stages know about the downstream connection.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Downstream<'a> {
    /// The peer's address.
    pub(crate) peer: SocketAddr,
    /// Whether the connection is TLS.
    pub(crate) tls: bool,
    /// Peers whose X-Forwarded-* headers are kept.
    pub(crate) trusted_proxies: &'a [IpNet],
}

/// One request on its way through the pipeline.
pub(crate) struct RequestCtx<'a> {
    /// The request head.
    pub(crate) parts: http::request::Parts,
    /// The request body, until an endpoint takes it.
    pub(crate) body: Option<Incoming>,
    /// The downstream connection.
    pub(crate) down: Downstream<'a>,
    /// The request id as an `X-Request-Id` value.
    pub(crate) request_id: &'a HeaderValue,
    /// The decisions so far.
    pub(crate) trail: &'a mut Trail,
    /// The canonical (normalised, decoded) path, when it differs from the request's.
    pub(crate) canonical_path: Option<String>,
    /// The normalised path to forward (escapes kept), when it differs from the request's.
    pub(crate) forward_path: Option<String>,
    /// The route the request matched, once routed.
    pub(crate) route: Option<&'a Route>,
    /// The identity snapshot the credential stages read (one per request).
    pub(crate) snapshot: Option<Arc<Snapshot>>,
    /// Who the request is from, once authenticated.
    pub(crate) principal: Option<Principal>,
    /// The format the request body must be well formed in, when negotiation found one it
    /// checks: the body is then read whole and checked before it is forwarded.
    pub(crate) body_format: Option<crate::stages::negotiate::BodyFormat>,
    /// The route's contract, when its body is still to be checked (with the parameter
    /// problems found so far): `forward` checks the body once it has it whole.
    pub(crate) validation: Option<crate::stages::validate::Pending>,
    /// The rate-limit policies the request passed, with their state after it.
    pub(crate) rate_limits: Vec<crate::limits::rate::PolicyState>,
    /// Whether the answer carries the RateLimit fields of `rate_limits`.
    pub(crate) rate_limit_fields: bool,
    /// For a request a limit refused: the limit and the count that refused it
    /// ([`crate::events::told::identity`]), by which a flood is told once a second.
    pub(crate) limited: Option<u64>,
    /// Whether the request was counted against its account's quotas (and is given back if
    /// a rate limit then refuses it or the upstream cannot be reached).
    pub(crate) quota_counted: bool,
    /// Whether any of the request reached an upstream (then its quota count stands).
    pub(crate) upstream_reached: bool,
    /// The request's W3C trace (its `traceparent`'s, or one started here): the trace id
    /// for problem bodies and events is `trace.trace_id_hex()`.
    pub(crate) trace: TraceContext,
    /// How long the upstream took to answer (retries included), once forwarded.
    pub(crate) upstream_time: Option<Duration>,
    client_ip: Option<IpAddr>,
}

impl<'a> RequestCtx<'a> {
    /// A context for a request on `down`.
    pub(crate) fn new(
        parts: http::request::Parts,
        body: Incoming,
        down: Downstream<'a>,
        request_id: &'a HeaderValue,
        trail: &'a mut Trail,
        trace: TraceContext,
    ) -> Self {
        RequestCtx {
            parts,
            body: Some(body),
            down,
            request_id,
            trail,
            canonical_path: None,
            forward_path: None,
            route: None,
            snapshot: None,
            principal: None,
            body_format: None,
            validation: None,
            rate_limits: Vec::new(),
            rate_limit_fields: false,
            limited: None,
            quota_counted: false,
            upstream_reached: false,
            trace,
            upstream_time: None,
            client_ip: None,
        }
    }

    /// The path routes match against: normalised, escapes decoded.
    pub(crate) fn path(&self) -> &str {
        self.canonical_path
            .as_deref()
            .unwrap_or_else(|| self.parts.uri.path())
    }

    /// Whether the request has a body. A declared length of 0 is no body, whatever the
    /// protocol (an HTTP/2 request may end with an empty DATA frame).
    pub(crate) fn has_body(&self) -> bool {
        use hyper::body::Body;
        self.body
            .as_ref()
            .is_some_and(|b| !b.is_end_stream() && b.size_hint().exact() != Some(0))
    }

    /// The client's address (behind trusted proxies), worked out once.
    pub(crate) fn client_ip(&mut self) -> IpAddr {
        *self.client_ip.get_or_insert_with(|| {
            client_ip(
                self.down.peer.ip(),
                &self.parts.headers,
                self.down.trusted_proxies,
            )
        })
    }

    /// Whether the request reached the edge over HTTPS (directly or per a trusted proxy).
    pub(crate) fn is_https(&self) -> bool {
        is_https(
            self.down.tls,
            self.down.peer.ip(),
            &self.parts.headers,
            self.down.trusted_proxies,
        )
    }

    /// The host the request names, lower case and without a port: the target's authority
    /// (absolute form), else the `Host` header.
    pub(crate) fn host(&self) -> Option<Cow<'_, str>> {
        let parts = &self.parts;
        let host = parts
            .uri
            .host()
            .or_else(|| {
                parts
                    .headers
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
            })
            .map(|h| {
                h.rsplit_once(':')
                    .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
                    .map_or(h, |(h, _)| h)
            })?;
        Some(if host.bytes().any(|b| b.is_ascii_uppercase()) {
            host.to_ascii_lowercase().into()
        } else {
            host.into()
        })
    }

    /// Takes the request head and body for the endpoint that consumes them (the head left
    /// behind is empty).
    pub(crate) fn take_request(
        &mut self,
    ) -> Result<(http::request::Parts, Incoming), crate::error::GatewayError> {
        let body = self.body.take().ok_or_else(|| {
            crate::error::GatewayError::new(candor_catalog::codes::INTERNAL_ERROR)
                .param("stage", "the request body was already taken")
                .source(crate::error::ErrorSource::Internal)
        })?;
        let parts = std::mem::replace(&mut self.parts, http::Request::new(()).into_parts().0);
        Ok((parts, body))
    }

    /// The identity snapshot of this request, loaded on first use.
    pub(crate) fn snapshot(
        &mut self,
        identity: &crate::identity::store::Identity,
    ) -> Arc<Snapshot> {
        self.snapshot
            .get_or_insert_with(|| identity.snapshot())
            .clone()
    }
}
