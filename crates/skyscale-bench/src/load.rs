//! The warm-load generator: `concurrency` workers, each with its own keep-alive connection,
//! sending the same request back to back. Workers run on min(concurrency, nproc) OS threads,
//! each with a single-threaded tokio runtime, so a request and its answer are handled by
//! one client thread (no wake-ups across client threads on the hot path).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use bytes::Bytes;
use hyper::Method;
use tokio::sync::Barrier;

use crate::http::{Conn, Reply};

/// What the hello-world handler answers to [`payload`].
pub const EXPECTED_MESSAGE: &str = "Hello, bench!";
pub const COLD_START_HEADER: &str = "x-skyscale-cold-start";
pub const REQUEST_ID_HEADER: &str = "x-skyscale-request-id";
pub const SERVER_TIMING_HEADER: &str = "server-timing";

/// A ~1 KB JSON event for the hello-world handler.
pub fn payload() -> Bytes {
    let event = serde_json::json!({
        "name": "bench",
        "padding": "x".repeat(990),
    });
    Bytes::from(event.to_string())
}

/// Where the load goes.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub path: String,
    pub bearer: Option<String>,
    /// Whether answers carry Skyscale's headers (request id, cold start, server-timing).
    pub skyscale: bool,
}

#[derive(Debug, Clone)]
pub struct Warmup {
    /// At least this many successful requests per worker...
    pub min_requests: usize,
    /// ...the last this many of them warm...
    pub consecutive_warm: usize,
    /// ...or give up warming after this long.
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub target: Target,
    pub payload: Bytes,
    pub concurrency: usize,
    pub duration: Duration,
    pub warmup: Warmup,
    /// Pin every client thread to this CPU.
    pub pin_cpu: Option<usize>,
}

/// One measured request.
#[derive(Debug, Clone)]
pub struct Sample {
    pub latency_us: f64,
    /// The raw `server-timing` header, parsed after the run.
    pub timing: Option<String>,
}

#[derive(Debug, Default)]
pub struct LoadRun {
    pub samples: Vec<Sample>,
    pub errors: u64,
    pub error_examples: Vec<String>,
    /// Measured requests that were cold starts (not errors, but reported).
    pub cold: u64,
    pub elapsed: Duration,
    pub warmup_requests: u64,
    pub warmup_errors: u64,
    /// Whether every worker reached the warm-up condition before its timeout.
    pub warmup_complete: bool,
}

/// Checks one answer; `Ok((cold, server_timing))` or a description of what is wrong.
pub fn check(reply: &Reply, skyscale: bool) -> Result<(bool, Option<String>), String> {
    if reply.status != 200 {
        return Err(format!("HTTP {}: {}", reply.status, reply.body_excerpt()));
    }
    if let Some(kind) = reply.header("x-skyscale-function-error") {
        return Err(format!("function error {kind}: {}", reply.body_excerpt()));
    }
    let body: serde_json::Value = serde_json::from_slice(&reply.body)
        .map_err(|e| format!("body is not JSON ({e}): {}", reply.body_excerpt()))?;
    if body.get("message").and_then(|m| m.as_str()) != Some(EXPECTED_MESSAGE) {
        return Err(format!("unexpected body: {}", reply.body_excerpt()));
    }
    let rid = body
        .get("request_id")
        .and_then(|r| r.as_str())
        .unwrap_or("");
    if rid.is_empty() {
        return Err(format!("no request_id in {}", reply.body_excerpt()));
    }
    if !skyscale {
        return Ok((false, None));
    }
    if reply.header(REQUEST_ID_HEADER) != Some(rid) {
        return Err(format!(
            "request id header {:?} differs from the body's {rid:?}",
            reply.header(REQUEST_ID_HEADER)
        ));
    }
    let cold = reply.header(COLD_START_HEADER) == Some("true");
    Ok((cold, reply.header(SERVER_TIMING_HEADER).map(str::to_owned)))
}

#[derive(Default)]
struct WorkerResult {
    run: LoadRun,
    start: Option<Instant>,
    end: Option<Instant>,
}

impl WorkerResult {
    fn warmup_error(&mut self, msg: String) {
        self.run.warmup_errors += 1;
        if self.run.error_examples.is_empty() {
            self.run.error_examples.push(format!("warm-up: {msg}"));
        }
    }

    fn error(&mut self, msg: String) {
        self.run.errors += 1;
        if self.run.error_examples.len() < 3 {
            self.run.error_examples.push(msg);
        }
    }
}

async fn send(conn: &mut Option<Conn>, spec: &LoadSpec) -> anyhow::Result<Reply> {
    if conn.is_none() {
        *conn = Some(Conn::connect(spec.target.addr, spec.target.bearer.as_deref()).await?);
    }
    let c = conn.as_mut().ok_or_else(|| anyhow!("no connection"))?;
    let r = c
        .send(Method::POST, &spec.target.path, &[], spec.payload.clone())
        .await;
    if r.is_err() {
        *conn = None; // reconnect next time
    }
    r
}

