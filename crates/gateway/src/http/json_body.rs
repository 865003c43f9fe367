//! Negotiate stage helpers: request bodies checked against what their Content-Type says.

use crate::error::GatewayError;
use bytes::Bytes;
use candor_catalog::codes;
use http::Request;
use http::header::CONTENT_TYPE;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::Value;

/// Reads a JSON request body: `unsupported_media_type` unless it is declared
/// `application/json`, `payload_too_large` past `max` bytes, `malformed_body` with line and
/// column when it does not parse.
pub(crate) async fn read_json(req: Request<Incoming>, max: usize) -> Result<Value, GatewayError> {
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    let path = req.uri().path().to_owned();
    match content_type.as_deref() {
        Some("application/json") => {}
        other => {
            let declared = other.map_or("has no Content-Type header".to_owned(), |t| {
                format!("is declared as {t}")
            });
            return Err(crate::stages::negotiate::unsupported(
                declared,
                other.map(str::to_owned),
                &path,
                &["application/json".to_owned()],
                "application/json",
            ));
        }
    }
    let bytes: Bytes = Limited::new(req.into_body(), max)
        .collect()
        .await
        .map_err(|_| {
            crate::stages::transport::payload_too_large(format!("more than {max}"), max as u64)
        })?
        .to_bytes();
    serde_json::from_slice(&bytes).map_err(|e| {
        let reason = match e.classify() {
            serde_json::error::Category::Eof => "the body ends early",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "unexpected data",
            serde_json::error::Category::Io => "read error",
        };
        let text = e.to_string();
        let what = text.split(" at line").next().unwrap_or(&text).to_owned();
        GatewayError::new(codes::MALFORMED_BODY)
            .param("format", "JSON")
            .param("reason", format!("{reason} ({what})"))
            .param("line", e.line().to_string())
            .param("column", e.column().to_string())
            .extension("line", e.line().into())
            .extension("column", e.column().into())
    })
}
