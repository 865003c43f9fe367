//! A reader over a spanned TOML document that collects every problem instead of stopping at
//! the first: unknown keys (with a did-you-mean), wrong types, values out of range.

use super::ConfigProblem;
use crate::stages::route::edit_distance;
use std::ops::Range;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// Collects problems with their position in the source text.
/// A file a configuration names, and its fingerprint (modification time and size) taken
/// before loading read it: a change made after it was read is seen, however soon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NamedFile {
    /// Where it is.
    pub(crate) path: std::path::PathBuf,
    /// Its modification time and size, or `None` when it could not be read then.
    pub(crate) seen: Option<(std::time::SystemTime, u64)>,
}

impl NamedFile {
    /// `path` with its fingerprint now.
    pub(crate) fn now(path: &std::path::Path) -> NamedFile {
        NamedFile {
            path: path.to_owned(),
            seen: fingerprint(path),
        }
    }
}

/// The most bytes of a file a configuration names (or of the configuration itself).
const MAX_FILE_BYTES: u64 = 64 << 20;

/// Reads the regular file at `path` whole. Anything else (a FIFO, a device, a folder) is
/// refused at once, never waited on (a FIFO put where a profile was made a reload wait
/// forever for a writer, holding a worker thread: found by the attack probe), and so is a
/// file over 64 MiB.
pub(crate) fn read_file(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    use std::io::{Error, ErrorKind, Read};
    let mut open = std::fs::OpenOptions::new();
    open.read(true);
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // O_NONBLOCK: opening a FIFO does not wait for a writer (reads of a regular file
        // are not affected).
        open.custom_flags(0o4000);
    }
    #[cfg(not(target_os = "linux"))]
    if !std::fs::metadata(path)?.is_file() {
        return Err(Error::new(ErrorKind::InvalidInput, "not a regular file"));
    }
    let f = open.open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        let what = if meta.is_dir() {
            "a folder"
        } else {
            "not a regular file (a FIFO, a socket or a device)"
        };
        return Err(Error::new(ErrorKind::InvalidInput, format!("it is {what}")));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "it is {} bytes, over the {} MiB a named file may be",
                meta.len(),
                MAX_FILE_BYTES >> 20
            ),
        ));
    }
    let mut out = Vec::with_capacity(meta.len() as usize);
    f.take(MAX_FILE_BYTES + 1).read_to_end(&mut out)?;
    if out.len() as u64 > MAX_FILE_BYTES {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("it grew past {} MiB while read", MAX_FILE_BYTES >> 20),
        ));
    }
    Ok(out)
}

/// [`read_file`] as UTF-8 text.
pub(crate) fn read_file_to_string(path: &std::path::Path) -> std::io::Result<String> {
    String::from_utf8(read_file(path)?).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "stream did not contain valid UTF-8",
        )
    })
}

/// A file's modification time and size, if it can be read.
pub(crate) fn fingerprint(path: &std::path::Path) -> Option<(std::time::SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

pub(crate) struct Problems<'s> {
    src: &'s str,
    pub(crate) list: Vec<ConfigProblem>,
    /// What the configuration does not stop on but an operator should know (an OpenAPI
    /// document's parts the gateway does not check, when told to warn of them).
    pub(crate) notices: Vec<ConfigProblem>,
    /// The other files the configuration names that loading it read (or tried to):
    /// schemas, OpenAPI documents, profiles, the catalog, secrets, TLS certificates and
    /// keys. A change to one reloads the configuration, as a change to the file itself does.
    pub(crate) files: Vec<NamedFile>,
}

impl<'s> Problems<'s> {
    pub(crate) fn new(src: &'s str) -> Self {
        Problems {
            src,
            list: Vec::new(),
            notices: Vec::new(),
            files: Vec::new(),
        }
    }

    /// Reads the file at `path`, noting it (see [`Problems::files`]).
    pub(crate) fn read_to_string(&mut self, path: &std::path::Path) -> std::io::Result<String> {
        self.reads(path);
        read_file_to_string(path)
    }

    /// Notes that loading reads `path` (see [`Problems::files`]), as it is before it is read.
    pub(crate) fn reads(&mut self, path: &std::path::Path) {
        if !self.files.iter().any(|f| f.path == path) {
            self.files.push(NamedFile::now(path));
        }
    }

    /// Records a problem at byte range `span`.
    pub(crate) fn at(
        &mut self,
        span: Range<usize>,
        key: &str,
        message: String,
    ) -> &mut ConfigProblem {
        let problem = self.problem(span, key, message);
        self.list.push(problem);
        self.list.last_mut().expect("just pushed")
    }

