//! Forward stage: send the request to the route's upstream over a shared keep-alive pool
//! and stream the answer back; every failure becomes its own catalog code naming the route
//! and the cause.

use crate::config::Timeouts;
use crate::config::{RouteConfig, Upstream};
use crate::error::{ErrorSource, GatewayError};
use crate::http::body::{BodyFault, BodyWatch, GatewayBody, UpstreamBody};
use crate::http::trace::TraceContext;
use crate::pipeline::context::{Downstream, RequestCtx};
use crate::stages::authenticate::Principal;
use crate::stages::negotiate::BodyFormat;
use crate::stages::respond::{PROBLEM_JSON, X_REQUEST_ID};
use crate::stages::transport::payload_too_large;
use crate::stages::validate::Pending;
use crate::upstream::Target;
use crate::upstream::pool::{Caps, Dest, Pool, PooledBody, SendError};
use crate::upstream::targets::{NoneHealthy, Targets, backoff};
use bytes::Bytes;
use candor_catalog::{Retry, codes};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::future::Future;
use std::time::{Duration, Instant};

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
/// A header named as the `close` connection option (reserved, RFC 9110 §7.6.1).
static CLOSE: HeaderName = HeaderName::from_static("close");
static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// The longest a request waits for one of its upstream's connections to come free (half
/// the route's timeout when that is shorter).
const MAX_QUEUE_WAIT: Duration = Duration::from_secs(5);

/// The most of an upstream error body kept when wrapping it into the envelope.
const WRAP_BODY_LIMIT: usize = 64 * 1024;

/// The shared upstream client: one keep-alive pool for the whole process, kept across
/// configuration reloads.
#[derive(Clone, Debug, Default)]
pub(crate) struct Forwarder {
    pool: Pool,
    /// Every target's health, by address.
    pub(crate) targets: std::sync::Arc<Targets>,
}

impl Forwarder {
    /// A forwarder with an empty pool.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// The connection pool (health checks use it too).
    pub(crate) fn pool(&self) -> &Pool {
        &self.pool
    }
}

/// Removes hop-by-hop fields (RFC 9110 §7.6.1): Connection and every field it names, plus
/// Keep-Alive, Proxy-Connection, TE, Trailer, Transfer-Encoding and Upgrade.
/// Fields a `Connection` header may not make hop-by-hop: what the message's body is
/// (checked by the gateway on routes that negotiate), its host, and the fields the gateway
/// sets itself (identity, request id, forwarding). Found by the attack probe:
/// `Connection: content-type` made the gateway drop the Content-Type it had just checked.
fn end_to_end(n: &HeaderName) -> bool {
    n == header::CONTENT_TYPE
        || n == header::CONTENT_LENGTH
        || n == header::CONTENT_ENCODING
        || n == header::HOST
        || n == header::FORWARDED
        || n.as_str().starts_with("x-candor-")
        || n.as_str().starts_with("x-forwarded-")
        || n.as_str() == "x-request-id"
}

pub(crate) fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none of them, or only `Connection: keep-alive`: one pass over the
    // names (standard names compare as enum tags) says which are there, and only those are
    // looked up and removed.
    const HOP_BY_HOP: [&HeaderName; 7] = [
        &header::CONNECTION,
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &header::TE,
        &header::TRAILER,
        &header::TRANSFER_ENCODING,
        &header::UPGRADE,
    ];
    let mut present = 0u8;
    for n in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|h| *h == n) {
            present |= 1 << i;
        }
    }
    if present == 0 {
        return;
    }
    if present & 1 != 0 {
        // The options `Connection` lists: `keep-alive` and `close` are the common ones, and
        // are known names (no header name is made for them).
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|n| !n.eq_ignore_ascii_case("keep-alive"))
            .filter_map(|n| {
                if n.eq_ignore_ascii_case("close") {
                    Some(CLOSE.clone())
                } else {
                    HeaderName::from_bytes(n.as_bytes()).ok()
                }
            })
            .filter(|n| !end_to_end(n))
            .collect();
        for n in named {
            headers.remove(n);
        }
    }
    for (i, n) in HOP_BY_HOP.into_iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(n);
        }
    }
}

/// The fields besides `X-Forwarded-*` by which a proxy tells an upstream the client's
/// address: from a client they are its own word about itself.
/// (Those starting with `x-` first: [`claims_origin`] looks only at them for such a name.)
const CLIENT_CLAIMS: [&str; 6] = [
    "x-real-ip",
    "x-client-ip",
    "x-cluster-client-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
];

/// Whether a client (not a trusted proxy) sending `name` claims to say where a request
/// came from: `Forwarded` (RFC 7239), any `X-Forwarded-*`, or one of [`CLIENT_CLAIMS`].
/// (A name spelt with `_` for `-` counts as the same name: CGI, PHP-FPM, WSGI and many
/// frameworks read `X_Real_IP` as `X-Real-IP`, found by the attack probe.)
fn claims_origin(name: &HeaderName) -> bool {
    let n = name.as_str().as_bytes();
    // Looked at on every request: most names are told apart by their first letter.
    let is = |claim: &str| same_name(n, claim.as_bytes());
    match n.first() {
        Some(b'x') => {
            n.len() > 12 && same_name(&n[..12], b"x-forwarded-")
                || CLIENT_CLAIMS[..3].iter().any(|c| is(c))
        }
        Some(b't' | b'c' | b'f') => {
            *name == header::FORWARDED || CLIENT_CLAIMS.iter().any(|c| is(c))
        }
        _ => false,
    }
}

