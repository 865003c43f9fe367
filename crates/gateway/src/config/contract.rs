//! `[routes.validate]`: a route's request contract, read into the validate stage's
//! [`Contract`]: the JSON body's schema (a file, or written inline), the path, query and
//! header parameters (`[[routes.validate.params]]`, each with a schema), and how problems
//! are reported. Every schema is compiled here: one that does not compile is a problem of
//! the configuration, with where in the schema it is wrong.

use super::reader::{Problems, TableReader, to_json};
use crate::stages::negotiate::{MediaType, Negotiation};
use crate::stages::route::PathPattern;
use crate::stages::validate::{BodyRule, Contract, DEFAULT_MAX_ERRORS, In, Param, Schema};
use serde_json::Value;
use std::path::Path;

const VALIDATE: &[&str] = &[
    "body",
    "body_required",
    "params",
    "unknown_query",
    "blank_is_missing",
    "max_errors",
];
const PARAM: &[&str] = &["in", "name", "required", "schema"];

/// Reads a route's `validate` table, if it has one. `negotiation` is the route's: a route
/// with a body schema accepts JSON (`application/json` unless it says which JSON types),
/// and only JSON.
pub(super) fn read(
    r: &TableReader<'_, '_>,
    p: &mut Problems<'_>,
    dir: &Path,
    pattern: Option<&PathPattern>,
    negotiation: &mut Negotiation,
    api_key_query: Option<&str>,
) -> Option<Contract> {
    let v = r.table(p, "validate", VALIDATE)?;
    let body = match v.get("body") {
        None => None,
        Some(b) => {
            let source = match b.get_ref() {
                toml::de::DeValue::String(file) => {
                    let path = dir.join(file.as_ref());
                    p.reads(&path);
                    super::read_file_to_string(&path)
                        .map_err(|e| format!("cannot read the schema file {}: {e}", path.display()))
                        .and_then(|text| {
                            serde_json::from_str::<Value>(&text).map_err(|e| {
                                format!("the schema file {} is not JSON: {e}", path.display())
                            })
                        })
                        .map(|s| (s, format!("{}: ", path.display())))
                }
                toml::de::DeValue::Table(_) => Ok((to_json(b.get_ref()), String::new())),
                other => Err(format!(
                    "wrong type: found {}; expected a JSON Schema file's path or an inline table",
                    other.type_str()
                )),
            };
            match source.and_then(|(s, file)| {
                Schema::compile(s).map_err(|e| format!("{file}the schema does not compile: {e}"))
            }) {
                Ok(schema) => Some(schema),
                Err(e) => {
                    p.at(b.span(), &v.key_path("body"), e);
                    None
                }
            }
        }
    };
    let body_required = v.boolean(p, "body_required").unwrap_or(body.is_some());
    if body.is_some() {
        let json = |t: &MediaType| t.to_string().ends_with("json");
        if negotiation.accepts.is_empty() {
            negotiation.accepts =
                vec![MediaType::parse("application/json", false).expect("a media type")];
        } else if let Some(other) = negotiation.accepts.iter().find(|t| !json(t)) {
            p.at(
                v.get("body").map_or(v.span.clone(), |b| b.span()),
                &v.key_path("body"),
                format!(
                    "a body schema checks JSON bodies, but the route also accepts {other}, whose bodies would pass unchecked"
                ),
            )
            .expected = Some("accepts listing JSON media types only".into());
        }
    }
    let mut params: Vec<Param> = Vec::new();
    for t in v.tables(p, "params", PARAM) {
        if let Some(param) = read_param(&t, p, pattern) {
            if params
                .iter()
                .any(|x| x.location == param.location && x.name == param.name)
            {
                p.at(
                    t.span.clone(),
                    &t.key_path("name"),
                    format!(
                        "{} parameter `{}` is declared twice",
                        param.location.as_str(),
                        param.name
                    ),
                );
            }
            params.push(param);
        }
        t.finish(p);
    }
    let mut contract = Contract {
        params,
        body: body.map(|schema| BodyRule {
            schema,
            required: body_required,
        }),
        refuse_unknown_query: false,
        also_allowed: api_key_query.map(str::to_owned).into_iter().collect(),
        blank_is_missing: true,
        max_errors: DEFAULT_MAX_ERRORS,
        operation: None,
    };
    tune(&v, p, &mut contract);
    v.finish(p);
    Some(contract)
}

