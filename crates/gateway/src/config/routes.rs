//! `[[routes]]`: each route's host, path, methods, upstream, mode, credentials and policy,
//! read into the route stage's `RouteConfig`; overlapping routes and reserved paths are
//! refused here.

use super::auth::AuthSettings;
use super::did_you_mean;
use super::reader::{Problems, TableReader};
use crate::stages::negotiate::{MediaType, Negotiation};
use crate::stages::policy::AccessPolicy;
use crate::stages::route::PathPattern;
pub(crate) use crate::stages::route::{RouteConfig, RouteMode};
pub(crate) use crate::upstream::Upstream;
use http::Method;
use std::time::Duration;

pub(super) const ROUTE: &[&str] = &[
    "name",
    "host",
    "path",
    "methods",
    "upstream",
    "upstream_name",
    "timeout",
    "max_connections",
    "max_queue",
    "mode",
    "retry_after",
    "maintenance_until",
    "wrap_upstream_errors",
    "preserve_host",
    "accepts",
    "produces",
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
    "max_body_bytes",
    "validate",
    "rate_limits",
    "rate_limit_headers",
    "balance",
    "connect_timeout",
    "retries",
    "retry_on",
    "retry_backoff",
    "retry_budget",
    "eject_after",
    "ejection_time",
    "max_ejected_percent",
    "health_check",
    "upstream_ca_file",
    "upstream_sni",
    "upstream_client_cert",
    "upstream_client_key",
    "rate_limit_status",
    "quota_status",
    "profile",
];
const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE",
];
/// The path prefix where the gateway serves its own error pages.
pub(crate) const ERRORS_PREFIX: &str = "/errors";

/// What the gateway serves at `path` itself, if anything: those paths are built-in routes
/// at the head of the route table, and a configured route there could never match.
fn reserved(path: &str) -> Option<String> {
    use crate::identity::token_endpoint::{JWKS_PATH, TOKEN_PATH};
    if path == ERRORS_PREFIX || path.starts_with("/errors/") {
        Some(format!("the gateway's error pages ({ERRORS_PREFIX}/)"))
    } else if path == TOKEN_PATH {
        Some(format!("the gateway's token endpoint ({TOKEN_PATH})"))
    } else if path == JWKS_PATH {
        Some(format!("the gateway's JWK set ({JWKS_PATH})"))
    } else {
        None
    }
}