/// Whether header name `n` (lower case) is `claim`, reading `_` as `-`.
fn same_name(n: &[u8], claim: &[u8]) -> bool {
    n.len() == claim.len()
        && n.iter()
            .zip(claim)
            .all(|(&a, &b)| a == b || (a == b'_' && b == b'-'))
}

/// Says where the request came from: `X-Forwarded-For` (extended when the peer is a
/// trusted proxy, else replaced by the peer's address), `X-Forwarded-Proto` and
/// `X-Forwarded-Host` (a trusted proxy's kept). Every other field by which a client can
/// claim where a request came from (`Forwarded`, the other `X-Forwarded-*`, `X-Real-IP`
/// and the like: [`claims_origin`]) is kept only from a trusted proxy: from anyone else it
/// is the client's word about itself, and an upstream that reads it would take it for the
/// gateway's.
fn set_forwarded(
    headers: &mut HeaderMap,
    down: &Downstream<'_>,
    original_host: Option<HeaderValue>,
) {
    let trusted = down
        .trusted_proxies
        .iter()
        .any(|n| n.contains(down.peer.ip()));
    // One pass over the names finds them; most requests carry none.
    if !trusted && headers.keys().any(claims_origin) {
        let claimed: Vec<HeaderName> = headers
            .keys()
            .filter(|n| claims_origin(n))
            .cloned()
            .collect();
        for n in claimed {
            headers.remove(n);
        }
    }
    let mut xff = Vec::with_capacity(48);
    if trusted && let Some(prior) = headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        xff.extend_from_slice(prior.as_bytes());
        xff.extend_from_slice(b", ");
    }
    crate::http::address::push_ip(&mut xff, down.peer.ip());
    if let Ok(v) = HeaderValue::from_maybe_shared(bytes::Bytes::from(xff)) {
        headers.insert(X_FORWARDED_FOR.clone(), v);
    }
    if !(trusted && headers.contains_key(&X_FORWARDED_PROTO)) {
        let proto = if down.tls { "https" } else { "http" };
        headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    }
    if !(trusted && headers.contains_key(&X_FORWARDED_HOST))
        && let Some(h) = original_host
    {
        headers.insert(X_FORWARDED_HOST.clone(), h);
    }
}

fn upstream_uri(up: &Upstream, path: &str, query: Option<&str>) -> Result<Uri, http::Error> {
    let mut pq =
        String::with_capacity(up.base_path.len() + path.len() + query.map_or(0, |q| q.len() + 1));
    pq.push_str(&up.base_path);
    pq.push_str(path);
    if let Some(q) = query {
        pq.push('?');
        pq.push_str(q);
    }
    // Origin form: the connection already goes to the upstream's address.
    Uri::builder().path_and_query(pq).build()
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = err.source();
    }
    parts.join(": ")
}

static X_CANDOR_CLIENT: HeaderName = HeaderName::from_static("x-candor-client");
static X_CANDOR_ACCOUNT: HeaderName = HeaderName::from_static("x-candor-account");
static X_CANDOR_SCOPES: HeaderName = HeaderName::from_static("x-candor-scopes");

/// The forward stage: the request goes to `route`'s upstream, with the principal's identity
/// headers; the answer streams back. Records the upstream's time and status.
pub(crate) async fn run(
    fwd: &Forwarder,
    route: &RouteConfig,
    ctx: &mut RequestCtx<'_>,
    max_body: u64,
    timeouts: &Timeouts,
) -> Result<Response<GatewayBody>, GatewayError> {
    let bodyless = !ctx.has_body();
    let (mut parts, body) = ctx.take_request()?;
    identity_headers(&mut parts.headers, ctx.principal.as_ref());
    let started = std::time::Instant::now();
    let mut tries = Vec::new();
    let resp = forward(
        fwd,
        route,
        Exchange {
            parts,
            body,
            bodyless,
            path: ctx.forward_path.as_deref(),
            down: &ctx.down,
            request_id: ctx.request_id,
            max_body,
            body_idle: timeouts.request_body_idle,
            response_idle: timeouts.response_body_idle,
            body_format: ctx.body_format,
            validation: ctx.validation.take(),
            trace: ctx.trace,
        },
        &mut tries,
        &mut ctx.upstream_reached,
        &mut ctx.upstream_time,
    )
    .await;
    // Addresses go to the log (the trail), never to the client.
    for (target, outcome) in tries {
        ctx.trail.record(
            "forward",
            "retry",
            None,
            vec![("target", target.display.clone()), ("outcome", outcome)],
        );
    }
    let mut facts = Vec::with_capacity(2);
    let mut text = itoa::Buffer::new();
    facts.push((
        "upstream_ms",
        text.format(started.elapsed().as_millis()).to_owned(),
    ));
    match &resp {
        Ok(r) => {
            facts.push(("status", text.format(r.status().as_u16()).to_owned()));
            if let Some(UpstreamProblem(Some(code))) = r.extensions().get() {
                facts.push(("upstream_code", code.clone()));
            }
            ctx.trail.record("forward", "response", None, facts);
        }
        Err(e) => ctx.trail.record("forward", "fail", Some(e.code), facts),
    }
    resp
}

