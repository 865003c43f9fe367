//! `[[openapi]]`: routes derived from an OpenAPI 3.0 or 3.1 document (YAML or JSON).
//!
//! Each operation becomes a route: the first server's base path and the path template, the
//! method, its path, query and header parameters and its JSON body as a contract (named by
//! the `operationId`), the media types its request body takes and its successful responses
//! have, and its security requirement as the route's authentication. `$ref`s inside the
//! document are resolved; OpenAPI 3.0 schemas are read in their dialect (`nullable`,
//! boolean `exclusiveMinimum`) and every schema as a request's (a `readOnly` property is
//! not required of a request).
//!
//! Whatever the document says that the gateway does not check is reported with its JSON
//! pointer, as a problem (`unsupported = "refuse"`, the default) or a notice
//! (`unsupported = "warn"`): nothing of it is ignored silently.

use super::reader::{Problems, TableReader};
use crate::stages::negotiate::{MediaType, Negotiation};
use crate::stages::route::PathPattern;
use crate::stages::validate::{BodyRule, Contract, DEFAULT_MAX_ERRORS, In, Param, Schema};
use http::Method;
use serde_json::{Map, Value, json};
use std::path::Path;

/// The route settings an `[[openapi]]` entry (for all its operations) or one of its
/// `[openapi.operations.<operationId>]` tables may set over what the document says: a
/// route's, but its name, path, methods and contract, which the document gives, plus how
/// the contract reports (`unknown_query`, `blank_is_missing`, `max_errors`).
pub(super) static OPERATION: std::sync::LazyLock<Vec<&'static str>> =
    std::sync::LazyLock::new(|| {
        super::routes::ROUTE
            .iter()
            .copied()
            .filter(|k| !matches!(*k, "name" | "path" | "methods" | "validate"))
            .chain(["unknown_query", "blank_is_missing", "max_errors"])
            .collect()
    });

/// An `[[openapi]]` entry's keys: the document, how it is read, and [`OPERATION`]'s.
pub(super) static OPENAPI: std::sync::LazyLock<Vec<&'static str>> =
    std::sync::LazyLock::new(|| {
        ["document", "base_path", "unsupported", "operations"]
            .into_iter()
            .chain(OPERATION.iter().copied())
            .collect()
    });

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// How an operation's security requirement is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Security {
    /// Not by the gateway.
    None,
    /// A bearer token (`http` `bearer`, `oauth2`, `openIdConnect`) with these scopes.
    Bearer(Vec<String>),
    /// An API key in this header.
    ApiKeyHeader(String),
    /// An API key in this query parameter.
    ApiKeyQuery(String),
}

/// One operation, as a route's settings.
#[derive(Debug)]
pub(super) struct Derived {
    /// The `operationId`, or `METHOD path`.
    pub(super) name: String,
    /// Where in the document it is (`#/paths/~1devices/post`).
    pub(super) pointer: String,
    /// The base path and the path template.
    pub(super) pattern: PathPattern,
    /// Its method.
    pub(super) method: Method,
    /// What its request body may be and its responses are.
    pub(super) negotiation: Negotiation,
    /// Its parameters and body (limits and tuning set by the route's reader).
    pub(super) contract: Contract,
    /// Its security requirement.
    pub(super) security: Security,
}

/// What reading a document found: problems of the document itself, and the parts the
/// gateway does not check.
struct Findings {
    errors: Vec<(String, String)>,
    unsupported: Vec<(String, String)>,
}

impl Findings {
    fn error(&mut self, at: &str, message: impl Into<String>) {
        self.errors.push((at.to_owned(), message.into()));
    }
    fn unsupported(&mut self, at: &str, message: impl Into<String>) {
        self.unsupported.push((at.to_owned(), message.into()));
    }
}

/// `at` and one more reference token (escaped as JSON Pointer says).
fn ptr(at: &str, token: &str) -> String {
    format!("{at}/{}", token.replace('~', "~0").replace('/', "~1"))
}

