//! Request validation (`[routes.validate]`): path, query and header parameters and the JSON
//! body checked against the route's contract, every problem in one `validation_failed` 400
//! with exact `errors[]` items in a stable order, before the upstream sees the request; and
//! `candor check` on schemas that do not compile.

use crate::harness::*;
use serde_json::{Value, json};
use std::sync::atomic::Ordering;

const DEVICE_SCHEMA: &str = r#"{
  "type": "object",
  "required": ["name", "serial", "owner"],
  "additionalProperties": false,
  "properties": {
    "name": {"type": "string", "minLength": 2, "maxLength": 40},
    "serial": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{4}$"},
    "owner": {"type": "string", "format": "email"},
    "kind": {"enum": ["sensor", "gateway"]},
    "installed": {"type": "string", "format": "date-time"},
    "location": {
      "type": "object",
      "required": ["lat", "lon"],
      "properties": {
        "lat": {"type": "number", "minimum": -90, "maximum": 90},
        "lon": {"type": "number", "minimum": -180, "maximum": 180}
      }
    },
    "ports": {"type": "array", "maxItems": 4, "items": {
      "type": "object", "required": ["number"],
      "properties": {"number": {"type": "integer", "minimum": 1, "maximum": 65535}}
    }}
  }
}"#;

fn route(up: &Upstream) -> String {
    format!(
        r#"[[routes]]
name = "devices"
path = "/v1/customers/{{customer}}/devices"
methods = ["GET", "POST"]
upstream = "{}"

[routes.validate]
body = "device.schema.json"
body_required = false
unknown_query = "refuse"

[[routes.validate.params]]
in = "path"
name = "customer"
schema = {{ type = "string", pattern = "^c[0-9]+$" }}

[[routes.validate.params]]
in = "query"
name = "limit"
schema = {{ type = "integer", minimum = 1, maximum = 100 }}

[[routes.validate.params]]
in = "query"
name = "since"
schema = {{ type = "string", format = "date" }}

[[routes.validate.params]]
in = "header"
name = "Api-Company"
required = true
schema = {{ type = "string", enum = ["acme", "globex"] }}
"#,
        up.url()
    )
}

fn gateway() -> (Gateway, Upstream) {
    let up = Upstream::start(Behaviour::Echo);
    let gw = Gateway::start_after(&route(&up), |config| {
        std::fs::write(config.with_file_name("device.schema.json"), DEVICE_SCHEMA).unwrap();
    });
    (gw, up)
}

/// The `errors[]` items as (in, where, reason, detail): `where` is the pointer of a body
/// problem, the name of the others (which have no pointer).
fn items(b: &Value) -> Vec<(String, String, String, String)> {
    b["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
            (s("in"), at(e), s("reason"), s("detail"))
        })
        .collect()
}

fn row(a: &str, b: &str, c: &str, d: &str) -> (String, String, String, String) {
    (a.into(), b.into(), c.into(), d.into())
}

