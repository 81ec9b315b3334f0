//! Schedules (lambda-compatibility.md §14): a function invoked asynchronously at the slots
//! of an EventBridge expression (`expression.rs`), in an IANA time zone. A fire is an event
//! on the durable queue, so retries, destinations and dead letters apply to it.
//!
//! Managing a schedule is changing its function: the caller needs `ChangeFunction` on the
//! function it targets, and must be allowed to invoke it; fires run as the key that created
//! or last changed the schedule. Every change is audited.
//!
//! Firing is `chore.rs`: one task, which commits each slot with its event in one store
//! transaction, so a slot fires at most once and is never lost across restarts.

mod chore;
mod expression;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use skyscale_store::{ScheduleFields, ScheduleRecord, Through};
use skyscale_types::invocation::Trigger;
use skyscale_types::schedules::{MissedFires, ScheduleName, ScheduleState};
use skyscale_types::time::{epoch_ms, from_epoch_ms};
use skyscale_types::FunctionName;

use crate::audit::AuditAction;
use crate::auth::Action;
use crate::{blocking, ControlPlane, CoreError, Principal};

pub(crate) use chore::Chore;
pub use expression::{ExpressionError, ScheduleExpression};

/// How the schedule chore works.
#[derive(Debug, Clone)]
pub struct ScheduleSettings {
    /// The longest the chore sleeps without looking at the schedules (it wakes at the next
    /// due slot, and at once after a change).
    pub max_sleep: Duration,
}

impl Default for ScheduleSettings {
    fn default() -> Self {
        Self {
            max_sleep: Duration::from_secs(1),
        }
    }
}

/// What a caller asks to create.
#[derive(Debug, Clone, Default)]
pub struct ScheduleSpec {
    pub name: String,
    pub function: String,
    /// `None` or `$LATEST`, a version or an alias.
    pub qualifier: Option<String>,
    pub expression: String,
    /// An IANA name; `None`: UTC.
    pub timezone: Option<String>,
    /// JSON; `None`: EventBridge's Scheduled Event document.
    pub payload: Option<Vec<u8>>,
    pub missed: Option<MissedFires>,
}

/// A change: `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ScheduleChanges {
    pub function: Option<String>,
    /// `Some(None)`: unqualified.
    pub qualifier: Option<Option<String>>,
    pub expression: Option<String>,
    pub timezone: Option<String>,
    /// `Some(None)`: back to the Scheduled Event document.
    pub payload: Option<Option<Vec<u8>>>,
    pub missed: Option<MissedFires>,
}

/// A schedule as the user sees it.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub name: String,
    /// The ARN its Scheduled Event documents name in `resources`.
    pub arn: String,
    pub function: String,
    pub qualifier: Option<String>,
    pub expression: String,
    pub timezone: String,
    pub payload: Option<Vec<u8>>,
    pub state: ScheduleState,
    pub missed: MissedFires,
    pub last_fired_at: Option<SystemTime>,
    pub next_fire_at: Option<SystemTime>,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
}

fn invalid(e: ExpressionError) -> CoreError {
    CoreError::InvalidParameter(e.to_string())
}

fn now_ms() -> i64 {
    i64::try_from(epoch_ms(SystemTime::now())).unwrap_or(i64::MAX)
}

fn time(ms: i64) -> SystemTime {
    from_epoch_ms(u64::try_from(ms).unwrap_or(0))
}

/// The first slot after `rec`'s bookkeeping that has not fired: what `next_fire_at` shows.
fn next_slot(rec: &ScheduleRecord) -> Option<i64> {
    if rec.state != ScheduleState::Enabled {
        return None;
    }
    let e = ScheduleExpression::parse(&rec.expression, &rec.timezone).ok()?;
    e.next_after(rec.through_ms.unwrap_or(rec.anchor_ms), rec.anchor_ms)
}

/// A qualifier as stored: `None` for unqualified and `$LATEST`.
fn stored_qualifier(q: Option<String>) -> Option<String> {
    q.filter(|q| !q.is_empty() && q != "$LATEST")
}

