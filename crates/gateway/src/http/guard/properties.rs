//! Property tests of the guard against hyper itself: random request streams (well framed,
//! then mutated byte by byte) cut into random pieces go through the guard into a real hyper
//! HTTP/1 server. Whatever the bytes, hyper serves exactly the heads the guard passed, in
//! order, then at most the guard's stand-in; hyper never rejects a head the guard passed
//! (which would be a bare 400 outside the catalog). Bounded to stay fast under `cargo test`;
//! `PROPTEST_CASES=100000` runs longer (see fuzz/README.md).

use super::*;
use http_body_util::BodyExt;
use proptest::prelude::*;
use std::sync::Mutex;

/// One request, framed one of several ways.
fn message(i: usize) -> impl Strategy<Value = Vec<u8>> {
    let body = prop::collection::vec(any::<u8>(), 0..24);
    let chunks = prop::collection::vec(prop::collection::vec(b'a'..=b'z', 1..12), 0..4);
    (0..6u8, body, chunks, any::<bool>(), any::<bool>()).prop_map(
        move |(framing, body, chunks, ext, trailer)| {
            let method = if framing == 0 { "GET" } else { "POST" };
            let mut m = format!("{method} /m{i} HTTP/1.1\r\nHost: x\r\n").into_bytes();
            match framing {
                0 | 1 => m.extend_from_slice(b"\r\n"),
                2 | 3 => {
                    m.extend_from_slice(
                        format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes(),
                    );
                    m.extend_from_slice(&body);
                }
                _ => {
                    m.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                    for c in &chunks {
                        m.extend_from_slice(format!("{:x}", c.len()).as_bytes());
                        if ext {
                            m.extend_from_slice(b";e=1");
                        }
                        m.extend_from_slice(b"\r\n");
                        m.extend_from_slice(c);
                        m.extend_from_slice(b"\r\n");
                    }
                    m.extend_from_slice(b"0\r\n");
                    if trailer {
                        m.extend_from_slice(b"X-T: 1\r\n");
                    }
                    m.extend_from_slice(b"\r\n");
                }
            }
            m
        },
    )
}

/// A few requests in a row, then a few bytes changed, inserted or removed.
fn stream() -> impl Strategy<Value = Vec<u8>> {
    let messages = (message(0), message(1), message(2), message(3));
    // Bytes that matter to framing, and a few a URL or a header must not carry.
    let alphabet =
        prop::sample::select(b"\r\n:; 0123456789abfxGT\"<>{}\\^`|\x00\x7f\xff\t,+-".to_vec());
    let edits = prop::collection::vec((any::<prop::sample::Index>(), 0..3u8, alphabet), 0..4);
    (messages, edits).prop_map(|((a, b, c, d), edits)| {
        let mut s = [a, b, c, d].concat();
        for (at, how, byte) in edits {
            let i = at.index(s.len());
            match how {
                0 => s[i] = byte,
                1 => s.insert(i, byte),
                _ => {
                    s.remove(i);
                }
            }
        }
        s
    })
}

/// The bytes of `data` in pieces of the given sizes (the last piece takes the rest).
struct Pieces {
    data: Vec<u8>,
    cuts: Vec<usize>,
    pos: usize,
    next: usize,
}

impl AsyncRead for Pieces {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let cut = this.cuts.get(this.next).copied().unwrap_or(usize::MAX);
        this.next += 1;
        let n = cut.min(this.data.len() - this.pos).min(buf.remaining());
        buf.put_slice(&this.data[this.pos..this.pos + n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Pieces {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The request lines of the heads the guard passes over `data` in these pieces, and
/// whether it refused one after them.
fn guard_view(data: &[u8], cuts: &[usize]) -> (Vec<String>, bool) {
    let mut s = Scanner {
        framing: NEW_HEAD,
        heads: 0,
        limits: Limits::default(),
        max_head: MAX_HEAD_BYTES,
        #[cfg(test)]
        lines: Vec::new(),
    };
    let mut held = Vec::new();
    let mut pos = 0;
    for &cut in cuts.iter().chain(std::iter::repeat(&usize::MAX)) {
        if pos >= data.len() {
            break;
        }
        let n = cut.min(data.len() - pos);
        held.extend_from_slice(&data[pos..pos + n]);
        pos += n;
        let (passed, refusal) = s.scan(&held);
        held.drain(..passed);
        if refusal.is_some() {
            return (s.lines, true);
        }
        if matches!(s.framing, Framing::Broken(_)) {
            return (s.lines, false);
        }
    }
    // The end of the stream in the middle of a head: refused.
    let refused = matches!(s.framing, Framing::Head { .. }) && !held.is_empty();
    (s.lines, refused)
}

/// What hyper served over the guard: request lines ("METHOD /path"), "STAND-IN" for the
/// guard's stand-in; and whether hyper rejected a head itself.
fn hyper_view(data: Vec<u8>, cuts: Vec<usize>) -> (Vec<String>, bool) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async move {
        let shared = Arc::new(Shared::default());
        let io = HeadGuard::new(
            Pieces {
                data,
                cuts,
                pos: 0,
                next: 0,
            },
            shared.clone(),
            Limits::default(),
            Waits {
                head: Duration::from_secs(10),
                keepalive: Duration::from_secs(10),
            },
        );
        let seen = Arc::new(Mutex::new(Vec::new()));
        let svc_seen = seen.clone();
        let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
            let seen = svc_seen.clone();
            let stand_in = shared.next_request().is_some();
            async move {
                let line = if stand_in {
                    "STAND-IN".to_owned()
                } else {
                    format!("{} {}", req.method(), req.uri())
                };
                seen.lock().unwrap().push(line);
                let _ = req.into_body().collect().await;
                let mut resp = http::Response::new(http_body_util::Empty::<bytes::Bytes>::new());
                if stand_in {
                    resp.headers_mut().insert(
                        http::header::CONNECTION,
                        http::HeaderValue::from_static("close"),
                    );
                }
                Ok::<_, std::convert::Infallible>(resp)
            }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .max_headers(crate::upstream::pool::MAX_RESPONSE_HEADERS)
            .serve_connection(hyper_util::rt::TokioIo::new(io), svc);
        let result = tokio::time::timeout(Duration::from_secs(5), conn).await;
        let parse_error = matches!(&result, Ok(Err(e)) if e.is_parse() || e.is_parse_too_large());
        let seen = seen.lock().unwrap().clone();
        (seen, parse_error)
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 192,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn hyper_serves_exactly_what_the_guard_passes(
        data in stream(),
        cuts in prop::collection::vec(1usize..48, 0..24),
    ) {
        let (passed, refused) = guard_view(&data, &cuts);
        let (served, parse_error) = hyper_view(data.clone(), cuts.clone());
        let shown = String::from_utf8_lossy(&data).into_owned();
        let expected: Vec<String> = passed
            .iter()
            .map(|l| l.rsplit_once(' ').map_or(l.clone(), |(a, _)| a.to_owned()))
            .collect();
        let (heads, tail) = served.split_at(served.len().min(expected.len()));
        prop_assert_eq!(heads, &expected[..heads.len()], "{}", shown);
        prop_assert!(
            tail.is_empty() || (refused && tail == ["STAND-IN".to_owned()]),
            "hyper served {:?} after the guard's heads {:?}: {}", tail, expected, shown
        );
        if heads.len() < expected.len() {
            // hyper stopped early: only because a body failed, never by refusing a head.
            prop_assert!(!parse_error, "hyper refused a head the guard passed: {}", shown);
        }
        prop_assert!(!parse_error, "hyper refused a head the guard passed: {}", shown);
    }
}
