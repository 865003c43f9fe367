//! Route stage: match host, path and method against the configured routes; on a miss, work
//! out what the caller probably meant.

use crate::error::GatewayError;
use crate::pipeline::context::RequestCtx;
use crate::upstream::Upstream;
use candor_catalog::codes;
use http::header::ALLOW;
use http::{HeaderValue, Method};
use std::fmt;
use std::time::Duration;

/// What a route does with a matched request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteMode {
    /// Forward to the upstream.
    Proxy,
    /// Declared but not implemented: `not_implemented` 501.
    NotImplemented,
    /// Under maintenance: `service_unavailable` 503 with `Retry-After`.
    Maintenance {
        /// Seconds for `Retry-After`.
        retry_after: u64,
        /// When maintenance is expected to end, in words or RFC 3339, if known.
        until: Option<String>,
    },
}

/// `[[routes]]`
#[derive(Clone, Debug)]
pub struct RouteConfig {
    /// Name used in errors and logs.
    pub name: String,
    /// Host the route is limited to (lower case, no port), if any.
    pub host: Option<String>,
    /// The path pattern.
    pub pattern: PathPattern,
    /// Accepted methods; empty means any. HEAD is accepted wherever GET is.
    pub methods: Vec<Method>,
    /// Where to forward (required in proxy mode).
    pub upstream: Option<Upstream>,
    /// How long to wait for the upstream's response headers.
    pub timeout: Duration,
    /// What to do with matched requests.
    pub mode: RouteMode,
    /// Wrap upstream error responses that are not problem documents into the envelope.
    pub wrap_upstream_errors: bool,
    /// Send the client's Host header upstream instead of the upstream's authority.
    pub preserve_host: bool,
    /// Credentials the route requires, if any.
    pub auth: Option<crate::stages::authenticate::AuthConfig>,
    /// The route's transport policy, merged with the global one.
    pub access: crate::stages::policy::AccessPolicy,
    /// The media types the route accepts and produces.
    pub negotiation: crate::stages::negotiate::Negotiation,
    /// The request contract the validate stage checks, if the route declares one.
    pub(crate) contract: Option<std::sync::Arc<crate::stages::validate::Contract>>,
    /// The route's own body limit (at most `limits.max_body_bytes`).
    pub max_body_bytes: Option<u64>,
    /// Its rate-limit policies and the statuses of its limit answers.
    pub(crate) limits: crate::config::RouteLimits,
    /// The feature it configures and the configuration modes it supports, if it does.
    pub config_mode: Option<crate::stages::config_mode::RouteModes>,
    /// Its upstream is the built-in demo API (`upstream = "builtin:demo"`).
    pub builtin_upstream: bool,
    /// The error profile its answers are rendered in (`None`: its host's or listener's).
    pub profile: Option<std::sync::Arc<candor_catalog::Profile>>,
}

/// A compiled path pattern: literal segments, `{param}` segments and a final `{*rest}`.
/// A trailing slash is significant, as it is for most upstreams.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathPattern {
    segments: Vec<PatternSegment>,
    trailing_slash: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum PatternSegment {
    Literal(String),
    Param(String),
    Rest(String),
}

