//! The `since` of a query over recent activity: relative to now (`30s`, `10m`, `2h`, `1d`)
//! or an absolute RFC 3339 time.

use std::time::{Duration, SystemTime};

use crate::CoreError;

/// The furthest back a relative `since` may reach.
const MAX_RELATIVE: Duration = Duration::from_secs(366 * 24 * 3600);

/// Parses `since` into a point in time at or before `now`: `<n>s`, `<n>m`, `<n>h`, `<n>d`
/// (that long before `now`) or an RFC 3339 time such as `2026-01-31T12:00:00Z`.
pub fn parse_since(since: &str, now: SystemTime) -> Result<SystemTime, CoreError> {
    let invalid = |why: &str| {
        CoreError::InvalidParameter(format!(
            "invalid since {since:?}: {why}; expected a duration such as 30s, 10m, 2h or 1d, \
             or an RFC 3339 time such as 2026-01-31T12:00:00Z"
        ))
    };
    let s = since.trim();
    if let Some(ago) = parse_duration(s) {
        if ago > MAX_RELATIVE {
            return Err(invalid("at most 366d"));
        }
        return now
            .checked_sub(ago)
            .ok_or_else(|| invalid("before the clock's epoch"));
    }
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|_| invalid("not a duration or an RFC 3339 time"))?;
    let t = SystemTime::from(t);
    if t > now {
        return Err(invalid("it is in the future"));
    }
    Ok(t)
}

/// A duration written as digits and one unit: `500ms`, `30s`, `10m`, `2h`, `7d`. `None`
/// when `s` is not one, or does not fit. The one parser of durations: `since` queries and
/// the daemon's settings both use it.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    if digits.is_empty() {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    let secs = match unit {
        "ms" => return Some(Duration::from_millis(n)),
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    n.checked_mul(secs).map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use skyscale_types::time::rfc3339;

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    #[test]
    fn relative_durations() {
        for (s, secs) in [
            ("30s", 30),
            ("10m", 600),
            ("2h", 7200),
            ("1d", 86_400),
            ("0m", 0),
        ] {
            assert_eq!(
                parse_since(s, now()).unwrap(),
                now() - Duration::from_secs(secs),
                "{s}"
            );
        }
    }

    #[test]
    fn durations_need_digits_and_a_unit() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("7d"), Some(Duration::from_secs(604_800)));
        for bad in ["", "10", "ms", "1.5h", "10 m", "99999999999999999999d"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn absolute_times() {
        let t = parse_since("2027-01-10T00:00:00Z", now()).unwrap();
        assert_eq!(
            t,
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_799_539_200)
        );
        assert_eq!(rfc3339(t), "2027-01-10T00:00:00.000Z");
        // Exactly now is not the future.
        assert_eq!(parse_since("2027-01-15T08:00:00Z", now()).unwrap(), now());
        let offset = parse_since("2027-01-10T01:00:00+01:00", now()).unwrap();
        assert_eq!(offset, t);
    }

    #[test]
    fn bad_values_say_what_is_expected() {
        for bad in [
            "",
            "m",
            "10",
            "10x",
            "-5m",
            "1.5h",
            "10 m",
            "yesterday",
            "99999999999999999999d",
            "400d",
            "2030-01-01T00:00:00Z",
            "2027-01-15",
        ] {
            let err = parse_since(bad, now()).unwrap_err().to_string();
            assert!(err.starts_with("invalid since"), "{bad}: {err}");
            assert!(err.contains("10m"), "{bad}: {err}");
        }
    }
}
