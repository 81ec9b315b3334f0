//! The control plane's logic, independent of HTTP: the function service, authentication,
//! and the invoke path (warm pool, cold starts, the agent conversation).
//!
//! `ControlPlane` is the one object the HTTP layer talks to. It owns the store, the code
//! packages and the sandbox driver; nothing here knows about axum or SQL.

mod account;
mod aliases;
mod audit;
mod auth;
mod bytecode;
mod cache;
mod cluster;
mod code;
mod code_location;
mod coherence;
mod error;
mod events;
mod functions;
mod invoke;
mod keys;
mod layers;
mod limiter;
pub mod logs;
mod metrics;
mod observe;
mod policies;
mod provisioned;
mod records;
pub mod requirements;
mod runtimes;
mod scheduler;
mod schedules;
mod secrets;
mod session;
mod since;
mod singleton;
mod snapstart;
mod urls;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use skyscale_sandbox::Driver;
use skyscale_store::{CodeLimits, CodeStore, Store};
use skyscale_types::{ApiKey, FunctionName, KeyId};

pub use account::AccountSettings;
pub use auth::{authenticate, ensure_admin_key, Action, AdminKeySource, FunctionScope, Principal};
pub use cluster::{
    build_error, ApiNodeView, BuildAnswer, BuildFuture, ClusterSettings, ClusterView, FailureKind,
    LinkError, LinkFuture, Node, NodeRole, WorkerAnswer, WorkerBuild, WorkerInvocation, WorkerLink,
    WorkerView,
};
pub use code_location::{CodeDownload, CodeGrant, CODE_LOCATION_TTL};
pub use error::{CoreError, Throttle};
pub use events::{
    Accepted, AsyncInvoke, DeadReason, EventConfig, EventConfigChange, EventInfo, EventRequest,
    EventSettings, EventStatus, DEFAULT_MAX_AGE_S, DEFAULT_MAX_RETRIES, MAX_ASYNC_PAYLOAD,
};
pub use functions::{Expect, FunctionChanges, FunctionSpec};
pub use invoke::{
    ColdTiming, EventAttempt, InvokeOptions, InvokeOutput, InvokeTiming, MAX_SYNC_PAYLOAD,
};
pub use keys::{KeySpec, KeyView, NewKey};
pub use layers::{LayerSpec, MAX_FUNCTION_LAYERS, MAX_UNZIPPED_WITH_LAYERS};
pub use limiter::AuthLimits;
pub use metrics::PROMETHEUS_CONTENT_TYPE;
pub use observe::{Crash, Invocation, Outcome};
pub use policies::NewStatement;
pub use provisioned::{ProvisionedConfig, MAX_PROVISIONED_LIST};
pub use records::{Followed, InvocationFilter, LogFilter, LogFollower, RecordSettings};
pub use requirements::{DepsBuild, DepsLayer, PipOptions, Progress};
pub use runtimes::{RuntimeInfo, Runtimes, PYTHON_BOOTSTRAP};
pub use scheduler::{Limits, SandboxCounts};
pub use schedules::{
    ExpressionError, Schedule, ScheduleChanges, ScheduleExpression, ScheduleSettings, ScheduleSpec,
};
pub use secrets::{ServerKey, SERVER_KEY_FILE};
pub use since::{parse_duration, parse_since};
pub use skyscale_protocol::ExitStatus;
pub use skyscale_store::{
    AliasRecord, AuditRecord, CodeRef, FunctionLayer, FunctionRecord, InvocationRecord,
    LayerVersionRecord, LogEntry, PolicyStatement,
};
pub use skyscale_types::invocation::{InvocationStatus, Trigger};
pub use skyscale_types::provisioned::ProvisionedStatus;
pub use skyscale_types::Role;
pub use snapstart::SnapStartStatus;
pub use urls::{UrlConfig, INVOKE_MODE_BUFFERED};

use bytecode::Bytecode;
use cache::Cache;
use keys::{KeyTable, Keys};
use limiter::AuthLimiter;
use scheduler::Scheduler;

/// How long compiling one package's Python sources may take, per interpreter (`bytecode.rs`).
const BYTECODE_DEADLINE: Duration = Duration::from_secs(60);

