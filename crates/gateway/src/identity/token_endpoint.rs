//! The token endpoint, `POST /oauth/token` (RFC 6749 §4.4 client credentials, responses per
//! §5.1, errors per §5.2 alongside the catalog fields), and the public keys at
//! `/.well-known/jwks.json`.

use crate::error::GatewayError;
use crate::http::body::GatewayBody;
use crate::identity::jwt::{self, Claims};
use crate::identity::store::{AccountStatus, Identity, verify_secret};
use crate::limits::attempts::{Block, BlockKind, FailedAttempts, ReplayCache};
use crate::limits::shared::SharedStore;
use crate::stages::authenticate::TokenPolicy;
use crate::time::unix_now;
use base64::Engine;
use bytes::Bytes;
use candor_catalog::{FieldError, codes};
use http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, PRAGMA, RETRY_AFTER, WWW_AUTHENTICATE,
};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::json;
use std::net::IpAddr;
use std::sync::Arc;

/// Path of the token endpoint.
pub(crate) const TOKEN_PATH: &str = "/oauth/token";
/// Path of the JWK set.
pub(crate) const JWKS_PATH: &str = "/.well-known/jwks.json";

const GRANT_CLIENT_CREDENTIALS: &str = "client_credentials";
const GRANT_JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// The longest an assertion may live (RFC 7523 §3: exp "bounded").
const MAX_ASSERTION_LIFETIME: i64 = 300;

const MAX_FORM_BYTES: usize = 16 * 1024;

/// Adds the RFC 6749 §5.2 members, and the Basic challenge every 401 of this endpoint
/// carries (RFC 9110 §15.5.2).
fn oauth(err: GatewayError, error: &'static str, description: &str) -> GatewayError {
    let unauthorized = [
        codes::INVALID_CLIENT,
        codes::SECOND_FACTOR_REQUIRED,
        codes::SECOND_FACTOR_INVALID,
    ]
    .contains(&err.code);
    let has_challenge = err.headers.iter().any(|(k, _)| k == WWW_AUTHENTICATE);
    let err = if unauthorized && !has_challenge {
        err.header(WWW_AUTHENTICATE, "Basic realm=\"candor\"")
    } else {
        err
    };
    err.extension("error", error.into())
        .extension("error_description", description.to_owned().into())
}

fn invalid_request(field: &str, reason: &str, detail: String) -> GatewayError {
    let summary = format!("{field} {detail}");
    oauth(
        GatewayError::new(codes::VALIDATION_FAILED)
            .param("count", "1")
            .param("summary", summary.clone())
            .field(FieldError {
                location: "body".into(),
                pointer: field.to_owned(),
                name: field.to_owned(),
                reason: reason.to_owned(),
                detail,
            }),
        "invalid_request",
        &summary,
    )
}

/// Decodes `application/x-www-form-urlencoded`.
fn parse_form(body: &[u8]) -> Result<Vec<(String, String)>, GatewayError> {
    let decode = |s: &str, field: &str| -> Result<String, GatewayError> {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' => {
                    let hex = s
                        .get(i + 1..i + 3)
                        .and_then(|h| u8::from_str_radix(h, 16).ok());
                    let Some(b) = hex else {
                        return Err(invalid_request(
                            field,
                            "format",
                            "has a '%' not followed by two hex digits".into(),
                        ));
                    };
                    out.push(b);
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out)
            .map_err(|_| invalid_request(field, "format", "is not UTF-8 once decoded".into()))
    };
    let text = std::str::from_utf8(body)
        .map_err(|_| invalid_request("(body)", "format", "is not UTF-8".into()))?;
    let mut pairs: Vec<(String, String)> = Vec::new();
    for part in text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        let k = decode(k, "(parameter name)")?;
        let v = decode(v, &k)?;
        if pairs.iter().any(|(x, _)| *x == k) {
            return Err(invalid_request(
                &k,
                "repeated",
                "is sent more than once; each parameter may appear once".into(),
            ));
        }
        pairs.push((k, v));
    }
    Ok(pairs)
}

