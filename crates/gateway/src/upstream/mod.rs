//! Talking to upstreams: where a route forwards to ([`Upstream`]), the connection pool (targets, health checks, retries and
//! per-upstream concurrency will live here too).
//!
//! May depend on: `http::body`. Nothing above it: the forward stage uses this area, never
//! the reverse.

pub(crate) mod pool;

/// Where a route forwards to.
#[derive(Clone, Debug)]
pub struct Upstream {
    /// host:port
    pub authority: http::uri::Authority,
    /// The authority as a Host header value, made once.
    pub host_header: http::HeaderValue,
    /// Path prefix prepended to the request path ("" for none).
    pub base_path: String,
    /// As written in the config.
    pub display: String,
    /// The most connections open to this upstream at once (route key `max_connections`).
    pub max_connections: usize,
    /// The most requests waiting for one of them (route key `max_queue`); more get
    /// `upstream_overloaded`.
    pub max_queue: usize,
}

/// Envoy's default circuit-breaker thresholds: connections and pending requests.
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// See [`DEFAULT_MAX_CONNECTIONS`].
pub(crate) const DEFAULT_MAX_QUEUE: usize = 1024;