/// Identity headers come from the gateway only, never from the client: whatever the client
/// sent is removed, and the authenticated principal's are set.
fn identity_headers(headers: &mut HeaderMap, principal: Option<&Principal>) {
    if headers.keys().any(|k| k.as_str().starts_with("x-candor-")) {
        for h in [&X_CANDOR_CLIENT, &X_CANDOR_ACCOUNT, &X_CANDOR_SCOPES] {
            headers.remove(h);
        }
    }
    let Some(principal) = principal else {
        return;
    };
    if let Ok(v) = HeaderValue::from_str(&principal.client_id) {
        headers.insert(X_CANDOR_CLIENT.clone(), v);
    }
    if let Some(v) = principal
        .account
        .as_deref()
        .and_then(|a| HeaderValue::from_str(a).ok())
    {
        headers.insert(X_CANDOR_ACCOUNT.clone(), v);
    }
    if let Ok(v) = HeaderValue::from_str(&principal.scopes.join(" ")) {
        headers.insert(X_CANDOR_SCOPES.clone(), v);
    }
}

/// One exchange with the upstream: the request and what it is sent with.
struct Exchange<'a> {
    parts: http::request::Parts,
    body: Incoming,
    /// The request has no body (a retry can send it again).
    bodyless: bool,
    /// The normalised path when it differs from the request's.
    path: Option<&'a str>,
    down: &'a Downstream<'a>,
    request_id: &'a HeaderValue,
    max_body: u64,
    /// `timeouts.request_body_idle`.
    body_idle: Duration,
    /// `timeouts.response_body_idle`.
    response_idle: Duration,
    /// The format the body is checked against before it is sent, if any.
    body_format: Option<BodyFormat>,
    /// The route's contract, when the body is still to be checked against it.
    validation: Option<Pending>,
    /// The request's trace: the upstream gets this hop's `traceparent`.
    trace: TraceContext,
}

/// A body larger than this is parsed and checked on the blocking pool, not on a worker.
const BLOCKING_BODY: usize = 64 * 1024;

/// At most this many large bodies are checked at once (each may hold hundreds of
/// megabytes while it is); others wait for a turn (as many as there are connections, each
/// check bounded: a body of more than 10,000 values is checked to its first problem).
static LARGE_CHECKS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// Parses a JSON body as the contract reads it and checks it, with the parameters'
/// problems: malformed_body when it does not parse (or cannot be checked: too deep, a
/// number out of range, a key twice), else validation_failed with every problem. A large
/// body is checked off the async workers, a few at a time.
async fn check_json(contract: Pending, bytes: Bytes) -> Result<(), GatewayError> {
    let large = bytes.len() > BLOCKING_BODY;
    let run = move || {
        if contract.accepts_at_once(&bytes) {
            return Ok(());
        }
        match crate::stages::validate::parse_json(&bytes) {
            Ok(v) => contract.finish(Some(&v)),
            Err(e) => Err(crate::stages::negotiate::json_malformed(&bytes, &e)),
        }
    };
    if !large {
        return run();
    }
    // The semaphore is static and never closed: acquiring cannot fail.
    let permit = LARGE_CHECKS.acquire().await.ok();
    let result = tokio::task::spawn_blocking(run).await.unwrap_or_else(|e| {
        Err(GatewayError::new(codes::INTERNAL_ERROR)
            .param("stage", format!("validate: checking the body: {e}"))
            .source(ErrorSource::Internal))
    });
    drop(permit);
    result
}

