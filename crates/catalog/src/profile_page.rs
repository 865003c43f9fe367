//! A profile's troubleshooting page, generated from the profile and the catalog: the
//! page an API built on that profile publishes (Markdown, or HTML), with the status / code /
//! type / name / message / description / troubleshooting table in the profile's words, the
//! envelope by example, the header conventions, how field errors are worded, and which
//! catalog codes each row answers (the rest: the fallback's catalog wording).

use crate::page::escape_html;
use crate::profile::{ErrorFacts, ProfileRow};
use crate::{Catalog, FieldError, Profile, codes};

/// One row of the page's table.
struct PageRow {
    cells: Vec<String>,
    checklist: Vec<String>,
    catalog: Vec<String>,
}

/// The table's columns and rows: only the columns some row of the profile fills.
fn table(profile: &Profile, catalog: &Catalog) -> (Vec<&'static str>, Vec<PageRow>) {
    let rows = &profile.rows;
    let has = |f: &dyn Fn(&ProfileRow) -> bool| rows.iter().any(f);
    let code = has(&|r| r.code.is_some());
    let kind = has(&|r| r.kind.is_some());
    let name = has(&|r| r.name.is_some());
    let description = has(&|r| r.description.is_some());
    let explanation = has(&|r| r.explanation.is_some());
    let mut columns = vec!["Status"];
    if code {
        columns.push("Code");
    }
    if kind {
        columns.push("Type");
    }
    if name {
        columns.push("Name");
    }
    // A profile without descriptions says what its message says: that is the description.
    columns.push(if description {
        "Message"
    } else {
        "Description"
    });
    if description {
        columns.push("Description");
    }
    if explanation {
        columns.push("Explanation");
    }
    let mut out: Vec<PageRow> = Vec::new();
    for r in rows {
        let first = r.catalog.first().and_then(|c| catalog.get(c));
        let status = r
            .status
            .or(first.map(|e| e.status))
            .map_or(String::new(), |s| s.to_string());
        let mut cells = vec![status.clone()];
        if code {
            cells.push(r.code.as_ref().map_or(String::new(), |c| {
                let t = c.text();
                if t == "{status}" { status.clone() } else { t }
            }));
        }
        if kind {
            cells.push(r.kind.clone().unwrap_or_default());
        }
        if name {
            cells.push(r.name.clone().unwrap_or_default());
        }
        let message = r.message.as_ref().map_or_else(
            || first.map_or(String::new(), |e| e.message.source().to_owned()),
            |m| m.source().to_owned(),
        );
        let message = if message == "{detail}" {
            first.map_or(message, |e| e.message.source().to_owned())
        } else {
            message
        };
        cells.push(message);
        if description {
            cells.push(r.description.clone().unwrap_or_default());
        }
        if explanation {
            cells.push(
                r.explanation
                    .clone()
                    .or(first.map(|e| e.explanation.clone()))
                    .unwrap_or_default(),
            );
        }
        let checklist = if r.checklist.is_empty() {
            first.map(|e| e.checklist.clone()).unwrap_or_default()
        } else {
            r.checklist.clone()
        };
        // Rows that read the same (one error answered under several conditions) are one.
        if let Some(same) = out.iter_mut().find(|o| o.cells == cells) {
            for c in &r.catalog {
                if !same.catalog.contains(c) {
                    same.catalog.push(c.clone());
                }
            }
            continue;
        }
        out.push(PageRow {
            cells,
            checklist,
            catalog: r.catalog.clone(),
        });
    }
    (columns, out)
}

/// The catalog codes no row answers unconditionally: the fallback's.
fn fallback_codes<'c>(profile: &Profile, catalog: &'c Catalog) -> Vec<&'c crate::Entry> {
    catalog
        .entries()
        .iter()
        .filter(|e| {
            !profile
                .rows
                .iter()
                .any(|r| r.when.is_empty() && r.catalog.contains(&e.code))
        })
        .collect()
}

