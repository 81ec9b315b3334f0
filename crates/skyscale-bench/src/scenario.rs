//! The scenarios: per driver, a daemon without a generic pool (warm points, memory, CPU
//! placement, cold starts without the pool) and one with `WARM_POOL_SIZE=5` (cold starts
//! from the pool); and the two references.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;

use crate::daemon::{Daemon, ADMIN_KEY};
use crate::floor::Floor;
use crate::load::{self, LoadSpec, Target, Warmup};
use crate::machine::{all_cpus, nproc, taskset_all};
use crate::memory::{self, RssSampler};
use crate::naive::Naive;
use crate::results::{DriverResults, NaiveRunsc, References, WarmPoint};
use crate::stats::Summary;

pub const FUNCTION: &str = "bench-hello";
pub const POOL_SIZE: u32 = 5;
pub const SCHEDULER: &str = "scheduler";
pub const PIN_CP: &str = "client+cp on CPU 0";
pub const PIN_ALL: &str = "all on CPU 0";

#[derive(Debug, Clone)]
pub struct Config {
    pub bin_dir: PathBuf,
    pub quick: bool,
    pub point: Duration,
    pub cold_samples: usize,
    pub naive_samples: usize,
    pub payload: Bytes,
}

impl Config {
    pub(crate) fn warmup(&self) -> Warmup {
        Warmup {
            min_requests: if self.quick { 10 } else { 50 },
            consecutive_warm: 10,
            timeout: Duration::from_secs(60),
        }
    }

    pub(crate) fn spec(
        &self,
        target: &Target,
        concurrency: usize,
        pin_cpu: Option<usize>,
    ) -> LoadSpec {
        LoadSpec {
            target: target.clone(),
            payload: self.payload.clone(),
            concurrency,
            duration: self.point,
            warmup: self.warmup(),
            pin_cpu,
        }
    }
}

pub(crate) fn progress(msg: &str) {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let t = START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_secs_f64();
    eprintln!("skyscale-bench [{t:6.1}s] {msg}");
}

async fn point(
    cfg: &Config,
    target: &Target,
    c: usize,
    placement: &str,
    pin: Option<usize>,
) -> anyhow::Result<WarmPoint> {
    let run = load::run(cfg.spec(target, c, pin)).await?;
    let p = WarmPoint::from_run(c, placement, &run, nproc());
    progress(&format!(
        "  c={c} {placement}: {} requests, p50 {}, {:.0}/s, {} errors",
        p.requests,
        crate::stats::fmt_opt_us(p.p50()),
        p.throughput_per_s,
        p.errors
    ));
    Ok(p)
}

/// The floor (Python http.server) and the naive sandbox (`runsc run` per invocation).
pub async fn references(cfg: &Config) -> References {
    let mut refs = References::default();
    progress("reference: Python http.server floor");
    match floor(cfg, &mut refs).await {
        Ok(()) => {}
        Err(e) => refs.errors.push(format!("floor: {e:#}")),
    }
    progress("reference: a fresh runsc run per invocation");
    match naive(cfg).await {
        Ok(n) => refs.naive_runsc = Some(n),
        Err(e) => refs.errors.push(format!("naive runsc: {e:#}")),
    }
    refs
}

async fn floor(cfg: &Config, refs: &mut References) -> anyhow::Result<()> {
    let server = Floor::start().await?;
    let target = Target {
        addr: server.addr,
        path: "/invoke".to_owned(),
        bearer: None,
        skyscale: false,
    };
    refs.floor
        .push(point(cfg, &target, 1, SCHEDULER, None).await?);
    refs.floor
        .push(point(cfg, &target, 8, SCHEDULER, None).await?);
    let pid = server.pid().context("the floor server exited")?;
    taskset_all(pid, "0")?;
    refs.floor
        .push(point(cfg, &target, 1, PIN_ALL, Some(0)).await?);
    Ok(())
}

