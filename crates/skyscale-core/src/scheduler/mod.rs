//! The scheduler: which sandbox runs an invocation, and which sandboxes exist at all.
//!
//! - One invocation per sandbox at a time; a sandbox serves one function revision for life.
//! - Idle sandboxes of a function are reused most-recently-used first, evicted after the
//!   keep-alive, or least-recently-used first when the host's sandbox cap or memory budget
//!   needs room.
//! - `warm_pool_size` generic sandboxes are booted ahead of need; a cold start takes one and
//!   specialises it (code linked into its `/var/task`, memory limit raised, `Init` sent)
//!   instead of booting, and a background task refills the pool.
//! - Limits are checked under one lock, before anything starts, so a caller over a limit gets
//!   its 429 at once and nothing else is disturbed.
//!
//! Concurrency: all bookkeeping lives in one `std::sync::Mutex<State>` that is held for
//! map operations only, never across an `.await`. Sessions move out of the state while an
//! invocation uses them, so the agent conversation itself needs no lock. Sandbox creation and
//! destruction happen outside the lock, in the caller's task or in spawned tasks.
//!
//! The decisions themselves (admission, which sandbox, eviction, pool refill, keep-alive)
//! are pure functions in [`policy`]; this module holds the state they are asked about and
//! carries out what they decide.

mod policy;
mod provisioned;

pub(crate) use provisioned::Slot;
mod snapshots;

pub(crate) use snapshots::{SnapshotState, Snapshots, MAX_SNAPSHOT_BYTES};

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use skyscale_sandbox::{Driver, SandboxId, SandboxSpec};
use skyscale_types::invocation::InitType;
use skyscale_types::FunctionName;
use tokio::sync::Notify;

use crate::session::{PoolKey, Session};
use crate::CoreError;
use policy::{Eviction, IdleSandbox, Occupancy, Refusal};

/// Longest a snapshot restore may take before it is abandoned for a normal cold start.
const RESTORE_TIMEOUT: Duration = Duration::from_secs(10);

/// The scheduler's limits (from the daemon's configuration).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Generic sandboxes kept booted ahead of need.
    pub warm_pool_size: usize,
    /// Most sandboxes alive on this host (generic, idle and busy).
    pub max_sandboxes: usize,
    /// Sum of the memory sizes of all live sandboxes, MiB.
    pub memory_budget_mb: u64,
    /// An idle sandbox unused for this long is destroyed.
    pub keep_alive: Duration,
    /// Memory limit a generic sandbox boots with (raised when it is specialised), MiB.
    pub generic_memory_mb: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            warm_pool_size: 0,
            max_sandboxes: 256,
            memory_budget_mb: 8192,
            keep_alive: Duration::from_secs(600),
            generic_memory_mb: 128,
        }
    }
}

/// A snapshot of the scheduler's sandboxes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SandboxCounts {
    /// Generic sandboxes booted and ready to be specialised.
    pub generic: usize,
    /// All sandboxes counted against the limits (generic, idle and busy).
    pub live: usize,
    /// Invocations running now.
    pub busy: usize,
}

/// The scheduler's live state for metrics, read when they are asked for.
#[derive(Debug, Clone, Default)]
pub(crate) struct Gauges {
    /// Sandboxes of a function waiting for an invocation.
    pub idle: usize,
    /// Sandboxes running an invocation, or being readied for one.
    pub busy: usize,
    /// Generic sandboxes booted and ready to be specialised.
    pub generic: usize,
    /// Generic sandboxes booting.
    pub booting: usize,
    /// Generic sandboxes the pool is kept at (`warm_pool_size`).
    pub pool_target: usize,
    pub max_sandboxes: usize,
    /// Sum of the memory sizes charged to live sandboxes, MiB.
    pub memory_used_mb: u64,
    pub memory_budget_mb: u64,
    /// Per function: invocations running, idle sandboxes.
    pub functions: HashMap<FunctionName, (u64, u64)>,
    /// SnapStart: bytes of the images on disk, cold starts restored from one, and restores
    /// that failed and fell back to a normal cold start.
    pub snapshot_bytes: u64,
    pub snapshot_restores: u64,
    pub snapshot_fallbacks: u64,
}

