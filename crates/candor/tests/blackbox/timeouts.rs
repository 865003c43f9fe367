//! Timeouts that start at accept (`[timeouts]`): a connection that sends nothing, a head
//! sent byte by byte (slowloris), and a keep-alive connection left idle are all ended, each
//! with its own outcome. Every test configures 1 s so that it is quick; no test measures
//! how long anything took beyond "ended before the safety net".

use crate::harness::*;
use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

const TIMEOUTS: &str = "[timeouts]\nrequest_head = \"1s\"\nkeepalive = \"1s\"\n";

fn gateway() -> (Gateway, Upstream) {
    let up = Upstream::start(Behaviour::Echo);
    let gw = Gateway::start(&format!(
        "{TIMEOUTS}{}",
        one_route("/{*rest}", &up.url(), "")
    ));
    (gw, up)
}

#[test]
fn a_connection_that_sends_nothing_is_closed() {
    let (gw, _up) = gateway();
    let mut s = TcpStream::connect(gw.addr).unwrap();
    assert_eq!(read_to_close(&mut s), b"", "closed without an answer");
}

#[test]
fn a_head_sent_byte_by_byte_gets_request_timeout() {
    let (gw, up) = gateway();
    let mut s = TcpStream::connect(gw.addr).unwrap();
    // The slowloris of the finding: a header value that never ends, a byte at a time.
    s.write_all(b"GET /x HTTP/1.1\r\nHost: x\r\nX-A: ").unwrap();
    let writer = {
        let mut s = s.try_clone().unwrap();
        std::thread::spawn(move || {
            for _ in 0..40 {
                std::thread::sleep(Duration::from_millis(250));
                if s.write_all(b"a").is_err() {
                    break;
                }
            }
        })
    };
    let raw = read_to_close(&mut s);
    let _ = writer.join();
    let resp = parse_raw(&raw);
    let b = assert_problem(&resp, "request_timeout");
    assert_eq!(resp.status, 408);
    assert_eq!(resp.header("connection"), Some("close"));
    assert_eq!(
        b["detail"],
        "The gateway stopped waiting for the request's head: nothing more arrived within 1 s (timeouts.request_head)."
    );
    assert_eq!(b["instance"], "/x");
    assert_eq!(up.hits.load(std::sync::atomic::Ordering::Relaxed), 0);
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_its_response() {
    let (gw, _up) = gateway();
    let mut s = TcpStream::connect(gw.addr).unwrap();
    s.write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let first = read_response(&mut s);
    assert_eq!(first.status, 200);
    // A second request within the keep-alive time is served on the same connection...
    s.write_all(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut s).status, 200);
    // ... then, idle, the connection is closed without an answer.
    assert_eq!(read_to_close(&mut s), b"");
}

#[test]
fn timeouts_are_checked_by_candor_check() {
    let dir = temp_dir("timeouts");
    let file = dir.join("candor.toml");
    std::fs::write(
        &file,
        "[timeouts]\nrequest_head = \"1ms\"\nkeepalive = \"soon\"\nheader = \"1s\"\n",
    )
    .unwrap();
    let (code, out, _) = candor(&["check", "--config", file.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("3 problems"), "{out}");
    assert!(
        out.contains("timeouts.request_head: 1ms is outside the accepted range"),
        "{out}"
    );
    assert!(out.contains("timeouts.keepalive"), "{out}");
    assert!(out.contains("timeouts.header"), "{out}");
}

/// Connections idle now without their parser (`/stats`).
pub(crate) fn parked(gw: &Gateway) -> u64 {
    gw.stats()["connections"]["idle_parked"].as_u64().unwrap()
}

#[test]
fn an_idle_connection_gives_its_parser_back_and_is_served_again() {
    let up = Upstream::start(Behaviour::Echo);
    let gw = Gateway::start(&format!(
        "[timeouts]\nrequest_head = \"2s\"\nkeepalive = \"10s\"\n{}",
        one_route("/{*rest}", &up.url(), "")
    ));
    let mut s = TcpStream::connect(gw.addr).unwrap();
    s.write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut s).status, 200);
    assert!(
        gw.eventually(|g| parked(g) == 1),
        "the idle connection was parked"
    );
    // The next head arrives in pieces: the guard collects it and a new parser gets it whole.
    s.write_all(b"GET /b HTTP/1.1\r\nHo").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    s.write_all(b"st: x\r\n\r\n").unwrap();
    let b = read_response(&mut s);
    assert_eq!((b.status, b.json()["target"].as_str()), (200, Some("/b")));
    assert!(gw.eventually(|g| parked(g) == 1), "parked again");
    // Two pipelined requests after the wait: both answered, in order.
    s.write_all(b"GET /c HTTP/1.1\r\nHost: x\r\n\r\nGET /d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let raw = String::from_utf8_lossy(&read_to_close(&mut s)).into_owned();
    assert_eq!(raw.matches("HTTP/1.1 200 OK").count(), 2, "{raw}");
    assert!(
        raw.find("\"/c\"").unwrap() < raw.find("\"/d\"").unwrap(),
        "{raw}"
    );
    assert!(
        gw.eventually(|g| parked(g) == 0),
        "a closed connection is not counted"
    );
    let paths: Vec<_> = up
        .heads()
        .iter()
        .map(|h| h.split(" | ").next().unwrap().to_owned())
        .collect();
    assert_eq!(
        paths,
        [
            "GET /a HTTP/1.1",
            "GET /b HTTP/1.1",
            "GET /c HTTP/1.1",
            "GET /d HTTP/1.1"
        ]
    );
}

