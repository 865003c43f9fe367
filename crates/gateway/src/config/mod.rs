//! Configuration: one TOML file, parsed completely before anything is used. Every problem
//! is reported at once, each with line, column, what was expected and a did-you-mean.

mod reader;

pub use reader::did_you_mean;
pub(crate) use reader::edit_distance;

use crate::http::address::IpNet;
use crate::stages::route::PathPattern;
use candor_catalog::Catalog;
use http::Method;
use reader::{Problems, TableReader};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use toml::de::DeTable;

/// The whole, validated configuration, with the files it names already loaded.
#[derive(Clone, Debug)]
pub struct Config {
    /// Listeners and process-wide settings.
    pub server: ServerConfig,
    /// Request size limits.
    pub limits: Limits,
    /// Logging.
    pub log: LogConfig,
    /// Fault injection for operators.
    pub debug: DebugConfig,
    /// Token issuing and checking.
    pub auth: AuthSettings,
    /// The transport policy every route starts from.
    pub access: crate::stages::policy::AccessPolicy,
    /// Routes, in file order.
    pub routes: Vec<RouteConfig>,
    /// The catalog: built-in entries plus the operator's file, if named.
    pub catalog: Arc<Catalog>,
}

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

/// `[limits]`
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Longest accepted request target (path and query), in bytes.
    pub max_uri_bytes: usize,
    /// Largest accepted header section (names and values), in bytes.
    pub max_header_bytes: usize,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_uri_bytes: 8 * 1024,
            max_header_bytes: 32 * 1024,
            max_body_bytes: 10 * 1024 * 1024,
        }
    }
}

/// `[log]`
#[derive(Clone, Copy, Debug)]
pub struct LogConfig {
    /// Log the trail of every request, not only of failed ones.
    pub requests: bool,
}

/// `[auth]`: how candor issues and checks tokens.
#[derive(Clone, Debug)]
pub struct AuthSettings {
    /// `iss` of issued tokens and required of presented ones (default: the public base URL).
    pub issuer: Option<String>,
    /// `aud` of issued tokens and required of presented ones.
    pub audience: String,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// Failed client authentications allowed per window, per client id and per address.
    pub max_failed_attempts: u32,
    /// The window for counting failed attempts.
    pub failed_attempts_window: Duration,
    /// External issuers whose tokens routes may accept.
    pub issuers: Vec<crate::identity::issuers::ExternalIssuer>,
}

/// `[debug]`
#[derive(Clone, Debug, Default)]
pub struct DebugConfig {
    /// Requests to exactly this path panic inside the pipeline: a fault injection to check
    /// that internal errors reach monitoring and that the gateway survives them.
    pub panic_path: Option<String>,
}

/// What a route does with a matched request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteMode {
    /// Forward to the upstream.
    Proxy,
    /// Declared but not implemented: `not_implemented` 501.
    NotImplemented,
    /// Under maintenance: `service_unavailable` 503 with `Retry-After`.
    Maintenance {
        /// Seconds for `Retry-After`.
        retry_after: u64,
        /// When maintenance is expected to end, in words or RFC 3339, if known.
        until: Option<String>,
    },
}

/// Where a route forwards to.
#[derive(Clone, Debug)]
pub struct Upstream {
    /// `http`
    pub scheme: http::uri::Scheme,
    /// host:port
    pub authority: http::uri::Authority,
    /// The authority as a Host header value, made once.
    pub host_header: http::HeaderValue,
    /// Path prefix prepended to the request path ("" for none).
    pub base_path: String,
    /// As written in the config.
    pub display: String,
}

