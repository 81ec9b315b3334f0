//! Per-function metrics, kept in memory and updated from every observed invocation
//! ([`ControlPlane::observe`]): counters (invocations by status, errors by type, throttles by
//! reason, cold starts, response bytes), histograms of run and init durations, and a bounded
//! window of recent samples for exact percentiles over a `since` window. Live gauges
//! (invocations running, warm sandboxes, the pool, memory) are read from the scheduler when
//! asked; [`exposition`] writes everything in the Prometheus text format.
//!
//! Cost on the invoke path: one `std::sync::Mutex` held for a hash lookup by the function's
//! name, a few additions, a bucket search over ~20 integers and a push into a ring. Nothing
//! is allocated but on a function's (or an error type's) first sight and when the ring grows
//! (amortised; it stops growing at its bound).
//!
//! Memory: per function, the counters (a few hundred bytes) and at most [`WINDOW_SAMPLES`]
//! samples of 32 bytes; at most [`MAX_ERROR_TYPES`] error types each (error types come from
//! user code). A deleted function's metrics are dropped.

mod exposition;

pub use exposition::CONTENT_TYPE as PROMETHEUS_CONTENT_TYPE;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use skyscale_types::metrics::{FunctionMetrics, Percentiles};

use crate::auth::{Action, Principal};
use crate::observe::Invocation;
use crate::InvocationStatus;
use skyscale_types::time::{epoch_ms, rfc3339};

use crate::since::parse_since;
use crate::{ControlPlane, CoreError};

/// Most samples kept per function for windowed percentiles.
pub(crate) const WINDOW_SAMPLES: usize = 10_000;
/// Samples older than this are dropped.
pub(crate) const WINDOW_AGE: Duration = Duration::from_secs(24 * 3600);
/// The window of `function_metrics` when no `since` is given.
const DEFAULT_SINCE: Duration = Duration::from_secs(3600);
/// Distinct error (or throttle) types counted per function; later ones count as
/// [`OTHER_TYPE`].
const MAX_ERROR_TYPES: usize = 64;
/// Longer error types are cut to this many bytes (at a character boundary).
const MAX_ERROR_TYPE_LEN: usize = 128;
/// Where error types beyond [`MAX_ERROR_TYPES`] are counted.
const OTHER_TYPE: &str = "(other)";
/// The type of an error that came without one.
const UNKNOWN_TYPE: &str = "(unknown)";

/// Upper bounds of the run-duration buckets, µs (`+Inf` follows): 0.5 ms to 15 min.
const DURATION_BOUNDS_US: &[u64] = &[
    500,
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    30_000_000,
    60_000_000,
    300_000_000,
    900_000_000,
];
/// Upper bounds of the init-duration buckets, µs: 10 ms to 30 s.
const INIT_BOUNDS_US: &[u64] = &[
    10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000,
    30_000_000,
];

/// Every status, in the order of [`Counters::by_status`].
pub(crate) const STATUSES: [InvocationStatus; 5] = [
    InvocationStatus::Success,
    InvocationStatus::FunctionError,
    InvocationStatus::Timeout,
    InvocationStatus::Throttled,
    InvocationStatus::Crashed,
];

fn status_index(s: InvocationStatus) -> usize {
    match s {
        InvocationStatus::Success => 0,
        InvocationStatus::FunctionError => 1,
        InvocationStatus::Timeout => 2,
        InvocationStatus::Throttled => 3,
        InvocationStatus::Crashed => 4,
    }
}

/// A Prometheus-style histogram: counts per bucket (not cumulative; the exposition adds
/// them up), their sum and count.
#[derive(Debug, Clone)]
pub(crate) struct Histogram {
    /// Upper bounds, µs; the last bucket (`+Inf`) has none.
    bounds_us: &'static [u64],
    counts: Box<[u64]>,
    sum_us: u64,
    count: u64,
}

