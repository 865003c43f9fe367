//! The admin listener: health, the catalog as JSON, and the error pages. Everything it
//! refuses goes through the catalog like the gateway's own errors.

use crate::body::GatewayBody;
use crate::docs;
use crate::error::GatewayError;
use crate::pipeline::Pipeline;
use crate::request_id::new_ulid;
use crate::respond::X_REQUEST_ID;
use crate::server::State;
use candor_catalog::{codes, page};
use http::header::{ALLOW, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response};
use hyper::body::Incoming;
use serde_json::json;

const ENDPOINTS: &[&str] = &["/health", "/catalog", "/errors/{code}"];

/// Serves one admin request.
pub async fn handle(
    state: &State,
    pipeline: &Pipeline,
    req: Request<Incoming>,
) -> Response<GatewayBody> {
    let request_id = new_ulid();
    let path = req.uri().path().to_owned();
    let result = route(state, pipeline, &req, &path);
    let mut resp = match result {
        Ok(r) => r,
        Err(e) => pipeline.renderer().render(&e, &path, &request_id),
    };
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert(X_REQUEST_ID.clone(), v);
    }
    resp
}

fn json_response(v: serde_json::Value) -> Response<GatewayBody> {
    let mut resp = Response::new(GatewayBody::full(v.to_string()));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn route(
    state: &State,
    pipeline: &Pipeline,
    req: &Request<Incoming>,
    path: &str,
) -> Result<Response<GatewayBody>, GatewayError> {
    let known = path == "/health" || path == "/catalog" || docs::is_docs_path(path);
    if known && req.method() != Method::GET && req.method() != Method::HEAD {
        return Err(GatewayError::new(codes::METHOD_NOT_ALLOWED)
            .param("path", path.to_owned())
            .param("method", req.method().to_string())
            .param("allowed", "GET, HEAD")
            .extension("allowed", json!(["GET", "HEAD"]))
            .header(ALLOW, "GET, HEAD"));
    }
    match path {
        "/health" => Ok(json_response(json!({
            "status": "ok",
            "config_generation": state.current().generation,
        }))),
        "/catalog" => Ok(json_response(
            pipeline
                .renderer()
                .catalog()
                .entries()
                .iter()
                .map(page::entry_json)
                .collect::<Vec<_>>()
                .into(),
        )),
        p if docs::is_docs_path(p) => docs::serve(pipeline.renderer(), p, req.headers()),
        _ => Err(GatewayError::new(codes::ROUTE_NOT_FOUND)
            .param("method", req.method().to_string())
            .param("path", path.to_owned())
            .param(
                "hint",
                format!(" The admin listener serves {}.", ENDPOINTS.join(", ")),
            )
            .extension("suggestions", json!([]))),
    }
}
