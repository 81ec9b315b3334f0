//! Aliases: a name for `$LATEST` or a published version, with optional weighted routing;
//! deleting one removes its function URL and policy statements.

use skyscale_types::FunctionName;

use crate::db::{Store, StoreError};
use crate::functions::get_function;
use crate::functions::lock_function;
use crate::now_rfc3339;
use crate::sql::{args, Db, Row};

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

impl Store {
    /// Creates an alias; the function must exist (the caller checked its versions).
    pub fn create_alias(
        &self,
        function: &FunctionName,
        name: &str,
        version: Option<u64>,
        description: &str,
        routing: Option<(u64, f64)>,
    ) -> Result<AliasRecord, StoreError> {
        let mut db = self.db();
        if get_function(&mut db, function)?.is_none() {
            return Err(StoreError::FunctionNotFound(function.to_string()));
        }
        let now = now_rfc3339();
        let inserted = db.execute(
            "INSERT INTO function_aliases (function, name, version, description, extra_version, \
             extra_weight, revision, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7, ?7) ON CONFLICT(function, name) DO NOTHING",
            args![
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
        get_alias(&mut db, function, name)?.ok_or_else(|| StoreError::Corrupt {
            table: "function_aliases",
            message: format!("alias {function}:{name} vanished after insert"),
        })
    }

    pub fn get_alias(
        &self,
        function: &FunctionName,
        name: &str,
    ) -> Result<Option<AliasRecord>, StoreError> {
        get_alias(&mut self.db(), function, name)
    }

    /// A function's aliases by name.
    pub fn list_aliases(&self, function: &FunctionName) -> Result<Vec<AliasRecord>, StoreError> {
        let mut db = self.db();
        db.query_map(
            &format!(
                "SELECT {ALIAS_COLUMNS} FROM function_aliases WHERE function = ?1 ORDER BY name"
            ),
            args![function.as_str()],
            alias_from_row,
        )
    }

    /// Applies a partial update; `None` when the alias does not exist.
    pub fn update_alias(
        &self,
        function: &FunctionName,
        name: &str,
        u: &AliasUpdate,
    ) -> Result<Option<AliasRecord>, StoreError> {
        let mut db = self.db();
        let mut tx = db.transaction()?;
        // Serialises changes to one function's aliases, versions and URLs (PostgreSQL; see
        // `lock_function`).
        lock_function(&mut tx, function)?;
        let Some(mut a) = get_alias(&mut tx, function, name)? else {
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
            args![
                function.as_str(),
                name,
                a.version.map(|v| v as i64),
                a.description,
                a.routing.map(|(v, _)| v as i64),
                a.routing.map(|(_, w)| w),
                now_rfc3339(),
            ],
        )?;
        let out = get_alias(&mut tx, function, name)?;
        tx.commit()?;
        Ok(out)
    }

    /// Deletes an alias, its function URL, its policy statements and its provisioned
    /// concurrency configuration; returns whether the alias existed.
    pub fn delete_alias(&self, function: &FunctionName, name: &str) -> Result<bool, StoreError> {
        let mut db = self.db();
        let mut tx = db.transaction()?;
        // Serialises changes to one function's aliases, versions and URLs (PostgreSQL; see
        // `lock_function`).
        lock_function(&mut tx, function)?;
        let changed = tx.execute(
            "DELETE FROM function_aliases WHERE function = ?1 AND name = ?2",
            args![function.as_str(), name],
        )?;
        tx.execute(
            "DELETE FROM function_urls WHERE function = ?1 AND qualifier = ?2",
            args![function.as_str(), name],
        )?;
        tx.execute(
            "DELETE FROM function_policies WHERE function = ?1 AND qualifier = ?2",
            args![function.as_str(), name],
        )?;
        crate::provisioned::delete_in(&mut tx, function, name)?;
        tx.commit()?;
        Ok(changed > 0)
    }
}

fn get_alias(
    db: &mut Db<'_>,
    function: &FunctionName,
    name: &str,
) -> Result<Option<AliasRecord>, StoreError> {
    db.query_opt(
        &format!("SELECT {ALIAS_COLUMNS} FROM function_aliases WHERE function = ?1 AND name = ?2"),
        args![function.as_str(), name],
    )?
    .map(|r| alias_from_row(&r))
    .transpose()
}

fn alias_from_row(row: &Row) -> Result<AliasRecord, StoreError> {
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
        function: FunctionName::parse(&row.get::<String>(0)?).map_err(|e| bad(e.to_string()))?,
        name: row.get(1)?,
        version: row
            .get::<Option<i64>>(2)?
            .map(|v| u64::try_from(v).map_err(|e| bad(e.to_string())))
            .transpose()?,
        description: row.get(3)?,
        routing,
        revision: number(6)?,
        created_at: row.get(7)?,
        updated_at: row.get(8)?,
    })
}
