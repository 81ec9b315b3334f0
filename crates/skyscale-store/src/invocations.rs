//! Invocation records (one row per invocation) and their logs (one row per invocation that
//! printed anything, with its size). Both are written in batches by one writer, read by
//! request id or by function, and pruned oldest first: by age, by the total size of the
//! logs and by the number of records. They live on the store's second connection.

use std::time::{Duration, SystemTime};

use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};
use skyscale_types::invocation::{InvocationStatus, Trigger};
use skyscale_types::time::{epoch_ms, from_epoch_ms};

use crate::db::{Store, StoreError};

/// One invocation's record: who ran what, how it ended and what it cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvocationRecord {
    pub request_id: String,
    pub function: String,
    /// `$LATEST` or a published version's number.
    pub version: String,
    /// The key that invoked it; `None` for a public function URL.
    pub caller: Option<String>,
    pub trigger: Trigger,
    /// Stored to the millisecond.
    pub started_at: SystemTime,
    pub ended_at: SystemTime,
    pub status: InvocationStatus,
    /// e.g. `ValueError`, `Sandbox.Timedout`, `Runtime.ExitError`, or the throttle's reason.
    pub error_type: Option<String>,
    pub cold_start: bool,
    /// From the request's acceptance until the control plane asked for a sandbox (an
    /// `Event` invocation's time in the background queue; a lookup for a synchronous one).
    /// Durations are stored to the microsecond.
    pub queue_wait: Duration,
    /// Cold starts: getting a sandbox ready.
    pub init_duration: Option<Duration>,
    /// Running the handler.
    pub duration: Duration,
    /// Peak memory of the sandbox's processes during the invocation, MiB.
    pub max_memory_used_mb: u64,
    pub memory_size_mb: u32,
    pub response_bytes: u64,
    /// The asynchronous event this invocation was an attempt of, and which attempt (1…).
    pub event: Option<(String, u32)>,
}

/// The logs of one invocation: what it printed, framed by `START` … `END` … `REPORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// Increases with every log written: the order they were written in.
    pub id: u64,
    pub request_id: String,
    pub function: String,
    /// When the invocation started (to the millisecond).
    pub started_at: SystemTime,
    /// Size of `text` in bytes.
    pub bytes: u64,
    pub text: String,
}

/// Which records to list: those of one function, newest first.
#[derive(Debug, Clone, Default)]
pub struct InvocationQuery<'a> {
    pub function: &'a str,
    pub status: Option<InvocationStatus>,
    /// Only those that started at or after this.
    pub since: Option<SystemTime>,
    pub limit: usize,
}

/// Which logs to read: those of one function (or of one of its invocations).
#[derive(Debug, Clone, Default)]
pub struct LogQuery<'a> {
    pub function: &'a str,
    pub request_id: Option<&'a str>,
    /// Only those of invocations that started at or after this.
    pub since: Option<SystemTime>,
    /// The newest this many.
    pub limit: usize,
    /// And only as many of those as fit in this many bytes (the newest always comes);
    /// 0: no such bound.
    pub max_bytes: u64,
}

/// Logs read, oldest first, and the id of the newest log stored when they were read (0
/// when there is none): a follower skips what is at or below it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogPage {
    pub entries: Vec<LogEntry>,
    pub last_id: u64,
}

/// How much is stored, or how much a prune removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordTotals {
    pub records: u64,
    pub logs: u64,
    pub log_bytes: u64,
}

const COLUMNS: &str = "request_id, function, version, caller, trigger, started_at, ended_at, \
     status, error_type, cold_start, queue_wait_us, init_duration_us, duration_us, \
     max_memory_used_mb, memory_size_mb, response_bytes, event_id, attempt";

const LOG_COLUMNS: &str = "id, request_id, function, started_at, bytes, text";

