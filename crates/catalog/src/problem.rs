//! RFC 9457 problem details, rendered from a catalog entry.

use crate::Entry;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

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
#[derive(Clone, Debug, Serialize)]
pub struct Problem<'a> {
    #[serde(rename = "type")]
    type_url: String,
    title: &'a str,
    status: u16,
    detail: &'a str,
    instance: &'a str,
    code: &'a str,
    request_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_id: Option<&'a str>,
    retry: &'static str,
    errors: Vec<FieldError>,
    #[serde(flatten)]
    extensions: Map<String, Value>,
}

impl<'a> Problem<'a> {
    /// A problem for `entry` whose `type` URL is `{base_url}/errors/{code}`.
    pub fn new(
        entry: &'a Entry,
        base_url: &str,
        detail: &'a str,
        instance: &'a str,
        request_id: &'a str,
    ) -> Self {
        Problem {
            type_url: format!("{}/errors/{}", base_url.trim_end_matches('/'), entry.code),
            title: &entry.title,
            status: entry.status,
            detail,
            instance,
            code: &entry.code,
            request_id,
            trace_id: None,
            retry: entry.retry.as_str(),
            errors: Vec::new(),
            extensions: Map::new(),
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
    pub fn errors(mut self, mut errors: Vec<FieldError>) -> Self {
        // JSON Pointer for bodies and `name` for the rest, whoever raised the problem.
        for e in &mut errors {
            if e.location != "body" {
                e.pointer.clear();
            }
        }
        self.errors = errors;
        self
    }

    /// Adds an extension member. Members that would shadow a standard one are ignored.
    pub fn extension(mut self, name: &str, value: Value) -> Self {
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
        if !RESERVED.contains(&name) {
            self.extensions.insert(name.to_owned(), value);
        }
        self
    }

    /// The body as JSON text. Always valid JSON: every value goes through the serializer.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| {
            // Serializing strings, numbers and `Value`s cannot fail; keep a valid body anyway.
            r#"{"title":"Internal error","status":500,"code":"internal_error"}"#.to_owned()
        })
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
