//! Error profiles: the same catalog errors in another API's words and envelope.
//!
//! A profile is data (`catalog/profiles/NAME.toml`, or an operator's file): an envelope
//! template (a JSON document whose string values may be placeholders), the profile's own
//! error rows (status, code, type, message, description, checklist) each naming the catalog
//! codes it answers, an explicit fallback for the others, wording for field errors, and the
//! header conventions (`WWW-Authenticate`, `Retry-After`, the request id header).
//!
//! Everything is compiled when the profile is loaded: a bad profile is a [`ProfileError`]
//! with a precise message, never a failure at request time. Rendering walks the compiled
//! envelope and writes every value through `serde_json`, so the body is always valid JSON.
//!
//! In an envelope string value:
//! - `"{name}"` alone inserts the value with its own JSON type (`{status}` is a number);
//! - `"{name?}"` alone does the same, and leaves the member out when the value is empty;
//! - `"{fields}"` alone inserts the request's field errors, each rendered with the `field`
//!   template; `"{fields_or_message}"` inserts one item built from the error itself (its
//!   message, and the row's `property` as `name`) when the request has no field errors;
//! - any other text is a message template (`"code {status}"`), rendered as a JSON string.
//!
//! ```
//! use candor_catalog::{Catalog, profile::{Profile, ErrorFacts}, codes};
//! let pelion = Profile::builtin("pelion").unwrap();
//! let entry = Catalog::builtin().get(codes::ROUTE_NOT_FOUND).unwrap();
//! let out = pelion.render(&ErrorFacts::new(entry, "No route.", "/v3/x", "01J"));
//! assert_eq!(out.status, 404);
//! assert!(out.body.contains(r#""type":"unrecognized_request""#));
//! ```

use crate::{Catalog, Entry, FieldError, Retry, Template};
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::OnceLock;

/// The built-in profiles' sources: `(name, TOML)`.
pub const BUILTIN_SOURCES: &[(&str, &str)] = &[
    (
        "problem",
        include_str!("../../../catalog/profiles/problem.toml"),
    ),
    (
        "asyncos",
        include_str!("../../../catalog/profiles/asyncos.toml"),
    ),
    (
        "edgio",
        include_str!("../../../catalog/profiles/edgio.toml"),
    ),
    (
        "pelion",
        include_str!("../../../catalog/profiles/pelion.toml"),
    ),
    ("knox", include_str!("../../../catalog/profiles/knox.toml")),
    ("ixon", include_str!("../../../catalog/profiles/ixon.toml")),
];

/// The name of the default profile: RFC 9457 problem details.
pub const DEFAULT: &str = "problem";

/// The values an envelope or a message may name besides the error's own parameters.
pub const STANDARD_VARS: &[&str] = &[
    "status",
    "status_text",
    "code",
    "catalog_code",
    "type",
    "title",
    "message",
    "detail",
    "explanation",
    "description",
    "request_id",
    "trace_id",
    "instance",
    "docs",
    "retry",
    "property",
];

/// The values a `field` template may name (besides the standard ones).
/// `display_name` is the name as an API shows it: a header's in its usual letter case
/// (`Api-Company`; the gateway matches header names in lower case), any other as it is.
pub const FIELD_VARS: &[&str] = &[
    "name",
    "display_name",
    "message",
    "in",
    "pointer",
    "reason",
    "detail",
];

/// Why a profile could not be loaded, or what `check` found wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProfileError {
    /// The profile's name (or its file when it has none yet).
    pub profile: String,
    /// Where in the profile: `envelope`, `error #3 (type "not_found").message`...
    pub at: String,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for ProfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.at.is_empty() {
            write!(f, "profile `{}`: {}", self.profile, self.reason)
        } else {
            write!(
                f,
                "profile `{}`, {}: {}",
                self.profile, self.at, self.reason
            )
        }
    }
}

/// A scalar written as given in the profile: `code = 4002250` stays a number.
#[derive(Clone, Debug, PartialEq)]
pub enum Scalar {
    /// A JSON string.
    Str(String),
    /// A JSON number (an integer).
    Int(i64),
}

impl Scalar {
    /// As text (a table cell).
    pub fn text(&self) -> String {
        match self {
            Scalar::Str(s) => s.clone(),
            Scalar::Int(i) => i.to_string(),
        }
    }
}

/// One error of the profile's own vocabulary: a row of its troubleshooting table.
#[derive(Clone, Debug)]
pub struct ProfileRow {
    /// HTTP status; the catalog's (or the gateway's) when absent.
    pub status: Option<u16>,
    /// The profile's code (`"{status}"`: the HTTP status, as a number); the catalog code
    /// when absent.
    pub code: Option<Scalar>,
    /// The profile's error type.
    pub kind: Option<String>,
    /// A name for the error (a column of some APIs' tables: `ACCESS_TOKEN_EXPIRED`).
    pub name: Option<String>,
    /// The message template; the catalog's rendered detail when absent.
    pub message: Option<Template>,
    /// The description on the troubleshooting page (default: the message as written).
    pub description: Option<String>,
    /// A longer explanation (`{explanation}`); the catalog entry's when absent.
    pub explanation: Option<String>,
    /// The `name` of the item `{fields_or_message}` builds from the error itself.
    pub property: Option<Template>,
    /// Troubleshooting steps in the profile's words; the catalog entry's when empty.
    pub checklist: Vec<String>,
    /// The catalog codes this row answers.
    pub catalog: Vec<String>,
    /// Only when every one of these error parameters has this value.
    pub when: Vec<(String, String)>,
}