fn u(v: i64) -> u64 {
    v.max(0) as u64
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn ms(t: SystemTime) -> i64 {
    i(epoch_ms(t))
}

fn time(ms: i64) -> SystemTime {
    from_epoch_ms(u(ms))
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

fn duration(us: i64) -> Duration {
    Duration::from_micros(u(us))
}

/// A stored enum's text that this build does not know (a newer build wrote it).
fn unknown(column: usize, what: &str, value: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        column,
        rusqlite::types::Type::Text,
        format!("unknown {what} {value:?}").into(),
    )
}

fn row(r: &Row<'_>) -> rusqlite::Result<InvocationRecord> {
    let trigger: String = r.get(4)?;
    let status: String = r.get(7)?;
    Ok(InvocationRecord {
        request_id: r.get(0)?,
        function: r.get(1)?,
        version: r.get(2)?,
        caller: r.get(3)?,
        trigger: Trigger::parse(&trigger).ok_or_else(|| unknown(4, "trigger", &trigger))?,
        started_at: time(r.get(5)?),
        ended_at: time(r.get(6)?),
        status: InvocationStatus::parse(&status).ok_or_else(|| unknown(7, "status", &status))?,
        error_type: r.get(8)?,
        cold_start: r.get(9)?,
        queue_wait: duration(r.get(10)?),
        init_duration: r.get::<_, Option<i64>>(11)?.map(duration),
        duration: duration(r.get(12)?),
        max_memory_used_mb: u(r.get(13)?),
        memory_size_mb: u32::try_from(r.get::<_, i64>(14)?).unwrap_or(0),
        response_bytes: u(r.get(15)?),
        event: match (
            r.get::<_, Option<String>>(16)?,
            r.get::<_, Option<i64>>(17)?,
        ) {
            (Some(id), Some(n)) => Some((id, u32::try_from(n.max(0)).unwrap_or(u32::MAX))),
            _ => None,
        },
    })
}

fn log_row(r: &Row<'_>) -> rusqlite::Result<LogEntry> {
    Ok(LogEntry {
        id: u(r.get(0)?),
        request_id: r.get(1)?,
        function: r.get(2)?,
        started_at: time(r.get(3)?),
        bytes: u(r.get(4)?),
        text: r.get(5)?,
    })
}

fn last_log_id(conn: &Connection) -> rusqlite::Result<u64> {
    conn.query_row(
        "SELECT COALESCE(MAX(id), 0) FROM invocation_logs",
        [],
        |r| r.get::<_, i64>(0),
    )
    .map(u)
}

impl Store {
    /// Writes a batch of invocations and their logs (empty logs are not stored) in one
    /// transaction. Returns the id of each log written (`None` for empty ones), in order.
    /// A request id already recorded is left as it is.
    pub fn insert_invocations(
        &self,
        batch: &[(&InvocationRecord, &str)],
    ) -> Result<Vec<Option<u64>>, StoreError> {
        let mut conn = self.records_conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut ids = Vec::with_capacity(batch.len());
        {
            let mut record = tx.prepare_cached(&format!(
                "INSERT INTO invocations ({COLUMNS}) VALUES \
                 (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18) \
                 ON CONFLICT(request_id) DO NOTHING"
            ))?;
            let mut log = tx.prepare_cached(
                "INSERT INTO invocation_logs (request_id, function, started_at, bytes, text) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(request_id) DO NOTHING",
            )?;
            for (r, text) in batch {
                let inserted = record.execute(params![
                    r.request_id,
                    r.function,
                    r.version,
                    r.caller,
                    r.trigger.as_str(),
                    ms(r.started_at),
                    ms(r.ended_at),
                    r.status.as_str(),
                    r.error_type,
                    r.cold_start,
                    micros(r.queue_wait),
                    r.init_duration.map(micros),
                    micros(r.duration),
                    i(r.max_memory_used_mb),
                    r.memory_size_mb,
                    i(r.response_bytes),
                    r.event.as_ref().map(|(id, _)| id),
                    r.event.as_ref().map(|(_, n)| n),
                ])?;
                let id = if inserted == 1 && !text.is_empty() {
                    log.execute(params![
                        r.request_id,
                        r.function,
                        ms(r.started_at),
                        text.len() as i64,
                        text
                    ])?;
                    Some(u(tx.last_insert_rowid()))
                } else {
                    None
                };
                ids.push(id);
            }
        }
        tx.commit()?;
        Ok(ids)
    }

    /// One invocation by its request id.
    pub fn invocation(&self, request_id: &str) -> Result<Option<InvocationRecord>, StoreError> {
        let conn = self.records_conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM invocations WHERE request_id = ?1"
        ))?;
        Ok(stmt.query_row([request_id], row).optional()?)
    }

    /// A function's invocations, newest first.
    pub fn invocations(
        &self,
        q: &InvocationQuery<'_>,
    ) -> Result<Vec<InvocationRecord>, StoreError> {
        let conn = self.records_conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM invocations WHERE function = ?1 \
             AND (?2 IS NULL OR status = ?2) AND started_at >= ?3 \
             ORDER BY started_at DESC, rowid DESC LIMIT ?4"
        ))?;
        let rows = stmt.query_map(
            params![
                q.function,
                q.status.map(InvocationStatus::as_str),
                q.since.map_or(i64::MIN, ms),
                i(q.limit as u64)
            ],
            row,
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The newest `limit` logs of a function (or of one of its invocations), oldest first,
    /// read together with the id of the newest log stored.
    pub fn logs(&self, q: &LogQuery<'_>) -> Result<LogPage, StoreError> {
        let conn = self.records_conn();
        // One lock, one connection, no write in between: the page and `last_id` agree.
        let last_id = last_log_id(&conn)?;
        let mut entries: Vec<LogEntry> = match q.request_id {
            Some(id) => {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {LOG_COLUMNS} FROM invocation_logs WHERE request_id = ?1 \
                     AND function = ?2 AND started_at >= ?3"
                ))?;
                let rows = stmt.query_map(
                    params![id, q.function, q.since.map_or(i64::MIN, ms)],
                    log_row,
                )?;
                rows.collect::<Result<_, _>>()?
            }
            None => {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {LOG_COLUMNS} FROM invocation_logs WHERE function = ?1 \
                     AND started_at >= ?2 ORDER BY id DESC LIMIT ?3"
                ))?;
                let mut rows = stmt.query(params![
                    q.function,
                    q.since.map_or(i64::MIN, ms),
                    i(q.limit as u64)
                ])?;
                let (mut entries, mut bytes) = (Vec::new(), 0u64);
                while let Some(r) = rows.next()? {
                    let row = log_row(r)?;
                    bytes += row.bytes;
                    if q.max_bytes > 0 && bytes > q.max_bytes && !entries.is_empty() {
                        break;
                    }
                    entries.push(row);
                }
                entries
            }
        };
        entries.reverse();
        Ok(LogPage { entries, last_id })
    }

    /// How many records and logs are stored, and the logs' total size.
    pub fn record_totals(&self) -> Result<RecordTotals, StoreError> {
        let conn = self.records_conn();
        let records = conn.query_row("SELECT COUNT(*) FROM invocations", [], |r| {
            r.get::<_, i64>(0)
        })?;
        let (logs, log_bytes) = conn.query_row(
            "SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM invocation_logs",
            [],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
        )?;
        Ok(RecordTotals {
            records: u(records),
            logs: u(logs),
            log_bytes: u(log_bytes),
        })
    }

    /// Deletes the records and logs of invocations that started before `cutoff`.
    pub fn prune_invocations_before(&self, cutoff: SystemTime) -> Result<RecordTotals, StoreError> {
        let cutoff_ms = ms(cutoff);
        let mut conn = self.records_conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (logs, log_bytes) = tx.query_row(
            "SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM invocation_logs WHERE started_at < ?1",
            [cutoff_ms],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
        )?;
        tx.execute(
            "DELETE FROM invocation_logs WHERE started_at < ?1",
            [cutoff_ms],
        )?;
        let records = tx.execute("DELETE FROM invocations WHERE started_at < ?1", [cutoff_ms])?;
        tx.commit()?;
        Ok(RecordTotals {
            records: records as u64,
            logs: u(logs),
            log_bytes: u(log_bytes),
        })
    }

    /// Deletes the oldest logs (in the order they were written) until at least `free`
    /// bytes are freed or none are left.
    pub fn prune_oldest_logs(&self, free: u64) -> Result<RecordTotals, StoreError> {
        let mut conn = self.records_conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (mut logs, mut freed, mut upto) = (0u64, 0u64, None);
        {
            let mut stmt =
                tx.prepare_cached("SELECT id, bytes FROM invocation_logs ORDER BY id")?;
            let mut rows = stmt.query([])?;
            while freed < free {
                let Some(r) = rows.next()? else { break };
                upto = Some(r.get::<_, i64>(0)?);
                freed += u(r.get(1)?);
                logs += 1;
            }
        }
        if let Some(upto) = upto {
            tx.execute("DELETE FROM invocation_logs WHERE id <= ?1", [upto])?;
        }
        tx.commit()?;
        Ok(RecordTotals {
            records: 0,
            logs,
            log_bytes: freed,
        })
    }

    /// Deletes the `count` oldest records (by start time).
    pub fn prune_oldest_invocations(&self, count: u64) -> Result<RecordTotals, StoreError> {
        let conn = self.records_conn();
        let records = conn.execute(
            "DELETE FROM invocations WHERE rowid IN \
             (SELECT rowid FROM invocations ORDER BY started_at, rowid LIMIT ?1)",
            [i(count)],
        )?;
        Ok(RecordTotals {
            records: records as u64,
            ..RecordTotals::default()
        })
    }
}
