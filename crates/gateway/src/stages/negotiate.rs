//! Negotiate stage: the request's `Accept` against the media types the route produces
//! (RFC 9110 §12.5.1: q-values, `*/*`, `type/*`, `q=0` exclusions, the most specific range
//! deciding), and a request body's `Content-Type` against the types the route accepts
//! (missing, another type, or a charset the type does not take).
//!
//! An `Accept` element that is no media range (`text`, `a/b/c`, a q-value that is no number)
//! is ignored, as HTTP servers commonly do, and a lone `*` counts as `*/*` (old Java
//! clients send it); a header with no readable element accepts everything.

use crate::error::GatewayError;
use crate::pipeline::context::{Flow, RequestCtx};
use candor_catalog::codes;
use http::header::{ACCEPT, CONTENT_TYPE};
use serde_json::json;

/// A media type or range as a route declares it: `type/subtype` (`subtype` may be `*` in
/// `accepts`), with an optional charset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaType {
    /// The type, lower case (`application`).
    pub kind: String,
    /// The subtype, lower case (`json`; `*` for any).
    pub subtype: String,
    /// The charset parameter, lower case, when given.
    pub charset: Option<String>,
}

impl std::fmt::Display for MediaType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.kind, self.subtype)?;
        if let Some(c) = &self.charset {
            write!(f, "; charset={c}")?;
        }
        Ok(())
    }
}

/// Whether `b` is a token character (RFC 9110 §5.6.2).
fn tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A `name=value` parameter's value, unquoted.
fn param_value(v: &str) -> String {
    let v = v.trim();
    v.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v)
        .to_ascii_lowercase()
}

/// A media type read: type, subtype and parameters (name lower case, value unquoted and lower
/// case).
type Parsed = (String, String, Vec<(String, String)>);

/// `type/subtype` and its parameters.
fn split(text: &str) -> Option<Parsed> {
    let mut parts = text.split(';');
    let essence = parts.next()?.trim();
    let (kind, subtype) = essence.split_once('/')?;
    if kind.is_empty() || subtype.is_empty() {
        return None;
    }
    if !kind.bytes().all(tchar) || !subtype.bytes().all(tchar) {
        return None;
    }
    let mut params = Vec::new();
    for p in parts {
        let p = p.trim();
        if p.is_empty() {
            continue;
        }
        let (name, value) = p.split_once('=')?;
        let name = name.trim();
        if name.is_empty() || !name.bytes().all(tchar) {
            return None;
        }
        params.push((name.to_ascii_lowercase(), param_value(value)));
    }
    Some((
        kind.to_ascii_lowercase(),
        subtype.to_ascii_lowercase(),
        params,
    ))
}

impl MediaType {
    /// Reads a media type as the configuration writes it; `range` allows `type/*` (for
    /// `accepts`). Parameters other than `charset` are refused: nothing would check them.
    pub fn parse(text: &str, range: bool) -> Result<MediaType, String> {
        let (kind, subtype, params) =
            split(text).ok_or_else(|| format!("`{text}` is not a media type (type/subtype)"))?;
        if kind == "*" {
            return Err(format!(
                "`{text}`: the type must be named (`{}` accepts anything; leave the list out instead)",
                "*/*"
            ));
        }
        if subtype == "*" && !range {
            return Err(format!(
                "`{text}`: a route produces definite types, not a range"
            ));
        }
        let mut charset = None;
        for (name, value) in params {
            if name == "charset" {
                charset = Some(value);
            } else {
                return Err(format!(
                    "`{text}`: parameter `{name}` is not supported (only charset)"
                ));
            }
        }
        Ok(MediaType {
            kind,
            subtype,
            charset,
        })
    }
}

/// A body format the gateway checks is well formed before forwarding (the body is read
/// whole first, up to the body limit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BodyFormat {
    /// JSON (`application/json`, `*/*+json`), UTF-8.
    Json,
    /// `application/x-www-form-urlencoded`: percent-escapes of two hex digits, UTF-8 once
    /// decoded.
    Form,
    /// XML (`application/xml`, `text/xml`, `*/*+xml`), UTF-8: well formed (one root element,
    /// every element closed in order, attributes quoted and not repeated, references that
    /// name a character or a predefined entity).
    Xml,
}

