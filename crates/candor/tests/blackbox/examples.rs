//! The seed examples (`examples/asyncos.toml`, `edgio.toml`, `knox.toml`), black-box: each
//! file started as it ships (its data directory moved into the test's own), accounts and
//! clients made with the CLI, and every error its seed document lists produced by a real
//! request, checked for status and catalog code (in the default `problem` envelope).

use crate::harness::*;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use candor_gateway::{Claims, Identity, unix_now};

/// `examples/NAME.toml` with its data directory in the test's directory, answering in the
/// default `problem` envelope (its profile line taken out) so that the catalog code of each
/// answer is checked; the profile's own bodies are checked by the `*_seed_*` tests.
fn example(name: &str) -> String {
    let line = format!("profile = \"{name}\"\n");
    let text = example_as_shipped(name);
    assert!(text.contains(&line), "examples/{name}.toml has no `{line}`");
    text.replace(&line, "")
}

/// `examples/NAME.toml` as it ships, its data directory in the test's directory.
fn example_as_shipped(name: &str) -> String {
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(format!("{name}.toml"));
    let text = std::fs::read_to_string(&file).unwrap();
    let line = format!("data_dir = \"../candor-data/{name}\"");
    assert!(text.contains(&line), "{} has no `{line}`", file.display());
    text.replace(&line, "data_dir = \"candor-data\"")
}

/// The example's gateway, after `prepare` ran the CLI on its configuration.
fn start(name: &str, prepare: impl FnOnce(&std::path::Path)) -> Gateway {
    Gateway::start_after(&example(name), prepare)
}

fn identity(gw: &Gateway) -> Identity {
    Identity::open(&gw.dir.join("candor-data")).unwrap()
}

/// A token signed with the gateway's key, as its token endpoint signs them, edited.
fn signed(
    gw: &Gateway,
    client: &str,
    account: &str,
    aud: &str,
    edit: impl FnOnce(&mut Claims),
) -> String {
    let now = unix_now();
    let mut c = Claims {
        iss: format!("http://{}", gw.addr),
        sub: client.into(),
        aud: aud.into(),
        exp: now + 300,
        iat: now,
        nbf: None,
        jti: format!("t-{now}-{}", std::process::id()),
        scope: String::new(),
        account: Some(account.into()),
    };
    edit(&mut c);
    identity(gw).sign(&c).unwrap()
}

fn client_token(gw: &Gateway, id: &str, secret: &str, extra: &[(&str, &str)]) -> Response {
    let auth = basic(id, secret);
    let mut pairs = vec![("grant_type", "client_credentials")];
    pairs.extend_from_slice(extra);
    gw.request(
        "POST",
        "/oauth/token",
        &[FORM, ("Authorization", &auth)],
        form(&pairs).as_bytes(),
    )
}

// ------------------------------------------------------------------ AsyncOS (000)

