//! Access tokens: the client-credentials grant (RFC 6749 §4.4) or a signed JWT assertion
//! (RFC 7523 §2.1), a one-time code (RFC 6238 TOTP) when the client has a second factor,
//! cached and refreshed before they expire.

use crate::error::ApiError;
use crate::transport::Transport;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use candor_catalog::RetryRules;
use http_body_util::Full;
use ring::signature::{self, KeyPair};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Mutex;

/// A key that signs JWT assertions: Ed25519 (`EdDSA`) or P-256 (`ES256`).
pub struct AssertionKey {
    pair: KeyKind,
    kid: Option<String>,
}

enum KeyKind {
    Ed25519(signature::Ed25519KeyPair),
    Es256(signature::EcdsaKeyPair),
}

impl fmt::Debug for AssertionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The private key is never printed.
        f.debug_struct("AssertionKey")
            .field("alg", &self.alg())
            .field("kid", &self.kid)
            .finish()
    }
}

impl AssertionKey {
    /// An Ed25519 key from its PKCS#8 document (DER).
    pub fn ed25519_pkcs8(der: &[u8]) -> Result<AssertionKey, ApiError> {
        let pair = signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map_err(|e| ApiError::local(format!("not an Ed25519 PKCS#8 key: {e}")))?;
        Ok(AssertionKey {
            pair: KeyKind::Ed25519(pair),
            kid: None,
        })
    }

    /// A P-256 key from its PKCS#8 document (DER).
    pub fn es256_pkcs8(der: &[u8]) -> Result<AssertionKey, ApiError> {
        let pair = signature::EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            der,
            &ring::rand::SystemRandom::new(),
        )
        .map_err(|e| ApiError::local(format!("not a P-256 PKCS#8 key: {e}")))?;
        Ok(AssertionKey {
            pair: KeyKind::Es256(pair),
            kid: None,
        })
    }

    /// A key from a PEM `PRIVATE KEY` (PKCS#8) block, Ed25519 or P-256.
    pub fn from_pem(pem: &str) -> Result<AssertionKey, ApiError> {
        let der = rustls_pemfile::pkcs8_private_keys(&mut pem.as_bytes())
            .next()
            .ok_or_else(|| ApiError::local("no PRIVATE KEY block in the PEM text".into()))?
            .map_err(|e| ApiError::local(format!("the PEM text is not readable: {e}")))?;
        let der = der.secret_pkcs8_der();
        Self::ed25519_pkcs8(der).or_else(|_| Self::es256_pkcs8(der))
    }

    /// Names the key (`kid`) in each assertion's header, as registered with the gateway.
    pub fn with_kid(mut self, kid: impl Into<String>) -> AssertionKey {
        self.kid = Some(kid.into());
        self
    }

    /// The JWS algorithm: `EdDSA` or `ES256`.
    pub fn alg(&self) -> &'static str {
        match self.pair {
            KeyKind::Ed25519(_) => "EdDSA",
            KeyKind::Es256(_) => "ES256",
        }
    }

    /// The public key as a JWK set, to register with the gateway
    /// (`candor clients set-keys CLIENT_ID --jwks FILE`).
    pub fn public_jwks(&self) -> serde_json::Value {
        let mut jwk = match &self.pair {
            KeyKind::Ed25519(p) => serde_json::json!({
                "kty": "OKP", "crv": "Ed25519",
                "x": URL_SAFE_NO_PAD.encode(p.public_key().as_ref()),
            }),
            KeyKind::Es256(p) => {
                let pk = p.public_key().as_ref();
                serde_json::json!({
                    "kty": "EC", "crv": "P-256",
                    "x": URL_SAFE_NO_PAD.encode(&pk[1..33]),
                    "y": URL_SAFE_NO_PAD.encode(&pk[33..]),
                })
            }
        };
        if let Some(kid) = &self.kid {
            jwk["kid"] = kid.clone().into();
        }
        serde_json::json!({ "keys": [jwk] })
    }

    /// A signed assertion: `iss` and `sub` the client id, `aud` the token endpoint, valid
    /// for 60 s, with a fresh random `jti` (the gateway refuses a replayed one).
    pub(crate) fn assertion(&self, client_id: &str, audience: &str) -> Result<String, ApiError> {
        let now = unix_now();
        let mut header = serde_json::json!({ "alg": self.alg(), "typ": "JWT" });
        if let Some(kid) = &self.kid {
            header["kid"] = kid.clone().into();
        }
        let claims = serde_json::json!({
            "iss": client_id, "sub": client_id, "aud": audience,
            "iat": now, "exp": now + 60, "jti": random_hex(16),
        });
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = match &self.pair {
            KeyKind::Ed25519(p) => p.sign(input.as_bytes()).as_ref().to_vec(),
            KeyKind::Es256(p) => p
                .sign(&ring::rand::SystemRandom::new(), input.as_bytes())
                .map_err(|_| ApiError::local("signing the assertion failed".into()))?
                .as_ref()
                .to_vec(),
        };
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig)))
    }
}

