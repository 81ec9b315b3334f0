//! `skyscale-bench`: starts real control planes (the release binaries beside this one) and
//! measures warm and cold invoke latency, throughput, memory, CPU placement and where the
//! time goes, beside two references on the same machine; prints a table and writes JSON.
//!
//! ```sh
//! cargo build --release --workspace --bins
//! target/release/skyscale-bench [--drivers runc,gvisor] [--quick] [--out bench/results.json]
//! target/release/skyscale-bench --events 2000 [--drivers runc]   # async accept and throughput
//! target/release/skyscale-bench --cluster --drivers runc [--database-url postgres://…]
//! ```
//!
//! `--real` measures cold starts of real functions (FastAPI, aws-lambda-powertools, numpy)
//! beside the same imports on the host (see `real.rs`):
//! `target/release/skyscale-bench --real [--drivers runc,gvisor] [--bytecode off,on] [--real-samples 5]`
//!
//! `--cluster` measures a single node next to an API node routing to a worker in a network
//! namespace of its own, on PostgreSQL, in one run (see `cluster.rs`).

mod cluster;
mod cold;
mod daemon;
mod events;
mod floor;
mod http;
mod load;
mod machine;
mod memory;
mod naive;
mod neighbour;
mod notes;
mod real;
mod results;
mod rtt;
mod scenario;
mod stats;
mod table;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;

use crate::results::{Results, Settings};

/// Benchmark Skyscale against real control planes and sandboxes.
#[derive(Debug, Parser)]
#[command(name = "skyscale-bench")]
struct Args {
    /// Drivers to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "runc,gvisor")]
    drivers: Vec<String>,
    /// Shorter points and fewer samples (a smoke run, not figures to quote).
    #[arg(long)]
    quick: bool,
    /// Where to write the JSON figures.
    #[arg(long, default_value = "bench/results.json")]
    out: PathBuf,
    /// Seconds per warm load point (default 3, 1 with --quick).
    #[arg(long)]
    duration: Option<f64>,
    /// Directory holding skyscale-control-plane and skyscale-agent (default: beside this
    /// binary).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Measure only asynchronous invocation with this many events per driver: accept
    /// latency (until the 202, the event committed) and throughput (first accept until the
    /// queue is empty); prints JSON.
    /// With `--cluster`: async events per setup (default 1000).
    #[arg(long, value_name = "N")]
    events: Option<usize>,
    /// Measure a single node (role all, SQLite) next to an API node routing to one worker
    /// in its own network namespace (PostgreSQL), in one run: warm latency and throughput,
    /// async accept latency. Needs root, iproute2, util-linux and PostgreSQL.
    #[arg(long)]
    cluster: bool,
    /// With `--cluster`: the PostgreSQL server to make (and drop) a fresh database on; by
    /// default what `scripts/test-postgres` prints (it starts Debian's PostgreSQL).
    #[arg(long, env = "SKYSCALE_BENCH_DATABASE_URL", value_name = "URL")]
    database_url: Option<String>,
    /// Measure only cold starts of real functions (FastAPI + mangum, aws-lambda-powertools,
    /// numpy): the first request after a deploy with its phases, beside the same imports
    /// in a fresh python3 on the host. Run from the repository's root (it vendors the
    /// packages with scripts/test-vendor).
    #[arg(long)]
    real: bool,
    /// With `--real`: samples per app and setup (default 5, 3 with --quick).
    #[arg(long, value_name = "N")]
    real_samples: Option<usize>,
    /// With `--real`: the control plane's SKYSCALE_BYTECODE values to measure each driver
    /// with, comma-separated (`off,on` compares deploy-time bytecode with none).
    #[arg(long, value_delimiter = ',', default_value = "on")]
    bytecode: Vec<String>,
    /// With `--real`: the script that vendors the apps' packages.
    #[arg(long, default_value = "scripts/test-vendor")]
    vendor_script: PathBuf,
    /// With `--real`: also the first request of a published version kept ready, by a
    /// provisioned sandbox (every driver) and by a SnapStart snapshot (gVisor).
    #[arg(long)]
    ready: bool,
}

fn main() {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("skyscale-bench: error: building the runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = rt.block_on(async {
        // Stop the load threads first, whatever order the interrupted run is dropped in:
        // their keep-alive connections would hold up the daemons' graceful shutdown.
        tokio::spawn(async {
            if tokio::signal::ctrl_c().await.is_ok() {
                load::INTERRUPTED.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        });
        tokio::select! {
            r = run(args) => match r {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("skyscale-bench: error: {e:#}");
                    1
                }
            },
            // Dropping `run` drops its daemons (SIGTERM, wait), servers and sandboxes.
            _ = tokio::signal::ctrl_c() => {
                eprintln!("skyscale-bench: interrupted; cleaning up");
                130
            }
        }
    });
    rt.shutdown_timeout(Duration::from_secs(1));
    std::process::exit(code);
}

