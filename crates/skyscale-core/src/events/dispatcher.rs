//! The dispatcher: one task claims due events (as many as there are free slots), one task
//! per claimed event runs it through the invoke path and ends it, and a housekeeping task
//! renews the leases of the running ones, refreshes the queue gauges and prunes old
//! idempotency keys.
//!
//! Concurrency: the slots are a semaphore of `max_in_flight` permits; the claim loop holds
//! one before it claims, so it never claims more than it can run, and sleeps on the wake-up
//! (`Notify`, which keeps one wake-up for a loop that was not waiting yet: none is lost) or
//! the poll interval when nothing is due. The set of running ids is a `std` mutex held for
//! an insert, a remove or a copy, never across an await.
//!
//! Host capacity: the claim loop runs at most `window` events at once. A try throttled by
//! the host (its sandbox cap or memory budget, not the function's own reserved concurrency)
//! halves the window and is put back after `HOST_THROTTLE_RETRY` (short, and not doubled):
//! the dispatcher asked for more than the host holds, the event did nothing wrong, and the
//! smaller window is what makes the next try fit (measured: with Lambda's one-second
//! throttle backoff here, a burst of 1,000 events on two cores ran at 190 events/s instead
//! of ~680, most of the time spent waiting out backoffs of events a sandbox was free for). Each
//! event that ran widens the window by one, up to `max_in_flight` (additive increase,
//! multiplicative decrease). A reserved-concurrency throttle backs off as Lambda's do.
//!
//! Shutdown: [`Queue::stop_claiming`] ends the claim loop; the scheduler then finishes (or,
//! past the grace, kills) the invocations in flight, and events that had not started get
//! `Unavailable` from it and are put back unchanged; [`Queue::drain`] waits until every
//! event task has written its end. What is still queued stays queued for the next start.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use skyscale_store::{EventEnd, EventRow, NewEvent, Retry};
use skyscale_types::{FunctionName, FunctionPattern, KeyId, Role};
use tokio::sync::{watch, Notify, Semaphore};

use super::destination::{invocation_record, Condition, Destination};
use super::metrics::EventMetrics;
use super::{DeadReason, EventSettings, DEFAULT_MAX_AGE_S, DEFAULT_MAX_RETRIES};
use crate::auth::FunctionScope;
use crate::observe::Outcome;
use crate::{
    blocking, ControlPlane, CoreError, EventAttempt, InvokeOptions, InvokeOutput, Principal,
    Throttle,
};
use skyscale_types::invocation::Trigger;

/// How often the queue gauges are read from the store.
const STATS_EVERY: Duration = Duration::from_secs(2);
/// How often expired idempotency keys are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// The dispatcher's state, owned by the control plane.
pub(crate) struct Queue {
    pub(crate) metrics: EventMetrics,
    settings: EventSettings,
    /// This run's lease owner id.
    owner: String,
    wake: Notify,
    stopping: watch::Sender<bool>,
    slots: Arc<Semaphore>,
    /// Ids of the events running now (their leases are renewed).
    running: Mutex<HashSet<String>>,
    /// Most events run at once now (see the module's documentation): 1..=max_in_flight.
    window: AtomicUsize,
}

impl Queue {
    pub(crate) fn new(settings: EventSettings) -> Self {
        let slots = Arc::new(Semaphore::new(settings.max_in_flight.max(1)));
        Self {
            metrics: EventMetrics::default(),
            owner: format!("cp-{}", uuid::Uuid::new_v4().simple()),
            wake: Notify::new(),
            stopping: watch::Sender::new(false),
            slots,
            running: Mutex::new(HashSet::new()),
            window: AtomicUsize::new(settings.max_in_flight.max(1)),
            settings,
        }
    }

    /// Something was enqueued (or redriven): look at the queue now.
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    /// Claims nothing more.
    pub(crate) fn stop_claiming(&self) {
        self.stopping.send_replace(true);
    }

    /// Waits up to `within` for every event task to end. `false`: some did not.
    pub(crate) async fn drain(&self, within: Duration) -> bool {
        let all = u32::try_from(self.settings.max_in_flight.max(1)).unwrap_or(u32::MAX);
        tokio::time::timeout(within, self.slots.acquire_many(all))
            .await
            .is_ok_and(|p| p.is_ok())
    }