impl PathPattern {
    /// Compiles a pattern such as `/v1/customers/{customer}/devices` or `/static/{*rest}`.
    pub fn parse(s: &str) -> Result<PathPattern, String> {
        let Some(rest) = s.strip_prefix('/') else {
            return Err(format!("`{s}` must start with '/'"));
        };
        let mut segments = Vec::new();
        let trailing_slash = s.len() > 1 && s.ends_with('/');
        let body = if trailing_slash {
            &rest[..rest.len() - 1]
        } else {
            rest
        };
        if body.is_empty() {
            return Ok(PathPattern {
                segments,
                trailing_slash: false,
            });
        }
        let parts: Vec<&str> = body.split('/').collect();
        for (i, seg) in parts.iter().enumerate() {
            if seg.is_empty() {
                return Err(format!("`{s}` has an empty segment ('//')"));
            }
            if let Some(inner) = seg.strip_prefix('{') {
                let Some(name) = inner.strip_suffix('}') else {
                    if inner.contains('}') {
                        return Err(format!(
                            "segment `{seg}` mixes text and a parameter; a parameter is a whole segment"
                        ));
                    }
                    return Err(format!("segment `{seg}` opens '{{' without closing it"));
                };
                let (name, rest) = match name.strip_prefix('*') {
                    Some(n) => (n, true),
                    None => (name, false),
                };
                if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                {
                    return Err(format!(
                        "parameter name `{name}` must be letters, digits or '_'"
                    ));
                }
                let taken = segments.iter().any(|s| {
                    matches!(s, PatternSegment::Param(n) | PatternSegment::Rest(n) if n == name)
                });
                if taken {
                    return Err(format!("parameter `{{{name}}}` appears twice in `{s}`"));
                }
                if rest {
                    if i + 1 != parts.len() || trailing_slash {
                        return Err(format!("`{{*{name}}}` must be the last segment"));
                    }
                    segments.push(PatternSegment::Rest(name.to_owned()));
                } else {
                    segments.push(PatternSegment::Param(name.to_owned()));
                }
            } else if seg.contains(['{', '}']) {
                return Err(format!(
                    "segment `{seg}` mixes text and a parameter; a parameter is a whole segment"
                ));
            } else {
                segments.push(PatternSegment::Literal((*seg).to_owned()));
            }
        }
        Ok(PathPattern {
            segments,
            trailing_slash,
        })
    }

    /// Whether the pattern ends with `{*rest}`.
    pub fn has_rest(&self) -> bool {
        matches!(self.segments.last(), Some(PatternSegment::Rest(_)))
    }

    /// Whether two patterns match exactly the same paths.
    pub fn same_shape(&self, other: &PathPattern) -> bool {
        self.trailing_slash == other.trailing_slash
            && self.segments.len() == other.segments.len()
            && self
                .segments
                .iter()
                .zip(&other.segments)
                .all(|(a, b)| match (a, b) {
                    (PatternSegment::Literal(x), PatternSegment::Literal(y)) => x == y,
                    (PatternSegment::Param(_), PatternSegment::Param(_)) => true,
                    (PatternSegment::Rest(_), PatternSegment::Rest(_)) => true,
                    _ => false,
                })
    }

    /// Whether every path `other` matches, this pattern matches too (a route with `other`
    /// after one with this pattern, for the same methods, could never match).
    pub fn covers(&self, other: &PathPattern) -> bool {
        use PatternSegment::{Literal, Param, Rest};
        for (i, a) in self.segments.iter().enumerate() {
            match (a, other.segments.get(i)) {
                (Rest(_), _) => return true,
                (Literal(x), Some(Literal(y))) if x == y => {}
                (Param(_), Some(Literal(_) | Param(_))) => {}
                _ => return false,
            }
        }
        self.segments.len() == other.segments.len() && self.trailing_slash == other.trailing_slash
    }

    /// A sort key putting concrete patterns before templated ones that match the same paths
    /// (OpenAPI: `/devices/mine` before `/devices/{id}`): per segment, a literal, then a
    /// parameter, then the rest.
    pub fn specificity(&self) -> Vec<u8> {
        self.segments
            .iter()
            .map(|s| match s {
                PatternSegment::Literal(_) => 0,
                PatternSegment::Param(_) => 1,
                PatternSegment::Rest(_) => 2,
            })
            .collect()
    }

    /// Matches the segments of a normalised path; `fold_case` compares literals ignoring case.
    fn matches(&self, segs: &[&str], trailing_slash: bool, fold_case: bool) -> bool {
        let mut i = 0;
        for p in &self.segments {
            match p {
                PatternSegment::Rest(_) => return true,
                PatternSegment::Literal(l) => match segs.get(i) {
                    Some(s) if s == l || (fold_case && s.eq_ignore_ascii_case(l)) => {}
                    _ => return false,
                },
                PatternSegment::Param(_) => match segs.get(i) {
                    Some(s) if !s.is_empty() => {}
                    _ => return false,
                },
            }
            i += 1;
        }
        i == segs.len() && trailing_slash == self.trailing_slash
    }

