//! The token endpoint, black-box: client credentials (Basic or in the body), every refusal
//! with its OAuth error, lockout after failed attempts, second factors, signing key rotation
//! and the JWK set, and JWT-bearer assertions signed with EdDSA, ES256 and RS256.

use crate::harness::*;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use candor_gateway::unix_now;
use serde_json::Value;

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
        "The requested token validity `99999999999` is not accepted: `99999999999` is not a duration: it is more than 36500d (100 years). Expected a whole number and a unit — ms, s, m (minutes), h or d — such as 90s, 5m, 2h or 30d; a bare number is minutes; from 1s to 5m."
    );
    assert_eq!(
        (&b["min_seconds"], &b["max_seconds"]),
        (&1.into(), &300.into())
    );
    // Issue 15, item 10: validity is a duration; a bare number is minutes, as it was.
    for (sent, why) in [
        ("1.5", "the number must be whole (write 90s, not 1.5m)"),
        ("6", "`6` (6m) is too long."),
        ("301s", "`301s` (301s) is too long."),
        ("0", "`0` (0s) is too short."),
        ("5x", "`x` is not a unit (ms, s, m, h, d)"),
        ("-1m", "durations cannot be negative"),
        ("１m", "it does not start with a number (0-9)"),
    ] {
        let b = assert_problem(
            &token_request(
                &s,
                &[("grant_type", "client_credentials"), ("validity", sent)],
            ),
            "invalid_token_validity",
        );
        let detail = b["detail"].as_str().unwrap();
        assert!(
            detail.contains(why) && detail.contains("a bare number is minutes; from 1s to 5m"),
            "{sent}: {detail}"
        );
        assert_eq!(b["error"], "invalid_request");
    }
    for (sent, secs) in [("90s", 90), ("3", 180), ("5m", 300), ("2 m", 120)] {
        let r = token_request(
            &s,
            &[("grant_type", "client_credentials"), ("validity", sent)],
        );
        assert_eq!(r.json()["expires_in"], secs, "{sent}: {}", r.text());
    }

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
    assert_eq!(b["blocked"]["kind"], "client");
    assert_eq!(b["blocked"]["key"], s.client_id.as_str());
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
    let code = candor_gateway::totp_code_at(&totp, unix_now()).unwrap();
    assert_eq!(ask(&[("totp", &code)]).status, 200);
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

