//! Wall-clock helpers: Unix seconds and RFC 3339 text, without a date crate.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The civil date (year, month 1-12, day) of `days` since 1970-01-01 (Howard Hinnant's
/// algorithm).
fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Days since 1970-01-01 of the civil date (year, month 1-12, day).
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The calendar month (UTC) of Unix seconds `t`, as months since January 1970.
pub(crate) fn month_of(t: i64) -> i64 {
    let (y, m, _) = civil(t.div_euclid(86_400));
    (y - 1970) * 12 + (m - 1)
}

/// Unix seconds at the start of month `index` (months since January 1970).
pub(crate) fn month_start(index: i64) -> i64 {
    let (y, m) = (1970 + index.div_euclid(12), index.rem_euclid(12) + 1);
    days_from_civil(y, m, 1) * 86_400
}

/// `2026-11-22T10:00:05Z` for Unix seconds `t`.
pub fn rfc3339(t: i64) -> String {
    let mut out = Vec::with_capacity(20);
    write_rfc3339(&mut out, t.saturating_mul(1000), false);
    String::from_utf8(out).unwrap_or_default()
}

/// `2026-11-22T10:00:05.123Z` for `t` (milliseconds since the Unix epoch).
pub fn rfc3339_millis(t: i64) -> String {
    let mut out = Vec::with_capacity(24);
    write_rfc3339(&mut out, t, true);
    String::from_utf8(out).unwrap_or_default()
}

/// Appends the RFC 3339 text of `ms` (milliseconds since the Unix epoch) to `out`, with the
/// milliseconds when `millis`: digits written directly (the event log writes one per
/// event). Years outside 0..=9999 are clamped to them.
pub(crate) fn write_rfc3339(out: &mut Vec<u8>, ms: i64, millis: bool) {
    fn digits(out: &mut Vec<u8>, v: i64, width: usize) {
        let mut buf = [b'0'; 4];
        let mut v = v;
        for slot in buf[..width].iter_mut().rev() {
            *slot = b'0' + (v % 10) as u8;
            v /= 10;
        }
        out.extend_from_slice(&buf[..width]);
    }
    let secs = ms.div_euclid(1000);
    let (y, m, d) = civil(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    digits(out, y.clamp(0, 9999), 4);
    out.push(b'-');
    digits(out, m, 2);
    out.push(b'-');
    digits(out, d, 2);
    out.push(b'T');
    digits(out, s / 3600, 2);
    out.push(b':');
    digits(out, s % 3600 / 60, 2);
    out.push(b':');
    digits(out, s % 60, 2);
    if millis {
        out.push(b'.');
        digits(out, ms.rem_euclid(1000), 3);
    }
    out.push(b'Z');
}

/// The RFC 3339 text of one second (`2026-12-07T18:12:30`), kept so that the many times
/// written within a second (the event log's lines) write only their milliseconds.
#[derive(Debug, Default)]
pub(crate) struct SecondText {
    secs: Option<i64>,
    text: [u8; 19],
}

impl SecondText {
    /// Appends `ms` (ms since the Unix epoch) as [`write_rfc3339`] does with milliseconds.
    pub(crate) fn write_millis(&mut self, out: &mut Vec<u8>, ms: i64) {
        let secs = ms.div_euclid(1000);
        if self.secs != Some(secs) {
            let mut whole = Vec::with_capacity(20);
            write_rfc3339(&mut whole, ms, false);
            // Years are clamped to four digits: always `YYYY-MM-DDThh:mm:ss` and `Z`.
            self.text.copy_from_slice(&whole[..19]);
            self.secs = Some(secs);
        }
        out.extend_from_slice(&self.text);
        let m = ms.rem_euclid(1000) as u16;
        out.extend_from_slice(&[
            b'.',
            b'0' + (m / 100) as u8,
            b'0' + (m / 10 % 10) as u8,
            b'0' + (m % 10) as u8,
            b'Z',
        ]);
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn unix_millis(t: std::time::SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Whole seconds of `d`, rounded up (a wait told to a client is never short).
pub(crate) fn ceil_secs(d: std::time::Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// "60 s", "250 ms".
pub(crate) fn human_duration(d: std::time::Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// "37 s", "5 min 3 s", "2 h 1 min", "3 d 4 h".
pub(crate) fn human_seconds(s: i64) -> String {
    let s = s.abs();
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 if s % 60 == 0 => format!("{} min", s / 60),
        60..=3599 => format!("{} min {} s", s / 60, s % 60),
        3600..=86_399 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_second_writes_what_write_rfc3339_writes() {
        let mut kept = SecondText::default();
        for ms in [
            0,
            999,
            1_000,
            1_795_860_005_042,
            1_795_860_005_999,
            1_795_860_006_000,
            1_795_860_005_001,
            -1,
            253_402_300_799_999,
            400_000_000_000_000,
            i64::MIN,
            i64::MAX,
        ] {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            kept.write_millis(&mut a, ms);
            write_rfc3339(&mut b, ms, true);
            assert_eq!(
                String::from_utf8(a).unwrap(),
                String::from_utf8(b).unwrap(),
                "{ms}"
            );
        }
    }

    #[test]
    fn formats() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_860_005), "2026-11-28T10:00:05Z");
        assert_eq!(
            rfc3339_millis(1_795_860_005_007),
            "2026-11-28T10:00:05.007Z"
        );
        assert_eq!(rfc3339_millis(951_782_400_999), "2000-02-29T00:00:00.999Z");
        assert_eq!(rfc3339_millis(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(253_402_300_799), "9999-12-31T23:59:59Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(
            rfc3339_millis(1_795_860_005_042),
            "2026-11-28T10:00:05.042Z"
        );
        assert_eq!(human_seconds(37), "37 s");
        assert_eq!(human_seconds(300), "5 min");
        assert_eq!(human_seconds(303), "5 min 3 s");
        // 2026-12-04 is in month 683 since January 1970; it ends on 2027-01-01.
        let t = 1_796_400_000;
        assert_eq!(rfc3339(t), "2026-12-04T16:00:00Z");
        assert_eq!(month_of(t), 683);
        assert_eq!(rfc3339(month_start(684)), "2027-01-01T00:00:00Z");
        assert_eq!(rfc3339(month_start(0)), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(month_start(361)), "2000-02-01T00:00:00Z");
        assert_eq!(month_of(month_start(361) - 1), 360);
    }
}
