//! OTLP export (`[traces.otlp]`, the `otlp` feature the tests build with): one span per
//! request posted as OTLP/HTTP JSON to a collector on loopback — the client's trace
//! continued, the upstream told the gateway's span as its parent, refusals included.

use crate::harness::*;
use crate::subscriptions::{Hook, wait_for};
use serde_json::Value;
use std::time::Duration;

fn spans(hook: &Hook) -> Vec<Value> {
    hook.posts()
        .iter()
        .flat_map(|p| {
            let doc = p.json();
            assert_eq!(
                doc["resourceSpans"][0]["resource"]["attributes"][0]["value"]["stringValue"],
                "edge"
            );
            doc["resourceSpans"][0]["scopeSpans"][0]["spans"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect()
}

fn attribute<'a>(span: &'a Value, key: &str) -> &'a Value {
    span["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["key"] == key)
        .map_or(&Value::Null, |a| &a["value"])
}

#[test]
fn each_request_is_a_span_posted_to_the_collector() {
    let hook = Hook::start(Duration::ZERO);
    let up = Upstream::start(Behaviour::Echo);
    let gw = Gateway::start(&format!(
        "[traces.otlp]\nurl = \"{}\"\nservice_name = \"edge\"\nflush_every = \"100ms\"\n\n{}",
        hook.url("/v1/traces"),
        one_route("/v1/devices", &up.url(), "")
    ));
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let ok = gw.request("GET", "/v1/devices", &[("traceparent", parent)], b"");
    assert_eq!(ok.status, 200);
    let rid = ok.header("x-request-id").unwrap().to_owned();
    let miss = gw.get("/v1/devicez");
    assert_eq!(miss.status, 404);
    assert!(
        wait_for(10, || spans(&hook).len() >= 2),
        "{:?}",
        spans(&hook)
    );
    let all = spans(&hook);

    // The client's trace, continued: its span is the parent; the upstream was told the
    // gateway's span as its own parent.
    let served = all
        .iter()
        .find(|s| attribute(s, "candor.request_id")["stringValue"] == rid.as_str())
        .expect("the served request's span");
    assert_eq!(served["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(served["parentSpanId"], "00f067aa0ba902b7");
    assert_eq!(served["name"], "GET r");
    assert_eq!(served["kind"], 2);
    assert_eq!(
        attribute(served, "http.response.status_code")["intValue"],
        "200"
    );
    assert_eq!(attribute(served, "url.path")["stringValue"], "/v1/devices");
    let sent = ok.json()["headers"]["traceparent"][0]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        &sent[36..52],
        served["spanId"].as_str().unwrap(),
        "the upstream's parent is the gateway's span"
    );
    let start: u128 = served["startTimeUnixNano"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let end: u128 = served["endTimeUnixNano"].as_str().unwrap().parse().unwrap();
    assert!(start <= end);

    // A refusal is a span too, of a trace that starts at the gateway.
    let refused = all
        .iter()
        .find(|s| attribute(s, "candor.code")["stringValue"] == "route_not_found")
        .expect("the refusal's span");
    assert_eq!(refused["name"], "GET unrouted");
    assert!(refused.get("parentSpanId").is_none());
    assert_eq!(
        refused["traceId"],
        assert_problem(&miss, "route_not_found")["trace_id"]
    );

    let stats = gw.stats();
    assert_eq!(stats["traces"]["otlp"], true);
    assert!(
        stats["traces"]["exported"].as_u64().unwrap() >= 2,
        "{stats}"
    );
    assert_eq!(stats["traces"]["dropped"], 0);
}

#[test]
fn a_collector_that_is_not_there_costs_requests_nothing_and_drops_are_counted() {
    let gone = Upstream::refused();
    let up = Upstream::start(Behaviour::Echo);
    let gw = Gateway::start(&format!(
        "[traces.otlp]\nurl = \"http://{gone}/v1/traces\"\nflush_every = \"50ms\"\nmax_retries = 0\ntimeout = \"1s\"\n\n{}",
        one_route("/v1/devices", &up.url(), "")
    ));
    for _ in 0..3 {
        assert_eq!(gw.get("/v1/devices").status, 200);
    }
    assert!(wait_for(10, || gw.stats()["traces"]["dropped"] == 3));
    assert!(
        gw.log()
            .contains("the OTLP collector did not take a batch of spans")
    );
}

#[test]
fn check_reports_a_bad_collector_url() {
    let dir = temp_dir("traces-check");
    let config = dir.join("candor.toml");
    std::fs::write(
        &config,
        "[traces.otlp]\nurl = \"ftp://collector\"\nqueue = 0\n",
    )
    .unwrap();
    let (code, out, err) = candor(&["check", "--config", config.to_str().unwrap()]);
    assert_ne!(code, 0);
    let all = format!("{out}{err}");
    assert!(all.contains("traces.otlp.url"), "{all}");
    assert!(all.contains("traces.otlp.queue"), "{all}");
}
