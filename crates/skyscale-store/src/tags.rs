//! Tags of a function: key-value pairs, at most [`MAX_TAGS`] per function.

use std::collections::BTreeMap;

use rusqlite::{params, TransactionBehavior};
use skyscale_types::FunctionName;

use crate::db::{Store, StoreError};
use crate::functions::get_function;

/// Most tags on one function, as in Lambda.
pub const MAX_TAGS: usize = 50;

impl Store {
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
}
