//! Roles in a cluster: `all` (one node, today's path), `api` (the public APIs; invocations
//! are routed to workers) and `worker` (sandboxes, the warm pool and the limits of its host).
//!
//! - Membership is in the store, on the database's clock: a worker registers under a new
//!   generation (its fencing token) and renews its lease every third of it; a worker whose
//!   renewal finds the lease gone, or that has not renewed for `lease - 0.5 s` by its own
//!   clock, fences itself (admits nothing, destroys its sandboxes, refuses with `Fenced`)
//!   and registers again with a new generation ([`worker`]).
//! - An API node refreshes the live workers every 500 ms (one SELECT) and routes from that
//!   snapshot: no database access on the invoke path ([`api`], [`routing`]).
//! - Core knows no wire format: the link to a worker is the [`WorkerLink`] trait, which the
//!   HTTP layer implements; [`WorkerInvocation`] and [`WorkerAnswer`] are what it carries.

pub(crate) mod api;
pub(crate) mod routing;
pub(crate) mod worker;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use skyscale_store::FunctionRecord;
use skyscale_types::Runtime;

use crate::requirements::{PipOptions, Progress};
use crate::{CoreError, InvokeOutput, Throttle};

pub use api::{ApiNodeView, ClusterView, WorkerView};

/// Which part of a cluster this process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeRole {
    /// One node does everything (the default).
    All,
    /// The HTTP APIs, auth, routing and async dispatch; no sandboxes.
    Api,
    /// Sandboxes, the warm pool and the limits of its host; no public API.
    Worker,
}

impl NodeRole {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeRole::All => "all",
            NodeRole::Api => "api",
            NodeRole::Worker => "worker",
        }
    }
}

/// Settings of a cluster node (`api` or `worker`).
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// A label for `cluster status` (default: the host name).
    pub node_name: String,
    /// The address others reach this node at: a worker's internal server, an API node's
    /// public API.
    pub address: String,
    /// A worker's lease; renewed every third of it.
    pub lease: Duration,
    /// How often an API node reads the live workers.
    pub refresh: Duration,
}

impl ClusterSettings {
    pub const DEFAULT_LEASE: Duration = Duration::from_secs(3);
    pub const DEFAULT_REFRESH: Duration = Duration::from_millis(500);
    /// A worker fences itself this long before its lease would end without a renewal.
    pub const FENCE_MARGIN: Duration = Duration::from_millis(500);
}

/// What a node is: how `ControlPlane::start_node` builds it.
pub enum Node {
    All,
    Api {
        settings: ClusterSettings,
        link: Arc<dyn WorkerLink>,
    },
    Worker {
        settings: ClusterSettings,
    },
}

/// One invocation sent by an API node to a worker: what the sandbox needs. The worker
/// neither authorizes nor records it (the API node did and does).
#[derive(Debug, Clone)]
pub struct WorkerInvocation {
    pub function: Arc<FunctionRecord>,
    pub request_id: String,
    /// Checked JSON, at most `MAX_SYNC_PAYLOAD` bytes.
    pub payload: Vec<u8>,
    /// The ARN as invoked (with the caller's qualifier).
    pub invoked_arn: String,
    pub client_context: Option<String>,
    /// The worker generation the API node routes to: a worker of another generation
    /// refuses it with `Fenced`.
    pub generation: u64,
}

/// A worker's answer.
#[derive(Debug)]
pub enum WorkerAnswer {
    /// The invocation ran (successfully or not: `output.outcome` says) under `generation`.
    Done {
        generation: u64,
        output: Box<InvokeOutput>,
    },
    /// Its admission refused: the host's capacity or the function's reserved concurrency.
    /// Nothing ran.
    Full { limit: Throttle, message: String },
    /// The worker is fenced or of another generation: nothing ran (another worker may
    /// take it).
    Fenced,
    /// The function has reserved concurrency and another live worker holds its home: nothing
    /// ran (the API node's view was behind).
    NotHome,
    /// The worker was fenced while the invocation ran: its result is dropped (it may have
    /// had effects, so it is not sent to another worker).
    Dropped,
    /// The invocation could not be run (a failed boot, a package that kept changing, a
    /// worker shutting down).
    Failed { kind: FailureKind, message: String },
}

/// Why a worker could not run an invocation, as the API node's caller sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// A 409 (the code changed while it was being prepared).
    Conflict,
    /// A 503: retry (the worker is stopping).
    Unavailable,
    /// A 500: the sandbox or the worker failed.
    Internal,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Conflict => "conflict",
            FailureKind::Unavailable => "unavailable",
            FailureKind::Internal => "internal",
        }
    }
}

/// Why the link could not bring a worker's answer back.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The request never reached the worker (connection refused or reset before it was
    /// sent): trying another worker is safe.
    #[error("worker unreachable: {0}")]
    NotSent(String),
    /// The request may have reached the worker: the function may have run.
    #[error("worker answer lost: {0}")]
    Lost(String),
}

/// The future a [`WorkerLink`] returns.
pub type LinkFuture<'a> =
    Pin<Box<dyn Future<Output = Result<WorkerAnswer, LinkError>> + Send + 'a>>;

/// A `requirements.txt` build an API node (which has no sandboxes) has a worker run: the
/// checked inputs. The worker answers the layer's zip and pip's output; the API node
/// publishes it (see `requirements.rs`).
#[derive(Debug, Clone)]
pub struct WorkerBuild {
    /// The normalised requirements (`requirements::normalise`).
    pub normalised: String,
    pub runtime: Runtime,
    pub pip: PipOptions,
}

/// A worker's answer to a [`WorkerBuild`]: the zip and pip's output, or why the build
/// failed (pip's error, the worker being full, a sandbox failure).
pub type BuildAnswer = Result<(Vec<u8>, String), CoreError>;

/// The future [`WorkerLink::build`] returns.
pub type BuildFuture<'a> =
    Pin<Box<dyn Future<Output = Result<BuildAnswer, LinkError>> + Send + 'a>>;

/// How an API node reaches workers (implemented by the HTTP layer: authenticated with the
/// cluster secret, a keep-alive connection pool per worker).
pub trait WorkerLink: Send + Sync + 'static {
    /// Sends `request` to the worker at `address` and waits for its answer.
    fn invoke<'a>(&'a self, address: &'a str, request: &'a WorkerInvocation) -> LinkFuture<'a>;

    /// Has the worker at `address` run `build`, passing its output lines to `progress` as
    /// they come.
    fn build<'a>(
        &'a self,
        address: &'a str,
        build: &'a WorkerBuild,
        progress: Option<&'a Progress>,
    ) -> BuildFuture<'a>;
}

/// A build's failure as a worker reported it (its `CoreError::code` and message), as the
/// API node's caller sees it: the same kind of error, a full worker a throttle of the host,
/// the worker's own failures a sandbox failure of the build.
pub fn build_error(code: &str, message: String) -> CoreError {
    match code {
        "invalid_parameter" => CoreError::InvalidParameter(message),
        "unsupported" => CoreError::Unsupported(message),
        "request_timeout" => CoreError::RequestTimeout(message),
        "too_many_requests" => CoreError::TooManyRequests {
            limit: Throttle::Host,
            message,
        },
        "unavailable" => CoreError::Unavailable(message),
        _ => CoreError::sandbox_from("the worker's requirements build failed".to_owned(), message),
    }
}