/// One page of a list paged by offset (Lambda's `Marker`/`NextMarker` for versions,
/// aliases and URLs): the items from the offset `marker` (a number handed out as a previous
/// page's marker), at most `max` (at least one), and the next page's marker.
pub(crate) fn offset_page<T>(
    all: Vec<T>,
    marker: Option<&str>,
    max: usize,
) -> Result<(Vec<T>, Option<String>), CoreError> {
    let start = match marker {
        None => 0,
        Some(m) => m
            .parse::<usize>()
            .map_err(|_| CoreError::InvalidParameter(format!("invalid Marker {m:?}")))?,
    };
    let max = max.max(1);
    let end = start.saturating_add(max);
    let next = (end < all.len()).then(|| end.to_string());
    Ok((all.into_iter().skip(start).take(max).collect(), next))
}

/// Settings the control plane's logic needs (the daemon builds them from the environment).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Region reported to functions (`AWS_REGION`) and used in ARNs.
    pub region: String,
    /// Account id used in ARNs.
    pub account_id: String,
    /// Size of each sandbox's `/tmp`, MiB.
    pub tmp_mb: u32,
    /// Most processes/threads per sandbox.
    pub pids_limit: i64,
    /// How long a runtime may take to initialise (import the handler).
    pub init_timeout: Duration,
    /// How long a new sandbox's agent may take to say hello.
    pub boot_timeout: Duration,
    /// Pool sizes, host caps, keep-alive.
    pub limits: Limits,
    /// Failed authentications allowed per source address.
    pub auth_limits: AuthLimits,
    /// How long and how much of the invocation records and logs is kept.
    pub records: RecordSettings,
    /// Size limits of one code package and of all of them together.
    pub code: CodeLimits,
    /// Where the per-sandbox `/var/task` directories are made (`<task_root>/<id>`); `None`:
    /// `<data_dir>/sandboxes/task`. A sandbox sees this path in `/proc/self/mountinfo` (as
    /// the root of its `/var/task` mount), so the daemon puts it under a neutral root.
    pub task_root: Option<PathBuf>,
    /// The asynchronous invocation queue: backoffs, leases, concurrency.
    pub events: EventSettings,
    /// The schedule chore.
    pub schedules: ScheduleSettings,
    /// Compile the Python sources of code packages and layers when they are stored
    /// (`bytecode.rs`); off, Python compiles them in memory on every cold start.
    pub bytecode: bool,
    /// The key that seals API key secrets; `None`: `<data_dir>/server.key`, created on
    /// first use (a cluster's API nodes share one derived from the cluster secret).
    pub server_key: Option<ServerKey>,
}

impl Settings {
    /// A function's unqualified ARN: built here and nowhere else.
    /// `arn:aws:lambda:<region>:<account>:layer:<name>:<version>`.
    pub fn layer_version_arn(&self, layer: &str, version: u64) -> String {
        format!(
            "arn:aws:lambda:{}:{}:layer:{layer}:{version}",
            self.region, self.account_id
        )
    }

    pub fn function_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:lambda:{}:{}:function:{name}",
            self.region, self.account_id
        )
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            region: "us-east-1".into(),
            account_id: "000000000000".into(),
            tmp_mb: 512,
            pids_limit: 1024,
            init_timeout: Duration::from_secs(10),
            boot_timeout: Duration::from_secs(30),
            limits: Limits::default(),
            auth_limits: AuthLimits::default(),
            records: RecordSettings::default(),
            code: CodeLimits::default(),
            task_root: None,
            events: EventSettings::default(),
            schedules: ScheduleSettings::default(),
            bytecode: true,
            server_key: None,
        }
    }
}

