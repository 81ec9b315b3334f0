//! Functions (`$LATEST`): create, read, list, update, new code, reserved concurrency,
//! delete; and the row mapping that versions share.

use std::collections::BTreeMap;

use skyscale_types::snapstart::SnapStart;
use skyscale_types::{FunctionName, Handler, MemoryMb, Runtime, TimeoutSecs};

use crate::code::CodeRef;
use crate::db::{Store, StoreError};
use crate::layers::{check_function_layers, layers_from_json, layers_to_json, FunctionLayer};
use crate::now_rfc3339;
use crate::sql::{args, Db, Row};

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
    /// Its layers, in order (merged into `/opt`, later ones winning).
    pub layers: Vec<FunctionLayer>,
    /// Whether its sandboxes start from a snapshot taken after init.
    pub snap_start: SnapStart,
    pub revision: u64,
    pub created_at: String,
    pub updated_at: String,
    /// `None` for `$LATEST` (the function's row), else the published version's number.
    pub version: Option<u64>,
}

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
    /// Its layers, in order (each an existing layer version; checked when stored).
    pub layers: Vec<FunctionLayer>,
    pub snap_start: SnapStart,
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
    /// The whole list of layers, in order (each an existing layer version).
    pub layers: Option<Vec<FunctionLayer>>,
    pub snap_start: Option<SnapStart>,
    /// Apply only if the function is still at this revision (checked in the transaction).
    pub expected_revision: Option<u64>,
}

const FUNCTION_COLUMNS: &str = "name, runtime, handler, memory_mb, timeout_s, environment, \
     description, code_sha256, code_size, revision, created_at, updated_at, reserved_concurrency, \
     NULL, network, ephemeral_mb, layers, snap_start";

impl Store {
    pub fn create_function(&self, f: &NewFunction) -> Result<FunctionRecord, StoreError> {
        let now = now_rfc3339();
        let env = serde_json::to_string(&f.environment).map_err(|e| StoreError::Corrupt {
            table: "functions",
            message: e.to_string(),
        })?;
        let layers = layers_to_json(&f.layers)?;
        let mut db = self.db();
        let mut tx = db.transaction()?;
        check_function_layers(&mut tx, &f.layers)?;
        let inserted = tx.execute(
            "INSERT INTO functions (name, runtime, handler, memory_mb, timeout_s, environment, \
             description, code_sha256, code_size, revision, created_at, updated_at, network, \
             ephemeral_mb, layers, snap_start) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 1, ?10, ?10, ?11, ?12, ?13, ?14) \
             ON CONFLICT(name) DO NOTHING",
            args![
                f.name.as_str(),
                f.runtime.as_str(),
                f.handler.as_str(),
                f.memory.get(),
                f.timeout.get(),
                &env,
                &f.description,
                f.code.as_ref().map(|c| c.sha256.as_str()),
                f.code.as_ref().map(|c| c.size),
                &now,
                f.network,
                f.ephemeral_mb,
                &layers,
                f.snap_start.as_str(),
            ],
        )?;
        if inserted == 0 {
            return Err(StoreError::FunctionExists(f.name.to_string()));
        }
        let out = get_function(&mut tx, &f.name)?
            .ok_or_else(|| StoreError::FunctionNotFound(f.name.to_string()))?;
        tx.commit()?;
        Ok(out)
    }

    pub fn get_function(&self, name: &FunctionName) -> Result<Option<FunctionRecord>, StoreError> {
        get_function(&mut self.db(), name)
    }

    pub fn list_functions(&self) -> Result<Vec<FunctionRecord>, StoreError> {
        let mut db = self.db();
        db.query_map(
            &format!("SELECT {FUNCTION_COLUMNS} FROM functions ORDER BY name"),
            args![],
            function_from_row,
        )
    }