async fn worker(spec: Arc<LoadSpec>, barrier: Arc<Barrier>, stop: Arc<AtomicBool>) -> WorkerResult {
    let mut out = WorkerResult::default();
    let mut conn: Option<Conn> = None;
    let started = Instant::now();
    let (mut ok, mut warm_streak) = (0usize, 0usize);
    out.run.warmup_complete = loop {
        if ok >= spec.warmup.min_requests && warm_streak >= spec.warmup.consecutive_warm {
            break true;
        }
        if started.elapsed() > spec.warmup.timeout || stopped(&stop) {
            break false;
        }
        out.run.warmup_requests += 1;
        match send(&mut conn, &spec).await.map_err(|e| format!("{e:#}")) {
            Ok(r) => match check(&r, spec.target.skyscale) {
                Ok((cold, _)) => {
                    ok += 1;
                    warm_streak = if cold { 0 } else { warm_streak + 1 };
                }
                Err(e) => {
                    out.warmup_error(e);
                    warm_streak = 0;
                    // Back off a little: a 429 while sandboxes are still booting.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            },
            Err(e) => {
                out.warmup_error(e);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    barrier.wait().await;

    let start = Instant::now();
    let deadline = start + spec.duration;
    out.start = Some(start);
    out.run.samples.reserve(16_384);
    while Instant::now() < deadline && !stopped(&stop) {
        let t = Instant::now();
        let r = send(&mut conn, &spec).await;
        let latency_us = t.elapsed().as_secs_f64() * 1e6;
        match r {
            Ok(r) => match check(&r, spec.target.skyscale) {
                Ok((cold, timing)) => {
                    if cold {
                        out.run.cold += 1;
                    }
                    out.run.samples.push(Sample { latency_us, timing });
                }
                Err(e) => out.error(e),
            },
            Err(e) => {
                out.error(format!("{e:#}"));
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
    out.end = Some(Instant::now());
    out
}

fn pin_current_thread(cpu: usize) -> anyhow::Result<()> {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu).context("CPU index out of range")?;
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).context("sched_setaffinity")
}

/// Set on Ctrl-C: every load worker stops at its next request.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

fn stopped(stop: &AtomicBool) -> bool {
    stop.load(Ordering::Relaxed) || INTERRUPTED.load(Ordering::Relaxed)
}

/// Tells the load threads to stop when the run is dropped (Ctrl-C): otherwise they would
/// keep their connections busy and hold up the daemon's graceful shutdown.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Runs one load point: warm-up on all workers, then `duration` of measured requests.
pub async fn run(spec: LoadSpec) -> anyhow::Result<LoadRun> {
    let nproc = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = spec.concurrency.clamp(1, nproc);
    let spec = Arc::new(spec);
    let stop = StopOnDrop(Arc::new(AtomicBool::new(false)));
    let barrier = Arc::new(Barrier::new(spec.concurrency));
    let mut handles = Vec::new();
    for t in 0..threads {
        let workers = (t..spec.concurrency).step_by(threads).count();
        let (spec, barrier, stop) = (spec.clone(), barrier.clone(), stop.0.clone());
        let h = std::thread::Builder::new()
            .name(format!("load-{t}"))
            .spawn(move || -> anyhow::Result<Vec<WorkerResult>> {
                if let Some(cpu) = spec.pin_cpu {
                    pin_current_thread(cpu)?;
                }
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("building a client runtime")?;
                rt.block_on(async move {
                    let mut set = tokio::task::JoinSet::new();
                    for _ in 0..workers {
                        set.spawn(worker(spec.clone(), barrier.clone(), stop.clone()));
                    }
                    let mut results = Vec::new();
                    while let Some(r) = set.join_next().await {
                        results.push(r.context("load worker panicked")?);
                    }
                    Ok(results)
                })
            })
            .context("spawning a load thread")?;
        handles.push(h);
    }
    let results = tokio::task::spawn_blocking(move || {
        handles
            .into_iter()
            .map(|h| h.join().map_err(|_| anyhow!("load thread panicked"))?)
            .collect::<anyhow::Result<Vec<Vec<WorkerResult>>>>()
    })
    .await
    .context("joining load threads")??;

    let mut total = LoadRun {
        warmup_complete: true,
        ..LoadRun::default()
    };
    let (mut first, mut last): (Option<Instant>, Option<Instant>) = (None, None);
    for w in results.into_iter().flatten() {
        total.samples.extend(w.run.samples);
        total.errors += w.run.errors;
        total.cold += w.run.cold;
        total.warmup_requests += w.run.warmup_requests;
        total.warmup_errors += w.run.warmup_errors;
        total.warmup_complete &= w.run.warmup_complete;
        for e in w.run.error_examples {
            if total.error_examples.len() < 3 {
                total.error_examples.push(e);
            }
        }
        first = match (first, w.start) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        last = match (last, w.end) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
    if let (Some(a), Some(b)) = (first, last) {
        total.elapsed = b.saturating_duration_since(a);
    }
    Ok(total)
}
