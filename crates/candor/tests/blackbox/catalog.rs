//! The error catalog as people read it, black-box: `candor catalog list` and `show`, an
//! operator catalog rewording answers, and the `/errors/{code}` pages that type URLs
//! resolve to (JSON and HTML).

use crate::harness::*;

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
    // Issue 15, item 12: another letter case or separator is a typo like any other.
    for typed in ["ROUTE_NOT_FOUND", "Route-Not-Found", "ROUTE_NOT_FOND"] {
        let (code, _, err) = candor(&["catalog", "show", typed]);
        assert_eq!(code, 1);
        assert_eq!(
            err.trim(),
            format!(
                "error[resource_not_found]: Error code {typed} does not exist in the catalog. Did you mean route_not_found?"
            )
        );
    }
    let (code, _, err) = candor(&["catalog", "show", "no_such_thing_at_all"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("`candor catalog list` shows every code."),
        "{err}"
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
