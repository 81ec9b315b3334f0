use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};
use skyscale_types::{FunctionName, Handler, MemoryMb, Runtime, TimeoutSecs};

use crate::code::CodeRef;
use crate::migrations::MIGRATIONS;
use crate::now_rfc3339;

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

/// A function as stored: validated domain values only.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionRecord {
    pub name: FunctionName,
    pub runtime: Runtime,
    pub handler: Handler,
    pub memory: MemoryMb,
    pub timeout: TimeoutSecs,
    pub environment: BTreeMap<String, String>,
    pub description: String,
    pub code: Option<CodeRef>,
    /// Most invocations running at once; `Some(0)` disables the function.
    pub reserved_concurrency: Option<u32>,
    /// Outbound network access for its sandboxes.
    pub network: bool,
    /// Size of its sandboxes' `/tmp`, MiB.
    pub ephemeral_mb: u32,
    pub revision: u64,
    pub created_at: String,
    pub updated_at: String,
    /// `None` for `$LATEST` (the function's row), else the published version's number.
    pub version: Option<u64>,
}

/// An alias of a function: a name for `$LATEST` or a published version, optionally routing
/// a share of the invocations to a second published version.
#[derive(Debug, Clone, PartialEq)]
pub struct AliasRecord {
    pub function: FunctionName,
    pub name: String,
    /// `None` for `$LATEST`.
    pub version: Option<u64>,
    pub description: String,
    /// The other version and the share of invocations (0..=1) it gets.
    pub routing: Option<(u64, f64)>,
    /// Increases with every change.
    pub revision: u64,
    pub created_at: String,
    pub updated_at: String,
}

/// A partial update of an alias; `None` leaves a field as it is. `routing: Some(None)`
/// removes the routing.
#[derive(Debug, Clone, Default)]
pub struct AliasUpdate {
    /// `Some(None)` points the alias at `$LATEST`.
    pub version: Option<Option<u64>>,
    pub description: Option<String>,
    pub routing: Option<Option<(u64, f64)>>,
}

const ALIAS_COLUMNS: &str = "function, name, version, description, extra_version, extra_weight, \
     revision, created_at, updated_at";

/// Everything needed to create a function.
#[derive(Debug, Clone)]
pub struct NewFunction {
    pub name: FunctionName,
    pub runtime: Runtime,
    pub handler: Handler,
    pub memory: MemoryMb,
    pub timeout: TimeoutSecs,
    pub environment: BTreeMap<String, String>,
    pub description: String,
    pub code: Option<CodeRef>,
    pub network: bool,
    pub ephemeral_mb: u32,
}

/// A partial update of a function's configuration; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct FunctionUpdate {
    pub runtime: Option<Runtime>,
    pub handler: Option<Handler>,
    pub memory: Option<MemoryMb>,
    pub timeout: Option<TimeoutSecs>,
    pub environment: Option<BTreeMap<String, String>>,
    pub description: Option<String>,
    pub network: Option<bool>,
    pub ephemeral_mb: Option<u32>,
    /// Apply only if the function is still at this revision (checked in the transaction).
    pub expected_revision: Option<u64>,
}

/// Refuses a change to `f` unless it is at the `expected` revision.
fn check_revision(f: &FunctionRecord, expected: Option<u64>) -> Result<(), StoreError> {
    match expected {
        Some(e) if e != f.revision => Err(StoreError::RevisionMismatch {
            name: f.name.to_string(),
            expected: e,
            actual: f.revision,
        }),
        _ => Ok(()),
    }
}

/// The SQLite database. One connection behind a mutex: SQLite serialises writers anyway,
/// and every statement here takes microseconds, so a pool would add nothing but threads.
/// Invocation records and logs have a second connection of their own: their batches and
/// log reads can be megabytes, and must not hold up the function and key statements.
pub struct Store {
    conn: Mutex<Connection>,
    records: Mutex<Connection>,
    /// The event queue's own connection (`events.rs`): accepting and claiming events must
    /// not wait behind function lookups or record batches.
    events: Mutex<Connection>,
}

const FUNCTION_COLUMNS: &str = "name, runtime, handler, memory_mb, timeout_s, environment, \
     description, code_sha256, code_size, revision, created_at, updated_at, reserved_concurrency, \
     NULL, network, ephemeral_mb";

