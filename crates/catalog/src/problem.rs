//! RFC 9457 problem details, rendered from a catalog entry.

use crate::Entry;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::borrow::Cow;

/// One field problem, reported in `errors[]`. All of a request's problems are listed,
/// not only the first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldError {
    /// Where the field is: `body`, `query`, `path` or `header`.
    #[serde(rename = "in")]
    pub location: String,
    /// JSON pointer into the body (`#/email`). Only body problems have one: a problem of
    /// a path, query or header parameter is named by `name` alone (a pointer set on one is
    /// not rendered).
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub pointer: String,
    /// The field's name.
    pub name: String,
    /// A stable reason word: `required`, `blank`, `type`, `format`, `enum`, `length`...
    pub reason: String,
    /// What is wrong and what is expected, in words.
    pub detail: String,
}

/// One error response body: an entry plus the facts of this request.
#[derive(Clone, Debug)]
pub struct Problem<'a> {
    base_url: &'a str,
    title: &'a str,
    status: u16,
    detail: &'a str,
    instance: &'a str,
    code: &'a str,
    request_id: &'a str,
    trace_id: Option<&'a str>,
    retry: &'static str,
    errors: Cow<'a, [FieldError]>,
    /// In the order added; a name added again keeps its place and takes the new value.
    extensions: Vec<(Cow<'a, str>, Cow<'a, Value>)>,
}

/// Members an extension may not shadow.
const RESERVED: &[&str] = &[
    "type",
    "title",
    "status",
    "detail",
    "instance",
    "code",
    "request_id",
    "trace_id",
    "retry",
    "errors",
];

impl<'a> Problem<'a> {
    /// A problem for `entry` whose `type` URL is `{base_url}/errors/{code}`.
    pub fn new(
        entry: &'a Entry,
        base_url: &'a str,
        detail: &'a str,
        instance: &'a str,
        request_id: &'a str,
    ) -> Self {
        Problem {
            base_url: base_url.trim_end_matches('/'),
            title: &entry.title,
            status: entry.status,
            detail,
            instance,
            code: &entry.code,
            request_id,
            trace_id: None,
            retry: entry.retry.as_str(),
            errors: Cow::Borrowed(&[]),
            extensions: Vec::new(),
        }
    }

    /// Overrides the status (the entry's status is the default).
    pub fn status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// The W3C trace id of the request (32 lower-case hex digits), shown after
    /// `request_id`; absent when the request had no trace (refused before its head was
    /// parsed).
    pub fn trace_id(mut self, trace_id: Option<&'a str>) -> Self {
        self.trace_id = trace_id;
        self
    }

    /// Overrides the retry class (the entry's is the default).
    pub fn retry(mut self, retry: crate::Retry) -> Self {
        self.retry = retry.as_str();
        self
    }

    /// The field problems.
    pub fn errors(self, errors: Vec<FieldError>) -> Self {
        self.errors_of(Cow::Owned(errors))
    }

    /// The field problems, borrowed when none needs its pointer taken away.
    pub fn errors_of(mut self, mut errors: Cow<'a, [FieldError]>) -> Self {
        // JSON Pointer for bodies and `name` for the rest, whoever raised the problem.
        if errors
            .iter()
            .any(|e| e.location != "body" && !e.pointer.is_empty())
        {
            for e in errors.to_mut() {
                if e.location != "body" {
                    e.pointer.clear();
                }
            }
        }
        self.errors = errors;
        self
    }

    /// Adds an extension member. Members that would shadow a standard one are ignored.
    pub fn extension(self, name: &str, value: Value) -> Self {
        self.add(Cow::Owned(name.to_owned()), Cow::Owned(value))
    }

    /// Adds an extension member borrowed for the body's making (as
    /// [`Problem::extension`]).
    pub fn extension_ref(self, name: &'a str, value: &'a Value) -> Self {
        self.add(Cow::Borrowed(name), Cow::Borrowed(value))
    }

