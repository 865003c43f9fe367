//! The admin listener: health, the catalog, the error pages, and the administration API for
//! accounts, clients, API keys, signing keys and token revocation. Everything it refuses
//! goes through the catalog like the gateway's own errors.
//!
//! The administration API requires `Authorization: Bearer <admin token>`. The token is read
//! from `server.admin_token_file`, or generated on first start into
//! `<data_dir>/admin.token` (readable by its owner only).

pub(crate) mod pages;

use crate::http::body::GatewayBody;
use crate::stages::authenticate::{AuthConfig, challenge, read_credentials};

use crate::error::GatewayError;
use crate::http::body::json_response;
use crate::http::request_id::RequestId;
use crate::http::server::State;
use crate::http::trace::TraceContext;
use crate::identity::store::{
    Account, AccountStatus, ApiKey, Client, Identity, NewAccount, NewApiKey, NewClient, StoreError,
    TokenSlot,
};
use crate::pipeline::Pipeline;
use crate::stages::respond::X_REQUEST_ID;
use crate::stages::route::method_not_allowed;
use candor_catalog::{FieldError, codes, page};

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{Value, json};
use std::sync::Arc;

const ENDPOINTS: &[&str] = &[
    "/health",
    "/stats",
    "/metrics",
    "/upstreams",
    "/catalog",
    "/errors/",
    "/errors/{code}",
    "/accounts",
    "/clients",
    "/keys",
    "/signing-keys",
    "/tokens/revoke",
    "/modes",
    "/blocks",
    "/events",
    "/requests/{id}",
];
const MAX_BODY: usize = 64 * 1024;

