//! Time as Skyscale stores and shows it: milliseconds since the Unix epoch, and RFC 3339 in
//! UTC to the millisecond. Every crate converts through these, so a time reads the same in
//! a record, a metric, a log line and an API answer.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch; 0 for an earlier time (none occurs: every time
/// Skyscale keeps is taken from the clock).
pub fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The inverse of [`epoch_ms`].
pub fn from_epoch_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// `t` as RFC 3339 in UTC, to the millisecond: `2026-12-06T22:33:58.123Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::from(t)
        .format(&fmt)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000Z".to_owned())
}

/// Now, as [`rfc3339`].
pub fn now_rfc3339() -> String {
    rfc3339(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_round_trip_and_format() {
        let t = from_epoch_ms(1_583_348_638_390);
        assert_eq!(epoch_ms(t), 1_583_348_638_390);
        assert_eq!(rfc3339(t), "2020-03-04T19:03:58.390Z");
        assert_eq!(epoch_ms(UNIX_EPOCH - Duration::from_secs(1)), 0);
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    }
}