impl Histogram {
    fn new(bounds_us: &'static [u64]) -> Self {
        Self {
            bounds_us,
            counts: vec![0; bounds_us.len() + 1].into_boxed_slice(),
            sum_us: 0,
            count: 0,
        }
    }

    fn observe(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        // The first bucket whose bound is at least the value (`le` is inclusive).
        let i = self.bounds_us.partition_point(|&b| b < us);
        self.counts[i] += 1;
        self.sum_us = self.sum_us.saturating_add(us);
        self.count += 1;
    }

    /// `(upper bound in seconds, cumulative count)` per bucket, `+Inf` (`None`) last.
    pub fn cumulative(&self) -> impl Iterator<Item = (Option<f64>, u64)> + '_ {
        let bounds = self
            .bounds_us
            .iter()
            .map(|&b| Some(b as f64 / 1e6))
            .chain([None]);
        bounds.zip(self.counts.iter().scan(0u64, |acc, &n| {
            *acc += n;
            Some(*acc)
        }))
    }

    pub fn sum_seconds(&self) -> f64 {
        self.sum_us as f64 / 1e6
    }

    pub fn count(&self) -> u64 {
        self.count
    }
}

/// A function's counters since the control plane started (or since it was re-created).
#[derive(Debug, Clone)]
pub(crate) struct Counters {
    /// Invocations by status, in the order of [`STATUSES`].
    pub by_status: [u64; 5],
    /// Function errors, timeouts and crashes by error type.
    pub errors: Vec<(Box<str>, u64)>,
    /// Throttled invocations by the limit's reason.
    pub throttles: Vec<(Box<str>, u64)>,
    pub cold_starts: u64,
    pub response_bytes: u64,
    /// Run time of each invocation that reached a sandbox.
    pub duration: Histogram,
    /// Getting the sandbox ready, on each cold start.
    pub init: Histogram,
}

impl Counters {
    fn new() -> Self {
        Self {
            by_status: [0; 5],
            errors: Vec::new(),
            throttles: Vec::new(),
            cold_starts: 0,
            response_bytes: 0,
            duration: Histogram::new(DURATION_BOUNDS_US),
            init: Histogram::new(INIT_BOUNDS_US),
        }
    }
}

/// Counts one more of `ty` in `list` and returns its index. Types beyond
/// [`MAX_ERROR_TYPES`] are counted as [`OTHER_TYPE`].
fn count_type(list: &mut Vec<(Box<str>, u64)>, ty: &str) -> usize {
    let ty = cut(ty, MAX_ERROR_TYPE_LEN);
    let i = match list.iter().position(|(t, _)| &**t == ty) {
        Some(i) => i,
        None if list.len() < MAX_ERROR_TYPES => {
            list.push((ty.into(), 0));
            list.len() - 1
        }
        None => match list.iter().position(|(t, _)| &**t == OTHER_TYPE) {
            Some(i) => i,
            None => {
                list.push((OTHER_TYPE.into(), 0));
                list.len() - 1
            }
        },
    };
    list[i].1 += 1;
    i
}

/// The longest prefix of `s` of at most `max` bytes that ends at a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// One invocation as the window keeps it.
#[derive(Debug, Clone, Copy)]
struct Sample {
    ended_ms: u64,
    duration_us: u32,
    /// [`NO_INIT`] for a warm start.
    init_us: u32,
    max_memory_mb: u32,
    /// 1 + the index of its error type in [`Counters::errors`]; 0 for none.
    error: u16,
    status: u8,
    /// It reached a sandbox (its duration counts).
    ran: bool,
    cold: bool,
}

const NO_INIT: u32 = u32::MAX;

/// The newest samples of one function: at most [`WINDOW_SAMPLES`], none older than
/// [`WINDOW_AGE`] (checked on each push and each summary).
#[derive(Debug, Default)]
struct Window {
    samples: VecDeque<Sample>,
    /// The end of the newest sample dropped so far, ms since the epoch: a window that
    /// starts at or before it is incomplete.
    dropped_until_ms: u64,
}