/// The wording of a field error, by where it is and why.
#[derive(Clone, Debug)]
struct FieldMessage {
    location: Option<String>,
    reason: Option<String>,
    message: Template,
}

/// The header conventions of a profile.
#[derive(Clone, Debug, Default)]
pub struct HeaderConventions {
    /// The header the request id is sent in (default `X-Request-Id`).
    pub request_id: Option<String>,
    /// The `WWW-Authenticate` challenge of a 401 (replaces the gateway's).
    pub www_authenticate: Option<String>,
    /// Whether `Retry-After` is sent (default yes).
    pub retry_after: bool,
}

/// A compiled envelope node.
#[derive(Clone, Debug)]
enum Node {
    /// Literal JSON text (a constant string, number, boolean or null).
    Literal(String),
    /// A value with its own type; `optional`: the member is left out when empty.
    Var {
        name: String,
        optional: bool,
    },
    /// A string rendered from a template.
    Text(Template),
    /// The field errors (`or_message`: or one item from the error when there are none).
    List {
        or_message: bool,
    },
    Object(Vec<(String, Node)>),
    Array(Vec<Node>),
}

/// A compiled profile.
#[derive(Clone, Debug)]
pub struct Profile {
    /// Its name, as configs name it.
    pub name: String,
    /// The API it speaks for (the page's heading).
    pub title: String,
    /// A paragraph for the page.
    pub description: String,
    /// The `Content-Type` of its error bodies.
    pub content_type: String,
    /// Header conventions.
    pub headers: HeaderConventions,
    /// The profile's error rows, in order.
    pub rows: Vec<ProfileRow>,
    /// The explicit fallback for catalog codes no row names.
    pub fallback: Option<ProfileRow>,
    envelope: Option<Node>,
    field: Option<Node>,
    field_messages: Vec<FieldMessage>,
    index: HashMap<String, Vec<usize>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    name: String,
    title: Option<String>,
    description: Option<String>,
    /// `rfc9457` for the default problem rendering; `envelope` otherwise.
    format: Option<String>,
    content_type: Option<String>,
    envelope: Option<String>,
    field: Option<String>,
    #[serde(default)]
    headers: RawHeaders,
    #[serde(default)]
    error: Vec<RawRow>,
    fallback: Option<RawRow>,
    #[serde(default)]
    field_message: Vec<RawFieldMessage>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHeaders {
    request_id: Option<String>,
    www_authenticate: Option<String>,
    retry_after: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRow {
    status: Option<u16>,
    code: Option<toml::Value>,
    #[serde(rename = "type")]
    kind: Option<String>,
    name: Option<String>,
    message: Option<String>,
    description: Option<String>,
    explanation: Option<String>,
    property: Option<String>,
    #[serde(default)]
    checklist: Vec<String>,
    #[serde(default)]
    catalog: Vec<String>,
    #[serde(default)]
    when: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFieldMessage {
    #[serde(rename = "in")]
    location: Option<String>,
    reason: Option<String>,
    message: String,
}

/// One error to render: its catalog entry and the facts of this request.
#[derive(Clone, Copy, Debug)]
pub struct ErrorFacts<'a> {
    /// The catalog entry.
    pub entry: &'a Entry,
    /// The error's parameters (template values and string extensions such as `reason`).
    pub params: &'a [(&'a str, &'a str)],
    /// The catalog message, rendered.
    pub detail: &'a str,
    /// The status the gateway chose (the entry's unless the raising code set one).
    pub status: u16,
    /// Field errors.
    pub fields: &'a [FieldError],
    /// The request path.
    pub instance: &'a str,
    /// The request id.
    pub request_id: &'a str,
    /// The W3C trace id, if the request had one.
    pub trace_id: Option<&'a str>,
    /// The public base URL (for `{docs}`).
    pub base_url: &'a str,
    /// The retry class.
    pub retry: Retry,
}

impl<'a> ErrorFacts<'a> {
    /// Facts with the entry's status and retry class, no parameters and no fields.
    pub fn new(entry: &'a Entry, detail: &'a str, instance: &'a str, request_id: &'a str) -> Self {
        ErrorFacts {
            entry,
            params: &[],
            detail,
            status: entry.status,
            fields: &[],
            instance,
            request_id,
            trace_id: None,
            base_url: "",
            retry: entry.retry,
        }
    }
}

/// A rendered error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    /// The HTTP status.
    pub status: u16,
    /// The body (JSON).
    pub body: String,
}

fn err(profile: &str, at: impl Into<String>, reason: impl Into<String>) -> ProfileError {
    ProfileError {
        profile: profile.to_owned(),
        at: at.into(),
        reason: reason.into(),
    }
}

/// Why `name` cannot carry a request id, if it cannot: a field that frames or describes
/// the message, or one the gateway or HTTP gives another meaning (the request id would
/// replace it on every answer).
fn reserved_header(name: &str) -> Option<&'static str> {
    const HOP_BY_HOP: [&str; 7] = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ];
    const MEANT: [&str; 22] = [
        "host",
        "date",
        "server",
        "location",
        "vary",
        "cache-control",
        "expires",
        "etag",
        "last-modified",
        "age",
        "set-cookie",
        "cookie",
        "authorization",
        "www-authenticate",
        "proxy-authenticate",
        "retry-after",
        "ratelimit",
        "ratelimit-policy",
        "traceparent",
        "tracestate",
        "accept-ranges",
        "strict-transport-security",
    ];
    let n = name.to_ascii_lowercase();
    if HOP_BY_HOP.contains(&n.as_str()) {
        Some("is a hop-by-hop field (it frames the connection)")
    } else if n.starts_with("content-") {
        Some("describes the message's body")
    } else if MEANT.contains(&n.as_str())
        || n.starts_with("x-forwarded-")
        || n.starts_with("x-candor-")
    {
        Some("already means something in an answer")
    } else {
        None
    }
}

