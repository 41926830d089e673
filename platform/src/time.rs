//! Wall-clock timestamps in RFC 3339 (UTC, millisecond precision) without a date library.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub fn now_millis() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)).unwrap_or(0)
}

/// The current time as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn now_rfc3339() -> String {
    rfc3339(now_millis())
}

/// Formats milliseconds since the epoch as RFC 3339 UTC.
pub fn rfc3339(millis: i64) -> String {
    novacron_schemas::wire::rfc3339_millis(millis)
}
