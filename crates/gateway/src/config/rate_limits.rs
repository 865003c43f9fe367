//! A route's `[[routes.rate_limits]]` policies and the status of its limit answers
//! (`rate_limit_status`, `quota_status`), read into `RouteLimits`.

use super::did_you_mean;
use super::reader::{Problems, TableReader};
use crate::limits::rate::{KeyBy, PolicyConfig};
use crate::stages::authenticate::AuthConfig;
use http::StatusCode;

const RATE_LIMIT: &[&str] = &["name", "limit", "window", "burst", "key"];
const KEYS: &[&str] = &[
    "client", "account", "api_key", "address", "route", "header:",
];

/// What a route limits: its rate-limit policies and the statuses of limit answers.
#[derive(Clone, Debug, Default)]
pub(crate) struct RouteLimits {
    /// The policies, shortest window first.
    pub(crate) policies: Vec<PolicyConfig>,
    /// Whether answers that passed carry the RateLimit fields too.
    pub(crate) headers: bool,
    /// The status of `rate_limited` answers, if not 429.
    pub(crate) rate_status: Option<StatusCode>,
    /// The status of `quota_exceeded` answers, if not 403.
    pub(crate) quota_status: Option<StatusCode>,
}

/// A status for limit answers: one of `allowed`.
fn status(r: &TableReader<'_, '_>, p: &mut Problems<'_>, key: &str) -> Option<StatusCode> {
    const ALLOWED: [i64; 4] = [403, 422, 429, 503];
    let n = r.integer(p, key, 100, 599)?;
    if !ALLOWED.contains(&n) {
        p.at(
            r.get(key).map_or(r.span.clone(), |v| v.span()),
            &r.key_path(key),
            format!("{n} is not a status for a limit answer"),
        )
        .expected = Some("403, 422, 429 or 503".into());
        return None;
    }
    StatusCode::from_u16(n as u16).ok()
}

/// Reads the route's limits; `auth` is how the route authenticates, if it does (keys by
/// client, account or API key need it).
pub(super) fn read(
    r: &TableReader<'_, '_>,
    p: &mut Problems<'_>,
    auth: Option<&AuthConfig>,
) -> RouteLimits {
    let mut policies: Vec<PolicyConfig> = Vec::new();
    let tables = r.tables(p, "rate_limits", RATE_LIMIT);
    let several = tables.len() > 1;
    for t in tables {
        if let Some(policy) = read_policy(&t, p, auth, several) {
            if policies.iter().any(|o| o.name == policy.name) {
                p.at(
                    t.get("name").map_or(t.span.clone(), |v| v.span()),
                    &t.key_path("name"),
                    format!(
                        "a policy `{}` is already declared on this route",
                        policy.name
                    ),
                )
                .expected = Some("a name of its own for each policy of the route".into());
            } else {
                policies.push(policy);
            }
        }
        t.finish(p);
    }
    policies.sort_by_key(|p| p.window);
    RouteLimits {
        policies,
        headers: r.boolean(p, "rate_limit_headers").unwrap_or(true),
        rate_status: status(r, p, "rate_limit_status"),
        quota_status: status(r, p, "quota_status"),
    }
}

fn read_policy(
    t: &TableReader<'_, '_>,
    p: &mut Problems<'_>,
    auth: Option<&AuthConfig>,
    several: bool,
) -> Option<PolicyConfig> {
    let before = p.list.len();
    let name = match t.string(p, "name") {
        Some((n, span)) => {
            let fits = !n.is_empty()
                && n.len() <= 64
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
            if !fits {
                p.at(
                    span,
                    &t.key_path("name"),
                    format!("`{n}` is not a policy name"),
                )
                .expected = Some("up to 64 letters, digits, `-`, `_` or `.`".into());
            }
            n
        }
        None => {
            if several {
                p.at(
                    t.span.clone(),
                    &t.key_path("name"),
                    "missing: a route with several policies names each".into(),
                )
                .expected = Some("a name such as \"burst\" or \"daily\"".into());
            }
            "default".to_owned()
        }
    };
    let limit = t.integer(p, "limit", 1, 1_000_000_000);
    if limit.is_none() && t.get("limit").is_none() {
        p.at(t.span.clone(), &t.key_path("limit"), "missing".into())
            .expected = Some("the number of requests allowed per window".into());
    }
    let window = t.duration(p, "window");
    match window {
        None if t.get("window").is_none() => {
            p.at(t.span.clone(), &t.key_path("window"), "missing".into())
                .expected = Some("a duration such as \"1s\", \"1m\" or \"1d\"".into());
        }
        Some(w) if w.as_secs() == 0 || w.subsec_nanos() != 0 || w.as_secs() > 366 * 86_400 => {
            p.at(
                t.get("window").map_or(t.span.clone(), |v| v.span()),
                &t.key_path("window"),
                "must be a whole number of seconds, from 1 s to 366 days".into(),
            );
        }
        _ => {}
    }
    let burst = t.integer(p, "burst", 1, 1_000_000_000);
    if let (Some(b), Some(l)) = (burst, limit)
        && b > l
    {
        p.at(
            t.get("burst").map_or(t.span.clone(), |v| v.span()),
            &t.key_path("burst"),
            format!("{b} is more than the limit ({l}): a burst is at most the window's quota"),
        )
        .expected = Some(format!("1 to {l}, or a higher limit"));
    }
    let key = match t.string(p, "key") {
        None => KeyBy::Client,
        Some((k, span)) => match KeyBy::parse(&k) {
            Ok(key) => key,
            Err(e) => {
                let problem = p.at(span, &t.key_path("key"), e);
                problem.suggestion = did_you_mean(&k, KEYS);
                problem.expected =
                    Some("client, account, api_key, address, route or header:<name>".into());
                // Reported; no further problem about what it would need.
                KeyBy::Route
            }
        },
    };
    let key = if t.get("key").is_none() && auth.is_none() {
        // Without credentials, the default is the client's address.
        KeyBy::Address
    } else {
        key
    };
    if key.needs_principal() {
        let at = t.get("key").map_or(t.span.clone(), |v| v.span());
        match auth {
            None => {
                p.at(
                    at,
                    &t.key_path("key"),
                    format!(
                        "the route does not authenticate, so requests have no {}",
                        key.describe()
                    ),
                )
                .expected = Some("address, route or header:<name>, or auth on the route".into());
            }
            Some(a) if key == KeyBy::ApiKey && a.api_key.is_none() => {
                p.at(
                    at,
                    &t.key_path("key"),
                    "the route takes bearer tokens, not API keys".into(),
                )
                .expected = Some("client or account".into());
            }
            _ => {}
        }
    }
    if p.list.len() > before {
        return None;
    }
    let limit = limit? as u32;
    Some(PolicyConfig {
        name,
        limit,
        window: window?,
        burst: burst.map_or(limit, |b| b as u32),
        key,
    })
}
