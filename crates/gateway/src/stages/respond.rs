//! Respond stage: the one place where an error becomes an HTTP response, from its catalog
//! entry: as RFC 9457 problem details, or in the envelope and words of the error profile
//! chosen for the request (the route's, else its host's, else the listener's).

use crate::error::{ErrorSource, GatewayError};
use crate::http::body::GatewayBody;
use candor_catalog::profile::ErrorFacts;
use candor_catalog::{Catalog, FieldError, Problem, Profile, codes};
use http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderName, HeaderValue, Response, StatusCode};
use std::sync::Arc;

/// The error profiles of a configuration (built-in and the operator's) and which one
/// answers where: a route's own, else its host's, else the listener's, else `problem`.
#[derive(Debug, Default)]
pub struct Profiles {
    all: Vec<Arc<Profile>>,
    /// The listener's profile (`[server] profile`); `None`: problem details.
    pub(crate) listener: Option<Arc<Profile>>,
    /// Per host (lower case, no port): `[[profiles.hosts]]`.
    pub(crate) hosts: Vec<(String, Arc<Profile>)>,
}

impl Profiles {
    /// A set of `all` profiles, none chosen anywhere yet.
    pub fn new(all: Vec<Arc<Profile>>) -> Self {
        Profiles {
            all,
            listener: None,
            hosts: Vec::new(),
        }
    }

    /// The profile named `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Profile>> {
        self.all.iter().find(|p| p.name == name).cloned()
    }

    /// Every profile's name.
    pub fn names(&self) -> Vec<&str> {
        self.all.iter().map(|p| p.name.as_str()).collect()
    }

    /// Every profile, built-in first.
    pub fn all(&self) -> &[Arc<Profile>] {
        &self.all
    }

    /// The hosts with a profile of their own.
    pub fn hosts(&self) -> &[(String, Arc<Profile>)] {
        &self.hosts
    }

    /// The listener's profile, if one is set.
    pub fn listener(&self) -> Option<&Arc<Profile>> {
        self.listener.as_ref()
    }

    /// The profile of a request to `host` (a Host header value, port allowed) on a route
    /// whose own profile is `route`; `None` for problem details. Costs two branches when
    /// no profile is configured.
    pub fn pick(&self, route: Option<&Arc<Profile>>, host: Option<&str>) -> Option<Arc<Profile>> {
        if let Some(r) = route {
            return Some(r.clone());
        }
        if !self.hosts.is_empty()
            && let Some(host) = host
        {
            let name = match host.rsplit_once(':') {
                Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
                _ => host,
            };
            if let Some((_, p)) = self
                .hosts
                .iter()
                .find(|(h, _)| h.eq_ignore_ascii_case(name))
            {
                return Some(p.clone());
            }
        }
        self.listener.clone()
    }
}

/// `X-Request-Id`
pub(crate) static X_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

/// The parameter that carries an upstream problem's `detail`, as it wrote it.
const UPSTREAM_DETAIL: &str = "upstream_detail";

/// The header a response of `profile` carries its request id in (`X-Request-Id` unless
/// the profile names another).
pub(crate) fn request_id_header(profile: Option<&Profile>) -> HeaderName {
    profile
        .and_then(|p| p.headers.request_id.as_deref())
        .and_then(|n| HeaderName::from_bytes(n.as_bytes()).ok())
        .unwrap_or_else(|| X_REQUEST_ID.clone())
}

