//! The platform's own log lines around each invocation (lambda-compatibility.md §10):
//!
//! ```text
//! START RequestId: <id> Version: $LATEST
//! <what the function printed>
//! <ts> <id> Task timed out after 3.00 seconds      (timeouts only)
//! END RequestId: <id>
//! REPORT RequestId: <id>\tDuration: 12.34 ms\tBilled Duration: 13 ms\tMemory Size: 128 MB\tMax Memory Used: 56 MB\tInit Duration: 130.49 ms\t
//! ```
//!
//! `Init Duration` is there on cold starts only, last, as the real service prints it. What a
//! runtime printed while it initialised comes before `START`, as in CloudWatch.

use std::time::Duration;

/// Bytes of the log tail returned with an invocation (Lambda's `X-Amz-Log-Result`).
pub const TAIL_BYTES: usize = 4096;

/// What the `REPORT` line says about one invocation.
#[derive(Debug, Clone)]
pub struct Report<'a> {
    pub request_id: &'a str,
    pub version: &'a str,
    pub duration: Duration,
    pub memory_mb: u32,
    /// Peak resident memory of the runtime process, KiB (0 when unknown).
    pub max_rss_kb: u64,
    /// Set on cold starts.
    pub init_duration: Option<Duration>,
    /// The cold start restored a snapshot (SnapStart): `init_duration` is printed as
    /// Lambda's `Restore Duration`.
    pub restored: bool,
    /// The `Task timed out after …` line, on timeouts.
    pub timeout_line: Option<&'a str>,
}

/// Milliseconds with two decimals, e.g. `12.34`.
fn ms2(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

/// `init` (what the runtime printed while it initialised, possibly empty), then `START`, the
/// invocation's output, the timeout line if any, `END` and `REPORT`, each on its own line.
pub fn frame(init: &str, output: &str, r: &Report<'_>) -> String {
    let mut s = String::with_capacity(init.len() + output.len() + 256);
    push_line(&mut s, init);
    s.push_str(&format!(
        "START RequestId: {} Version: {}\n",
        r.request_id, r.version
    ));
    push_line(&mut s, output);
    if let Some(line) = r.timeout_line {
        push_line(&mut s, line);
    }
    s.push_str(&format!("END RequestId: {}\n", r.request_id));
    let billed_ms = r.duration.as_nanos().div_ceil(1_000_000);
    let used_mb = r.max_rss_kb.div_ceil(1024);
    s.push_str(&format!(
        "REPORT RequestId: {}\tDuration: {} ms\tBilled Duration: {billed_ms} ms\tMemory Size: {} MB\tMax Memory Used: {used_mb} MB\t",
        r.request_id,
        ms2(r.duration),
        r.memory_mb,
    ));
    match (r.init_duration, r.restored) {
        (Some(restore), true) => s.push_str(&format!("Restore Duration: {} ms\t", ms2(restore))),
        (Some(init), false) => s.push_str(&format!("Init Duration: {} ms\t", ms2(init))),
        (None, _) => {}
    }
    s.push('\n');
    s
}

/// Appends `text`, ending it with a newline if it lacks one.
fn push_line(s: &mut String, text: &str) {
    if text.is_empty() {
        return;
    }
    s.push_str(text);
    if !text.ends_with('\n') {
        s.push('\n');
    }
}

/// The last `max` bytes of `logs` (whole if shorter), starting at a character boundary.
pub fn tail(logs: &str, max: usize) -> &str {
    let mut start = logs.len().saturating_sub(max);
    while !logs.is_char_boundary(start) {
        start += 1;
    }
    &logs[start..]
}

/// What an invoke answers of its logs when asked (Lambda's `X-Amz-Log-Result`, `/v1`'s
/// `x-skyscale-log-result`, both base64 of this): the last [`TAIL_BYTES`].
pub fn invocation_tail(logs: &str) -> &str {
    tail(logs, TAIL_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(init: Option<Duration>, timeout_line: Option<&str>) -> Report<'_> {
        Report {
            request_id: "r1",
            version: "$LATEST",
            duration: Duration::from_micros(12_341),
            memory_mb: 128,
            max_rss_kb: 56 * 1024 - 100,
            init_duration: init,
            restored: false,
            timeout_line,
        }
    }

    #[test]
    fn a_restore_reports_its_restore_duration() {
        let r = Report {
            restored: true,
            ..report(Some(Duration::from_micros(370_120)), None)
        };
        let s = frame("", "", &r);
        assert!(
            s.ends_with("Max Memory Used: 56 MB\tRestore Duration: 370.12 ms\t\n"),
            "{s}"
        );
        assert!(!s.contains("Init Duration"), "{s}");
    }

    #[test]
    fn warm_invocation() {
        assert_eq!(
            frame("", "hello\n", &report(None, None)),
            "START RequestId: r1 Version: $LATEST\nhello\nEND RequestId: r1\n\
             REPORT RequestId: r1\tDuration: 12.34 ms\tBilled Duration: 13 ms\t\
             Memory Size: 128 MB\tMax Memory Used: 56 MB\t\n"
        );
    }

    #[test]
    fn cold_start_has_init_output_first_and_init_duration_last() {
        let s = frame(
            "loading",
            "",
            &report(Some(Duration::from_micros(130_494)), None),
        );
        assert_eq!(
            s,
            "loading\nSTART RequestId: r1 Version: $LATEST\nEND RequestId: r1\n\
             REPORT RequestId: r1\tDuration: 12.34 ms\tBilled Duration: 13 ms\t\
             Memory Size: 128 MB\tMax Memory Used: 56 MB\tInit Duration: 130.49 ms\t\n"
        );
    }

    #[test]
    fn timeout_line_comes_before_end() {
        let line = "2026-01-01T00:00:00.000Z r1 Task timed out after 3.00 seconds";
        let s = frame("", "working\n", &report(None, Some(line)));
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[1], "working");
        assert_eq!(lines[2], line);
        assert_eq!(lines[3], "END RequestId: r1");
        assert!(lines[4].starts_with("REPORT RequestId: r1\t"));
    }

    #[test]
    fn billed_duration_rounds_up_and_exact_ms_stay() {
        let mut r = report(None, None);
        r.duration = Duration::from_millis(5);
        assert!(frame("", "", &r).contains("Duration: 5.00 ms\tBilled Duration: 5 ms\t"));
        r.duration = Duration::from_nanos(1);
        assert!(frame("", "", &r).contains("Billed Duration: 1 ms\t"));
    }

    #[test]
    fn tail_keeps_the_end_on_a_char_boundary() {
        assert_eq!(tail("abc", 10), "abc");
        assert_eq!(tail("abcdef", 3), "def");
        // 'é' is two bytes: a cut in its middle moves past it.
        assert_eq!(tail("aéb", 2), "b");
        assert_eq!(tail("aéb", 3), "éb");
        assert_eq!(invocation_tail("hi"), "hi");
        assert_eq!(invocation_tail(&"x".repeat(5000)).len(), TAIL_BYTES);
    }
}
