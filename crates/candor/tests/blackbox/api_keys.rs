//! API keys, black-box: keys in a header or the query, every refusal precise (invalid,
//! expired, restricted by referer or client address, short of a scope), rotation and
//! deletion picked up by the running gateway, and no key secret in the logs.

use crate::harness::*;
use std::process::Command;

#[test]
fn api_keys() {
    let up = Upstream::start(Behaviour::Echo);
    let u = up.url();
    let config = format!(
        "[[routes]]\nname = \"reports\"\npath = \"/k/reports\"\nupstream = \"{u}\"\nauth = \"api_key\"\nscopes = [\"reports:read\"]\n\
         [[routes]]\nname = \"query\"\npath = \"/k/query\"\nupstream = \"{u}\"\nauth = \"api_key\"\napi_key_query = \"api_key\"\n"
    );
    let mut keys: Vec<String> = Vec::new();
    let gw = Gateway::start_after(&config, |path| {
        cli_at(path, &["accounts", "add", "--id", "acme", "--name", "Acme"]);
        for extra in [
            vec!["--scopes", "reports:read"],
            vec!["--scopes", "reports:read", "--expires-in", "1s"],
            vec![
                "--scopes",
                "reports:read",
                "--allow-referer",
                "https://app.example.com/*",
            ],
            vec!["--scopes", "reports:read", "--allow-ip", "10.0.0.0/8"],
            vec!["--scopes", "other"],
        ] {
            let mut args = vec!["keys", "add", "--account", "acme"];
            args.extend(extra);
            keys.push(value_of(&cli_at(path, &args), "api_key:"));
        }
    });
    let call = |key: &str, extra: &[(&str, &str)]| {
        let mut h = vec![("X-Api-Key", key)];
        h.extend_from_slice(extra);
        gw.request("GET", "/k/reports", &h, b"")
    };
    let r = call(&keys[0], &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    let id = keys[0][..13].to_owned();
    let id = id.as_str();
    assert_eq!(r.json()["headers"]["x-candor-client"][0], id);
    assert_eq!(r.json()["headers"]["x-candor-account"][0], "acme");
    let r = gw.get(&format!("/k/query?api_key={}&x=1", keys[0]));
    assert_eq!(r.status, 200, "{}", r.text());

    let r = gw.get("/k/reports");
    let b = assert_problem(&r, "credentials_missing");
    assert_eq!(
        b["detail"],
        "/k/reports requires API key (in the x-api-key header) credentials and the request carried none."
    );

    let wrong_secret = format!("{}{}", &keys[0][..14], "z".repeat(32));
    let b = assert_problem(&call(&wrong_secret, &[]), "api_key_invalid");
    assert_eq!(
        b["detail"],
        format!(
            "The API key {id} is not valid: its secret part does not match; copy the whole key."
        )
    );
    let b = assert_problem(
        &call("ck_aaaaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", &[]),
        "api_key_invalid",
    );
    assert!(
        b["detail"]
            .as_str()
            .unwrap()
            .contains("no key has the id ck_aaaaaaaaaa"),
        "{b}"
    );
    let b = assert_problem(&call(&keys[0][..30], &[]), "credentials_malformed");
    assert_eq!(b["reason"], "too_short");
    let quoted = format!("\"{}\"", keys[0]);
    assert_eq!(
        assert_problem(&call(&quoted, &[]), "credentials_malformed")["reason"],
        "quoted"
    );

    std::thread::sleep(std::time::Duration::from_millis(1100));
    let b = assert_problem(&call(&keys[1], &[]), "api_key_invalid");
    assert!(b["detail"].as_str().unwrap().contains("it expired"), "{b}");

    let b = assert_problem(&call(&keys[2], &[]), "api_key_restriction_missing");
    assert_eq!(
        b["detail"],
        "The API key is restricted by referer and the request carried no referer."
    );
    let r = call(&keys[2], &[("Referer", "https://evil.example/page")]);
    let b = assert_problem(&r, "api_key_restriction_mismatch");
    assert_eq!(
        b["detail"],
        "The API key may not be used with referer https://evil.example/page."
    );
    assert!(
        !r.text().contains("app.example.com"),
        "the allow-list is never disclosed"
    );
    assert_eq!(
        call(
            &keys[2],
            &[("Referer", "https://app.example.com/dashboard")]
        )
        .status,
        200
    );

    let b = assert_problem(&call(&keys[3], &[]), "api_key_restriction_mismatch");
    assert_eq!(
        b["detail"],
        "The API key may not be used with client address 127.0.0.1."
    );

    assert_problem(&call(&keys[4], &[]), "insufficient_scope");

    // Rotation: same id, new secret; the old key stops working, the new one works.
    let out = Command::new(BIN)
        .args(["keys", "rotate", id, "--config"])
        .arg(&gw.config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let rotated = value_of(&String::from_utf8_lossy(&out.stdout), "api_key:");
    assert_eq!(&rotated[..13], id);
    assert_ne!(rotated, keys[0]);
    assert!(gw.eventually(|_| call(&keys[0], &[]).status == 401));
    let b = assert_problem(&call(&keys[0], &[]), "api_key_invalid");
    assert!(
        b["detail"]
            .as_str()
            .unwrap()
            .contains("secret part does not match"),
        "{b}"
    );
    assert_eq!(call(&rotated, &[]).status, 200);
    keys.push(rotated.clone());

    let out = Command::new(BIN)
        .args(["keys", "delete", id, "--config"])
        .arg(&gw.config)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(gw.eventually(|_| call(&rotated, &[]).status == 401));
    let log = gw.log();
    for k in &keys {
        assert!(!log.contains(&k[14..]), "an API key secret reached the log");
    }
}
