//! The pipeline, in request order. Reading [`Pipeline::run`] top to bottom is reading what
//! happens to a request:
//!
//! accept (`http::server`) → transport → parse → route → the route's plan (policy → mode →
//! authenticate → authorize → limit) → its endpoint (forward, or one of the gateway's own)
//! → respond.
//!
//! A [`Pipeline`] is one configuration generation compiled: a request is served from start
//! to end by the generation it started with, even if the file is reloaded meanwhile. The
//! stages share one [`context::RequestCtx`]; each records its decision in the
//! [`trail::Trail`]. Each route's list of stages is its [`plan::Plan`], compiled at load.

pub(crate) mod context;
pub(crate) mod plan;
pub(crate) mod trail;

use crate::admin::pages;
use crate::config::Config;
use crate::error::{ErrorSource, GatewayError};
use crate::http::address::IpNet;
use crate::http::body::GatewayBody;
use crate::http::request_id::RequestId;
use crate::http::trace::TraceContext;
use crate::identity::issuers::{ExternalIssuer, ExternalKeys};
use crate::identity::store::Identity;
use crate::identity::token_endpoint;
use crate::limits::attempts::{FailedAttempts, ReplayCache};
use crate::limits::quota::Quotas;
use crate::stages::authenticate::TokenPolicy;
use crate::stages::forward::{self, Forwarder};
use crate::stages::respond::{Renderer, X_REQUEST_ID};
use crate::stages::route::{self, RouteTable};
use crate::stages::{parse, transport};
use candor_catalog::codes;
use context::{Downstream, Flow, RequestCtx};
use futures_util::FutureExt;
use http::{Request, Response};
use hyper::body::Incoming;
use plan::{Endpoint, Plan};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use trail::Trail;

/// The codes that mean a client failed to authenticate (`auth.failed`).
const AUTH_FAILURES: &[&str] = &[
    codes::CREDENTIALS_MISSING,
    codes::CREDENTIALS_MALFORMED,
    codes::TOKEN_INVALID,
    codes::TOKEN_EXPIRED,
    codes::TOKEN_NOT_YET_VALID,
    codes::TOKEN_WRONG_AUDIENCE,
    codes::TOKEN_REVOKED,
    codes::API_KEY_INVALID,
    codes::API_KEY_RESTRICTION_MISSING,
    codes::API_KEY_RESTRICTION_MISMATCH,
    codes::INVALID_CLIENT,
    codes::INVALID_GRANT,
    codes::ASSERTION_REPLAYED,
    codes::SECOND_FACTOR_REQUIRED,
    codes::SECOND_FACTOR_INVALID,
    codes::TOO_MANY_FAILED_ATTEMPTS,
];

/// What the request's events need from its context once the stages are done.
#[derive(Default)]
struct Seen {
    route: Option<Arc<str>>,
    trace_id: Option<[u8; 16]>,
    upstream_us: Option<u64>,
    principal: Option<(String, Option<String>)>,
    client: Option<std::net::IpAddr>,
    /// The limit and count that refused the request ([`RequestCtx::limited`]).
    limited: Option<u64>,
}

/// One configuration generation, compiled: what a request is served with from start to end,
/// even if the configuration is reloaded meanwhile.
#[derive(Debug)]
pub(crate) struct Pipeline {
    /// Configuration generation (1 for the first).
    pub(crate) generation: u64,
    /// Request size limits of this generation.
    pub(crate) limits: crate::config::Limits,
    /// Waits on clients of this generation (new connections take them).
    pub(crate) timeouts: crate::config::Timeouts,
    routes: RouteTable,
    /// Each route's plan, by the route's index in the table.
    plans: Vec<Plan>,
    renderer: Renderer,
    /// The error profiles answers are rendered in (the troubleshooting pages show each).
    profiles_in_use: Vec<Arc<candor_catalog::Profile>>,
    /// The error profiles and which answers where.
    profiles: Arc<crate::stages::respond::Profiles>,
    /// Whether any profile but problem details is chosen anywhere (else errors skip the
    /// choice).
    profiled: bool,
    log_requests: bool,
    trusted_proxies: Vec<IpNet>,
    services: Arc<Services>,
    tokens: TokenPolicy,
    /// The store shared with other gateways (`[limits.shared]`): rate limits, and the
    /// JWT-bearer assertion ids already used.
    shared: Option<Arc<crate::limits::shared::SharedStore>>,
    config_modes: Arc<crate::stages::config_mode::ModeSettings>,
}

