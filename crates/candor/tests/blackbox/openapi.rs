//! OpenAPI import (`[[openapi]]`): a realistic 3.1 document (fixtures/fleet.openapi.yaml,
//! 22 operations) becomes routes whose every request-shape mistake the gateway answers
//! with every field at fault, named by its operationId; security schemes become the
//! routes' authentication; `[openapi.operations.<id>]` overrides what the document says;
//! an OpenAPI 3.0 document is read in its dialect; `candor check` reports broken documents
//! and every unsupported part with its JSON pointer.

use crate::harness::*;
use serde_json::Value;

/// The fleet document's gateway: authentication left to the test that checks it.
fn fleet(extra: &str) -> (Gateway, Upstream) {
    let up = Upstream::start(Behaviour::Echo);
    let config = format!(
        r#"[[openapi]]
document = "fleet.openapi.yaml"
upstream = "{}"
auth = "none"
unknown_query = "refuse"
{extra}"#,
        up.url()
    );
    let gw = Gateway::start_after(&config, |c| {
        std::fs::copy(
            fixture("fleet.openapi.yaml"),
            c.with_file_name("fleet.openapi.yaml"),
        )
        .unwrap();
    });
    (gw, up)
}

/// The `errors[]` items as (in, where, reason, detail): `where` is the pointer of a body
/// problem, the name of the others (which have no pointer).
fn items(b: &Value) -> Vec<[String; 4]> {
    b["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
            [s("in"), at(e), s("reason"), s("detail")]
        })
        .collect()
}

fn row(a: &str, b: &str, c: &str, d: &str) -> [String; 4] {
    [a.into(), b.into(), c.into(), d.into()]
}

const JSON: (&str, &str) = ("Content-Type", "application/json");
const KEY: (&str, &str) = ("Idempotency-Key", "0b6f5c1e-8f6a-4f4e-9d1b-2a4c6e8f0a1b");

#[test]
fn a_valid_request_is_forwarded_to_the_operations_path() {
    let (gw, _up) = fleet("");
    let body = br#"{"serial": "ABC-123456", "model": "t100", "network": {"kind": "wifi", "ssid": "plant-3"}}"#;
    let r = gw.request("POST", "/v2/sites/site-ams01/devices", &[JSON, KEY], body);
    assert_eq!(r.status, 200, "{}", r.text());
    let echo = r.json();
    assert_eq!(echo["target"], "/v2/sites/site-ams01/devices", "{echo}");
    assert_eq!(echo["body_len"], body.len());
    // A readOnly property listed as required (the device's id) is not asked of a request.
    let r = gw.get("/v2/sites/site-ams01/devices?limit=5&status=online&status=offline");
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn every_problem_of_a_request_is_answered_at_once_in_a_stable_order() {
    let (gw, up) = fleet("");
    let body = br#"{"serial": "abc", "model": "t300", "label": "a label far longer than forty characters in all",
        "network": {"kind": "wifi"}, "tags": ["ok", ""], "colour": "red"}"#;
    let r = gw.request(
        "POST",
        "/v2/sites/Amsterdam/devices?dry_run=1",
        &[JSON],
        body,
    );
    let b = assert_problem(&r, "validation_failed");
    assert_eq!(b["operation"], "createDevice", "{b}");
    assert_eq!(
        items(&b),
        vec![
            row(
                "path",
                "site",
                "pattern",
                "must match ^site-[a-z0-9]{4,12}$; got \"Amsterdam\""
            ),
            row(
                "query",
                "dry_run",
                "unknown",
                "is not a parameter of this operation; this operation takes no query parameters"
            ),
            row("header", "idempotency-key", "required", "is required"),
            row(
                "body",
                "#/serial",
                "pattern",
                "must match ^[A-Z]{3}-[0-9]{6}$; got \"abc\""
            ),
            row(
                "body",
                "#/model",
                "enum",
                "expected one of \"t100\", \"t200\", \"g10\"; got \"t300\""
            ),
            row(
                "body",
                "#/label",
                "length",
                "must be at most 40 characters; has 47"
            ),
            row(
                "body",
                "#/network/ssid",
                "required",
                "is required (by the closest of the 2 allowed shapes, #1)"
            ),
            row(
                "body",
                "#/tags/1",
                "length",
                "must be at least 1 character; has 0"
            ),
            row(
                "body",
                "#/colour",
                "unknown",
                "is not a field of this object; the fields are id, serial, model, label, owner_email, network, tags"
            ),
        ],
        "{b}"
    );
    assert_eq!(
        up.hits.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the upstream saw nothing"
    );
}

