//! Rate limits shared through Redis (`[limits.shared]`), black-box, with a real
//! `redis-server` of the test's own: three gateways sharing one limit, Redis killed mid-run
//! and restarted (fail open: each gateway counts alone; fail closed:
//! `rate_limit_store_unavailable`), recovery without a restart, and `candor check`.

use crate::harness::*;

/// A route limited to `limit` requests an hour as a whole (so that every gateway and
/// every client counts in one bucket), a plain route beside it, and the shared store.
fn config(upstream: &str, redis: &str, limit: u32, shared_extra: &str) -> String {
    format!(
        r#"
[limits.shared]
redis = "{redis}"
{shared_extra}

[[routes]]
name = "limited"
path = "/limited"
upstream = "{upstream}"

[[routes.rate_limits]]
name = "hourly"
limit = {limit}
window = "1h"
key = "route"

[[routes]]
name = "plain"
path = "/plain"
upstream = "{upstream}"
"#
    )
}

/// The `r` of the `hourly` policy in a RateLimit field.
fn remaining(r: &Response) -> u32 {
    let f = r
        .header("ratelimit")
        .unwrap_or_else(|| panic!("{}", r.text()));
    f.strip_prefix("\"hourly\";r=")
        .and_then(|rest| rest.split(';').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{f}"))
}

#[test]
fn three_gateways_share_one_limit_through_redis_within_5_percent() {
    let redis = Redis::start();
    let up = Upstream::start(Behaviour::Echo);
    // Closed, with a long timeout: a slow answer shows as a 503, never as a request
    // counted by one gateway alone.
    let text = config(
        &up.url(),
        &redis.url(),
        150,
        "on_failure = \"closed\"\ntimeout = \"5s\"",
    );
    let gws: Vec<Gateway> = (0..3).map(|_| Gateway::start(&text)).collect();
    let first = gws[0].get("/limited");
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(
        first.header("ratelimit-policy"),
        Some("\"hourly\";q=150;w=3600")
    );
    assert_eq!(remaining(&first), 149);
    // 3 × 100 more requests at once, each gateway taking a third.
    let results: Vec<(u32, u32, u32)> = std::thread::scope(|s| {
        let handles: Vec<_> = gws
            .iter()
            .map(|gw| {
                s.spawn(move || {
                    let (mut ok, mut limited, mut other) = (0, 0, 0);
                    for _ in 0..100 {
                        let r = gw.get("/limited");
                        match r.status {
                            200 => ok += 1,
                            429 => {
                                assert_problem(&r, "rate_limited");
                                assert_eq!(remaining(&r), 0);
                                limited += 1;
                            }
                            _ => {
                                eprintln!("{}: {}", r.status, r.text());
                                other += 1;
                            }
                        }
                    }
                    (ok, limited, other)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let accepted: u32 = 1 + results.iter().map(|r| r.0).sum::<u32>();
    let refused: u32 = results.iter().map(|r| r.1).sum();
    let failed: u32 = results.iter().map(|r| r.2).sum();
    eprintln!("three gateways, one limit of 150: {accepted} accepted, {refused} refused");
    assert_eq!(failed, 0, "{results:?}");
    // Alone, each gateway would have admitted 150 (450 in all).
    assert!(
        (143..=157).contains(&accepted),
        "accepted {accepted} of a shared limit of 150 ({results:?})"
    );
    assert_eq!(accepted + refused, 301);
    // Every gateway saw some of the refusals: the count was shared.
    assert!(results.iter().all(|r| r.1 > 0), "{results:?}");
}

#[test]
fn batched_gateways_lease_permits_and_stay_within_the_stated_bound() {
    let redis = Redis::start();
    let up = Upstream::start(Behaviour::Echo);
    // Leases of 10: the gateways together never admit more than the limit in a burst, and
    // at most 3 × 9 fewer (permits left in leases).
    let text = config(
        &up.url(),
        &redis.url(),
        150,
        "mode = \"batched\"\nlease = 10\non_failure = \"closed\"\ntimeout = \"5s\"",
    );
    let gws: Vec<Gateway> = (0..3).map(|_| Gateway::start(&text)).collect();
    let before = redis.script_calls();
    let burst = |n: usize| -> Vec<(u32, u32)> {
        std::thread::scope(|s| {
            let handles: Vec<_> = gws
                .iter()
                .map(|gw| {
                    s.spawn(move || {
                        let (mut ok, mut limited) = (0, 0);
                        for _ in 0..n {
                            let r = gw.get("/limited");
                            match r.status {
                                200 => ok += 1,
                                _ => {
                                    assert_problem(&r, "rate_limited");
                                    limited += 1;
                                }
                            }
                        }
                        (ok, limited)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    };
    // Under the limit: every request passes, about one in ten asks Redis.
    let first = burst(40);
    assert!(first.iter().all(|r| *r == (40, 0)), "{first:?}");
    let calls = redis.script_calls() - before;
    eprintln!("batched, 120 requests under the limit: {calls} Redis round trips");
    assert!(calls <= 24, "{calls} round trips for 120 requests");
    // Past the limit.
    let second = burst(60);
    let accepted: u32 = 120 + second.iter().map(|r| r.0).sum::<u32>();
    eprintln!("batched, three gateways, one limit of 150: {accepted} accepted");
    assert!(
        (150 - 27..=150).contains(&accepted),
        "accepted {accepted} of a shared limit of 150 ({second:?})"
    );
    assert!(second.iter().all(|r| r.1 > 0), "{second:?}");
}

#[test]
fn redis_killed_mid_run_fails_open_to_local_limits_and_recovers() {
    let mut redis = Redis::start();
    let up = Upstream::start(Behaviour::Echo);
    let text = config(&up.url(), &redis.url(), 5, "on_failure = \"open\"");
    let a = Gateway::start(&text);
    let b = Gateway::start(&text);
    // Shared: 3 through a, 2 through b, and the sixth is refused by either.
    for gw in [&a, &a, &a, &b, &b] {
        assert_eq!(gw.get("/limited").status, 200);
    }
    assert_problem(&b.get("/limited"), "rate_limited");
    assert_problem(&a.get("/limited"), "rate_limited");

    redis.kill();
    // Each gateway counts alone: its own 5 pass (its local bucket is full), then 429.
    let mut passed = 0;
    for _ in 0..6 {
        let r = a.get("/limited");
        match r.status {
            200 => passed += 1,
            _ => {
                assert_problem(&r, "rate_limited");
            }
        }
    }
    assert_eq!(passed, 5);
    assert_eq!(b.get("/limited").status, 200);
    let line = a.log_line("the shared rate-limit store");
    assert!(
        line.contains("counting in each gateway's own limiters"),
        "{line}"
    );
    assert!(!line.contains("password"), "{line}");
    // Logged once per outage, not per request.
    let warned = a
        .log()
        .lines()
        .filter(|l| l.contains("the shared rate-limit store") && l.contains("until it is back"))
        .count();
    assert_eq!(warned, 1, "{}", a.log());
    // The plain route never touches the store.
    assert_eq!(a.get("/plain").status, 200);

    // Back, empty: counts are shared again without a restart of the gateways.
    redis.restart();
    assert!(
        a.eventually(|g| {
            let r = g.get("/limited");
            r.status == 200 && remaining(&r) == 4
        }),
        "gateway a did not share its limit again"
    );
    a.log_line("answers again");
    let r = b.get("/limited");
    assert_eq!((r.status, remaining(&r)), (200, 3), "{}", r.text());
}

#[test]
fn redis_killed_with_on_failure_closed_is_503_naming_the_cause_until_it_is_back() {
    let mut redis = Redis::start();
    let up = Upstream::start(Behaviour::Echo);
    let text = config(&up.url(), &redis.url(), 100, "on_failure = \"closed\"");
    let gw = Gateway::start(&text);
    assert_eq!(gw.get("/limited").status, 200);
    redis.kill();
    let r = gw.get("/limited");
    let b = assert_problem(&r, "rate_limit_store_unavailable");
    assert_eq!(r.status, 503);
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&wait), "{wait}");
    let detail = b["detail"].as_str().unwrap();
    assert!(
        detail.contains("Route limited") && detail.contains("(Redis)"),
        "{detail}"
    );
    let cause = b["cause"].as_str().unwrap();
    assert!(
        cause.contains("refused the connection") || cause.contains("dropped the connection"),
        "{cause}"
    );
    // The address of the store is the operator's: in the log, not in the answer.
    assert!(!r.text().contains(&redis.port.to_string()), "{}", r.text());
    let line = gw.log_line("refusing rate-limited requests");
    assert!(line.contains(&redis.url()), "{line}");
    // Nothing waits on the store while it is down: the next refusal is at once, and
    // routes without rate limits pass.
    assert_problem(&gw.get("/limited"), "rate_limit_store_unavailable");
    assert_eq!(gw.get("/plain").status, 200);

    redis.restart();
    assert!(
        gw.eventually(|g| g.get("/limited").status == 200),
        "the gateway did not use the store again"
    );
    gw.log_line("answers again");
}

#[test]
fn a_redis_that_stops_answering_is_a_timeout_named_in_the_answer() {
    let redis = Redis::start();
    let up = Upstream::start(Behaviour::Echo);
    let text = config(
        &up.url(),
        &redis.url(),
        100,
        "on_failure = \"closed\"\ntimeout = \"200ms\"",
    );
    let gw = Gateway::start(&text);
    let r = gw.get("/limited");
    assert_eq!((r.status, remaining(&r)), (200, 99), "{}", r.text());
    // Stopped, Redis keeps the connection open and answers nothing: the request gives up
    // after limits.shared.timeout.
    redis.signal("STOP");
    let r = gw.get("/limited");
    let b = assert_problem(&r, "rate_limit_store_unavailable");
    assert_eq!(
        b["cause"], "did not answer within 200ms (limits.shared.timeout)",
        "{b}"
    );
    redis.signal("CONT");
    assert!(
        gw.eventually(|g| g.get("/limited").status == 200),
        "the gateway did not use the store again"
    );
    gw.log_line("answers again");
}

#[test]
fn check_reports_the_shared_store_and_its_mistakes() {
    let dir = temp_dir("shared-check");
    let file = dir.join("candor.toml");
    std::fs::write(
        &file,
        config(
            "http://127.0.0.1:9",
            "redis://app:s3cret@127.0.0.1:6390/2",
            10,
            "on_failure = \"closed\"\ntimeout = \"100ms\"",
        ),
    )
    .unwrap();
    let (code, out, err) = candor(&["check", "--config", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("rate limits shared through Redis at redis://app:***@127.0.0.1:6390/2 (exact mode, on failure closed: rate_limit_store_unavailable, timeout 100ms)"),
        "{out}"
    );
    assert!(!out.contains("s3cret"), "{out}");
    check_reports(
        "[limits.shared]\nredis = \"rediss://127.0.0.1:6390\"\nmode = \"fast\"\non_failure = \"maybe\"\ntimeout = \"30s\"\n",
        &[
            "limits.shared.redis",
            "rediss:// (TLS to Redis) is not supported",
            "limits.shared.mode",
            "\"fast\" is not a mode",
            "limits.shared.on_failure",
            "\"maybe\" is not a choice",
            "limits.shared.timeout",
            "must be from 1ms to 10s",
        ],
    );
    check_reports(
        "[limits.shared]\nmode = \"exact\"\n",
        &["limits.shared.redis", "is missing"],
    );
    check_reports(
        "[limits.shared]\nredis = \"redis://127.0.0.1:6379\"\nlease = 10\n",
        &["limits.shared.lease", "applies to mode = \"batched\" only"],
    );
    check_reports(
        "[limits.shared]\nredis = \"http://127.0.0.1:6379\"\n",
        &["is not a Redis URL the client can use"],
    );
}

#[test]
fn batched_mode_with_two_policies_never_admits_past_the_limit() {
    // The attack probe's finding: a route-wide policy with a live lease and a per-tenant
    // policy that must ask Redis for every new tenant. Requests asking at once all counted
    // on the lease's last permit: 32 of 100 admitted against a limit of 20.
    let redis = Redis::start();
    let up = Upstream::start(Behaviour::Echo);
    // The tenant policy belongs to the limited route, right after its "hourly" one.
    let text = config(
        &up.url(),
        &redis.url(),
        20,
        "mode = \"batched\"\nlease = 10\non_failure = \"closed\"\ntimeout = \"5s\"",
    )
    .replacen(
        "key = \"route\"\n",
        "key = \"route\"\n\n[[routes.rate_limits]]\nname = \"tenant\"\nlimit = 1000\nwindow = \"1h\"\nkey = \"header:x-tenant\"\n",
        1,
    );
    let gws: Vec<Gateway> = (0..2).map(|_| Gateway::start(&text)).collect();
    let accepted: u32 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..50)
            .map(|t| {
                let gw = &gws[t % 2];
                s.spawn(move || {
                    let mut ok = 0;
                    for i in 0..2 {
                        let tenant = format!("t{t}-{i}");
                        let r = gw.request("GET", "/limited", &[("X-Tenant", &tenant)], b"");
                        match r.status {
                            200 => ok += 1,
                            _ => {
                                assert_problem(&r, "rate_limited");
                            }
                        }
                    }
                    ok
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    eprintln!("batched, two policies, two gateways: {accepted} of 100 accepted, limit 20");
    assert!(accepted <= 20, "{accepted} accepted against a limit of 20");
    assert!(accepted >= 20 - 2 * 9, "{accepted}");
}

/// Two gateways sharing `redis` and one identity store (one data directory, each with its
/// own event log), with `extra` in their configuration, and a client of account acme:
/// the directory, the gateways, and the `clients add` output.
fn two_gateways(redis: &Redis, up: &Upstream, extra: &str) -> (TempDir, Gateway, Gateway, String) {
    let shared = temp_dir("shared-identity");
    let text = |events: &str| {
        format!(
            "[server]\ndata_dir = \"{data}\"\n[events]\ndir = \"{events}\"\n{extra}\n{}",
            config(&up.url(), &redis.url(), 1000, ""),
            data = shared.join("data").display(),
            events = shared.join(events).display(),
        )
    };
    let mut out = String::new();
    let a = Gateway::start_after(&text("events-a"), |path| {
        cli_at(path, &["accounts", "add", "--id", "acme", "--name", "Acme"]);
        out = cli_at(path, &["clients", "add", "--account", "acme"]);
    });
    let b = Gateway::start(&text("events-b"));
    (shared, a, b, out)
}

/// `POST /oauth/token` at `gw` with a JWT-bearer assertion for `client_id` signed by `sign`
/// with key `kid`, carrying `jti`.
fn jwt_bearer(
    gw: &Gateway,
    client_id: &str,
    kid: &str,
    jti: &str,
    sign: &dyn Fn(&[u8]) -> Vec<u8>,
) -> Response {
    let now = candor_gateway::unix_now();
    let claims = serde_json::json!({
        "iss": client_id, "sub": client_id,
        "aud": format!("http://{}/oauth/token", gw.addr),
        "exp": now + 120, "iat": now, "jti": jti,
    });
    let assertion = crate::token_endpoint::assertion("EdDSA", kid, &claims, sign);
    gw.request(
        "POST",
        "/oauth/token",
        &[FORM],
        form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", &assertion),
        ])
        .as_bytes(),
    )
}

/// A JWT-bearer assertion used at one gateway is refused at another sharing the store: the
/// replay cache is in Redis (`SET NX` until the assertion expires), not only in each
/// process. Both gateways share one identity store (one data directory).
#[test]
fn an_assertion_used_at_one_gateway_is_refused_at_another() {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use ring::signature::{Ed25519KeyPair, KeyPair};
    let mut redis = Redis::start();
    let up = Upstream::start(Behaviour::Echo);
    let (shared, a, b, out) = two_gateways(&redis, &up, "");
    let client_id = value_of(&out, "client_id:");

    let rng = ring::rand::SystemRandom::new();
    let key =
        Ed25519KeyPair::from_pkcs8(Ed25519KeyPair::generate_pkcs8(&rng).unwrap().as_ref()).unwrap();
    let jwks = serde_json::json!({"keys": [
        {"kty": "OKP", "crv": "Ed25519", "kid": "ed-1", "x": B64.encode(key.public_key().as_ref())},
    ]});
    let file = shared.join("client.jwks.json");
    std::fs::write(&file, jwks.to_string()).unwrap();
    cli(
        &a,
        &[
            "clients",
            "set-keys",
            &client_id,
            "--jwks",
            file.to_str().unwrap(),
        ],
    );
    // Both gateways pick the keys up from the store within a second.
    std::thread::sleep(std::time::Duration::from_millis(1500));

    let sign = |m: &[u8]| key.sign(m).as_ref().to_vec();
    let grant = |gw: &Gateway, jti: &str| jwt_bearer(gw, &client_id, "ed-1", jti, &sign);
    // Each gateway's issuer is its own address, so each assertion names the one it is for;
    // the replay key is the issuer (the client) and the jti.
    let r = grant(&a, "once-1");
    assert_eq!(r.status, 200, "{}", r.text());
    let r = grant(&b, "once-1");
    let body = assert_problem(&r, "assertion_replayed");
    assert_eq!(
        body["detail"],
        "An assertion with jti once-1 was already used; each assertion may be used once."
    );
    // A fresh jti is fine at either.
    let r = grant(&b, "once-2");
    assert_eq!(r.status, 200, "{}", r.text());
    let r = grant(&a, "once-2");
    assert_problem(&r, "assertion_replayed");
    // The key lives in Redis until the assertion expires (plus the leeway).
    let ttl = redis.ttl(&format!("candor:jti:{client_id}\u{0}once-1"));
    assert!(ttl > 100 && ttl <= 120 + 300, "{ttl}");

    // With Redis gone each gateway still refuses what it has seen itself, and takes new
    // assertions (the store's outage is logged; nothing waits on it).
    redis.kill();
    let r = grant(&b, "once-3");
    assert_eq!(r.status, 200, "{}", r.text());
    let r = grant(&b, "once-3");
    assert_problem(&r, "assertion_replayed");
}

/// Failed client authentications at the token endpoint are counted in Redis too: a client id
/// cannot multiply its guesses by spreading them over the gateways, and a block lifted at
/// one gateway is lifted at all of them.
#[test]
fn failed_attempts_are_counted_across_gateways_and_lifted_everywhere() {
    let mut redis = Redis::start();
    let up = Upstream::start(Behaviour::Echo);
    let (_shared, a, b, out) = two_gateways(&redis, &up, "[auth]\nmax_failed_attempts = 3");
    let client_id = value_of(&out, "client_id:");
    let secret = value_of(&out, "client_secret:");
    let ask = |gw: &Gateway, secret: &str| {
        gw.request(
            "POST",
            "/oauth/token",
            &[FORM],
            form(&[
                ("grant_type", "client_credentials"),
                ("client_id", &client_id),
                ("client_secret", secret),
            ])
            .as_bytes(),
        )
    };
    // Two wrong secrets at one gateway, one at the other: three failures of the client id
    // from this address, the limit, although neither gateway saw three.
    assert_problem(&ask(&a, "wrong-1"), "invalid_client");
    assert_problem(&ask(&a, "wrong-2"), "invalid_client");
    assert_problem(&ask(&b, "wrong-3"), "invalid_client");
    for gw in [&a, &b] {
        let r = ask(gw, &secret);
        let body = assert_problem(&r, "too_many_failed_attempts");
        assert_eq!(r.status, 429);
        assert_eq!(body["blocked"]["failures"], 3, "{body}");
        let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=100).contains(&wait), "{wait}");
    }
    // Each gateway lists the block, counted in the shared store only: neither saw three.
    for gw in [&a, &b] {
        let r = admin_call(gw, "GET", "/blocks", None);
        assert_eq!(r.status, 200, "{}", r.text());
        let body = r.json();
        assert_eq!(body["shared"]["listed"], 1, "{body}");
        assert_eq!(body["shared"]["more"], false, "{body}");
        let rows = body["data"].as_array().unwrap();
        assert_eq!(rows.len(), 1, "{body}");
        assert_eq!(rows[0]["kind"], "client", "{body}");
        assert_eq!(rows[0]["key"], client_id.as_str(), "{body}");
        assert_eq!(rows[0]["address"], "127.0.0.1", "{body}");
        assert_eq!(rows[0]["failures"], 3, "{body}");
        assert_eq!(
            rows[0]["counted_in"],
            serde_json::json!(["shared"]),
            "{body}"
        );
        let retry = rows[0]["retry_after"].as_i64().unwrap();
        assert!((1..=100).contains(&retry), "{body}");
    }
    let out = cli(
        &b,
        &["blocks", "list", "--admin", &b.admin.unwrap().to_string()],
    );
    let row = out
        .lines()
        .find(|l| l.starts_with("client"))
        .unwrap_or_else(|| panic!("no client row in\n{out}"));
    for column in [client_id.as_str(), "127.0.0.1", "3/3", "shared"] {
        assert!(row.contains(column), "{column} not in {row}\n{out}");
    }
    assert!(
        out.contains("COUNTED: here (this gateway's own count), shared"),
        "{out}"
    );
    // Lifted at B (which holds only one of the failures): lifted at A too.
    let r = admin_call(&b, "DELETE", &format!("/blocks/client/{client_id}"), None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["shared"]["keys_deleted"], 1, "{}", r.text());
    for gw in [&a, &b] {
        let r = ask(gw, &secret);
        assert_eq!(r.status, 200, "{}", r.text());
    }
    // A success forgets the client's failures everywhere: two more wrong secrets (one at
    // each) are not a block.
    assert_problem(&ask(&a, "wrong-4"), "invalid_client");
    assert_problem(&ask(&b, "wrong-5"), "invalid_client");
    assert_eq!(ask(&a, &secret).status, 200);

    // DELETE /blocks lifts every shared block too. (B still counts its own wrong-5: a
    // success forgets the client's failures at the gateway it succeeded at and in Redis.)
    // Three failures at A: blocked by A's own count and by the shared one.
    assert_problem(&ask(&a, "wrong-6"), "invalid_client");
    assert_problem(&ask(&a, "wrong-7"), "invalid_client");
    assert_problem(&ask(&a, "wrong-8"), "invalid_client");
    assert_problem(&ask(&a, &secret), "too_many_failed_attempts");
    let body = admin_call(&a, "GET", "/blocks", None).json();
    assert_eq!(
        body["data"][0]["counted_in"],
        serde_json::json!(["local", "shared"]),
        "{body}"
    );
    let admin = a.admin.unwrap().to_string();
    let out = cli(&a, &["blocks", "clear", "--all", "--admin", &admin]);
    assert!(
        out.contains(
            "In the shared store (Redis): 2 counts deleted, so it is lifted at every gateway."
        ),
        "{out}"
    );
    assert_eq!(ask(&b, &secret).status, 200);

    // With Redis gone, the list says the shared blocks could not be read.
    redis.kill();
    let body = admin_call(&a, "GET", "/blocks", None).json();
    let error = body["shared"]["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("the shared store ")
            && error.ends_with("blocks counted only there (by other gateways) are not listed"),
        "{body}"
    );
    let out = cli(&a, &["blocks", "list", "--admin", &admin]);
    assert!(
        out.contains("No blocks: the token endpoint refuses no client id or address now"),
        "{out}"
    );
    assert!(
        out.contains("The shared store ") && out.contains("are not listed."),
        "{out}"
    );
    assert!(!out.contains("Not lifted"), "a list lifts nothing: {out}");
    // A lift the shared store did not take says so, and fails (a script may retry it).
    let done = std::process::Command::new(BIN)
        .args(["blocks", "clear", "--all", "--admin", &admin, "--config"])
        .arg(&a.config)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&done.stdout);
    assert!(!done.status.success(), "{said}");
    assert!(
        said.contains("this gateway's failed-attempt count is forgotten")
            && said.contains("Not lifted in the shared store (Redis): the shared store "),
        "{said}"
    );
}

/// The shared address count goes on counting when the client id's count is full: JWT-bearer
/// assertions naming one client id, refused (the client has no keys), sent to two gateways
/// in turn. Neither gateway sees the per-address limit of 5, Redis does.
#[test]
fn the_shared_address_count_goes_on_past_a_full_client_count() {
    let redis = Redis::start();
    let up = Upstream::start(Behaviour::Echo);
    let (_shared, a, b, out) = two_gateways(
        &redis,
        &up,
        "[auth]\nmax_failed_attempts = 3\nmax_failed_attempts_per_address = 5",
    );
    let client_id = value_of(&out, "client_id:");
    let bad = |gw: &Gateway, jti: &str| jwt_bearer(gw, &client_id, "none", jti, &|_| vec![0; 64]);
    for (i, gw) in [&a, &b, &a, &b, &a].into_iter().enumerate() {
        assert_problem(&bad(gw, &format!("j-{i}")), "invalid_grant");
    }
    // Three failures at A, two at B: the address's fifth was counted in Redis although the
    // client id's count was full after the third.
    let r = bad(&b, "j-5");
    let body = assert_problem(&r, "too_many_failed_attempts");
    assert_eq!(body["blocked"]["kind"], "address", "{body}");
    assert_eq!(body["blocked"]["failures"], 5, "{body}");
}

/// The list of shared blocks is bounded: 10,001 addresses blocked in Redis (as other
/// gateways would have left them) list 10,000, and the list says there were more.
#[test]
fn the_list_of_shared_blocks_is_bounded_and_says_so() {
    let redis = Redis::start();
    let up = Upstream::start(Behaviour::Echo);
    let (_shared, a, _b, _) = two_gateways(
        &redis,
        &up,
        "[auth]\nmax_failed_attempts_per_address = 30\nfailed_attempts_window = \"5m\"",
    );
    // Each address's count full for ten minutes: 10.0.X.Y, at these limits (30 per address
    // within 5 min).
    redis.eval(
        "local t = redis.call('TIME') \
         local now = tonumber(t[1]) * 1000000 + tonumber(t[2]) \
         for i = 1, tonumber(ARGV[1]) do \
           local a = '10.0.' .. math.floor(i / 256) .. '.' .. (i % 256) \
           local h = a:gsub('.', function(c) return string.format('%02x', c:byte()) end) \
           redis.call('SET', 'candor:fa:a:' .. h .. ':30:300', string.format('%.0f', now + 600000000), 'PX', 600000) \
         end \
         return 1",
        &["10001"],
    );
    let body = admin_call(&a, "GET", "/blocks", None).json();
    assert_eq!(body["shared"]["listed"], 10_000, "{}", body["shared"]);
    assert_eq!(body["shared"]["more"], true);
    let rows = body["data"].as_array().unwrap();
    assert_eq!(rows.len(), 10_000);
    assert!(
        rows.iter()
            .all(|r| r["kind"] == "address" && r["counted_in"] == serde_json::json!(["shared"])),
        "{}",
        rows[0]
    );
    let out = cli(
        &a,
        &["blocks", "list", "--admin", &a.admin.unwrap().to_string()],
    );
    assert!(
        out.contains("The shared store (Redis) holds more failed-attempt counts than were read (10000 of each kind)"),
        "{}",
        out.lines().last().unwrap_or_default()
    );
}
