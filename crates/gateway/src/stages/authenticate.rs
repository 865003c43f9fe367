//! Authenticate stage: read the credentials a route requires and verify them, saying
//! precisely what the request carried when they are refused. Verified tokens are cached
//! by hash until they expire, so a repeated token costs about a hash lookup.

use crate::error::GatewayError;
use crate::identity::issuers::ExternalKeys;
use crate::identity::jwt::{self, Claims, Expectations, TokenError};
use crate::identity::store::Identity;
use crate::identity::store::Snapshot;
use crate::pipeline::context::{Flow, RequestCtx};
use crate::time::{human_seconds, rfc3339, unix_now};
use candor_catalog::codes;
use http::HeaderMap;
use http::header::{AUTHORIZATION, RETRY_AFTER, WWW_AUTHENTICATE};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Shortest credential accepted: shorter ones are cut-and-paste accidents.
pub(crate) const MIN_CREDENTIAL_BYTES: usize = 16;

/// How a route authenticates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthConfig {
    /// The scheme word expected before the credentials: `Bearer`, or a custom one like `TOK`.
    pub scheme: String,
    /// Scopes the token must grant, all of them.
    pub scopes: Vec<String>,
    /// Where the request names its account, if it does.
    pub account: Option<AccountSource>,
    /// Set when the route takes API keys instead of bearer tokens.
    pub api_key: Option<ApiKeySource>,
    /// Set when the route takes account tokens (a primary and a backup token per account,
    /// e.g. `Authorization: TOK: <token>`) instead of bearer tokens.
    pub account_tokens: bool,
    /// Issuers whose tokens the route accepts: `self` (this gateway) and/or the `issuer`
    /// of configured external issuers.
    pub issuers: Vec<String>,
}

/// The word for this gateway in a route's `issuers`.
pub(crate) const SELF_ISSUER: &str = "self";

/// Where a request carries its API key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiKeySource {
    /// A header, e.g. `X-Api-Key`, spelled as configured (header names match in any case).
    Header(String),
    /// A query parameter, e.g. `api_key`.
    Query(String),
}

impl ApiKeySource {
    fn describe(&self) -> String {
        match self {
            ApiKeySource::Header(h) => format!("the {h} header"),
            ApiKeySource::Query(q) => format!("the {q} query parameter"),
        }
    }
}

/// Where a request names the account it acts for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccountSource {
    /// A path parameter of the route, e.g. `customer` in `/v1/customers/{customer}/...`.
    PathParam(String),
    /// A header, e.g. `Api-Company`.
    Header(String),
}

/// Who the request is from, once authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Principal {
    /// The client the token was issued to.
    pub client_id: String,
    /// Its account.
    pub account: Option<String>,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Token id.
    pub jti: String,
    /// Expiry.
    pub exp: i64,
}

/// Token checks shared by all routes of one configuration.
#[derive(Debug)]
pub(crate) struct TokenPolicy {
    /// Required issuer.
    pub issuer: String,
    /// Required audience.
    pub audience: String,
    /// Allowed clock skew in seconds.
    pub leeway: i64,
    /// External issuers, by `iss`.
    pub external: Vec<crate::identity::issuers::ExternalIssuer>,
    /// The token endpoint's validity parameter.
    pub validity: crate::identity::token_endpoint::ValidityParam,
    cache: Mutex<HashMap<[u8; 32], Claims>>,
}

const CACHE_CAPACITY: usize = 10_000;

