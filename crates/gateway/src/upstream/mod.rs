//! Talking to upstreams: the connection pool (targets, health checks, retries and
//! per-upstream concurrency will live here too).
//!
//! May depend on: `http::body`. Nothing above it: the forward stage uses this area, never
//! the reverse.

pub(crate) mod pool;
