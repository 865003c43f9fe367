//! One framing authority: the head guard and hyper never disagree about where a message
//! ends. Table-driven: the bytes an attacker sends, the answers expected on the connection
//! (status and code, in order), and the exact request heads the test upstream received. Any
//! request reaching the upstream that the gateway did not route is a failure, and so is a
//! stand-in (`candor.invalid`) reaching it.

use crate::harness::*;
use std::io::Write;
use std::net::TcpStream;

/// Sends `bytes` on one connection and reads until the gateway closes it.
fn exchange(gw: &Gateway, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(gw.addr).unwrap();
    s.write_all(bytes).unwrap();
    read_to_close(&mut s)
}

/// The responses in `raw`: status and `code` (empty for a non-problem answer).
fn answers(raw: &[u8]) -> Vec<(u16, String)> {
    let text = String::from_utf8_lossy(raw);
    let mut out = Vec::new();
    for (i, _) in text.match_indices("HTTP/1.1 ") {
        let status: u16 = text[i + 9..i + 12].parse().unwrap();
        let rest = &text[i..];
        let next = rest[9..].find("HTTP/1.1 ").map_or(rest.len(), |n| n + 9);
        let code = rest[..next]
            .split("\"code\":\"")
            .nth(1)
            .and_then(|c| c.split('"').next())
            .unwrap_or_default()
            .to_owned();
        out.push((status, code));
    }
    out
}

fn gateway() -> (Gateway, Upstream) {
    let up = Upstream::start(Behaviour::Echo);
    // The client's Host goes upstream, so a stand-in (candor.invalid) would show.
    let gw = Gateway::start(&one_route("/{*rest}", &up.url(), "preserve_host = true"));
    (gw, up)
}

const BAD: (u16, &str) = (400, "malformed_request");

/// (what, bytes, answers in order, request heads the upstream received)
type Case = (
    &'static str,
    &'static [u8],
    &'static [(u16, &'static str)],
    &'static [&'static str],
);

