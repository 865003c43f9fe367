//! Each route's plan, compiled when the configuration loads: the stages its requests pass
//! after routing, in request order, and the endpoint that answers them. The plan is the one
//! list of what a route does; `Pipeline::run` walks it.
//!
//! The gateway's own endpoints (error pages, token endpoint, JWK set, the fault-injection
//! path) are routes too: built-in entries at the head of the route table, reserved in the
//! configuration, answered by their own [`Endpoint`].

use super::Pipeline;
use super::context::{Flow, RequestCtx};
use crate::config::{Config, ERRORS_PREFIX, RouteConfig, RouteMode};
use crate::error::GatewayError;
use crate::identity::token_endpoint::{JWKS_PATH, TOKEN_PATH};
use crate::limits::shared::{OnFailure, PolicyKeys};
use crate::stages::authenticate::{self, AuthConfig};
use crate::stages::negotiate::Negotiation;
use crate::stages::policy::AccessPolicy;
use crate::stages::route::{PathPattern, RouteEntry};
use crate::stages::{authorize, limit, negotiate, policy, validate};
use candor_catalog::codes;
use http::Method;
use std::time::Duration;

/// A stage of a route's plan, with the part of the route's configuration it applies.
#[derive(Debug)]
pub(crate) enum Stage {
    /// HTTPS only, allowed and denied networks.
    Policy(AccessPolicy),
    /// A route that does not forward: `not_implemented` or `service_unavailable`.
    Mode(RouteMode),
    /// Accept and Content-Type.
    Negotiate(Negotiation),
    /// The credentials the route requires.
    Authenticate(AuthConfig),
    /// Scopes, the account the request names, the account's state.
    Authorize(AuthConfig),
    /// Rate limits (those keyed before authentication, or those after).
    RateLimit(limit::RateStage),
    /// The authenticated account's quota (with the route's status for its answer).
    Limit(Option<http::StatusCode>),
    /// The route's request contract.
    Validate(std::sync::Arc<validate::Contract>),
    /// The configuration mode the request names against its feature's overrides.
    ConfigMode(crate::stages::config_mode::RouteModes),
}

