//! Asynchronous invocation that never loses an accepted event (lambda-compatibility.md §13).
//!
//! An accepted event is a row in the store before its id is returned ([`ControlPlane::enqueue`]);
//! the dispatcher (`dispatcher.rs`) claims due rows with a lease on the database's clock,
//! runs each through [`ControlPlane::invoke_with`] (so limits, versions, logs and records
//! apply as to a synchronous call), and ends it: done, retried later, sent to a destination
//! (`destination.rs`) or kept as a dead letter with its invocation record, which the user can
//! list, redrive or delete. Delivery is at-least-once: a control plane that dies while an
//! event runs leaves its lease to run out (or, at the next start of the only control plane of
//! a SQLite database, to be released), and the event runs again.
//!
//! Every other producer of events (schedules) goes through [`ControlPlane::enqueue_event`]:
//! a fire is an event with an idempotency key such as `schedule:<id>:<slot>`.

mod config;
mod destination;
mod dispatcher;
mod metrics;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use skyscale_store::{Enqueued, EventFilter, EventRow, EventState, Idempotency, NewEvent};
use skyscale_types::FunctionName;

use crate::auth::Action;
use crate::{blocking, ControlPlane, CoreError, Principal};
use skyscale_types::invocation::Trigger;

pub use config::{EventConfig, EventConfigChange, DEFAULT_MAX_AGE_S, DEFAULT_MAX_RETRIES};
pub(crate) use dispatcher::Queue;

/// Largest payload of an asynchronous invocation, as in Lambda.
pub const MAX_ASYNC_PAYLOAD: usize = 1024 * 1024;

/// Longest idempotency key.
pub const MAX_IDEMPOTENCY_KEY: usize = 256;

/// How the queue is worked.
#[derive(Debug, Clone)]
pub struct EventSettings {
    /// The wait before the first retry of a failed attempt; it doubles for the next (Lambda:
    /// one minute, then two).
    pub retry_backoff: Duration,
    /// The wait after the first throttle; it doubles with each further throttle, up to
    /// `max_throttle_backoff`.
    pub throttle_backoff: Duration,
    pub max_throttle_backoff: Duration,
    /// How long a claim holds without being renewed (renewed every third of it while the
    /// event runs).
    pub lease: Duration,
    /// Events running at once.
    pub max_in_flight: usize,
    /// How long an idempotency key answers with its first event.
    pub idempotency_window: Duration,
    /// How often the queue is looked at when nothing woke the dispatcher.
    pub poll: Duration,
}

impl Default for EventSettings {
    fn default() -> Self {
        Self {
            retry_backoff: Duration::from_secs(60),
            throttle_backoff: Duration::from_secs(1),
            max_throttle_backoff: Duration::from_secs(300),
            lease: Duration::from_secs(30),
            max_in_flight: 64,
            idempotency_window: Duration::from_secs(24 * 3600),
            poll: Duration::from_millis(500),
        }
    }
}

/// Where an event stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventStatus {
    /// Waiting for its first attempt (or running it).
    Queued,
    /// An attempt failed or was throttled; waiting for the next (or running it).
    Retrying,
    /// Given up on; kept with its record until redriven or deleted.
    Dead,
}

impl EventStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Retrying => "retrying",
            Self::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Result<Self, CoreError> {
        [Self::Queued, Self::Retrying, Self::Dead]
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| {
                CoreError::InvalidParameter(format!(
                    "invalid event status {s:?}: expected queued, retrying or dead"
                ))
            })
    }

    fn of(row: &EventRow) -> Self {
        match row.state {
            EventState::Dead => Self::Dead,
            EventState::Queued if row.attempts > 0 || row.throttles > 0 => Self::Retrying,
            EventState::Queued => Self::Queued,
        }
    }
}

/// Why an event was given up on (Lambda's `condition` in the invocation record, plus the
/// cases Skyscale adds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadReason {
    /// Every attempt failed.
    RetriesExhausted,
    /// It was older than the maximum event age before it could run.
    EventAgeExceeded,
    /// Its function was deleted while it was queued.
    FunctionDeleted,
    /// It cannot run at all (its version or alias is gone, or it was refused).
    Refused,
    /// It ran, but its failure or success destination could not take the record.
    DestinationFailed,
}