/// Reads an `[[openapi]]` entry's document into its operations. Problems and unsupported
/// parts are reported at the entry's `document` key, each with its JSON pointer.
pub(super) fn read(
    t: &TableReader<'_, '_>,
    p: &mut Problems<'_>,
    dir: &Path,
) -> Option<Vec<Derived>> {
    let Some((file, span)) = t.string(p, "document") else {
        if t.get("document").is_none() {
            p.at(t.span.clone(), &t.key_path("document"), "missing".into())
                .expected =
                Some("the path of an OpenAPI 3.0 or 3.1 document (YAML or JSON)".into());
        }
        return None;
    };
    let warn = match t.string(p, "unsupported") {
        None => false,
        Some((w, _)) if w == "refuse" => false,
        Some((w, _)) if w == "warn" => true,
        Some((w, s)) => {
            p.at(
                s,
                &t.key_path("unsupported"),
                format!("unknown value `{w}`"),
            )
            .expected = Some("\"refuse\" or \"warn\"".into());
            false
        }
    };
    let base_override = t.string(p, "base_path");
    let key = t.key_path("document");
    let path = dir.join(&file);
    p.reads(&path);
    let doc = match load(&path) {
        Ok(doc) => doc,
        Err(e) => {
            p.at(span, &key, e);
            return None;
        }
    };
    let mut found = Findings {
        errors: Vec::new(),
        unsupported: Vec::new(),
    };
    let base = match &base_override {
        Some((b, s)) => {
            let b = b.trim_end_matches('/');
            if !b.is_empty() && !b.starts_with('/') {
                p.at(
                    s.clone(),
                    &t.key_path("base_path"),
                    format!("`{b}` must start with '/'"),
                );
            }
            b.to_owned()
        }
        None => base_path(&doc, &mut found),
    };
    let ops = operations(&doc, &base, &mut found);
    for (at, message) in found.errors {
        p.at(span.clone(), &key, format!("{file}#{at}: {message}"));
    }
    for (i, (at, message)) in found.unsupported.into_iter().enumerate() {
        let message = format!("{file}#{at}: not supported: {message}");
        if warn {
            p.notice(span.clone(), &key, message);
        } else {
            let problem = p.at(span.clone(), &key, message);
            if i == 0 {
                problem.expected = Some(
                    "a document whose every part the gateway checks, or unsupported = \"warn\" on this [[openapi]] entry to load it with the parts listed here unchecked".into(),
                );
            }
        }
    }
    Some(ops)
}

/// The document at `path` as JSON: a `.json` file is read as JSON, anything else as YAML;
/// an error when it is neither or no OpenAPI 3.0 or 3.1 document.
pub(crate) fn load(path: &Path) -> Result<Value, String> {
    let text = super::read_file_to_string(path)
        .map_err(|e| format!("cannot read the OpenAPI document {}: {e}", path.display()))?;
    let json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let doc = if json {
        serde_json::from_str::<Value>(&text)
            .map_err(|e| format!("the OpenAPI document {} is not JSON: {e}", path.display()))?
    } else {
        let n = yaml_nodes(&text)
            .map_err(|e| format!("the OpenAPI document {} is not YAML: {e}", path.display()))?;
        if n > MAX_NODES {
            return Err(format!(
                "the OpenAPI document {} holds more than {MAX_NODES} values once its YAML aliases are expanded",
                path.display()
            ));
        }
        let mut docs = yaml_rust2::YamlLoader::load_from_str(&text)
            .map_err(|e| format!("the OpenAPI document {} is not YAML: {e}", path.display()))?;
        if docs.len() != 1 {
            return Err(format!(
                "the OpenAPI document {} holds {} YAML documents; it must hold one",
                path.display(),
                docs.len()
            ));
        }
        yaml_to_json(docs.remove(0), "#")
            .map_err(|e| format!("the OpenAPI document {}: {e}", path.display()))?
    };
    let version = doc.get("openapi").and_then(Value::as_str).unwrap_or("");
    if !(version.starts_with("3.0.") || version.starts_with("3.1.")) {
        let found = if let Some(s) = doc.get("swagger") {
            format!("Swagger {s}; convert it to OpenAPI 3 first (for example with swagger2openapi)")
        } else if version.is_empty() {
            "no `openapi` version".to_owned()
        } else {
            format!("`openapi: {version}`")
        };
        return Err(format!(
            "{} is not an OpenAPI 3.0 or 3.1 document: it has {found}",
            path.display()
        ));
    }
    Ok(doc)
}

/// The most values a document may hold (its YAML aliases expanded): a few aliases of
/// aliases can otherwise stand for billions.
const MAX_NODES: u64 = 2_000_000;

/// How many values `text` holds once its aliases are expanded, read from the parser's
/// events without expanding them.
fn yaml_nodes(text: &str) -> Result<u64, yaml_rust2::ScanError> {
    use yaml_rust2::Event;
    #[derive(Default)]
    struct Count {
        sizes: std::collections::HashMap<usize, u64>,
        open: Vec<(usize, u64)>,
        total: u64,
    }
    impl Count {
        fn add(&mut self, n: u64) {
            match self.open.last_mut() {
                Some((_, c)) => *c = c.saturating_add(n),
                None => self.total = self.total.saturating_add(n),
            }
        }
    }
    impl yaml_rust2::parser::MarkedEventReceiver for Count {
        fn on_event(&mut self, ev: Event, _: yaml_rust2::scanner::Marker) {
            match ev {
                Event::Scalar(_, _, anchor, _) => {
                    if anchor > 0 {
                        self.sizes.insert(anchor, 1);
                    }
                    self.add(1);
                }
                Event::Alias(id) => {
                    let n = self.sizes.get(&id).copied().unwrap_or(1);
                    self.add(n);
                }
                Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                    self.open.push((anchor, 1));
                }
                Event::SequenceEnd | Event::MappingEnd => {
                    if let Some((anchor, n)) = self.open.pop() {
                        if anchor > 0 {
                            self.sizes.insert(anchor, n);
                        }
                        self.add(n);
                    }
                }
                _ => {}
            }
        }
    }
    let mut count = Count::default();
    yaml_rust2::parser::Parser::new_from_str(text).load(&mut count, true)?;
    Ok(count.total)
}

