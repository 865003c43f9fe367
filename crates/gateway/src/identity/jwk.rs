//! JSON Web Keys (RFC 7517) for verifying signatures: Ed25519 (EdDSA), P-256 (ES256) and
//! RSA (RS256). Each key's algorithm is fixed by the key itself (RFC 8725 §3.1): a token's
//! `alg` header must agree with it, never choose it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::signature::{self, UnparsedPublicKey};
use serde::Deserialize;

/// A public key that verifies one algorithm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct VerifyingKey {
    /// Key id, if the JWK has one.
    pub kid: Option<String>,
    /// `EdDSA`, `ES256` or `RS256`.
    pub alg: &'static str,
    material: Material,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Material {
    Ed25519(Vec<u8>),
    P256(Vec<u8>),
    Rsa { n: Vec<u8>, e: Vec<u8> },
}

#[derive(Deserialize)]
struct RawJwk {
    kty: Option<String>,
    kid: Option<String>,
    alg: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
    n: Option<String>,
    e: Option<String>,
    d: Option<String>,
}

#[derive(Deserialize)]
struct RawSet {
    keys: Vec<serde_json::Value>,
}

fn field(v: &Option<String>, name: &str, i: usize) -> Result<Vec<u8>, String> {
    let s = v
        .as_deref()
        .ok_or_else(|| format!("key {i}: missing `{name}`"))?;
    B64.decode(s)
        .map_err(|_| format!("key {i}: `{name}` is not base64url"))
}

/// Parses a JWK set, refusing private keys and keys whose algorithm cannot be pinned.
pub(crate) fn parse_set(text: &str) -> Result<Vec<VerifyingKey>, String> {
    let set: RawSet = serde_json::from_str(text)
        .map_err(|e| format!("not a JWK set ({{\"keys\": [...]}}): {e}"))?;
    if set.keys.is_empty() {
        return Err("the JWK set has no keys".into());
    }
    let mut out = Vec::new();
    for (i, value) in set.keys.into_iter().enumerate() {
        let k: RawJwk = serde_json::from_value(value).map_err(|e| format!("key {i}: {e}"))?;
        if k.d.is_some() {
            return Err(format!(
                "key {i} is a private key; register only the public part"
            ));
        }
        let (alg, material) = match (k.kty.as_deref(), k.crv.as_deref()) {
            (Some("OKP"), Some("Ed25519")) => ("EdDSA", Material::Ed25519(field(&k.x, "x", i)?)),
            (Some("EC"), Some("P-256")) => {
                let (x, y) = (field(&k.x, "x", i)?, field(&k.y, "y", i)?);
                if x.len() != 32 || y.len() != 32 {
                    return Err(format!("key {i}: P-256 coordinates are 32 bytes"));
                }
                let mut point = vec![4u8];
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                ("ES256", Material::P256(point))
            }
            (Some("RSA"), _) => {
                let n = field(&k.n, "n", i)?;
                if n.len() < 256 {
                    return Err(format!("key {i}: RSA keys must have at least 2048 bits"));
                }
                (
                    "RS256",
                    Material::Rsa {
                        n,
                        e: field(&k.e, "e", i)?,
                    },
                )
            }
            (kty, crv) => {
                return Err(format!(
                    "key {i}: kty {} crv {} is not supported (OKP Ed25519, EC P-256 or RSA)",
                    kty.unwrap_or("(none)"),
                    crv.unwrap_or("(none)")
                ));
            }
        };
        if let Some(a) = k.alg.as_deref()
            && a != alg
        {
            return Err(format!(
                "key {i}: alg {a} does not fit a {} key ({alg})",
                k.kty.unwrap_or_default()
            ));
        }
        out.push(VerifyingKey {
            kid: k.kid,
            alg,
            material,
        });
    }
    Ok(out)
}

impl VerifyingKey {
    /// Whether `sig` is this key's signature of `message`.
    pub(crate) fn verify(&self, message: &[u8], sig: &[u8]) -> bool {
        match &self.material {
            Material::Ed25519(x) => UnparsedPublicKey::new(&signature::ED25519, x)
                .verify(message, sig)
                .is_ok(),
            Material::P256(point) => {
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, sig)
                    .is_ok()
            }
            Material::Rsa { n, e } => signature::RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, sig)
                .is_ok(),
        }
    }
}

/// Picks the key for a token header: by `kid` when given, else the only key.
pub(crate) fn select<'k>(
    keys: &'k [VerifyingKey],
    kid: Option<&str>,
) -> Result<&'k VerifyingKey, String> {
    match kid {
        Some(kid) => keys
            .iter()
            .find(|k| k.kid.as_deref() == Some(kid))
            .ok_or_else(|| {
                let shown: String = kid
                    .chars()
                    .take(40)
                    .filter(|c| c.is_ascii_graphic())
                    .collect();
                format!("its key id `{shown}` is not among the registered keys")
            }),
        None if keys.len() == 1 => Ok(&keys[0]),
        None => Err("its header has no kid and several keys are registered".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_private_and_unpinnable_keys() {
        assert!(
            parse_set(r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AAAA","d":"AAAA"}]}"#)
                .unwrap_err()
                .contains("private key")
        );
        assert!(
            parse_set(r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#)
                .unwrap_err()
                .contains("not supported")
        );
        assert!(parse_set(r#"{"keys":[]}"#).is_err());
        let x = B64.encode([7u8; 32]);
        let mixed =
            format!(r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","alg":"HS256","x":"{x}"}}]}}"#);
        assert!(parse_set(&mixed).unwrap_err().contains("does not fit"));
    }

    #[test]
    fn verifies_ed25519_and_p256() {
        use ring::signature::KeyPair;
        let rng = ring::rand::SystemRandom::new();
        let ed = signature::Ed25519KeyPair::from_pkcs8(
            signature::Ed25519KeyPair::generate_pkcs8(&rng)
                .unwrap()
                .as_ref(),
        )
        .unwrap();
        let set = format!(
            r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","kid":"a","x":"{}"}}]}}"#,
            B64.encode(ed.public_key().as_ref())
        );
        let keys = parse_set(&set).unwrap();
        assert!(keys[0].verify(b"m", ed.sign(b"m").as_ref()));
        assert!(!keys[0].verify(b"n", ed.sign(b"m").as_ref()));

        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        let ec = signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
        let p = ec.public_key().as_ref();
        let set = format!(
            r#"{{"keys":[{{"kty":"EC","crv":"P-256","x":"{}","y":"{}"}}]}}"#,
            B64.encode(&p[1..33]),
            B64.encode(&p[33..])
        );
        let keys = parse_set(&set).unwrap();
        assert_eq!(keys[0].alg, "ES256");
        assert!(keys[0].verify(b"m", ec.sign(&rng, b"m").unwrap().as_ref()));
        assert!(select(&keys, None).is_ok());
        assert!(select(&keys, Some("zz")).is_err());
    }
}
