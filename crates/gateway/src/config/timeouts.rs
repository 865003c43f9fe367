//! `[timeouts]`: how long the gateway waits for a client, each wait starting at accept.

use super::reader::{Problems, TableReader};
use std::time::Duration;

const TIMEOUTS: &[&str] = &[
    "tls_handshake",
    "request_head",
    "keepalive",
    "request_body_idle",
    "response_body_idle",
    "max_connection_age",
];

/// `[timeouts]`: every wait on a client is bounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// From accept to the end of the TLS handshake.
    pub tls_handshake: Duration,
    /// For a connection's first request, from accept to the end of its head; for later
    /// requests, from the first byte of the head to its end (`request_timeout` 408).
    pub request_head: Duration,
    /// How long a connection may stay idle between the end of a response and the first
    /// byte of the next request (then it is closed, without an answer).
    pub keepalive: Duration,
    /// How long a request body may pause between two pieces once its head has arrived
    /// (`request_timeout` 408: the client stopped sending, never an upstream code).
    pub request_body_idle: Duration,
    /// How long an upstream may pause between two pieces of a response body it has started
    /// (the client's response is then cut off, and the cause logged).
    pub response_body_idle: Duration,
    /// How long a client connection may live; then it is asked to close (HTTP/2 GOAWAY,
    /// HTTP/1 `Connection: close` on the next response) and drained.
    pub max_connection_age: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tls_handshake: Duration::from_secs(10),
            request_head: Duration::from_secs(10),
            keepalive: Duration::from_secs(60),
            request_body_idle: Duration::from_secs(30),
            response_body_idle: Duration::from_secs(60),
            max_connection_age: Duration::from_secs(3600),
        }
    }
}

/// Reads `[timeouts]`; each must be between 100 ms and 1 h.
pub(super) fn read(top: &TableReader<'_, '_>, p: &mut Problems<'_>) -> Timeouts {
    let mut t = Timeouts::default();
    let Some(table) = top.table(p, "timeouts", TIMEOUTS) else {
        return t;
    };
    for (key, slot) in [
        ("tls_handshake", &mut t.tls_handshake),
        ("request_head", &mut t.request_head),
        ("keepalive", &mut t.keepalive),
        ("request_body_idle", &mut t.request_body_idle),
        ("response_body_idle", &mut t.response_body_idle),
        ("max_connection_age", &mut t.max_connection_age),
    ] {
        if let Some(d) = table.duration(p, key) {
            if d < Duration::from_millis(100) || d > Duration::from_secs(3600) {
                p.at(
                    table.get(key).map_or(table.span.clone(), |v| v.span()),
                    &table.key_path(key),
                    format!("{d:?} is outside the accepted range"),
                )
                .expected = Some("between \"100ms\" and \"1h\"".into());
            } else {
                *slot = d;
            }
        }
    }
    table.finish(p);
    t
}
