//! The API node's side: the live workers (refreshed every 500 ms by one task, never read
//! from the database on the invoke path), routing an invocation to a worker, refusing stale
//! results, and the per-worker metrics.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use skyscale_store::{FunctionRecord, Store};

use super::routing::{candidates, rendezvous, Member};
use super::{
    ClusterSettings, FailureKind, LinkError, NodeRole, WorkerAnswer, WorkerBuild, WorkerInvocation,
    WorkerLink,
};
use crate::requirements::Progress;
use crate::{CoreError, InvokeOutput, Throttle};

/// How long an API node counts as up after its last refresh (for `cluster status`).
const API_NODE_SEEN: Duration = Duration::from_secs(10);

/// Per worker (by address): invocations routed to it, spills away from it (it answered
/// full or was unreachable before the request was sent).
#[derive(Default)]
struct WorkerCounters {
    routed: u64,
    spilled: u64,
}

/// One read of the membership.
#[derive(Default)]
struct View {
    members: Vec<Member>,
    /// Reserved functions' homes held by live workers: function → (address, generation).
    homes: HashMap<String, (String, u64)>,
}

pub(crate) struct ApiNode {
    pub settings: ClusterSettings,
    /// This process's row in `api_nodes`.
    pub id: String,
    link: Arc<dyn WorkerLink>,
    /// The live workers and the homes they hold, as last read; invocations in flight watch
    /// it to give up on a worker whose lease ran out.
    view: tokio::sync::watch::Sender<Arc<View>>,
    counters: Mutex<HashMap<String, WorkerCounters>>,
    stale_refused: AtomicU64,
    no_worker: AtomicU64,
}

impl ApiNode {
    pub fn new(settings: ClusterSettings, link: Arc<dyn WorkerLink>) -> Self {
        Self {
            settings,
            id: uuid::Uuid::new_v4().to_string(),
            link,
            view: tokio::sync::watch::Sender::new(Arc::new(View::default())),
            counters: Mutex::new(HashMap::new()),
            stale_refused: AtomicU64::new(0),
            no_worker: AtomicU64::new(0),
        }
    }

    fn view(&self) -> Arc<View> {
        self.view.borrow().clone()
    }

    /// Resolves once the worker at `address` of `generation` is no longer live in this
    /// node's view (its lease ran out, or it registered again).
    async fn lapsed(&self, address: &str, generation: u64) {
        let mut rx = self.view.subscribe();
        loop {
            let live = rx
                .borrow_and_update()
                .members
                .iter()
                .any(|m| m.address == address && m.generation == generation);
            if !live || rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// Reads the live workers every `refresh` and records this node as up. Runs until the
    /// process ends.
    pub fn start_refresh(self: &Arc<Self>, store: Arc<Store>) {
        let node = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(node.settings.refresh);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut n: u64 = 0;
            loop {
                tick.tick().await;
                let touch = n.is_multiple_of(4);
                n += 1;
                let store = store.clone();
                let (id, name, address) = (
                    node.id.clone(),
                    node.settings.node_name.clone(),
                    node.settings.address.clone(),
                );
                let read = tokio::task::spawn_blocking(
                    move || -> Result<_, skyscale_store::StoreError> {
                        if touch {
                            store.touch_api_node(&id, &name, &address)?;
                        }
                        Ok((store.live_workers()?, store.live_homes()?))
                    },
                )
                .await;
                match read {
                    Ok(Ok((rows, homes))) => {
                        let members: Vec<Member> = rows
                            .into_iter()
                            .map(|w| Member {
                                warm: w
                                    .status
                                    .warm
                                    .iter()
                                    .filter(|k| k.idle > 0)
                                    .map(|k| (k.function.clone(), k.revision, k.version))
                                    .collect::<HashSet<_>>(),
                                address: w.address,
                                name: w.name,
                                generation: w.generation,
                                capacity: w.capacity,
                            })
                            .collect();
                        let homes = homes
                            .into_iter()
                            .map(|(f, address, generation)| (f, (address, generation)))
                            .collect();
                        node.view.send_replace(Arc::new(View { members, homes }));
                    }
                    // The last snapshot stays: workers are dropped from it only when the
                    // database says their lease ran out (they fence themselves before).
                    Ok(Err(e)) => tracing::warn!(error = %e, "reading the live workers failed"),
                    Err(e) => tracing::warn!(error = %e, "reading the live workers failed"),
                }
            }
        });
    }

