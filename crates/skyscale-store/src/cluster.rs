//! Cluster membership: workers (address, capacity, a generation that fences a restarted or
//! lapsed worker, a lease on the database's clock and the status it writes with each renewal)
//! and API nodes (for `cluster status`).
//!
//! Every time here is epoch milliseconds on the database's clock: nodes compare leases with
//! the database's now, never with their own clocks.

use std::time::Duration;

use rusqlite::{params, OptionalExtension, TransactionBehavior};
use serde::{Deserialize, Serialize};

use crate::db::{Store, StoreError};

/// The database's clock in epoch milliseconds (SQL expression).
const NOW_MS: &str = "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)";

/// What a worker reports with each renewal (stored as JSON, read by API nodes' routing and
/// `cluster status`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerStatus {
    /// Sandboxes alive (generic, idle and busy).
    pub sandboxes: u64,
    /// Invocations running.
    pub busy: u64,
    /// The host's one-minute load average.
    pub load: f64,
    /// Idle warm sandboxes by function revision.
    #[serde(default)]
    pub warm: Vec<WarmKey>,
}

/// Idle sandboxes of one function revision and version on a worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WarmKey {
    pub function: String,
    pub revision: u64,
    /// `None`: `$LATEST`.
    pub version: Option<u64>,
    pub idle: u64,
}

/// One worker's row.
#[derive(Debug, Clone)]
pub struct WorkerRow {
    pub address: String,
    pub name: String,
    pub capacity: u64,
    pub generation: u64,
    pub lease_until_ms: i64,
    pub started_at_ms: i64,
    pub renewed_at_ms: i64,
    pub status: WorkerStatus,
    /// The database's now when the row was read.
    pub now_ms: i64,
}

impl WorkerRow {
    /// Its lease has not run out (at the time it was read).
    pub fn is_live(&self) -> bool {
        self.lease_until_ms > self.now_ms
    }
}

/// A registration: the worker's new generation and when its lease ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerLease {
    pub generation: u64,
    pub lease_until_ms: i64,
}

/// One API node's row.
#[derive(Debug, Clone)]
pub struct ApiNodeRow {
    pub id: String,
    pub name: String,
    pub address: String,
    pub started_at_ms: i64,
    pub last_seen_ms: i64,
    pub now_ms: i64,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn status_json(status: &WorkerStatus) -> Result<String, StoreError> {
    serde_json::to_string(status).map_err(|e| StoreError::Corrupt {
        table: "workers",
        message: format!("encoding a worker status: {e}"),
    })
}

const WORKER_COLUMNS: &str =
    "address, name, capacity, generation, lease_until, started_at, renewed_at, status";

fn worker_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(WorkerRow, String)> {
    Ok((
        WorkerRow {
            address: r.get(0)?,
            name: r.get(1)?,
            capacity: r.get::<_, i64>(2)?.max(0) as u64,
            generation: r.get::<_, i64>(3)?.max(0) as u64,
            lease_until_ms: r.get(4)?,
            started_at_ms: r.get(5)?,
            renewed_at_ms: r.get(6)?,
            status: WorkerStatus::default(),
            now_ms: r.get(8)?,
        },
        r.get(7)?,
    ))
}

fn with_status((mut row, json): (WorkerRow, String)) -> Result<WorkerRow, StoreError> {
    row.status = serde_json::from_str(&json).map_err(|e| StoreError::Corrupt {
        table: "workers",
        message: format!("status of worker {}: {e}", row.address),
    })?;
    Ok(row)
}

impl Store {
    /// Registers the worker at `address` under a new generation (strictly greater than any
    /// handed out before) with a lease of `lease` from the database's now. A previous
    /// generation at the same address is replaced: its renewals fail from now on.
    pub fn register_worker(
        &self,
        address: &str,
        name: &str,
        capacity: u64,
        lease: Duration,
        status: &WorkerStatus,
    ) -> Result<WorkerLease, StoreError> {
        let json = status_json(status)?;
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            &format!("INSERT INTO worker_generations (address, created_at) VALUES (?1, {NOW_MS})"),
            params![address],
        )?;
        let generation = tx.last_insert_rowid();
        let lease_until: i64 = tx.query_row(
            &format!(
                "INSERT INTO workers ({WORKER_COLUMNS}) \
                 VALUES (?1, ?2, ?3, ?4, {NOW_MS} + ?5, {NOW_MS}, {NOW_MS}, ?6) \
                 ON CONFLICT (address) DO UPDATE SET name = excluded.name, \
                     capacity = excluded.capacity, generation = excluded.generation, \
                     lease_until = excluded.lease_until, started_at = excluded.started_at, \
                     renewed_at = excluded.renewed_at, status = excluded.status \
                 RETURNING lease_until"
            ),
            params![
                address,
                name,
                i64::try_from(capacity).unwrap_or(i64::MAX),
                generation,
                ms(lease),
                json
            ],
            |r| r.get(0),
        )?;
        tx.commit()?;
        Ok(WorkerLease {
            generation: generation.max(0) as u64,
            lease_until_ms: lease_until,
        })
    }

    /// Extends the lease of `generation` at `address` to `lease` from the database's now and
    /// stores its status, if that lease has not run out yet. `None`: it had (or another
    /// generation replaced it): the worker must fence itself and register again.
    pub fn renew_worker(
        &self,
        address: &str,
        generation: u64,
        lease: Duration,
        status: &WorkerStatus,
    ) -> Result<Option<i64>, StoreError> {
        let json = status_json(status)?;
        let conn = self.conn();
        let until = conn
            .query_row(
                &format!(
                    "UPDATE workers SET lease_until = {NOW_MS} + ?3, renewed_at = {NOW_MS}, \
                         status = ?4 \
                     WHERE address = ?1 AND generation = ?2 AND lease_until > {NOW_MS} \
                     RETURNING lease_until"
                ),
                params![
                    address,
                    i64::try_from(generation).unwrap_or(i64::MAX),
                    ms(lease),
                    json
                ],
                |r| r.get(0),
            )
            .optional()?;
        Ok(until)
    }