impl TokenPolicy {
    /// A policy with an empty cache.
    pub(crate) fn new(
        issuer: String,
        audience: String,
        leeway: i64,
        external: Vec<crate::identity::issuers::ExternalIssuer>,
    ) -> Self {
        TokenPolicy {
            issuer,
            audience,
            leeway,
            external,
            validity: Default::default(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The same policy, the token endpoint reading its validity parameter as `validity` says.
    pub(crate) fn with_validity(
        mut self,
        validity: crate::identity::token_endpoint::ValidityParam,
    ) -> Self {
        self.validity = validity;
        self
    }

    fn verify(
        &self,
        token: &str,
        snapshot: &Snapshot,
        accepted: &[String],
        keys: &Arc<ExternalKeys>,
    ) -> Result<Claims, TokenError> {
        let now = unix_now();
        let hash: [u8; 32] = ring::digest::digest(&ring::digest::SHA256, token.as_bytes())
            .as_ref()
            .try_into()
            .expect("SHA-256 is 32 bytes");
        let cached = self.cache.lock().ok().and_then(|c| c.get(&hash).cloned());
        if let Some(claims) = cached {
            // Signature, issuer and audience were checked when cached; time and revocation
            // change, so they are checked on every use.
            if claims.exp + self.leeway > now
                && claims.nbf.is_none_or(|nbf| nbf <= now + self.leeway)
            {
                if let Some(at) = snapshot.revoked.get(&claims.jti) {
                    return Err(TokenError::Revoked { at: at.clone() });
                }
                return Ok(claims);
            }
        }
        let claimed = jwt::peek_issuer(token).unwrap_or_default();
        let external = self
            .external
            .iter()
            .find(|i| i.issuer == claimed && accepted.contains(&i.issuer));
        let claims = match external {
            Some(issuer) => {
                let set = keys.keys(&issuer.issuer).unwrap_or_default();
                let kid = jwt::peek_kid(token);
                let known = kid
                    .as_deref()
                    .is_none_or(|k| set.iter().any(|v| v.kid.as_deref() == Some(k)));
                if !known && keys.may_refetch(issuer) {
                    // A key the issuer rotated in: fetch its set again for the next request.
                    let (keys, issuer) = (keys.clone(), issuer.clone());
                    tokio::spawn(async move {
                        if let Err(e) = keys.refresh(&issuer).await {
                            tracing::warn!(target: "candor::issuers", issuer = %issuer.issuer, error = %e, "JWK set refetch failed");
                        }
                    });
                }
                let claims = jwt::verify_external(token, &set, issuer, self.leeway, now)?;
                // Revocation is by token id, whoever issued the token.
                if let Some(at) = snapshot.revoked.get(&claims.jti) {
                    return Err(TokenError::Revoked { at: at.clone() });
                }
                claims
            }
            None if accepted.iter().any(|a| a == SELF_ISSUER) => {
                let expect = Expectations {
                    issuer: &self.issuer,
                    audience: &self.audience,
                    leeway: self.leeway,
                    now,
                };
                jwt::verify(token, snapshot, &expect)?
            }
            None => {
                jwt::check_shape(token)?;
                let shown: String = claimed.chars().take(80).collect();
                return Err(TokenError::WrongAudience {
                    what: "issuer",
                    actual: if shown.is_empty() {
                        "(no issuer)".into()
                    } else {
                        shown
                    },
                    expected: accepted.join(" or "),
                });
            }
        };
        if let Ok(mut c) = self.cache.lock() {
            if c.len() >= CACHE_CAPACITY {
                c.retain(|_, v| v.exp + self.leeway > now);
                if c.len() >= CACHE_CAPACITY {
                    c.clear();
                }
            }
            c.insert(hash, claims.clone());
        }
        Ok(claims)
    }
}

/// Text safe inside a quoted-string of WWW-Authenticate.
fn quoted(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii() && !c.is_ascii_control() && *c != '"' && *c != '\\')
        .collect()
}

/// Adds the RFC 6750 challenge to `err`.
pub(crate) fn challenge(
    err: GatewayError,
    scheme: &str,
    error: Option<&str>,
    description: &str,
) -> GatewayError {
    let mut value = format!("{scheme} realm=\"candor\"");
    if let Some(e) = error {
        value.push_str(&format!(
            ", error=\"{e}\", error_description=\"{}\"",
            quoted(description)
        ));
    }
    err.header(WWW_AUTHENTICATE, &value)
}

/// The summary of `credentials_malformed` when the Authorization header is at fault.
const AUTHORIZATION_MALFORMED: &str = "The Authorization header is malformed";

fn malformed(scheme: &str, reason: &'static str, text: String) -> GatewayError {
    malformed_with(scheme, AUTHORIZATION_MALFORMED.into(), reason, text)
}

/// `credentials_malformed`: `summary` says what is wrong where, `text` the particulars.
fn malformed_with(
    scheme: &str,
    summary: String,
    reason: &'static str,
    text: String,
) -> GatewayError {
    let err = GatewayError::new(codes::CREDENTIALS_MALFORMED)
        .param("summary", summary)
        .param("reason_text", text.clone())
        .extension("reason", reason.into());
    challenge(err, scheme, Some("invalid_request"), &text)
}

// ---- Credentials in the wrong place (the failure path only) ----
//
// When the place a route reads is empty (or holds a credential of the other kind), the
// request is searched for a credential elsewhere: the Authorization header, any header or
// query parameter whose value has the shape of a candor API key or a JWT, and the usual
// key and token names. The answer names where it was found and where the route reads it,
// never its value.

/// The kinds of credential a route takes, and what the request may carry instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A candor API key.
    ApiKey,
    /// A bearer token (a JWT, or whatever follows `Bearer`).
    Token,
    /// Credentials of another scheme (`Basic` …).
    Other,
}

/// A credential found where the route does not read it.
#[derive(Debug)]
struct Found {
    kind: Kind,
    /// What it is, e.g. "an API key", "`Basic` credentials".
    what: String,
    /// Where it is, e.g. "the api_key query parameter".
    place: String,
}

impl Kind {
    fn what(self) -> &'static str {
        match self {
            Kind::ApiKey => "an API key",
            Kind::Token => "a bearer token",
            Kind::Other => "credentials",
        }
    }
}

