//! Transport policy stage: whether this route may be called over plain HTTP and from this
//! client address. The client address honours the trusted-proxy list.

use crate::config::RouteMode;
use crate::error::GatewayError;
use crate::http::address::IpNet;
use crate::http::body::GatewayBody;
use crate::pipeline::context::{Flow, RequestCtx};
use candor_catalog::codes;
use http::header::RETRY_AFTER;
use http::{HeaderValue, Response};
use std::net::IpAddr;

/// Who may call a route, and how.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccessPolicy {
    /// Refuse plain HTTP.
    pub require_https: bool,
    /// Answer plain HTTP with a redirect to HTTPS instead of `https_required`.
    pub redirect_to_https: bool,
    /// If not empty, only these networks may call.
    pub allow: Vec<IpNet>,
    /// These networks may not call (checked after `allow`).
    pub deny: Vec<IpNet>,
}

impl AccessPolicy {
    /// Whether the policy checks anything.
    pub fn is_empty(&self) -> bool {
        !self.require_https && self.allow.is_empty() && self.deny.is_empty()
    }

    /// The two policies combined: a route's lists add to the global ones.
    pub fn merged(&self, route: &AccessPolicy) -> AccessPolicy {
        AccessPolicy {
            require_https: self.require_https || route.require_https,
            redirect_to_https: self.redirect_to_https || route.redirect_to_https,
            allow: if route.allow.is_empty() {
                self.allow.clone()
            } else {
                route.allow.clone()
            },
            deny: self.deny.iter().chain(&route.deny).copied().collect(),
        }
    }
}

/// What the policy decided.
#[derive(Debug)]
pub(crate) enum Decision {
    /// Go on.
    Pass,
    /// Redirect to this HTTPS URL.
    Redirect(String),
}

/// Applies `policy` to a request.
pub(crate) fn check(
    policy: &AccessPolicy,
    https: bool,
    client: IpAddr,
    host: Option<&str>,
    path_and_query: &str,
    path: &str,
) -> Result<Decision, GatewayError> {
    if policy.require_https && !https {
        if policy.redirect_to_https
            && let Some(h) = host
        {
            return Ok(Decision::Redirect(format!("https://{h}{path_and_query}")));
        }
        return Err(GatewayError::new(codes::HTTPS_REQUIRED).param("path", path.to_owned()));
    }
    let allowed = policy.allow.is_empty() || policy.allow.iter().any(|n| n.contains(client));
    if !allowed || policy.deny.iter().any(|n| n.contains(client)) {
        return Err(GatewayError::new(codes::ACCESS_RESTRICTED)
            .param("client_ip", client.to_string())
            .param("path", path.to_owned())
            .extension("client_ip", client.to_string().into()));
    }
    Ok(Decision::Pass)
}

/// The policy stage: HTTPS only (refused or redirected), allowed and denied networks.
pub(crate) fn run(access: &AccessPolicy, ctx: &mut RequestCtx<'_>) -> Result<Flow, GatewayError> {
    let client = ctx.client_ip();
    let https = ctx.is_https();
    let pq = ctx.parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let decision = check(access, https, client, ctx.host().as_deref(), pq, ctx.path());
    match decision {
        Ok(Decision::Pass) => {
            ctx.trail.pass("policy");
            Ok(Flow::Continue)
        }
        Ok(Decision::Redirect(url)) => {
            let mut resp = Response::new(GatewayBody::empty());
            *resp.status_mut() = http::StatusCode::PERMANENT_REDIRECT;
            if let Ok(v) = HeaderValue::from_str(&url) {
                resp.headers_mut().insert(http::header::LOCATION, v);
            }
            ctx.trail
                .record("policy", "redirect", None, vec![("location", url)]);
            Ok(Flow::Respond(Box::new(resp)))
        }
        Err(e) => {
            ctx.trail.record(
                "policy",
                "reject",
                Some(e.code),
                vec![("client_ip", client.to_string())],
            );
            Err(e)
        }
    }
}

/// A route that does not forward: `not_implemented`, or `service_unavailable` with
/// `Retry-After` while under maintenance.
pub(crate) fn route_mode(mode: &RouteMode, ctx: &mut RequestCtx<'_>) -> Result<Flow, GatewayError> {
    let route = ctx
        .route
        .map_or_else(String::new, |r| r.config.name.clone());
    let err = match mode {
        RouteMode::Proxy => return Ok(Flow::Continue),
        RouteMode::NotImplemented => GatewayError::new(codes::NOT_IMPLEMENTED)
            .param("method", ctx.parts.method.to_string())
            .param("path", ctx.path().to_owned())
            .param("route", route),
        RouteMode::Maintenance { retry_after, until } => {
            let mut err = GatewayError::new(codes::SERVICE_UNAVAILABLE)
                .param("route", route)
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
            err
        }
    };
    ctx.trail
        .record("mode", "reject", Some(err.code), Vec::new());
    Err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_and_deny() {
        let p = AccessPolicy {
            allow: vec![IpNet::parse("10.0.0.0/8").unwrap()],
            deny: vec![IpNet::parse("10.9.0.0/16").unwrap()],
            ..Default::default()
        };
        let ok = |ip: &str| check(&p, true, ip.parse().unwrap(), None, "/", "/").is_ok();
        assert!(ok("10.1.2.3"));
        assert!(!ok("10.9.2.3"));
        assert!(!ok("192.0.2.1"));
        let https = AccessPolicy {
            require_https: true,
            redirect_to_https: true,
            ..Default::default()
        };
        match check(
            &https,
            false,
            "10.0.0.1".parse().unwrap(),
            Some("api.example.com"),
            "/a?b=1",
            "/a",
        )
        .unwrap()
        {
            Decision::Redirect(u) => assert_eq!(u, "https://api.example.com/a?b=1"),
            Decision::Pass => panic!(),
        }
    }
}
