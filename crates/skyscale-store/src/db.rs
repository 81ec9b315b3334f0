//! The database itself: the `Store` handle, its connections, opening (SQLite) or connecting
//! (PostgreSQL) and migrating. The backend-neutral layer the statements use is `sql.rs`.
//! The statements live with their resource (`functions.rs`, `versions.rs`, `aliases.rs`,
//! `tags.rs`, `keys.rs`, `audit.rs`, `invocations.rs`, `policies.rs`, `urls.rs`).

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, TransactionBehavior};

use crate::migrations::MIGRATIONS;
use crate::migrations_pg::MIGRATIONS_PG;
use crate::sql::{args, Conn, Db, Dialect, PgConn};

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
    /// The database failed (or refused) a statement, or could not be reached. `message`
    /// is the database's own (with PostgreSQL's SQLSTATE code when there is one).
    #[error("database: {message}")]
    Database {
        message: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Database {
            message: format!("SQLite: {e}"),
            source: Some(Box::new(e)),
        }
    }
}

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        let message = match e.as_db_error() {
            Some(db) => {
                let mut m = format!(
                    "PostgreSQL: {} {}: {}",
                    db.severity(),
                    db.code().code(),
                    db.message()
                );
                if let Some(d) = db.detail() {
                    m.push_str(&format!(" ({d})"));
                }
                m
            }
            None => format!("PostgreSQL: {e}"),
        };
        Self::Database {
            message,
            source: Some(Box::new(e)),
        }
    }
}

/// The database: SQLite (one process owns it) or PostgreSQL (shared by every node of a
/// cluster). Four connections, one per role, each behind a mutex: every statement here takes
/// microseconds (SQLite) or a round trip (PostgreSQL), so a pool would add nothing but
/// threads, while separate roles keep one kind of work from waiting behind another.
///
/// - `conn`: functions, versions, aliases, keys, audit, configurations.
/// - `records`: invocation records and logs: their batches and log reads can be megabytes,
///   and must not hold up the function and key statements.
/// - `events`: the event queue's accepting side (`events.rs`): accepting events must not wait
///   behind function lookups or record batches. It syncs every commit (see `open`).
/// - `dispatch`: the dispatcher's claims, lease renewals and the ends of attempts. These need
///   not survive a power cut: one lost puts its event back where it was, and the event runs
///   again (delivery is at least once), so this connection does not sync every commit (SQLite:
///   in WAL mode the next synced commit syncs them too; PostgreSQL: `synchronous_commit = off`).
pub struct Store {
    dialect: Dialect,
    /// PostgreSQL: how to connect (singletons open connections of their own).
    pg_config: Option<postgres::Config>,
    conn: Conn,
    records: Conn,
    events: Conn,
    dispatch: Conn,
}

/// The key of the advisory lock that migrations run under on PostgreSQL (several nodes may
/// start at once; one migrates, the others wait and then find nothing to do).
const MIGRATION_LOCK: i64 = 0x736b_7973_6361_6c65; // "skyscale"