fn json_no_store(status: StatusCode, v: &serde_json::Value) -> Response<GatewayBody> {
    let mut resp = crate::http::body::json_response(status, v);
    let h = resp.headers_mut();
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

/// Serves `GET /.well-known/jwks.json`.
pub(crate) fn serve_jwks(identity: &Identity) -> Response<GatewayBody> {
    let mut resp = Response::new(GatewayBody::full(
        jwt::jwks(&identity.snapshot()).to_string(),
    ));
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/jwk-set+json"),
    );
    resp.headers_mut().insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    resp
}

/// Whether `used` is the first use of its assertion at any gateway sharing `store`
/// (`[limits.shared]`). While the store is unreachable each gateway relies on its own
/// replay cache (already checked), as rate limits do with `on_failure = "open"`; the
/// store logs the outage and the recovery.
async fn first_use_shared(store: &SharedStore, used: &UsedAssertion) -> bool {
    let key = format!("candor:jti:{}", used.key);
    // Kept for the assertion's remaining life by this gateway's clock (Redis's may differ),
    // and a minute more for the gateways' clocks to differ.
    let ttl = (used.until - unix_now()).max(0) + 60;
    store.first_use(&key, ttl).await.unwrap_or(true)
}

/// What the token endpoint keeps of earlier attempts: failed attempts and the JWT-bearer
/// assertion ids already used, this gateway's and, with `[limits.shared]`, every gateway's.
#[derive(Clone, Copy)]
pub(crate) struct Guards<'a> {
    /// This gateway's failed attempts.
    pub(crate) failures: &'a FailedAttempts,
    /// This gateway's used assertion ids.
    pub(crate) replay: &'a ReplayCache,
    /// `[limits.shared]`'s store.
    pub(crate) shared: Option<&'a Arc<SharedStore>>,
}

impl Guards<'_> {
    /// Whether an attempt with `client` from `peer` is refused now, here or at any gateway
    /// sharing the store (asked only when this gateway does not refuse it already).
    async fn check(&self, client: Option<&str>, peer: IpAddr) -> Option<Block> {
        if let Some(b) = self.failures.check(client, peer) {
            return Some(b);
        }
        match self.shared {
            Some(s) => self.failures.check_shared(s, client, peer).await,
            None => None,
        }
    }

    /// Counts a failure here and in the shared store.
    async fn fail(&self, client: Option<&str>, peer: IpAddr) {
        self.failures.fail(client, peer);
        if let Some(s) = self.shared {
            self.failures.fail_shared(s, client, peer).await;
        }
    }

    /// Forgets `client`'s failures from `peer` here and in the shared store (there in the
    /// background: the token is not held back for it).
    fn succeed(&self, client: &str, peer: IpAddr) {
        self.failures.succeed(client, peer);
        if let Some(s) = self.shared {
            let (store, key) = (s.clone(), self.failures.shared_client_key(client, peer));
            tokio::spawn(async move {
                let _ = store.delete(&key).await;
            });
        }
    }
}

