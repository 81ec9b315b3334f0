//! The Prometheus text exposition format, version 0.0.4: for each metric family a `# HELP`
//! and a `# TYPE` line, then its samples, one per line, `name{label="value",…} value`.
//! Label values are escaped (`\` → `\\`, `"` → `\"`, newline → `\n`): error types come
//! from user code.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::{Display, Write as _};

use super::{Counters, Histogram, STATUSES};
use crate::scheduler::Gauges;

/// The content type of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

const MIB: u64 = 1024 * 1024;

/// Writes every metric: per-function series for the functions `visible` accepts, host
/// gauges always.
pub(crate) fn render(
    counters: &[(String, Counters)],
    gauges: &Gauges,
    visible: impl Fn(&str) -> bool,
) -> String {
    let counters: Vec<(&str, &Counters)> = counters
        .iter()
        .filter(|(name, _)| visible(name))
        .map(|(name, c)| (name.as_str(), c))
        .collect();
    // Live gauges of every visible function that has counters or sandboxes.
    let mut live: BTreeMap<String, (u64, u64)> = counters
        .iter()
        .map(|(name, _)| ((*name).to_owned(), (0, 0)))
        .collect();
    for (f, &g) in &gauges.functions {
        if visible(f.as_str()) {
            live.insert(f.to_string(), g);
        }
    }

    let mut out = Out::default();
    out.family(
        "skyscale_invocations_total",
        "counter",
        "Invocations that ended, by status (success, function_error, timeout, throttled, crashed).",
    );
    for (f, c) in &counters {
        for (status, n) in STATUSES.iter().zip(c.by_status) {
            out.sample(
                "skyscale_invocations_total",
                &[("function", f), ("status", status.as_str())],
                n,
            );
        }
    }
    out.family(
        "skyscale_errors_total",
        "counter",
        "Function errors, timeouts and crashes, by error type.",
    );
    for (f, c) in &counters {
        for (ty, n) in &c.errors {
            out.sample(
                "skyscale_errors_total",
                &[("function", f), ("error_type", ty)],
                n,
            );
        }
    }
    out.family(
        "skyscale_throttles_total",
        "counter",
        "Invocations refused by a limit before they started, by reason.",
    );
    for (f, c) in &counters {
        for (reason, n) in &c.throttles {
            out.sample(
                "skyscale_throttles_total",
                &[("function", f), ("reason", reason)],
                n,
            );
        }
    }
    out.family(
        "skyscale_cold_starts_total",
        "counter",
        "Invocations that needed a sandbox to be readied.",
    );
    for (f, c) in &counters {
        out.sample(
            "skyscale_cold_starts_total",
            &[("function", f)],
            c.cold_starts,
        );
    }
    out.family(
        "skyscale_response_bytes_total",
        "counter",
        "Bytes of the invocations' responses.",
    );
    for (f, c) in &counters {
        out.sample(
            "skyscale_response_bytes_total",
            &[("function", f)],
            c.response_bytes,
        );
    }
    out.histogram(
        "skyscale_duration_seconds",
        "Run time of the invocations that reached a sandbox.",
        counters.iter().map(|(f, c)| (*f, &c.duration)),
    );
    out.histogram(
        "skyscale_init_duration_seconds",
        "Cold starts: time to ready the sandbox (specialise or boot it, import the handler).",
        counters.iter().map(|(f, c)| (*f, &c.init)),
    );
    out.family(
        "skyscale_concurrent_executions",
        "gauge",
        "Invocations of the function running now.",
    );
    for (f, (running, _)) in &live {
        out.sample(
            "skyscale_concurrent_executions",
            &[("function", f)],
            running,
        );
    }
    out.family(
        "skyscale_warm_sandboxes",
        "gauge",
        "Idle sandboxes of the function, ready for a warm start.",
    );
    for (f, (_, idle)) in &live {
        out.sample("skyscale_warm_sandboxes", &[("function", f)], idle);
    }
    out.family(
        "skyscale_sandboxes",
        "gauge",
        "Sandboxes on this host by state: idle (a function's, warm), busy (running or readying an invocation), generic (pre-booted), booting (generic, starting).",
    );
    for (state, n) in [
        ("idle", gauges.idle),
        ("busy", gauges.busy),
        ("generic", gauges.generic),
        ("booting", gauges.booting),
    ] {
        out.sample("skyscale_sandboxes", &[("state", state)], n);
    }
    let host: [(&str, &str, u64); 5] = [
        (
            "skyscale_sandboxes_max",
            "Most sandboxes alive at once (SKYSCALE_MAX_SANDBOXES).",
            gauges.max_sandboxes as u64,
        ),
        (
            "skyscale_warm_pool_target",
            "Generic sandboxes kept booted ahead of need (WARM_POOL_SIZE).",
            gauges.pool_target as u64,
        ),
        (
            "skyscale_warm_pool_size",
            "Generic sandboxes booted and ready now.",
            gauges.generic as u64,
        ),
        (
            "skyscale_memory_used_bytes",
            "Memory charged to live sandboxes (the sum of their memory sizes).",
            gauges.memory_used_mb * MIB,
        ),
        (
            "skyscale_memory_budget_bytes",
            "The sandboxes' memory budget (SKYSCALE_MEMORY_BUDGET_MB).",
            gauges.memory_budget_mb * MIB,
        ),
    ];
    for (name, help, value) in host {
        out.family(name, "gauge", help);
        out.sample(name, &[], value);
    }
    out.family(
        "skyscale_snapshot_bytes",
        "gauge",
        "Bytes of SnapStart snapshot images on this host.",
    );
    out.sample("skyscale_snapshot_bytes", &[], gauges.snapshot_bytes);
    let snapshots: [(&str, &str, u64); 2] = [
        (
            "skyscale_snapshot_restores_total",
            "Cold starts restored from a SnapStart snapshot.",
            gauges.snapshot_restores,
        ),
        (
            "skyscale_snapshot_restore_fallbacks_total",
            "SnapStart restores that failed and fell back to a normal cold start.",
            gauges.snapshot_fallbacks,
        ),
    ];
    for (name, help, value) in snapshots {
        out.family(name, "counter", help);
        out.sample(name, &[], value);
    }
    out.0
}

