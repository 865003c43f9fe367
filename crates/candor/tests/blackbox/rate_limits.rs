//! Rate limits, black-box: GCRA policies per route and key, `rate_limited` 429 with
//! `Retry-After`, the RateLimit fields on every answer of a limited route, `violated-policies`,
//! statuses set per route, counts kept across a reload, and `candor check` on bad policies.

use crate::harness::*;

const TWO_POLICIES: &str = r#"
[[routes.rate_limits]]
name = "burst"
limit = 3
window = "30s"
key = "address"

[[routes.rate_limits]]
name = "daily"
limit = 1000
window = "1d"
key = "address"
"#;

#[test]
fn a_burst_passes_then_429_says_which_policy_and_when() {
    let up = Upstream::start(Behaviour::Echo);
    let gw = Gateway::start(&one_route("/r", &up.url(), TWO_POLICIES));
    let remaining: Vec<String> = (0..3)
        .map(|_| {
            let r = gw.get("/r");
            assert_eq!(r.status, 200);
            assert_eq!(
                r.header("ratelimit-policy"),
                Some("\"burst\";q=3;w=30, \"daily\";q=1000;w=86400")
            );
            r.header("ratelimit").unwrap().to_owned()
        })
        .collect();
    // One request per 10 s comes back; per 86.4 s for the daily budget.
    assert_eq!(
        remaining,
        [
            "\"burst\";r=2;t=10, \"daily\";r=999;t=87",
            "\"burst\";r=1;t=20, \"daily\";r=998;t=173",
            "\"burst\";r=0;t=30, \"daily\";r=997;t=260",
        ]
    );
    let r = gw.get("/r");
    let b = assert_problem(&r, "rate_limited");
    assert_eq!(r.status, 429);
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=10).contains(&wait), "{wait}");
    // t: until the whole quota is back (the next request in `wait`, the other two 10 s
    // apart after it). The daily budget is shown as it stands: the refused request was not
    // counted in it.
    let fields = r.header("ratelimit").unwrap();
    let (burst, daily) = fields
        .strip_prefix("\"burst\";r=0;t=")
        .and_then(|f| f.split_once(", \"daily\";r=997;t="))
        .unwrap_or_else(|| panic!("{fields}"));
    assert_eq!(burst.parse::<u64>().unwrap(), wait + 20, "{fields}");
    assert!(
        (250..=260).contains(&daily.parse::<u32>().unwrap()),
        "{fields}"
    );
    assert_eq!(
        r.header("ratelimit-policy"),
        Some("\"burst\";q=3;w=30, \"daily\";q=1000;w=86400")
    );
    assert_eq!(b["violated-policies"], serde_json::json!(["burst"]));
    assert_eq!(b["retry_after"], wait);
    assert_eq!(b["limit"], 3);
    assert_eq!(b["window"], 30);
    let detail = b["detail"].as_str().unwrap();
    assert!(
        detail.starts_with(&format!(
            "The rate limit burst of 3 requests per 30 seconds for address 127.0.0.1 is used up; the next request will be accepted in {wait} s, at "
        )),
        "{detail}"
    );
    // The refused request never reached the upstream.
    assert_eq!(up.heads().len(), 3);
    let line = gw.log_line("rate_limited");
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert!(
        v["trail"].as_array().unwrap().contains(&serde_json::json!(
            {"stage": "rate_limit", "outcome": "reject", "code": "rate_limited", "facts": {"policy": "burst"}}
        )),
        "{line}"
    );
}

#[test]
fn keys_count_separately_and_a_missing_header_counts_as_the_address() {
    let up = Upstream::start(Behaviour::Echo);
    let extra = "[[routes.rate_limits]]\nlimit = 1\nwindow = \"1m\"\nkey = \"header:X-Tenant\"\n";
    let gw = Gateway::start(&one_route("/r", &up.url(), extra));
    let tenant = |t: &str| gw.request("GET", "/r", &[("X-Tenant", t)], b"");
    assert_eq!(tenant("a").status, 200);
    let b = assert_problem(&tenant("a"), "rate_limited");
    assert!(
        b["detail"]
            .as_str()
            .unwrap()
            .contains("default of 1 requests per minute for this value of the x-tenant header"),
        "{b}"
    );
    assert_eq!(b["violated-policies"], serde_json::json!(["default"]));
    assert_eq!(tenant("b").status, 200);
    // No header: the address's own bucket, not a tenant's.
    assert_eq!(gw.get("/r").status, 200);
    let b = assert_problem(&gw.get("/r"), "rate_limited");
    assert!(
        b["detail"]
            .as_str()
            .unwrap()
            .contains("for address 127.0.0.1"),
        "{b}"
    );
}

