//! The durable queue of asynchronous invocations and the per-function event invoke
//! configurations (Lambda's `PutFunctionEventInvokeConfig`).
//!
//! An event is one row from the moment it is accepted until it is done (the row is deleted)
//! or dead (the row stays, with the reason and the invocation record, until the user deletes
//! or redrives it). Dispatchers claim due rows with a lease: `lease_owner` and `lease_until`,
//! the latter on the database's clock ([`crate::sql::Dialect::now_ms`]), so that every process sharing the
//! database agrees on when a lease has run out. Every change a dispatcher makes to an event
//! it claimed names its owner id and changes nothing if another owner holds the row now (its
//! lease ran out and the event was claimed again): a late dispatcher cannot undo a newer one.
//!
//! Each operation is one statement or one transaction, written once for both databases
//! (`sql.rs`). The claim is `UPDATE … WHERE id IN (SELECT … ORDER BY next_at LIMIT n) RETURNING
//! …`; on PostgreSQL its subquery adds `FOR UPDATE SKIP LOCKED`
//! ([`crate::sql::Dialect::skip_locked`]), so dispatchers of several nodes claiming at once
//! each take other rows and never the same one. Every other change names the event and its
//! owner in its `WHERE`, so on PostgreSQL a concurrent change waits for the row lock and then
//! re-checks the owner (read committed): a dispatcher whose lease was taken over changes
//! nothing.

use std::time::Duration;

use skyscale_types::FunctionName;

use crate::db::{Store, StoreError};
use crate::functions::lock_function;
use crate::sql::{args, Db, Row};

/// Where an event is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventState {
    /// Waiting for its (next) attempt, or running under a lease.
    Queued,
    /// Given up on: its attempts or its age ran out (or its function was deleted) and there
    /// was no failure destination to take it.
    Dead,
}

impl EventState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Dead => "dead",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "queued" => Ok(Self::Queued),
            "dead" => Ok(Self::Dead),
            other => Err(StoreError::Corrupt {
                table: "events",
                message: format!("unknown event state {other:?}"),
            }),
        }
    }
}

/// Which of a function's events to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventFilter {
    All,
    /// Queued, no attempt failed and none was throttled yet.
    Queued,
    /// Queued after a failed or throttled try.
    Retrying,
    Dead,
}

impl EventFilter {
    fn as_str(self) -> Option<&'static str> {
        match self {
            Self::All => None,
            Self::Queued => Some("queued"),
            Self::Retrying => Some("retrying"),
            Self::Dead => Some("dead"),
        }
    }
}

/// One event as stored. Times are epoch milliseconds on the database's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    pub id: String,
    pub function: String,
    /// The version or alias it was sent to; `None`: unqualified.
    pub qualifier: Option<String>,
    pub payload: Vec<u8>,
    /// The key that enqueued it.
    pub caller: Option<String>,
    pub state: EventState,
    pub accepted_at_ms: i64,
    /// Attempts that ran and failed (throttles do not count).
    pub attempts: u32,
    /// Throttled tries since the last attempt (for the throttle backoff).
    pub throttles: u32,
    /// Not claimed before this.
    pub next_at_ms: i64,
    pub lease_owner: Option<String>,
    pub lease_until_ms: Option<i64>,
    pub last_error: Option<String>,
    pub dead_reason: Option<String>,
    pub dead_at_ms: Option<i64>,
    /// A dead letter's invocation record (JSON), when one was made.
    pub record: Option<String>,
    /// The database's clock when the row was read.
    pub now_ms: i64,
}

impl EventRow {
    /// Claimed and its lease not yet run out.
    pub fn leased(&self) -> bool {
        self.lease_until_ms.is_some_and(|until| until > self.now_ms)
    }
}

/// An idempotency key and how long it holds.
#[derive(Debug, Clone, Copy)]
pub struct Idempotency<'a> {
    pub key: &'a str,
    pub window: Duration,
}

