//! TLS to `https://` upstreams: rustls with the system's CA bundle or a configured CA
//! file, SNI (the target's host or a configured name), an optional client certificate, and
//! handshake failures in words (which certificate check failed, and why).

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The system's CA bundle (Debian's), used when a route names no `upstream_ca_file`.
pub(crate) const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// How a route's upstream connections are secured.
#[derive(Clone)]
pub struct UpstreamTls {
    pub(crate) config: Arc<rustls::ClientConfig>,
    /// The name sent as SNI and checked against the certificate, when not the target's host.
    pub(crate) server_name: Option<ServerName<'static>>,
    /// The CA file the certificates are checked against, for messages.
    pub(crate) ca_file: PathBuf,
    /// Whether it is the route's own (else the system's bundle).
    pub(crate) own_ca: bool,
    /// Equal for equal settings: connections are pooled per target and setting.
    pub(crate) id: u64,
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("server_name", &self.server_name)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// What a route says about its upstream's TLS.
#[derive(Clone, Debug, Default, Hash)]
pub(crate) struct TlsSettings {
    /// PEM CA certificates to trust instead of the system's.
    pub(crate) ca_file: Option<PathBuf>,
    /// The name to send and check instead of the target's host.
    pub(crate) server_name: Option<String>,
    /// A PEM client certificate chain and its key, to present.
    pub(crate) client_cert: Option<(PathBuf, PathBuf)>,
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    crate::config::read_file(path)
        .map_err(|e| format!("cannot read the {what} {}: {e}", path.display()))
}

/// Builds the client configuration, or says precisely what is wrong with the files.
pub(crate) fn build(s: &TlsSettings) -> Result<UpstreamTls, String> {
    let ca_file = s
        .ca_file
        .clone()
        .unwrap_or_else(|| PathBuf::from(SYSTEM_CA_BUNDLE));
    let pem = read(&ca_file, "CA file")?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()).flatten() {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(format!("{} holds no CA certificate", ca_file.display()));
    }
    let server_name = match &s.server_name {
        Some(n) => Some(
            ServerName::try_from(n.clone())
                .map_err(|_| format!("`{n}` is not a DNS name or an IP address"))?,
        ),
        None => None,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let mut config = match &s.client_cert {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let cert_pem = read(cert, "client certificate")?;
            let chain: Vec<CertificateDer<'static>> =
                rustls_pemfile::certs(&mut cert_pem.as_slice())
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("{}: {e}", cert.display()))?;
            if chain.is_empty() {
                return Err(format!("{} holds no certificate", cert.display()));
            }
            let key_pem = read(key, "client key")?;
            let key_der: PrivateKeyDer<'static> =
                rustls_pemfile::private_key(&mut key_pem.as_slice())
                    .map_err(|e| format!("{}: {e}", key.display()))?
                    .ok_or_else(|| format!("{} holds no private key", key.display()))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| format!("the client certificate and key do not go together: {e}"))?
        }
    };
    // The gateway speaks HTTP/1.1 to upstreams.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let mut h = std::hash::DefaultHasher::new();
    s.hash(&mut h);
    Ok(UpstreamTls {
        config: Arc::new(config),
        server_name,
        ca_file,
        own_ca: s.ca_file.is_some(),
        id: h.finish() | 1,
    })
}

/// A failed TLS handshake in words, for the client: which check failed and which setting
/// to look at, never the name checked nor a file's path (the log has those: see
/// [`log_handshake_failure`]).
pub(crate) fn handshake_failure(e: &std::io::Error, tls: &UpstreamTls) -> String {
    use rustls::{CertificateError, Error};
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<Error>());
    match inner {
        Some(Error::InvalidCertificate(c)) => {
            let why = match c {
                CertificateError::UnknownIssuer if tls.own_ca => {
                    "is not signed by a CA of the route's upstream_ca_file".to_owned()
                }
                CertificateError::UnknownIssuer => {
                    "is not signed by a CA the system trusts (set upstream_ca_file to trust a private CA)".to_owned()
                }
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                    "is not valid for the name it was checked against (the target's host, or upstream_sni)".to_owned()
                }
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    "has expired".to_owned()
                }
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                    "is not valid yet".to_owned()
                }
                CertificateError::Revoked => "is revoked".to_owned(),
                CertificateError::BadEncoding => "cannot be decoded".to_owned(),
                other => format!("was refused ({other:?})"),
            };
            format!("TLS handshake failed: the upstream's certificate {why}")
        }
        Some(Error::AlertReceived(alert)) => format!(
            "TLS handshake failed: the upstream refused the handshake ({alert:?}; a client certificate it wants, or no protocol or cipher in common)"
        ),
        Some(other) => format!("TLS handshake failed: {other}"),
        None if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            "TLS handshake failed: the upstream closed the connection (is it serving TLS on that port?)"
                .to_owned()
        }
        None => format!("TLS handshake failed: {e}"),
    }
}

/// Logs a failed handshake with what the client is not told: the target, the name checked
/// and the CA file.
pub(crate) fn log_handshake_failure(
    e: &std::io::Error,
    tls: &UpstreamTls,
    target: &str,
    name: &str,
) {
    tracing::warn!(
        target: "candor::upstream",
        target = %target,
        name_checked = %name,
        ca_file = %tls.ca_file.display(),
        error = %e,
        "TLS handshake with an upstream failed"
    );
}