#[test]
fn a_route_sets_the_status_and_whether_passing_answers_carry_the_fields() {
    let up = Upstream::start(Behaviour::Echo);
    let extra = "rate_limit_status = 503\nrate_limit_headers = false\n[[routes.rate_limits]]\nlimit = 1\nwindow = \"1h\"\nkey = \"route\"\n";
    let gw = Gateway::start(&one_route("/r", &up.url(), extra));
    let r = gw.get("/r");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("ratelimit"), None);
    assert_eq!(r.header("ratelimit-policy"), None);
    let r = gw.request("GET", "/r", &[("X-Forwarded-For", "192.0.2.9")], b"");
    let b = assert_problem(&r, "rate_limited");
    assert_eq!(r.status, 503);
    assert!(
        b["detail"]
            .as_str()
            .unwrap()
            .contains("on route r as a whole"),
        "{b}"
    );
    // The refusal carries them whatever the setting.
    assert!(
        r.header("ratelimit")
            .unwrap()
            .starts_with("\"default\";r=0;t=")
    );
    assert!(r.header("retry-after").is_some());
}

#[test]
fn counts_survive_a_reload_that_keeps_the_policy() {
    let up = Upstream::start(Behaviour::Echo);
    let extra = "[[routes.rate_limits]]\nlimit = 2\nwindow = \"1h\"\n";
    let first = one_route("/r", &up.url(), extra);
    let gw = Gateway::start(&first);
    assert_eq!(gw.get("/r").status, 200);
    assert_eq!(gw.get("/r").status, 200);
    assert_problem(&gw.get("/r"), "rate_limited");
    let second = format!(
        "{first}[[routes]]\nname = \"b\"\npath = \"/b\"\nupstream = \"{}\"\n",
        up.url()
    );
    std::fs::write(&gw.config, &second).unwrap();
    assert!(gw.eventually(|g| g.get("/b").status == 200));
    assert_problem(&gw.get("/r"), "rate_limited");
    // A changed policy starts afresh.
    std::fs::write(&gw.config, second.replace("limit = 2", "limit = 5")).unwrap();
    assert!(gw.eventually(|g| g.get("/r").status == 200));
    let r = gw.get("/r");
    assert_eq!(r.header("ratelimit-policy"), Some("\"default\";q=5;w=3600"));
}

#[test]
fn policies_keyed_by_account_need_credentials_and_count_per_account() {
    let s = account_setup(
        "",
        "[[routes.rate_limits]]\nname = \"per-account\"\nlimit = 2\nwindow = \"1m\"\nkey = \"account\"",
        &["--id", "small", "--name", "Small"],
    );
    let auth = format!("Bearer {}", token(&s));
    // A request that fails authentication is not counted: the policy runs after it.
    assert_problem(&s.gw.get("/q"), "credentials_missing");
    assert_eq!(bearer(&s, "/q", &auth).status, 200);
    let r = bearer(&s, "/q", &auth);
    assert_eq!(r.header("ratelimit"), Some("\"per-account\";r=0;t=60"));
    let b = assert_problem(&bearer(&s, "/q", &auth), "rate_limited");
    assert!(
        b["detail"].as_str().unwrap().contains("for account small"),
        "{b}"
    );
}