/// Adds `route` to `routes` once its issuers are known and it can be reached: no earlier
/// route takes the same requests (`derived`: none covers its path; a route of `[[routes]]`:
/// none has its shape). A route with problems of its own (`loaded` false) is checked and
/// kept too, marked, so that the file's every clash is reported in the same pass.
#[allow(clippy::too_many_arguments)]
fn admit(
    mut route: RouteConfig,
    loaded: bool,
    r: &TableReader<'_, '_>,
    p: &mut Problems<'_>,
    access: &AccessPolicy,
    auth: &AuthSettings,
    routes: &mut Vec<(RouteConfig, bool)>,
    derived: bool,
) {
    if let Some(a) = &route.auth {
        for i in &a.issuers {
            if i != crate::stages::authenticate::SELF_ISSUER
                && !auth.issuers.iter().any(|x| &x.issuer == i)
                && !auth.unloaded_issuers.contains(i)
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
    // A route's name is what its errors, logs, rate-limit counts and target health are
    // kept under: two routes of one name would share them.
    if routes.iter().any(|(o, _)| o.name == route.name) {
        let (span, key) = match r.get("name") {
            Some(v) => (v.span(), r.key_path("name")),
            None => (r.span.clone(), r.key_path("")),
        };
        p.at(
            span,
            key.trim_end_matches('.'),
            format!(
                "a route named `{}` is already declared; routes share their name's counts, health and logs",
                route.name
            ),
        )
        .expected = Some("a name of its own for each route".into());
    }
    let clash = routes.iter().map(|(o, _)| o).find(|o| {
        (o.host == route.host || (derived && o.host.is_none()))
            && if derived {
                o.pattern.covers(&route.pattern)
            } else {
                o.pattern.same_shape(&route.pattern)
            }
            && (o.methods.is_empty()
                || route.methods.is_empty()
                || o.methods.iter().any(|m| route.methods.contains(m)))
    });
    if let Some(o) = clash {
        let (span, key) = if derived {
            (r.span.clone(), r.key_path(""))
        } else {
            (
                r.get("path").map_or(r.span.clone(), |v| v.span()),
                r.key_path("path"),
            )
        };
        p.at(
            span,
            key.trim_end_matches('.'),
            format!(
                "route `{}` overlaps route `{}` ({}) for the same methods; the second could never match",
                route.name, o.name, o.pattern
            ),
        );
    }
    routes.push((route, loaded));
}

/// Reads every `[[routes]]` table, merging each route's policy into `access`.
pub(super) fn read(
    top: &TableReader<'_, '_>,
    p: &mut Problems<'_>,
    access: &AccessPolicy,
    auth: &AuthSettings,
    dir: &std::path::Path,
    max_body_bytes: u64,
    profiles: (&crate::stages::respond::Profiles, &candor_catalog::Catalog),
) -> Vec<RouteConfig> {
    // Every route whose path could be read, with whether it loaded without a problem.
    let mut routes: Vec<(RouteConfig, bool)> = Vec::new();
    for (index, r) in top.tables(p, "routes", ROUTE).into_iter().enumerate() {
        if let Some((route, loaded)) = read_route(&r, p, index, dir, max_body_bytes, None)
            .map(|(route, loaded)| with_profile(route, loaded, &r, p, profiles))
        {
            admit(route, loaded, &r, p, access, auth, &mut routes, false);
        }
        r.finish(p);
    }
    // Then each OpenAPI document's operations, concrete paths before templated ones.
    let none = toml::de::DeTable::new();
    for entry in top.tables(p, "openapi", &super::openapi::OPENAPI) {
        let derived = super::openapi::read(&entry, p, dir);
        let loaded = derived.is_some();
        let overrides = entry.table(p, "operations", &[]);
        let mut named: Vec<String> = Vec::new();
        for d in derived.into_iter().flatten() {
            let own = overrides
                .as_ref()
                .and_then(|o| o.any_table(p, &d.name, &super::openapi::OPERATION));
            let r = own
                .unwrap_or_else(|| {
                    TableReader::new(
                        &none,
                        entry.span.clone(),
                        &entry.key_path(&format!("operations.{}", d.name)),
                        &super::openapi::OPERATION,
                    )
                })
                .with_fallback(&entry);
            named.push(d.name.clone());
            if let Some((route, loaded)) =
                read_route(&r, p, routes.len(), dir, max_body_bytes, Some(d))
                    .map(|(route, loaded)| with_profile(route, loaded, &r, p, profiles))
            {
                admit(route, loaded, &r, p, access, auth, &mut routes, true);
            }
            r.finish(p);
        }
        if let Some(o) = overrides.filter(|_| loaded) {
            let names: Vec<&str> = named.iter().map(String::as_str).collect();
            o.unknown_tables(p, &names, "an operationId of the document");
        }
        entry.finish(p);
    }
    routes
        .into_iter()
        .filter_map(|(route, loaded)| loaded.then_some(route))
        .collect()
}

/// The route with its `profile`, checked: a profile that exists and answers every code.
fn with_profile(
    mut route: RouteConfig,
    loaded: bool,
    r: &TableReader<'_, '_>,
    p: &mut Problems<'_>,
    (profiles, catalog): (&crate::stages::respond::Profiles, &candor_catalog::Catalog),
) -> (RouteConfig, bool) {
    let Some((name, span)) = r.string(p, "profile") else {
        return (route, loaded);
    };
    let before = p.list.len();
    route.profile =
        super::profiles::resolve(profiles, p, catalog, &name, span, &r.key_path("profile"));
    (route, loaded && p.list.len() == before)
}

/// One route, and whether it loaded without a problem; `None` only when its path could
/// not be read (a route with other problems is still checked against the others).
fn read_route(
    r: &TableReader<'_, '_>,
    p: &mut Problems<'_>,
    index: usize,
    dir: &std::path::Path,
    global_max_body: u64,
    derived: Option<super::openapi::Derived>,
) -> Option<(RouteConfig, bool)> {
    let before = p.list.len();
    let host = r.string(p, "host").map(|(h, _)| h.to_ascii_lowercase());
    let (name, pattern, methods, security, derived) = match derived {
        Some(d) => {
            let pattern = d.pattern.clone();
            if let Some(what) = reserved(&pattern.to_string()) {
                p.at(
                    r.span.clone(),
                    &r.key_path(""),
                    format!("the path {pattern} of {} is reserved for {what}", d.pointer),
                );
            }
            (
                d.name.clone(),
                Some(pattern),
                vec![d.method.clone()],
                Some(d.security.clone()),
                Some(d),
            )
        }
        None => {
            let name = r
                .string(p, "name")
                .map_or_else(|| format!("routes[{index}]"), |(n, _)| n);
            let (pattern, methods) = read_path_and_methods(r, p);
            (name, pattern, methods, None, None)
        }
    };
    let mode_word = r.string(p, "mode");
    let retry_after = r
        .duration_in(
            p,
            "retry_after",
            std::time::Duration::ZERO,
            std::time::Duration::from_secs(86_400 * 7),
        )
        .map_or(300, |d| d.as_secs());
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
    let max_connections = r.integer(p, "max_connections", 1, 100_000);
    let max_queue = r.integer(p, "max_queue", 0, 100_000);
    let upstream_name = upstream_name(r, p);
    let urls = match r.get("upstream").map(|v| v.get_ref()) {
        Some(toml::de::DeValue::Array(_)) => r.strings(p, "upstream"),
        _ => r.string(p, "upstream").map(|u| vec![u]),
    };
    let upstream = match urls {
        Some(list) => {
            let span = r.get("upstream").map_or(r.span.clone(), |v| v.span());
            let texts: Vec<String> = list.into_iter().map(|(u, _)| u).collect();
            match parse_upstream_list(&texts) {
                Ok(mut up) => {
                    if let Some(n) = max_connections {
                        up.max_connections = n as usize;
                    }
                    if let Some(n) = max_queue {
                        up.max_queue = n as usize;
                    }
                    up.route = name.as_str().into();
                    crate::upstream::label_targets(&mut up.targets, upstream_name.as_deref());
                    super::upstreams::tune(r, p, &mut up, dir);
                    Some(up)
                }
                Err(e) => {
                    p.at(span, &r.key_path("upstream"), e).expected = Some(
                        "an http:// or https:// URL such as \"http://127.0.0.1:9000\", or a list of them sharing scheme and base path".into(),
                    );
                    None
                }
            }
        }
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
    let auth = read_route_auth(r, p, pattern.as_ref(), security.as_ref());
    let limits = super::rate_limits::read(r, p, auth.as_ref());
    let access = super::access::read(r, p);
    let own_types = |p: &mut Problems<'_>, key: &str, range: bool, from: Vec<MediaType>| {
        if r.get(key).is_some() {
            media_types(r, p, key, range)
        } else {
            from
        }
    };
    let (accepts, produces) = derived.as_ref().map_or_else(Default::default, |d| {
        (
            d.negotiation.accepts.clone(),
            d.negotiation.produces.clone(),
        )
    });
    let mut negotiation = Negotiation {
        accepts: own_types(p, "accepts", true, accepts),
        produces: own_types(p, "produces", false, produces),
    };
    let api_key_query = auth.as_ref().and_then(|a| match &a.api_key {
        Some(crate::stages::authenticate::ApiKeySource::Query(q)) => Some(q.clone()),
        _ => None,
    });
    let contract = match derived {
        Some(d) => {
            let mut c = d.contract;
            super::contract::tune(r, p, &mut c);
            c.also_allowed = api_key_query.into_iter().collect();
            let checks = !c.params.is_empty() || c.body.is_some() || c.refuse_unknown_query;
            checks.then(|| std::sync::Arc::new(c))
        }
        None => super::contract::read(
            r,
            p,
            dir,
            pattern.as_ref(),
            &mut negotiation,
            api_key_query.as_deref(),
        )
        .map(std::sync::Arc::new),
    };
    let max_body_bytes = r.integer(p, "max_body_bytes", 0, 1 << 40).map(|n| n as u64);
    if let Some(n) = max_body_bytes
        && n > global_max_body
    {
        p.at(
            r.get("max_body_bytes").map_or(r.span.clone(), |v| v.span()),
            &r.key_path("max_body_bytes"),
            format!(
                "{n} is over limits.max_body_bytes ({global_max_body}), which every request is held to first"
            ),
        )
        .expected = Some(format!("at most {global_max_body}, or raise limits.max_body_bytes"));
    }
    let wrap_upstream_errors = r.boolean(p, "wrap_upstream_errors").unwrap_or(false);
    let preserve_host = r.boolean(p, "preserve_host").unwrap_or(false);
    let loaded = p.list.len() == before;
    let route = RouteConfig {
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
        negotiation,
        contract,
        max_body_bytes,
        limits,
        profile: None,
    };
    Some((route, loaded))
}

/// A `[[routes]]` table's path pattern and methods.
fn read_path_and_methods(
    r: &TableReader<'_, '_>,
    p: &mut Problems<'_>,
) -> (Option<PathPattern>, Vec<Method>) {
    let pattern = match r.string(p, "path") {
        Some((path, span)) => match PathPattern::parse(&path) {
            Ok(pat) => {
                if let Some(what) = reserved(&pat.to_string()) {
                    p.at(span, &r.key_path("path"), format!("is reserved for {what}"));
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
    (pattern, methods)
}

/// A list of media types (`accepts` may name ranges such as `text/*`).
fn media_types(
    r: &TableReader<'_, '_>,
    p: &mut Problems<'_>,
    key: &str,
    range: bool,
) -> Vec<MediaType> {
    let mut out = Vec::new();
    for (text, span) in r.strings(p, key).unwrap_or_default() {
        match MediaType::parse(&text, range) {
            Ok(t) => out.push(t),
            Err(e) => {
                p.at(span, &r.key_path(key), e).expected = Some(if range {
                    "media types such as \"application/json\" or \"text/*\"".into()
                } else {
                    "media types such as \"application/json\"".into()
                });
            }
        }
    }
    out
}

fn read_route_auth(
    r: &TableReader<'_, '_>,
    p: &mut Problems<'_>,
    pattern: Option<&PathPattern>,
    derived: Option<&super::openapi::Security>,
) -> Option<crate::stages::authenticate::AuthConfig> {
    use super::openapi::Security;
    use crate::stages::authenticate::{AccountSource, ApiKeySource, AuthConfig};
    let own = r.string(p, "auth");
    // What the document says, where the table does not say how the route authenticates.
    let d = if own.is_none() { derived } else { None };
    let at = || r.span.clone();
    let kind = own.or_else(|| {
        d.map(|s| {
            let k = match s {
                Security::None => "none",
                Security::Bearer(_) => "bearer",
                Security::ApiKeyHeader(_) | Security::ApiKeyQuery(_) => "api_key",
            };
            (k.to_owned(), at())
        })
    });
    let key_header = r.string(p, "api_key_header").or_else(|| match d {
        Some(Security::ApiKeyHeader(h)) => Some((h.clone(), at())),
        _ => None,
    });
    let key_query = r.string(p, "api_key_query").or_else(|| match d {
        Some(Security::ApiKeyQuery(q)) if r.get("api_key_header").is_none() => {
            Some((q.clone(), at()))
        }
        _ => None,
    });
    let issuers = r.strings(p, "issuers");
    let scheme = r.string(p, "auth_scheme");
    let scopes = r.strings(p, "scopes").or_else(|| match d {
        Some(Security::Bearer(s)) if !s.is_empty() => {
            Some(s.iter().map(|x| (x.clone(), at())).collect())
        }
        _ => None,
    });
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
    if let Some((name, span)) = &key_header
        && http::HeaderName::from_bytes(name.as_bytes()).is_err()
    {
        p.at(
            span.clone(),
            &r.key_path("api_key_header"),
            format!("`{name}` is not a header name"),
        )
        .expected = Some("a header name such as \"X-Api-Key\"".into());
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
        // As spelled, for the details that name it; header names match in any case.
        (Some((h, _)), None) => ApiKeySource::Header(h.clone()),
        (None, None) => ApiKeySource::Header("X-Api-Key".into()),
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

/// `upstream_name`: what clients are told the upstream is called (its addresses stay in the
/// log and on the admin listener).
fn upstream_name(r: &TableReader<'_, '_>, p: &mut Problems<'_>) -> Option<String> {
    let (n, span) = r.string(p, "upstream_name")?;
    let ok = !n.is_empty()
        && n.len() <= 64
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_. ".contains(&b));
    if !ok {
        p.at(
            span,
            &r.key_path("upstream_name"),
            format!("`{n}` is not a name clients can be shown"),
        )
        .expected = Some(
            "1 to 64 letters, digits, spaces, '-', '_' or '.', such as \"devices-api\"".into(),
        );
        return None;
    }
    if n.parse::<std::net::IpAddr>().is_ok() {
        p.at(
            span,
            &r.key_path("upstream_name"),
            format!(
                "`{n}` is an address; the name is what clients see instead of the upstream's addresses"
            ),
        )
        .expected = Some("a name such as \"devices-api\"".into());
        return None;
    }
    Some(n)
}

/// One target URL: its address, base path and whether it is https.
fn parse_target(s: &str) -> Result<(crate::upstream::Target, String, bool), String> {
    let uri: http::Uri = s.parse().map_err(|_| format!("`{s}` is not a URL"))?;
    let scheme = uri
        .scheme()
        .cloned()
        .ok_or_else(|| format!("`{s}` has no scheme"))?;
    let https = scheme == http::uri::Scheme::HTTPS;
    if !https && scheme != http::uri::Scheme::HTTP {
        return Err(format!("`{scheme}` is not a scheme an upstream can have"));
    }
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| format!("`{s}` has no host"))?;
    if authority.as_str().contains('@') {
        // A password here would be shown in errors, logs and /upstreams, and sent as the Host.
        let host = authority.as_str().rsplit('@').next().unwrap_or("");
        return Err(format!(
            "`{scheme}://…@{host}` carries credentials; an upstream URL may not (they would be shown in errors, logs and /upstreams, and sent as its Host)"
        ));
    }
    if uri.query().is_some() {
        return Err(format!(
            "`{s}` has a query string; an upstream is a base URL"
        ));
    }
    let host_header = http::HeaderValue::from_str(authority.as_str())
        .map_err(|_| format!("`{s}` has a host that is not a valid Host header"))?;
    Ok((
        crate::upstream::Target {
            host_header,
            display: s.to_owned(),
            label: String::new(),
            authority,
        },
        uri.path().trim_end_matches('/').to_owned(),
        https,
    ))
}

/// An upstream of one or more target URLs, which must share their base path, with the
/// default balance, timeouts, retries and health.
pub(crate) fn parse_upstream_list(urls: &[String]) -> Result<Upstream, String> {
    let mut targets = Vec::with_capacity(urls.len());
    let mut base: Option<String> = None;
    let mut scheme: Option<bool> = None;
    if urls.len() > 64 {
        return Err(format!(
            "{} targets; an upstream has at most 64",
            urls.len()
        ));
    }
    for u in urls {
        let (t, path, https) = parse_target(u)?;
        if scheme.is_some_and(|s| s != https) {
            return Err(format!(
                "`{u}` has another scheme than the first target; targets share one"
            ));
        }
        scheme = Some(https);
        match &base {
            Some(b) if *b != path => {
                return Err(format!(
                    "`{u}` has the base path `{path}`, the first target `{b}`; targets share one"
                ));
            }
            _ => base = Some(path),
        }
        if targets
            .iter()
            .any(|o: &crate::upstream::Target| o.authority == t.authority)
        {
            return Err(format!("`{u}` is listed twice"));
        }
        targets.push(t);
    }
    if targets.is_empty() {
        return Err("no target: list at least one URL".into());
    }
    crate::upstream::label_targets(&mut targets, None);
    Ok(Upstream {
        targets,
        base_path: base.unwrap_or_default(),
        display: urls.join(", "),
        max_connections: crate::upstream::DEFAULT_MAX_CONNECTIONS,
        max_queue: crate::upstream::DEFAULT_MAX_QUEUE,
        balance: Default::default(),
        connect_timeout: Duration::from_secs(10),
        retry: Default::default(),
        health: Default::default(),
        route: "".into(),
        turn: Default::default(),
        budget: Default::default(),
        states: Default::default(),
        health_check: None,
        https: scheme == Some(true),
        // Made from the route's TLS settings once they are read.
        tls: None,
    })
}
