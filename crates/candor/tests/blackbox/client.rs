//! candor-client against the real gateway: the retry rules it carries equal `candor catalog
//! export --retry-rules`; each class of error decoded; retries counted (an upstream that
//! fails twice, a connection reset, a refused one) with `never` never retried;
//! `Retry-After` waited, from candor's own 429 and from an upstream's 503; the retry
//! budget; tokens cached, refreshed before expiry and re-acquired once on `after_reauth`;
//! JWT assertions and one-time codes; each built-in profile's envelope; HTTPS with a
//! private CA, and an untrusted certificate never retried.

use crate::harness::*;
use candor_client::{AssertionKey, Client, Envelope, ErrorClass, Retry, RetryEvent, rules};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn run<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// A client of `gw` that records each retry it makes.
fn client_of(
    gw: &Gateway,
    edit: impl FnOnce(candor_client::ClientBuilder) -> candor_client::ClientBuilder,
) -> (Client, Arc<Mutex<Vec<RetryEvent>>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let builder = Client::builder(format!("http://{}", gw.addr))
        .on_retry(move |e| seen.lock().unwrap().push(e.clone()));
    (edit(builder).build().unwrap(), events)
}

#[test]
fn the_clients_retry_rules_are_the_exported_ones() {
    let (code, out, err) = candor(&["catalog", "export", "--retry-rules"]);
    assert_eq!(code, 0, "{err}");
    let exported: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(exported, serde_json::to_value(rules::builtin()).unwrap());
    let rate = exported["codes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["code"] == "rate_limited")
        .unwrap();
    assert_eq!(rate["status"], 429);
    assert_eq!(rate["retry"], "after_delay");
    assert_eq!(rate["backoff"]["honour_retry_after"], true);
    assert_eq!(exported["classes"]["never"]["retry"], false);

    // An operator's catalog changes the rules; the export with its configuration says so,
    // and a client reads that export.
    let dir = temp_dir("client-rules");
    std::fs::write(
        dir.join("ops.toml"),
        "[[error]]\ncode = \"conflict\"\nretry = \"with_backoff\"\n",
    )
    .unwrap();
    let cfg = dir.join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\ncatalog = \"{}\"\n",
            dir.join("ops.toml").display()
        ),
    )
    .unwrap();
    let (code, out, err) = candor(&[
        "catalog",
        "export",
        "--retry-rules",
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let theirs = rules::from_json(&out).unwrap();
    assert_eq!(theirs.class_of_code("conflict"), Some(Retry::WithBackoff));
    assert_eq!(
        rules::builtin().class_of_code("conflict"),
        Some(Retry::Never)
    );

    // Without --retry-rules: every entry.
    let (_, out, _) = candor(&["catalog", "export"]);
    let all: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(all.as_array().unwrap().len(), rules::builtin().codes.len());
    assert!(all[0]["checklist"].is_array());
}

#[test]
fn every_class_of_error_and_never_is_never_retried() {
    let up = Upstream::start(Behaviour::Echo);
    let config = format!(
        "{}\n[[routes]]\nname = \"down\"\npath = \"/down\"\nupstream = \"http://{}\"\n",
        one_route("/r", &up.url(), "methods = [\"GET\"]"),
        Upstream::refused()
    );
    let gw = Gateway::start(&config);
    let (client, events) = client_of(&gw, |b| b);
    run(async {
        // Content, never: one attempt, the page that explains it, the request id.
        let e = client.get("/nowhere").send().await.unwrap_err();
        assert_eq!(e.class, ErrorClass::Content);
        assert_eq!(e.status, Some(404));
        assert_eq!(e.code.as_deref(), Some("route_not_found"));
        assert_eq!(e.retry, Retry::Never);
        assert_eq!(e.attempts, 1);
        assert_eq!(e.envelope, Envelope::Problem);
        assert!(
            e.troubleshooting_url
                .as_deref()
                .unwrap()
                .ends_with("/errors/route_not_found"),
            "{e:?}"
        );
        assert!(e.request_id.as_deref().is_some_and(|id| !id.is_empty()));
        let e = client.delete("/r").send().await.unwrap_err();
        assert_eq!(e.code.as_deref(), Some("method_not_allowed"));
        assert_eq!(e.attempts, 1);

        // The fields at fault.
        let e = client
            .request(http::Method::POST, "/oauth/token")
            .body("application/x-www-form-urlencoded", "scope=x")
            .send()
            .await
            .unwrap_err();
        assert_eq!(e.code.as_deref(), Some("validation_failed"));
        assert_eq!(e.fields.len(), 1, "{e:?}");
        assert_eq!(e.fields[0].name.as_deref(), Some("grant_type"));
        assert_eq!(e.fields[0].reason.as_deref(), Some("required"));
        assert_eq!(e.attempts, 1);
        assert!(events.lock().unwrap().is_empty());

        // Server, with_backoff: retried three times, then given up.
        let e = client.get("/down").send().await.unwrap_err();
        assert_eq!(e.class, ErrorClass::Server);
        assert_eq!(e.code.as_deref(), Some("upstream_unreachable"));
        assert_eq!(e.retry, Retry::WithBackoff);
        assert_eq!(e.attempts, 4);
        assert!(e.gave_up.as_deref().unwrap().contains("3 retries"), "{e}");
        let waits: Vec<Duration> = events.lock().unwrap().iter().map(|e| e.delay).collect();
        assert_eq!(waits.len(), 3);
        for (i, w) in waits.iter().enumerate() {
            assert!(*w <= Duration::from_millis(200 << i), "{waits:?}");
        }
    });
    // Network: nothing listens.
    let nobody = Client::builder(format!("http://{}", Upstream::refused()))
        .max_retries(2)
        .build()
        .unwrap();
    run(async {
        let e = nobody.get("/x").send().await.unwrap_err();
        assert_eq!(e.class, ErrorClass::Network);
        assert_eq!(e.status, None);
        assert_eq!(e.attempts, 3);
        assert!(e.detail.as_deref().unwrap().contains("refused"), "{e}");
    });
    assert_eq!(nobody.stats().retries, 2);

    // An answer longer than the client accepts: no retry makes it shorter.
    let small = Client::builder(format!("http://{}", gw.addr))
        .max_body_bytes(16)
        .build()
        .unwrap();
    let e = run(small.get("/r").send()).unwrap_err();
    assert_eq!(e.attempts, 1);
    assert_eq!(e.retry, Retry::Never);
    assert!(e.to_string().contains("longer than 16 bytes"), "{e}");
}

#[test]
fn an_upstream_failing_twice_is_retried_with_one_idempotency_key() {
    let up = Upstream::start(Behaviour::FailFirst(2, 502));
    let gw = Gateway::start(&one_route("/r", &up.url(), "retries = 0"));
    let (client, events) = client_of(&gw, |b| b);
    let resp = run(client.post_json("/r", &serde_json::json!({"n": 1})).send()).unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.attempts(), 3);
    assert_eq!(up.heads().len(), 3, "{:?}", up.heads());
    let echo: Value = resp.json().unwrap();
    let key = echo["headers"]["idempotency-key"][0].as_str().unwrap();
    assert_eq!(key.len(), 32, "{key}");
    let events = events.lock().unwrap();
    assert_eq!(events.len(), 2);
    for e in events.iter() {
        // Every attempt carried the same key.
        assert_eq!(e.error.detail, Some(format!("failing {key}")));
        // The upstream's own 502, passed on: no catalog code, retried by its status.
        assert_eq!(e.error.status, Some(502));
        assert_eq!(e.error.class, ErrorClass::Server);
        assert_eq!(e.error.retry, Retry::WithBackoff);
        assert!(e.error.request_id.is_some(), "the X-Request-Id header");
    }
    assert_eq!(client.stats().retries, 2);
    assert_eq!(client.stats().attempts, 3);

    // With retries off, the first failure is the answer, without a key.
    let up = Upstream::start(Behaviour::FailFirst(1, 502));
    let gw = Gateway::start(&one_route("/r", &up.url(), "retries = 0"));
    let (client, _) = client_of(&gw, |b| b.max_retries(0));
    let e = run(client.post_json("/r", &1).send()).unwrap_err();
    assert_eq!(e.attempts, 1);
    assert_eq!(
        e.gave_up.as_deref(),
        Some("0 retries made, the most allowed")
    );
}

