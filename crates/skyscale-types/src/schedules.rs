//! Schedules: the name rule, the two settings every layer shares as enums (a schedule's
//! state and what happens to fires missed while the control plane was down), and the `/v1`
//! wire formats.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A schedule's name: `[A-Za-z0-9_.-]{1,64}`, as EventBridge Scheduler's.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ScheduleName(String);

impl ScheduleName {
    pub fn parse(s: &str) -> Result<Self, String> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(format!(
                "invalid schedule name {s:?}: expected 1 to 64 letters, digits, '-', '_' or '.'"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ScheduleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether a schedule fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScheduleState {
    Enabled,
    /// Fires nothing; the slots that pass while paused are passed over, not caught up.
    Paused,
}

impl ScheduleState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enabled => "enabled",
            Self::Paused => "paused",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Enabled, Self::Paused]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// What a schedule does with the slots that passed while the control plane was down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MissedFires {
    /// Fire once, for the latest missed slot (the default).
    #[default]
    RunOnce,
    /// Fire none of them; go on with the next slot.
    Skip,
}

impl MissedFires {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RunOnce => "run-once",
            Self::Skip => "skip",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        [Self::RunOnce, Self::Skip]
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| format!("invalid missed-fire policy {s:?}: expected run-once or skip"))
    }
}

/// `POST /v1/schedules`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSchedule {
    pub name: String,
    pub function: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qualifier: Option<String>,
    /// `cron(…)`, `rate(…)` or `at(…)`.
    pub expression: String,
    /// An IANA time zone; UTC when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// The event every fire sends; EventBridge's "Scheduled Event" document when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
    /// `run-once` (the default) or `skip`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missed: Option<String>,
}

/// `PATCH /v1/schedules/{name}`: the fields present change; `payload: null` goes back to the
/// Scheduled Event document, `qualifier: ""` to unqualified.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateSchedule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qualifier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expression: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Absent: unchanged; `null`: the Scheduled Event document; else the payload.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "double_option"
    )]
    pub payload: Option<Option<serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missed: Option<String>,
}

/// Tells an absent field (`None`) from `null` (`Some(None)`).
mod double_option {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(
        v: &Option<Option<serde_json::Value>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(inner) => inner.serialize(s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<serde_json::Value>>, D::Error> {
        Option::<serde_json::Value>::deserialize(d).map(|v| match v {
            None | Some(serde_json::Value::Null) => Some(None),
            Some(v) => Some(Some(v)),
        })
    }
}

/// One schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleInfo {
    pub name: String,
    pub arn: String,
    pub function: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qualifier: Option<String>,
    pub expression: String,
    pub timezone: String,
    /// `None`: EventBridge's Scheduled Event document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
    pub state: ScheduleState,
    pub missed: MissedFires,
    /// The slot of the last fire (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_fired_at: Option<String>,
    /// The next slot that will fire (enabled schedules with one left).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_fire_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// `GET /v1/schedules`: by name.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScheduleList {
    pub schedules: Vec<ScheduleInfo>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_settings_parse() {
        assert!(ScheduleName::parse("nightly.report-1_x").is_ok());
        for bad in ["", "a b", "x/y", &"a".repeat(65)] {
            assert!(ScheduleName::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(MissedFires::parse("skip"), Ok(MissedFires::Skip));
        assert!(MissedFires::parse("all")
            .unwrap_err()
            .contains("run-once or skip"));
        assert_eq!(ScheduleState::parse("paused"), Some(ScheduleState::Paused));
        assert_eq!(
            serde_json::to_string(&MissedFires::RunOnce).unwrap(),
            "\"run-once\""
        );
    }

    #[test]
    fn an_update_tells_null_from_absent() {
        let u: UpdateSchedule = serde_json::from_str(r#"{"payload": null}"#).unwrap();
        assert_eq!(u.payload, Some(None));
        let u: UpdateSchedule = serde_json::from_str(r#"{}"#).unwrap();
        assert_eq!(u.payload, None);
        let u: UpdateSchedule = serde_json::from_str(r#"{"payload": {"a": 1}}"#).unwrap();
        assert_eq!(u.payload, Some(Some(serde_json::json!({"a": 1}))));
    }
}