    /// Records a notice at byte range `span`: reported, but the configuration loads.
    pub(crate) fn notice(&mut self, span: Range<usize>, key: &str, message: String) {
        let problem = self.problem(span, key, message);
        self.notices.push(problem);
    }

    fn problem(&self, span: Range<usize>, key: &str, message: String) -> ConfigProblem {
        let (line, column) = line_col(self.src, span.start);
        ConfigProblem {
            line,
            column,
            key: key.to_owned(),
            message,
            expected: None,
            suggestion: None,
        }
    }
}

/// 1-based line and column (in characters) of byte `offset`.
pub(crate) fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(src.len());
    let before = &src[..src.floor_char_boundary(offset)];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Reads the keys of one table; unread keys are reported as unknown by [`TableReader::finish`].
pub(crate) struct TableReader<'a, 'i> {
    table: &'a DeTable<'i>,
    /// Where a key this table lacks is read from (an `[[openapi]]` entry's settings for
    /// each of its operations), with that table's path.
    fallback: Option<(&'a DeTable<'i>, String)>,
    path: String,
    known: &'static [&'static str],
    pub(crate) span: Range<usize>,
}

impl<'a, 'i> TableReader<'a, 'i> {
    pub(crate) fn new(
        table: &'a DeTable<'i>,
        span: Range<usize>,
        path: &str,
        known: &'static [&'static str],
    ) -> Self {
        TableReader {
            table,
            fallback: None,
            path: path.to_owned(),
            known,
            span,
        }
    }

    /// This table, reading the keys it lacks from `other` (whose own unknown keys are its
    /// reader's to report).
    pub(crate) fn with_fallback(mut self, other: &TableReader<'a, 'i>) -> Self {
        self.fallback = Some((other.table, other.path.clone()));
        self
    }

    /// The dotted key path of `key` in this table, for messages.
    pub(crate) fn key_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    pub(crate) fn get(&self, key: &str) -> Option<&'a Spanned<DeValue<'i>>> {
        debug_assert!(self.known.contains(&key), "{key} not declared known");
        let find = |t: &'a DeTable<'i>| {
            t.iter()
                .find(|(k, _)| k.get_ref().as_ref() == key)
                .map(|(_, v)| v)
        };
        find(self.table).or_else(|| self.fallback.as_ref().and_then(|(t, _)| find(t)))
    }

    fn wrong_type(
        &self,
        p: &mut Problems<'_>,
        key: &str,
        v: &Spanned<DeValue<'_>>,
        expected: &str,
    ) {
        p.at(
            v.span(),
            &self.key_path(key),
            format!("wrong type: found {}", v.get_ref().type_str()),
        )
        .expected = Some(expected.to_owned());
    }

    pub(crate) fn string(&self, p: &mut Problems<'_>, key: &str) -> Option<(String, Range<usize>)> {
        let v = self.get(key)?;
        match v.get_ref() {
            DeValue::String(s) => Some((s.to_string(), v.span())),
            _ => {
                self.wrong_type(p, key, v, "a string");
                None
            }
        }
    }

    pub(crate) fn boolean(&self, p: &mut Problems<'_>, key: &str) -> Option<bool> {
        let v = self.get(key)?;
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.wrong_type(p, key, v, "true or false");
                None
            }
        }
    }

    /// An integer in `min..=max`.
    pub(crate) fn integer(
        &self,
        p: &mut Problems<'_>,
        key: &str,
        min: i64,
        max: i64,
    ) -> Option<i64> {
        let v = self.get(key)?;
        let expected = format!("an integer from {min} to {max}");
        let n = match v.get_ref() {
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix()).ok(),
            _ => {
                self.wrong_type(p, key, v, &expected);
                return None;
            }
        };
        match n {
            Some(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                p.at(
                    v.span(),
                    &self.key_path(key),
                    format!("{} is out of range", display(v.get_ref())),
                )
                .expected = Some(expected);
                None
            }
        }
    }

    /// A duration in the grammar of [`crate::duration`]: a string such as "250ms", "60s",
    /// "5m", "1h", "1d", or an integer number of seconds.
    pub(crate) fn duration(&self, p: &mut Problems<'_>, key: &str) -> Option<std::time::Duration> {
        use crate::duration::{DurationError, Unit};
        let v = self.get(key)?;
        let parsed = match v.get_ref() {
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) if n < 0 => Err(DurationError::Negative),
                Ok(n) => crate::duration::parse(&n.to_string(), Unit::Seconds),
                Err(_) => Err(DurationError::TooLarge),
            },
            DeValue::String(s) => crate::duration::parse(s, Unit::Seconds),
            DeValue::Float(_) => Err(DurationError::Fraction),
            _ => Err(DurationError::NotANumber),
        };
        match parsed {
            Ok(d) => Some(d),
            Err(e) => {
                p.at(
                    v.span(),
                    &self.key_path(key),
                    format!("{} is not a duration: {e}", display(v.get_ref())),
                )
                .expected = Some(format!(
                    "{}; a bare number is seconds (README: Durations)",
                    crate::duration::GRAMMAR
                ));
                None
            }
        }
    }

    /// A duration (as [`TableReader::duration`]) of whole seconds from `min` to `max`.
    pub(crate) fn duration_in(
        &self,
        p: &mut Problems<'_>,
        key: &str,
        min: std::time::Duration,
        max: std::time::Duration,
    ) -> Option<std::time::Duration> {
        let d = self.duration(p, key)?;
        if d.subsec_nanos() == 0 && (min..=max).contains(&d) {
            return Some(d);
        }
        let v = self.get(key)?;
        let text = crate::duration::text;
        p.at(
            v.span(),
            &self.key_path(key),
            format!(
                "{} ({}) is {}",
                display(v.get_ref()),
                text(d),
                if d.subsec_nanos() != 0 {
                    "not a whole number of seconds"
                } else if d < min {
                    "too short"
                } else {
                    "too long"
                }
            ),
        )
        .expected = Some(format!(
            "a duration from {} to {} such as \"5m\" (a bare number is seconds; README: Durations)",
            text(min),
            text(max)
        ));
        None
    }

    /// An array of strings, with each element's span.
    pub(crate) fn strings(
        &self,
        p: &mut Problems<'_>,
        key: &str,
    ) -> Option<Vec<(String, Range<usize>)>> {
        let v = self.get(key)?;
        let DeValue::Array(items) = v.get_ref() else {
            self.wrong_type(p, key, v, "an array of strings");
            return None;
        };
        let mut out = Vec::new();
        for item in items.iter() {
            match item.get_ref() {
                DeValue::String(s) => out.push((s.to_string(), item.span())),
                other => {
                    p.at(
                        item.span(),
                        &self.key_path(key),
                        format!("expected a string, found {}", other.type_str()),
                    )
                    .expected = Some("an array of strings".into());
                }
            }
        }
        Some(out)
    }

    /// A sub-table.
    pub(crate) fn table(
        &self,
        p: &mut Problems<'_>,
        key: &str,
        known: &'static [&'static str],
    ) -> Option<TableReader<'a, 'i>> {
        let v = self.get(key)?;
        match v.get_ref() {
            DeValue::Table(t) => Some(TableReader::new(t, v.span(), &self.key_path(key), known)),
            _ => {
                self.wrong_type(p, key, v, "a table");
                None
            }
        }
    }

    /// The sub-table at `key`, a key this table's reader does not know in advance (an
    /// operationId); `None` when there is none.
    pub(crate) fn any_table(
        &self,
        p: &mut Problems<'_>,
        key: &str,
        known: &'static [&'static str],
    ) -> Option<TableReader<'a, 'i>> {
        let (_, v) = self
            .table
            .iter()
            .find(|(k, _)| k.get_ref().as_ref() == key)?;
        match v.get_ref() {
            DeValue::Table(t) => Some(TableReader::new(t, v.span(), &self.key_path(key), known)),
            _ => {
                self.wrong_type(p, key, v, "a table");
                None
            }
        }
    }

    /// Reports every key of this table that is not one of `names` (`what` says what a key
    /// names), with the closest.
    pub(crate) fn unknown_tables(&self, p: &mut Problems<'_>, names: &[&str], what: &str) {
        for (k, _) in self.table.iter() {
            let name = k.get_ref().as_ref();
            if names.contains(&name) {
                continue;
            }
            let problem = p.at(
                k.span(),
                &self.key_path(name),
                format!("`{name}` is not {what}"),
            );
            problem.suggestion = did_you_mean(name, names);
            problem.expected = Some(if names.is_empty() {
                "no operations: the document has none".into()
            } else {
                format!("one of: {}", names.join(", "))
            });
        }
    }

    /// An array of tables (`[[key]]`).
    pub(crate) fn tables(
        &self,
        p: &mut Problems<'_>,
        key: &str,
        known: &'static [&'static str],
    ) -> Vec<TableReader<'a, 'i>> {
        let Some(v) = self.get(key) else {
            return Vec::new();
        };
        let DeValue::Array(items) = v.get_ref() else {
            self.wrong_type(p, key, v, &format!("an array of tables ([[{key}]])"));
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match item.get_ref() {
                DeValue::Table(t) => out.push(TableReader::new(
                    t,
                    item.span(),
                    &format!("{}[{i}]", self.key_path(key)),
                    known,
                )),
                other => {
                    p.at(
                        item.span(),
                        &self.key_path(key),
                        format!("expected a table, found {}", other.type_str()),
                    );
                }
            }
        }
        out
    }

    /// Reports every key of the table that is not known, with the closest known key.
    pub(crate) fn finish(self, p: &mut Problems<'_>) {
        for (k, _) in self.table.iter() {
            let name = k.get_ref().as_ref();
            if self.known.contains(&name) {
                continue;
            }
            let known = self.known;
            let problem = p.at(
                k.span(),
                &self.key_path(name),
                format!("unknown key `{name}`"),
            );
            problem.expected = Some(format!("one of: {}", known.join(", ")));
            problem.suggestion = did_you_mean(name, known);
        }
    }
}