/// How the client proves who it is at the token endpoint.
pub(crate) enum Grant {
    /// `client_credentials` with HTTP Basic.
    Secret { id: String, secret: String },
    /// `urn:ietf:params:oauth:grant-type:jwt-bearer` with a signed assertion.
    Assertion { id: String, key: Box<AssertionKey> },
}

/// An RFC 6238 one-time code generator: HMAC-SHA1, 30 s steps, 6 digits (what candor's
/// second factor and authenticator apps use).
#[derive(Clone)]
pub struct Totp {
    key: Vec<u8>,
}

impl fmt::Debug for Totp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Totp(..)")
    }
}

impl Totp {
    /// From the base32 secret (`totp_secret:` of `candor clients add --second-factor`).
    pub fn from_base32(secret: &str) -> Result<Totp, ApiError> {
        const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        let mut key = Vec::new();
        let (mut buffer, mut bits) = (0u32, 0);
        for c in secret.bytes().filter(|c| !matches!(c, b'=' | b' ' | b'-')) {
            let v = ALPHABET
                .iter()
                .position(|&x| x == c.to_ascii_uppercase())
                .ok_or_else(|| ApiError::local("the TOTP secret is not base32 (A-Z, 2-7)".into()))?
                as u32;
            buffer = (buffer << 5) | v;
            bits += 5;
            if bits >= 8 {
                key.push((buffer >> (bits - 8)) as u8);
                bits -= 8;
            }
        }
        if key.is_empty() {
            return Err(ApiError::local("the TOTP secret is empty".into()));
        }
        Ok(Totp { key })
    }

