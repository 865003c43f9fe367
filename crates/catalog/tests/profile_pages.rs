//! The troubleshooting page generated for each seed profile carries every row of the
//! seed's own table (the seed documents are kept in `<repo>/docs/seeds`; without them this
//! test fails, it does not skip).

use candor_catalog::{Catalog, Profile, profile_page};
use std::path::PathBuf;

fn seed(number: &str) -> String {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/seeds");
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the seed documents are not in {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with(&format!("{number}_")) && name.ends_with(".txt") {
            return std::fs::read_to_string(path).unwrap();
        }
    }
    panic!("no seed {number}_*.txt in {}", dir.display())
}

/// Text as compared: table pipes, line breaks, list dashes, escapes and backticks gone,
/// spaces collapsed, no space before `)`, `.` or `,`.
fn normalize(s: &str) -> String {
    let s = s
        .replace("<br>", " ")
        .replace('\\', "")
        .replace(['|', '`'], " ");
    let mut s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    for (from, to) in [(" - ", " "), (" )", ")"), (" .", "."), (" ,", ",")] {
        s = s.replace(from, to);
    }
    s.trim_start_matches("- ").to_owned()
}

/// The page's table lines, normalized.
fn page_lines(name: &str) -> Vec<String> {
    let profile = Profile::builtin(name).unwrap();
    let md = profile_page::markdown(profile, Catalog::builtin());
    md.lines()
        .filter(|l| l.starts_with('|'))
        .map(normalize)
        .collect()
}

/// Whether `line` contains `needle`, where a `{placeholder}` of the line stands for any
/// word of the needle.
fn contains_wild(line: &str, needle: &str) -> bool {
    fn at(l: &[u8], n: &[u8]) -> bool {
        if n.is_empty() {
            return true;
        }
        if l.first() == Some(&b'{')
            && let Some(end) = l.iter().position(|&b| b == b'}')
        {
            return (1..=n.len())
                .take_while(|&k| n[k - 1] != b' ')
                .any(|k| at(&l[end + 1..], &n[k..]));
        }
        match (l.first(), n.first()) {
            (Some(a), Some(b)) if a == b => at(&l[1..], &n[1..]),
            _ => false,
        }
    }
    let (l, n) = (line.as_bytes(), needle.as_bytes());
    (0..l.len()).any(|i| at(&l[i..], n))
}

fn assert_row(lines: &[String], what: &str, ok: impl Fn(&str) -> bool) {
    assert!(
        lines.iter().any(|l| ok(l)),
        "no row of the generated page has {what}:\n{}",
        lines.join("\n")
    );
}

#[test]
fn pelion_page_has_every_row_of_its_table() {
    let text = seed("002");
    let lines: Vec<&str> = text.lines().collect();
    let page = page_lines("pelion");
    let mut rows = 0;
    for (i, line) in lines.iter().enumerate() {
        let Some((status, _)) = line.split_once(" | ") else {
            continue;
        };
        if status.len() != 3 || !status.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let row = normalize(&format!("{line} {}", lines[i + 1]));
        assert_row(&page, &row, |l| l.contains(&row));
        rows += 1;
    }
    assert_eq!(rows, 17);
}

#[test]
fn knox_page_has_every_row_of_both_tables() {
    let text = seed("003");
    let page = page_lines("knox");
    let mut rows = 0;
    for line in text.lines() {
        let Some((code, _)) = line.split_once(' ') else {
            continue;
        };
        if code.len() < 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let row = normalize(line);
        assert_row(&page, &row, |l| l.contains(&row));
        rows += 1;
    }
    assert_eq!(rows, 18, "9 standard codes and 9 Knox codes");
}

#[test]
fn asyncos_page_has_every_documented_error() {
    let text = seed("000");
    let page = page_lines("asyncos");
    let mut rows = 0;
    // Each error is a JSON body: "message" (wrapped over lines), "code", "explanation".
    for body in text.split("\"error\": {").skip(1) {
        let field = |name: &str| {
            let start = body.find(&format!("\"{name}\": \"")).unwrap() + name.len() + 5;
            let end = start
                + body[start..]
                    .find("\",")
                    .or(body[start..].find("\"\n"))
                    .unwrap();
            normalize(&body[start..end])
        };
        let (message, code, explanation) = (field("message"), field("code"), field("explanation"));
        assert_row(
            &page,
            &format!("{code} … {message} … {explanation}"),
            |l| l.starts_with(&code) && contains_wild(l, &message) && l.contains(&explanation),
        );
        rows += 1;
    }
    assert_eq!(rows, 5);
}

#[test]
fn edgio_page_has_every_error_message_type_of_every_status() {
    let text = seed("001");
    let page = page_lines("edgio");
    let mut rows = Vec::new();
    let mut status: Option<String> = None;
    let mut in_table = false;
    let mut previous_blank = true;
    for line in text.lines() {
        let t = line.trim();
        let head = t.split(' ').next().unwrap_or("");
        if head.len() == 3
            && head.bytes().all(|b| b.is_ascii_digit())
            && t.len() < 40
            && !t.ends_with('.')
        {
            status = Some(head.to_owned());
            in_table = false;
        } else if t == "Error Message Type Description" || t == "Error Code Description" {
            in_table = true;
        } else if in_table
            && previous_blank
            && !t.is_empty()
            && t.len() < 50
            && !t.ends_with(['.', ':', '"'])
            && !t.starts_with('•')
        {
            rows.push((status.clone().unwrap(), t.to_owned()));
        }
        previous_blank = t.is_empty();
    }
    assert_eq!(rows.len(), 15, "{rows:?}");
    for (status, name) in &rows {
        assert_row(&page, &format!("{status} {name}"), |l| {
            l.starts_with(status.as_str()) && l.contains(name.as_str())
        });
    }
}

#[test]
fn ixon_page_has_every_documented_error() {
    let text = seed("004");
    let page = page_lines("ixon");
    let mut messages = Vec::new();
    for line in text.lines() {
        if let Some(m) = line.trim().strip_prefix("\"message\": \"") {
            let m = m.trim_end_matches(',').trim_end_matches('"');
            if !messages.contains(&m) {
                messages.push(m);
            }
        }
    }
    // Eight bodies, seven messages: "Invalid value" of Api-Company and of Authorization.
    assert_eq!(messages.len(), 7, "{messages:?}");
    for m in messages {
        assert_row(&page, m, |l| l.contains(m));
    }
    // The Api-Company header's two: how a header's field error is worded.
    assert_row(&page, "header required Required header", |l| {
        l == "header required Required header"
    });
    assert_row(&page, "header any Invalid value", |l| {
        l == "header any Invalid value"
    });
    assert_row(&page, "Invalid value of Authorization", |l| {
        l.starts_with("401 Invalid value Invalid value")
    });
    // The server error the seed names: 504 past 60 s.
    assert_row(&page, "504 Gateway Timeout", |l| {
        l.starts_with("504") && l.contains("Gateway Timeout") && l.contains("60 seconds")
    });
}

#[test]
fn pages_render_as_html_too() {
    for p in Profile::builtins() {
        let html = profile_page::html(p, Catalog::builtin());
        assert!(html.starts_with("<!doctype html>"), "{}", p.name);
        assert!(html.contains(&format!(
            "<h1>{}",
            candor_catalog::page::escape_html(&p.title)
        )));
    }
}
