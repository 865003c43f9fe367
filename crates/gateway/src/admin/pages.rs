//! The gateway's own troubleshooting pages: every `type` URL in an error body resolves to
//! `/errors/{code}`, as HTML for browsers and as JSON for programs.

use crate::config::{ERRORS_PREFIX, did_you_mean};
use crate::error::GatewayError;
use crate::http::body::GatewayBody;
use crate::stages::respond::Renderer;
use candor_catalog::{codes, page};
use http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Response};

fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"))
}

fn page_response(content_type: &'static str, body: String) -> Response<GatewayBody> {
    let mut resp = Response::new(GatewayBody::full(body));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp.headers_mut().insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    resp
}

/// Whether `path` belongs to the error pages.
pub(crate) fn is_docs_path(path: &str) -> bool {
    path == ERRORS_PREFIX
        || path
            .strip_prefix(ERRORS_PREFIX)
            .is_some_and(|r| r.starts_with('/'))
}

/// Serves `/errors` (the index) and `/errors/{code}`.
pub(crate) fn serve(
    renderer: &Renderer,
    path: &str,
    headers: &HeaderMap,
) -> Result<Response<GatewayBody>, GatewayError> {
    let catalog = renderer.catalog();
    let code = path
        .strip_prefix(ERRORS_PREFIX)
        .unwrap_or("")
        .trim_matches('/');
    if code.is_empty() {
        if wants_html(headers) {
            let mut items = String::new();
            for e in catalog.entries() {
                items.push_str(&format!(
                    "<li><a href=\"{ERRORS_PREFIX}/{code}\"><code>{code}</code></a> — {status} {title}</li>\n",
                    code = page::escape_html(&e.code),
                    status = e.status,
                    title = page::escape_html(&e.title)
                ));
            }
            let html = format!(
                "<!doctype html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>Error codes</title></head>\n<body>\n<h1>Error codes</h1>\n<ul>\n{items}</ul>\n</body>\n</html>\n"
            );
            return Ok(page_response("text/html; charset=utf-8", html));
        }
        let list: Vec<serde_json::Value> = catalog.entries().iter().map(page::entry_json).collect();
        return Ok(page_response(
            "application/json",
            serde_json::Value::from(list).to_string(),
        ));
    }
    match catalog.get(code) {
        Some(entry) if wants_html(headers) => Ok(page_response(
            "text/html; charset=utf-8",
            page::entry_html(entry, renderer.base_url()),
        )),
        Some(entry) => Ok(page_response(
            "application/json",
            page::entry_json(entry).to_string(),
        )),
        None => {
            let all: Vec<&str> = catalog.entries().iter().map(|e| e.code.as_str()).collect();
            let suggestion = did_you_mean(code, &all);
            let hint = match &suggestion {
                Some(s) => format!(" Did you mean {s}?"),
                None => format!(" {ERRORS_PREFIX} lists every code."),
            };
            let mut err = GatewayError::new(codes::RESOURCE_NOT_FOUND)
                .param("resource", "Error code")
                .param("id", code.to_owned())
                .param("scope", " in the catalog")
                .param("hint", hint);
            if let Some(s) = suggestion {
                err = err.extension("suggestions", vec![s].into());
            }
            Err(err)
        }
    }
}
