//! Caps and connection lifetimes: a listener's connection cap (`server_overloaded`), HTTP/2
//! stream caps and the reset budget (the "rapid reset" finding), idle HTTP/2 connections and
//! the maximum connection age. Every wait here is a safety net far beyond what is configured;
//! nothing measures how long anything took.

use crate::harness::*;
use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

#[test]
fn a_listener_at_its_connection_cap_answers_server_overloaded() {
    let up = Upstream::start(Behaviour::Echo);
    let gw = Gateway::start(&format!(
        "[limits]\nmax_connections = 3\n{}",
        one_route("/{*rest}", &up.url(), "")
    ));
    // Three connections held open (a request each, kept alive).
    let held: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut s = TcpStream::connect(gw.addr).unwrap();
            s.write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            assert_eq!(read_response(&mut s).status, 200);
            s
        })
        .collect();
    // The fourth is answered at once, without its request being read, and closed.
    let mut s = TcpStream::connect(gw.addr).unwrap();
    let raw = read_to_close(&mut s);
    let r = parse_raw(&raw);
    let b = assert_problem(&r, "server_overloaded");
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(b["limit"], 3);
    assert_eq!(b["retry"], "after_delay");
    assert!(gw.eventually(|g| {
        g.log()
            .contains("the listener is at limits.max_connections")
    }));
    let stats = gw.stats();
    assert_eq!(stats["connections"]["refused_at_cap"], 1, "{stats}");
    assert_eq!(stats["connections"]["open"]["main"], 3, "{stats}");
    // A connection that ends makes room.
    drop(held);
    assert!(gw.eventually(|g| g.get("/a").status == 200));
}

#[test]
fn an_old_connection_is_closed_after_its_response() {
    let up = Upstream::start(Behaviour::Echo);
    let gw = Gateway::start(&format!(
        "[timeouts]\nmax_connection_age = \"1s\"\nkeepalive = \"30s\"\n{}",
        one_route("/{*rest}", &up.url(), "")
    ));
    let mut s = TcpStream::connect(gw.addr).unwrap();
    s.write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut s).status, 200);
    // Idle for less than keepalive, but older than max_connection_age: closed.
    assert_eq!(read_to_close(&mut s), b"");
}

async fn h2c(
    gw: &Gateway,
) -> (
    hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    tokio::task::JoinHandle<Result<(), hyper::Error>>,
) {
    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    (send, tokio::spawn(conn))
}

#[tokio::test]
async fn an_idle_h2_connection_gets_goaway() {
    let up = Upstream::start(Behaviour::Echo);
    let gw = Gateway::start(&format!(
        "[timeouts]\nkeepalive = \"1s\"\n{}",
        one_route("/{*rest}", &up.url(), "")
    ));
    let (mut send, conn) = h2c(&gw).await;
    let req = http::Request::get(format!("http://{}/a", gw.addr))
        .body(Empty::new())
        .unwrap();
    assert_eq!(send.send_request(req).await.unwrap().status(), 200);
    // Idle: the gateway sends GOAWAY and the connection ends.
    let ended = tokio::time::timeout(Duration::from_secs(20), conn).await;
    assert!(ended.is_ok(), "the idle h2 connection was kept open");
    assert_eq!(gw.stats()["connections"]["closed"]["idle"], 1);
}

