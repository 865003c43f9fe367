//! Route, parse and transport stages, black-box.

mod common;
use common::*;

fn gateway() -> (Gateway, Upstream) {
    let up = Upstream::start(Behaviour::Echo);
    let config = format!(
        r#"
[limits]
max_uri_bytes = 512
max_header_bytes = 2048
max_body_bytes = 1000

[[routes]]
name = "devices"
path = "/v1/customers/{{customer}}/devices"
methods = ["GET", "POST"]
upstream = "{u}"

[[routes]]
name = "device"
path = "/v1/customers/{{customer}}/devices/{{device}}"
methods = ["GET", "DELETE"]
upstream = "{u}"

[[routes]]
name = "admin-only"
host = "admin.example.com"
path = "/v1/admin"
upstream = "{u}"

[[routes]]
name = "files"
path = "/files/{{*rest}}"
upstream = "{u}/base"
"#,
        u = up.url()
    );
    (Gateway::start(&config), up)
}

#[test]
fn proxies_a_matching_route_and_keeps_request_ids() {
    let (gw, _up) = gateway();
    let r = gw.request(
        "GET",
        "/v1/customers/acme/devices?limit=5",
        &[("X-Request-Id", "client-req-42")],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-request-id"), Some("client-req-42"));
    let echo = r.json();
    assert_eq!(echo["target"], "/v1/customers/acme/devices?limit=5");
    assert_eq!(echo["headers"]["x-request-id"][0], "client-req-42");

    // A malformed incoming id is replaced by a fresh ULID.
    let r = gw.request(
        "GET",
        "/v1/customers/acme/devices",
        &[("X-Request-Id", "bad id <script>")],
        b"",
    );
    let rid = r.header("x-request-id").unwrap();
    assert_eq!(rid.len(), 26, "{rid}");
    assert_eq!(r.json()["headers"]["x-request-id"][0], rid);
}

#[test]
fn wrong_path_gets_route_not_found_with_suggestions() {
    let (gw, _up) = gateway();
    // trailing slash
    let r = gw.get("/v1/customers/acme/devices/");
    let b = assert_problem(&r, "route_not_found");
    assert_eq!(r.status, 404);
    assert_eq!(b["suggestions"][0]["path"], "/v1/customers/acme/devices");
    assert_eq!(b["suggestions"][0]["reason"], "trailing_slash");
    assert!(
        b["detail"]
            .as_str()
            .unwrap()
            .contains("Did you mean /v1/customers/acme/devices (without the trailing slash"),
        "{b}"
    );
    assert_eq!(b["instance"], "/v1/customers/acme/devices/");

    // letter case
    let b = assert_problem(&gw.get("/V1/Customers/acme/Devices"), "route_not_found");
    assert_eq!(b["suggestions"][0]["path"], "/v1/customers/acme/devices");
    assert_eq!(b["suggestions"][0]["reason"], "letter_case");

    // a typo, with the methods the suggestion accepts
    let b = assert_problem(
        &gw.request("PUT", "/v1/custmers/acme/devices/7", &[], b""),
        "route_not_found",
    );
    assert_eq!(b["suggestions"][0]["path"], "/v1/customers/acme/devices/7");
    assert_eq!(b["suggestions"][0]["accepts_method"], false);
    assert!(
        b["detail"]
            .as_str()
            .unwrap()
            .contains("exists for GET, DELETE, HEAD only, not PUT"),
        "{b}"
    );

    // nothing close: no suggestions, still a precise answer
    let b = assert_problem(&gw.get("/completely/elsewhere/entirely"), "route_not_found");
    assert_eq!(b["suggestions"], serde_json::json!([]));
    assert_eq!(
        b["detail"],
        "No route matches GET /completely/elsewhere/entirely."
    );

    // host-restricted route is not found on another host
    let r = gw.request("GET", "/v1/admin", &[], b"");
    assert_problem(&r, "route_not_found");
    let raw =
        b"GET /v1/admin HTTP/1.1\r\nHost: admin.example.com:8080\r\nConnection: close\r\n\r\n";
    assert_eq!(gw.send(raw).status, 200);
}

#[test]
fn wrong_method_gets_405_with_allow() {
    let (gw, _up) = gateway();
    let r = gw.request("PATCH", "/v1/customers/acme/devices/9", &[], b"");
    let b = assert_problem(&r, "method_not_allowed");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, DELETE, HEAD"));
    assert_eq!(b["allowed"], serde_json::json!(["GET", "DELETE", "HEAD"]));
    assert_eq!(
        b["detail"],
        "/v1/customers/acme/devices/9 does not accept PATCH; it accepts GET, DELETE, HEAD."
    );
}

#[test]
fn bad_url_encoding_is_named() {
    let (gw, up) = gateway();
    let r = gw.get("/v1/customers/ac%zzme/devices");
    let b = assert_problem(&r, "invalid_url_encoding");
    assert_eq!(r.status, 400);
    assert_eq!(b["bytes"], "%zz");
    assert_eq!(b["position"], 16);

    let b = assert_problem(
        &gw.get("/v1/customers/%C3%28/devices"),
        "invalid_url_encoding",
    );
    assert!(
        b["detail"].as_str().unwrap().contains("invalid UTF-8"),
        "{b}"
    );

    let b = assert_problem(
        &gw.get("/v1/customers/acme/devices?q=%G0"),
        "invalid_url_encoding",
    );
    assert_eq!(b["position"], 29);

    // Encoded dot segments cannot climb to another route.
    let b = assert_problem(&gw.get("/files/%2e%2e/v1/admin"), "invalid_url_encoding");
    assert!(
        b["detail"]
            .as_str()
            .unwrap()
            .contains("encoded dot segment"),
        "{b}"
    );
    let b = assert_problem(&gw.get("/files/x%00y"), "invalid_url_encoding");
    assert!(b["detail"].as_str().unwrap().contains("control"), "{b}");
    let hits = up.hits.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(hits, 0, "nothing malformed reached the upstream");
}

#[test]
fn paths_are_normalised_before_routing_and_forwarding() {
    let (gw, _up) = gateway();
    let r = gw.get("/files//a/./b/../c.txt");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["target"], "/base/files/a/c.txt");
    // Literal dot segments resolve inside the path and cannot leave the route's prefix.
    let r = gw.get("/files/../v1/customers/acme/devices");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["target"],
        "/v1/customers/acme/devices",
        "resolved before routing, like a browser would"
    );
    let r = gw.get("/v1//customers/acme//devices");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["target"], "/v1/customers/acme/devices");
}

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
fn every_response_carries_a_request_id() {
    let (gw, _up) = gateway();
    for path in [
        "/v1/customers/a/devices",
        "/nope",
        "/errors/route_not_found",
    ] {
        let r = gw.get(path);
        assert!(
            r.header("x-request-id").is_some_and(|v| !v.is_empty()),
            "{path}"
        );
    }
}

