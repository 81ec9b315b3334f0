//! `skyscale-bench --cluster`: a single node next to a cluster, in one run, on one machine.
//!
//! - The single node: role `all` on SQLite, started as the warm scenario starts it
//!   (`WARM_POOL_SIZE=0`).
//! - The cluster: a fresh PostgreSQL database, an API node (role `api`, root namespace,
//!   127.0.0.1) and one worker (role `worker`) in a network namespace of its own joined to a
//!   bridge by a veth pair (`skyscale-testnet`, the cluster fault test's network), started
//!   with `nsenter --net=/run/netns/<ns>`. The worker reaches PostgreSQL through a forwarder
//!   on the bridge address; the API node reaches the worker across the veth pair.
//!
//! Measured on both, alternately: warm invoke latency at concurrency 1 and throughput at 2
//! and 4 (the same hello-world function, `load.rs`), and async accept latency (until the
//! 202: the event committed to SQLite or PostgreSQL, `events.rs`). Everything is removed on
//! the way out, also on an error or Ctrl-C: the daemons stop (SIGTERM, their sandboxes with
//! them), then the forwarder, the namespace and its links, and the database.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;
use skyscale_testnet::{forward::Forwarder, net::Network, pg};

use crate::daemon::{Daemon, Launch, ADMIN_KEY};
use crate::events::AsyncFigures;
use crate::load::{self, Target};
use crate::machine::{all_cpus, nproc, taskset_all, MachineInfo};
use crate::memory;
use crate::results::{Breakdown, WarmPoint, PHASES};
use crate::scenario::{progress, Config, FUNCTION, PIN_ALL, SCHEDULER};
use crate::stats::{check_le, fmt_opt_us, fmt_us};
use crate::table::Table;

/// The concurrency of the latency point and of the throughput points.
pub const CONCURRENCY: [usize; 3] = [1, 2, 4];
/// design.md: a warm invoke through an API node to a worker host, over single-node.
pub const BUDGET_EXTRA_P50_US: f64 = 300.0;
/// The worker's internal port (on its namespace's address).
const WORKER_PORT: u16 = 7100;
/// How long the worker may take to register and appear in the API node's routing view.
const LIVE_TIMEOUT: Duration = Duration::from_secs(60);
/// The database name's prefix: `skyscale_bench_<pid>_<n>`; what killed runs left is
/// dropped by the next.
const DB_PREFIX: &str = "skyscale_bench";
/// TCP round trips across the veth pair, and as many on loopback.
const RTT_SAMPLES: usize = 5000;

