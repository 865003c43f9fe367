//! Forward stage and route modes, black-box: upstreams that refuse, close, hang, send
//! garbage or answer errors; streaming; forwarded headers; panics.

use crate::harness::*;
use std::time::Duration;

#[test]
fn refused_connection_is_upstream_unreachable() {
    let dead = Upstream::refused();
    let gw = Gateway::start(&one_route("/a", &format!("http://{dead}"), ""));
    let r = gw.get("/a");
    let b = assert_problem(&r, "upstream_unreachable");
    assert_eq!(r.status, 502);
    assert_eq!(b["route"], "r");
    let detail = b["detail"].as_str().unwrap();
    // The route by name, never the upstream's address (it is in the log line).
    assert!(
        detail.starts_with("Route r could not connect to its upstream (tried 2 times): "),
        "{detail}"
    );
    assert!(detail.contains("refused"), "{detail}");
    assert!(!r.text().contains(&dead.to_string()), "{}", r.text());
    let rid = b["request_id"].as_str().unwrap();
    let line = gw.log_line(&format!("\"request_id\":\"{rid}\""));
    assert!(
        line.contains("address") && line.contains(&format!("http://{dead}")),
        "{line}"
    );
    // The request never left: it was tried again (retries = 1 by default), and both tries
    // are listed.
    let outcome = b["tries"][0]["outcome"].as_str().unwrap();
    assert!(outcome.starts_with("connection refused"), "{b}");
    assert_eq!(b["retry"], "with_backoff");
}

#[test]
fn closed_connection_and_garbage_are_protocol_errors() {
    let closer = Upstream::start(Behaviour::Reset);
    let garbage = Upstream::start(Behaviour::Garbage);
    let config = format!(
        "{}{}",
        one_route("/close", &closer.url(), ""),
        "[[routes]]\nname = \"g\"\npath = \"/garbage\"\nupstream = \"".to_owned()
            + &garbage.url()
            + "\"\n"
    );
    let gw = Gateway::start(&config);
    let b = assert_problem(&gw.get("/close"), "upstream_protocol_error");
    assert!(
        b["detail"]
            .as_str()
            .unwrap()
            .contains("closed the connection before sending a complete response"),
        "{b}"
    );
    let r = gw.get("/garbage");
    let b = assert_problem(&r, "upstream_protocol_error");
    assert_eq!(r.status, 502);
    assert!(
        b["detail"].as_str().unwrap().contains("not valid HTTP"),
        "{b}"
    );
}

#[test]
fn hanging_upstream_times_out_with_the_limit_stated() {
    let hang = Upstream::start(Behaviour::Hang);
    let gw = Gateway::start(&one_route("/slow", &hang.url(), "timeout = \"300ms\""));
    let r = gw.get("/slow");
    let b = assert_problem(&r, "upstream_timeout");
    assert_eq!(r.status, 504);
    assert_eq!(b["timeout_ms"], 300);
    assert_eq!(
        b["detail"],
        "Route r: the upstream sent no response headers within 300 ms."
    );
}

#[test]
fn route_modes_answer_without_the_upstream() {
    let config = r#"
[[routes]]
name = "firmware"
path = "/v1/firmware"
methods = ["PUT"]
mode = "not_implemented"

[[routes]]
name = "reports"
path = "/v1/reports"
mode = "maintenance"
retry_after = 90
maintenance_until = "2026-12-01T06:00:00Z"
"#;
    let gw = Gateway::start(config);
    let r = gw.request("PUT", "/v1/firmware", &[], b"{}");
    let b = assert_problem(&r, "not_implemented");
    assert_eq!(r.status, 501);
    assert_eq!(
        b["detail"],
        "PUT /v1/firmware is declared but not implemented yet (route firmware)."
    );

    let r = gw.get("/v1/reports");
    let b = assert_problem(&r, "service_unavailable");
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("90"));
    assert_eq!(b["retry_after"], 90);
    assert_eq!(
        b["detail"],
        "reports is under maintenance until 2026-12-01T06:00:00Z; retry after 90 s."
    );
}