impl DeadReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RetriesExhausted => "RetriesExhausted",
            Self::EventAgeExceeded => "EventAgeExceeded",
            Self::FunctionDeleted => "FunctionDeleted",
            Self::Refused => "Refused",
            Self::DestinationFailed => "DestinationFailed",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [
            Self::RetriesExhausted,
            Self::EventAgeExceeded,
            Self::FunctionDeleted,
            Self::Refused,
            Self::DestinationFailed,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// One event as the user sees it.
#[derive(Debug, Clone)]
pub struct EventInfo {
    pub id: String,
    pub function: String,
    /// The version or alias it was sent to; `None`: unqualified.
    pub qualifier: Option<String>,
    pub status: EventStatus,
    /// An attempt holds it now.
    pub running: bool,
    pub accepted_at: SystemTime,
    pub age: Duration,
    /// Attempts that ran and failed.
    pub attempts: u32,
    /// When it is due next (queued and retrying events).
    pub next_attempt_at: Option<SystemTime>,
    pub last_error: Option<String>,
    pub dead_reason: Option<DeadReason>,
    pub dead_at: Option<SystemTime>,
    pub payload: Vec<u8>,
    /// A dead letter's invocation record (Lambda's document).
    pub record: Option<serde_json::Value>,
}

fn time_of(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

impl EventInfo {
    fn of(row: EventRow) -> Self {
        let status = EventStatus::of(&row);
        Self {
            running: row.leased(),
            accepted_at: time_of(row.accepted_at_ms),
            age: Duration::from_millis(u64::try_from(row.now_ms - row.accepted_at_ms).unwrap_or(0)),
            next_attempt_at: (status != EventStatus::Dead).then(|| time_of(row.next_at_ms)),
            dead_reason: row.dead_reason.as_deref().and_then(DeadReason::parse),
            dead_at: row.dead_at_ms.map(time_of),
            record: row
                .record
                .as_deref()
                .and_then(|r| serde_json::from_str(r).ok()),
            id: row.id,
            function: row.function,
            qualifier: row.qualifier,
            status,
            attempts: row.attempts,
            last_error: row.last_error,
            payload: row.payload,
        }
    }
}

/// How to invoke asynchronously.
#[derive(Debug, Clone, Default)]
pub struct AsyncInvoke {
    /// `None` or `$LATEST`, a published version's number, or an alias.
    pub qualifier: Option<String>,
    /// The same key for the same function within the idempotency window answers the first
    /// event's id and enqueues nothing.
    pub idempotency_key: Option<String>,
}

/// An accepted asynchronous invocation: committed to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub event_id: String,
    /// The idempotency key had been seen: `event_id` is the first event's, nothing new was
    /// enqueued.
    pub duplicate: bool,
}

/// An event for the queue from inside the control plane (an authorized invoke, a schedule's
/// fire, a destination's record). Not authorized here: the caller did that.
#[derive(Debug, Clone)]
pub struct EventRequest {
    pub function: FunctionName,
    /// `None`: unqualified (`$LATEST`).
    pub qualifier: Option<String>,
    pub payload: Vec<u8>,
    /// The key it is sent for (its records name it).
    pub caller: Option<String>,
    /// A key, and its window (`None`: the default window).
    pub idempotency: Option<(String, Option<Duration>)>,
}

/// Checks an asynchronous payload: at most [`MAX_ASYNC_PAYLOAD`], JSON (empty means `{}`).
pub(crate) fn check_payload(payload: Vec<u8>) -> Result<Vec<u8>, CoreError> {
    if payload.len() > MAX_ASYNC_PAYLOAD {
        return Err(CoreError::PayloadTooLarge(format!(
            "asynchronous invoke payload is {} bytes: the limit is {MAX_ASYNC_PAYLOAD} bytes",
            payload.len()
        )));
    }
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Ok(b"{}".to_vec());
    }
    let checked = std::str::from_utf8(&payload)
        .map_err(|e| format!("it is not UTF-8 ({e})"))
        .and_then(|text| {
            serde_json::from_str::<serde::de::IgnoredAny>(text).map_err(|e| e.to_string())
        });
    match checked {
        Ok(_) => Ok(payload),
        Err(e) => Err(CoreError::InvalidRequest(format!(
            "invoke payload is not valid JSON: {e}"
        ))),
    }
}

