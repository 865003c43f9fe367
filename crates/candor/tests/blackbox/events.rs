//! The API event log: the events a request, a connection, a reload and a shutdown write;
//! `candor explain` and the admin API's `/requests/{id}` and `/events`; the JSON log line's
//! trail as an array.

use crate::harness::*;
use serde_json::Value;
use std::path::Path;

/// Every event written so far in the log folder `dir`, in file order.
pub(crate) fn events_in(dir: &Path) -> Vec<Value> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p: &std::path::PathBuf| p.extension().is_some_and(|x| x == "jsonl"));
    files.sort();
    files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect::<Vec<Value>>()
        })
        .collect()
}

fn log_dir(gw: &Gateway) -> std::path::PathBuf {
    gw.dir.join("candor-data").join("events")
}

/// Waits for an event that `pick` accepts.
fn wait_event(gw: &Gateway, what: &str, pick: impl Fn(&Value) -> bool) -> Value {
    let mut found = None;
    gw.eventually(|g| {
        found = events_in(&log_dir(g)).into_iter().find(|e| pick(e));
        found.is_some()
    });
    found.unwrap_or_else(|| {
        panic!(
            "no {what} event in {:#?}",
            events_in(&log_dir(gw))
                .iter()
                .map(|e| e["type"].clone())
                .collect::<Vec<_>>()
        )
    })
}

fn admin(gw: &Gateway, path: &str) -> Response {
    let token = std::fs::read_to_string(gw.printed("admin API token: in ")).unwrap();
    request(
        gw.admin.unwrap(),
        "GET",
        path,
        &[("Authorization", &format!("Bearer {}", token.trim()))],
        b"",
    )
}

