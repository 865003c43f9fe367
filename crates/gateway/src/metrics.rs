//! Prometheus metrics: one process-wide registry, served by the admin listener's
//! `/metrics` (behind the admin token, like `/stats`). The names are listed in
//! `docs/metrics.md`.
//!
//! Recording is cheap on the hot path: each route's plan holds its own handles
//! ([`RouteMetrics`], resolved when the configuration is compiled), so a request answered
//! 200 costs one atomic add and two histogram observations, with no label lookup. Other
//! statuses and error codes look their counter up by label (cardinality stays bounded:
//! route names come from the configuration, codes from the catalog, statuses are numbers).
//!
//! What `/stats` already counts (connections, closes, TLS handshakes, errors by code) is
//! read from its counters when scraped, never counted twice.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

/// The `Content-Type` of the Prometheus text format (version 0.0.4).
pub(crate) const PROMETHEUS_TEXT: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
/// The `Content-Type` of the OpenMetrics text format, answered to scrapers that ask for it.
pub(crate) const OPENMETRICS_TEXT: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The route label of a request no route matched.
const UNROUTED: &str = "";
/// The code label of an answer that is no gateway error.
const NO_CODE: &str = "none";

/// Gateway time: from microseconds (a plain proxied request) to seconds (a large body
/// checked against its contract, a password hashed at the token endpoint).
const GATEWAY_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];
/// Upstream time: the usual web latencies, up to route timeouts.
const UPSTREAM_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: Arc<str>,
    status: u16,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyLabels {
    route: String,
    policy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkLabel {
    sink: String,
}

fn gateway_histogram() -> Histogram {
    Histogram::new(GATEWAY_BUCKETS)
}

fn upstream_histogram() -> Histogram {
    Histogram::new(UPSTREAM_BUCKETS)
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// The metric families recorded as things happen (those read from other counters are
/// made at each scrape, in [`encode`]).
struct Recorded {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    gateway: HistogramFamily<RouteLabel>,
    upstream: HistogramFamily<RouteLabel>,
    rate_limited: Family<PolicyLabels, Counter>,
}

static RECORDED: LazyLock<Recorded> = LazyLock::new(|| {
    let mut registry = Registry::default();
    let requests = Family::<RequestLabels, Counter>::default();
    let gateway: HistogramFamily<RouteLabel> = Family::new_with_constructor(gateway_histogram);
    let upstream: HistogramFamily<RouteLabel> = Family::new_with_constructor(upstream_histogram);
    let rate_limited = Family::<PolicyLabels, Counter>::default();
    registry.register(
        "candor_requests",
        "Requests answered by the pipeline, by route (empty: no route matched), status and catalog code (none: not a gateway error)",
        requests.clone(),
    );
    registry.register(
        "candor_gateway_duration_seconds",
        "Time a request spent in the gateway until its response head, without the upstream's time",
        gateway.clone(),
    );
    registry.register(
        "candor_upstream_duration_seconds",
        "Time from sending a request upstream to its response head, retries included",
        upstream.clone(),
    );
    registry.register(
        "candor_rate_limit_rejections",
        "Requests refused by a rate-limit policy, by route and policy",
        rate_limited.clone(),
    );
    Recorded {
        registry,
        requests,
        gateway,
        upstream,
        rate_limited,
    }
});

/// One route's metric handles, resolved when its plan is compiled: recording a request
/// takes no label lookup on the common path.
#[derive(Debug)]
pub(crate) struct RouteMetrics {
    route: Arc<str>,
    /// `candor_requests_total{route, status="200", code="none"}`.
    ok: Counter,
    gateway: Histogram,
    upstream: Histogram,
}

impl RouteMetrics {
    /// The route's name.
    pub(crate) fn route(&self) -> &Arc<str> {
        &self.route
    }

    /// The handles of the route named `route` (its series exist from now on, at 0).
    pub(crate) fn new(route: &str) -> RouteMetrics {
        let m = &*RECORDED;
        let route: Arc<str> = route.into();
        let label = RouteLabel {
            route: route.clone(),
        };
        RouteMetrics {
            ok: m.requests.get_or_create_owned(&RequestLabels {
                route: route.clone(),
                status: 200,
                code: NO_CODE,
            }),
            gateway: m.gateway.get_or_create_owned(&label),
            upstream: m.upstream.get_or_create_owned(&label),
            route,
        }
    }
}

/// The handles of requests no route matched.
static UNROUTED_METRICS: LazyLock<RouteMetrics> = LazyLock::new(|| RouteMetrics::new(UNROUTED));

/// Records one request the pipeline answered: on `route` (`None`: it matched none), with
/// `status` and the gateway's error `code` (if any), `total` time to the response head,
/// of which `upstream` waiting for the upstream.
pub(crate) fn request(
    route: Option<&RouteMetrics>,
    status: u16,
    code: Option<&'static str>,
    total: Duration,
    upstream: Option<Duration>,
) {
    let r = route.unwrap_or(&UNROUTED_METRICS);
    match (status, code) {
        (200, None) => {
            r.ok.inc();
        }
        _ => {
            RECORDED
                .requests
                .get_or_create(&RequestLabels {
                    route: r.route.clone(),
                    status,
                    code: code.unwrap_or(NO_CODE),
                })
                .inc();
        }
    }
    let waited = upstream.unwrap_or_default();
    r.gateway
        .observe(total.saturating_sub(waited).as_secs_f64());
    if let Some(u) = upstream {
        r.upstream.observe(u.as_secs_f64());
    }
}

/// The counter of requests refused by `policy` of `route`, made once (with the route's plan)
/// so that a refusal only increments it.
pub(crate) fn rate_limited(route: &str, policy: &str) -> Counter {
    RECORDED
        .rate_limited
        .get_or_create(&PolicyLabels {
            route: route.to_owned(),
            policy: policy.to_owned(),
        })
        .clone()
}

/// What is read at scrape time from the running gateway.
pub(crate) struct Live<'a> {
    /// Per listener: name, connections open now, refused at its cap so far.
    pub(crate) connections: &'a [(&'static str, usize, u64)],
    /// Per target of the current configuration: route, target as configured, healthy.
    pub(crate) targets: Vec<(String, String, bool)>,
    /// Per event subscription: its name, events in its sink's queue, events it dropped.
    pub(crate) sinks: Vec<(String, i64, u64)>,
    /// The event log: events written, lost, sends that waited for room, failed writes.
    pub(crate) event_log: [u64; 4],
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabel {
    listener: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ByLabel {
    by: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    code: &'static str,
    ended_by: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabels {
    route: String,
    target: String,
}

/// The families read at scrape time from `/stats`'s counters and the running gateway.
fn scraped(live: &Live<'_>) -> Registry {
    let stats = &crate::stats::STATS;
    let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let mut r = Registry::default();

    let open = Family::<ListenerLabel, Gauge>::default();
    let refused = Family::<ListenerLabel, Counter>::default();
    for &(listener, n, refused_at_cap) in live.connections {
        let l = ListenerLabel { listener };
        open.get_or_create(&l).set(n as i64);
        refused.get_or_create(&l).inc_by(refused_at_cap);
    }
    r.register(
        "candor_open_connections",
        "Connections open now, by listener",
        open,
    );
    r.register(
        "candor_connections_refused",
        "Connections refused at the listener's connection cap",
        refused,
    );

    let closed = Family::<ReasonLabel, Counter>::default();
    for (reason, c) in [
        ("idle", &stats.closed_idle),
        ("max_age", &stats.closed_age),
        ("resets", &stats.closed_resets),
    ] {
        closed.get_or_create(&ReasonLabel { reason }).inc_by(get(c));
    }
    r.register(
        "candor_connections_closed",
        "Connections the gateway closed: idle for timeouts.keepalive, older than timeouts.max_connection_age, or resetting too many of their requests",
        closed,
    );
    let tls: Counter = Counter::default();
    tls.inc_by(get(&stats.tls_handshakes_failed));
    r.register(
        "candor_tls_handshakes_failed",
        "TLS handshakes that failed or did not end within timeouts.tls_handshake",
        tls,
    );
    let parked: Gauge = Gauge::default();
    parked.set(get(&stats.parked) as i64);
    r.register(
        "candor_idle_parked_connections",
        "HTTP/1 connections idle now with their buffers given back",
        parked,
    );
    let cut = Family::<ByLabel, Counter>::default();
    cut.get_or_create(&ByLabel { by: "upstream" })
        .inc_by(get(&stats.cut_off_by_upstream));
    cut.get_or_create(&ByLabel { by: "client" })
        .inc_by(get(&stats.cut_off_by_client));
    r.register(
        "candor_responses_cut_off",
        "Responses cut off after their status was sent, by who broke off",
        cut,
    );
    let errors = Family::<ErrorLabels, Counter>::default();
    stats.each_error(|code, ended_by, n| {
        errors
            .get_or_create(&ErrorLabels {
                code,
                ended_by: ended_by.as_str(),
            })
            .inc_by(n);
    });
    r.register(
        "candor_errors",
        "Errors answered by catalog code and who ended the exchange, on every listener (requests refused before they were parsed included)",
        errors,
    );

    let healthy = Family::<TargetLabels, Gauge>::default();
    for (route, target, ok) in &live.targets {
        healthy
            .get_or_create(&TargetLabels {
                route: route.clone(),
                target: target.clone(),
            })
            .set(i64::from(*ok));
    }
    r.register(
        "candor_upstream_target_healthy",
        "Whether a route's upstream target is in rotation (1) or ejected (0)",
        healthy,
    );

    for (i, (name, help)) in [
        ("candor_event_log_written", "Events the event log wrote (file and index)"),
        ("candor_event_log_lost", "Events lost: the queue was full for an event that could not wait, or the log had closed"),
        ("candor_event_log_waits", "Requests that waited for room in the event log's queue"),
        ("candor_event_log_write_errors", "Batches the event log could not write whole (a full disk, say): see the gateway's log"),
    ]
    .into_iter()
    .enumerate()
    {
        let c = Counter::<u64>::default();
        c.inc_by(live.event_log[i]);
        r.register(name, help, c);
    }

    let depth = Family::<SinkLabel, Gauge>::default();
    let dropped = Family::<SinkLabel, Counter>::default();
    for (sink, waiting, lost) in &live.sinks {
        let l = SinkLabel { sink: sink.clone() };
        depth.get_or_create(&l).set(*waiting);
        dropped.get_or_create(&l).inc_by(*lost);
    }
    r.register(
        "candor_event_sink_queue_depth",
        "Events waiting in an event subscription's sink queue",
        depth,
    );
    r.register(
        "candor_event_sink_dropped",
        "Events an event subscription's sink dropped (drop mode: its queue was full or it failed; block mode: it stalled past max_wait)",
        dropped,
    );
    r
}

/// Every family as text: OpenMetrics when `openmetrics`, else the Prometheus text format
/// 0.0.4.
pub(crate) fn encode(live: &Live<'_>, openmetrics: bool) -> String {
    use prometheus_client::encoding::{prometheus_text, text};
    let scraped = scraped(live);
    let mut out = String::with_capacity(16 * 1024);
    // Writing to a String cannot fail.
    if openmetrics {
        let _ = text::encode_registry(&mut out, &RECORDED.registry);
        let _ = text::encode_registry(&mut out, &scraped);
        let _ = text::encode_eof(&mut out);
    } else {
        let _ = prometheus_text::encode(&mut out, &RECORDED.registry);
        let _ = prometheus_text::encode(&mut out, &scraped);
    }
    out
}

/// Whether a scraper's `Accept` asks for OpenMetrics (Prometheus does; curl does not).
pub(crate) fn wants_openmetrics(accept: Option<&http::HeaderValue>) -> bool {
    accept
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("application/openmetrics-text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape() -> String {
        encode(
            &Live {
                connections: &[("main", 3, 1), ("admin", 1, 0)],
                targets: vec![("orders".into(), "http://10.0.0.1:80".into(), false)],
                sinks: Vec::new(),
                event_log: [0; 4],
            },
            false,
        )
    }

    #[test]
    fn requests_are_counted_by_route_status_and_code() {
        let m = RouteMetrics::new("unit-test-route");
        request(
            Some(&m),
            200,
            None,
            Duration::from_millis(3),
            Some(Duration::from_millis(2)),
        );
        request(
            Some(&m),
            200,
            None,
            Duration::from_millis(3),
            Some(Duration::from_millis(2)),
        );
        request(
            Some(&m),
            429,
            Some("rate_limited"),
            Duration::from_micros(50),
            None,
        );
        request(
            None,
            404,
            Some("route_not_found"),
            Duration::from_micros(50),
            None,
        );
        let text = scrape();
        for line in [
            r#"candor_requests_total{route="unit-test-route",status="200",code="none"} 2"#,
            r#"candor_requests_total{route="unit-test-route",status="429",code="rate_limited"} 1"#,
            r#"candor_requests_total{route="",status="404",code="route_not_found"} "#,
            r#"candor_upstream_duration_seconds_count{route="unit-test-route"} 2"#,
            r#"candor_gateway_duration_seconds_count{route="unit-test-route"} 3"#,
            r#"candor_open_connections{listener="main"} 3"#,
            r#"candor_connections_refused_total{listener="main"} 1"#,
            r#"candor_upstream_target_healthy{route="orders",target="http://10.0.0.1:80"} 0"#,
        ] {
            assert!(text.contains(line), "no `{line}` in\n{text}");
        }
        // Gateway time excludes the upstream's: 1 ms of each 3 ms request.
        let sum = text
            .lines()
            .find(|l| {
                l.starts_with(r#"candor_gateway_duration_seconds_sum{route="unit-test-route"}"#)
            })
            .unwrap();
        let secs: f64 = sum.rsplit(' ').next().unwrap().parse().unwrap();
        assert!((secs - 0.00205).abs() < 1e-9, "{sum}");
    }

    #[test]
    fn sinks_report_their_queue_and_drops() {
        let text = encode(
            &Live {
                connections: &[],
                targets: Vec::new(),
                sinks: vec![("unit-test-sink".into(), 7, 3)],
                event_log: [0; 4],
            },
            false,
        );
        assert!(
            text.contains(r#"candor_event_sink_queue_depth{sink="unit-test-sink"} 7"#),
            "{text}"
        );
        assert!(
            text.contains(r#"candor_event_sink_dropped_total{sink="unit-test-sink"} 3"#),
            "{text}"
        );
    }

    #[test]
    fn openmetrics_ends_with_eof() {
        let text = encode(
            &Live {
                connections: &[],
                targets: Vec::new(),
                sinks: Vec::new(),
                event_log: [0; 4],
            },
            true,
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert_eq!(text.matches("# EOF").count(), 1);
    }
}
