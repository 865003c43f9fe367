//! Parse stage: check the request target's encoding and normalise its path, so that routing
//! sees one canonical form and cannot be steered by `%2e%2e`, `/../` or `//` tricks.

use crate::error::GatewayError;
use crate::pipeline::context::RequestCtx;
use candor_catalog::codes;
use std::borrow::Cow;

/// A request target that passed the checks.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Target<'a> {
    /// The normalised path with escapes decoded (except `%2F`, which stays escaped so it
    /// cannot act as a separator): what routes match against.
    pub path: Cow<'a, str>,
    /// The normalised path as it arrived (escapes kept): what is forwarded upstream.
    pub forward: Cow<'a, str>,
}

/// Why a request target was refused, for `invalid_url_encoding`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct EncodingError {
    /// What rule was broken.
    pub reason: &'static str,
    /// Byte offset in the request target.
    pub position: usize,
    /// The offending bytes, as they appeared.
    pub bytes: String,
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn raw_byte_problem(b: u8) -> Option<&'static str> {
    match b {
        b' ' => Some("raw space (encode it as %20)"),
        0..=0x1f | 0x7f => Some("raw control character"),
        0x80.. => Some("raw non-ASCII byte (percent-encode it)"),
        _ => None,
    }
}

/// Checks escapes in `s` (starting at `offset` in the target); calls `on_byte` for each
/// decoded byte.
fn scan(s: &str, offset: usize, mut on_byte: impl FnMut(u8, usize)) -> Result<(), EncodingError> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            match (
                b.get(i + 1).and_then(|&x| hex(x)),
                b.get(i + 2).and_then(|&x| hex(x)),
            ) {
                (Some(h), Some(l)) => {
                    on_byte(h * 16 + l, i);
                    i += 3;
                }
                _ => {
                    let end = (i + 3).min(b.len());
                    return Err(EncodingError {
                        reason: "'%' not followed by two hex digits",
                        position: offset + i,
                        bytes: String::from_utf8_lossy(&b[i..end]).into_owned(),
                    });
                }
            }
        } else if let Some(reason) = raw_byte_problem(b[i]) {
            return Err(EncodingError {
                reason,
                position: offset + i,
                bytes: format!("0x{:02X}", b[i]),
            });
        } else {
            on_byte(b[i], usize::MAX);
            i += 1;
        }
    }
    Ok(())
}

/// Checks a query string's encoding (it is forwarded as is).
pub(crate) fn check_query(query: &str, offset: usize) -> Result<(), EncodingError> {
    scan(query, offset, |_, _| {})
}

/// Checks and normalises `path`.
pub(crate) fn parse_path(path: &str) -> Result<Target<'_>, EncodingError> {
    // Fast path: nothing to decode and nothing to normalise.
    let b = path.as_bytes();
    let plain = b.first() == Some(&b'/')
        && !b
            .iter()
            .any(|&c| c == b'%' || raw_byte_problem(c).is_some())
        && !path.contains("//")
        && !path.split('/').any(|s| s == "." || s == "..");
    if plain {
        return Ok(Target {
            path: Cow::Borrowed(path),
            forward: Cow::Borrowed(path),
        });
    }
    let mut raw_out: Vec<&str> = Vec::new();
    let mut dec_out: Vec<String> = Vec::new();
    let mut offset = 0;
    let body = path.strip_prefix('/').unwrap_or(path);
    if path.starts_with('/') {
        offset = 1;
    }
    let mut trailing = false;
    let parts: Vec<&str> = body.split('/').collect();
    for (n, seg) in parts.iter().enumerate() {
        let last = n + 1 == parts.len();
        let seg_offset = offset;
        offset += seg.len() + 1;
        match *seg {
            "" => {
                trailing = last && !raw_out.is_empty();
                continue;
            }
            "." => {
                trailing = last;
                continue;
            }
            ".." => {
                raw_out.pop();
                dec_out.pop();
                trailing = last;
                continue;
            }
            _ => trailing = false,
        }
        let mut bytes = Vec::with_capacity(seg.len());
        let mut bad: Option<EncodingError> = None;
        scan(seg, seg_offset, |byte, at| {
            if bad.is_some() {
                return;
            }
            if at != usize::MAX && (byte < 0x20 || byte == 0x7f) {
                bad = Some(EncodingError {
                    reason: "encoded control character",
                    position: seg_offset + at,
                    bytes: seg[at..at + 3].to_owned(),
                });
            } else if at != usize::MAX && byte == b'/' {
                bytes.extend_from_slice(&seg.as_bytes()[at..at + 3]);
            } else {
                bytes.push(byte);
            }
        })?;
        if let Some(e) = bad {
            return Err(e);
        }
        let decoded = match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(_) => {
                return Err(EncodingError {
                    reason: "decodes to invalid UTF-8",
                    position: seg_offset,
                    bytes: (*seg).to_owned(),
                });
            }
        };
        if decoded == "." || decoded == ".." {
            return Err(EncodingError {
                reason: "encoded dot segment (a path may not climb with %2e)",
                position: seg_offset,
                bytes: (*seg).to_owned(),
            });
        }
        raw_out.push(seg);
        dec_out.push(decoded);
    }
    let join = |parts: &[&str]| {
        let mut s = String::with_capacity(path.len());
        for p in parts {
            s.push('/');
            s.push_str(p);
        }
        if s.is_empty() || trailing {
            s.push('/');
        }
        s
    };
    let dec_refs: Vec<&str> = dec_out.iter().map(String::as_str).collect();
    Ok(Target {
        path: Cow::Owned(join(&dec_refs)),
        forward: Cow::Owned(join(&raw_out)),
    })
}