    /// The code at Unix time `t`.
    pub fn code_at(&self, t: u64) -> String {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &self.key);
        let tag = ring::hmac::sign(&key, &(t / 30).to_be_bytes());
        let h = tag.as_ref();
        let offset = usize::from(h[h.len() - 1] & 0x0f);
        let bin = u32::from_be_bytes([
            h[offset] & 0x7f,
            h[offset + 1],
            h[offset + 2],
            h[offset + 3],
        ]);
        format!("{:06}", bin % 1_000_000)
    }

    /// The code now.
    pub fn now(&self) -> String {
        self.code_at(unix_now())
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
        .unwrap_or_else(|_| b.iter_mut().for_each(|x| *x = fastrand::u8(..)));
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `application/x-www-form-urlencoded` encoding of one value.
pub(crate) fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

struct Cached {
    token: String,
    refresh_at: Instant,
}

/// Obtains, caches and refreshes access tokens.
pub(crate) struct TokenSource {
    pub(crate) url: String,
    pub(crate) grant: Grant,
    pub(crate) scope: Option<String>,
    pub(crate) validity: Option<Duration>,
    pub(crate) totp: Option<Totp>,
    cache: Mutex<Option<Cached>>,
    pub(crate) requests: AtomicU64,
}

impl TokenSource {
    pub(crate) fn new(url: String, grant: Grant) -> TokenSource {
        TokenSource {
            url,
            grant,
            scope: None,
            validity: None,
            totp: None,
            cache: Mutex::new(None),
            requests: AtomicU64::new(0),
        }
    }

    /// A valid token: the cached one until a fifth of its life is left (at most 60 s
    /// before it expires), else a new one. `stale` is a token the API refused: a new one
    /// is obtained unless another request has already replaced it.
    pub(crate) async fn token(
        &self,
        transport: &Transport,
        rules: &RetryRules,
        stale: Option<&str>,
    ) -> Result<String, ApiError> {
        let mut cache = self.cache.lock().await;
        if let Some(c) = cache.as_ref()
            && Instant::now() < c.refresh_at
            && stale != Some(c.token.as_str())
        {
            return Ok(c.token.clone());
        }
        let (token, lifetime) = self.fetch(transport, rules).await?;
        let margin = (lifetime / 5).min(Duration::from_secs(60));
        *cache = Some(Cached {
            token: token.clone(),
            refresh_at: Instant::now() + lifetime.saturating_sub(margin),
        });
        Ok(token)
    }

    async fn fetch(
        &self,
        transport: &Transport,
        rules: &RetryRules,
    ) -> Result<(String, Duration), ApiError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut form: Vec<(&str, String)> = Vec::new();
        let mut req = http::Request::builder()
            .method(http::Method::POST)
            .uri(&self.url)
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(http::header::ACCEPT, "application/json");
        match &self.grant {
            Grant::Secret { id, secret } => {
                form.push(("grant_type", "client_credentials".into()));
                let pair = format!("{}:{}", form_encode(id), form_encode(secret));
                req = req.header(
                    http::header::AUTHORIZATION,
                    format!("Basic {}", STANDARD.encode(pair)),
                );
            }
            Grant::Assertion { id, key } => {
                form.push((
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:jwt-bearer".into(),
                ));
                form.push(("assertion", key.assertion(id, &self.url)?));
            }
        }
        if let Some(s) = &self.scope {
            form.push(("scope", s.clone()));
        }
        if let Some(v) = self.validity {
            form.push(("validity", format!("{}s", v.as_secs().max(1))));
        }
        if let Some(t) = &self.totp {
            form.push(("totp", t.now()));
        }
        let body = form
            .iter()
            .map(|(k, v)| format!("{k}={}", form_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| ApiError::local(format!("token endpoint URL {}: {e}", self.url)))?;
        let answer = transport.send(req).await?;
        if !answer.status.is_success() {
            return Err(ApiError::from_response(
                answer.status.as_u16(),
                &answer.headers,
                &answer.body,
                rules,
            ));
        }
        let v: serde_json::Value = serde_json::from_slice(&answer.body).map_err(|_| {
            ApiError::local(format!(
                "the token endpoint {} answered {} without a JSON body",
                self.url, answer.status
            ))
        })?;
        let token = v["access_token"].as_str().ok_or_else(|| {
            ApiError::local(format!(
                "the token endpoint {} answered without access_token",
                self.url
            ))
        })?;
        let lifetime = v["expires_in"].as_u64().unwrap_or(300);
        Ok((token.to_owned(), Duration::from_secs(lifetime)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6238_vectors() {
        // RFC 6238 appendix B, SHA-1, key "12345678901234567890" (base32 below); the
        // appendix shows 8 digits, the last 6 are these.
        let t = Totp::from_base32("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ").unwrap();
        assert_eq!(t.code_at(59), "287082");
        assert_eq!(t.code_at(1_111_111_109), "081804");
        assert_eq!(t.code_at(2_000_000_000), "279037");
        assert!(Totp::from_base32("not base32!").is_err());
    }

    #[test]
    fn assertions_are_signed_with_a_fresh_jti() {
        let rng = ring::rand::SystemRandom::new();
        let der = signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let key = AssertionKey::ed25519_pkcs8(der.as_ref())
            .unwrap()
            .with_kid("k1");
        let a = key
            .assertion("c1", "http://127.0.0.1:1/oauth/token")
            .unwrap();
        let b = key
            .assertion("c1", "http://127.0.0.1:1/oauth/token")
            .unwrap();
        let claims = |t: &str| -> serde_json::Value {
            serde_json::from_slice(
                &URL_SAFE_NO_PAD
                    .decode(t.split('.').nth(1).unwrap())
                    .unwrap(),
            )
            .unwrap()
        };
        assert_ne!(claims(&a)["jti"], claims(&b)["jti"]);
        assert_eq!(claims(&a)["aud"], "http://127.0.0.1:1/oauth/token");
        assert_eq!(claims(&a)["iss"], "c1");
        let parts: Vec<&str> = a.split('.').collect();
        let public = URL_SAFE_NO_PAD
            .decode(key.public_jwks()["keys"][0]["x"].as_str().unwrap())
            .unwrap();
        signature::UnparsedPublicKey::new(&signature::ED25519, public)
            .verify(
                format!("{}.{}", parts[0], parts[1]).as_bytes(),
                &URL_SAFE_NO_PAD.decode(parts[2]).unwrap(),
            )
            .unwrap();
        assert!(format!("{key:?}").contains("EdDSA"));
        assert_eq!(form_encode("a b&c:d"), "a+b%26c%3Ad");
    }
}
