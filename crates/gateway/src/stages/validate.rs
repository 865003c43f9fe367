//! The validate stage: a route's request contract — its path, query and header parameters
//! and its JSON body schema — checked before the upstream sees the request, every problem
//! collected into one `validation_failed` with an `errors[]` item each (`in`, `pointer` or
//! `name`, a stable `reason`, a `detail` quoting the expectation and, unless the field is a
//! secret, the value received).
//!
//! Schemas are JSON Schema (2020-12 unless their `$schema` says otherwise), compiled by the
//! `jsonschema` crate when the configuration loads, with `format` checked. Parameters are
//! text: each is read as its schema's `type` says (integer, number, boolean, string, or an
//! array of those from repeated parameters) before the schema checks it. Parameters and
//! headers are checked here; a body is checked once it has been read whole, just before
//! forwarding ([`Pending`], in `forward`), so that one answer lists the problems of both.

use crate::error::GatewayError;
use crate::pipeline::context::{Flow, RequestCtx};
use candor_catalog::{FieldError, codes};
use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::{ValidationError, Validator};
use serde_json::Value;
use std::cell::Cell;
use std::collections::HashMap;
use std::sync::Arc;

/// How many problems one answer lists unless the route says otherwise.
pub(crate) const DEFAULT_MAX_ERRORS: usize = 20;

/// Where a parameter is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum In {
    /// A `{name}` of the route's path.
    Path,
    /// The query string.
    Query,
    /// A request header.
    Header,
}

impl In {
    /// The word `errors[].in` uses.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            In::Path => "path",
            In::Query => "query",
            In::Header => "header",
        }
    }

    /// Parses the configuration's word.
    pub(crate) fn parse(s: &str) -> Option<In> {
        match s {
            "path" => Some(In::Path),
            "query" => Some(In::Query),
            "header" => Some(In::Header),
            _ => None,
        }
    }
}

/// A compiled JSON Schema, with its source (for the property names a did-you-mean offers).
pub(crate) struct Schema {
    validator: Validator,
    /// The same schema over a body read as a [`json_tree`](super::json_tree): the quick
    /// yes for a valid body.
    quick: Validator<super::json_tree::Tree>,
    root: Value,
}

impl std::fmt::Debug for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schema").field("root", &self.root).finish()
    }
}

impl Schema {
    /// Compiles `root`, with formats checked; the error says where in the schema it is wrong.
    pub(crate) fn compile(root: Value) -> Result<Schema, String> {
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&root)
            .map_err(|e| {
                let at = e.instance_path().as_str();
                if at.is_empty() {
                    e.to_string()
                } else {
                    format!("{e} (at #{at})")
                }
            })?;
        let quick = jsonschema::options_for::<super::json_tree::Tree>()
            .should_validate_formats(true)
            .build(&root)
            .map_err(|e| e.to_string())?;
        Ok(Schema {
            validator,
            quick,
            root,
        })
    }

    /// The schema's source.
    pub(crate) fn source(&self) -> &Value {
        &self.root
    }
}

/// How a parameter's text is read before its schema checks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scalar {
    String,
    Integer,
    Number,
    Boolean,
}

impl Scalar {
    fn of(schema: &Value) -> Scalar {
        let t = match schema.get("type") {
            Some(Value::String(t)) => t.as_str(),
            Some(Value::Array(ts)) => ts
                .iter()
                .filter_map(Value::as_str)
                .find(|t| *t != "null")
                .unwrap_or("string"),
            _ => "string",
        };
        match t {
            "integer" => Scalar::Integer,
            "number" => Scalar::Number,
            "boolean" => Scalar::Boolean,
            _ => Scalar::String,
        }
    }

    /// The JSON value of `text`, or what was expected.
    fn read(self, text: &str) -> Result<Value, &'static str> {
        match self {
            Scalar::String => Ok(Value::String(text.to_owned())),
            Scalar::Integer => text
                .parse::<i64>()
                .map(Value::from)
                .map_err(|_| "an integer"),
            Scalar::Number => text
                .parse::<f64>()
                .ok()
                .filter(|n| n.is_finite())
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .ok_or("a number"),
            Scalar::Boolean => match text {
                "true" => Ok(Value::Bool(true)),
                "false" => Ok(Value::Bool(false)),
                _ => Err("true or false"),
            },
        }
    }
}

/// One parameter of the contract.
#[derive(Debug)]
pub(crate) struct Param {
    /// Where it is.
    pub(crate) location: In,
    /// Its name (a header's in lower case).
    pub(crate) name: String,
    /// Whether a request must carry it.
    pub(crate) required: bool,
    /// What its value must be.
    pub(crate) schema: Schema,
    scalar: Scalar,
    /// An array: every value of a repeated parameter, each read as `scalar`.
    array: bool,
    secret: bool,
}

impl Param {
    /// A parameter checked against `schema`.
    pub(crate) fn new(location: In, name: &str, required: bool, schema: Schema) -> Param {
        let src = schema.source();
        let array = src.get("type").and_then(Value::as_str) == Some("array");
        let scalar = if array {
            src.get("items").map_or(Scalar::String, Scalar::of)
        } else {
            Scalar::of(src)
        };
        let name = if location == In::Header {
            name.to_ascii_lowercase()
        } else {
            name.to_owned()
        };
        Param {
            secret: is_secret(&name)
                || src.get("format").and_then(Value::as_str) == Some("password"),
            location,
            name,
            required,
            schema,
            scalar,
            array,
        }
    }
}

/// The body a route takes.
#[derive(Debug)]
pub(crate) struct BodyRule {
    /// Its schema.
    pub(crate) schema: Schema,
    /// Whether a request must have one.
    pub(crate) required: bool,
}