/// Forwards the request to `route`'s upstream.
async fn forward<'r>(
    fwd: &Forwarder,
    route: &'r RouteConfig,
    exchange: Exchange<'_>,
    tries: &mut Vec<(&'r Target, String)>,
    reached: &mut bool,
    upstream_time: &mut Option<Duration>,
) -> Result<Response<GatewayBody>, GatewayError> {
    let Exchange {
        mut parts,
        body,
        bodyless,
        path,
        down,
        request_id,
        max_body,
        body_idle,
        response_idle,
        body_format,
        validation,
        trace,
    } = exchange;
    let mut held: Option<Bytes> = None;
    let up = route.upstream.as_ref().ok_or_else(|| {
        GatewayError::new(codes::INTERNAL_ERROR)
            .param("stage", "forward: route has no upstream")
            .source(ErrorSource::Internal)
    })?;
    let uri =
        upstream_uri(up, path.unwrap_or(parts.uri.path()), parts.uri.query()).map_err(|e| {
            GatewayError::new(codes::INTERNAL_ERROR)
                .param("stage", format!("forward: building the upstream URL: {e}"))
                .source(ErrorSource::Internal)
        })?;
    // With an absolute-form target the target's authority is the host, not the Host
    // header (RFC 9112 §3.2.2): the same host the request was routed on.
    let original_host = parts
        .uri
        .authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        .or_else(|| parts.headers.get(header::HOST).cloned());
    remove_hop_by_hop(&mut parts.headers);
    set_forwarded(&mut parts.headers, down, original_host.clone());
    parts
        .headers
        .insert(X_REQUEST_ID.clone(), request_id.clone());
    trace.propagate(&mut parts.headers);
    let host = if route.preserve_host {
        original_host
    } else {
        Some(up.targets[0].host_header.clone())
    };
    if let Some(h) = host {
        parts.headers.insert(header::HOST, h);
    }
    // The client's method and target stay for the detail of an answer blaming its body.
    let request = (parts.method.clone(), std::mem::replace(&mut parts.uri, uri));
    parts.version = Version::HTTP_11;
    let watch = BodyWatch::new();
    let mut body = UpstreamBody::new(body, max_body, body_idle, watch.clone());
    if let Some(format) = body_format {
        // Read whole and checked first: nothing of a body that is not what its
        // Content-Type says reaches the upstream.
        let bytes = match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => {
                let start = format!("{} {}", request.0, request.1.path());
                let fault = watch.fault().cloned().unwrap_or(BodyFault::EndedEarly(0));
                return Err(body_error(&fault, &start, max_body, body_idle));
            }
        };
        // An empty body (chunked `0`, an empty HTTP/2 DATA frame) is no body to check.
        match validation {
            // Well formed and then as its contract says: one parse for both.
            Some(contract) if format == BodyFormat::Json => {
                if bytes.is_empty() {
                    contract.finish(None)?;
                } else {
                    check_json(contract, bytes.clone()).await?;
                }
            }
            // Another format the route accepts: well formed, then the parameters' problems.
            other => {
                if !bytes.is_empty() {
                    format.check(&bytes)?;
                }
                if let Some(contract) = other {
                    contract.finish_unchecked_body()?;
                }
            }
        }
        held = Some(bytes.clone());
        body = UpstreamBody::held(bytes, watch.clone());
    } else if let Some(contract) = validation {
        // A body in a type the gateway reads no format of: the parameters' problems.
        contract.finish_unchecked_body()?;
    }
    let idempotent = matches!(
        parts.method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    ) || parts.headers.contains_key(&IDEMPOTENCY_KEY);
    // A request sent once can be sent again only with its body: held (checked above) or
    // none at all.
    let replay = held.or_else(|| bodyless.then(Bytes::new));
    let caps = Caps {
        max_connections: up.max_connections,
        max_queue: up.max_queue,
        queue_wait: (route.timeout / 2).min(MAX_QUEUE_WAIT),
        connect_timeout: up.connect_timeout,
    };
    let policy = &up.retry;
    let _in_flight = up.budget.request();
    let mut retrying = None;
    let mut req = Some(Request::from_parts(parts, body));
    let mut tried = 0u64;
    let mut attempt = 0u32;
    let mut budget_spent = false;
    // The answer of the last try while its retry is being made.
    let mut previous = None;
    let sending = Instant::now();
    let (result, target) = loop {
        let pick = match fwd.targets.pick(up, tried) {
            Ok(p) => p,
            // A retry with no target left: the last try's answer stands.
            Err(none) => match previous.take() {
                Some((result, target)) => {
                    tries.pop();
                    break (result, target);
                }
                None => return Err(no_healthy(route, none)),
            },
        };
        tried |= 1 << pick.index;
        let Some(mut r) = req.take() else {
            return Err(GatewayError::new(codes::INTERNAL_ERROR)
                .param("stage", "forward: no request left to send")
                .source(ErrorSource::Internal));
        };
        if up.targets.len() > 1 && !route.preserve_host {
            r.headers_mut()
                .insert(header::HOST, pick.target.host_header.clone());
        }
        let more = attempt < policy.retries;
        // What a try that failed after the request went out is retried with.
        let copy = match &replay {
            Some(b) if more && idempotent && (policy.on_reset || !policy.on_status.is_empty()) => {
                Some(copy_of(&r, b, &watch))
            }
            _ => None,
        };
        // A retry replaces the answer held back for it.
        drop(previous.take());
        let outstanding = Targets::start(&pick);
        // Pinned here, waited on by reference: the send is kept once in this future's state,
        // not again in the wait's.
        let send = fwd.pool.send(
            Dest {
                authority: &pick.target.authority,
                tls: up.tls.as_ref(),
            },
            r,
            caps,
        );
        tokio::pin!(send);
        let sent = upstream_wait(send, route.timeout, &watch).await;
        drop(outstanding);
        if watch.fault().is_some() {
            break (sent, pick.target);
        }
        // Why this try failed, what the next one sends, and the answer if it is not sent.
        let (cause, next, fallback) = match sent {
            Err(()) => {
                *reached = true;
                fwd.targets.failed(
                    up,
                    &pick,
                    &format!("no response within {}", human_duration(route.timeout)),
                );
                break (Err(()), pick.target);
            }
            Ok(Ok(resp)) => {
                *reached = true;
                let status = resp.status().as_u16();
                if !(502..=504).contains(&status) {
                    Targets::succeeded(&pick);
                    break (Ok(Ok(resp)), pick.target);
                }
                let cause = format!("answered {status}");
                fwd.targets.failed(up, &pick, &cause);
                match copy {
                    Some(c) if policy.on_status.contains(&status) => (cause, c, Ok(Ok(resp))),
                    _ => break (Ok(Ok(resp)), pick.target),
                }
            }
            Ok(Err(mut failed)) => {
                // Written, at least in part: the upstream may have acted on it.
                *reached |= failed.unsent.is_none();
                let overloaded = matches!(failed.error, SendError::Overloaded { .. });
                let cause = match &failed.error {
                    SendError::Connect(c) => c.clone(),
                    SendError::Exchange(e) => exchange_words(e),
                    SendError::Overloaded { limit, .. } => {
                        format!("all {limit} of its connections were busy")
                    }
                };
                if !overloaded {
                    fwd.targets.failed(up, &pick, &cause);
                }
                // Not a byte went out: any request may go again (to another target, for
                // an overloaded one). Once it went out: a copy, for requests that may.
                let unsent_may_go = if overloaded {
                    up.targets.len() > 1
                } else {
                    policy.on_connect
                };
                let next = match failed.unsent.take() {
                    Some(unsent) if unsent_may_go => Some(unsent),
                    _ if policy.on_reset && matches!(failed.error, SendError::Exchange(_)) => copy,
                    _ => None,
                };
                match next {
                    Some(n) if more => (cause, n, Ok(Err(failed))),
                    _ => break (Ok(Err(failed)), pick.target),
                }
            }
        };
        // Retries stay within the budget: a share of the requests in flight (this request's
        // previous retry gives its slot back first).
        drop(retrying.take());
        let Some(slot) = up.budget.retry(policy.budget) else {
            budget_spent = true;
            break (fallback, pick.target);
        };
        previous = Some((fallback, pick.target));
        retrying = Some(slot);
        tries.push((pick.target, cause));
        attempt += 1;
        tokio::time::sleep(backoff(policy.backoff, attempt)).await;
        req = Some(next);
    };
    drop(retrying);
    *upstream_time = Some(sending.elapsed());
    let tries: &[(&Target, String)] = tries;
    // An error blaming the last target; says when a retry was held back by the budget.
    let upstream_error = |code: &'static str| {
        let e = upstream_error(code, route, target, tries);
        if budget_spent { not_retried(e) } else { e }
    };
    if let Some(fault) = watch.fault() {
        let start = format!("{} {}", request.0, request.1.path());
        return Err(body_error(fault, &start, max_body, body_idle));
    }
    let mut resp = match result {
        Err(_) => {
            return Err(upstream_error(codes::UPSTREAM_TIMEOUT)
                .param("timeout", human_duration(route.timeout))
                .extension("timeout_ms", (route.timeout.as_millis() as u64).into()));
        }
        Ok(Err(crate::upstream::pool::Failed {
            error: SendError::Connect(cause),
            ..
        })) => {
            return Err(upstream_error(codes::UPSTREAM_UNREACHABLE).param("cause", cause));
        }
        Ok(Err(crate::upstream::pool::Failed {
            error:
                SendError::Overloaded {
                    limit,
                    queue,
                    waited,
                },
            ..
        })) => {
            let why = match waited {
                None => format!("its queue of {queue} waiting requests is full"),
                Some(w) => format!("none came free within {}", human_duration(w)),
            };
            return Err(upstream_error(codes::UPSTREAM_OVERLOADED)
                .param("limit", limit.to_string())
                .param("why", why)
                .extension("limit", limit.into())
                .extension("max_queue", queue.into()));
        }
        Ok(Err(crate::upstream::pool::Failed {
            error: SendError::Exchange(e),
            ..
        })) => {
            return Err(
                upstream_error(codes::UPSTREAM_PROTOCOL_ERROR).param("cause", exchange_words(&e))
            );
        }
        Ok(Ok(resp)) => resp,
    };
    // The request asked for no upgrade (Upgrade is hop-by-hop and never forwarded), and the
    // client's connection cannot be switched: an informational status is not an answer.
    if resp.status().is_informational() {
        let status = resp.status();
        return Err(upstream_error(codes::UPSTREAM_PROTOCOL_ERROR).param(
            "cause",
            format!(
                "answered {} {} to a request that asked for no upgrade",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            ),
        ));
    }
    // A response framed by Transfer-Encoding is not framed by its Content-Length too
    // (RFC 9112 §6.3): passing the length on would cut the body the client gets.
    if resp.headers().contains_key(header::TRANSFER_ENCODING) {
        resp.headers_mut().remove(header::CONTENT_LENGTH);
    }
    remove_hop_by_hop(resp.headers_mut());
    if route.wrap_upstream_errors && resp.status().as_u16() >= 400 && !is_problem(resp.headers()) {
        return Err(wrap(route, target, tries, resp).await);
    }
    if resp.status().as_u16() >= 400 {
        let head = request.0 == Method::HEAD;
        return answered_with_error(route, target, tries, resp, head, request_id, response_idle)
            .await;
    }
    // The response's X-Request-Id is set by the pipeline, on every response alike.
    let status = resp.status().as_u16();
    resp.body_mut()
        .stream_to_client(request_id, status, response_idle);
    Ok(resp.map(GatewayBody::Upstream))
}

