//! Cold starts of real functions (`--real`): a FastAPI app behind mangum, an
//! aws-lambda-powertools app (Logger and a REST event handler) and a numpy handler, each
//! deployed as a zip of its vendored packages (`scripts/test-vendor`), on each driver and
//! with the control plane's deploy-time bytecode on and/or off (`SKYSCALE_BYTECODE`), next
//! to the same imports in a fresh `python3` process on the host (the floor), from source
//! and from pycs, measured in the same run.
//!
//! One sample: wait until the host is quiet (the generic pool full, the previous sample's
//! sandbox gone), deploy a new package (the app plus a file naming the sample, so that it
//! is a new package and a new revision: stored, unpacked and compiled afresh), wait again
//! (the deploy retired the previous sandbox), then invoke once, as a user would after a
//! deploy. The answer must be a cold start; its `server-timing` gives the phases, and the
//! app reports how long its own module's imports took.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use hyper::Method;
use serde::Serialize;

use crate::cold::{settle, Settle};
use crate::daemon::Daemon;
use crate::http::{Conn, Reply};
use crate::load::{COLD_START_HEADER, SERVER_TIMING_HEADER};
use crate::machine::MachineInfo;
use crate::scenario::progress;
use crate::stats::{fmt_us, median, parse_server_timing, Summary};

/// The generic pool of the measured daemons: every sample takes one generic sandbox, and
/// the next waits until it is replaced.
const POOL: u32 = 2;
/// The `server-timing` phases of a cold start, in order (see skyscale-http `v1/invoke.rs`).
const PHASES: [&str; 5] = ["sandbox", "place", "init", "channel", "runtime"];
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

/// One real function.
pub struct App {
    pub name: &'static str,
    /// The `scripts/test-vendor` set its packages come from.
    pub vendor: &'static str,
    /// `handler.py`; it sets `IMPORT_MS` (its own imports, in ms) and returns it.
    pub handler: &'static str,
    /// The event it is invoked with.
    pub event: &'static str,
}

pub const APPS: [App; 3] = [
    App {
        name: "fastapi",
        vendor: "web",
        handler: r#"import time
_T0, _C0 = time.perf_counter(), time.process_time()
from fastapi import FastAPI
from mangum import Mangum

app = FastAPI()


@app.get("/")
def root():
    return {"import_ms": IMPORT_MS, "import_cpu_ms": IMPORT_CPU_MS}


handler = Mangum(app, lifespan="off")
IMPORT_MS = (time.perf_counter() - _T0) * 1000
IMPORT_CPU_MS = (time.process_time() - _C0) * 1000
"#,
        event: r#"{"version":"2.0","routeKey":"$default","rawPath":"/","rawQueryString":"","headers":{"host":"bench.example","user-agent":"skyscale-bench"},"requestContext":{"accountId":"000000000000","apiId":"bench","domainName":"bench.example","domainPrefix":"bench","http":{"method":"GET","path":"/","protocol":"HTTP/1.1","sourceIp":"127.0.0.1","userAgent":"skyscale-bench"},"requestId":"bench","routeKey":"$default","stage":"$default","time":"07/Dec/2026:00:00:00 +0000","timeEpoch":0},"isBase64Encoded":false}"#,
    },
    App {
        name: "powertools",
        vendor: "powertools",
        handler: r#"import time
_T0, _C0 = time.perf_counter(), time.process_time()
from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver

logger = Logger(service="bench")
app = APIGatewayRestResolver()


@app.get("/hello")
def hello():
    logger.info("hello")
    return {"import_ms": IMPORT_MS, "import_cpu_ms": IMPORT_CPU_MS}


@logger.inject_lambda_context
def handler(event, context):
    return app.resolve(event, context)


IMPORT_MS = (time.perf_counter() - _T0) * 1000
IMPORT_CPU_MS = (time.process_time() - _C0) * 1000
"#,
        event: r#"{"resource":"/hello","path":"/hello","httpMethod":"GET","headers":{"Host":"bench.example"},"multiValueHeaders":{"Host":["bench.example"]},"queryStringParameters":null,"multiValueQueryStringParameters":null,"pathParameters":null,"stageVariables":null,"requestContext":{"resourcePath":"/hello","httpMethod":"GET","path":"/prod/hello","stage":"prod","requestId":"bench","accountId":"000000000000","apiId":"bench","identity":{"sourceIp":"127.0.0.1"}},"body":null,"isBase64Encoded":false}"#,
    },
    App {
        name: "numpy",
        vendor: "numpy",
        handler: r#"import time
_T0, _C0 = time.perf_counter(), time.process_time()
import numpy as np

IMPORT_MS = (time.perf_counter() - _T0) * 1000
IMPORT_CPU_MS = (time.process_time() - _C0) * 1000


def handler(event, context):
    a = np.arange(12, dtype=np.float64).reshape(3, 4)
    return {"import_ms": IMPORT_MS, "import_cpu_ms": IMPORT_CPU_MS, "trace": float((a @ a.T).trace())}
"#,
        event: "{}",
    },
];