#[test]
fn parameters_are_read_as_their_schemas_type() {
    let (gw, _up) = fleet("");
    let r = gw.get(
        "/v2/sites/site-ams01/devices?limit=0&status=online&status=lost&seen_since=yesterday&limt=3",
    );
    let b = assert_problem(&r, "validation_failed");
    assert_eq!(b["operation"], "listDevices");
    assert_eq!(
        items(&b),
        vec![
            row("query", "limit", "range", "must be at least 1; got 0"),
            row(
                "query",
                "status",
                "enum",
                "expected one of \"online\", \"offline\", \"retired\"; got \"lost\""
            ),
            row(
                "query",
                "seen_since",
                "format",
                "must be an RFC 3339 date-time such as 2026-12-03T14:00:00Z; got \"yesterday\""
            ),
            row(
                "query",
                "limt",
                "unknown",
                "is not a parameter of this operation; did you mean `limit`?"
            ),
        ],
        "{b}"
    );
    // A path parameter of another schema, and a required query parameter.
    let r = gw.request(
        "DELETE",
        "/v2/sites/site-ams01/devices/not-a-uuid",
        &[],
        b"",
    );
    let b = assert_problem(&r, "validation_failed");
    assert_eq!(b["operation"], "retireDevice");
    let got: Vec<[String; 4]> = items(&b);
    assert_eq!(got[0][..3], row("path", "device", "format", "")[..3], "{b}");
    assert_eq!(
        got[1],
        row("query", "reason", "required", "is required"),
        "{b}"
    );
    let r = gw.get("/v2/sites/site-ams01/alerts?acknowledged=maybe");
    let b = assert_problem(&r, "validation_failed");
    assert_eq!(
        items(&b),
        vec![row(
            "query",
            "acknowledged",
            "type",
            "expected true or false, got \"maybe\""
        )],
        "{b}"
    );
}

