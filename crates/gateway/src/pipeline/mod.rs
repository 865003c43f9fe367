//! The pipeline, in request order. Reading [`Pipeline::run`] top to bottom is reading what
//! happens to a request:
//!
//! accept (server) → transport limits → parse target → gateway pages → route → route mode →
//! forward → respond.
//!
//! Authentication, authorization, limits and validation slot in between route and forward.

pub(crate) mod trail;

use crate::admin::pages as docs;
use crate::config::{Config, RouteMode};
use crate::error::{ErrorSource, GatewayError};
use crate::http::body::GatewayBody;
use crate::http::request_id;
use crate::identity::store::Identity;
use crate::identity::token_endpoint::{JWKS_PATH, TOKEN_PATH};
use crate::limits::attempts::FailedAttempts;
use crate::pipeline::trail::Trail;
use crate::stages::authenticate::{TokenPolicy, authenticate};
use crate::stages::authorize::authorize;
use crate::stages::forward::{Downstream, Forwarder, forward};
use crate::stages::parse::{check_query, parse_path};
use crate::stages::respond::{Renderer, X_REQUEST_ID};
use crate::stages::route::{RouteMiss, RouteTable, Suggestion, SuggestionReason};
use crate::stages::transport;
use candor_catalog::codes;
use futures_util::FutureExt;
use http::header::{ALLOW, RETRY_AFTER};
use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use serde_json::json;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

/// One configuration generation, compiled: what a request is served with from start to end,
/// even if the configuration is reloaded meanwhile.
#[derive(Debug)]
pub struct Pipeline {
    /// Configuration generation (1 for the first).
    pub generation: u64,
    /// Request size limits of this generation.
    pub limits: crate::config::Limits,
    routes: RouteTable,
    renderer: Renderer,
    log_requests: bool,
    panic_path: Option<String>,
    trusted_proxies: Vec<crate::http::address::IpNet>,
    services: Arc<Services>,
    tokens: TokenPolicy,
}

/// What outlives configuration reloads: the identity store and the failed-attempt counters.
#[derive(Debug)]
pub struct Services {
    /// Accounts, clients, keys.
    pub identity: Arc<Identity>,
    /// Failed token-endpoint attempts.
    pub failures: FailedAttempts,
    /// Used JWT-bearer assertion ids.
    pub replay: crate::limits::attempts::ReplayCache,
    /// External issuers' keys.
    pub external: Arc<crate::identity::issuers::ExternalKeys>,
    /// Account quota counters.
    pub quotas: crate::limits::quota::Quotas,
}

static X_CANDOR_CLIENT: http::HeaderName = http::HeaderName::from_static("x-candor-client");
static X_CANDOR_ACCOUNT: http::HeaderName = http::HeaderName::from_static("x-candor-account");
static X_CANDOR_SCOPES: http::HeaderName = http::HeaderName::from_static("x-candor-scopes");

impl Pipeline {
    /// Compiles `config`.
    pub fn new(config: &Config, generation: u64, services: Arc<Services>) -> Self {
        Pipeline {
            services,
            tokens: TokenPolicy::new(
                config
                    .auth
                    .issuer
                    .clone()
                    .unwrap_or_else(|| config.server.public_base_url.clone()),
                config.auth.audience.clone(),
                config.auth.leeway.as_secs() as i64,
                config.auth.issuers.clone(),
            ),
            generation,
            limits: config.limits,
            routes: RouteTable::new(&config.routes),
            renderer: Renderer::new(config.catalog.clone(), &config.server.public_base_url),
            log_requests: config.log.requests,
            panic_path: config.debug.panic_path.clone(),
            trusted_proxies: config.server.trusted_proxies.clone(),
        }
    }

    /// The external issuers of this generation.
    pub fn external_issuers(&self) -> &[crate::identity::issuers::ExternalIssuer] {
        &self.tokens.external
    }

    /// The renderer of this generation.
    pub fn renderer(&self) -> &Renderer {
        &self.renderer
    }

