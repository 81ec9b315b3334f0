//! The internal API between API nodes and workers: the worker's server
//! (`POST /cluster/v1/invoke`, on its own listener) and the API node's client (a keep-alive
//! connection pool per worker), both authenticated with the cluster secret.
//!
//! The wire format lives here only. A request body is a 4-byte big-endian length, a JSON
//! header of that length (the function record, request id, invoked ARN, client context,
//! generation) and the payload's raw bytes; an answer is the same framing with the answer's
//! JSON header and the output's body. Payloads and results are never re-encoded.
//!
//! `POST /cluster/v1/build` runs a requirements build on the worker for an API node: the
//! request is a framed [`WireBuild`] (no tail); the answer streams frames as the build
//! goes: a [`WireBuildEvent::Line`] per line of pip's output, then one `Done` (its tail is
//! the layer's zip) or `Failed`.

use skyscale_types::snapstart::SnapStart;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use skyscale_core::{
    build_error, BuildAnswer, BuildFuture, CodeRef, ControlPlane, CoreError, Crash, ExitStatus,
    FailureKind, FunctionLayer, FunctionRecord, InvokeOutput, InvokeTiming, LinkError, LinkFuture,
    Outcome, PipOptions, Progress, Throttle, WorkerAnswer, WorkerBuild, WorkerInvocation,
    WorkerLink, MAX_SYNC_PAYLOAD,
};
use skyscale_types::invocation::InitType;
use skyscale_types::{FunctionName, Handler, LayerName, MemoryMb, Runtime, TimeoutSecs};
use tokio::net::TcpListener;

use crate::server::ConnectionLimits;

/// The routes of a worker's internal server.
const INVOKE_PATH: &str = "/cluster/v1/invoke";
const BUILD_PATH: &str = "/cluster/v1/build";
/// The largest layer zip a build may answer (Lambda's 250 MB of function and layers,
/// unzipped, bounds what is useful; a zip is smaller).
const MAX_BUILD_ZIP: usize = 256 * 1024 * 1024;
/// How long an API node waits for a build's answer to end (the build sandbox's own limit
/// is 10 minutes).
const BUILD_WAIT: Duration = Duration::from_secs(15 * 60);
/// The scheme of the `authorization` header on internal requests.
const SCHEME: &str = "Cluster ";
/// Largest answer header (logs are bounded by the agent; this bounds a broken worker).
const MAX_HEADER: usize = 16 * 1024 * 1024;
/// Largest request: the payload and the function record.
const MAX_REQUEST: usize = MAX_SYNC_PAYLOAD + 1024 * 1024;
/// How much longer than the function's timeout an API node waits for a worker's answer (a
/// cold start's boot and init come first); past it the answer counts as lost.
const ANSWER_GRACE: Duration = Duration::from_secs(90);

/// The secret API nodes and workers share (at least 32 characters; checked by the
/// daemon's configuration).
#[derive(Clone)]
pub struct ClusterSecret(Arc<str>);

impl ClusterSecret {
    pub fn new(secret: &str) -> Self {
        Self(secret.into())
    }

    /// Constant-time comparison with what a request presented.
    fn matches(&self, presented: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        let expected = self.0.as_bytes();
        presented.len() == expected.len() && bool::from(presented.ct_eq(expected))
    }
}

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterSecret(…)")
    }
}

// ---- wire types ----

#[derive(Serialize, Deserialize)]
struct WireFunction {
    name: String,
    runtime: String,
    handler: String,
    memory_mb: u32,
    timeout_s: u32,
    environment: BTreeMap<String, String>,
    description: String,
    code_sha256: Option<String>,
    code_size: Option<u64>,
    reserved_concurrency: Option<u32>,
    network: bool,
    ephemeral_mb: u32,
    /// `SnapStart.ApplyOn` (absent from an older API node: `None`).
    #[serde(default)]
    snap_start: SnapStart,
    revision: u64,
    created_at: String,
    updated_at: String,
    version: Option<u64>,
    layers: Vec<WireLayer>,
}

