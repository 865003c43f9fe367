//! The HTTP/1 grammar the head guard checks before hyper parses a head: request lines
//! (method, target, version), header lines (field name, colon, value), and the first bytes of
//! a connection (TLS sent to a plain listener, plain HTTP sent to a TLS one). Each failure is
//! a catalog error naming the line and the field, never a value.

use crate::error::GatewayError;
use candor_catalog::codes;

/// Checks an HTTP/1.x request line before the HTTP parser sees it, so that a raw space or
/// control character in the target, or a line that is not HTTP at all, is answered through
/// the catalog (the parser would answer a bare 400). Returns `None` when the line is fine or
/// not complete in `buf`; the target, when known, comes with the error. A target longer than
/// `max_uri` bytes is `uri_too_long`, whatever else is wrong with it (the same answer on every
/// listener, and before the URI parser, which takes at most 65,534 bytes).
pub(crate) fn check_request_line(buf: &[u8], max_uri: usize) -> Option<(GatewayError, String)> {
    let end = buf.iter().position(|&b| b == b'\n')?;
    let line = buf[..end].strip_suffix(b"\r").unwrap_or(&buf[..end]);
    if line.is_empty() || line.starts_with(b"PRI * HTTP/2.0") {
        return None;
    }
    let malformed = |reason: String| Some(malformed_request(reason, line));
    let Some(sp1) = line.iter().position(|&b| b == b' ') else {
        return malformed("there is no space after the method".into());
    };
    let method = &line[..sp1];
    if method.is_empty() || !method.iter().all(is_tchar) {
        return malformed("the method is not an HTTP token".into());
    }
    let rest = &line[sp1 + 1..];
    let Some(sp2) = rest.iter().rposition(|&b| b == b' ') else {
        return malformed("there is no protocol version after the request target".into());
    };
    let (target, version) = (&rest[..sp2], &rest[sp2 + 1..]);
    if target.len() > max_uri {
        let err = crate::stages::transport::uri_too_long(target.len().to_string(), max_uri);
        return Some((err, path_of(&target[..max_uri])));
    }
    if version != b"HTTP/1.1" && version != b"HTTP/1.0" {
        let v = escaped(version, 16);
        return malformed(format!("`{v}` is not HTTP/1.0 or HTTP/1.1"));
    }
    let (bad, reason) = match target.iter().position(|&b| b <= b' ' || b == 0x7f) {
        Some(bad) if target[bad] == b' ' => (bad, "raw space (encode it as %20)"),
        Some(bad) => (bad, "raw control character"),
        // The parser takes the target only as a URI it can parse: anything else would be
        // its bare 400.
        None if http::Uri::try_from(target).is_err() => {
            if !target.starts_with(b"/") && target != b"*" {
                let shown = escaped(target, 24);
                return malformed(format!(
                    "the request target `{shown}` is not a path (starting with /), an absolute URL or *"
                ))
                .map(|(e, _)| (e, path_of(target)));
            }
            let bad = target
                .iter()
                .position(|&b| http::Uri::try_from([b'/', b].as_slice()).is_err())
                .unwrap_or(0);
            (bad, "character not allowed in a URL (percent-encode it)")
        }
        None => return check_header_lines(&buf[end + 1..]).map(|e| (e, path_of(target))),
    };
    let err = GatewayError::new(codes::INVALID_URL_ENCODING)
        .param("reason", reason)
        .param("position", bad.to_string())
        .param("bytes", format!("0x{:02X}", target[bad]))
        .extension("position", bad.into())
        .extension("bytes", format!("0x{:02X}", target[bad]).into());
    Some((err, path_of(target)))
}

/// `malformed_request` for the first bytes of a request line that is not complete yet, when
/// they cannot start an HTTP/1 request (only the first 64 bytes are looked at): a client
/// speaking another protocol may otherwise wait forever for an answer.
/// A target already longer than `max_uri` bytes is `uri_too_long` at once, without waiting
/// for the rest of the line.
pub(crate) fn check_request_start(
    line_so_far: &[u8],
    max_uri: usize,
) -> Option<(GatewayError, String)> {
    let start = &line_so_far[..line_so_far.len().min(64)];
    if let Some(sp1) = start.iter().position(|&b| b == b' ')
        && start[..sp1].iter().all(is_tchar)
    {
        // The target so far, less the room a ` HTTP/1.1\r` that may follow takes.
        let seen = line_so_far.len() - sp1 - 1;
        if seen > max_uri + 10 {
            let err =
                crate::stages::transport::uri_too_long(format!("more than {max_uri}"), max_uri);
            let target = &line_so_far[sp1 + 1..];
            return Some((err, path_of(&target[..max_uri])));
        }
    }
    let method = start.split(|&b| b == b' ').next().unwrap_or_default();
    if method.iter().all(is_tchar) {
        return None;
    }
    let reason = if start.first() == Some(&0x16) {
        "it starts like a TLS handshake, but this listener speaks plain HTTP (use http://, or the TLS listener)"
    } else {
        "the method is not an HTTP token"
    };
    Some(malformed_request(reason.to_owned(), start))
}