/// The figures of one setup (a driver with bytecode on or off, or the host floor) for one app.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub setup: String,
    pub samples: usize,
    pub errors: usize,
    pub error_examples: Vec<String>,
    /// Deploy (`PUT /v1/functions/<name>/code`) until its answer.
    pub deploy_ms: Option<Summary>,
    /// The first request after the deploy, as the client saw it; on the host: the whole
    /// `python3` process, start to exit.
    pub first_request_ms: Option<Summary>,
    /// Medians of the `server-timing` phases of a cold start, ms.
    pub phases_ms: BTreeMap<String, f64>,
    /// Median of the app module's own imports, as it measured them (wall clock).
    pub imports_ms: Option<f64>,
    /// The same in CPU time of its process (`time.process_time()`): what compiling costs,
    /// less sensitive to a busy host than the wall clock.
    pub imports_cpu_ms: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AppResults {
    pub app: String,
    pub zip_bytes: usize,
    pub rows: Vec<Row>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RealResults {
    pub machine: MachineInfo,
    pub samples: usize,
    pub pool: u32,
    pub apps: Vec<AppResults>,
    pub errors: Vec<String>,
}

pub struct RealConfig {
    pub bin_dir: PathBuf,
    pub drivers: Vec<String>,
    /// `SKYSCALE_BYTECODE` values to measure each driver with (`on`, `off`).
    pub bytecode: Vec<String>,
    pub samples: usize,
    /// `scripts/test-vendor`.
    pub vendor_script: PathBuf,
    /// Also measure the first request with a provisioned sandbox and, on gVisor, with a
    /// SnapStart snapshot.
    pub ready: bool,
}

/// Runs the section.
pub async fn run(cfg: &RealConfig) -> anyhow::Result<RealResults> {
    let mut apps = Vec::new();
    for app in &APPS {
        let dir = vendor(&cfg.vendor_script, app.vendor)?;
        let zip = tokio::task::spawn_blocking(move || base_zip(&dir, app.handler))
            .await?
            .with_context(|| format!("zipping the {} app", app.name))?;
        apps.push((app, zip));
    }
    let mut out: Vec<AppResults> = apps
        .iter()
        .map(|(app, zip)| AppResults {
            app: app.name.to_owned(),
            zip_bytes: zip.len(),
            rows: Vec::new(),
        })
        .collect();
    let mut errors = Vec::new();
    for driver in &cfg.drivers {
        // One daemon per bytecode setting, alive together: their samples alternate, so a
        // change in the host's load falls on both.
        let mut daemons = Vec::new();
        for bytecode in &cfg.bytecode {
            let setup = format!("{driver}, bytecode {bytecode}");
            match Daemon::start(
                &cfg.bin_dir,
                driver,
                &[
                    ("WARM_POOL_SIZE", POOL.to_string()),
                    ("SKYSCALE_BYTECODE", bytecode.clone()),
                ],
            )
            .await
            {
                Ok(d) => daemons.push((setup, d)),
                Err(e) => errors.push(format!("{setup}: {e:#}")),
            }
        }
        for ((app, zip), results) in apps.iter().zip(out.iter_mut()) {
            progress(&format!("real functions: {driver}, {}", app.name));
            let mut series = Vec::new();
            // The ready modes run on the last daemon (the default bytecode setting comes
            // last): provisioned everywhere, SnapStart where the driver snapshots.
            let mut setups: Vec<(String, &Daemon, Mode)> = daemons
                .iter()
                .map(|(setup, d)| (setup.clone(), d, Mode::OnDemand))
                .collect();
            if let Some((setup, d)) = daemons.last() {
                if cfg.ready {
                    setups.push((format!("{setup}, provisioned"), d, Mode::Provisioned));
                    if driver == "gvisor" {
                        setups.push((format!("{setup}, snapstart"), d, Mode::SnapStart));
                    }
                }
            }
            for (setup, d, mode) in &setups {
                match Series::create(d, setup, app, zip, *mode).await {
                    Ok(s) => series.push(s),
                    Err(e) => results.rows.push(Row {
                        errors: 1,
                        error_examples: vec![format!("{e:#}; daemon log:\n{}", d.log_tail(10))],
                        ..Row::empty(setup)
                    }),
                }
            }
            for i in 0..cfg.samples {
                // Which setup goes first alternates.
                if i > 0 {
                    series.reverse();
                }
                for one in &mut series {
                    if let Err(e) = one.sample(i, &daemons).await {
                        let tail = one.d.log_tail(10);
                        one.row
                            .fail(format!("sample {i}: {e:#}; daemon log:\n{tail}"));
                    }
                }
            }
            if cfg.samples.is_multiple_of(2) {
                series.reverse();
            }
            for s in series {
                let row = s.finish().await;
                progress(&format!(
                    "  {}: first request p50 {}, {} errors",
                    row.setup,
                    row.first_request_ms
                        .map_or("n/a".to_owned(), |s| fmt_us(s.p50 * 1e3)),
                    row.errors
                ));
                results.rows.push(row);
            }
        }
    }
    for ((app, _), results) in apps.iter().zip(out.iter_mut()) {
        progress(&format!("real functions: {} on the host", app.name));
        let dir = vendor(&cfg.vendor_script, app.vendor)?;
        match floor(&dir, app, cfg.samples).await {
            Ok(rows) => results.rows.extend(rows),
            Err(e) => errors.push(format!("{} floor: {e:#}", app.name)),
        }
    }
    Ok(RealResults {
        machine: MachineInfo::collect(),
        samples: cfg.samples,
        pool: POOL,
        apps: out,
        errors,
    })
}

impl Row {
    fn empty(setup: &str) -> Row {
        Row {
            setup: setup.to_owned(),
            samples: 0,
            errors: 0,
            error_examples: Vec::new(),
            deploy_ms: None,
            first_request_ms: None,
            phases_ms: BTreeMap::new(),
            imports_ms: None,
            imports_cpu_ms: None,
        }
    }

    fn fail(&mut self, msg: String) {
        self.errors += 1;
        if self.error_examples.len() < 3 {
            self.error_examples.push(msg);
        }
    }
}

/// The directory `scripts/test-vendor <set>` prints (building the set the first time).
fn vendor(script: &Path, set: &str) -> anyhow::Result<PathBuf> {
    let out = std::process::Command::new(script)
        .arg(set)
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| {
            format!(
                "running {} {set} (run the benchmark from the repository's root, or pass \
                 --vendor-script)",
                script.display()
            )
        })?;
    if !out.status.success() {
        bail!("{} {set} failed ({})", script.display(), out.status);
    }
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}

