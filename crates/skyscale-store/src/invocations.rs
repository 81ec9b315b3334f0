//! Invocation records (one row per invocation) and their logs (one row per invocation that
//! printed anything, with its size). Both are written in batches by one writer, read by
//! request id or by function, and pruned oldest first: by age, by the total size of the
//! logs and by the number of records. They live on the store's second connection.

use std::time::{Duration, SystemTime};

use skyscale_types::invocation::{InitType, InvocationStatus, Trigger};
use skyscale_types::time::{epoch_ms, from_epoch_ms};

use crate::db::{Store, StoreError};
use crate::sql::{args, Db, Row};

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
    /// How the sandbox that ran it was initialised (on this invocation when `cold_start`,
    /// before it otherwise).
    pub init_type: InitType,
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
     max_memory_used_mb, memory_size_mb, response_bytes, event_id, attempt, init_type";

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
fn unknown(what: &str, value: &str) -> StoreError {
    StoreError::Corrupt {
        table: "invocations",
        message: format!("unknown {what} {value:?}"),
    }
}

fn row(r: &Row) -> Result<InvocationRecord, StoreError> {
    let trigger: String = r.get(4)?;
    let status: String = r.get(7)?;
    let init_type: String = r.get(18)?;
    Ok(InvocationRecord {
        request_id: r.get(0)?,
        function: r.get(1)?,
        version: r.get(2)?,
        caller: r.get(3)?,
        trigger: Trigger::parse(&trigger).ok_or_else(|| unknown("trigger", &trigger))?,
        started_at: time(r.get(5)?),
        ended_at: time(r.get(6)?),
        status: InvocationStatus::parse(&status).ok_or_else(|| unknown("status", &status))?,
        error_type: r.get(8)?,
        cold_start: r.get(9)?,
        init_type: InitType::parse(&init_type).ok_or_else(|| unknown("init type", &init_type))?,
        queue_wait: duration(r.get(10)?),
        init_duration: r.get::<Option<i64>>(11)?.map(duration),
        duration: duration(r.get(12)?),
        max_memory_used_mb: u(r.get(13)?),
        memory_size_mb: u32::try_from(r.get::<i64>(14)?).unwrap_or(0),
        response_bytes: u(r.get(15)?),
        event: match (r.get::<Option<String>>(16)?, r.get::<Option<i64>>(17)?) {
            (Some(id), Some(n)) => Some((id, u32::try_from(n.max(0)).unwrap_or(u32::MAX))),
            _ => None,
        },
    })
}

fn log_row(r: &Row) -> Result<LogEntry, StoreError> {
    Ok(LogEntry {
        id: u(r.get(0)?),
        request_id: r.get(1)?,
        function: r.get(2)?,
        started_at: time(r.get(3)?),
        bytes: u(r.get(4)?),
        text: r.get(5)?,
    })
}

fn last_log_id(db: &mut Db<'_>) -> Result<u64, StoreError> {
    Ok(u(db
        .query_one("SELECT COALESCE(MAX(id), 0) FROM invocation_logs", args![])?
        .get(0)?))
}

impl Store {
    /// Writes a batch of invocations and their logs (empty logs are not stored) in one
    /// transaction. Returns the id of each log written (`None` for empty ones), in order.
    /// A request id already recorded is left as it is.
    pub fn insert_invocations(
        &self,
        batch: &[(&InvocationRecord, &str)],
    ) -> Result<Vec<Option<u64>>, StoreError> {
        let mut db = self.records_db();
        let mut tx = db.transaction()?;
        let mut ids = Vec::with_capacity(batch.len());
        let record_sql = format!(
            "INSERT INTO invocations ({COLUMNS}) VALUES \
             (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19) \
             ON CONFLICT(request_id) DO NOTHING"
        );
        for (r, text) in batch {
            let inserted = tx.execute(
                &record_sql,
                args![
                    &r.request_id,
                    &r.function,
                    &r.version,
                    &r.caller,
                    r.trigger.as_str(),
                    ms(r.started_at),
                    ms(r.ended_at),
                    r.status.as_str(),
                    &r.error_type,
                    r.cold_start,
                    micros(r.queue_wait),
                    r.init_duration.map(micros),
                    micros(r.duration),
                    i(r.max_memory_used_mb),
                    r.memory_size_mb,
                    i(r.response_bytes),
                    r.event.as_ref().map(|(id, _)| id),
                    r.event.as_ref().map(|(_, n)| *n),
                    r.init_type.as_str(),
                ],
            )?;
            let id = if inserted == 1 && !text.is_empty() {
                tx.query_opt(
                    "INSERT INTO invocation_logs (request_id, function, started_at, bytes, text) \
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(request_id) DO NOTHING RETURNING id",
                    args![
                        &r.request_id,
                        &r.function,
                        ms(r.started_at),
                        text.len(),
                        *text
                    ],
                )?
                .map(|row| row.get::<i64>(0).map(u))
                .transpose()?
            } else {
                None
            };
            ids.push(id);
        }
        tx.commit()?;
        Ok(ids)
    }

