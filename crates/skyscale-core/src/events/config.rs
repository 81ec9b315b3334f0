//! Event invoke configurations (Lambda's `PutFunctionEventInvokeConfig` and friends): per
//! function and qualifier, the retries, the maximum event age and the destinations.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use skyscale_store::{EventConfigRecord, EventConfigUpdate};
use skyscale_types::FunctionName;

use super::destination::Destination;
use crate::audit::AuditAction;
use crate::auth::Action;
use crate::{blocking, ControlPlane, CoreError, Principal};

/// Retries after a failed attempt when nothing is configured, as in Lambda.
pub const DEFAULT_MAX_RETRIES: u32 = 2;
/// The oldest an event may get (seconds) when nothing is configured, as in Lambda.
pub const DEFAULT_MAX_AGE_S: u32 = 21_600;

const RETRIES: std::ops::RangeInclusive<u32> = 0..=2;
const AGES: std::ops::RangeInclusive<u32> = 60..=21_600;

/// A function's (or one of its versions' or aliases') event invoke configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventConfig {
    pub function: FunctionName,
    /// `$LATEST`, a version's number or an alias.
    pub qualifier: String,
    /// The ARN of the function (qualified with the qualifier) it applies to.
    pub function_arn: String,
    /// `None`: not set (the default applies).
    pub max_retries: Option<u32>,
    pub max_age_s: Option<u32>,
    /// Destination function ARNs.
    pub on_success: Option<String>,
    pub on_failure: Option<String>,
    pub last_modified: SystemTime,
}

impl EventConfig {
    pub fn effective_retries(&self) -> u32 {
        self.max_retries.unwrap_or(DEFAULT_MAX_RETRIES)
    }

    pub fn effective_max_age(&self) -> Duration {
        Duration::from_secs(u64::from(self.max_age_s.unwrap_or(DEFAULT_MAX_AGE_S)))
    }
}

/// What a put or an update asks for. A put replaces the whole configuration (`None`: not
/// set); an update changes what is `Some` (a destination `Some(None)` removes it).
#[derive(Debug, Clone, Default)]
pub struct EventConfigChange {
    pub max_retries: Option<u32>,
    pub max_age_s: Option<u32>,
    /// A function name, `name:qualifier` or a function ARN.
    pub on_success: Option<Option<String>>,
    pub on_failure: Option<Option<String>>,
}

impl ControlPlane {
    fn event_config_of(&self, r: EventConfigRecord) -> EventConfig {
        let arn = format!(
            "{}:{}",
            self.settings.function_arn(r.function.as_str()),
            r.qualifier
        );
        EventConfig {
            function: r.function,
            qualifier: r.qualifier,
            function_arn: arn,
            max_retries: r.max_retries,
            max_age_s: r.max_age_s,
            on_success: r.on_success,
            on_failure: r.on_failure,
            last_modified: UNIX_EPOCH
                + Duration::from_millis(u64::try_from(r.last_modified_ms).unwrap_or(0)),
        }
    }

    /// The stored qualifier a configuration is kept under, after checking that the function
    /// and the version or alias exist.
    async fn config_qualifier(
        &self,
        function: &FunctionName,
        qualifier: Option<&str>,
    ) -> Result<String, CoreError> {
        self.version_record(function.as_str(), qualifier, false)
            .await?;
        Ok(qualifier.unwrap_or("$LATEST").to_owned())
    }

    /// Checks the values of `c` and resolves its destinations to ARNs.
    async fn checked_change(
        &self,
        by: &Principal,
        function: &FunctionName,
        c: EventConfigChange,
    ) -> Result<EventConfigUpdate, CoreError> {
        if let Some(n) = c.max_retries.filter(|n| !RETRIES.contains(n)) {
            return Err(CoreError::InvalidParameter(format!(
                "MaximumRetryAttempts {n} is out of range: expected 0 to 2"
            )));
        }
        if let Some(n) = c.max_age_s.filter(|n| !AGES.contains(n)) {
            return Err(CoreError::InvalidParameter(format!(
                "MaximumEventAgeInSeconds {n} is out of range: expected 60 to 21600"
            )));
        }
        let resolve = async |d: Option<Option<String>>, which: &str| match d {
            Some(Some(d)) if !d.is_empty() => Ok::<_, CoreError>(Some(Some(
                self.checked_destination(by, function, &d, which).await?,
            ))),
            Some(_) => Ok(Some(None)),
            None => Ok(None),
        };
        let on_success = resolve(c.on_success, "OnSuccess").await?;
        let on_failure = resolve(c.on_failure, "OnFailure").await?;
        Ok(EventConfigUpdate {
            max_retries: c.max_retries.map(Some),
            max_age_s: c.max_age_s.map(Some),
            on_success,
            on_failure,
        })
    }