#[tokio::test]
async fn streams_reset_after_accept_over_the_budget_close_the_connection() {
    // The finding: 5,000 streams opened and reset after being accepted made 3,787 upstream
    // requests and no GOAWAY. Now the connection is closed once its resets pass the budget
    // (100, and most of its requests) with GOAWAY ENHANCE_YOUR_CALM, and the streams'
    // upstream work is cancelled.
    let up = Upstream::start(Behaviour::Hang);
    let gw = Gateway::start(&one_route("/{*rest}", &up.url(), "timeout = \"30s\""));
    let (send, conn) = h2c(&gw).await;
    let mut sent = 0;
    for _round in 0..4 {
        let streams: Vec<_> = (0..60)
            .map(|i| {
                let mut send = send.clone();
                let uri = format!("http://{}/r{i}", gw.addr);
                tokio::spawn(async move {
                    let req = http::Request::get(uri).body(Empty::new()).unwrap();
                    send.send_request(req).await
                })
            })
            .collect();
        sent += streams.len();
        // Accepted by the gateway (forwarded to the hanging upstream), then reset.
        tokio::time::sleep(Duration::from_millis(300)).await;
        for s in streams {
            s.abort();
        }
        if conn.is_finished() {
            break;
        }
    }
    let ended = tokio::time::timeout(Duration::from_secs(20), conn).await;
    let Ok(Ok(ended)) = ended else {
        panic!("the connection survived {sent} resets");
    };
    // Ended by the gateway's GOAWAY ENHANCE_YOUR_CALM, which says why.
    let mut why = String::new();
    let mut e: Option<&dyn std::error::Error> = ended.as_ref().err().map(|e| e as _);
    while let Some(err) = e {
        why.push_str(&format!("{err} / "));
        e = err.source();
    }
    assert!(
        why.contains("connection error received: detected excessive load generating behavior")
            && why.contains("candor: the client reset"),
        "{why:?}"
    );
    assert!(gw.eventually(|g| g.log().contains("the client reset most of its requests")));
    assert_eq!(gw.stats()["connections"]["closed"]["resets"], 1);
    // No more than the streams that were opened reached the upstream, and the work of every
    // one was cancelled: each of its upstream connections closed.
    let hits = up.hits.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        hits <= sent && hits > 0,
        "{hits} upstream requests for {sent} streams"
    );
    assert!(
        gw.eventually(|_| up.closed.load(std::sync::atomic::Ordering::Relaxed) == hits),
        "{} of {hits} upstream connections closed",
        up.closed.load(std::sync::atomic::Ordering::Relaxed)
    );
}

#[tokio::test]
async fn a_client_may_not_open_more_streams_than_the_cap() {
    let up = Upstream::start(Behaviour::Hang);
    let gw = Gateway::start(&format!(
        "[limits]\nmax_h2_streams = 5\n{}",
        one_route("/{*rest}", &up.url(), "timeout = \"30s\"")
    ));
    let (send, _conn) = h2c(&gw).await;
    let streams: Vec<_> = (0..12)
        .map(|i| {
            let mut send = send.clone();
            let uri = format!("http://{}/s{i}", gw.addr);
            tokio::spawn(async move {
                let req = http::Request::get(uri).body(Empty::new()).unwrap();
                send.send_request(req).await
            })
        })
        .collect();
    // The hanging upstream holds every stream the gateway accepted: at most the cap.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let hits = up.hits.load(std::sync::atomic::Ordering::Relaxed);
    assert!(hits <= 5, "{hits} streams reached the upstream");
    assert!(hits >= 1);
    for s in streams {
        s.abort();
    }
}

#[test]
fn an_h2_client_that_never_acknowledges_goaway_is_dropped() {
    // The finding (attack probe): the HTTP/2 preface and then silence; at keepalive the
    // gateway sent GOAWAY and a PING, and held the connection for as long as the PING went
    // unanswered (195 s and more).
    let up = Upstream::start(Behaviour::Echo);
    let gw = Gateway::start(&format!(
        "[timeouts]\nkeepalive = \"1s\"\n{}",
        one_route("/{*rest}", &up.url(), "")
    ));
    let mut s = TcpStream::connect(gw.addr).unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
    // The gateway's SETTINGS, GOAWAY and PING, then the end (read_to_close fails if held).
    let frames = read_to_close(&mut s);
    assert!(frames.len() >= 9, "{frames:?}");
    assert_eq!(gw.stats()["connections"]["closed"]["idle"], 1);
}

