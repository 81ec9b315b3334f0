//! The audit log: one row per management action (who, when, what, about which function or
//! key, and how it ended). Rows are only ever appended.

use crate::db::{Store, StoreError};
use crate::now_rfc3339;
use crate::sql::args;

/// Longest target and detail kept; longer ones are cut (on a character boundary).
const MAX_TARGET: usize = 256;
const MAX_DETAIL: usize = 1024;

/// One entry to append; the store stamps the time.
#[derive(Debug, Clone)]
pub struct NewAuditEntry<'a> {
    pub key_id: Option<&'a str>,
    pub action: &'a str,
    pub target: &'a str,
    pub outcome: &'a str,
    pub detail: &'a str,
}

/// An entry as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub id: u64,
    pub time: String,
    pub key_id: Option<String>,
    pub action: String,
    pub target: String,
    pub outcome: String,
    pub detail: String,
}

fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl Store {
    pub fn append_audit(&self, e: &NewAuditEntry<'_>) -> Result<(), StoreError> {
        self.db().execute(
            "INSERT INTO audit_log (time, key_id, action, target, outcome, detail) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            args![
                &now_rfc3339(),
                e.key_id,
                e.action,
                cut(e.target, MAX_TARGET),
                e.outcome,
                cut(e.detail, MAX_DETAIL),
            ],
        )?;
        Ok(())
    }

    /// The newest `limit` entries, newest first; with `since` (a timestamp in the stored
    /// format) only those at or after it.
    pub fn audit_entries(
        &self,
        limit: usize,
        since: Option<&str>,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        self.db().query_map(
            "SELECT id, time, key_id, action, target, outcome, detail FROM audit_log \
             WHERE CAST(?1 AS TEXT) IS NULL OR time >= ?1 ORDER BY id DESC LIMIT ?2",
            args![since, limit],
            |r| {
                Ok(AuditRecord {
                    id: r.get::<i64>(0)?.max(0) as u64,
                    time: r.get(1)?,
                    key_id: r.get(2)?,
                    action: r.get(3)?,
                    target: r.get(4)?,
                    outcome: r.get(5)?,
                    detail: r.get(6)?,
                })
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_on_character_boundaries() {
        assert_eq!(cut("abc", 5), "abc");
        assert_eq!(cut("abcdef", 3), "abc");
        assert_eq!(cut("aé", 2), "a");
    }
}
