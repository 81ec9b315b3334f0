//! The audit log: every operation that changes state runs inside `ControlPlane::audited`,
//! which records who asked, what, about which function or key, and how it ended (`ok`,
//! `refused` when the key may not do it, or the failure's error code). Both HTTP APIs call
//! the same operations, so both are covered; reads and invocations are not recorded.

use std::future::Future;
use std::sync::Arc;

use skyscale_store::{AuditRecord, NewAuditEntry, Store};

use crate::auth::{Action, Principal};
use crate::{blocking, ControlPlane, CoreError};

/// Entries returned when no limit is asked for, and the most returned at once.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 10_000;

/// A recorded kind of action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuditAction {
    FunctionCreate,
    FunctionUpdate,
    FunctionDeploy,
    FunctionDelete,
    FunctionConcurrency,
    FunctionTag,
    FunctionUntag,
    VersionPublish,
    VersionDelete,
    AliasCreate,
    AliasUpdate,
    AliasDelete,
    UrlCreate,
    UrlUpdate,
    UrlDelete,
    PermissionAdd,
    PermissionRemove,
    KeyCreate,
    KeyRevoke,
    EventConfigPut,
    EventConfigUpdate,
    EventConfigDelete,
    EventRedrive,
    EventDelete,
    ScheduleCreate,
    ScheduleUpdate,
    SchedulePause,
    ScheduleResume,
    ScheduleDelete,
    LayerPublish,
    LayerDelete,
    ProvisionedPut,
    ProvisionedDelete,
}

impl AuditAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::FunctionCreate => "function.create",
            AuditAction::FunctionUpdate => "function.update",
            AuditAction::FunctionDeploy => "function.deploy",
            AuditAction::FunctionDelete => "function.delete",
            AuditAction::FunctionConcurrency => "function.concurrency",
            AuditAction::FunctionTag => "function.tag",
            AuditAction::FunctionUntag => "function.untag",
            AuditAction::VersionPublish => "version.publish",
            AuditAction::VersionDelete => "version.delete",
            AuditAction::AliasCreate => "alias.create",
            AuditAction::AliasUpdate => "alias.update",
            AuditAction::AliasDelete => "alias.delete",
            AuditAction::UrlCreate => "url.create",
            AuditAction::UrlUpdate => "url.update",
            AuditAction::UrlDelete => "url.delete",
            AuditAction::PermissionAdd => "permission.add",
            AuditAction::PermissionRemove => "permission.remove",
            AuditAction::KeyCreate => "key.create",
            AuditAction::KeyRevoke => "key.revoke",
            AuditAction::EventConfigPut => "event_config.put",
            AuditAction::EventConfigUpdate => "event_config.update",
            AuditAction::EventConfigDelete => "event_config.delete",
            AuditAction::EventRedrive => "event.redrive",
            AuditAction::EventDelete => "event.delete",
            AuditAction::ScheduleCreate => "schedule.create",
            AuditAction::ScheduleUpdate => "schedule.update",
            AuditAction::SchedulePause => "schedule.pause",
            AuditAction::ScheduleResume => "schedule.resume",
            AuditAction::ScheduleDelete => "schedule.delete",
            AuditAction::LayerPublish => "layer.publish",
            AuditAction::LayerDelete => "layer.delete",
            AuditAction::ProvisionedPut => "provisioned.put",
            AuditAction::ProvisionedDelete => "provisioned.delete",
        }
    }
}

/// `ok`, `refused` or the error code.
fn outcome<T>(result: &Result<T, CoreError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(CoreError::Forbidden(_)) => "refused",
        Err(e) => e.code(),
    }
}

/// An action that started and has not been recorded yet. If its future is dropped halfway
/// (the caller went away), the drop records it as `abandoned`: the store write may have
/// happened on its blocking thread regardless, so the log must not stay silent about it.
struct Pending {
    store: Arc<Store>,
    key_id: Option<String>,
    action: AuditAction,
    target: String,
    recorded: bool,
}

impl Pending {
    fn entry(&self) -> (Option<String>, &'static str, String) {
        (
            self.key_id.clone(),
            self.action.as_str(),
            self.target.clone(),
        )
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if self.recorded {
            return;
        }
        let store = self.store.clone();
        let (key_id, action, target) = self.entry();
        let write = move || {
            let entry = NewAuditEntry {
                key_id: key_id.as_deref(),
                action,
                target: &target,
                outcome: "abandoned",
                detail: "the caller went away before the action finished: it may or may not \
                         have taken effect",
            };
            if let Err(e) = store.append_audit(&entry) {
                tracing::error!(error = %e, action, "could not write the audit log");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(write)),
            Err(_) => write(),
        }
    }
}