#[test]
fn retry_after_is_waited_from_a_rate_limited_route_and_from_an_upstream() {
    let up = Upstream::start(Behaviour::Echo);
    let limit = "[[routes.rate_limits]]\nlimit = 1\nwindow = \"2s\"\nkey = \"address\"\n";
    let gw = Gateway::start(&one_route("/r", &up.url(), limit));
    let (client, events) = client_of(&gw, |b| b);
    run(async {
        assert_eq!(client.get("/r").send().await.unwrap().attempts(), 1);
        let resp = client.get("/r").send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.attempts(), 2);
    });
    {
        let events = events.lock().unwrap();
        assert_eq!(events.len(), 1);
        let e = &events[0].error;
        assert_eq!(e.code.as_deref(), Some("rate_limited"));
        assert_eq!(e.retry, Retry::AfterDelay);
        let asked = e.retry_after.unwrap();
        assert!(asked >= Duration::from_secs(1), "{asked:?}");
        assert_eq!(events[0].delay, asked, "the wait is what Retry-After said");
    }

    let up = Upstream::start(Behaviour::FailFirst(1, 503));
    let gw = Gateway::start(&one_route("/r", &up.url(), "retries = 0"));
    let (client, events) = client_of(&gw, |b| b);
    let resp = run(client.get("/r").send()).unwrap();
    assert_eq!(resp.attempts(), 2);
    let events = events.lock().unwrap();
    assert_eq!(events[0].error.status, Some(503));
    assert_eq!(events[0].error.retry, Retry::AfterDelay);
    assert_eq!(events[0].delay, Duration::from_secs(1));
}