/// Every file under `dir` except `__pycache__` directories, relative to it, sorted.
fn files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for entry in std::fs::read_dir(dir.join(&rel))? {
            let entry = entry?;
            let path = rel.join(entry.file_name());
            let kind = entry.file_type()?;
            if kind.is_dir() {
                if entry.file_name() != "__pycache__" {
                    stack.push(path);
                }
            } else if kind.is_file() {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The app's zip: its vendored packages (without any `__pycache__` the host's Python may
/// have written there) and `handler.py`.
fn base_zip(dir: &Path, handler: &str) -> anyhow::Result<Vec<u8>> {
    use zip::write::SimpleFileOptions;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for rel in files(dir)? {
        let mode = std::fs::metadata(dir.join(&rel))
            .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()))
            .unwrap_or(0o644);
        let name = rel
            .to_str()
            .with_context(|| format!("{} is not UTF-8", rel.display()))?;
        w.start_file(name, SimpleFileOptions::default().unix_permissions(mode))?;
        w.write_all(&std::fs::read(dir.join(&rel))?)?;
    }
    w.start_file("handler.py", SimpleFileOptions::default())?;
    w.write_all(handler.as_bytes())?;
    Ok(w.finish()?.into_inner())
}

/// The base zip with a file naming the sample appended (no recompression): a new package.
fn sample_zip(base: &[u8], sample: &str) -> anyhow::Result<Vec<u8>> {
    let mut w = zip::ZipWriter::new_append(std::io::Cursor::new(base.to_vec()))?;
    w.start_file("bench-sample.txt", zip::write::SimpleFileOptions::default())?;
    w.write_all(sample.as_bytes())?;
    Ok(w.finish()?.into_inner())
}