/// A function's layer: which version, and its package (what the worker links into `/opt`).
#[derive(Serialize, Deserialize)]
struct WireLayer {
    layer: String,
    version: u64,
    code_sha256: String,
    code_size: u64,
    unzipped_size: u64,
}

#[derive(Serialize, Deserialize)]
struct WireRequest {
    function: WireFunction,
    request_id: String,
    invoked_arn: String,
    client_context: Option<String>,
    generation: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireOutcome {
    Success,
    FunctionError { error_type: String },
    Timeout,
    Exited { code: i32 },
    Signalled { signal: i32 },
    Vanished,
    OutOfMemory,
}

#[derive(Serialize, Deserialize)]
struct WireOutput {
    request_id: String,
    executed_version: String,
    outcome: WireOutcome,
    cold_start: bool,
    /// `InitType::as_str`.
    init_type: String,
    init_duration_us: Option<u64>,
    duration_us: u64,
    max_memory_used_mb: u64,
    logs: String,
    acquire_us: u64,
    agent_us: u64,
    runtime_us: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
enum WireAnswer {
    Done { generation: u64, output: WireOutput },
    Full { limit: String, message: String },
    Fenced,
    NotHome,
    Dropped,
    Failed { kind: String, message: String },
}

fn us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl From<&FunctionRecord> for WireFunction {
    fn from(f: &FunctionRecord) -> Self {
        Self {
            name: f.name.to_string(),
            runtime: f.runtime.to_string(),
            handler: f.handler.as_str().to_owned(),
            memory_mb: f.memory.get(),
            timeout_s: f.timeout.get(),
            environment: f.environment.clone(),
            description: f.description.clone(),
            code_sha256: f.code.as_ref().map(|c| c.sha256.clone()),
            code_size: f.code.as_ref().map(|c| c.size),
            reserved_concurrency: f.reserved_concurrency,
            network: f.network,
            ephemeral_mb: f.ephemeral_mb,
            snap_start: f.snap_start,
            revision: f.revision,
            created_at: f.created_at.clone(),
            updated_at: f.updated_at.clone(),
            version: f.version,
            layers: f
                .layers
                .iter()
                .map(|l| WireLayer {
                    layer: l.layer.to_string(),
                    version: l.version,
                    code_sha256: l.code.sha256.clone(),
                    code_size: l.code.size,
                    unzipped_size: l.unzipped_size,
                })
                .collect(),
        }
    }
}

impl TryFrom<WireFunction> for FunctionRecord {
    type Error = String;
    fn try_from(w: WireFunction) -> Result<Self, String> {
        let e = |e: skyscale_types::ValidationError| e.to_string();
        Ok(FunctionRecord {
            name: FunctionName::parse(&w.name).map_err(e)?,
            runtime: Runtime::parse(&w.runtime).map_err(e)?,
            handler: Handler::parse(&w.handler).map_err(e)?,
            memory: MemoryMb::new(i64::from(w.memory_mb)).map_err(e)?,
            timeout: TimeoutSecs::new(i64::from(w.timeout_s)).map_err(e)?,
            environment: w.environment,
            description: w.description,
            code: match (w.code_sha256, w.code_size) {
                (Some(sha256), Some(size)) => Some(CodeRef { sha256, size }),
                (None, None) => None,
                _ => return Err("code_sha256 and code_size go together".into()),
            },
            reserved_concurrency: w.reserved_concurrency,
            network: w.network,
            ephemeral_mb: w.ephemeral_mb,
            snap_start: w.snap_start,
            revision: w.revision,
            created_at: w.created_at,
            updated_at: w.updated_at,
            version: w.version,
            layers: w
                .layers
                .into_iter()
                .map(|l| {
                    Ok(FunctionLayer {
                        layer: LayerName::parse(&l.layer).map_err(e)?,
                        version: l.version,
                        code: CodeRef {
                            sha256: l.code_sha256,
                            size: l.code_size,
                        },
                        unzipped_size: l.unzipped_size,
                    })
                })
                .collect::<Result<_, String>>()?,
        })
    }
}

fn outcome_to_wire(o: &Outcome) -> WireOutcome {
    match o {
        Outcome::Success => WireOutcome::Success,
        Outcome::FunctionError { error_type } => WireOutcome::FunctionError {
            error_type: error_type.clone(),
        },
        Outcome::Timeout => WireOutcome::Timeout,
        Outcome::Crashed(Crash::Exited(ExitStatus::Code(code))) => {
            WireOutcome::Exited { code: *code }
        }
        Outcome::Crashed(Crash::Exited(ExitStatus::Signal(signal))) => {
            WireOutcome::Signalled { signal: *signal }
        }
        Outcome::Crashed(Crash::Vanished) => WireOutcome::Vanished,
        Outcome::Crashed(Crash::OutOfMemory) => WireOutcome::OutOfMemory,
    }
}

fn outcome_from_wire(o: WireOutcome) -> Outcome {
    match o {
        WireOutcome::Success => Outcome::Success,
        WireOutcome::FunctionError { error_type } => Outcome::FunctionError { error_type },
        WireOutcome::Timeout => Outcome::Timeout,
        WireOutcome::Exited { code } => Outcome::Crashed(Crash::Exited(ExitStatus::Code(code))),
        WireOutcome::Signalled { signal } => {
            Outcome::Crashed(Crash::Exited(ExitStatus::Signal(signal)))
        }
        WireOutcome::Vanished => Outcome::Crashed(Crash::Vanished),
        WireOutcome::OutOfMemory => Outcome::Crashed(Crash::OutOfMemory),
    }
}

fn throttle_to_wire(t: Throttle) -> &'static str {
    t.reason()
}

fn throttle_from_wire(s: &str) -> Throttle {
    match s {
        "reserved_concurrency" => Throttle::ReservedConcurrency,
        _ => Throttle::Host,
    }
}

fn kind_from_wire(s: &str) -> FailureKind {
    match s {
        "conflict" => FailureKind::Conflict,
        "unavailable" => FailureKind::Unavailable,
        _ => FailureKind::Internal,
    }
}

/// `len(header) || header || tail`.
fn frame(header: &impl Serialize, tail: &[u8]) -> Vec<u8> {
    let json = serde_json::to_vec(header).unwrap_or_default();
    let mut out = Vec::with_capacity(4 + json.len() + tail.len());
    out.extend_from_slice(&(json.len() as u32).to_be_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(tail);
    out
}

/// The header (parsed) and the tail of a framed body.
fn unframe<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<(T, &[u8]), String> {
    let len_bytes: [u8; 4] = body
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or("body shorter than its length prefix")?;
    let len = u32::from_be_bytes(len_bytes) as usize;
    if len > MAX_HEADER {
        return Err(format!("header of {len} bytes is too large"));
    }
    let header = body.get(4..4 + len).ok_or("body shorter than its header")?;
    let parsed = serde_json::from_slice(header).map_err(|e| format!("bad header: {e}"))?;
    Ok((parsed, &body[4 + len..]))
}

#[derive(Serialize, Deserialize)]
struct WireBuild {
    normalised: String,
    runtime: String,
    index_url: Option<String>,
    extra_index_urls: Vec<String>,
    trusted_hosts: Vec<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum WireBuildEvent {
    Line {
        line: String,
    },
    /// The tail is the zip, `zip_bytes` long.
    Done {
        output: String,
        zip_bytes: u64,
    },
    /// `code` is the failure's `CoreError::code`.
    Failed {
        code: String,
        message: String,
    },
}

// ---- the worker's server ----

/// Every route needs the cluster secret: a request without it is a 401 before anything
/// is read.
async fn require_secret(
    State(secret): State<ClusterSecret>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if !authorized(&secret, request.headers()) {
        return (StatusCode::UNAUTHORIZED, "cluster secret required\n").into_response();
    }
    next.run(request).await
}

fn authorized(secret: &ClusterSecret, headers: &HeaderMap) -> bool {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(SCHEME.as_bytes()))
        .is_some_and(|presented| secret.matches(presented))
}

async fn invoke(State(cp): State<Arc<ControlPlane>>, body: Bytes) -> Response {
    let (req, payload): (WireRequest, &[u8]) = match unframe(&body) {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    let function = match FunctionRecord::try_from(req.function) {
        Ok(f) => f,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("bad function: {e}\n")).into_response(),
    };
    let answer = cp
        .run_for_api(WorkerInvocation {
            function: Arc::new(function),
            request_id: req.request_id,
            payload: payload.to_vec(),
            invoked_arn: req.invoked_arn,
            client_context: req.client_context,
            generation: req.generation,
        })
        .await;
    let body = match answer {
        WorkerAnswer::Done { generation, output } => {
            let wire = WireOutput {
                request_id: output.request_id,
                executed_version: output.executed_version,
                outcome: outcome_to_wire(&output.outcome),
                cold_start: output.cold_start,
                init_type: output.init_type.as_str().to_owned(),
                init_duration_us: output.init_duration.map(us),
                duration_us: us(output.duration),
                max_memory_used_mb: output.max_memory_used_mb,
                logs: output.logs,
                acquire_us: us(output.timing.acquire),
                agent_us: us(output.timing.agent),
                runtime_us: us(output.timing.runtime),
            };
            frame(
                &WireAnswer::Done {
                    generation,
                    output: wire,
                },
                &output.body,
            )
        }
        WorkerAnswer::Full { limit, message } => frame(
            &WireAnswer::Full {
                limit: throttle_to_wire(limit).to_owned(),
                message,
            },
            &[],
        ),
        WorkerAnswer::Fenced => frame(&WireAnswer::Fenced, &[]),
        WorkerAnswer::Dropped => frame(&WireAnswer::Dropped, &[]),
        WorkerAnswer::NotHome => frame(&WireAnswer::NotHome, &[]),
        WorkerAnswer::Failed { kind, message } => frame(
            &WireAnswer::Failed {
                kind: kind.as_str().to_owned(),
                message,
            },
            &[],
        ),
    };
    (
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
        body,
    )
        .into_response()
}

/// `POST /cluster/v1/build`: runs the build on a task of its own (an API node that hangs up
/// does not cut it short) and streams its events.
async fn build(State(cp): State<Arc<ControlPlane>>, body: Bytes) -> Response {
    let job = match unframe::<WireBuild>(&body).and_then(|(w, _)| {
        Ok(WorkerBuild {
            normalised: w.normalised,
            runtime: Runtime::parse(&w.runtime).map_err(|e| e.to_string())?,
            pip: PipOptions {
                index_url: w.index_url,
                extra_index_urls: w.extra_index_urls,
                trusted_hosts: w.trusted_hosts,
            },
        })
    }) {
        Ok(job) => job,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<String>(256);
    let task = tokio::spawn(async move { cp.worker_build(job, Some(tx)).await });
    let lines = futures_util::stream::unfold(rx, |mut rx| async move {
        let line = rx.recv().await?;
        let event = frame(&WireBuildEvent::Line { line }, &[]);
        Some((Ok::<_, std::convert::Infallible>(Bytes::from(event)), rx))
    });
    let end = futures_util::stream::once(async move {
        let event = match task.await {
            Ok(Ok((zip, output))) => frame(
                &WireBuildEvent::Done {
                    output,
                    zip_bytes: zip.len() as u64,
                },
                &zip,
            ),
            Ok(Err(e)) => frame(
                &WireBuildEvent::Failed {
                    code: e.code().to_owned(),
                    message: e.report(),
                },
                &[],
            ),
            Err(e) => frame(
                &WireBuildEvent::Failed {
                    code: "internal".to_owned(),
                    message: format!("the build task failed: {e}"),
                },
                &[],
            ),
        };
        Ok(Bytes::from(event))
    });
    (
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
        axum::body::Body::from_stream(futures_util::StreamExt::chain(lines, end)),
    )
        .into_response()
}

/// The worker's internal router: `POST /cluster/v1/invoke` and `POST /cluster/v1/build`
/// with the cluster secret; every other path is a 404 and a request without the secret a
/// 401.
pub fn worker_router(cp: Arc<ControlPlane>, secret: ClusterSecret) -> Router {
    Router::new()
        .route(INVOKE_PATH, post(invoke))
        .route(BUILD_PATH, post(build))
        .route_layer(axum::middleware::from_fn_with_state(secret, require_secret))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_REQUEST))
        .with_state(cp)
}

/// Serves the worker's internal API on `listener` (bound to exactly the configured address)
/// until `shutdown` resolves, with the public server's connection handling.
pub async fn serve_worker(
    listener: TcpListener,
    cp: Arc<ControlPlane>,
    secret: ClusterSecret,
    limits: ConnectionLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    crate::server::serve(listener, worker_router(cp, secret), limits, shutdown).await
}

// ---- the API node's client ----

/// The API node's link to workers: hyper's pooled client (keep-alive connections per
/// worker address), each request carrying the cluster secret.
pub struct HttpWorkerLink {
    client: Client<HttpConnector, Full<Bytes>>,
    authorization: axum::http::HeaderValue,
}

impl HttpWorkerLink {
    pub fn new(secret: &ClusterSecret) -> Result<Self, String> {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        connector.set_keepalive(Some(Duration::from_secs(10)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        let authorization = axum::http::HeaderValue::try_from(format!("{SCHEME}{}", secret.0))
            .map_err(|_| "the cluster secret is not a valid header value".to_owned())?;
        Ok(Self {
            client,
            authorization,
        })
    }

    async fn send(&self, address: &str, req: &WorkerInvocation) -> Result<WorkerAnswer, LinkError> {
        let header = WireRequest {
            function: WireFunction::from(req.function.as_ref()),
            request_id: req.request_id.clone(),
            invoked_arn: req.invoked_arn.clone(),
            client_context: req.client_context.clone(),
            generation: req.generation,
        };
        let body = frame(&header, &req.payload);
        let wait = req.function.timeout.duration() + ANSWER_GRACE;
        let exchange = async {
            let response = self.post(address, INVOKE_PATH, body).await?;
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| LinkError::Lost(format!("reading the answer: {e}")))?
                .to_bytes();
            Ok::<_, LinkError>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(wait, exchange)
            .await
            .map_err(|_| LinkError::Lost(format!("no answer within {wait:?}")))??;
        if status != StatusCode::OK {
            // Refused before anything ran (secret, path, bad request).
            return Ok(WorkerAnswer::Failed {
                kind: FailureKind::Internal,
                message: format!(
                    "worker {address} refused the request ({status}): {}",
                    String::from_utf8_lossy(&bytes).trim()
                ),
            });
        }
        let (answer, tail): (WireAnswer, &[u8]) =
            unframe(&bytes).map_err(|e| LinkError::Lost(format!("bad answer: {e}")))?;
        Ok(match answer {
            WireAnswer::Done { generation, output } => WorkerAnswer::Done {
                generation,
                output: Box::new(InvokeOutput {
                    request_id: output.request_id,
                    executed_version: output.executed_version,
                    body: tail.to_vec(),
                    outcome: outcome_from_wire(output.outcome),
                    cold_start: output.cold_start,
                    init_type: InitType::parse(&output.init_type).ok_or_else(|| {
                        LinkError::Lost(format!("bad answer: init type {:?}", output.init_type))
                    })?,
                    init_duration: output.init_duration_us.map(Duration::from_micros),
                    duration: Duration::from_micros(output.duration_us),
                    max_memory_used_mb: output.max_memory_used_mb,
                    logs: output.logs,
                    timing: InvokeTiming {
                        lookup: Duration::ZERO,
                        acquire: Duration::from_micros(output.acquire_us),
                        agent: Duration::from_micros(output.agent_us),
                        runtime: Duration::from_micros(output.runtime_us),
                        ..InvokeTiming::default()
                    },
                }),
            },
            WireAnswer::Full { limit, message } => WorkerAnswer::Full {
                limit: throttle_from_wire(&limit),
                message,
            },
            WireAnswer::Fenced => WorkerAnswer::Fenced,
            WireAnswer::Dropped => WorkerAnswer::Dropped,
            WireAnswer::NotHome => WorkerAnswer::NotHome,
            WireAnswer::Failed { kind, message } => WorkerAnswer::Failed {
                kind: kind_from_wire(&kind),
                message,
            },
        })
    }
}

impl HttpWorkerLink {
    /// Posts a framed `body` to a worker's `path` with the cluster secret. A connection
    /// that could not be made is `NotSent` (safe to try another worker); any other failure
    /// `Lost`.
    async fn post(
        &self,
        address: &str,
        path: &str,
        body: Vec<u8>,
    ) -> Result<axum::http::Response<hyper::body::Incoming>, LinkError> {
        let request = axum::http::Request::post(format!("http://{address}{path}"))
            .header(
                axum::http::header::AUTHORIZATION,
                self.authorization.clone(),
            )
            .header(axum::http::header::CONTENT_TYPE, "application/octet-stream")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| LinkError::NotSent(format!("building the request: {e}")))?;
        self.client.request(request).await.map_err(|e| {
            if e.is_connect() {
                LinkError::NotSent(e.to_string())
            } else {
                LinkError::Lost(e.to_string())
            }
        })
    }

    async fn send_build(
        &self,
        address: &str,
        job: &WorkerBuild,
        progress: Option<&Progress>,
    ) -> Result<BuildAnswer, LinkError> {
        let header = WireBuild {
            normalised: job.normalised.clone(),
            runtime: job.runtime.to_string(),
            index_url: job.pip.index_url.clone(),
            extra_index_urls: job.pip.extra_index_urls.clone(),
            trusted_hosts: job.pip.trusted_hosts.clone(),
        };
        let exchange = async {
            let response = self.post(address, BUILD_PATH, frame(&header, &[])).await?;
            let status = response.status();
            let mut body = response.into_body();
            if status != StatusCode::OK {
                let bytes = body
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                return Ok(Err(CoreError::internal(format!(
                    "worker {address} refused the build ({status}): {}",
                    String::from_utf8_lossy(&bytes).trim()
                ))));
            }
            let mut buf: Vec<u8> = Vec::new();
            loop {
                // Every whole event in the buffer first.
                while let Some((event, used)) = next_build_event(&buf)? {
                    match event {
                        WireBuildEvent::Line { line } => {
                            if let Some(p) = progress {
                                let _ = p.send(line).await;
                            }
                        }
                        WireBuildEvent::Done { output, zip_bytes } => {
                            let zip = buf[used - zip_bytes as usize..used].to_vec();
                            return Ok(Ok((zip, output)));
                        }
                        WireBuildEvent::Failed { code, message } => {
                            return Ok(Err(build_error(&code, message)));
                        }
                    }
                    buf.drain(..used);
                }
                match body.frame().await {
                    Some(Ok(f)) => {
                        if let Ok(data) = f.into_data() {
                            buf.extend_from_slice(&data);
                        }
                    }
                    Some(Err(e)) => {
                        return Err(LinkError::Lost(format!("reading the build's answer: {e}")))
                    }
                    None => {
                        return Err(LinkError::Lost(
                            "the build's answer ended without its result".to_owned(),
                        ))
                    }
                }
            }
        };
        tokio::time::timeout(BUILD_WAIT, exchange)
            .await
            .map_err(|_| LinkError::Lost(format!("no build answer within {BUILD_WAIT:?}")))?
    }
}

/// The first whole event at the start of `buf` and the bytes it takes (with a `Done`'s
/// zip), or `None` until more has arrived.
fn next_build_event(buf: &[u8]) -> Result<Option<(WireBuildEvent, usize)>, LinkError> {
    let Some(len) = buf.get(..4) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
    if len > MAX_HEADER {
        return Err(LinkError::Lost(format!(
            "a build event of {len} bytes is too large"
        )));
    }
    let Some(header) = buf.get(4..4 + len) else {
        return Ok(None);
    };
    let event: WireBuildEvent = serde_json::from_slice(header)
        .map_err(|e| LinkError::Lost(format!("bad build event: {e}")))?;
    let tail = match &event {
        WireBuildEvent::Done { zip_bytes, .. } if *zip_bytes as usize > MAX_BUILD_ZIP => {
            return Err(LinkError::Lost(format!(
                "a build's zip of {zip_bytes} bytes is too large"
            )))
        }
        WireBuildEvent::Done { zip_bytes, .. } => *zip_bytes as usize,
        _ => 0,
    };
    let used = 4 + len + tail;
    Ok((buf.len() >= used).then_some((event, used)))
}

impl WorkerLink for HttpWorkerLink {
    fn invoke<'a>(&'a self, address: &'a str, request: &'a WorkerInvocation) -> LinkFuture<'a> {
        Box::pin(self.send(address, request))
    }