impl BodyFormat {
    /// The format a body of this media type is checked in, if any.
    fn of(kind: &str, subtype: &str) -> Option<BodyFormat> {
        if (kind == "application" && subtype == "json") || subtype.ends_with("+json") {
            Some(BodyFormat::Json)
        } else if kind == "application" && subtype == "x-www-form-urlencoded" {
            Some(BodyFormat::Form)
        } else if ((kind == "application" || kind == "text") && subtype == "xml")
            || subtype.ends_with("+xml")
        {
            Some(BodyFormat::Xml)
        } else {
            None
        }
    }

    /// `malformed_body` when `body` is not well formed in this format: what was expected,
    /// what was found there, and where (line, column, byte offset).
    pub(crate) fn check(self, body: &[u8]) -> Result<(), GatewayError> {
        let (format, fault) = match self {
            BodyFormat::Json => ("JSON", json_fault(body)),
            BodyFormat::Form => ("form data", form_fault(body)),
            BodyFormat::Xml => ("XML", xml_fault(body)),
        };
        match fault {
            None => Ok(()),
            Some((offset, reason)) => Err(malformed(format, body, offset, reason)),
        }
    }
}

/// `malformed_body` for a JSON body the contract's parse refused (`e`): well formed or not,
/// what was found, and where.
pub(crate) fn json_malformed(body: &[u8], e: &serde_json::Error) -> GatewayError {
    let (offset, reason) = json_fault(body).unwrap_or_else(|| json_error(body, e));
    malformed("JSON", body, offset, reason)
}