/// A YAML value as JSON: mapping keys become strings (`200:` is `"200"`); a float JSON
/// cannot hold, or anything YAML has and JSON has not, is an error naming its place.
fn yaml_to_json(y: yaml_rust2::Yaml, at: &str) -> Result<Value, String> {
    use yaml_rust2::Yaml;
    Ok(match y {
        Yaml::Null => Value::Null,
        Yaml::Boolean(b) => Value::Bool(b),
        Yaml::Integer(i) => Value::from(i),
        Yaml::String(s) => Value::String(s),
        Yaml::Real(r) => r
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| format!("at #{at}: `{r}` is a number JSON cannot hold"))?,
        Yaml::Array(a) => Value::Array(
            a.into_iter()
                .enumerate()
                .map(|(i, v)| yaml_to_json(v, &format!("{at}/{i}")))
                .collect::<Result<_, _>>()?,
        ),
        Yaml::Hash(h) => {
            let mut out = Map::new();
            for (k, v) in h {
                let k = match k {
                    Yaml::String(s) | Yaml::Real(s) => s,
                    Yaml::Integer(i) => i.to_string(),
                    Yaml::Boolean(b) => b.to_string(),
                    Yaml::Null => "null".into(),
                    _ => return Err(format!("at #{at}: a mapping key that is not a scalar")),
                };
                let v = yaml_to_json(v, &ptr(at, &k))?;
                out.insert(k, v);
            }
            Value::Object(out)
        }
        Yaml::Alias(_) | Yaml::BadValue => {
            return Err(format!("at #{at}: a YAML value that is not JSON"));
        }
    })
}

/// The base path routes are made on: the first server's path.
pub(crate) fn document_base(doc: &Value) -> String {
    base_path(
        doc,
        &mut Findings {
            errors: Vec::new(),
            unsupported: Vec::new(),
        },
    )
}

/// The first server's path (its variables at their defaults), without a trailing slash.
fn base_path(doc: &Value, found: &mut Findings) -> String {
    let Some(servers) = doc.get("servers").and_then(Value::as_array) else {
        return String::new();
    };
    let path_of = |s: &Value| -> String {
        let mut url = s
            .get("url")
            .and_then(Value::as_str)
            .unwrap_or("/")
            .to_owned();
        if let Some(vars) = s.get("variables").and_then(Value::as_object) {
            for (name, v) in vars {
                let default = v.get("default").and_then(Value::as_str).unwrap_or("");
                url = url.replace(&format!("{{{name}}}"), default);
            }
        }
        let path = match url.split_once("://") {
            Some((_, rest)) => rest.find('/').map_or("", |i| &rest[i..]).to_owned(),
            None => url,
        };
        path.trim_end_matches('/').to_owned()
    };
    let first = servers.first().map(path_of).unwrap_or_default();
    for (i, s) in servers.iter().enumerate().skip(1) {
        let other = path_of(s);
        if other != first {
            found.unsupported(
                &format!("/servers/{i}"),
                format!(
                    "routes are made on the first server's base path `{}`; this server's `{}` is not routed (set base_path to choose)",
                    if first.is_empty() { "/" } else { &first },
                    if other.is_empty() { "/" } else { &other }
                ),
            );
        }
    }
    first
}

/// Follows `$ref`s from `v` (at `at`) to what they name in the document.
fn deref<'d>(
    doc: &'d Value,
    v: &'d Value,
    at: &str,
    found: &mut Findings,
) -> Option<(&'d Value, String)> {
    let mut v = v;
    let mut at = at.to_owned();
    for _ in 0..32 {
        let Some(r) = v.get("$ref").and_then(Value::as_str) else {
            return Some((v, at));
        };
        let Some(local) = r.strip_prefix('#') else {
            found.unsupported(
                &at,
                format!("`$ref: {r}` names another document; the gateway reads one (bundle it first, for example with `redocly bundle`)"),
            );
            return None;
        };
        match doc.pointer(local) {
            Some(target) => {
                v = target;
                at = local.to_owned();
            }
            None => {
                found.error(&at, format!("`$ref: {r}` names nothing in the document"));
                return None;
            }
        }
    }
    found.error(&at, "`$ref`s that never end (a cycle)");
    None
}

