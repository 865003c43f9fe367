//! Respond stage: the one place where an error becomes an HTTP response, from its catalog
//! entry, as RFC 9457 problem details.

use crate::error::GatewayError;
use crate::http::body::GatewayBody;
use candor_catalog::{Catalog, Problem, codes};
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Response, StatusCode};
use std::sync::Arc;

/// `X-Request-Id`
pub(crate) static X_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

/// The media type of every gateway error body.
pub(crate) const PROBLEM_JSON: &str = "application/problem+json";

/// Renders errors from the catalog.
#[derive(Clone, Debug)]
pub struct Renderer {
    catalog: Arc<Catalog>,
    base_url: String,
    /// Set for an API behind the gateway (the demo API): its problems say
    /// `"source": "upstream"`, so that they cannot be taken for the gateway's.
    upstream: bool,
}

impl Renderer {
    /// A renderer whose `type` URLs start with `base_url`.
    pub fn new(catalog: Arc<Catalog>, base_url: &str) -> Self {
        Renderer {
            catalog,
            base_url: base_url.trim_end_matches('/').to_owned(),
            upstream: false,
        }
    }

    /// This renderer for an API behind the gateway: every problem it renders carries
    /// `"source": "upstream"`.
    pub fn for_upstream(mut self) -> Self {
        self.upstream = true;
        self
    }

    /// The catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The public base URL.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The body of `err` as JSON text, and its status. `trace_id` is the request's W3C
    /// trace id (32 lower-case hex digits), absent for a request refused before its head was
    /// parsed.
    pub fn problem_json(
        &self,
        err: &GatewayError,
        instance: &str,
        request_id: &str,
        trace_id: Option<&str>,
    ) -> (StatusCode, String) {
        let entry = self
            .catalog
            .get(err.code)
            .or_else(|| self.catalog.get(codes::INTERNAL_ERROR))
            .expect("internal_error is a built-in code");
        let params: Vec<(&str, &str)> = err.params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let detail = entry.message.render(&params);
        let status = err.status.unwrap_or_else(|| {
            StatusCode::from_u16(entry.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
        });
        let mut problem = Problem::new(entry, &self.base_url, &detail, instance, request_id)
            .trace_id(trace_id)
            .status(status.as_u16())
            .errors(err.fields.clone());
        if let Some(r) = err.retry {
            problem = problem.retry(r);
        }
        if self.upstream {
            problem = problem.extension("source", "upstream".into());
        }
        for (k, v) in &err.extensions {
            problem = problem.extension(k, v.clone());
        }
        (status, problem.to_json())
    }

    /// The complete response for `err` (`trace_id` as for [`Renderer::problem_json`]).
    pub fn render(
        &self,
        err: &GatewayError,
        instance: &str,
        request_id: &str,
        trace_id: Option<&str>,
    ) -> Response<GatewayBody> {
        let (status, body) = self.problem_json(err, instance, request_id, trace_id);
        let mut resp = Response::new(GatewayBody::full(body));
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Ok(v) = HeaderValue::from_str(request_id) {
            h.insert(X_REQUEST_ID.clone(), v);
        }
        for (k, v) in &err.headers {
            h.append(k.clone(), v.clone());
        }
        // Every 401 names a way to authenticate (RFC 9110 §15.5.2).
        if status == StatusCode::UNAUTHORIZED && !h.contains_key(http::header::WWW_AUTHENTICATE) {
            h.insert(
                http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"candor\""),
            );
        }
        resp
    }
}