/// `malformed_body`: what was expected, what was found there, and where (line, column,
/// byte offset).
fn malformed(format: &str, body: &[u8], offset: usize, reason: String) -> GatewayError {
    let before = &body[..offset.min(body.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = offset
        - before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1)
        + 1;
    GatewayError::new(codes::MALFORMED_BODY)
        .param("format", format.to_owned())
        .param("reason", reason)
        .param("line", line.to_string())
        .param("column", column.to_string())
        .extension("line", line.into())
        .extension("column", column.into())
        .extension("offset", offset.into())
}

/// What is found at `offset` of `body`, for a detail.
fn found_at(body: &[u8], offset: usize) -> String {
    match body.get(offset) {
        None => "the end of the body".into(),
        Some(&b) if b.is_ascii_graphic() => format!("`{}`", b as char),
        Some(b' ') => "a space".into(),
        Some(&b) => format!("byte 0x{b:02X}"),
    }
}

/// Where a JSON body breaks and why, or `None` when it is well formed.
fn json_fault(body: &[u8]) -> Option<(usize, String)> {
    if let Err(e) = std::str::from_utf8(body) {
        let at = e.valid_up_to();
        return Some((at, format!("invalid UTF-8: found {}", found_at(body, at))));
    }
    let e = serde_json::from_slice::<serde::de::IgnoredAny>(body).err()?;
    Some(json_error(body, &e))
}

/// Where serde_json's error `e` on `body` is and what it says, in a detail's words.
fn json_error(body: &[u8], e: &serde_json::Error) -> (usize, String) {
    // serde_json's line and column point at the byte it stopped at (columns count bytes).
    let mut offset = 0;
    for _ in 1..e.line() {
        offset += body[offset..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
    }
    let eof = matches!(e.classify(), serde_json::error::Category::Eof);
    // At the end, serde_json points at the last byte; the fault is where the body ends.
    let offset = if eof {
        body.len()
    } else {
        (offset + e.column().saturating_sub(1)).min(body.len())
    };
    let text = e.to_string();
    let what = text.split(" at line").next().unwrap_or(&text);
    if what == "expected ident" {
        // A word that began like true, false or null: blame the word, from its start.
        let start = body[..offset.min(body.len())]
            .iter()
            .rposition(|b| !b.is_ascii_alphanumeric())
            .map_or(0, |i| i + 1);
        let word: String = body[start..]
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
            .take(24)
            .map(|&b| b as char)
            .collect();
        return (
            start,
            format!("expected a value, found `{word}` (a word that is not true, false or null)"),
        );
    }
    let what = match what {
        "EOF while parsing a value" => "expected a value",
        "EOF while parsing an object" => "expected `,` or `}`",
        "EOF while parsing a list" => "expected `,` or `]`",
        "EOF while parsing a string" => "expected the string's closing `\"`",
        other => other,
    };
    let what = match what {
        "recursion limit exceeded" => {
            "nested deeper than 128 levels, the most the gateway checks against a contract"
        }
        "number out of range" => "a number beyond what the gateway can check (about ±1.8e308)",
        "unexpected end of hex escape" | "lone leading surrogate in hex escape" => {
            "a `\\u` escape of half a surrogate pair (\\ud800 to \\udfff need their other half)"
        }
        other => other,
    };
    (offset, format!("{what}, found {}", found_at(body, offset)))
}

/// Where an XML body breaks and why, or `None` when it is well formed. quick-xml reads the
/// events and checks that end tags match; what it leaves to its caller (one root element,
/// nothing but markup and spaces outside it, elements still open at the end, attributes,
/// references, the declaration's place and encoding) is checked here.
fn xml_fault(body: &[u8]) -> Option<(usize, String)> {
    use quick_xml::events::Event;
    if let Err(e) = std::str::from_utf8(body) {
        let at = e.valid_up_to();
        return Some((at, format!("invalid UTF-8: found {}", found_at(body, at))));
    }
    if let Some(at) = body
        .iter()
        .position(|&b| b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r'))
    {
        return Some((
            at,
            format!(
                "a control character is not allowed in XML, found {}",
                found_at(body, at)
            ),
        ));
    }
    let mut reader = quick_xml::Reader::from_reader(body);
    reader.config_mut().check_comments = true;
    let mut open: Vec<String> = Vec::new();
    let mut roots = 0usize;
    let mut doctype = false;
    let named = |n: &str| {
        n.chars()
            .next()
            .is_some_and(|c| c.is_alphabetic() || c == '_' || c == ':')
    };
    loop {
        let start = reader.buffer_position() as usize;
        let event = match reader.read_event() {
            Ok(e) => e,
            Err(e) => {
                let at = (reader.error_position() as usize).min(body.len());
                return Some((at, xml_reason(&e, body, at)));
            }
        };
        let outside = open.is_empty();
        match event {
            Event::Start(ref tag) | Event::Empty(ref tag) => {
                if outside && roots > 0 {
                    return Some((start, "expected the end of the body after the root element, found a second element".into()));
                }
                if !named(tag.name().as_ref()) {
                    return Some((
                        start + 1,
                        format!(
                            "expected an element name (a letter, `_` or `:` first), found {}",
                            found_at(body, start + 1)
                        ),
                    ));
                }
                for attr in tag.attributes() {
                    let fault = match attr {
                        Err(e) => Some(attr_fault(&e)),
                        Ok(a) if a.value.contains('<') => Some((
                            tag.attributes_raw()
                                .find('<')
                                .map_or(0, |i| i + tag.name().as_ref().len()),
                            format!(
                                "attribute `{}`: `<` is not allowed in a value (write &lt;)",
                                clip_name(a.key.as_ref())
                            ),
                        )),
                        Ok(a) => a
                            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                            .err()
                            .map(|e| {
                                (0, format!("attribute `{}`: {e}", clip_name(a.key.as_ref())))
                            }),
                    };
                    if let Some((pos, reason)) = fault {
                        // Positions are counted from the first byte after `<`.
                        let at = (start + 1 + pos).min(body.len());
                        return Some((at, format!("{reason}, found {}", found_at(body, at))));
                    }
                }
                if outside {
                    roots += 1;
                }
                if let Event::Start(_) = event {
                    open.push(tag.name().as_ref().to_owned());
                }
            }
            Event::End(_) => {
                open.pop();
            }
            Event::Text(t) if !outside && t.contains("]]>") => {
                let at = start + t.find("]]>").unwrap_or(0);
                return Some((at, "`]]>` is not allowed in text (write ]]&gt;)".into()));
            }
            Event::Text(t) if outside && !t.bytes().all(|b| b.is_ascii_whitespace()) => {
                let at = start
                    + t.bytes()
                        .position(|b| !b.is_ascii_whitespace())
                        .unwrap_or(0);
                let reason = if roots == 0 {
                    "expected `<` and the root element"
                } else {
                    "expected the end of the body after the root element"
                };
                return Some((at, format!("{reason}, found {}", found_at(body, at))));
            }
            Event::CData(_) | Event::GeneralRef(_) if outside => {
                return Some((
                    start,
                    format!(
                        "expected markup outside the root element, found {}",
                        found_at(body, start)
                    ),
                ));
            }
            Event::GeneralRef(r) => {
                let known = matches!(&*r, "amp" | "lt" | "gt" | "apos" | "quot");
                let fault = match r.resolve_char_ref() {
                    Ok(Some(_)) => None,
                    Ok(None) if known || doctype => None,
                    Ok(None) => Some(format!(
                        "`&{};` names no entity (only amp, lt, gt, apos, quot and character references are defined)",
                        &*r
                    )),
                    Err(e) => Some(format!("`&{};` is not a character: {e}", &*r)),
                };
                if let Some(reason) = fault {
                    return Some((start, reason));
                }
            }
            Event::Decl(d) => {
                if start != 0 {
                    return Some((
                        start,
                        "an XML declaration (`<?xml`) may only open the body, found one later"
                            .into(),
                    ));
                }
                match d.version() {
                    Ok(v) if &*v == "1.0" || &*v == "1.1" => {}
                    Ok(v) => {
                        return Some((
                            start,
                            format!(
                                "the declaration names version `{}`; XML is 1.0 or 1.1",
                                clip_name(&v)
                            ),
                        ));
                    }
                    Err(_) => {
                        return Some((
                            start,
                            "the declaration must name its version first (`<?xml version=\"1.0\"?>`)".into(),
                        ));
                    }
                }
                if let Some(Ok(enc)) = d.encoding()
                    && !enc.eq_ignore_ascii_case("utf-8")
                {
                    return Some((
                        start,
                        format!(
                            "the declaration names encoding `{}`; the body must be UTF-8",
                            enc
                        ),
                    ));
                }
            }
            Event::DocType(_) if doctype || roots > 0 || !outside => {
                return Some((
                    start,
                    "a document type (`<!DOCTYPE`) may only come once, before the root element"
                        .into(),
                ));
            }
            Event::DocType(_) => doctype = true,
            Event::PI(pi) if pi.target().eq_ignore_ascii_case("xml") => {
                return Some((
                    start,
                    "an XML declaration is written `<?xml` and may only open the body".into(),
                ));
            }
            Event::Eof => {
                return if let Some(name) = open.last() {
                    Some((
                        body.len(),
                        format!(
                            "expected `</{}>`, found the end of the body",
                            clip_name(name)
                        ),
                    ))
                } else if roots == 0 {
                    Some((
                        body.len(),
                        "expected a root element, found the end of the body".into(),
                    ))
                } else {
                    None
                };
            }
            _ => {}
        }
    }
}

/// A name from the body as a detail quotes it: at most 60 characters.
fn clip_name(name: &str) -> String {
    if name.chars().count() > 60 {
        format!("{}…", name.chars().take(60).collect::<String>())
    } else {
        name.to_owned()
    }
}

/// An attribute's fault: where it is (from the tag's first byte after `<`) and what.
fn attr_fault(e: &quick_xml::events::attributes::AttrError) -> (usize, String) {
    use quick_xml::events::attributes::AttrError;
    match *e {
        AttrError::ExpectedEq(at) => (at, "expected `=` after an attribute's name".into()),
        AttrError::ExpectedValue(at) => (at, "expected an attribute's quoted value".into()),
        AttrError::UnquotedValue(at) => (at, "expected an attribute's value in quotes".into()),
        AttrError::ExpectedQuote(at, q) => (at, format!("expected the closing `{}`", q as char)),
        AttrError::Duplicated(at, _) => (at, "an attribute is repeated".into()),
    }
}

/// What quick-xml's error means, for a detail ending in what is found at `at`.
fn xml_reason(e: &quick_xml::Error, body: &[u8], at: usize) -> String {
    use quick_xml::errors::{Error, IllFormedError};
    match e {
        Error::IllFormed(IllFormedError::MismatchedEndTag { expected, found }) => {
            format!(
                "expected `</{}>`, found `</{}>`",
                clip_name(expected),
                clip_name(found)
            )
        }
        Error::IllFormed(IllFormedError::UnmatchedEndTag(name)) => {
            format!("`</{}>` closes no open element", clip_name(name))
        }
        other => format!("{other}, found {}", found_at(body, at)),
    }
}

/// Where a form body breaks and why, or `None` when it is well formed.
fn form_fault(body: &[u8]) -> Option<(usize, String)> {
    let mut decoded = Vec::with_capacity(body.len());
    let mut starts = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        starts.push(i);
        match body[i] {
            b'%' => {
                let hex = body
                    .get(i + 1..i + 3)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                    .and_then(|h| std::str::from_utf8(h).ok());
                let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) else {
                    return Some((i, "a `%` must be followed by two hex digits".to_owned()));
                };
                decoded.push(b);
                i += 3;
            }
            b'+' => {
                decoded.push(b' ');
                i += 1;
            }
            b => {
                decoded.push(b);
                i += 1;
            }
        }
    }
    match std::str::from_utf8(&decoded) {
        Ok(_) => None,
        Err(e) => {
            let at = starts[e.valid_up_to()];
            Some((
                at,
                format!("invalid UTF-8 once decoded: found {}", found_at(body, at)),
            ))
        }
    }
}

/// What a route negotiates: empty lists check nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Negotiation {
    /// The media types a request body may have (`type/*` allowed).
    pub accepts: Vec<MediaType>,
    /// The media types the route's responses have.
    pub produces: Vec<MediaType>,
}

