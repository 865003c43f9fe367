//! The admin listener, black-box: health and catalog open to load balancers, and the
//! administration API behind the admin token (accounts, clients, API keys, signing keys,
//! revocation).

use crate::harness::*;

struct Admin {
    gw: Gateway,
    token: String,
}

impl Admin {
    fn start() -> Admin {
        let gw = Gateway::start("");
        let file = gw.printed("admin API token: in ");
        let token = std::fs::read_to_string(file).unwrap().trim().to_owned();
        Admin { gw, token }
    }

    fn call(&self, method: &str, path: &str, body: Option<&str>) -> Response {
        let auth = format!("Bearer {}", self.token);
        let mut h = vec![("Authorization", auth.as_str())];
        if body.is_some() {
            h.push(("Content-Type", "application/json"));
        }
        request(
            self.gw.admin.unwrap(),
            method,
            path,
            &h,
            body.unwrap_or("").as_bytes(),
        )
    }
}

#[test]
fn admin_api_needs_the_admin_token() {
    let a = Admin::start();
    let admin = a.gw.admin.unwrap();
    let token_file = a.gw.printed("admin API token: in ");
    let r = request(admin, "GET", "/accounts", &[], b"");
    let b = assert_problem(&r, "credentials_missing");
    assert_eq!(r.status, 401);
    // Issue 15, item 12: the 401 says where the token is.
    assert_eq!(b["admin_token_file"], token_file, "{b}");
    let r = request(
        admin,
        "GET",
        "/accounts",
        &[("Authorization", "Bearer adm_not_the_right_token_at_all")],
        b"",
    );
    let b = assert_problem(&r, "token_invalid");
    assert_eq!(
        b["detail"],
        format!(
            "The access token is not valid: it is not this gateway's admin token (the token is in {token_file})."
        )
    );
    assert_eq!(b["admin_token_file"], token_file);
    // Health stays open for load balancers.
    assert_eq!(request(admin, "GET", "/health", &[], b"").status, 200);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(a.gw.printed("admin API token: in "))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o077,
            0,
            "the token file is readable by its owner only"
        );
    }
}