/// How an invocation gets its sandbox.
pub(crate) enum Acquired {
    /// An idle sandbox already initialised for this revision.
    Warm(Session),
    /// A booted generic sandbox to specialise.
    Generic(Session),
    /// Nothing ready: boot a sandbox with this (already reserved) id.
    Boot(SandboxId),
}

#[derive(Default)]
struct State {
    idle: HashMap<FunctionName, Vec<Session>>,
    generic: Vec<Session>,
    generic_booting: usize,
    /// In-flight invocations per function.
    busy: HashMap<FunctionName, u32>,
    /// Every sandbox that counts against the limits, with the memory it is charged.
    live: HashMap<SandboxId, u32>,
    /// Sandboxes being destroyed (no longer counted in `live`).
    destroying: HashSet<SandboxId>,
    closing: bool,
    /// Provisioned sandboxes, apart from `idle` (see `provisioned.rs`).
    provisioned: provisioned::Pools,
}

impl State {
    fn used_mb(&self) -> u64 {
        self.live.values().map(|&m| u64::from(m)).sum()
    }

    /// The memory `id` is charged, MiB (0 if it is not counted).
    fn charged_mb(&self, id: &SandboxId) -> u32 {
        self.live.get(id).copied().unwrap_or(0)
    }

    /// The idle and generic sandboxes and what they are charged, for [`policy::make_room`].
    fn occupancy(&self) -> Occupancy<&FunctionName> {
        Occupancy {
            live: self.live.len(),
            used_mb: self.used_mb(),
            idle: self
                .idle
                .iter()
                .map(|(name, list)| {
                    let list = list
                        .iter()
                        .map(|s| IdleSandbox {
                            last_used: s.last_used,
                            charged_mb: self.charged_mb(&s.id),
                        })
                        .collect();
                    (name, list)
                })
                .collect(),
            generic_mb: self
                .generic
                .iter()
                .map(|s| self.charged_mb(&s.id))
                .collect(),
        }
    }

    /// Evicts idle sandboxes into `doomed` until one more sandbox of `memory_mb` fits, as
    /// [`policy::make_room`] decides; refuses, evicting nothing, when that cannot be done.
    fn make_room(
        &mut self,
        memory_mb: u32,
        limits: &Limits,
        doomed: &mut Vec<Session>,
    ) -> Result<(), Refusal> {
        let evictions: Vec<Eviction<FunctionName>> =
            policy::make_room(&self.occupancy(), memory_mb, limits)?
                .into_iter()
                .map(|e| match e {
                    Eviction::Idle(name) => Eviction::Idle(name.clone()),
                    Eviction::Generic => Eviction::Generic,
                })
                .collect();
        for eviction in evictions {
            let victim = match eviction {
                Eviction::Idle(name) => self.take_first_idle(&name),
                Eviction::Generic => self.generic.pop(),
            };
            if let Some(victim) = victim {
                self.live.remove(&victim.id);
                doomed.push(victim);
            }
        }
        Ok(())
    }

    /// Takes the first (longest ago put back) idle sandbox of `function`.
    fn take_first_idle(&mut self, function: &FunctionName) -> Option<Session> {
        let list = self.idle.get_mut(function)?;
        if list.is_empty() {
            return None;
        }
        let s = list.remove(0);
        if list.is_empty() {
            self.idle.remove(function);
        }
        Some(s)
    }
}

/// What a sandbox is booted with and cannot change afterwards. Generic sandboxes have the
/// default shape; a function with another (network, a bigger `/tmp`) boots its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shape {
    pub network: bool,
    pub tmp_mb: u32,
}

pub(crate) struct Scheduler {
    driver: Arc<dyn Driver>,
    limits: Limits,
    /// Per-sandbox `/var/task` directories: `<task_root>/<id>`.
    task_root: PathBuf,
    tmp_mb: u32,
    pids_limit: i64,
    boot_timeout: Duration,
    state: Mutex<State>,
    /// Wakes the pool refiller.
    refill: Notify,
    /// Wakes whoever waits for sandboxes to go away (shutdown).
    changed: Notify,
    /// Wakes the provisioned concurrency keeper (a provisioned sandbox left its pool).
    keeper: Notify,
    /// SnapStart's images (`snapshots.rs`), under the task root.
    snapshots: Snapshots,
}

