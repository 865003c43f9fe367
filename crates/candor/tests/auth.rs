//! Identity and access, black-box: the token endpoint, bearer checks with every refusal
//! precise, scopes and accounts, key rotation, and an attack suite after RFC 8725.

mod common;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64};
use candor_gateway::jwt::{self, Claims};
use candor_gateway::store::Identity;
use candor_gateway::time::unix_now;
use common::*;
use serde_json::Value;
use std::process::Command;
use std::sync::atomic::Ordering;

const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");

struct Setup {
    gw: Gateway,
    up: Upstream,
    client_id: String,
    secret: String,
}

fn cli(gw: &Gateway, args: &[&str]) -> String {
    cli_at(&gw.config, args)
}

fn cli_at(config: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn value_of(out: &str, key: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|v| v.split_whitespace().next().unwrap().to_owned())
        .unwrap_or_else(|| panic!("no {key} in {out}"))
}

fn setup_with(max_failed_attempts: u32) -> Setup {
    let up = Upstream::start(Behaviour::Echo);
    let u = up.url();
    let config = format!(
        r#"
[auth]
audience = "devices-api"
max_failed_attempts = {max_failed_attempts}

[[routes]]
name = "devices"
path = "/v1/customers/{{customer}}/devices"
methods = ["GET", "POST"]
upstream = "{u}"
auth = "bearer"
scopes = ["devices:read"]
account_param = "customer"

[[routes]]
name = "admin"
path = "/v1/admin"
upstream = "{u}"
auth = "bearer"
scopes = ["admin"]

[[routes]]
name = "company"
path = "/v2/devices"
upstream = "{u}"
auth = "bearer"
account_header = "Api-Company"

[[routes]]
name = "tok"
path = "/edge/devices"
upstream = "{u}"
auth = "bearer"
auth_scheme = "TOK"

[[routes]]
name = "open"
path = "/open"
upstream = "{u}"
"#
    );
    let mut out = String::new();
    let gw = Gateway::start_after(&config, |path| {
        cli_at(
            path,
            &["accounts", "add", "--id", "acme", "--name", "Acme Corp"],
        );
        cli_at(
            path,
            &["accounts", "add", "--id", "globex", "--name", "Globex"],
        );
        out = cli_at(
            path,
            &[
                "clients",
                "add",
                "--account",
                "acme",
                "--scopes",
                "devices:read devices:write",
            ],
        );
    });
    let client_id = value_of(&out, "client_id:");
    let secret = value_of(&out, "client_secret:");
    Setup {
        gw,
        up,
        client_id,
        secret,
    }
}

fn setup() -> Setup {
    setup_with(3)
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                v.replace('%', "%25")
                    .replace(' ', "+")
                    .replace('&', "%26")
                    .replace(':', "%3A")
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

fn token_request(s: &Setup, pairs: &[(&str, &str)]) -> Response {
    let auth = basic(&s.client_id, &s.secret);
    s.gw.request(
        "POST",
        "/oauth/token",
        &[FORM, ("Authorization", &auth)],
        form(pairs).as_bytes(),
    )
}

fn token(s: &Setup) -> String {
    let r = token_request(s, &[("grant_type", "client_credentials")]);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["access_token"].as_str().unwrap().to_owned()
}

fn bearer(s: &Setup, path: &str, value: &str) -> Response {
    s.gw.request("GET", path, &[("Authorization", value)], b"")
}

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
    jwt::issue(id.snapshot().active_key().unwrap(), &c).unwrap()
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
}