impl Stage {
    /// The stage's name, as the trail and `candor check` print it.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Stage::Policy(_) => "policy",
            Stage::Mode(_) => "mode",
            Stage::Negotiate(_) => "negotiate",
            Stage::Authenticate(_) => "authenticate",
            Stage::Authorize(_) => "authorize",
            Stage::RateLimit(_) => "rate_limit",
            Stage::Limit(_) => "limit",
            Stage::Validate(_) => "validate",
            Stage::ConfigMode(_) => "config_mode",
        }
    }

    /// The codes the stage can answer with.
    fn codes(&self) -> Vec<&'static str> {
        match self {
            Stage::Policy(a) => {
                let mut out = Vec::new();
                if a.require_https && !a.redirect_to_https {
                    out.push(codes::HTTPS_REQUIRED);
                }
                if !a.allow.is_empty() || !a.deny.is_empty() {
                    out.push(codes::ACCESS_RESTRICTED);
                }
                out
            }
            Stage::Mode(RouteMode::NotImplemented) => vec![codes::NOT_IMPLEMENTED],
            Stage::Mode(_) => vec![codes::SERVICE_UNAVAILABLE],
            Stage::Negotiate(n) => {
                let mut out = Vec::new();
                if !n.produces.is_empty() {
                    out.push(codes::NOT_ACCEPTABLE);
                }
                if !n.accepts.is_empty() {
                    out.extend([codes::UNSUPPORTED_MEDIA_TYPE, codes::MALFORMED_BODY]);
                }
                out
            }
            Stage::Authenticate(a) if a.api_key.is_some() => vec![
                codes::CREDENTIALS_MISSING,
                codes::CREDENTIALS_MALFORMED,
                codes::API_KEY_INVALID,
                codes::API_KEY_RESTRICTION_MISSING,
                codes::API_KEY_RESTRICTION_MISMATCH,
            ],
            Stage::Authenticate(a) if a.account_tokens => vec![
                codes::CREDENTIALS_MISSING,
                codes::CREDENTIALS_MALFORMED,
                codes::TOKEN_INVALID,
            ],
            Stage::Authenticate(_) => vec![
                codes::CREDENTIALS_MISSING,
                codes::CREDENTIALS_MALFORMED,
                codes::TOKEN_INVALID,
                codes::TOKEN_EXPIRED,
                codes::TOKEN_NOT_YET_VALID,
                codes::TOKEN_WRONG_AUDIENCE,
                codes::TOKEN_REVOKED,
            ],
            Stage::Authorize(a) => {
                let mut out = vec![codes::ACCOUNT_INACTIVE];
                if !a.scopes.is_empty() {
                    out.push(codes::INSUFFICIENT_SCOPE);
                }
                if a.account.is_some() {
                    out.push(codes::ACCOUNT_MISMATCH);
                }
                if matches!(a.account, Some(authenticate::AccountSource::Header(_))) {
                    out.push(codes::VALIDATION_FAILED);
                }
                out
            }
            Stage::RateLimit(r) => match &r.shared {
                Some(s) if s.store.config.on_failure == OnFailure::Closed => {
                    vec![codes::RATE_LIMITED, codes::RATE_LIMIT_STORE_UNAVAILABLE]
                }
                _ => vec![codes::RATE_LIMITED],
            },
            Stage::Limit(_) => vec![codes::QUOTA_EXCEEDED],
            Stage::Validate(_) => vec![codes::VALIDATION_FAILED],
            Stage::ConfigMode(_) => vec![codes::UNSUPPORTED_FOR_MODE, codes::VALIDATION_FAILED],
        }
    }

    /// Runs the stage on `ctx`.
    pub(crate) fn run(&self, p: &Pipeline, ctx: &mut RequestCtx<'_>) -> Result<Flow, GatewayError> {
        match self {
            Stage::Policy(access) => policy::run(access, ctx),
            Stage::Mode(mode) => policy::route_mode(mode, ctx),
            Stage::Negotiate(n) => negotiate::run(n, ctx),
            Stage::Authenticate(auth) => authenticate::run(
                auth,
                &p.tokens,
                &p.services.identity,
                &p.services.external,
                ctx,
            ),
            Stage::Authorize(auth) => authorize::run(auth, ctx),
            Stage::RateLimit(r) => limit::run_rate(r, &p.services.quotas, ctx),
            Stage::Limit(status) => limit::run(&p.services.quotas, *status, ctx),
            Stage::Validate(c) => validate::run(c, ctx),
            Stage::ConfigMode(m) => crate::stages::config_mode::run(m, &p.services.identity, ctx),
        }
    }
}

/// What answers a request once its plan's stages let it through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// Forward to the route's upstream.
    Proxy,
    /// `/errors` and `/errors/{code}`: the troubleshooting pages.
    ErrorPages,
    /// `POST /oauth/token`.
    Token,
    /// `GET /.well-known/jwks.json`.
    Jwks,
    /// `debug.panic_path`: panics inside the pipeline, on purpose.
    FaultInjection,
}

/// One route's plan.
#[derive(Debug)]
pub(crate) struct Plan {
    /// The stages after routing, in order.
    pub(crate) stages: Vec<Stage>,
    /// What answers.
    pub(crate) endpoint: Endpoint,
    /// The route's metric handles.
    pub(crate) metrics: crate::metrics::RouteMetrics,
}

