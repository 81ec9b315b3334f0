//! The cache epoch: a counter that every committed change of a row some node caches
//! (functions, versions, aliases, URL settings, policy statements, API keys) moves, in the
//! same transaction as the change (triggers, migration 16), so a node that reads a new epoch
//! is sure to read the change too. Nodes sharing a PostgreSQL database poll it and drop
//! their caches when it moves; a notification on [`CHANNEL`], sent by the same trigger at
//! commit, only makes them look sooner: a notification lost (e.g. while the listening
//! connection reconnects) delays nothing beyond the next poll.

use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;

use crate::db::{Store, StoreError};
use crate::sql::args;

/// The `LISTEN`/`NOTIFY` channel the triggers notify on (PostgreSQL).
pub const CHANNEL: &str = "skyscale_cache";

impl Store {
    /// The cache epoch as committed.
    pub fn cache_epoch(&self) -> Result<i64, StoreError> {
        self.db()
            .query_one("SELECT epoch FROM cache_epoch WHERE id = 1", args![])?
            .get(0)
    }

    /// A connection of its own that listens for cache notifications; `None` on SQLite
    /// (one process owns the database, and it invalidates its caches itself).
    pub fn listen_cache(&self) -> Result<Option<CacheListener>, StoreError> {
        let Some(config) = self.pg_config() else {
            return Ok(None);
        };
        let mut client = config.connect(postgres::NoTls)?;
        client.batch_execute(&format!("LISTEN {CHANNEL}"))?;
        Ok(Some(CacheListener { client }))
    }
}

/// A connection listening on [`CHANNEL`]. Blocking (its client runs a runtime of its own):
/// keep it, and drop it, on a thread of its own, never on an async runtime's thread.
pub struct CacheListener {
    client: postgres::Client,
}

impl CacheListener {
    /// Waits up to `timeout` for notifications; true if at least one came (all that came
    /// are consumed). An error means the connection is gone: listen again on a new one.
    pub fn wait(&mut self, timeout: Duration) -> Result<bool, StoreError> {
        let mut notifications = self.client.notifications();
        if notifications.timeout_iter(timeout).next()?.is_none() {
            return Ok(false);
        }
        // Drain what else is queued, without waiting.
        let mut pending = notifications.iter();
        while pending.next()?.is_some() {}
        Ok(true)
    }
}
