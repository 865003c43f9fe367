//! Transport stage: size limits on the request target, the header section and the body.

use crate::config::Limits;
use crate::error::GatewayError;
use candor_catalog::codes;
use http::request::Parts;

/// Checks the limits that can be checked before reading the body.
pub fn check_limits(limits: &Limits, parts: &Parts) -> Result<(), GatewayError> {
    let target_len = parts.uri.path_and_query().map_or(1, |pq| pq.as_str().len());
    if target_len > limits.max_uri_bytes {
        return Err(GatewayError::new(codes::URI_TOO_LONG)
            .param("length", target_len.to_string())
            .param("limit", limits.max_uri_bytes.to_string())
            .extension("limit", limits.max_uri_bytes.into()));
    }
    let mut total = 0usize;
    let mut largest: (&str, usize) = ("", 0);
    for (name, value) in &parts.headers {
        // Name, ": ", value, CRLF: the size the header takes on the wire in HTTP/1.1.
        let size = name.as_str().len() + value.len() + 4;
        total += size;
        if size > largest.1 {
            largest = (name.as_str(), size);
        }
    }
    if total > limits.max_header_bytes {
        return Err(GatewayError::new(codes::HEADERS_TOO_LARGE)
            .param("length", total.to_string())
            .param("limit", limits.max_header_bytes.to_string())
            .param(
                "largest",
                format!(" The largest is {} ({} bytes).", largest.0, largest.1),
            )
            .extension("limit", limits.max_header_bytes.into())
            .extension("largest_header", largest.0.into()));
    }
    if let Some(len) = content_length(parts)
        && len > limits.max_body_bytes
    {
        return Err(payload_too_large(len.to_string(), limits.max_body_bytes));
    }
    Ok(())
}

/// The declared Content-Length, if any and well-formed.
pub fn content_length(parts: &Parts) -> Option<u64> {
    parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// `payload_too_large` for a body of `length` (a number, or words such as "more than N").
pub fn payload_too_large(length: String, limit: u64) -> GatewayError {
    GatewayError::new(codes::PAYLOAD_TOO_LARGE)
        .param("length", length)
        .param("limit", limit.to_string())
        .extension("limit", limit.into())
}

/// Checks an HTTP/1.x request line before the HTTP parser sees it, so that a raw space or
/// control character in the target, or a line that is not HTTP at all, is answered through
/// the catalog (the parser would answer a bare 400). Returns `None` when the line is fine or
/// not complete in `buf`; the target, when known, comes with the error.
pub fn check_request_line(buf: &[u8]) -> Option<(GatewayError, String)> {
    let end = buf.iter().position(|&b| b == b'\n')?;
    let line = buf[..end].strip_suffix(b"\r").unwrap_or(&buf[..end]);
    if line.is_empty() || line.starts_with(b"PRI * HTTP/2.0") {
        return None;
    }
    let start = {
        let shown: String = String::from_utf8_lossy(&line[..line.len().min(12)])
            .escape_debug()
            .collect();
        format!("\"{shown}\"")
    };
    let malformed = |reason: String| {
        Some((
            GatewayError::new(codes::MALFORMED_REQUEST)
                .param("reason", reason)
                .param("start", start.clone()),
            String::new(),
        ))
    };
    let Some(sp1) = line.iter().position(|&b| b == b' ') else {
        return malformed("there is no space after the method".into());
    };
    let method = &line[..sp1];
    let is_tchar = |b: &u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b);
    if method.is_empty() || !method.iter().all(is_tchar) {
        return malformed("the method is not an HTTP token".into());
    }
    let rest = &line[sp1 + 1..];
    let Some(sp2) = rest.iter().rposition(|&b| b == b' ') else {
        return malformed("there is no protocol version after the request target".into());
    };
    let (target, version) = (&rest[..sp2], &rest[sp2 + 1..]);
    if version != b"HTTP/1.1" && version != b"HTTP/1.0" {
        let v: String = String::from_utf8_lossy(&version[..version.len().min(16)])
            .escape_debug()
            .collect();
        return malformed(format!("`{v}` is not HTTP/1.0 or HTTP/1.1"));
    }
    let bad = target.iter().position(|&b| b <= b' ' || b == 0x7f)?;
    let reason = if target[bad] == b' ' {
        "raw space (encode it as %20)"
    } else {
        "raw control character"
    };
    let err = GatewayError::new(codes::INVALID_URL_ENCODING)
        .param("reason", reason)
        .param("position", bad.to_string())
        .param("bytes", format!("0x{:02X}", target[bad]))
        .extension("position", bad.into())
        .extension("bytes", format!("0x{:02X}", target[bad]).into());
    let shown = String::from_utf8_lossy(target).into_owned();
    Some((err, shown))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(line: &[u8]) -> Option<&'static str> {
        check_request_line(line).map(|(e, _)| e.code)
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
        let (e, target) = check_request_line(b"GET /a/b c HTTP/1.1\r\n").unwrap();
        assert_eq!(target, "/a/b c");
        assert!(e.params.contains(&("position", "4".to_owned())));
    }
}
