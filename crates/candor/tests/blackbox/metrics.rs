//! Metrics and trace context, black-box: `/metrics` on the admin listener after requests
//! that passed, missed every route and were rate limited; `traceparent` continued to the
//! upstream with this hop's span id (or a trace started at the gateway); the trace id in
//! problem bodies.

use crate::harness::*;

const SENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn admin_token(gw: &Gateway) -> String {
    let token = std::fs::read_to_string(gw.printed("admin API token: in ")).unwrap();
    format!("Bearer {}", token.trim())
}

fn scrape(gw: &Gateway, accept: Option<&str>) -> Response {
    let auth = admin_token(gw);
    let mut headers = vec![("Authorization", auth.as_str())];
    if let Some(a) = accept {
        headers.push(("Accept", a));
    }
    let r = request(gw.admin.unwrap(), "GET", "/metrics", &headers, b"");
    assert_eq!(r.status, 200, "{}", r.text());
    r
}

/// The value of the series `series` (name and labels exactly), if it is shown.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

/// A traceparent's fields, checked as the spec writes them.
fn fields(traceparent: &str) -> (String, String, String) {
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    assert_eq!(parts[0], "00", "{traceparent}");
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            && s.bytes().any(|b| b != b'0')
    };
    assert!(
        hex(parts[1], 32) && hex(parts[2], 16) && parts[3].len() == 2,
        "{traceparent}"
    );
    (parts[1].into(), parts[2].into(), parts[3].into())
}

#[test]
fn metrics_count_requests_by_route_status_and_code() {
    let up = Upstream::start(Behaviour::Echo);
    let limit =
        "[[routes.rate_limits]]\nname = \"burst\"\nlimit = 1\nwindow = \"1h\"\nkey = \"route\"\n";
    let gw = Gateway::start(&one_route("/r", &up.url(), limit));
    assert_eq!(gw.get("/r").status, 200);
    assert_problem(&gw.get("/r"), "rate_limited");
    assert_problem(&gw.get("/nowhere"), "route_not_found");

    let r = scrape(&gw, None);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = r.text();
    for (series, expected) in [
        (
            r#"candor_requests_total{route="r",status="200",code="none"}"#,
            1.0,
        ),
        (
            r#"candor_requests_total{route="r",status="429",code="rate_limited"}"#,
            1.0,
        ),
        (
            r#"candor_requests_total{route="",status="404",code="route_not_found"}"#,
            1.0,
        ),
        (
            r#"candor_rate_limit_rejections_total{route="r",policy="burst"}"#,
            1.0,
        ),
        (r#"candor_gateway_duration_seconds_count{route="r"}"#, 2.0),
        (r#"candor_upstream_duration_seconds_count{route="r"}"#, 1.0),
        (
            r#"candor_errors_total{code="rate_limited",ended_by="gateway"}"#,
            1.0,
        ),
        (
            r#"candor_errors_total{code="route_not_found",ended_by="gateway"}"#,
            1.0,
        ),
        (
            &format!(
                r#"candor_upstream_target_healthy{{route="r",target="{}"}}"#,
                up.url()
            ),
            1.0,
        ),
        (r#"candor_connections_closed_total{reason="idle"}"#, 0.0),
        (r#"candor_tls_handshakes_failed_total"#, 0.0),
    ] {
        assert_eq!(value(&text, series), Some(expected), "{series} in\n{text}");
    }
    // The scrape itself is open on the admin listener.
    assert!(
        value(&text, r#"candor_open_connections{listener="admin"}"#).is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert!(
        value(&text, r#"candor_open_connections{listener="main"}"#).is_some(),
        "{text}"
    );
    // Each of the gateway's own routes has its series from the start.
    assert_eq!(
        value(
            &text,
            r#"candor_requests_total{route="candor.token_endpoint",status="200",code="none"}"#
        ),
        Some(0.0)
    );
    for help in [
        "# HELP candor_requests_total ",
        "# TYPE candor_gateway_duration_seconds histogram",
        "# TYPE candor_upstream_target_healthy gauge",
    ] {
        assert!(text.contains(help), "no {help} in\n{text}");
    }

    // Prometheus asks for OpenMetrics and gets it.
    let r = scrape(
        &gw,
        Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
    );
    assert_eq!(
        r.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    assert!(r.text().ends_with("# EOF\n"), "{}", r.text());
    assert!(
        r.text()
            .contains(r#"candor_requests_total{route="r",status="200",code="none"} 1"#)
    );
}

#[test]
fn metrics_need_the_admin_token() {
    let gw = Gateway::start("");
    let r = request(gw.admin.unwrap(), "GET", "/metrics", &[], b"");
    assert_eq!(r.status, 401);
    let b = assert_problem(&r, "credentials_missing");
    // Admin problems carry a trace id too.
    assert_eq!(b["trace_id"].as_str().map(str::len), Some(32), "{b}");
    let r = request(gw.admin.unwrap(), "POST", "/metrics", &[], b"");
    assert_problem(&r, "method_not_allowed");
}

#[test]
fn traceparent_goes_on_to_the_upstream_with_this_hops_span() {
    let up = Upstream::start(Behaviour::Echo);
    let gw = Gateway::start(&one_route("/echo", &up.url(), ""));
    let r = gw.request(
        "GET",
        "/echo",
        &[
            ("traceparent", SENT),
            ("tracestate", "vendor=opaque,other=1"),
        ],
        b"",
    );
    assert_eq!(r.status, 200);
    let h = &r.json()["headers"];
    assert_eq!(h["traceparent"].as_array().unwrap().len(), 1, "{h}");
    let (trace, parent, flags) = fields(h["traceparent"][0].as_str().unwrap());
    assert_eq!(trace, TRACE_ID);
    assert_ne!(
        parent, "00f067aa0ba902b7",
        "the gateway's hop has a span id of its own"
    );
    assert_eq!(flags, "01");
    assert_eq!(h["tracestate"][0], "vendor=opaque,other=1");

    // None sent: the trace starts at the gateway, sampled.
    let r = gw.get("/echo");
    let h = &r.json()["headers"];
    let (trace, _, flags) = fields(h["traceparent"][0].as_str().unwrap());
    assert_ne!(trace, TRACE_ID);
    assert_eq!(flags, "01");

    // An invalid one (upper-case hex) starts a new trace too, and its tracestate, which
    // belongs to the trace it came with, is dropped.
    let r = gw.request(
        "GET",
        "/echo",
        &[
            ("traceparent", &SENT.to_ascii_uppercase()),
            ("tracestate", "vendor=opaque"),
        ],
        b"",
    );
    assert_eq!(r.status, 200, "never an error");
    let h = &r.json()["headers"];
    let (trace, _, _) = fields(h["traceparent"][0].as_str().unwrap());
    assert_ne!(trace, TRACE_ID);
    assert!(h.get("tracestate").is_none(), "{h}");
}

#[test]
fn problem_bodies_carry_the_trace_id() {
    let up = Upstream::start(Behaviour::Echo);
    let gw = Gateway::start(&one_route("/echo", &up.url(), ""));
    let r = gw.request("GET", "/nowhere", &[("traceparent", SENT)], b"");
    let b = assert_problem(&r, "route_not_found");
    assert_eq!(b["trace_id"], TRACE_ID);
    // Without one, a trace of the gateway's own: 32 lower-case hex digits.
    let r = gw.get("/nowhere");
    let b = assert_problem(&r, "route_not_found");
    let id = b["trace_id"].as_str().unwrap();
    assert_eq!(id.len(), 32, "{b}");
    assert!(
        id.bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)),
        "{id}"
    );
    assert_ne!(id, TRACE_ID);
}
