//! The error documents the agent writes itself (timeouts, runtime exits), in Lambda's wording
//! (the exit wording is `skyscale_protocol::exit_message`), and the clock helpers they need.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// `{"errorType": .., "errorMessage": ..}` in that order.
#[derive(Serialize)]
struct ErrorDoc<'a> {
    #[serde(rename = "errorType")]
    error_type: &'a str,
    #[serde(rename = "errorMessage")]
    error_message: &'a str,
}

/// Serializes an error document.
pub fn error_doc(error_type: &str, message: &str) -> Vec<u8> {
    let doc = ErrorDoc {
        error_type,
        error_message: message,
    };
    // Serializing two strings cannot fail; fall back to an empty object rather than panic.
    serde_json::to_vec(&doc).unwrap_or_else(|_| b"{}".to_vec())
}

/// The `errorType` field of a posted error document, if it is JSON and has one.
pub fn error_type_of(body: &[u8]) -> Option<String> {
    let doc: serde_json::Value = serde_json::from_slice(body).ok()?;
    Some(doc.get("errorType")?.as_str()?.to_string())
}

/// `2020-11-10T05:46:57.874Z <id> Task timed out after 3.07 seconds`.
pub fn timeout_message(now_ms: u64, request_id: &str, allowed_ms: u64) -> String {
    format!(
        "{} {request_id} Task timed out after {} seconds",
        iso8601(now_ms),
        seconds(allowed_ms)
    )
}

/// Milliseconds as seconds with two decimals, e.g. `3.07`.
pub fn seconds(ms: u64) -> String {
    let hundredths = (ms + 5) / 10;
    format!("{}.{:02}", hundredths / 100, hundredths % 100)
}

/// Wall-clock time as Unix epoch milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Epoch milliseconds as ISO 8601 UTC with milliseconds: `2020-11-10T05:46:57.874Z`.
pub fn iso8601(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, sod) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60,
        ms % 1000
    )
}

/// Days since 1970-01-01 to (year, month, day), after Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_matches_known_dates() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(1_605_001_617_874), "2020-11-10T09:46:57.874Z");
        assert_eq!(iso8601(951_825_600_000), "2000-02-29T12:00:00.000Z");
        assert_eq!(iso8601(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
    }

    #[test]
    fn seconds_have_two_decimals() {
        assert_eq!(seconds(3070), "3.07");
        assert_eq!(seconds(1000), "1.00");
        assert_eq!(seconds(994), "0.99");
        assert_eq!(seconds(996), "1.00");
        assert_eq!(seconds(0), "0.00");
    }

    #[test]
    fn documents() {
        assert_eq!(
            error_doc("Sandbox.Timedout", "x \"y\""),
            br#"{"errorType":"Sandbox.Timedout","errorMessage":"x \"y\""}"#
        );
        assert_eq!(
            timeout_message(0, "r1", 3070),
            "1970-01-01T00:00:00.000Z r1 Task timed out after 3.07 seconds"
        );
        assert_eq!(
            error_type_of(br#"{"errorType":"ValueError"}"#).as_deref(),
            Some("ValueError")
        );
        assert_eq!(error_type_of(b"not json"), None);
        assert_eq!(error_type_of(br#"{"errorType":1}"#), None);
    }
}