    /// Serves one request; never fails and never panics outward: a panic in any stage
    /// becomes `internal_error` with the request id.
    pub async fn handle(
        self: Arc<Self>,
        forwarder: &Forwarder,
        req: Request<Incoming>,
        peer: std::net::SocketAddr,
        tls: bool,
    ) -> Response<GatewayBody> {
        let started = Instant::now();
        // The id as text (for the envelope and the log) and as a header value, made once.
        let (request_id, rid_header) = match req.headers().get(&X_REQUEST_ID) {
            Some(v) if request_id::is_well_formed(v.as_bytes()) => (
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
                v.clone(),
            ),
            _ => {
                let id = request_id::new_ulid();
                // A ULID is Crockford base32: always a valid header value.
                let header = HeaderValue::from_str(&id)
                    .unwrap_or_else(|_| HeaderValue::from_static("unavailable"));
                (id, header)
            }
        };
        let method = req.method().clone();
        let uri = req.uri().clone();
        let mut trail = Trail::default();
        let down = Downstream {
            peer,
            tls,
            trusted_proxies: &self.trusted_proxies,
        };
        let outcome = AssertUnwindSafe(self.run(forwarder, req, &down, &rid_header, &mut trail))
            .catch_unwind()
            .await;
        let (mut resp, error) = match outcome {
            Ok(Ok(resp)) => (resp, None),
            Ok(Err(err)) => {
                trail.record(
                    "respond",
                    "error",
                    Some(err.code),
                    err.params.iter().map(|(k, v)| (*k, v.clone())).collect(),
                );
                (
                    self.renderer.render(&err, uri.path(), &request_id),
                    Some(err),
                )
            }
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                let stage = trail.events().last().map_or("accept", |e| e.stage);
                tracing::error!(target: "candor::panic", request_id = %request_id, panic = %what, after_stage = stage, "a pipeline stage panicked");
                let err = GatewayError::new(codes::INTERNAL_ERROR)
                    .param("stage", format!("after stage {stage}"))
                    .source(ErrorSource::Internal);
                trail.record(
                    "respond",
                    "panic",
                    Some(codes::INTERNAL_ERROR),
                    vec![("panic", what)],
                );
                (
                    self.renderer.render(&err, uri.path(), &request_id),
                    Some(err),
                )
            }
        };
        resp.headers_mut().insert(X_REQUEST_ID.clone(), rid_header);
        let status = resp.status().as_u16();
        if self.log_requests || error.is_some() {
            let code = error.as_ref().map_or("", |e| e.code);
            let source = error.as_ref().map_or("", |e| e.source.as_str());
            tracing::info!(
                target: "candor::request",
                request_id = %request_id,
                method = %method,
                path = %uri.path(),
                status,
                code,
                source,
                duration_us = started.elapsed().as_micros() as u64,
                config_generation = self.generation,
                trail = %trail.to_json(),
                "request"
            );
        }
        resp
    }

    /// The stages, in order.
    async fn run(
        &self,
        forwarder: &Forwarder,
        req: Request<Incoming>,
        down: &Downstream<'_>,
        rid_header: &HeaderValue,
        trail: &mut Trail,
    ) -> Result<Response<GatewayBody>, GatewayError> {
        let (mut parts, body) = req.into_parts();
        // Identity headers come from the gateway only, never from the client.
        if parts
            .headers
            .keys()
            .any(|k| k.as_str().starts_with("x-candor-"))
        {
            for h in [&X_CANDOR_CLIENT, &X_CANDOR_ACCOUNT, &X_CANDOR_SCOPES] {
                parts.headers.remove(h);
            }
        }

        // transport: sizes
        transport::check_limits(&self.limits, &parts).inspect_err(|e| {
            trail.record("transport", "reject", Some(e.code), Vec::new());
        })?;

        // parse: the request target's encoding and canonical path
        let raw_path = parts.uri.path();
        let target = parse_path(raw_path).map_err(|e| encoding_error(e, trail))?;
        if let Some(q) = parts.uri.query() {
            check_query(q, raw_path.len() + 1).map_err(|e| encoding_error(e, trail))?;
        }

        // the gateway's own pages
        if docs::is_docs_path(&target.path) {
            trail.record(
                "route",
                "gateway_page",
                None,
                vec![("path", target.path.to_string())],
            );
            return docs::serve(&self.renderer, &target.path, &parts.headers);
        }
        if *target.path == *TOKEN_PATH {
            trail.record(
                "route",
                "gateway_page",
                None,
                vec![("path", TOKEN_PATH.to_owned())],
            );
            let s = &self.services;
            return crate::identity::token_endpoint::serve(
                &s.identity,
                &self.tokens,
                &s.failures,
                &s.replay,
                parts,
                body,
                down.peer.ip(),
            )
            .await;
        }
        if *target.path == *JWKS_PATH
            && (parts.method == http::Method::GET || parts.method == http::Method::HEAD)
        {
            return Ok(crate::identity::token_endpoint::serve_jwks(
                &self.services.identity,
            ));
        }
        if self.panic_path.as_deref() == Some(&*target.path) {
            trail.pass("route");
            panic!(
                "fault injection: debug.panic_path {} was requested",
                target.path
            );
        }

        // route
        let host = parts
            .uri
            .host()
            .or_else(|| {
                parts
                    .headers
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
            })
            .map(|h| {
                h.rsplit_once(':')
                    .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
                    .map_or(h, |(h, _)| h)
            });
        let host_lower: Option<std::borrow::Cow<'_, str>> = host.map(|h| {
            if h.bytes().any(|b| b.is_ascii_uppercase()) {
                h.to_ascii_lowercase().into()
            } else {
                h.into()
            }
        });
        let route = match self
            .routes
            .lookup(host_lower.as_deref(), &target.path, &parts.method)
        {
            Ok(route) => route,
            Err(RouteMiss::MethodNotAllowed { route, allowed }) => {
                trail.record(
                    "route",
                    "reject",
                    Some(codes::METHOD_NOT_ALLOWED),
                    vec![("route", route.config.name.clone())],
                );
                let list = allowed.join(", ");
                let mut err = GatewayError::new(codes::METHOD_NOT_ALLOWED)
                    .param("path", target.path.to_string())
                    .param("method", parts.method.to_string())
                    .param("allowed", list.clone())
                    .extension("allowed", allowed.into());
                if let Ok(v) = HeaderValue::from_str(&list) {
                    err.headers.push((ALLOW, v));
                }
                return Err(err);
            }
            Err(RouteMiss::NotFound(suggestions)) => {
                trail.record(
                    "route",
                    "reject",
                    Some(codes::ROUTE_NOT_FOUND),
                    vec![("suggestions", suggestions.len().to_string())],
                );
                return Err(not_found(&parts.method, &target.path, suggestions));
            }
        };
        trail.record(
            "route",
            "match",
            None,
            vec![("route", route.config.name.clone())],
        );

        // route mode
        match &route.config.mode {
            RouteMode::Proxy => {}
            RouteMode::NotImplemented => {
                return Err(GatewayError::new(codes::NOT_IMPLEMENTED)
                    .param("method", parts.method.to_string())
                    .param("path", target.path.to_string())
                    .param("route", route.config.name.clone()));
            }
            RouteMode::Maintenance { retry_after, until } => {
                let mut err = GatewayError::new(codes::SERVICE_UNAVAILABLE)
                    .param("route", route.config.name.clone())
                    .param(
                        "until",
                        until
                            .as_ref()
                            .map_or(String::new(), |u| format!(" until {u}")),
                    )
                    .param("retry_after", retry_after.to_string())
                    .header(RETRY_AFTER, &retry_after.to_string())
                    .extension("retry_after", (*retry_after).into());
                if let Some(u) = until {
                    err = err.extension("maintenance_until", u.clone().into());
                }
                return Err(err);
            }
        }

        // transport policy
        if !route.config.access.is_empty() {
            let client = crate::stages::policy::client_ip(
                down.peer.ip(),
                &parts.headers,
                &self.trusted_proxies,
            );
            let https = crate::stages::policy::is_https(
                down.tls,
                down.peer.ip(),
                &parts.headers,
                &self.trusted_proxies,
            );
            let pq = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
            match crate::stages::policy::check(
                &route.config.access,
                https,
                client,
                host,
                pq,
                &target.path,
            ) {
                Ok(crate::stages::policy::Decision::Pass) => trail.pass("policy"),
                Ok(crate::stages::policy::Decision::Redirect(url)) => {
                    trail.record("policy", "redirect", None, vec![("location", url.clone())]);
                    let mut resp = Response::new(GatewayBody::empty());
                    *resp.status_mut() = http::StatusCode::PERMANENT_REDIRECT;
                    if let Ok(v) = HeaderValue::from_str(&url) {
                        resp.headers_mut().insert(http::header::LOCATION, v);
                    }
                    return Ok(resp);
                }
                Err(e) => {
                    trail.record(
                        "policy",
                        "reject",
                        Some(e.code),
                        vec![("client_ip", client.to_string())],
                    );
                    return Err(e);
                }
            }
        }

        // authenticate, authorize
        if let Some(auth) = &route.config.auth {
            let snapshot = self.services.identity.snapshot();
            let principal = match &auth.api_key {
                Some(source) => {
                    let client = crate::stages::policy::client_ip(
                        down.peer.ip(),
                        &parts.headers,
                        &self.trusted_proxies,
                    );
                    crate::stages::authenticate::authenticate_api_key(
                        &parts.headers,
                        parts.uri.query(),
                        source,
                        &snapshot,
                        client,
                        &target.path,
                    )
                }
                None => authenticate(
                    &parts.headers,
                    auth,
                    &self.tokens,
                    &snapshot,
                    &self.services.external,
                    &target.path,
                ),
            }
            .inspect_err(|e| {
                trail.record("authenticate", "reject", Some(e.code), Vec::new());
            })?;
            trail.record(
                "authenticate",
                "pass",
                None,
                vec![
                    ("client", principal.client_id.clone()),
                    ("account", principal.account.clone().unwrap_or_default()),
                ],
            );
            let params = route.config.pattern.captures(&target.path);
            authorize(
                &principal,
                auth,
                &snapshot,
                &parts.headers,
                &params,
                &target.path,
            )
            .inspect_err(|e| {
                trail.record("authorize", "reject", Some(e.code), Vec::new());
            })?;
            if let Some(account) = principal
                .account
                .as_ref()
                .and_then(|a| snapshot.accounts.get(a))
            {
                self.services
                    .quotas
                    .count(account, crate::time::unix_now())
                    .inspect_err(|e| {
                        trail.record("limit", "reject", Some(e.code), Vec::new());
                    })?;
            }
            trail.pass("authorize");
            let h = &mut parts.headers;
            if let Ok(v) = HeaderValue::from_str(&principal.client_id) {
                h.insert(X_CANDOR_CLIENT.clone(), v);
            }
            if let Some(v) = principal
                .account
                .as_deref()
                .and_then(|a| HeaderValue::from_str(a).ok())
            {
                h.insert(X_CANDOR_ACCOUNT.clone(), v);
            }
            if let Ok(v) = HeaderValue::from_str(&principal.scopes.join(" ")) {
                h.insert(X_CANDOR_SCOPES.clone(), v);
            }
        }

        // forward: a path that needed no normalisation is read from the request itself
        let forward_path = match target.forward {
            std::borrow::Cow::Borrowed(_) => None,
            std::borrow::Cow::Owned(p) => Some(p),
        };
        let started = Instant::now();
        let resp = forward(
            forwarder,
            &route.config,
            parts,
            body,
            forward_path.as_deref(),
            down,
            rid_header,
            self.limits.max_body_bytes,
        )
        .await;
        let mut facts = Vec::with_capacity(2);
        facts.push(("upstream_ms", started.elapsed().as_millis().to_string()));
        match &resp {
            Ok(r) => {
                facts.push(("status", r.status().as_u16().to_string()));
                trail.record("forward", "response", None, facts);
            }
            Err(e) => trail.record("forward", "fail", Some(e.code), facts),
        }
        resp
    }
}

