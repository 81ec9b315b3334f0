//! Cold-start samples: change the function's description (which retires its warm
//! sandboxes), let the host settle, invoke once and confirm `x-skyscale-cold-start: true`.

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::daemon::Daemon;
use crate::http::Conn;
use crate::load::{check, Sample};
use crate::memory::sandbox_dirs;
use crate::results::{Breakdown, Cold};
use crate::stats::{median, Summary};

const POLL: Duration = Duration::from_millis(10);
const SETTLE_TIMEOUT: Duration = Duration::from_secs(20);

/// How to tell that the host is quiet again before the next sample.
pub(crate) enum Settle {
    /// Poll health's `warm_pool_idle` and the sandbox count until both equal the pool size.
    Poll,
    /// The health JSON has no `warm_pool_idle`: sleep a fixed time.
    Fixed(Duration),
}

async fn pool_idle(d: &Daemon, admin: &mut Conn) -> Option<u64> {
    d.health(admin)
        .await
        .ok()?
        .get("warm_pool_idle")
        .and_then(|v| v.as_u64())
}

/// Waits until the retired sandboxes are gone and the pool is full; false on timeout.
pub(crate) async fn settle(
    d: &Daemon,
    admin: &mut Conn,
    pool: u32,
    how: &Settle,
    timeout: Duration,
) -> bool {
    let cgroup = d.memory_cgroup();
    let deadline = Instant::now() + timeout;
    if let Settle::Fixed(t) = how {
        tokio::time::sleep(*t).await;
    }
    loop {
        let count_ok = sandbox_dirs(&cgroup).len() == pool as usize;
        let pool_ok = match how {
            Settle::Poll => pool_idle(d, admin).await == Some(u64::from(pool)),
            Settle::Fixed(_) => true,
        };
        if count_ok && pool_ok {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Takes `n` cold-start samples of `function` on a daemon started with `WARM_POOL_SIZE=pool`.
pub async fn run(
    d: &Daemon,
    function: &str,
    pool: u32,
    n: usize,
    payload: Bytes,
) -> anyhow::Result<Cold> {
    let mut admin = d.conn().await?;
    let mut invoker = d.conn().await?;
    let has_field = d.health(&mut admin).await?.get("warm_pool_idle").is_some();
    let (how, wait) = if pool == 0 {
        (
            Settle::Fixed(Duration::ZERO),
            "until the retired sandboxes were gone (memory cgroup count = 0)".to_owned(),
        )
    } else if has_field {
        (
            Settle::Poll,
            format!(
                "polled /v1/health until warm_pool_idle = {pool} and the sandbox count = {pool}"
            ),
        )
    } else {
        let t = if d.driver == "gvisor" { 1.5 } else { 0.3 };
        (
            Settle::Fixed(Duration::from_secs_f64(t)),
            format!("fixed {t} s per sample: /v1/health has no warm_pool_idle"),
        )
    };
    if pool > 0 {
        // The pool boots at start: give it time before the first sample.
        settle(d, &mut admin, pool, &how, Duration::from_secs(60)).await;
    }

    let path = format!("/v1/functions/{function}/invoke");
    let mut out = Cold {
        warm_pool_size: pool,
        samples: 0,
        confirmed_cold: 0,
        errors: 0,
        error_examples: Vec::new(),
        latency_ms: None,
        init_ms_p50: None,
        breakdown: None,
        wait,
        unsettled: 0,
    };
    let mut samples: Vec<Sample> = Vec::new();
    let mut inits = Vec::new();
    let fail = |out: &mut Cold, msg: String| {
        out.errors += 1;
        if out.error_examples.len() < 3 {
            out.error_examples.push(msg);
        }
    };
    for i in 0..n {
        if let Err(e) = d
            .touch(&mut admin, function, &format!("cold sample {i}"))
            .await
        {
            fail(&mut out, format!("{e:#}"));
            continue;
        }
        if !settle(d, &mut admin, pool, &how, SETTLE_TIMEOUT).await {
            out.unsettled += 1;
        }
        out.samples += 1;
        let t = Instant::now();
        let reply = invoker.post(&path, payload.clone()).await;
        let latency_us = t.elapsed().as_secs_f64() * 1e6;
        let reply = match reply {
            Ok(r) => r,
            Err(e) => {
                fail(&mut out, format!("{e:#}"));
                invoker = d.conn().await?;
                continue;
            }
        };
        match check(&reply, true) {
            Ok((true, timing)) => {
                out.confirmed_cold += 1;
                if let Some(ms) = reply
                    .header("x-skyscale-init-duration-ms")
                    .and_then(|v| v.parse::<f64>().ok())
                {
                    inits.push(ms);
                }
                samples.push(Sample { latency_us, timing });
            }
            Ok((false, _)) => fail(
                &mut out,
                format!("sample {i} was not a cold start (x-skyscale-cold-start is not true)"),
            ),
            Err(e) => fail(&mut out, e),
        }
    }
    let ms: Vec<f64> = samples.iter().map(|s| s.latency_us / 1e3).collect();
    out.latency_ms = Summary::of(&ms);
    out.init_ms_p50 = median(&inits);
    out.breakdown = Breakdown::from_samples(&samples);
    Ok(out)
}
