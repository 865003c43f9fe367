//! The gateway's own troubleshooting pages: every `type` URL in an error body resolves to
//! `/errors/{code}`, as HTML for browsers and as JSON for programs. The index is at
//! `/errors/` (JSON at `/errors`), with the site's stylesheet, script and search index next
//! to the pages; a code's page shows an example answer in each error profile in use. The
//! HTML comes from [`candor_catalog::site`].

use crate::config::{ERRORS_PREFIX, did_you_mean};
use crate::error::GatewayError;
use crate::http::body::GatewayBody;
use crate::stages::respond::Renderer;
use candor_catalog::site::{self, Links};
use candor_catalog::{Catalog, Profile, codes, page};
use http::header::{
    ACCEPT, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH, LOCATION,
    REFERRER_POLICY, VARY, X_CONTENT_TYPE_OPTIONS,
};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

const HTML: &str = "text/html; charset=utf-8";

/// Whether the client asks for HTML (a browser) rather than JSON.
pub(crate) fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"))
}

/// A page or asset: cached for 5 minutes (the catalog can be reloaded), revalidated by
/// ETag; HTML with a Content-Security-Policy that allows the site's own files only. `vary`
/// when the same URL answers HTML or JSON by Accept.
fn page_response(
    request: &HeaderMap,
    content_type: &'static str,
    body: String,
    vary: bool,
) -> Response<GatewayBody> {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    body.hash(&mut hasher);
    let etag = format!("\"{:016x}\"", hasher.finish());
    let fresh = request
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            let t = t.trim();
            t == "*" || t.trim_start_matches("W/") == etag
        });
    let mut resp = if fresh {
        let mut r = Response::new(GatewayBody::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        Response::new(GatewayBody::full(body))
    };
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(ETAG, v);
    }
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if vary {
        h.insert(VARY, HeaderValue::from_static("Accept"));
    }
    if content_type == HTML {
        h.insert(
            CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(site::CONTENT_SECURITY_POLICY),
        );
        h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    }
    resp
}

/// Whether `path` belongs to the error pages.
pub(crate) fn is_docs_path(path: &str) -> bool {
    path == ERRORS_PREFIX
        || path
            .strip_prefix(ERRORS_PREFIX)
            .is_some_and(|r| r.starts_with('/'))
}

/// The index as HTML with links from one level above `/errors/` (the admin `/catalog`).
pub(crate) fn catalog_index(catalog: &Catalog, request: &HeaderMap) -> Response<GatewayBody> {
    page_response(
        request,
        HTML,
        site::index_page(catalog, Links::Parent),
        true,
    )
}

/// Serves `/errors` and `/errors/` (the index), `/errors/{code}` and the site's assets.
pub(crate) fn serve(
    renderer: &Renderer,
    profiles: &[Arc<Profile>],
    path: &str,
    headers: &HeaderMap,
) -> Result<Response<GatewayBody>, GatewayError> {
    let catalog = renderer.catalog();
    let rest = path.strip_prefix(ERRORS_PREFIX).unwrap_or("");
    let html = wants_html(headers);
    match rest {
        "" | "/" if !html => {
            let list: Vec<serde_json::Value> =
                catalog.entries().iter().map(page::entry_json).collect();
            return Ok(page_response(
                headers,
                "application/json",
                serde_json::Value::from(list).to_string(),
                true,
            ));
        }
        // The pages link relatively: the index is the folder `/errors/`.
        "" => {
            let mut resp = Response::new(GatewayBody::empty());
            *resp.status_mut() = StatusCode::PERMANENT_REDIRECT;
            resp.headers_mut()
                .insert(LOCATION, HeaderValue::from_static("errors/"));
            resp.headers_mut()
                .insert(VARY, HeaderValue::from_static("Accept"));
            return Ok(resp);
        }
        "/" => {
            return Ok(page_response(
                headers,
                HTML,
                site::index_page_with_profiles(
                    catalog,
                    Links::Served,
                    &profiles.iter().map(|p| &**p).collect::<Vec<_>>(),
                ),
                true,
            ));
        }
        _ => {}
    }
    let name = &rest[1..];
    let asset = match name {
        site::STYLE_FILE => Some(("text/css; charset=utf-8", site::STYLE_CSS.to_owned())),
        site::SCRIPT_FILE => Some(("text/javascript; charset=utf-8", site::SEARCH_JS.to_owned())),
        site::FAVICON_FILE => Some(("image/svg+xml", site::FAVICON_SVG.to_owned())),
        site::INDEX_FILE => Some((
            "application/json",
            site::search_index(catalog, Links::Served),
        )),
        _ => None,
    };
    if let Some((content_type, body)) = asset {
        return Ok(page_response(headers, content_type, body, false));
    }
    // An error profile's page (as Markdown for programs): only the profiles in use.
    if let Some(wanted) = name.strip_prefix("profile-") {
        let in_use: Vec<&Profile> = profiles
            .iter()
            .map(|p| &**p)
            .filter(|p| !p.is_problem())
            .collect();
        return match in_use.iter().find(|p| p.name == wanted) {
            Some(p) if html => Ok(page_response(
                headers,
                HTML,
                site::profile_page(catalog, p, Links::Served),
                true,
            )),
            Some(p) => Ok(page_response(
                headers,
                "text/markdown; charset=utf-8",
                candor_catalog::profile_page::markdown(p, catalog),
                true,
            )),
            None => {
                let names: Vec<&str> = in_use.iter().map(|p| p.name.as_str()).collect();
                let hint = match (did_you_mean(wanted, &names), names.is_empty()) {
                    (Some(s), _) => format!(" Did you mean {ERRORS_PREFIX}/profile-{s}?"),
                    (None, true) => " No route or listener answers in an error profile of its own: the default format's pages are the codes' pages.".to_owned(),
                    (None, false) => format!(" The profiles in use: {}.", names.join(", ")),
                };
                Err(GatewayError::new(codes::RESOURCE_NOT_FOUND)
                    .param("resource", "Error profile")
                    .param("id", wanted.chars().take(64).collect::<String>())
                    .param("scope", " among the profiles in use here")
                    .param("hint", hint))
            }
        };
    }
    match catalog.get(name) {
        Some(entry) if html => Ok(page_response(
            headers,
            HTML,
            site::entry_page(
                catalog,
                entry,
                renderer.base_url(),
                Links::Served,
                &profiles.iter().map(|p| &**p).collect::<Vec<_>>(),
            ),
            true,
        )),
        Some(entry) => Ok(page_response(
            headers,
            "application/json",
            page::entry_json(entry).to_string(),
            true,
        )),
        None => {
            let all: Vec<&str> = catalog.entries().iter().map(|e| e.code.as_str()).collect();
            let suggestion = did_you_mean(name, &all);
            let hint = match &suggestion {
                Some(s) => format!(" Did you mean {s}?"),
                None => format!(" {ERRORS_PREFIX}/ lists every code."),
            };
            let mut err = GatewayError::new(codes::RESOURCE_NOT_FOUND)
                .param("resource", "Error code")
                .param("id", name.to_owned())
                .param("scope", " in the catalog")
                .param("hint", hint);
            if let Some(s) = suggestion {
                err = err.extension("suggestions", vec![s].into());
            }
            Err(err)
        }
    }
}