/// Reads the admin token from `file`, or creates one there.
pub(crate) fn load_or_create_token(file: &std::path::Path) -> std::io::Result<String> {
    match std::fs::read_to_string(file) {
        Ok(t) if t.trim().len() >= 16 => Ok(t.trim().to_owned()),
        Ok(_) => Err(std::io::Error::other(format!(
            "{} holds no usable admin token (16 characters at least)",
            file.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let token = format!("adm_{}", crate::identity::store::random_token(40));
            if let Some(dir) = file.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            std::io::Write::write_all(&mut options.open(file)?, token.as_bytes())?;
            Ok(token)
        }
        Err(e) => Err(e),
    }
}

/// Serves one admin request.
pub(crate) async fn handle(
    state: &State,
    pipeline: &Pipeline,
    req: Request<Incoming>,
) -> Response<GatewayBody> {
    let rid = RequestId::of(req.headers());
    let trace = TraceContext::of(req.headers());
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let mut resp = match route(state, pipeline, req, &path).await {
        Ok(r) => r,
        Err(e) => {
            crate::stats::STATS.error(e.code, e.ended_by());
            let trace_id = trace.trace_id_hex();
            tracing::info!(target: "candor::admin", request_id = %rid.text, trace_id = %trace_id, method = %method, path = %path, code = e.code, ended_by = e.ended_by().as_str(), "admin request refused");
            pipeline
                .renderer()
                .render(&e, &path, &rid.text, Some(&trace_id))
        }
    };
    resp.headers_mut().insert(X_REQUEST_ID.clone(), rid.header);
    resp
}

fn not_found_route(method: &Method, path: &str) -> GatewayError {
    GatewayError::new(codes::ROUTE_NOT_FOUND)
        .param("method", method.to_string())
        .param("path", path.to_owned())
        .param(
            "hint",
            format!(" The admin listener serves {}.", ENDPOINTS.join(", ")),
        )
        .extension("suggestions", json!([]))
}

fn check_admin(state: &State, req: &Request<Incoming>, path: &str) -> Result<(), GatewayError> {
    let auth = AuthConfig {
        scheme: "Bearer".into(),
        scopes: vec![],
        account: None,
        api_key: None,
        account_tokens: false,
        issuers: Vec::new(),
    };
    // Where the token is, for whoever runs the gateway (the file is readable only there).
    let file = state.admin_token_file.display().to_string();
    let presented = read_credentials(req.headers(), &auth, path)
        .map_err(|e| e.extension("admin_token_file", file.clone().into()))?;
    let expected = state.admin_token();
    let same = presented.len() == expected.len()
        && presented
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if !same {
        let text = format!("it is not this gateway's admin token (the token is in {file})");
        let err = GatewayError::new(codes::TOKEN_INVALID)
            .param("reason_text", text.clone())
            .extension("admin_token_file", file.into());
        return Err(challenge(err, "Bearer", Some("invalid_token"), &text));
    }
    Ok(())
}

async fn route(
    state: &State,
    pipeline: &Pipeline,
    req: Request<Incoming>,
    path: &str,
) -> Result<Response<GatewayBody>, GatewayError> {
    let method = req.method().clone();
    let read_only = method == Method::GET || method == Method::HEAD;
    match path {
        "/health" | "/stats" | "/metrics" | "/upstreams" | "/catalog" if !read_only => {
            return Err(method_not_allowed(path, &method, &["GET", "HEAD"]));
        }
        "/health" => {
            return Ok(json_response(
                StatusCode::OK,
                json!({ "status": "ok", "config_generation": state.current().generation }),
            ));
        }
        "/stats" => {
            check_admin(state, &req, path)?;
            let mut stats = crate::stats::STATS.to_json(&state.connections());
            stats["events"] = crate::events::subscriptions::stats_json(state.events());
            stats["events"]["log"] = state.events().stats.to_json(state.events().on());
            #[cfg(feature = "otlp")]
            {
                let t = state.traces();
                let get =
                    |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
                stats["traces"] = json!({
                    "otlp": t.on(),
                    "exported": get(&t.stats.exported),
                    "dropped": get(&t.stats.dropped),
                });
            }
            return Ok(json_response(StatusCode::OK, stats));
        }
        "/metrics" => {
            check_admin(state, &req, path)?;
            return Ok(metrics_response(state, pipeline, &req));
        }
        "/upstreams" => {
            check_admin(state, &req, path)?;
            let routes: Vec<Value> = pipeline
                .upstreams()
                .map(|(name, up)| {
                    json!({
                        "route": name,
                        "targets": up.targets.iter().map(|t| t.display.clone()).collect::<Vec<_>>(),
                        "balance": match up.balance {
                            crate::upstream::targets::Balance::RoundRobin => "round_robin",
                            crate::upstream::targets::Balance::LeastRequests => "least_requests",
                        },
                        "connect_timeout_ms": up.connect_timeout.as_millis() as u64,
                        "retries": up.retry.retries,
                        "eject_after": up.health.eject_after,
                    })
                })
                .collect();
            return Ok(json_response(
                StatusCode::OK,
                json!({ "routes": routes, "targets": state.forwarder().targets.report() }),
            ));
        }
        "/catalog" if pages::wants_html(req.headers()) => {
            return Ok(pages::catalog_index(
                pipeline.renderer().catalog(),
                req.headers(),
            ));
        }
        "/catalog" => {
            let entries: Vec<Value> = pipeline
                .renderer()
                .catalog()
                .entries()
                .iter()
                .map(page::entry_json)
                .collect();
            return Ok(json_response(StatusCode::OK, Value::from(entries)));
        }
        _ => {}
    }
    // The error pages read their path as the main listener's do: percent-decoded, dot
    // segments resolved (`/errors/rate%5Flimited` is `/errors/rate_limited` on both).
    let target = match crate::stages::parse::parse_path(path) {
        Ok(target) => Some(target),
        // A page's path with a bad escape is answered as on the main listener.
        Err(e) if pages::is_docs_path(path) => {
            return Err(crate::stages::parse::encoding_error(e));
        }
        Err(_) => None,
    };
    if let Some(target) = target
        && pages::is_docs_path(&target.path)
    {
        if !read_only {
            return Err(method_not_allowed(path, &method, &["GET", "HEAD"]));
        }
        return pages::serve(
            pipeline.renderer(),
            pipeline.profiles_in_use(),
            &target.path,
            req.headers(),
        );
    }
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let known = matches!(
        segs.first(),
        Some(
            &("accounts"
                | "clients"
                | "keys"
                | "signing-keys"
                | "tokens"
                | "modes"
                | "blocks"
                | "events"
                | "requests")
        )
    );
    if !known {
        return Err(not_found_route(&method, path));
    }
    check_admin(state, &req, path)?;
    let identity = state.identity_arc();
    let segs: Vec<String> = segs.iter().map(|s| (*s).to_owned()).collect();
    let seg = |i: usize| segs.get(i).map(String::as_str);
    match (seg(0), seg(1), seg(2), segs.len()) {
        (Some("accounts"), None, _, 1) => match method {
            Method::GET => Ok(list_accounts(&identity)),
            Method::POST => {
                let body = crate::http::json_body::read_json(req, MAX_BODY).await?;
                let new = account_body(&body)?;
                let a = blocking(identity, move |id| id.add_account(new)).await?;
                Ok(json_response(StatusCode::CREATED, account_json(&a)))
            }
            _ => Err(method_not_allowed(path, &method, &["GET", "POST"])),
        },
        (Some("accounts"), Some(id), None, 2) => match method {
            Method::GET => {
                let snap = identity.snapshot();
                let a = snap
                    .accounts
                    .get(id)
                    .ok_or_else(|| missing("Account", id))?;
                Ok(json_response(StatusCode::OK, account_json(a)))
            }
            Method::DELETE => set_status(identity, id, AccountStatus::Deleted).await,
            _ => Err(method_not_allowed(path, &method, &["GET", "DELETE"])),
        },
        (Some("accounts"), Some(id), Some(action @ ("suspend" | "activate")), 3) => {
            if method != Method::POST {
                return Err(method_not_allowed(path, &method, &["POST"]));
            }
            let status = if action == "suspend" {
                AccountStatus::Suspended
            } else {
                AccountStatus::Active
            };
            set_status(identity, id, status).await
        }
        (Some("accounts"), Some(id), Some("tokens"), 3) => match method {
            Method::GET | Method::HEAD => {
                let snap = identity.snapshot();
                if !snap.accounts.contains_key(id) {
                    return Err(missing("Account", id));
                }
                Ok(json_response(
                    StatusCode::OK,
                    account_tokens_json(&snap, id),
                ))
            }
            _ => Err(method_not_allowed(path, &method, &["GET", "HEAD"])),
        },
        (Some("accounts"), Some(id), Some("tokens"), 4) => {
            if method != Method::POST {
                return Err(method_not_allowed(path, &method, &["POST"]));
            }
            let word = segs[3].as_str();
            let Some(slot) = TokenSlot::from_word(word) else {
                let shown: String = word.chars().take(40).collect();
                return Err(validation(vec![FieldError {
                    location: "path".into(),
                    pointer: "slot".into(),
                    name: "slot".into(),
                    reason: "enum".into(),
                    detail: format!(
                        "is `{}`; an account has a primary and a backup token",
                        shown.escape_default()
                    ),
                }]));
            };
            let owned = id.to_owned();
            let token = blocking(identity, move |i| i.issue_account_token(&owned, slot)).await?;
            tracing::info!(target: "candor::admin", account = %id, slot = slot.as_str(), "account token issued");
            Ok(json_response(
                StatusCode::CREATED,
                json!({ "account": id, "slot": slot.as_str(), "token": token, "scheme": "TOK:" }),
            ))
        }
        (Some("modes"), None, _, 1) => match method {
            Method::GET | Method::HEAD => Ok(json_response(
                StatusCode::OK,
                modes_json(pipeline, &identity.snapshot()),
            )),
            _ => Err(method_not_allowed(path, &method, &["GET", "HEAD"])),
        },
        (Some("modes"), Some(feature), Some(mode), 3) => {
            let settings = pipeline.config_modes();
            let mut fields = Vec::new();
            let features = pipeline.features();
            if !features.iter().any(|f| f == feature) {
                fields.push(FieldError {
                    location: "path".into(),
                    pointer: "feature".into(),
                    name: "feature".into(),
                    reason: "enum".into(),
                    detail: format!(
                        "is `{}`; the routes configure {}",
                        feature
                            .chars()
                            .take(64)
                            .collect::<String>()
                            .escape_default(),
                        if features.is_empty() {
                            "no feature".to_owned()
                        } else {
                            features.join(", ")
                        }
                    ),
                });
            }
            if !settings.levels.iter().any(|l| l == mode) || mode == settings.base() {
                fields.push(FieldError {
                    location: "path".into(),
                    pointer: "mode".into(),
                    name: "mode".into(),
                    reason: "enum".into(),
                    detail: format!(
                        "is `{}`; a feature is overridden in {} ({} is the base level and needs no override)",
                        mode.chars().take(64).collect::<String>().escape_default(),
                        settings.levels[1..].join(", "),
                        settings.base()
                    ),
                });
            }
            if !fields.is_empty() {
                return Err(validation(fields));
            }
            let declared = settings
                .overrides
                .contains(&(feature.to_owned(), mode.to_owned()));
            let (f, m) = (feature.to_owned(), mode.to_owned());
            match method {
                Method::PUT => {
                    let added =
                        blocking(identity, move |i| i.set_mode_override(&f, &m, true)).await?;
                    tracing::info!(target: "candor::admin", feature = %feature, mode = %mode, "configuration-mode override set");
                    Ok(json_response(
                        if added {
                            StatusCode::CREATED
                        } else {
                            StatusCode::OK
                        },
                        json!({ "feature": feature, "mode": mode, "overridden": true }),
                    ))
                }
                Method::DELETE => {
                    let removed =
                        blocking(identity, move |i| i.set_mode_override(&f, &m, false)).await?;
                    if declared {
                        return Err(GatewayError::new(codes::CONFLICT).param(
                            "reason_text",
                            format!("The override of {feature} for {mode} mode is declared in the configuration ([[config_modes.overrides]]); it stays until it is removed there"),
                        ).extension("feature", feature.into()).extension("mode", mode.into()));
                    }
                    if !removed {
                        return Err(missing("Mode override", &format!("{feature}/{mode}")));
                    }
                    tracing::info!(target: "candor::admin", feature = %feature, mode = %mode, "configuration-mode override removed");
                    Ok(json_response(
                        StatusCode::OK,
                        json!({ "feature": feature, "mode": mode, "overridden": false }),
                    ))
                }
                _ => Err(method_not_allowed(path, &method, &["PUT", "DELETE"])),
            }
        }
        (Some("clients"), None, _, 1) => match method {
            Method::GET => {
                let snap = identity.snapshot();
                let mut all: Vec<&Client> = snap.clients.values().collect();
                all.sort_by(|a, b| a.client_id.cmp(&b.client_id));
                Ok(json_response(
                    StatusCode::OK,
                    json!({ "data": all.into_iter().map(client_json).collect::<Vec<_>>() }),
                ))
            }
            Method::POST => {
                let body = crate::http::json_body::read_json(req, MAX_BODY).await?;
                let new = client_body(&body)?;
                let (c, secret) = blocking(identity, move |id| id.add_client(new)).await?;
                let mut v = client_json(&c);
                v["client_secret"] = secret.into();
                if let Some(t) = &c.totp_secret {
                    v["totp_secret"] = t.clone().into();
                }
                Ok(json_response(StatusCode::CREATED, v))
            }
            _ => Err(method_not_allowed(path, &method, &["GET", "POST"])),
        },
        (Some("clients"), Some(id), None, 2) => match method {
            Method::GET => {
                let snap = identity.snapshot();
                let c = snap.clients.get(id).ok_or_else(|| missing("Client", id))?;
                Ok(json_response(StatusCode::OK, client_json(c)))
            }
            Method::DELETE => {
                let id = id.to_owned();
                blocking(identity, move |i| i.delete_client(&id)).await?;
                Ok(json_response(StatusCode::OK, json!({ "deleted": seg(1) })))
            }
            _ => Err(method_not_allowed(path, &method, &["GET", "DELETE"])),
        },
        (Some("clients"), Some(id), Some("rotate"), 3) => {
            if method != Method::POST {
                return Err(method_not_allowed(path, &method, &["POST"]));
            }
            let owned = id.to_owned();
            let secret = blocking(identity, move |i| i.rotate_client_secret(&owned)).await?;
            Ok(json_response(
                StatusCode::OK,
                json!({ "client_id": id, "client_secret": secret }),
            ))
        }
        (Some("clients"), Some(id), Some("keys"), 3) => {
            if method != Method::PUT {
                return Err(method_not_allowed(path, &method, &["PUT"]));
            }
            let body = crate::http::json_body::read_json(req, MAX_BODY).await?;
            let owned = id.to_owned();
            let n = blocking(identity, move |i| {
                i.set_client_keys(&owned, &body.to_string())
            })
            .await?;
            Ok(json_response(
                StatusCode::OK,
                json!({ "client_id": id, "assertion_keys": n }),
            ))
        }
        (Some("keys"), None, _, 1) => match method {
            Method::GET => {
                let snap = identity.snapshot();
                let mut all: Vec<&ApiKey> = snap.api_keys.values().collect();
                all.sort_by(|a, b| a.id.cmp(&b.id));
                Ok(json_response(
                    StatusCode::OK,
                    json!({ "data": all.into_iter().map(api_key_json).collect::<Vec<_>>() }),
                ))
            }
            Method::POST => {
                let body = crate::http::json_body::read_json(req, MAX_BODY).await?;
                let new = api_key_body(&body)?;
                let (k, full) = blocking(identity, move |i| i.add_api_key(new)).await?;
                let mut v = api_key_json(&k);
                v["api_key"] = full.into();
                Ok(json_response(StatusCode::CREATED, v))
            }
            _ => Err(method_not_allowed(path, &method, &["GET", "POST"])),
        },
        (Some("keys"), Some(id), None, 2) => {
            let owned = id.trim_start_matches("ck_").to_owned();
            match method {
                Method::GET => {
                    let snap = identity.snapshot();
                    let k = snap
                        .api_keys
                        .get(&owned)
                        .ok_or_else(|| missing("API key", &owned))?;
                    Ok(json_response(StatusCode::OK, api_key_json(k)))
                }
                Method::DELETE => {
                    blocking(identity, move |i| i.delete_api_key(&owned)).await?;
                    Ok(json_response(StatusCode::OK, json!({ "deleted": id })))
                }
                _ => Err(method_not_allowed(path, &method, &["GET", "DELETE"])),
            }
        }
        (Some("keys"), Some(id), Some("rotate"), 3) => {
            if method != Method::POST {
                return Err(method_not_allowed(path, &method, &["POST"]));
            }
            let owned = id.trim_start_matches("ck_").to_owned();
            let full = blocking(identity, move |i| i.rotate_api_key(&owned)).await?;
            Ok(json_response(StatusCode::OK, json!({ "api_key": full })))
        }
        (Some("signing-keys"), None, _, 1) if read_only => {
            let snap = identity.snapshot();
            let keys: Vec<Value> = snap
                .signing_keys
                .iter()
                .map(|k| json!({ "kid": k.kid, "alg": k.alg, "created_at": k.created_at, "retired_at": k.retired_at }))
                .collect();
            Ok(json_response(StatusCode::OK, json!({ "data": keys })))
        }
        (Some("signing-keys"), Some("rotate"), None, 2) => {
            if method != Method::POST {
                return Err(method_not_allowed(path, &method, &["POST"]));
            }
            let kid = blocking(identity, |i| i.rotate_signing_key()).await?;
            Ok(json_response(StatusCode::OK, json!({ "kid": kid })))
        }
        (Some("blocks"), None, _, 1) => match method {
            Method::GET | Method::HEAD => Ok(list_blocks(pipeline).await),
            Method::DELETE => {
                let cleared = pipeline.failures().clear_all();
                let mut body = json!({ "cleared": "all", "blocks_lifted": cleared });
                if let Some(store) = pipeline.shared_store() {
                    body["shared"] = shared_cleared(
                        crate::limits::attempts::FailedAttempts::clear_all_shared(store).await,
                    );
                }
                tracing::info!(target: "candor::admin", blocks = cleared, shared = %body["shared"], "every failed-attempt block lifted");
                Ok(json_response(StatusCode::OK, body))
            }
            _ => Err(method_not_allowed(
                path,
                &method,
                &["GET", "HEAD", "DELETE"],
            )),
        },
        (Some("events"), None, _, 1) => match method {
            Method::GET | Method::HEAD => list_events(state, pipeline, req.uri().query()).await,
            _ => Err(method_not_allowed(path, &method, &["GET", "HEAD"])),
        },
        (Some("requests"), Some(id), None, 2) => match method {
            Method::GET | Method::HEAD => explain_request(state, pipeline, id).await,
            _ => Err(method_not_allowed(path, &method, &["GET", "HEAD"])),
        },
        (Some("blocks"), Some(kind), Some(key), 3) => {
            if method != Method::DELETE {
                return Err(method_not_allowed(path, &method, &["DELETE"]));
            }
            clear_block(pipeline, kind, key).await
        }
        (Some("tokens"), Some("revoke"), None, 2) => {
            if method != Method::POST {
                return Err(method_not_allowed(path, &method, &["POST"]));
            }
            let body = crate::http::json_body::read_json(req, MAX_BODY).await?;
            let mut fields = Vec::new();
            let jti = text_field(&body, "jti", true, &mut fields);
            let exp = match body.get("expires_at") {
                Some(Value::Number(n)) if n.as_i64().is_some() => n.as_i64(),
                None => Some(crate::time::unix_now() + crate::identity::jwt::MAX_LIFETIME),
                Some(other) => {
                    fields.push(body_field(
                        "expires_at",
                        "type",
                        format!("must be Unix seconds; it is {other}"),
                    ));
                    None
                }
            };
            if !fields.is_empty() {
                return Err(validation(fields));
            }
            let (jti, exp) = (jti.unwrap_or_default(), exp.unwrap_or_default());
            let j = jti.clone();
            blocking(identity, move |i| i.revoke(&j, exp)).await?;
            Ok(json_response(
                StatusCode::OK,
                json!({ "revoked": jti, "until": crate::time::rfc3339(exp) }),
            ))
        }
        _ if segs.len() > 1
            && matches!(segs[0].as_str(), "accounts" | "clients" | "keys")
            && segs.len() == 2 =>
        {
            Err(missing(
                if segs[0] == "accounts" {
                    "Account"
                } else {
                    "Client"
                },
                &segs[1],
            ))
        }
        _ => Err(not_found_route(&method, path)),
    }
}

/// `GET /metrics`: OpenMetrics text for scrapers that ask for it, else the Prometheus text
/// format.
fn metrics_response(
    state: &State,
    pipeline: &Pipeline,
    req: &Request<Incoming>,
) -> Response<GatewayBody> {
    let targets = state.forwarder().targets.health(pipeline.upstreams());
    let connections = state.connections();
    let sinks = crate::events::subscriptions::sink_stats(state.events())
        .into_iter()
        .map(|s| (s.name, s.depth as i64, s.dropped))
        .collect();
    let log = &state.events().stats;
    let get = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    let live = crate::metrics::Live {
        connections: &connections,
        targets,
        sinks,
        event_log: [
            get(&log.written),
            get(&log.lost),
            get(&log.waited),
            get(&log.write_errors),
        ],
    };
    let openmetrics = crate::metrics::wants_openmetrics(req.headers().get(http::header::ACCEPT));
    let body = crate::metrics::encode(&live, openmetrics);
    let mut resp = Response::new(GatewayBody::full(body));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(if openmetrics {
            crate::metrics::OPENMETRICS_TEXT
        } else {
            crate::metrics::PROMETHEUS_TEXT
        }),
    );
    resp
}

/// Reads the event log on a blocking thread; a log that is off or unreadable is
/// `event_log_unavailable` naming why.
async fn read_events<T: Send + 'static>(
    state: &State,
    f: impl FnOnce(&crate::events::EventReader) -> Result<T, GatewayError> + Send + 'static,
) -> Result<T, GatewayError> {
    let unavailable = log_unavailable;
    let Some(dir) = state.events().dir().map(ToOwned::to_owned) else {
        return Err(unavailable(
            "the event log is off ([events] enabled = false)".into(),
        ));
    };
    tokio::task::spawn_blocking(move || {
        let reader = crate::events::EventReader::open(&dir).map_err(unavailable)?;
        f(&reader)
    })
    .await
    .map_err(|e| {
        GatewayError::new(codes::INTERNAL_ERROR).param("stage", format!("admin API: {e}"))
    })?
}