impl Plan {
    /// The plan of an operator's route; its rate limiters come from `limiters`.
    fn of_route(route: &RouteConfig, limiters: &Limiters<'_>) -> Plan {
        let mut stages = Vec::new();
        if !route.access.is_empty() {
            stages.push(Stage::Policy(route.access.clone()));
        }
        if route.mode != RouteMode::Proxy {
            stages.push(Stage::Mode(route.mode.clone()));
        }
        // Limits keyed by what the request shows (address, a header, the route) come
        // before anything reads its credentials or body; limits keyed by who it is, once
        // it is authenticated.
        let rate = |after_auth: bool| {
            let l = &route.limits;
            let chosen: Vec<_> = l
                .policies
                .iter()
                .filter(|p| p.key.needs_principal() == after_auth)
                .map(|p| limiters.registry.limiter(&route.name, p, limiters.max_keys))
                .collect();
            let shared = limiters.shared.as_ref().map(|store| limit::SharedStage {
                store: store.clone(),
                keys: chosen
                    .iter()
                    .map(|l| PolicyKeys::new(&route.name, &l.policy))
                    .collect(),
            });
            (!chosen.is_empty()).then(|| {
                Stage::RateLimit(limit::RateStage {
                    refused: chosen
                        .iter()
                        .map(|l| crate::metrics::rate_limited(&route.name, &l.policy.name))
                        .collect(),
                    limiters: chosen,
                    headers: l.headers,
                    status: l.rate_status,
                    shared,
                })
            })
        };
        stages.extend(rate(false));
        if !route.negotiation.is_empty() {
            stages.push(Stage::Negotiate(route.negotiation.clone()));
        }
        if let Some(auth) = &route.auth {
            stages.push(Stage::Authenticate(auth.clone()));
            stages.push(Stage::Authorize(auth.clone()));
            // The quota first: a request it refuses spends no rate-limit token; one a rate
            // limit refuses gets its quota count back.
            stages.push(Stage::Limit(route.limits.quota_status));
            stages.extend(rate(true));
        }
        // The mode after the credentials (who asks comes first) and before the contract:
        // in a mode where the feature is not configured, the operation does not exist.
        if let Some(m) = &route.config_mode {
            stages.push(Stage::ConfigMode(m.clone()));
        }
        if let Some(c) = &route.contract {
            stages.push(Stage::Validate(c.clone()));
        }
        Plan {
            stages,
            endpoint: Endpoint::Proxy,
            metrics: crate::metrics::RouteMetrics::new(&route.name),
        }
    }

    /// Every code a request on `route` can be answered with: what any request can get (its
    /// head, its target, the gateway's load), its stages', and forwarding's.
    fn codes(&self, route: &RouteConfig) -> Vec<&'static str> {
        let mut out = vec![
            codes::MALFORMED_REQUEST,
            codes::MALFORMED_HEADER,
            codes::URI_TOO_LONG,
            codes::HEADERS_TOO_LARGE,
            codes::INVALID_URL_ENCODING,
            codes::REQUEST_TIMEOUT,
            codes::PAYLOAD_TOO_LARGE,
        ];
        if !route.methods.is_empty() {
            out.push(codes::METHOD_NOT_ALLOWED);
        }
        for stage in &self.stages {
            out.extend(stage.codes());
        }
        if self.endpoint == Endpoint::Proxy && route.mode == RouteMode::Proxy {
            out.extend([
                codes::UPSTREAM_UNREACHABLE,
                codes::UPSTREAM_TIMEOUT,
                codes::UPSTREAM_PROTOCOL_ERROR,
                codes::UPSTREAM_OVERLOADED,
            ]);
            if route.wrap_upstream_errors {
                out.push(codes::UPSTREAM_ERROR);
            }
        }
        out.extend([codes::SERVER_OVERLOADED, codes::INTERNAL_ERROR]);
        let mut seen = Vec::new();
        out.retain(|c| {
            let first = !seen.contains(c);
            seen.push(c);
            first
        });
        out
    }

    /// The stage names, in order, ending with the endpoint (for logs and `candor check`).
    pub(crate) fn describe(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = self.stages.iter().map(Stage::name).collect();
        names.push(match self.endpoint {
            Endpoint::Proxy => "forward",
            Endpoint::ErrorPages => "error_pages",
            Endpoint::Token => "token_endpoint",
            Endpoint::Jwks => "jwks",
            Endpoint::FaultInjection => "fault_injection",
        });
        names
    }
}