    /// A destination named by `by` for `function`: another function `by` may invoke, which
    /// exists. Returns its ARN.
    async fn checked_destination(
        &self,
        by: &Principal,
        function: &FunctionName,
        raw: &str,
        which: &str,
    ) -> Result<String, CoreError> {
        let d = Destination::parse(raw, &self.settings)
            .map_err(|e| CoreError::InvalidParameter(format!("{which} destination: {e}")))?;
        if d.function == *function {
            return Err(CoreError::InvalidParameter(format!(
                "{which} destination {raw:?} is the function itself: a function cannot be its \
                 own destination"
            )));
        }
        match self
            .authorize_invoke(
                by,
                d.function.as_str(),
                d.qualifier.as_deref(),
                crate::Trigger::Event,
            )
            .await
        {
            Ok(_) => {}
            Err(CoreError::Forbidden(m)) => {
                return Err(CoreError::Forbidden(format!(
                    "{which} destination {raw:?}: your key may not invoke it ({m})"
                )))
            }
            Err(e) => return Err(e),
        }
        match self
            .version_record(d.function.as_str(), d.qualifier.as_deref(), false)
            .await
        {
            Ok(_) => Ok(d.arn(&self.settings)),
            Err(CoreError::NotFound(m)) => Err(CoreError::InvalidParameter(format!(
                "{which} destination {raw:?} does not exist: {m}"
            ))),
            Err(e) => Err(e),
        }
    }

    /// Creates or replaces the configuration of `name` (or of its version or alias).
    pub async fn put_event_config(
        &self,
        by: &Principal,
        name: &str,
        qualifier: Option<&str>,
        change: EventConfigChange,
    ) -> Result<EventConfig, CoreError> {
        let function = self.authorize_on(by, Action::ChangeFunction, name)?;
        self.audited(by, AuditAction::EventConfigPut, function.as_str(), async {
            let q = self.config_qualifier(&function, qualifier).await?;
            let u = self.checked_change(by, &function, change).await?;
            let record = EventConfigRecord {
                function: function.clone(),
                qualifier: q,
                max_retries: u.max_retries.flatten(),
                max_age_s: u.max_age_s.flatten(),
                on_success: u.on_success.flatten(),
                on_failure: u.on_failure.flatten(),
                last_modified_ms: 0,
            };
            let store = self.store.clone();
            let r = blocking(move || Ok(store.put_event_config(&record)?)).await?;
            Ok(self.event_config_of(r))
        })
        .await
    }

    /// Changes what `change` names of an existing configuration.
    pub async fn update_event_config(
        &self,
        by: &Principal,
        name: &str,
        qualifier: Option<&str>,
        change: EventConfigChange,
    ) -> Result<EventConfig, CoreError> {
        let function = self.authorize_on(by, Action::ChangeFunction, name)?;
        self.audited(
            by,
            AuditAction::EventConfigUpdate,
            function.as_str(),
            async {
                let q = self.config_qualifier(&function, qualifier).await?;
                let u = self.checked_change(by, &function, change).await?;
                let store = self.store.clone();
                let f = function.clone();
                let r = blocking(move || Ok(store.update_event_config(&f, &q, &u)?)).await?;
                Ok(self.event_config_of(r))
            },
        )
        .await
    }

    /// The configuration of `name` (or of its version or alias); not found when none is set.
    pub async fn event_config(
        &self,
        by: &Principal,
        name: &str,
        qualifier: Option<&str>,
    ) -> Result<EventConfig, CoreError> {
        let function = self.authorize_on(by, Action::ReadFunction, name)?;
        let q = self.config_qualifier(&function, qualifier).await?;
        let store = self.store.clone();
        let (f, q2) = (function.to_string(), q.clone());
        blocking(move || Ok(store.event_config(&f, &q2)?))
            .await?
            .map(|r| self.event_config_of(r))
            .ok_or_else(|| {
                CoreError::NotFound(format!(
                    "the function {function}:{q} has no event invoke config"
                ))
            })
    }

    /// Every configuration of a function, by qualifier.
    pub async fn event_configs(
        &self,
        by: &Principal,
        name: &str,
    ) -> Result<Vec<EventConfig>, CoreError> {
        let function = self.authorize_on(by, Action::ReadFunction, name)?;
        self.function_record(function.as_str()).await?;
        let store = self.store.clone();
        let rows = blocking(move || Ok(store.event_configs(function.as_str())?)).await?;
        Ok(rows.into_iter().map(|r| self.event_config_of(r)).collect())
    }

    /// Deletes the configuration of `name` (or of its version or alias).
    pub async fn delete_event_config(
        &self,
        by: &Principal,
        name: &str,
        qualifier: Option<&str>,
    ) -> Result<(), CoreError> {
        let function = self.authorize_on(by, Action::ChangeFunction, name)?;
        self.audited(
            by,
            AuditAction::EventConfigDelete,
            function.as_str(),
            async {
                let q = self.config_qualifier(&function, qualifier).await?;
                let store = self.store.clone();
                let (f, q2) = (function.to_string(), q.clone());
                if !blocking(move || Ok(store.delete_event_config(&f, &q2)?)).await? {
                    return Err(CoreError::NotFound(format!(
                        "the function {function}:{q} has no event invoke config"
                    )));
                }
                Ok(())
            },
        )
        .await
    }

    /// The configuration that applies to events sent to `function` with `qualifier` (the
    /// defaults when none is set), for the dispatcher.
    pub(crate) async fn applying_event_config(
        &self,
        function: &str,
        qualifier: Option<&str>,
    ) -> Result<Option<EventConfig>, CoreError> {
        let store = self.store.clone();
        let (f, q) = (
            function.to_owned(),
            qualifier.unwrap_or("$LATEST").to_owned(),
        );
        Ok(blocking(move || Ok(store.event_config(&f, &q)?))
            .await?
            .map(|r| self.event_config_of(r)))
    }
}