fn log_unavailable(why: String) -> GatewayError {
    GatewayError::new(codes::EVENT_LOG_UNAVAILABLE)
        .param("reason", why)
        .source(crate::error::ErrorSource::Internal)
}

/// `GET /events?type=&severity=&route=&code=&request_id=&limit=`: the newest events that
/// pass the filters, newest first.
async fn list_events(
    state: &State,
    _pipeline: &Pipeline,
    query: Option<&str>,
) -> Result<Response<GatewayBody>, GatewayError> {
    let mut filter = crate::events::EventFilter::default();
    let mut fields = Vec::new();
    let query_field = |name: &str, reason: &str, detail: String| FieldError {
        location: "query".into(),
        pointer: String::new(),
        name: name.into(),
        reason: reason.into(),
        detail,
    };
    let mut named: Vec<String> = Vec::new();
    for (k, v) in crate::stages::validate::query_pairs(query.unwrap_or("")) {
        if named.contains(&k) {
            fields.push(query_field(
                &k,
                "repeated",
                "is given more than once; each filter takes one value".into(),
            ));
            continue;
        }
        named.push(k.clone());
        match k.as_str() {
            "type" => {
                let known = v == "*"
                    || crate::events::kinds::ALL.contains(&v.as_str())
                    || v.strip_suffix(".*").is_some_and(|p| {
                        crate::events::kinds::ALL
                            .iter()
                            .any(|k| k.starts_with(&format!("{p}.")))
                    });
                if !known {
                    let hint = crate::config::did_you_mean(&v, crate::events::kinds::ALL)
                        .map_or(String::new(), |s| format!("; did you mean {s}?"));
                    fields.push(query_field(
                        "type",
                        "enum",
                        format!(
                            "is {v:?}, not an event type{hint} (one of {}, or a prefix such as request.*)",
                            crate::events::kinds::ALL.join(", ")
                        ),
                    ));
                }
                filter.kind = Some(v);
            }
            "severity" => match crate::events::Severity::parse(&v) {
                Some(s) => filter.severity = Some(s),
                None => fields.push(query_field(
                    "severity",
                    "enum",
                    format!("is {v:?}; one of info, notice, warning, error, critical (the least to list)"),
                )),
            },
            "route" => filter.route = Some(v),
            "code" => filter.code = Some(v),
            "request_id" => filter.request_id = Some(v),
            "limit" => match v.parse::<usize>() {
                Ok(n) if (1..=1000).contains(&n) => filter.limit = Some(n),
                _ => fields.push(query_field(
                    "limit",
                    "range",
                    format!("is {v:?}; a number from 1 to 1000"),
                )),
            },
            other => fields.push(query_field(
                other,
                "unknown",
                "is not a filter of /events: type, severity, route, code, request_id, limit"
                    .into(),
            )),
        }
    }
    if !fields.is_empty() {
        return Err(validation(fields));
    }
    let (events, oldest) = read_events(state, move |r| {
        let events = r.recent(&filter).map_err(log_unavailable)?;
        Ok((events, r.oldest()))
    })
    .await?;
    Ok(json_response(
        StatusCode::OK,
        json!({
            "events": events,
            "log_starts": oldest.map(crate::time::rfc3339_millis),
        }),
    ))
}