impl Profile {
    /// Every built-in profile, compiled (the crate's tests prove they compile).
    pub fn builtins() -> &'static [Profile] {
        static BUILTINS: OnceLock<Vec<Profile>> = OnceLock::new();
        BUILTINS.get_or_init(|| {
            BUILTIN_SOURCES
                .iter()
                .map(|(name, src)| {
                    Profile::load(name, src).unwrap_or_else(|e| {
                        let lines: Vec<String> = e.iter().map(ToString::to_string).collect();
                        panic!("built-in profile {name} is invalid:\n{}", lines.join("\n"))
                    })
                })
                .collect()
        })
    }

    /// The built-in profile `name`.
    pub fn builtin(name: &str) -> Option<&'static Profile> {
        Profile::builtins().iter().find(|p| p.name == name)
    }

    /// How field errors are worded: (where, reason, message template), in order; the first
    /// that fits a field error words it (else its catalog detail stands).
    pub fn field_messages(&self) -> Vec<(Option<&str>, Option<&str>, &str)> {
        self.field_messages
            .iter()
            .map(|m| {
                (
                    m.location.as_deref(),
                    m.reason.as_deref(),
                    m.message.source(),
                )
            })
            .collect()
    }

    /// Whether this is the default RFC 9457 rendering (rendered by [`crate::Problem`]).
    pub fn is_problem(&self) -> bool {
        self.envelope.is_none()
    }

    /// Compiles a profile from its TOML `text`; `source` names it in errors (a file name).
    /// Every problem is reported.
    pub fn load(source: &str, text: &str) -> Result<Profile, Vec<ProfileError>> {
        let raw: RawProfile = toml::from_str(text).map_err(|e| {
            vec![err(
                source,
                "",
                format!("not a valid profile file: {}", e.to_string().trim()),
            )]
        })?;
        let name = raw.name.clone();
        let mut problems = Vec::new();
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        {
            problems.push(err(
                source,
                "name",
                format!("`{name}`: a profile name is lower-case letters, digits, '-' and '_'"),
            ));
        }
        let format = raw.format.as_deref().unwrap_or("envelope");
        let (envelope, field) = match format {
            "rfc9457" => {
                if raw.envelope.is_some() || raw.field.is_some() || !raw.error.is_empty() {
                    problems.push(err(
                        &name,
                        "format",
                        "an rfc9457 profile renders problem details; it takes no envelope, field or error rows",
                    ));
                }
                (None, None)
            }
            "envelope" => {
                let envelope = match &raw.envelope {
                    None => {
                        problems.push(err(&name, "envelope", "missing (a JSON document)"));
                        None
                    }
                    Some(src) => compile_json(src, false)
                        .map_err(|r| problems.push(err(&name, "envelope", r)))
                        .ok(),
                };
                let field = match &raw.field {
                    None => None,
                    Some(src) => compile_json(src, true)
                        .map_err(|r| problems.push(err(&name, "field", r)))
                        .ok(),
                };
                if let Some(env) = &envelope
                    && has_list(env)
                    && field.is_none()
                {
                    problems.push(err(
                        &name,
                        "field",
                        "missing: the envelope lists field errors, so a `field` template must say how each is written",
                    ));
                }
                (envelope, field)
            }
            other => {
                problems.push(err(
                    &name,
                    "format",
                    format!("`{other}` is not a format; expected \"envelope\" or \"rfc9457\""),
                ));
                (None, None)
            }
        };
        let mut rows = Vec::new();
        for (i, r) in raw.error.into_iter().enumerate() {
            let at = format!(
                "error #{}{}",
                i + 1,
                r.kind
                    .as_deref()
                    .or(r.name.as_deref())
                    .map(|k| format!(" ({k})"))
                    .unwrap_or_default()
            );
            if r.catalog.is_empty() {
                problems.push(err(
                    &name,
                    format!("{at}.catalog"),
                    "names no catalog code: every row answers at least one",
                ));
            }
            if let Some(row) = compile_row(&name, &at, r, &mut problems) {
                rows.push(row);
            }
        }
        let fallback = raw
            .fallback
            .and_then(|r| compile_row(&name, "fallback", r, &mut problems));
        if let Some(f) = &fallback
            && (!f.catalog.is_empty() || !f.when.is_empty())
        {
            problems.push(err(
                &name,
                "fallback",
                "the fallback answers every code no row names; it takes no `catalog` or `when`",
            ));
        }
        let mut field_messages = Vec::new();
        for (i, f) in raw.field_message.into_iter().enumerate() {
            match Template::compile(&f.message) {
                Ok(message) => {
                    for p in message.placeholders() {
                        if !FIELD_VARS.contains(&p) && !STANDARD_VARS.contains(&p) {
                            problems.push(err(
                                &name,
                                format!("field_message #{}.message", i + 1),
                                format!("`{{{p}}}` is not a value a field message can name"),
                            ));
                        }
                    }
                    field_messages.push(FieldMessage {
                        location: f.location,
                        reason: f.reason,
                        message,
                    });
                }
                Err(e) => problems.push(err(
                    &name,
                    format!("field_message #{}.message", i + 1),
                    e.to_string(),
                )),
            }
        }
        let mut index: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, r) in rows.iter().enumerate() {
            for c in &r.catalog {
                index.entry(c.clone()).or_default().push(i);
            }
        }
        if let Some(h) = &raw.headers.request_id {
            if h.is_empty()
                || !h
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                problems.push(err(
                    &name,
                    "headers.request_id",
                    format!("`{h}` is not a header name"),
                ));
            } else if let Some(why) = reserved_header(h) {
                problems.push(err(
                    &name,
                    "headers.request_id",
                    format!(
                        "`{h}` {why}: name a header of the profile's own, such as X-Acme-Request-Id"
                    ),
                ));
            }
        }
        if let Some(v) = &raw.headers.www_authenticate
            && (v.is_empty() || v.bytes().any(|b| b < 0x20 || b == 0x7f))
        {
            problems.push(err(
                &name,
                "headers.www_authenticate",
                "must be a non-empty header value without control characters",
            ));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Profile {
            title: raw.title.unwrap_or_else(|| name.clone()),
            description: raw.description.unwrap_or_default(),
            content_type: raw.content_type.unwrap_or_else(|| {
                if envelope.is_none() {
                    "application/problem+json".into()
                } else {
                    "application/json".into()
                }
            }),
            headers: HeaderConventions {
                request_id: raw.headers.request_id,
                www_authenticate: raw.headers.www_authenticate,
                retry_after: raw.headers.retry_after.unwrap_or(true),
            },
            name,
            rows,
            fallback,
            envelope,
            field,
            field_messages,
            index,
        })
    }

    /// What this profile lacks for `catalog`: codes it names that the catalog does not
    /// have, codes of `produced` with no row and no fallback, placeholders no error of the
    /// row supplies. Empty when the profile is sound.
    pub fn check<'c>(
        &self,
        catalog: &Catalog,
        produced: impl IntoIterator<Item = &'c str>,
    ) -> Vec<ProfileError> {
        let mut out = Vec::new();
        if self.is_problem() {
            return out;
        }
        let known: Vec<&str> = catalog.entries().iter().map(|e| e.code.as_str()).collect();
        for (i, row) in self.rows.iter().enumerate() {
            let at = format!(
                "error #{}{}",
                i + 1,
                row.kind
                    .as_deref()
                    .or(row.name.as_deref())
                    .map(|k| format!(" ({k})"))
                    .unwrap_or_default()
            );
            for code in &row.catalog {
                let Some(entry) = catalog.get(code) else {
                    let mut reason = format!("`{code}` is not a catalog code");
                    if let Some(s) = closest(code, &known) {
                        reason.push_str(&format!(" (did you mean `{s}`?)"));
                    }
                    out.push(err(&self.name, format!("{at}.catalog"), reason));
                    continue;
                };
                let supplied = entry.message.placeholders();
                for (what, t) in [("message", &row.message), ("property", &row.property)] {
                    let Some(t) = t else { continue };
                    for p in t.placeholders() {
                        if !STANDARD_VARS.contains(&p)
                            && !supplied.contains(&p)
                            && !row.when.iter().any(|(k, _)| k == p)
                        {
                            out.push(err(
                                &self.name,
                                format!("{at}.{what}"),
                                format!(
                                    "`{{{p}}}` is not supplied by `{code}` (its values: {})",
                                    if supplied.is_empty() {
                                        "none".to_owned()
                                    } else {
                                        supplied.join(", ")
                                    }
                                ),
                            ));
                        }
                    }
                }
            }
        }
        if let Some(f) = &self.fallback {
            for (what, t) in [("message", &f.message), ("property", &f.property)] {
                let Some(t) = t else { continue };
                for p in t.placeholders() {
                    if !STANDARD_VARS.contains(&p) {
                        out.push(err(
                            &self.name,
                            format!("fallback.{what}"),
                            format!(
                                "`{{{p}}}` is not supplied by every error; the fallback may name only {}",
                                STANDARD_VARS.join(", ")
                            ),
                        ));
                    }
                }
            }
        }
        if self.fallback.is_none() {
            let mut missing = Vec::new();
            for code in produced {
                let covered = self
                    .index
                    .get(code)
                    .is_some_and(|rows| rows.iter().any(|&i| self.rows[i].when.is_empty()));
                if !covered {
                    missing.push(code.to_owned());
                }
            }
            if !missing.is_empty() {
                out.push(err(
                    &self.name,
                    "fallback",
                    format!(
                        "no `[fallback]`, and no unconditional row answers {}; add rows for them or a `[fallback]`",
                        missing
                            .iter()
                            .map(|c| format!("`{c}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }
        out
    }

    /// The row that answers `code` with these parameters: the first row naming the code
    /// whose `when` holds, else the fallback.
    /// `field_reason` in `when` holds when one of the field errors has that reason.
    pub fn row_for(
        &self,
        code: &str,
        params: &[(&str, &str)],
        fields: &[FieldError],
    ) -> Option<&ProfileRow> {
        self.index
            .get(code)
            .and_then(|rows| {
                rows.iter().map(|&i| &self.rows[i]).find(|r| {
                    r.when.iter().all(|(k, v)| {
                        if k == "field_reason" {
                            fields.iter().any(|f| &f.reason == v)
                        } else {
                            params.iter().any(|(pk, pv)| pk == k && pv == v)
                        }
                    })
                })
            })
            .or(self.fallback.as_ref())
    }

    /// Renders an error. For the `problem` profile the gateway renders with
    /// [`crate::Problem`]; here it gets a minimal body with the same members' values.
    pub fn render(&self, f: &ErrorFacts<'_>) -> Rendered {
        let row = self.row_for(&f.entry.code, f.params, f.fields);
        let status = row.and_then(|r| r.status).unwrap_or(f.status);
        let Some(envelope) = &self.envelope else {
            let body = crate::Problem::new(f.entry, f.base_url, f.detail, f.instance, f.request_id)
                .status(status)
                .trace_id(f.trace_id)
                .retry(f.retry)
                .errors(f.fields.to_vec())
                .to_json();
            return Rendered { status, body };
        };
        let status_text = status.to_string();
        let docs = format!(
            "{}/errors/{}",
            f.base_url.trim_end_matches('/'),
            f.entry.code
        );
        // The standard values as text, for message templates.
        let mut vars: Vec<(&str, &str)> = Vec::with_capacity(f.params.len() + 12);
        vars.extend_from_slice(f.params);
        vars.extend_from_slice(&[
            ("status", status_text.as_str()),
            ("status_text", status_text.as_str()),
            ("catalog_code", f.entry.code.as_str()),
            ("detail", f.detail),
            ("request_id", f.request_id),
            ("instance", f.instance),
            ("docs", docs.as_str()),
            ("retry", f.retry.as_str()),
            (
                "title",
                row.and_then(|r| r.name.as_deref())
                    .unwrap_or(&f.entry.title),
            ),
            (
                "type",
                row.and_then(|r| r.kind.as_deref()).unwrap_or(&f.entry.kind),
            ),
        ]);
        let message = match row.and_then(|r| r.message.as_ref()) {
            Some(t) => t.render(&vars),
            None => f.detail.to_owned(),
        };
        let property = row
            .and_then(|r| r.property.as_ref())
            .map(|t| t.render(&vars));
        let ctx = Ctx {
            f,
            row,
            status,
            status_text: &status_text,
            docs: &docs,
            message: &message,
            property: property.as_deref(),
            vars: &vars,
        };
        let mut out = Vec::with_capacity(256);
        self.write(envelope, &ctx, None, &mut out);
        Rendered {
            status,
            // Only `serde_json` and literal UTF-8 text are written.
            body: String::from_utf8(out).unwrap_or_default(),
        }
    }

    fn write(&self, node: &Node, ctx: &Ctx<'_>, field: Option<&FieldScope<'_>>, out: &mut Vec<u8>) {
        match node {
            Node::Literal(text) => out.extend_from_slice(text.as_bytes()),
            Node::Var { name, .. } => write_val(&ctx.value(name, field), out),
            Node::Text(t) => match field {
                None => write_str(&t.render(ctx.vars), out),
                Some(fs) => {
                    let mut vars = fs.vars();
                    vars.extend_from_slice(ctx.vars);
                    write_str(&t.render(&vars), out)
                }
            },
            Node::List { or_message } => {
                out.push(b'[');
                let item = self.field.as_ref();
                let mut first = true;
                for fe in ctx.f.fields {
                    let msg = self.field_message(fe);
                    let display = display_name(fe);
                    let scope = FieldScope {
                        name: &fe.name,
                        display_name: &display,
                        message: msg.as_deref().unwrap_or(&fe.detail),
                        location: &fe.location,
                        pointer: &fe.pointer,
                        reason: &fe.reason,
                        detail: &fe.detail,
                    };
                    if let Some(item) = item {
                        if !first {
                            out.push(b',');
                        }
                        first = false;
                        self.write(item, ctx, Some(&scope), out);
                    }
                }
                if *or_message
                    && ctx.f.fields.is_empty()
                    && let Some(item) = item
                {
                    let scope = FieldScope {
                        name: ctx.property.unwrap_or(""),
                        display_name: ctx.property.unwrap_or(""),
                        message: ctx.message,
                        location: "",
                        pointer: "",
                        reason: "",
                        detail: ctx.f.detail,
                    };
                    self.write(item, ctx, Some(&scope), out);
                }
                out.push(b']');
            }
            Node::Object(members) => {
                out.push(b'{');
                let mut first = true;
                for (key, value) in members {
                    if let Node::Var {
                        name,
                        optional: true,
                    } = value
                        && ctx.value(name, field).is_empty()
                    {
                        continue;
                    }
                    if !first {
                        out.push(b',');
                    }
                    first = false;
                    write_str(key, out);
                    out.push(b':');
                    self.write(value, ctx, field, out);
                }
                out.push(b'}');
            }
            Node::Array(items) => {
                out.push(b'[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    self.write(v, ctx, field, out);
                }
                out.push(b']');
            }
        }
    }

    fn field_message(&self, fe: &FieldError) -> Option<String> {
        let m = self.field_messages.iter().find(|m| {
            m.location.as_deref().is_none_or(|l| l == fe.location)
                && m.reason.as_deref().is_none_or(|r| r == fe.reason)
        })?;
        Some(m.message.render(&[
            ("name", &fe.name),
            ("display_name", &display_name(fe)),
            ("in", &fe.location),
            ("pointer", &fe.pointer),
            ("reason", &fe.reason),
            ("detail", &fe.detail),
        ]))
    }
}

struct Ctx<'a> {
    f: &'a ErrorFacts<'a>,
    row: Option<&'a ProfileRow>,
    status: u16,
    status_text: &'a str,
    docs: &'a str,
    message: &'a str,
    property: Option<&'a str>,
    vars: &'a [(&'a str, &'a str)],
}

struct FieldScope<'a> {
    name: &'a str,
    display_name: &'a str,
    message: &'a str,
    location: &'a str,
    pointer: &'a str,
    reason: &'a str,
    detail: &'a str,
}

impl<'a> FieldScope<'a> {
    fn vars(&self) -> Vec<(&'a str, &'a str)> {
        vec![
            ("name", self.name),
            ("display_name", self.display_name),
            ("message", self.message),
            ("in", self.location),
            ("pointer", self.pointer),
            ("reason", self.reason),
            ("detail", self.detail),
        ]
    }
}

enum Val<'a> {
    Str(std::borrow::Cow<'a, str>),
    Int(i64),
    Null,
}

impl Val<'_> {
    fn is_empty(&self) -> bool {
        match self {
            Val::Str(s) => s.is_empty(),
            Val::Int(_) => false,
            Val::Null => true,
        }
    }
}

impl<'a> Ctx<'a> {
    fn value(&self, name: &str, field: Option<&FieldScope<'a>>) -> Val<'a> {
        use std::borrow::Cow::Borrowed;
        if let Some(fs) = field {
            match name {
                "name" => return Val::Str(Borrowed(fs.name)),
                "display_name" => return Val::Str(Borrowed(fs.display_name)),
                "message" => return Val::Str(Borrowed(fs.message)),
                "in" => return Val::Str(Borrowed(fs.location)),
                "pointer" => return Val::Str(Borrowed(fs.pointer)),
                "reason" => return Val::Str(Borrowed(fs.reason)),
                "detail" => return Val::Str(Borrowed(fs.detail)),
                _ => {}
            }
        }
        let f = self.f;
        let row = self.row;
        match name {
            "status" => Val::Int(i64::from(self.status)),
            "status_text" => Val::Str(Borrowed(self.status_text)),
            "code" => match row.and_then(|r| r.code.as_ref()) {
                Some(Scalar::Int(i)) => Val::Int(*i),
                Some(Scalar::Str(s)) if s == "{status}" => Val::Int(i64::from(self.status)),
                Some(Scalar::Str(s)) => Val::Str(Borrowed(s)),
                None => Val::Str(Borrowed(&f.entry.code)),
            },
            "catalog_code" => Val::Str(Borrowed(&f.entry.code)),
            "type" => Val::Str(Borrowed(
                row.and_then(|r| r.kind.as_deref()).unwrap_or(&f.entry.kind),
            )),
            "title" => Val::Str(Borrowed(
                row.and_then(|r| r.name.as_deref())
                    .unwrap_or(&f.entry.title),
            )),
            "message" => Val::Str(Borrowed(self.message)),
            "detail" => Val::Str(Borrowed(f.detail)),
            "explanation" => Val::Str(Borrowed(
                row.and_then(|r| r.explanation.as_deref())
                    .unwrap_or(&f.entry.explanation),
            )),
            "description" => Val::Str(Borrowed(
                row.and_then(|r| r.description.as_deref())
                    .unwrap_or(self.message),
            )),
            "request_id" => Val::Str(Borrowed(f.request_id)),
            "trace_id" => f.trace_id.map_or(Val::Null, |t| Val::Str(Borrowed(t))),
            "instance" => Val::Str(Borrowed(f.instance)),
            "docs" => Val::Str(Borrowed(self.docs)),
            "retry" => Val::Str(Borrowed(f.retry.as_str())),
            "property" => self.property.map_or(Val::Null, |p| Val::Str(Borrowed(p))),
            other => self
                .vars
                .iter()
                .find(|(k, _)| *k == other)
                .map_or(Val::Null, |(_, v)| Val::Str(Borrowed(v))),
        }
    }
}

/// A field's name as an API shows it: a header's in its usual letter case.
fn display_name(fe: &FieldError) -> std::borrow::Cow<'_, str> {
    if fe.location != "header" {
        return std::borrow::Cow::Borrowed(&fe.name);
    }
    let mut out = String::with_capacity(fe.name.len());
    let mut start = true;
    for c in fe.name.chars() {
        out.push(if start { c.to_ascii_uppercase() } else { c });
        start = c == '-';
    }
    std::borrow::Cow::Owned(out)
}

fn write_str(s: &str, out: &mut Vec<u8>) {
    // Writing a string into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn write_val(v: &Val<'_>, out: &mut Vec<u8>) {
    match v {
        Val::Str(s) => write_str(s, out),
        Val::Int(i) => out.extend_from_slice(i.to_string().as_bytes()),
        Val::Null => out.extend_from_slice(b"null"),
    }
}

/// The candidate nearest to `word` within a small edit distance.
fn closest<'c>(word: &str, candidates: &[&'c str]) -> Option<&'c str> {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut prev = row[0];
            row[0] = i + 1;
            for (j, cb) in b.iter().enumerate() {
                let cur = row[j + 1];
                row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
                prev = cur;
            }
        }
        row[b.len()]
    }
    candidates
        .iter()
        .map(|c| (distance(word, c), *c))
        .filter(|(d, _)| *d <= 3)
        .min()
        .map(|(_, c)| c)
}