fn check_idempotency_key(key: &str) -> Result<(), CoreError> {
    if key.is_empty()
        || key.len() > MAX_IDEMPOTENCY_KEY
        || !key.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(CoreError::InvalidParameter(format!(
            "invalid idempotency key {key:?}: expected 1 to {MAX_IDEMPOTENCY_KEY} printable \
             ASCII characters without spaces"
        )));
    }
    Ok(())
}

/// `None` for an unqualified or `$LATEST` qualifier: the queue stores those alike.
fn stored_qualifier(q: Option<&str>) -> Option<String> {
    q.filter(|q| *q != "$LATEST").map(str::to_owned)
}

impl ControlPlane {
    /// Accepts an asynchronous invocation: checks that `by` may invoke the version
    /// `opts.qualifier` names, that it exists and has code, and that the payload is JSON of
    /// at most 1 MB; then commits the event. When this returns `Ok`, the event is durable.
    pub async fn enqueue(
        &self,
        by: &Principal,
        name: &str,
        opts: AsyncInvoke,
        payload: Vec<u8>,
    ) -> Result<Accepted, CoreError> {
        let function = self
            .authorize_invoke(by, name, opts.qualifier.as_deref(), Trigger::Event)
            .await?;
        if let Some(key) = &opts.idempotency_key {
            check_idempotency_key(key)?;
        }
        let payload = check_payload(payload)?;
        let f = self
            .version_record(function.as_str(), opts.qualifier.as_deref(), false)
            .await?;
        if f.code.is_none() {
            return Err(CoreError::Conflict(format!(
                "function {} has no code deployed yet: deploy a package first",
                f.name
            )));
        }
        self.enqueue_event(EventRequest {
            function,
            qualifier: stored_qualifier(opts.qualifier.as_deref()),
            payload,
            caller: by.key_id.as_ref().map(ToString::to_string),
            idempotency: opts.idempotency_key.map(|k| (k, None)),
        })
        .await
    }

    /// Commits one event (see [`EventRequest`]) and wakes the dispatcher. The function is
    /// not looked up: an event for a function that is gone by the time it runs becomes a
    /// dead letter.
    pub async fn enqueue_event(&self, e: EventRequest) -> Result<Accepted, CoreError> {
        let id = uuid::Uuid::now_v7().to_string();
        let window = self.settings.events.idempotency_window;
        let store = self.store.clone();
        let function = e.function.to_string();
        let enqueued = {
            let function = function.clone();
            let id = id.clone();
            blocking(move || {
                let new = NewEvent {
                    id: &id,
                    function: &function,
                    qualifier: e.qualifier.as_deref(),
                    payload: &e.payload,
                    caller: e.caller.as_deref(),
                    idempotency: e.idempotency.as_ref().map(|(key, w)| Idempotency {
                        key,
                        window: w.unwrap_or(window),
                    }),
                };
                Ok(store.enqueue_event(&new)?)
            })
            .await?
        };
        Ok(match enqueued {
            Enqueued::New { id } => {
                self.events.metrics.received(&function);
                self.events.wake();
                Accepted {
                    event_id: id,
                    duplicate: false,
                }
            }
            Enqueued::Existing { id } => Accepted {
                event_id: id,
                duplicate: true,
            },
        })
    }

    /// A function's events, oldest first (at most `limit`, 100 by default, 1000 at most).
    pub async fn events(
        &self,
        by: &Principal,
        name: &str,
        status: Option<EventStatus>,
        limit: Option<usize>,
    ) -> Result<Vec<EventInfo>, CoreError> {
        let name = self.authorize_on(by, Action::ReadFunction, name)?;
        let limit = limit.unwrap_or(100);
        if !(1..=1000).contains(&limit) {
            return Err(CoreError::InvalidParameter(format!(
                "invalid limit {limit}: expected 1 to 1000"
            )));
        }
        let filter = match status {
            None => EventFilter::All,
            Some(EventStatus::Queued) => EventFilter::Queued,
            Some(EventStatus::Retrying) => EventFilter::Retrying,
            Some(EventStatus::Dead) => EventFilter::Dead,
        };
        let store = self.store.clone();
        let rows = blocking(move || Ok(store.events(name.as_str(), filter, limit)?)).await?;
        Ok(rows.into_iter().map(EventInfo::of).collect())
    }

