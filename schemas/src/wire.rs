//! Wire types of the platform API that both the server and its clients speak, and the
//! RFC 3339 formatting of timestamps (pure: callers read the clock).

use serde::{Deserialize, Serialize};

/// One record of the change feed (`GET /v1/events`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Event {
    /// Position in the feed; strictly increasing, never reused, kept across restarts.
    pub seq: u64,
    /// When it happened (RFC 3339, UTC).
    pub time: String,
    /// The name of the API key that caused it, `platform` for changes the platform makes
    /// itself, or `policy:<name>` for audit records.
    pub actor: String,
    /// `create`, `update`, `delete`, `provisioned`, `deleted`, `audit`, (kind `tfstate`)
    /// `force-unlock`, or (kind `auth`, `id` and `name` the key's name) `denied`: a call refused
    /// because the key lacks a scope, the method, path and missing scope in `detail`.
    pub action: String,
    /// The kind's collection, e.g. `vms`; `tfstate` for Terraform state events, whose `id` and
    /// `name` are the workspace. Consumers skip kinds they do not know.
    pub kind: String,
    /// The object's id.
    pub id: String,
    /// The object's name.
    pub name: String,
    /// Extra text: the violations of an `audit` record, what a `denied` call asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Formats milliseconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn rfc3339_millis(millis: i64) -> String {
    let secs = millis.div_euclid(1000);
    let (date, time) = civil(secs);
    format!("{date}T{time}.{:03}Z", millis.rem_euclid(1000))
}

/// Formats seconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339_secs(secs: i64) -> String {
    let (date, time) = civil(secs);
    format!("{date}T{time}Z")
}

/// (`YYYY-MM-DD`, `HH:MM:SS`) of a Unix time, in the proleptic Gregorian calendar
/// (Howard Hinnant's days-to-civil algorithm).
fn civil(secs: i64) -> (String, String) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (format!("{year:04}-{month:02}-{day:02}"), format!("{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_millis(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339_millis(1_795_000_000_000), "2026-11-18T11:06:40.000Z");
        assert_eq!(rfc3339_secs(1_795_000_000), "2026-11-18T11:06:40Z");
        assert_eq!(rfc3339_secs(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn events_round_trip_without_detail() {
        let json = r#"{"seq":3,"time":"t","actor":"a","action":"create","kind":"vms","id":"vm-1","name":"web"}"#;
        let e: Event = serde_json::from_str(json).expect("parses");
        assert_eq!(e.detail, None);
        assert_eq!(serde_json::to_string(&e).expect("serialises"), json);
    }
}