async fn send(conn: &mut Conn, method: Method, path: &str, body: Vec<u8>) -> anyhow::Result<Reply> {
    conn.send(method, path, &[], Bytes::from(body)).await
}

/// Waits until the pool is full and no other sandbox is left.
async fn quiet(d: &Daemon, admin: &mut Conn) -> bool {
    settle(d, admin, POOL, &Settle::Poll, SETTLE_TIMEOUT).await
}

/// Waits until the generic pool of every daemon of `all` is full (none is booting one); their
/// functions' idle sandboxes may stay.
async fn pools_full(all: &[(String, Daemon)]) -> anyhow::Result<bool> {
    for (_, d) in all {
        let mut conn = d.conn().await?;
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            let idle = d
                .health(&mut conn)
                .await?
                .get("warm_pool_idle")
                .and_then(|v| v.as_u64());
            if idle == Some(u64::from(POOL)) {
                break;
            }
            if Instant::now() > deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    Ok(true)
}

/// `IMPORT_MS` from the app's answer: in the body, or in the body of the HTTP response an
/// API Gateway handler returns.
fn imports_ms(body: &[u8]) -> Option<(f64, Option<f64>)> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let doc = match v.get("body").and_then(serde_json::Value::as_str) {
        Some(inner) => serde_json::from_str(inner).ok()?,
        None => v,
    };
    let wall = doc.get("import_ms")?.as_f64()?;
    Some((
        wall,
        doc.get("import_cpu_ms").and_then(serde_json::Value::as_f64),
    ))
}

/// How the function of a series meets its first request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A deploy, then a cold start on demand (the section's main rows).
    OnDemand,
    /// Published, and a provisioned concurrency of 1 on the version, `READY` before the
    /// first request: it finds an initialised sandbox.
    Provisioned,
    /// Created with SnapStart and published; the first request after the version's
    /// snapshot is ready restores it.
    SnapStart,
}

impl Mode {
    pub fn label(self) -> &'static str {
        match self {
            Mode::OnDemand => "on demand",
            Mode::Provisioned => "provisioned",
            Mode::SnapStart => "snapstart",
        }
    }
}

/// Whether an answer says the version is ready for its first request.
type ReadyCheck = Box<dyn Fn(&serde_json::Value) -> bool>;

/// How long a provisioned sandbox or a snapshot may take to be ready.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// One app on one daemon: its function and the samples taken so far.
struct Series<'a> {
    mode: Mode,
    d: &'a Daemon,
    app: &'a App,
    zip: &'a [u8],
    name: String,
    admin: Conn,
    invoker: Conn,
    row: Row,
    deploys: Vec<f64>,
    firsts: Vec<f64>,
    imports: Vec<f64>,
    imports_cpu: Vec<f64>,
    phases: BTreeMap<String, Vec<f64>>,
}