/// Every operation of the document, concrete paths before templated ones.
fn operations(doc: &Value, base: &str, found: &mut Findings) -> Vec<Derived> {
    for (k, _) in doc.as_object().into_iter().flatten() {
        match k.as_str() {
            "openapi" | "info" | "servers" | "paths" | "components" | "security" | "tags"
            | "externalDocs" => {}
            "jsonSchemaDialect" => {
                let d = doc[k].as_str().unwrap_or("");
                if d != "https://spec.openapis.org/oas/3.1/dialect/base"
                    && d != "https://json-schema.org/draft/2020-12/schema"
                {
                    found.unsupported(
                        &ptr("", k),
                        format!("schemas in dialect `{d}`; the gateway checks JSON Schema 2020-12"),
                    );
                }
            }
            "webhooks" => found.unsupported(
                "/webhooks",
                "webhooks are requests the API sends; the gateway checks the requests it takes",
            ),
            x if x.starts_with("x-") => {}
            other => found.unsupported(&ptr("", other), format!("the top-level field `{other}`")),
        }
    }
    let v30 = doc["openapi"]
        .as_str()
        .is_some_and(|v| v.starts_with("3.0."));
    let schemas = Schemas::new(doc, v30, found);
    let schemes = doc.pointer("/components/securitySchemes");
    let top_security = doc.get("security");
    let mut out: Vec<Derived> = Vec::new();
    let Some(paths) = doc.get("paths").and_then(Value::as_object) else {
        if doc.get("paths").is_some() {
            found.error("/paths", "is not an object");
        }
        return out;
    };
    for (template, item) in paths {
        let item_at = ptr("/paths", template);
        let Some((item, _)) = deref(doc, item, &item_at, found) else {
            continue;
        };
        let full = format!("{base}{template}");
        if let Some(c) = template
            .chars()
            .find(|c| matches!(c, '?' | '#' | '*') || c.is_whitespace())
        {
            found.unsupported(
                &item_at,
                format!("the path `{template}`: `{c}` has no place in an OpenAPI path template"),
            );
            continue;
        }
        if template.split('/').any(|seg| seg == "." || seg == "..") {
            found.unsupported(
                &item_at,
                format!(
                    "the path `{template}`: a `.` or `..` segment no normalised request path has"
                ),
            );
            continue;
        }
        let pattern = match PathPattern::parse(&full) {
            Ok(p) => p,
            Err(e) => {
                found.unsupported(&item_at, format!("the path `{full}`: {e}"));
                continue;
            }
        };
        for (k, _) in item.as_object().into_iter().flatten() {
            if !METHODS.contains(&k.as_str())
                && !matches!(
                    k.as_str(),
                    "summary" | "description" | "parameters" | "$ref"
                )
                && !k.starts_with("x-")
            {
                found.unsupported(&ptr(&item_at, k), format!("the path item field `{k}`"));
            }
        }
        let shared = item.get("parameters");
        for method in METHODS {
            let Some(op) = item.get(*method) else {
                continue;
            };
            let at = ptr(&item_at, method);
            let m = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).expect("a method");
            if let Some(d) = operation(
                doc,
                &schemas,
                op,
                &at,
                shared,
                &item_at,
                &pattern,
                m,
                schemes,
                top_security,
                found,
            ) {
                if let Some(twin) = out.iter().find(|o| o.name == d.name) {
                    found.error(
                        &at,
                        format!("operationId `{}` is also #{}'s", d.name, twin.pointer),
                    );
                    continue;
                }
                out.push(d);
            }
        }
    }
    out.sort_by_key(|d| d.pattern.specificity());
    out
}

/// The document's schemas, converted for checking requests, and how one is compiled.
struct Schemas {
    /// `components`, with `schemas` converted: what `$ref`s in a compiled schema resolve
    /// against.
    components: Option<Value>,
    v30: bool,
}

impl Schemas {
    fn new(doc: &Value, v30: bool, found: &mut Findings) -> Schemas {
        let components = doc.get("components").map(|c| {
            let mut c = c.clone();
            if let Some(Value::Object(all)) = c.get_mut("schemas") {
                for (name, s) in all.iter_mut() {
                    *s = convert(
                        doc,
                        s,
                        &format!(
                            "/components/schemas/{}",
                            name.replace('~', "~0").replace('/', "~1")
                        ),
                        v30,
                        found,
                    );
                }
            }
            c
        });
        Schemas { components, v30 }
    }