impl Negotiation {
    /// Whether the route negotiates anything.
    pub fn is_empty(&self) -> bool {
        self.accepts.is_empty() && self.produces.is_empty()
    }
}

/// The list, for a detail ("application/json or application/xml").
fn listed(types: &[MediaType]) -> String {
    let names: Vec<String> = types.iter().map(ToString::to_string).collect();
    match names.len() {
        0 => String::new(),
        1 => names[0].clone(),
        n => format!("{} or {}", names[..n - 1].join(", "), names[n - 1]),
    }
}

/// The most of a client's header value quoted back in a detail.
const QUOTED: usize = 200;

/// `value`, cut to [`QUOTED`] characters.
fn quoted(value: &str) -> String {
    if value.chars().count() <= QUOTED {
        value.to_owned()
    } else {
        let cut: String = value.chars().take(QUOTED).collect();
        format!("{cut}…")
    }
}

/// Runs the stage.
pub(crate) fn run(n: &Negotiation, ctx: &mut RequestCtx<'_>) -> Result<Flow, GatewayError> {
    if !n.produces.is_empty() {
        let refused = joined(ctx, ACCEPT)
            .filter(|accept| !acceptable(accept, &n.produces))
            .map(|accept| quoted(&accept));
        if let Some(accept) = refused {
            ctx.trail.record(
                "negotiate",
                "reject",
                Some(codes::NOT_ACCEPTABLE),
                vec![("accept", accept.clone())],
            );
            let available: Vec<String> = n.produces.iter().map(ToString::to_string).collect();
            return Err(GatewayError::new(codes::NOT_ACCEPTABLE)
                .param("accept", accept)
                .param("available", listed(&n.produces))
                .extension("available", json!(available)));
        }
    }
    let has_body = ctx.has_body();
    if !n.accepts.is_empty() && has_body {
        let declared = match content_type_fault(ctx, &n.accepts) {
            Ok(format) => {
                ctx.body_format = format;
                None
            }
            Err(fault) => Some(fault),
        };
        if let Some((declared, sent)) = declared {
            ctx.trail.record(
                "negotiate",
                "reject",
                Some(codes::UNSUPPORTED_MEDIA_TYPE),
                vec![("declared", declared.clone())],
            );
            let accepted: Vec<String> = n.accepts.iter().map(ToString::to_string).collect();
            return Err(unsupported(
                declared,
                sent,
                ctx.path(),
                &accepted,
                &listed(&n.accepts),
            ));
        }
    }
    ctx.trail.pass("negotiate");
    Ok(Flow::Continue)
}