/// A version row in the shape of `FUNCTION_COLUMNS`: its own timestamp, no reservation.
const VERSION_COLUMNS: &str = "function, runtime, handler, memory_mb, timeout_s, environment, \
     description, code_sha256, code_size, revision, created_at, created_at, NULL, version, \
     network, ephemeral_mb";

/// Most tags on one function, as in Lambda.
pub const MAX_TAGS: usize = 50;

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

    /// The connection of invocation records and logs (see [`Store`]).
    pub(crate) fn records_conn(&self) -> MutexGuard<'_, Connection> {
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn create_function(&self, f: &NewFunction) -> Result<FunctionRecord, StoreError> {
        let now = now_rfc3339();
        let env = serde_json::to_string(&f.environment).map_err(|e| StoreError::Corrupt {
            table: "functions",
            message: e.to_string(),
        })?;
        let conn = self.conn();
        let inserted = conn.execute(
            "INSERT INTO functions (name, runtime, handler, memory_mb, timeout_s, environment, \
             description, code_sha256, code_size, revision, created_at, updated_at, network, \
             ephemeral_mb) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 1, ?10, ?10, ?11, ?12) \
             ON CONFLICT(name) DO NOTHING",
            params![
                f.name.as_str(),
                f.runtime.as_str(),
                f.handler.as_str(),
                f.memory.get(),
                f.timeout.get(),
                env,
                f.description,
                f.code.as_ref().map(|c| c.sha256.as_str()),
                f.code.as_ref().map(|c| c.size as i64),
                now,
                f.network,
                f.ephemeral_mb,
            ],
        )?;
        if inserted == 0 {
            return Err(StoreError::FunctionExists(f.name.to_string()));
        }
        get_function(&conn, &f.name)?
            .ok_or_else(|| StoreError::FunctionNotFound(f.name.to_string()))
    }

    pub fn get_function(&self, name: &FunctionName) -> Result<Option<FunctionRecord>, StoreError> {
        get_function(&self.conn(), name)
    }

    pub fn list_functions(&self) -> Result<Vec<FunctionRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {FUNCTION_COLUMNS} FROM functions ORDER BY name"
        ))?;
        let rows = stmt.query_map([], |row| Ok(function_from_row(row)))?;
        rows.map(|r| r?).collect()
    }

    /// Up to `limit` functions whose names sort after `after` (all when `None`), by name.
    pub fn list_functions_after(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<FunctionRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {FUNCTION_COLUMNS} FROM functions WHERE name > ?1 ORDER BY name LIMIT ?2"
        ))?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt.query_map(params![after.unwrap_or(""), limit], |row| {
            Ok(function_from_row(row))
        })?;
        rows.map(|r| r?).collect()
    }

    /// Applies a partial configuration update and bumps the revision, atomically.
    pub fn update_function(
        &self,
        name: &FunctionName,
        u: &FunctionUpdate,
    ) -> Result<FunctionRecord, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut f = get_function(&tx, name)?
            .ok_or_else(|| StoreError::FunctionNotFound(name.to_string()))?;
        check_revision(&f, u.expected_revision)?;
        if let Some(v) = &u.runtime {
            f.runtime = v.clone();
        }
        if let Some(v) = &u.handler {
            f.handler = v.clone();
        }
        if let Some(v) = u.memory {
            f.memory = v;
        }
        if let Some(v) = u.timeout {
            f.timeout = v;
        }
        if let Some(v) = &u.environment {
            f.environment = v.clone();
        }
        if let Some(v) = &u.description {
            f.description = v.clone();
        }
        if let Some(v) = u.network {
            f.network = v;
        }
        if let Some(v) = u.ephemeral_mb {
            f.ephemeral_mb = v;
        }
        let env = serde_json::to_string(&f.environment).map_err(|e| StoreError::Corrupt {
            table: "functions",
            message: e.to_string(),
        })?;
        tx.execute(
            "UPDATE functions SET runtime = ?2, handler = ?3, memory_mb = ?4, timeout_s = ?5, \
             environment = ?6, description = ?7, revision = revision + 1, updated_at = ?8, \
             network = ?9, ephemeral_mb = ?10 WHERE name = ?1",
            params![
                name.as_str(),
                f.runtime.as_str(),
                f.handler.as_str(),
                f.memory.get(),
                f.timeout.get(),
                env,
                f.description,
                now_rfc3339(),
                f.network,
                f.ephemeral_mb,
            ],
        )?;
        let out = get_function(&tx, name)?
            .ok_or_else(|| StoreError::FunctionNotFound(name.to_string()))?;
        tx.commit()?;
        Ok(out)
    }

    /// Points the function at new code (already stored) and bumps the revision.
    pub fn set_function_code(
        &self,
        name: &FunctionName,
        code: &CodeRef,
    ) -> Result<FunctionRecord, StoreError> {
        self.set_function_code_if(name, code, None)
    }

    /// Like [`Self::set_function_code`], only if the function is at `expected` revision.
    pub fn set_function_code_if(
        &self,
        name: &FunctionName,
        code: &CodeRef,
        expected: Option<u64>,
    ) -> Result<FunctionRecord, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let f = get_function(&tx, name)?
            .ok_or_else(|| StoreError::FunctionNotFound(name.to_string()))?;
        check_revision(&f, expected)?;
        tx.execute(
            "UPDATE functions SET code_sha256 = ?2, code_size = ?3, revision = revision + 1, \
             updated_at = ?4 WHERE name = ?1",
            params![name.as_str(), code.sha256, code.size as i64, now_rfc3339()],
        )?;
        let out = get_function(&tx, name)?
            .ok_or_else(|| StoreError::FunctionNotFound(name.to_string()))?;
        tx.commit()?;
        Ok(out)
    }

    /// Sets or clears the reserved concurrency. It limits how a function runs, not what
    /// runs, so the revision (and with it the warm sandboxes) stays.
    pub fn set_reserved_concurrency(
        &self,
        name: &FunctionName,
        reserved: Option<u32>,
    ) -> Result<FunctionRecord, StoreError> {
        let conn = self.conn();
        let changed = conn.execute(
            "UPDATE functions SET reserved_concurrency = ?2, updated_at = ?3 WHERE name = ?1",
            params![name.as_str(), reserved, now_rfc3339()],
        )?;
        if changed == 0 {
            return Err(StoreError::FunctionNotFound(name.to_string()));
        }
        get_function(&conn, name)?.ok_or_else(|| StoreError::FunctionNotFound(name.to_string()))
    }

    /// Deletes a function. Returns the deleted record.
    pub fn delete_function(&self, name: &FunctionName) -> Result<FunctionRecord, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let f = get_function(&tx, name)?
            .ok_or_else(|| StoreError::FunctionNotFound(name.to_string()))?;
        tx.execute("DELETE FROM functions WHERE name = ?1", [name.as_str()])?;
        crate::events::function_deleted(&tx, name.as_str())?;
        tx.commit()?;
        Ok(f)
    }

    /// The function's tags (empty when it has none or does not exist).
    pub fn tags(&self, name: &FunctionName) -> Result<BTreeMap<String, String>, StoreError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare_cached("SELECT key, value FROM function_tags WHERE function = ?1")?;
        let rows = stmt.query_map([name.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Adds or replaces tags; refuses (changing nothing) when the function would end up
    /// with more than [`MAX_TAGS`].
    pub fn tag_function(
        &self,
        name: &FunctionName,
        tags: &BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if get_function(&tx, name)?.is_none() {
            return Err(StoreError::FunctionNotFound(name.to_string()));
        }
        for (k, v) in tags {
            tx.execute(
                "INSERT INTO function_tags (function, key, value) VALUES (?1, ?2, ?3) \
                 ON CONFLICT(function, key) DO UPDATE SET value = excluded.value",
                params![name.as_str(), k, v],
            )?;
        }
        let n: i64 = tx.query_row(
            "SELECT COUNT(*) FROM function_tags WHERE function = ?1",
            [name.as_str()],
            |r| r.get(0),
        )?;
        if n as usize > MAX_TAGS {
            return Err(StoreError::Limit(format!(
                "function {name} would have {n} tags: the limit is {MAX_TAGS}"
            )));
        }
        tx.commit()?;
        Ok(())
    }

    /// Removes the tags with these keys (missing ones are ignored).
    pub fn untag_function(&self, name: &FunctionName, keys: &[String]) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if get_function(&tx, name)?.is_none() {
            return Err(StoreError::FunctionNotFound(name.to_string()));
        }
        for k in keys {
            tx.execute(
                "DELETE FROM function_tags WHERE function = ?1 AND key = ?2",
                params![name.as_str(), k],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Publishes `$LATEST` as a new version (numbered after the highest ever given), or
    /// returns the newest version when its code and configuration equal `$LATEST`'s.
    /// `description` defaults to `$LATEST`'s. Returns the version and whether it is new.
    pub fn publish_version(
        &self,
        name: &FunctionName,
        description: Option<&str>,
    ) -> Result<(FunctionRecord, bool), StoreError> {
        self.publish_version_if(name, description, None)
    }

    /// Like [`Self::publish_version`], only if `$LATEST` is at `expected` revision: what is
    /// published is exactly what the caller saw (or just wrote).
    pub fn publish_version_if(
        &self,
        name: &FunctionName,
        description: Option<&str>,
        expected: Option<u64>,
    ) -> Result<(FunctionRecord, bool), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let f = get_function(&tx, name)?
            .ok_or_else(|| StoreError::FunctionNotFound(name.to_string()))?;
        check_revision(&f, expected)?;
        let Some(code) = &f.code else {
            return Err(StoreError::Limit(format!(
                "function {name} has no code to publish"
            )));
        };
        let newest: Option<i64> = tx.query_row(
            "SELECT MAX(version) FROM function_versions WHERE function = ?1",
            [name.as_str()],
            |r| r.get(0),
        )?;
        if let Some(n) = newest {
            if let Some(v) = get_version(&tx, name, n as u64)? {
                let same = v.code == f.code
                    && v.runtime == f.runtime
                    && v.handler == f.handler
                    && v.memory == f.memory
                    && v.timeout == f.timeout
                    && v.environment == f.environment;
                if same {
                    return Ok((v, false));
                }
            }
        }
        let last: i64 = tx.query_row(
            "SELECT last_version FROM functions WHERE name = ?1",
            [name.as_str()],
            |r| r.get(0),
        )?;
        let n = last + 1;
        let env = serde_json::to_string(&f.environment).map_err(corrupt)?;
        tx.execute(
            "INSERT INTO function_versions (function, version, runtime, handler, memory_mb, \
             timeout_s, environment, description, code_sha256, code_size, revision, created_at, \
             network, ephemeral_mb) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            params![
                name.as_str(),
                n,
                f.runtime.as_str(),
                f.handler.as_str(),
                f.memory.get(),
                f.timeout.get(),
                env,
                description.unwrap_or(&f.description),
                code.sha256,
                code.size as i64,
                f.revision as i64,
                now_rfc3339(),
                f.network,
                f.ephemeral_mb,
            ],
        )?;
        tx.execute(
            "UPDATE functions SET last_version = ?2 WHERE name = ?1",
            params![name.as_str(), n],
        )?;
        let v = get_version(&tx, name, n as u64)?.ok_or_else(|| StoreError::Corrupt {
            table: "function_versions",
            message: format!("version {n} of {name} vanished after insert"),
        })?;
        tx.commit()?;
        Ok((v, true))
    }

    /// One published version of a function.
    pub fn get_version(
        &self,
        name: &FunctionName,
        version: u64,
    ) -> Result<Option<FunctionRecord>, StoreError> {
        get_version(&self.conn(), name, version)
    }

    /// Every published version of a function, oldest first.
    pub fn list_versions(&self, name: &FunctionName) -> Result<Vec<FunctionRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {VERSION_COLUMNS} FROM function_versions WHERE function = ?1 \
             ORDER BY version"
        ))?;
        let rows = stmt.query_map([name.as_str()], |row| Ok(function_from_row(row)))?;
        rows.map(|r| r?).collect()
    }

    /// Deletes one published version; returns whether it existed. A version an alias
    /// points at stays (`InUse`).
    pub fn delete_version(&self, name: &FunctionName, version: u64) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let alias: Option<String> = tx
            .query_row(
                "SELECT name FROM function_aliases WHERE function = ?1 \
                 AND (version = ?2 OR extra_version = ?2) ORDER BY name LIMIT 1",
                params![name.as_str(), version as i64],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(alias) = alias {
            return Err(StoreError::InUse(format!(
                "version {version} of {name} cannot be deleted: alias {alias} refers to it"
            )));
        }
        let changed = tx.execute(
            "DELETE FROM function_versions WHERE function = ?1 AND version = ?2",
            params![name.as_str(), version as i64],
        )?;
        tx.execute(
            "DELETE FROM function_policies WHERE function = ?1 AND qualifier = ?2",
            params![name.as_str(), version.to_string()],
        )?;
        tx.commit()?;
        Ok(changed > 0)
    }

    /// Creates an alias; the function must exist (the caller checked its versions).
    pub fn create_alias(
        &self,
        function: &FunctionName,
        name: &str,
        version: Option<u64>,
        description: &str,
        routing: Option<(u64, f64)>,
    ) -> Result<AliasRecord, StoreError> {
        let conn = self.conn();
        if get_function(&conn, function)?.is_none() {
            return Err(StoreError::FunctionNotFound(function.to_string()));
        }
        let now = now_rfc3339();
        let inserted = conn.execute(
            "INSERT INTO function_aliases (function, name, version, description, extra_version, \
             extra_weight, revision, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7, ?7) ON CONFLICT(function, name) DO NOTHING",
            params![
                function.as_str(),
                name,
                version.map(|v| v as i64),
                description,
                routing.map(|(v, _)| v as i64),
                routing.map(|(_, w)| w),
                now,
            ],
        )?;
        if inserted == 0 {
            return Err(StoreError::AliasExists(format!("{function}:{name}")));
        }
        get_alias(&conn, function, name)?.ok_or_else(|| StoreError::Corrupt {
            table: "function_aliases",
            message: format!("alias {function}:{name} vanished after insert"),
        })
    }

    pub fn get_alias(
        &self,
        function: &FunctionName,
        name: &str,
    ) -> Result<Option<AliasRecord>, StoreError> {
        get_alias(&self.conn(), function, name)
    }

    /// A function's aliases by name.
    pub fn list_aliases(&self, function: &FunctionName) -> Result<Vec<AliasRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {ALIAS_COLUMNS} FROM function_aliases WHERE function = ?1 ORDER BY name"
        ))?;
        let rows = stmt.query_map([function.as_str()], |row| Ok(alias_from_row(row)))?;
        rows.map(|r| r?).collect()
    }

    /// Applies a partial update; `None` when the alias does not exist.
    pub fn update_alias(
        &self,
        function: &FunctionName,
        name: &str,
        u: &AliasUpdate,
    ) -> Result<Option<AliasRecord>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let Some(mut a) = get_alias(&tx, function, name)? else {
            return Ok(None);
        };
        if let Some(v) = u.version {
            a.version = v;
        }
        if let Some(d) = &u.description {
            a.description = d.clone();
        }
        if let Some(r) = u.routing {
            a.routing = r;
        }
        tx.execute(
            "UPDATE function_aliases SET version = ?3, description = ?4, extra_version = ?5, \
             extra_weight = ?6, revision = revision + 1, updated_at = ?7 \
             WHERE function = ?1 AND name = ?2",
            params![
                function.as_str(),
                name,
                a.version.map(|v| v as i64),
                a.description,
                a.routing.map(|(v, _)| v as i64),
                a.routing.map(|(_, w)| w),
                now_rfc3339(),
            ],
        )?;
        let out = get_alias(&tx, function, name)?;
        tx.commit()?;
        Ok(out)
    }

    /// Deletes an alias, its function URL and its policy statements; returns whether the alias existed.
    pub fn delete_alias(&self, function: &FunctionName, name: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let changed = tx.execute(
            "DELETE FROM function_aliases WHERE function = ?1 AND name = ?2",
            params![function.as_str(), name],
        )?;
        tx.execute(
            "DELETE FROM function_urls WHERE function = ?1 AND qualifier = ?2",
            params![function.as_str(), name],
        )?;
        tx.execute(
            "DELETE FROM function_policies WHERE function = ?1 AND qualifier = ?2",
            params![function.as_str(), name],
        )?;
        tx.commit()?;
        Ok(changed > 0)
    }

    /// Every code hash some function still points at (for garbage collection of packages).
    pub fn referenced_code(&self) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT code_sha256 FROM functions WHERE code_sha256 IS NOT NULL \
             UNION SELECT code_sha256 FROM function_versions",
        )?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
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