/// An event to enqueue.
#[derive(Debug, Clone, Copy)]
pub struct NewEvent<'a> {
    /// Chosen by the caller (a time-ordered UUID).
    pub id: &'a str,
    pub function: &'a str,
    pub qualifier: Option<&'a str>,
    pub payload: &'a [u8],
    pub caller: Option<&'a str>,
    /// The same key for the same function within the window enqueues nothing and answers
    /// the first event's id.
    pub idempotency: Option<Idempotency<'a>>,
}

/// What an enqueue did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    /// The event was committed.
    New { id: String },
    /// The idempotency key was seen within its window: this is the first event's id, and
    /// nothing was enqueued.
    Existing { id: String },
}

impl Enqueued {
    pub fn id(&self) -> &str {
        match self {
            Self::New { id } | Self::Existing { id } => id,
        }
    }
}

/// How a claimed event ends.
#[derive(Debug, Clone, Copy)]
pub enum EventEnd<'a> {
    /// Done: the row is deleted.
    Done,
    /// Dead: the row stays, with why, its invocation record (JSON) and, when there is
    /// more to say than the reason, the last error.
    Dead {
        reason: &'a str,
        record: &'a str,
        error: Option<&'a str>,
        /// Attempts that ran, the last one included.
        attempts: u32,
    },
}

/// When a claimed event is tried again.
#[derive(Debug, Clone, Copy)]
pub struct Retry<'a> {
    /// From the database's now.
    pub delay: Duration,
    pub attempts: u32,
    pub throttles: u32,
    pub last_error: Option<&'a str>,
}

/// One function's queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueStats {
    pub function: String,
    /// Queued (including those running and waiting to be retried).
    pub queued: u64,
    /// Age of the oldest queued event, ms (0 when none).
    pub oldest_age_ms: u64,
    pub dead: u64,
}

/// A function's (or one of its versions' or aliases') event invoke configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventConfigRecord {
    pub function: FunctionName,
    /// `$LATEST`, a version's number or an alias.
    pub qualifier: String,
    /// `None`: the default.
    pub max_retries: Option<u32>,
    /// `None`: the default.
    pub max_age_s: Option<u32>,
    /// Destination ARNs.
    pub on_success: Option<String>,
    pub on_failure: Option<String>,
    pub last_modified_ms: i64,
}

/// A partial update of an event invoke configuration; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct EventConfigUpdate {
    pub max_retries: Option<Option<u32>>,
    pub max_age_s: Option<Option<u32>>,
    pub on_success: Option<Option<String>>,
    pub on_failure: Option<Option<String>>,
}

const COLUMNS: &str = "id, function, qualifier, payload, caller, state, accepted_at, attempts, \
     throttles, next_at, lease_owner, lease_until, last_error, dead_reason, dead_at, record";

const CONFIG_COLUMNS: &str =
    "function, qualifier, max_retries, max_age_s, on_success, on_failure, last_modified";

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn count(v: i64) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}

/// A row of `COLUMNS` followed by the database's now.
fn event_row(r: &Row) -> Result<(EventRow, String), StoreError> {
    let state: String = r.get(5)?;
    Ok((
        EventRow {
            id: r.get(0)?,
            function: r.get(1)?,
            qualifier: r.get(2)?,
            payload: r.get(3)?,
            caller: r.get(4)?,
            state: EventState::Queued,
            accepted_at_ms: r.get(6)?,
            attempts: count(r.get(7)?),
            throttles: count(r.get(8)?),
            next_at_ms: r.get(9)?,
            lease_owner: r.get(10)?,
            lease_until_ms: r.get(11)?,
            last_error: r.get(12)?,
            dead_reason: r.get(13)?,
            dead_at_ms: r.get(14)?,
            record: r.get(15)?,
            now_ms: r.get(16)?,
        },
        state,
    ))
}

fn typed((mut row, state): (EventRow, String)) -> Result<EventRow, StoreError> {
    row.state = EventState::parse(&state)?;
    Ok(row)
}

