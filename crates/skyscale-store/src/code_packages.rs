//! Code packages in the database, for a store shared by several hosts (PostgreSQL): an API
//! node stores an uploaded zip here (by its SHA-256) before any function or version row
//! references it, and a host that lacks a package fetches it from here, checks its hash and
//! unpacks it into its own package directory (`CodeStore`) on the cold-start path. On a
//! store of its own (SQLite) packages live in the data directory only and this table stays
//! empty.
//!
//! Removing: a package is deleted only when no function or version row references it and
//! its last upload is older than a grace (a layer version, or a function's
//! or version's layer, references a package as its own code does) ([`Store::collect_code_packages`]). Pins are local
//! to a host, so another host's upload between storing its package and committing its row
//! is protected by the grace, not by a pin.

use std::time::Duration;

use crate::db::{Store, StoreError};
use crate::sql::args;

impl Store {
    /// Stores a package's zip under its SHA-256 (hex, computed by the caller from `zip`).
    /// Storing it again (a new upload of the same bytes) restarts its grace. On the records
    /// connection: packages are megabytes, and must not hold up function lookups.
    pub fn put_code_package(&self, sha256: &str, zip: &[u8]) -> Result<(), StoreError> {
        let mut db = self.records_db();
        let now = db.dialect().now_ms();
        db.execute(
            &format!(
                "INSERT INTO code_packages (sha256, zip, size, stored_at) \
                 VALUES (?1, ?2, ?3, {now}) \
                 ON CONFLICT (sha256) DO UPDATE SET stored_at = {now}"
            ),
            args![sha256, zip, zip.len()],
        )?;
        Ok(())
    }

    /// A package's zip, as stored (the caller checks it against `sha256`).
    pub fn code_package(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.records_db()
            .query_opt(
                "SELECT zip FROM code_packages WHERE sha256 = ?1",
                args![sha256],
            )?
            .map(|r| r.get(0))
            .transpose()
    }

    /// Deletes the packages no function, version or layer version references (a function's
    /// layers included) whose last upload is older than `grace` (an upload whose row is not
    /// committed yet is younger). Returns how many.
    pub fn collect_code_packages(&self, grace: Duration) -> Result<usize, StoreError> {
        let grace = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
        let mut db = self.records_db();
        let now = db.dialect().now_ms();
        let old: Vec<String> = db.query_map(
            &format!("SELECT sha256 FROM code_packages WHERE stored_at < {now} - ?1"),
            args![grace],
            |r| r.get(0),
        )?;
        // Read after the candidates: a reference committed since is seen, and a package
        // uploaded again since is younger than the grace when it comes to its delete.
        let referenced = crate::functions::referenced_code(&mut db)?;
        let mut removed = 0;
        for sha in old {
            if referenced.binary_search(&sha).is_ok() {
                continue;
            }
            removed += db.execute(
                &format!("DELETE FROM code_packages WHERE sha256 = ?1 AND stored_at < {now} - ?2"),
                args![&sha, grace],
            )?;
        }
        Ok(removed)
    }

    /// The SHA-256 of every package in the database.
    pub fn code_packages(&self) -> Result<Vec<String>, StoreError> {
        self.records_db().query_map(
            "SELECT sha256 FROM code_packages ORDER BY sha256",
            args![],
            |r| r.get(0),
        )
    }
}
