//! Schedule expressions, EventBridge's syntax (lambda-compatibility.md §14), and when they
//! fire: pure functions of an instant, unit-tested here.
//!
//! - `cron(Minutes Hours Day-of-month Month Day-of-week Year)`: six fields; `*`, `,`, `-`,
//!   `/`; `?` in exactly one of day-of-month and day-of-week; `L` (last day of the month;
//!   alone in day-of-week: Saturday, the week's last day; `5L`: the month's last Thursday),
//!   `W` (`15W`: the weekday nearest the 15th, within the month; `LW`: the month's last
//!   weekday), `#` (`2#1`: the month's first Monday); JAN–DEC and SUN–SAT; day-of-week
//!   1–7 is SUN–SAT; years 1970–2199.
//! - `rate(N unit)`: minute(s), hour(s), day(s), singular for 1 only, as AWS; and, as a
//!   Skyscale extension, second(s). Slots are the schedule's anchor (its creation, or the
//!   last change of its expression) plus whole periods.
//! - `at(yyyy-mm-ddThh:mm:ss)`: once, at that wall-clock time.
//!
//! Cron and `at` times are wall-clock times in the schedule's IANA time zone, so they follow
//! daylight saving time as EventBridge Scheduler does: a time that does not exist (the hour
//! skipped in spring) does not fire, and a time that exists twice (the hour repeated in
//! autumn) fires once, at its first occurrence. Rates are fixed durations.

use jiff::civil::{Date, DateTime, Weekday};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::Timestamp;

/// The years a cron expression may name (EventBridge's range).
const YEARS: (i16, i16) = (1970, 2199);

/// A bad expression or time zone: the message says what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ExpressionError(String);

fn err<T>(msg: impl Into<String>) -> Result<T, ExpressionError> {
    Err(ExpressionError(msg.into()))
}

/// A parsed expression with the time zone its wall-clock times are in.
#[derive(Debug, Clone)]
pub struct ScheduleExpression {
    kind: Kind,
    tz: TimeZone,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Cron(Box<Cron>),
    /// The period in milliseconds.
    Rate(i64),
    At(DateTime),
}

impl ScheduleExpression {
    /// Parses `expression` for the IANA time zone `timezone` (`UTC`: also `None`).
    pub fn parse(expression: &str, timezone: &str) -> Result<Self, ExpressionError> {
        let tz = zone(timezone)?;
        let e = expression.trim();
        let kind = if let Some(body) = inner(e, "cron") {
            Kind::Cron(Box::new(Cron::parse(body).map_err(
                |ExpressionError(m)| ExpressionError(format!("invalid {e}: {m}")),
            )?))
        } else if let Some(body) = inner(e, "rate") {
            Kind::Rate(
                rate(body)
                    .map_err(|ExpressionError(m)| ExpressionError(format!("invalid {e}: {m}")))?,
            )
        } else if let Some(body) = inner(e, "at") {
            let text = body.trim();
            let shaped = text.len() == 19 && text.as_bytes()[10] == b'T';
            Kind::At(
                text.parse::<DateTime>()
                    .ok()
                    .filter(|_| shaped)
                    .ok_or_else(|| {
                        ExpressionError(format!(
                    "invalid {e}: expected at(yyyy-mm-ddThh:mm:ss), e.g. at(2027-01-31T09:30:00)"
                ))
                    })?,
            )
        } else {
            return err(format!(
                "invalid schedule expression {e:?}: expected cron(minutes hours day-of-month \
                 month day-of-week year), rate(N unit) or at(yyyy-mm-ddThh:mm:ss)"
            ));
        };
        Ok(Self { kind, tz })
    }

    /// A one-time schedule (`at`).
    pub fn is_one_time(&self) -> bool {
        matches!(self.kind, Kind::At(_))
    }

    /// The first slot strictly after `after` (epoch ms). Rate slots count from `anchor`
    /// (epoch ms). `None`: there is none (an `at` that has passed, a cron expression whose
    /// years are over).
    pub fn next_after(&self, after: i64, anchor: i64) -> Option<i64> {
        match &self.kind {
            Kind::Rate(period) => {
                let k = if after < anchor {
                    1
                } else {
                    (after - anchor) / period + 1
                };
                anchor.checked_add(k.checked_mul(*period)?)
            }
            Kind::At(dt) => {
                let at = instant(&self.tz, *dt)?.as_millisecond();
                (at > after).then_some(at)
            }
            Kind::Cron(c) => {
                let ts = Timestamp::from_millisecond(after).ok()?;
                c.next_after(&self.tz, ts).map(Timestamp::as_millisecond)
            }
        }
    }