/// The upstream's own error answer, passed on unchanged, with what the log needs to tell it
/// from the gateway's errors: [`UpstreamProblem`] (`source: upstream`, and the upstream's
/// problem code when its body is problem details of at most 64 KiB, read whole for that).
async fn answered_with_error(
    route: &RouteConfig,
    target: &Target,
    tries: &[(&Target, String)],
    mut resp: Response<PooledBody>,
    head: bool,
    request_id: &HeaderValue,
    response_idle: Duration,
) -> Result<Response<GatewayBody>, GatewayError> {
    let status = resp.status().as_u16();
    let small = !head
        && resp
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
            .is_some_and(|n| n <= WRAP_BODY_LIMIT);
    if !(small && is_problem(resp.headers())) {
        resp.extensions_mut().insert(UpstreamProblem(None));
        resp.body_mut()
            .stream_to_client(request_id, status, response_idle);
        return Ok(resp.map(GatewayBody::Upstream));
    }
    let declared = resp
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        .unwrap_or(0);
    let (parts, mut body) = resp.into_parts();
    // Read as it would have streamed: each piece within the response body's idle timeout.
    // A body that stalls or breaks off is said to be this error answer's body, with how
    // much of it came.
    let mut bytes = bytes::BytesMut::with_capacity(declared);
    let broke = loop {
        match tokio::time::timeout(response_idle, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    bytes.extend_from_slice(&data);
                }
            }
            Ok(None) => break None,
            Ok(Some(Err(e))) => break Some(format!("broke off ({e})")),
            Err(_) => {
                break Some(format!(
                    "stopped sending it for {} (timeouts.response_body_idle)",
                    human_duration(response_idle)
                ));
            }
        }
    };
    if let Some(how) = broke {
        let status = parts.status;
        return Err(
            upstream_error(codes::UPSTREAM_PROTOCOL_ERROR, route, target, tries)
                .param(
                    "cause",
                    format!(
                        "answered {} {} with a problem-details body of {declared} bytes, then {how} after {} bytes of it",
                        status.as_u16(),
                        status.canonical_reason().unwrap_or(""),
                        bytes.len()
                    ),
                )
                .extension("upstream_status", status.as_u16().into()),
        );
    }
    let bytes = bytes.freeze();
    let code = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| Some(v.get("code")?.as_str()?.chars().take(64).collect()));
    let mut resp = Response::from_parts(parts, GatewayBody::full(bytes));
    resp.extensions_mut().insert(UpstreamProblem(code));
    Ok(resp)
}