/// `GET /requests/{id}`: the story of one request, from the event log.
async fn explain_request(
    state: &State,
    pipeline: &Pipeline,
    id: &str,
) -> Result<Response<GatewayBody>, GatewayError> {
    let id = percent_decode(id);
    let owned = id.clone();
    let (events, oldest) = read_events(state, move |r| {
        let events = r.by_request(&owned).map_err(log_unavailable)?;
        Ok((events, r.oldest()))
    })
    .await?;
    if events.is_empty() {
        let hint = match oldest {
            Some(ms) => format!(
                " The event log goes back to {}; older files are deleted after events.keep_for.",
                crate::time::rfc3339_millis(ms)
            ),
            None => " The event log is empty.".into(),
        };
        return Err(GatewayError::new(codes::RESOURCE_NOT_FOUND)
            .param("resource", "Request")
            .param("id", id)
            .param("scope", " in the event log")
            .param("hint", hint)
            .extension("log_starts", oldest.map(crate::time::rfc3339_millis).into()));
    }
    let r = pipeline.renderer();
    Ok(json_response(
        StatusCode::OK,
        crate::events::story::tell(&id, events, r.catalog(), r.base_url()),
    ))
}

async fn blocking<T: Send + 'static>(
    identity: Arc<Identity>,
    f: impl FnOnce(&Identity) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, GatewayError> {
    tokio::task::spawn_blocking(move || f(&identity))
        .await
        .map_err(|e| {
            GatewayError::new(codes::INTERNAL_ERROR).param("stage", format!("admin API: {e}"))
        })?
        .map_err(|e| e.to_gateway_error())
}