impl Store {
    /// Opens (creating if needed) the SQLite database at `path` in WAL mode and runs
    /// migrations.
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
        migrate_sqlite(&mut conn)?;
        Ok(Self {
            dialect: Dialect::Sqlite,
            pg_config: None,
            conn: Conn::Sqlite(Mutex::new(conn)),
            records: Conn::Sqlite(Mutex::new(connect()?)),
            events: Conn::Sqlite(Mutex::new({
                // An accepted event is answered 202 after its commit: that commit must
                // survive a power cut too, so this connection syncs the WAL on every commit
                // (`synchronous` is per connection; the others keep NORMAL).
                let c = connect()?;
                c.pragma_update(None, "synchronous", "FULL")?;
                c
            })),
            dispatch: Conn::Sqlite(Mutex::new(connect()?)),
        })
    }

    /// Connects to the PostgreSQL database at `url` (`postgres://user:password@host:port/db`)
    /// and runs migrations (under an advisory lock: several nodes may start at once).
    ///
    /// Blocking, like every method here: never call it on an async runtime's thread (the
    /// client runs a runtime of its own and panics there); use `spawn_blocking`.
    pub fn connect(url: &str) -> Result<Self, StoreError> {
        let mut config: postgres::Config = url.parse().map_err(|e| StoreError::Database {
            message: format!("the database URL is not a PostgreSQL URL: {e}"),
            source: None,
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(std::time::Duration::from_secs(10));
        }
        if config.get_application_name().is_none() {
            config.application_name("skyscale");
        }
        let pg = |setup: &'static str| -> Result<Conn, StoreError> {
            let mut c = PgConn::new(config.clone(), setup);
            c.connect()?;
            Ok(Conn::Postgres(Box::new(Mutex::new(c))))
        };
        let conn = pg("")?;
        migrate_pg(&mut conn.lock())?;
        Ok(Self {
            dialect: Dialect::Postgres,
            pg_config: Some(config.clone()),
            conn,
            // Record batches and dispatcher writes may be lost with the server's last
            // moments, as on SQLite (see `Store`); an accepted event may not (`events`).
            records: pg("SET synchronous_commit = off")?,
            events: pg("")?,
            dispatch: pg("SET synchronous_commit = off")?,
        })
    }

    /// Whether other processes share this database (PostgreSQL): then leases held at start
    /// may be other nodes', and chores must be coordinated.
    pub fn is_shared(&self) -> bool {
        self.dialect == Dialect::Postgres
    }

    /// How to open another connection to the same PostgreSQL database; `None` on SQLite.
    pub(crate) fn pg_config(&self) -> Option<&postgres::Config> {
        self.pg_config.as_ref()
    }

    /// The functions, keys and configurations connection (see [`Store`]).
    pub(crate) fn db(&self) -> Db<'_> {
        self.conn.lock()
    }

    /// The event queue's connection (see [`Store`]).
    pub(crate) fn events_db(&self) -> Db<'_> {
        self.events.lock()
    }

    /// The dispatcher's connection (see [`Store`]).
    pub(crate) fn dispatch_db(&self) -> Db<'_> {
        self.dispatch.lock()
    }

    /// The connection of invocation records and logs (see [`Store`]).
    pub(crate) fn records_db(&self) -> Db<'_> {
        self.records.lock()
    }
}

fn migrate_sqlite(conn: &mut Connection) -> Result<(), StoreError> {
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

/// PostgreSQL's migrations: the same semantics as SQLite's (numbered, each in its own
/// transaction with the version it reaches, `TooNew` refused), the version kept in the
/// one-row table `schema_version`. Each transaction first takes the transaction-scoped
/// advisory lock [`MIGRATION_LOCK`], so nodes starting together apply each migration once.
fn migrate_pg(db: &mut Db<'_>) -> Result<(), StoreError> {
    let known = MIGRATIONS_PG.len() as i64;
    loop {
        let mut tx = db.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock(?1)", args![MIGRATION_LOCK])?;
        tx.batch("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")?;
        let found: Option<i64> = tx
            .query_opt("SELECT version FROM schema_version", args![])?
            .map(|r| r.get(0))
            .transpose()?;
        let found = found.unwrap_or(0);
        if found > known {
            return Err(StoreError::TooNew { found, known });
        }
        if found == known {
            tx.commit()?;
            return Ok(());
        }
        let index = usize::try_from(found).unwrap_or(usize::MAX);
        tx.batch(MIGRATIONS_PG[index])?;
        if found == 0 {
            tx.execute("INSERT INTO schema_version (version) VALUES (1)", args![])?;
        } else {
            tx.execute("UPDATE schema_version SET version = ?1", args![found + 1])?;
        }
        tx.commit()?;
        tracing::info!(
            version = found + 1,
            "applied database migration (PostgreSQL)"
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn migration_lists_have_the_same_length() {
        assert_eq!(
            crate::migrations::MIGRATIONS.len(),
            crate::migrations_pg::MIGRATIONS_PG.len(),
            "every migration is added for both databases"
        );
    }
}