const CASES: &[Case] = &[
    (
        "CL.TE: both lengths",
        b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /SMUGGLED HTTP/1.1\r\nHost: x\r\n\r\n",
        &[BAD],
        &[],
    ),
    (
        "TE.CL: both lengths, the other order",
        b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5c\r\nGET /SMUGGLED HTTP/1.1\r\nHost: x\r\n\r\n0\r\n\r\n",
        &[BAD],
        &[],
    ),
    ("TE xchunked", b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", &[BAD], &[]),
    ("TE chunk", b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunk\r\n\r\n0\r\n\r\n", &[BAD], &[]),
    ("TE quoted", b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \"chunked\"\r\n\r\n0\r\n\r\n", &[BAD], &[]),
    ("TE chunked, identity", b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", &[BAD], &[]),
    (
        "TE over two headers",
        b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        &[BAD],
        &[],
    ),
    ("CL +5", b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello", &[BAD], &[]),
    ("CL -1", b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", &[BAD], &[]),
    ("CL 0x5", b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 0x5\r\n\r\nhello", &[BAD], &[]),
    ("CL empty", b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: \r\n\r\n", &[BAD], &[]),
    ("CL 1 0", b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 1 0\r\n\r\nhelloworld", &[BAD], &[]),
    ("CL 5, 5", b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\nhello", &[BAD], &[]),
    (
        "two different CL",
        b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        &[BAD],
        &[],
    ),
    ("HTTP/1.0 with TE", b"POST /a HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", &[BAD], &[]),
    (
        "CL beyond any body",
        b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551615\r\n\r\n",
        &[(413, "payload_too_large")],
        &[],
    ),
    ("CONNECT", b"CONNECT internal:22 HTTP/1.1\r\nHost: internal:22\r\n\r\nSSH-2.0-x\r\n", &[BAD], &[]),
    (
        "HTTP/2 preface after a request",
        b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nPRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        &[(200, ""), BAD],
        &["GET /a HTTP/1.1 | x"],
    ),
    (
        "a bad head after an Upgrade request is still checked",
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nGET /b\x01d HTTP/1.1\r\nHost: x\r\n\r\n",
        &[(200, ""), (400, "invalid_url_encoding")],
        &["GET /ws HTTP/1.1 | x"],
    ),
    // Found by the guard-against-hyper property test (guard/properties.rs): each was
    // hyper's bare 400 before.
    (
        "a lone CR before a request line",
        b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n\rOST /b HTTP/1.1\r\nHost: x\r\n\r\n",
        &[(200, ""), BAD],
        &["GET /a HTTP/1.1 | x"],
    ),
    ("a target that is not a path", b"POST \"m1 HTTP/1.1\r\nHost: x\r\n\r\n", &[BAD], &[]),
    (
        "trailers and pipelining, well framed",
        b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-T: 1\r\n\r\nGET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        &[(200, ""), (200, "")],
        &["POST /a HTTP/1.1 | x", "GET /c HTTP/1.1 | x"],
    ),
];

#[test]
fn every_smuggling_vector_is_refused_and_nothing_unrouted_reaches_the_upstream() {
    let (gw, up) = gateway();
    let mut seen = 0;
    for (what, bytes, expected, reached) in CASES {
        let raw = exchange(&gw, bytes);
        let got = answers(&raw);
        let want: Vec<(u16, String)> = expected.iter().map(|(s, c)| (*s, c.to_string())).collect();
        assert_eq!(got, want, "{what}: {}", String::from_utf8_lossy(&raw));
        // The upstream's log fills as requests arrive: the answers are in, so are they.
        let heads = up.heads();
        assert_eq!(&heads[seen..], *reached, "{what}");
        seen = heads.len();
    }
    for h in up.heads() {
        assert!(
            !h.contains("SMUGGLED") && !h.contains("candor.invalid"),
            "{h}"
        );
    }
}

/// The finding: a trailer section that bare LF ends early for one reader and late for
/// another. hyper would swallow `/SMUGGLED` as trailer bytes while a lenient guard counted
/// it as a request; now the guard refuses the body, the request fails as the client's
/// (400, never 502), and nothing after it is read.
#[test]
fn bare_lf_in_chunked_framing_fails_the_request_as_the_clients_fault() {
    let (gw, up) = gateway();
    let cases: &[&[u8]] = &[
        b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\nGET /SMUGGLED HTTP/1.1\r\nHost: x\r\n\r\nGET /b\x01d HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-T: 1\n\r\nGET /SMUGGLED HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\nGET /SMUGGLED HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff1\r\nGET /SMUGGLED HTTP/1.1\r\nHost: x\r\n\r\n",
    ];
    for bytes in cases {
        let raw = exchange(&gw, bytes);
        let got = answers(&raw);
        assert_eq!(
            got,
            vec![(400, "malformed_request".to_owned())],
            "{}",
            String::from_utf8_lossy(bytes)
        );
        let resp = parse_raw(&raw);
        let b = assert_problem(&resp, "malformed_request");
        assert_eq!(b["retry"], "never");
        let detail = b["detail"].as_str().unwrap();
        assert!(detail.contains("its body's framing is broken"), "{detail}");
        assert!(detail.contains("\"POST /a\""), "{detail}");
    }
    // The POST itself may have reached the upstream (its head goes first); nothing else did.
    for h in up.heads() {
        assert_eq!(h, "POST /a HTTP/1.1 | x");
    }
    assert!(gw.log().contains("\"source\":\"downstream\""));
}

/// Found by the property test: a head the client stopped sending half-way (it closed its
/// side) went to hyper, whose answer to a broken last line was a bare 400.
#[test]
fn a_head_cut_off_by_the_client_is_answered_through_the_catalog() {
    let (gw, up) = gateway();
    for (bytes, code) in [
        (
            &b"GET /a HTTP/1.1\r\nHost: x\r:\r\n"[..],
            "malformed_header",
        ),
        (
            b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\x00\x00",
            "malformed_request",
        ),
        (b"GET /a HTTP/1.1\r\nHost: x\r\n", "malformed_request"),
    ] {
        let mut s = TcpStream::connect(gw.addr).unwrap();
        s.write_all(bytes).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let r = parse_raw(&read_to_close(&mut s));
        assert_problem(&r, code);
    }
    assert!(up.heads().is_empty());
}