/// An example body: a `validation_failed` with one field error, through the profile.
fn example(profile: &Profile, catalog: &Catalog) -> String {
    let entry = catalog
        .get(codes::VALIDATION_FAILED)
        .expect("validation_failed is a built-in code");
    let fields = [FieldError {
        location: "body".into(),
        pointer: "#/serial".into(),
        name: "serial".into(),
        reason: "format".into(),
        detail: "must be 4 to 32 characters A-Z, 0-9 or '-'".into(),
    }];
    let detail = "The request has 1 problem: serial must be 4 to 32 characters A-Z, 0-9 or '-'.";
    let out = profile.render(&ErrorFacts {
        params: &[("count", "1")],
        fields: &fields,
        base_url: "https://api.example.com",
        ..ErrorFacts::new(entry, detail, "/v1/devices", "01JEXAMPLE0000000000000000")
    });
    serde_json::from_str::<serde_json::Value>(&out.body)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or(out.body)
}

fn headers(profile: &Profile) -> Vec<String> {
    let h = &profile.headers;
    vec![
        format!(
            "Every error carries its request id in `{}`; quote it when you report a problem.",
            h.request_id.as_deref().unwrap_or("X-Request-Id")
        ),
        format!(
            "A 401 answer names how to authenticate: `WWW-Authenticate: {}`.",
            h.www_authenticate
                .as_deref()
                .unwrap_or("Bearer realm=\"candor\"")
        ),
        if h.retry_after {
            "An answer you may retry later (429, 503) says when in `Retry-After` (seconds).".into()
        } else {
            "Answers carry no `Retry-After`; retry with an exponential back-off.".into()
        },
        format!("Error bodies are `{}`.", profile.content_type),
    ]
}

/// The page in Markdown.
pub fn markdown(profile: &Profile, catalog: &Catalog) -> String {
    let mut s = format!("# {}: troubleshooting errors\n\n", profile.title);
    if !profile.description.is_empty() {
        s.push_str(&format!("{}\n\n", profile.description));
    }
    s.push_str("## Error format\n\n");
    if profile.is_problem() {
        s.push_str("Errors are RFC 9457 problem details (`application/problem+json`).\n\n");
    }
    s.push_str(&format!("```json\n{}\n```\n\n", example(profile, catalog)));
    s.push_str("## Headers\n\n");
    for h in headers(profile) {
        s.push_str(&format!("- {h}\n"));
    }
    s.push('\n');
    let cell = |t: &str| t.replace('|', "\\|").replace('\n', " ");
    let (columns, rows) = table(profile, catalog);
    if !rows.is_empty() {
        s.push_str("## Errors\n\n| ");
        s.push_str(&columns.join(" | "));
        s.push_str(" | Troubleshooting | candor codes |\n|");
        for _ in 0..columns.len() + 2 {
            s.push_str("---|");
        }
        s.push('\n');
        for r in &rows {
            s.push_str("| ");
            for c in &r.cells {
                s.push_str(&cell(c));
                s.push_str(" | ");
            }
            let steps: Vec<String> = r
                .checklist
                .iter()
                .map(|c| format!("- {}", cell(c)))
                .collect();
            s.push_str(&steps.join("<br>"));
            s.push_str(" | ");
            let codes: Vec<String> = r.catalog.iter().map(|c| format!("`{c}`")).collect();
            s.push_str(&codes.join(", "));
            s.push_str(" |\n");
        }
        s.push('\n');
    }
    if !profile.field_messages().is_empty() {
        s.push_str("## Field errors\n\n| Where | Reason | Message |\n|---|---|---|\n");
        for (location, reason, message) in profile.field_messages() {
            s.push_str(&format!(
                "| {} | {} | {} |\n",
                location.unwrap_or("any"),
                reason.unwrap_or("any"),
                cell(message)
            ));
        }
        s.push('\n');
    }
    let others = fallback_codes(profile, catalog);
    if !others.is_empty() {
        s.push_str(if profile.is_problem() {
            "## Errors\n\n"
        } else {
            "## Other errors\n\nThese answer with the gateway catalog's status and message.\n\n"
        });
        s.push_str("| Status | candor code | Title | What to check |\n|---|---|---|---|\n");
        for e in others {
            let steps: Vec<String> = e
                .checklist
                .iter()
                .map(|c| format!("- {}", cell(c)))
                .collect();
            s.push_str(&format!(
                "| {} | `{}` | {} | {} |\n",
                e.status,
                e.code,
                cell(&e.title),
                steps.join("<br>")
            ));
        }
    }
    s
}

/// The page as a standalone HTML document.
pub fn html(profile: &Profile, catalog: &Catalog) -> String {
    let mut s = format!(
        "<!doctype html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>{}: troubleshooting errors</title></head>\n<body>\n",
        escape_html(&profile.title)
    );
    s.push_str(&html_body(profile, catalog, &|_| None));
    s.push_str("</body>\n</html>\n");
    s
}