#[test]
fn a_valid_request_is_forwarded() {
    let (gw, up) = gateway();
    let body = br#"{"name": "Boiler", "serial": "ABC-1234", "owner": "ada@example.com",
        "location": {"lat": 52.1, "lon": 4.3}, "ports": [{"number": 8080}]}"#;
    let r = gw.request(
        "POST",
        "/v1/customers/c42/devices?limit=10",
        &[
            ("Content-Type", "application/json"),
            ("Api-Company", "acme"),
        ],
        body,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let echo: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(echo["body_len"], body.len(), "forwarded whole: {echo}");
    let r = gw.request(
        "GET",
        "/v1/customers/c42/devices",
        &[("Api-Company", "globex")],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(up.heads().len() == 2, "{:?}", up.heads());
}

#[test]
fn every_problem_of_a_request_is_listed_in_order() {
    let (gw, up) = gateway();
    let body = br#"{
  "name": " ",
  "serial": "abc",
  "owner": "ada.example.com",
  "kind": "phone",
  "installed": "yesterday",
  "location": {"lat": 91},
  "ports": [{"number": 80}, {"number": 0}, {"number": "22"}],
  "colour": "red"
}"#;
    let r = gw.request(
        "POST",
        "/v1/customers/42/devices?limit=500&since=2026-13-01&limt=5",
        &[("Content-Type", "application/json")],
        body,
    );
    let b = assert_problem(&r, "validation_failed");
    assert_eq!(r.status, 400);
    assert_eq!(b["error_count"], 15, "{b:#}");
    assert_eq!(
        items(&b),
        [
            row(
                "path",
                "customer",
                "pattern",
                "must match ^c[0-9]+$; got \"42\""
            ),
            row("query", "limit", "range", "must be at most 100; got 500"),
            row(
                "query",
                "since",
                "format",
                "must be a date such as 2026-12-03; got \"2026-13-01\""
            ),
            row(
                "query",
                "limt",
                "unknown",
                "is not a parameter of this operation; did you mean `limit`?"
            ),
            row("header", "api-company", "required", "is required"),
            row("body", "#/name", "blank", "is blank; a value is required"),
            row(
                "body",
                "#/serial",
                "pattern",
                "must match ^[A-Z]{3}-[0-9]{4}$; got \"abc\""
            ),
            row(
                "body",
                "#/owner",
                "format",
                "must be an e-mail address; the value has no '@'"
            ),
            row(
                "body",
                "#/kind",
                "enum",
                "expected one of \"sensor\", \"gateway\"; got \"phone\""
            ),
            row(
                "body",
                "#/installed",
                "format",
                "must be an RFC 3339 date-time such as 2026-12-03T14:00:00Z; got \"yesterday\""
            ),
            row("body", "#/location/lon", "required", "is required"),
            row(
                "body",
                "#/location/lat",
                "range",
                "must be at most 90; got 91"
            ),
            row(
                "body",
                "#/ports/1/number",
                "range",
                "must be at least 1; got 0"
            ),
            row(
                "body",
                "#/ports/2/number",
                "type",
                "expected integer, got string \"22\""
            ),
            row(
                "body",
                "#/colour",
                "unknown",
                "is not a field of this object; the fields are name, serial, owner, kind, installed, location, ports"
            ),
        ]
    );
    assert!(
        b["detail"]
            .as_str()
            .unwrap()
            .starts_with("The request has 15 problems: customer must match ^c[0-9]+$; got \"42\"; limit must be at most 100; got 500; since must be"),
        "{}",
        b["detail"]
    );
    assert_eq!(b["retry"], "never");
    assert_eq!(
        up.hits.load(Ordering::Relaxed),
        0,
        "nothing reached the upstream"
    );
}

#[test]
fn parameters_without_a_body_are_answered_at_once() {
    let (gw, up) = gateway();
    let r = gw.request(
        "GET",
        "/v1/customers/c1/devices?limit=ten&limit=2",
        &[("Api-Company", "initech")],
        b"",
    );
    let b = assert_problem(&r, "validation_failed");
    assert_eq!(
        items(&b),
        [
            row(
                "query",
                "limit",
                "repeated",
                "is sent 2 times; it takes one value"
            ),
            row(
                "header",
                "api-company",
                "enum",
                "expected one of \"acme\", \"globex\"; got \"initech\""
            ),
        ]
    );
    let r = gw.request(
        "GET",
        "/v1/customers/c1/devices?limit=ten",
        &[("Api-Company", "acme")],
        b"",
    );
    let b = assert_problem(&r, "validation_failed");
    assert_eq!(
        items(&b),
        [row(
            "query",
            "limit",
            "type",
            "expected an integer, got \"ten\""
        )]
    );
    // Issue 15, item 12: one problem, not "1 problem(s)".
    assert_eq!(
        b["detail"],
        "The request has 1 problem: limit expected an integer, got \"ten\""
    );
    assert_eq!(up.hits.load(Ordering::Relaxed), 0);
}

#[test]
fn an_unreadable_header_is_invalid_not_missing() {
    // The finding: an Api-Company header of non-ASCII bytes was reported as missing.
    let (gw, _up) = gateway();
    let r = gw.send(
        b"GET /v1/customers/c1/devices HTTP/1.1\r\nHost: x\r\nApi-Company: acm\xe9\r\nConnection: close\r\n\r\n",
    );
    let b = assert_problem(&r, "validation_failed");
    assert_eq!(
        items(&b),
        [row(
            "header",
            "api-company",
            "invalid",
            "is present but unreadable: its value holds bytes that are not visible ASCII"
        )]
    );
}