#[test]
fn client_credentials_token_opens_the_route() {
    let s = setup();
    let r = token_request(&s, &[("grant_type", "client_credentials")]);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let body = r.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 300);
    assert_eq!(body["scope"], "devices:read devices:write");
    assert!(body.get("refresh_token").is_none());
    let t = body["access_token"].as_str().unwrap();

    let r = s.gw.request(
        "GET",
        "/v1/customers/acme/devices",
        &[
            ("Authorization", &format!("Bearer {t}")),
            ("X-Candor-Account", "globex"),
        ],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let h = &r.json()["headers"];
    assert_eq!(
        h["x-candor-account"],
        serde_json::json!(["acme"]),
        "client-sent identity headers are replaced"
    );
    assert_eq!(h["x-candor-client"][0], s.client_id);
    assert_eq!(h["x-candor-scopes"][0], "devices:read devices:write");

    // Client authentication in the body works too; a narrower scope and validity can be asked.
    let r = s.gw.request(
        "POST",
        "/oauth/token",
        &[FORM],
        form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &s.client_id),
            ("client_secret", &s.secret),
            ("scope", "devices:read"),
            ("validity", "2"),
        ])
        .as_bytes(),
    );
    let b = r.json();
    assert_eq!(
        (b["scope"].as_str(), b["expires_in"].as_i64()),
        (Some("devices:read"), Some(120))
    );

    // The JWK set publishes the key, and the token's kid is in it.
    let jwks = s.gw.get("/.well-known/jwks.json").json();
    let header: Value =
        serde_json::from_slice(&B64.decode(t.split('.').next().unwrap()).unwrap()).unwrap();
    assert_eq!(header["alg"], "EdDSA");
    assert!(
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == header["kid"] && k["crv"] == "Ed25519")
    );
}

#[test]
fn token_endpoint_refusals() {
    let s = setup();
    let gw = &s.gw;
    let r = token_request(&s, &[("grant_type", "password")]);
    let b = assert_problem(&r, "unsupported_grant_type");
    assert_eq!(b["error"], "unsupported_grant_type");
    assert_eq!(
        b["detail"],
        "The grant type password is not supported; use client_credentials or urn:ietf:params:oauth:grant-type:jwt-bearer."
    );

    let b = assert_problem(&token_request(&s, &[]), "validation_failed");
    assert_eq!(b["error"], "invalid_request");
    assert_eq!(b["errors"][0]["name"], "grant_type");

    let b = assert_problem(
        &token_request(
            &s,
            &[
                ("grant_type", "client_credentials"),
                ("validity", "99999999999"),
            ],
        ),
        "invalid_token_validity",
    );
    assert_eq!(
        b["detail"],
        "The requested token validity `99999999999` is not accepted; send an integer number of minutes from 1 to 5."
    );
    assert_problem(
        &token_request(
            &s,
            &[("grant_type", "client_credentials"), ("validity", "1.5")],
        ),
        "invalid_token_validity",
    );

    let b = assert_problem(
        &token_request(
            &s,
            &[("grant_type", "client_credentials"), ("scope", "admin")],
        ),
        "validation_failed",
    );
    assert_eq!(b["error"], "invalid_scope");

    let r = gw.request(
        "POST",
        "/oauth/token",
        &[("Content-Type", "application/json")],
        b"{}",
    );
    assert_eq!(
        assert_problem(&r, "unsupported_media_type")["error"],
        "invalid_request"
    );
    let r = gw.get("/oauth/token");
    assert_problem(&r, "method_not_allowed");
    assert_eq!(r.header("allow"), Some("POST"));

    // Wrong secret: invalid_client, 401 with a Basic challenge, and the attempts add up.
    let bad = basic(&s.client_id, "cs_wrong");
    for _ in 0..3 {
        let r = gw.request(
            "POST",
            "/oauth/token",
            &[FORM, ("Authorization", &bad)],
            b"grant_type=client_credentials",
        );
        let b = assert_problem(&r, "invalid_client");
        assert_eq!(r.status, 401);
        assert_eq!(b["error"], "invalid_client");
        assert_eq!(r.header("www-authenticate"), Some("Basic realm=\"candor\""));
    }
    let r = gw.request(
        "POST",
        "/oauth/token",
        &[FORM, ("Authorization", &bad)],
        b"grant_type=client_credentials",
    );
    let b = assert_problem(&r, "too_many_failed_attempts");
    assert_eq!(r.status, 429);
    let wait: i64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(wait > 0 && wait <= 300);
    assert_eq!(b["retry_after"], wait);
    // Even the right secret waits now.
    assert_problem(
        &token_request(&s, &[("grant_type", "client_credentials")]),
        "too_many_failed_attempts",
    );
}