fn has_list(n: &Node) -> bool {
    match n {
        Node::List { .. } => true,
        Node::Object(m) => m.iter().any(|(_, v)| has_list(v)),
        Node::Array(a) => a.iter().any(has_list),
        _ => false,
    }
}

/// Compiles a JSON template. `in_field`: a field item's template (it may name the field's
/// values, and may not list fields itself).
fn compile_json(src: &str, in_field: bool) -> Result<Node, String> {
    let value: Value = serde_json::from_str(src).map_err(|e| format!("not valid JSON: {e}"))?;
    if !value.is_object() {
        return Err("must be a JSON object".into());
    }
    compile_value(&value, in_field, "")
}

fn compile_value(v: &Value, in_field: bool, at: &str) -> Result<Node, String> {
    let known =
        |name: &str| STANDARD_VARS.contains(&name) || (in_field && FIELD_VARS.contains(&name));
    Ok(match v {
        Value::Object(m) => {
            let mut members = Vec::with_capacity(m.len());
            for (k, v) in m {
                members.push((k.clone(), compile_value(v, in_field, &format!("{at}/{k}"))?));
            }
            Node::Object(members)
        }
        Value::Array(a) => {
            let mut items = Vec::with_capacity(a.len());
            for (i, v) in a.iter().enumerate() {
                items.push(compile_value(v, in_field, &format!("{at}/{i}"))?);
            }
            Node::Array(items)
        }
        Value::String(s) => {
            let whole = s
                .strip_prefix('{')
                .and_then(|r| r.strip_suffix('}'))
                .filter(|inner| !inner.contains(['{', '}', '|']));
            match whole {
                Some(list @ ("fields" | "fields_or_message")) => {
                    if in_field {
                        return Err(format!(
                            "at {at}: a field template cannot list fields itself"
                        ));
                    }
                    Node::List {
                        or_message: list == "fields_or_message",
                    }
                }
                Some(inner) => {
                    let (name, optional) = match inner.strip_suffix('?') {
                        Some(n) => (n, true),
                        None => (inner, false),
                    };
                    if !known(name) {
                        return Err(format!(
                            "at {at}: `{{{name}}}` is not a value the envelope can name (known: {}{})",
                            STANDARD_VARS.join(", "),
                            if in_field {
                                format!(", {}", FIELD_VARS.join(", "))
                            } else {
                                ", fields, fields_or_message".into()
                            }
                        ));
                    }
                    Node::Var {
                        name: name.to_owned(),
                        optional,
                    }
                }
                None => {
                    let t = Template::compile(s).map_err(|e| format!("at {at}: {e}"))?;
                    if t.placeholders().is_empty() {
                        Node::Literal(serde_json::to_string(s).map_err(|e| e.to_string())?)
                    } else {
                        for p in t.placeholders() {
                            if !known(p) {
                                return Err(format!(
                                    "at {at}: `{{{p}}}` is not a value the envelope can name"
                                ));
                            }
                        }
                        Node::Text(t)
                    }
                }
            }
        }
        other => Node::Literal(other.to_string()),
    })
}