    /// `schema` (at `at`) compiled as a request's, with the components it reaches (and only
    /// those: a schema compiled per operation with all of a large document's components
    /// would cost operations × components).
    fn compile(
        &self,
        doc: &Value,
        schema: &Value,
        at: &str,
        found: &mut Findings,
    ) -> Option<Schema> {
        let mut root = convert(doc, schema, at, self.v30, found);
        if let Some(c) = &self.components
            && has_ref(&root)
        {
            let reached = match reached(&root, c) {
                Ok(r) => r,
                Err(e) => {
                    found.error(at, e);
                    return None;
                }
            };
            if let Value::Object(o) = &mut root {
                o.insert("components".into(), reached);
            } else {
                root = json!({"allOf": [root], "components": reached});
            }
        }
        match Schema::compile(root) {
            Ok(s) => Some(s),
            Err(e) => {
                found.error(at, format!("the schema does not compile: {e}"));
                None
            }
        }
    }

    /// `schema` with a `$ref` at its top followed, for a parameter (whose type says how
    /// its text is read).
    fn resolved(
        &self,
        doc: &Value,
        schema: &Value,
        at: &str,
        found: &mut Findings,
    ) -> Option<(Value, String)> {
        let (s, at) = deref(doc, schema, at, found)?;
        let mut s = convert(doc, s, &at, self.v30, found);
        if let Some(items) = s.get("items").cloned() {
            let (i, i_at) = deref(doc, &items, &ptr(&at, "items"), found)?;
            s["items"] = convert(doc, i, &i_at, self.v30, found);
        }
        Some((s, at))
    }
}