#[test]
fn upstream_errors_pass_through_unless_wrapping_is_on() {
    let up = Upstream::start(Behaviour::PlainError);
    let config = format!(
        "{}[[routes]]\nname = \"wrapped\"\npath = \"/wrapped\"\nupstream = \"{}\"\nwrap_upstream_errors = true\n",
        one_route("/plain", &up.url(), ""),
        up.url()
    );
    let gw = Gateway::start(&config);
    let r = gw.get("/plain");
    assert_eq!(r.status, 500);
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(r.text(), "database is on fire");
    assert!(r.header("x-request-id").is_some());

    let r = gw.get("/wrapped");
    let b = assert_problem(&r, "upstream_error");
    assert_eq!(r.status, 500, "upstream status kept");
    assert_eq!(b["upstream"], "database is on fire");
    assert_eq!(b["upstream_status"], 500);
    assert_eq!(
        b["detail"],
        "The upstream of route wrapped answered 500 Internal Server Error; its response is under `upstream`."
    );
}

#[test]
fn forwarding_sets_forwarded_headers_and_drops_hop_by_hop() {
    let up = Upstream::start(Behaviour::Echo);
    let gw = Gateway::start(&one_route("/echo", &up.url(), ""));
    let r = gw.request(
        "GET",
        "/echo",
        &[
            ("X-Forwarded-For", "6.6.6.6"),
            ("Connection", "close, X-Private-Hop"),
            ("X-Private-Hop", "1"),
            ("Keep-Alive", "timeout=1"),
            ("TE", "trailers"),
        ],
        b"",
    );
    let e = r.json();
    let h = &e["headers"];
    assert_eq!(
        h["x-forwarded-for"][0], "127.0.0.1",
        "untrusted client's XFF replaced"
    );
    assert_eq!(h["x-forwarded-proto"][0], "http");
    assert_eq!(h["x-forwarded-host"][0], gw.addr.to_string());
    assert_eq!(h["host"][0], up.addr.to_string());
    assert!(h.get("x-private-hop").is_none(), "{h}");
    assert!(h.get("keep-alive").is_none(), "{h}");
    assert!(h.get("te").is_none(), "{h}");
    // And on the way back: the upstream's Keep-Alive does not reach the client.
    assert!(r.header("keep-alive").is_none());
    assert_eq!(r.header("x-upstream"), Some("echo"));

    // A client's own word for its address, in the fields an upstream may read instead of
    // X-Forwarded-For, does not reach the upstream (the attack probe's bytes: they used to
    // arrive untouched).
    let mut s = std::net::TcpStream::connect(gw.addr).unwrap();
    std::io::Write::write_all(
        &mut s,
        b"GET /echo HTTP/1.1\r\nHost: x\r\nForwarded: for=10.0.0.1;proto=https\r\n\
          Forwarded: for=10.0.0.2\r\nX-Real-IP: 10.0.0.1\r\nX_Forwarded_For: 6.6.6.6\r\n\
          X_Real_IP: 6.6.6.6\r\nTrue-Client-IP: 6.6.6.6\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let r = read_response(&mut s);
    assert_eq!(r.status, 200);
    let h = &r.json()["headers"];
    assert!(h.get("forwarded").is_none(), "{h}");
    for gone in [
        "x-real-ip",
        "x_forwarded_for",
        "x_real_ip",
        "true-client-ip",
    ] {
        assert!(h.get(gone).is_none(), "{gone}: {h}");
    }
    assert_eq!(h["x-forwarded-for"][0], "127.0.0.1");

    // Loopback trusted: incoming X-Forwarded-* are kept and extended.
    let gw = Gateway::start(&format!(
        "[server]\ntrusted_proxies = [\"127.0.0.0/8\"]\n{}",
        one_route("/echo", &up.url(), "")
    ));
    let r = gw.request(
        "GET",
        "/echo",
        &[
            ("X-Forwarded-For", "203.0.113.7"),
            ("X-Forwarded-Proto", "https"),
            ("Forwarded", "for=203.0.113.7"),
            ("X-Real-IP", "203.0.113.7"),
        ],
        b"",
    );
    let h = &r.json()["headers"];
    assert_eq!(h["x-forwarded-for"][0], "203.0.113.7, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"][0], "https");
    // A trusted proxy's are its own to pass on.
    assert_eq!(h["forwarded"][0], "for=203.0.113.7");
    assert_eq!(h["x-real-ip"][0], "203.0.113.7");
}