    /// The parameters captured from a matching path, by name.
    pub fn captures<'p>(&self, path: &'p str) -> Vec<(&str, &'p str)> {
        let mut out = Vec::new();
        let body = path.strip_prefix('/').unwrap_or(path);
        let mut rest = body;
        for p in &self.segments {
            let (seg, tail) = rest.split_once('/').unwrap_or((rest, ""));
            match p {
                PatternSegment::Literal(_) => {}
                PatternSegment::Param(n) => out.push((n.as_str(), seg)),
                PatternSegment::Rest(n) => {
                    out.push((n.as_str(), rest));
                    break;
                }
            }
            rest = tail;
        }
        out
    }

    /// This pattern with the request's segments in place of its parameters.
    fn instantiate(&self, segs: &[&str]) -> String {
        let mut out = String::new();
        for (i, p) in self.segments.iter().enumerate() {
            out.push('/');
            match p {
                PatternSegment::Literal(l) => out.push_str(l),
                PatternSegment::Param(n) => match segs.get(i) {
                    Some(s) if !s.is_empty() => out.push_str(s),
                    _ => {
                        out.push('{');
                        out.push_str(n);
                        out.push('}');
                    }
                },
                PatternSegment::Rest(_) => {
                    out.push_str(&segs.get(i..).map(|r| r.join("/")).unwrap_or_default());
                    return out;
                }
            }
        }
        if out.is_empty() || self.trailing_slash {
            out.push('/');
        }
        out
    }
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.segments.is_empty() {
            return f.write_str("/");
        }
        for s in &self.segments {
            match s {
                PatternSegment::Literal(l) => write!(f, "/{l}")?,
                PatternSegment::Param(p) => write!(f, "/{{{p}}}")?,
                PatternSegment::Rest(p) => write!(f, "/{{*{p}}}")?,
            }
        }
        if self.trailing_slash {
            f.write_str("/")?;
        }
        Ok(())
    }
}

/// A route ready to serve: its config and what is precomputed for its answers.
#[derive(Debug)]
pub(crate) struct Route {
    /// The route as configured.
    pub config: RouteConfig,
    /// The `Allow` header value, precomputed.
    pub allow: Option<HeaderValue>,
    /// Its position in the table (the index of its plan).
    pub index: usize,
    /// One of the gateway's own endpoints: never suggested, logged as a gateway page.
    pub builtin: bool,
}

/// A route to put in the table.
#[derive(Debug)]
pub(crate) struct RouteEntry {
    /// The route.
    pub config: RouteConfig,
    /// Whether it is one of the gateway's own endpoints.
    pub builtin: bool,
}

impl Route {
    fn allows(&self, method: &Method) -> bool {
        let m = &self.config.methods;
        m.is_empty() || m.contains(method) || (method == Method::HEAD && m.contains(&Method::GET))
    }

    fn method_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.config.methods.iter().map(|m| m.to_string()).collect();
        if self.config.methods.contains(&Method::GET)
            && !self.config.methods.contains(&Method::HEAD)
        {
            names.push("HEAD".into());
        }
        names
    }
}

/// Why a suggestion was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SuggestionReason {
    /// The same path with the trailing slash added or removed.
    TrailingSlash,
    /// The same path in other letter case.
    LetterCase,
    /// A configured path close by edit distance.
    Similar,
}

impl SuggestionReason {
    /// Stable word used in the `suggestions` member.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SuggestionReason::TrailingSlash => "trailing_slash",
            SuggestionReason::LetterCase => "letter_case",
            SuggestionReason::Similar => "similar_path",
        }
    }
}

/// A route the caller probably meant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Suggestion {
    /// The concrete path to use.
    pub path: String,
    /// Methods that path accepts (empty: any).
    pub methods: Vec<String>,
    /// Why it is suggested.
    pub reason: SuggestionReason,
    /// Whether it accepts the request's method.
    pub accepts_method: bool,
}

/// The outcome of a failed lookup.
#[derive(Debug)]
pub(crate) enum RouteMiss<'t> {
    /// No route matches the path (for this host).
    NotFound(Vec<Suggestion>),
    /// Routes match the path, none for this method.
    MethodNotAllowed {
        /// The first route matching the path.
        route: &'t Route,
        /// Every method accepted by the routes matching the path.
        allowed: Vec<String>,
    },
}

