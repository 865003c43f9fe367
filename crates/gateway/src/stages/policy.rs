//! Transport policy stage: whether this route may be called over plain HTTP and from this
//! client address. The client address honours the trusted-proxy list.

use crate::error::GatewayError;
use crate::http::address::IpNet;
use candor_catalog::codes;
use http::HeaderMap;
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

/// The client's address: the peer, or — when the peer is a trusted proxy — the nearest
/// untrusted address in X-Forwarded-For.
pub(crate) fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    if !trusted.iter().any(|n| n.contains(peer)) {
        return peer;
    }
    let chain: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse().ok())
        .collect();
    chain
        .iter()
        .rev()
        .find(|a| !trusted.iter().any(|n| n.contains(**a)))
        .copied()
        .or(chain.first().copied())
        .unwrap_or(peer)
}

/// Whether the request reached the edge over HTTPS (directly, or per a trusted proxy).
pub(crate) fn is_https(tls: bool, peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> bool {
    tls || (trusted.iter().any(|n| n.contains(peer))
        && headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|p| p.trim().eq_ignore_ascii_case("https")))
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

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn client_address_behind_trusted_proxies() {
        let trusted = [IpNet::parse("10.0.0.0/8").unwrap()];
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("203.0.113.9, 10.0.0.7"),
        );
        assert_eq!(
            client_ip("10.0.0.1".parse().unwrap(), &h, &trusted),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_ip("198.51.100.1".parse().unwrap(), &h, &trusted),
            "198.51.100.1".parse::<IpAddr>().unwrap(),
            "untrusted peers cannot claim an address"
        );
    }

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
