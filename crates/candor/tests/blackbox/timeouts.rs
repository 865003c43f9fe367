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