/// Header and parameter names (lower case, letters and digits only) that carry API keys,
/// and those that carry tokens, whatever the value's shape. Bare `key` and `token` are not
/// among them: they name sort keys and page cursors as often as credentials (a value of
/// a credential's shape is recognised under any name).
const KEY_NAMES: &[&str] = &["apikey", "xapikey", "apikeyid", "xapitoken"];
const TOKEN_NAMES: &[&str] = &[
    "accesstoken",
    "xaccesstoken",
    "authtoken",
    "xauthtoken",
    "jwt",
    "bearer",
];

/// Whether `v` has the shape of a candor API key (`ck_<id>_<secret>`, possibly cut short).
fn looks_like_api_key(v: &str) -> bool {
    v.strip_prefix("ck_").is_some_and(|rest| {
        rest.len() >= 10 && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    })
}

/// Whether `v` has the shape of a JWT: three base64url parts, the first a JSON object.
fn looks_like_jwt(v: &str) -> bool {
    v.starts_with("eyJ")
        && v.len() >= MIN_CREDENTIAL_BYTES
        && v.bytes().filter(|&b| b == b'.').count() == 2
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// The credential part of a value that may start with a scheme word (`Bearer x`).
fn credential_part(value: &str) -> &str {
    let v = value.trim();
    let v = v.rsplit_once(' ').map_or(v, |(_, c)| c);
    v.trim_matches(|c| c == '"' || c == '\'')
}

/// The kind `value` has by its shape alone.
fn kind_by_shape(value: &str) -> Option<Kind> {
    let v = credential_part(value);
    if looks_like_api_key(v) {
        Some(Kind::ApiKey)
    } else if looks_like_jwt(v) {
        Some(Kind::Token)
    } else {
        None
    }
}

/// The kind a value under `name` (a header or query parameter) has, by its shape or, for
/// a long enough value under a usual key or token name, by that name.
fn kind_of(name: &str, value: &str) -> Option<Kind> {
    if let Some(k) = kind_by_shape(value) {
        return Some(k);
    }
    let v = credential_part(value);
    if v.len() < MIN_CREDENTIAL_BYTES || !v.bytes().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    let n: String = name
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if KEY_NAMES.contains(&n.as_str()) {
        Some(Kind::ApiKey)
    } else if TOKEN_NAMES.contains(&n.as_str()) {
        Some(Kind::Token)
    } else {
        None
    }
}

/// What an Authorization header carries, when a route does not read it.
fn authorization_kind(value: &str) -> Found {
    let place = "the Authorization header".to_owned();
    if let Some(kind) = kind_by_shape(value) {
        return Found {
            kind,
            what: kind.what().into(),
            place,
        };
    }
    let word = value.trim().split_once(' ').map(|(w, _)| w);
    match word {
        Some(w) if w.eq_ignore_ascii_case("bearer") => Found {
            kind: Kind::Token,
            what: Kind::Token.what().into(),
            place,
        },
        Some(w) if (1..=20).contains(&w.len()) && w.bytes().all(|b| b.is_ascii_alphabetic()) => {
            Found {
                kind: Kind::Other,
                what: format!("`{w}` credentials"),
                place,
            }
        }
        _ => Found {
            kind: Kind::Other,
            what: Kind::Other.what().into(),
            place,
        },
    }
}

/// A name from the request fit to be repeated in a detail.
fn shown_name(name: &str) -> Option<&str> {
    (!name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_graphic()))
        .then_some(name)
}

/// Every credential the request carries outside the route's own place (`own_header`,
/// `own_query`), the Authorization header first (when `authorization` is not the route's
/// place), then headers, then query parameters.
fn credentials_elsewhere(
    headers: &HeaderMap,
    query: Option<&str>,
    authorization: bool,
    own_header: Option<&str>,
    own_query: Option<&str>,
) -> Vec<Found> {
    let mut out = Vec::new();
    if authorization
        && let Some(v) = headers.get(AUTHORIZATION)
        && !v.as_bytes().iter().all(u8::is_ascii_whitespace)
    {
        out.push(authorization_kind(v.to_str().unwrap_or("")));
    }
    for (name, value) in headers {
        let n = name.as_str();
        if name == AUTHORIZATION
            || name == http::header::COOKIE
            || own_header.is_some_and(|h| h.eq_ignore_ascii_case(n))
        {
            continue;
        }
        if let (Ok(v), Some(shown)) = (value.to_str(), shown_name(n))
            && let Some(kind) = kind_of(n, v)
        {
            out.push(Found {
                kind,
                what: kind.what().into(),
                place: format!("the {shown} header"),
            });
        }
    }
    for kv in query.unwrap_or("").split('&') {
        let Some((n, v)) = kv.split_once('=') else {
            continue;
        };
        if own_query == Some(n) {
            continue;
        }
        let v = v
            .replace("%5F", "_")
            .replace("%5f", "_")
            .replace("%2E", ".")
            .replace("%2e", ".");
        if let Some(shown) = shown_name(n)
            && let Some(kind) = kind_of(n, &v)
        {
            out.push(Found {
                kind,
                what: kind.what().into(),
                place: format!("the {shown} query parameter"),
            });
        }
    }
    out
}

