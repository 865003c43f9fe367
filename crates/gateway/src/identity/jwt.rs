//! JSON Web Tokens (RFC 7519) as candor issues and checks them, following RFC 8725:
//! algorithms pinned per key (never `none`, never HMAC), `jku`/`x5u`/`jwk` header members
//! ignored, size limited before decoding, bounded clock leeway.

use crate::identity::store::{SigningKeyRecord, Snapshot};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::signature::{ED25519, UnparsedPublicKey};
use serde::{Deserialize, Serialize};

/// Longest token accepted before any decoding.
pub(crate) const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The longest lifetime candor gives a token (a client's maximum, in seconds). A token
/// claiming more was not made by the token endpoint, whatever its signature says.
pub(crate) const MAX_LIFETIME: i64 = 86_400;

/// Claims of a token issued by candor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Subject: the client_id.
    pub sub: String,
    /// Audience.
    pub aud: String,
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Not before, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Token id.
    pub jti: String,
    /// Space-separated scopes.
    #[serde(default)]
    pub scope: String,
    /// The account the client belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
}

#[derive(Serialize)]
struct Header<'a> {
    alg: &'a str,
    typ: &'a str,
    kid: &'a str,
}

/// Signs `claims` with `key` (EdDSA).
pub(crate) fn issue(key: &SigningKeyRecord, claims: &Claims) -> Result<String, String> {
    let pair = ring::signature::Ed25519KeyPair::from_pkcs8(&key.private_pkcs8)
        .map_err(|_| "signing key unreadable".to_owned())?;
    let header = serde_json::to_vec(&Header {
        alg: "EdDSA",
        typ: "JWT",
        kid: &key.kid,
    })
    .map_err(|e| e.to_string())?;
    let payload = serde_json::to_vec(claims).map_err(|e| e.to_string())?;
    let mut token = B64.encode(header);
    token.push('.');
    token.push_str(&B64.encode(payload));
    let sig = pair.sign(token.as_bytes());
    token.push('.');
    token.push_str(&B64.encode(sig.as_ref()));
    Ok(token)
}

/// The gateway's public keys as a JWK set (RFC 7517).
pub(crate) fn jwks(snapshot: &Snapshot) -> serde_json::Value {
    let keys: Vec<serde_json::Value> = snapshot
        .signing_keys
        .iter()
        .map(|k| {
            serde_json::json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "use": "sig",
                "alg": k.alg,
                "kid": k.kid,
                "x": B64.encode(&k.public_key),
            })
        })
        .collect();
    serde_json::json!({ "keys": keys })
}

/// Why a token was refused. Each maps to a catalog code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TokenError {
    /// `credentials_malformed` with reason `not_a_jwt`.
    NotAJwt(String),
    /// `token_invalid`, with the reason in words.
    Invalid(String),
    /// `token_expired`
    Expired {
        /// Expiry.
        exp: i64,
        /// Issued at.
        iat: i64,
    },
    /// `token_not_yet_valid`
    NotYetValid {
        /// Not-before.
        nbf: i64,
    },
    /// `token_wrong_audience` (audience or issuer).
    WrongAudience {
        /// "audience" or "issuer".
        what: &'static str,
        /// What the token says.
        actual: String,
        /// What this API expects.
        expected: String,
    },
    /// `token_revoked`
    Revoked {
        /// When.
        at: String,
    },
}

/// What tokens must satisfy.
#[derive(Clone, Debug)]
pub(crate) struct Expectations<'a> {
    /// Required `iss`.
    pub issuer: &'a str,
    /// Required `aud`.
    pub audience: &'a str,
    /// Allowed clock skew, seconds.
    pub leeway: i64,
    /// The time to check against.
    pub now: i64,
}

fn segment<T: for<'de> Deserialize<'de>>(s: &str, what: &str) -> Result<T, TokenError> {
    let bytes = B64
        .decode(s)
        .map_err(|_| TokenError::Invalid(format!("its {what} is not base64url")))?;
    serde_json::from_slice(&bytes)
        .map_err(|_| TokenError::Invalid(format!("its {what} is not the expected JSON object")))
}

#[derive(Deserialize)]
struct RawHeader {
    alg: Option<String>,
    kid: Option<String>,
}

/// Whether `token` is shaped like a JWT at all (three segments, a JSON header and payload),
/// before asking who issued it: a token that is not one is malformed, whatever the route
/// accepts.
pub(crate) fn check_shape(token: &str) -> Result<(), TokenError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        let n = token.split('.').count();
        return Err(TokenError::NotAJwt(format!(
            "it has {n} dot-separated segment{}; a JWT has 3",
            if n == 1 { "" } else { "s" }
        )));
    };
    segment::<RawHeader>(h, "header")?;
    segment::<serde_json::Value>(p, "payload")?;
    Ok(())
}

