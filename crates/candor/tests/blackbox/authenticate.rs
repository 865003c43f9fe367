//! Authenticate stage, black-box: bearer credentials with every refusal precise (missing,
//! malformed, expired, not yet valid, wrong audience or issuer, revoked), an attack suite
//! after RFC 8725, and no secret or token in the logs.

use crate::harness::*;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use candor_gateway::{Claims, Identity, unix_now};
use serde_json::Value;
use std::sync::atomic::Ordering;

fn identity(s: &Setup) -> Identity {
    Identity::open(&s.gw.dir.join("candor-data")).unwrap()
}

/// A token signed with the gateway's real key but with claims of the test's choosing.
fn forged(s: &Setup, edit: impl FnOnce(&mut Claims)) -> String {
    let id = identity(s);
    let now = unix_now();
    let mut c = Claims {
        iss: format!("http://{}", s.gw.addr),
        sub: s.client_id.clone(),
        aud: "devices-api".into(),
        exp: now + 300,
        iat: now,
        nbf: None,
        jti: format!("forged-{now}-{}", rand_suffix()),
        scope: "devices:read".into(),
        account: Some("acme".into()),
    };
    edit(&mut c);
    id.sign(&c).unwrap()
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
}

/// The gateway's active signing key as the attack suite needs it: its id, its public half
/// and its PKCS#8 document (to sign a payload no [`Claims`] value can express, one without
/// `exp`).
struct SigningKey {
    kid: String,
    public_key: Vec<u8>,
    private_pkcs8: Vec<u8>,
}

/// The gateway's active signing key, read from its store's snapshot.
fn active_key(s: &Setup) -> SigningKey {
    let id = identity(s);
    let snapshot = id.snapshot();
    let key = snapshot
        .active_key()
        .expect("the gateway has an active key");
    SigningKey {
        kid: key.kid.clone(),
        public_key: key.public_key.clone(),
        private_pkcs8: key.private_pkcs8.clone(),
    }
}

#[test]
fn malformed_credentials_say_which_rule_was_broken() {
    let s = setup();
    let path = "/v1/customers/acme/devices";
    let r = s.gw.get(path);
    let b = assert_problem(&r, "credentials_missing");
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"candor\"")
    );
    assert_eq!(
        b["detail"],
        "/v1/customers/acme/devices requires Bearer credentials and the request carried none."
    );

    let t = token(&s);
    let cases: Vec<(String, &str)> = vec![
        (t.clone(), "missing_scheme"),
        (format!("Basic {t}"), "unsupported_scheme"),
        (format!("\"Bearer {t}\""), "quoted"),
        (format!("Bearer \"{t}\""), "quoted"),
        ("Bearer abc.def".into(), "too_short"),
        (format!("Bearer {}", "a".repeat(9000)), "too_long"),
        (format!("Bearer {}<script>", &t[..30]), "bad_characters"),
        ("Bearer abcdefghijklmnopqrstuvwxyz".into(), "not_a_jwt"),
    ];
    for (value, reason) in cases {
        let r = bearer(&s, path, &value);
        let b = assert_problem(&r, "credentials_malformed");
        assert_eq!(b["reason"], reason, "{value:.40}: {b}");
        assert!(
            r.header("www-authenticate")
                .unwrap()
                .contains("error=\"invalid_request\"")
        );
    }
    let b = assert_problem(&bearer(&s, path, &t), "credentials_malformed");
    assert!(
        b["detail"]
            .as_str()
            .unwrap()
            .contains("must start with a type and have credentials"),
        "{b}"
    );
    // The custom scheme word of another route.
    assert_eq!(bearer(&s, "/edge/devices", &format!("TOK {t}")).status, 200);
    let b = assert_problem(
        &bearer(&s, "/edge/devices", &format!("Bearer {t}")),
        "credentials_malformed",
    );
    assert_eq!(
        b["detail"],
        "The Authorization header is malformed: the type is `Bearer`; this API expects `TOK`."
    );
}

