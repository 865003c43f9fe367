//! Tokens of external issuers, black-box: JWK sets from a file and over HTTPS, rotation
//! picked up on an unknown key id, and the checks every token gets.

use crate::harness::*;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{Value, json};
use std::sync::Arc;

fn keypair() -> Ed25519KeyPair {
    let rng = ring::rand::SystemRandom::new();
    Ed25519KeyPair::from_pkcs8(Ed25519KeyPair::generate_pkcs8(&rng).unwrap().as_ref()).unwrap()
}

fn jwks(keys: &[(&str, &Ed25519KeyPair)]) -> String {
    let keys: Vec<Value> = keys
        .iter()
        .map(|(kid, k)| json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": B64.encode(k.public_key().as_ref())}))
        .collect();
    json!({ "keys": keys }).to_string()
}

fn sign(kid: &str, key: &Ed25519KeyPair, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        B64.encode(json!({"alg": "EdDSA", "kid": kid}).to_string()),
        B64.encode(claims.to_string())
    );
    format!(
        "{input}.{}",
        B64.encode(key.sign(input.as_bytes()).as_ref())
    )
}

fn claims(edit: impl FnOnce(&mut Value)) -> Value {
    let now = candor_gateway::unix_now();
    let mut c = json!({"iss": "https://idp.test", "sub": "user-7", "aud": ["devices-api", "other"], "exp": now + 300, "iat": now, "scp": ["devices:read"], "tenant": "acme"});
    edit(&mut c);
    c
}

fn config(up: &Upstream, source: &str) -> String {
    format!(
        r#"
[[auth.issuers]]
issuer = "https://idp.test"
audience = "devices-api"
account_claim = "tenant"
{source}

[[routes]]
name = "devices"
path = "/v1/customers/{{customer}}/devices"
upstream = "{u}"
auth = "bearer"
issuers = ["https://idp.test"]
scopes = ["devices:read"]
account_param = "customer"
"#,
        u = up.url()
    )
}

/// A gateway whose issuer's JWK set, a file, holds `key` as `idp-1`.
fn with_jwks_file(up: &Upstream, key: &Ed25519KeyPair) -> Gateway {
    Gateway::start_after(&config(up, "jwks_file = \"idp.jwks.json\""), |path| {
        std::fs::write(
            path.parent().unwrap().join("idp.jwks.json"),
            jwks(&[("idp-1", key)]),
        )
        .unwrap();
    })
}