fn encoding_error(e: crate::stages::parse::EncodingError, trail: &mut Trail) -> GatewayError {
    trail.record(
        "parse",
        "reject",
        Some(codes::INVALID_URL_ENCODING),
        vec![("reason", e.reason.to_owned())],
    );
    GatewayError::new(codes::INVALID_URL_ENCODING)
        .param("reason", e.reason)
        .param("position", e.position.to_string())
        .param("bytes", e.bytes.clone())
        .extension("position", e.position.into())
        .extension("bytes", e.bytes.into())
}

fn not_found(method: &http::Method, path: &str, suggestions: Vec<Suggestion>) -> GatewayError {
    let describe = |s: &Suggestion| {
        let why = match s.reason {
            SuggestionReason::TrailingSlash if s.path.ends_with('/') => "with a trailing slash",
            SuggestionReason::TrailingSlash => "without the trailing slash",
            SuggestionReason::LetterCase => "paths are case-sensitive",
            SuggestionReason::Similar => "similar path",
        };
        let methods = if s.methods.is_empty() {
            "any method".to_owned()
        } else if s.accepts_method {
            s.methods.join(", ")
        } else {
            format!("exists for {} only, not {method}", s.methods.join(", "))
        };
        format!("{} ({why}; {methods})", s.path)
    };
    let hint = match suggestions.as_slice() {
        [] => String::new(),
        [one] => format!(" Did you mean {}?", describe(one)),
        [first, second, ..] => {
            format!(" Did you mean {} or {}?", describe(first), describe(second))
        }
    };
    let list: Vec<serde_json::Value> = suggestions
        .iter()
        .map(|s| {
            json!({
                "path": s.path,
                "methods": s.methods,
                "reason": s.reason.as_str(),
                "accepts_method": s.accepts_method,
            })
        })
        .collect();
    GatewayError::new(codes::ROUTE_NOT_FOUND)
        .param("method", method.to_string())
        .param("path", path.to_owned())
        .param("hint", hint)
        .extension("suggestions", list.into())
}
