//! Tags of a function: key-value pairs, at most [`MAX_TAGS`] per function.

use std::collections::BTreeMap;

use skyscale_types::FunctionName;

use crate::db::{Store, StoreError};
use crate::functions::lock_function;
use crate::sql::args;

/// Most tags on one function, as in Lambda.
pub const MAX_TAGS: usize = 50;

impl Store {
    /// The function's tags (empty when it has none or does not exist).
    pub fn tags(&self, name: &FunctionName) -> Result<BTreeMap<String, String>, StoreError> {
        let rows = self.db().query_map(
            "SELECT key, value FROM function_tags WHERE function = ?1",
            args![name.as_str()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(rows.into_iter().collect())
    }

    /// Adds or replaces tags; refuses (changing nothing) when the function would end up
    /// with more than [`MAX_TAGS`]. The function's row is locked for the transaction
    /// (PostgreSQL): two concurrent taggings of one function count each other's tags.
    pub fn tag_function(
        &self,
        name: &FunctionName,
        tags: &BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        let mut db = self.db();
        let mut tx = db.transaction()?;
        if lock_function(&mut tx, name)?.is_none() {
            return Err(StoreError::FunctionNotFound(name.to_string()));
        }
        for (k, v) in tags {
            tx.execute(
                "INSERT INTO function_tags (function, key, value) VALUES (?1, ?2, ?3) \
                 ON CONFLICT(function, key) DO UPDATE SET value = excluded.value",
                args![name.as_str(), k, v],
            )?;
        }
        let n: i64 = tx
            .query_one(
                "SELECT COUNT(*) FROM function_tags WHERE function = ?1",
                args![name.as_str()],
            )?
            .get(0)?;
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
        let mut db = self.db();
        let mut tx = db.transaction()?;
        if lock_function(&mut tx, name)?.is_none() {
            return Err(StoreError::FunctionNotFound(name.to_string()));
        }
        for k in keys {
            tx.execute(
                "DELETE FROM function_tags WHERE function = ?1 AND key = ?2",
                args![name.as_str(), k],
            )?;
        }
        tx.commit()?;
        Ok(())
    }
}