/// All routes, compiled.
#[derive(Debug, Default)]
pub(crate) struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    /// The routes, in order.
    pub(crate) fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Compiles the routes, in order: the first that matches wins.
    pub(crate) fn new(entries: Vec<RouteEntry>) -> RouteTable {
        let routes = entries
            .into_iter()
            .enumerate()
            .map(|(index, e)| {
                let mut r = Route {
                    config: e.config,
                    allow: None,
                    index,
                    builtin: e.builtin,
                };
                let names = r.method_names();
                if !names.is_empty() {
                    r.allow = HeaderValue::from_str(&names.join(", ")).ok();
                }
                r
            })
            .collect();
        RouteTable { routes }
    }

    /// Finds the route for `method` `path` on `host`. `path` is normalised and decoded.
    pub(crate) fn lookup<'t>(
        &'t self,
        host: Option<&str>,
        path: &str,
        method: &Method,
    ) -> Result<&'t Route, RouteMiss<'t>> {
        let (segs, trailing) = split(path);
        let mut path_match: Option<&Route> = None;
        for r in self.for_host(host) {
            if r.config.pattern.matches(&segs, trailing, false) {
                if r.allows(method) {
                    return Ok(r);
                }
                path_match.get_or_insert(r);
            }
        }
        if let Some(route) = path_match {
            let mut allowed: Vec<String> = Vec::new();
            for r in self.for_host(host) {
                if r.config.pattern.matches(&segs, trailing, false) {
                    for m in r.method_names() {
                        if !allowed.contains(&m) {
                            allowed.push(m);
                        }
                    }
                }
            }
            return Err(RouteMiss::MethodNotAllowed { route, allowed });
        }
        Err(RouteMiss::NotFound(self.suggest(host, path, method)))
    }

    fn for_host<'a, 'h>(
        &'a self,
        host: Option<&'h str>,
    ) -> impl Iterator<Item = &'a Route> + use<'a, 'h> {
        self.routes
            .iter()
            .filter(move |r| r.config.host.as_deref().is_none_or(|h| Some(h) == host))
    }

    fn suggest(&self, host: Option<&str>, path: &str, method: &Method) -> Vec<Suggestion> {
        let mut out: Vec<Suggestion> = Vec::new();
        // Several routes may share a suggested path (GET on one, POST on another): the
        // suggestion names every method any of them takes, as a 405 there would.
        let push = |out: &mut Vec<Suggestion>, r: &Route, p: String, reason| match out
            .iter_mut()
            .find(|s| s.path == p)
        {
            Some(s) => {
                let any = r.config.methods.is_empty() || (s.methods.is_empty() && s.accepts_method);
                if any {
                    s.methods.clear();
                } else {
                    for m in r.method_names() {
                        if !s.methods.contains(&m) {
                            s.methods.push(m);
                        }
                    }
                }
                s.accepts_method |= r.allows(method);
            }
            None => out.push(Suggestion {
                path: p,
                methods: r.method_names(),
                reason,
                accepts_method: r.allows(method),
            }),
        };
        let (segs, trailing) = split(path);
        for r in self.for_host(host).filter(|r| !r.builtin) {
            let pat = &r.config.pattern;
            if path != "/" && pat.matches(&segs, !trailing, false) {
                push(
                    &mut out,
                    r,
                    pat.instantiate(&segs),
                    SuggestionReason::TrailingSlash,
                );
            } else if pat.matches(&segs, trailing, true) || pat.matches(&segs, !trailing, true) {
                push(
                    &mut out,
                    r,
                    pat.instantiate(&segs),
                    SuggestionReason::LetterCase,
                );
            }
        }
        let mut similar: Vec<(usize, &Route, String)> = Vec::new();
        // A `{*rest}` route would echo the request back as its own "suggestion".
        for r in self
            .for_host(host)
            .filter(|r| !r.builtin && !r.config.pattern.has_rest())
        {
            let candidate = r.config.pattern.instantiate(&segs);
            let d = edit_distance(path, &candidate);
            if d > 0 && d <= 3.max(path.len() / 4) {
                similar.push((d, r, candidate));
            }
        }
        similar.sort_by_key(|(d, _, _)| *d);
        // The three closest paths, each with every route that has it.
        let mut paths: Vec<String> = Vec::new();
        for (_, r, p) in similar {
            if !paths.contains(&p) {
                if paths.len() == 3 {
                    continue;
                }
                paths.push(p.clone());
            }
            push(&mut out, r, p, SuggestionReason::Similar);
        }
        out
    }
}

