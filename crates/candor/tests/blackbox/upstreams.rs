//! Upstreams of several targets, black-box: round-robin, retries of requests that never
//! left (to the other target), the retries that must not happen (a non-idempotent request
//! that went out, the budget spent, a response already started), passive ejection,
//! `no_healthy_upstream` with each target's cause and Retry-After, a target that comes
//! back, and `GET /upstreams`.

use crate::harness::*;

fn route(targets: &[String], extra: &str) -> String {
    let list: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
    format!(
        "[[routes]]\nname = \"r\"\npath = \"/{{*rest}}\"\nupstream = [{}]\n{extra}\n",
        list.join(", ")
    )
}

#[test]
fn requests_take_turns_and_a_dead_target_is_retried_on_the_other_then_ejected() {
    let a = Upstream::start(Behaviour::Echo);
    let b = Upstream::start(Behaviour::Echo);
    let gw = Gateway::start(&route(&[a.url(), b.url()], ""));
    for _ in 0..4 {
        assert_eq!(gw.get("/x").status, 200);
    }
    assert_eq!((a.heads().len(), b.heads().len()), (2, 2));
    // Each target gets its own Host.
    assert!(
        a.heads()[0].ends_with(&a.addr.to_string()),
        "{:?}",
        a.heads()
    );
    assert!(
        b.heads()[0].ends_with(&b.addr.to_string()),
        "{:?}",
        b.heads()
    );

    let dead = Upstream::refused();
    let alive = Upstream::start(Behaviour::Echo);
    let gw = Gateway::start(&route(
        &[format!("http://{dead}"), alive.url()],
        "eject_after = 2\nejection_time = \"1m\"",
    ));
    // Every request is answered: those sent to the dead target go again, to the other.
    for _ in 0..8 {
        assert_eq!(gw.get("/y").status, 200);
    }
    assert_eq!(alive.heads().len(), 8);
    let report = gw.admin_get("/upstreams");
    assert_eq!(report["routes"][0]["targets"][0], format!("http://{dead}"));
    let targets = report["targets"].as_array().unwrap();
    let dead_row = targets
        .iter()
        .find(|t| t["target"] == dead.to_string())
        .unwrap();
    assert_eq!(dead_row["state"], "ejected", "{report}");
    assert_eq!(
        dead_row["failed"], 2,
        "ejected after 2 failures in a row: {report}"
    );
    assert!(
        dead_row["recent_failures"][0]["cause"]
            .as_str()
            .unwrap()
            .starts_with("connection refused"),
        "{report}"
    );
    let retried = gw.log_line(&format!("http://{dead}"));
    assert!(retried.contains("retry"), "{retried}");
}

#[test]
fn every_target_ejected_is_no_healthy_upstream_until_one_comes_back() {
    let dead = Upstream::refused();
    let gw = Gateway::start(&route(
        &[format!("http://{dead}")],
        "retries = 0\neject_after = 1\nejection_time = \"300ms\"\nmax_ejected_percent = 100",
    ));
    assert_problem(&gw.get("/z"), "upstream_unreachable");
    let r = gw.get("/z");
    let b = assert_problem(&r, "no_healthy_upstream");
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(b["targets"][0]["target"], "upstream");
    assert!(
        b["targets"][0]["last_failure"]
            .as_str()
            .unwrap()
            .starts_with("connection refused"),
        "{b}"
    );
    let detail = b["detail"].as_str().unwrap();
    assert!(
        detail.starts_with(
            "Route r has no healthy upstream: every target is ejected after failing in a row: upstream (connection refused"
        ) && detail.contains("tried again in 1 s"),
        "{detail}"
    );
    // The target comes back: once its ejection ends it is tried, and answers.
    let back = Upstream::start_on(dead, Behaviour::Echo);
    assert!(gw.eventually(|g| g.get("/z").status == 200));
    assert!(!back.heads().is_empty());
}