impl Window {
    fn push(&mut self, s: Sample) {
        self.prune(s.ended_ms, WINDOW_SAMPLES - 1);
        self.samples.push_back(s);
    }

    /// Drops samples older than [`WINDOW_AGE`] before `now_ms`, and the oldest ones until
    /// at most `keep` are left.
    fn prune(&mut self, now_ms: u64, keep: usize) {
        let horizon = now_ms.saturating_sub(WINDOW_AGE.as_millis() as u64);
        while let Some(front) = self.samples.front() {
            if self.samples.len() <= keep && front.ended_ms >= horizon {
                break;
            }
            self.dropped_until_ms = self.dropped_until_ms.max(front.ended_ms);
            self.samples.pop_front();
        }
    }
}

#[derive(Debug)]
struct FunctionStats {
    counters: Counters,
    window: Window,
}

impl FunctionStats {
    fn new() -> Self {
        Self {
            counters: Counters::new(),
            window: Window::default(),
        }
    }

    fn record(&mut self, inv: &Invocation) {
        let c = &mut self.counters;
        let rec = &inv.record;
        c.by_status[status_index(rec.status)] += 1;
        // A refused invocation never started: no logs, no duration.
        let ran = !inv.logs.is_empty();
        let mut error = 0;
        match rec.status {
            InvocationStatus::Success => {}
            InvocationStatus::Throttled => {
                count_type(
                    &mut c.throttles,
                    rec.error_type.as_deref().unwrap_or(UNKNOWN_TYPE),
                );
            }
            InvocationStatus::FunctionError
            | InvocationStatus::Timeout
            | InvocationStatus::Crashed => {
                let i = count_type(
                    &mut c.errors,
                    rec.error_type.as_deref().unwrap_or(UNKNOWN_TYPE),
                );
                error = u16::try_from(i + 1).unwrap_or(0);
            }
        }
        if rec.cold_start {
            c.cold_starts += 1;
        }
        c.response_bytes += rec.response_bytes;
        if ran {
            c.duration.observe(rec.duration);
        }
        if let Some(init) = rec.init_duration {
            c.init.observe(init);
        }
        let micros = |d: Duration| u32::try_from(d.as_micros()).unwrap_or(u32::MAX - 1);
        self.window.push(Sample {
            ended_ms: epoch_ms(rec.ended_at),
            duration_us: micros(rec.duration),
            init_us: rec.init_duration.map_or(NO_INIT, micros),
            max_memory_mb: u32::try_from(rec.max_memory_used_mb).unwrap_or(u32::MAX),
            error,
            status: status_index(rec.status) as u8,
            ran,
            cold: rec.cold_start,
        });
    }
}

/// Every function's metrics.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    functions: Mutex<HashMap<String, FunctionStats>>,
}

/// What the window holds between two times (see [`Metrics::summary`]).
#[derive(Debug, Default)]
pub(crate) struct Summary {
    pub complete: bool,
    pub by_status: [u64; 5],
    pub errors_by_type: BTreeMap<String, u64>,
    pub cold_starts: u64,
    pub duration: Option<Percentiles>,
    pub init: Option<Percentiles>,
    pub max_memory_used_mb: Option<u64>,
}

impl Metrics {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, FunctionStats>> {
        // Every critical section leaves the counters consistent: a poisoned lock is fine.
        self.functions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts one invocation.
    pub fn record(&self, inv: &Invocation) {
        let mut functions = self.lock();
        if let Some(stats) = functions.get_mut(inv.record.function.as_str()) {
            stats.record(inv);
            return;
        }
        functions
            .entry(inv.record.function.clone())
            .or_insert_with(FunctionStats::new)
            .record(inv);
    }

    /// Drops a deleted function's metrics.
    pub fn forget(&self, function: &str) {
        self.lock().remove(function);
    }

