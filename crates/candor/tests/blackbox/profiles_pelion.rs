//! `examples/pelion.toml` against seed 002 (Pelion Device Management API): every row of the
//! seed's table of general error codes and types produced by a real request, checked for
//! status, code, type and message; the seed's error model compared with a real body. Then
//! how a profile is chosen (route, host, listener) and what `candor check` says of a bad one.

use crate::harness::{
    Gateway, Response, assert_problem, check_reports, cli_at, form, temp_dir, value_of,
};
use crate::seeds::{assert_all_rows_covered, example, seed, seed_bodies, start};
use serde_json::Value;

/// One row of the seed's table: status, type, description.
struct Row {
    status: u16,
    kind: String,
    message: String,
}

/// The seed's table: `400 | bad_request |` then `Description. | Troubleshooting |`.
fn seed_rows() -> Vec<Row> {
    let text = seed("002");
    let lines: Vec<&str> = text.lines().collect();
    let mut rows = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some((status, rest)) = line.split_once(" | ") else {
            continue;
        };
        if status.len() != 3 || !status.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let kind = rest.trim().trim_end_matches('|').trim().to_owned();
        let message = lines[i + 1].split(" |").next().unwrap().trim().to_owned();
        rows.push(Row {
            status: status.parse().unwrap(),
            kind,
            message,
        });
    }
    assert_eq!(rows.len(), 17, "the seed's table has 17 rows");
    rows
}

/// The example, with accounts `acme` (a client with `devices:read`), `globex`, and `small`
/// (a quota of one request a day, and a client).
struct Pelion {
    gw: Gateway,
    acme: (String, String),
    small: (String, String),
}

fn pelion() -> Pelion {
    let config = example("pelion", "18002");
    let (mut acme, mut small) = (String::new(), String::new());
    let gw = start(&config, |path| {
        cli_at(path, &["accounts", "add", "--id", "acme", "--name", "Acme"]);
        cli_at(
            path,
            &["accounts", "add", "--id", "globex", "--name", "Globex"],
        );
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
                "1",
            ],
        );
        acme = cli_at(
            path,
            &[
                "clients",
                "add",
                "--account",
                "acme",
                "--scopes",
                "devices:read",
            ],
        );
        small = cli_at(path, &["clients", "add", "--account", "small"]);
    });
    let pair = |out: &str| (value_of(out, "client_id:"), value_of(out, "client_secret:"));
    Pelion {
        acme: pair(&acme),
        small: pair(&small),
        gw,
    }
}

impl Pelion {
    fn token(&self, (id, secret): &(String, String)) -> String {
        let auth = crate::harness::basic(id, secret);
        let r = self.gw.request(
            "POST",
            "/oauth/token",
            &[crate::harness::FORM, ("Authorization", &auth)],
            form(&[("grant_type", "client_credentials")]).as_bytes(),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        format!("Bearer {}", r.json()["access_token"].as_str().unwrap())
    }
}

/// The body of a Pelion error, checked for the envelope's members, its request id and
/// media type; returned for the row's own checks.
fn pelion_error(r: &Response) -> Value {
    assert_eq!(
        r.header("content-type"),
        Some("application/json"),
        "{}",
        r.text()
    );
    let b = r.json();
    let keys: Vec<&str> = b.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        ["object", "code", "type", "message", "fields", "request_id"],
        "{b}"
    );
    assert_eq!(b["object"], "error");
    assert_eq!(b["code"], r.status, "{b}");
    assert_eq!(
        b["request_id"].as_str(),
        r.header("x-request-id"),
        "the request id of the body is the header's"
    );
    b
}