impl ControlPlane {
    /// Runs a state-changing operation and records it in the audit log with `target`.
    pub(crate) async fn audited<T>(
        &self,
        by: &Principal,
        action: AuditAction,
        target: &str,
        op: impl Future<Output = Result<T, CoreError>>,
    ) -> Result<T, CoreError> {
        self.audited_with(by, action, target, op, |_| {
            (target.to_owned(), String::new())
        })
        .await
    }

    /// Like [`Self::audited`]; on success `describe` gives the target and a summary for the
    /// entry (e.g. the id of a key that did not exist before).
    pub(crate) async fn audited_with<T>(
        &self,
        by: &Principal,
        action: AuditAction,
        target: &str,
        op: impl Future<Output = Result<T, CoreError>>,
        describe: impl FnOnce(&T) -> (String, String),
    ) -> Result<T, CoreError> {
        let mut pending = Pending {
            store: self.store.clone(),
            key_id: by.key_id.as_ref().map(ToString::to_string),
            action,
            target: target.to_owned(),
            recorded: false,
        };
        let result = op.await;
        let outcome = outcome(&result);
        let (target, detail) = match &result {
            Ok(v) => describe(v),
            Err(CoreError::Internal { .. }) => {
                (pending.target.clone(), "internal error".to_owned())
            }
            Err(e) => (pending.target.clone(), e.to_string()),
        };
        pending.recorded = true;
        let (key_id, action, _) = pending.entry();
        let store = self.store.clone();
        let written = blocking(move || {
            Ok(store.append_audit(&NewAuditEntry {
                key_id: key_id.as_deref(),
                action,
                target: &target,
                outcome,
                detail: &detail,
            })?)
        })
        .await;
        // The action has happened; failing it now would say it did not.
        if let Err(e) = written {
            tracing::error!(error = %e, action, "could not write the audit log");
        }
        result
    }

    /// The newest entries of the audit log (at most `limit`, default 100), newest first;
    /// with `since` (RFC 3339) only those at or after that time. Admin keys only.
    pub async fn audit_log(
        &self,
        by: &Principal,
        limit: Option<usize>,
        since: Option<&str>,
    ) -> Result<Vec<AuditRecord>, CoreError> {
        by.authorize(Action::ReadAudit, None)?;
        let limit = match limit {
            None => DEFAULT_LIMIT,
            Some(n @ 1..=MAX_LIMIT) => n,
            Some(n) => {
                return Err(CoreError::InvalidParameter(format!(
                    "invalid limit {n}: must be between 1 and {MAX_LIMIT}"
                )))
            }
        };
        let since = since.map(normalise_time).transpose()?;
        let store = self.store.clone();
        blocking(move || Ok(store.audit_entries(limit, since.as_deref())?)).await
    }
}

/// An RFC 3339 time in the store's format (UTC, milliseconds), which orders as text.
fn normalise_time(s: &str) -> Result<String, CoreError> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|_| {
            CoreError::InvalidParameter(format!(
                "invalid time {s:?}: expected RFC 3339, e.g. 2026-01-31T12:00:00Z"
            ))
        })?
        .to_offset(time::UtcOffset::UTC);
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&fmt)
        .map_err(|e| CoreError::InvalidParameter(format!("invalid time {s:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_normalised_to_the_stored_format() {
        assert_eq!(
            normalise_time("2026-01-31T12:00:00Z").ok().as_deref(),
            Some("2026-01-31T12:00:00.000Z")
        );
        assert_eq!(
            normalise_time("2026-01-31T13:00:00.5+01:00")
                .ok()
                .as_deref(),
            Some("2026-01-31T12:00:00.500Z")
        );
        assert!(normalise_time("yesterday").is_err());
    }

    #[test]
    fn an_abandoned_action_is_still_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("db")).unwrap());
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            drop(Pending {
                store: store.clone(),
                key_id: Some("SKYKEY1".into()),
                action: AuditAction::FunctionDeploy,
                target: "f".into(),
                recorded: false,
            });
        });
        // Dropping the runtime waits for its blocking tasks.
        drop(rt);
        let entries = store.audit_entries(10, None).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(
            (entries[0].action.as_str(), entries[0].outcome.as_str()),
            ("function.deploy", "abandoned")
        );
    }

    #[test]
    fn outcomes() {
        assert_eq!(outcome(&Ok::<(), CoreError>(())), "ok");
        assert_eq!(
            outcome::<()>(&Err(CoreError::Forbidden("x".into()))),
            "refused"
        );
        assert_eq!(
            outcome::<()>(&Err(CoreError::NotFound("x".into()))),
            "not_found"
        );
    }
}
