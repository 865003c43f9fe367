//! Loading and validating the catalog: built-in entries plus an operator's file.

use crate::{BUILTIN_SOURCE, Entry, HeaderDoc, Retry, Stage, Template};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::OnceLock;

/// The validated catalog.
#[derive(Clone, Debug)]
pub struct Catalog {
    entries: Vec<Entry>,
    index: HashMap<String, usize>,
    stages: Vec<Stage>,
    headers: Vec<HeaderDoc>,
}

/// The stage of an operator's new entry that names none.
const CUSTOM_STAGE: &str = "custom";

/// One problem found while loading a catalog. Loading reports all of them at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogProblem {
    /// Which source: `built-in` or the operator file's name.
    pub source: String,
    /// The entry's code, or its position when it has none.
    pub entry: String,
    /// The field at fault, if one.
    pub field: Option<&'static str>,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for CatalogProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: entry {}", self.source, self.entry)?;
        if let Some(field) = self.field {
            write!(f, ", field `{field}`")?;
        }
        write!(f, ": {}", self.reason)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    error: Vec<RawEntry>,
    #[serde(default)]
    stage: Vec<RawStage>,
    #[serde(default)]
    header: BTreeMap<String, RawHeader>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStage {
    name: String,
    title: String,
    about: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeader {
    about: String,
    example: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    code: Option<String>,
    status: Option<u16>,
    #[serde(rename = "type")]
    kind: Option<String>,
    title: Option<String>,
    message: Option<String>,
    explanation: Option<String>,
    checklist: Option<Vec<String>>,
    retry: Option<String>,
    related: Option<Vec<String>>,
    stage: Option<String>,
    headers: Option<Vec<String>>,
    config: Option<Vec<String>>,
    example: Option<BTreeMap<String, String>>,
    example_errors: Option<Vec<crate::FieldError>>,
}

impl Catalog {
    /// The built-in catalog. It is validated by the crate's tests, so this cannot fail in a
    /// released binary.
    pub fn builtin() -> &'static Catalog {
        static BUILTIN: OnceLock<Catalog> = OnceLock::new();
        BUILTIN.get_or_init(|| {
            Catalog::load(None).unwrap_or_else(|problems| {
                let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
                panic!("built-in catalog is invalid:\n{}", lines.join("\n"))
            })
        })
    }

    /// Loads the built-in catalog and, if given, an operator file `(name, text)` that rewords
    /// built-in entries (only the fields it sets) or adds new ones. Every problem is reported.
    pub fn load(operator: Option<(&str, &str)>) -> Result<Catalog, Vec<CatalogProblem>> {
        let mut problems = Vec::new();
        let mut catalog = Catalog {
            entries: Vec::new(),
            index: HashMap::new(),
            stages: Vec::new(),
            headers: Vec::new(),
        };
        catalog.merge("built-in", BUILTIN_SOURCE, false, &mut problems);
        if let Some((name, text)) = operator {
            catalog.merge(name, text, true, &mut problems);
        }
        catalog.check_related(&mut problems);
        catalog.check_docs(&mut problems);
        if problems.is_empty() {
            Ok(catalog)
        } else {
            Err(problems)
        }
    }

    fn merge(&mut self, source: &str, text: &str, operator: bool, out: &mut Vec<CatalogProblem>) {
        let problem = |entry: &str, field: Option<&'static str>, reason: String| CatalogProblem {
            source: source.to_owned(),
            entry: entry.to_owned(),
            field,
            reason,
        };
        let raw: RawFile = match toml::from_str(text) {
            Ok(raw) => raw,
            Err(e) => {
                out.push(problem("-", None, e.to_string().trim().to_owned()));
                return;
            }
        };
        for st in raw.stage {
            if self.stages.iter().any(|s| s.name == st.name) {
                out.push(problem(
                    &format!("stage {}", st.name),
                    Some("name"),
                    "defined twice".into(),
                ));
                continue;
            }
            self.stages.push(Stage {
                name: st.name,
                title: st.title,
                about: st.about,
            });
        }
        for (name, h) in raw.header {
            if self
                .headers
                .iter()
                .any(|d| d.name.eq_ignore_ascii_case(&name))
            {
                out.push(problem(
                    &format!("header {name}"),
                    None,
                    "defined twice".into(),
                ));
                continue;
            }
            self.headers.push(HeaderDoc {
                name,
                about: h.about,
                example: h.example,
            });
        }
        let mut seen_here: Vec<String> = Vec::new();
        for (i, raw) in raw.error.into_iter().enumerate() {
            let Some(code) = raw.code.clone() else {
                out.push(problem(
                    &format!("#{}", i + 1),
                    Some("code"),
                    "missing".into(),
                ));
                continue;
            };
            if code.is_empty()
                || !code
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                out.push(problem(&code, Some("code"), "must be snake_case".into()));
                continue;
            }
            if seen_here.contains(&code) {
                out.push(problem(&code, Some("code"), "defined twice".into()));
                continue;
            }
            seen_here.push(code.clone());
            let before = out.len();
            match self.index.get(&code).copied() {
                Some(at) if operator => {
                    let base = self.entries[at].clone();
                    if let Some(entry) = build(&code, raw, Some(&base), &mut |f, r| {
                        out.push(problem(&code, f, r))
                    }) {
                        self.entries[at] = entry;
                    }
                }
                Some(_) => out.push(problem(&code, Some("code"), "defined twice".into())),
                None => {
                    if let Some(entry) =
                        build(&code, raw, None, &mut |f, r| out.push(problem(&code, f, r)))
                        && out.len() == before
                    {
                        self.index.insert(code, self.entries.len());
                        self.entries.push(entry);
                    }
                }
            }
        }
    }

    fn check_related(&self, out: &mut Vec<CatalogProblem>) {
        for e in &self.entries {
            for r in &e.related {
                if !self.index.contains_key(r) {
                    out.push(CatalogProblem {
                        source: "catalog".into(),
                        entry: e.code.clone(),
                        field: Some("related"),
                        reason: format!("names unknown code `{r}`"),
                    });
                }
            }
        }
    }

    /// What the docs say of each entry: its stage and headers are defined. (Example values
    /// a reworded message no longer uses are harmless: the page renders the message.)
    fn check_docs(&self, out: &mut Vec<CatalogProblem>) {
        let mut problem = |e: &Entry, field: &'static str, reason: String| {
            out.push(CatalogProblem {
                source: "catalog".into(),
                entry: e.code.clone(),
                field: Some(field),
                reason,
            })
        };
        for e in &self.entries {
            if self.stage(&e.stage).is_none() {
                let known: Vec<&str> = self.stages.iter().map(|s| s.name.as_str()).collect();
                problem(
                    e,
                    "stage",
                    format!("`{}` is not one of {}", e.stage, known.join(", ")),
                );
            }
            for h in &e.headers {
                if self.header(h).is_none() {
                    problem(e, "headers", format!("`{h}` is not a documented header"));
                }
            }
        }
    }

    /// The pipeline stages, in request order.
    pub fn stages(&self) -> &[Stage] {
        &self.stages
    }

    /// The stage named `name`.
    pub fn stage(&self, name: &str) -> Option<&Stage> {
        self.stages.iter().find(|s| s.name == name)
    }

    /// The documented response headers.
    pub fn headers(&self) -> &[HeaderDoc] {
        &self.headers
    }

    /// The documentation of header `name` (any letter case).
    pub fn header(&self, name: &str) -> Option<&HeaderDoc> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
    }

    /// The entry for `code`.
    pub fn get(&self, code: &str) -> Option<&Entry> {
        self.index.get(code).map(|&i| &self.entries[i])
    }

    /// All entries, in catalog order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }
}