#[test]
fn requests_that_went_out_are_retried_only_when_they_may_be() {
    let reset = Upstream::start(Behaviour::Reset);
    let gw = Gateway::start(&route(
        &[reset.url()],
        "retries = 2\nretry_on = [\"connect\", \"reset\"]\neject_after = 0",
    ));
    // GET went out and the connection failed: idempotent, tried 3 times.
    let b = assert_problem(&gw.get("/g"), "upstream_protocol_error");
    assert_eq!(b["tries"].as_array().unwrap().len(), 2, "{b}");
    assert_eq!(reset.heads().len(), 3);
    // POST with a streamed body: not idempotent, sent once.
    let b = assert_problem(
        &gw.request("POST", "/p", &[], b"{\"a\":1}"),
        "upstream_protocol_error",
    );
    assert!(b.get("tries").is_none(), "{b}");
    assert_eq!(reset.heads().len(), 4);
    // POST with an Idempotency-Key and no body: may be sent again.
    let b = assert_problem(
        &gw.request("POST", "/k", &[("Idempotency-Key", "k-1")], b""),
        "upstream_protocol_error",
    );
    assert_eq!(b["tries"].as_array().unwrap().len(), 2, "{b}");
    assert_eq!(reset.heads().len(), 7);

    // 503s are retried when the route says so, for idempotent requests; the last answer
    // is passed on.
    let busy = Upstream::start(Behaviour::Status(503));
    let gw = Gateway::start(&route(
        &[busy.url()],
        "retries = 2\nretry_on = [\"503\"]\neject_after = 0",
    ));
    assert_eq!(gw.get("/s").status, 503);
    assert_eq!(busy.heads().len(), 3);
    assert_eq!(gw.request("POST", "/s", &[], b"x").status, 503);
    assert_eq!(busy.heads().len(), 4);

    // No budget: no retry, and the answer says why.
    let dead = Upstream::refused();
    let gw = Gateway::start(&route(
        &[format!("http://{dead}")],
        "retries = 2\nretry_budget = 0\neject_after = 0",
    ));
    let b = assert_problem(&gw.get("/b"), "upstream_unreachable");
    assert_eq!(b["not_retried"], "the retry budget is spent", "{b}");
    assert!(
        b["detail"].as_str().unwrap().starts_with(
            "Route r could not connect to its upstream (not retried: the retry budget is spent): connection refused"
        ),
        "{b}"
    );

    // A response already started is never sent again: the client gets it cut short.
    let cut = Upstream::start(Behaviour::CutBody);
    let gw = Gateway::start(&route(&[cut.url()], "retries = 3"));
    let mut s = std::net::TcpStream::connect(gw.addr).unwrap();
    std::io::Write::write_all(
        &mut s,
        b"GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let raw = String::from_utf8_lossy(&read_to_close(&mut s)).into_owned();
    assert!(raw.starts_with("HTTP/1.1 200 OK\r\n"), "{raw}");
    assert!(raw.ends_with("\r\n\r\n0123456789"), "{raw}");
    assert_eq!(cut.heads().len(), 1);
}

#[test]
fn check_reports_bad_upstream_policies() {
    check_reports(
        r#"
[[routes]]
name = "r"
path = "/r"
upstream = ["http://127.0.0.1:1/a", "http://127.0.0.1:2/b"]

[[routes]]
name = "s"
path = "/s"
upstream = ["http://127.0.0.1:1", "http://127.0.0.1:1"]
balance = "fastest"
retry_on = ["connect", "timeout"]
connect_timeout = "2m"
max_ejected_percent = 0
"#,
        &[
            "routes[0].upstream: `http://127.0.0.1:2/b` has the base path `/b`, the first target `/a`; targets share one",
            "routes[1].upstream: `http://127.0.0.1:1` is listed twice",
        ],
    );
    check_reports(
        r#"
[[routes]]
name = "s"
path = "/s"
upstream = ["http://127.0.0.1:1", "http://127.0.0.1:2"]
balance = "fastest"
retry_on = ["connect", "timeout"]
connect_timeout = "2m"
max_ejected_percent = 0
health_check = { path = "health", interval = "1ms", unhealthy = 3 }
"#,
        &[
            "routes[0].health_check.path: `health` is not a path",
            "routes[0].health_check.interval: must be from 100ms to 1h",
            "routes[0].health_check.unhealthy: unknown key `unhealthy` (expected one of: path, interval, timeout, healthy_after, unhealthy_after)",
            "routes[0].balance: unknown balance `fastest`",
            "routes[0].retry_on: `timeout` is not a retry condition",
            "routes[0].connect_timeout: must be from 10ms to 60s",
            "routes[0].max_ejected_percent: 0 is out of range",
        ],
    );
}

/// A TLS-terminating candor (the test CA's certificate for localhost and 127.0.0.1) in
/// front of an echo upstream: a real https:// upstream.
fn https_upstream(up: &Upstream) -> Gateway {
    Gateway::start(&format!(
        "[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n{}",
        fixture("server.pem").display(),
        fixture("server.key").display(),
        one_route("/{*rest}", &up.url(), "")
    ))
}

#[test]
fn https_upstreams_are_verified_and_their_failures_named() {
    let echo = Upstream::start(Behaviour::Echo);
    let tls = https_upstream(&echo);
    let port = tls.addr.port();
    let ca = fixture("ca.pem");
    let config = format!(
        "[[routes]]\nname = \"ok\"\npath = \"/ok/{{*rest}}\"\nupstream = \"https://localhost:{port}\"\nupstream_ca_file = \"{ca}\"\n\
         [[routes]]\nname = \"ip\"\npath = \"/ip/{{*rest}}\"\nupstream = \"https://127.0.0.1:{port}\"\nupstream_ca_file = \"{ca}\"\n\
         [[routes]]\nname = \"untrusted\"\npath = \"/untrusted/{{*rest}}\"\nupstream = \"https://localhost:{port}\"\nretries = 0\neject_after = 1\nmax_ejected_percent = 100\n\
         [[routes]]\nname = \"wrong-name\"\npath = \"/name/{{*rest}}\"\nupstream = \"https://localhost:{port}\"\nupstream_ca_file = \"{ca}\"\nupstream_sni = \"api.example.com\"\n\
         [[routes]]\nname = \"plain\"\npath = \"/plain/{{*rest}}\"\nupstream = \"https://{}\"\nconnect_timeout = \"300ms\"\nretries = 0\n",
        echo.addr,
        ca = ca.display()
    );
    let gw = Gateway::start(&config);
    let r = gw.get("/ok/x");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("/ok/x"), "{}", r.text());
    assert_eq!(gw.get("/ip/y").status, 200);
    // The system's CAs do not include the test CA.
    let b = assert_problem(&gw.get("/untrusted/x"), "upstream_unreachable");
    assert!(
        b["detail"].as_str().unwrap().ends_with(
            "TLS handshake failed: the upstream's certificate is not signed by a CA the system trusts (set upstream_ca_file to trust a private CA)."
        ),
        "{b}"
    );
    // The client is told which check failed, never the server's paths; the log has them.
    assert!(!b.to_string().contains("/etc/ssl"), "{b}");
    let line = gw.log_line("TLS handshake with an upstream failed");
    assert!(
        line.contains("ca-certificates.crt") && line.contains(&format!("localhost:{port}")),
        "{line}"
    );
    // The attack probe's finding: health was shared by address, so the route with the
    // wrong CA ejected the target for the route with the right one. It is per route now.
    assert_problem(&gw.get("/untrusted/x"), "no_healthy_upstream");
    assert_eq!(gw.get("/ok/x").status, 200);
    let b = assert_problem(&gw.get("/name/x"), "upstream_unreachable");
    assert!(
        b["detail"].as_str().unwrap().ends_with(
            "TLS handshake failed: the upstream's certificate is not valid for the name it was checked against (the target's host, or upstream_sni)."
        ),
        "{b}"
    );
    assert!(!b.to_string().contains("api.example.com"), "{b}");
    assert!(
        gw.log_line("\"name_checked\":\"api.example.com\"")
            .contains("TLS handshake with an upstream failed")
    );
    // https:// to a port that speaks plain HTTP (and waits for a request head).
    let b = assert_problem(&gw.get("/plain/x"), "upstream_unreachable");
    assert!(
        b["detail"].as_str().unwrap().ends_with(
            "TLS handshake not done within 300 ms (connect_timeout; is the upstream serving TLS on that port?)."
        ),
        "{b}"
    );

    // TLS settings on a plain upstream, and files that are not there, are reported.
    let out = check_reports(
        &format!(
            "[[routes]]\nname = \"a\"\npath = \"/a\"\nupstream = \"http://127.0.0.1:1\"\nupstream_sni = \"x\"\n\
             [[routes]]\nname = \"b\"\npath = \"/b\"\nupstream = \"https://127.0.0.1:1\"\nupstream_ca_file = \"nope.pem\"\n\
             [[routes]]\nname = \"c\"\npath = \"/c\"\nupstream = \"https://127.0.0.1:1\"\nupstream_client_cert = \"{}\"\n\
             [[routes]]\nname = \"d\"\npath = \"/d\"\nupstream = \"http://user:secretpw@127.0.0.1:1\"\n",
            fixture("server.pem").display()
        ),
        &[
            "routes[3].upstream: `http://…@127.0.0.1:1` carries credentials; an upstream URL may not",
            "routes[0].upstream_sni: applies to https:// upstreams; this route's is http://",
            "routes[1].upstream_ca_file: cannot read the CA file",
            "routes[2].upstream_client_key: missing: upstream_client_cert is set, and a client certificate needs both",
        ],
    );
    assert!(!out.contains("secretpw"), "{out}");
}