/// `malformed_request` with `reason`, for a request line starting with `line`.
pub(crate) fn malformed_request(reason: String, line: &[u8]) -> (GatewayError, String) {
    let err = GatewayError::new(codes::MALFORMED_REQUEST)
        .param("reason", reason)
        .param("start", format!("\"{}\"", escaped(line, 12)));
    (err, String::new())
}

/// Whether `b` may appear in an HTTP token (RFC 9110 §5.6.2): methods and field names.
pub(crate) fn is_tchar(b: &u8) -> bool {
    TCHAR[usize::from(*b)]
}

/// [`is_tchar`] for each byte value.
const TCHAR: [bool; 256] = {
    let mut table = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        table[i] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        i += 1;
    }
    table
};

/// At most `max` bytes of `bytes`, as text with control characters escaped.
pub(crate) fn escaped(bytes: &[u8], max: usize) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(max)])
        .escape_debug()
        .collect()
}

/// The path of a request target, without its query (which may carry a credential), for
/// the `instance` member.
pub(crate) fn path_of(target: &[u8]) -> String {
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    String::from_utf8_lossy(path).into_owned()
}

/// The path of a plain HTTP request line at the start of `buf` (sent to a TLS listener), or
/// `None` when `buf` does not start like an HTTP request.
pub(crate) fn plain_http_path(buf: &[u8]) -> Option<String> {
    let end = buf.iter().position(|&b| b == b'\n').unwrap_or(buf.len());
    let line = buf[..end].strip_suffix(b"\r").unwrap_or(&buf[..end]);
    let mut words = line.split(|&b| b == b' ');
    let method = words.next()?;
    if method.is_empty() || !method.iter().all(is_tchar) {
        return None;
    }
    let target = words.next()?;
    let path = if target.starts_with(b"/") {
        target
    } else {
        // absolute form: http://host/path
        let rest = target.strip_prefix(b"http://")?;
        let slash = rest.iter().position(|&b| b == b'/').unwrap_or(rest.len());
        if slash == rest.len() {
            b"/"
        } else {
            &rest[slash..]
        }
    };
    let path = path.split(|&b| b == b'?').next().unwrap_or(path);
    Some(String::from_utf8_lossy(path).into_owned())
}

