//! One grammar for every duration a person types: the configuration file (`timeout = "10s"`),
//! the command line (`candor clients add --lifetime 5m`, `candor keys add --expires-in 30d`),
//! the admin API (`"token_lifetime": "1h"`, `"expires_in": 3600`) and the token endpoint's
//! `validity` parameter.
//!
//! A duration is a whole number and a unit — `ms`, `s`, `m` (minutes), `h` or `d` — such as
//! `250ms`, `90s`, `5m`, `2h` or `30d`, with optional spaces between them. A bare number is
//! in the unit of the place it is typed in: seconds everywhere except the token endpoint's
//! `validity`, where it is minutes (as it always was). Durations are never negative and
//! at most 100 years; each place has its own range on top ([`Spec`]).

use std::fmt;
use std::time::Duration;

/// The grammar in words, for messages and `--help`.
pub const GRAMMAR: &str =
    "a whole number and a unit — ms, s, m (minutes), h or d — such as 90s, 5m, 2h or 30d";

/// The longest duration the grammar accepts: 36500 days (100 years).
pub const MAX: Duration = Duration::from_secs(36_500 * 86_400);

/// The unit of a bare number (one without a unit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// `5` means 5 seconds (the configuration, the command line, the admin API).
    Seconds,
    /// `5` means 5 minutes (the token endpoint's `validity`).
    Minutes,
}

impl Unit {
    fn millis(self) -> u64 {
        match self {
            Unit::Seconds => 1000,
            Unit::Minutes => 60_000,
        }
    }

    /// "seconds", "minutes".
    pub fn words(self) -> &'static str {
        match self {
            Unit::Seconds => "seconds",
            Unit::Minutes => "minutes",
        }
    }
}

/// Why a text is not a duration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DurationError {
    /// Nothing, or only spaces.
    Empty,
    /// A leading minus sign.
    Negative,
    /// A decimal point or comma in the number.
    Fraction,
    /// The text does not start with a digit (0-9).
    NotANumber,
    /// The number is followed by something that is not a unit.
    UnknownUnit(String),
    /// More than [`MAX`].
    TooLarge,
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DurationError::Empty => f.write_str("it is empty"),
            DurationError::Negative => f.write_str("durations cannot be negative"),
            DurationError::Fraction => {
                f.write_str("the number must be whole (write 90s, not 1.5m)")
            }
            DurationError::NotANumber => f.write_str("it does not start with a number (0-9)"),
            DurationError::UnknownUnit(u) => {
                write!(f, "`{}` is not a unit (ms, s, m, h, d)", shown(u))
            }
            DurationError::TooLarge => write!(f, "it is more than {} (100 years)", text(MAX)),
        }
    }
}

impl std::error::Error for DurationError {}

/// Parses `text` in the grammar; a bare number is in `bare` units.
pub fn parse(text: &str, bare: Unit) -> Result<Duration, DurationError> {
    let s = text.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    if s.starts_with('-') || s.starts_with('\u{2212}') {
        return Err(DurationError::Negative);
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, rest) = s.split_at(end);
    if digits.is_empty() {
        return Err(DurationError::NotANumber);
    }
    if rest.starts_with(['.', ',']) {
        return Err(DurationError::Fraction);
    }
    let n: u64 = digits.parse().map_err(|_| DurationError::TooLarge)?;
    let factor: u64 = match rest.trim_start_matches([' ', '\t']) {
        "" => bare.millis(),
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        other => return Err(DurationError::UnknownUnit(other.to_owned())),
    };
    let ms = n.checked_mul(factor).ok_or(DurationError::TooLarge)?;
    let d = Duration::from_millis(ms);
    if d > MAX {
        return Err(DurationError::TooLarge);
    }
    Ok(d)
}