/// The route stage: finds the route for the request, or refuses it with
/// `method_not_allowed` (naming every method the path accepts) or `route_not_found` (with
/// what the caller probably meant).
///
/// On a 405 the route whose path matched becomes the request's route: its error profile
/// answers, and the request is counted under it.
pub(crate) fn run<'t>(
    table: &'t RouteTable,
    ctx: &mut RequestCtx<'t>,
) -> Result<&'t Route, GatewayError> {
    let found = table.lookup(ctx.host().as_deref(), ctx.path(), &ctx.parts.method);
    match found {
        Ok(route) if route.builtin => {
            let path = ctx.path().to_owned();
            ctx.trail
                .record("route", "gateway_page", None, vec![("path", path)]);
            Ok(route)
        }
        Ok(route) => {
            ctx.trail.record(
                "route",
                "match",
                None,
                vec![("route", route.config.name.clone())],
            );
            Ok(route)
        }
        Err(RouteMiss::MethodNotAllowed { route, allowed }) => {
            let err = method_not_allowed(ctx.path(), &ctx.parts.method, &allowed);
            ctx.trail.record(
                "route",
                "reject",
                Some(codes::METHOD_NOT_ALLOWED),
                vec![("route", route.config.name.clone())],
            );
            ctx.route = Some(route);
            Err(err)
        }
        Err(RouteMiss::NotFound(suggestions)) => {
            let count = suggestions.len();
            let err = not_found(&ctx.parts.method, ctx.path(), suggestions);
            ctx.trail.record(
                "route",
                "reject",
                Some(err.code),
                vec![("suggestions", count.to_string())],
            );
            Err(err)
        }
    }
}

/// `method_not_allowed` for `method` on `path`, which accepts `allowed` (with `Allow`).
pub(crate) fn method_not_allowed<S: AsRef<str>>(
    path: &str,
    method: &Method,
    allowed: &[S],
) -> GatewayError {
    let names: Vec<&str> = allowed.iter().map(AsRef::as_ref).collect();
    let list = names.join(", ");
    GatewayError::new(codes::METHOD_NOT_ALLOWED)
        .param("path", path.to_owned())
        .param("method", method.to_string())
        .param("allowed", list.clone())
        .extension("allowed", names.into())
        .header(ALLOW, &list)
}

/// `route_not_found`, with the suggestions in words and as data.
fn not_found(method: &Method, path: &str, suggestions: Vec<Suggestion>) -> GatewayError {
    let describe = |s: &Suggestion| {
        let why = match s.reason {
            SuggestionReason::TrailingSlash if s.path.ends_with('/') => "with a trailing slash",
            SuggestionReason::TrailingSlash => "without the trailing slash",
            SuggestionReason::LetterCase => "paths are case-sensitive",
            SuggestionReason::Similar => "similar path",
        };
        let methods = if s.methods.is_empty() {
            "any method".to_owned()
        } else if s.accepts_method {
            s.methods.join(", ")
        } else {
            format!("exists for {} only, not {method}", s.methods.join(", "))
        };
        format!("{} ({why}; {methods})", s.path)
    };
    let hint = match suggestions.as_slice() {
        [] => String::new(),
        [one] => format!(" Did you mean {}?", describe(one)),
        [first, second, ..] => {
            format!(" Did you mean {} or {}?", describe(first), describe(second))
        }
    };
    let list: Vec<serde_json::Value> = suggestions
        .iter()
        .map(|s| {
            serde_json::json!({
                "path": s.path,
                "methods": s.methods,
                "reason": s.reason.as_str(),
                "accepts_method": s.accepts_method,
            })
        })
        .collect();
    let err = GatewayError::new(codes::ROUTE_NOT_FOUND)
        .param("method", method.to_string())
        .param("path", path.to_owned())
        .param("hint", hint);
    // What the best suggestion says is wrong (an error profile may answer a path in the
    // wrong letter case in words of its own).
    let err = match suggestions.first() {
        Some(s) => err.param("suggestion_reason", s.reason.as_str()),
        None => err,
    };
    err.extension("suggestions", list.into())
}

/// Splits a normalised path into segments and whether it ends with '/'.
fn split(path: &str) -> (Vec<&str>, bool) {
    let body = path.strip_prefix('/').unwrap_or(path);
    if body.is_empty() {
        return (Vec::new(), false);
    }
    let trailing = body.ends_with('/');
    let body = if trailing {
        &body[..body.len() - 1]
    } else {
        body
    };
    (body.split('/').collect(), trailing)
}

