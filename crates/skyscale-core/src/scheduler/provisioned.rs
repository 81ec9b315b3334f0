//! Provisioned sandboxes in the scheduler's bookkeeping (the keeper that decides how many
//! there should be is `crate::provisioned`).
//!
//! A provisioned sandbox is initialised for one function version (`PoolKey`) ahead of any
//! invocation and kept in a pool of its own, apart from the on-demand idle sandboxes: the
//! keep-alive and the eviction for room (`policy::make_room`) only ever look at those, so
//! an idle provisioned sandbox is never evicted. It counts in `live` (the host's sandbox
//! cap and memory budget) from the moment its slot is reserved, and while it runs an
//! invocation it counts in the function's `busy` like any other sandbox.
//!
//! An invocation of a version with a pool takes an idle provisioned sandbox first; one that
//! finds none (all busy, or not ready yet) is a spillover and goes on-demand. A provisioned
//! sandbox goes back to its pool after a healthy invocation; one that crashed or timed out
//! is discarded and the keeper (woken through `keeper`) starts another.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use skyscale_sandbox::SandboxId;
use skyscale_types::invocation::InitType;
use skyscale_types::FunctionName;
use tokio::io::AsyncBufRead;

use super::{policy, Scheduler, Shape, State};
use crate::provisioned::policy as pc_policy;
use crate::session::{PoolKey, Session};
use crate::CoreError;

/// The provisioned sandboxes of one function version.
#[derive(Default)]
struct Pool {
    /// How many the keeper wants.
    target: u32,
    /// Initialised and waiting for an invocation, oldest first.
    idle: Vec<Session>,
    /// Running an invocation.
    busy: HashSet<SandboxId>,
    /// Slots reserved for sandboxes being booted and initialised.
    starting: u32,
}

/// Every pool, and the invocations that found their pool empty.
#[derive(Default)]
pub(super) struct Pools {
    pools: HashMap<PoolKey, Pool>,
    /// Per function: invocations of a provisioned version that went on-demand.
    spillover: HashMap<FunctionName, u64>,
}

/// A pool's numbers, for the keeper's status and the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PoolCounts {
    pub target: u32,
    pub idle: u32,
    pub busy: u32,
    pub starting: u32,
}

impl PoolCounts {
    /// Initialised sandboxes (idle or running an invocation).
    pub fn ready(&self) -> u32 {
        self.idle + self.busy
    }
}

/// How a provisioned sandbox is obtained: a generic one to specialise, or an id to boot.
pub(crate) enum Slot {
    Generic(Session),
    Boot(SandboxId),
}

impl Pool {
    /// Keeps `session` idle when it may stay (`may`: alive, not shutting down) and the pool
    /// still wants one more; otherwise hands it back, to be discarded.
    fn keep(&mut self, session: Session, may: bool) -> Option<Session> {
        let have = (self.idle.len() + self.busy.len()) as u32;
        if may && have < self.target {
            self.idle.push(session);
            None
        } else {
            Some(session)
        }
    }
}

impl Pools {
    /// For `acquire`: an idle provisioned sandbox of `key`, now busy; counts a spillover
    /// when `key` has a pool but nothing idle in it.
    pub(super) fn take(&mut self, key: &PoolKey) -> Option<Session> {
        let pool = self.pools.get_mut(key).filter(|p| p.target > 0)?;
        if pool.idle.is_empty() {
            *self.spillover.entry(key.function.clone()).or_default() += 1;
            return None;
        }
        // The most recently used one: the others stay cold in the CPU caches either way,
        // and the oldest is first to go if the target drops.
        let s = pool.idle.pop()?;
        pool.busy.insert(s.id.clone());
        Some(s)
    }

    /// Every idle provisioned sandbox, taken out (shutdown, fencing); targets go to 0.
    pub(super) fn drain_idle(&mut self) -> Vec<Session> {
        let mut out = Vec::new();
        for pool in self.pools.values_mut() {
            pool.target = 0;
            out.append(&mut pool.idle);
        }
        out
    }

    /// Forgets everything of `function` (deleted): idle sandboxes are returned to destroy;
    /// busy ones are destroyed when they come back.
    pub(super) fn forget_function(&mut self, function: &FunctionName) -> Vec<Session> {
        self.spillover.remove(function);
        let mut out = Vec::new();
        for (key, pool) in self.pools.iter_mut() {
            if &key.function == function {
                pool.target = 0;
                out.append(&mut pool.idle);
            }
        }
        self.prune();
        out
    }

