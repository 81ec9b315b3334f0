//! Pure helpers: percentiles, `server-timing` parsing, ratio and duration formatting.

use serde::Serialize;

/// Nearest-rank percentile (`p` in 0..=100) of an ascending-sorted slice.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// The median of unsorted values.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    percentile(&v, 50.0)
}

/// Percentiles of a set of samples, in the unit the samples were given in.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
}

impl Summary {
    pub fn of(values: &[f64]) -> Option<Summary> {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        Some(Summary {
            n: v.len(),
            p50: percentile(&v, 50.0)?,
            p90: percentile(&v, 90.0)?,
            p99: percentile(&v, 99.0)?,
            mean: v.iter().sum::<f64>() / v.len() as f64,
            min: *v.first()?,
            max: *v.last()?,
        })
    }
}

/// Parses `auth;dur=0.012, lookup;dur=0.020, total;dur=0.300` into (name, milliseconds).
/// Entries without a `dur` parameter are skipped; a malformed duration is an error.
pub fn parse_server_timing(header: &str) -> Result<Vec<(String, f64)>, String> {
    let mut out = Vec::new();
    for entry in header.split(',') {
        let mut parts = entry.split(';').map(str::trim);
        let name = match parts.next() {
            Some(n) if !n.is_empty() => n,
            _ => continue,
        };
        for param in parts {
            if let Some((k, v)) = param.split_once('=') {
                if k.trim().eq_ignore_ascii_case("dur") {
                    let v = v.trim().trim_matches('"');
                    let ms: f64 = v
                        .parse()
                        .map_err(|_| format!("bad duration {v:?} for {name:?}"))?;
                    out.push((name.to_owned(), ms));
                }
            }
        }
    }
    Ok(out)
}

/// `value / base` as `0.93×`, `4.2×`, `37×`; `n/a` when either is missing or the base is 0.
pub fn ratio(value: Option<f64>, base: Option<f64>) -> String {
    match (value, base) {
        (Some(v), Some(b)) if b > 0.0 && v.is_finite() => {
            let r = v / b;
            if r >= 100.0 {
                format!("{r:.0}×")
            } else if r >= 10.0 {
                format!("{r:.1}×")
            } else if r >= 0.1 {
                format!("{r:.2}×")
            } else {
                format!("{r:.3}×")
            }
        }
        _ => "n/a".to_owned(),
    }
}

/// A duration given in microseconds, in the most readable unit: `84 µs`, `1.25 ms`, `1.42 s`.
pub fn fmt_us(us: f64) -> String {
    if !us.is_finite() {
        "n/a".to_owned()
    } else if us < 1_000.0 {
        format!("{us:.0} µs")
    } else if us < 1_000_000.0 {
        format!("{:.2} ms", us / 1_000.0)
    } else {
        format!("{:.2} s", us / 1_000_000.0)
    }
}

/// Like [`fmt_us`] for an optional value.
pub fn fmt_opt_us(us: Option<f64>) -> String {
    us.map_or_else(|| "n/a".to_owned(), fmt_us)
}

/// Bytes as MiB with one decimal.
pub fn fmt_mib(bytes: Option<f64>) -> String {
    bytes.map_or_else(
        || "n/a".to_owned(),
        |b| format!("{:.1} MiB", b / (1024.0 * 1024.0)),
    )
}

/// `✓` when `value <= budget`, `✗` otherwise, blank when unmeasured.
pub fn check_le(value: Option<f64>, budget: f64) -> &'static str {
    match value {
        Some(v) if v <= budget => "✓",
        Some(_) => "✗",
        None => "?",
    }
}

/// `✓` when `value >= budget`.
pub fn check_ge(value: Option<f64>, budget: f64) -> &'static str {
    match value {
        Some(v) if v >= budget => "✓",
        Some(_) => "✗",
        None => "?",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 90.0), Some(90.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        let s = Summary::of(&[4.0, 1.0, 3.0, 2.0]).expect("summary");
        assert_eq!(
            (s.n, s.p50, s.p99, s.min, s.max, s.mean),
            (4, 2.0, 4.0, 1.0, 4.0, 2.5)
        );
        assert!(Summary::of(&[]).is_none());
    }

    #[test]
    fn server_timing_parses_the_documented_format() {
        let h = "auth;dur=0.012, lookup;dur=0.020, acquire;dur=0.001, channel;dur=0.150, \
                 runtime;dur=0.110, total;dur=0.300";
        let t = parse_server_timing(h).expect("parses");
        let names: Vec<&str> = t.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["auth", "lookup", "acquire", "channel", "runtime", "total"]
        );
        assert!((t[3].1 - 0.150).abs() < 1e-12);
        // Descriptions, quoted values and entries without a duration.
        let t = parse_server_timing(r#"cache;desc="x", db;dur="1.5";desc=q"#).expect("parses");
        assert_eq!(t, vec![("db".to_owned(), 1.5)]);
        assert!(parse_server_timing("auth;dur=fast").is_err());
        assert_eq!(parse_server_timing("").expect("empty"), vec![]);
    }

    #[test]
    fn ratios_and_durations_format_readably() {
        assert_eq!(ratio(Some(90.0), Some(100.0)), "0.90×");
        assert_eq!(ratio(Some(420.0), Some(100.0)), "4.20×");
        assert_eq!(ratio(Some(3700.0), Some(100.0)), "37.0×");
        assert_eq!(ratio(Some(25000.0), Some(100.0)), "250×");
        assert_eq!(ratio(Some(2.0), Some(100.0)), "0.020×");
        assert_eq!(ratio(Some(1.0), Some(0.0)), "n/a");
        assert_eq!(ratio(None, Some(1.0)), "n/a");
        assert_eq!(fmt_us(84.4), "84 µs");
        assert_eq!(fmt_us(1250.0), "1.25 ms");
        assert_eq!(fmt_us(1_420_000.0), "1.42 s");
        assert_eq!(fmt_mib(Some(8.0 * 1024.0 * 1024.0)), "8.0 MiB");
        assert_eq!(check_le(Some(1.0), 2.0), "✓");
        assert_eq!(check_ge(Some(1.0), 2.0), "✗");
    }
}
