//! The schedule chore: one task that fires due slots.
//!
//! At start it deals with what passed while the control plane was down: for each enabled
//! schedule with slots in `(through, now]`, `run-once` fires the latest of them once and
//! `skip` passes them over. Then it loops: it reads the enabled schedules, fires every due
//! slot in order (each in its own store transaction with its event: see
//! `skyscale_store::Fire`), and sleeps until the next slot is due, a change wakes it
//! (`Notify`, which keeps one wake-up for a loop that was not waiting: none is lost), at
//! most `max_sleep`, or shutdown.
//!
//! A fire is guarded by the `through` and the revision the chore read, so a fire that lost
//! a race with a change (pause, update, delete) writes nothing; the next round reads the
//! schedule again. Shutdown stops the loop between fires; a fire already handed to the
//! store commits whole or not at all.

use std::sync::Arc;
use std::time::Duration;

use skyscale_store::{Enqueued, Fire, Fired, Idempotency, NewEvent, ScheduleRecord};
use skyscale_types::schedules::MissedFires;
use tokio::sync::{watch, Notify};

use super::{now_ms, ScheduleExpression, ScheduleSettings};
use crate::singleton::ChoreLock;
use crate::{blocking, ControlPlane, CoreError};

/// Most slots of one schedule fired in one round (a control plane that was stalled catches
/// up over a few rounds rather than holding the others up).
const MAX_PER_ROUND: usize = 100;

/// The chore's state, owned by the control plane.
pub(crate) struct Chore {
    settings: ScheduleSettings,
    wake: Notify,
    stopping: watch::Sender<bool>,
    /// Set by the task when it has ended.
    stopped: watch::Sender<bool>,
    started: std::sync::atomic::AtomicBool,
}