async fn run(args: Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let bin_dir = match args.bin_dir {
        Some(d) => d,
        None => std::env::current_exe()
            .context("locating this binary")?
            .parent()
            .context("this binary has no directory")?
            .to_path_buf(),
    };
    for b in ["skyscale-control-plane", "skyscale-agent"] {
        if !bin_dir.join(b).is_file() {
            bail!(
                "{} is missing: build first with `cargo build --release --workspace --bins`",
                bin_dir.join(b).display()
            );
        }
    }
    for d in &args.drivers {
        if d != "runc" && d != "gvisor" {
            bail!("unknown driver {d:?}: expected runc or gvisor");
        }
    }
    if args.database_url.is_some() && !args.cluster {
        bail!("--database-url (SKYSCALE_BENCH_DATABASE_URL) applies to --cluster only");
    }
    if args.real {
        for b in &args.bytecode {
            if b != "on" && b != "off" {
                bail!("--bytecode {b:?}: expected on or off");
            }
        }
        let cfg = real::RealConfig {
            bin_dir,
            drivers: args.drivers.clone(),
            bytecode: args.bytecode.clone(),
            samples: args
                .real_samples
                .unwrap_or(if args.quick { 3 } else { 5 })
                .max(1),
            vendor_script: args.vendor_script.clone(),
            ready: args.ready,
        };
        let results = real::run(&cfg).await?;
        println!("{}", real::render(&results));
        eprintln!(
            "skyscale-bench: real functions took {:.0} s",
            started.elapsed().as_secs_f64()
        );
        return write_json(&args.out, &results);
    }
    if args.cluster {
        let cfg = scenario::Config {
            bin_dir,
            quick: args.quick,
            point: Duration::from_secs_f64(args.duration.unwrap_or(if args.quick {
                1.0
            } else {
                3.0
            })),
            cold_samples: 0,
            naive_samples: 0,
            payload: load::payload(),
        };
        let cc = cluster::ClusterConfig {
            database_url: args.database_url.clone(),
            events: args
                .events
                .unwrap_or(if args.quick { 200 } else { 1000 })
                .max(1),
        };
        let results = cluster::run(&cfg, &cc, &args.drivers).await?;
        println!("{}", cluster::render(&results));
        return write_json(&args.out, &results);
    }
    if let Some(n) = args.events {
        for d in &args.drivers {
            // The queue's own settings pass through, to measure them.
            let env: Vec<(&str, String)> = events::SETTINGS
                .iter()
                .filter_map(|k| std::env::var(k).ok().map(|v| (*k, v)))
                .collect();
            let daemon = daemon::Daemon::start(&bin_dir, d, &env).await?;
            let figures = events::measure(&daemon, n.max(1))
                .await
                .with_context(|| format!("daemon log:\n{}", daemon.log_tail(20)))?;
            eprint!("{}", figures.table());
            println!("{}", serde_json::to_string_pretty(&figures)?);
        }
        return Ok(());
    }
    let payload = load::payload();
    let cfg = scenario::Config {
        bin_dir,
        quick: args.quick,
        point: Duration::from_secs_f64(args.duration.unwrap_or(if args.quick { 1.0 } else { 3.0 })),
        cold_samples: if args.quick { 5 } else { 20 },
        naive_samples: if args.quick { 3 } else { 10 },
        payload: payload.clone(),
    };
    let machine = machine::MachineInfo::collect();
    let references = scenario::references(&cfg).await;
    let mut drivers = Vec::new();
    for d in &args.drivers {
        drivers.push(scenario::driver(&cfg, d).await);
    }
    let mut machine = machine;
    machine.loadavg_end = machine::loadavg();
    let mut results = Results {
        machine,
        settings: Settings {
            quick: args.quick,
            drivers: args.drivers.clone(),
            point_duration_s: cfg.point.as_secs_f64(),
            cold_samples: cfg.cold_samples,
            naive_samples: cfg.naive_samples,
            payload_bytes: payload.len(),
            log_level: "info (the daemon's default)".to_owned(),
        },
        references,
        drivers,
        notes: Vec::new(),
    };
    results.notes = notes::notes(&results);
    results.notes.push(format!(
        "benchmark took {:.0} s",
        started.elapsed().as_secs_f64()
    ));
    println!("{}", table::render(&results));
    write_json(&args.out, &results)
}

fn write_json(out: &std::path::Path, results: &impl serde::Serialize) -> anyhow::Result<()> {
    if let Some(dir) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let json = serde_json::to_vec_pretty(results)?;
    std::fs::write(out, json).with_context(|| format!("writing {}", out.display()))?;
    eprintln!("skyscale-bench: wrote {}", out.display());
    Ok(())
}
