//! HTTP/2 (h2c prior knowledge and h2 over TLS by ALPN) and TLS termination, black-box.

mod common;
use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::sync::Arc;

fn tls_config_text(up: &Upstream) -> String {
    format!(
        "[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n{}",
        fixture("server.pem").display(),
        fixture("server.key").display(),
        one_route("/t", &up.url(), "")
    )
}

fn client_tls(alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
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
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(uri).body(Empty::<Bytes>::new()).unwrap();
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
    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let tls = client_tls(&[b"http/1.1"]).connect(name, tcp).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("/missing")
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 404);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let b: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(
        b["type"]
            .as_str()
            .unwrap()
            .starts_with("https://127.0.0.1:"),
        "{b}"
    );
}

#[test]
fn plaintext_to_a_tls_listener_does_not_hang_or_crash() {
    let up = Upstream::start(Behaviour::Echo);
    let gw = Gateway::start(&tls_config_text(&up));
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(15)))
        .unwrap();
    s.write_all(b"GET /t HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    assert!(!buf.starts_with(b"HTTP/1.1 200"));
    // The gateway is still serving.
    let mut s = std::net::TcpStream::connect(gw.addr).unwrap();
    s.write_all(b"\x16").unwrap();
    drop(s);
}