/// The keep-alive time ends at the first byte of the next head; from there the head has its
/// own time (before, a head begun late in the keep-alive time was cut off without an answer).
#[test]
fn a_head_begun_late_in_the_keep_alive_time_gets_its_own_time() {
    let (gw, _up) = gateway();
    let mut s = TcpStream::connect(gw.addr).unwrap();
    s.write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut s).status, 200);
    assert!(gw.eventually(|g| parked(g) == 1), "parked");
    s.write_all(b"GET /slow HTTP/1.1\r\nX-A: ").unwrap();
    let raw = read_to_close(&mut s);
    let resp = parse_raw(&raw);
    assert_problem(&resp, "request_timeout");
    assert_eq!(resp.status, 408);
}

/// Times connections were parked so far (`/stats`).
fn parks(gw: &Gateway) -> u64 {
    gw.stats()["connections"]["idle_parked_total"]
        .as_u64()
        .unwrap()
}

#[test]
fn a_client_sending_request_after_request_keeps_its_parser() {
    let (gw, _up) = gateway();
    let mut s = TcpStream::connect(gw.addr).unwrap();
    // Found by the attack probe: a request every 40 ms was parked every 250 ms.
    for _ in 0..25 {
        s.write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert_eq!(read_response(&mut s).status, 200);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(parks(&gw), 0);
    // A blank line after a response (ignored before a request line) does not keep the
    // connection from parking.
    s.write_all(b"\r\n").unwrap();
    assert!(
        gw.eventually(|g| parked(g) == 1),
        "parked after a blank line"
    );
    s.write_all(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut s).status, 200);
}

#[test]
fn a_connection_stopping_inside_the_http2_preface_is_closed() {
    let (gw, up) = gateway();
    // Found by the attack probe: the preface's request line and empty head, then nothing,
    // held a connection forever (and a listener at its cap, locked).
    for partial in [
        &b"PRI * HTTP/2.0\r\n\r\n"[..],
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r",
    ] {
        let mut s = TcpStream::connect(gw.addr).unwrap();
        s.write_all(partial).unwrap();
        assert_eq!(read_to_close(&mut s), b"", "closed without an answer");
    }
    // What starts like the preface but is not it: the catalog's malformed_request, not the
    // HTTP/1 parser's bare 400.
    for bytes in [
        &b"PRI * HTTP/2.0\r\n\r\nXY\r\n\r\nGET /x HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        b"PRI * HTTP/2.0\r\nHost: x\r\n\r\n",
        b"PRI * HTTP/2.0 x\r\n\r\n",
        b"PRI * HTTP/2.0\n\nSM\n\n",
    ] {
        let mut s = TcpStream::connect(gw.addr).unwrap();
        s.write_all(bytes).unwrap();
        let resp = parse_raw(&read_to_close(&mut s));
        let b = assert_problem(&resp, "malformed_request");
        assert!(
            b["detail"]
                .as_str()
                .unwrap()
                .contains("it starts like the HTTP/2 connection preface but is not it"),
            "{b}"
        );
    }
    assert!(up.heads().is_empty(), "{:?}", up.heads());
}
