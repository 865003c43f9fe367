//! Transport stage, black-box: URI, header and body size limits (414, 431, 413), with and
//! without Content-Length.

use crate::harness::*;
use crate::route::gateway;

#[test]
fn size_limits_are_stated() {
    let (gw, up) = gateway();
    let long = format!("/v1/customers/{}/devices", "a".repeat(600));
    let r = gw.get(&long);
    let b = assert_problem(&r, "uri_too_long");
    assert_eq!(r.status, 414);
    assert_eq!(b["limit"], 512);
    assert!(
        b["detail"]
            .as_str()
            .unwrap()
            .contains("accepts at most 512 bytes")
    );

    let big = "x".repeat(3000);
    let r = gw.request(
        "GET",
        "/v1/customers/acme/devices",
        &[("X-Big-Cookie", &big)],
        b"",
    );
    let b = assert_problem(&r, "headers_too_large");
    assert_eq!(r.status, 431);
    assert_eq!(b["largest_header"], "x-big-cookie");

    let body = vec![b'a'; 1500];
    let r = gw.request("POST", "/v1/customers/acme/devices", &[], &body);
    let b = assert_problem(&r, "payload_too_large");
    assert_eq!(r.status, 413);
    assert_eq!(
        b["detail"],
        "The request body is 1500 bytes; this gateway accepts at most 1000 bytes."
    );

    // Without Content-Length the limit is enforced while streaming.
    let mut req = b"POST /v1/customers/acme/devices HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..3 {
        req.extend_from_slice(b"258\r\n");
        req.extend_from_slice(&[b'b'; 600]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let r = gw.send(&req);
    let b = assert_problem(&r, "payload_too_large");
    assert!(
        b["detail"].as_str().unwrap().contains("more than 1000"),
        "{b}"
    );
    // A body within the limit streams through.
    let r = gw.request("POST", "/v1/customers/acme/devices", &[], &[b'c'; 900]);
    assert_eq!(r.json()["body_len"], 900);
    drop(up);
}

#[test]
fn http11_requests_carry_exactly_one_host() {
    let up = Upstream::start(Behaviour::Echo);
    let gw = Gateway::start(&one_route("/{*rest}", &up.url(), ""));
    let none = gw.send(b"GET /a HTTP/1.1\r\nX-A: 1\r\n\r\n");
    let b = assert_problem(&none, "malformed_request");
    assert_eq!(
        b["detail"],
        "The request is not valid HTTP/1.1: an HTTP/1.1 request must carry a Host header, and this one has none (request line starts with \"GET /a\")."
    );
    let two = gw.send(b"GET /a HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n");
    let b = assert_problem(&two, "malformed_request");
    assert!(
        b["detail"]
            .as_str()
            .unwrap()
            .contains("exactly one Host header"),
        "{b}"
    );
    // HTTP/1.0 may leave it out.
    assert_eq!(gw.send(b"GET /a HTTP/1.0\r\n\r\n").status, 200);
    assert_eq!(up.hits.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[test]
fn an_absolute_target_names_the_host_for_routing_and_forwarding() {
    let up = Upstream::start(Behaviour::Echo);
    let gw = Gateway::start(&format!(
        "{}{}",
        one_route(
            "/int/{*rest}",
            &up.url(),
            "host = \"internal.example\"\npreserve_host = true"
        ),
        one_route(
            "/{*rest}",
            &up.url(),
            "host = \"public.example\"\npreserve_host = true"
        )
        .replace("name = \"r\"", "name = \"public\""),
    ));
    // The finding: routed on the target's authority, forwarded with the Host header's.
    let r = gw.send(b"GET http://public.example/int/z HTTP/1.1\r\nHost: internal.example\r\n\r\n");
    assert_eq!(r.status, 200, "{}", r.text());
    let echo = r.json();
    assert_eq!(echo["target"], "/int/z");
    assert_eq!(echo["headers"]["host"][0], "public.example", "{echo}");
}
