//! The one duration grammar of every NovaCron config: Go-style `30s`, `10m`, `1h30m`, `500ms`, `1.5h`.
//!
//! The provider's `timeouts` block and the reconciler's serve config (`interval`,
//! `session_ttl`) read durations through [`parse`]; each caller adds its own rules (the serve
//! config refuses zero) and words its own errors from [`DurationError`].

use std::time::Duration;

/// Nanoseconds in one of each unit, longest first.
const UNITS: [(&str, u128); 4] = [("h", 3_600_000_000_000), ("m", 60_000_000_000), ("s", 1_000_000_000), ("ms", 1_000_000)];

/// Why a text is not a duration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DurationError {
    /// Nothing was written (or only blanks).
    Empty,
    /// A number is missing or malformed where one must start (`soon`, `h`, `1..5s`).
    Number {
        /// The text from where a number was expected.
        rest: String,
    },
    /// A number has no unit, or one that is not `ms`, `s`, `m` or `h` (`10`, `5 minutes`).
    Unit {
        /// The unit as written (empty when there is none).
        unit: String,
    },
    /// The total does not fit in a [`Duration`].
    TooLong,
}

impl std::fmt::Display for DurationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DurationError::Empty => f.write_str("no duration given"),
            DurationError::Number { rest } => write!(f, "expected a number at {rest:?}"),
            DurationError::Unit { unit } if unit.is_empty() => f.write_str("a number has no unit (ms, s, m or h)"),
            DurationError::Unit { unit } => write!(f, "unit {unit:?} is not ms, s, m or h"),
            DurationError::TooLong => f.write_str("the duration is too long"),
        }
    }
}

impl std::error::Error for DurationError {}

/// Parses a sequence of `<number><unit>` segments, e.g. `30s`, `10m`, `1h30m`, `500ms` or
/// `1.5h` (units `ms`, `s`, `m`, `h`; the number may have a fraction). Blanks around the whole
/// text are ignored; zero (`0s`) is a duration. Exact: no floating point.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(DurationError::Empty);
    }
    let mut total_nanos: u128 = 0;
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(rest.len());
        let (whole, fraction) = split_number(&rest[..number_len]).ok_or_else(|| DurationError::Number { rest: rest.to_string() })?;
        rest = &rest[number_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let per_unit = UNITS.iter().find(|(name, _)| *name == unit).map(|(_, nanos)| *nanos).ok_or_else(|| DurationError::Unit { unit: unit.to_string() })?;
        let nanos = segment_nanos(whole, fraction, per_unit).ok_or(DurationError::TooLong)?;
        total_nanos = total_nanos.checked_add(nanos).ok_or(DurationError::TooLong)?;
    }
    let secs = u64::try_from(total_nanos / 1_000_000_000).map_err(|_| DurationError::TooLong)?;
    let subsec = u32::try_from(total_nanos % 1_000_000_000).expect("a remainder of 1e9 fits in u32");
    Ok(Duration::new(secs, subsec))
}

/// `"12.5"` as (`"12"`, `"5"`); `"12"`, `"12."` and `".5"` are numbers too, `""` and `"."` and
/// `"1.2.3"` are not.
fn split_number(number: &str) -> Option<(&str, &str)> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
        return None;
    }
    Some((whole, fraction))
}

/// `whole.fraction` units in nanoseconds (digits of the fraction finer than a nanosecond are
/// dropped); `None` when it overflows.
fn segment_nanos(whole: &str, fraction: &str, per_unit: u128) -> Option<u128> {
    let whole: u128 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
    let mut nanos = whole.checked_mul(per_unit)?;
    // Every unit is a whole number of nanoseconds at most 3.6e12, so 13 fraction digits are
    // finer than a nanosecond of any of them.
    let fraction = &fraction[..fraction.len().min(13)];
    if !fraction.is_empty() {
        let digits: u128 = fraction.parse().ok()?;
        nanos = nanos.checked_add(digits * per_unit / 10u128.pow(fraction.len() as u32))?;
    }
    Some(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_unit() {
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
        assert_eq!(parse(" 5m\n"), Ok(Duration::from_secs(300)));
    }

    #[test]
    fn several_units_and_fractions() {
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("1m30s250ms"), Ok(Duration::from_millis(90_250)));
        assert_eq!(parse("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("0.1s"), Ok(Duration::from_millis(100)));
        assert_eq!(parse(".5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("2.s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse("1.0000000000000000001h"), Ok(Duration::from_secs(3600)));
    }

    #[test]
    fn what_is_not_a_duration_says_why() {
        assert_eq!(parse(""), Err(DurationError::Empty));
        assert_eq!(parse("  "), Err(DurationError::Empty));
        assert_eq!(parse("10"), Err(DurationError::Unit { unit: String::new() }));
        assert_eq!(parse("5 minutes"), Err(DurationError::Unit { unit: " minutes".into() }));
        assert_eq!(parse("1h 30m"), Err(DurationError::Unit { unit: "h ".into() }));
        assert_eq!(parse("3d"), Err(DurationError::Unit { unit: "d".into() }));
        assert_eq!(parse("1h.5m"), Err(DurationError::Unit { unit: "h.".into() }));
        assert_eq!(parse("soon"), Err(DurationError::Number { rest: "soon".into() }));
        assert_eq!(parse("-5s"), Err(DurationError::Number { rest: "-5s".into() }));
        assert_eq!(parse(".s"), Err(DurationError::Number { rest: ".s".into() }));
        assert_eq!(parse("1.2.3s"), Err(DurationError::Number { rest: "1.2.3s".into() }));
    }

    #[test]
    fn too_long_is_an_error_not_a_panic() {
        assert_eq!(parse("99999999999999999999999h"), Err(DurationError::TooLong));
        assert_eq!(parse("5124095576030431h"), Ok(Duration::from_secs(5_124_095_576_030_431 * 3600)));
        assert_eq!(parse("5124095576030432h"), Err(DurationError::TooLong));
        assert_eq!(parse(&format!("{}s", "9".repeat(60))), Err(DurationError::TooLong));
    }
}