/// The control plane: every API operation is a method here.
pub struct ControlPlane {
    store: Arc<Store>,
    code: CodeStore,
    /// Removes unreferenced code packages in the background.
    code_gc: code::Collector,
    /// Sandboxes and their limits; `None` on an API node, which has none.
    scheduler: Option<Arc<Scheduler>>,
    /// This node's part in a cluster.
    cluster: Cluster,
    /// Every API key, read on every request; replaced after every key write.
    keys: Arc<Keys>,
    /// On a shared store (not on a worker): when this node last saw the cache epoch, so
    /// changes made through other nodes reach its caches (see `coherence.rs`).
    coherence: Option<Arc<coherence::Coherence>>,
    /// Failed authentications per source address.
    auth_limiter: AuthLimiter,
    /// A sealed secret of no key, opened when a SigV4 request names an unknown key so that
    /// case costs the same as a known one.
    dummy_sealed: (KeyId, Vec<u8>),
    /// Function records by name, read on every invocation.
    functions: Cache<FunctionName, FunctionRecord>,
    /// Published versions by function and number (immutable; dropped on delete).
    versions: Cache<(FunctionName, u64), FunctionRecord>,
    /// Aliases by function and name (invalidated on every alias write).
    aliases: Cache<(FunctionName, String), skyscale_store::AliasRecord>,
    /// Function URL settings by function and alias (`None`: `$LATEST`), read per request.
    urls: Cache<(FunctionName, Option<String>), skyscale_store::UrlConfigRecord>,
    /// Policy statements by function, read when a key's role does not let it invoke.
    policies: Cache<FunctionName, Vec<skyscale_store::PolicyStatement>>,
    runtimes: Runtimes,
    settings: Settings,
    /// Seals and opens API key secrets (SigV4 needs them).
    server_key: ServerKey,
    /// The invocation records and logs writer, fed by `observe`.
    records: records::Records,
    /// Per-function counters and recent samples, fed by `observe`.
    metrics: metrics::Metrics,
    /// The asynchronous invocation queue's dispatcher (started by `start_dispatcher`).
    events: events::Queue,
    /// The schedule chore (started by `start_schedules`).
    schedules: schedules::Chore,
    /// Requirements builds in flight and their counts.
    deps_builds: requirements::Builds,
    /// The provisioned concurrency keeper's state (started by `start_provisioned`).
    provisioned: provisioned::Keeper,
}

/// This node's part in a cluster, and its state there.
pub(crate) enum Cluster {
    /// One node does everything.
    Single,
    Api(Arc<cluster::api::ApiNode>),
    Worker(Arc<cluster::worker::WorkerNode>),
}

impl ControlPlane {
    /// Builds a single-node control plane (role `all`): see [`Self::start_node`].
    pub fn start(
        store: Arc<Store>,
        data_dir: &Path,
        driver: Arc<dyn Driver>,
        runtimes: Runtimes,
        settings: Settings,
    ) -> Result<Self, CoreError> {
        Self::start_node(store, data_dir, Some(driver), runtimes, settings, Node::All)
    }

    /// Builds the control plane of a node: `all` and `worker` need a driver (their
    /// scheduler starts, booting the generic pool in the background); an `api` node has no
    /// sandboxes and takes none. Cluster membership starts with [`Self::start_cluster`].
    pub fn start_node(
        store: Arc<Store>,
        data_dir: &Path,
        driver: Option<Arc<dyn Driver>>,
        runtimes: Runtimes,
        settings: Settings,
        node: Node,
    ) -> Result<Self, CoreError> {
        let role = match &node {
            Node::All => NodeRole::All,
            Node::Api { .. } => NodeRole::Api,
            Node::Worker { .. } => NodeRole::Worker,
        };
        if (role == NodeRole::Api) != driver.is_none() {
            return Err(CoreError::internal(format!(
                "a node of role {} {} a sandbox driver",
                role.as_str(),
                if role == NodeRole::Api {
                    "takes no"
                } else {
                    "needs"
                }
            )));
        }
        Self::build(store, data_dir, driver, runtimes, settings, node)
    }

