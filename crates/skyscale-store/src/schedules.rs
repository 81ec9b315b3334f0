//! Schedules: a function invoked asynchronously at the slots of a cron, rate or at
//! expression (the core parses expressions; the store keeps them as text).
//!
//! A schedule's bookkeeping is `through`: every slot at or before it has been dealt with —
//! fired, or passed over (while paused, or missed under the `skip` policy). A fire is one
//! transaction on the event queue's connection that enqueues the event and moves `through`
//! to the slot, guarded by the `through` the firer read: a slot is committed as fired at most
//! once, and a crash before the commit leaves it due, to be fired at the next start.
//! Schedules go with their function (`ON DELETE CASCADE`).

use skyscale_types::schedules::{MissedFires, ScheduleState};

use crate::db::{Store, StoreError};
use crate::events::{enqueue_in, Enqueued, NewEvent};
use crate::sql::{args, Db, Row};

const COLUMNS: &str = "id, name, function, qualifier, expression, timezone, payload, state, \
     missed, anchor, through, last_fired, caller, revision, created_at, updated_at";

/// One schedule as stored. Times are epoch milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleRecord {
    /// A UUID: idempotency keys of fires name it, so a schedule deleted and created again
    /// under the same name starts afresh.
    pub id: String,
    pub name: String,
    pub function: String,
    /// `None`: unqualified (`$LATEST`).
    pub qualifier: Option<String>,
    pub expression: String,
    pub timezone: String,
    /// `None`: the Scheduled Event document.
    pub payload: Option<Vec<u8>>,
    pub state: ScheduleState,
    pub missed: MissedFires,
    /// Rate slots count from here.
    pub anchor_ms: i64,
    /// Every slot at or before this is dealt with; `None`: none was yet.
    pub through_ms: Option<i64>,
    /// The slot of the last fire.
    pub last_fired_ms: Option<i64>,
    /// The key that created or last changed it: fires run as this key.
    pub caller: Option<String>,
    /// Bumped by every change but fires.
    pub revision: i64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// How a create or an update sets `through`. An update that is not about the slots keeps
/// it: a fire may have moved it since the schedule was read, and writing back the value
/// read would fire that slot again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Through {
    /// As it is (a create: none yet).
    Keep,
    /// To this (a new expression starts afresh).
    Set(i64),
    /// To this, unless it is later already (a resume passes over the paused time).
    AtLeast(i64),
}

impl Through {
    fn sql(self) -> (&'static str, Option<i64>) {
        match self {
            Self::Keep => ("keep", None),
            Self::Set(v) => ("set", Some(v)),
            Self::AtLeast(v) => ("at-least", Some(v)),
        }
    }
}

/// What create and update write (everything but the id, the fire bookkeeping, the times).
#[derive(Debug, Clone)]
pub struct ScheduleFields<'a> {
    pub function: &'a str,
    pub qualifier: Option<&'a str>,
    pub expression: &'a str,
    pub timezone: &'a str,
    pub payload: Option<&'a [u8]>,
    pub state: ScheduleState,
    pub missed: MissedFires,
    pub anchor_ms: i64,
    pub through: Through,
    pub caller: Option<&'a str>,
}

/// One fire (or, without an event, a slot passed over).
#[derive(Debug, Clone, Copy)]
pub struct Fire<'a> {
    pub schedule_id: &'a str,
    /// The `through` the firer read: nothing happens if it moved meanwhile.
    pub through_before: Option<i64>,
    /// The revision the firer read: nothing happens if the schedule changed meanwhile.
    pub revision: i64,
    pub slot_ms: i64,
    /// `None`: pass the slot over.
    pub event: Option<NewEvent<'a>>,
}

/// What a fire did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fired {
    /// The slot is committed: the event (when there was one) is queued.
    Done(Option<Enqueued>),
    /// The schedule changed, was paused or deleted, or the slot was dealt with already:
    /// nothing was written.
    Stale,
}

fn record(r: &Row) -> Result<(ScheduleRecord, String, String), StoreError> {
    Ok((
        ScheduleRecord {
            id: r.get(0)?,
            name: r.get(1)?,
            function: r.get(2)?,
            qualifier: r.get(3)?,
            expression: r.get(4)?,
            timezone: r.get(5)?,
            payload: r.get(6)?,
            state: ScheduleState::Enabled,
            missed: MissedFires::RunOnce,
            anchor_ms: r.get(9)?,
            through_ms: r.get(10)?,
            last_fired_ms: r.get(11)?,
            caller: r.get(12)?,
            revision: r.get(13)?,
            created_at_ms: r.get(14)?,
            updated_at_ms: r.get(15)?,
        },
        r.get(7)?,
        r.get(8)?,
    ))
}

fn typed(
    (mut rec, state, missed): (ScheduleRecord, String, String),
) -> Result<ScheduleRecord, StoreError> {
    let corrupt = |message: String| StoreError::Corrupt {
        table: "schedules",
        message,
    };
    rec.state = ScheduleState::parse(&state)
        .ok_or_else(|| corrupt(format!("unknown schedule state {state:?}")))?;
    rec.missed = MissedFires::parse(&missed).map_err(corrupt)?;
    Ok(rec)
}

fn get(db: &mut Db<'_>, name: &str) -> Result<Option<ScheduleRecord>, StoreError> {
    db.query_opt(
        &format!("SELECT {COLUMNS} FROM schedules WHERE name = ?1"),
        args![name],
    )?
    .map(|r| typed(record(&r)?))
    .transpose()
}