fn missing(resource: &'static str, id: &str) -> GatewayError {
    StoreError::NotFound {
        resource,
        id: id.to_owned(),
    }
    .to_gateway_error()
}

async fn set_status(
    identity: Arc<Identity>,
    id: &str,
    status: AccountStatus,
) -> Result<Response<GatewayBody>, GatewayError> {
    let id = id.to_owned();
    let a = blocking(identity, move |i| i.set_account_status(&id, status)).await?;
    Ok(json_response(StatusCode::OK, account_json(&a)))
}

/// An account's token slots (never the tokens).
fn account_tokens_json(snap: &crate::identity::store::Snapshot, id: &str) -> Value {
    let slot = |want: TokenSlot| {
        snap.account_tokens
            .values()
            .find(|t| t.account_id == id && t.slot == want)
            .map_or(
                json!({ "slot": want.as_str(), "set": false }),
                |t| json!({ "slot": want.as_str(), "set": true, "created_at": t.created_at }),
            )
    };
    json!({ "account": id, "scheme": "TOK:", "data": [slot(TokenSlot::Primary), slot(TokenSlot::Backup)] })
}

/// `GET /modes`: the levels, where requests name their mode, and every override with
/// where it comes from.
fn modes_json(pipeline: &Pipeline, snap: &crate::identity::store::Snapshot) -> Value {
    let s = pipeline.config_modes();
    let mut rows: Vec<Value> = Vec::new();
    let mut all: std::collections::BTreeSet<&(String, String)> = s.overrides.iter().collect();
    all.extend(snap.mode_overrides.iter());
    for key in all {
        let mut from = Vec::new();
        if s.overrides.contains(key) {
            from.push("config");
        }
        if snap.mode_overrides.contains(key) {
            from.push("admin");
        }
        rows.push(json!({ "feature": key.0, "mode": key.1, "set_by": from }));
    }
    json!({
        "levels": s.levels,
        "base": s.base(),
        "mode_from": s.source_text(),
        "default": s.default,
        "features": pipeline.features(),
        "overrides": rows,
    })
}

