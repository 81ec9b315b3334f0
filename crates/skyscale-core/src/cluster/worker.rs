//! The worker's side: registering, renewing the lease with the host's status, fencing
//! itself, and running the invocations API nodes send.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use skyscale_store::{WarmKey, WorkerStatus};
use tokio::time::Instant;

use super::{ClusterSettings, FailureKind, WorkerAnswer, WorkerInvocation};
use crate::{ControlPlane, CoreError};

/// Not registered, or fenced: admits nothing.
const FENCED: u64 = 0;

pub(crate) struct WorkerNode {
    pub settings: ClusterSettings,
    /// The live generation, or `FENCED`.
    generation: AtomicU64,
    /// The capacity it registers: its host's sandbox cap.
    capacity: u64,
    /// Reserved functions whose home this worker holds, and under which generation.
    homes: std::sync::Mutex<std::collections::HashMap<String, u64>>,
}

impl WorkerNode {
    pub fn new(settings: ClusterSettings, capacity: u64) -> Self {
        Self {
            settings,
            generation: AtomicU64::new(FENCED),
            capacity,
            homes: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// The live generation; `None` while fenced.
    pub fn generation(&self) -> Option<u64> {
        Some(self.generation.load(Ordering::Acquire)).filter(|&g| g != FENCED)
    }
}

/// The one-minute load average of the host.
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

impl ControlPlane {
    fn worker_status(&self) -> WorkerStatus {
        let Some(s) = self.scheduler.as_ref() else {
            return WorkerStatus::default();
        };
        let counts = s.counts();
        WorkerStatus {
            sandboxes: counts.live as u64,
            busy: counts.busy as u64,
            load: load_average(),
            warm: s
                .idle_keys()
                .into_iter()
                .map(|(k, idle)| WarmKey {
                    function: k.function.to_string(),
                    revision: k.revision,
                    version: k.version,
                    idle: idle as u64,
                })
                .collect(),
        }
    }

    /// Fences this worker: it admits nothing from now on, answers `Fenced` for what runs,
    /// and destroys every sandbox (running invocations die with theirs).
    fn fence(&self, node: &WorkerNode, why: &str) {
        let was = node.generation.swap(FENCED, Ordering::AcqRel);
        if was != FENCED {
            tracing::warn!(
                generation = was,
                reason = why,
                "worker fenced: destroying every sandbox"
            );
        }
        if let Some(s) = &self.scheduler {
            s.fence();
        }
    }

    /// Registers this worker and keeps its lease: renewed every third of the lease; fenced
    /// when a renewal finds it gone or none succeeded for `lease - FENCE_MARGIN` by this
    /// process's clock; registered again (a new generation) once the database answers.
    pub(crate) fn start_worker_membership(self: &Arc<Self>, node: Arc<WorkerNode>) {
        let cp = self.clone();
        tokio::spawn(async move {
            let lease = node.settings.lease;
            let renew_every = lease / 3;
            let fence_after = lease.saturating_sub(ClusterSettings::FENCE_MARGIN);
            loop {
                // Register.
                let started = Instant::now();
                let status = cp.worker_status();
                let store = cp.store.clone();
                let (address, name, capacity) = (
                    node.settings.address.clone(),
                    node.settings.node_name.clone(),
                    node.capacity,
                );
                let registered = tokio::task::spawn_blocking(move || {
                    store.register_worker(&address, &name, capacity, lease, &status)
                })
                .await;
                let generation = match registered {
                    Ok(Ok(l)) => l.generation,
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "registering the worker failed; retrying");
                        tokio::time::sleep(Duration::from_millis(250)).await;
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "registering the worker failed; retrying");
                        tokio::time::sleep(Duration::from_millis(250)).await;
                        continue;
                    }
                };
                if started.elapsed() >= fence_after {
                    // Registered too slowly to trust the lease: it may have run out already.
                    continue;
                }
                node.generation.store(generation, Ordering::Release);
                tracing::info!(generation, address = %node.settings.address, "worker registered");
                // Renew.
                let mut last_ok = started;
                loop {
                    let deadline = last_ok + fence_after;
                    tokio::time::sleep_until((last_ok + renew_every).min(deadline)).await;
                    if Instant::now() >= deadline {
                        cp.fence(&node, "no successful renewal within the lease");
                        break;
                    }
                    let attempt = Instant::now();
                    let status = cp.worker_status();
                    let store = cp.store.clone();
                    let address = node.settings.address.clone();
                    let renewal = tokio::time::timeout_at(
                        deadline,
                        tokio::task::spawn_blocking(move || {
                            store.renew_worker(&address, generation, lease, &status)
                        }),
                    )
                    .await;
                    match renewal {
                        Ok(Ok(Ok(Some(_)))) => last_ok = attempt,
                        Ok(Ok(Ok(None))) => {
                            cp.fence(&node, "the lease ran out or another generation replaced it");
                            break;
                        }
                        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "renewing the lease failed"),
                        Ok(Err(e)) => tracing::warn!(error = %e, "renewing the lease failed"),
                        Err(_) => {
                            cp.fence(&node, "no successful renewal within the lease");
                            break;
                        }
                    }
                }
            }
        });
    }

    /// Gives up this worker's lease (a clean stop): API nodes stop routing to it at their
    /// next refresh.
    pub(crate) async fn release_worker(&self, node: &WorkerNode) {
        let Some(generation) = node.generation() else {
            return;
        };
        node.generation.store(FENCED, Ordering::Release);
        let store = self.store.clone();
        let address = node.settings.address.clone();
        let _ =
            tokio::task::spawn_blocking(move || store.release_worker(&address, generation)).await;
    }

    /// Whether this worker (of `generation`) holds the home of the reserved function
    /// `function`, claiming it in the database the first time (once per function and
    /// generation: a cold path). Another worker takes a home only once its holder's lease
    /// ran out, and the holder fenced itself before that: one scheduler at a time enforces
    /// the reservation.
    async fn hold_home(
        &self,
        node: &WorkerNode,
        function: &str,
        generation: u64,
    ) -> Result<bool, CoreError> {
        let held = node
            .homes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(function)
            .is_some_and(|&g| g == generation);
        if held {
            return Ok(true);
        }
        let store = self.store.clone();
        let (f, address) = (function.to_owned(), node.settings.address.clone());
        let claimed =
            crate::blocking(move || Ok(store.claim_home(&f, &address, generation)?)).await?;
        if claimed {
            node.homes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(function.to_owned(), generation);
        }
        Ok(claimed)
    }

    /// Runs an invocation an API node sent (authenticated by the HTTP layer with the
    /// cluster secret). No authorization and no record here: the API node did and does.
    pub async fn run_for_api(self: &Arc<Self>, req: WorkerInvocation) -> WorkerAnswer {
        let super::super::Cluster::Worker(node) = &self.cluster else {
            return WorkerAnswer::Failed {
                kind: FailureKind::Internal,
                message: "this node is not a worker".into(),
            };
        };
        let generation = req.generation;
        if node.generation() != Some(generation) {
            return WorkerAnswer::Fenced;
        }
        if req.function.reserved_concurrency.is_some() {
            match self
                .hold_home(node, req.function.name.as_str(), generation)
                .await
            {
                Ok(true) => {}
                Ok(false) => return WorkerAnswer::NotHome,
                Err(e) => {
                    return WorkerAnswer::Failed {
                        kind: FailureKind::Unavailable,
                        message: format!("claiming the function's home failed: {e}"),
                    }
                }
            }
        }
        let node = node.clone();
        let cp = self.clone();
        let span = tracing::info_span!("invoke", function = %req.function.name, request_id = %req.request_id);
        // Runs to its end even if the API node goes away, as a local invocation does.
        let task = tokio::spawn(tracing::Instrument::instrument(
            async move {
                let record = req.function.clone();
                let result = cp
                    .invoke_local(
                        req.function,
                        req.request_id,
                        req.payload,
                        (req.invoked_arn, req.client_context),
                        Duration::ZERO,
                    )
                    .await;
                // SnapStart: snapshots live on the workers that restore them.
                cp.want_snapshot(&record);
                result
            },
            span,
        ));
        let result = match task.await {
            Ok(r) => r,
            Err(e) => Err(CoreError::internal_from("invocation task failed", e)),
        };
        // Never a result once fenced: another worker may own this work by now.
        if node.generation() != Some(generation) {
            return WorkerAnswer::Dropped;
        }
        match result {
            Ok(output) => WorkerAnswer::Done {
                generation,
                output: Box::new(output),
            },
            Err(CoreError::TooManyRequests { limit, message }) => {
                WorkerAnswer::Full { limit, message }
            }
            Err(CoreError::Unavailable(message)) => WorkerAnswer::Failed {
                kind: FailureKind::Unavailable,
                message,
            },
            Err(CoreError::Conflict(message)) => WorkerAnswer::Failed {
                kind: FailureKind::Conflict,
                message,
            },
            Err(e) => {
                tracing::error!(error = %e.report(), "invocation failed on this worker");
                WorkerAnswer::Failed {
                    kind: FailureKind::Internal,
                    message: e.to_string(),
                }
            }
        }
    }
}