/// The entries of `components` (`schemas/Device`, ...) that `root` reaches through its
/// `$ref`s, transitively, as a `components` object; an error for a cycle of `$ref`s that
/// never reaches a schema.
fn reached(root: &Value, components: &Value) -> Result<Value, String> {
    fn refs<'v>(v: &'v Value, out: &mut Vec<&'v str>) {
        match v {
            Value::Object(o) => {
                if let Some(r) = o.get("$ref").and_then(Value::as_str) {
                    out.push(r);
                }
                o.values().for_each(|x| refs(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }
    let mut out = Map::new();
    let mut todo = Vec::new();
    refs(root, &mut todo);
    while let Some(r) = todo.pop() {
        let Some(rest) = r.strip_prefix("#/components/") else {
            continue;
        };
        let mut tokens = rest.splitn(3, '/');
        let (Some(kind), Some(name)) = (tokens.next(), tokens.next()) else {
            continue;
        };
        let slot = out
            .entry(kind.to_owned())
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("an object");
        let name = name.replace("~1", "/").replace("~0", "~");
        if slot.contains_key(&name) {
            continue;
        }
        let Some(entry) = components.get(kind).and_then(|k| k.get(&name)) else {
            continue;
        };
        slot.insert(name, entry.clone());
        refs(entry, &mut todo);
    }
    // A `$ref` that only names another `$ref`, round and round, is no schema at all.
    let whole = json!({"components": out});
    for r in {
        let mut all = Vec::new();
        refs(root, &mut all);
        all
    } {
        let mut seen = Vec::new();
        let mut at = r;
        while let Some(target) = at.strip_prefix('#').and_then(|p| whole.pointer(p)) {
            match target.as_object() {
                Some(o) if o.len() == 1 => match o.get("$ref").and_then(Value::as_str) {
                    Some(next) if seen.contains(&next) => {
                        return Err(format!(
                            "`$ref: {r}` goes round `$ref`s that never reach a schema"
                        ));
                    }
                    Some(next) => {
                        seen.push(next);
                        at = next;
                    }
                    None => break,
                },
                _ => break,
            }
        }
    }
    Ok(whole["components"].clone())
}

fn has_ref(v: &Value) -> bool {
    match v {
        Value::Object(o) => o.contains_key("$ref") || o.values().any(has_ref),
        Value::Array(a) => a.iter().any(has_ref),
        _ => false,
    }
}

/// A schema as a request is checked against it: OpenAPI 3.0's dialect read as 2020-12
/// (`nullable`, boolean exclusive bounds, a `$ref`'s siblings ignored), a `readOnly`
/// property not required, examples dropped; a `$ref` to another document reported.
fn convert(doc: &Value, schema: &Value, at: &str, v30: bool, found: &mut Findings) -> Value {
    let Value::Object(o) = schema else {
        return schema.clone();
    };
    if let Some(r) = o.get("$ref").and_then(Value::as_str) {
        if !r.starts_with('#') {
            found.unsupported(
                at,
                format!(
                    "`$ref: {r}` names another document; the gateway reads one (bundle it first)"
                ),
            );
            return json!({});
        }
        if v30 {
            return json!({"$ref": r});
        }
    }
    let mut out = Map::new();
    for (k, v) in o {
        let here = ptr(at, k);
        let v = match k.as_str() {
            "example" | "examples" | "xml" | "externalDocs" | "discriminator" => continue,
            "enum" | "const" | "default" | "required" | "type" | "format" | "pattern" => v.clone(),
            "properties" | "patternProperties" | "$defs" | "definitions" | "dependentSchemas" => {
                match v {
                    Value::Object(m) => Value::Object(
                        m.iter()
                            .map(|(name, s)| {
                                (name.clone(), convert(doc, s, &ptr(&here, name), v30, found))
                            })
                            .collect(),
                    ),
                    other => other.clone(),
                }
            }
            "allOf" | "anyOf" | "oneOf" | "prefixItems" => match v {
                Value::Array(a) => Value::Array(
                    a.iter()
                        .enumerate()
                        .map(|(i, s)| convert(doc, s, &format!("{here}/{i}"), v30, found))
                        .collect(),
                ),
                other => other.clone(),
            },
            "items"
            | "additionalProperties"
            | "not"
            | "if"
            | "then"
            | "else"
            | "contains"
            | "propertyNames"
            | "unevaluatedProperties"
            | "unevaluatedItems" => convert(doc, v, &here, v30, found),
            _ => v.clone(),
        };
        out.insert(k.clone(), v);
    }
    if v30 {
        if out.remove("nullable") == Some(Value::Bool(true)) {
            if let Some(Value::String(t)) = out.get("type").cloned() {
                out.insert("type".into(), json!([t, "null"]));
            }
            if let Some(Value::Array(e)) = out.get_mut("enum")
                && !e.contains(&Value::Null)
            {
                e.push(Value::Null);
            }
        }
        for (flag, bound) in [
            ("exclusiveMinimum", "minimum"),
            ("exclusiveMaximum", "maximum"),
        ] {
            if let Some(Value::Bool(b)) = out.get(flag).cloned() {
                out.remove(flag);
                if b && let Some(n) = out.remove(bound) {
                    out.insert(flag.into(), n);
                }
            }
        }
    }
    // OpenAPI: a readOnly property listed as required is required of responses only.
    if let (Some(Value::Array(required)), Some(Value::Object(props))) =
        (out.get("required"), o.get("properties"))
    {
        let read_only = |name: &str| {
            props.get(name).is_some_and(|p| {
                let p = match p
                    .get("$ref")
                    .and_then(Value::as_str)
                    .and_then(|r| r.strip_prefix('#'))
                {
                    Some(r) => doc.pointer(r).unwrap_or(p),
                    None => p,
                };
                p.get("readOnly") == Some(&Value::Bool(true))
            })
        };
        let kept: Vec<Value> = required
            .iter()
            .filter(|n| !n.as_str().is_some_and(read_only))
            .cloned()
            .collect();
        out.insert("required".into(), Value::Array(kept));
    }
    Value::Object(out)
}

/// One operation as a route's settings, or `None` when it cannot be one.
#[allow(clippy::too_many_arguments)]
fn operation(
    doc: &Value,
    schemas: &Schemas,
    op: &Value,
    at: &str,
    shared: Option<&Value>,
    item_at: &str,
    pattern: &PathPattern,
    method: Method,
    schemes: Option<&Value>,
    top_security: Option<&Value>,
    found: &mut Findings,
) -> Option<Derived> {
    let Some(fields) = op.as_object() else {
        found.error(at, "an operation must be an object");
        return None;
    };
    for k in fields.keys() {
        match k.as_str() {
            "tags" | "summary" | "description" | "externalDocs" | "operationId" | "parameters"
            | "requestBody" | "responses" | "deprecated" | "security" => {}
            "callbacks" => found.unsupported(
                &ptr(at, k),
                "callbacks are requests the API sends; the gateway checks the requests it takes",
            ),
            "servers" => found.unsupported(
                &ptr(at, k),
                "an operation's own servers: its route is on the document's base path",
            ),
            x if x.starts_with("x-") => {}
            other => found.unsupported(&ptr(at, other), format!("the operation field `{other}`")),
        }
    }
    let name = match op.get("operationId") {
        None => format!("{method} {pattern}"),
        Some(Value::String(id)) if !id.trim().is_empty() => id.clone(),
        Some(other) => {
            found.error(
                &ptr(at, "operationId"),
                format!("an operationId must be a name, found {other}"),
            );
            return None;
        }
    };
    // Parameters: the path item's, then the operation's (which replace same-named ones).
    let mut declared: Vec<(Value, String)> = Vec::new();
    for (list, list_at) in [
        (shared, ptr(item_at, "parameters")),
        (op.get("parameters"), ptr(at, "parameters")),
    ] {
        for (i, raw) in list
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let Some((p, p_at)) = deref(doc, raw, &format!("{list_at}/{i}"), found) else {
                continue;
            };
            let key = |v: &Value| (v.get("in").cloned(), v.get("name").cloned());
            declared.retain(|(d, _)| key(d) != key(p));
            declared.push((p.clone(), p_at));
        }
    }
    let mut params = Vec::new();
    for (p, p_at) in &declared {
        if let Some(param) = parameter(doc, schemas, p, p_at, pattern, found) {
            params.push(param);
        }
    }
    let (mut accepts, mut body) = (Vec::new(), None);
    if let Some(rb) = op.get("requestBody")
        && let Some((rb, rb_at)) = deref(doc, rb, &ptr(at, "requestBody"), found)
    {
        let required = rb.get("required").and_then(Value::as_bool).unwrap_or(false);
        for (media, content) in rb
            .get("content")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let c_at = ptr(&ptr(&rb_at, "content"), media);
            let t = match MediaType::parse(media, true) {
                Ok(t) => t,
                Err(e) => {
                    found.unsupported(&c_at, format!("the media type `{media}`: {e}"));
                    continue;
                }
            };
            let json =
                t.subtype == "json" && t.kind == "application" || t.subtype.ends_with("+json");
            if let Some(schema) = content.get("schema") {
                if !json {
                    found.unsupported(&ptr(&c_at, "schema"), format!("a schema for {media} bodies: the gateway checks that they are well formed, and JSON bodies against their schema"));
                } else if body.is_none() {
                    body = schemas
                        .compile(doc, schema, &ptr(&c_at, "schema"), found)
                        .map(|schema| BodyRule { schema, required });
                } else {
                    found.unsupported(&ptr(&c_at, "schema"), format!("a second JSON media type with a schema ({media}); the first one's checks every JSON body"));
                }
            }
            if content.get("encoding").is_some() {
                found.unsupported(
                    &ptr(&c_at, "encoding"),
                    "encodings of body properties are not checked",
                );
            }
            accepts.push(t);
        }
    }
    let mut produces: Vec<MediaType> = Vec::new();
    let mut any = false;
    for (code, resp) in op
        .get("responses")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        if !(code.starts_with('2') || code == "2XX") {
            continue;
        }
        let Some((resp, _)) = deref(doc, resp, &ptr(&ptr(at, "responses"), code), found) else {
            continue;
        };
        for media in resp
            .get("content")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(k, _)| k)
        {
            match MediaType::parse(media, false) {
                Ok(t) if !produces.contains(&t) => produces.push(t),
                Ok(_) => {}
                Err(_) => any = true,
            }
        }
    }
    if any {
        // A response of any type (`*/*`, `image/*`): every Accept is answerable.
        produces.clear();
    }
    let security = security(op.get("security").or(top_security), at, schemes, doc, found);
    Some(Derived {
        contract: Contract {
            params,
            body,
            refuse_unknown_query: false,
            also_allowed: Vec::new(),
            blank_is_missing: true,
            max_errors: DEFAULT_MAX_ERRORS,
            operation: Some(name.clone()),
        },
        name,
        pointer: at.to_owned(),
        pattern: pattern.clone(),
        method,
        negotiation: Negotiation { accepts, produces },
        security,
    })
}