/// A TCP proxy to `target` that closes the first `drop` connections as soon as a request
/// arrives on them (a reset, to the client) and relays the others.
fn flaky_proxy(target: SocketAddr, drop: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for (i, conn) in listener.incoming().enumerate() {
            let Ok(mut conn) = conn else { continue };
            if i < drop {
                let _ = conn.read(&mut [0u8; 1024]);
                let _ = conn.shutdown(std::net::Shutdown::Both);
                continue;
            }
            let Ok(mut back) = TcpStream::connect(target) else {
                continue;
            };
            let (mut c2, mut b2) = (conn.try_clone().unwrap(), back.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c2, &mut b2);
                let _ = b2.shutdown(std::net::Shutdown::Write);
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut back, &mut conn);
                let _ = conn.flush();
            });
        }
    });
    addr
}

#[test]
fn a_reset_connection_is_retried_and_the_budget_stops_retry_storms() {
    let up = Upstream::start(Behaviour::Echo);
    let gw = Gateway::start(&one_route("/r", &up.url(), ""));
    let proxy = flaky_proxy(gw.addr, 1);
    let client = Client::builder(format!("http://{proxy}")).build().unwrap();
    let resp = run(client.get("/r").send()).unwrap();
    assert_eq!(resp.attempts(), 2);
    assert_eq!(up.heads().len(), 1);

    // A budget of one retry: the first request spends it, the second is not retried.
    let nobody = Client::builder(format!("http://{}", Upstream::refused()))
        .retry_budget(1, 0.0)
        .build()
        .unwrap();
    run(async {
        let e = nobody.get("/x").send().await.unwrap_err();
        assert_eq!(e.attempts, 2);
        assert_eq!(
            e.gave_up.as_deref(),
            Some("the client's retry budget is spent")
        );
        let e = nobody.get("/x").send().await.unwrap_err();
        assert_eq!(e.attempts, 1);
    });
    assert_eq!(nobody.stats().budget_refusals, 2);
    assert_eq!(nobody.stats().budget_left, 0);
}

const DEVICES: &str = "/v1/customers/acme/devices";

#[test]
fn tokens_are_cached_and_refreshed_before_they_expire() {
    let s = setup();
    let (client, events) = client_of(&s.gw, |b| {
        b.client_credentials(&s.client_id, &s.secret, "/oauth/token")
            .token_validity(Duration::from_secs(3))
    });
    run(async {
        for _ in 0..3 {
            assert_eq!(client.get(DEVICES).send().await.unwrap().status(), 200);
        }
        assert_eq!(client.stats().token_requests, 1, "cached");
        // A fifth of the life before it ends, a new token is fetched: the API never sees
        // the old one expire.
        tokio::time::sleep(Duration::from_millis(2700)).await;
        let resp = client.get(DEVICES).send().await.unwrap();
        assert_eq!(resp.attempts(), 1);
    });
    assert_eq!(client.stats().token_requests, 2);
    assert_eq!(client.stats().reauths, 0);
    assert!(events.lock().unwrap().is_empty());
}