/// `[[routes]]`
#[derive(Clone, Debug)]
pub struct RouteConfig {
    /// Name used in errors and logs.
    pub name: String,
    /// Host the route is limited to (lower case, no port), if any.
    pub host: Option<String>,
    /// The path pattern.
    pub pattern: PathPattern,
    /// Accepted methods; empty means any. HEAD is accepted wherever GET is.
    pub methods: Vec<Method>,
    /// Where to forward (required in proxy mode).
    pub upstream: Option<Upstream>,
    /// How long to wait for the upstream's response headers.
    pub timeout: Duration,
    /// What to do with matched requests.
    pub mode: RouteMode,
    /// Wrap upstream error responses that are not problem documents into the envelope.
    pub wrap_upstream_errors: bool,
    /// Send the client's Host header upstream instead of the upstream's authority.
    pub preserve_host: bool,
    /// Credentials the route requires, if any.
    pub auth: Option<crate::stages::authenticate::AuthConfig>,
    /// The route's transport policy, merged with the global one.
    pub access: crate::stages::policy::AccessPolicy,
}

/// One problem in a configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigProblem {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Dotted key path, e.g. `routes[2].timeout`.
    pub key: String,
    /// What is wrong.
    pub message: String,
    /// What was expected, if that can be said.
    pub expected: Option<String>,
    /// The key or value probably meant.
    pub suggestion: Option<String>,
}

/// Every problem found in a configuration file.
#[derive(Clone, Debug)]
pub struct ConfigReport {
    /// The file's name as given.
    pub file: String,
    /// The problems, in file order.
    pub problems: Vec<ConfigProblem>,
}

impl fmt::Display for ConfigReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        writeln!(
            f,
            "{}: {n} problem{}",
            self.file,
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "  {}:{}:{}: ", self.file, p.line, p.column)?;
            if !p.key.is_empty() {
                write!(f, "{}: ", p.key)?;
            }
            write!(f, "{}", p.message)?;
            if let Some(s) = &p.suggestion {
                write!(f, "; did you mean `{s}`?")?;
            }
            if let Some(e) = &p.expected {
                write!(f, " (expected {e})")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigReport {}

const TOP: &[&str] = &[
    "server", "limits", "log", "debug", "auth", "access", "routes",
];
const ACCESS: &[&str] = &["require_https", "redirect_to_https", "allow", "deny"];
const AUTH: &[&str] = &[
    "issuer",
    "audience",
    "leeway",
    "max_failed_attempts",
    "failed_attempts_window",
    "issuers",
];
const ISSUER: &[&str] = &[
    "issuer",
    "audience",
    "jwks_file",
    "jwks_url",
    "ca_file",
    "account_claim",
    "refresh",
];
const SERVER: &[&str] = &[
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
];
const TLS: &[&str] = &["cert", "key"];
const LIMITS: &[&str] = &["max_uri_bytes", "max_header_bytes", "max_body_bytes"];
const LOG: &[&str] = &["requests"];
const DEBUG: &[&str] = &["panic_path"];
const ROUTE: &[&str] = &[
    "name",
    "host",
    "path",
    "methods",
    "upstream",
    "timeout",
    "mode",
    "retry_after",
    "maintenance_until",
    "wrap_upstream_errors",
    "preserve_host",
    "auth",
    "auth_scheme",
    "scopes",
    "account_param",
    "account_header",
    "api_key_header",
    "api_key_query",
    "issuers",
    "require_https",
    "redirect_to_https",
    "allow",
    "deny",
];
const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE",
];
/// The path prefix where the gateway serves its own error pages.
pub(crate) const ERRORS_PREFIX: &str = "/errors";

