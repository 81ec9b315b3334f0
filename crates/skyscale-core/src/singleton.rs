//! Chores that run on one node of a cluster at a time: the schedule chore, record pruning
//! and the collection of the database's code packages. Each holds a store singleton
//! (`skyscale_store::Singleton`: a PostgreSQL advisory lock on a session of its own) while
//! it runs; a node that does not hold it tries again at its next round (at most
//! [`RETRY`] apart for the schedule chore). On a store of its own (SQLite) every chore runs
//! here, with no round trip.
//!
//! The singleton spares the cluster duplicate work; the chores do not rely on it for
//! correctness (see the store's `singleton.rs`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use skyscale_store::{Singleton, Store};

use crate::blocking;

/// How often a node that does not hold a chore's singleton tries to take it.
pub(crate) const RETRY: Duration = Duration::from_secs(3);

/// One chore's singleton on this node.
pub(crate) struct ChoreLock {
    store: Arc<Store>,
    name: &'static str,
    held: Mutex<Option<Singleton>>,
}

impl ChoreLock {
    pub(crate) fn new(store: Arc<Store>, name: &'static str) -> Arc<Self> {
        Arc::new(Self {
            store,
            name,
            held: Mutex::new(None),
        })
    }

    /// Whether the chore runs on this node now: it holds the singleton still, or took it
    /// just now (blocking: a round trip on a shared store).
    pub(crate) fn check(&self) -> bool {
        if !self.store.is_shared() {
            return true;
        }
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = held.as_ref() {
            if s.held() {
                return true;
            }
            tracing::warn!(chore = self.name, "this node lost the chore's singleton");
            *held = None;
        }
        match self.store.try_singleton(self.name) {
            Ok(Some(s)) => {
                tracing::info!(chore = self.name, "this node runs the chore");
                *held = Some(s);
                true
            }
            Ok(None) => {
                tracing::debug!(chore = self.name, "another node runs the chore");
                false
            }
            Err(e) => {
                tracing::warn!(chore = self.name, error = %e, "taking the chore's singleton");
                false
            }
        }
    }

    /// [`Self::check`] from async code.
    pub(crate) async fn runs_here(self: &Arc<Self>) -> bool {
        if !self.store.is_shared() {
            return true;
        }
        let me = self.clone();
        blocking(move || Ok(me.check())).await.unwrap_or(false)
    }
}
