//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>): the request's `traceparent`
//! is continued when valid, else a new trace starts at the gateway. Never an error: a
//! malformed `traceparent` only means the trace starts here.
//!
//! The upstream gets `traceparent: 00-<trace id>-<a new span id for this hop>-<flags>` in
//! place of the client's; `tracestate` is passed on unchanged when the client's trace is
//! continued and dropped when a new one starts (it belongs to the trace it came with, as
//! the spec's processing model says). The trace id is in every problem body the pipeline
//! and the admin listener render (`trace_id`) and in the request's events.

use http::{HeaderMap, HeaderName, HeaderValue};

/// `traceparent`
pub(crate) static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// `tracestate`
pub(crate) static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// The `sampled` flag: set on traces the gateway starts, so that an upstream sampling by
/// its parent's decision keeps recording as it did when it started the trace itself.
const SAMPLED: u8 = 0x01;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// One request's place in a trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TraceContext {
    /// The trace's id (never all zero).
    pub(crate) trace_id: [u8; 16],
    /// The caller's span (the client's parent id), or this hop's own when the trace
    /// started here.
    pub(crate) span_id: [u8; 8],
    /// Trace flags (bit 0: sampled).
    pub(crate) flags: u8,
    /// Whether the trace came with the request (else it started at the gateway).
    pub(crate) continued: bool,
    /// The gateway's own span for this request: the parent the upstream is told of, and
    /// the span exported over OTLP. The same as `span_id` when the trace started here.
    pub(crate) hop: [u8; 8],
}

impl TraceContext {
    /// The request's trace: its `traceparent` when there is exactly one and it is valid,
    /// else a new trace.
    pub(crate) fn of(headers: &HeaderMap) -> TraceContext {
        let mut values = headers.get_all(&TRACEPARENT).iter();
        match (values.next(), values.next()) {
            (Some(v), None) => Self::parse(v.as_bytes()).unwrap_or_else(Self::new),
            _ => Self::new(),
        }
    }

    /// A new trace, sampled.
    pub(crate) fn new() -> TraceContext {
        let span_id = nonzero(|| fastrand::u64(..).to_be_bytes());
        TraceContext {
            trace_id: nonzero(|| fastrand::u128(..).to_be_bytes()),
            span_id,
            flags: SAMPLED,
            continued: false,
            hop: span_id,
        }
    }

    /// Parses a `traceparent` value, as the spec's processing model says: version `00` is
    /// exactly `00-<32 hex>-<16 hex>-<2 hex>`; a later version is read by its first 55
    /// characters (followed by the end or a `-`), keeping only the sampled flag; version
    /// `ff`, upper-case hex and all-zero ids are invalid.
    pub(crate) fn parse(v: &[u8]) -> Option<TraceContext> {
        if v.len() < 55 {
            return None;
        }
        let version = hex_byte(&v[0..2])?;
        let flags = match version {
            0xff => return None,
            0 if v.len() != 55 => return None,
            0 => hex_byte(&v[53..55])?,
            _ if v.len() > 55 && v[55] != b'-' => return None,
            _ => hex_byte(&v[53..55])? & SAMPLED,
        };
        if v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
            return None;
        }
        let mut trace_id = [0u8; 16];
        for (i, b) in trace_id.iter_mut().enumerate() {
            *b = hex_byte(&v[3 + 2 * i..5 + 2 * i])?;
        }
        let mut span_id = [0u8; 8];
        for (i, b) in span_id.iter_mut().enumerate() {
            *b = hex_byte(&v[36 + 2 * i..38 + 2 * i])?;
        }
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(TraceContext {
            trace_id,
            span_id,
            flags,
            continued: true,
            hop: nonzero(|| fastrand::u64(..).to_be_bytes()),
        })
    }

    /// The trace id as 32 lower-case hex digits (for problem bodies and events).
    pub(crate) fn trace_id_hex(&self) -> String {
        let mut out = [0u8; 32];
        hex_into(&self.trace_id, &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    /// The `traceparent` the upstream gets: this trace, with this hop's span as the parent.
    pub(crate) fn child_header(&self) -> HeaderValue {
        let span = self.hop;
        let mut out = *b"00-00000000000000000000000000000000-0000000000000000-00";
        hex_into(&self.trace_id, &mut out[3..35]);
        hex_into(&span, &mut out[36..52]);
        hex_into(&[self.flags], &mut out[53..55]);
        HeaderValue::from_bytes(&out).expect("hex digits and dashes are a valid header value")
    }

    /// Sets the upstream request's trace headers: `traceparent` replaced by this hop's, and
    /// `tracestate` dropped when the trace started here.
    pub(crate) fn propagate(&self, headers: &mut HeaderMap) {
        headers.insert(TRACEPARENT.clone(), self.child_header());
        if !self.continued {
            headers.remove(&TRACESTATE);
        }
    }
}

/// A random id that is not all zero (the spec's invalid value).
fn nonzero<const N: usize>(mut random: impl FnMut() -> [u8; N]) -> [u8; N] {
    loop {
        let id = random();
        if id != [0; N] {
            return id;
        }
    }
}

/// Two lower-case hex digits as a byte.
fn hex_byte(two: &[u8]) -> Option<u8> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    Some(digit(two[0])? << 4 | digit(two[1])?)
}

