//! Every catalog code is produced by at least one black-box test. The tests assert codes
//! through `assert_problem(&response, "code")`; this test reads those calls from the suite's
//! sources (every `.rs` file under `tests/blackbox/`, at any depth, but this one). Codes
//! whose producing work is not built yet are listed in `OWNED_BY_LATER_WORK`, which later
//! work shrinks to empty.

use std::collections::BTreeSet;

/// Codes raised by stages that are not built yet: operations a mode does not support.
const OWNED_BY_LATER_WORK: &[&str] = &["unsupported_for_mode"];

#[test]
fn every_catalog_code_is_produced_by_a_test() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/blackbox");
    let mut sources = Vec::new();
    rust_sources(&dir, &mut sources);
    let this = dir.join("catalog_coverage.rs");
    assert!(
        sources.contains(&this),
        "the scan does not see the suite's sources in {}",
        dir.display()
    );
    let mut produced = BTreeSet::new();
    for path in sources.iter().filter(|p| **p != this) {
        let text = std::fs::read_to_string(path).unwrap();
        for call in text.split("assert_problem(").skip(1) {
            if let Some(code) = last_string_argument(call) {
                produced.insert(code);
            }
        }
    }
    let catalog = candor_catalog::Catalog::builtin();
    let mut missing = Vec::new();
    for e in catalog.entries() {
        let later = OWNED_BY_LATER_WORK.contains(&e.code.as_str());
        let tested = produced.contains(&e.code);
        assert!(
            !(later && tested),
            "{} is tested now: remove it from OWNED_BY_LATER_WORK",
            e.code
        );
        if !later && !tested {
            missing.push(e.code.clone());
        }
    }
    assert!(
        missing.is_empty(),
        "catalog codes no test produces: {missing:?}"
    );
    for code in &produced {
        assert!(
            catalog.get(code).is_some(),
            "tests assert unknown code {code}"
        );
    }
}

/// Every `.rs` file under `dir`, at any depth.
fn rust_sources(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The call's arguments up to its closing parenthesis (strings and nesting respected), and
/// of those the last one if it is a string literal: `assert_problem(&r, "code")` → `code`.
fn last_string_argument(call: &str) -> Option<String> {
    let mut depth = 1;
    let mut in_string = false;
    let mut escaped = false;
    let mut end = None;
    for (i, c) in call.char_indices() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => {
                depth -= 1;
                if depth == 0 {
                    end = Some(i);
                    break;
                }
            }
            _ => {}
        }
    }
    let args = call[..end?].trim().trim_end_matches(',').trim_end();
    let inner = args.strip_suffix('"')?;
    let start = inner.rfind('"')?;
    let code = &inner[start + 1..];
    let snake = !code.is_empty() && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    snake.then(|| code.to_owned())
}