    /// Ends the lease of `generation` at `address` now (a worker stopping cleanly), so API
    /// nodes stop routing to it at their next refresh instead of at the lease's end.
    pub fn release_worker(&self, address: &str, generation: u64) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            &format!(
                "UPDATE workers SET lease_until = {NOW_MS} \
                 WHERE address = ?1 AND generation = ?2 AND lease_until > {NOW_MS}"
            ),
            params![address, i64::try_from(generation).unwrap_or(i64::MAX)],
        )?;
        Ok(n == 1)
    }

    /// The workers whose lease has not run out, by address.
    pub fn live_workers(&self) -> Result<Vec<WorkerRow>, StoreError> {
        self.select_workers(&format!("WHERE lease_until > {NOW_MS}"))
    }

    /// Every worker ever registered (its latest generation), live or not, by address.
    pub fn all_workers(&self) -> Result<Vec<WorkerRow>, StoreError> {
        self.select_workers("")
    }

    fn select_workers(&self, filter: &str) -> Result<Vec<WorkerRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {WORKER_COLUMNS}, {NOW_MS} FROM workers {filter} ORDER BY address"
        ))?;
        let rows = stmt
            .query_map([], worker_row)?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter().map(with_status).collect()
    }

    /// Records that the API node `id` is up (inserted at its first call).
    pub fn touch_api_node(&self, id: &str, name: &str, address: &str) -> Result<(), StoreError> {
        self.conn().execute(
            &format!(
                "INSERT INTO api_nodes (id, name, address, started_at, last_seen) \
                 VALUES (?1, ?2, ?3, {NOW_MS}, {NOW_MS}) \
                 ON CONFLICT (id) DO UPDATE SET last_seen = {NOW_MS}"
            ),
            params![id, name, address],
        )?;
        Ok(())
    }

    /// API nodes seen within `within`, newest first.
    pub fn api_nodes(&self, within: Duration) -> Result<Vec<ApiNodeRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT id, name, address, started_at, last_seen, {NOW_MS} FROM api_nodes \
             WHERE last_seen > {NOW_MS} - ?1 ORDER BY started_at DESC"
        ))?;
        let rows = stmt
            .query_map(params![ms(within)], |r| {
                Ok(ApiNodeRow {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    address: r.get(2)?,
                    started_at_ms: r.get(3)?,
                    last_seen_ms: r.get(4)?,
                    now_ms: r.get(5)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite")).unwrap();
        (dir, store)
    }

    #[test]
    fn generations_only_grow_and_fence_the_old_one() {
        let (_d, s) = store();
        let status = WorkerStatus {
            sandboxes: 2,
            busy: 1,
            load: 0.5,
            warm: vec![WarmKey {
                function: "f".into(),
                revision: 3,
                version: None,
                idle: 1,
            }],
        };
        let lease = Duration::from_secs(3);
        let a = s
            .register_worker("127.0.0.2:9000", "a", 8, lease, &status)
            .unwrap();
        let b = s
            .register_worker("127.0.0.3:9000", "b", 8, lease, &status)
            .unwrap();
        assert!(b.generation > a.generation);
        assert!(s
            .renew_worker("127.0.0.2:9000", a.generation, lease, &status)
            .unwrap()
            .is_some());
        // A restart at the same address: a new generation; the old one can no longer renew.
        let a2 = s
            .register_worker("127.0.0.2:9000", "a", 8, lease, &WorkerStatus::default())
            .unwrap();
        assert!(a2.generation > b.generation);
        assert_eq!(
            s.renew_worker("127.0.0.2:9000", a.generation, lease, &status)
                .unwrap(),
            None
        );
        let live = s.live_workers().unwrap();
        assert_eq!(live.len(), 2);
        assert_eq!(live[0].generation, a2.generation);
        assert_eq!(live[1].status, status);
        assert!(live.iter().all(WorkerRow::is_live));
        // A released lease is over: not live, and it cannot be renewed.
        assert!(s.release_worker("127.0.0.3:9000", b.generation).unwrap());
        assert_eq!(s.live_workers().unwrap().len(), 1);
        assert_eq!(
            s.renew_worker("127.0.0.3:9000", b.generation, lease, &status)
                .unwrap(),
            None
        );
        assert_eq!(s.all_workers().unwrap().len(), 2);
    }

    #[test]
    fn a_lapsed_lease_cannot_be_renewed() {
        let (_d, s) = store();
        let st = WorkerStatus::default();
        let w = s
            .register_worker("127.0.0.2:9000", "a", 1, Duration::from_millis(20), &st)
            .unwrap();
        std::thread::sleep(Duration::from_millis(60));
        assert!(s.live_workers().unwrap().is_empty());
        assert_eq!(
            s.renew_worker("127.0.0.2:9000", w.generation, Duration::from_secs(3), &st)
                .unwrap(),
            None
        );
    }

    #[test]
    fn api_nodes_are_listed_while_seen() {
        let (_d, s) = store();
        s.touch_api_node("n1", "host-a", "127.0.0.1:8080").unwrap();
        s.touch_api_node("n1", "host-a", "127.0.0.1:8080").unwrap();
        s.touch_api_node("n2", "host-b", "127.0.0.1:8081").unwrap();
        let nodes = s.api_nodes(Duration::from_secs(10)).unwrap();
        assert_eq!(nodes.len(), 2);
        assert!(nodes.iter().all(|n| n.last_seen_ms <= n.now_ms));
    }
}