#[test]
fn check_reports_bad_policies() {
    let out = check_reports(
        r#"
[[routes]]
name = "r"
path = "/r"
upstream = "http://127.0.0.1:9"
rate_limit_status = 418

[[routes.rate_limits]]
name = "a b"
limit = 0
window = "1500ms"
key = "acount"

[[routes.rate_limits]]
name = "x"
limit = 1
window = "1s"
key = "account"

[[routes.rate_limits]]
limit = 1

[[routes]]
name = "s"
path = "/s"
upstream = "http://127.0.0.1:9"
[[routes.rate_limits]]
limit = 5
window = "10s"
burst = 1000000

[[routes]]
name = "s"
path = "/t"
upstream = "http://127.0.0.1:9"
[[routes.rate_limits]]
limit = 5
window = "10s"
key = "header:Bad Header"

[[routes]]
name = "dup"
path = "/d1"
upstream = "http://127.0.0.1:9"

[[routes]]
name = "dup"
path = "/d2"
upstream = "http://127.0.0.1:9"
"#,
        &[
            "routes[0].rate_limit_status: 418 is not a status for a limit answer",
            "routes[0].rate_limits[0].name: `a b` is not a policy name",
            "routes[0].rate_limits[0].limit: 0 is out of range",
            "routes[0].rate_limits[0].window: must be a whole number of seconds",
            "routes[0].rate_limits[0].key: `acount` is not a key",
            "did you mean `account`?",
            "routes[0].rate_limits[1].key: the route does not authenticate, so requests have no account",
            "routes[0].rate_limits[2].name: missing: a route with several policies names each",
            "routes[0].rate_limits[2].window: missing",
            "routes[1].rate_limits[0].burst: 1000000 is more than the limit (5): a burst is at most the window's quota",
            "routes[4].name: a route named `dup` is already declared; routes share their name's counts, health and logs",
            "routes[2].rate_limits[0].key: `Bad Header` is not a header name",
        ],
    );
    // A key that is not one is one problem, not also a missing credential.
    assert!(
        !out.contains("routes[2].rate_limits[0].key: the route does not authenticate"),
        "{out}"
    );
}

#[test]
fn quota_answers_take_the_route_status() {
    let s = account_setup(
        "",
        "quota_status = 429",
        &["--id", "one", "--name", "One", "--quota-per-day", "1"],
    );
    let auth = format!("Bearer {}", token(&s));
    assert_eq!(bearer(&s, "/q", &auth).status, 200);
    let r = bearer(&s, "/q", &auth);
    assert_problem(&r, "quota_exceeded");
    assert_eq!(r.status, 429);
    assert!(r.header("retry-after").is_some());
}

#[test]
fn refusals_the_account_is_not_to_blame_for_give_its_quota_back() {
    // The attack probe's finding: a quota refusal spent a rate-limit token, and requests a
    // rate limit refused or the upstream never got were charged to the account's quota.
    let s = account_setup(
        "[[routes]]\nname = \"dead\"\npath = \"/dead\"\nupstream = \"http://127.0.0.1:9\"\nauth = \"bearer\"\nretries = 0\n",
        "[[routes.rate_limits]]\nlimit = 1\nwindow = \"1s\"\nkey = \"account\"",
        &["--id", "three", "--name", "Three", "--quota-per-day", "3"],
    );
    let auth = format!("Bearer {}", token(&s));
    let pause = || std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(bearer(&s, "/q", &auth).status, 200);
    assert_problem(&bearer(&s, "/q", &auth), "rate_limited");
    assert_problem(&bearer(&s, "/dead", &auth), "upstream_unreachable");
    // Neither of those counted: two more pass.
    pause();
    assert_eq!(bearer(&s, "/q", &auth).status, 200);
    pause();
    assert_eq!(bearer(&s, "/q", &auth).status, 200);
    pause();
    let r = bearer(&s, "/q", &auth);
    let b = assert_problem(&r, "quota_exceeded");
    assert_eq!(b["used"], 3, "{b}");
    // The quota refused it before the rate limit counted it.
    assert_eq!(r.header("ratelimit"), None);
}