#[test]
fn a_body_that_does_not_parse_is_malformed_not_invalid() {
    let (gw, _up) = gateway();
    let r = gw.request(
        "POST",
        "/v1/customers/c1/devices",
        &[
            ("Content-Type", "application/json"),
            ("Api-Company", "acme"),
        ],
        b"{\"name\" = \"x\"}",
    );
    let b = assert_problem(&r, "malformed_body");
    assert_eq!(b["column"], 9, "{b}");
    // And a body in another type than the route's JSON.
    let r = gw.request(
        "POST",
        "/v1/customers/c1/devices",
        &[("Content-Type", "application/xml"), ("Api-Company", "acme")],
        b"<device/>",
    );
    assert_problem(&r, "unsupported_media_type");
}

#[test]
fn problems_are_capped_with_the_total_stated() {
    let up = Upstream::start(Behaviour::Echo);
    let gw = Gateway::start(&one_route(
        "/items",
        &up.url(),
        "[routes.validate]\nmax_errors = 3\nbody = { type = \"array\", items = { type = \"integer\" } }\n",
    ));
    let r = gw.request(
        "POST",
        "/items",
        &[("Content-Type", "application/json")],
        br#"["a", "b", "c", "d", "e", 6, "g"]"#,
    );
    let b = assert_problem(&r, "validation_failed");
    assert_eq!(b["errors"].as_array().unwrap().len(), 3);
    assert_eq!(b["error_count"], 6);
    assert_eq!(b["errors"][0]["pointer"], "#/0");
    assert_eq!(b["errors"][2]["pointer"], "#/2");
    assert!(
        b["detail"]
            .as_str()
            .unwrap()
            .ends_with("and 3 more (errors lists the first 3 of 6)"),
        "{}",
        b["detail"]
    );
    // A route whose body is required, sent none.
    let r = gw.request("POST", "/items", &[], b"");
    let b = assert_problem(&r, "validation_failed");
    assert_eq!(
        items(&b),
        [row(
            "body",
            "#",
            "required",
            "is required: this operation takes a JSON body"
        )]
    );
    assert_eq!(up.hits.load(Ordering::Relaxed), 0);
    let r = gw.request(
        "POST",
        "/items",
        &[("Content-Type", "application/json")],
        b"[1, 2]",
    );
    assert_eq!(r.status, 200);
    assert_eq!(json!(r.status), json!(200));
}

#[test]
fn a_route_body_limit_applies_before_validation() {
    let up = Upstream::start(Behaviour::Echo);
    let gw = Gateway::start(&one_route(
        "/small",
        &up.url(),
        "max_body_bytes = 16\n[routes.validate]\nbody = { type = \"object\" }\n",
    ));
    let r = gw.request(
        "POST",
        "/small",
        &[("Content-Type", "application/json")],
        br#"{"a": "0123456789abcdef"}"#,
    );
    let b = assert_problem(&r, "payload_too_large");
    assert_eq!(b["limit"], 16, "{b}");
}