    /// One invocation by its request id.
    pub fn invocation(&self, request_id: &str) -> Result<Option<InvocationRecord>, StoreError> {
        self.records_db()
            .query_opt(
                &format!("SELECT {COLUMNS} FROM invocations WHERE request_id = ?1"),
                args![request_id],
            )?
            .map(|r| row(&r))
            .transpose()
    }

    /// A function's invocations, newest first.
    pub fn invocations(
        &self,
        q: &InvocationQuery<'_>,
    ) -> Result<Vec<InvocationRecord>, StoreError> {
        let mut db = self.records_db();
        let order = db.dialect().row_order();
        db.query_map(
            &format!(
                "SELECT {COLUMNS} FROM invocations WHERE function = ?1 \
                 AND (CAST(?2 AS TEXT) IS NULL OR status = ?2) AND started_at >= ?3 \
                 ORDER BY started_at DESC, {order} DESC LIMIT ?4"
            ),
            args![
                q.function,
                q.status.map(InvocationStatus::as_str),
                q.since.map_or(i64::MIN, ms),
                q.limit
            ],
            row,
        )
    }

    /// The newest `limit` logs of a function (or of one of its invocations), oldest first,
    /// read together with the id of the newest log stored.
    pub fn logs(&self, q: &LogQuery<'_>) -> Result<LogPage, StoreError> {
        let mut db = self.records_db();
        // One lock, one connection, no write in between: the page and `last_id` agree.
        let last_id = last_log_id(&mut db)?;
        let mut entries: Vec<LogEntry> = match q.request_id {
            Some(id) => db.query_map(
                &format!(
                    "SELECT {LOG_COLUMNS} FROM invocation_logs WHERE request_id = ?1 \
                     AND function = ?2 AND started_at >= ?3"
                ),
                args![id, q.function, q.since.map_or(i64::MIN, ms)],
                log_row,
            )?,
            None => {
                let (mut entries, mut bytes) = (Vec::new(), 0u64);
                db.query_each(
                    &format!(
                        "SELECT {LOG_COLUMNS} FROM invocation_logs WHERE function = ?1 \
                         AND started_at >= ?2 ORDER BY id DESC LIMIT ?3"
                    ),
                    args![q.function, q.since.map_or(i64::MIN, ms), q.limit],
                    |r| {
                        let row = log_row(r)?;
                        bytes += row.bytes;
                        if q.max_bytes > 0 && bytes > q.max_bytes && !entries.is_empty() {
                            return Ok(false);
                        }
                        entries.push(row);
                        Ok(true)
                    },
                )?;
                entries
            }
        };
        entries.reverse();
        Ok(LogPage { entries, last_id })
    }

    /// How many records and logs are stored, and the logs' total size.
    pub fn record_totals(&self) -> Result<RecordTotals, StoreError> {
        let mut db = self.records_db();
        let records: i64 = db
            .query_one("SELECT COUNT(*) FROM invocations", args![])?
            .get(0)?;
        let r = db.query_one(
            "SELECT COUNT(*), CAST(COALESCE(SUM(bytes), 0) AS BIGINT) FROM invocation_logs",
            args![],
        )?;
        let (logs, log_bytes) = (r.get::<i64>(0)?, r.get::<i64>(1)?);
        Ok(RecordTotals {
            records: u(records),
            logs: u(logs),
            log_bytes: u(log_bytes),
        })
    }

    /// Deletes the records and logs of invocations that started before `cutoff`.
    pub fn prune_invocations_before(&self, cutoff: SystemTime) -> Result<RecordTotals, StoreError> {
        let cutoff_ms = ms(cutoff);
        let mut db = self.records_db();
        let mut tx = db.transaction()?;
        let r = tx.query_one(
            "SELECT COUNT(*), CAST(COALESCE(SUM(bytes), 0) AS BIGINT) FROM invocation_logs \
             WHERE started_at < ?1",
            args![cutoff_ms],
        )?;
        let (logs, log_bytes) = (r.get::<i64>(0)?, r.get::<i64>(1)?);
        tx.execute(
            "DELETE FROM invocation_logs WHERE started_at < ?1",
            args![cutoff_ms],
        )?;
        let records = tx.execute(
            "DELETE FROM invocations WHERE started_at < ?1",
            args![cutoff_ms],
        )?;
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
        let mut db = self.records_db();
        let mut tx = db.transaction()?;
        let (mut logs, mut freed, mut upto) = (0u64, 0u64, None);
        tx.query_each(
            "SELECT id, bytes FROM invocation_logs ORDER BY id",
            args![],
            |r| {
                if freed >= free {
                    return Ok(false);
                }
                upto = Some(r.get::<i64>(0)?);
                freed += u(r.get(1)?);
                logs += 1;
                Ok(true)
            },
        )?;
        if let Some(upto) = upto {
            tx.execute("DELETE FROM invocation_logs WHERE id <= ?1", args![upto])?;
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
        let mut db = self.records_db();
        let order = db.dialect().row_order();
        let records = db.execute(
            &format!(
                "DELETE FROM invocations WHERE {order} IN \
                 (SELECT {order} FROM invocations ORDER BY started_at, {order} LIMIT ?1)"
            ),
            args![count],
        )?;
        Ok(RecordTotals {
            records: records as u64,
            ..RecordTotals::default()
        })
    }
}
