//! Request ids: an incoming well-formed `X-Request-Id` is kept, anything else is replaced by
//! a new ULID (sortable by time, 26 characters of Crockford base32).

use crate::stages::respond::X_REQUEST_ID;
use http::{HeaderMap, HeaderValue};
use std::time::{SystemTime, UNIX_EPOCH};

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Whether an incoming id can be kept: 1 to 128 characters of letters, digits, `-_.:`.
pub(crate) fn is_well_formed(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// A new ULID.
pub(crate) fn new_ulid() -> String {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut out = [0u8; 26];
    write_ulid(&mut out, millis);
    String::from_utf8_lossy(&out).into_owned()
}

/// Writes a new ULID of time `millis` (since the Unix epoch) into `out`.
pub(crate) fn write_ulid(out: &mut [u8; 26], millis: u64) {
    let (time, random) = out.split_at_mut(10);
    // 48 bits of time in ten digits (the first holds three bits).
    let millis = millis & ((1 << 48) - 1);
    for (i, slot) in time.iter_mut().enumerate() {
        *slot = CROCKFORD[((millis >> (5 * (9 - i))) & 31) as usize];
    }
    // 80 random bits in sixteen digits: twelve from one draw (60 bits), four from another.
    let (a, b) = (fastrand::u64(..), fastrand::u64(..));
    for (i, slot) in random.iter_mut().enumerate() {
        let (bits, at) = if i < 12 { (a, i) } else { (b, i - 12) };
        *slot = CROCKFORD[((bits >> (5 * at)) & 31) as usize];
    }
}

/// The time (milliseconds since the Unix epoch) in ULID `id`, if it is one: 26 characters
/// of Crockford base32, the first ten of which are the time.
pub(crate) fn ulid_millis(id: &str) -> Option<u64> {
    let b = id.as_bytes();
    if b.len() != 26 {
        return None;
    }
    let mut value: u128 = 0;
    for &c in b {
        let c = c.to_ascii_uppercase();
        let digit = CROCKFORD.iter().position(|&d| d == c)?;
        value = (value << 5) | digit as u128;
    }
    // 130 bits of text for 128 of value: the first character is at most `7`.
    (b[0] <= b'7').then_some((value >> 80) as u64)
}

/// The id of one request, as text (for the envelope and the log) and as a header value,
/// each made once.
#[derive(Clone, Debug)]
pub(crate) struct RequestId {
    /// The id as text.
    pub(crate) text: String,
    /// The id as an `X-Request-Id` value.
    pub(crate) header: HeaderValue,
    /// When the gateway made the id (a ULID of the request's arrival): its time, in
    /// milliseconds since the Unix epoch. `None` for an id the client sent.
    pub(crate) made_at_ms: Option<u64>,
}

impl RequestId {
    /// The request's own `X-Request-Id` when well formed, else a new ULID.
    pub(crate) fn of(headers: &HeaderMap) -> RequestId {
        match headers.get(&X_REQUEST_ID) {
            Some(v) if is_well_formed(v.as_bytes()) => RequestId {
                text: String::from_utf8_lossy(v.as_bytes()).into_owned(),
                header: v.clone(),
                made_at_ms: None,
            },
            _ => RequestId::new(),
        }
    }

    /// A new id.
    pub(crate) fn new() -> RequestId {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut ulid = [0u8; 26];
        write_ulid(&mut ulid, millis);
        let text = String::from_utf8_lossy(&ulid).into_owned();
        // A ULID is Crockford base32: always a valid header value.
        let header = HeaderValue::from_str(&text)
            .unwrap_or_else(|_| HeaderValue::from_static("unavailable"));
        RequestId {
            text,
            header,
            made_at_ms: Some(millis),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulids_are_sortable_and_valid() {
        let a = new_ulid();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_ulid();
        assert_eq!(a.len(), 26);
        let id = RequestId::new();
        assert_eq!(ulid_millis(&id.text), id.made_at_ms);
        assert_eq!(ulid_millis(&id.text.to_lowercase()), id.made_at_ms);
        // The ULID specification's example time.
        assert_eq!(
            ulid_millis("01ARYZ6S41TSV4RRFFQ69G5FAV"),
            Some(1_469_918_176_385)
        );
        assert_eq!(ulid_millis("81ARZ3NDEKTSV4RRFFQ69G5FAV"), None);
        assert_eq!(ulid_millis("01ARZ3NDEKTSV4RRFFQ69G5FAU"), None);
        assert_eq!(ulid_millis("short"), None);
        assert!(a < b);
        assert!(is_well_formed(a.as_bytes()));
    }

    #[test]
    fn incoming_ids() {
        assert!(is_well_formed(b"abc-123_x.y:z"));
        assert!(!is_well_formed(b""));
        assert!(!is_well_formed(b"has space"));
        assert!(!is_well_formed(b"<script>"));
        assert!(!is_well_formed(&[b'a'; 129]));
    }
}
