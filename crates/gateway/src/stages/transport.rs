//! Transport stage: size limits on the request target, the header section and the body.

use crate::error::GatewayError;
use crate::pipeline::context::RequestCtx;
use candor_catalog::codes;
use http::request::Parts;

/// `[limits]`
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Longest accepted request target (path and query), in bytes.
    pub max_uri_bytes: usize,
    /// Largest accepted header section (names and values), in bytes.
    pub max_header_bytes: usize,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: u64,
    /// The most client connections open at once on the listener (more get
    /// `server_overloaded`, or are closed on a TLS listener).
    pub max_connections: usize,
    /// The most HTTP/2 streams a client may have open at once on one connection.
    pub max_h2_streams: u32,
    /// The most keys one rate-limit policy holds (keys beyond share one bucket until idle
    /// keys are evicted).
    pub max_rate_limit_keys: usize,
    /// How often quota counts are saved: what a crash can lose at most.
    pub quota_save_interval: std::time::Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_uri_bytes: 8 * 1024,
            max_header_bytes: 32 * 1024,
            max_body_bytes: 10 * 1024 * 1024,
            max_connections: 10_000,
            max_h2_streams: 100,
            max_rate_limit_keys: 1_000_000,
            quota_save_interval: std::time::Duration::from_secs(5),
        }
    }
}

/// `uri_too_long`: a target of `length` bytes (a number, or "more than N") against `limit`.
pub(crate) fn uri_too_long(length: String, limit: usize) -> GatewayError {
    GatewayError::new(codes::URI_TOO_LONG)
        .param("length", length)
        .param("limit", limit.to_string())
        .extension("limit", limit.into())
}

/// Checks the limits that can be checked before reading the body.
pub(crate) fn check_limits(limits: &Limits, parts: &Parts) -> Result<(), GatewayError> {
    let target_len = parts.uri.path_and_query().map_or(1, |pq| pq.as_str().len());
    if target_len > limits.max_uri_bytes {
        return Err(uri_too_long(target_len.to_string(), limits.max_uri_bytes));
    }
    let mut total = 0usize;
    let mut largest: (&str, usize) = ("", 0);
    for (name, value) in &parts.headers {
        // Name, ": ", value, CRLF: the size the header takes on the wire in HTTP/1.1.
        let size = name.as_str().len() + value.len() + 4;
        total += size;
        if size > largest.1 {
            largest = (name.as_str(), size);
        }
    }
    if total > limits.max_header_bytes {
        return Err(GatewayError::new(codes::HEADERS_TOO_LARGE)
            .param("length", format!("{total} bytes"))
            .param("limit", format!("{} bytes", limits.max_header_bytes))
            .param(
                "largest",
                format!(" The largest is {} ({} bytes).", largest.0, largest.1),
            )
            .extension("limit", limits.max_header_bytes.into())
            .extension("largest_header", largest.0.into()));
    }
    if let Some(len) = content_length(parts)
        && len > limits.max_body_bytes
    {
        return Err(payload_too_large(len.to_string(), limits.max_body_bytes));
    }
    Ok(())
}

/// The declared Content-Length, if any and well-formed.
pub(crate) fn content_length(parts: &Parts) -> Option<u64> {
    parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// `payload_too_large` for a body of `length` (a number, or words such as "more than N").
pub(crate) fn payload_too_large(length: String, limit: u64) -> GatewayError {
    GatewayError::new(codes::PAYLOAD_TOO_LARGE)
        .param("length", length)
        .param("limit", limit.to_string())
        .extension("limit", limit.into())
}

/// The transport stage: refuses a request over the size limits.
pub(crate) fn run(limits: &Limits, ctx: &mut RequestCtx<'_>) -> Result<(), GatewayError> {
    check_limits(limits, &ctx.parts)
        .and_then(|()| check_host(&ctx.parts))
        .inspect_err(|e| {
            ctx.trail
                .record("transport", "reject", Some(e.code), Vec::new());
        })
}

/// RFC 9112 §3.2: an HTTP/1.1 request carries exactly one `Host` header. Two could name two
/// hosts (one routed on, another forwarded); none leaves the host to guesswork.
fn check_host(parts: &Parts) -> Result<(), GatewayError> {
    if parts.version != http::Version::HTTP_11 {
        return Ok(());
    }
    let mut hosts = parts.headers.get_all(http::header::HOST).iter();
    let reason = match (hosts.next(), hosts.next()) {
        (Some(_), None) => return Ok(()),
        (None, _) => "an HTTP/1.1 request must carry a Host header, and this one has none",
        (Some(_), Some(_)) => {
            "an HTTP/1.1 request carries exactly one Host header, and this one has several"
        }
    };
    let line: String = format!("{} {}", parts.method, parts.uri.path())
        .chars()
        .take(24)
        .collect();
    Err(GatewayError::new(codes::MALFORMED_REQUEST)
        .param("reason", reason)
        .param("start", format!("\"{}\"", line.escape_debug())))
}