    /// Builds the control plane on an open store and starts its scheduler (which boots the
    /// generic warm pool in the background). `data_dir` holds code packages (`code/`), the
    /// per-sandbox task directories (`sandboxes/task/`, unless `settings.task_root` puts them
    /// elsewhere) and the server key (created if
    /// missing). Must run inside a tokio runtime.
    fn build(
        store: Arc<Store>,
        data_dir: &Path,
        driver: Option<Arc<dyn Driver>>,
        runtimes: Runtimes,
        settings: Settings,
        node: Node,
    ) -> Result<Self, CoreError> {
        let code_dir = data_dir.join("code");
        // Opening removes what a crash left half-written; the collector's first run removes
        // packages a crash left unreferenced.
        let mut code = CodeStore::open(&code_dir, settings.code)
            .map_err(|e| CoreError::internal_from(format!("opening {}", code_dir.display()), e))?;
        // Every installed Python may import a package (a package or layer is shared by
        // functions of any runtime): each compiles it for itself. Not on an API node: it
        // runs no sandboxes, and a worker unpacks (and compiles) what it fetches.
        let interpreters = runtimes
            .installed()
            .iter()
            .map(|name| Path::new("/usr/bin").join(name))
            .collect();
        if let Some(bytecode) = Bytecode::new(interpreters, BYTECODE_DEADLINE)
            .filter(|_| settings.bytecode && !matches!(node, Node::Api { .. }))
        {
            code = code.with_derive(Arc::new(bytecode));
        }
        // On a worker too: the packages it fetched from the database go once nothing
        // references them (every host has its own data directory).
        let code_gc = code::Collector::start(store.clone(), code.clone());
        let server_key = match &settings.server_key {
            Some(key) => key.clone(),
            None => ServerKey::load_or_create(data_dir)?,
        };
        let keys = KeyTable::load(&store)?;
        let dummy = ApiKey::generate();
        let dummy_sealed = (
            dummy.id.clone(),
            server_key.seal(&dummy.id, dummy.secret())?,
        );
        let task_root = settings
            .task_root
            .clone()
            .unwrap_or_else(|| data_dir.join("sandboxes").join("task"));
        let scheduler = driver
            .map(|driver| {
                Scheduler::start(
                    driver,
                    settings.limits.clone(),
                    task_root.clone(),
                    settings.tmp_mb,
                    settings.pids_limit,
                    settings.boot_timeout,
                )
                .map_err(|e| {
                    CoreError::internal_from(format!("preparing {}", task_root.display()), e)
                })
            })
            .transpose()?;
        let cluster = match node {
            Node::All => Cluster::Single,
            Node::Api { settings, link } => {
                Cluster::Api(Arc::new(cluster::api::ApiNode::new(settings, link)))
            }
            Node::Worker { settings: cs } => Cluster::Worker(Arc::new(
                cluster::worker::WorkerNode::new(cs, settings.limits.max_sandboxes as u64),
            )),
        };
        let records = records::Records::start(store.clone(), settings.records.clone());
        let coherence = (store.is_shared() && !matches!(cluster, Cluster::Worker(_)))
            .then(|| Arc::new(coherence::Coherence::new()));
        Ok(Self {
            records,
            store,
            code,
            code_gc,
            scheduler,
            cluster,
            keys: Arc::new(Keys::new(keys)),
            coherence,
            auth_limiter: AuthLimiter::new(settings.auth_limits),
            dummy_sealed,
            functions: Cache::new(),
            versions: Cache::new(),
            aliases: Cache::new(),
            urls: Cache::new(),
            policies: Cache::new(),
            runtimes,
            server_key,
            metrics: metrics::Metrics::default(),
            events: events::Queue::new(settings.events.clone()),
            schedules: schedules::Chore::new(settings.schedules.clone()),
            deps_builds: requirements::Builds::default(),
            provisioned: provisioned::Keeper::default(),
            settings,
        })
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The sandbox driver's name; `none` on an API node.
    pub fn driver_name(&self) -> &'static str {
        self.scheduler
            .as_ref()
            .map_or("none", |s| s.driver().name())
    }

    /// This node's role in a cluster.
    pub fn role(&self) -> NodeRole {
        match &self.cluster {
            Cluster::Single => NodeRole::All,
            Cluster::Api(_) => NodeRole::Api,
            Cluster::Worker(_) => NodeRole::Worker,
        }
    }

    /// Starts this node's cluster membership: a worker registers and keeps its lease; an
    /// API node refreshes the live workers. Nothing in role `all`.
    pub fn start_cluster(self: &Arc<Self>) {
        match &self.cluster {
            Cluster::Single => {}
            Cluster::Api(node) => node.start_refresh(self.store.clone()),
            Cluster::Worker(node) => self.start_worker_membership(node.clone()),
        }
    }

    /// The workers and API nodes (admin keys). In role `all`: a single node, no workers.
    pub async fn cluster_status(&self, by: &Principal) -> Result<ClusterView, CoreError> {
        by.authorize(Action::ReadCluster, None)?;
        let role = self.role();
        let (name, this_api) = match &self.cluster {
            Cluster::Single => {
                return Ok(ClusterView {
                    role,
                    node_name: String::new(),
                    workers: Vec::new(),
                    api_nodes: Vec::new(),
                })
            }
            Cluster::Api(n) => (n.settings.node_name.clone(), Some(n.id.clone())),
            Cluster::Worker(n) => (n.settings.node_name.clone(), None),
        };
        let store = self.store.clone();
        blocking(move || ClusterView::read(&store, role, name, this_api.as_deref())).await
    }

