//! The embedded demo: `candor serve` with no configuration, black-box.

use crate::harness::*;

const JSON: (&str, &str) = ("Content-Type", "application/json");

#[test]
fn demo_serves_the_devices_api_through_the_gateway() {
    let gw = Gateway::start_demo();
    let banner = gw.stdout.lock().unwrap().join("");
    assert!(
        banner.contains("candor listening on http://127.0.0.1:"),
        "{banner}"
    );
    let client_id = gw.printed("client_id:");
    let secret = gw.printed("client_secret:");
    assert!(gw.printed("TOKEN=$(curl").contains(&client_id));
    let stats_line = gw.printed("curl -s -H \"Authorization: Bearer $(cat ");
    let admin = gw.admin.unwrap();
    assert!(
        stats_line.ends_with(&format!("http://{admin}/stats")),
        "{stats_line}"
    );
    let upstreams_line = gw.printed("# each route's upstream targets");
    assert!(upstreams_line.contains("ejected"), "{upstreams_line}");
    let tour = gw.stdout.lock().unwrap().join("");
    assert!(
        tour.contains(&format!("http://{admin}/upstreams")),
        "{tour}"
    );
    let upstreams = gw.admin_get("/upstreams");
    assert!(
        upstreams["routes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["route"] == "listDevices"),
        "{upstreams}"
    );

    // Requests without a token are refused before the demo API sees them.
    assert_problem(&gw.get("/v1/customers/acme/devices"), "credentials_missing");
    assert_eq!(gw.stats()["errors"]["credentials_missing"]["gateway"], 1);
    let basic = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{client_id}:{secret}")
        )
    );
    let r = gw.request(
        "POST",
        "/oauth/token",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Authorization", &basic),
        ],
        b"grant_type=client_credentials",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let bearer = format!("Bearer {}", r.json()["access_token"].as_str().unwrap());
    let auth = ("Authorization", bearer.as_str());
    assert_problem(
        &gw.request("GET", "/v1/customers/globex/devices", &[auth], b""),
        "account_mismatch",
    );
    let gw = Authed { gw: &gw, auth };

    // The gateway, not the demo API, refuses a body that is not JSON and a format the API
    // cannot answer in (both in the tour).
    let xml_body = gw.request(
        "POST",
        "/v1/customers/acme/devices",
        &[("Content-Type", "application/xml")],
        b"<device/>",
    );
    let b = assert_problem(&xml_body, "unsupported_media_type");
    assert_eq!(b["accepted"], serde_json::json!(["application/json"]));
    let xml_wanted = gw.request(
        "GET",
        "/v1/customers/acme/devices",
        &[("Accept", "application/xml")],
        b"",
    );
    assert_problem(&xml_wanted, "not_acceptable");
    let broken = gw.request(
        "POST",
        "/v1/customers/acme/devices",
        &[JSON],
        br#"{"name": "Hall sensor", "serial" = 1}"#,
    );
    let b = assert_problem(&broken, "malformed_body");
    assert_eq!(
        b["detail"],
        "The request body is not valid JSON: expected `:`, found `=` at line 1, column 34."
    );

    let r = gw.request(
        "POST",
        "/v1/customers/acme/devices",
        &[JSON],
        br#"{"name":"Hall sensor","serial":"SN-0001"}"#,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_i64().unwrap();
    assert_eq!(
        r.header("location"),
        Some(format!("/v1/customers/acme/devices/{id}").as_str())
    );

    let r = gw.get("/v1/customers/acme/devices");
    assert_eq!(r.json()["data"][0]["serial"], "SN-0001");
    let r = gw.get(&format!("/v1/customers/acme/devices/{id}"));
    assert_eq!(r.json()["name"], "Hall sensor");

    // duplicate
    let r = gw.request(
        "POST",
        "/v1/customers/acme/devices",
        &[JSON],
        br#"{"name":"Again","serial":"SN-0001"}"#,
    );
    let b = assert_problem(&r, "duplicate_resource");
    assert_eq!(r.status, 409);
    assert_eq!(
        b["detail"],
        format!("A device with serial SN-0001 already exists (device {id}).")
    );
    assert_eq!(b["errors"][0]["pointer"], "#/serial");

    // every field problem at once
    let r = gw.request(
        "POST",
        "/v1/customers/acme/devices",
        &[JSON],
        br#"{"serial":"x y","kind":"toaster"}"#,
    );
    let b = assert_problem(&r, "validation_failed");
    let fields: Vec<(String, String)> = b["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_owned(),
                e["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        fields,
        vec![
            ("name".into(), "required".into()),
            ("serial".into(), "pattern".into()),
            ("kind".into(), "enum".into())
        ]
    );
    assert_eq!(b["errors"][0]["in"], "body");
    // Answered by the gateway from the API's OpenAPI document, not the devices API behind it.
    assert_eq!(b["error_count"], 3, "{b}");
    assert_eq!(b["operation"], "createDevice", "{b}");
    // A form body sent as JSON (in the tour), and an unknown query parameter.
    let form = gw.request(
        "POST",
        "/v1/customers/acme/devices",
        &[JSON],
        b"name=Hall+sensor&serial=SN-0002",
    );
    let f = assert_problem(&form, "malformed_body");
    assert_eq!(
        f["detail"],
        "The request body is not valid JSON: expected a value, found `name` (a word that is not true, false or null) at line 1, column 1."
    );
    let q = assert_problem(
        &gw.get("/v1/customers/acme/devices?limt=5"),
        "validation_failed",
    );
    assert_eq!(
        (&q["operation"], &q["errors"][0]["reason"]),
        (&"listDevices".into(), &"unknown".into()),
        "{q}"
    );
    assert_eq!(
        b["errors"][1]["detail"],
        "must match ^[A-Z0-9-]{4,32}$; got \"x y\""
    );

    // body that is not what its Content-Type says, with position
    let r = gw.request(
        "POST",
        "/v1/customers/acme/devices",
        &[JSON],
        b"{\n  \"name\": \"x\",\n  oops\n}",
    );
    let b = assert_problem(&r, "malformed_body");
    assert_eq!(
        (b["line"].as_u64(), b["column"].as_u64()),
        (Some(3), Some(3))
    );

    let r = gw.request(
        "POST",
        "/v1/customers/acme/devices",
        &[("Content-Type", "text/plain")],
        b"name=x",
    );
    let b = assert_problem(&r, "unsupported_media_type");
    assert_eq!(r.status, 415);
    assert_eq!(b["accepted"], serde_json::json!(["application/json"]));

    // missing resource, and a path parameter of the wrong type
    let b = assert_problem(
        &gw.get("/v1/customers/acme/devices/999"),
        "resource_not_found",
    );
    assert!(
        b["detail"]
            .as_str()
            .unwrap()
            .starts_with("Device 999 does not exist for customer acme."),
        "{b}"
    );
    let b = assert_problem(
        &gw.get("/v1/customers/acme/devices/abc"),
        "validation_failed",
    );
    assert_eq!(b["errors"][0]["in"], "path");

    // the gateway's own answers in the demo
    let b = assert_problem(&gw.get("/v1/customers/acme/device"), "route_not_found");
    // As the README's sample says.
    assert_eq!(
        b["detail"],
        "No route matches GET /v1/customers/acme/device. Did you mean /v1/customers/acme/devices (similar path; GET, HEAD, POST)?"
    );
    assert_problem(&gw.get("/v1/reports"), "service_unavailable");
    assert_problem(
        &gw.request("PUT", "/v1/customers/acme/devices/1/firmware", &[], b"{}"),
        "not_implemented",
    );
    assert_problem(&gw.get("/v0/anything"), "upstream_unreachable");

    // delete, then it is gone; data lives in SQLite under the data directory
    assert_eq!(
        gw.request(
            "DELETE",
            &format!("/v1/customers/acme/devices/{id}"),
            &[],
            b""
        )
        .status,
        204
    );
    assert_problem(
        &gw.get(&format!("/v1/customers/acme/devices/{id}")),
        "resource_not_found",
    );
    assert!(gw.gw.dir.join("data/demo.sqlite").exists());

    // The tour's `candor openapi`: the document with what each operation can get.
    let config = gw.gw.dir.join("data/candor.toml");
    let spec = gw.gw.dir.join("data/devices.openapi.yaml");
    assert!(gw.gw.printed("candor openapi --config").contains("--spec"));
    let out = cli_at(&config, &["openapi", "--spec", spec.to_str().unwrap()]);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    let create = &doc["paths"]["/customers/{customer}/devices"]["post"]["responses"];
    assert_eq!(
        create["401"]["x-candor-codes"][0], "credentials_missing",
        "{create}"
    );
    assert!(
        create["400"]["x-candor-codes"]
            .as_array()
            .unwrap()
            .contains(&"validation_failed".into())
    );
    assert_eq!(
        create["429"]["x-candor-codes"][0], "rate_limited",
        "{create}"
    );
    let reports = &doc["paths"]["/reports"]["get"]["responses"];
    assert!(reports.get("401").is_none(), "no authentication: {reports}");
    assert_eq!(
        reports["503"]["x-candor-codes"][0], "service_unavailable",
        "{reports}"
    );

    // The tour's loop: each operation limits each client to a burst of 30 per minute; every
    // answer carries the RateLimit fields, and past the burst 429 says when to come back.
    let tour = gw.gw.printed("for i in $(seq 100)");
    assert!(tour.contains("uniq -c"), "{tour}");
    let mut passed = 0;
    let refused = loop {
        let r = gw.get("/v1/customers/acme/devices");
        assert_eq!(
            r.header("ratelimit-policy"),
            Some("\"burst\";q=30;w=60, \"daily\";q=10000;w=86400"),
            "{}",
            r.status
        );
        if r.status != 200 {
            break r;
        }
        passed += 1;
        assert!(passed <= 60, "never limited");
    };
    assert!(passed >= 20, "{passed}");
    let b = assert_problem(&refused, "rate_limited");
    assert_eq!(b["violated-policies"], serde_json::json!(["burst"]));
    assert!(refused.header("retry-after").is_some());
}

/// The demo gateway with the token attached to every request.
struct Authed<'a> {
    gw: &'a Gateway,
    auth: (&'a str, &'a str),
}