impl Scheduler {
    /// Builds the scheduler and starts its background tasks (pool refill, keep-alive).
    /// `task_root` is emptied: nothing in it can belong to a live sandbox at start.
    pub fn start(
        driver: Arc<dyn Driver>,
        limits: Limits,
        task_root: PathBuf,
        tmp_mb: u32,
        pids_limit: i64,
        boot_timeout: Duration,
    ) -> std::io::Result<Arc<Self>> {
        if task_root.exists() {
            std::fs::remove_dir_all(&task_root)?;
        }
        std::fs::create_dir_all(&task_root)?;
        let s = Arc::new(Self {
            driver,
            limits,
            task_root: task_root.clone(),
            tmp_mb,
            pids_limit,
            boot_timeout,
            state: Mutex::new(State::default()),
            refill: Notify::new(),
            changed: Notify::new(),
            keeper: Notify::new(),
            snapshots: Snapshots::new(task_root.join(".snapshots"), MAX_SNAPSHOT_BYTES),
        });
        tokio::spawn(s.clone().refill_loop());
        tokio::spawn(s.clone().keep_alive_loop());
        Ok(s)
    }

    pub fn driver(&self) -> &Arc<dyn Driver> {
        &self.driver
    }

    /// SnapStart's images on this host.
    pub fn snapshots(&self) -> &Snapshots {
        &self.snapshots
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the maps consistent (plain inserts and removes), so
        // a poisoned lock is safe to keep using.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The shape of generic sandboxes.
    pub fn generic_shape(&self) -> Shape {
        Shape {
            network: false,
            tmp_mb: self.tmp_mb,
        }
    }

    /// Picks the sandbox for one invocation of `key`, enforcing the function's reserved
    /// concurrency, the host's sandbox cap and its memory budget. A generic sandbox is only
    /// used if `shape` is the generic one and `generic` allows it (a cold start that
    /// restores a SnapStart snapshot boots its own: `Boot`).
    pub fn acquire(
        self: &Arc<Self>,
        key: &PoolKey,
        memory_mb: u32,
        reserved: Option<u32>,
        shape: Shape,
        generic: bool,
    ) -> Result<(Acquired, BusyGuard), CoreError> {
        let mut doomed = Vec::new();
        let result = self.acquire_locked(key, memory_mb, reserved, shape, generic, &mut doomed);
        for s in doomed {
            self.destroy(s);
        }
        result.map(|a| {
            (
                a,
                BusyGuard {
                    sched: self.clone(),
                    function: key.function.clone(),
                },
            )
        })
    }

    fn acquire_locked(
        &self,
        key: &PoolKey,
        memory_mb: u32,
        reserved: Option<u32>,
        shape: Shape,
        generic: bool,
        doomed: &mut Vec<Session>,
    ) -> Result<Acquired, CoreError> {
        let mut st = self.lock();
        if st.closing {
            return Err(CoreError::Unavailable(
                "the control plane is shutting down".into(),
            ));
        }
        let busy = st.busy.get(&key.function).copied().unwrap_or(0);
        policy::admit(busy, reserved).map_err(|r| r.into_error(&key.function))?;
        // 0. An idle provisioned sandbox of this version (see `provisioned.rs`).
        if let Some(s) = st.provisioned.take(key) {
            *st.busy.entry(key.function.clone()).or_default() += 1;
            return Ok(Acquired::Warm(s));
        }
        // 1. A warm sandbox of this revision; older revisions of the same version found on
        //    the way go (other versions' sandboxes stay).
        let mut warm = None;
        if let Some(list) = st.idle.get_mut(&key.function) {
            let stale: Vec<Session> = list
                .extract_if(.., |s| policy::is_stale(s.key.as_ref(), key))
                .collect();
            warm =
                policy::pick_warm(list.iter().map(|s| s.key.as_ref()), key).map(|i| list.remove(i));
            for s in stale {
                st.live.remove(&s.id);
                doomed.push(s);
            }
        }
        let acquired = if let Some(s) = warm {
            Acquired::Warm(s)
        } else if let Some(i) =
            policy::pick_generic(shape, self.generic_shape(), st.generic.len()).filter(|_| generic)
        {
            // 2. A generic sandbox, charged the function's memory from now on.
            let g = st.generic.remove(i);
            st.live.remove(&g.id);
            match st.make_room(memory_mb, &self.limits, doomed) {
                Ok(()) => {}
                Err(refusal) => {
                    st.live.insert(g.id.clone(), self.limits.generic_memory_mb);
                    st.generic.insert(i, g);
                    return Err(refusal.into_error(&key.function));
                }
            }
            st.live.insert(g.id.clone(), memory_mb);
            self.refill.notify_one();
            Acquired::Generic(g)
        } else {
            // 3. Boot one.
            st.make_room(memory_mb, &self.limits, doomed)
                .map_err(|r| r.into_error(&key.function))?;
            let id = SandboxId::generate();
            st.live.insert(id.clone(), memory_mb);
            Acquired::Boot(id)
        };
        *st.busy.entry(key.function.clone()).or_default() += 1;
        Ok(acquired)
    }

    /// Reserves an id to boot a sandbox that belongs to no function (a requirements
    /// build): it counts in the host's sandbox cap and memory budget like any other, and is
    /// never idle, warm or generic. Given back by [`Scheduler::discard`] (or by `boot`
    /// failing), or with [`Scheduler::forget_and_destroy`] before it was booted.
    pub fn reserve_unpooled(
        self: &Arc<Self>,
        memory_mb: u32,
        for_what: &FunctionName,
    ) -> Result<SandboxId, CoreError> {
        let mut doomed = Vec::new();
        let result = {
            let mut st = self.lock();
            if st.closing {
                return Err(CoreError::Unavailable(
                    "the control plane is shutting down".into(),
                ));
            }
            st.make_room(memory_mb, &self.limits, &mut doomed)
                .map(|()| {
                    let id = SandboxId::generate();
                    st.live.insert(id.clone(), memory_mb);
                    id
                })
                .map_err(|r| r.into_error(for_what))
        };
        for s in doomed {
            self.destroy(s);
        }
        result
    }

    /// Gives back an id reserved by [`Scheduler::reserve_unpooled`] that was not booted,
    /// removing whatever was prepared for it.
    pub fn forget_and_destroy(self: &Arc<Self>, id: SandboxId) {
        self.forget(&id);
        self.destroy_id(id);
    }

    /// Boots a sandbox with an empty `/var/task` and waits for its agent's hello. The id
    /// must already be counted in `live` (see `acquire`); on failure it is released.
    pub async fn boot(
        self: &Arc<Self>,
        id: SandboxId,
        memory_mb: u32,
        shape: Shape,
    ) -> Result<Session, CoreError> {
        self.boot_with_output(id, memory_mb, shape, None).await
    }

    /// [`Scheduler::boot`], with a writable `/var/build` bound from `output_dir` (a
    /// requirements build's sandbox; see `requirements.rs`).
    pub async fn boot_with_output(
        self: &Arc<Self>,
        id: SandboxId,
        memory_mb: u32,
        shape: Shape,
        output_dir: Option<PathBuf>,
    ) -> Result<Session, CoreError> {
        let task_dir = self.task_dir(&id);
        let opt_dir = self.opt_dir(&id);
        let result = async {
            for dir in [&task_dir, &opt_dir] {
                std::fs::create_dir_all(dir).map_err(|e| {
                    CoreError::internal_from(format!("creating {}", dir.display()), e)
                })?;
            }
            let spec = SandboxSpec {
                id: id.clone(),
                code_dir: task_dir.clone(),
                opt_dir: Some(opt_dir.clone()),
                output_dir,
                memory_mb,
                tmp_mb: shape.tmp_mb,
                pids_limit: self.pids_limit,
                network: shape.network,
            };
            let sandbox = self.driver.create(&spec).await?;
            let mut session = Session::new(sandbox, memory_mb);
            session.handshake(self.boot_timeout).await.map_err(|e| {
                CoreError::sandbox_from(format!("sandbox {id} did not start its agent"), e)
            })?;
            Ok(session)
        }
        .await;
        if result.is_err() {
            self.forget(&id);
            self.destroy_id(id);
        }
        result
    }

    /// Starts sandbox `id` from a snapshot image: its code and layers must already be
    /// linked into its `/var/task` and `/opt` (the same files the snapshot's sandbox had).
    /// No handshake: the restored agent is past it. The id must already be counted in
    /// `live`; on failure it is released and everything of it destroyed.
    pub async fn restore(
        self: &Arc<Self>,
        id: SandboxId,
        memory_mb: u32,
        shape: Shape,
        image: &Path,
    ) -> Result<Session, CoreError> {
        let spec = SandboxSpec {
            id: id.clone(),
            code_dir: self.task_dir(&id),
            opt_dir: Some(self.opt_dir(&id)),
            output_dir: None,
            memory_mb,
            tmp_mb: shape.tmp_mb,
            pids_limit: self.pids_limit,
            network: shape.network,
        };
        // Bounded (one restore once hung on these hosts): the driver's own create timeout
        // is meant for cold boots; a restore past this is given up and cold-started.
        let restored = tokio::time::timeout(RESTORE_TIMEOUT, self.driver.restore(&spec, image))
            .await
            .map_err(|_| CoreError::Sandbox {
                message: format!(
                    "restoring sandbox {id} did not finish within {RESTORE_TIMEOUT:?}"
                ),
                source: None,
            })
            .and_then(|r| r.map_err(CoreError::from));
        match restored {
            Ok(sandbox) => Ok(Session::new(sandbox, memory_mb)),
            Err(e) => {
                // Dropped half-way or failed: `destroy` (idempotent) removes what is left.
                self.forget(&id);
                self.destroy_id(id);
                Err(e)
            }
        }
    }

    /// The host directory a build sandbox `id` writes its output to (see
    /// `requirements.rs`). Under the task root, in `.build`.
    pub fn build_dir(&self, id: &SandboxId) -> PathBuf {
        self.task_root.join(".build").join(id.as_str())
    }

    /// The host directory bound at `/var/task` in sandbox `id`.
    pub fn task_dir(&self, id: &SandboxId) -> PathBuf {
        self.task_root.join(id.as_str())
    }

    /// The host directory bound at `/opt` in sandbox `id` (its function's layers, merged).
    /// Under the task root, in `.opt` (no sandbox id starts with a dot).
    pub fn opt_dir(&self, id: &SandboxId) -> PathBuf {
        self.task_root.join(".opt").join(id.as_str())
    }

    /// Raises a booted sandbox's memory limit to the function's size.
    pub async fn resize(&self, session: &mut Session, memory_mb: u32) -> Result<(), CoreError> {
        if session.memory_mb != memory_mb {
            self.driver.set_memory_limit(&session.id, memory_mb).await?;
            session.memory_mb = memory_mb;
        }
        Ok(())
    }

    /// Caps a sandbox's CPU for its function's memory size, once the function's init is done.
    pub async fn limit_cpu(&self, id: &SandboxId, memory_mb: u32) -> Result<(), CoreError> {
        self.driver
            .limit_cpu(id, memory_mb)
            .await
            .map_err(CoreError::from)
    }

    /// Puts a healthy sandbox back after an invocation.
    pub fn release(self: &Arc<Self>, session: Session) {
        if session.init_type == InitType::ProvisionedConcurrency {
            self.release_provisioned(session);
            return;
        }
        let mut st = self.lock();
        if st.closing {
            drop(st);
            // Shutdown waits for `live` to empty: this one no longer counts.
            self.discard(session);
            return;
        }
        if !st.live.contains_key(&session.id) {
            drop(st);
            self.destroy(session);
            return;
        }
        let Some(key) = session.key.clone() else {
            drop(st);
            self.destroy(session);
            return;
        };
        st.idle.entry(key.function).or_default().push(session);
    }

    /// Destroys a sandbox that failed, timed out or is no longer wanted.
    pub fn discard(self: &Arc<Self>, session: Session) {
        self.provisioned_gone(&session);
        self.forget(&session.id);
        self.destroy(session);
    }

    /// Destroys every idle sandbox of a function (its code or configuration changed, or it
    /// was deleted). In-flight invocations finish on theirs; `acquire` never hands out a
    /// sandbox of an old revision.
    pub fn retire(self: &Arc<Self>, function: &FunctionName) {
        self.retire_where(function, |_| true);
        let provisioned = {
            let mut st = self.lock();
            let out = st.provisioned.forget_function(function);
            for s in &out {
                st.live.remove(&s.id);
            }
            out
        };
        for s in provisioned {
            self.destroy(s);
        }
    }

    /// Destroys the idle sandboxes of a function whose version (`None` = `$LATEST`)
    /// `which` selects.
    pub fn retire_where(
        self: &Arc<Self>,
        function: &FunctionName,
        which: impl Fn(Option<u64>) -> bool,
    ) {
        let retired = {
            let mut st = self.lock();
            let mut list = st.idle.remove(function).unwrap_or_default();
            let retired: Vec<Session> = list
                .extract_if(.., |s| which(s.key.as_ref().and_then(|k| k.version)))
                .collect();
            if !list.is_empty() {
                st.idle.insert(function.clone(), list);
            }
            for s in &retired {
                st.live.remove(&s.id);
            }
            retired
        };
        for s in retired {
            self.destroy(s);
        }
        // Their snapshots go with them (a new revision or a deleted version).
        self.snapshots.discard_where(function, &which);
    }

    /// The idle warm sandboxes by function revision and version, and how many of each
    /// (a worker's status: API nodes route to warm sandboxes).
    pub fn idle_keys(&self) -> Vec<(PoolKey, usize)> {
        let st = self.lock();
        let mut out: Vec<(PoolKey, usize)> = Vec::new();
        for s in st.idle.values().flatten() {
            let Some(k) = &s.key else { continue };
            match out.iter_mut().find(|(o, _)| o == k) {
                Some((_, n)) => *n += 1,
                None => out.push((k.clone(), 1)),
            }
        }
        out
    }

    /// Destroys every sandbox, idle, generic and busy (a fenced worker: another may own its
    /// work now). A busy one's invocation fails when its agent dies, and its session is
    /// destroyed when it comes back. Admission is the caller's to stop.
    pub fn fence(self: &Arc<Self>) {
        let (idle, busy) = {
            let mut st = self.lock();
            let mut all: Vec<Session> = st.idle.drain().flat_map(|(_, v)| v).collect();
            all.append(&mut st.generic);
            all.append(&mut st.provisioned.drain_idle());
            for s in &all {
                st.live.remove(&s.id);
            }
            let busy: Vec<SandboxId> = st.live.keys().cloned().collect();
            for id in &busy {
                st.live.remove(id);
            }
            (all, busy)
        };
        for s in idle {
            self.destroy(s);
        }
        for id in busy {
            self.destroy_id(id);
        }
        self.refill.notify_one();
    }

    /// Numbers for health and metrics.
    pub fn counts(&self) -> SandboxCounts {
        let st = self.lock();
        SandboxCounts {
            generic: st.generic.len(),
            live: st.live.len(),
            busy: st.busy.values().map(|&n| n as usize).sum(),
        }
    }

    /// The live state for metrics.
    pub fn gauges(&self) -> Gauges {
        let st = self.lock();
        let mut functions: HashMap<FunctionName, (u64, u64)> = st
            .busy
            .iter()
            .map(|(f, &n)| (f.clone(), (u64::from(n), 0)))
            .collect();
        let mut idle = 0;
        for (f, list) in &st.idle {
            idle += list.len();
            functions.entry(f.clone()).or_default().1 = list.len() as u64;
        }
        let generic = st.generic.len();
        idle += st.provisioned_idle();
        Gauges {
            idle,
            busy: st
                .live
                .len()
                .saturating_sub(idle + generic + st.generic_booting),
            generic,
            booting: st.generic_booting,
            pool_target: self.limits.warm_pool_size,
            max_sandboxes: self.limits.max_sandboxes,
            memory_used_mb: st.used_mb(),
            memory_budget_mb: self.limits.memory_budget_mb,
            functions,
            snapshot_bytes: self.snapshots.bytes(),
            snapshot_restores: self.snapshots.restored.load(Ordering::Relaxed),
            snapshot_fallbacks: self.snapshots.fallbacks.load(Ordering::Relaxed),
        }
    }

    /// One function's invocations running and idle sandboxes.
    pub fn function_gauges(&self, function: &FunctionName) -> (u64, u64) {
        let st = self.lock();
        (
            st.busy.get(function).map_or(0, |&n| u64::from(n)),
            st.idle.get(function).map_or(0, |l| l.len() as u64),
        )
    }

    fn forget(self: &Arc<Self>, id: &SandboxId) {
        self.lock().live.remove(id);
        self.refill.notify_one();
    }

    fn destroy(self: &Arc<Self>, mut session: Session) {
        let id = session.id.clone();
        self.lock().destroying.insert(id.clone());
        let sched = self.clone();
        tokio::spawn(async move {
            session.shutdown().await;
            drop(session);
            sched.destroy_now(&id).await;
        });
    }

    fn destroy_id(self: &Arc<Self>, id: SandboxId) {
        self.lock().destroying.insert(id.clone());
        let sched = self.clone();
        tokio::spawn(async move { sched.destroy_now(&id).await });
    }

    async fn destroy_now(&self, id: &SandboxId) {
        if let Err(e) = self.driver.destroy(id).await {
            tracing::error!(sandbox = %id, error = %e, "destroying sandbox failed");
        }
        for dir in [self.task_dir(id), self.opt_dir(id), self.build_dir(id)] {
            if let Err(e) = tokio::fs::remove_dir_all(&dir).await {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(sandbox = %id, error = %e, dir = %dir.display(), "removing a sandbox directory failed");
                }
            }
        }
        self.lock().destroying.remove(id);
        self.changed.notify_waiters();
        self.refill.notify_one();
    }

