//! Times as relaycb shows them: always UTC, RFC 3339, with the number they
//! came as when that helps.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// An instant in ms since the epoch as `2025-12-03T22:30:00Z` (milliseconds
/// shown only when there are some).
pub(crate) fn utc_ms(ms: i64) -> String {
    let Some(time) = system_time(ms) else {
        return format!("{ms} ms (out of range)");
    };
    if ms % 1000 == 0 {
        humantime::format_rfc3339_seconds(time).to_string()
    } else {
        humantime::format_rfc3339_millis(time).to_string()
    }
}

/// An instant in Unix seconds as `2025-12-03T22:30:00Z`.
pub(crate) fn utc_seconds(seconds: i64) -> String {
    utc_ms(seconds.saturating_mul(1000))
}

fn system_time(ms: i64) -> Option<SystemTime> {
    let ms = u64::try_from(ms).ok()?;
    // humantime formats years up to 9999 only.
    (ms < 253_402_300_800_000).then(|| UNIX_EPOCH + Duration::from_millis(ms))
}

/// Now, in Unix seconds.
pub(crate) fn now_seconds() -> i64 {
    now_ms() / 1000
}

/// Now, in ms since the epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A span of seconds in words: `5m`, `1h 2m 3s`.
pub(crate) fn span(seconds: u64) -> String {
    relaycb_core::span_text(seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_are_shown_in_utc() {
        assert_eq!(utc_seconds(1_764_801_040), "2025-12-03T22:30:40Z");
        assert_eq!(utc_ms(1_764_801_040_250), "2025-12-03T22:30:40.250Z");
        assert_eq!(utc_ms(-1), "-1 ms (out of range)");
    }
}