/// What `--cluster` needs besides the common [`Config`].
pub struct ClusterConfig {
    /// The PostgreSQL server (a fresh database is made there, and dropped).
    pub database_url: Option<String>,
    /// Async events per setup.
    pub events: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClusterResults {
    pub machine: MachineInfo,
    pub settings: ClusterSettings,
    pub drivers: Vec<ClusterDriver>,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClusterSettings {
    pub drivers: Vec<String>,
    pub point_duration_s: f64,
    pub payload_bytes: usize,
    pub events: usize,
    pub concurrency: Vec<usize>,
    /// `SHOW server_version` of the PostgreSQL server.
    pub postgres_version: String,
    pub budget_extra_p50_us: f64,
}

/// Single node against cluster, for one worker driver.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterDriver {
    pub driver: String,
    /// The worker's address in its namespace.
    pub worker_address: String,
    /// Warm points of the single node (role `all`, SQLite).
    pub single: Vec<WarmPoint>,
    /// Warm points through the API node to the worker (PostgreSQL).
    pub cluster: Vec<WarmPoint>,
    /// Cluster minus single node, per concurrency.
    pub difference: Vec<Difference>,
    /// Concurrency 1 with the client and every process of the setup (daemons, sandboxes)
    /// on CPU 0: the single node, the cluster, and their difference. With no wake-up on the
    /// other CPU, what is left of the difference is the work itself.
    pub pinned: Option<(WarmPoint, WarmPoint, Difference)>,
    /// What each point cost each daemon in CPU time, per request.
    pub cpu_per_request: Vec<CpuPerRequest>,
    /// Async accept on the single node (SQLite).
    pub async_single: Option<AsyncFigures>,
    /// Async accept on the API node (PostgreSQL).
    pub async_cluster: Option<AsyncFigures>,
    /// A small TCP message's round trip across the veth pair next to loopback.
    pub rtt: Option<crate::rtt::Rtt>,
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Difference {
    pub concurrency: usize,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    /// Cluster ÷ single node.
    pub throughput_ratio: Option<f64>,
    /// Medians of the `server-timing` phases, cluster minus single node (the API node's
    /// `lookup` and `auth`, the worker's `acquire`, `channel` and `runtime`; `unaccounted`
    /// holds the hop to the worker).
    pub phases_us: std::collections::BTreeMap<String, f64>,
}

fn diff(c: usize, single: &WarmPoint, cluster: &WarmPoint) -> Difference {
    let d = |a: Option<f64>, b: Option<f64>| Some(a? - b?);
    let mut phases = std::collections::BTreeMap::new();
    if let (Some(s), Some(k)) = (&single.breakdown, &cluster.breakdown) {
        for (name, v) in phase_values(k) {
            if let Some(base) = phase_values(s).into_iter().find(|(n, _)| *n == name) {
                if let (Some(v), Some(base)) = (v, base.1) {
                    phases.insert(name.to_owned(), v - base);
                }
            }
        }
    }
    Difference {
        concurrency: c,
        p50_us: d(cluster.p50(), single.p50()),
        p99_us: d(
            cluster.latency_us.map(|s| s.p99),
            single.latency_us.map(|s| s.p99),
        ),
        throughput_ratio: (single.throughput_per_s > 0.0)
            .then(|| cluster.throughput_per_s / single.throughput_per_s),
        phases_us: phases,
    }
}

/// The phases of a breakdown in table order, then the unaccounted and HTTP remainders.
fn phase_values(b: &Breakdown) -> Vec<(&'static str, Option<f64>)> {
    let mut v: Vec<(&'static str, Option<f64>)> = PHASES
        .iter()
        .map(|p| (*p, b.phases_us.get(*p).copied()))
        .collect();
    v.push(("unaccounted", b.unaccounted_us));
    v.push(("http", b.http_us));
    v
}

/// The PostgreSQL server: `--database-url` (or `SKYSCALE_BENCH_DATABASE_URL`), else what
/// `scripts/test-postgres` prints, run from the repository root.
fn database_server(url: Option<&str>) -> anyhow::Result<pg::PgUrl> {
    if let Some(u) = url.filter(|u| !u.trim().is_empty()) {
        return pg::PgUrl::parse(u.trim());
    }
    let root = repo_root().context(
        "no --database-url or SKYSCALE_BENCH_DATABASE_URL, and no repository root \
         (scripts/test-postgres) above this binary or the current directory to start \
         PostgreSQL with",
    )?;
    progress("starting PostgreSQL with scripts/test-postgres");
    let out = std::process::Command::new(root.join("scripts/test-postgres"))
        .current_dir(&root)
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running scripts/test-postgres")?;
    if !out.status.success() {
        bail!("scripts/test-postgres failed ({})", out.status);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let url = stdout
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .context("scripts/test-postgres printed no URL")?;
    pg::PgUrl::parse(url)
}

/// The first directory holding `scripts/test-postgres`, above this binary or the current
/// directory.
fn repo_root() -> Option<PathBuf> {
    let starts = [std::env::current_exe().ok(), std::env::current_dir().ok()];
    starts.into_iter().flatten().find_map(|start| {
        start
            .ancestors()
            .find(|d| d.join("scripts/test-postgres").is_file())
            .map(Path::to_path_buf)
    })
}

fn preflight() -> anyhow::Result<()> {
    skyscale_testnet::require_root("skyscale-bench --cluster")?;
    skyscale_testnet::require_tools(
        "skyscale-bench --cluster",
        &[
            ("ip", "iproute2"),
            ("nsenter", "util-linux"),
            ("setpriv", "util-linux"),
            (
                "psql",
                "postgresql-client (scripts/test-postgres installs PostgreSQL)",
            ),
        ],
    )
}

/// A secret the API node and the worker share (64 hex characters).
fn cluster_secret() -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(std::process::id().to_le_bytes());
    h.update(format!("{:?}", Instant::now()).as_bytes());
    h.update(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
            .to_le_bytes(),
    );
    if let Ok(random) = std::fs::read("/proc/sys/kernel/random/uuid") {
        h.update(random);
    }
    hex::encode(h.finalize())
}

/// Everything one comparison runs on. Fields drop in declaration order: the daemons stop
/// (the worker first, while its database is still there) before the forwarder, the network
/// and the database go.
struct Rig {
    worker: Daemon,
    api: Daemon,
    single: Daemon,
    _forwarder: Forwarder,
    network: Network,
    db: pg::Database,
}

impl Rig {
    async fn start(cfg: &Config, server: &pg::PgUrl, driver: &str, n: u32) -> anyhow::Result<Rig> {
        let db = pg::Database::create(server, DB_PREFIX, n)?;
        let network = Network::create(1)?;
        let ns = network
            .namespaces
            .first()
            .context("the network has no namespace")?;
        let forwarder = Forwarder::start(
            SocketAddr::new(network.host.into(), 0),
            server.socket_addr()?,
        )?;
        progress(&format!(
            "{driver}: single node (SQLite); API node → worker {}:{WORKER_PORT} in {} \
             (database {})",
            ns.addr, ns.name, db.name
        ));
        // As the warm scenario starts it.
        let mut single =
            Daemon::start(&cfg.bin_dir, driver, &[("WARM_POOL_SIZE", "0".to_owned())]).await?;
        single.label = "single node".to_owned();
        let secret = cluster_secret();
        let api = Daemon::launch(
            &cfg.bin_dir,
            Launch {
                label: "API node",
                role: "api",
                driver: None,
                sqlite: false,
                netns: None,
                env: vec![
                    ("SKYSCALE_DATABASE_URL", db.url.to_string()),
                    ("SKYSCALE_CLUSTER_SECRET", secret.clone()),
                    ("SKYSCALE_NODE_NAME", "bench-api".to_owned()),
                ],
            },
        )
        .await?;
        let worker = Daemon::launch(
            &cfg.bin_dir,
            Launch {
                label: "worker",
                role: "worker",
                driver: Some(driver),
                sqlite: false,
                netns: Some(ns.path()),
                env: vec![
                    (
                        "SKYSCALE_DATABASE_URL",
                        db.url.via(forwarder.addr).to_string(),
                    ),
                    ("SKYSCALE_CLUSTER_SECRET", secret),
                    (
                        "SKYSCALE_WORKER_LISTEN",
                        format!("{}:{WORKER_PORT}", ns.addr),
                    ),
                    ("SKYSCALE_NODE_NAME", "bench-worker".to_owned()),
                    ("WARM_POOL_SIZE", "0".to_owned()),
                ],
            },
        )
        .await?;
        let rig = Rig {
            worker,
            api,
            single,
            _forwarder: forwarder,
            network,
            db,
        };
        rig.wait_routable().await?;
        Ok(rig)
    }

    /// Until the API node's own routing view has the worker live (its `/metrics`,
    /// refreshed every 500 ms from the database).
    async fn wait_routable(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + LIVE_TIMEOUT;
        let mut conn = self.api.conn().await?;
        let want = format!("worker=\"{}\"", self.worker.addr);
        loop {
            let r = conn.get("/metrics").await?;
            let text = String::from_utf8_lossy(&r.body);
            let live = text.lines().any(|l| {
                l.starts_with("skyscale_cluster_worker_live{")
                    && l.contains(&want)
                    && l.trim_end().ends_with(" 1")
            });
            if live {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the API node does not route to the worker {} within {LIVE_TIMEOUT:?}\n\
                     API node log:\n{}\nworker log:\n{}",
                    self.worker.addr,
                    self.api.log_tail(20),
                    self.worker.log_tail(20)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn logs(&self) -> String {
        format!(
            "single node log:\n{}\nAPI node log:\n{}\nworker log:\n{}",
            self.single.log_tail(15),
            self.api.log_tail(15),
            self.worker.log_tail(15)
        )
    }
}

fn target(d: &Daemon) -> Target {
    Target {
        addr: d.addr,
        path: format!("/v1/functions/{FUNCTION}/invoke"),
        bearer: Some(ADMIN_KEY.to_owned()),
        skyscale: true,
    }
}

/// CPU time (user and system, every thread) a process has used so far, µs.
fn cpu_us(pid: u32) -> Option<f64> {
    static TICK_US: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    let tick_us = *TICK_US.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .filter(|t| *t > 0.0)
            .map_or(10_000.0, |t| 1e6 / t)
    });
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After `pid (comm) `: state is field 3, utime 14 and stime 15.
    let rest = stat.rsplit_once(") ")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 * tick_us)
}

/// The label of the database server's share in [`CpuPerRequest`].
const POSTGRES: &str = "PostgreSQL";

/// The PostgreSQL server processes serving `db`'s connections (the nodes keep theirs open).
fn backends(db: &pg::Database) -> anyhow::Result<Vec<u32>> {
    let out = pg::psql(
        &db.url,
        &format!(
            "SELECT pid FROM pg_stat_activity WHERE datname = '{}' AND pid <> pg_backend_pid()",
            db.name
        ),
    )
    .context("listing the database's server processes")?;
    Ok(out.lines().filter_map(|l| l.trim().parse().ok()).collect())
}

/// CPU time per request of each daemon of a setup over one load point.
#[derive(Debug, Clone, Serialize)]
pub struct CpuPerRequest {
    pub concurrency: usize,
    pub setup: String,
    pub placement: String,
    /// Requests sent, warm-up included (the CPU time covers the whole point).
    pub requests: u64,
    /// Daemon (`single node`, `API node`, `worker`) → its CPU µs per request, every thread,
    /// its sandboxes not included; `PostgreSQL`: the server processes of the cluster's
    /// database connections.
    pub per_daemon_us: std::collections::BTreeMap<String, f64>,
}

/// One load point against `t`, and what it cost the `daemons` in CPU time.
async fn point(
    who: &str,
    spec: load::LoadSpec,
    placement: &str,
    daemons: &[&Daemon],
    db: Option<&pg::Database>,
) -> anyhow::Result<(WarmPoint, CpuPerRequest)> {
    let c = spec.concurrency;
    let mut procs: Vec<(String, Vec<u32>)> = daemons
        .iter()
        .map(|d| (d.label.clone(), vec![d.pid]))
        .collect();
    if let Some(db) = db {
        procs.push((POSTGRES.to_owned(), backends(db)?));
    }
    let cpu = |pids: &[u32]| pids.iter().filter_map(|p| cpu_us(*p)).sum::<f64>();
    let before: Vec<f64> = procs.iter().map(|(_, pids)| cpu(pids)).collect();
    let run = load::run(spec).await?;
    let requests = run.samples.len() as u64 + run.errors + run.warmup_requests;
    let per_daemon_us = procs
        .iter()
        .zip(before)
        .filter(|_| requests > 0)
        .map(|((label, pids), b)| (label.clone(), (cpu(pids) - b) / requests as f64))
        .collect();
    let p = WarmPoint::from_run(c, placement, &run, nproc());
    progress(&format!(
        "  c={c} {who}: {} requests, p50 {}, p99 {}, {:.0}/s, {} errors",
        p.requests,
        fmt_opt_us(p.p50()),
        fmt_opt_us(p.latency_us.map(|s| s.p99)),
        p.throughput_per_s,
        p.errors
    ));
    let cpu = CpuPerRequest {
        concurrency: c,
        setup: who.to_owned(),
        placement: placement.to_owned(),
        requests,
        per_daemon_us,
    };
    Ok((p, cpu))
}

/// Sets the CPUs of the daemons' threads and of their sandboxes' processes.
fn pin(daemons: &[&Daemon], cpus: &str) -> anyhow::Result<()> {
    for d in daemons {
        taskset_all(d.pid, cpus).with_context(|| format!("pinning the {}", d.label))?;
        for pid in memory::sandbox_pids(&d.memory_cgroup()) {
            taskset_all(pid, cpus)?;
        }
    }
    Ok(())
}

/// The concurrency-1 point of each setup with it all and the client on CPU 0.
async fn pinned(
    cfg: &Config,
    rig: &Rig,
    (single, cluster): (&Target, &Target),
) -> anyhow::Result<((WarmPoint, WarmPoint, Difference), Vec<CpuPerRequest>)> {
    let all = all_cpus();
    let (mut points, mut cpus) = (Vec::new(), Vec::new());
    for (who, daemons, t) in [
        ("single node, all on CPU 0", vec![&rig.single], single),
        (
            "cluster, all on CPU 0",
            vec![&rig.api, &rig.worker],
            cluster,
        ),
    ] {
        let pinned = pin(&daemons, "0");
        let measured = match pinned {
            Ok(()) => {
                let db = (daemons.len() > 1).then_some(&rig.db);
                point(who, cfg.spec(t, 1, Some(0)), PIN_ALL, &daemons, db).await
            }
            Err(e) => Err(e),
        };
        // Back on every CPU whatever happened, before anything else runs.
        let unpinned = pin(&daemons, &all);
        let (p, cpu) = measured?;
        unpinned?;
        points.push(p);
        cpus.push(cpu);
    }
    let (Some(c), Some(s)) = (points.pop(), points.pop()) else {
        bail!("two pinned points expected");
    };
    let d = diff(1, &s, &c);
    Ok(((s, c, d), cpus))
}

/// One driver: both setups up at once, measured alternately.
async fn compare(
    cfg: &Config,
    cc: &ClusterConfig,
    server: &pg::PgUrl,
    driver: &str,
    n: u32,
) -> anyhow::Result<ClusterDriver> {
    let rig = Rig::start(cfg, server, driver, n).await?;
    let mut out = ClusterDriver {
        driver: driver.to_owned(),
        worker_address: rig.worker.addr.to_string(),
        single: Vec::new(),
        cluster: Vec::new(),
        difference: Vec::new(),
        pinned: None,
        cpu_per_request: Vec::new(),
        async_single: None,
        async_cluster: None,
        rtt: None,
        errors: Vec::new(),
    };
    for d in [&rig.single, &rig.api] {
        let mut conn = d.conn().await?;
        d.create_hello(&mut conn, FUNCTION)
            .await
            .with_context(|| format!("{} log:\n{}", d.label, d.log_tail(20)))?;
    }
    let (single, cluster) = (target(&rig.single), target(&rig.api));
    for (i, c) in CONCURRENCY.into_iter().enumerate() {
        // Alternate which goes first, so that neither always follows the other's load.
        let single_first = i % 2 == 0;
        let (a, b) = if single_first {
            (("single node", &single), ("cluster", &cluster))
        } else {
            (("cluster", &cluster), ("single node", &single))
        };
        let daemons = |who: &str| {
            if who == "cluster" {
                vec![&rig.api, &rig.worker]
            } else {
                vec![&rig.single]
            }
        };
        let db = |who: &str| (who == "cluster").then_some(&rig.db);
        let (pa, ca) = point(
            a.0,
            cfg.spec(a.1, c, None),
            SCHEDULER,
            &daemons(a.0),
            db(a.0),
        )
        .await
        .with_context(|| rig.logs())?;
        let (pb, cb) = point(
            b.0,
            cfg.spec(b.1, c, None),
            SCHEDULER,
            &daemons(b.0),
            db(b.0),
        )
        .await
        .with_context(|| rig.logs())?;
        out.cpu_per_request.extend([ca, cb]);
        let (ps, pc) = if single_first { (pa, pb) } else { (pb, pa) };
        out.difference.push(diff(c, &ps, &pc));
        out.single.push(ps);
        out.cluster.push(pc);
    }
    match pinned(cfg, &rig, (&single, &cluster)).await {
        Ok((p, cpu)) => {
            out.pinned = Some(p);
            out.cpu_per_request.extend(cpu);
        }
        Err(e) => out.errors.push(format!("all on CPU 0: {e:#}")),
    }
    progress(&format!(
        "{driver}: async accept, {} events on each (SQLite, then PostgreSQL)",
        cc.events
    ));
    match crate::events::measure(&rig.single, cc.events).await {
        Ok(f) => out.async_single = Some(f),
        Err(e) => out.errors.push(format!("async (single node): {e:#}")),
    }
    match crate::events::measure(&rig.api, cc.events).await {
        Ok(mut f) => {
            f.driver = driver.to_owned();
            out.async_cluster = Some(f);
        }
        Err(e) => out.errors.push(format!(
            "async (API node): {e:#}\nworker log:\n{}",
            rig.worker.log_tail(15)
        )),
    }
    let ns = rig
        .network
        .namespaces
        .first()
        .context("the network has no namespace")?;
    let (path, addr) = (ns.path(), SocketAddr::new(ns.addr.into(), 0));
    let rtt = tokio::task::spawn_blocking(move || crate::rtt::measure(&path, addr, RTT_SAMPLES))
        .await
        .context("joining the round-trip measure")?;
    match rtt {
        Ok(r) => out.rtt = Some(r),
        Err(e) => out.errors.push(format!("TCP round trips: {e:#}")),
    }
    let ns = ns.name.clone();
    progress(&format!(
        "{driver}: stopping the worker, the API node and the single node; removing {ns} and \
         the database"
    ));
    drop(rig);
    Ok(out)
}

/// Runs the comparison for each driver.
pub async fn run(
    cfg: &Config,
    cc: &ClusterConfig,
    drivers: &[String],
) -> anyhow::Result<ClusterResults> {
    let started = Instant::now();
    preflight()?;
    let machine = MachineInfo::collect();
    let server = database_server(cc.database_url.as_deref())?;
    let postgres_version = pg::psql(&server, "SHOW server_version")
        .with_context(|| format!("PostgreSQL at {server} does not answer"))?
        .trim()
        .to_owned();
    let mut out = Vec::new();
    for (i, d) in drivers.iter().enumerate() {
        let n = u32::try_from(i).unwrap_or(u32::MAX);
        out.push(compare(cfg, cc, &server, d, n).await?);
    }
    let mut machine = machine;
    machine.loadavg_end = crate::machine::loadavg();
    let mut notes = Vec::new();
    for d in &out {
        let pinned = d.pinned.iter().flat_map(|(s, c, _)| [s, c]);
        for p in d.single.iter().chain(&d.cluster).chain(pinned) {
            if p.errors > 0 || !p.warmup_complete || p.cold_during_measure > 0 {
                notes.push(format!(
                    "{} c={} ({}): {} errors {:?}, {} cold during the measure, warm-up complete: {}",
                    d.driver,
                    p.concurrency,
                    p.placement,
                    p.errors,
                    p.error_examples,
                    p.cold_during_measure,
                    p.warmup_complete
                ));
            }
        }
        notes.extend(d.errors.iter().map(|e| format!("{}: {e}", d.driver)));
    }
    notes.push(format!(
        "benchmark took {:.0} s",
        started.elapsed().as_secs_f64()
    ));
    Ok(ClusterResults {
        machine,
        settings: ClusterSettings {
            drivers: drivers.to_vec(),
            point_duration_s: cfg.point.as_secs_f64(),
            payload_bytes: cfg.payload.len(),
            events: cc.events,
            concurrency: CONCURRENCY.to_vec(),
            postgres_version,
            budget_extra_p50_us: BUDGET_EXTRA_P50_US,
        },
        drivers: out,
        notes,
    })
}

fn signed(us: Option<f64>) -> String {
    match us {
        Some(v) if v >= 0.0 => format!("+{}", fmt_us(v)),
        Some(v) => format!("−{}", fmt_us(-v)),
        None => "n/a".to_owned(),
    }
}

/// The human-readable report.
pub fn render(r: &ClusterResults) -> String {
    let mut out = String::new();
    let m = &r.machine;
    let _ = writeln!(
        out,
        "Skyscale cluster benchmark — {} × {}, kernel {}, {} MiB RAM, load average {} → {}\n  {} | PostgreSQL {} | {} | {}",
        m.nproc,
        m.cpu_model,
        m.kernel,
        m.memory_total_mib.unwrap_or(0),
        m.loadavg_start,
        m.loadavg_end,
        m.runc,
        r.settings.postgres_version,
        m.python,
        m.date,
    );
    for d in &r.drivers {
        let _ = writeln!(
            out,
            "\nCLUSTER vs SINGLE NODE — {}, warm hello world, {} B JSON, HTTP/1.1 keep-alive, {:.1} s per point\n  \
             single node: role all, SQLite | cluster: API node (127.0.0.1, PostgreSQL) → worker {} (own network namespace, veth pair)",
            d.driver, r.settings.payload_bytes, r.settings.point_duration_s, d.worker_address
        );
        let mut t = Table::new(&[
            "conc",
            "setup",
            "requests",
            "err",
            "p50",
            "p90",
            "p99",
            "inv/s",
            "budget (design.md)",
        ]);
        for ((s, c), diff) in d.single.iter().zip(&d.cluster).zip(&d.difference) {
            for (who, p) in [("single node", s), ("cluster", c)] {
                let l = p.latency_us;
                t.row(vec![
                    p.concurrency.to_string(),
                    who.to_owned(),
                    p.requests.to_string(),
                    p.errors.to_string(),
                    fmt_opt_us(l.map(|s| s.p50)),
                    fmt_opt_us(l.map(|s| s.p90)),
                    fmt_opt_us(l.map(|s| s.p99)),
                    format!("{:.0}", p.throughput_per_s),
                    String::new(),
                ]);
            }
            let budget = if diff.concurrency == 1 {
                format!(
                    "p50 ≤ +{BUDGET_EXTRA_P50_US:.0} µs {}",
                    check_le(diff.p50_us, BUDGET_EXTRA_P50_US)
                )
            } else {
                String::new()
            };
            t.row(vec![
                diff.concurrency.to_string(),
                "difference".to_owned(),
                String::new(),
                String::new(),
                signed(diff.p50_us),
                String::new(),
                signed(diff.p99_us),
                diff.throughput_ratio
                    .map_or("n/a".to_owned(), |x| format!("{x:.2}×")),
                budget,
            ]);
        }
        if let Some((s, c, diff)) = &d.pinned {
            for (who, p) in [
                ("single node, all on CPU 0", s),
                ("cluster, all on CPU 0", c),
            ] {
                let l = p.latency_us;
                t.row(vec![
                    "1".to_owned(),
                    who.to_owned(),
                    p.requests.to_string(),
                    p.errors.to_string(),
                    fmt_opt_us(l.map(|s| s.p50)),
                    fmt_opt_us(l.map(|s| s.p90)),
                    fmt_opt_us(l.map(|s| s.p99)),
                    format!("{:.0}", p.throughput_per_s),
                    String::new(),
                ]);
            }
            t.row(vec![
                "1".to_owned(),
                "difference, all on CPU 0".to_owned(),
                String::new(),
                String::new(),
                signed(diff.p50_us),
                String::new(),
                signed(diff.p99_us),
                diff.throughput_ratio
                    .map_or("n/a".to_owned(), |x| format!("{x:.2}×")),
                String::new(),
            ]);
        }
        t.render(&mut out);

        let _ = writeln!(
            out,
            "\nWHERE THE TIME GOES (server-timing medians; cluster: auth and lookup on the API node, acquire/channel/runtime on the worker,\n  \
             unaccounted = the API node's total minus those: routing, the hop to the worker and back, the worker's HTTP)"
        );
        let mut head = vec!["conc", "setup", "client p50"];
        head.extend(PHASES);
        head.extend(["unaccounted", "client↔server HTTP"]);
        let mut t = Table::new(&head);
        let pinned = d
            .pinned
            .iter()
            .map(|(s, c, _)| (s, c))
            .map(|(s, c)| ((s, "single node, CPU 0"), (c, "cluster, CPU 0")));
        let unpinned = d
            .single
            .iter()
            .zip(&d.cluster)
            .map(|(s, c)| ((s, "single node"), (c, "cluster")));
        for (s, c) in unpinned.chain(pinned) {
            for (p, who) in [s, c] {
                let mut row = vec![p.concurrency.to_string(), who.to_owned()];
                match &p.breakdown {
                    Some(b) => {
                        row.push(fmt_opt_us(b.client_p50_us));
                        row.extend(phase_values(b).into_iter().map(|(_, v)| fmt_opt_us(v)));
                    }
                    None => row.extend(std::iter::repeat_n("n/a".to_owned(), PHASES.len() + 3)),
                }
                t.row(row);
            }
        }
        t.render(&mut out);

        let _ = writeln!(
            out,
            "\nCPU TIME PER REQUEST of each daemon (every thread, not its sandboxes) and of the cluster database's PostgreSQL server processes\n  (over the whole point, warm-up included; the single node's SQLite runs inside it)"
        );
        let mut t = Table::new(&[
            "conc",
            "setup",
            "requests",
            "single node",
            "API node",
            "worker",
            POSTGRES,
            "sum",
        ]);
        for c in &d.cpu_per_request {
            let get = |k: &str| c.per_daemon_us.get(k).copied();
            t.row(vec![
                c.concurrency.to_string(),
                c.setup.clone(),
                c.requests.to_string(),
                fmt_opt_us(get("single node")),
                fmt_opt_us(get("API node")),
                fmt_opt_us(get("worker")),
                fmt_opt_us(get(POSTGRES)),
                fmt_us(c.per_daemon_us.values().sum()),
            ]);
        }
        t.render(&mut out);
        if let Some(rtt) = &d.rtt {
            let q = |s: Option<crate::stats::Summary>| {
                s.map_or("n/a".to_owned(), |s| {
                    format!("p50 {} / p99 {}", fmt_us(s.p50), fmt_us(s.p99))
                })
            };
            let _ = writeln!(
                out,
                "  reference: a {} B TCP round trip across the veth pair {}, on loopback {} ({} each)",
                rtt.message_bytes,
                q(rtt.veth_us),
                q(rtt.loopback_us),
                rtt.round_trips
            );
        }
        let _ = writeln!(
            out,
            "\nASYNC accept (request sent until the 202: the event committed), one keep-alive connection"
        );
        let mut t = Table::new(&[
            "setup",
            "events",
            "accept p50",
            "accept p99",
            "events/s accept → done",
            "sync p50 (same node)",
            "sync p99",
        ]);
        for (who, f) in [
            ("single node (SQLite)", &d.async_single),
            ("API node (PostgreSQL)", &d.async_cluster),
        ] {
            match f {
                Some(f) => t.row(vec![
                    who.to_owned(),
                    f.events.to_string(),
                    fmt_opt_us(f.accept_us.map(|s| s.p50)),
                    fmt_opt_us(f.accept_us.map(|s| s.p99)),
                    format!("{:.0}", f.throughput_per_s),
                    fmt_opt_us(f.sync_us.map(|s| s.p50)),
                    fmt_opt_us(f.sync_us.map(|s| s.p99)),
                ]),
                None => t.row(vec![who.to_owned(), "failed".to_owned()]),
            }
        }
        t.render(&mut out);
    }
    if !r.notes.is_empty() {
        let _ = writeln!(out, "\nNOTES");
        for n in &r.notes {
            let _ = writeln!(out, "  - {n}");
        }
    }
    out
}