/// A route's request contract.
#[derive(Debug)]
pub(crate) struct Contract {
    /// Path, query and header parameters, in the order they are reported.
    pub(crate) params: Vec<Param>,
    /// The JSON body.
    pub(crate) body: Option<BodyRule>,
    /// Whether query parameters the contract does not name are refused.
    pub(crate) refuse_unknown_query: bool,
    /// Query parameters that are not the contract's but are allowed (the route's API key).
    pub(crate) also_allowed: Vec<String>,
    /// Whether a blank string (empty or only spaces) counts as a missing field.
    pub(crate) blank_is_missing: bool,
    /// How many problems one answer lists.
    pub(crate) max_errors: usize,
    /// The OpenAPI operation the contract comes from, named in errors.
    pub(crate) operation: Option<String>,
}

/// A problem found, with its place in the order problems are reported.
#[derive(Debug)]
pub(crate) struct Found {
    order: (u8, usize),
    field: FieldError,
}

/// Parameter problems found at the validate stage, waiting for the body's (checked once the
/// body has been read whole, before forwarding).
#[derive(Debug)]
pub(crate) struct Pending {
    contract: Arc<Contract>,
    found: Vec<Found>,
}

impl Pending {
    /// Checks the body (`None`: there is none) and answers `validation_failed` with every
    /// problem, the parameters' and the body's.
    pub(crate) fn finish(self, body: Option<&Json>) -> Result<(), GatewayError> {
        let Pending {
            contract,
            mut found,
        } = self;
        let mut more = 0;
        if let Some(rule) = &contract.body {
            match body {
                Some(v) => body_problems(&contract, &rule.schema, v, &mut found, &mut more),
                None if rule.required => found.push(Found {
                    order: (3, 0),
                    field: FieldError {
                        location: "body".into(),
                        pointer: "#".into(),
                        name: "(body)".into(),
                        reason: "required".into(),
                        detail: "is required: this operation takes a JSON body".into(),
                    },
                }),
                None => {}
            }
        }
        if found.is_empty() {
            Ok(())
        } else {
            Err(failed(&contract, found, more))
        }
    }
}

impl Pending {
    /// Whether `body` is a JSON body this contract accepts with nothing to say, found the
    /// quick way ([`json_tree`](super::json_tree)). `false` is no verdict: the full way
    /// ([`parse_json`], then [`Pending::finish`]) decides, and describes what is wrong.
    pub(crate) fn accepts_at_once(&self, body: &[u8]) -> bool {
        let Some(rule) = &self.contract.body else {
            return false;
        };
        if !self.found.is_empty() {
            return false;
        }
        // A blank member the contract may count as missing: the full way finds out.
        match super::json_tree::read(body) {
            Some(b) if !(b.blank && self.contract.blank_is_missing) => {
                rule.schema.quick.is_valid(&b.root)
            }
            _ => false,
        }
    }

    /// Answers `validation_failed` with the parameters' problems, for a body the schema does
    /// not check (one in another media type the route also accepts, such as XML).
    pub(crate) fn finish_unchecked_body(self) -> Result<(), GatewayError> {
        if self.found.is_empty() {
            Ok(())
        } else {
            Err(failed(&self.contract, self.found, 0))
        }
    }
}

/// A JSON body schema checked as the gateway checks a request body (one parse, then the
/// compiled schema, every problem described), for benchmarks (`benches/validate.rs`) and
/// tools that check bodies outside a request.
#[derive(Debug)]
pub struct BodyCheck(Arc<Contract>);

impl BodyCheck {
    /// Compiles `schema` (JSON Schema, formats checked), as a route's `validate.body` is.
    pub fn compile(schema: Value) -> Result<BodyCheck, String> {
        Ok(BodyCheck(Arc::new(Contract {
            params: Vec::new(),
            body: Some(BodyRule {
                schema: Schema::compile(schema)?,
                required: true,
            }),
            refuse_unknown_query: false,
            also_allowed: Vec::new(),
            blank_is_missing: true,
            max_errors: DEFAULT_MAX_ERRORS,
            operation: None,
        })))
    }

    /// The `errors[]` items a request with this body would get (none: it is valid), or
    /// `None` when the body is not JSON at all (`malformed_body`).
    pub fn problems(&self, body: &[u8]) -> Option<Vec<FieldError>> {
        let pending = Pending {
            contract: self.0.clone(),
            found: Vec::new(),
        };
        if pending.accepts_at_once(body) {
            return Some(Vec::new());
        }
        let v = parse_json(body).ok()?;
        Some(
            pending
                .finish(Some(&v))
                .err()
                .map_or_else(Vec::new, |e| e.fields),
        )
    }
}

/// Runs the stage: parameters and headers now; the body, if the request has one and the
/// contract has a schema for it, once `forward` has read it (see [`Pending`]).
pub(crate) fn run(
    contract: &Arc<Contract>,
    ctx: &mut RequestCtx<'_>,
) -> Result<Flow, GatewayError> {
    let mut found = Vec::new();
    param_problems(contract, ctx, &mut found);
    let has_body = ctx.has_body();
    let pending = Pending {
        contract: contract.clone(),
        found,
    };
    if contract.body.is_some() && has_body {
        let n = pending.found.len();
        ctx.trail.record(
            "validate",
            "body next",
            None,
            vec![("parameter_problems", n.to_string())],
        );
        ctx.validation = Some(pending);
        return Ok(Flow::Continue);
    }
    match pending.finish(None) {
        Ok(()) => {
            ctx.trail.record("validate", "pass", None, Vec::new());
            Ok(Flow::Continue)
        }
        Err(e) => {
            ctx.trail
                .record("validate", "fail", Some(e.code), Vec::new());
            Err(e)
        }
    }
}