/// One parameter, or `None` when the gateway does not check it (reported) or the document
/// gets it wrong (reported).
fn parameter(
    doc: &Value,
    schemas: &Schemas,
    p: &Value,
    at: &str,
    pattern: &PathPattern,
    found: &mut Findings,
) -> Option<Param> {
    let (Some(name), Some(location)) = (
        p.get("name").and_then(Value::as_str),
        p.get("in").and_then(Value::as_str),
    ) else {
        found.error(at, "a parameter needs `name` and `in`");
        return None;
    };
    let location = match location {
        "path" => In::Path,
        "query" => In::Query,
        "header" => In::Header,
        "cookie" => {
            found.unsupported(
                at,
                format!("the cookie parameter `{name}`: cookies are not checked"),
            );
            return None;
        }
        other => {
            found.error(
                &ptr(at, "in"),
                format!("`in: {other}` is no location (path, query, header or cookie)"),
            );
            return None;
        }
    };
    if name.is_empty()
        || (location == In::Header && http::HeaderName::from_bytes(name.as_bytes()).is_err())
    {
        found.error(
            &ptr(at, "name"),
            format!("`{name}` is not a parameter name"),
        );
        return None;
    }
    // OpenAPI: these header parameters are ignored (the media types and security say them).
    if location == In::Header
        && ["accept", "content-type", "authorization"].contains(&name.to_ascii_lowercase().as_str())
    {
        return None;
    }
    if location == In::Path && !pattern.to_string().contains(&format!("{{{name}}}")) {
        found.error(at, format!("the path has no parameter {{{name}}}"));
        return None;
    }
    if p.get("content").is_some() {
        found.unsupported(&ptr(at, "content"), format!("the parameter `{name}` described by `content`: parameters are checked by their `schema`"));
        return None;
    }
    let schema = match p.get("schema") {
        Some(s) => schemas.resolved(doc, s, &ptr(at, "schema"), found)?,
        None => (json!({"type": "string"}), at.to_owned()),
    };
    let default_style = if location == In::Query {
        "form"
    } else {
        "simple"
    };
    let style = p
        .get("style")
        .and_then(Value::as_str)
        .unwrap_or(default_style);
    let explode = p
        .get("explode")
        .and_then(Value::as_bool)
        .unwrap_or(style == "form");
    if style != default_style {
        found.unsupported(
            &ptr(at, "style"),
            format!("the parameter `{name}` in style `{style}`"),
        );
        return None;
    }
    let kind = schema.0.get("type").and_then(Value::as_str).unwrap_or("");
    let plain = match kind {
        "object" => Some("an object"),
        "array" if location != In::Query => Some("an array outside the query"),
        "array" if !explode => Some("an array that is not exploded (comma-separated)"),
        _ => None,
    };
    if let Some(what) = plain {
        found.unsupported(at, format!("the parameter `{name}` as {what}: the gateway checks single values, and query arrays as repeated parameters"));
        return None;
    }
    let compiled = schemas.compile(doc, &schema.0, &schema.1, found)?;
    let required =
        location == In::Path || p.get("required").and_then(Value::as_bool).unwrap_or(false);
    Some(Param::new(location, name, required, compiled))
}