#[test]
fn asyncos_example_answers_its_documented_errors() {
    let mut out = String::new();
    let gw = start("asyncos", |path| {
        cli_at(
            path,
            &["accounts", "add", "--id", "esa", "--name", "Mail gateway"],
        );
        out = cli_at(path, &["clients", "add", "--account", "esa"]);
    });
    let (id, secret) = (
        value_of(&out, "client_id:"),
        value_of(&out, "client_secret:"),
    );
    let sg = "/esa/api/v2.0/config/sender_groups";

    // "Unauthorized." 401: no token.
    let r = gw.get(sg);
    assert_eq!(r.status, 401);
    assert_problem(&r, "credentials_missing");

    // "Invalid credentials." at the token endpoint.
    let r = client_token(&gw, &id, "not-the-secret", &[]);
    assert_eq!(r.status, 401);
    assert_problem(&r, "invalid_client");

    let r = client_token(&gw, &id, &secret, &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    let token = r.json()["access_token"].as_str().unwrap().to_owned();
    let auth = format!("Bearer {token}");
    let get = |path: &str, auth: &str| gw.request("GET", path, &[("Authorization", auth)], b"");
    assert_eq!(get(sg, &auth).status, 200);

    // "InvalidTokenError." 401: a token whose signature does not verify.
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut sig = B64.decode(&parts[2]).unwrap();
    sig[0] ^= 1;
    parts[2] = B64.encode(sig);
    let r = get(sg, &format!("Bearer {}", parts.join(".")));
    assert_eq!(r.status, 401);
    assert_problem(&r, "token_invalid");

    // "ExpiredSignatureError." 401.
    let expired = signed(&gw, &id, "esa", "asyncos-api", |c| {
        c.iat -= 900;
        c.exp = c.iat + 300;
    });
    let r = get(sg, &format!("Bearer {expired}"));
    assert_eq!(r.status, 401);
    assert_problem(&r, "token_expired");

    // "Unsupported operation for machine mode. Override settings from the UI for
    // sender_groups to configure through APIs." 404.
    let r = get(&format!("{sg}?mode=machine"), &auth);
    assert_eq!(r.status, 404);
    let b = assert_problem(&r, "unsupported_for_mode");
    assert_eq!(
        b["detail"],
        "Unsupported operation for machine mode on sender_groups. Override settings from the UI for sender_groups to configure through APIs."
    );
    // URL lists are overridden for machine mode in the file; sender groups once the admin
    // API overrides them.
    assert_eq!(
        get("/esa/api/v2.0/config/url_lists?mode=machine", &auth).status,
        200
    );
    assert_eq!(
        admin_call(&gw, "PUT", "/modes/sender_groups/machine", None).status,
        201
    );
    assert_eq!(get(&format!("{sg}?mode=machine"), &auth).status, 200);
    assert_problem(
        &get("/esa/api/v2.0/config/dictionaries?mode=group", &auth),
        "unsupported_for_mode",
    );
}

// ------------------------------------------------------------------ Edgio (001)

#[test]
fn edgio_example_answers_its_documented_errors() {
    let (mut primary, mut backup, mut deleted, mut client) =
        (String::new(), String::new(), String::new(), String::new());
    let gw = start("edgio", |path| {
        for (id, name) in [
            ("0001", "Customer one"),
            ("0002", "Gone"),
            ("0003", "Customer three"),
        ] {
            cli_at(path, &["accounts", "add", "--id", id, "--name", name]);
        }
        primary = cli_at(path, &["accounts", "token", "0001", "primary"])
            .trim()
            .to_owned();
        backup = cli_at(path, &["accounts", "token", "0001", "backup"])
            .trim()
            .to_owned();
        deleted = cli_at(path, &["accounts", "token", "0002", "primary"])
            .trim()
            .to_owned();
        cli_at(path, &["accounts", "delete", "0002"]);
        client = cli_at(
            path,
            &[
                "clients",
                "add",
                "--account",
                "0001",
                "--scopes",
                "devices:read",
                "--lifetime",
                "300s",
            ],
        );
    });
    let devices = "/v2/mcc/customers/0001/devices";
    let tok = |t: &str| format!("TOK: {t}");
    let get = |path: &str, auth: &str| gw.request("GET", path, &[("Authorization", auth)], b"");
    let post = |path: &str, auth: &str, ct: &str, body: &str| {
        gw.request(
            "POST",
            path,
            &[("Authorization", auth), ("Content-Type", ct)],
            body.as_bytes(),
        )
    };

    // Primary and backup are valid at once, with or without a space after TOK:.
    assert_eq!(get(devices, &tok(&primary)).status, 200);
    assert_eq!(get(devices, &format!("TOK:{backup}")).status, 200);

    // 400: request body format against Content-Type; an invalid field; URL encoding.
    assert_problem(
        &post(devices, &tok(&primary), "application/xml", "<device/>"),
        "unsupported_media_type",
    );
    assert_problem(
        &post(devices, &tok(&primary), "application/json", "{\"name\": "),
        "malformed_body",
    );
    let r = post(
        devices,
        &tok(&primary),
        "application/json",
        r#"{"name":"","serial":"x y"}"#,
    );
    assert_eq!(r.status, 400);
    assert_problem(&r, "validation_failed");
    assert_problem(
        &get("/v2/mcc/customers/00%zz/devices", &tok(&primary)),
        "invalid_url_encoding",
    );
    // 400 inactive / deleted customer (its own token, its own URL).
    let r = get("/v2/mcc/customers/0002/devices", &tok(&deleted));
    assert_eq!(r.status, 403);
    assert_eq!(
        assert_problem(&r, "account_inactive")["account_status"],
        "deleted"
    );
    // Invalid customer id: the URL names another account than the token's.
    let r = get("/v2/mcc/customers/0003/devices", &tok(&primary));
    assert_eq!(r.status, 403);
    assert_problem(&r, "account_mismatch");

    // 401: missing token; an unknown token; expired (OAuth tokens live 300 s);
    // insufficient permissions.
    assert_problem(&gw.get(devices), "credentials_missing");
    assert_problem(
        &get(devices, &tok("tok_0123456789abcdefghijklmnopqrstuvwxyz")),
        "token_invalid",
    );
    let (id, secret) = (
        value_of(&client, "client_id:"),
        value_of(&client, "client_secret:"),
    );
    let r = client_token(&gw, &id, &secret, &[]);
    assert_eq!(r.json()["expires_in"], 300, "{}", r.text());
    let bearer = format!("Bearer {}", r.json()["access_token"].as_str().unwrap());
    assert_eq!(get("/rest/v1/customers/0001/devices", &bearer).status, 200);
    let expired = signed(&gw, &id, "0001", "edgio-mcc", |c| {
        c.iat -= 600;
        c.exp = c.iat + 300;
        c.scope = "devices:read".into();
    });
    assert_problem(
        &get(
            "/rest/v1/customers/0001/devices",
            &format!("Bearer {expired}"),
        ),
        "token_expired",
    );
    let r = post(
        "/rest/v1/customers/0001/devices",
        &bearer,
        "application/json",
        r#"{"name":"a","serial":"S1"}"#,
    );
    assert_eq!(r.status, 403);
    assert_problem(&r, "insufficient_scope");

    // 403: the token in quotes; the wrong letter case.
    let r = get(devices, &format!("\"TOK: {primary}\""));
    assert_eq!(
        assert_problem(&r, "credentials_malformed")["reason"],
        "quoted"
    );
    let r = get(devices, &format!("TOK: \"{primary}\""));
    assert_eq!(
        assert_problem(&r, "credentials_malformed")["reason"],
        "quoted"
    );
    let r = get("/v2/MCC/customers/0001/devices", &tok(&primary));
    assert_eq!(r.status, 404);
    let b = assert_problem(&r, "route_not_found");
    assert_eq!(b["suggestions"][0]["path"], devices);
    assert_eq!(b["suggestions"][0]["reason"], "letter_case");

    // 404: an endpoint not found, with the trailing-slash hint; a device that does not exist.
    let b = assert_problem(
        &get(&format!("{devices}/"), &tok(&primary)),
        "route_not_found",
    );
    assert_eq!(b["suggestions"][0]["reason"], "trailing_slash");
    assert_problem(
        &get(&format!("{devices}/999"), &tok(&primary)),
        "resource_not_found",
    );

    // 405: a method the endpoint does not take.
    let r = gw.request("PUT", devices, &[("Authorization", &tok(&primary))], b"");
    assert_eq!(r.status, 405);
    assert_problem(&r, "method_not_allowed");

    // 409: the same resource created twice.
    let body = r#"{"name":"Edge node","serial":"EN-1"}"#;
    assert_eq!(
        post(devices, &tok(&primary), "application/json", body).status,
        201
    );
    let r = post(devices, &tok(&primary), "application/json", body);
    assert_eq!(r.status, 409);
    assert_problem(&r, "duplicate_resource");

    // 500 "Method Error".
    let r = get("/v2/mcc/customers/0001/method-error", &tok(&primary));
    assert_eq!(r.status, 500);
    assert_problem(&r, "internal_error");

    // Rotation: a new primary through the admin API; the old primary stops working, the
    // backup never did.
    let r = admin_call(&gw, "POST", "/accounts/0001/tokens/primary", None);
    assert_eq!(r.status, 201, "{}", r.text());
    let new_primary = r.json()["token"].as_str().unwrap().to_owned();
    assert_problem(&get(devices, &tok(&primary)), "token_invalid");
    assert_eq!(get(devices, &tok(&backup)).status, 200);
    assert_eq!(get(devices, &tok(&new_primary)).status, 200);
    let slots = gw.admin_get("/accounts/0001/tokens");
    assert_eq!(slots["data"][0]["slot"], "primary");
    assert_eq!(slots["data"][1]["set"], true);
    assert!(
        !slots.to_string().contains(&new_primary),
        "tokens are never listed"
    );
    assert_problem(
        &admin_call(&gw, "POST", "/accounts/0001/tokens/tertiary", None),
        "validation_failed",
    );
    assert_problem(
        &admin_call(&gw, "POST", "/accounts/0404/tokens/primary", None),
        "resource_not_found",
    );
}

// ------------------------------------------------------------------ Knox (003)

#[test]
fn knox_example_answers_its_documented_errors() {
    use ring::signature::{self, KeyPair};
    let rng = ring::rand::SystemRandom::new();
    let key = signature::Ed25519KeyPair::from_pkcs8(
        signature::Ed25519KeyPair::generate_pkcs8(&rng)
            .unwrap()
            .as_ref(),
    )
    .unwrap();
    let jwks = serde_json::json!({"keys": [
        {"kty": "OKP", "crv": "Ed25519", "kid": "knox-1", "x": B64.encode(key.public_key().as_ref())},
    ]});
    let (mut client, mut quota_client, mut open_key, mut ip_key, mut referer_key) = (
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
    );
    let gw = start("knox", |path| {
        cli_at(
            path,
            &["accounts", "add", "--id", "tenant1", "--name", "Tenant"],
        );
        cli_at(
            path,
            &[
                "accounts",
                "add",
                "--id",
                "tenant2",
                "--name",
                "Small tenant",
                "--quota-per-day",
                "1",
            ],
        );
        quota_client = cli_at(path, &["clients", "add", "--account", "tenant2"]);
        client = cli_at(
            path,
            &["clients", "add", "--account", "tenant1", "--lifetime", "1h"],
        );
        let id = value_of(&client, "client_id:");
        let file = path.parent().unwrap().join("client.jwks.json");
        std::fs::write(&file, jwks.to_string()).unwrap();
        cli_at(
            path,
            &["clients", "set-keys", &id, "--jwks", file.to_str().unwrap()],
        );
        let key_of = |out: String| value_of(&out, "api_key:");
        open_key = key_of(cli_at(path, &["keys", "add", "--account", "tenant1"]));
        ip_key = key_of(cli_at(
            path,
            &[
                "keys",
                "add",
                "--account",
                "tenant1",
                "--allow-ip",
                "10.9.9.0/24",
            ],
        ));
        referer_key = key_of(cli_at(
            path,
            &[
                "keys",
                "add",
                "--account",
                "tenant1",
                "--allow-referer",
                "https://console.example/*",
            ],
        ));
    });
    let id = value_of(&client, "client_id:");
    let token_url = format!("http://{}/oauth/token", gw.addr);
    let now = unix_now();
    let jwt = |jti: &str, tamper: bool| {
        let claims = serde_json::json!({"iss": id, "sub": id, "aud": token_url, "exp": now + 120, "iat": now, "jti": jti});
        let input = format!(
            "{}.{}",
            B64.encode(
                serde_json::json!({"alg": "EdDSA", "typ": "JWT", "kid": "knox-1"}).to_string()
            ),
            B64.encode(claims.to_string())
        );
        let mut sig = key.sign(input.as_bytes()).as_ref().to_vec();
        if tamper {
            sig[0] ^= 1;
        }
        format!("{input}.{}", B64.encode(sig))
    };
    let grant = |assertion: &str, extra: &[(&str, &str)]| {
        let mut pairs = vec![
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", assertion),
        ];
        pairs.extend_from_slice(extra);
        gw.request("POST", "/oauth/token", &[FORM], form(&pairs).as_bytes())
    };
    // The running gateway picks the client's keys up within a second.
    std::thread::sleep(std::time::Duration::from_millis(1500));

    // The JWT flow: a signed JWT with a fresh jti, validity in minutes (int32).
    let r = grant(
        &jwt("jti-1", false),
        &[("validityForAccessTokenInMinutes", "15")],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["expires_in"], 900);
    let access = format!("Bearer {}", r.json()["access_token"].as_str().unwrap());
    // 4002250 API_KEY_NON_UNIQUE_JWTID
    assert_problem(&grant(&jwt("jti-1", false), &[]), "assertion_replayed");
    // 4002251 ACCESS_TOKEN_TIMEOUT_VALIDITY_RESOURCE_INVALID_PARAM
    for bad in ["fifteen", "15m", "2147483648"] {
        let b = assert_problem(
            &grant(
                &jwt(&format!("jti-v-{bad}"), false),
                &[("validityForAccessTokenInMinutes", bad)],
            ),
            "invalid_token_validity",
        );
        assert_eq!(b["parameter"], "validityForAccessTokenInMinutes");
        assert!(b["detail"].as_str().unwrap().contains("int32"), "{b}");
    }
    // 40122050 ACCESS_TOKEN_BAD_REQUEST: a badly signed JWT.
    assert_problem(&grant(&jwt("jti-2", true), &[]), "invalid_grant");

    let devices = "/kcs/v1/customers/tenant1/devices";
    let get = |path: &str, h: &[(&str, &str)]| gw.request("GET", path, h, b"");
    assert_eq!(get(devices, &[("Authorization", &access)]).status, 200);
    // 4032251 ACCESS_TOKEN_EXPIRED, 4032252 ACCESS_TOKEN_INVALID
    let expired = signed(&gw, &id, "tenant1", "knox-cloud", |c| {
        c.iat -= 7200;
        c.exp = c.iat + 900;
    });
    assert_problem(
        &get(devices, &[("Authorization", &format!("Bearer {expired}"))]),
        "token_expired",
    );
    let other_api = signed(&gw, &id, "tenant1", "another-api", |_| {});
    assert_problem(
        &get(
            devices,
            &[("Authorization", &format!("Bearer {other_api}"))],
        ),
        "token_wrong_audience",
    );
    assert_problem(
        &get(
            devices,
            &[(
                "Authorization",
                "Bearer eyJhbGciOiJFZERTQSJ9.e30.c2lnbmF0dXJl",
            )],
        ),
        "token_invalid",
    );

    // 4042251 API_KEY_RESTRICTION_NOT_FOUND, 4042252 API_KEY_RESTRICTION_INVALID
    let keyed = "/kcs/v1/keyed/customers/tenant1/devices";
    assert_eq!(get(keyed, &[("x-knox-apikey", &open_key)]).status, 200);
    assert_problem(
        &get(keyed, &[("x-knox-apikey", &referer_key)]),
        "api_key_restriction_missing",
    );
    assert_problem(
        &get(
            keyed,
            &[
                ("x-knox-apikey", &referer_key),
                ("Referer", "https://evil.example/"),
            ],
        ),
        "api_key_restriction_mismatch",
    );
    assert_problem(
        &get(keyed, &[("x-knox-apikey", &ip_key)]),
        "api_key_restriction_mismatch",
    );

    // 4000000 RESOURCE_INVALID_PARAM, 4040000 RESOURCE_NOT_FOUND
    let r = gw.request(
        "POST",
        devices,
        &[
            ("Authorization", &access),
            ("Content-Type", "application/json"),
        ],
        br#"{"name":"","serial":"x y","kind":"toaster"}"#,
    );
    assert_eq!(r.status, 400);
    assert_problem(&r, "validation_failed");
    assert_problem(
        &get(&format!("{devices}/4711"), &[("Authorization", &access)]),
        "resource_not_found",
    );

    // Standard codes: 401, 404, 406, 501.
    assert_problem(&get(devices, &[]), "credentials_missing");
    assert_problem(
        &get("/kcs/v1/customers/tenant1/device", &[]),
        "route_not_found",
    );
    let r = get(
        devices,
        &[("Authorization", &access), ("Accept", "application/xml")],
    );
    assert_eq!(r.status, 406);
    assert_problem(&r, "not_acceptable");
    let r = get("/kcs/v1/licenses", &[]);
    assert_eq!(r.status, 501);
    assert_problem(&r, "not_implemented");

    // 422 when limits are exceeded: tenant2's quota is 1 request a day.
    let (id2, secret2) = (
        value_of(&quota_client, "client_id:"),
        value_of(&quota_client, "client_secret:"),
    );
    let r = client_token(&gw, &id2, &secret2, &[]);
    let t2 = format!("Bearer {}", r.json()["access_token"].as_str().unwrap());
    let quota_devices = "/kcs/v1/customers/tenant2/devices";
    assert_eq!(get(quota_devices, &[("Authorization", &t2)]).status, 200);
    let r = get(quota_devices, &[("Authorization", &t2)]);
    assert_eq!(r.status, 422);
    assert_problem(&r, "quota_exceeded");

    // 429: 10 requests a minute per client on the devices route.
    let r = (0..12)
        .map(|_| get(devices, &[("Authorization", &access)]))
        .find(|r| r.status != 200)
        .expect("the 11th request in a minute is refused");
    assert_eq!(r.status, 429);
    assert_problem(&r, "rate_limited");
}

// ------------------------------------------------------------------ the seeds' own bodies
//
// The examples as they ship (with their profiles): every JSON body a seed shows is what a
// real request gets (JSON equality), and every row of its tables is produced by a real
// request, checked for status, code / type and message; each test lists the rows covered.

use crate::seeds::{assert_all_rows_covered, seed, seed_bodies};

#[test]
fn asyncos_seed_bodies_are_what_requests_get() {
    let text = seed("000");
    let bodies = seed_bodies(&text);
    assert_eq!(bodies.len(), 5, "seed 000 shows five error bodies");
    let rows: Vec<String> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- Error - "))
        .map(str::to_owned)
        .collect();
    assert_eq!(rows.len(), 5, "{rows:?}");

    let mut out = String::new();
    let gw = Gateway::start_after(&example_as_shipped("asyncos"), |path| {
        cli_at(
            path,
            &["accounts", "add", "--id", "esa", "--name", "Mail gateway"],
        );
        out = cli_at(path, &["clients", "add", "--account", "esa"]);
    });
    let (id, secret) = (
        value_of(&out, "client_id:"),
        value_of(&out, "client_secret:"),
    );
    let sg = "/esa/api/v2.0/config/sender_groups";
    let token = client_token(&gw, &id, &secret, &[]).json()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut sig = B64.decode(&parts[2]).unwrap();
    sig[0] ^= 1;
    parts[2] = B64.encode(sig);
    let expired = signed(&gw, &id, "esa", "asyncos-api", |c| {
        c.iat -= 900;
        c.exp = c.iat + 300;
    });
    let get = |path: &str, auth: &str| gw.request("GET", path, &[("Authorization", auth)], b"");
    let answers = [
        gw.get(sg),
        client_token(&gw, &id, "not-the-secret", &[]),
        get(sg, &format!("Bearer {}", parts.join("."))),
        get(sg, &format!("Bearer {expired}")),
        get(&format!("{sg}?mode=machine"), &format!("Bearer {token}")),
    ];
    let mut covered = Vec::new();
    for ((r, want), row) in answers.iter().zip(&bodies).zip(&rows) {
        assert_eq!(&r.json(), want, "{row}");
        assert_eq!(
            r.status.to_string(),
            want["error"]["code"].as_str().unwrap(),
            "{row}"
        );
        assert_eq!(r.header("content-type"), Some("application/json"));
        covered.push(row.clone());
    }
    assert_all_rows_covered("000 (AsyncOS)", &rows, &covered);
}

/// A row of the Edgio document: status, "Error Message Type", and the Message the document
/// gives for it (the type's own words where it gives none).
struct EdgioRow {
    status: u16,
    kind: &'static str,
    message: &'static str,
}

const EDGIO_ROWS: &[EdgioRow] = &[
    EdgioRow {
        status: 400,
        kind: "Inactive/Deleted Customer",
        message: "Cannot update or retrieve information of a deleted customer.",
    },
    EdgioRow {
        status: 400,
        kind: "Invalid Customer ID Value/Invalid ID Value",
        message: "Invalid Customer ID Value",
    },
    EdgioRow {
        status: 400,
        kind: "Invalid Request/Response Type",
        message: "Invalid Request/Response Type",
    },
    EdgioRow {
        status: 400,
        kind: "Invalid Request URL/Parameter",
        message: "Invalid Request URL/Parameter",
    },
    EdgioRow {
        status: 400,
        kind: "Missing Required Fields",
        message: "Missing Required Fields",
    },
    EdgioRow {
        status: 401,
        kind: "Missing/Invalid Token",
        message: "Missing/Invalid Token",
    },
    EdgioRow {
        status: 401,
        kind: "Insufficient Permissions",
        message: "Insufficient Permissions",
    },
    EdgioRow {
        status: 401,
        kind: "Expired Token",
        message: "Expired Token",
    },
    EdgioRow {
        status: 403,
        kind: "Authentication Failure",
        message: "Access Denied",
    },
    EdgioRow {
        status: 403,
        kind: "Authentication Failure",
        message: "Invalid user",
    },
    EdgioRow {
        status: 403,
        kind: "Insufficient Access Rights",
        message: "Insufficient access rights.",
    },
    EdgioRow {
        status: 403,
        kind: "Invalid Case",
        message: "Invalid Case",
    },
    EdgioRow {
        status: 404,
        kind: "Invalid Request URI",
        message: "Endpoint not found",
    },
    EdgioRow {
        status: 405,
        kind: "Invalid Request",
        message: "Invalid Request",
    },
    EdgioRow {
        status: 409,
        kind: "invalid_request",
        message: "invalid_request",
    },
    EdgioRow {
        status: 500,
        kind: "Server Error",
        message: "Method Error",
    },
];

#[test]
fn edgio_seed_rows_are_what_requests_get() {
    let text = seed("001");
    // Every row's type and quoted message is the document's.
    for row in EDGIO_ROWS {
        assert!(text.contains(row.kind), "seed 001 has no type {}", row.kind);
        assert!(
            text.contains(&format!("{} ", row.status)),
            "seed 001 has no status {}",
            row.status
        );
    }
    for quoted in [
        "Cannot update or retrieve information of a deleted customer.",
        "Access Denied",
        "Invalid user",
        "Endpoint not found",
        "Method Error",
    ] {
        assert!(
            text.contains(&format!("\"{quoted}")),
            "seed 001 quotes {quoted}"
        );
    }
    let (mut primary, mut deleted, mut client) = (String::new(), String::new(), String::new());
    let gw = Gateway::start_after(&example_as_shipped("edgio"), |path| {
        for (id, name) in [
            ("0001", "Customer one"),
            ("0002", "Gone"),
            ("0003", "Customer three"),
        ] {
            cli_at(path, &["accounts", "add", "--id", id, "--name", name]);
        }
        primary = cli_at(path, &["accounts", "token", "0001", "primary"])
            .trim()
            .to_owned();
        deleted = cli_at(path, &["accounts", "token", "0002", "primary"])
            .trim()
            .to_owned();
        cli_at(path, &["accounts", "delete", "0002"]);
        client = cli_at(
            path,
            &[
                "clients",
                "add",
                "--account",
                "0001",
                "--scopes",
                "devices:read",
                "--lifetime",
                "300s",
            ],
        );
    });
    let devices = "/v2/mcc/customers/0001/devices";
    let tok = format!("TOK: {primary}");
    let get = |path: &str, auth: &str| gw.request("GET", path, &[("Authorization", auth)], b"");
    let post = |path: &str, auth: &str, ct: &str, body: &str| {
        gw.request(
            "POST",
            path,
            &[("Authorization", auth), ("Content-Type", ct)],
            body.as_bytes(),
        )
    };
    let (id, secret) = (
        value_of(&client, "client_id:"),
        value_of(&client, "client_secret:"),
    );
    let bearer = format!(
        "Bearer {}",
        client_token(&gw, &id, &secret, &[]).json()["access_token"]
            .as_str()
            .unwrap()
    );
    let expired = signed(&gw, &id, "0001", "edgio-mcc", |c| {
        c.iat -= 600;
        c.exp = c.iat + 300;
        c.scope = "devices:read".into();
    });
    assert_eq!(
        post(
            devices,
            &tok,
            "application/json",
            r#"{"name":"Edge","serial":"EN-1"}"#
        )
        .status,
        201
    );
    let answers: Vec<Response> = vec![
        get("/v2/mcc/customers/0002/devices", &format!("TOK: {deleted}")),
        get("/v2/mcc/customers/0003/devices", &tok),
        post(devices, &tok, "application/xml", "<device/>"),
        post(
            devices,
            &tok,
            "application/json",
            r#"{"name":"Edge 2","serial":"x y"}"#,
        ),
        post(devices, &tok, "application/json", r#"{"serial":"EN-2"}"#),
        gw.get(devices),
        post(
            "/rest/v1/customers/0001/devices",
            &bearer,
            "application/json",
            r#"{"name":"a","serial":"EN-3"}"#,
        ),
        get(
            "/rest/v1/customers/0001/devices",
            &format!("Bearer {expired}"),
        ),
        get(devices, &format!("\"{tok}\"")),
        get(devices, "TOK: tok_0123456789abcdefghijklmnopqrstuvwxyz"),
        gw.request(
            "DELETE",
            &format!("{devices}/1"),
            &[("Authorization", &tok)],
            b"",
        ),
        get("/v2/MCC/customers/0001/devices", &tok),
        get(&format!("{devices}/"), &tok),
        gw.request("PUT", devices, &[("Authorization", &tok)], b""),
        post(
            devices,
            &tok,
            "application/json",
            r#"{"name":"Edge","serial":"EN-1"}"#,
        ),
        get("/v2/mcc/customers/0001/method-error", &tok),
    ];
    assert_eq!(answers.len(), EDGIO_ROWS.len());
    let mut covered = Vec::new();
    for (r, row) in answers.iter().zip(EDGIO_ROWS) {
        let b = r.json();
        let name = format!("{} {} ({})", row.status, row.kind, row.message);
        assert_eq!(r.status, row.status, "{name}: {b}");
        assert_eq!(b["Type"], row.kind, "{name}: {b}");
        assert_eq!(b["Message"], row.message, "{name}: {b}");
        covered.push(name);
    }
    // The field errors of a 400, in the document's terms.
    assert_eq!(answers[3].json()["Fields"][0]["Name"], "serial");
    let rows: Vec<String> = EDGIO_ROWS
        .iter()
        .map(|r| format!("{} {} ({})", r.status, r.kind, r.message))
        .collect();
    assert_all_rows_covered("001 (Edgio)", &rows, &covered);
}

#[test]
fn knox_seed_rows_are_what_requests_get() {
    use ring::signature::{self, KeyPair};
    let text = seed("003");
    // Both tables: `CODE NAME description`, the standard codes (3 digits, a name of one or
    // more words) and the Knox codes (7 or 8 digits, one upper-case word).
    let mut standard = Vec::new();
    let mut knox = Vec::new();
    for line in text.lines() {
        let Some((code, rest)) = line.split_once(' ') else {
            continue;
        };
        if !code.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        match code.len() {
            3 => {
                let name_end = rest
                    .match_indices(' ')
                    .map(|(i, _)| i)
                    .find(|&i| {
                        ["The ", "Authorization ", "Specifies ", "An "]
                            .iter()
                            .any(|w| rest[i + 1..].starts_with(w))
                    })
                    .unwrap();
                standard.push((
                    code.to_owned(),
                    rest[..name_end].to_owned(),
                    rest[name_end + 1..].to_owned(),
                ));
            }
            7 | 8 => {
                let (name, description) = rest.split_once(' ').unwrap();
                knox.push((code.to_owned(), name.to_owned(), description.to_owned()));
            }
            _ => {}
        }
    }
    assert_eq!(
        (standard.len(), knox.len()),
        (9, 9),
        "{standard:?} {knox:?}"
    );

    let rng = ring::rand::SystemRandom::new();
    let key = signature::Ed25519KeyPair::from_pkcs8(
        signature::Ed25519KeyPair::generate_pkcs8(&rng)
            .unwrap()
            .as_ref(),
    )
    .unwrap();
    let jwks = serde_json::json!({"keys": [
        {"kty": "OKP", "crv": "Ed25519", "kid": "knox-1", "x": B64.encode(key.public_key().as_ref())},
    ]});
    let (mut client, mut quota_client, mut referer_key) =
        (String::new(), String::new(), String::new());
    let gw = Gateway::start_after(&example_as_shipped("knox"), |path| {
        cli_at(
            path,
            &["accounts", "add", "--id", "tenant1", "--name", "Tenant"],
        );
        cli_at(
            path,
            &[
                "accounts",
                "add",
                "--id",
                "tenant2",
                "--name",
                "Small",
                "--quota-per-day",
                "1",
            ],
        );
        client = cli_at(
            path,
            &["clients", "add", "--account", "tenant1", "--lifetime", "1h"],
        );
        quota_client = cli_at(path, &["clients", "add", "--account", "tenant2"]);
        let file = path.parent().unwrap().join("client.jwks.json");
        std::fs::write(&file, jwks.to_string()).unwrap();
        cli_at(
            path,
            &[
                "clients",
                "set-keys",
                &value_of(&client, "client_id:"),
                "--jwks",
                file.to_str().unwrap(),
            ],
        );
        referer_key = value_of(
            &cli_at(
                path,
                &[
                    "keys",
                    "add",
                    "--account",
                    "tenant1",
                    "--allow-referer",
                    "https://console.example/*",
                ],
            ),
            "api_key:",
        );
    });
    let id = value_of(&client, "client_id:");
    let token_url = format!("http://{}/oauth/token", gw.addr);
    let now = unix_now();
    let jwt = |jti: &str, tamper: bool| {
        let claims = serde_json::json!({"iss": id, "sub": id, "aud": token_url, "exp": now + 120, "iat": now, "jti": jti});
        let input = format!(
            "{}.{}",
            B64.encode(
                serde_json::json!({"alg": "EdDSA", "typ": "JWT", "kid": "knox-1"}).to_string()
            ),
            B64.encode(claims.to_string())
        );
        let mut sig = key.sign(input.as_bytes()).as_ref().to_vec();
        if tamper {
            sig[0] ^= 1;
        }
        format!("{input}.{}", B64.encode(sig))
    };
    let grant = |assertion: &str, extra: &[(&str, &str)]| {
        let mut pairs = vec![
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", assertion),
        ];
        pairs.extend_from_slice(extra);
        gw.request("POST", "/oauth/token", &[FORM], form(&pairs).as_bytes())
    };
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let r = grant(
        &jwt("jti-1", false),
        &[("validityForAccessTokenInMinutes", "30")],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let access = format!("Bearer {}", r.json()["access_token"].as_str().unwrap());
    let (id2, secret2) = (
        value_of(&quota_client, "client_id:"),
        value_of(&quota_client, "client_secret:"),
    );
    let small = format!(
        "Bearer {}",
        client_token(&gw, &id2, &secret2, &[]).json()["access_token"]
            .as_str()
            .unwrap()
    );
    let devices = "/kcs/v1/customers/tenant1/devices";
    let get = |path: &str, h: &[(&str, &str)]| gw.request("GET", path, h, b"");
    let expired = signed(&gw, &id, "tenant1", "knox-cloud", |c| {
        c.iat -= 7200;
        c.exp = c.iat + 1800;
    });
    let other_api = signed(&gw, &id, "tenant1", "another-api", |_| {});
    let keyed = "/kcs/v1/keyed/customers/tenant1/devices";

    // The Knox codes, in the document's order.
    let knox_answers = [
        grant(&jwt("jti-1", false), &[]),
        grant(
            &jwt("jti-2", false),
            &[("validityForAccessTokenInMinutes", "thirty")],
        ),
        grant(&jwt("jti-3", true), &[]),
        get(devices, &[("Authorization", &format!("Bearer {expired}"))]),
        get(
            devices,
            &[("Authorization", &format!("Bearer {other_api}"))],
        ),
        get(keyed, &[("x-knox-apikey", &referer_key)]),
        get(
            keyed,
            &[
                ("x-knox-apikey", &referer_key),
                ("Referer", "https://evil.example/"),
            ],
        ),
        gw.request(
            "POST",
            devices,
            &[
                ("Authorization", &access),
                ("Content-Type", "application/json"),
            ],
            br#"{"name":"","serial":"x y"}"#,
        ),
        get(&format!("{devices}/4711"), &[("Authorization", &access)]),
    ];
    let mut covered = Vec::new();
    let mut rows = Vec::new();
    for (r, (code, name, description)) in knox_answers.iter().zip(&knox) {
        let b = r.json();
        let row = format!("{code} {name}");
        assert_eq!(b["code"].to_string(), *code, "{row}: {b}");
        assert_eq!(b["message"], name.as_str(), "{row}: {b}");
        assert_eq!(b["description"], description.as_str(), "{row}: {b}");
        assert_eq!(r.status.to_string(), code[..3], "{row}: {b}");
        covered.push(row.clone());
    }
    rows.extend(knox.iter().map(|(c, n, _)| format!("{c} {n}")));

    // The standard codes, in the document's order.
    let mut standard_answers = vec![
        gw.request(
            "POST",
            devices,
            &[
                ("Authorization", &access),
                ("Content-Type", "application/json"),
            ],
            b"{\"name\": ",
        ),
        get(devices, &[]),
        get(
            "/kcs/v1/customers/tenant2/devices",
            &[("Authorization", &access)],
        ),
        get("/kcs/v1/customers/tenant1/device", &[]),
        get(
            devices,
            &[("Authorization", &access), ("Accept", "application/xml")],
        ),
    ];
    assert_eq!(
        get(
            "/kcs/v1/customers/tenant2/devices",
            &[("Authorization", &small)]
        )
        .status,
        200
    );
    standard_answers.push(get(
        "/kcs/v1/customers/tenant2/devices",
        &[("Authorization", &small)],
    ));
    standard_answers.push(
        (0..12)
            .map(|_| get(devices, &[("Authorization", &access)]))
            .find(|r| r.status != 200)
            .expect("the 11th request in a minute is refused"),
    );
    standard_answers.push(get("/kcs/v1/debug/fault", &[]));
    standard_answers.push(get("/kcs/v1/licenses", &[]));
    for (r, (code, name, description)) in standard_answers.iter().zip(&standard) {
        let b = r.json();
        let row = format!("{code} {name}");
        assert_eq!(r.status.to_string(), *code, "{row}: {b}");
        assert_eq!(b["code"].to_string(), *code, "{row}: {b}");
        assert_eq!(b["message"], name.as_str(), "{row}: {b}");
        assert_eq!(b["description"], description.as_str(), "{row}: {b}");
        covered.push(row.clone());
    }
    rows.extend(standard.iter().map(|(c, n, _)| format!("{c} {n}")));
    assert_all_rows_covered("003 (Knox)", &rows, &covered);
}

#[test]
fn account_tokens_grant_no_scopes_and_need_an_account() {
    check_reports(
        r#"
[[routes]]
path = "/v2/mcc/customers/{customer}/devices"
upstream = "builtin:demo"
auth = "account_token"
scopes = ["devices:read"]
account_param = "customer"
"#,
        &["account tokens grant no scopes"],
    );
    let dir = temp_dir("account-token-cli");
    let (code, out, err) = candor(&[
        "accounts",
        "token",
        "0404",
        "primary",
        "--data-dir",
        dir.to_str().unwrap(),
    ]);
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("0404"), "{err}");
    assert!(out.trim().is_empty(), "no token is printed: {out}");
}