#[test]
fn check_reports_schemas_that_do_not_compile() {
    let dir = temp_dir("schemas");
    std::fs::write(
        dir.join("bad.json"),
        r#"{"type": "object", "properties": {"n": {"minimum": "one"}}}"#,
    )
    .unwrap();
    std::fs::write(dir.join("notjson.json"), "{type: object}").unwrap();
    let file = dir.join("candor.toml");
    std::fs::write(
        &file,
        r#"[[routes]]
name = "a"
path = "/a/{id}"
upstream = "http://127.0.0.1:9"
[routes.validate]
body = "bad.json"
[[routes.validate.params]]
in = "path"
name = "idd"
[[routes.validate.params]]
in = "querry"
name = "x"
[[routes.validate.params]]
in = "query"
name = "y"
schema = { type = "integr" }

[[routes]]
name = "b"
path = "/b"
upstream = "http://127.0.0.1:9"
max_body_bytes = 99999999999
[routes.validate]
body = "notjson.json"

[[routes]]
name = "c"
path = "/c"
upstream = "http://127.0.0.1:9"
accepts = ["application/json", "application/x-www-form-urlencoded"]
[routes.validate]
body = { type = "object" }
"#,
    )
    .unwrap();
    let (code, out, _) = candor(&["check", "--config", file.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    let bad = dir.join("bad.json").display().to_string();
    for expected in [
        format!("routes[0].validate.body: {bad}: the schema does not compile: "),
        "(at #/properties/n/minimum)".to_string(),
        "routes[2].validate.body: a body schema checks JSON bodies, but the route also accepts application/x-www-form-urlencoded".into(),
        "routes[0].validate.params[0].name: the path has no parameter {idd}".into(),
        "routes[0].validate.params[1].in: unknown location `querry`; did you mean `query`?".into(),
        "routes[0].validate.params[2].schema: the schema does not compile:".into(),
        "routes[1].max_body_bytes: 99999999999 is over limits.max_body_bytes (10485760)".into(),
        "routes[1].validate.body: the schema file".into(),
        "is not JSON".into(),
    ] {
        assert!(out.contains(&expected), "missing `{expected}` in:\n{out}");
    }
}

/// Found by the attack probe of validation, each with its bytes.
#[test]
fn what_the_attack_probe_found_in_validation() {
    let (gw, up) = gateway();
    let post = |body: &[u8]| {
        gw.request(
            "POST",
            "/v1/customers/c42/devices",
            &[
                ("Content-Type", "application/json"),
                ("Api-Company", "acme"),
            ],
            body,
        )
    };
    // Bodies JSON allows but the contract cannot check were forwarded unchecked: a number
    // out of range, nesting deeper than 128, a lone surrogate; and a repeated key (the
    // upstream may read the other one than was checked).
    let deep = format!(
        "{{\"name\": \"ab\", \"z\": {}1{}}}",
        "[".repeat(129),
        "]".repeat(129)
    );
    for (body, reason) in [
        (
            br#"{"name": "ab", "serial": "nope", "z": 1e400}"#.to_vec(),
            "a number beyond what the gateway can check",
        ),
        (deep.into_bytes(), "nested deeper than 128 levels"),
        (
            br#"{"name": "ab", "z": "\ud800"}"#.to_vec(),
            "half a surrogate pair",
        ),
        (
            br#"{"name": "ab", "serial": "DROP TABLE", "serial": "ABC-1234", "owner": "a@b.c"}"#
                .to_vec(),
            "the key `serial` appears twice in one object",
        ),
    ] {
        let b = assert_problem(&post(&body), "malformed_body");
        assert!(
            b["detail"].as_str().unwrap().contains(reason),
            "{reason}: {b}"
        );
    }
    assert_eq!(
        up.hits.load(Ordering::SeqCst),
        0,
        "nothing reached the upstream"
    );

    // A body key of megabytes is not quoted back whole.
    let key = "k".repeat(1_000_000);
    let r = post(
        format!(r#"{{"name": "ab", "serial": "ABC-1234", "owner": "a@b.c", "{key}": 1}}"#)
            .as_bytes(),
    );
    let b = assert_problem(&r, "validation_failed");
    assert!(r.body.len() < 10_000, "{} bytes", r.body.len());
    assert!(
        b["errors"][0]["pointer"].as_str().unwrap().ends_with('…'),
        "{}",
        b["errors"][0]
    );

    // Millions of wrong items: the first problem, and that the rest are not listed.
    let ports = vec![r#"{"number": 0}"#; 200_000].join(",");
    let r = post(
        format!(r#"{{"name": "ab", "serial": "ABC-1234", "owner": "a@b.c", "ports": [{ports}]}}"#)
            .as_bytes(),
    );
    let b = assert_problem(&r, "validation_failed");
    let got: Vec<(String, String)> = items(&b).into_iter().map(|(_, p, r, _)| (p, r)).collect();
    assert_eq!(
        got,
        vec![
            ("#/ports".into(), "items".into()),
            ("#".into(), "not_all_listed".into())
        ],
        "{b}"
    );
}

#[test]
fn secrets_are_not_quoted_however_deep() {
    let up = Upstream::start(Behaviour::Echo);
    let gw = Gateway::start(&one_route(
        "/s",
        &up.url(),
        r#"[routes.validate.body]
type = "object"
[routes.validate.body.properties.password]
type = "array"
items = { type = "integer" }
[routes.validate.body.properties.user]
type = "string"
[routes.validate.body.properties.pick]
enum = [1, 2]
[routes.validate.body.properties.pw]
type = "string"
format = "password"
pattern = "^x"
"#,
    ));
    for body in [
        r#"{"password": ["hunter2", 5]}"#,
        r#"{"user": {"password": "hunter2"}}"#,
        r#"{"pick": {"token": "hunter2"}}"#,
        r#"{"pw": "hunter2"}"#,
    ] {
        let r = gw.request(
            "POST",
            "/s",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        );
        assert_problem(&r, "validation_failed");
        assert!(!r.text().contains("hunter2"), "{body}: {}", r.text());
    }
}