impl Config {
    /// Reads and validates the file at `path`; files it names are resolved against its folder.
    pub fn load(path: &Path) -> Result<Config, ConfigReport> {
        let name = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => Config::parse(&name, &text, path.parent().unwrap_or(Path::new("."))),
            Err(e) => Err(ConfigReport {
                file: name,
                problems: vec![ConfigProblem {
                    line: 0,
                    column: 0,
                    key: String::new(),
                    message: format!("cannot read the file: {e}"),
                    expected: None,
                    suggestion: None,
                }],
            }),
        }
    }

    /// Validates configuration `text` named `file`; relative paths resolve against `dir`.
    pub fn parse(file: &str, text: &str, dir: &Path) -> Result<Config, ConfigReport> {
        let mut p = Problems::new(text);
        let (root, syntax) = DeTable::parse_recoverable(text);
        for e in &syntax {
            let span = e.span().unwrap_or(0..0);
            p.at(span, "", format!("TOML syntax: {}", e.message().trim()));
        }
        let config = if syntax.is_empty() {
            let top = TableReader::new(root.get_ref(), root.span(), "", TOP);
            let config = read_config(&top, &mut p, dir);
            top.finish(&mut p);
            Some(config)
        } else {
            None
        };
        let mut problems = p.list;
        problems.sort_by_key(|x| (x.line, x.column));
        match config {
            Some(Some(c)) if problems.is_empty() => Ok(c),
            _ => Err(ConfigReport {
                file: file.to_owned(),
                problems,
            }),
        }
    }

    /// A configuration with no routes: every default.
    pub fn empty() -> Config {
        Config::parse("<defaults>", "", Path::new(".")).expect("defaults are valid")
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

fn read_config(top: &TableReader<'_, '_>, p: &mut Problems<'_>, dir: &Path) -> Option<Config> {
    let before = p.list.len();
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
        if let Err(e) = crate::http::tls::server_config(&files) {
            p.at(t.span.clone(), &t.key_path("cert"), e);
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
        Some((path, span)) => match std::fs::read_to_string(path) {
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
        .map(|(f, _)| dir.join(f));
    let data_dir = server
        .as_ref()
        .and_then(|s| s.string(p, "data_dir"))
        .map_or_else(|| dir.join("candor-data"), |(d, _)| dir.join(d));
    if let Some(s) = server {
        s.finish(p);
    }
    let mut auth = AuthSettings {
        issuer: None,
        audience: "candor".into(),
        leeway: Duration::from_secs(30),
        max_failed_attempts: 5,
        failed_attempts_window: Duration::from_secs(300),
        issuers: Vec::new(),
    };
    if let Some(a) = top.table(p, "auth", AUTH) {
        if let Some((v, _)) = a.string(p, "issuer") {
            auth.issuer = Some(v);
        }
        if let Some((v, _)) = a.string(p, "audience") {
            auth.audience = v;
        }
        if let Some(d) = a.duration(p, "leeway") {
            if d > Duration::from_secs(300) {
                p.at(
                    a.get("leeway").map_or(a.span.clone(), |v| v.span()),
                    "auth.leeway",
                    "is more than 5 minutes; a leeway that large lets expired tokens through"
                        .into(),
                );
            }
            auth.leeway = d;
        }
        if let Some(n) = a.integer(p, "max_failed_attempts", 1, 1000) {
            auth.max_failed_attempts = n as u32;
        }
        if let Some(d) = a.duration(p, "failed_attempts_window") {
            auth.failed_attempts_window = d;
        }
        for t in a.tables(p, "issuers", ISSUER) {
            if let Some(i) = read_issuer(&t, p, dir) {
                if auth.issuers.iter().any(|o| o.issuer == i.issuer)
                    || i.issuer == crate::stages::authenticate::SELF_ISSUER
                {
                    p.at(
                        t.span.clone(),
                        &t.key_path("issuer"),
                        format!(
                            "issuer `{}` is listed twice (or is the reserved word self)",
                            i.issuer
                        ),
                    );
                }
                auth.issuers.push(i);
            }
            t.finish(p);
        }
        a.finish(p);
    }

    let mut limits = Limits::default();
    if let Some(l) = top.table(p, "limits", LIMITS) {
        if let Some(n) = l.integer(p, "max_uri_bytes", 256, 1 << 20) {
            limits.max_uri_bytes = n as usize;
        }
        if let Some(n) = l.integer(p, "max_header_bytes", 1024, 1 << 20) {
            limits.max_header_bytes = n as usize;
        }
        if let Some(n) = l.integer(p, "max_body_bytes", 0, 1 << 40) {
            limits.max_body_bytes = n as u64;
        }
        l.finish(p);
    }
    let mut log = LogConfig { requests: true };
    if let Some(l) = top.table(p, "log", LOG) {
        if let Some(b) = l.boolean(p, "requests") {
            log.requests = b;
        }
        l.finish(p);
    }
    let mut debug = DebugConfig::default();
    if let Some(d) = top.table(p, "debug", DEBUG) {
        debug.panic_path = d.string(p, "panic_path").map(|(s, _)| s);
        d.finish(p);
    }

    let access = match top.table(p, "access", ACCESS) {
        Some(a) => {
            let policy = read_access(&a, p);
            a.finish(p);
            policy
        }
        None => crate::stages::policy::AccessPolicy::default(),
    };
    let mut routes: Vec<RouteConfig> = Vec::new();
    for r in top.tables(p, "routes", ROUTE) {
        if let Some(mut route) = read_route(&r, p, routes.len()) {
            if let Some(a) = &route.auth {
                for i in &a.issuers {
                    if i != crate::stages::authenticate::SELF_ISSUER
                        && !auth.issuers.iter().any(|x| &x.issuer == i)
                    {
                        let known: Vec<&str> = auth
                            .issuers
                            .iter()
                            .map(|x| x.issuer.as_str())
                            .chain([crate::stages::authenticate::SELF_ISSUER])
                            .collect();
                        let problem = p.at(
                            r.get("issuers").map_or(r.span.clone(), |v| v.span()),
                            &r.key_path("issuers"),
                            format!("`{i}` is not a configured issuer"),
                        );
                        problem.suggestion = did_you_mean(i, &known);
                        problem.expected = Some(format!(
                            "self, or the issuer of an [[auth.issuers]] entry ({})",
                            known.join(", ")
                        ));
                    }
                }
            }
            route.access = access.merged(&route.access);
            let clash = routes.iter().find(|o| {
                o.host == route.host
                    && o.pattern.same_shape(&route.pattern)
                    && (o.methods.is_empty()
                        || route.methods.is_empty()
                        || o.methods.iter().any(|m| route.methods.contains(m)))
            });
            if let Some(o) = clash {
                p.at(
                    r.get("path").map_or(r.span.clone(), |v| v.span()),
                    &r.key_path("path"),
                    format!(
                        "route `{}` overlaps route `{}` ({}) for the same methods; the second could never match",
                        route.name,
                        o.name,
                        o.pattern
                    ),
                );
            }
            routes.push(route);
        }
        r.finish(p);
    }

    if p.list.len() > before {
        return None;
    }
    Some(Config {
        server: ServerConfig {
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
        limits,
        log,
        debug,
        auth,
        access,
        routes,
        catalog,
    })
}

fn read_route(r: &TableReader<'_, '_>, p: &mut Problems<'_>, index: usize) -> Option<RouteConfig> {
    let before = p.list.len();
    let name = r
        .string(p, "name")
        .map_or_else(|| format!("routes[{index}]"), |(n, _)| n);
    let host = r.string(p, "host").map(|(h, _)| h.to_ascii_lowercase());
    let pattern = match r.string(p, "path") {
        Some((path, span)) => match PathPattern::parse(&path) {
            Ok(pat) => {
                if pat.to_string() == ERRORS_PREFIX || pat.to_string().starts_with("/errors/") {
                    p.at(
                        span,
                        &r.key_path("path"),
                        format!("{ERRORS_PREFIX}/ is reserved for the gateway's error pages"),
                    );
                }
                Some(pat)
            }
            Err(e) => {
                p.at(span, &r.key_path("path"), e).expected = Some(
                    "a path such as \"/v1/customers/{customer}/devices\" or \"/static/{*rest}\""
                        .into(),
                );
                None
            }
        },
        None => {
            if r.get("path").is_none() {
                p.at(r.span.clone(), &r.key_path("path"), "missing".into())
                    .expected = Some("the route's path pattern".into());
            }
            None
        }
    };
    let mut methods = Vec::new();
    if let Some(list) = r.strings(p, "methods") {
        for (m, span) in list {
            if METHODS.contains(&m.as_str()) {
                methods.push(Method::from_bytes(m.as_bytes()).expect("known method"));
            } else {
                let problem = p.at(
                    span,
                    &r.key_path("methods"),
                    format!("`{m}` is not an HTTP method"),
                );
                problem.suggestion = did_you_mean(&m.to_ascii_uppercase(), METHODS);
                problem.expected = Some(format!("one of {}", METHODS.join(", ")));
            }
        }
    }
    let mode_word = r.string(p, "mode");
    let retry_after = r.integer(p, "retry_after", 0, 86_400 * 7).unwrap_or(300) as u64;
    let until = r.string(p, "maintenance_until").map(|(s, _)| s);
    let mut mode_known = true;
    let mode = match mode_word.as_ref().map(|(m, s)| (m.as_str(), s)) {
        None | Some(("proxy", _)) => RouteMode::Proxy,
        Some(("not_implemented", _)) => RouteMode::NotImplemented,
        Some(("maintenance", _)) => RouteMode::Maintenance { retry_after, until },
        Some((other, span)) => {
            let modes = &["proxy", "not_implemented", "maintenance"];
            let problem = p.at(
                span.clone(),
                &r.key_path("mode"),
                format!("unknown mode `{other}`"),
            );
            problem.suggestion = did_you_mean(other, modes);
            problem.expected = Some("proxy, not_implemented or maintenance".into());
            mode_known = false;
            RouteMode::Proxy
        }
    };
    let upstream = match r.string(p, "upstream") {
        Some((u, span)) => match parse_upstream(&u) {
            Ok(up) => Some(up),
            Err(e) => {
                p.at(span, &r.key_path("upstream"), e).expected =
                    Some("an http URL such as \"http://127.0.0.1:9000\"".into());
                None
            }
        },
        None => {
            if mode == RouteMode::Proxy && mode_known && r.get("upstream").is_none() {
                p.at(
                    r.span.clone(),
                    &r.key_path("upstream"),
                    format!("route `{name}` forwards requests but has no upstream"),
                )
                .expected =
                    Some("an upstream URL, or mode = \"not_implemented\" / \"maintenance\"".into());
            }
            None
        }
    };
    let timeout = r.duration(p, "timeout").unwrap_or(Duration::from_secs(60));
    if timeout.is_zero() {
        p.at(
            r.get("timeout").map_or(r.span.clone(), |v| v.span()),
            &r.key_path("timeout"),
            "must be more than zero".into(),
        );
    }
    let auth = read_route_auth(r, p, pattern.as_ref());
    let access = read_access(r, p);
    let wrap_upstream_errors = r.boolean(p, "wrap_upstream_errors").unwrap_or(false);
    let preserve_host = r.boolean(p, "preserve_host").unwrap_or(false);
    if p.list.len() > before {
        return None;
    }
    Some(RouteConfig {
        name,
        host,
        pattern: pattern?,
        methods,
        upstream,
        timeout,
        mode,
        wrap_upstream_errors,
        preserve_host,
        auth,
        access,
    })
}

fn read_access(
    t: &TableReader<'_, '_>,
    p: &mut Problems<'_>,
) -> crate::stages::policy::AccessPolicy {
    let mut nets = |key: &str| -> Vec<IpNet> {
        let mut out = Vec::new();
        for (item, span) in t.strings(p, key).unwrap_or_default() {
            match IpNet::parse(&item) {
                Ok(n) => out.push(n),
                Err(e) => {
                    p.at(span, &t.key_path(key), e).expected =
                        Some("an address or CIDR, e.g. \"10.0.0.0/8\"".into());
                }
            }
        }
        out
    };
    let allow = nets("allow");
    let deny = nets("deny");
    crate::stages::policy::AccessPolicy {
        require_https: t.boolean(p, "require_https").unwrap_or(false),
        redirect_to_https: t.boolean(p, "redirect_to_https").unwrap_or(false),
        allow,
        deny,
    }
}

fn read_route_auth(
    r: &TableReader<'_, '_>,
    p: &mut Problems<'_>,
    pattern: Option<&PathPattern>,
) -> Option<crate::stages::authenticate::AuthConfig> {
    use crate::stages::authenticate::{AccountSource, ApiKeySource, AuthConfig};
    let kind = r.string(p, "auth");
    let key_header = r.string(p, "api_key_header");
    let key_query = r.string(p, "api_key_query");
    let issuers = r.strings(p, "issuers");
    let scheme = r.string(p, "auth_scheme");
    let scopes = r.strings(p, "scopes");
    let account_param = r.string(p, "account_param");
    let account_header = r.string(p, "account_header");
    let (enabled, api_key) = match &kind {
        None => (false, false),
        Some((k, _)) if k == "none" => (false, false),
        Some((k, _)) if k == "bearer" => (true, false),
        Some((k, _)) if k == "api_key" => (true, true),
        Some((k, span)) => {
            let problem = p.at(
                span.clone(),
                &r.key_path("auth"),
                format!("unknown auth `{k}`"),
            );
            problem.suggestion = did_you_mean(k, &["bearer", "api_key", "none"]);
            problem.expected = Some("\"bearer\", \"api_key\" or \"none\"".into());
            return None;
        }
    };
    for (key, v) in [
        ("api_key_header", &key_header),
        ("api_key_query", &key_query),
    ] {
        if let Some((_, span)) = v
            && !api_key
        {
            p.at(
                span.clone(),
                &r.key_path(key),
                format!("{key} needs auth = \"api_key\" on this route"),
            );
        }
    }
    if let (Some(_), Some((_, span))) = (&key_header, &key_query) {
        p.at(
            span.clone(),
            &r.key_path("api_key_query"),
            "a route reads its API key from a header or a query parameter, not both".into(),
        );
    }
    let api_key = api_key.then(|| match (&key_header, &key_query) {
        (_, Some((q, _))) => ApiKeySource::Query(q.clone()),
        (Some((h, _)), None) => ApiKeySource::Header(h.to_ascii_lowercase()),
        (None, None) => ApiKeySource::Header("x-api-key".into()),
    });
    if !enabled {
        for (key, present) in [
            ("auth_scheme", scheme.is_some()),
            ("scopes", scopes.is_some()),
            ("account_param", account_param.is_some()),
            ("account_header", account_header.is_some()),
        ] {
            if present {
                p.at(
                    r.get(key).map_or(r.span.clone(), |v| v.span()),
                    &r.key_path(key),
                    format!("{key} needs auth = \"bearer\" on this route"),
                );
            }
        }
        return None;
    }
    let scheme = match scheme {
        Some((s, span)) => {
            let s = s.trim_end_matches(':').to_owned();
            if s.is_empty()
                || !s
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            {
                p.at(
                    span,
                    &r.key_path("auth_scheme"),
                    format!("`{s}` is not a scheme word"),
                )
                .expected = Some("a word such as \"Bearer\" or \"TOK\"".into());
            }
            s
        }
        None => "Bearer".to_owned(),
    };
    let account = match (account_param, account_header) {
        (Some(_), Some((_, span))) => {
            p.at(
                span,
                &r.key_path("account_header"),
                "a route names its account in a path parameter or a header, not both".into(),
            );
            None
        }
        (Some((name, span)), None) => {
            let known = pattern.is_some_and(|pat| pat.to_string().contains(&format!("{{{name}}}")));
            if pattern.is_some() && !known {
                p.at(
                    span,
                    &r.key_path("account_param"),
                    format!("the path has no parameter {{{name}}}"),
                );
            }
            Some(AccountSource::PathParam(name))
        }
        (None, Some((name, span))) => {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                p.at(
                    span,
                    &r.key_path("account_header"),
                    format!("`{name}` is not a header name"),
                );
            }
            Some(AccountSource::Header(name.to_ascii_lowercase()))
        }
        (None, None) => None,
    };
    Some(AuthConfig {
        scheme,
        scopes: scopes
            .map(|v| v.into_iter().map(|(s, _)| s).collect())
            .unwrap_or_default(),
        account,
        api_key,
        issuers: issuers.map_or_else(
            || vec![crate::stages::authenticate::SELF_ISSUER.to_owned()],
            |v| v.into_iter().map(|(s, _)| s).collect(),
        ),
    })
}

fn read_issuer(
    t: &TableReader<'_, '_>,
    p: &mut Problems<'_>,
    dir: &Path,
) -> Option<crate::identity::issuers::ExternalIssuer> {
    use crate::identity::issuers::{ExternalIssuer, JwksSource};
    let before = p.list.len();
    let issuer = t.string(p, "issuer").map(|(s, _)| s);
    let audience = t.string(p, "audience").map(|(s, _)| s);
    for (key, v) in [("issuer", &issuer), ("audience", &audience)] {
        if v.is_none() && t.get(key).is_none() {
            p.at(t.span.clone(), &t.key_path(key), "missing".into());
        }
    }
    let file = t.string(p, "jwks_file");
    let url = t.string(p, "jwks_url");
    let jwks = match (file, url) {
        (Some((f, _)), None) => Some(JwksSource::File(dir.join(f))),
        (None, Some((u, span))) => match u.parse::<http::Uri>() {
            Ok(uri)
                if matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some() =>
            {
                Some(JwksSource::Url(uri))
            }
            _ => {
                p.at(
                    span,
                    &t.key_path("jwks_url"),
                    format!("`{u}` is not an http(s) URL"),
                )
                .expected =
                    Some("a URL such as \"https://idp.example.com/.well-known/jwks.json\"".into());
                None
            }
        },
        (Some(_), Some((_, span))) => {
            p.at(
                span,
                &t.key_path("jwks_url"),
                "an issuer's keys come from jwks_file or jwks_url, not both".into(),
            );
            None
        }
        (None, None) => {
            p.at(
                t.span.clone(),
                &t.key_path("jwks_url"),
                "missing: an issuer needs jwks_file or jwks_url".into(),
            );
            None
        }
    };
    let ca_file = t.string(p, "ca_file").map(|(f, _)| dir.join(f));
    let account_claim = t
        .string(p, "account_claim")
        .map_or_else(|| "account".to_owned(), |(s, _)| s);
    let refresh = t.duration(p, "refresh").unwrap_or(Duration::from_secs(600));
    if p.list.len() > before {
        return None;
    }
    Some(ExternalIssuer {
        issuer: issuer?,
        audience: audience?,
        jwks: jwks?,
        ca_file,
        account_claim,
        refresh,
    })
}

fn parse_upstream(s: &str) -> Result<Upstream, String> {
    let uri: http::Uri = s.parse().map_err(|_| format!("`{s}` is not a URL"))?;
    let scheme = uri
        .scheme()
        .cloned()
        .ok_or_else(|| format!("`{s}` has no scheme"))?;
    if scheme != http::uri::Scheme::HTTP {
        return Err(format!(
            "`{scheme}` upstreams are not supported yet; only http:// (TLS to upstreams is planned)"
        ));
    }
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| format!("`{s}` has no host"))?;
    if uri.query().is_some() {
        return Err(format!(
            "`{s}` has a query string; an upstream is a base URL"
        ));
    }
    let host_header = http::HeaderValue::from_str(authority.as_str())
        .map_err(|_| format!("`{s}` has a host that is not a valid Host header"))?;
    Ok(Upstream {
        scheme,
        host_header,
        authority,
        base_path: uri.path().trim_end_matches('/').to_owned(),
        display: s.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<Config, ConfigReport> {
        Config::parse("t.toml", text, Path::new("."))
    }

    #[test]
    fn a_full_config_parses() {
        let c = check(
            r#"
[server]
listen = "127.0.0.1:9999"
workers = 1
trusted_proxies = ["10.0.0.0/8"]
drain_timeout = "5s"

[limits]
max_uri_bytes = 1024

[[routes]]
name = "devices"
path = "/v1/customers/{customer}/devices"
methods = ["GET", "POST"]
upstream = "http://127.0.0.1:9000/api/"
timeout = "2s"

[[routes]]
name = "reports"
path = "/v1/reports"
mode = "maintenance"
retry_after = 120
"#,
        )
        .unwrap();
        assert_eq!(c.server.listen.port(), 9999);
        assert_eq!(c.server.public_base_url, "http://127.0.0.1:9999");
        assert_eq!(c.routes[0].upstream.as_ref().unwrap().base_path, "/api");
        assert_eq!(c.routes[0].timeout, Duration::from_secs(2));
        assert_eq!(c.limits.max_uri_bytes, 1024);
        assert!(matches!(
            c.routes[1].mode,
            RouteMode::Maintenance {
                retry_after: 120,
                ..
            }
        ));
    }

    #[test]
    fn every_problem_is_reported_with_position_and_suggestion() {
        let report = check(
            r#"[server]
listen = "nowhere"
wrokers = 2

[[routes]]
path = "/v1/{id"
methdos = ["GET"]
upstream = "ftp://x"

[[routes]]
path = "/ok"
methods = ["GTE"]
timeout = "soon"
mode = "maintainance"
"#,
        )
        .unwrap_err();
        let text = report.to_string();
        assert!(text.starts_with("t.toml: 8 problems"), "{text}");
        assert!(
            text.contains("t.toml:2:10: server.listen: `nowhere` is not an address"),
            "{text}"
        );
        assert!(
            text.contains(
                "t.toml:3:1: server.wrokers: unknown key `wrokers`; did you mean `workers`?"
            ),
            "{text}"
        );
        assert!(text.contains("t.toml:6:8: routes[0].path:"), "{text}");
        assert!(
            text.contains("routes[0].methdos: unknown key `methdos`; did you mean `methods`?"),
            "{text}"
        );
        assert!(
            text.contains("`ftp` upstreams are not supported yet"),
            "{text}"
        );
        assert!(
            text.contains("`GTE` is not an HTTP method; did you mean `GET`?"),
            "{text}"
        );
        assert!(text.contains("\"soon\" is not a duration"), "{text}");
        assert!(
            text.contains("unknown mode `maintainance`; did you mean `maintenance`?"),
            "{text}"
        );
    }

    #[test]
    fn syntax_errors_have_positions() {
        let report = check("[server]\nlisten = \n").unwrap_err();
        assert_eq!(report.problems[0].line, 2);
        assert!(report.problems[0].message.starts_with("TOML syntax"));
    }

    #[test]
    fn overlapping_routes_are_refused() {
        let report = check(
            "[[routes]]\npath = \"/a/{x}\"\nupstream = \"http://127.0.0.1:1\"\n[[routes]]\npath = \"/a/{y}\"\nupstream = \"http://127.0.0.1:1\"\n",
        )
        .unwrap_err();
        assert!(report.to_string().contains("overlaps route"), "{report}");
    }

    #[test]
    fn proxy_route_needs_an_upstream() {
        let report = check("[[routes]]\nname = \"x\"\npath = \"/a\"\n").unwrap_err();
        assert!(
            report
                .to_string()
                .contains("route `x` forwards requests but has no upstream")
        );
    }
}