/// Verifies a token issued by candor against the snapshot's keys and `expect`.
pub(crate) fn verify(
    token: &str,
    snapshot: &Snapshot,
    expect: &Expectations<'_>,
) -> Result<Claims, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::Invalid(format!(
            "it is {} bytes; tokens are at most {MAX_TOKEN_BYTES}",
            token.len()
        )));
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        let n = token.split('.').count();
        return Err(TokenError::NotAJwt(format!(
            "it has {n} dot-separated segment{}; a JWT has 3",
            if n == 1 { "" } else { "s" }
        )));
    };
    let header: RawHeader = segment(h, "header")?;
    let alg = header.alg.unwrap_or_default();
    let Some(kid) = header.kid else {
        return Err(TokenError::Invalid("its header has no kid".into()));
    };
    // The key decides the algorithm; the header only has to agree (RFC 8725 §3.1).
    let key = snapshot.signing_keys.iter().find(|k| k.kid == kid).ok_or_else(|| {
        let shown: String = kid.chars().take(40).filter(|c| c.is_ascii_graphic()).collect();
        TokenError::Invalid(format!("its key id `{shown}` is not one of this gateway's keys (see /.well-known/jwks.json)"))
    })?;
    if alg != key.alg {
        let shown: String = alg
            .chars()
            .take(16)
            .filter(|c| c.is_ascii_graphic())
            .collect();
        return Err(TokenError::Invalid(format!(
            "its algorithm `{shown}` is not allowed for key {}; that key signs with {}",
            key.kid, key.alg
        )));
    }
    let sig = B64
        .decode(s)
        .map_err(|_| TokenError::Invalid("its signature is not base64url".into()))?;
    let signed = &token[..h.len() + 1 + p.len()];
    UnparsedPublicKey::new(&ED25519, &key.public_key)
        .verify(signed.as_bytes(), &sig)
        .map_err(|_| TokenError::Invalid("its signature does not match its contents".into()))?;
    let claims: Claims = segment(p, "payload")?;
    if claims.iss != expect.issuer {
        return Err(TokenError::WrongAudience {
            what: "issuer",
            actual: claims.iss,
            expected: expect.issuer.to_owned(),
        });
    }
    if claims.aud != expect.audience {
        return Err(TokenError::WrongAudience {
            what: "audience",
            actual: claims.aud,
            expected: expect.audience.to_owned(),
        });
    }
    if claims.exp - claims.iat > MAX_LIFETIME
        || claims.exp - expect.now > MAX_LIFETIME + expect.leeway
    {
        return Err(TokenError::Invalid(format!(
            "its lifetime of {} is longer than any this gateway issues (at most {})",
            crate::time::human_seconds(claims.exp - claims.iat.min(expect.now)),
            crate::time::human_seconds(MAX_LIFETIME)
        )));
    }
    if claims.exp + expect.leeway <= expect.now {
        return Err(TokenError::Expired {
            exp: claims.exp,
            iat: claims.iat,
        });
    }
    if let Some(nbf) = claims.nbf
        && nbf > expect.now + expect.leeway
    {
        return Err(TokenError::NotYetValid { nbf });
    }
    if let Some(at) = snapshot.revoked.get(&claims.jti) {
        return Err(TokenError::Revoked { at: at.clone() });
    }
    Ok(claims)
}

/// The `iss` a token claims, read without verifying anything (to pick the issuer whose keys
/// will verify it).
pub(crate) fn peek_issuer(token: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Iss {
        iss: Option<String>,
    }
    let payload = token.split('.').nth(1)?;
    let bytes = B64.decode(payload).ok()?;
    serde_json::from_slice::<Iss>(&bytes).ok()?.iss
}

/// The key id a token's header names, if it parses.
pub(crate) fn peek_kid(token: &str) -> Option<String> {
    let header: RawHeader = segment(token.split('.').next()?, "header").ok()?;
    header.kid
}