    /// The cluster's concurrency: the sum of the live workers' capacities.
    pub fn capacity(&self) -> u64 {
        self.view().members.iter().map(|m| m.capacity).sum()
    }

    fn count(&self, address: &str, f: impl FnOnce(&mut WorkerCounters)) {
        let mut c = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        match c.get_mut(address) {
            Some(w) => f(w),
            None => f(c.entry(address.to_owned()).or_default()),
        }
    }

    /// Runs one invocation on a worker (see `routing::candidates` for which). A result is
    /// accepted only from the generation it was sent to while that generation is still the
    /// live one; a request that may have reached a worker is never sent again.
    pub async fn invoke(
        &self,
        f: Arc<FunctionRecord>,
        request_id: String,
        payload: Vec<u8>,
        (invoked_arn, client_context): (String, Option<String>),
    ) -> Result<InvokeOutput, CoreError> {
        let view = self.view();
        let members = &view.members;
        let reserved = f.reserved_concurrency.is_some();
        let home = view
            .homes
            .get(f.name.as_str())
            .map(|(a, g)| (a.as_str(), *g));
        let order = candidates(
            members,
            f.name.as_str(),
            f.revision,
            f.version,
            reserved,
            home,
        );
        if order.is_empty() {
            self.no_worker.fetch_add(1, Ordering::Relaxed);
            return Err(CoreError::Unavailable(
                "no live worker: the cluster has no worker to run this invocation; retry in a \
                 few seconds"
                    .into(),
            ));
        }
        let mut req = WorkerInvocation {
            function: f,
            request_id,
            payload,
            invoked_arn,
            client_context,
            generation: 0,
        };
        let mut last: Option<CoreError> = None;
        for i in order {
            let m = &members[i];
            req.generation = m.generation;
            self.count(&m.address, |c| c.routed += 1);
            // A worker whose lease runs out while it runs the invocation has fenced itself:
            // its answer would be refused, so it is not waited for (a partitioned worker's
            // connection may hang much longer).
            let answer = tokio::select! {
                a = self.link.invoke(&m.address, &req) => a,
                () = self.lapsed(&m.address, m.generation) => {
                    self.stale_refused.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(worker = %m.address, generation = m.generation, "the worker's lease ran out during the invocation");
                    return Err(CoreError::Unavailable(format!(
                        "worker {} lost its lease during the invocation; it may have run: \
                         retry if it is safe",
                        m.name
                    )));
                }
            };
            match answer {
                Ok(WorkerAnswer::Done { generation, output }) => {
                    if generation == m.generation && self.is_live(&m.address, generation) {
                        return Ok(*output);
                    }
                    self.stale_refused.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(worker = %m.address, generation, "refused a result of a worker generation that is no longer live");
                    return Err(CoreError::Unavailable(format!(
                        "the worker that ran this invocation ({}) lost its lease meanwhile: its \
                         result is refused; retry",
                        m.name
                    )));
                }
                Ok(WorkerAnswer::NotHome) => {
                    return Err(CoreError::Unavailable(format!(
                        "function {} is moving to another worker (its reserved concurrency is \
                         held by one worker at a time); retry",
                        req.function.name
                    )));
                }
                Ok(WorkerAnswer::Dropped) => {
                    self.stale_refused.fetch_add(1, Ordering::Relaxed);
                    return Err(CoreError::Unavailable(format!(
                        "worker {} lost its lease while the invocation ran: its result is \
                         refused; retry",
                        m.name
                    )));
                }
                Ok(WorkerAnswer::Full { limit, message }) => {
                    if reserved {
                        return Err(CoreError::TooManyRequests { limit, message });
                    }
                    self.count(&m.address, |c| c.spilled += 1);
                    last = Some(CoreError::TooManyRequests { limit, message });
                }
                Ok(WorkerAnswer::Fenced) => {
                    self.count(&m.address, |c| c.spilled += 1);
                    last = Some(CoreError::Unavailable(format!(
                        "worker {} is fenced (its lease ran out); retry",
                        m.name
                    )));
                    if reserved {
                        break;
                    }
                }
                Ok(WorkerAnswer::Failed { kind, message }) => {
                    return Err(match kind {
                        FailureKind::Conflict => CoreError::Conflict(message),
                        FailureKind::Unavailable => CoreError::Unavailable(message),
                        FailureKind::Internal => {
                            CoreError::internal(format!("worker {} failed: {message}", m.name))
                        }
                    });
                }
                Err(LinkError::NotSent(e)) => {
                    tracing::warn!(worker = %m.address, error = %e, "worker unreachable; trying the next");
                    self.count(&m.address, |c| c.spilled += 1);
                    last = Some(CoreError::Unavailable(format!(
                        "worker {} is unreachable; retry",
                        m.name
                    )));
                    if reserved {
                        break;
                    }
                }
                Err(LinkError::Lost(e)) => {
                    // The function may have run: not sent again (a retry is the caller's).
                    tracing::warn!(worker = %m.address, error = %e, "lost a worker's answer");
                    return Err(CoreError::Unavailable(format!(
                        "the connection to worker {} failed during the invocation; it may have \
                         run: retry if it is safe",
                        m.name
                    )));
                }
            }
        }
        Err(last.unwrap_or_else(|| CoreError::TooManyRequests {
            limit: Throttle::Host,
            message: "every worker is full".into(),
        }))
    }