impl Chore {
    pub(crate) fn new(settings: ScheduleSettings) -> Self {
        Self {
            settings,
            wake: Notify::new(),
            stopping: watch::Sender::new(false),
            stopped: watch::Sender::new(false),
            started: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// A schedule changed: look again now.
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    /// Stops firing and waits (up to `within`) for the fire in progress to commit.
    pub(crate) async fn stop(&self, within: Duration) {
        self.stopping.send_replace(true);
        if !self.started.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let mut stopped = self.stopped.subscribe();
        if tokio::time::timeout(within, stopped.wait_for(|s| *s))
            .await
            .is_err()
        {
            tracing::warn!("the schedule chore did not stop in time");
        }
    }
}

pub(super) fn start(cp: &Arc<ControlPlane>) {
    cp.schedules
        .started
        .store(true, std::sync::atomic::Ordering::Relaxed);
    tokio::spawn(run(cp.clone()));
}

async fn run(cp: Arc<ControlPlane>) {
    let chore = &cp.schedules;
    let mut stop = chore.stopping.subscribe();
    // On a shared store one node fires (see `singleton.rs`); the others try again every
    // few seconds, and the one that takes over catches up first, as a start does.
    let lock = ChoreLock::new(cp.store.clone(), "schedules");
    let mut caught_up = false;
    loop {
        if *stop.borrow() {
            break;
        }
        if !lock.runs_here().await {
            caught_up = false;
            tokio::select! {
                () = tokio::time::sleep(crate::singleton::RETRY) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            continue;
        }
        if !caught_up {
            if let Err(e) = cp.catch_up(&stop).await {
                tracing::warn!(error = %e.report(), "catching up missed schedule slots failed; they fire now");
            }
            caught_up = true;
        }
        let next = match cp.fire_due(&stop).await {
            Ok(next) => next,
            Err(e) => {
                tracing::warn!(error = %e.report(), "firing schedules failed; trying again");
                None
            }
        };
        let max = chore.settings.max_sleep;
        let sleep = next.map_or(max, |at| {
            Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0)).min(max)
        });
        tokio::select! {
            () = chore.wake.notified() => {}
            () = tokio::time::sleep(sleep) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    tracing::info!("schedule chore stopped");
    chore.stopped.send_replace(true);
}

/// EventBridge's Scheduled Event document for one slot (what EventBridge rules send; see
/// lambda-compatibility.md §14).
fn scheduled_event(id: &str, slot_ms: i64, arn: &str, region: &str, account: &str) -> Vec<u8> {
    let time = jiff::Timestamp::from_millisecond(slot_ms)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default();
    serde_json::json!({
        "version": "0",
        "id": id,
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account,
        "time": time,
        "region": region,
        "resources": [arn],
        "detail": {},
    })
    .to_string()
    .into_bytes()
}

impl ControlPlane {
    async fn enabled_schedules(&self) -> Result<Vec<ScheduleRecord>, CoreError> {
        let store = self.store.clone();
        blocking(move || Ok(store.schedules(true)?)).await
    }

    /// At start: the slots each schedule missed while the control plane was down.
    async fn catch_up(&self, stop: &watch::Receiver<bool>) -> Result<(), CoreError> {
        let now = now_ms();
        for rec in self.enabled_schedules().await? {
            if *stop.borrow() {
                break;
            }
            let Ok(expr) = ScheduleExpression::parse(&rec.expression, &rec.timezone) else {
                continue;
            };
            let from = rec.through_ms.unwrap_or(rec.anchor_ms);
            let (Some(latest), missed) = expr.latest_in(from, now, rec.anchor_ms, 10_000) else {
                continue;
            };
            let send = rec.missed == MissedFires::RunOnce;
            tracing::info!(
                schedule = %rec.name,
                missed,
                policy = rec.missed.as_str(),
                "slots passed while the control plane was down"
            );
            self.fire(&rec, latest, send).await?;
        }
        Ok(())
    }

    /// Fires every due slot; answers when the next one is due.
    async fn fire_due(&self, stop: &watch::Receiver<bool>) -> Result<Option<i64>, CoreError> {
        let mut soonest: Option<i64> = None;
        for rec in self.enabled_schedules().await? {
            let expr = match ScheduleExpression::parse(&rec.expression, &rec.timezone) {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(schedule = %rec.name, error = %e, "a stored schedule does not parse");
                    continue;
                }
            };
            let mut rec = rec;
            for _ in 0..MAX_PER_ROUND {
                if *stop.borrow() {
                    return Ok(None);
                }
                let from = rec.through_ms.unwrap_or(rec.anchor_ms);
                let Some(next) = expr.next_after(from, rec.anchor_ms) else {
                    break;
                };
                if next > now_ms() {
                    soonest = Some(soonest.map_or(next, |s| s.min(next)));
                    break;
                }
                if !self.fire(&rec, next, true).await? {
                    break;
                }
                rec.through_ms = Some(next);
            }
        }
        Ok(soonest)
    }

    /// Commits `slot` of `rec`: with its event (`send`) or passed over. `false`: the
    /// schedule changed since it was read, and nothing was written.
    async fn fire(&self, rec: &ScheduleRecord, slot: i64, send: bool) -> Result<bool, CoreError> {
        let event_id = uuid::Uuid::now_v7().to_string();
        let payload = match &rec.payload {
            Some(p) => p.clone(),
            None => scheduled_event(
                &event_id,
                slot,
                &self.schedule_arn(&rec.name),
                &self.settings.region,
                &self.settings.account_id,
            ),
        };
        let key = format!("schedule:{}:{slot}", rec.id);
        let window = self.settings.events.idempotency_window;
        let store = self.store.clone();
        let r = rec.clone();
        let fired = blocking(move || {
            let event = send.then(|| NewEvent {
                id: &event_id,
                function: &r.function,
                qualifier: r.qualifier.as_deref(),
                payload: &payload,
                caller: r.caller.as_deref(),
                idempotency: Some(Idempotency { key: &key, window }),
            });
            Ok(store.fire_schedule(&Fire {
                schedule_id: &r.id,
                through_before: r.through_ms,
                revision: r.revision,
                slot_ms: slot,
                event,
            })?)
        })
        .await?;
        match fired {
            Fired::Stale => Ok(false),
            Fired::Done(enqueued) => {
                if let Some(Enqueued::New { id }) = enqueued {
                    tracing::info!(schedule = %rec.name, slot, event = %id, "schedule fired");
                    self.events.metrics.received(&rec.function);
                    self.events.wake();
                }
                Ok(true)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheduled_event_is_eventbridge_s_document() {
        let doc: serde_json::Value = serde_json::from_slice(&scheduled_event(
            "e-1",
            1_796_000_400_000,
            "arn:aws:events:us-east-1:000000000000:rule/nightly",
            "us-east-1",
            "000000000000",
        ))
        .unwrap_or_default();
        assert_eq!(
            doc,
            serde_json::json!({
                "version": "0",
                "id": "e-1",
                "detail-type": "Scheduled Event",
                "source": "aws.events",
                "account": "000000000000",
                "time": "2026-11-30T01:00:00Z",
                "region": "us-east-1",
                "resources": ["arn:aws:events:us-east-1:000000000000:rule/nightly"],
                "detail": {},
            })
        );
    }
}