#[test]
fn concrete_paths_match_before_templated_ones() {
    let (gw, _up) = fleet("");
    // /devices/retired is its own operation, not a device id that is no uuid.
    let r = gw.get("/v2/sites/site-ams01/devices/retired");
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn media_types_come_from_the_document() {
    let (gw, _up) = fleet("");
    let device = "/v2/sites/site-ams01/devices/0b6f5c1e-8f6a-4f4e-9d1b-2a4c6e8f0a1b";
    let r = gw.request("GET", device, &[("Accept", "application/xml")], b"");
    let b = assert_problem(&r, "not_acceptable");
    assert_eq!(
        b["available"],
        serde_json::json!(["application/json"]),
        "{b}"
    );
    // Readings come as JSON or CSV.
    let readings = format!("{device}/readings?from=2026-01-01");
    let r = gw.request("GET", &readings, &[("Accept", "text/csv")], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    // A site is created from JSON only; a site is patched with a merge patch only.
    let r = gw.request("POST", "/v2/sites", &[("Content-Type", "text/plain")], b"x");
    let b = assert_problem(&r, "unsupported_media_type");
    assert_eq!(
        b["accepted"],
        serde_json::json!(["application/json"]),
        "{b}"
    );
    let r = gw.request("PATCH", "/v2/sites/site-ams01", &[JSON], b"{}");
    let b = assert_problem(&r, "unsupported_media_type");
    assert_eq!(
        b["accepted"],
        serde_json::json!(["application/merge-patch+json"]),
        "{b}"
    );
    let r = gw.request(
        "PATCH",
        "/v2/sites/site-ams01",
        &[("Content-Type", "application/merge-patch+json")],
        b"{}",
    );
    let b = assert_problem(&r, "validation_failed");
    assert_eq!(b["operation"], "updateSite");
    assert_eq!(
        items(&b),
        vec![row(
            "body",
            "#",
            "properties",
            "must have at least 1 field; has 0"
        )],
        "{b}"
    );
    // JSON that does not parse is malformed, whatever the schema.
    let r = gw.request("POST", "/v2/sites", &[JSON], b"{\"name\" = 1}");
    assert_problem(&r, "malformed_body");
}

#[test]
fn nested_bodies_and_one_of_are_explained_with_exact_pointers() {
    let (gw, _up) = fleet("");
    let site = br#"{"id": "ignored", "name": "A", "address": {"street": "", "city": "Delft", "country": "nl"}}"#;
    let r = gw.request("POST", "/v2/sites", &[JSON], site);
    let b = assert_problem(&r, "validation_failed");
    assert_eq!(b["operation"], "createSite");
    assert_eq!(
        items(&b),
        vec![
            row(
                "body",
                "#/name",
                "length",
                "must be at least 2 characters; has 1"
            ),
            row(
                "body",
                "#/address/street",
                "blank",
                "is blank; a value is required"
            ),
            row(
                "body",
                "#/address/country",
                "pattern",
                "must match ^[A-Z]{2}$; got \"nl\""
            ),
        ],
        "{b}"
    );
    let readings = br#"{"readings": [{"at": "2026-01-01T00:00:00Z", "metric": "t", "value": 1},
        {"at": "noon", "metric": "t", "value": "warm"}]}"#;
    let r = gw.request(
        "POST",
        "/v2/sites/site-ams01/devices/0b6f5c1e-8f6a-4f4e-9d1b-2a4c6e8f0a1b/readings",
        &[JSON],
        readings,
    );
    let b = assert_problem(&r, "validation_failed");
    let pointers: Vec<String> = items(&b).into_iter().map(|i| i[1].clone()).collect();
    assert_eq!(
        pointers,
        vec!["#/readings/1/at", "#/readings/1/value"],
        "{b}"
    );
    // A cellular network with a bad ICCID: the closest oneOf branch explains it.
    let body = br#"{"serial": "ABC-123456", "model": "g10", "network": {"kind": "cellular", "iccid": "12"}}"#;
    let r = gw.request(
        "PUT",
        "/v2/sites/site-ams01/devices/0b6f5c1e-8f6a-4f4e-9d1b-2a4c6e8f0a1b",
        &[JSON],
        body,
    );
    let b = assert_problem(&r, "validation_failed");
    assert_eq!(
        items(&b),
        vec![row(
            "body",
            "#/network/iccid",
            "pattern",
            "must match ^[0-9]{19,20}$; got \"12\" (by the closest of the 2 allowed shapes, #2)"
        )],
        "{b}"
    );
}

