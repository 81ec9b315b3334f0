//! The database itself: the `Store` handle, its two connections, opening and migrating.
//! The statements live with their resource (`functions.rs`, `versions.rs`, `aliases.rs`,
//! `tags.rs`, `keys.rs`, `audit.rs`, `invocations.rs`, `policies.rs`, `urls.rs`).

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, TransactionBehavior};

use crate::migrations::MIGRATIONS;

/// A failed store operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A function with that name exists already.
    #[error("function {0} already exists")]
    FunctionExists(String),
    /// No function with that name.
    #[error("function {0} not found")]
    FunctionNotFound(String),
    /// A row that this code did not write (or a corrupted one).
    #[error("corrupt row in {table}: {message}")]
    Corrupt {
        table: &'static str,
        message: String,
    },
    /// The database was written by a newer Skyscale.
    #[error("database schema version {found} is newer than this build understands ({known})")]
    TooNew { found: i64, known: i64 },
    /// An alias with that name exists already for the function.
    #[error("alias {0} already exists")]
    AliasExists(String),
    /// Some other row with that key exists already.
    #[error("{0}")]
    Exists(String),
    /// A row the operation needs does not exist (the message says which).
    #[error("{0}")]
    NotFound(String),
    /// The row is still referenced (e.g. a version an alias points at).
    #[error("{0}")]
    InUse(String),
    /// A per-function limit would be exceeded (e.g. the number of tags).
    #[error("{0}")]
    Limit(String),
    /// The function changed since the caller read it (a precondition on its revision).
    #[error("function {name} is at revision {actual}, not {expected}")]
    RevisionMismatch {
        name: String,
        expected: u64,
        actual: u64,
    },
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
}

/// The SQLite database. One connection behind a mutex: SQLite serialises writers anyway,
/// and every statement here takes microseconds, so a pool would add nothing but threads.
/// Invocation records and logs have a second connection of their own: their batches and
/// log reads can be megabytes, and must not hold up the function and key statements.
pub struct Store {
    conn: Mutex<Connection>,
    records: Mutex<Connection>,
    /// The event queue's own connection (`events.rs`): accepting events must not wait
    /// behind function lookups or record batches. It syncs every commit (see `open`).
    events: Mutex<Connection>,
    /// The dispatcher's connection: claims, lease renewals and the ends of attempts. These
    /// need not survive a power cut: one lost puts its event back where it was, and the
    /// event runs again (delivery is at least once), so this connection does not sync every
    /// commit. In WAL mode the next synced commit syncs them too.
    dispatch: Mutex<Connection>,
}

impl Store {
    /// Opens (creating if needed) the database at `path` in WAL mode and runs migrations.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let connect = || -> Result<Connection, StoreError> {
            let conn = Connection::open(path)?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            conn.pragma_update(None, "foreign_keys", "ON")?;
            conn.busy_timeout(std::time::Duration::from_secs(5))?;
            Ok(conn)
        };
        let mut conn = connect()?;
        migrate(&mut conn)?;
        Ok(Self {
            conn: Mutex::new(conn),
            records: Mutex::new(connect()?),
            events: Mutex::new({
                // An accepted event is answered 202 after its commit: that commit must
                // survive a power cut too, so this connection syncs the WAL on every commit
                // (`synchronous` is per connection; the others keep NORMAL).
                let c = connect()?;
                c.pragma_update(None, "synchronous", "FULL")?;
                c
            }),
            dispatch: Mutex::new(connect()?),
        })
    }

    pub(crate) fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite half-written (each statement or
        // transaction is atomic), so a poisoned lock is safe to keep using.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The event queue's connection (see [`Store`]).
    pub(crate) fn events_conn(&self) -> MutexGuard<'_, Connection> {
        self.events.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The dispatcher's connection (see [`Store`]).
    pub(crate) fn dispatch_conn(&self) -> MutexGuard<'_, Connection> {
        self.dispatch.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The connection of invocation records and logs (see [`Store`]).
    pub(crate) fn records_conn(&self) -> MutexGuard<'_, Connection> {
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let known = MIGRATIONS.len() as i64;
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > known {
        return Err(StoreError::TooNew { found, known });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
        tracing::info!(version = i + 1, "applied database migration");
    }
    Ok(())
}