    /// The latest slot at or before `now` and after `after`, and how many slots there are
    /// in `(after, now]` (counted up to `cap`): what a start finds missed.
    pub fn latest_in(&self, after: i64, now: i64, anchor: i64, cap: usize) -> (Option<i64>, usize) {
        if let Kind::Rate(period) = self.kind {
            let Some(first) = self.next_after(after, anchor) else {
                return (None, 0);
            };
            if first > now {
                return (None, 0);
            }
            let n = (now - first) / period;
            let count = usize::try_from(n + 1).unwrap_or(usize::MAX).min(cap);
            return (Some(first + n * period), count);
        }
        let (mut latest, mut count, mut t) = (None, 0, after);
        while let Some(next) = self.next_after(t, anchor) {
            if next > now {
                break;
            }
            latest = Some(next);
            count += 1;
            t = next;
            if count >= cap {
                // Jump: the latest slot is the last one before `now`; past the cap only
                // that one matters.
                if let Some(l) = self.last_at_or_before(t, now, anchor) {
                    latest = Some(l);
                }
                break;
            }
        }
        (latest, count)
    }

    /// The latest slot in `(after, now]`, searched backwards a day at a time (cron).
    fn last_at_or_before(&self, after: i64, now: i64, anchor: i64) -> Option<i64> {
        const DAY: i64 = 86_400_000;
        let mut from = now - DAY;
        loop {
            let from_clamped = from.max(after);
            let mut t = from_clamped;
            let mut best = None;
            while let Some(next) = self.next_after(t, anchor) {
                if next > now {
                    break;
                }
                best = Some(next);
                t = next;
            }
            if best.is_some() || from_clamped == after {
                return best;
            }
            from -= DAY * 30;
        }
    }
}

/// `name(body)` → `body`.
fn inner<'a>(e: &'a str, name: &str) -> Option<&'a str> {
    e.strip_prefix(name)?.strip_prefix('(')?.strip_suffix(')')
}

/// An IANA time zone by name (the host's database, or the copy built in).
pub fn zone(name: &str) -> Result<TimeZone, ExpressionError> {
    if name.is_empty() || name.starts_with('/') || name.contains("..") {
        return err(format!(
            "invalid time zone {name:?}: expected an IANA name such as Europe/Paris or UTC"
        ));
    }
    TimeZone::get(name).map_err(|_| {
        ExpressionError(format!(
            "unknown time zone {name:?}: expected an IANA name such as Europe/Paris or UTC"
        ))
    })
}

/// The instant of a wall-clock time: the first of two in a repeated hour, none in a skipped
/// one.
fn instant(tz: &TimeZone, dt: DateTime) -> Option<Timestamp> {
    match tz.to_ambiguous_timestamp(dt).offset() {
        AmbiguousOffset::Unambiguous { offset } | AmbiguousOffset::Fold { before: offset, .. } => {
            offset.to_timestamp(dt).ok()
        }
        AmbiguousOffset::Gap { .. } => None,
    }
}

/// `N unit` → milliseconds.
fn rate(body: &str) -> Result<i64, ExpressionError> {
    let parts: Vec<&str> = body.split_whitespace().collect();
    let [value, unit] = parts[..] else {
        return err("expected rate(N unit), e.g. rate(5 minutes)");
    };
    let n: i64 = match value.parse() {
        Ok(n) if n >= 1 && value.bytes().all(|b| b.is_ascii_digit()) => n,
        _ => {
            return err(format!(
                "the value {value:?} is not a whole number of at least 1"
            ))
        }
    };
    let (unit_ms, singular, plural) = match unit {
        "minute" | "minutes" => (60_000, "minute", "minutes"),
        "hour" | "hours" => (3_600_000, "hour", "hours"),
        "day" | "days" => (86_400_000, "day", "days"),
        "second" | "seconds" => (1_000, "second", "seconds"),
        other => {
            return err(format!(
                "unknown unit {other:?}: expected minute(s), hour(s), day(s) or, as a Skyscale \
                 extension, second(s)"
            ))
        }
    };
    if n == 1 && unit != singular {
        return err(format!(
            "a value of 1 takes the singular unit: rate(1 {singular})"
        ));
    }
    if n > 1 && unit != plural {
        return err(format!(
            "a value above 1 takes the plural unit: rate({n} {plural})"
        ));
    }
    n.checked_mul(unit_ms)
        .filter(|ms| *ms <= 1000 * 86_400_000)
        .ok_or_else(|| ExpressionError("the period is longer than 1000 days".into()))
}

