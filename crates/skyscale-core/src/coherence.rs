//! Keeping this node's caches true to changes other nodes make (a shared store only).
//!
//! The store moves its cache epoch in the same transaction as every change of a cached row
//! (`skyscale_store::Store::cache_epoch`). This node reads it every [`POLL`], and at once
//! when a notification says it moved; when it moved, every cached row is dropped and the
//! key table is read again. A notification is only a hint: one lost while the listening
//! connection reconnects costs at most one [`POLL`].
//!
//! The bound: a change committed through any node holds here within [`POLL`] plus one
//! read of the key table. Should the database stop answering this node, it cannot know
//! of revocations made through others: after [`STALE_AFTER`] without a successful read it
//! refuses to authenticate (503, retryable) rather than trust a key that may be revoked.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::{blocking, ControlPlane, CoreError};

/// How often the epoch is read without a notification.
pub const POLL: Duration = Duration::from_millis(250);
/// How long this node trusts its key table without having read the epoch.
pub const STALE_AFTER: Duration = Duration::from_secs(1);

/// When the epoch was last read successfully.
pub(crate) struct Coherence {
    confirmed: Mutex<Instant>,
}

impl Coherence {
    pub fn new() -> Self {
        Self {
            confirmed: Mutex::new(Instant::now()),
        }
    }

    fn confirm(&self) {
        *self.confirmed.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    /// Refuses when the caches may be stale past the bound.
    pub fn check(&self) -> Result<(), CoreError> {
        let since = self
            .confirmed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed();
        if since > STALE_AFTER {
            return Err(CoreError::Unavailable(format!(
                "this node has not reached the database for {} ms and cannot tell whether \
                 keys were revoked through another node: try again",
                since.as_millis()
            )));
        }
        Ok(())
    }
}

impl ControlPlane {
    /// Starts following other nodes' changes (on a shared store; nothing on SQLite, whose
    /// one process invalidates its caches itself after each write).
    pub fn start_cache_coherence(self: &Arc<Self>) {
        let Some(coherence) = self.coherence.clone() else {
            return;
        };
        let wake = Arc::new(Notify::new());
        spawn_listener(Arc::downgrade(self), wake.clone());
        let node = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut last: Option<i64> = None;
            let mut failing = false;
            loop {
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(POLL) => {}
                }
                let Some(cp) = node.upgrade() else { return };
                let store = cp.store.clone();
                match blocking(move || Ok(store.cache_epoch()?)).await {
                    // The first read drops what was loaded before it too: a change between
                    // the start's key load and this read is not missed.
                    Ok(epoch) if last != Some(epoch) => match cp.drop_cached().await {
                        Ok(()) => {
                            last = Some(epoch);
                            coherence.confirm();
                        }
                        Err(e) => tracing::warn!(error = %e.report(), "reloading the keys failed"),
                    },
                    Ok(_) => {
                        if failing {
                            tracing::info!("the database answers again");
                            failing = false;
                        }
                        coherence.confirm();
                    }
                    Err(e) => {
                        if !failing {
                            tracing::warn!(error = %e.report(), "reading the cache epoch failed");
                            failing = true;
                        }
                    }
                }
            }
        });
    }

    /// Drops every cached row and reads the keys again.
    async fn drop_cached(&self) -> Result<(), CoreError> {
        self.functions.invalidate_where(|_| true);
        self.versions.invalidate_where(|_| true);
        self.aliases.invalidate_where(|_| true);
        self.urls.invalidate_where(|_| true);
        self.policies.invalidate_where(|_| true);
        let _writing = self.keys.writes.lock().await;
        self.reload_keys().await
    }

    /// Refuses to authenticate while this node's caches may be stale (see the module).
    pub(crate) fn check_coherent(&self) -> Result<(), CoreError> {
        self.coherence.as_ref().map_or(Ok(()), |c| c.check())
    }
}

/// A thread of its own listens for notifications (the store's listener blocks) and wakes
/// the reader; it reconnects when its connection goes, and ends with the control plane.
fn spawn_listener(node: Weak<ControlPlane>, wake: Arc<Notify>) {
    let spawned = std::thread::Builder::new()
        .name("skyscale-cache-listen".into())
        .spawn(move || {
            let mut failing = false;
            loop {
                let Some(store) = node.upgrade().map(|cp| cp.store.clone()) else {
                    return;
                };
                let listener = store.listen_cache();
                drop(store);
                match listener {
                    Ok(None) => return,
                    Ok(Some(mut l)) => {
                        if failing {
                            tracing::info!("listening for cache notifications again");
                            failing = false;
                        }
                        // Looked at again: a notification may have been missed meanwhile.
                        wake.notify_one();
                        while node.strong_count() > 0 {
                            match l.wait(POLL) {
                                Ok(true) => wake.notify_one(),
                                Ok(false) => {}
                                Err(e) => {
                                    tracing::warn!(error = %e, "the cache listener's connection failed");
                                    failing = true;
                                    break;
                                }
                            }
                        }
                    }
                    Err(e) => {
                        if !failing {
                            tracing::warn!(error = %e, "listening for cache notifications failed; retrying");
                            failing = true;
                        }
                        std::thread::sleep(Duration::from_secs(1));
                    }
                }
                if node.strong_count() == 0 {
                    return;
                }
            }
        });
    if let Err(e) = spawned {
        // The poll alone keeps the bound; notifications only make it shorter.
        tracing::warn!(error = %e, "could not start the cache listener; polling only");
    }
}
