//! Limit stages: the route's rate limits (`rate_limited`, with `Retry-After` and the
//! RateLimit fields) and the authenticated account's request quotas (`quota_exceeded`).

use crate::error::GatewayError;
use crate::limits::quota::Quotas;
use crate::limits::rate::{self, KeyBy, Limiter, PolicyState};
use crate::limits::shared::{OnFailure, PolicyKeys, SharedStore};
use crate::pipeline::context::{Flow, RequestCtx};
use candor_catalog::codes;
use http::header::RETRY_AFTER;
use http::{HeaderName, HeaderValue, StatusCode};
use std::sync::Arc;

/// `RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers).
pub(crate) static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit`.
pub(crate) static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// Some of a route's rate-limit policies: those known before authentication (address,
/// header, route) or those known after (client, account, API key).
#[derive(Debug)]
pub(crate) struct RateStage {
    /// The policies' limiters, shortest window first: a request refused by a short window
    /// is not counted against a longer one.
    pub(crate) limiters: Vec<Arc<Limiter>>,
    /// Each policy's count of refused requests (`/metrics`), in the order of `limiters`.
    pub(crate) refused: Vec<prometheus_client::metrics::counter::Counter>,
    /// Whether answers that passed carry the RateLimit fields.
    pub(crate) headers: bool,
    /// The status of the refusal, if not 429.
    pub(crate) status: Option<StatusCode>,
    /// The shared (Redis) store the policies count in, when `[limits.shared]` is set; the
    /// limiters above count while it is unreachable with `on_failure = "open"`.
    pub(crate) shared: Option<SharedStage>,
}

/// A rate-limit stage's policies in the shared store.
#[derive(Debug)]
pub(crate) struct SharedStage {
    /// The store.
    pub(crate) store: Arc<SharedStore>,
    /// Each policy's keys, in the order of the stage's limiters.
    pub(crate) keys: Vec<PolicyKeys>,
}

/// The bytes `ctx`'s request is counted under for `key`, with a tag byte so that a fallback
/// (an address where a header is missing) never shares a bucket with a value.
fn key_bytes(key: &KeyBy, ctx: &mut RequestCtx<'_>) -> (u8, Vec<u8>) {
    let principal = ctx.principal.as_ref();
    match key {
        KeyBy::Route => (b'r', Vec::new()),
        KeyBy::Client | KeyBy::ApiKey => match principal {
            Some(p) => (b'c', p.client_id.as_bytes().to_vec()),
            None => (b'i', rate::address_key(ctx.client_ip())),
        },
        KeyBy::Account => match principal {
            Some(p) => match &p.account {
                Some(a) => (b'a', a.as_bytes().to_vec()),
                None => (b'c', p.client_id.as_bytes().to_vec()),
            },
            None => (b'i', rate::address_key(ctx.client_ip())),
        },
        KeyBy::Header(h) => match ctx.parts.headers.get(h) {
            Some(v) => (b'h', v.as_bytes().to_vec()),
            None => (b'i', rate::address_key(ctx.client_ip())),
        },
        KeyBy::Address => (b'i', rate::address_key(ctx.client_ip())),
    }
}

/// Who a refused request was counted as, in words that quote no secret.
fn subject(key: &KeyBy, ctx: &mut RequestCtx<'_>) -> String {
    let route = ctx.route.map_or("", |r| r.config.name.as_str()).to_owned();
    let principal = ctx.principal.clone();
    match (key, principal) {
        (KeyBy::Route, _) => format!("on route {route} as a whole"),
        (KeyBy::Client, Some(p)) => format!("for client {}", p.client_id),
        (KeyBy::ApiKey, Some(p)) => format!("for API key {}", p.client_id),
        (KeyBy::Account, Some(p)) => match p.account {
            Some(a) => format!("for account {a}"),
            None => format!("for client {}", p.client_id),
        },
        (KeyBy::Header(h), _) if ctx.parts.headers.contains_key(h) => {
            format!("for this value of the {h} header")
        }
        _ => match ctx.client_ip() {
            std::net::IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
                format!("for address {v6} (counted with its /64)")
            }
            ip => format!("for address {ip}"),
        },
    }
}

/// Counts the request against each policy; refuses it at the first that is used up (and
/// gives back what its account's quotas counted). With several policies, each is read
/// first without counting: a request one of them refuses is counted by none.
pub(crate) fn run_rate(
    stage: &RateStage,
    quotas: &Quotas,
    ctx: &mut RequestCtx<'_>,
) -> Result<Flow, GatewayError> {
    if stage.limiters.len() > 1 {
        for (i, l) in stage.limiters.iter().enumerate() {
            let (tag, key) = key_bytes(&l.policy.key, ctx);
            if l.blocked(tag, &key).is_some() {
                return Err(refuse(stage, quotas, ctx, i, None));
            }
        }
    }
    for (i, l) in stage.limiters.iter().enumerate() {
        let (tag, key) = key_bytes(&l.policy.key, ctx);
        match l.check(tag, &key) {
            Ok(state) => ctx.rate_limits.push(state),
            Err(refusal) => return Err(refuse(stage, quotas, ctx, i, Some(refusal))),
        }
    }
    ctx.rate_limit_fields |= stage.headers;
    Ok(Flow::Continue)
}

/// `rate_limited` for a request the stage's policy `i` refuses (`refusal`: counted and
/// refused; `None`: found used up without counting). Every policy of the stage is shown;
/// those that would refuse too are violated as well, and Retry-After waits for all of
/// them.
fn refuse(
    stage: &RateStage,
    quotas: &Quotas,
    ctx: &mut RequestCtx<'_>,
    i: usize,
    refusal: Option<rate::Refusal>,
) -> GatewayError {
    let secs = crate::time::ceil_secs;
    // The states of policies of earlier stages, and of this stage's counted before `i`.
    let mut states: Vec<PolicyState> = std::mem::take(&mut ctx.rate_limits);
    let mut blocked = Vec::new();
    for (j, l) in stage.limiters.iter().enumerate() {
        let (tag, key) = key_bytes(&l.policy.key, ctx);
        let wait = match (&refusal, j == i) {
            (Some(r), true) => {
                states.push(r.state.clone());
                Some(r.retry_after)
            }
            _ => {
                // Those counted before `i` are already in `states`.
                if refusal.is_none() || j > i {
                    states.push(l.peek(tag, &key));
                }
                l.blocked(tag, &key).map(secs)
            }
        };
        if let Some(w) = wait {
            blocked.push((j, w));
        }
    }
    refusal_error(stage, quotas, ctx, i, states, &blocked)
}

/// `rate_limited` with the fields of `states` (every policy shown), for the stage's
/// policies `blocked` (index, seconds to wait) would refuse; Retry-After waits for all of
/// them. `first` is the policy named when none is found blocked (a race).
fn refusal_error(
    stage: &RateStage,
    quotas: &Quotas,
    ctx: &mut RequestCtx<'_>,
    first: usize,
    states: Vec<PolicyState>,
    blocked: &[(usize, u64)],
) -> GatewayError {
    let mut chosen = first;
    let mut wait = 0;
    let mut violated = Vec::new();
    for &(j, w) in blocked {
        let policy = &stage.limiters[j].policy;
        violated.push(policy.name.clone());
        if w > wait || violated.len() == 1 {
            wait = w.max(1);
            chosen = j;
        }
    }
    let p = &stage.limiters[chosen].policy;
    // What the limiter counts together (its key, an IPv6 address's /64) is told together.
    let identity = {
        let (tag, key) = key_bytes(&p.key, ctx);
        let route = ctx.route.map_or("", |r| r.config.name.as_str());
        crate::events::told::identity(&[route.as_bytes(), p.name.as_bytes(), &[tag], &key])
    };
    let retry_at = crate::time::rfc3339(crate::time::unix_now() + wait as i64);
    let mut e = GatewayError::new(codes::RATE_LIMITED)
        .param("policy", p.name.clone())
        .param("limit", p.limit.to_string())
        .param("window", p.window_words())
        .param("subject", subject(&p.key, ctx))
        .param("retry_after", wait.to_string())
        .param("retry_at", retry_at.clone())
        .header(RETRY_AFTER, &wait.to_string())
        .header(RATELIMIT_POLICY.clone(), &rate::policy_field(&states))
        .header(RATELIMIT.clone(), &rate::state_field(&states))
        .extension("violated-policies", violated.into())
        .extension("limit", p.limit.into())
        .extension("window", p.window.as_secs().into())
        .extension("retry_after", wait.into())
        .extension("retry_at", retry_at.into());
    ctx.limited = Some(identity);
    if let Some(s) = stage.status {
        e = e.status(s);
    }
    ctx.trail.record(
        "rate_limit",
        "reject",
        Some(codes::RATE_LIMITED),
        vec![("policy", p.name.clone())],
    );
    if let Some(refused) = stage.refused.get(chosen) {
        refused.inc();
    }
    refund_quota(quotas, ctx);
    e
}

/// Counts the request in the shared store: one atomic call for all of the stage's
/// policies (a request one refuses is counted by none). While the store is unreachable,
/// the local limiters count (`on_failure = "open"`) or the request is refused with
/// `rate_limit_store_unavailable` (`"closed"`).
pub(crate) async fn run_shared(
    stage: &RateStage,
    shared: &SharedStage,
    quotas: &Quotas,
    ctx: &mut RequestCtx<'_>,
) -> Result<Flow, GatewayError> {
    let asks: Vec<_> = stage
        .limiters
        .iter()
        .zip(&shared.keys)
        .map(|(l, k)| {
            let (tag, key) = key_bytes(&l.policy.key, ctx);
            k.ask(tag, &key)
        })
        .collect();
    let (counted, answers) = match shared.store.check(&asks).await {
        Ok(a) => a,
        Err(down) => {
            return match shared.store.config.on_failure {
                OnFailure::Open => {
                    ctx.trail.record(
                        "rate_limit",
                        "local",
                        None,
                        vec![("shared_store", down.cause)],
                    );
                    run_rate(stage, quotas, ctx)
                }
                OnFailure::Closed => Err(store_unavailable(shared, quotas, ctx, down.cause)),
            };
        }
    };
    let mut states = Vec::with_capacity(answers.len());
    let mut blocked = Vec::new();
    for (j, (l, a)) in stage.limiters.iter().zip(answers).enumerate() {
        let o = crate::limits::shared::outcome_leased(&l.policy, counted, a.owed, a.wait, a.leased);
        states.push(o.state);
        if let Some(w) = o.blocked {
            blocked.push((j, w));
        }
    }
    if !counted {
        let mut all = std::mem::take(&mut ctx.rate_limits);
        all.extend(states);
        let first = blocked.first().map_or(0, |b| b.0);
        return Err(refusal_error(stage, quotas, ctx, first, all, &blocked));
    }
    ctx.rate_limits.extend(states);
    ctx.rate_limit_fields |= stage.headers;
    Ok(Flow::Continue)
}

/// `rate_limit_store_unavailable`: the shared store is unreachable and the gateway is set
/// to refuse what it cannot count.
fn store_unavailable(
    shared: &SharedStage,
    quotas: &Quotas,
    ctx: &mut RequestCtx<'_>,
    cause: String,
) -> GatewayError {
    let route = ctx.route.map_or("", |r| r.config.name.as_str()).to_owned();
    let wait = shared.store.retry_after();
    ctx.trail.record(
        "rate_limit",
        "reject",
        Some(codes::RATE_LIMIT_STORE_UNAVAILABLE),
        vec![("shared_store", cause.clone())],
    );
    refund_quota(quotas, ctx);
    GatewayError::new(codes::RATE_LIMIT_STORE_UNAVAILABLE)
        .param("route", route)
        .param("cause", cause.clone())
        .param("retry_after", wait.to_string())
        .header(RETRY_AFTER, &wait.to_string())
        .extension("cause", cause.into())
        .extension("retry_after", wait.into())
}

/// Adds the RateLimit fields of the policies `states` passed to an answer.
pub(crate) fn add_fields(headers: &mut http::HeaderMap, states: &[PolicyState]) {
    if let Ok(v) = HeaderValue::from_str(&rate::policy_field(states)) {
        headers.insert(RATELIMIT_POLICY.clone(), v);
    }
    if let Ok(v) = HeaderValue::from_str(&rate::state_field(states)) {
        headers.insert(RATELIMIT.clone(), v);
    }
}

/// The principal's account, if the request has one.
fn account<'c>(ctx: &'c RequestCtx<'_>) -> Option<&'c crate::identity::store::Account> {
    let id = ctx.principal.as_ref()?.account.as_ref()?;
    ctx.snapshot.as_ref()?.accounts.get(id)
}

/// Gives back the request's count in its account's quotas, if it was counted.
pub(crate) fn refund_quota(quotas: &Quotas, ctx: &mut RequestCtx<'_>) {
    if !ctx.quota_counted {
        return;
    }
    ctx.quota_counted = false;
    if let Some(account) = account(ctx) {
        quotas.refund(account, crate::time::unix_now());
    }
}

/// Counts the request against the principal's account quotas; refuses it once one is
/// used. Requests without an account pass.
pub(crate) fn run(
    quotas: &Quotas,
    status: Option<StatusCode>,
    ctx: &mut RequestCtx<'_>,
) -> Result<Flow, GatewayError> {
    let Some(account) = account(ctx) else {
        return Ok(Flow::Continue);
    };
    let counted = account.quota_per_day.is_some() || account.quota_per_month.is_some();
    match quotas.count(account, crate::time::unix_now()) {
        Ok(()) => {
            ctx.quota_counted = counted;
            Ok(Flow::Continue)
        }
        Err(mut e) => {
            if let Some(s) = status {
                e = e.status(s);
            }
            // A quota is told once a second per account and period.
            let param = |name| {
                e.params
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map_or("", |(_, v)| v.as_str())
            };
            ctx.limited = Some(crate::events::told::identity(&[
                b"quota",
                param("period").as_bytes(),
                param("account").as_bytes(),
            ]));
            ctx.trail
                .record("limit", "reject", Some(e.code), Vec::new());
            Err(e)
        }
    }
}