#[test]
fn security_schemes_become_the_routes_authentication() {
    let up = Upstream::start(Behaviour::Echo);
    let config = format!(
        "[[openapi]]\ndocument = \"fleet.openapi.yaml\"\nupstream = \"{}\"\n",
        up.url()
    );
    let gw = Gateway::start_after(&config, |c| {
        std::fs::copy(
            fixture("fleet.openapi.yaml"),
            c.with_file_name("fleet.openapi.yaml"),
        )
        .unwrap();
    });
    // oauth2 with scopes: a bearer token is required.
    let b = assert_problem(&gw.get("/v2/sites"), "credentials_missing");
    assert!(b["detail"].as_str().unwrap().contains("Bearer"), "{b}");
    // An API key in a header, and one in the query.
    let r = gw.request(
        "POST",
        "/v2/sites/site-ams01/devices/0b6f5c1e-8f6a-4f4e-9d1b-2a4c6e8f0a1b/readings",
        &[JSON],
        br#"{"readings": []}"#,
    );
    let b = assert_problem(&r, "credentials_missing");
    assert!(
        b["detail"]
            .as_str()
            .unwrap()
            .contains("the x-device-key header"),
        "{b}"
    );
    let b = assert_problem(
        &gw.get("/v2/reports/usage?month=2026-11"),
        "credentials_missing",
    );
    assert!(b["detail"].as_str().unwrap().contains("partner_key"), "{b}");
    // `security: []`: no credentials.
    let r = gw.get("/v2/health");
    assert_eq!(r.status, 200, "{}", r.text());
    // The plan says which stages each operation passes, with the scopes.
    let out = cli(&gw, &["check"]);
    assert!(out.contains("OK — 22 routes"), "{out}");
    let line = |name: &str| {
        out.lines()
            .find(|l| l.trim_start().starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in {out}"))
            .to_owned()
    };
    assert!(
        line("deleteSite").contains("authenticate → authorize"),
        "{out}"
    );
    assert!(!line("health").contains("authenticate"), "{out}");
}

#[test]
fn the_config_overrides_what_the_document_says() {
    let (gw, _up) = fleet(
        r#"
[openapi.operations.publishFirmware]
mode = "not_implemented"

[openapi.operations.listFirmware]
produces = ["application/json", "application/xml"]
"#,
    );
    let r = gw.request("POST", "/v2/firmware", &[JSON], b"{}");
    assert_problem(&r, "not_implemented");
    let r = gw.request("GET", "/v2/firmware", &[("Accept", "application/xml")], b"");
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn an_openapi_3_0_document_is_read_in_its_dialect() {
    let up = Upstream::start(Behaviour::Echo);
    let config = format!(
        "[[openapi]]\ndocument = \"pets.json\"\nupstream = \"{}\"\n",
        up.url()
    );
    let gw = Gateway::start_after(&config, |c| {
        std::fs::write(
            c.with_file_name("pets.json"),
            r##"{"openapi": "3.0.3", "info": {"title": "pets", "version": "1"},
              "servers": [{"url": "http://pets.example/{base}", "variables": {"base": {"default": "api"}}}],
              "paths": {"/pets": {"post": {"operationId": "addPet",
                "parameters": [{"name": "age", "in": "query",
                  "schema": {"type": "integer", "minimum": 0, "exclusiveMinimum": true}}],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Pet"}}}},
                "responses": {"200": {"description": "ok"}}}}},
              "components": {"schemas": {"Pet": {"type": "object", "required": ["name"],
                "properties": {"name": {"type": "string"}, "tag": {"type": "string", "nullable": true},
                  "kind": {"type": "string", "enum": ["cat", "dog"], "nullable": true}}}}}}"##,
        )
        .unwrap();
    });
    let r = gw.request(
        "POST",
        "/api/pets?age=1",
        &[JSON],
        br#"{"name": "Rex", "tag": null, "kind": null}"#,
    );
    assert_eq!(r.status, 200, "nullable allows null: {}", r.text());
    let r = gw.request("POST", "/api/pets?age=0", &[JSON], br#"{"tag": 3}"#);
    let b = assert_problem(&r, "validation_failed");
    assert_eq!(b["operation"], "addPet");
    let reasons: Vec<(String, String)> = items(&b).into_iter().map(|[_, p, r, _]| (p, r)).collect();
    assert_eq!(
        reasons,
        vec![
            ("age".into(), "range".into()),
            ("#/name".into(), "required".into()),
            ("#/tag".into(), "type".into()),
        ],
        "{b}"
    );
    let r = gw.request("POST", "/api/pets", &[JSON], b"");
    let b = assert_problem(&r, "validation_failed");
    assert_eq!(items(&b)[0][2], "required", "a required body: {b}");
}

#[test]
fn check_reports_every_unsupported_part_with_its_pointer() {
    let dir = temp_dir("openapi-check");
    std::fs::write(
        dir.join("api.yaml"),
        r#"openapi: 3.0.3
info: {title: t, version: '1'}
servers: [{url: /api}, {url: /api2}]
paths:
  /files/{name}.json:
    get: {responses: {'200': {description: x}}}
  /b:
    get:
      operationId: getB
      parameters:
        - {name: session, in: cookie, schema: {type: string}}
        - {name: ids, in: query, style: pipeDelimited, schema: {type: array, items: {type: integer}}}
        - {$ref: 'common.yaml#/components/parameters/X'}
      security: [{basic: []}]
      callbacks: {}
      responses: {'200': {description: x}}
    post:
      operationId: postB
      requestBody:
        content:
          application/xml: {schema: {type: object}}
          application/json: {schema: {type: object}}
      responses: {'200': {description: x}}
components:
  securitySchemes:
    basic: {type: http, scheme: basic}
"#,
    )
    .unwrap();
    let file = dir.join("candor.toml");
    let config = |extra: &str| {
        format!("[[openapi]]\ndocument = \"api.yaml\"\nupstream = \"http://127.0.0.1:9\"\n{extra}")
    };
    std::fs::write(&file, config("")).unwrap();
    let (code, out, _) = candor(&["check", "--config", file.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    let expected = [
        "api.yaml#/servers/1: not supported: routes are made on the first server's base path `/api`; this server's `/api2` is not routed",
        "api.yaml#/paths/~1files~1{name}.json: not supported: the path `/api/files/{name}.json`",
        "api.yaml#/paths/~1b/get/callbacks: not supported: callbacks",
        "api.yaml#/paths/~1b/get/parameters/0: not supported: the cookie parameter `session`",
        "api.yaml#/paths/~1b/get/parameters/1/style: not supported: the parameter `ids` in style `pipeDelimited`",
        "api.yaml#/paths/~1b/get/parameters/2: not supported: `$ref: common.yaml#/components/parameters/X` names another document",
        "api.yaml#/components/securitySchemes/basic: not supported: HTTP `basic` authentication",
        "api.yaml#/paths/~1b/post/requestBody/content/application~1xml/schema: not supported: a schema for application/xml bodies",
        "or unsupported = \"warn\" on this [[openapi]] entry",
    ];
    for e in expected {
        assert!(out.contains(e), "missing `{e}` in:\n{out}");
    }
    assert!(
        out.starts_with(&format!("{}: 8 problems", file.display())),
        "{out}"
    );
    // Told to warn: the same parts are notices, and the rest loads.
    std::fs::write(
        &file,
        config("unsupported = \"warn\"\n[openapi.operations.getC]\ntimeout = \"1s\"\n"),
    )
    .unwrap();
    let (code, out, _) = candor(&["check", "--config", file.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("openapi[0].operations.getC: `getC` is not an operationId of the document; did you mean `getB`?"), "{out}");
    std::fs::write(&file, config("unsupported = \"warn\"\n")).unwrap();
    let out = cli_at(&file, &["check"]);
    assert!(out.contains("OK — 2 routes"), "{out}");
    assert!(
        out.contains("8 notices: loaded, but not checked by the gateway:"),
        "{out}"
    );
    for e in &expected[..8] {
        assert!(out.contains(e), "missing `{e}` in:\n{out}");
    }
}

#[test]
fn check_reports_broken_documents() {
    let dir = temp_dir("openapi-broken");
    let file = dir.join("candor.toml");
    let check = |doc_name: &str, doc: &str| {
        std::fs::write(dir.join(doc_name), doc).unwrap();
        std::fs::write(
            &file,
            format!("[[openapi]]\ndocument = \"{doc_name}\"\nupstream = \"http://127.0.0.1:9\"\n"),
        )
        .unwrap();
        let (code, out, _) = candor(&["check", "--config", file.to_str().unwrap()]);
        assert_eq!(code, 1, "{out}");
        out
    };
    let out = check("s.yaml", "swagger: '2.0'\ninfo: {title: t}\npaths: {}\n");
    assert!(out.contains("is not an OpenAPI 3.0 or 3.1 document: it has Swagger \"2.0\"; convert it to OpenAPI 3 first"), "{out}");
    let out = check("y.yaml", "openapi: 3.1.0\npaths:\n  /a: [\n");
    assert!(out.contains("is not YAML:"), "{out}");
    assert!(out.contains("line 4"), "{out}");
    let out = check("j.json", "{\"openapi\": \"3.1.0\",}");
    assert!(
        out.contains("is not JSON: trailing comma at line 1 column 21"),
        "{out}"
    );
    let out = check(
        "r.yaml",
        r#"openapi: 3.1.0
info: {title: t, version: '1'}
paths:
  /a/{id}:
    get:
      operationId: a
      parameters:
        - $ref: '#/components/parameters/Nope'
        - {name: other, in: path, required: true}
      requestBody:
        content:
          application/json: {schema: {type: object, properties: {n: {type: integr}}}}
      responses: {'200': {description: x}}
      security: [{missing: []}]
"#,
    );
    // Found by the attack probe: a YAML alias bomb (7 levels of 10 aliases: 10^7 values
    // from 600 bytes) is refused before it is expanded; a cycle of pure `$ref`s, a
    // parameter twice in a path, characters a template cannot hold, an empty operationId.
    let mut bomb = String::from(
        "openapi: 3.1.0\nl0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n",
    );
    for i in 1..8 {
        let prev = format!("*l{}", i - 1);
        bomb.push_str(&format!("l{i}: &l{i} [{}]\n", vec![prev; 10].join(", ")));
    }
    let bombed = check("bomb.yaml", &bomb);
    assert!(
        bombed.contains("holds more than 2000000 values once its YAML aliases are expanded"),
        "{bombed}"
    );
    let cycles = check(
        "c.yaml",
        r#"openapi: 3.1.0
info: {title: t, version: '1'}
paths:
  /c:
    post:
      operationId: c
      requestBody: {content: {application/json: {schema: {$ref: '#/components/schemas/A'}}}}
      responses: {'200': {description: x}}
  /k/{x}/{x}:
    get: {responses: {'200': {description: x}}}
  /q?x=1:
    get: {responses: {'200': {description: x}}}
  /s/{a}-{b}.json:
    get: {responses: {'200': {description: x}}}
  /e:
    get: {operationId: '', responses: {'200': {description: x}}}
components:
  schemas:
    A: {$ref: '#/components/schemas/B'}
    B: {$ref: '#/components/schemas/A'}
"#,
    );
    for e in [
        "c.yaml#/paths/~1c/post/requestBody/content/application~1json/schema: `$ref: #/components/schemas/A` goes round `$ref`s that never reach a schema",
        "parameter `{x}` appears twice in `/k/{x}/{x}`",
        "the path `/q?x=1`: `?` has no place in an OpenAPI path template",
        "segment `{a}-{b}.json` mixes text and a parameter",
        "c.yaml#/paths/~1e/get/operationId: an operationId must be a name",
    ] {
        assert!(cycles.contains(e), "missing `{e}` in:\n{cycles}");
    }
    for e in [
        "r.yaml#/paths/~1a~1{id}/get/parameters/0: `$ref: #/components/parameters/Nope` names nothing in the document",
        "r.yaml#/paths/~1a~1{id}/get/parameters/1: the path has no parameter {other}",
        "r.yaml#/paths/~1a~1{id}/get/requestBody/content/application~1json/schema: the schema does not compile:",
        "r.yaml#/paths/~1a~1{id}/get/security/0: the security scheme `missing` is not in #/components/securitySchemes",
    ] {
        assert!(out.contains(e), "missing `{e}` in:\n{out}");
    }
}

#[test]
fn candor_openapi_prints_the_catalog_as_components() {
    let (code, out, err) = candor(&["openapi"]);
    assert_eq!(code, 0, "{err}");
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let c = &doc["components"];
    let codes = c["schemas"]["CandorProblem"]["properties"]["code"]["enum"]
        .as_array()
        .unwrap();
    assert!(codes.len() > 40, "{}", codes.len());
    for code in codes {
        let code = code.as_str().unwrap();
        let example = &c["examples"][format!("candor_{code}")]["value"];
        assert_eq!(example["code"], code, "{example}");
        assert!(
            example["type"]
                .as_str()
                .unwrap()
                .ends_with(&format!("/errors/{code}")),
            "{example}"
        );
        let response = &c["responses"][format!("candor_{code}")];
        assert!(
            response["content"]["application/problem+json"]["schema"]["$ref"].is_string(),
            "{response}"
        );
    }
    // Codes a client may retry after a delay say how long in Retry-After.
    assert!(c["responses"]["candor_service_unavailable"]["headers"]["Retry-After"].is_object());
    assert!(c["responses"]["candor_validation_failed"]["headers"]["Retry-After"].is_null());
}

#[test]
fn candor_openapi_spec_lists_what_each_operation_can_get() {
    let (code, out, err) = candor(&[
        "openapi",
        "--spec",
        fixture("fleet.openapi.yaml").to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let doc: Value = serde_json::from_str(&out).unwrap();
    let codes = |path: &str, method: &str| -> Vec<String> {
        let op = &doc["paths"][path][method];
        let mut all: Vec<String> = op["responses"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|r| r["x-candor-codes"].as_array().cloned().unwrap_or_default())
            .map(|c| c.as_str().unwrap().to_owned())
            .collect();
        all.sort();
        all
    };
    let create = codes("/sites/{site}/devices", "post");
    for c in [
        "validation_failed",
        "credentials_missing",
        "insufficient_scope",
        "unsupported_media_type",
        "malformed_body",
        "not_acceptable",
        "upstream_timeout",
    ] {
        assert!(create.contains(&c.to_owned()), "{c} missing: {create:?}");
    }
    let health = codes("/health", "get");
    for c in [
        "credentials_missing",
        "validation_failed",
        "unsupported_media_type",
        "insufficient_scope",
    ] {
        assert!(!health.contains(&c.to_owned()), "{c} on health: {health:?}");
    }
    let usage = codes("/reports/usage", "get");
    assert!(usage.contains(&"api_key_invalid".to_owned()), "{usage:?}");
    assert!(!usage.contains(&"token_expired".to_owned()), "{usage:?}");
    // The document's own responses stay; the gateway's are added beside them.
    let r = &doc["paths"]["/sites/{site}/devices"]["post"]["responses"];
    assert_eq!(r["201"]["description"], "created");
    assert_eq!(
        r["400"]["content"]["application/problem+json"]["examples"]["validation_failed"]["$ref"],
        "#/components/examples/candor_validation_failed"
    );
    assert_eq!(
        doc["paths"]["/sites/{site}/devices"]["post"]["x-candor-route"],
        "createDevice"
    );
    assert!(
        doc["components"]["schemas"]["Device"].is_object(),
        "the API's own components stay"
    );
    assert!(doc["components"]["schemas"]["CandorProblem"].is_object());
}

#[test]
fn a_recursive_schema_checks_every_level() {
    let up = Upstream::start(Behaviour::Echo);
    let config = format!(
        "[[openapi]]\ndocument = \"tree.yaml\"\nupstream = \"{}\"\n",
        up.url()
    );
    let gw = Gateway::start_after(&config, |c| {
        std::fs::write(
            c.with_file_name("tree.yaml"),
            "openapi: 3.1.0\ninfo: {title: t, version: '1'}\npaths:\n  /tree:\n    post:\n      operationId: putTree\n      requestBody:\n        required: true\n        content:\n          application/json: {schema: {$ref: '#/components/schemas/Node'}}\n      responses: {200: {description: ok}}\ncomponents:\n  schemas:\n    Node:\n      type: object\n      required: [name]\n      properties:\n        name: {type: string}\n        children: {type: array, items: {$ref: '#/components/schemas/Node'}}\n",
        )
        .unwrap();
    });
    let ok = br#"{"name": "a", "children": [{"name": "b", "children": [{"name": "c"}]}]}"#;
    assert_eq!(gw.request("POST", "/tree", &[JSON], ok).status, 200);
    let bad = br#"{"name": "a", "children": [{"name": "b", "children": [{"nam": "c"}]}]}"#;
    let b = assert_problem(
        &gw.request("POST", "/tree", &[JSON], bad),
        "validation_failed",
    );
    assert_eq!(items(&b)[0][1], "#/children/0/children/0/name", "{b}");
}