    /// Drops pools that hold nothing and are wanted by no one.
    fn prune(&mut self) {
        self.pools.retain(|_, p| {
            p.target > 0 || !p.idle.is_empty() || !p.busy.is_empty() || p.starting > 0
        });
    }

    pub(super) fn idle_count(&self) -> usize {
        self.pools.values().map(|p| p.idle.len()).sum()
    }
}

impl Scheduler {
    /// Sets the number of provisioned sandboxes wanted for every version (those absent: 0).
    /// Idle sandboxes beyond a target are destroyed, the oldest first; busy ones beyond it
    /// are destroyed when their invocation ends.
    pub fn set_provisioned_targets(self: &Arc<Self>, targets: &HashMap<PoolKey, u32>) {
        let shed = {
            let mut st = self.lock();
            let mut shed = Vec::new();
            for (key, pool) in st.provisioned.pools.iter_mut() {
                pool.target = targets.get(key).copied().unwrap_or(0);
            }
            for (key, &target) in targets {
                st.provisioned.pools.entry(key.clone()).or_default().target = target;
            }
            for pool in st.provisioned.pools.values_mut() {
                let surplus =
                    pc_policy::surplus(pool.target, pool.idle.len() as u32, pool.busy.len() as u32);
                shed.extend(pool.idle.drain(..surplus as usize));
            }
            st.provisioned.prune();
            for s in &shed {
                st.live.remove(&s.id);
            }
            shed
        };
        for s in shed {
            tracing::info!(sandbox = %s.id, "provisioned sandbox no longer wanted; destroying it");
            self.destroy(s);
        }
    }

    /// Destroys the idle provisioned sandboxes whose agent is gone (killed, crashed while
    /// idle), so that the keeper replaces them. Returns how many there were.
    pub fn reap_dead_provisioned(self: &Arc<Self>) -> usize {
        let dead = {
            let mut st = self.lock();
            let mut dead = Vec::new();
            for pool in st.provisioned.pools.values_mut() {
                dead.extend(pool.idle.extract_if(.., |s| !agent_alive(s)));
            }
            for s in &dead {
                st.live.remove(&s.id);
            }
            dead
        };
        let n = dead.len();
        for s in dead {
            tracing::warn!(sandbox = %s.id, "provisioned sandbox died while idle; replacing it");
            self.destroy(s);
        }
        n
    }

    /// Reserves a slot for one more provisioned sandbox of `key` (room is made as for an
    /// invocation: idle on-demand sandboxes may be evicted for it): a generic sandbox to
    /// specialise when the shape allows, else an id to boot. Given back by
    /// [`Scheduler::provisioned_ready`] or [`Scheduler::provisioned_failed`].
    pub fn reserve_provisioned(
        self: &Arc<Self>,
        key: &PoolKey,
        memory_mb: u32,
        shape: Shape,
    ) -> Result<Slot, CoreError> {
        let mut doomed = Vec::new();
        let result = (|| {
            let mut st = self.lock();
            if st.closing {
                return Err(CoreError::Unavailable(
                    "the control plane is shutting down".into(),
                ));
            }
            let slot = if let Some(i) =
                policy::pick_generic(shape, self.generic_shape(), st.generic.len())
            {
                let g = st.generic.remove(i);
                st.live.remove(&g.id);
                if let Err(refusal) = st.make_room(memory_mb, &self.limits, &mut doomed) {
                    st.live.insert(g.id.clone(), self.limits.generic_memory_mb);
                    st.generic.insert(i, g);
                    return Err(refusal.into_error(&key.function));
                }
                st.live.insert(g.id.clone(), memory_mb);
                self.refill.notify_one();
                Slot::Generic(g)
            } else {
                st.make_room(memory_mb, &self.limits, &mut doomed)
                    .map_err(|r| r.into_error(&key.function))?;
                let id = SandboxId::generate();
                st.live.insert(id.clone(), memory_mb);
                Slot::Boot(id)
            };
            st.provisioned
                .pools
                .entry(key.clone())
                .or_default()
                .starting += 1;
            Ok(slot)
        })();
        for s in doomed {
            self.destroy(s);
        }
        result
    }