    /// The host refused a sandbox: run fewer events at once.
    fn host_throttled(&self) {
        let _ = self
            .window
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| {
                Some((w / 2).max(1))
            });
    }

    /// An event ran: one more may run at once.
    fn ran(&self) {
        let max = self.settings.max_in_flight.max(1);
        let _ = self
            .window
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| {
                Some((w + 1).min(max))
            });
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub(super) fn start(cp: &Arc<ControlPlane>) {
    tokio::spawn(claim_loop(cp.clone()));
    tokio::spawn(housekeeping(cp.clone()));
}

/// How soon an event throttled by the host (not by its function's own limit) is tried again.
const HOST_THROTTLE_RETRY: Duration = Duration::from_millis(20);

async fn claim_loop(cp: Arc<ControlPlane>) {
    let q = &cp.events;
    let mut stop = q.stopping.subscribe();
    loop {
        if *stop.borrow() {
            break;
        }
        let first = tokio::select! {
            p = q.slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = stop.wait_for(|s| *s) => break,
        };
        // Events running besides the slot just taken, and how many more the window allows.
        let max = q.settings.max_in_flight.max(1);
        let running = max.saturating_sub(q.slots.available_permits() + 1);
        let room = q.window.load(Ordering::Relaxed).saturating_sub(running);
        if room == 0 {
            drop(first);
            tokio::select! {
                () = q.wake.notified() => {}
                () = tokio::time::sleep(q.settings.poll) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            continue;
        }
        let want = room.min(1 + q.slots.available_permits());
        let (store, owner, lease) = (cp.store.clone(), q.owner.clone(), q.settings.lease);
        let rows = match blocking(move || Ok(store.claim_events(&owner, want, lease)?)).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "claiming events failed; trying again");
                drop(first);
                tokio::time::sleep(q.settings.poll).await;
                continue;
            }
        };
        if rows.is_empty() {
            drop(first);
            tokio::select! {
                () = q.wake.notified() => {}
                () = tokio::time::sleep(q.settings.poll) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            continue;
        }
        let mut first = Some(first);
        for row in rows {
            // Only this loop takes permits, so those counted above are still free.
            let permit = match first.take() {
                Some(p) => Ok(p),
                None => q.slots.clone().try_acquire_owned(),
            };
            let Ok(permit) = permit else {
                cp.put_event_back(&row, Duration::ZERO).await;
                continue;
            };
            q.running().insert(row.id.clone());
            let cp = cp.clone();
            tokio::spawn(async move {
                let id = row.id.clone();
                let span = tracing::info_span!("event", function = %row.function, event = %id);
                tracing::Instrument::instrument(cp.run_event(row), span).await;
                cp.events.running().remove(&id);
                drop(permit);
                // A slot is free: the claim loop may take the next event now.
                cp.events.wake();
            });
        }
    }
    tracing::info!("event dispatcher stopped claiming");
}

async fn housekeeping(cp: Arc<ControlPlane>) {
    let q = &cp.events;
    let mut renew = tokio::time::interval((q.settings.lease / 3).max(Duration::from_millis(50)));
    let mut stats = tokio::time::interval(STATS_EVERY);
    let mut prune = tokio::time::interval(PRUNE_EVERY);
    loop {
        tokio::select! {
            _ = renew.tick() => {
                let ids: Vec<String> = q.running().iter().cloned().collect();
                if ids.is_empty() {
                    continue;
                }
                let (store, owner, lease) = (cp.store.clone(), q.owner.clone(), q.settings.lease);
                let n = ids.len();
                match blocking(move || Ok(store.renew_event_leases(&owner, &ids, lease)?)).await {
                    Ok(kept) if kept < n => tracing::warn!(
                        lost = n - kept,
                        "leases of running events ran out and were taken over"
                    ),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "renewing event leases failed"),
                }
            }
            _ = stats.tick() => {
                let store = cp.store.clone();
                match blocking(move || Ok(store.queue_stats()?)).await {
                    Ok(s) => q.metrics.set_queues(s),
                    Err(e) => tracing::debug!(error = %e, "reading queue gauges failed"),
                }
            }
            _ = prune.tick() => {
                let store = cp.store.clone();
                if let Err(e) = blocking(move || Ok(store.prune_idempotency_keys()?)).await {
                    tracing::debug!(error = %e, "pruning idempotency keys failed");
                }
            }
        }
    }
}

