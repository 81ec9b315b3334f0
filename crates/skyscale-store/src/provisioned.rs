//! Provisioned concurrency configurations: how many initialised sandboxes to keep ready for
//! a published version or an alias of a function, at most one per (function, qualifier).
//! Removed with their function (cascade), version or alias (in that delete's transaction).
//! Only what was asked for is stored; how far the keeper got is the core's live state.

use skyscale_types::FunctionName;

use crate::db::{Store, StoreError};
use crate::functions::lock_function;
use crate::now_rfc3339;
use crate::sql::{args, Db, Row};

/// A provisioned concurrency configuration as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionedConfigRecord {
    pub function: FunctionName,
    /// A published version's number or an alias name (never `$LATEST`).
    pub qualifier: String,
    /// Sandboxes to keep initialised (at least 1).
    pub requested: u32,
    /// When it was last put (RFC 3339).
    pub updated_at: String,
}

const COLUMNS: &str = "function, qualifier, requested, updated_at";

impl Store {
    /// Creates or replaces the configuration of `function`'s `qualifier`, which must be a
    /// published version or an alias of it (checked in the same transaction).
    pub fn put_provisioned_config(
        &self,
        function: &FunctionName,
        qualifier: &str,
        requested: u32,
    ) -> Result<ProvisionedConfigRecord, StoreError> {
        let mut db = self.db();
        let mut tx = db.transaction()?;
        // The function's row lock (PostgreSQL) keeps the version or alias checked below from
        // being deleted before this commits (see `lock_function`).
        if lock_function(&mut tx, function)?.is_none() {
            return Err(StoreError::FunctionNotFound(function.to_string()));
        }
        let exists: bool = match qualifier.parse::<u64>() {
            Ok(v) => tx
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM function_versions WHERE function = ?1 \
                     AND version = ?2)",
                    args![function.as_str(), v as i64],
                )?
                .get(0)?,
            Err(_) => tx
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM function_aliases WHERE function = ?1 \
                     AND name = ?2)",
                    args![function.as_str(), qualifier],
                )?
                .get(0)?,
        };
        if !exists {
            return Err(StoreError::NotFound(format!(
                "function {function}:{qualifier} not found"
            )));
        }
        tx.execute(
            "INSERT INTO provisioned_concurrency (function, qualifier, requested, updated_at) \
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT(function, qualifier) \
             DO UPDATE SET requested = excluded.requested, updated_at = excluded.updated_at",
            args![
                function.as_str(),
                qualifier,
                i64::from(requested),
                now_rfc3339()
            ],
        )?;
        let out = get(&mut tx, function, qualifier)?.ok_or_else(|| StoreError::Corrupt {
            table: "provisioned_concurrency",
            message: format!(
                "configuration of {function}:{qualifier} vanished inside its transaction"
            ),
        })?;
        tx.commit()?;
        Ok(out)
    }

    pub fn get_provisioned_config(
        &self,
        function: &FunctionName,
        qualifier: &str,
    ) -> Result<Option<ProvisionedConfigRecord>, StoreError> {
        get(&mut self.db(), function, qualifier)
    }

    /// A function's configurations, by qualifier.
    pub fn list_provisioned_configs(
        &self,
        function: &FunctionName,
    ) -> Result<Vec<ProvisionedConfigRecord>, StoreError> {
        self.db().query_map(
            &format!(
                "SELECT {COLUMNS} FROM provisioned_concurrency WHERE function = ?1 \
                 ORDER BY qualifier"
            ),
            args![function.as_str()],
            from_row,
        )
    }

    /// Every configuration of every function (the keeper's work), by function and qualifier.
    pub fn all_provisioned_configs(&self) -> Result<Vec<ProvisionedConfigRecord>, StoreError> {
        self.db().query_map(
            &format!("SELECT {COLUMNS} FROM provisioned_concurrency ORDER BY function, qualifier"),
            args![],
            from_row,
        )
    }

    /// Deletes a configuration; returns whether it existed.
    pub fn delete_provisioned_config(
        &self,
        function: &FunctionName,
        qualifier: &str,
    ) -> Result<bool, StoreError> {
        let changed = self.db().execute(
            "DELETE FROM provisioned_concurrency WHERE function = ?1 AND qualifier = ?2",
            args![function.as_str(), qualifier],
        )?;
        Ok(changed > 0)
    }
}

/// Deletes the configuration of `qualifier` inside a delete of its version or alias.
pub(crate) fn delete_in(
    db: &mut Db<'_>,
    function: &FunctionName,
    qualifier: &str,
) -> Result<(), StoreError> {
    db.execute(
        "DELETE FROM provisioned_concurrency WHERE function = ?1 AND qualifier = ?2",
        args![function.as_str(), qualifier],
    )?;
    Ok(())
}

fn get(
    db: &mut Db<'_>,
    function: &FunctionName,
    qualifier: &str,
) -> Result<Option<ProvisionedConfigRecord>, StoreError> {
    db.query_opt(
        &format!(
            "SELECT {COLUMNS} FROM provisioned_concurrency WHERE function = ?1 AND qualifier = ?2"
        ),
        args![function.as_str(), qualifier],
    )?
    .map(|r| from_row(&r))
    .transpose()
}

fn from_row(row: &Row) -> Result<ProvisionedConfigRecord, StoreError> {
    let bad = |m: String| StoreError::Corrupt {
        table: "provisioned_concurrency",
        message: m,
    };
    let requested: i64 = row.get(2)?;
    Ok(ProvisionedConfigRecord {
        function: FunctionName::parse(&row.get::<String>(0)?).map_err(|e| bad(e.to_string()))?,
        qualifier: row.get(1)?,
        requested: u32::try_from(requested)
            .map_err(|_| bad(format!("requested {requested} is out of range")))?,
        updated_at: row.get(3)?,
    })
}