fn config_row(r: &Row) -> Result<EventConfigRecord, StoreError> {
    let function: String = r.get(0)?;
    Ok(EventConfigRecord {
        function: FunctionName::parse(&function).map_err(|e| StoreError::Corrupt {
            table: "event_invoke_configs",
            message: e.to_string(),
        })?,
        qualifier: r.get(1)?,
        max_retries: r.get::<Option<i64>>(2)?.map(count),
        max_age_s: r.get::<Option<i64>>(3)?.map(count),
        on_success: r.get(4)?,
        on_failure: r.get(5)?,
        last_modified_ms: r.get(6)?,
    })
}

/// Inserts `e` (or finds the event its idempotency key names) inside `tx`. The key is
/// claimed by inserting it (`ON CONFLICT DO NOTHING`) before the event: of two enqueues with
/// one key at once (PostgreSQL), the second waits for the first's row, inserts nothing and
/// answers the first event.
pub(crate) fn enqueue_in(tx: &mut Db<'_>, e: &NewEvent<'_>) -> Result<Enqueued, StoreError> {
    let now = tx.dialect().now_ms();
    if let Some(idem) = e.idempotency {
        tx.execute(
            &format!(
                "DELETE FROM event_idempotency WHERE function = ?1 AND key = ?2 \
                 AND expires_at <= {now}"
            ),
            args![e.function, idem.key],
        )?;
        let claimed = tx.execute(
            &format!(
                "INSERT INTO event_idempotency (function, key, event_id, expires_at) \
                 VALUES (?1, ?2, ?3, {now} + ?4) ON CONFLICT (function, key) DO NOTHING"
            ),
            args![e.function, idem.key, e.id, ms(idem.window)],
        )?;
        if claimed == 0 {
            let first: String = tx
                .query_one(
                    "SELECT event_id FROM event_idempotency WHERE function = ?1 AND key = ?2",
                    args![e.function, idem.key],
                )?
                .get(0)?;
            return Ok(Enqueued::Existing { id: first });
        }
    }
    let inserted = tx.execute(
        &format!(
            "INSERT INTO events (id, function, qualifier, payload, caller, state, accepted_at, \
             attempts, throttles, next_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, 'queued', {now}, 0, 0, {now}) \
             ON CONFLICT(id) DO NOTHING"
        ),
        args![e.id, e.function, e.qualifier, e.payload, e.caller],
    )?;
    if inserted == 0 {
        return Err(StoreError::Exists(format!("event {} already exists", e.id)));
    }
    Ok(Enqueued::New {
        id: e.id.to_owned(),
    })
}

/// Inside `delete_function`'s transaction: the function's queued events become dead letters
/// (nothing accepted is dropped without a trace); its dead letters stay.
pub(crate) fn function_deleted(tx: &mut Db<'_>, function: &str) -> Result<(), StoreError> {
    let now = tx.dialect().now_ms();
    tx.execute(
        &format!(
            "UPDATE events SET state = 'dead', dead_reason = 'FunctionDeleted', \
             dead_at = {now}, lease_owner = NULL, lease_until = NULL \
             WHERE function = ?1 AND state = 'queued'"
        ),
        args![function],
    )?;
    Ok(())
}

impl Store {
    /// Commits one event (or answers the first event of its idempotency key) in one
    /// transaction: when this returns, the event is durable.
    pub fn enqueue_event(&self, e: &NewEvent<'_>) -> Result<Enqueued, StoreError> {
        let mut db = self.events_db();
        let mut tx = db.transaction()?;
        let out = enqueue_in(&mut tx, e)?;
        tx.commit()?;
        Ok(out)
    }

