//! From another API's envelope back to the catalog: candor's error profiles (the same data
//! the gateway renders with) tell which catalog codes a profile's answer can stand for, and
//! so which retry class applies.

use candor_catalog::profile::ProfileRow;
use candor_catalog::{Catalog, Profile, Retry, RetryRules};

/// What an envelope said, in the profile's terms.
#[derive(Default)]
pub(crate) struct Said<'a> {
    pub(crate) status: u16,
    /// The profile's code (Knox `4032251`, AsyncOS/Pelion the status as text).
    pub(crate) code: Option<&'a str>,
    /// The profile's error type (Pelion `validation_error`).
    pub(crate) kind: Option<&'a str>,
    /// The row's name where the envelope carries it (Knox `message`, Edgio `Type`).
    pub(crate) name: Option<&'a str>,
    /// The message.
    pub(crate) message: Option<&'a str>,
    /// The property an item names (IXON `propertyName`).
    pub(crate) property: Option<&'a str>,
    /// Whether the envelope lists field errors (candor raises those with
    /// `validation_failed` only).
    pub(crate) fields: bool,
}

/// The catalog codes the answer can stand for, no repeats: the code itself when it is a
/// catalog code (profile rows without a code of their own send it), else those of every
/// profile row the answer fits.
pub(crate) fn reverse(profile: &str, said: &Said<'_>) -> Vec<String> {
    let catalog = Catalog::builtin();
    if let Some(c) = said.code.filter(|c| catalog.get(c).is_some()) {
        return vec![c.to_owned()];
    }
    let Some(p) = Profile::builtin(profile) else {
        return Vec::new();
    };
    let mut codes: Vec<String> = Vec::new();
    for row in p.rows.iter().filter(|r| matches(r, said, catalog)) {
        for c in &row.catalog {
            if !codes.contains(c) {
                codes.push(c.clone());
            }
        }
    }
    if codes.is_empty() {
        // The profile's fallback: the catalog's own title or message in its envelope.
        let entries = catalog.entries().iter().filter(|e| e.status == said.status);
        codes = match said.name {
            Some(n) => entries
                .filter(|e| e.title == n)
                .map(|e| e.code.clone())
                .collect(),
            None => match said.message {
                Some(m) => entries
                    .filter(|e| fits(e.message.source(), m))
                    .map(|e| e.code.clone())
                    .collect(),
                None => Vec::new(),
            },
        };
    }
    if codes.is_empty() && said.fields {
        codes = catalog
            .get("validation_failed")
            .filter(|e| e.status == said.status)
            .map(|e| vec![e.code.clone()])
            .unwrap_or_default();
    }
    codes
}

/// The retry class all of `codes` share, if they share one.
pub(crate) fn common_class(codes: &[String], rules: &RetryRules) -> Option<Retry> {
    let mut classes = codes.iter().map(|c| rules.class_of_code(c));
    let first = classes.next()??;
    classes.all(|c| c == Some(first)).then_some(first)
}

fn matches(row: &ProfileRow, said: &Said<'_>, catalog: &Catalog) -> bool {
    let status_ok = match row.status {
        Some(s) => s == said.status,
        None => row
            .catalog
            .iter()
            .filter_map(|c| catalog.get(c))
            .any(|e| e.status == said.status),
    };
    let code_ok = match (&row.code, said.code) {
        (Some(c), Some(s)) => {
            let t = c.text();
            t.contains('{') || t == s
        }
        _ => true,
    };
    let kind_ok = match (&row.kind, said.kind) {
        (Some(k), Some(s)) => k == s,
        _ => true,
    };
    let name_ok = match (&row.name, said.name) {
        (Some(n), Some(s)) => n == s,
        _ => true,
    };
    // A row told by its type, code or name needs no message to match (Pelion's document
    // shows a placeholder message); the others are told by their message.
    let identified = (row.kind.is_some() && said.kind.is_some())
        || (row.name.is_some() && said.name.is_some())
        || (row.code.as_ref().is_some_and(|c| !c.text().contains('{')) && said.code.is_some());
    let message_ok = match (&row.message, said.message) {
        (Some(m), Some(s)) => identified || fits(m.source(), s),
        _ => true,
    };
    let property_ok = match (&row.property, said.property) {
        (Some(p), Some(s)) => fits(p.source(), s),
        (Some(_), None) => false,
        _ => true,
    };
    status_ok && code_ok && kind_ok && name_ok && message_ok && property_ok
}

/// Whether `text` can be `template` rendered: its literal pieces appear in order, the first
/// at the start and the last at the end.
fn fits(template: &str, text: &str) -> bool {
    let pieces = literal_pieces(template);
    if pieces.is_empty() {
        return true;
    }
    let starts_open = template.starts_with('{') && !template.starts_with("{{");
    let ends_open = template.ends_with('}') && !template.ends_with("}}");
    let mut rest = text;
    for (i, piece) in pieces.iter().enumerate() {
        let Some(at) = rest.find(piece.as_str()) else {
            return false;
        };
        if i == 0 && !starts_open && at != 0 {
            return false;
        }
        rest = &rest[at + piece.len()..];
    }
    ends_open || rest.is_empty()
}

/// The literal text between a template's `{placeholders}`; `{{` and `}}` are braces.
fn literal_pieces(template: &str) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut cur = String::new();
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                cur.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                cur.push('}');
            }
            '{' => {
                for d in chars.by_ref() {
                    if d == '}' {
                        break;
                    }
                }
                if !cur.is_empty() {
                    pieces.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        pieces.push(cur);
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_fit_their_renderings() {
        let t = "Unsupported operation for {mode} mode. Override settings from the UI for {operation} to configure through APIs.";
        assert!(fits(
            t,
            "Unsupported operation for machine mode. Override settings from the UI for sender_groups to configure through APIs."
        ));
        assert!(!fits(t, "Unauthorized."));
        assert!(fits("{detail}", "anything"));
        assert!(fits("Unauthorized.", "Unauthorized."));
        assert!(!fits("Unauthorized.", "Unauthorized. Really"));
    }

    #[test]
    fn seed_answers_map_back_to_catalog_codes() {
        let said = Said {
            status: 401,
            message: Some("ExpiredSignatureError."),
            ..Said::default()
        };
        let rules = crate::rules::builtin();
        let codes = reverse("asyncos", &said);
        assert_eq!(codes, ["token_expired"]);
        assert_eq!(common_class(&codes, rules), Some(Retry::AfterReauth));
        let said = Said {
            status: 403,
            code: Some("4032251"),
            name: Some("ACCESS_TOKEN_EXPIRED"),
            ..Said::default()
        };
        assert_eq!(reverse("knox", &said), ["token_expired"]);
        let said = Said {
            status: 429,
            code: Some("429"),
            kind: Some("rate_limit_exceeded"),
            ..Said::default()
        };
        let codes = reverse("pelion", &said);
        assert!(codes.contains(&"rate_limited".to_owned()), "{codes:?}");
        assert_eq!(common_class(&codes, rules), Some(Retry::AfterDelay));
        let said = Said {
            status: 401,
            message: Some("2FA is required"),
            ..Said::default()
        };
        assert_eq!(reverse("ixon", &said), ["second_factor_required"]);
        assert_eq!(reverse("nope", &said), Vec::<String>::new());
        let said = Said {
            status: 429,
            code: Some("rate_limited"),
            ..Said::default()
        };
        assert_eq!(reverse("knox", &said), ["rate_limited"]);
    }
}