    /// Keeps `warm_pool_size` generic sandboxes booted, one boot at a time (creation is
    /// CPU-bound; booting several at once only slows each of them).
    async fn refill_loop(self: Arc<Self>) {
        loop {
            let next = {
                let mut st = self.lock();
                if st.closing {
                    return;
                }
                if policy::should_boot_generic(
                    st.generic.len(),
                    st.generic_booting,
                    st.live.len(),
                    st.used_mb(),
                    &self.limits,
                ) {
                    let id = SandboxId::generate();
                    st.live.insert(id.clone(), self.limits.generic_memory_mb);
                    st.generic_booting += 1;
                    Some(id)
                } else {
                    None
                }
            };
            let Some(id) = next else {
                self.refill.notified().await;
                continue;
            };
            let booted = self
                .boot(
                    id.clone(),
                    self.limits.generic_memory_mb,
                    self.generic_shape(),
                )
                .await;
            let unwanted = {
                let mut st = self.lock();
                st.generic_booting -= 1;
                match booted {
                    Ok(session) if !st.closing && st.live.contains_key(&session.id) => {
                        st.generic.push(session);
                        None
                    }
                    Ok(session) => Some(Ok(session)),
                    Err(e) => Some(Err(e)),
                }
            };
            match unwanted {
                None => {}
                Some(Ok(session)) => self.discard(session),
                Some(Err(e)) => {
                    tracing::error!(error = %e, "booting a generic sandbox failed; retrying in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Destroys idle sandboxes unused for longer than the keep-alive.
    async fn keep_alive_loop(self: Arc<Self>) {
        let tick =
            (self.limits.keep_alive / 4).clamp(Duration::from_millis(10), Duration::from_secs(5));
        loop {
            tokio::time::sleep(tick).await;
            let expired: Vec<Session> = {
                let mut st = self.lock();
                if st.closing {
                    return;
                }
                let now = Instant::now();
                let keep_alive = self.limits.keep_alive;
                let mut out = Vec::new();
                for list in st.idle.values_mut() {
                    out.extend(
                        list.extract_if(.., |s| policy::expired(s.last_used, now, keep_alive)),
                    );
                }
                st.idle.retain(|_, l| !l.is_empty());
                for s in &out {
                    st.live.remove(&s.id);
                }
                out
            };
            for s in expired {
                tracing::info!(sandbox = %s.id, "keep-alive expired; destroying idle sandbox");
                self.destroy(s);
            }
        }
    }

    /// Stops handing out sandboxes, destroys the idle ones, waits up to `grace` for busy
    /// ones to come back, then destroys whatever is still alive and waits for it to go.
    pub async fn shutdown(self: &Arc<Self>, grace: Duration) {
        let idle: Vec<Session> = {
            let mut st = self.lock();
            st.closing = true;
            let mut all: Vec<Session> = st.idle.drain().flat_map(|(_, v)| v).collect();
            all.append(&mut st.generic);
            all.append(&mut st.provisioned.drain_idle());
            for s in &all {
                st.live.remove(&s.id);
            }
            all
        };
        self.refill.notify_one();
        for s in idle {
            self.destroy(s);
        }
        let deadline = tokio::time::Instant::now() + grace;
        self.wait_until(deadline, |st| st.live.is_empty()).await;
        let left: Vec<SandboxId> = self.lock().live.keys().cloned().collect();
        for id in left {
            tracing::warn!(sandbox = %id, "still busy after the shutdown grace; destroying it");
            self.forget(&id);
            self.destroy_id(id);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        self.wait_until(deadline, |st| {
            st.live.is_empty() && st.destroying.is_empty()
        })
        .await;
        // Snapshots do not outlive their control plane (see `snapshots.rs`).
        self.snapshots.remove_all();
    }

    async fn wait_until(&self, deadline: tokio::time::Instant, done: impl Fn(&State) -> bool) {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if done(&self.lock()) {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return;
            }
        }
    }
}

/// Counts one in-flight invocation of a function for its reserved concurrency; dropping it
/// (whatever path the invocation took) gives the slot back.
pub(crate) struct BusyGuard {
    sched: Arc<Scheduler>,
    function: FunctionName,
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        let mut st = self.sched.lock();
        if let Some(n) = st.busy.get_mut(&self.function) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                st.busy.remove(&self.function);
            }
        }
    }
}

/// Links (or, across file systems, copies) a code package into a sandbox's task directory.
/// Merges the tree `src` into `dst` with hard links (or copies), as [`link_tree`], where a
/// path `dst` already has is replaced: a later layer wins over an earlier one on the same
/// path, as in Lambda. A module a later layer replaces loses the earlier layer's compiled
/// bytecode (`__pycache__/<stem>.*.pyc`, see `bytecode.rs`): those pycs are unchecked, so
/// left there they would run the earlier source; the later layer's own pyc, if it has one,
/// is merged after.
pub(crate) fn merge_tree(src: &Path, dst: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let name = entry.file_name();
        if entry.file_type()?.is_file() && dst.join(&name).is_file() {
            if let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".py")) {
                crate::bytecode::remove_pycs(&dst.join("__pycache__"), stem)?;
            }
        }
    }
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let existing = std::fs::symlink_metadata(&to).ok();
        if entry.file_type()?.is_dir() {
            match existing {
                Some(m) if m.is_dir() => {}
                Some(_) => {
                    std::fs::remove_file(&to)?;
                    std::fs::create_dir(&to)?;
                }
                None => std::fs::create_dir(&to)?,
            }
            merge_tree(&from, &to)?;
        } else {
            match existing {
                Some(m) if m.is_dir() => std::fs::remove_dir_all(&to)?,
                Some(_) => std::fs::remove_file(&to)?,
                None => {}
            }
            if std::fs::hard_link(&from, &to).is_err() {
                std::fs::copy(&from, &to)?;
            }
        }
    }
    Ok(())
}

pub(crate) fn link_tree(src: &Path, dst: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            std::fs::create_dir(&to)?;
            link_tree(&from, &to)?;
        } else if std::fs::hard_link(&from, &to).is_err() {
            std::fs::copy(&from, &to)?;
        }
    }
    Ok(())
}