impl ControlPlane {
    /// The ARN of the schedule `name` (EventBridge's rule ARN: the Scheduled Event document
    /// is what EventBridge rules send).
    pub fn schedule_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:events:{}:{}:rule/{name}",
            self.settings.region, self.settings.account_id
        )
    }

    fn schedule_view(&self, rec: ScheduleRecord) -> Schedule {
        Schedule {
            arn: self.schedule_arn(&rec.name),
            next_fire_at: next_slot(&rec).map(time),
            last_fired_at: rec.last_fired_ms.map(time),
            created_at: time(rec.created_at_ms),
            updated_at: time(rec.updated_at_ms),
            name: rec.name,
            function: rec.function,
            qualifier: rec.qualifier,
            expression: rec.expression,
            timezone: rec.timezone,
            payload: rec.payload,
            state: rec.state,
            missed: rec.missed,
        }
    }

    /// `by` may manage schedules of `function` (qualified by `qualifier`): it may change
    /// the function and invoke it.
    async fn authorize_schedule_target(
        &self,
        by: &Principal,
        function: &str,
        qualifier: Option<&str>,
    ) -> Result<FunctionName, CoreError> {
        self.authorize_on(by, Action::ChangeFunction, function)?;
        self.authorize_invoke(by, function, qualifier, Trigger::Event)
            .await
    }

    /// The target exists (the function, and the version or alias the qualifier names).
    async fn check_target(&self, function: &str, qualifier: Option<&str>) -> Result<(), CoreError> {
        self.version_record(function, qualifier, false).await?;
        Ok(())
    }

    /// A schedule `by` may read; one it may not is "not found", as is one that is not.
    async fn schedule_record(
        &self,
        by: &Principal,
        name: &str,
        action: Action,
    ) -> Result<ScheduleRecord, CoreError> {
        let name = ScheduleName::parse(name).map_err(CoreError::InvalidParameter)?;
        let not_found = || CoreError::NotFound(format!("schedule {name} not found"));
        let store = self.store.clone();
        let n = name.to_string();
        let rec = blocking(move || Ok(store.schedule(&n)?))
            .await?
            .ok_or_else(not_found)?;
        let function = FunctionName::parse(&rec.function)
            .map_err(|e| CoreError::internal_from("a stored schedule names a bad function", e))?;
        match by.authorize(action, Some(&function)) {
            Ok(()) => Ok(rec),
            Err(CoreError::Forbidden(_)) if action == Action::ReadFunction => Err(not_found()),
            Err(e) => Err(e),
        }
    }

    /// Creates a schedule; it fires from now on.
    pub async fn create_schedule(
        &self,
        by: &Principal,
        spec: ScheduleSpec,
    ) -> Result<Schedule, CoreError> {
        let name = ScheduleName::parse(&spec.name).map_err(CoreError::InvalidParameter)?;
        let qualifier = stored_qualifier(spec.qualifier);
        let function = self
            .authorize_schedule_target(by, &spec.function, qualifier.as_deref())
            .await?;
        let target = format!("schedule:{name}");
        self.audited(by, AuditAction::ScheduleCreate, &target, async {
            let timezone = spec.timezone.unwrap_or_else(|| "UTC".to_owned());
            let expr = ScheduleExpression::parse(&spec.expression, &timezone).map_err(invalid)?;
            let payload = spec.payload.map(crate::events::check_payload).transpose()?;
            let anchor = now_ms() / 1000 * 1000;
            if expr.next_after(anchor, anchor).is_none() {
                return Err(CoreError::InvalidParameter(format!(
                    "{} never fires after now in {timezone}",
                    spec.expression.trim()
                )));
            }
            self.check_target(function.as_str(), qualifier.as_deref())
                .await?;
            let store = self.store.clone();
            let (id, n) = (uuid::Uuid::new_v4().to_string(), name.to_string());
            let expression = spec.expression.trim().to_owned();
            let caller = by.key_id.as_ref().map(ToString::to_string);
            let missed = spec.missed.unwrap_or_default();
            let rec = blocking(move || {
                Ok(store.create_schedule(
                    &id,
                    &n,
                    &ScheduleFields {
                        function: function.as_str(),
                        qualifier: qualifier.as_deref(),
                        expression: &expression,
                        timezone: &timezone,
                        payload: payload.as_deref(),
                        state: ScheduleState::Enabled,
                        missed,
                        anchor_ms: anchor,
                        through: Through::Set(anchor),
                        caller: caller.as_deref(),
                    },
                )?)
            })
            .await?;
            self.schedules.wake();
            Ok(self.schedule_view(rec))
        })
        .await
    }

    /// The schedules of the functions `by` may read, by name.
    pub async fn list_schedules(&self, by: &Principal) -> Result<Vec<Schedule>, CoreError> {
        by.authorize(Action::ListFunctions, None)?;
        let store = self.store.clone();
        let all = blocking(move || Ok(store.schedules(false)?)).await?;
        Ok(all
            .into_iter()
            .filter(|s| {
                FunctionName::parse(&s.function)
                    .is_ok_and(|f| by.authorize(Action::ReadFunction, Some(&f)).is_ok())
            })
            .map(|s| self.schedule_view(s))
            .collect())
    }

    pub async fn get_schedule(&self, by: &Principal, name: &str) -> Result<Schedule, CoreError> {
        let rec = self.schedule_record(by, name, Action::ReadFunction).await?;
        Ok(self.schedule_view(rec))
    }

    /// Changes a schedule. A new expression or time zone starts afresh from now (slots of
    /// the old one that have not fired are dropped); other changes keep its slots.
    pub async fn update_schedule(
        &self,
        by: &Principal,
        name: &str,
        changes: ScheduleChanges,
    ) -> Result<Schedule, CoreError> {
        let rec = self.schedule_record(by, name, Action::ReadFunction).await?;
        let function = changes
            .function
            .clone()
            .unwrap_or_else(|| rec.function.clone());
        let qualifier = match changes.qualifier.clone() {
            Some(q) => stored_qualifier(q),
            None => rec.qualifier.clone(),
        };
        self.authorize_on(by, Action::ChangeFunction, &rec.function)?;
        let function = self
            .authorize_schedule_target(by, &function, qualifier.as_deref())
            .await?;
        let target = format!("schedule:{}", rec.name);
        self.audited(by, AuditAction::ScheduleUpdate, &target, async {
            let expression = changes
                .expression
                .as_deref()
                .map_or(rec.expression.clone(), |e| e.trim().to_owned());
            let timezone = changes.timezone.clone().unwrap_or(rec.timezone.clone());
            let expr = ScheduleExpression::parse(&expression, &timezone).map_err(invalid)?;
            let payload = match changes.payload {
                None => rec.payload.clone(),
                Some(None) => None,
                Some(Some(p)) => Some(crate::events::check_payload(p)?),
            };
            let (mut anchor, mut through) = (rec.anchor_ms, Through::Keep);
            if expression != rec.expression || timezone != rec.timezone {
                anchor = now_ms() / 1000 * 1000;
                through = Through::Set(anchor);
                if expr.next_after(anchor, anchor).is_none() {
                    return Err(CoreError::InvalidParameter(format!(
                        "{expression} never fires after now in {timezone}"
                    )));
                }
            }
            self.check_target(function.as_str(), qualifier.as_deref())
                .await?;
            let fields = ScheduleFields {
                function: function.as_str(),
                qualifier: qualifier.as_deref(),
                expression: &expression,
                timezone: &timezone,
                payload: payload.as_deref(),
                state: rec.state,
                missed: changes.missed.unwrap_or(rec.missed),
                anchor_ms: anchor,
                through,
                caller: by.key_id.as_ref().map(|k| k.as_str()),
            };
            self.write_schedule(&rec, &fields).await
        })
        .await
    }

    /// Writes `fields` over `rec` (if nothing changed it meanwhile) and wakes the chore.
    async fn write_schedule(
        &self,
        rec: &ScheduleRecord,
        fields: &ScheduleFields<'_>,
    ) -> Result<Schedule, CoreError> {
        let store = self.store.clone();
        let (name, revision) = (rec.name.clone(), rec.revision);
        let owned = OwnedFields::of(fields);
        let out =
            blocking(move || Ok(store.update_schedule(&name, revision, &owned.fields())?)).await?;
        self.schedules.wake();
        Ok(self.schedule_view(out))
    }

    /// Pauses (`false`) or resumes (`true`) a schedule. The slots that pass while it is
    /// paused are passed over: a resumed schedule goes on with the next slot after now.
    pub async fn set_schedule_enabled(
        &self,
        by: &Principal,
        name: &str,
        enabled: bool,
    ) -> Result<Schedule, CoreError> {
        let rec = self.schedule_record(by, name, Action::ReadFunction).await?;
        self.authorize_on(by, Action::ChangeFunction, &rec.function)?;
        let action = if enabled {
            AuditAction::ScheduleResume
        } else {
            AuditAction::SchedulePause
        };
        let target = format!("schedule:{}", rec.name);
        self.audited(by, action, &target, async {
            let state = if enabled {
                ScheduleState::Enabled
            } else {
                ScheduleState::Paused
            };
            if rec.state == state {
                return Ok(self.schedule_view(rec.clone()));
            }
            // Slots that passed while paused are passed over.
            let through = if enabled {
                Through::AtLeast(now_ms())
            } else {
                Through::Keep
            };
            let fields = ScheduleFields {
                function: &rec.function,
                qualifier: rec.qualifier.as_deref(),
                expression: &rec.expression,
                timezone: &rec.timezone,
                payload: rec.payload.as_deref(),
                state,
                missed: rec.missed,
                anchor_ms: rec.anchor_ms,
                through,
                caller: rec.caller.as_deref(),
            };
            self.write_schedule(&rec, &fields).await
        })
        .await
    }

    pub async fn delete_schedule(&self, by: &Principal, name: &str) -> Result<(), CoreError> {
        let rec = self.schedule_record(by, name, Action::ReadFunction).await?;
        self.authorize_on(by, Action::ChangeFunction, &rec.function)?;
        let target = format!("schedule:{}", rec.name);
        self.audited(by, AuditAction::ScheduleDelete, &target, async {
            let store = self.store.clone();
            let n = rec.name.clone();
            if !blocking(move || Ok(store.delete_schedule(&n)?)).await? {
                return Err(CoreError::NotFound(format!(
                    "schedule {} not found",
                    rec.name
                )));
            }
            Ok(())
        })
        .await
    }

    /// Starts the schedule chore: fires what was missed while the control plane was down
    /// (by each schedule's policy), then each slot as it comes, until
    /// [`ControlPlane::shutdown`].
    pub fn start_schedules(self: &Arc<Self>) {
        chore::start(self);
    }
}