/// `validation_failed` with the first `max_errors` problems in order, and the total (`more`:
/// problems counted but not described).
fn failed(contract: &Contract, mut found: Vec<Found>, more: usize) -> GatewayError {
    found.sort_by_key(|f| f.order);
    let total = found.len() + more;
    let shown = contract.max_errors.max(1);
    let mut summary: Vec<String> = found
        .iter()
        .take(3)
        .map(|f| format!("{} {}", f.field.name, f.field.detail))
        .collect();
    if total > 3 {
        summary.push(format!("and {} more", total - 3));
    }
    let mut summary = summary.join("; ");
    if total > shown {
        summary.push_str(&format!(" (errors lists the first {shown} of {total})"));
    }
    let mut err = GatewayError::new(codes::VALIDATION_FAILED)
        .param("count", total.to_string())
        .param("summary", summary)
        .extension("error_count", total.into());
    if let Some(op) = &contract.operation {
        err = err.extension("operation", op.clone().into());
    }
    err.fields = found.into_iter().take(shown).map(|f| f.field).collect();
    err
}

fn param_problems(contract: &Contract, ctx: &RequestCtx<'_>, found: &mut Vec<Found>) {
    let captures = ctx
        .route
        .map(|r| r.config.pattern.captures(ctx.path()))
        .unwrap_or_default();
    let query = query_pairs(ctx.parts.uri.query().unwrap_or(""));
    for (i, p) in contract.params.iter().enumerate() {
        let order = |rank| (rank, i);
        let values: Vec<Result<&str, ()>> = match p.location {
            In::Path => captures
                .iter()
                .filter(|(n, _)| *n == p.name)
                .map(|(_, v)| Ok(*v))
                .collect(),
            In::Query => query
                .iter()
                .filter(|(n, _)| *n == p.name)
                .map(|(_, v)| Ok(v.as_str()))
                .collect(),
            In::Header => ctx
                .parts
                .headers
                .get_all(p.name.as_str())
                .iter()
                .map(|v| v.to_str().map_err(|_| ()))
                .collect(),
        };
        let rank = match p.location {
            In::Path => 0,
            In::Query => 1,
            In::Header => 2,
        };
        let mut push = |reason: &str, detail: String| {
            found.push(Found {
                order: order(rank),
                field: FieldError {
                    location: p.location.as_str().into(),
                    pointer: p.name.clone(),
                    name: p.name.clone(),
                    reason: reason.into(),
                    detail,
                },
            });
        };
        if values.is_empty() {
            if p.required {
                push("required", "is required".into());
            }
            continue;
        }
        if values.iter().any(Result::is_err) {
            push(
                "invalid",
                "is present but unreadable: its value holds bytes that are not visible ASCII"
                    .into(),
            );
            continue;
        }
        let texts: Vec<&str> = values.into_iter().map(|v| v.unwrap_or("")).collect();
        if !p.array && texts.len() > 1 {
            push(
                "repeated",
                format!("is sent {} times; it takes one value", texts.len()),
            );
            continue;
        }
        if contract.blank_is_missing && p.required && texts.iter().all(|t| t.trim().is_empty()) {
            push("blank", "is blank; a value is required".into());
            continue;
        }
        let mut read = Vec::with_capacity(texts.len());
        let mut unreadable = false;
        for t in &texts {
            match p.scalar.read(t) {
                Ok(v) => read.push(v),
                Err(expected) => {
                    let got = if p.secret {
                        String::new()
                    } else {
                        format!(", got \"{}\"", clip(t))
                    };
                    push("type", format!("expected {expected}{got}"));
                    unreadable = true;
                    break;
                }
            }
        }
        if unreadable {
            continue;
        }
        let value = if p.array {
            Value::Array(read)
        } else {
            read.pop().unwrap_or(Value::Null)
        };
        for e in p.schema.validator.iter_errors(&value) {
            for (_, reason, detail) in describe(&e, &p.schema, p.secret, &HashMap::new()) {
                push(&reason, detail);
            }
        }
    }
    if contract.refuse_unknown_query {
        let known: Vec<&str> = contract
            .params
            .iter()
            .filter(|p| p.location == In::Query)
            .map(|p| p.name.as_str())
            .chain(contract.also_allowed.iter().map(String::as_str))
            .collect();
        let mut seen: Vec<&str> = Vec::new();
        for (j, (name, _)) in query.iter().enumerate() {
            if known.contains(&name.as_str()) || seen.contains(&name.as_str()) {
                continue;
            }
            seen.push(name);
            let hint = match crate::config::did_you_mean(name, &known) {
                Some(s) => format!("; did you mean `{s}`?"),
                None if known.is_empty() => "; this operation takes no query parameters".into(),
                None => format!("; it takes {}", known.join(", ")),
            };
            found.push(Found {
                order: (1, contract.params.len() + j),
                field: FieldError {
                    location: "query".into(),
                    pointer: name.clone(),
                    name: name.clone(),
                    reason: "unknown".into(),
                    detail: format!("is not a parameter of this operation{hint}"),
                },
            });
        }
    }
}