/// Signs an assertion with `sign`, for `alg` and `kid`.
pub(crate) fn assertion(
    alg: &str,
    kid: &str,
    claims: &Value,
    sign: &dyn Fn(&[u8]) -> Vec<u8>,
) -> String {
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

/// An admin API request with the admin token.
fn admin_call(gw: &Gateway, method: &str, path: &str) -> Response {
    let token = std::fs::read_to_string(gw.printed("admin API token: in ")).unwrap();
    let auth = format!("Bearer {}", token.trim());
    request(
        gw.admin.unwrap(),
        method,
        path,
        &[("Authorization", &auth)],
        b"",
    )
}

/// Whether the running gateway knows client `id` (within ~10 s), asked on the admin API
/// so that no failed attempt is counted while it does not yet.
fn known(gw: &Gateway, id: &str) -> bool {
    gw.eventually(|g| admin_call(g, "GET", &format!("/clients/{id}")).status == 200)
}

/// A token request of client `id` with secret `secret` (Basic).
fn token_as(s: &Setup, id: &str, secret: &str) -> Response {
    s.gw.request(
        "POST",
        "/oauth/token",
        &[FORM, ("Authorization", &basic(id, secret))],
        b"grant_type=client_credentials",
    )
}

#[test]
fn one_clients_typos_do_not_block_another_client_of_the_address() {
    // Issue 15, item 4: five typos locked 127.0.0.1 out, valid clients included, and nothing
    // could lift the block.
    let s = setup_with(3);
    let out = cli(
        &s.gw,
        &[
            "clients",
            "add",
            "--account",
            "acme",
            "--scopes",
            "devices:read",
        ],
    );
    let (typo, typo_secret) = (
        value_of(&out, "client_id:"),
        value_of(&out, "client_secret:"),
    );
    // A new client reaches the running gateway within a second or so (asked without
    // counting failed attempts).
    assert!(known(&s.gw, &typo));
    assert_eq!(token_as(&s, &typo, &typo_secret).status, 200);
    for _ in 0..3 {
        assert_problem(&token_as(&s, &typo, "cs_typo"), "invalid_client");
    }
    let r = token_as(&s, &typo, &typo_secret);
    let b = assert_problem(&r, "too_many_failed_attempts");
    let wait: i64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(
        wait > 0 && wait <= 100,
        "one failure comes back every 100 s: {wait}"
    );
    let at = b["retry_at"].as_str().unwrap();
    assert_eq!(
        b["detail"],
        format!(
            "The client_id {typo} from address 127.0.0.1 is blocked at the token endpoint: 3 failed client authentications within 5 min, the limit per client_id from one address; every attempt with it from this address is refused (its failures from other addresses are counted apart) until the next attempt is accepted, in {wait} s, at {at} (one more failure then blocks it again). An operator can lift the block at once with `candor blocks clear client {typo}`, or DELETE /blocks/client/{typo} on the admin API."
        )
    );
    assert_eq!(
        b["blocked"],
        serde_json::json!({ "kind": "client", "key": typo, "address": "127.0.0.1", "failures": 3, "limit": 3, "window": 300 })
    );
    assert_eq!(b["error"], "invalid_client");
    // The other client of the same address is not blocked.
    assert_eq!(
        token_request(&s, &[("grant_type", "client_credentials")]).status,
        200
    );

    // The operator sees the block, with the CLI and the admin API ...
    let admin = s.gw.admin.unwrap().to_string();
    let list = admin_call(&s.gw, "GET", "/blocks");
    assert_eq!(list.status, 200, "{}", list.text());
    let v = list.json();
    assert_eq!(
        v["limits"],
        serde_json::json!({ "per_client": 3, "per_address": 30, "window": 300 })
    );
    let rows = v["data"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{v}");
    assert_eq!(
        (&rows[0]["kind"], &rows[0]["key"], &rows[0]["address"]),
        (&"client".into(), &typo.as_str().into(), &"127.0.0.1".into())
    );
    assert_eq!(
        (&v["unlisted_failures"], &v["max_listed"]),
        (&0.into(), &10_000.into())
    );
    assert_eq!(
        (&rows[0]["failures"], &rows[0]["limit"]),
        (&3.into(), &3.into())
    );
    assert!(rows[0]["retry_after"].as_i64().unwrap() > 0);
    let out = cli(&s.gw, &["blocks", "list", "--admin", &admin]);
    let row = out
        .lines()
        .find(|l| l.starts_with("client "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        row.contains(&typo) && row.contains("127.0.0.1") && row.contains("3/3"),
        "{out}"
    );
    assert!(
        out.contains(
            "Limits: 3 failures per client_id from one address, 30 per address, within 5 min"
        ),
        "{out}"
    );

    // ... and lifts it with the CLI: the client gets a token again.
    let out = cli(
        &s.gw,
        &["blocks", "clear", "client", &typo, "--admin", &admin],
    );
    assert_eq!(
        out.trim(),
        format!(
            "Lifted the block of client_id {typo} from every address: its failures are forgotten and its next attempt is checked as usual."
        )
    );
    assert_eq!(token_as(&s, &typo, &typo_secret).status, 200);
    let out = cli(&s.gw, &["blocks", "list", "--admin", &admin]);
    assert!(
        out.starts_with("No blocks: the token endpoint refuses no client id or address now"),
        "{out}"
    );
    // Clearing it again: nothing to clear, said through the catalog.
    let (code, _, err) = candor(&[
        "blocks",
        "clear",
        "client",
        &typo,
        "--admin",
        &admin,
        "--config",
        s.gw.config.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert_eq!(
        err.trim(),
        format!(
            "candor: error[resource_not_found]: A block of client_id {typo} does not exist. It has no failed attempts counted now (blocks also end by themselves); GET /blocks lists the current ones."
        )
    );
}

#[test]
fn an_address_spraying_client_ids_is_blocked_at_its_own_higher_limit() {
    let s = account_setup(
        "[auth]\nmax_failed_attempts = 2\nmax_failed_attempts_per_address = 5\n",
        "",
        &["--id", "acme", "--name", "Acme"],
    );
    let valid = || token_as(&s, &s.client_id, &s.secret);
    assert!(s.gw.eventually(|_| valid().status == 200));
    // Five made-up ids, one failure each: under the per-client limit, up to the address's.
    for i in 0..5 {
        assert_problem(
            &token_as(&s, &format!("cl_guess{i}"), "cs_x"),
            "invalid_client",
        );
    }
    // Now the address is refused whatever the client_id, the valid one too, before any
    // secret is checked.
    let r = valid();
    let b = assert_problem(&r, "too_many_failed_attempts");
    let wait: i64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(
        wait > 0 && wait <= 60,
        "one failure comes back every 60 s: {wait}"
    );
    assert_eq!(b["blocked"]["kind"], "address");
    assert_eq!(b["blocked"]["key"], "127.0.0.1");
    let detail = b["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("The address 127.0.0.1 is blocked at the token endpoint: 5 failed client authentications within 5 min, the limit per address; every attempt from it is refused, whatever the client_id, until the next attempt is accepted, in "),
        "{detail}"
    );
    assert!(
        detail.ends_with("An operator can lift the block at once with `candor blocks clear address 127.0.0.1`, or DELETE /blocks/address/127.0.0.1 on the admin API."),
        "{detail}"
    );
    let rows = admin_call(&s.gw, "GET", "/blocks").json()["data"].clone();
    assert_eq!(rows[0]["kind"], "address", "{rows}");
    assert_eq!(rows[0]["key"], "127.0.0.1");
    assert_eq!(rows[0]["failures"], 5);

    // The admin API: unknown kinds and keys that are not addresses, through the catalog.
    let r = admin_call(&s.gw, "DELETE", "/blocks/adress/127.0.0.1");
    let b = assert_problem(&r, "resource_not_found");
    assert!(
        b["detail"]
            .as_str()
            .unwrap()
            .contains("Did you mean /blocks/address/…?"),
        "{b}"
    );
    let b = assert_problem(
        &admin_call(&s.gw, "DELETE", "/blocks/address/localhost"),
        "validation_failed",
    );
    assert_eq!(b["errors"][0]["in"], "path");
    assert_eq!(b["errors"][0]["name"], "address");
    let r = admin_call(&s.gw, "PUT", "/blocks");
    assert_problem(&r, "method_not_allowed");
    assert_eq!(r.header("allow"), Some("GET, HEAD, DELETE"));
    let r = s.gw.request("GET", "/blocks", &[], b"");
    assert_ne!(r.status, 200);
    assert_problem(
        &request(s.gw.admin.unwrap(), "GET", "/blocks", &[], b""),
        "credentials_missing",
    );

    // Lifted over the admin API: the valid client gets its token again.
    let r = admin_call(&s.gw, "DELETE", "/blocks/address/127.0.0.1");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["was_blocked"], true);
    assert_eq!(valid().status, 200);
    assert_problem(
        &admin_call(&s.gw, "DELETE", "/blocks/address/127.0.0.1"),
        "resource_not_found",
    );

    // Blocked again, both ways; `candor blocks clear --all` lifts everything.
    for i in 0..5 {
        token_as(&s, &format!("cl_guess{i}"), "cs_x");
    }
    token_as(&s, "cl_guess0", "cs_x");
    assert_problem(&valid(), "too_many_failed_attempts");
    let admin = s.gw.admin.unwrap().to_string();
    let out = cli(&s.gw, &["blocks", "clear", "--all", "--admin", &admin]);
    assert!(out.starts_with("Lifted "), "{out}");
    assert_eq!(valid().status, 200);
    assert_eq!(
        admin_call(&s.gw, "GET", "/blocks").json()["data"],
        serde_json::json!([])
    );
}

#[test]
fn candor_blocks_says_when_no_gateway_is_running() {
    let dir = temp_dir("blocks-cli");
    std::fs::write(dir.join("admin.token"), "adm_0123456789abcdef0123").unwrap();
    let addr = Upstream::refused().to_string();
    let (code, out, err) = candor(&[
        "blocks",
        "list",
        "--data-dir",
        dir.to_str().unwrap(),
        "--admin",
        &addr,
    ]);
    assert_eq!((code, out.as_str()), (1, ""));
    assert!(
        err.starts_with(&format!(
            "candor: no gateway answers on the admin listener at http://{addr} ("
        )),
        "{err}"
    );
    assert!(
        err.contains("Start it with `candor serve --config FILE`"),
        "{err}"
    );
    // No token file: where it was looked for, and what makes one.
    let (code, _, err) = candor(&["blocks", "list", "--data-dir", "/nonexistent-candor"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("cannot read the admin token file /nonexistent-candor/admin.token"),
        "{err}"
    );
    // A configuration without an admin listener.
    let file = dir.join("candor.toml");
    std::fs::write(&file, one_route("/a", "http://127.0.0.1:9", "")).unwrap();
    let (code, _, err) = candor(&["blocks", "list", "--config", file.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("sets no server.admin_listen"), "{err}");
}

#[test]
fn the_per_address_limit_is_checked() {
    check_reports(
        "[auth]\nmax_failed_attempts = 5\nmax_failed_attempts_per_address = 3\n",
        &[
            "auth.max_failed_attempts_per_address: 3 is below auth.max_failed_attempts (5): one client's typos would block its whole address",
        ],
    );
    check_reports(
        "[auth]\nmax_failed_attempts_per_addres = 3\n",
        &["did you mean `max_failed_attempts_per_address`?"],
    );
}

#[test]
fn a_client_lifetime_is_a_duration() {
    // Issue 15, item 10: `clients add --lifetime` takes the one grammar.
    let s = setup();
    let out = cli(
        &s.gw,
        &["clients", "add", "--account", "acme", "--lifetime", "2m"],
    );
    assert!(out.contains("lifetime   120 s"), "{out}");
    let (id, secret) = (
        value_of(&out, "client_id:"),
        value_of(&out, "client_secret:"),
    );
    assert!(known(&s.gw, &id));
    assert_eq!(token_as(&s, &id, &secret).json()["expires_in"], 120);
    let out = cli(
        &s.gw,
        &["clients", "add", "--account", "acme", "--lifetime", "600"],
    );
    assert!(
        out.contains("lifetime   600 s"),
        "a bare number is seconds: {out}"
    );
    let (code, _, err) = candor(&[
        "clients",
        "add",
        "--account",
        "acme",
        "--lifetime",
        "2 days",
        "--config",
        s.gw.config.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(err.starts_with("error[validation_failed]: "), "{err}");
    assert!(
        err.trim().ends_with(": --lifetime `2 days` is not a duration: `days` is not a unit (ms, s, m, h, d). Expected a whole number and a unit — ms, s, m (minutes), h or d — such as 90s, 5m, 2h or 30d; a bare number is seconds; from 30s to 1d"),
        "{err}"
    );
    let (_, help, _) = candor(&["clients", "add", "--help"]);
    assert!(help.contains("a bare number is seconds"), "{help}");
}

#[test]
fn a_reload_applies_new_failed_attempt_limits() {
    let s = setup_with(3);
    for _ in 0..3 {
        assert_problem(&token_as(&s, "cl_typo", "cs_x"), "invalid_client");
    }
    assert_problem(&token_as(&s, "cl_typo", "cs_x"), "too_many_failed_attempts");
    let text = std::fs::read_to_string(&s.gw.config).unwrap();
    std::fs::write(
        &s.gw.config,
        text.replace("max_failed_attempts = 3", "max_failed_attempts = 4"),
    )
    .unwrap();
    assert!(
        s.gw.eventually(|g| {
            admin_call(g, "GET", "/blocks").json()["limits"]
                == serde_json::json!({ "per_client": 4, "per_address": 40, "window": 300 })
        }),
        "{}",
        admin_call(&s.gw, "GET", "/blocks").text()
    );
    // A changed limit starts afresh.
    assert_problem(&token_as(&s, "cl_typo", "cs_x"), "invalid_client");
}

/// A token request sent from the local address `source` (127.0.0.2 is loopback on Linux,
/// as `curl --interface 127.0.0.2` would send it).
fn token_from(s: &Setup, source: &str, headers: &[(&str, &str)], body: &str) -> Response {
    use std::io::Write;
    let addr = s.gw.addr;
    let mut req = format!(
        "POST /oauth/token HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut stream = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
        socket.connect(addr).await.unwrap().into_std().unwrap()
    });
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    stream.write_all(req.as_bytes()).unwrap();
    read_response(&mut stream)
}

/// An unsigned JWT-bearer assertion claiming to be client `id` (its `iss` is not verified
/// before it is counted).
fn forged_assertion(s: &Setup, id: &str) -> String {
    let now = unix_now();
    let claims = serde_json::json!({
        "iss": id, "sub": id, "aud": format!("http://{}/oauth/token", s.gw.addr),
        "exp": now + 60, "iat": now, "jti": format!("j{now}"),
    });
    assertion("EdDSA", "k1", &claims, &|_| vec![0; 64])
}

#[test]
fn a_client_id_known_elsewhere_cannot_lock_the_client_out() {
    // The attack probe: client ids are not secret, and three `-u victim:wrong` from
    // 127.0.0.2, then one more every window / limit, kept the real client on 127.0.0.1
    // locked out; so did unverified assertion `iss` values.
    let s = setup_with(3);
    let victim = s.client_id.clone();
    let wrong = basic(&victim, "cs_wrong");
    for _ in 0..3 {
        let r = token_from(
            &s,
            "127.0.0.2",
            &[("Authorization", &wrong)],
            "grant_type=client_credentials",
        );
        assert_problem(&r, "invalid_client");
    }
    // The attacker is blocked with that id from its own address ...
    let r = token_from(
        &s,
        "127.0.0.2",
        &[("Authorization", &wrong)],
        "grant_type=client_credentials",
    );
    let b = assert_problem(&r, "too_many_failed_attempts");
    assert_eq!(b["blocked"]["address"], "127.0.0.2", "{b}");
    let detail = b["detail"].as_str().unwrap();
    assert!(
        detail.starts_with(&format!("The client_id {victim} from address 127.0.0.2 is blocked at the token endpoint: 3 failed client authentications within 5 min, the limit per client_id from one address; every attempt with it from this address is refused (its failures from other addresses are counted apart) until")),
        "{detail}"
    );
    // ... and the real client is not.
    let valid = || token_as(&s, &victim, &s.secret);
    assert_eq!(valid().status, 200, "{}", valid().text());

    // The jwt-bearer grant counts an assertion's unverified iss from its address only.
    let form_of = |a: &str| {
        format!("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={a}")
    };
    for _ in 0..5 {
        let r = token_from(
            &s,
            "127.0.0.3",
            &[],
            &form_of(&forged_assertion(&s, &victim)),
        );
        assert_eq!(r.status / 100, 4, "{}", r.text());
    }
    assert_eq!(valid().status, 200, "{}", valid().text());

    // The operator sees which client is blocked from where; `clear client ID` lifts its
    // blocks from every address.
    let v = admin_call(&s.gw, "GET", "/blocks").json();
    let rows: Vec<(&str, &str, &str)> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["kind"].as_str().unwrap(),
                r["key"].as_str().unwrap(),
                r["address"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("client", victim.as_str(), "127.0.0.2"),
            ("client", victim.as_str(), "127.0.0.3")
        ],
        "{v}"
    );
    let admin = s.gw.admin.unwrap().to_string();
    let out = cli(&s.gw, &["blocks", "list", "--admin", &admin]);
    assert!(
        out.lines()
            .any(|l| l.starts_with("client ") && l.contains(&victim) && l.contains("127.0.0.2")),
        "{out}"
    );
    let out = cli(
        &s.gw,
        &["blocks", "clear", "client", &victim, "--admin", &admin],
    );
    assert!(
        out.starts_with(&format!(
            "Lifted the block of client_id {victim} from every address"
        )),
        "{out}"
    );
    assert_eq!(
        admin_call(&s.gw, "GET", "/blocks").json()["data"],
        serde_json::json!([])
    );
    let r = token_from(
        &s,
        "127.0.0.2",
        &[("Authorization", &wrong)],
        "grant_type=client_credentials",
    );
    assert_problem(&r, "invalid_client");
}

#[test]
fn client_ids_reach_the_terminal_escaped_and_the_shell_quoted() {
    // The attack probe: any client_id is counted, and `candor blocks list` and `clear`
    // printed it raw (`client_id=%1b%5b31mRED%1b%5b0m` turned the terminal red).
    let s = setup_with(3);
    let body = "grant_type=client_credentials&client_id=%1b%5b31mRED%1b%5b0m&client_secret=x";
    for _ in 0..3 {
        assert_problem(
            &s.gw
                .request("POST", "/oauth/token", &[FORM], body.as_bytes()),
            "invalid_client",
        );
    }
    let r =
        s.gw.request("POST", "/oauth/token", &[FORM], body.as_bytes());
    let b = assert_problem(&r, "too_many_failed_attempts");
    assert!(!r.body.contains(&0x1b), "JSON escapes it: {}", r.text());
    assert!(
        b["detail"]
            .as_str()
            .unwrap()
            .contains("`candor blocks clear client $'\\x1b[31mRED\\x1b[0m'`"),
        "{b}"
    );
    let list = admin_call(&s.gw, "GET", "/blocks");
    assert!(!list.body.contains(&0x1b), "{}", list.text());
    assert_eq!(list.json()["data"][0]["key"], "\u{1b}[31mRED\u{1b}[0m");

    let admin = s.gw.admin.unwrap().to_string();
    let out = cli(&s.gw, &["blocks", "list", "--admin", &admin]);
    assert!(!out.contains('\u{1b}'), "{out:?}");
    assert!(out.contains("\\u{1b}[31mRED\\u{1b}[0m"), "{out}");
    let out = cli(
        &s.gw,
        &[
            "blocks",
            "clear",
            "client",
            "\u{1b}[31mRED\u{1b}[0m",
            "--admin",
            &admin,
        ],
    );
    assert_eq!(
        out.trim(),
        "Lifted the block of client_id \\u{1b}[31mRED\\u{1b}[0m from every address: its failures are forgotten and its next attempt is checked as usual."
    );
    // Again: the catalog's answer, escaped too.
    let (code, _, err) = candor(&[
        "blocks",
        "clear",
        "client",
        "\u{1b}[31mRED\u{1b}[0m",
        "--admin",
        &admin,
        "--config",
        s.gw.config.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(!err.contains('\u{1b}'), "{err:?}");
    assert!(
        err.contains("error[resource_not_found]: A block of client_id \\u{1b}[31mRED"),
        "{err}"
    );

    // An id with a space is quoted in the suggested command.
    let body = "grant_type=client_credentials&client_id=a+b&client_secret=x";
    for _ in 0..3 {
        s.gw.request("POST", "/oauth/token", &[FORM], body.as_bytes());
    }
    let b = assert_problem(
        &s.gw
            .request("POST", "/oauth/token", &[FORM], body.as_bytes()),
        "too_many_failed_attempts",
    );
    assert!(
        b["detail"]
            .as_str()
            .unwrap()
            .contains("`candor blocks clear client 'a b'`, or DELETE /blocks/client/a%20b on"),
        "{b}"
    );

    // An empty id is a usage error of the CLI, not the admin API's route_not_found.
    let (code, _, err) = candor(&[
        "blocks",
        "clear",
        "client",
        "",
        "--admin",
        &admin,
        "--config",
        s.gw.config.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(!err.contains("route_not_found"), "{err}");
    assert!(err.contains("a value is required"), "{err}");
}

#[test]
fn the_failed_attempts_window_has_a_range() {
    // The attack probe: "0s", 0 and "1ms" passed `candor check` and were raised to 1 s in
    // silence (the limit all but off); "10000d" was accepted too.
    for (value, says) in [
        ("\"0s\"", "\"0s\" (0s) is too short"),
        ("0", "0 (0s) is too short"),
        ("\"1ms\"", "\"1ms\" (1ms) is not a whole number of seconds"),
        ("\"30s\"", "\"30s\" (30s) is too short"),
        ("\"10000d\"", "\"10000d\" (10000d) is too long"),
    ] {
        check_reports(
            &format!("[auth]\nfailed_attempts_window = {value}\n"),
            &[
                &format!("auth.failed_attempts_window: {says}"),
                "a duration from 1m to 1d such as \"5m\"",
            ],
        );
    }
}
