//! The troubleshooting site: an index of every code (grouped by pipeline stage and by
//! status, with a client-side search) and one page per code, generated from the catalog.
//! The gateway serves it under `/errors/`; `candor docs build` writes it to a folder. No
//! I/O here: every function returns text.
//!
//! The pages load nothing from elsewhere: one stylesheet ([`STYLE_CSS`]) and one script
//! ([`SEARCH_JS`]) next to them, and the search index embedded in the index page as a JSON
//! data block, so [`CONTENT_SECURITY_POLICY`] can allow `'self'` only.
//!
//! ```
//! use candor_catalog::{Catalog, site::{self, Links}};
//! let catalog = Catalog::builtin();
//! let entry = catalog.get("rate_limited").unwrap();
//! let page = site::entry_page(catalog, entry, "https://api.example.com", Links::Served, &[]);
//! assert!(page.contains("Retry-After"));
//! ```

use crate::page::escape_html;
use crate::profile::ErrorFacts;
use crate::{Catalog, Entry, Problem, Profile, Retry};
use serde_json::{Value, json};
use std::fmt::Write;

/// The site's stylesheet (light and dark, responsive).
pub const STYLE_CSS: &str = include_str!("site/style.css");
/// The index page's search script.
pub const SEARCH_JS: &str = include_str!("site/search.js");
/// The stylesheet's file name, next to the pages.
pub const STYLE_FILE: &str = "site.css";
/// The script's file name, next to the pages.
pub const SCRIPT_FILE: &str = "search.js";
/// The site's icon (SVG).
pub const FAVICON_SVG: &str = include_str!("site/favicon.svg");
/// The icon's file name, next to the pages.
pub const FAVICON_FILE: &str = "favicon.svg";
/// The search index's file name (the same JSON the index page embeds), for programs.
pub const INDEX_FILE: &str = "search-index.json";
/// The Content-Security-Policy the pages are served with: their own stylesheet and script,
/// nothing else, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// How the pages link to each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Links {
    /// Served by the gateway: the index at `/errors/`, a code at `/errors/{code}`.
    Served,
    /// Files in one folder: `index.html`, `{code}.html`.
    Files,
    /// The index served one level above `/errors/` (the admin listener's `/catalog`): the
    /// links lead into `errors/`.
    Parent,
}

impl Links {
    /// The relative link to `code`'s page from any page of the site.
    pub fn code(self, code: &str) -> String {
        match self {
            Links::Served => code.to_owned(),
            Links::Files => format!("{code}.html"),
            Links::Parent => format!("errors/{code}"),
        }
    }

    /// The relative link to the page of error profile `name` (the error format of an API
    /// that answers in it), beside the codes' pages.
    pub fn profile(self, name: &str) -> String {
        match self {
            Links::Served => format!("profile-{name}"),
            Links::Files => format!("profile-{name}.html"),
            Links::Parent => format!("errors/profile-{name}"),
        }
    }

    /// The relative link to the index from any page of the site.
    pub fn index(self) -> &'static str {
        match self {
            Links::Served => "./",
            Links::Files => "index.html",
            Links::Parent => "errors/",
        }
    }

    /// The relative link to an asset ([`STYLE_FILE`], [`SCRIPT_FILE`]).
    pub fn asset(self, file: &str) -> String {
        match self {
            Links::Served | Links::Files => file.to_owned(),
            Links::Parent => format!("errors/{file}"),
        }
    }
}

/// The files of the static site, `(file name, contents)`: `index.html`, one `{code}.html`
/// per entry (with an example answer in each of `profiles`, the default one when empty),
/// one `profile-{name}.html` per profile of `profiles` other than the default, the
/// stylesheet, the script, the icon and the search index.
pub fn files(catalog: &Catalog, base_url: &str, profiles: &[&Profile]) -> Vec<(String, String)> {
    let mut out = vec![
        (
            "index.html".to_owned(),
            index_page_with_profiles(catalog, Links::Files, profiles),
        ),
        (STYLE_FILE.to_owned(), STYLE_CSS.to_owned()),
        (SCRIPT_FILE.to_owned(), SEARCH_JS.to_owned()),
        (FAVICON_FILE.to_owned(), FAVICON_SVG.to_owned()),
        (INDEX_FILE.to_owned(), search_index(catalog, Links::Files)),
    ];
    for e in catalog.entries() {
        out.push((
            format!("{}.html", e.code),
            entry_page(catalog, e, base_url, Links::Files, profiles),
        ));
    }
    for p in profiles.iter().filter(|p| !p.is_problem()) {
        out.push((
            Links::Files.profile(&p.name),
            profile_page(catalog, p, Links::Files),
        ));
    }
    out
}

