//! Resource-based policy statements of functions (Lambda's AddPermission / GetPolicy /
//! RemovePermission), removed with their function, alias or version.

use skyscale_types::FunctionName;

use crate::db::{Store, StoreError};
use crate::functions::lock_function;
use crate::now_rfc3339;
use crate::sql::{args, Row};

/// Most statements one function (with all its qualifiers) may hold: Lambda bounds a policy
/// at 20 KB, which is about this many statements.
pub const MAX_STATEMENTS: usize = 100;

/// One statement as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyStatement {
    pub function: FunctionName,
    /// The alias or version it applies to; `None` for the function itself.
    pub qualifier: Option<String>,
    pub statement_id: String,
    pub action: String,
    pub principal: String,
    pub source_arn: Option<String>,
    pub source_account: Option<String>,
    pub principal_org_id: Option<String>,
    pub url_auth_type: Option<String>,
    pub created_at: String,
}

const COLUMNS: &str = "function, qualifier, statement_id, action, principal, source_arn, \
     source_account, principal_org_id, url_auth_type, created_at";

fn from_row(r: &Row, function: &FunctionName) -> Result<PolicyStatement, StoreError> {
    let qualifier: String = r.get(1)?;
    Ok(PolicyStatement {
        function: function.clone(),
        qualifier: (!qualifier.is_empty()).then_some(qualifier),
        statement_id: r.get(2)?,
        action: r.get(3)?,
        principal: r.get(4)?,
        source_arn: r.get(5)?,
        source_account: r.get(6)?,
        principal_org_id: r.get(7)?,
        url_auth_type: r.get(8)?,
        created_at: r.get(9)?,
    })
}

impl Store {
    /// Adds a statement; the function must exist and the statement id be new for its
    /// qualifier. `statement.created_at` is set here.
    pub fn add_policy_statement(
        &self,
        statement: &PolicyStatement,
    ) -> Result<PolicyStatement, StoreError> {
        let mut db = self.db();
        let mut tx = db.transaction()?;
        let function = statement.function.as_str();
        // The function's row lock (PostgreSQL) serialises the count and the id check below
        // with other additions to the same policy.
        if lock_function(&mut tx, &statement.function)?.is_none() {
            return Err(StoreError::FunctionNotFound(function.to_owned()));
        }
        let count: i64 = tx
            .query_one(
                "SELECT COUNT(*) FROM function_policies WHERE function = ?1",
                args![function],
            )?
            .get(0)?;
        if count as usize >= MAX_STATEMENTS {
            return Err(StoreError::Limit(format!(
                "function {function} has {MAX_STATEMENTS} policy statements: the most allowed"
            )));
        }
        let qualifier = statement.qualifier.as_deref().unwrap_or("");
        let taken: bool = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM function_policies WHERE function = ?1 \
             AND qualifier = ?2 AND statement_id = ?3)",
                args![function, qualifier, &statement.statement_id],
            )?
            .get(0)?;
        if taken {
            return Err(StoreError::Exists(format!(
                "the statement id {} is already used in the policy of {function}",
                statement.statement_id
            )));
        }
        let mut stored = statement.clone();
        stored.created_at = now_rfc3339();
        tx.execute(
            &format!("INSERT INTO function_policies ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
            args![
                function,
                qualifier,
                &stored.statement_id,
                &stored.action,
                &stored.principal,
                &stored.source_arn,
                &stored.source_account,
                &stored.principal_org_id,
                &stored.url_auth_type,
                &stored.created_at,
            ],
        )?;
        tx.commit()?;
        Ok(stored)
    }

    /// Removes a statement; returns whether it existed.
    pub fn remove_policy_statement(
        &self,
        function: &FunctionName,
        qualifier: Option<&str>,
        statement_id: &str,
    ) -> Result<bool, StoreError> {
        let mut db = self.db();
        let changed = db.execute(
            "DELETE FROM function_policies WHERE function = ?1 AND qualifier = ?2 \
             AND statement_id = ?3",
            args![function.as_str(), qualifier.unwrap_or(""), statement_id],
        )?;
        Ok(changed > 0)
    }

    /// Every statement of a function (all qualifiers), oldest first.
    pub fn policy_statements(
        &self,
        function: &FunctionName,
    ) -> Result<Vec<PolicyStatement>, StoreError> {
        self.db().query_map(
            &format!(
                "SELECT {COLUMNS} FROM function_policies WHERE function = ?1 \
                 ORDER BY created_at, statement_id"
            ),
            args![function.as_str()],
            |r| from_row(r, function),
        )
    }
}
