//! An entry as a troubleshooting page: HTML for people, JSON for programs.

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
    })
}

/// The entry as a standalone HTML page; related codes link to their own pages under
/// `base_url/errors/`.
pub fn entry_html(entry: &Entry, base_url: &str) -> String {
    let base = base_url.trim_end_matches('/');
    let mut steps = String::new();
    for s in &entry.checklist {
        steps.push_str(&format!("<li>{}</li>\n", escape_html(s)));
    }
    let mut related = String::new();
    for r in &entry.related {
        related.push_str(&format!(
            "<li><a href=\"{base}/errors/{r}\"><code>{r}</code></a></li>\n",
            base = escape_html(base),
            r = escape_html(r)
        ));
    }
    let related = if related.is_empty() {
        String::new()
    } else {
        format!("<h2>Related</h2>\n<ul>\n{related}</ul>\n")
    };
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>{code} — {title}</title></head>\n<body>\n\
<h1><code>{code}</code> — {title}</h1>\n<p>HTTP status {status}, type <code>{kind}</code>, retry: <code>{retry}</code></p>\n\
<p>{explanation}</p>\n<h2>What to check</h2>\n<ol>\n{steps}</ol>\n{related}</body>\n</html>\n",
        code = escape_html(&entry.code),
        title = escape_html(&entry.title),
        status = entry.status,
        kind = escape_html(&entry.kind),
        retry = entry.retry.as_str(),
        explanation = escape_html(&entry.explanation),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Catalog, codes};

    #[test]
    fn html_page_has_checklist_and_escapes() {
        let e = Catalog::builtin().get(codes::ROUTE_NOT_FOUND).unwrap();
        let html = entry_html(e, "http://h/");
        assert!(html.contains("<ol>\n<li>Compare the path"));
        assert!(html.contains("href=\"http://h/errors/method_not_allowed\""));
        assert_eq!(
            escape_html("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
