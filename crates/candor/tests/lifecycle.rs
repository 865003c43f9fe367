//! Configuration checking, reload (file change and SIGHUP), graceful shutdown, the CLI, the
//! operator catalog, the error pages and the admin listener — black-box.

mod common;
use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

fn candor(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const BAD: &str = r#"[server]
listen = "127.0.0.1:80800"
trusted_proxies = ["10.0.0.0/40"]

[limits]
max_body_bytes = "lots"

[[routes]]
name = "devices"
path = "/v1/devices"
methds = ["GET"]
upstream = "http://127.0.0.1:9000"
timeout = "forever"

[[routes]]
name = "broken"
path = "v1/x"
mode = "maintainance"
"#;

#[test]
fn check_reports_every_problem_with_position() {
    let dir = temp_dir("check");
    let file = dir.join("bad.toml");
    std::fs::write(&file, BAD).unwrap();
    let (code, out, _) = candor(&["check", "--config", file.to_str().unwrap()]);
    assert_eq!(code, 1);
    let f = file.display().to_string();
    assert!(out.contains(&format!("{f}: 7 problems")), "{out}");
    for expected in [
        format!("{f}:2:10: server.listen: `127.0.0.1:80800` is not an address"),
        format!("{f}:3:20: server.trusted_proxies: `/40` is not a prefix length from 0 to 32"),
        format!(
            "{f}:6:18: limits.max_body_bytes: wrong type: found string (expected an integer from 0 to 1099511627776)"
        ),
        format!("{f}:11:1: routes[0].methds: unknown key `methds`; did you mean `methods`?"),
        format!("{f}:13:11: routes[0].timeout: \"forever\" is not a duration"),
        format!("{f}:17:8: routes[1].path: `v1/x` must start with '/'"),
        format!(
            "{f}:18:8: routes[1].mode: unknown mode `maintainance`; did you mean `maintenance`?"
        ),
    ] {
        assert!(out.contains(&expected), "missing `{expected}` in:\n{out}");
    }

    let good = dir.join("good.toml");
    std::fs::write(&good, one_route("/a", "http://127.0.0.1:9", "")).unwrap();
    let (code, out, _) = candor(&["check", "--config", good.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("OK — 1 route"), "{out}");

    // `serve` refuses to start on a bad file and says why.
    let (code, _, err) = candor(&["serve", "--config", file.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("7 problems"), "{err}");
}

#[test]
fn a_valid_change_applies_and_an_invalid_one_is_refused() {
    let up = Upstream::start(Behaviour::Echo);
    let gw = Gateway::start(&one_route("/a", &up.url(), ""));
    assert_eq!(gw.get("/a").status, 200);
    assert_problem(&gw.get("/b"), "route_not_found");

    let two = format!(
        "{}[[routes]]\nname = \"b\"\npath = \"/b\"\nupstream = \"{}\"\n",
        one_route("/a", &up.url(), ""),
        up.url()
    );
    std::fs::write(&gw.config, &two).unwrap();
    assert!(
        gw.eventually(|g| g.get("/b").status == 200),
        "new route served after the file changed"
    );

    std::fs::write(&gw.config, "[[routes]]\npath = \"/c\"\nupstrem = \"x\"\n").unwrap();
    assert!(gw.eventually(|g| g.log().contains("configuration rejected")));
    assert!(
        gw.log()
            .contains("unknown key `upstrem`; did you mean `upstream`?"),
        "the log carries the report"
    );
    assert_eq!(gw.get("/b").status, 200, "the running configuration stays");
    assert_eq!(gw.get("/a").status, 200);
}

#[test]
fn sighup_reloads() {
    let up = Upstream::start(Behaviour::Echo);
    let first = one_route("/aaaa", &up.url(), "");
    let gw = Gateway::start(&first);
    // Same size, same modification time: only SIGHUP can make the gateway see the change.
    let reference = gw.dir.join("ref.toml");
    assert!(
        Command::new("cp")
            .arg("-p")
            .arg(&gw.config)
            .arg(&reference)
            .status()
            .unwrap()
            .success()
    );
    std::thread::sleep(Duration::from_millis(1200));
    std::fs::write(&gw.config, first.replace("/aaaa", "/bbbb")).unwrap();
    assert!(
        Command::new("touch")
            .arg("-r")
            .arg(&reference)
            .arg(&gw.config)
            .status()
            .unwrap()
            .success()
    );
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(gw.get("/aaaa").status, 200, "not reloaded yet");
    gw.signal("HUP");
    assert!(gw.eventually(|g| g.get("/bbbb").status == 200));
    assert_problem(&gw.get("/aaaa"), "route_not_found");
}

#[test]
fn sigterm_drains_in_flight_requests_then_exits_zero() {
    let slow = Upstream::start(Behaviour::Slow(Duration::from_millis(1500)));
    let mut gw = Gateway::start(&one_route("/slow", &slow.url(), "timeout = \"10s\""));
    let addr = gw.addr;
    let in_flight = std::thread::spawn(move || request(addr, "GET", "/slow", &[], b""));
    std::thread::sleep(Duration::from_millis(400));
    // Meanwhile the configuration changes: the in-flight request keeps its own.
    std::fs::write(&gw.config, one_route("/other", &slow.url(), "")).unwrap();
    std::thread::sleep(Duration::from_millis(700));
    gw.signal("TERM");
    let r = in_flight.join().unwrap();
    assert_eq!(r.status, 200, "in-flight request finished: {}", r.text());
    let started = Instant::now();
    let status = loop {
        if let Some(s) = gw.child.try_wait().unwrap() {
            break s;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "did not exit");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "stopped accepting"
    );
}

#[test]
fn drain_deadline_bounds_shutdown() {
    let hang = Upstream::start(Behaviour::Hang);
    let mut gw = Gateway::start(&format!(
        "[server]\ndrain_timeout = \"1s\"\n{}",
        one_route("/h", &hang.url(), "timeout = \"60s\"")
    ));
    let addr = gw.addr;
    std::thread::spawn(move || {
        let _ = std::panic::catch_unwind(|| request(addr, "GET", "/h", &[], b""));
    });
    std::thread::sleep(Duration::from_millis(300));
    gw.signal("TERM");
    let started = Instant::now();
    let status = loop {
        if let Some(s) = gw.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "did not exit after the drain deadline"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
    assert!(gw.log().contains("drain deadline reached"));
}

#[test]
fn catalog_commands() {
    let (code, out, _) = candor(&["catalog", "list"]);
    assert_eq!(code, 0);
    assert!(out.lines().next().unwrap().starts_with("CODE"));
    for c in candor_catalog::codes::ALL {
        assert!(out.contains(c), "{c} missing from list");
    }
    let (code, out, _) = candor(&["catalog", "show", "upstream_timeout"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("upstream_timeout — Upstream timed out"),
        "{out}"
    );
    assert!(out.contains("What to check:\n  1. "), "{out}");
    let (code, _, err) = candor(&["catalog", "show", "route_not_fond"]);
    assert_eq!(code, 1);
    assert_eq!(
        err.trim(),
        "error[resource_not_found]: Error code route_not_fond does not exist in the catalog. Did you mean route_not_found?"
    );
    let (code, out, _) = candor(&["--help"]);
    assert_eq!(code, 0);
    for c in ["serve", "check", "catalog"] {
        assert!(out.contains(c));
    }
}

#[test]
fn operator_catalog_rewords_answers() {
    let dir = temp_dir("ops");
    std::fs::write(
        dir.join("ops.toml"),
        "[[error]]\ncode = \"route_not_found\"\ntitle = \"No such endpoint\"\nmessage = \"There is no {method} {path} here.{hint}\"\n",
    )
    .unwrap();
    let config = format!(
        "[server]\ncatalog = \"{}\"\npublic_base_url = \"https://api.example.com/\"\n",
        dir.join("ops.toml").display()
    );
    let gw = Gateway::start(&config);
    let b = assert_problem(&gw.get("/x"), "route_not_found");
    assert_eq!(b["title"], "No such endpoint");
    assert_eq!(b["detail"], "There is no GET /x here.");
    assert_eq!(b["type"], "https://api.example.com/errors/route_not_found");

    // A bad operator catalog is a configuration problem, reported by `check`.
    std::fs::write(
        dir.join("bad.toml"),
        "[[error]]\ncode = \"route_not_found\"\nmessage = \"{nope}\"\n",
    )
    .unwrap();
    let cfg = dir.join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\ncatalog = \"{}\"\n",
            dir.join("bad.toml").display()
        ),
    )
    .unwrap();
    let (code, out, _) = candor(&["check", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        out.contains("placeholder {nope} is not supplied by the gateway"),
        "{out}"
    );
}

#[test]
fn error_pages_resolve_type_urls() {
    let gw = Gateway::start("");
    let b = assert_problem(&gw.get("/nothing"), "route_not_found");
    let type_url = b["type"].as_str().unwrap();
    let path = type_url.split(&gw.addr.to_string()).nth(1).unwrap();
    let r = gw.get(path);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let page = r.json();
    assert_eq!(page["code"], "route_not_found");
    assert!(page["checklist"].as_array().unwrap().len() >= 2);

    let r = gw.request(
        "GET",
        path,
        &[("Accept", "text/html,application/xhtml+xml")],
        b"",
    );
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(r.text().contains("<h2>What to check</h2>"));

    let r = gw.get("/errors");
    assert_eq!(
        r.json().as_array().unwrap().len(),
        candor_catalog::codes::ALL.len()
    );

    let r = gw.get("/errors/rate_limitd");
    let b = assert_problem(&r, "resource_not_found");
    assert_eq!(
        b["detail"],
        "Error code rate_limitd does not exist in the catalog. Did you mean rate_limited?"
    );
}

#[test]
fn admin_listener() {
    let gw = Gateway::start("");
    let admin = gw.admin.unwrap();
    let r = request(admin, "GET", "/health", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "ok");
    assert!(r.header("x-request-id").is_some());
    let r = request(admin, "GET", "/catalog", &[], b"");
    assert!(
        r.json()
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["code"] == "internal_error")
    );
    let r = request(admin, "POST", "/health", &[], b"");
    assert_eq!(
        assert_problem(&r, "method_not_allowed")["allowed"],
        serde_json::json!(["GET", "HEAD"])
    );
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    let b = assert_problem(
        &request(admin, "GET", "/metricz", &[], b""),
        "route_not_found",
    );
    assert!(b["detail"].as_str().unwrap().contains("/health"), "{b}");
}
