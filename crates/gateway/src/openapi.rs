//! OpenAPI out: what `candor openapi` prints.
//!
//! [`error_components`] is an OpenAPI 3.1 document holding the catalog's errors as
//! components: the problem-details schema (`CandorProblem`, `CandorFieldError`), an
//! example and a response per code, the `X-Request-Id` and `Retry-After` headers.
//! [`annotate`] adds to an API's own document, on each operation, the error responses the
//! gateway can actually give on that operation's route (its plan decides: authentication
//! codes only where the route authenticates, `validation_failed` only where it validates, …).

use crate::config::Config;
use crate::stages::route::PathPattern;
use candor_catalog::{Catalog, Entry, FieldError, Problem, Retry, codes};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::path::Path;

/// The name of a code's example and response among the components.
fn component(code: &str) -> String {
    format!("candor_{code}")
}

/// A problem document such as the gateway sends for `entry`: its detail is the catalog's
/// template, with each fact in braces.
fn example(entry: &Entry, base_url: &str) -> Value {
    let detail = entry.message.source().to_owned();
    let mut p = Problem::new(
        entry,
        base_url,
        &detail,
        "/v1/customers/acme/devices",
        "01JDV3Q4ZC7X9M2N8B5T6K1RWE",
    );
    if entry.code == codes::VALIDATION_FAILED {
        p = p.errors(vec![FieldError {
            location: "body".into(),
            pointer: "#/serial".into(),
            name: "serial".into(),
            reason: "pattern".into(),
            detail: "must match ^[A-Z0-9-]{4,32}$; got \"ab c\"".into(),
        }]);
    }
    serde_json::from_str(&p.to_json()).unwrap_or(Value::Null)
}

/// The headers a response of `entry` carries.
fn headers(entry: &Entry) -> Value {
    let mut h = Map::new();
    h.insert(
        "X-Request-Id".into(),
        json!({"$ref": "#/components/headers/CandorRequestId"}),
    );
    if matches!(entry.retry, Retry::AfterDelay | Retry::WithBackoff) {
        h.insert(
            "Retry-After".into(),
            json!({"$ref": "#/components/headers/CandorRetryAfter"}),
        );
    }
    Value::Object(h)
}

/// The catalog's errors as an OpenAPI 3.1 document of components; `base_url` is where the
/// gateway serves its troubleshooting pages (each problem's `type`).
pub fn error_components(catalog: &Catalog, base_url: &str) -> Value {
    let codes: Vec<&str> = catalog.entries().iter().map(|e| e.code.as_str()).collect();
    let mut examples = Map::new();
    let mut responses = Map::new();
    for e in catalog.entries() {
        examples.insert(
            component(&e.code),
            json!({
                "summary": format!("{} ({})", e.title, e.code),
                "description": e.explanation,
                "value": example(e, base_url),
            }),
        );
        responses.insert(
            component(&e.code),
            json!({
                "description": format!("{}: {} (HTTP {}, retry: {}). Troubleshooting: {}/errors/{}", e.code, e.title, e.status, e.retry.as_str(), base_url.trim_end_matches('/'), e.code),
                "headers": headers(e),
                "content": {"application/problem+json": {
                    "schema": {"$ref": "#/components/schemas/CandorProblem"},
                    "examples": {e.code.clone(): {"$ref": format!("#/components/examples/{}", component(&e.code))}},
                }},
            }),
        );
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "candor gateway errors",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Every error the candor gateway answers with: an RFC 9457 problem document whose `code` names a catalog entry and whose `type` links its troubleshooting page.",
        },
        "paths": {},
        "components": {
            "schemas": {
                "CandorProblem": {
                    "type": "object",
                    "description": "An error of the gateway (RFC 9457 problem details, with candor's members). Extension members carry the facts of the error (limits, the values sent).",
                    "required": ["type", "title", "status", "detail", "instance", "code", "request_id", "retry", "errors"],
                    "properties": {
                        "type": {"type": "string", "format": "uri", "description": "The troubleshooting page of the code."},
                        "title": {"type": "string", "description": "The code's short, stable summary."},
                        "status": {"type": "integer", "minimum": 100, "maximum": 599},
                        "detail": {"type": "string", "description": "What happened to this request, with the values involved."},
                        "instance": {"type": "string", "description": "The request's path."},
                        "code": {"type": "string", "enum": codes, "description": "The catalog code: a stable contract."},
                        "request_id": {"type": "string", "description": "The request's id, also in X-Request-Id: give it when asking about the request."},
                        "trace_id": {"type": "string", "pattern": "^[0-9a-f]{32}$", "description": "The request's W3C trace id: the client's traceparent's when it sent a valid one, else a trace started at the gateway (absent only when the request was refused before its head was parsed)."},
                        "retry": {"type": "string", "enum": ["never", "after_delay", "with_backoff", "after_reauth"], "description": "Whether and how the same request may be retried."},
                        "errors": {"type": "array", "items": {"$ref": "#/components/schemas/CandorFieldError"}, "description": "Every field at fault, in a stable order."},
                    },
                    "additionalProperties": true,
                },
                "CandorFieldError": {
                    "type": "object",
                    "required": ["in", "name", "reason", "detail"],
                    "properties": {
                        "in": {"type": "string", "enum": ["body", "query", "path", "header"]},
                        "pointer": {"type": "string", "description": "A JSON Pointer into the body (#/devices/3/serial); only body problems have one (the others are named by `name`)."},
                        "name": {"type": "string"},
                        "reason": {"type": "string", "description": "A stable reason word: required, blank, type, format, enum, length, range, pattern, unknown, …"},
                        "detail": {"type": "string", "description": "What was expected and, unless it is secret, what was sent."},
                    },
                },
            },
            "headers": {
                "CandorRequestId": {"description": "The request's id (also the problem's request_id).", "schema": {"type": "string"}},
                "CandorRetryAfter": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer", "minimum": 0}},
            },
            "examples": examples,
            "responses": responses,
        },
    })
}