/// The query string's name / value pairs, decoded (`+` is a space), in order.
pub(crate) fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// Percent-decodes `s` (`+` as a space); an escape that is not one is kept as it is.
pub(crate) fn decode(s: &str) -> String {
    if !s.contains(['%', '+']) {
        return s.to_owned();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => match s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                Some(x) => {
                    out.push(x);
                    i += 2;
                }
                None => out.push(b'%'),
            },
            x => out.push(x),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A JSON body as the contract reads it ([`parse_json`]).
#[derive(Debug)]
pub(crate) struct Json {
    /// The body.
    value: Value,
    /// Whether a member of an object in it is a blank string (noted while parsing, so that a
    /// body without one is not walked again to find out).
    blank: bool,
}

/// A JSON body as the contract checks it: as `serde_json` reads a `Value` (nested at most
/// 128 deep, numbers within f64, no lone surrogates), and an object repeating a key is an
/// error (the upstream might read the other one than was checked).
pub(crate) fn parse_json(body: &[u8]) -> Result<Json, serde_json::Error> {
    use serde::de::{DeserializeSeed, Deserializer, Error, MapAccess, SeqAccess, Visitor};
    /// The visitor, with where it notes a blank member.
    #[derive(Clone, Copy)]
    struct Checked<'b>(&'b Cell<bool>);
    impl<'de> DeserializeSeed<'de> for Checked<'_> {
        type Value = Value;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
            d.deserialize_any(self)
        }
    }
    impl<'de> Visitor<'de> for Checked<'_> {
        type Value = Value;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON value")
        }
        fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
            Ok(Value::Bool(b))
        }
        fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
            Ok(Value::from(n))
        }
        fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
            Ok(Value::from(n))
        }
        fn visit_f64<E>(self, n: f64) -> Result<Value, E> {
            Ok(serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number))
        }
        fn visit_str<E>(self, t: &str) -> Result<Value, E> {
            Ok(Value::String(t.to_owned()))
        }
        fn visit_string<E>(self, t: String) -> Result<Value, E> {
            Ok(Value::String(t))
        }
        fn visit_unit<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            let mut out = Vec::new();
            while let Some(v) = seq.next_element_seed(self)? {
                out.push(v);
            }
            Ok(Value::Array(out))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
            let mut out = serde_json::Map::new();
            while let Some(k) = map.next_key::<String>()? {
                // One lookup for the check and the insert.
                match out.entry(k) {
                    serde_json::map::Entry::Vacant(slot) => {
                        let v = map.next_value_seed(self)?;
                        if is_blank(&v) {
                            self.0.set(true);
                        }
                        slot.insert(v);
                    }
                    serde_json::map::Entry::Occupied(taken) => {
                        return Err(A::Error::custom(format!(
                            "the key `{}` appears twice in one object",
                            clip(taken.key())
                        )));
                    }
                }
            }
            Ok(Value::Object(out))
        }
    }
    let blank = Cell::new(false);
    let mut d = serde_json::Deserializer::from_slice(body);
    let value = Checked(&blank).deserialize(&mut d)?;
    d.end()?;
    Ok(Json {
        value,
        blank: blank.get(),
    })
}

/// How many problems of a body are described at most; the rest are counted.
const DESCRIBED: usize = 1000;
/// The most values a body may have for all its problems to be listed, in document order.
const ALL_PROBLEMS_NODES: usize = 10_000;

/// The values in `v`, counted up to `limit`.
fn nodes(v: &Value, limit: usize) -> usize {
    let mut n = 1;
    match v {
        Value::Object(m) => {
            for x in m.values() {
                if n >= limit {
                    break;
                }
                n += nodes(x, limit - n);
            }
        }
        Value::Array(a) => {
            for x in a {
                if n >= limit {
                    break;
                }
                n += nodes(x, limit - n);
            }
        }
        _ => {}
    }
    n
}

fn body_problems(
    contract: &Contract,
    schema: &Schema,
    body: &Json,
    found: &mut Vec<Found>,
    more: &mut usize,
) {
    let (blank, body) = (body.blank, &body.value);
    // Blank strings count as missing where a member is required: found on a copy without
    // them (where `required` names them), and said to be blank. Everything else is checked
    // on the body as sent, blank members included: the upstream gets those too.
    let mut blank_required: Vec<String> = Vec::new();
    if contract.blank_is_missing && blank {
        let mut blanks = Vec::new();
        let mut copy = body.clone();
        strip_blanks(&mut copy, &mut String::new(), &mut blanks);
        for e in schema.validator.iter_errors(&copy).take(DESCRIBED) {
            for (ptr, reason, _) in describe(&e, schema, false, &HashMap::new()) {
                if reason == "required" && blanks.contains(&ptr) && !blank_required.contains(&ptr) {
                    blank_required.push(ptr);
                }
            }
        }
    }
    let checked = body;
    if blank_required.is_empty() && schema.validator.is_valid(checked) {
        return;
    }
    // Bounded whatever the body: every problem of a body of at most ALL_PROBLEMS_NODES
    // values (described up to DESCRIBED, the rest counted), in document order; of a larger
    // one, its first problem only (the validator stops there: listing them all could take
    // gigabytes for a body of millions of wrong items).
    let all = nodes(body, ALL_PROBLEMS_NODES + 1) <= ALL_PROBLEMS_NODES;
    let order = if all {
        document_order(body)
    } else {
        HashMap::new()
    };
    let push = |found: &mut Vec<Found>, ptr: &str, reason: String, detail: String| {
        let name = match ptr.rsplit_once('/') {
            Some((_, last)) if !ptr.is_empty() => clip(&unescape(last)),
            _ => "(body)".into(),
        };
        found.push(Found {
            order: (3, position(&order, ptr)),
            field: FieldError {
                location: "body".into(),
                pointer: format!("#{}", clip_pointer(ptr)),
                name,
                reason,
                detail,
            },
        });
    };
    // A blank required member is one problem, "blank", whatever else its value breaks.
    for ptr in &blank_required {
        push(
            found,
            ptr,
            "blank".into(),
            "is blank; a value is required".into(),
        );
    }
    let describe_one = |e: &ValidationError<'_>, found: &mut Vec<Found>| {
        for (ptr, reason, detail) in describe(e, schema, false, &order) {
            if !blank_required.contains(&ptr) {
                push(found, &ptr, reason, detail);
            }
        }
    };
    if !all {
        if let Err(e) = schema.validator.validate(checked) {
            describe_one(&e, found);
        }
        found.push(Found {
            order: (3, usize::MAX),
            field: FieldError {
                location: "body".into(),
                pointer: "#".into(),
                name: "(body)".into(),
                reason: "not_all_listed".into(),
                detail: format!(
                    "holds more than {ALL_PROBLEMS_NODES} values: only its first problem is listed; fix it and send the body again"
                ),
            },
        });
        return;
    }
    let mut errors = schema.validator.iter_errors(checked);
    for e in errors.by_ref().take(DESCRIBED) {
        describe_one(&e, found);
    }
    *more += errors.count();
}

