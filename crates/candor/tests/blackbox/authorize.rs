//! Authorize stage, black-box: scopes, the account a request names (path parameter or
//! header), and account quotas that survive a restart.

use crate::harness::*;

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
    // The finding: a value that is not ASCII was reported as missing (`required`).
    let mut raw =
        format!("GET /v2/devices HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nApi-Company: acm")
            .into_bytes();
    raw.extend_from_slice(b"\xc3\xa9\r\nConnection: close\r\n\r\n");
    let b = assert_problem(&s.gw.send(&raw), "validation_failed");
    assert_eq!(b["errors"][0]["reason"], "invalid", "{b}");
    assert_eq!(
        b["errors"][0]["detail"],
        "has byte 0xC3 at position 4; an account id is visible ASCII (the token's account is acme)"
    );
    let r = s.gw.request(
        "GET",
        "/v2/devices",
        &[
            ("Authorization", &auth),
            ("Api-Company", "acme"),
            ("Api-Company", "globex"),
        ],
        b"",
    );
    let b = assert_problem(&r, "validation_failed");
    assert_eq!(
        b["errors"][0]["detail"],
        "is sent 2 times; send it once, with the id of the account this request acts for"
    );
    // A route without auth stays open.
    assert_eq!(s.gw.get("/open").status, 200);
}

#[test]
fn account_quota_survives_a_restart() {
    let s = account_setup(
        "",
        "",
        &["--id", "small", "--name", "Small", "--quota-per-day", "3"],
    );
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
            "Account small has used 3 of its 3 requests per day (UTC); the quota resets at "
        ),
        "{b}"
    );

    // The day's count is saved: a restart does not hand out a fresh quota.
    let s = s.restarted(false);
    // (The restarted gateway listens on a new port, so it is a new issuer: a new token.)
    let auth = format!("Bearer {}", token(&s));
    assert_problem(&bearer(&s, "/q", &auth), "quota_exceeded");
}

#[test]
fn a_monthly_quota_survives_a_crash_within_the_save_interval() {
    let s = account_setup(
        "[limits]\nquota_save_interval = \"100ms\"",
        "",
        &[
            "--id",
            "monthly",
            "--name",
            "Monthly",
            "--quota-per-day",
            "100",
            "--quota-per-month",
            "2",
        ],
    );
    let listed = cli_at(&s.gw.config, &["accounts", "list"]);
    assert!(
        listed.contains("100 requests/day, 2 requests/month"),
        "{listed}"
    );
    let auth = format!("Bearer {}", token(&s));
    for _ in 0..2 {
        assert_eq!(bearer(&s, "/q", &auth).status, 200);
    }
    // Past the save interval, a crash (SIGKILL: nothing saved on the way out) loses nothing.
    std::thread::sleep(std::time::Duration::from_millis(600));
    let s = s.restarted(true);
    let auth = format!("Bearer {}", token(&s));
    let r = bearer(&s, "/q", &auth);
    let b = assert_problem(&r, "quota_exceeded");
    assert_eq!(b["period"], "month");
    assert_eq!(b["used"], 2);
    assert_eq!(b["limit"], 2);
    let resets = b["resets_at"].as_str().unwrap();
    assert!(resets.ends_with("-01T00:00:00Z"), "{resets}");
    let wait: i64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=31 * 86_400).contains(&wait), "{wait}");
    assert!(
        b["detail"].as_str().unwrap().starts_with(
            "Account monthly has used 2 of its 2 requests per calendar month (UTC); the quota resets at "
        ),
        "{b}"
    );
}