impl<'a> Series<'a> {
    async fn create(
        d: &'a Daemon,
        setup: &str,
        app: &'a App,
        zip: &'a [u8],
        mode: Mode,
    ) -> anyhow::Result<Series<'a>> {
        let admin = d.conn().await?;
        let invoker = d.conn().await?;
        let name = format!("bench-{}", app.name);
        let series = Series {
            mode,
            d,
            app,
            zip,
            name,
            admin,
            invoker,
            row: Row::empty(setup),
            deploys: Vec::new(),
            firsts: Vec::new(),
            imports: Vec::new(),
            imports_cpu: Vec::new(),
            phases: BTreeMap::new(),
        };
        if mode != Mode::OnDemand {
            // Each sample creates (deploys) and deletes a function of its own.
            return Ok(series);
        }
        let mut series = series;
        let r = series
            .create_function(&series.name.clone(), "created")
            .await?;
        if r.status != 201 {
            bail!(
                "creating {}: HTTP {} {}",
                series.name,
                r.status,
                r.body_excerpt()
            );
        }
        Ok(series)
    }

    /// `POST /v1/functions` of the app's code (made a new package by `marker`), with
    /// SnapStart in that mode.
    async fn create_function(&mut self, name: &str, marker: &str) -> anyhow::Result<Reply> {
        let mut create = serde_json::json!({
            "name": name,
            "runtime": "python3.11",
            "handler": "handler.handler",
            "memory_mb": 1769,
            "timeout_s": 60,
            "code_zip_base64": base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                sample_zip(self.zip, marker)?
            ),
        });
        if self.mode == Mode::SnapStart {
            create["snap_start"] = "PublishedVersions".into();
        }
        send(
            &mut self.admin,
            Method::POST,
            "/v1/functions",
            serde_json::to_vec(&create)?,
        )
        .await
    }

    /// A provisioned or SnapStart sample: create the function (the deploy), publish it,
    /// wait until the version is ready (its provisioned sandbox `READY`, or its snapshot
    /// `On`) and the host quiet otherwise, then invoke the version once; delete the
    /// function.
    async fn sample_ready(&mut self, i: usize, all: &[(String, Daemon)]) -> anyhow::Result<()> {
        let name = format!("{}-{}-{i}", self.name, self.mode.label().replace(' ', "-"));
        let t = Instant::now();
        let r = self
            .create_function(&name, &format!("{} sample {i}", self.row.setup))
            .await?;
        self.deploys.push(t.elapsed().as_secs_f64() * 1e3);
        if r.status != 201 {
            bail!("creating {name}: HTTP {} {}", r.status, r.body_excerpt());
        }
        let outcome = self.first_ready_request(&name, all).await;
        let r = send(
            &mut self.admin,
            Method::DELETE,
            &format!("/v1/functions/{name}"),
            Vec::new(),
        )
        .await?;
        if !(200..300).contains(&r.status) {
            bail!("deleting {name}: HTTP {} {}", r.status, r.body_excerpt());
        }
        outcome
    }

    async fn first_ready_request(
        &mut self,
        name: &str,
        all: &[(String, Daemon)],
    ) -> anyhow::Result<()> {
        let r = send(
            &mut self.admin,
            Method::POST,
            &format!("/v1/functions/{name}/versions"),
            b"{}".to_vec(),
        )
        .await?;
        if r.status != 201 && r.status != 200 {
            bail!("publishing: HTTP {} {}", r.status, r.body_excerpt());
        }
        let version = serde_json::from_slice::<serde_json::Value>(&r.body)?["version"]
            .as_u64()
            .context("the published version's number")?;
        let (path, ready): (String, ReadyCheck) = match self.mode {
            Mode::Provisioned => {
                let path = format!("/v1/functions/{name}/provisioned/{version}");
                let r = send(
                    &mut self.admin,
                    Method::PUT,
                    &path,
                    br#"{"requested": 1}"#.to_vec(),
                )
                .await?;
                if !(200..300).contains(&r.status) {
                    bail!("provisioning: HTTP {} {}", r.status, r.body_excerpt());
                }
                (path, Box::new(|v| v["status"] == "READY"))
            }
            // The version's entry in the list of versions.
            _ => (
                format!("/v1/functions/{name}/versions"),
                Box::new(move |v| {
                    v["versions"].as_array().is_some_and(|all| {
                        all.iter().any(|f| {
                            f["version"] == version
                                && f["snap_start"]["optimization_status"] == "On"
                        })
                    })
                }),
            ),
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let r = self.admin.get(&path).await?;
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
            if ready(&v) {
                break;
            }
            if Instant::now() > deadline {
                bail!("not ready within {READY_TIMEOUT:?}: {v}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if !pools_full(all).await? {
            self.row
                .fail("the pools did not fill before the request".to_owned());
        }
        let path = format!("/v1/functions/{name}/invoke?qualifier={version}");
        self.first_request(&path, self.mode == Mode::SnapStart)
            .await
    }

    /// Deploys a new package and invokes once, on a quiet host: this daemon's previous
    /// sandbox gone and its pool full, every other daemon's pool full.
    async fn sample(&mut self, i: usize, all: &[(String, Daemon)]) -> anyhow::Result<()> {
        if self.mode != Mode::OnDemand {
            return self.sample_ready(i, all).await;
        }
        let body = sample_zip(self.zip, &format!("{} sample {i}", self.row.setup))?;
        let t = Instant::now();
        let path = format!("/v1/functions/{}/code", self.name);
        let r = send(&mut self.admin, Method::PUT, &path, body).await?;
        let deploy = t.elapsed();
        if r.status != 200 {
            bail!("deploy: HTTP {} {}", r.status, r.body_excerpt());
        }
        self.deploys.push(deploy.as_secs_f64() * 1e3);
        if !(quiet(self.d, &mut self.admin).await && pools_full(all).await?) {
            self.row.fail(format!(
                "sample {i}: the host did not settle within {SETTLE_TIMEOUT:?}"
            ));
        }
        let path = format!("/v1/functions/{}/invoke", self.name);
        self.first_request(&path, true).await
    }

    /// The sample's request, timed, and its figures kept (`cold`: whether it must be a
    /// cold start).
    async fn first_request(&mut self, path: &str, cold: bool) -> anyhow::Result<()> {
        self.row.samples += 1;
        let t = Instant::now();
        let reply = self
            .invoker
            .post(path, Bytes::from_static(self.app.event.as_bytes()))
            .await;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        let reply = match reply {
            Ok(r) => r,
            Err(e) => {
                self.invoker = self.d.conn().await?;
                return Err(e);
            }
        };
        self.record(reply, ms, cold)
    }

    /// Checks a first request's answer (`cold`: whether it must be a cold start) and
    /// keeps its figures.
    fn record(&mut self, reply: Reply, ms: f64, cold: bool) -> anyhow::Result<()> {
        if reply.status != 200 || reply.header("x-skyscale-function-error").is_some() {
            bail!(
                "HTTP {}, the function answered {}",
                reply.status,
                reply.body_excerpt()
            );
        }
        let was_cold = reply.header(COLD_START_HEADER) == Some("true");
        if was_cold != cold {
            bail!("{COLD_START_HEADER} is {was_cold}, expected {cold}");
        }
        let Some((import, import_cpu)) = imports_ms(&reply.body) else {
            bail!("no import_ms in the answer {}", reply.body_excerpt());
        };
        self.firsts.push(ms);
        self.imports.push(import);
        self.imports_cpu.extend(import_cpu);
        for (phase, ms) in reply
            .header(SERVER_TIMING_HEADER)
            .and_then(|h| parse_server_timing(h).ok())
            .unwrap_or_default()
        {
            self.phases.entry(phase).or_default().push(ms);
        }
        Ok(())
    }

    /// Deletes the function (its sandbox goes) and sums up.
    async fn finish(mut self) -> Row {
        if self.mode != Mode::OnDemand {
            return self.summed();
        }
        let path = format!("/v1/functions/{}", self.name);
        match send(&mut self.admin, Method::DELETE, &path, Vec::new()).await {
            Ok(r) if (200..300).contains(&r.status) => {}
            Ok(r) => self.row.fail(format!(
                "deleting {}: HTTP {} {}",
                self.name,
                r.status,
                r.body_excerpt()
            )),
            Err(e) => self.row.fail(format!("deleting {}: {e:#}", self.name)),
        }
        quiet(self.d, &mut self.admin).await;
        self.summed()
    }

    fn summed(self) -> Row {
        let mut row = self.row;
        row.deploy_ms = Summary::of(&self.deploys);
        row.first_request_ms = Summary::of(&self.firsts);
        row.imports_ms = median(&self.imports);
        row.imports_cpu_ms = median(&self.imports_cpu);
        row.phases_ms = self
            .phases
            .into_iter()
            .filter_map(|(k, v)| median(&v).map(|m| (k, m)))
            .collect();
        row
    }
}

/// The floor: a fresh `/usr/bin/python3` importing the app's `handler` module, `n` times
/// from source (`-B`, a copy of its files without `__pycache__`) and `n` times from the
/// pycs a first run wrote into another copy, as on a developer's machine; alternating.
async fn floor(vendor: &Path, app: &App, n: usize) -> anyhow::Result<Vec<Row>> {
    let dir = tempfile::Builder::new()
        .prefix("skyscale-bench-real-")
        .tempdir()?;
    let (source, pycs) = (dir.path().join("source"), dir.path().join("pycs"));
    for root in [&source, &pycs] {
        let (src, dst) = (vendor.to_path_buf(), root.clone());
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            for rel in files(&src)? {
                if let Some(parent) = dst.join(&rel).parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::copy(src.join(&rel), dst.join(&rel))?;
            }
            Ok(())
        })
        .await??;
        std::fs::write(root.join("handler.py"), app.handler)?;
    }
    // Writes the pycs.
    run_python(&pycs, false).await?;
    if !pycs.join("__pycache__").is_dir() {
        bail!("python3 wrote no pycs into {}", pycs.display());
    }
    let mut rows = [
        (Row::empty("host python3, from source"), &source, true),
        (Row::empty("host python3, from pycs"), &pycs, false),
    ]
    .map(|(row, root, no_bytecode)| (row, root, no_bytecode, Vec::new(), Vec::new(), Vec::new()));
    for _ in 0..n {
        for (row, root, no_bytecode, wall, imports, cpu) in rows.iter_mut() {
            row.samples += 1;
            match run_python(root, *no_bytecode).await {
                Ok((ms, import, import_cpu)) => {
                    wall.push(ms);
                    imports.push(import);
                    cpu.push(import_cpu);
                }
                Err(e) => row.fail(format!("{e:#}")),
            }
        }
    }
    Ok(rows
        .into_iter()
        .map(|(mut row, _, _, wall, imports, cpu)| {
            row.first_request_ms = Summary::of(&wall);
            row.imports_ms = median(&imports);
            row.imports_cpu_ms = median(&cpu);
            row
        })
        .collect())
}

