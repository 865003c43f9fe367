//! `[server]` and `[server.tls]`: listeners, the public base URL, trusted proxies, drain
//! timeout, TLS files, the operator's catalog, the data directory and the admin token file.

use super::reader::{Problems, TableReader};
use crate::http::address::IpNet;
use candor_catalog::Catalog;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub(super) const SERVER: &[&str] = &[
    "listen",
    "admin_listen",
    "workers",
    "public_base_url",
    "trusted_proxies",
    "drain_timeout",
    "catalog",
    "tls",
    "data_dir",
    "admin_token_file",
    "profile",
];
const TLS: &[&str] = &["cert", "key"];

/// `[server]`
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Where the gateway listens.
    pub listen: SocketAddr,
    /// Where the admin listener listens, if anywhere.
    pub admin_listen: Option<SocketAddr>,
    /// Worker threads; 1 runs a single-threaded runtime.
    pub workers: usize,
    /// Base of the `type` URLs in error bodies.
    pub public_base_url: String,
    /// Peers whose X-Forwarded-* headers are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// How long shutdown waits for in-flight requests.
    pub drain_timeout: Duration,
    /// TLS termination, if configured.
    pub tls: Option<TlsFiles>,
    /// The operator's catalog file, if any.
    pub catalog_file: Option<PathBuf>,
    /// Where accounts, clients and keys are kept (SQLite).
    pub data_dir: PathBuf,
    /// The file holding the admin API's token (default: `<data_dir>/admin.token`).
    pub admin_token_file: Option<PathBuf>,
}

/// `[server.tls]`: PEM files.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// Certificate chain.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
}

/// Reads `[server]`; returns it with the catalog it names (the built-in one if none).
pub(super) fn read(
    top: &TableReader<'_, '_>,
    p: &mut Problems<'_>,
    dir: &Path,
) -> (ServerConfig, Arc<Catalog>) {
    let server = top.table(p, "server", SERVER);
    let listen = server
        .as_ref()
        .and_then(|s| socket_addr(s, p, "listen"))
        .unwrap_or_else(|| "127.0.0.1:8080".parse().expect("valid"));
    let admin_listen = server
        .as_ref()
        .and_then(|s| socket_addr(s, p, "admin_listen"));
    let workers = server
        .as_ref()
        .and_then(|s| s.integer(p, "workers", 1, 256))
        .map_or_else(
            || std::thread::available_parallelism().map_or(1, |n| n.get()),
            |n| n as usize,
        );
    let tls_table = server.as_ref().and_then(|s| s.table(p, "tls", TLS));
    let tls = tls_table.as_ref().and_then(|t| {
        let cert = t.string(p, "cert");
        let key = t.string(p, "key");
        for (name, v) in [("cert", &cert), ("key", &key)] {
            if v.is_none() && t.get(name).is_none() {
                p.at(t.span.clone(), &t.key_path(name), "missing".into())
                    .expected = Some("the path of a PEM file".into());
            }
        }
        let files = TlsFiles {
            cert: dir.join(cert?.0),
            key: dir.join(key?.0),
        };
        p.reads(&files.cert);
        p.reads(&files.key);
        if let Err((which, e)) = crate::http::tls::server_config_blaming(&files) {
            let at = t.get(which).map_or(t.span.clone(), |v| v.span());
            p.at(at, &t.key_path(which), e);
        }
        Some(files)
    });
    if let Some(t) = tls_table {
        t.finish(p);
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    let public_base_url = server
        .as_ref()
        .and_then(|s| {
            let (u, span) = s.string(p, "public_base_url")?;
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                p.at(
                    span,
                    &s.key_path("public_base_url"),
                    format!("`{u}` is not an http(s) URL"),
                );
            }
            Some(u.trim_end_matches('/').to_owned())
        })
        .unwrap_or_else(|| format!("{scheme}://{listen}"));
    let trusted_proxies = server
        .as_ref()
        .and_then(|s| {
            let list = s.strings(p, "trusted_proxies")?;
            let mut nets = Vec::new();
            for (item, span) in list {
                match IpNet::parse(&item) {
                    Ok(n) if n.prefix_len() == 0 => {
                        // Loads, but says what it means.
                        p.notice(
                            span,
                            &s.key_path("trusted_proxies"),
                            format!(
                                "`{item}` trusts every peer: any client can set X-Forwarded-For and be counted, limited and allowed under an address of its choosing"
                            ),
                        );
                        nets.push(n);
                    }
                    Ok(n) => nets.push(n),
                    Err(e) => {
                        p.at(span, &s.key_path("trusted_proxies"), e).expected =
                            Some("an address or CIDR, e.g. \"10.0.0.0/8\"".into());
                    }
                }
            }
            Some(nets)
        })
        .unwrap_or_default();
    let drain_timeout = server
        .as_ref()
        .and_then(|s| s.duration(p, "drain_timeout"))
        .unwrap_or(Duration::from_secs(30));
    let catalog_file = server
        .as_ref()
        .and_then(|s| s.string(p, "catalog").map(|(f, span)| (dir.join(f), span)));
    let catalog = match &catalog_file {
        None => Arc::new(Catalog::builtin().clone()),
        Some((path, span)) => match p.read_to_string(path) {
            Err(e) => {
                p.at(
                    span.clone(),
                    "server.catalog",
                    format!("cannot read {}: {e}", path.display()),
                );
                Arc::new(Catalog::builtin().clone())
            }
            Ok(text) => match Catalog::load(Some((&path.display().to_string(), &text))) {
                Ok(c) => Arc::new(c),
                Err(problems) => {
                    for cp in problems {
                        p.at(span.clone(), "server.catalog", cp.to_string());
                    }
                    Arc::new(Catalog::builtin().clone())
                }
            },
        },
    };
    let admin_token_file = server
        .as_ref()
        .and_then(|s| s.string(p, "admin_token_file"))
        .map(|(f, _)| joined(dir, &f));
    let data_dir = server
        .as_ref()
        .and_then(|s| s.string(p, "data_dir"))
        .map_or_else(|| dir.join("candor-data"), |(d, _)| joined(dir, &d));
    if let Some(s) = server {
        s.finish(p);
    }
    (
        ServerConfig {
            listen,
            admin_listen,
            workers,
            public_base_url,
            trusted_proxies,
            drain_timeout,
            tls,
            catalog_file: catalog_file.map(|(f, _)| f),
            data_dir,
            admin_token_file,
        },
        catalog,
    )
}

/// `dir` joined with `relative`, without `.` segments: a data directory of "." next to
/// `candor-data/candor.toml` is `candor-data`, not `candor-data/.`, in every message.
fn joined(dir: &Path, relative: &str) -> PathBuf {
    let path: PathBuf = dir
        .join(relative)
        .components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect();
    if path.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        path
    }
}

fn socket_addr(t: &TableReader<'_, '_>, p: &mut Problems<'_>, key: &str) -> Option<SocketAddr> {
    let (s, span) = t.string(p, key)?;
    match s.parse() {
        Ok(a) => Some(a),
        Err(_) => {
            p.at(span, &t.key_path(key), format!("`{s}` is not an address"))
                .expected = Some("IP:PORT, e.g. \"127.0.0.1:8080\"".into());
            None
        }
    }
}
