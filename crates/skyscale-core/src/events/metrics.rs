//! The queue's metrics: counters per function, fed by the enqueue and the dispatcher, and
//! the queue's depth, oldest age and dead letters as last read from the store (the
//! dispatcher reads them every few seconds, so a scrape does no query). Written in the
//! Prometheus text format after the invocation metrics.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use skyscale_store::QueueStats;

#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    received: u64,
    retries: u64,
    throttled: u64,
    dead_letters: u64,
    dropped: u64,
    age_sum: Duration,
    age_count: u64,
}

#[derive(Debug, Default)]
struct Inner {
    counters: BTreeMap<String, Counters>,
    queues: Vec<QueueStats>,
}

/// A metric family: name, help, and how to read its value.
type Family<T, V> = (&'static str, &'static str, fn(&T) -> V);

#[derive(Debug, Default)]
pub(crate) struct EventMetrics(Mutex<Inner>);

impl EventMetrics {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bump(&self, function: &str, f: impl FnOnce(&mut Counters)) {
        let mut inner = self.lock();
        if let Some(c) = inner.counters.get_mut(function) {
            f(c);
        } else {
            let mut c = Counters::default();
            f(&mut c);
            inner.counters.insert(function.to_owned(), c);
        }
    }

    /// An event was committed (Lambda's `AsyncEventsReceived`).
    pub fn received(&self, function: &str) {
        self.bump(function, |c| c.received += 1);
    }

    /// A failed attempt will be retried.
    pub fn retried(&self, function: &str) {
        self.bump(function, |c| c.retries += 1);
    }

    /// A try was throttled and will be retried (not counted as an attempt).
    pub fn throttled(&self, function: &str) {
        self.bump(function, |c| c.throttled += 1);
    }

    /// An event ended without a successful run (Lambda's `AsyncEventsDropped`); `dead`:
    /// it was kept as a dead letter (else a failure destination took its record).
    pub fn dropped(&self, function: &str, dead: bool) {
        self.bump(function, |c| {
            c.dropped += 1;
            c.dead_letters += u64::from(dead);
        });
    }

    /// An event was handed to its function this long after it was accepted (Lambda's
    /// `AsyncEventAge`).
    pub fn age(&self, function: &str, age: Duration) {
        self.bump(function, |c| {
            c.age_sum += age;
            c.age_count += 1;
        });
    }

    pub fn set_queues(&self, queues: Vec<QueueStats>) {
        self.lock().queues = queues;
    }

    /// A deleted function's counters go (its queue rows are dead letters now).
    pub fn forget(&self, function: &str) {
        self.lock().counters.remove(function);
    }

    /// The Prometheus text of the series of the functions `visible` accepts.
    pub fn render(&self, visible: impl Fn(&str) -> bool) -> String {
        let inner = self.lock();
        let mut out = String::new();
        let counters: Vec<(&String, &Counters)> =
            inner.counters.iter().filter(|(f, _)| visible(f)).collect();
        let family = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        let label = |f: &str| f.replace('\\', "\\\\").replace('"', "\\\"");
        let counter_families: [Family<Counters, u64>; 5] = [
            (
                "skyscale_async_events_received_total",
                "Asynchronous events committed to the queue (AsyncEventsReceived).",
                |c| c.received,
            ),
            (
                "skyscale_async_retries_total",
                "Failed attempts of asynchronous events that were retried.",
                |c| c.retries,
            ),
            (
                "skyscale_async_throttles_total",
                "Tries of asynchronous events that were throttled and put back (not attempts).",
                |c| c.throttled,
            ),
            (
                "skyscale_async_events_dropped_total",
                "Asynchronous events that ended without a successful run (AsyncEventsDropped).",
                |c| c.dropped,
            ),
            (
                "skyscale_async_dead_letters_total",
                "Asynchronous events that became dead letters.",
                |c| c.dead_letters,
            ),
        ];
        for (name, help, value) in counter_families {
            family(&mut out, name, "counter", help);
            for (f, c) in &counters {
                let _ = writeln!(out, "{name}{{function=\"{}\"}} {}", label(f), value(c));
            }
        }
        let name = "skyscale_async_event_age_seconds";
        family(
            &mut out,
            name,
            "summary",
            "Time from acceptance until an asynchronous event was handed to its function (AsyncEventAge).",
        );
        for (f, c) in &counters {
            let _ = writeln!(
                out,
                "{name}_sum{{function=\"{}\"}} {}\n{name}_count{{function=\"{}\"}} {}",
                label(f),
                c.age_sum.as_secs_f64(),
                label(f),
                c.age_count
            );
        }
        // Every function with counters has gauges, 0 when its queue is empty (the store
        // only knows functions with rows).
        let mut queues: BTreeMap<&str, QueueStats> = counters
            .iter()
            .map(|(f, _)| {
                let empty = QueueStats {
                    function: (*f).clone(),
                    queued: 0,
                    oldest_age_ms: 0,
                    dead: 0,
                };
                (f.as_str(), empty)
            })
            .collect();
        for q in inner.queues.iter().filter(|q| visible(&q.function)) {
            queues.insert(q.function.as_str(), q.clone());
        }
        let queues: Vec<&QueueStats> = queues.values().collect();
        let gauges: [Family<QueueStats, f64>; 3] = [
            (
                "skyscale_async_queue_depth",
                "Asynchronous events queued (waiting, running or to be retried).",
                |q| q.queued as f64,
            ),
            (
                "skyscale_async_queue_oldest_age_seconds",
                "Age of the oldest queued asynchronous event.",
                |q| q.oldest_age_ms as f64 / 1000.0,
            ),
            ("skyscale_async_dead_letters", "Dead letters kept.", |q| {
                q.dead as f64
            }),
        ];
        for (name, help, value) in gauges {
            family(&mut out, name, "gauge", help);
            for q in &queues {
                let _ = writeln!(
                    out,
                    "{name}{{function=\"{}\"}} {}",
                    label(&q.function),
                    value(q)
                );
            }
        }
        out
    }
}