fn get_function(
    conn: &Connection,
    name: &FunctionName,
) -> Result<Option<FunctionRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {FUNCTION_COLUMNS} FROM functions WHERE name = ?1"
    ))?;
    stmt.query_row([name.as_str()], |row| Ok(function_from_row(row)))
        .optional()?
        .transpose()
}

fn get_version(
    conn: &Connection,
    name: &FunctionName,
    version: u64,
) -> Result<Option<FunctionRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {VERSION_COLUMNS} FROM function_versions WHERE function = ?1 AND version = ?2"
    ))?;
    stmt.query_row(params![name.as_str(), version as i64], |row| {
        Ok(function_from_row(row))
    })
    .optional()?
    .transpose()
}

fn get_alias(
    conn: &Connection,
    function: &FunctionName,
    name: &str,
) -> Result<Option<AliasRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {ALIAS_COLUMNS} FROM function_aliases WHERE function = ?1 AND name = ?2"
    ))?;
    stmt.query_row(params![function.as_str(), name], |row| {
        Ok(alias_from_row(row))
    })
    .optional()?
    .transpose()
}

fn alias_from_row(row: &Row<'_>) -> Result<AliasRecord, StoreError> {
    let bad = |m: String| StoreError::Corrupt {
        table: "function_aliases",
        message: m,
    };
    let number = |i: usize| -> Result<u64, StoreError> {
        let n: i64 = row.get(i)?;
        u64::try_from(n).map_err(|e| bad(e.to_string()))
    };
    let extra: Option<i64> = row.get(4)?;
    let weight: Option<f64> = row.get(5)?;
    let routing = match (extra, weight) {
        (Some(v), Some(w)) => Some((u64::try_from(v).map_err(|e| bad(e.to_string()))?, w)),
        _ => None,
    };
    Ok(AliasRecord {
        function: FunctionName::parse(&row.get::<_, String>(0)?).map_err(|e| bad(e.to_string()))?,
        name: row.get(1)?,
        version: row
            .get::<_, Option<i64>>(2)?
            .map(|v| u64::try_from(v).map_err(|e| bad(e.to_string())))
            .transpose()?,
        description: row.get(3)?,
        routing,
        revision: number(6)?,
        created_at: row.get(7)?,
        updated_at: row.get(8)?,
    })
}