    /// A provisioned sandbox of `session.key` finished its init: into its pool, unless the
    /// pool no longer wants it.
    pub fn provisioned_ready(self: &Arc<Self>, mut session: Session) {
        session.init_type = InitType::ProvisionedConcurrency;
        let unwanted = {
            let mut st = self.lock();
            let live = st.live.contains_key(&session.id);
            let closing = st.closing;
            match session
                .key
                .clone()
                .and_then(|k| st.provisioned.pools.get_mut(&k))
            {
                Some(pool) => {
                    pool.starting = pool.starting.saturating_sub(1);
                    pool.keep(session, live && !closing)
                }
                None => Some(session),
            }
        };
        if let Some(s) = unwanted {
            self.discard(s);
        }
        self.lock().provisioned.prune();
    }

    /// A provisioned sandbox of `key` could not be readied (its slot was already given
    /// back by the boot or the discard that ended it).
    pub fn provisioned_failed(&self, key: &PoolKey) {
        let mut st = self.lock();
        if let Some(pool) = st.provisioned.pools.get_mut(key) {
            pool.starting = pool.starting.saturating_sub(1);
        }
        st.provisioned.prune();
    }

    /// Takes back a provisioned sandbox after a healthy invocation: into its pool while
    /// the pool wants it, else (its configuration deleted or lowered, shutdown) destroyed.
    pub(super) fn release_provisioned(self: &Arc<Self>, session: Session) {
        let unwanted = {
            let mut st = self.lock();
            let live = st.live.contains_key(&session.id);
            let closing = st.closing;
            match session
                .key
                .as_ref()
                .and_then(|k| st.provisioned.pools.get_mut(k))
                .filter(|p| p.busy.contains(&session.id))
            {
                Some(pool) => {
                    pool.busy.remove(&session.id);
                    pool.keep(session, live && !closing)
                }
                None => Some(session),
            }
        };
        if let Some(s) = unwanted {
            self.discard(s);
            self.lock().provisioned.prune();
        }
    }

    /// A provisioned sandbox that was running an invocation is being discarded (crash,
    /// timeout): it leaves its pool and the keeper is told to replace it.
    pub(super) fn provisioned_gone(&self, session: &Session) {
        if session.init_type != InitType::ProvisionedConcurrency {
            return;
        }
        let mut st = self.lock();
        if let Some(pool) = session
            .key
            .as_ref()
            .and_then(|k| st.provisioned.pools.get_mut(k))
        {
            if pool.busy.remove(&session.id) {
                self.keeper.notify_one();
            }
        }
    }

    /// The numbers of every pool.
    pub fn provisioned_counts(&self) -> HashMap<PoolKey, PoolCounts> {
        let st = self.lock();
        st.provisioned
            .pools
            .iter()
            .map(|(k, p)| {
                (
                    k.clone(),
                    PoolCounts {
                        target: p.target,
                        idle: p.idle.len() as u32,
                        busy: p.busy.len() as u32,
                        starting: p.starting,
                    },
                )
            })
            .collect()
    }

    /// Per function: invocations of a provisioned version that went on-demand.
    pub fn provisioned_spillover(&self) -> HashMap<FunctionName, u64> {
        self.lock().provisioned.spillover.clone()
    }

    /// Waits until a provisioned sandbox leaves its pool (or the timeout): the keeper's
    /// wake-up.
    pub async fn keeper_wakeup(&self, within: std::time::Duration) {
        let _ = tokio::time::timeout(within, self.keeper.notified()).await;
    }

    /// Whether the scheduler is shutting down (the keeper stops).
    pub fn is_closing(&self) -> bool {
        self.lock().closing
    }

    /// Wakes the keeper.
    pub fn wake_keeper(&self) {
        self.keeper.notify_one();
    }
}

impl State {
    /// How many sandboxes the provisioned pools hold idle (for the gauges).
    pub(super) fn provisioned_idle(&self) -> usize {
        self.provisioned.idle_count()
    }
}

/// Whether an idle sandbox's agent still holds its end of the channel: a read that would
/// wait means it does; end of file or an error means the sandbox is gone. Polled once with
/// a waker that does nothing, under the scheduler's lock (no await, no I/O beyond a
/// non-blocking read into the session's buffer, which keeps whatever it read: a `Log`
/// frame printed between invocations stays for the session's next read).
fn agent_alive(session: &mut Session) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    match Pin::new(session.reader()).poll_fill_buf(&mut cx) {
        Poll::Pending => true,
        Poll::Ready(Ok(buf)) => !buf.is_empty(),
        Poll::Ready(Err(_)) => false,
    }
}