/// Inside a transaction: the function exists, and (PostgreSQL) stays until the commit (its
/// row is locked, so a concurrent deletion waits and then takes the schedule with it).
fn function_exists(db: &mut Db<'_>, function: &str) -> Result<(), StoreError> {
    let lock = db.dialect().for_update();
    let exists = db
        .query_opt(
            &format!("SELECT 1 FROM functions WHERE name = ?1{lock}"),
            args![function],
        )?
        .is_some();
    if exists {
        Ok(())
    } else {
        Err(StoreError::FunctionNotFound(function.to_owned()))
    }
}

impl Store {
    /// Creates a schedule named `name` with a new `id`. A name taken is `Exists`, a function
    /// that does not exist `FunctionNotFound`.
    pub fn create_schedule(
        &self,
        id: &str,
        name: &str,
        f: &ScheduleFields<'_>,
    ) -> Result<ScheduleRecord, StoreError> {
        let mut db = self.events_db();
        let mut tx = db.transaction()?;
        function_exists(&mut tx, f.function)?;
        let now = tx.dialect().now_ms();
        // A name taken (even by a schedule created concurrently: the insert waits for it) is
        // a conflict that inserts nothing.
        let inserted = tx.execute(
            &format!(
                "INSERT INTO schedules ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, \
                 ?10, ?11, NULL, ?12, 1, {now}, {now}) ON CONFLICT DO NOTHING"
            ),
            args![
                id,
                name,
                f.function,
                f.qualifier,
                f.expression,
                f.timezone,
                f.payload,
                f.state.as_str(),
                f.missed.as_str(),
                f.anchor_ms,
                f.through.sql().1,
                f.caller
            ],
        )?;
        if inserted == 0 {
            return Err(StoreError::Exists(format!(
                "schedule {name} already exists"
            )));
        }
        let out = get(&mut tx, name)?
            .ok_or_else(|| StoreError::NotFound(format!("schedule {name} vanished")))?;
        tx.commit()?;
        Ok(out)
    }

    /// Replaces a schedule's fields if it is still at `revision` (`NotFound` if it is gone,
    /// `InUse` if another change came first).
    pub fn update_schedule(
        &self,
        name: &str,
        revision: i64,
        f: &ScheduleFields<'_>,
    ) -> Result<ScheduleRecord, StoreError> {
        let mut db = self.events_db();
        let mut tx = db.transaction()?;
        function_exists(&mut tx, f.function)?;
        let (now, greatest) = (tx.dialect().now_ms(), tx.dialect().greatest());
        let changed = tx.execute(
            &format!(
                "UPDATE schedules SET function = ?3, qualifier = ?4, expression = ?5, \
                 timezone = ?6, payload = ?7, state = ?8, missed = ?9, anchor = ?10, \
                 through = CASE ?13 WHEN 'keep' THEN through WHEN 'set' THEN ?11 \
                     ELSE {greatest}(COALESCE(through, ?11), ?11) END, \
                 caller = ?12, revision = revision + 1, updated_at = {now} \
                 WHERE name = ?1 AND revision = ?2"
            ),
            args![
                name,
                revision,
                f.function,
                f.qualifier,
                f.expression,
                f.timezone,
                f.payload,
                f.state.as_str(),
                f.missed.as_str(),
                f.anchor_ms,
                f.through.sql().1,
                f.caller,
                f.through.sql().0
            ],
        )?;
        if changed == 0 {
            return Err(match get(&mut tx, name)? {
                None => StoreError::NotFound(format!("schedule {name} not found")),
                Some(_) => StoreError::InUse(format!(
                    "schedule {name} changed while this change was made: read it again and retry"
                )),
            });
        }
        let out = get(&mut tx, name)?
            .ok_or_else(|| StoreError::NotFound(format!("schedule {name} vanished")))?;
        tx.commit()?;
        Ok(out)
    }

    pub fn schedule(&self, name: &str) -> Result<Option<ScheduleRecord>, StoreError> {
        get(&mut self.events_db(), name)
    }

    /// Every schedule (`enabled_only`: those that fire), by name.
    pub fn schedules(&self, enabled_only: bool) -> Result<Vec<ScheduleRecord>, StoreError> {
        self.events_db().query_map(
            &format!(
                "SELECT {COLUMNS} FROM schedules WHERE ?1 = 0 OR state = 'enabled' ORDER BY name"
            ),
            args![enabled_only],
            |r| typed(record(r)?),
        )
    }

    /// `false`: there was none.
    pub fn delete_schedule(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self
            .events_db()
            .execute("DELETE FROM schedules WHERE name = ?1", args![name])?
            == 1)
    }

    /// Fires one slot (see [`Fire`]): in one transaction, moves the schedule's `through`
    /// to the slot and enqueues the event, or does nothing at all. The move is guarded by the
    /// `through` and revision the firer read: of two nodes firing one slot at once
    /// (PostgreSQL), the second waits for the row, finds `through` moved and does nothing.
    pub fn fire_schedule(&self, f: &Fire<'_>) -> Result<Fired, StoreError> {
        let mut db = self.events_db();
        let mut tx = db.transaction()?;
        let moved = tx.execute(
            "UPDATE schedules SET through = ?4, \
             last_fired = CASE WHEN ?5 THEN ?4 ELSE last_fired END \
             WHERE id = ?1 AND revision = ?2 AND state = 'enabled' \
             AND through IS NOT DISTINCT FROM ?3 \
             AND (through IS NULL OR through < ?4)",
            args![
                f.schedule_id,
                f.revision,
                f.through_before,
                f.slot_ms,
                f.event.is_some()
            ],
        )?;
        if moved == 0 {
            return Ok(Fired::Stale);
        }
        let enqueued = f
            .event
            .as_ref()
            .map(|e| enqueue_in(&mut tx, e))
            .transpose()?;
        tx.commit()?;
        Ok(Fired::Done(enqueued))
    }
}