#[test]
fn large_bodies_stream_both_ways() {
    let up = Upstream::start(Behaviour::Echo);
    let gw = Gateway::start(&one_route("/upload", &up.url(), ""));
    let body: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let r = gw.request("POST", "/upload", &[], &body);
    let e = r.json();
    assert_eq!(e["body_len"], 3_000_000);
    assert_eq!(
        e["body_sum"],
        body.iter().map(|b| u64::from(*b)).sum::<u64>()
    );
}

#[test]
fn keep_alive_connections_serve_many_requests() {
    let up = Upstream::start(Behaviour::Echo);
    let gw = Gateway::start(&one_route("/k", &up.url(), ""));
    let mut s = std::net::TcpStream::connect(gw.addr).unwrap();
    for i in 0..20 {
        use std::io::Write;
        write!(s, "GET /k?i={i} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let r = read_response(&mut s);
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["target"], format!("/k?i={i}"));
    }
    // The upstream pool reused its connection rather than opening one per request.
    assert_eq!(up.hits.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[test]
fn pooled_connections_the_upstream_closed_are_not_used() {
    let up = Upstream::start(Behaviour::CloseAfterOne);
    let gw = Gateway::start(&one_route("/c", &up.url(), ""));
    for _ in 0..5 {
        let r = gw.get("/c");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.text(), "ok");
        // The upstream closes its side meanwhile, as an idle timeout would.
        std::thread::sleep(Duration::from_millis(150));
    }
    assert_eq!(up.hits.load(std::sync::atomic::Ordering::Relaxed), 5);
}

#[test]
fn a_connection_still_sending_a_request_body_serves_no_other_request() {
    // The upstream answers before reading the body, and the client stops sending half way
    // but keeps its connection open: the upstream connection is still busy writing that
    // body, so the next request must get another connection, not wait behind it.
    use std::io::Write;
    let up = Upstream::start(Behaviour::EarlyAnswer);
    let gw = Gateway::start(&one_route("/up", &up.url(), "timeout = \"2s\""));
    let mut s = std::net::TcpStream::connect(gw.addr).unwrap();
    s.write_all(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
        .unwrap();
    s.write_all(&[b'z'; 1000]).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let r = read_response(&mut s);
    assert_eq!((r.status, r.text().as_str()), (200, "early"));
    for _ in 0..3 {
        let r = gw.get("/up");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.text(), "early");
    }
    // The stalled upload's connection and one connection for the three GETs.
    assert_eq!(up.hits.load(std::sync::atomic::Ordering::Relaxed), 2);
    // The stalled upload stays open until here.
    drop(s);
}

#[test]
fn a_response_read_half_way_does_not_return_its_connection() {
    // A client that leaves after the head of a large response: the upstream connection still
    // carries the rest of that body, so it must not serve another request.
    let up = Upstream::start(Behaviour::Big(8 << 20));
    let gw = Gateway::start(&one_route("/big", &up.url(), ""));
    {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(gw.addr).unwrap();
        s.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut head = [0u8; 64];
        let _ = s.read(&mut head).unwrap();
    }
    for _ in 0..3 {
        let r = gw.get("/big");
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len(), 8 << 20);
        assert!(r.body.iter().all(|b| *b == b'y'));
    }
    // The connection that served whole responses was reused; the half-read one was not.
    assert_eq!(up.hits.load(std::sync::atomic::Ordering::Relaxed), 2);
}