/// Serves `POST /oauth/token` (the route stage has refused other methods).
pub(crate) async fn serve(
    identity: &Identity,
    policy: &TokenPolicy,
    guards: Guards<'_>,
    parts: http::request::Parts,
    body: Incoming,
    peer: IpAddr,
) -> Result<Response<GatewayBody>, GatewayError> {
    let content_type = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type
        .to_ascii_lowercase()
        .starts_with("application/x-www-form-urlencoded")
    {
        const FORM: &str = "application/x-www-form-urlencoded";
        let (declared, sent) = if content_type.is_empty() {
            ("has no Content-Type header".to_owned(), None)
        } else {
            (
                format!("is declared as {content_type}"),
                Some(content_type.to_owned()),
            )
        };
        return Err(oauth(
            crate::stages::negotiate::unsupported(
                declared,
                sent,
                TOKEN_PATH,
                &[FORM.to_owned()],
                FORM,
            ),
            "invalid_request",
            "the token endpoint accepts application/x-www-form-urlencoded",
        ));
    }
    let bytes: Bytes = Limited::new(body, MAX_FORM_BYTES)
        .collect()
        .await
        .map_err(|_| {
            crate::stages::transport::payload_too_large(
                format!("more than {MAX_FORM_BYTES}"),
                MAX_FORM_BYTES as u64,
            )
        })?
        .to_bytes();
    let form = parse_form(&bytes)?;
    let param = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };

    let grant_type = match param("grant_type") {
        None | Some("") => {
            return Err(invalid_request(
                "grant_type",
                "required",
                format!("is required; use {GRANT_CLIENT_CREDENTIALS}"),
            ));
        }
        Some(g) => g,
    };
    let now = unix_now();
    let client = match grant_type {
        GRANT_CLIENT_CREDENTIALS => {
            authenticate_client(identity, guards, &parts, &form, peer).await?
        }
        GRANT_JWT_BEARER => {
            if let Some(block) = guards.check(None, peer).await {
                return Err(too_many(&block, guards.failures));
            }
            let token_url = format!("{}{TOKEN_PATH}", policy.issuer.trim_end_matches('/'));
            let assertion = param("assertion").unwrap_or("");
            if assertion.is_empty() {
                return Err(invalid_request(
                    "assertion",
                    "required",
                    "is required with the jwt-bearer grant: a JWT signed with your registered key"
                        .into(),
                ));
            }
            match verify_assertion(
                assertion,
                &identity.snapshot(),
                &token_url,
                policy.leeway,
                now,
                guards.replay,
            ) {
                Ok((c, used)) => {
                    if let Some(store) = guards.shared
                        && !first_use_shared(store, &used).await
                    {
                        return Err(replayed(&used.jti));
                    }
                    c
                }
                Err(failure) => {
                    let (err, client_id) = *failure;
                    if err.code == codes::INVALID_GRANT {
                        guards.fail(client_id.as_deref(), peer).await;
                    }
                    return Err(err);
                }
            }
        }
        other => {
            let shown: String = other.chars().take(80).collect();
            return Err(oauth(
                GatewayError::new(codes::UNSUPPORTED_GRANT_TYPE)
                    .param("grant_type", shown)
                    .param(
                        "supported",
                        format!("{GRANT_CLIENT_CREDENTIALS} or {GRANT_JWT_BEARER}"),
                    )
                    .extension(
                        "supported",
                        json!([GRANT_CLIENT_CREDENTIALS, GRANT_JWT_BEARER]),
                    ),
                "unsupported_grant_type",
                "supported: client_credentials, urn:ietf:params:oauth:grant-type:jwt-bearer",
            ));
        }
    };
    let snapshot = identity.snapshot();

    if let Some(secret) = &client.totp_secret {
        match param("totp") {
            None | Some("") => {
                return Err(oauth(
                    GatewayError::new(codes::SECOND_FACTOR_REQUIRED)
                        .param("client_id", client.client_id.clone()),
                    "invalid_request",
                    "this client requires a one-time code in the totp parameter",
                ));
            }
            Some(code) if !crate::identity::totp::verify(secret, code, now) => {
                guards.fail(Some(&client.client_id), peer).await;
                return Err(oauth(
                    GatewayError::new(codes::SECOND_FACTOR_INVALID)
                        .param("client_id", client.client_id.clone()),
                    "invalid_grant",
                    "the one-time code is not valid",
                ));
            }
            Some(_) => {}
        }
    }
    guards.succeed(&client.client_id, peer);

    match snapshot.accounts.get(&client.account_id).map(|a| a.status) {
        Some(AccountStatus::Active) => {}
        other => {
            let state = if other == Some(AccountStatus::Suspended) {
                "suspended"
            } else {
                "deleted"
            };
            return Err(oauth(
                GatewayError::new(codes::ACCOUNT_INACTIVE)
                    .param("account", client.account_id.clone())
                    .param("state", state)
                    .extension("account_status", state.into()),
                "unauthorized_client",
                "the client's account is not active",
            ));
        }
    }

    let lifetime = match param(&policy.validity.name) {
        None => client.token_lifetime,
        Some(v) => {
            let spec = validity_spec(client.token_lifetime);
            match policy.validity.read(v, client.token_lifetime) {
                Ok(secs) => secs,
                Err(reason) => {
                    let shown: String = v.chars().take(40).collect();
                    return Err(oauth(
                        GatewayError::new(codes::INVALID_TOKEN_VALIDITY)
                            .param("value", format!("`{shown}`"))
                            .param("reason", reason.clone())
                            .param("min", crate::duration::text(spec.min))
                            .param("max", crate::duration::text(spec.max))
                            .extension("min_seconds", spec.min.as_secs().into())
                            .extension("max_seconds", spec.max.as_secs().into())
                            .extension("parameter", policy.validity.name.clone().into()),
                        "invalid_request",
                        &format!("{} {reason}", policy.validity.name),
                    ));
                }
            }
        }
    };

    let scopes: Vec<String> = match param("scope") {
        None | Some("") => client.scopes.clone(),
        Some(requested) => {
            let requested: Vec<String> = requested
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            let not_allowed: Vec<&String> = requested
                .iter()
                .filter(|s| !client.scopes.contains(s))
                .collect();
            if !not_allowed.is_empty() {
                let list = not_allowed
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(" ");
                let err = invalid_request(
                    "scope",
                    "not_allowed",
                    format!("asks for {list}, which this client may not be granted"),
                );
                return Err(err.extension("error", "invalid_scope".into()));
            }
            requested
        }
    };

    let Some(key) = snapshot.active_key() else {
        return Err(GatewayError::new(codes::INTERNAL_ERROR)
            .param("stage", "token endpoint: no signing key"));
    };
    let claims = Claims {
        iss: policy.issuer.clone(),
        sub: client.client_id.clone(),
        aud: policy.audience.clone(),
        exp: now + lifetime,
        iat: now,
        nbf: None,
        jti: crate::http::request_id::new_ulid(),
        scope: scopes.join(" "),
        account: Some(client.account_id.clone()),
    };
    let token = jwt::issue(key, &claims).map_err(|e| {
        GatewayError::new(codes::INTERNAL_ERROR).param("stage", format!("token endpoint: {e}"))
    })?;
    let mut resp = json_no_store(
        StatusCode::OK,
        &json!({
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": lifetime,
            "scope": claims.scope,
        }),
    );
    resp.extensions_mut().insert(Issued {
        client_id: client.client_id.clone(),
        account: client.account_id.clone(),
        grant_type: if grant_type == GRANT_JWT_BEARER {
            "jwt-bearer"
        } else {
            GRANT_CLIENT_CREDENTIALS
        },
    });
    Ok(resp)
}