    fn request_code_collection(&self) {
        self.code_gc.request();
    }

    /// The runtimes functions may name, for any valid key.
    pub fn list_runtimes(&self, _by: &Principal) -> Vec<RuntimeInfo> {
        self.runtimes.list()
    }

    pub fn runtimes(&self) -> &Runtimes {
        &self.runtimes
    }

    /// Refuses `source` while it has failed to authenticate too often (before its key is
    /// looked at, so a correct guess is refused too); else runs `check` and counts a failure.
    fn rate_limited<T>(
        &self,
        source: IpAddr,
        check: impl FnOnce() -> Result<T, CoreError>,
    ) -> Result<T, CoreError> {
        if !self.auth_limiter.allows(source, Instant::now()) {
            return Err(CoreError::TooManyRequests {
                limit: Throttle::AuthFailures,
                message: format!(
                    "too many failed authentications from {source}: try again in a few seconds"
                ),
            });
        }
        let result = check();
        if let Err(CoreError::Unauthorized(_) | CoreError::Signature(_)) = &result {
            self.auth_limiter.failed(source, Instant::now());
        }
        result
    }

    /// Checks a bearer token `<id>.<secret>` sent from `source`.
    pub async fn authenticate(&self, token: &str, source: IpAddr) -> Result<Principal, CoreError> {
        self.check_coherent()?;
        self.rate_limited(source, || {
            let key = ApiKey::parse(token)?;
            let keys = self.keys.snapshot();
            let entry = keys.get(&key.id);
            auth::verify(
                &key,
                entry.map(|e| &e.record),
                entry.and_then(|e| e.principal.as_ref()),
            )
        })
    }

    /// Checks an AWS SigV4-signed request (`authorization`: its `Authorization` header) for
    /// the `lambda` service at `now`, sent from `source`. The key id is the access key id;
    /// its secret is opened from the store with the server key for this check only.
    ///
    /// An unknown key id, a revoked key and a signature that does not match get the same
    /// answer (`UnknownKey`) after the same work: for an unknown id a dummy secret is opened
    /// and the signature computed with it. The checks that do not involve the secret (date,
    /// scope, signed headers) come first either way.
    pub async fn authenticate_sigv4(
        &self,
        req: &skyscale_sigv4::Request<'_>,
        authorization: Option<&str>,
        now: SystemTime,
        source: IpAddr,
    ) -> Result<Principal, CoreError> {
        use skyscale_sigv4::{Authorization, SigV4Error};
        // No credentials at all is not a guess: not counted.
        let authorization = authorization.ok_or(SigV4Error::Missing)?;
        self.check_coherent()?;
        self.rate_limited(source, || {
            let auth = Authorization::parse(authorization)?;
            let keys = self.keys.snapshot();
            let entry = KeyId::parse(&auth.key_id).ok().and_then(|id| keys.get(&id));
            let usable = entry.and_then(|e| {
                let p = e
                    .principal
                    .as_ref()
                    .filter(|_| e.record.revoked_at.is_none())?;
                let sealed = e.record.secret_sealed.as_ref();
                if sealed.is_none() {
                    tracing::info!(key = %e.record.id, "key was created before SigV4 support \
                        and cannot sign AWS requests; create a new key");
                }
                Some((p, &e.record.id, sealed?))
            });
            let (id, sealed) = match usable {
                Some((_, id, sealed)) => (id, sealed),
                None => (&self.dummy_sealed.0, &self.dummy_sealed.1),
            };
            let secret = self.server_key.open(id, sealed)?;
            match (
                skyscale_sigv4::verify(req, &auth, &secret, "lambda", now),
                usable,
            ) {
                (Ok(()), Some((p, _, _))) => Ok(p.clone()),
                (Ok(()) | Err(SigV4Error::Mismatch), _) => Err(SigV4Error::UnknownKey.into()),
                (Err(e), _) => Err(e.into()),
            }
        })
    }