#[test]
fn a_panic_is_an_internal_error_and_the_gateway_survives() {
    let up = Upstream::start(Behaviour::Echo);
    let gw = Gateway::start(&format!(
        "[debug]\npanic_path = \"/boom\"\n{}",
        one_route("/ok", &up.url(), "")
    ));
    let r = gw.get("/boom");
    let b = assert_problem(&r, "internal_error");
    assert_eq!(r.status, 500);
    let rid = b["request_id"].as_str().unwrap().to_owned();
    // Same process, same listener, next request fine.
    assert_eq!(gw.get("/ok").status, 200);
    assert!(
        gw.eventually(|g| g.log().contains("a pipeline stage panicked") && g.log().contains(&rid))
    );
    assert!(gw.child.id() > 0);
}

#[test]
fn slow_but_in_time_upstream_is_fine() {
    let up = Upstream::start(Behaviour::Slow(Duration::from_millis(200)));
    let gw = Gateway::start(&one_route("/s", &up.url(), "timeout = \"5s\""));
    assert_eq!(gw.get("/s").status, 200);
}

/// An upstream that reads one request head and answers `answer`, then closes.
fn fixed_upstream(answer: &'static [u8]) -> std::net::SocketAddr {
    held_upstream(answer, Duration::ZERO)
}

/// An upstream that reads one request head, answers `answer`, then holds the connection
/// open for `hold`, sending nothing more.
fn held_upstream(answer: &'static [u8], hold: Duration) -> std::net::SocketAddr {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { continue };
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match c.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = c.write_all(answer);
                std::thread::sleep(hold);
            });
        }
    });
    addr
}

#[test]
fn a_response_framed_twice_loses_its_content_length() {
    // The finding: Content-Length 3 and a chunked body of 5 bytes reached the client as
    // `content-length: 3` and `hel`, on a connection kept alive.
    let up = fixed_upstream(
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    );
    let gw = Gateway::start(&one_route("/{*rest}", &format!("http://{up}"), ""));
    let r = gw.get("/x");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), None);
    assert_eq!(r.text(), "hello");
}

#[test]
fn an_upstream_may_send_as_many_headers_as_a_client() {
    let mut answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n".to_vec();
    for i in 0..101 {
        answer.extend_from_slice(format!("Set-Cookie: c{i}=v\r\n").as_bytes());
    }
    answer.extend_from_slice(b"\r\nok");
    let up = fixed_upstream(Box::leak(answer.into_boxed_slice()));
    let gw = Gateway::start(&one_route("/{*rest}", &format!("http://{up}"), ""));
    let r = gw.get("/x");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "ok");
}