/// `d` in the grammar, in its largest exact unit: `1d`, `5m`, `90s`, `250ms`.
pub fn text(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    for (size, unit) in [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1000, "s"),
    ] {
        if ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// Up to 40 characters of what was typed, control characters shown as `?`.
fn shown(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(40)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if s.chars().count() > 40 {
        out.push('…');
    }
    out
}

/// One place a person types a duration: its name, the unit of a bare number, and the
/// range it accepts (whole seconds only).
#[derive(Clone, Debug)]
pub struct Spec {
    /// The field, flag or parameter (`token_lifetime`, `--expires-in`, `validity`).
    pub field: &'static str,
    /// The unit of a bare number.
    pub bare: Unit,
    /// The shortest accepted.
    pub min: Duration,
    /// The longest accepted.
    pub max: Duration,
}

impl Spec {
    /// The grammar, the unit of a bare number and the range, in one sentence (for errors
    /// and `--help`).
    pub fn expected(&self) -> String {
        format!(
            "{GRAMMAR}; a bare number is {}; from {} to {}",
            self.bare.words(),
            text(self.min),
            text(self.max)
        )
    }

    /// Parses what was typed and checks the range. The error names the field, what was
    /// given, the grammar and the range.
    pub fn parse(&self, typed: &str) -> Result<Duration, String> {
        match parse(typed, self.bare) {
            Ok(d) => self.check(d, typed),
            Err(e) => Err(format!(
                "`{}` is not a duration: {e}. Expected {}",
                shown(typed),
                self.expected()
            )),
        }
    }

    /// Checks a duration read some other way (a JSON integer) against the range; `typed` is
    /// what was sent.
    pub fn check(&self, d: Duration, typed: &str) -> Result<Duration, String> {
        let why = if d.subsec_nanos() != 0 {
            "is not a whole number of seconds"
        } else if d < self.min {
            "is too short"
        } else if d > self.max {
            "is too long"
        } else {
            return Ok(d);
        };
        Err(format!(
            "`{}` ({}) {why}. Expected {}",
            shown(typed),
            text(d),
            self.expected()
        ))
    }

    /// Reads a JSON value: a string in the grammar, or an integer in the bare unit.
    pub fn from_json(&self, v: &serde_json::Value) -> Result<Duration, String> {
        match v {
            serde_json::Value::String(s) => self.parse(s),
            serde_json::Value::Number(n) => match (n.as_u64(), n.as_i64()) {
                (Some(u), _) => match u
                    .checked_mul(self.bare.millis())
                    .map(Duration::from_millis)
                    .filter(|d| *d <= MAX)
                {
                    Some(d) => self.check(d, &n.to_string()),
                    None => Err(format!(
                        "`{n}` is not a duration: {}. Expected {}",
                        DurationError::TooLarge,
                        self.expected()
                    )),
                },
                (None, Some(_)) => Err(format!(
                    "`{n}` is not a duration: {}. Expected {}",
                    DurationError::Negative,
                    self.expected()
                )),
                _ => Err(format!(
                    "`{n}` is not a duration: {}. Expected {}",
                    DurationError::Fraction,
                    self.expected()
                )),
            },
            other => Err(format!(
                "must be a string such as \"5m\" or an integer number of {}; it is {other}. Expected {}",
                self.bare.words(),
                self.expected()
            )),
        }
    }
}

/// A client's token lifetime (`token_lifetime` in the admin API, `--lifetime` of
/// `candor clients add`): from 30 s to 1 day.
pub const TOKEN_LIFETIME: Spec = Spec {
    field: "token_lifetime",
    bare: Unit::Seconds,
    min: Duration::from_secs(30),
    max: Duration::from_secs(86_400),
};

/// An API key's expiry from now (`expires_in` in the admin API, `--expires-in` of
/// `candor keys add`): from 1 s to 3650 days.
pub const EXPIRES_IN: Spec = Spec {
    field: "expires_in",
    bare: Unit::Seconds,
    min: Duration::from_secs(1),
    max: Duration::from_secs(3650 * 86_400),
};

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: &str) -> Result<Duration, DurationError> {
        parse(s, Unit::Seconds)
    }

    #[test]
    fn the_grammar() {
        assert_eq!(secs("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(secs("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(secs("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(secs("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(secs("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(secs(" 5 m "), Ok(Duration::from_secs(300)));
        assert_eq!(secs("+5s"), Ok(Duration::from_secs(5)));
        assert_eq!(secs("0"), Ok(Duration::ZERO));
        assert_eq!(secs("0s"), Ok(Duration::ZERO));
        // A bare number is in the place's unit.
        assert_eq!(secs("300"), Ok(Duration::from_secs(300)));
        assert_eq!(
            parse("5", Unit::Minutes),
            Ok(Duration::from_secs(300)),
            "validity: minutes"
        );
        assert_eq!(parse("90s", Unit::Minutes), Ok(Duration::from_secs(90)));
    }

    #[test]
    fn what_is_not_a_duration() {
        assert_eq!(secs(""), Err(DurationError::Empty));
        assert_eq!(secs("   "), Err(DurationError::Empty));
        assert_eq!(secs("-5s"), Err(DurationError::Negative));
        assert_eq!(secs("−5s"), Err(DurationError::Negative));
        assert_eq!(secs("1.5m"), Err(DurationError::Fraction));
        assert_eq!(secs("1,5m"), Err(DurationError::Fraction));
        assert_eq!(secs("soon"), Err(DurationError::NotANumber));
        assert_eq!(secs("s"), Err(DurationError::NotANumber));
        assert_eq!(
            secs("5 parsecs"),
            Err(DurationError::UnknownUnit("parsecs".into()))
        );
        assert_eq!(secs("5M"), Err(DurationError::UnknownUnit("M".into())));
        assert_eq!(
            secs("1h30m"),
            Err(DurationError::UnknownUnit("h30m".into()))
        );
        // Unicode digits and units are not ASCII digits and units.
        assert_eq!(secs("５s"), Err(DurationError::NotANumber));
        assert_eq!(secs("5ｓ"), Err(DurationError::UnknownUnit("ｓ".into())));
        assert_eq!(secs("5µs"), Err(DurationError::UnknownUnit("µs".into())));
        assert_eq!(
            secs("5\u{0}s"),
            Err(DurationError::UnknownUnit("\u{0}s".into()))
        );
    }

    #[test]
    fn overflow_is_too_large() {
        assert_eq!(
            secs("99999999999999999999999"),
            Err(DurationError::TooLarge)
        );
        assert_eq!(secs("18446744073709551615d"), Err(DurationError::TooLarge));
        assert_eq!(secs("36501d"), Err(DurationError::TooLarge));
        assert_eq!(secs("36500d"), Ok(MAX));
    }

    #[test]
    fn texts() {
        assert_eq!(text(Duration::from_secs(86_400)), "1d");
        assert_eq!(text(Duration::from_secs(300)), "5m");
        assert_eq!(text(Duration::from_secs(90)), "90s");
        assert_eq!(text(Duration::from_millis(1500)), "1500ms");
        assert_eq!(text(Duration::ZERO), "0s");
    }

    #[test]
    fn a_spec_names_the_value_the_grammar_and_the_range() {
        let spec = Spec {
            field: "token_lifetime",
            bare: Unit::Seconds,
            min: Duration::from_secs(30),
            max: Duration::from_secs(86_400),
        };
        assert_eq!(spec.parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(
            spec.parse("5x").unwrap_err(),
            "`5x` is not a duration: `x` is not a unit (ms, s, m, h, d). Expected a whole number and a unit — ms, s, m (minutes), h or d — such as 90s, 5m, 2h or 30d; a bare number is seconds; from 30s to 1d"
        );
        assert!(
            spec.parse("0")
                .unwrap_err()
                .starts_with("`0` (0s) is too short.")
        );
        assert!(
            spec.parse("2d")
                .unwrap_err()
                .starts_with("`2d` (2d) is too long.")
        );
        assert!(
            spec.parse("1500ms")
                .unwrap_err()
                .contains("is not a whole number of seconds")
        );
        assert_eq!(
            spec.from_json(&serde_json::json!(3600)),
            Ok(Duration::from_secs(3600))
        );
        assert_eq!(
            spec.from_json(&serde_json::json!("1h")),
            Ok(Duration::from_secs(3600))
        );
        assert!(
            spec.from_json(&serde_json::json!(-5))
                .unwrap_err()
                .contains("cannot be negative")
        );
        assert!(
            spec.from_json(&serde_json::json!(1.5))
                .unwrap_err()
                .contains("must be whole")
        );
        assert!(
            spec.from_json(&serde_json::json!(u64::MAX))
                .unwrap_err()
                .contains("more than 36500d")
        );
        assert!(
            spec.from_json(&serde_json::json!(true))
                .unwrap_err()
                .starts_with(
                    "must be a string such as \"5m\" or an integer number of seconds; it is true"
                )
        );
        // Long or strange input is cut and made printable.
        let long = "9".repeat(100) + "\u{7}";
        assert!(spec.parse(&long).unwrap_err().contains("…"));
    }
}
