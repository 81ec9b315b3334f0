//! Function URL configurations: at most one per function and qualifier (`$LATEST` or an
//! alias), removed with their function or alias.

use skyscale_types::{Cors, FunctionName, UrlAuthType};

use crate::db::{Store, StoreError};
use crate::functions::lock_function;
use crate::now_rfc3339;
use crate::sql::{args, Db, Row};

/// A function URL's settings as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct UrlConfigRecord {
    pub function: FunctionName,
    /// The alias the URL invokes; `None` for `$LATEST`.
    pub alias: Option<String>,
    /// Random and unique: the event's `apiId`.
    pub url_id: String,
    pub auth_type: UrlAuthType,
    pub cors: Option<Cors>,
    pub invoke_mode: String,
    pub created_at: String,
    pub updated_at: String,
}

/// A partial update; `None` leaves a field as it is, `cors: Some(None)` removes CORS.
#[derive(Debug, Clone, Default)]
pub struct UrlConfigUpdate {
    pub auth_type: Option<UrlAuthType>,
    pub cors: Option<Option<Cors>>,
    pub invoke_mode: Option<String>,
}

const LATEST: &str = "$LATEST";
const COLUMNS: &str =
    "function, qualifier, url_id, auth_type, cors, invoke_mode, created_at, updated_at";

fn qualifier(alias: Option<&str>) -> &str {
    alias.unwrap_or(LATEST)
}

fn cors_json(cors: Option<&Cors>) -> Result<Option<String>, StoreError> {
    cors.map(serde_json::to_string)
        .transpose()
        .map_err(|e| StoreError::Corrupt {
            table: "function_urls",
            message: format!("serialising CORS: {e}"),
        })
}

impl Store {
    /// Creates the URL of `function` (or of its `alias`, which must exist).
    pub fn create_url_config(
        &self,
        function: &FunctionName,
        alias: Option<&str>,
        url_id: &str,
        auth_type: UrlAuthType,
        cors: Option<&Cors>,
        invoke_mode: &str,
    ) -> Result<UrlConfigRecord, StoreError> {
        let mut db = self.db();
        let mut tx = db.transaction()?;
        // The function's row lock (PostgreSQL) keeps the alias checked below from being
        // deleted before this commits (see `lock_function`).
        if lock_function(&mut tx, function)?.is_none() {
            return Err(StoreError::FunctionNotFound(function.to_string()));
        }
        if let Some(alias) = alias {
            let alias_exists: bool = tx.query_one("SELECT EXISTS (SELECT 1 FROM function_aliases WHERE function = ?1 AND name = ?2)", args![function.as_str(), alias])?.get(0)?;
            if !alias_exists {
                return Err(StoreError::NotFound(format!(
                    "alias {function}:{alias} not found"
                )));
            }
        }
        let now = now_rfc3339();
        let inserted = tx.execute(
            "INSERT INTO function_urls (function, qualifier, url_id, auth_type, cors, \
             invoke_mode, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7) \
             ON CONFLICT(function, qualifier) DO NOTHING",
            args![
                function.as_str(),
                qualifier(alias),
                url_id,
                auth_type.as_str(),
                cors_json(cors)?,
                invoke_mode,
                now,
            ],
        )?;
        if inserted == 0 {
            return Err(StoreError::Exists(format!(
                "function URL of {function}:{} already exists",
                qualifier(alias)
            )));
        }
        let out = get(&mut tx, function, alias)?.ok_or_else(|| vanished(function, alias))?;
        tx.commit()?;
        Ok(out)
    }

    pub fn get_url_config(
        &self,
        function: &FunctionName,
        alias: Option<&str>,
    ) -> Result<Option<UrlConfigRecord>, StoreError> {
        get(&mut self.db(), function, alias)
    }

    /// A function's URLs, `$LATEST`'s first, then by alias name.
    pub fn list_url_configs(
        &self,
        function: &FunctionName,
    ) -> Result<Vec<UrlConfigRecord>, StoreError> {
        let mut db = self.db();
        db.query_map(
            &format!(
                "SELECT {COLUMNS} FROM function_urls WHERE function = ?1 \
             ORDER BY qualifier != '{LATEST}', qualifier"
            ),
            args![function.as_str()],
            from_row,
        )
    }

    /// Applies a partial update; `None` when there is no such URL.
    pub fn update_url_config(
        &self,
        function: &FunctionName,
        alias: Option<&str>,
        u: &UrlConfigUpdate,
    ) -> Result<Option<UrlConfigRecord>, StoreError> {
        let mut db = self.db();
        let mut tx = db.transaction()?;
        // Serialises changes to one function's aliases, versions and URLs (PostgreSQL; see
        // `lock_function`).
        lock_function(&mut tx, function)?;
        let Some(mut c) = get(&mut tx, function, alias)? else {
            return Ok(None);
        };
        if let Some(a) = u.auth_type {
            c.auth_type = a;
        }
        if let Some(cors) = &u.cors {
            c.cors = cors.clone();
        }
        if let Some(m) = &u.invoke_mode {
            c.invoke_mode = m.clone();
        }
        tx.execute(
            "UPDATE function_urls SET auth_type = ?3, cors = ?4, invoke_mode = ?5, \
             updated_at = ?6 WHERE function = ?1 AND qualifier = ?2",
            args![
                function.as_str(),
                qualifier(alias),
                c.auth_type.as_str(),
                cors_json(c.cors.as_ref())?,
                c.invoke_mode,
                now_rfc3339(),
            ],
        )?;
        let out = get(&mut tx, function, alias)?.ok_or_else(|| vanished(function, alias))?;
        tx.commit()?;
        Ok(Some(out))
    }

    /// Deletes a URL; returns whether it existed.
    pub fn delete_url_config(
        &self,
        function: &FunctionName,
        alias: Option<&str>,
    ) -> Result<bool, StoreError> {
        let changed = self.db().execute(
            "DELETE FROM function_urls WHERE function = ?1 AND qualifier = ?2",
            args![function.as_str(), qualifier(alias)],
        )?;
        Ok(changed > 0)
    }
}

fn vanished(function: &FunctionName, alias: Option<&str>) -> StoreError {
    StoreError::Corrupt {
        table: "function_urls",
        message: format!(
            "function URL of {function}:{} vanished inside its transaction",
            qualifier(alias)
        ),
    }
}

fn get(
    db: &mut Db<'_>,
    function: &FunctionName,
    alias: Option<&str>,
) -> Result<Option<UrlConfigRecord>, StoreError> {
    db.query_opt(
        &format!("SELECT {COLUMNS} FROM function_urls WHERE function = ?1 AND qualifier = ?2"),
        args![function.as_str(), qualifier(alias)],
    )?
    .map(|r| from_row(&r))
    .transpose()
}

fn from_row(row: &Row) -> Result<UrlConfigRecord, StoreError> {
    let bad = |m: String| StoreError::Corrupt {
        table: "function_urls",
        message: m,
    };
    let q: String = row.get(1)?;
    let cors: Option<String> = row.get(4)?;
    Ok(UrlConfigRecord {
        function: FunctionName::parse(&row.get::<String>(0)?).map_err(|e| bad(e.to_string()))?,
        alias: (q != LATEST).then_some(q),
        url_id: row.get(2)?,
        auth_type: UrlAuthType::parse(&row.get::<String>(3)?).map_err(bad)?,
        cors: cors
            .map(|c| serde_json::from_str(&c))
            .transpose()
            .map_err(|e| bad(format!("CORS settings: {e}")))?,
        invoke_mode: row.get(5)?,
        created_at: row.get(6)?,
        updated_at: row.get(7)?,
    })
}