#[test]
fn accounts_clients_and_keys_over_http() {
    let a = Admin::start();
    let r = a.call(
        "POST",
        "/accounts",
        Some(r#"{"id":"acme","name":"Acme Corp"}"#),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["status"], "active");
    let r = a.call(
        "POST",
        "/accounts",
        Some(r#"{"id":"metered","name":"Metered","quota_per_day":100,"quota_per_month":2000}"#),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["quota_per_month"], 2000);
    let r = a.call(
        "POST",
        "/accounts",
        Some(r#"{"name":"Negative","quota_per_month":-1}"#),
    );
    let b = assert_problem(&r, "validation_failed");
    assert_eq!(b["errors"][0]["name"], "quota_per_month", "{b}");
    let r = a.call("POST", "/accounts", Some(r#"{"id":"acme","name":"Again"}"#));
    let b = assert_problem(&r, "duplicate_resource");
    assert_eq!(b["detail"], "An account with id acme already exists.");

    let r = a.call("POST", "/accounts", Some(r#"{"id":5,"colour":"red"}"#));
    let b = assert_problem(&r, "validation_failed");
    let names: Vec<&str> = b["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["colour", "id", "name"]);
    let b = assert_problem(
        &a.call("POST", "/accounts", Some("{\"name\": ")),
        "malformed_body",
    );
    assert_eq!(b["line"], 1);
    let r = request(
        a.gw.admin.unwrap(),
        "POST",
        "/accounts",
        &[
            ("Authorization", &format!("Bearer {}", a.token)),
            ("Content-Type", "text/plain"),
        ],
        b"name=x",
    );
    assert_problem(&r, "unsupported_media_type");
    let b = assert_problem(
        &a.call("GET", "/accounts/nobody", None),
        "resource_not_found",
    );
    assert_eq!(b["detail"], "Account nobody does not exist.");
    let r = a.call("PATCH", "/accounts", None);
    assert_problem(&r, "method_not_allowed");
    assert_eq!(r.header("allow"), Some("GET, POST"));
    assert_problem(&a.call("GET", "/nothing-here", None), "route_not_found");

    let r = a.call(
        "POST",
        "/clients",
        Some(r#"{"account":"acme","scopes":["devices:read"]}"#),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let c = r.json();
    let (id, secret) = (
        c["client_id"].as_str().unwrap().to_owned(),
        c["client_secret"].as_str().unwrap().to_owned(),
    );
    assert!(c.get("secret_hash").is_none());
    let listed = a.call("GET", "/clients", None).text();
    assert!(
        listed.contains(&id) && !listed.contains(&secret),
        "listings never show secrets"
    );
    let b = assert_problem(
        &a.call("POST", "/clients", Some(r#"{"account":"ghost"}"#)),
        "resource_not_found",
    );
    assert_eq!(b["detail"], "Account ghost does not exist.");

    // The client works at the token endpoint; a token can be revoked over the API.
    let basic = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{id}:{secret}")
        )
    );
    let token_of = || {
        a.gw.request(
            "POST",
            "/oauth/token",
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Authorization", &basic),
            ],
            b"grant_type=client_credentials",
        )
    };
    let r = token_of();
    assert_eq!(r.status, 200, "{}", r.text());
    let rotated = a
        .call("POST", &format!("/clients/{id}/rotate"), None)
        .json();
    assert_ne!(rotated["client_secret"], secret);
    assert_problem(&token_of(), "invalid_client");

    let r = a.call(
        "POST",
        "/keys",
        Some(r#"{"account":"acme","scopes":["reports:read"],"allowed_ips":["10.0.0.0/8"]}"#),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let key = r.json();
    assert!(
        key["api_key"]
            .as_str()
            .unwrap()
            .starts_with(key["id"].as_str().unwrap())
    );
    let b = assert_problem(
        &a.call(
            "POST",
            "/keys",
            Some(r#"{"account":"acme","allowed_ips":["ten"]}"#),
        ),
        "validation_failed",
    );
    assert_eq!(b["errors"][0]["name"], "allowed_ips");
    let key_path = format!("/keys/{}", key["id"].as_str().unwrap());
    let shown = a.call("GET", &key_path, None);
    assert_eq!(shown.status, 200, "{}", shown.text());
    assert_eq!(shown.json()["allowed_ips"][0], "10.0.0.0/8");
    assert!(shown.json().get("api_key").is_none(), "a key is shown once");
    let rotated = a.call("POST", &format!("{key_path}/rotate"), None).json();
    let new_key = rotated["api_key"].as_str().unwrap();
    assert!(new_key.starts_with(key["id"].as_str().unwrap()));
    assert_ne!(new_key, key["api_key"].as_str().unwrap());
    assert_problem(
        &a.call("POST", "/keys/ck_nosuchkey0/rotate", None),
        "resource_not_found",
    );
    assert_eq!(
        a.call(
            "DELETE",
            &format!("/keys/{}", key["id"].as_str().unwrap()),
            None
        )
        .status,
        200
    );

    let r = a.call("POST", "/accounts/acme/suspend", None);
    assert_eq!(r.json()["status"], "suspended");
    let kid = a.call("POST", "/signing-keys/rotate", None).json()["kid"].clone();
    let keys = a.call("GET", "/signing-keys", None).json();
    assert_eq!(keys["data"][0]["kid"], kid);
    let r = a.call("POST", "/tokens/revoke", Some(r#"{"jti":"01JABC"}"#));
    assert_eq!(r.json()["revoked"], "01JABC");
    let b = assert_problem(
        &a.call("POST", "/tokens/revoke", Some(r#"{"expires_at":"soon"}"#)),
        "validation_failed",
    );
    assert_eq!(b["errors"].as_array().unwrap().len(), 2);
    assert!(
        !a.gw.log().contains(&a.token),
        "the admin token never reaches the log"
    );
}

#[test]
fn admin_listener() {
    let gw = Gateway::start("");
    let admin = gw.admin.unwrap();
    let r = request(admin, "GET", "/health", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "ok");
    assert!(r.header("x-request-id").is_some());
    let r = request(admin, "GET", "/catalog", &[], b"");
    assert!(
        r.json()
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["code"] == "internal_error")
    );
    let r = request(admin, "POST", "/health", &[], b"");
    assert_eq!(
        assert_problem(&r, "method_not_allowed")["allowed"],
        serde_json::json!(["GET", "HEAD"])
    );
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    let b = assert_problem(
        &request(admin, "GET", "/metricz", &[], b""),
        "route_not_found",
    );
    assert!(b["detail"].as_str().unwrap().contains("/health"), "{b}");
}

#[test]
fn stats_count_what_the_edge_refused_and_who_ended_it() {
    let a = Admin::start();
    assert_problem(&a.gw.get("/no/such/route"), "route_not_found");
    assert_problem(
        &a.gw
            .send(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n"),
        "malformed_request",
    );
    let admin = a.gw.admin.unwrap();
    assert_problem(
        &request(admin, "GET", "/stats", &[], b""),
        "credentials_missing",
    );
    let r = a.call("GET", "/stats", None);
    assert_eq!(r.status, 200, "{}", r.text());
    let s = r.json();
    assert_eq!(s["errors"]["route_not_found"]["gateway"], 1, "{s}");
    assert_eq!(s["errors"]["malformed_request"]["gateway"], 1, "{s}");
    assert_eq!(s["errors"]["credentials_missing"]["gateway"], 1, "{s}");
    assert_eq!(s["failed_exchanges_ended_by"]["gateway"], 3, "{s}");
    assert_eq!(s["connections"]["refused_at_cap"], 0, "{s}");
    // This request's connection at least (the one before may still be closing).
    assert!(s["connections"]["open"]["admin"].as_u64() >= Some(1), "{s}");
    assert_eq!(s["responses_cut_off"]["by_upstream"], 0, "{s}");
    let r = a.call("POST", "/stats", None);
    assert_problem(&r, "method_not_allowed");
}

#[test]
fn admin_fields_did_you_mean_and_durations() {
    // Issue 15, items 10 and 12: unknown fields get a did-you-mean; token_lifetime and
    // expires_in take the duration grammar or an integer number of seconds, and a bad one
    // names the field, what was sent, the grammar and the range.
    let a = Admin::start();
    let r = a.call("POST", "/accounts", Some(r#"{"id":"acme","name":"Acme"}"#));
    assert_eq!(r.status, 201, "{}", r.text());
    let r = a.call(
        "POST",
        "/clients",
        Some(r#"{"account":"acme","scope":["devices:read"]}"#),
    );
    let b = assert_problem(&r, "validation_failed");
    assert_eq!(b["errors"][0]["name"], "scope");
    assert_eq!(b["errors"][0]["reason"], "unknown");
    assert_eq!(
        b["errors"][0]["detail"],
        "unknown field `scope`; did you mean `scopes`? (the fields: account, scopes, token_lifetime, second_factor)"
    );
    let b = assert_problem(
        &a.call("POST", "/accounts", Some(r#"{"name":"X","colour":"red"}"#)),
        "validation_failed",
    );
    assert_eq!(
        b["errors"][0]["detail"],
        "unknown field `colour` (the fields: id, name, quota_per_day, quota_per_month)"
    );

    for (sent, seconds) in [(r#""1h""#, 3600), ("600", 600), (r#""90s""#, 90)] {
        let r = a.call(
            "POST",
            "/clients",
            Some(&format!(r#"{{"account":"acme","token_lifetime":{sent}}}"#)),
        );
        assert_eq!(r.status, 201, "{sent}: {}", r.text());
        assert_eq!(r.json()["token_lifetime"], seconds, "{sent}");
    }
    for (sent, reason, detail) in [
        (
            r#""5x""#,
            "invalid",
            "`5x` is not a duration: `x` is not a unit (ms, s, m, h, d). Expected a whole number and a unit — ms, s, m (minutes), h or d — such as 90s, 5m, 2h or 30d; a bare number is seconds; from 30s to 1d",
        ),
        (
            "10",
            "invalid",
            "`10` (10s) is too short. Expected a whole number and a unit — ms, s, m (minutes), h or d — such as 90s, 5m, 2h or 30d; a bare number is seconds; from 30s to 1d",
        ),
        (
            "true",
            "type",
            "must be a string such as \"5m\" or an integer number of seconds; it is true. Expected a whole number and a unit — ms, s, m (minutes), h or d — such as 90s, 5m, 2h or 30d; a bare number is seconds; from 30s to 1d",
        ),
    ] {
        let r = a.call(
            "POST",
            "/clients",
            Some(&format!(r#"{{"account":"acme","token_lifetime":{sent}}}"#)),
        );
        let b = assert_problem(&r, "validation_failed");
        let e = &b["errors"][0];
        assert_eq!(
            (&e["name"], &e["pointer"], &e["reason"], &e["detail"]),
            (
                &"token_lifetime".into(),
                &"#/token_lifetime".into(),
                &reason.into(),
                &detail.into()
            ),
            "{sent}"
        );
    }

    let r = a.call(
        "POST",
        "/keys",
        Some(r#"{"account":"acme","expires_in":"30d"}"#),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert!(r.json()["expires_at"].is_string());
    let r = a.call(
        "POST",
        "/keys",
        Some(r#"{"account":"acme","expires_in":3600}"#),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    for (sent, why) in [
        ("-5", "durations cannot be negative"),
        ("1.5", "the number must be whole"),
        (r#""0s""#, "`0s` (0s) is too short."),
        (r#""forever""#, "it does not start with a number (0-9)"),
    ] {
        let r = a.call(
            "POST",
            "/keys",
            Some(&format!(r#"{{"account":"acme","expires_in":{sent}}}"#)),
        );
        let b = assert_problem(&r, "validation_failed");
        let detail = b["errors"][0]["detail"].as_str().unwrap();
        assert!(
            detail.contains(why) && detail.ends_with("a bare number is seconds; from 1s to 3650d"),
            "{sent}: {detail}"
        );
        assert_eq!(b["errors"][0]["name"], "expires_in");
    }
}
