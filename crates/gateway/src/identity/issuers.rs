//! External token issuers: their JWK sets, read from files or fetched over HTTP(S), cached,
//! refreshed periodically and when a token names a key id not yet seen.

use crate::identity::jwk::{self, VerifyingKey};
use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Largest JWK set accepted.
const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Unknown key ids trigger a refetch at most this often per issuer.
const MIN_REFETCH: Duration = Duration::from_secs(30);

/// Where an issuer's keys come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JwksSource {
    /// A local file.
    File(PathBuf),
    /// An `http://` or `https://` URL.
    Url(http::Uri),
}

/// `[[auth.issuers]]`: an identity provider whose tokens routes may accept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalIssuer {
    /// The `iss` its tokens carry.
    pub issuer: String,
    /// The `aud` its tokens must carry for this gateway.
    pub audience: String,
    /// Its JWK set.
    pub jwks: JwksSource,
    /// A PEM file of CA certificates to trust for an https URL (default: the system's).
    pub ca_file: Option<PathBuf>,
    /// The claim naming the account (default `account`).
    pub account_claim: String,
    /// How often to refetch the JWK set.
    pub refresh: Duration,
}

/// Keeps every configured issuer's keys fresh: fetches missing sets every 5 s and the others
/// at their refresh interval. `issuers` gives the current configuration's list.
pub(crate) async fn keep_fresh(keys: Arc<ExternalKeys>, issuers: impl Fn() -> Vec<ExternalIssuer>) {
    loop {
        for issuer in issuers() {
            let due = match keys
                .fetched
                .lock()
                .ok()
                .and_then(|f| f.get(&issuer.issuer).copied())
            {
                None => true,
                Some(at) if keys.keys(&issuer.issuer).is_none() => {
                    at.elapsed() >= Duration::from_secs(5)
                }
                Some(at) => at.elapsed() >= issuer.refresh,
            };
            if due {
                match keys.refresh(&issuer).await {
                    Ok(n) => {
                        tracing::info!(target: "candor::issuers", issuer = %issuer.issuer, keys = n, "JWK set loaded")
                    }
                    Err(e) => {
                        tracing::warn!(target: "candor::issuers", issuer = %issuer.issuer, error = %e, "JWK set not loaded; keeping the previous keys")
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The keys of every external issuer, as last fetched.
#[derive(Debug, Default)]
pub(crate) struct ExternalKeys {
    sets: ArcSwap<HashMap<String, Arc<Vec<VerifyingKey>>>>,
    fetched: Mutex<HashMap<String, Instant>>,
}

impl ExternalKeys {
    /// The keys of `issuer`, if fetched.
    pub(crate) fn keys(&self, issuer: &str) -> Option<Arc<Vec<VerifyingKey>>> {
        self.sets.load().get(issuer).cloned()
    }

    /// Whether `issuer` may be refetched now (for an unknown key id); marks it fetched.
    /// Unknown key ids refetch at most every 30 s (or the issuer's refresh interval if
    /// shorter), so a stream of made-up key ids cannot turn into a stream of fetches.
    pub(crate) fn may_refetch(&self, issuer: &ExternalIssuer) -> bool {
        let Ok(mut f) = self.fetched.lock() else {
            return false;
        };
        match f.get(&issuer.issuer) {
            Some(t) if t.elapsed() < MIN_REFETCH.min(issuer.refresh) => false,
            _ => {
                f.insert(issuer.issuer.clone(), Instant::now());
                true
            }
        }
    }

    /// Fetches `issuer`'s keys and stores them; on failure keeps what it had and says why.
    pub(crate) async fn refresh(&self, issuer: &ExternalIssuer) -> Result<usize, String> {
        if let Ok(mut f) = self.fetched.lock() {
            f.insert(issuer.issuer.clone(), Instant::now());
        }
        let text = fetch(issuer).await?;
        let keys = jwk::parse_set(&text)?;
        let n = keys.len();
        let mut sets = (**self.sets.load()).clone();
        sets.insert(issuer.issuer.clone(), Arc::new(keys));
        self.sets.store(Arc::new(sets));
        Ok(n)
    }
}

async fn fetch(issuer: &ExternalIssuer) -> Result<String, String> {
    match &issuer.jwks {
        JwksSource::File(path) => {
            let path = path.clone();
            tokio::task::spawn_blocking(move || {
                crate::config::read_file_to_string(&path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))
            })
            .await
            .map_err(|e| e.to_string())?
        }
        JwksSource::Url(uri) => {
            tokio::time::timeout(Duration::from_secs(10), get(uri, issuer.ca_file.as_deref()))
                .await
                .map_err(|_| format!("{uri}: no answer within 10 s"))?
        }
    }
}

/// One GET over HTTP/1.1, plain or TLS.
async fn get(uri: &http::Uri, ca_file: Option<&std::path::Path>) -> Result<String, String> {
    let host = uri
        .host()
        .ok_or_else(|| format!("{uri}: no host"))?
        .to_owned();
    let https = uri.scheme_str() == Some("https");
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("{uri}: cannot connect: {e}"))?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let req = http::Request::get(path)
        .header(
            http::header::HOST,
            uri.authority().map_or(host.as_str(), |a| a.as_str()),
        )
        .header(
            http::header::ACCEPT,
            "application/jwk-set+json, application/json",
        )
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = if https {
        let config = client_tls(ca_file)?;
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|e| format!("{uri}: {e}"))?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("{uri}: TLS handshake failed: {e}"))?;
        send(TokioIo::new(tls), req).await
    } else {
        send(TokioIo::new(tcp), req).await
    }
    .map_err(|e| format!("{uri}: {e}"))?;
    Ok(resp)
}

async fn send<IO>(io: IO, req: http::Request<Empty<Bytes>>) -> Result<String, String>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("answered {}", resp.status()));
    }
    let body = Limited::new(resp.into_body(), MAX_JWKS_BYTES)
        .collect()
        .await
        .map_err(|e| format!("reading the body: {e}"))?
        .to_bytes();
    String::from_utf8(body.to_vec()).map_err(|_| "the body is not UTF-8".to_owned())
}

fn client_tls(ca_file: Option<&std::path::Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    let path = ca_file.unwrap_or(std::path::Path::new("/etc/ssl/certs/ca-certificates.crt"));
    let pem = crate::config::read_file(path)
        .map_err(|e| format!("cannot read CA certificates {}: {e}", path.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()).flatten() {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(format!("{} holds no CA certificate", path.display()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}