    fn build<'a>(
        &'a self,
        address: &'a str,
        build: &'a WorkerBuild,
        progress: Option<&'a Progress>,
    ) -> BuildFuture<'a> {
        Box::pin(self.send_build(address, build, progress))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let body = frame(&WireAnswer::Fenced, b"tail bytes");
        let (a, tail): (WireAnswer, &[u8]) = unframe(&body).unwrap();
        assert!(matches!(a, WireAnswer::Fenced));
        assert_eq!(tail, b"tail bytes");
        assert!(unframe::<WireAnswer>(&body[..3]).is_err());
        assert!(unframe::<WireAnswer>(&[0, 0, 0, 50, b'{']).is_err());
    }

    #[test]
    fn build_events_are_read_whole_from_a_growing_buffer() {
        let mut stream = frame(
            &WireBuildEvent::Line {
                line: "Collecting six".into(),
            },
            &[],
        );
        let done = frame(
            &WireBuildEvent::Done {
                output: "ok".into(),
                zip_bytes: 3,
            },
            b"zip",
        );
        stream.extend_from_slice(&done);
        // Nothing whole yet, at every cut inside the first event.
        let first = stream.len() - done.len();
        for cut in 0..first {
            assert!(next_build_event(&stream[..cut]).unwrap().is_none(), "{cut}");
        }
        let (e, used) = next_build_event(&stream).unwrap().unwrap();
        assert!(matches!(e, WireBuildEvent::Line { line } if line == "Collecting six"));
        assert_eq!(used, first);
        let rest = &stream[used..];
        // The zip is part of the event: not whole until its last byte.
        assert!(next_build_event(&rest[..rest.len() - 1]).unwrap().is_none());
        let (e, used) = next_build_event(rest).unwrap().unwrap();
        assert!(matches!(e, WireBuildEvent::Done { zip_bytes: 3, .. }));
        assert_eq!(&rest[used - 3..used], b"zip");
    }

    #[test]
    fn the_secret_is_compared_whole() {
        let s = ClusterSecret::new("0123456789abcdef0123456789abcdef");
        assert!(s.matches(b"0123456789abcdef0123456789abcdef"));
        assert!(!s.matches(b"0123456789abcdef0123456789abcde"));
        assert!(!s.matches(b"0123456789abcdef0123456789abcdeg"));
        assert!(!s.matches(b""));
    }

    #[test]
    fn outcomes_round_trip() {
        for o in [
            Outcome::Success,
            Outcome::FunctionError {
                error_type: "ValueError".into(),
            },
            Outcome::Timeout,
            Outcome::Crashed(Crash::Exited(ExitStatus::Code(3))),
            Outcome::Crashed(Crash::Exited(ExitStatus::Signal(9))),
            Outcome::Crashed(Crash::Vanished),
            Outcome::Crashed(Crash::OutOfMemory),
        ] {
            let json = serde_json::to_string(&outcome_to_wire(&o)).unwrap();
            let back = outcome_from_wire(serde_json::from_str(&json).unwrap());
            assert_eq!(back, o);
        }
    }
}