/// The page of error profile `profile` in the site: its error format, header conventions and
/// table of errors ([`crate::profile_page`]), each catalog code linked to its page.
pub fn profile_page(catalog: &Catalog, profile: &Profile, links: Links) -> String {
    let title = format!("{}: troubleshooting errors", profile.title);
    let mut html = head(
        &title,
        &format!(
            "The errors of {} as its clients see them, and what to do about each.",
            profile.title
        ),
        links,
    );
    let _ = write!(
        html,
        "<body>\n<main>\n<nav aria-label=\"Breadcrumb\"><a href=\"{}\">All error codes</a></nav>\n{}</main>\n{FOOTER}</body>\n</html>\n",
        escape_html(links.index()),
        crate::profile_page::html_body(profile, catalog, &|code| {
            catalog.get(code).map(|_| links.code(code))
        }),
    );
    html
}

/// The search index: one object per code (code, title, status, stage, retry, explanation,
/// href), as JSON text.
pub fn search_index(catalog: &Catalog, links: Links) -> String {
    let list: Vec<Value> = catalog
        .entries()
        .iter()
        .map(|e| {
            json!({
                "code": e.code,
                "title": e.title,
                "status": e.status,
                "stage": catalog.stage(&e.stage).map_or(e.stage.as_str(), |s| s.title.as_str()),
                "retry": e.retry.as_str(),
                "explanation": e.explanation,
                "href": links.code(&e.code),
            })
        })
        .collect();
    Value::from(list).to_string()
}

/// Catalog prose as HTML: escaped, with `backticked` spans as code.
fn prose(text: &str) -> String {
    let parts: Vec<&str> = text.split('`').collect();
    if parts.len().is_multiple_of(2) {
        // An unpaired backtick: keep the text as it is.
        return escape_html(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for (i, part) in parts.iter().enumerate() {
        if i % 2 == 1 {
            out.push_str("<code>");
            out.push_str(&escape_html(part));
            out.push_str("</code>");
        } else {
            out.push_str(&escape_html(part));
        }
    }
    out
}

/// JSON text made safe inside a `<script>` data block: no `<`, `>` or `&` that could end
/// the element (JSON strings accept their `\u` escapes).
fn script_safe(json: &str) -> String {
    json.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

fn head(title: &str, description: &str, links: Links) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
<meta name=\"color-scheme\" content=\"light dark\">\n\
<meta name=\"description\" content=\"{description}\">\n\
<title>{title}</title>\n<link rel=\"stylesheet\" href=\"{style}\">\n\
<link rel=\"icon\" type=\"image/svg+xml\" href=\"{icon}\">\n</head>\n",
        title = escape_html(title),
        description = escape_html(description),
        style = escape_html(&links.asset(STYLE_FILE)),
        icon = escape_html(&links.asset(FAVICON_FILE)),
    )
}

const FOOTER: &str = "<footer class=\"site\"><p>Generated by candor from its error catalog. Every error answer's <code>type</code> URL leads to its page here.</p></footer>\n";

/// The reason phrase of an error status (RFC 9110), empty for one it does not name.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        423 => "Locked",
        424 => "Failed Dependency",
        425 => "Too Early",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        507 => "Insufficient Storage",
        508 => "Loop Detected",
        511 => "Network Authentication Required",
        _ => "",
    }
}

/// What a client should do about retrying, for each retry class.
pub fn retry_guidance(retry: Retry) -> &'static str {
    match retry {
        Retry::Never => {
            "Do not retry the same request: it fails the same way until the request, the credentials or the configuration change. Work through the checklist first, then send a corrected request."
        }
        Retry::AfterDelay => {
            "Retry, but not before the delay in the Retry-After header (in seconds) has passed. Retrying sooner is refused again. If the answer has no Retry-After, wait with exponential back-off."
        }
        Retry::WithBackoff => {
            "This is transient: retry with exponential back-off and random jitter (for example about 0.5 s, 1 s, 2 s, 4 s), a few times at most, and only requests that are safe to repeat."
        }
        Retry::AfterReauth => {
            "Obtain a new credential first (for example a new access token from the token endpoint), then retry once with it. Retrying with the same credential fails again."
        }
    }
}