fn list_accounts(identity: &Identity) -> Response<GatewayBody> {
    let snap = identity.snapshot();
    let mut all: Vec<&Account> = snap.accounts.values().collect();
    all.sort_by(|a, b| a.id.cmp(&b.id));
    json_response(
        StatusCode::OK,
        json!({ "data": all.into_iter().map(account_json).collect::<Vec<_>>() }),
    )
}

fn account_json(a: &Account) -> Value {
    json!({ "id": a.id, "name": a.name, "status": a.status.as_str(), "quota_per_day": a.quota_per_day, "quota_per_month": a.quota_per_month, "created_at": a.created_at })
}

fn client_json(c: &Client) -> Value {
    json!({
        "client_id": c.client_id,
        "account": c.account_id,
        "scopes": c.scopes,
        "grant_types": c.grant_types,
        "token_lifetime": c.token_lifetime,
        "second_factor": c.totp_secret.is_some(),
        "assertion_keys": c.jwks.is_some(),
        "created_at": c.created_at,
    })
}

fn api_key_json(k: &ApiKey) -> Value {
    json!({
        "id": format!("ck_{}", k.id),
        "account": k.account_id,
        "scopes": k.scopes,
        "expires_at": k.expires_at.map(crate::time::rfc3339),
        "allowed_ips": k.allowed_ips,
        "allowed_referers": k.allowed_referers,
        "created_at": k.created_at,
    })
}

fn body_field(name: &str, reason: &str, detail: String) -> FieldError {
    FieldError {
        location: "body".into(),
        pointer: format!("#/{name}"),
        name: name.into(),
        reason: reason.into(),
        detail,
    }
}

fn validation(fields: Vec<FieldError>) -> GatewayError {
    let summary = fields
        .iter()
        .map(|f| format!("{} {}", f.name, f.detail))
        .collect::<Vec<_>>()
        .join("; ");
    let mut err = GatewayError::new(codes::VALIDATION_FAILED)
        .param("count", fields.len().to_string())
        .param("summary", summary);
    err.fields = fields;
    err
}

fn text_field(
    body: &Value,
    name: &str,
    required: bool,
    fields: &mut Vec<FieldError>,
) -> Option<String> {
    match body.get(name) {
        None | Some(Value::Null) if required => {
            fields.push(body_field(name, "required", "is required".into()));
            None
        }
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => {
            fields.push(body_field(name, "blank", "must not be blank".into()));
            None
        }
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            fields.push(body_field(
                name,
                "type",
                format!("must be a string; it is {other}"),
            ));
            None
        }
    }
}

fn list_field(body: &Value, name: &str, fields: &mut Vec<FieldError>) -> Vec<String> {
    match body.get(name) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_owned))
            .collect(),
        Some(other) => {
            fields.push(body_field(
                name,
                "type",
                format!("must be an array of strings; it is {other}"),
            ));
            Vec::new()
        }
    }
}

fn int_field(body: &Value, name: &str, fields: &mut Vec<FieldError>) -> Option<i64> {
    match body.get(name) {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) if n.as_i64().is_some() => n.as_i64(),
        Some(other) => {
            fields.push(body_field(
                name,
                "type",
                format!("must be a whole number (of requests); it is {other}"),
            ));
            None
        }
    }
}

