//! Warm sandboxes: idle, initialised sandboxes per function, reused most-recently-used
//! first, and the set of every live sandbox so that none is ever leaked.
//!
//! Concurrency: one `std::sync::Mutex` per map, held only for a push or pop (never across an
//! await), so the invoke path never waits on another invocation.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use skyscale_sandbox::{Driver, SandboxId};
use skyscale_types::FunctionName;

use crate::session::{PoolKey, Session};

pub(crate) struct Pool {
    driver: Arc<dyn Driver>,
    idle: Mutex<HashMap<FunctionName, Vec<Session>>>,
    /// Shared with the background tasks that destroy sandboxes.
    live: Arc<Mutex<HashSet<SandboxId>>>,
    closing: std::sync::atomic::AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The maps stay consistent across a panic (single push/pop/insert), so a poisoned
    // lock is safe to keep using.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Pool {
    pub fn new(driver: Arc<dyn Driver>) -> Self {
        Self {
            driver,
            idle: Mutex::new(HashMap::new()),
            live: Arc::new(Mutex::new(HashSet::new())),
            closing: false.into(),
        }
    }

    pub fn driver(&self) -> &Arc<dyn Driver> {
        &self.driver
    }

    /// Records a sandbox the moment the driver created it.
    pub fn track(&self, id: &SandboxId) {
        lock(&self.live).insert(id.clone());
    }

    /// Takes the most recently used idle sandbox of exactly this revision. Idle sandboxes of
    /// older revisions found on the way are destroyed.
    pub fn acquire(&self, key: &PoolKey) -> Option<Session> {
        let mut stale = Vec::new();
        let found = {
            let mut idle = lock(&self.idle);
            let list = idle.get_mut(&key.function)?;
            stale.extend(list.extract_if(.., |s| s.key.revision != key.revision));
            list.pop()
        };
        for s in stale {
            self.destroy(s);
        }
        found
    }

    /// Returns a healthy sandbox after an invocation.
    pub fn release(&self, session: Session) {
        if self.closing.load(std::sync::atomic::Ordering::Acquire) {
            self.destroy(session);
            return;
        }
        lock(&self.idle)
            .entry(session.key.function.clone())
            .or_default()
            .push(session);
    }

    /// Destroys every idle sandbox of a function (its code or configuration changed, or it
    /// was deleted). In-flight invocations finish on their sandbox, which `acquire` will
    /// then never hand out again because its revision is stale.
    pub fn retire(&self, function: &FunctionName) {
        let retired = lock(&self.idle).remove(function).unwrap_or_default();
        for s in retired {
            self.destroy(s);
        }
    }

    pub fn live_count(&self) -> usize {
        lock(&self.live).len()
    }

    /// Destroys a sandbox in the background; it is never handed out again.
    pub fn destroy(&self, session: Session) {
        let driver = self.driver.clone();
        let id = session.id.clone();
        let live = self.live.clone();
        tokio::spawn(async move {
            let mut session = session;
            session.shutdown().await;
            drop(session);
            destroy_now(&*driver, &id).await;
            lock(&live).remove(&id);
        });
    }

    /// Destroys a sandbox whose session was never built (e.g. the handshake failed).
    pub async fn destroy_id(&self, id: &SandboxId) {
        destroy_now(&*self.driver, id).await;
        lock(&self.live).remove(id);
    }

    /// Stops handing out sandboxes, destroys the idle ones, then waits up to `grace` for
    /// in-flight invocations before destroying whatever is still alive.
    pub async fn shutdown(&self, grace: std::time::Duration) {
        self.closing
            .store(true, std::sync::atomic::Ordering::Release);
        let idle: Vec<Session> = lock(&self.idle).drain().flat_map(|(_, v)| v).collect();
        for mut s in idle {
            s.shutdown().await;
            let id = s.id.clone();
            drop(s);
            self.destroy_id(&id).await;
        }
        let deadline = tokio::time::Instant::now() + grace;
        while self.live_count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let left: Vec<SandboxId> = lock(&self.live).iter().cloned().collect();
        for id in left {
            self.destroy_id(&id).await;
        }
    }
}

async fn destroy_now(driver: &dyn Driver, id: &SandboxId) {
    if let Err(e) = driver.destroy(id).await {
        tracing::error!(sandbox = %id, error = %e, "destroying sandbox failed");
    }
}
