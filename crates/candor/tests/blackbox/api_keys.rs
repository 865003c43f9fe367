//! API keys, black-box: keys in a header or the query, every refusal precise (invalid,
//! expired, restricted by referer or client address, short of a scope), rotation and
//! deletion picked up by the running gateway, and no key secret in the logs.

use crate::harness::*;
use std::process::Command;

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
        "/k/reports requires API key (in the X-Api-Key header) credentials and the request carried none."
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

/// A credential where the route does not read it is named with where it was found and
/// where the route expects it (`misplaced`), or as the wrong kind for the route
/// (`wrong_kind`); never by its value. A request with nothing anywhere is still
/// `credentials_missing`.
#[test]
fn credentials_in_the_wrong_place_are_named() {
    let up = Upstream::start(Behaviour::Echo);
    let u = up.url();
    let config = format!(
        "[[routes]]\nname = \"header\"\npath = \"/k/header\"\nupstream = \"{u}\"\nauth = \"api_key\"\n\
         [[routes]]\nname = \"query\"\npath = \"/k/query\"\nupstream = \"{u}\"\nauth = \"api_key\"\napi_key_query = \"api_key\"\n\
         [[routes]]\nname = \"tokens\"\npath = \"/t\"\nupstream = \"{u}\"\nauth = \"bearer\"\n"
    );
    let (mut key, mut client) = (String::new(), String::new());
    let gw = Gateway::start_after(&config, |path| {
        cli_at(path, &["accounts", "add", "--id", "acme", "--name", "Acme"]);
        key = value_of(
            &cli_at(path, &["keys", "add", "--account", "acme"]),
            "api_key:",
        );
        client = cli_at(path, &["clients", "add", "--account", "acme"]);
    });
    let s = Setup {
        gw,
        up,
        client_id: value_of(&client, "client_id:"),
        secret: value_of(&client, "client_secret:"),
    };
    let jwt = token(&s);
    let gw = &s.gw;
    let bearer_key = format!("Bearer {key}");
    let bearer_jwt = format!("Bearer {jwt}");

    // The right places work, the header's name in any case.
    assert_eq!(
        gw.request("GET", "/k/header", &[("X-Api-Key", &key)], b"")
            .status,
        200
    );
    assert_eq!(
        gw.request("GET", "/k/header", &[("X-API-KEY", &key)], b"")
            .status,
        200,
        "X-API-KEY is the same header"
    );
    assert_eq!(gw.get(&format!("/k/query?api_key={key}")).status, 200);
    assert_eq!(
        gw.request("GET", "/t", &[("Authorization", &bearer_jwt)], b"")
            .status,
        200
    );

    let wrong_place = "The credentials are in the wrong place: the request carries";
    let wrong_kind = "The credentials are of the wrong kind: the request carries";
    /// (request target, headers, reason, detail).
    type Case<'a> = (String, Vec<(&'a str, &'a str)>, &'a str, String);
    let cases: Vec<Case<'_>> = vec![
        // An API key route reading X-Api-Key.
        (
            format!("/k/header?api_key={key}"),
            vec![],
            "misplaced",
            format!(
                "{wrong_place} an API key in the api_key query parameter; this route expects it in the X-Api-Key header."
            ),
        ),
        (
            format!("/k/header?key={key}"),
            vec![],
            "misplaced",
            format!(
                "{wrong_place} an API key in the key query parameter; this route expects it in the X-Api-Key header."
            ),
        ),
        (
            "/k/header".into(),
            vec![("Authorization", &bearer_key)],
            "misplaced",
            format!(
                "{wrong_place} an API key in the Authorization header; this route expects it in the X-Api-Key header."
            ),
        ),
        (
            "/k/header".into(),
            vec![("X-Api_Key", &key)],
            "misplaced",
            format!(
                "{wrong_place} an API key in the x-api_key header; this route expects it in the X-Api-Key header."
            ),
        ),
        (
            "/k/header".into(),
            vec![("Api-Key", &key)],
            "misplaced",
            format!(
                "{wrong_place} an API key in the api-key header; this route expects it in the X-Api-Key header."
            ),
        ),
        (
            "/k/header".into(),
            vec![("apikey", "some-other-vendors-key-0123456789")],
            "misplaced",
            format!(
                "{wrong_place} an API key in the apikey header; this route expects it in the X-Api-Key header."
            ),
        ),
        (
            "/k/header".into(),
            vec![("Authorization", &bearer_jwt)],
            "wrong_kind",
            format!(
                "{wrong_kind} a bearer token in the Authorization header; this route takes an API key in the X-Api-Key header."
            ),
        ),
        (
            "/k/header".into(),
            vec![("Authorization", "Basic dXNlcjpwYXNzd29yZA==")],
            "wrong_kind",
            format!(
                "{wrong_kind} `Basic` credentials in the Authorization header; this route takes an API key in the X-Api-Key header."
            ),
        ),
        (
            "/k/header".into(),
            vec![("X-Api-Key", &jwt)],
            "wrong_kind",
            format!(
                "{wrong_kind} a bearer token in the X-Api-Key header; this route takes an API key there."
            ),
        ),
        // An API key route reading the api_key query parameter.
        (
            "/k/query".into(),
            vec![("X-Api-Key", &key)],
            "misplaced",
            format!(
                "{wrong_place} an API key in the x-api-key header; this route expects it in the api_key query parameter."
            ),
        ),
        (
            format!("/k/query?apikey={key}"),
            vec![],
            "misplaced",
            format!(
                "{wrong_place} an API key in the apikey query parameter; this route expects it in the api_key query parameter."
            ),
        ),
        // A bearer route.
        (
            "/t".into(),
            vec![("Authorization", &bearer_key)],
            "wrong_kind",
            format!(
                "{wrong_kind} an API key in the Authorization header; this route takes a bearer token there."
            ),
        ),
        (
            "/t".into(),
            vec![("X-Api-Key", &key)],
            "wrong_kind",
            format!(
                "{wrong_kind} an API key in the x-api-key header; this route takes a bearer token in the Authorization header, as `Bearer <token>`."
            ),
        ),
        (
            format!("/t?access_token={jwt}"),
            vec![],
            "misplaced",
            format!(
                "{wrong_place} a bearer token in the access_token query parameter; this route expects it in the Authorization header, as `Bearer <token>`."
            ),
        ),
        (
            "/t".into(),
            vec![("X-Access-Token", &jwt)],
            "misplaced",
            format!(
                "{wrong_place} a bearer token in the x-access-token header; this route expects it in the Authorization header, as `Bearer <token>`."
            ),
        ),
    ];
    for (target, headers, reason, detail) in &cases {
        let r = gw.request("GET", target, headers, b"");
        let b = assert_problem(&r, "credentials_malformed");
        assert_eq!(b["reason"], *reason, "{target} {headers:?}: {b}");
        assert_eq!(b["detail"], *detail, "{target} {headers:?}");
        let text = r.text();
        assert!(
            !text.contains(&key[3..]) && !text.contains(&jwt[10..]),
            "the credential is never echoed: {text}"
        );
    }

    // The key in its place behind a scheme word.
    let b = assert_problem(
        &gw.request("GET", "/k/header", &[("X-Api-Key", &bearer_key)], b""),
        "credentials_malformed",
    );
    assert_eq!(b["reason"], "bad_characters");
    assert_eq!(
        b["detail"],
        "The API key in the X-Api-Key header is malformed: it starts with `Bearer `; send the key alone, without a scheme word."
    );

    // Nothing anywhere (nor a short value under a key name): still credentials_missing.
    let b = assert_problem(&gw.get("/k/header?page=2"), "credentials_missing");
    assert_eq!(
        b["detail"],
        "/k/header requires API key (in the X-Api-Key header) credentials and the request carried none."
    );
    assert_problem(&gw.get("/k/query?key=short"), "credentials_missing");
    // Ordinary parameters are not credentials (the attack probe's false positives): a sort
    // key, a page cursor, an X-Key header on a bearer route that got no token.
    assert_problem(
        &gw.get("/t?key=customer-sort-order-by-name"),
        "credentials_missing",
    );
    assert_problem(
        &gw.get("/t?token=b3BhcXVlLXBhZ2UtY3Vyc29yLTEyMw"),
        "credentials_missing",
    );
    assert_problem(
        &gw.request("GET", "/t", &[("X-Key", "0123456789abcdef0123")], b""),
        "credentials_missing",
    );
    let b = assert_problem(
        &gw.request("GET", "/t", &[("Accept", "application/json")], b""),
        "credentials_missing",
    );
    assert_eq!(
        b["detail"],
        "/t requires Bearer credentials and the request carried none."
    );
    let log = gw.log();
    assert!(
        !log.contains(&key[14..]),
        "an API key secret reached the log"
    );
}