#[test]
fn token_time_audience_and_revocation() {
    let s = setup();
    let path = "/v1/customers/acme/devices";
    let now = unix_now();
    let expired = forged(&s, |c| {
        c.iat = now - 400;
        c.exp = now - 100;
    });
    let r = bearer(&s, path, &format!("Bearer {expired}"));
    let b = assert_problem(&r, "token_expired");
    let detail = b["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("The access token expired 1 min 4"),
        "{detail}"
    );
    assert!(detail.ends_with("tokens are valid for 5 min."), "{detail}");
    assert!(
        r.header("www-authenticate")
            .unwrap()
            .contains("error=\"invalid_token\", error_description=\"The access token expired\"")
    );

    // Within the leeway (30 s) an expired token still passes; just outside it does not.
    let edge = forged(&s, |c| c.exp = now - 20);
    assert_eq!(bearer(&s, path, &format!("Bearer {edge}")).status, 200);
    let edge = forged(&s, |c| c.exp = now - 31);
    assert_problem(
        &bearer(&s, path, &format!("Bearer {edge}")),
        "token_expired",
    );

    let future = forged(&s, |c| c.nbf = Some(now + 600));
    let r = bearer(&s, path, &format!("Bearer {future}"));
    let b = assert_problem(&r, "token_not_yet_valid");
    assert!(
        b["detail"].as_str().unwrap().contains("check the clock"),
        "{b}"
    );
    assert!(r.header("retry-after").is_some());
    let soon = forged(&s, |c| c.nbf = Some(now + 10));
    assert_eq!(
        bearer(&s, path, &format!("Bearer {soon}")).status,
        200,
        "nbf within the leeway"
    );

    let other_aud = forged(&s, |c| c.aud = "billing-api".into());
    let b = assert_problem(
        &bearer(&s, path, &format!("Bearer {other_aud}")),
        "token_wrong_audience",
    );
    assert_eq!(
        b["detail"],
        "The access token was issued for audience billing-api; this API expects audience devices-api."
    );
    let other_iss = forged(&s, |c| c.iss = "https://evil.example".into());
    let b = assert_problem(
        &bearer(&s, path, &format!("Bearer {other_iss}")),
        "token_wrong_audience",
    );
    assert_eq!(b["claim"], "iss");

    let t = token(&s);
    assert_eq!(bearer(&s, path, &format!("Bearer {t}")).status, 200);
    let claims: Value =
        serde_json::from_slice(&B64.decode(t.split('.').nth(1).unwrap()).unwrap()).unwrap();
    identity(&s)
        .revoke(
            claims["jti"].as_str().unwrap(),
            claims["exp"].as_i64().unwrap(),
        )
        .unwrap();
    assert!(
        s.gw.eventually(|_| bearer(&s, path, &format!("Bearer {t}")).status == 401),
        "revocation reaches a cached token"
    );
    assert_problem(&bearer(&s, path, &format!("Bearer {t}")), "token_revoked");
}

fn token_with_header(s: &Setup, header: &str) -> String {
    let t = token(s);
    let parts: Vec<&str> = t.split('.').collect();
    format!("{}.{}.{}", B64.encode(header), parts[1], parts[2])
}

