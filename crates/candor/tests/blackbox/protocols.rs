//! HTTP/2 (h2c prior knowledge and h2 over TLS by ALPN) and TLS termination, black-box.

use crate::harness::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::sync::Arc;

/// `[server.tls]` with the fixtures' certificate, and one route `/t` to `up`.
fn tls_config_text(up: &Upstream) -> String {
    format!(
        "[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n{}",
        fixture("server.pem").display(),
        fixture("server.key").display(),
        one_route("/t", &up.url(), "")
    )
}

/// A TLS client trusting the fixtures' CA, offering `alpn`.
pub(crate) fn client_tls(alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(fixture("ca.pem")).unwrap();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

async fn h2_get<IO>(io: IO, uri: &str) -> (u16, http::HeaderMap, Bytes)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    h2_send(
        io,
        http::Request::get(uri).body(Empty::<Bytes>::new()).unwrap(),
    )
    .await
}

async fn h2_send<IO>(io: IO, req: http::Request<Empty<Bytes>>) -> (u16, http::HeaderMap, Bytes)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .unwrap();
    tokio::spawn(conn);
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let (parts, body) = resp.into_parts();
    (
        parts.status.as_u16(),
        parts.headers,
        body.collect().await.unwrap().to_bytes(),
    )
}

#[tokio::test]
async fn an_h2_header_list_over_the_limit_gets_the_catalog_answer() {
    // The finding: an h2 header list over the limit got the h2 library's bare 431. Lists
    // up to 1 MiB reach the transport stage; the limit here is the default 32 KiB.
    let up = Upstream::start(Behaviour::Echo);
    let gw = Gateway::start(&one_route("/t", &up.url(), ""));
    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let mut req = http::Request::get(format!("http://{}/t", gw.addr));
    for i in 0..40 {
        req = req.header(format!("x-big-{i}"), "v".repeat(4000));
    }
    let (status, headers, body) = h2_send(tcp, req.body(Empty::<Bytes>::new()).unwrap()).await;
    assert_eq!(status, 431);
    assert_eq!(headers["content-type"], "application/problem+json");
    let b: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(b["code"], "headers_too_large");
    assert_eq!(b["limit"], 32768, "{b}");
    assert_eq!(up.hits.load(std::sync::atomic::Ordering::Relaxed), 0);
}

#[tokio::test]
async fn h2c_prior_knowledge_is_served() {
    let up = Upstream::start(Behaviour::Echo);
    let gw = Gateway::start(&one_route("/t", &up.url(), ""));
    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let (status, headers, body) = h2_get(tcp, &format!("http://{}/t?x=1", gw.addr)).await;
    assert_eq!(status, 200);
    assert!(headers.contains_key("x-request-id"));
    let echo: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(echo["target"], "/t?x=1", "forwarded upstream as HTTP/1.1");
    assert_eq!(echo["headers"]["x-forwarded-host"][0], gw.addr.to_string());

    // Errors over h2 are the same documents.
    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let (status, headers, body) = h2_get(tcp, &format!("http://{}/nope", gw.addr)).await;
    assert_eq!(status, 404);
    assert_eq!(headers["content-type"], "application/problem+json");
    let b: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(b["code"], "route_not_found");
}

/// An HTTP/1.1 client connection over TLS to the gateway.
async fn tls_http1(gw: &Gateway) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let tls = client_tls(&[b"http/1.1"]).connect(name, tcp).await.unwrap();
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

/// GET `path` on `send`: the status and the JSON body.
async fn tls_get(
    send: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    path: &str,
) -> (u16, serde_json::Value) {
    let req = http::Request::get(path)
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap())
}