/// [`ScheduleFields`] owned, to cross to a blocking thread.
struct OwnedFields {
    function: String,
    qualifier: Option<String>,
    expression: String,
    timezone: String,
    payload: Option<Vec<u8>>,
    state: ScheduleState,
    missed: MissedFires,
    anchor_ms: i64,
    through: Through,
    caller: Option<String>,
}

impl OwnedFields {
    fn of(f: &ScheduleFields<'_>) -> Self {
        Self {
            function: f.function.to_owned(),
            qualifier: f.qualifier.map(str::to_owned),
            expression: f.expression.to_owned(),
            timezone: f.timezone.to_owned(),
            payload: f.payload.map(<[u8]>::to_vec),
            state: f.state,
            missed: f.missed,
            anchor_ms: f.anchor_ms,
            through: f.through,
            caller: f.caller.map(str::to_owned),
        }
    }

    fn fields(&self) -> ScheduleFields<'_> {
        ScheduleFields {
            function: &self.function,
            qualifier: self.qualifier.as_deref(),
            expression: &self.expression,
            timezone: &self.timezone,
            payload: self.payload.as_deref(),
            state: self.state,
            missed: self.missed,
            anchor_ms: self.anchor_ms,
            through: self.through,
            caller: self.caller.as_deref(),
        }
    }
}
