//! Asynchronous invocation figures: how long an async invoke takes until its 202 (the event
//! committed to SQLite), and how many events per second the queue carries from the first
//! accept until the last one is done. `skyscale-bench --events N` measures only these, beside
//! their reference from the same daemon in the same run: the same number of synchronous
//! invocations of the same function, one after the other on one connection.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use hyper::header::{HeaderName, HeaderValue};
use hyper::Method;
use serde::Serialize;

use crate::daemon::Daemon;
use crate::stats::Summary;

/// The daemon's settings of the queue that `--events` passes through from the bench's own
/// environment (the daemons otherwise start with a clean one).
pub const SETTINGS: &[&str] = &[
    "SKYSCALE_ASYNC_CONCURRENCY",
    "SKYSCALE_ASYNC_LEASE",
    "WARM_POOL_SIZE",
];

/// What one driver's daemon measured.
#[derive(Debug, Clone, Serialize)]
pub struct AsyncFigures {
    pub driver: String,
    pub events: usize,
    /// Accept latency, µs: request sent until the 202 read, one keep-alive connection.
    pub accept_us: Option<Summary>,
    /// Events per second from the first accept until the queue was empty.
    pub throughput_per_s: f64,
    /// The reference: synchronous invocations of the same warm function, µs each.
    pub sync_us: Option<Summary>,
    /// Synchronous invocations per second, one connection.
    pub sync_per_s: f64,
}

impl AsyncFigures {
    /// The figures beside their reference, for the terminal.
    pub fn table(&self) -> String {
        let q = |s: &Option<Summary>| {
            s.as_ref().map_or("n/a".to_owned(), |s| {
                format!("{:.0} / {:.0} µs", s.p50, s.p99)
            })
        };
        let ratio = match (&self.accept_us, &self.sync_us) {
            (Some(a), Some(s)) if s.p50 > 0.0 => format!("{:.2}×", a.p50 / s.p50),
            _ => "n/a".to_owned(),
        };
        format!(
            "ASYNC — {} events, {}\n  accept until 202 p50 / p99: {}   (sync invoke p50 / p99: {}; accept p50 vs sync p50: {ratio})\n  \
             throughput accept → done: {:.0} events/s   (sync, one connection: {:.0} inv/s; {:.2}×)\n",
            self.events,
            self.driver,
            q(&self.accept_us),
            q(&self.sync_us),
            self.throughput_per_s,
            self.sync_per_s,
            if self.sync_per_s > 0.0 { self.throughput_per_s / self.sync_per_s } else { 0.0 },
        )
    }
}

/// Accepts `n` events for a hello-world function, one after the other, then waits until the
/// queue is empty.
pub async fn measure(daemon: &Daemon, n: usize) -> anyhow::Result<AsyncFigures> {
    let mut conn = daemon.conn().await?;
    daemon.create_hello(&mut conn, "async-hello").await?;
    // One synchronous call first: the cold start is not the queue's cost.
    let r = conn
        .post(
            "/v1/functions/async-hello/invoke",
            Bytes::from_static(b"{}"),
        )
        .await?;
    if r.status != 200 {
        bail!(
            "warming async-hello: HTTP {} {}",
            r.status,
            r.body_excerpt()
        );
    }
    let event = [(
        HeaderName::from_static("x-skyscale-invocation-type"),
        HeaderValue::from_static("Event"),
    )];
    let payload = Bytes::from_static(br#"{"name": "bench"}"#);
    let mut accept = Vec::with_capacity(n);
    let started = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        let r = conn
            .send(
                Method::POST,
                "/v1/functions/async-hello/invoke",
                &event,
                payload.clone(),
            )
            .await?;
        accept.push(t.elapsed().as_secs_f64() * 1e6);
        if r.status != 202 {
            bail!("async invoke: HTTP {} {}", r.status, r.body_excerpt());
        }
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let r = conn.get("/v1/functions/async-hello/events?limit=1").await?;
        let v: serde_json::Value =
            serde_json::from_slice(&r.body).context("reading the event list")?;
        if v["events"].as_array().is_some_and(Vec::is_empty) {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "the queue did not empty within 5 minutes\n{}",
                daemon.log_tail(20)
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    // The reference, after the queue is empty: as many synchronous calls.
    let mut sync = Vec::with_capacity(n);
    let sync_started = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        let r = conn
            .post("/v1/functions/async-hello/invoke", payload.clone())
            .await?;
        sync.push(t.elapsed().as_secs_f64() * 1e6);
        if r.status != 200 {
            bail!("sync invoke: HTTP {} {}", r.status, r.body_excerpt());
        }
    }
    let sync_elapsed = sync_started.elapsed().as_secs_f64();
    Ok(AsyncFigures {
        driver: daemon.driver.clone(),
        events: n,
        accept_us: Summary::of(&accept),
        throughput_per_s: n as f64 / elapsed,
        sync_us: Summary::of(&sync),
        sync_per_s: n as f64 / sync_elapsed,
    })
}