    /// Claims up to `limit` due events (queued, `next_at` passed, no live lease) for `owner`
    /// until the database's now plus `lease`, oldest due first.
    pub fn claim_events(
        &self,
        owner: &str,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<EventRow>, StoreError> {
        let mut db = self.dispatch_db();
        let (now, skip_locked) = (db.dialect().now_ms(), db.dialect().skip_locked());
        let mut out = db.query_map(
            &format!(
                "UPDATE events SET lease_owner = ?1, lease_until = {now} + ?2 \
                 WHERE id IN (SELECT id FROM events WHERE state = 'queued' AND next_at <= {now} \
                     AND (lease_until IS NULL OR lease_until <= {now}) \
                     ORDER BY next_at, id LIMIT ?3{skip_locked}) \
                 RETURNING {COLUMNS}, {now}"
            ),
            args![owner, ms(lease), limit],
            |r| typed(event_row(r)?),
        )?;
        out.sort_by(|a, b| (a.next_at_ms, &a.id).cmp(&(b.next_at_ms, &b.id)));
        Ok(out)
    }

    /// Extends `owner`'s leases on `ids` to the database's now plus `lease`. Returns how many
    /// are still its own.
    pub fn renew_event_leases(
        &self,
        owner: &str,
        ids: &[String],
        lease: Duration,
    ) -> Result<usize, StoreError> {
        let mut db = self.dispatch_db();
        let mut tx = db.transaction()?;
        let now = tx.dialect().now_ms();
        let sql = format!(
            "UPDATE events SET lease_until = {now} + ?3 \
             WHERE id = ?1 AND lease_owner = ?2 AND state = 'queued'"
        );
        let mut renewed = 0;
        for id in ids {
            renewed += tx.execute(&sql, args![id, owner, ms(lease)])?;
        }
        tx.commit()?;
        Ok(renewed)
    }

    /// Gives up every lease: at the start of the only control plane that uses this database
    /// (SQLite), any lease is a previous run's, which died holding it.
    pub fn release_all_event_leases(&self) -> Result<usize, StoreError> {
        let mut db = self.dispatch_db();
        db.execute(
            "UPDATE events SET lease_owner = NULL, lease_until = NULL \
             WHERE lease_owner IS NOT NULL",
            args![],
        )
    }

    /// Ends `owner`'s claimed event as `end` and, in the same transaction, enqueues
    /// `forward` (the invocation record sent to a destination). `false`: the event is no
    /// longer `owner`'s, and nothing changed.
    pub fn finish_event(
        &self,
        id: &str,
        owner: &str,
        end: EventEnd<'_>,
        forward: Option<&NewEvent<'_>>,
    ) -> Result<bool, StoreError> {
        let mut db = self.dispatch_db();
        let mut tx = db.transaction()?;
        let now = tx.dialect().now_ms();
        let changed = match end {
            EventEnd::Done => tx.execute(
                "DELETE FROM events WHERE id = ?1 AND lease_owner = ?2 AND state = 'queued'",
                args![id, owner],
            )?,
            EventEnd::Dead {
                reason,
                record,
                error,
                attempts,
            } => tx.execute(
                &format!(
                    "UPDATE events SET state = 'dead', dead_reason = ?3, record = ?4, \
                     last_error = COALESCE(?5, last_error), attempts = ?6, dead_at = {now}, \
                     lease_owner = NULL, lease_until = NULL \
                     WHERE id = ?1 AND lease_owner = ?2 AND state = 'queued'"
                ),
                args![id, owner, reason, record, error, attempts],
            )?,
        };
        if changed == 0 {
            return Ok(false);
        }
        if let Some(f) = forward {
            enqueue_in(&mut tx, f)?;
        }
        tx.commit()?;
        Ok(true)
    }

    /// Puts `owner`'s claimed event back in the queue, due after `retry.delay`.
    pub fn reschedule_event(
        &self,
        id: &str,
        owner: &str,
        retry: &Retry<'_>,
    ) -> Result<bool, StoreError> {
        let mut db = self.dispatch_db();
        let now = db.dialect().now_ms();
        let changed = db.execute(
            &format!(
                "UPDATE events SET next_at = {now} + ?3, attempts = ?4, throttles = ?5, \
                 last_error = COALESCE(?6, last_error), lease_owner = NULL, lease_until = NULL \
                 WHERE id = ?1 AND lease_owner = ?2 AND state = 'queued'"
            ),
            args![
                id,
                owner,
                ms(retry.delay),
                retry.attempts,
                retry.throttles,
                retry.last_error
            ],
        )?;
        Ok(changed == 1)
    }

    /// One event by id.
    pub fn event(&self, id: &str) -> Result<Option<EventRow>, StoreError> {
        let mut db = self.events_db();
        let now = db.dialect().now_ms();
        db.query_opt(
            &format!("SELECT {COLUMNS}, {now} FROM events WHERE id = ?1"),
            args![id],
        )?
        .map(|r| typed(event_row(&r)?))
        .transpose()
    }

    /// A function's events that `filter` takes, oldest first.
    pub fn events(
        &self,
        function: &str,
        filter: EventFilter,
        limit: usize,
    ) -> Result<Vec<EventRow>, StoreError> {
        let mut db = self.events_db();
        let now = db.dialect().now_ms();
        db.query_map(
            &format!(
                "SELECT {COLUMNS}, {now} FROM events WHERE function = ?1 AND (CAST(?2 AS TEXT) IS NULL \
                     OR (?2 = 'dead' AND state = 'dead') \
                     OR (?2 = 'queued' AND state = 'queued' AND attempts = 0 AND throttles = 0) \
                     OR (?2 = 'retrying' AND state = 'queued' \
                         AND (attempts > 0 OR throttles > 0))) \
                 ORDER BY accepted_at, id LIMIT ?3"
            ),
            args![function, filter.as_str(), limit],
            |r| typed(event_row(r)?),
        )
    }

    /// Sends a function's dead letters (all, or the one `id`) back to the queue, due now,
    /// with their attempts and age starting over. Returns the ids redriven.
    pub fn redrive_events(
        &self,
        function: &str,
        id: Option<&str>,
    ) -> Result<Vec<String>, StoreError> {
        let mut db = self.events_db();
        let now = db.dialect().now_ms();
        let mut ids = db.query_map(
            &format!(
                "UPDATE events SET state = 'queued', attempts = 0, throttles = 0, \
                 accepted_at = {now}, next_at = {now}, last_error = NULL, dead_reason = NULL, \
                 dead_at = NULL, record = NULL, lease_owner = NULL, lease_until = NULL \
                 WHERE function = ?1 AND state = 'dead' AND (CAST(?2 AS TEXT) IS NULL OR id = ?2) RETURNING id"
            ),
            args![function, id],
            |r| r.get::<String>(0),
        )?;
        ids.sort();
        Ok(ids)
    }

    /// Deletes one of a function's dead letters. `false`: there is no such dead letter.
    pub fn delete_dead_letter(&self, function: &str, id: &str) -> Result<bool, StoreError> {
        let mut db = self.events_db();
        Ok(db.execute(
            "DELETE FROM events WHERE id = ?1 AND function = ?2 AND state = 'dead'",
            args![id, function],
        )? == 1)
    }

    /// Each function's queue depth, the age of its oldest queued event and its dead letters.
    pub fn queue_stats(&self) -> Result<Vec<QueueStats>, StoreError> {
        let mut db = self.events_db();
        let now = db.dialect().now_ms();
        db.query_map(
            &format!(
                "SELECT function, \
                     COUNT(*) FILTER (WHERE state = 'queued'), \
                     COALESCE({now} - MIN(accepted_at) FILTER (WHERE state = 'queued'), 0), \
                     COUNT(*) FILTER (WHERE state = 'dead') \
                 FROM events GROUP BY function ORDER BY function"
            ),
            args![],
            |r| {
                Ok(QueueStats {
                    function: r.get(0)?,
                    queued: r.get::<i64>(1)?.max(0) as u64,
                    oldest_age_ms: r.get::<i64>(2)?.max(0) as u64,
                    dead: r.get::<i64>(3)?.max(0) as u64,
                })
            },
        )
    }

    /// Deletes idempotency keys whose window has passed. Returns how many.
    pub fn prune_idempotency_keys(&self) -> Result<usize, StoreError> {
        let mut db = self.events_db();
        let now = db.dialect().now_ms();
        db.execute(
            &format!("DELETE FROM event_idempotency WHERE expires_at <= {now}"),
            args![],
        )
    }

    /// Creates or replaces the event invoke configuration of `c.function` and `c.qualifier`
    /// (the function must exist; `last_modified_ms` is set here).
    pub fn put_event_config(&self, c: &EventConfigRecord) -> Result<EventConfigRecord, StoreError> {
        let mut db = self.db();
        let mut tx = db.transaction()?;
        let now = tx.dialect().now_ms();
        if lock_function(&mut tx, &c.function)?.is_none() {
            return Err(StoreError::FunctionNotFound(c.function.to_string()));
        }
        tx.execute(
            &format!(
                "INSERT INTO event_invoke_configs ({CONFIG_COLUMNS}) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, {now}) \
                 ON CONFLICT(function, qualifier) DO UPDATE SET max_retries = ?3, \
                 max_age_s = ?4, on_success = ?5, on_failure = ?6, last_modified = {now}"
            ),
            args![
                c.function.as_str(),
                &c.qualifier,
                c.max_retries,
                c.max_age_s,
                &c.on_success,
                &c.on_failure
            ],
        )?;
        let out = get_config(&mut tx, c.function.as_str(), &c.qualifier)?
            .ok_or_else(|| StoreError::NotFound("event invoke config vanished".into()))?;
        tx.commit()?;
        Ok(out)
    }

    /// Changes the fields `u` names of an existing configuration.
    pub fn update_event_config(
        &self,
        function: &FunctionName,
        qualifier: &str,
        u: &EventConfigUpdate,
    ) -> Result<EventConfigRecord, StoreError> {
        let mut db = self.db();
        let mut tx = db.transaction()?;
        let now = tx.dialect().now_ms();
        // The function's row lock (PostgreSQL) keeps a concurrent update of the same
        // configuration from writing over this one's read.
        lock_function(&mut tx, function)?;
        let Some(mut c) = get_config(&mut tx, function.as_str(), qualifier)? else {
            return Err(StoreError::NotFound(format!(
                "the event invoke config of {function}:{qualifier} does not exist"
            )));
        };
        if let Some(v) = u.max_retries {
            c.max_retries = v;
        }
        if let Some(v) = u.max_age_s {
            c.max_age_s = v;
        }
        if let Some(v) = &u.on_success {
            c.on_success.clone_from(v);
        }
        if let Some(v) = &u.on_failure {
            c.on_failure.clone_from(v);
        }
        tx.execute(
            &format!(
                "UPDATE event_invoke_configs SET max_retries = ?3, max_age_s = ?4, \
                 on_success = ?5, on_failure = ?6, last_modified = {now} \
                 WHERE function = ?1 AND qualifier = ?2"
            ),
            args![
                function.as_str(),
                qualifier,
                c.max_retries,
                c.max_age_s,
                &c.on_success,
                &c.on_failure
            ],
        )?;
        let out = get_config(&mut tx, function.as_str(), qualifier)?
            .ok_or_else(|| StoreError::NotFound("event invoke config vanished".into()))?;
        tx.commit()?;
        Ok(out)
    }

    pub fn event_config(
        &self,
        function: &str,
        qualifier: &str,
    ) -> Result<Option<EventConfigRecord>, StoreError> {
        get_config(&mut self.db(), function, qualifier)
    }

    /// A function's configurations, by qualifier.
    pub fn event_configs(&self, function: &str) -> Result<Vec<EventConfigRecord>, StoreError> {
        self.db().query_map(
            &format!(
                "SELECT {CONFIG_COLUMNS} FROM event_invoke_configs WHERE function = ?1 \
                 ORDER BY qualifier"
            ),
            args![function],
            config_row,
        )
    }

    /// `false`: there was none.
    pub fn delete_event_config(&self, function: &str, qualifier: &str) -> Result<bool, StoreError> {
        Ok(self.db().execute(
            "DELETE FROM event_invoke_configs WHERE function = ?1 AND qualifier = ?2",
            args![function, qualifier],
        )? == 1)
    }
}

fn get_config(
    db: &mut Db<'_>,
    function: &str,
    qualifier: &str,
) -> Result<Option<EventConfigRecord>, StoreError> {
    db.query_opt(
        &format!(
            "SELECT {CONFIG_COLUMNS} FROM event_invoke_configs \
             WHERE function = ?1 AND qualifier = ?2"
        ),
        args![function, qualifier],
    )?
    .map(|r| config_row(&r))
    .transpose()
}
