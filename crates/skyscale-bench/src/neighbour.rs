//! A CPU-bound neighbour: function B's warm latency alone, then while function A spins the
//! CPU in `SPINNERS` parallel invocations, with the CPU quota (the default, Lambda's ratio)
//! and without it (`SKYSCALE_CPU_MB_PER_VCPU=off`). Issue 10 measured B's warm p99 going from
//! 2.3 ms to 44 ms on gVisor beside such an A without a quota. B comes in two sizes: Lambda's
//! default 128 MB (the same CPU weight and quota as each of A's sandboxes) and 1,769 MB (one
//! vCPU: its own quota never binds a closed loop of invocations, and its weight is 14 times
//! that of each of A's sandboxes).

use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use serde::Serialize;

use crate::daemon::{Daemon, ADMIN_KEY, HELLO_HANDLER};
use crate::load::{self, LoadSpec, Target, Warmup};
use crate::results::WarmPoint;
use crate::stats::Summary;

/// A: spins for `event["seconds"]` of wall-clock time, at Lambda's default 128 MB (a quota
/// of 7 % of a CPU at Lambda's ratio).
const SPINNER: &str = "import time\n\ndef handler(event, context):\n    end = time.time() + event['seconds']\n    n = 0\n    while time.time() < end:\n        n += 1\n    return {'spins': n}\n";
const SPINNERS: usize = 4;
const A_MEMORY_MB: u32 = 128;
const B_MEMORY_MB: [u32; 2] = [128, 1769];

/// B's latency alone and beside A, for one driver, one quota setting and one size of B.
#[derive(Debug, Clone, Serialize)]
pub struct Neighbour {
    /// `SKYSCALE_CPU_MB_PER_VCPU`: `1769` (the default) or `off`.
    pub quota: String,
    pub b_memory_mb: u32,
    pub alone: WarmPoint,
    pub beside_a: WarmPoint,
    /// A's invocations (in the run B was measured beside) that ended with HTTP 200 and no
    /// function error, of `SPINNERS`.
    pub a_completed: usize,
}

fn progress(msg: &str) {
    eprintln!("skyscale-bench [neighbour] {msg}");
}

/// Both quota settings for `driver`, one daemon each.
pub async fn run(
    bin_dir: &std::path::Path,
    driver: &str,
    point: Duration,
    payload: &Bytes,
) -> anyhow::Result<Vec<Neighbour>> {
    let mut out = Vec::new();
    for quota in ["1769", "off"] {
        progress(&format!("{driver}: quota {quota}"));
        out.extend(one(bin_dir, driver, quota, point, payload).await?);
    }
    Ok(out)
}

async fn one(
    bin_dir: &std::path::Path,
    driver: &str,
    quota: &str,
    point: Duration,
    payload: &Bytes,
) -> anyhow::Result<Vec<Neighbour>> {
    let d = Daemon::start(
        bin_dir,
        driver,
        &[
            ("WARM_POOL_SIZE", "0".to_owned()),
            ("SKYSCALE_CPU_MB_PER_VCPU", quota.to_owned()),
        ],
    )
    .await?;
    let mut admin = d.conn().await?;
    let with_log = |what: &str| format!("{what}; daemon log:\n{}", d.log_tail(20));
    for mb in B_MEMORY_MB {
        let settings = serde_json::json!({ "memory_mb": mb });
        d.create_function(&mut admin, &format!("b{mb}"), HELLO_HANDLER, settings)
            .await
            .with_context(|| with_log("creating B"))?;
    }
    let settings = serde_json::json!({"memory_mb": A_MEMORY_MB, "timeout_s": 300});
    d.create_function(&mut admin, "a", SPINNER, settings)
        .await
        .with_context(|| with_log("creating A"))?;
    let spec = |mb: u32| LoadSpec {
        target: Target {
            addr: d.addr,
            path: format!("/v1/functions/b{mb}/invoke"),
            bearer: Some(ADMIN_KEY.to_owned()),
            skyscale: true,
        },
        payload: payload.clone(),
        concurrency: 1,
        duration: point,
        warmup: Warmup {
            min_requests: 50,
            consecutive_warm: 10,
            timeout: Duration::from_secs(60),
        },
        pin_cpu: None,
    };
    let mut alone = Vec::new();
    for mb in B_MEMORY_MB {
        let run = load::run(spec(mb)).await?;
        alone.push(WarmPoint::from_run(1, "B alone", &run, 1));
    }

    // A's sandboxes are booted (and initialised) first, so that the measured spin is warm
    // invocations only: B is measured beside A's spinning, not beside A's cold starts.
    spin_at(d.addr, 0.05)
        .await
        .with_context(|| with_log("warming A"))?;
    // Long enough for both B's warm-ups and points, with a margin.
    let seconds = 2.0 * point.as_secs_f64() + 15.0;
    let addr = d.addr;
    let spinning = tokio::spawn(async move { spin_at(addr, seconds).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut beside = Vec::new();
    for mb in B_MEMORY_MB {
        let run = load::run(spec(mb)).await?;
        beside.push(WarmPoint::from_run(1, "B beside A", &run, 1));
    }
    let a_completed = spinning.await.context("A's spinners")??;
    let mut out = Vec::new();
    for ((mb, alone), beside_a) in B_MEMORY_MB.into_iter().zip(alone).zip(beside) {
        progress(&format!(
            "{driver} quota {quota} B {mb} MB: p99 alone {} beside A {}",
            crate::stats::fmt_opt_us(alone.latency_us.map(|s| s.p99)),
            crate::stats::fmt_opt_us(beside_a.latency_us.map(|s| s.p99)),
        ));
        out.push(Neighbour {
            quota: quota.to_owned(),
            b_memory_mb: mb,
            alone,
            beside_a,
            a_completed,
        });
    }
    Ok(out)
}

/// `SPINNERS` parallel invocations of A, each spinning `seconds`; how many succeeded.
async fn spin_at(addr: std::net::SocketAddr, seconds: f64) -> anyhow::Result<usize> {
    let body = Bytes::from(serde_json::json!({ "seconds": seconds }).to_string());
    let mut tasks = Vec::new();
    for _ in 0..SPINNERS {
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = crate::http::Conn::connect(addr, Some(ADMIN_KEY)).await?;
            let r = conn.post("/v1/functions/a/invoke", body).await?;
            if r.status != 200 || r.header("x-skyscale-function-error").is_some() {
                bail!("A: HTTP {} {}", r.status, r.body_excerpt());
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    let mut ok = 0;
    for t in tasks {
        t.await.context("A's invocation task")??;
        ok += 1;
    }
    Ok(ok)
}

/// p50 and p99 of a point, for the table.
pub fn p50_p99(p: &WarmPoint) -> (Option<f64>, Option<f64>) {
    let s: Option<Summary> = p.latency_us;
    (s.map(|s| s.p50), s.map(|s| s.p99))
}