/// The client's bytes of the reset flood below: the preface and SETTINGS, then for each
/// stream a HEADERS frame (END_STREAM | END_HEADERS: GET http://x/hang, literal fields, no
/// Huffman) and, 3 ms later, its RST_STREAM with eight PINGs on top, so that the client is
/// still sending when the gateway closes.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0";
fn flood_frames(i: u32) -> (Vec<u8>, Vec<u8>) {
    let block = b"\x82\x86\x44\x05/hang\x41\x01x";
    let id = (2 * i + 1).to_be_bytes();
    let mut headers = vec![0, 0, block.len() as u8, 0x1, 0x5];
    headers.extend_from_slice(&id);
    headers.extend_from_slice(block);
    let mut rst = vec![0, 0, 4, 0x3, 0];
    rst.extend_from_slice(&id);
    rst.extend_from_slice(&8u32.to_be_bytes());
    for _ in 0..8 {
        rst.extend_from_slice(&[0, 0, 8, 0x6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
    }
    (headers, rst)
}

/// The error code of the last GOAWAY frame (type 7) among the HTTP/2 frames in `bytes`.
fn goaway_code(bytes: &[u8]) -> Option<u32> {
    let mut at = 0;
    let mut code = None;
    while at + 9 <= bytes.len() {
        let len = usize::from(bytes[at]) << 16
            | usize::from(bytes[at + 1]) << 8
            | usize::from(bytes[at + 2]);
        if bytes[at + 3] == 0x7 && at + 9 + 8 <= bytes.len() {
            code = Some(u32::from_be_bytes(
                bytes[at + 13..at + 17].try_into().unwrap(),
            ));
        }
        at += 9 + len;
    }
    code
}

#[test]
fn a_client_still_sending_when_closed_for_resets_gets_the_goaway() {
    // The finding (attack probe): a client that kept sending (streams opened and reset
    // every 3 ms) when the reset budget closed it got the end of the stream cut off by a
    // reset, the GOAWAY with it: the gateway closed with the client's bytes unread.
    let up = Upstream::start(Behaviour::Hang);
    let gw = Gateway::start(&one_route("/{*rest}", &up.url(), "timeout = \"30s\""));
    let mut s = TcpStream::connect(gw.addr).unwrap();
    s.set_nodelay(true).unwrap();
    s.write_all(PREFACE).unwrap();
    let mut reader = s.try_clone().unwrap();
    let got = std::thread::spawn(move || read_to_close(&mut reader));
    for i in 0..400u32 {
        let (headers, rst) = flood_frames(i);
        if s.write_all(&headers).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(3));
        if s.write_all(&rst).is_err() {
            break;
        }
    }
    let bytes = got.join().unwrap();
    assert_eq!(
        goaway_code(&bytes),
        Some(0xb),
        "{} bytes, no GOAWAY ENHANCE_YOUR_CALM",
        bytes.len()
    );
    assert!(gw.eventually(|g| g.stats()["connections"]["open"]["main"] == 0));
}

#[tokio::test]
async fn over_tls_a_client_still_sending_when_closed_for_resets_gets_the_goaway() {
    // The same flood in h2 over TLS (ALPN): the GOAWAY ENHANCE_YOUR_CALM arrives through
    // the TLS stream too, before the gateway's close_notify, however much the client is
    // still sending.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = Upstream::start(Behaviour::Hang);
    let gw = Gateway::start(&format!(
        "[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n{}",
        fixture("server.pem").display(),
        fixture("server.key").display(),
        one_route("/{*rest}", &up.url(), "timeout = \"30s\"")
    ));
    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = crate::protocols::client_tls(&[b"h2"])
        .connect(name, tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut rd, mut wr) = tokio::io::split(tls);
    // Whatever arrives until the end, kept however the stream ends.
    let got = tokio::spawn(async move {
        let mut bytes = Vec::new();
        let _ = rd.read_to_end(&mut bytes).await;
        bytes
    });
    wr.write_all(PREFACE).await.unwrap();
    for i in 0..400u32 {
        let (headers, rst) = flood_frames(i);
        if wr.write_all(&headers).await.is_err() || wr.flush().await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(3)).await;
        if wr.write_all(&rst).await.is_err() || wr.flush().await.is_err() {
            break;
        }
        if got.is_finished() {
            break;
        }
    }
    let bytes = tokio::time::timeout(Duration::from_secs(20), got)
        .await
        .expect("the gateway kept the connection open")
        .unwrap();
    assert_eq!(
        goaway_code(&bytes),
        Some(0xb),
        "{} bytes, no GOAWAY ENHANCE_YOUR_CALM",
        bytes.len()
    );
    assert!(gw.eventually(|g| g.stats()["connections"]["closed"]["resets"] == 1));
}