#[test]
fn after_reauth_gets_a_new_token_once() {
    let s = setup();
    let (client, events) = client_of(&s.gw, |b| {
        b.client_credentials(&s.client_id, &s.secret, "/oauth/token")
    });
    let token = run(client.access_token()).unwrap().unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            token.split('.').nth(1).unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    candor_gateway::Identity::open(&s.gw.dir.join("candor-data"))
        .unwrap()
        .revoke(
            claims["jti"].as_str().unwrap(),
            claims["exp"].as_i64().unwrap(),
        )
        .unwrap();
    assert!(s.gw.eventually(|_| { bearer(&s, DEVICES, &format!("Bearer {token}")).status == 401 }));
    let resp = run(client.get(DEVICES).send()).unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.attempts(), 2);
    {
        let events = events.lock().unwrap();
        assert_eq!(events.len(), 1);
        assert!(events[0].reauthenticate);
        assert_eq!(events[0].error.code.as_deref(), Some("token_revoked"));
        assert_eq!(events[0].delay, Duration::ZERO);
    }
    assert_eq!(client.stats().token_requests, 2);
    assert_eq!(client.stats().reauths, 1);

    // A new token cannot give a scope the client lacks: re-acquired once, then the error.
    let e = run(client.get("/v1/admin").send()).unwrap_err();
    assert_eq!(e.code.as_deref(), Some("insufficient_scope"));
    assert_eq!(e.retry, Retry::AfterReauth);
    assert_eq!(e.attempts, 2);
    assert_eq!(e.gave_up.as_deref(), Some("a new token was refused too"));
    assert_eq!(client.stats().token_requests, 3);
}

#[test]
fn a_second_factor_and_jwt_assertions_obtain_tokens() {
    let s = setup_with(100);
    let out = cli(
        &s.gw,
        &[
            "clients",
            "add",
            "--account",
            "acme",
            "--scopes",
            "devices:read",
            "--second-factor",
        ],
    );
    let (id, secret, totp) = (
        value_of(&out, "client_id:"),
        value_of(&out, "client_secret:"),
        value_of(&out, "totp_secret:"),
    );
    // The new client reaches the running gateway within a second or so.
    assert!(s.gw.eventually(|g| {
        g.request(
            "POST",
            "/oauth/token",
            &[FORM, ("Authorization", &basic(&id, &secret))],
            b"grant_type=client_credentials",
        )
        .json()["code"]
            == "second_factor_required"
    }));
    let (without, _) = client_of(&s.gw, |b| {
        b.client_credentials(&id, &secret, "/oauth/token")
    });
    let e = run(without.get(DEVICES).send()).unwrap_err();
    assert_eq!(e.code.as_deref(), Some("second_factor_required"));
    assert_eq!(e.status, Some(401));
    assert_eq!(
        e.attempts, 1,
        "a refusal of the token endpoint is not retried"
    );
    assert_eq!(
        e.gave_up.as_deref(),
        Some("no credentials this client could renew")
    );
    let (with, _) = client_of(&s.gw, |b| {
        b.client_credentials(&id, &secret, "/oauth/token")
            .totp_secret(&totp)
    });
    assert_eq!(run(with.get(DEVICES).send()).unwrap().status(), 200);

    // JWT assertions: the key registered, two clients fetch tokens with fresh jti each
    // (a replayed jti would be refused with assertion_replayed).
    let der =
        ring::signature::Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
    let key = || {
        AssertionKey::ed25519_pkcs8(der.as_ref())
            .unwrap()
            .with_kid("client-key-1")
    };
    let file = s.gw.dir.join("client.jwks.json");
    std::fs::write(&file, key().public_jwks().to_string()).unwrap();
    let out = cli(
        &s.gw,
        &[
            "clients",
            "set-keys",
            &s.client_id,
            "--jwks",
            file.to_str().unwrap(),
        ],
    );
    assert!(out.contains("1 assertion key"), "{out}");
    let assertion_client =
        |g: &Gateway| client_of(g, |b| b.jwt_assertion(&s.client_id, key(), "/oauth/token")).0;
    // The keys reach the running gateway within a second or so.
    assert!(s.gw.eventually(|g| run(assertion_client(g).get(DEVICES).send()).is_ok()));
    for _ in 0..2 {
        let c = assertion_client(&s.gw);
        assert_eq!(run(c.get(DEVICES).send()).unwrap().status(), 200);
        assert_eq!(c.stats().token_requests, 1);
    }
}