#[test]
fn health_checks_take_a_target_out_and_bring_it_back() {
    let addr = Upstream::refused();
    let gw = Gateway::start(&route(
        &[format!("http://{addr}")],
        "eject_after = 0\nretries = 0\nhealth_check = { path = \"/health\", interval = \"100ms\", timeout = \"1s\", healthy_after = 1, unhealthy_after = 2 }",
    ));
    // Nothing listens: the checks fail and take the target out (passive ejection is off).
    assert!(gw.eventually(|g| g.get("/x").status == 503));
    let b = assert_problem(&gw.get("/x"), "no_healthy_upstream");
    assert!(
        b["targets"][0]["last_failure"]
            .as_str()
            .unwrap()
            .starts_with("health check GET /health: connection refused"),
        "{b}"
    );
    let report = gw.admin_get("/upstreams");
    assert_eq!(report["targets"][0]["health_checks"], "failing", "{report}");
    // It comes up: the next check passes and it is back.
    let back = Upstream::start_on(addr, Behaviour::Echo);
    assert!(gw.eventually(|g| g.get("/x").status == 200));
    assert!(
        back.heads()
            .iter()
            .any(|h| h.starts_with("GET /health HTTP/1.1")),
        "{:?}",
        back.heads()
    );
}

#[test]
fn a_retry_with_no_target_left_passes_the_last_answer_on() {
    // The review's finding: the 503 that ejected the only target was dropped for the
    // gateway's own no_healthy_upstream.
    let busy = Upstream::start(Behaviour::Status(503));
    let gw = Gateway::start(&route(
        &[busy.url()],
        "retries = 1\nretry_on = [\"503\"]\neject_after = 1\nmax_ejected_percent = 100",
    ));
    let r = gw.get("/x");
    assert_eq!(r.status, 503);
    assert_eq!(r.header("content-type"), Some("text/plain"), "{}", r.text());
    assert_eq!(busy.heads().len(), 1);
}

