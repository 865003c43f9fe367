//! Route stage, black-box: host, path and method matching, suggestions on a miss, and the
//! request id every response carries.

use crate::harness::*;

/// A gateway with small limits (512-byte URIs, 2 KiB of headers, 1000-byte bodies) and
/// routes with path parameters, a host restriction and a wildcard, all to one echo upstream.
/// The route, parse, transport and head guard tests share it.
pub(crate) fn gateway() -> (Gateway, Upstream) {
    let up = Upstream::start(Behaviour::Echo);
    let config = format!(
        r#"
[limits]
max_uri_bytes = 512
max_header_bytes = 2048
max_body_bytes = 1000

[[routes]]
name = "devices"
path = "/v1/customers/{{customer}}/devices"
methods = ["GET", "POST"]
upstream = "{u}"

[[routes]]
name = "device"
path = "/v1/customers/{{customer}}/devices/{{device}}"
methods = ["GET", "DELETE"]
upstream = "{u}"

[[routes]]
name = "admin-only"
host = "admin.example.com"
path = "/v1/admin"
upstream = "{u}"

[[routes]]
name = "files"
path = "/files/{{*rest}}"
upstream = "{u}/base"
"#,
        u = up.url()
    );
    (Gateway::start(&config), up)
}

#[test]
fn proxies_a_matching_route_and_keeps_request_ids() {
    let (gw, _up) = gateway();
    let r = gw.request(
        "GET",
        "/v1/customers/acme/devices?limit=5",
        &[("X-Request-Id", "client-req-42")],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-request-id"), Some("client-req-42"));
    let echo = r.json();
    assert_eq!(echo["target"], "/v1/customers/acme/devices?limit=5");
    assert_eq!(echo["headers"]["x-request-id"][0], "client-req-42");

    // A malformed incoming id is replaced by a fresh ULID.
    let r = gw.request(
        "GET",
        "/v1/customers/acme/devices",
        &[("X-Request-Id", "bad id <script>")],
        b"",
    );
    let rid = r.header("x-request-id").unwrap();
    assert_eq!(rid.len(), 26, "{rid}");
    assert_eq!(r.json()["headers"]["x-request-id"][0], rid);
}

#[test]
fn wrong_path_gets_route_not_found_with_suggestions() {
    let (gw, _up) = gateway();
    // trailing slash
    let r = gw.get("/v1/customers/acme/devices/");
    let b = assert_problem(&r, "route_not_found");
    assert_eq!(r.status, 404);
    assert_eq!(b["suggestions"][0]["path"], "/v1/customers/acme/devices");
    assert_eq!(b["suggestions"][0]["reason"], "trailing_slash");
    assert!(
        b["detail"]
            .as_str()
            .unwrap()
            .contains("Did you mean /v1/customers/acme/devices (without the trailing slash"),
        "{b}"
    );
    assert_eq!(b["instance"], "/v1/customers/acme/devices/");

    // letter case
    let b = assert_problem(&gw.get("/V1/Customers/acme/Devices"), "route_not_found");
    assert_eq!(b["suggestions"][0]["path"], "/v1/customers/acme/devices");
    assert_eq!(b["suggestions"][0]["reason"], "letter_case");

    // a typo, with the methods the suggestion accepts
    let b = assert_problem(
        &gw.request("PUT", "/v1/custmers/acme/devices/7", &[], b""),
        "route_not_found",
    );
    assert_eq!(b["suggestions"][0]["path"], "/v1/customers/acme/devices/7");
    assert_eq!(b["suggestions"][0]["accepts_method"], false);
    assert!(
        b["detail"]
            .as_str()
            .unwrap()
            .contains("exists for GET, DELETE, HEAD only, not PUT"),
        "{b}"
    );

    // nothing close: no suggestions, still a precise answer
    let b = assert_problem(&gw.get("/completely/elsewhere/entirely"), "route_not_found");
    assert_eq!(b["suggestions"], serde_json::json!([]));
    assert_eq!(
        b["detail"],
        "No route matches GET /completely/elsewhere/entirely."
    );

    // host-restricted route is not found on another host
    let r = gw.request("GET", "/v1/admin", &[], b"");
    assert_problem(&r, "route_not_found");
    let raw =
        b"GET /v1/admin HTTP/1.1\r\nHost: admin.example.com:8080\r\nConnection: close\r\n\r\n";
    assert_eq!(gw.send(raw).status, 200);
}

#[test]
fn wrong_method_gets_405_with_allow() {
    let (gw, _up) = gateway();
    let r = gw.request("PATCH", "/v1/customers/acme/devices/9", &[], b"");
    let b = assert_problem(&r, "method_not_allowed");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, DELETE, HEAD"));
    assert_eq!(b["allowed"], serde_json::json!(["GET", "DELETE", "HEAD"]));
    assert_eq!(
        b["detail"],
        "/v1/customers/acme/devices/9 does not accept PATCH; it accepts GET, DELETE, HEAD."
    );
}

#[test]
fn every_response_carries_a_request_id() {
    let (gw, _up) = gateway();
    for path in [
        "/v1/customers/a/devices",
        "/nope",
        "/errors/route_not_found",
    ] {
        let r = gw.get(path);
        assert!(
            r.header("x-request-id").is_some_and(|v| !v.is_empty()),
            "{path}"
        );
    }
}

#[test]
fn the_gateway_s_own_endpoints_are_routes() {
    let (gw, up) = gateway();
    // The JWK set answers GET and HEAD; other methods get 405 from the route stage.
    assert_eq!(gw.get("/.well-known/jwks.json").status, 200);
    let r = gw.request("POST", "/.well-known/jwks.json", &[], b"{}");
    let b = assert_problem(&r, "method_not_allowed");
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    assert_eq!(b["allowed"], serde_json::json!(["GET", "HEAD"]));
    // The error pages too.
    let r = gw.request("DELETE", "/errors/route_not_found", &[], b"");
    assert_problem(&r, "method_not_allowed");
    assert_eq!(up.hits.load(std::sync::atomic::Ordering::Relaxed), 0);

    // An operator route cannot take their paths.
    let dir = temp_dir("reserved");
    let file = dir.join("candor.toml");
    std::fs::write(
        &file,
        format!(
            "{}{}",
            one_route("/oauth/token", &up.url(), ""),
            one_route("/.well-known/jwks.json", &up.url(), "").replace("\"r\"", "\"k\"")
        ),
    )
    .unwrap();
    let (code, out, _) = candor(&["check", "--config", file.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("is reserved for the gateway's token endpoint (/oauth/token)"),
        "{out}"
    );
    assert!(
        out.contains("is reserved for the gateway's JWK set (/.well-known/jwks.json)"),
        "{out}"
    );
}

#[test]
fn a_suggestion_names_the_methods_of_every_route_on_its_path() {
    // The newcomer's finding (issue 15, item 2): with GET and POST on two routes of one
    // path, the suggestion read only the first route and said "not POST".
    let up = Upstream::start(Behaviour::Echo);
    let u = up.url();
    let gw = Gateway::start(&format!(
        "[[routes]]\nname = \"list\"\npath = \"/v1/items\"\nmethods = [\"GET\"]\nupstream = \"{u}\"\n\
         [[routes]]\nname = \"create\"\npath = \"/v1/items\"\nmethods = [\"POST\"]\nupstream = \"{u}\"\n"
    ));
    let r = gw.request("POST", "/v1/item", &[], b"{}");
    let b = assert_problem(&r, "route_not_found");
    assert_eq!(
        b["detail"],
        "No route matches POST /v1/item. Did you mean /v1/items (similar path; GET, HEAD, POST)?"
    );
    assert_eq!(b["suggestions"][0]["accepts_method"], true);
    assert_eq!(
        b["suggestions"][0]["methods"],
        serde_json::json!(["GET", "HEAD", "POST"])
    );
    // The same list as a 405 on the path itself.
    let r = gw.request("PATCH", "/v1/items", &[], b"{}");
    assert_problem(&r, "method_not_allowed");
    assert_eq!(r.header("allow"), Some("GET, HEAD, POST"));
}