#[test]
fn each_profiles_envelope_is_decoded_and_acted_on() {
    let up = Upstream::start(Behaviour::Echo);
    let profiles = [
        ("asyncos", Envelope::AsyncOs),
        ("edgio", Envelope::Edgio),
        ("pelion", Envelope::Pelion),
        ("knox", Envelope::Knox),
        ("ixon", Envelope::Ixon),
        ("problem", Envelope::Problem),
    ];
    let mut config = String::new();
    for (name, _) in &profiles {
        let u = up.url();
        config.push_str(&format!(
            r#"
[[routes]]
name = "{name}"
path = "/{name}/devices"
upstream = "{u}"
auth = "bearer"
profile = "{name}"
[[routes.validate.params]]
in = "header"
name = "Api-Company"
required = true
schema = {{ type = "string" }}

[[routes]]
name = "{name}-limited"
path = "/{name}/limited"
upstream = "{u}"
profile = "{name}"
[[routes.rate_limits]]
limit = 1
window = "2s"
key = "address"
"#
        ));
    }
    let mut out = String::new();
    let gw = Gateway::start_after(&config, |path| {
        cli_at(path, &["accounts", "add", "--id", "acme", "--name", "Acme"]);
        out = cli_at(path, &["clients", "add", "--account", "acme"]);
    });
    let (id, secret) = (
        value_of(&out, "client_id:"),
        value_of(&out, "client_secret:"),
    );
    let (anonymous, _) = client_of(&gw, |b| b);
    for (name, envelope) in profiles {
        let path = format!("/{name}/devices");
        let (client, events) =
            client_of(&gw, |b| b.client_credentials(&id, &secret, "/oauth/token"));
        run(async {
            // No credentials: 401 in the profile's words, whose remedy is a token.
            let e = anonymous.get(&path).send().await.unwrap_err();
            assert_eq!(e.envelope, envelope, "{name}: {:?}", e.body);
            assert_eq!(e.status, Some(401), "{name}");
            assert_eq!(e.class, ErrorClass::Content);
            assert_eq!(e.retry, Retry::AfterReauth, "{name}: {e:?}");
            assert!(
                e.catalog_codes.contains(&"credentials_missing".to_owned()),
                "{name}: {:?}",
                e.catalog_codes
            );
            assert!(e.request_id.is_some(), "{name}");
            assert_eq!(
                e.gave_up.as_deref(),
                Some("no credentials this client could renew")
            );

            // A required header missing: never retried; the header named where the
            // envelope has room for fields.
            let e = client.get(&path).send().await.unwrap_err();
            assert_eq!(e.envelope, envelope, "{name}: {:?}", e.body);
            assert_eq!(e.status, Some(400), "{name}");
            assert_eq!(e.retry, Retry::Never, "{name}: {e:?}");
            assert_eq!(e.attempts, 1);
            assert!(
                e.catalog_codes.contains(&"validation_failed".to_owned()),
                "{name}: {:?}",
                e.catalog_codes
            );
            if envelope != Envelope::AsyncOs {
                assert!(
                    e.fields.iter().any(|f| f
                        .name
                        .as_deref()
                        .is_some_and(|n| n.eq_ignore_ascii_case("api-company"))),
                    "{name}: {:?}",
                    e.body
                );
            }
            let ok = client.get(&path).header("Api-Company", "acme").send().await;
            assert_eq!(ok.unwrap().status(), 200);

            // Rate limited: the profile's 429, Retry-After waited, then the answer.
            let limited = format!("/{name}/limited");
            assert_eq!(client.get(&limited).send().await.unwrap().attempts(), 1);
            let resp = client.get(&limited).send().await.unwrap();
            assert_eq!(resp.attempts(), 2, "{name}");
        });
        let events = events.lock().unwrap();
        assert_eq!(events.len(), 1, "{name}");
        let e = &events[0].error;
        assert_eq!(e.envelope, envelope, "{name}: {:?}", e.body);
        assert_eq!(e.status, Some(429));
        assert_eq!(e.retry, Retry::AfterDelay, "{name}: {e:?}");
        assert!(
            e.catalog_codes.contains(&"rate_limited".to_owned()),
            "{name}: {:?}",
            e.catalog_codes
        );
        assert_eq!(Some(events[0].delay), e.retry_after, "{name}");
    }
}

#[test]
fn https_with_a_private_ca_and_an_untrusted_certificate_is_not_retried() {
    let up = Upstream::start(Behaviour::Echo);
    let config = format!(
        "[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n{}",
        fixture("server.pem").display(),
        fixture("server.key").display(),
        one_route("/r", &up.url(), "")
    );
    let gw = Gateway::start(&config);
    let ca = std::fs::read_to_string(fixture("ca.pem")).unwrap();
    let base = format!("https://{}", gw.addr);
    let trusted = Client::builder(&base)
        .add_root_certificates_pem(&ca)
        .build()
        .unwrap();
    let resp = run(trusted.get("/r").send()).unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.request_id().is_some());

    let untrusted = Client::builder(&base).build().unwrap();
    let e = run(untrusted.get("/r").send()).unwrap_err();
    assert_eq!(e.class, ErrorClass::Network);
    assert_eq!(e.retry, Retry::Never);
    assert_eq!(e.attempts, 1);
    assert!(e.to_string().contains("TLS with"), "{e}");
}