    /// One event by id. An event of a function `by` may not read is "not found", as is one
    /// that does not exist (or is done: done events are not kept).
    pub async fn event(&self, by: &Principal, id: &str) -> Result<EventInfo, CoreError> {
        let row = self.event_row(by, id, Action::ReadFunction).await?;
        Ok(EventInfo::of(row))
    }

    async fn event_row(
        &self,
        by: &Principal,
        id: &str,
        action: Action,
    ) -> Result<EventRow, CoreError> {
        let not_found = || {
            CoreError::NotFound(format!(
                "event {id} not found (events that ran successfully are not kept)"
            ))
        };
        if uuid::Uuid::parse_str(id).is_err() {
            return Err(CoreError::InvalidParameter(format!(
                "invalid event id {id:?}: expected a UUID"
            )));
        }
        let store = self.store.clone();
        let owned = id.to_owned();
        let row = blocking(move || Ok(store.event(&owned)?))
            .await?
            .ok_or_else(not_found)?;
        match self.authorize_on(by, action, &row.function) {
            Ok(_) => Ok(row),
            Err(CoreError::Forbidden(_)) => Err(not_found()),
            Err(e) => Err(e),
        }
    }

    /// Sends a function's dead letters (the one `id`, or all) back to the queue, with their
    /// attempts and age starting over. Returns the ids redriven.
    pub async fn redrive(
        &self,
        by: &Principal,
        name: &str,
        id: Option<&str>,
    ) -> Result<Vec<String>, CoreError> {
        let function = self.authorize_on(by, Action::ChangeFunction, name)?;
        self.audited(
            by,
            crate::audit::AuditAction::EventRedrive,
            function.as_str(),
            async {
                // The function must exist to run them.
                self.function_record(function.as_str()).await?;
                let store = self.store.clone();
                let (f, i) = (function.to_string(), id.map(str::to_owned));
                let ids = blocking(move || Ok(store.redrive_events(&f, i.as_deref())?)).await?;
                if let (Some(id), true) = (id, ids.is_empty()) {
                    return Err(CoreError::NotFound(format!(
                        "function {function} has no dead letter {id}"
                    )));
                }
                if !ids.is_empty() {
                    self.events.wake();
                }
                Ok(ids)
            },
        )
        .await
    }

    /// Deletes one dead letter.
    pub async fn delete_dead_letter(&self, by: &Principal, id: &str) -> Result<(), CoreError> {
        let row = self.event_row(by, id, Action::ChangeFunction).await?;
        self.audited(
            by,
            crate::audit::AuditAction::EventDelete,
            &row.function,
            async {
                if row.state != EventState::Dead {
                    return Err(CoreError::Conflict(format!(
                        "event {id} is {}, not a dead letter: only dead letters can be deleted",
                        EventStatus::of(&row).as_str()
                    )));
                }
                let store = self.store.clone();
                let (f, i) = (row.function.clone(), id.to_owned());
                if !blocking(move || Ok(store.delete_dead_letter(&f, &i)?)).await? {
                    return Err(CoreError::Conflict(format!(
                        "event {id} changed while it was being deleted: look at it again"
                    )));
                }
                Ok(())
            },
        )
        .await
    }

    /// Starts the dispatcher and works the queue until [`ControlPlane::shutdown`]. On a
    /// store of its own (SQLite) this control plane is the database's only one, so it first
    /// releases the leases a previous run left; on a shared store (PostgreSQL) leases may be
    /// other nodes', live ones: a dead node's run out and its events are claimed again then.
    pub async fn start_dispatcher(self: &Arc<Self>) -> Result<(), CoreError> {
        if !self.store.is_shared() {
            let store = self.store.clone();
            let released = blocking(move || Ok(store.release_all_event_leases()?)).await?;
            if released > 0 {
                tracing::warn!(
                    released,
                    "events a previous run was running when it stopped are queued again"
                );
            }
        }
        dispatcher::start(self);
        Ok(())
    }
}