/// A TOML value as JSON (a schema written inline): datetimes become strings; a float that
/// JSON cannot hold (inf, nan) becomes null.
pub(crate) fn to_json(v: &DeValue<'_>) -> serde_json::Value {
    use serde_json::Value;
    match v {
        DeValue::String(s) => Value::String(s.to_string()),
        DeValue::Integer(i) => {
            i64::from_str_radix(i.as_str(), i.radix()).map_or(Value::Null, Value::from)
        }
        DeValue::Float(f) => f
            .as_str()
            .replace('_', "")
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::Null, Value::Number),
        DeValue::Boolean(b) => Value::Bool(*b),
        DeValue::Datetime(d) => Value::String(d.to_string()),
        DeValue::Array(a) => Value::Array(a.iter().map(|x| to_json(x.get_ref())).collect()),
        DeValue::Table(t) => Value::Object(
            t.iter()
                .map(|(k, x)| (k.get_ref().to_string(), to_json(x.get_ref())))
                .collect(),
        ),
    }
}

fn display(v: &DeValue<'_>) -> String {
    match v {
        DeValue::String(s) => format!("\"{s}\""),
        DeValue::Integer(i) => i.to_string(),
        DeValue::Float(f) => f.to_string(),
        DeValue::Boolean(b) => b.to_string(),
        other => other.type_str().to_owned(),
    }
}