/// Marks a response the upstream answered with an error status: the log says
/// `source: upstream`, with the upstream's problem code when it sent one.
#[derive(Clone, Debug)]
pub(crate) struct UpstreamProblem(pub(crate) Option<String>);

/// Waits for the upstream's answer for at most `timeout`, counted from the later of the
/// start and the last piece of request body the client sent: the upstream is not charged for
/// a client sending slowly, and while the body waits for the client the body's own idle
/// timeout is what runs. `Err` when the time ran out.
async fn upstream_wait<F: Future>(
    mut send: std::pin::Pin<&mut F>,
    timeout: Duration,
    watch: &BodyWatch,
) -> Result<F::Output, ()> {
    let started = Instant::now();
    let sleep = tokio::time::sleep(timeout);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            biased;
            out = &mut send => return Ok(out),
            () = &mut sleep => {
                let now = Instant::now();
                let deadline = if watch.waiting_for_client() {
                    now + timeout
                } else {
                    started.max(watch.last_data()) + timeout
                };
                if now >= deadline {
                    return Err(());
                }
                sleep.as_mut().reset(deadline.into());
            }
        }
    }
}

/// The client's answer when its request body failed on the way: `start` is the method and
/// path, for the detail.
fn body_error(fault: &BodyFault, start: &str, max_body: u64, idle: Duration) -> GatewayError {
    let malformed = |reason: String| {
        crate::http::grammar::malformed_request(reason, start.as_bytes())
            .0
            .source(ErrorSource::Downstream)
            .client_stopped()
    };
    match fault {
        BodyFault::TooLarge => payload_too_large(format!("more than {max_body}"), max_body),
        BodyFault::Broken(why) => malformed(format!("its body's framing is broken: {why}")),
        BodyFault::EndedEarly(n) => malformed(format!(
            "the connection was closed after {n} bytes of its body, before the body's end"
        )),
        BodyFault::Stalled => GatewayError::new(codes::REQUEST_TIMEOUT)
            .param("part", "body")
            .param("timeout", human_duration(idle))
            .param("limit_name", "timeouts.request_body_idle")
            .extension("timeout_ms", (idle.as_millis() as u64).into()),
    }
}