#[tokio::test]
async fn tls_terminates_with_h2_by_alpn_and_http11() {
    let up = Upstream::start(Behaviour::Echo);
    let gw = Gateway::start(&tls_config_text(&up));
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();

    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let tls = client_tls(&[b"h2"])
        .connect(name.clone(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (status, _, body) = h2_get(tls, &format!("https://localhost:{}/t", gw.addr.port())).await;
    assert_eq!(status, 200);
    let echo: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(echo["headers"]["x-forwarded-proto"][0], "https");

    // HTTP/1.1 over TLS, and a TLS error page whose type URL is https.
    let mut send = tls_http1(&gw).await;
    let (status, b) = tls_get(&mut send, "/missing").await;
    assert_eq!(status, 404);
    assert!(
        b["type"]
            .as_str()
            .unwrap()
            .starts_with("https://127.0.0.1:"),
        "{b}"
    );
}

#[tokio::test]
async fn an_idle_tls_connection_gives_its_parser_back_and_is_served_again() {
    let up = Upstream::start(Behaviour::Echo);
    let gw = Gateway::start(&tls_config_text(&up));
    let mut send = tls_http1(&gw).await;
    for _ in ["first", "after parking"] {
        let (status, echo) = tls_get(&mut send, "/t").await;
        assert_eq!(status, 200);
        assert_eq!(echo["target"], "/t");
        // Idle: the connection gives its parser back (blocking the test's thread is fine,
        // nothing is in flight).
        assert!(gw.eventually(|g| crate::timeouts::parked(g) == 1), "parked");
    }
}

#[tokio::test]
async fn a_parked_tls_connection_closes_with_close_notify() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = Upstream::start(Behaviour::Echo);
    let gw = Gateway::start(&format!(
        "[timeouts]\nkeepalive = \"1s\"\n{}",
        tls_config_text(&up)
    ));
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let mut tls = client_tls(&[b"http/1.1"]).connect(name, tcp).await.unwrap();
    tls.write_all(b"GET /t HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    // Found by the attack probe: a parked connection closed for idleness was dropped without
    // TLS's close_notify (a truncation, to the client).
    let mut out = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(15),
        tls.read_to_end(&mut out),
    )
    .await
    .expect("closed after keepalive");
    assert!(read.is_ok(), "{read:?}");
    assert!(out.starts_with(b"HTTP/1.1 200 OK"));
    assert!(
        gw.stats()["connections"]["idle_parked_total"]
            .as_u64()
            .unwrap()
            >= 1
    );
}

#[test]
fn plaintext_to_a_tls_listener_is_told_to_use_https() {
    let up = Upstream::start(Behaviour::Echo);
    let gw = Gateway::start(&tls_config_text(&up));
    let r = gw.send(b"GET /t?x=1 HTTP/1.1\r\nHost: x\r\n\r\n");
    let b = assert_problem(&r, "https_required");
    assert_eq!(
        b["detail"],
        "This API only accepts HTTPS; the request to /t arrived over plain HTTP."
    );
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(up.hits.load(std::sync::atomic::Ordering::Relaxed), 0);
    use std::io::{Read, Write};
    // The finding (attack probe): a request line arriving in pieces (`G`, then the rest)
    // was reset instead of answered.
    let mut s = std::net::TcpStream::connect(gw.addr).unwrap();
    s.write_all(b"G").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    s.write_all(b"ET /x HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    assert_problem(&parse_raw(&read_to_close(&mut s)), "https_required");
    // Neither a lone handshake byte nor bytes that are not HTTP upset it.
    let mut s = std::net::TcpStream::connect(gw.addr).unwrap();
    s.write_all(b"\x16").unwrap();
    drop(s);
    let mut s = std::net::TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(15)))
        .unwrap();
    s.write_all(b"SSH-2.0-OpenSSH_9.2\r\n").unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    assert!(buf.is_empty(), "{buf:?}");
}

/// Sends `raw` over TLS (HTTP/1.1 by ALPN) and reads until the gateway closes.
async fn tls_raw(gw: &Gateway, raw: &[u8]) -> (u16, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let mut tls = client_tls(&[b"http/1.1"]).connect(name, tcp).await.unwrap();
    tls.write_all(raw).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(15),
        tls.read_to_end(&mut out),
    )
    .await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    assert!(
        head.contains("content-type: application/problem+json"),
        "{head}"
    );
    (status, serde_json::from_str(body).unwrap())
}

#[tokio::test]
async fn malformed_requests_over_tls_are_answered_through_the_catalog() {
    let up = Upstream::start(Behaviour::Echo);
    let gw = Gateway::start(&tls_config_text(&up));
    let (status, b) = tls_raw(&gw, b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(
        (status, b["code"].as_str()),
        (400, Some("invalid_url_encoding"))
    );
    let (status, b) = tls_raw(&gw, b"GET /a HTTP/1.1\r\nHost: x\r\nX Key: v\r\n\r\n").await;
    assert_eq!(
        (status, b["code"].as_str()),
        (400, Some("malformed_header"))
    );
    assert!(b["type"].as_str().unwrap().starts_with("https://"), "{b}");
    assert_eq!(up.hits.load(std::sync::atomic::Ordering::Relaxed), 0);
    // A well-formed request on a TLS connection still reaches the upstream whole.
    let (status, b) = {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        let mut tls = client_tls(&[b"http/1.1"]).connect(name, tcp).await.unwrap();
        tls.write_all(
            b"POST /t HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
        )
        .await
        .unwrap();
        let mut out = Vec::new();
        tls.read_to_end(&mut out).await.unwrap();
        let text = String::from_utf8_lossy(&out).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, body.to_owned())
    };
    assert_eq!(status, 200, "{b}");
    let echo: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(
        (echo["body_len"].as_u64(), echo["body_sum"].as_u64()),
        (Some(5), Some(532)),
        "hello"
    );
}
