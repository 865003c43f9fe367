//! Message templates: `{name}` placeholders, compiled once at load. `{name|one|other}`
//! renders `one` when the value of `name` is 1 and `other` otherwise, for a count's noun:
//! `{count} {count|problem|problems}`.

use std::fmt;

/// A message template split at load into literal text and named placeholders, so that
/// rendering is a walk over segments with no parsing per request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    source: String,
    segments: Vec<Segment>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Text(String),
    Param(String),
    /// `{name|one|other}`: the word for the count in `name`.
    Plural {
        name: String,
        one: String,
        other: String,
    },
}

/// Why a template could not be compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateError {
    /// Byte offset in the template.
    pub position: usize,
    /// What is wrong there.
    pub reason: &'static str,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.reason, self.position)
    }
}

impl Template {
    /// Compiles `source`. `{{` and `}}` stand for literal braces.
    pub fn compile(source: &str) -> Result<Self, TemplateError> {
        let mut segments = Vec::new();
        let mut text = String::new();
        let bytes = source.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'{' if bytes.get(i + 1) == Some(&b'{') => {
                    text.push('{');
                    i += 2;
                }
                b'}' if bytes.get(i + 1) == Some(&b'}') => {
                    text.push('}');
                    i += 2;
                }
                b'{' => {
                    let end = source[i + 1..].find('}').ok_or(TemplateError {
                        position: i,
                        reason: "unclosed '{'",
                    })?;
                    let inside = &source[i + 1..i + 1 + end];
                    let mut parts = inside.split('|');
                    let name = parts.next().unwrap_or_default();
                    let forms: Vec<&str> = parts.collect();
                    if !forms.is_empty() && forms.len() != 2 {
                        return Err(TemplateError {
                            position: i,
                            reason: "a plural placeholder is {name|one|other}, with two forms",
                        });
                    }
                    if name.is_empty()
                        || !name
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                    {
                        return Err(TemplateError {
                            position: i,
                            reason: "placeholder names are lower-case letters, digits and '_'",
                        });
                    }
                    if !text.is_empty() {
                        segments.push(Segment::Text(std::mem::take(&mut text)));
                    }
                    segments.push(match forms.as_slice() {
                        [one, other] => Segment::Plural {
                            name: name.to_owned(),
                            one: (*one).to_owned(),
                            other: (*other).to_owned(),
                        },
                        _ => Segment::Param(name.to_owned()),
                    });
                    i += end + 2;
                }
                b'}' => {
                    return Err(TemplateError {
                        position: i,
                        reason: "'}' without '{' (write '}}' for a literal brace)",
                    });
                }
                _ => {
                    let ch_len = source[i..].chars().next().map_or(1, char::len_utf8);
                    text.push_str(&source[i..i + ch_len]);
                    i += ch_len;
                }
            }
        }
        if !text.is_empty() {
            segments.push(Segment::Text(text));
        }
        Ok(Template {
            source: source.to_owned(),
            segments,
        })
    }

    /// The template as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The placeholder names, in order of first appearance, without repeats.
    pub fn placeholders(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for s in &self.segments {
            if let Segment::Param(p) | Segment::Plural { name: p, .. } = s
                && !names.contains(&p.as_str())
            {
                names.push(p);
            }
        }
        names
    }

    /// Renders with `params`. A placeholder without a value renders as `{name}`, so a
    /// missing value is visible instead of silently empty; tests assert it never happens.
    pub fn render(&self, params: &[(&str, &str)]) -> String {
        let mut out = String::with_capacity(self.source.len() + 32);
        for s in &self.segments {
            match s {
                Segment::Text(t) => out.push_str(t),
                Segment::Param(p) => match params.iter().find(|(k, _)| k == p) {
                    Some((_, v)) => out.push_str(v),
                    None => {
                        out.push('{');
                        out.push_str(p);
                        out.push('}');
                    }
                },
                Segment::Plural { name, one, other } => {
                    match params.iter().find(|(k, _)| k == name) {
                        Some((_, v)) => out.push_str(if v.trim() == "1" { one } else { other }),
                        None => out.push_str(&format!("{{{name}|{one}|{other}}}")),
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_params_and_literal_braces() {
        let t = Template::compile("a {x} b {{literal}} {y}{x}").unwrap();
        assert_eq!(t.placeholders(), vec!["x", "y"]);
        assert_eq!(t.render(&[("x", "1"), ("y", "2")]), "a 1 b {literal} 21");
    }

    #[test]
    fn plural_forms_follow_the_count() {
        let t = Template::compile("has {n} {n|problem|problems}").unwrap();
        assert_eq!(t.placeholders(), vec!["n"]);
        assert_eq!(t.render(&[("n", "1")]), "has 1 problem");
        assert_eq!(t.render(&[("n", "3")]), "has 3 problems");
        assert_eq!(t.render(&[("n", "0")]), "has 0 problems");
        assert_eq!(t.render(&[]), "has {n} {n|problem|problems}");
        assert!(Template::compile("{n|one}").is_err());
        assert!(Template::compile("{n|a|b|c}").is_err());
        assert!(Template::compile("{|a|b}").is_err());
    }

    #[test]
    fn missing_param_stays_visible() {
        let t = Template::compile("took {ago}").unwrap();
        assert_eq!(t.render(&[]), "took {ago}");
    }

    #[test]
    fn rejects_bad_templates() {
        assert_eq!(
            Template::compile("x {oops").unwrap_err().reason,
            "unclosed '{'"
        );
        assert!(Template::compile("x {Bad}").is_err());
        assert!(Template::compile("x } y").is_err());
        assert!(Template::compile("ü {a} é").is_ok());
    }
}