/// The example request id and trace id of example responses.
const EXAMPLE_REQUEST_ID: &str = "01JHKZ7Q8W3X5V2N4M6P0R9T1S";
const EXAMPLE_TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// An example answer for `entry` in `profile` (`None`: the default, RFC 9457
/// `application/problem+json`), as the gateway sends it: the status line, the headers and
/// the body, which the real renderers ([`Problem`], [`Profile::render`]) make from the
/// entry's message and its example values, with the profile's header conventions.
pub fn example_response(
    catalog: &Catalog,
    entry: &Entry,
    base_url: &str,
    profile: Option<&Profile>,
) -> String {
    let params: Vec<(&str, &str)> = entry
        .example
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let detail = entry.message.render(&params);
    let value = |name: &str| {
        entry
            .example
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let instance = value("path")
        .filter(|p| p.starts_with('/'))
        .unwrap_or("/v1/devices");
    let profile = profile.filter(|p| !p.is_problem());
    let (status, body, content_type, id_header) = match profile {
        None => (
            entry.status,
            Problem::new(entry, base_url, &detail, instance, EXAMPLE_REQUEST_ID)
                .trace_id(Some(EXAMPLE_TRACE_ID))
                .errors(entry.example_errors.clone())
                .to_json(),
            "application/problem+json",
            "x-request-id".to_owned(),
        ),
        Some(p) => {
            let out = p.render(&ErrorFacts {
                entry,
                params: &params,
                detail: &detail,
                status: entry.status,
                fields: &entry.example_errors,
                instance,
                request_id: EXAMPLE_REQUEST_ID,
                trace_id: Some(EXAMPLE_TRACE_ID),
                base_url,
                retry: entry.retry,
            });
            (
                out.status,
                out.body,
                p.content_type.as_str(),
                p.headers
                    .request_id
                    .as_deref()
                    .unwrap_or("x-request-id")
                    .to_ascii_lowercase(),
            )
        }
    };
    let body = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or(body);
    let mut out = format!(
        "HTTP/1.1 {status} {}\ncontent-type: {content_type}\ncache-control: no-store\n{id_header}: {EXAMPLE_REQUEST_ID}\n",
        reason_phrase(status)
    );
    let mut challenged = false;
    for h in &entry.headers {
        let lower = h.to_ascii_lowercase();
        // A profile's conventions, as the gateway applies them: its own challenge on a
        // 401, and Retry-After only where the profile sends it.
        if let Some(p) = profile {
            if lower == "www-authenticate"
                && (p.headers.www_authenticate.is_some() || status != 401)
            {
                continue;
            }
            if lower == "retry-after" && !p.headers.retry_after {
                continue;
            }
        }
        challenged |= lower == "www-authenticate";
        let example = match (lower.as_str(), value("retry_after")) {
            ("retry-after", Some(v)) => v.to_owned(),
            _ => catalog
                .header(h)
                .map(|d| d.example.clone())
                .unwrap_or_default(),
        };
        let _ = writeln!(out, "{lower}: {example}");
    }
    if let Some(p) = profile
        && status == 401
        && !challenged
    {
        let challenge = p
            .headers
            .www_authenticate
            .as_deref()
            .unwrap_or("Bearer realm=\"candor\"");
        let _ = writeln!(out, "www-authenticate: {challenge}");
    }
    out.push('\n');
    out.push_str(&body);
    out.push('\n');
    out
}

/// One code's page: what it means, what to check, retrying, its headers, an example
/// answer in each of `profiles` (the profiles in use; the default one when empty), related
/// codes and the configuration that makes it appear.
pub fn entry_page(
    catalog: &Catalog,
    entry: &Entry,
    base_url: &str,
    links: Links,
    profiles: &[&Profile],
) -> String {
    let e = escape_html;
    let stage = catalog.stage(&entry.stage);
    let stage_title = stage.map_or(entry.stage.as_str(), |s| s.title.as_str());
    let mut html = head(
        &format!("{} — {}", entry.code, entry.title),
        &format!("{}: {}", entry.code, entry.title),
        links,
    );
    let _ = write!(
        html,
        "<body>\n<header class=\"site\"><a href=\"{index}\">All error codes</a></header>\n<main>\n\
<h1><code>{code}</code> — {title}</h1>\n<ul class=\"facts\" aria-label=\"Facts\">\
<li>HTTP {status} {reason}</li><li>type <code>{kind}</code></li><li>stage: {stage}</li><li>retry: <code>{retry}</code></li></ul>\n\
<p>{explanation}</p>\n",
        index = links.index(),
        code = e(&entry.code),
        title = e(&entry.title),
        status = entry.status,
        reason = reason_phrase(entry.status),
        kind = e(&entry.kind),
        stage = e(stage_title),
        retry = entry.retry.as_str(),
        explanation = prose(&entry.explanation),
    );
    html.push_str("<h2>What to check</h2>\n<ol>\n");
    for step in &entry.checklist {
        let _ = writeln!(html, "<li>{}</li>", prose(step));
    }
    html.push_str("</ol>\n<h2>Retrying</h2>\n");
    let _ = writeln!(
        html,
        "<p class=\"retry\"><strong>Retry class <code>{}</code>.</strong> {}</p>",
        entry.retry.as_str(),
        e(retry_guidance(entry.retry))
    );
    html.push_str("<h2>Headers that come with it</h2>\n");
    if entry.headers.is_empty() {
        html.push_str("<p>None beyond those of every error answer: <code>Content-Type: application/problem+json</code>, <code>Cache-Control: no-store</code> and <code>X-Request-Id</code>.</p>\n");
    } else {
        html.push_str("<dl class=\"headers\">\n");
        for h in &entry.headers {
            let about = catalog.header(h).map_or("", |d| d.about.as_str());
            let _ = writeln!(html, "<dt><code>{}</code></dt><dd>{}</dd>", e(h), e(about));
        }
        html.push_str("</dl>\n<p class=\"muted\">Besides those of every error answer: <code>Content-Type: application/problem+json</code>, <code>Cache-Control: no-store</code> and <code>X-Request-Id</code>.</p>\n");
    }
    let shown: Vec<Option<&Profile>> = if profiles.is_empty() {
        vec![None]
    } else {
        profiles.iter().map(|p| Some(*p)).collect()
    };
    let only_default = shown.len() == 1 && shown[0].is_none_or(Profile::is_problem);
    if only_default {
        html.push_str("<h2>Example response</h2>\n<p>In the default profile (RFC 9457 problem details), with example values. \
Quote the request id when you ask for help.</p>\n");
    } else if shown.len() == 1 {
        html.push_str("<h2>Example response</h2>\n<p>In the error profile this gateway answers in, with example values. \
Quote the request id when you ask for help.</p>\n");
    } else {
        html.push_str("<h2>Example responses</h2>\n<p>One per error profile this gateway answers in, with example values. \
Quote the request id when you ask for help.</p>\n");
    }
    for profile in shown {
        let problem = profile.is_none_or(Profile::is_problem);
        if let Some(p) = profile.filter(|_| !only_default) {
            let _ = writeln!(
                html,
                "<h3>{} <span class=\"muted\">(profile <code>{}</code>)</span></h3>",
                e(&p.title),
                e(&p.name)
            );
        }
        let _ = writeln!(
            html,
            "<pre><code>{}</code></pre>",
            e(&example_response(catalog, entry, base_url, profile))
        );
        if problem {
            let _ = writeln!(
                html,
                "<p class=\"muted\">The detail comes from the catalog's message <code>{}</code></p>",
                e(entry.message.source())
            );
        }
    }
    html.push_str("<h2>Configuration that makes it appear</h2>\n");
    if entry.config.is_empty() {
        html.push_str(
            "<p>No configuration option turns it on or off: the gateway always checks this.</p>\n",
        );
    } else {
        html.push_str("<ul>\n");
        for c in &entry.config {
            let _ = writeln!(html, "<li><code>{}</code></li>", e(c));
        }
        html.push_str("</ul>\n");
    }
    html.push_str("<h2>Related codes</h2>\n");
    if entry.related.is_empty() {
        html.push_str("<p>None.</p>\n");
    } else {
        html.push_str("<ul>\n");
        for r in &entry.related {
            let title = catalog.get(r).map_or("", |r| r.title.as_str());
            let _ = writeln!(
                html,
                "<li><a href=\"{}\"><code>{}</code></a> — {}</li>",
                e(&links.code(r)),
                e(r),
                e(title)
            );
        }
        html.push_str("</ul>\n");
    }
    if let Some(s) = stage {
        let _ = writeln!(
            html,
            "<p class=\"muted\">Stage {}: {}</p>",
            e(&s.title),
            e(&s.about)
        );
    }
    html.push_str("</main>\n");
    html.push_str(FOOTER);
    html.push_str("</body>\n</html>\n");
    html
}

fn code_row(entry: &Entry, links: Links) -> String {
    format!(
        "<tr><td><a href=\"{href}\"><code>{code}</code></a></td><td>{status}</td><td>{title}</td><td class=\"hide-narrow\"><code>{retry}</code></td></tr>\n",
        href = escape_html(&links.code(&entry.code)),
        code = escape_html(&entry.code),
        status = entry.status,
        title = escape_html(&entry.title),
        retry = entry.retry.as_str(),
    )
}

/// Appends `<li><a href="{href}">{label}</a>{after}</li>`: `label` and `after` are HTML.
fn link_item(html: &mut String, href: &str, label: &str, after: &str) {
    let _ = writeln!(
        html,
        "<li><a href=\"{}\">{label}</a>{after}</li>",
        escape_html(href)
    );
}

const TABLE_HEAD: &str = "<table>\n<thead><tr><th scope=\"col\">Code</th><th scope=\"col\">Status</th><th scope=\"col\">Title</th><th scope=\"col\" class=\"hide-narrow\">Retry</th></tr></thead>\n<tbody>\n";

/// The index: a search box, then every code by pipeline stage and by status.
pub fn index_page(catalog: &Catalog, links: Links) -> String {
    index_page_with_profiles(catalog, links, &[])
}

/// [`index_page`], with a section linking the page of each of `profiles` other than the
/// default (the error formats the API answers in).
pub fn index_page_with_profiles(catalog: &Catalog, links: Links, profiles: &[&Profile]) -> String {
    let e = escape_html;
    let formats: Vec<&&Profile> = profiles.iter().filter(|p| !p.is_problem()).collect();
    let mut html = head(
        "Error codes",
        "Every error this API's gateway can answer, what it means and what to do about it.",
        links,
    );
    let _ = write!(
        html,
        "<body>\n<main>\n<h1>Error codes</h1>\n<p>Every error this API's gateway answers with, what it means and what to do about it. \
Each answer's <code>type</code> URL leads to its code's page; the <code>code</code> member names it.</p>\n\
<section class=\"search\" role=\"search\">\n<label for=\"search\">Search error codes</label>\n\
<input id=\"search\" type=\"search\" autocomplete=\"off\" spellcheck=\"false\" placeholder=\"a word of the title, a code or a status\" aria-describedby=\"search-status\">\n\
<p id=\"search-status\" class=\"muted\" aria-live=\"polite\"></p>\n<ul id=\"search-results\"></ul>\n</section>\n\
<nav class=\"toc\" aria-label=\"Contents\"><ul>{formats_toc}<li><a href=\"#by-stage\">By pipeline stage</a></li><li><a href=\"#by-status\">By status</a></li></ul></nav>\n",
        formats_toc = if formats.is_empty() {
            ""
        } else {
            "<li><a href=\"#formats\">Error formats</a></li>"
        },
    );
    if !formats.is_empty() {
        html.push_str("<h2 id=\"formats\">Error formats</h2>\n<p>This API answers some of its errors in a format of its own. Each format's page shows its answers as clients see them, with the code each one stands for.</p>\n<ul>\n");
        for p in &formats {
            let after = format!(" (profile <code>{}</code>)", e(&p.name));
            link_item(&mut html, &links.profile(&p.name), &e(&p.title), &after);
        }
        html.push_str("</ul>\n");
    }
    html.push_str(
        "<h2 id=\"by-stage\">By pipeline stage</h2>\n<p class=\"muted\">In the order a request meets them.</p>\n",
    );
    for stage in catalog.stages() {
        let entries: Vec<&Entry> = catalog
            .entries()
            .iter()
            .filter(|x| x.stage == stage.name)
            .collect();
        if entries.is_empty() {
            continue;
        }
        let _ = write!(
            html,
            "<h3 id=\"stage-{id}\">{title}</h3>\n<p>{about}</p>\n{TABLE_HEAD}",
            id = e(&stage.name),
            title = e(&stage.title),
            about = e(&stage.about),
        );
        for x in entries {
            html.push_str(&code_row(x, links));
        }
        html.push_str("</tbody>\n</table>\n");
    }
    html.push_str("<h2 id=\"by-status\">By status</h2>\n");
    let mut statuses: Vec<u16> = catalog.entries().iter().map(|x| x.status).collect();
    statuses.sort_unstable();
    statuses.dedup();
    for status in statuses {
        let _ = write!(
            html,
            "<h3 id=\"status-{status}\">{status} {reason}</h3>\n<ul>\n",
            reason = reason_phrase(status)
        );
        for x in catalog.entries().iter().filter(|x| x.status == status) {
            let label = format!("<code>{}</code>", e(&x.code));
            link_item(
                &mut html,
                &links.code(&x.code),
                &label,
                &format!(" — {}", e(&x.title)),
            );
        }
        html.push_str("</ul>\n");
    }
    let _ = write!(
        html,
        "</main>\n{FOOTER}<script type=\"application/json\" id=\"search-index\">{}</script>\n<script src=\"{}\"></script>\n</body>\n</html>\n",
        script_safe(&search_index(catalog, links)),
        escape_html(&links.asset(SCRIPT_FILE)),
    );
    html
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes;

    fn hostile() -> Catalog {
        Catalog::load(Some((
            "ops.toml",
            r#"
[[error]]
code = "route_not_found"
title = "<script>alert(1)</script> & \"quotes\""
explanation = "</script><img src=x onerror=alert(1)>"
checklist = ["<b>bold</b>"]
config = ["routes.<x>"]
"#,
        )))
        .unwrap()
    }

    #[test]
    fn every_value_is_escaped() {
        let c = hostile();
        let entry = c.get(codes::ROUTE_NOT_FOUND).unwrap();
        let page = entry_page(&c, entry, "http://h", Links::Served, &[]);
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(!page.contains("<img"), "{page}");
        assert!(!page.contains("<b>bold"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quotes&quot;"));
        assert!(page.contains("<code>routes.&lt;x&gt;</code>"));
        let index = index_page(&c, Links::Served);
        // The embedded index cannot close its script element.
        let data = index
            .split("<script type=\"application/json\" id=\"search-index\">")
            .nth(1)
            .unwrap();
        let data = data.split("</script>").next().unwrap();
        assert!(!data.contains('<'), "{data}");
        let parsed: Value = serde_json::from_str(data).unwrap();
        let row = parsed
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["code"] == "route_not_found")
            .unwrap();
        assert_eq!(row["explanation"], "</script><img src=x onerror=alert(1)>");
        assert_eq!(
            index.matches("<script").count(),
            2,
            "only the data block and search.js"
        );
    }

    #[test]
    fn prose_codes_backticks_and_escapes() {
        assert_eq!(prose("a `x<y` b"), "a <code>x&lt;y</code> b");
        assert_eq!(prose("one ` tick <"), "one ` tick &lt;");
    }

    #[test]
    fn an_entry_page_has_every_part() {
        let c = Catalog::builtin();
        let e = c.get(codes::RATE_LIMITED).unwrap();
        let page = entry_page(c, e, "https://api.example.com", Links::Served, &[]);
        assert_eq!(page.matches("<h1").count(), 1);
        for part in [
            "<h2>What to check</h2>",
            "<h2>Retrying</h2>",
            "Retry class <code>after_delay</code>",
            "<dt><code>Retry-After</code></dt>",
            "<dt><code>RateLimit-Policy</code></dt>",
            "<h2>Example response</h2>",
            "HTTP/1.1 429 Too Many Requests",
            "retry-after: 1\n",
            "ratelimit-policy: &quot;burst&quot;;q=100;w=1",
            "&quot;type&quot;: &quot;https://api.example.com/errors/rate_limited&quot;",
            "<li><code>routes.rate_limits</code></li>",
            "<a href=\"./\">All error codes</a>",
            "<meta name=\"viewport\"",
            "<link rel=\"stylesheet\" href=\"site.css\">",
        ] {
            assert!(page.contains(part), "missing {part}:\n{page}");
        }
        // The related codes link to their pages, by title.
        for r in &e.related {
            assert!(
                page.contains(&format!("<a href=\"{r}\"><code>{r}</code></a>")),
                "{r}"
            );
        }
        let files = entry_page(c, e, "https://api.example.com", Links::Files, &[]);
        assert!(files.contains("<a href=\"index.html\">All error codes</a>"));
        for r in &e.related {
            assert!(files.contains(&format!("<a href=\"{r}.html\">")), "{r}");
        }
    }

    #[test]
    fn the_example_is_the_real_renderer_s_body() {
        let c = Catalog::builtin();
        for e in c.entries() {
            let example = example_response(c, e, "http://x", None);
            let (head, body) = example.split_once("\n\n").unwrap();
            assert!(
                head.starts_with(&format!("HTTP/1.1 {} ", e.status)),
                "{head}"
            );
            assert!(!reason_phrase(e.status).is_empty(), "{}", e.status);
            for h in &e.headers {
                assert!(
                    head.contains(&format!("\n{}: ", h.to_ascii_lowercase())),
                    "{}: {h}",
                    e.code
                );
            }
            let v: Value = serde_json::from_str(body).unwrap();
            assert_eq!(v["code"], e.code.as_str());
            assert_eq!(v["type"], format!("http://x/errors/{}", e.code));
            assert_eq!(
                v["errors"],
                serde_json::to_value(&e.example_errors).unwrap(),
                "{}",
                e.code
            );
            let detail = v["detail"].as_str().unwrap();
            assert!(
                !detail.contains('{'),
                "{}: placeholder left in {detail}",
                e.code
            );
        }
    }

    #[test]
    fn profiles_in_use_get_pages_linked_from_the_index() {
        let c = Catalog::builtin();
        let problem = Profile::builtin(crate::profile::DEFAULT).unwrap();
        let ixon = Profile::builtin("ixon").unwrap();
        // The default format has no page of its own: its pages are the codes'.
        assert!(!index_page_with_profiles(c, Links::Served, &[problem]).contains("Error formats"));
        let files = files(c, "http://x", &[problem, ixon]);
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert!(names.contains(&"profile-ixon.html"), "{names:?}");
        assert!(!names.contains(&"profile-problem.html"), "{names:?}");
        let index = &files[0].1;
        assert!(index.contains("<li><a href=\"#formats\">Error formats</a></li>"));
        assert!(index.contains("<a href=\"profile-ixon.html\">"), "{index}");
        let page = profile_page(c, ixon, Links::Parent);
        assert!(page.contains("<link rel=\"stylesheet\" href=\"errors/site.css\">"));
        assert!(page.contains("<a href=\"errors/\">All error codes</a>"));
        assert!(page.contains("<td>2FA is required</td>"), "{page}");
        assert!(page.contains("<a href=\"errors/"), "{page}");
        assert_eq!(Links::Served.profile("ixon"), "profile-ixon");
    }

    /// The example of the code that lists field problems lists some, as many as it says,
    /// in the default format and through a profile that shows fields.
    #[test]
    fn the_validation_example_lists_its_field_problems() {
        let c = Catalog::builtin();
        let e = c.get(codes::VALIDATION_FAILED).unwrap();
        let example = example_response(c, e, "http://x", None);
        let v: Value = serde_json::from_str(example.split_once("\n\n").unwrap().1).unwrap();
        let errors = v["errors"].as_array().unwrap();
        let count = e.example.iter().find(|(k, _)| k == "count").unwrap();
        assert_eq!(errors.len().to_string(), count.1);
        assert_eq!(errors[0]["in"], "query");
        assert_eq!(errors[1]["pointer"], "#/email");
        assert_eq!(
            v["detail"],
            "The request has 2 problems: limit must be at most 100; got 500; email is required"
        );
        let pelion = Profile::builtin("pelion").unwrap();
        let example = example_response(c, e, "http://x", Some(pelion));
        assert!(example.contains("\"name\": \"email\""), "{example}");
    }

    #[test]
    fn one_example_per_profile_in_use() {
        let c = Catalog::builtin();
        let e = c.get(codes::TOKEN_EXPIRED).unwrap();
        let problem = Profile::builtin(crate::profile::DEFAULT).unwrap();
        let pelion = Profile::builtin("pelion").unwrap();
        let page = entry_page(c, e, "http://x", Links::Served, &[problem, pelion]);
        assert!(page.contains("<h2>Example responses</h2>"), "{page}");
        assert_eq!(page.matches("<pre><code>HTTP/1.1 ").count(), 2);
        assert!(page.contains("(profile <code>pelion</code>)"));
        assert!(page.contains("(profile <code>problem</code>)"));
        // The profile's own renderer and header conventions.
        let example = example_response(c, e, "http://x", Some(pelion));
        let (head, body) = example.split_once("\n\n").unwrap();
        let expected = pelion.render(&ErrorFacts::new(e, "", "/v1/devices", EXAMPLE_REQUEST_ID));
        assert!(
            head.starts_with(&format!("HTTP/1.1 {} ", expected.status)),
            "{head}"
        );
        assert!(
            head.contains(&format!("content-type: {}", pelion.content_type)),
            "{head}"
        );
        let v: Value = serde_json::from_str(body).unwrap();
        assert_ne!(
            v.get("code").and_then(Value::as_str),
            Some("token_expired"),
            "{body}"
        );
        // Only the default: said so, one example.
        let page = entry_page(c, e, "http://x", Links::Served, &[problem]);
        assert!(page.contains("In the default profile"));
        assert!(!page.contains("(profile <code>"));
    }

    #[test]
    fn the_index_groups_by_stage_and_status_and_links_every_code() {
        let c = Catalog::builtin();
        let index = index_page(c, Links::Served);
        assert_eq!(index.matches("<h1").count(), 1);
        assert!(index.contains("<label for=\"search\">Search error codes</label>"));
        for s in c.stages().iter().filter(|s| s.name != "custom") {
            assert!(
                index.contains(&format!("<h3 id=\"stage-{}\">", s.name)),
                "{}",
                s.name
            );
        }
        assert!(index.contains("<h3 id=\"status-429\">429 Too Many Requests</h3>"));
        for e in c.entries() {
            // Once under its stage, once under its status.
            assert_eq!(
                index.matches(&format!("<a href=\"{}\">", e.code)).count(),
                2,
                "{}",
                e.code
            );
        }
        let files = files(c, "http://x", &[]);
        assert_eq!(files.len(), 5 + c.entries().len());
        assert!(files.iter().any(|(n, _)| n == "route_not_found.html"));
        let index = &files.iter().find(|(n, _)| n == "index.html").unwrap().1;
        assert!(index.contains("<a href=\"route_not_found.html\">"));
        let parent = index_page(c, Links::Parent);
        assert!(parent.contains("<a href=\"errors/route_not_found\">"));
        assert!(parent.contains("<link rel=\"stylesheet\" href=\"errors/site.css\">"));
        assert!(parent.contains("<script src=\"errors/search.js\"></script>"));
    }

    #[test]
    fn operator_codes_appear_under_their_own_stage() {
        let c = Catalog::load(Some((
            "ops.toml",
            "[[error]]\ncode = \"plan_expired\"\nstatus = 402\ntype = \"billing\"\ntitle = \"Plan expired\"\nmessage = \"m\"\nexplanation = \"e\"\nchecklist = [\"Renew.\"]\nretry = \"never\"\n",
        )))
        .unwrap();
        let index = index_page(&c, Links::Served);
        let custom = index.split("<h3 id=\"stage-custom\">").nth(1).unwrap();
        assert!(custom.starts_with("Operator-defined</h3>"));
        assert!(custom.contains("<a href=\"plan_expired\">"));
        assert!(index.contains("<h3 id=\"status-402\">402 Payment Required</h3>"));
    }
}