/// `unsupported_media_type`: `declared` completes "The request body …" ("has no
/// Content-Type header", "is declared as text/xml"); `sent` is the header as sent.
pub(crate) fn unsupported(
    declared: String,
    sent: Option<String>,
    path: &str,
    accepted: &[String],
    accepted_text: &str,
) -> GatewayError {
    GatewayError::new(codes::UNSUPPORTED_MEDIA_TYPE)
        .param("declared", declared)
        .param("path", path.to_owned())
        .param("accepted", accepted_text.to_owned())
        .extension(
            "content_type",
            sent.map_or(serde_json::Value::Null, Into::into),
        )
        .extension("accepted", json!(accepted))
}

/// The values of a header as one list (several are joined with commas); `None` when
/// absent. A value that is not visible ASCII is kept lossily (it then matches nothing it
/// should not). One readable value, the common case, is borrowed.
fn joined<'c>(
    ctx: &'c RequestCtx<'_>,
    name: http::HeaderName,
) -> Option<std::borrow::Cow<'c, str>> {
    let mut values = ctx.parts.headers.get_all(name).iter();
    let first = values.next()?;
    let mut rest = values.peekable();
    if rest.peek().is_none() {
        return Some(String::from_utf8_lossy(first.as_bytes()));
    }
    let parts: Vec<String> = std::iter::once(first)
        .chain(rest)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    Some(parts.join(", ").into())
}