    /// Has a live worker run a requirements build: the first in the rendezvous order of
    /// the build's key that takes it (the same worker for the same requirements while
    /// membership holds), spilling past workers that are unreachable or full. A build
    /// whose worker was lost is not sent again (the caller may retry; a finished build is
    /// then reused).
    pub async fn build(
        &self,
        key: &str,
        build: &WorkerBuild,
        progress: Option<&Progress>,
    ) -> Result<(Vec<u8>, String), CoreError> {
        let view = self.view();
        let members = &view.members;
        let mut last = CoreError::Unavailable(
            "no live worker: the cluster has no worker to build requirements.txt on; retry in a \
             few seconds"
                .into(),
        );
        for i in rendezvous(key, members) {
            let m = &members[i];
            match self.link.build(&m.address, build, progress).await {
                Ok(Ok(built)) => return Ok(built),
                Ok(Err(e @ CoreError::TooManyRequests { .. })) => last = e,
                Ok(Err(e)) => return Err(e),
                Err(LinkError::NotSent(e)) => {
                    tracing::warn!(worker = %m.address, error = %e, "worker unreachable for a build; trying the next");
                    last =
                        CoreError::Unavailable(format!("worker {} is unreachable; retry", m.name));
                }
                Err(LinkError::Lost(e)) => {
                    tracing::warn!(worker = %m.address, error = %e, "lost a worker's build");
                    return Err(CoreError::Unavailable(format!(
                        "the connection to worker {} failed during the requirements build: retry",
                        m.name
                    )));
                }
            }
        }
        Err(last)
    }

    fn is_live(&self, address: &str, generation: u64) -> bool {
        self.view()
            .members
            .iter()
            .any(|m| m.address == address && m.generation == generation)
    }