#[test]
fn tokens_of_an_issuer_with_a_jwks_file() {
    let up = Upstream::start(Behaviour::Echo);
    let key = keypair();
    let mut gw_dir_file = std::path::PathBuf::new();
    let gw = Gateway::start_after(
        &config(&up, "jwks_file = \"idp.jwks.json\"\nrefresh = \"2s\""),
        |path| {
            gw_dir_file = path.parent().unwrap().join("idp.jwks.json");
            std::fs::write(&gw_dir_file, jwks(&[("idp-1", &key)])).unwrap();
        },
    );
    let path = "/v1/customers/acme/devices";
    let call = |t: &str| {
        gw.request(
            "GET",
            path,
            &[("Authorization", &format!("Bearer {t}"))],
            b"",
        )
    };
    assert!(
        gw.eventually(|_| call(&sign("idp-1", &key, &claims(|_| {}))).status == 200),
        "{}",
        gw.log()
    );
    let r = call(&sign("idp-1", &key, &claims(|_| {})));
    assert_eq!(r.json()["headers"]["x-candor-account"][0], "acme");
    assert_eq!(r.json()["headers"]["x-candor-client"][0], "user-7");

    let b = assert_problem(
        &call(&sign(
            "idp-1",
            &key,
            &claims(|c| c["aud"] = "billing".into()),
        )),
        "token_wrong_audience",
    );
    assert_eq!(
        b["detail"],
        "The access token was issued for audience billing; this API expects audience devices-api."
    );
    let b = assert_problem(
        &call(&sign(
            "idp-1",
            &key,
            &claims(|c| c["iss"] = "https://evil.test".into()),
        )),
        "token_wrong_audience",
    );
    assert_eq!(
        b["detail"],
        "The access token was issued for issuer https://evil.test; this API expects issuer https://idp.test."
    );
    assert_problem(
        &call(&sign(
            "idp-1",
            &key,
            &claims(|c| c["exp"] = (c["iat"].as_i64().unwrap() - 120).into()),
        )),
        "token_expired",
    );
    assert_problem(
        &call(&sign(
            "idp-1",
            &key,
            &claims(|c| c["tenant"] = "globex".into()),
        )),
        "account_mismatch",
    );
    assert_problem(
        &call(&sign(
            "idp-1",
            &key,
            &claims(|c| c["scp"] = json!(["other"])),
        )),
        "insufficient_scope",
    );
    assert_problem(
        &call(&sign("idp-1", &keypair(), &claims(|_| {}))),
        "token_invalid",
    );

    // The issuer rotates: an unknown kid refetches the set, and the new key works.
    let next = keypair();
    std::fs::write(&gw_dir_file, jwks(&[("idp-1", &key), ("idp-2", &next)])).unwrap();
    let rotated = sign("idp-2", &next, &claims(|_| {}));
    let b = assert_problem(&call(&rotated), "token_invalid");
    assert!(
        b["detail"]
            .as_str()
            .unwrap()
            .contains("`idp-2` is not among the registered keys of issuer https://idp.test"),
        "{b}"
    );
    assert!(gw.eventually(|_| call(&rotated).status == 200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_over_https_with_a_private_ca() {
    let key = keypair();
    let body = jwks(&[("idp-1", &key)]);
    // A small HTTPS server for the JWK set, with the test certificate for 127.0.0.1.
    let certs: Vec<_> =
        rustls_pemfile::certs(&mut std::fs::read(fixture("server.pem")).unwrap().as_slice())
            .collect::<Result<_, _>>()
            .unwrap();
    let private =
        rustls_pemfile::private_key(&mut std::fs::read(fixture("server.key")).unwrap().as_slice())
            .unwrap()
            .unwrap();
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, private)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let fetches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = fetches.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let (acceptor, body, counted) = (acceptor.clone(), body.clone(), counted.clone());
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let Ok(mut s) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/jwk-set+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    let up = Upstream::start(Behaviour::Echo);
    let source = format!(
        "jwks_url = \"https://127.0.0.1:{port}/jwks.json\"\nca_file = \"{}\"",
        fixture("ca.pem").display()
    );
    let gw = tokio::task::spawn_blocking(move || {
        let gw = Gateway::start(&config(&up, &source));
        let token = sign("idp-1", &key, &claims(|_| {}));
        let ok = gw.eventually(|g| {
            g.request(
                "GET",
                "/v1/customers/acme/devices",
                &[("Authorization", &format!("Bearer {token}"))],
                b"",
            )
            .status
                == 200
        });
        (ok, gw.log())
    })
    .await
    .unwrap();
    assert!(gw.0, "{}", gw.1);
    assert!(fetches.load(std::sync::atomic::Ordering::Relaxed) >= 1);
}

#[test]
fn issuer_configuration_is_checked() {
    let dir = temp_dir("issuers");
    let file = dir.join("c.toml");
    std::fs::write(
        &file,
        "[[auth.issuers]]\nissuer = \"https://idp.test\"\naudience = \"a\"\njwks_url = \"ftp://x\"\n\n[[routes]]\npath = \"/a\"\nupstream = \"http://127.0.0.1:9\"\nauth = \"bearer\"\nissuers = [\"https://idp.tset\"]\n",
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .args(["check", "--config", file.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("auth.issuers[0].jwks_url: `ftp://x` is not an http(s) URL"),
        "{text}"
    );
    assert!(
        text.contains("`https://idp.tset` is not a configured issuer"),
        "{text}"
    );
}

#[test]
fn a_route_taking_only_external_tokens_diagnoses_a_token_that_is_no_jwt() {
    let up = Upstream::start(Behaviour::Echo);
    let key = keypair();
    let gw = with_jwks_file(&up, &key);
    // The finding: token_wrong_audience "issued for issuer (no issuer)".
    let r = gw.request(
        "GET",
        "/v1/customers/acme/devices",
        &[("Authorization", "Bearer abcdefghijklmnopqrstuvwxyz")],
        b"",
    );
    let b = assert_problem(&r, "credentials_malformed");
    assert_eq!(b["reason"], "not_a_jwt", "{b}");
}

#[test]
fn an_issuer_refreshed_constantly_is_refused_by_check() {
    let up = Upstream::start(Behaviour::Echo);
    let dir = temp_dir("refresh");
    let file = dir.join("candor.toml");
    std::fs::write(
        &file,
        config(&up, "jwks_file = \"idp.jwks.json\"\nrefresh = \"0s\""),
    )
    .unwrap();
    std::fs::write(dir.join("idp.jwks.json"), jwks(&[("idp-1", &keypair())])).unwrap();
    let (code, out, _) = candor(&["check", "--config", file.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("auth.issuers[0].refresh"), "{out}");
    assert!(out.contains("fetched again and again"), "{out}");
}

#[test]
fn a_revoked_external_token_is_refused_on_its_first_use() {
    let up = Upstream::start(Behaviour::Echo);
    let key = keypair();
    let gw = with_jwks_file(&up, &key);
    let call = |t: &str| {
        gw.request(
            "GET",
            "/v1/customers/acme/devices",
            &[("Authorization", &format!("Bearer {t}"))],
            b"",
        )
    };
    let other = sign("idp-1", &key, &claims(|c| c["jti"] = "ext-other".into()));
    assert!(
        gw.eventually(|_| call(&other).status == 200),
        "{}",
        gw.log()
    );
    // The finding: only the cache of verified tokens consulted revocations, so a token
    // revoked before it was first seen was accepted.
    let admin_token = std::fs::read_to_string(gw.printed("admin API token: in ")).unwrap();
    let r = request(
        gw.admin.unwrap(),
        "POST",
        "/tokens/revoke",
        &[
            ("Authorization", &format!("Bearer {}", admin_token.trim())),
            ("Content-Type", "application/json"),
        ],
        br#"{"jti":"ext-7"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let revoked = sign("idp-1", &key, &claims(|c| c["jti"] = "ext-7".into()));
    assert_eq!(r.json()["revoked"], "ext-7");
    let b = assert_problem(&call(&revoked), "token_revoked");
    assert_eq!(b["status"], 401);
    assert_eq!(call(&other).status, 200);
}