/// Builds an entry from raw fields, over `base` when rewording a built-in entry.
fn build(
    code: &str,
    raw: RawEntry,
    base: Option<&Entry>,
    report: &mut dyn FnMut(Option<&'static str>, String),
) -> Option<Entry> {
    let mut ok = true;
    let mut need = |field: &'static str, present: bool| {
        if !present && base.is_none() {
            report(
                Some(field),
                "missing (a new entry needs every field)".into(),
            );
            ok = false;
        }
    };
    need("status", raw.status.is_some());
    need("type", raw.kind.is_some());
    need("title", raw.title.is_some());
    need("message", raw.message.is_some());
    need("explanation", raw.explanation.is_some());
    need("checklist", raw.checklist.is_some());
    need("retry", raw.retry.is_some());
    let status = raw.status.or(base.map(|b| b.status)).unwrap_or(500);
    if !(400..=599).contains(&status) {
        report(
            Some("status"),
            format!("{status} is not an error status (400-599)"),
        );
        ok = false;
    }
    let retry = match raw.retry.as_deref() {
        Some(r) => Retry::parse(r).unwrap_or_else(|| {
            report(
                Some("retry"),
                format!("`{r}` is not one of never, after_delay, with_backoff, after_reauth"),
            );
            ok = false;
            Retry::Never
        }),
        None => base.map_or(Retry::Never, |b| b.retry),
    };
    let message = match raw.message.as_deref() {
        Some(m) => match Template::compile(m) {
            Ok(t) => {
                if let Some(b) = base {
                    let allowed = b.message.placeholders();
                    for p in t.placeholders() {
                        if !allowed.contains(&p) {
                            report(
                                Some("message"),
                                format!(
                                    "placeholder {{{p}}} is not supplied by the gateway for this code; available: {}",
                                    allowed
                                        .iter()
                                        .map(|a| format!("{{{a}}}"))
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                ),
                            );
                            ok = false;
                        }
                    }
                }
                Some(t)
            }
            Err(e) => {
                report(Some("message"), e.to_string());
                ok = false;
                None
            }
        },
        None => base.map(|b| b.message.clone()),
    };
    let checklist = raw.checklist.or(base.map(|b| b.checklist.clone()));
    if checklist
        .as_ref()
        .is_some_and(|c| c.iter().all(|s| s.trim().is_empty()))
    {
        report(Some("checklist"), "needs at least one step".into());
        ok = false;
    }
    for (field, value) in [("title", &raw.title), ("explanation", &raw.explanation)] {
        if value.as_ref().is_some_and(|v| v.trim().is_empty()) {
            report(Some(field), "must not be blank".into());
            ok = false;
        }
    }
    if !ok {
        return None;
    }
    Some(Entry {
        code: code.to_owned(),
        status,
        kind: raw.kind.or(base.map(|b| b.kind.clone()))?,
        title: raw.title.or(base.map(|b| b.title.clone()))?,
        message: message?,
        explanation: raw.explanation.or(base.map(|b| b.explanation.clone()))?,
        checklist: checklist?,
        retry,
        related: raw
            .related
            .or(base.map(|b| b.related.clone()))
            .unwrap_or_default(),
        stage: raw
            .stage
            .or(base.map(|b| b.stage.clone()))
            .unwrap_or_else(|| CUSTOM_STAGE.to_owned()),
        headers: raw
            .headers
            .or(base.map(|b| b.headers.clone()))
            .unwrap_or_default(),
        config: raw
            .config
            .or(base.map(|b| b.config.clone()))
            .unwrap_or_default(),
        example: match raw.example {
            Some(map) => map.into_iter().collect(),
            None => base.map(|b| b.example.clone()).unwrap_or_default(),
        },
        example_errors: raw
            .example_errors
            .or(base.map(|b| b.example_errors.clone()))
            .unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes;

    #[test]
    fn builtin_is_valid_and_matches_the_code_constants() {
        let c = Catalog::builtin();
        for code in codes::ALL {
            assert!(c.get(code).is_some(), "{code} missing from catalog");
        }
        assert_eq!(c.entries().len(), codes::ALL.len());
        for e in c.entries() {
            assert!(!e.checklist.is_empty(), "{}", e.code);
            assert_ne!(
                e.stage, CUSTOM_STAGE,
                "{}: built-in codes name their stage",
                e.code
            );
            for p in e.message.placeholders() {
                assert!(
                    e.example.iter().any(|(k, _)| k == p),
                    "{}: no example value for {{{p}}}",
                    e.code
                );
            }
            for (k, _) in &e.example {
                assert!(
                    e.message.placeholders().contains(&k.as_str()),
                    "{}: example names {{{k}}}, which the message does not use",
                    e.code
                );
            }
        }
    }

    #[test]
    fn docs_fields_are_checked() {
        let src = "[[error]]\ncode = \"route_not_found\"\nstage = \"nowhere\"\nheaders = [\"X-Nope\"]\n\n[[error]]\ncode = \"my_error\"\nstatus = 418\ntype = \"t\"\ntitle = \"t\"\nmessage = \"m\"\nexplanation = \"e\"\nchecklist = [\"a\"]\nretry = \"never\"\n";
        let problems = Catalog::load(Some(("ops.toml", src))).unwrap_err();
        let all: Vec<String> = problems.iter().map(ToString::to_string).collect();
        let all = all.join("\n");
        assert!(
            all.contains("`nowhere` is not one of transport, route"),
            "{all}"
        );
        assert!(all.contains("`X-Nope` is not a documented header"), "{all}");
        assert_eq!(problems.len(), 2, "{all}");
        // A new entry without a stage is the operator's own.
        let c = Catalog::load(Some(("ops.toml", src.split("\n\n").nth(1).unwrap()))).unwrap();
        assert_eq!(c.get("my_error").unwrap().stage, CUSTOM_STAGE);
        assert_eq!(c.header("retry-after").unwrap().name, "Retry-After");
    }

    #[test]
    fn operator_rewords_a_builtin_entry() {
        let c = Catalog::load(Some((
            "ops.toml",
            "[[error]]\ncode = \"route_not_found\"\ntitle = \"Nothing here\"\nmessage = \"Nope: {path}\"\n",
        )))
        .unwrap();
        let e = c.get("route_not_found").unwrap();
        assert_eq!(e.title, "Nothing here");
        assert_eq!(e.status, 404);
        assert_eq!(e.message.render(&[("path", "/x")]), "Nope: /x");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let src = r#"
[[error]]
code = "route_not_found"
message = "No {nonsense}"
retry = "sometimes"

[[error]]
code = "my_error"
status = 200
type = "x"
title = "t"
message = "m"
explanation = "e"
checklist = []
retry = "never"
related = ["no_such_code"]

[[error]]
code = "Bad-Code"
"#;
        let problems = Catalog::load(Some(("ops.toml", src))).unwrap_err();
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        let all = text.join("\n");
        assert!(
            all.contains("placeholder {nonsense} is not supplied"),
            "{all}"
        );
        assert!(all.contains("`sometimes` is not one of"), "{all}");
        assert!(all.contains("200 is not an error status"), "{all}");
        assert!(all.contains("needs at least one step"), "{all}");
        assert!(all.contains("must be snake_case"), "{all}");
        assert_eq!(problems.len(), 5, "{all}");
    }

    #[test]
    fn unknown_related_code_is_reported() {
        let src = "[[error]]\ncode = \"x_y\"\nstatus = 400\ntype = \"t\"\ntitle = \"t\"\nmessage = \"m\"\nexplanation = \"e\"\nchecklist = [\"a\"]\nretry = \"never\"\nrelated = [\"nope\"]\n";
        let problems = Catalog::load(Some(("ops.toml", src))).unwrap_err();
        assert_eq!(problems.len(), 1);
        assert!(problems[0].reason.contains("unknown code `nope`"));
    }

    #[test]
    fn syntax_error_is_a_problem_not_a_panic() {
        let problems = Catalog::load(Some(("ops.toml", "[[error]\ncode="))).unwrap_err();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].source, "ops.toml");
    }
}