impl Authed<'_> {
    fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
        let mut h = headers.to_vec();
        h.push(self.auth);
        self.gw.request(method, path, &h, body)
    }

    fn get(&self, path: &str) -> Response {
        self.request("GET", path, &[], b"")
    }
}

/// A token for the demo client whose secret the tour reads from its file.
fn demo_token(gw: &Gateway, client_id: &str, secret_file: &std::path::Path) -> Response {
    let secret = std::fs::read_to_string(secret_file).unwrap();
    token_for(gw, client_id, secret.trim())
}

fn token_for(gw: &Gateway, client_id: &str, secret: &str) -> Response {
    let basic = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{client_id}:{secret}")
        )
    );
    gw.request(
        "POST",
        "/oauth/token",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Authorization", &basic),
        ],
        b"grant_type=client_credentials",
    )
}

#[test]
fn a_restart_keeps_the_demo_as_the_user_left_it_and_reset_demo_starts_over() {
    let gw = Gateway::start_demo();
    let data = gw.dir.join("data");
    let client_id = gw.printed("client_id:");
    let secret = gw.printed("client_secret:");
    let shown_once = gw.printed("(shown once;");
    let secret_file = data.join("demo-client.secret");
    assert!(
        shown_once.contains(&secret_file.display().to_string()),
        "{shown_once}"
    );
    assert_eq!(
        std::fs::read_to_string(&secret_file).unwrap().trim(),
        secret
    );
    // The tour's token request reads the kept secret, so it works on every start.
    let token_line = gw.printed("TOKEN=$(curl");
    assert!(
        token_line.contains(&format!("-u {client_id}:$(cat {})", secret_file.display())),
        "{token_line}"
    );
    // No `./` in the paths the banner prints (data_dir = "." next to the config).
    let banner = gw.stdout.lock().unwrap().join("\n");
    assert!(!banner.contains("/./"), "{banner}");
    assert!(
        banner.contains(&format!("{}", data.join("admin.token").display())),
        "{banner}"
    );

    // The user's edit, applied live, and a device.
    let config = data.join("candor.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n# my edit\n[[routes]]\nname = \"mine\"\npath = \"/v9/mine\"\nmode = \"not_implemented\"\n");
    std::fs::write(&config, &text).unwrap();
    gw.signal("HUP");
    assert!(gw.eventually(|g| g.get("/v9/mine").status == 501));
    let r = demo_token(&gw, &client_id, &secret_file);
    let bearer = format!("Bearer {}", r.json()["access_token"].as_str().unwrap());
    let r = gw.request(
        "POST",
        "/v1/customers/acme/devices",
        &[JSON, ("Authorization", &bearer)],
        br#"{"name":"Kept","serial":"SN-KEPT"}"#,
    );
    assert_eq!(r.status, 201, "{}", r.text());

    // Restarted: the file, the device, the client and its secret are as they were, and the
    // demo API answers where the configuration points.
    let gw = gw.restart_demo(&[]);
    assert_eq!(std::fs::read_to_string(&config).unwrap(), text);
    assert!(gw.printed("candor demo: reusing").contains("--reset-demo"));
    assert_eq!(gw.printed("client_id:"), client_id);
    let kept = gw.printed("client_secret:");
    assert!(
        kept.starts_with(&format!("in {}", secret_file.display())),
        "{kept}"
    );
    assert!(
        kept.contains(&format!("candor clients rotate {client_id}")),
        "{kept}"
    );
    assert!(!kept.contains(&secret), "the secret is shown once: {kept}");
    assert_problem(&gw.get("/v9/mine"), "not_implemented");
    let r = demo_token(&gw, &client_id, &secret_file);
    assert_eq!(r.status, 200, "{}", r.text());
    let bearer = format!("Bearer {}", r.json()["access_token"].as_str().unwrap());
    let r = gw.request(
        "GET",
        "/v1/customers/acme/devices",
        &[("Authorization", &bearer)],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["data"][0]["serial"], "SN-KEPT");

    // A secret rotated with the CLI: the tour says the file no longer holds it.
    let (code, out, err) = candor(&[
        "clients",
        "rotate",
        &client_id,
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let gw = gw.restart_demo(&[]);
    let stale = gw.printed("client_secret:");
    assert!(stale.contains("no longer holds it"), "{stale}");

    // --reset-demo names what it deletes, then everything is new.
    let gw = gw.restart_demo(&["--reset-demo"]);
    let said = gw.stdout.lock().unwrap().join("\n");
    assert!(
        said.contains("--reset-demo: deleting the demo's files in"),
        "{said}"
    );
    for (file, what) in [
        ("candor.toml", "with any edits made to it"),
        ("demo.sqlite", "the devices created"),
        ("candor.sqlite", "accounts, clients"),
        ("admin.token", "the admin API token"),
    ] {
        assert!(
            said.contains(&format!("{}  (", data.join(file).display())) && said.contains(what),
            "{file}: {said}"
        );
    }
    let new_id = gw.printed("client_id:");
    assert_ne!(new_id, client_id);
    assert!(
        !std::fs::read_to_string(&config)
            .unwrap()
            .contains("my edit")
    );
    assert_problem(&gw.get("/v9/mine"), "route_not_found");
    let r = demo_token(&gw, &new_id, &secret_file);
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn a_demo_that_cannot_start_writes_nothing_and_a_broken_kept_config_is_not_replaced() {
    // The public port is taken: the listener is named, and no file is written.
    let dir = temp_dir("demo-taken");
    let data = dir.join("data");
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().to_string();
    let (code, out, err) = candor(&[
        "serve",
        "--listen",
        &port,
        "--admin-listen",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains(&format!(
            "cannot listen on {port} (server.listen, the public listener)"
        )),
        "{err}"
    );
    assert!(!data.join("candor.toml").exists());
    assert!(!data.join("candor.sqlite").exists());
    drop(held);

    // A kept configuration that no longer loads is reported and left as it is.
    let gw = Gateway::start_demo();
    let data = gw.dir.join("data");
    let config = data.join("candor.toml");
    let mut gw = gw;
    gw.signal("TERM");
    let _ = gw.child.wait();
    let broken = "[server\nlisten = 1\n";
    std::fs::write(&config, broken).unwrap();
    let args = demo_args(&data);
    let (code, out, err) = candor(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("the demo keeps your configuration"), "{err}");
    assert!(err.contains("candor serve --reset-demo"), "{err}");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), broken);
}

#[test]
fn the_apis_own_errors_are_told_apart_from_the_gateways() {
    let gw = Gateway::start_demo();
    let data = gw.dir.join("data");
    // A route broader than what the API serves: the gateway routes it, the API does not.
    let api = std::fs::read_to_string(data.join("demo-api.addr")).unwrap();
    let config = data.join("candor.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[[routes]]\nname = \"labs\"\npath = \"/v1/labs/{{*rest}}\"\nupstream = \"http://{}\"\n",
        api.trim()
    ));
    std::fs::write(&config, &text).unwrap();
    // SIGHUP as an operator would (the file watcher would see the change too).
    gw.signal("HUP");
    assert!(gw.eventually(|g| g.get("/v1/labs/x").json()["code"] == "unknown_path"));

    let r = gw.get("/v1/labs/x");
    let b = assert_problem(&r, "unknown_path");
    assert_eq!(b["source"], "upstream", "{b}");
    assert_eq!(
        b["detail"],
        "The devices API has no GET /v1/labs/x. It serves /v1/customers/{customer}/devices[/{id}[/diagnostics]] and .../config/{feature}."
    );
    // The gateway's own 404 carries no source, and another code.
    let own = assert_problem(&gw.get("/v1/lab/x"), "route_not_found");
    assert!(own.get("source").is_none(), "{own}");
    // The page says whose answer it is.
    let page = gw.get("/errors/unknown_path").text();
    assert!(page.contains("the API behind it answered"), "{page}");

    // The log line: source upstream, with the API's own code (not an error of the gateway's).
    let rid = b["request_id"].as_str().unwrap();
    let line = gw.log_line(&format!("\"request_id\":\"{rid}\""));
    assert!(line.contains("\"source\":\"upstream\""), "{line}");
    assert!(line.contains("\"code\":\"unknown_path\""), "{line}");
    assert!(line.contains("\"status\":404"), "{line}");
    assert_eq!(
        gw.stats()["errors"].get("unknown_path"),
        None,
        "not counted as the gateway's"
    );
}

#[test]
fn kept_demo_files_that_cannot_be_trusted_are_set_aside_not_lost() {
    use std::os::unix::fs::PermissionsExt;
    let gw = Gateway::start_demo();
    let data = gw.dir.join("data");
    // The attack probe's findings: an address file naming every interface was served on,
    // and a garbage one lost the user's edit of the OpenAPI document.
    let spec = data.join("devices.openapi.yaml");
    let mut edited = std::fs::read_to_string(&spec).unwrap();
    edited.push_str("# my edit\n");
    std::fs::write(&spec, &edited).unwrap();
    std::fs::write(data.join("demo-api.addr"), "0.0.0.0:45678\n").unwrap();
    // A secret file that is a symlink to a readable file, and a client that is gone: the
    // new secret must not go through the link.
    let elsewhere = gw.dir.join("elsewhere.txt");
    std::fs::write(&elsewhere, "public\n").unwrap();
    std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o644)).unwrap();
    let secret_file = data.join("demo-client.secret");
    std::fs::remove_file(&secret_file).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &secret_file).unwrap();
    std::fs::write(data.join("demo-client-id"), "cl_gone").unwrap();

    let gw = gw.restart_demo(&[]);
    let said = gw.stdout.lock().unwrap().join("\n");
    assert!(
        said.contains("is missing, unreadable or not a loopback address") && said.contains(".bak"),
        "{said}"
    );
    let kept: Vec<String> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".bak"))
        .collect();
    assert_eq!(kept.len(), 2, "{kept:?}");
    let spec_bak = kept
        .iter()
        .find(|n| n.starts_with("devices.openapi.yaml."))
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(data.join(spec_bak)).unwrap(),
        edited
    );
    let addr: std::net::SocketAddr = std::fs::read_to_string(data.join("demo-api.addr"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(addr.ip().is_loopback(), "{addr}");
    // The gateway still serves the (new) demo.
    assert_problem(&gw.get("/v1/customers/acme/devices"), "credentials_missing");

    // The secret went into a new file of its own, readable by its owner only.
    assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), "public\n");
    let meta = std::fs::symlink_metadata(&secret_file).unwrap();
    assert!(meta.file_type().is_file(), "{meta:?}");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let secret = gw.printed("client_secret:");
    assert_eq!(
        std::fs::read_to_string(&secret_file).unwrap().trim(),
        secret
    );
}
