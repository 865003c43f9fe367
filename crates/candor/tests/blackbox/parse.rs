//! Parse stage, black-box: the request target's percent-encoding and one canonical path
//! (dot segments and doubled slashes resolved before routing).

use crate::harness::*;
use crate::route::gateway;

#[test]
fn bad_url_encoding_is_named() {
    let (gw, up) = gateway();
    let r = gw.get("/v1/customers/ac%zzme/devices");
    let b = assert_problem(&r, "invalid_url_encoding");
    assert_eq!(r.status, 400);
    assert_eq!(b["bytes"], "%zz");
    assert_eq!(b["position"], 16);

    let b = assert_problem(
        &gw.get("/v1/customers/%C3%28/devices"),
        "invalid_url_encoding",
    );
    assert!(
        b["detail"].as_str().unwrap().contains("invalid UTF-8"),
        "{b}"
    );

    let b = assert_problem(
        &gw.get("/v1/customers/acme/devices?q=%G0"),
        "invalid_url_encoding",
    );
    assert_eq!(b["position"], 29);

    // Encoded dot segments cannot climb to another route.
    let b = assert_problem(&gw.get("/files/%2e%2e/v1/admin"), "invalid_url_encoding");
    assert!(
        b["detail"]
            .as_str()
            .unwrap()
            .contains("encoded dot segment"),
        "{b}"
    );
    let b = assert_problem(&gw.get("/files/x%00y"), "invalid_url_encoding");
    assert!(b["detail"].as_str().unwrap().contains("control"), "{b}");
    let hits = up.hits.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(hits, 0, "nothing malformed reached the upstream");
}

#[test]
fn paths_are_normalised_before_routing_and_forwarding() {
    let (gw, _up) = gateway();
    let r = gw.get("/files//a/./b/../c.txt");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["target"], "/base/files/a/c.txt");
    // Literal dot segments resolve inside the path and cannot leave the route's prefix.
    let r = gw.get("/files/../v1/customers/acme/devices");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["target"],
        "/v1/customers/acme/devices",
        "resolved before routing, like a browser would"
    );
    let r = gw.get("/v1//customers/acme//devices");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["target"], "/v1/customers/acme/devices");
}
