//! Speaking HTTP to clients: listeners and accept, TLS, the head guard in front of hyper,
//! bodies, request ids and client addresses.
//!
//! | module | what |
//! | --- | --- |
//! | [`server`] | listeners, accept, connections, reload, graceful shutdown |
//! | [`connections`] | connections counted per listener against its cap, drained, closed when idle, old or abusive |
//! | [`guard`] | every HTTP/1 request head checked before hyper parses it |
//! | [`grammar`] | the HTTP/1 request-line and header-line grammar the guard applies |
//! | [`tls`] | rustls from PEM files, ALPN |
//! | [`body`] | the body type that streams both ways |
//! | [`json_body`] | JSON request bodies for the admin and demo APIs |
//! | [`request_id`] | `X-Request-Id`: kept when well formed, else a new ULID |
//! | [`trace`] | W3C `traceparent`: continued when valid, else a new trace; this hop's to the upstream |
//! | [`address`] | IP networks, the client's address behind trusted proxies |
//!
//! May depend on: `pipeline` (the server hands requests to it), `admin`, `config`,
//! `identity` and `limits` (for their background tasks), the catalog.

pub(crate) mod address;
pub(crate) mod body;
pub(crate) mod connections;
pub(crate) mod grammar;
pub(crate) mod guard;
pub(crate) mod h2_frames;
pub(crate) mod json_body;
pub(crate) mod request_id;
pub(crate) mod server;
pub(crate) mod tls;
pub(crate) mod trace;

/// Percent-encodes `s` for one path segment (what the admin API's `/blocks/{kind}/{key}`
/// takes, from the token endpoint's 429 and from `candor blocks`).
pub fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b':' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