/// `credentials_malformed` for a credential the request carries in `found`, where a route
/// that takes `wanted` in `expected` does not read it: `misplaced` when it is the kind the
/// route takes, `wrong_kind` when it is not.
fn misplaced(scheme: &str, found: &Found, wanted: Kind, expected: &str) -> GatewayError {
    let Found { kind, what, place } = found;
    if *kind == wanted {
        malformed_with(
            scheme,
            "The credentials are in the wrong place".into(),
            "misplaced",
            format!("the request carries {what} in {place}; this route expects it in {expected}"),
        )
    } else {
        let there = if place == expected {
            "there".to_owned()
        } else {
            format!("in {expected}")
        };
        malformed_with(
            scheme,
            "The credentials are of the wrong kind".into(),
            "wrong_kind",
            format!(
                "the request carries {what} in {place}; this route takes {} {there}",
                wanted.what()
            ),
        )
    }
}

/// The credential to tell about among `found`: the first of the kind the route takes, else
/// the first.
fn most_telling(found: &[Found], wanted: Kind) -> Option<&Found> {
    found
        .iter()
        .find(|f| f.kind == wanted)
        .or_else(|| found.first())
}

/// Where a bearer route reads its token, as a detail says it.
fn bearer_place(scheme: &str) -> String {
    format!("the Authorization header, as `{scheme} <token>`")
}

/// For a bearer route whose Authorization header was refused with `err`: a credential
/// elsewhere (when the header is absent) or an API key in the header, if the request has
/// one; otherwise `err`.
fn diagnose_bearer(
    err: GatewayError,
    headers: &HeaderMap,
    query: Option<&str>,
    scheme: &str,
) -> GatewayError {
    let expected = bearer_place(scheme);
    match headers.get(AUTHORIZATION) {
        None => {
            let found = credentials_elsewhere(headers, query, false, None, None);
            match most_telling(&found, Kind::Token) {
                Some(f) => misplaced(scheme, f, Kind::Token, &expected),
                None => err,
            }
        }
        Some(v) => match v.to_str().ok().and_then(kind_by_shape) {
            Some(Kind::ApiKey) => api_key_in_authorization(scheme),
            _ => err,
        },
    }
}

/// `wrong_kind` for a bearer route whose Authorization header carries an API key.
fn api_key_in_authorization(scheme: &str) -> GatewayError {
    let place = "the Authorization header";
    let found = Found {
        kind: Kind::ApiKey,
        what: Kind::ApiKey.what().into(),
        place: place.into(),
    };
    misplaced(scheme, &found, Kind::Token, place)
}

