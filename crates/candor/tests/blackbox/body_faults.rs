//! Fault attribution for request bodies: a client that stops sending, sends slowly, or
//! closes half-way gets a downstream code, never an upstream one; the route's upstream
//! timeout counts from the last piece of body the client sent.

use crate::harness::*;
use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

fn gateway(route_timeout: &str) -> (Gateway, Upstream) {
    let up = Upstream::start(Behaviour::Echo);
    let gw = Gateway::start(&format!(
        "[timeouts]\nrequest_body_idle = \"1s\"\n{}",
        one_route(
            "/{*rest}",
            &up.url(),
            &format!("timeout = \"{route_timeout}\"")
        )
    ));
    (gw, up)
}

#[test]
fn a_body_that_stops_arriving_is_request_timeout_not_upstream_timeout() {
    let (gw, _up) = gateway("30s");
    let mut s = TcpStream::connect(gw.addr).unwrap();
    s.write_all(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nhello")
        .unwrap();
    let raw = read_to_close(&mut s);
    let r = parse_raw(&raw);
    let b = assert_problem(&r, "request_timeout");
    assert_eq!(r.status, 408);
    assert_eq!(
        b["detail"],
        "The gateway stopped waiting for the request's body: nothing more arrived within 1 s (timeouts.request_body_idle)."
    );
    assert_eq!(b["timeout_ms"], 1000);
    let line = gw.log_line("\"code\":\"request_timeout\"");
    assert!(line.contains("\"source\":\"downstream\""), "{line}");
    // Who ended the exchange, as HAProxy's termination flags say it.
    assert!(line.contains("\"ended_by\":\"client\""), "{line}");
}

#[test]
fn a_slow_but_steady_body_is_not_charged_to_the_upstream() {
    // 8 bytes, one every 300 ms: 2.4 s in all, past the route's 1 s, with no pause of 1 s.
    let (gw, _up) = gateway("1s");
    let mut s = TcpStream::connect(gw.addr).unwrap();
    s.write_all(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\n\r\n")
        .unwrap();
    for b in b"abcdefgh" {
        std::thread::sleep(Duration::from_millis(300));
        s.write_all(&[*b]).unwrap();
    }
    let r = read_response(&mut s);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["body_len"], 8);
}

#[test]
fn a_client_closing_half_way_through_its_body_is_blamed_for_it() {
    let (gw, _up) = gateway("30s");
    let mut s = TcpStream::connect(gw.addr).unwrap();
    s.write_all(b"PUT /a HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nhello")
        .unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let raw = read_to_close(&mut s);
    let r = parse_raw(&raw);
    let b = assert_problem(&r, "malformed_request");
    let detail = b["detail"].as_str().unwrap();
    assert!(
        detail.contains("the connection was closed after 5 bytes of its body"),
        "{detail}"
    );
    assert_eq!(b["retry"], "never");
    let line = gw.log_line("\"code\":\"malformed_request\"");
    assert!(line.contains("\"ended_by\":\"client\""), "{line}");
}
