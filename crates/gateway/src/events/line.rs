//! An event's JSON line, written by hand into the writer's buffer: the log writes one per
//! request, so the common parts (ids, times, numbers, names that need no escaping) are
//! copied as they are, and only text that may hold a quote, a backslash or a control
//! character goes through serde_json's escaping. The output is the same JSON as the
//! [`Line`] serializer's (a test holds them together).

use super::{Event, Facts, Line, RequestFacts};
use crate::pipeline::trail::Trail;
use crate::time::SecondText;

impl Line<'_> {
    /// Appends the line (without its newline) to `out`; `second` keeps the text of the
    /// last second written.
    pub(crate) fn write(
        &self,
        out: &mut Vec<u8>,
        second: &mut SecondText,
    ) -> Result<(), serde_json::Error> {
        let e: &Event<'_> = self.event;
        // The log's own text (`ev_` and a ULID, a type, a severity) is copied as it is;
        // each member's name comes with its punctuation in one piece.
        out.extend_from_slice(b"{\"id\":\"");
        raw_bytes(out, self.id);
        out.extend_from_slice(b"\",\"time\":\"");
        second.write_millis(out, self.time_ms);
        out.extend_from_slice(b"\",\"type\":\"");
        raw(out, e.kind);
        out.extend_from_slice(b"\",\"severity\":\"");
        out.extend_from_slice(e.severity.as_str().as_bytes());
        out.push(b'"');
        if let Some(r) = &e.request_id {
            member(out, b",\"request_id\":\"", r);
        }
        if let Some(t) = &e.trace_id {
            out.extend_from_slice(b",\"trace_id\":\"");
            let mut hex = [0u8; 32];
            crate::http::trace::hex_into(t, &mut hex);
            out.extend_from_slice(&hex);
            out.push(b'"');
        }
        if let Some(r) = &e.route {
            member(out, b",\"route\":\"", r);
        }
        if let Some(c) = &e.code {
            member(out, b",\"code\":\"", c);
        }
        match &e.facts {
            Facts::Map(m) => {
                out.extend_from_slice(b",\"facts\":");
                serde_json::to_writer(&mut *out, m)?;
            }
            Facts::Request(r) => request(out, r),
        }
        out.push(b'}');
        Ok(())
    }
}

fn request(out: &mut Vec<u8>, r: &RequestFacts<'_>) {
    // A method is a token: no character of it needs escaping.
    out.extend_from_slice(b",\"facts\":{\"method\":\"");
    raw(out, r.method.as_ref().map_or("", http::Method::as_str));
    out.push(b'"');
    member(out, b",\"path\":\"", &r.path);
    // An address's text never needs escaping.
    out.extend_from_slice(b",\"client\":\"");
    crate::http::address::push_ip(out, r.client);
    out.extend_from_slice(b"\",\"status\":");
    number(out, u64::from(r.status));
    if !r.source.is_empty() {
        member(out, b",\"source\":\"", r.source);
    }
    if !r.ended_by.is_empty() {
        member(out, b",\"ended_by\":\"", r.ended_by);
    }
    out.extend_from_slice(b",\"duration_us\":");
    number(out, r.duration_us);
    if let Some(us) = r.upstream_us {
        out.extend_from_slice(b",\"upstream_us\":");
        number(out, us);
    }
    out.extend_from_slice(b",\"config_generation\":");
    number(out, r.config_generation);
    if let Some(d) = &r.docs {
        member(out, b",\"docs\":\"", d);
    }
    out.extend_from_slice(b",\"trail\":");
    trail(out, &r.trail);
    out.push(b'}');
}

fn trail(out: &mut Vec<u8>, t: &Trail) {
    out.push(b'[');
    for (i, ev) in t.events().iter().enumerate() {
        out.extend_from_slice(if i > 0 {
            b",{\"stage\":\""
        } else {
            b"{\"stage\":\""
        });
        raw(out, ev.stage);
        out.extend_from_slice(b"\",\"outcome\":\"");
        raw(out, ev.outcome);
        out.push(b'"');
        if let Some(c) = ev.code {
            out.extend_from_slice(b",\"code\":\"");
            raw(out, c);
            out.push(b'"');
        }
        if !ev.facts.is_empty() {
            out.extend_from_slice(b",\"facts\":{");
            let mut first = true;
            for (j, (k, v)) in ev.facts.iter().enumerate() {
                // A name given twice keeps its last value, as the serializer does.
                if ev.facts[j + 1..].iter().any(|(later, _)| later == k) {
                    continue;
                }
                out.extend_from_slice(if first { b"\"" } else { b",\"" });
                first = false;
                // A fact's name is the gateway's own.
                raw(out, k);
                member(out, b"\":\"", v);
            }
            out.push(b'}');
        }
        out.push(b'}');
    }
    out.push(b']');
}