/// The OpenAPI document at `spec` with, on each of its operations, the error responses the
/// gateway can give on that operation's route in `config` (the route named by the
/// operationId, or the one whose path and method take the operation's requests), and the
/// catalog's components. Also says which operations no route answers.
pub fn annotate(spec: &Path, config: &Config) -> Result<(Value, Vec<String>), String> {
    let mut doc = crate::config::openapi::load(spec)?;
    let base = crate::config::openapi::document_base(&doc);
    let plans = config.route_plans();
    let base_url = &config.server.public_base_url;
    let mut unanswered = Vec::new();
    const METHODS: &[&str] = &[
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];
    if let Some(Value::Object(paths)) = doc.get_mut("paths") {
        for (template, item) in paths.iter_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            let pattern = PathPattern::parse(&format!("{base}{template}")).ok();
            for method in METHODS {
                let Some(Value::Object(op)) = item.get_mut(*method) else {
                    continue;
                };
                let upper = method.to_ascii_uppercase();
                let name = op
                    .get("operationId")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                let plan = plans
                    .iter()
                    .filter(|p| !p.name.starts_with("candor."))
                    .find(|p| name.as_deref() == Some(p.name.as_str()))
                    .or_else(|| {
                        let pattern = pattern.as_ref()?;
                        plans
                            .iter()
                            .filter(|p| !p.name.starts_with("candor."))
                            .find(|p| {
                                (p.methods.is_empty() || p.methods.contains(&upper))
                                    && PathPattern::parse(&p.path).is_ok_and(|r| r.covers(pattern))
                            })
                    });
                let Some(plan) = plan else {
                    unanswered.push(name.unwrap_or_else(|| format!("{upper} {template}")));
                    continue;
                };
                let mut by_status: BTreeMap<u16, Vec<&str>> = BTreeMap::new();
                for code in &plan.codes {
                    if let Some(e) = config.catalog.get(code) {
                        by_status.entry(e.status).or_default().push(code);
                    }
                }
                let responses = op
                    .entry("responses")
                    .or_insert_with(|| json!({}))
                    .as_object_mut()
                    .ok_or_else(|| format!("{upper} {template}: responses is not an object"))?;
                for (status, codes) in by_status {
                    let examples: Map<String, Value> = codes
                        .iter()
                        .map(|c| {
                            (
                                (*c).to_owned(),
                                json!({"$ref": format!("#/components/examples/{}", component(c))}),
                            )
                        })
                        .collect();
                    let problem = json!({
                        "schema": {"$ref": "#/components/schemas/CandorProblem"},
                        "examples": examples,
                    });
                    let r = responses.entry(status.to_string()).or_insert_with(|| {
                        json!({"description": format!("From the gateway: {}", codes.join(", "))})
                    });
                    if let Some(r) = r.as_object_mut() {
                        let content = r.entry("content").or_insert_with(|| json!({}));
                        if let Some(c) = content.as_object_mut() {
                            c.entry("application/problem+json").or_insert(problem);
                        }
                        r.insert("x-candor-codes".into(), json!(codes));
                    }
                }
                op.insert("x-candor-route".into(), json!(plan.name));
            }
        }
    }
    let ours = error_components(&config.catalog, base_url);
    let components = doc
        .as_object_mut()
        .ok_or("the document is not an object")?
        .entry("components")
        .or_insert_with(|| json!({}));
    if let (Some(into), Some(from)) = (components.as_object_mut(), ours["components"].as_object()) {
        for (kind, items) in from {
            let slot = into.entry(kind.clone()).or_insert_with(|| json!({}));
            if let (Some(slot), Some(items)) = (slot.as_object_mut(), items.as_object()) {
                for (k, v) in items {
                    slot.insert(k.clone(), v.clone());
                }
            }
        }
    }
    Ok((doc, unanswered))
}