/// The credentials of the Authorization header, checked against the token grammar
/// (RFC 6750 §2.1, b64token) before anything is decoded.
pub(crate) fn read_credentials<'h>(
    headers: &'h HeaderMap,
    auth: &AuthConfig,
    path: &str,
) -> Result<&'h str, GatewayError> {
    let scheme = auth.scheme.as_str();
    let Some(value) = headers.get(AUTHORIZATION) else {
        let err = GatewayError::new(codes::CREDENTIALS_MISSING)
            .param("path", path.to_owned())
            .param("scheme", scheme.to_owned());
        return Err(challenge(err, scheme, None, ""));
    };
    let Ok(value) = value.to_str() else {
        return Err(malformed(
            scheme,
            "bad_characters",
            "it contains bytes that are not visible ASCII".into(),
        ));
    };
    let value = value.trim();
    if value.starts_with('"') || value.starts_with('\'') {
        return Err(malformed(
            scheme,
            "quoted",
            format!("it is in quotes; send `Authorization: {scheme} <token>` without quotes"),
        ));
    }
    // `TOK:abc` and `TOK: abc`: a custom scheme word may end in a colon, with or without a
    // space (Bearer keeps RFC 6750's `Bearer <token>`).
    let colon = (!scheme.eq_ignore_ascii_case("bearer"))
        .then_some(value)
        .and_then(|v| v.get(..scheme.len() + 1))
        .filter(|w| w[..scheme.len()].eq_ignore_ascii_case(scheme) && w.ends_with(':'))
        .map(|w| (w, value[w.len()..].trim_start()))
        .filter(|(_, rest)| !rest.is_empty());
    let Some((word, credentials)) = colon.or_else(|| value.split_once(' ')) else {
        if value.eq_ignore_ascii_case(scheme)
            || value.eq_ignore_ascii_case("Bearer")
            || value.eq_ignore_ascii_case("Basic")
        {
            // The type is there; what follows it is not.
            let shown: String = value.chars().take(20).collect();
            return Err(malformed(
                scheme,
                "missing_credentials",
                format!(
                    "it names the type `{}` but no credentials follow; send `Authorization: {scheme} <token>`",
                    quoted(&shown)
                ),
            ));
        }
        return Err(malformed(
            scheme,
            "missing_scheme",
            format!(
                "it must start with a type and have credentials, as in `Authorization: {scheme} <token>`; it has no type"
            ),
        ));
    };
    if !word.trim_end_matches(':').eq_ignore_ascii_case(scheme) {
        let shown: String = word.chars().take(20).collect();
        return Err(malformed(
            scheme,
            "unsupported_scheme",
            format!(
                "the type is `{}`; this API expects `{scheme}`",
                quoted(&shown)
            ),
        ));
    }
    let credentials = credentials.trim();
    if credentials.starts_with('"') || credentials.starts_with('\'') {
        return Err(malformed(
            scheme,
            "quoted",
            format!("the credentials are in quotes; send `{scheme} <token>` without quotes"),
        ));
    }
    if credentials.len() < MIN_CREDENTIAL_BYTES {
        return Err(malformed(
            scheme,
            "too_short",
            format!(
                "the credentials are {} characters; they are at least {MIN_CREDENTIAL_BYTES}",
                credentials.len()
            ),
        ));
    }
    if credentials.len() > jwt::MAX_TOKEN_BYTES {
        return Err(malformed(
            scheme,
            "too_long",
            format!(
                "the credentials are {} characters; they are at most {}",
                credentials.len(),
                jwt::MAX_TOKEN_BYTES
            ),
        ));
    }
    let body = credentials.trim_end_matches('=');
    if let Some(i) = body
        .bytes()
        .position(|b| !(b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)))
    {
        return Err(malformed(
            scheme,
            "bad_characters",
            format!(
                "character {} of the credentials is not allowed in a token (letters, digits and -._~+/ only)",
                i + 1
            ),
        ));
    }
    Ok(credentials)
}

/// Reads and verifies the bearer token of a request. A refused Authorization header is
/// looked at again for a credential of another kind or in another place.
pub(crate) fn authenticate(
    headers: &HeaderMap,
    query: Option<&str>,
    auth: &AuthConfig,
    policy: &TokenPolicy,
    snapshot: &Snapshot,
    external: &Arc<ExternalKeys>,
    path: &str,
) -> Result<Principal, GatewayError> {
    let scheme = auth.scheme.as_str();
    let token = read_credentials(headers, auth, path)
        .map_err(|e| diagnose_bearer(e, headers, query, scheme))?;
    let claims = policy
        .verify(token, snapshot, &auth.issuers, external)
        .map_err(|e| match e {
            TokenError::NotAJwt(_) if looks_like_api_key(token) => api_key_in_authorization(scheme),
            e => token_error(e, scheme),
        })?;
    Ok(Principal {
        client_id: claims.sub,
        account: claims.account,
        scopes: claims
            .scope
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        jti: claims.jti,
        exp: claims.exp,
    })
}

/// Length of a full API key: `ck_` + 10 + `_` + 32.
const API_KEY_LEN: usize = 46;

fn query_param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query.split('&').find_map(|kv| match kv.split_once('=') {
        Some((k, v)) if k == name => Some(v),
        None if kv == name => Some(""),
        _ => None,
    })
}