/// How the token endpoint's validity parameter is written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ValidityFormat {
    /// A duration such as `90s` or `5m`; a bare number is minutes.
    #[default]
    Duration,
    /// A 32-bit signed integer of minutes, as APIs typed `$int32` take it.
    Int32Minutes,
}

/// `[auth] validity_param` and `validity_format`: the parameter asking for a token shorter
/// than the client's lifetime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidityParam {
    /// Its name in the form (default `validity`).
    pub name: String,
    /// How its value is written.
    pub format: ValidityFormat,
}

impl Default for ValidityParam {
    fn default() -> Self {
        ValidityParam {
            name: "validity".into(),
            format: ValidityFormat::Duration,
        }
    }
}

impl ValidityParam {
    /// The lifetime asked for, within 1 s and the client's `lifetime`.
    fn read(&self, typed: &str, lifetime: i64) -> Result<i64, String> {
        let spec = validity_spec(lifetime);
        match self.format {
            ValidityFormat::Duration => spec.parse(typed).map(|d| d.as_secs() as i64),
            ValidityFormat::Int32Minutes => {
                let shown: String = typed.chars().take(40).collect();
                let digits = typed.strip_prefix(['-', '+']).unwrap_or(typed);
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(format!(
                        "`{}` is not an integer; {} is an int32 number of minutes",
                        shown.escape_default(),
                        self.name
                    ));
                }
                let Ok(minutes) = typed.parse::<i32>() else {
                    return Err(format!(
                        "`{shown}` is outside the int32 range; {} is an int32 number of minutes",
                        self.name
                    ));
                };
                if minutes < 1 {
                    return Err(format!("`{shown}` minutes is too short: at least 1"));
                }
                spec.check(std::time::Duration::from_secs(minutes as u64 * 60), typed)
                    .map(|d| d.as_secs() as i64)
            }
        }
    }
}