#[test]
fn unknown_client_and_inactive_account() {
    let s = setup();
    let r = s.gw.request(
        "POST",
        "/oauth/token",
        &[FORM],
        form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "cl_nobody"),
            ("client_secret", "x"),
        ])
        .as_bytes(),
    );
    let b = assert_problem(&r, "invalid_client");
    assert_eq!(
        b["detail"],
        "Client authentication failed for client_id cl_nobody."
    );
    assert_eq!(
        r.header("www-authenticate"),
        Some("Basic realm=\"candor\""),
        "every 401 carries a challenge"
    );

    let t = token(&s);
    cli(&s.gw, &["accounts", "suspend", "acme"]);
    assert!(s.gw.eventually(|_| {
        bearer(&s, "/v1/customers/acme/devices", &format!("Bearer {t}")).status == 403
    }));
    let b = assert_problem(
        &bearer(&s, "/v1/customers/acme/devices", &format!("Bearer {t}")),
        "account_inactive",
    );
    assert_eq!(b["detail"], "Account acme is suspended.");
    let b = assert_problem(
        &token_request(&s, &[("grant_type", "client_credentials")]),
        "account_inactive",
    );
    assert_eq!(b["error"], "unauthorized_client");
}

#[test]
fn second_factor() {
    let s = setup();
    let out = cli(
        &s.gw,
        &[
            "clients",
            "add",
            "--account",
            "acme",
            "--scopes",
            "devices:read",
            "--second-factor",
        ],
    );
    let (id, secret, totp) = (
        value_of(&out, "client_id:"),
        value_of(&out, "client_secret:"),
        value_of(&out, "totp_secret:"),
    );
    let auth = basic(&id, &secret);
    let ask = |extra: &[(&str, &str)]| {
        let mut pairs = vec![("grant_type", "client_credentials")];
        pairs.extend_from_slice(extra);
        s.gw.request(
            "POST",
            "/oauth/token",
            &[FORM, ("Authorization", &auth)],
            form(&pairs).as_bytes(),
        )
    };
    // A new client reaches the running gateway within a second or so; probing without a code
    // counts no failed attempt once it is known (second_factor_required is not a failure).
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let r = ask(&[]);
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").is_some());
    let b = assert_problem(&r, "second_factor_required");
    assert_eq!(
        b["detail"],
        format!("Client {id} requires a one-time code and the request carried none.")
    );
    assert_problem(&ask(&[("totp", "000000")]), "second_factor_invalid");
    let code = candor_gateway::totp::code_at(&totp, unix_now()).unwrap();
    assert_eq!(ask(&[("totp", &code)]).status, 200);
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

#[test]
fn scopes_and_accounts() {
    let s = setup();
    let t = token(&s);
    let auth = format!("Bearer {t}");
    let r = bearer(&s, "/v1/admin", &auth);
    let b = assert_problem(&r, "insufficient_scope");
    assert_eq!(r.status, 403);
    assert_eq!(
        b["detail"],
        "/v1/admin requires scope admin; the token grants devices:read devices:write."
    );
    let challenge = r.header("www-authenticate").unwrap();
    assert!(
        challenge.contains("error=\"insufficient_scope\"")
            && challenge.ends_with("scope=\"admin\""),
        "{challenge}"
    );

    let b = assert_problem(
        &bearer(&s, "/v1/customers/globex/devices", &auth),
        "account_mismatch",
    );
    assert_eq!(
        b["detail"],
        "The request names account globex but the credential belongs to account acme."
    );

    let b = assert_problem(&bearer(&s, "/v2/devices", &auth), "validation_failed");
    assert_eq!(b["errors"][0]["in"], "header");
    assert_eq!(b["errors"][0]["name"], "api-company");
    let r = s.gw.request(
        "GET",
        "/v2/devices",
        &[("Authorization", &auth), ("Api-Company", "globex")],
        b"",
    );
    assert_problem(&r, "account_mismatch");
    let r = s.gw.request(
        "GET",
        "/v2/devices",
        &[("Authorization", &auth), ("Api-Company", "acme")],
        b"",
    );
    assert_eq!(r.status, 200);
    // A route without auth stays open.
    assert_eq!(s.gw.get("/open").status, 200);
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
    let kid = identity(&s).snapshot().active_key().unwrap().kid.clone();
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
    let public = identity(&s)
        .snapshot()
        .active_key()
        .unwrap()
        .public_key
        .clone();
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
        let id = identity(&s);
        let key = ring::signature::Ed25519KeyPair::from_pkcs8(
            &id.snapshot().active_key().unwrap().private_pkcs8,
        )
        .unwrap();
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
fn keys_rotate_without_breaking_issued_tokens() {
    let s = setup();
    let path = "/v1/customers/acme/devices";
    let old = token(&s);
    let out = cli(&s.gw, &["signing-keys", "rotate"]);
    assert!(out.contains("new signing key"), "{out}");
    assert!(s.gw.eventually(|g| {
        g.get("/.well-known/jwks.json").json()["keys"]
            .as_array()
            .unwrap()
            .len()
            == 2
    }));
    let new = token(&s);
    let kid = |t: &str| -> Value {
        serde_json::from_slice::<Value>(&B64.decode(t.split('.').next().unwrap()).unwrap()).unwrap()
            ["kid"]
            .clone()
    };
    assert_ne!(kid(&old), kid(&new));
    assert_eq!(bearer(&s, path, &format!("Bearer {old}")).status, 200);
    assert_eq!(bearer(&s, path, &format!("Bearer {new}")).status, 200);
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
fn api_keys() {
    let up = Upstream::start(Behaviour::Echo);
    let u = up.url();
    let config = format!(
        "[[routes]]\nname = \"reports\"\npath = \"/k/reports\"\nupstream = \"{u}\"\nauth = \"api_key\"\nscopes = [\"reports:read\"]\n\
         [[routes]]\nname = \"query\"\npath = \"/k/query\"\nupstream = \"{u}\"\nauth = \"api_key\"\napi_key_query = \"api_key\"\n"
    );
    let mut keys: Vec<String> = Vec::new();
    let gw = Gateway::start_after(&config, |path| {
        cli_at(path, &["accounts", "add", "--id", "acme", "--name", "Acme"]);
        for extra in [
            vec!["--scopes", "reports:read"],
            vec!["--scopes", "reports:read", "--expires-in", "1s"],
            vec![
                "--scopes",
                "reports:read",
                "--allow-referer",
                "https://app.example.com/*",
            ],
            vec!["--scopes", "reports:read", "--allow-ip", "10.0.0.0/8"],
            vec!["--scopes", "other"],
        ] {
            let mut args = vec!["keys", "add", "--account", "acme"];
            args.extend(extra);
            keys.push(value_of(&cli_at(path, &args), "api_key:"));
        }
    });
    let call = |key: &str, extra: &[(&str, &str)]| {
        let mut h = vec![("X-Api-Key", key)];
        h.extend_from_slice(extra);
        gw.request("GET", "/k/reports", &h, b"")
    };
    let r = call(&keys[0], &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    let id = keys[0][..13].to_owned();
    let id = id.as_str();
    assert_eq!(r.json()["headers"]["x-candor-client"][0], id);
    assert_eq!(r.json()["headers"]["x-candor-account"][0], "acme");
    let r = gw.get(&format!("/k/query?api_key={}&x=1", keys[0]));
    assert_eq!(r.status, 200, "{}", r.text());

    let r = gw.get("/k/reports");
    let b = assert_problem(&r, "credentials_missing");
    assert_eq!(
        b["detail"],
        "/k/reports requires API key (in the x-api-key header) credentials and the request carried none."
    );

    let wrong_secret = format!("{}{}", &keys[0][..14], "z".repeat(32));
    let b = assert_problem(&call(&wrong_secret, &[]), "api_key_invalid");
    assert_eq!(
        b["detail"],
        format!(
            "The API key {id} is not valid: its secret part does not match; copy the whole key."
        )
    );
    let b = assert_problem(
        &call("ck_aaaaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", &[]),
        "api_key_invalid",
    );
    assert!(
        b["detail"]
            .as_str()
            .unwrap()
            .contains("no key has the id ck_aaaaaaaaaa"),
        "{b}"
    );
    let b = assert_problem(&call(&keys[0][..30], &[]), "credentials_malformed");
    assert_eq!(b["reason"], "too_short");
    let quoted = format!("\"{}\"", keys[0]);
    assert_eq!(
        assert_problem(&call(&quoted, &[]), "credentials_malformed")["reason"],
        "quoted"
    );

    std::thread::sleep(std::time::Duration::from_millis(1100));
    let b = assert_problem(&call(&keys[1], &[]), "api_key_invalid");
    assert!(b["detail"].as_str().unwrap().contains("it expired"), "{b}");

    let b = assert_problem(&call(&keys[2], &[]), "api_key_restriction_missing");
    assert_eq!(
        b["detail"],
        "The API key is restricted by referer and the request carried no referer."
    );
    let r = call(&keys[2], &[("Referer", "https://evil.example/page")]);
    let b = assert_problem(&r, "api_key_restriction_mismatch");
    assert_eq!(
        b["detail"],
        "The API key may not be used with referer https://evil.example/page."
    );
    assert!(
        !r.text().contains("app.example.com"),
        "the allow-list is never disclosed"
    );
    assert_eq!(
        call(
            &keys[2],
            &[("Referer", "https://app.example.com/dashboard")]
        )
        .status,
        200
    );

    let b = assert_problem(&call(&keys[3], &[]), "api_key_restriction_mismatch");
    assert_eq!(
        b["detail"],
        "The API key may not be used with client address 127.0.0.1."
    );

    assert_problem(&call(&keys[4], &[]), "insufficient_scope");

    // Rotation: same id, new secret; the old key stops working, the new one works.
    let out = Command::new(BIN)
        .args(["keys", "rotate", id, "--config"])
        .arg(&gw.config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let rotated = value_of(&String::from_utf8_lossy(&out.stdout), "api_key:");
    assert_eq!(&rotated[..13], id);
    assert_ne!(rotated, keys[0]);
    assert!(gw.eventually(|_| call(&keys[0], &[]).status == 401));
    let b = assert_problem(&call(&keys[0], &[]), "api_key_invalid");
    assert!(
        b["detail"]
            .as_str()
            .unwrap()
            .contains("secret part does not match"),
        "{b}"
    );
    assert_eq!(call(&rotated, &[]).status, 200);
    keys.push(rotated.clone());

    let out = Command::new(BIN)
        .args(["keys", "delete", id, "--config"])
        .arg(&gw.config)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(gw.eventually(|_| call(&rotated, &[]).status == 401));
    let log = gw.log();
    for k in &keys {
        assert!(!log.contains(&k[14..]), "an API key secret reached the log");
    }
}

/// Signs an assertion with `sign`, for `alg` and `kid`.
fn assertion(alg: &str, kid: &str, claims: &Value, sign: &dyn Fn(&[u8]) -> Vec<u8>) -> String {
    let input = format!(
        "{}.{}",
        B64.encode(serde_json::json!({"alg": alg, "typ": "JWT", "kid": kid}).to_string()),
        B64.encode(claims.to_string())
    );
    let sig = sign(input.as_bytes());
    format!("{input}.{}", B64.encode(sig))
}

#[test]
fn jwt_bearer_assertions() {
    use ring::signature::{self, KeyPair};
    let s = setup_with(100);
    let rng = ring::rand::SystemRandom::new();
    let ed = signature::Ed25519KeyPair::from_pkcs8(
        signature::Ed25519KeyPair::generate_pkcs8(&rng)
            .unwrap()
            .as_ref(),
    )
    .unwrap();
    let ec_alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
    let ec = signature::EcdsaKeyPair::from_pkcs8(
        ec_alg,
        signature::EcdsaKeyPair::generate_pkcs8(ec_alg, &rng)
            .unwrap()
            .as_ref(),
        &rng,
    )
    .unwrap();
    let rsa = signature::RsaKeyPair::from_pkcs8(&std::fs::read(fixture("rsa-client.pk8")).unwrap())
        .unwrap();
    let rsa_jwk: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("rsa-client.jwks.json")).unwrap())
            .unwrap();
    let p = ec.public_key().as_ref();
    let jwks = serde_json::json!({"keys": [
        {"kty": "OKP", "crv": "Ed25519", "kid": "ed-1", "x": B64.encode(ed.public_key().as_ref())},
        {"kty": "EC", "crv": "P-256", "kid": "ec-1", "x": B64.encode(&p[1..33]), "y": B64.encode(&p[33..])},
        rsa_jwk["keys"][0].clone(),
    ]});
    let file = s.gw.dir.join("client.jwks.json");
    std::fs::write(&file, jwks.to_string()).unwrap();
    let out = cli(
        &s.gw,
        &[
            "clients",
            "set-keys",
            &s.client_id,
            "--jwks",
            file.to_str().unwrap(),
        ],
    );
    assert!(out.contains("3 assertion keys registered"), "{out}");

    let token_url = format!("http://{}/oauth/token", s.gw.addr);
    let now = unix_now();
    let claims = |jti: &str| serde_json::json!({"iss": s.client_id, "sub": s.client_id, "aud": token_url, "exp": now + 120, "iat": now, "jti": jti});
    let sign_ed = |m: &[u8]| ed.sign(m).as_ref().to_vec();
    let sign_ec = |m: &[u8]| ec.sign(&rng, m).unwrap().as_ref().to_vec();
    let sign_rsa = |m: &[u8]| {
        let mut sig = vec![0; rsa.public().modulus_len()];
        rsa.sign(&signature::RSA_PKCS1_SHA256, &rng, m, &mut sig)
            .unwrap();
        sig
    };
    let grant = |a: &str| {
        s.gw.request(
            "POST",
            "/oauth/token",
            &[FORM],
            form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", a),
            ])
            .as_bytes(),
        )
    };
    // The running gateway picks the keys up within a second; probing earlier would count
    // as failed attempts.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    for (alg, kid, sign, jti) in [
        (
            "EdDSA",
            "ed-1",
            &sign_ed as &dyn Fn(&[u8]) -> Vec<u8>,
            "a-1",
        ),
        ("ES256", "ec-1", &sign_ec, "a-2"),
        ("RS256", "rsa-1", &sign_rsa, "a-3"),
    ] {
        let r = grant(&assertion(alg, kid, &claims(jti), sign));
        assert_eq!(r.status, 200, "{alg}: {}", r.text());
        let t = r.json()["access_token"].as_str().unwrap().to_owned();
        assert_eq!(
            bearer(&s, "/v1/customers/acme/devices", &format!("Bearer {t}")).status,
            200
        );
    }

    // Reused jti.
    let r = grant(&assertion("EdDSA", "ed-1", &claims("a-1"), &sign_ed));
    let b = assert_problem(&r, "assertion_replayed");
    assert_eq!(
        b["detail"],
        "An assertion with jti a-1 was already used; each assertion may be used once."
    );
    assert_eq!(b["error"], "invalid_grant");

    let bad = |c: Value, alg: &str, kid: &str| {
        let r = grant(&assertion(alg, kid, &c, &sign_ed));
        let b = assert_problem(&r, "invalid_grant");
        assert_eq!(b["error"], "invalid_grant");
        b["detail"].as_str().unwrap().to_owned()
    };
    let mut c = claims("b-1");
    c["aud"] = "https://elsewhere.example/token".into();
    assert!(
        bad(c, "EdDSA", "ed-1").contains(&format!("it must be this token endpoint, {token_url}"))
    );
    let mut c = claims("b-2");
    c.as_object_mut().unwrap().remove("exp");
    assert!(bad(c, "EdDSA", "ed-1").contains("it has no exp"));
    let mut c = claims("b-3");
    c["exp"] = (now + 3600).into();
    assert!(bad(c, "EdDSA", "ed-1").contains("assertions may live at most 5 min"));
    let mut c = claims("b-4");
    c["exp"] = (now - 600).into();
    assert!(bad(c, "EdDSA", "ed-1").contains("it expired 10 min"));
    let mut c = claims("b-5");
    c.as_object_mut().unwrap().remove("jti");
    assert!(bad(c, "EdDSA", "ed-1").contains("it has no jti"));
    let mut c = claims("b-6");
    c["sub"] = "someone-else".into();
    assert!(bad(c, "EdDSA", "ed-1").contains("differ"));
    assert!(bad(claims("b-7"), "ES256", "ed-1").contains("the registered key signs with EdDSA"));
    assert!(bad(claims("b-8"), "EdDSA", "ec-1").contains("the registered key signs with ES256"));
    assert!(bad(claims("b-9"), "EdDSA", "nope").contains("is not among the registered keys"));
    let forged = assertion("EdDSA", "ed-1", &claims("b-10"), &|m: &[u8]| {
        let other = signature::Ed25519KeyPair::from_pkcs8(
            signature::Ed25519KeyPair::generate_pkcs8(&rng)
                .unwrap()
                .as_ref(),
        )
        .unwrap();
        other.sign(m).as_ref().to_vec()
    });
    let b = assert_problem(&grant(&forged), "invalid_grant");
    assert!(
        b["detail"]
            .as_str()
            .unwrap()
            .contains("signature does not match"),
        "{b}"
    );
    let b = assert_problem(&grant("not-a-jwt"), "invalid_grant");
    assert!(b["detail"].as_str().unwrap().contains("not a JWT"), "{b}");
}