fn object(body: &Value, known: &[&str]) -> Vec<FieldError> {
    match body.as_object() {
        None => vec![FieldError {
            location: "body".into(),
            pointer: "#".into(),
            name: "(body)".into(),
            reason: "type".into(),
            detail: "must be a JSON object".into(),
        }],
        Some(map) => map
            .keys()
            .filter(|k| !known.contains(&k.as_str()))
            .map(|k| {
                let detail = match crate::config::did_you_mean(k, known) {
                    Some(s) => format!(
                        "unknown field `{k}`; did you mean `{s}`? (the fields: {})",
                        known.join(", ")
                    ),
                    None => format!("unknown field `{k}` (the fields: {})", known.join(", ")),
                };
                body_field(k, "unknown", detail)
            })
            .collect(),
    }
}

fn account_body(body: &Value) -> Result<NewAccount, GatewayError> {
    let mut fields = object(body, &["id", "name", "quota_per_day", "quota_per_month"]);
    let id = text_field(body, "id", false, &mut fields);
    let name = text_field(body, "name", true, &mut fields);
    let quota_per_day = int_field(body, "quota_per_day", &mut fields);
    let quota_per_month = int_field(body, "quota_per_month", &mut fields);
    if !fields.is_empty() {
        return Err(validation(fields));
    }
    Ok(NewAccount {
        id,
        name: name.unwrap_or_default(),
        quota_per_day,
        quota_per_month,
    })
}

fn client_body(body: &Value) -> Result<NewClient, GatewayError> {
    let mut fields = object(
        body,
        &["account", "scopes", "token_lifetime", "second_factor"],
    );
    let account = text_field(body, "account", true, &mut fields);
    let scopes = list_field(body, "scopes", &mut fields);
    let token_lifetime =
        duration_field(body, &crate::duration::TOKEN_LIFETIME, &mut fields).unwrap_or(300);
    let second_factor = match body.get("second_factor") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            fields.push(body_field(
                "second_factor",
                "type",
                format!("must be true or false; it is {other}"),
            ));
            false
        }
    };
    if !fields.is_empty() {
        return Err(validation(fields));
    }
    Ok(NewClient {
        account_id: account.unwrap_or_default(),
        scopes,
        token_lifetime,
        second_factor,
    })
}

fn api_key_body(body: &Value) -> Result<NewApiKey, GatewayError> {
    let mut fields = object(
        body,
        &[
            "account",
            "scopes",
            "expires_in",
            "allowed_ips",
            "allowed_referers",
        ],
    );
    let account = text_field(body, "account", true, &mut fields);
    let scopes = list_field(body, "scopes", &mut fields);
    let expires_in = duration_field(body, &crate::duration::EXPIRES_IN, &mut fields);
    let allowed_ips = list_field(body, "allowed_ips", &mut fields);
    let allowed_referers = list_field(body, "allowed_referers", &mut fields);
    if !fields.is_empty() {
        return Err(validation(fields));
    }
    Ok(NewApiKey {
        account_id: account.unwrap_or_default(),
        scopes,
        expires_in,
        allowed_ips,
        allowed_referers,
    })
}

/// A duration field: a string in the duration grammar or an integer number of seconds.
fn duration_field(
    body: &Value,
    spec: &crate::duration::Spec,
    fields: &mut Vec<FieldError>,
) -> Option<i64> {
    match body.get(spec.field) {
        None | Some(Value::Null) => None,
        Some(v) => match spec.from_json(v) {
            Ok(d) => Some(d.as_secs() as i64),
            Err(detail) => {
                let reason = if v.is_string() || v.is_number() {
                    "invalid"
                } else {
                    "type"
                };
                fields.push(body_field(spec.field, reason, detail));
                None
            }
        },
    }
}

/// `GET /blocks`: every client id (with the address it is blocked from) and address the
/// token endpoint refuses now, and how many recent failures could not be listed. With
/// `[limits.shared]`, the blocks counted in the shared store by every gateway too: each
/// row says where it is counted (`counted_in`: `local`, `shared`), and `shared` says how
/// many were read or why they could not be.
async fn list_blocks(pipeline: &Pipeline) -> Response<GatewayBody> {
    use crate::limits::attempts::Block;
    let f = pipeline.failures();
    let now = crate::time::unix_now();
    let (per_client, per_address) = f.limits();
    let mut rows: Vec<(Block, Vec<&str>)> =
        f.list().into_iter().map(|b| (b, vec!["local"])).collect();
    let mut shared = Value::Null;
    if let Some(store) = pipeline.shared_store() {
        shared = match f.list_shared(store).await {
            Ok((blocks, more)) => {
                let listed = blocks.len();
                // Up to 10,000 of each side: merged through an index, not a search per row.
                let mut at: std::collections::HashMap<_, usize> = rows
                    .iter()
                    .enumerate()
                    .map(|(i, (l, _))| ((l.kind, l.key.clone(), l.address.clone()), i))
                    .collect();
                for b in blocks {
                    let id = (b.kind, b.key.clone(), b.address.clone());
                    match at.get(&id) {
                        Some(&i) => {
                            let (l, counted) = &mut rows[i];
                            l.failures = l.failures.max(b.failures);
                            l.retry_after = l.retry_after.max(b.retry_after);
                            counted.push("shared");
                        }
                        None => {
                            at.insert(id, rows.len());
                            rows.push((b, vec!["shared"]));
                        }
                    }
                }
                json!({ "listed": listed, "more": more })
            }
            Err(u) => json!({
                "error": format!("the shared store {}; blocks counted only there (by other gateways) are not listed", u.cause)
            }),
        };
    }
    rows.sort_by(|(a, _), (b, _)| a.listing_order(b));
    let data: Vec<Value> = rows
        .iter()
        .map(|(b, counted)| {
            json!({
                "kind": b.kind.as_str(),
                "key": b.key,
                "address": b.address.as_deref().unwrap_or(&b.key),
                "failures": b.failures,
                "limit": b.limit,
                "retry_after": b.retry_after,
                "blocked_until": crate::time::rfc3339(now + b.retry_after),
                "counted_in": counted,
            })
        })
        .collect();
    let mut body = json!({
        "data": data,
        "unlisted_failures": f.unlisted(),
        "max_listed": crate::limits::attempts::MAX_NAMES,
        "limits": {
            "per_client": per_client,
            "per_address": per_address,
            "window": f.window().as_secs(),
        },
    });
    if !shared.is_null() {
        body["shared"] = shared;
    }
    json_response(StatusCode::OK, body)
}