/// `ptr` with each reference token longer than [`MAX_TOKEN`] characters cut (marked `…`):
/// a body's keys are quoted back, but not megabytes of them.
fn clip_pointer(ptr: &str) -> String {
    if ptr.len() <= MAX_TOKEN {
        return ptr.to_owned();
    }
    ptr.split('/')
        .map(|t| {
            if t.chars().count() > MAX_TOKEN {
                format!("{}…", t.chars().take(MAX_TOKEN).collect::<String>())
            } else {
                t.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The longest key quoted whole in a pointer.
const MAX_TOKEN: usize = 256;

/// Each pointer of `v`, numbered in document order (objects keep their order).
fn document_order(v: &Value) -> HashMap<String, usize> {
    fn walk(v: &Value, at: &mut String, out: &mut HashMap<String, usize>) {
        out.insert(at.clone(), out.len());
        let len = at.len();
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    at.push('/');
                    at.push_str(&escape(k));
                    walk(x, at, out);
                    at.truncate(len);
                }
            }
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    at.push('/');
                    at.push_str(&i.to_string());
                    walk(x, at, out);
                    at.truncate(len);
                }
            }
            _ => {}
        }
    }
    let mut out = HashMap::new();
    walk(v, &mut String::new(), &mut out);
    out
}

/// Where `ptr` comes in document order: its own place, or (a missing field) just after its
/// nearest present parent.
fn position(order: &HashMap<String, usize>, ptr: &str) -> usize {
    let mut p = ptr;
    loop {
        if let Some(&i) = order.get(p) {
            return i * 2 + usize::from(p.len() != ptr.len());
        }
        match p.rsplit_once('/') {
            Some((parent, _)) => p = parent,
            None => return 0,
        }
    }
}

fn is_blank(v: &Value) -> bool {
    v.as_str().is_some_and(|s| s.trim().is_empty())
}

fn strip_blanks(v: &mut Value, at: &mut String, blanks: &mut Vec<String>) {
    let len = at.len();
    match v {
        Value::Object(m) => {
            m.retain(|k, x| {
                if is_blank(x) {
                    blanks.push(format!("{at}/{}", escape(k)));
                    false
                } else {
                    true
                }
            });
            for (k, x) in m.iter_mut() {
                at.push('/');
                at.push_str(&escape(k));
                strip_blanks(x, at, blanks);
                at.truncate(len);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter_mut().enumerate() {
                at.push('/');
                at.push_str(&i.to_string());
                strip_blanks(x, at, blanks);
                at.truncate(len);
            }
        }
        _ => {}
    }
}

fn escape(k: &str) -> String {
    k.replace('~', "~0").replace('/', "~1")
}

fn unescape(k: &str) -> String {
    k.replace("~1", "/").replace("~0", "~")
}

/// Field names whose values are never quoted back.
fn is_secret(name: &str) -> bool {
    let n = name.to_ascii_lowercase().replace(['-', '_'], "");
    [
        "password",
        "passwd",
        "secret",
        "token",
        "apikey",
        "authorization",
        "credential",
        "pin",
        "otp",
        "cvv",
        "cvc",
        "privatekey",
    ]
    .iter()
    .any(|s| n.contains(s))
}

/// A value as JSON text, cut to a readable length.
/// Whether the schema object holding the keyword at `keyword_path` says `format: password`.
fn password_at(schema: &Schema, keyword_path: &str) -> bool {
    let parent = keyword_path.rsplit_once('/').map_or("", |(p, _)| p);
    schema
        .root
        .pointer(parent)
        .and_then(|s| s.get("format"))
        .and_then(Value::as_str)
        == Some("password")
}

/// `v` as JSON for a detail: at most 60 characters, and the value of any key named like a
/// secret hidden, however deep (written only as far as shown, whatever the value's size).
fn shown(v: &Value) -> String {
    fn write(v: &Value, out: &mut String) {
        if out.len() > 64 {
            return;
        }
        match v {
            Value::Object(m) => {
                out.push('{');
                for (i, (k, x)) in m.iter().enumerate() {
                    if out.len() > 64 {
                        break;
                    }
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String(clip(k)).to_string());
                    out.push(':');
                    if is_secret(k) {
                        out.push_str("\"(hidden)\"");
                    } else {
                        write(x, out);
                    }
                }
                out.push('}');
            }
            Value::Array(a) => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if out.len() > 64 {
                        break;
                    }
                    if i > 0 {
                        out.push(',');
                    }
                    write(x, out);
                }
                out.push(']');
            }
            Value::String(t) => out.push_str(&Value::String(clip(t)).to_string()),
            other => out.push_str(&other.to_string()),
        }
    }
    let mut t = String::new();
    write(v, &mut t);
    clip(&t)
}

