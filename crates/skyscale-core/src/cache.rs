//! A read-through cache of store rows that the invoke path reads on every request (API keys
//! and function records), so a warm invocation does not wait for SQLite on a blocking thread.
//!
//! Correctness: every write of a cached row goes through `ControlPlane`, which invalidates
//! the row after the store committed it. A reader that loaded a row before such a write
//! could otherwise put the old row back; the generation number prevents that: a loaded row
//! is only inserted if no invalidation happened since the load began.
//!
//! Other nodes sharing a PostgreSQL database write it too: their changes reach these caches
//! through the store's cache epoch (`coherence.rs`), which drops every row.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, RwLock};

pub(crate) struct Cache<K, V> {
    inner: RwLock<Inner<K, V>>,
}

struct Inner<K, V> {
    generation: u64,
    rows: HashMap<K, Arc<V>>,
}

impl<K: Eq + Hash + Clone, V> Cache<K, V> {
    pub fn new() -> Self {
        Self {
            inner: RwLock::new(Inner {
                generation: 0,
                rows: HashMap::new(),
            }),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner<K, V>> {
        // Each critical section is a single map operation: a poisoned lock holds a
        // consistent map.
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner<K, V>> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, key: &K) -> Option<Arc<V>> {
        self.read().rows.get(key).cloned()
    }

    /// Call before loading a row from the store; pass the result to `insert`.
    pub fn generation(&self) -> u64 {
        self.read().generation
    }

    /// Inserts a row loaded from the store, unless it was invalidated meanwhile.
    pub fn insert(&self, loaded_at: u64, key: K, value: Arc<V>) {
        let mut inner = self.write();
        if inner.generation == loaded_at {
            inner.rows.insert(key, value);
        }
    }

    /// Drops a row after the store changed it.
    pub fn invalidate(&self, key: &K) {
        let mut inner = self.write();
        inner.generation += 1;
        inner.rows.remove(key);
    }

    /// Drops every row whose key `which` selects.
    pub fn invalidate_where(&self, which: impl Fn(&K) -> bool) {
        let mut inner = self.write();
        inner.generation += 1;
        inner.rows.retain(|k, _| !which(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_load_that_raced_an_invalidation_is_not_cached() {
        let c: Cache<&str, u32> = Cache::new();
        let gen = c.generation();
        c.invalidate(&"f"); // a write committed while the reader was loading
        c.insert(gen, "f", Arc::new(1));
        assert!(c.get(&"f").is_none());
        let gen = c.generation();
        c.insert(gen, "f", Arc::new(2));
        assert_eq!(c.get(&"f").as_deref(), Some(&2));
        c.invalidate(&"f");
        assert!(c.get(&"f").is_none());
    }
}