#[test]
fn check_piped_into_head_does_not_panic() {
    let dir = temp_dir("check-head");
    let file = dir.join("candor.toml");
    let routes: String = (0..200)
        .map(|i| {
            format!(
                "[[routes]]\nname = \"r{i}\"\npath = \"/r{i}\"\nupstream = \"http://127.0.0.1:9\"\n"
            )
        })
        .collect();
    std::fs::write(&file, routes).unwrap();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "'{}' check --config '{}' | head -1",
            env!("CARGO_BIN_EXE_candor"),
            file.display()
        ))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains(": OK"));
}

#[test]
fn trusting_every_peer_is_said_by_check() {
    let dir = temp_dir("trust-all");
    let file = dir.join("candor.toml");
    std::fs::write(
        &file,
        "[server]\ntrusted_proxies = [\"0.0.0.0/0\"]\n[[routes]]\nname = \"r\"\npath = \"/r\"\nupstream = \"http://127.0.0.1:9\"\n",
    )
    .unwrap();
    let (code, out, _) = candor(&["check", "--config", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("server.trusted_proxies: `0.0.0.0/0` trusts every peer: any client can set X-Forwarded-For"),
        "{out}"
    );
}

#[test]
fn retry_after_waits_for_every_policy_the_request_would_break() {
    // The attack probe's finding: with two policies used up, Retry-After and
    // violated-policies covered only the first, and a request sent then was refused again.
    let up = Upstream::start(Behaviour::Echo);
    let extra = "[[routes.rate_limits]]\nname = \"burst\"\nlimit = 2\nwindow = \"2s\"\nkey = \"address\"\n\
                 [[routes.rate_limits]]\nname = \"hourly\"\nlimit = 2\nwindow = \"1h\"\nkey = \"address\"\n";
    let gw = Gateway::start(&one_route("/r", &up.url(), extra));
    assert_eq!(gw.get("/r").status, 200);
    assert_eq!(gw.get("/r").status, 200);
    let r = gw.get("/r");
    let b = assert_problem(&r, "rate_limited");
    assert_eq!(
        b["violated-policies"],
        serde_json::json!(["burst", "hourly"])
    );
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1790..=1800).contains(&wait), "{wait}");
    assert!(
        b["detail"].as_str().unwrap().starts_with(
            "The rate limit hourly of 2 requests per hour for address 127.0.0.1 is used up"
        ),
        "{b}"
    );
}

#[test]
fn a_quota_of_zero_is_refused() {
    // The attack probe's finding: a quota of 0 was accepted, and every request was then
    // told to retry after a reset that never helps.
    let dir = temp_dir("zero-quota");
    let file = dir.join("candor.toml");
    std::fs::write(&file, "").unwrap();
    let (code, _, err) = candor(&[
        "accounts",
        "add",
        "--config",
        file.to_str().unwrap(),
        "--name",
        "None",
        "--quota-per-day",
        "0",
    ]);
    assert_ne!(code, 0);
    assert!(
        err.contains(
            "quota_per_day must be 1 or more requests (to stop the account's requests, suspend it)"
        ),
        "{err}"
    );
}

#[test]
fn a_request_one_policy_refuses_is_counted_by_none() {
    // The review's finding: a request refused by the per-address policy still took a cell
    // of the route-wide one, so one flooding client used up every client's share.
    let up = Upstream::start(Behaviour::Echo);
    let extra = "[[routes.rate_limits]]\nname = \"wide\"\nlimit = 5\nwindow = \"1m\"\nkey = \"route\"\n\
                 [[routes.rate_limits]]\nname = \"narrow\"\nlimit = 1\nwindow = \"1m\"\nkey = \"address\"\n";
    let gw = Gateway::start(&format!(
        "[server]\ntrusted_proxies = [\"127.0.0.1/32\"]\n{}",
        one_route("/r", &up.url(), extra)
    ));
    let from = |ip: &str| gw.request("GET", "/r", &[("X-Forwarded-For", ip)], b"");
    assert_eq!(from("192.0.2.1").status, 200);
    for _ in 0..3 {
        assert_problem(&from("192.0.2.1"), "rate_limited");
    }
    let r = from("192.0.2.2");
    assert_eq!(r.status, 200);
    assert!(
        r.header("ratelimit").unwrap().starts_with("\"wide\";r=3;"),
        "{:?}",
        r.header("ratelimit")
    );
}