/// The parse stage: refuses a target with a bad escape or character; keeps the canonical
/// path (to route on) and the path to forward when normalising changed them.
pub(crate) fn run(ctx: &mut RequestCtx<'_>) -> Result<(), GatewayError> {
    let raw_path = ctx.parts.uri.path();
    let checked = parse_path(raw_path).and_then(|target| {
        if let Some(q) = ctx.parts.uri.query() {
            check_query(q, raw_path.len() + 1)?;
        }
        Ok(target)
    });
    match checked {
        Ok(target) => {
            // A path that needed no normalisation is read from the request itself.
            let canonical = match target.path {
                Cow::Borrowed(_) => None,
                Cow::Owned(p) => Some(p),
            };
            let forward = match target.forward {
                Cow::Borrowed(_) => None,
                Cow::Owned(p) => Some(p),
            };
            ctx.canonical_path = canonical;
            ctx.forward_path = forward;
            Ok(())
        }
        Err(e) => {
            ctx.trail.record(
                "parse",
                "reject",
                Some(codes::INVALID_URL_ENCODING),
                vec![("reason", e.reason.to_owned())],
            );
            Err(encoding_error(e))
        }
    }
}

/// The catalog's answer to a target with a bad escape or character.
pub(crate) fn encoding_error(e: EncodingError) -> GatewayError {
    GatewayError::new(codes::INVALID_URL_ENCODING)
        .param("reason", e.reason)
        .param("position", e.position.to_string())
        .param("bytes", e.bytes.clone())
        .extension("position", e.position.into())
        .extension("bytes", e.bytes.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(p: &str) -> (String, String) {
        let t = parse_path(p).unwrap();
        (t.path.into_owned(), t.forward.into_owned())
    }

    #[test]
    fn plain_paths_are_borrowed() {
        let t = parse_path("/v1/devices").unwrap();
        assert!(matches!(t.path, Cow::Borrowed(_)));
    }

    #[test]
    fn normalises_dots_and_slashes() {
        assert_eq!(ok("/a//b"), ("/a/b".into(), "/a/b".into()));
        assert_eq!(ok("/a/./b/../c"), ("/a/c".into(), "/a/c".into()));
        assert_eq!(
            ok("/../../etc/passwd"),
            ("/etc/passwd".into(), "/etc/passwd".into())
        );
        assert_eq!(ok("/a/b/"), ("/a/b/".into(), "/a/b/".into()));
        assert_eq!(ok("/a/%7Eb"), ("/a/~b".into(), "/a/%7Eb".into()));
        assert_eq!(ok("/a/x%2Fy"), ("/a/x%2Fy".into(), "/a/x%2Fy".into()));
        assert_eq!(ok("/caf%C3%A9"), ("/café".into(), "/caf%C3%A9".into()));
    }

    #[test]
    fn refuses_bad_encodings() {
        let e = parse_path("/a/%zz").unwrap_err();
        assert_eq!(
            (e.reason, e.position, e.bytes.as_str()),
            ("'%' not followed by two hex digits", 3, "%zz")
        );
        let e = parse_path("/a/%2e%2e/admin").unwrap_err();
        assert!(e.reason.starts_with("encoded dot segment"));
        let e = parse_path("/a/%C3%28").unwrap_err();
        assert_eq!(e.reason, "decodes to invalid UTF-8");
        let e = parse_path("/a/%00").unwrap_err();
        assert_eq!(e.reason, "encoded control character");
        let e = parse_path("/a/%4").unwrap_err();
        assert_eq!(e.bytes, "%4");
        assert!(check_query("a=%ZZ", 5).is_err());
        assert!(check_query("a=b%20c&d", 5).is_ok());
    }
}
