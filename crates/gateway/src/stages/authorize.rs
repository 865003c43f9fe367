//! Authorize stage: the authenticated principal against what the route requires — scopes,
//! the account the request names, and that account's state.

use crate::error::ErrorSource;
use crate::error::GatewayError;
use crate::identity::store::{AccountStatus, Snapshot};
use crate::pipeline::context::{Flow, RequestCtx};
use crate::stages::authenticate::{AccountSource, AuthConfig, Principal, challenge};
use candor_catalog::{FieldError, codes};
use http::HeaderMap;

/// Checks `principal` against `auth` for a request to `path` with `params` captured by the
/// route.
pub(crate) fn authorize(
    principal: &Principal,
    auth: &AuthConfig,
    snapshot: &Snapshot,
    headers: &HeaderMap,
    params: &[(&str, &str)],
    path: &str,
) -> Result<(), GatewayError> {
    let missing: Vec<&str> = auth
        .scopes
        .iter()
        .filter(|s| !principal.scopes.contains(s))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        let required = auth.scopes.join(" ");
        let granted = if principal.scopes.is_empty() {
            "no scopes".to_owned()
        } else {
            principal.scopes.join(" ")
        };
        let err = GatewayError::new(codes::INSUFFICIENT_SCOPE)
            .param("path", path.to_owned())
            .param("required", required.clone())
            .param("granted", granted)
            .extension("required_scopes", auth.scopes.clone().into())
            .extension("granted_scopes", principal.scopes.clone().into())
            .extension("missing_scopes", missing.clone().into());
        let err = challenge(
            err,
            &auth.scheme,
            Some("insufficient_scope"),
            &format!("requires scope {}", missing.join(" ")),
        );
        // RFC 6750 §3: the scope attribute names what is needed.
        let mut err = err;
        if let Some((_, v)) = err.headers.last_mut()
            && let Ok(nv) = http::HeaderValue::from_str(&format!(
                "{}, scope=\"{required}\"",
                v.to_str().unwrap_or("")
            ))
        {
            *v = nv;
        }
        return Err(err);
    }
    let actual = principal.account.as_deref().unwrap_or("(none)");
    if let Some(source) = &auth.account {
        let requested = match source {
            AccountSource::PathParam(name) => params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| (*v).to_owned()),
            AccountSource::Header(name) => {
                let field = |reason: &str, summary: String, detail: String| {
                    GatewayError::new(codes::VALIDATION_FAILED)
                        .param("count", "1")
                        .param("summary", summary)
                        .field(FieldError {
                            location: "header".into(),
                            pointer: name.clone(),
                            name: name.clone(),
                            reason: reason.into(),
                            detail,
                        })
                };
                let mut values = headers.get_all(name.as_str()).iter();
                let (first, second) = (values.next(), values.next());
                if second.is_some() {
                    return Err(field(
                        "invalid",
                        format!("the {name} header is sent more than once"),
                        format!(
                            "is sent {} times; send it once, with the id of the account this request acts for",
                            2 + values.count()
                        ),
                    ));
                }
                match first.map(|v| (v.as_bytes(), v.to_str().map(str::trim))) {
                    Some((_, Ok(v))) if !v.is_empty() => Some(v.to_owned()),
                    Some((bytes, Err(_))) => {
                        let at = bytes
                            .iter()
                            .position(|b| !(0x20..0x7f).contains(b) && *b != b'\t')
                            .unwrap_or(0);
                        return Err(field(
                            "invalid",
                            format!("the {name} header is not an account id"),
                            format!(
                                "has byte 0x{:02X} at position {}; an account id is visible ASCII (the token's account is {actual})",
                                bytes[at],
                                at + 1
                            ),
                        ));
                    }
                    _ => {
                        return Err(field(
                            "required",
                            format!(
                                "the {name} header is required and names the account this request acts for"
                            ),
                            format!(
                                "is required: the id of the account this request acts for (the token's account is {actual})"
                            ),
                        ));
                    }
                }
            }
        };
        if let Some(requested) = requested
            && Some(requested.as_str()) != principal.account.as_deref()
        {
            return Err(GatewayError::new(codes::ACCOUNT_MISMATCH)
                .param("requested", requested.clone())
                .param("actual", actual.to_owned())
                .extension("requested_account", requested.into())
                .extension("token_account", actual.into()));
        }
    }
    if let Some(id) = &principal.account {
        let state = match snapshot.accounts.get(id).map(|a| a.status) {
            Some(AccountStatus::Active) => None,
            Some(AccountStatus::Suspended) => Some("suspended"),
            Some(AccountStatus::Deleted) => Some("deleted"),
            // An account this gateway does not manage (named by an external issuer's token)
            // has no state here to check.
            None => None,
        };
        if let Some(state) = state {
            return Err(GatewayError::new(codes::ACCOUNT_INACTIVE)
                .param("account", id.clone())
                .param("state", state)
                .extension("account_status", state.into()));
        }
    }
    Ok(())
}

/// The authorize stage: the principal the authenticate stage found against the route's
/// scopes and account rules.
pub(crate) fn run(auth: &AuthConfig, ctx: &mut RequestCtx<'_>) -> Result<Flow, GatewayError> {
    let (Some(principal), Some(snapshot), Some(route)) = (&ctx.principal, &ctx.snapshot, ctx.route)
    else {
        return Err(GatewayError::new(codes::INTERNAL_ERROR)
            .param("stage", "authorize: no authenticated principal")
            .source(ErrorSource::Internal));
    };
    let path = ctx.path();
    let params = route.config.pattern.captures(path);
    let decision = authorize(principal, auth, snapshot, &ctx.parts.headers, &params, path);
    match decision {
        Ok(()) => {
            ctx.trail.pass("authorize");
            Ok(Flow::Continue)
        }
        Err(e) => {
            ctx.trail
                .record("authorize", "reject", Some(e.code), Vec::new());
            Err(e)
        }
    }
}
