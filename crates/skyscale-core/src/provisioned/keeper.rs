//! The keeper: one task that keeps every version's provisioned sandboxes at their
//! configurations' numbers.
//!
//! Each pass (every 500 ms while there are configurations, every 5 s while there are none,
//! and at once when a configuration or an alias changes on this node, or a provisioned
//! sandbox left its pool) reads the stored configurations, resolves each to
//! the version it provisions now (an alias that moved takes its sandboxes along: the old
//! version's target drops to 0, the new one's rises), tells the scheduler the targets,
//! destroys idle sandboxes whose agent died, and starts what is missing. A start reserves a
//! slot like an invocation (generic sandbox or boot, room made the same way), specialises
//! the sandbox with `AWS_LAMBDA_INITIALIZATION_TYPE=provisioned-concurrency` and, once its
//! init is done, hands it to the pool. A failed init marks the version failing: its
//! configurations are `FAILED` with the reason, and it is tried again, one sandbox at a
//! time, after a backoff (`policy::backoff`).
//!
//! As Lambda does for provisioned concurrency, a sandbox's init output and `Init Duration`
//! belong to the sandbox, not to an invocation: the keeper logs them on the control
//! plane's log (`provisioned sandbox initialised`), and the first invocation's `REPORT` has
//! no `Init Duration`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use skyscale_store::FunctionRecord;
use skyscale_types::invocation::InitType;
use skyscale_types::FunctionName;

use super::{policy, Shared};
use crate::invoke::{ColdTiming, Ready};
use crate::scheduler::{Scheduler, Shape, Slot};
use crate::session::PoolKey;
use crate::{blocking, ControlPlane, CoreError};

/// How often the keeper looks when nothing wakes it, while there are configurations (a
/// dead idle sandbox is found by looking).
const PASS_EVERY: Duration = Duration::from_millis(500);
/// How often it looks when there are none (a put on this node wakes it at once; this is
/// for one made through another node on a shared database).
const IDLE_PASS_EVERY: Duration = Duration::from_secs(5);

/// A version whose provisioned sandboxes fail to initialise.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    /// Failed attempts in a row.
    attempts: u32,
    reason: String,
    /// No attempt before this.
    retry_at: Instant,
}

/// The keeper's state shared with the API's views.
#[derive(Default)]
pub(crate) struct Keeper {
    shared: Shared,
}

impl Keeper {
    /// What a configuration resolved to at the last pass (`None`: not looked at yet).
    pub(super) fn resolved(
        &self,
        function: &FunctionName,
        qualifier: &str,
    ) -> Option<Result<PoolKey, String>> {
        self.shared
            .lock()
            .resolved
            .get(&(function.clone(), qualifier.to_owned()))
            .cloned()
    }

    /// Why a version's sandboxes fail to initialise, with the attempts and the next one.
    pub(super) fn failure(&self, key: &PoolKey) -> Option<String> {
        let known = self.shared.lock();
        let f = known.failures.get(key)?;
        let next = f.retry_at.saturating_duration_since(Instant::now());
        Some(format!(
            "{} (attempt {}; next attempt in {} s)",
            f.reason,
            f.attempts,
            next.as_secs_f64().ceil() as u64
        ))
    }

    pub(super) fn forget(&self, function: &FunctionName, qualifier: &str) {
        self.shared
            .lock()
            .resolved
            .remove(&(function.clone(), qualifier.to_owned()));
    }

    /// Wakes the keeper for a pass now.
    pub(crate) fn wake(&self, sched: Option<&Scheduler>) {
        if let Some(s) = sched {
            s.wake_keeper();
        }
    }

    fn failed(&self, key: &PoolKey, reason: String) {
        let mut known = self.shared.lock();
        let attempts = known.failures.get(key).map_or(0, |f| f.attempts) + 1;
        let retry_at = Instant::now() + policy::backoff(attempts);
        tracing::warn!(function = %key.function, version = ?key.version, attempts, reason = %reason,
            "a provisioned sandbox failed to initialise; trying again later");
        known.failures.insert(
            key.clone(),
            Failure {
                attempts,
                reason,
                retry_at,
            },
        );
    }

    fn succeeded(&self, key: &PoolKey) {
        self.shared.lock().failures.remove(key);
    }

    /// Whether `key` is failing, and whether it may be tried now.
    fn failing(&self, key: &PoolKey, now: Instant) -> (bool, bool) {
        match self.shared.lock().failures.get(key) {
            Some(f) => (true, now >= f.retry_at),
            None => (false, true),
        }
    }
}

impl ControlPlane {
    /// Starts the keeper on a single node (role `all`); a cluster does not provision
    /// (docs/cluster.md). Configurations stored before a restart are provisioned again.
    pub fn start_provisioned(self: &Arc<Self>) {
        if !matches!(self.cluster, crate::Cluster::Single) {
            return;
        }
        let Some(sched) = self.scheduler.clone() else {
            return;
        };
        let cp = self.clone();
        tokio::spawn(async move {
            loop {
                if sched.is_closing() {
                    return;
                }
                let next = match cp.keeper_pass(&sched).await {
                    Ok(0) => IDLE_PASS_EVERY,
                    Ok(_) => PASS_EVERY,
                    Err(e) => {
                        tracing::warn!(error = %e.report(), "provisioned concurrency pass failed");
                        PASS_EVERY
                    }
                };
                sched.keeper_wakeup(next).await;
            }
        });
    }

