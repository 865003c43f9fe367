//! HTTP/1.1 over hyper's connection API, TLS by rustls (ring), idle connections kept per
//! origin for reuse.

use crate::error::ApiError;
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::net::TcpStream;

/// An answer read whole.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

type Sender = SendRequest<Full<Bytes>>;

/// Connections and their settings.
pub(crate) struct Transport {
    idle: Mutex<HashMap<String, Vec<Sender>>>,
    extra_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    tls: OnceLock<Result<Arc<rustls::ClientConfig>, String>>,
    pub(crate) connect_timeout: Duration,
    pub(crate) timeout: Duration,
    pub(crate) max_body: usize,
}

/// Idle connections kept per origin.
const MAX_IDLE: usize = 8;

impl Transport {
    pub(crate) fn new(
        extra_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
        connect_timeout: Duration,
        timeout: Duration,
        max_body: usize,
    ) -> Transport {
        Transport {
            idle: Mutex::new(HashMap::new()),
            extra_roots,
            tls: OnceLock::new(),
            connect_timeout,
            timeout,
            max_body,
        }
    }

    /// The TLS settings, made on the first https connection: the system's trust roots
    /// plus those given to the builder.
    fn tls(&self) -> Result<Arc<rustls::ClientConfig>, ApiError> {
        self.tls
            .get_or_init(|| {
                let mut roots = rustls::RootCertStore::empty();
                for cert in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(cert);
                }
                for cert in &self.extra_roots {
                    roots
                        .add(cert.clone())
                        .map_err(|e| format!("a trust root is not usable: {e}"))?;
                }
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| format!("TLS settings: {e}"))?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                Ok(Arc::new(config))
            })
            .clone()
            .map_err(ApiError::local)
    }

    async fn connect(&self, uri: &Uri) -> Result<Sender, ApiError> {
        let host = uri.host().unwrap_or_default();
        let tls = uri.scheme_str() == Some("https");
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let tcp = tokio::time::timeout(self.connect_timeout, TcpStream::connect((bare, port)))
            .await
            .map_err(|_| {
                ApiError::network(format!(
                    "connecting to {host}:{port} took longer than {:?}",
                    self.connect_timeout
                ))
            })?
            .map_err(|e| ApiError::network(format!("connecting to {host}:{port}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let handshake_failed =
            |e: hyper::Error| ApiError::network(format!("HTTP handshake with {host}:{port}: {e}"));
        if tls {
            let name = rustls::pki_types::ServerName::try_from(bare.to_owned())
                .map_err(|e| ApiError::local(format!("`{host}` is not a TLS server name: {e}")))?;
            let stream = tokio_rustls::TlsConnector::from(self.tls()?)
                .connect(name, tcp)
                .await
                .map_err(|e| {
                    // A certificate not trusted or a protocol refused is not fixed by
                    // trying again; a connection cut during the handshake may be.
                    let refused = e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>());
                    let text = format!("TLS with {host}:{port}: {e}");
                    if refused {
                        ApiError::local(text)
                    } else {
                        ApiError::network(text)
                    }
                })?;
            let (sender, conn) = http1::handshake(TokioIo::new(stream))
                .await
                .map_err(handshake_failed)?;
            tokio::spawn(conn);
            Ok(sender)
        } else {
            let (sender, conn) = http1::handshake(TokioIo::new(tcp))
                .await
                .map_err(handshake_failed)?;
            tokio::spawn(conn);
            Ok(sender)
        }
    }

    fn pooled(&self, origin: &str) -> Option<Sender> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.get_mut(origin)?;
        while let Some(s) = list.pop() {
            if !s.is_closed() {
                return Some(s);
            }
        }
        None
    }

    fn keep(&self, origin: String, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.entry(origin).or_default();
        if list.len() < MAX_IDLE {
            list.push(sender);
        }
    }

    /// Sends `req` (absolute URI) and reads the whole answer. A kept connection that the
    /// server closed meanwhile is replaced by a new one once, without counting as an attempt.
    pub(crate) async fn send(&self, req: Request<Full<Bytes>>) -> Result<Answer, ApiError> {
        let uri = req.uri().clone();
        let origin = format!(
            "{}://{}",
            uri.scheme_str().unwrap_or("http"),
            uri.authority().map(|a| a.as_str()).unwrap_or_default()
        );
        let (parts, body) = req.into_parts();
        let build = |parts: &http::request::Parts, body: &Full<Bytes>| {
            let mut r = Request::new(body.clone());
            *r.method_mut() = parts.method.clone();
            *r.headers_mut() = parts.headers.clone();
            *r.uri_mut() = parts
                .uri
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .parse()
                .unwrap_or_else(|_| Uri::from_static("/"));
            if let Some(a) = parts.uri.authority() {
                r.headers_mut().insert(
                    http::header::HOST,
                    http::HeaderValue::from_str(a.as_str())
                        .unwrap_or(http::HeaderValue::from_static("localhost")),
                );
            }
            r
        };
        let replayable =
            parts.method.is_idempotent() || parts.headers.contains_key("idempotency-key");
        let exchange = async {
            if let Some(mut sender) = self.pooled(&origin)
                && sender.ready().await.is_ok()
            {
                match sender.send_request(build(&parts, &body)).await {
                    Ok(resp) => return self.finish(origin.clone(), sender, resp).await,
                    // Closed by the server before our request went out: a fresh connection
                    // will do. Closed while it went out (the keep-alive race): sent again
                    // only when that is safe (idempotent, or with an Idempotency-Key).
                    Err(e) if e.is_canceled() || e.is_closed() => {}
                    Err(e) if e.is_incomplete_message() && replayable => {}
                    Err(e) => {
                        return Err(ApiError::network(format!("exchange with {origin}: {e}")));
                    }
                }
            }
            let mut sender = self.connect(&uri).await?;
            sender
                .ready()
                .await
                .map_err(|e| ApiError::network(format!("exchange with {origin}: {e}")))?;
            let resp = sender
                .send_request(build(&parts, &body))
                .await
                .map_err(|e| ApiError::network(format!("exchange with {origin}: {e}")))?;
            self.finish(origin.clone(), sender, resp).await
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| {
                ApiError::network(format!(
                    "no whole answer from {origin} within {:?}",
                    self.timeout
                ))
            })?
    }

    async fn finish(
        &self,
        origin: String,
        sender: Sender,
        resp: http::Response<hyper::body::Incoming>,
    ) -> Result<Answer, ApiError> {
        let (parts, body) = resp.into_parts();
        let body = Limited::new(body, self.max_body)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    ApiError::local(format!(
                        "the answer from {origin} is longer than {} bytes (max_body_bytes)",
                        self.max_body
                    ))
                } else {
                    ApiError::network(format!("reading the answer's body from {origin}: {e}"))
                }
            })?
            .to_bytes();
        self.keep(origin, sender);
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}