    fn add(mut self, name: Cow<'a, str>, value: Cow<'a, Value>) -> Self {
        if RESERVED.contains(&&*name) {
            return self;
        }
        match self.extensions.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => *v = value,
            None => self.extensions.push((name, value)),
        }
        self
    }

    /// The body as JSON text. Always valid JSON: every value goes through the serializer.
    pub fn to_json(&self) -> String {
        let mut out = Vec::with_capacity(512);
        match serde_json::to_writer(&mut out, self) {
            // serde_json writes UTF-8.
            Ok(()) => String::from_utf8(out).unwrap_or_default(),
            // Serializing strings, numbers and `Value`s cannot fail; keep a valid body anyway.
            Err(_) => {
                r#"{"title":"Internal error","status":500,"code":"internal_error"}"#.to_owned()
            }
        }
    }
}

impl Serialize for Problem<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry(
            "type",
            &format_args!("{}/errors/{}", self.base_url, self.code),
        )?;
        m.serialize_entry("title", self.title)?;
        m.serialize_entry("status", &self.status)?;
        m.serialize_entry("detail", self.detail)?;
        m.serialize_entry("instance", self.instance)?;
        m.serialize_entry("code", self.code)?;
        m.serialize_entry("request_id", self.request_id)?;
        if let Some(t) = self.trace_id {
            m.serialize_entry("trace_id", t)?;
        }
        m.serialize_entry("retry", self.retry)?;
        m.serialize_entry("errors", &*self.errors)?;
        for (k, v) in &self.extensions {
            m.serialize_entry(&**k, &**v)?;
        }
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Catalog, codes};

    #[test]
    fn renders_the_envelope_in_order_with_extensions() {
        let entry = Catalog::builtin().get(codes::METHOD_NOT_ALLOWED).unwrap();
        let json = Problem::new(entry, "https://api.example.com/", "d \"q\"", "/v1", "01J")
            .extension("allowed", serde_json::json!(["GET"]))
            .extension("status", serde_json::json!(1))
            .to_json();
        assert_eq!(
            json,
            r#"{"type":"https://api.example.com/errors/method_not_allowed","title":"Method not allowed for this path","status":405,"detail":"d \"q\"","instance":"/v1","code":"method_not_allowed","request_id":"01J","retry":"never","errors":[],"allowed":["GET"]}"#
        );
    }

    #[test]
    fn an_extension_added_again_keeps_its_place_and_takes_the_new_value() {
        let entry = Catalog::builtin().get(codes::RATE_LIMITED).unwrap();
        let policies = serde_json::json!(["burst"]);
        let fields = [FieldError {
            location: "query".into(),
            pointer: "#/limit".into(),
            name: "limit".into(),
            reason: "type".into(),
            detail: "d".into(),
        }];
        let json = Problem::new(entry, "http://x/", "d", "/v1", "01J")
            .errors_of(Cow::Borrowed(&fields))
            .extension("limit", serde_json::json!(1))
            .extension_ref("violated-policies", &policies)
            .extension("limit", serde_json::json!(2))
            .to_json();
        assert!(
            json.starts_with(r#"{"type":"http://x/errors/rate_limited","#),
            "{json}"
        );
        assert!(
            json.ends_with(
                r#""errors":[{"in":"query","name":"limit","reason":"type","detail":"d"}],"limit":2,"violated-policies":["burst"]}"#
            ),
            "a pointer only for bodies: {json}"
        );
        assert_eq!(
            fields[0].pointer, "#/limit",
            "the caller's fields are left as they are"
        );
    }

    #[test]
    fn the_trace_id_follows_the_request_id() {
        let entry = Catalog::builtin().get(codes::ROUTE_NOT_FOUND).unwrap();
        let json = Problem::new(entry, "http://x", "d", "/v1", "01J")
            .trace_id(Some("4bf92f3577b34da6a3ce929d0e0e4736"))
            .extension("trace_id", serde_json::json!("shadow"))
            .to_json();
        assert!(
            json.contains(
                r#""request_id":"01J","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","retry""#
            ),
            "{json}"
        );
        assert!(!json.contains("shadow"), "{json}");
    }
}