/// `lead` (a member's name and punctuation, ending with the string's opening quote),
/// then `s` as a JSON string: copied when nothing in it needs escaping, else escaped by
/// serde_json. Inlined so that each `lead` is copied as the constant it is.
#[inline(always)]
fn member(out: &mut Vec<u8>, lead: &[u8], s: &str) {
    if plain(s.as_bytes()) {
        out.extend_from_slice(lead);
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        out.extend_from_slice(&lead[..lead.len() - 1]);
        // Writing a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

/// The text of a name of the gateway's own, copied as it is. Checked in debug builds.
#[inline]
fn raw(out: &mut Vec<u8>, s: &str) {
    raw_bytes(out, s.as_bytes());
}

/// [`raw`], of bytes.
#[inline]
fn raw_bytes(out: &mut Vec<u8>, s: &[u8]) {
    debug_assert!(s.iter().copied().all(plain_byte), "{s:?}");
    out.extend_from_slice(s);
}

/// Whether `b` is copied into a JSON string as it is (printable ASCII but `"` and `\`).
#[inline]
fn plain_byte(b: u8) -> bool {
    b >= 0x20 && b != b'"' && b != b'\\' && b < 0x7f
}

/// Whether every byte of `s` is [`plain_byte`], read eight at a time; a string of eight
/// bytes or more ends with its last eight, read again where they overlap the whole eights
/// before them.
fn plain(s: &[u8]) -> bool {
    let mut chunks = s.chunks_exact(8);
    for c in &mut chunks {
        if !plain_eight(c) {
            return false;
        }
    }
    match s.len() {
        n if n % 8 == 0 => true,
        n if n > 8 => plain_eight(&s[n - 8..]),
        _ => chunks.remainder().iter().all(|&b| plain_byte(b)),
    }
}

/// Whether each of the eight bytes of `c` is [`plain_byte`].
#[inline]
fn plain_eight(c: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    /// A high bit in each byte of `x` that is zero (exact as a whole: a borrow only
    /// starts at a zero byte).
    fn zero(x: u64) -> u64 {
        x.wrapping_sub(ONES) & !x & HIGH
    }
    let mut eight = [0u8; 8];
    eight.copy_from_slice(c);
    let x = u64::from_le_bytes(eight);
    // With no high bit set, a byte below 0x20 is the only one whose subtraction borrows.
    let control = x.wrapping_sub(ONES * 0x20) & HIGH;
    let odd = zero(x ^ (ONES * u64::from(b'"')))
        | zero(x ^ (ONES * u64::from(b'\\')))
        | zero(x ^ (ONES * 0x7f));
    (x & HIGH) | control | odd == 0
}

fn number(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

#[cfg(test)]
mod tests {
    use super::super::{Event, Facts, Line, RequestFacts, Severity, kinds};
    use crate::pipeline::trail::Trail;

    fn both(ev: &Event) -> (String, String) {
        let line = Line {
            id: b"ev_01KBXYZ",
            time_ms: 1_795_860_005_042,
            event: ev,
        };
        let mut hand = Vec::new();
        line.write(&mut hand, &mut crate::time::SecondText::default())
            .unwrap();
        (
            String::from_utf8(hand).unwrap(),
            serde_json::to_string(&line).unwrap(),
        )
    }

    #[test]
    fn eight_at_a_time_says_what_one_at_a_time_says() {
        // Every byte value at every position of a chunk and of the remainder.
        for len in [1, 7, 8, 9, 15, 16, 17, 23, 26] {
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut s = vec![b'a'; len];
                    s[at] = b;
                    assert_eq!(
                        super::plain(&s),
                        s.iter().all(|&c| super::plain_byte(c)),
                        "{s:?}"
                    );
                }
            }
        }
        assert!(super::plain(b""));
        assert!(super::plain(b"/v1/devices/01M98VA4AH99T4JNBYYVZTNK5A?x=1"));
    }

    proptest::proptest! {
        #[test]
        fn plain_is_exact(s in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40)) {
            proptest::prop_assert_eq!(super::plain(&s), s.iter().all(|&c| super::plain_byte(c)));
        }

        #[test]
        fn the_borrowed_bytes_near_a_control_are_exact(
            s in proptest::collection::vec(0x1eu8..0x24, 0..24)
        ) {
            proptest::prop_assert_eq!(super::plain(&s), s.iter().all(|&c| super::plain_byte(c)));
        }
    }

    #[test]
    fn the_hand_written_line_is_the_serializers() {
        let mut trail = Trail::default();
        trail.record("route", "match", None, vec![("route", "plain".into())]);
        trail.record(
            "forward",
            "response",
            Some("upstream_error"),
            vec![
                ("status", "502".into()),
                ("note", "a \"quoted\"\n\\ é \u{7f}".into()),
                ("status", "503".into()),
            ],
        );
        trail.pass("respond");
        let mut ev = Event::new(kinds::REQUEST_REJECTED, Severity::Error).request("r-1");
        ev.trace_id = Some([
            0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e,
            0x47, 0x36,
        ]);
        ev.route = Some("ro\"ute".into());
        ev.code = Some("upstream_error".into());
        let facts = RequestFacts {
            method: Some(http::Method::GET),
            path: "/a b/\u{1}é".into(),
            client: "2001:db8::1".parse().unwrap(),
            status: 502,
            source: "upstream",
            ended_by: "upstream",
            duration_us: 18_446_744_073_709_551_615,
            upstream_us: Some(0),
            config_generation: 7,
            docs: Some("http://x/errors/upstream_error".into()),
            trail,
        };
        ev.facts = Facts::Request(&facts);
        let (hand, serde) = both(&ev);
        assert_eq!(hand, serde);

        // Optional members left out the same way.
        let mut ev = Event::new(kinds::REQUEST_COMPLETED, Severity::Info);
        let facts = RequestFacts {
            method: Some(http::Method::POST),
            path: "/".into(),
            client: "10.0.255.7".parse().unwrap(),
            status: 200,
            source: "",
            ended_by: "",
            duration_us: 0,
            upstream_us: None,
            config_generation: 1,
            docs: None,
            trail: Trail::default(),
        };
        ev.facts = Facts::Request(&facts);
        let (hand, serde) = both(&ev);
        assert_eq!(hand, serde);

        let ev = Event::new(kinds::CONFIG_APPLIED, Severity::Notice)
            .fact("generation", 2)
            .fact("file", "c:\\x\t\"y\"")
            .code("x\"y");
        let (hand, serde) = both(&ev);
        assert_eq!(hand, serde);
    }
}
