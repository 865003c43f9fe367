//! What the profile examples' tests share: the seed documents (`<repo>/docs/seeds`,
//! which must be there: a missing seed fails the test, it never skips), the example
//! configurations (`<repo>/examples/NAME.toml`, run on free ports), and the rows of each
//! seed's table the tests cover.

use crate::harness::{Gateway, Upstream};
use std::path::PathBuf;

/// The repository's root.
pub(crate) fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The text of seed `number` (`"002"`): the file `NNN_*.txt` in `<repo>/docs/seeds`.
pub(crate) fn seed(number: &str) -> String {
    let dir = repo().join("docs/seeds");
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "the seed documents are not in {}: {e}; the acceptance tests check the examples against them",
            dir.display()
        )
    });
    for entry in entries {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with(&format!("{number}_")) && name.ends_with(".txt") {
            return std::fs::read_to_string(&path).unwrap();
        }
    }
    panic!("no seed {number}_*.txt in {}", dir.display())
}

/// The JSON documents a seed shows, in order: each `{` at the start of a line up to its
/// matching `}`, with `// comments` removed and line breaks inside strings joined by a
/// space (the documents wrap long messages).
pub(crate) fn seed_bodies(text: &str) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim() == "{" {
            let mut depth = 0i32;
            let mut doc = String::new();
            let mut j = i;
            while j < lines.len() {
                let line = lines[j].split(" // ").next().unwrap_or("");
                depth += line.matches('{').count() as i32 - line.matches('}').count() as i32;
                if !doc.is_empty() {
                    // A line break inside a string is a wrapped line of the document.
                    let open = doc.matches('"').count() % 2 == 1;
                    doc.push_str(if open { " " } else { "\n" });
                }
                doc.push_str(line.trim());
                if depth == 0 {
                    break;
                }
                j += 1;
            }
            out.push(
                serde_json::from_str(&doc)
                    .unwrap_or_else(|e| panic!("a seed body is not JSON ({e}):\n{doc}")),
            );
            i = j;
        }
        i += 1;
    }
    out
}

/// A free loopback port (bound and released).
fn free_port() -> u16 {
    Upstream::refused().port()
}

/// `examples/NAME.toml` as a user runs it, with its demo API on a free port (the gateway's
/// own listener is chosen by the harness).
pub(crate) fn example(name: &str, demo_port: &str) -> String {
    let path = repo().join(format!("examples/{name}.toml"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        text.contains(&format!("127.0.0.1:{demo_port}")),
        "{name}.toml serves its demo API on 127.0.0.1:{demo_port}"
    );
    text.replace(
        &format!("127.0.0.1:{demo_port}"),
        &format!("127.0.0.1:{}", free_port()),
    )
}

/// Starts `example` text, with `prepare` run on its configuration first (accounts and
/// clients made with the CLI, as the README's tour does).
pub(crate) fn start(config: &str, prepare: impl FnOnce(&std::path::Path)) -> Gateway {
    Gateway::start_after(config, prepare)
}

/// Asserts that `covered` (the rows the tests produced) is every row of `seed_rows`, and
/// prints them: the per-seed list of covered rows.
pub(crate) fn assert_all_rows_covered(seed_name: &str, seed_rows: &[String], covered: &[String]) {
    let missing: Vec<&String> = seed_rows.iter().filter(|r| !covered.contains(r)).collect();
    println!(
        "seed {seed_name}: {} rows, covered by real requests:",
        seed_rows.len()
    );
    for r in seed_rows {
        println!("  [{}] {r}", if covered.contains(r) { "x" } else { " " });
    }
    assert!(
        missing.is_empty(),
        "seed {seed_name}: rows no request produced: {missing:?}"
    );
}
