//! `examples/ixon.toml` against seed 004 (IXON APIv2): every JSON body the seed shows
//! (`Api-Company` missing or invalid; the six Authorization diagnostics) is produced by a real
//! request and compared for JSON equality; the server error the seed names (504 after 60 s)
//! too, with the route's timeout shortened for the test.

use crate::harness::{FORM, Gateway, basic, cli_at, form, value_of};
use crate::seeds::{assert_all_rows_covered, example, seed, seed_bodies, start};
use serde_json::{Value, json};

const COMPANY: (&str, &str) = ("Api-Company", "1234-5678-9012-3456");

struct Ixon {
    gw: Gateway,
    token: String,
    second_factor: (String, String),
}

fn ixon(config: &str) -> Ixon {
    let (mut plain, mut two) = (String::new(), String::new());
    let gw = start(config, |path| {
        cli_at(path, &["accounts", "add", "--id", "acme", "--name", "Acme"]);
        plain = cli_at(path, &["clients", "add", "--account", "acme"]);
        two = cli_at(
            path,
            &["clients", "add", "--account", "acme", "--second-factor"],
        );
    });
    let auth = basic(
        &value_of(&plain, "client_id:"),
        &value_of(&plain, "client_secret:"),
    );
    let r = gw.request(
        "POST",
        "/oauth/token",
        &[FORM, ("Authorization", &auth)],
        form(&[("grant_type", "client_credentials")]).as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    Ixon {
        token: r.json()["access_token"].as_str().unwrap().to_owned(),
        second_factor: (
            value_of(&two, "client_id:"),
            value_of(&two, "client_secret:"),
        ),
        gw,
    }
}

/// The seed's error body of `message` (and `property`, when it has one).
fn seed_body(bodies: &[Value], message: &str, property: Option<&str>) -> Value {
    bodies
        .iter()
        .find(|b| {
            b["data"][0]["message"] == message
                && b["data"][0].get("propertyName").and_then(Value::as_str) == property
        })
        .unwrap_or_else(|| panic!("the seed shows no body for {message} {property:?}"))
        .clone()
}

#[test]
fn every_body_the_ixon_seed_shows_is_a_real_answer() {
    let config = example("ixon", "18004");
    let x = ixon(&config);
    let gw = &x.gw;
    let devices = "/v1/customers/acme/devices";
    let bearer = format!("Bearer {}", x.token);
    let get = |headers: &[(&str, &str)]| gw.request("GET", devices, headers, b"");
    let ok = get(&[("Authorization", &bearer), COMPANY]);
    assert_eq!(ok.status, 200, "{}", ok.text());

    // A token whose signature is not the gateway's: still well formed, not valid.
    let mut forged = x.token.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    let forged = format!("Bearer {forged}");
    let too_long = format!("Bearer {}", "a".repeat(9000));
    let (id, secret) = &x.second_factor;
    let two_factor = gw.request(
        "POST",
        "/oauth/token",
        &[FORM, ("Authorization", &basic(id, secret))],
        form(&[("grant_type", "client_credentials")]).as_bytes(),
    );
    let answers = vec![
        (
            ("Required header", Some("Api-Company")),
            get(&[("Authorization", &bearer)]),
        ),
        (
            ("Invalid value", Some("Api-Company")),
            get(&[("Authorization", &bearer), ("Api-Company", "not-a-company")]),
        ),
        (
            ("Invalid value", Some("Authorization")),
            get(&[("Authorization", &forged), COMPANY]),
        ),
        (("2FA is required", None), two_factor),
        (
            ("Value is too short", Some("Authorization")),
            get(&[("Authorization", "Bearer abc"), COMPANY]),
        ),
        (
            ("Value is too long", Some("Authorization")),
            get(&[("Authorization", &too_long), COMPANY]),
        ),
        (
            (
                "Authorization must start with a type and have a credentials",
                Some("Authorization"),
            ),
            get(&[("Authorization", "abcdefghijklmnopqrstuvwxyz"), COMPANY]),
        ),
        (
            (
                "Value does not match regex expression",
                Some("Authorization"),
            ),
            get(&[
                ("Authorization", "Bearer abcdefghijklmnop$qrstuvwxyz"),
                COMPANY,
            ]),
        ),
    ];
    let bodies = seed_bodies(&seed("004"));
    assert_eq!(bodies.len(), 8, "the seed shows eight bodies");
    let mut covered = Vec::new();
    for ((message, property), r) in &answers {
        assert!(
            r.status >= 400 && r.status < 500,
            "a content error: {}",
            r.text()
        );
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(
            r.json(),
            seed_body(&bodies, message, *property),
            "{message}"
        );
        covered.push(
            format!("{message} {}", property.unwrap_or(""))
                .trim()
                .to_owned(),
        );
    }
    assert_eq!(answers[0].1.status, 400);
    assert_eq!(answers[2].1.status, 401);
    // Every body the seed shows was produced.
    for b in &bodies {
        let row = format!(
            "{} {}",
            b["data"][0]["message"].as_str().unwrap(),
            b["data"][0]["propertyName"].as_str().unwrap_or("")
        );
        assert!(
            covered.contains(&row.trim().to_owned()),
            "{row} not produced"
        );
    }
    let mut rows: Vec<String> = covered.clone();
    rows.push("504 Gateway Timeout".into());
    covered.push(gateway_timeout());
    assert_all_rows_covered("004 (IXON)", &rows, &covered);
}

/// The 504 of a request that takes longer than the route waits: the example waits 60 s;
/// here 1 s, for a diagnostics session of 5 s.
fn gateway_timeout() -> String {
    let config = example("ixon", "18004");
    assert!(
        config.contains("timeout = \"60s\""),
        "the example waits 60 s"
    );
    let x = ixon(&config.replace("timeout = \"60s\"", "timeout = \"1s\""));
    let bearer = format!("Bearer {}", x.token);
    let created = x.gw.request(
        "POST",
        "/v1/customers/acme/devices",
        &[
            ("Authorization", &bearer),
            COMPANY,
            ("Content-Type", "application/json"),
        ],
        br#"{"name":"Pump","serial":"SN-0001","kind":"sensor"}"#,
    );
    assert_eq!(created.status, 201, "{}", created.text());
    let r = x.gw.request(
        "GET",
        "/v1/customers/acme/devices/1/diagnostics?duration=5",
        &[("Authorization", &bearer)],
        b"",
    );
    assert_eq!(r.status, 504, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({"type": "Error", "data": [{"message": "Gateway Timeout"}], "moreAfter": null, "status": "error"})
    );
    "504 Gateway Timeout".into()
}