#[test]
fn an_upstream_stalling_mid_body_is_cut_off_and_logged() {
    // The finding: an upstream that stops after its headers held the client until it closed.
    let up = held_upstream(
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello",
        Duration::from_secs(60),
    );
    let gw = Gateway::start(&format!(
        "[timeouts]\nresponse_body_idle = \"1s\"\n{}",
        one_route("/{*rest}", &format!("http://{up}"), "")
    ));
    let mut s = std::net::TcpStream::connect(gw.addr).unwrap();
    std::io::Write::write_all(&mut s, b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let raw = read_to_close(&mut s);
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert!(
        text.ends_with("hello"),
        "the 5 bytes sent, then the end: {text}"
    );
    let line = gw.log_line("response cut off");
    for part in [
        "\"ended_by\":\"upstream\"",
        "\"status\":200",
        "\"bytes_sent\":5",
        "timeouts.response_body_idle",
        "\"request_id\":\"",
    ] {
        assert!(line.contains(part), "{part} in {line}");
    }
}

#[test]
fn an_upstream_closing_mid_body_is_logged_with_what_was_delivered() {
    // The finding: a mid-body reset was logged as a 200 with no cause.
    let up = fixed_upstream(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhel");
    let gw = Gateway::start(&one_route("/{*rest}", &format!("http://{up}"), ""));
    let mut s = std::net::TcpStream::connect(gw.addr).unwrap();
    std::io::Write::write_all(&mut s, b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let raw = read_to_close(&mut s);
    assert!(String::from_utf8_lossy(&raw).ends_with("hel"));
    let line = gw.log_line("response cut off");
    assert!(line.contains("\"ended_by\":\"upstream\""), "{line}");
    assert!(line.contains("\"bytes_sent\":3"), "{line}");
    assert!(line.contains("broke off"), "{line}");
    // And counted.
    let stats = gw.stats();
    assert_eq!(stats["responses_cut_off"]["by_upstream"], 1, "{stats}");
}

#[test]
fn an_unasked_for_101_is_a_protocol_error_not_a_bare_500() {
    let up = fixed_upstream(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n",
    );
    let gw = Gateway::start(&one_route("/{*rest}", &format!("http://{up}"), ""));
    let r = gw.get("/x");
    let b = assert_problem(&r, "upstream_protocol_error");
    assert!(b["detail"].as_str().unwrap().contains("101"), "{b}");
}

#[test]
fn an_upstream_at_its_connection_cap_queues_then_refuses_with_upstream_overloaded() {
    // The finding: 10 connections x 200 streams to a hanging route opened 2,000 upstream
    // connections. Now: at most max_connections, then a bounded queue, then a refusal.
    let up = Upstream::start(Behaviour::Hang);
    let gw = Gateway::start(&one_route(
        "/{*rest}",
        &up.url(),
        "timeout = \"2s\"\nmax_connections = 2\nmax_queue = 1",
    ));
    std::thread::scope(|s| {
        let busy: Vec<_> = (0..2).map(|_| s.spawn(|| gw.get("/h"))).collect();
        std::thread::sleep(Duration::from_millis(400));
        let queued = s.spawn(|| gw.get("/h"));
        std::thread::sleep(Duration::from_millis(300));
        // The queue holds one: this one is refused at once.
        let r = gw.get("/h");
        let b = assert_problem(&r, "upstream_overloaded");
        assert_eq!(r.status, 503);
        assert_eq!(b["limit"], 2);
        assert_eq!(b["retry"], "with_backoff");
        let detail = b["detail"].as_str().unwrap();
        assert!(
            detail.contains(
                "has all 2 of its connections busy, and its queue of 1 waiting requests is full"
            ),
            "{detail}"
        );
        // The queued one waited half the route's timeout for a connection, in vain.
        let r = queued.join().unwrap();
        let b = assert_problem(&r, "upstream_overloaded");
        assert!(
            b["detail"]
                .as_str()
                .unwrap()
                .contains("none came free within 1 s"),
            "{b}"
        );
        for t in busy {
            assert_problem(&t.join().unwrap(), "upstream_timeout");
        }
    });
    assert_eq!(up.hits.load(std::sync::atomic::Ordering::Relaxed), 2);
}

#[test]
fn a_connection_coming_free_serves_the_queue() {
    let up = Upstream::start(Behaviour::Slow(Duration::from_millis(300)));
    let gw = Gateway::start(&one_route(
        "/{*rest}",
        &up.url(),
        "timeout = \"10s\"\nmax_connections = 1\nmax_queue = 8",
    ));
    std::thread::scope(|s| {
        let all: Vec<_> = (0..4).map(|_| s.spawn(|| gw.get("/q"))).collect();
        for t in all {
            assert_eq!(t.join().unwrap().status, 200);
        }
    });
    assert_eq!(up.hits.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[test]
fn connections_a_burst_opened_are_purged_when_no_request_needs_them() {
    // 12 requests at once open 12 upstream connections; while they sit unused, the pool
    // closes half of them every 5 s (not only after the 60 s idle timeout).
    let up = Upstream::start(Behaviour::Slow(Duration::from_millis(300)));
    let gw = Gateway::start(&one_route("/{*rest}", &up.url(), ""));
    let burst = |gw: &Gateway| {
        std::thread::scope(|s| {
            let all: Vec<_> = (0..12).map(|_| s.spawn(|| gw.get("/a").status)).collect();
            for t in all {
                assert_eq!(t.join().unwrap(), 200);
            }
        })
    };
    burst(&gw);
    let opened = up.hits.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(opened, 12);
    // Two purges: the first sees 12 unneeded, the second closes half of them.
    std::thread::sleep(Duration::from_secs(11));
    burst(&gw);
    let reopened = up.hits.load(std::sync::atomic::Ordering::Relaxed) - opened;
    assert!(
        (3..12).contains(&reopened),
        "{reopened} new connections for the second burst"
    );
}

#[test]
fn idle_connections_another_route_opened_do_not_lift_a_routes_cap() {
    // The finding (attack probe): with 40 connections an uncapped route had left idle to
    // the same upstream, 30 requests at once on a route capped at 4 (+2 queued) were all
    // served at once.
    let up = Upstream::start(Behaviour::Slow(Duration::from_millis(300)));
    let config = format!(
        "{}{}",
        one_route("/warm/{*rest}", &up.url(), ""),
        one_route(
            "/cap/{*rest}",
            &up.url(),
            "max_connections = 2\nmax_queue = 1"
        )
        .replace("name = \"r\"", "name = \"capped\"")
    );
    let gw = Gateway::start(&config);
    let burst = |path: &str| -> Vec<u16> {
        std::thread::scope(|s| {
            let all: Vec<_> = (0..10).map(|_| s.spawn(|| gw.get(path).status)).collect();
            all.into_iter().map(|t| t.join().unwrap()).collect()
        })
    };
    assert!(burst("/warm/a").iter().all(|&s| s == 200));
    let statuses = burst("/cap/a");
    let refused = statuses.iter().filter(|&&s| s == 503).count();
    assert!(refused >= 5, "{statuses:?}");
    // Refused by the gateway's cap, not by the upstream.
    let stats = gw.stats();
    assert_eq!(
        stats["errors"]["upstream_overloaded"]["gateway"], refused as u64,
        "{stats}"
    );
    assert!(
        statuses.iter().all(|&s| s == 200 || s == 503),
        "{statuses:?}"
    );
}

#[test]
fn an_upstreams_own_problem_passes_unchanged_and_is_logged_as_its_own() {
    let up = Upstream::start(Behaviour::Problem(409));
    let gw = Gateway::start(&one_route("/{*rest}", &up.url(), ""));
    let r = gw.get("/p");
    assert_eq!(r.status, 409);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert_eq!(
        r.text(),
        r#"{"type":"about:blank","title":"Oops","status":409,"code":"its_own_code"}"#
    );
    let rid = r.header("x-request-id").unwrap().to_owned();
    let line = gw.log_line(&format!("\"request_id\":\"{rid}\""));
    for part in [
        "\"code\":\"its_own_code\"",
        "\"source\":\"upstream\"",
        "\"status\":409",
    ] {
        assert!(line.contains(part), "{part} in {line}");
    }
}

#[test]
fn an_upstreams_problem_body_that_stalls_is_said_to_stall() {
    // The attack probe's finding: a stalled error body was answered "sent no response
    // headers within 3 s", replacing the upstream's 404 with an untrue 504.
    let up = Upstream::start(Behaviour::ProblemStall(404));
    let gw = Gateway::start(&format!(
        "[timeouts]\nresponse_body_idle = \"1s\"\n{}",
        one_route("/{*rest}", &up.url(), "timeout = \"5s\"")
    ));
    let b = assert_problem(&gw.get("/s"), "upstream_protocol_error");
    assert_eq!(b["upstream_status"], 404);
    assert_eq!(
        b["detail"],
        "Route r: the upstream answered 404 Not Found with a problem-details body of 100 bytes, then stopped sending it for 1 s (timeouts.response_body_idle) after 8 bytes of it."
    );
}