#[test]
fn expires_in_is_a_duration() {
    // Issue 15, item 10: `keys add --expires-in` and the admin API's `expires_in` take the
    // one duration grammar; a bare number is seconds.
    let gw = Gateway::start_after("", |path| {
        cli_at(path, &["accounts", "add", "--id", "acme", "--name", "Acme"]);
    });
    let expiry = |out: &str| -> i64 {
        let line = out.lines().find(|l| l.starts_with("ck_")).unwrap();
        let text = line
            .split("expires ")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap();
        let (date, time) = text.trim_end_matches('Z').split_once('T').unwrap();
        let d: Vec<i64> = date.split('-').map(|x| x.parse().unwrap()).collect();
        let t: Vec<i64> = time.split(':').map(|x| x.parse().unwrap()).collect();
        // Days from the civil date (Howard Hinnant's algorithm).
        let (y, m) = if d[1] <= 2 {
            (d[0] - 1, d[1] + 9)
        } else {
            (d[0], d[1] - 3)
        };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let doy = (153 * m + 2) / 5 + d[2] - 1;
        let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
        days * 86_400 + t[0] * 3600 + t[1] * 60 + t[2]
    };
    for (flag, secs) in [("30d", 30 * 86_400), ("12h", 12 * 3600), ("90", 90)] {
        let before = candor_gateway::unix_now();
        let out = cli(
            &gw,
            &["keys", "add", "--account", "acme", "--expires-in", flag],
        );
        let at = expiry(&out);
        assert!(
            at >= before + secs && at <= candor_gateway::unix_now() + secs,
            "{flag}: {out}"
        );
    }
    for (flag, why) in [
        ("30x", "`x` is not a unit (ms, s, m, h, d)"),
        ("0", "`0` (0s) is too short."),
        ("-1d", "durations cannot be negative"),
        ("3651d", "`3651d` (3651d) is too long."),
        ("1.5h", "the number must be whole"),
        (
            "99999999999999999999999s",
            "it is more than 36500d (100 years)",
        ),
    ] {
        let (code, _, err) = candor(&[
            "keys",
            "add",
            "--account",
            "acme",
            &format!("--expires-in={flag}"),
            "--config",
            gw.config.to_str().unwrap(),
        ]);
        assert_eq!(code, 1, "{flag}");
        assert!(err.starts_with("error[validation_failed]: "), "{err}");
        assert!(
            err.contains(&format!("--expires-in `{flag}`")),
            "{flag}: {err}"
        );
        assert!(err.contains(why), "{flag}: {err}");
        assert!(
            err.contains("a bare number is seconds; from 1s to 3650d"),
            "{flag}: {err}"
        );
    }
    let (_, help, _) = candor(&["keys", "add", "--help"]);
    assert!(help.contains("a bare number is seconds"), "{help}");
}