/// What outlives configuration reloads: the identity store and the counters.
#[derive(Debug)]
pub(crate) struct Services {
    /// Accounts, clients, keys.
    pub(crate) identity: Arc<Identity>,
    /// Failed token-endpoint attempts.
    pub(crate) failures: FailedAttempts,
    /// Used JWT-bearer assertion ids.
    pub(crate) replay: ReplayCache,
    /// External issuers' keys.
    pub(crate) external: Arc<ExternalKeys>,
    /// Account quota counters.
    pub(crate) quotas: Arc<Quotas>,
    /// Rate limiters, by route and policy.
    pub(crate) rate_limits: Arc<crate::limits::rate::Registry>,
    /// The API event log.
    pub(crate) events: Arc<crate::events::EventLog>,
    /// OTLP span export.
    #[cfg(feature = "otlp")]
    pub(crate) traces: crate::traces::Traces,
}

impl Pipeline {
    /// Compiles `config`.
    pub(crate) fn new(config: &Config, generation: u64, services: Arc<Services>) -> Self {
        let (entries, plans) = plan::compile(config, &services.rate_limits);
        let profiled = config.profiles.listener.is_some()
            || !config.profiles.hosts.is_empty()
            || config.routes.iter().any(|r| r.profile.is_some());
        services.failures.configure(
            config.auth.max_failed_attempts,
            config.auth.max_failed_attempts_per_address,
            config.auth.failed_attempts_window,
            &services.rate_limits,
        );
        let shared = config
            .shared_limits
            .as_ref()
            .map(|c| services.rate_limits.shared_store(c));
        Pipeline {
            shared,
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
            )
            .with_validity(config.auth.validity.clone()),
            generation,
            limits: config.limits,
            timeouts: config.timeouts,
            routes: RouteTable::new(entries),
            plans,
            renderer: Renderer::new(config.catalog.clone(), &config.server.public_base_url),
            profiles_in_use: config.profiles_in_use(),
            profiles: config.profiles.clone(),
            profiled,
            log_requests: config.log.requests,
            trusted_proxies: config.server.trusted_proxies.clone(),
            config_modes: config.config_modes.clone(),
        }
    }

    /// The token endpoint's failed-attempt counts (for the admin API's `/blocks`).
    pub(crate) fn failures(&self) -> &FailedAttempts {
        &self.services.failures
    }

    /// The store shared with other gateways (`[limits.shared]`), if any.
    pub(crate) fn shared_store(&self) -> Option<&crate::limits::shared::SharedStore> {
        self.shared.as_deref()
    }

    /// The external issuers of this generation.
    pub(crate) fn external_issuers(&self) -> &[ExternalIssuer] {
        &self.tokens.external
    }

    /// Each forwarding route of this generation with its upstream, in table order.
    pub(crate) fn upstreams(&self) -> impl Iterator<Item = (&str, &crate::upstream::Upstream)> {
        self.routes
            .routes()
            .iter()
            .filter_map(|r| Some((r.config.name.as_str(), r.config.upstream.as_ref()?)))
    }

    /// `[config_modes]` of this generation.
    pub(crate) fn config_modes(&self) -> &crate::stages::config_mode::ModeSettings {
        &self.config_modes
    }

    /// The features this generation's routes configure, sorted, each once.
    pub(crate) fn features(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .routes
            .routes()
            .iter()
            .filter_map(|r| Some(r.config.config_mode.as_ref()?.feature.clone()))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The listener's error profile (for answers before a request is parsed).
    pub(crate) fn listener_profile(&self) -> Option<&candor_catalog::Profile> {
        self.profiles.listener().map(|p| &**p)
    }

    /// The renderer of this generation.
    pub(crate) fn profiles_in_use(&self) -> &[Arc<candor_catalog::Profile>] {
        &self.profiles_in_use
    }

    pub(crate) fn renderer(&self) -> &Renderer {
        &self.renderer
    }

    /// Serves one request; never fails and never panics outward: a panic in any stage
    /// becomes `internal_error` with the request id.
    pub(crate) async fn handle(
        self: Arc<Self>,
        forwarder: &Forwarder,
        req: Request<Incoming>,
        peer: std::net::SocketAddr,
        tls: bool,
    ) -> Response<GatewayBody> {
        let started = Instant::now();
        let rid = RequestId::of(req.headers());
        let trace = TraceContext::of(req.headers());
        let method = req.method().clone();
        let uri = req.uri().clone();
        let mut trail = Trail::default();
        let down = Downstream {
            peer,
            tls,
            trusted_proxies: &self.trusted_proxies,
        };
        let (parts, body) = req.into_parts();
        let events = self.services.events.on();
        let mut seen = Seen::default();
        // For the metrics: the route's index and the upstream's time.
        let mut measured = (None, None);
        let outcome = AssertUnwindSafe(async {
            let mut ctx = RequestCtx::new(parts, body, down, &rid.header, &mut trail, trace);
            let result = self.run(forwarder, &mut ctx).await;
            measured = (ctx.route.map(|r| r.index), ctx.upstream_time);
            if events {
                seen.route = ctx
                    .route
                    .map(|r| self.plans[r.index].metrics.route().clone());
                seen.principal = ctx.principal.take().map(|p| (p.client_id, p.account));
                seen.client = Some(ctx.client_ip());
                seen.limited = ctx.limited;
            }
            let fields = ctx.rate_limit_fields.then_some(ctx.rate_limits);
            let profile = if self.profiled {
                let host = ctx
                    .parts
                    .headers
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .or_else(|| ctx.parts.uri.host());
                self.profiles
                    .pick(ctx.route.and_then(|r| r.config.profile.as_ref()), host)
                    .filter(|p| !p.is_problem())
            } else {
                None
            };
            (result, fields, profile)
        })
        .catch_unwind()
        .await;
        let (outcome, rate_fields, profile) = match outcome {
            Ok((result, fields, profile)) => (Ok(result), fields, profile),
            Err(panic) => (
                Err(panic),
                None,
                self.profiles
                    .listener()
                    .filter(|p| !p.is_problem())
                    .cloned(),
            ),
        };
        let profile = profile.as_deref();
        let (mut resp, error) = match outcome {
            Ok(Ok(resp)) => match profile {
                // An upstream's problem details, said again in the request's profile.
                Some(p) if resp.status().as_u16() >= 400 => {
                    self.upstream_in_profile(resp, p, uri.path(), &rid.text, &trace)
                }
                _ => (resp, None),
            },
            Ok(Err(err)) => {
                trail.record(
                    "respond",
                    "error",
                    Some(err.code),
                    err.params
                        .iter()
                        .map(|(k, v)| (*k, crate::events::kept_path(v).into_owned()))
                        .collect(),
                );
                let trace_id = trace.trace_id_hex();
                let resp =
                    self.renderer
                        .render_in(&err, profile, uri.path(), &rid.text, Some(&trace_id));
                (resp, Some(err))
            }
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                let stage = trail.events().last().map_or("accept", |e| e.stage);
                tracing::error!(target: "candor::panic", request_id = %rid.text, panic = %what, after_stage = stage, "a pipeline stage panicked");
                let err = GatewayError::new(codes::INTERNAL_ERROR)
                    .param("stage", format!("after stage {stage}"))
                    .source(ErrorSource::Internal);
                trail.record(
                    "respond",
                    "panic",
                    Some(codes::INTERNAL_ERROR),
                    vec![("panic", what)],
                );
                let trace_id = trace.trace_id_hex();
                let resp =
                    self.renderer
                        .render_in(&err, profile, uri.path(), &rid.text, Some(&trace_id));
                (resp, Some(err))
            }
        };
        let rid_made_at = rid.made_at_ms;
        // The id is in the header the route's profile names: an error carries it there
        // alone (as the API the profile speaks for would); any other answer in X-Request-Id,
        // and also in the profile's header unless the upstream's answer has its own there.
        let rid_name = match profile {
            Some(p) if error.is_some() => crate::stages::respond::request_id_header(Some(p)),
            // (Only a profile naming another header costs a name made here.)
            Some(p)
                if p.headers
                    .request_id
                    .as_deref()
                    .is_some_and(|n| !n.eq_ignore_ascii_case(X_REQUEST_ID.as_str())) =>
            {
                let named = crate::stages::respond::request_id_header(Some(p));
                if !resp.headers().contains_key(&named) {
                    resp.headers_mut().insert(named, rid.header.clone());
                }
                X_REQUEST_ID.clone()
            }
            _ => X_REQUEST_ID.clone(),
        };
        resp.headers_mut().insert(rid_name, rid.header);
        if let Some(states) = rate_fields.filter(|s| !s.is_empty()) {
            crate::stages::limit::add_fields(resp.headers_mut(), &states);
        }
        let elapsed = started.elapsed();
        let duration_us = elapsed.as_micros() as u64;
        seen.client.get_or_insert(peer.ip());
        if events {
            seen.trace_id = Some(trace.trace_id);
            seen.upstream_us = measured.1.map(|d| d.as_micros() as u64);
        }
        self.record(
            &rid.text,
            rid_made_at,
            &method,
            &uri,
            &resp,
            error.as_ref(),
            seen,
            duration_us,
            trail,
        )
        .await;
        let route_metrics = measured.0.map(|i| &self.plans[i].metrics);
        let code = error.as_ref().map(|e| e.code);
        let status = resp.status().as_u16();
        #[cfg(feature = "otlp")]
        if self.services.traces.on() {
            let route = route_metrics.map_or("unrouted", |m| &**m.route());
            let end = std::time::SystemTime::now();
            let mut attributes = vec![
                ("http.request.method", method.to_string()),
                (
                    "url.path",
                    crate::events::kept_path(uri.path()).into_owned(),
                ),
                ("candor.route", route.to_owned()),
                ("candor.request_id", rid.text.clone()),
                ("client.address", peer.ip().to_string()),
            ];
            if let Some(c) = code {
                attributes.push(("candor.code", c.to_owned()));
            }
            self.services.traces.record(crate::traces::Span {
                trace_id: trace.trace_id,
                span_id: trace.hop,
                parent: trace.continued.then_some(trace.span_id),
                name: format!("{method} {route}"),
                start: end - started.elapsed(),
                end,
                status,
                attributes,
            });
        }
        crate::metrics::request(route_metrics, status, code, elapsed, measured.1);
        resp
    }

    /// `resp`, an upstream's error answer, in `profile`: when the upstream answered with
    /// problem details of a catalog code (the built-in demo API does), the same error in the
    /// profile's envelope and words; any other answer unchanged. The log still tells it for
    /// the upstream's (`source: upstream`).
    fn upstream_in_profile(
        &self,
        resp: Response<GatewayBody>,
        profile: &candor_catalog::Profile,
        path: &str,
        request_id: &str,
        trace: &crate::http::trace::TraceContext,
    ) -> (Response<GatewayBody>, Option<GatewayError>) {
        let Some(marker) = resp
            .extensions()
            .get::<crate::stages::forward::UpstreamProblem>()
            .filter(|u| u.0.is_some())
            .cloned()
        else {
            return (resp, None);
        };
        let GatewayBody::Full(Some(bytes)) = resp.body() else {
            return (resp, None);
        };
        match self.renderer.upstream_problem_in(
            resp.status(),
            bytes,
            profile,
            path,
            request_id,
            Some(&trace.trace_id_hex()),
        ) {
            Some((_, mut again)) => {
                again.extensions_mut().insert(marker);
                (again, None)
            }
            None => (resp, None),
        }
    }

    /// The request's log line (as configured) and its events: `request.completed` or
    /// `request.rejected`, and, as the request says, `auth.succeeded` / `auth.failed`,
    /// `limit.exceeded`, `quota.exceeded`.
    #[allow(clippy::too_many_arguments)]
    async fn record(
        &self,
        rid: &str,
        rid_made_at: Option<u64>,
        method: &http::Method,
        uri: &http::Uri,
        resp: &Response<GatewayBody>,
        error: Option<&GatewayError>,
        seen: Seen,
        duration_us: u64,
        trail: Trail,
    ) {
        use crate::events::{Event, Facts, RequestFacts, Severity, kinds};
        let status = resp.status().as_u16();
        let upstream = resp.extensions().get::<forward::UpstreamProblem>();
        let (code, source) = match (error, upstream) {
            (Some(e), _) => (Some(e.code.into()), e.source.as_str()),
            (None, Some(p)) => (p.0.clone().map(Into::into), "upstream"),
            (None, None) => (None, ""),
        };
        let ended_by = error.map(|e| e.ended_by());
        if let (Some(e), Some(by)) = (error, ended_by) {
            crate::stats::STATS.error(e.code, by);
        }
        if self.log_requests || error.is_some() {
            tracing::info!(
                target: "candor::request",
                request_id = %rid,
                method = %method,
                path = %crate::events::kept_path(uri.path()),
                status,
                code = code.as_deref().unwrap_or(""),
                source,
                ended_by = ended_by.map_or("", |b| b.as_str()),
                duration_us,
                config_generation = self.generation,
                trail = %trail.to_json(),
                "request"
            );
        }
        let log = &self.services.events;
        if !log.on() {
            return;
        }
        let client = seen.client.expect("set by handle");
        // The request's events happened as its answer went: its arrival (in the id the
        // gateway made) and the time it took tell when, without reading the clock again.
        let time = rid_made_at.map_or_else(SystemTime::now, |ms| {
            SystemTime::UNIX_EPOCH + Duration::from_millis(ms) + Duration::from_micros(duration_us)
        });
        let about = |kind, severity| {
            let mut ev = Event::at(time, kind, severity).request(rid);
            ev.route = seen.route.clone();
            ev.trace_id = seen.trace_id;
            ev
        };
        if let Some((client_id, account)) = &seen.principal {
            log.send(
                about(kinds::AUTH_SUCCEEDED, Severity::Info)
                    .fact("client_id", client_id.as_str())
                    .fact("account", account.as_deref())
                    .fact("client", client.to_string()),
            )
            .await;
        }
        if let Some(issued) = resp.extensions().get::<token_endpoint::Issued>() {
            log.send(
                about(kinds::AUTH_SUCCEEDED, Severity::Info)
                    .fact("client_id", issued.client_id.as_str())
                    .fact("account", issued.account.as_str())
                    .fact("grant_type", issued.grant_type)
                    .fact("client", client.to_string()),
            )
            .await;
        }
        if let Some(e) = error {
            let also = if AUTH_FAILURES.contains(&e.code) {
                Some((kinds::AUTH_FAILED, Severity::Notice))
            } else if e.code == codes::RATE_LIMITED {
                Some((kinds::LIMIT_EXCEEDED, Severity::Notice))
            } else if e.code == codes::QUOTA_EXCEEDED {
                Some((kinds::QUOTA_EXCEEDED, Severity::Notice))
            } else {
                None
            };
            // A limit refusing a flood is told once a second per limit and count (the
            // route, the policy and the limiter's key; the quota and the account), with the
            // number of refusals the event stands for.
            let told = match (also, seen.limited) {
                (Some((kind, _)), Some(what)) if kind != kinds::AUTH_FAILED => {
                    log.told.tell(what, std::time::Instant::now()).map(Some)
                }
                _ => Some(None),
            };
            if let (Some((kind, severity)), Some(refused)) = (also, told) {
                let mut ev = about(kind, severity)
                    .code(e.code)
                    .fact("client", client.to_string());
                for (k, v) in &e.params {
                    ev = ev.fact(k, v.as_str());
                }
                if let Some(n) = refused {
                    ev = ev.fact("refused", n);
                }
                log.send(ev).await;
            }
        }
        let kind = if error.is_some() {
            kinds::REQUEST_REJECTED
        } else {
            kinds::REQUEST_COMPLETED
        };
        // 5xx is an error whoever answered it (the error-rate alert counts these); a
        // request the gateway refused for the client's reasons is worth a look.
        let severity = match status {
            500.. => Severity::Error,
            400.. if error.is_some() => Severity::Notice,
            _ => Severity::Info,
        };
        let facts = RequestFacts {
            method: Some(method.clone()),
            path: crate::events::kept_path(uri.path()),
            client,
            status,
            source,
            ended_by: ended_by.map_or("", |b| b.as_str()),
            duration_us,
            upstream_us: seen.upstream_us,
            config_generation: self.generation,
            docs: error.map(|e| format!("{}/errors/{}", self.renderer.base_url(), e.code)),
            trail,
        };
        let mut ev = Event::at(time, kind, severity).request(rid);
        ev.route = seen.route;
        ev.trace_id = seen.trace_id;
        ev.code = code;
        ev.arrived_ms = rid_made_at.map(|ms| ms as i64);
        ev.facts = Facts::Request(&facts);
        if !log.try_send(&mut ev) {
            log.send_waiting(ev).await;
        }
    }

    /// The stages, in order: a fixed start, the route's plan, its endpoint.
    async fn run<'p>(
        &'p self,
        forwarder: &Forwarder,
        ctx: &mut RequestCtx<'p>,
    ) -> Result<Response<GatewayBody>, GatewayError> {
        transport::run(&self.limits, ctx)?;
        parse::run(ctx)?;
        let route = route::run(&self.routes, ctx)?;
        ctx.route = Some(route);
        let plan = &self.plans[route.index];
        for stage in &plan.stages {
            let flow = match stage {
                // Only rate-limited routes with a shared store wait on it (boxed: the
                // Redis call's future does not grow every request's).
                plan::Stage::RateLimit(r) if r.shared.is_some() => {
                    let shared = r.shared.as_ref().expect("matched");
                    Box::pin(crate::stages::limit::run_shared(
                        r,
                        shared,
                        &self.services.quotas,
                        ctx,
                    ))
                    .await?
                }
                _ => stage.run(self, ctx)?,
            };
            if let Flow::Respond(resp) = flow {
                return Ok(*resp);
            }
        }
        match plan.endpoint {
            Endpoint::Proxy => {
                let result = forward::run(
                    forwarder,
                    &route.config,
                    ctx,
                    route
                        .config
                        .max_body_bytes
                        .unwrap_or(self.limits.max_body_bytes),
                    &self.timeouts,
                )
                .await;
                // Never delivered, for the upstream's reasons: not the account's to pay.
                if let Err(e) = &result
                    && !ctx.upstream_reached
                    && [
                        codes::UPSTREAM_UNREACHABLE,
                        codes::NO_HEALTHY_UPSTREAM,
                        codes::UPSTREAM_OVERLOADED,
                    ]
                    .contains(&e.code)
                {
                    crate::stages::limit::refund_quota(&self.services.quotas, ctx);
                }
                result
            }
            Endpoint::ErrorPages => pages::serve(
                &self.renderer,
                &self.profiles_in_use,
                ctx.path(),
                &ctx.parts.headers,
            ),
            Endpoint::Token => {
                let s = &self.services;
                let (parts, body) = ctx.take_request()?;
                let peer = ctx.down.peer.ip();
                token_endpoint::serve(
                    &s.identity,
                    &self.tokens,
                    token_endpoint::Guards {
                        failures: &s.failures,
                        replay: &s.replay,
                        shared: self.shared.as_ref(),
                    },
                    parts,
                    body,
                    peer,
                )
                .await
            }
            Endpoint::Jwks => Ok(token_endpoint::serve_jwks(&self.services.identity)),
            Endpoint::FaultInjection => panic!(
                "fault injection: debug.panic_path {} was requested",
                ctx.path()
            ),
        }
    }
}
