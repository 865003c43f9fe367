//! A newcomer's first hour, from the README itself: the tour's commands are read out of
//! README.md (not copied here), run with bash and curl against the demo, and every status
//! and catalog code each comment promises must be in what its commands printed. The sample
//! 404 the README shows must be the demo's answer.

use crate::harness::*;
use std::collections::BTreeSet;
use std::path::Path;

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md")).unwrap()
}

/// The catalog's codes, from the built-in catalog file.
fn catalog_codes() -> BTreeSet<String> {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../catalog/errors.toml"),
    )
    .unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix("code = \""))
        .map(|c| c.trim_end_matches('"').to_owned())
        .collect()
}

/// The tour: its comments, each with the commands under it (continuation lines joined).
fn tour(readme: &str) -> Vec<(String, Vec<String>)> {
    let start = readme
        .find("## A short tour")
        .expect("the README has a tour");
    let end = start
        + readme[start..]
            .find("A wrong path answers like this")
            .expect("the tour ends at the sample answer");
    let mut groups: Vec<(String, Vec<String>)> = vec![(String::new(), Vec::new())];
    let mut pending = String::new();
    for line in readme[start..end].lines() {
        let Some(code) = line.strip_prefix("    ") else {
            continue;
        };
        let code = code.trim();
        if !pending.is_empty() {
            pending.push(' ');
        }
        pending.push_str(code.trim_end_matches('\\').trim());
        if code.ends_with('\\') {
            continue;
        }
        let line = std::mem::take(&mut pending);
        if let Some(comment) = line.strip_prefix('#') {
            let last = groups.last_mut().unwrap();
            if last.1.is_empty() {
                last.0.push_str(comment);
                last.0.push(' ');
            } else {
                groups.push((comment.to_owned(), Vec::new()));
            }
        } else if !line.is_empty() {
            groups.last_mut().unwrap().1.push(line);
        }
    }
    groups
}

/// What a comment promises: the statuses (three-digit numbers) and catalog codes it names.
fn promises(comment: &str, codes: &BTreeSet<String>) -> (Vec<String>, Vec<String>) {
    let mut statuses = Vec::new();
    let mut named = Vec::new();
    for word in comment.split(|c: char| c.is_whitespace() || ",;:()".contains(c)) {
        let word = word.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '_');
        if word.len() == 3
            && word.bytes().all(|b| b.is_ascii_digit())
            && ("100".."600").contains(&word)
        {
            statuses.push(word.to_owned());
        } else if codes.contains(word) {
            named.push(word.to_owned());
        }
    }
    (statuses, named)
}

#[test]
fn the_readme_tour_does_what_the_readme_says() {
    let gw = Gateway::start_demo();
    let data = gw.dir.join("data");
    let base = format!("http://{}", gw.addr);
    let codes = catalog_codes();
    let groups = tour(&readme());
    assert!(groups.len() >= 10, "{groups:?}");

    // One bash script, so that TOKEN carries from the first command to the others; each
    // command's output is marked off, with its exit status.
    let mut script = String::new();
    let mut n = 0;
    for (_, commands) in &groups {
        for c in commands {
            let c = c
                .replace("http://127.0.0.1:8080", &base)
                .replace("candor-data/", &format!("{}/", data.display()));
            let c = match c.strip_prefix("candor ") {
                // In the demo's directory `candor explain` needs no flag; the demo here
                // keeps its data elsewhere.
                Some(rest) if rest.starts_with("explain ") => {
                    format!("{BIN} {rest} --data-dir {}", data.display())
                }
                Some(rest) => format!("{BIN} {rest}"),
                None => c,
            };
            script.push_str(&format!(
                "echo '@@@ {n}'\n{c}\nrc=$?; echo; echo \"@@@ rc=$rc\"\n"
            ));
            n += 1;
        }
    }
    // A curl that hangs fails the test instead of holding it.
    std::fs::write(gw.dir.join(".curlrc"), "max-time = 30\n").unwrap();
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .env("CURL_HOME", &*gw.dir)
        .current_dir(&*gw.dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let outputs: Vec<&str> = stdout.split("@@@ ").filter(|s| !s.is_empty()).collect();
    // Per command: its marker, then its exit status.
    assert_eq!(
        outputs.len(),
        2 * n,
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut i = 0;
    let mut checked = 0;
    for (comment, commands) in &groups {
        let mut printed = String::new();
        for c in commands {
            let text = outputs[2 * i];
            let rc = outputs[2 * i + 1];
            assert!(rc.starts_with("rc=0"), "`{c}` failed ({rc}): {text}");
            printed.push_str(text);
            i += 1;
        }
        let (statuses, named) = promises(comment, &codes);
        for status in &statuses {
            assert!(
                printed.split_whitespace().any(|w| w == status),
                "the README says `{comment}`, but {status} is not in what {commands:?} printed:\n{printed}"
            );
        }
        for code in &named {
            assert!(
                printed.contains(&format!("\"code\":\"{code}\"")),
                "the README says `{comment}`, but {code} is not in what {commands:?} printed:\n{printed}"
            );
        }
        checked += statuses.len() + named.len();
    }
    assert!(checked >= 15, "the tour promised only {checked} answers");
    // The first command got a token from the kept demo client.
    assert!(stdout.contains("HTTP/1.1 201 Created"), "{stdout}");
}

#[test]
fn the_readme_sample_404_is_the_demo_answer() {
    let readme = readme();
    let start = readme.find("A wrong path answers like this").unwrap();
    let block = &readme[start..];
    let block = &block[block.find("```").unwrap() + 3..];
    let block = &block[..block.find("```").unwrap()];
    let json_start = block.find('{').unwrap();
    let (head, body) = block.split_at(json_start);
    assert!(head.contains("HTTP/1.1 404 Not Found"), "{head}");
    let sample: serde_json::Value = serde_json::from_str(&body.replace("\n ", " "))
        .unwrap_or_else(|e| panic!("the README's sample is not JSON ({e}): {body}"));

    let gw = Gateway::start_demo();
    let path = sample["instance"].as_str().unwrap();
    let r = gw.get(path);
    assert_eq!(r.status, 404);
    let real = r.json();
    for key in [
        "title",
        "status",
        "detail",
        "instance",
        "code",
        "retry",
        "errors",
        "suggestions",
    ] {
        assert_eq!(real[key], sample[key], "README sample `{key}`");
    }
    let real_type = real["type"].as_str().unwrap();
    let sample_type = sample["type"].as_str().unwrap();
    assert!(
        real_type.ends_with("/errors/route_not_found")
            && sample_type.ends_with("/errors/route_not_found"),
        "{real_type} / {sample_type}"
    );
}
