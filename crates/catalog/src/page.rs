//! An entry as JSON for programs, and HTML escaping; the pages for people are in
//! [`crate::site`].

use crate::Entry;
use serde_json::json;

/// Escapes text for HTML element content and attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// The entry as a JSON document (what `/errors/{code}` returns to non-browsers).
pub fn entry_json(entry: &Entry) -> serde_json::Value {
    json!({
        "code": entry.code,
        "status": entry.status,
        "type": entry.kind,
        "title": entry.title,
        "message": entry.message.source(),
        "explanation": entry.explanation,
        "checklist": entry.checklist,
        "retry": entry.retry.as_str(),
        "related": entry.related,
        "stage": entry.stage,
        "headers": entry.headers,
        "config": entry.config,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Catalog, codes};

    #[test]
    fn json_has_the_docs_fields_and_html_escapes() {
        let e = Catalog::builtin().get(codes::METHOD_NOT_ALLOWED).unwrap();
        let v = entry_json(e);
        assert_eq!(v["stage"], "route");
        assert_eq!(v["headers"], serde_json::json!(["Allow"]));
        assert_eq!(v["config"], serde_json::json!(["routes.methods"]));
        assert_eq!(
            escape_html("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
