//! TLS termination with rustls from PEM files; ALPN offers h2 and http/1.1.

use crate::config::TlsFiles;
use std::sync::Arc;

/// Builds a rustls server config from the PEM files, or says precisely what is wrong.
pub(crate) fn server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, String> {
    server_config_blaming(files).map_err(|(_, e)| e)
}

/// Like [`server_config`], also saying which setting is at fault: `cert`, `key`, or both
/// (`cert` for a pair that does not match).
pub(crate) fn server_config_blaming(
    files: &TlsFiles,
) -> Result<Arc<rustls::ServerConfig>, (&'static str, String)> {
    let cert_pem = crate::config::read_file(&files.cert).map_err(|e| {
        (
            "cert",
            format!("cannot read certificate {}: {e}", files.cert.display()),
        )
    })?;
    let key_pem = crate::config::read_file(&files.key).map_err(|e| {
        (
            "key",
            format!("cannot read private key {}: {e}", files.key.display()),
        )
    })?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| {
            (
                "cert",
                format!("{} is not valid PEM: {e}", files.cert.display()),
            )
        })?;
    if certs.is_empty() {
        return Err((
            "cert",
            format!("{} holds no CERTIFICATE block", files.cert.display()),
        ));
    }
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| {
            (
                "key",
                format!("{} is not valid PEM: {e}", files.key.display()),
            )
        })?
        .ok_or_else(|| {
            (
                "key",
                format!("{} holds no private key", files.key.display()),
            )
        })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ("cert", format!("TLS setup failed: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            (
                "cert",
                format!("certificate and key do not form a usable pair: {e}"),
            )
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