fn clip(t: &str) -> String {
    if t.chars().count() > 60 {
        format!("{}…", t.chars().take(60).collect::<String>())
    } else {
        t.to_owned()
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// "; got 2" (or "" for a secret).
fn got(v: &Value, secret: bool) -> String {
    if secret {
        String::new()
    } else {
        format!("; got {}", shown(v))
    }
}

fn format_words(format: &str) -> &str {
    match format {
        "date-time" => "an RFC 3339 date-time such as 2026-12-03T14:00:00Z",
        "date" => "a date such as 2026-12-03",
        "time" => "a time such as 14:00:00Z",
        "uuid" => "a UUID such as 3f1c2a9e-8d4b-4c7a-9e2f-1b6d5a0c7e94",
        "uri" => "an absolute URI such as https://example.com/x",
        "uri-reference" => "a URI reference",
        "ipv4" => "an IPv4 address such as 192.0.2.7",
        "ipv6" => "an IPv6 address such as 2001:db8::7",
        "hostname" => "a host name",
        "duration" => "an ISO 8601 duration such as P1DT2H",
        "regex" => "a regular expression",
        _ => format,
    }
}

/// The problems one validator error stands for: (JSON pointer, reason, detail). `oneOf` and
/// `anyOf` failures are explained by their closest branch (the one with fewest problems).
fn describe(
    e: &ValidationError<'_>,
    schema: &Schema,
    secret: bool,
    order: &HashMap<String, usize>,
) -> Vec<(String, String, String)> {
    let at = e.instance_path().as_str().to_owned();
    // Secret: below a key named like a secret, or where the schema says `format: password`.
    let secret = secret
        || at.split('/').any(|t| is_secret(&unescape(t)))
        || password_at(schema, e.schema_path().as_str());
    let v = e.instance();
    let one = |reason: &str, detail: String| vec![(at.clone(), reason.to_owned(), detail)];
    match e.kind() {
        ValidationErrorKind::Type { kind } => {
            let expected = match kind {
                TypeKind::Single(t) => t.to_string(),
                TypeKind::Multiple(ts) => ts
                    .iter()
                    .map(|t| t.to_string())
                    .collect::<Vec<_>>()
                    .join(" or "),
            };
            // `null` is its own type's only value: named once ("got null", not "got null
            // null").
            let got = if secret || v.is_null() {
                format!(", got {}", type_name(v))
            } else {
                format!(", got {} {}", type_name(v), shown(v))
            };
            one("type", format!("expected {expected}{got}"))
        }
        ValidationErrorKind::Required { property } => {
            let name = property.as_str().unwrap_or_default();
            vec![(
                format!("{at}/{}", escape(name)),
                "required".into(),
                "is required".into(),
            )]
        }
        ValidationErrorKind::Enum { options } => {
            let list = match &**options {
                Value::Array(a) => a.iter().map(shown).collect::<Vec<_>>().join(", "),
                other => shown(other),
            };
            one("enum", format!("expected one of {list}{}", got(v, secret)))
        }
        ValidationErrorKind::Constant { expected_value } => one(
            "const",
            format!("expected {}{}", shown(expected_value), got(v, secret)),
        ),
        ValidationErrorKind::Format { format } => {
            let detail = match (format.as_str(), v.as_str()) {
                ("email" | "idn-email", Some(s)) if !s.contains('@') => {
                    "must be an e-mail address; the value has no '@'".to_owned()
                }
                ("email" | "idn-email", _) => {
                    format!(
                        "must be an e-mail address such as ada@example.com{}",
                        got(v, secret)
                    )
                }
                (f, _) => format!("must be {}{}", format_words(f), got(v, secret)),
            };
            one("format", detail)
        }
        ValidationErrorKind::MinLength { limit } => one(
            "length",
            format!(
                "must be at least {limit} character{}; has {}",
                plural(*limit),
                v.as_str().map_or(0, |s| s.chars().count())
            ),
        ),
        ValidationErrorKind::MaxLength { limit } => one(
            "length",
            format!(
                "must be at most {limit} character{}; has {}",
                plural(*limit),
                v.as_str().map_or(0, |s| s.chars().count())
            ),
        ),
        ValidationErrorKind::Minimum { limit } => one(
            "range",
            format!("must be at least {limit}{}", got(v, secret)),
        ),
        ValidationErrorKind::Maximum { limit } => one(
            "range",
            format!("must be at most {limit}{}", got(v, secret)),
        ),
        ValidationErrorKind::ExclusiveMinimum { limit } => one(
            "range",
            format!("must be more than {limit}{}", got(v, secret)),
        ),
        ValidationErrorKind::ExclusiveMaximum { limit } => one(
            "range",
            format!("must be less than {limit}{}", got(v, secret)),
        ),
        ValidationErrorKind::MultipleOf { .. } => one("multiple_of", e.masked().to_string()),
        ValidationErrorKind::MinItems { limit } => one(
            "items",
            format!(
                "must have at least {limit} item{}; has {}",
                plural(*limit),
                v.as_array().map_or(0, Vec::len)
            ),
        ),
        ValidationErrorKind::MaxItems { limit } => one(
            "items",
            format!(
                "must have at most {limit} item{}; has {}",
                plural(*limit),
                v.as_array().map_or(0, Vec::len)
            ),
        ),
        ValidationErrorKind::MinProperties { limit } => one(
            "properties",
            format!(
                "must have at least {limit} field{}; has {}",
                plural(*limit),
                v.as_object().map_or(0, serde_json::Map::len)
            ),
        ),
        ValidationErrorKind::MaxProperties { limit } => one(
            "properties",
            format!(
                "must have at most {limit} field{}; has {}",
                plural(*limit),
                v.as_object().map_or(0, serde_json::Map::len)
            ),
        ),
        ValidationErrorKind::UniqueItems => one("unique", "must not repeat an item".into()),
        ValidationErrorKind::Pattern { pattern } => {
            one("pattern", format!("must match {pattern}{}", got(v, secret)))
        }
        ValidationErrorKind::AdditionalProperties { unexpected }
        | ValidationErrorKind::UnevaluatedProperties { unexpected } => {
            let known = known_properties(schema, e.schema_path().as_str());
            let known: Vec<&str> = known.iter().map(String::as_str).collect();
            unexpected
                .iter()
                .map(|u| {
                    let hint = match crate::config::did_you_mean(u, &known) {
                        Some(s) => format!("; did you mean `{s}`?"),
                        None if known.is_empty() => String::new(),
                        None => format!("; the fields are {}", known.join(", ")),
                    };
                    (
                        format!("{at}/{}", escape(u)),
                        "unknown".into(),
                        format!("is not a field of this object{hint}"),
                    )
                })
                .collect()
        }
        ValidationErrorKind::OneOfNotValid { context } | ValidationErrorKind::AnyOf { context } => {
            let closest = context
                .iter()
                .enumerate()
                .min_by_key(|(_, errs)| errs.len())
                .filter(|(_, errs)| !errs.is_empty());
            match closest {
                Some((i, errs)) => {
                    let n = context.len();
                    let mut out: Vec<_> = errs
                        .iter()
                        .flat_map(|x| describe(x, schema, secret, order))
                        .map(|(p, r, d)| {
                            (
                                p,
                                r,
                                format!(
                                    "{d} (by the closest of the {n} allowed shapes, #{})",
                                    i + 1
                                ),
                            )
                        })
                        .collect();
                    out.sort_by_key(|(p, _, _)| position(order, p));
                    out
                }
                None => one("one_of", "matches none of the allowed shapes".into()),
            }
        }
        ValidationErrorKind::OneOfMultipleValid { .. } => one(
            "one_of",
            "matches more than one of the allowed shapes; it must match exactly one".into(),
        ),
        ValidationErrorKind::FalseSchema => one("not_allowed", "is not allowed here".into()),
        _ => one(e.kind().keyword(), e.masked().to_string()),
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The `properties` of the schema object an `additionalProperties` (or
/// `unevaluatedProperties`) error came from.
fn known_properties(schema: &Schema, schema_path: &str) -> Vec<String> {
    let parent = schema_path.rsplit_once('/').map_or("", |(p, _)| p);
    schema
        .root
        .pointer(parent)
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn contract(schema: Value) -> Contract {
        Contract {
            params: Vec::new(),
            body: Some(BodyRule {
                schema: Schema::compile(schema).unwrap(),
                required: true,
            }),
            refuse_unknown_query: false,
            also_allowed: Vec::new(),
            blank_is_missing: true,
            max_errors: DEFAULT_MAX_ERRORS,
            operation: Some("createDevice".into()),
        }
    }

    /// `v` as a request's body is read (written out, then parsed as the gateway parses).
    fn json(v: Value) -> Json {
        parse_json(&serde_json::to_vec(&v).unwrap()).unwrap()
    }

    #[test]
    fn blank_members_are_noted_while_parsing() {
        for (body, blank) in [
            (r#"{"a": " "}"#, true),
            (r#"{"a": {"b": ""}}"#, true),
            (r#"{"a": [1, {"b": "\t\n"}]}"#, true),
            (r#"{"a": "x", "b": 0, "c": null}"#, false),
            // Only an object's members: a blank array item or a blank body is a value.
            (r#"[" "]"#, false),
            (r#"{"a": [" "]}"#, false),
            (r#"" ""#, false),
        ] {
            assert_eq!(parse_json(body.as_bytes()).unwrap().blank, blank, "{body}");
        }
    }

    fn problems(schema: Value, body: Value) -> Vec<FieldError> {
        let c = Arc::new(contract(schema));
        let p = Pending {
            contract: c,
            found: Vec::new(),
        };
        match p.finish(Some(&json(body))) {
            Ok(()) => Vec::new(),
            Err(e) => e.fields,
        }
    }

    fn device_schema() -> Value {
        json!({
            "type": "object",
            "required": ["name", "serial", "owner"],
            "additionalProperties": false,
            "properties": {
                "name": {"type": "string", "minLength": 2},
                "serial": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{4}$"},
                "owner": {"type": "string", "format": "email"},
                "kind": {"enum": ["sensor", "gateway"]},
                "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
                "password": {"type": "string", "minLength": 12}
            }
        })
    }

    #[test]
    fn blank_members_that_are_not_required_are_checked_as_sent() {
        // The attack probe's finding: blank optional or unknown members were dropped before
        // the check but forwarded, so a blank "port" (an integer) or an unknown blank member
        // passed an `additionalProperties: false` schema.
        let body: Value = serde_json::from_str(
            r#"{"name": "Boiler", "serial": "ABC-1234", "owner": "a@b.co", "port": " ",
                "kind": "", "is_admin": "\t", "tags": ["a", " "]}"#,
        )
        .unwrap();
        let got: Vec<(String, String)> = problems(device_schema(), body)
            .into_iter()
            .map(|f| (f.pointer, f.reason))
            .collect();
        let got: Vec<(&str, &str)> = got.iter().map(|(p, r)| (p.as_str(), r.as_str())).collect();
        assert_eq!(
            got,
            [
                ("#/port", "type"),
                ("#/kind", "enum"),
                ("#/is_admin", "unknown")
            ]
        );
        // A blank required member is one problem, blank, not also its pattern's.
        let body = json!({"name": "Boiler", "serial": " ", "owner": "a@b.co"});
        let got: Vec<(String, String)> = problems(device_schema(), body)
            .into_iter()
            .map(|f| (f.pointer, f.reason))
            .collect();
        assert_eq!(got, [("#/serial".to_owned(), "blank".to_owned())]);
    }

    #[test]
    fn a_null_is_named_once() {
        let got: Vec<(String, String)> = problems(device_schema(), Value::Null)
            .into_iter()
            .map(|f| (f.pointer, f.detail))
            .collect();
        assert_eq!(
            got,
            [("#".to_owned(), "expected object, got null".to_owned())]
        );
    }

    #[test]
    fn every_problem_in_document_order() {
        let body: Value = serde_json::from_str(
            r#"{"port": "80", "name": "", "tags": ["a", 2, "c"], "kind": "phone",
                "owner": "ada.example.com", "colour": "red", "serial": "abc", "password": "short"}"#,
        )
        .unwrap();
        let got: Vec<(String, String, String)> = problems(device_schema(), body)
            .into_iter()
            .map(|f| (f.pointer, f.reason, f.detail))
            .collect();
        let want = [
            ("#/port", "type", "expected integer, got string \"80\""),
            ("#/name", "blank", "is blank; a value is required"),
            ("#/tags", "items", "must have at most 2 items; has 3"),
            ("#/tags/1", "type", "expected string, got integer 2"),
            (
                "#/kind",
                "enum",
                "expected one of \"sensor\", \"gateway\"; got \"phone\"",
            ),
            (
                "#/owner",
                "format",
                "must be an e-mail address; the value has no '@'",
            ),
            (
                "#/colour",
                "unknown",
                "is not a field of this object; the fields are name, serial, owner, kind, port, tags, password",
            ),
            (
                "#/serial",
                "pattern",
                "must match ^[A-Z]{3}-[0-9]{4}$; got \"abc\"",
            ),
            (
                "#/password",
                "length",
                "must be at least 12 characters; has 5",
            ),
        ];
        let want: Vec<(String, String, String)> = want
            .iter()
            .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn nested_pointers_and_the_closest_branch() {
        let schema = json!({
            "type": "object",
            "properties": {
                "devices": {"type": "array", "items": {
                    "type": "object", "required": ["serial"],
                    "properties": {"serial": {"type": "string"}}
                }},
                "contact": {"oneOf": [
                    {"type": "object", "required": ["email"], "properties": {"email": {"type": "string", "format": "email"}}},
                    {"type": "object", "required": ["phone", "country"], "properties": {"phone": {"type": "string"}}}
                ]}
            }
        });
        let body = json!({
            "devices": [{"serial": "a"}, {"serial": "b"}, {"serial": "c"}, {"serial": 4}],
            "contact": {"email": "nobody"}
        });
        let got: Vec<(String, String)> = problems(schema, body)
            .into_iter()
            .map(|f| (f.pointer, f.detail))
            .collect();
        assert_eq!(
            got,
            [
                ("#/devices/3/serial".to_string(), "expected string, got integer 4".to_string()),
                (
                    "#/contact/email".to_string(),
                    "must be an e-mail address; the value has no '@' (by the closest of the 2 allowed shapes, #1)".to_string()
                ),
            ]
        );
    }

    #[test]
    fn secrets_are_not_quoted_and_the_count_is_capped() {
        let mut c = contract(device_schema());
        c.max_errors = 4;
        let p = Pending {
            contract: Arc::new(c),
            found: Vec::new(),
        };
        let e = p
            .finish(Some(&json(
                json!({"password": 123456, "api_token": 1, "port": 0}),
            )))
            .unwrap_err();
        // Missing fields first (where their object starts), then in document order.
        let got: Vec<(&str, &str)> = e
            .fields
            .iter()
            .map(|f| (f.pointer.as_str(), f.detail.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("#/name", "is required"),
                ("#/serial", "is required"),
                ("#/owner", "is required"),
                ("#/password", "expected string, got integer"),
            ]
        );
        let count = e.params.iter().find(|(k, _)| *k == "count").unwrap();
        assert_eq!(count.1, "6");
        let summary = &e.params.iter().find(|(k, _)| *k == "summary").unwrap().1;
        assert!(
            summary.ends_with("(errors lists the first 4 of 6)"),
            "{summary}"
        );
        assert!(!summary.contains("123456"), "{summary}");
    }

    #[test]
    fn a_huge_body_of_problems_is_bounded() {
        let c = Arc::new(contract(
            json!({"type": "array", "items": {"type": "string"}}),
        ));
        let finish = |n: usize| {
            let p = Pending {
                contract: c.clone(),
                found: Vec::new(),
            };
            p.finish(Some(&json(Value::Array(vec![json!(1); n]))))
                .unwrap_err()
        };
        // 9,000 wrong items: the first 20 listed, 1,000 described, every one counted.
        let e = finish(9_000);
        assert_eq!(e.fields.len(), DEFAULT_MAX_ERRORS);
        assert_eq!(e.fields[0].pointer, "#/0");
        let count = &e.params.iter().find(|(k, _)| *k == "count").unwrap().1;
        assert_eq!(count, "9000");
        // 200,000: the validator stops at the first, and the answer says the rest are
        // not listed (listing them all took gigabytes in the attack probe).
        let e = finish(200_000);
        let got: Vec<(&str, &str)> = e
            .fields
            .iter()
            .map(|f| (f.pointer.as_str(), f.reason.as_str()))
            .collect();
        assert_eq!(got, vec![("#/0", "type"), ("#", "not_all_listed")]);
    }

    #[test]
    fn a_missing_body_and_a_bad_schema() {
        let p = Pending {
            contract: Arc::new(contract(device_schema())),
            found: Vec::new(),
        };
        let e = p.finish(None).unwrap_err();
        assert_eq!(e.fields[0].reason, "required");
        assert_eq!(e.fields[0].pointer, "#");
        let bad =
            Schema::compile(json!({"type": "object", "properties": {"n": {"minimum": "one"}}}))
                .unwrap_err();
        assert!(bad.contains("/properties/n/minimum"), "{bad}");
    }

    #[test]
    fn parameters_are_read_as_their_type() {
        assert_eq!(Scalar::Integer.read("42"), Ok(json!(42)));
        assert_eq!(Scalar::Integer.read("4.2"), Err("an integer"));
        assert_eq!(Scalar::Number.read("4.5"), Ok(json!(4.5)));
        assert_eq!(Scalar::Number.read("NaN"), Err("a number"));
        assert_eq!(Scalar::Boolean.read("yes"), Err("true or false"));
        assert_eq!(decode("a+b%2Fc%zz"), "a b/c%zz");
        assert_eq!(
            query_pairs("limit=5&tag=a&tag=b&flag"),
            [
                ("limit".to_string(), "5".to_string()),
                ("tag".into(), "a".into()),
                ("tag".into(), "b".into()),
                ("flag".into(), String::new())
            ]
        );
    }
}