    /// One pass; returns how many configurations there are.
    async fn keeper_pass(self: &Arc<Self>, sched: &Arc<Scheduler>) -> Result<usize, CoreError> {
        sched.reap_dead_provisioned();
        let store = self.store.clone();
        let configs = blocking(move || Ok(store.all_provisioned_configs()?)).await?;
        let mut resolved = HashMap::new();
        let mut targets: HashMap<PoolKey, u32> = HashMap::new();
        let mut records: HashMap<PoolKey, Arc<FunctionRecord>> = HashMap::new();
        for c in &configs {
            let outcome = match self.provisioned_version(&c.function, &c.qualifier).await {
                Ok(Ok(n)) => {
                    match self
                        .version_record(c.function.as_str(), Some(&n.to_string()), false)
                        .await
                    {
                        Ok(v) => {
                            let key = PoolKey {
                                function: v.name.clone(),
                                revision: v.revision,
                                version: v.version,
                            };
                            *targets.entry(key.clone()).or_default() += c.requested;
                            records.insert(key.clone(), v);
                            Ok(key)
                        }
                        Err(e) => Err(e.to_string()),
                    }
                }
                Ok(Err(reason)) => Err(reason),
                // Deleted meanwhile: its configuration goes with it.
                Err(e) => Err(e.to_string()),
            };
            resolved.insert((c.function.clone(), c.qualifier.clone()), outcome);
        }
        {
            let mut known = self.provisioned.shared.lock();
            known.resolved = resolved;
            known.failures.retain(|k, _| targets.contains_key(k));
        }
        sched.set_provisioned_targets(&targets);
        let counts = sched.provisioned_counts();
        let now = Instant::now();
        for (key, f) in records {
            let c = counts.get(&key).copied().unwrap_or_default();
            let (failing, may_try) = self.provisioned.failing(&key, now);
            if !may_try {
                continue;
            }
            let n = policy::to_start(c.target, c.ready() + c.starting, failing);
            for _ in 0..n {
                // The slot is reserved here, before the next pass counts what is starting.
                let shape = Shape {
                    network: f.network,
                    tmp_mb: f.ephemeral_mb,
                };
                let slot = match sched.reserve_provisioned(&key, f.memory.get(), shape) {
                    Ok(slot) => slot,
                    Err(CoreError::Unavailable(_)) => return Ok(configs.len()),
                    Err(e) => {
                        self.provisioned.failed(&key, e.to_string());
                        break;
                    }
                };
                let (cp, sched, f, key) = (self.clone(), sched.clone(), f.clone(), key.clone());
                tokio::spawn(async move {
                    cp.start_provisioned_sandbox(&sched, &f, key, slot, shape)
                        .await
                });
            }
        }
        Ok(configs.len())
    }

    /// Boots (or takes the generic sandbox in `slot`), specialises and hands over one
    /// provisioned sandbox of `f`.
    async fn start_provisioned_sandbox(
        &self,
        sched: &Arc<Scheduler>,
        f: &FunctionRecord,
        key: PoolKey,
        slot: Slot,
        shape: Shape,
    ) {
        let memory = f.memory.get();
        let started = Instant::now();
        let session = match slot {
            Slot::Generic(s) => s,
            Slot::Boot(id) => match sched.boot(id, memory, shape).await {
                Ok(s) => s,
                Err(e) => {
                    sched.provisioned_failed(&key);
                    self.provisioned.failed(&key, e.report());
                    return;
                }
            },
        };
        let mut session = session;
        session.init_type = InitType::ProvisionedConcurrency;
        match self
            .specialize(sched, session, f, key.clone(), &mut ColdTiming::default())
            .await
        {
            Ok(Some(Ready::Session {
                session, init_logs, ..
            })) => {
                tracing::info!(function = %key.function, version = ?key.version,
                    sandbox = %session.id,
                    init_type = InitType::ProvisionedConcurrency.as_str(),
                    init_duration_ms = started.elapsed().as_secs_f64() * 1000.0,
                    output = %init_logs, "provisioned sandbox initialised");
                self.provisioned.succeeded(&key);
                sched.provisioned_ready(session);
            }
            Ok(Some(Ready::InitFailed {
                outcome,
                body,
                logs,
            })) => {
                sched.provisioned_failed(&key);
                let detail = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|d| {
                        let t = d.get("errorType")?.as_str()?.to_owned();
                        let m = d.get("errorMessage")?.as_str()?.to_owned();
                        Some(format!("{t}: {m}"))
                    })
                    .unwrap_or_else(|| outcome.error_type().unwrap_or("init failed").to_owned());
                tracing::info!(function = %key.function, output = %logs, "provisioned sandbox init output");
                self.provisioned
                    .failed(&key, format!("the function's init failed: {detail}"));
            }
            // The code changed before it could be linked: the next pass starts over with
            // the current record.
            Ok(None) => sched.provisioned_failed(&key),
            Err(e) => {
                sched.provisioned_failed(&key);
                self.provisioned.failed(&key, e.report());
            }
        }
    }
}
