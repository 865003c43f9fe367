//! The built-in demo API: a small REST resource (`/v1/customers/{customer}/devices`) kept in
//! SQLite, served on a loopback port behind the gateway. It answers its own errors through
//! the same catalog, with codes of its own where the gateway has one for the same words
//! (`unknown_path`, never the gateway's `route_not_found`; `resource_not_found`,
//! `duplicate_resource`, `validation_failed`, `malformed_body`), and every body it sends says
//! `"source": "upstream"`: an API's answer is never taken for the gateway's.

use crate::error::GatewayError;
use crate::http::body::GatewayBody;
use crate::http::body::json_response;
use crate::http::request_id::RequestId;

use crate::stages::respond::{Renderer, X_REQUEST_ID};
use candor_catalog::{FieldError, codes};
use http::header::LOCATION;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

const KINDS: &[&str] = &["sensor", "gateway", "camera"];
const MAX_BODY: usize = 64 * 1024;

/// The demo API's state.
struct DemoApi {
    db: Mutex<Connection>,
    renderer: Renderer,
}

/// Opens (or creates) the database under `data_dir` and serves the demo API on `addr` (a
/// loopback address; port 0 picks a free port); returns the address it serves on.
pub async fn start(
    data_dir: &Path,
    renderer: Renderer,
    addr: SocketAddr,
) -> std::io::Result<SocketAddr> {
    // Bound first: a port that is taken leaves nothing behind.
    let listener = tokio::net::TcpListener::bind(addr).await?;
    std::fs::create_dir_all(data_dir)?;
    let conn = Connection::open(data_dir.join("demo.sqlite")).map_err(std::io::Error::other)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         CREATE TABLE IF NOT EXISTS devices (
             id INTEGER PRIMARY KEY AUTOINCREMENT,
             customer TEXT NOT NULL,
             name TEXT NOT NULL,
             serial TEXT NOT NULL,
             kind TEXT NOT NULL,
             created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
             UNIQUE (customer, serial)
         );
         CREATE TABLE IF NOT EXISTS settings (
             feature TEXT NOT NULL,
             mode TEXT NOT NULL,
             body TEXT NOT NULL,
             updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
             PRIMARY KEY (feature, mode)
         );",
    )
    .map_err(std::io::Error::other)?;
    let api = Arc::new(DemoApi {
        db: Mutex::new(conn),
        renderer: renderer.for_upstream(),
    });
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let api = api.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let api = api.clone();
                    async move { Ok::<_, std::convert::Infallible>(api.handle(req).await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}

fn field(location: &str, name: &str, reason: &str, detail: String) -> FieldError {
    let pointer = if location == "body" {
        format!("#/{name}")
    } else {
        name.to_owned()
    };
    FieldError {
        location: location.into(),
        pointer,
        name: name.into(),
        reason: reason.into(),
        detail,
    }
}

fn validation_failed(fields: Vec<FieldError>) -> GatewayError {
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

fn device_json(row: &rusqlite::Row<'_>) -> rusqlite::Result<Value> {
    Ok(json!({
        "id": row.get::<_, i64>(0)?,
        "customer": row.get::<_, String>(1)?,
        "name": row.get::<_, String>(2)?,
        "serial": row.get::<_, String>(3)?,
        "kind": row.get::<_, String>(4)?,
        "created_at": row.get::<_, String>(5)?,
    }))
}

fn db_error(e: impl std::fmt::Display) -> GatewayError {
    tracing::error!(target: "candor::demo", error = %e, "demo database error");
    GatewayError::new(codes::INTERNAL_ERROR).param("stage", "demo API database")
}

impl DemoApi {
    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<GatewayBody> {
        let rid = RequestId::of(req.headers());
        // The trace the gateway sent (or a new one when called directly).
        let trace = crate::http::trace::TraceContext::of(req.headers());
        let path = req.uri().path().to_owned();
        let mut resp = match self.clone().route(req, &path).await {
            Ok(r) => r,
            Err(e) => {
                let trace_id = trace.trace_id_hex();
                self.renderer.render(&e, &path, &rid.text, Some(&trace_id))
            }
        };
        resp.headers_mut().insert(X_REQUEST_ID.clone(), rid.header);
        resp
    }

    async fn route(
        self: Arc<Self>,
        req: Request<Incoming>,
        path: &str,
    ) -> Result<Response<GatewayBody>, GatewayError> {
        let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match (req.method().clone(), segs.as_slice()) {
            // Under `/v1`, or any prefix an example's routes give it (`/v2/mcc/...`).
            (m, [.., "customers", customer, "devices"]) => {
                check_customer(customer)?;
                let customer = (*customer).to_owned();
                if m == Method::POST {
                    let body = crate::http::json_body::read_json(req, MAX_BODY).await?;
                    self.blocking(move |api| api.create(&customer, &body)).await
                } else {
                    self.blocking(move |api| api.list(&customer)).await
                }
            }
            (m, [.., "customers", customer, "devices", id]) => {
                check_customer(customer)?;
                let id: i64 = id.parse().map_err(|_| {
                    validation_failed(vec![field(
                        "path",
                        "device",
                        "type",
                        format!("must be a whole number; the path has `{id}`"),
                    )])
                })?;
                let customer = (*customer).to_owned();
                if m == Method::DELETE {
                    self.blocking(move |api| api.delete(&customer, id)).await
                } else if m == Method::PUT {
                    let body = crate::http::json_body::read_json(req, MAX_BODY).await?;
                    self.blocking(move |api| api.replace(&customer, id, &body))
                        .await
                } else {
                    self.blocking(move |api| api.get(&customer, id)).await
                }
            }
            // A diagnostics session on the device: it takes `duration` seconds (1 to 300,
            // default 5), which is what a gateway's upstream timeout is shown with.
            (Method::GET, ["v1", "customers", customer, "devices", id, "diagnostics"]) => {
                check_customer(customer)?;
                let seconds = diagnostics_duration(req.uri().query())?;
                let id: i64 = id.parse().map_err(|_| {
                    validation_failed(vec![field(
                        "path",
                        "device",
                        "type",
                        format!("must be a whole number; the path has `{id}`"),
                    )])
                })?;
                let customer = (*customer).to_owned();
                let (c, i) = (customer.clone(), id);
                self.clone().blocking(move |api| api.get(&c, i)).await?;
                tokio::time::sleep(std::time::Duration::from_secs(seconds)).await;
                Ok(json_response(
                    StatusCode::OK,
                    json!({"device": id, "customer": customer, "duration_s": seconds, "result": "all checks passed"}),
                ))
            }
            // A feature's settings, under any prefix (`/esa/api/v2.0/config/sender_groups`):
            // the stand-in for configuration APIs.
            (m, [.., "config", feature]) if !feature.is_empty() => {
                let feature = (*feature).to_owned();
                let mode = req
                    .uri()
                    .query()
                    .and_then(|q| {
                        q.split('&')
                            .find_map(|kv| kv.strip_prefix("mode="))
                            .map(crate::stages::validate::decode)
                    })
                    .unwrap_or_else(|| "cluster".into());
                if m == Method::PUT {
                    let body = crate::http::json_body::read_json(req, MAX_BODY).await?;
                    self.blocking(move |api| api.put_settings(&feature, &mode, &body))
                        .await
                } else {
                    self.blocking(move |api| api.settings(&feature, &mode))
                        .await
                }
            }
            // Its own code, not the gateway's route_not_found: the gateway did route this.
            _ => Err(GatewayError::new(codes::UNKNOWN_PATH)
                .param("api", "The devices API")
                .param("method", req.method().to_string())
                .param("path", path.to_owned())
                .param(
                    "hint",
                    " It serves /v1/customers/{customer}/devices[/{id}[/diagnostics]] and .../config/{feature}.",
                )
                .source(crate::error::ErrorSource::Upstream)),
        }
    }

    async fn blocking<F>(self: Arc<Self>, f: F) -> Result<Response<GatewayBody>, GatewayError>
    where
        F: FnOnce(&DemoApi) -> Result<Response<GatewayBody>, GatewayError> + Send + 'static,
    {
        tokio::task::spawn_blocking(move || f(&self))
            .await
            .unwrap_or_else(|e| {
                Err(GatewayError::new(codes::INTERNAL_ERROR)
                    .param("stage", format!("demo API: {e}")))
            })
    }

    /// A feature's settings at a configuration level (`{}` until some are stored).
    fn settings(&self, feature: &str, mode: &str) -> Result<Response<GatewayBody>, GatewayError> {
        let db = self.db.lock().map_err(db_error)?;
        let row: Option<(String, String)> = db
            .query_row(
                "SELECT body, updated_at FROM settings WHERE feature = ?1 AND mode = ?2",
                params![feature, mode],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(db_error)?;
        let (settings, updated_at) = match row {
            Some((body, at)) => (
                serde_json::from_str(&body).unwrap_or(Value::Null),
                Value::from(at),
            ),
            None => (json!({}), Value::Null),
        };
        Ok(json_response(
            StatusCode::OK,
            json!({ "data": { "feature": feature, "mode": mode, "settings": settings, "updated_at": updated_at } }),
        ))
    }

    /// Replaces a feature's settings at a configuration level (any JSON object).
    fn put_settings(
        &self,
        feature: &str,
        mode: &str,
        body: &Value,
    ) -> Result<Response<GatewayBody>, GatewayError> {
        if !body.is_object() {
            return Err(validation_failed(vec![field(
                "body",
                "",
                "type",
                "must be a JSON object of settings".into(),
            )]));
        }
        {
            let db = self.db.lock().map_err(db_error)?;
            db.execute(
                "INSERT INTO settings (feature, mode, body) VALUES (?1, ?2, ?3)
                 ON CONFLICT (feature, mode) DO UPDATE SET body = excluded.body, updated_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now')",
                params![feature, mode, body.to_string()],
            )
            .map_err(db_error)?;
        }
        self.settings(feature, mode)
    }

    fn list(&self, customer: &str) -> Result<Response<GatewayBody>, GatewayError> {
        let db = self.db.lock().map_err(db_error)?;
        let mut stmt = db
            .prepare("SELECT id, customer, name, serial, kind, created_at FROM devices WHERE customer = ?1 ORDER BY id")
            .map_err(db_error)?;
        let rows: Vec<Value> = stmt
            .query_map(params![customer], device_json)
            .map_err(db_error)?
            .collect::<Result<_, _>>()
            .map_err(db_error)?;
        Ok(json_response(
            StatusCode::OK,
            json!({ "object": "list", "data": rows }),
        ))
    }

    fn get(&self, customer: &str, id: i64) -> Result<Response<GatewayBody>, GatewayError> {
        let db = self.db.lock().map_err(db_error)?;
        let row = db
            .query_row(
                "SELECT id, customer, name, serial, kind, created_at FROM devices WHERE customer = ?1 AND id = ?2",
                params![customer, id],
                device_json,
            )
            .optional()
            .map_err(db_error)?;
        row.map(|d| json_response(StatusCode::OK, &d))
            .ok_or_else(|| not_found(customer, id))
    }

    fn delete(&self, customer: &str, id: i64) -> Result<Response<GatewayBody>, GatewayError> {
        let db = self.db.lock().map_err(db_error)?;
        let n = db
            .execute(
                "DELETE FROM devices WHERE customer = ?1 AND id = ?2",
                params![customer, id],
            )
            .map_err(db_error)?;
        if n == 0 {
            return Err(not_found(customer, id));
        }
        let mut resp = Response::new(GatewayBody::empty());
        *resp.status_mut() = StatusCode::NO_CONTENT;
        Ok(resp)
    }

    /// Replaces a device's name and kind; its serial is its identity and cannot change
    /// (`conflict`: the device's current state forbids it).
    fn replace(
        &self,
        customer: &str,
        id: i64,
        body: &Value,
    ) -> Result<Response<GatewayBody>, GatewayError> {
        let (name, serial, kind) = validate_device(body)?;
        let db = self.db.lock().map_err(db_error)?;
        let current: Option<String> = db
            .query_row(
                "SELECT serial FROM devices WHERE customer = ?1 AND id = ?2",
                params![customer, id],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_error)?;
        let Some(current) = current else {
            return Err(not_found(customer, id));
        };
        if current != serial {
            return Err(GatewayError::new(codes::CONFLICT)
                .param(
                    "reason_text",
                    format!(
                        "Device {id} has serial {current}; a device's serial cannot change (create a new device for serial {serial})"
                    ),
                )
                .field(field(
                    "body",
                    "serial",
                    "conflict",
                    format!("is `{current}` for device {id} and cannot change"),
                )));
        }
        db.execute(
            "UPDATE devices SET name = ?1, kind = ?2 WHERE customer = ?3 AND id = ?4",
            params![name, kind, customer, id],
        )
        .map_err(db_error)?;
        let device = db
            .query_row(
                "SELECT id, customer, name, serial, kind, created_at FROM devices WHERE id = ?1",
                params![id],
                device_json,
            )
            .map_err(db_error)?;
        Ok(json_response(StatusCode::OK, &device))
    }

    fn create(&self, customer: &str, body: &Value) -> Result<Response<GatewayBody>, GatewayError> {
        let (name, serial, kind) = validate_device(body)?;
        let db = self.db.lock().map_err(db_error)?;
        let existing: Option<i64> = db
            .query_row(
                "SELECT id FROM devices WHERE customer = ?1 AND serial = ?2",
                params![customer, serial],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_error)?;
        if let Some(id) = existing {
            return Err(GatewayError::new(codes::DUPLICATE_RESOURCE)
                .param("resource", "A device")
                .param("field", "serial")
                .param("value", serial.clone())
                .param("existing", format!(" (device {id})"))
                .extension("existing_id", id.into())
                .field(field(
                    "body",
                    "serial",
                    "duplicate",
                    format!("`{serial}` is already used by device {id}"),
                )));
        }
        db.execute(
            "INSERT INTO devices (customer, name, serial, kind) VALUES (?1, ?2, ?3, ?4)",
            params![customer, name, serial, kind],
        )
        .map_err(db_error)?;
        let id = db.last_insert_rowid();
        let device = db
            .query_row(
                "SELECT id, customer, name, serial, kind, created_at FROM devices WHERE id = ?1",
                params![id],
                device_json,
            )
            .map_err(db_error)?;
        let mut resp = json_response(StatusCode::CREATED, &device);
        if let Ok(v) = HeaderValue::from_str(&format!("/v1/customers/{customer}/devices/{id}")) {
            resp.headers_mut().insert(LOCATION, v);
        }
        Ok(resp)
    }
}

fn not_found(customer: &str, id: i64) -> GatewayError {
    GatewayError::new(codes::RESOURCE_NOT_FOUND)
        .param("resource", "Device")
        .param("id", id.to_string())
        .param("scope", format!(" for customer {customer}"))
        .param(
            "hint",
            format!(" GET /v1/customers/{customer}/devices lists the devices that do."),
        )
}

/// The `duration` query parameter of a diagnostics session: whole seconds, 1 to 300.
fn diagnostics_duration(query: Option<&str>) -> Result<u64, GatewayError> {
    let Some(raw) = query
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("duration="))
    else {
        return Ok(5);
    };
    match raw.parse::<u64>() {
        Ok(n) if (1..=300).contains(&n) => Ok(n),
        _ => Err(validation_failed(vec![field(
            "query",
            "duration",
            "range",
            format!("must be whole seconds from 1 to 300; it is `{raw}`"),
        )])),
    }
}

fn check_customer(customer: &str) -> Result<(), GatewayError> {
    if customer.is_empty()
        || customer.len() > 64
        || !customer
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(validation_failed(vec![field(
            "path",
            "customer",
            "format",
            "must be 1 to 64 letters, digits, '-' or '_'".into(),
        )]));
    }
    Ok(())
}

/// Checks a device document, reporting every problem.
fn validate_device(body: &Value) -> Result<(String, String, String), GatewayError> {
    let Some(obj) = body.as_object() else {
        return Err(validation_failed(vec![FieldError {
            location: "body".into(),
            pointer: "#".into(),
            name: "(body)".into(),
            reason: "type".into(),
            detail: format!("must be a JSON object; the body is {}", json_type(body)),
        }]));
    };
    let mut fields = Vec::new();
    let text = |name: &str, max: usize, fields: &mut Vec<FieldError>| -> Option<String> {
        match obj.get(name) {
            None | Some(Value::Null) => {
                fields.push(field("body", name, "required", "is required".into()));
                None
            }
            Some(Value::String(s)) if s.trim().is_empty() => {
                fields.push(field("body", name, "blank", "must not be blank".into()));
                None
            }
            Some(Value::String(s)) if s.chars().count() > max => {
                fields.push(field(
                    "body",
                    name,
                    "length",
                    format!(
                        "must be at most {max} characters; it has {}",
                        s.chars().count()
                    ),
                ));
                None
            }
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                fields.push(field(
                    "body",
                    name,
                    "type",
                    format!("must be a string; it is {}", json_type(other)),
                ));
                None
            }
        }
    };
    let name = text("name", 64, &mut fields);
    let serial = text("serial", 32, &mut fields);
    if let Some(s) = &serial
        && !(s.len() >= 4
            && s.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-'))
    {
        fields.push(field(
            "body",
            "serial",
            "format",
            format!("must be 4 to 32 characters A-Z, 0-9 or '-'; it is `{s}`"),
        ));
    }
    let kind = match obj.get("kind") {
        None => Some("sensor".to_owned()),
        Some(Value::String(k)) if KINDS.contains(&k.as_str()) => Some(k.clone()),
        Some(other) => {
            fields.push(field(
                "body",
                "kind",
                "enum",
                format!("must be one of {}; it is {other}", KINDS.join(", ")),
            ));
            None
        }
    };
    for key in obj.keys() {
        if !["name", "serial", "kind"].contains(&key.as_str()) {
            fields.push(field(
                "body",
                key,
                "unknown",
                "is not a device field (name, serial, kind)".into(),
            ));
        }
    }
    match (name, serial, kind) {
        (Some(n), Some(s), Some(k)) if fields.is_empty() => Ok((n, s, k)),
        _ => Err(validation_failed(fields)),
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The demo's files in its data directory, with what each holds: what
/// `candor serve --reset-demo` deletes (and nothing else).
pub const FILES: &[(&str, &str)] = &[
    (
        CONFIG_FILE,
        "the demo configuration, with any edits made to it",
    ),
    (OPENAPI_FILE, "the devices API's OpenAPI document"),
    (API_ADDR_FILE, "the demo API's address"),
    ("demo.sqlite", "the devices created"),
    ("demo.sqlite-wal", "the devices' write-ahead log"),
    ("demo.sqlite-shm", "the devices' shared memory"),
    (
        "candor.sqlite",
        "accounts, clients, API keys, signing keys and quota usage",
    ),
    ("candor.sqlite-wal", "the store's write-ahead log"),
    ("candor.sqlite-shm", "the store's shared memory"),
    ("admin.token", "the admin API token"),
    (CLIENT_ID_FILE, "the demo client's id"),
    (CLIENT_SECRET_FILE, "the demo client's secret"),
];

/// The demo configuration's file name.
pub const CONFIG_FILE: &str = "candor.toml";
/// Where the demo API's address is kept, so that a restart serves it where the
/// configuration's upstream points.
pub const API_ADDR_FILE: &str = "demo-api.addr";
/// Where the demo client's id is kept.
pub const CLIENT_ID_FILE: &str = "demo-client-id";
/// Where the demo client's secret is kept (readable by its owner only), for the tour's
/// token request.
pub const CLIENT_SECRET_FILE: &str = "demo-client.secret";

/// Deletes the demo's [`FILES`] from `data_dir`; returns those that were there, with what
/// each held. The directory and any other file in it stay.
pub fn reset(data_dir: &Path) -> std::io::Result<Vec<(std::path::PathBuf, &'static str)>> {
    let mut deleted = Vec::new();
    for (name, what) in FILES {
        let path = data_dir.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => deleted.push((path, *what)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("cannot delete {}: {e}", path.display()),
                ));
            }
        }
    }
    Ok(deleted)
}