/// The closest of `candidates` to `word` by edit distance, if it is close enough to be a typo.
/// A candidate whose length is too far from the word's to be within reach is not measured
/// (a client's 5 MB unknown field name costs a count of its characters, not a distance).
pub fn did_you_mean(word: &str, candidates: &[&str]) -> Option<String> {
    let chars = word.chars().count();
    candidates
        .iter()
        .filter(|c| chars.abs_diff(c.chars().count()) <= 2.max(c.len() / 3))
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.to_owned())
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_named_file_that_is_not_a_regular_file_is_refused_at_once() {
        let dir = crate::identity::store::ScratchDir::new("read-file");
        let fifo = dir.0.join("profile.toml");
        // A FIFO with no writer: opening it for reading would wait for one forever.
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        let e = read_file(&fifo).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        let e = read_file_to_string(&dir.0).unwrap_err();
        assert!(e.to_string().contains("a folder"), "{e}");
        let file = dir.0.join("ok.toml");
        std::fs::write(&file, "name = \"x\"").unwrap();
        assert_eq!(read_file_to_string(&file).unwrap(), "name = \"x\"");
        let big = dir.0.join("big.json");
        std::fs::File::create(&big)
            .unwrap()
            .set_len(MAX_FILE_BYTES + 1)
            .unwrap();
        let e = read_file(&big).unwrap_err();
        assert!(e.to_string().contains("over the 64 MiB"), "{e}");
    }

    use super::*;

    #[test]
    fn a_word_far_longer_than_every_candidate_is_not_measured() {
        // The attack probe's finding: a 5 MB unknown body member took seconds of CPU,
        // measured against every known field name.
        assert_eq!(
            did_you_mean(&"k".repeat(5_000_000), &["name", "kind"]),
            None
        );
        assert_eq!(
            did_you_mean("knd", &["name", "kind"]).as_deref(),
            Some("kind")
        );
    }

    #[test]
    fn typos_are_suggested() {
        assert_eq!(
            did_you_mean("methdos", &["methods", "path"]).as_deref(),
            Some("methods")
        );
        assert_eq!(did_you_mean("zzzzzz", &["methods", "path"]), None);
    }

    #[test]
    fn line_and_column() {
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("ab", 0), (1, 1));
    }
}