/// A built-in route: any host, no upstream.
fn builtin(name: &str, path: &str, methods: &[Method]) -> Option<RouteConfig> {
    Some(RouteConfig {
        name: name.to_owned(),
        host: None,
        pattern: PathPattern::parse(path).ok()?,
        methods: methods.to_vec(),
        upstream: None,
        timeout: Duration::from_secs(60),
        mode: RouteMode::Proxy,
        wrap_upstream_errors: false,
        preserve_host: false,
        auth: None,
        access: AccessPolicy::default(),
        negotiation: Negotiation::default(),
        contract: None,
        max_body_bytes: None,
        profile: None,
        limits: Default::default(),
        config_mode: None,
        builtin_upstream: false,
    })
}

/// Where plans get their rate limiters: the registry that keeps them across reloads.
pub(crate) struct Limiters<'a> {
    /// The live limiters.
    pub(crate) registry: &'a crate::limits::rate::Registry,
    /// The most keys a new limiter holds.
    pub(crate) max_keys: usize,
    /// The shared (Redis) store, when `[limits.shared]` is set.
    pub(crate) shared: Option<std::sync::Arc<crate::limits::shared::SharedStore>>,
}

/// The route table's entries and their plans, by index: the gateway's own endpoints first
/// (the configuration reserves their paths), then the configured routes in file order.
pub(crate) fn compile(
    config: &Config,
    registry: &crate::limits::rate::Registry,
) -> (Vec<RouteEntry>, Vec<Plan>) {
    let limiters = Limiters {
        registry,
        max_keys: config.limits.max_rate_limit_keys,
        shared: config
            .shared_limits
            .as_ref()
            .map(|c| registry.shared_store(c)),
    };
    let mut entries = Vec::with_capacity(config.routes.len() + 4);
    let mut plans = Vec::with_capacity(config.routes.len() + 4);
    let errors_pattern = format!("{ERRORS_PREFIX}/{{*code}}");
    let mut own = vec![
        (
            builtin("candor.error_pages", &errors_pattern, &[Method::GET]),
            Endpoint::ErrorPages,
        ),
        (
            builtin("candor.token_endpoint", TOKEN_PATH, &[Method::POST]),
            Endpoint::Token,
        ),
        (
            builtin("candor.jwks", JWKS_PATH, &[Method::GET]),
            Endpoint::Jwks,
        ),
    ];
    if let Some(path) = &config.debug.panic_path {
        own.push((
            builtin("candor.fault_injection", path, &[]),
            Endpoint::FaultInjection,
        ));
    }
    for (route, endpoint) in own {
        if let Some(config) = route {
            plans.push(Plan {
                stages: Vec::new(),
                endpoint,
                metrics: crate::metrics::RouteMetrics::new(&config.name),
            });
            entries.push(RouteEntry {
                config,
                builtin: true,
            });
        }
    }
    for route in &config.routes {
        plans.push(Plan::of_route(route, &limiters));
        entries.push(RouteEntry {
            config: route.clone(),
            builtin: false,
        });
    }
    (entries, plans)
}

/// One route's plan in words, as `candor check` prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutePlan {
    /// The route's name (`candor.*` for the gateway's own endpoints).
    pub name: String,
    /// The host it is limited to, if any.
    pub host: Option<String>,
    /// Its path pattern.
    pub path: String,
    /// Its methods (empty: any).
    pub methods: Vec<String>,
    /// Its stages after routing, in order, ending with what answers.
    pub stages: Vec<&'static str>,
    /// Every error code a request on it can be answered with.
    pub codes: Vec<&'static str>,
}

impl Config {
    /// Every route's plan, in the order the route table tries them.
    pub fn route_plans(&self) -> Vec<RoutePlan> {
        let (entries, plans) = compile(self, &crate::limits::rate::Registry::default());
        entries
            .iter()
            .zip(&plans)
            .map(|(e, plan)| RoutePlan {
                name: e.config.name.clone(),
                host: e.config.host.clone(),
                path: e.config.pattern.to_string(),
                methods: e.config.methods.iter().map(|m| m.to_string()).collect(),
                stages: plan.describe(),
                codes: plan.codes(&e.config),
            })
            .collect()
    }
}