/// Whether `value` matches `pattern`, where `*` matches any run of characters.
fn glob(pattern: &str, value: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == value;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !value.starts_with(first)
        || !value[first.len()..].ends_with(last)
        || value.len() < first.len() + last.len()
    {
        return false;
    }
    let mut rest = &value[first.len()..value.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// Reads and checks the API key of a request: its form, that it exists and matches, its
/// expiry, and the address and referer restrictions (naming the request's value, never the
/// allow-list).
pub(crate) fn authenticate_api_key(
    headers: &HeaderMap,
    query: Option<&str>,
    source: &ApiKeySource,
    snapshot: &Snapshot,
    client_ip: std::net::IpAddr,
    path: &str,
) -> Result<Principal, GatewayError> {
    const SCHEME: &str = "ApiKey";
    let raw = match source {
        ApiKeySource::Header(h) => headers
            .get(h.as_str())
            .map(|v| v.to_str().unwrap_or("\u{fffd}").trim().to_owned()),
        ApiKeySource::Query(q) => query
            .and_then(|q2| query_param(q2, q))
            .map(|v| v.replace("%5F", "_").replace("%5f", "_")),
    };
    let expected = source.describe();
    let Some(key) = raw.filter(|k| !k.is_empty()) else {
        let (own_header, own_query) = match source {
            ApiKeySource::Header(h) => (Some(h.as_str()), None),
            ApiKeySource::Query(q) => (None, Some(q.as_str())),
        };
        let found = credentials_elsewhere(headers, query, true, own_header, own_query);
        if let Some(f) = most_telling(&found, Kind::ApiKey) {
            return Err(misplaced(SCHEME, f, Kind::ApiKey, &expected));
        }
        let err = GatewayError::new(codes::CREDENTIALS_MISSING)
            .param("path", path.to_owned())
            .param("scheme", format!("API key (in {})", source.describe()))
            .extension("expected_in", source.describe().into());
        return Err(challenge(err, SCHEME, None, ""));
    };
    let fail = |reason: &'static str, text: String| {
        let summary = format!("The API key in {expected} is malformed");
        Err(malformed_with(SCHEME, summary, reason, text))
    };
    if key.starts_with('"') || key.starts_with('\'') {
        return fail("quoted", "it is in quotes; send it without quotes".into());
    }
    if looks_like_jwt(credential_part(&key)) {
        let found = Found {
            kind: Kind::Token,
            what: Kind::Token.what().into(),
            place: expected.clone(),
        };
        return Err(misplaced(SCHEME, &found, Kind::ApiKey, &expected));
    }
    if let Some(i) = key
        .bytes()
        .position(|b| !(b.is_ascii_alphanumeric() || b == b'_'))
    {
        if let Some((word, rest)) = key.split_once(' ')
            && looks_like_api_key(rest.trim())
            && (1..=20).contains(&word.len())
            && word.bytes().all(|b| b.is_ascii_alphabetic())
        {
            return fail(
                "bad_characters",
                format!("it starts with `{word} `; send the key alone, without a scheme word"),
            );
        }
        return fail(
            "bad_characters",
            format!("character {} is not a letter, digit or '_'", i + 1),
        );
    }
    if key.len() < API_KEY_LEN {
        return fail(
            "too_short",
            format!(
                "it is {} characters; candor keys have {API_KEY_LEN} (was it cut short?)",
                key.len()
            ),
        );
    }
    if key.len() > API_KEY_LEN {
        return fail(
            "too_long",
            format!(
                "it is {} characters; candor keys have {API_KEY_LEN}",
                key.len()
            ),
        );
    }
    let invalid = |hint: String, text: String| {
        let err = GatewayError::new(codes::API_KEY_INVALID)
            .param("key_hint", hint)
            .param("reason_text", text.clone());
        Err(challenge(
            err,
            SCHEME,
            Some("invalid_token"),
            &format!("The API key is not valid: {text}"),
        ))
    };
    let id = match key.strip_prefix("ck_").and_then(|r| r.split_once('_')) {
        Some((id, secret)) if id.len() == 10 && secret.len() == 32 => id,
        _ => {
            return invalid(
                "(unrecognised)".into(),
                "it is not a candor API key (ck_<id>_<secret>)".into(),
            );
        }
    };
    let hint = format!("ck_{id}");
    let Some(record) = snapshot.api_keys.get(id) else {
        return invalid(
            hint.clone(),
            format!("no key has the id {hint}; it may have been deleted"),
        );
    };
    let digest = crate::identity::store::sha256_hex(&key);
    let same = digest.len() == record.secret_hash.len()
        && digest
            .bytes()
            .zip(record.secret_hash.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if !same {
        return invalid(
            hint,
            "its secret part does not match; copy the whole key".into(),
        );
    }
    let now = unix_now();
    if let Some(exp) = record.expires_at
        && exp <= now
    {
        return invalid(
            hint,
            format!(
                "it expired {} ago at {}",
                human_seconds(now - exp),
                rfc3339(exp)
            ),
        );
    }
    if !record.allowed_referers.is_empty() {
        match headers
            .get(http::header::REFERER)
            .and_then(|v| v.to_str().ok())
        {
            None => {
                return Err(GatewayError::new(codes::API_KEY_RESTRICTION_MISSING)
                    .param("restriction", "referer")
                    .extension("restriction", "referer".into()));
            }
            Some(r) if !record.allowed_referers.iter().any(|p| glob(p, r)) => {
                let shown: String = r.chars().take(200).collect();
                return Err(GatewayError::new(codes::API_KEY_RESTRICTION_MISMATCH)
                    .param("restriction", "referer")
                    .param("value", shown)
                    .extension("restriction", "referer".into()));
            }
            Some(_) => {}
        }
    }
    if !record.allowed_ips.is_empty()
        && !record
            .allowed_ips
            .iter()
            .filter_map(|n| crate::http::address::IpNet::parse(n).ok())
            .any(|n| n.contains(client_ip))
    {
        return Err(GatewayError::new(codes::API_KEY_RESTRICTION_MISMATCH)
            .param("restriction", "client address")
            .param("value", client_ip.to_string())
            .extension("restriction", "address".into()));
    }
    Ok(Principal {
        client_id: hint,
        account: Some(record.account_id.clone()),
        scopes: record.scopes.clone(),
        jti: String::new(),
        exp: record.expires_at.unwrap_or(i64::MAX),
    })
}

/// Reads and checks an account token (`TOK: <token>`): its form as for any credential,
/// then that it is the primary or the backup token of an account.
pub(crate) fn authenticate_account_token(
    headers: &HeaderMap,
    auth: &AuthConfig,
    snapshot: &Snapshot,
    path: &str,
) -> Result<Principal, GatewayError> {
    let scheme = auth.scheme.as_str();
    let token = read_credentials(headers, auth, path)?;
    let digest = crate::identity::store::sha256_hex(token);
    let Some(found) = snapshot.account_tokens.get(&digest) else {
        let text = "it is neither the primary nor the backup token of an account (a token stops working when its slot is rotated)".to_owned();
        // `credential`: an error profile may answer an unknown account token apart.
        let err = GatewayError::new(codes::TOKEN_INVALID)
            .param("reason_text", text.clone())
            .param("credential", "account_token");
        return Err(challenge(err, scheme, Some("invalid_token"), &text));
    };
    Ok(Principal {
        client_id: format!("{}/{}", found.account_id, found.slot.as_str()),
        account: Some(found.account_id.clone()),
        scopes: Vec::new(),
        jti: String::new(),
        exp: i64::MAX,
    })
}

fn token_error(e: TokenError, scheme: &str) -> GatewayError {
    let now = unix_now();
    match e {
        TokenError::NotAJwt(text) => malformed(
            scheme,
            "not_a_jwt",
            format!("the token is not a JWT: {text}"),
        ),
        TokenError::Invalid(text) => {
            let err = GatewayError::new(codes::TOKEN_INVALID).param("reason_text", text.clone());
            challenge(
                err,
                scheme,
                Some("invalid_token"),
                &format!("The access token is not valid: {text}"),
            )
        }
        TokenError::Expired { exp, iat } => {
            let err = GatewayError::new(codes::TOKEN_EXPIRED)
                .param("ago", human_seconds(now - exp))
                .param("expired_at", rfc3339(exp))
                .param("lifetime", human_seconds(exp - iat))
                .extension("expired_at", rfc3339(exp).into());
            challenge(
                err,
                scheme,
                Some("invalid_token"),
                "The access token expired",
            )
        }
        TokenError::NotYetValid { nbf } => {
            let wait = (nbf - now).max(1);
            let err = GatewayError::new(codes::TOKEN_NOT_YET_VALID)
                .param("not_before", rfc3339(nbf))
                .param("wait", human_seconds(wait))
                .header(RETRY_AFTER, &wait.to_string());
            challenge(
                err,
                scheme,
                Some("invalid_token"),
                "The access token is not valid yet",
            )
        }
        TokenError::WrongAudience {
            what,
            actual,
            expected,
        } => {
            let shown: String = actual.chars().take(80).collect();
            let err = GatewayError::new(codes::TOKEN_WRONG_AUDIENCE)
                .param("actual", format!("{what} {shown}"))
                .param("expected", format!("{what} {expected}"))
                .extension("claim", if what == "issuer" { "iss" } else { "aud" }.into());
            challenge(
                err,
                scheme,
                Some("invalid_token"),
                &format!("The access token was issued for another {what}"),
            )
        }
        TokenError::Revoked { at } => {
            let err = GatewayError::new(codes::TOKEN_REVOKED).param("revoked_at", at);
            challenge(
                err,
                scheme,
                Some("invalid_token"),
                "The access token was revoked",
            )
        }
    }
}

/// The authenticate stage: the route's credentials (a bearer token or an API key), each
/// refusal precise; the principal is kept in the context for the stages after it.
pub(crate) fn run(
    auth: &AuthConfig,
    tokens: &TokenPolicy,
    identity: &Identity,
    external: &Arc<ExternalKeys>,
    ctx: &mut RequestCtx<'_>,
) -> Result<Flow, GatewayError> {
    let snapshot = ctx.snapshot(identity);
    let principal = match &auth.api_key {
        Some(source) => {
            let client = ctx.client_ip();
            authenticate_api_key(
                &ctx.parts.headers,
                ctx.parts.uri.query(),
                source,
                &snapshot,
                client,
                ctx.path(),
            )
        }
        None if auth.account_tokens => {
            authenticate_account_token(&ctx.parts.headers, auth, &snapshot, ctx.path())
        }
        None => authenticate(
            &ctx.parts.headers,
            ctx.parts.uri.query(),
            auth,
            tokens,
            &snapshot,
            external,
            ctx.path(),
        ),
    };
    match principal {
        Ok(principal) => {
            ctx.trail.record(
                "authenticate",
                "pass",
                None,
                vec![
                    ("client", principal.client_id.clone()),
                    ("account", principal.account.clone().unwrap_or_default()),
                ],
            );
            ctx.principal = Some(principal);
            Ok(Flow::Continue)
        }
        Err(e) => {
            ctx.trail
                .record("authenticate", "reject", Some(e.code), Vec::new());
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn auth() -> AuthConfig {
        AuthConfig {
            scheme: "Bearer".into(),
            scopes: vec![],
            account: None,
            api_key: None,
            account_tokens: false,
            issuers: vec![SELF_ISSUER.into()],
        }
    }

    fn reason(value: Option<&str>) -> String {
        let mut h = HeaderMap::new();
        if let Some(v) = value {
            h.insert(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        let err = read_credentials(&h, &auth(), "/x").unwrap_err();
        if err.code == codes::CREDENTIALS_MISSING {
            return "missing".into();
        }
        err.extensions
            .iter()
            .find(|(k, _)| *k == "reason")
            .unwrap()
            .1
            .as_str()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn each_malformation_has_its_reason() {
        assert_eq!(reason(None), "missing");
        assert_eq!(
            reason(Some("eyJhbGciOiJFZERTQSJ9.e30.sig")),
            "missing_scheme"
        );
        assert_eq!(
            reason(Some("Basic dXNlcjpwYXNzd29yZA==")),
            "unsupported_scheme"
        );
        assert_eq!(
            reason(Some("\"Bearer abcdefghijklmnopqrstuvwxyz\"")),
            "quoted"
        );
        assert_eq!(
            reason(Some("Bearer \"abcdefghijklmnopqrstuvwxyz\"")),
            "quoted"
        );
        assert_eq!(reason(Some("Bearer abc")), "too_short");
        assert_eq!(
            reason(Some(&format!("Bearer {}", "a".repeat(9000)))),
            "too_long"
        );
        assert_eq!(
            reason(Some("Bearer abcdefghijklmnop{}qrstuv")),
            "bad_characters"
        );
        let mut h = HeaderMap::new();
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_static("bearer abcdefghijklmnopqrstuvwxyz"),
        );
        assert_eq!(
            read_credentials(&h, &auth(), "/x").unwrap(),
            "abcdefghijklmnopqrstuvwxyz"
        );
    }

    #[test]
    fn credential_shapes() {
        assert!(looks_like_api_key(
            "ck_abcdefghij_abcdefghijabcdefghijabcdefghij23"
        ));
        assert!(!looks_like_api_key("ck_short"));
        assert!(!looks_like_api_key("sk_live_abcdefghijklmnopqrstuvwxyz"));
        assert!(looks_like_jwt("eyJhbGciOiJFZERTQSJ9.e30.c2lnbmF0dXJl"));
        assert!(!looks_like_jwt("eyJhbGciOiJFZERTQSJ9.e30"));
        assert!(!looks_like_jwt("abc.def.ghi"));
        assert_eq!(
            kind_by_shape("Bearer ck_abcdefghij_abcdefghij"),
            Some(Kind::ApiKey)
        );
        assert_eq!(
            kind_of("Api-Key", "a-vendor-key-0123456789"),
            Some(Kind::ApiKey)
        );
        assert_eq!(
            kind_of("X_Auth_Token", "opaque-token-0123456789"),
            Some(Kind::Token)
        );
        assert_eq!(kind_of("Api-Key", "short"), None);
        assert_eq!(kind_of("X-Request-Id", "01JD3W6Q8V1T8ZK3M6R5B0C2XH"), None);
        // The attack probe's false positives: a sort key, a page cursor, an X-Key value.
        assert_eq!(kind_of("key", "customer-sort-order-by-name"), None);
        assert_eq!(kind_of("token", "b3BhcXVlLXBhZ2UtY3Vyc29yLTEyMw"), None);
        assert_eq!(kind_of("X-Key", "0123456789abcdef0123"), None);
    }

    #[test]
    fn a_configured_header_name_matches_in_any_case() {
        let mut h = HeaderMap::new();
        h.insert("x-api-key", HeaderValue::from_static("v"));
        assert!(h.get("X-Api-Key").is_some());
        assert!(h.get("X-API-KEY").is_some());
    }

    #[test]
    fn referer_patterns() {
        assert!(glob(
            "https://app.example.com/*",
            "https://app.example.com/page?x=1"
        ));
        assert!(glob("*.example.com*", "https://shop.example.com/"));
        assert!(!glob(
            "https://app.example.com/*",
            "https://evil.com/https://app.example.com/"
        ));
        assert!(glob("exact", "exact"));
        assert!(!glob("a*b*c", "acb"));
    }

    #[test]
    fn challenges_are_quoted_safely() {
        let err = challenge(
            GatewayError::new(codes::TOKEN_INVALID),
            "Bearer",
            Some("invalid_token"),
            "say \"hi\" \\ é",
        );
        assert_eq!(
            err.headers[0].1,
            "Bearer realm=\"candor\", error=\"invalid_token\", error_description=\"say hi  \""
        );
    }
}