/// Whether the `Accept` list admits one of `produces`: each produced type takes the q-value
/// of the most specific range that matches it; one with q > 0 is enough.
fn acceptable(accept: &str, produces: &[MediaType]) -> bool {
    let mut ranges = Vec::new();
    for element in accept.split(',') {
        let element = element.trim();
        if element.is_empty() {
            continue;
        }
        let element = if element == "*" || element.starts_with("*;") || element.starts_with("* ;") {
            format!("*/*{}", &element[1..])
        } else {
            element.to_owned()
        };
        let Some((kind, subtype, params)) = split(&element) else {
            continue;
        };
        if kind == "*" && subtype != "*" {
            continue;
        }
        let mut q = Some(1.0f32);
        for (name, value) in &params {
            if name == "q" {
                q = value
                    .parse::<f32>()
                    .ok()
                    .filter(|q| (0.0..=1.0).contains(q));
            }
        }
        let Some(q) = q else {
            continue;
        };
        ranges.push((kind, subtype, q));
    }
    if ranges.is_empty() {
        return true;
    }
    produces.iter().any(|t| {
        let specificity = |(kind, subtype, _): &&(String, String, f32)| {
            if *kind == t.kind && *subtype == t.subtype {
                Some(2)
            } else if *kind == t.kind && subtype == "*" {
                Some(1)
            } else if kind == "*" {
                Some(0)
            } else {
                None
            }
        };
        let best = ranges
            .iter()
            .filter_map(|r| specificity(&r).map(|s| (s, r.2)))
            .max_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)));
        best.is_some_and(|(_, q)| q > 0.0)
    })
}

