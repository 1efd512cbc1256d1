//! Times as people write them in a command line or a query string: an
//! RFC 3339 time, Unix seconds or milliseconds, or a span before now; and
//! spans written back as people read them.

use std::time::UNIX_EPOCH;

/// Unix seconds stay below this until the year 5138; a larger number is
/// taken as milliseconds.
const SECONDS_BELOW: i64 = 100_000_000_000;

/// A time that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "cannot read {0:?} as a time: expected RFC 3339 (2025-12-03T22:00:00Z), Unix seconds or ms, or a span before now (2h)"
)]
pub struct WhenError(String);

/// `text` in milliseconds since the epoch, reading a span (`2h`, `7days`)
/// as that long before `now_ms`.
///
/// ```
/// use relaycb_core::parse_when;
/// let now = 1_764_802_000_000;
/// assert_eq!(parse_when("1764801000", now), Ok(1_764_801_000_000));
/// assert_eq!(parse_when("2h", now), Ok(now - 7_200_000));
/// assert!(parse_when("yesterday", now).is_err());
/// ```
pub fn parse_when(text: &str, now_ms: i64) -> Result<i64, WhenError> {
    let text = text.trim();
    if let Ok(number) = text.parse::<i64>() {
        return Ok(if number.abs() < SECONDS_BELOW {
            number * 1000
        } else {
            number
        });
    }
    let fail = || WhenError(text.to_owned());
    if let Ok(instant) = humantime::parse_rfc3339_weak(text) {
        return instant
            .duration_since(UNIX_EPOCH)
            .ok()
            .and_then(|since| i64::try_from(since.as_millis()).ok())
            .ok_or_else(fail);
    }
    if let Ok(span) = humantime::parse_duration(text) {
        return i64::try_from(span.as_millis())
            .ok()
            .and_then(|span| now_ms.checked_sub(span))
            .ok_or_else(fail);
    }
    Err(fail())
}

/// A span of whole seconds as people read it (`6m 40s`, `2h 5m 3s`,
/// `400days 4h 12s`), for messages that would otherwise give a raw count of
/// seconds that may run to eight digits. Days are the largest unit: months
/// and years have no fixed length, and a span in years of 365.25 days reads
/// a day off from the calendar. What it writes, `parse_when` reads.
///
/// ```
/// use relaycb_core::span_text;
/// assert_eq!(span_text(400), "6m 40s");
/// assert_eq!(span_text(86_400 + 3), "1day 3s");
/// assert_eq!(span_text(0), "0s");
/// ```
pub fn span_text(seconds: u64) -> String {
    if seconds == 0 {
        return "0s".to_owned();
    }
    let days = seconds / 86_400;
    let mut parts = Vec::with_capacity(4);
    match days {
        0 => {}
        1 => parts.push("1day".to_owned()),
        n => parts.push(format!("{n}days")),
    }
    for (value, unit) in [
        (seconds / 3600 % 24, "h"),
        (seconds / 60 % 60, "m"),
        (seconds % 60, "s"),
    ] {
        if value > 0 {
            parts.push(format!("{value}{unit}"));
        }
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::{parse_when, span_text};

    #[test]
    fn spans_are_written_in_days_at_most_and_read_back() {
        let now = 1_764_802_000_000;
        for seconds in [1, 59, 60, 3600, 3661, 86_399, 86_400, 90_061, 63_158_400] {
            let text = span_text(seconds);
            assert_eq!(
                parse_when(&text, now),
                Ok(now - seconds as i64 * 1000),
                "{text}"
            );
        }
        // Two years and a day and a half: no 365.25-day years.
        assert_eq!(span_text(2 * 365 * 86_400 + 129_600), "731days 12h");
    }

    #[test]
    fn times_are_read_in_every_documented_form() {
        let now = 1_764_802_000_000;
        assert_eq!(parse_when("1764801000", now), Ok(1_764_801_000_000));
        assert_eq!(parse_when("1764801000500", now), Ok(1_764_801_000_500));
        assert_eq!(
            parse_when("2025-12-03T22:30:00Z", now),
            Ok(1_764_801_000_000)
        );
        assert_eq!(
            parse_when("2025-12-03 22:30:00", now),
            Ok(1_764_801_000_000)
        );
        assert_eq!(parse_when("1h", now), Ok(now - 3_600_000));
        assert_eq!(parse_when("7days", now), Ok(now - 7 * 86_400_000));
        assert_eq!(parse_when(" 1h ", now), Ok(now - 3_600_000));
    }

    #[test]
    fn what_is_no_time_says_what_was_expected() {
        let error = parse_when("last tuesday", 0).unwrap_err();
        assert_eq!(
            error.to_string(),
            "cannot read \"last tuesday\" as a time: expected RFC 3339 (2025-12-03T22:00:00Z), Unix seconds or ms, or a span before now (2h)"
        );
        assert!(parse_when("1970-01-01T00:00:00Z", 0).is_ok());
        assert!(parse_when("99999999999999999999999h", 0).is_err());
    }
}