/// Decodes `%XX` escapes of a path segment (invalid ones are kept as they are).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `DELETE /blocks/{client|address}/{key}`: forgets that key's failures.
async fn clear_block(
    pipeline: &Pipeline,
    kind: &str,
    key: &str,
) -> Result<Response<GatewayBody>, GatewayError> {
    use crate::limits::attempts::BlockKind;
    let key = percent_decode(key);
    let Some(k) = BlockKind::parse(kind) else {
        let hint = match crate::config::did_you_mean(kind, &["client", "address"]) {
            Some(s) => format!(" Did you mean /blocks/{s}/…? "),
            None => " ".to_owned(),
        };
        return Err(GatewayError::new(codes::RESOURCE_NOT_FOUND)
            .param("resource", "Block kind")
            .param("id", format!("`{}`", kind.chars().take(40).collect::<String>()))
            .param("scope", "")
            .param(
                "hint",
                format!("{hint}Blocks are kept by client (DELETE /blocks/client/{{client_id}} lifts its blocks from every address) or by address (DELETE /blocks/address/{{ip}})."),
            ));
    };
    let shown: String = key.chars().take(64).collect();
    let shared = match pipeline.shared_store() {
        Some(store) => {
            Some(crate::limits::attempts::FailedAttempts::clear_shared(store, k, &key).await)
        }
        None => None,
    };
    let local = match (pipeline.failures().clear(k, &key), &shared) {
        // Counted only in the shared store: lifted there (`shared` says how many counts).
        (Ok(None), Some(Ok(n))) if *n > 0 => Ok(Some(false)),
        // Not counted here, and the shared store could not be asked: say so, not 404.
        (Ok(None), Some(Err(_))) => Ok(Some(false)),
        (other, _) => other,
    };
    match local {
        Err(()) => Err(validation(vec![FieldError {
            location: "path".into(),
            pointer: String::new(),
            name: "address".into(),
            reason: "format".into(),
            detail: format!(
                "`{shown}` is not an IP address; write one such as 127.0.0.1 or 2001:db8::1 (an IPv6 address stands for its /64)"
            ),
        }])),
        Ok(None) => Err(GatewayError::new(codes::RESOURCE_NOT_FOUND)
            .param("resource", format!("A block of {}", k.words()))
            .param("id", shown)
            .param("scope", "")
            .param(
                "hint",
                " It has no failed attempts counted now (blocks also end by themselves); GET /blocks lists the current ones.",
            )),
        Ok(Some(was_blocked)) => {
            let mut body = json!({ "cleared": { "kind": k.as_str(), "key": key }, "was_blocked": was_blocked });
            if let Some(r) = shared {
                body["shared"] = shared_cleared(r);
            }
            tracing::info!(target: "candor::admin", kind = k.as_str(), key = ?shown, was_blocked, shared = %body["shared"], "failed-attempt block lifted");
            Ok(json_response(StatusCode::OK, body))
        }
    }
}

/// What lifting blocks did in the store shared with other gateways: the keys deleted, or
/// why the store could not be reached (the blocks there then end by themselves).
fn shared_cleared(r: Result<usize, crate::limits::shared::Unavailable>) -> serde_json::Value {
    match r {
        Ok(n) => json!({ "keys_deleted": n }),
        Err(u) => {
            json!({ "error": format!("the shared store {}; blocks counted there end by themselves", u.cause) })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_get_a_did_you_mean() {
        let body = json!({ "account": "acme", "scope": ["a"], "zzzzzzzz": 1 });
        let problems = object(&body, &["account", "scopes", "token_lifetime"]);
        let details: Vec<&str> = problems.iter().map(|f| f.detail.as_str()).collect();
        assert_eq!(
            details,
            [
                "unknown field `scope`; did you mean `scopes`? (the fields: account, scopes, token_lifetime)",
                "unknown field `zzzzzzzz` (the fields: account, scopes, token_lifetime)"
            ]
        );
    }

    #[test]
    fn duration_fields_take_strings_and_seconds() {
        let mut fields = Vec::new();
        let spec = &crate::duration::TOKEN_LIFETIME;
        assert_eq!(
            duration_field(&json!({ "token_lifetime": "1h" }), spec, &mut fields),
            Some(3600)
        );
        assert_eq!(
            duration_field(&json!({ "token_lifetime": 60 }), spec, &mut fields),
            Some(60)
        );
        assert_eq!(duration_field(&json!({}), spec, &mut fields), None);
        assert!(fields.is_empty());
        assert_eq!(
            duration_field(&json!({ "token_lifetime": [1] }), spec, &mut fields),
            None
        );
        assert_eq!(
            (fields[0].name.as_str(), fields[0].reason.as_str()),
            ("token_lifetime", "type")
        );
    }

    #[test]
    fn path_segments_are_decoded() {
        assert_eq!(percent_decode("2001:db8::%2F64"), "2001:db8::/64");
        assert_eq!(percent_decode("cl_a%20b%zz%"), "cl_a b%zz%");
    }
}