/// The address the demo API was first served on (from [`API_ADDR_FILE`]), if this data
/// directory has one.
pub fn kept_api_addr(data_dir: &Path) -> Option<SocketAddr> {
    let addr: SocketAddr = std::fs::read_to_string(data_dir.join(API_ADDR_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    // The demo API answers anyone without credentials: never on another interface.
    addr.ip().is_loopback().then_some(addr)
}

/// Writes the demo's configuration, OpenAPI document and API address into `data_dir`, for
/// a first start.
pub fn write_files(
    data_dir: &Path,
    listen: SocketAddr,
    admin: SocketAddr,
    api: SocketAddr,
) -> std::io::Result<std::path::PathBuf> {
    std::fs::write(data_dir.join(OPENAPI_FILE), OPENAPI_DOCUMENT)?;
    let path = data_dir.join(CONFIG_FILE);
    std::fs::write(&path, config_text(listen, admin, api))?;
    std::fs::write(data_dir.join(API_ADDR_FILE), format!("{api}\n"))?;
    Ok(path)
}

/// The demo client of account `acme`.
#[derive(Debug)]
pub struct DemoClient {
    /// Its client id.
    pub client_id: String,
    /// Its secret, when it was created on this start (it is shown once).
    pub new_secret: Option<String>,
    /// Where its secret is kept.
    pub secret_file: std::path::PathBuf,
    /// Whether the kept secret is still the client's (false once it was rotated with
    /// `candor clients rotate` without updating the file, or the file was removed).
    pub secret_file_current: bool,
}

/// The demo's accounts and client, created on first start and kept: a restart reuses the
/// client and its secret (kept in [`CLIENT_SECRET_FILE`]) instead of making a new one.
pub fn demo_client(data_dir: &Path) -> Result<DemoClient, crate::identity::store::StoreError> {
    use crate::identity::store::{Identity, NewAccount, NewClient, StoreError};
    let identity = Identity::open(data_dir)?;
    for (id, name) in [("acme", "Acme Corp (demo)"), ("globex", "Globex (demo)")] {
        match identity.add_account(NewAccount {
            id: Some(id.into()),
            name: name.into(),
            quota_per_day: None,
            quota_per_month: None,
        }) {
            Ok(_) | Err(StoreError::Duplicate { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    let io = |e: std::io::Error| StoreError::Backend(e.to_string());
    let id_file = data_dir.join(CLIENT_ID_FILE);
    let secret_file = data_dir.join(CLIENT_SECRET_FILE);
    if let Ok(client_id) = std::fs::read_to_string(&id_file) {
        let client_id = client_id.trim().to_owned();
        if let Some(client) = identity.snapshot().clients.get(&client_id) {
            let kept = std::fs::read_to_string(&secret_file).unwrap_or_default();
            let secret_file_current =
                crate::identity::store::verify_secret(kept.trim(), &client.secret_hash);
            return Ok(DemoClient {
                client_id,
                new_secret: None,
                secret_file,
                secret_file_current,
            });
        }
    }
    let (client, secret) = identity.add_client(NewClient {
        account_id: "acme".into(),
        scopes: vec!["devices:read".into(), "devices:write".into()],
        token_lifetime: 300,
        second_factor: false,
    })?;
    write_private(&secret_file, &secret).map_err(io)?;
    std::fs::write(&id_file, &client.client_id).map_err(io)?;
    Ok(DemoClient {
        client_id: client.client_id,
        new_secret: Some(secret),
        secret_file,
        secret_file_current: true,
    })
}

/// Writes `text` to a file only its owner can read: a new file, renamed over `path`, so
/// that neither a symlink there nor an existing file's mode decides where the secret goes
/// or who can read it.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let temp = path.with_extension(format!("{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&temp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options
        .open(&temp)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .and_then(|()| std::fs::rename(&temp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written
}

/// The demo API's OpenAPI document, written next to the demo configuration.
pub const OPENAPI_DOCUMENT: &str = include_str!("devices.openapi.yaml");

/// The name the demo configuration gives [`OPENAPI_DOCUMENT`].
pub const OPENAPI_FILE: &str = "devices.openapi.yaml";

/// The demo configuration, pointing at the demo API on `api`.
pub fn config_text(listen: SocketAddr, admin: SocketAddr, api: SocketAddr) -> String {
    format!(
        r#"# candor demo configuration, written by `candor serve` when started without --config.
# Edit it while the gateway runs: a valid change is applied at once, an invalid one is
# reported and the running configuration stays.

[server]
listen = "{listen}"
admin_listen = "{admin}"
data_dir = "."

# The devices API's routes come from its OpenAPI document (devices.openapi.yaml, next to
# this file): paths, methods, parameters, the device body's schema, media types and
# scopes. The gateway answers every problem of a request at once (validation_failed),
# a wrong Accept or Content-Type and a body that is not JSON, before the API sees it.
# `candor openapi --config <this file> --spec devices.openapi.yaml` prints the document
# with the errors each operation can get.
[[openapi]]
document = "devices.openapi.yaml"
upstream = "http://{api}"
timeout = "10s"
unknown_query = "refuse"

# Each operation limits each client: a burst of 30 requests, then one every 2 s (30 per
# minute), and 10,000 a day. Every answer carries the RateLimit-Policy and RateLimit fields;
# past the burst, 429 rate_limited says which policy and when the next request is accepted.
[[openapi.rate_limits]]
name = "burst"
limit = 30
window = "1m"
[[openapi.rate_limits]]
name = "daily"
limit = 10000
window = "1d"

# What the document does not say: where the account is named, and the routes that do
# not forward yet.
[openapi.operations.listDevices]
account_param = "customer"
[openapi.operations.createDevice]
account_param = "customer"
[openapi.operations.getDevice]
account_param = "customer"
[openapi.operations.deleteDevice]
account_param = "customer"
[openapi.operations.updateFirmware]
mode = "not_implemented"
[openapi.operations.usageReports]
mode = "maintenance"
retry_after = 600
maintenance_until = "the reporting backend migration ends"

[[routes]]
name = "legacy"
path = "/v0/{{*rest}}"
upstream = "http://127.0.0.1:9"
timeout = "2s"
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_device_problem_is_reported() {
        let err = validate_device(
            &json!({"name": "  ", "serial": "ab c", "kind": "toaster", "colour": 1}),
        )
        .unwrap_err();
        let reasons: Vec<(&str, &str)> = err
            .fields
            .iter()
            .map(|f| (f.name.as_str(), f.reason.as_str()))
            .collect();
        assert_eq!(
            reasons,
            vec![
                ("name", "blank"),
                ("serial", "format"),
                ("kind", "enum"),
                ("colour", "unknown")
            ]
        );
        let err = validate_device(&json!({})).unwrap_err();
        assert_eq!(err.fields.len(), 2);
        assert!(validate_device(&json!({"name": "Hall sensor", "serial": "SN-0001"})).is_ok());
    }
}
