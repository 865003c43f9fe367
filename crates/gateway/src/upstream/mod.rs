//! Talking to upstreams: where a route forwards to ([`Upstream`]), the connection pool, and
//! the targets' balance, passive health and retry budget (`targets`).
//!
//! May depend on: `http::body`. Nothing above it: the forward stage uses this area, never
//! the reverse.

pub(crate) mod health;
pub(crate) mod pool;
pub(crate) mod targets;
pub(crate) mod tls;

/// One address an upstream's requests may go to.
#[derive(Clone, Debug)]
pub struct Target {
    /// host:port
    pub authority: http::uri::Authority,
    /// The authority as a Host header value, made once.
    pub host_header: http::HeaderValue,
    /// As written in the config: for the log and the admin listener only.
    pub display: String,
    /// How clients are told of it, never its address: the upstream's `upstream_name`, with
    /// "(target 2 of 3)" when it has several targets; "target 2 of 3" for an unnamed
    /// upstream's; empty for the only target of an unnamed upstream.
    pub label: String,
}

impl Target {
    /// The label as it reads after "the upstream" in a sentence: " name", " (target 2 of
    /// 3)", or nothing.
    pub fn in_words(&self) -> String {
        match self.label.as_str() {
            "" => String::new(),
            l if l.starts_with("target ") => format!(" ({l})"),
            l => format!(" {l}"),
        }
    }

    /// The label for a JSON member: "upstream" for the only target of an unnamed upstream.
    pub fn public(&self) -> &str {
        if self.label.is_empty() {
            "upstream"
        } else {
            &self.label
        }
    }
}

/// Labels `targets` for clients (see [`Target::label`]), by the upstream's `name`.
pub(crate) fn label_targets(targets: &mut [Target], name: Option<&str>) {
    let n = targets.len();
    for (i, t) in targets.iter_mut().enumerate() {
        t.label = match (name, n) {
            (Some(name), 1) => name.to_owned(),
            (Some(name), _) => format!("{name} (target {} of {n})", i + 1),
            (None, 1) => String::new(),
            (None, _) => format!("target {} of {n}", i + 1),
        };
    }
}

/// Where a route forwards to: one or more targets sharing a base path, how a request picks
/// one, and how failures are retried and ejected.
#[derive(Clone, Debug)]
pub struct Upstream {
    /// The targets, in configuration order.
    pub targets: Vec<Target>,
    /// Path prefix prepended to the request path ("" for none).
    pub base_path: String,
    /// As written in the config (the targets, comma-separated).
    pub display: String,
    /// The most connections open to each target at once (route key `max_connections`).
    pub max_connections: usize,
    /// The most requests waiting for one of them (route key `max_queue`); more get
    /// `upstream_overloaded`.
    pub max_queue: usize,
    /// How a request picks a target.
    pub balance: targets::Balance,
    /// How long connecting to a target may take.
    pub connect_timeout: std::time::Duration,
    /// When a failed try is tried again.
    pub retry: targets::RetryPolicy,
    /// When a failing target is ejected.
    pub health: targets::PassiveHealth,
    /// The route it belongs to: targets' health is per route (one route's failures, TLS
    /// settings or retry rules do not take a target from another).
    pub(crate) route: std::sync::Arc<str>,
    /// The round-robin turn.
    pub(crate) turn: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// Requests and retries in flight, for the retry budget.
    pub(crate) budget: std::sync::Arc<targets::Budget>,
    /// The targets' states, looked up on first use (see `targets::Targets`).
    pub(crate) states:
        std::sync::Arc<std::sync::OnceLock<Vec<std::sync::Arc<targets::TargetState>>>>,
    /// Active health checks, if the route sets them.
    pub health_check: Option<health::HealthCheck>,
    /// Whether the targets are https://.
    pub https: bool,
    /// TLS settings of an https:// upstream.
    pub tls: Option<tls::UpstreamTls>,
}

/// Envoy's default circuit-breaker thresholds: connections and pending requests.
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// See [`DEFAULT_MAX_CONNECTIONS`].
pub(crate) const DEFAULT_MAX_QUEUE: usize = 1024;