/// How a contract's problems are found and reported (`unknown_query`, `blank_is_missing`,
/// `max_errors`), from `v`: a route's `validate` table, or an `[[openapi]]` entry's settings.
pub(super) fn tune(v: &TableReader<'_, '_>, p: &mut Problems<'_>, contract: &mut Contract) {
    contract.refuse_unknown_query = match v.string(p, "unknown_query") {
        None => contract.refuse_unknown_query,
        Some((w, _)) if w == "allow" => false,
        Some((w, _)) if w == "refuse" => true,
        Some((w, span)) => {
            p.at(
                span,
                &v.key_path("unknown_query"),
                format!("unknown value `{w}`"),
            )
            .expected = Some("\"allow\" or \"refuse\"".into());
            false
        }
    };
    if let Some(b) = v.boolean(p, "blank_is_missing") {
        contract.blank_is_missing = b;
    }
    if let Some(n) = v.integer(p, "max_errors", 1, 1000) {
        contract.max_errors = n as usize;
    }
}

fn read_param(
    t: &TableReader<'_, '_>,
    p: &mut Problems<'_>,
    pattern: Option<&PathPattern>,
) -> Option<Param> {
    let location = match t.string(p, "in") {
        Some((w, span)) => match In::parse(&w) {
            Some(l) => Some(l),
            None => {
                let problem = p.at(span, &t.key_path("in"), format!("unknown location `{w}`"));
                problem.suggestion = super::did_you_mean(&w, &["path", "query", "header"]);
                problem.expected = Some("\"path\", \"query\" or \"header\"".into());
                None
            }
        },
        None => {
            p.at(t.span.clone(), &t.key_path("in"), "missing".into())
                .expected = Some("\"path\", \"query\" or \"header\"".into());
            None
        }
    };
    let name = t.string(p, "name");
    if name.is_none() && t.get("name").is_none() {
        p.at(t.span.clone(), &t.key_path("name"), "missing".into())
            .expected = Some("the parameter's name".into());
    }
    let schema = match t.get("schema") {
        None => Ok(serde_json::json!({"type": "string"})),
        Some(s) => match s.get_ref() {
            toml::de::DeValue::Table(_) => Ok(to_json(s.get_ref())),
            other => Err((s.span(), format!("wrong type: found {}", other.type_str()))),
        },
    }
    .and_then(|s| {
        Schema::compile(s).map_err(|e| {
            (
                t.get("schema").map_or(t.span.clone(), |x| x.span()),
                format!("the schema does not compile: {e}"),
            )
        })
    });
    let schema = match schema {
        Ok(s) => Some(s),
        Err((span, e)) => {
            p.at(span, &t.key_path("schema"), e).expected =
                Some("an inline JSON Schema such as { type = \"integer\", minimum = 1 }".into());
            None
        }
    };
    let (location, (name, span), schema) = (location?, name?, schema?);
    if location == In::Path {
        let known = pattern.is_some_and(|pat| pat.to_string().contains(&format!("{{{name}}}")));
        if pattern.is_some() && !known {
            p.at(
                span,
                &t.key_path("name"),
                format!("the path has no parameter {{{name}}}"),
            );
            return None;
        }
    }
    if location == In::Header && http::HeaderName::from_bytes(name.as_bytes()).is_err() {
        p.at(
            span,
            &t.key_path("name"),
            format!("`{name}` is not a header name"),
        );
        return None;
    }
    // A path parameter is always there when the route matched.
    let required = t.boolean(p, "required").unwrap_or(location == In::Path);
    Some(Param::new(location, &name, required, schema))
}