    /// What can be checked of a SigV4 request before its body is read: that it carries an
    /// `Authorization` header of the right form, from an address not over its limit of
    /// failed authentications. Lets the HTTP layer refuse such requests without reading (and
    /// buffering) their bodies; [`Self::authenticate_sigv4`] decides the rest.
    pub fn sigv4_precheck(
        &self,
        authorization: Option<&str>,
        source: IpAddr,
    ) -> Result<(), CoreError> {
        let authorization = authorization.ok_or(skyscale_sigv4::SigV4Error::Missing)?;
        self.rate_limited(source, || {
            skyscale_sigv4::Authorization::parse(authorization)?;
            Ok(())
        })
    }

    /// How many sandboxes exist and how many invocations run.
    pub fn sandbox_counts(&self) -> SandboxCounts {
        self.scheduler.as_ref().map_or(
            SandboxCounts {
                generic: 0,
                live: 0,
                busy: 0,
            },
            |s| s.counts(),
        )
    }

    /// Stops handing out sandboxes, waits up to `grace` for in-flight invocations, then
    /// destroys every sandbox.
    pub async fn shutdown(&self, grace: Duration) {
        self.records.close_followers();
        // No slot fires from now on; one being committed commits whole.
        self.schedules.stop(Duration::from_secs(5)).await;
        // No new event starts; those running finish (within the grace) and are ended,
        // those that had not started stay queued for the next start.
        self.events.stop_claiming();
        // A worker gives its lease up first: API nodes stop sending it work.
        if let Cluster::Worker(node) = &self.cluster {
            self.release_worker(node).await;
        }
        if let Some(s) = &self.scheduler {
            s.shutdown(grace).await;
        }
        if !self.events.drain(Duration::from_secs(5)).await {
            tracing::warn!("events still running at shutdown run again at the next start");
        }
        // The records of the invocations that just finished, before the process exits.
        if !self.records.flush(Duration::from_secs(5)).await {
            tracing::warn!("invocation records still queued at shutdown were not written");
        }
    }
}

/// Runs blocking store or file work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, CoreError> + Send + 'static,
) -> Result<T, CoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| CoreError::internal_from("blocking task failed", e))?
}

/// Writes the agent binary and the Python bootstrap into `dir`, which every sandbox binds
/// read-only at `/var/runtime`. Files are replaced by rename, so a sandbox never sees a
/// half-written one.
pub fn install_runtime_dir(dir: &Path, agent_binary: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    let put = |name: &str, write: &dyn Fn(&Path) -> std::io::Result<()>, mode: u32| {
        let tmp = dir.join(format!(".{name}.tmp"));
        write(&tmp)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
        std::fs::rename(&tmp, dir.join(name))
    };
    put(
        "skyscale-agent",
        &|p| std::fs::copy(agent_binary, p).map(drop),
        0o755,
    )?;
    put(
        "bootstrap.py",
        &|p| std::fs::write(p, PYTHON_BOOTSTRAP),
        0o644,
    )?;
    // Where the Python SDK is bound, if the host has it: an empty directory (the process
    // driver's link to the SDK, from an earlier start, is replaced).
    let sdk = dir.join("sdk");
    if sdk
        .symlink_metadata()
        .is_ok_and(|m| m.file_type().is_symlink())
    {
        std::fs::remove_file(&sdk)?;
    }
    std::fs::create_dir_all(&sdk)?;
    Ok(dir.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_pages_walk_the_list_once() {
        let all: Vec<u32> = (0..5).collect();
        let (p1, m1) = offset_page(all.clone(), None, 2).unwrap();
        let (p2, m2) = offset_page(all.clone(), m1.as_deref(), 2).unwrap();
        let (p3, m3) = offset_page(all.clone(), m2.as_deref(), 2).unwrap();
        assert_eq!((p1, p2, p3), (vec![0, 1], vec![2, 3], vec![4]));
        assert_eq!(m3, None, "the last page has no marker");
        assert_eq!(offset_page(all.clone(), None, 0).unwrap().0, vec![0]);
        assert!(offset_page(all.clone(), Some("x"), 2)
            .unwrap_err()
            .to_string()
            .contains("invalid Marker"));
        assert!(offset_page(all, Some("9"), 2).unwrap().0.is_empty());
    }
}