#[test]
fn every_row_of_the_pelion_table_is_a_real_answer() {
    let p = pelion();
    let gw = &p.gw;
    let acme = p.token(&p.acme);
    let json = ("Content-Type", "application/json");
    let devices = "/v1/customers/acme/devices";
    let device = |serial: &str| format!(r#"{{"name":"Pump","serial":"{serial}","kind":"sensor"}}"#);
    let created = gw.request(
        "POST",
        devices,
        &[("Authorization", &acme), json],
        device("SN-0001").as_bytes(),
    );
    assert_eq!(created.status, 201, "{}", created.text());
    let small = p.token(&p.small);
    let first = gw.request(
        "GET",
        "/v1/customers/small/devices",
        &[("Authorization", &small)],
        b"",
    );
    assert_eq!(first.status, 200, "{}", first.text());
    let limited = gw.get("/v2/limited");
    assert_ne!(limited.status, 429, "the first request is within the limit");

    // Each row of the table, by type: the request that produces it.
    let answers: Vec<(&str, Response)> = vec![
        (
            "bad_request",
            gw.request(
                "POST",
                devices,
                &[("Authorization", &acme), ("Content-Type", "text/plain")],
                b"pump",
            ),
        ),
        (
            "validation_error",
            gw.request(
                "POST",
                devices,
                &[("Authorization", &acme), json],
                br#"{"name":" ","serial":"a b","kind":"toaster"}"#,
            ),
        ),
        ("invalid_auth", gw.get(devices)),
        (
            "auth_mismatch",
            gw.request(
                "GET",
                "/v1/customers/globex/devices",
                &[("Authorization", &acme)],
                b"",
            ),
        ),
        (
            "invalid_accesskey",
            gw.request(
                "GET",
                "/v2/reports",
                &[(
                    "X-Api-Key",
                    "ck_aaaaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
                )],
                b"",
            ),
        ),
        (
            "access_denied",
            gw.request("GET", "/v2/admin/devices", &[("Authorization", &acme)], b""),
        ),
        ("access_restricted", gw.get("/v2/export")),
        (
            "account_limit_exceeded",
            gw.request(
                "GET",
                "/v1/customers/small/devices",
                &[("Authorization", &small)],
                b"",
            ),
        ),
        ("invalid_request", gw.get("/v2/secure")),
        (
            "not_found",
            gw.request(
                "GET",
                &format!("{devices}/999"),
                &[("Authorization", &acme)],
                b"",
            ),
        ),
        ("unrecognized_request", gw.get("/v3/device")),
        (
            "method_not_supported",
            gw.request("PATCH", devices, &[("Authorization", &acme)], b""),
        ),
        (
            "conflict",
            gw.request(
                "PUT",
                &format!("{devices}/1"),
                &[("Authorization", &acme), json],
                device("SN-0002").as_bytes(),
            ),
        ),
        (
            "duplicate",
            gw.request(
                "POST",
                devices,
                &[("Authorization", &acme), json],
                device("SN-0001").as_bytes(),
            ),
        ),
        ("rate_limit_exceeded", gw.get("/v2/limited")),
        ("internal_server_error", gw.get("/v1/debug/panic")),
        ("system_unavailable", gw.get("/v2/maintenance")),
    ];
    let rows = seed_rows();
    let mut covered = Vec::new();
    for (kind, r) in &answers {
        let row = rows
            .iter()
            .find(|row| row.kind == *kind)
            .unwrap_or_else(|| panic!("{kind} is not a row of the seed's table"));
        let b = pelion_error(r);
        assert_eq!(r.status, row.status, "{kind}: {b}");
        assert_eq!(b["type"], *kind, "{b}");
        assert_eq!(b["message"], row.message.as_str(), "{kind}: {b}");
        covered.push(format!("{} {}", row.status, row.kind));
    }
    // Field errors are listed in the envelope's own words.
    let validation = &answers[1].1.json();
    let names: Vec<&str> = validation["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["name", "serial", "kind"], "{validation}");
    let duplicate = &answers[13].1.json();
    assert_eq!(
        duplicate["fields"][0],
        serde_json::json!({"name": "serial", "message": "`SN-0001` is already used by device 1"})
    );
    // Pelion's conventions: a 401 names the Bearer scheme, a 429 when to retry.
    assert_eq!(
        answers[2].1.header("www-authenticate"),
        Some("Bearer realm=\"pelion\"")
    );
    assert!(answers[14].1.header("retry-after").is_some());
    let all: Vec<String> = rows
        .iter()
        .map(|r| format!("{} {}", r.status, r.kind))
        .collect();
    assert_all_rows_covered("002 (Pelion)", &all, &covered);
}

/// Equal, where the seed's model has a placeholder (`"<error_code>"`, "A human-readable
/// ...") any value of the answer stands; each item of an answer's array has the model's
/// item's shape.
fn matches_model(model: &Value, got: &Value, at: &str) {
    match (model, got) {
        (Value::Object(m), Value::Object(g)) => {
            let mk: Vec<&String> = m.keys().collect();
            let gk: Vec<&String> = g.keys().collect();
            assert_eq!(mk, gk, "members at {at}");
            for (k, v) in m {
                matches_model(v, &g[k], &format!("{at}/{k}"));
            }
        }
        (Value::Array(m), Value::Array(g)) => {
            assert!(!g.is_empty(), "the answer has items at {at}");
            for item in g {
                matches_model(&m[0], item, &format!("{at}/*"));
            }
        }
        (Value::String(s), got) if s.starts_with('<') || s.starts_with("A human-readable") => {
            assert!(got.is_string() || got.is_number(), "{at}: {got}");
        }
        (m, g) => assert_eq!(m, g, "{at}"),
    }
}

#[test]
fn the_seeds_error_model_is_what_a_request_gets() {
    let p = pelion();
    let acme = p.token(&p.acme);
    let r = p.gw.request(
        "POST",
        "/v1/customers/acme/devices",
        &[
            ("Authorization", &acme),
            ("Content-Type", "application/json"),
        ],
        br#"{"name":"Pump","serial":"a b","kind":"sensor"}"#,
    );
    let bodies = seed_bodies(&seed("002"));
    assert_eq!(bodies.len(), 1, "the seed shows one body: its error model");
    let b = pelion_error(&r);
    matches_model(&bodies[0], &b, "");
    assert_eq!(b["code"], 400);
    assert_eq!(b["type"], "validation_error");
}

#[test]
fn a_route_a_host_and_the_listener_choose_the_profile() {
    let demo = crate::harness::Upstream::refused();
    let config = format!(
        r#"
[server]
profile = "pelion"

[demo_api]
listen = "{demo}"

[[profiles.hosts]]
host = "ixon.example"
profile = "ixon"

[[routes]]
name = "devices"
path = "/v1/customers/{{customer}}/devices/{{id}}"
upstream = "http://{demo}"
profile = "problem"

[[routes]]
name = "knox"
path = "/knox/{{*rest}}"
upstream = "http://{demo}"
profile = "knox"

[[routes]]
name = "read_only"
path = "/ro/items"
methods = ["GET"]
upstream = "http://{demo}"
profile = "problem"
"#
    );
    let gw = Gateway::start(&config);
    // `candor check` says which profile answers where.
    let plan = crate::harness::cli(&gw, &["check"]);
    for line in [
        "  errors in profile pelion (the listener's)",
        "  errors in profile ixon for host ixon.example",
        "(errors in profile problem)",
        "(errors in profile knox)",
    ] {
        assert!(plan.contains(line), "{line} not in\n{plan}");
    }
    // The route's own profile wins: problem details here, the demo API's conflict as is.
    let r = gw.request("GET", "/v1/customers/acme/devices/7", &[], b"");
    assert_problem(&r, "resource_not_found");
    // Then the host's, before routing too.
    let r =
        gw.send(b"GET /nowhere HTTP/1.1\r\nHost: ixon.example:8080\r\nConnection: close\r\n\r\n");
    assert_eq!(
        r.json(),
        serde_json::json!({"type":"Error","data":[{"message":"No route matches GET /nowhere."}],"moreAfter":null,"status":"error"})
    );
    // Else the listener's, also for a request the head guard refuses before it is parsed.
    let r = gw.get("/nowhere");
    assert_eq!(r.json()["type"], "unrecognized_request");
    let r = gw.send(b"GET /nowhere HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n");
    assert_eq!(r.status, 400, "{}", r.text());
    let b = pelion_error(&r);
    assert_eq!(b["type"], "bad_request");
    // A route's profile answers the upstream's problems in its words too.
    let r = gw.get("/knox/v1/nothing");
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(
        r.json(),
        serde_json::json!({"code": 4040000, "message": "RESOURCE_NOT_FOUND", "description": "Resource not found.", "fields": []})
    );
    // A method the path does not take: answered in the profile of the route whose path it
    // is (it was the listener's).
    let r = gw.request("POST", "/ro/items", &[], b"");
    assert_eq!(r.status, 405);
    assert_problem(&r, "method_not_allowed");
}

#[test]
fn the_demo_api_answers_a_serial_change_with_conflict() {
    let demo = crate::harness::Upstream::refused();
    let config = format!(
        "[demo_api]\nlisten = \"{demo}\"\n\n[[routes]]\nname = \"devices\"\npath = \"/v1/{{*rest}}\"\nupstream = \"http://{demo}\"\n"
    );
    let gw = Gateway::start(&config);
    let json = [("Content-Type", "application/json")];
    let r = gw.request(
        "POST",
        "/v1/customers/acme/devices",
        &json,
        br#"{"name":"Pump","serial":"SN-0001","kind":"sensor"}"#,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let r = gw.request(
        "PUT",
        "/v1/customers/acme/devices/1",
        &json,
        br#"{"name":"Pump 2","serial":"SN-0001","kind":"camera"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["kind"], "camera");
    let r = gw.request(
        "PUT",
        "/v1/customers/acme/devices/1",
        &json,
        br#"{"name":"Pump","serial":"SN-0009","kind":"sensor"}"#,
    );
    let b = assert_problem(&r, "conflict");
    assert_eq!(
        b["detail"],
        "Device 1 has serial SN-0001; a device's serial cannot change (create a new device for serial SN-0009)."
    );
    assert_eq!(b["source"], "upstream");
}

#[test]
fn candor_check_reports_a_bad_profile_precisely() {
    check_reports(
        "[server]\nprofile = \"pelian\"\n",
        &["server.profile", "`pelian` is not a profile", "pelion"],
    );
    check_reports(
        "[demo_api]\nlisten = \"0.0.0.0:18000\"\n",
        &["demo_api.listen", "not a loopback address"],
    );
    // An operator's profile: compiled at load, checked against the catalog where used.
    let dir = temp_dir("profile-check");
    std::fs::write(
        dir.join("acme.toml"),
        "name = \"acme\"\nenvelope = '{\"error\": \"{message}\", \"id\": \"{request_id}\"}'\n\
         [[error]]\ncatalog = [\"route_not_found\"]\nstatus = 404\nmessage = \"No such thing: {colour}\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("broken.toml"),
        "name = \"broken\"\nenvelope = '{\"error\": \"{mesage}\"}'\n",
    )
    .unwrap();
    let file = dir.join("candor.toml");
    std::fs::write(
        &file,
        "[server]\nprofile = \"acme\"\n\n[profiles]\nfiles = [\"acme.toml\", \"broken.toml\"]\n",
    )
    .unwrap();
    let (code, out, _) = crate::harness::candor(&["check", "--config", file.to_str().unwrap()]);
    assert_ne!(code, 0, "{out}");
    for needle in [
        "`{mesage}` is not a value the envelope can name",
        "profile `acme`, error #1.message: `{colour}` is not supplied by `route_not_found` (its values: method, path, hint)",
        "no `[fallback]`, and no unconditional row answers `https_required`",
    ] {
        assert!(out.contains(needle), "{needle} not in\n{out}");
    }
}

#[test]
fn candor_docs_page_prints_a_profiles_troubleshooting_page() {
    let (code, md, _) = crate::harness::candor(&["docs", "page", "--profile", "pelion"]);
    assert_eq!(code, 0);
    assert!(md.starts_with("# Pelion Device Management API: troubleshooting errors"));
    assert!(
        md.contains("| 403 | invalid_request | Trying to access using HTTP instead of HTTPS. |"),
        "{md}"
    );
    let (code, html, _) = crate::harness::candor(&["docs", "page", "--profile", "ixon", "--html"]);
    assert_eq!(code, 0);
    assert!(html.contains("<td>2FA is required</td>"), "{html}");
    let (code, _, err) = crate::harness::candor(&["docs", "page", "--profile", "pelian"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("`pelian` is not a profile (did you mean `pelion`?)"),
        "{err}"
    );
    // An operator's own profile, named by the configuration.
    let dir = temp_dir("docs-page");
    std::fs::write(
        dir.join("acme.toml"),
        "name = \"acme\"\ntitle = \"Acme API\"\nenvelope = '{\"error\": \"{message}\"}'\n\
         [[error]]\ncatalog = [\"route_not_found\"]\nstatus = 404\nmessage = \"No such endpoint.\"\n[fallback]\n",
    )
    .unwrap();
    let file = dir.join("candor.toml");
    std::fs::write(&file, "[profiles]\nfiles = [\"acme.toml\"]\n").unwrap();
    let md = cli_at(&file, &["docs", "page", "--profile", "acme"]);
    assert!(md.contains("| 404 | No such endpoint. |"), "{md}");
}

#[test]
fn plain_http_to_a_tls_listener_is_answered_in_the_listeners_profile() {
    use crate::harness::fixture;
    let config = format!(
        "[server]\nprofile = \"pelion\"\n\n[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n\n[[routes]]\nname = \"t\"\npath = \"/t\"\nupstream = \"http://127.0.0.1:9\"\n",
        fixture("server.pem").display(),
        fixture("server.key").display(),
    );
    let gw = Gateway::start(&config);
    // Answered before any HTTP parser runs: Pelion's invalid_request, in its envelope.
    let r = gw.send(b"GET /t HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 403);
    let b = pelion_error(&r);
    assert_eq!(b["type"], "invalid_request");
    assert_eq!(
        b["message"],
        "Trying to access using HTTP instead of HTTPS."
    );
    assert_eq!(r.header("connection"), Some("close"));
}

/// A profile that names its own request id header: an error carries the id there alone;
/// a forwarded answer carries it in X-Request-Id and, unless the upstream set its own, in
/// the profile's header too.
#[test]
fn a_profiles_request_id_header_is_on_every_answer() {
    let up = crate::harness::Upstream::start(crate::harness::Behaviour::Echo);
    let config = format!(
        "[server]\nprofile = \"acme\"\n\n[profiles]\nfiles = [\"acme.toml\"]\n\n{}",
        crate::harness::one_route("/v1/{*rest}", &up.url(), "")
    );
    let gw = Gateway::start_after(&config, |file| {
        std::fs::write(
            file.with_file_name("acme.toml"),
            "name = \"acme\"\nenvelope = '{\"error\": \"{message}\", \"id\": \"{request_id}\"}'\n\
             [headers]\nrequest_id = \"X-Acme-Request\"\n[fallback]\n",
        )
        .unwrap();
    });
    let ok = gw.get("/v1/x");
    assert_eq!(ok.status, 200);
    let rid = ok.header("x-request-id").expect("X-Request-Id").to_owned();
    assert_eq!(ok.header("x-acme-request"), Some(rid.as_str()));

    let miss = gw.get("/nowhere");
    assert_eq!(miss.status, 404);
    let id = miss.header("x-acme-request").expect("the profile's header");
    assert_eq!(miss.json()["id"], id);
    assert!(miss.header("x-request-id").is_none());
}

/// Editing a profile file the configuration names reloads the configuration, as editing
/// the configuration itself does; a broken edit is refused (the running profile stays) and
/// its fix is picked up.
#[test]
fn editing_a_named_profile_file_reloads() {
    let profile = |message: &str| {
        format!(
            "name = \"acme\"\nenvelope = '{{\"error\": \"{{message}}\"}}'\n\
             [[error]]\ncatalog = [\"route_not_found\"]\nstatus = 404\nmessage = \"{message}\"\n[fallback]\n"
        )
    };
    let gw = Gateway::start_after(
        "[server]\nprofile = \"acme\"\n\n[profiles]\nfiles = [\"acme.toml\"]\n",
        |file| std::fs::write(file.with_file_name("acme.toml"), profile("No such thing.")).unwrap(),
    );
    let said = |g: &Gateway| {
        g.get("/nowhere").json()["error"]
            .as_str()
            .map(str::to_owned)
    };
    assert_eq!(said(&gw).as_deref(), Some("No such thing."));
    let file = gw.dir.join("acme.toml");
    // (A later modification time than the first write's, on any file system.)
    std::thread::sleep(std::time::Duration::from_millis(1100));
    std::fs::write(&file, profile("Nothing here.")).unwrap();
    assert!(gw.eventually(|g| said(g).as_deref() == Some("Nothing here.")));

    // A broken edit: refused, named in the log, the running profile kept.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    std::fs::write(
        &file,
        "name = \"acme\"\nenvelope = '{\"error\": \"{mesage}\"}'\n",
    )
    .unwrap();
    assert!(gw.eventually(|g| {
        g.log()
            .contains("`{mesage}` is not a value the envelope can name")
    }));
    assert_eq!(said(&gw).as_deref(), Some("Nothing here."));
    // Its fix is picked up.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    std::fs::write(&file, profile("Fixed.")).unwrap();
    assert!(gw.eventually(|g| said(g).as_deref() == Some("Fixed.")));
}