fn corrupt(message: impl ToString) -> StoreError {
    StoreError::Corrupt {
        table: "functions",
        message: message.to_string(),
    }
}

fn function_from_row(row: &Row<'_>) -> Result<FunctionRecord, StoreError> {
    let name: String = row.get(0)?;
    let env: String = row.get(5)?;
    let sha: Option<String> = row.get(7)?;
    let size: Option<i64> = row.get(8)?;
    Ok(FunctionRecord {
        name: FunctionName::parse(&name).map_err(corrupt)?,
        runtime: Runtime::parse(&row.get::<_, String>(1)?).map_err(corrupt)?,
        handler: Handler::free_text(&row.get::<_, String>(2)?).map_err(corrupt)?,
        memory: MemoryMb::new(row.get(3)?).map_err(corrupt)?,
        timeout: TimeoutSecs::new(row.get(4)?).map_err(corrupt)?,
        environment: serde_json::from_str(&env).map_err(corrupt)?,
        description: row.get(6)?,
        code: sha.map(|sha256| CodeRef {
            sha256,
            size: size.unwrap_or(0) as u64,
        }),
        revision: row.get::<_, i64>(9)? as u64,
        created_at: row.get(10)?,
        updated_at: row.get(11)?,
        reserved_concurrency: row
            .get::<_, Option<i64>>(12)?
            .map(|n| u32::try_from(n).map_err(corrupt))
            .transpose()?,
        version: row
            .get::<_, Option<i64>>(13)?
            .map(|n| u64::try_from(n).map_err(corrupt))
            .transpose()?,
        network: row.get(14)?,
        ephemeral_mb: u32::try_from(row.get::<_, i64>(15)?).map_err(corrupt)?,
    })
}