/// What is wrong with the body's declared type, when something is: the end of "The request
/// body …", and the header as sent. When nothing is: the format the body is then checked in.
fn content_type_fault(
    ctx: &RequestCtx<'_>,
    accepts: &[MediaType],
) -> Result<Option<BodyFormat>, (String, Option<String>)> {
    let mut values = ctx.parts.headers.get_all(CONTENT_TYPE).iter();
    let Some(value) = values.next() else {
        return Err(("has no Content-Type header".into(), None));
    };
    if values.next().is_some() {
        return Err(("has more than one Content-Type header".into(), None));
    }
    let Ok(text) = value.to_str() else {
        return Err((
            "has a Content-Type header that is not ASCII text".into(),
            Some(String::from_utf8_lossy(value.as_bytes()).into_owned()),
        ));
    };
    let sent = Some(quoted(text));
    let Some((kind, subtype, params)) = split(text) else {
        return Err((
            format!(
                "is declared as `{}`, which is not a media type",
                quoted(text)
            ),
            sent,
        ));
    };
    let mut charsets = params
        .iter()
        .filter(|(n, _)| n == "charset")
        .map(|(_, v)| v.clone());
    let charset = charsets.next();
    if charsets.next().is_some() {
        return Err((
            format!("is declared as {kind}/{subtype} with more than one charset"),
            sent,
        ));
    }
    if charset.as_deref() == Some("") {
        return Err((
            format!("is declared as {kind}/{subtype} with an empty charset"),
            sent,
        ));
    }
    let Some(accepted) = accepts
        .iter()
        .find(|a| a.kind == kind && (a.subtype == "*" || a.subtype == subtype))
    else {
        return Err((format!("is declared as {kind}/{subtype}"), sent));
    };
    // A body the gateway checks (JSON, forms) is checked as UTF-8: another charset is not
    // taken, rather than blamed on the body later.
    let checked = BodyFormat::of(&kind, &subtype);
    let wanted = accepted
        .charset
        .clone()
        .or_else(|| checked.map(|_| "utf-8".to_owned()));
    match (charset, wanted) {
        (Some(c), Some(w)) if c != w => Err((
            format!(
                "is declared as {kind}/{subtype} in charset {c}, which it does not take (send {w})"
            ),
            sent,
        )),
        _ => Ok(checked),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn types(list: &[&str]) -> Vec<MediaType> {
        list.iter()
            .map(|t| MediaType::parse(t, true).unwrap())
            .collect()
    }

    #[test]
    fn accept_lists_are_weighed_by_the_most_specific_range() {
        let json = types(&["application/json"]);
        for (accept, ok) in [
            ("application/json", true),
            ("*/*", true),
            ("application/*", true),
            ("text/html", false),
            ("text/html, application/json;q=0.1", true),
            ("application/json;q=0", false),
            ("*/*, application/json;q=0", false),
            ("application/*;q=0, */*", false),
            ("application/*;q=0, application/json", true),
            ("*; q=.2", true),
            ("text", true),
            ("application/json;q=abc", true),
            ("text/html;q=abc, text/plain", false),
            ("", true),
        ] {
            assert_eq!(acceptable(accept, &json), ok, "{accept}");
        }
        let two = types(&["application/json", "application/xml"]);
        assert!(acceptable("application/json;q=0, application/xml", &two));
        assert!(!acceptable(
            "application/json;q=0, application/xml;q=0",
            &two
        ));
    }

    /// The detail of a body's `malformed_body`, or `None` when it is well formed.
    fn fault(format: BodyFormat, body: &[u8]) -> Option<(String, String, String)> {
        let e = format.check(body).err()?;
        let get = |n: &str| {
            e.params
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        Some((get("reason"), get("line"), get("column")))
    }

    #[test]
    fn xml_bodies_must_be_well_formed() {
        let xml = BodyFormat::Xml;
        for ok in [
            &b"<a/>"[..],
            b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- c --><a x=\"1\" y='&amp;'>t &lt; &#x41;<b><![CDATA[<x>]]></b></a>\n",
            b"<!DOCTYPE a [<!ENTITY e \"x\">]><a>&e;</a>",
        ] {
            assert_eq!(fault(xml, ok), None, "{}", String::from_utf8_lossy(ok));
        }
        let cases: &[(&[u8], &str, &str, &str)] = &[
            (b"<a><b></a>", "expected `</b>`, found `</a>`", "1", "7"),
            (
                b"<a>\n  <b>1</b>\n",
                "expected `</a>`, found the end of the body",
                "3",
                "1",
            ),
            (
                b"<a></a><b/>",
                "expected the end of the body after the root element, found a second element",
                "1",
                "8",
            ),
            (
                b"name=1",
                "expected `<` and the root element, found `n`",
                "1",
                "1",
            ),
            (
                b"<a>&nbsp;</a>",
                "`&nbsp;` names no entity (only amp, lt, gt, apos, quot and character references are defined)",
                "1",
                "4",
            ),
            (
                b"<a x=1/>",
                "expected an attribute's value in quotes, found `1`",
                "1",
                "6",
            ),
            (
                b"<a x=\"1\" x=\"2\"/>",
                "an attribute is repeated, found `x`",
                "1",
                "10",
            ),
            (
                b"",
                "expected a root element, found the end of the body",
                "1",
                "1",
            ),
            (b"<a>\xC3(</a>", "invalid UTF-8: found byte 0xC3", "1", "4"),
            (
                b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><a/>",
                "the declaration names encoding `ISO-8859-1`; the body must be UTF-8",
                "1",
                "1",
            ),
        ];
        for (body, reason, line, column) in cases {
            assert_eq!(
                fault(xml, body),
                Some(((*reason).into(), (*line).into(), (*column).into())),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        // Found by the attack probe: each of these was taken as well formed.
        for bad in [
            &b"<a>\x00</a>"[..],
            b"<a>\x01</a>",
            b"<a>x]]>y</a>",
            b"<a b=\"<\"/>",
            b"<1a/>",
            b"< />",
            b"<a/><!DOCTYPE a>",
            b"<!DOCTYPE a><!DOCTYPE a><a/>",
            b"<a><!DOCTYPE a></a>",
            b"<?XML version=\"1.0\"?><a/>",
            b"<?xml encoding=\"UTF-8\"?><a/>",
            b"<?xml version=\"9.9\"?><a/>",
        ] {
            assert!(
                fault(xml, bad).is_some(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = format!("<{}></b>", "n".repeat(100_000));
        let (reason, _, _) = fault(xml, long.as_bytes()).unwrap();
        assert!(reason.len() < 200, "names are cut: {}", reason.len());
        assert!(fault(xml, b"<a></b>").is_some());
        assert!(fault(xml, b"<a").is_some());
        assert!(fault(xml, b"<a><!-- x -- y --></a>").is_some());
    }

    #[test]
    fn bodies_are_checked_against_their_format() {
        let json = BodyFormat::Json;
        assert_eq!(fault(json, br#"{"a": 1, "b": [true, null]}"#), None);
        assert_eq!(
            fault(json, b"{\"name\" = 1}"),
            Some(("expected `:`, found `=`".into(), "1".into(), "9".into()))
        );
        assert_eq!(
            fault(json, b"{\n  \"a\": 1,\n  \"b\": 2\n  \"c\": 3\n}"),
            Some((
                "expected `,` or `}`, found `\"`".into(),
                "4".into(),
                "3".into()
            ))
        );
        assert_eq!(
            fault(json, b"{\"a\": 1"),
            Some((
                "expected `,` or `}`, found the end of the body".into(),
                "1".into(),
                "8".into()
            ))
        );
        assert_eq!(
            fault(json, b"{\"a\": \"\xC3(\"}"),
            Some((
                "invalid UTF-8: found byte 0xC3".into(),
                "1".into(),
                "8".into()
            ))
        );
        assert_eq!(
            fault(json, b"name=a&serial=b"),
            Some((
                "expected a value, found `name` (a word that is not true, false or null)".into(),
                "1".into(),
                "1".into()
            ))
        );
        assert!(
            fault(json, b"{} {}")
                .unwrap()
                .0
                .starts_with("trailing characters")
        );
        let form = BodyFormat::Form;
        assert_eq!(fault(form, b"a=1&b=caf%C3%A9+au+lait&c"), None);
        assert_eq!(
            fault(form, b"a=1&b=%zz"),
            Some((
                "a `%` must be followed by two hex digits".into(),
                "1".into(),
                "7".into()
            ))
        );
        assert!(fault(form, b"a=%+1").is_some(), "a sign is no hex digit");
        assert_eq!(
            fault(form, b"a=%C3("),
            Some((
                "invalid UTF-8 once decoded: found `%`".into(),
                "1".into(),
                "3".into()
            ))
        );
    }

    #[test]
    fn configured_types_are_checked() {
        assert_eq!(
            MediaType::parse("Application/JSON; charset=\"UTF-8\"", false).unwrap(),
            MediaType {
                kind: "application".into(),
                subtype: "json".into(),
                charset: Some("utf-8".into())
            }
        );
        assert!(MediaType::parse("text/*", false).is_err());
        assert!(MediaType::parse("text/*", true).is_ok());
        assert!(MediaType::parse("*/*", true).is_err());
        assert!(MediaType::parse("json", true).is_err());
        assert!(MediaType::parse("text/plain; level=1", true).is_err());
        assert_eq!(listed(&types(&["a/b", "c/d", "e/*"])), "a/b, c/d or e/*");
    }
}
