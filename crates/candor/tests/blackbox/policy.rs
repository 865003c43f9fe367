//! Transport policy, black-box: HTTPS-only routes, redirects, allowed and denied networks,
//! and the client address behind trusted proxies.

use crate::harness::*;

#[test]
fn https_required_and_redirect() {
    let up = Upstream::start(Behaviour::Echo);
    let config = format!(
        "{}[[routes]]\nname = \"redirected\"\npath = \"/r\"\nupstream = \"{u}\"\nrequire_https = true\nredirect_to_https = true\n\
         [[routes]]\nname = \"plain-ok\"\npath = \"/p\"\nupstream = \"{u}\"\n",
        one_route("/secure", &up.url(), "require_https = true"),
        u = up.url()
    );
    let gw = Gateway::start(&config);
    let r = gw.get("/secure");
    let b = assert_problem(&r, "https_required");
    assert_eq!(r.status, 403);
    assert_eq!(
        b["detail"],
        "This API only accepts HTTPS; the request to /secure arrived over plain HTTP."
    );
    assert_eq!(up.hits.load(std::sync::atomic::Ordering::Relaxed), 0);

    let r = gw.send(b"GET /r?x=1 HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 308);
    assert_eq!(r.header("location"), Some("https://api.example.com/r?x=1"));
    assert_eq!(gw.get("/p").status, 200);

    // A forged X-Forwarded-Proto from an untrusted client changes nothing.
    let r = gw.request("GET", "/secure", &[("X-Forwarded-Proto", "https")], b"");
    assert_problem(&r, "https_required");
}

#[test]
fn trusted_proxy_may_vouch_for_https_and_the_client_address() {
    let up = Upstream::start(Behaviour::Echo);
    let config = format!(
        "[server]\ntrusted_proxies = [\"127.0.0.1\"]\n[access]\ndeny = [\"203.0.113.0/24\"]\n{}",
        one_route(
            "/secure",
            &up.url(),
            "require_https = true\nallow = [\"198.51.100.0/24\", \"203.0.113.0/24\"]"
        )
    );
    let gw = Gateway::start(&config);
    let ok = gw.request(
        "GET",
        "/secure",
        &[
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-For", "198.51.100.20"),
        ],
        b"",
    );
    assert_eq!(ok.status, 200, "{}", ok.text());

    let r = gw.request(
        "GET",
        "/secure",
        &[
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-For", "192.0.2.50"),
        ],
        b"",
    );
    let b = assert_problem(&r, "access_restricted");
    assert_eq!(
        b["detail"],
        "Requests from 192.0.2.50 are not allowed on /secure."
    );
    assert!(
        !r.text().contains("198.51.100"),
        "the allow-list is never disclosed"
    );

    // The global deny list applies on top of the route's allow list.
    let r = gw.request(
        "GET",
        "/secure",
        &[
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-For", "203.0.113.5"),
        ],
        b"",
    );
    assert_problem(&r, "access_restricted");
}

#[test]
fn a_route_in_maintenance_still_runs_the_transport_policy_first() {
    // The finding: maintenance answered 503 before the HTTPS-only and network checks.
    let config = "[[routes]]\nname = \"reports\"\npath = \"/reports\"\nmode = \"maintenance\"\n\
                  retry_after = 30\nrequire_https = true\n\
                  [[routes]]\nname = \"internal\"\npath = \"/internal\"\nmode = \"maintenance\"\n\
                  allow = [\"10.0.0.0/8\"]\n";
    let gw = Gateway::start(config);
    let r = gw.get("/reports");
    assert_problem(&r, "https_required");
    assert_eq!(r.header("retry-after"), None);
    assert_problem(&gw.get("/internal"), "access_restricted");
}

#[test]
fn policy_config_problems_are_reported() {
    let dir = temp_dir("policy");
    let file = dir.join("c.toml");
    std::fs::write(
        &file,
        "[access]\nallow = [\"10.0.0.0/99\"]\nrequire_htps = true\n",
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .args(["check", "--config", file.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("access.allow: `/99` is not a prefix length"),
        "{text}"
    );
    assert!(
        text.contains("unknown key `require_htps`; did you mean `require_https`?"),
        "{text}"
    );
}
