//! How a function's metrics are printed.

use skyscale_types::metrics::{FunctionMetrics, Percentiles};

use super::{key_values, table};

/// `function metrics`' text form: the counts, the duration percentiles, the errors by type
/// and the live state.
pub fn metrics_summary(m: &FunctionMetrics) -> String {
    let mut out = format!("function {}, {} to {}", m.function, m.since, m.until);
    if !m.complete {
        out.push_str(" (only the newest 10,000 invocations of the window are kept)");
    }
    out.push_str("\n\n");
    let count = |n: u64| n.to_string();
    out.push_str(&key_values(&[
        ("invocations", count(m.invocations)),
        ("successes", count(m.successes)),
        ("function errors", count(m.function_errors)),
        ("timeouts", count(m.timeouts)),
        ("crashes", count(m.crashes)),
        ("throttles", count(m.throttles)),
        ("cold starts", count(m.cold_starts)),
        (
            "max memory used",
            m.max_memory_used_mb
                .map_or_else(|| "-".to_owned(), |mb| format!("{mb} MB")),
        ),
        ("running now", count(m.concurrent_executions)),
        ("warm sandboxes", count(m.warm_sandboxes)),
    ]));
    out.push('\n');
    let ms = |v: f64| format!("{v:.2}ms");
    let row = |what: &str, p: Option<&Percentiles>| match p {
        Some(p) => [
            what.to_owned(),
            p.count.to_string(),
            ms(p.p50),
            ms(p.p90),
            ms(p.p99),
            ms(p.max),
        ],
        None => [
            what.to_owned(),
            "0".into(),
            "-".into(),
            "-".into(),
            "-".into(),
            "-".into(),
        ],
    };
    out.push_str(&table(
        ["DURATION", "COUNT", "P50", "P90", "P99", "MAX"],
        &[
            row("run", m.duration_ms.as_ref()),
            row("init", m.init_duration_ms.as_ref()),
        ],
    ));
    if !m.errors_by_type.is_empty() {
        out.push('\n');
        let rows: Vec<[String; 2]> = m
            .errors_by_type
            .iter()
            .map(|(ty, n)| [ty.clone(), n.to_string()])
            .collect();
        out.push_str(&table(["ERROR TYPE", "COUNT"], &rows));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_is_readable() {
        let m = FunctionMetrics {
            function: "hello".into(),
            since: "2026-01-01T00:00:00.000Z".into(),
            until: "2026-01-01T01:00:00.000Z".into(),
            complete: true,
            invocations: 4,
            successes: 2,
            function_errors: 1,
            timeouts: 0,
            crashes: 0,
            throttles: 1,
            errors_by_type: [("ValueError".to_owned(), 1)].into(),
            cold_starts: 1,
            duration_ms: Some(Percentiles {
                count: 3,
                p50: 1.5,
                p90: 2.0,
                p99: 2.0,
                max: 2.0,
            }),
            init_duration_ms: None,
            max_memory_used_mb: Some(41),
            concurrent_executions: 0,
            warm_sandboxes: 1,
        };
        assert_eq!(
            metrics_summary(&m),
            "\
function hello, 2026-01-01T00:00:00.000Z to 2026-01-01T01:00:00.000Z

invocations:     4
successes:       2
function errors: 1
timeouts:        0
crashes:         0
throttles:       1
cold starts:     1
max memory used: 41 MB
running now:     0
warm sandboxes:  1

DURATION  COUNT  P50     P90     P99     MAX
run       3      1.50ms  2.00ms  2.00ms  2.00ms
init      0      -       -       -       -

ERROR TYPE  COUNT
ValueError  1
"
        );
    }
}