    /// `skyscale_cluster_*` series in the Prometheus text format.
    pub fn render_metrics(&self) -> String {
        let view = self.view();
        let members = &view.members;
        let counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        let mut addresses: Vec<&String> = counters.keys().collect();
        for m in members.iter() {
            if !counters.contains_key(&m.address) {
                addresses.push(&m.address);
            }
        }
        addresses.sort();
        let mut t = String::new();
        let esc = |s: &str| {
            s.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n")
        };
        let _ = writeln!(t, "# HELP skyscale_cluster_worker_live Whether the worker's lease is live in this API node's view (1) or not (0).");
        let _ = writeln!(t, "# TYPE skyscale_cluster_worker_live gauge");
        for a in &addresses {
            let m = members.iter().find(|m| &&m.address == a);
            let name = m.map(|m| m.name.as_str()).unwrap_or("");
            let _ = writeln!(
                t,
                "skyscale_cluster_worker_live{{worker=\"{}\",name=\"{}\"}} {}",
                esc(a),
                esc(name),
                u8::from(m.is_some())
            );
        }
        let _ = writeln!(
            t,
            "# HELP skyscale_cluster_routed_total Invocations this API node sent to the worker."
        );
        let _ = writeln!(t, "# TYPE skyscale_cluster_routed_total counter");
        for a in &addresses {
            let v = counters.get(*a).map_or(0, |c| c.routed);
            let _ = writeln!(
                t,
                "skyscale_cluster_routed_total{{worker=\"{}\"}} {v}",
                esc(a)
            );
        }
        let _ = writeln!(t, "# HELP skyscale_cluster_spills_total Invocations that went on to another worker because this one was full, fenced or unreachable.");
        let _ = writeln!(t, "# TYPE skyscale_cluster_spills_total counter");
        for a in &addresses {
            let v = counters.get(*a).map_or(0, |c| c.spilled);
            let _ = writeln!(
                t,
                "skyscale_cluster_spills_total{{worker=\"{}\"}} {v}",
                esc(a)
            );
        }
        let _ = writeln!(t, "# HELP skyscale_cluster_stale_results_refused_total Results refused because their worker generation was no longer live.");
        let _ = writeln!(
            t,
            "# TYPE skyscale_cluster_stale_results_refused_total counter"
        );
        let _ = writeln!(
            t,
            "skyscale_cluster_stale_results_refused_total {}",
            self.stale_refused.load(Ordering::Relaxed)
        );
        let _ = writeln!(t, "# HELP skyscale_cluster_no_worker_total Invocations refused because no worker was live.");
        let _ = writeln!(t, "# TYPE skyscale_cluster_no_worker_total counter");
        let _ = writeln!(
            t,
            "skyscale_cluster_no_worker_total {}",
            self.no_worker.load(Ordering::Relaxed)
        );
        t
    }
}

/// The cluster as `cluster status` shows it.
#[derive(Debug, Clone)]
pub struct ClusterView {
    pub role: NodeRole,
    /// This node's name.
    pub node_name: String,
    pub workers: Vec<WorkerView>,
    pub api_nodes: Vec<ApiNodeView>,
}

#[derive(Debug, Clone)]
pub struct WorkerView {
    pub name: String,
    pub address: String,
    pub generation: u64,
    pub live: bool,
    /// Since its last renewal (database clock).
    pub lease_age: Duration,
    /// Until its lease ends; zero when it has.
    pub lease_remaining: Duration,
    pub sandboxes: u64,
    pub busy: u64,
    pub capacity: u64,
    pub load: f64,
}

#[derive(Debug, Clone)]
pub struct ApiNodeView {
    pub name: String,
    pub address: String,
    /// Since it last refreshed (database clock).
    pub last_seen_age: Duration,
    /// The node that answered.
    pub this_node: bool,
}

fn age(from_ms: i64, to_ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(to_ms.saturating_sub(from_ms)).unwrap_or(0))
}

impl ClusterView {
    pub(crate) fn read(
        store: &Store,
        role: NodeRole,
        node_name: String,
        this_api: Option<&str>,
    ) -> Result<Self, CoreError> {
        let workers = store
            .all_workers()?
            .into_iter()
            .map(|w| WorkerView {
                live: w.is_live(),
                lease_age: age(w.renewed_at_ms, w.now_ms),
                lease_remaining: age(w.now_ms, w.lease_until_ms),
                name: w.name,
                address: w.address,
                generation: w.generation,
                sandboxes: w.status.sandboxes,
                busy: w.status.busy,
                capacity: w.capacity,
                load: w.status.load,
            })
            .collect();
        let api_nodes = store
            .api_nodes(API_NODE_SEEN)?
            .into_iter()
            .map(|n| ApiNodeView {
                this_node: this_api == Some(n.id.as_str()),
                last_seen_age: age(n.last_seen_ms, n.now_ms),
                name: n.name,
                address: n.address,
            })
            .collect();
        Ok(Self {
            role,
            node_name,
            workers,
            api_nodes,
        })
    }
}
