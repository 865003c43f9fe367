//! Property tests: no untrusted input panics the parsers that read it. Each returns an
//! answer (a value or a catalog error) for any input. Bounded to stay fast under `cargo
//! test`; see fuzz/README.md for longer runs.

use crate::identity::jwt;
use crate::stages::authenticate::{AuthConfig, SELF_ISSUER, read_credentials};
use proptest::prelude::*;

/// Text shaped like candor's config: known tables and keys with values of any type, plus
/// noise, so that generated files get past the TOML parser into the checks.
fn config_text() -> impl Strategy<Value = String> {
    let table = prop::sample::select(vec![
        "[server]",
        "[limits]",
        "[timeouts]",
        "[log]",
        "[auth]",
        "[[routes]]",
        "[[auth.issuers]]",
        "[access]",
        "[debug]",
        "[bogus]",
    ]);
    let key = prop::sample::select(vec![
        "listen",
        "workers",
        "name",
        "path",
        "upstream",
        "timeout",
        "mode",
        "methods",
        "max_uri_bytes",
        "max_connections",
        "keepalive",
        "request_head",
        "auth",
        "scopes",
        "issuers",
        "allow",
        "deny",
        "retry_after",
        "jwks_url",
        "refresh",
        "max_queue",
        "host",
    ]);
    let value = prop_oneof![
        Just("\"/{*rest}\"".to_owned()),
        Just("\"http://127.0.0.1:9\"".to_owned()),
        Just("\"1s\"".to_owned()),
        Just("[\"GET\", 1]".to_owned()),
        Just("{ a = 1 }".to_owned()),
        any::<i64>().prop_map(|n| n.to_string()),
        "\"[ -~]{0,12}\"",
        Just("true".to_owned()),
    ];
    let line = prop_oneof![
        table.prop_map(str::to_owned),
        (key, value).prop_map(|(k, v)| format!("{k} = {v}")),
        "[ -~]{0,20}",
    ];
    prop::collection::vec(line, 0..24).prop_map(|lines| lines.join("\n"))
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_config_loader_answers_every_text(text in config_text(), noise in "\\PC{0,64}") {
        let dir = std::env::temp_dir();
        let _ = crate::config::Config::parse("candor.toml", &text, &dir);
        let _ = crate::config::Config::parse("candor.toml", &noise, &dir);
    }

    #[test]
    fn credential_parsing_answers_every_authorization_value(
        value in prop::collection::vec(any::<u8>(), 0..200),
        scheme in prop::sample::select(vec!["Bearer", "TOK"]),
    ) {
        let mut headers = http::HeaderMap::new();
        if let Ok(v) = http::HeaderValue::from_bytes(&value) {
            headers.insert(http::header::AUTHORIZATION, v);
        }
        let auth = AuthConfig {
            scheme: scheme.to_owned(),
            scopes: vec![],
            account: None,
            api_key: None,
        account_tokens: false,
            issuers: vec![SELF_ISSUER.to_owned()],
        };
        let _ = read_credentials(&headers, &auth, "/x");
    }

    #[test]
    fn the_jwt_decoder_answers_every_token(
        parts in prop::collection::vec("[A-Za-z0-9_=+/-]{0,40}", 0..5),
        raw in "\\PC{0,80}",
    ) {
        let snapshot = crate::identity::store::Snapshot::default();
        let expect = jwt::Expectations { issuer: "i", audience: "a", leeway: 30, now: 1_700_000_000 };
        for token in [parts.join("."), raw] {
            let _ = jwt::check_shape(&token);
            let _ = jwt::peek_issuer(&token);
            let _ = jwt::peek_kid(&token);
            let _ = jwt::verify(&token, &snapshot, &expect);
        }
    }

    #[test]
    fn every_catalog_template_renders_any_values(value in "\\PC{0,40}") {
        for entry in candor_catalog::Catalog::builtin().entries() {
            let names = entry.message.placeholders();
            let params: Vec<(&str, &str)> = names.iter().map(|n| (*n, value.as_str())).collect();
            let text = entry.message.render(&params);
            for n in names {
                prop_assert!(!text.contains(&format!("{{{n}}}")) || value.contains(n), "{}", entry.code);
            }
        }
    }

    #[test]
    fn validation_answers_every_body_with_pointers_into_it(body in json_value()) {
        // Any JSON against a schema with most keywords: an answer, never a panic, and each
        // problem's pointer names the body's root, a field in it, or a missing field of an
        // object in it.
        let check = crate::BodyCheck::compile(serde_json::json!({
            "type": "object",
            "required": ["a", "b"],
            "additionalProperties": false,
            "properties": {
                "a": {"type": "string", "minLength": 2, "pattern": "^[a-z]+$", "format": "email"},
                "b": {"type": "array", "maxItems": 3, "items": {"type": "integer", "minimum": 0}},
                "c": {"oneOf": [{"type": "object", "required": ["x"]}, {"enum": [1, 2]}]},
                "d": {"anyOf": [{"type": "null"}, {"const": true}]}
            }
        })).expect("compiles");
        let text = body.to_string();
        let problems = check.problems(text.as_bytes()).expect("JSON");
        for p in problems {
            let ptr = p.pointer.strip_prefix('#').expect("a # pointer");
            let parent = ptr.rsplit_once('/').map_or("", |(a, _)| a);
            prop_assert!(body.pointer(ptr).is_some() || body.pointer(parent).is_some_and(|v| v.is_object()),
                "{ptr} in {text}");
            prop_assert!(!p.detail.is_empty() && !p.reason.is_empty());
        }
    }
}

/// Small JSON values of every kind, nested a few levels.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        "[a-z@./~ -]{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop::sample::select(vec!["a", "b", "c", "d", "x", "a/b", "t~1"]),
                    inner
                ),
                0..5
            )
            .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        ]
    })
}