async fn naive(cfg: &Config) -> anyhow::Result<NaiveRunsc> {
    let mut n = Naive::new(&cfg.payload)?;
    let mut ms = Vec::new();
    let mut errors = Vec::new();
    for _ in 0..cfg.naive_samples {
        match n.invoke_once().await {
            Ok(d) => ms.push(d.as_secs_f64() * 1e3),
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    Ok(NaiveRunsc {
        samples: ms.len() + errors.len(),
        errors: errors.len(),
        error_examples: errors.into_iter().take(3).collect(),
        latency_ms: Summary::of(&ms),
    })
}

/// Every figure for one driver; failures are recorded, not fatal.
pub async fn driver(cfg: &Config, driver: &str) -> DriverResults {
    let mut res = DriverResults::new(driver);
    progress(&format!(
        "{driver}: warm points, memory, placement, cold without pool"
    ));
    if let Err(e) = without_pool(cfg, driver, &mut res).await {
        res.errors.push(format!("{e:#}"));
    }
    progress(&format!(
        "{driver}: cold starts with WARM_POOL_SIZE={POOL_SIZE}"
    ));
    if let Err(e) = with_pool(cfg, driver, &mut res).await {
        res.errors.push(format!("{e:#}"));
    }
    progress(&format!(
        "{driver}: B's warm latency beside a CPU-bound A, with and without the CPU quota"
    ));
    match crate::neighbour::run(&cfg.bin_dir, driver, cfg.point, &cfg.payload).await {
        Ok(n) => res.neighbour = n,
        Err(e) => res.errors.push(format!("neighbour: {e:#}")),
    }
    for e in &res.errors {
        progress(&format!("{driver}: error: {e}"));
    }
    res
}

async fn start(cfg: &Config, driver: &str, pool: u32) -> anyhow::Result<Daemon> {
    let d = Daemon::start(
        &cfg.bin_dir,
        driver,
        &[("WARM_POOL_SIZE", pool.to_string())],
    )
    .await?;
    let mut admin = d.conn().await?;
    d.create_hello(&mut admin, FUNCTION)
        .await
        .with_context(|| format!("daemon log:\n{}", d.log_tail(20)))?;
    Ok(d)
}

async fn without_pool(cfg: &Config, driver: &str, res: &mut DriverResults) -> anyhow::Result<()> {
    let d = start(cfg, driver, 0).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    res.memory.control_plane_rss_idle_bytes = memory::vm_rss(d.pid);
    let target = Target {
        addr: d.addr,
        path: format!("/v1/functions/{FUNCTION}/invoke"),
        bearer: Some(ADMIN_KEY.to_owned()),
        skyscale: true,
    };
    res.warm
        .push(point(cfg, &target, 1, SCHEDULER, None).await?);
    res.warm
        .push(point(cfg, &target, 2, SCHEDULER, None).await?);
    let sampler = RssSampler::start(d.pid);
    let mut p8 = point(cfg, &target, 8, SCHEDULER, None).await?;
    p8.control_plane_rss_max_bytes = sampler.finish();
    res.memory.control_plane_rss_load_max_bytes = p8.control_plane_rss_max_bytes;
    res.warm.push(p8);

    tokio::time::sleep(Duration::from_millis(500)).await;
    res.memory.warm_idle = Some(memory::measure(&d.memory_cgroup()));
    res.memory.control_plane_rss_after_load_bytes = memory::vm_rss(d.pid);

    // CPU placement: the daemon's threads and the client on CPU 0, then the sandboxes too.
    let pinned = placement(cfg, &d, &target, res).await;
    let all = all_cpus();
    let _ = taskset_all(d.pid, &all);
    for pid in memory::sandbox_pids(&d.memory_cgroup()) {
        let _ = taskset_all(pid, &all);
    }
    pinned?;

    progress(&format!("{driver}: cold starts without a pool"));
    let cold = crate::cold::run(&d, FUNCTION, 0, cfg.cold_samples, cfg.payload.clone()).await;
    res.cold_without_pool = Some(cold.with_context(|| format!("daemon log:\n{}", d.log_tail(20)))?);
    Ok(())
}

async fn placement(
    cfg: &Config,
    d: &Daemon,
    target: &Target,
    res: &mut DriverResults,
) -> anyhow::Result<()> {
    taskset_all(d.pid, "0")?;
    res.warm.push(point(cfg, target, 1, PIN_CP, Some(0)).await?);
    for pid in memory::sandbox_pids(&d.memory_cgroup()) {
        taskset_all(pid, "0")?;
    }
    res.warm
        .push(point(cfg, target, 1, PIN_ALL, Some(0)).await?);
    Ok(())
}

async fn with_pool(cfg: &Config, driver: &str, res: &mut DriverResults) -> anyhow::Result<()> {
    let d = start(cfg, driver, POOL_SIZE).await?;
    // The idle generic sandboxes, once the pool has booted (nothing else runs yet).
    let cgroup = d.memory_cgroup();
    for _ in 0..600 {
        if memory::sandbox_dirs(&cgroup).len() >= POOL_SIZE as usize {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    res.memory.generic_idle = Some(memory::measure(&cgroup));
    let cold = crate::cold::run(
        &d,
        FUNCTION,
        POOL_SIZE,
        cfg.cold_samples,
        cfg.payload.clone(),
    )
    .await;
    res.cold_with_pool = Some(cold.with_context(|| format!("daemon log:\n{}", d.log_tail(20)))?);
    Ok(())
}