/// An error blaming `target` of `route`'s upstream; `tries` are the tries before the last
/// (target, what happened), listed in the detail and as `tries`. Targets are named by
/// their labels (`upstream_name`, "target 2 of 3"); their addresses go to the log only, as
/// the `address` fact.
fn upstream_error(
    code: &'static str,
    route: &RouteConfig,
    target: &Target,
    tries: &[(&Target, String)],
) -> GatewayError {
    let mut e = GatewayError::new(code)
        .param("route", route.name.clone())
        .param("address", target.display.clone())
        .extension("route", route.name.clone().into())
        .source(ErrorSource::Upstream);
    if tries.is_empty() {
        return e.param("upstream", target.in_words());
    }
    let upstream = if tries.iter().all(|(t, _)| std::ptr::eq(*t, target)) {
        format!("{} (tried {} times)", target.in_words(), tries.len() + 1)
    } else {
        let before: Vec<String> = tries
            .iter()
            .map(|(t, c)| format!("{}: {c}", t.public()))
            .collect();
        format!(
            "{} (try {}; before: {})",
            target.in_words(),
            tries.len() + 1,
            before.join("; ")
        )
    };
    e = e.param("upstream", upstream);
    let list: Vec<serde_json::Value> = tries
        .iter()
        .map(|(t, c)| serde_json::json!({"target": t.public(), "outcome": c}))
        .collect();
    e.extension("tries", list.into())
}

/// Says in `e` that a retry was not made because the retry budget was spent.
fn not_retried(mut e: GatewayError) -> GatewayError {
    const NOTE: &str = " (not retried: the retry budget is spent)";
    if let Some((_, v)) = e.params.iter_mut().find(|(k, _)| *k == "upstream") {
        v.push_str(NOTE);
    }
    e.extension("not_retried", "the retry budget is spent".into())
}

/// `no_healthy_upstream`: every target is ejected; each one's last failure and when it is
/// tried again, with Retry-After for the soonest.
fn no_healthy(route: &RouteConfig, none: NoneHealthy) -> GatewayError {
    let secs = crate::time::ceil_secs;
    let wait = secs(none.soonest()).max(1);
    let words: Vec<String> = none
        .targets
        .iter()
        .map(|(t, last, until)| {
            let last = last
                .as_ref()
                .map_or("no failure recorded", |f| f.cause.as_str());
            format!(
                "{} ({last}; tried again in {} s)",
                t.public(),
                secs(*until).max(1)
            )
        })
        .collect();
    let list: Vec<serde_json::Value> = none
        .targets
        .iter()
        .map(|(t, last, until)| {
            serde_json::json!({
                "target": t.public(),
                "last_failure": last.as_ref().map(|f| f.cause.clone()),
                "retry_in": secs(*until).max(1),
            })
        })
        .collect();
    // For the log only.
    let addresses: Vec<&str> = none
        .targets
        .iter()
        .map(|(t, ..)| t.display.as_str())
        .collect();
    GatewayError::new(codes::NO_HEALTHY_UPSTREAM)
        .param("route", route.name.clone())
        .param(
            "cause",
            format!(
                "every target is ejected after failing in a row: {}",
                words.join(", ")
            ),
        )
        .param("addresses", addresses.join(", "))
        .header(header::RETRY_AFTER, &wait.to_string())
        .extension("route", route.name.clone().into())
        .extension("targets", list.into())
        .extension("retry_after", wait.into())
        .source(ErrorSource::Upstream)
}

/// A failed exchange in words.
fn exchange_words(e: &hyper::Error) -> String {
    if e.is_incomplete_message() {
        "closed the connection before sending a complete response".to_owned()
    } else if e.is_parse() || e.is_parse_status() {
        format!("sent a response that is not valid HTTP ({e})")
    } else if e.is_body_write_aborted() || e.is_user() {
        format!("could not receive the request body ({})", error_chain(e))
    } else {
        format!("failed the exchange ({})", error_chain(e))
    }
}

/// A copy of `r` with the body `body`, for a retry after `r` went out.
fn copy_of(
    r: &Request<UpstreamBody>,
    body: &Bytes,
    watch: &std::sync::Arc<BodyWatch>,
) -> Request<UpstreamBody> {
    let mut copy = Request::new(UpstreamBody::held(body.clone(), watch.clone()));
    *copy.method_mut() = r.method().clone();
    *copy.uri_mut() = r.uri().clone();
    *copy.version_mut() = r.version();
    *copy.headers_mut() = r.headers().clone();
    copy
}

fn is_problem(h: &HeaderMap) -> bool {
    h.get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(PROBLEM_JSON))
}