/// A set of small numbers (`0..128`) as bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Bits(u128);

impl Bits {
    fn has(self, v: i64) -> bool {
        (0..128).contains(&v) && self.0 & (1 << v) != 0
    }
    fn set(&mut self, v: i64) {
        self.0 |= 1 << v;
    }
    fn iter(self) -> impl Iterator<Item = i8> {
        (0..128)
            .filter(move |v| self.has(i64::from(*v)))
            .map(|v| v as i8)
    }
}

/// One item of the day-of-month field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DomItem {
    Days(Bits),
    /// `L`.
    Last,
    /// `LW`.
    LastWeekday,
    /// `15W`.
    NearestWeekday(i8),
}

/// One item of the day-of-week field (weekdays 1–7, Sunday first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DowItem {
    Days(Bits),
    /// `5L`: the month's last Thursday.
    LastOf(i8),
    /// `2#1`: the month's first Monday.
    Nth(i8, i8),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Days {
    /// Day-of-week is `?`: day-of-month decides.
    Dom(Vec<DomItem>),
    /// Day-of-month is `?`: day-of-week decides.
    Dow(Vec<DowItem>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Cron {
    minutes: Bits,
    hours: Bits,
    days: Days,
    months: Bits,
    /// Years as offsets from 1970.
    years: [Bits; 2],
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// The numeric fields: their name, range and names.
struct Field {
    name: &'static str,
    min: i64,
    max: i64,
    names: &'static [&'static str],
}

const MINUTES: Field = Field {
    name: "minutes",
    min: 0,
    max: 59,
    names: &[],
};
const HOURS: Field = Field {
    name: "hours",
    min: 0,
    max: 23,
    names: &[],
};
const DOM: Field = Field {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: Field = Field {
    name: "month",
    min: 1,
    max: 12,
    names: &MONTHS,
};
const DOW: Field = Field {
    name: "day-of-week",
    min: 1,
    max: 7,
    names: &WEEKDAYS,
};
const YEAR: Field = Field {
    name: "year",
    min: YEARS.0 as i64,
    max: YEARS.1 as i64,
    names: &[],
};

impl Field {
    fn range(&self) -> String {
        match self.names {
            [] => format!("{}-{}", self.min, self.max),
            names => format!(
                "{}-{} or {}-{}",
                self.min,
                self.max,
                names[0],
                names[names.len() - 1]
            ),
        }
    }

    fn value(&self, s: &str) -> Result<i64, ExpressionError> {
        let upper = s.to_ascii_uppercase();
        if let Some(i) = self.names.iter().position(|n| *n == upper) {
            return Ok(self.min + i as i64);
        }
        let v: i64 = match s.parse() {
            Ok(v) if s.bytes().all(|b| b.is_ascii_digit()) => v,
            _ => {
                return err(format!(
                    "{}: {s:?} is not a value ({})",
                    self.name,
                    self.range()
                ))
            }
        };
        if !(self.min..=self.max).contains(&v) {
            return err(format!(
                "{}: {v} is out of range ({})",
                self.name,
                self.range()
            ));
        }
        Ok(v)
    }

    /// `*`, `v`, `a-b`, each with an optional `/step`, separated by commas; calls `put`
    /// with each value.
    fn each(&self, text: &str, put: &mut dyn FnMut(i64)) -> Result<(), ExpressionError> {
        for item in text.split(',') {
            if item.is_empty() {
                return err(format!("{}: empty item in {text:?}", self.name));
            }
            let (range, step) = match item.split_once('/') {
                Some((r, s)) => {
                    let step: i64 = match s.parse() {
                        Ok(v) if v >= 1 && s.bytes().all(|b| b.is_ascii_digit()) => v,
                        _ => {
                            return err(format!(
                            "{}: the step {s:?} in {item:?} is not a whole number of at least 1",
                            self.name
                        ))
                        }
                    };
                    (r, Some(step))
                }
                None => (item, None),
            };
            let (lo, hi) = if range == "*" {
                (self.min, self.max)
            } else if let Some((a, b)) = range.split_once('-') {
                let (a, b) = (self.value(a)?, self.value(b)?);
                if a > b {
                    return err(format!("{}: the range {range:?} runs backwards", self.name));
                }
                (a, b)
            } else {
                let v = self.value(range)?;
                // `5/10`: from 5 to the end, every 10.
                (v, if step.is_some() { self.max } else { v })
            };
            let mut v = lo;
            while v <= hi {
                put(v);
                v += step.unwrap_or(1);
            }
        }
        Ok(())
    }

    fn bits(&self, text: &str) -> Result<Bits, ExpressionError> {
        if text == "?" {
            return err(format!(
                "{}: ? is only allowed in day-of-month or day-of-week",
                self.name
            ));
        }
        let mut b = Bits::default();
        self.each(text, &mut |v| b.set(v))?;
        Ok(b)
    }
}

impl Cron {
    fn parse(body: &str) -> Result<Self, ExpressionError> {
        let f: Vec<&str> = body.split_whitespace().collect();
        let [minutes, hours, dom, month, dow, year] = f[..] else {
            return err(format!(
                "expected 6 fields (minutes hours day-of-month month day-of-week year), found {}",
                f.len()
            ));
        };
        let days = match (dom, dow) {
            ("?", "?") => {
                return err(
                    "day-of-month and day-of-week cannot both be ?: one of them names \
                            the days",
                )
            }
            ("?", dow) => Days::Dow(dow_items(dow)?),
            (dom, "?") => Days::Dom(dom_items(dom)?),
            _ => {
                return err("one of day-of-month and day-of-week must be ?, e.g. cron(0 3 * * ? *)")
            }
        };
        let mut years = [Bits::default(); 2];
        if year == "?" {
            return err("year: ? is only allowed in day-of-month or day-of-week");
        }
        YEAR.each(year, &mut |y| {
            let o = y - YEAR.min;
            years[(o / 128) as usize].set(o % 128);
        })?;
        let c = Self {
            minutes: MINUTES.bits(minutes)?,
            hours: HOURS.bits(hours)?,
            days,
            months: MONTH.bits(month)?,
            years,
        };
        Ok(c)
    }

    fn has_year(&self, y: i16) -> bool {
        let o = i64::from(y) - YEAR.min;
        (0..256).contains(&o) && self.years[(o / 128) as usize].has(o % 128)
    }

    fn day_matches(&self, d: Date) -> bool {
        match &self.days {
            Days::Dom(items) => items.iter().any(|i| match *i {
                DomItem::Days(b) => b.has(i64::from(d.day())),
                DomItem::Last => d == d.last_of_month(),
                DomItem::LastWeekday => d == last_weekday(d),
                DomItem::NearestWeekday(n) => nearest_weekday(d, n) == Some(d),
            }),
            Days::Dow(items) => {
                let wd = d.weekday().to_sunday_one_offset();
                items.iter().any(|i| match *i {
                    DowItem::Days(b) => b.has(i64::from(wd)),
                    DowItem::LastOf(w) => wd == w && d.day() + 7 > d.days_in_month(),
                    DowItem::Nth(w, n) => wd == w && (d.day() - 1) / 7 + 1 == n,
                })
            }
        }
    }

    fn next_after(&self, tz: &TimeZone, after: Timestamp) -> Option<Timestamp> {
        let local = after.to_zoned(tz.clone()).datetime();
        // A day early: in a repeated hour around midnight a wall-clock time of the day
        // before can still be ahead.
        let mut d = local.date().yesterday().ok()?;
        loop {
            if d.year() > YEARS.1 {
                return None;
            }
            if !self.has_year(d.year()) {
                d = Date::new(d.year().checked_add(1)?, 1, 1).ok()?;
                continue;
            }
            if !self.months.has(i64::from(d.month())) {
                d = d.last_of_month().tomorrow().ok()?;
                continue;
            }
            if self.day_matches(d) {
                for h in self.hours.iter() {
                    for m in self.minutes.iter() {
                        let Some(t) = instant(tz, d.at(h, m, 0, 0)) else {
                            continue;
                        };
                        if t > after {
                            return Some(t);
                        }
                    }
                }
            }
            d = d.tomorrow().ok()?;
        }
    }
}

fn is_weekend(d: Date) -> bool {
    matches!(d.weekday(), Weekday::Saturday | Weekday::Sunday)
}

fn last_weekday(d: Date) -> Date {
    let mut l = d.last_of_month();
    while is_weekend(l) {
        l = l.yesterday().unwrap_or(l);
    }
    l
}

/// The weekday nearest the `n`th of `d`'s month, within the month (Quartz's `W`).
fn nearest_weekday(d: Date, n: i8) -> Option<Date> {
    let t = Date::new(d.year(), d.month(), n).ok()?;
    Some(match t.weekday() {
        Weekday::Saturday if n == 1 => t.tomorrow().ok()?.tomorrow().ok()?,
        Weekday::Saturday => t.yesterday().ok()?,
        Weekday::Sunday if n == t.days_in_month() => t.yesterday().ok()?.yesterday().ok()?,
        Weekday::Sunday => t.tomorrow().ok()?,
        _ => t,
    })
}

fn dom_items(text: &str) -> Result<Vec<DomItem>, ExpressionError> {
    let mut out = Vec::new();
    for item in text.split(',') {
        out.push(match item {
            "L" => DomItem::Last,
            "LW" => DomItem::LastWeekday,
            w if w.ends_with('W') => {
                let v = DOM.value(&w[..w.len() - 1])?;
                DomItem::NearestWeekday(v as i8)
            }
            other => DomItem::Days(DOM.bits(other)?),
        });
    }
    Ok(out)
}

fn dow_items(text: &str) -> Result<Vec<DowItem>, ExpressionError> {
    let mut out = Vec::new();
    for item in text.split(',') {
        out.push(if item == "L" {
            // Alone, L is the week's last day.
            let mut b = Bits::default();
            b.set(7);
            DowItem::Days(b)
        } else if let Some(w) = item.strip_suffix('L') {
            DowItem::LastOf(DOW.value(w)? as i8)
        } else if let Some((w, n)) = item.split_once('#') {
            let w = DOW.value(w)? as i8;
            match n.parse::<i8>() {
                Ok(k @ 1..=5) if n.len() == 1 => DowItem::Nth(w, k),
                _ => {
                    return err(format!(
                        "day-of-week: in {item:?} the week of the month must be 1 to 5"
                    ))
                }
            }
        } else {
            DowItem::Days(DOW.bits(item)?)
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        s.parse::<Timestamp>().unwrap().as_millisecond()
    }

    fn iso(ms: i64) -> String {
        Timestamp::from_millisecond(ms).unwrap().to_string()
    }

    /// The first `n` slots after `from` (UTC instants as text).
    fn slots(expr: &str, tz: &str, from: &str, n: usize) -> Vec<String> {
        let e = ScheduleExpression::parse(expr, tz).unwrap();
        let mut t = ms(from);
        let mut out = Vec::new();
        for _ in 0..n {
            match e.next_after(t, ms(from)) {
                Some(next) => {
                    out.push(iso(next));
                    t = next;
                }
                None => break,
            }
        }
        out
    }

    fn bad(expr: &str) -> String {
        ScheduleExpression::parse(expr, "UTC").unwrap_err().0
    }

    #[test]
    fn cron_daily_at_three_utc() {
        assert_eq!(
            slots("cron(0 3 * * ? *)", "UTC", "2026-12-06T23:40:00Z", 2),
            ["2026-12-07T03:00:00Z", "2026-12-08T03:00:00Z"]
        );
        // Strictly after: a slot equal to `after` is not next.
        assert_eq!(
            slots("cron(0 3 * * ? *)", "UTC", "2026-12-07T03:00:00Z", 1),
            ["2026-12-08T03:00:00Z"]
        );
    }

    #[test]
    fn cron_lists_ranges_steps_and_names() {
        assert_eq!(
            slots(
                "cron(0/15 9-10 ? * MON-FRI *)",
                "UTC",
                "2026-12-04T10:40:00Z",
                4
            ),
            [
                "2026-12-04T10:45:00Z",
                "2026-12-07T09:00:00Z",
                "2026-12-07T09:15:00Z",
                "2026-12-07T09:30:00Z"
            ]
        );
        assert_eq!(
            slots(
                "cron(*/20 0 1,15 JAN,jul ? 2027)",
                "UTC",
                "2026-06-01T00:00:00Z",
                4
            ),
            [
                "2027-01-01T00:00:00Z",
                "2027-01-01T00:20:00Z",
                "2027-01-01T00:40:00Z",
                "2027-01-15T00:00:00Z"
            ]
        );
        // Day-of-week numbers: 1 is Sunday (2026-12-06 is a Sunday).
        assert_eq!(
            slots("cron(0 12 ? * 1 *)", "UTC", "2026-12-01T00:00:00Z", 1),
            ["2026-12-06T12:00:00Z"]
        );
        assert_eq!(
            slots("cron(0 12 ? * 7 *)", "UTC", "2026-12-01T00:00:00Z", 1),
            ["2026-12-05T12:00:00Z"]
        );
        // Ranges with a step; `5/20` runs to the end of the field.
        assert_eq!(
            slots("cron(5/20 1-5/2 * * ? *)", "UTC", "2026-12-01T00:00:00Z", 5),
            [
                "2026-12-01T01:05:00Z",
                "2026-12-01T01:25:00Z",
                "2026-12-01T01:45:00Z",
                "2026-12-01T03:05:00Z",
                "2026-12-01T03:25:00Z"
            ]
        );
    }

    #[test]
    fn cron_last_weekday_and_nth() {
        // L: the last day of the month, February of a leap year included.
        assert_eq!(
            slots("cron(0 0 L * ? *)", "UTC", "2028-01-31T00:00:00Z", 2),
            ["2028-02-29T00:00:00Z", "2028-03-31T00:00:00Z"]
        );
        // 6L: the month's last Friday.
        assert_eq!(
            slots("cron(0 0 ? * 6L *)", "UTC", "2026-12-01T00:00:00Z", 2),
            ["2026-12-25T00:00:00Z", "2027-01-29T00:00:00Z"]
        );
        // L alone in day-of-week: Saturday.
        assert_eq!(
            slots("cron(0 0 ? * L *)", "UTC", "2026-12-01T00:00:00Z", 1),
            ["2026-12-05T00:00:00Z"]
        );
        // 2#1: the month's first Monday.
        assert_eq!(
            slots("cron(30 8 ? * MON#1 *)", "UTC", "2026-12-08T00:00:00Z", 2),
            ["2027-01-04T08:30:00Z", "2027-02-01T08:30:00Z"]
        );
        // 3W: 2027-01-03 is a Sunday, so Monday the 4th; 1W on a Saturday (2027-05-01)
        // stays in the month: Monday the 3rd.
        assert_eq!(
            slots("cron(0 0 3W 1 ? 2027)", "UTC", "2026-12-08T00:00:00Z", 1),
            ["2027-01-04T00:00:00Z"]
        );
        assert_eq!(
            slots("cron(0 0 1W 5 ? 2027)", "UTC", "2026-12-08T00:00:00Z", 1),
            ["2027-05-03T00:00:00Z"]
        );
        // LW: the last weekday; 2027-01-31 is a Sunday.
        assert_eq!(
            slots("cron(0 0 LW 1 ? 2027)", "UTC", "2026-12-08T00:00:00Z", 1),
            ["2027-01-29T00:00:00Z"]
        );
        // 31 only in months that have it.
        assert_eq!(
            slots("cron(0 0 31 * ? *)", "UTC", "2027-01-31T00:00:00Z", 1),
            ["2027-03-31T00:00:00Z"]
        );
    }

    #[test]
    fn cron_years_end() {
        assert_eq!(
            slots(
                "cron(0 0 1 1 ? 2027-2028)",
                "UTC",
                "2026-01-01T00:00:00Z",
                5
            ),
            ["2027-01-01T00:00:00Z", "2028-01-01T00:00:00Z"]
        );
        // 30 February never comes: no slot, found quickly.
        let e = ScheduleExpression::parse("cron(0 0 30 2 ? *)", "UTC").unwrap();
        assert_eq!(e.next_after(ms("2026-01-01T00:00:00Z"), 0), None);
    }

    #[test]
    fn cron_in_a_zone_follows_daylight_saving_time() {
        // Paris: 03:00 local is 02:00 UTC in winter and 01:00 UTC in summer.
        assert_eq!(
            slots(
                "cron(0 3 * * ? *)",
                "Europe/Paris",
                "2027-03-26T12:00:00Z",
                4
            ),
            [
                "2027-03-27T02:00:00Z",
                "2027-03-28T01:00:00Z",
                "2027-03-29T01:00:00Z",
                "2027-03-30T01:00:00Z"
            ]
        );
        // 02:30 does not exist on 2027-03-28 in Paris (02:00 → 03:00): that day is skipped.
        assert_eq!(
            slots(
                "cron(30 2 * * ? *)",
                "Europe/Paris",
                "2027-03-27T12:00:00Z",
                2
            ),
            ["2027-03-29T00:30:00Z", "2027-03-30T00:30:00Z"]
        );
        // 02:30 exists twice on 2027-10-31 (03:00 → 02:00): it fires once, the first time.
        assert_eq!(
            slots(
                "cron(30 2 * * ? *)",
                "Europe/Paris",
                "2027-10-30T12:00:00Z",
                2
            ),
            ["2027-10-31T00:30:00Z", "2027-11-01T01:30:00Z"]
        );
        // Every 30 minutes across the repeated hour: each wall-clock time once.
        assert_eq!(
            slots(
                "cron(0/30 * * * ? *)",
                "Europe/Paris",
                "2027-10-30T23:40:00Z",
                5
            ),
            [
                "2027-10-31T00:00:00Z", // 02:00 CEST
                "2027-10-31T00:30:00Z", // 02:30 CEST
                "2027-10-31T02:00:00Z", // 03:00 CET (02:00 and 02:30 CET are not repeated)
                "2027-10-31T02:30:00Z",
                "2027-10-31T03:00:00Z"
            ]
        );
        // Starting inside the second pass of the repeated hour: its times are not fired
        // again.
        assert_eq!(
            slots(
                "cron(0/30 * * * ? *)",
                "Europe/Paris",
                "2027-10-31T01:10:00Z",
                1
            ),
            ["2027-10-31T02:00:00Z"]
        );
        // New York's spring gap (2027-03-14 02:00 → 03:00).
        assert_eq!(
            slots(
                "cron(15 2 * * ? *)",
                "America/New_York",
                "2027-03-13T12:00:00Z",
                2
            ),
            ["2027-03-15T06:15:00Z", "2027-03-16T06:15:00Z"]
        );
    }

    #[test]
    fn rates_count_from_the_anchor() {
        let e = ScheduleExpression::parse("rate(5 minutes)", "Europe/Paris").unwrap();
        let anchor = ms("2026-12-06T10:00:00Z");
        assert_eq!(e.next_after(anchor, anchor), Some(anchor + 300_000));
        assert_eq!(e.next_after(anchor - 1, anchor), Some(anchor + 300_000));
        assert_eq!(
            e.next_after(anchor + 300_000, anchor),
            Some(anchor + 600_000)
        );
        assert_eq!(
            e.next_after(anchor + 300_001, anchor),
            Some(anchor + 600_000)
        );
        // A rate is a duration: a DST change does not move it.
        let e = ScheduleExpression::parse("rate(1 hour)", "Europe/Paris").unwrap();
        let a = ms("2027-03-28T00:30:00Z");
        assert_eq!(e.next_after(a, a), Some(a + 3_600_000));
        let e = ScheduleExpression::parse("rate(2 seconds)", "UTC").unwrap();
        assert_eq!(e.next_after(1_000, 0), Some(2_000));
        for (expr, period) in [
            ("rate(1 minute)", 60_000),
            ("rate(3 hours)", 10_800_000),
            ("rate(1 day)", 86_400_000),
            ("rate(7 days)", 604_800_000),
            ("rate(1 second)", 1_000),
        ] {
            let e = ScheduleExpression::parse(expr, "UTC").unwrap();
            assert_eq!(e.next_after(0, 0), Some(period), "{expr}");
        }
    }

    #[test]
    fn the_latest_missed_slot_is_found() {
        let e = ScheduleExpression::parse("rate(2 seconds)", "UTC").unwrap();
        assert_eq!(e.latest_in(4_000, 11_500, 0, 100), (Some(10_000), 3));
        assert_eq!(e.latest_in(4_000, 5_999, 0, 100), (None, 0));
        assert_eq!(e.latest_in(4_000, 1_000_000, 0, 10), (Some(1_000_000), 10));
        let e = ScheduleExpression::parse("cron(* * * * ? *)", "UTC").unwrap();
        let from = ms("2026-12-01T00:00:30Z");
        assert_eq!(
            e.latest_in(from, ms("2026-12-01T00:05:10Z"), 0, 100),
            (Some(ms("2026-12-01T00:05:00Z")), 5)
        );
        // Past the cap the latest is still the right one.
        let (latest, n) = e.latest_in(from, ms("2026-12-20T13:07:10Z"), 0, 50);
        assert_eq!(
            (latest.map(iso), n),
            (Some("2026-12-20T13:07:00Z".into()), 50)
        );
    }

    #[test]
    fn at_fires_once_in_its_zone() {
        let e = ScheduleExpression::parse("at(2027-01-31T09:30:00)", "Europe/Paris").unwrap();
        assert!(e.is_one_time());
        let at = ms("2027-01-31T08:30:00Z");
        assert_eq!(e.next_after(at - 1, 0), Some(at));
        assert_eq!(e.next_after(at, 0), None);
        // A wall-clock time that does not exist never comes.
        let e = ScheduleExpression::parse("at(2027-03-28T02:30:00)", "Europe/Paris").unwrap();
        assert_eq!(e.next_after(0, 0), None);
    }

    #[test]
    fn bad_expressions_say_what_is_wrong() {
        for (expr, needle) in [
            ("cron(0 3 * * *)", "expected 6 fields"),
            (
                "cron(0 3 * * * *)",
                "one of day-of-month and day-of-week must be ?",
            ),
            ("cron(0 3 ? * ? *)", "cannot both be ?"),
            ("cron(60 3 * * ? *)", "minutes: 60 is out of range (0-59)"),
            ("cron(0 24 * * ? *)", "hours: 24 is out of range"),
            ("cron(0 0 32 * ? *)", "day-of-month: 32 is out of range"),
            ("cron(0 0 0 * ? *)", "day-of-month: 0 is out of range"),
            (
                "cron(0 0 * 13 ? *)",
                "month: 13 is out of range (1-12 or JAN-DEC)",
            ),
            ("cron(0 0 * FOO ? *)", "month: \"FOO\" is not a value"),
            (
                "cron(0 0 ? * 8 *)",
                "day-of-week: 8 is out of range (1-7 or SUN-SAT)",
            ),
            ("cron(0 0 ? * 0 *)", "day-of-week: 0 is out of range"),
            ("cron(0 0 ? * 2#6 *)", "week of the month must be 1 to 5"),
            (
                "cron(0 0 * * ? 1969)",
                "year: 1969 is out of range (1970-2199)",
            ),
            ("cron(0 0 * * ? 2200)", "year: 2200 is out of range"),
            ("cron(0 0 * * ? ?)", "year: ? is only allowed"),
            ("cron(? 0 * * ? *)", "minutes: ? is only allowed"),
            ("cron(0/0 0 * * ? *)", "the step \"0\""),
            ("cron(30-10 0 * * ? *)", "runs backwards"),
            ("cron(1,,2 0 * * ? *)", "empty item"),
            ("cron(-1 0 * * ? *)", "minutes: \"\" is not a value"),
            ("rate(5 minute)", "plural unit: rate(5 minutes)"),
            ("rate(1 minutes)", "singular unit: rate(1 minute)"),
            ("rate(0 minutes)", "at least 1"),
            ("rate(-1 minutes)", "at least 1"),
            ("rate(1.5 hours)", "at least 1"),
            ("rate(5 weeks)", "unknown unit \"weeks\""),
            ("rate(5)", "expected rate(N unit)"),
            ("rate(99999999 days)", "longer than 1000 days"),
            (
                "at(2027-01-31 09:30:00)",
                "expected at(yyyy-mm-ddThh:mm:ss)",
            ),
            (
                "at(2027-02-30T09:30:00)",
                "expected at(yyyy-mm-ddThh:mm:ss)",
            ),
            ("every 5 minutes", "expected cron("),
            ("CRON(0 3 * * ? *)", "expected cron("),
        ] {
            let msg = bad(expr);
            assert!(msg.contains(needle), "{expr}: {msg:?} lacks {needle:?}");
        }
    }

    #[test]
    fn zones_are_iana_names() {
        assert!(ScheduleExpression::parse("rate(1 day)", "Europe/Paris").is_ok());
        assert!(ScheduleExpression::parse("rate(1 day)", "UTC").is_ok());
        for z in [
            "Mars/Olympus",
            "",
            "/etc/passwd",
            "../../etc/passwd",
            "Europe/Paris ",
        ] {
            let e = ScheduleExpression::parse("rate(1 day)", z).unwrap_err().0;
            assert!(e.contains("time zone"), "{z:?}: {e}");
        }
    }
}
