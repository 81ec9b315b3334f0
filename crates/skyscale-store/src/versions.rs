//! Published versions: immutable snapshots of `$LATEST`, numbered per function.

use skyscale_types::FunctionName;

use crate::db::{Store, StoreError};
use crate::functions::{check_revision, corrupt, function_from_row, lock_function, FunctionRecord};
use crate::now_rfc3339;
use crate::sql::{args, Db};

/// A version row in the shape of `FUNCTION_COLUMNS` (functions.rs): its own timestamp, no
/// reservation.
const VERSION_COLUMNS: &str = "function, runtime, handler, memory_mb, timeout_s, environment, \
     description, code_sha256, code_size, revision, created_at, created_at, NULL, version, \
     network, ephemeral_mb, layers, snap_start";

impl Store {
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
        let mut db = self.db();
        let mut tx = db.transaction()?;
        // Locked (PostgreSQL): the revision checked and the last version number read hold
        // until the commit, so two publishes never take the same number.
        let f = lock_function(&mut tx, name)?
            .ok_or_else(|| StoreError::FunctionNotFound(name.to_string()))?;
        check_revision(&f, expected)?;
        let Some(code) = &f.code else {
            return Err(StoreError::Limit(format!(
                "function {name} has no code to publish"
            )));
        };
        let newest: Option<i64> = tx
            .query_one(
                "SELECT MAX(version) FROM function_versions WHERE function = ?1",
                args![name.as_str()],
            )?
            .get(0)?;
        if let Some(n) = newest {
            if let Some(v) = get_version(&mut tx, name, n as u64)? {
                let same = v.code == f.code
                    && v.runtime == f.runtime
                    && v.handler == f.handler
                    && v.memory == f.memory
                    && v.timeout == f.timeout
                    && v.environment == f.environment
                    && v.layers == f.layers
                    && v.snap_start == f.snap_start;
                if same {
                    return Ok((v, false));
                }
            }
        }
        let last: i64 = tx
            .query_one(
                "SELECT last_version FROM functions WHERE name = ?1",
                args![name.as_str()],
            )?
            .get(0)?;
        let n = last + 1;
        let env = serde_json::to_string(&f.environment).map_err(corrupt)?;
        tx.execute(
            "INSERT INTO function_versions (function, version, runtime, handler, memory_mb, \
             timeout_s, environment, description, code_sha256, code_size, revision, created_at, \
             network, ephemeral_mb, layers, snap_start) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
            args![
                name.as_str(),
                n,
                f.runtime.as_str(),
                f.handler.as_str(),
                f.memory.get(),
                f.timeout.get(),
                env,
                description.unwrap_or(&f.description),
                &code.sha256,
                code.size as i64,
                f.revision as i64,
                now_rfc3339(),
                f.network,
                f.ephemeral_mb,
                crate::layers::layers_to_json(&f.layers)?,
                f.snap_start.as_str(),
            ],
        )?;
        tx.execute(
            "UPDATE functions SET last_version = ?2 WHERE name = ?1",
            args![name.as_str(), n],
        )?;
        let v = get_version(&mut tx, name, n as u64)?.ok_or_else(|| StoreError::Corrupt {
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
        get_version(&mut self.db(), name, version)
    }

    /// Every published version of a function, oldest first.
    pub fn list_versions(&self, name: &FunctionName) -> Result<Vec<FunctionRecord>, StoreError> {
        let mut db = self.db();
        db.query_map(
            &format!(
                "SELECT {VERSION_COLUMNS} FROM function_versions WHERE function = ?1 \
             ORDER BY version"
            ),
            args![name.as_str()],
            function_from_row,
        )
    }

    /// Deletes one published version; returns whether it existed. A version an alias
    /// points at stays (`InUse`).
    pub fn delete_version(&self, name: &FunctionName, version: u64) -> Result<bool, StoreError> {
        let mut db = self.db();
        let mut tx = db.transaction()?;
        // Serialised with alias changes of the function (see `lock_function`).
        lock_function(&mut tx, name)?;
        let alias: Option<String> = tx
            .query_opt(
                "SELECT name FROM function_aliases WHERE function = ?1 \
                 AND (version = ?2 OR extra_version = ?2) ORDER BY name LIMIT 1",
                args![name.as_str(), version as i64],
            )?
            .map(|r| r.get(0))
            .transpose()?;
        if let Some(alias) = alias {
            return Err(StoreError::InUse(format!(
                "version {version} of {name} cannot be deleted: alias {alias} refers to it"
            )));
        }
        let changed = tx.execute(
            "DELETE FROM function_versions WHERE function = ?1 AND version = ?2",
            args![name.as_str(), version as i64],
        )?;
        tx.execute(
            "DELETE FROM function_policies WHERE function = ?1 AND qualifier = ?2",
            args![name.as_str(), version.to_string()],
        )?;
        crate::provisioned::delete_in(&mut tx, name, &version.to_string())?;
        tx.commit()?;
        Ok(changed > 0)
    }
}

fn get_version(
    db: &mut Db<'_>,
    name: &FunctionName,
    version: u64,
) -> Result<Option<FunctionRecord>, StoreError> {
    db.query_opt(
        &format!(
            "SELECT {VERSION_COLUMNS} FROM function_versions WHERE function = ?1 AND version = ?2"
        ),
        args![name.as_str(), version as i64],
    )?
    .map(|r| function_from_row(&r))
    .transpose()
}