/// Puts a non-catalog upstream error into the envelope: status kept, body under `upstream`.
async fn wrap(
    route: &RouteConfig,
    target: &Target,
    tries: &[(&Target, String)],
    resp: Response<PooledBody>,
) -> GatewayError {
    let status = resp.status();
    let body = http_body_util::Limited::new(resp.into_body(), WRAP_BODY_LIMIT);
    let bytes = match tokio::time::timeout(route.timeout, body.collect()).await {
        Ok(Ok(c)) => c.to_bytes(),
        _ => Bytes::from_static(b""),
    };
    let upstream_value = serde_json::from_slice::<serde_json::Value>(&bytes)
        .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned().into());
    let retry = match status.as_u16() {
        429 => Retry::AfterDelay,
        502..=504 => Retry::WithBackoff,
        _ => Retry::Never,
    };
    upstream_error(codes::UPSTREAM_ERROR, route, target, tries)
        .param(
            "upstream_status",
            format!(
                "{} {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            )
            .trim_end()
            .to_owned(),
        )
        .status(status)
        .retry(retry)
        .extension("upstream_status", status.as_u16().into())
        .extension("upstream", upstream_value)
}

pub(crate) use crate::time::human_duration;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::address::IpNet;

    #[test]
    fn hop_by_hop_fields_go() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-secret-hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key(header::ACCEPT));

        // Options in any case, over several Connection fields; a header named `Close` goes
        // with `close`; the fields a message must keep stay even when listed.
        let mut h = HeaderMap::new();
        h.append(header::CONNECTION, HeaderValue::from_static("Keep-Alive"));
        h.append(
            header::CONNECTION,
            HeaderValue::from_static(" CLOSE , X-Other, Content-Type"),
        );
        h.insert("close", HeaderValue::from_static("1"));
        h.insert("x-other", HeaderValue::from_static("1"));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        remove_hop_by_hop(&mut h);
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["accept", "content-type"]);

        // Only `Connection: keep-alive`, as most upstream answers carry.
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        remove_hop_by_hop(&mut h);
        assert_eq!(h.keys().collect::<Vec<_>>(), [header::ACCEPT]);
    }

    #[test]
    fn the_fields_claiming_an_origin_are_told_apart() {
        let claims = [
            "forwarded",
            "x-forwarded-port",
            "x-forwarded-for",
            "x-real-ip",
            "x-client-ip",
            "x-cluster-client-ip",
            "true-client-ip",
            "cf-connecting-ip",
            "fastly-client-ip",
            // Spelt with `_` (read as `-` by CGI and WSGI): the same claims.
            "x_forwarded_for",
            "x_real_ip",
            "true_client_ip",
            "x-forwarded_host",
        ];
        let others = [
            "host",
            "x-request-id",
            "traceparent",
            "content-type",
            "x-forwarded",
            "x-forwarded-",
            "from",
            "x_request_id",
        ];
        for (names, claimed) in [(&claims[..], true), (&others[..], false)] {
            for n in names {
                assert_eq!(claims_origin(&HeaderName::from_static(n)), claimed, "{n}");
            }
        }
    }

    #[test]
    fn forwarded_headers_trust_only_listed_proxies() {
        let trusted = [IpNet::parse("10.0.0.0/8").unwrap()];
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("1.2.3.4"));
        h.append("forwarded", HeaderValue::from_static("for=1.2.3.4"));
        h.append("forwarded", HeaderValue::from_static("for=5.6.7.8"));
        h.insert("x-real-ip", HeaderValue::from_static("1.2.3.4"));
        h.insert("x-forwarded-port", HeaderValue::from_static("443"));
        h.insert("x-forwarded-host", HeaderValue::from_static("evil.example"));
        h.insert("true-client-ip", HeaderValue::from_static("1.2.3.4"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        let down = Downstream {
            peer: "192.0.2.9:5000".parse().unwrap(),
            tls: false,
            trusted_proxies: &trusted,
        };
        set_forwarded(
            &mut h,
            &down,
            Some(HeaderValue::from_static("api.example.com")),
        );
        assert_eq!(h["x-forwarded-for"], "192.0.2.9");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "api.example.com");
        for gone in [
            "forwarded",
            "x-real-ip",
            "x-forwarded-port",
            "true-client-ip",
        ] {
            assert!(!h.contains_key(gone), "{gone}");
        }
        // Without a host to say, a client's X-Forwarded-Host is not passed on either.
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-host", HeaderValue::from_static("evil.example"));
        set_forwarded(&mut h, &down, None);
        assert!(!h.contains_key("x-forwarded-host"));

        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("1.2.3.4"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        h.insert("forwarded", HeaderValue::from_static("for=1.2.3.4"));
        h.insert("x-real-ip", HeaderValue::from_static("1.2.3.4"));
        let down = Downstream {
            peer: "10.1.1.1:5000".parse().unwrap(),
            tls: false,
            trusted_proxies: &trusted,
        };
        set_forwarded(&mut h, &down, None);
        assert_eq!(h["x-forwarded-for"], "1.2.3.4, 10.1.1.1");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["forwarded"], "for=1.2.3.4");
        assert_eq!(h["x-real-ip"], "1.2.3.4");
    }
}