#[test]
fn attack_suite() {
    let s = setup();
    let path = "/v1/customers/acme/devices";
    let kid = active_key(&s).kid.clone();
    let payload = B64.encode(serde_json::json!({"iss": format!("http://{}", s.gw.addr), "sub": s.client_id, "aud": "devices-api", "exp": unix_now() + 300, "iat": unix_now(), "jti": "x", "scope": "devices:read admin", "account": "acme"}).to_string());

    // alg: none, in several spellings, with and without a signature.
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = B64.encode(format!(r#"{{"alg":"{alg}","typ":"JWT","kid":"{kid}"}}"#));
        for token in [
            format!("{header}.{payload}."),
            format!("{header}.{payload}.c2ln"),
        ] {
            let b = assert_problem(
                &bearer(&s, path, &format!("Bearer {token}")),
                "token_invalid",
            );
            assert!(
                b["detail"]
                    .as_str()
                    .unwrap()
                    .contains("is not allowed for key"),
                "{b}"
            );
        }
    }
    // HMAC "signed" with the public key (the classic RS/HS confusion).
    let public = active_key(&s).public_key.clone();
    let header = B64.encode(format!(r#"{{"alg":"HS256","typ":"JWT","kid":"{kid}"}}"#));
    let signing_input = format!("{header}.{payload}");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &public);
    let sig = B64.encode(ring::hmac::sign(&key, signing_input.as_bytes()).as_ref());
    let b = assert_problem(
        &bearer(&s, path, &format!("Bearer {signing_input}.{sig}")),
        "token_invalid",
    );
    assert!(
        b["detail"]
            .as_str()
            .unwrap()
            .contains("`HS256` is not allowed"),
        "{b}"
    );

    // kid with path and SQL metacharacters.
    for evil in [
        "../../../../dev/null",
        "' OR '1'='1",
        "k_x\"; DROP TABLE signing_keys; --",
    ] {
        let t = token_with_header(
            &s,
            &serde_json::json!({"alg": "EdDSA", "kid": evil}).to_string(),
        );
        let b = assert_problem(&bearer(&s, path, &format!("Bearer {t}")), "token_invalid");
        assert!(
            b["detail"]
                .as_str()
                .unwrap()
                .contains("is not one of this gateway's keys"),
            "{b}"
        );
    }
    assert_eq!(
        bearer(&s, path, &format!("Bearer {}", token(&s))).status,
        200,
        "the key table is intact"
    );

    // jku pointing at a local listener: ignored, never fetched.
    let trap = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    trap.set_nonblocking(true).unwrap();
    let jku = format!("http://{}/jwks.json", trap.local_addr().unwrap());
    let t = token_with_header(&s, &serde_json::json!({"alg": "EdDSA", "kid": kid, "jku": jku, "x5u": jku, "jwk": {"kty": "OKP"}}).to_string());
    // The header changed, so the signature no longer matches: refused, and nothing fetched.
    assert_problem(&bearer(&s, path, &format!("Bearer {t}")), "token_invalid");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        trap.accept().is_err(),
        "the gateway connected to the jku URL"
    );

    // Missing exp, far-future exp.
    let no_exp = {
        let t = token(&s);
        let mut claims: Value =
            serde_json::from_slice(&B64.decode(t.split('.').nth(1).unwrap()).unwrap()).unwrap();
        claims.as_object_mut().unwrap().remove("exp");
        let key =
            ring::signature::Ed25519KeyPair::from_pkcs8(&active_key(&s).private_pkcs8).unwrap();
        let input = format!(
            "{}.{}",
            t.split('.').next().unwrap(),
            B64.encode(claims.to_string())
        );
        format!(
            "{input}.{}",
            B64.encode(key.sign(input.as_bytes()).as_ref())
        )
    };
    let b = assert_problem(
        &bearer(&s, path, &format!("Bearer {no_exp}")),
        "token_invalid",
    );
    assert!(
        b["detail"]
            .as_str()
            .unwrap()
            .contains("payload is not the expected JSON object"),
        "{b}"
    );
    let far = forged(&s, |c| c.exp = c.iat + 10 * 365 * 86_400);
    let b = assert_problem(&bearer(&s, path, &format!("Bearer {far}")), "token_invalid");
    assert!(b["detail"].as_str().unwrap().contains("lifetime"), "{b}");

    // Flipped signature bit.
    let t = token(&s);
    let mut sig = B64.decode(t.split('.').nth(2).unwrap()).unwrap();
    sig[0] ^= 1;
    let tampered = format!("{}.{}", t.rsplit_once('.').unwrap().0, B64.encode(sig));
    assert_problem(
        &bearer(&s, path, &format!("Bearer {tampered}")),
        "token_invalid",
    );
    // Bad base64 and bad JSON.
    assert_problem(
        &bearer(&s, path, "Bearer aaaaaaaaaaaa.bbbbbbbbbbbb.cccccccccc"),
        "token_invalid",
    );

    assert_eq!(
        s.up.hits.load(Ordering::Relaxed),
        1,
        "only the one valid request reached the upstream"
    );
}

#[test]
fn no_secret_or_token_reaches_the_logs() {
    let s = setup();
    let t = token(&s);
    let _ = bearer(&s, "/v1/customers/acme/devices", &format!("Bearer {t}"));
    let _ = bearer(&s, "/v1/customers/globex/devices", &format!("Bearer {t}"));
    let _ = bearer(
        &s,
        "/v1/customers/acme/devices",
        &format!("Bearer {}x", &t[..t.len() - 1]),
    );
    let _ = s.gw.request(
        "POST",
        "/oauth/token",
        &[FORM],
        form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &s.client_id),
            ("client_secret", "cs_guess_guess"),
        ])
        .as_bytes(),
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    let log = s.gw.log();
    assert!(
        log.contains("\"code\":\"account_mismatch\""),
        "the log has the requests"
    );
    for secret in [
        s.secret.as_str(),
        t.as_str(),
        t.split('.').nth(2).unwrap(),
        "cs_guess_guess",
    ] {
        assert!(!log.contains(secret), "a secret reached the log");
    }
    let db = std::fs::read(s.gw.dir.join("candor-data/candor.sqlite")).unwrap();
    assert!(
        !db.windows(s.secret.len()).any(|w| w == s.secret.as_bytes()),
        "client secrets are stored hashed"
    );
}

#[test]
fn a_scheme_without_credentials_is_diagnosed_as_such() {
    let s = setup();
    let path = "/v1/customers/acme/devices";
    // The finding: "must start with a type ... it has no type", although the type is there.
    for value in ["Bearer", "Bearer   ", "Basic", "bearer"] {
        let r = bearer(&s, path, value);
        let b = assert_problem(&r, "credentials_malformed");
        assert_eq!(b["reason"], "missing_credentials", "{value:?}: {b}");
        let detail = b["detail"].as_str().unwrap();
        assert!(detail.contains("but no credentials follow"), "{detail}");
        assert!(!detail.contains("has no type"), "{detail}");
    }
}
