//! Cluster membership: workers (address, capacity, a generation that fences a restarted or
//! lapsed worker, a lease on the database's clock and the status it writes with each renewal)
//! and API nodes (for `cluster status`).
//!
//! Every time here is epoch milliseconds on the database's clock: nodes compare leases with
//! the database's now, never with their own clocks. Written once for both backends
//! (`sql.rs`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::db::{Store, StoreError};
use crate::sql::{args, Row};

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

fn worker_row(r: &Row) -> Result<WorkerRow, StoreError> {
    let address: String = r.get(0)?;
    let json: String = r.get(7)?;
    let status = serde_json::from_str(&json).map_err(|e| StoreError::Corrupt {
        table: "workers",
        message: format!("status of worker {address}: {e}"),
    })?;
    Ok(WorkerRow {
        address,
        name: r.get(1)?,
        capacity: r.get::<i64>(2)?.max(0) as u64,
        generation: r.get::<i64>(3)?.max(0) as u64,
        lease_until_ms: r.get(4)?,
        started_at_ms: r.get(5)?,
        renewed_at_ms: r.get(6)?,
        status,
        now_ms: r.get(8)?,
    })
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
        let mut db = self.db();
        let now = db.dialect().now_ms();
        let mut tx = db.transaction()?;
        let generation: i64 = tx
            .query_one(
                &format!(
                    "INSERT INTO worker_generations (address, created_at) VALUES (?1, {now}) \
                     RETURNING generation"
                ),
                args![address],
            )?
            .get(0)?;
        let lease_until: i64 = tx
            .query_one(
                &format!(
                    "INSERT INTO workers ({WORKER_COLUMNS}) \
                 VALUES (?1, ?2, ?3, ?4, {now} + ?5, {now}, {now}, ?6) \
                 ON CONFLICT (address) DO UPDATE SET name = excluded.name, \
                     capacity = excluded.capacity, generation = excluded.generation, \
                     lease_until = excluded.lease_until, started_at = excluded.started_at, \
                     renewed_at = excluded.renewed_at, status = excluded.status \
                 RETURNING lease_until"
                ),
                args![
                    address,
                    name,
                    capacity,
                    generation,
                    ms(lease),
                    json.as_str()
                ],
            )?
            .get(0)?;
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
        let mut db = self.db();
        let now = db.dialect().now_ms();
        let row = db.query_opt(
            &format!(
                "UPDATE workers SET lease_until = {now} + ?3, renewed_at = {now}, status = ?4 \
                 WHERE address = ?1 AND generation = ?2 AND lease_until > {now} \
                 RETURNING lease_until"
            ),
            args![address, generation, ms(lease), json.as_str()],
        )?;
        row.map(|r| r.get(0)).transpose()
    }

    /// Ends the lease of `generation` at `address` now (a worker stopping cleanly), so API
    /// nodes stop routing to it at their next refresh instead of at the lease's end.
    pub fn release_worker(&self, address: &str, generation: u64) -> Result<bool, StoreError> {
        let mut db = self.db();
        let now = db.dialect().now_ms();
        let n = db.execute(
            &format!(
                "UPDATE workers SET lease_until = {now} \
                 WHERE address = ?1 AND generation = ?2 AND lease_until > {now}"
            ),
            args![address, generation],
        )?;
        Ok(n == 1)
    }

    /// The workers whose lease has not run out, by address.
    pub fn live_workers(&self) -> Result<Vec<WorkerRow>, StoreError> {
        self.select_workers(true)
    }

    /// Every worker ever registered (its latest generation), live or not, by address.
    pub fn all_workers(&self) -> Result<Vec<WorkerRow>, StoreError> {
        self.select_workers(false)
    }

    fn select_workers(&self, live_only: bool) -> Result<Vec<WorkerRow>, StoreError> {
        let mut db = self.db();
        let now = db.dialect().now_ms();
        let filter = if live_only {
            format!("WHERE lease_until > {now}")
        } else {
            String::new()
        };
        db.query_map(
            &format!("SELECT {WORKER_COLUMNS}, {now} FROM workers {filter} ORDER BY address"),
            args![],
            worker_row,
        )
    }

    /// Makes the worker `generation` at `address` the home of `function` (a function with
    /// reserved concurrency), unless another generation holds it and its lease has not run
    /// out. Answers whether `generation` holds it now.
    pub fn claim_home(
        &self,
        function: &str,
        address: &str,
        generation: u64,
    ) -> Result<bool, StoreError> {
        let mut db = self.db();
        let now = db.dialect().now_ms();
        let n = db.execute(
            &format!(
                "INSERT INTO function_homes (function, address, generation) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (function) DO UPDATE SET address = excluded.address, \
                     generation = excluded.generation \
                 WHERE function_homes.generation = excluded.generation \
                    OR NOT EXISTS (SELECT 1 FROM workers w \
                        WHERE w.generation = function_homes.generation \
                          AND w.lease_until > {now})"
            ),
            args![function, address, generation],
        )?;
        Ok(n == 1)
    }

    /// The homes held by live workers: (function, address, generation).
    pub fn live_homes(&self) -> Result<Vec<(String, String, u64)>, StoreError> {
        let mut db = self.db();
        let now = db.dialect().now_ms();
        db.query_map(
            &format!(
                "SELECT h.function, h.address, h.generation FROM function_homes h \
                 JOIN workers w ON w.generation = h.generation \
                 WHERE w.lease_until > {now}"
            ),
            args![],
            |r| Ok((r.get(0)?, r.get(1)?, r.get::<i64>(2)?.max(0) as u64)),
        )
    }

    /// Records that the API node `id` is up (inserted at its first call).
    pub fn touch_api_node(&self, id: &str, name: &str, address: &str) -> Result<(), StoreError> {
        let mut db = self.db();
        let now = db.dialect().now_ms();
        db.execute(
            &format!(
                "INSERT INTO api_nodes (id, name, address, started_at, last_seen) \
                 VALUES (?1, ?2, ?3, {now}, {now}) \
                 ON CONFLICT (id) DO UPDATE SET last_seen = {now}"
            ),
            args![id, name, address],
        )?;
        Ok(())
    }

    /// API nodes seen within `within`, newest first.
    pub fn api_nodes(&self, within: Duration) -> Result<Vec<ApiNodeRow>, StoreError> {
        let mut db = self.db();
        let now = db.dialect().now_ms();
        db.query_map(
            &format!(
                "SELECT id, name, address, started_at, last_seen, {now} FROM api_nodes \
                 WHERE last_seen > {now} - ?1 ORDER BY started_at DESC"
            ),
            args![ms(within)],
            |r| {
                Ok(ApiNodeRow {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    address: r.get(2)?,
                    started_at_ms: r.get(3)?,
                    last_seen_ms: r.get(4)?,
                    now_ms: r.get(5)?,
                })
            },
        )
    }
}