#[test]
fn malformed_request_lines_are_answered_through_the_catalog() {
    let (gw, up) = gateway();
    let r = gw.send(b"GET /v1/customers/a b/devices HTTP/1.1\r\nHost: x\r\n\r\n");
    let b = assert_problem(&r, "invalid_url_encoding");
    assert_eq!(r.status, 400);
    assert_eq!(
        b["detail"],
        "The request target is not a valid URL: raw space (encode it as %20) at byte 15 (0x20)."
    );
    assert_eq!(b["instance"], "/v1/customers/a b/devices");
    assert_eq!(r.header("connection"), Some("close"));

    let b = assert_problem(
        &gw.send(b"GET /v1/a\x07 HTTP/1.1\r\nHost: x\r\n\r\n"),
        "invalid_url_encoding",
    );
    assert!(
        b["detail"]
            .as_str()
            .unwrap()
            .contains("raw control character"),
        "{b}"
    );

    let r = gw.send(b"HELLO THERE\r\n\r\n");
    let b = assert_problem(&r, "malformed_request");
    assert_eq!(
        b["detail"],
        "The request is not valid HTTP/1.1: there is no protocol version after the request target (request line starts with \"HELLO THERE\")."
    );
    let b = assert_problem(
        &gw.send(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n"),
        "malformed_request",
    );
    assert!(
        b["detail"]
            .as_str()
            .unwrap()
            .contains("no space after the method"),
        "{b}"
    );
    assert_eq!(up.hits.load(std::sync::atomic::Ordering::Relaxed), 0);
    // The listener keeps serving.
    assert_eq!(gw.get("/v1/customers/a/devices").status, 200);
}

#[test]
fn malformed_header_lines_name_the_line_and_field_never_the_value() {
    let (gw, up) = gateway();
    let r = gw.send(
        b"GET /v1/customers/a/devices HTTP/1.1\r\nHost: x\r\nX Api Key: sk_live_secret\r\n\r\n",
    );
    let b = assert_problem(&r, "malformed_header");
    assert_eq!(r.status, 400);
    assert_eq!(
        b["detail"],
        "Request header line 2 (\"X …\") is not a valid HTTP field: the field name contains a space; names are letters, digits and !#$%&'*+-.^_`|~."
    );
    assert_eq!(b["line"], 2);
    assert_eq!(b["instance"], "/v1/customers/a/devices");
    assert_eq!(r.header("connection"), Some("close"));
    assert!(!r.text().contains("sk_live_secret"));

    // A token read from a file with its newline pasted into the middle of the header.
    let r = gw.send(
        b"GET /v1/customers/a/devices HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer abc\rdef\r\n\r\n",
    );
    let b = assert_problem(&r, "malformed_header");
    assert_eq!(
        b["detail"],
        "Request header line 2 (\"Authorization\") is not a valid HTTP field: its value contains the control character 0x0D."
    );
    assert!(!r.text().contains("abc"));
    let b = assert_problem(
        &gw.send(b"GET / HTTP/1.1\r\nHost: x\r\nAccept : */*\r\n\r\n"),
        "malformed_header",
    );
    assert!(
        b["detail"].as_str().unwrap().contains("whitespace between"),
        "{b}"
    );
    assert_eq!(up.hits.load(std::sync::atomic::Ordering::Relaxed), 0);
    assert!(!gw.log().contains("sk_live_secret"));
    assert_eq!(gw.get("/v1/customers/a/devices").status, 200);
}

#[test]
fn bad_heads_later_on_a_keep_alive_connection_are_answered_through_the_catalog() {
    use std::io::{Read, Write};
    let (gw, up) = gateway();
    let open = || {
        let s = std::net::TcpStream::connect(gw.addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        s
    };
    let good = b"GET /v1/customers/a/devices HTTP/1.1\r\nHost: x\r\n\r\n";

    // A raw space in the second request's target.
    let mut s = open();
    s.write_all(good).unwrap();
    assert_eq!(read_response(&mut s).status, 200);
    s.write_all(b"GET /v1/customers/a b/devices HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let r = read_response(&mut s);
    let b = assert_problem(&r, "invalid_url_encoding");
    assert_eq!(b["instance"], "/v1/customers/a b/devices");
    assert_eq!(r.header("connection"), Some("close"));
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(rest.is_empty(), "the connection closes after the answer");

    // A bad header line in the third request, after a POST whose body (Content-Length)
    // holds text that looks like a bad request head: the body is not mistaken for a head.
    let mut s = open();
    s.write_all(good).unwrap();
    assert_eq!(read_response(&mut s).status, 200);
    let body = b"GET /x y HTTP/1.1\r\nBad Header: 1\r\n\r\n";
    let post = format!(
        "POST /v1/customers/a/devices HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(post.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let r = read_response(&mut s);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains(&format!("\"body_len\":{}", body.len())));
    s.write_all(
        b"GET /v1/customers/a/devices HTTP/1.1\r\nHost: x\r\nX Api Key: sk_live_later\r\n\r\n",
    )
    .unwrap();
    let b = assert_problem(&read_response(&mut s), "malformed_header");
    assert_eq!(b["line"], 2);
    assert!(!b.to_string().contains("sk_live_later"));

    // Pipelined: a chunked POST (with an extension and a trailer) and a bad request in one
    // write. The POST is answered first, then the bad request, then the connection closes.
    let mut s = open();
    s.write_all(
        b"POST /v1/customers/a/devices HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
          5;ext=1\r\nGET /\r\n3\r\n x \r\n0\r\nX-Trailer: t\r\n\r\n\
          GET /v1/customers/a/devices HTTP/1.1\r\nHost: x\r\nAccept */*\r\n\r\n",
    )
    .unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert!(text.contains("\"body_len\":8"), "{text}");
    let second = text.rfind("HTTP/1.1 400").expect("a second answer");
    let tail = &text[second..];
    assert!(tail.contains("\"code\":\"malformed_header\""), "{tail}");
    assert!(tail.contains("no colon"), "{tail}");

    // A head larger than the parser's buffer: 431 through the catalog, never bare.
    let mut s = open();
    let mut big = b"GET /v1/customers/a/devices HTTP/1.1\r\nHost: x\r\n".to_vec();
    let line = format!("X-Filler: {}\r\n", "f".repeat(1000));
    while big.len() < 1_100_000 {
        big.extend_from_slice(line.as_bytes());
    }
    let writer = {
        let mut w = s.try_clone().unwrap();
        std::thread::spawn(move || {
            let _ = w.write_all(&big);
        })
    };
    let r = read_response(&mut s);
    let b = assert_problem(&r, "headers_too_large");
    assert_eq!(r.status, 431);
    assert!(
        b["detail"]
            .as_str()
            .unwrap()
            .starts_with("The request headers total more than"),
        "{b}"
    );
    assert_eq!(b["limit"], 2048);
    drop(s);
    let _ = writer.join();

    // TLS spoken to the plain listener is named as such.
    let r = gw.send(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03");
    let b = assert_problem(&r, "malformed_request");
    assert!(
        b["detail"].as_str().unwrap().contains("TLS handshake"),
        "{b}"
    );
    assert!(!gw.log().contains("sk_live_later"));
    // The listener keeps serving.
    assert_eq!(gw.get("/v1/customers/a/devices").status, 200);
    assert!(up.hits.load(std::sync::atomic::Ordering::Relaxed) >= 1);
}