/// How an operation's security requirement (`security`, or the document's) is checked.
fn security(
    requirement: Option<&Value>,
    at: &str,
    schemes: Option<&Value>,
    doc: &Value,
    found: &mut Findings,
) -> Security {
    let Some(list) = requirement.and_then(Value::as_array) else {
        return Security::None;
    };
    let at = ptr(at, "security");
    if list.is_empty() {
        return Security::None;
    }
    if list
        .iter()
        .any(|r| r.as_object().is_some_and(Map::is_empty))
    {
        found.unsupported(&at, "optional security (an empty requirement `{}`): the route checks no credentials, the upstream still sees them");
        return Security::None;
    }
    if list.len() > 1 {
        found.unsupported(
            &format!("{at}/1"),
            "alternative security requirements: the route checks the first one only",
        );
    }
    let Some(first) = list[0].as_object() else {
        found.error(
            &format!("{at}/0"),
            "a security requirement must be an object",
        );
        return Security::None;
    };
    if first.len() > 1 {
        found.unsupported(
            &format!("{at}/0"),
            "several schemes required together: the route checks the first one only",
        );
    }
    let Some((scheme_name, scopes)) = first.iter().next() else {
        return Security::None;
    };
    let scopes: Vec<String> = scopes
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect();
    let Some(raw) = schemes.and_then(|s| s.get(scheme_name)) else {
        found.error(
            &format!("{at}/0"),
            format!("the security scheme `{scheme_name}` is not in #/components/securitySchemes"),
        );
        return Security::None;
    };
    let s_at = ptr("/components/securitySchemes", scheme_name);
    let Some((scheme, s_at)) = deref(doc, raw, &s_at, found) else {
        return Security::None;
    };
    let kind = scheme.get("type").and_then(Value::as_str).unwrap_or("");
    match kind {
        "oauth2" | "openIdConnect" => Security::Bearer(scopes),
        "http" => {
            let s = scheme.get("scheme").and_then(Value::as_str).unwrap_or("");
            if s.eq_ignore_ascii_case("bearer") {
                Security::Bearer(scopes)
            } else {
                found.unsupported(&s_at, format!("HTTP `{s}` authentication: the route checks no credentials (bearer tokens and API keys are checked)"));
                Security::None
            }
        }
        "apiKey" => {
            let name = scheme
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            match scheme.get("in").and_then(Value::as_str) {
                Some("header") if http::HeaderName::from_bytes(name.as_bytes()).is_ok() => {
                    Security::ApiKeyHeader(name.to_ascii_lowercase())
                }
                Some("query") if !name.is_empty() => Security::ApiKeyQuery(name),
                Some("cookie") => {
                    found.unsupported(
                        &s_at,
                        "an API key in a cookie: the route checks no credentials",
                    );
                    Security::None
                }
                _ => {
                    found.error(&s_at, format!("the API key scheme needs `in` (header or query) and a `name` (found `{name}`)"));
                    Security::None
                }
            }
        }
        other => {
            found.unsupported(
                &s_at,
                format!("the security scheme type `{other}`: the route checks no credentials"),
            );
            Security::None
        }
    }
}