#[test]
fn account_quota_survives_a_restart() {
    let up = Upstream::start(Behaviour::Echo);
    let config = format!(
        "[[routes]]\nname = \"q\"\npath = \"/q\"\nupstream = \"{}\"\nauth = \"bearer\"\n",
        up.url()
    );
    let mut out = String::new();
    let gw = Gateway::start_after(&config, |path| {
        cli_at(
            path,
            &[
                "accounts",
                "add",
                "--id",
                "small",
                "--name",
                "Small",
                "--quota-per-day",
                "3",
            ],
        );
        out = cli_at(path, &["clients", "add", "--account", "small"]);
    });
    let s = Setup {
        gw,
        up,
        client_id: value_of(&out, "client_id:"),
        secret: value_of(&out, "client_secret:"),
    };
    let auth = format!("Bearer {}", token(&s));
    for _ in 0..3 {
        assert_eq!(bearer(&s, "/q", &auth).status, 200);
    }
    let r = bearer(&s, "/q", &auth);
    let b = assert_problem(&r, "quota_exceeded");
    assert_eq!(r.status, 403);
    let wait: i64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=86_400).contains(&wait));
    assert!(
        b["detail"].as_str().unwrap().starts_with(
            "Account small has used its quota of 3 requests per day (UTC); it resets at "
        ),
        "{b}"
    );

    // The day's count is saved: a restart does not hand out a fresh quota.
    let Setup {
        gw,
        up,
        client_id,
        secret,
    } = s;
    let s = Setup {
        gw: gw.restart(),
        up,
        client_id,
        secret,
    };
    // (The restarted gateway listens on a new port, so it is a new issuer: a new token.)
    let auth = format!("Bearer {}", token(&s));
    assert_problem(&bearer(&s, "/q", &auth), "quota_exceeded");
}