/// `bytes` as lower-case hex digits, into `out` (twice as long).
pub(crate) fn hex_into(bytes: &[u8], out: &mut [u8]) {
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 15)];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn parse(s: &str) -> Option<TraceContext> {
        TraceContext::parse(s.as_bytes())
    }

    #[test]
    fn a_valid_traceparent_is_continued() {
        let t = parse(VALID).unwrap();
        assert_eq!(t.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.span_id, [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
        assert_eq!(t.flags, 1);
        assert!(t.continued);
        assert_eq!(
            parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
                .unwrap()
                .flags,
            0
        );
    }

    #[test]
    fn upper_case_hex_is_invalid() {
        assert_eq!(
            parse("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"),
            None
        );
        assert_eq!(
            parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01"),
            None
        );
    }

    #[test]
    fn all_zero_ids_are_invalid() {
        assert_eq!(
            parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            None
        );
        assert_eq!(
            parse("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"),
            None
        );
    }

    #[test]
    fn version_ff_and_bad_shapes_are_invalid() {
        assert_eq!(
            parse("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            None
        );
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
            "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_future_version_is_read_by_its_first_fields() {
        let t =
            parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03-what-comes").unwrap();
        assert_eq!(t.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        // Only the sampled flag is understood of a later version's flags.
        assert_eq!(t.flags, 1);
        assert!(parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").is_some());
        // What follows the flags must start with a dash.
        assert_eq!(
            parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x"),
            None
        );
    }

    #[test]
    fn the_upstream_gets_the_trace_with_a_new_span() {
        let t = parse(VALID).unwrap();
        let h = t.child_header();
        let sent = parse(h.to_str().unwrap()).unwrap();
        assert_eq!(sent.trace_id, t.trace_id);
        assert_ne!(sent.span_id, t.span_id);
        assert_eq!(sent.flags, 1);
        assert_eq!(&h.as_bytes()[..36], &VALID.as_bytes()[..36]);
    }

    #[test]
    fn tracestate_goes_with_a_continued_trace_only() {
        let mut headers = HeaderMap::new();
        headers.insert(&TRACEPARENT, HeaderValue::from_static(VALID));
        headers.insert(&TRACESTATE, HeaderValue::from_static("vendor=x"));
        let continued = TraceContext::of(&headers);
        assert!(continued.continued);
        let mut sent = headers.clone();
        continued.propagate(&mut sent);
        assert_eq!(sent[&TRACESTATE], "vendor=x");
        assert_ne!(sent[&TRACEPARENT], VALID);

        headers.insert(&TRACEPARENT, HeaderValue::from_static("garbage"));
        let fresh = TraceContext::of(&headers);
        assert!(!fresh.continued);
        assert_eq!(fresh.flags, 1);
        let mut sent = headers.clone();
        fresh.propagate(&mut sent);
        assert!(!sent.contains_key(&TRACESTATE));
        assert_eq!(
            parse(sent[&TRACEPARENT].to_str().unwrap())
                .unwrap()
                .trace_id,
            fresh.trace_id
        );
    }

    #[test]
    fn two_traceparents_start_a_new_trace() {
        let mut headers = HeaderMap::new();
        headers.append(&TRACEPARENT, HeaderValue::from_static(VALID));
        headers.append(&TRACEPARENT, HeaderValue::from_static(VALID));
        assert!(!TraceContext::of(&headers).continued);
    }
}