    /// Up to `limit` functions whose names sort after `after` (all when `None`), by name.
    pub fn list_functions_after(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<FunctionRecord>, StoreError> {
        let mut db = self.db();
        db.query_map(
            &format!(
                "SELECT {FUNCTION_COLUMNS} FROM functions WHERE name > ?1 ORDER BY name LIMIT ?2"
            ),
            args![after.unwrap_or(""), limit],
            function_from_row,
        )
    }

    /// Applies a partial configuration update and bumps the revision, atomically.
    pub fn update_function(
        &self,
        name: &FunctionName,
        u: &FunctionUpdate,
    ) -> Result<FunctionRecord, StoreError> {
        let mut db = self.db();
        let mut tx = db.transaction()?;
        let mut f = lock_function(&mut tx, name)?
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
        if let Some(v) = &u.layers {
            check_function_layers(&mut tx, v)?;
            f.layers = v.clone();
        }
        if let Some(v) = u.snap_start {
            f.snap_start = v;
        }
        let layers = layers_to_json(&f.layers)?;
        let env = serde_json::to_string(&f.environment).map_err(|e| StoreError::Corrupt {
            table: "functions",
            message: e.to_string(),
        })?;
        tx.execute(
            "UPDATE functions SET runtime = ?2, handler = ?3, memory_mb = ?4, timeout_s = ?5, \
             environment = ?6, description = ?7, revision = revision + 1, updated_at = ?8, \
             network = ?9, ephemeral_mb = ?10, layers = ?11, snap_start = ?12 WHERE name = ?1",
            args![
                name.as_str(),
                f.runtime.as_str(),
                f.handler.as_str(),
                f.memory.get(),
                f.timeout.get(),
                &env,
                &f.description,
                &now_rfc3339(),
                f.network,
                f.ephemeral_mb,
                &layers,
                f.snap_start.as_str(),
            ],
        )?;
        let out = get_function(&mut tx, name)?
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
        self.set_function_code_if(name, code, None, None)
    }

    /// Like [`Self::set_function_code`], only if the function is at `expected` revision.
    pub fn set_function_code_if(
        &self,
        name: &FunctionName,
        code: &CodeRef,
        layers: Option<&[FunctionLayer]>,
        expected: Option<u64>,
    ) -> Result<FunctionRecord, StoreError> {
        let mut db = self.db();
        let mut tx = db.transaction()?;
        let f = lock_function(&mut tx, name)?
            .ok_or_else(|| StoreError::FunctionNotFound(name.to_string()))?;
        check_revision(&f, expected)?;
        // With `layers`, the code and the whole list of layers change in one update.
        let layers = match layers {
            Some(l) => {
                check_function_layers(&mut tx, l)?;
                l
            }
            None => f.layers.as_slice(),
        };
        let layers = layers_to_json(layers)?;
        tx.execute(
            "UPDATE functions SET code_sha256 = ?2, code_size = ?3, revision = revision + 1, \
             updated_at = ?4, layers = ?5 WHERE name = ?1",
            args![
                name.as_str(),
                &code.sha256,
                code.size,
                &now_rfc3339(),
                &layers
            ],
        )?;
        let out = get_function(&mut tx, name)?
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
        let mut db = self.db();
        let mut tx = db.transaction()?;
        lock_function(&mut tx, name)?
            .ok_or_else(|| StoreError::FunctionNotFound(name.to_string()))?;
        // A reservation may not fall below the function's provisioned concurrency (as
        // Lambda): the provisioned configurations' puts lock the same row.
        if let Some(n) = reserved {
            let provisioned: i64 = tx
                .query_one(
                    "SELECT CAST(COALESCE(SUM(requested), 0) AS BIGINT) \
                     FROM provisioned_concurrency WHERE function = ?1",
                    args![name.as_str()],
                )?
                .get(0)?;
            if i64::from(n) < provisioned {
                return Err(StoreError::Limit(format!(
                    "reserved concurrency {n} is below the {provisioned} provisioned for function \
                     {name}: lower or delete its provisioned concurrency configurations first"
                )));
            }
        }
        tx.execute(
            "UPDATE functions SET reserved_concurrency = ?2, updated_at = ?3 WHERE name = ?1",
            args![name.as_str(), reserved, &now_rfc3339()],
        )?;
        let f = get_function(&mut tx, name)?
            .ok_or_else(|| StoreError::FunctionNotFound(name.to_string()))?;
        tx.commit()?;
        Ok(f)
    }

    /// Deletes a function. Returns the deleted record.
    pub fn delete_function(&self, name: &FunctionName) -> Result<FunctionRecord, StoreError> {
        let mut db = self.db();
        let mut tx = db.transaction()?;
        let f = lock_function(&mut tx, name)?
            .ok_or_else(|| StoreError::FunctionNotFound(name.to_string()))?;
        tx.execute(
            "DELETE FROM functions WHERE name = ?1",
            args![name.as_str()],
        )?;
        crate::events::function_deleted(&mut tx, name.as_str())?;
        tx.commit()?;
        Ok(f)
    }

    /// Every code hash some function, version or layer version still points at, a
    /// function's or version's layers included (for garbage collection of packages), sorted.
    pub fn referenced_code(&self) -> Result<Vec<String>, StoreError> {
        referenced_code(&mut self.db())
    }
}

pub(crate) fn referenced_code(db: &mut Db<'_>) -> Result<Vec<String>, StoreError> {
    let mut out: std::collections::BTreeSet<String> = db
        .query_map(
            "SELECT code_sha256 FROM functions WHERE code_sha256 IS NOT NULL \
             UNION SELECT code_sha256 FROM function_versions \
             UNION SELECT code_sha256 FROM layer_versions",
            args![],
            |r| r.get::<String>(0),
        )?
        .into_iter()
        .collect();
    let lists: Vec<String> = db.query_map(
        "SELECT layers FROM functions WHERE layers <> '[]' \
         UNION SELECT layers FROM function_versions WHERE layers <> '[]'",
        args![],
        |r| r.get::<String>(0),
    )?;
    for list in lists {
        out.extend(layers_from_json(&list)?.into_iter().map(|l| l.code.sha256));
    }
    Ok(out.into_iter().collect())
}

/// Refuses a change to `f` unless it is at the `expected` revision.
pub(crate) fn check_revision(f: &FunctionRecord, expected: Option<u64>) -> Result<(), StoreError> {
    match expected {
        Some(e) if e != f.revision => Err(StoreError::RevisionMismatch {
            name: f.name.to_string(),
            expected: e,
            actual: f.revision,
        }),
        _ => Ok(()),
    }
}

pub(crate) fn get_function(
    db: &mut Db<'_>,
    name: &FunctionName,
) -> Result<Option<FunctionRecord>, StoreError> {
    db.query_opt(
        &format!("SELECT {FUNCTION_COLUMNS} FROM functions WHERE name = ?1"),
        args![name.as_str()],
    )?
    .map(|r| function_from_row(&r))
    .transpose()
}

/// [`get_function`] inside a transaction that changes the function or what hangs off it
/// (tags, versions, aliases, URLs, policies, configurations): on PostgreSQL the row stays
/// locked until the transaction ends, so such changes to one function are serialised as
/// SQLite's single writer serialises them, and what the transaction read (the revision, the
/// last version number, whether the function exists) still holds when it writes.
pub(crate) fn lock_function(
    db: &mut Db<'_>,
    name: &FunctionName,
) -> Result<Option<FunctionRecord>, StoreError> {
    let lock = db.dialect().for_update();
    db.query_opt(
        &format!("SELECT {FUNCTION_COLUMNS} FROM functions WHERE name = ?1{lock}"),
        args![name.as_str()],
    )?
    .map(|r| function_from_row(&r))
    .transpose()
}

pub(crate) fn corrupt(message: impl ToString) -> StoreError {
    StoreError::Corrupt {
        table: "functions",
        message: message.to_string(),
    }
}

pub(crate) fn function_from_row(row: &Row) -> Result<FunctionRecord, StoreError> {
    let name: String = row.get(0)?;
    let env: String = row.get(5)?;
    let sha: Option<String> = row.get(7)?;
    let size: Option<i64> = row.get(8)?;
    Ok(FunctionRecord {
        name: FunctionName::parse(&name).map_err(corrupt)?,
        runtime: Runtime::parse(&row.get::<String>(1)?).map_err(corrupt)?,
        handler: Handler::free_text(&row.get::<String>(2)?).map_err(corrupt)?,
        memory: MemoryMb::new(row.get(3)?).map_err(corrupt)?,
        timeout: TimeoutSecs::new(row.get(4)?).map_err(corrupt)?,
        environment: serde_json::from_str(&env).map_err(corrupt)?,
        description: row.get(6)?,
        code: sha.map(|sha256| CodeRef {
            sha256,
            size: size.unwrap_or(0) as u64,
        }),
        revision: row.get::<i64>(9)? as u64,
        created_at: row.get(10)?,
        updated_at: row.get(11)?,
        reserved_concurrency: row
            .get::<Option<i64>>(12)?
            .map(|n| u32::try_from(n).map_err(corrupt))
            .transpose()?,
        version: row
            .get::<Option<i64>>(13)?
            .map(|n| u64::try_from(n).map_err(corrupt))
            .transpose()?,
        network: row.get(14)?,
        ephemeral_mb: u32::try_from(row.get::<i64>(15)?).map_err(corrupt)?,
        layers: layers_from_json(&row.get::<String>(16)?)?,
        snap_start: SnapStart::parse(&row.get::<String>(17)?).map_err(corrupt)?,
    })
}