/// Verifies a token of an external issuer with that issuer's keys.
pub(crate) fn verify_external(
    token: &str,
    keys: &[crate::identity::jwk::VerifyingKey],
    issuer: &crate::identity::issuers::ExternalIssuer,
    leeway: i64,
    now: i64,
) -> Result<Claims, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::Invalid(format!(
            "it is {} bytes; tokens are at most {MAX_TOKEN_BYTES}",
            token.len()
        )));
    }
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return Err(TokenError::NotAJwt(format!(
            "it has {} dot-separated segments; a JWT has 3",
            parts.len()
        )));
    }
    let header: RawHeader = segment(parts[0], "header")?;
    let key = crate::identity::jwk::select(keys, header.kid.as_deref())
        .map_err(|e| TokenError::Invalid(format!("{e} of issuer {}", issuer.issuer)))?;
    let alg = header.alg.unwrap_or_default();
    if alg != key.alg {
        let shown: String = alg
            .chars()
            .take(16)
            .filter(|c| c.is_ascii_graphic())
            .collect();
        return Err(TokenError::Invalid(format!(
            "its algorithm `{shown}` is not allowed; the issuer's key signs with {}",
            key.alg
        )));
    }
    let sig = B64
        .decode(parts[2])
        .map_err(|_| TokenError::Invalid("its signature is not base64url".into()))?;
    if !key.verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig) {
        return Err(TokenError::Invalid(
            "its signature does not match its contents".into(),
        ));
    }
    let payload: serde_json::Value = segment(parts[1], "payload")?;
    let text = |name: &str| {
        payload
            .get(name)
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    let int = |name: &str| payload.get(name).and_then(serde_json::Value::as_i64);
    let iss = text("iss").unwrap_or_default();
    if iss != issuer.issuer {
        return Err(TokenError::WrongAudience {
            what: "issuer",
            actual: iss,
            expected: issuer.issuer.clone(),
        });
    }
    let audiences: Vec<String> = match payload.get("aud") {
        Some(serde_json::Value::String(a)) => vec![a.clone()],
        Some(serde_json::Value::Array(v)) => v
            .iter()
            .filter_map(|a| a.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    if !audiences.contains(&issuer.audience) {
        let actual = if audiences.is_empty() {
            "(no audience)".to_owned()
        } else {
            audiences.join(", ")
        };
        return Err(TokenError::WrongAudience {
            what: "audience",
            actual,
            expected: issuer.audience.clone(),
        });
    }
    let exp = int("exp").ok_or_else(|| TokenError::Invalid("it has no exp".into()))?;
    let iat = int("iat").unwrap_or(exp);
    if exp + leeway <= now {
        return Err(TokenError::Expired { exp, iat });
    }
    if let Some(nbf) = int("nbf")
        && nbf > now + leeway
    {
        return Err(TokenError::NotYetValid { nbf });
    }
    let scope = match (payload.get("scope"), payload.get("scp")) {
        (Some(serde_json::Value::String(s)), _) => s.clone(),
        (_, Some(serde_json::Value::Array(v))) => v
            .iter()
            .filter_map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    };
    Ok(Claims {
        iss,
        sub: text("sub").unwrap_or_default(),
        aud: issuer.audience.clone(),
        exp,
        iat,
        nbf: int("nbf"),
        jti: text("jti").unwrap_or_default(),
        scope,
        account: text(&issuer.account_claim),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::store::Identity;

    fn setup() -> (Identity, std::sync::Arc<Snapshot>) {
        let dir = crate::identity::store::ScratchDir::new("jwt");
        let id = Identity::open(&dir.0).unwrap();
        let snap = id.snapshot();
        // The SQLite file stays open through `id`; on Unix the directory can go now.
        drop(dir);
        (id, snap)
    }

    fn claims(now: i64) -> Claims {
        Claims {
            iss: "https://gw".into(),
            sub: "cl_1".into(),
            aud: "candor".into(),
            exp: now + 300,
            iat: now,
            nbf: None,
            jti: "j1".into(),
            scope: "a b".into(),
            account: Some("acme".into()),
        }
    }

    #[test]
    fn issues_and_verifies() {
        let (_id, snap) = setup();
        let now = crate::time::unix_now();
        let token = issue(snap.active_key().unwrap(), &claims(now)).unwrap();
        let expect = Expectations {
            issuer: "https://gw",
            audience: "candor",
            leeway: 30,
            now,
        };
        assert_eq!(verify(&token, &snap, &expect).unwrap(), claims(now));
        let later = Expectations {
            now: now + 331,
            ..expect.clone()
        };
        assert!(matches!(
            verify(&token, &snap, &later),
            Err(TokenError::Expired { .. })
        ));
        let other = Expectations {
            audience: "billing",
            ..expect.clone()
        };
        assert!(matches!(
            verify(&token, &snap, &other),
            Err(TokenError::WrongAudience {
                what: "audience",
                ..
            })
        ));
        // Tampered payload.
        let mut parts: Vec<&str> = token.split('.').collect();
        let mut c = claims(now);
        c.scope = "admin".into();
        let forged = B64.encode(serde_json::to_vec(&c).unwrap());
        parts[1] = &forged;
        let err = verify(&parts.join("."), &snap, &expect).unwrap_err();
        assert_eq!(
            err,
            TokenError::Invalid("its signature does not match its contents".into())
        );
        assert!(matches!(
            verify("a.b", &snap, &expect),
            Err(TokenError::NotAJwt(_))
        ));
    }

    #[test]
    fn alg_none_is_refused() {
        let (_id, snap) = setup();
        let now = crate::time::unix_now();
        let kid = &snap.active_key().unwrap().kid;
        let header = B64.encode(format!(r#"{{"alg":"none","kid":"{kid}"}}"#));
        let payload = B64.encode(serde_json::to_vec(&claims(now)).unwrap());
        let token = format!("{header}.{payload}.");
        let expect = Expectations {
            issuer: "https://gw",
            audience: "candor",
            leeway: 30,
            now,
        };
        match verify(&token, &snap, &expect) {
            Err(TokenError::Invalid(r)) => {
                assert!(r.contains("algorithm `none` is not allowed"), "{r}")
            }
            other => panic!("{other:?}"),
        }
    }
}