    /// Every function's counters, by name.
    pub fn counters(&self) -> Vec<(String, Counters)> {
        let mut all: Vec<(String, Counters)> = self
            .lock()
            .iter()
            .map(|(name, s)| (name.clone(), s.counters.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// The invocations of `function` that ended between `since` and `now`.
    pub fn summary(&self, function: &str, since: SystemTime, now: SystemTime) -> Summary {
        let (since_ms, now_ms) = (epoch_ms(since), epoch_ms(now));
        let mut summary = Summary {
            complete: true,
            ..Summary::default()
        };
        let mut durations = Vec::new();
        let mut inits = Vec::new();
        {
            let mut functions = self.lock();
            let Some(stats) = functions.get_mut(function) else {
                return summary;
            };
            stats.window.prune(now_ms, WINDOW_SAMPLES);
            summary.complete = stats.window.dropped_until_ms < since_ms;
            let mut errors = vec![0u64; stats.counters.errors.len()];
            for s in stats
                .window
                .samples
                .iter()
                .filter(|s| s.ended_ms >= since_ms)
            {
                summary.by_status[usize::from(s.status)] += 1;
                if let Some(n) = usize::from(s.error)
                    .checked_sub(1)
                    .and_then(|i| errors.get_mut(i))
                {
                    *n += 1;
                }
                if s.ran {
                    durations.push(s.duration_us);
                    summary.max_memory_used_mb = summary
                        .max_memory_used_mb
                        .max(Some(u64::from(s.max_memory_mb)));
                }
                if s.cold {
                    summary.cold_starts += 1;
                }
                if s.init_us != NO_INIT {
                    inits.push(s.init_us);
                }
            }
            summary.errors_by_type = stats
                .counters
                .errors
                .iter()
                .zip(errors)
                .filter(|(_, n)| *n > 0)
                .map(|((ty, _), n)| (ty.to_string(), n))
                .collect();
        }
        summary.duration = percentiles(&mut durations);
        summary.init = percentiles(&mut inits);
        summary
    }
}

/// Exact percentiles of durations in µs, by nearest rank: the p-th percentile of n sorted
/// values is the value at rank ⌈p·n/100⌉ (1-based), so it is always one of the values.
fn percentiles(values_us: &mut [u32]) -> Option<Percentiles> {
    if values_us.is_empty() {
        return None;
    }
    values_us.sort_unstable();
    let n = values_us.len();
    let at = |p: usize| {
        let rank = (p * n).div_ceil(100).max(1);
        f64::from(values_us[rank - 1]) / 1000.0
    };
    Some(Percentiles {
        count: n as u64,
        p50: at(50),
        p90: at(90),
        p99: at(99),
        max: at(100),
    })
}

impl ControlPlane {
    /// Every metric in the Prometheus text format (0.0.4): the per-function series of the
    /// functions `by` may see, and the host's gauges. Admin and developer keys.
    pub fn prometheus_metrics(&self, by: &Principal) -> Result<String, CoreError> {
        by.authorize(Action::ReadMetrics, None)?;
        let counters = self.metrics.counters();
        let gauges = self
            .scheduler
            .as_ref()
            .map(|s| s.gauges())
            .unwrap_or_default();
        let visible =
            |name: &str| skyscale_types::FunctionName::parse(name).is_ok_and(|n| by.may_see(&n));
        let mut text = exposition::render(&counters, &gauges, visible);
        text.push_str(&self.events.metrics.render(visible));
        text.push_str(&self.deps_builds.render());
        text.push_str(&self.render_provisioned_metrics(visible));
        if let crate::Cluster::Api(node) = &self.cluster {
            text.push_str(&node.render_metrics());
        }
        Ok(text)
    }

    /// A function's invocations since `since` (relative such as `10m`, or RFC 3339; the
    /// last hour by default) and its live state.
    pub async fn function_metrics(
        &self,
        by: &Principal,
        name: &str,
        since: Option<&str>,
    ) -> Result<FunctionMetrics, CoreError> {
        let name = self.authorize_on(by, Action::ReadFunction, name)?;
        let now = SystemTime::now();
        let since = match since {
            Some(s) => parse_since(s, now)?,
            None => now
                .checked_sub(DEFAULT_SINCE)
                .unwrap_or(SystemTime::UNIX_EPOCH),
        };
        // A function that does not exist is a 404, not a page of zeros.
        self.function_record(name.as_str()).await?;
        let s = self.metrics.summary(name.as_str(), since, now);
        let (running, idle) = self
            .scheduler
            .as_ref()
            .map_or((0, 0), |s| s.function_gauges(&name));
        let [successes, function_errors, timeouts, throttles, crashes] = s.by_status;
        Ok(FunctionMetrics {
            function: name.to_string(),
            since: rfc3339(since),
            until: rfc3339(now),
            complete: s.complete,
            invocations: s.by_status.iter().sum(),
            successes,
            function_errors,
            timeouts,
            crashes,
            throttles,
            errors_by_type: s.errors_by_type,
            cold_starts: s.cold_starts,
            duration_ms: s.duration,
            init_duration_ms: s.init,
            max_memory_used_mb: s.max_memory_used_mb,
            concurrent_executions: running,
            warm_sandboxes: idle,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Trigger;
    use skyscale_store::InvocationRecord;

    pub(super) fn inv(function: &str, status: InvocationStatus, ms: u64) -> Invocation {
        let ended_at = SystemTime::now();
        let throttled = status == InvocationStatus::Throttled;
        Invocation {
            record: InvocationRecord {
                request_id: "r".into(),
                function: function.into(),
                version: "$LATEST".into(),
                caller: None,
                trigger: Trigger::Sync,
                started_at: ended_at,
                ended_at,
                status,
                error_type: match status {
                    InvocationStatus::Success => None,
                    InvocationStatus::FunctionError => Some("ValueError".into()),
                    InvocationStatus::Timeout => Some("Sandbox.Timedout".into()),
                    InvocationStatus::Throttled => Some("reserved_concurrency".into()),
                    InvocationStatus::Crashed => Some("Runtime.ExitError".into()),
                },
                cold_start: false,
                init_type: Default::default(),
                queue_wait: Duration::ZERO,
                init_duration: None,
                duration: Duration::from_millis(ms),
                max_memory_used_mb: 40,
                memory_size_mb: 128,
                response_bytes: 10,
                event: None,
            },
            logs: if throttled {
                String::new()
            } else {
                "START".into()
            },
        }
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut v: Vec<u32> = (1..=100).map(|ms| ms * 1000).collect();
        v.reverse();
        let p = percentiles(&mut v).unwrap();
        assert_eq!(
            (p.count, p.p50, p.p90, p.p99, p.max),
            (100, 50.0, 90.0, 99.0, 100.0)
        );

        let mut one = vec![1500];
        let p = percentiles(&mut one).unwrap();
        assert_eq!((p.p50, p.p90, p.p99, p.max), (1.5, 1.5, 1.5, 1.5));

        // Ten values: p50 is the 5th, p90 the 9th, p99 the 10th.
        let mut ten: Vec<u32> = (1..=10).map(|ms| ms * 1000).collect();
        let p = percentiles(&mut ten).unwrap();
        assert_eq!((p.p50, p.p90, p.p99), (5.0, 9.0, 10.0));

        assert!(percentiles(&mut []).is_none());
    }

    #[test]
    fn histogram_buckets_are_inclusive_and_cumulative() {
        let mut h = Histogram::new(&[1_000, 10_000]);
        for us in [0, 1_000, 1_001, 10_000, 20_000] {
            h.observe(Duration::from_micros(us));
        }
        let buckets: Vec<_> = h.cumulative().collect();
        assert_eq!(
            buckets,
            [(Some(0.001), 2), (Some(0.01), 4), (None, 5)],
            "le is inclusive, counts add up"
        );
        assert_eq!(h.count(), 5);
        assert!((h.sum_seconds() - 0.032001).abs() < 1e-9);
    }

    #[test]
    fn counters_and_windows_follow_the_invocations() {
        let m = Metrics::default();
        let mut cold = inv("f", InvocationStatus::Success, 100);
        cold.record.cold_start = true;
        cold.record.init_duration = Some(Duration::from_millis(300));
        m.record(&cold);
        for ms in [1, 2, 3, 4] {
            m.record(&inv("f", InvocationStatus::Success, ms));
        }
        m.record(&inv("f", InvocationStatus::FunctionError, 5));
        m.record(&inv("f", InvocationStatus::FunctionError, 6));
        m.record(&inv("f", InvocationStatus::Timeout, 1000));
        m.record(&inv("f", InvocationStatus::Throttled, 0));
        m.record(&inv("g", InvocationStatus::Success, 1));

        let all = m.counters();
        assert_eq!(all.len(), 2);
        let (name, c) = &all[0];
        assert_eq!(name, "f");
        assert_eq!(c.by_status, [5, 2, 1, 1, 0]);
        assert_eq!(
            c.errors,
            [("ValueError".into(), 2), ("Sandbox.Timedout".into(), 1)]
        );
        assert_eq!(c.throttles, [("reserved_concurrency".into(), 1)]);
        assert_eq!(c.cold_starts, 1);
        // The throttled one never ran: 8 durations, 1 init.
        assert_eq!(c.duration.count(), 8);
        assert_eq!(c.init.count(), 1);

        let now = SystemTime::now() + Duration::from_secs(1);
        let s = m.summary("f", now - Duration::from_secs(60), now);
        assert!(s.complete);
        assert_eq!(s.by_status, [5, 2, 1, 1, 0]);
        assert_eq!(
            s.errors_by_type,
            BTreeMap::from([("Sandbox.Timedout".into(), 1), ("ValueError".into(), 2)])
        );
        assert_eq!(s.cold_starts, 1);
        let d = s.duration.unwrap();
        assert_eq!((d.count, d.p50, d.max), (8, 4.0, 1000.0));
        assert_eq!(s.init.unwrap().p99, 300.0);
        assert_eq!(s.max_memory_used_mb, Some(40));

        // A window that starts later holds nothing.
        let later = m.summary("f", now, now);
        assert_eq!(later.by_status, [0; 5]);
        assert!(later.duration.is_none());

        m.forget("f");
        assert_eq!(m.counters().len(), 1);
        assert_eq!(
            m.summary("f", SystemTime::UNIX_EPOCH, now).by_status,
            [0; 5]
        );
    }

    #[test]
    fn the_window_is_bounded_and_says_when_it_lost_samples() {
        let mut w = Window::default();
        let base = 1_000_000_000u64;
        for i in 0..(WINDOW_SAMPLES as u64 + 5) {
            w.push(Sample {
                ended_ms: base + i,
                duration_us: 1,
                init_us: NO_INIT,
                max_memory_mb: 0,
                error: 0,
                status: 0,
                ran: true,
                cold: false,
            });
        }
        assert_eq!(w.samples.len(), WINDOW_SAMPLES);
        assert_eq!(w.samples.front().unwrap().ended_ms, base + 5);
        assert_eq!(w.dropped_until_ms, base + 4);
        // A day later everything has aged out.
        w.prune(
            base + WINDOW_AGE.as_millis() as u64 + 10_006,
            WINDOW_SAMPLES,
        );
        assert!(w.samples.is_empty());
    }

    #[test]
    fn error_types_are_bounded() {
        let mut list = Vec::new();
        for i in 0..(MAX_ERROR_TYPES + 10) {
            count_type(&mut list, &format!("E{i}"));
        }
        assert_eq!(list.len(), MAX_ERROR_TYPES + 1);
        assert_eq!(list.last().unwrap(), &(OTHER_TYPE.into(), 10));
        let long = "é".repeat(100);
        let mut list = Vec::new();
        count_type(&mut list, &long);
        assert!(list[0].0.len() <= MAX_ERROR_TYPE_LEN && long.starts_with(&*list[0].0));
    }
}