/// The media type of a problem-details error body.
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
            .errors_of(std::borrow::Cow::Borrowed(&err.fields));
        if let Some(r) = err.retry {
            problem = problem.retry(r);
        }
        if self.upstream {
            problem = problem.extension("source", "upstream".into());
        }
        for (k, v) in &err.extensions {
            problem = problem.extension_ref(k, v);
        }
        (status, problem.to_json())
    }

    /// The body of `err` in `profile` (problem details when `None` or `problem`), its
    /// status and its media type.
    pub fn body_in<'p>(
        &self,
        err: &GatewayError,
        profile: Option<&'p Profile>,
        instance: &str,
        request_id: &str,
        trace_id: Option<&str>,
    ) -> (StatusCode, String, &'p str) {
        match profile.filter(|p| !p.is_problem()) {
            None => {
                let (status, body) = self.problem_json(err, instance, request_id, trace_id);
                (status, body, PROBLEM_JSON)
            }
            Some(profile) => {
                let (status, body) =
                    self.profile_json(err, profile, instance, request_id, trace_id);
                (status, body, profile.content_type.as_str())
            }
        }
    }

    fn profile_json(
        &self,
        err: &GatewayError,
        profile: &Profile,
        instance: &str,
        request_id: &str,
        trace_id: Option<&str>,
    ) -> (StatusCode, String) {
        let entry = self
            .catalog
            .get(err.code)
            .or_else(|| self.catalog.get(codes::INTERNAL_ERROR))
            .expect("internal_error is a built-in code");
        let mut params: Vec<(&str, &str)> =
            err.params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        // An upstream's problem arrives with its message already written.
        let detail = match params.iter().find(|(k, _)| *k == UPSTREAM_DETAIL) {
            Some((_, d)) => (*d).to_owned(),
            None => entry.message.render(&params),
        };
        // String extensions (`reason`...) choose a profile's rows too.
        for (k, v) in &err.extensions {
            if let Some(s) = v.as_str() {
                params.push((k, s));
            }
        }
        let out = profile.render(&ErrorFacts {
            entry,
            params: &params,
            detail: &detail,
            status: err.status.map_or(entry.status, |s| s.as_u16()),
            fields: &err.fields,
            instance,
            request_id,
            trace_id,
            base_url: &self.base_url,
            retry: err.retry.unwrap_or(entry.retry),
        });
        (
            StatusCode::from_u16(out.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            out.body,
        )
    }

    /// The complete response for `err` in `profile` (problem details when `None` or
    /// `problem`, exactly as [`Renderer::render`]): the profile's envelope, media type,
    /// request id header and `WWW-Authenticate` / `Retry-After` conventions.
    pub fn render_in(
        &self,
        err: &GatewayError,
        profile: Option<&Profile>,
        instance: &str,
        request_id: &str,
        trace_id: Option<&str>,
    ) -> Response<GatewayBody> {
        let Some(profile) = profile.filter(|p| !p.is_problem()) else {
            return self.render(err, instance, request_id, trace_id);
        };
        let (status, body) = self.profile_json(err, profile, instance, request_id, trace_id);
        let mut resp = Response::new(GatewayBody::full(body));
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_str(&profile.content_type)
                .unwrap_or(HeaderValue::from_static("application/json")),
        );
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Ok(v) = HeaderValue::from_str(request_id) {
            h.insert(request_id_header(Some(profile)), v);
        }
        for (k, v) in &err.headers {
            if *k == WWW_AUTHENTICATE
                && (profile.headers.www_authenticate.is_some()
                    || status != StatusCode::UNAUTHORIZED)
            {
                continue;
            }
            if *k == RETRY_AFTER && !profile.headers.retry_after {
                continue;
            }
            h.append(k.clone(), v.clone());
        }
        if status == StatusCode::UNAUTHORIZED && !h.contains_key(WWW_AUTHENTICATE) {
            let challenge = profile
                .headers
                .www_authenticate
                .as_deref()
                .and_then(|v| HeaderValue::from_str(v).ok())
                .unwrap_or(HeaderValue::from_static("Bearer realm=\"candor\""));
            h.insert(WWW_AUTHENTICATE, challenge);
        }
        resp
    }

    /// An upstream's problem-details answer (`body`, with `status`), rendered again in
    /// `profile`: its catalog code, detail and field errors, said in the profile's words.
    /// `None` when the body is not a problem of a built-in catalog code.
    pub(crate) fn upstream_problem_in(
        &self,
        status: StatusCode,
        body: &[u8],
        profile: &Profile,
        instance: &str,
        request_id: &str,
        trace_id: Option<&str>,
    ) -> Option<(GatewayError, Response<GatewayBody>)> {
        let v: serde_json::Value = serde_json::from_slice(body).ok()?;
        let code = v.get("code")?.as_str()?;
        let code = *codes::ALL.iter().find(|c| **c == code)?;
        let mut err = GatewayError::new(code)
            .status(status)
            .source(ErrorSource::Upstream);
        if let Some(d) = v.get("detail").and_then(|d| d.as_str()) {
            err = err.param(UPSTREAM_DETAIL, d);
        }
        for e in v
            .get("errors")
            .and_then(|e| e.as_array())
            .into_iter()
            .flatten()
        {
            let s = |k: &str| e.get(k).and_then(|x| x.as_str()).unwrap_or("").to_owned();
            err = err.field(FieldError {
                location: s("in"),
                pointer: s("pointer"),
                name: s("name"),
                reason: s("reason"),
                detail: s("detail"),
            });
        }
        let resp = self.render_in(&err, Some(profile), instance, request_id, trace_id);
        Some((err, resp))
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

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::RETRY_AFTER;

    fn renderer() -> Renderer {
        Renderer::new(Arc::new(Catalog::builtin().clone()), "http://h")
    }

    fn body(resp: Response<GatewayBody>) -> String {
        match resp.into_body() {
            GatewayBody::Full(Some(b)) => String::from_utf8(b.to_vec()).unwrap(),
            _ => panic!("a full body"),
        }
    }

    fn err() -> GatewayError {
        GatewayError::new(codes::RATE_LIMITED)
            .param("policy", "burst")
            .header(RETRY_AFTER, "7")
    }

    #[test]
    fn no_profile_and_the_problem_profile_are_problem_details_unchanged() {
        let r = renderer();
        let direct = r.render(&err(), "/x", "01J", None);
        let problem = Profile::builtin("problem").unwrap();
        for resp in [
            r.render_in(&err(), None, "/x", "01J", None),
            r.render_in(&err(), Some(problem), "/x", "01J", None),
        ] {
            assert_eq!(resp.status(), direct.status());
            assert_eq!(resp.headers(), direct.headers());
        }
        let direct = body(r.render(&err(), "/x", "01J", None));
        assert_eq!(
            body(r.render_in(&err(), Some(problem), "/x", "01J", None)),
            direct
        );
    }

    #[test]
    fn a_profile_sets_its_media_type_headers_and_status() {
        let r = renderer();
        let pelion = Profile::builtin("pelion").unwrap();
        let resp = r.render_in(&err(), Some(pelion), "/x", "01J", None);
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(resp.headers()[RETRY_AFTER], "7");
        assert_eq!(resp.headers()[&X_REQUEST_ID], "01J");
        let b: serde_json::Value = serde_json::from_str(&body(resp)).unwrap();
        assert_eq!(b["type"], "rate_limit_exceeded");
        // A 401 gets the profile's challenge; a status the profile changes drops the
        // gateway's.
        let e = GatewayError::new(codes::CREDENTIALS_MISSING)
            .header(WWW_AUTHENTICATE, "Bearer realm=\"candor\"");
        let resp = r.render_in(&e, Some(pelion), "/x", "01J", None);
        assert_eq!(resp.headers()[WWW_AUTHENTICATE], "Bearer realm=\"pelion\"");
        let edgio = Profile::builtin("edgio").unwrap();
        let e = GatewayError::new(codes::CREDENTIALS_MALFORMED)
            .header(WWW_AUTHENTICATE, "Bearer error=\"invalid_request\"");
        let resp = r.render_in(&e, Some(edgio), "/x", "01J", None);
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        assert!(!resp.headers().contains_key(WWW_AUTHENTICATE));
    }

    #[test]
    fn the_most_specific_profile_wins() {
        let all: Vec<Arc<Profile>> = Profile::builtins().iter().cloned().map(Arc::new).collect();
        let mut set = Profiles::new(all);
        assert!(
            set.pick(None, Some("a.example")).is_none(),
            "problem details by default"
        );
        set.listener = set.get("pelion");
        set.hosts
            .push(("a.example".into(), set.get("ixon").unwrap()));
        let name = |p: Option<Arc<Profile>>| p.map(|p| p.name.clone());
        assert_eq!(
            name(set.pick(None, Some("b.example"))).as_deref(),
            Some("pelion")
        );
        assert_eq!(
            name(set.pick(None, Some("A.Example:8080"))).as_deref(),
            Some("ixon")
        );
        let knox = set.get("knox");
        assert_eq!(
            name(set.pick(knox.as_ref(), Some("a.example"))).as_deref(),
            Some("knox")
        );
    }
}