/// One `python3 -c 'import handler'` in `root`: its wall time and the module's `IMPORT_MS`.
async fn run_python(root: &Path, no_bytecode: bool) -> anyhow::Result<(f64, f64, f64)> {
    let mut cmd = tokio::process::Command::new("/usr/bin/python3");
    // Whatever the benchmark's own environment says about bytecode.
    if no_bytecode {
        cmd.arg("-B").env("PYTHONDONTWRITEBYTECODE", "1");
    } else {
        cmd.env_remove("PYTHONDONTWRITEBYTECODE");
    }
    let t = Instant::now();
    let out = cmd
        .args([
            "-c",
            "import sys; sys.path.insert(0, sys.argv[1]); import handler; \
             print(handler.IMPORT_MS, handler.IMPORT_CPU_MS)",
        ])
        .arg(root)
        .current_dir(root)
        .output()
        .await
        .context("starting /usr/bin/python3")?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    if !out.status.success() {
        bail!(
            "python3 failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut figures = text.split_whitespace().map(str::parse::<f64>);
    match (figures.next(), figures.next()) {
        (Some(Ok(wall)), Some(Ok(cpu))) => Ok((ms, wall, cpu)),
        _ => bail!("the handler printed {text:?}, not IMPORT_MS and IMPORT_CPU_MS"),
    }
}

fn ms(v: Option<f64>) -> String {
    v.map_or("—".to_owned(), |v| {
        if v >= 100.0 {
            format!("{v:.0}")
        } else {
            format!("{v:.1}")
        }
    })
}

/// The table: per app, one line per setup.
pub fn render(r: &RealResults) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "COLD STARTS OF REAL FUNCTIONS — {} samples per setup, ms; first request p50 (min–max); \
         phases are medians of server-timing; imports = the app module's own, as it timed them \
         (wall; imp cpu: its process's CPU time); \
         host rows: a fresh python3 process, start to exit\n",
        r.samples
    ));
    for app in &r.apps {
        s.push_str(&format!(
            "\n{} (zip {:.1} MB)\n",
            app.app,
            app.zip_bytes as f64 / 1e6
        ));
        s.push_str(&format!(
            "{:<28} {:>20} {:>8} {:>8} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6}\n",
            "setup",
            "first request",
            "deploy",
            "sandbox",
            "place",
            "init",
            "imports",
            "imp cpu",
            "channel",
            "runtime",
            "other",
            "errors"
        ));
        for row in &app.rows {
            let first = row.first_request_ms.map_or("—".to_owned(), |x| {
                format!(
                    "{} ({}–{})",
                    ms(Some(x.p50)),
                    ms(Some(x.min)),
                    ms(Some(x.max))
                )
            });
            let phase = |p: &str| row.phases_ms.get(p).copied();
            // First request minus the phases: lookup, auth, HTTP, the client.
            let other = row.first_request_ms.and_then(|x| {
                let parts: f64 = PHASES.iter().filter_map(|p| phase(p)).sum();
                (!row.phases_ms.is_empty()).then_some(x.p50 - parts)
            });
            s.push_str(&format!(
                "{:<28} {:>20} {:>8} {:>8} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6}\n",
                row.setup,
                first,
                ms(row.deploy_ms.map(|x| x.p50)),
                ms(phase("sandbox")),
                ms(phase("place")),
                ms(phase("init")),
                ms(row.imports_ms),
                ms(row.imports_cpu_ms),
                ms(phase("channel")),
                ms(phase("runtime")),
                ms(other),
                row.errors
            ));
            for e in &row.error_examples {
                s.push_str(&format!("    error: {e}\n"));
            }
        }
    }
    for e in &r.errors {
        s.push_str(&format!("error: {e}\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_import_time_is_found_in_either_answer() {
        assert_eq!(
            imports_ms(br#"{"import_ms": 12.5, "import_cpu_ms": 10, "trace": 1}"#),
            Some((12.5, Some(10.0)))
        );
        let apigw = serde_json::json!({
            "statusCode": 200,
            "body": "{\"import_ms\":7.25}",
        });
        assert_eq!(imports_ms(apigw.to_string().as_bytes()), Some((7.25, None)));
        assert_eq!(imports_ms(b"{}"), None);
        assert_eq!(imports_ms(b"not json"), None);
    }

    #[test]
    fn a_sample_zip_is_a_new_package_with_the_same_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("pkg/__pycache__")).unwrap();
        std::fs::write(dir.path().join("pkg/mod.py"), "x = 1\n").unwrap();
        std::fs::write(
            dir.path().join("pkg/__pycache__/mod.cpython-311.pyc"),
            "pyc",
        )
        .unwrap();
        let base = base_zip(dir.path(), "def handler(e, c): return 1\n").unwrap();
        let a = sample_zip(&base, "a").unwrap();
        let b = sample_zip(&base, "b").unwrap();
        assert_ne!(a, b);
        let archive = zip::ZipArchive::new(std::io::Cursor::new(a)).unwrap();
        let mut names: Vec<&str> = archive.file_names().collect();
        names.sort();
        assert_eq!(names, ["bench-sample.txt", "handler.py", "pkg/mod.py"]);
    }
}