#[test]
fn a_request_is_explained_by_id_in_the_terminal_the_admin_api_and_as_json() {
    let up = Upstream::start(Behaviour::Echo);
    let gw = Gateway::start(&one_route("/v1/devices", &up.url(), ""));
    let miss = gw.get("/v1/devicez");
    let rid = assert_problem(&miss, "route_not_found")["request_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let ok = gw.get("/v1/devices");
    assert_eq!(ok.status, 200);
    let ok_rid = ok.header("x-request-id").unwrap().to_owned();
    wait_event(&gw, "request.completed", |e| {
        e["request_id"] == ok_rid.as_str()
    });

    // The terminal: the request, each stage, the catalog's explanation and checklist.
    let out = cli(&gw, &["explain", &rid]);
    let first = format!("request {rid}");
    for needle in [
        first.as_str(),
        "GET /v1/devicez from 127.0.0.1",
        "answered 404 route_not_found",
        "stages:",
        "route_not_found — No route matches this request",
        "checklist:",
        "docs: ",
    ] {
        assert!(out.contains(needle), "{needle:?} not in:\n{out}");
    }
    // --json: the same story for tools.
    let json: Value = serde_json::from_str(&cli(&gw, &["explain", &rid, "--json"])).unwrap();
    assert_eq!(json["status"], 404);
    assert_eq!(json["code"], "route_not_found");
    assert_eq!(json["error"]["retry"], "never");
    assert!(
        json["stages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["stage"] == "route")
    );

    // A forwarded request: its upstream try is in the story, with the route.
    let json: Value = serde_json::from_str(&cli(&gw, &["explain", &ok_rid, "--json"])).unwrap();
    assert_eq!(json["status"], 200);
    assert_eq!(json["route"], "r");
    assert_eq!(json["type"], "request.completed");
    assert!(
        !json["upstream_tries"].as_array().unwrap().is_empty(),
        "{json:#}"
    );
    assert!(json["error"].is_null());

    // The admin API tells the same story.
    let r = admin(&gw, &format!("/requests/{rid}"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["code"], "route_not_found");

    // An id that is not there: a clear answer, how far back the log goes, non-zero exit.
    let (code, _, err) = candor(&[
        "explain",
        "01NOTAREQUEST",
        "--config",
        gw.config.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("no request 01NOTAREQUEST in the event log, which goes back to 20"),
        "{err}"
    );
    let r = admin(&gw, "/requests/01NOTAREQUEST");
    let b = assert_problem(&r, "resource_not_found");
    assert!(
        b["detail"]
            .as_str()
            .unwrap()
            .contains("The event log goes back to 20"),
        "{b}"
    );
    assert!(b["log_starts"].is_string());
}

#[test]
fn explain_finds_the_demo_log_with_no_flag() {
    let gw = Gateway::start_demo();
    let r = gw.get("/v1/devicez");
    let rid = r.header("x-request-id").unwrap().to_owned();
    let data = gw.dir.join("data");
    let mut out = None;
    gw.eventually(|_| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_candor"))
            .args(["explain", &rid])
            .current_dir(data.parent().unwrap())
            .arg("--data-dir")
            .arg(&data)
            .output()
            .unwrap();
        let ok = o.status.success();
        out = Some(String::from_utf8_lossy(&o.stdout).into_owned());
        ok
    });
    let out = out.unwrap();
    assert!(out.contains(&format!("request {rid}")), "{out}");
    // The demo's catalog and base URL: the docs link is the demo's own.
    assert!(
        out.contains(&format!("docs: http://{}/errors/", gw.addr)),
        "{out}"
    );
}

/// A config with `/v1/devices` and route `name` at `path`, both to `up`, the latter with
/// one rate-limit policy `policy` of one request a minute per `key`.
fn limited_route(up: &Upstream, name: &str, path: &str, policy: &str, key: &str) -> String {
    format!(
        "{}\n[[routes]]\nname = \"{name}\"\npath = \"{path}\"\nupstream = \"{}\"\n\n[[routes.rate_limits]]\nname = \"{policy}\"\nlimit = 1\nwindow = \"1m\"\nkey = \"{key}\"\n",
        one_route("/v1/devices", &up.url(), ""),
        up.url()
    )
}

#[test]
fn a_limit_refusing_a_flood_is_told_once_a_second_with_the_refusals_it_stands_for() {
    let up = Upstream::start(Behaviour::Echo);
    let config = limited_route(&up, "limited", "/limited", "one", "address");
    let gw = Gateway::start(&config);
    assert_eq!(gw.get("/limited").status, 200);
    for _ in 0..5 {
        assert_problem(&gw.get("/limited"), "rate_limited");
    }
    // A second on, one more refusal tells of those not told yet.
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    assert_problem(&gw.get("/limited"), "rate_limited");
    let mut told = Vec::new();
    gw.eventually(|g| {
        let all = events_in(&log_dir(g));
        let rejected = all
            .iter()
            .filter(|e| e["type"] == "request.rejected" && e["code"] == "rate_limited")
            .count();
        told = all
            .into_iter()
            .filter(|e| e["type"] == "limit.exceeded")
            .collect();
        rejected == 6
            && told
                .iter()
                .map(|e| e["facts"]["refused"].as_u64().unwrap())
                .sum::<u64>()
                == 6
    });
    // Every refused request has its own request.rejected; the limit is told with counts
    // (the first refusal at once, the rest a second later), not once per request.
    assert!(told.len() <= 3, "{told:#?}");
    assert_eq!(told[0]["facts"]["refused"], 1);
    assert_eq!(told[0]["facts"]["policy"], "one");
    assert_eq!(told[0]["route"], "limited");
}

#[test]
fn each_count_a_limit_keeps_is_told_apart() {
    // A limit per value of a header: the subject's words are the same for every value, and
    // each value's refusals are still told as its own.
    let up = Upstream::start(Behaviour::Echo);
    let config = limited_route(&up, "tenants", "/t", "per-tenant", "header:X-Tenant");
    let gw = Gateway::start(&config);
    for tenant in ["a", "b"] {
        let h = [("X-Tenant", tenant)];
        assert_eq!(gw.request("GET", "/t", &h, b"").status, 200);
        assert_problem(&gw.request("GET", "/t", &h, b""), "rate_limited");
    }
    let mut told = Vec::new();
    gw.eventually(|g| {
        told = events_in(&log_dir(g))
            .into_iter()
            .filter(|e| e["type"] == "limit.exceeded")
            .collect();
        told.len() == 2
    });
    assert!(told.iter().all(|e| e["facts"]["refused"] == 1), "{told:#?}");
}

#[test]
fn the_event_log_lists_what_happened_with_filters() {
    let up = Upstream::start(Behaviour::Echo);
    let dead = Upstream::refused();
    let config = format!(
        "{}\n[[routes]]\nname = \"dead\"\npath = \"/dead\"\nupstream = \"http://{dead}\"\nretries = 0\neject_after = 1\nejection_time = \"1m\"\nmax_ejected_percent = 100\n\n[[routes]]\nname = \"limited\"\npath = \"/limited\"\nupstream = \"{}\"\n\n[[routes.rate_limits]]\nname = \"one\"\nlimit = 1\nwindow = \"1m\"\nkey = \"address\"\n",
        one_route("/v1/devices", &up.url(), ""),
        up.url()
    );
    let gw = Gateway::start(&config);
    assert_eq!(gw.get("/v1/devices").status, 200);
    assert_problem(&gw.get("/dead"), "upstream_unreachable");
    assert_eq!(gw.get("/limited").status, 200);
    assert_problem(&gw.get("/limited"), "rate_limited");

    let started = wait_event(&gw, "api.started", |e| e["type"] == "api.started");
    assert_eq!(started["facts"]["config_generation"], 1);
    assert!(started["id"].as_str().unwrap().starts_with("ev_"));
    assert!(started["time"].as_str().unwrap().ends_with('Z'));
    wait_event(&gw, "config.applied", |e| {
        e["type"] == "config.applied" && e["facts"]["how"] == "start"
    });
    let down = wait_event(&gw, "upstream.down", |e| e["type"] == "upstream.down");
    assert_eq!(down["route"], "dead");
    assert_eq!(down["severity"], "critical", "no target left: {down}");
    assert_eq!(down["facts"]["healthy_targets"], 0);
    let limited = wait_event(&gw, "limit.exceeded", |e| e["type"] == "limit.exceeded");
    assert_eq!(limited["code"], "rate_limited");
    assert_eq!(limited["route"], "limited");
    let rejected = wait_event(&gw, "request.rejected", |e| {
        e["type"] == "request.rejected" && e["code"] == "upstream_unreachable"
    });
    assert_eq!(rejected["severity"], "error");
    assert_eq!(rejected["facts"]["source"], "upstream");
    assert!(rejected["facts"]["trail"].is_array());
    // A connection's close: bytes both ways, after its response, closed by the client.
    let closed = wait_event(&gw, "connection.closed", |e| {
        e["type"] == "connection.closed" && e["facts"]["requests"] == 1
    });
    let f = &closed["facts"];
    assert!(f["bytes_in"].as_u64().unwrap() > 20, "{f}");
    assert!(f["bytes_out"].as_u64().unwrap() > 100, "{f}");
    assert_eq!(f["after_response"], true, "{f}");
    assert_eq!(f["listener"], "main");

    // The admin API's /events, filtered (its index rows follow the lines by a linger).
    assert!(gw.eventually(|gw| {
        admin(gw, "/events?type=request.*&code=rate_limited").json()["events"]
            .as_array()
            .is_some_and(|e| !e.is_empty())
    }));
    let r = admin(&gw, "/events?type=request.*&code=rate_limited");
    assert_eq!(r.status, 200, "{}", r.text());
    let listed = r.json();
    let listed = listed["events"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{listed:#?}");
    assert_eq!(listed[0]["type"], "request.rejected");
    let r = admin(&gw, "/events?severity=critical");
    assert!(
        r.json()["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["severity"] == "critical")
    );
    let r = admin(&gw, "/events?route=dead&limit=1");
    assert_eq!(r.json()["events"].as_array().unwrap().len(), 1);
    // A filter that is not one: every problem at once.
    let r = admin(
        &gw,
        "/events?type=request.rejectd&severity=loud&limit=0&colour=red",
    );
    let b = assert_problem(&r, "validation_failed");
    let errors = b["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 4, "{b:#}");
    assert!(
        errors[0]["detail"]
            .as_str()
            .unwrap()
            .contains("did you mean request.rejected?"),
        "{b:#}"
    );
}

#[test]
fn reloads_shutdown_and_authentication_are_events() {
    let s = setup();
    let gw = &s.gw;
    let token = token(&s);
    let r = bearer(&s, "/v1/customers/acme/devices", &format!("Bearer {token}"));
    assert_eq!(r.status, 200, "{}", r.text());
    let bad = bearer(&s, "/v1/customers/acme/devices", "Bearer not.a.token");
    let bad_rid = bad.header("x-request-id").unwrap().to_owned();
    let issued = wait_event(gw, "auth.succeeded (token)", |e| {
        e["type"] == "auth.succeeded" && e["facts"]["grant_type"] == "client_credentials"
    });
    assert_eq!(issued["facts"]["client_id"], s.client_id.as_str());
    assert_eq!(issued["facts"]["account"], "acme");
    wait_event(gw, "auth.succeeded (bearer)", |e| {
        e["type"] == "auth.succeeded" && e["route"] == "devices"
    });
    let failed = wait_event(gw, "auth.failed", |e| e["type"] == "auth.failed");
    assert_eq!(failed["request_id"], bad_rid.as_str());
    assert_eq!(failed["code"], "credentials_malformed");
    // No token or secret in the log, ever.
    let all = std::fs::read_dir(log_dir(gw))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "jsonl"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect::<String>();
    assert!(!all.contains(&token), "a token is in the event log");
    assert!(
        !all.contains(&s.secret),
        "a client secret is in the event log"
    );

    // A rejected reload: the full report; then a good one.
    let good = std::fs::read_to_string(&gw.config).unwrap();
    std::fs::write(
        &gw.config,
        format!("{good}\n[timeouts]\nkeepalive = \"forever\"\n"),
    )
    .unwrap();
    gw.signal("HUP");
    let rejected = wait_event(gw, "config.rejected", |e| e["type"] == "config.rejected");
    assert_eq!(rejected["severity"], "warning");
    assert_eq!(
        rejected["facts"]["problems"][0]["key"],
        "timeouts.keepalive"
    );
    assert!(
        rejected["facts"]["report"]
            .as_str()
            .unwrap()
            .contains("is not a duration"),
        "{rejected}"
    );
    std::fs::write(&gw.config, &good).unwrap();
    gw.signal("HUP");
    wait_event(gw, "config.applied", |e| {
        e["type"] == "config.applied" && e["facts"]["how"] == "reload"
    });
    let dir = log_dir(gw);
    let Setup { mut gw, .. } = s;
    gw.signal("TERM");
    let _ = gw.child.wait();
    let stopped = events_in(&dir)
        .into_iter()
        .find(|e| e["type"] == "api.stopped")
        .expect("api.stopped written before the process ended");
    assert_eq!(stopped["facts"]["drained"], true);
}

#[test]
fn the_json_log_line_carries_the_trail_as_an_array() {
    let up = Upstream::start(Behaviour::Echo);
    let gw = Gateway::start(&one_route("/v1/devices", &up.url(), ""));
    let r = gw.get("/v1/devicez");
    let rid = r.header("x-request-id").unwrap().to_owned();
    let line = gw.log_line(&rid);
    let v: Value = serde_json::from_str(&line).unwrap();
    assert!(v["trail"].is_array(), "{line}");
    assert_eq!(v["trail"][0]["stage"], "route");
    assert_eq!(v["status"], 404);
    assert_eq!(v["target"], "candor::request");
}

#[test]
fn the_event_log_can_be_turned_off() {
    let up = Upstream::start(Behaviour::Echo);
    let gw = Gateway::start(&format!(
        "[events]\nenabled = false\n\n{}",
        one_route("/v1/devices", &up.url(), "")
    ));
    assert_eq!(gw.get("/v1/devices").status, 200);
    assert!(!log_dir(&gw).exists());
    let r = admin(&gw, "/events");
    let b = assert_problem(&r, "event_log_unavailable");
    assert!(
        b["detail"].as_str().unwrap().contains("enabled = false"),
        "{b}"
    );
}

#[test]
fn log_lines_for_people_say_what_happened_in_one_line() {
    let up = Upstream::start(Behaviour::Echo);
    let gw = Gateway::start_with(
        &one_route("/v1/devices", &up.url(), ""),
        &["--log-format", "human"],
        |_| {},
    );
    let r = gw.get("/v1/devicez");
    let rid = r.header("x-request-id").unwrap().to_owned();
    let line = gw.log_line(&rid);
    assert!(!line.starts_with('{'), "{line}");
    for needle in [
        " INFO  404 route_not_found GET /v1/devicez ",
        &format!("request_id={rid}"),
        &format!("(candor explain {rid})"),
    ] {
        assert!(line.contains(needle), "{needle:?} not in {line}");
    }
    assert!(!line.contains("trail"), "{line}");
    // A rejected reload's report (several lines of text) stays on one line.
    let good = std::fs::read_to_string(&gw.config).unwrap();
    std::fs::write(
        &gw.config,
        format!("{good}\n[timeouts]\nkeepalive = \"forever\"\nrequest_head = \"never\"\n"),
    )
    .unwrap();
    gw.signal("HUP");
    let rejected = gw.log_line("configuration rejected");
    assert!(rejected.contains(" ERROR candor::config "), "{rejected}");
    assert!(rejected.contains("keepalive"), "{rejected}");
    assert!(
        rejected.contains("\\n"),
        "the report's lines are escaped: {rejected}"
    );
    assert!(
        rejected.contains("request_head"),
        "both problems on the one line: {rejected}"
    );
    // No line is JSON.
    let log = gw.log();
    assert!(log.lines().all(|l| !l.starts_with('{')), "{log}");
}

#[test]
fn a_request_id_sent_twice_hides_neither_request() {
    let up = Upstream::start(Behaviour::Echo);
    let gw = Gateway::start(&one_route("/v1/devices", &up.url(), ""));
    let shared = [("X-Request-Id", "SHARED-1")];
    assert_eq!(gw.request("GET", "/v1/devices", &shared, b"").status, 200);
    assert_problem(
        &gw.request("GET", "/v1/devicez", &shared, b""),
        "route_not_found",
    );
    let mut story = Value::Null;
    gw.eventually(|g| {
        let (code, out, _) = candor(&[
            "explain",
            "SHARED-1",
            "--json",
            "--config",
            g.config.to_str().unwrap(),
        ]);
        story = serde_json::from_str(&out).unwrap_or(Value::Null);
        code == 0
            && story["other_requests"]
                .as_array()
                .is_some_and(|o| o.len() == 1)
    });
    // The newest is told; the other is listed, not hidden.
    assert_eq!(story["code"], "route_not_found", "{story:#}");
    assert_eq!(story["other_requests"][0]["status"], 200, "{story:#}");
    assert_eq!(story["other_requests"][0]["path"], "/v1/devices");
    let text = cli(&gw, &["explain", "SHARED-1"]);
    assert!(
        text.contains("1 other request(s) carried this id"),
        "{text}"
    );
}

#[test]
fn who_closed_a_connection_is_told() {
    let up = Upstream::start(Behaviour::Echo);
    let gw = Gateway::start(&format!(
        "[timeouts]\nkeepalive = \"1s\"\n\n{}",
        one_route("/v1/devices", &up.url(), "")
    ));
    // One request, then silence: the gateway closes the idle connection.
    let mut s = std::net::TcpStream::connect(gw.addr).unwrap();
    std::io::Write::write_all(&mut s, b"GET /v1/devices HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let r = read_response(&mut s);
    assert_eq!(r.status, 200);
    let closed = wait_event(&gw, "connection.closed (idle)", |e| {
        e["type"] == "connection.closed" && e["facts"]["requests"] == 1
    });
    assert_eq!(
        closed["facts"]["closed_by"], "gateway (idle (timeouts.keepalive))",
        "{closed}"
    );
    assert_eq!(closed["facts"]["after_response"], true);
    // /stats tells the log's own counters.
    let stats = gw.stats();
    let log = &stats["events"]["log"];
    assert_eq!(log["on"], true, "{stats}");
    assert!(log["written"].as_u64().unwrap() >= 3, "{log}");
    assert_eq!(log["lost"], 0);
    assert_eq!(log["write_errors"], 0);
    // A filter given twice is a problem, not a silent choice.
    let r = admin(&gw, "/events?type=auth.*&type=request.*");
    let b = assert_problem(&r, "validation_failed");
    assert_eq!(b["errors"][0]["reason"], "repeated", "{b}");
}