/// A token was issued (a response extension, for the `auth.succeeded` event).
#[derive(Clone, Debug)]
pub(crate) struct Issued {
    /// The client.
    pub(crate) client_id: String,
    /// Its account.
    pub(crate) account: String,
    /// How it authenticated.
    pub(crate) grant_type: &'static str,
}

/// The token endpoint's `validity`: a duration (a bare number is minutes, as it always
/// was) from 1 s to the client's token lifetime.
fn validity_spec(lifetime: i64) -> crate::duration::Spec {
    crate::duration::Spec {
        field: "validity",
        bare: crate::duration::Unit::Minutes,
        min: std::time::Duration::from_secs(1),
        max: std::time::Duration::from_secs(lifetime.max(1) as u64),
    }
}

/// `s` as one shell word: as it is when it is made of characters no shell treats specially,
/// else in single quotes, or in `$'…'` with escapes when it holds control characters.
fn shell_word(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-._:/@%+=,".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        return s.to_owned();
    }
    if !s.chars().any(char::is_control) {
        return format!("'{}'", s.replace('\'', "'\\''"));
    }
    let mut out = String::from("$'");
    for c in s.chars() {
        match c {
            '\'' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() && (c as u32) < 0x100 => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// `too_many_failed_attempts`: which key is blocked, how the block ends, who can lift it.
fn too_many(block: &Block, failures: &FailedAttempts) -> GatewayError {
    let wait = block.retry_after;
    let at = crate::time::rfc3339(unix_now() + wait);
    let (subject, kind, scope) = match block.kind {
        BlockKind::Client => (
            format!(
                "client_id {} from address {}",
                block.key.chars().take(64).collect::<String>(),
                block.address.as_deref().unwrap_or("?")
            ),
            "client_id from one address",
            "every attempt with it from this address is refused (its failures from other addresses are counted apart)",
        ),
        BlockKind::Address => (
            format!("address {}", block.key),
            "address",
            "every attempt from it is refused, whatever the client_id,",
        ),
    };
    let arg = block.argument().chars().take(64).collect::<String>();
    oauth(
        GatewayError::new(codes::TOO_MANY_FAILED_ATTEMPTS)
            .param("subject", subject)
            .param("failures", block.failures.to_string())
            .param(
                "window",
                crate::time::human_seconds(failures.window().as_secs() as i64),
            )
            .param("kind", kind)
            .param("scope", scope)
            .param("retry_after", wait.to_string())
            .param("retry_at", at.clone())
            .param("clear", format!("{} {}", block.kind.as_str(), shell_word(&arg)))
            .param(
                "admin_path",
                format!("/blocks/{}/{}", block.kind.as_str(), crate::http::path_segment(&arg)),
            )
            .header(RETRY_AFTER, &wait.to_string())
            .extension("retry_after", wait.into())
            .extension("retry_at", at.into())
            .extension(
                "blocked",
                match &block.address {
                    Some(a) => json!({ "kind": block.kind.as_str(), "key": block.key, "address": a, "failures": block.failures, "limit": block.limit, "window": failures.window().as_secs() }),
                    None => json!({ "kind": block.kind.as_str(), "key": block.key, "failures": block.failures, "limit": block.limit, "window": failures.window().as_secs() }),
                },
            ),
        "invalid_client",
        "too many failed attempts",
    )
}

/// Client authentication for the client-credentials grant: HTTP Basic or body parameters.
async fn authenticate_client(
    identity: &Identity,
    guards: Guards<'_>,
    parts: &http::request::Parts,
    form: &[(String, String)],
    peer: IpAddr,
) -> Result<crate::identity::store::Client, GatewayError> {
    let param = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    // Client authentication: HTTP Basic or body parameters, not both (RFC 6749 §2.3).
    let basic = parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    let (client_id, secret, used_basic) = match (basic, param("client_id"), param("client_secret"))
    {
        (Some(_), _, Some(_)) => {
            return Err(invalid_request("client_secret", "conflict", "is sent while the Authorization header also authenticates the client; use one method".into()));
        }
        (Some(h), _, None) => {
            let decoded = h
                .split_once(' ')
                .filter(|(s, _)| s.eq_ignore_ascii_case("basic"))
                .and_then(|(_, b64)| {
                    base64::engine::general_purpose::STANDARD
                        .decode(b64.trim())
                        .ok()
                })
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|s| s.split_once(':').map(|(i, p)| (i.to_owned(), p.to_owned())));
            let Some((id, pw)) = decoded else {
                let err = GatewayError::new(codes::INVALID_CLIENT)
                    .param("client_id", "(unreadable)")
                    .header(WWW_AUTHENTICATE, "Basic realm=\"candor\"");
                return Err(oauth(
                    err,
                    "invalid_client",
                    "the Authorization header is not HTTP Basic client_id:client_secret",
                ));
            };
            let form_decode = |s: &str| {
                parse_form(format!("x={s}").as_bytes())
                    .ok()
                    .and_then(|v| v.into_iter().next())
                    .map(|(_, v)| v)
            };
            (
                form_decode(&id).unwrap_or(id),
                form_decode(&pw).unwrap_or(pw),
                true,
            )
        }
        (None, Some(id), Some(pw)) => (id.to_owned(), pw.to_owned(), false),
        (None, _, _) => {
            let err = GatewayError::new(codes::INVALID_CLIENT).param(
                "client_id",
                param("client_id").unwrap_or("(none)").to_owned(),
            );
            return Err(oauth(
                err,
                "invalid_client",
                "no client credentials: send HTTP Basic, or client_id and client_secret",
            ));
        }
    };

    // A blocked client id or address is refused before any secret is checked.
    if let Some(block) = guards.check(Some(&client_id), peer).await {
        return Err(too_many(&block, guards.failures));
    }

    let snapshot = identity.snapshot();
    let client = snapshot.clients.get(&client_id).cloned();
    let hash = client.as_ref().map(|c| c.secret_hash.clone());
    // argon2 is deliberately slow: keep it off the async workers. An unknown client is
    // checked against a dummy hash so that timing does not tell which ids exist.
    let ok = tokio::task::spawn_blocking(move || match hash {
        Some(h) => verify_secret(&secret, &h),
        None => {
            let _ = verify_secret(&secret, DUMMY_HASH);
            false
        }
    })
    .await
    .unwrap_or(false);
    let Some(client) = client.filter(|_| ok) else {
        guards.fail(Some(&client_id), peer).await;
        let shown: String = client_id.chars().take(64).collect();
        let mut err = GatewayError::new(codes::INVALID_CLIENT).param("client_id", shown);
        if used_basic {
            err = err.header(WWW_AUTHENTICATE, "Basic realm=\"candor\"");
        }
        return Err(oauth(err, "invalid_client", "client authentication failed"));
    };
    Ok(client)
}

fn invalid_grant(text: String) -> GatewayError {
    oauth(
        GatewayError::new(codes::INVALID_GRANT).param("reason_text", text.clone()),
        "invalid_grant",
        &text,
    )
}

#[derive(serde::Deserialize)]
struct AssertionHeader {
    alg: Option<String>,
    kid: Option<String>,
}

#[derive(serde::Deserialize)]
struct AssertionClaims {
    iss: Option<String>,
    sub: Option<String>,
    aud: Option<serde_json::Value>,
    exp: Option<i64>,
    nbf: Option<i64>,
    jti: Option<String>,
}

/// A failed assertion check, with the client id it claimed (for counting attempts).
type AssertionFailure = Box<(GatewayError, Option<String>)>;

/// Checks a JWT-bearer assertion (RFC 7523 §3) and returns its client.
fn verify_assertion(
    assertion: &str,
    snapshot: &crate::identity::store::Snapshot,
    token_url: &str,
    leeway: i64,
    now: i64,
    replay: &ReplayCache,
) -> Result<(crate::identity::store::Client, UsedAssertion), AssertionFailure> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    let fail = |text: String| -> AssertionFailure { Box::new((invalid_grant(text), None)) };
    if assertion.len() > jwt::MAX_TOKEN_BYTES {
        return Err(fail(format!(
            "the assertion is {} bytes; at most {} are accepted",
            assertion.len(),
            jwt::MAX_TOKEN_BYTES
        )));
    }
    let parts: Vec<&str> = assertion.split('.').collect();
    if parts.len() != 3 {
        return Err(fail(format!(
            "the assertion is not a JWT: it has {} dot-separated segments, not 3",
            parts.len()
        )));
    }
    let decode = |s: &str, what: &str| -> Result<Vec<u8>, AssertionFailure> {
        B64.decode(s)
            .map_err(|_| fail(format!("the assertion's {what} is not base64url")))
    };
    let header: AssertionHeader = serde_json::from_slice(&decode(parts[0], "header")?)
        .map_err(|_| fail("the assertion's header is not a JSON object".into()))?;
    let claims: AssertionClaims = serde_json::from_slice(&decode(parts[1], "payload")?)
        .map_err(|_| fail("the assertion's payload is not a JSON object of claims".into()))?;
    let Some(iss) = claims.iss.filter(|s| !s.is_empty()) else {
        return Err(fail(
            "the assertion has no iss; it must be your client_id".into(),
        ));
    };
    let shown: String = iss.chars().take(64).collect();
    if claims.sub.as_deref() != Some(iss.as_str()) {
        return Err(fail(format!(
            "its iss ({shown}) and sub ({}) differ; both must be your client_id",
            claims.sub.as_deref().unwrap_or("missing")
        )));
    }
    let Some(client) = snapshot.clients.get(&iss) else {
        return Err(fail(format!("no client has the id {shown}")));
    };
    let blame =
        |text: String| -> AssertionFailure { Box::new((invalid_grant(text), Some(iss.clone()))) };
    let Some(jwks) = &client.jwks else {
        return Err(blame(format!(
            "client {shown} has no registered keys; register them with `candor clients set-keys`"
        )));
    };
    let keys = crate::identity::jwk::parse_set(jwks).map_err(|e| {
        blame(format!(
            "client {shown}'s registered keys are unusable: {e}"
        ))
    })?;
    let key = crate::identity::jwk::select(&keys, header.kid.as_deref())
        .map_err(|e| blame(format!("the assertion: {e}")))?;
    let alg = header.alg.unwrap_or_default();
    if alg != key.alg {
        let a: String = alg
            .chars()
            .take(16)
            .filter(|c| c.is_ascii_graphic())
            .collect();
        return Err(blame(format!(
            "its alg `{a}` is not allowed; the registered key signs with {}",
            key.alg
        )));
    }
    let sig = decode(parts[2], "signature")?;
    if !key.verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig) {
        return Err(blame(
            "its signature does not match the registered key".into(),
        ));
    }
    let audiences: Vec<String> = match &claims.aud {
        Some(serde_json::Value::String(a)) => vec![a.clone()],
        Some(serde_json::Value::Array(v)) => v
            .iter()
            .filter_map(|a| a.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    if !audiences.iter().any(|a| a == token_url) {
        let got = if audiences.is_empty() {
            "missing".to_owned()
        } else {
            audiences.join(", ")
        };
        return Err(blame(format!(
            "its aud is {got}; it must be this token endpoint, {token_url}"
        )));
    }
    let Some(exp) = claims.exp else {
        return Err(blame("it has no exp; assertions must expire".into()));
    };
    if exp + leeway <= now {
        return Err(blame(format!(
            "it expired {} ago",
            crate::time::human_seconds(now - exp)
        )));
    }
    if exp - now > MAX_ASSERTION_LIFETIME + leeway {
        return Err(blame(format!(
            "its exp is {} from now; assertions may live at most {}",
            crate::time::human_seconds(exp - now),
            crate::time::human_seconds(MAX_ASSERTION_LIFETIME)
        )));
    }
    if let Some(nbf) = claims.nbf
        && nbf > now + leeway
    {
        return Err(blame(format!(
            "it is not valid before {}",
            crate::time::rfc3339(nbf)
        )));
    }
    let Some(jti) = claims.jti.filter(|j| !j.is_empty() && j.len() <= 256) else {
        return Err(blame(
            "it has no jti (or one over 256 characters); each assertion needs a unique id".into(),
        ));
    };
    let used = UsedAssertion {
        key: format!("{iss}\u{0}{jti}"),
        until: exp + leeway,
        jti,
    };
    if !replay.first_use(used.key.clone(), used.until, now) {
        return Err(Box::new((replayed(&used.jti), Some(iss.clone()))));
    }
    Ok((client.clone(), used))
}

/// A JWT-bearer assertion this gateway accepted: its issuer and id, and until when a
/// replay could be presented.
struct UsedAssertion {
    /// `iss`, NUL, `jti`.
    key: String,
    /// The assertion's `exp` plus the leeway (Unix seconds).
    until: i64,
    jti: String,
}

/// `assertion_replayed` for `jti`.
fn replayed(jti: &str) -> GatewayError {
    let shown_jti: String = jti.chars().take(64).collect();
    oauth(
        GatewayError::new(codes::ASSERTION_REPLAYED).param("jti", shown_jti),
        "invalid_grant",
        "the assertion was already used",
    )
}

/// argon2id of a random string nobody knows, for checking unknown client ids in the same
/// time as known ones.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$Rkzkjb2y3HfcWckB5UzPrB4gWx6lqS+mrOpbTI2fXvA";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity_is_a_duration_and_a_bare_number_is_minutes() {
        let spec = validity_spec(300);
        assert_eq!(spec.parse("2").unwrap().as_secs(), 120);
        assert_eq!(spec.parse("90s").unwrap().as_secs(), 90);
        assert_eq!(spec.parse("5m").unwrap().as_secs(), 300);
        assert!(spec.parse("6").unwrap_err().contains("is too long"));
        assert!(spec.parse("0").unwrap_err().contains("is too short"));
        assert!(
            spec.parse("1.5")
                .unwrap_err()
                .contains("a bare number is minutes; from 1s to 5m")
        );
        assert_eq!(crate::http::path_segment("cl_a/b c"), "cl_a%2Fb%20c");
    }

    #[test]
    fn ids_are_quoted_for_the_shell_when_they_need_it() {
        assert_eq!(shell_word("cl_a-1.b"), "cl_a-1.b");
        assert_eq!(shell_word("a b"), "'a b'");
        assert_eq!(shell_word(""), "''");
        assert_eq!(shell_word("it's"), "'it'\\''s'");
        assert_eq!(shell_word("$(rm)"), "'$(rm)'");
        assert_eq!(shell_word("\u{1b}[31m'"), "$'\\x1b[31m\\''");
    }

    #[test]
    fn forms_decode_and_refuse_repeats() {
        let f = parse_form(b"grant_type=client_credentials&scope=a+b%3Ac").unwrap();
        assert_eq!(f[1], ("scope".into(), "a b:c".into()));
        let err = parse_form(b"a=1&a=2").unwrap_err();
        assert_eq!(err.fields[0].reason, "repeated");
        assert!(parse_form(b"a=%zz").is_err());
    }
}