/// The principal an event runs as: an invoker limited to the event's function, with the key
/// that enqueued it (its records name it). The enqueue was authorized; a run is not again.
fn runner(function: &FunctionName, caller: Option<&str>) -> Principal {
    Principal {
        key_id: caller.and_then(|k| KeyId::parse(k).ok()),
        role: Role::Invoker,
        functions: FunctionScope::Matching(Arc::new([FunctionPattern::exact(function)])),
    }
}

/// `ErrorType: message` of a failed attempt.
fn describe(out: &InvokeOutput) -> String {
    let kind = out.outcome.recorded_error_type().unwrap_or("Unknown");
    let message = serde_json::from_slice::<serde_json::Value>(&out.body)
        .ok()
        .and_then(|d| d.get("errorMessage")?.as_str().map(str::to_owned));
    match message {
        Some(m) => format!("{kind}: {m}"),
        None => kind.to_owned(),
    }
}

fn doubled(base: Duration, times: u32, cap: Duration) -> Duration {
    base.saturating_mul(1u32 << times.min(20)).min(cap)
}

impl ControlPlane {
    /// Runs one claimed event and ends it.
    async fn run_event(self: &Arc<Self>, row: EventRow) {
        let config = match self
            .applying_event_config(&row.function, row.qualifier.as_deref())
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "reading the event invoke config failed; trying later");
                self.put_event_back(&row, self.settings.events.poll).await;
                return;
            }
        };
        let max_retries = config
            .as_ref()
            .map_or(DEFAULT_MAX_RETRIES, |c| c.effective_retries());
        let max_age = config
            .as_ref()
            .map_or(Duration::from_secs(u64::from(DEFAULT_MAX_AGE_S)), |c| {
                c.effective_max_age()
            });
        let (on_success, on_failure) = config
            .map(|c| (c.on_success, c.on_failure))
            .unwrap_or_default();
        let age =
            Duration::from_millis(u64::try_from(row.now_ms - row.accepted_at_ms).unwrap_or(0));
        if age > max_age {
            tracing::info!(
                age_s = age.as_secs(),
                "event older than its maximum age: not run"
            );
            return self
                .event_failed(
                    &row,
                    Condition::EventAgeExceeded,
                    row.attempts,
                    None,
                    on_failure,
                )
                .await;
        }
        let Ok(function) = FunctionName::parse(&row.function) else {
            return self
                .dead_letter(
                    &row,
                    DeadReason::Refused,
                    None,
                    Some("invalid function name"),
                )
                .await;
        };
        let attempt = row.attempts + 1;
        let opts = InvokeOptions {
            qualifier: row.qualifier.clone(),
            trigger: Trigger::Event,
            accepted_at: Instant::now().checked_sub(age),
            event: Some(EventAttempt {
                id: row.id.clone(),
                attempt,
            }),
            ..InvokeOptions::default()
        };
        self.events.metrics.age(&row.function, age);
        let principal = runner(&function, row.caller.as_deref());
        let result = self
            .invoke_with(&principal, function.as_str(), opts, row.payload.clone())
            .await;
        let s = &self.settings.events;
        if result.is_ok() {
            self.events.ran();
        }
        match result {
            Ok(out) if out.outcome == Outcome::Success => {
                self.event_succeeded(&row, &out, on_success).await
            }
            Ok(out) => {
                let error = describe(&out);
                tracing::info!(attempt, error = %error, "event attempt failed");
                if attempt > max_retries {
                    self.event_failed(
                        &row,
                        Condition::RetriesExhausted,
                        attempt,
                        Some(&out),
                        on_failure,
                    )
                    .await;
                } else {
                    self.events.metrics.retried(&row.function);
                    let delay = doubled(s.retry_backoff, attempt - 1, Duration::MAX);
                    self.retry_event(&row, delay, attempt, 0, Some(&error))
                        .await;
                }
            }
            Err(CoreError::TooManyRequests { message, limit }) => {
                // Throttles are not attempts: tried again, backing off, until the age runs
                // out (checked before each try).
                self.events.metrics.throttled(&row.function);
                let delay = if limit == Throttle::Host {
                    self.events.host_throttled();
                    HOST_THROTTLE_RETRY
                } else {
                    doubled(s.throttle_backoff, row.throttles, s.max_throttle_backoff)
                };
                let error = format!("throttled: {message}");
                self.retry_event(
                    &row,
                    delay,
                    row.attempts,
                    row.throttles.saturating_add(1),
                    Some(&error),
                )
                .await;
            }
            Err(CoreError::Unavailable(_)) => {
                // Shutting down: the event did not start; it waits for the next start.
                self.put_event_back(&row, Duration::ZERO).await;
            }
            Err(
                e @ (CoreError::NotFound(_)
                | CoreError::InvalidRequest(_)
                | CoreError::InvalidParameter(_)
                | CoreError::Forbidden(_)
                | CoreError::PayloadTooLarge(_)),
            ) => {
                // It can never run as sent (e.g. its alias was deleted).
                let error = e.to_string();
                self.dead_letter(&row, DeadReason::Refused, None, Some(&error))
                    .await;
            }
            Err(e) => {
                // The platform failed (a sandbox that would not start, no code): an attempt.
                let error = e.to_string();
                if attempt > max_retries {
                    self.event_failed_with(
                        &row,
                        Condition::RetriesExhausted,
                        attempt,
                        None,
                        on_failure,
                        Some(&error),
                    )
                    .await;
                } else {
                    self.events.metrics.retried(&row.function);
                    let delay = doubled(s.retry_backoff, attempt - 1, Duration::MAX);
                    self.retry_event(&row, delay, attempt, 0, Some(&error))
                        .await;
                }
            }
        }
    }

    fn event_function_arn(&self, row: &EventRow) -> String {
        format!(
            "{}:{}",
            self.settings.function_arn(&row.function),
            row.qualifier.as_deref().unwrap_or("$LATEST")
        )
    }

    async fn event_succeeded(
        &self,
        row: &EventRow,
        out: &InvokeOutput,
        on_success: Option<String>,
    ) {
        let Some(dest) = on_success else {
            return self.end_event(row, EventEnd::Done, None).await;
        };
        let record = invocation_record(
            &row.id,
            &self.event_function_arn(row),
            Condition::Success,
            row.attempts + 1,
            &row.payload,
            Some(out),
        )
        .to_string();
        match self.destination_ready(&dest).await {
            Ok(d) => self.end_event(row, EventEnd::Done, Some((d, record))).await,
            Err(e) => {
                // The record is kept where the user can find it.
                let error = format!("OnSuccess destination {dest}: {e}");
                self.end_event(
                    row,
                    EventEnd::Dead {
                        reason: DeadReason::DestinationFailed.as_str(),
                        record: &record,
                        error: Some(&error),
                        attempts: row.attempts + 1,
                    },
                    None,
                )
                .await;
                self.events.metrics.dropped(&row.function, true);
            }
        }
    }

    async fn event_failed(
        &self,
        row: &EventRow,
        condition: Condition,
        invokes: u32,
        out: Option<&InvokeOutput>,
        on_failure: Option<String>,
    ) {
        self.event_failed_with(row, condition, invokes, out, on_failure, None)
            .await;
    }

    /// The event failed for good: its record goes to the failure destination, or it
    /// becomes a dead letter (also when the destination cannot take it).
    async fn event_failed_with(
        &self,
        row: &EventRow,
        condition: Condition,
        invokes: u32,
        out: Option<&InvokeOutput>,
        on_failure: Option<String>,
        error: Option<&str>,
    ) {
        let record = invocation_record(
            &row.id,
            &self.event_function_arn(row),
            condition,
            invokes,
            &row.payload,
            out,
        )
        .to_string();
        let mut reason = match condition {
            Condition::EventAgeExceeded => DeadReason::EventAgeExceeded,
            _ => DeadReason::RetriesExhausted,
        };
        let mut error = error.map(str::to_owned);
        if let Some(dest) = on_failure {
            match self.destination_ready(&dest).await {
                Ok(d) => {
                    self.end_event(row, EventEnd::Done, Some((d, record))).await;
                    self.events.metrics.dropped(&row.function, false);
                    return;
                }
                Err(e) => {
                    tracing::warn!(destination = %dest, error = %e, "the failure destination cannot take the record; keeping it as a dead letter");
                    error = Some(format!("OnFailure destination {dest}: {e}"));
                    reason = DeadReason::DestinationFailed;
                }
            }
        }
        self.end_event(
            row,
            EventEnd::Dead {
                reason: reason.as_str(),
                record: &record,
                error: error.as_deref(),
                attempts: invokes,
            },
            None,
        )
        .await;
        self.events.metrics.dropped(&row.function, true);
    }

    /// A dead letter without a run to describe (it could not run at all).
    async fn dead_letter(
        &self,
        row: &EventRow,
        reason: DeadReason,
        out: Option<&InvokeOutput>,
        error: Option<&str>,
    ) {
        let record = invocation_record(
            &row.id,
            &self.event_function_arn(row),
            Condition::RetriesExhausted,
            row.attempts,
            &row.payload,
            out,
        )
        .to_string();
        self.end_event(
            row,
            EventEnd::Dead {
                reason: reason.as_str(),
                record: &record,
                error,
                attempts: row.attempts,
            },
            None,
        )
        .await;
        self.events.metrics.dropped(&row.function, true);
    }

    /// A destination that can take a record now: it parses and its function (and
    /// qualifier) exists.
    async fn destination_ready(&self, arn: &str) -> Result<Destination, CoreError> {
        let d = Destination::parse(arn, &self.settings).map_err(CoreError::InvalidParameter)?;
        self.version_record(d.function.as_str(), d.qualifier.as_deref(), false)
            .await?;
        Ok(d)
    }

    /// Ends the event as `end`, sending `forward`'s record to its destination in the same
    /// transaction.
    async fn end_event(
        &self,
        row: &EventRow,
        end: EventEnd<'_>,
        forward: Option<(Destination, String)>,
    ) {
        self.records_written().await;
        let store = self.store.clone();
        let (id, owner) = (row.id.clone(), self.events.owner.clone());
        let caller = row.caller.clone();
        let forward_id = uuid::Uuid::now_v7().to_string();
        let end = match end {
            EventEnd::Done => Ended::Done,
            EventEnd::Dead {
                reason,
                record,
                error,
                attempts,
            } => Ended::Dead(
                reason.to_owned(),
                record.to_owned(),
                error.map(str::to_owned),
                attempts,
            ),
        };
        let dest_function = forward.as_ref().map(|(d, _)| d.function.to_string());
        let done = blocking(move || {
            let end = match &end {
                Ended::Done => EventEnd::Done,
                Ended::Dead(reason, record, error, attempts) => EventEnd::Dead {
                    reason,
                    record,
                    error: error.as_deref(),
                    attempts: *attempts,
                },
            };
            let new = forward.as_ref().map(|(d, record)| NewEvent {
                id: &forward_id,
                function: d.function.as_str(),
                qualifier: d.qualifier.as_deref(),
                payload: record.as_bytes(),
                caller: caller.as_deref(),
                idempotency: None,
            });
            Ok(store.finish_event(&id, &owner, end, new.as_ref())?)
        })
        .await;
        match done {
            Ok(true) => {
                if let Some(f) = dest_function {
                    self.events.metrics.received(&f);
                    self.events.wake();
                }
            }
            Ok(false) => {
                tracing::warn!("the event's lease ran out before it ended: another run owns it now")
            }
            Err(e) => {
                tracing::error!(error = %e, "ending an event failed; it will run again when its lease runs out")
            }
        }
    }

    async fn retry_event(
        &self,
        row: &EventRow,
        delay: Duration,
        attempts: u32,
        throttles: u32,
        error: Option<&str>,
    ) {
        self.records_written().await;
        let store = self.store.clone();
        let (id, owner) = (row.id.clone(), self.events.owner.clone());
        let error = error.map(str::to_owned);
        let done = blocking(move || {
            let retry = Retry {
                delay,
                attempts,
                throttles,
                last_error: error.as_deref(),
            };
            Ok(store.reschedule_event(&id, &owner, &retry)?)
        })
        .await;
        match done {
            Ok(true) => {}
            Ok(false) => tracing::warn!("the event's lease ran out before it was rescheduled"),
            Err(e) => {
                tracing::error!(error = %e, "rescheduling an event failed; it will run again when its lease runs out")
            }
        }
    }

    /// Waits until the records of the attempts that ran so far are stored: an event is
    /// never ended (or put back) before its attempt's record, so the records of a crash
    /// show every attempt of the events it finished.
    async fn records_written(&self) {
        if !self.records.flush(Duration::from_secs(10)).await {
            tracing::warn!("invocation records were not written in time; ending the event anyway");
        }
    }

    /// Gives the event back unchanged, due after `delay`.
    async fn put_event_back(&self, row: &EventRow, delay: Duration) {
        self.retry_event(row, delay, row.attempts, row.throttles, None)
            .await;
    }
}

/// An [`EventEnd`] that owns its strings (to cross into a blocking task).
enum Ended {
    Done,
    Dead(String, String, Option<String>, u32),
}