/// Checks the header lines that are complete in `buf` (what follows the request line), up
/// to the empty line that ends them: each must be a field name (an HTTP token), a colon and a
/// value without control characters. The error names the line and the field, never the
/// value (it may be a credential).
fn check_header_lines(buf: &[u8]) -> Option<GatewayError> {
    let mut rest = buf;
    let mut number = 0usize;
    while let Some(end) = memchr::memchr(b'\n', rest) {
        let line = rest[..end].strip_suffix(b"\r").unwrap_or(&rest[..end]);
        rest = &rest[end + 1..];
        if line.is_empty() {
            return None;
        }
        number += 1;
        // What is shown of a line that is not `name: value`: the text before its first
        // space, tab or `=` (the rest may be a credential whose colon was forgotten).
        let shown = |part: &[u8]| -> String {
            let cut = part
                .iter()
                .position(|&b| matches!(b, b' ' | b'\t' | b'='))
                .unwrap_or(part.len());
            let s = escaped(&part[..cut], 40);
            let more = if cut < part.len() { " …" } else { "" };
            format!("\"{s}{more}\"")
        };
        let fail = |field: String, reason: String| {
            Some(
                GatewayError::new(codes::MALFORMED_HEADER)
                    .param("line", number.to_string())
                    .param("field", field)
                    .param("reason", reason)
                    .extension("line", number.into()),
            )
        };
        if line[0] == b' ' || line[0] == b'\t' {
            return fail(
                "(continuation)".into(),
                "it starts with a space or tab, folding the previous header onto a new line (obsolete since RFC 9112; send the value on one line)".into(),
            );
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return fail(shown(line), "there is no colon after the field name".into());
        };
        let name = &line[..colon];
        if name.is_empty() {
            return fail("\"\"".into(), "the field name is empty".into());
        }
        // The longest name a header can have (the `http` crate's); past it the parser would
        // refuse the head itself, with a bare 431.
        const MAX_NAME: usize = (1 << 16) - 1;
        if name.len() > MAX_NAME {
            return fail(
                shown(&name[..40]),
                format!(
                    "the field name is {} bytes long; a field name is at most {MAX_NAME} bytes",
                    name.len()
                ),
            );
        }
        if name.last().is_some_and(|b| *b == b' ' || *b == b'\t') {
            return fail(
                shown(name.trim_ascii_end()),
                "there is whitespace between the field name and the colon".into(),
            );
        }
        if let Some(b) = name.iter().find(|b| !is_tchar(b)) {
            let what = if *b == b' ' {
                "a space".to_owned()
            } else {
                format!("the byte 0x{b:02X}")
            };
            return fail(
                shown(name),
                format!(
                    "the field name contains {what}; names are letters, digits and !#$%&'*+-.^_`|~"
                ),
            );
        }
        if let Some(b) = line[colon + 1..]
            .iter()
            .find(|&&b| (b < b' ' && b != b'\t') || b == 0x7f)
        {
            return fail(
                shown(name),
                format!("its value contains the control character 0x{b:02X}"),
            );
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_table_is_rfc_9110s_tchar() {
        for b in 0..=255u8 {
            let tchar = b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
            assert_eq!(is_tchar(&b), tchar, "{b:#x}");
        }
    }

    fn code(line: &[u8]) -> Option<&'static str> {
        check_request_line(line, 8192).map(|(e, _)| e.code)
    }

    #[test]
    fn request_lines() {
        assert_eq!(code(b"GET /a HTTP/1.1\r\nHost: x\r\n"), None);
        assert_eq!(
            code(b"GET /a HTTP/1.1"),
            None,
            "incomplete: the parser decides"
        );
        assert_eq!(code(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), None);
        assert_eq!(
            code(b"GET /a b HTTP/1.1\r\n"),
            Some(codes::INVALID_URL_ENCODING)
        );
        assert_eq!(
            code(b"GET /a\x01 HTTP/1.1\r\n"),
            Some(codes::INVALID_URL_ENCODING)
        );
        assert_eq!(code(b"GARBAGE\r\n"), Some(codes::MALFORMED_REQUEST));
        assert_eq!(code(b"GET /a SMTP/9\r\n"), Some(codes::MALFORMED_REQUEST));
        assert_eq!(code(b"G(T /a HTTP/1.1\r\n"), Some(codes::MALFORMED_REQUEST));
        let header = |h: &[u8]| {
            let mut req = b"GET /a HTTP/1.1\r\nHost: x\r\n".to_vec();
            req.extend_from_slice(h);
            check_request_line(&req, 8192).map(|(e, t)| {
                assert_eq!(t, "/a");
                let get = |k| e.params.iter().find(|(n, _)| *n == k).unwrap().1.clone();
                (e.code, get("line"), get("field"), get("reason"))
            })
        };
        assert_eq!(header(b"Accept: */*\r\n\r\n"), None);
        assert_eq!(header(b"Accept: */*\r\n"), None, "more may follow");
        assert_eq!(header(b"X-Ok: tab\there\r\n"), None);
        let (c, line, field, reason) = header(b"X Api Key: secret\r\n\r\n").unwrap();
        assert_eq!(
            (c, line.as_str(), field.as_str()),
            (codes::MALFORMED_HEADER, "2", "\"X …\"")
        );
        // A credential whose colon was forgotten is not repeated.
        for (line, field) in [
            (
                &b"Authorization Bearer abc:def\r\n\r\n"[..],
                "\"Authorization …\"",
            ),
            (b"X-Api-Key sk_live_abc\r\n\r\n", "\"X-Api-Key …\""),
            (b"token=abc\r\n\r\n", "\"token …\""),
        ] {
            let (_, _, shown, reason) = header(line).unwrap();
            assert_eq!(shown, field);
            assert!(!reason.contains("abc"), "{reason}");
        }
        // The query of the target is not repeated in `instance`.
        let (_, target) =
            check_request_line(b"GET /a?key=s3cret HTTP/1.1\r\nBad Line\r\n\r\n", 8192).unwrap();
        assert_eq!(target, "/a");
        assert!(reason.contains("a space"), "{reason}");
        assert!(
            header(b"Accept */*\r\n\r\n")
                .unwrap()
                .3
                .contains("no colon")
        );
        assert!(
            header(b"Accept : x\r\n\r\n")
                .unwrap()
                .3
                .contains("whitespace")
        );
        assert!(header(b": x\r\n\r\n").unwrap().3.contains("empty"));
        assert!(header(b" folded\r\n\r\n").unwrap().3.contains("folding"));
        let (_, _, field, reason) = header(b"Authorization: Bearer a\x01b\r\n\r\n").unwrap();
        assert_eq!(field, "\"Authorization\"");
        assert!(
            reason.contains("0x01") && !reason.contains("Bearer"),
            "{reason}"
        );
        assert_eq!(
            plain_http_path(b"GET /v1/x?y=1 HTTP/1.1\r\n").as_deref(),
            Some("/v1/x")
        );
        assert_eq!(
            plain_http_path(b"GET http://h/a HTTP/1.1").as_deref(),
            Some("/a")
        );
        assert_eq!(plain_http_path(b"\x16\x03\x01"), None);
        assert_eq!(plain_http_path(b"SSH-2.0-OpenSSH"), None);
        let (e, target) = check_request_line(b"GET /a/b c HTTP/1.1\r\n", 8192).unwrap();
        assert_eq!(target, "/a/b c");
        assert!(e.params.contains(&("position", "4".to_owned())));
    }
}