#[test]
fn clients_are_told_the_upstreams_name_and_the_log_its_addresses() {
    let dead = Upstream::refused();
    let other = Upstream::refused();
    let gw = Gateway::start(&route(
        &[format!("http://{dead}"), format!("http://{other}")],
        "upstream_name = \"devices-api\"\nretries = 1\neject_after = 0",
    ));
    let r = gw.get("/n");
    let b = assert_problem(&r, "upstream_unreachable");
    let detail = b["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("Route r could not connect to its upstream devices-api (target ")
            && detail.contains(" of 2) (try 2; before: devices-api (target "),
        "{detail}"
    );
    assert!(
        b["tries"][0]["target"]
            .as_str()
            .unwrap()
            .starts_with("devices-api (target "),
        "{b}"
    );
    let text = r.text();
    for addr in [dead, other] {
        assert!(!text.contains(&addr.to_string()), "{text}");
    }
    // The log line has both addresses: the retried one and the last.
    let rid = b["request_id"].as_str().unwrap();
    let line = gw.log_line(&format!("\"request_id\":\"{rid}\""));
    assert!(
        line.contains(&format!("http://{dead}")) && line.contains(&format!("http://{other}")),
        "{line}"
    );

    // An address is not a name, and a name is short words.
    check_reports(
        &route(&[format!("http://{dead}")], "upstream_name = \"10.0.0.7\""),
        &["routes[0].upstream_name", "is an address"],
    );
    check_reports(
        &route(&[format!("http://{dead}")], "upstream_name = \"a/b\""),
        &[
            "routes[0].upstream_name",
            "is not a name clients can be shown",
        ],
    );
}