/// The page's content in HTML, from its `<h1>` on; `code_link` gives the link of a catalog
/// code's page, if it has one (the troubleshooting site's pages link each code).
pub fn html_body(
    profile: &Profile,
    catalog: &Catalog,
    code_link: &dyn Fn(&str) -> Option<String>,
) -> String {
    let e = escape_html;
    let code = |c: &str| match code_link(c) {
        Some(href) => format!("<a href=\"{}\"><code>{}</code></a>", e(&href), e(c)),
        None => format!("<code>{}</code>", e(c)),
    };
    let mut s = format!(
        "<h1>{t}: troubleshooting errors</h1>\n",
        t = e(&profile.title)
    );
    if !profile.description.is_empty() {
        s.push_str(&format!("<p>{}</p>\n", e(&profile.description)));
    }
    s.push_str(&format!(
        "<h2>Error format</h2>\n<pre><code>{}</code></pre>\n<h2>Headers</h2>\n<ul>\n",
        e(&example(profile, catalog))
    ));
    for h in headers(profile) {
        s.push_str(&format!("<li>{}</li>\n", e(&h)));
    }
    s.push_str("</ul>\n");
    let (columns, rows) = table(profile, catalog);
    if !rows.is_empty() {
        s.push_str("<h2>Errors</h2>\n<table>\n<tr>");
        for c in columns.iter().chain(&["Troubleshooting", "candor codes"]) {
            s.push_str(&format!("<th>{}</th>", e(c)));
        }
        s.push_str("</tr>\n");
        for r in &rows {
            s.push_str("<tr>");
            for c in &r.cells {
                s.push_str(&format!("<td>{}</td>", e(c)));
            }
            s.push_str("<td><ul>");
            for c in &r.checklist {
                s.push_str(&format!("<li>{}</li>", e(c)));
            }
            s.push_str("</ul></td><td>");
            let codes: Vec<String> = r.catalog.iter().map(|c| code(c)).collect();
            s.push_str(&codes.join(", "));
            s.push_str("</td></tr>\n");
        }
        s.push_str("</table>\n");
    }
    if !profile.field_messages().is_empty() {
        s.push_str("<h2>Field errors</h2>\n<table>\n<tr><th>Where</th><th>Reason</th><th>Message</th></tr>\n");
        for (location, reason, message) in profile.field_messages() {
            s.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                e(location.unwrap_or("any")),
                e(reason.unwrap_or("any")),
                e(message)
            ));
        }
        s.push_str("</table>\n");
    }
    let others = fallback_codes(profile, catalog);
    if !others.is_empty() {
        s.push_str(if profile.is_problem() {
            "<h2>Errors</h2>\n"
        } else {
            "<h2>Other errors</h2>\n<p>These answer with the gateway catalog's status and message.</p>\n"
        });
        s.push_str("<table>\n<tr><th>Status</th><th>candor code</th><th>Title</th><th>What to check</th></tr>\n");
        for entry in others {
            s.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td><ul>",
                entry.status,
                code(&entry.code),
                e(&entry.title)
            ));
            for c in &entry.checklist {
                s.push_str(&format!("<li>{}</li>", e(c)));
            }
            s.push_str("</ul></td></tr>\n");
        }
        s.push_str("</table>\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_has_the_rows_the_example_and_the_rest() {
        let catalog = Catalog::builtin();
        let md = markdown(Profile::builtin("pelion").unwrap(), catalog);
        assert!(md.starts_with("# Pelion Device Management API: troubleshooting errors"));
        assert!(
            md.contains("| Status | Type | Description | Troubleshooting | candor codes |"),
            "{md}"
        );
        assert!(md.contains("| 409 | duplicate | The request would create a duplicate entity. | - This name is already in use."), "{md}");
        assert!(md.contains("\"object\": \"error\""), "{md}");
        assert!(md.contains("| 504 | `upstream_timeout` |"), "{md}");
        let html = html(Profile::builtin("ixon").unwrap(), catalog);
        assert!(html.contains("<td>Value is too short</td>"), "{html}");
        assert!(
            html.contains("<td>header</td><td>required</td><td>Required header</td>"),
            "{html}"
        );
        // Identical rows (one error under two conditions) are one row.
        assert_eq!(html.matches("<td>Authorization must start with a type and have a credentials</td><td>Authorization must start").count(), 1);
    }
}