#[derive(Default)]
struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        // HELP text escapes `\` and newlines; ours has neither, but stay correct.
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", escape(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    fn histogram<'a>(
        &mut self,
        name: &str,
        help: &str,
        series: impl Iterator<Item = (&'a str, &'a Histogram)>,
    ) {
        self.family(name, "histogram", help);
        let (bucket, sum, count) = (
            format!("{name}_bucket"),
            format!("{name}_sum"),
            format!("{name}_count"),
        );
        for (f, h) in series {
            for (le, n) in h.cumulative() {
                let le = le.map_or_else(|| "+Inf".to_owned(), |s| s.to_string());
                self.sample(&bucket, &[("function", f), ("le", &le)], n);
            }
            self.sample(&sum, &[("function", f)], h.sum_seconds());
            self.sample(&count, &[("function", f)], h.count());
        }
    }
}

/// A label value as the format wants it.
fn escape(v: &str) -> Cow<'_, str> {
    if !v.contains(['\\', '"', '\n']) {
        return Cow::Borrowed(v);
    }
    let mut out = String::with_capacity(v.len() + 8);
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use skyscale_types::FunctionName;

    use super::super::tests::inv;
    use super::super::Metrics;
    use super::*;
    use crate::InvocationStatus;

    fn gauges() -> Gauges {
        Gauges {
            idle: 1,
            busy: 2,
            generic: 3,
            booting: 1,
            pool_target: 4,
            max_sandboxes: 256,
            memory_used_mb: 512,
            memory_budget_mb: 8192,
            functions: [(FunctionName::parse("f").unwrap(), (2, 1))].into(),
            ..Gauges::default()
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("ValueError"), "ValueError");
        assert_eq!(escape("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
    }

    #[test]
    fn exposition_is_well_formed() {
        let m = Metrics::default();
        m.record(&inv("f", InvocationStatus::Success, 2));
        let mut odd = inv("f", InvocationStatus::FunctionError, 3);
        odd.record.error_type = Some("Bad\"Type\\\nX".into());
        m.record(&odd);
        m.record(&inv("secret-fn", InvocationStatus::Success, 2));
        let text = render(&m.counters(), &gauges(), |n| n != "secret-fn");

        assert!(!text.contains("secret-fn"), "{text}");
        for line in [
            "# TYPE skyscale_invocations_total counter",
            r#"skyscale_invocations_total{function="f",status="success"} 1"#,
            r#"skyscale_invocations_total{function="f",status="throttled"} 0"#,
            r#"skyscale_errors_total{function="f",error_type="Bad\"Type\\\nX"} 1"#,
            "# TYPE skyscale_duration_seconds histogram",
            r#"skyscale_duration_seconds_bucket{function="f",le="0.0025"} 1"#,
            r#"skyscale_duration_seconds_bucket{function="f",le="0.005"} 2"#,
            r#"skyscale_duration_seconds_bucket{function="f",le="+Inf"} 2"#,
            r#"skyscale_duration_seconds_sum{function="f"} 0.005"#,
            r#"skyscale_duration_seconds_count{function="f"} 2"#,
            r#"skyscale_init_duration_seconds_count{function="f"} 0"#,
            r#"skyscale_concurrent_executions{function="f"} 2"#,
            r#"skyscale_warm_sandboxes{function="f"} 1"#,
            r#"skyscale_sandboxes{state="generic"} 3"#,
            "skyscale_warm_pool_target 4",
            "skyscale_memory_used_bytes 536870912",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        // Every family is announced once, before its samples, and every sample line has a
        // name, optional labels and a number.
        let mut announced = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap();
                assert!(announced.insert(name.to_owned()), "{name} twice");
                continue;
            }
            if line.starts_with("# HELP ") {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
            let name = series.split('{').next().unwrap();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|f| announced.contains(*f)))
                .unwrap_or(name);
            assert!(announced.contains(family), "{line} before its TYPE");
        }
    }

    #[test]
    fn buckets_cover_the_longest_timeout() {
        let mut h = Histogram::new(super::super::DURATION_BOUNDS_US);
        h.observe(Duration::from_secs(900));
        let below_inf: Vec<_> = h.cumulative().filter(|(le, _)| le.is_some()).collect();
        assert_eq!(below_inf.last(), Some(&(Some(900.0), 1)));
    }
}