fn compile_row(
    profile: &str,
    at: &str,
    r: RawRow,
    problems: &mut Vec<ProfileError>,
) -> Option<ProfileRow> {
    let before = problems.len();
    let code = match r.code {
        None => None,
        Some(toml::Value::String(s)) => Some(Scalar::Str(s)),
        Some(toml::Value::Integer(i)) => Some(Scalar::Int(i)),
        Some(other) => {
            problems.push(err(
                profile,
                format!("{at}.code"),
                format!("a {} is neither a string nor an integer", other.type_str()),
            ));
            None
        }
    };
    if let Some(s) = r.status
        && !(100..=599).contains(&s)
    {
        problems.push(err(
            profile,
            format!("{at}.status"),
            format!("{s} is not an HTTP status (100-599)"),
        ));
    }
    let mut template = |what: &str, src: Option<String>| {
        src.and_then(|s| {
            Template::compile(&s)
                .map_err(|e| problems.push(err(profile, format!("{at}.{what}"), e.to_string())))
                .ok()
        })
    };
    let message = template("message", r.message);
    let property = template("property", r.property);
    if problems.len() > before {
        return None;
    }
    Some(ProfileRow {
        status: r.status,
        code,
        kind: r.kind,
        name: r.name,
        message,
        description: r.description,
        explanation: r.explanation,
        property,
        checklist: r.checklist,
        catalog: r.catalog,
        when: r.when.into_iter().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes;

    fn facts<'a>(entry: &'a Entry, fields: &'a [FieldError]) -> ErrorFacts<'a> {
        ErrorFacts {
            fields,
            ..ErrorFacts::new(entry, "detail \"q\"", "/v1/x", "01J")
        }
    }

    #[test]
    fn every_builtin_profile_compiles_and_covers_the_catalog() {
        let catalog = Catalog::builtin();
        for p in Profile::builtins() {
            let problems = p.check(catalog, codes::ALL.iter().copied());
            assert!(problems.is_empty(), "{}: {problems:#?}", p.name);
        }
        assert!(Profile::builtin(DEFAULT).unwrap().is_problem());
        assert_eq!(Profile::builtins().len(), BUILTIN_SOURCES.len());
    }

    #[test]
    fn the_problem_profile_is_rfc9457_byte_for_byte() {
        let entry = Catalog::builtin().get(codes::ROUTE_NOT_FOUND).unwrap();
        let out = Profile::builtin("problem").unwrap().render(&ErrorFacts {
            base_url: "http://h",
            ..facts(entry, &[])
        });
        let direct = crate::Problem::new(entry, "http://h", "detail \"q\"", "/v1/x", "01J")
            .retry(entry.retry)
            .to_json();
        assert_eq!(out.body, direct);
    }

    #[test]
    fn pelion_envelope_lists_fields_and_escapes() {
        let entry = Catalog::builtin().get(codes::VALIDATION_FAILED).unwrap();
        let fields = [FieldError {
            location: "body".into(),
            pointer: "#/na\"me".into(),
            name: "na\"me".into(),
            reason: "required".into(),
            detail: "is required".into(),
        }];
        let out = Profile::builtin("pelion")
            .unwrap()
            .render(&facts(entry, &fields));
        let v: Value = serde_json::from_str(&out.body).unwrap();
        assert_eq!(out.status, 400);
        assert_eq!(v["object"], "error");
        assert_eq!(v["type"], "validation_error");
        assert_eq!(v["code"], 400);
        assert_eq!(v["fields"][0]["name"], "na\"me");
        assert_eq!(v["request_id"], "01J");
    }

    #[test]
    fn conditional_rows_and_optional_members() {
        let entry = Catalog::builtin()
            .get(codes::CREDENTIALS_MALFORMED)
            .unwrap();
        let ixon = Profile::builtin("ixon").unwrap();
        let out = ixon.render(&ErrorFacts {
            params: &[("reason", "too_short")],
            ..facts(entry, &[])
        });
        let v: Value = serde_json::from_str(&out.body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"Error","data":[{"message":"Value is too short","propertyName":"Authorization"}],"moreAfter":null,"status":"error"})
        );
        let entry = Catalog::builtin()
            .get(codes::SECOND_FACTOR_REQUIRED)
            .unwrap();
        let v: Value = serde_json::from_str(&ixon.render(&facts(entry, &[])).body).unwrap();
        assert_eq!(
            v["data"],
            serde_json::json!([{"message":"2FA is required"}])
        );
    }

    #[test]
    fn a_request_id_header_may_not_be_one_that_means_something_else() {
        // Found by the attack probe: `Content-Length` here made every error's length the
        // request id; `Transfer-Encoding` emptied every proxied answer.
        let with = |h: &str| {
            Profile::load(
                "x.toml",
                &format!(
                    "name = \"x\"\nenvelope = '{{\"a\":\"{{message}}\"}}'\n[headers]\nrequest_id = \"{h}\"\n"
                ),
            )
        };
        for h in [
            "Content-Length",
            "transfer-encoding",
            "Connection",
            "Host",
            "Set-Cookie",
            "Content-Type",
            "Date",
            "Upgrade",
            "Trailer",
            "Keep-Alive",
            "traceparent",
            "X-Forwarded-For",
        ] {
            let e = with(h).unwrap_err();
            assert!(
                e[0].to_string().contains("headers.request_id") && e[0].to_string().contains(h),
                "{h}: {e:?}"
            );
        }
        for h in ["X-Request-Id", "X-Acme-Request", "Request-Id", "x_trace"] {
            assert!(with(h).is_ok(), "{h}");
        }
    }

    #[test]
    fn bad_profiles_are_precise_errors() {
        let e =
            Profile::load("x.toml", "name = \"x\"\nenvelope = '{\"a\":\"{nope}\"}'").unwrap_err();
        assert!(e[0].reason.contains("`{nope}` is not a value"), "{e:?}");
        let e = Profile::load("x.toml", "name = \"x\"\nenvelope = '{\"a\":'").unwrap_err();
        assert!(e[0].reason.starts_with("not valid JSON"), "{e:?}");
        let e = Profile::load(
            "x.toml",
            "name = \"x\"\nenvelope = '{\"a\":\"{fields}\"}'\n[[error]]\ncatalog=[\"route_not_found\"]\nmessage=\"{oops\"",
        )
        .unwrap_err();
        let text: Vec<String> = e.iter().map(ToString::to_string).collect();
        assert!(
            text.iter().any(|t| t.contains("`field` template")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|t| t.contains("error #1.message: unclosed")),
            "{text:?}"
        );
        let p = Profile::load(
            "x.toml",
            "name = \"x\"\nenvelope = '{\"m\":\"{message}\"}'\n[[error]]\ncatalog=[\"route_not_fond\",\"method_not_allowed\"]\nmessage=\"{colour}\"",
        )
        .unwrap();
        let problems = p.check(
            Catalog::builtin(),
            ["route_not_found", "method_not_allowed"],
        );
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert!(
            text[0].contains(
                "`route_not_fond` is not a catalog code (did you mean `route_not_found`?)"
            ),
            "{text:?}"
        );
        assert!(
            text[1].contains("`{colour}` is not supplied by `method_not_allowed`"),
            "{text:?}"
        );
        assert!(
            text[2].contains("no `[fallback]`") && text[2].contains("`route_not_found`"),
            "{text:?}"
        );
    }
}