/// Levenshtein distance in characters (route suggestions and the config's did-you-mean).
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_characters() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
    use crate::config::Config;
    use std::path::Path;

    fn table() -> RouteTable {
        let c = Config::parse(
            "t",
            r#"
[[routes]]
path = "/v1/customers/{customer}/devices"
methods = ["GET", "POST"]
upstream = "http://127.0.0.1:1"
[[routes]]
path = "/v1/customers/{customer}/devices/{device}"
methods = ["GET", "DELETE"]
upstream = "http://127.0.0.1:1"
[[routes]]
path = "/static/{*rest}"
upstream = "http://127.0.0.1:1"
[[routes]]
host = "admin.example.com"
path = "/v1/admin"
upstream = "http://127.0.0.1:1"
"#,
            Path::new("."),
        )
        .unwrap();
        RouteTable::new(
            c.routes
                .iter()
                .map(|r| RouteEntry {
                    config: r.clone(),
                    builtin: false,
                })
                .collect(),
        )
    }

    #[test]
    fn matches_params_rest_and_host() {
        let t = table();
        assert!(
            t.lookup(None, "/v1/customers/42/devices", &Method::GET)
                .is_ok()
        );
        assert!(
            t.lookup(None, "/v1/customers/42/devices", &Method::HEAD)
                .is_ok()
        );
        assert!(t.lookup(None, "/static/a/b/c.css", &Method::PUT).is_ok());
        assert!(
            t.lookup(Some("admin.example.com"), "/v1/admin", &Method::GET)
                .is_ok()
        );
        assert!(
            t.lookup(Some("api.example.com"), "/v1/admin", &Method::GET)
                .is_err()
        );
        let r = t
            .lookup(None, "/v1/customers/42/devices/7", &Method::GET)
            .unwrap();
        assert_eq!(
            r.config.pattern.captures("/v1/customers/42/devices/7"),
            vec![("customer", "42"), ("device", "7")]
        );
    }

    #[test]
    fn wrong_method_lists_allowed() {
        let t = table();
        match t.lookup(None, "/v1/customers/42/devices", &Method::PUT) {
            Err(RouteMiss::MethodNotAllowed { allowed, route }) => {
                assert_eq!(allowed, vec!["GET", "POST", "HEAD"]);
                assert_eq!(route.allow.as_ref().unwrap(), "GET, POST, HEAD");
            }
            other => panic!("{other:?}"),
        }
    }

    fn suggestions(path: &str, method: Method) -> Vec<Suggestion> {
        match table().lookup(None, path, &method) {
            Err(RouteMiss::NotFound(s)) => s,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn suggests_trailing_slash_case_and_similar() {
        let s = suggestions("/v1/customers/42/devices/", Method::GET);
        assert_eq!(s[0].path, "/v1/customers/42/devices");
        assert_eq!(s[0].reason, SuggestionReason::TrailingSlash);
        let s = suggestions("/V1/Customers/42/Devices", Method::GET);
        assert_eq!(s[0].path, "/v1/customers/42/devices");
        assert_eq!(s[0].reason, SuggestionReason::LetterCase);
        let s = suggestions("/v1/custmers/42/devices", Method::POST);
        assert_eq!(s[0].path, "/v1/customers/42/devices");
        assert_eq!(s[0].reason, SuggestionReason::Similar);
        assert!(s[0].accepts_method);
        let s = suggestions("/v1/customers/42/device", Method::POST);
        assert_eq!(s[0].path, "/v1/customers/42/devices");
        assert!(suggestions("/completely/unrelated/thing/here", Method::GET).is_empty());
    }

    #[test]
    fn bad_patterns_are_explained() {
        assert!(
            PathPattern::parse("v1")
                .unwrap_err()
                .contains("must start with '/'")
        );
        assert!(
            PathPattern::parse("/a/{*r}/b")
                .unwrap_err()
                .contains("last segment")
        );
        assert!(
            PathPattern::parse("/a/x{id}")
                .unwrap_err()
                .contains("whole segment")
        );
        assert!(PathPattern::parse("/a//b").is_err());
        assert_eq!(
            PathPattern::parse("/a/{b}/").unwrap().to_string(),
            "/a/{b}/"
        );
    }
}
